//! Search across artifacts and version status (SPEC 10.3).
//!
//! - By content: the table's global secondary index `by-sha256` (keys only:
//!   `sha256` → `pk`), which holds every row with a digest, the library's
//!   included; per page, one Query of each of its two ranges of artifact
//!   names, at once (the service's own partitions between them, uploads
//!   declaring any digest, are never read).
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

use artifact_store::index_items::{self, IndexPage};
use artifact_store::paging::{cursor_text, encode_cursor};

use super::tx::{TransactFailure, Tx};
use super::{MAX_ATTEMPTS, Repository, page_size};
use crate::error::{Error, Result};
use crate::layout::now;
use crate::model::{Artifact, Page, SearchHit, SearchQuery, VersionStatus};
use crate::names::{ArtifactName, Version};
use crate::rows::{VersionRow, version_key};

/// Most metadata terms in one search.
pub const MAX_SEARCH_TERMS: usize = 8;

impl Repository {
    /// Whether the index of `query` holds, from cursor `from` on, an entry
    /// of a name `readable` admits; the entries read count toward the
    /// search's budget (`entries_read`). Past the budget: yes (the page is
    /// answered with its cursor, and the next page meets the 400 it
    /// would have met anyway).
    async fn readable_entry_from(
        &self,
        query: &SearchQuery,
        from: String,
        readable: &(dyn Fn(&str) -> bool + Sync),
        entries_read: &mut usize,
    ) -> Result<bool> {
        let mut start = Some(from);
        while let Some(from) = start {
            let IndexPage {
                entries,
                next_cursor,
            } = self
                .table
                .search_index(query, crate::MAX_PAGE_SIZE, Some(&from))
                .await?;
            *entries_read += entries.len();
            if entries.iter().any(|e| readable(e.name.as_str())) {
                return Ok(true);
            }
            if *entries_read > crate::query::MAX_TERM_ENTRIES_READ {
                return Ok(true);
            }
            start = next_cursor;
        }
        Ok(false)
    }

