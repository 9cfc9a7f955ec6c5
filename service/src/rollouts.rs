//! Progressive rollouts (SPEC 10.1): an alias moved to a new version in
//! weighted steps, by its starter, a person, or the driver.
//!
//! A rollout holds its alias: the alias row names it (`rollout`), so every
//! other change of the alias is refused (409 `RolloutInProgress`) unless it
//! cancels the rollout in the same transaction. Every move a rollout makes
//! (start, step, completion, abort) is an ordinary alias change — alias
//! row, history entry, version references in one transaction — that also
//! writes the rollout's own item, conditional on the item being as read,
//! and is conditional on the alias revision the rollout last left: two
//! drivers, or a driver and a person, never both apply a step. The
//! registry item (`__rollouts`, `{name}/{alias}`) lets the driver find the
//! rollouts that hold an alias without a scan; it is written and deleted in
//! those same transactions.

use std::collections::HashMap;

use artifact_store::change_events::ChangeEvent;
use artifact_store::tx::{Tx, TxItem};
use time::OffsetDateTime;

use super::aliases::{Intent, Link};
use super::{Repository, encode_cursor, page_size};
use crate::error::{Error, Result};
use crate::layout::{format_update_at, now};
use crate::model::{AliasTarget, ChangeRequest, Page, Precondition, Rollout, RolloutRequest};
use crate::names::{AliasName, ArtifactName, Weight};
use crate::rollout::{AlarmState, Decision, RolloutAction, RolloutState, decide};
use crate::rows::{AliasRow, RolloutRow};
use artifact_store::rollout_items;

/// A manual action re-reads the rollout this many times when a driver
/// step lands in between.
const ACTION_ATTEMPTS: u32 = 5;

/// What one driver visit of a rollout did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Driven {
    /// Nothing due.
    Waiting,
    /// Moved to step `step` (1-based).
    Stepped {
        step: usize,
    },
    Completed,
    Aborted {
        reason: String,
    },
    /// Another writer (a second driver, a person) changed it first.
    Lost,
    /// The rollout is gone (its artifact purged) or over: its registry
    /// entry was dropped.
    Forgotten,
}

/// A rollout id: 16 lowercase hex digits (start time in milliseconds, then
/// randomness), so that an alias's rollouts sort by start.
pub fn check_rollout_id(id: &str) -> Result<()> {
    if id.len() == 16
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "rollout id {id:?} is not 16 lowercase hex digits"
        )))
    }
}

fn new_rollout_id(at: OffsetDateTime) -> String {
    let ms = (at.unix_timestamp_nanos() / 1_000_000) as u64;
    format!(
        "{:011x}{:05x}",
        ms & 0xfff_ffff_ffff,
        rand::random_range(0..0x10_0000u32)
    )
}

/// How a rollout changes its alias.
#[derive(Debug, Clone)]
enum Transition {
    /// Apply step `k` (0-based, below the last).
    Step(usize),
    /// The new version alone.
    Complete,
    /// Back to where the alias was.
    Abort(String),
}

