//! Retention: soft-delete old versions, then reclaim their bytes.
//!
//! `purge_versions` is the library's `purge_artifact_versions` plus alias
//! protection and dry runs. `reclaim` deletes the S3 bytes of versions that
//! have been soft-deleted longer than a grace period; their rows stay as
//! tombstones so the numbers are never handed out again (SPEC 7.2, 7.8).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

use futures::StreamExt;

use super::tx::{TransactFailure, Tx};
use super::{MAX_ATTEMPTS, Repository, backoff};
use crate::error::{Error, Result};
use crate::layout::{now, upload_pk};
use crate::model::{RetentionPolicy, RetentionReport, VersionStatus};
use crate::names::{ArtifactName, Version};
use crate::retention_rules::{self, Reclaim};
use crate::rows::{AliasRow, Location, UploadRow, VersionRow};
use artifact_store::purge_objects;
use artifact_store::retention_items::VersionStamp;
use artifact_store::table::SoftDelete;

pub use artifact_store::retention_items::RetentionBookkeeping;

/// What one reclaim pass over an artifact did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReclaimReport {
    /// Versions whose bytes were deleted (rows kept as tombstones).
    pub reclaimed: Vec<Version>,
    /// Soft-deleted rows without a deletion time (the Python library's), now
    /// stamped so that their grace period starts.
    pub stamped: Vec<Version>,
    /// Blobs no row referenced at all (LATESTs replaced before they were
    /// published, failed or expired uploads), deleted: their sha256.
    pub unreferenced: Vec<String>,
}

/// Soft deletes of one retention run in flight at once (well below
/// DynamoDB's per-partition write capacity of 1 000 writes per second).
const PARALLEL_SOFT_DELETES: usize = 16;

impl Repository {
    /// Soft-deletes numbered versions beyond the newest `keep_last_n` that are
    /// also older than `older_than`. LATEST and every alias target are always
    /// kept (alias targets count toward `keep_last_n` like any live version).
    /// With `dry_run`, reports without writing.
    pub async fn purge_versions(
        &self,
        name: &ArtifactName,
        policy: RetentionPolicy,
        dry_run: bool,
    ) -> Result<RetentionReport> {
        let purge_time = now();
        let (rows, aliases) = tokio::join!(self.version_rows(name), self.alias_rows(name));
        let (rows, aliases) = (rows?, aliases?);
        // No LATEST (a purge deletes it first): the artifact is gone, or
        // going; what rows are left are a stopped purge's to finish.
        if !rows.iter().any(|r| r.version.is_latest()) {
            return Err(Error::ArtifactNotFound {
                name: name.to_string(),
            });
        }
        if !dry_run {
            self.repair_recorded_statuses(name, &rows, &aliases).await;
        }
        let protected = alias_targets(&aliases);
        // Saturating: an age beyond the calendar keeps everything.
        let expire =
            purge_time.checked_sub(policy.older_than.try_into().unwrap_or(time::Duration::MAX));
        let expire = expire.unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let read: Vec<retention_rules::Row> = rows
            .iter()
            .map(|r| retention_rules::Row {
                version: r.version,
                live: r.is_live(),
                update_at: r.update_at,
            })
            .collect();
        // References no alias row backs are stale: cleaned, not obeyed.
        let versions = retention_rules::to_delete(&read, policy.keep_last_n, expire, &protected);
        let by_version: BTreeMap<Version, &VersionRow> =
            rows.iter().map(|r| (r.version, r)).collect();
        let candidates: Vec<&VersionRow> = versions
            .iter()
            .filter_map(|v| by_version.get(v).copied())
            .collect();
        let token = uuid::Uuid::new_v4().simple().to_string();
        // Each soft delete is conditional on its own row, so they can go in
        // parallel; the report keeps the candidates' order (newest first).
        let (aliases, token) = (&aliases, &token);
        // Owned rows: a stream of futures borrowing its items is not `Send`
        // for every lifetime (the handlers' futures must be).
        let owned: Vec<VersionRow> = candidates.iter().map(|row| (*row).clone()).collect();
        let outcomes: Vec<Result<bool>> = futures::stream::iter(owned)
            .map(|row| async move {
                if dry_run {
                    Ok(true)
                } else {
                    self.soft_delete_unaliased(name, &row, aliases, token).await
                }
            })
            .buffered(PARALLEL_SOFT_DELETES)
            .collect()
            .await;
        let mut deleted = Vec::new();
        for (row, outcome) in candidates.iter().zip(outcomes) {
            if outcome? {
                deleted.push(row.to_artifact(&self.layout));
            }
        }
        Ok(RetentionReport {
            purge_time,
            dry_run,
            deleted,
        })
    }

