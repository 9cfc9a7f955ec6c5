//! Retention's requests (SPEC 7.2, 7.8, 7.16): the scheduled job's
//! bookkeeping and lease, the condemned items that fence a blob's
//! deletion, and the stamps a reclaim pass puts on soft-deleted rows.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue};
use time::OffsetDateTime;

use crate::error::Result;
use crate::layout::{
    RETENTION_PK, attr, condemned_pk, format_update_at, now, unix_millis, verified_pk,
};
use crate::names::{ArtifactName, Version};
use crate::rows::{Item, key, nv, sv, version_key};
use crate::sdk_error::{applied, condition_failed, invalid_sdk_input};
use crate::table::Table;
use crate::tx::TxItem;

/// What one scheduled pass leaves for the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionBookkeeping {
    /// The entry of the names listing the last pass stopped after, relative
    /// to the store prefix (`name/` for an artifact), when it stopped early.
    pub after: Option<String>,
    /// Artifacts whose retention failed, to be tried first by the next pass.
    pub failed: Vec<String>,
}

impl RetentionBookkeeping {
    /// Lenient: bookkeeping is advisory, and a value it cannot read means
    /// only that a pass starts over or retries less.
    fn from_item(item: &Item) -> Self {
        Self {
            after: item.get(AFTER).and_then(|v| v.as_s().ok()).cloned(),
            failed: item
                .get(FAILED)
                .and_then(|v| v.as_l().ok())
                .map(|list| list.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
                .unwrap_or_default(),
        }
    }
}

fn epoch_millis(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
}

const RETENTION_SK: &str = "cursor";
const AFTER: &str = "after";
const FAILED: &str = "failed";
/// The pass holding the lease, and until when (milliseconds since the epoch).
const LEASE_OWNER: &str = "lease_owner";
const LEASE_UNTIL: &str = "lease_until";

/// A condemned item whose deletion is under way or was interrupted (no
/// `deleted_at` yet).
pub struct PendingCondemned {
    /// The condemned blob's digest (the item's sort key).
    pub sha256: String,
    /// The pass that condemned it (empty: an item of a release before
    /// passes were named).
    pub owner: String,
}

/// The time stamps a reclaim pass puts on a soft-deleted version row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionStamp {
    /// When it was soft-deleted (rows the library deleted carry none).
    Deleted,
    /// When its bytes were reclaimed.
    Reclaimed,
}

impl VersionStamp {
    fn attribute(self) -> &'static str {
        match self {
            Self::Deleted => attr::DELETED_AT,
            Self::Reclaimed => attr::RECLAIMED_AT,
        }
    }
}

