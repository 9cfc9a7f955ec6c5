//! DynamoDB items ⇄ typed rows. The only place that reads attribute values.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::layout::{
    Layout, alias_pk, attr, format_update_at, history_pk, history_sk, parse_update_at,
};
use crate::model::{Alias, AliasAction, AliasChange, AliasState, Artifact};
use crate::names::{AliasName, ArtifactName, Version, Weight};

pub type Item = HashMap<String, AttributeValue>;

/// A row of an artifact partition (`pk = name`).
#[derive(Debug, Clone)]
pub struct VersionRow {
    pub name: ArtifactName,
    pub version: Version,
    pub sha256: String,
    pub is_deleted: bool,
    pub update_at: OffsetDateTime,
    /// `update_at` as stored, byte for byte (any format the parse
    /// tolerates): set when the row is written and never changed after, so
    /// a write conditional on it applies to this very row, not to one a
    /// purge and a re-creation put in its place.
    pub stored_update_at: Option<String>,
    /// On LATEST: when a commit last recorded an unchanged upload on it,
    /// as stored.
    pub committed_at: Option<String>,
    pub size: Option<u64>,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Where the bytes are.
    pub location: Location,
    pub aliases: BTreeSet<String>,
    pub deleted_at: Option<OffsetDateTime>,
    pub reclaimed_at: Option<OffsetDateTime>,
    pub last_version: Option<u32>,
    pub upload_id: Option<String>,
    pub created_by: Option<String>,
    pub deleted_by_request: Option<String>,
    pub published_sha256: Option<String>,
    /// On LATEST: changes whenever LATEST is created anew (after a purge), so
    /// a publish that reserved its number before a purge cannot land after it.
    pub epoch: Option<String>,
    /// Numbered versions: deprecated or archived (absent: active), and why.
    pub status: Option<crate::model::VersionStatus>,
    pub status_message: Option<String>,
    /// The id of the event the row's last logged change put in the
    /// artifact's event log (`change_events`).
    pub logged_event: Option<String>,
}

/// Where the bytes of a row are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The blob store: `{prefix}.blobs/{name}/{sha256}`; every S3 version of
    /// that key holds exactly those bytes.
    Blob,
    /// The library's key of the row (`{prefix}/{name}/{LATEST|000042}`):
    /// pinned to an S3 object version on rows a previous release wrote, the
    /// key's current version on rows the library wrote.
    Library { version_id: Option<String> },
}

impl Location {
    fn decode(item: &Item, bytes_attr: &str, vid_attr: &str) -> Self {
        if s(item, bytes_attr) == Some(crate::layout::BYTES_BLOB) {
            Self::Blob
        } else {
            Self::Library {
                version_id: s(item, vid_attr).map(str::to_owned),
            }
        }
    }

    fn encode(&self, item: &mut Item, bytes_attr: &str, vid_attr: &str) {
        match self {
            Self::Blob => {
                item.insert(bytes_attr.into(), sv(crate::layout::BYTES_BLOB));
            }
            Self::Library {
                version_id: Some(v),
            } => {
                item.insert(vid_attr.into(), sv(v));
            }
            Self::Library { version_id: None } => {}
        }
    }

    /// The S3 key and object version that hold the bytes of `version` of
    /// `name`, whose SHA-256 is `sha256`.
    pub fn object(
        &self,
        layout: &Layout,
        name: &ArtifactName,
        version: Version,
        sha256: &str,
    ) -> (String, Option<String>) {
        match self {
            Self::Blob => (layout.blob_key(name, sha256), None),
            Self::Library { version_id } => (layout.object_key(name, version), version_id.clone()),
        }
    }

    /// Writes the location into a row's item.
    pub fn encode_row(&self, item: &mut Item) {
        self.encode(item, attr::BYTES, attr::S3_VERSION_ID);
    }
}

