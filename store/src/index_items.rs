//! Search's requests (SPEC 10.3): the global secondary index `by-sha256`
//! (keys only: `sha256` → `pk`), the metadata index partitions
//! `__meta/{key}={value}` (sort key `{name}/{version}`), the search cursor
//! (`pk\nsk` of the last entry read), and the version status writes (the
//! row's status, its history entry, the copies on alias rows).

use artifact_core::query::Term;
use aws_sdk_dynamodb::types::{AttributeValue, Put, Update};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::layout::{SHA256_INDEX, alias_pk, attr, format_update_at, meta_index_pk, status_pk};
use crate::model::{SearchQuery, VersionStatus};
use crate::names::{ArtifactName, Version};
use crate::paging::{MAX_SORT_KEY_BYTES, cursor_text, encode_cursor};
use crate::rows::{AliasRow, Item, LIVE, key, nv, sv, version_key};
use crate::table::Table;
use crate::tx::TxItem;

/// One page of a search's index: the rows its entries name and where the
/// next page starts.
pub struct IndexPage {
    /// The rows the entries name, in index order.
    pub entries: Vec<IndexEntry>,
    /// The cursor of the next page (base64url of `pk\nsk`), when more follow.
    pub next_cursor: Option<String>,
}

/// One entry of a search's index: the row it names and the cursor that
/// resumes right after it (so a page can end on any entry it keeps, never
/// on one it hides).
pub struct IndexEntry {
    pub name: ArtifactName,
    pub version: Version,
    pub after: String,
}

impl Table {
    /// One page (one Query) of the index a search reads: by content, the
    /// `by-sha256` index (eventually consistent, as a global secondary
    /// index is); by metadata, the partition of the first term (strongly
    /// consistent). At most `limit` entries after `cursor` (a cursor of
    /// this search: refused, 400, otherwise). A metadata search without
    /// terms is refused (400).
    pub async fn search_index(
        &self,
        query: &SearchQuery,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<IndexPage> {
        let terms = match query {
            SearchQuery::Sha256(digest) => {
                let start = decode_search_cursor(query, None, cursor)?;
                return self.digest_index_page(digest, limit, start).await;
            }
            SearchQuery::Metadata(terms) => terms,
        };
        let Some((k, v)) = terms.iter().next() else {
            return Err(Error::InvalidRequest(
                "search needs sha256= or at least one meta.KEY=VALUE".into(),
            ));
        };
        let pk = meta_index_pk(k, v);
        let start = decode_search_cursor(query, Some(&pk), cursor)?;
        let out = self
            .ddb
            .query()
            .key_condition_expression("#pk = :v")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_values(":v", sv(&pk))
            .consistent_read(true)
            .table_name(&self.name)
            .limit(limit as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| crate::sdk_error::upstream("Query", e))?;
        Ok(index_page(
            out.items(),
            out.last_evaluated_key(),
            |_, sk| sk.split_once('/'),
        ))
    }

    /// One page of the `by-sha256` index for `digest`, version rows only:
    /// the index holds every row with a digest, the service's own
    /// partitions (`__{name}-upload`: uploads anyone may start, declaring
    /// any digest) included, and those are never read (a writer's pending
    /// uploads neither cost a search reads nor push its versions out). Its
    /// two name ranges (see [`Self::term_page`]) are read at once, each up
    /// to `limit` entries: the page is the first range's, followed by the
    /// second's when the first ended. Resuming in the second range reads
    /// it alone. AWS calls: two Queries in parallel (one round trip), one
    /// when resuming in the second range.
    async fn digest_index_page(
        &self,
        digest: &artifact_core::names::Sha256,
        limit: u32,
        start: Option<Item>,
    ) -> Result<IndexPage> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let read = |range, start| {
            self.digest_query(digest, range)
                .table_name(&self.name)
                .limit(limit)
                .set_exclusive_start_key(start)
                .send()
        };
        let page = |out: aws_sdk_dynamodb::operation::query::QueryOutput| {
            index_page(out.items(), out.last_evaluated_key(), |pk, sk| {
                Some((pk, sk))
            })
        };
        let query_failed = |e| crate::sdk_error::upstream("Query", e);
        if resumes_in_lower(start.as_ref()) {
            return Ok(page(
                read(NameRange::Lower, start).await.map_err(query_failed)?,
            ));
        }
        let (upper, lower) =
            tokio::join!(read(NameRange::Upper, start), read(NameRange::Lower, None));
        let upper = page(upper.map_err(query_failed)?);
        if upper.next_cursor.is_some() {
            return Ok(upper);
        }
        let lower = page(lower.map_err(query_failed)?);
        let mut entries = upper.entries;
        entries.extend(lower.entries);
        Ok(IndexPage {
            entries,
            next_cursor: lower.next_cursor,
        })
    }

