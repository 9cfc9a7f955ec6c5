//! Search across artifacts and version status (SPEC 10.3).
//!
//! - By content: the table's global secondary index `by-sha256` (keys only:
//!   `sha256` → `pk`), which holds every row with a digest, the library's
//!   included; one Query per page.
//! - By metadata: the index partitions `__meta/{key}={value}` (sort key
//!   `{name}/{version}`), written in the publish's transaction; one Query
//!   per page of the first term's partition, the other terms checked on the
//!   rows.
//!
//! Either way the rows found are read back, strongly consistent, in one
//! BatchGetItem per 100, and only live ones answered: an index entry of a
//! version deleted or purged since (or the index's eventual consistency) is
//! never shown as a version. AWS calls per page: Query, then BatchGetItem.
//!
//! Version status: `deprecated` versions resolve, with a warning; `archived`
//! ones cannot become the target of an alias move (`aliases.rs` refuses it);
//! each change is an entry of `__{name}-status`, written in the same
//! transaction as the row.

use std::collections::BTreeMap;

use artifact_store::paging::{cursor_text, encode_cursor};
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};

use super::tx::TransactFailure;
use super::{MAX_ATTEMPTS, Repository, page_size};
use crate::error::{Error, Result};
use crate::layout::{SHA256_INDEX, attr, format_update_at, meta_index_pk, now, status_pk};
use crate::model::{Artifact, Page, SearchHit, SearchQuery, VersionStatus};
use crate::names::{ArtifactName, Version};
use crate::rows::{Item, VersionRow, key, sv, version_key};

/// Most metadata terms in one search.
pub const MAX_SEARCH_TERMS: usize = 8;

