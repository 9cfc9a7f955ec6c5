//! Versions: read, list, publish, soft-delete; artifact names; full purge.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, DeleteRequest, ReturnValue,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_s3::types::{ChecksumAlgorithm, Delete, ObjectIdentifier};
use base64::Engine;

use super::aliases::TransactFailure;
use super::{MAX_ATTEMPTS, Repository, decode_cursor, encode_cursor, page_size};
use crate::error::{Error, Result};
use crate::layout::{alias_pk, attr, format_update_at, history_pk, now};
use crate::model::{Artifact, LOCAL_ACTOR, Page, Published};
use crate::names::{ArtifactName, Version};
use crate::rows::{AliasRow, Item, VersionRow, nv, sv, version_key};

impl Repository {
    /// One live version with a presigned download URL. AWS calls: 1 (GetItem).
    pub async fn get_version(&self, name: &ArtifactName, version: Version) -> Result<Artifact> {
        let row = self.get_live_row(name, version).await?;
        let mut artifact = row.to_artifact(&self.layout);
        artifact.download_url = Some(
            self.download_url(name, version, row.s3_version_id.as_deref())
                .await?,
        );
        Ok(artifact)
    }

    /// Live versions, LATEST first, then newest first. AWS calls: 1 per page.
    pub async fn list_versions(
        &self,
        name: &ArtifactName,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<Artifact>> {
        let limit = page_size(limit)?;
        let start = decode_cursor(name.as_str(), cursor, |sk| {
            Version::from_sort_key(sk).is_ok()
        })?;
        let first_page = start.is_none();
        let out = self
            .ddb
            .query()
            .table_name(&self.layout.table)
            .key_condition_expression("#pk = :pk")
            .filter_expression("#is_deleted = :false")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#is_deleted", attr::IS_DELETED)
            .expression_attribute_values(":pk", sv(name.as_str()))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(limit as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| Error::upstream("Query", e))?;
        let items = out
            .items()
            .iter()
            .map(|item| VersionRow::from_item(item).map(|row| row.to_artifact(&self.layout)))
            .collect::<Result<Vec<_>>>()?;
        let next_cursor = next_sort_key(out.last_evaluated_key()).map(encode_cursor);
        if first_page && items.is_empty() && next_cursor.is_none() {
            return Err(Error::ArtifactNotFound {
                name: name.to_string(),
            });
        }
        Ok(Page { items, next_cursor })
    }

    /// Publishes LATEST as the next version (SPEC 7.1, 7.2, 7.6).
    ///
    /// The number comes from an atomic increment of a counter on the LATEST
    /// row, in the same write that reads LATEST's sha256 and S3 version, so
    /// parallel publishes get distinct consecutive numbers and each copies the
    /// exact bytes its row records. Unchanged LATEST returns the newest version
    /// unless `force`.
    ///
    /// AWS calls: UpdateItem, CopyObject, PutItem (3); unchanged: UpdateItem,
    /// GetItem (2). Rows written by the Python library cost one more Query.
    pub async fn publish_version(&self, name: &ArtifactName, force: bool) -> Result<Published> {
        self.publish_version_as(name, force, LOCAL_ACTOR).await
    }

    /// [`Self::publish_version`], recording `actor` as the version's creator.
    pub async fn publish_version_as(
        &self,
        name: &ArtifactName,
        force: bool,
        actor: &str,
    ) -> Result<Published> {
        let mut mode = if force { Mode::Force } else { Mode::IfChanged };
        for _ in 0..MAX_ATTEMPTS {
            let latest = match self.reserve_version(name, &mode).await? {
                Reservation::Reserved(row) => row,
                Reservation::Unchanged(row) => {
                    if let Some(found) = self.published_as(name, &row).await? {
                        return Ok(Published {
                            artifact: found.to_artifact(&self.layout),
                            created: false,
                        });
                    }
                    // The version LATEST was published as is gone: publish again.
                    mode = Mode::Force;
                    continue;
                }
                Reservation::MarkerMissing(row) => {
                    // LATEST written by the library, which keeps no publish
                    // marker: unchanged means equal to the newest live version.
                    if let Some(newest) = self.newest_live_version(name).await?
                        && newest.sha256 == row.sha256
                    {
                        return Ok(Published {
                            artifact: newest.to_artifact(&self.layout),
                            created: false,
                        });
                    }
                    // Publish, unless a concurrent publish set the marker first.
                    mode = Mode::FirstMarker(row.sha256);
                    continue;
                }
                Reservation::CounterMissing => {
                    self.sync_counter(name).await?;
                    continue;
                }
            };
            let number = latest.last_version.unwrap_or_default();
            let version = Version::number(number)?;
            let copy = self.copy_latest_to(name, &latest, version).await?;
            let now = format_update_at(now());
            let mut item = version_key(name, version);
            item.insert(attr::SHA256.into(), sv(&latest.sha256));
            item.insert(attr::IS_DELETED.into(), AttributeValue::Bool(false));
            item.insert(attr::UPDATE_AT.into(), sv(now));
            if let Some(size) = latest.size {
                item.insert(attr::SIZE.into(), nv(size));
            }
            if let Some(ct) = &latest.content_type {
                item.insert(attr::CONTENT_TYPE.into(), sv(ct));
            }
            let metadata = latest
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), sv(v)))
                .collect();
            item.insert(attr::METADATA.into(), AttributeValue::M(metadata));
            item.insert(attr::CREATED_BY.into(), sv(actor));
            if let Some(v) = &copy {
                item.insert(attr::S3_VERSION_ID.into(), sv(v));
            }
            let put = self
                .ddb
                .put_item()
                .table_name(&self.layout.table)
                .set_item(Some(item.clone()))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", attr::PK)
                .send()
                .await;
            match put {
                Ok(_) => {
                    let row = VersionRow::from_item(&item)?;
                    return Ok(Published {
                        artifact: row.to_artifact(&self.layout),
                        created: true,
                    });
                }
                Err(e) => {
                    // The write may have landed with its answer lost (a retry
                    // then trips the condition): look before undoing anything.
                    let existing = match self.get_row(name, version).await {
                        Ok(existing) => existing,
                        // Cannot tell: keep the bytes (an orphan object is harmless).
                        Err(_) => return Err(Error::upstream("PutItem", e)),
                    };
                    match existing {
                        Some(row)
                            if row.s3_version_id == copy
                                && (copy.is_some() || row.sha256 == latest.sha256) =>
                        {
                            return Ok(Published {
                                artifact: row.to_artifact(&self.layout),
                                created: true,
                            });
                        }
                        None => {
                            self.undo_copy(name, version, copy).await?;
                            return Err(Error::upstream("PutItem", e));
                        }
                        // Someone else (the Python library) wrote this number:
                        // restore their bytes, catch the counter up, retry.
                        Some(_) => {
                            self.undo_copy(name, version, copy).await?;
                            self.sync_counter(name).await?;
                            mode = Mode::Force;
                        }
                    }
                }
            }
        }
        Err(Error::ConcurrentModification(format!(
            "publishing {name} kept conflicting with other writers; retry"
        )))
    }

    /// The live version an unchanged LATEST was published as. A concurrent
    /// publish may still be writing that row, so a missing row is awaited
    /// (about two seconds) before it is taken as lost to a crash.
    async fn published_as(
        &self,
        name: &ArtifactName,
        latest: &VersionRow,
    ) -> Result<Option<VersionRow>> {
        let Some(newest) = latest.last_version.and_then(|n| Version::number(n).ok()) else {
            return Ok(None);
        };
        for attempt in 0..PUBLISH_WAIT_ATTEMPTS {
            match self.get_row(name, newest).await? {
                Some(found) if found.is_live() && found.sha256 == latest.sha256 => {
                    return Ok(Some(found));
                }
                Some(_) => return Ok(None),
                None => {
                    let pause = 10 * u64::from(attempt + 1);
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
            }
        }
        Ok(None)
    }

    /// The newest numbered version that is not soft-deleted. One Query per
    /// 100 rows from the newest (deleted rows are skipped by a filter).
    async fn newest_live_version(&self, name: &ArtifactName) -> Result<Option<VersionRow>> {
        let mut start = None;
        loop {
            let out = self
                .ddb
                .query()
                .table_name(&self.layout.table)
                .key_condition_expression("#pk = :pk AND #sk < :latest")
                .filter_expression("#is_deleted = :false")
                .expression_attribute_names("#pk", attr::PK)
                .expression_attribute_names("#sk", attr::SK)
                .expression_attribute_names("#is_deleted", attr::IS_DELETED)
                .expression_attribute_values(":pk", sv(name.as_str()))
                .expression_attribute_values(":latest", sv(Version::LATEST))
                .expression_attribute_values(":false", AttributeValue::Bool(false))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(100)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| Error::upstream("Query", e))?;
            if let Some(item) = out.items().first() {
                return VersionRow::from_item(item).map(Some);
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(None),
            }
        }
    }

    /// Atomically takes the next version number, unless `mode` says LATEST
    /// is unchanged.
    async fn reserve_version(&self, name: &ArtifactName, mode: &Mode) -> Result<Reservation> {
        let mut condition = "attribute_exists(#last_version) AND #is_deleted = :false".to_owned();
        let mut seen = None;
        match mode {
            Mode::Force => {}
            Mode::IfChanged => {
                condition.push_str(" AND attribute_exists(#published) AND #published <> #sha256")
            }
            Mode::FirstMarker(sha256) => {
                condition.push_str(" AND attribute_not_exists(#published) AND #sha256 = :seen");
                seen = Some(sv(sha256));
            }
        }
        let mut update = self.ddb.update_item();
        if let Some(seen) = seen {
            update = update.expression_attribute_values(":seen", seen);
        }
        let out = update
            .table_name(&self.layout.table)
            .set_key(Some(version_key(name, Version::Latest)))
            .update_expression("SET #last_version = #last_version + :one, #published = #sha256")
            .condition_expression(condition)
            .expression_attribute_names("#last_version", attr::LAST_VERSION)
            .expression_attribute_names("#is_deleted", attr::IS_DELETED)
            .expression_attribute_names("#published", attr::PUBLISHED_SHA256)
            .expression_attribute_names("#sha256", attr::SHA256)
            .expression_attribute_values(":one", nv(1))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(out) => {
                let row = out.attributes().map(VersionRow::from_item).transpose()?;
                row.map(Reservation::Reserved)
                    .ok_or_else(|| Error::ArtifactNotFound {
                        name: name.to_string(),
                    })
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                let old = match e.as_service_error().and_then(|e| match e {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => {
                        c.item().cloned()
                    }
                    _ => None,
                }) {
                    Some(item) => Some(VersionRow::from_item(&item)?),
                    // Emulators that do not return the old item: read it.
                    None => self.get_row(name, Version::Latest).await?,
                };
                match old {
                    None => Err(Error::ArtifactNotFound {
                        name: name.to_string(),
                    }),
                    Some(row) if row.is_deleted => Err(Error::ArtifactNotFound {
                        name: name.to_string(),
                    }),
                    Some(row) if row.last_version.is_none() => Ok(Reservation::CounterMissing),
                    Some(row) if row.published_sha256.is_none() => {
                        Ok(Reservation::MarkerMissing(row))
                    }
                    Some(row) => Ok(Reservation::Unchanged(row)),
                }
            }
            Err(e) => Err(Error::upstream("UpdateItem", e)),
        }
    }

    /// Copies LATEST's recorded S3 object version to a version key.
    async fn copy_latest_to(
        &self,
        name: &ArtifactName,
        latest: &VersionRow,
        version: Version,
    ) -> Result<Option<String>> {
        let key = self.layout.object_key(name, Version::Latest);
        let source =
            crate::layout::copy_source(&self.layout.bucket, &key, latest.s3_version_id.as_deref());
        let out = self
            .s3
            .copy_object()
            .bucket(&self.layout.bucket)
            .key(self.layout.object_key(name, version))
            .copy_source(source)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .map_err(|e| Error::upstream("CopyObject", e))?;
        let copied = out.version_id().map(str::to_owned);
        // S3 computes the copy's SHA-256: when LATEST was not pinned (a row the
        // Python library wrote), this catches bytes that changed underneath.
        let checksum = out.copy_object_result().and_then(|r| r.checksum_sha256());
        let expected = hex::decode(&latest.sha256).ok().map(|d| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(d)
        });
        if let (Some(got), Some(want)) = (checksum, expected)
            && got != want
        {
            self.undo_copy(name, version, copied).await?;
            return Err(Error::ConcurrentModification(format!(
                "LATEST of {name} changed while publishing; retry"
            )));
        }
        Ok(copied)
    }

    /// Deletes the object version a failed publish created (the previous
    /// version of that key, if any, becomes current again).
    async fn undo_copy(
        &self,
        name: &ArtifactName,
        version: Version,
        copy: Option<String>,
    ) -> Result<()> {
        let Some(version_id) = copy else {
            return Ok(());
        };
        self.s3
            .delete_object()
            .bucket(&self.layout.bucket)
            .key(self.layout.object_key(name, version))
            .version_id(version_id)
            .send()
            .await
            .map_err(|e| Error::upstream("DeleteObject", e))?;
        Ok(())
    }

    /// The highest version number any row of the partition holds (deleted and
    /// reclaimed rows included: numbers are never reused). One Query.
    pub(super) async fn highest_version(&self, name: &ArtifactName) -> Result<u32> {
        let out = self
            .ddb
            .query()
            .table_name(&self.layout.table)
            .key_condition_expression("#pk = :pk AND #sk < :latest")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#sk", attr::SK)
            .expression_attribute_values(":pk", sv(name.as_str()))
            .expression_attribute_values(":latest", sv(Version::LATEST))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .projection_expression("#pk, #sk")
            .send()
            .await
            .map_err(|e| Error::upstream("Query", e))?;
        Ok(out
            .items()
            .first()
            .and_then(|item| item.get(attr::SK))
            .and_then(|sk| sk.as_s().ok())
            .and_then(|sk| match Version::from_sort_key(sk) {
                Ok(Version::Number(n)) => Some(n),
                _ => None,
            })
            .unwrap_or(0))
    }

    /// Raises the LATEST row's counter to the highest existing version (rows
    /// the Python library wrote carry no counter).
    async fn sync_counter(&self, name: &ArtifactName) -> Result<()> {
        let highest = self.highest_version(name).await?;
        let out = self
            .ddb
            .update_item()
            .table_name(&self.layout.table)
            .set_key(Some(version_key(name, Version::Latest)))
            .update_expression("SET #last_version = :highest")
            .condition_expression("attribute_exists(#pk) AND (attribute_not_exists(#last_version) OR #last_version < :highest)")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#last_version", attr::LAST_VERSION)
            .expression_attribute_values(":highest", nv(highest))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            // Already caught up by someone else, or LATEST gone (next step says 404).
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(Error::upstream("UpdateItem", e)),
        }
    }

    /// Soft-deletes a numbered version (SPEC 7.4, 7.5).
    ///
    /// Refused with 409 while an alias targets it: the alias partition is read
    /// (catching aliases the Python library wrote), and the write is
    /// conditional on the version row carrying no alias reference (catching a
    /// concurrent alias move). References no alias row backs any more (left by
    /// an interrupted purge, or by the library moving an alias) are cleaned,
    /// not obeyed. A missing version is 404 and writes nothing; a delete
    /// retried after its answer was lost answers as the first would have.
    /// AWS calls: Query, UpdateItem (2).
    pub async fn delete_version(&self, name: &ArtifactName, version: Version) -> Result<()> {
        if version.is_latest() {
            return Err(Error::InvalidVersion(
                "LATEST cannot be deleted; purge the artifact to remove it entirely".into(),
            ));
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        for attempt in 0..MAX_ATTEMPTS {
            let aliases = self.alias_rows(name).await?;
            let in_use = targeting(&aliases, version);
            if !in_use.is_empty() {
                return Err(version_in_use(name, version, in_use));
            }
            match self.soft_delete(name, version, &token).await? {
                SoftDelete::Deleted => return Ok(()),
                SoftDelete::Missing => return Err(Error::version_not_found(name, version)),
                SoftDelete::Referenced(row) => {
                    self.clean_stale_references(name, &row, &aliases).await?;
                }
            }
            super::backoff(attempt).await;
        }
        Err(Error::ConcurrentModification(format!(
            "version {version} of {name} kept being referenced; retry"
        )))
    }

    /// Soft-deletes a live version that no alias references, marking the
    /// write with `token` so that a retry of a write that landed knows it.
    pub(super) async fn soft_delete(
        &self,
        name: &ArtifactName,
        version: Version,
        token: &str,
    ) -> Result<SoftDelete> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.layout.table)
            .set_key(Some(version_key(name, version)))
            .update_expression(
                "SET #is_deleted = :true, #deleted_at = :now, #deleted_by_request = :token",
            )
            .condition_expression(
                "attribute_exists(#pk) AND #is_deleted = :false AND attribute_not_exists(#aliases)",
            )
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#is_deleted", attr::IS_DELETED)
            .expression_attribute_names("#deleted_at", attr::DELETED_AT)
            .expression_attribute_names("#deleted_by_request", attr::DELETED_BY_REQUEST)
            .expression_attribute_names("#aliases", attr::ALIASES)
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":now", sv(format_update_at(now())))
            .expression_attribute_values(":token", sv(token))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(_) => Ok(SoftDelete::Deleted),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                let old = match e.into_service_error() {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => {
                        c.item().map(VersionRow::from_item).transpose()?
                    }
                    _ => None,
                };
                let old = match old {
                    Some(row) => Some(row),
                    None => self.get_row(name, version).await?,
                };
                Ok(match old {
                    Some(row)
                        if row.is_deleted && row.deleted_by_request.as_deref() == Some(token) =>
                    {
                        SoftDelete::Deleted
                    }
                    Some(row) if row.is_live() && !row.aliases.is_empty() => {
                        SoftDelete::Referenced(Box::new(row))
                    }
                    _ => SoftDelete::Missing,
                })
            }
            Err(e) => Err(Error::upstream("UpdateItem", e)),
        }
    }

    /// Removes the references of `row` that no alias row backs (an
    /// interrupted purge, the library moving or deleting an alias). Each
    /// removal is conditional on the alias row still not targeting the
    /// version, in one transaction, so a concurrent alias move is never
    /// undone. 409 when a reference is real. AWS calls: TransactWriteItems.
    pub(super) async fn clean_stale_references(
        &self,
        name: &ArtifactName,
        row: &VersionRow,
        aliases: &[AliasRow],
    ) -> Result<()> {
        let real = targeting(aliases, row.version);
        let stale: Vec<&String> = row
            .aliases
            .iter()
            .filter(|a| !real.contains(a))
            .take(99)
            .collect();
        if stale.is_empty() {
            return Err(version_in_use(name, row.version, real));
        }
        let sort_key = sv(row.version.sort_key());
        let mut ops = Vec::with_capacity(stale.len() + 1);
        for alias in &stale {
            let check = ConditionCheck::builder()
                .table_name(&self.layout.table)
                .set_key(Some(crate::rows::key(alias_pk(name), alias.as_str())))
                .condition_expression(
                    "attribute_not_exists(#pk) OR (#version <> :v AND (attribute_not_exists(#secondary) OR #secondary <> :v))",
                )
                .expression_attribute_names("#pk", attr::PK)
                .expression_attribute_names("#version", attr::VERSION)
                .expression_attribute_names("#secondary", attr::SECONDARY_VERSION)
                .expression_attribute_values(":v", sort_key.clone())
                .build()
                .map_err(super::invalid_sdk_input)?;
            ops.push(TransactWriteItem::builder().condition_check(check).build());
        }
        let update = Update::builder()
            .table_name(&self.layout.table)
            .set_key(Some(version_key(name, row.version)))
            .update_expression("DELETE #aliases :stale")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#aliases", attr::ALIASES)
            .expression_attribute_values(
                ":stale",
                AttributeValue::Ss(stale.iter().map(|a| (*a).clone()).collect()),
            )
            .build()
            .map_err(super::invalid_sdk_input)?;
        ops.push(TransactWriteItem::builder().update(update).build());
        let token = uuid::Uuid::new_v4().simple().to_string();
        match self.transact(ops, &token).await {
            Ok(()) => {
                tracing::info!(%name, version = %row.version, ?stale, "cleaned stale alias references");
                Ok(())
            }
            // An alias moved onto the version meanwhile, or another writer
            // touched it: the caller reads again.
            Err(TransactFailure::Conditions(_) | TransactFailure::Contention) => Ok(()),
            Err(TransactFailure::Failed(e)) => Err(e),
        }
    }

    pub(super) async fn alias_rows(&self, name: &ArtifactName) -> Result<Vec<AliasRow>> {
        self.query_all(&alias_pk(name))
            .await?
            .iter()
            .map(|item| AliasRow::from_item(name, item))
            .collect()
    }

    /// Artifact names, as the library lists them: the "directories" under the
    /// store prefix. AWS calls: 1 per page (ListObjectsV2).
    pub async fn list_artifact_names(
        &self,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<ArtifactName>> {
        let limit = page_size(limit)?;
        let token = match cursor {
            None => None,
            Some(c) => Some(
                super::URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        Error::InvalidRequest("cursor is not one this listing returned".into())
                    })?,
            ),
        };
        let (items, next_token, _) = self.list_names(limit, token, None).await?;
        let next_cursor = next_token.map(|t| super::URL_SAFE_NO_PAD.encode(t));
        Ok(Page { items, next_cursor })
    }

    /// One page of at most `limit` entries of the store prefix, from the
    /// entry after `after`: the valid artifact names among them, and, when
    /// more follow, the page's last entry to resume after. For passes that
    /// resume where they stopped.
    ///
    /// An entry is relative to the store prefix: `name/` for a "directory"
    /// (an artifact's objects), or the key of an object right under the
    /// prefix. The resume point is the page's last raw entry, valid name or
    /// not, so that a page holding none still advances.
    pub async fn artifact_names_after(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<ArtifactName>, Option<String>)> {
        let prefix = self.layout.store_prefix();
        let start_after = after.map(|entry| match entry.strip_suffix('/') {
            // Every key below `{prefix}/{dir}/` sorts before `{prefix}/{dir}0`
            // ('0' follows '/'), so the listing starts at the next entry.
            Some(dir) => format!("{prefix}{dir}0"),
            None => format!("{prefix}{entry}"),
        });
        let (mut names, mut token, mut last) = self.list_names(limit, None, start_after).await?;
        // S3 may answer a truncated page with no entry at all: follow its
        // token rather than take it for the end of the listing.
        while names.is_empty() && last.is_none() && token.is_some() {
            (names, token, last) = self.list_names(limit, token, None).await?;
        }
        Ok((names, token.and(last)))
    }

    /// One page of artifact names, as the library sees them: the
    /// "directories" right under the store prefix; the continuation token;
    /// and the page's last entry (key or "directory", relative to the
    /// prefix), valid name or not. One ListObjectsV2.
    async fn list_names(
        &self,
        limit: u32,
        token: Option<String>,
        start_after: Option<String>,
    ) -> Result<(Vec<ArtifactName>, Option<String>, Option<String>)> {
        let prefix = self.layout.store_prefix();
        let out = self
            .s3
            .list_objects_v2()
            .bucket(&self.layout.bucket)
            .prefix(&prefix)
            .delimiter("/")
            .max_keys(limit as i32)
            .set_continuation_token(token)
            .set_start_after(start_after)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .and_then(|e| aws_sdk_s3::error::ProvideErrorMetadata::code(e))
                    == Some("InvalidArgument") =>
            {
                return Err(Error::InvalidRequest(
                    "cursor is not one this listing returned".into(),
                ));
            }
            Err(e) => return Err(Error::upstream("ListObjectsV2", e)),
        };
        let names = out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix())
            .filter_map(|p| p.strip_prefix(&prefix))
            .filter_map(|p| p.strip_suffix('/'))
            .filter_map(|p| p.parse().ok())
            .collect();
        let next_token = out
            .next_continuation_token()
            .filter(|_| out.is_truncated() == Some(true))
            .map(str::to_owned);
        // Keys and "directories" share the page, each in key order.
        let last_key = out.contents().last().and_then(|o| o.key());
        let last_dir = out.common_prefixes().last().and_then(|p| p.prefix());
        let last = last_key
            .max(last_dir)
            .and_then(|entry| entry.strip_prefix(&prefix))
            .map(str::to_owned);
        Ok((names, next_token, last))
    }

    /// Wipes an artifact: every row of its partitions, then every S3 object
    /// version and delete marker under its prefix and its staged uploads.
    /// Rows go first, so an interrupted purge never leaves a row pointing at
    /// missing bytes; running it again finishes the job. 404 when nothing exists.
    pub async fn purge_artifact(&self, name: &ArtifactName) -> Result<()> {
        // LATEST goes first: alias changes and publishes are conditional on
        // it, so one racing the purge either landed before the partitions
        // are read below (and is deleted with them) or fails.
        let latest = self
            .ddb
            .delete_item()
            .table_name(&self.layout.table)
            .set_key(Some(version_key(name, Version::Latest)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| Error::upstream("DeleteItem", e))?;
        let latest_deleted = latest.attributes().is_some_and(|a| !a.is_empty());
        let mut keys: Vec<Item> = Vec::new();
        for pk in [alias_pk(name), history_pk(name), name.to_string()] {
            for item in self.query_all(&pk).await? {
                let (Some(pk), Some(sk)) = (item.get(attr::PK), item.get(attr::SK)) else {
                    continue;
                };
                keys.push(HashMap::from([
                    (attr::PK.to_owned(), pk.clone()),
                    (attr::SK.to_owned(), sk.clone()),
                ]));
            }
        }
        let rows_deleted = latest_deleted || !keys.is_empty();
        for chunk in keys.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|key| {
                    DeleteRequest::builder()
                        .set_key(Some(key.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(super::invalid_sdk_input)
                })
                .collect::<Result<_>>()?;
            for attempt in 0..MAX_ATTEMPTS {
                let out = self
                    .ddb
                    .batch_write_item()
                    .request_items(&self.layout.table, requests)
                    .send()
                    .await
                    .map_err(|e| Error::upstream("BatchWriteItem", e))?;
                requests = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.layout.table))
                    .cloned()
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                super::backoff(attempt).await;
            }
            if !requests.is_empty() {
                // Never delete bytes while rows that point at them remain.
                return Err(Error::Throttled {
                    operation: "BatchWriteItem",
                    source: format!("{} deletes left unprocessed", requests.len()).into(),
                });
            }
        }
        let mut objects_deleted = false;
        for prefix in [
            self.layout.artifact_prefix(name),
            self.layout.staging_prefix(name),
        ] {
            objects_deleted |= self.delete_all_object_versions(&prefix, None).await? > 0;
        }
        if !rows_deleted && !objects_deleted {
            return Err(Error::ArtifactNotFound {
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// Permanently deletes every object version and delete marker under
    /// `prefix` (only keys equal to `exact`, when given). Returns how many.
    pub(super) async fn delete_all_object_versions(
        &self,
        prefix: &str,
        exact: Option<&str>,
    ) -> Result<usize> {
        let mut deleted = 0;
        let (mut key_marker, mut version_marker) = (None, None);
        loop {
            let out = self
                .s3
                .list_object_versions()
                .bucket(&self.layout.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker)
                .set_version_id_marker(version_marker)
                .send()
                .await
                .map_err(|e| Error::upstream("ListObjectVersions", e))?;
            let ids: Vec<ObjectIdentifier> = out
                .versions()
                .iter()
                .map(|v| (v.key(), v.version_id()))
                .chain(
                    out.delete_markers()
                        .iter()
                        .map(|m| (m.key(), m.version_id())),
                )
                .filter(|(key, _)| exact.is_none_or(|e| *key == Some(e)))
                .filter_map(|(key, version)| {
                    ObjectIdentifier::builder()
                        .set_key(key.map(str::to_owned))
                        .set_version_id(version.map(str::to_owned))
                        .build()
                        .ok()
                })
                .collect();
            if !ids.is_empty() {
                deleted += ids.len();
                let delete = Delete::builder()
                    .set_objects(Some(ids))
                    .quiet(true)
                    .build()
                    .map_err(|e| Error::internal("build request", e))?;
                let result = self
                    .s3
                    .delete_objects()
                    .bucket(&self.layout.bucket)
                    .delete(delete)
                    .send()
                    .await
                    .map_err(|e| Error::upstream("DeleteObjects", e))?;
                if let Some(failed) = result.errors().first() {
                    return Err(Error::UpstreamError {
                        operation: "DeleteObjects",
                        source: format!("could not delete {:?}: {:?}", failed.key(), failed.code())
                            .into(),
                    });
                }
            }
            if out.is_truncated() != Some(true) {
                return Ok(deleted);
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            version_marker = out.next_version_id_marker().map(str::to_owned);
        }
    }
}

const PUBLISH_WAIT_ATTEMPTS: u32 = 20;

enum Reservation {
    /// The LATEST row after taking the number in `last_version`.
    Reserved(VersionRow),
    /// LATEST unchanged since it was published as `last_version`.
    Unchanged(VersionRow),
    /// LATEST has no counter yet (written by the Python library).
    CounterMissing,
    /// LATEST has no publish marker (written by the Python library).
    MarkerMissing(VersionRow),
}

/// When a publish takes a number.
enum Mode {
    /// Only when LATEST changed since it was last published.
    IfChanged,
    /// Always (`force`).
    Force,
    /// When LATEST still holds these bytes and carries no marker yet.
    FirstMarker(String),
}

/// Whether a soft delete happened, and why not.
pub(super) enum SoftDelete {
    Deleted,
    /// No live row (never existed, already deleted, purged).
    Missing,
    /// The row still lists alias references.
    Referenced(Box<VersionRow>),
}

/// The aliases (of `rows`) whose primary or secondary is `version`.
pub(super) fn targeting(rows: &[AliasRow], version: Version) -> Vec<String> {
    rows.iter()
        .filter(|row| row.targets().any(|t| t == version))
        .map(|row| row.alias.to_string())
        .collect()
}

pub(super) fn next_sort_key(key: Option<&HashMap<String, AttributeValue>>) -> Option<&str> {
    key.and_then(|k| k.get(attr::SK))
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

pub(super) fn version_in_use(name: &ArtifactName, version: Version, aliases: Vec<String>) -> Error {
    Error::VersionInUse {
        name: name.to_string(),
        version: version.to_string(),
        aliases: aliases.join(", "),
    }
}
