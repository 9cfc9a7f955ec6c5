//! Upload rows (SPEC 4, 4.1): their reads, their state changes outside a
//! commit (superseded, verifying, a verification's checkpoint, failed), and
//! the members of the transactions that start and commit an upload (no
//! purge running, the bytes not condemned, the row `→ committed`, LATEST
//! unchanged or written anew, the verified blob, the registry entry).

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, Update};
use time::OffsetDateTime;

use crate::blob_rules::VerifiedBlob;
use crate::change_events::{self, ChangeEvent};
use crate::error::Result;
use crate::layout::{
    BYTES_BLOB, FENCE_SK, attr, condemned_pk, fence_pk, format_update_at, now, upload_pk,
    verified_pk,
};
use crate::limits::PURGE_FENCE_STALE;
use crate::names::{ArtifactName, UploadId, Version};
use crate::rows::{
    Item, LIVE, UploadRow, UploadState, VersionRow, key, new_epoch, nv, registry_key, sv,
    version_key,
};
use crate::sdk_error::{applied, invalid_sdk_input, upstream};
use crate::table::Table;
use crate::tx::TxItem;

/// LATEST written before the commit `:before` (both in the `update_at`
/// format); `#update_at`, `#committed_at` name the attributes. A LATEST
/// without `update_at` is the library's bare deleted row (its delete of a
/// LATEST that did not exist), older than any commit.
const OLDER_THAN_COMMIT: &str = " AND (attribute_not_exists(#update_at) OR #update_at < :before) AND \
     (attribute_not_exists(#committed_at) OR #committed_at < :before)";

/// The upload row and LATEST as one commit reads them: each decoded, with
/// the item as read (the commit writes them back whole).
pub type UploadAndLatest = (Option<(UploadRow, Item)>, Option<(VersionRow, Item)>, bool);

impl Table {
    /// The upload row's item as stored, strongly consistent (GetItem).
    pub async fn get_upload_item(
        &self,
        name: &ArtifactName,
        id: &UploadId,
    ) -> Result<Option<Item>> {
        self.get(key(upload_pk(name), id.as_str())).await
    }

    /// The verified-blob row of `sha256`, strongly consistent (GetItem).
    pub async fn get_verified_blob(
        &self,
        name: &ArtifactName,
        sha256: &str,
    ) -> Result<Option<VerifiedBlob>> {
        let item = self.get(key(verified_pk(name), sha256)).await?;
        Ok(item.as_ref().and_then(crate::rows::verified_blob))
    }

