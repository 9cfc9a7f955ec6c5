//! Aliases: named pointers to versions, with canary splits, history,
//! rollback and compare-and-swap (SPEC 4.2).
//!
//! A version row lists the aliases that target it (`aliases` string set), and
//! every alias change updates those sets in the same DynamoDB transaction as
//! the alias row, guarded by the alias row's revision. So an alias can never
//! point at a deleted version, and a version can never be deleted while an
//! alias points at it (SPEC 7.4), whatever the interleaving. The same
//! transaction appends the change to the alias's history (`__{name}-history`,
//! one entry per revision, never overwritten: SPEC 7.13).

use std::collections::{BTreeSet, HashMap};

use artifact_store::tx::TxItem;
use time::OffsetDateTime;

use super::tx::{TransactFailure, Tx};
use super::{MAX_ATTEMPTS, Repository, backoff, encode_cursor, page_size};

/// How many of an alias's newest history entries a retried change looks
/// through for its own: retries come within a minute, when few others
/// changed the alias since.
const REPLAY_WINDOW: u32 = 20;
use crate::alias_rules::{self, Asked, Current, Decision, Target, TargetRow};
use crate::error::{Error, Result};
use crate::layout::now;
use crate::model::{
    Alias, AliasAction, AliasChange, AliasTarget, ChangeRequest, Page, Precondition, Resolved,
};
use crate::names::{AliasName, ArtifactName, Version, Weight};
use crate::rows::{AliasRow, HistoryRow, Item, Location, TargetRef, VersionRow};
use artifact_store::alias_items::{self, Reference};
use artifact_store::change_events::ChangeEvent;

/// How a change relates to the rollout that may hold the alias.
pub(super) enum Link<'a> {
    /// A change of a person or a pipeline.
    Ordinary,
    /// A change made by rollout `id` (its start, a step, its end): the
    /// alias must be held by it (`holds_before`) or by none, is held by it
    /// afterwards or not (`holds_after`), and `items(new revision)` are
    /// written in the same transaction (the rollout's own items, each
    /// conditional on the rollout being as read).
    Rollout {
        id: &'a str,
        holds_before: bool,
        holds_after: bool,
        #[allow(clippy::type_complexity)]
        items: &'a (dyn Fn(u64) -> Result<(Vec<TxItem>, Vec<ChangeEvent>)> + Send + Sync),
    },
    /// A pipeline's move, as an ordinary change, with the record of the
    /// pipeline's run (`record(the new alias row)`, conditional on the run
    /// still holding its claim) in the same transaction: refused when the
    /// run was taken over (409).
    Recorded {
        #[allow(clippy::type_complexity)]
        record: &'a (dyn Fn(&AliasRow) -> Result<TxItem> + Send + Sync),
    },
}

/// What a change does to the alias row.
#[derive(Debug, Clone, Copy)]
pub(super) enum Intent {
    Put(AliasTarget),
    Delete,
    Rollback(AliasTarget),
    /// A rollout's abort: the alias back where the rollout found it.
    Abort(AliasTarget),
}

impl Intent {
    fn asked(self) -> Asked {
        match self {
            Self::Put(_) => Asked::Put,
            Self::Delete => Asked::Delete,
            Self::Rollback(_) | Self::Abort(_) => Asked::Rollback,
        }
    }

    fn target(self) -> Option<AliasTarget> {
        match self {
            Self::Put(t) | Self::Rollback(t) | Self::Abort(t) => Some(t),
            Self::Delete => None,
        }
    }
}

/// What an alias route asks for (SPEC 4.2).
#[derive(Debug, Clone, Copy)]
pub enum AliasAsk {
    /// Create or move the alias ([`Repository::put_alias`]).
    Put(AliasTarget),
    /// Delete it ([`Repository::delete_alias`]).
    Delete,
    /// Undo its last change, or go back to a revision
    /// ([`Repository::rollback_alias`]).
    Rollback { to_revision: Option<u64> },
}

