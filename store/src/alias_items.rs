//! Alias rows (`__{name}-alias`), their history entries
//! (`__{name}-history`) and the members of an alias change's transaction
//! (SPEC 4.2): the alias row written or deleted only as read, and the
//! updates of the version rows' alias references (`aliases` string set).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, Update};

use crate::error::{Error, Result};
use crate::layout::{alias_pk, attr, history_pk, history_sk, history_sk_prefix};
use crate::model::VersionStatus;
use crate::names::{AliasName, ArtifactName, Version};
use crate::paging::decode_cursor;
use crate::rows::{AliasRow, HistoryRow, Item, LIVE, VersionRow, key, nv, sv, version_key};
use crate::sdk_error::invalid_sdk_input;
use crate::table::{PartitionPage, Table};
use crate::tx::TxItem;

/// How an alias change updates a version row's alias references
/// ([`reference`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// Adds the alias; the version must be live, with `refuse_archived`
    /// also not archived, and with `recorded` still at that status (the
    /// one the alias row records for it, as read), so that an alias never
    /// lands recording a status its version has left (a status change
    /// racing the move). LATEST is only checked live.
    Add {
        refuse_archived: bool,
        recorded: Option<VersionStatus>,
    },
    /// Removes the alias; the row must exist (LATEST is only checked, and
    /// live).
    Remove,
}

/// The start of a page under `prefix` of partition `pk` (a cursor of
/// [`crate::paging::encode_cursor`]): refused (400) when it is not a sort
/// key holding a `/` and starting with `prefix`.
pub(crate) fn cursor_under(pk: &str, cursor: Option<&str>, prefix: &str) -> Result<Option<Item>> {
    let start = decode_cursor(pk, cursor, |sk| sk.contains('/'))?;
    if let Some(start) = &start
        && !start
            .get(attr::SK)
            .and_then(|v| v.as_s().ok())
            .is_some_and(|sk| sk.starts_with(prefix))
    {
        return Err(Error::InvalidRequest(
            "cursor is not one this listing returned".into(),
        ));
    }
    Ok(start)
}

/// Where a page of `alias`'s history starts, from a cursor of its listing.
pub fn history_cursor(
    name: &ArtifactName,
    alias: &AliasName,
    cursor: Option<&str>,
) -> Result<Option<Item>> {
    let prefix = history_sk_prefix(alias.as_str());
    cursor_under(&history_pk(name), cursor, &prefix)
}

/// Where the next page of `name`'s history starts: the sort key a page
/// ended at ([`Table::history_page`]).
pub fn history_start(name: &ArtifactName, sort_key: String) -> Item {
    key(history_pk(name), sort_key)
}

/// Where a page of `name`'s aliases starts, from a cursor of its listing
/// (the sort key must be an alias name).
pub fn alias_cursor(name: &ArtifactName, cursor: Option<&str>) -> Result<Option<Item>> {
    decode_cursor(&alias_pk(name), cursor, |sk| {
        sk.parse::<AliasName>().is_ok()
    })
}

impl Table {
    /// One page of `alias`'s history entries by revision (`ascending` or
    /// not), strongly consistent (one Query), and the sort key where the
    /// next page starts.
    pub async fn history_page(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        limit: u32,
        start: Option<Item>,
        ascending: bool,
    ) -> Result<(Vec<HistoryRow>, Option<String>)> {
        let pk = history_pk(name);
        let prefix = history_sk_prefix(alias.as_str());
        let (found, next) = self
            .page(PartitionPage {
                pk: &pk,
                sk_prefix: Some(&prefix),
                ascending,
                limit,
                start,
            })
            .await?;
        let rows = found
            .iter()
            .map(|item| HistoryRow::from_item(name, item))
            .collect::<Result<Vec<_>>>()?;
        Ok((rows, next))
    }

    /// The history entry of `alias`'s `revision`, strongly consistent
    /// (GetItem); `None` when there is none.
    pub async fn history_entry(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        revision: u64,
    ) -> Result<Option<HistoryRow>> {
        let item = self
            .get(key(history_pk(name), history_sk(alias.as_str(), revision)))
            .await?;
        item.as_ref()
            .map(|item| HistoryRow::from_item(name, item))
            .transpose()
    }

    /// One page of `name`'s alias rows, by alias name (one Query, strongly
    /// consistent), and the sort key where the next page starts.
    pub async fn alias_page(
        &self,
        name: &ArtifactName,
        limit: u32,
        start: Option<Item>,
    ) -> Result<(Vec<AliasRow>, Option<String>)> {
        let pk = alias_pk(name);
        let (found, next) = self
            .page(PartitionPage {
                pk: &pk,
                sk_prefix: None,
                ascending: true,
                limit,
                start,
            })
            .await?;
        let rows = found
            .iter()
            .map(|item| AliasRow::from_item(name, item))
            .collect::<Result<Vec<_>>>()?;
        Ok((rows, next))
    }

    /// The alias row, strongly consistent (GetItem); `None` when absent.
    pub async fn alias_row(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
    ) -> Result<Option<AliasRow>> {
        let item = self.get(key(alias_pk(name), alias.as_str())).await?;
        item.as_ref()
            .map(|item| AliasRow::from_item(name, item))
            .transpose()
    }

    /// The alias row (if any) and the rows of `versions` that exist, in
    /// one strongly consistent read ([`Table::batch_get`]).
    pub async fn alias_and_versions(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        versions: &[Version],
    ) -> Result<(Option<AliasRow>, HashMap<Version, VersionRow>)> {
        let mut keys = vec![key(alias_pk(name), alias.as_str())];
        keys.extend(versions.iter().map(|v| version_key(name, *v)));
        let mut old = None;
        let mut rows = HashMap::new();
        for item in self.batch_get(keys).await? {
            if item
                .get(attr::PK)
                .and_then(|v| v.as_s().ok())
                .is_some_and(|pk| pk.starts_with("__"))
            {
                old = Some(AliasRow::from_item(name, &item)?);
            } else {
                let row = VersionRow::from_item(&item)?;
                rows.insert(row.version, row);
            }
        }
        Ok((old, rows))
    }
}

