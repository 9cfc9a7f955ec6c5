//! Rollout rows (`__{name}-rollout`, `{alias}/{id}`) and the registry of
//! held aliases (`__rollouts`, `{name}/{alias}` → the rollout id), SPEC
//! 10.1: their reads, the listing of an alias's rollouts with its state
//! filter, and their writes (alone, or as members of an alias change's
//! transaction), each conditional on the rollout being as read.

use aws_sdk_dynamodb::types::{ConditionCheck, Delete, Put, Update};

use crate::change_events::{self, ChangeEvent};
use crate::error::{Error, Result};
use crate::layout::{ROLLOUTS_PK, alias_pk, attr, format_update_at, now, rollout_pk};
use crate::names::{AliasName, ArtifactName};
use crate::rollout::RolloutState;
use crate::rows::{Item, RolloutRow, key, sv};
use crate::sdk_error::invalid_sdk_input;
use crate::table::Table;
use crate::tx::TxItem;

/// Where a page of `alias`'s rollouts starts, from a cursor of its
/// listing ([`Table::rollout_page`]).
pub fn rollout_cursor(
    name: &ArtifactName,
    alias: &AliasName,
    cursor: Option<&str>,
) -> Result<Option<Item>> {
    let prefix = format!("{alias}/");
    crate::alias_items::cursor_under(&rollout_pk(name), cursor, &prefix)
}

/// A registry entry of held aliases as (artifact, alias, rollout id), or
/// what keeps it from reading as one.
fn held_entry(item: &Item) -> std::result::Result<(ArtifactName, AliasName, String), String> {
    let sk = item
        .get(attr::SK)
        .and_then(|v| v.as_s().ok())
        .ok_or("no string sort key")?;
    let (name, alias) = sk
        .split_once('/')
        .ok_or("the sort key is not {artifact}/{alias}")?;
    let name = name
        .parse()
        .map_err(|e| format!("the sort key names no artifact: {e}"))?;
    let id = item
        .get(attr::ROLLOUT_ID)
        .and_then(|v| v.as_s().ok())
        .ok_or("no string rollout_id")?;
    Ok((name, AliasName::stored(alias), id.clone()))
}

/// The key of the registry entry of the rollout holding `alias`.
fn registry_key(name: &ArtifactName, alias: &AliasName) -> Item {
    key(ROLLOUTS_PK, format!("{name}/{alias}"))
}

impl Table {
    /// One page of `alias`'s rollouts, newest first, only those in `state`
    /// when given (a filter: a page may hold fewer than `limit`); one
    /// Query, strongly consistent; and the sort key where the next page
    /// starts.
    pub async fn rollout_page(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        state: Option<RolloutState>,
        limit: u32,
        start: Option<Item>,
    ) -> Result<(Vec<RolloutRow>, Option<String>)> {
        let pk = rollout_pk(name);
        let prefix = format!("{alias}/");
        let mut query = self
            .ddb
            .query()
            .table_name(&self.name)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#sk", attr::SK)
            .expression_attribute_values(":pk", sv(&pk))
            .expression_attribute_values(":prefix", sv(&prefix))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(limit as i32)
            .set_exclusive_start_key(start);
        if let Some(state) = state {
            query = query
                .filter_expression("#state = :state")
                .expression_attribute_names("#state", attr::STATE)
                .expression_attribute_values(":state", sv(state.as_str()));
        }
        let out = query
            .send()
            .await
            .map_err(|e| crate::sdk_error::upstream("Query", e))?;
        let rows = out
            .items()
            .iter()
            .map(|item| RolloutRow::from_item(name, item))
            .collect::<Result<Vec<_>>>()?;
        let next = crate::paging::next_sort_key(out.last_evaluated_key()).map(str::to_owned);
        Ok((rows, next))
    }

    /// The registry of held aliases, whole (Query, every page): (artifact,
    /// alias, rollout id) of each entry. An entry that does not read as
    /// such is skipped, so that it does not stop the driver for every
    /// other rollout, and logged (a warning naming its key and what is
    /// wrong): the rollout it stood for is no longer driven.
    pub async fn held_rollouts(&self) -> Result<Vec<(ArtifactName, AliasName, String)>> {
        let items = self.query_all(ROLLOUTS_PK).await?;
        Ok(items
            .iter()
            .filter_map(|item| match held_entry(item) {
                Ok(entry) => Some(entry),
                Err(problem) => {
                    tracing::warn!(
                        pk = ROLLOUTS_PK,
                        sk = ?item.get(attr::SK),
                        rollout_id = ?item.get(attr::ROLLOUT_ID),
                        %problem,
                        "a registry entry of held aliases does not read; skipped, \
                         its rollout is not driven"
                    );
                    None
                }
            })
            .collect())
    }