    /// A Query of the `by-sha256` index for `digest`, of the names in
    /// `range` only.
    fn digest_query(
        &self,
        digest: &artifact_core::names::Sha256,
        range: NameRange,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let (condition, bound) = match range {
            NameRange::Lower => ("#k = :v AND #pk >= :bound", NAMES_FROM_LOWER),
            NameRange::Upper => ("#k = :v AND #pk < :bound", SERVICE_PARTITIONS_FROM),
        };
        self.ddb
            .query()
            .index_name(SHA256_INDEX)
            .key_condition_expression(condition)
            .expression_attribute_names("#k", attr::SHA256)
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_values(":v", sv(digest.as_str()))
            .expression_attribute_values(":bound", sv(bound))
    }

    /// One page (one Query, after `start`) of the index one term of a `q=`
    /// query reads: the `by-sha256` index (eventually consistent), a
    /// metadata index partition or the artifact's own partition (strongly
    /// consistent). Answers the (name, version sort key) entries found and
    /// where the next page starts.
    pub async fn term_page(
        &self,
        term: &Term,
        start: Option<Item>,
    ) -> Result<(Vec<(String, String)>, Option<Item>)> {
        if !matches!(term, Term::Sha256(_)) {
            return self.term_page_in(term, start, None).await;
        }
        // The index holds every row with a digest: the service's own
        // partitions (`__{name}-upload`, …: uploads anyone may start, with
        // any declared digest) are no versions and must not count against
        // a term's limits. Version rows' partition keys are artifact names,
        // which start with a letter or digit: below `_` (digits, capitals)
        // or from `a` on, the two ranges read in turn (where a page
        // resumes tells which).
        if resumes_in_lower(start.as_ref()) {
            return self.term_page_in(term, start, Some(NameRange::Lower)).await;
        }
        let (mut entries, next) = self
            .term_page_in(term, start, Some(NameRange::Upper))
            .await?;
        if next.is_some() {
            return Ok((entries, next));
        }
        let (lower, next) = self
            .term_page_in(term, None, Some(NameRange::Lower))
            .await?;
        entries.extend(lower);
        Ok((entries, next))
    }

    /// One Query of [`Self::term_page`]; for a digest, of names in `range`.
    async fn term_page_in(
        &self,
        term: &Term,
        start: Option<Item>,
        range: Option<NameRange>,
    ) -> Result<(Vec<(String, String)>, Option<Item>)> {
        let request = match term {
            Term::Sha256(digest) => self.digest_query(digest, range.unwrap_or(NameRange::Upper)),
            Term::Meta { key, value } => self
                .ddb
                .query()
                .key_condition_expression("#k = :v")
                .expression_attribute_names("#k", attr::PK)
                .expression_attribute_values(":v", sv(meta_index_pk(key, value)))
                .consistent_read(true),
            // Live rows only: the partition keeps every deleted version's
            // tombstone for good, which would otherwise count against the
            // entries a search may read until any busy artifact's name is
            // too broad a term.
            Term::Name(name) => self
                .ddb
                .query()
                .key_condition_expression("#k = :v")
                .filter_expression("attribute_not_exists(#deleted) OR #deleted = :false")
                .expression_attribute_names("#k", attr::PK)
                .expression_attribute_names("#deleted", attr::IS_DELETED)
                .expression_attribute_values(":v", sv(name.as_str()))
                .expression_attribute_values(":false", AttributeValue::Bool(false))
                .consistent_read(true),
        };
        let page = request
            .table_name(&self.name)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| crate::sdk_error::upstream("Query", e))?;
        let mut entries = Vec::new();
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
                entries.push(entry);
            }
        }
        let next = match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => Some(k.clone()),
            _ => None,
        };
        Ok((entries, next))
    }

    /// Copies a version's new status onto the alias row `alias` of `name`
    /// when it targets `version` (primary or secondary slot; removed for
    /// `active`), conditional on the alias's revision as read: a move
    /// meanwhile copied the status it read, so a failed condition is a
    /// success. Nothing is written to a missing row, one that targets
    /// `version` no more, or a row without revision (the library's). AWS
    /// calls: GetItem, then UpdateItem when there is something to write.
    pub async fn refresh_target_status(
        &self,
        name: &ArtifactName,
        alias: &str,
        version: Version,
        status: VersionStatus,
    ) -> Result<()> {
        let Some(item) = self.get(key(alias_pk(name), alias)).await? else {
            return Ok(());
        };
        let row = AliasRow::from_item(name, &item)?;
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
            .table_name(&self.name)
            .set_key(Some(key(alias_pk(name), alias)))
            .condition_expression("#revision = :revision")
            .expression_attribute_names("#revision", attr::REVISION)
            .expression_attribute_names("#slot", slot)
            .expression_attribute_values(":revision", nv(revision));
        let update = match status {
            VersionStatus::Active => update.update_expression("REMOVE #slot"),
            s => update
                .update_expression("SET #slot = :status")
                .expression_attribute_values(":status", sv(s.as_str())),
        };
        // Moved meanwhile: the move copied the status it read.
        crate::sdk_error::applied("UpdateItem", update.send().await).map(|_applied| ())
    }
}

