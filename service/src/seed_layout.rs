//! The mirror of the library's layout (SPEC 3.2): for each row a stream
//! batch names, make `{prefix}/{name}/{LATEST|000042}{suffix}` hold what the
//! row says, exactly as `versioned` 1.0.1 would have written it (its user
//! metadata `artifact_name`, `artifact_sha256`, the row's user metadata and
//! content type), plus one marker of our own.
//!
//! It acts on the row as it is *now* (one consistent GetItem per key), never
//! on the record's images, so a batch applied twice, records out of date,
//! or the emulator's phantom records (design §1a) change nothing.
//!
//! # Whose object is it
//!
//! Every copy the mirror makes carries the user metadata
//! [`META_MIRRORED_FOR`] = the sort key it was made for. That marker, read
//! from the object itself, is the only thing that makes an object version
//! the mirror's: not the memory of one invocation (a retried batch must
//! still recognise its own copy), not the bytes (the library may write the
//! same bytes). The library never writes the marker, and its publish copies
//! LATEST's metadata to the version key, where a marker saying `LATEST` is
//! not ours. The rules:
//!
//! 1. The mirror deletes an object version only when it carries our marker,
//!    or when a purge or reclaim rule (below) says that the row owning it
//!    is gone.
//! 2. The mirror makes a new current object only over what it read: a copy
//!    is conditional on the destination (`If-Match` its ETag, or
//!    `If-None-Match: *` when the key was empty; S3 general purpose buckets
//!    honour both on CopyObject and CompleteMultipartUpload, answering 412,
//!    or 409 to a racing write:
//!    <https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html>;
//!    `If-Match` needs `s3:GetObject` beside `s3:PutObject`, which the
//!    mirror holds). A refused copy is judged again from the start. The
//!    version it displaces stays (noncurrent) unless it is ours.
//! 3. After a copy, the key's versions are listed: a version right beneath
//!    ours that is neither what the key held when read nor ours was written
//!    while we copied (where S3 ignores the condition, e.g. the emulator):
//!    our copy is withdrawn (deleted by its version id), which makes that
//!    write current again.
//!
//! # Per row
//!
//! - Row absent (a purge) and the batch holds its REMOVE (or this call
//!   copied to the key): every version of the key carrying our marker is
//!   deleted; the current object without it is deleted only when it holds
//!   exactly the sha256 of a REMOVE of this batch *and* was written before
//!   that removal: its `LastModified` second is earlier than the REMOVE's
//!   `ApproximateCreationDateTime` second (both are whole seconds, so an
//!   object of the removal's own second is kept). The library writes its
//!   object before its row: an object it PUT after the purge, whose row is
//!   still on its way, survives a late REMOVE even when it holds the same
//!   bytes. A REMOVE of unknown time deletes only our own copies.
//! - Row without `bytes=blob` (written by the library or a previous
//!   release): its bytes already are at the library key. Only when a copy
//!   of ours holding other bytes is current, right above the library's
//!   object of the row's sha256 (our copy landed between the library's S3
//!   PUT and its row PUT), is ours withdrawn, making theirs current again.
//!   A numbered one whose key holds other bytes than it names (the
//!   library's publish copied its LATEST key before this mirror had copied
//!   a LATEST committed here) gets the bytes it names copied onto the key
//!   from the blob store, when the blob is checked (S3's checksum, or
//!   verified), over the object read.
//! - Soft-deleted: left as it is (the library hides it by `is_deleted`);
//!   once reclaimed (`reclaimed_at`), the key's versions holding its sha256
//!   and written before the reclaim are deleted, when the row read again
//!   after the listing is still that one.
//! - Live: the key already holds the row's sha256 → nothing. It holds
//!   other bytes in an object of ours → replaced. Other bytes not ours,
//!   written after the row (`LastModified > update_at`) → a newer library
//!   write (the library writes S3 before its row): left alone; written in
//!   the row's own second (S3 keeps whole seconds: before or after it,
//!   nobody can tell) → judged again from the start once the library's
//!   row would have followed (`mirror_rules::foreign_object`, 3 s after
//!   the row). Otherwise
//!   the blob is copied to the key (CopyObject, or a multipart copy above
//!   5 GiB), then the row is read again: if it changed during the copy, the
//!   new content is copied too.
//! - After a copy to the LATEST key, its noncurrent versions carrying our
//!   marker are deleted (every commit would otherwise leave a copy behind);
//!   the library's stay.
//!
//! AWS calls per key: GetItem; for a live blob row HeadObject, and when it
//! differs CopyObject (or CreateMultipartUpload, UploadPartCopy per part,
//! CompleteMultipartUpload; AbortMultipartUpload on failure), then
//! ListObjectVersions (HeadObject of the version beneath ours when it is
//! not the one read, and on LATEST of each noncurrent version, DeleteObject
//! of ours), then GetItem + HeadObject again. Absent row:
//! ListObjectVersions, HeadObject and maybe DeleteObject per version. A
//! reclaimed row: ListObjectVersions, HeadObject per version, GetItem, and
//! DeleteObject per version it holds. A library row: HeadObject (when it
//! is a copy of ours of other bytes: ListObjectVersions, HeadObject, maybe
//! DeleteObject), HeadObject again; when the key holds other bytes than
//! the row names, HeadObject of the blob (GetItem of its verified record
//! when S3 has no whole checksum) and the copy.
//!
//! Residual windows (documented, not closed): S3's `LastModified` has
//! one-second precision, so a library write in the same second as the row's
//! `update_at` can be replaced; it stays as a noncurrent version (never
//! deleted) and becomes current again when the library's row arrives.
//! Copies written before the marker existed are not recognised as ours:
//! they are left, not pruned.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::{StreamExt, TryStreamExt};
use time::OffsetDateTime;