    /// The rollout the registry names for `alias`, if any (GetItem,
    /// strongly consistent).
    pub async fn registered_rollout(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
    ) -> Result<Option<String>> {
        Ok(self
            .get(registry_key(name, alias))
            .await?
            .and_then(|item| match held_entry(&item) {
                Ok((_, _, id)) => Some(id),
                Err(_) => None,
            }))
    }

    /// A rollout's row, strongly consistent (GetItem); `None` when it does
    /// not exist.
    pub async fn rollout(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        id: &str,
    ) -> Result<Option<RolloutRow>> {
        let item = self
            .get(key(rollout_pk(name), RolloutRow::sort_key(alias, id)))
            .await?;
        item.as_ref()
            .map(|item| RolloutRow::from_item(name, item))
            .transpose()
    }

    /// Rewrites the rollout row whole as `row` (PutItem), on condition
    /// that it is still exactly as `read` (see [`rollout_put`]); false when
    /// it is not.
    pub async fn rewrite_rollout(&self, row: &RolloutRow, read: &RolloutRow) -> Result<bool> {
        let (put, events) = rollout_put(&self.name, row, Some(read))?;
        // A write outside a transaction has no event log to go with it: a
        // pause or a resume, which gives no event.
        if !events.is_empty() {
            return Err(Error::internal(
                "rollout",
                "a rewrite that gives events must go through the event log",
            ));
        }
        let Some(put) = put.into_inner().put else {
            return Err(Error::internal("rollout", "a rollout write is a Put"));
        };
        let result = self
            .ddb
            .put_item()
            .table_name(&self.name)
            .set_item(Some(put.item))
            .set_condition_expression(put.condition_expression)
            .set_expression_attribute_names(put.expression_attribute_names)
            .set_expression_attribute_values(put.expression_attribute_values)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(crate::sdk_error::upstream("PutItem", e)),
        }
    }

    /// Deletes the registry entry of `alias` (DeleteItem) on condition that
    /// it names rollout `id`; an entry naming another rollout (or none) is
    /// left as it is, and that is no failure.
    pub async fn forget_rollout(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        id: &str,
    ) -> Result<()> {
        let result = self
            .ddb
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(registry_key(name, alias)))
            .condition_expression("#rid = :id")
            .expression_attribute_names("#rid", attr::ROLLOUT_ID)
            .expression_attribute_values(":id", sv(id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(crate::sdk_error::upstream("DeleteItem", e)),
        }
    }
}

/// A transaction member writing the rollout row whole: over `read`, on
/// condition that the row still exists exactly as read (its state and last
/// write time); without it, only where there is no row (a new rollout).
///
/// With the events of the change (a step, the end), the item marked as
/// logging them: the caller's transaction writes them to the artifact's
/// event log (`change_events::log_member`).
pub fn rollout_put(
    table: &str,
    row: &RolloutRow,
    read: Option<&RolloutRow>,
) -> Result<(TxItem, Vec<ChangeEvent>)> {
    let mut item = row.to_item();
    let events =
        change_events::events_of_write(read.map(RolloutRow::to_item).as_ref(), Some(&item));
    change_events::mark_logged(&mut item, &events);
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .expression_attribute_names("#pk", attr::PK);
    let put = match read {
        None => put.condition_expression("attribute_not_exists(#pk)"),
        Some(read) => put
            .condition_expression(
                "attribute_exists(#pk) AND #state = :read_state AND #update_at = :read_at",
            )
            .expression_attribute_names("#state", attr::STATE)
            .expression_attribute_names("#update_at", attr::UPDATE_AT)
            .expression_attribute_values(":read_state", sv(read.state.as_str()))
            .expression_attribute_values(":read_at", sv(format_update_at(read.update_at))),
    };
    let put = TxItem::builder()
        .put(put.build().map_err(invalid_sdk_input)?)
        .build();
    Ok((put, events))
}

/// A transaction member putting the registry entry of `row`'s alias
/// (naming `row`), unconditionally.
pub fn registry_put(table: &str, row: &RolloutRow) -> Result<TxItem> {
    let mut item: Item = key(ROLLOUTS_PK, format!("{}/{}", row.name, row.alias));
    item.insert(attr::ROLLOUT_ID.into(), sv(&row.id));
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .build()
        .map_err(invalid_sdk_input)?;
    Ok(TxItem::builder().put(put).build())
}

/// A transaction member deleting the registry entry of `alias`, on
/// condition that there is none or that it names rollout `id`.
pub fn registry_delete(
    table: &str,
    name: &ArtifactName,
    alias: &AliasName,
    id: &str,
) -> Result<TxItem> {
    let delete = Delete::builder()
        .table_name(table)
        .set_key(Some(registry_key(name, alias)))
        .condition_expression("attribute_not_exists(#pk) OR #rid = :id")
        .expression_attribute_names("#pk", attr::PK)
        .expression_attribute_names("#rid", attr::ROLLOUT_ID)
        .expression_attribute_values(":id", sv(id))
        .build()
        .map_err(invalid_sdk_input)?;
    Ok(TxItem::builder().delete(delete).build())
}

