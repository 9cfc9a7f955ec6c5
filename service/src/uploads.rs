//! Uploads: a pending-upload row and a presigned PUT of exactly the declared
//! bytes to their blob key, then a commit that only writes rows.
//!
//! Bytes never pass through the service. S3 itself refuses bytes whose SHA-256
//! differs from the declared one (the signed `x-amz-checksum-sha256` header);
//! the commit re-checks what S3 recorded before the upload becomes LATEST.
//! Bytes the artifact already holds are not transferred again (`exists`).

use std::collections::HashMap;

use artifact_store::change_events::ChangeEvent;
use artifact_store::tx::TxItem;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use time::OffsetDateTime;

use artifact_store::objects::Head;

use super::tx::{TransactFailure, Tx};
use super::{MAX_ATTEMPTS, Repository};
use crate::blob_rules::{Stored, VerifiedBlob, stored};
use crate::error::{Error, Result};
use crate::layout::{META_ARTIFACT_NAME, META_ARTIFACT_SHA256, now};
use crate::model::{CommitOutcome, Committed, UploadRequest, UploadTicket};
use crate::names::{ArtifactName, UploadId, Version};
use crate::rows::{Item, Location, MultipartUpload, UploadRow, UploadState, VersionRow};
use artifact_store::claim::{Claimed, HeldClaim};
use artifact_store::objects::stored_object;
use artifact_store::{blob_objects, upload_items};

pub use crate::limits::MAX_UPLOAD_SIZE;

pub use crate::limits::metadata_limits;
use crate::limits::{META_UPLOAD_ID, META_UPLOAD_SIZE};

/// What S3 records when the client declares no content type; signed all the
/// same, so no content type is ever stored that was not validated here.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

impl Repository {
    /// Records a pending upload and, unless the artifact already holds the
    /// bytes, signs a PUT of exactly them to their blob key.
    ///
    /// AWS calls: HeadObject ∥ TransactWriteItems (2, in one round trip). The
    /// transaction fails while the artifact is being purged (409) or these
    /// bytes are being reclaimed (409), so nothing can be committed that a
    /// purge or reclaim would not see.
    pub async fn create_upload(
        &self,
        name: &ArtifactName,
        request: UploadRequest,
        actor: &str,
    ) -> Result<UploadTicket> {
        let request = request.validate()?;
        let plan = crate::limits::plan(request.size, request.part_size)?;
        let digest = hex::decode(&request.sha256)
            .map_err(|_| Error::InvalidRequest("sha256 must be hexadecimal".into()))?;
        let size = i64::try_from(request.size)
            .map_err(|_| Error::TooLarge(format!("size {} is too large", request.size)))?;
        let now = now();
        let (upload_id, row) = self.pending_upload(name, &request, actor, now)?;
        let content_type = row.content_type.clone();
        let expires_at = now + self.upload_expires;
        let blob_key = self.layout.blob_key(name, &request.sha256);
        let mut metadata: HashMap<String, String> = request.metadata.clone().into_iter().collect();
        metadata.insert(META_ARTIFACT_NAME.into(), name.to_string());
        metadata.insert(META_ARTIFACT_SHA256.into(), request.sha256.clone());
        metadata.insert(META_UPLOAD_SIZE.into(), request.size.to_string());
        metadata.insert(META_UPLOAD_ID.into(), upload_id.nonce().to_owned());
        let expires_at_secs = expires_at.replace_nanosecond(0).unwrap_or(expires_at);
        if let Some(plan) = plan {
            // RT 1: is the blob there ∥ the S3 side of the upload; RT 2:
            // the row (∥ giving the S3 side up when the bytes are there).
            let (stored, created) = tokio::join!(
                self.stored_blob(name, &request.sha256, Some(request.size)),
                self.create_multipart(&blob_key, &content_type, metadata)
            );
            let s3_upload_id = created?;
            let exists = match stored.map(|(stored, _)| stored) {
                Ok(Stored::Holds) => true,
                Ok(Stored::Absent | Stored::Unverified { .. }) => false,
                Ok(Stored::Contradicts(e)) => {
                    self.abort_multipart(&blob_key, &s3_upload_id).await?;
                    return Err(e);
                }
                Err(e) => {
                    self.abort_multipart(&blob_key, &s3_upload_id).await?;
                    return Err(e);
                }
            };
            let mut row = row;
            if !exists {
                row.multipart = Some(MultipartUpload {
                    s3_upload_id: s3_upload_id.clone(),
                    plan,
                });
            }
            let (recorded, aborted) = tokio::join!(self.record_upload(name, &row), async {
                if exists {
                    self.abort_multipart(&blob_key, &s3_upload_id).await
                } else {
                    Ok(())
                }
            });
            match recorded {
                Ok(Recorded::New) => {}
                // The row was there: this call's own earlier attempt (it
                // names this S3 upload), or a retry's with the same key
                // (then no row names this S3 upload: it goes).
                Ok(Recorded::Existing) => {
                    aborted?;
                    let ours = (!exists).then_some(s3_upload_id.as_str());
                    return self.replayed_start(name, &upload_id, &request, ours).await;
                }
                Err(e) => {
                    // No row names the S3 upload: nothing else would abort it.
                    if !exists {
                        self.abort_multipart(&blob_key, &s3_upload_id).await?;
                    }
                    return Err(e);
                }
            }
            aborted?;
            return Ok(UploadTicket {
                upload_id: upload_id.as_str().to_owned(),
                state: UploadState::Pending.as_str(),
                exists,
                url: None,
                method: None,
                headers: None,
                multipart: (!exists).then_some(plan),
                expires_at: expires_at_secs,
            });
        }
        let (stored, recorded) = tokio::join!(
            self.stored_blob(name, &request.sha256, Some(request.size)),
            self.record_upload(name, &row)
        );
        let recorded = recorded?;
        let stored = stored?.0;
        if recorded == Recorded::Existing {
            // Another request's row (an earlier one with this key): never
            // deleted here, whatever this declaration says.
            if let Stored::Contradicts(e) = stored {
                return Err(e);
            }
            return self.replayed_start(name, &upload_id, &request, None).await;
        }
        let exists = match stored {
            Stored::Holds => true,
            Stored::Absent | Stored::Unverified { .. } => false,
            Stored::Contradicts(e) => {
                // The declaration is refused: the row written beside the
                // check goes too (a retry of this delete is harmless).
                self.table.delete_upload(name, upload_id.as_str()).await?;
                return Err(e);
            }
        };
        let expires_at = expires_at_secs;
        if exists {
            return Ok(UploadTicket {
                upload_id: upload_id.as_str().to_owned(),
                state: UploadState::Pending.as_str(),
                exists: true,
                url: None,
                method: None,
                headers: None,
                multipart: None,
                expires_at,
            });
        }
        let presigned = blob_objects::presign_put(
            &self.s3,
            &self.layout.bucket,
            blob_key,
            &digest,
            size,
            content_type,
            metadata,
            self.presign_expires,
        )
        .await?;
        Ok(UploadTicket {
            upload_id: upload_id.as_str().to_owned(),
            state: UploadState::Pending.as_str(),
            exists: false,
            url: Some(presigned.url),
            method: Some(presigned.method),
            headers: Some(presigned.headers),
            multipart: None,
            expires_at,
        })
    }

