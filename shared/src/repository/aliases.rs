//! Aliases: named pointers to versions, with canary splits.
//!
//! A version row lists the aliases that target it (`aliases` string set), and
//! every alias write updates those sets in the same DynamoDB transaction as
//! the alias row, guarded by the alias row's revision. So an alias can never
//! point at a deleted version, and a version can never be deleted while an
//! alias points at it (SPEC 7.4), whatever the interleaving.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, KeysAndAttributes, Put, TransactWriteItem, Update,
};
use sha2::{Digest, Sha256};

use super::{
    MAX_ATTEMPTS, Repository, backoff, decode_cursor, encode_cursor, invalid_sdk_input, page_size,
};
use crate::error::{Error, Result};
use crate::layout::{alias_pk, attr, format_update_at, now};
use crate::model::{Alias, AliasTarget, Page, Resolved};
use crate::names::{AliasName, ArtifactName, Version};
use crate::rows::{AliasRow, Item, TargetRef, VersionRow, key, nv, sv, version_key};

impl Repository {
    /// Creates or moves an alias. Both targets must exist and be live, and
    /// differ. AWS calls: BatchGetItem, TransactWriteItems (2), plus one
    /// round of both per concurrent writer that got in first.
    pub async fn put_alias(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        target: AliasTarget,
    ) -> Result<Alias> {
        if let Some((secondary, _)) = target.secondary
            && secondary == target.version
        {
            return Err(Error::InvalidRequest(format!(
                "secondary_version must differ from version (both are {secondary})"
            )));
        }
        let wanted: Vec<Version> = std::iter::once(target.version)
            .chain(target.secondary.map(|(v, _)| v))
            .collect();
        // Old targets whose rows vanished (artifact purged underneath): skip them.
        let mut gone: BTreeSet<Version> = BTreeSet::new();
        for attempt in 0..MAX_ATTEMPTS {
            let (old, rows) = self.read_alias_and_versions(name, alias, &wanted).await?;
            let mut refs = Vec::with_capacity(wanted.len());
            for version in &wanted {
                match rows.get(version) {
                    Some(row) if row.is_live() => refs.push(target_ref(row)),
                    _ if version.is_latest() => {
                        return Err(Error::ArtifactNotFound {
                            name: name.to_string(),
                        });
                    }
                    _ => return Err(Error::version_not_found(name, version)),
                }
            }
            let secondary = target.secondary.map(|(_, w)| (refs[1].clone(), w));
            let row = AliasRow {
                name: name.clone(),
                alias: alias.clone(),
                update_at: now(),
                primary: refs[0].clone(),
                secondary,
                revision: Some(old.as_ref().and_then(|o| o.revision).unwrap_or(0) + 1),
            };
            let old_targets: Vec<Version> = old
                .iter()
                .flat_map(|o| o.targets().collect::<Vec<_>>())
                .collect();
            let mut ops = vec![self.alias_write(&row, old.as_ref())?];
            let mut op_versions = vec![None];
            for version in &wanted {
                ops.push(self.reference(name, alias, *version, true)?);
                op_versions.push(Some(*version));
            }
            for version in old_targets
                .iter()
                .filter(|v| !wanted.contains(v) && !v.is_latest() && !gone.contains(v))
            {
                ops.push(self.reference(name, alias, *version, false)?);
                op_versions.push(Some(*version));
            }
            match self.transact(ops).await {
                Ok(()) => return Ok(row.to_alias(&self.layout)),
                Err(TransactFailure::Conditions(failed)) => {
                    for index in failed {
                        match op_versions.get(index).copied().flatten() {
                            // A new target was deleted meanwhile: the next read says 404.
                            Some(v) if wanted.contains(&v) => {}
                            Some(v) => {
                                gone.insert(v);
                            }
                            // The alias moved under us: read again.
                            None => {}
                        }
                    }
                }
                Err(TransactFailure::Contention) => {}
                Err(TransactFailure::Other(e)) => return Err(e),
            }
            backoff(attempt).await;
        }
        Err(Error::Conflict(format!(
            "alias {alias} of {name} kept changing; retry"
        )))
    }

