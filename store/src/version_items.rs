//! Version rows' requests: the publish's members (the number taken on
//! LATEST, the metadata index entries), LATEST's adoption marks and
//! counter, the reads of the newest and highest versions, the version
//! listing with its filters, and the cleanup of alias references no alias
//! row backs.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, Update};

use crate::error::Result;
use crate::layout::{alias_pk, attr};
use crate::names::{ArtifactName, Sha256, UploadId, Version};
use crate::rows::{Item, LIVE, VersionRow, nv, sv, version_key};
use crate::sdk_error::{applied, invalid_sdk_input, upstream};
use crate::table::Table;
use crate::tx::TxItem;

/// Which live versions a listing keeps ([`Table::version_page`]).
pub struct VersionFilter<'a> {
    /// Only those whose bytes are this (`?sha256=`).
    pub content: Option<&'a Sha256>,
    /// Only those whose user metadata holds every entry (`?meta.k=v`).
    pub metadata: &'a BTreeMap<String, String>,
}

impl Table {
    /// A Query of `name`'s rows below LATEST (the numbered versions, and
    /// keys the library wrote that are no number), newest first, strongly
    /// consistent; `#pk` and `#sk` named for projections.
    fn numbered_newest_first(
        &self,
        name: &ArtifactName,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.ddb
            .query()
            .table_name(&self.name)
            .key_condition_expression("#pk = :pk AND #sk < :latest")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#sk", attr::SK)
            .expression_attribute_values(":pk", sv(name.as_str()))
            .expression_attribute_values(":latest", sv(Version::LATEST))
            .scan_index_forward(false)
            .consistent_read(true)
    }

    /// The version row among the newest `PUBLISHED_BY_WINDOW` (deleted
    /// ones included) that an attempt of `request` wrote, if any: a
    /// publish retried after its answer was lost finds its own version
    /// though others published after it. One Query, strongly consistent.
    pub async fn published_by(&self, name: &ArtifactName, request: &str) -> Result<Option<Item>> {
        let out = self
            .numbered_newest_first(name)
            .limit(PUBLISHED_BY_WINDOW)
            .send()
            .await
            .map_err(|e| upstream("Query", e))?;
        Ok(out
            .items()
            .iter()
            .find(|item| published_by_request(item, request))
            .cloned())
    }