    /// Deletes the upload row of `upload_id` (DeleteItem, unconditional:
    /// a retry is harmless).
    pub async fn delete_upload(&self, name: &ArtifactName, upload_id: &str) -> Result<()> {
        self.ddb
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(key(upload_pk(name), upload_id)))
            .send()
            .await
            .map_err(|e| upstream("DeleteItem", e))?;
        Ok(())
    }

    /// The upload row and LATEST, strongly consistent, in one BatchGetItem
    /// (re-asking for unprocessed keys), each decoded beside its item; and
    /// whether the artifact's registry row exists (with no LATEST, it tells
    /// a purge that stopped part-way, whose versions may remain, from a
    /// first commit).
    pub async fn upload_and_latest(
        &self,
        name: &ArtifactName,
        id: &UploadId,
    ) -> Result<UploadAndLatest> {
        let registry = registry_key(name);
        let items = self
            .batch_get(vec![
                key(upload_pk(name), id.as_str()),
                version_key(name, Version::Latest),
                registry.clone(),
            ])
            .await?;
        let (mut upload, mut latest, mut registered) = (None, None, false);
        let pk = upload_pk(name);
        for item in items {
            if item.get(attr::PK).and_then(|v| v.as_s().ok()) == Some(&pk) {
                upload = Some((UploadRow::from_item(name, &item)?, item));
            } else if item.get(attr::PK) == registry.get(attr::PK) {
                registered = true;
            } else {
                latest = Some((VersionRow::from_item(&item)?, item));
            }
        }
        Ok((upload, latest, registered))
    }

    /// The upload `verifying → superseded` with `reason`, its hash state
    /// dropped (UpdateItem). Only while it is verifying: `false` when it
    /// is not (moved on meanwhile, or purged).
    pub async fn supersede_upload(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        reason: &str,
    ) -> Result<bool> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(upload_pk(name), id.as_str())))
            .update_expression(
                "SET #state = :superseded, #reason = :reason, #update_at = :now REMOVE #hash_state",
            )
            .condition_expression("#state = :verifying")
            .expression_attribute_names("#state", attr::STATE)
            .expression_attribute_names("#reason", attr::REASON)
            .expression_attribute_names("#update_at", attr::UPDATE_AT)
            .expression_attribute_names("#hash_state", attr::HASH_STATE)
            .expression_attribute_values(":superseded", sv(UploadState::Superseded.as_str()))
            .expression_attribute_values(":verifying", sv(UploadState::Verifying.as_str()))
            .expression_attribute_values(":reason", sv(reason))
            .expression_attribute_values(":now", sv(format_update_at(now())))
            .send()
            .await;
        applied("UpdateItem", out)
    }

    /// Stamps a pending multipart upload's row with `now` as the time its
    /// commit starts completing its parts (UpdateItem), before it does:
    /// another upload of the same bytes takes it for cut off only once
    /// that time is older than a commit runs. Only while it is pending and
    /// unexpired at `now`: `false` otherwise.
    pub async fn stamp_upload_completing(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(upload_pk(name), id.as_str())))
            .update_expression("SET #completing_at = :now_secs")
            .condition_expression("#state = :pending AND #expires_at > :now_secs")
            .expression_attribute_names("#completing_at", attr::COMPLETING_AT)
            .expression_attribute_names("#state", attr::STATE)
            .expression_attribute_names("#expires_at", attr::EXPIRES_AT)
            .expression_attribute_values(":pending", sv(UploadState::Pending.as_str()))
            .expression_attribute_values(":now_secs", nv(now.unix_timestamp()))
            .send()
            .await;
        applied("UpdateItem", out)
    }

    /// The upload `pending → superseded` with `reason` (UpdateItem): its
    /// commit was cut off after completing its parts, which another upload
    /// of the same bytes now completes over. Only while it is pending with
    /// the completion stamp `stamp` as read: `false` otherwise (a retry of
    /// its commit stamped again, or moved it on).
    pub async fn supersede_cut_off_upload(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        stamp: i64,
        reason: &str,
    ) -> Result<bool> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(upload_pk(name), id.as_str())))
            .update_expression("SET #state = :superseded, #reason = :reason, #update_at = :now")
            .condition_expression("#state = :pending AND #completing_at = :stamp")
            .expression_attribute_names("#state", attr::STATE)
            .expression_attribute_names("#completing_at", attr::COMPLETING_AT)
            .expression_attribute_names("#reason", attr::REASON)
            .expression_attribute_names("#update_at", attr::UPDATE_AT)
            .expression_attribute_values(":superseded", sv(UploadState::Superseded.as_str()))
            .expression_attribute_values(":pending", sv(UploadState::Pending.as_str()))
            .expression_attribute_values(":stamp", nv(stamp))
            .expression_attribute_values(":reason", sv(reason))
            .expression_attribute_values(":now", sv(format_update_at(now())))
            .send()
            .await;
        applied("UpdateItem", out)
    }

    /// The upload row `pending → verifying` of object version `version`
    /// (UpdateItem): verified bytes back to zero, the hash state dropped,
    /// `expires_at` (unix seconds) its new lifetime, `actor` its actor,
    /// `owned` whether its own completion wrote the object, the commit
    /// time and `latest_seen` (LATEST as the commit read it) set once, and
    /// `pipeline` (JSON) when given. Only while it is
    /// pending and unexpired at `now`, or verifying that very version
    /// already (a retry): `false` when neither holds.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_upload_verifying(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        version: &str,
        owned: bool,
        actor: &str,
        pipeline: Option<String>,
        latest_seen: &str,
        expires_at: i64,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let mut update = self.ddb.update_item();
        let mut set_pipeline = "";
        if let Some(pipeline) = pipeline {
            set_pipeline = ", #pipeline = :pipeline";
            update = update
                .expression_attribute_names("#pipeline", attr::PIPELINE)
                .expression_attribute_values(":pipeline", sv(pipeline));
        }
        let out = update
            .table_name(&self.name)
            .set_key(Some(key(upload_pk(name), id.as_str())))
            .update_expression(format!(
                "SET #state = :verifying, #blob_version = :version, #verified = :zero, \
                 #expires_at = :expires, #update_at = :now, #actor = :actor, #owned = :owned, \
                 #committed_at = if_not_exists(#committed_at, :now), \
                 #latest_seen = if_not_exists(#latest_seen, :seen){set_pipeline} REMOVE #hash_state",
            ))
            .expression_attribute_names("#owned", attr::BLOB_OWNED)
            .expression_attribute_names("#committed_at", attr::COMMITTED_AT)
            .expression_attribute_names("#latest_seen", attr::LATEST_SEEN)
            .expression_attribute_values(":seen", sv(latest_seen))
            .expression_attribute_values(":owned", AttributeValue::Bool(owned))
            .condition_expression(
                "(#state = :pending AND #expires_at > :now_secs) OR \
                 (#state = :verifying AND #blob_version = :version)",
            )
            .expression_attribute_names("#state", attr::STATE)
            .expression_attribute_names("#blob_version", attr::BLOB_VERSION)
            .expression_attribute_names("#verified", attr::VERIFIED_BYTES)
            .expression_attribute_names("#expires_at", attr::EXPIRES_AT)
            .expression_attribute_names("#update_at", attr::UPDATE_AT)
            .expression_attribute_names("#hash_state", attr::HASH_STATE)
            .expression_attribute_names("#actor", attr::ACTOR)
            .expression_attribute_values(":actor", sv(actor))
            .expression_attribute_values(":verifying", sv(UploadState::Verifying.as_str()))
            .expression_attribute_values(":pending", sv(UploadState::Pending.as_str()))
            .expression_attribute_values(":version", sv(version))
            .expression_attribute_values(":zero", nv(0))
            .expression_attribute_values(":expires", nv(expires_at))
            .expression_attribute_values(":now", sv(format_update_at(now)))
            .expression_attribute_values(":now_secs", nv(now.unix_timestamp()))
            .send()
            .await;
        applied("UpdateItem", out)
    }

    /// A verification's checkpoint (UpdateItem): `offset` bytes hashed,
    /// the hash `state` after them, `expires_at` (unix seconds) the
    /// upload's new lifetime. Only while the upload is verifying from
    /// `from` bytes, or this very checkpoint landed already (the SDK's
    /// retry of a write whose answer was lost): `false` otherwise.
    #[allow(clippy::too_many_arguments)]
    pub async fn checkpoint_upload_verification(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        from: u64,
        offset: u64,
        state: Vec<u8>,
        expires_at: i64,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(upload_pk(name), id.as_str())))
            .update_expression(
                "SET #verified = :offset, #hash_state = :state, #expires_at = :expires, \
                 #update_at = :now",
            )
            // Or this very checkpoint, landed already: the SDK retries a
            // write whose answer was lost, and that retry must go on too.
            .condition_expression(
                "#state = :verifying AND (#verified = :from OR \
                 (#verified = :offset AND #hash_state = :state))",
            )
            .expression_attribute_names("#state", attr::STATE)
            .expression_attribute_names("#verified", attr::VERIFIED_BYTES)
            .expression_attribute_names("#hash_state", attr::HASH_STATE)
            .expression_attribute_names("#expires_at", attr::EXPIRES_AT)
            .expression_attribute_names("#update_at", attr::UPDATE_AT)
            .expression_attribute_values(":verifying", sv(UploadState::Verifying.as_str()))
            .expression_attribute_values(":offset", nv(offset))
            .expression_attribute_values(":from", nv(from))
            .expression_attribute_values(
                ":state",
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(state)),
            )
            .expression_attribute_values(":expires", nv(expires_at))
            .expression_attribute_values(":now", sv(format_update_at(now)))
            .send()
            .await;
        applied("UpdateItem", out)
    }

    /// The upload `verifying → failed` with `reason`, its hash state
    /// dropped (UpdateItem). Only while it is verifying object version
    /// `version`: `false` otherwise (another invocation moved it on).
    pub async fn fail_upload_verification(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        version: &str,
        reason: &str,
    ) -> Result<bool> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(upload_pk(name), id.as_str())))
            .update_expression(
                "SET #state = :failed, #reason = :reason, #update_at = :now REMOVE #hash_state",
            )
            .condition_expression("#state = :verifying AND #blob_version = :version")
            .expression_attribute_names("#state", attr::STATE)
            .expression_attribute_names("#reason", attr::REASON)
            .expression_attribute_names("#update_at", attr::UPDATE_AT)
            .expression_attribute_names("#hash_state", attr::HASH_STATE)
            .expression_attribute_names("#blob_version", attr::BLOB_VERSION)
            .expression_attribute_values(":failed", sv(UploadState::Failed.as_str()))
            .expression_attribute_values(":verifying", sv(UploadState::Verifying.as_str()))
            .expression_attribute_values(":version", sv(version))
            .expression_attribute_values(":reason", sv(reason))
            .expression_attribute_values(":now", sv(format_update_at(now())))
            .send()
            .await;
        applied("UpdateItem", out)
    }
}