impl Repository {
    /// The alias routes: [`Self::put_alias`], [`Self::delete_alias`] or
    /// [`Self::rollback_alias`] as `ask` says, their reads beside `allowed`
    /// (the caller's authorisation, SPEC 10.4): nothing is written before
    /// it said yes, and the read of the permission targets goes out with
    /// the change's first reads. The alias as changed; `None` once deleted.
    pub async fn change_alias_allowed(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        ask: AliasAsk,
        change: &ChangeRequest,
        mut allowed: super::Allowed,
    ) -> Result<Option<Alias>> {
        let allowed = &mut allowed;
        let row = match ask {
            AliasAsk::Put(target) => {
                let row = self
                    .change_alias(name, alias, Intent::Put(target), change, allowed)
                    .await?;
                Some(row.ok_or_else(|| Error::internal("put alias", "a put left no alias row"))?)
            }
            AliasAsk::Delete => {
                self.change_alias(name, alias, Intent::Delete, change, allowed)
                    .await?;
                None
            }
            AliasAsk::Rollback { to_revision } => Some(
                self.rollback(name, alias, to_revision, change, allowed)
                    .await?,
            ),
        };
        Ok(row.map(|r| r.to_alias(&self.layout)))
    }

    /// Creates or moves an alias. Both targets must exist and be live, and
    /// differ; a new alias must follow the strict naming rule.
    ///
    /// AWS calls: BatchGetItem, TransactWriteItems (2); one more Query when
    /// the alias row has no revision (new, or written by the library); plus
    /// one round per concurrent writer that got in first.
    pub async fn put_alias(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        target: AliasTarget,
        change: &ChangeRequest,
    ) -> Result<Alias> {
        let allowed = &mut super::Allowed::already();
        let row = self
            .change_alias(name, alias, Intent::Put(target), change, allowed)
            .await?;
        row.map(|r| r.to_alias(&self.layout))
            .ok_or_else(|| Error::internal("put alias", "a put left no alias row"))
    }

    /// Deletes an alias and its references; the history keeps the deletion.
    /// 404 (nothing written) when absent. AWS calls: BatchGetItem,
    /// TransactWriteItems (2), one Query for rows the library wrote.
    pub async fn delete_alias(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        change: &ChangeRequest,
    ) -> Result<()> {
        let allowed = &mut super::Allowed::already();
        self.change_alias(name, alias, Intent::Delete, change, allowed)
            .await
            .map(|_| ())
    }

    /// Moves the alias back to the targets it had before its last change, or
    /// to those of `to_revision`; recorded as a `rollback`. Undoing a delete
    /// re-creates the alias. 404 when there is nothing to roll back to, 409
    /// when a target has since been deleted.
    ///
    /// Without an explicit precondition, the rollback applies only if the
    /// alias is still at the revision it undoes (a concurrent change makes it
    /// look again), so it never undoes a change it did not see.
    pub async fn rollback_alias(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        to_revision: Option<u64>,
        change: &ChangeRequest,
    ) -> Result<Alias> {
        let allowed = &mut super::Allowed::already();
        let row = self
            .rollback(name, alias, to_revision, change, allowed)
            .await?;
        Ok(row.to_alias(&self.layout))
    }

