//! The `publish-events` function (SPEC 10.2): every change of the table,
//! read from its stream, becomes an event on Amazon EventBridge (source
//! [`SOURCE`]), at least once and in the stream's order.
//!
//! | row change (stream record) | detail-type |
//! |---|---|
//! | LATEST gets another upload | `Upload Committed` |
//! | a version row is created | `Version Published` |
//! | a version row becomes soft-deleted | `Version Deleted` |
//! | an alias history entry is written | `Alias Changed` |
//! | the library writes an alias row (its targets change; it keeps no history) | `Alias Changed` (revision 0) |
//! | a rollout item is written at a new step / completed / aborted | `Rollout Step` / `Rollout Completed` / `Rollout Aborted` |
//! | LATEST is removed (a purge removes it first) | `Artifact Purged` |
//!
//! This service's own changes are told by the records of the artifact's
//! event log item (`__{name}-events`), which every transaction writing one
//! updates with its events: the stream orders one item's records, so these
//! come in the order of the artifact's changes; the rows' own records then
//! give none. The library's writes (no log) are told by their rows.
//!
//! Every detail carries `id` — the same for every delivery of one change,
//! different for any two changes — the stream's `sequence` and, from the
//! log, `seq` (the change's number in the artifact's log), so a consumer
//! drops duplicates by `id`. Unlike the mirror, the events take
//! what the record's images say (they describe the change, not the row's
//! state now), so the same record always gives the same events.
//! Locally the same handler runs over the emulator's stream and puts the
//! events on the emulator's EventBridge, or into a file (`EVENTS_SINK`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde_json::Value;

use crate::error::Error;
pub use artifact_store::change_events::{Change, ChangeEvent, ChangeKind, SOURCE, events_of};

/// PutEvents takes at most 10 entries per call.
const ENTRIES_PER_CALL: usize = 10;

/// Where events go.
#[derive(Debug, Clone)]
pub enum Sink {
    /// PutEvents on `bus` (`None`: the account's default bus).
    EventBridge {
        client: aws_sdk_eventbridge::Client,
        bus: Option<String>,
    },
    /// One JSON line per event appended to a file (local use).
    File(PathBuf),
    /// Kept in memory (tests).
    Memory(Arc<Mutex<Vec<ChangeEvent>>>),
}

/// What one batch did.
#[derive(Debug, Default)]
pub struct PublishReport {
    /// Changes fully handled: every change before the failing one.
    pub handled: usize,
    pub published: usize,
    /// The change the batch stopped at, and why.
    pub failure: Option<(String, Error)>,
}

/// Puts the events of `changes` in their order, in calls of at most ten
/// entries that hold at most one change of each artifact ([`calls`]);
/// stops at the first change one of whose events was refused (it and those
/// after it are retried; events of it already put are put again, with the
/// same ids).
pub async fn publish(sink: &Sink, changes: &[Change]) -> PublishReport {
    let mut report = PublishReport::default();
    // Each event with the index of its change.
    let events: Vec<(usize, ChangeEvent)> = changes
        .iter()
        .enumerate()
        .flat_map(|(i, c)| events_of(c).into_iter().map(move |e| (i, e)))
        .collect();
    let mut budget = RETRY_BUDGET;
    for range in calls(&events) {
        let batch = &events[range];
        if let Err((failed, error)) = put(sink, batch, &mut budget).await {
            let index = batch[failed].0;
            report.handled = index;
            report.failure = Some((changes[index].sequence.clone(), error));
            return report;
        }
        report.published += batch.len();
    }
    report.handled = changes.len();
    report
}