impl Repository {
    /// Versions (and LATEST) across artifacts matching `query`, live only,
    /// with the aliases that point at each. AWS calls per page: Query,
    /// BatchGetItem (per 100 rows found).
    pub async fn search(
        &self,
        query: &SearchQuery,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<SearchHit>> {
        let limit = page_size(limit)?;
        let (request, partition) = match query {
            SearchQuery::Sha256(digest) => (
                self.ddb
                    .query()
                    .index_name(SHA256_INDEX)
                    .key_condition_expression("#sha256 = :v")
                    .expression_attribute_names("#sha256", attr::SHA256)
                    .expression_attribute_values(":v", sv(digest.as_str())),
                None,
            ),
            SearchQuery::Metadata(terms) => {
                let Some((k, v)) = terms.iter().next() else {
                    return Err(Error::InvalidRequest(
                        "search needs sha256= or at least one meta.KEY=VALUE".into(),
                    ));
                };
                let pk = meta_index_pk(k, v);
                (
                    self.ddb
                        .query()
                        .key_condition_expression("#pk = :v")
                        .expression_attribute_names("#pk", attr::PK)
                        .expression_attribute_values(":v", sv(&pk))
                        .consistent_read(true),
                    Some(pk),
                )
            }
        };
        let start = decode_search_cursor(query, partition.as_deref(), cursor)?;
        let out = request
            .table_name(&self.layout.table)
            .limit(limit as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| crate::sdk_error::upstream("Query", e))?;
        // The rows the entries name: (name, version), in index order.
        let named: Vec<(ArtifactName, Version)> = out
            .items()
            .iter()
            .filter_map(|item| match query {
                SearchQuery::Sha256(_) => {
                    let name = item.get(attr::PK)?.as_s().ok()?.parse().ok()?;
                    let version = Version::from_sort_key(item.get(attr::SK)?.as_s().ok()?).ok()?;
                    Some((name, version))
                }
                SearchQuery::Metadata(_) => {
                    let sk = item.get(attr::SK)?.as_s().ok()?;
                    let (name, version) = sk.split_once('/')?;
                    Some((name.parse().ok()?, Version::from_sort_key(version).ok()?))
                }
            })
            .collect();
        let mut rows: BTreeMap<(String, Version), VersionRow> = BTreeMap::new();
        for chunk in named.chunks(100) {
            let keys = chunk.iter().map(|(n, v)| version_key(n, *v)).collect();
            for item in self.batch_get(keys).await? {
                let row = VersionRow::from_item(&item)?;
                rows.insert((row.name.to_string(), row.version), row);
            }
        }
        let items = named
            .iter()
            .filter_map(|(n, v)| rows.remove(&(n.to_string(), *v)))
            .filter(|row| row.is_live() && matches(query, row))
            .map(|row| SearchHit {
                aliases: row.aliases.iter().cloned().collect(),
                artifact: row.to_artifact(&self.layout),
            })
            .collect();
        let next_cursor = out
            .last_evaluated_key()
            .filter(|k| !k.is_empty())
            .and_then(|k| {
                let pk = k.get(attr::PK)?.as_s().ok()?;
                let sk = k.get(attr::SK)?.as_s().ok()?;
                Some(encode_cursor(&format!("{pk}\n{sk}")))
            });
        Ok(Page { items, next_cursor })
    }

    /// Versions (and LATEST) across artifacts matching a parsed `q=` query
    /// (`crate::query`): each distinct term is one index query (all its
    /// pages, at most `MAX_TERM_MATCHES` entries, else 400), AND/OR/IN are
    /// set operations on their results; matches ordered by name, newest
    /// version first, paged by a cursor naming the last one answered, live
    /// rows only (read back as [`Self::search`] does). AWS calls: one Query
    /// per term and page of its index, BatchGetItem per 100 rows answered.
    pub async fn search_expression(
        &self,
        query: &crate::query::Query,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<SearchHit>> {
        let limit = page_size(limit)? as usize;
        let after = match cursor {
            None => None,
            Some(c) => {
                let text = cursor_text(c).filter(|t| t.len() <= 2048);
                let pair = text.as_deref().and_then(|t| t.split_once('\n'));
                match pair {
                    Some((n, sk)) => Some((n.to_owned(), sk.to_owned())),
                    None => {
                        return Err(Error::InvalidRequest(
                            "cursor is not one this search returned".into(),
                        ));
                    }
                }
            }
        };
        let mut found: BTreeMap<&crate::query::Term, std::collections::BTreeSet<(String, String)>> =
            BTreeMap::new();
        for term in query.terms() {
            found.insert(term, self.term_matches(term).await?);
        }
        let matched = query.evaluate(&|t| found.get(t).cloned().unwrap_or_default());
        // Name ascending, newest version first.
        let mut ordered: Vec<(String, String)> = matched.into_iter().collect();
        ordered.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)));
        let start = match &after {
            None => 0,
            Some((n, sk)) => ordered
                .iter()
                .position(|(on, osk)| on > n || (on == n && osk < sk))
                .unwrap_or(ordered.len()),
        };
        let page: Vec<(String, String)> = ordered.iter().skip(start).take(limit).cloned().collect();
        let more = ordered.len() > start + page.len();
        let mut keys = Vec::new();
        for (n, sk) in &page {
            let (Ok(name), Ok(version)) = (n.parse::<ArtifactName>(), Version::from_sort_key(sk))
            else {
                continue;
            };
            keys.push(version_key(&name, version));
        }
        let mut rows: BTreeMap<(String, String), VersionRow> = BTreeMap::new();
        for chunk in keys.chunks(100) {
            for item in self.batch_get(chunk.to_vec()).await? {
                let row = VersionRow::from_item(&item)?;
                rows.insert((row.name.to_string(), row.version.sort_key()), row);
            }
        }
        let items = page
            .iter()
            .filter_map(|k| rows.remove(k))
            .filter(VersionRow::is_live)
            .map(|row| SearchHit {
                aliases: row.aliases.iter().cloned().collect(),
                artifact: row.to_artifact(&self.layout),
            })
            .collect();
        let next_cursor = more
            .then(|| page.last())
            .flatten()
            .map(|(n, sk)| encode_cursor(&format!("{n}\n{sk}")));
        Ok(Page { items, next_cursor })
    }

    /// The (name, version sort key) entries one term's index holds.
    async fn term_matches(
        &self,
        term: &crate::query::Term,
    ) -> Result<std::collections::BTreeSet<(String, String)>> {
        use crate::query::{MAX_TERM_MATCHES, Term};
        let mut out = std::collections::BTreeSet::new();
        let mut start = None;
        loop {
            let request = match term {
                Term::Sha256(digest) => self
                    .ddb
                    .query()
                    .index_name(SHA256_INDEX)
                    .key_condition_expression("#k = :v")
                    .expression_attribute_names("#k", attr::SHA256)
                    .expression_attribute_values(":v", sv(digest.as_str())),
                Term::Meta { key, value } => self
                    .ddb
                    .query()
                    .key_condition_expression("#k = :v")
                    .expression_attribute_names("#k", attr::PK)
                    .expression_attribute_values(":v", sv(meta_index_pk(key, value)))
                    .consistent_read(true),
                Term::Name(name) => self
                    .ddb
                    .query()
                    .key_condition_expression("#k = :v")
                    .expression_attribute_names("#k", attr::PK)
                    .expression_attribute_values(":v", sv(name.as_str()))
                    .consistent_read(true),
            };
            let page = request
                .table_name(&self.layout.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| crate::sdk_error::upstream("Query", e))?;
            for item in page.items() {
                let text = |a: &str| item.get(a).and_then(|v| v.as_s().ok()).cloned();
                let entry = match term {
                    Term::Meta { .. } => text(attr::SK).and_then(|sk| {
                        sk.split_once('/')
                            .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    }),
                    _ => text(attr::PK).zip(text(attr::SK)),
                };
                if let Some(entry) = entry {
                    out.insert(entry);
                }
            }
            if out.len() > MAX_TERM_MATCHES {
                return Err(Error::InvalidRequest(format!(
                    "q: a term matches more than {MAX_TERM_MATCHES} versions; narrow it"
                )));
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// Sets a numbered version's status (SPEC 10.3), recorded in the
    /// artifact's status history in the same transaction; with `expected`,
    /// only if the status is that (409 otherwise; a version at the status
    /// asked for already is a success, so a retry after a lost answer is
    /// one). The alias rows targeting it are refreshed every time. AWS
    /// calls: TransactWriteItems, then GetItem for the answer.
    pub async fn set_version_status(
        &self,
        name: &ArtifactName,
        version: Version,
        status: VersionStatus,
        change: &StatusChange,
    ) -> Result<Artifact> {
        if version.is_latest() {
            return Err(Error::InvalidVersion(
                "LATEST has no status: publish it and set the version's".into(),
            ));
        }
        let at = now();
        let mut update = Update::builder()
            .table_name(&self.layout.table)
            .set_key(Some(version_key(name, version)))
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#is_deleted", attr::IS_DELETED)
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#message", attr::STATUS_MESSAGE)
            .expression_attribute_values(":false", AttributeValue::Bool(false));
        let mut condition = "attribute_exists(#pk) AND #is_deleted = :false".to_owned();
        match change.expected {
            None => {}
            Some(VersionStatus::Active) => {
                condition.push_str(" AND (attribute_not_exists(#status) OR #status = :active)");
                update = update.expression_attribute_values(":active", sv("active"));
            }
            Some(expected) => {
                condition.push_str(" AND #status = :expected");
                update = update.expression_attribute_values(":expected", sv(expected.as_str()));
            }
        }
        update = match (status, &change.message) {
            (VersionStatus::Active, _) => update.update_expression("REMOVE #status, #message"),
            (s, Some(m)) => update
                .update_expression("SET #status = :status, #message = :message")
                .expression_attribute_values(":status", sv(s.as_str()))
                .expression_attribute_values(":message", sv(m)),
            (s, None) => update
                .update_expression("SET #status = :status REMOVE #message")
                .expression_attribute_values(":status", sv(s.as_str())),
        };
        let update = update
            .condition_expression(condition)
            .build()
            .map_err(super::invalid_sdk_input)?;
        let mut entry = key(
            status_pk(name),
            format!("{}/{}", version.sort_key(), format_update_at(at)),
        );
        entry.insert(attr::STATUS.into(), sv(status.as_str()));
        entry.insert(attr::ACTOR.into(), sv(&change.actor));
        entry.insert(attr::UPDATE_AT.into(), sv(format_update_at(at)));
        if let Some(m) = &change.message {
            entry.insert(attr::MESSAGE.into(), sv(m));
        }
        let ops = vec![
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.layout.table)
                        .set_item(Some(entry))
                        .build()
                        .map_err(super::invalid_sdk_input)?,
                )
                .build(),
        ];
        let token = uuid::Uuid::new_v4().simple().to_string();
        for attempt in 0..MAX_ATTEMPTS {
            match self.transact(ops.clone(), &token).await {
                Ok(()) => break,
                Err(TransactFailure::Conditions(_)) => {
                    return Err(match self.get_row(name, version).await? {
                        // At the status asked for already: this request's
                        // own write whose answer was lost (or the same
                        // change by another): the aliases are refreshed.
                        Some(row)
                            if row.is_live()
                                && row.status.unwrap_or(VersionStatus::Active) == status =>
                        {
                            break;
                        }
                        Some(row) if row.is_live() => Error::ConcurrentModification(format!(
                            "version {version} of {name} is {}, not {} (expected_status)",
                            row.status.unwrap_or(VersionStatus::Active).as_str(),
                            change.expected.unwrap_or(VersionStatus::Active).as_str()
                        )),
                        _ => Error::version_not_found(name, version),
                    });
                }
                Err(TransactFailure::Contention) => super::backoff(attempt).await,
                Err(TransactFailure::Failed(e)) => return Err(e),
            }
        }
        let row = self.get_live_row(name, version).await?;
        for alias in &row.aliases {
            self.refresh_target_status(name, alias, version, status)
                .await?;
        }
        Ok(row.to_artifact(&self.layout))
    }

    /// Copies a version's new status onto an alias row that targets it
    /// (resolve reads only the alias row), conditional on the alias's
    /// revision as read; a move meanwhile read the status itself. AWS
    /// calls: GetItem, UpdateItem per alias.
    async fn refresh_target_status(
        &self,
        name: &ArtifactName,
        alias: &str,
        version: Version,
        status: VersionStatus,
    ) -> Result<()> {
        let Some(item) = self
            .table
            .get(key(crate::layout::alias_pk(name), alias))
            .await?
        else {
            return Ok(());
        };
        let row = crate::rows::AliasRow::from_item(name, &item)?;
        let slot = if row.primary.version == version {
            attr::VERSION_STATUS
        } else if row
            .secondary
            .as_ref()
            .is_some_and(|(t, _)| t.version == version)
        {
            attr::SECONDARY_STATUS
        } else {
            return Ok(());
        };
        let Some(revision) = row.revision else {
            return Ok(());
        };
        let update = self
            .ddb
            .update_item()
            .table_name(&self.layout.table)
            .set_key(Some(key(crate::layout::alias_pk(name), alias)))
            .condition_expression("#revision = :revision")
            .expression_attribute_names("#revision", attr::REVISION)
            .expression_attribute_names("#slot", slot)
            .expression_attribute_values(":revision", crate::rows::nv(revision));
        let update = match status {
            VersionStatus::Active => update.update_expression("REMOVE #slot"),
            s => update
                .update_expression("SET #slot = :status")
                .expression_attribute_values(":status", sv(s.as_str())),
        };
        match update.send().await {
            Ok(_) => Ok(()),
            // Moved meanwhile: the move copied the status it read.
            Err(e) if super::condition_failed(&e) => Ok(()),
            Err(e) => Err(crate::sdk_error::upstream("UpdateItem", e)),
        }
    }
}