    /// The pending-upload row of a start upload of `request` (validated).
    fn pending_upload(
        &self,
        name: &ArtifactName,
        request: &UploadRequest,
        actor: &str,
        now: OffsetDateTime,
    ) -> Result<(UploadId, UploadRow)> {
        // A retry with the same `Idempotency-Key` names the same upload.
        let upload_id = UploadId::with_nonce(
            &super::request_token(request.key.as_deref()),
            &request.sha256,
        )?;
        let row = UploadRow {
            name: name.clone(),
            upload_id: upload_id.as_str().to_owned(),
            sha256: request.sha256.clone(),
            size: request.size,
            content_type: request
                .content_type
                .clone()
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
            metadata: request.metadata.clone(),
            actor: actor.to_owned(),
            state: UploadState::Pending,
            expires_at: (now + self.upload_expires).unix_timestamp(),
            update_at: now,
            changed: None,
            multipart: None,
            blob_version: None,
            verified_bytes: 0,
            hash_state: None,
            reason: None,
            committed_at: None,
            latest_seen: None,
            completing_at: None,
            blob_owned: false,
            pipeline: None,
            pipeline_result: None,
        };
        Ok((upload_id, row))
    }

    /// A start upload with `commit` of the bytes LATEST holds, as read at
    /// `read_at` (`blob_rules::commits_on_latest`): the upload row is
    /// written committed and recorded on LATEST in one transaction, which
    /// holds only while no purge runs, the bytes are not being reclaimed
    /// and LATEST still holds them. `None` when LATEST changed since the
    /// read (the caller goes the ordinary way). AWS calls: TransactWriteItems (1).
    pub(super) async fn commit_on_latest(
        &self,
        name: &ArtifactName,
        request: &UploadRequest,
        actor: &str,
        latest: &VersionRow,
        read_at: OffsetDateTime,
        held: Option<&HeldClaim>,
    ) -> Result<Option<(UploadId, Committed, bool)>> {
        let now = now();
        let (id, row) = self.pending_upload(name, request, actor, now)?;
        let mut item = UploadRow::committed_item(row.to_item(), false, now);
        if let Some(held) = held {
            held.mark(&mut item);
        }
        let mut tx = Tx::new();
        tx.push(Held::Fence, self.no_purge_running(name)?);
        tx.push(
            Held::Bytes,
            self.not_condemned(name, &row.sha256, Some(read_at))?,
        );
        tx.push(Held::Row, self.put_new(item)?);
        let (on_latest, events) = self.latest_unchanged(name, &row, latest, None, now)?;
        tx.push(Held::Latest, on_latest);
        self.log_events(&mut tx, Held::Log, name, &events)?;
        let committed = Committed {
            artifact: latest.to_artifact(&self.layout),
            changed: false,
        };
        let token = &row.upload_id[..32];
        for attempt in 0..MAX_ATTEMPTS {
            match self.transact_tx(&tx, token).await {
                Ok(()) => return Ok(Some((id, committed, held.is_some()))),
                // The row is new (a fresh nonce): our own earlier attempt
                // landed, its answer lost; answered as a retried commit is.
                // A client's retry (same key) finds the first request's
                // row, in whatever state it reached: the ordinary way
                // answers by it.
                Err(TransactFailure::Conditions(failed))
                    if failed.contains(&Held::Row) && request.key.is_some() =>
                {
                    return Ok(None);
                }
                Err(TransactFailure::Conditions(failed)) if failed.contains(&Held::Row) => {
                    if failed.contains(&Held::Latest) {
                        return Err(Error::UploadSuperseded {
                            name: name.to_string(),
                            upload_id: id.as_str().to_owned(),
                        });
                    }
                    // Its claim is the earlier attempt's, which is ours.
                    return Ok(Some((id, committed, held.is_some())));
                }
                Err(TransactFailure::Conditions(failed)) if failed.contains(&Held::Fence) => {
                    return Err(Error::ArtifactBeingPurged {
                        name: name.to_string(),
                    });
                }
                Err(TransactFailure::Conditions(failed)) if failed.contains(&Held::Bytes) => {
                    return Err(being_reclaimed(name));
                }
                Err(TransactFailure::Conditions(_)) => return Ok(None),
                Err(TransactFailure::Contention) => super::backoff(attempt).await,
                Err(TransactFailure::Failed(e)) => return Err(e),
            }
        }
        Err(Error::ConcurrentModification(format!(
            "committing to {name} kept conflicting with other writers; retry"
        )))
    }