    /// Versions (and LATEST) across artifacts matching `query`, live only,
    /// with the aliases that point at each, of names `readable` admits: an
    /// entry of another name is skipped before the page is cut, so neither
    /// the page nor its cursor tells anything of it (SPEC 10.4). AWS calls
    /// per page: Query (two at once by content; more while entries are
    /// skipped), BatchGetItem (per 100 rows found).
    pub async fn search(
        &self,
        query: &SearchQuery,
        limit: Option<u32>,
        cursor: Option<&str>,
        readable: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Page<SearchHit>> {
        let limit = page_size(limit)?;
        let mut named: Vec<(ArtifactName, Version)> = Vec::new();
        let mut start = cursor.map(str::to_owned);
        // After a first page that did not fill, the largest pages (see
        // `list_artifact_names`).
        // One more than the page: whether an entry the caller may read
        // follows the last one kept is then known without another read,
        // when none is hidden.
        let mut read = (limit + 1).min(crate::MAX_PAGE_SIZE);
        // Entries of names the caller may not read are read to be skipped:
        // as many as a term of `q=` may read, whoever asks, else the same
        // 400 (neither the work nor the time grows with hidden entries).
        let mut entries_read = 0;
        let next_cursor = loop {
            let IndexPage {
                entries,
                next_cursor,
            } = self
                .table
                .search_index(query, read, start.as_deref())
                .await?;
            read = crate::MAX_PAGE_SIZE;
            let total = entries.len();
            entries_read += total;
            if entries_read > crate::query::MAX_TERM_ENTRIES_READ {
                return Err(too_broad());
            }
            let mut full = None;
            for (i, entry) in entries.iter().enumerate() {
                if readable(entry.name.as_str()) {
                    named.push((entry.name.clone(), entry.version));
                    if named.len() == limit as usize {
                        full = Some(i);
                        break;
                    }
                }
            }
            match (full, next_cursor) {
                // The page ends on the last entry kept: the cursor resumes
                // right after it (nothing of an entry skipped before it),
                // and is given only when an entry the caller may read
                // follows: whether hidden ones do is none of its business
                // (a cursor on them told a caller that some name it may
                // not read holds its bytes or metadata).
                (Some(i), more) => {
                    let follows = entries[i + 1..].iter().any(|e| readable(e.name.as_str()))
                        || match more {
                            Some(more) => {
                                self.readable_entry_from(query, more, readable, &mut entries_read)
                                    .await?
                            }
                            None => false,
                        };
                    break follows.then(|| entries[i].after.clone());
                }
                (None, None) => break None,
                (None, Some(more)) => start = Some(more),
            }
        };
        newest_first_within_each_name(&mut named);
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
        Ok(Page { items, next_cursor })
    }

    /// Versions (and LATEST) across artifacts matching a parsed `q=` query
    /// (`crate::query`): each distinct term is one index query (all its
    /// pages, at most `MAX_TERM_MATCHES` entries, else 400), AND/OR/IN are
    /// set operations on their results; matches ordered by name, newest
    /// version first, paged by a cursor naming the last one answered, live
    /// rows only (read back as [`Self::search`] does). AWS calls: one Query
    /// per term and page of its index (a digest's: per name range, see
    /// `Table::term_page`), BatchGetItem per 100 rows answered.
    pub async fn search_expression(
        &self,
        query: &crate::query::Query,
        limit: Option<u32>,
        cursor: Option<&str>,
        readable: &(dyn Fn(&str) -> bool + Sync),
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
            found.insert(term, self.term_matches(term, readable).await?);
        }
        let matched = query.evaluate(&|t| found.get(t).cloned().unwrap_or_default());
        // Name ascending, newest version first; names the caller may not
        // read are gone before the page and its cursor are cut.
        let mut ordered: Vec<(String, String)> = matched
            .into_iter()
            .filter(|(name, _)| readable(name))
            .collect();
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
            .filter(|row| row.is_live() && query.holds(&|t| term_holds(t, row)))
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

    /// The (name, version sort key) entries one term's index holds, of
    /// names the caller may read only: neither the answer nor the limit on
    /// matches (a 400) tells anything of the others (a `name=` term naming
    /// one is not even looked up) — but the entries read are bounded for
    /// every caller alike (`MAX_TERM_ENTRIES_READ`, else the same 400).
    async fn term_matches(
        &self,
        term: &crate::query::Term,
        readable: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<std::collections::BTreeSet<(String, String)>> {
        use crate::query::{MAX_TERM_ENTRIES_READ, MAX_TERM_MATCHES, MAX_TERM_PAGES, Term};
        let mut out = std::collections::BTreeSet::new();
        if let Term::Name(name) = term
            && !readable(name.as_str())
        {
            return Ok(out);
        }
        let mut start = None;
        let mut read = 0;
        for _ in 0..MAX_TERM_PAGES {
            let (entries, next) = self.table.term_page(term, start).await?;
            read += entries.len();
            if read > MAX_TERM_ENTRIES_READ {
                return Err(too_broad());
            }
            out.extend(entries.into_iter().filter(|(name, _)| readable(name)));
            if out.len() > MAX_TERM_MATCHES {
                return Err(too_broad());
            }
            match next {
                Some(k) => start = Some(k),
                None => return Ok(out),
            }
        }
        Err(too_broad())
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
        let message = change.message.as_deref();
        let mut tx = Tx::new();
        tx.push(
            Status::Row,
            index_items::set_status(
                &self.layout.table,
                name,
                version,
                status,
                message,
                change.expected,
            )?,
        );
        tx.push(
            Status::Entry,
            index_items::status_entry(
                &self.layout.table,
                name,
                version,
                status,
                &change.actor,
                message,
                at,
            )?,
        );
        // The artifact is not being purged: a purge deletes LATEST before
        // it reads the status partition, so an entry written after that
        // outlived the purge (and made the gone name look present).
        tx.push(
            Status::Artifact,
            artifact_store::version_items::latest_exists(&self.layout.table, name)?,
        );
        tx.push(Status::Fence, self.no_purge_running(name)?);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut landed = false;
        for attempt in 0..MAX_ATTEMPTS {
            match self.transact_tx(&tx, &token).await {
                Ok(()) => {
                    landed = true;
                    break;
                }
                Err(TransactFailure::Conditions(failed)) if failed.contains(&Status::Fence) => {
                    return Err(Error::ArtifactBeingPurged {
                        name: name.to_string(),
                    });
                }
                Err(TransactFailure::Conditions(failed)) if failed.contains(&Status::Artifact) => {
                    return Err(Error::version_not_found(name, version));
                }
                Err(TransactFailure::Conditions(_)) => {
                    return Err(match self.get_row(name, version).await? {
                        // At the status asked for already: this request's
                        // own write whose answer was lost (or the same
                        // change by another): the aliases are refreshed.
                        Some(row)
                            if row.is_live()
                                && row.status.unwrap_or(VersionStatus::Active) == status =>
                        {
                            landed = true;
                            break;
                        }
                        // Live at the status expected (any, when none is):
                        // the condition holds for this row, so it was at
                        // another status when the write landed and is back
                        // (another writer changed it twice): tried again.
                        Some(row)
                            if row.is_live()
                                && change.expected.is_none_or(|expected| {
                                    row.status.unwrap_or(VersionStatus::Active) == expected
                                }) =>
                        {
                            super::backoff(attempt).await;
                            continue;
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
        // Every attempt met another transaction: nothing was written.
        if !landed {
            return Err(Error::ConcurrentModification(format!(
                "the status of version {version} of {name} kept conflicting with other writers; retry"
            )));
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
    /// revision as read; a move meanwhile was conditioned on the status it
    /// recorded. Then the row is read again: a later status change whose
    /// own refresh ran before this write would otherwise be undone by it
    /// (the alias recording a status its version left), so its status is
    /// written in turn until the two agree. AWS calls: GetItem, UpdateItem,
    /// GetItem per alias (more only when another change raced it).
    pub(super) async fn refresh_target_status(
        &self,
        name: &ArtifactName,
        alias: &str,
        version: Version,
        status: VersionStatus,
    ) -> Result<()> {
        let mut status = status;
        for _ in 0..MAX_ATTEMPTS {
            self.table
                .refresh_target_status(name, alias, version, status)
                .await?;
            let now = match self.get_row(name, version).await? {
                Some(row) if row.is_live() => row.status.unwrap_or(VersionStatus::Active),
                // Deleted meanwhile: no alias may target it.
                _ => return Ok(()),
            };
            if now == status {
                return Ok(());
            }
            status = now;
        }
        Err(Error::ConcurrentModification(format!(
            "the status of version {version} of {name} kept changing while alias {alias} took it; retry"
        )))
    }
}

/// Who changes a version's status, why, and what it must be now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub actor: String,
    pub message: Option<String>,
    pub expected: Option<VersionStatus>,
}

/// Whether one term of a `q=` query holds for the row read back.
fn term_holds(term: &crate::query::Term, row: &VersionRow) -> bool {
    use crate::query::Term;
    match term {
        Term::Name(name) => row.name == *name,
        Term::Sha256(digest) => row.sha256 == digest.as_str(),
        Term::Meta { key, value } => row.metadata.get(key).is_some_and(|got| got == value),
    }
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

/// The members of a status change's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// The version row: live, at the expected status.
    Row,
    /// The entry of the status history.
    Entry,
    /// LATEST exists (no purge deleted it).
    Artifact,
    /// No purge of the artifact runs.
    Fence,
}

/// The index keeps no order among one name's entries (its sort key is the
/// name): LATEST first, then the newest version first, as every listing
/// (SPEC 6); the names stay in the order the page met them. Only the
/// entries answered move: the cursor was taken from the index before.
fn newest_first_within_each_name(named: &mut [(ArtifactName, Version)]) {
    let mut first_met: std::collections::HashMap<String, usize> = Default::default();
    for (i, (name, _)) in named.iter().enumerate() {
        first_met.entry(name.to_string()).or_insert(i);
    }
    named.sort_by_key(|(name, version)| {
        let order = match version {
            Version::Latest => (0, std::cmp::Reverse(0)),
            Version::Number(n) => (1, std::cmp::Reverse(*n)),
        };
        (
            first_met.get(name.as_str()).copied().unwrap_or(usize::MAX),
            order,
        )
    });
}

/// The one answer to a search too broad to answer, whichever limit it
/// met (matches the caller may read, or entries read of any name): its
/// words tell nothing of which.
fn too_broad() -> Error {
    Error::InvalidRequest(format!(
        "the search matches too many versions (a term: at most {} readable, {} in all); narrow it",
        crate::query::MAX_TERM_MATCHES,
        crate::query::MAX_TERM_ENTRIES_READ
    ))
}