impl Table {
    /// Takes the scheduled job's lease for `owner` until `until`
    /// (UpdateItem, returning the item as written), on condition that no
    /// lease stands, or it expired, or it is `owner`'s own. `None`: another
    /// pass holds it.
    pub async fn take_retention_lease(
        &self,
        owner: &str,
        until: SystemTime,
    ) -> Result<Option<RetentionBookkeeping>> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(RETENTION_PK, RETENTION_SK)))
            .update_expression("SET #owner = :owner, #until = :until, #update_at = :now")
            .condition_expression(
                "attribute_not_exists(#until) OR #until <= :clock OR #owner = :owner",
            )
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_names("#until", LEASE_UNTIL)
            .expression_attribute_names("#update_at", attr::UPDATE_AT)
            .expression_attribute_values(":owner", sv(owner))
            .expression_attribute_values(":until", nv(epoch_millis(until)))
            .expression_attribute_values(":clock", nv(epoch_millis(SystemTime::now())))
            .expression_attribute_values(":now", sv(format_update_at(now())))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => Ok(Some(RetentionBookkeeping::from_item(
                out.attributes().unwrap_or(&Default::default()),
            ))),
            Err(e) if condition_failed(&e) => Ok(None),
            Err(e) => Err(crate::sdk_error::upstream("UpdateItem", e)),
        }
    }

    /// Writes `state` as the scheduled job's bookkeeping and releases the
    /// lease (UpdateItem), on condition that `owner` still holds it.
    /// `Ok(false)`: it no longer did.
    pub async fn release_retention_lease(
        &self,
        owner: &str,
        state: &RetentionBookkeeping,
    ) -> Result<bool> {
        let mut set = vec!["#update_at = :now"];
        let mut remove = vec!["#owner", "#until"];
        let mut request = self
            .ddb
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(RETENTION_PK, RETENTION_SK)))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", LEASE_OWNER)
            .expression_attribute_names("#until", LEASE_UNTIL)
            .expression_attribute_names("#update_at", attr::UPDATE_AT)
            .expression_attribute_names("#after", AFTER)
            .expression_attribute_names("#failed", FAILED)
            .expression_attribute_values(":owner", sv(owner))
            .expression_attribute_values(":now", sv(format_update_at(now())));
        match &state.after {
            Some(after) => {
                set.push("#after = :after");
                request = request.expression_attribute_values(":after", sv(after));
            }
            None => remove.push("#after"),
        }
        if state.failed.is_empty() {
            remove.push("#failed");
        } else {
            set.push("#failed = :failed");
            let failed = state.failed.iter().map(sv).collect();
            request = request.expression_attribute_values(":failed", AttributeValue::L(failed));
        }
        let out = request
            .update_expression(format!(
                "SET {} REMOVE {}",
                set.join(", "),
                remove.join(", ")
            ))
            .send()
            .await;
        applied("UpdateItem", out)
    }

    /// The scheduled job's bookkeeping as it stands (strongly consistent
    /// GetItem; none yet reads as empty).
    pub async fn retention_bookkeeping(&self) -> Result<RetentionBookkeeping> {
        let item = self.get(key(RETENTION_PK, RETENTION_SK)).await?;
        Ok(RetentionBookkeeping::from_item(
            item.as_ref().unwrap_or(&Default::default()),
        ))
    }

    /// The condemned items of `name` without `deleted_at` (one consistent
    /// read of the partition, every page), in sort-key order.
    pub async fn pending_condemned(&self, name: &ArtifactName) -> Result<Vec<PendingCondemned>> {
        let mut pending = Vec::new();
        for item in self.query_all(&condemned_pk(name)).await? {
            if item.contains_key(attr::DELETED_AT) {
                continue;
            }
            let (Some(sha256), owner) = (
                item.get(attr::SK).and_then(|v| v.as_s().ok()),
                item.get(attr::PURGE_ID).and_then(|v| v.as_s().ok()),
            ) else {
                continue;
            };
            pending.push(PendingCondemned {
                sha256: sha256.clone(),
                owner: owner.cloned().unwrap_or_default(),
            });
        }
        Ok(pending)
    }

    /// The transaction member putting up the condemned item of `sha256`
    /// for pass `pass` (a Put, started now; the caller adds the fence that
    /// keeps it out of a running purge), after reading the item as it
    /// stands (strongly consistent GetItem): its `deleted_at` (or the
    /// `prior_deleted_at` it kept aside; else 0) is kept aside on the new
    /// item as `prior_deleted_at`. The Put holds only while the item is
    /// still as read: a condition failure means another pass condemned,
    /// lifted or stamped it meanwhile, and the caller reads it again.
    pub async fn condemn_blob_put(
        &self,
        name: &ArtifactName,
        sha256: &str,
        pass: &str,
    ) -> Result<TxItem> {
        let at = key(condemned_pk(name), sha256);
        let read = self.get(at.clone()).await?;
        let prior = read
            .as_ref()
            .and_then(|old| {
                old.get(attr::DELETED_AT)
                    .or_else(|| old.get(attr::PRIOR_DELETED_AT))
                    .cloned()
            })
            .unwrap_or_else(|| nv(0));
        let mut item = at;
        item.insert(attr::STARTED_AT.into(), nv(now().unix_timestamp()));
        item.insert(attr::PURGE_ID.into(), sv(pass));
        item.insert(attr::PRIOR_DELETED_AT.into(), prior);
        let mut put = Put::builder().table_name(&self.name).set_item(Some(item));
        // Only over the item as read: another pass may have condemned,
        // lifted or stamped it since (an overwrite would drop its stamp,
        // SPEC 7.15).
        let (condition, names, values) = as_read(read.as_ref());
        put = put.condition_expression(condition);
        for (placeholder, name) in names {
            put = put.expression_attribute_names(placeholder, name);
        }
        for (placeholder, value) in values {
            put = put.expression_attribute_values(placeholder, value);
        }
        let put = put.build().map_err(invalid_sdk_input)?;
        Ok(TxItem::builder().put(put).build())
    }

    /// Whether the condemned item of `sha256` still stands as `owner`'s
    /// (strongly consistent GetItem): it exists, is not stamped deleted,
    /// and is `owner`'s or has no owner (an item of a release before
    /// passes were named) — what [`Self::lift_condemned`] requires too.
    pub async fn condemned_stands(
        &self,
        name: &ArtifactName,
        sha256: &str,
        owner: &str,
    ) -> Result<bool> {
        let item = self.get(key(condemned_pk(name), sha256)).await?;
        Ok(item.is_some_and(|item| {
            !item.contains_key(attr::DELETED_AT)
                && item
                    .get(attr::PURGE_ID)
                    .and_then(|v| v.as_s().ok())
                    .is_none_or(|o| o == owner)
        }))
    }

    /// Lifts the condemned item of `sha256` (UpdateItem: `deleted_at`
    /// restored from `prior_deleted_at`, else 0; owner and prior removed),
    /// on condition that it exists, is not stamped deleted, and is `owner`'s
    /// or has no owner. A condition that fails is no error.
    pub async fn lift_condemned(
        &self,
        name: &ArtifactName,
        sha256: &str,
        owner: &str,
    ) -> Result<()> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(condemned_pk(name), sha256)))
            .update_expression(
                "SET #deleted_at = if_not_exists(#prior, :zero) REMOVE #owner, #prior",
            )
            .condition_expression(
                "(#owner = :owner OR attribute_not_exists(#owner)) \
                 AND attribute_exists(#pk) AND attribute_not_exists(#deleted_at)",
            )
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#owner", attr::PURGE_ID)
            .expression_attribute_names("#prior", attr::PRIOR_DELETED_AT)
            .expression_attribute_names("#deleted_at", attr::DELETED_AT)
            .expression_attribute_values(":owner", sv(owner))
            .expression_attribute_values(":zero", nv(0))
            .send()
            .await;
        applied("UpdateItem", out).map(|_applied| ())
    }

    /// Stamps the condemned item of `sha256` deleted now (UpdateItem;
    /// milliseconds since the epoch), on condition that the item exists: a
    /// purge of the artifact that deleted it meanwhile took the fence with
    /// it, and an UpdateItem would otherwise create a stray item outliving
    /// the purge. A condition that fails is no error.
    ///
    /// The item need not be the caller's any more (another pass may have
    /// condemned the bytes again since): the stamp records a fact, that
    /// the bytes were deleted at this moment, whoever owns the item. Were
    /// it dropped, that other pass could lift the item back to the older
    /// `prior_deleted_at`, and a commit that read the blob before this
    /// deletion would then pass `not_condemned` onto bytes that are gone.
    /// Stamped, the other pass cannot lift it (`lift_condemned` wants no
    /// `deleted_at`) and finishes the deletion or finds it finished.
    pub async fn stamp_condemned_deleted(&self, name: &ArtifactName, sha256: &str) -> Result<()> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(condemned_pk(name), sha256)))
            .update_expression("SET #deleted_at = :now")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#deleted_at", attr::DELETED_AT)
            .expression_attribute_values(":now", nv(unix_millis(now())))
            .send()
            .await;
        // Purged meanwhile: nothing left to stamp.
        applied("UpdateItem", out).map(|_applied| ())
    }

    /// Deletes the verified-blob row of `sha256` if it names one of the
    /// object versions `versions` (DeleteItem, on condition that its
    /// `blob_version` is among them; one request per 100 of them, as
    /// DynamoDB's `IN` takes at most 100 values). A row naming another
    /// version (a verification of bytes uploaded after `versions` were
    /// listed: those bytes stay) is kept; a condition that fails is no
    /// error.
    pub async fn delete_verified_blob(
        &self,
        name: &ArtifactName,
        sha256: &str,
        versions: &[&str],
    ) -> Result<()> {
        for chunk in versions.chunks(100) {
            let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!(":v{i}")).collect();
            let mut request = self
                .ddb
                .delete_item()
                .table_name(&self.name)
                .set_key(Some(key(verified_pk(name), sha256)))
                .condition_expression(format!("#version IN ({})", placeholders.join(", ")))
                .expression_attribute_names("#version", attr::BLOB_VERSION);
            for (placeholder, version) in placeholders.iter().zip(chunk) {
                request = request.expression_attribute_values(placeholder, sv(*version));
            }
            if applied("DeleteItem", request.send().await)? {
                break;
            }
        }
        Ok(())
    }

    /// Stamps `stamp` at `at` on the soft-deleted row of `version`, only
    /// while it is the very row read (`read_update_at`: its `update_at` as
    /// stored, which never changes while a row lives; `None`: it had none).
    /// A purge, a re-creation of the number and its deletion, between the
    /// pass's read and this write, left another life's row stamped
    /// reclaimed (and the mirror then deleted its objects before its grace
    /// period). `false`: not that row any more (or purged), nothing written.
    pub async fn stamp_version(
        &self,
        name: &ArtifactName,
        version: Version,
        stamp: VersionStamp,
        at: OffsetDateTime,
        read_update_at: Option<&str>,
    ) -> Result<bool> {
        let mut update = self.ddb.update_item();
        let same_row = match read_update_at {
            Some(read_at) => {
                update = update.expression_attribute_values(":read_at", sv(read_at));
                "#update_at = :read_at"
            }
            None => "attribute_not_exists(#update_at)",
        };
        let out = update
            .table_name(&self.name)
            .set_key(Some(version_key(name, version)))
            .update_expression("SET #attr = :at")
            .condition_expression(format!(
                "attribute_exists(#pk) AND #is_deleted = :true AND {same_row}"
            ))
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#is_deleted", attr::IS_DELETED)
            .expression_attribute_names("#update_at", attr::UPDATE_AT)
            .expression_attribute_names("#attr", stamp.attribute())
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":at", sv(format_update_at(at)))
            .send()
            .await;
        applied("UpdateItem", out)
    }
}