    /// What the blob key of `sha256` holds, judged against a declaration
    /// of `size` bytes ([`stored`]; `None`: whatever size it has), and S3's
    /// record of it. One HeadObject; a GetItem of the verified-blob row
    /// only when S3 recorded no whole-object SHA-256 (a multipart object).
    pub(super) async fn stored_blob(
        &self,
        name: &ArtifactName,
        sha256: &str,
        size: Option<u64>,
    ) -> Result<(Stored, Option<Head>)> {
        let head = self.head_blob(&self.layout.blob_key(name, sha256)).await?;
        let facts = head.as_ref().map(stored_object);
        let verified = match &facts {
            Some(object) if !object.checksum_is(sha256) => self.verified_blob(name, sha256).await?,
            _ => None,
        };
        let size = size.or(facts.as_ref().map(|f| f.size)).unwrap_or_default();
        Ok((
            stored(facts.as_ref(), verified.as_ref(), sha256, size),
            head,
        ))
    }

    /// The verified-blob row of `sha256` (strongly consistent).
    pub(super) async fn verified_blob(
        &self,
        name: &ArtifactName,
        sha256: &str,
    ) -> Result<Option<VerifiedBlob>> {
        self.table.get_verified_blob(name, sha256).await
    }

    /// HeadObject with the checksum; `None` when there is no such object.
    pub(super) async fn head_blob(&self, key: &str) -> Result<Option<Head>> {
        blob_objects::head_object(&self.s3, &self.layout.bucket, key).await
    }

    /// A transaction member that holds only while no purge of `name` runs
    /// (its fence is absent, or stale: a crashed purge's).
    pub(super) fn no_purge_running(&self, name: &ArtifactName) -> Result<TxItem> {
        upload_items::no_purge_running(&self.layout.table, name)
    }

    /// Writes the pending-upload row, unless a purge of the artifact or a
    /// reclaim of these bytes is under way.
    /// `Existing` when the row was there already: with a random nonce, our
    /// own earlier attempt (its answer lost); with a client's key, maybe
    /// the first request's row, since moved on.
    async fn record_upload(&self, name: &ArtifactName, row: &UploadRow) -> Result<Recorded> {
        let mut tx = Tx::new();
        tx.push(Start::Fence, self.no_purge_running(name)?);
        tx.push(Start::Bytes, self.not_condemned(name, &row.sha256, None)?);
        tx.push(Start::Row, self.put_new(row.to_item())?);
        let token = &row.upload_id[..32];
        for attempt in 0..MAX_ATTEMPTS {
            match self.transact_tx(&tx, token).await {
                Ok(()) => return Ok(Recorded::New),
                Err(TransactFailure::Conditions(failed)) if failed.contains(&Start::Fence) => {
                    return Err(Error::ArtifactBeingPurged {
                        name: name.to_string(),
                    });
                }
                Err(TransactFailure::Conditions(failed)) if failed.contains(&Start::Bytes) => {
                    return Err(being_reclaimed(name));
                }
                // Our own earlier attempt landed (its answer was lost), or
                // the first request with the same key did.
                Err(TransactFailure::Conditions(_)) => return Ok(Recorded::Existing),
                Err(TransactFailure::Contention) => super::backoff(attempt).await,
                Err(TransactFailure::Failed(e)) => return Err(e),
            }
        }
        Err(Error::ConcurrentModification(format!(
            "starting an upload of {name} kept conflicting with other writers; retry"
        )))
    }

    /// The answer to a start retried with the key of an earlier one, from
    /// the upload that one started: what it declared must be this (else
    /// 400: a key names one request); a pending upload is offered again
    /// (its part plan, or a fresh URL unless the bytes are there), one that
    /// moved on is answered with its state and `exists` (a commit of it
    /// answers as its first commit did). Nothing is started or written;
    /// `created`, the S3 multipart upload this call created, is aborted
    /// unless the row names it. AWS calls: GetItem, then HeadObject (∥
    /// presign) for a pending single PUT.
    async fn replayed_start(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        request: &UploadRequest,
        created: Option<&str>,
    ) -> Result<UploadTicket> {
        // Unread, nothing is known of the S3 upload: kept (a pending row
        // may name it; none that does not lives past the upload's expiry).
        let row = self.upload_row(name, id).await?;
        if let Some(created) = created
            && row
                .multipart
                .as_ref()
                .is_none_or(|m| m.s3_upload_id != created)
        {
            let blob_key = self.layout.blob_key(name, id.sha256());
            self.abort_multipart(&blob_key, created).await?;
        }
        let content_type = request
            .content_type
            .as_deref()
            .unwrap_or(DEFAULT_CONTENT_TYPE);
        if row.size != request.size
            || row.content_type != content_type
            || row.metadata != request.metadata
        {
            return Err(Error::InvalidRequest(format!(
                "this Idempotency-Key started upload {} of {name} with another declaration; \
                 send a new key for a new upload",
                id.as_str()
            )));
        }
        if row.expires_at <= now().unix_timestamp() {
            return Err(id.not_found(name));
        }
        let expires_at = OffsetDateTime::from_unix_timestamp(row.expires_at)
            .map_err(|e| Error::internal("upload expiry", e))?;
        let mut ticket = UploadTicket {
            upload_id: id.as_str().to_owned(),
            state: row.state.as_str(),
            exists: true,
            url: None,
            method: None,
            headers: None,
            multipart: None,
            expires_at,
        };
        match row.state {
            UploadState::Pending => {}
            // A commit of it answers as its first commit did.
            UploadState::Committed => return Ok(ticket),
            UploadState::Verifying => {
                return Err(Error::Replayed {
                    code: "UploadVerifying",
                    kind: crate::error::ErrorKind::Conflict,
                    message: format!(
                        "upload {} of {name}, started by this request, is being verified: \
                         ask its state",
                        id.as_str()
                    ),
                });
            }
            UploadState::Failed => {
                return Err(Error::UploadMismatch(format!(
                    "upload {} of {name}, started by this request, failed verification: {}",
                    id.as_str(),
                    row.reason
                        .as_deref()
                        .unwrap_or("the bytes are not the declared ones")
                )));
            }
            UploadState::Superseded => {
                return Err(Error::UploadSuperseded {
                    name: name.to_string(),
                    upload_id: id.as_str().to_owned(),
                });
            }
        }
        if let Some(multipart) = row.multipart {
            ticket.exists = false;
            ticket.multipart = Some(multipart.plan);
            return Ok(ticket);
        }
        if matches!(
            self.stored_blob(name, &row.sha256, Some(row.size)).await?.0,
            Stored::Holds
        ) {
            return Ok(ticket);
        }
        let digest = hex::decode(&row.sha256)
            .map_err(|_| Error::internal("upload row", "sha256 is not hexadecimal"))?;
        let size = i64::try_from(row.size)
            .map_err(|_| Error::TooLarge(format!("size {} is too large", row.size)))?;
        let mut metadata: HashMap<String, String> = row.metadata.clone().into_iter().collect();
        metadata.insert(META_ARTIFACT_NAME.into(), name.to_string());
        metadata.insert(META_ARTIFACT_SHA256.into(), row.sha256.clone());
        metadata.insert(META_UPLOAD_SIZE.into(), row.size.to_string());
        metadata.insert(META_UPLOAD_ID.into(), id.nonce().to_owned());
        let presigned = blob_objects::presign_put(
            &self.s3,
            &self.layout.bucket,
            self.layout.blob_key(name, &row.sha256),
            &digest,
            size,
            row.content_type.clone(),
            metadata,
            self.presign_expires,
        )
        .await?;
        ticket.exists = false;
        ticket.url = Some(presigned.url);
        ticket.method = Some(presigned.method);
        ticket.headers = Some(presigned.headers);
        Ok(ticket)
    }

