//! Retention: soft-delete old versions, then reclaim their bytes.
//!
//! `purge_versions` is the library's `purge_artifact_versions` plus alias
//! protection and dry runs. `reclaim` deletes the S3 bytes of versions that
//! have been soft-deleted longer than a grace period; their rows stay as
//! tombstones so the numbers are never handed out again (SPEC 7.2, 7.8).

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

use super::Repository;
use crate::error::{Error, Result};
use crate::layout::{attr, format_update_at, now};
use crate::model::{RetentionPolicy, RetentionReport};
use crate::names::{ArtifactName, Version};
use crate::rows::{VersionRow, key, sv, version_key};

/// What one reclaim pass over an artifact did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReclaimReport {
    /// Versions whose bytes were deleted (rows kept as tombstones).
    pub reclaimed: Vec<Version>,
    /// Soft-deleted rows without a deletion time (the Python library's), now
    /// stamped so that their grace period starts.
    pub stamped: Vec<Version>,
}

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
        let rows = self.version_rows(name).await?;
        if rows.is_empty() {
            return Err(Error::ArtifactNotFound {
                name: name.to_string(),
            });
        }
        let protected: BTreeSet<Version> = self
            .alias_rows(name)
            .await?
            .iter()
            .flat_map(|a| a.targets().collect::<Vec<_>>())
            .collect();
        // Saturating: an age beyond the calendar keeps everything.
        let expire =
            purge_time.checked_sub(policy.older_than.try_into().unwrap_or(time::Duration::MAX));
        let expire = expire.unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let mut live: Vec<&VersionRow> = rows
            .iter()
            .filter(|r| r.is_live() && !r.version.is_latest())
            .collect();
        live.sort_by_key(|r| std::cmp::Reverse(r.version));
        let candidates: Vec<&VersionRow> = live
            .into_iter()
            .skip(policy.keep_last_n as usize)
            .filter(|r| r.update_at < expire)
            .filter(|r| r.aliases.is_empty() && !protected.contains(&r.version))
            .collect();
        let mut deleted = Vec::new();
        for row in candidates {
            if dry_run || self.soft_delete_unreferenced(name, row.version).await? {
                deleted.push(row.to_artifact(&self.layout));
            }
        }
        Ok(RetentionReport {
            purge_time,
            dry_run,
            deleted,
        })
    }

    /// Deletes the S3 bytes of versions soft-deleted more than `grace` ago.
    pub async fn reclaim(&self, name: &ArtifactName, grace: Duration) -> Result<ReclaimReport> {
        let cutoff = now()
            .checked_sub(grace.try_into().unwrap_or(time::Duration::MAX))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let mut report = ReclaimReport::default();
        for row in self.version_rows(name).await? {
            if row.is_live() || row.version.is_latest() || row.reclaimed_at.is_some() {
                continue;
            }
            match row.deleted_at {
                None => {
                    self.mark(name, row.version, attr::DELETED_AT, now())
                        .await?;
                    report.stamped.push(row.version);
                }
                Some(deleted_at) if deleted_at <= cutoff => {
                    let key = self.layout.object_key(name, row.version);
                    self.delete_all_object_versions(&key, Some(&key)).await?;
                    self.mark(name, row.version, attr::RECLAIMED_AT, now())
                        .await?;
                    report.reclaimed.push(row.version);
                }
                Some(_) => {}
            }
        }
        Ok(report)
    }

    async fn version_rows(&self, name: &ArtifactName) -> Result<Vec<VersionRow>> {
        self.query_all(name.as_str())
            .await?
            .iter()
            .map(VersionRow::from_item)
            .collect()
    }

    /// Soft-deletes a version unless an alias references it meanwhile.
    /// Returns whether it was deleted.
    async fn soft_delete_unreferenced(
        &self,
        name: &ArtifactName,
        version: Version,
    ) -> Result<bool> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.layout.table)
            .set_key(Some(version_key(name, version)))
            .update_expression("SET #is_deleted = :true, #deleted_at = :now")
            .condition_expression(
                "attribute_exists(#pk) AND #is_deleted = :false AND attribute_not_exists(#aliases)",
            )
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#is_deleted", attr::IS_DELETED)
            .expression_attribute_names("#deleted_at", attr::DELETED_AT)
            .expression_attribute_names("#aliases", attr::ALIASES)
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":now", sv(format_update_at(now())))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(Error::upstream("UpdateItem", e)),
        }
    }

    /// Sets a timestamp attribute on an existing soft-deleted row.
    async fn mark(
        &self,
        name: &ArtifactName,
        version: Version,
        attribute: &str,
        at: OffsetDateTime,
    ) -> Result<()> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.layout.table)
            .set_key(Some(version_key(name, version)))
            .update_expression("SET #attr = :at")
            .condition_expression("attribute_exists(#pk) AND #is_deleted = :true")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#is_deleted", attr::IS_DELETED)
            .expression_attribute_names("#attr", attribute)
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":at", sv(format_update_at(at)))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            // Purged meanwhile: nothing left to mark.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(Error::upstream("UpdateItem", e)),
        }
    }

    /// Where the scheduled retention pass stopped (the last artifact it
    /// finished), if it stopped early.
    pub async fn retention_cursor(&self) -> Result<Option<ArtifactName>> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.layout.table)
            .set_key(Some(key(RETENTION_PK, RETENTION_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::upstream("GetItem", e))?;
        Ok(out
            .item()
            .and_then(|item| item.get(AFTER))
            .and_then(|v| v.as_s().ok())
            .and_then(|s| s.parse().ok()))
    }

    /// Records where the next pass resumes; `None` clears it (pass complete).
    pub async fn set_retention_cursor(&self, after: Option<&ArtifactName>) -> Result<()> {
        match after {
            Some(name) => {
                let mut item = key(RETENTION_PK, RETENTION_SK);
                item.insert(AFTER.into(), sv(name.as_str()));
                item.insert(attr::UPDATE_AT.into(), sv(format_update_at(now())));
                self.ddb
                    .put_item()
                    .table_name(&self.layout.table)
                    .set_item(Some(item))
                    .send()
                    .await
                    .map_err(|e| Error::upstream("PutItem", e))?;
            }
            None => {
                self.ddb
                    .delete_item()
                    .table_name(&self.layout.table)
                    .set_key(Some(key(RETENTION_PK, RETENTION_SK)))
                    .send()
                    .await
                    .map_err(|e| Error::upstream("DeleteItem", e))?;
            }
        }
        Ok(())
    }
}

/// The scheduled job's bookkeeping lives in a partition of its own; artifact
/// names cannot start with `_`, and alias partitions end in `-alias`.
const RETENTION_PK: &str = "__scheduled-purge";
const RETENTION_SK: &str = "cursor";
const AFTER: &str = "after";