use super::Repository;
use crate::error::{Error, Result};
use crate::layout::{META_ARTIFACT_NAME, META_ARTIFACT_SHA256, copy_source, now};
use crate::limits::META_MIRRORED_FOR;
use crate::mirror_rules::{self, Foreign};
use crate::names::{ArtifactName, Version};
use crate::rows::VersionRow;
use artifact_store::blob_objects::abort_multipart;
use artifact_store::mirror_objects::{self, Condition, Conditional};
use artifact_store::version_items::{bytes_in_blob_store, recorded_sha256};

/// Copies of one key within one record: a row that keeps changing during
/// copies is left to its own later records.
const MAX_ROUNDS: usize = 4;

/// S3's most parts per multipart upload.
const MAX_PARTS: u64 = 10_000;

/// One stream record as the mirror needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorRecord {
    /// The row's `pk`, verbatim (our own partitions start with `__`).
    pub name: String,
    /// The row's `sk`.
    pub sort_key: String,
    /// For a REMOVE: the `sha256` of the row's old image.
    pub removed_sha256: Option<String>,
    /// For a REMOVE: when the row was removed (the record's
    /// `ApproximateCreationDateTime`, whole seconds); `None` when unknown.
    pub removed_at: Option<OffsetDateTime>,
    /// The stream's sequence number: what a failure is reported by.
    pub sequence_number: String,
}

/// How a blob is copied to a library key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyPlan {
    /// Larger blobs are copied in parts: one CopyObject copies at most 5 GiB
    /// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/CopyingObjectsMPUapi.html>).
    pub single_copy_max: u64,
    /// Size of each UploadPartCopy (raised when the object would need more
    /// than S3's 10 000 parts).
    pub part_size: u64,
    /// Parts copied at once.
    pub parallel_parts: usize,
}

const GIB: u64 = 1024 * 1024 * 1024;

impl Default for CopyPlan {
    fn default() -> Self {
        Self {
            single_copy_max: 5 * GIB,
            part_size: GIB / 2,
            parallel_parts: 8,
        }
    }
}

/// What one batch did.
#[derive(Debug, Default)]
pub struct MirrorReport {
    /// Records fully handled: every record before the failing one (all of
    /// them when nothing failed).
    pub handled: usize,
    /// Library objects written (copies of blobs).
    pub copied: usize,
    /// Library object versions deleted (purged rows, reclaimed versions).
    pub deleted: usize,
    /// The first record that failed, and why; nothing after it was done.
    pub failure: Option<MirrorFailure>,
}

/// The record a batch stopped at.
#[derive(Debug)]
pub struct MirrorFailure {
    pub sequence_number: String,
    pub error: Error,
}

/// What mirroring one row did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Unchanged,
    Copied,
    Deleted(usize),
}

/// The library key's object (one version of it).
#[derive(Debug)]
struct Head {
    version_id: Option<String>,
    e_tag: Option<String>,
    sha256: Option<String>,
    last_modified: Option<OffsetDateTime>,
    /// Our marker's value: the sort key the mirror copied it for.
    mirrored_for: Option<String>,
}

