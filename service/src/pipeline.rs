//! One request for a pipeline (SPEC 4.1, v3): a commit that also publishes
//! the new LATEST and moves an alias to the new version, answered together;
//! a start upload with `commit` that commits at once when the artifact
//! holds the bytes.
//!
//! Each step keeps every guarantee of the separate call (the same
//! conditional writes: purge fence, numbering, history entry, `If-Match`).
//! The publish of a commit that changes LATEST rides on the commit's own
//! transaction (`uploads::try_commit`), with the pipeline's claim and,
//! when no alias moves, its answer: a commit with `publish` costs what a
//! commit does.
//! The alias's preconditions are checked before anything is written, so a
//! refused move leaves nothing half-done; a move raced by another writer
//! after that check is refused after the publish (the commit and the
//! version stand; the answer says so). A multipart upload is committed by
//! its verification: the pipeline is stored on its row and run by the
//! verification once committed (or by a retried commit), its outcome shown
//! in the upload's state.

use super::Repository;
use crate::error::{Error, Result};
use crate::model::{
    Alias, AliasTarget, ChangeRequest, CommitOutcome, Pipeline, PipelineCommitted, PipelineOutcome,
    Precondition, PublishedArtifact, StartOutcome, UploadRequest,
};
use crate::names::ArtifactName;
use crate::names::UploadId;
use artifact_store::claim::{
    self, ClaimAttempt, ClaimSeen, Claimed, HeldClaim, carries_claim, recorded_answer,
};
use artifact_store::tx::TxItem;

impl Repository {
    /// Commits `upload_id`, then runs `pipeline` (publish, alias move).
    /// AWS calls: the commit's (with a GetItem of the alias beside its
    /// first reads, when one moves), then the publish's and the alias
    /// move's.
    pub async fn commit_pipeline(
        &self,
        name: &ArtifactName,
        upload_id: &str,
        actor: &str,
        pipeline: &Pipeline,
        mut allowed: super::Allowed,
    ) -> Result<PipelineOutcome> {
        let held = HeldClaim::of(pipeline);
        // The alias check goes beside the commit's first reads, folded into
        // what the commit waits for before it writes: a refused move
        // writes nothing, at no round trip of its own.
        let (heard, decision) = tokio::sync::oneshot::channel();
        let mut gate = super::Allowed::when(decision);
        let decide = async {
            let (authorised, checked) =
                tokio::join!(allowed.wait(), self.check_pipeline(name, pipeline));
            let _ = heard.send(authorised.is_ok() && checked.is_ok());
            (authorised, checked)
        };
        let ((authorised, checked), first) = tokio::join!(
            decide,
            self.commit_with(
                name,
                upload_id,
                actor,
                Some(pipeline),
                held.as_ref(),
                &mut gate,
            )
        );
        authorised?;
        let committed = match checked {
            Ok(()) => first?,
            // Refused before it wrote; unless this is a retry whose run
            // moved the alias itself: then it answers as the first did.
            Err(refused) => {
                self.unless_it_ran(name, &upload_id.parse()?, refused)
                    .await?;
                self.commit_with(
                    name,
                    upload_id,
                    actor,
                    Some(pipeline),
                    held.as_ref(),
                    &mut super::Allowed::already(),
                )
                .await?
            }
        };
        match committed {
            (CommitOutcome::Verifying { upload_id, state }, _) => {
                Ok(PipelineOutcome::Verifying { upload_id, state })
            }
            (CommitOutcome::Committed(committed), claimed) => {
                let id: UploadId = upload_id.parse()?;
                let held = held.as_ref().zip(claimed);
                let (published, alias) = self
                    .run_pipeline_once(name, &id, actor, pipeline, held)
                    .await?;
                Ok(PipelineOutcome::Committed(Box::new(PipelineCommitted {
                    committed,
                    published,
                    alias,
                })))
            }
        }
    }

