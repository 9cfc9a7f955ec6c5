//! The permission targets (SPEC 10.4): read on every request, replaced as
//! one document with its history entry in one transaction.

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use serde::Serialize;

use super::tx::{TransactFailure, Tx};
use super::{Repository, decode_cursor, encode_cursor, page_size};
use crate::access::{Caller, TagSubject, Tags, Targets, tag_subject};
use crate::error::{Error, Result};
use crate::layout::{ACCESS_HISTORY_PK, ACCESS_PK, ACCESS_SK, attr, format_update_at, now};
use crate::model::Page;
use crate::rows::{key, nv, sv};

/// The targets as stored: the document, its revision (0: never set) and
/// who set it when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccessDocument {
    #[serde(flatten)]
    pub targets: Targets,
    pub revision: u64,
    pub update_at: Option<String>,
    pub updated_by: Option<String>,
}

/// One change of the targets: who, when, before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessChange {
    pub revision: u64,
    pub at: String,
    pub actor: String,
    pub targets: Targets,
    pub previous: Targets,
}

fn document_of(item: &crate::rows::Item) -> Result<Targets> {
    let text = item
        .get(attr::DOCUMENT)
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| Error::internal("access targets", "no document".to_owned()))?;
    serde_json::from_str(text).map_err(|e| Error::internal("access targets", e))
}

/// How long a caller's looked-up tags are used before they are looked up
/// again: a tag change on a role applies within this long (IAM itself is
/// eventually consistent).
pub const TAGS_FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(60);
/// Callers remembered at most; past it the cache starts over.
const TAG_CACHE_CALLERS: usize = 1024;

/// Tags looked up lately, by caller ARN, with when.
#[derive(Debug, Default)]
pub(crate) struct TagCache(
    std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Tags)>>,
);

impl TagCache {
    fn get(&self, arn: &str) -> Option<Tags> {
        let cache = self.0.lock().ok()?;
        let (at, tags) = cache.get(arn)?;
        (at.elapsed() < TAGS_FRESH_FOR).then(|| tags.clone())
    }

    fn put(&self, arn: &str, tags: &Tags) {
        if let Ok(mut cache) = self.0.lock() {
            if cache.len() >= TAG_CACHE_CALLERS {
                cache.clear();
            }
            cache.insert(arn.to_owned(), (std::time::Instant::now(), tags.clone()));
        }
    }
}

impl Repository {
    /// `arn` as a caller of `targets`: with its IAM role's or user's tags
    /// when a target names a tag and the principal is of this deployment's
    /// account (`ACCOUNT_ID`), else its ARN alone. At most one
    /// ListRoleTags / ListUserTags per caller and [`TAGS_FRESH_FOR`]; a
    /// principal IAM does not know carries no tags.
    pub async fn caller(&self, arn: &str, targets: &Targets) -> Result<Caller> {
        let mut caller = Caller::new(arn);
        if !targets.names_tags() {
            return Ok(caller);
        }
        let Some(subject) = self
            .account_id
            .as_deref()
            .and_then(|account| tag_subject(arn, account))
        else {
            return Ok(caller);
        };
        if let Some(tags) = self.tag_cache.get(arn) {
            caller.tags = tags;
            return Ok(caller);
        }
        caller.tags = self.principal_tags(&subject).await?;
        self.tag_cache.put(arn, &caller.tags);
        Ok(caller)
    }

    /// The tags of one role or user, every page.
    async fn principal_tags(&self, subject: &TagSubject) -> Result<Tags> {
        let mut tags = Tags::new();
        let mut marker = None;
        loop {
            let (page, truncated, next) = match subject {
                TagSubject::Role(role) => {
                    match self
                        .iam
                        .list_role_tags()
                        .role_name(role)
                        .set_marker(marker.take())
                        .send()
                        .await
                    {
                        Ok(out) => (out.tags, out.is_truncated, out.marker),
                        Err(e)
                            if e.as_service_error()
                                .is_some_and(|e| e.is_no_such_entity_exception()) =>
                        {
                            return Ok(Tags::new());
                        }
                        Err(e) => return Err(crate::sdk_error::upstream("ListRoleTags", e)),
                    }
                }
                TagSubject::User(user) => {
                    match self
                        .iam
                        .list_user_tags()
                        .user_name(user)
                        .set_marker(marker.take())
                        .send()
                        .await
                    {
                        Ok(out) => (out.tags, out.is_truncated, out.marker),
                        Err(e)
                            if e.as_service_error()
                                .is_some_and(|e| e.is_no_such_entity_exception()) =>
                        {
                            return Ok(Tags::new());
                        }
                        Err(e) => return Err(crate::sdk_error::upstream("ListUserTags", e)),
                    }
                }
            };
            tags.extend(page.into_iter().map(|t| (t.key, t.value)));
            match next {
                Some(m) if truncated => marker = Some(m),
                _ => return Ok(tags),
            }
        }
    }