/// A transaction member that holds only while no purge of `name` runs:
/// its fence is absent, or stale (a crashed purge's, started more than
/// `PURGE_FENCE_STALE` ago).
pub fn no_purge_running(table: &str, name: &ArtifactName) -> Result<TxItem> {
    let stale = (now() - PURGE_FENCE_STALE).unix_timestamp();
    let fence = ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(key(fence_pk(name), FENCE_SK)))
        .condition_expression("attribute_not_exists(#pk) OR #started_at < :stale")
        .expression_attribute_names("#pk", attr::PK)
        .expression_attribute_names("#started_at", attr::STARTED_AT)
        .expression_attribute_values(":stale", nv(stale))
        .build()
        .map_err(invalid_sdk_input)?;
    Ok(TxItem::builder().condition_check(fence).build())
}

/// A transaction member that holds only while retention is not deleting
/// the blob of `sha256`: its condemned row is absent or finished. With
/// `finished_before`, a deletion that finished at or after that moment
/// fails it too (what the caller saw may be gone).
pub fn not_condemned(
    table: &str,
    name: &ArtifactName,
    sha256: &str,
    finished_before: Option<OffsetDateTime>,
) -> Result<TxItem> {
    let check = ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(key(condemned_pk(name), sha256)))
        .expression_attribute_names("#pk", attr::PK)
        .expression_attribute_names("#deleted_at", attr::DELETED_AT);
    let check = match finished_before {
        None => {
            check.condition_expression("attribute_not_exists(#pk) OR attribute_exists(#deleted_at)")
        }
        Some(t) => check
            .condition_expression("attribute_not_exists(#pk) OR #deleted_at < :read_at")
            .expression_attribute_values(":read_at", nv(crate::layout::unix_millis(t))),
    };
    Ok(TxItem::builder()
        .condition_check(check.build().map_err(invalid_sdk_input)?)
        .build())
}

