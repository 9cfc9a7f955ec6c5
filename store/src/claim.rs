//! The pipeline's claim on its upload row (SPEC 4.1, a commit with
//! `publish`): the attributes the commit's own transaction writes so that
//! only the request holding the claim runs the pipeline, and what the row
//! records of the run (the number published, the answer replayed).

use crate::error::Result;
use crate::layout::attr;
use crate::model::{Alias, Pipeline, PublishedArtifact};
use crate::publish_rules::Mode;
use crate::rows::{Item, nv, sv};

/// The claim on a pipeline's run, taken by the commit's own transaction
/// (the upload row is written committed and claimed at once): one round
/// trip less than claiming after the commit. Only the request whose
/// transaction wrote it holds it; a retry claims as before.
pub struct HeldClaim {
    token: String,
    pipeline: String,
    force: bool,
    moves_alias: bool,
}

/// What a request holding its [`HeldClaim`] knows after its commit: the
/// version its transaction published, if it did, and the pipeline's
/// answer when the transaction recorded it (nothing left to run).
pub struct Claimed {
    published: Option<PublishedArtifact>,
    recorded: Option<serde_json::Value>,
}

impl Claimed {
    /// What a commit holding its claim found on its upload row.
    pub fn new(published: Option<PublishedArtifact>, recorded: Option<serde_json::Value>) -> Self {
        Self {
            published,
            recorded,
        }
    }

    /// The version the commit's transaction published, and the
    /// pipeline's recorded answer.
    pub fn into_parts(self) -> (Option<PublishedArtifact>, Option<serde_json::Value>) {
        (self.published, self.recorded)
    }
}

impl HeldClaim {
    /// The claim's token: what the upload row carries while the run is ours.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A claim for `pipeline`, when it has anything to run.
    pub fn of(pipeline: &Pipeline) -> Option<Self> {
        pipeline.publish.then(|| Self {
            token: uuid::Uuid::new_v4().simple().to_string(),
            pipeline: pipeline.to_json(),
            force: pipeline.force,
            moves_alias: pipeline.alias.is_some(),
        })
    }

    /// How the pipeline's publish takes a number.
    pub fn mode(&self) -> Mode {
        if self.force {
            Mode::Force
        } else {
            Mode::IfChanged
        }
    }

    /// The claim held after a commit that published `published` (if it did).
    pub fn claimed(&self, published: Option<PublishedArtifact>) -> Claimed {
        let recorded = published
            .as_ref()
            .filter(|_| !self.moves_alias)
            .map(|p| recorded_answer(p, None));
        Claimed {
            published,
            recorded,
        }
    }

    /// On the upload item the commit writes: the number its transaction
    /// publishes and, when no alias moves, the pipeline's answer (recorded
    /// as `record_pipeline` would: the run is over with the commit).
    pub fn record_publish(
        &self,
        item: &mut Item,
        number: u32,
        answer: &PublishedArtifact,
    ) -> Result<()> {
        item.insert(attr::PIPELINE_PUBLISHED.into(), nv(number));
        if !self.moves_alias {
            let stored = recorded_answer(answer, None);
            item.insert(attr::PIPELINE_RESULT.into(), sv(stored.to_string()));
        }
        Ok(())
    }

    /// Whether `item` (an upload row) carries this claim.
    pub fn is_on(&self, item: &Item) -> bool {
        item.get(attr::PIPELINE_CLAIM)
            .and_then(|c| c.as_s().ok())
            .is_some_and(|c| *c == self.token)
    }

    /// The claim's attributes on the upload item being written committed
    /// (as `claim_pipeline` sets them).
    pub fn mark(&self, item: &mut Item) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        item.insert(attr::PIPELINE_CLAIM.into(), sv(&self.token));
        item.insert(attr::PIPELINE_CLAIMED_AT.into(), nv(now));
        item.entry(attr::PIPELINE.into())
            .or_insert_with(|| sv(&self.pipeline));
    }
}

/// A pipeline's answer as recorded on its upload row (and replayed).
pub fn recorded_answer(published: &PublishedArtifact, alias: Option<&Alias>) -> serde_json::Value {
    serde_json::json!({ "published": published, "alias": alias })
}