    /// Copies each version's status onto the alias rows of ours that
    /// recorded another (resolve reads only the alias row): a status change
    /// copies it after its own transaction, and one interrupted there (a
    /// timeout, a failed call) left the aliases telling the old status,
    /// with no later step to finish it but this pass (SPEC 7.16). Failures
    /// are logged: the retention itself goes on, and the next pass tries
    /// again. AWS calls: none when every copy agrees.
    async fn repair_recorded_statuses(
        &self,
        name: &ArtifactName,
        rows: &[VersionRow],
        aliases: &[AliasRow],
    ) {
        let status_of: BTreeMap<Version, VersionStatus> = rows
            .iter()
            .filter(|r| r.is_live())
            .map(|r| (r.version, r.status.unwrap_or(VersionStatus::Active)))
            .collect();
        for row in aliases.iter().filter(|a| a.revision.is_some()) {
            let targets =
                std::iter::once(&row.primary).chain(row.secondary.as_ref().map(|(t, _)| t));
            for target in targets {
                let Some(&status) = status_of.get(&target.version) else {
                    continue;
                };
                if target.status.unwrap_or(VersionStatus::Active) == status {
                    continue;
                }
                if let Err(e) = self
                    .refresh_target_status(name, row.alias.as_str(), target.version, status)
                    .await
                {
                    tracing::warn!(%name, alias = %row.alias, version = %target.version, code = e.code(), error = ?e,
                        "an alias still records another status of its target; the next pass tries again");
                }
            }
        }
    }

    /// Deletes the S3 bytes of versions soft-deleted more than `grace` ago.
    ///
    /// Resumable from any step: a blob's deletion starts by putting up its
    /// condemned item (stamped with this pass's id), then marks the rows
    /// reclaimed, then either lifts the item (still referenced) or deletes
    /// the verified-blob row and the bytes and stamps the item `deleted_at`.
    /// A condemned item without `deleted_at` is therefore always a deletion
    /// under way or interrupted: every pass starts by finishing those it
    /// finds, so no interruption blocks those bytes for longer than until
    /// the next pass (SPEC 7.16). A purge of the artifact running stops
    /// the pass before it condemns anything more (see [`Self::condemn`]).
    pub async fn reclaim(&self, name: &ArtifactName, grace: Duration) -> Result<ReclaimReport> {
        let cutoff = now()
            .checked_sub(grace.try_into().unwrap_or(time::Duration::MAX))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let pass = uuid::Uuid::new_v4().simple().to_string();
        let mut report = ReclaimReport::default();
        for pending in self.table.pending_condemned(name).await? {
            self.finish_blob_deletion(name, &pending.sha256, &pending.owner)
                .await?;
        }
        let mut blobs: BTreeMap<String, Vec<Version>> = BTreeMap::new();
        // Each reclaimed row's `update_at` as read: it is stamped only while
        // it is that very row.
        let mut read_at: BTreeMap<Version, Option<String>> = BTreeMap::new();
        // The library lets an alias point at a soft-deleted version: its
        // bytes stay while any alias row targets it.
        let protected = alias_targets(&self.alias_rows(name).await?);
        for row in self.version_rows(name).await? {
            let step = retention_rules::reclaim_step(&reclaim_row(&row), &protected, cutoff);
            match step {
                Reclaim::Keep | Reclaim::Wait => {}
                Reclaim::Stamp => {
                    if self.mark(name, &row, VersionStamp::Deleted).await? {
                        report.stamped.push(row.version);
                    }
                }
                // The blob may be shared; it goes below, once nothing
                // references it. The mirror deletes the library's copy
                // when it sees the tombstone.
                Reclaim::Blob => {
                    read_at.insert(row.version, row.stored_update_at.clone());
                    blobs
                        .entry(row.sha256.clone())
                        .or_default()
                        .push(row.version);
                }
                Reclaim::Object => {
                    if self.reclaim_object(name, &row).await? {
                        report.reclaimed.push(row.version);
                    }
                }
            }
        }
        for (sha256, versions) in blobs {
            // Bytes a live row or an upload holds are not condemned at all
            // (a condemned item blocks their uploads and publishes until
            // lifted); the reclaimed rows' share of them is accounted.
            let referenced = self.blob_referenced(name, &sha256, &versions).await?;
            if !referenced && !self.condemn(name, &sha256, &pass).await? {
                // A purge of the artifact runs: it deletes every row and
                // blob anyway, so the pass stops here, the bytes and rows
                // of this blob untouched. Not an error: nothing is wrong
                // or half-done (an error would count the artifact failed
                // and retry it for nothing); should the purge fail, its
                // fence lapses and the next pass finds these rows as they
                // were.
                return Ok(report);
            }
            for version in versions {
                let read = read_at.get(&version).cloned().flatten();
                if self
                    .table
                    .stamp_version(
                        name,
                        version,
                        VersionStamp::Reclaimed,
                        now(),
                        read.as_deref(),
                    )
                    .await?
                {
                    report.reclaimed.push(version);
                }
            }
            if !referenced {
                self.finish_blob_deletion(name, &sha256, &pass).await?;
            }
        }
        report.unreferenced = self.sweep_unreferenced(name, cutoff, &pass).await?;
        Ok(report)
    }