/// What a condemned item's state is made of: who condemned it, when, and
/// the deletion stamps.
const CONDEMNED_STATE: [&str; 4] = [
    attr::PURGE_ID,
    attr::STARTED_AT,
    attr::DELETED_AT,
    attr::PRIOR_DELETED_AT,
];

/// A condition that holds only while the condemned item is as `read`
/// (absent when `None`) in every attribute of [`CONDEMNED_STATE`], with
/// the attribute names and values it uses.
#[allow(clippy::type_complexity)]
fn as_read(
    read: Option<&Item>,
) -> (
    String,
    Vec<(String, &'static str)>,
    Vec<(String, AttributeValue)>,
) {
    let mut names = vec![("#pk".to_owned(), attr::PK)];
    let Some(read) = read else {
        return ("attribute_not_exists(#pk)".to_owned(), names, Vec::new());
    };
    let mut values = Vec::new();
    let mut parts = vec!["attribute_exists(#pk)".to_owned()];
    for (i, name) in CONDEMNED_STATE.into_iter().enumerate() {
        names.push((format!("#a{i}"), name));
        match read.get(name) {
            Some(value) => {
                parts.push(format!("#a{i} = :a{i}"));
                values.push((format!(":a{i}"), value.clone()));
            }
            None => parts.push(format!("attribute_not_exists(#a{i})")),
        }
    }
    (parts.join(" AND "), names, values)
}
