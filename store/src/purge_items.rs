//! A purge's requests (SPEC 7): its fence (taken like a lease, renewed,
//! handed over, lowered), the look at whether anything of an artifact
//! exists (a partition's first row, the projected registry read), and the
//! deletes of whole partitions and of rows that lost their bytes.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, Update, WriteRequest};

use crate::error::{Error, Result};
use crate::layout::{
    FENCE_SK, alias_pk, attr, condemned_pk, events_pk, fence_pk, history_pk, now, rollout_pk,
    status_pk, verified_pk,
};
use crate::limits::PURGE_FENCE_STALE;
use crate::names::{ArtifactName, Version};
use crate::rows::{Item, VersionRow, key, nv, registry_key, sv, version_key};
use crate::table::Table;
use crate::tx::TxItem;

/// What [`Table::purge_left_unfinished`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfinished {
    /// No purge to finish: none stopped, or one still runs.
    No,
    /// A purge of this service stopped behind its fence (handed over or
    /// lapsed).
    Fenced,
    /// No fence, the name still registered: the library's purge.
    Unfenced,
}

impl Table {
    /// Puts the purge fence of `name` up as `purge_id`'s (PutItem, started
    /// now), on condition that no fence stands, or the one standing was not
    /// renewed within `PURGE_FENCE_STALE`, or is `purge_id`'s own, or was
    /// handed over. `Ok(false)`: another purge holds it.
    pub async fn take_purge_fence(&self, name: &ArtifactName, purge_id: &str) -> Result<bool> {
        let mut fence = key(fence_pk(name), FENCE_SK);
        fence.insert(attr::PURGE_ID.into(), sv(purge_id));
        fence.insert(attr::STARTED_AT.into(), nv(now().unix_timestamp()));
        let stale = (now() - PURGE_FENCE_STALE).unix_timestamp();
        let out = self
            .ddb
            .put_item()
            .table_name(&self.name)
            .set_item(Some(fence))
            .condition_expression(
                "attribute_not_exists(#pk) OR #started_at < :stale OR #purge_id = :mine \
                 OR #handed_over = :yes",
            )
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#started_at", attr::STARTED_AT)
            .expression_attribute_names("#purge_id", attr::PURGE_ID)
            .expression_attribute_names("#handed_over", attr::HANDED_OVER)
            .expression_attribute_values(":stale", nv(stale))
            .expression_attribute_values(":mine", sv(purge_id))
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await;
        crate::sdk_error::applied("PutItem", out)
    }

