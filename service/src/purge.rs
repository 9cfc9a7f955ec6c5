//! Purge: the whole artifact, behind a fence.

use super::Repository;
use artifact_store::purge_items::{
    Order, Unfinished, keys_of, meta_index_keys, partitions_to_delete,
};
use artifact_store::purge_objects;

/// How many times a failed purge tries to hand its fence over.
const HAND_OVER_ATTEMPTS: u32 = 5;
use crate::error::{Error, Result};
use crate::layout::{
    alias_pk, condemned_pk, events_pk, fence_pk, history_pk, now, rollout_pk, status_pk, upload_pk,
    verified_pk,
};
use crate::names::ArtifactName;
use crate::rows::{Item, UploadRow, VersionRow, registry_key};

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
        let purged = self.purge_behind_fence(name, &purge_id, None).await;
        if purged.is_err() {
            // Failed (not crashed): the next purge may take over at once
            // instead of waiting for the lease to lapse; writers stay out.
            self.hand_over_fence(name, &purge_id).await;
        }
        purged.map(|_finished| ())
    }

    /// Finishes a purge of `name` that stopped part-way (its fence handed
    /// over or lapsed), as running it again would (SPEC 7.16: the next
    /// background pass finishes what an interrupted operation left) —
    /// unless writers came back since: a lapsed fence lets uploads start,
    /// and a purge nobody asked for must not take their writes (SPEC
    /// 7.10: the writers won). So the fence is taken first (no upload
    /// starts from then on, and a commit needs its upload's row), then
    /// LATEST and the upload rows are read: with LATEST or a live upload
    /// (pending or verifying), the fence comes
    /// down and nothing is purged (without a fence, read once before one
    /// is put, so a first upload in progress meets none). `Ok(false)` when no purge
    /// was finished. AWS calls: GetItem, GetItem ∥ Query, PutItem,
    /// GetItem ∥ Query, then a purge's (or a DeleteItem).
    pub async fn finish_unfinished_purge(&self, name: &ArtifactName) -> Result<bool> {
        match self.table.purge_left_unfinished(name).await? {
            Unfinished::No => return Ok(false),
            Unfinished::Fenced => {}
            // Read before any fence as well: a name whose first upload is
            // in progress (registered, no LATEST, no fence) is no purge to
            // finish, and a fence put over it would refuse its writers
            // (409) meanwhile.
            Unfinished::Unfenced => {
                if self.written_since_purge(name).await? {
                    return Ok(false);
                }
            }
        }
        let purge_id = uuid::Uuid::new_v4().simple().to_string();
        match self.take_fence(name, &purge_id).await {
            Ok(()) => {}
            // A purge runs (taken over meanwhile): it finishes the job.
            Err(Error::ArtifactBeingPurged { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        // Objects written from this second on may be a writer's that came
        // back (the library writes its object, then its row): they stay.
        let checked_at = now().unix_timestamp();
        let written_since = match self.written_since_purge(name).await {
            Ok(written) => written,
            Err(e) => {
                self.hand_over_fence(name, &purge_id).await;
                return Err(e);
            }
        };
        if written_since {
            self.table.lower_purge_fence(name, &purge_id).await?;
            return Ok(false);
        }
        let purged = self
            .purge_behind_fence(name, &purge_id, Some(checked_at))
            .await;
        if purged.is_err() {
            self.hand_over_fence(name, &purge_id).await;
        }
        purged
    }

    /// Whether `name` has LATEST or a live upload (pending, or verifying
    /// and not expired): writers came back. AWS calls: GetItem ∥ Query.
    async fn written_since_purge(&self, name: &ArtifactName) -> Result<bool> {
        let uploads_pk = upload_pk(name);
        let (latest, uploads) = tokio::join!(
            self.get_row(name, crate::names::Version::Latest),
            self.query_all(&uploads_pk)
        );
        let now_secs = now().unix_timestamp();
        // A LATEST a purge marked is that purge's, still to delete.
        Ok(latest?.is_some_and(|row| !row.marked_purged())
            || uploads?
                .iter()
                .filter_map(|item| UploadRow::from_item(name, item).ok())
                .any(|u| crate::retention_rules::upload_holds(u.state, u.expires_at, now_secs)))
    }

    /// The work of [`Self::purge_artifact`] once its fence is up. Finishing
    /// a purge nobody asked for now (`finishing`: the second LATEST was
    /// found absent under the fence), writers that came back since win
    /// (SPEC 7.10): LATEST is not deleted but looked for, and when there
    /// (the library wrote it: it knows no fence) the fence comes down and
    /// nothing more goes (`Ok(false)`); objects from that second on stay.
    async fn purge_behind_fence(
        &self,
        name: &ArtifactName,
        purge_id: &str,
        finishing: Option<i64>,
    ) -> Result<bool> {
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
        let rows_go_at = match finishing {
            None => {
                self.table.delete_latest_row(name, &purge_id, false).await?;
                now().unix_timestamp()
            }
            Some(checked_at) => {
                // Absent, or marked by the stopped purge (its event
                // logged): it goes, only while still so marked. Else a
                // writer's: it stays, and so does everything.
                if !self.table.delete_latest_row(name, &purge_id, true).await? {
                    self.table.lower_purge_fence(name, &purge_id).await?;
                    return Ok(false);
                }
                checked_at
            }
        };
        let mut keys: Vec<Item> = Vec::new();
        let mut after_rows: Vec<Item> = Vec::new();
        for (pk, order) in partitions_to_delete(name) {
            self.renew_fence(name, &purge_id).await?;
            let mut found = self.partition_keys(&pk).await?;
            if pk == history_pk(name) {
                // Newest entries first: a purge interrupted here leaves each
                // alias's history a prefix from revision 1 (alias rows went
                // before it), which a re-created alias continues without a
                // gap; oldest-first left revisions 5..7 with 1..4 gone.
                found.reverse();
            }
            match order {
                Order::BeforeRows => keys.extend(found),
                Order::AfterRows => after_rows.extend(found),
            }
        }
        // The version rows, and their entries in the metadata index.
        let rows = self.query_all(name.as_str()).await?;
        if finishing.is_some() && artifact_store::purge_items::holds_latest(&rows) {
            self.table.lower_purge_fence(name, &purge_id).await?;
            return Ok(false);
        }
        for row in rows
            .iter()
            .filter_map(|item| VersionRow::from_item(item).ok())
        {
            if row.version.is_latest() {
                continue;
            }
            keys.extend(meta_index_keys(name, &row));
        }
        keys.extend(keys_of(rows));
        self.delete_keys_fenced(name, &purge_id, keys).await?;
        // Only once every row went (a batch's items go in no set order):
        // the blob records, then the registry row, last of all.
        self.delete_keys_fenced(name, &purge_id, after_rows).await?;
        self.delete_keys_fenced(name, &purge_id, vec![registry_key(name)])
            .await?;
        for (prefix, written_before) in [
            (self.layout.artifact_prefix(name), Some(rows_go_at)),
            (self.layout.blob_prefix(name), None),
        ] {
            self.delete_object_versions(
                &prefix,
                None,
                Some((name, &purge_id)),
                written_before,
                Recent::KeptUnlessMirrored,
            )
            .await?;
        }
        self.renew_fence(name, &purge_id).await?;
        self.delete_rows_without_objects(name).await?;
        // Already lowered by this request (its answer was lost), or taken
        // over after we stalled: the holder lowers it.
        self.table.lower_purge_fence(name, &purge_id).await?;
        Ok(true)
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
            events_pk(name),
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
    fn registered(&self, name: &ArtifactName) -> impl std::future::Future<Output = Result<bool>> {
        self.table.registered(name)
    }

    fn any_row(&self, pk: &str) -> impl std::future::Future<Output = Result<bool>> {
        self.table.any_row(pk)
    }

    fn any_object(&self, prefix: &str) -> impl std::future::Future<Output = Result<bool>> {
        purge_objects::any_version(&self.s3, &self.layout.bucket, prefix)
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
    fn try_hand_over_fence(
        &self,
        name: &ArtifactName,
        purge_id: &str,
    ) -> impl std::future::Future<Output = Result<()>> {
        self.table.hand_over_purge_fence(name, purge_id)
    }

    /// Puts the purge fence up as `purge_id`'s, unless another purge holds
    /// it (renewed within `PURGE_FENCE_STALE`, and not handed over by a
    /// purge that failed): 409 then. A retry of this request finds its own
    /// fence and goes on.
    async fn take_fence(&self, name: &ArtifactName, purge_id: &str) -> Result<()> {
        if self.table.take_purge_fence(name, purge_id).await? {
            Ok(())
        } else {
            Err(Error::ArtifactBeingPurged {
                name: name.to_string(),
            })
        }
    }

    /// Renews the fence `purge_id` holds; when it lapsed (this purge
    /// stalled past `PURGE_FENCE_STALE`: writers and other purges take a
    /// lapsed fence for a crashed purge's and go on) or another purge took
    /// it over, this one stops: 409 (a later purge finishes the job).
    pub(super) async fn renew_fence(&self, name: &ArtifactName, purge_id: &str) -> Result<()> {
        if self.table.renew_purge_fence(name, purge_id).await? {
            Ok(())
        } else {
            Err(Error::ArtifactBeingPurged {
                name: name.to_string(),
            })
        }
    }

    /// The keys of every item of a partition (all pages, consistent).
    fn partition_keys(&self, pk: &str) -> impl std::future::Future<Output = Result<Vec<Item>>> {
        self.table.partition_keys(pk)
    }

    /// Deletes items by key, 25 per BatchWriteItem, retrying unprocessed
    /// ones; an error if some stay unprocessed (bytes must never be deleted
    /// while rows that point at them remain).
    fn delete_keys(&self, keys: Vec<Item>) -> impl std::future::Future<Output = Result<()>> {
        self.table.delete_keys(keys)
    }

    /// [`Self::delete_keys`] in slices, the fence renewed before each: an
    /// artifact of thousands of rows takes longer to delete than a fence
    /// lasts unrenewed (`PURGE_FENCE_STALE`), and a purge whose fence
    /// lapsed and was taken over must stop before deleting more of what it
    /// read (writers passed the lapsed fence meanwhile). AWS calls:
    /// UpdateItem, then BatchWriteItem per 25 keys, per slice.
    async fn delete_keys_fenced(
        &self,
        name: &ArtifactName,
        purge_id: &str,
        keys: Vec<Item>,
    ) -> Result<()> {
        for slice in keys.chunks(KEYS_PER_FENCE_RENEWAL) {
            self.renew_fence(name, purge_id).await?;
            self.delete_keys(slice.to_vec()).await?;
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
            let head =
                purge_objects::head_metadata(&self.s3, &self.layout.bucket, &key, version_id)
                    .await?;
            if head.is_some() {
                continue;
            }
            tracing::info!(%name, version = %row.version, %key, "a row that landed during the purge names bytes the purge deleted; deleted too");
            // Rewritten since (a newer put, its object PUT first): kept.
            self.table
                .delete_version_holding(name, row.version, &row.sha256)
                .await?;
        }
        Ok(())
    }

    /// Every object version and delete marker of exactly `key` (key,
    /// version id), as ListObjectVersions lists them (every page).
    pub(super) async fn object_versions_of(
        &self,
        key: &str,
    ) -> Result<Vec<(String, Option<String>)>> {
        let mut listed = Vec::new();
        let (mut key_marker, mut version_marker) = (None, None);
        loop {
            let page = purge_objects::list_versions_page(
                &self.s3,
                &self.layout.bucket,
                key,
                key_marker,
                version_marker,
            )
            .await?;
            listed.extend(
                page.versions
                    .into_iter()
                    .chain(page.delete_markers)
                    .filter(|v| v.key == key)
                    .map(|v| (v.key, v.version_id)),
            );
            let Some((next_key, next_version)) = page.next else {
                return Ok(listed);
            };
            key_marker = next_key;
            version_marker = next_version;
        }
    }

    /// Permanently deletes the object versions and delete markers of the
    /// one key `key` last modified before the second `written_before` (Unix
    /// seconds): what a reclaim of a version's own object may delete (see
    /// `retention_rules::object_reclaim_before`). Returns how many.
    pub(super) async fn delete_object_versions_before(
        &self,
        key: &str,
        written_before: i64,
    ) -> Result<usize> {
        self.delete_object_versions(key, Some(key), None, Some(written_before), Recent::Kept)
            .await
    }

    /// Permanently deletes every object version and delete marker under
    /// `prefix` (only keys equal to `exact`, when given), keeping those
    /// last modified in the second `written_before` (Unix seconds) or
    /// later, when given, as `recent` says. Returns how many. With `fence`
    /// (a purge's), the fence is renewed before every page.
    async fn delete_object_versions(
        &self,
        prefix: &str,
        exact: Option<&str>,
        fence: Option<(&ArtifactName, &str)>,
        written_before: Option<i64>,
        recent: Recent,
    ) -> Result<usize> {
        let older = |modified: Option<i64>| match written_before {
            None => true,
            // Unknown age: kept (it may be a racing put's).
            Some(cutoff) => modified.is_some_and(|m| m < cutoff),
        };
        let mut deleted = 0;
        let (mut key_marker, mut version_marker) = (None, None);
        loop {
            if let Some((name, purge_id)) = fence {
                self.renew_fence(name, purge_id).await?;
            }
            let page = purge_objects::list_versions_page(
                &self.s3,
                &self.layout.bucket,
                prefix,
                key_marker,
                version_marker,
            )
            .await?;
            // A recent version is kept only when it is not a copy of the
            // mirror's (its marker says so; no writer we fence races there).
            // The marker names the key the mirror wrote it for: the
            // library's publish copies LATEST with its metadata, so its
            // numbered object may carry LATEST's marker, and is the
            // library's write (checker finding 11).
            let mirrored_here = |key: &str, marked: Option<&String>| {
                let own = self.layout.sort_key_of(prefix, key);
                marked.is_some_and(|m| own == Some(m.as_str()))
            };
            let mut recent_ours = Vec::new();
            let recent_versions = page
                .versions
                .iter()
                .filter(|v| recent == Recent::KeptUnlessMirrored && !older(v.last_modified));
            for v in recent_versions {
                let head = purge_objects::head_metadata(
                    &self.s3,
                    &self.layout.bucket,
                    &v.key,
                    v.version_id.clone(),
                )
                .await?;
                if head.is_some_and(|meta| {
                    mirrored_here(&v.key, meta.get(crate::limits::META_MIRRORED_FOR))
                }) {
                    recent_ours.push((&v.key, &v.version_id));
                }
            }
            let ids: Vec<(String, Option<String>)> = page
                .versions
                .iter()
                .filter(|v| older(v.last_modified))
                .map(|v| (&v.key, &v.version_id))
                .chain(recent_ours)
                .chain(
                    page.delete_markers
                        .iter()
                        .filter(|m| older(m.last_modified))
                        .map(|m| (&m.key, &m.version_id)),
                )
                .filter(|(key, _)| exact.is_none_or(|e| key.as_str() == e))
                .map(|(key, version)| (key.clone(), version.clone()))
                .collect();
            if !ids.is_empty() {
                deleted += ids.len();
                for (key, version_id) in &ids {
                    tracing::debug!(key = key.as_str(), version_id = ?version_id.as_deref(), "object version deleted");
                }
                purge_objects::delete_versions(&self.s3, &self.layout.bucket, ids).await?;
            }
            let Some((next_key, next_version)) = page.next else {
                return Ok(deleted);
            };
            key_marker = next_key;
            version_marker = next_version;
        }
    }
}

/// Which object versions written in or after the cutoff second a deletion
/// keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recent {
    /// All of them.
    Kept,
    /// Those the mirror did not write for their own key (one HeadObject
    /// per recent version): a purge deletes the mirror's copies whenever
    /// they were written, no writer it fences racing there.
    KeptUnlessMirrored,
}

/// Keys a purge deletes between two renewals of its fence: 20
/// BatchWriteItems, a second or so on AWS, far inside `PURGE_FENCE_STALE`.
const KEYS_PER_FENCE_RENEWAL: usize = 500;
