//! DynamoDB items ⇄ typed rows. The only place that reads attribute values.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::layout::{Layout, attr, parse_update_at};
use crate::model::{Alias, Artifact};
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
    pub size: Option<u64>,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub s3_version_id: Option<String>,
    pub aliases: BTreeSet<String>,
    pub deleted_at: Option<OffsetDateTime>,
    pub reclaimed_at: Option<OffsetDateTime>,
    pub last_version: Option<u32>,
    pub upload_id: Option<String>,
    pub upload_changed: Option<bool>,
}

impl VersionRow {
    pub fn from_item(item: &Item) -> Result<Self> {
        let name = s(item, attr::PK)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| malformed(item, "pk"))?;
        let version = s(item, attr::SK)
            .and_then(|v| Version::from_sort_key(v).ok())
            .ok_or_else(|| malformed(item, "sk"))?;
        Ok(Self {
            name,
            version,
            sha256: s(item, attr::SHA256).unwrap_or_default().to_owned(),
            is_deleted: matches!(item.get(attr::IS_DELETED), Some(AttributeValue::Bool(true))),
            update_at: time(item, attr::UPDATE_AT).ok_or_else(|| malformed(item, "update_at"))?,
            size: n(item, attr::SIZE),
            content_type: s(item, attr::CONTENT_TYPE).map(str::to_owned),
            metadata: match item.get(attr::METADATA) {
                Some(AttributeValue::M(m)) => m
                    .iter()
                    .filter_map(|(k, v)| v.as_s().ok().map(|v| (k.clone(), v.clone())))
                    .collect(),
                _ => BTreeMap::new(),
            },
            s3_version_id: s(item, attr::S3_VERSION_ID).map(str::to_owned),
            aliases: match item.get(attr::ALIASES) {
                Some(AttributeValue::Ss(set)) => set.iter().cloned().collect(),
                _ => BTreeSet::new(),
            },
            deleted_at: time(item, attr::DELETED_AT),
            reclaimed_at: time(item, attr::RECLAIMED_AT),
            last_version: n(item, attr::LAST_VERSION),
            upload_id: s(item, attr::UPLOAD_ID).map(str::to_owned),
            upload_changed: item
                .get(attr::UPLOAD_CHANGED)
                .and_then(|v| v.as_bool().ok())
                .copied(),
        })
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
            download_url: None,
        }
    }

    /// Visible to readers: not soft-deleted.
    pub fn is_live(&self) -> bool {
        !self.is_deleted
    }
}

/// What an alias row remembers about one of its targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef {
    pub version: Version,
    /// Copied from the immutable version row when the alias was written;
    /// absent for LATEST (mutable) and for rows the Python library wrote.
    pub sha256: Option<String>,
    pub s3_version_id: Option<String>,
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
}

impl AliasRow {
    pub fn from_item(name: &ArtifactName, item: &Item) -> Result<Self> {
        let alias = s(item, attr::SK)
            .and_then(|v| v.parse().ok())
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
                        s3_version_id: s(item, attr::SECONDARY_S3_VERSION_ID).map(str::to_owned),
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
                s3_version_id: s(item, attr::VERSION_S3_VERSION_ID).map(str::to_owned),
            },
            secondary,
            revision: n(item, attr::REVISION),
        })
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
        }
    }

    /// The versions this alias keeps alive.
    pub fn targets(&self) -> impl Iterator<Item = Version> + '_ {
        std::iter::once(self.primary.version).chain(self.secondary.as_ref().map(|(t, _)| t.version))
    }
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
    Error::Upstream {
        operation: "decode row",
        source: format!("row pk={pk:?} sk={sk:?} has a missing or malformed {field}").into(),
    }
}