    /// [`Self::rollback_alias`], its first write after `allowed`.
    async fn rollback(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        to_revision: Option<u64>,
        change: &ChangeRequest,
        allowed: &mut super::Allowed,
    ) -> Result<AliasRow> {
        let (state, last) = match to_revision {
            None => {
                let last = self
                    .last_change(name, alias)
                    .await?
                    .ok_or_else(|| nothing_to_roll_back(name, alias, "it has no history"))?;
                // A retry of this very rollback whose first attempt landed
                // (its answer lost) finds that attempt the last change: it
                // asks for what the attempt set, which the change answers
                // as the attempt was answered. Undoing it would undo the
                // rollback, or find nothing to undo (it re-created a
                // deleted alias).
                let request = super::request_token(change.key.as_deref());
                let own = change.key.is_some() && last.token.starts_with(&format!("{request}-"));
                let state = match last.change.state() {
                    Some(state) if own => state,
                    _ => undo(&last, None).map_err(|why| nothing_to_roll_back(name, alias, why))?,
                };
                (state, Some(last))
            }
            Some(n) => {
                let entry = self.history_entry(name, alias, n).await?.ok_or_else(|| {
                    nothing_to_roll_back(name, alias, &format!("it has no revision {n}"))
                })?;
                let state = entry.change.state().ok_or_else(|| {
                    Error::InvalidRequest(format!(
                        "revision {n} of alias {alias} deleted it: it has no targets to go back to"
                    ))
                })?;
                (state, None)
            }
        };
        let mut guarded = change.clone();
        if let (Precondition::None, Some(last)) = (change.precondition, &last) {
            guarded.precondition = Precondition::Revision(last.change.revision);
        }
        let rolled_back = |row: Option<AliasRow>| {
            row.ok_or_else(|| Error::internal("rollback", "a rollback left no alias row"))
        };
        // Someone changed the alias after we read its history: undoing
        // "the last change" now would undo a change the caller never saw.
        let changed_meanwhile = |detail: String| {
            Error::ConcurrentModification(format!(
                "alias {alias} of {name} changed while rolling back ({detail}); read its history and retry"
            ))
        };
        let intent = Intent::Rollback(state.target());
        let detail = match self
            .change_alias(name, alias, intent, &guarded, allowed)
            .await
        {
            Ok(row) => return rolled_back(row),
            Err(Error::AliasModified { detail, .. })
                if change.precondition == Precondition::None =>
            {
                detail
            }
            Err(e) => return Err(e),
        };
        // The library wrote the alias since its last recorded change (a row
        // without revision): that write is the last change, and it is what
        // is undone, on condition that the row is still the one read.
        let library_row = match &last {
            Some(_) => self
                .find_alias_row(name, alias)
                .await?
                .filter(|row| row.revision.is_none()),
            None => None,
        };
        let (Some(last), Some(row)) = (last, library_row) else {
            return Err(changed_meanwhile(detail));
        };
        let state = undo(&last, Some(&row.state()))
            .map_err(|why| nothing_to_roll_back(name, alias, why))?;
        let guarded = ChangeRequest {
            precondition: Precondition::as_read(None, row.update_at),
            ..change.clone()
        };
        let intent = Intent::Rollback(state.target());
        match self
            .change_alias(name, alias, intent, &guarded, allowed)
            .await
        {
            Ok(row) => rolled_back(row),
            Err(Error::AliasModified { detail, .. }) => Err(changed_meanwhile(detail)),
            Err(e) => Err(e),
        }
    }

    /// The alias's changes, newest first. AWS calls: 1 per page (2 on an
    /// empty first page: is there such an alias at all?).
    pub async fn alias_history(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<AliasChange>> {
        let limit = page_size(limit)?;
        let start = alias_items::history_cursor(name, alias, cursor)?;
        let first_page = start.is_none();
        let (rows, next) = self.history_page(name, alias, limit, start, false).await?;
        if first_page && rows.is_empty() {
            // No history: an alias the library wrote is still an alias.
            self.alias_row(name, alias).await?;
        }
        Ok(Page {
            items: rows.into_iter().map(|r| r.change).collect(),
            next_cursor: next.map(|sk| encode_cursor(&sk)),
        })
    }

    /// The alias as it was at `at`: the state after the last change made at
    /// or before that time. 404 when it did not exist then. An alias without
    /// history (the library's) is known only from its row's `update_at`.
    /// AWS calls: 1 Query per 1 000 changes; 1 GetItem without history.
    pub async fn get_alias_at(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        at: OffsetDateTime,
    ) -> Result<Alias> {
        let when = at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| at.to_string());
        let not_then = || Error::AliasNotFound {
            name: name.to_string(),
            alias: format!("{alias} (as of {when})"),
        };
        let mut start = None;
        let mut found: Option<AliasChange> = None;
        let mut any = false;
        loop {
            let (rows, next) = self
                .history_page(name, alias, super::MAX_PAGE_SIZE, start, true)
                .await?;
            any |= !rows.is_empty();
            for row in rows {
                if row.change.at <= at {
                    found = Some(row.change);
                }
            }
            match next {
                Some(sk) => start = Some(alias_items::history_start(name, sk)),
                None => break,
            }
        }
        if !any {
            let row = self.alias_row(name, alias).await?;
            return if row.update_at <= at {
                Ok(row.to_alias(&self.layout))
            } else {
                Err(not_then())
            };
        }
        let change = found.ok_or_else(not_then)?;
        let state = change.state().ok_or_else(not_then)?;
        Ok(Alias {
            name: name.clone(),
            alias: alias.clone(),
            update_at: change.at,
            version: state.version,
            secondary_version: state.secondary_version,
            secondary_version_weight: state.secondary_version_weight,
            version_s3uri: self.layout.s3uri(name, state.version),
            secondary_version_s3uri: state.secondary_version.map(|v| self.layout.s3uri(name, v)),
            revision: change.revision,
        })
    }

