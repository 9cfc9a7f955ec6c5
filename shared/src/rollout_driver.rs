//! The `rollout-driver` function (SPEC 10.1): one pass over every rollout
//! that holds an alias — read the alarms they watch (CloudWatch
//! `DescribeAlarms`), then abort, step, complete or leave each as
//! [`crate::rollout::decide`] says. Deployed, an EventBridge schedule runs a
//! pass every minute; `local-api` runs the same pass on a short period.
//!
//! Passes may overlap (a slow pass and the next, or two local servers):
//! every write is conditional on what its pass read, so one of them applies
//! a step and the other finds it applied.

use std::time::Duration;

use serde::Serialize;

use futures::{StreamExt, stream};

use crate::error::Result;
use crate::repository::{Driven, Repository};

/// Rollouts read, and visited, at once in a pass.
const PARALLEL_VISITS: usize = 8;

/// The repository and the alarm reader.
#[derive(Debug, Clone)]
pub struct Driver {
    pub repo: Repository,
    alarms: aws_sdk_cloudwatch::Client,
}

/// What one pass did; also the Lambda's JSON result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PassReport {
    pub rollouts: usize,
    pub stepped: usize,
    pub completed: usize,
    pub aborted: usize,
    /// Changed first by someone else (another pass, a person).
    pub lost: usize,
    /// Entries of rollouts that are over or gone, dropped.
    pub forgotten: usize,
    /// Rollouts whose visit failed (logged; the next pass tries again).
    pub failed: usize,
    /// Alarms whose state could not be read (logged; the rollouts watching
    /// them wait for the next pass).
    pub alarms_unread: usize,
}

impl Driver {
    /// A driver over `repo`, reading alarms with `sdk`'s CloudWatch.
    pub fn new(repo: Repository, sdk: &aws_config::SdkConfig) -> Self {
        let alarms = repo.alarms_client(sdk);
        Self { repo, alarms }
    }

    /// One pass over every held alias. AWS calls: Query (the registry),
    /// per rollout GetItem, DescribeAlarms per 100 alarm names, then per
    /// rollout GetItem of it and of its alias and, when it moves (or its
    /// alias no longer names it), an alias change (or its ending); the
    /// per-rollout calls for up to [`PARALLEL_VISITS`] rollouts at once.
    pub async fn pass(&self) -> Result<PassReport> {
        let held = self.repo.held_rollouts().await?;
        let mut report = PassReport {
            rollouts: held.len(),
            ..PassReport::default()
        };
        if held.is_empty() {
            return Ok(report);
        }
        // Owned items: a stream of futures borrowing its items is not
        // `Send` for every lifetime (the handler's future must be).
        let rows: Vec<_> = stream::iter(held.clone())
            .map(
                |(name, alias, id)| async move { self.repo.find_rollout(&name, &alias, &id).await },
            )
            .buffered(PARALLEL_VISITS)
            .collect()
            .await;
        let mut names: Vec<String> = rows
            .iter()
            .filter_map(|r| r.as_ref().ok().and_then(Option::as_ref))
            .flat_map(|r| r.alarms.iter().cloned())
            .collect();
        names.sort();
        names.dedup();
        // A failed read leaves its names unread: only the rollouts watching
        // them wait (drive_rollout), the others go on.
        let (states, unread) = crate::repository::read_alarm_states(&self.alarms, &names).await;
        if let Some(e) = unread {
            report.alarms_unread += names.iter().filter(|n| !states.contains_key(*n)).count();
            tracing::error!(code = e.code(), error = ?e, "alarms unread; the rollouts watching them wait for the next pass");
        }
        let at = crate::layout::now();
        // Each visit writes only its own rollout and alias, conditional on
        // what it read: they go in parallel, so a pass over many rollouts
        // ends well inside the function's timeout.
        let states = &states;
        let read: Vec<bool> = rows.iter().map(Result::is_ok).collect();
        let visits: Vec<_> = stream::iter(held.clone().into_iter().zip(read))
            .map(|((name, alias, id), read)| async move {
                match read {
                    true => Some(
                        self.repo
                            .drive_rollout(&name, &alias, &id, states, at)
                            .await,
                    ),
                    false => None,
                }
            })
            .buffered(PARALLEL_VISITS)
            .collect()
            .await;
        for (((name, alias, id), read), visit) in held.iter().zip(&rows).zip(visits) {
            // Unread, its alarms were not asked for: driving it now would
            // take them for missing and abort it. The next pass reads it.
            let Some(visit) = visit else {
                if let Err(e) = read {
                    report.failed += 1;
                    tracing::error!(%name, %alias, rollout = %id, code = e.code(), error = ?e, "rollout unread; the next pass retries it");
                }
                continue;
            };
            match visit {
                Ok(Driven::Waiting) => {}
                Ok(Driven::Stepped { step }) => {
                    report.stepped += 1;
                    tracing::info!(%name, %alias, rollout = %id, step, "rollout stepped");
                }
                Ok(Driven::Completed) => {
                    report.completed += 1;
                    tracing::info!(%name, %alias, rollout = %id, "rollout completed");
                }
                Ok(Driven::Aborted { reason }) => {
                    report.aborted += 1;
                    tracing::warn!(%name, %alias, rollout = %id, %reason, "rollout aborted");
                }
                Ok(Driven::Lost) => report.lost += 1,
                Ok(Driven::Forgotten) => report.forgotten += 1,
                Err(e) => {
                    report.failed += 1;
                    tracing::error!(%name, %alias, rollout = %id, code = e.code(), error = ?e, "rollout visit failed; the next pass retries it");
                }
            }
        }
        Ok(report)
    }