    /// Deletes the own object of the soft-deleted version `row` of `name`
    /// (the library's key of its number), as the pass read it, due, and
    /// marks the row reclaimed: only while the row, read again, is still
    /// that one, and only the object versions written before its grace
    /// period began (`retention_rules::object_reclaim_before`). The rows
    /// were read once, maybe minutes before: the artifact may have been
    /// purged and its number written again since, by the library or the
    /// mirror (SPEC 7.10, 7.15). `false`: another life's, left alone.
    /// AWS calls: 1 GetItem, then one ListObjectVersions and one
    /// DeleteObjects per 1 000 object versions, and 1 UpdateItem.
    async fn reclaim_object(&self, name: &ArtifactName, row: &VersionRow) -> Result<bool> {
        let again = self.get_row(name, row.version).await?;
        let Some(written_before) = retention_rules::object_reclaim_before(
            &reclaim_row(row),
            again.as_ref().map(reclaim_row).as_ref(),
        ) else {
            return Ok(false);
        };
        let key = self.layout.object_key(name, row.version);
        self.delete_object_versions_before(&key, written_before)
            .await?;
        // The row read again, not the one the pass read first: the stamp
        // holds only while it is still that one.
        let again = again.as_ref().unwrap_or(row);
        self.mark(name, again, VersionStamp::Reclaimed).await
    }

