//! The pipeline's claim on its upload row (SPEC 4.1, a commit with
//! `publish`): the attributes the commit's own transaction writes so that
//! only the request holding the claim runs the pipeline, and what the row
//! records of the run (the number published, the answer replayed); and
//! the requests on the upload row that claim a run, release it and record
//! its answer.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure, Update};

use crate::error::{Error, Result};
use crate::layout::{attr, upload_pk};
use crate::model::{Alias, Pipeline, PublishedArtifact};
use crate::names::{ArtifactName, UploadId};
use crate::publish_rules::Mode;
use crate::rows::{Item, key, nv, sv};
use crate::sdk_error::{condition_failed, invalid_sdk_input};
use crate::table::Table;
use crate::tx::TxItem;

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

/// What an attempt to claim a pipeline's run ([`Table::claim_pipeline`])
/// got.
pub enum ClaimAttempt {
    /// The claim is ours; `takeover`: another run's claim was on the row
    /// before (not our own write, whose answer was lost); `published`: the
    /// version an earlier run of this pipeline published, as the row
    /// records it.
    Ours {
        takeover: bool,
        published: Option<u32>,
    },
    /// The condition refused it: the upload row as it was, when DynamoDB
    /// returned it (emulators may not).
    Refused(Option<Item>),
}

/// What an upload row says of a pipeline's run, for the run holding
/// `token` ([`claim_seen`]).
pub enum ClaimSeen {
    /// A run recorded its answer.
    Recorded(serde_json::Value),
    /// The run holds `token`'s claim.
    Ours,
    /// Another run holds the claim (or none is on the row).
    Other,
}

/// Whether upload row `item` carries a pipeline's claim (a pipeline ran
/// or runs for it).
pub fn carries_claim(item: &Item) -> bool {
    item.contains_key(attr::PIPELINE_CLAIM)
}

/// The pipeline's answer recorded on upload row `item`, if any (500 when
/// it is not JSON).
pub fn recorded_result(item: &Item) -> Result<Option<serde_json::Value>> {
    item.get(attr::PIPELINE_RESULT)
        .and_then(|r| r.as_s().ok())
        .map(|r| serde_json::from_str::<serde_json::Value>(r))
        .transpose()
        .map_err(|e| Error::internal("stored pipeline result", e))
}

/// The version number the commit of upload row `item` published in its
/// own transaction, if it did.
pub fn published_number(item: &Item) -> Option<u32> {
    item.get(attr::PIPELINE_PUBLISHED)
        .and_then(|n| n.as_n().ok())
        .and_then(|n| n.parse::<u32>().ok())
}

/// What upload row `item` (read after a refused claim) says of the run
/// holding `token`: its recorded answer first, then whose claim is on it.
pub fn claim_seen(item: &Item, token: &str) -> Result<ClaimSeen> {
    if let Some(stored) = item.get(attr::PIPELINE_RESULT).and_then(|r| r.as_s().ok()) {
        let stored = serde_json::from_str(stored)
            .map_err(|e| Error::internal("stored pipeline result", e))?;
        return Ok(ClaimSeen::Recorded(stored));
    }
    if item.get(attr::PIPELINE_CLAIM).and_then(|c| c.as_s().ok()) == Some(&token.to_owned()) {
        return Ok(ClaimSeen::Ours);
    }
    Ok(ClaimSeen::Other)
}

/// A transaction member recording `stored` (what the run holding `token`
/// did) on upload `id`'s row, on condition that the run still holds its
/// claim and no answer is recorded yet.
pub fn record_member(
    table: &str,
    name: &ArtifactName,
    id: &UploadId,
    token: &str,
    stored: &serde_json::Value,
) -> Result<TxItem> {
    while_claimed(
        table,
        name,
        id,
        token,
        attr::PIPELINE_RESULT,
        sv(stored.to_string()),
    )
}

/// A transaction member recording on upload `id`'s row the number the
/// publish of the run holding `token` takes (as the commit's own
/// transaction does, see [`HeldClaim::record_publish`]), on condition that
/// the run still holds its claim and no answer is recorded yet: a run
/// taken over publishes nothing, and the run that took over finds the
/// number of one that did.
pub fn publish_member(
    table: &str,
    name: &ArtifactName,
    id: &UploadId,
    token: &str,
    number: u32,
) -> Result<TxItem> {
    while_claimed(table, name, id, token, attr::PIPELINE_PUBLISHED, nv(number))
}

