//! Purge: the whole artifact, behind a fence.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
use aws_sdk_s3::types::{Delete, ObjectIdentifier};

use super::uploads::PURGE_FENCE_STALE;
use super::{MAX_ATTEMPTS, Repository};
use crate::error::{Error, Result};
use crate::layout::{
    FENCE_SK, REGISTRY_PK, alias_pk, attr, condemned_pk, fence_pk, history_pk, now, rollout_pk,
    status_pk, upload_pk, verified_pk,
};
use crate::names::{ArtifactName, Version};
use crate::rows::{Item, UploadRow, VersionRow, key, nv, sv, version_key};

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
    pub async fn purge_artifact(&self, name: &ArtifactName) -> Result<()> {
        if !self.artifact_exists_anywhere(name).await? {
            return Err(Error::ArtifactNotFound {
                name: name.to_string(),
            });
        }
        let purge_id = uuid::Uuid::new_v4().simple().to_string();
        self.take_fence(name, &purge_id).await?;

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
        self.ddb
            .delete_item()
            .table_name(&self.layout.table)
            .set_key(Some(version_key(name, Version::Latest)))
            .send()
            .await
            .map_err(|e| Error::upstream("DeleteItem", e))?;
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
        keys.push(key(REGISTRY_PK, format!("{name}/")));
        self.delete_keys(keys).await?;
        for prefix in [
            self.layout.artifact_prefix(name),
            self.layout.blob_prefix(name),
        ] {
            self.delete_all_object_versions(&prefix, None, Some((name, &purge_id)))
                .await?;
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
            Ok(_) => Ok(()),
            // Already lowered by this request (its answer was lost), or taken
            // over after we stalled: the holder lowers it.
            Err(e) if super::condition_failed(&e) => Ok(()),
            Err(e) => Err(Error::upstream("DeleteItem", e)),
        }
    }

    /// Whether anything of the artifact exists: a row of any of its
    /// partitions, or an object under its prefixes. One round trip.
    async fn artifact_exists_anywhere(&self, name: &ArtifactName) -> Result<bool> {
        let partitions = [
            name.to_string(),
            upload_pk(name),
            alias_pk(name),
            history_pk(name),
            condemned_pk(name),
            verified_pk(name),
        ];
        let prefixes = [
            self.layout.artifact_prefix(name),
            self.layout.blob_prefix(name),
        ];
        let rows = futures::future::join_all(partitions.iter().map(|pk| self.any_row(pk)));
        let objects = futures::future::join_all(prefixes.iter().map(|p| self.any_object(p)));
        let (rows, objects) = tokio::join!(rows, objects);
        for found in rows.into_iter().chain(objects) {
            if found? {
                return Ok(true);
            }
        }
        Ok(false)
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
            .map_err(|e| Error::upstream("Query", e))?;
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
            .map_err(|e| Error::upstream("ListObjectVersions", e))?;
        Ok(!out.versions().is_empty() || !out.delete_markers().is_empty())
    }

    /// Puts the purge fence up as `purge_id`'s, unless another purge holds
    /// it (renewed within `PURGE_FENCE_STALE`): 409 then. A retry of this
    /// request finds its own fence and goes on.
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
                "attribute_not_exists(#pk) OR #started_at < :stale OR #purge_id = :mine",
            )
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#started_at", attr::STARTED_AT)
            .expression_attribute_names("#purge_id", attr::PURGE_ID)
            .expression_attribute_values(":stale", nv(stale))
            .expression_attribute_values(":mine", sv(purge_id))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if super::condition_failed(&e) => Err(Error::ArtifactBeingPurged {
                name: name.to_string(),
            }),
            Err(e) => Err(Error::upstream("PutItem", e)),
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
            Err(e) => Err(Error::upstream("UpdateItem", e)),
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
    /// With `fence` (a purge's), the fence is renewed before every page.
    pub(super) async fn delete_all_object_versions(
        &self,
        prefix: &str,
        exact: Option<&str>,
        fence: Option<(&ArtifactName, &str)>,
    ) -> Result<usize> {
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