/// A transaction member setting the status of version `version` of `name`
/// to `status` (`active`: the status and its message removed; otherwise
/// the status, and the message when there is one, set). Its condition: the
/// row exists and is not soft-deleted and, with `expected`, is at that
/// status (a row without status is `active`).
pub fn set_status(
    table: &str,
    name: &ArtifactName,
    version: Version,
    status: VersionStatus,
    message: Option<&str>,
    expected: Option<VersionStatus>,
) -> Result<TxItem> {
    let mut update = Update::builder()
        .table_name(table)
        .set_key(Some(version_key(name, version)))
        .expression_attribute_names("#pk", attr::PK)
        .expression_attribute_names("#is_deleted", attr::IS_DELETED)
        .expression_attribute_names("#status", attr::STATUS)
        .expression_attribute_names("#message", attr::STATUS_MESSAGE)
        .expression_attribute_values(":false", AttributeValue::Bool(false));
    let mut condition = format!("attribute_exists(#pk) AND {LIVE}");
    match expected {
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
    update = match (status, message) {
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
        .map_err(crate::sdk_error::invalid_sdk_input)?;
    Ok(TxItem::builder().update(update).build())
}

/// A transaction member putting the entry of a status change in the
/// artifact's status history (`__{name}-status`, sort key
/// `{version}/{at}`): the status, who set it, when, and why. No
/// condition (an entry per change and instant).
pub fn status_entry(
    table: &str,
    name: &ArtifactName,
    version: Version,
    status: VersionStatus,
    actor: &str,
    message: Option<&str>,
    at: OffsetDateTime,
) -> Result<TxItem> {
    let mut entry = key(
        status_pk(name),
        format!("{}/{}", version.sort_key(), format_update_at(at)),
    );
    entry.insert(attr::STATUS.into(), sv(status.as_str()));
    entry.insert(attr::ACTOR.into(), sv(actor));
    entry.insert(attr::UPDATE_AT.into(), sv(format_update_at(at)));
    if let Some(m) = message {
        entry.insert(attr::MESSAGE.into(), sv(m));
    }
    Ok(TxItem::builder()
        .put(
            Put::builder()
                .table_name(table)
                .set_item(Some(entry))
                .build()
                .map_err(crate::sdk_error::invalid_sdk_input)?,
        )
        .build())
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
        || (matches!(query, SearchQuery::Sha256(_)) && pk.len() > MAX_SORT_KEY_BYTES)
        || sk.len() > MAX_SORT_KEY_BYTES
        || partition.is_some_and(|p| p != pk)
        // A digest's entries are version rows: their partition is a name
        // (the service's partitions are outside the ranges it reads).
        || (matches!(query, SearchQuery::Sha256(_)) && pk.parse::<ArtifactName>().is_err())
    {
        return Err(invalid());
    }
    let mut start = key(pk, sk);
    if let SearchQuery::Sha256(digest) = query {
        start.insert(attr::SHA256.into(), sv(digest.as_str()));
    }
    Ok(Some(start))
}

/// The first partition key of the service's own partitions (`__…`):
/// artifact names below it start with a digit or a capital.
const SERVICE_PARTITIONS_FROM: &str = "_";
/// The first partition key of names that start with a small letter.
const NAMES_FROM_LOWER: &str = "a";

/// Whether a digest's index read resuming after `start` is in the range
/// of names from a small letter on.
fn resumes_in_lower(start: Option<&Item>) -> bool {
    start
        .and_then(|k| k.get(attr::PK))
        .and_then(|v| v.as_s().ok())
        .is_some_and(|pk| pk.as_str() >= NAMES_FROM_LOWER)
}

/// A search page from a Query's items and where it stopped: each entry
/// names the row `name_of` reads from the item's keys (`pk`, `sk`); items
/// that name no version row are left out.
fn index_page(
    items: &[Item],
    last: Option<&Item>,
    name_of: for<'k> fn(&'k str, &'k str) -> Option<(&'k str, &'k str)>,
) -> IndexPage {
    fn keys(item: &Item) -> Option<(&str, &str)> {
        let pk = item.get(attr::PK)?.as_s().ok()?;
        let sk = item.get(attr::SK)?.as_s().ok()?;
        Some((pk.as_str(), sk.as_str()))
    }
    let entries = items
        .iter()
        .filter_map(|item| {
            let (pk, sk) = keys(item)?;
            let (name, version) = name_of(pk, sk)?;
            Some(IndexEntry {
                name: name.parse().ok()?,
                version: Version::from_sort_key(version).ok()?,
                after: encode_cursor(&format!("{pk}\n{sk}")),
            })
        })
        .collect();
    let next_cursor = last
        .filter(|k| !k.is_empty())
        .and_then(keys)
        .map(|(pk, sk)| encode_cursor(&format!("{pk}\n{sk}")));
    IndexPage {
        entries,
        next_cursor,
    }
}

/// Which names a digest's index Query reads: `[0-9A-Z]…` or `[a-z]…`.
#[derive(Debug, Clone, Copy)]
enum NameRange {
    Upper,
    Lower,
}