    /// Deletes the blobs of `name` that no row (not yet reclaimed) and no
    /// live upload references, written before `cutoff` (SPEC 7.8: bytes no
    /// live row references go after the grace period, not only those of
    /// soft-deleted versions). Each goes as a reclaimed version's blob does
    /// (condemned, references checked again, deleted or lifted). AWS calls:
    /// two Queries, one ListObjectsV2 per 1 000 blobs, then per blob
    /// deleted those of [`Self::condemn`] and [`Self::finish_blob_deletion`].
    /// A purge of the artifact running stops it (see [`Self::condemn`]).
    async fn sweep_unreferenced(
        &self,
        name: &ArtifactName,
        cutoff: OffsetDateTime,
        pass: &str,
    ) -> Result<Vec<String>> {
        let uploads_pk = upload_pk(name);
        let (rows, uploads) = tokio::join!(self.version_rows(name), self.query_all(&uploads_pk));
        let now_secs = now().unix_timestamp();
        let mut held: BTreeSet<String> = rows?
            .into_iter()
            .filter(|row| row.reclaimed_at.is_none())
            .map(|row| row.sha256)
            .collect();
        held.extend(
            uploads?
                .iter()
                .filter_map(|item| UploadRow::from_item(name, item).ok())
                .filter(|u| retention_rules::upload_holds(u.state, u.expires_at, now_secs))
                .map(|u| u.sha256),
        );
        let prefix = self.layout.blob_prefix(name);
        let mut swept = Vec::new();
        let mut token = None;
        loop {
            let page = artifact_store::purge_objects::list_objects_page(
                &self.s3,
                &self.layout.bucket,
                &prefix,
                token,
            )
            .await?;
            for object in &page.objects {
                let Some(sha256) = object
                    .key
                    .strip_prefix(&prefix)
                    .filter(|s| s.parse::<crate::names::Sha256>().is_ok())
                else {
                    continue;
                };
                let written = object.last_modified.unwrap_or(i64::MAX);
                if held.contains(sha256) || written > cutoff.unix_timestamp() {
                    continue;
                }
                if !self.condemn(name, sha256, pass).await? {
                    // A purge of the artifact runs and deletes every blob:
                    // stop, as `reclaim` does, without an error.
                    return Ok(swept);
                }
                if self.finish_blob_deletion(name, sha256, pass).await? {
                    swept.push(sha256.to_owned());
                }
            }
            match page.next_token {
                Some(next) => token = Some(next),
                None => return Ok(swept),
            }
        }
    }

    /// Puts up the condemned item of `sha256` for pass `pass`: from now on
    /// no upload of those bytes starts or commits (see `not_condemned`).
    /// The stamp of an earlier deletion of those bytes is kept aside (and
    /// restored if this one is lifted): a commit that read the blob before
    /// that deletion must still fail.
    ///
    /// Only while no purge of `name` runs (one transaction with the purge
    /// fence's check): a purge reads the condemned partition once, so an
    /// item put up behind its back would outlive it, and, left unstamped
    /// (the pass interrupted), block those bytes under that name with no
    /// pass left to finish it (SPEC 7.16, 7.17). `Ok(false)`, nothing
    /// written: a purge runs, the caller must not delete the bytes. An item
    /// put up before the fence is deleted by the purge, and the pass's lift
    /// or stamp of it then writes nothing (both hold only while it exists).
    /// A pass that stalled through a whole purge is not kept out: the
    /// fence is down by then (see [`Self::finish_blob_deletion`]). The
    /// item goes up only over the item as read (another pass's stamp is
    /// never overwritten unread, SPEC 7.15). AWS calls: 1 GetItem, 1
    /// TransactWriteItems (both again when it meets another pass or
    /// transaction).
    async fn condemn(&self, name: &ArtifactName, sha256: &str, pass: &str) -> Result<bool> {
        // One token per condemn, kept across its retries: a second condemn
        // of the same bytes by this pass in the same second (after a lift)
        // builds the very same items, and must not pass for a replay.
        let token = uuid::Uuid::new_v4().simple().to_string();
        for attempt in 0..MAX_ATTEMPTS {
            let mut tx = Tx::new();
            tx.push(Condemn::Fence, self.no_purge_running(name)?);
            tx.push(
                Condemn::Item,
                self.table.condemn_blob_put(name, sha256, pass).await?,
            );
            match self.transact_tx(&tx, &token).await {
                Ok(()) => return Ok(true),
                Err(TransactFailure::Conditions(failed)) if failed.contains(&Condemn::Fence) => {
                    return Ok(false);
                }
                // The item changed since it was read (another pass, or
                // this attempt's own write whose answer was lost): read
                // it again.
                Err(TransactFailure::Conditions(_) | TransactFailure::Contention) => {
                    backoff(attempt).await
                }
                Err(TransactFailure::Failed(e)) => return Err(e),
            }
        }
        Err(Error::ConcurrentModification(format!(
            "condemning a blob of {name} kept conflicting with other writers; the next pass retries"
        )))
    }