impl VersionRow {
    pub fn from_item(item: &Item) -> Result<Self> {
        let name = s(item, attr::PK)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| malformed(item, "pk"))?;
        Self::of_artifact(name, item)
    }

    /// A row read from an artifact's partition whole: `None` for an item
    /// whose sort key is no version and that names no bytes (the library's
    /// delete of version "1.2.3" leaves `01.2.3` holding only
    /// `is_deleted`); one that names bytes is an error, never skipped
    /// (whoever reads the partition may be about to delete what no row
    /// names).
    pub fn in_partition(item: &Item) -> Result<Option<Self>> {
        let odd_key = s(item, attr::SK).is_none_or(|sk| Version::from_sort_key(sk).is_err());
        if odd_key && s(item, attr::SHA256).is_none_or(str::is_empty) {
            return Ok(None);
        }
        Self::from_item(item).map(Some)
    }

    /// A row of `name`'s partition read without its key's `pk` (a
    /// projection: [`Self::ARTIFACT_ATTRIBUTES`]).
    pub fn of_artifact(name: ArtifactName, item: &Item) -> Result<Self> {
        let version = s(item, attr::SK)
            .and_then(|v| Version::from_sort_key(v).ok())
            .ok_or_else(|| malformed(item, "sk"))?;
        let is_deleted = matches!(item.get(attr::IS_DELETED), Some(AttributeValue::Bool(true)));
        // The library's delete of a version (or LATEST) that did not exist
        // is an unconditional UpdateItem: it creates `{pk, sk, is_deleted}`
        // and nothing else. A deleted row, never a live one, so it reads as
        // deleted (at the epoch), not as an error.
        let update_at = match time(item, attr::UPDATE_AT) {
            Some(at) => at,
            None if is_deleted => OffsetDateTime::UNIX_EPOCH,
            None => return Err(malformed(item, "update_at")),
        };
        Ok(Self {
            name,
            version,
            sha256: s(item, attr::SHA256).unwrap_or_default().to_owned(),
            is_deleted,
            update_at,
            stored_update_at: s(item, attr::UPDATE_AT).map(str::to_owned),
            committed_at: s(item, attr::COMMITTED_AT).map(str::to_owned),
            size: n(item, attr::SIZE),
            content_type: s(item, attr::CONTENT_TYPE).map(str::to_owned),
            metadata: match item.get(attr::METADATA) {
                Some(AttributeValue::M(m)) => m
                    .iter()
                    .filter_map(|(k, v)| v.as_s().ok().map(|v| (k.clone(), v.clone())))
                    .collect(),
                _ => BTreeMap::new(),
            },
            location: Location::decode(item, attr::BYTES, attr::S3_VERSION_ID),
            aliases: match item.get(attr::ALIASES) {
                Some(AttributeValue::Ss(set)) => set.iter().cloned().collect(),
                _ => BTreeSet::new(),
            },
            deleted_at: time(item, attr::DELETED_AT),
            reclaimed_at: time(item, attr::RECLAIMED_AT),
            last_version: n(item, attr::LAST_VERSION),
            upload_id: s(item, attr::UPLOAD_ID).map(str::to_owned),
            created_by: s(item, attr::CREATED_BY).map(str::to_owned),
            deleted_by_request: s(item, attr::DELETED_BY_REQUEST).map(str::to_owned),
            published_sha256: s(item, attr::PUBLISHED_SHA256).map(str::to_owned),
            epoch: s(item, attr::EPOCH).map(str::to_owned),
            status: s(item, attr::STATUS)
                .and_then(|v| v.parse().ok())
                .filter(|v| *v != crate::model::VersionStatus::Active),
            status_message: s(item, attr::STATUS_MESSAGE).map(str::to_owned),
            logged_event: s(item, attr::LOGGED_EVENT).map(str::to_owned),
        })
    }

    /// The attributes of the row its events tell (keys, bytes, size,
    /// creator, time, upload, deleted or not), as an item: what a writer
    /// that updates some of them gives `change_events::events_of_write`
    /// as the row before, and, changed, after.
    pub fn event_image(&self) -> Item {
        let mut item = version_key(&self.name, self.version);
        item.insert(attr::SHA256.into(), sv(&self.sha256));
        item.insert(attr::UPDATE_AT.into(), sv(format_update_at(self.update_at)));
        item.insert(
            attr::IS_DELETED.into(),
            AttributeValue::Bool(self.is_deleted),
        );
        if let Some(size) = self.size {
            item.insert(attr::SIZE.into(), nv(size));
        }
        if let Some(by) = &self.created_by {
            item.insert(attr::CREATED_BY.into(), sv(by));
        }
        if let Some(id) = &self.upload_id {
            item.insert(attr::UPLOAD_ID.into(), sv(id));
        }
        item
    }

    /// Whether a purge marked this LATEST (its event logged) and has yet to
    /// delete it: the purge's, not a writer's.
    pub fn marked_purged(&self) -> bool {
        self.logged_event
            .as_deref()
            .is_some_and(|mark| crate::change_events::is_purge_mark(&self.name, mark))
    }

    /// LATEST as a commit writes it: `read` (LATEST's item as read, or just
    /// its key when there is none) with the upload's content, pointing at
    /// its blob; the rest of the row is kept, and the bookkeeping it lacks
    /// added (the version counter from `seed`, a fresh epoch, and on a new
    /// LATEST the publish marker empty: never published). Over a LATEST
    /// the library wrote, the marker stays absent: its versions may hold
    /// these very bytes, which a publish then finds (SPEC 7.6).
    pub fn committed_latest(
        mut read: Item,
        upload: &UploadRow,
        actor: &str,
        seed: u32,
        now: OffsetDateTime,
        epoch: impl FnOnce() -> String,
    ) -> Item {
        let item = &mut read;
        let new_latest = !item.contains_key(attr::SHA256);
        item.insert(attr::SHA256.into(), sv(&upload.sha256));
        item.insert(attr::IS_DELETED.into(), AttributeValue::Bool(false));
        Location::Blob.encode_row(item);
        item.remove(attr::S3_VERSION_ID);
        item.remove(attr::DELETED_AT);
        item.insert(attr::UPDATE_AT.into(), sv(format_update_at(now)));
        item.insert(attr::SIZE.into(), nv(upload.size));
        item.insert(attr::CONTENT_TYPE.into(), sv(&upload.content_type));
        set_metadata(item, &upload.metadata);
        item.insert(attr::UPLOAD_ID.into(), sv(&upload.upload_id));
        item.insert(attr::CREATED_BY.into(), sv(actor));
        item.entry(attr::LAST_VERSION.into())
            .or_insert_with(|| nv(seed));
        if new_latest {
            item.insert(attr::PUBLISHED_SHA256.into(), sv(""));
        }
        item.entry(attr::EPOCH.into())
            .or_insert_with(|| sv(epoch()));
        read
    }

    /// The attributes [`Self::to_artifact`] reads besides the name (the
    /// partition key, which the reader knows): listings ask for these only
    /// (decoded by [`Self::of_artifact`]; every attribute read back costs).
    pub const ARTIFACT_ATTRIBUTES: [&'static str; 9] = [
        attr::SK,
        attr::SHA256,
        attr::UPDATE_AT,
        attr::SIZE,
        attr::CONTENT_TYPE,
        attr::METADATA,
        attr::CREATED_BY,
        attr::STATUS,
        attr::STATUS_MESSAGE,
    ];

    /// [`Self::ARTIFACT_ATTRIBUTES`] as a projection expression over
    /// placeholder names (`size` is a reserved word), with those names.
    pub fn artifact_projection() -> (String, HashMap<String, String>) {
        let names: HashMap<String, String> = Self::ARTIFACT_ATTRIBUTES
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("#a{i}"), (*a).to_owned()))
            .collect();
        let expression = (0..Self::ARTIFACT_ATTRIBUTES.len())
            .map(|i| format!("#a{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        (expression, names)
    }

    pub fn to_artifact(&self, layout: &Layout) -> Artifact {
        Artifact {
            name: self.name.clone(),
            version: self.version,
            update_at: self.update_at,
            sha256: self.sha256.clone(),
            size: self.size,
            content_type: self.content_type.clone(),
            metadata: self.metadata.clone(),
            s3uri: layout.s3uri(&self.name, self.version),
            created_by: self.created_by.clone(),
            download_url: None,
            status: self.status,
            status_message: self.status.and(self.status_message.clone()),
        }
    }

    /// Visible to readers: not soft-deleted.
    pub fn is_live(&self) -> bool {
        !self.is_deleted
    }
}

