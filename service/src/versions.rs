//! Versions: read, list, soft-delete.

use std::collections::BTreeMap;

use artifact_store::table::SoftDelete;
use artifact_store::version_items::{self, VersionFilter};

use super::tx::TransactFailure;
use super::{MAX_ATTEMPTS, Repository, decode_cursor, encode_cursor, page_size};
use crate::error::{Error, Result};
use crate::layout::alias_pk;
use crate::model::{Artifact, Page};
use crate::names::{ArtifactName, Sha256, Version};
use crate::rows::{AliasRow, VersionRow};

impl Repository {
    /// One live version with a presigned download URL. AWS calls: 1 (GetItem).
    pub async fn get_version(&self, name: &ArtifactName, version: Version) -> Result<Artifact> {
        let row = self.get_live_row(name, version).await?;
        let mut artifact = row.to_artifact(&self.layout);
        artifact.download_url = Some(
            self.download_url(name, version, &row.sha256, &row.location)
                .await?,
        );
        Ok(artifact)
    }

    /// Live versions, LATEST first, then newest first. AWS calls: 1 per page.
    pub async fn list_versions(
        &self,
        name: &ArtifactName,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<Artifact>> {
        self.list_versions_holding(name, limit, cursor, None).await
    }

    /// [`Self::list_versions`], only those whose bytes are `content` when
    /// given (`?sha256=`): which versions are this build? A page may then hold
    /// fewer than `limit` items while `next_cursor` says more may follow.
    /// Only the attributes an [`Artifact`] shows are read back
    /// ([`VersionRow::ARTIFACT_ATTRIBUTES`]). AWS calls: 1 per page.
    pub async fn list_versions_holding(
        &self,
        name: &ArtifactName,
        limit: Option<u32>,
        cursor: Option<&str>,
        content: Option<&Sha256>,
    ) -> Result<Page<Artifact>> {
        self.list_versions_matching(name, limit, cursor, content, &BTreeMap::new())
            .await
    }

    /// [`Self::list_versions_holding`], also only those whose user metadata
    /// holds every `metadata` entry (`?meta.k=v`, SPEC 10.3). AWS calls: 1
    /// per page.
    pub async fn list_versions_matching(
        &self,
        name: &ArtifactName,
        limit: Option<u32>,
        cursor: Option<&str>,
        content: Option<&Sha256>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Page<Artifact>> {
        let limit = page_size(limit)?;
        let start = decode_cursor(name.as_str(), cursor, |sk| {
            Version::from_sort_key(sk).is_ok()
        })?;
        let first_page = start.is_none();
        let filtered = content.is_some() || !metadata.is_empty();
        let (rows, next) = self
            .table
            .version_page(name, limit, start, VersionFilter { content, metadata })
            .await?;
        let items = rows
            .iter()
            .map(|row| row.to_artifact(&self.layout))
            .collect::<Vec<_>>();
        let next_cursor = next.as_deref().map(encode_cursor);
        // With a content filter, no match is an empty page, not a missing artifact.
        if first_page && !filtered && items.is_empty() && next_cursor.is_none() {
            return Err(Error::ArtifactNotFound {
                name: name.to_string(),
            });
        }
        Ok(Page { items, next_cursor })
    }

    /// Soft-deletes a numbered version (SPEC 7.4, 7.5).
    ///
    /// Refused with 409 while an alias targets it: the alias partition is read
    /// (catching aliases the Python library wrote), and the write is
    /// conditional on the version row carrying no alias reference (catching a
    /// concurrent alias move). References no alias row backs any more (left by
    /// an interrupted purge, or by the library moving an alias) are cleaned,
    /// not obeyed. A missing version is 404 and writes nothing; a delete
    /// retried after its answer was lost (by the SDK, or by the client with
    /// the same `Idempotency-Key`) answers as the first would have.
    /// Nothing is written before `allowed` (the caller's authorisation)
    /// says yes; the first reads (the alias partition, the row) go beside
    /// it. The `Version Deleted` event goes in the artifact's event log, in
    /// the same transaction (SPEC 10.2). AWS calls: Query ∥ GetItem,
    /// TransactWriteItems (3 in 2 round trips).
    pub async fn delete_version(
        &self,
        name: &ArtifactName,
        version: Version,
        key: Option<&str>,
        mut allowed: super::Allowed,
    ) -> Result<()> {
        if version.is_latest() {
            return Err(Error::InvalidVersion(
                "LATEST cannot be deleted; purge the artifact to remove it entirely".into(),
            ));
        }
        // A retry with the same `Idempotency-Key` recognises its own delete.
        let token = super::request_token(key);
        for attempt in 0..MAX_ATTEMPTS {
            let (aliases, row) = tokio::join!(self.alias_rows(name), self.get_row(name, version));
            let (aliases, row) = (aliases?, row?);
            let in_use = targeting(&aliases, version);
            if !in_use.is_empty() {
                return Err(version_in_use(name, version, in_use));
            }
            let row = match row {
                Some(row) if row.is_live() => row,
                // This very delete, landed (its answer lost, or a client's
                // retry with the same key).
                Some(row)
                    if row.is_deleted && row.deleted_by_request.as_deref() == Some(&token) =>
                {
                    return Ok(());
                }
                _ => return Err(Error::version_not_found(name, version)),
            };
            allowed.wait().await?;
            match self.table.soft_delete(name, version, &token, &row).await? {
                SoftDelete::Deleted => return Ok(()),
                SoftDelete::Missing => return Err(Error::version_not_found(name, version)),
                SoftDelete::Referenced(row) => {
                    self.clean_stale_references(name, &row, &aliases).await?;
                }
                // Read again: the aliases and the event tell that row.
                SoftDelete::Contended | SoftDelete::Replaced => {}
            }
            super::backoff(attempt).await;
        }
        Err(Error::ConcurrentModification(format!(
            "version {version} of {name} kept being referenced; retry"
        )))
    }

    /// Removes the references of `row` that no alias row backs (an
    /// interrupted purge, the library moving or deleting an alias). Each
    /// removal is conditional on the alias row still not targeting the
    /// version, in one transaction, so a concurrent alias move is never
    /// undone. 409 when a reference is real. AWS calls: TransactWriteItems.
    pub(super) async fn clean_stale_references(
        &self,
        name: &ArtifactName,
        row: &VersionRow,
        aliases: &[AliasRow],
    ) -> Result<()> {
        let real = targeting(aliases, row.version);
        let stale: Vec<&String> = row
            .aliases
            .iter()
            .filter(|a| !real.contains(a))
            .take(99)
            .collect();
        if stale.is_empty() {
            return Err(version_in_use(name, row.version, real));
        }
        let mut ops = Vec::with_capacity(stale.len() + 1);
        for alias in &stale {
            ops.push(version_items::alias_not_targeting(
                &self.layout.table,
                name,
                alias,
                row.version,
            )?);
        }
        ops.push(version_items::remove_alias_references(
            &self.layout.table,
            name,
            row.version,
            &stale,
        )?);
        let token = uuid::Uuid::new_v4().simple().to_string();
        match self.transact(ops, &token).await {
            Ok(()) => {
                tracing::info!(%name, version = %row.version, ?stale, "cleaned stale alias references");
                Ok(())
            }
            // An alias moved onto the version meanwhile, or another writer
            // touched it: the caller reads again.
            Err(TransactFailure::Conditions(_) | TransactFailure::Contention) => Ok(()),
            Err(TransactFailure::Failed(e)) => Err(e),
        }
    }

    pub(super) async fn alias_rows(&self, name: &ArtifactName) -> Result<Vec<AliasRow>> {
        self.query_all(&alias_pk(name))
            .await?
            .iter()
            .map(|item| AliasRow::from_item(name, item))
            .collect()
    }
}

/// The aliases (of `rows`) whose primary or secondary is `version`.
pub(super) fn targeting(rows: &[AliasRow], version: Version) -> Vec<String> {
    rows.iter()
        .filter(|row| row.targets().any(|t| t == version))
        .map(|row| row.alias.to_string())
        .collect()
}

pub(super) fn version_in_use(name: &ArtifactName, version: Version, aliases: Vec<String>) -> Error {
    Error::VersionInUse {
        name: name.to_string(),
        version: version.to_string(),
        aliases: aliases.join(", "),
    }
}