    /// The newest numbered version that is not soft-deleted. One Query per
    /// 100 rows from the newest, strongly consistent (deleted rows are
    /// skipped by a filter).
    pub async fn newest_live_version(&self, name: &ArtifactName) -> Result<Option<VersionRow>> {
        let mut start = None;
        loop {
            let out = self
                .numbered_newest_first(name)
                .filter_expression(LIVE)
                .expression_attribute_names("#is_deleted", attr::IS_DELETED)
                .expression_attribute_values(":false", AttributeValue::Bool(false))
                .limit(100)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| upstream("Query", e))?;
            if let Some(item) = out.items().first() {
                return VersionRow::from_item(item).map(Some);
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(None),
            }
        }
    }

    /// Records on LATEST the upload adopting it (UpdateItem), only while
    /// LATEST is exactly as read in `latest_item` (same bytes, still the
    /// library's, same timestamp) and its recorded adoption is `recorded`
    /// (none: none recorded). False when that condition failed.
    pub async fn mark_adopting(
        &self,
        name: &ArtifactName,
        latest_item: &Item,
        recorded: Option<&str>,
        id: &UploadId,
    ) -> Result<bool> {
        let mut update = self
            .ddb
            .update_item()
            .table_name(&self.name)
            .set_key(Some(version_key(name, Version::Latest)))
            .update_expression("SET #adopting = :id")
            .expression_attribute_names("#adopting", attr::ADOPTING)
            .expression_attribute_names("#sha256", attr::SHA256)
            .expression_attribute_names("#bytes", attr::BYTES)
            .expression_attribute_names("#update_at", attr::UPDATE_AT)
            .expression_attribute_values(":id", sv(id.as_str()))
            .expression_attribute_values(
                ":sha256",
                latest_item
                    .get(attr::SHA256)
                    .cloned()
                    .unwrap_or_else(|| sv("")),
            );
        let mut condition = "#sha256 = :sha256 AND attribute_not_exists(#bytes)".to_owned();
        match latest_item.get(attr::UPDATE_AT) {
            Some(at) => {
                condition.push_str(" AND #update_at = :update_at");
                update = update.expression_attribute_values(":update_at", at.clone());
            }
            None => condition.push_str(" AND attribute_not_exists(#update_at)"),
        }
        match recorded {
            Some(old) => {
                condition.push_str(" AND #adopting = :old");
                update = update.expression_attribute_values(":old", sv(old));
            }
            None => condition.push_str(" AND attribute_not_exists(#adopting)"),
        }
        applied(
            "UpdateItem",
            update.condition_expression(condition).send().await,
        )
    }

    /// The highest version number any row of the partition holds (deleted
    /// and reclaimed rows included), 0 when none. One Query, strongly
    /// consistent, reading keys only.
    pub async fn highest_version(&self, name: &ArtifactName) -> Result<u32> {
        // Sort keys that are no number (the library's delete of version
        // "1.2.3" writes `01.2.3`) sort among and above the numbers: the
        // highest is the first key, from the top, that is one.
        let mut start: Option<Item> = None;
        let mut limit = 1;
        loop {
            let out = self
                .numbered_newest_first(name)
                .limit(limit)
                .projection_expression("#pk, #sk")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| upstream("Query", e))?;
            let highest = out
                .items()
                .iter()
                .filter_map(|item| item.get(attr::SK)?.as_s().ok())
                .find_map(|sk| match Version::from_sort_key(sk) {
                    Ok(Version::Number(n)) => Some(n),
                    _ => None,
                });
            match (highest, out.last_evaluated_key) {
                (Some(n), _) => return Ok(n),
                (None, Some(last)) => {
                    start = Some(last);
                    limit = 100;
                }
                (None, None) => return Ok(0),
            }
        }
    }

    /// Raises LATEST's counter to `highest` (UpdateItem), only while LATEST
    /// exists and its counter is missing or lower; a failed condition
    /// (caught up by someone else, LATEST gone) is no error.
    pub async fn raise_counter(&self, name: &ArtifactName, highest: u32) -> Result<()> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.name)
            .set_key(Some(version_key(name, Version::Latest)))
            .update_expression("SET #last_version = :highest")
            .condition_expression("attribute_exists(#pk) AND (attribute_not_exists(#last_version) OR #last_version < :highest)")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#last_version", attr::LAST_VERSION)
            .expression_attribute_values(":highest", nv(highest))
            .send()
            .await;
        // Already caught up by someone else, or LATEST gone (next step says 404).
        applied("UpdateItem", out).map(|_applied| ())
    }

    /// One page of `name`'s live versions (one Query, strongly consistent,
    /// LATEST first, then newest first), only those `filter` keeps, reading
    /// back only [`VersionRow::ARTIFACT_ATTRIBUTES`]: at most `limit` rows
    /// examined from `start`, and the sort key where the next page starts.
    pub async fn version_page(
        &self,
        name: &ArtifactName,
        limit: u32,
        start: Option<Item>,
        filter: VersionFilter<'_>,
    ) -> Result<(Vec<VersionRow>, Option<String>)> {
        let (projection, projected) = VersionRow::artifact_projection();
        let query = self
            .ddb
            .query()
            .table_name(&self.name)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#is_deleted", attr::IS_DELETED)
            .expression_attribute_values(":pk", sv(name.as_str()))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .projection_expression(projection);
        let query = projected
            .into_iter()
            .fold(query, |q, (k, v)| q.expression_attribute_names(k, v));
        let mut condition = vec![LIVE.to_owned()];
        let mut query = match filter.content {
            None => query,
            Some(digest) => {
                condition.push("#sha256 = :sha256".to_owned());
                query
                    .expression_attribute_names("#sha256", attr::SHA256)
                    .expression_attribute_values(":sha256", sv(digest.as_str()))
            }
        };
        for (i, (k, v)) in filter.metadata.iter().enumerate() {
            condition.push(format!("#metadata.#mk{i} = :mv{i}"));
            query = query
                .expression_attribute_names("#metadata", attr::METADATA)
                .expression_attribute_names(format!("#mk{i}"), k)
                .expression_attribute_values(format!(":mv{i}"), sv(v));
        }
        let query = query.filter_expression(condition.join(" AND "));
        let out = query
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(limit as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| upstream("Query", e))?;
        let rows = out
            .items()
            .iter()
            .map(|item| VersionRow::of_artifact(name.clone(), item))
            .collect::<Result<Vec<_>>>()?;
        let next = crate::paging::next_sort_key(out.last_evaluated_key()).map(str::to_owned);
        Ok((rows, next))
    }
}

/// Whether `stored` is the version row `written`, as the publish that
/// wrote `written` left it (its reservation token, microsecond timestamp,
/// bytes and creator).
pub fn same_publish(stored: &Item, written: &Item) -> bool {
    [
        attr::RESERVE_TOKEN,
        attr::UPDATE_AT,
        attr::SHA256,
        attr::CREATED_BY,
    ]
    .iter()
    .all(|a| stored.get(*a) == written.get(*a))
}

/// How many of the newest version rows a retried publish looks through for
/// its own: retries come within a minute, when few others published since.
pub const PUBLISHED_BY_WINDOW: i32 = 20;