    /// Passes every `period` until the task is dropped (the local server's
    /// stand-in for the schedule).
    pub async fn run(self, period: Duration) {
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!(code = e.code(), error = ?e, "rollout pass failed; retrying");
            }
            tokio::time::sleep(period).await;
        }
    }
}

/// The handler: one pass per scheduled event.
pub async fn handle_event(
    driver: &Driver,
    event: lambda_runtime::LambdaEvent<aws_lambda_events::eventbridge::EventBridgeEvent>,
) -> std::result::Result<PassReport, lambda_runtime::Diagnostic> {
    tracing::info!(source = %event.payload.source, detail_type = %event.payload.detail_type, "rollout pass");
    let report = driver.pass().await.map_err(|e| {
        tracing::error!(error = ?e, "rollout pass failed");
        lambda_runtime::Diagnostic {
            error_type: e.code().into(),
            error_message: e.to_string(),
        }
    })?;
    // The others were driven; the invocation still fails, so the
    // function's errors alarm tells an operator that some rollouts wait
    // for alarms nobody can read.
    if report.alarms_unread > 0 {
        return Err(lambda_runtime::Diagnostic {
            error_type: "AlarmsUnread".into(),
            error_message: format!(
                "{} alarm(s) could not be read: the rollouts watching them wait ({report:?})",
                report.alarms_unread
            ),
        });
    }
    Ok(report)
}

/// The local server's period between passes: `ROLLOUT_DRIVER_PERIOD_MS`,
/// 1 000 by default.
pub fn local_period(
    lookup: impl Fn(&str) -> Option<String>,
) -> std::result::Result<Duration, crate::ConfigError> {
    match lookup("ROLLOUT_DRIVER_PERIOD_MS").map(|v| v.trim().to_owned()) {
        None => Ok(Duration::from_secs(1)),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|ms| (10..=3_600_000).contains(ms))
            .map(Duration::from_millis)
            .ok_or_else(|| {
                crate::ConfigError(format!(
                    "ROLLOUT_DRIVER_PERIOD_MS {v:?} must be an integer from 10 to 3600000"
                ))
            }),
    }
}

/// The whole `main` of the `rollout-driver` function.
pub async fn serve() -> std::result::Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let (_, sdk, repo) = match crate::mirror::init().await {
        Ok(started) => started,
        Err(e) => {
            eprintln!("rollout-driver: {e}");
            std::process::exit(1);
        }
    };
    let driver = Driver::new(repo, &sdk);
    let driver = &driver;
    lambda_runtime::run(lambda_runtime::service_fn(move |event| {
        handle_event(driver, event)
    }))
    .await
}