/// A transaction member setting `attribute` to `value` on upload `id`'s
/// row, on condition that the run holding `token` still holds its claim
/// and no answer is recorded yet.
fn while_claimed(
    table: &str,
    name: &ArtifactName,
    id: &UploadId,
    token: &str,
    attribute: &str,
    value: aws_sdk_dynamodb::types::AttributeValue,
) -> Result<TxItem> {
    let update = Update::builder()
        .table_name(table)
        .set_key(Some(key(upload_pk(name), id.as_str())))
        .update_expression("SET #attribute = :value")
        .condition_expression("#claim = :token AND attribute_not_exists(#result)")
        .expression_attribute_names("#attribute", attribute)
        .expression_attribute_names("#claim", attr::PIPELINE_CLAIM)
        .expression_attribute_names("#result", attr::PIPELINE_RESULT)
        .expression_attribute_values(":token", sv(token))
        .expression_attribute_values(":value", value)
        .build()
        .map_err(invalid_sdk_input)?;
    Ok(TxItem::builder().update(update).build())
}

impl Table {
    /// Claims the run of `pipeline` on upload `id`'s row for `token`
    /// (UpdateItem, keeping a pipeline already stored), on condition that
    /// the row exists, no answer is recorded, and no claim is on it, or one
    /// older than `lease_secs`, or `token`'s own.
    pub async fn claim_pipeline(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        token: &str,
        pipeline: &Pipeline,
        lease_secs: i64,
    ) -> Result<ClaimAttempt> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let out = self
            .ddb
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(upload_pk(name), id.as_str())))
            .update_expression(
                "SET #claim = :token, #claimed_at = :now, #pipeline = if_not_exists(#pipeline, :pipeline)",
            )
            .condition_expression(
                "attribute_exists(#pk) AND attribute_not_exists(#result) AND \
                 (attribute_not_exists(#claim) OR #claimed_at < :stale OR #claim = :token)",
            )
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#claim", attr::PIPELINE_CLAIM)
            .expression_attribute_names("#claimed_at", attr::PIPELINE_CLAIMED_AT)
            .expression_attribute_names("#pipeline", attr::PIPELINE)
            .expression_attribute_names("#result", attr::PIPELINE_RESULT)
            .expression_attribute_values(":token", sv(token))
            .expression_attribute_values(":now", nv(now))
            .expression_attribute_values(":stale", nv(now - lease_secs))
            .expression_attribute_values(":pipeline", sv(pipeline.to_json()))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(out) => {
                let before = out.attributes();
                let claim = before
                    .and_then(|a| a.get(attr::PIPELINE_CLAIM))
                    .and_then(|c| c.as_s().ok());
                Ok(ClaimAttempt::Ours {
                    // Another run's claim before ours (not our own lost answer).
                    takeover: claim.is_some_and(|c| c != token),
                    // Also when the row shows our own claim: the SDK's retry
                    // of our claim after its answer was lost sees it, while
                    // the run we took over from may have published.
                    published: before.and_then(published_number),
                })
            }
            Err(e) if condition_failed(&e) => {
                Ok(ClaimAttempt::Refused(match e.into_service_error() {
                    UpdateItemError::ConditionalCheckFailedException(c) => c.item,
                    _ => None,
                }))
            }
            Err(e) => Err(crate::sdk_error::upstream("UpdateItem", e)),
        }
    }

    /// Records `stored` (what the run holding `token` did) on upload
    /// `id`'s row (UpdateItem, as [`record_member`]); false when the
    /// condition refused it (another run took over and recorded first, or
    /// the upload was purged).
    pub async fn record_pipeline(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        token: &str,
        stored: &serde_json::Value,
    ) -> Result<bool> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(upload_pk(name), id.as_str())))
            .update_expression("SET #result = :result")
            .condition_expression("#claim = :token AND attribute_not_exists(#result)")
            .expression_attribute_names("#claim", attr::PIPELINE_CLAIM)
            .expression_attribute_names("#result", attr::PIPELINE_RESULT)
            .expression_attribute_values(":token", sv(token))
            .expression_attribute_values(":result", sv(stored.to_string()))
            .send()
            .await;
        crate::sdk_error::applied("UpdateItem", out)
    }

    /// Sets the claim time on upload `id`'s row to 0 (UpdateItem), so the
    /// next run takes over at once, on condition that `token` holds the
    /// claim (a refusal is an error like any other failure).
    pub async fn release_pipeline(
        &self,
        name: &ArtifactName,
        id: &UploadId,
        token: &str,
    ) -> Result<()> {
        self.ddb
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key(upload_pk(name), id.as_str())))
            .update_expression("SET #claimed_at = :zero")
            .condition_expression("#claim = :token")
            .expression_attribute_names("#claim", attr::PIPELINE_CLAIM)
            .expression_attribute_names("#claimed_at", attr::PIPELINE_CLAIMED_AT)
            .expression_attribute_values(":token", sv(token))
            .expression_attribute_values(":zero", nv(0))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| crate::sdk_error::upstream("UpdateItem", e))
    }
}