/// Whether a version row was written by a publish whose attempts' tokens
/// all start with `request` (`{request}-{attempt}`).
pub fn published_by_request(stored: &Item, request: &str) -> bool {
    stored
        .get(attr::RESERVE_TOKEN)
        .and_then(|v| v.as_s().ok())
        .and_then(|t| t.strip_prefix(request))
        .is_some_and(|rest| rest.starts_with('-'))
}

/// The upload recorded on LATEST's item as adopting its bytes, if any.
pub fn adopting(latest_item: &Item) -> Option<String> {
    latest_item
        .get(attr::ADOPTING)
        .and_then(|v| v.as_s().ok())
        .cloned()
}

/// A transaction member taking `number` on LATEST (`latest`, whose item
/// as read is `read`): sets the counter, the publish marker (its bytes)
/// and the epoch (kept, or a fresh one), only while LATEST is exactly as
/// read (not deleted, counter `number - 1`, same bytes, publish marker,
/// epoch and upload, each absent where it was absent).
pub fn take_number(table: &str, read: &Item, latest: &VersionRow, number: u32) -> Result<TxItem> {
    let mut update = Update::builder()
        .table_name(table)
        .set_key(Some(version_key(&latest.name, Version::Latest)));
    let mut condition = vec![LIVE.to_owned(), "#last_version = :read_number".to_owned()];
    for (alias, attribute) in [
        ("sha256", attr::SHA256),
        ("published", attr::PUBLISHED_SHA256),
        ("epoch", attr::EPOCH),
        ("upload_id", attr::UPLOAD_ID),
    ] {
        update = update.expression_attribute_names(format!("#{alias}"), attribute);
        match read.get(attribute) {
            Some(value) => {
                condition.push(format!("#{alias} = :read_{alias}"));
                update =
                    update.expression_attribute_values(format!(":read_{alias}"), value.clone());
            }
            None => condition.push(format!("attribute_not_exists(#{alias})")),
        }
    }
    let epoch = latest.epoch.clone().unwrap_or_else(crate::rows::new_epoch);
    update
        .update_expression("SET #last_version = :number, #published = :sha256, #epoch = :epoch")
        .condition_expression(condition.join(" AND "))
        .expression_attribute_names("#is_deleted", attr::IS_DELETED)
        .expression_attribute_names("#last_version", attr::LAST_VERSION)
        .expression_attribute_values(":false", AttributeValue::Bool(false))
        .expression_attribute_values(":read_number", nv(number - 1))
        .expression_attribute_values(":number", nv(number))
        .expression_attribute_values(":sha256", sv(&latest.sha256))
        .expression_attribute_values(":epoch", sv(epoch))
        .build()
        .map(|update| TxItem::builder().update(update).build())
        .map_err(invalid_sdk_input)
}

/// The keys of the entries of the search index by metadata (SPEC 10.3) of
/// `version` of `name`, one per `metadata` entry.
pub fn index_keys<'a>(
    name: &'a ArtifactName,
    version: Version,
    metadata: &'a BTreeMap<String, String>,
) -> impl Iterator<Item = crate::rows::Item> + 'a {
    let sk = format!("{name}/{}", version.sort_key());
    metadata.iter().map(move |(key, value)| {
        crate::rows::key(crate::layout::meta_index_pk(key, value), sk.clone())
    })
}

/// Transaction members putting the entries of the search index by metadata
/// of `version` of `name` ([`index_keys`]; unconditional puts).
pub fn index_entries(
    table: &str,
    name: &ArtifactName,
    version: Version,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<TxItem>> {
    index_keys(name, version, metadata)
        .map(|entry| {
            Put::builder()
                .table_name(table)
                .set_item(Some(entry))
                .build()
                .map(|put| TxItem::builder().put(put).build())
                .map_err(invalid_sdk_input)
        })
        .collect()
}

/// Transaction members deleting the entries [`index_entries`] put for
/// `version` of `name` (unconditional deletes): a version deleted is
/// searched no more, and its entries would otherwise count, for ever,
/// against the entries a search may read.
pub fn index_deletes(
    table: &str,
    name: &ArtifactName,
    version: Version,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<TxItem>> {
    index_keys(name, version, metadata)
        .map(|entry| {
            Delete::builder()
                .table_name(table)
                .set_key(Some(entry))
                .build()
                .map(|delete| TxItem::builder().delete(delete).build())
                .map_err(invalid_sdk_input)
        })
        .collect()
}

/// A transaction member that holds only while `name`'s LATEST exists: a
/// purge deletes LATEST before it reads the partitions it deletes, so a
/// write holding this either lands before (and is purged) or fails.
pub fn latest_exists(table: &str, name: &ArtifactName) -> Result<TxItem> {
    let check = ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(crate::rows::version_key(name, Version::Latest)))
        .condition_expression("attribute_exists(#pk)")
        .expression_attribute_names("#pk", attr::PK)
        .build()
        .map_err(invalid_sdk_input)?;
    Ok(TxItem::builder().condition_check(check).build())
}

/// A transaction member checking that alias `alias` of `name` does not
/// target `version`: its row is gone, or neither its primary nor its
/// secondary is `version`.
pub fn alias_not_targeting(
    table: &str,
    name: &ArtifactName,
    alias: &str,
    version: Version,
) -> Result<TxItem> {
    let check = ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(crate::rows::key(alias_pk(name), alias)))
        .condition_expression(
            "attribute_not_exists(#pk) OR (#version <> :v AND (attribute_not_exists(#secondary) OR #secondary <> :v))",
        )
        .expression_attribute_names("#pk", attr::PK)
        .expression_attribute_names("#version", attr::VERSION)
        .expression_attribute_names("#secondary", attr::SECONDARY_VERSION)
        .expression_attribute_values(":v", sv(version.sort_key()))
        .build()
        .map_err(invalid_sdk_input)?;
    Ok(TxItem::builder().condition_check(check).build())
}

