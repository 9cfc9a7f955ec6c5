//! The service layer (SPEC 2): the artifact repository over S3 (bytes) and
//! DynamoDB (metadata), one module per use case and background job.
//!
//! Every operation of `versioned` 1.0.1, on the same storage layout, made safe
//! under concurrency (SPEC 7). Each module is a short sequence of AWS
//! calls (through the store's codecs, transactions and shared requests)
//! around a rule of the core: uploads (`uploads.rs`, `multipart.rs`,
//! `verification.rs`, `pipeline.rs`), versions (`publish.rs`,
//! `versions.rs`, `search.rs`), aliases (`aliases.rs`, `rollouts.rs`),
//! artifacts (`catalog.rs`, `purge.rs`), retention (`retention.rs`), access
//! (`permissions.rs`, `allowed.rs`) and the mirror (`seed_layout.rs`). Each
//! documents its AWS round trips. It depends on the store and the core
//! only: the edge (routes, handlers) is the `shared` crate above it.

mod aliases;
mod allowed;
mod catalog;
mod multipart;
mod permissions;
mod pipeline;
mod publish;
mod purge;
mod retention;
mod rollouts;
mod search;
mod seed_layout;
mod uploads;
mod verification;
mod versions;

use std::time::Duration;

use aws_config::SdkConfig;
// The lower layers' modules under the names this crate's files use.
use artifact_core::{
    access, alias_rules, blob_rules, config, error, hash_state, limits, mirror_rules, model, names,
    publish_rules, query, retention_rules, rollout,
};
use artifact_store::bootstrap_items;
use artifact_store::change_events::{self, ChangeEvent};
use artifact_store::clients::{self, S3Client};
use artifact_store::paging::{decode_cursor, encode_cursor};
use artifact_store::retry::{MAX_ATTEMPTS, backoff};
use artifact_store::table::Table;
use artifact_store::tx::{self, Tx, TxItem};
use artifact_store::{calls, layout, rows, sdk_error};

pub use artifact_store::paging::{
    DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_SORT_KEY_BYTES, cursor_text, page_size,
};

use crate::calls::{CallCount, CallCounter};
use crate::config::Config;
use crate::config::RetentionSchedule;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::names::{ArtifactName, Version};
use crate::rows::{Item, VersionRow, version_key};

pub use crate::model::{PipelineOutcome, StartOutcome};
pub use crate::names::UploadId;
pub use aliases::AliasAsk;
pub use allowed::Allowed;
pub use multipart::{
    DEFAULT_PART_SIZE, MAX_MULTIPART_SIZE, MAX_PART_SIZE, MAX_PARTS, MAX_PARTS_PER_REQUEST,
    MIN_PART_SIZE, plan as multipart_plan,
};
pub use permissions::{AccessChange, AccessDocument, TAGS_FRESH_FOR};
pub use retention::{ReclaimReport, RetentionBookkeeping};
pub use rollouts::{Driven, alarm_states, check_rollout_id, read_alarm_states};
pub use search::{MAX_SEARCH_TERMS, StatusChange};
pub use seed_layout::{CopyPlan, MirrorFailure, MirrorRecord, MirrorReport};
pub use uploads::{DEFAULT_CONTENT_TYPE, MAX_UPLOAD_SIZE, metadata_limits};
pub use verification::{PARALLEL_RANGES, RANGE_BYTES, Verifier, VerifyRequest, VerifyStep};

#[derive(Debug, Clone)]
pub struct Repository {
    s3: S3Client,
    layout: Layout,
    /// The requests to the table that several use cases make.
    table: Table,
    presign_expires: Duration,
    upload_expires: Duration,
    /// The deployment's retention defaults (route and schedule alike).
    retention: RetentionSchedule,
    calls: CallCounter,
    /// Who verifies committed multipart uploads.
    verifier: Verifier,
    /// Bytes one verification step hashes at most (`VERIFY_BUDGET_BYTES`).
    verify_budget_bytes: u64,
    /// A larger LATEST of the library is adopted in the background
    /// (`ADOPT_COPY_MAX_BYTES`).
    adopt_copy_max_bytes: u64,
    /// Rollouts watch only alarms named with this prefix.
    rollout_alarm_prefix: String,
    /// Principal tags (permission targets naming `tag:KEY=VALUE`).
    iam: aws_sdk_iam::Client,
    /// The alarms a rollout watches, read when it starts.
    alarms: aws_sdk_cloudwatch::Client,
    /// The deployment's account (`ACCOUNT_ID`): only its principals' tags
    /// are looked up.
    account_id: Option<String>,
    /// Tags looked up lately, by caller ARN (`permissions::TAGS_FRESH_FOR`).
    tag_cache: std::sync::Arc<permissions::TagCache>,
}