    /// A transaction operation that holds only while retention is not
    /// deleting the blob of `sha256`. With `read_at` (when the caller saw
    /// the blob, or LATEST, that it builds on), it also fails if a deletion
    /// finished after that moment: what the caller saw may be gone.
    pub(super) fn not_condemned(
        &self,
        name: &ArtifactName,
        sha256: &str,
        read_at: Option<OffsetDateTime>,
    ) -> Result<TxItem> {
        // Clocks of different functions agree to well within this.
        let finished_before = read_at.map(|t| t - CLOCK_MARGIN);
        upload_items::not_condemned(&self.layout.table, name, sha256, finished_before)
    }

    /// [`Self::commit`] of a single-PUT upload; a multipart upload,
    /// handed to verification, is a conflict here (its state tells the rest).
    pub async fn commit_upload(
        &self,
        name: &ArtifactName,
        upload_id: &str,
        actor: &str,
    ) -> Result<Committed> {
        match self.commit(name, upload_id, actor).await? {
            CommitOutcome::Committed(committed) => Ok(committed),
            CommitOutcome::Verifying { upload_id, .. } => Err(Error::ConcurrentModification(
                format!("upload {upload_id} of {name} is being verified; ask its state"),
            )),
        }
    }

    /// Commits an upload, recording `actor` as LATEST's creator.
    ///
    /// Single PUT — round trip 1: HeadObject of the blob ∥ BatchGetItem of
    /// the upload row and LATEST. Round trip 2: one TransactWriteItems — the
    /// upload row `pending → committed` (so an upload is committed at most
    /// once), no reclaim of the blob under way, LATEST pointed at the blob,
    /// the name registered (by the first commit). AWS calls: 3 in 2
    /// sequential round trips, whatever the size. A retried commit answers as the first did (2
    /// calls); an upload committed before LATEST moved on is refused (409),
    /// an expired one 404.
    ///
    /// Multipart: after the same first round trip, see
    /// `multipart.rs` (`commit_multipart`): 202 `verifying`.
    pub async fn commit(
        &self,
        name: &ArtifactName,
        upload_id: &str,
        actor: &str,
    ) -> Result<CommitOutcome> {
        let allowed = &mut super::Allowed::already();
        let (outcome, _) = self
            .commit_with(name, upload_id, actor, None, None, allowed)
            .await?;
        Ok(outcome)
    }