/// Who changes a version's status, why, and what it must be now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub actor: String,
    pub message: Option<String>,
    pub expected: Option<VersionStatus>,
}

/// Whether a live row matches the query (the metadata terms beyond the
/// first, which the index partition already matched).
fn matches(query: &SearchQuery, row: &VersionRow) -> bool {
    match query {
        SearchQuery::Sha256(digest) => row.sha256 == digest.as_str(),
        SearchQuery::Metadata(terms) => terms
            .iter()
            .all(|(k, v)| row.metadata.get(k).is_some_and(|got| got == v)),
    }
}

/// A search cursor: base64url of `pk\nsk` of the last entry read, bound to
/// the query (the partition of a metadata search; a row of this digest).
fn decode_search_cursor(
    query: &SearchQuery,
    partition: Option<&str>,
    cursor: Option<&str>,
) -> Result<Option<Item>> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let invalid = || Error::InvalidRequest("cursor is not one this search returned".into());
    let text = cursor_text(cursor).ok_or_else(invalid)?;
    let (pk, sk) = text.split_once('\n').ok_or_else(invalid)?;
    if pk.is_empty()
        || sk.is_empty()
        || pk.len() > 2048
        // In the by-sha256 index `pk` is the range key: at most 1024 bytes
        // (a longer one made DynamoDB refuse the query: a 502).
        || (matches!(query, SearchQuery::Sha256(_)) && pk.len() > super::MAX_SORT_KEY_BYTES)
        || sk.len() > super::MAX_SORT_KEY_BYTES
        || partition.is_some_and(|p| p != pk)
    {
        return Err(invalid());
    }
    let mut start = key(pk, sk);
    if let SearchQuery::Sha256(digest) = query {
        start.insert(attr::SHA256.into(), sv(digest.as_str()));
    }
    Ok(Some(start))
}