/// [`VersionRow::is_live`] as a condition or filter over `#is_deleted` and
/// `:false`: a row without the flag is live, as `from_item` reads it. Every
/// write conditioned on a live row and every filter of live rows says it
/// so, so that a row that reads live also passes the condition (a write
/// refused on a row that reads live again was refused on another state).
pub const LIVE: &str = "(attribute_not_exists(#is_deleted) OR #is_deleted = :false)";

/// What an alias row remembers about one of its targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef {
    pub version: Version,
    /// Copied from the immutable version row when the alias was written;
    /// absent for LATEST (mutable) and for rows the Python library wrote.
    pub sha256: Option<String>,
    pub location: Location,
    /// The version's status when the alias was written (or since refreshed
    /// by a status change): resolve warns of a deprecated one.
    pub status: Option<crate::model::VersionStatus>,
}

/// A row of an alias partition (`pk = __{name}-alias`).
#[derive(Debug, Clone)]
pub struct AliasRow {
    pub name: ArtifactName,
    pub alias: AliasName,
    pub update_at: OffsetDateTime,
    pub primary: TargetRef,
    pub secondary: Option<(TargetRef, Weight)>,
    /// Absent on rows the Python library wrote.
    pub revision: Option<u64>,
    /// The request that wrote the row (absent on the library's rows).
    pub token: Option<String>,
    /// The rollout that holds the alias (SPEC 10.1): only it moves the
    /// alias until it ends.
    pub rollout: Option<String>,
}

impl AliasRow {
    pub fn from_item(name: &ArtifactName, item: &Item) -> Result<Self> {
        let alias = s(item, attr::SK)
            .map(AliasName::stored)
            .ok_or_else(|| malformed(item, "sk"))?;
        let version = s(item, attr::VERSION)
            .and_then(|v| Version::from_sort_key(v).ok())
            .ok_or_else(|| malformed(item, "version"))?;
        let secondary = match s(item, attr::SECONDARY_VERSION) {
            None => None,
            Some(v) => {
                let version =
                    Version::from_sort_key(v).map_err(|_| malformed(item, "secondary_version"))?;
                let weight = n::<i64>(item, attr::SECONDARY_VERSION_WEIGHT)
                    .and_then(|w| Weight::new(w).ok())
                    .unwrap_or(Weight::new(0).map_err(|_| malformed(item, "weight"))?);
                Some((
                    TargetRef {
                        version,
                        sha256: s(item, attr::SECONDARY_SHA256).map(str::to_owned),
                        location: Location::decode(
                            item,
                            attr::SECONDARY_BYTES,
                            attr::SECONDARY_S3_VERSION_ID,
                        ),
                        status: s(item, attr::SECONDARY_STATUS).and_then(|v| v.parse().ok()),
                    },
                    weight,
                ))
            }
        };
        Ok(Self {
            name: name.clone(),
            alias,
            update_at: time(item, attr::UPDATE_AT).ok_or_else(|| malformed(item, "update_at"))?,
            primary: TargetRef {
                version,
                sha256: s(item, attr::VERSION_SHA256).map(str::to_owned),
                location: Location::decode(item, attr::VERSION_BYTES, attr::VERSION_S3_VERSION_ID),
                status: s(item, attr::VERSION_STATUS).and_then(|v| v.parse().ok()),
            },
            secondary,
            revision: n(item, attr::REVISION),
            token: s(item, attr::REQUEST_TOKEN).map(str::to_owned),
            rollout: s(item, attr::ROLLOUT).map(str::to_owned),
        })
    }