    /// One page of an alias's history rows, by revision (`ascending` or
    /// not): the store's future itself.
    fn history_page(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        limit: u32,
        start: Option<Item>,
        ascending: bool,
    ) -> impl std::future::Future<Output = Result<(Vec<HistoryRow>, Option<String>)>> {
        self.table
            .history_page(name, alias, limit, start, ascending)
    }

    fn history_entry(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        revision: u64,
    ) -> impl std::future::Future<Output = Result<Option<HistoryRow>>> {
        self.table.history_entry(name, alias, revision)
    }

    /// Every alias change: one transaction writes the alias row (or deletes
    /// it), appends the history entry of the new revision, and moves the
    /// version rows' references. Preconditions are checked against what was
    /// read and enforced by the write's condition on the revision.
    async fn change_alias(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        intent: Intent,
        change: &ChangeRequest,
        allowed: &mut super::Allowed,
    ) -> Result<Option<AliasRow>> {
        self.change_alias_linked(name, alias, intent, change, &Link::Ordinary, allowed)
            .await
    }

    /// [`Self::change_alias`], made by a rollout or not (`link`): a change
    /// that is not the rollout's own is refused while a rollout holds the
    /// alias, or cancels it in the same transaction when asked to. The
    /// first reads go beside `allowed`; the one write waits for it.
    pub(super) async fn change_alias_linked(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        intent: Intent,
        change: &ChangeRequest,
        link: &Link<'_>,
        allowed: &mut super::Allowed,
    ) -> Result<Option<AliasRow>> {
        let target = intent.target();
        if let Some(AliasTarget {
            version,
            secondary: Some((secondary, _)),
        }) = target
            && secondary == version
        {
            return Err(Error::InvalidRequest(format!(
                "secondary_version must differ from version (both are {secondary})"
            )));
        }
        let wanted: Vec<Version> = target
            .iter()
            .flat_map(|t| std::iter::once(t.version).chain(t.secondary.map(|(v, _)| v)))
            .collect();
        // A retry of this request (the same `Idempotency-Key`) has this token.
        let request = super::request_token(change.key.as_deref());
        // Old targets whose rows vanished (artifact purged underneath): skip them.
        let mut gone: BTreeSet<Version> = BTreeSet::new();
        for attempt in 0..MAX_ATTEMPTS {
            // One token per attempt: DynamoDB refuses a token reused with
            // other parameters, and a retry by the SDK reuses the attempt's.
            let token = format!("{request}-{attempt}");
            // An earlier attempt may have landed (a client's retry with the
            // same key, or an attempt of this call): its history entry is
            // looked for beside the read, since others may have changed
            // the alias after it.
            let replay = change.key.is_some() || attempt > 0;
            // Boxed: every alias change's future (a rollout's, a
            // pipeline's) would grow by both.
            let (read, recent, allowed_now) = tokio::join!(
                Box::pin(self.read_alias_and_versions(name, alias, &wanted)),
                Box::pin(async {
                    match replay {
                        true => self
                            .history_page(name, alias, REPLAY_WINDOW, None, false)
                            .await
                            .map(|(entries, _)| entries),
                        false => Ok(Vec::new()),
                    }
                }),
                allowed.wait()
            );
            allowed_now?;
            let (old, rows) = read?;
            let ours = |t: Option<&str>| t.is_some_and(|t| t.starts_with(&format!("{request}-")));
            // An earlier attempt of this very request landed (its answer was
            // lost, or DynamoDB reported it still in progress): answer as it.
            if let Some(o) = &old
                && ours(o.token.as_deref())
                && target.is_some()
            {
                return Ok(Some(o.clone()));
            }
            if let Some(mine) = recent?.iter().find(|h| ours(Some(&h.token))) {
                // Deleted by this request and still deleted: as it left it.
                if old.is_none() && mine.change.action == AliasAction::Delete {
                    return Ok(None);
                }
                // Applied, then changed by someone else: never applied again.
                return Err(Error::Replayed {
                    code: "AlreadyApplied",
                    kind: crate::error::ErrorKind::Conflict,
                    message: format!(
                        "this request was applied as revision {} of alias {alias} of {name}, \
                         which has changed since; read it before changing it again",
                        mine.change.revision
                    ),
                });
            }
            // Rows without a revision (new, or the library's) continue the
            // sequence the history holds.
            let last = match old.as_ref().and_then(|o| o.revision) {
                Some(_) => None,
                None => self.last_change(name, alias).await?,
            };
            if old.is_none()
                && matches!(intent, Intent::Delete)
                && last
                    .as_ref()
                    .is_some_and(|h| h.change.action == AliasAction::Delete && ours(Some(&h.token)))
            {
                return Ok(None);
            }
            let logged = match old.as_ref().and_then(|o| o.revision) {
                Some(_) => None,
                None => Some(last.as_ref().map_or(0, |h| h.change.revision)),
            };
            let current = old.as_ref().map(|o| Current {
                revision: o.revision,
                written_at: crate::model::micros(o.update_at),
                targets: o.targets().collect(),
            });
            // A rollout's abort goes back to the state the alias held: it
            // may give an archived version back the share it had (else an
            // alarm could not take the alias back off a canary while the
            // version before it is archived). Any other change, a person's
            // rollback included, is a new move: an archived version gains
            // nothing by it (SPEC 10.3).
            let now_target = old.as_ref().map(|o| o.state().target());
            let grows = |version: Version| {
                !matches!(intent, Intent::Abort(_))
                    && alias_rules::gains(target.as_ref(), now_target.as_ref(), version)
            };
            let targets: Vec<Target> = wanted
                .iter()
                .map(|version| Target {
                    version: *version,
                    row: rows.get(version).map(|row| TargetRow {
                        live: row.is_live(),
                        archived: row.status == Some(crate::model::VersionStatus::Archived),
                    }),
                    grows: grows(*version),
                })
                .collect();
            let Decision { action, revision } = alias_rules::decide(
                name,
                alias,
                intent.asked(),
                change.precondition,
                current.as_ref(),
                logged,
                &targets,
            )?;
            // Every target was read live (the decision says so); one that
            // was not is our bug, answered as such rather than a panic.
            let target_ref_of = |version: Version| {
                rows.get(&version).map(target_ref).ok_or_else(|| {
                    Error::internal(
                        "change_alias",
                        format!("target {version} of alias {alias} of {name} was not read"),
                    )
                })
            };
            let refs = target
                .map(|t| -> Result<(TargetRef, Option<(TargetRef, Weight)>)> {
                    let primary = target_ref_of(t.version)?;
                    let secondary = t
                        .secondary
                        .map(|(version, weight)| target_ref_of(version).map(|r| (r, weight)))
                        .transpose()?;
                    Ok((primary, secondary))
                })
                .transpose()?;
            let current: BTreeSet<Version> = current.map(|c| c.targets).unwrap_or_default();
            let held = old.as_ref().and_then(|o| o.rollout.as_deref());
            let (holder, (linked, mut events)) = match link {
                Link::Ordinary | Link::Recorded { .. } => match held {
                    None => (None, (Vec::new(), Vec::new())),
                    Some(id) if change.cancel_rollout => (
                        None,
                        self.cancel_rollout_items(name, alias, id, &change.actor)
                            .await?,
                    ),
                    Some(id) => {
                        return Err(Error::RolloutInProgress {
                            name: name.to_string(),
                            alias: alias.to_string(),
                            id: id.to_owned(),
                        });
                    }
                },
                Link::Rollout {
                    id,
                    holds_before,
                    holds_after,
                    items,
                } => {
                    if held.is_some() != *holds_before || held.is_some_and(|h| h != *id) {
                        return Err(Error::RolloutConflict(format!(
                            "alias {alias} of {name} is no longer as rollout {id} left it"
                        )));
                    }
                    (holds_after.then(|| (*id).to_owned()), items(revision)?)
                }
            };
            let at = now();
            let new_row = refs.map(|(primary, secondary)| AliasRow {
                name: name.clone(),
                alias: alias.clone(),
                update_at: at,
                primary,
                secondary,
                revision: Some(revision),
                token: Some(token.clone()),
                rollout: holder.clone(),
            });
            let history = HistoryRow {
                name: name.clone(),
                alias: alias.to_string(),
                token: token.clone(),
                change: AliasChange {
                    revision,
                    at,
                    actor: change.actor.clone(),
                    action,
                    version: target.map(|t| t.version),
                    secondary_version: target.and_then(|t| t.secondary).map(|(v, _)| v),
                    secondary_version_weight: target.and_then(|t| t.secondary).map(|(_, w)| w),
                    previous: old.as_ref().map(AliasRow::state),
                    message: change.message.clone(),
                },
            };
            let mut entry = history.to_item();
            events.splice(0..0, super::logged_write(None, &mut entry));
            let mut tx = Tx::new();
            tx.push(
                Member::Alias,
                self.alias_write(name, alias, new_row.as_ref(), old.as_ref())?,
            );
            tx.push(Member::History, self.put_new(entry)?);
            self.log_events(&mut tx, Member::Log, name, &events)?;
            // The artifact must still exist: a purge deletes LATEST before it
            // reads the partitions, so a change racing it either lands before
            // (and is purged) or fails here.
            if !wanted.contains(&Version::Latest) {
                tx.push(
                    Member::Latest,
                    self.reference(name, alias, Version::Latest, true)?,
                );
            }
            // No purge runs: the library (which knows no fence) may bring
            // LATEST back during one, and the purge's end deletes rows that
            // name bytes it took; an alias must not land on them.
            tx.push(Member::Fence, self.no_purge_running(name)?);
            for version in &wanted {
                // A new target, or one gaining share, must still not be
                // archived when the move lands (a status change racing
                // it: SPEC 10.3).
                let refuse_archived = !current.contains(version) || grows(*version);
                // The alias records each target's status as read; a
                // status change landing before the move refuses it (and
                // the next read records the new status), one landing after
                // refreshes the alias (`set_version_status`).
                let recorded = rows
                    .get(version)
                    .map(|row| row.status.unwrap_or(crate::model::VersionStatus::Active));
                tx.push(
                    Member::Target(*version),
                    self.reference_target(name, alias, *version, refuse_archived, recorded)?,
                );
            }
            let old_targets: Vec<Version> = old
                .iter()
                .flat_map(|o| o.targets().collect::<Vec<_>>())
                .collect();
            for version in old_targets
                .iter()
                .filter(|v| !wanted.contains(v) && !v.is_latest() && !gone.contains(v))
            {
                tx.push(
                    Member::Released(*version),
                    self.reference(name, alias, *version, false)?,
                );
            }
            for item in linked {
                tx.push(Member::Rollout, item);
            }
            if let (Link::Recorded { record }, Some(row)) = (link, new_row.as_ref()) {
                tx.push(Member::Record, record(row)?);
            }
            match self.transact_tx(&tx, &token).await {
                Ok(()) => return Ok(new_row),
                Err(TransactFailure::Conditions(failed)) => {
                    if failed.contains(&Member::Fence) {
                        return Err(Error::ArtifactBeingPurged {
                            name: name.to_string(),
                        });
                    }
                    if failed.contains(&Member::Latest) {
                        return Err(Error::ArtifactNotFound {
                            name: name.to_string(),
                        });
                    }
                    if failed.iter().all(|m| *m == Member::Rollout) {
                        // Only the rollout's own item refused: it moved on
                        // (paused, ended, stepped by another driver).
                        return Err(Error::RolloutConflict(format!(
                            "the rollout of alias {alias} of {name} changed meanwhile; read it again"
                        )));
                    }
                    if failed
                        .iter()
                        .any(|m| matches!(m, Member::Alias | Member::History))
                        && self.landed(name, alias, revision, &token).await?
                    {
                        // Our write landed; only its answer was lost (the SDK
                        // retried it): answer as the first attempt would have.
                        return Ok(new_row);
                    }
                    if failed.contains(&Member::Record) {
                        return Err(Error::ConcurrentModification(format!(
                            "the pipeline moving alias {alias} of {name} was taken over by another run"
                        )));
                    }
                    for member in failed {
                        // A version the alias let go of was deleted
                        // meanwhile (nothing to release); a new target
                        // deleted or archived meanwhile, or the alias moved
                        // under us: the next read says so.
                        if let Member::Released(v) = member {
                            gone.insert(v);
                        }
                    }
                }
                Err(TransactFailure::Contention) => {}
                Err(TransactFailure::Failed(e)) => return Err(e),
            }
            backoff(attempt).await;
        }
        Err(Error::ConcurrentModification(format!(
            "alias {alias} of {name} kept changing; retry"
        )))
    }

