//! `verify-upload`: the whole-object SHA-256 of a completed multipart upload,
//! computed from S3 (bytes never pass through an API request), checkpointed
//! across invocations, then the same commit as a single PUT's — or `failed`,
//! with the bytes deleted and LATEST untouched.
//!
//! Ranged GETs of the pinned object version run in parallel and feed one
//! SHA-256 in order. An invocation stops before its deadline (or after
//! `VERIFY_BUDGET_BYTES`), saves the hash state and the offset on the upload
//! row (conditional on the offset it started from, so of two duplicate
//! invocations only one moves on) and asks for the next invocation.

use std::time::Instant;

use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::Repository;
use super::uploads::VerifiedCommit;
use crate::error::{Error, Result};
use crate::layout::now;
use crate::model::Committed;
use crate::names::ArtifactName;
use crate::names::UploadId;
use crate::rows::{UploadRow, UploadState};
use artifact_store::blob_objects;

/// Bytes per ranged GET.
pub const RANGE_BYTES: u64 = 8 * 1024 * 1024;
/// Ranged GETs in flight.
pub const PARALLEL_RANGES: usize = 4;

/// Who runs the verification after a multipart commit.
#[derive(Debug, Clone, Default)]
pub enum Verifier {
    /// A task of this process (the local server, tests): one step after
    /// the other until done.
    #[default]
    InProcess,
    /// Nobody: the caller runs [`Repository::verify_upload_step`] itself
    /// (tests of checkpointing).
    Deferred,
    /// A queue its receiver drains as Lambda runs asynchronous invocations
    /// (the randomized checker: retries, the on-failure queue).
    Queue(tokio::sync::mpsc::UnboundedSender<VerifyRequest>),
    /// The `verify-upload` Lambda function, invoked asynchronously.
    Lambda {
        client: aws_sdk_lambda::Client,
        function: String,
    },
}

/// What one verification step did.
#[derive(Debug, Clone, PartialEq, Eq)]
// One per request or step, moved once: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum VerifyStep {
    /// Checkpointed after this many bytes; another step must follow.
    Continue { verified_bytes: u64 },
    /// The bytes are the declared ones: committed as LATEST.
    Committed(Committed),
    /// The bytes are not the declared ones: the upload failed.
    Failed { reason: String },
    /// The bytes are the declared ones, but a later commit made LATEST
    /// first: the upload never becomes LATEST (SPEC 7.11).
    Superseded { reason: String },
    /// Nothing to do: the upload is not being verified (any more), or
    /// another invocation moved it on.
    Idle,
}

/// The event `verify-upload` is invoked with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifyRequest {
    pub name: String,
    pub upload_id: String,
}

impl Repository {
    /// Who runs verifications for this repository.
    pub fn with_verifier(mut self, verifier: Verifier) -> Self {
        self.verifier = verifier;
        self
    }

    /// Asks for the verification of a committed multipart upload to run (or
    /// go on): an asynchronous Lambda invocation, or a task of this process.
    pub async fn request_verification(&self, name: &ArtifactName, id: &UploadId) -> Result<()> {
        match &self.verifier {
            Verifier::Deferred => Ok(()),
            Verifier::InProcess => {
                let (repo, name, id) = (self.clone(), name.clone(), id.as_str().to_owned());
                tokio::spawn(async move {
                    loop {
                        match repo.verify_upload_step(&name, &id, None).await {
                            Ok(VerifyStep::Continue { .. }) => continue,
                            Ok(_) => break,
                            Err(e) => {
                                tracing::error!(error = %e, source = ?std::error::Error::source(&e),
                                    "verification of upload {id} of {name} failed");
                                break;
                            }
                        }
                    }
                });
                Ok(())
            }
            Verifier::Queue(queue) => queue
                .send(VerifyRequest {
                    name: name.to_string(),
                    upload_id: id.as_str().to_owned(),
                })
                .map_err(|e| Error::internal("verify queue", e.to_string())),
            Verifier::Lambda { client, function } => {
                let payload = serde_json::to_vec(&VerifyRequest {
                    name: name.to_string(),
                    upload_id: id.as_str().to_owned(),
                })
                .map_err(|e| Error::internal("verify request", e))?;
                client
                    .invoke()
                    .function_name(function)
                    .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
                    .payload(aws_sdk_lambda::primitives::Blob::new(payload))
                    .send()
                    .await
                    .map_err(|e| crate::sdk_error::upstream("Invoke", e))?;
                Ok(())
            }
        }
    }