    /// The item, with the library's attributes and ours.
    pub fn to_item(&self) -> Item {
        let mut item = key(alias_pk(&self.name), self.alias.as_str());
        item.insert(attr::UPDATE_AT.into(), sv(format_update_at(self.update_at)));
        item.insert(attr::VERSION.into(), sv(self.primary.version.sort_key()));
        insert_target(
            &mut item,
            [
                attr::VERSION_SHA256,
                attr::VERSION_BYTES,
                attr::VERSION_S3_VERSION_ID,
            ],
            &self.primary,
        );
        if let Some(status) = self.primary.status {
            item.insert(attr::VERSION_STATUS.into(), sv(status.as_str()));
        }
        if let Some((secondary, weight)) = &self.secondary {
            if let Some(status) = secondary.status {
                item.insert(attr::SECONDARY_STATUS.into(), sv(status.as_str()));
            }
            item.insert(
                attr::SECONDARY_VERSION.into(),
                sv(secondary.version.sort_key()),
            );
            item.insert(attr::SECONDARY_VERSION_WEIGHT.into(), nv(weight.get()));
            insert_target(
                &mut item,
                [
                    attr::SECONDARY_SHA256,
                    attr::SECONDARY_BYTES,
                    attr::SECONDARY_S3_VERSION_ID,
                ],
                secondary,
            );
        }
        if let Some(revision) = self.revision {
            item.insert(attr::REVISION.into(), nv(revision));
        }
        if let Some(token) = &self.token {
            item.insert(attr::REQUEST_TOKEN.into(), sv(token));
        }
        if let Some(rollout) = &self.rollout {
            item.insert(attr::ROLLOUT.into(), sv(rollout));
        }
        item
    }

    pub fn state(&self) -> AliasState {
        AliasState {
            version: self.primary.version,
            secondary_version: self.secondary.as_ref().map(|(t, _)| t.version),
            secondary_version_weight: self.secondary.as_ref().map(|(_, w)| *w),
        }
    }

    pub fn to_alias(&self, layout: &Layout) -> Alias {
        Alias {
            name: self.name.clone(),
            alias: self.alias.clone(),
            update_at: self.update_at,
            version: self.primary.version,
            secondary_version: self.secondary.as_ref().map(|(t, _)| t.version),
            secondary_version_weight: self.secondary.as_ref().map(|(_, w)| *w),
            version_s3uri: layout.s3uri(&self.name, self.primary.version),
            secondary_version_s3uri: self
                .secondary
                .as_ref()
                .map(|(t, _)| layout.s3uri(&self.name, t.version)),
            revision: self.revision.unwrap_or(0),
        }
    }

    /// The versions this alias keeps alive.
    pub fn targets(&self) -> impl Iterator<Item = Version> + '_ {
        std::iter::once(self.primary.version).chain(self.secondary.as_ref().map(|(t, _)| t.version))
    }
}

fn insert_target(item: &mut Item, [sha, bytes, vid]: [&str; 3], target: &TargetRef) {
    if let Some(hash) = &target.sha256 {
        item.insert(sha.into(), sv(hash));
    }
    target.location.encode(item, bytes, vid);
}

/// One entry of the alias history partition (`pk = __{name}-history`,
/// `sk = {alias}/{revision:012}`), written in the same transaction as the
/// change it records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub name: ArtifactName,
    pub alias: String,
    pub change: AliasChange,
    pub token: String,
}

impl HistoryRow {
    pub fn to_item(&self) -> Item {
        let c = &self.change;
        let mut item = key(history_pk(&self.name), history_sk(&self.alias, c.revision));
        item.insert(attr::ALIAS.into(), sv(&self.alias));
        item.insert(attr::REVISION.into(), nv(c.revision));
        item.insert(attr::UPDATE_AT.into(), sv(format_update_at(c.at)));
        item.insert(attr::ACTOR.into(), sv(&c.actor));
        item.insert(attr::ACTION.into(), sv(c.action.as_str()));
        item.insert(attr::REQUEST_TOKEN.into(), sv(&self.token));
        if let Some(state) = c.state() {
            item.extend(state_attributes(&state));
        }
        if let Some(previous) = &c.previous {
            item.insert(
                attr::PREVIOUS.into(),
                AttributeValue::M(state_attributes(previous)),
            );
        }
        if let Some(message) = &c.message {
            item.insert(attr::MESSAGE.into(), sv(message));
        }
        item
    }