    /// Whether the history entry of `revision` is the one this request wrote.
    async fn landed(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        revision: u64,
        token: &str,
    ) -> Result<bool> {
        Ok(self
            .history_entry(name, alias, revision)
            .await?
            .is_some_and(|h| h.token == token))
    }

    /// The newest entry of the alias's history.
    async fn last_change(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
    ) -> Result<Option<HistoryRow>> {
        Ok(self
            .history_page(name, alias, 1, None, false)
            .await?
            .0
            .into_iter()
            .next())
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
        let start = alias_items::alias_cursor(name, cursor)?;
        let (rows, next) = self.table.alias_page(name, limit, start).await?;
        let items = rows
            .iter()
            .map(|row| row.to_alias(&self.layout))
            .collect::<Vec<_>>();
        let next_cursor = next.as_deref().map(encode_cursor);
        Ok(Page { items, next_cursor })
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
        let (row, mut rows) = self
            .read_alias_and_versions(name, alias, &[Version::Latest])
            .await?;
        let latest = rows.remove(&Version::Latest);
        let row = row.ok_or_else(|| Error::AliasNotFound {
            name: name.to_string(),
            alias: alias.to_string(),
        })?;
        let bucket = match key {
            Some(key) => alias_rules::sticky_bucket(name, alias, key),
            None => rand::random_range(0..100),
        };
        let chosen = match &row.secondary {
            Some((secondary, weight)) if alias_rules::takes_secondary(bucket, *weight) => secondary,
            _ => &row.primary,
        };
        let (sha256, location, status) = match (chosen.version, &chosen.sha256) {
            (Version::Latest, _) => {
                let latest =
                    latest
                        .filter(|l| l.is_live())
                        .ok_or_else(|| Error::ArtifactNotFound {
                            name: name.to_string(),
                        })?;
                (latest.sha256, latest.location, None)
            }
            (_, Some(sha)) => (sha.clone(), chosen.location.clone(), chosen.status),
            // A row the library wrote names only the version: its status is
            // the version row's.
            (version, None) => {
                let target = self.get_live_row(name, version).await?;
                (target.sha256, target.location, target.status)
            }
        };
        let warning = status
            .filter(|s| *s != crate::model::VersionStatus::Active)
            .map(|s| {
                format!(
                    "version {} of {name} is {}: move {alias} to a newer version",
                    chosen.version,
                    s.as_str()
                )
            });
        Ok(Resolved {
            name: name.clone(),
            alias: alias.clone(),
            revision: row.revision.unwrap_or(0),
            version: chosen.version,
            download_url: self
                .download_url(name, chosen.version, &sha256, &location)
                .await?,
            sha256,
            warning,
        })
    }