impl Head {
    /// Whether the mirror wrote this object for the key of `sort_key`.
    fn ours(&self, sort_key: &str) -> bool {
        self.mirrored_for.as_deref() == Some(sort_key)
    }
}

/// A REMOVE of the row: the sha256 it held and when it went.
#[derive(Debug, Clone, Copy)]
struct Removal<'a> {
    sha256: &'a str,
    at: Option<OffsetDateTime>,
}

impl Removal<'_> {
    /// Whether `head` is an object this removal takes away: exactly its
    /// bytes, written in an earlier second than the removal (whole seconds
    /// on both sides: an object of the same second is kept).
    fn takes(&self, head: &Head) -> bool {
        head.sha256.as_deref() == Some(self.sha256)
            && matches!((head.last_modified, self.at),
                (Some(written), Some(removed)) if written.unix_timestamp() < removed.unix_timestamp())
    }
}

/// What a conditional copy did.
#[derive(Debug)]
enum Copied {
    /// It landed: the version it created (`None` without versioning).
    Landed(Option<String>),
    /// S3 refused it: the key changed since it was read.
    Refused,
}

impl Repository {
    /// Mirrors the rows `records` name (SPEC 3.2), in order, each key once
    /// per batch (it is re-read, so its latest state is what counts). Stops
    /// at the first record that fails: the report says which, and how many
    /// records before it were done.
    pub async fn mirror(&self, records: &[MirrorRecord]) -> MirrorReport {
        self.mirror_with(records, &CopyPlan::default()).await
    }

    /// [`Self::mirror`] with the given copy sizes (tests use tiny parts).
    pub async fn mirror_with(&self, records: &[MirrorRecord], plan: &CopyPlan) -> MirrorReport {
        // Each key at its first record, with the REMOVEs the batch holds of it.
        let mut keys: Vec<(usize, &MirrorRecord, Vec<Removal>)> = Vec::new();
        let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
        for (index, record) in records.iter().enumerate() {
            if record.name.starts_with("__") {
                continue; // our own partitions: aliases, history, uploads, …
            }
            let removal = record.removed_sha256.as_deref().map(|sha256| Removal {
                sha256,
                at: record.removed_at,
            });
            match seen.get(&(record.name.as_str(), record.sort_key.as_str())) {
                Some(&at) => keys[at].2.extend(removal),
                None => {
                    seen.insert((&record.name, &record.sort_key), keys.len());
                    keys.push((index, record, removal.into_iter().collect()));
                }
            }
        }
        let mut report = MirrorReport::default();
        for (index, record, removals) in &keys {
            // Boxed: the copy's nested futures are deep enough to overflow
            // the compiler's layout query in a Lambda's `main` otherwise.
            match Box::pin(self.mirror_key(record, removals, plan)).await {
                Ok(Outcome::Unchanged) => {}
                Ok(Outcome::Copied) => report.copied += 1,
                Ok(Outcome::Deleted(n)) => report.deleted += n,
                Err(error) => {
                    report.handled = *index;
                    report.failure = Some(MirrorFailure {
                        sequence_number: record.sequence_number.clone(),
                        error,
                    });
                    return report;
                }
            }
        }
        report.handled = records.len();
        report
    }

