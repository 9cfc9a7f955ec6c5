//! The local stand-in for Lambda's DynamoDB event source mapping: reads the
//! table's stream and runs the mirror over it, with the mapping's semantics
//! (records in order; a failed record is retried, from it on, after a
//! backoff; records before it are not redone).
//!
//! Every poll asks for a fresh iterator, `AFTER_SEQUENCE_NUMBER` the last
//! record handled (`TRIM_HORIZON` the first time), then GetRecords once:
//! it never follows `NextShardIterator`, because moto restores a cancelled
//! transaction's table from a deep copy, stream included, and an iterator
//! taken before then returns phantom records and nothing after them
//! (design §1a). Two calls per poll.
//!
//! The emulator's stream has one shard; the poller reads the newest shard
//! (on AWS, Lambda's own mapping reads the stream instead).

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_dynamodbstreams::types::{AttributeValue, OperationType, Record, ShardIteratorType};

use crate::error::{Error, Result};
use crate::mirror::{MirrorRecord, handle_records};
use crate::repository::Repository;
use artifact_store::change_events::{removed_sha256, row_keys};

/// Records asked for per poll (GetRecords' most is 1000).
const RECORDS_PER_POLL: i32 = 100;

/// How often the stream is read when it has nothing new.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The longest pause after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The position of one consumer on one table's stream.
#[derive(Debug, Clone)]
pub struct StreamPoller {
    streams: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    shard_id: String,
    /// The last record handled; `None`: start at the oldest (`TRIM_HORIZON`).
    last: Option<String>,
}

/// What one poll did.
#[derive(Debug, Default)]
pub struct Poll {
    /// Records the stream returned.
    pub records: usize,
    /// Of which handled (the position moved past them).
    pub handled: usize,
    /// For each handled record: from its change (`ApproximateCreationDateTime`,
    /// second precision on AWS) to the end of the handler.
    pub lags: Vec<Duration>,
    /// The record the mirror stopped at, and why: the next poll retries it.
    pub failure: Option<Error>,
}

impl StreamPoller {
    /// Finds the table's stream and its shard (DescribeTable, DescribeStream).
    pub async fn connect(sdk: &SdkConfig, table: &str) -> Result<Self> {
        let stream_arn = crate::repository::stream_arn(sdk, table).await?;
        let streams = aws_sdk_dynamodbstreams::Client::new(sdk);
        let stream = streams
            .describe_stream()
            .stream_arn(&stream_arn)
            .send()
            .await
            .map_err(|e| crate::sdk_error::upstream("DescribeStream", e))?;
        let shard_id = stream
            .stream_description()
            .and_then(|d| d.shards().last())
            .and_then(|s| s.shard_id())
            .ok_or_else(|| Error::UpstreamError {
                operation: "DescribeStream",
                source: format!("stream {stream_arn} has no shard").into(),
            })?
            .to_owned();
        Ok(Self {
            streams,
            stream_arn,
            shard_id,
            last: None,
        })
    }