/// A transaction member putting the alias row `row` (or deleting the
/// alias, when `row` is `None`), on condition that the row is exactly as
/// read (`old`; absent: that there is no row).
pub fn alias_write(
    table: &str,
    name: &ArtifactName,
    alias: &AliasName,
    row: Option<&AliasRow>,
    old: Option<&AliasRow>,
) -> Result<TxItem> {
    let (condition, names, values) = match old {
        Some(old) => revision_condition(old),
        None => (
            "attribute_not_exists(#pk)".to_owned(),
            HashMap::from([("#pk".to_owned(), attr::PK.to_owned())]),
            HashMap::new(),
        ),
    };
    let values = (!values.is_empty()).then_some(values);
    Ok(match row {
        Some(row) => TxItem::builder()
            .put(
                Put::builder()
                    .table_name(table)
                    .set_item(Some(row.to_item()))
                    .condition_expression(condition)
                    .set_expression_attribute_names(Some(names))
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(invalid_sdk_input)?,
            )
            .build(),
        None => TxItem::builder()
            .delete(
                Delete::builder()
                    .table_name(table)
                    .set_key(Some(key(alias_pk(name), alias.as_str())))
                    .condition_expression(condition)
                    .set_expression_attribute_names(Some(names))
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(invalid_sdk_input)?,
            )
            .build(),
    })
}

/// Condition that the alias row is exactly as read. Rows the Python library
/// wrote have no revision; for them the targets and weight stand in.
fn revision_condition(
    old: &AliasRow,
) -> (
    String,
    HashMap<String, String>,
    HashMap<String, AttributeValue>,
) {
    let mut names = HashMap::from([("#rev".to_owned(), attr::REVISION.to_owned())]);
    let mut values = HashMap::new();
    let condition = match old.revision {
        Some(revision) => {
            values.insert(":rev".to_owned(), nv(revision));
            "#rev = :rev".to_owned()
        }
        // The library rewrites the whole row on every change, `update_at`
        // included: the row is as read iff its primary and time are.
        None => {
            names.insert("#pk".to_owned(), attr::PK.to_owned());
            names.insert("#version".to_owned(), attr::VERSION.to_owned());
            names.insert("#update_at".to_owned(), attr::UPDATE_AT.to_owned());
            values.insert(":version".to_owned(), sv(old.primary.version.sort_key()));
            values.insert(
                ":update_at".to_owned(),
                sv(crate::layout::format_update_at(old.update_at)),
            );
            "attribute_exists(#pk) AND attribute_not_exists(#rev) AND #version = :version AND #update_at = :update_at"
                .to_owned()
        }
    };
    (condition, names, values)
}

/// A transaction member adding this alias to (or removing it from) the
/// reference set of `version`'s row. Adding requires the version to be
/// live (and, with `refuse_archived`, not archived); removing only that
/// the row exists. LATEST is never updated, only checked to be live, as it
/// can never be deleted.
pub fn reference(
    table: &str,
    name: &ArtifactName,
    alias: &AliasName,
    version: Version,
    change: Reference,
) -> Result<TxItem> {
    let (add, refuse_archived, recorded) = match change {
        Reference::Add {
            refuse_archived,
            recorded,
        } => (true, refuse_archived, recorded),
        Reference::Remove => (false, false, None),
    };
    let key = version_key(name, version);
    let mut names = HashMap::from([
        ("#pk".to_owned(), attr::PK.to_owned()),
        ("#is_deleted".to_owned(), attr::IS_DELETED.to_owned()),
    ]);
    let mut values = HashMap::from([(":false".to_owned(), AttributeValue::Bool(false))]);
    let mut live = format!("attribute_exists(#pk) AND {LIVE}");
    if !version.is_latest() {
        if refuse_archived {
            names.insert("#status".to_owned(), attr::STATUS.to_owned());
            values.insert(":archived".to_owned(), sv(VersionStatus::Archived.as_str()));
            live.push_str(" AND (attribute_not_exists(#status) OR #status <> :archived)");
        }
        if let Some(status) = recorded {
            // A row without status is active (`VersionRow::from_item`).
            names.insert("#status".to_owned(), attr::STATUS.to_owned());
            values.insert(":recorded".to_owned(), sv(status.as_str()));
            live.push_str(match status {
                VersionStatus::Active => {
                    " AND (attribute_not_exists(#status) OR #status = :recorded)"
                }
                _ => " AND #status = :recorded",
            });
        }
    }
    if version.is_latest() {
        let check = ConditionCheck::builder()
            .table_name(table)
            .set_key(Some(key))
            .condition_expression(&live)
            .set_expression_attribute_names(Some(names))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .build()
            .map_err(invalid_sdk_input)?;
        return Ok(TxItem::builder().condition_check(check).build());
    }
    let set = AttributeValue::Ss(vec![alias.to_string()]);
    let update = if add {
        Update::builder()
            .update_expression("ADD #aliases :alias")
            .condition_expression(&live)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
    } else {
        Update::builder()
            .update_expression("DELETE #aliases :alias")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", attr::PK)
    };
    let update = update
        .table_name(table)
        .set_key(Some(key))
        .expression_attribute_names("#aliases", attr::ALIASES)
        .expression_attribute_values(":alias", set)
        .build()
        .map_err(invalid_sdk_input)?;
    Ok(TxItem::builder().update(update).build())
}