/// The upload row `from → committed` (`changed`: whether LATEST changed),
/// written back whole as it was read (`item`; a Put). Only while it is in
/// state `from` and, when pending, unexpired at `now`; the condition on
/// the state also fails when the row is gone (a purge), so the Put never
/// recreates it.
pub fn finish_upload(
    table: &str,
    item: Item,
    from: UploadState,
    changed: bool,
    now: OffsetDateTime,
) -> Result<TxItem> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(UploadRow::committed_item(item, changed, now)))
        .expression_attribute_names("#state", attr::STATE)
        .expression_attribute_values(":from", sv(from.as_str()));
    let put = if from == UploadState::Pending {
        put.condition_expression("#state = :from AND #expires_at > :now_secs")
            .expression_attribute_names("#expires_at", attr::EXPIRES_AT)
            .expression_attribute_values(":now_secs", nv(now.unix_timestamp()))
    } else {
        put.condition_expression("#state = :from")
    };
    let put = put.build().map_err(invalid_sdk_input)?;
    Ok(TxItem::builder().put(put).build())
}

/// The upload's commit recorded on LATEST (its upload id, the commit
/// time `now`): an Update that holds only while LATEST is live and holds
/// the upload's bytes in the blob store, and, with `before`, was written
/// (and last committed) before that moment.
///
/// With the event of the commit (`Upload Committed`, unchanged), told from
/// `read` (LATEST as read), LATEST marked as logging it.
pub fn latest_unchanged(
    table: &str,
    name: &ArtifactName,
    upload: &UploadRow,
    read: &VersionRow,
    before: Option<&str>,
    now: OffsetDateTime,
) -> Result<(TxItem, Vec<ChangeEvent>)> {
    // The attributes the event tells, before and after.
    let old = read.event_image();
    let mut new = old.clone();
    new.insert(attr::UPLOAD_ID.into(), sv(&upload.upload_id));
    let events = change_events::events_of_write(Some(&old), Some(&new));
    let mut condition = format!("#sha256 = :sha256 AND {LIVE} AND #bytes = :blob");
    let mut update = Update::builder();
    // No other commit recorded on it since it was read (a verification
    // commits only over the LATEST its commit saw, to the write); this
    // very one may be, its answer lost (the SDK's retry).
    match &read.committed_at {
        Some(at) => {
            condition.push_str(" AND (#committed_at = :committed_read OR #upload_id = :upload_id)");
            update = update.expression_attribute_values(":committed_read", sv(at));
        }
        None => condition
            .push_str(" AND (attribute_not_exists(#committed_at) OR #upload_id = :upload_id)"),
    }
    if let Some(before) = before {
        condition.push_str(OLDER_THAN_COMMIT);
        update = update
            .expression_attribute_names("#update_at", attr::UPDATE_AT)
            .expression_attribute_values(":before", sv(before));
    }
    // Marked as logging its event (see `change_events::events_of`).
    let logged = match events.first() {
        Some(_) => ", #logged = :logged",
        None => "",
    };
    if let Some(event) = events.first() {
        update = update
            .expression_attribute_names("#logged", attr::LOGGED_EVENT)
            .expression_attribute_values(":logged", sv(event.id()));
    }
    let update = update
        .table_name(table)
        .set_key(Some(version_key(name, Version::Latest)))
        // The commit is recorded on LATEST: a verification of an
        // upload committed before it can no longer make LATEST.
        .update_expression(format!(
            "SET #upload_id = :upload_id, #committed_at = :now{logged}"
        ))
        .expression_attribute_names("#committed_at", attr::COMMITTED_AT)
        .expression_attribute_values(":now", sv(format_update_at(now)))
        .condition_expression(condition)
        .expression_attribute_names("#upload_id", attr::UPLOAD_ID)
        .expression_attribute_names("#sha256", attr::SHA256)
        .expression_attribute_names("#is_deleted", attr::IS_DELETED)
        .expression_attribute_names("#bytes", attr::BYTES)
        .expression_attribute_values(":upload_id", sv(&upload.upload_id))
        .expression_attribute_values(":sha256", sv(&upload.sha256))
        .expression_attribute_values(":false", AttributeValue::Bool(false))
        .expression_attribute_values(":blob", sv(BYTES_BLOB))
        .build()
        .map_err(invalid_sdk_input)?;
    Ok((TxItem::builder().update(update).build(), events))
}