    /// [`Self::commit`]; a multipart upload handed to verification
    /// carries `pipeline` (its verification runs it once committed). The
    /// first round trip's reads go beside `allowed`; nothing is written
    /// before it said yes. With `held`, a commit this call makes also
    /// claims the pipeline's run (the answer's flag: it did).
    pub(super) async fn commit_with(
        &self,
        name: &ArtifactName,
        upload_id: &str,
        actor: &str,
        pipeline: Option<&crate::model::Pipeline>,
        held: Option<&HeldClaim>,
        allowed: &mut super::Allowed,
    ) -> Result<(CommitOutcome, Option<Claimed>)> {
        let id: UploadId = upload_id.parse()?;
        let blob_key = self.layout.blob_key(name, id.sha256());
        let digest = hex::decode(id.sha256()).map_err(|e| Error::internal("upload id", e))?;
        // Whether the commit may publish in its own transaction (until an
        // attempt found the number taken or a purge running).
        let mut fuse = true;
        for attempt in 0..MAX_ATTEMPTS {
            let (head, read, allowed) = tokio::join!(
                self.head_blob(&blob_key),
                self.upload_and_latest(name, &id),
                allowed.wait()
            );
            allowed?;
            let read = read?;
            let upload = read.upload().cloned().ok_or_else(|| id.not_found(name))?;
            let latest = read.live_latest().cloned();
            match upload.state {
                UploadState::Pending => {}
                UploadState::Committed => {
                    // Committed by this call's own transaction, whose
                    // answer was lost: its claim is on the row (and what
                    // the transaction published, when it did).
                    let item = read.upload.as_ref().map(|(_, item)| item);
                    let ours = match (held, item) {
                        (Some(h), Some(item)) if h.is_on(item) => {
                            Some(self.claimed_by_commit(name, item).await?)
                        }
                        _ => None,
                    };
                    // Superseded since (a later commit made LATEST): 409,
                    // as SPEC 4 says, even when its pipeline ran (the
                    // version it published stands; a retry publishes none)
                    // — unless the commit is this very call's, overlapping
                    // the later one: it answers what it committed, and its
                    // pipeline runs on.
                    let committed = match (self.as_committed(name, &id, &upload, latest), &ours) {
                        (Err(Error::UploadSuperseded { .. }), Some(_)) => Committed {
                            changed: upload.changed.unwrap_or(true),
                            artifact: upload.to_artifact(&self.layout),
                        },
                        (answer, _) => answer?,
                    };
                    return Ok((CommitOutcome::Committed(committed), ours));
                }
                UploadState::Verifying => {
                    // No checkpoint for longer than an invocation can run:
                    // its invocations gave up (they went to the on-failure
                    // destination). Ask again; duplicates are harmless.
                    if now() - upload.update_at > VERIFY_STALLED {
                        self.request_verification(name, &id).await?;
                    }
                    return Ok((
                        CommitOutcome::Verifying {
                            upload_id: id.as_str().to_owned(),
                            state: UploadState::Verifying.as_str(),
                        },
                        None,
                    ));
                }
                UploadState::Failed => {
                    return Err(Error::UploadMismatch(format!(
                        "verification failed: {}",
                        upload
                            .reason
                            .as_deref()
                            .unwrap_or("the bytes are not the declared ones")
                    )));
                }
                UploadState::Superseded => {
                    return Err(Error::UploadSuperseded {
                        name: name.to_string(),
                        upload_id: id.as_str().to_owned(),
                    });
                }
            }
            if upload.expires_at <= now().unix_timestamp() {
                return Err(id.not_found(name));
            }
            let head = head?;
            if upload.multipart.is_some() {
                let latest_item = read.latest.as_ref().map(|(_, item)| item);
                let (update_at, committed_at) = upload_items::latest_times(latest_item);
                let sha256 = latest_item.and_then(artifact_store::version_items::recorded_sha256);
                let latest_seen = crate::blob_rules::latest_seen(update_at, sha256, committed_at);
                // `None`: the key holds the declared bytes (verified or
                // checked by S3): committed below as a single PUT's are.
                match self
                    .commit_multipart(
                        name,
                        &id,
                        upload.clone(),
                        head,
                        super::multipart::Handover {
                            actor,
                            pipeline,
                            latest_seen,
                        },
                    )
                    .await
                {
                    Ok(Some(verifying)) => return Ok((verifying, None)),
                    Ok(None) => {}
                    // A racing commit of this upload moved it on meanwhile
                    // (handed it to verification, which may even have
                    // committed it): answered as it stands, as a retried
                    // commit is.
                    // Still pending but expired meanwhile (the hand-over
                    // is refused on expiry too): gone, as the loop's
                    // check of expiry answers.
                    Err(Error::ConcurrentModification(message)) => {
                        let moved = match self.upload_row(name, &id).await {
                            Ok(row) => {
                                row.state != UploadState::Pending
                                    || row.expires_at <= now().unix_timestamp()
                            }
                            // Gone (a purge took it): answered as gone.
                            Err(Error::UploadNotFound { .. }) => true,
                            Err(_) => false,
                        };
                        if moved {
                            continue;
                        }
                        return Err(Error::ConcurrentModification(message));
                    }
                    Err(e) => return Err(e),
                }
            } else {
                let head = head.ok_or_else(|| {
                    Error::UploadMismatch(
                        "no bytes were uploaded for this upload; PUT them to the URL start upload returned"
                            .into(),
                    )
                })?;
                if let Err(e) = blob_check(&head, &digest, upload.size) {
                    // A multipart blob the service verified holds them too.
                    let facts = stored_object(&head);
                    let verified = self.verified_blob(name, id.sha256()).await?;
                    if !matches!(
                        stored(Some(&facts), verified.as_ref(), id.sha256(), upload.size),
                        Stored::Holds
                    ) {
                        return Err(e);
                    }
                }
            }
            let from = UploadState::Pending;
            let by = Committer { actor, held, fuse };
            match self.try_commit(name, &id, read, by, from, attempt).await? {
                Attempt::Committed(committed, published) => {
                    let claimed = held.map(|held| held.claimed(published));
                    return Ok((CommitOutcome::Committed(committed), claimed));
                }
                Attempt::Again => {}
                Attempt::Unfused => fuse = false,
            }
        }
        Err(Error::ConcurrentModification(format!(
            "committing to {name} kept conflicting with other writers; retry"
        )))
    }

    /// The answer to a commit of an upload that is committed already: the
    /// first commit's, while LATEST is still its; superseded (409) after
    /// (also by a later commit of the same bytes: SPEC 4.1 refuses a
    /// superseded upload, whatever the bytes).
    fn as_committed(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        upload: &UploadRow,
        latest: Option<VersionRow>,
    ) -> Result<Committed> {
        match latest {
            Some(row) if row.upload_id.as_deref() == Some(id.as_str()) => Ok(Committed {
                changed: upload.changed.unwrap_or(true),
                artifact: row.to_artifact(&self.layout),
            }),
            _ => Err(Error::UploadSuperseded {
                name: name.to_string(),
                upload_id: id.as_str().to_owned(),
            }),
        }
    }