impl Repository {
    /// Starts rolling `alias` out to `request.version`: the first step is
    /// applied at once (the alias keeps its version as primary and sends
    /// the step's weight to the new one). The alias must exist, point at
    /// one version only, and not be held by another rollout; no watched
    /// alarm may be in ALARM or missing (409, nothing written).
    ///
    /// A rollout the registry still names for the alias, which the alias
    /// no longer names (the library rewrote the alias since), is ended
    /// first, as the driver's next pass would end it: it never stays
    /// active beside this one.
    ///
    /// AWS calls: GetItem ∥ GetItem (the registry entry) ∥ DescribeAlarms
    /// (when it watches alarms), then an alias
    /// change (BatchGetItem, TransactWriteItems; Query for rows without a
    /// revision); GetItem and its ending first for an orphaned rollout.
    pub async fn start_rollout(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        request: RolloutRequest,
        actor: &str,
    ) -> Result<Rollout> {
        if request.version.is_latest() {
            return Err(Error::InvalidVersion(
                "a rollout moves an alias to a published version, not LATEST".into(),
            ));
        }
        let (current, registered, alarms) = tokio::join!(
            self.alias_row_of(name, alias),
            self.table.registered_rollout(name, alias),
            alarm_states(&self.alarms, &request.alarms)
        );
        let (current, registered, alarms) = (current?, registered?, alarms?);
        // A rollout starts only while its alarms vouch for it, as it goes
        // on only while they do (the first step is applied now).
        let watched: Vec<(String, AlarmState)> = request
            .alarms
            .iter()
            .map(|a| {
                (
                    a.clone(),
                    alarms.get(a).copied().unwrap_or(AlarmState::Missing),
                )
            })
            .collect();
        if let Some(objection) = crate::rollout::alarm_objection(&watched) {
            return Err(Error::RolloutConflict(format!(
                "rollout of alias {alias} of {name} not started: {objection}"
            )));
        }
        if let Some(id) = &current.rollout {
            return Err(Error::RolloutInProgress {
                name: name.to_string(),
                alias: alias.to_string(),
                id: id.clone(),
            });
        }
        if let Some(orphan) = registered {
            let live = self
                .find_rollout(name, alias, &orphan)
                .await?
                .filter(|row| row.state.is_live());
            // Not ended (the alias names it after all: its start landed
            // after this one read the alias; or it changed meanwhile): this
            // start read too early to go on beside it.
            if let Some(row) = live {
                match self
                    .end_orphaned(&row, "the alias was changed outside this rollout")
                    .await
                {
                    Ok(()) => {}
                    Err(Error::RolloutConflict(_)) => {
                        return Err(Error::ConcurrentModification(format!(
                            "rollout {} of alias {alias} of {name} changed meanwhile; read the \
                             alias and its rollouts again",
                            row.id
                        )));
                    }
                    // A purge runs (its fence): its own 409.
                    Err(e) => return Err(e),
                }
            }
        }
        if current.secondary.is_some() {
            return Err(Error::RolloutConflict(format!(
                "alias {alias} of {name} splits traffic already; point it at one version before rolling out"
            )));
        }
        if current.primary.version == request.version {
            return Err(Error::RolloutConflict(format!(
                "alias {alias} of {name} points at version {} already",
                request.version
            )));
        }
        let at = now();
        let id = new_rollout_id(at);
        let row = RolloutRow {
            name: name.clone(),
            alias: alias.clone(),
            id: id.clone(),
            version: request.version,
            from: current.state(),
            steps: request.steps,
            alarms: request.alarms,
            state: RolloutState::Active,
            step: 0,
            next_step_at: None,
            revision: 0,
            reason: None,
            message: request.message.clone(),
            started_by: actor.to_owned(),
            started_at: at,
            update_at: at,
        };
        let first = if row.steps.len() == 1 {
            Transition::Complete
        } else {
            Transition::Step(0)
        };
        let change = ChangeRequest {
            actor: actor.to_owned(),
            message: Some(match &request.message {
                Some(m) => format!("{m} ({})", describe(&row, &first)),
                None => describe(&row, &first),
            }),
            precondition: Precondition::as_read(current.revision, current.update_at),
            cancel_rollout: false,
            key: None,
        };
        match self.apply(&row, first, &change, true).await {
            Ok(row) => Ok(row.to_rollout()),
            Err(Error::AliasModified { .. }) => Err(Error::ConcurrentModification(format!(
                "alias {alias} of {name} changed while the rollout started; retry"
            ))),
            Err(e) => Err(e),
        }
    }

    /// One rollout. AWS calls: 1 (GetItem).
    pub async fn get_rollout(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        id: &str,
    ) -> Result<Rollout> {
        Ok(self.rollout_row(name, alias, id).await?.to_rollout())
    }