    /// Ends the deletion of the blob of `sha256` that pass `owner` condemned:
    /// lifted when a row, a publish or an upload still needs it; otherwise
    /// the verified-blob row, then the bytes, then the item stamped.
    ///
    /// Anything that referenced the blob before the condemned item went up
    /// is seen by the reference check (uploads and commits of those bytes
    /// cannot start while it stands, and a commit or publish that read the
    /// blob before it was deleted fails: see `not_condemned`).
    ///
    /// The bytes go only while the item still stands as `owner`'s, and
    /// exactly the object versions listed while it stood: the key's
    /// versions are listed first, then the item is read again. Standing
    /// then, no purge ran since it went up (a purge deletes it, and nothing
    /// puts it back as this pass's), so every listed version is the
    /// condemned blob's or an upload's whose commit the item refuses; a
    /// version written after the listing (an upload after a purge that
    /// came later still) is not among them and stays. Gone (a pass that
    /// stalled through a whole purge, perhaps with the same bytes uploaded
    /// and committed since: a live row's, SPEC 7.10) or another pass's,
    /// nothing is deleted here.
    async fn finish_blob_deletion(
        &self,
        name: &ArtifactName,
        sha256: &str,
        owner: &str,
    ) -> Result<bool> {
        if self.blob_referenced(name, sha256, &[]).await? {
            // Lifted only if it is still this pass's (another pass that
            // condemned it since decides for itself); an item a release
            // before passes were named left has no owner: any pass lifts
            // it. Lifting restores the earlier deletion's stamp (0: none,
            // which checks as no deletion at all).
            self.table.lift_condemned(name, sha256, owner).await?;
            return Ok(false);
        }
        let blob_key = self.layout.blob_key(name, sha256);
        let listed = self.object_versions_of(&blob_key).await?;
        if !self.table.condemned_stands(name, sha256, owner).await? {
            return Ok(false);
        }
        // The verified record first: it must never outlive the bytes. Only
        // if it names bytes listed here: one written since (bytes uploaded
        // and verified after the listing, which stay) is kept.
        let versions: Vec<&str> = listed.iter().filter_map(|(_, v)| v.as_deref()).collect();
        self.table
            .delete_verified_blob(name, sha256, &versions)
            .await?;
        for batch in listed.chunks(1000) {
            purge_objects::delete_versions(&self.s3, &self.layout.bucket, batch.to_vec()).await?;
        }
        // The item stays, stamped: a commit or publish that saw the blob
        // before this moment must fail; uploads started from now on may
        // bring the bytes back. Only while it exists (a purge that deleted
        // it meanwhile must not find it recreated), even if another pass
        // condemned the bytes since: the deletion happened all the same.
        self.table.stamp_condemned_deleted(name, sha256).await?;
        Ok(true)
    }

    /// Whether any row not yet reclaimed (besides the rows `reclaiming`)
    /// or a pending upload that can still be committed holds `sha256`. Two
    /// consistent Queries.
    async fn blob_referenced(
        &self,
        name: &ArtifactName,
        sha256: &str,
        reclaiming: &[Version],
    ) -> Result<bool> {
        let uploads_pk = upload_pk(name);
        let (rows, uploads) = tokio::join!(self.version_rows(name), self.query_all(&uploads_pk));
        // A publish in flight (number taken, row not written yet) is not
        // seen here: its transaction fails if the blob was deleted after it
        // took the number (see `not_condemned`).
        let (rows, uploads) = (rows?, uploads?);
        let now_secs = now().unix_timestamp();
        let uploads: Vec<UploadRow> = uploads
            .iter()
            .filter_map(|item| UploadRow::from_item(name, item).ok())
            .collect();
        // A verifying upload will commit these bytes when they check out.
        Ok(retention_rules::blob_referenced(
            sha256,
            rows.iter()
                .map(|row| (row.version, row.sha256.as_str(), row.reclaimed_at.is_some())),
            uploads.iter().map(|u| {
                let holds = retention_rules::upload_holds(u.state, u.expires_at, now_secs);
                (u.sha256.as_str(), holds)
            }),
            reclaiming,
        ))
    }

    async fn version_rows(&self, name: &ArtifactName) -> Result<Vec<VersionRow>> {
        let rows: Result<Vec<Option<VersionRow>>> = self
            .query_all(name.as_str())
            .await?
            .iter()
            .map(VersionRow::in_partition)
            .collect();
        Ok(rows?.into_iter().flatten().collect())
    }