/// The sha256 a version row's item records, read without decoding the
/// whole row (the mirror reads rows the library wrote).
pub fn recorded_sha256(item: &Item) -> Option<&str> {
    item.get(attr::SHA256)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// Whether a version row's bytes are in the blob store (`bytes = "blob"`);
/// rows the library or a previous release wrote have them at the library key.
pub fn bytes_in_blob_store(item: &Item) -> bool {
    item.get(attr::BYTES)
        .and_then(|v| v.as_s().ok())
        .is_some_and(|b| b == crate::layout::BYTES_BLOB)
}

/// A transaction member removing the alias references `stale` from the row
/// of `version` of `name`, only while that row exists.
pub fn remove_alias_references(
    table: &str,
    name: &ArtifactName,
    version: Version,
    stale: &[&String],
) -> Result<TxItem> {
    let update = Update::builder()
        .table_name(table)
        .set_key(Some(version_key(name, version)))
        .update_expression("DELETE #aliases :stale")
        .condition_expression("attribute_exists(#pk)")
        .expression_attribute_names("#pk", attr::PK)
        .expression_attribute_names("#aliases", attr::ALIASES)
        .expression_attribute_values(
            ":stale",
            AttributeValue::Ss(stale.iter().map(|a| (*a).clone()).collect()),
        )
        .build()
        .map_err(invalid_sdk_input)?;
    Ok(TxItem::builder().update(update).build())
}

/// What the library's object of a LATEST says of its bytes (its row says
/// neither).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Described {
    pub content_type: Option<String>,
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// A transaction member marking LATEST as stored in the blob store,
/// forgetting its library object version and adoption, only while its
/// bytes are still `sha256` and not marked so yet.
pub fn adopted_member(
    table: &str,
    name: &ArtifactName,
    sha256: &str,
    described: Option<&Described>,
) -> Result<TxItem> {
    let mut update = aws_sdk_dynamodb::types::Update::builder();
    // What the library's object says of the bytes, where the row says
    // nothing (the library keeps it on the object alone): the versions
    // published from this LATEST, and the mirror's copies of them, keep it.
    let mut describe = String::new();
    if let Some(d) = described {
        if let Some(content_type) = &d.content_type {
            describe.push_str(", #content_type = if_not_exists(#content_type, :content_type)");
            update = update
                .expression_attribute_names("#content_type", attr::CONTENT_TYPE)
                .expression_attribute_values(":content_type", sv(content_type));
        }
        if !d.metadata.is_empty() {
            describe.push_str(", #metadata = if_not_exists(#metadata, :metadata)");
            update = update
                .expression_attribute_names("#metadata", attr::METADATA)
                .expression_attribute_values(":metadata", crate::rows::string_map(&d.metadata));
        }
    }
    let update = update
        .table_name(table)
        .set_key(Some(version_key(name, Version::Latest)))
        .update_expression(format!(
            "SET #bytes = :blob{describe} REMOVE #s3_version_id, #adopting"
        ))
        .condition_expression("#sha256 = :sha256 AND attribute_not_exists(#bytes)")
        .expression_attribute_names("#bytes", attr::BYTES)
        .expression_attribute_names("#s3_version_id", attr::S3_VERSION_ID)
        .expression_attribute_names("#adopting", attr::ADOPTING)
        .expression_attribute_names("#sha256", attr::SHA256)
        .expression_attribute_values(":blob", sv(crate::layout::BYTES_BLOB))
        .expression_attribute_values(":sha256", sv(sha256))
        .build()
        .map_err(crate::sdk_error::invalid_sdk_input)?;
    Ok(TxItem::builder().update(update).build())
}