    pub fn from_item(name: &ArtifactName, item: &Item) -> Result<Self> {
        let state = match state_from(item) {
            Some(Ok(state)) => Some(state),
            Some(Err(())) => return Err(malformed(item, "version")),
            None => None,
        };
        let previous = match item.get(attr::PREVIOUS) {
            Some(AttributeValue::M(m)) => Some(
                state_from(m)
                    .and_then(Result::ok)
                    .ok_or_else(|| malformed(item, "previous"))?,
            ),
            _ => None,
        };
        Ok(Self {
            name: name.clone(),
            alias: s(item, attr::ALIAS)
                .ok_or_else(|| malformed(item, "alias"))?
                .to_owned(),
            token: s(item, attr::REQUEST_TOKEN).unwrap_or_default().to_owned(),
            change: AliasChange {
                revision: n(item, attr::REVISION).ok_or_else(|| malformed(item, "revision"))?,
                at: time(item, attr::UPDATE_AT).ok_or_else(|| malformed(item, "update_at"))?,
                actor: s(item, attr::ACTOR).unwrap_or_default().to_owned(),
                action: s(item, attr::ACTION)
                    .and_then(AliasAction::parse)
                    .ok_or_else(|| malformed(item, "action"))?,
                version: state.as_ref().map(|s| s.version),
                secondary_version: state.as_ref().and_then(|s| s.secondary_version),
                secondary_version_weight: state.as_ref().and_then(|s| s.secondary_version_weight),
                previous,
                message: s(item, attr::MESSAGE).map(str::to_owned),
            },
        })
    }
}

/// A pending (or finished) upload: `pk = __{name}-upload`, `sk = upload id`.
/// Expired rows are deleted by DynamoDB's TTL on `expires_at`, eventually;
/// expiry itself is enforced by conditions on `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRow {
    pub name: ArtifactName,
    pub upload_id: String,
    pub sha256: String,
    pub size: u64,
    pub content_type: String,
    pub metadata: BTreeMap<String, String>,
    pub actor: String,
    pub state: UploadState,
    /// Unix seconds.
    pub expires_at: i64,
    pub update_at: OffsetDateTime,
    /// Set with `state = committed`: whether the commit changed LATEST.
    pub changed: Option<bool>,
    /// A multipart upload: S3's upload id and how the bytes are cut.
    pub multipart: Option<MultipartUpload>,
    /// Verifying (and after): the S3 object version of the blob key that
    /// is being verified; only it can become LATEST's bytes.
    pub blob_version: Option<String>,
    /// Verifying: bytes hashed so far and the hash state after them.
    pub verified_bytes: u64,
    pub hash_state: Option<Vec<u8>>,
    /// Failed or superseded: why.
    pub reason: Option<String>,
    /// Multipart, once committed (handed to verification): when, in the
    /// `update_at` format, so that it compares with LATEST's `update_at`
    /// as DynamoDB compares strings. A verification only commits over a
    /// LATEST older than this (commits are ordered by commit, not by the
    /// end of their verification).
    pub committed_at: Option<String>,
    /// Multipart, once committed: LATEST as that commit read it
    /// (`blob_rules::latest_seen`).
    pub latest_seen: Option<String>,
    /// Pending multipart: when (unix seconds) a commit last started
    /// completing its parts.
    pub completing_at: Option<i64>,
    /// Verifying: whether `blob_version` is the object this upload's own
    /// CompleteMultipartUpload created (only then may a failed
    /// verification delete it).
    pub blob_owned: bool,
    /// Multipart committed with a pipeline (publish, alias move): what to
    /// do once verified (`Pipeline::to_json`), and what it did (JSON:
    /// `{"published", "alias"}` or `{"error"}`).
    pub pipeline: Option<String>,
    pub pipeline_result: Option<String>,
}

/// The S3 side of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartUpload {
    pub s3_upload_id: String,
    pub plan: crate::model::MultipartPlan,
}

pub use crate::model::UploadState;