    /// Commits a multipart upload whose bytes `verify-upload` found to be
    /// the declared ones: the same transaction as a single PUT's commit,
    /// from `verifying`, plus the verified-blob row; only over a LATEST
    /// older than the upload's commit (else it ends `superseded`).
    pub(super) async fn commit_verified(
        &self,
        name: &ArtifactName,
        id: &UploadId,
    ) -> Result<VerifiedCommit> {
        for attempt in 0..MAX_ATTEMPTS {
            let read = self.upload_and_latest(name, id).await?;
            let Some(upload) = read.upload() else {
                return Ok(VerifiedCommit::Gone);
            };
            match upload.state {
                UploadState::Verifying => {}
                UploadState::Committed => {
                    let latest = read.live_latest().cloned();
                    return self
                        .as_committed(name, id, upload, latest)
                        .map(VerifiedCommit::Committed);
                }
                _ => return Ok(VerifiedCommit::Gone),
            }
            let latest_item = read.latest.as_ref().map(|(_, item)| item);
            let (update_at, committed_at_latest) = upload_items::latest_times(latest_item);
            let sha256 = latest_item.and_then(artifact_store::version_items::recorded_sha256);
            let seen = crate::blob_rules::latest_seen(update_at, sha256, committed_at_latest);
            let latest = crate::blob_rules::LatestNow {
                update_at,
                committed_at: committed_at_latest,
                by_library: read
                    .latest
                    .as_ref()
                    .is_some_and(|(row, _)| row.upload_id.is_none()),
                seen: &seen,
            };
            // (An upload handed over by a release before commits were
            // ordered carries no commit time: it commits as it used to.)
            if let Some(committed_at) = &upload.committed_at
                && !crate::blob_rules::verification_may_commit(
                    committed_at,
                    upload.latest_seen.as_deref(),
                    latest,
                )
            {
                return self.supersede(name, id).await;
            }
            let actor = upload.actor.clone();
            let from = UploadState::Verifying;
            let by = Committer {
                actor: &actor,
                held: None,
                fuse: false,
            };
            if let Attempt::Committed(committed, _) =
                self.try_commit(name, id, read, by, from, attempt).await?
            {
                return Ok(VerifiedCommit::Committed(committed));
            }
        }
        Err(Error::ConcurrentModification(format!(
            "committing to {name} kept conflicting with other writers"
        )))
    }

    /// The upload `verifying → superseded`: a later commit made LATEST.
    async fn supersede(&self, name: &ArtifactName, id: &UploadId) -> Result<VerifiedCommit> {
        let reason = "a later commit made LATEST before this upload was verified";
        if self.table.supersede_upload(name, id, reason).await? {
            Ok(VerifiedCommit::Superseded {
                reason: reason.to_owned(),
            })
        } else {
            // Moved on meanwhile (or purged): another step answers for it.
            Ok(VerifiedCommit::Gone)
        }
    }

