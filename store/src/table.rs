//! Requests to the table that more than one use case makes, each built
//! once: the strongly consistent gets (one item, a batch), a partition
//! read whole or by pages, the soft delete of a version.

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Update};

use crate::coalesce::{self, Asked, Waiter};
use crate::error::{Error, Result};
use crate::layout::{attr, format_update_at, now};
use crate::names::{ArtifactName, Version};
use crate::rows::{Item, LIVE, VersionRow, sv, version_key};
use crate::tx::{TransactFailure, Tx, TxItem};

/// BatchGetItem's most keys per request.
const MAX_BATCH_GET: usize = 100;

/// The members of a soft delete's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Row,
    Fence,
    Log,
    Index,
}

/// A page of one partition to read ([`Table::page`]).
pub struct PartitionPage<'a> {
    pub pk: &'a str,
    /// Only sort keys starting with this.
    pub sk_prefix: Option<&'a str>,
    /// Sort-key order (false: newest first for time-ordered keys).
    pub ascending: bool,
    pub limit: u32,
    /// Where the page starts (a decoded cursor).
    pub start: Option<Item>,
}

/// The table: its client and its name.
#[derive(Debug, Clone)]
pub struct Table {
    // Crate-visible: each row family's requests are `impl Table` blocks
    // in the module of that family.
    pub(crate) ddb: aws_sdk_dynamodb::Client,
    pub(crate) name: String,
}

/// Whether a soft delete happened, and why not.
pub enum SoftDelete {
    Deleted,
    /// No live row (never existed, already deleted, purged).
    Missing,
    /// The row still lists alias references.
    Referenced(Box<VersionRow>),
    /// A live row other than the one read is there (the artifact was
    /// purged and the number written again meanwhile): not deleted.
    Replaced,
    /// Another writer's transaction got in the way: try again.
    Contended,
}

impl Table {
    pub fn new(ddb: aws_sdk_dynamodb::Client, name: impl Into<String>) -> Self {
        Self {
            ddb,
            name: name.into(),
        }
    }

    /// One TransactWriteItems of `ops` ([`crate::tx::transact`]).
    pub fn transact(
        &self,
        ops: Vec<crate::tx::TxItem>,
        token: &str,
    ) -> impl std::future::Future<Output = std::result::Result<(), crate::tx::TransactFailure>>
    {
        crate::tx::transact(&self.ddb, ops, token)
    }

    /// One labelled TransactWriteItems ([`crate::tx::transact_tx`]).
    pub fn transact_tx<L: Copy>(
        &self,
        tx: &crate::tx::Tx<L>,
        token: &str,
    ) -> impl std::future::Future<Output = std::result::Result<(), crate::tx::TransactFailure<L>>>
    {
        crate::tx::transact_tx(&self.ddb, tx, token)
    }