    async fn alias_row(&self, name: &ArtifactName, alias: &AliasName) -> Result<AliasRow> {
        self.find_alias_row(name, alias)
            .await?
            .ok_or_else(|| Error::AliasNotFound {
                name: name.to_string(),
                alias: alias.to_string(),
            })
    }

    /// The alias row, `None` when absent. AWS calls: 1 (GetItem).
    pub(super) fn find_alias_row(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
    ) -> impl std::future::Future<Output = Result<Option<AliasRow>>> {
        self.table.alias_row(name, alias)
    }

    /// The alias row (if any) and the rows of `versions`, in one read
    /// (BatchGetItem).
    fn read_alias_and_versions(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        versions: &[Version],
    ) -> impl std::future::Future<Output = Result<(Option<AliasRow>, HashMap<Version, VersionRow>)>>
    {
        self.table.alias_and_versions(name, alias, versions)
    }

    /// Strongly consistent BatchGetItem ([`Table::batch_get`]); the
    /// store's future itself, so no await point is added on the way.
    pub(super) fn batch_get(
        &self,
        keys: Vec<Item>,
    ) -> impl std::future::Future<Output = Result<Vec<Item>>> {
        self.table.batch_get(keys)
    }

    /// The alias row put (or delete, when `row` is `None`), conditional on
    /// the row being as we read it.
    fn alias_write(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        row: Option<&AliasRow>,
        old: Option<&AliasRow>,
    ) -> Result<TxItem> {
        alias_items::alias_write(&self.layout.table, name, alias, row, old)
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
    ) -> Result<TxItem> {
        let change = match add {
            true => Reference::Add {
                refuse_archived: false,
                recorded: None,
            },
            false => Reference::Remove,
        };
        alias_items::reference(&self.layout.table, name, alias, version, change)
    }

