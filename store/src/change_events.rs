//! Stream records of the table as the events of SPEC 10.2: which row
//! change is which event (`Upload Committed`, `Version Published`, …) and
//! what its detail says, read from the record's images in DynamoDB JSON.
//! Pure: the edge's `publish-events` handler (`shared::events`) reads the
//! stream and puts these on EventBridge; the table's attribute names stay
//! here.

use serde::Serialize;
use serde_json::{Map, Value, json};

use aws_sdk_dynamodb::types::{AttributeValue, Update};

use crate::error::Result;
use crate::layout::{EVENT_LOG_SK, attr, events_pk, format_update_at, now};
use crate::names::Version;
use crate::rows::{Item, key, nv, sv};
use crate::tx::TxItem;

/// The `source` of every event.
pub const SOURCE: &str = "versioned-artifacts";

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
    /// From a stream record's parts in DynamoDB JSON (`keys`, the images,
    /// its sequence number); `None` when it is not a row of this table's
    /// shape (no string `pk`/`sk`, an unknown event name).
    pub fn from_images(
        event_name: &str,
        keys: &Map<String, Value>,
        old: Option<Map<String, Value>>,
        new: Option<Map<String, Value>>,
        sequence: String,
    ) -> Option<Self> {
        let (pk, sk) = row_keys(keys)?;
        Some(Self {
            kind: ChangeKind::parse(event_name)?,
            pk,
            sk,
            old: old.filter(|m| !m.is_empty()),
            new: new.filter(|m| !m.is_empty()),
            sequence,
        })
    }
}

/// The row's `pk` and `sk` from a stream record's keys in DynamoDB JSON.
pub fn row_keys(keys: &Map<String, Value>) -> Option<(String, String)> {
    Some((s(keys, attr::PK)?.to_owned(), s(keys, attr::SK)?.to_owned()))
}