    /// Renews the purge fence of `name` (UpdateItem: started now), on
    /// condition that `purge_id` holds it and renewed it within
    /// `PURGE_FENCE_STALE`. `Ok(false)`: it lapsed or another purge took it.
    pub async fn renew_purge_fence(&self, name: &ArtifactName, purge_id: &str) -> Result<bool> {
        let stale = (now() - PURGE_FENCE_STALE).unix_timestamp();
        let out = self
            .ddb
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(fence_pk(name), FENCE_SK)))
            .update_expression("SET #started_at = :now")
            .condition_expression("#purge_id = :mine AND #started_at >= :stale")
            .expression_attribute_names("#started_at", attr::STARTED_AT)
            .expression_attribute_names("#purge_id", attr::PURGE_ID)
            .expression_attribute_values(":stale", nv(stale))
            .expression_attribute_values(":now", nv(now().unix_timestamp()))
            .expression_attribute_values(":mine", sv(purge_id))
            .send()
            .await;
        crate::sdk_error::applied("UpdateItem", out)
    }

    /// Marks the purge fence of `name` handed over (UpdateItem), on
    /// condition that `purge_id` holds it; a fence no longer its own (or
    /// gone) counts as handed over.
    pub async fn hand_over_purge_fence(&self, name: &ArtifactName, purge_id: &str) -> Result<()> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(fence_pk(name), FENCE_SK)))
            .update_expression("SET #handed_over = :yes")
            .condition_expression("#purge_id = :mine")
            .expression_attribute_names("#handed_over", attr::HANDED_OVER)
            .expression_attribute_names("#purge_id", attr::PURGE_ID)
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":mine", sv(purge_id))
            .send()
            .await;
        crate::sdk_error::applied("UpdateItem", out).map(|_applied| ())
    }

    /// Lowers the purge fence of `name` (DeleteItem), on condition that
    /// `purge_id` holds it; one already lowered or taken over is left to
    /// its holder (`Ok` as well).
    pub async fn lower_purge_fence(&self, name: &ArtifactName, purge_id: &str) -> Result<()> {
        let lowered = self
            .ddb
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(key(fence_pk(name), FENCE_SK)))
            .condition_expression("#purge_id = :mine")
            .expression_attribute_names("#purge_id", attr::PURGE_ID)
            .expression_attribute_values(":mine", sv(purge_id))
            .send()
            .await;
        // Already lowered by this request (its answer was lost), or taken
        // over after we stalled: the holder lowers it.
        crate::sdk_error::applied("DeleteItem", lowered).map(|_applied| ())
    }

    /// Whether a purge of `name`, whose LATEST is gone, stopped and left
    /// the rest for another to finish: a fence handed over (its purge
    /// failed) or not renewed within `PURGE_FENCE_STALE` (its purge
    /// crashed); or no fence, but the name still registered — the library's
    /// purge, which deletes its rows and objects and knows nothing of this
    /// service's partitions, registry row or blobs (this service's purge
    /// deletes the registry row last, under its fence). One GetItem,
    /// strongly consistent (two without a fence).
    pub async fn purge_left_unfinished(&self, name: &ArtifactName) -> Result<Unfinished> {
        let Some(fence) = self.get(key(fence_pk(name), FENCE_SK)).await? else {
            return Ok(if self.registered(name).await? {
                Unfinished::Unfenced
            } else {
                Unfinished::No
            });
        };
        let handed_over = fence
            .get(attr::HANDED_OVER)
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false);
        let stale = (now() - PURGE_FENCE_STALE).unix_timestamp();
        let started_at = fence
            .get(attr::STARTED_AT)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or(i64::MIN);
        Ok(if handed_over || started_at < stale {
            Unfinished::Fenced
        } else {
            Unfinished::No
        })
    }

    /// Deletes the LATEST row of `name` for purge `purge_id`, its
    /// `Artifact Purged` event in the artifact's event log first (SPEC
    /// 10.2: after every change before it). LATEST is marked with the
    /// event's id in the transaction that logs it, unless a purge marked it
    /// already and no change was logged since (one that stopped before
    /// deleting it: its event stands, and is not logged again under another
    /// id); then deleted only while it
    /// still carries that mark, so its removal gives no event of its own
    /// (see `change_events::events_of`). The library rewriting LATEST in
    /// between (it drops the mark) makes it marked again. Nothing when there
    /// is no LATEST (a purge running again after it went). With
    /// `marked_only` (finishing a purge nobody asked for now), a LATEST no
    /// purge marked, or marked before changes logged since, is a writer's
    /// and stays: `Ok(false)`. AWS calls:
    /// BatchGetItem (LATEST and the event log), TransactWriteItems,
    /// DeleteItem.
    pub async fn delete_latest_row(
        &self,
        name: &ArtifactName,
        purge_id: &str,
        marked_only: bool,
    ) -> Result<bool> {
        let event = crate::change_events::purged_event(name, purge_id);
        let log_key = key(crate::layout::events_pk(name), crate::layout::EVENT_LOG_SK);
        for attempt in 0..crate::retry::MAX_ATTEMPTS {
            let items = self
                .batch_get(vec![version_key(name, Version::Latest), log_key.clone()])
                .await?;
            let (mut latest_item, mut log) = (None, None);
            for item in items {
                if item.get(attr::SK) == log_key.get(attr::SK)
                    && item.get(attr::PK) == log_key.get(attr::PK)
                {
                    log = Some(item);
                } else {
                    latest_item = Some(item);
                }
            }
            let Some(item) = latest_item else {
                return Ok(true);
            };
            let latest = VersionRow::from_item(&item)?;
            let marked = latest.marked_purged();
            // An earlier purge's mark is this purge's event only while no
            // change was logged after it (one that stopped, and is finished
            // now). Changes since (its fence lapsed: publishes, alias moves,
            // none of which rewrites LATEST's mark) mean the artifact lived
            // on: its purge now is told again, and a purge nobody asked for
            // now leaves it be (the writers won).
            let current = |mark: &String| crate::change_events::last_logged(log.as_ref(), mark);
            let mark = match latest
                .logged_event
                .clone()
                .filter(|_| marked)
                .filter(current)
            {
                Some(mark) => mark,
                None if marked_only => return Ok(false),
                None => {
                    if !self.log_purge(name, &item, &event, purge_id).await? {
                        crate::retry::backoff(attempt).await;
                        continue;
                    }
                    event.id().to_owned()
                }
            };
            let deleted = self
                .ddb
                .delete_item()
                .table_name(&self.name)
                .set_key(Some(version_key(name, Version::Latest)))
                .condition_expression("#logged = :mark")
                .expression_attribute_names("#logged", attr::LOGGED_EVENT)
                .expression_attribute_values(":mark", sv(&mark))
                .send()
                .await;
            // Rewritten since (its mark dropped) or gone: read again.
            if crate::sdk_error::applied("DeleteItem", deleted)? {
                return Ok(true);
            }
        }
        Err(Error::ConcurrentModification(format!(
            "LATEST of {name} kept changing while purging it; retry"
        )))
    }

    /// The transaction marking LATEST (as `read`, written at its
    /// `update_at` exactly as stored) with the purge's event and logging
    /// it; false when LATEST changed since the read or another writer got
    /// in the way.
    async fn log_purge(
        &self,
        name: &ArtifactName,
        read: &Item,
        event: &crate::change_events::ChangeEvent,
        purge_id: &str,
    ) -> Result<bool> {
        let mark = Update::builder()
            .table_name(&self.name)
            .set_key(Some(version_key(name, Version::Latest)))
            .update_expression("SET #logged = :logged")
            .expression_attribute_names("#update_at", attr::UPDATE_AT)
            .expression_attribute_names("#logged", attr::LOGGED_EVENT)
            .expression_attribute_values(":logged", sv(event.id()));
        let mark = match read.get(attr::UPDATE_AT) {
            Some(at) => mark
                .condition_expression("#update_at = :read_at")
                .expression_attribute_values(":read_at", at.clone()),
            // A bare row (no time): still there, still bare.
            None => mark
                .condition_expression("attribute_exists(#pk) AND attribute_not_exists(#update_at)")
                .expression_attribute_names("#pk", attr::PK),
        }
        .build()
        .map_err(crate::sdk_error::invalid_sdk_input)?;
        let mut ops = vec![TxItem::builder().update(mark).build()];
        ops.extend(crate::change_events::log_member(
            &self.name,
            name,
            std::slice::from_ref(event),
        )?);
        match crate::tx::transact(&self.ddb, ops, purge_id).await {
            Ok(()) => Ok(true),
            Err(
                crate::tx::TransactFailure::Conditions(_) | crate::tx::TransactFailure::Contention,
            ) => Ok(false),
            Err(crate::tx::TransactFailure::Failed(e)) => Err(e),
        }
    }

    /// Whether the registry row of `name` exists: a strongly consistent
    /// GetItem projecting the partition key only.
    pub async fn registered(&self, name: &ArtifactName) -> Result<bool> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.name)
            .set_key(Some(registry_key(name)))
            .projection_expression("#pk")
            .expression_attribute_names("#pk", attr::PK)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| crate::sdk_error::upstream("GetItem", e))?;
        Ok(out.item().is_some())
    }

    /// Whether partition `pk` holds any item: one strongly consistent
    /// Query of at most one item, projecting the partition key only.
    pub async fn any_row(&self, pk: &str) -> Result<bool> {
        let out = self
            .ddb
            .query()
            .table_name(&self.name)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_values(":pk", sv(pk))
            .projection_expression("#pk")
            .consistent_read(true)
            .limit(1)
            .send()
            .await
            .map_err(|e| crate::sdk_error::upstream("Query", e))?;
        Ok(!out.items().is_empty())
    }

    /// The keys of every item of partition `pk` (all pages, consistent).
    pub async fn partition_keys(&self, pk: &str) -> Result<Vec<Item>> {
        Ok(keys_of(self.query_all(pk).await?))
    }

    /// Deletes items by key, 25 per BatchWriteItem, retrying unprocessed
    /// ones; an error if some stay unprocessed.
    pub async fn delete_keys(&self, keys: Vec<Item>) -> Result<()> {
        for chunk in keys.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|key| {
                    DeleteRequest::builder()
                        .set_key(Some(key.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(crate::sdk_error::invalid_sdk_input)
                })
                .collect::<Result<_>>()?;
            for attempt in 0..crate::retry::MAX_ATTEMPTS {
                let out = self
                    .ddb
                    .batch_write_item()
                    .request_items(&self.name, requests)
                    .send()
                    .await
                    .map_err(|e| crate::sdk_error::upstream("BatchWriteItem", e))?;
                requests = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.name))
                    .cloned()
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                crate::retry::backoff(attempt).await;
            }
            if !requests.is_empty() {
                return Err(Error::Throttled {
                    operation: "BatchWriteItem",
                    source: format!("{} deletes left unprocessed", requests.len()).into(),
                });
            }
        }
        Ok(())
    }

    /// Deletes the version row of `name` at `version` (DeleteItem), on
    /// condition that it still holds the bytes `sha256`; a row rewritten
    /// since (or gone) is kept (`Ok` as well).
    pub async fn delete_version_holding(
        &self,
        name: &ArtifactName,
        version: Version,
        sha256: &str,
    ) -> Result<()> {
        let deleted = self
            .ddb
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(version_key(name, version)))
            .condition_expression("#sha256 = :sha256")
            .expression_attribute_names("#sha256", attr::SHA256)
            .expression_attribute_values(":sha256", sv(sha256))
            .send()
            .await;
        // Rewritten since (a newer put, its object PUT first): kept.
        crate::sdk_error::applied("DeleteItem", deleted).map(|_applied| ())
    }
}

