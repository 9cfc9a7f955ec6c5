//! Multipart uploads (SPEC 4.1): uploads of any size, each part bound to its
//! own SHA-256, resumable, verified end to end before they become LATEST.
//!
//! S3 checks every part against the `x-amz-checksum-sha256` its presigned URL
//! was signed over, but for a multipart object it records only a composite
//! SHA-256 (of the parts' digests), never the whole object's
//! (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity-upload.html>).
//! So the commit completes the upload and hands it to `verify-upload`
//! (`verification.rs`), which hashes the object itself and only then writes LATEST.
//!
//! The upload targets the blob key. It is completed only onto an empty key
//! (`If-None-Match: *`, and a HeadObject just before): a key that already
//! holds bytes keeps them, and the verification is of that object instead.
//! So unverified bytes never become the current object under a key that a
//! row reads.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use artifact_store::objects::Head;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::Repository;
use crate::error::{Error, Result};
use crate::layout::now;
use crate::model::{
    CommitOutcome, MultipartPlan, PartReceived, PartRequest, PartUrl, PartUrls, Pipeline,
    UploadStatus,
};
use crate::names::ArtifactName;
use crate::rows::{UploadRow, UploadState};

use crate::blob_rules::{self, OnOccupied, Writer};
use crate::names::UploadId;
use artifact_store::blob_objects::{self, ListedPart, Over};

pub use crate::limits::{
    DEFAULT_PART_SIZE, MAX_MULTIPART_SIZE, MAX_PART_SIZE, MAX_PARTS, MAX_PARTS_PER_REQUEST,
    MIN_PART_SIZE, plan,
};

impl Repository {
    /// Starts the S3 side of a multipart upload of `row` at its blob key:
    /// CreateMultipartUpload with SHA-256 part checksums, the content type
    /// and the library's metadata. Returns S3's upload id.
    pub(super) async fn create_multipart(
        &self,
        blob_key: &str,
        content_type: &str,
        metadata: HashMap<String, String>,
    ) -> Result<String> {
        blob_objects::create_multipart(
            &self.s3,
            &self.layout.bucket,
            blob_key,
            content_type,
            metadata,
        )
        .await
    }

    /// Abandons the S3 side of a multipart upload (nothing was sent yet).
    pub(super) async fn abort_multipart(&self, blob_key: &str, s3_upload_id: &str) -> Result<()> {
        blob_objects::abort_multipart(&self.s3, &self.layout.bucket, blob_key, s3_upload_id).await
    }

    /// The pending-upload row, strongly consistent; 404 when there is none.
    pub(super) async fn upload_row(&self, name: &ArtifactName, id: &UploadId) -> Result<UploadRow> {
        match self.upload_item(name, id).await? {
            Some(item) => UploadRow::from_item(name, &item),
            None => Err(id.not_found(name)),
        }
    }

    /// The upload row's item as stored, strongly consistent.
    pub(super) async fn upload_item(
        &self,
        name: &ArtifactName,
        id: &UploadId,
    ) -> Result<Option<crate::rows::Item>> {
        self.table.get_upload_item(name, id).await
    }

