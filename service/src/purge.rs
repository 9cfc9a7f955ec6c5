//! Purge: the whole artifact, behind a fence.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
use aws_sdk_s3::types::{Delete, ObjectIdentifier};

use super::{MAX_ATTEMPTS, Repository};
use crate::limits::PURGE_FENCE_STALE;

/// How many times a failed purge tries to hand its fence over.
const HAND_OVER_ATTEMPTS: u32 = 5;
use crate::error::{Error, Result};
use crate::layout::{
    FENCE_SK, alias_pk, attr, condemned_pk, fence_pk, history_pk, now, rollout_pk, status_pk,
    upload_pk, verified_pk,
};
use crate::names::{ArtifactName, Version};
use crate::rows::{Item, UploadRow, VersionRow, key, nv, registry_key, sv, version_key};

impl Repository {
    /// Wipes an artifact: its rows, pending uploads, history, blobs and the
    /// library's objects (every object version and delete marker).
    ///
    /// Nothing is written when nothing exists (404): the partitions and
    /// prefixes are looked at first, in one round trip. Then a fence goes
    /// up, taken like a lease: purges of one artifact exclude each other
    /// (a second one is refused, 409, while the first renews its fence
    /// before every step; a fence not renewed for `PURGE_FENCE_STALE` is a
    /// crashed purge's, and is taken over). While it stands no upload
    /// starts, so no commit can land after the pending uploads are deleted
    /// (a commit needs its upload row). LATEST goes next: publishes and
    /// alias changes are conditional on it, so one racing the purge either
    /// landed before the partitions are read (and is deleted with them) or
    /// fails. Bytes go only after every row that could point at them. The
    /// fence comes down only by the purge that holds it, at its end.
    /// Running it again after an interruption finishes the job.
    ///
    /// The library knows no fence, and writes its object before its row.
    /// So that a library put racing the purge never leaves a row without
    /// its object: the library's objects last modified in the second the
    /// rows began to go, or later, stay (a put whose row lands after the
    /// rows went keeps its bytes; one whose row was deleted leaves an
    /// object no row names, which the next purge removes); and after the
    /// objects, any version row found again (a library row landed
    /// meanwhile) whose object is gone is deleted too.
    pub async fn purge_artifact(&self, name: &ArtifactName) -> Result<()> {
        if !self.artifact_exists_anywhere(name).await? {
            return Err(Error::ArtifactNotFound {
                name: name.to_string(),
            });
        }
        let purge_id = uuid::Uuid::new_v4().simple().to_string();
        self.take_fence(name, &purge_id).await?;
        let purged = self.purge_behind_fence(name, &purge_id).await;
        if purged.is_err() {
            // Failed (not crashed): the next purge may take over at once
            // instead of waiting for the lease to lapse; writers stay out.
            self.hand_over_fence(name, &purge_id).await;
        }
        purged
    }

