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
//! | a rollout item is written at a new step / completed / aborted | `Rollout Step` / `Rollout Completed` / `Rollout Aborted` |
//! | LATEST is removed (a purge removes it first) | `Artifact Purged` |
//!
//! Every detail carries `id` — the same for every delivery of one change,
//! different for any two changes — and the stream's `sequence`, so a
//! consumer drops duplicates by `id`. Unlike the mirror, the events take
//! what the record's images say (they describe the change, not the row's
//! state now), so the same record always gives the same events.
//! Locally the same handler runs over the emulator's stream and puts the
//! events on the emulator's EventBridge, or into a file (`EVENTS_SINK`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::error::Error;
use crate::layout::attr;
use crate::names::Version;

/// The `source` of every event.
pub const SOURCE: &str = "versioned-artifacts";

/// PutEvents takes at most 10 entries per call.
const ENTRIES_PER_CALL: usize = 10;

/// What a stream record says, in DynamoDB JSON (`{"sha256": {"S": …}}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: ChangeKind,
    pub pk: String,
    pub sk: String,
    pub old: Option<Map<String, Value>>,
    pub new: Option<Map<String, Value>>,
    pub sequence: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Insert,
    Modify,
    Remove,
}

impl ChangeKind {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "INSERT" => Some(Self::Insert),
            "MODIFY" => Some(Self::Modify),
            "REMOVE" => Some(Self::Remove),
            _ => None,
        }
    }
}

impl Change {
    /// From a Lambda DynamoDB stream record; `None` when it is not a row of
    /// this table's shape.
    pub fn from_event_record(record: &EventRecord) -> Option<Self> {
        let image = |item| match serde_json::to_value(item).ok()? {
            Value::Object(map) if !map.is_empty() => Some(map),
            _ => None,
        };
        let keys = image(&record.change.keys)?;
        Some(Self {
            kind: ChangeKind::parse(&record.event_name)?,
            pk: s(&keys, attr::PK)?.to_owned(),
            sk: s(&keys, attr::SK)?.to_owned(),
            old: image(&record.change.old_image),
            new: image(&record.change.new_image),
            sequence: record.change.sequence_number.clone()?,
        })
    }
}

/// One event to put.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeEvent {
    #[serde(rename = "detail-type")]
    pub detail_type: &'static str,
    pub source: &'static str,
    pub detail: Value,
}

impl ChangeEvent {
    /// The deduplication id (`detail.id`).
    pub fn id(&self) -> &str {
        self.detail["id"].as_str().unwrap_or_default()
    }
}

fn s<'a>(item: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    item.get(name)?.get("S")?.as_str()
}

fn n(item: &Map<String, Value>, name: &str) -> Option<u64> {
    item.get(name)?.get("N")?.as_str()?.parse().ok()
}

