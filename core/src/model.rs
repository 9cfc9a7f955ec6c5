//! What the repository returns: artifacts, aliases, pages, upload tickets.
//! These serialize to the JSON shapes of SPEC 4.

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;

use crate::names::{AliasName, ArtifactName, Version, Weight};

/// One version of an artifact (LATEST or numbered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artifact {
    pub name: ArtifactName,
    pub version: Version,
    #[serde(with = "time::serde::rfc3339")]
    pub update_at: OffsetDateTime,
    pub sha256: String,
    /// Unknown (`null`) for rows written by the Python library.
    pub size: Option<u64>,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub s3uri: String,
    /// The identity that committed or published it; `null` for rows the
    /// library wrote.
    pub created_by: Option<String>,
    /// Present on single-version reads only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_url: Option<String>,
    /// `deprecated` or `archived` (SPEC 10.3); absent while active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<VersionStatus>,
    /// Why the status was set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
}

/// A version's status (SPEC 10.3, as CodeArtifact's Published / Unlisted /
/// Archived): deprecated versions still resolve, with a warning; archived
/// ones cannot become the target of a new alias move or rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionStatus {
    Active,
    Deprecated,
    Archived,
}

impl VersionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deprecated => "deprecated",
            Self::Archived => "archived",
        }
    }
}

impl std::str::FromStr for VersionStatus {
    type Err = crate::error::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Active, Self::Deprecated, Self::Archived]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                crate::error::Error::InvalidRequest(format!(
                    "status {s:?} is not active, deprecated or archived"
                ))
            })
    }
}

/// A search across artifacts (SPEC 10.3): by content, or by metadata
/// (exact match, keys ANDed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchQuery {
    Sha256(crate::names::Sha256),
    Metadata(BTreeMap<String, String>),
}

/// One hit of a search: the version, and the aliases pointing at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SearchHit {
    #[serde(flatten)]
    pub artifact: Artifact,
    pub aliases: Vec<String>,
}

/// A named pointer to one version, optionally splitting traffic with a second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alias {
    pub name: ArtifactName,
    pub alias: AliasName,
    #[serde(with = "time::serde::rfc3339")]
    pub update_at: OffsetDateTime,
    pub version: Version,
    pub secondary_version: Option<Version>,
    pub secondary_version_weight: Option<Weight>,
    pub version_s3uri: String,
    pub secondary_version_s3uri: Option<String>,
    /// Counts the alias's changes (create, move, delete, rollback); the
    /// `ETag` of every alias response. 0 for an alias the library wrote that
    /// this service never changed.
    pub revision: u64,
}

/// What an alias points at (the state a history entry records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AliasState {
    pub version: Version,
    pub secondary_version: Option<Version>,
    pub secondary_version_weight: Option<Weight>,
}

impl From<AliasTarget> for AliasState {
    fn from(t: AliasTarget) -> Self {
        Self {
            version: t.version,
            secondary_version: t.secondary.map(|(v, _)| v),
            secondary_version_weight: t.secondary.map(|(_, w)| w),
        }
    }
}

impl AliasState {
    pub fn target(&self) -> AliasTarget {
        AliasTarget {
            version: self.version,
            secondary: self.secondary_version.zip(self.secondary_version_weight),
        }
    }
}

/// The kind of an alias change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AliasAction {
    Create,
    Move,
    Delete,
    Rollback,
}

impl AliasAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Move => "move",
            Self::Delete => "delete",
            Self::Rollback => "rollback",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Create, Self::Move, Self::Delete, Self::Rollback]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// One entry of an alias's history (SPEC 4.2): who changed it, when, how,
/// what it points at afterwards (`null` targets after a delete) and before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AliasChange {
    pub revision: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: AliasAction,
    pub version: Option<Version>,
    pub secondary_version: Option<Version>,
    pub secondary_version_weight: Option<Weight>,
    pub previous: Option<AliasState>,
    pub message: Option<String>,
}

impl AliasChange {
    /// The alias's targets right after this change (`None`: deleted).
    pub fn state(&self) -> Option<AliasState> {
        self.version.map(|version| AliasState {
            version,
            secondary_version: self.secondary_version,
            secondary_version_weight: self.secondary_version_weight,
        })
    }
}

/// Who asks for a change, why, and on which condition (SPEC 4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRequest {
    /// The caller's IAM identity (`local` on the local server).
    pub actor: String,
    pub message: Option<String>,
    pub precondition: Precondition,
    /// Cancels the rollout holding the alias, if any (SPEC 10.1): without
    /// it, a change to an alias being rolled out is refused.
    pub cancel_rollout: bool,
    /// The request's `Idempotency-Key` (SPEC 7.5, a retry is safe): a
    /// retry sent with the same key is the same request, answered as the
    /// first was, never applied again.
    pub key: Option<String>,
}

impl Default for ChangeRequest {
    fn default() -> Self {
        Self {
            actor: LOCAL_ACTOR.to_owned(),
            message: None,
            precondition: Precondition::None,
            cancel_rollout: false,
            key: None,
        }
    }
}

