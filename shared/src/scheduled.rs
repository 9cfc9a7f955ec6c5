//! The scheduled retention job: for every artifact, apply the retention
//! policy (alias targets and LATEST kept), then reclaim the bytes of versions
//! soft-deleted longer than the grace period (tombstone rows stay).
//!
//! A pass watches its deadline: it stops cleanly before it, remembers the
//! last listing entry it finished, and the next pass resumes after it. An
//! artifact whose retention fails is recorded and skipped; the next pass
//! tries it first. Passes never overlap: each holds a lease on the job's
//! bookkeeping row, or does nothing.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::names::ArtifactName;
use crate::repository::{Repository, RetentionBookkeeping};

pub use crate::config::RetentionSchedule;

/// What one pass did; also the Lambda's JSON result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionSummary {
    pub artifacts_scanned: u64,
    pub versions_soft_deleted: u64,
    pub objects_reclaimed: u64,
    /// Purges that had stopped part-way, finished by this pass.
    pub purges_finished: u64,
    /// The listing entry the previous pass stopped after, if it stopped
    /// early (`name/` for an artifact; see `Repository::artifact_names_after`).
    pub resumed_from: Option<String>,
    /// Where this pass stopped, when the deadline came first.
    pub stopped_after: Option<String>,
    pub completed: bool,
    /// Another pass held the lease: this one did nothing.
    pub skipped: bool,
    /// Artifacts that failed in an earlier pass, tried again first.
    pub retried: Vec<String>,
    /// Artifacts whose retention failed in this pass (the first
    /// [`MAX_FAILED`]); the next pass tries them first.
    pub failed: Vec<FailedArtifact>,
    /// How many failed in all.
    pub failed_total: u64,
}

/// One artifact the pass could not handle, with the error's stable code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedArtifact {
    pub name: String,
    pub code: &'static str,
}

/// Names are listed in pages of this many.
const PAGE: u32 = 100;

/// At most this many failures are reported and kept for the next pass to
/// retry first; the rest are retried when the listing reaches them again.
pub const MAX_FAILED: usize = 100;

/// How one pass runs.
#[derive(Debug, Clone)]
pub struct Pass {
    /// The pass stops before this (after at least one artifact).
    pub deadline: Instant,
    /// How long the pass holds the job's lease: until the invocation cannot
    /// be running any more, so that no other pass overlaps it.
    pub lease: Duration,
    /// Entries per page of the names listing.
    pub page_size: u32,
    /// Who holds the lease (unique per pass).
    pub owner: String,
}

impl Pass {
    /// A pass that stops before `deadline`, holding the lease a safety
    /// margin longer.
    pub fn until(deadline: Instant) -> Self {
        Self {
            deadline,
            lease: deadline.saturating_duration_since(Instant::now()) + SAFETY_MARGIN,
            page_size: PAGE,
            owner: uuid::Uuid::new_v4().to_string(),
        }
    }

    pub fn with_page_size(self, page_size: u32) -> Self {
        Self {
            page_size: page_size.max(1),
            ..self
        }
    }
}

/// One pass over every artifact, stopping before `deadline`.
pub async fn run_retention(
    repo: &Repository,
    schedule: RetentionSchedule,
    deadline: Instant,
) -> Result<RetentionSummary> {
    run_pass(repo, schedule, Pass::until(deadline)).await
}

/// One pass: under the job's lease (skipped when another pass holds it),
/// first the artifacts that failed last time, then every artifact from
/// where the last pass stopped. An artifact that fails is recorded and the
/// pass goes on. What the next pass needs is saved as the lease is released.
pub async fn run_pass(
    repo: &Repository,
    schedule: RetentionSchedule,
    pass: Pass,
) -> Result<RetentionSummary> {
    let until = SystemTime::now() + pass.lease;
    let Some(previous) = repo.take_retention_lease(&pass.owner, until).await? else {
        tracing::info!("another retention pass holds the lease; skipped");
        return Ok(RetentionSummary {
            skipped: true,
            ..Default::default()
        });
    };
    let mut run = Run {
        repo,
        schedule,
        deadline: pass.deadline,
        summary: RetentionSummary {
            resumed_from: previous.after.clone(),
            ..Default::default()
        },
        after: previous.after,
        retry_later: Vec::new(),
        failed_again: Vec::new(),
    };
    let outcome = run.work(previous.failed, pass.page_size).await;
    let mut summary = run.summary;
    let next = RetentionBookkeeping {
        after: match outcome {
            Ok(Ending::Complete) => None,
            Ok(Ending::Stopped) | Err(_) => run.after.clone(),
        },
        // Fresh failures first: a name that keeps failing must not crowd
        // out the others.
        failed: std::mem::take(&mut run.retry_later)
            .into_iter()
            .chain(std::mem::take(&mut run.failed_again))
            .take(MAX_FAILED)
            .collect(),
    };
    let saved = repo.release_retention_lease(&pass.owner, &next).await;
    let outcome = match outcome {
        Ok(ending) => ending,
        Err(e) => {
            if let Err(release) = saved {
                tracing::error!(error = ?release, "releasing the retention lease failed");
            }
            return Err(e);
        }
    };
    if !saved? {
        tracing::warn!(
            owner = %pass.owner,
            "the retention lease was no longer this pass's (expired and taken over, or \
             already released by a retried request); its bookkeeping is left to the holder"
        );
    }
    match outcome {
        Ending::Complete => {
            summary.completed = true;
            tracing::info!(?summary, "retention pass complete");
        }
        Ending::Stopped => {
            summary.stopped_after = next.after;
            tracing::info!(
                ?summary,
                "retention pass stopped before its deadline; the next pass resumes"
            );
        }
    }
    Ok(summary)
}