    /// One invocation's worth of verification of `upload_id`: hashes from
    /// the checkpoint until the object's end, `deadline`, or the byte
    /// budget, whichever comes first. Idempotent: a duplicate or late
    /// invocation finds nothing to do. On [`VerifyStep::Continue`] the
    /// caller asks for the next step ([`Self::request_verification`]).
    pub async fn verify_upload_step(
        &self,
        name: &ArtifactName,
        upload_id: &str,
        deadline: Option<Instant>,
    ) -> Result<VerifyStep> {
        let id: UploadId = upload_id.parse()?;
        let upload = match self.upload_row(name, &id).await {
            Ok(upload) => upload,
            // Purged meanwhile: nothing to verify.
            Err(Error::UploadNotFound { .. }) => return Ok(VerifyStep::Idle),
            Err(e) => return Err(e),
        };
        if upload.state == UploadState::Committed {
            // Committed by an earlier step whose pipeline did not finish.
            self.pipeline_of(name, &id, &upload).await?;
        }
        if upload.state != UploadState::Verifying {
            return Ok(VerifyStep::Idle);
        }
        let Some(version) = upload.blob_version.clone() else {
            return Err(Error::internal(
                "verify",
                "no object version to verify".to_owned(),
            ));
        };
        let (mut hasher, start) = restore(&upload);
        let stop = upload
            .size
            .min(start.saturating_add(self.verify_budget_bytes.max(RANGE_BYTES)));
        let blob_key = self.layout.blob_key(name, &upload.sha256);
        let ranges = (start..stop)
            .step_by(RANGE_BYTES as usize)
            .map(|from| (from, (from + RANGE_BYTES).min(stop)));
        let mut chunks = Box::pin(
            futures::stream::iter(ranges)
                .take_while(|_| {
                    let in_time = deadline.is_none_or(|d| Instant::now() < d);
                    async move { in_time }
                })
                .map(|(from, to)| self.get_range(&blob_key, &version, from, to))
                .buffered(PARALLEL_RANGES),
        );
        let mut offset = start;
        let mut short = false;
        // An object longer than declared whose first bytes hash right is
        // not those bytes: a completion that never went through this
        // upload's part checks (another's object, verified as found).
        let mut longer = None;
        while let Some(chunk) = chunks.next().await {
            let read = chunk?;
            if let Some(len) = read.object_len.filter(|len| *len > upload.size) {
                longer = Some(len);
                break;
            }
            hasher.update(&read.bytes);
            offset += read.bytes.len() as u64;
            if (read.bytes.len() as u64) < read.expected {
                short = true;
                break;
            }
        }
        drop(chunks);
        if offset < upload.size && !short && longer.is_none() {
            return self.checkpoint(name, &id, &upload, offset, &hasher).await;
        }
        let digest = hex::encode(hasher.finalize());
        if let Some(len) = longer {
            let reason = format!(
                "the uploaded object holds {len} bytes, not the {} declared",
                upload.size
            );
            return self
                .fail_upload(name, &id, &version, upload.blob_owned, &reason)
                .await;
        }
        if !short && digest == upload.sha256 {
            return Ok(match self.commit_verified(name, &id).await? {
                VerifiedCommit::Committed(committed) => {
                    self.pipeline_of(name, &id, &upload).await?;
                    VerifyStep::Committed(committed)
                }
                VerifiedCommit::Superseded { reason } => VerifyStep::Superseded { reason },
                VerifiedCommit::Gone => VerifyStep::Idle,
            });
        }
        let reason = if short {
            format!(
                "the uploaded object holds fewer bytes than the {} declared, or is gone",
                upload.size
            )
        } else {
            format!(
                "the uploaded bytes have SHA-256 {digest}, not the declared {}",
                upload.sha256
            )
        };
        self.fail_upload(name, &id, &version, upload.blob_owned, &reason)
            .await
    }