    /// Presigned UploadPart URLs for `parts` of a pending multipart upload,
    /// each signed over the part's `x-amz-checksum-sha256` and length, so S3
    /// refuses any other bytes. Asking again (resuming) is allowed until the
    /// upload expires. AWS calls: 1 (GetItem); presigning is local.
    pub async fn upload_part_urls(
        &self,
        name: &ArtifactName,
        upload_id: &str,
        parts: &[PartRequest],
    ) -> Result<PartUrls> {
        let id: UploadId = upload_id.parse()?;
        if parts.is_empty() || parts.len() > MAX_PARTS_PER_REQUEST {
            return Err(Error::InvalidRequest(format!(
                "parts must list 1 to {MAX_PARTS_PER_REQUEST} parts; it lists {}",
                parts.len()
            )));
        }
        let mut seen = BTreeSet::new();
        for part in parts {
            if !seen.insert(part.number) {
                return Err(Error::InvalidRequest(format!(
                    "part {} is listed twice",
                    part.number
                )));
            }
        }
        let upload = self.upload_row(name, &id).await?;
        let Some(mp) = &upload.multipart else {
            return Err(Error::InvalidRequest(format!(
                "upload {upload_id} is a single PUT: it has no parts (PUT the bytes to its url)"
            )));
        };
        if let Some(out_of_range) = parts
            .iter()
            .find(|p| p.number == 0 || p.number > mp.plan.part_count)
        {
            return Err(Error::InvalidRequest(format!(
                "part {} is out of range: this upload has parts 1 to {}",
                out_of_range.number, mp.plan.part_count
            )));
        }
        let now = now();
        if upload.state != UploadState::Pending || upload.expires_at <= now.unix_timestamp() {
            return Err(not_pending(name, &id, &upload));
        }
        let blob_key = self.layout.blob_key(name, &upload.sha256);
        let mut urls = Vec::with_capacity(parts.len());
        for part in parts {
            let length = mp.plan.part_length(part.number, upload.size);
            let presigned = blob_objects::presign_upload_part(
                &self.s3,
                &self.layout.bucket,
                &blob_key,
                &mp.s3_upload_id,
                part.number,
                &part.sha256.to_bytes(),
                length,
                self.presign_expires,
            )
            .await?;
            urls.push(PartUrl {
                number: part.number,
                url: presigned.url,
                headers: presigned.headers,
            });
        }
        let expires = time::OffsetDateTime::from_unix_timestamp(upload.expires_at)
            .map_err(|e| Error::internal("upload expiry", e))?;
        Ok(PartUrls {
            parts: urls,
            expires_at: expires.min(now + self.presign_expires),
        })
    }

    /// An upload's state: pending (with the parts S3 holds, for a multipart
    /// upload), verifying, committed (with LATEST as it made it) or failed
    /// (with the reason). AWS calls: GetItem, then ListParts per 1 000 parts
    /// of a pending multipart upload, or an Invoke of verify-upload for a
    /// verification stalled (`VERIFY_STALLED`).
    pub async fn upload_state(&self, name: &ArtifactName, upload_id: &str) -> Result<UploadStatus> {
        let id: UploadId = upload_id.parse()?;
        let upload = self.upload_row(name, &id).await?;
        let expires_at = time::OffsetDateTime::from_unix_timestamp(upload.expires_at)
            .map_err(|e| Error::internal("upload expiry", e))?;
        if upload.state == UploadState::Pending && upload.expires_at <= now().unix_timestamp() {
            return Err(id.not_found(name));
        }
        let mut status = UploadStatus {
            upload_id: id.as_str().to_owned(),
            state: upload.state.as_str(),
            expires_at,
            multipart: upload.multipart.as_ref().map(|mp| mp.plan),
            parts_received: None,
            parts: None,
            verified_bytes: None,
            artifact: None,
            reason: None,
            published: None,
            alias: None,
            pipeline_error: None,
        };
        match upload.state {
            UploadState::Pending => {
                if let Some(mp) = &upload.multipart {
                    let blob_key = self.layout.blob_key(name, &upload.sha256);
                    let parts = self
                        .list_parts(&blob_key, &mp.s3_upload_id)
                        .await?
                        .unwrap_or_default();
                    status.parts_received = Some(parts.iter().map(|p| p.number).collect());
                    status.parts = Some(
                        parts
                            .into_iter()
                            .map(|p| PartReceived {
                                number: p.number,
                                size: p.size,
                                sha256: p
                                    .checksum_sha256
                                    .and_then(|c| STANDARD.decode(c).ok())
                                    .map(hex::encode),
                            })
                            .collect(),
                    );
                }
            }
            UploadState::Verifying => {
                status.verified_bytes = Some(upload.verified_bytes);
                // No checkpoint for longer than an invocation can run: its
                // invocations gave up, or none was ever made (the commit
                // that handed it over cut off before it asked, and its
                // retry found it verifying). A client waiting for the
                // verification only reads this, so the read asks again, as
                // a commit would (duplicates are harmless). The answer does
                // not hang on it.
                if now() - upload.update_at > super::uploads::VERIFY_STALLED
                    && let Err(e) = self.request_verification(name, &id).await
                {
                    tracing::warn!(error = %e, upload_id = id.as_str(), "a stalled verification could not be asked for again");
                }
            }
            UploadState::Committed => {
                status.artifact = Some(upload.to_artifact(&self.layout));
                let result: Option<serde_json::Value> = upload
                    .pipeline_result
                    .as_deref()
                    .and_then(|r| serde_json::from_str(r).ok());
                if let Some(result) = result {
                    status.published = result.get("published").filter(|v| !v.is_null()).cloned();
                    status.alias = result.get("alias").filter(|v| !v.is_null()).cloned();
                    status.pipeline_error = result.get("error").cloned();
                }
            }
            UploadState::Failed | UploadState::Superseded => status.reason = upload.reason.clone(),
        }
        Ok(status)
    }

