//! One request for a pipeline (SPEC 4.1, v3): a commit that also publishes
//! the new LATEST and moves an alias to the new version, answered together;
//! a start upload with `commit` that commits at once when the artifact
//! holds the bytes.
//!
//! Each step keeps every guarantee of the separate call (its own
//! conditional writes: purge fence, numbering, history entry, `If-Match`).
//! The alias's preconditions are checked before anything is written, so a
//! refused move leaves nothing half-done; a move raced by another writer
//! after that check is refused after the publish (the commit and the
//! version stand; the answer says so). A multipart upload is committed by
//! its verification: the pipeline is stored on its row and run by the
//! verification once committed (or by a retried commit), its outcome shown
//! in the upload's state.

use super::Repository;
use super::uploads::UploadId;
use crate::error::{Error, Result};
use crate::layout::{attr, upload_pk};
use crate::model::{
    Alias, AliasTarget, ChangeRequest, CommitOutcome, Pipeline, PipelineCommitted, Precondition,
    PublishedArtifact, UploadRequest, UploadTicket,
};
use crate::names::ArtifactName;
use crate::rows::{key, sv};

/// What a commit with a pipeline answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum PipelineOutcome {
    /// 200: LATEST, and the version and alias when asked for.
    Committed(Box<PipelineCommitted>),
    /// 202: a multipart upload being verified; the pipeline runs after.
    Verifying {
        upload_id: String,
        state: &'static str,
    },
}

/// What a start upload with `commit` answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum StartOutcome {
    /// The bytes must be sent (201), as without `commit`.
    Ticket(UploadTicket),
    /// The artifact held them: committed at once (200).
    Committed {
        upload_id: String,
        state: &'static str,
        exists: bool,
        #[serde(flatten)]
        committed: Box<PipelineCommitted>,
    },
}

impl Repository {
    /// Commits `upload_id`, then runs `pipeline` (publish, alias move).
    /// AWS calls: the commit's, then the publish's and the alias move's; one
    /// GetItem first when the alias move has a weight or `if_revision`.
    pub async fn commit_pipeline(
        &self,
        name: &ArtifactName,
        upload_id: &str,
        actor: &str,
        pipeline: &Pipeline,
    ) -> Result<PipelineOutcome> {
        self.check_pipeline(name, pipeline).await?;
        match self
            .commit_with(name, upload_id, actor, Some(pipeline))
            .await?
        {
            CommitOutcome::Verifying { upload_id, state } => {
                Ok(PipelineOutcome::Verifying { upload_id, state })
            }
            CommitOutcome::Committed(committed) => {
                let (published, alias) = self.run_pipeline(name, actor, pipeline).await?;
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
    pub async fn start_and_commit(
        &self,
        name: &ArtifactName,
        request: UploadRequest,
        actor: &str,
        pipeline: &Pipeline,
    ) -> Result<StartOutcome> {
        self.check_pipeline(name, pipeline).await?;
        let ticket = self.create_upload_as(name, request, actor).await?;
        if !ticket.exists {
            return Ok(StartOutcome::Ticket(ticket));
        }
        match self
            .commit_with(name, &ticket.upload_id, actor, Some(pipeline))
            .await?
        {
            CommitOutcome::Committed(committed) => {
                let (published, alias) = self.run_pipeline(name, actor, pipeline).await?;
                Ok(StartOutcome::Committed {
                    upload_id: ticket.upload_id,
                    state: "committed",
                    exists: true,
                    committed: Box::new(PipelineCommitted {
                        committed,
                        published,
                        alias,
                    }),
                })
            }
            // Bytes that exist are committed at once, never verified.
            CommitOutcome::Verifying { .. } => Err(Error::internal(
                "start upload",
                "bytes that exist were handed to verification".to_owned(),
            )),
        }
    }

    /// Refuses, before anything is written, an alias move that cannot
    /// happen: the alias moved from `if_revision`, a weight with no alias to
    /// keep the primary of, or a name this service cannot create (`LATEST`)
    /// for an alias that does not exist.
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
        if m.weight.is_none() && m.if_revision.is_none() && creatable.is_ok() {
            return Ok(());
        }
        let current = match (self.get_alias(name, &m.name).await, creatable) {
            (Ok(current), _) => current,
            // A name only the library allows: moved when it exists, never created.
            (Err(Error::AliasNotFound { .. }), Err(invalid)) => return Err(invalid),
            (Err(e), _) => return Err(e),
        };
        match m.if_revision {
            Some(r) if r != current.revision => Err(Error::AliasModified {
                name: name.to_string(),
                alias: m.name.to_string(),
                detail: format!("it is at revision {}, not {r}", current.revision),
            }),
            _ => Ok(()),
        }
    }

    /// The publish and the alias move of `pipeline`, after its commit.
    pub(super) async fn run_pipeline(
        &self,
        name: &ArtifactName,
        actor: &str,
        pipeline: &Pipeline,
    ) -> Result<(Option<PublishedArtifact>, Option<Alias>)> {
        if !pipeline.publish {
            return Ok((None, None));
        }
        let published = self.publish_version_as(name, pipeline.force, actor).await?;
        let version = published.artifact.version;
        let alias = match &pipeline.alias {
            None => None,
            Some(m) => {
                let target = match m.weight {
                    None => AliasTarget {
                        version,
                        secondary: None,
                    },
                    Some(weight) => {
                        let current = self.get_alias(name, &m.name).await?;
                        if current.version == version {
                            AliasTarget {
                                version,
                                secondary: None,
                            }
                        } else {
                            AliasTarget {
                                version: current.version,
                                secondary: Some((version, weight)),
                            }
                        }
                    }
                };
                let change = ChangeRequest {
                    actor: actor.to_owned(),
                    message: m.message.clone(),
                    precondition: m
                        .if_revision
                        .map_or(Precondition::None, Precondition::Revision),
                    cancel_rollout: false,
                };
                Some(self.put_alias_as(name, &m.name, target, &change).await?)
            }
        };
        Ok((
            Some(PublishedArtifact {
                artifact: published.artifact,
                created: published.created,
            }),
            alias,
        ))
    }

    /// The pipeline a verified multipart upload carries, run once: its
    /// outcome recorded on the upload row (the version and alias, or the
    /// refusal). Upstream failures are returned (the step is retried).
    pub(super) async fn finish_pipeline(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        actor: &str,
        pipeline: &Pipeline,
    ) -> Result<()> {
        let result = match self.run_pipeline(name, actor, pipeline).await {
            Ok((published, alias)) => serde_json::json!({"published": published, "alias": alias}),
            Err(e)
                if matches!(
                    e.kind(),
                    crate::error::ErrorKind::Throttled
                        | crate::error::ErrorKind::Upstream
                        | crate::error::ErrorKind::Internal
                ) =>
            {
                return Err(e);
            }
            Err(e) => serde_json::json!({"error": {"code": e.code(), "message": e.to_string()}}),
        };
        let out = self
            .ddb
            .update_item()
            .table_name(&self.layout.table)
            .set_key(Some(key(upload_pk(name), id.as_str())))
            .update_expression("SET #result = :result")
            .condition_expression("attribute_exists(#pk) AND attribute_not_exists(#result)")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#result", attr::PIPELINE_RESULT)
            .expression_attribute_values(":result", sv(result.to_string()))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            // Recorded by another run, or purged meanwhile.
            Err(e) if super::condition_failed(&e) => Ok(()),
            Err(e) => Err(Error::upstream("UpdateItem", e)),
        }
    }
}