impl Repository {
    /// The store's transaction over this repository's DynamoDB client
    /// (the store's future itself: no await point is added on the way, and
    /// the futures of the deepest handlers stay within the compiler's
    /// layout depth).
    fn transact(
        &self,
        ops: Vec<TxItem>,
        token: &str,
    ) -> impl std::future::Future<Output = std::result::Result<(), tx::TransactFailure>> {
        self.table.transact(ops, token)
    }

    /// The store's labelled transaction over this repository's client.
    fn transact_tx<L: Copy>(
        &self,
        tx: &Tx<L>,
        token: &str,
    ) -> impl std::future::Future<Output = std::result::Result<(), tx::TransactFailure<L>>> {
        self.table.transact_tx(tx, token)
    }

    /// A transaction member putting `item` only where no item is.
    fn put_new(&self, item: Item) -> Result<TxItem> {
        tx::put_new(&self.layout.table, item)
    }

    /// Adds to `tx`, under `label`, the event log's member for the events
    /// of the changes it writes (SPEC 10.2: one item per artifact, so the
    /// events come in the order of the artifact's changes); nothing
    /// without events.
    fn log_events<L: Copy>(
        &self,
        tx: &mut Tx<L>,
        label: L,
        name: &ArtifactName,
        events: &[ChangeEvent],
    ) -> Result<()> {
        if let Some(member) = change_events::log_member(&self.layout.table, name, events)? {
            tx.push(label, member);
        }
        Ok(())
    }
}

/// The events of writing the row `new` over `old` as read, the row marked
/// as logging them (see [`Repository::log_events`]).
fn logged_write(old: Option<&Item>, new: &mut Item) -> Vec<ChangeEvent> {
    let events = change_events::events_of_write(old, Some(new));
    change_events::mark_logged(new, &events);
    events
}

/// The token of one request, 32 lowercase hex characters: drawn at random,
/// or derived from the request's `Idempotency-Key` when it carries one, so
/// that a retry sent with the same key gets the same token and finds what
/// the first attempt wrote (SPEC 7.5: a retry is safe, also when the
/// client's answer was the one lost).
pub(crate) fn request_token(key: Option<&str>) -> String {
    use sha2::Digest;
    match key {
        Some(key) => {
            hex::encode(sha2::Sha256::digest(format!("Idempotency-Key\n{key}")))[..32].to_owned()
        }
        None => uuid::Uuid::new_v4().simple().to_string(),
    }
}

impl Repository {
    /// Builds both clients from one SDK configuration (one per cold start).
    pub fn new(sdk: &SdkConfig, config: &Config) -> Self {
        Self::with_service_configs(sdk, sdk, config)
    }

    /// Builds the clients from one SDK configuration each, e.g. S3 and
    /// DynamoDB served by different emulators.
    pub fn with_service_configs(
        s3_sdk: &SdkConfig,
        dynamodb_sdk: &SdkConfig,
        config: &Config,
    ) -> Self {
        let calls = CallCounter::default();
        let (s3, table) = clients::connect(s3_sdk, dynamodb_sdk, &calls, &config.table);
        let iam = aws_sdk_iam::config::Builder::from(dynamodb_sdk)
            .interceptor(calls.recording_interceptor())
            .build();
        let alarms = aws_sdk_cloudwatch::config::Builder::from(dynamodb_sdk)
            .interceptor(calls.recording_interceptor())
            .build();
        Self {
            s3,
            table,
            layout: Layout::new(config),
            presign_expires: config.presign_expires,
            upload_expires: config.upload_expires,
            retention: config.retention,
            calls,
            verifier: Verifier::default(),
            verify_budget_bytes: config.verify_budget_bytes,
            adopt_copy_max_bytes: config.adopt_copy_max_bytes,
            rollout_alarm_prefix: config.rollout_alarm_prefix.clone(),
            iam: aws_sdk_iam::Client::from_conf(iam),
            alarms: aws_sdk_cloudwatch::Client::from_conf(alarms),
            account_id: config.account_id.clone(),
            tag_cache: std::sync::Arc::default(),
        }
    }