/// The calls that put `events` (each with the index of its change), in
/// order: at most ten entries each, a change's events in one call (unless
/// it has more than ten), and at most one change of each artifact per
/// call. EventBridge may refuse some entries of a call and take the
/// others: with two changes of one artifact in a call, the later could be
/// taken and the earlier put again after it, out of the artifact's order.
/// One per call, a refusal delays only what follows it.
pub fn calls(events: &[(usize, ChangeEvent)]) -> Vec<std::ops::Range<usize>> {
    let artifact = |e: &ChangeEvent| e.detail["name"].as_str().map(str::to_owned);
    let mut calls = Vec::new();
    let (mut start, mut i) = (0, 0);
    let mut artifacts: std::collections::BTreeSet<Option<String>> = Default::default();
    while i < events.len() {
        let change = events[i].0;
        let end = events[i..]
            .iter()
            .position(|(c, _)| *c != change)
            .map_or(events.len(), |n| i + n);
        let name = artifact(&events[i].1);
        let full = end - start > ENTRIES_PER_CALL;
        if i > start && (full || artifacts.contains(&name)) {
            calls.push(start..i);
            start = i;
            artifacts.clear();
        }
        artifacts.insert(name);
        // A change of more than ten events: ten per call.
        while end - start > ENTRIES_PER_CALL {
            calls.push(start..start + ENTRIES_PER_CALL);
            start += ENTRIES_PER_CALL;
        }
        i = end;
    }
    if start < events.len() {
        calls.push(start..events.len());
    }
    calls
}

/// How many times entries EventBridge refused for a passing reason
/// (throttling, an internal failure) are sent, with backoff, before the
/// batch stops at them: Lambda's own retries of the batch come close
/// together, and a throttle lasting seconds used them all up.
pub const ENTRY_ATTEMPTS: u32 = 6;

/// The first pause before refused entries are sent again (then doubled).
const ENTRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// The pauses of one invocation, all calls together, at most: well within
/// the function's timeout (60 s), so a batch stopped by throttling reports
/// how far it got rather than timing out (which retries all of it).
const RETRY_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);

/// Whether EventBridge refused an entry for a reason that passes.
fn passing(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException" | "InternalFailure" | "InternalException"
    )
}

/// Sends `entries` with `send` (which answers each entry's error code, if
/// refused), sending refused entries again, alone, while their refusal is
/// passing (at most [`ENTRY_ATTEMPTS`] sends, the pause from `pause`
/// growing, and only while the pauses fit in what is left of `budget`); on
/// failure, the position of the first entry still refused and why.
pub async fn send_entries<T, F, Fut>(
    entries: Vec<T>,
    pause: std::time::Duration,
    budget: &mut std::time::Duration,
    send: F,
) -> std::result::Result<(), (usize, Error)>
where
    T: Clone,
    F: Fn(Vec<T>) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<Vec<Option<String>>, Error>>,
{
    // Positions (in `entries`) still to send.
    let mut left: Vec<usize> = (0..entries.len()).collect();
    for attempt in 1..=ENTRY_ATTEMPTS {
        let codes = send(left.iter().map(|&i| entries[i].clone()).collect())
            .await
            .map_err(|e| (left.first().copied().unwrap_or(0), e))?;
        let refused: Vec<(usize, String)> = left
            .iter()
            .zip(codes)
            .filter_map(|(&i, code)| code.map(|c| (i, c)))
            .collect();
        let Some((first, code)) = refused.first().cloned() else {
            return Ok(());
        };
        let wait = artifact_store::retry::growing(pause, attempt);
        if attempt == ENTRY_ATTEMPTS || !refused.iter().all(|(_, c)| passing(c)) || wait > *budget {
            let code = refused
                .iter()
                .find(|(_, c)| !passing(c))
                .map_or(code, |(_, c)| c.clone());
            return Err((
                first,
                Error::UpstreamError {
                    operation: "PutEvents",
                    source: format!("entry refused: {code}").into(),
                },
            ));
        }
        left = refused.into_iter().map(|(i, _)| i).collect();
        *budget -= wait;
        tokio::time::sleep(wait).await;
    }
    Ok(())
}