    /// One alias. AWS calls: 1 (GetItem).
    pub async fn get_alias(&self, name: &ArtifactName, alias: &AliasName) -> Result<Alias> {
        Ok(self.alias_row(name, alias).await?.to_alias(&self.layout))
    }

    /// Aliases of an artifact, by name. AWS calls: 1 per page.
    pub async fn list_aliases(
        &self,
        name: &ArtifactName,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<Alias>> {
        let limit = page_size(limit)?;
        let pk = alias_pk(name);
        let out = self
            .ddb
            .query()
            .table_name(&self.layout.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_values(":pk", sv(&pk))
            .consistent_read(true)
            .limit(limit as i32)
            .set_exclusive_start_key(decode_cursor(&pk, cursor, |sk| {
                sk.parse::<AliasName>().is_ok()
            })?)
            .send()
            .await
            .map_err(|e| Error::upstream("Query", e))?;
        let items = out
            .items()
            .iter()
            .map(|item| AliasRow::from_item(name, item).map(|row| row.to_alias(&self.layout)))
            .collect::<Result<Vec<_>>>()?;
        let next_cursor =
            super::versions::next_sort_key(out.last_evaluated_key()).map(encode_cursor);
        Ok(Page { items, next_cursor })
    }

    /// Deletes an alias and its references. 404 (nothing written) when absent.
    /// AWS calls: GetItem, TransactWriteItems (2).
    pub async fn delete_alias(&self, name: &ArtifactName, alias: &AliasName) -> Result<()> {
        let mut gone: BTreeSet<Version> = BTreeSet::new();
        for attempt in 0..MAX_ATTEMPTS {
            let old = self.alias_row(name, alias).await?;
            let (condition, names, values) = revision_condition(&old);
            let mut ops = vec![
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.layout.table)
                            .set_key(Some(key(alias_pk(name), alias.as_str())))
                            .condition_expression(condition)
                            .set_expression_attribute_names(Some(names))
                            .set_expression_attribute_values(Some(values))
                            .build()
                            .map_err(invalid_sdk_input)?,
                    )
                    .build(),
            ];
            let mut op_versions = vec![None];
            for version in old
                .targets()
                .filter(|v| !v.is_latest() && !gone.contains(v))
            {
                ops.push(self.reference(name, alias, version, false)?);
                op_versions.push(Some(version));
            }
            match self.transact(ops).await {
                Ok(()) => return Ok(()),
                Err(TransactFailure::Conditions(failed)) => {
                    gone.extend(
                        failed
                            .into_iter()
                            .filter_map(|i| op_versions.get(i).copied().flatten()),
                    );
                }
                Err(TransactFailure::Contention) => {}
                Err(TransactFailure::Other(e)) => return Err(e),
            }
            backoff(attempt).await;
        }
        Err(Error::Conflict(format!(
            "alias {alias} of {name} kept changing; retry"
        )))
    }

    /// Picks the version one request should get (SPEC 7.9).
    ///
    /// With `key`, the pick is a pure function of (name, alias, key, split):
    /// the key hashes to a bucket 0..100 and goes to the secondary when the
    /// bucket is below its weight, so raising the weight only ever moves keys
    /// from primary to secondary. AWS calls: 1 (BatchGetItem of the alias and
    /// LATEST rows); 2 for aliases the Python library wrote.
    pub async fn resolve_alias(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        key: Option<&str>,
    ) -> Result<Resolved> {
        let alias_key = crate::rows::key(alias_pk(name), alias.as_str());
        let latest_key = version_key(name, Version::Latest);
        let items = self.batch_get(vec![alias_key, latest_key]).await?;
        let mut row = None;
        let mut latest = None;
        for item in &items {
            if item
                .get(attr::PK)
                .and_then(|v| v.as_s().ok())
                .is_some_and(|pk| pk.starts_with("__"))
            {
                row = Some(AliasRow::from_item(name, item)?);
            } else {
                latest = Some(VersionRow::from_item(item)?);
            }
        }
        let row = row.ok_or_else(|| Error::AliasNotFound {
            name: name.to_string(),
            alias: alias.to_string(),
        })?;
        let bucket = match key {
            Some(key) => sticky_bucket(name, alias, key),
            None => rand::random_range(0..100),
        };
        let chosen = match &row.secondary {
            Some((secondary, weight)) if bucket < weight.get() => secondary,
            _ => &row.primary,
        };
        let (sha256, s3_version_id) = match (chosen.version, &chosen.sha256) {
            (Version::Latest, _) => {
                let latest =
                    latest
                        .filter(|l| l.is_live())
                        .ok_or_else(|| Error::ArtifactNotFound {
                            name: name.to_string(),
                        })?;
                (latest.sha256, latest.s3_version_id)
            }
            (_, Some(sha)) => (sha.clone(), chosen.s3_version_id.clone()),
            (version, None) => {
                let target = self.get_live_row(name, version).await?;
                (target.sha256, target.s3_version_id)
            }
        };
        Ok(Resolved {
            name: name.clone(),
            alias: alias.clone(),
            version: chosen.version,
            download_url: self
                .download_url(name, chosen.version, s3_version_id.as_deref())
                .await?,
            sha256,
        })
    }