    /// One attempt at the commit transaction of an upload in state `from`
    /// whose bytes were checked: `Again` when a concurrent writer won (read
    /// again and retry).
    ///
    /// A pending upload committed with a pipeline that publishes (`held`)
    /// also publishes in this transaction when LATEST changes (the number
    /// decided by [`crate::publish_rules::decide`] over LATEST as it will
    /// be): the version row, its index entries, the counter and the
    /// publish marker on the new LATEST, the purge fence down, and on the
    /// upload row the number it took (and the pipeline's answer when it
    /// moves no alias: nothing is left to run). Every condition of a
    /// separate publish holds in it: LATEST exactly as read, the number
    /// free, no purge, the bytes not reclaimed. When the number was taken
    /// (the library) or a purge runs, `Unfused`: the next attempt commits
    /// alone and the publish runs after it, as a separate call would.
    async fn try_commit(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        read: CommitRead,
        by: Committer<'_>,
        from: UploadState,
        attempt: u32,
    ) -> Result<Attempt> {
        let Committer { actor, held, fuse } = by;
        let now = now();
        let latest = read.live_latest().cloned();
        let read_at = read.at;
        let registered = read.registered;
        let latest_item = read.latest.map(|(_, item)| item);
        let Some((upload, mut upload_item)) = read.upload else {
            return Err(Error::internal("commit", "no upload row to commit"));
        };
        if let Some(held) = held {
            held.mark(&mut upload_item);
        }
        let unchanged = latest
            .as_ref()
            .is_some_and(|row| row.sha256 == upload.sha256 && row.location == Location::Blob);
        // A LATEST without a counter starts from the highest number a row
        // holds, never from 0 (numbers are never reused, SPEC 7.2): the
        // library's, or none while the name is registered (a purge deletes
        // LATEST first and the registry row last: one that stopped
        // part-way left versions). None and unregistered: a first commit.
        let counted = upload_items::latest_counter(latest_item.as_ref()).is_some();
        let first = latest_item.is_none() && !registered;
        let seed = if counted || unchanged || first {
            0
        } else {
            self.highest_version(name).await?
        };
        // A verification commits only over the LATEST its commit saw
        // (checked on the read; the conditions on LATEST as read keep it so
        // until the write). One handed over by an earlier release, which
        // recorded less of it, only over a LATEST older than its commit.
        let before = match from {
            UploadState::Verifying
                if !upload
                    .latest_seen
                    .as_deref()
                    .is_some_and(crate::blob_rules::seen_in_full) =>
            {
                upload.committed_at.clone()
            }
            _ => None,
        };
        let publish = held
            .filter(|_| fuse && from == UploadState::Pending && !unchanged)
            .filter(|_| upload.metadata.len() <= FUSED_MAX_METADATA)
            .and_then(|held| {
                let counter = upload_items::latest_counter(latest_item.as_ref()).unwrap_or(seed);
                let marker = upload_items::latest_marker(latest_item.as_ref());
                let becomes = crate::publish_rules::Latest {
                    deleted: false,
                    upload_id: Some(id.as_str()),
                    last_version: Some(counter),
                    sha256: &upload.sha256,
                    published_sha256: marker,
                };
                match crate::publish_rules::decide(&becomes, &held.mode(), None) {
                    crate::publish_rules::Decision::Number(n) => Version::number(n).ok().map(|_| n),
                    _ => None,
                }
            });
        let mut tx = Tx::new();
        let mut published = None;
        let mut publish_events = Vec::new();
        if let (Some(number), Some(held)) = (publish, held) {
            let version = Version::Number(number);
            let token = uuid::Uuid::new_v4().simple().to_string();
            let mut item = crate::rows::version_item(
                name,
                version,
                crate::rows::VersionBytes {
                    sha256: &upload.sha256,
                    size: Some(upload.size),
                    content_type: Some(&upload.content_type),
                    metadata: &upload.metadata,
                },
                actor,
                &token,
            );
            let answer = crate::model::PublishedArtifact {
                artifact: VersionRow::from_item(&item)?.to_artifact(&self.layout),
                created: true,
            };
            held.record_publish(&mut upload_item, number, &answer)?;
            publish_events = super::logged_write(None, &mut item);
            tx.push(Commit::Row, self.put_new(item)?);
            tx.push(Commit::Fence, self.no_purge_running(name)?);
            for entry in self.index_entries(name, version, &upload.metadata)? {
                tx.push(Commit::Index, entry);
            }
            published = Some(answer);
        }
        tx.push(
            Commit::Upload,
            self.finish_upload(upload_item, from, !unchanged, now)?,
        );
        tx.push(
            Commit::Bytes,
            self.not_condemned(name, id.sha256(), Some(read_at))?,
        );
        let (on_latest, mut events) = match (unchanged, &latest) {
            (true, Some(read)) => {
                self.latest_unchanged(name, &upload, read, before.as_deref(), now)?
            }
            (true, None) => {
                return Err(Error::internal(
                    "commit",
                    "bytes found unchanged on a LATEST that was not read",
                ));
            }
            (false, _) => {
                let fresh = FreshLatest {
                    seed,
                    published: publish,
                };
                self.latest_put(&upload, actor, latest_item, fresh, before.as_deref(), now)?
            }
        };
        tx.push(Commit::Latest, on_latest);
        // The commit's event, then the publish's.
        events.append(&mut publish_events);
        self.log_events(&mut tx, Commit::Log, name, &events)?;
        if from == UploadState::Verifying
            && let Some(version) = &upload.blob_version
        {
            let blob = VerifiedBlob {
                version: version.clone(),
                size: upload.size,
            };
            tx.push(
                Commit::Verified,
                upload_items::put_verified_blob(
                    &self.layout.table,
                    name,
                    &upload.sha256,
                    &blob,
                    id.as_str(),
                    now,
                )?,
            );
        }
        // The name is registered by the commit that created LATEST (or the
        // first one over a LATEST the library wrote); a purge removes both.
        if latest
            .as_ref()
            .is_none_or(|row| row.location != Location::Blob)
        {
            tx.push(
                Commit::Registry,
                upload_items::register_name(&self.layout.table, name)?,
            );
        }
        let token = format!("{}-{attempt}", &id.as_str()[..32]);
        match self.transact_tx(&tx, &token).await {
            Ok(()) => {
                let artifact = match (unchanged, latest) {
                    (true, Some(row)) => row.to_artifact(&self.layout),
                    _ => UploadRow {
                        update_at: now,
                        actor: actor.to_owned(),
                        ..upload
                    }
                    .to_artifact(&self.layout),
                };
                Ok(Attempt::Committed(
                    Committed {
                        artifact,
                        changed: !unchanged,
                    },
                    published,
                ))
            }
            Err(TransactFailure::Conditions(failed)) if failed.contains(&Commit::Bytes) => {
                Err(being_reclaimed(name))
            }
            // The number was taken while LATEST stayed as read (the
            // library, which keeps no counter, wrote that row) or a purge
            // runs: commit alone next time. (A racing commit changes LATEST
            // too: read again and fuse again; so does this very transaction
            // whose answer was lost, which the next read finds committed.)
            Err(TransactFailure::Conditions(failed))
                if (failed.contains(&Commit::Row) || failed.contains(&Commit::Fence))
                    && !failed.contains(&Commit::Latest) =>
            {
                Ok(Attempt::Unfused)
            }
            // The upload was committed or expired meanwhile, or LATEST
            // changed under an unchanged commit: read again.
            Err(TransactFailure::Conditions(_)) => Ok(Attempt::Again),
            Err(TransactFailure::Contention) => {
                super::backoff(attempt).await;
                Ok(Attempt::Again)
            }
            Err(TransactFailure::Failed(e)) => Err(e),
        }
    }

    /// The upload row and LATEST, strongly consistent, in one BatchGetItem,
    /// with the items as read (the commit writes them back whole).
    async fn upload_and_latest(&self, name: &ArtifactName, id: &UploadId) -> Result<CommitRead> {
        let at = now();
        let (upload, latest, registered) = self.table.upload_and_latest(name, id).await?;
        Ok(CommitRead {
            at,
            upload,
            latest,
            registered,
        })
    }

    /// The upload row `from → committed`, written back whole as it was read
    /// (a Put: DynamoDB evaluates no update expression); a pending one only
    /// while it has not expired (a verifying one was checked when
    /// verification began). The condition on the state also fails when the
    /// row is gone (a purge), so the Put never recreates it.
    fn finish_upload(
        &self,
        item: Item,
        from: UploadState,
        changed: bool,
        now: OffsetDateTime,
    ) -> Result<TxItem> {
        upload_items::finish_upload(&self.layout.table, item, from, changed, now)
    }