impl UploadRow {
    pub fn to_item(&self) -> Item {
        let mut item = key(crate::layout::upload_pk(&self.name), &self.upload_id);
        item.insert(attr::SHA256.into(), sv(&self.sha256));
        item.insert(attr::SIZE.into(), nv(self.size));
        item.insert(attr::CONTENT_TYPE.into(), sv(&self.content_type));
        item.insert(attr::METADATA.into(), string_map(&self.metadata));
        item.insert(attr::ACTOR.into(), sv(&self.actor));
        item.insert(attr::STATE.into(), sv(self.state.as_str()));
        item.insert(attr::EXPIRES_AT.into(), nv(self.expires_at));
        item.insert(attr::UPDATE_AT.into(), sv(format_update_at(self.update_at)));
        if let Some(changed) = self.changed {
            item.insert(attr::CHANGED.into(), AttributeValue::Bool(changed));
        }
        if let Some(mp) = &self.multipart {
            item.insert(attr::S3_UPLOAD_ID.into(), sv(&mp.s3_upload_id));
            item.insert(attr::PART_SIZE.into(), nv(mp.plan.part_size));
            item.insert(attr::PART_COUNT.into(), nv(mp.plan.part_count));
        }
        if let Some(v) = &self.blob_version {
            item.insert(attr::BLOB_VERSION.into(), sv(v));
        }
        if self.verified_bytes > 0 {
            item.insert(attr::VERIFIED_BYTES.into(), nv(self.verified_bytes));
        }
        if let Some(h) = &self.hash_state {
            item.insert(
                attr::HASH_STATE.into(),
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(h.clone())),
            );
        }
        if let Some(r) = &self.reason {
            item.insert(attr::REASON.into(), sv(r));
        }
        if let Some(at) = &self.committed_at {
            item.insert(attr::COMMITTED_AT.into(), sv(at));
        }
        if let Some(seen) = &self.latest_seen {
            item.insert(attr::LATEST_SEEN.into(), sv(seen));
        }
        if self.blob_owned {
            item.insert(attr::BLOB_OWNED.into(), AttributeValue::Bool(true));
        }
        if let Some(p) = &self.pipeline {
            item.insert(attr::PIPELINE.into(), sv(p));
        }
        if let Some(p) = &self.pipeline_result {
            item.insert(attr::PIPELINE_RESULT.into(), sv(p));
        }
        item
    }

    /// The upload row as read, now committed (`changed`: whether LATEST
    /// changed), everything else kept.
    pub fn committed_item(mut item: Item, changed: bool, now: OffsetDateTime) -> Item {
        item.insert(attr::STATE.into(), sv(UploadState::Committed.as_str()));
        item.insert(attr::CHANGED.into(), AttributeValue::Bool(changed));
        item.insert(attr::UPDATE_AT.into(), sv(format_update_at(now)));
        item
    }

    pub fn from_item(name: &ArtifactName, item: &Item) -> Result<Self> {
        let state = s(item, attr::STATE)
            .and_then(UploadState::parse)
            .ok_or_else(|| malformed(item, "state"))?;
        let multipart = match (
            s(item, attr::S3_UPLOAD_ID),
            n(item, attr::PART_SIZE),
            n(item, attr::PART_COUNT),
        ) {
            (Some(id), Some(part_size), Some(part_count)) => Some(MultipartUpload {
                s3_upload_id: id.to_owned(),
                plan: crate::model::MultipartPlan {
                    part_size,
                    part_count,
                },
            }),
            _ => None,
        };
        Ok(Self {
            name: name.clone(),
            upload_id: s(item, attr::SK)
                .ok_or_else(|| malformed(item, "sk"))?
                .to_owned(),
            sha256: s(item, attr::SHA256)
                .ok_or_else(|| malformed(item, "sha256"))?
                .to_owned(),
            size: n(item, attr::SIZE).ok_or_else(|| malformed(item, "size"))?,
            content_type: s(item, attr::CONTENT_TYPE).unwrap_or_default().to_owned(),
            metadata: match item.get(attr::METADATA) {
                Some(AttributeValue::M(m)) => m
                    .iter()
                    .filter_map(|(k, v)| v.as_s().ok().map(|v| (k.clone(), v.clone())))
                    .collect(),
                _ => BTreeMap::new(),
            },
            actor: s(item, attr::ACTOR).unwrap_or_default().to_owned(),
            state,
            expires_at: n(item, attr::EXPIRES_AT).ok_or_else(|| malformed(item, "expires_at"))?,
            update_at: time(item, attr::UPDATE_AT).ok_or_else(|| malformed(item, "update_at"))?,
            changed: item
                .get(attr::CHANGED)
                .and_then(|v| v.as_bool().ok())
                .copied(),
            multipart,
            blob_version: s(item, attr::BLOB_VERSION).map(str::to_owned),
            verified_bytes: n(item, attr::VERIFIED_BYTES).unwrap_or(0),
            hash_state: item
                .get(attr::HASH_STATE)
                .and_then(|v| v.as_b().ok())
                .map(|b| b.as_ref().to_vec()),
            reason: s(item, attr::REASON).map(str::to_owned),
            committed_at: s(item, attr::COMMITTED_AT).map(str::to_owned),
            latest_seen: s(item, attr::LATEST_SEEN).map(str::to_owned),
            completing_at: n(item, attr::COMPLETING_AT),
            blob_owned: matches!(item.get(attr::BLOB_OWNED), Some(AttributeValue::Bool(true))),
            pipeline: s(item, attr::PIPELINE).map(str::to_owned),
            pipeline_result: s(item, attr::PIPELINE_RESULT).map(str::to_owned),
        })
    }

    /// LATEST as this upload's commit made it.
    pub fn to_artifact(&self, layout: &Layout) -> Artifact {
        Artifact {
            name: self.name.clone(),
            version: Version::Latest,
            update_at: self.update_at,
            sha256: self.sha256.clone(),
            size: Some(self.size),
            content_type: Some(self.content_type.clone()),
            metadata: self.metadata.clone(),
            s3uri: layout.s3uri(&self.name, Version::Latest),
            created_by: Some(self.actor.clone()),
            download_url: None,
            status: None,
            status_message: None,
        }
    }
}

/// The verified-blob row of `sha256` (see [`crate::layout::verified_pk`]).
pub fn verified_blob_item(
    name: &ArtifactName,
    sha256: &str,
    blob: &crate::blob_rules::VerifiedBlob,
    upload_id: &str,
    now: OffsetDateTime,
) -> Item {
    let mut item = key(crate::layout::verified_pk(name), sha256);
    item.insert(attr::BLOB_VERSION.into(), sv(&blob.version));
    item.insert(attr::SIZE.into(), nv(blob.size));
    item.insert(attr::UPLOAD_ID.into(), sv(upload_id));
    item.insert(attr::UPDATE_AT.into(), sv(format_update_at(now)));
    item
}

pub fn verified_blob(item: &Item) -> Option<crate::blob_rules::VerifiedBlob> {
    Some(crate::blob_rules::VerifiedBlob {
        version: s(item, attr::BLOB_VERSION)?.to_owned(),
        size: n(item, attr::SIZE)?,
    })
}