/// A transaction member that holds only while `alias` of `name` is not
/// held by rollout `id` (absent, or naming another rollout or none): an
/// orphaned rollout is ended only while its alias has truly stopped naming
/// it. (A start that read the alias before rollout `id`'s start landed, and
/// its registry entry after, took it for orphaned; ending it left the alias
/// held, split, by a rollout no pass drives and no change can cancel.)
pub fn alias_not_held_by(
    table: &str,
    name: &ArtifactName,
    alias: &AliasName,
    id: &str,
) -> Result<TxItem> {
    let check = ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(key(alias_pk(name), alias.as_str())))
        .condition_expression("attribute_not_exists(#rollout) OR #rollout <> :id")
        .expression_attribute_names("#rollout", attr::ROLLOUT)
        .expression_attribute_values(":id", sv(id))
        .build()
        .map_err(invalid_sdk_input)?;
    Ok(TxItem::builder().condition_check(check).build())
}

/// A transaction member ending rollout `id` `aborted`, cancelled by
/// `actor`'s change of the alias by hand (its next step dropped), on
/// condition that it is active or paused.
///
/// With the event of its end (`Rollout Aborted`), told from `read` (the
/// rollout as read; `None`: unread, no event), the item marked as logging
/// it.
pub fn cancel_by_hand(
    table: &str,
    name: &ArtifactName,
    alias: &AliasName,
    id: &str,
    actor: &str,
    read: Option<&RolloutRow>,
) -> Result<(TxItem, Vec<ChangeEvent>)> {
    let at = now();
    let reason = format!("cancelled by {actor}, who changed the alias by hand");
    let events = read.map_or_else(Vec::new, |read| {
        let mut ended = read.clone();
        ended.state = RolloutState::Aborted;
        ended.reason = Some(reason.clone());
        ended.next_step_at = None;
        ended.update_at = at;
        change_events::events_of_write(Some(&read.to_item()), Some(&ended.to_item()))
    });
    let mut update = Update::builder()
        .table_name(table)
        .set_key(Some(key(rollout_pk(name), RolloutRow::sort_key(alias, id))))
        .condition_expression("#state IN (:active, :paused)")
        .expression_attribute_names("#state", attr::STATE)
        .expression_attribute_names("#reason", attr::REASON)
        .expression_attribute_names("#update_at", attr::UPDATE_AT)
        .expression_attribute_names("#next", attr::NEXT_STEP_AT)
        .expression_attribute_values(":aborted", sv(RolloutState::Aborted.as_str()))
        .expression_attribute_values(":active", sv(RolloutState::Active.as_str()))
        .expression_attribute_values(":paused", sv(RolloutState::Paused.as_str()))
        .expression_attribute_values(":reason", sv(reason))
        .expression_attribute_values(":at", sv(format_update_at(at)));
    update = match events.first() {
        Some(event) => update
            .update_expression(
                "SET #state = :aborted, #reason = :reason, #update_at = :at, #logged = :logged REMOVE #next",
            )
            .expression_attribute_names("#logged", attr::LOGGED_EVENT)
            .expression_attribute_values(":logged", sv(event.id())),
        None => update.update_expression(
            "SET #state = :aborted, #reason = :reason, #update_at = :at REMOVE #next",
        ),
    };
    let update = update.build().map_err(invalid_sdk_input)?;
    Ok((TxItem::builder().update(update).build(), events))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sk: &str, id: Option<&str>) -> Item {
        let mut item = key(ROLLOUTS_PK, sk);
        if let Some(id) = id {
            item.insert(attr::ROLLOUT_ID.into(), sv(id));
        }
        item
    }

    #[test]
    fn a_registry_entry_reads_as_artifact_alias_and_rollout() {
        let (name, alias, id) = held_entry(&entry("app/prod", Some("r1"))).unwrap();
        assert_eq!(
            (name.as_str(), alias.to_string(), id.as_str()),
            ("app", "prod".into(), "r1")
        );
    }

    #[test]
    fn a_registry_entry_that_does_not_read_says_what_is_wrong() {
        for (item, problem) in [
            (entry("app-prod", Some("r1")), "not {artifact}/{alias}"),
            (entry("app/prod", None), "no string rollout_id"),
            (entry("/prod", Some("r1")), "names no artifact"),
        ] {
            let Err(said) = held_entry(&item) else {
                panic!("{item:?} read as an entry");
            };
            assert!(said.contains(problem), "{said}");
        }
    }
}