    /// Makes the library key of one row equal to the row.
    async fn mirror_key(
        &self,
        record: &MirrorRecord,
        removals: &[Removal<'_>],
        plan: &CopyPlan,
    ) -> Result<Outcome> {
        let (Ok(name), Ok(version)) = (
            record.name.parse::<ArtifactName>(),
            Version::from_sort_key(&record.sort_key),
        ) else {
            tracing::debug!(pk = %record.name, sk = %record.sort_key, "not an artifact row; not mirrored");
            return Ok(Outcome::Unchanged);
        };
        let key = self.layout.object_key(&name, version);
        let sort_key = version.sort_key();
        // Whether a copy of ours landed (and stayed) during this call.
        let mut copied = false;
        let done = |copied: bool| match copied {
            true => Outcome::Copied,
            false => Outcome::Unchanged,
        };
        // One more round than copies: a wait for the library's row
        // (`Foreign::JudgeAgainAt`) takes one, and its judgment must follow.
        for _ in 0..=MAX_ROUNDS {
            let Some(item) = self.get_version_item(&name, version).await? else {
                tracing::debug!(%key, removals = removals.len(), copied, "no row");
                // Purged, also while we copied: what we wrote goes too.
                let deleted = if removals.is_empty() && !copied {
                    0
                } else {
                    self.mirror_remove(&key, &sort_key, removals).await?
                };
                return Ok(match deleted {
                    0 => Outcome::Unchanged,
                    n => Outcome::Deleted(n),
                });
            };
            if !bytes_in_blob_store(&item) {
                let Some(sha256) = recorded_sha256(&item) else {
                    return Ok(done(copied));
                };
                if self.yield_to_library(&key, &sort_key, sha256).await? {
                    return Ok(Outcome::Deleted(1));
                }
                let row = VersionRow::from_item(&item)?;
                match self.repair_library_row(&name, &key, &row, plan).await? {
                    Some(Copied::Landed(_)) => return Ok(Outcome::Copied),
                    Some(Copied::Refused) => {
                        tracing::info!(%key, "the key changed since it was read (conditional copy refused); judged again");
                        continue;
                    }
                    None => return Ok(done(copied)),
                }
            }
            let row = VersionRow::from_item(&item)?;
            if row.is_deleted {
                if row.reclaimed_at.is_none() {
                    return Ok(done(copied));
                }
                let deleted = self.mirror_delete_holding(&key, &row).await?;
                return Ok(Outcome::Deleted(deleted));
            }
            let head = self.mirror_head(&key, None).await?;
            if let Some(head) = &head {
                if head.sha256.as_deref() == Some(row.sha256.as_str()) {
                    tracing::debug!(%key, sha256 = %row.sha256, ours = head.ours(&sort_key), version_id = ?head.version_id, "the key holds the row's bytes already");
                    return Ok(done(copied));
                }
                if !head.ours(&sort_key) {
                    match mirror_rules::foreign_object(head.last_modified, row.update_at, now()) {
                        Foreign::Replace => {}
                        Foreign::Leave => {
                            tracing::info!(%key, row_sha256 = %row.sha256, object_sha256 = ?head.sha256, "a library write newer than the row; left alone");
                            return Ok(done(copied));
                        }
                        // Of the row's own second: maybe the library's write
                        // after it, its row on its way. Judged again once it
                        // would have landed.
                        Foreign::JudgeAgainAt(at) => {
                            tracing::info!(%key, row_sha256 = %row.sha256, object_sha256 = ?head.sha256, "a library object of the row's own second; judged again shortly");
                            let wait = (at - now()).try_into().unwrap_or_default();
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                    }
                }
            }
            match self
                .mirror_copy(&name, &key, &row, head.as_ref(), plan)
                .await?
            {
                Copied::Refused => {
                    tracing::info!(%key, "the key changed since it was read (conditional copy refused); judged again");
                }
                Copied::Landed(ours) => {
                    copied |= self
                        .settle(
                            &key,
                            &sort_key,
                            head.as_ref(),
                            row.update_at,
                            ours.as_deref(),
                            version == Version::Latest,
                        )
                        .await?;
                }
            }
        }
        Ok(done(copied))
    }

    /// After our copy (version `ours`) of a row written at `row_written`
    /// landed on `key`: withdraws it when another writer's version landed
    /// while we copied (rule 3); otherwise, on the LATEST key (`prune`),
    /// deletes the noncurrent versions that are ours. Whether our copy
    /// stays.
    async fn settle(
        &self,
        key: &str,
        sort_key: &str,
        read: Option<&Head>,
        row_written: OffsetDateTime,
        ours: Option<&str>,
        prune: bool,
    ) -> Result<bool> {
        let Some(ours) = ours else {
            return Ok(true); // no versioning: nothing to tell apart
        };
        let versions = self.key_versions(key).await?;
        if let [(newest, _), (beneath, _), ..] = versions.as_slice()
            && newest == ours
            && read.is_none_or(|h| h.version_id.as_deref() != Some(beneath.as_str()))
            && self
                .mirror_head(key, Some(beneath))
                .await?
                .is_some_and(|h| landed_meanwhile(&h, sort_key, read, row_written))
        {
            tracing::warn!(%key, version_id = %beneath, "another writer's object landed during our copy; our copy withdrawn");
            self.mirror_delete(key, Some(ours)).await?;
            return Ok(false);
        }
        if prune {
            let mut pruned = 0;
            for (version, current) in &versions {
                if *current {
                    continue;
                }
                let mine = version == ours
                    || self
                        .mirror_head(key, Some(version))
                        .await?
                        .is_some_and(|h| h.ours(sort_key));
                if mine {
                    self.mirror_delete(key, Some(version)).await?;
                    pruned += 1;
                }
            }
            tracing::debug!(%key, pruned, "noncurrent copies of ours deleted from the library LATEST key");
        }
        Ok(true)
    }

    /// A row the library wrote, holding `sha256`: its bytes are its own
    /// object at the key. When a copy of ours is current and the version
    /// right beneath it is the library's object of these bytes (our copy
    /// landed between the library's S3 PUT and its row PUT, over an object
    /// older than the row we copied for), our copy is withdrawn: the
    /// library's object is current again. Whether it was.
    async fn yield_to_library(&self, key: &str, sort_key: &str, sha256: &str) -> Result<bool> {
        let Some(head) = self.mirror_head(key, None).await? else {
            return Ok(false);
        };
        let (true, Some(ours)) = (head.ours(sort_key), head.version_id.as_deref()) else {
            return Ok(false); // the library's own object (or no versions)
        };
        if head.sha256.as_deref() == Some(sha256) {
            return Ok(false);
        }
        let versions = self.key_versions(key).await?;
        if let [(newest, _), (beneath, _), ..] = versions.as_slice()
            && newest == ours
            && self
                .mirror_head(key, Some(beneath))
                .await?
                .is_some_and(|h| !h.ours(sort_key) && h.sha256.as_deref() == Some(sha256))
        {
            self.mirror_delete(key, Some(ours)).await?;
            tracing::warn!(%key, %sha256, version_id = %beneath, "the library's row names its object beneath our copy; our copy withdrawn");
            return Ok(true);
        }
        Ok(false)
    }

    /// A numbered row the library wrote whose key holds other bytes than
    /// it names (`artifact_sha256`, SPEC 7.3): the library's publish copies
    /// the object its LATEST key holds, which lags behind a LATEST
    /// committed here until this mirror copied it, and names the bytes of
    /// the LATEST row it read. When the blob store holds exactly the bytes
    /// the row names (checked by S3 or verified), they are copied onto the
    /// key over the object read (its version stays beneath): readers of
    /// the row, here and in the library, get the bytes it names. `None`:
    /// nothing to repair, or nothing to repair it with.
    async fn repair_library_row(
        &self,
        name: &ArtifactName,
        key: &str,
        row: &VersionRow,
        plan: &CopyPlan,
    ) -> Result<Option<Copied>> {
        if row.is_deleted || row.version.is_latest() {
            return Ok(None);
        }
        let Some(head) = self.mirror_head(key, None).await? else {
            return Ok(None);
        };
        if head.sha256.is_none() || head.sha256.as_deref() == Some(row.sha256.as_str()) {
            return Ok(None);
        }
        let (stored, blob) = self.stored_blob(name, &row.sha256, None).await?;
        let (crate::blob_rules::Stored::Holds, Some(blob)) = (stored, blob) else {
            return Ok(None);
        };
        tracing::warn!(%key, row_sha256 = %row.sha256, object_sha256 = ?head.sha256, "a library row names other bytes than its key holds; the bytes it names copied onto it");
        let sized = VersionRow {
            size: Some(blob.content_length().unwrap_or_default().max(0) as u64),
            ..row.clone()
        };
        self.mirror_copy(name, key, &sized, Some(&head), plan)
            .await
            .map(Some)
    }

    /// The row is gone: deletes every version of `key` that is ours, and the
    /// current one when one of `removals` takes it (see the module doc).
    async fn mirror_remove(
        &self,
        key: &str,
        sort_key: &str,
        removals: &[Removal<'_>],
    ) -> Result<usize> {
        let mut deleted = 0;
        for (version, current) in self.key_versions(key).await? {
            let Some(head) = self.mirror_head(key, Some(&version)).await? else {
                continue;
            };
            let ours = head.ours(sort_key);
            if ours || (current && removals.iter().any(|r| r.takes(&head))) {
                self.mirror_delete(key, Some(&version)).await?;
                tracing::info!(%key, sha256 = ?head.sha256, ours, "purged row: library object deleted");
                deleted += 1;
            } else if current {
                tracing::info!(%key, sha256 = ?head.sha256, "purged row: the key holds a library write it does not own; left alone");
            }
        }
        Ok(deleted)
    }

    /// Deletes the versions of `key` that hold the bytes of the reclaimed
    /// row `row` (`artifact_sha256`) and were written before they were
    /// reclaimed, provided the row, read again after the listing, is still
    /// that one. The row was read before the listing: the artifact may
    /// have been purged and written again since, the library putting the
    /// same bytes at that key for a new version (SPEC 7.14, 7.15).
    async fn mirror_delete_holding(&self, key: &str, row: &VersionRow) -> Result<usize> {
        let Some(reclaimed_at) = row.reclaimed_at else {
            return Ok(0);
        };
        let mut holding = Vec::new();
        for (version, _) in self.key_versions(key).await? {
            let held = self
                .mirror_head(key, Some(&version))
                .await?
                .is_some_and(|h| {
                    h.sha256.as_deref() == Some(row.sha256.as_str())
                        && h.last_modified.is_some_and(|t| t <= reclaimed_at)
                });
            if held {
                holding.push(version);
            }
        }
        let again = self.get_row(&row.name, row.version).await?;
        if again.is_none_or(|r| !r.is_deleted || r.reclaimed_at != Some(reclaimed_at)) {
            tracing::info!(%key, "the reclaimed row changed since it was read; its objects left alone");
            return Ok(0);
        }
        for version in &holding {
            self.mirror_delete(key, Some(version)).await?;
        }
        if !holding.is_empty() {
            tracing::info!(%key, sha256 = %row.sha256, deleted = holding.len(), "reclaimed version: library objects deleted");
        }
        Ok(holding.len())
    }

    /// Every version of exactly `key`, newest first, with whether it is the
    /// current one.
    async fn key_versions(&self, key: &str) -> Result<Vec<(String, bool)>> {
        let versions = mirror_objects::key_versions(&self.s3, &self.layout.bucket, key).await?;
        Ok(versions
            .into_iter()
            .map(|v| (v.version_id, v.is_latest))
            .collect())
    }

    /// The key's current object (or one version of it); `None` when absent.
    async fn mirror_head(&self, key: &str, version_id: Option<&str>) -> Result<Option<Head>> {
        let head = mirror_objects::head(&self.s3, &self.layout.bucket, key, version_id).await?;
        Ok(head.map(|out| {
            let metadata = |k: &str| out.metadata.get(k).cloned();
            Head {
                sha256: metadata(META_ARTIFACT_SHA256),
                mirrored_for: metadata(META_MIRRORED_FOR),
                last_modified: out.last_modified,
                e_tag: out.e_tag,
                version_id: out.version_id,
            }
        }))
    }

    async fn mirror_delete(&self, key: &str, version_id: Option<&str>) -> Result<()> {
        mirror_objects::delete(&self.s3, &self.layout.bucket, key, version_id).await
    }

    /// Copies the row's blob (its current version: every version of a
    /// content-addressed key holds the same bytes) to the library key, on
    /// condition that the key still holds what was `read` (rule 2).
    async fn mirror_copy(
        &self,
        name: &ArtifactName,
        key: &str,
        row: &VersionRow,
        read: Option<&Head>,
        plan: &CopyPlan,
    ) -> Result<Copied> {
        let blob = self.layout.blob_key(name, &row.sha256);
        let source = copy_source(&self.layout.bucket, &blob, None);
        let metadata = library_metadata(name, row);
        let condition = condition_on(read);
        let size = row.size.unwrap_or(0);
        let copied = if size > plan.single_copy_max {
            self.mirror_copy_in_parts(key, &source, size, metadata, row, &condition, plan)
                .await?
        } else {
            let out = match mirror_objects::copy(
                &self.s3,
                &self.layout.bucket,
                key,
                &source,
                &condition,
                metadata,
                row.content_type.clone(),
            )
            .await?
            {
                Conditional::Written(out) => out,
                Conditional::Refused => return Ok(Copied::Refused),
            };
            // S3 computed the copy's SHA-256: it must be the row's (a
            // composite `…-N` value of a multipart source cannot be compared).
            let computed = out.checksum_sha256.as_deref().filter(|c| !c.contains('-'));
            let expected = hex::decode(&row.sha256).ok().map(|d| STANDARD.encode(d));
            if let (Some(computed), Some(expected)) = (computed, expected)
                && computed != expected
            {
                self.mirror_delete(key, out.version_id.as_deref()).await?;
                return Err(Error::internal(
                    "mirror copy",
                    format!(
                        "{blob} holds bytes whose SHA-256 is {computed} (base64), not its name"
                    ),
                ));
            }
            Copied::Landed(out.version_id)
        };
        if matches!(copied, Copied::Landed(_)) {
            tracing::info!(%key, sha256 = %row.sha256, size, "blob copied to the library key");
        }
        Ok(copied)
    }

    /// A copy larger than one CopyObject allows: parts copied in parallel,
    /// the upload aborted when any fails (or the completion is refused by
    /// its condition). No checksum algorithm: S3 would then require each
    /// part's checksum on completion, and a composite checksum says nothing
    /// about the whole object's SHA-256 anyway.
    #[allow(clippy::too_many_arguments)]
    async fn mirror_copy_in_parts(
        &self,
        key: &str,
        source: &str,
        size: u64,
        metadata: HashMap<String, String>,
        row: &VersionRow,
        condition: &Condition,
        plan: &CopyPlan,
    ) -> Result<Copied> {
        let part_size = plan.part_size.max(size.div_ceil(MAX_PARTS)).max(1);
        let upload_id = mirror_objects::create_multipart_copy(
            &self.s3,
            &self.layout.bucket,
            key,
            metadata,
            row.content_type.clone(),
        )
        .await?;
        let copied = async {
            let parts: Vec<_> = futures::stream::iter(0..size.div_ceil(part_size))
                .map(|index| {
                    let (start, number) = (index * part_size, index as i32 + 1);
                    let end = (start + part_size).min(size) - 1;
                    mirror_objects::upload_part_copy(
                        &self.s3,
                        &self.layout.bucket,
                        key,
                        &upload_id,
                        number,
                        source,
                        start..=end,
                    )
                })
                .buffered(plan.parallel_parts.max(1))
                .try_collect()
                .await?;
            let completed = mirror_objects::complete_multipart_copy(
                &self.s3,
                &self.layout.bucket,
                key,
                &upload_id,
                parts,
                condition,
            )
            .await?;
            Ok(match completed {
                Conditional::Written(version_id) => Copied::Landed(version_id),
                Conditional::Refused => Copied::Refused,
            })
        }
        .await;
        if !matches!(copied, Ok(Copied::Landed(_))) {
            let aborted = abort_multipart(&self.s3, &self.layout.bucket, key, &upload_id).await;
            if let Err(e) = aborted {
                tracing::warn!(%key, %upload_id, error = ?e, "aborting a failed multipart copy failed; the bucket's lifecycle rule removes it");
            }
        }
        copied
    }
}

/// The condition a copy is made on: the destination still holds the object
/// read (its ETag), or still nothing.
fn condition_on(read: Option<&Head>) -> Condition {
    match read {
        Some(head) => Condition {
            if_match: head.e_tag.clone(),
            if_none_match: None,
        },
        None => Condition {
            if_match: None,
            if_none_match: Some("*".to_owned()),
        },
    }
}

/// Whether `beneath`, the version right under our fresh copy and not the
/// one read before copying, is another writer's object that landed while
/// we copied. Ours never is. When the key held an object, any other version
/// there is new. When it held none, a version beneath may also be an old
/// one under a delete marker (which the listing of versions does not
/// place): only one written no earlier than the row's second counts.
fn landed_meanwhile(
    beneath: &Head,
    sort_key: &str,
    read: Option<&Head>,
    row_written: OffsetDateTime,
) -> bool {
    !beneath.ours(sort_key)
        && (read.is_some()
            || beneath
                .last_modified
                .is_some_and(|t| t.unix_timestamp() >= row_written.unix_timestamp()))
}

/// The user metadata `versioned` 1.0.1 writes: the row's own, then
/// `artifact_name` and `artifact_sha256` (ours win: the library reads them),
/// and our marker (the sort key the copy is made for).
fn library_metadata(name: &ArtifactName, row: &VersionRow) -> HashMap<String, String> {
    let mut metadata: HashMap<String, String> = row
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.insert(META_ARTIFACT_NAME.to_owned(), name.to_string());
    metadata.insert(META_ARTIFACT_SHA256.to_owned(), row.sha256.clone());
    metadata.insert(META_MIRRORED_FOR.to_owned(), row.version.sort_key());
    metadata
}