/// Puts one batch; on failure, the position of the first event refused.
async fn put(
    sink: &Sink,
    batch: &[(usize, ChangeEvent)],
    budget: &mut std::time::Duration,
) -> std::result::Result<(), (usize, Error)> {
    match sink {
        Sink::Memory(kept) => {
            let mut kept = kept
                .lock()
                .map_err(|_| (0, Error::internal("events", "memory sink poisoned")))?;
            kept.extend(batch.iter().map(|(_, e)| e.clone()));
            Ok(())
        }
        Sink::File(path) => {
            use std::io::Write;
            let mut lines = String::new();
            for (_, e) in batch {
                lines.push_str(
                    &serde_json::to_string(e).map_err(|e| (0, Error::internal("events", e)))?,
                );
                lines.push('\n');
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(lines.as_bytes()))
                .map_err(|e| (0, Error::internal("events file", e)))
        }
        Sink::EventBridge { client, bus } => {
            let entries: Vec<PutEventsRequestEntry> = batch
                .iter()
                .map(|(_, e)| {
                    PutEventsRequestEntry::builder()
                        .source(SOURCE)
                        .detail_type(e.detail_type)
                        .detail(e.detail.to_string())
                        .set_event_bus_name(bus.clone())
                        .build()
                })
                .collect();
            send_entries(entries, ENTRY_PAUSE, budget, |entries| async move {
                let sent = entries.len();
                let out = client
                    .put_events()
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| crate::sdk_error::upstream("PutEvents", e))?;
                let mut codes: Vec<Option<String>> = out
                    .entries()
                    .iter()
                    .map(|entry| entry.error_code().map(str::to_owned))
                    .collect();
                // Refusals counted but not told entry by entry: all of them.
                if out.failed_entry_count() > 0 && codes.iter().all(Option::is_none) {
                    codes = vec![Some("InternalFailure".to_owned()); sent];
                }
                codes.resize(sent, None);
                Ok(codes)
            })
            .await
        }
    }
}

/// The handler: publishes the batch's events and reports the first record
/// that failed (`ReportBatchItemFailures`), so that Lambda retries from it.
pub async fn handle_event(
    sink: &Sink,
    event: lambda_runtime::LambdaEvent<Event>,
) -> std::result::Result<DynamoDbEventResponse, lambda_runtime::Diagnostic> {
    let changes: Vec<Change> = event.payload.records.iter().filter_map(change_of).collect();
    let report = publish(sink, &changes).await;
    let mut response = DynamoDbEventResponse::default();
    if let Some((sequence, error)) = report.failure {
        tracing::error!(sequence_number = %sequence, code = error.code(), error = ?error, "events stopped at a record; it is retried from there");
        let mut item = DynamoDbBatchItemFailure::default();
        item.item_identifier = Some(sequence);
        response.batch_item_failures.push(item);
    }
    tracing::info!(
        records = changes.len(),
        published = report.published,
        "events batch"
    );
    Ok(response)
}

/// The EventBridge sink of a deployment: its bus (`EVENT_BUS_NAME`).
pub fn eventbridge_sink(
    repo: &crate::Repository,
    sdk: &aws_config::SdkConfig,
    config: &crate::Config,
) -> Sink {
    Sink::EventBridge {
        client: repo.events_client(sdk),
        bus: config.event_bus.clone(),
    }
}

/// The whole `main` of the `publish-events` function.
pub async fn serve() -> std::result::Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let (config, sdk, repo) = match crate::mirror::init().await {
        Ok(started) => started,
        Err(e) => {
            eprintln!("publish-events: {e}");
            std::process::exit(1);
        }
    };
    let sink = eventbridge_sink(&repo, &sdk, &config);
    let sink = &sink;
    lambda_runtime::run(lambda_runtime::service_fn(move |event| {
        handle_event(sink, event)
    }))
    .await
}

/// A Lambda DynamoDB stream record as a [`Change`]; `None` when it is not a
/// row of this table's shape.
pub fn change_of(record: &EventRecord) -> Option<Change> {
    let image = |item| match serde_json::to_value(item).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    };
    Change::from_images(
        &record.event_name,
        &image(&record.change.keys)?,
        image(&record.change.old_image),
        image(&record.change.new_image),
        record.change.sequence_number.clone()?,
    )
}