fn deleted(item: &Map<String, Value>) -> bool {
    item.get(attr::IS_DELETED)
        .and_then(|v| v.get("BOOL"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// `"000002"` → `"2"`, as the API spells versions.
fn version(sort_key: Option<&str>) -> Value {
    sort_key
        .and_then(|v| Version::from_sort_key(v).ok())
        .map_or(Value::Null, |v| Value::String(v.to_string()))
}

/// The events of one change (none for bookkeeping: counters, references,
/// uploads in progress, fences, registries, pauses).
pub fn events_of(change: &Change) -> Vec<ChangeEvent> {
    let event = |detail_type, id: String, mut detail: Value| {
        detail["id"] = Value::String(id);
        detail["sequence"] = Value::String(change.sequence.clone());
        ChangeEvent {
            detail_type,
            source: SOURCE,
            detail,
        }
    };
    if let Some(rest) = change.pk.strip_prefix("__") {
        if let Some(name) = rest.strip_suffix("-history") {
            return alias_changed(name, change)
                .map(|(id, d)| event("Alias Changed", id, d))
                .into_iter()
                .collect();
        }
        if let Some(name) = rest.strip_suffix("-rollout") {
            return rollout_event(name, change)
                .map(|(t, id, d)| event(t, id, d))
                .into_iter()
                .collect();
        }
        return Vec::new();
    }
    let name = change.pk.as_str();
    let sk = change.sk.as_str();
    let artifact = |row: &Map<String, Value>| {
        json!({
            "name": name,
            "version": version(Some(sk)),
            "sha256": s(row, attr::SHA256),
            "size": n(row, attr::SIZE),
            "actor": s(row, attr::CREATED_BY),
            "update_at": s(row, attr::UPDATE_AT),
        })
    };
    match (change.kind, &change.old, &change.new) {
        (ChangeKind::Remove, Some(old), _) if sk == "LATEST" => {
            let epoch = s(old, attr::EPOCH).unwrap_or(&change.sequence);
            vec![event(
                "Artifact Purged",
                format!("{name}/purged/{epoch}"),
                json!({"name": name}),
            )]
        }
        (_, old, Some(new)) if sk == "LATEST" => {
            let upload = s(new, attr::UPLOAD_ID);
            let before = old.as_ref().and_then(|o| s(o, attr::UPLOAD_ID));
            let sha = s(new, attr::SHA256);
            let sha_before = old.as_ref().and_then(|o| s(o, attr::SHA256));
            let committed = match upload {
                Some(u) => (upload != before).then(|| u.to_owned()),
                // The library's commits carry no upload id.
                None => (sha != sha_before).then(|| {
                    s(new, attr::UPDATE_AT)
                        .unwrap_or(&change.sequence)
                        .to_owned()
                }),
            };
            committed
                .map(|u| {
                    let mut detail = artifact(new);
                    detail["upload_id"] = upload.map_or(Value::Null, |u| Value::String(u.into()));
                    detail["changed"] = Value::Bool(sha != sha_before);
                    event("Upload Committed", format!("{name}/LATEST/{u}"), detail)
                })
                .into_iter()
                .collect()
        }
        (_, None, Some(new)) if !deleted(new) && sk.len() == 6 => {
            let at = s(new, attr::UPDATE_AT).unwrap_or_default();
            vec![event(
                "Version Published",
                format!("{name}/{sk}/published/{at}"),
                artifact(new),
            )]
        }
        (ChangeKind::Modify, Some(old), Some(new))
            if !deleted(old) && deleted(new) && sk.len() == 6 =>
        {
            let at = s(new, attr::DELETED_AT)
                .or(s(new, attr::UPDATE_AT))
                .unwrap_or_default();
            vec![event(
                "Version Deleted",
                format!("{name}/{sk}/deleted/{at}"),
                artifact(new),
            )]
        }
        _ => Vec::new(),
    }
}

fn targets(item: &Map<String, Value>) -> Value {
    json!({
        "version": version(s(item, attr::VERSION)),
        "secondary_version": version(s(item, attr::SECONDARY_VERSION)),
        "secondary_version_weight": n(item, attr::SECONDARY_VERSION_WEIGHT),
    })
}

fn alias_changed(name: &str, change: &Change) -> Option<(String, Value)> {
    if change.kind != ChangeKind::Insert {
        return None;
    }
    let entry = change.new.as_ref()?;
    let alias = s(entry, attr::ALIAS)?;
    let revision = n(entry, attr::REVISION)?;
    let at = s(entry, attr::UPDATE_AT).unwrap_or_default();
    let previous = match entry.get(attr::PREVIOUS).and_then(|p| p.get("M")) {
        Some(Value::Object(m)) => targets(m),
        _ => Value::Null,
    };
    let after = if s(entry, attr::VERSION).is_some() {
        targets(entry)
    } else {
        Value::Null
    };
    Some((
        format!("{name}/{alias}/{revision}/{at}"),
        json!({
            "name": name,
            "alias": alias,
            "revision": revision,
            "action": s(entry, attr::ACTION),
            "actor": s(entry, attr::ACTOR),
            "message": s(entry, attr::MESSAGE),
            "after": after,
            "previous": previous,
            "at": at,
        }),
    ))
}

fn rollout_event(name: &str, change: &Change) -> Option<(&'static str, String, Value)> {
    let new = change.new.as_ref()?;
    let state = s(new, attr::STATE)?;
    let step = n(new, attr::STEP)?;
    let old = change.old.as_ref();
    let old_state = old.and_then(|o| s(o, attr::STATE));
    let old_step = old.and_then(|o| n(o, attr::STEP));
    let live = |st: Option<&str>| matches!(st, Some("active" | "paused"));
    let detail_type = match state {
        "completed" if old.is_none() || live(old_state) => "Rollout Completed",
        "aborted" if live(old_state) => "Rollout Aborted",
        "active" | "paused" if old.is_none() || old_step != Some(step) => "Rollout Step",
        _ => return None,
    };
    let rollout = s(new, attr::ROLLOUT_ID)?;
    let alias = s(new, attr::ALIAS)?;
    let steps: Vec<Value> = s(new, attr::STEPS)
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    let weight = steps
        .get(step as usize)
        .and_then(|st| st["weight"].as_u64());
    let from = match new.get(attr::FROM).and_then(|f| f.get("M")) {
        Some(Value::Object(m)) => version(s(m, attr::VERSION)),
        _ => Value::Null,
    };
    let what = match detail_type {
        "Rollout Step" => format!("step{}", step + 1),
        _ => state.to_owned(),
    };
    Some((
        detail_type,
        format!("{name}/{alias}/rollout/{rollout}/{what}"),
        json!({
            "name": name,
            "alias": alias,
            "rollout": rollout,
            "version": version(s(new, attr::VERSION)),
            "from_version": from,
            "state": state,
            "step": step + 1,
            "steps": steps.len(),
            "weight": weight,
            "reason": s(new, attr::REASON),
            "revision": n(new, attr::REVISION),
            "at": s(new, attr::UPDATE_AT),
        }),
    ))
}

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

/// Puts the events of `changes` in their order, ten per call; stops at the
/// first change one of whose events was refused (it and those after it are
/// retried; events of it already put are put again, with the same ids).
pub async fn publish(sink: &Sink, changes: &[Change]) -> PublishReport {
    let mut report = PublishReport::default();
    // Each event with the index of its change.
    let events: Vec<(usize, ChangeEvent)> = changes
        .iter()
        .enumerate()
        .flat_map(|(i, c)| events_of(c).into_iter().map(move |e| (i, e)))
        .collect();
    for batch in events.chunks(ENTRIES_PER_CALL) {
        if let Err((failed, error)) = put(sink, batch).await {
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

/// Puts one batch; on failure, the position of the first event refused.
async fn put(
    sink: &Sink,
    batch: &[(usize, ChangeEvent)],
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
            let out = client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| (0, crate::sdk_error::upstream("PutEvents", e)))?;
            match out
                .entries()
                .iter()
                .position(|entry| entry.error_code().is_some())
            {
                Some(i) if out.failed_entry_count() > 0 => Err((
                    i,
                    Error::UpstreamError {
                        operation: "PutEvents",
                        source: format!(
                            "entry refused: {}",
                            out.entries()[i].error_code().unwrap_or_default()
                        )
                        .into(),
                    },
                )),
                _ if out.failed_entry_count() > 0 => Err((
                    0,
                    Error::UpstreamError {
                        operation: "PutEvents",
                        source: "entries refused".into(),
                    },
                )),
                _ => Ok(()),
            }
        }
    }
}

/// The handler: publishes the batch's events and reports the first record
/// that failed (`ReportBatchItemFailures`), so that Lambda retries from it.
pub async fn handle_event(
    sink: &Sink,
    event: lambda_runtime::LambdaEvent<Event>,
) -> std::result::Result<DynamoDbEventResponse, lambda_runtime::Diagnostic> {
    let changes: Vec<Change> = event
        .payload
        .records
        .iter()
        .filter_map(Change::from_event_record)
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn change(
        kind: ChangeKind,
        pk: &str,
        sk: &str,
        old: Option<Value>,
        new: Option<Value>,
    ) -> Change {
        let map = |v: Option<Value>| v.and_then(|v| v.as_object().cloned());
        Change {
            kind,
            pk: pk.into(),
            sk: sk.into(),
            old: map(old),
            new: map(new),
            sequence: "42".into(),
        }
    }

    #[test]
    fn bookkeeping_changes_give_no_event_and_a_publish_gives_one() {
        let row = json!({"sha256": {"S": "ab"}, "is_deleted": {"BOOL": false}, "update_at": {"S": "t"}, "size": {"N": "3"}});
        let published = events_of(&change(
            ChangeKind::Insert,
            "app",
            "000002",
            None,
            Some(row.clone()),
        ));
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].detail_type, "Version Published");
        assert_eq!(published[0].detail["version"], "2");
        assert_eq!(published[0].detail["size"], 3);
        // The alias reference added to the row: nothing.
        let mut referenced = row.clone();
        referenced["aliases"] = json!({"SS": ["prod"]});
        assert!(
            events_of(&change(
                ChangeKind::Modify,
                "app",
                "000002",
                Some(row.clone()),
                Some(referenced)
            ))
            .is_empty()
        );
        let mut gone = row.clone();
        gone["is_deleted"] = json!({"BOOL": true});
        let deleted = events_of(&change(
            ChangeKind::Modify,
            "app",
            "000002",
            Some(row),
            Some(gone),
        ));
        assert_eq!(deleted[0].detail_type, "Version Deleted");
        assert!(
            events_of(&change(
                ChangeKind::Insert,
                "__rollouts",
                "app/prod",
                None,
                Some(json!({}))
            ))
            .is_empty()
        );
        assert!(
            events_of(&change(
                ChangeKind::Insert,
                "__app-upload",
                "u",
                None,
                Some(json!({}))
            ))
            .is_empty()
        );
    }

    #[test]
    fn a_publish_touching_latest_is_no_upload_but_a_new_upload_is() {
        let latest =
            json!({"sha256": {"S": "ab"}, "upload_id": {"S": "u1"}, "last_version": {"N": "1"}});
        let mut published = latest.clone();
        published["last_version"] = json!({"N": "2"});
        assert!(
            events_of(&change(
                ChangeKind::Modify,
                "app",
                "LATEST",
                Some(latest.clone()),
                Some(published)
            ))
            .is_empty()
        );
        let mut next = latest.clone();
        next["upload_id"] = json!({"S": "u2"});
        next["sha256"] = json!({"S": "cd"});
        let committed = events_of(&change(
            ChangeKind::Modify,
            "app",
            "LATEST",
            Some(latest.clone()),
            Some(next),
        ));
        assert_eq!(committed[0].detail_type, "Upload Committed");
        assert_eq!(committed[0].id(), "app/LATEST/u2");
        assert_eq!(committed[0].detail["changed"], true);
        let purged = events_of(&change(
            ChangeKind::Remove,
            "app",
            "LATEST",
            Some(latest),
            None,
        ));
        assert_eq!(purged[0].detail_type, "Artifact Purged");
    }

    #[test]
    fn rollout_items_give_steps_and_their_end_and_history_entries_alias_changes() {
        let item = |state: &str, step: u64| {
            json!({"rollout_id": {"S": "r1"}, "alias": {"S": "prod"}, "version": {"S": "000002"},
                   "state": {"S": state}, "step": {"N": step.to_string()},
                   "steps": {"S": "[{\"weight\":10,\"hold_secs\":60},{\"weight\":100}]"},
                   "from": {"M": {"version": {"S": "000001"}}}, "revision": {"N": "3"}})
        };
        let start = events_of(&change(
            ChangeKind::Insert,
            "__app-rollout",
            "prod/r1",
            None,
            Some(item("active", 0)),
        ));
        assert_eq!(start[0].detail_type, "Rollout Step");
        assert_eq!(start[0].detail["weight"], 10);
        assert_eq!(start[0].detail["from_version"], "1");
        let paused = events_of(&change(
            ChangeKind::Modify,
            "__app-rollout",
            "prod/r1",
            Some(item("active", 0)),
            Some(item("paused", 0)),
        ));
        assert!(paused.is_empty());
        let aborted = events_of(&change(
            ChangeKind::Modify,
            "__app-rollout",
            "prod/r1",
            Some(item("active", 0)),
            Some(item("aborted", 0)),
        ));
        assert_eq!(aborted[0].detail_type, "Rollout Aborted");
        assert_eq!(aborted[0].id(), "app/prod/rollout/r1/aborted");
        let entry = json!({"alias": {"S": "prod"}, "revision": {"N": "2"}, "action": {"S": "move"},
                           "actor": {"S": "ci"}, "update_at": {"S": "t"}, "version": {"S": "000002"},
                           "previous": {"M": {"version": {"S": "000001"}}}});
        let changed = events_of(&change(
            ChangeKind::Insert,
            "__app-history",
            "prod/000000000002",
            None,
            Some(entry),
        ));
        assert_eq!(changed[0].detail_type, "Alias Changed");
        assert_eq!(changed[0].detail["after"]["version"], "2");
        assert_eq!(changed[0].detail["previous"]["version"], "1");
        assert_eq!(changed[0].detail["sequence"], "42");
    }
}