    /// Runs the pipeline a committed upload carries, unless it ran.
    async fn pipeline_of(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        upload: &UploadRow,
    ) -> Result<()> {
        let pipeline = upload
            .pipeline
            .as_deref()
            .and_then(crate::model::Pipeline::from_json);
        match pipeline {
            Some(pipeline) if upload.pipeline_result.is_none() => {
                match self
                    .run_pipeline_once(name, id, &upload.actor, &pipeline, None)
                    .await
                {
                    // Recorded on the upload row (its state shows it).
                    Ok(_) => Ok(()),
                    Err(e) if e.to_stored().is_some() => Ok(()),
                    Err(e) => Err(e),
                }
            }
            _ => Ok(()),
        }
    }

    /// `[from, to)` of object version `version`: the expected length and
    /// the bytes S3 sent (fewer when the object is shorter).
    async fn get_range(
        &self,
        key: &str,
        version: &str,
        from: u64,
        to: u64,
    ) -> Result<blob_objects::RangeRead> {
        blob_objects::get_range(&self.s3, &self.layout.bucket, key, version, from, to).await
    }

    /// Saves the progress (conditional on the offset this step started
    /// from); whoever runs the steps asks for the next one.
    async fn checkpoint(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        upload: &UploadRow,
        offset: u64,
        hasher: &Sha256,
    ) -> Result<VerifyStep> {
        let state = crate::hash_state::save(hasher);
        let now = now();
        let expires_at = (now + self.upload_expires).unix_timestamp();
        let saved = self
            .table
            .checkpoint_upload_verification(
                name,
                id,
                upload.verified_bytes,
                offset,
                state,
                expires_at,
                now,
            )
            .await?;
        Ok(if saved {
            VerifyStep::Continue {
                verified_bytes: offset,
            }
        } else {
            VerifyStep::Idle
        })
    }

    /// The object version deleted when this upload wrote it (`owned`: bytes
    /// that are not their key's SHA-256 are garbage in a content-addressed
    /// store, and no row references an unverified object), then the upload
    /// `verifying → failed` with `reason`. An object another upload (or
    /// nobody known) wrote is never deleted here (SPEC 7.15). In this
    /// order, an interruption between the two leaves the upload verifying:
    /// the next attempt finds the object gone and fails it then.
    async fn fail_upload(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        version: &str,
        owned: bool,
        reason: &str,
    ) -> Result<VerifyStep> {
        if owned {
            let key = self.layout.blob_key(name, id.sha256());
            blob_objects::delete_version(&self.s3, &self.layout.bucket, key, version).await?;
        }
        if !self
            .table
            .fail_upload_verification(name, id, version, reason)
            .await?
        {
            return Ok(VerifyStep::Idle);
        }
        Ok(VerifyStep::Failed {
            reason: reason.to_owned(),
        })
    }
}

/// The hasher and offset to go on from: the row's checkpoint, or the start
/// when there is none (or it is of another format).
fn restore(upload: &UploadRow) -> (Sha256, u64) {
    let restored = upload
        .hash_state
        .as_deref()
        .and_then(crate::hash_state::restore);
    match restored {
        Some(hasher) if upload.verified_bytes > 0 => (hasher, upload.verified_bytes),
        _ => (Sha256::new(), 0),
    }
}