/// The identity recorded for changes made without an API Gateway identity.
pub const LOCAL_ACTOR: &str = "local";

/// `If-Match` / `If-None-Match` of an alias change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// Only if the alias is at this revision (`If-Match: "<revision>"`).
    Revision(u64),
    /// Only if the alias is the row the library wrote at this moment
    /// (microseconds since the epoch; `If-Match: "0.<micros>"`): the
    /// library keeps no revision, so every row it writes is at revision 0,
    /// and only when it was written tells one from the next.
    LibraryRow(i64),
    /// Only if the alias does not exist (`If-None-Match: *`).
    Absent,
    /// Only if the alias exists (`If-Match: *`).
    Exists,
}

impl Precondition {
    /// The precondition that holds only while an alias is as read: its
    /// revision, or for a row the library wrote (no revision), when it was
    /// written.
    pub fn as_read(revision: Option<u64>, update_at: OffsetDateTime) -> Self {
        match revision {
            Some(r) => Self::Revision(r),
            None => Self::LibraryRow(micros(update_at)),
        }
    }
}

/// Microseconds since the epoch (what an alias row's `update_at` holds).
pub fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// The entity tag of an alias: its revision in quotes (`"3"`), or for a
/// row the library wrote, `"0.<micros of update_at>"` ([`Precondition::LibraryRow`]).
pub fn alias_etag(revision: u64, update_at: OffsetDateTime) -> String {
    if revision == 0 {
        format!("\"0.{}\"", micros(update_at))
    } else {
        format!("\"{revision}\"")
    }
}

/// Where an alias sends one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    pub name: ArtifactName,
    pub alias: AliasName,
    /// The alias's revision the pick was made from.
    pub revision: u64,
    pub version: Version,
    pub sha256: String,
    pub download_url: String,
    /// The picked version is deprecated (or archived): still served, with
    /// this warning (SPEC 10.3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// One page of a listing; `next_cursor` is opaque and `null` on the last page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The answer to a commit: the new (or unchanged) LATEST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Committed {
    #[serde(flatten)]
    pub artifact: Artifact,
    pub changed: bool,
}

/// The answer to a publish: the version, and whether it is new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub artifact: Artifact,
    pub created: bool,
}

/// What a publish answers: the version (201, or 200 when LATEST was
/// unchanged), or (202) the upload whose verification publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
// One per request, moved once: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum PublishOutcome {
    Published(Published),
    /// LATEST was written by the library and is too large to copy into the
    /// blob store within the request: its bytes are copied in parts into
    /// upload `upload_id`, whose verification commits them and publishes
    /// (`GET …/uploads/{upload_id}` shows it, `published` at the end).
    Adopting {
        upload_id: String,
    },
}

/// A started upload: a presigned PUT of the declared bytes to send, or
/// `exists` when the artifact holds them already (nothing to transfer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadTicket {
    pub upload_id: String,
    pub state: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub exists: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// A multipart upload: ask the parts route for each part's URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multipart: Option<MultipartPlan>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// What a retention pass did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    #[serde(with = "time::serde::rfc3339")]
    pub purge_time: OffsetDateTime,
    pub dry_run: bool,
    pub deleted: Vec<Artifact>,
}

/// A declared upload: what the client promises to PUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRequest {
    pub sha256: String,
    pub size: u64,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Asks for a multipart upload with parts of this size (≥ 5 MiB); a
    /// size above 5 GiB gets one whatever this says.
    pub part_size: Option<u64>,
    /// The request's `Idempotency-Key` (SPEC 7.5): a start retried with the
    /// same key names the same upload, so it never starts, commits or
    /// publishes a second one.
    pub key: Option<String>,
}

/// How a multipart upload is cut: every part `part_size` bytes, the last
/// one the remainder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MultipartPlan {
    pub part_size: u64,
    pub part_count: u32,
}

/// One part the client is about to send, with its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRequest {
    pub number: u32,
    pub sha256: crate::names::Sha256,
}

/// A presigned UploadPart, bound to the part's declared SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartUrl {
    pub number: u32,
    pub url: String,
    pub headers: BTreeMap<String, String>,
}

/// The answer of the parts route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartUrls {
    pub parts: Vec<PartUrl>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// A part S3 holds for a multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartReceived {
    pub number: u32,
    pub size: u64,
    /// The part's SHA-256 as S3 recorded it (hex); S3 checked it against
    /// the signed header. `null` where the store does not report it.
    pub sha256: Option<String>,
}

/// An upload's state (`GET …/uploads/{upload_id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadStatus {
    pub upload_id: String,
    pub state: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multipart: Option<MultipartPlan>,
    /// Multipart, pending: the numbers of the parts S3 holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts_received: Option<Vec<u32>>,
    /// Multipart, pending: those parts with their sizes and checksums.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<PartReceived>>,
    /// Verifying: how many bytes have been hashed so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_bytes: Option<u64>,
    /// Committed: LATEST as the commit made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,
    /// Failed or superseded: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Committed with `publish` (SPEC 4.1, one request for a pipeline): the
    /// version published once the upload was verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<serde_json::Value>,
    /// Committed with `alias`: the alias as it was moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<serde_json::Value>,
    /// Committed, but its publish or alias move was refused: why (the
    /// commit stands; retry the publish or the move on its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_error: Option<serde_json::Value>,
}