/// The sha256 a removed row held, from its old image in DynamoDB JSON.
pub fn removed_sha256(old: &Map<String, Value>) -> Option<String> {
    s(old, attr::SHA256).map(str::to_owned)
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

/// Every detail-type an event may have.
pub const DETAIL_TYPES: [&str; 8] = [
    "Upload Committed",
    "Version Published",
    "Version Deleted",
    "Alias Changed",
    "Rollout Step",
    "Rollout Completed",
    "Rollout Aborted",
    "Artifact Purged",
];

/// The events of one stream record: a record of an artifact's event log
/// gives the events its change logged; a record of a row whose change was
/// logged gives none (its events came, in order, from the log); any other
/// (the library's writes, which know no log) gives the events its images
/// tell ([`row_events`]).
pub fn events_of(change: &Change) -> Vec<ChangeEvent> {
    if let Some(logged) = logged_events(change) {
        return logged;
    }
    if written_with_log(change) {
        return Vec::new();
    }
    row_events(change)
}

/// The events an event log record carries; `None` when the record is not
/// of an event log.
fn logged_events(change: &Change) -> Option<Vec<ChangeEvent>> {
    let name = change.pk.strip_prefix("__")?.strip_suffix("-events")?;
    name.parse::<crate::names::ArtifactName>().ok()?;
    let text = match (&change.new, change.sk == EVENT_LOG_SK) {
        (Some(new), true) => s(new, attr::EVENTS),
        // Removed (a purge) or not the log item: nothing.
        _ => None,
    };
    let logged: Vec<Value> = text
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    let mut events: Vec<ChangeEvent> = logged
        .into_iter()
        .filter_map(|entry| {
            let detail_type = DETAIL_TYPES
                .into_iter()
                .find(|t| entry["detail-type"].as_str() == Some(t))?;
            let mut detail = entry.get("detail").filter(|d| d.is_object())?.clone();
            detail["sequence"] = Value::String(change.sequence.clone());
            detail["seq"] = change
                .new
                .as_ref()
                .and_then(|new| n(new, attr::SEQ))
                .map_or(Value::Null, Value::from);
            Some(ChangeEvent {
                detail_type,
                source: SOURCE,
                detail,
            })
        })
        .collect();
    // One change may give several events (a commit that publishes, a
    // rollout's step and its alias change), all of its `seq`: their count
    // and each one's place let a consumer see one of them missing too.
    let count = events.len();
    for (i, event) in events.iter_mut().enumerate() {
        event.detail["seq_index"] = Value::from(i);
        event.detail["seq_events"] = Value::from(count);
    }
    Some(events)
}

/// Whether `log` (an artifact's event log item, as read) last logged the
/// event whose id is `id`: no change was logged after it.
pub fn last_logged(log: Option<&Item>, id: &str) -> bool {
    let Some(AttributeValue::S(text)) = log.and_then(|l| l.get(attr::EVENTS)) else {
        return false;
    };
    serde_json::from_str::<Vec<Value>>(text).is_ok_and(|logged| {
        logged
            .iter()
            .any(|entry| entry["detail"]["id"].as_str() == Some(id))
    })
}

/// Whether the record's change was written with its events in the event
/// log: the row carries the id of an event it logged, another than before
/// (a later write that logged nothing leaves the mark as it was; the
/// library's rewrite of a row drops it).
///
/// A removal is logged when the purge that removes the row marked it
/// first (the library's removals, unmarked, give their own events).
fn written_with_log(change: &Change) -> bool {
    let mark = |image: &Option<Map<String, Value>>| {
        image
            .as_ref()
            .and_then(|i| s(i, attr::LOGGED_EVENT))
            .map(str::to_owned)
    };
    if change.kind == ChangeKind::Remove {
        let purged = purge_mark_prefix(&change.pk);
        return mark(&change.old).is_some_and(|m| m.starts_with(&purged));
    }
    let new = mark(&change.new);
    new.is_some() && new != mark(&change.old)
}

/// The events a change this service is about to write gives: the events
/// the stream records of its row would tell, `old` and `new` being the row
/// as read and as written (`None`: absent; the keys are theirs). For the
/// event log.
pub fn events_of_write(old: Option<&Item>, new: Option<&Item>) -> Vec<ChangeEvent> {
    let kind = match (old, new) {
        (None, Some(_)) => ChangeKind::Insert,
        (Some(_), Some(_)) => ChangeKind::Modify,
        (_, None) => ChangeKind::Remove,
    };
    let (old, new) = (old.map(image), new.map(image));
    let Some((pk, sk)) = new.as_ref().or(old.as_ref()).and_then(row_keys) else {
        return Vec::new();
    };
    row_events(&Change {
        kind,
        pk,
        sk,
        old,
        new,
        sequence: String::new(),
    })
}

/// The `Artifact Purged` event of purge `purge_id` of `name`, as the purge
/// logs it.
pub fn purged_event(name: &crate::names::ArtifactName, purge_id: &str) -> ChangeEvent {
    ChangeEvent {
        detail_type: "Artifact Purged",
        source: SOURCE,
        detail: json!({"name": name.as_str(), "id": format!("{}{purge_id}", purge_mark_prefix(name.as_str()))}),
    }
}

/// What the ids of an artifact's purges start with (the mark a purge puts
/// on LATEST before deleting it).
fn purge_mark_prefix(name: &str) -> String {
    format!("{name}/purged/")
}

/// Whether `mark` (a row's `logged_event`) is a purge's of `name`.
pub fn is_purge_mark(name: &crate::names::ArtifactName, mark: &str) -> bool {
    mark.starts_with(&purge_mark_prefix(name.as_str()))
}

/// Marks a row about to be written with the change's events as logged
/// (see [`events_of`]): its first event's id. Nothing without events.
pub fn mark_logged(item: &mut Item, events: &[ChangeEvent]) {
    if let Some(first) = events.first() {
        item.insert(
            attr::LOGGED_EVENT.into(),
            AttributeValue::S(first.id().to_owned()),
        );
    }
}

/// The transaction member appending the events of one change to the event
/// log of `name` (UpdateItem, no condition: every change of the artifact
/// updates the one item, so the stream gives their records in the order
/// the changes were written); `None` without events.
pub fn log_member(
    table: &str,
    name: &crate::names::ArtifactName,
    events: &[ChangeEvent],
) -> Result<Option<TxItem>> {
    if events.is_empty() {
        return Ok(None);
    }
    let logged: Vec<Value> = events
        .iter()
        .map(|e| json!({"detail-type": e.detail_type, "detail": e.detail}))
        .collect();
    let update = Update::builder()
        .table_name(table)
        .set_key(Some(key(events_pk(name), EVENT_LOG_SK)))
        .update_expression("SET #events = :events, #update_at = :now ADD #seq :one")
        .expression_attribute_names("#events", attr::EVENTS)
        .expression_attribute_names("#update_at", attr::UPDATE_AT)
        .expression_attribute_names("#seq", attr::SEQ)
        .expression_attribute_values(":events", sv(Value::Array(logged).to_string()))
        .expression_attribute_values(":now", sv(format_update_at(now())))
        .expression_attribute_values(":one", nv(1))
        .build()
        .map_err(crate::sdk_error::invalid_sdk_input)?;
    Ok(Some(TxItem::builder().update(update).build()))
}

/// An item in DynamoDB JSON (`{"sha256": {"S": …}}`), as a stream record's
/// image spells it.
pub fn image(item: &Item) -> Map<String, Value> {
    item.iter()
        .map(|(name, value)| (name.clone(), attribute_json(value)))
        .collect()
}

fn attribute_json(value: &AttributeValue) -> Value {
    use base64::Engine;
    let b64 = |b: &aws_sdk_dynamodb::primitives::Blob| {
        base64::engine::general_purpose::STANDARD.encode(b.as_ref())
    };
    match value {
        AttributeValue::S(v) => json!({"S": v}),
        AttributeValue::N(v) => json!({"N": v}),
        AttributeValue::Bool(v) => json!({"BOOL": v}),
        AttributeValue::Null(v) => json!({"NULL": v}),
        AttributeValue::Ss(v) => json!({"SS": v}),
        AttributeValue::Ns(v) => json!({"NS": v}),
        AttributeValue::B(v) => json!({"B": b64(v)}),
        AttributeValue::Bs(v) => json!({"BS": v.iter().map(b64).collect::<Vec<_>>()}),
        AttributeValue::M(v) => json!({"M": image(v)}),
        AttributeValue::L(v) => json!({"L": v.iter().map(attribute_json).collect::<Vec<_>>()}),
        _ => Value::Null,
    }
}

/// The events of one row change, from its images (none for bookkeeping:
/// counters, references, uploads in progress, fences, registries, pauses).
pub fn row_events(change: &Change) -> Vec<ChangeEvent> {
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
        // An artifact's own partitions only: `__meta/{key}={value}` (a
        // caller's metadata, any value) may end in `-alias` too, and no
        // artifact name holds a `/` or `=`.
        let artifact = |suffix| {
            rest.strip_suffix(suffix)
                .filter(|name| name.parse::<crate::names::ArtifactName>().is_ok())
        };
        if let Some(name) = artifact("-history") {
            return alias_changed(name, change)
                .map(|(id, d)| event("Alias Changed", id, d))
                .into_iter()
                .collect();
        }
        if let Some(name) = artifact("-alias") {
            return library_alias_changed(name, change)
                .map(|(id, d)| event("Alias Changed", id, d))
                .into_iter()
                .collect();
        }
        if let Some(name) = artifact("-rollout") {
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
                // The library's commits carry no upload id, and its
                // `update_at` holds whole seconds: two commits within one
                // second differ by their digest, and by their record's
                // sequence number (A, B, then A again), which every
                // delivery of one record keeps.
                None => (sha != sha_before).then(|| {
                    let at = s(new, attr::UPDATE_AT).unwrap_or(&change.sequence);
                    format!("{at}/{}/{}", sha.unwrap_or_default(), change.sequence)
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

/// A change of an alias row the library wrote (it keeps no history: its
/// rows carry no revision), as the `Alias Changed` its history entry would
/// have said: revision 0, no actor. This service's own writes of alias rows
/// carry their revision and are told by their history entries; so is its
/// delete of any alias row, and a delete by the library, which the removed
/// row alone cannot tell from this service's, gives no event.
fn library_alias_changed(name: &str, change: &Change) -> Option<(String, Value)> {
    let new = change.new.as_ref()?;
    // Every alias row names its version.
    s(new, attr::VERSION)?;
    if n(new, attr::REVISION).is_some_and(|r| r > 0) {
        return None;
    }
    let after = targets(new);
    let previous = change.old.as_ref().map(targets);
    // A write that changed no target (a status refreshed on the row).
    if previous.as_ref() == Some(&after) {
        return None;
    }
    let at = s(new, attr::UPDATE_AT).unwrap_or(&change.sequence);
    // Its `update_at` holds whole seconds: two moves within one second
    // differ by their targets.
    let to = [
        attr::VERSION,
        attr::SECONDARY_VERSION,
        attr::SECONDARY_VERSION_WEIGHT,
    ]
    .map(|a| {
        s(new, a)
            .map(str::to_owned)
            .or(n(new, a).map(|w| w.to_string()))
            .unwrap_or_default()
    })
    .join("-");
    Some((
        format!("{name}/{}/library/{at}/{to}/{}", change.sk, change.sequence),
        json!({
            "name": name,
            "alias": change.sk,
            "revision": 0,
            "action": if previous.is_some() { "move" } else { "create" },
            "actor": Value::Null,
            "message": Value::Null,
            "after": after,
            "previous": previous.unwrap_or(Value::Null),
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
    fn a_logged_change_is_told_by_its_log_record_alone_and_the_librarys_by_its_row() {
        let row = json!({"pk": {"S": "app"}, "sk": {"S": "000002"}, "sha256": {"S": "ab"}, "is_deleted": {"BOOL": false}, "update_at": {"S": "t"}});
        let as_item = |v: &Value| -> Item {
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let value = match (v.get("S"), v.get("BOOL")) {
                        (Some(s), _) => AttributeValue::S(s.as_str().unwrap().into()),
                        (_, Some(b)) => AttributeValue::Bool(b.as_bool().unwrap()),
                        _ => unreachable!("strings and booleans only here"),
                    };
                    (k.clone(), value)
                })
                .collect()
        };
        // Written by this service: the events computed at write time, the
        // row marked.
        let mut written = as_item(&row);
        let events = events_of_write(None, Some(&written));
        mark_logged(&mut written, &events);
        assert_eq!(events.len(), 1);
        let marked = Value::Object(image(&written));
        assert!(
            events_of(&change(
                ChangeKind::Insert,
                "app",
                "000002",
                None,
                Some(marked)
            ))
            .is_empty(),
            "the row's own record gives nothing"
        );
        // The log's record gives them, with the record's sequence.
        let logged: Vec<Value> = events
            .iter()
            .map(|e| json!({"detail-type": e.detail_type, "detail": e.detail}))
            .collect();
        let log = json!({"events": {"S": Value::Array(logged).to_string()}, "seq": {"N": "7"}});
        let from_log = events_of(&change(
            ChangeKind::Modify,
            "__app-events",
            "log",
            None,
            Some(log.clone()),
        ));
        assert_eq!(from_log.len(), 1);
        assert_eq!(from_log[0].detail_type, "Version Published");
        assert_eq!(from_log[0].id(), events[0].id());
        assert_eq!(from_log[0].detail["sequence"], "42");
        assert_eq!(from_log[0].detail["seq"], 7);
        // Not an artifact's log (a metadata index partition), or removed:
        // nothing.
        assert!(
            events_of(&change(
                ChangeKind::Modify,
                "__meta/k=v-events",
                "log",
                None,
                Some(log)
            ))
            .is_empty()
        );
        assert!(
            events_of(&change(
                ChangeKind::Remove,
                "__app-events",
                "log",
                None,
                None
            ))
            .is_empty()
        );
        // The library's write, unmarked: told by its row.
        assert_eq!(
            events_of(&change(
                ChangeKind::Insert,
                "app",
                "000002",
                None,
                Some(row)
            ))
            .len(),
            1
        );
        // LATEST removed: by this service's purge (marked first), nothing;
        // by the library's, the event.
        let purged = purged_event(&"app".parse().unwrap(), "p1");
        let latest = |mark: Option<&str>| {
            let mut l = json!({"sha256": {"S": "ab"}, "update_at": {"S": "t"}});
            if let Some(m) = mark {
                l["logged_event"] = json!({"S": m});
            }
            Some(l)
        };
        assert!(
            events_of(&change(
                ChangeKind::Remove,
                "app",
                "LATEST",
                latest(Some(purged.id())),
                None
            ))
            .is_empty()
        );
        let by_library = events_of(&change(
            ChangeKind::Remove,
            "app",
            "LATEST",
            latest(Some("app/LATEST/u1")),
            None,
        ));
        assert_eq!(by_library[0].detail_type, "Artifact Purged");
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

    /// Review finding: a commit that publishes logs two events under one
    /// `seq`, so a consumer checking `seq` for gaps could not see one of
    /// the pair missing. Each tells its place and their count.
    #[test]
    fn the_events_of_one_change_tell_their_place_among_its_events() {
        let logged = json!([
            {"detail-type": "Upload Committed", "detail": {"name": "app"}},
            {"detail-type": "Version Published", "detail": {"name": "app"}},
        ]);
        let log = json!({"events": {"S": logged.to_string()}, "seq": {"N": "3"}});
        let events = events_of(&change(
            ChangeKind::Modify,
            "__app-events",
            "log",
            None,
            Some(log),
        ));
        let places: Vec<(Value, Value, Value)> = events
            .iter()
            .map(|e| {
                (
                    e.detail["seq"].clone(),
                    e.detail["seq_index"].clone(),
                    e.detail["seq_events"].clone(),
                )
            })
            .collect();
        assert_eq!(
            places,
            [
                (json!(3), json!(0), json!(2)),
                (json!(3), json!(1), json!(2))
            ]
        );
    }

    /// The library writes `update_at` in whole seconds: two of its
    /// changes within one second are still two ids (a consumer dropping
    /// duplicates by id dropped the second; found by an acceptance tester).
    #[test]
    fn two_library_changes_within_one_second_have_two_ids() {
        let second = "2026-12-07T16:41:34.000000+0000";
        let latest = |sha: &str| json!({"sha256": {"S": sha}, "update_at": {"S": second}});
        let one = events_of(&change(
            ChangeKind::Modify,
            "app",
            "LATEST",
            Some(latest("aa")),
            Some(latest("bb")),
        ));
        let two = events_of(&change(
            ChangeKind::Modify,
            "app",
            "LATEST",
            Some(latest("bb")),
            Some(latest("cc")),
        ));
        assert_eq!((one.len(), two.len()), (1, 1));
        assert_ne!(one[0].id(), two[0].id());
        // A redelivery of one change keeps its id.
        let again = events_of(&change(
            ChangeKind::Modify,
            "app",
            "LATEST",
            Some(latest("aa")),
            Some(latest("bb")),
        ));
        assert_eq!(again[0].id(), one[0].id());
        let alias = |version: &str| json!({"version": {"S": version}, "update_at": {"S": second}});
        let moves: Vec<String> = [("000001", "000002"), ("000002", "000003")]
            .iter()
            .map(|(from, to)| {
                events_of(&change(
                    ChangeKind::Modify,
                    "__app-alias",
                    "prod",
                    Some(alias(from)),
                    Some(alias(to)),
                ))[0]
                    .id()
                    .to_owned()
            })
            .collect();
        assert_ne!(moves[0], moves[1]);
        // Back to where it was within that second (A, B, A): the records'
        // sequence numbers tell the first and the third apart (audit
        // finding: a consumer dropped the third as a duplicate).
        let at = |sequence: &str, from: &str, to: &str| {
            let mut c = change(
                ChangeKind::Modify,
                "app",
                "LATEST",
                Some(latest(from)),
                Some(latest(to)),
            );
            c.sequence = sequence.into();
            events_of(&c)[0].id().to_owned()
        };
        assert_ne!(at("100", "bb", "aa"), at("300", "bb", "aa"));
        assert_eq!(at("100", "bb", "aa"), at("100", "bb", "aa"));
        let back = |sequence: &str| {
            let mut c = change(
                ChangeKind::Modify,
                "__app-alias",
                "prod",
                Some(alias("000002")),
                Some(alias("000001")),
            );
            c.sequence = sequence.into();
            events_of(&c)[0].id().to_owned()
        };
        assert_ne!(back("100"), back("300"));
    }

    /// The library keeps no alias history: its put of an alias row is
    /// told from the row (revision 0), and this service's own writes of
    /// alias rows (with a revision) only by their history entries.
    #[test]
    fn a_library_alias_write_is_an_alias_change_and_ours_is_told_by_its_history() {
        let library = |version: &str| json!({"version": {"S": version}, "update_at": {"S": "2026-12-07T04:00:00.000000+0000"}});
        let created = events_of(&change(
            ChangeKind::Insert,
            "__app-alias",
            "prod",
            None,
            Some(library("000002")),
        ));
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].detail_type, "Alias Changed");
        assert_eq!(created[0].detail["after"]["version"], "2");
        assert_eq!(created[0].detail["revision"], 0);
        assert_eq!(created[0].detail["action"], "create");
        assert_eq!(
            created[0].id(),
            "app/prod/library/2026-12-07T04:00:00.000000+0000/000002--/42"
        );
        let moved = events_of(&change(
            ChangeKind::Modify,
            "__app-alias",
            "prod",
            Some(library("000002")),
            Some(library("000003")),
        ));
        assert_eq!(moved[0].detail["previous"]["version"], "2");
        assert_eq!(moved[0].detail["action"], "move");
        // A status refreshed on the row: no target changed, no event.
        let mut refreshed = library("000002");
        refreshed["version_status"] = json!({"S": "deprecated"});
        assert!(
            events_of(&change(
                ChangeKind::Modify,
                "__app-alias",
                "prod",
                Some(library("000002")),
                Some(refreshed)
            ))
            .is_empty()
        );
        // This service's row (a revision): its history entry tells it.
        let mut ours = library("000003");
        ours["revision"] = json!({"N": "4"});
        assert!(
            events_of(&change(
                ChangeKind::Modify,
                "__app-alias",
                "prod",
                Some(library("000002")),
                Some(ours)
            ))
            .is_empty()
        );
        // A metadata index entry whose value ends like an artifact's
        // partition (`meta.team='ops-alias'`): no event, whatever it holds.
        for pk in [
            "__meta/team=ops-alias",
            "__meta/team=ops-history",
            "__meta/team=ops-rollout",
        ] {
            let mut entry = library("000002");
            entry["revision"] = json!({"N": "1"});
            entry["state"] = json!({"S": "active"});
            entry["alias"] = json!({"S": "prod"});
            assert!(
                events_of(&change(
                    ChangeKind::Insert,
                    pk,
                    "app/000002",
                    None,
                    Some(entry)
                ))
                .is_empty(),
                "{pk}"
            );
        }
        // A row without a version is no alias row.
        assert!(
            events_of(&change(
                ChangeKind::Insert,
                "__app-alias",
                "prod",
                None,
                Some(json!({"update_at": {"S": "t"}}))
            ))
            .is_empty()
        );
        // A removed row: this service's delete or the library's, untold.
        assert!(
            events_of(&change(
                ChangeKind::Remove,
                "__app-alias",
                "prod",
                Some(library("000002")),
                None
            ))
            .is_empty()
        );
    }
}