/// Sets a version row's user metadata; none is no attribute (an absent
/// attribute reads as no metadata, and costs nothing to store or read back).
pub fn set_metadata(item: &mut Item, metadata: &BTreeMap<String, String>) {
    if metadata.is_empty() {
        item.remove(attr::METADATA);
    } else {
        item.insert(attr::METADATA.into(), string_map(metadata));
    }
}

pub fn string_map(map: &BTreeMap<String, String>) -> AttributeValue {
    AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), sv(v))).collect())
}

fn state_attributes(state: &AliasState) -> Item {
    let mut item = HashMap::from([(attr::VERSION.to_owned(), sv(state.version.sort_key()))]);
    if let (Some(v), Some(w)) = (state.secondary_version, state.secondary_version_weight) {
        item.insert(attr::SECONDARY_VERSION.into(), sv(v.sort_key()));
        item.insert(attr::SECONDARY_VERSION_WEIGHT.into(), nv(w.get()));
    }
    item
}

/// The targets stored in `item`: `None` when it has none, `Some(Err)` when
/// they are malformed.
fn state_from(item: &Item) -> Option<std::result::Result<AliasState, ()>> {
    let version = s(item, attr::VERSION)?;
    Some((|| {
        let version = Version::from_sort_key(version).map_err(|_| ())?;
        let secondary_version = s(item, attr::SECONDARY_VERSION)
            .map(Version::from_sort_key)
            .transpose()
            .map_err(|_| ())?;
        let secondary_version_weight = n::<i64>(item, attr::SECONDARY_VERSION_WEIGHT)
            .map(Weight::new)
            .transpose()
            .map_err(|_| ())?;
        Ok(AliasState {
            version,
            secondary_version,
            secondary_version_weight: secondary_version.and(secondary_version_weight),
        })
    })())
}

pub fn sv(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn nv(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(attr::PK.to_owned(), sv(pk)), (attr::SK.to_owned(), sv(sk))])
}

/// The key of `name`'s row in the registry of artifacts this service
/// committed ([`crate::layout::REGISTRY_PK`]).
pub fn registry_key(name: &crate::names::ArtifactName) -> Item {
    key(crate::layout::REGISTRY_PK, format!("{name}/"))
}

pub fn version_key(name: &ArtifactName, version: Version) -> Item {
    key(name.as_str(), version.sort_key())
}

fn s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn n<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn time(item: &Item, name: &str) -> Option<OffsetDateTime> {
    s(item, name).and_then(parse_update_at)
}

fn malformed(item: &Item, field: &str) -> Error {
    let pk = s(item, attr::PK).unwrap_or("?");
    let sk = s(item, attr::SK).unwrap_or("?");
    Error::internal(
        "decode row",
        format!("row pk={pk:?} sk={sk:?} has a missing or malformed {field}"),
    )
}

/// A rollout (`pk = __{name}-rollout`, `sk = {alias}/{id}`), SPEC 10.1.
/// Its plan is stored as the JSON the API shows; the driver rewrites only
/// `state`, `step`, `next_step_at`, `revision`, `reason`, `update_at`, each
/// time conditional on what it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRow {
    pub name: ArtifactName,
    pub alias: AliasName,
    pub id: String,
    /// The new version.
    pub version: Version,
    /// The alias before the rollout: where an abort takes it back.
    pub from: AliasState,
    pub steps: Vec<crate::rollout::Step>,
    pub alarms: Vec<String>,
    pub state: crate::rollout::RolloutState,
    /// The step applied last (0-based).
    pub step: usize,
    /// When the next step is due (active rollouts only).
    pub next_step_at: Option<OffsetDateTime>,
    /// The alias's revision after the rollout's last change of it.
    pub revision: u64,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub started_by: String,
    pub started_at: OffsetDateTime,
    pub update_at: OffsetDateTime,
}

impl RolloutRow {
    pub fn sort_key(alias: &AliasName, id: &str) -> String {
        format!("{alias}/{id}")
    }

    pub fn to_item(&self) -> Item {
        let mut item = key(
            crate::layout::rollout_pk(&self.name),
            Self::sort_key(&self.alias, &self.id),
        );
        item.insert(attr::ROLLOUT_ID.into(), sv(&self.id));
        item.insert(attr::ALIAS.into(), sv(self.alias.as_str()));
        item.insert(attr::VERSION.into(), sv(self.version.sort_key()));
        item.insert(
            attr::FROM.into(),
            AttributeValue::M(state_attributes(&self.from)),
        );
        let steps: Vec<serde_json::Value> = self
            .steps
            .iter()
            .map(|s| serde_json::json!({"weight": s.weight, "hold_secs": s.hold.map(|h| h.as_secs())}))
            .collect();
        item.insert(
            attr::STEPS.into(),
            sv(serde_json::Value::Array(steps).to_string()),
        );
        item.insert(
            attr::ALARMS.into(),
            AttributeValue::L(self.alarms.iter().map(sv).collect()),
        );
        item.insert(attr::STATE.into(), sv(self.state.as_str()));
        item.insert(attr::STEP.into(), nv(self.step));
        if let Some(at) = self.next_step_at {
            item.insert(attr::NEXT_STEP_AT.into(), sv(format_update_at(at)));
        }
        item.insert(attr::REVISION.into(), nv(self.revision));
        if let Some(reason) = &self.reason {
            item.insert(attr::REASON.into(), sv(reason));
        }
        if let Some(message) = &self.message {
            item.insert(attr::MESSAGE.into(), sv(message));
        }
        item.insert(attr::STARTED_BY.into(), sv(&self.started_by));
        item.insert(
            attr::STARTED_AT.into(),
            sv(format_update_at(self.started_at)),
        );
        item.insert(attr::UPDATE_AT.into(), sv(format_update_at(self.update_at)));
        item
    }