    /// Every part S3 holds for the upload, by number; `None` when S3 knows
    /// no such upload (completed or aborted).
    async fn list_parts(
        &self,
        blob_key: &str,
        s3_upload_id: &str,
    ) -> Result<Option<Vec<ListedPart>>> {
        blob_objects::list_parts(&self.s3, &self.layout.bucket, blob_key, s3_upload_id).await
    }

    /// Commits a pending multipart upload: every part must be there with
    /// its length; the upload is completed onto the blob key and recorded
    /// as `verifying` (then handed to `verify-upload`). A key that already
    /// holds an object is judged by the blob rules (`on_occupied`): the
    /// declared bytes (verified or checked by S3) → `None`, the caller
    /// commits the rows at once; an object another live upload wrote → 409,
    /// commit again later (the parts are kept); otherwise that object is
    /// verified, deletable by the verification only if this upload wrote
    /// it. A retried commit answers the same. AWS calls: ListParts per 1 000
    /// parts beside an UpdateItem (the completion stamp),
    /// CompleteMultipartUpload (or AbortMultipartUpload), UpdateItem, and
    /// the verifier's Invoke.
    pub(super) async fn commit_multipart(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        upload: UploadRow,
        head: Option<Head>,
        hand_over: Handover<'_>,
    ) -> Result<Option<CommitOutcome>> {
        let Some(mp) = &upload.multipart else {
            return Err(Error::internal(
                "commit",
                "not a multipart upload".to_owned(),
            ));
        };
        let blob_key = self.layout.blob_key(name, &upload.sha256);
        // Stamped before any completion (beside the listing): another
        // upload of these bytes takes this one for cut off only once the
        // stamp is older than a commit runs (`blob_rules::Writer::CutOff`),
        // and a retry stamps again.
        let (parts, stamped) = tokio::join!(
            self.list_parts(&blob_key, &mp.s3_upload_id),
            self.table.stamp_upload_completing(name, id, now())
        );
        let parts = parts?;
        if !stamped? {
            return Err(Error::ConcurrentModification(format!(
                "upload {} of {name} changed state meanwhile; ask its state",
                id.as_str()
            )));
        }
        if let Some(parts) = &parts {
            check_parts(parts, &mp.plan, upload.size)?;
        }
        let head = match (&parts, head) {
            (Some(parts), None) => {
                match self
                    .complete(&blob_key, &mp.s3_upload_id, parts, Over::Nothing)
                    .await?
                {
                    Some(version) => {
                        return self
                            .hand_to_verification(name, id, &version, true, &hand_over)
                            .await;
                    }
                    // A concurrent commit of this upload completed it.
                    None => self.head_blob(&blob_key).await?,
                }
            }
            (Some(_), Some(head)) => Some(head),
            // Completed by an earlier attempt whose answer was lost (or
            // aborted): what the key holds now is judged. (HEAD again: the
            // one read with the row may predate it.)
            (None, _) => self.head_blob(&blob_key).await?,
        };
        let Some(head) = head else {
            return Err(id.not_found(name));
        };
        let object = artifact_store::objects::stored_object(&head);
        let version = object.version.clone();
        let checked_by_s3 = object.checksum_is(&upload.sha256);
        // The writer's state before the verified record, in this order: its
        // verification writes both in one transaction, so a writer found
        // ended here has its record found below. Read the other way round,
        // a verification committing between the two reads left the object
        // looking unverified with its writer gone, and this upload completed
        // its parts over bytes rows now serve.
        let writer_alive = match object.writer.as_deref() {
            Some(writer) if !checked_by_s3 && writer != id.nonce() => {
                self.upload_alive(name, writer, &upload.sha256).await?
            }
            _ => false,
        };
        let verified = if checked_by_s3 {
            None
        } else {
            self.verified_blob(name, &upload.sha256).await?
        };
        let stored = blob_rules::stored(
            Some(&object),
            verified.as_ref(),
            &upload.sha256,
            upload.size,
        );
        match blob_rules::on_occupied(stored, id.nonce(), writer_alive, parts.is_some()) {
            OnOccupied::CommitRows => {
                if parts.is_some() {
                    self.abort_multipart(&blob_key, &mp.s3_upload_id).await?;
                }
                Ok(None)
            }
            OnOccupied::Refuse(e) | OnOccupied::Wait(e) => Err(e),
            OnOccupied::CompleteOver => {
                let parts = parts.as_deref().unwrap_or_default();
                let over = Over::Object(head.e_tag().unwrap_or_default().to_owned());
                match self
                    .complete(&blob_key, &mp.s3_upload_id, parts, over)
                    .await?
                {
                    Some(version) => {
                        self.hand_to_verification(name, id, &version, true, &hand_over)
                            .await
                    }
                    None => Err(Error::ConcurrentModification(
                        "this upload was completed meanwhile; commit again".into(),
                    )),
                }
            }
            OnOccupied::Verify { owned } => {
                if parts.is_some() && !owned {
                    self.abort_multipart(&blob_key, &mp.s3_upload_id).await?;
                }
                self.hand_to_verification(name, id, &version, owned, &hand_over)
                    .await
            }
        }
    }

