//! The `mirror-seed-layout` function: keeps the library's layout (its S3
//! keys, SPEC 3.2) equal to the rows, driven by the table's stream.
//!
//! Lambda's event source mapping hands it batches of stream records, in
//! order per item; locally [`poller`] reads the emulator's stream and runs
//! the same handler. The handler takes only the *keys* of the records (and,
//! for a REMOVE, the sha256 the row held): it re-reads each row, so it is
//! idempotent and indifferent to duplicate or phantom records (design
//! §1a, §4.3). The work itself is [`Repository::mirror`].

#[cfg(feature = "poller")]
pub mod poller;

use aws_lambda_events::dynamodb::{Event, EventRecord};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde_json::Value;
use time::OffsetDateTime;

use crate::config::{Config, ConfigError};
use crate::repository::Repository;
use artifact_store::change_events::{removed_sha256, row_keys};

pub use crate::limits::META_MIRRORED_FOR;
pub use crate::repository::{CopyPlan, MirrorFailure, MirrorRecord, MirrorReport};

/// A stream record's keys, from a Lambda DynamoDB stream event; `None` when
/// it has no string `pk`/`sk` (not a row of this table's shape).
pub fn mirror_record(record: &EventRecord) -> Option<MirrorRecord> {
    let image = |item| match serde_json::to_value(item).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    };
    let (name, sort_key) = row_keys(&image(&record.change.keys)?)?;
    let (removed_sha256, removed_at) = if record.event_name == "REMOVE" {
        let old = image(&record.change.old_image)?;
        // Absent from the event, the time decodes as the epoch: unknown.
        let at = record.change.approximate_creation_date_time.timestamp();
        let at = (at > 0)
            .then(|| OffsetDateTime::from_unix_timestamp(at).ok())
            .flatten();
        (removed_sha256(&old), at)
    } else {
        (None, None)
    };
    Some(MirrorRecord {
        name,
        sort_key,
        removed_sha256,
        removed_at,
        sequence_number: record.change.sequence_number.clone()?,
    })
}

/// The handler: mirrors the batch's rows, and reports the first record that
/// failed (`ReportBatchItemFailures`), so that Lambda retries from it on and
/// the records before it are not done again.
pub async fn handle_event(
    repo: &Repository,
    enabled: bool,
    event: lambda_runtime::LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, lambda_runtime::Diagnostic> {
    let records: Vec<MirrorRecord> = event
        .payload
        .records
        .iter()
        .filter_map(|record| {
            let parsed = mirror_record(record);
            if parsed.is_none() {
                tracing::warn!(event_id = %record.event_id, "stream record without pk/sk or sequence number; skipped");
            }
            parsed
        })
        .collect();
    let mut response = DynamoDbEventResponse::default();
    if let Some(failure) = handle_records(repo, enabled, &records).await.failure {
        let mut item = DynamoDbBatchItemFailure::default();
        item.item_identifier = Some(failure.sequence_number);
        response.batch_item_failures.push(item);
    }
    Ok(response)
}

/// The handler's work on the records' keys, shared with the local poller:
/// off (`SEED_LAYOUT_MIRROR=off`), nothing; on, [`Repository::mirror`],
/// logged.
pub async fn handle_records(
    repo: &Repository,
    enabled: bool,
    records: &[MirrorRecord],
) -> MirrorReport {
    if !enabled {
        return MirrorReport {
            handled: records.len(),
            ..MirrorReport::default()
        };
    }
    let report = repo.mirror(records).await;
    // The local poller asks every 50 ms: empty batches are not news.
    if records.is_empty() {
        return report;
    }
    tracing::info!(
        records = records.len(),
        handled = report.handled,
        copied = report.copied,
        deleted = report.deleted,
        "mirror batch"
    );
    if let Some(failure) = &report.failure {
        tracing::error!(sequence_number = %failure.sequence_number, code = failure.error.code(), error = ?failure.error, "mirror stopped at a record; it is retried from there");
    }
    report
}

/// Configuration, SDK configuration and repository, once per process.
pub async fn init() -> Result<(Config, aws_config::SdkConfig, Repository), ConfigError> {
    let config = Config::from_env()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let repo = Repository::new(&sdk, &config);
    Ok((config, sdk, repo))
}

/// The whole `main` of the `mirror-seed-layout` function.
pub async fn serve() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let (config, _, repo) = match init().await {
        Ok(started) => started,
        Err(e) => {
            eprintln!("mirror-seed-layout: {e}");
            std::process::exit(1);
        }
    };
    let (repo, enabled) = (&repo, config.seed_layout_mirror);
    lambda_runtime::run(lambda_runtime::service_fn(move |event| {
        handle_event(repo, enabled, event)
    }))
    .await
}
