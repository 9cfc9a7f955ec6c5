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
}

impl Default for ChangeRequest {
    fn default() -> Self {
        Self {
            actor: LOCAL_ACTOR.to_owned(),
            message: None,
            precondition: Precondition::None,
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
    /// Only if the alias does not exist (`If-None-Match: *`).
    Absent,
    /// Only if the alias exists (`If-Match: *`).
    Exists,
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
