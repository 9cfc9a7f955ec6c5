//! The permission targets (SPEC 10.4): one item, `__access` / `targets`,
//! holding the whole document, its revision and who set it when; each
//! change an entry of `__access/history` (sort key: the revision, 12
//! digits) with the document before and after.

use artifact_core::access::Targets;
use aws_sdk_dynamodb::types::{AttributeValue, Put};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::layout::{ACCESS_HISTORY_PK, ACCESS_PK, ACCESS_SK, attr, parse_update_at};
use crate::model::Page;
use crate::paging::{decode_cursor, encode_cursor};
use crate::rows::{Item, key, nv, sv};
use crate::table::Table;
use crate::tx::TxItem;

/// The targets as stored: the document, its revision (0: never set) and
/// who set it when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccessDocument {
    #[serde(flatten)]
    pub targets: Targets,
    pub revision: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub update_at: Option<time::OffsetDateTime>,
    pub updated_by: Option<String>,
}

/// One change of the targets: who, when, before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessChange {
    pub revision: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub at: Option<time::OffsetDateTime>,
    pub actor: String,
    pub targets: Targets,
    pub previous: Targets,
}

fn document_of(item: &Item) -> Result<Targets> {
    let text = item
        .get(attr::DOCUMENT)
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| Error::internal("access targets", "no document".to_owned()))?;
    serde_json::from_str(text).map_err(|e| Error::internal("access targets", e))
}

impl Table {
    /// The permission targets, strongly consistent (one GetItem); the
    /// default document (revision 0) when never set.
    pub async fn access_targets(&self) -> Result<AccessDocument> {
        let item = self.get(key(ACCESS_PK, ACCESS_SK)).await?;
        let Some(item) = item.as_ref() else {
            return Ok(AccessDocument::default());
        };
        let s = |a: &str| item.get(a).and_then(|v| v.as_s().ok()).cloned();
        Ok(AccessDocument {
            targets: document_of(item)?,
            revision: item
                .get(attr::REVISION)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            update_at: s(attr::UPDATE_AT).as_deref().and_then(parse_update_at),
            updated_by: s(attr::ACTOR),
        })
    }

    /// The revision of the newest change of the targets, 0 when none (one
    /// Query of one item, strongly consistent).
    pub async fn newest_access_revision(&self) -> Result<u64> {
        let newest = self.access_history(1, None).await?;
        Ok(newest.items.first().map_or(0, |change| change.revision))
    }

    /// One page of the changes of the targets, newest first (one Query,
    /// strongly consistent): at most `limit` after `cursor` (a cursor of
    /// this listing: refused, 400, otherwise).
    pub async fn access_history(
        &self,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<AccessChange>> {
        let start = decode_cursor(ACCESS_HISTORY_PK, cursor, |sk| {
            sk.len() == 12 && sk.bytes().all(|b| b.is_ascii_digit())
        })?;
        let out = self
            .ddb
            .query()
            .table_name(&self.name)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_values(":pk", AttributeValue::S(ACCESS_HISTORY_PK.to_owned()))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(limit as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| crate::sdk_error::upstream("Query", e))?;
        let mut items = Vec::new();
        for item in out.items() {
            let s = |a: &str| {
                item.get(a)
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default()
            };
            let previous = serde_json::from_str(&s(attr::PREVIOUS))
                .map_err(|e| Error::internal("access history", e))?;
            items.push(AccessChange {
                revision: item
                    .get(attr::REVISION)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
                at: parse_update_at(&s(attr::UPDATE_AT)),
                actor: s(attr::ACTOR),
                targets: document_of(item)?,
                previous,
            });
        }
        let next_cursor = out
            .last_evaluated_key()
            .and_then(|k| k.get(attr::SK))
            .and_then(|v| v.as_s().ok())
            .map(|sk| encode_cursor(sk));
        Ok(Page { items, next_cursor })
    }
}

/// A transaction member replacing the targets' item with `document` (the
/// targets as JSON) at `revision`, set by `actor` at `at`. Its condition:
/// the item is still at the revision read, `read` (no item at all when
/// `read` is 0: never set).
pub fn put_targets(
    table: &str,
    document: &str,
    revision: u64,
    at: &str,
    actor: &str,
    read: u64,
) -> Result<TxItem> {
    let mut item = key(ACCESS_PK, ACCESS_SK);
    item.insert(attr::DOCUMENT.into(), sv(document));
    item.insert(attr::REVISION.into(), nv(revision));
    item.insert(attr::UPDATE_AT.into(), sv(at));
    item.insert(attr::ACTOR.into(), sv(actor));
    let put = Put::builder().table_name(table).set_item(Some(item));
    let put = if read == 0 {
        put.condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", attr::PK)
    } else {
        put.condition_expression("#revision = :read")
            .expression_attribute_names("#revision", attr::REVISION)
            .expression_attribute_values(":read", nv(read))
    }
    .build()
    .map_err(crate::sdk_error::invalid_sdk_input)?;
    Ok(TxItem::builder().put(put).build())
}

/// A transaction member putting the history entry of revision `revision`
/// of the targets: `document` (the new targets as JSON), the `previous`
/// targets, who set them when. Its condition: no entry of that revision
/// yet.
pub fn put_targets_history(
    table: &str,
    revision: u64,
    document: &str,
    previous: &Targets,
    at: &str,
    actor: &str,
) -> Result<TxItem> {
    let mut entry = key(ACCESS_HISTORY_PK, format!("{revision:012}"));
    entry.insert(attr::DOCUMENT.into(), sv(document));
    entry.insert(
        attr::PREVIOUS.into(),
        sv(serde_json::to_string(previous).map_err(|e| Error::internal("access", e))?),
    );
    entry.insert(attr::UPDATE_AT.into(), sv(at));
    entry.insert(attr::ACTOR.into(), sv(actor));
    entry.insert(attr::REVISION.into(), nv(revision));
    let history = Put::builder()
        .table_name(table)
        .set_item(Some(entry))
        .condition_expression("attribute_not_exists(#pk)")
        .expression_attribute_names("#pk", attr::PK)
        .build()
        .map_err(crate::sdk_error::invalid_sdk_input)?;
    Ok(TxItem::builder().put(history).build())
}