/// The keys (`pk`, `sk`) of `items`.
pub fn keys_of(items: Vec<Item>) -> Vec<Item> {
    items
        .into_iter()
        .filter_map(|item| {
            let (pk, sk) = (item.get(attr::PK)?, item.get(attr::SK)?);
            Some(HashMap::from([
                (attr::PK.to_owned(), pk.clone()),
                (attr::SK.to_owned(), sk.clone()),
            ]))
        })
        .collect()
}

/// The keys of the metadata index's entries of `row` (a version of `name`):
/// one per metadata pair.
pub fn meta_index_keys(name: &ArtifactName, row: &VersionRow) -> Vec<Item> {
    crate::version_items::index_keys(name, row.version, &row.metadata).collect()
}
/// Whether the items of an artifact's own partition hold its LATEST row
/// (whatever it holds: the library's bare rows too).
pub fn holds_latest(items: &[Item]) -> bool {
    items.iter().any(|item| {
        item.get(attr::SK)
            .and_then(|v| v.as_s().ok())
            .is_some_and(|sk| sk == Version::LATEST)
    })
}

/// When a partition's items go, relative to the version rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    BeforeRows,
    AfterRows,
}

/// The partitions a purge deletes besides the version rows (which go after
/// LATEST, oldest first, with their metadata index entries), in order. The
/// records of blobs (verified, condemned) go only after every row that may
/// reference them: a purge stopped between left rows whose multipart blob
/// no longer counted as checked, which an upload of other bytes then
/// completed over (SPEC 7.3). The registry row goes last of all.
pub fn partitions_to_delete(name: &ArtifactName) -> [(String, Order); 7] {
    [
        (alias_pk(name), Order::BeforeRows),
        (history_pk(name), Order::BeforeRows),
        (rollout_pk(name), Order::BeforeRows),
        (status_pk(name), Order::BeforeRows),
        (verified_pk(name), Order::AfterRows),
        (condemned_pk(name), Order::AfterRows),
        // Its records give no event once removed; it goes after the rows,
        // whose last event (the purge's) it carries.
        (events_pk(name), Order::AfterRows),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::upload_pk;

    #[test]
    fn latest_is_told_by_its_sort_key_alone() {
        let row = |sk: &str| key("app", sk);
        assert!(holds_latest(&[row("000001"), row("LATEST")]));
        assert!(!holds_latest(&[row("000001"), row("01.2.3")]));
        assert!(!holds_latest(&[]));
    }

    #[test]
    fn blob_records_go_after_the_rows_and_aliases_before() {
        let name: ArtifactName = "app".parse().unwrap();
        let order = |pk: String| {
            partitions_to_delete(&name)
                .into_iter()
                .find(|(p, _)| *p == pk)
                .map(|(_, o)| o)
        };
        assert_eq!(order(verified_pk(&name)), Some(Order::AfterRows));
        assert_eq!(order(condemned_pk(&name)), Some(Order::AfterRows));
        assert_eq!(order(alias_pk(&name)), Some(Order::BeforeRows));
        assert_eq!(order(rollout_pk(&name)), Some(Order::BeforeRows));
        assert_eq!(
            order(upload_pk(&name)),
            None,
            "uploads go first, on their own"
        );
    }
}