    /// [`Self::reference`] adding a target; `refuse_archived`: only while
    /// the version is not archived; `recorded`: only while it is still at
    /// the status the alias row records for it.
    fn reference_target(
        &self,
        name: &ArtifactName,
        alias: &AliasName,
        version: Version,
        refuse_archived: bool,
        recorded: Option<crate::model::VersionStatus>,
    ) -> Result<TxItem> {
        alias_items::reference(
            &self.layout.table,
            name,
            alias,
            version,
            Reference::Add {
                refuse_archived,
                recorded,
            },
        )
    }
}

fn target_ref(row: &VersionRow) -> TargetRef {
    if row.version.is_latest() {
        // LATEST moves: resolve reads it fresh.
        TargetRef {
            version: row.version,
            sha256: None,
            location: Location::Library { version_id: None },
            status: None,
        }
    } else {
        TargetRef {
            version: row.version,
            sha256: Some(row.sha256.clone()),
            location: row.location.clone(),
            status: row.status,
        }
    }
}

/// The members of an alias change's transaction, by what their refusal means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    /// The alias row, as read.
    Alias,
    /// The history entry of the new revision.
    History,
    /// LATEST exists (the artifact is not being purged).
    Latest,
    /// A version the alias will point at: live (and not archived if new).
    Target(Version),
    /// A version the alias lets go of.
    Released(Version),
    /// The rollout item a driver's step or a cancellation writes.
    Rollout,
    /// No purge of the artifact runs.
    Fence,
    /// The record of the pipeline run that moves the alias.
    Record,
    /// The artifact's event log (no condition).
    Log,
}

/// The targets undoing the last change goes back to, after the history
/// entry `last` and the alias row when the library wrote it since
/// ([`alias_rules::rollback_target`]).
fn undo(
    last: &HistoryRow,
    library_row: Option<&crate::model::AliasState>,
) -> std::result::Result<crate::model::AliasState, &'static str> {
    crate::alias_rules::rollback_target(
        last.change.state().as_ref(),
        last.change.previous.as_ref(),
        library_row,
    )
}

fn nothing_to_roll_back(name: &ArtifactName, alias: &AliasName, why: &str) -> Error {
    Error::NothingToRollBack(format!(
        "alias \"{alias}\" of artifact \"{name}\" has nothing to roll back to: {why}"
    ))
}