    /// Reads the records after the last one handled and runs the mirror's
    /// handler over them (nothing when `enabled` is false, as the function
    /// does when `SEED_LAYOUT_MIRROR=off`). A failing record is reported in
    /// [`Poll::failure`] and retried by the next poll.
    pub async fn poll(&mut self, repo: &Repository, enabled: bool) -> Result<Poll> {
        let records = self.read().await?;
        // Each record the mirror takes, with its index among `records`.
        let taken: Vec<(usize, MirrorRecord)> = records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| mirror_record(r).map(|m| (i, m)))
            .collect();
        let batch: Vec<MirrorRecord> = taken.iter().map(|(_, m)| m.clone()).collect();
        let report = handle_records(repo, enabled, &batch).await;
        let handled = taken.get(report.handled).map_or(records.len(), |(i, _)| *i);
        Ok(self.advance(&records, handled, report.failure.map(|f| f.error)))
    }

    /// The same position-keeping over the events' handler (SPEC 10.2):
    /// the records after the last one handled, published to `sink`.
    pub async fn poll_events(&mut self, sink: &crate::events::Sink) -> Result<Poll> {
        let records = self.read().await?;
        let taken: Vec<(usize, crate::events::Change)> = records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| change(r).map(|c| (i, c)))
            .collect();
        let batch: Vec<crate::events::Change> = taken.iter().map(|(_, c)| c.clone()).collect();
        let report = crate::events::publish(sink, &batch).await;
        let handled = taken.get(report.handled).map_or(records.len(), |(i, _)| *i);
        Ok(self.advance(&records, handled, report.failure.map(|(_, e)| e)))
    }

    /// The changes after the last one read, read past (what one shard
    /// gives the events' handler: tests deliver them in other orders).
    pub async fn changes(&mut self) -> Result<Vec<crate::events::Change>> {
        let records = self.read().await?;
        let all = records.len();
        self.advance(&records, all, None);
        Ok(records.iter().filter_map(change).collect())
    }

    /// The records after the last one handled (two calls).
    async fn read(&mut self) -> Result<Vec<Record>> {
        let iterator = match &self.last {
            None => self
                .streams
                .get_shard_iterator()
                .shard_iterator_type(ShardIteratorType::TrimHorizon),
            Some(last) => self
                .streams
                .get_shard_iterator()
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(last),
        }
        .stream_arn(&self.stream_arn)
        .shard_id(&self.shard_id)
        .send()
        .await
        .map_err(|e| crate::sdk_error::upstream("GetShardIterator", e))?;
        let Some(iterator) = iterator.shard_iterator() else {
            return Ok(Vec::new()); // the shard is closed and read
        };
        let out = self
            .streams
            .get_records()
            .shard_iterator(iterator)
            .limit(RECORDS_PER_POLL)
            .send()
            .await
            .map_err(|e| crate::sdk_error::upstream("GetRecords", e))?;
        Ok(out.records().to_vec())
    }

    /// Moves past the first `handled` records.
    fn advance(&mut self, records: &[Record], handled: usize, failure: Option<Error>) -> Poll {
        let now = SystemTime::now();
        let lags = records[..handled]
            .iter()
            .filter_map(|r| r.dynamodb()?.approximate_creation_date_time())
            .filter_map(|t| SystemTime::try_from(*t).ok())
            .map(|t| now.duration_since(t).unwrap_or_default())
            .collect();
        if let Some(last) = handled
            .checked_sub(1)
            .and_then(|i| records[i].dynamodb()?.sequence_number())
        {
            self.last = Some(last.to_owned());
        }
        Poll {
            records: records.len(),
            handled,
            lags,
            failure,
        }
    }

    /// Publishes events every [`POLL_INTERVAL`] until the task is dropped;
    /// after a failure the same position is retried after a growing pause.
    pub async fn run_events(mut self, sink: crate::events::Sink) {
        let mut backoff = POLL_INTERVAL;
        loop {
            let failed = match self.poll_events(&sink).await {
                Ok(poll) => {
                    if let Some(e) = &poll.failure {
                        tracing::warn!(code = e.code(), error = ?e, "event record failed; retrying it");
                    }
                    poll.failure.is_some()
                }
                Err(e) => {
                    tracing::warn!(code = e.code(), error = ?e, "reading the stream failed; retrying");
                    true
                }
            };
            backoff = if failed {
                (backoff * 2).min(MAX_BACKOFF)
            } else {
                POLL_INTERVAL
            };
            tokio::time::sleep(backoff).await;
        }
    }

    /// Polls every [`POLL_INTERVAL`] until the task is dropped, logging each
    /// batch's lag; after a failure the same position is retried after a
    /// growing pause.
    pub async fn run(mut self, repo: &Repository, enabled: bool) {
        let mut backoff = POLL_INTERVAL;
        loop {
            let failed = match self.poll(repo, enabled).await {
                Ok(poll) => {
                    if let Some(max) = poll.lags.iter().max() {
                        tracing::info!(
                            records = poll.handled,
                            max_lag_ms = max.as_millis() as u64,
                            "mirror lag"
                        );
                    }
                    if let Some(e) = &poll.failure {
                        tracing::warn!(code = e.code(), error = ?e, "mirror record failed; retrying it");
                    }
                    poll.failure.is_some()
                }
                Err(e) => {
                    tracing::warn!(code = e.code(), error = ?e, "reading the stream failed; retrying");
                    true
                }
            };
            backoff = if failed {
                (backoff * 2).min(MAX_BACKOFF)
            } else {
                POLL_INTERVAL
            };
            tokio::time::sleep(backoff).await;
        }
    }
}

/// A stream record's keys (and a REMOVE's old sha256 and time); `None` when it has
/// no string `pk`/`sk` or no sequence number.
fn mirror_record(record: &Record) -> Option<MirrorRecord> {
    let change = record.dynamodb()?;
    let (name, sort_key) = row_keys(&json_image(change.keys())?)?;
    let (removed_sha256, removed_at) = match record.event_name() {
        Some(OperationType::Remove) => (
            json_image(change.old_image()).and_then(|old| removed_sha256(&old)),
            change
                .approximate_creation_date_time()
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.secs()).ok()),
        ),
        _ => (None, None),
    };
    Some(MirrorRecord {
        name,
        sort_key,
        removed_sha256,
        removed_at,
        sequence_number: change.sequence_number()?.to_owned(),
    })
}

/// An item of a stream record in DynamoDB JSON, as Lambda's stream events
/// carry it.
fn json_image(
    item: Option<&std::collections::HashMap<String, AttributeValue>>,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    item.map(|i| {
        i.iter()
            .map(|(k, v)| (k.clone(), dynamodb_json(v)))
            .collect::<serde_json::Map<_, _>>()
    })
}

/// A stream record as the events' handler reads it: its images in
/// DynamoDB JSON.
fn change(record: &Record) -> Option<crate::events::Change> {
    let data = record.dynamodb()?;
    let kind = match record.event_name()? {
        OperationType::Insert => "INSERT",
        OperationType::Modify => "MODIFY",
        OperationType::Remove => "REMOVE",
        _ => return None,
    };
    crate::events::Change::from_images(
        kind,
        &json_image(data.keys())?,
        json_image(data.old_image()),
        json_image(data.new_image()),
        data.sequence_number()?.to_owned(),
    )
}

/// An attribute value in DynamoDB JSON, as Lambda's stream events carry it.
fn dynamodb_json(value: &AttributeValue) -> serde_json::Value {
    use serde_json::json;
    match value {
        AttributeValue::S(s) => json!({"S": s}),
        AttributeValue::N(n) => json!({"N": n}),
        AttributeValue::Bool(b) => json!({"BOOL": b}),
        AttributeValue::Null(b) => json!({"NULL": b}),
        AttributeValue::Ss(v) => json!({"SS": v}),
        AttributeValue::Ns(v) => json!({"NS": v}),
        AttributeValue::L(v) => json!({"L": v.iter().map(dynamodb_json).collect::<Vec<_>>()}),
        AttributeValue::M(m) => json!({"M": m
            .iter()
            .map(|(k, v)| (k.clone(), dynamodb_json(v)))
            .collect::<serde_json::Map<_, _>>()}),
        _ => serde_json::Value::Null,
    }
}