    /// Starts an upload; when the artifact holds the bytes (`exists`),
    /// commits it at once with `pipeline`: an unchanged push is one request.
    ///
    /// Nothing is written before `allowed` (the caller's authorisation)
    /// says yes; the reads go beside it. Round trip 1: `allowed` ∥ GetItem
    /// of LATEST (∥ the alias, when the move has a weight or
    /// `if_revision`). When LATEST holds exactly the declared bytes, round
    /// trip 2 is the one transaction of `commit_on_latest` (then the
    /// pipeline's calls): 2 AWS calls for an unchanged push without a
    /// pipeline. Otherwise the ordinary start (HeadObject ∥
    /// TransactWriteItems), and the commit when the bytes exist.
    pub async fn start_and_commit(
        &self,
        name: &ArtifactName,
        request: UploadRequest,
        actor: &str,
        pipeline: &Pipeline,
        mut allowed: super::Allowed,
    ) -> Result<StartOutcome> {
        let declared = request.clone().validate()?;
        crate::limits::plan(declared.size, declared.part_size)?;
        let read_at = crate::layout::now();
        let (allowed_now, checked, latest) = tokio::join!(
            allowed.wait(),
            self.check_pipeline(name, pipeline),
            self.get_row(name, crate::names::Version::Latest)
        );
        allowed_now?;
        if let Err(refused) = checked {
            match request.key.as_deref() {
                // A client's retry (same `Idempotency-Key`) names the
                // upload the first request started.
                Some(key) => {
                    let id =
                        UploadId::with_nonce(&super::request_token(Some(key)), &declared.sha256)?;
                    self.unless_it_ran(name, &id, refused).await?;
                }
                None => return Err(refused),
            }
        }
        let on_latest = latest?.filter(|row| {
            crate::blob_rules::commits_on_latest(
                &crate::blob_rules::LatestBytes {
                    live: row.is_live(),
                    in_blob: row.location == crate::rows::Location::Blob,
                    sha256: &row.sha256,
                    size: row.size,
                },
                &declared.sha256,
                declared.size,
            )
        });
        let held = HeldClaim::of(pipeline);
        if let Some(latest) = on_latest
            && let Some((id, committed, claimed)) = self
                .commit_on_latest(name, &declared, actor, &latest, read_at, held.as_ref())
                .await?
        {
            let held = held
                .as_ref()
                .filter(|_| claimed)
                .map(|h| (h, h.claimed(None)));
            return self
                .started_committed(name, id, actor, pipeline, committed, held)
                .await;
        }
        let ticket = self.create_upload(name, request, actor).await?;
        if !ticket.exists {
            return Ok(StartOutcome::Ticket(ticket));
        }
        match self
            .commit_with(
                name,
                &ticket.upload_id,
                actor,
                Some(pipeline),
                held.as_ref(),
                &mut allowed,
            )
            .await?
        {
            (CommitOutcome::Committed(committed), claimed) => {
                let id: UploadId = ticket.upload_id.parse()?;
                let held = held.as_ref().zip(claimed);
                self.started_committed(name, id, actor, pipeline, committed, held)
                    .await
            }
            // Bytes that exist are committed at once, never verified.
            (CommitOutcome::Verifying { .. }, _) => Err(Error::internal(
                "start upload",
                "bytes that exist were handed to verification".to_owned(),
            )),
        }
    }

    /// `refused` (the pipeline's alias check failed), unless the pipeline
    /// of upload `id` ran or runs: then this is a retry, the alias moved
    /// since is its own doing, and the recorded answer is given.
    async fn unless_it_ran(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        refused: Error,
    ) -> Result<()> {
        match self.upload_item(name, id).await? {
            Some(item) if carries_claim(&item) => Ok(()),
            // Handed over already with its pipeline (a multipart upload
            // verifying, the pipeline stored for after): the retry answers
            // as the first commit did, whatever the alias looks like now.
            Some(item)
                if crate::rows::UploadRow::from_item(name, &item).is_ok_and(|row| {
                    row.state == crate::rows::UploadState::Verifying && row.pipeline.is_some()
                }) =>
            {
                Ok(())
            }
            _ => Err(refused),
        }
    }