    /// Every item of a partition, strongly consistent (Query, every page).
    pub async fn query_all(&self, pk: &str) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .ddb
                .query()
                .table_name(&self.name)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", attr::PK)
                .expression_attribute_values(":pk", sv(pk))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| crate::sdk_error::upstream("Query", e))?;
            items.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(items),
            }
        }
    }

    /// One page of a partition (one Query, strongly consistent): at most
    /// `page.limit` items whose sort keys start with `page.sk_prefix`, after
    /// `page.start`, and the sort key where the next page starts.
    pub async fn page(&self, page: PartitionPage<'_>) -> Result<(Vec<Item>, Option<String>)> {
        let mut query = self
            .ddb
            .query()
            .table_name(&self.name)
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_values(":pk", sv(page.pk));
        query = match page.sk_prefix {
            None => query.key_condition_expression("#pk = :pk"),
            Some(prefix) => query
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#sk", attr::SK)
                .expression_attribute_values(":prefix", sv(prefix)),
        };
        let out = query
            .scan_index_forward(page.ascending)
            .consistent_read(true)
            .limit(i32::try_from(page.limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(page.start)
            .send()
            .await
            .map_err(|e| crate::sdk_error::upstream("Query", e))?;
        let next = crate::paging::next_sort_key(out.last_evaluated_key()).map(str::to_owned);
        Ok((out.items.unwrap_or_default(), next))
    }

    /// Strongly consistent BatchGetItem, re-asking for unprocessed keys
    /// (coalesced with the other gets of its poll, [`crate::coalesce`]).
    pub async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>> {
        self.read(keys, Asked::Batch).await
    }

    /// One item as stored, strongly consistent (GetItem; coalesced with the
    /// other gets of its poll, [`crate::coalesce`]).
    pub async fn get(&self, key: Item) -> Result<Option<Item>> {
        Ok(self.read(vec![key], Asked::One).await?.into_iter().next())
    }

    /// The items of `keys`: sent at once outside [`crate::coalesce::coalescing`];
    /// inside, after the other gets of this poll joined, by whichever get
    /// of the batch is polled first.
    async fn read(&self, keys: Vec<Item>, asked: Asked) -> Result<Vec<Item>> {
        let Some((reads, heard)) = coalesce::join(&keys, asked) else {
            return self.read_now(keys, asked).await;
        };
        tokio::task::yield_now().await;
        let batch = reads.take();
        if !batch.is_empty() {
            self.send(batch).await;
        }
        match heard.await {
            Ok(Some(read)) => read,
            // Its batch failed, or was dropped unsent: alone.
            Ok(None) | Err(_) => self.read_now(keys, asked).await,
        }
    }

    /// Sends the gets of `batch`: one alone as it was asked, several as
    /// BatchGetItems of their distinct keys (at most 100 each).
    async fn send(&self, mut batch: Vec<Waiter>) {
        if batch.len() == 1 {
            if let Some(only) = batch.pop() {
                let read = self.read_now(only.keys.clone(), only.asked).await;
                only.answer_alone(read);
            }
            return;
        }
        let keys = coalesce::union(&batch);
        let mut found = Vec::new();
        for chunk in keys.chunks(MAX_BATCH_GET) {
            match self.batch_get_now(chunk.to_vec()).await {
                Ok(items) => found.extend(items),
                Err(e) => {
                    tracing::warn!(error = %e, "a coalesced read failed; each get reads alone");
                    batch.into_iter().for_each(Waiter::fail);
                    return;
                }
            }
        }
        for waiter in batch {
            waiter.answer(&found);
        }
    }

    /// The items of `keys`, sent at once as asked.
    async fn read_now(&self, keys: Vec<Item>, asked: Asked) -> Result<Vec<Item>> {
        match (asked, keys.as_slice()) {
            (Asked::One, [key]) => Ok(self.get_now(key.clone()).await?.into_iter().collect()),
            _ => self.batch_get_now(keys).await,
        }
    }

    /// Strongly consistent BatchGetItem, re-asking for unprocessed keys.
    async fn batch_get_now(&self, keys: Vec<Item>) -> Result<Vec<Item>> {
        let mut found = Vec::new();
        let mut pending = keys;
        for attempt in 0..crate::retry::MAX_ATTEMPTS {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .consistent_read(true)
                .build()
                .map_err(crate::sdk_error::invalid_sdk_input)?;
            let out = self
                .ddb
                .batch_get_item()
                .request_items(&self.name, request)
                .send()
                .await
                .map_err(|e| crate::sdk_error::upstream("BatchGetItem", e))?;
            if let Some(items) = out.responses().and_then(|r| r.get(&self.name)) {
                found.extend(items.iter().cloned());
            }
            pending = out
                .unprocessed_keys()
                .and_then(|u| u.get(&self.name))
                .map(|k| k.keys().to_vec())
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(found);
            }
            crate::retry::backoff(attempt).await;
        }
        Err(Error::Throttled {
            operation: "BatchGetItem",
            source: "keys left unprocessed".into(),
        })
    }

    /// One GetItem, strongly consistent.
    async fn get_now(&self, key: Item) -> Result<Option<Item>> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| crate::sdk_error::upstream("GetItem", e))?;
        Ok(out.item)
    }

    /// Soft-deletes a live version that no alias references, marking the
    /// write with `token` so that a retry of a write that landed knows it,
    /// with its `Version Deleted` event in the artifact's event log (SPEC
    /// 10.2), told from `read` (the row as read: its bytes and creator do
    /// not change). One TransactWriteItems (the row's update, the log's);
    /// when refused, the row is read again (GetItem) to tell why.
    pub async fn soft_delete(
        &self,
        name: &ArtifactName,
        version: Version,
        token: &str,
        read: &VersionRow,
    ) -> Result<SoftDelete> {
        let at = format_update_at(now());
        let old = read.event_image();
        let mut new = old.clone();
        new.insert(attr::IS_DELETED.into(), AttributeValue::Bool(true));
        new.insert(attr::DELETED_AT.into(), sv(&at));
        let events = crate::change_events::events_of_write(Some(&old), Some(&new));
        let mut update = Update::builder();
        let logged = match events.first() {
            Some(event) => {
                update = update
                    .expression_attribute_names("#logged", attr::LOGGED_EVENT)
                    .expression_attribute_values(":logged", sv(event.id()));
                ", #logged = :logged"
            }
            None => "",
        };
        // This very row, not one a purge and a re-creation put in its
        // place (its `update_at` never changes while it lives).
        let same_row = match &read.stored_update_at {
            Some(at) => {
                update = update.expression_attribute_values(":read_at", sv(at));
                "#update_at = :read_at"
            }
            None => "attribute_not_exists(#update_at)",
        };
        let update = update
            .table_name(&self.name)
            .set_key(Some(version_key(name, version)))
            .update_expression(format!(
                "SET #is_deleted = :true, #deleted_at = :now, #deleted_by_request = :token{logged}"
            ))
            .condition_expression(format!(
                "attribute_exists(#pk) AND {LIVE} AND attribute_not_exists(#aliases) AND {same_row}"
            ))
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#update_at", attr::UPDATE_AT)
            .expression_attribute_names("#is_deleted", attr::IS_DELETED)
            .expression_attribute_names("#deleted_at", attr::DELETED_AT)
            .expression_attribute_names("#deleted_by_request", attr::DELETED_BY_REQUEST)
            .expression_attribute_names("#aliases", attr::ALIASES)
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":now", sv(&at))
            .expression_attribute_values(":token", sv(token))
            .build()
            .map_err(crate::sdk_error::invalid_sdk_input)?;
        let mut tx = Tx::new();
        tx.push(Member::Row, TxItem::builder().update(update).build());
        // No purge runs: it would not see the event log this creates.
        tx.push(
            Member::Fence,
            crate::upload_items::no_purge_running(&self.name, name)?,
        );
        if let Some(log) = crate::change_events::log_member(&self.name, name, &events)? {
            tx.push(Member::Log, log);
        }
        // Its search entries by metadata go with it (SPEC 10.3).
        for delete in
            crate::version_items::index_deletes(&self.name, name, version, &read.metadata)?
        {
            tx.push(Member::Index, delete);
        }
        match crate::tx::transact_tx(&self.ddb, &tx, token).await {
            Ok(()) => Ok(SoftDelete::Deleted),
            Err(TransactFailure::Conditions(failed)) if failed.contains(&Member::Fence) => {
                Err(Error::ArtifactBeingPurged {
                    name: name.to_string(),
                })
            }
            Err(TransactFailure::Conditions(_)) => {
                let old = self
                    .get(version_key(name, version))
                    .await?
                    .as_ref()
                    .map(VersionRow::from_item)
                    .transpose()?;
                Ok(match old {
                    Some(row)
                        if row.is_deleted && row.deleted_by_request.as_deref() == Some(token) =>
                    {
                        SoftDelete::Deleted
                    }
                    Some(row) if row.is_live() && row.stored_update_at != read.stored_update_at => {
                        SoftDelete::Replaced
                    }
                    Some(row) if row.is_live() && !row.aliases.is_empty() => {
                        SoftDelete::Referenced(Box::new(row))
                    }
                    // Live and unreferenced: the condition holds for such a
                    // row, so it was referenced when the write landed and
                    // is no longer (an alias came and went): tried again.
                    Some(row) if row.is_live() => SoftDelete::Contended,
                    _ => SoftDelete::Missing,
                })
            }
            Err(TransactFailure::Contention) => Ok(SoftDelete::Contended),
            Err(TransactFailure::Failed(e)) => Err(e),
        }
    }
}