    /// LATEST holds the upload's bytes already: only the upload is recorded
    /// on it, and only if that still holds.
    fn latest_unchanged(
        &self,
        name: &ArtifactName,
        upload: &UploadRow,
        read: &VersionRow,
        before: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(TxItem, Vec<ChangeEvent>)> {
        upload_items::latest_unchanged(&self.layout.table, name, upload, read, before, now)
    }

    /// LATEST pointed at the upload's blob: the row as read (`latest`, absent
    /// when there is none) written back whole with the upload's content (a
    /// Put: DynamoDB evaluates no update expression, and the row's other
    /// attributes are kept as they were). Bookkeeping it lacks is added: the
    /// version counter (from `seed`), the publish marker (empty: never
    /// published), the epoch.
    ///
    /// Concurrent commits overwrite each other's content (the last one wins,
    /// as with any write of LATEST), but nothing else a writer changed since
    /// the read may be lost, so the Put is conditional on what other writers
    /// change being as read: the row's existence (a purge deletes it, a
    /// first commit creates it), the version counter and publish marker
    /// (publish), the epoch (publish after a purge). Alias moves only check
    /// LATEST, adoption only swaps the location of the same bytes (which
    /// the commit replaces). The library rewrites the whole row, which drops the
    /// bookkeeping, so its writes fail the condition too, unless the row
    /// read was the library's as well (then the last write wins, as above).
    fn latest_put(
        &self,
        upload: &UploadRow,
        actor: &str,
        latest: Option<Item>,
        fresh: FreshLatest,
        before: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(TxItem, Vec<ChangeEvent>)> {
        upload_items::latest_put(
            &self.layout.table,
            upload,
            actor,
            latest,
            fresh.seed,
            fresh.published,
            before,
            now,
        )
    }
}

/// What a verified commit did.
// One per request or step, moved once: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum VerifiedCommit {
    Committed(Committed),
    /// A later commit made LATEST first: this upload never will.
    Superseded {
        reason: String,
    },
    /// The upload is gone (purged) or no longer verifying.
    Gone,
}

/// What a commit read in its first round trip: the upload row and LATEST
/// (each decoded, and the item as read), and when.
struct CommitRead {
    at: OffsetDateTime,
    upload: Option<(UploadRow, Item)>,
    latest: Option<(VersionRow, Item)>,
    /// The artifact's registry row exists.
    registered: bool,
}

impl CommitRead {
    fn upload(&self) -> Option<&UploadRow> {
        self.upload.as_ref().map(|(row, _)| row)
    }

    /// LATEST when it is live.
    fn live_latest(&self) -> Option<&VersionRow> {
        self.latest
            .as_ref()
            .map(|(row, _)| row)
            .filter(|row| row.is_live())
    }
}

/// A verification that has not checkpointed for this long has stopped (a
/// `verify-upload` invocation runs at most 15 minutes).
pub(super) const VERIFY_STALLED: time::Duration = time::Duration::minutes(16);

/// How far apart the clocks of two functions may be, at most.
const CLOCK_MARGIN: time::Duration = time::Duration::seconds(1);

pub(super) fn being_reclaimed(name: &ArtifactName) -> Error {
    Error::ConcurrentModification(format!(
        "retention is deleting these bytes of {name} right now; start the upload again"
    ))
}

/// Whether S3's record of a blob is exactly the declared bytes.
fn blob_check(head: &Head, digest: &[u8], size: u64) -> Result<()> {
    match head.checksum_sha256() {
        Some(got) if got == STANDARD.encode(digest) => {}
        None => {
            return Err(Error::UploadMismatch(
                "S3 recorded no SHA-256 checksum for the upload; PUT it with the returned headers"
                    .into(),
            ));
        }
        _ => {
            return Err(Error::UploadMismatch(
                "the uploaded bytes do not match the declared sha256".into(),
            ));
        }
    }
    if head.content_length() != i64::try_from(size).ok() {
        return Err(Error::UploadMismatch(format!(
            "uploaded {} bytes, declared {size}",
            head.content_length().unwrap_or(-1)
        )));
    }
    Ok(())
}

/// Who commits, and the claim on the pipeline's run their commit takes
/// along (see `claim::HeldClaim`); `fuse`: whether the commit may
/// publish in its own transaction.
struct Committer<'a> {
    actor: &'a str,
    held: Option<&'a HeldClaim>,
    fuse: bool,
}

/// What one commit attempt did.
// One per attempt, moved once: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Attempt {
    /// Committed; with the version, when it published in the transaction.
    Committed(Committed, Option<crate::model::PublishedArtifact>),
    /// A concurrent writer won: read again.
    Again,
    /// Read again and commit without publishing in the transaction.
    Unfused,
}

/// The counter a new LATEST starts from when the one read has none
/// (`seed`), and the number published in the commit's transaction.
struct FreshLatest {
    seed: u32,
    published: Option<u32>,
}

/// A commit publishes in its own transaction only while its members stay
/// well within DynamoDB's 100 per transaction (one index entry per
/// metadata entry).
const FUSED_MAX_METADATA: usize = 64;

/// Whether [`Repository::record_upload`] wrote the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recorded {
    New,
    Existing,
}

/// The members of a start upload's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// No purge of the artifact under way.
    Fence,
    /// The bytes not being reclaimed.
    Bytes,
    /// The upload row, new.
    Row,
}

/// The members of the transaction of a start upload that commits on
/// LATEST at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// No purge of the artifact under way.
    Fence,
    /// The bytes not reclaimed since LATEST was read.
    Bytes,
    /// The upload row, new, committed.
    Row,
    /// LATEST still holding the bytes.
    Latest,
    /// The artifact's event log (no condition).
    Log,
}

/// The members of a commit's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// The upload row, in the state read.
    Upload,
    /// The bytes not reclaimed since they were read.
    Bytes,
    /// LATEST, as read.
    Latest,
    /// The verified-blob row (a verified multipart upload).
    Verified,
    /// The name's registry entry.
    Registry,
    /// The version row published in the commit's transaction.
    Row,
    /// No purge under way (a commit that publishes).
    Fence,
    /// The version's search index entries.
    Index,
    /// The artifact's event log (no condition).
    Log,
}
