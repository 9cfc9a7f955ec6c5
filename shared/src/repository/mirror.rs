//! The mirror of the library's layout (SPEC 3.2): for each row a stream
//! batch names, make `{prefix}/{name}/{LATEST|000042}{suffix}` hold what the
//! row says, exactly as `versioned` 1.0.1 would have written it (its user
//! metadata `artifact_name`, `artifact_sha256`, the row's user metadata and
//! content type).
//!
//! It acts on the row as it is *now* (one consistent GetItem per key), never
//! on the record's images, so a batch applied twice, records out of date,
//! or the emulator's phantom records (design §1a) change nothing.
//!
//! - Row absent (a purge): the library key's current object is deleted (by
//!   its VersionId) when it holds a sha256 the batch's REMOVE records held,
//!   so that a library write since then survives.
//! - Row without `bytes=blob` (written by the library or a previous
//!   release): its bytes already are at the library key; nothing to do.
//! - Soft-deleted: left as it is (the library hides it by `is_deleted`);
//!   once reclaimed (`reclaimed_at`), the key's versions holding its sha256
//!   are deleted.
//! - Live: the key already holds the row's sha256 → nothing. It holds other
//!   bytes written after the row (`LastModified > update_at`) → a newer
//!   library write (the library writes S3 before its row): left alone.
//!   Otherwise the blob is copied to the key (CopyObject, or a multipart
//!   copy above 5 GiB), then the row is read again: if it changed during the
//!   copy, the new content is copied too (our own copy, however late it
//!   landed, is never mistaken for a library write).
//!
//! AWS calls per key: GetItem; for a live blob row HeadObject, and when it
//! differs CopyObject (or CreateMultipartUpload, UploadPartCopy per part,
//! CompleteMultipartUpload; AbortMultipartUpload on failure) followed by
//! GetItem + HeadObject again. Absent row: HeadObject, DeleteObject. A
//! reclaimed row: ListObjectVersions, HeadObject and DeleteObject per version.
//! After a copy to the LATEST key: ListObjectVersions, and DeleteObject per
//! noncurrent version (every commit would otherwise leave a copy behind).
//!
//! Residual windows (documented, not closed): S3's `LastModified` has
//! one-second precision, so a library write in the same second as the row's
//! `update_at` is overwritten; real S3 would close it with a conditional
//! copy (`If-Match`), which moto ignores (design §1d).

use std::collections::{BTreeSet, HashMap};

use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, MetadataDirective,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::{StreamExt, TryStreamExt};
use time::OffsetDateTime;

use super::Repository;
use crate::error::{Error, Result};
use crate::layout::{BYTES_BLOB, META_ARTIFACT_NAME, META_ARTIFACT_SHA256, attr, copy_source};
use crate::mirror::{CopyPlan, MirrorFailure, MirrorRecord, MirrorReport};
use crate::names::{ArtifactName, Version};
use crate::rows::{Item, VersionRow};

/// Copies of one key within one record: a row that keeps changing during
/// copies is left to its own later records.
const MAX_ROUNDS: usize = 4;

/// S3's most parts per multipart upload.
const MAX_PARTS: u64 = 10_000;

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
    sha256: Option<String>,
    last_modified: Option<OffsetDateTime>,
}

/// A copy this record made.
#[derive(Debug)]
struct Written {
    version_id: Option<String>,
    sha256: String,
}