    /// Records the upload as verifying `version` and asks for its verification.
    async fn hand_to_verification(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        version: &str,
        owned: bool,
        hand_over: &Handover<'_>,
    ) -> Result<Option<CommitOutcome>> {
        self.start_verifying(name, id, version, owned, hand_over)
            .await?;
        self.request_verification(name, id).await?;
        Ok(Some(CommitOutcome::Verifying {
            upload_id: id.as_str().to_owned(),
            state: UploadState::Verifying.as_str(),
        }))
    }

    /// Whether the upload whose nonce is `writer` (of the same bytes) may
    /// still verify, and so delete, the object it wrote; a stalled
    /// verification of it is asked for again, and one whose commit was cut
    /// off before its hand-over is recorded superseded (then it may not).
    /// One GetItem (and an Invoke or an UpdateItem).
    async fn upload_alive(&self, name: &ArtifactName, writer: &str, sha256: &str) -> Result<bool> {
        let Ok(id) = format!("{writer}{sha256}").parse::<UploadId>() else {
            return Ok(false);
        };
        let row = match self.upload_row(name, &id).await {
            Ok(row) => row,
            Err(Error::UploadNotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        match blob_rules::writer_state(
            row.state,
            row.expires_at,
            row.completing_at,
            now().unix_timestamp(),
        ) {
            Writer::Gone => Ok(false),
            Writer::Alive => {
                // Its verification stopped (every invocation gave up, the
                // request went to the failure queue): this upload waits for
                // it, so it asks for it again (duplicates are harmless),
                // rather than every upload of these bytes waiting out the
                // writer's lifetime (SPEC 7.16).
                if row.state == UploadState::Verifying
                    && now() - row.update_at > super::uploads::VERIFY_STALLED
                {
                    self.request_verification(name, &id).await?;
                }
                Ok(true)
            }
            // Its commit completed its parts and never handed them over: no
            // invocation is left to (a retry of the commit stamps again, and
            // then the condition fails). Superseded, it never will.
            Writer::CutOff { stamp } => {
                let superseded = self
                    .table
                    .supersede_cut_off_upload(
                        name,
                        &id,
                        stamp,
                        &format!(
                            "its commit was cut off after completing its parts and was not \
                             retried within {} minutes; another upload of the same bytes \
                             took their place (start the upload again)",
                            blob_rules::COMMIT_CUT_OFF_SECS / 60
                        ),
                    )
                    .await?;
                Ok(!superseded)
            }
        }
    }

    /// CompleteMultipartUpload onto an empty key (`If-None-Match: *`), or
    /// over exactly the object judged (`If-Match: its ETag`): on AWS a key
    /// that changed meanwhile refuses it with 412 (conditional writes:
    /// https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html).
    /// Returns the new object version; `None` when S3 no longer knows the
    /// upload (a concurrent commit completed it).
    async fn complete(
        &self,
        blob_key: &str,
        s3_upload_id: &str,
        parts: &[ListedPart],
        over: Over,
    ) -> Result<Option<String>> {
        blob_objects::complete_multipart(
            &self.s3,
            &self.layout.bucket,
            blob_key,
            s3_upload_id,
            parts,
            over,
        )
        .await
    }

    /// The upload row `pending → verifying` of object version `version`
    /// (idempotent: a retry finds it verifying that version already). The
    /// upload's lifetime starts again: verification may take long.
    /// `actor` (the committer) becomes the upload's actor: the verified
    /// commit records it as LATEST's creator, as a single PUT's commit does.
    async fn start_verifying(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        version: &str,
        owned: bool,
        hand_over: &Handover<'_>,
    ) -> Result<()> {
        let now = now();
        let pipeline = hand_over
            .pipeline
            .filter(|p| !p.is_empty())
            .map(Pipeline::to_json);
        let expires_at = (now + self.upload_expires).unix_timestamp();
        let started = self
            .table
            .start_upload_verifying(
                name,
                id,
                version,
                owned,
                hand_over.actor,
                pipeline,
                &hand_over.latest_seen,
                expires_at,
                now,
            )
            .await?;
        if started {
            Ok(())
        } else {
            Err(Error::ConcurrentModification(format!(
                "upload {} of {name} changed state meanwhile; ask its state",
                id.as_str()
            )))
        }
    }
}

/// Who hands an upload to verification, and what its verification does
/// once the upload is committed.
pub(super) struct Handover<'a> {
    pub actor: &'a str,
    pub pipeline: Option<&'a Pipeline>,
    /// LATEST as the commit read it (`blob_rules::latest_seen`).
    pub latest_seen: String,
}

/// Every part 1..=count is there, each of its planned length.
fn check_parts(parts: &[ListedPart], plan: &MultipartPlan, size: u64) -> Result<()> {
    let by_number: BTreeMap<u32, u64> = parts.iter().map(|p| (p.number, p.size)).collect();
    let missing: Vec<u32> = (1..=plan.part_count)
        .filter(|n| !by_number.contains_key(n))
        .collect();
    if !missing.is_empty() {
        let shown: Vec<String> = missing.iter().take(20).map(u32::to_string).collect();
        return Err(Error::UploadMismatch(format!(
            "{} of {} parts have not arrived (parts {}{}); upload them, then commit again",
            missing.len(),
            plan.part_count,
            shown.join(", "),
            if missing.len() > 20 { ", …" } else { "" }
        )));
    }
    for (number, got) in by_number {
        let want = plan.part_length(number, size);
        if number > plan.part_count || got != want {
            return Err(Error::UploadMismatch(format!(
                "part {number} holds {got} bytes; the upload declared {want}"
            )));
        }
    }
    Ok(())
}

fn not_pending(name: &ArtifactName, id: &UploadId, upload: &UploadRow) -> Error {
    match upload.state {
        UploadState::Pending => id.not_found(name),
        state => Error::ConcurrentModification(format!(
            "upload {} of {name} is {}: its parts can no longer be sent",
            id.as_str(),
            state.as_str()
        )),
    }
}