    /// The answer of a start upload committed at once: the pipeline run.
    async fn started_committed(
        &self,
        name: &ArtifactName,
        id: UploadId,
        actor: &str,
        pipeline: &Pipeline,
        committed: crate::model::Committed,
        held: Option<(&HeldClaim, Claimed)>,
    ) -> Result<StartOutcome> {
        let (published, alias) = self
            .run_pipeline_once(name, &id, actor, pipeline, held)
            .await?;
        Ok(StartOutcome::Committed {
            upload_id: id.as_str().to_owned(),
            state: "committed",
            exists: true,
            committed: Box::new(PipelineCommitted {
                committed,
                published,
                alias,
            }),
        })
    }

    /// Refuses, before anything is written, an alias move that cannot
    /// happen: the alias moved from `if_revision`, a rollout holds it, a
    /// weight with no alias to keep the primary of, or a name this service
    /// cannot create (`LATEST`) for an alias that does not exist. AWS
    /// calls: 1 GetItem of the alias (none without an alias move).
    async fn check_pipeline(&self, name: &ArtifactName, pipeline: &Pipeline) -> Result<()> {
        let Some(m) = &pipeline.alias else {
            return Ok(());
        };
        if !pipeline.publish {
            return Err(Error::InvalidRequest(
                "alias needs publish: true (the alias moves to the version published)".into(),
            ));
        }
        let creatable = m.name.check_new();
        let Some(row) = self.find_alias_row(name, &m.name).await? else {
            // A name only the library allows: moved when it exists, never
            // created; a weight or a revision needs the alias.
            creatable?;
            if m.weight.is_none() && m.if_revision.is_none() {
                return Ok(());
            }
            return Err(Error::AliasNotFound {
                name: name.to_string(),
                alias: m.name.to_string(),
            });
        };
        // A rollout holds it: the move would be refused after the commit
        // and the publish (a pipeline cannot cancel a rollout).
        if let Some(id) = &row.rollout {
            return Err(Error::RolloutInProgress {
                name: name.to_string(),
                alias: m.name.to_string(),
                id: id.clone(),
            });
        }
        let current = row.to_alias(&self.layout);
        match m.if_revision {
            Some(r) if r != current.revision => Err(Error::AliasModified {
                name: name.to_string(),
                alias: m.name.to_string(),
                detail: format!("is at revision {}, not {r}", current.revision),
            }),
            _ => Ok(()),
        }
    }