    pub fn from_item(name: &ArtifactName, item: &Item) -> Result<Self> {
        let steps: Vec<serde_json::Value> = s(item, attr::STEPS)
            .and_then(|t| serde_json::from_str(t).ok())
            .ok_or_else(|| malformed(item, "steps"))?;
        let steps = steps
            .iter()
            .map(|v| {
                Some(crate::rollout::Step {
                    weight: u8::try_from(v.get("weight")?.as_u64()?).ok()?,
                    hold: v
                        .get("hold_secs")
                        .and_then(serde_json::Value::as_u64)
                        .map(std::time::Duration::from_secs),
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed(item, "steps"))?;
        let from = match item.get(attr::FROM) {
            Some(AttributeValue::M(m)) => state_from(m).and_then(|r| r.ok()),
            _ => None,
        }
        .ok_or_else(|| malformed(item, "from"))?;
        Ok(Self {
            name: name.clone(),
            alias: s(item, attr::ALIAS)
                .map(AliasName::stored)
                .ok_or_else(|| malformed(item, "alias"))?,
            id: s(item, attr::ROLLOUT_ID)
                .ok_or_else(|| malformed(item, "rollout_id"))?
                .to_owned(),
            version: s(item, attr::VERSION)
                .and_then(|v| Version::from_sort_key(v).ok())
                .ok_or_else(|| malformed(item, "version"))?,
            from,
            steps,
            alarms: match item.get(attr::ALARMS) {
                Some(AttributeValue::L(l)) => {
                    l.iter().filter_map(|v| v.as_s().ok().cloned()).collect()
                }
                _ => Vec::new(),
            },
            state: s(item, attr::STATE)
                .and_then(|v| crate::rollout::RolloutState::parse(v).ok())
                .ok_or_else(|| malformed(item, "state"))?,
            step: n(item, attr::STEP).ok_or_else(|| malformed(item, "step"))?,
            next_step_at: time(item, attr::NEXT_STEP_AT),
            revision: n(item, attr::REVISION).ok_or_else(|| malformed(item, "revision"))?,
            reason: s(item, attr::REASON).map(str::to_owned),
            message: s(item, attr::MESSAGE).map(str::to_owned),
            started_by: s(item, attr::STARTED_BY).unwrap_or_default().to_owned(),
            started_at: time(item, attr::STARTED_AT)
                .ok_or_else(|| malformed(item, "started_at"))?,
            update_at: time(item, attr::UPDATE_AT).ok_or_else(|| malformed(item, "update_at"))?,
        })
    }

    /// The API's shape (SPEC 10.1).
    pub fn to_rollout(&self) -> crate::model::Rollout {
        crate::model::Rollout {
            id: self.id.clone(),
            name: self.name.clone(),
            alias: self.alias.clone(),
            version: self.version,
            from: self.from.clone(),
            state: self.state,
            step: self.step + 1,
            weight: self.steps.get(self.step).map_or(100, |s| s.weight),
            steps: self.steps.clone(),
            next_step_at: self.next_step_at,
            alarms: self.alarms.clone(),
            reason: self.reason.clone(),
            message: self.message.clone(),
            revision: self.revision,
            started_by: self.started_by.clone(),
            started_at: self.started_at,
            update_at: self.update_at,
        }
    }
}

/// The bytes a new version row records (LATEST's, or a commit's upload's).
pub struct VersionBytes<'a> {
    pub sha256: &'a str,
    pub size: Option<u64>,
    pub content_type: Option<&'a str>,
    pub metadata: &'a std::collections::BTreeMap<String, String>,
}

/// The row of a version being published: `bytes` at the blob key,
/// created by `actor`, marked with the attempt's `token` (a write whose
/// answer was lost is recognised by it).
pub fn version_item(
    name: &ArtifactName,
    version: Version,
    bytes: VersionBytes<'_>,
    actor: &str,
    token: &str,
) -> Item {
    let mut item = version_key(name, version);
    item.insert(attr::SHA256.into(), sv(bytes.sha256));
    item.insert(attr::IS_DELETED.into(), AttributeValue::Bool(false));
    item.insert(
        attr::UPDATE_AT.into(),
        sv(format_update_at(crate::layout::now())),
    );
    if let Some(size) = bytes.size {
        item.insert(attr::SIZE.into(), nv(size));
    }
    if let Some(ct) = bytes.content_type {
        item.insert(attr::CONTENT_TYPE.into(), sv(ct));
    }
    set_metadata(&mut item, bytes.metadata);
    item.insert(attr::CREATED_BY.into(), sv(actor));
    item.insert(attr::RESERVE_TOKEN.into(), sv(token));
    Location::Blob.encode_row(&mut item);
    item
}

/// A fresh LATEST epoch.
pub fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