    /// `ROLLOUT_ALARM_PREFIX` (empty: any alarm).
    pub fn rollout_alarm_prefix(&self) -> &str {
        &self.rollout_alarm_prefix
    }

    /// Where rollouts read their alarms: the alarm client's region and the
    /// deployment's account (`ACCOUNT_ID`), where known.
    pub fn alarm_home(&self) -> crate::rollout::AlarmHome<'_> {
        crate::rollout::AlarmHome {
            region: self.alarms.config().region().map(|r| r.as_ref()),
            account: self.account_id.as_deref(),
        }
    }

    /// A CloudWatch client for the rollout driver's alarm reads, its calls
    /// recorded with this repository's.
    pub fn alarms_client(&self, sdk: &SdkConfig) -> aws_sdk_cloudwatch::Client {
        aws_sdk_cloudwatch::Client::from_conf(
            aws_sdk_cloudwatch::config::Builder::from(sdk)
                .interceptor(self.calls.recording_interceptor())
                .build(),
        )
    }

    /// An EventBridge client for the events of changes, its calls recorded
    /// with this repository's.
    pub fn events_client(&self, sdk: &SdkConfig) -> aws_sdk_eventbridge::Client {
        aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::config::Builder::from(sdk)
                .interceptor(self.calls.recording_interceptor())
                .build(),
        )
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The deployment's retention parameters (SPEC 4.4, 5).
    pub fn retention(&self) -> RetentionSchedule {
        self.retention
    }

    /// AWS requests sent by this repository so far.
    pub fn calls(&self) -> CallCount {
        self.calls.get()
    }

    /// Sequential rounds of AWS requests sent by this repository so far
    /// (requests sent together count once): what its callers wait for.
    pub fn rounds(&self) -> u64 {
        self.calls.rounds()
    }

    /// The AWS operations this repository has called or presigned so far.
    pub fn operations(&self) -> std::collections::BTreeSet<String> {
        self.calls.operations()
    }

    /// Creates the bucket (versioning on) and the table when missing: the
    /// library's `bootstrap`, plus the table's stream (the mirror's input;
    /// added to a table that lacks it) and TTL on `expires_at` (SPEC 3.3).
    /// Idempotent.
    pub async fn bootstrap(&self) -> Result<()> {
        bootstrap_items::create_bucket(&self.s3, &self.layout.bucket).await?;
        self.table.create_if_missing().await
    }

    /// One version row, strongly consistent; `None` when absent.
    async fn get_row(&self, name: &ArtifactName, version: Version) -> Result<Option<VersionRow>> {
        let item = self.get_version_item(name, version).await?;
        item.as_ref().map(VersionRow::from_item).transpose()
    }

    /// One version row's item as stored, strongly consistent.
    async fn get_version_item(
        &self,
        name: &ArtifactName,
        version: Version,
    ) -> Result<Option<Item>> {
        self.table.get(version_key(name, version)).await
    }

    /// One version row that readers may see (exists, not soft-deleted).
    async fn get_live_row(&self, name: &ArtifactName, version: Version) -> Result<VersionRow> {
        match self.get_row(name, version).await? {
            Some(row) if row.is_live() => Ok(row),
            _ if version.is_latest() => Err(Error::ArtifactNotFound {
                name: name.to_string(),
            }),
            _ => Err(Error::version_not_found(name, version)),
        }
    }

    /// A presigned GET of exactly the bytes of version `version` of `name`,
    /// whose SHA-256 is `sha256`, stored at `location` (SPEC 7.3).
    async fn download_url(
        &self,
        name: &ArtifactName,
        version: Version,
        sha256: &str,
        location: &crate::rows::Location,
    ) -> Result<String> {
        artifact_store::content_objects::presigned_get(
            &self.s3,
            &self.layout,
            name,
            version,
            sha256,
            location,
            self.presign_expires,
        )
        .await
    }

    /// Reads every row of a partition (all pages), strongly consistent.
    fn query_all(&self, pk: &str) -> impl std::future::Future<Output = Result<Vec<Item>>> {
        self.table.query_all(pk)
    }
}

/// The table's stream (DescribeTable): what the local stream poller reads,
/// as Lambda's event source mapping does on AWS.
pub async fn stream_arn(sdk: &SdkConfig, table: &str) -> Result<String> {
    clients::table(sdk, table).stream_arn().await
}