    async fn alias_row(&self, name: &ArtifactName, alias: &AliasName) -> Result<AliasRow> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.layout.table)
            .set_key(Some(key(alias_pk(name), alias.as_str())))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::upstream("GetItem", e))?;
        match out.item() {
            Some(item) => AliasRow::from_item(name, item),
            None => Err(Error::AliasNotFound {
                name: name.to_string(),
                alias: alias.to_string(),
            }),
        }
    }

    /// The alias row (if any) and the rows of `versions`, in one read.
    async fn read_alias_and_versions(
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

    /// Strongly consistent BatchGetItem, re-asking for unprocessed keys.
    async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>> {
        let mut found = Vec::new();
        let mut pending = keys;
        for attempt in 0..MAX_ATTEMPTS {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .consistent_read(true)
                .build()
                .map_err(invalid_sdk_input)?;
            let out = self
                .ddb
                .batch_get_item()
                .request_items(&self.layout.table, request)
                .send()
                .await
                .map_err(|e| Error::upstream("BatchGetItem", e))?;
            if let Some(items) = out.responses().and_then(|r| r.get(&self.layout.table)) {
                found.extend(items.iter().cloned());
            }
            pending = out
                .unprocessed_keys()
                .and_then(|u| u.get(&self.layout.table))
                .map(|k| k.keys().to_vec())
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(found);
            }
            backoff(attempt).await;
        }
        Err(Error::Throttled {
            operation: "BatchGetItem",
            source: "keys left unprocessed".into(),
        })
    }

    /// The alias row write, conditional on the row being as we read it.
    fn alias_write(&self, row: &AliasRow, old: Option<&AliasRow>) -> Result<TransactWriteItem> {
        let mut item = key(alias_pk(&row.name), row.alias.as_str());
        item.insert(attr::UPDATE_AT.into(), sv(format_update_at(row.update_at)));
        item.insert(attr::VERSION.into(), sv(row.primary.version.sort_key()));
        insert_target(
            &mut item,
            attr::VERSION_SHA256,
            attr::VERSION_S3_VERSION_ID,
            &row.primary,
        );
        if let Some((secondary, weight)) = &row.secondary {
            item.insert(
                attr::SECONDARY_VERSION.into(),
                sv(secondary.version.sort_key()),
            );
            item.insert(attr::SECONDARY_VERSION_WEIGHT.into(), nv(weight.get()));
            insert_target(
                &mut item,
                attr::SECONDARY_SHA256,
                attr::SECONDARY_S3_VERSION_ID,
                secondary,
            );
        }
        if let Some(revision) = row.revision {
            item.insert(attr::REVISION.into(), nv(revision));
        }
        let (condition, names, values) = match old {
            Some(old) => revision_condition(old),
            None => (
                "attribute_not_exists(#pk)".to_owned(),
                HashMap::from([("#pk".to_owned(), attr::PK.to_owned())]),
                HashMap::new(),
            ),
        };
        let put = Put::builder()
            .table_name(&self.layout.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(if values.is_empty() {
                None
            } else {
                Some(values)
            })
            .build()
            .map_err(invalid_sdk_input)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Adds (`add`) or removes this alias from a version row's reference set.
    /// Adding requires the version to be live; LATEST is only checked, as it
    /// can never be deleted.
    fn reference(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        version: Version,
        add: bool,
    ) -> Result<TransactWriteItem> {
        let key = version_key(name, version);
        let names = HashMap::from([
            ("#pk".to_owned(), attr::PK.to_owned()),
            ("#is_deleted".to_owned(), attr::IS_DELETED.to_owned()),
        ]);
        let live = "attribute_exists(#pk) AND #is_deleted = :false";
        if version.is_latest() {
            let check = ConditionCheck::builder()
                .table_name(&self.layout.table)
                .set_key(Some(key))
                .condition_expression(live)
                .set_expression_attribute_names(Some(names))
                .expression_attribute_values(":false", AttributeValue::Bool(false))
                .build()
                .map_err(invalid_sdk_input)?;
            return Ok(TransactWriteItem::builder().condition_check(check).build());
        }
        let set = AttributeValue::Ss(vec![alias.to_string()]);
        let update = if add {
            Update::builder()
                .update_expression("ADD #aliases :alias")
                .condition_expression(live)
                .set_expression_attribute_names(Some(names))
                .expression_attribute_values(":false", AttributeValue::Bool(false))
        } else {
            Update::builder()
                .update_expression("DELETE #aliases :alias")
                .condition_expression("attribute_exists(#pk)")
                .expression_attribute_names("#pk", attr::PK)
        };
        let update = update
            .table_name(&self.layout.table)
            .set_key(Some(key))
            .expression_attribute_names("#aliases", attr::ALIASES)
            .expression_attribute_values(":alias", set)
            .build()
            .map_err(invalid_sdk_input)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    async fn transact(
        &self,
        ops: Vec<TransactWriteItem>,
    ) -> std::result::Result<(), TransactFailure> {
        match self
            .ddb
            .transact_write_items()
            .set_transact_items(Some(ops))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                TransactWriteItemsError::TransactionCanceledException(c) => {
                    let reasons = c.cancellation_reasons();
                    let failed: Vec<usize> = reasons
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                        .map(|(i, _)| i)
                        .collect();
                    if failed.is_empty() {
                        Err(TransactFailure::Contention)
                    } else {
                        Err(TransactFailure::Conditions(failed))
                    }
                }
                TransactWriteItemsError::TransactionInProgressException(_) => {
                    Err(TransactFailure::Contention)
                }
                other => Err(TransactFailure::Other(Error::Upstream {
                    operation: "TransactWriteItems",
                    source: Box::new(other),
                })),
            },
            Err(e) => Err(TransactFailure::Other(Error::upstream(
                "TransactWriteItems",
                e,
            ))),
        }
    }
}