    /// Runs the pipeline of committed upload `id` once, whoever asks (the
    /// commit, its retries, each verification invocation): the first run
    /// claims it on the upload row, the others wait for and answer what it
    /// recorded (errors included). A run cut short (its claim older than
    /// [`CLAIM_LEASE_SECS`], or released after an AWS failure) is taken
    /// over idempotently: the version an earlier run published is recorded
    /// on the upload row by the transaction that published it (the
    /// commit's, or the publish's, which lands only under the run's claim),
    /// so the run that takes over uses it or publishes as asked (`force`
    /// included); an alias already at the target is not moved again. AWS calls: UpdateItem (claim), the pipeline's,
    /// UpdateItem (record); none when the commit's own transaction
    /// claimed it (`held`), the alias move's and the record's when it also
    /// published, none at all when it recorded the answer too.
    pub(super) async fn run_pipeline_once(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        actor: &str,
        pipeline: &Pipeline,
        held: Option<(&HeldClaim, Claimed)>,
    ) -> Result<PipelineAnswer> {
        if !pipeline.publish {
            return Ok((None, None));
        }
        // Claimed by the commit's own transaction: ours, a first run.
        if let Some((held, claimed)) = held {
            let (published, recorded) = claimed.into_parts();
            if let Some(recorded) = recorded {
                return replay(&recorded);
            }
            let run = Run {
                token: held.token(),
                takeover: false,
                published,
            };
            return self.run_claimed(name, id, actor, pipeline, run).await;
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut waits = 0;
        let (takeover, published) = loop {
            match self.claim_pipeline(name, id, &token, pipeline).await? {
                Claim::Ours {
                    takeover,
                    published,
                } => break (takeover, published),
                Claim::Done(stored) => return replay(&stored),
                Claim::Running if waits < CLAIM_WAITS => {
                    waits += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100 * waits)).await;
                }
                Claim::Running => {
                    return Err(Error::ConcurrentModification(format!(
                        "the pipeline of upload {} is running in another request; retry for its answer",
                        id.as_str()
                    )));
                }
            }
        };
        // A run cut short after its commit (or its publish) published:
        // that version is the pipeline's (LATEST may be a later commit's).
        // Known from the row the claim replaced, also when that row shows
        // our own claim (the SDK's retry of a claim whose answer was lost).
        let published = match published {
            Some(n) => self.version_published(name, n).await?,
            None => None,
        };
        let run = Run {
            token: &token,
            takeover: takeover || published.is_some(),
            published,
        };
        self.run_claimed(name, id, actor, pipeline, run).await
    }

    /// Runs the pipeline under the claim `token` holds and records what
    /// it did (see [`Self::run_pipeline_once`]).
    async fn run_claimed(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        actor: &str,
        pipeline: &Pipeline,
        run: Run<'_>,
    ) -> Result<PipelineAnswer> {
        let token = run.token;
        let outcome = match self.run_pipeline(name, actor, pipeline, id, run).await {
            // Recorded by the alias move's own transaction.
            Ok((answer, true)) => return Ok(answer),
            Ok((answer, false)) => Ok(answer),
            Err(e) => Err(e),
        };
        let stored = match &outcome {
            Ok((published, alias)) => serde_json::json!({"published": published, "alias": alias}),
            Err(e) => match e.to_stored() {
                Some(error) => serde_json::json!({ "error": error }),
                None => {
                    // Transient: the next run takes over at once (and idempotently).
                    let _ = self.release_pipeline(name, id, token).await;
                    return outcome;
                }
            },
        };
        if self.record_pipeline(name, id, token, &stored).await? {
            return outcome;
        }
        // Taken over meanwhile: the answer is what the run that recorded said.
        match self.upload_row(name, id).await {
            Ok(row) => match row.pipeline_result.as_deref().map(serde_json::from_str) {
                Some(Ok(recorded)) => replay(&recorded),
                _ => outcome,
            },
            Err(_) => outcome,
        }
    }

    /// Takes the pipeline run of upload `id` (see [`Self::run_pipeline_once`]).
    async fn claim_pipeline(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        token: &str,
        pipeline: &Pipeline,
    ) -> Result<Claim> {
        let old = match self
            .table
            .claim_pipeline(name, id, token, pipeline, CLAIM_LEASE_SECS)
            .await?
        {
            ClaimAttempt::Ours {
                takeover,
                published,
            } => {
                return Ok(Claim::Ours {
                    takeover,
                    published,
                });
            }
            ClaimAttempt::Refused(old) => old,
        };
        // Emulators that do not return the old item: read it.
        let old = match old {
            Some(old) => Some(old),
            None => self.upload_item(name, id).await?,
        };
        let Some(old) = old else {
            return Err(id.not_found(name));
        };
        Ok(match claim::claim_seen(&old, token)? {
            ClaimSeen::Recorded(stored) => Claim::Done(stored),
            ClaimSeen::Ours => Claim::Ours {
                takeover: false,
                published: claim::published_number(&old),
            },
            ClaimSeen::Other => Claim::Running,
        })
    }

    /// Records what the run holding `token` did; false when another run
    /// took over and recorded first (or the upload was purged).
    fn record_pipeline(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        token: &str,
        stored: &serde_json::Value,
    ) -> impl std::future::Future<Output = Result<bool>> {
        self.table.record_pipeline(name, id, token, stored)
    }

    /// Lets the next run take over at once (its claim time in the past).
    fn release_pipeline(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        token: &str,
    ) -> impl std::future::Future<Output = Result<()>> {
        self.table.release_pipeline(name, id, token)
    }

    /// The publish and the alias move of `pipeline`, after the commit of
    /// upload `id` (the publish only when the commit did not publish).
    async fn run_pipeline(
        &self,
        name: &ArtifactName,
        actor: &str,
        pipeline: &Pipeline,
        id: &UploadId,
        run: Run<'_>,
    ) -> Result<(PipelineAnswer, bool)> {
        let takeover = run.takeover;
        // A run taken over knows what its predecessor published (the
        // number is recorded on the upload row by the very transaction
        // that took it, which a run without its claim cannot land): `force`
        // holds as asked.
        let published = match run.published {
            Some(published) => published,
            None => {
                self.publish_for(name, pipeline.force, actor, id, run.token)
                    .await?
            }
        };
        let version = published.artifact.version;
        let Some(m) = &pipeline.alias else {
            return Ok(((Some(to_value(&published)?), None), false));
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = match (m.weight.is_some() || takeover)
                .then_some(())
                .map(|()| self.get_alias(name, &m.name))
            {
                None => None,
                Some(read) => match read.await {
                    Ok(current) => Some(current),
                    Err(Error::AliasNotFound { .. }) if m.weight.is_none() => None,
                    Err(e) => return Err(e),
                },
            };
            let target = pipeline_target(version, m.weight, current.as_ref());
            if let Some(current) = current.as_ref().filter(|c| {
                takeover
                    && c.version == target.version
                    && c.secondary_version.zip(c.secondary_version_weight) == target.secondary
            }) {
                return Ok((
                    (Some(to_value(&published)?), Some(to_value(current)?)),
                    false,
                ));
            }
            // A canary keeps the primary it read: the move holds only while
            // the alias is as read (a promote meanwhile is never undone);
            // the caller's own `if_revision` wins.
            // (A row the library wrote is at revision 0 whatever it holds:
            // when it was written tells it apart.)
            let implied = m.if_revision.is_none() && m.weight.is_some() && current.is_some();
            let precondition = match (m.if_revision, m.weight, current.as_ref()) {
                (Some(r), _, _) => Precondition::Revision(r),
                (None, Some(_), Some(c)) => {
                    Precondition::as_read((c.revision > 0).then_some(c.revision), c.update_at)
                }
                _ => Precondition::None,
            };
            let change = ChangeRequest {
                actor: actor.to_owned(),
                message: m.message.clone(),
                precondition,
                cancel_rollout: false,
                key: None,
            };
            let record = |row: &crate::rows::AliasRow| {
                let answer = recorded_answer(&published, Some(&row.to_alias(&self.layout)));
                self.record_member(name, id, run.token, &answer)
            };
            let link = super::aliases::Link::Recorded { record: &record };
            let moved = match self
                .change_alias_linked(
                    name,
                    &m.name,
                    super::aliases::Intent::Put(target),
                    &change,
                    &link,
                    // The commit waited for the authorisation.
                    &mut super::Allowed::already(),
                )
                .await
            {
                Ok(moved) => moved,
                // Moved since it was read: read it again.
                Err(Error::AliasModified { .. }) if implied && attempt < IMPLIED_MOVE_ATTEMPTS => {
                    continue;
                }
                Err(e) => return Err(e),
            }
            .ok_or_else(|| Error::internal("pipeline alias move", "no alias row written"))?;
            let answer = (
                Some(to_value(&published)?),
                Some(to_value(&moved.to_alias(&self.layout))?),
            );
            return Ok((answer, true));
        }
    }

    /// The record of what the run holding `token` did, as a member of the
    /// transaction that does its last step (as `record_pipeline` writes it).
    fn record_member(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        token: &str,
        stored: &serde_json::Value,
    ) -> Result<TxItem> {
        claim::record_member(&self.layout.table, name, id, token, stored)
    }

    /// The pipeline's publish, when its commit did not publish: only while
    /// LATEST is still upload `id`'s commit.
    async fn publish_for(
        &self,
        name: &ArtifactName,
        force: bool,
        actor: &str,
        id: &UploadId,
        token: &str,
    ) -> Result<PublishedArtifact> {
        match self
            .publish_version_of(
                name,
                force,
                actor,
                Some((id, token)),
                None,
                &mut super::Allowed::already(),
            )
            .await?
        {
            super::publish::Publishing::Done(published) => Ok(PublishedArtifact {
                artifact: published.artifact,
                created: published.created,
            }),
            // LATEST is this upload's commit (else: superseded), never a
            // row of the library that only a publish of no upload adopts.
            super::publish::Publishing::Adopt { .. } => Err(Error::internal(
                "pipeline publish",
                format!(
                    "LATEST of {name} is the library's, not upload {}'s",
                    id.as_str()
                ),
            )),
        }
    }

    /// What this request's commit claimed (its answer was lost, so the
    /// upload row as read tells): the version its transaction published,
    /// and the pipeline's answer when it recorded it.
    pub(super) async fn claimed_by_commit(
        &self,
        name: &ArtifactName,
        item: &crate::rows::Item,
    ) -> Result<Claimed> {
        let recorded = claim::recorded_result(item)?;
        let published = match recorded {
            Some(_) => None,
            None => self.published_on(name, item).await?,
        };
        Ok(Claimed::new(published, recorded))
    }

    /// The version the commit of upload row `item` published in its own
    /// transaction, if it did.
    async fn published_on(
        &self,
        name: &ArtifactName,
        item: &crate::rows::Item,
    ) -> Result<Option<PublishedArtifact>> {
        match claim::published_number(item) {
            Some(n) => self.version_published(name, n).await,
            None => Ok(None),
        }
    }

    /// Version `n`, published by this pipeline, as its answer says it.
    async fn version_published(
        &self,
        name: &ArtifactName,
        n: u32,
    ) -> Result<Option<PublishedArtifact>> {
        Ok(self
            .get_row(name, crate::names::Version::number(n)?)
            .await?
            .map(|row| PublishedArtifact {
                artifact: row.to_artifact(&self.layout),
                created: true,
            }))
    }
}