/// LATEST pointed at the upload's blob: the row as read (`latest`, absent
/// when there is none) written back whole with the upload's content (a
/// Put, see [`VersionRow::committed_latest`]; `seed`: the counter a LATEST
/// lacking one starts from). With `published`, the number published in
/// the same transaction: the counter takes it, the marker the bytes.
///
/// The condition: over a LATEST read, it still exists and its version
/// counter, publish marker and epoch are as read (absent ones still
/// absent); with none read, there is still none. With `before` (and a
/// LATEST read), it was also written (and last committed) before that
/// moment.
#[allow(clippy::too_many_arguments)]
pub fn latest_put(
    table: &str,
    upload: &UploadRow,
    actor: &str,
    latest: Option<Item>,
    seed: u32,
    published: Option<u32>,
    before: Option<&str>,
    now: OffsetDateTime,
) -> Result<(TxItem, Vec<ChangeEvent>)> {
    // Also when and what it was written with: the library's rows carry no
    // counter, marker or epoch, so only these tell its rewrite since the
    // read (which a verification must not commit over).
    const GUARDED: [&str; 6] = [
        attr::LAST_VERSION,
        attr::PUBLISHED_SHA256,
        attr::EPOCH,
        attr::UPDATE_AT,
        attr::SHA256,
        attr::COMMITTED_AT,
    ];
    let mut put = Put::builder()
        .table_name(table)
        .expression_attribute_names("#pk", attr::PK);
    let mut condition = Vec::new();
    if let (Some(before), Some(_)) = (before, &latest) {
        condition.push(format!("attribute_exists(#pk){OLDER_THAN_COMMIT}"));
        put = put
            .expression_attribute_names("#update_at", attr::UPDATE_AT)
            .expression_attribute_names("#committed_at", attr::COMMITTED_AT)
            .expression_attribute_values(":before", sv(before));
    }
    let read = latest.clone();
    let item = match latest {
        Some(item) => {
            condition.push("attribute_exists(#pk)".to_owned());
            for (i, name) in GUARDED.iter().enumerate() {
                put = put.expression_attribute_names(format!("#g{i}"), *name);
                match item.get(*name) {
                    Some(value) => {
                        condition.push(format!("#g{i} = :g{i}"));
                        put = put.expression_attribute_values(format!(":g{i}"), value.clone());
                    }
                    None => condition.push(format!("attribute_not_exists(#g{i})")),
                }
            }
            item
        }
        None => {
            condition.push("attribute_not_exists(#pk)".to_owned());
            version_key(&upload.name, Version::Latest)
        }
    };
    let mut item = VersionRow::committed_latest(item, upload, actor, seed, now, new_epoch);
    if let Some(number) = published {
        // Published in the same transaction: the counter takes its
        // number, the marker its bytes (as a publish's `take_number`).
        item.insert(attr::LAST_VERSION.into(), nv(number));
        item.insert(attr::PUBLISHED_SHA256.into(), sv(&upload.sha256));
    }
    let events = change_events::events_of_write(read.as_ref(), Some(&item));
    change_events::mark_logged(&mut item, &events);
    let put = put
        .set_item(Some(item))
        .condition_expression(condition.join(" AND "))
        .build()
        .map_err(invalid_sdk_input)?;
    Ok((TxItem::builder().put(put).build(), events))
}