    /// The permission targets, strongly consistent. One GetItem.
    pub async fn access_targets(&self) -> Result<AccessDocument> {
        let item = self.table.get(key(ACCESS_PK, ACCESS_SK)).await?;
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
            update_at: s(attr::UPDATE_AT),
            updated_by: s(attr::ACTOR),
        })
    }

    /// Replaces the targets with `targets`, recording the change; with
    /// `expected`, only if they are at that revision (412 otherwise). One
    /// GetItem, one TransactWriteItems.
    pub async fn put_access_targets(
        &self,
        targets: &Targets,
        actor: &str,
        expected: Option<u64>,
    ) -> Result<AccessDocument> {
        targets.validate()?;
        let current = self.access_targets().await?;
        if let Some(r) = expected
            && r != current.revision
        {
            return Err(Error::AliasModified {
                name: "access".into(),
                alias: "targets".into(),
                detail: format!("are at revision {}, not {r}", current.revision),
            });
        }
        let revision = current.revision + 1;
        let at = format_update_at(now());
        let document = serde_json::to_string(targets).map_err(|e| Error::internal("access", e))?;
        let mut item = key(ACCESS_PK, ACCESS_SK);
        item.insert(attr::DOCUMENT.into(), sv(&document));
        item.insert(attr::REVISION.into(), nv(revision));
        item.insert(attr::UPDATE_AT.into(), sv(&at));
        item.insert(attr::ACTOR.into(), sv(actor));
        let put = Put::builder()
            .table_name(&self.layout.table)
            .set_item(Some(item));
        let put = if current.revision == 0 {
            put.condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", attr::PK)
        } else {
            put.condition_expression("#revision = :read")
                .expression_attribute_names("#revision", attr::REVISION)
                .expression_attribute_values(":read", nv(current.revision))
        }
        .build()
        .map_err(super::invalid_sdk_input)?;
        let mut entry = key(ACCESS_HISTORY_PK, format!("{revision:012}"));
        entry.insert(attr::DOCUMENT.into(), sv(&document));
        entry.insert(
            attr::PREVIOUS.into(),
            sv(serde_json::to_string(&current.targets)
                .map_err(|e| Error::internal("access", e))?),
        );
        entry.insert(attr::UPDATE_AT.into(), sv(&at));
        entry.insert(attr::ACTOR.into(), sv(actor));
        entry.insert(attr::REVISION.into(), nv(revision));
        let history = Put::builder()
            .table_name(&self.layout.table)
            .set_item(Some(entry))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", attr::PK)
            .build()
            .map_err(super::invalid_sdk_input)?;
        let mut tx = Tx::new();
        tx.push((), TransactWriteItem::builder().put(put).build());
        tx.push((), TransactWriteItem::builder().put(history).build());
        let token = uuid::Uuid::new_v4().simple().to_string();
        match self.transact_tx(&tx, &token).await {
            Ok(()) => Ok(AccessDocument {
                targets: targets.clone(),
                revision,
                update_at: Some(at),
                updated_by: Some(actor.to_owned()),
            }),
            Err(TransactFailure::Conditions(_) | TransactFailure::Contention) => {
                let now = self.access_targets().await?;
                // Our own write, landed (its answer lost).
                if now.revision == revision
                    && now.updated_by.as_deref() == Some(actor)
                    && now.update_at.as_deref() == Some(at.as_str())
                {
                    return Ok(now);
                }
                Err(Error::AliasModified {
                    name: "access".into(),
                    alias: "targets".into(),
                    detail: format!(
                        "changed meanwhile (now at revision {}); read them again",
                        now.revision
                    ),
                })
            }
            Err(TransactFailure::Failed(e)) => Err(e),
        }
    }

    /// The changes of the targets, newest first. One Query per page.
    pub async fn access_history(
        &self,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<AccessChange>> {
        let limit = page_size(limit)?;
        let start = decode_cursor(ACCESS_HISTORY_PK, cursor, |sk| {
            sk.len() == 12 && sk.bytes().all(|b| b.is_ascii_digit())
        })?;
        let out = self
            .ddb
            .query()
            .table_name(&self.layout.table)
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
                at: s(attr::UPDATE_AT),
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
