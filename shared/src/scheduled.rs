//! The scheduled retention job: for every artifact, apply the retention
//! policy (alias targets and LATEST kept), then reclaim the bytes of versions
//! soft-deleted longer than the grace period (tombstone rows stay).
//!
//! A pass watches its deadline: it stops cleanly before it, remembers the
//! last artifact it finished, and the next pass resumes after it.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::ConfigError;
use crate::error::{Error, Result};
use crate::model::RetentionPolicy;
use crate::names::ArtifactName;
use crate::repository::Repository;

/// The job's policy, from the environment (the SAM template's parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSchedule {
    pub policy: RetentionPolicy,
    /// How long a version stays soft-deleted before its bytes are deleted.
    pub reclaim_grace: Duration,
}

const DAY: u64 = 24 * 60 * 60;

impl RetentionSchedule {
    pub fn from_env() -> std::result::Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<Self, ConfigError> {
        let number = |key: &str, default: u64| -> std::result::Result<u64, ConfigError> {
            match lookup(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
            {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n <= 100_000)
                    .ok_or_else(|| {
                        ConfigError(format!("{key} {v:?} must be an integer from 0 to 100000"))
                    }),
            }
        };
        Ok(Self {
            policy: RetentionPolicy {
                keep_last_n: number("RETENTION_KEEP_LAST_N", 10)? as u32,
                older_than: Duration::from_secs(
                    number("RETENTION_PURGE_OLDER_THAN_DAYS", 90)? * DAY,
                ),
            },
            reclaim_grace: Duration::from_secs(number("RETENTION_RECLAIM_GRACE_DAYS", 30)? * DAY),
        })
    }
}

/// What one pass did; also the Lambda's JSON result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionSummary {
    pub artifacts_scanned: u64,
    pub versions_soft_deleted: u64,
    pub objects_reclaimed: u64,
    /// The artifact the previous pass stopped after, if it stopped early.
    pub resumed_from: Option<String>,
    /// Where this pass stopped, when the deadline came first.
    pub stopped_after: Option<String>,
    pub completed: bool,
}

/// Names are listed in pages of this many.
const PAGE: u32 = 100;

/// One pass over every artifact, stopping before `deadline` (after at least
/// one artifact, so that every pass makes progress).
pub async fn run_retention(
    repo: &Repository,
    schedule: RetentionSchedule,
    deadline: Instant,
) -> Result<RetentionSummary> {
    let resumed_from = repo.retention_cursor().await?;
    let mut summary = RetentionSummary {
        resumed_from: resumed_from.as_ref().map(ToString::to_string),
        ..Default::default()
    };
    let mut after: Option<ArtifactName> = resumed_from;
    loop {
        let (names, more) = repo.artifact_names_after(after.as_ref(), PAGE).await?;
        for name in names {
            if summary.artifacts_scanned > 0 && Instant::now() >= deadline {
                repo.set_retention_cursor(after.as_ref()).await?;
                summary.stopped_after = after.map(|a| a.to_string());
                tracing::info!(
                    ?summary,
                    "retention pass stopped before its deadline; the next pass resumes"
                );
                return Ok(summary);
            }
            if let Err(e) = retain(repo, schedule, &name, &mut summary).await {
                // Keep the progress made so far; the next pass retries this one.
                repo.set_retention_cursor(after.as_ref()).await?;
                return Err(e);
            }
            after = Some(name);
        }
        if !more {
            break;
        }
    }
    repo.set_retention_cursor(None).await?;
    summary.completed = true;
    tracing::info!(?summary, "retention pass complete");
    Ok(summary)
}

async fn retain(
    repo: &Repository,
    schedule: RetentionSchedule,
    name: &ArtifactName,
    summary: &mut RetentionSummary,
) -> Result<()> {
    summary.artifacts_scanned += 1;
    match repo.purge_versions(name, schedule.policy, false).await {
        Ok(report) => summary.versions_soft_deleted += report.deleted.len() as u64,
        // Objects without rows (a purge interrupted, or foreign keys): nothing to retain.
        Err(Error::ArtifactNotFound { .. }) => return Ok(()),
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
    let setup = async {
        let repo = crate::api::init().await?;
        Ok::<_, ConfigError>((repo, RetentionSchedule::from_env()?))
    };
    let (repo, schedule) = match setup.await {
        Ok(ready) => ready,
        Err(e) => {
            eprintln!("scheduled-purge: {e}");
            std::process::exit(1);
        }
    };
    let repo = &repo;
    lambda_runtime::run(lambda_runtime::service_fn(move |event| {
        handle_event(repo, schedule, event)
    }))
    .await
}

/// The handler: one pass per EventBridge event, within the invocation's
/// remaining time less a safety margin.
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
    tracing::info!(source = %event.payload.source, detail_type = %event.payload.detail_type, "retention pass");
    // Logged in full; the invocation fails with the stable code only.
    run_retention(repo, schedule, deadline).await.map_err(|e| {
        tracing::error!(error = ?e, "retention pass failed");
        lambda_runtime::Diagnostic {
            error_type: e.code().into(),
            error_message: e.to_string(),
        }
    })
}