/// A run of a pipeline under the claim `token` holds; `takeover`: an
/// earlier run may have done part of it; `published`: the version this
/// pipeline already published (by the commit's transaction, or by an
/// earlier run's publish), as recorded on the upload row.
struct Run<'a> {
    token: &'a str,
    takeover: bool,
    published: Option<PublishedArtifact>,
}

/// The published version and the alias, as answered.
pub(super) type PipelineAnswer = (Option<serde_json::Value>, Option<serde_json::Value>);

/// How long a pipeline run may hold its claim before another takes over:
/// well beyond any function's timeout on the request path.
const CLAIM_LEASE_SECS: i64 = 60;

/// How many times (100 ms, 200 ms, …) a second request waits for a run in
/// progress before answering 409 (retry).
const CLAIM_WAITS: u64 = 8;

enum Claim {
    Ours {
        takeover: bool,
        published: Option<u32>,
    },
    Done(serde_json::Value),
    Running,
}

/// How often a canary's move reads the alias again when it moved since.
const IMPLIED_MOVE_ATTEMPTS: u32 = 5;

/// Where the alias of a pipeline points once moved to `version`: at it
/// alone, or (with `weight`) keeping the current primary and sending
/// `weight` to it; an alias already at `version` is not split with itself.
fn pipeline_target(
    version: crate::names::Version,
    weight: Option<crate::names::Weight>,
    current: Option<&Alias>,
) -> AliasTarget {
    match (weight, current) {
        (Some(weight), Some(current)) if current.version != version => AliasTarget {
            version: current.version,
            secondary: Some((version, weight)),
        },
        _ => AliasTarget {
            version,
            secondary: None,
        },
    }
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::internal("pipeline answer", e))
}

/// A recorded answer, given again.
fn replay(stored: &serde_json::Value) -> Result<PipelineAnswer> {
    if let Some(error) = stored.get("error") {
        return Err(Error::from_stored(error).unwrap_or_else(|| {
            Error::ConcurrentModification(format!(
                "the pipeline failed earlier: {}",
                error.get("message").and_then(|m| m.as_str()).unwrap_or("")
            ))
        }));
    }
    let field = |k: &str| stored.get(k).filter(|v| !v.is_null()).cloned();
    Ok((field("published"), field("alias")))
}