    /// An alias's rollouts, newest first, optionally only those in `state`.
    /// AWS calls: 1 per page (Query).
    pub async fn list_rollouts(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        state: Option<RolloutState>,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<Rollout>> {
        let limit = page_size(limit)?;
        let start = rollout_items::rollout_cursor(name, alias, cursor)?;
        let (rows, next) = self
            .table
            .rollout_page(name, alias, state, limit, start)
            .await?;
        let items = rows.iter().map(RolloutRow::to_rollout).collect::<Vec<_>>();
        let next_cursor = next.as_deref().map(encode_cursor);
        Ok(Page { items, next_cursor })
    }

    /// Pause, resume, abort or promote a rollout, as `actor`. Abort takes
    /// the alias back to where it was; promote jumps to 100 %. Resuming
    /// restarts the current step's hold. A rollout already where the action
    /// takes it (paused, active, aborted, completed) is answered as it is.
    ///
    /// AWS calls: GetItem; PutItem (pause, resume; and a GetItem when it is
    /// refused) or an alias change (abort, promote); again when a driver
    /// step landed in between.
    pub async fn act_on_rollout(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        id: &str,
        action: RolloutAction,
        actor: &str,
        message: Option<String>,
    ) -> Result<Rollout> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let row = self.rollout_row(name, alias, id).await?;
            // Where it was asked to be already (a client's retry after its
            // answer was lost, or someone's same action first): it is as
            // asked, answered as it stands (SPEC 7.5).
            let asked = match action {
                RolloutAction::Pause => RolloutState::Paused,
                RolloutAction::Resume => RolloutState::Active,
                RolloutAction::Abort => RolloutState::Aborted,
                RolloutAction::Promote => RolloutState::Completed,
            };
            if row.state == asked {
                return Ok(row.to_rollout());
            }
            if !row.state.is_live() {
                return Err(Error::RolloutConflict(format!(
                    "rollout {id} of alias {alias} of {name} is {} already",
                    row.state.as_str()
                )));
            }
            let result = match action {
                RolloutAction::Pause | RolloutAction::Resume => {
                    self.pause_or_resume(&row, action == RolloutAction::Pause)
                        .await
                }
                RolloutAction::Abort | RolloutAction::Promote => {
                    let why = message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default();
                    let transition = if action == RolloutAction::Abort {
                        Transition::Abort(format!("aborted by {actor}{why}"))
                    } else {
                        Transition::Complete
                    };
                    let change = ChangeRequest {
                        actor: actor.to_owned(),
                        message: Some(match &message {
                            Some(m) => format!("{m} ({})", describe(&row, &transition)),
                            None => describe(&row, &transition),
                        }),
                        precondition: Precondition::Revision(row.revision),
                        cancel_rollout: false,
                        key: None,
                    };
                    self.apply(&row, transition, &change, false).await
                }
            };
            match result {
                Ok(row) => return Ok(row.to_rollout()),
                // The alias no longer names the rollout (the library
                // rewrote it): it can only end, without moving the alias.
                Err(Error::RolloutConflict(_) | Error::AliasModified { .. })
                    if self
                        .find_alias_row(name, alias)
                        .await?
                        .is_none_or(|a| a.rollout.as_deref() != Some(id)) =>
                {
                    let reason = "the alias was changed outside this rollout";
                    match (self.end_orphaned(&row, reason).await, action) {
                        (Ok(()), RolloutAction::Abort) => {
                            return Ok(self.rollout_row(name, alias, id).await?.to_rollout());
                        }
                        (Ok(()), _) => {
                            return Err(Error::RolloutConflict(format!(
                                "rollout {id} ended: {reason}"
                            )));
                        }
                        // Changed meanwhile: read it again.
                        (Err(Error::RolloutConflict(_)), _) if attempt < ACTION_ATTEMPTS => {}
                        (Err(e), _) => return Err(e),
                    }
                }
                Err(Error::RolloutConflict(_) | Error::AliasModified { .. })
                    if attempt < ACTION_ATTEMPTS => {}
                Err(Error::AliasModified { detail, .. }) => {
                    return Err(Error::ConcurrentModification(format!(
                        "alias {alias} of {name} keeps changing ({detail}); retry"
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The rollouts that hold an alias (the driver's work list):
    /// (artifact, alias, rollout id). AWS calls: 1 Query per 1 MB.
    pub async fn held_rollouts(&self) -> Result<Vec<(ArtifactName, AliasName, String)>> {
        self.table.held_rollouts().await
    }

    /// A rollout's item, `None` when it does not exist. AWS calls: 1.
    pub async fn find_rollout(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        id: &str,
    ) -> Result<Option<RolloutRow>> {
        self.table.rollout(name, alias, id).await
    }

    async fn rollout_row(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        id: &str,
    ) -> Result<RolloutRow> {
        self.find_rollout(name, alias, id)
            .await?
            .ok_or_else(|| Error::RolloutNotFound {
                name: name.to_string(),
                alias: alias.to_string(),
                id: id.to_owned(),
            })
    }

    /// The driver's visit of one rollout of its work list: drops the entry
    /// of a rollout that is gone or over, otherwise does what [`decide`]
    /// says for the alarm states read (`alarms`, by name) at `now`; waits
    /// when one of its alarms was not read.
    ///
    /// AWS calls: GetItem of the rollout and of the alias (one round trip);
    /// an alias change when a step is due or an alarm fires (or the ending
    /// of a rollout its alias no longer names); DeleteItem for a stale
    /// entry.
    pub async fn drive_rollout(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        id: &str,
        alarms: &HashMap<String, AlarmState>,
        at: OffsetDateTime,
    ) -> Result<Driven> {
        let (row, alias_row) = tokio::join!(
            self.find_rollout(name, alias, id),
            self.find_alias_row(name, alias)
        );
        let Some(row) = row? else {
            self.forget_rollout(name, alias, id).await?;
            return Ok(Driven::Forgotten);
        };
        if !row.state.is_live() {
            self.forget_rollout(name, alias, id).await?;
            return Ok(Driven::Forgotten);
        }
        // The alias no longer names it (rewritten by the library, which
        // knows no rollouts): it cannot go on, and must not wait for its
        // hold (or forever, paused) to find out.
        let alias_row = alias_row?;
        let Some(alias_row) = alias_row.filter(|a| a.rollout.as_deref() == Some(id)) else {
            return self.orphaned(&row).await;
        };
        // The version rolled out archived meanwhile (SPEC 10.3: archived is
        // never a new target): no further step moves traffic to it; the
        // alias goes back, as on an alarm, paused or not.
        let archived = alias_row.secondary.as_ref().is_some_and(|(target, _)| {
            target.version == row.version
                && target.status == Some(crate::model::VersionStatus::Archived)
        });
        // An alarm not asked for (`alarms` holds every name asked for,
        // `Missing` when CloudWatch does not know it) is unknown, not
        // missing: wait for a pass that asks.
        let Some(states) = row
            .alarms
            .iter()
            .map(|a| alarms.get(a).map(|state| (a.clone(), *state)))
            .collect::<Option<Vec<(String, AlarmState)>>>()
        else {
            return Ok(Driven::Waiting);
        };
        let decision = match archived {
            true => Decision::Abort {
                reason: format!("version {} was archived", row.version),
            },
            false => decide(
                row.state,
                row.step,
                &row.steps,
                row.next_step_at,
                &states,
                at,
            ),
        };
        let transition = match decision {
            Decision::Wait => return Ok(Driven::Waiting),
            Decision::Advance { step } => Transition::Step(step),
            Decision::Complete => Transition::Complete,
            Decision::Abort { reason } => Transition::Abort(reason),
        };
        let change = ChangeRequest {
            actor: format!("rollout:{id}"),
            message: Some(describe(&row, &transition)),
            precondition: Precondition::Revision(row.revision),
            cancel_rollout: false,
            key: None,
        };
        let forward = !matches!(transition, Transition::Abort(_));
        match self.apply(&row, transition, &change, false).await {
            Ok(after) => Ok(match after.state {
                RolloutState::Completed => Driven::Completed,
                RolloutState::Aborted => Driven::Aborted {
                    reason: after.reason.unwrap_or_default(),
                },
                _ => Driven::Stepped {
                    step: after.step + 1,
                },
            }),
            Err(Error::RolloutConflict(_) | Error::AliasModified { .. }) => {
                // Another writer got in first, or the alias was rewritten
                // by something that does not know rollouts (the library):
                // then the rollout cannot go on, and ends without moving it.
                let alias_row = self.find_alias_row(name, alias).await?;
                if alias_row.is_some_and(|a| a.rollout.as_deref() == Some(id)) {
                    return Ok(Driven::Lost);
                }
                self.orphaned(&row).await
            }
            // The version rolled out is gone (deleted by a writer that does
            // not check references), or archived and the alias row did not
            // say so yet (a status change lands, then refreshes the
            // aliases): no step may move traffic to it; take the alias
            // back, as an alarm would.
            Err(
                e @ (Error::VersionNotFound { .. }
                | Error::TargetGone(_)
                | Error::VersionArchived { .. }),
            ) if forward => {
                let reason = match e {
                    Error::VersionArchived { .. } => {
                        format!("version {} was archived", row.version)
                    }
                    _ => format!("version {} is gone", row.version),
                };
                let change = ChangeRequest {
                    message: Some(describe(&row, &Transition::Abort(reason.clone()))),
                    ..change
                };
                match self
                    .apply(&row, Transition::Abort(reason.clone()), &change, false)
                    .await
                {
                    Ok(_) => Ok(Driven::Aborted { reason }),
                    Err(Error::RolloutConflict(_) | Error::AliasModified { .. }) => {
                        Ok(Driven::Lost)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Ends a live rollout whose alias no longer names it, without moving
    /// the alias (see [`Self::end_orphaned`]).
    async fn orphaned(&self, row: &RolloutRow) -> Result<Driven> {
        let reason = "the alias was changed outside this rollout".to_owned();
        match self.end_orphaned(row, &reason).await {
            Ok(()) => Ok(Driven::Aborted { reason }),
            // Changed meanwhile, or a purge takes it with the artifact.
            Err(Error::RolloutConflict(_) | Error::ArtifactBeingPurged { .. }) => Ok(Driven::Lost),
            Err(e) => Err(e),
        }
    }

    /// Applies `transition` to the alias and the rollout item in one
    /// transaction; `start`: the item is new.
    async fn apply(
        &self,
        row: &RolloutRow,
        transition: Transition,
        change: &ChangeRequest,
        start: bool,
    ) -> Result<RolloutRow> {
        let at = now();
        let mut next = row.clone();
        next.update_at = at;
        let intent = match &transition {
            Transition::Step(k) => {
                let weight = row.steps.get(*k).map_or(100, |s| s.weight);
                next.step = *k;
                next.next_step_at = row.steps.get(*k).and_then(|s| s.hold).map(|h| at + h);
                Intent::Put(AliasTarget {
                    version: row.from.version,
                    secondary: Some((row.version, Weight::new(i64::from(weight))?)),
                })
            }
            Transition::Complete => {
                next.step = row.steps.len().saturating_sub(1);
                next.state = RolloutState::Completed;
                next.next_step_at = None;
                Intent::Put(AliasTarget {
                    version: row.version,
                    secondary: None,
                })
            }
            Transition::Abort(reason) => {
                next.state = RolloutState::Aborted;
                next.next_step_at = None;
                next.reason = Some(reason.clone());
                Intent::Abort(row.from.target())
            }
        };
        let live = next.state.is_live();
        let items = |revision: u64| -> Result<(Vec<TxItem>, Vec<ChangeEvent>)> {
            let mut written = next.clone();
            written.revision = revision;
            let (put, events) = self.rollout_put(&written, (!start).then_some(row))?;
            let mut items = vec![put];
            if live {
                items.push(self.registry_put(&written)?);
            } else if !start {
                items.push(self.registry_delete(&row.name, &row.alias, &row.id)?);
            }
            // A rollout over at its start (one step of 100 %) never had an
            // entry: one there names an earlier rollout of this alias (a
            // purge leaves it to the driver, which forgets it), not this.
            Ok((items, events))
        };
        let link = Link::Rollout {
            id: &row.id,
            holds_before: !start,
            holds_after: live,
            items: &items,
        };
        let alias = self
            .change_alias_linked(
                &row.name,
                &row.alias,
                intent,
                change,
                &link,
                &mut super::Allowed::already(),
            )
            .await?
            .ok_or_else(|| Error::internal("rollout", "a rollout's change left no alias row"))?;
        next.revision = alias.revision.unwrap_or(0);
        Ok(next)
    }

    /// Pause or resume: the rollout item only (the alias does not move).
    async fn pause_or_resume(&self, row: &RolloutRow, pause: bool) -> Result<RolloutRow> {
        let (from, to) = if pause {
            (RolloutState::Active, RolloutState::Paused)
        } else {
            (RolloutState::Paused, RolloutState::Active)
        };
        if row.state != from {
            return Err(Error::RolloutConflict(format!(
                "rollout {} is {}, not {}",
                row.id,
                row.state.as_str(),
                from.as_str()
            )));
        }
        let at = now();
        let mut next = row.clone();
        next.state = to;
        next.update_at = at;
        next.next_step_at = if pause {
            None
        } else {
            row.steps.get(row.step).and_then(|s| s.hold).map(|h| at + h)
        };
        if self.table.rewrite_rollout(&next, row).await? {
            return Ok(next);
        }
        // Refused: another writer got in first, or this very write landed
        // and its answer was lost (the SDK sent it again): then the item
        // is ours, written at `at`, and answers as the first would have.
        let now_stored = self.find_rollout(&row.name, &row.alias, &row.id).await?;
        if now_stored.is_some_and(|stored| stored.state == to && stored.update_at == at) {
            return Ok(next);
        }
        Err(Error::RolloutConflict(format!(
            "rollout {} changed meanwhile; read it again",
            row.id
        )))
    }

    /// Ends a rollout whose alias it no longer holds, without touching the
    /// alias.
    async fn end_orphaned(&self, row: &RolloutRow, reason: &str) -> Result<()> {
        let mut next = row.clone();
        next.state = RolloutState::Aborted;
        next.next_step_at = None;
        next.reason = Some(reason.to_owned());
        next.update_at = now();
        let (put, events) = self.rollout_put(&next, Some(row))?;
        let mut tx = Tx::new();
        tx.push(Orphaned::Rollout, put);
        tx.push(
            Orphaned::Registry,
            self.registry_delete(&row.name, &row.alias, &row.id)?,
        );
        tx.push(
            Orphaned::Alias,
            artifact_store::rollout_items::alias_not_held_by(
                &self.layout.table,
                &row.name,
                &row.alias,
                &row.id,
            )?,
        );
        // No purge runs: it would not see the event log this writes.
        tx.push(Orphaned::Fence, self.no_purge_running(&row.name)?);
        if let Some(log) =
            artifact_store::change_events::log_member(&self.layout.table, &row.name, &events)?
        {
            tx.push(Orphaned::Log, log);
        }
        let token = format!("orphan-{}-{}", row.id, format_update_at(row.update_at));
        match self.transact_tx(&tx, &token).await {
            Ok(()) => Ok(()),
            Err(super::tx::TransactFailure::Conditions(failed))
                if failed.contains(&Orphaned::Fence) =>
            {
                Err(Error::ArtifactBeingPurged {
                    name: row.name.to_string(),
                })
            }
            Err(super::tx::TransactFailure::Conditions(_))
            | Err(super::tx::TransactFailure::Contention) => Err(Error::RolloutConflict(format!(
                "rollout {} changed meanwhile",
                row.id
            ))),
            Err(super::tx::TransactFailure::Failed(e)) => Err(e),
        }
    }

    /// The items that cancel rollout `id` with a change made by hand
    /// (`cancel_rollout`): it ends `aborted`, its registry entry goes.
    /// With the event of its end, for the event log (the rollout is read
    /// for it: 1 GetItem).
    pub(super) async fn cancel_rollout_items(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        id: &str,
        actor: &str,
    ) -> Result<(Vec<TxItem>, Vec<ChangeEvent>)> {
        let read = self.find_rollout(name, alias, id).await?;
        let (cancel, events) = rollout_items::cancel_by_hand(
            &self.layout.table,
            name,
            alias,
            id,
            actor,
            read.as_ref(),
        )?;
        Ok((vec![cancel, self.registry_delete(name, alias, id)?], events))
    }

    /// The rollout item written whole; over `read`, only if it is still
    /// exactly as read (its state and last write), else only if new. With
    /// the events of the change, for the transaction's event log.
    fn rollout_put(
        &self,
        row: &RolloutRow,
        read: Option<&RolloutRow>,
    ) -> Result<(TxItem, Vec<ChangeEvent>)> {
        rollout_items::rollout_put(&self.layout.table, row, read)
    }

    fn registry_put(&self, row: &RolloutRow) -> Result<TxItem> {
        rollout_items::registry_put(&self.layout.table, row)
    }

    fn registry_delete(&self, name: &ArtifactName, alias: &AliasName, id: &str) -> Result<TxItem> {
        rollout_items::registry_delete(&self.layout.table, name, alias, id)
    }

    /// Drops the registry entry of rollout `id` (if it is still its).
    fn forget_rollout(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        id: &str,
    ) -> impl std::future::Future<Output = Result<()>> {
        self.table.forget_rollout(name, alias, id)
    }

    async fn alias_row_of(&self, name: &ArtifactName, alias: &AliasName) -> Result<AliasRow> {
        self.find_alias_row(name, alias)
            .await?
            .ok_or_else(|| Error::AliasNotFound {
                name: name.to_string(),
                alias: alias.to_string(),
            })
    }
}

/// The history message of a rollout's change.
fn describe(row: &RolloutRow, transition: &Transition) -> String {
    let of = row.steps.len();
    match transition {
        Transition::Step(k) => format!(
            "rollout {}: step {} of {of}, {}% to version {}",
            row.id,
            k + 1,
            row.steps.get(*k).map_or(100, |s| s.weight),
            row.version
        ),
        Transition::Complete => format!(
            "rollout {}: completed, version {} alone",
            row.id, row.version
        ),
        Transition::Abort(reason) => format!(
            "rollout {}: aborted ({reason}), back to version {}",
            row.id, row.from.version
        ),
    }
}

/// The members of the transaction that ends an orphaned rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Orphaned {
    /// The rollout item, as read.
    Rollout,
    /// Its entry in the registry of running rollouts.
    Registry,
    /// The alias does not name it.
    Alias,
    /// No purge of the artifact runs.
    Fence,
    /// The artifact's event log.
    Log,
}

/// DescribeAlarms takes at most 100 names per call.
const ALARM_NAMES_PER_CALL: usize = 100;

/// The state of each named alarm; names DescribeAlarms does not know are
/// `Missing` (the rule objects to them). Every name asked for is in the
/// answer: a name absent from it was not asked for. AWS calls:
/// DescribeAlarms per 100 names (and per page).
pub async fn alarm_states(
    alarms: &aws_sdk_cloudwatch::Client,
    names: &[String],
) -> Result<HashMap<String, AlarmState>> {
    match read_alarm_states(alarms, names).await {
        (states, None) => Ok(states),
        (_, Some(e)) => Err(e),
    }
}

/// [`alarm_states`] as the driver reads them: the names whose read failed
/// (throttled, or refused: an alarm outside the role's resources; a call
/// that fails is asked again name by name) are left out of the answer, so
/// only the rollouts watching them wait for a later pass, and the first
/// failure is given beside. One failing read stopped every rollout of the
/// deployment.
pub async fn read_alarm_states(
    alarms: &aws_sdk_cloudwatch::Client,
    names: &[String],
) -> (HashMap<String, AlarmState>, Option<Error>) {
    let mut states = HashMap::with_capacity(names.len());
    let mut failure = None;
    for chunk in names.chunks(ALARM_NAMES_PER_CALL) {
        match chunk_states(alarms, chunk).await {
            Ok(read) => states.extend(read),
            // One name the role may not read refuses the whole call: each
            // name is read alone then, so only the failing ones stay unread
            // (not when throttled: a hundred calls would make it worse).
            Err(e) if chunk.len() > 1 && !matches!(e, Error::Throttled { .. }) => {
                for name in chunk {
                    match chunk_states(alarms, std::slice::from_ref(name)).await {
                        Ok(read) => states.extend(read),
                        Err(e) => {
                            failure.get_or_insert(e);
                        }
                    }
                }
                failure.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    (states, failure)
}

/// The states of at most [`ALARM_NAMES_PER_CALL`] alarms, every page.
async fn chunk_states(
    alarms: &aws_sdk_cloudwatch::Client,
    chunk: &[String],
) -> Result<HashMap<String, AlarmState>> {
    use aws_sdk_cloudwatch::types::{AlarmType, StateValue};
    let mut states: HashMap<String, AlarmState> = chunk
        .iter()
        .map(|n| (n.clone(), AlarmState::Missing))
        .collect();
    let mut token = None;
    loop {
        let out = alarms
            .describe_alarms()
            .set_alarm_names(Some(chunk.to_vec()))
            .alarm_types(AlarmType::MetricAlarm)
            .alarm_types(AlarmType::CompositeAlarm)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| crate::sdk_error::upstream("DescribeAlarms", e))?;
        let metric = out
            .metric_alarms()
            .iter()
            .map(|a| (a.alarm_name(), a.state_value()));
        let composite = out
            .composite_alarms()
            .iter()
            .map(|a| (a.alarm_name(), a.state_value()));
        for (name, state) in metric.chain(composite) {
            if let Some(name) = name {
                let state = match state {
                    Some(StateValue::Alarm) => AlarmState::Alarm,
                    Some(StateValue::Ok) => AlarmState::Ok,
                    _ => AlarmState::InsufficientData,
                };
                states.insert(name.to_owned(), state);
            }
        }
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(states);
        }
    }
}