enum TransactFailure {
    /// These operations' conditions failed.
    Conditions(Vec<usize>),
    /// Another transaction touched the same items; try again.
    Contention,
    Other(Error),
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
        None => {
            names.insert("#pk".to_owned(), attr::PK.to_owned());
            names.insert("#version".to_owned(), attr::VERSION.to_owned());
            values.insert(":version".to_owned(), sv(old.primary.version.sort_key()));
            "attribute_exists(#pk) AND attribute_not_exists(#rev) AND #version = :version"
                .to_owned()
        }
    };
    (condition, names, values)
}

fn target_ref(row: &VersionRow) -> TargetRef {
    if row.version.is_latest() {
        // LATEST moves: resolve reads it fresh.
        TargetRef {
            version: row.version,
            sha256: None,
            s3_version_id: None,
        }
    } else {
        TargetRef {
            version: row.version,
            sha256: Some(row.sha256.clone()),
            s3_version_id: row.s3_version_id.clone(),
        }
    }
}

fn insert_target(item: &mut Item, sha_attr: &str, vid_attr: &str, target: &TargetRef) {
    if let Some(sha) = &target.sha256 {
        item.insert(sha_attr.into(), sv(sha));
    }
    if let Some(vid) = &target.s3_version_id {
        item.insert(vid_attr.into(), sv(vid));
    }
}

/// A stable bucket in 0..100 for one key of one alias.
pub fn sticky_bucket(name: &ArtifactName, alias: &AliasName, key: &str) -> u8 {
    let digest = Sha256::new()
        .chain_update(name.as_str())
        .chain_update([0])
        .chain_update(alias.as_str())
        .chain_update([0])
        .chain_update(key)
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % 100) as u8
}