    /// Soft-deletes a version unless an alias references it meanwhile,
    /// cleaning references no alias row backs. Returns whether it was deleted.
    ///
    /// The soft deletes of one pass run in parallel, each a transaction
    /// with the artifact's event log: on AWS they meet there (one item),
    /// and a deletion refused so is tried again after a pause.
    async fn soft_delete_unaliased(
        &self,
        name: &ArtifactName,
        row: &VersionRow,
        aliases: &[AliasRow],
        token: &str,
    ) -> Result<bool> {
        let mut referenced = 0;
        for attempt in 0..MAX_ATTEMPTS {
            match self
                .table
                .soft_delete(name, row.version, token, row)
                .await?
            {
                SoftDelete::Deleted => return Ok(true),
                // Another life of that number, younger than the policy
                // was applied to: not this pass's to delete.
                SoftDelete::Missing | SoftDelete::Replaced => return Ok(false),
                SoftDelete::Referenced(row) => {
                    referenced += 1;
                    if referenced == 3 {
                        return Ok(false);
                    }
                    match self.clean_stale_references(name, &row, aliases).await {
                        Ok(()) => {}
                        Err(Error::VersionInUse { .. }) => return Ok(false),
                        Err(e) => return Err(e),
                    }
                }
                SoftDelete::Contended => backoff(attempt).await,
            }
        }
        Err(Error::ConcurrentModification(format!(
            "deleting version {} of {name} kept meeting other writers; retry",
            row.version
        )))
    }

    /// Stamps `stamp` (now) on the soft-deleted `row` as read, only while
    /// it is that very row (see `stamp_version`); whether it did.
    fn mark(
        &self,
        name: &ArtifactName,
        row: &VersionRow,
        stamp: VersionStamp,
    ) -> impl std::future::Future<Output = Result<bool>> {
        self.table.stamp_version(
            name,
            row.version,
            stamp,
            now(),
            row.stored_update_at.as_deref(),
        )
    }

    /// Takes the scheduled job's lease until `until`, unless another pass
    /// holds one that has not expired: `None` then. A retried request whose
    /// first attempt landed finds its own lease and takes it again.
    /// Returns where the previous pass left off. AWS calls: 1 (UpdateItem).
    pub fn take_retention_lease(
        &self,
        owner: &str,
        until: SystemTime,
    ) -> impl std::future::Future<Output = Result<Option<RetentionBookkeeping>>> {
        self.table.take_retention_lease(owner, until)
    }

    /// Records where the next pass resumes and what it retries, and releases
    /// the lease, provided `owner` still holds it. Returns `false` when it no
    /// longer did (it expired and another pass took it over, or a retried
    /// request had already released it): the holder owns the bookkeeping then.
    /// AWS calls: 1 (UpdateItem).
    pub fn release_retention_lease(
        &self,
        owner: &str,
        state: &RetentionBookkeeping,
    ) -> impl std::future::Future<Output = Result<bool>> {
        self.table.release_retention_lease(owner, state)
    }

    /// The scheduled job's bookkeeping as it stands (strongly consistent).
    /// AWS calls: 1 (GetItem).
    pub fn retention_bookkeeping(
        &self,
    ) -> impl std::future::Future<Output = Result<RetentionBookkeeping>> {
        self.table.retention_bookkeeping()
    }
}

/// The members of a condemn's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condemn {
    /// No purge of the artifact runs.
    Fence,
    /// The condemned item, as it was read.
    Item,
}

/// Every version some alias row targets (primary or secondary).
fn alias_targets(aliases: &[AliasRow]) -> BTreeSet<Version> {
    aliases.iter().flat_map(|a| a.targets()).collect()
}

/// A version row as the reclaim pass's rules see it.
fn reclaim_row(row: &VersionRow) -> retention_rules::ReclaimRow {
    retention_rules::ReclaimRow {
        version: row.version,
        live: row.is_live(),
        deleted_at: row.deleted_at,
        reclaimed: row.reclaimed_at.is_some(),
        in_blob: row.location == Location::Blob,
    }
}