    /// The work of [`Self::purge_artifact`] once its fence is up.
    async fn purge_behind_fence(&self, name: &ArtifactName, purge_id: &str) -> Result<()> {
        let purge_id = purge_id.to_owned();

        let upload_items = self.query_all(&upload_pk(name)).await?;
        // The S3 side of multipart uploads in progress, aborted after their
        // rows are gone (no commit can complete them then) and before the
        // blobs go: none can complete onto a blob key afterwards.
        let multiparts: Vec<(String, String)> = upload_items
            .iter()
            .filter_map(|item| UploadRow::from_item(name, item).ok())
            .filter_map(|u| {
                let mp = u.multipart?;
                Some((self.layout.blob_key(name, &u.sha256), mp.s3_upload_id))
            })
            .collect();
        self.delete_keys(keys_of(upload_items)).await?;
        for (blob_key, s3_upload_id) in &multiparts {
            self.abort_multipart(blob_key, s3_upload_id).await?;
        }
        self.renew_fence(name, &purge_id).await?;
        // S3's LastModified is in whole seconds: an object of this second
        // may be a racing library put's, and stays.
        let rows_go_at = now().unix_timestamp();
        self.ddb
            .delete_item()
            .table_name(&self.layout.table)
            .set_key(Some(version_key(name, Version::Latest)))
            .send()
            .await
            .map_err(|e| crate::sdk_error::upstream("DeleteItem", e))?;
        let mut keys: Vec<Item> = Vec::new();
        for pk in [
            alias_pk(name),
            history_pk(name),
            condemned_pk(name),
            verified_pk(name),
            rollout_pk(name),
            status_pk(name),
        ] {
            self.renew_fence(name, &purge_id).await?;
            let mut found = self.partition_keys(&pk).await?;
            if pk == history_pk(name) {
                // Newest entries first: a purge interrupted here leaves each
                // alias's history a prefix from revision 1 (alias rows went
                // before it), which a re-created alias continues without a
                // gap; oldest-first left revisions 5..7 with 1..4 gone.
                found.reverse();
            }
            keys.extend(found);
        }
        // The version rows, and their entries in the metadata index.
        let rows = self.query_all(name.as_str()).await?;
        for row in rows
            .iter()
            .filter_map(|item| VersionRow::from_item(item).ok())
        {
            if row.version.is_latest() {
                continue;
            }
            let sk = format!("{name}/{}", row.version.sort_key());
            keys.extend(
                row.metadata
                    .iter()
                    .map(|(k, v)| key(crate::layout::meta_index_pk(k, v), sk.clone())),
            );
        }
        keys.extend(keys_of(rows));
        keys.push(registry_key(name));
        self.delete_keys(keys).await?;
        for (prefix, written_before) in [
            (self.layout.artifact_prefix(name), Some(rows_go_at)),
            (self.layout.blob_prefix(name), None),
        ] {
            self.delete_object_versions(&prefix, None, Some((name, &purge_id)), written_before)
                .await?;
        }
        self.renew_fence(name, &purge_id).await?;
        self.delete_rows_without_objects(name).await?;
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
            Ok(_) => Ok(()),
            // Already lowered by this request (its answer was lost), or taken
            // over after we stalled: the holder lowers it.
            Err(e) if super::condition_failed(&e) => Ok(()),
            Err(e) => Err(crate::sdk_error::upstream("DeleteItem", e)),
        }
    }

    /// Whether anything of the artifact exists: a row of any partition a
    /// purge deletes (its fence's too: a purge that failed after the rows
    /// went, and could not lower its fence, left only that), its registry
    /// row (the last row a purge deletes), or an object under its
    /// prefixes. One round trip.
    async fn artifact_exists_anywhere(&self, name: &ArtifactName) -> Result<bool> {
        let partitions = [
            name.to_string(),
            upload_pk(name),
            alias_pk(name),
            history_pk(name),
            condemned_pk(name),
            verified_pk(name),
            rollout_pk(name),
            status_pk(name),
            fence_pk(name),
        ];
        let prefixes = [
            self.layout.artifact_prefix(name),
            self.layout.blob_prefix(name),
        ];
        let rows = futures::future::join_all(partitions.iter().map(|pk| self.any_row(pk)));
        let objects = futures::future::join_all(prefixes.iter().map(|p| self.any_object(p)));
        let (rows, objects, registered) = tokio::join!(rows, objects, self.registered(name));
        for found in rows.into_iter().chain(objects).chain([registered]) {
            if found? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether the artifact's registry row exists.
    async fn registered(&self, name: &ArtifactName) -> Result<bool> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.layout.table)
            .set_key(Some(registry_key(name)))
            .projection_expression("#pk")
            .expression_attribute_names("#pk", attr::PK)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| crate::sdk_error::upstream("GetItem", e))?;
        Ok(out.item().is_some())
    }

    async fn any_row(&self, pk: &str) -> Result<bool> {
        let out = self
            .ddb
            .query()
            .table_name(&self.layout.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_values(":pk", sv(pk))
            .projection_expression("#pk")
            .consistent_read(true)
            .limit(1)
            .send()
            .await
            .map_err(|e| crate::sdk_error::upstream("Query", e))?;
        Ok(!out.items().is_empty())
    }

    async fn any_object(&self, prefix: &str) -> Result<bool> {
        let out = self
            .s3
            .list_object_versions()
            .bucket(&self.layout.bucket)
            .prefix(prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| crate::sdk_error::upstream("ListObjectVersions", e))?;
        Ok(!out.versions().is_empty() || !out.delete_markers().is_empty())
    }

    /// Marks the fence `purge_id` holds as handed over, trying a few times
    /// (the failure that ended the purge may be the upstream's, and a
    /// retry of the purge should not find its own fence standing); best
    /// effort: a fence left as it is lapses after `PURGE_FENCE_STALE`.
    async fn hand_over_fence(&self, name: &ArtifactName, purge_id: &str) {
        let mut last = None;
        for attempt in 0..HAND_OVER_ATTEMPTS {
            match self.try_hand_over_fence(name, purge_id).await {
                Ok(()) => return,
                Err(e) => last = Some(e),
            }
            super::backoff(attempt).await;
        }
        if let Some(e) = last {
            tracing::warn!(%name, error = ?e, "could not hand the purge fence over; it lapses on its own");
        }
    }

    /// One attempt of [`Self::hand_over_fence`]; a fence no longer ours (or
    /// gone) counts as handed over.
    async fn try_hand_over_fence(&self, name: &ArtifactName, purge_id: &str) -> Result<()> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.layout.table)
            .set_key(Some(key(fence_pk(name), FENCE_SK)))
            .update_expression("SET #handed_over = :yes")
            .condition_expression("#purge_id = :mine")
            .expression_attribute_names("#handed_over", attr::HANDED_OVER)
            .expression_attribute_names("#purge_id", attr::PURGE_ID)
            .expression_attribute_values(
                ":yes",
                aws_sdk_dynamodb::types::AttributeValue::Bool(true),
            )
            .expression_attribute_values(":mine", sv(purge_id))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if super::condition_failed(&e) => Ok(()),
            Err(e) => Err(crate::sdk_error::upstream("UpdateItem", e)),
        }
    }

    /// Puts the purge fence up as `purge_id`'s, unless another purge holds
    /// it (renewed within `PURGE_FENCE_STALE`, and not handed over by a
    /// purge that failed): 409 then. A retry of this request finds its own
    /// fence and goes on.
    async fn take_fence(&self, name: &ArtifactName, purge_id: &str) -> Result<()> {
        let mut fence = key(fence_pk(name), FENCE_SK);
        fence.insert(attr::PURGE_ID.into(), sv(purge_id));
        fence.insert(attr::STARTED_AT.into(), nv(now().unix_timestamp()));
        let stale = (now() - PURGE_FENCE_STALE).unix_timestamp();
        let out = self
            .ddb
            .put_item()
            .table_name(&self.layout.table)
            .set_item(Some(fence))
            .condition_expression(
                "attribute_not_exists(#pk) OR #started_at < :stale OR #purge_id = :mine \
                 OR #handed_over = :yes",
            )
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#started_at", attr::STARTED_AT)
            .expression_attribute_names("#purge_id", attr::PURGE_ID)
            .expression_attribute_names("#handed_over", attr::HANDED_OVER)
            .expression_attribute_values(":stale", nv(stale))
            .expression_attribute_values(":mine", sv(purge_id))
            .expression_attribute_values(
                ":yes",
                aws_sdk_dynamodb::types::AttributeValue::Bool(true),
            )
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if super::condition_failed(&e) => Err(Error::ArtifactBeingPurged {
                name: name.to_string(),
            }),
            Err(e) => Err(crate::sdk_error::upstream("PutItem", e)),
        }
    }

    /// Renews the fence `purge_id` holds; when it lapsed (this purge
    /// stalled past `PURGE_FENCE_STALE`: writers and other purges take a
    /// lapsed fence for a crashed purge's and go on) or another purge took
    /// it over, this one stops: 409 (a later purge finishes the job).
    pub(super) async fn renew_fence(&self, name: &ArtifactName, purge_id: &str) -> Result<()> {
        let stale = (now() - PURGE_FENCE_STALE).unix_timestamp();
        let out = self
            .ddb
            .update_item()
            .table_name(&self.layout.table)
            .set_key(Some(key(fence_pk(name), FENCE_SK)))
            .update_expression("SET #started_at = :now")
            .condition_expression("#purge_id = :mine AND #started_at >= :stale")
            .expression_attribute_names("#started_at", attr::STARTED_AT)
            .expression_attribute_names("#purge_id", attr::PURGE_ID)
            .expression_attribute_values(":stale", nv(stale))
            .expression_attribute_values(":now", nv(now().unix_timestamp()))
            .expression_attribute_values(":mine", sv(purge_id))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if super::condition_failed(&e) => Err(Error::ArtifactBeingPurged {
                name: name.to_string(),
            }),
            Err(e) => Err(crate::sdk_error::upstream("UpdateItem", e)),
        }
    }

    /// The keys of every item of a partition (all pages, consistent).
    async fn partition_keys(&self, pk: &str) -> Result<Vec<Item>> {
        Ok(keys_of(self.query_all(pk).await?))
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
                    .map_err(|e| crate::sdk_error::upstream("BatchWriteItem", e))?;
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

    /// A purge's last step: the version rows found again after its objects
    /// went are library rows that landed meanwhile; each whose object is
    /// gone (its S3 PUT came before the purge deleted it) is deleted, on
    /// condition that it still holds those bytes. AWS calls: Query, then
    /// per row found HeadObject (and DeleteItem).
    async fn delete_rows_without_objects(&self, name: &ArtifactName) -> Result<()> {
        for row in self
            .query_all(name.as_str())
            .await?
            .iter()
            .filter_map(|item| VersionRow::from_item(item).ok())
        {
            let (key, version_id) =
                row.location
                    .object(&self.layout, name, row.version, &row.sha256);
            let head = self
                .s3
                .head_object()
                .bucket(&self.layout.bucket)
                .key(&key)
                .set_version_id(version_id)
                .send()
                .await;
            match head {
                Ok(_) => continue,
                Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => {}
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {}
                Err(e) => return Err(crate::sdk_error::upstream("HeadObject", e)),
            }
            tracing::info!(%name, version = %row.version, %key, "a row that landed during the purge names bytes the purge deleted; deleted too");
            let deleted = self
                .ddb
                .delete_item()
                .table_name(&self.layout.table)
                .set_key(Some(version_key(name, row.version)))
                .condition_expression("#sha256 = :sha256")
                .expression_attribute_names("#sha256", attr::SHA256)
                .expression_attribute_values(":sha256", sv(&row.sha256))
                .send()
                .await;
            match deleted {
                Ok(_) => {}
                // Rewritten since (a newer put, its object PUT first): kept.
                Err(e) if super::condition_failed(&e) => {}
                Err(e) => return Err(crate::sdk_error::upstream("DeleteItem", e)),
            }
        }
        Ok(())
    }

    /// Permanently deletes every object version and delete marker under
    /// `prefix` (only keys equal to `exact`, when given). Returns how many.
    /// With `fence` (a purge's), the fence is renewed before every page.
    pub(super) async fn delete_all_object_versions(
        &self,
        prefix: &str,
        exact: Option<&str>,
        fence: Option<(&ArtifactName, &str)>,
    ) -> Result<usize> {
        self.delete_object_versions(prefix, exact, fence, None)
            .await
    }

    /// [`Self::delete_all_object_versions`], keeping the versions (and
    /// delete markers) last modified in the second `written_before` (Unix
    /// seconds) or later, when given, unless the mirror wrote them (one
    /// HeadObject per such version).
    async fn delete_object_versions(
        &self,
        prefix: &str,
        exact: Option<&str>,
        fence: Option<(&ArtifactName, &str)>,
        written_before: Option<i64>,
    ) -> Result<usize> {
        let older = |modified: Option<&aws_sdk_s3::primitives::DateTime>| match written_before {
            None => true,
            // Unknown age: kept (it may be a racing put's).
            Some(cutoff) => modified.is_some_and(|m| m.secs() < cutoff),
        };
        let mut deleted = 0;
        let (mut key_marker, mut version_marker) = (None, None);
        loop {
            if let Some((name, purge_id)) = fence {
                self.renew_fence(name, purge_id).await?;
            }
            let out = self
                .s3
                .list_object_versions()
                .bucket(&self.layout.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker)
                .set_version_id_marker(version_marker)
                .send()
                .await
                .map_err(|e| crate::sdk_error::upstream("ListObjectVersions", e))?;
            // A recent version is kept only when it is not a copy of the
            // mirror's (its marker says so; no writer we fence races there).
            // The marker names the key the mirror wrote it for: the
            // library's publish copies LATEST with its metadata, so its
            // numbered object may carry LATEST's marker, and is the
            // library's write (checker finding 11).
            let mirrored_here = |key: Option<&str>, marked: Option<&String>| {
                let own = key.and_then(|k| self.layout.sort_key_of(prefix, k));
                marked.is_some_and(|m| own == Some(m.as_str()))
            };
            let mut recent_ours = Vec::new();
            for v in out.versions().iter().filter(|v| !older(v.last_modified())) {
                let head = self
                    .s3
                    .head_object()
                    .bucket(&self.layout.bucket)
                    .set_key(v.key().map(str::to_owned))
                    .set_version_id(v.version_id().map(str::to_owned))
                    .send()
                    .await;
                match head {
                    Ok(h)
                        if mirrored_here(
                            v.key(),
                            h.metadata()
                                .and_then(|m| m.get(crate::limits::META_MIRRORED_FOR)),
                        ) =>
                    {
                        recent_ours.push((v.key(), v.version_id()));
                    }
                    Ok(_) => {}
                    Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {}
                    Err(e) => return Err(crate::sdk_error::upstream("HeadObject", e)),
                }
            }
            let ids: Vec<ObjectIdentifier> = out
                .versions()
                .iter()
                .filter(|v| older(v.last_modified()))
                .map(|v| (v.key(), v.version_id()))
                .chain(recent_ours)
                .chain(
                    out.delete_markers()
                        .iter()
                        .filter(|m| older(m.last_modified()))
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
                for id in &ids {
                    tracing::debug!(key = id.key(), version_id = ?id.version_id(), "object version deleted");
                }
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
                    .map_err(|e| crate::sdk_error::upstream("DeleteObjects", e))?;
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

/// The keys (`pk`, `sk`) of `items`.
fn keys_of(items: Vec<Item>) -> Vec<Item> {
    items
        .into_iter()
        .filter_map(|item| {
            let (pk, sk) = (item.get(attr::PK)?, item.get(attr::SK)?);
            Some(HashMap::from([
                (attr::PK.to_owned(), pk.clone()),
                (attr::SK.to_owned(), sk.clone()),
            ]))
        })
        .collect()
}
