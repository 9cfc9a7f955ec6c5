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
}

/// Where an alias sends one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    pub name: ArtifactName,
    pub alias: AliasName,
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

/// A presigned PUT the client sends its bytes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadTicket {
    pub upload_id: String,
    pub url: String,
    pub method: String,
    pub headers: BTreeMap<String, String>,
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
