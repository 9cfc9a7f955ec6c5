//! Versions: read, list, publish, soft-delete; artifact names; full purge.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, DeleteRequest, Put, ReturnValue,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_s3::types::{ChecksumAlgorithm, Delete, ObjectIdentifier};
use base64::Engine;

use super::aliases::TransactFailure;
use super::{MAX_ATTEMPTS, Repository, decode_cursor, encode_cursor, page_size};
use crate::error::{Error, Result};
use crate::layout::{
    FENCE_SK, REGISTRY_PK, alias_pk, attr, condemned_pk, fence_pk, format_update_at, history_pk,
    now, upload_pk,
};
use crate::model::{Artifact, LOCAL_ACTOR, Page, Published};
use crate::names::{ArtifactName, Version};
use crate::rows::{AliasRow, Item, Location, VersionRow, key, nv, string_map, sv, version_key};

impl Repository {
    /// One live version with a presigned download URL. AWS calls: 1 (GetItem).
    pub async fn get_version(&self, name: &ArtifactName, version: Version) -> Result<Artifact> {
        let row = self.get_live_row(name, version).await?;
        let mut artifact = row.to_artifact(&self.layout);
        artifact.download_url = Some(
            self.download_url(name, version, &row.sha256, &row.location)
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
            let reserved_at = now();
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
            if latest.location != Location::Blob {
                self.adopt_latest(name, &latest).await?;
            }
            let mut item = version_key(name, version);
            item.insert(attr::SHA256.into(), sv(&latest.sha256));
            item.insert(attr::IS_DELETED.into(), AttributeValue::Bool(false));
            item.insert(attr::UPDATE_AT.into(), sv(format_update_at(now())));
            if let Some(size) = latest.size {
                item.insert(attr::SIZE.into(), nv(size));
            }
            if let Some(ct) = &latest.content_type {
                item.insert(attr::CONTENT_TYPE.into(), sv(ct));
            }
            item.insert(attr::METADATA.into(), string_map(&latest.metadata));
            item.insert(attr::CREATED_BY.into(), sv(actor));
            Location::Blob.encode_row(&mut item);
            let put = Put::builder()
                .table_name(&self.layout.table)
                .set_item(Some(item.clone()))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", attr::PK)
                .build()
                .map_err(super::invalid_sdk_input)?;
            // LATEST must still be the one the number was taken from: a purge
            // since then deleted it (or a new life re-created it with another
            // epoch), and a version row written now would outlive the purge.
            let same_latest = ConditionCheck::builder()
                .table_name(&self.layout.table)
                .set_key(Some(version_key(name, Version::Latest)))
                .condition_expression("#epoch = :epoch")
                .expression_attribute_names("#epoch", attr::EPOCH)
                .expression_attribute_values(":epoch", sv(latest.epoch.clone().unwrap_or_default()))
                .build()
                .map_err(super::invalid_sdk_input)?;
            let ops = vec![
                TransactWriteItem::builder().put(put).build(),
                TransactWriteItem::builder()
                    .condition_check(same_latest)
                    .build(),
                self.not_condemned(name, &latest.sha256, Some(reserved_at))?,
            ];
            let token = uuid::Uuid::new_v4().simple().to_string();
            let mut landed = self.transact(ops.clone(), &token).await;
            // Another transaction on LATEST (a commit, another publish's
            // check): the number is still ours, so try the same write again.
            for attempt in 0..MAX_ATTEMPTS {
                if !matches!(landed, Err(TransactFailure::Contention)) {
                    break;
                }
                super::backoff(attempt).await;
                landed = self.transact(ops.clone(), &token).await;
            }
            match landed {
                Ok(()) => {
                    let row = VersionRow::from_item(&item)?;
                    return Ok(Published {
                        artifact: row.to_artifact(&self.layout),
                        created: true,
                    });
                }
                Err(TransactFailure::Conditions(failed)) if failed.contains(&1) => {
                    return Err(Error::ArtifactNotFound {
                        name: name.to_string(),
                    });
                }
                Err(TransactFailure::Conditions(failed)) if failed.contains(&2) => {
                    return Err(Error::ConcurrentModification(format!(
                        "retention deleted the bytes of LATEST of {name} while publishing; retry"
                    )));
                }
                // Someone else (the Python library) wrote this number: catch
                // the counter up and take the next one.
                Err(TransactFailure::Conditions(_)) => {
                    self.sync_counter(name).await?;
                    mode = Mode::Force;
                }
                Err(TransactFailure::Contention) => {
                    return Err(Error::ConcurrentModification(format!(
                        "publishing {name} kept conflicting with other writers; retry"
                    )));
                }
                Err(TransactFailure::Failed(e)) => return Err(e),
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
            .update_expression(
                "SET #last_version = #last_version + :one, #published = #sha256, \
                 #epoch = if_not_exists(#epoch, :epoch)",
            )
            .expression_attribute_names("#epoch", attr::EPOCH)
            .expression_attribute_values(":epoch", sv(super::uploads::new_epoch()))
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

    /// Brings the bytes of a LATEST the library (or a previous release)
    /// wrote into the blob store, once: a server-side copy whose SHA-256 S3
    /// computes and we compare with the row's (bytes that changed underneath
    /// are refused), then LATEST is marked as stored there. The library
    /// writes single PUTs (≤ 5 GiB), so one CopyObject always suffices.
    /// AWS calls: CopyObject, UpdateItem (2).
    async fn adopt_latest(&self, name: &ArtifactName, latest: &VersionRow) -> Result<()> {
        let (source_key, source_version) =
            latest
                .location
                .object(&self.layout, name, Version::Latest, &latest.sha256);
        let source =
            crate::layout::copy_source(&self.layout.bucket, &source_key, source_version.as_deref());
        let mut metadata = std::collections::HashMap::from([
            (
                crate::layout::META_ARTIFACT_NAME.to_owned(),
                name.to_string(),
            ),
            (
                crate::layout::META_ARTIFACT_SHA256.to_owned(),
                latest.sha256.clone(),
            ),
        ]);
        metadata.extend(latest.metadata.clone());
        let out = self
            .s3
            .copy_object()
            .bucket(&self.layout.bucket)
            .key(self.layout.blob_key(name, &latest.sha256))
            .copy_source(source)
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
            .set_metadata(Some(metadata))
            .set_content_type(latest.content_type.clone())
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .map_err(|e| Error::upstream("CopyObject", e))?;
        let checksum = out.copy_object_result().and_then(|r| r.checksum_sha256());
        let expected = hex::decode(&latest.sha256)
            .ok()
            .map(|d| base64::engine::general_purpose::STANDARD.encode(d));
        if checksum.is_none() || checksum != expected.as_deref() {
            // Other bytes now sit at the content-addressed key: remove them.
            if let Some(v) = out.version_id() {
                self.s3
                    .delete_object()
                    .bucket(&self.layout.bucket)
                    .key(self.layout.blob_key(name, &latest.sha256))
                    .version_id(v)
                    .send()
                    .await
                    .map_err(|e| Error::upstream("DeleteObject", e))?;
            }
            return Err(Error::ConcurrentModification(format!(
                "LATEST of {name} changed while publishing; retry"
            )));
        }
        let marked = self
            .ddb
            .update_item()
            .table_name(&self.layout.table)
            .set_key(Some(version_key(name, Version::Latest)))
            .update_expression("SET #bytes = :blob REMOVE #s3_version_id")
            .condition_expression("#sha256 = :sha256 AND attribute_not_exists(#bytes)")
            .expression_attribute_names("#bytes", attr::BYTES)
            .expression_attribute_names("#s3_version_id", attr::S3_VERSION_ID)
            .expression_attribute_names("#sha256", attr::SHA256)
            .expression_attribute_values(":blob", sv(crate::layout::BYTES_BLOB))
            .expression_attribute_values(":sha256", sv(&latest.sha256))
            .send()
            .await;
        match marked {
            Ok(_) => Ok(()),
            // LATEST changed since: the version still gets the bytes it was
            // reserved with, which are now in the blob store.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(Error::upstream("UpdateItem", e)),
        }
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

    /// Artifact names: those this service committed (the registry, written
    /// in the commit's transaction, so a name is listed right after its
    /// first commit whether or not the mirror runs) merged with those the
    /// library wrote (the "directories" under the store prefix).
    /// AWS calls: 2 per page (Query ∥ ListObjectsV2), one round trip.
    pub async fn list_artifact_names(
        &self,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<ArtifactName>> {
        let limit = page_size(limit)?;
        let mut after = match cursor {
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
        // A page can hold no valid name (keys the library never wrote):
        // go on rather than answer an empty page with a cursor.
        loop {
            let (items, resume) = self.artifact_names_after(after.as_deref(), limit).await?;
            if !items.is_empty() || resume.is_none() {
                let next_cursor = resume.map(|t| super::URL_SAFE_NO_PAD.encode(t));
                return Ok(Page { items, next_cursor });
            }
            after = resume;
        }
    }

    /// One page of at most `limit` artifact names after the entry `after`,
    /// and, when more follow, the entry to resume after. For passes that
    /// resume where they stopped (the scheduled job).
    ///
    /// Entries are in S3 key order relative to the store prefix: `name/`
    /// for an artifact, or the key of a stray object right under the prefix.
    /// The registry's sort keys are `name/` too, so both sides share one
    /// order. Each side answers one page; only what is below the first
    /// unfinished side's last entry is final, so that is where the page
    /// ends (it may end on a stray key and hold no name, and still advance).
    pub async fn artifact_names_after(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<ArtifactName>, Option<String>)> {
        let (library, registry) = tokio::join!(
            self.library_names_after(after, limit),
            self.registry_after(after, limit)
        );
        let ((library, library_more), (registry, registry_more)) = (library?, registry?);
        let bound = [library_more, registry_more].into_iter().flatten().min();
        let mut entries: Vec<String> = library
            .into_iter()
            .map(|n| format!("{n}/"))
            .chain(registry)
            .filter(|e| bound.as_ref().is_none_or(|b| e <= b))
            .collect();
        entries.sort();
        entries.dedup();
        let mut resume = bound;
        if entries.len() > limit as usize {
            entries.truncate(limit as usize);
            resume = entries.last().cloned();
        }
        let names = entries
            .iter()
            .filter_map(|e| e.strip_suffix('/'))
            .filter_map(|n| n.parse().ok())
            .collect();
        Ok((names, resume))
    }

    /// The registry's entries after `after`, and the last one when more follow.
    async fn registry_after(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<String>, Option<String>)> {
        let query = self
            .ddb
            .query()
            .table_name(&self.layout.table)
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_values(":pk", sv(REGISTRY_PK));
        let query = match after {
            // DynamoDB refuses an empty string in a key condition.
            None | Some("") => query.key_condition_expression("#pk = :pk"),
            Some(after) => query
                .key_condition_expression("#pk = :pk AND #sk > :after")
                .expression_attribute_names("#sk", attr::SK)
                .expression_attribute_values(":after", sv(after)),
        };
        let out = query
            .consistent_read(true)
            .limit(limit as i32)
            .send()
            .await
            .map_err(|e| Error::upstream("Query", e))?;
        let entries: Vec<String> = out
            .items()
            .iter()
            .filter_map(|item| item.get(attr::SK)?.as_s().ok().cloned())
            .collect();
        let more = out
            .last_evaluated_key()
            .is_some_and(|k| !k.is_empty())
            .then(|| entries.last().cloned())
            .flatten();
        Ok((entries, more))
    }

    /// The library's side: "directories" under the store prefix after
    /// `after`, and the page's last raw entry when more follow.
    async fn library_names_after(
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

    /// Wipes an artifact: its rows, pending uploads, history, blobs and the
    /// library's objects (every object version and delete marker).
    ///
    /// A fence goes up first: while it stands no upload starts, so no commit
    /// can land after the pending uploads are deleted (a commit needs its
    /// upload row). LATEST goes next: publishes and alias changes are
    /// conditional on it, so one racing the purge either landed before the
    /// partitions are read (and is deleted with them) or fails. Bytes go only
    /// after every row that could point at them. Running it again after an
    /// interruption finishes the job. 404 when nothing exists.
    pub async fn purge_artifact(&self, name: &ArtifactName) -> Result<()> {
        let purge_id = uuid::Uuid::new_v4().simple().to_string();
        let mut fence = key(fence_pk(name), FENCE_SK);
        fence.insert(attr::PURGE_ID.into(), sv(&purge_id));
        fence.insert(attr::STARTED_AT.into(), nv(now().unix_timestamp()));
        self.ddb
            .put_item()
            .table_name(&self.layout.table)
            .set_item(Some(fence))
            .send()
            .await
            .map_err(|e| Error::upstream("PutItem", e))?;

        let uploads = self.partition_keys(&upload_pk(name)).await?;
        let mut found = !uploads.is_empty();
        self.delete_keys(uploads).await?;
        let latest = self
            .ddb
            .delete_item()
            .table_name(&self.layout.table)
            .set_key(Some(version_key(name, Version::Latest)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| Error::upstream("DeleteItem", e))?;
        found |= latest.attributes().is_some_and(|a| !a.is_empty());
        let mut keys: Vec<Item> = Vec::new();
        for pk in [
            alias_pk(name),
            history_pk(name),
            name.to_string(),
            condemned_pk(name),
        ] {
            keys.extend(self.partition_keys(&pk).await?);
        }
        found |= !keys.is_empty();
        keys.push(key(REGISTRY_PK, format!("{name}/")));
        self.delete_keys(keys).await?;
        for prefix in [
            self.layout.artifact_prefix(name),
            self.layout.blob_prefix(name),
        ] {
            found |= self.delete_all_object_versions(&prefix, None).await? > 0;
        }
        let lowered = self
            .ddb
            .delete_item()
            .table_name(&self.layout.table)
            .set_key(Some(key(fence_pk(name), FENCE_SK)))
            .condition_expression("#purge_id = :mine")
            .expression_attribute_names("#purge_id", attr::PURGE_ID)
            .expression_attribute_values(":mine", sv(&purge_id))
            .send()
            .await;
        match lowered {
            Ok(_) => {}
            // A concurrent purge put up its own fence; it lowers it.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
            Err(e) => return Err(Error::upstream("DeleteItem", e)),
        }
        if !found {
            return Err(Error::ArtifactNotFound {
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// The keys of every item of a partition (all pages, consistent).
    async fn partition_keys(&self, pk: &str) -> Result<Vec<Item>> {
        Ok(self
            .query_all(pk)
            .await?
            .into_iter()
            .filter_map(|item| {
                let (pk, sk) = (item.get(attr::PK)?, item.get(attr::SK)?);
                Some(HashMap::from([
                    (attr::PK.to_owned(), pk.clone()),
                    (attr::SK.to_owned(), sk.clone()),
                ]))
            })
            .collect())
    }

    /// Deletes items by key, 25 per BatchWriteItem, retrying unprocessed
    /// ones; an error if some stay unprocessed (bytes must never be deleted
    /// while rows that point at them remain).
    async fn delete_keys(&self, keys: Vec<Item>) -> Result<()> {
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
                return Err(Error::Throttled {
                    operation: "BatchWriteItem",
                    source: format!("{} deletes left unprocessed", requests.len()).into(),
                });
            }
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