/// The verified-blob row of `sha256` (the object version and size
/// verified, by upload `upload_id`, at `now`), put unconditionally.
pub fn put_verified_blob(
    table: &str,
    name: &ArtifactName,
    sha256: &str,
    blob: &VerifiedBlob,
    upload_id: &str,
    now: OffsetDateTime,
) -> Result<TxItem> {
    let item = crate::rows::verified_blob_item(name, sha256, blob, upload_id, now);
    put_always(table, item)
}

/// `name`'s registry entry, put unconditionally (a commit that creates
/// LATEST registers the name).
pub fn register_name(table: &str, name: &ArtifactName) -> Result<TxItem> {
    put_always(table, registry_key(name))
}

/// A Put of `item` without condition.
fn put_always(table: &str, item: Item) -> Result<TxItem> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .build()
        .map_err(invalid_sdk_input)?;
    Ok(TxItem::builder().put(put).build())
}

/// On LATEST's item as read: when it was written (`update_at`) and when a
/// commit was last recorded on it (`committed_at`), as stored (both in
/// the `update_at` format).
pub fn latest_times(latest: Option<&Item>) -> (Option<&str>, Option<&str>) {
    let at = |a: &str| {
        latest
            .and_then(|i| i.get(a))
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    };
    (at(attr::UPDATE_AT), at(attr::COMMITTED_AT))
}

/// On LATEST's item as read: its version counter, when it holds a number
/// (`None` when absent or not a `u32`).
pub fn latest_counter(latest: Option<&Item>) -> Option<u32> {
    latest
        .and_then(|i| i.get(attr::LAST_VERSION))
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse::<u32>().ok())
}

/// On LATEST's item as read: its publish marker; empty (never published)
/// when there is no LATEST, `None` when the LATEST has none (the
/// library's: only its versions tell what was published).
pub fn latest_marker(latest: Option<&Item>) -> Option<&str> {
    match latest {
        None => Some(""),
        Some(item) => item
            .get(attr::PUBLISHED_SHA256)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str),
    }
}