/// How a pass's work ended (an error ends it too).
enum Ending {
    Complete,
    Stopped,
}

/// One pass in progress.
struct Run<'a> {
    repo: &'a Repository,
    schedule: RetentionSchedule,
    deadline: Instant,
    summary: RetentionSummary,
    /// The last listing entry done.
    after: Option<String>,
    /// Names that failed in this pass's listing: the next pass tries them first.
    retry_later: Vec<String>,
    /// Names that failed again when retried: after the fresh ones.
    failed_again: Vec<String>,
}

impl Run<'_> {
    async fn work(&mut self, retry: Vec<String>, page_size: u32) -> Result<Ending> {
        let mut retried = BTreeSet::new();
        let mut retry = retry.into_iter();
        // Retries get at most half of the time left, so that names that keep
        // failing never starve the listing.
        let now = Instant::now();
        let retry_deadline = now + self.deadline.saturating_duration_since(now) / 2;
        while let Some(name) = retry.next() {
            if self.summary.artifacts_scanned > 0 && Instant::now() >= retry_deadline {
                // Not tried yet: they stay in line, after this pass's fresh failures.
                self.failed_again.extend(std::iter::once(name).chain(retry));
                break;
            }
            // A name that no longer parses cannot be retried; the listing
            // decides about it.
            let Ok(name) = name.parse::<ArtifactName>() else {
                continue;
            };
            self.summary.retried.push(name.to_string());
            if !self.retain(&name).await
                && let Some(failed) = self.retry_later.pop()
            {
                self.failed_again.push(failed);
            }
            retried.insert(name);
        }
        loop {
            let (names, next) = self
                .repo
                .names_holding_anything_after(self.after.as_deref(), page_size)
                .await?;
            for name in names {
                if retried.contains(&name) {
                    continue;
                }
                if self.out_of_time() {
                    return Ok(Ending::Stopped);
                }
                self.retain(&name).await;
                self.after = Some(format!("{name}/"));
            }
            match next {
                Some(last) => self.after = Some(last),
                None => return Ok(Ending::Complete),
            }
        }
    }

    /// Every pass makes progress: it handles at least one artifact.
    fn out_of_time(&self) -> bool {
        self.summary.artifacts_scanned > 0 && Instant::now() >= self.deadline
    }

    /// Applies retention to one artifact; a failure is recorded, not fatal.
    /// Returns whether it succeeded.
    async fn retain(&mut self, name: &ArtifactName) -> bool {
        self.summary.artifacts_scanned += 1;
        let result = retain(self.repo, self.schedule, name, &mut self.summary).await;
        if let Err(e) = &result {
            tracing::warn!(artifact = %name, code = e.code(), error = ?e, "retention of an artifact failed; the next pass retries it");
            self.summary.failed_total += 1;
            if self.summary.failed.len() < MAX_FAILED {
                self.summary.failed.push(FailedArtifact {
                    name: name.to_string(),
                    code: e.code(),
                });
            }
            if self.retry_later.len() < MAX_FAILED {
                self.retry_later.push(name.to_string());
            }
        }
        result.is_ok()
    }
}

async fn retain(
    repo: &Repository,
    schedule: RetentionSchedule,
    name: &ArtifactName,
    summary: &mut RetentionSummary,
) -> Result<()> {
    match repo.purge_versions(name, schedule.policy, false).await {
        Ok(report) => summary.versions_soft_deleted += report.deleted.len() as u64,
        // No LATEST. A purge that stopped part-way (its fence handed over
        // or lapsed) is finished (SPEC 7.16). Otherwise (uploads never
        // committed, foreign keys) no version to retain, but bytes no row
        // or live upload holds are reclaimed all the same (SPEC 7.8).
        Err(Error::ArtifactNotFound { .. }) => {
            if repo.finish_unfinished_purge(name).await? {
                summary.purges_finished += 1;
                return Ok(());
            }
        }
        Err(e) => return Err(e),
    }
    let reclaimed = repo.reclaim(name, schedule.reclaim_grace).await?;
    summary.objects_reclaimed += reclaimed.reclaimed.len() as u64;
    Ok(())
}

/// Time kept in hand before the Lambda's own timeout.
const SAFETY_MARGIN: Duration = Duration::from_secs(20);

/// The whole `main` of the `scheduled-purge` function.
pub async fn serve() -> std::result::Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let repo = match crate::api::init().await {
        Ok(repo) => repo,
        Err(e) => {
            eprintln!("scheduled-purge: {e}");
            std::process::exit(1);
        }
    };
    let repo = &repo;
    let schedule = repo.retention();
    lambda_runtime::run(lambda_runtime::service_fn(move |event| {
        handle_event(repo, schedule, event)
    }))
    .await
}

/// The handler: one pass per EventBridge event, within the invocation's
/// remaining time less a safety margin, holding the lease for all of it.
pub async fn handle_event(
    repo: &Repository,
    schedule: RetentionSchedule,
    event: lambda_runtime::LambdaEvent<aws_lambda_events::eventbridge::EventBridgeEvent>,
) -> std::result::Result<RetentionSummary, lambda_runtime::Diagnostic> {
    let remaining = event
        .context
        .deadline()
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    let deadline = Instant::now() + remaining.saturating_sub(SAFETY_MARGIN);
    let pass = Pass {
        lease: remaining,
        ..Pass::until(deadline)
    };
    tracing::info!(source = %event.payload.source, detail_type = %event.payload.detail_type, "retention pass");
    // Logged in full; the invocation fails with the stable code only.
    run_pass(repo, schedule, pass).await.map_err(|e| {
        tracing::error!(error = ?e, "retention pass failed");
        lambda_runtime::Diagnostic {
            error_type: e.code().into(),
            error_message: e.to_string(),
        }
    })
}