/// What a commit does besides making LATEST (SPEC 4.1, one request for a
/// pipeline): publish it (`force`: also when unchanged), then move an alias
/// to the new version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pipeline {
    pub publish: bool,
    pub force: bool,
    pub alias: Option<AliasMove>,
}

/// The alias move of a [`Pipeline`]: the alias points at the new version
/// alone, or with `weight`, keeps its primary and sends `weight` percent to
/// the new version (a canary); `if_revision` as `If-Match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasMove {
    pub name: AliasName,
    pub weight: Option<Weight>,
    pub if_revision: Option<u64>,
    pub message: Option<String>,
}

impl Pipeline {
    pub fn is_empty(&self) -> bool {
        !self.publish && self.alias.is_none()
    }

    /// As stored on a multipart upload's row (its verification runs it).
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "publish": self.publish,
            "force": self.force,
            "alias": self.alias.as_ref().map(|a| serde_json::json!({
                "name": a.name.as_str(),
                "weight": a.weight.map(Weight::get),
                "if_revision": a.if_revision,
                "message": a.message,
            })),
        })
        .to_string()
    }

    /// Read back from [`Self::to_json`]; `None` when it is not one.
    pub fn from_json(text: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let alias = match v.get("alias") {
            Some(a) if a.is_object() => Some(AliasMove {
                name: a.get("name")?.as_str()?.parse().ok()?,
                weight: match a.get("weight").and_then(serde_json::Value::as_i64) {
                    Some(w) => Some(Weight::new(w).ok()?),
                    None => None,
                },
                if_revision: a.get("if_revision").and_then(serde_json::Value::as_u64),
                message: a
                    .get("message")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned),
            }),
            _ => None,
        };
        Some(Self {
            publish: v.get("publish")?.as_bool()?,
            force: v
                .get("force")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            alias,
        })
    }
}

/// A published version as a pipeline answers it: the Artifact, and whether
/// the publish created it (false: LATEST was unchanged, the newest version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedArtifact {
    #[serde(flatten)]
    pub artifact: Artifact,
    pub created: bool,
}

/// A commit with its pipeline, answered together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelineCommitted {
    #[serde(flatten)]
    pub committed: Committed,
    /// A [`PublishedArtifact`], as answered (or replayed from the upload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<serde_json::Value>,
    /// An [`Alias`], as answered (or replayed from the upload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<serde_json::Value>,
}

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

/// What a commit answers: LATEST (single PUT, 200), or a multipart upload
/// handed to `verify-upload` (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
// One per request or step, moved once: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum CommitOutcome {
    Committed(Committed),
    Verifying {
        upload_id: String,
        state: &'static str,
    },
}

/// Retention policy: keep the newest `keep_last_n` numbered versions, and
/// anything younger than `older_than`. LATEST and alias targets are always kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub keep_last_n: u32,
    pub older_than: std::time::Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            keep_last_n: 10,
            older_than: std::time::Duration::from_secs(90 * 24 * 60 * 60),
        }
    }
}

/// A requested alias state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AliasTarget {
    pub version: Version,
    pub secondary: Option<(Version, Weight)>,
}

/// A rollout as the API shows it (SPEC 10.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollout {
    pub id: String,
    pub name: ArtifactName,
    pub alias: AliasName,
    /// The version rolled out.
    pub version: Version,
    /// The alias before the rollout (where an abort takes it back).
    pub from: AliasState,
    pub state: crate::rollout::RolloutState,
    /// The step applied last, from 1.
    pub step: usize,
    /// The new version's share of the traffic now, in percent.
    pub weight: u8,
    pub steps: Vec<crate::rollout::Step>,
    /// When the driver takes the next step (active rollouts only).
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_step_at: Option<OffsetDateTime>,
    pub alarms: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The alias's revision after the rollout's last change of it.
    pub revision: u64,
    pub started_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub update_at: OffsetDateTime,
}

/// A rollout to start: the new version, the plan, the alarms that abort it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRequest {
    pub version: Version,
    pub steps: Vec<crate::rollout::Step>,
    /// Alarm names.
    pub alarms: Vec<String>,
    pub message: Option<String>,
}

/// Where an upload stands (its row's `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadState {
    Pending,
    /// Multipart only: completed in S3, its SHA-256 being computed.
    Verifying,
    Committed,
    /// Multipart only: the bytes were not the declared ones.
    Failed,
    /// Multipart only: verified after a later commit made LATEST: never
    /// made LATEST (SPEC 7.11).
    Superseded,
}

impl UploadState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Verifying => "verifying",
            Self::Committed => "committed",
            Self::Failed => "failed",
            Self::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Verifying,
            Self::Committed,
            Self::Failed,
            Self::Superseded,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }
}
