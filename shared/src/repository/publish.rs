//! Publish: LATEST becomes the next immutable version, by writing rows.

use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem,
};
use aws_sdk_s3::types::ChecksumAlgorithm;
use base64::Engine;

use super::aliases::TransactFailure;
use super::{MAX_ATTEMPTS, Repository};
use crate::error::{Error, Result};
use crate::layout::{attr, format_update_at, now};
use crate::model::{LOCAL_ACTOR, Published};
use crate::names::{ArtifactName, Version};
use crate::rows::{Location, VersionRow, nv, set_metadata, sv, version_key};

impl Repository {
    /// Publishes LATEST as the next version (SPEC 7.1, 7.2, 7.6).
    ///
    /// The number comes from an atomic increment of a counter on the LATEST
    /// row, in the same write that reads LATEST's sha256 and blob, so
    /// parallel publishes get distinct consecutive numbers; the version row
    /// then references the same blob (no byte is copied), written in a
    /// transaction that checks LATEST was not replaced meanwhile and the
    /// blob not reclaimed. Unchanged LATEST returns the newest version
    /// unless `force`.
    ///
    /// AWS calls: UpdateItem, TransactWriteItems (2, sequential); unchanged:
    /// UpdateItem, GetItem (2). Rows written by the Python library cost one
    /// more Query; a LATEST whose bytes are at the library's key is adopted
    /// first (CopyObject, UpdateItem), once.
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
        self.publish_version_of(name, force, actor, None).await
    }

    /// [`Self::publish_version_as`]; with `upload`, only while LATEST is
    /// still that upload's commit (a pipeline publishes what it committed,
    /// never a later writer's LATEST): else 409 UploadSuperseded.
    pub(super) async fn publish_version_of(
        &self,
        name: &ArtifactName,
        force: bool,
        actor: &str,
        upload: Option<&str>,
    ) -> Result<Published> {
        let mut mode = if force { Mode::Force } else { Mode::IfChanged };
        for _ in 0..MAX_ATTEMPTS {
            let reserved_at = now();
            let latest = match self.reserve_version(name, &mode, upload).await? {
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
            set_metadata(&mut item, &latest.metadata);
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
            let mut ops = vec![
                TransactWriteItem::builder().put(put).build(),
                TransactWriteItem::builder()
                    .condition_check(same_latest)
                    .build(),
                self.not_condemned(name, &latest.sha256, Some(reserved_at))?,
            ];
            // The search index by metadata, in the same transaction as the
            // row it indexes (SPEC 10.3): search never misses a version.
            for (key, value) in &latest.metadata {
                let entry = crate::rows::key(
                    crate::layout::meta_index_pk(key, value),
                    format!("{name}/{}", version.sort_key()),
                );
                ops.push(
                    TransactWriteItem::builder()
                        .put(
                            Put::builder()
                                .table_name(&self.layout.table)
                                .set_item(Some(entry))
                                .build()
                                .map_err(super::invalid_sdk_input)?,
                        )
                        .build(),
                );
            }
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
                // Our own write, landed (its answer lost; emulators ignore
                // the request token that makes AWS answer the retry).
                Err(TransactFailure::Conditions(failed))
                    if failed == [0] && self.publish_landed(name, version, &item).await? =>
                {
                    let row = VersionRow::from_item(&item)?;
                    return Ok(Published {
                        artifact: row.to_artifact(&self.layout),
                        created: true,
                    });
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

    /// Whether the row of `version` is `item`, as this publish wrote it (its
    /// microsecond timestamp, bytes and creator).
    async fn publish_landed(
        &self,
        name: &ArtifactName,
        version: Version,
        item: &crate::rows::Item,
    ) -> Result<bool> {
        let Some(stored) = self.get_version_item(name, version).await? else {
            return Ok(false);
        };
        Ok([attr::UPDATE_AT, attr::SHA256, attr::CREATED_BY]
            .iter()
            .all(|a| stored.get(*a) == item.get(*a)))
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
    async fn reserve_version(
        &self,
        name: &ArtifactName,
        mode: &Mode,
        upload: Option<&str>,
    ) -> Result<Reservation> {
        let mut condition = "attribute_exists(#last_version) AND #is_deleted = :false".to_owned();
        let mut seen = None;
        let mut update = self.ddb.update_item();
        if let Some(upload) = upload {
            condition.push_str(" AND #upload_id = :upload_id");
            update = update
                .expression_attribute_names("#upload_id", attr::UPLOAD_ID)
                .expression_attribute_values(":upload_id", sv(upload));
        }
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
        // The reservation carries its own token: when its answer is lost and
        // the SDK sends it again, the retry fails this clause and finds the
        // number it took (rather than taking another, or none).
        let token = uuid::Uuid::new_v4().simple().to_string();
        condition.push_str(" AND (attribute_not_exists(#token) OR #token <> :token)");
        if let Some(seen) = seen {
            update = update.expression_attribute_values(":seen", seen);
        }
        let out = update
            .table_name(&self.layout.table)
            .set_key(Some(version_key(name, Version::Latest)))
            .update_expression(
                "SET #last_version = #last_version + :one, #published = #sha256, \
                 #epoch = if_not_exists(#epoch, :epoch), #token = :token",
            )
            .expression_attribute_names("#token", attr::RESERVE_TOKEN)
            .expression_attribute_values(":token", sv(&token))
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
            Err(e) if super::condition_failed(&e) => {
                let old = match e.as_service_error().and_then(|e| match e {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => {
                        c.item().cloned()
                    }
                    _ => None,
                }) {
                    Some(item) => Some(item),
                    // Emulators that do not return the old item: read it.
                    None => self.get_version_item(name, Version::Latest).await?,
                };
                // Our own reservation, landed: its answer was lost.
                if let Some(item) = &old
                    && item.get(attr::RESERVE_TOKEN).and_then(|t| t.as_s().ok()) == Some(&token)
                {
                    return VersionRow::from_item(item).map(Reservation::Reserved);
                }
                if let Some(upload) = upload
                    && old.as_ref().is_some_and(|item| {
                        item.get(attr::UPLOAD_ID).and_then(|u| u.as_s().ok())
                            != Some(&upload.to_owned())
                    })
                {
                    return Err(Error::UploadSuperseded {
                        name: name.to_string(),
                        upload_id: upload.to_owned(),
                    });
                }
                let old = old.as_ref().map(VersionRow::from_item).transpose()?;
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
    /// wrote into the blob store, once, then marks LATEST as stored there.
    ///
    /// When the blob key already holds those bytes (checked by S3 or
    /// verified), nothing is copied. Otherwise the library key's current
    /// object version is pinned (HeadObject) and copied, onto an empty
    /// blob key only (`If-None-Match: *`): while the library is between its
    /// S3 PUT and its row PUT, that object may be other bytes, and a copy
    /// never replaces bytes that rows serve. S3 computes the copy's SHA-256;
    /// other bytes than the row's are deleted again (the version this copy
    /// created, under a key no row served) and the publish is refused. The
    /// library writes single PUTs (≤ 5 GiB), so one CopyObject suffices.
    /// AWS calls: HeadObject (+ GetItem for a multipart blob), and when the
    /// bytes are not there HeadObject, CopyObject; then UpdateItem.
    async fn adopt_latest(&self, name: &ArtifactName, latest: &VersionRow) -> Result<()> {
        let size = latest.size.unwrap_or_default();
        let (stored, _) = self.stored_blob(name, &latest.sha256, size).await?;
        let held = match stored {
            crate::blob_rules::Stored::Holds => true,
            // The row has no size (an old library row): S3's checksum says it.
            crate::blob_rules::Stored::Contradicts(_) => latest.size.is_none(),
            _ => false,
        };
        if !held {
            self.copy_into_blob_store(name, latest).await?;
        }
        self.mark_adopted(name, latest).await
    }

    /// The copy of [`Self::adopt_latest`].
    async fn copy_into_blob_store(&self, name: &ArtifactName, latest: &VersionRow) -> Result<()> {
        let (source_key, source_version) =
            latest
                .location
                .object(&self.layout, name, Version::Latest, &latest.sha256);
        let source_version = match source_version {
            Some(v) => Some(v),
            None => self
                .s3
                .head_object()
                .bucket(&self.layout.bucket)
                .key(&source_key)
                .send()
                .await
                .map_err(|e| Error::upstream("HeadObject", e))?
                .version_id()
                .map(str::to_owned),
        };
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
            .if_none_match("*")
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
            .set_metadata(Some(metadata))
            .set_content_type(latest.content_type.clone())
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            // The key gained an object meanwhile (another adoption, an
            // upload): judged again by the next attempt.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
                return Err(Error::ConcurrentModification(format!(
                    "the bytes of LATEST of {name} arrived meanwhile; retry"
                )));
            }
            Err(e) => return Err(Error::upstream("CopyObject", e)),
        };
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
        Ok(())
    }

    /// LATEST marked as stored in the blob store (unless it changed since).
    async fn mark_adopted(&self, name: &ArtifactName, latest: &VersionRow) -> Result<()> {
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
            Err(e) if super::condition_failed(&e) => Ok(()),
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
            Err(e) if super::condition_failed(&e) => Ok(()),
            Err(e) => Err(Error::upstream("UpdateItem", e)),
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