impl Written {
    /// Whether `head` is this copy (its version; by content when the
    /// bucket gives no version ids).
    fn is(&self, head: &Head) -> bool {
        match (&self.version_id, &head.version_id) {
            (Some(ours), Some(theirs)) => ours == theirs,
            _ => head.sha256.as_deref() == Some(self.sha256.as_str()),
        }
    }
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
        // Each key at its first record, with the sha256s its REMOVEs held.
        let mut keys: Vec<(usize, &MirrorRecord, BTreeSet<&str>)> = Vec::new();
        let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
        for (index, record) in records.iter().enumerate() {
            if record.name.starts_with("__") {
                continue; // our own partitions: aliases, history, uploads, …
            }
            let removed = record.removed_sha256.as_deref();
            match seen.get(&(record.name.as_str(), record.sort_key.as_str())) {
                Some(&at) => keys[at].2.extend(removed),
                None => {
                    seen.insert((&record.name, &record.sort_key), keys.len());
                    keys.push((index, record, removed.into_iter().collect()));
                }
            }
        }
        let mut report = MirrorReport::default();
        for (index, record, removed) in &keys {
            // Boxed: the copy's nested futures are deep enough to overflow
            // the compiler's layout query in a Lambda's `main` otherwise.
            match Box::pin(self.mirror_row(record, removed, plan)).await {
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

    async fn mirror_row(
        &self,
        record: &MirrorRecord,
        removed: &BTreeSet<&str>,
        plan: &CopyPlan,
    ) -> Result<Outcome> {
        let outcome = self.mirror_key(record, removed, plan).await?;
        if matches!(outcome, Outcome::Copied)
            && let Ok(name) = record.name.parse::<ArtifactName>()
            && record.sort_key == Version::Latest.sort_key()
        {
            let key = self.layout.object_key(&name, Version::Latest);
            let pruned = self.prune_noncurrent(&key).await?;
            tracing::debug!(%key, pruned, "noncurrent library LATEST objects deleted");
        }
        Ok(outcome)
    }

    /// Makes the library key of one row equal to the row.
    async fn mirror_key(
        &self,
        record: &MirrorRecord,
        removed: &BTreeSet<&str>,
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
        let mut written: Option<Written> = None;
        let done = |written: &Option<Written>| match written {
            Some(_) => Outcome::Copied,
            None => Outcome::Unchanged,
        };
        for _ in 0..MAX_ROUNDS {
            let Some(item) = self.get_version_item(&name, version).await? else {
                // Purged, also while we copied: what we wrote goes too.
                let mut deleted = 0;
                if let Some(ours) = &written {
                    self.mirror_delete(&key, ours.version_id.as_deref()).await?;
                    deleted += 1;
                }
                deleted += self.mirror_remove(&key, removed).await?;
                return Ok(match deleted {
                    0 => Outcome::Unchanged,
                    n => Outcome::Deleted(n),
                });
            };
            if !in_blob_store(&item) {
                return Ok(done(&written));
            }
            let row = VersionRow::from_item(&item)?;
            if row.is_deleted {
                if row.reclaimed_at.is_none() {
                    return Ok(done(&written));
                }
                let deleted = self.mirror_delete_holding(&key, &row.sha256).await?;
                return Ok(Outcome::Deleted(deleted));
            }
            if let Some(head) = self.mirror_head(&key, None).await? {
                if head.sha256.as_deref() == Some(row.sha256.as_str()) {
                    return Ok(done(&written));
                }
                let ours = written.as_ref().is_some_and(|w| w.is(&head));
                if !ours && head.last_modified.is_some_and(|t| t > row.update_at) {
                    tracing::info!(%key, row_sha256 = %row.sha256, object_sha256 = ?head.sha256, "a library write newer than the row; left alone");
                    return Ok(done(&written));
                }
            }
            written = Some(self.mirror_copy(&name, &key, &row, plan).await?);
        }
        Ok(done(&written))
    }

    /// Deletes the key's current object when it holds one of `removed`.
    async fn mirror_remove(&self, key: &str, removed: &BTreeSet<&str>) -> Result<usize> {
        if removed.is_empty() {
            return Ok(0);
        }
        match self.mirror_head(key, None).await? {
            Some(head) if head.sha256.as_deref().is_some_and(|s| removed.contains(s)) => {
                self.mirror_delete(key, head.version_id.as_deref()).await?;
                tracing::info!(%key, sha256 = ?head.sha256, "purged row: library object deleted");
                Ok(1)
            }
            _ => Ok(0),
        }
    }

    /// Deletes every version of `key` whose `artifact_sha256` is `sha256`.
    async fn mirror_delete_holding(&self, key: &str, sha256: &str) -> Result<usize> {
        let versions: Vec<String> = self
            .key_versions(key)
            .await?
            .into_iter()
            .map(|(version, _)| version)
            .collect();
        let mut deleted = 0;
        for version in versions {
            let holds = self
                .mirror_head(key, Some(&version))
                .await?
                .is_some_and(|h| h.sha256.as_deref() == Some(sha256));
            if holds {
                self.mirror_delete(key, Some(&version)).await?;
                deleted += 1;
            }
        }
        if deleted > 0 {
            tracing::info!(%key, %sha256, deleted, "reclaimed version: library objects deleted");
        }
        Ok(deleted)
    }

    /// Deletes the noncurrent versions of the library's LATEST key after a
    /// copy to it. No row references them: the LATEST row is a blob row (it
    /// was just mirrored), version rows reference their own keys, and the
    /// library reads only the current object. Without this every commit
    /// would leave a full copy behind (the bucket has no noncurrent-version
    /// expiration: it could delete bytes rows of the previous release pin).
    async fn prune_noncurrent(&self, key: &str) -> Result<usize> {
        let mut deleted = 0;
        for (version, current) in self.key_versions(key).await? {
            if !current {
                self.mirror_delete(key, Some(&version)).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Every version of exactly `key`, with whether it is the current one.
    async fn key_versions(&self, key: &str) -> Result<Vec<(String, bool)>> {
        let mut versions = Vec::new();
        let (mut key_marker, mut version_marker) = (None, None);
        loop {
            let out = self
                .s3
                .list_object_versions()
                .bucket(&self.layout.bucket)
                .prefix(key)
                .set_key_marker(key_marker)
                .set_version_id_marker(version_marker)
                .send()
                .await
                .map_err(|e| Error::upstream("ListObjectVersions", e))?;
            versions.extend(
                out.versions()
                    .iter()
                    .filter(|v| v.key() == Some(key))
                    .filter_map(|v| {
                        let id = v.version_id()?.to_owned();
                        Some((id, v.is_latest() == Some(true)))
                    }),
            );
            if out.is_truncated() != Some(true) {
                break;
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            version_marker = out.next_version_id_marker().map(str::to_owned);
        }
        Ok(versions)
    }

    /// The key's current object (or one version of it); `None` when absent.
    async fn mirror_head(&self, key: &str, version_id: Option<&str>) -> Result<Option<Head>> {
        let out = self
            .s3
            .head_object()
            .bucket(&self.layout.bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await;
        match out {
            Ok(out) => Ok(Some(Head {
                sha256: out
                    .metadata()
                    .and_then(|m| m.get(META_ARTIFACT_SHA256))
                    .cloned(),
                last_modified: out
                    .last_modified()
                    .and_then(|t| OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos()).ok()),
                version_id: out.version_id,
            })),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(e) => Err(Error::upstream("HeadObject", e)),
        }
    }

    async fn mirror_delete(&self, key: &str, version_id: Option<&str>) -> Result<()> {
        self.s3
            .delete_object()
            .bucket(&self.layout.bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await
            .map_err(|e| Error::upstream("DeleteObject", e))?;
        Ok(())
    }

    /// Copies the row's blob (its current version: every version of a
    /// content-addressed key holds the same bytes) to the library key.
    async fn mirror_copy(
        &self,
        name: &ArtifactName,
        key: &str,
        row: &VersionRow,
        plan: &CopyPlan,
    ) -> Result<Written> {
        let blob = self.layout.blob_key(name, &row.sha256);
        let source = copy_source(&self.layout.bucket, &blob, None);
        let metadata = library_metadata(name, row);
        let size = row.size.unwrap_or(0);
        let version_id = if size > plan.single_copy_max {
            self.mirror_copy_in_parts(key, &source, size, metadata, row, plan)
                .await?
        } else {
            let out = self
                .s3
                .copy_object()
                .bucket(&self.layout.bucket)
                .key(key)
                .copy_source(&source)
                .metadata_directive(MetadataDirective::Replace)
                .set_metadata(Some(metadata))
                .set_content_type(row.content_type.clone())
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .send()
                .await
                .map_err(|e| Error::upstream("CopyObject", e))?;
            // S3 computed the copy's SHA-256: it must be the row's (a
            // composite `…-N` value of a multipart source cannot be compared).
            let computed = out
                .copy_object_result()
                .and_then(|r| r.checksum_sha256())
                .filter(|c| !c.contains('-'));
            let expected = hex::decode(&row.sha256).ok().map(|d| STANDARD.encode(d));
            if let (Some(computed), Some(expected)) = (computed, expected)
                && computed != expected
            {
                self.mirror_delete(key, out.version_id()).await?;
                return Err(Error::internal(
                    "mirror copy",
                    format!(
                        "{blob} holds bytes whose SHA-256 is {computed} (base64), not its name"
                    ),
                ));
            }
            out.version_id
        };
        tracing::info!(%key, sha256 = %row.sha256, size, "blob copied to the library key");
        Ok(Written {
            version_id,
            sha256: row.sha256.clone(),
        })
    }

    /// A copy larger than one CopyObject allows: parts copied in parallel,
    /// the upload aborted when any fails. No checksum algorithm: S3 would
    /// then require each part's checksum on completion, and a composite
    /// checksum says nothing about the whole object's SHA-256 anyway.
    async fn mirror_copy_in_parts(
        &self,
        key: &str,
        source: &str,
        size: u64,
        metadata: HashMap<String, String>,
        row: &VersionRow,
        plan: &CopyPlan,
    ) -> Result<Option<String>> {
        let part_size = plan.part_size.max(size.div_ceil(MAX_PARTS)).max(1);
        let upload = self
            .s3
            .create_multipart_upload()
            .bucket(&self.layout.bucket)
            .key(key)
            .set_metadata(Some(metadata))
            .set_content_type(row.content_type.clone())
            .send()
            .await
            .map_err(|e| Error::upstream("CreateMultipartUpload", e))?;
        let upload_id = upload
            .upload_id()
            .ok_or_else(|| {
                Error::internal("mirror copy", "CreateMultipartUpload gave no upload id")
            })?
            .to_owned();
        let copied = async {
            let parts: Vec<CompletedPart> = futures::stream::iter(0..size.div_ceil(part_size))
                .map(|index| {
                    let (start, number) = (index * part_size, index as i32 + 1);
                    let end = (start + part_size).min(size) - 1;
                    let upload_id = &upload_id;
                    async move {
                        let out = self
                            .s3
                            .upload_part_copy()
                            .bucket(&self.layout.bucket)
                            .key(key)
                            .upload_id(upload_id)
                            .part_number(number)
                            .copy_source(source)
                            .copy_source_range(format!("bytes={start}-{end}"))
                            .send()
                            .await
                            .map_err(|e| Error::upstream("UploadPartCopy", e))?;
                        Ok::<_, Error>(
                            CompletedPart::builder()
                                .part_number(number)
                                .set_e_tag(
                                    out.copy_part_result()
                                        .and_then(|r| r.e_tag())
                                        .map(str::to_owned),
                                )
                                .build(),
                        )
                    }
                })
                .buffered(plan.parallel_parts.max(1))
                .try_collect()
                .await?;
            let out = self
                .s3
                .complete_multipart_upload()
                .bucket(&self.layout.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| Error::upstream("CompleteMultipartUpload", e))?;
            Ok(out.version_id)
        }
        .await;
        if copied.is_err() {
            let aborted = self
                .s3
                .abort_multipart_upload()
                .bucket(&self.layout.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            if let Err(e) = aborted {
                tracing::warn!(%key, %upload_id, error = ?e, "aborting a failed multipart copy failed; the bucket's lifecycle rule removes it");
            }
        }
        copied
    }
}

/// Whether the row's bytes are in the blob store (`bytes = "blob"`); rows
/// the library or a previous release wrote have them at the library key.
// Read here until `VersionRow` decodes where its bytes are (rows.rs).
fn in_blob_store(item: &Item) -> bool {
    item.get(attr::BYTES)
        .and_then(|v| v.as_s().ok())
        .is_some_and(|b| b == BYTES_BLOB)
}

/// The user metadata `versioned` 1.0.1 writes: the row's own, then
/// `artifact_name` and `artifact_sha256` (ours win: the library reads them).
fn library_metadata(name: &ArtifactName, row: &VersionRow) -> HashMap<String, String> {
    let mut metadata: HashMap<String, String> = row
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.insert(META_ARTIFACT_NAME.to_owned(), name.to_string());
    metadata.insert(META_ARTIFACT_SHA256.to_owned(), row.sha256.clone());
    metadata
}
