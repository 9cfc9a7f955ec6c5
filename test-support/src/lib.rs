//! Test harness shared by every test crate.
//!
//! [`emulator`] starts the project's AWS emulator (`scripts/emulator.py`,
//! moto from the project venv) once per test process on a free loopback
//! port; it exits by itself when the test process does (its stdin closes).
//! [`TestStore::new`] gives each test its own bucket and table on it.
//! With the `s3s` feature, [`checksum_s3`] serves an in-process S3
//! (`s3s-fs`) that checks part checksums like AWS.

#[cfg(feature = "s3s")]
pub mod checksum_s3;
pub mod proxy;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use sha2::{Digest, Sha256};
use shared::mirror::poller::StreamPoller;
use shared::model::{ChangeRequest, Committed, LOCAL_ACTOR, UploadRequest};
use shared::{ArtifactName, Config, Repository};

/// The workspace root (where `.venv/` and `scripts/` live).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The project venv's Python interpreter.
pub fn venv_python() -> PathBuf {
    workspace_root().join(".venv/bin/python")
}

/// An `interop.py serve` process: one JSON request per line in, one
/// answer per line out.
struct LibraryServer {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// The idle library servers of this test process.
static LIBRARY_SERVERS: Mutex<Vec<LibraryServer>> = Mutex::new(Vec::new());

/// Sends one request to an idle library server (a new one when none is
/// idle) and answers its reply. A server whose pipe fails is dropped, not
/// returned to the pool.
fn library_server_call(request: &[&str]) -> serde_json::Value {
    use std::io::Write;
    let idle = LIBRARY_SERVERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .pop();
    let mut server = idle.unwrap_or_else(|| {
        let mut child = Command::new(venv_python())
            .arg(workspace_root().join("scripts/interop.py"))
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run scripts/interop.py serve: {e}"));
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            panic!("interop.py serve has no pipes")
        };
        LibraryServer {
            _child: child,
            stdin,
            stdout: BufReader::new(stdout),
        }
    });
    let line = serde_json::to_string(request).unwrap_or_else(|e| panic!("{e}"));
    writeln!(server.stdin, "{line}")
        .and_then(|()| server.stdin.flush())
        .unwrap_or_else(|e| panic!("write to interop.py serve: {e}"));
    let mut answer = String::new();
    let read = server
        .stdout
        .read_line(&mut answer)
        .unwrap_or_else(|e| panic!("read from interop.py serve: {e}"));
    assert!(read > 0, "interop.py serve exited");
    let answer = serde_json::from_str(&answer)
        .unwrap_or_else(|e| panic!("library output is not JSON: {e}: {answer}"));
    LIBRARY_SERVERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(server);
    answer
}

/// A running emulator.
pub struct Emulator {
    pub endpoint: String,
    /// Kept open for the life of the process: closing it stops the emulator.
    _process: Mutex<(Child, ChildStdin, BufReader<ChildStdout>)>,
}

/// The process's first emulator, started on first use; later calls share
/// it. Stores are spread over [`EMULATORS_SETTING`] emulators (see
/// [`pooled_emulator`]); this one is the first of them.
pub fn emulator() -> &'static Emulator {
    emulator_at(0)
}

/// How many emulators the stores of one test process are spread over: the
/// environment's `TEST_EMULATORS`, else 1. Each emulator applies one request
/// at a time (`scripts/emulator.py`), so with one the whole process waits on
/// a single Python thread; `make test` sets more. A test's store, and every
/// client, proxy and library call made for it, stays on one emulator.
pub const EMULATORS_SETTING: &str = "TEST_EMULATORS";

/// Most emulators one process starts, whatever the setting says.
const MOST_EMULATORS: usize = 8;

fn emulator_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::env::var(EMULATORS_SETTING)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(1)
            .clamp(1, MOST_EMULATORS)
    })
}

fn emulator_at(index: usize) -> &'static Emulator {
    static EMULATORS: [OnceLock<Emulator>; MOST_EMULATORS] =
        [const { OnceLock::new() }; MOST_EMULATORS];
    EMULATORS[index % MOST_EMULATORS]
        .get_or_init(|| start_emulator().unwrap_or_else(|e| panic!("{e}")))
}

/// The emulator the next store goes to: the process's emulators in turn.
pub fn pooled_emulator() -> &'static Emulator {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let turn = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    emulator_at(turn % emulator_count())
}

fn start_emulator() -> Result<Emulator, String> {
    let python = venv_python();
    if !python.exists() {
        return Err(format!(
            "{} is missing: run `make venv` (make test does it)",
            python.display()
        ));
    }
    let mut child = Command::new(&python)
        .arg(workspace_root().join("scripts/emulator.py"))
        .arg("--until-stdin-closes")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the emulator: {e}"))?;
    let stdin = child.stdin.take().ok_or("emulator stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("emulator stdout")?);
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .map_err(|e| format!("emulator did not start: {e}"))?;
    let endpoint = line.trim().to_owned();
    if !endpoint.starts_with("http://127.0.0.1:") {
        return Err(format!(
            "emulator printed {endpoint:?} instead of its address"
        ));
    }
    Ok(Emulator {
        endpoint,
        _process: Mutex::new((child, stdin, stdout)),
    })
}

/// The dummy credentials every test client signs with (and the in-process
/// S3 of [`checksum_s3`] accepts).
pub const ACCESS_KEY: &str = "test";
pub const SECRET_KEY: &str = "test";

/// SDK configuration pointing at `endpoint` with the dummy credentials.
pub async fn sdk_config_at(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            ACCESS_KEY, SECRET_KEY, None, None, "test",
        ))
        .load()
        .await
}

/// A bootstrapped bucket + table of its own, and raw clients to inspect them.
pub struct TestStore {
    /// The emulator this store lives on (every client of the test must use it).
    pub endpoint: String,
    pub config: Config,
    pub sdk: SdkConfig,
    pub repo: Repository,
    pub s3: aws_sdk_s3::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    pub http: reqwest::Client,
    /// The mirror's position on the table's stream, and the repository it
    /// runs on (not `repo`, whose call counts the tests read).
    mirror: tokio::sync::Mutex<Option<(StreamPoller, Repository)>>,
    /// The events' position on the stream, and the events so far.
    events: tokio::sync::Mutex<Option<(StreamPoller, shared::events::Sink)>>,
}

impl TestStore {
    pub async fn new() -> Self {
        Self::with_suffix("").await
    }

    pub async fn with_suffix(suffix: &str) -> Self {
        Self::with_settings(&[("ARTIFACT_SUFFIX", suffix)]).await
    }

    /// A store configured by these environment settings (SPEC 5) on top of
    /// its own bucket and table, e.g. `[("SEED_LAYOUT_MIRROR", "off")]`.
    pub async fn with_settings(settings: &[(&str, &str)]) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let config = Config::from_lookup(|key| match key {
            "BUCKET_NAME" => Some(format!("test-{}", &id[..16])),
            "TABLE_NAME" => Some(format!("test-{}", &id[..16])),
            _ => settings
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned()),
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let endpoint = pooled_emulator().endpoint.clone();
        let sdk = sdk_config_at(&endpoint).await;
        let repo = Repository::new(&sdk, &config);
        repo.bootstrap()
            .await
            .unwrap_or_else(|e| panic!("bootstrap: {e:?}"));
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        Self {
            endpoint,
            config,
            sdk,
            repo,
            s3,
            ddb,
            http: reqwest::Client::new(),
            mirror: tokio::sync::Mutex::new(None),
            events: tokio::sync::Mutex::new(None),
        }
    }

    /// Every change on the table's stream so far, in the stream's order.
    pub async fn stream_changes(&self) -> Vec<shared::events::Change> {
        let mut poller = StreamPoller::connect(&self.sdk, &self.config.table)
            .await
            .unwrap_or_else(|e| panic!("stream: {e:?}"));
        let mut all = Vec::new();
        loop {
            let changes = poller
                .changes()
                .await
                .unwrap_or_else(|e| panic!("stream: {e:?}"));
            if changes.is_empty() {
                return all;
            }
            all.extend(changes);
        }
    }

    /// Runs the events' handler (SPEC 10.2) over every record of the
    /// table's stream not yet handled, into memory, and returns every event
    /// published so far, in order. Panics when a record keeps failing.
    pub async fn drain_events(&self) -> Vec<shared::events::ChangeEvent> {
        let mut slot = self.events.lock().await;
        if slot.is_none() {
            let poller = StreamPoller::connect(&self.sdk, &self.config.table)
                .await
                .unwrap_or_else(|e| panic!("stream: {e:?}"));
            *slot = Some((poller, shared::events::Sink::Memory(Default::default())));
        }
        let Some((poller, sink)) = slot.as_mut() else {
            unreachable!("set above")
        };
        let mut failures = 0;
        loop {
            match poller.poll_events(sink).await {
                Ok(poll) if poll.failure.is_none() && poll.records == 0 => break,
                Ok(poll) if poll.failure.is_none() => continue,
                Ok(poll) => panic!("events failed: {:?}", poll.failure),
                Err(e) => {
                    failures += 1;
                    assert!(failures < 20, "the stream keeps failing: {e:?}");
                }
            }
        }
        match sink {
            shared::events::Sink::Memory(kept) => {
                kept.lock().map(|k| k.clone()).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }

    /// Creates (or updates) the CloudWatch alarm `name` on the emulator
    /// and sets its state: `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub async fn alarm(&self, name: &str, state: &str) {
        use aws_sdk_cloudwatch::types::{ComparisonOperator, StateValue, Statistic};
        let cloudwatch = aws_sdk_cloudwatch::Client::new(&self.sdk);
        cloudwatch
            .put_metric_alarm()
            .alarm_name(name)
            .namespace("Test")
            .metric_name("Errors")
            .statistic(Statistic::Sum)
            .period(60)
            .evaluation_periods(1)
            .threshold(1.0)
            .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
            .send()
            .await
            .unwrap_or_else(|e| panic!("put alarm: {e:?}"));
        cloudwatch
            .set_alarm_state()
            .alarm_name(name)
            .state_value(StateValue::from(state))
            .state_reason("set by a test")
            .send()
            .await
            .unwrap_or_else(|e| panic!("set alarm state: {e:?}"));
    }

    /// Runs the mirror's handler over every record of the table's stream not
    /// yet handled (as the local server's poller does), then returns each
    /// record's lag. The mirror's switch is the store's `SEED_LAYOUT_MIRROR`.
    /// Panics when a record keeps failing.
    pub async fn drain_mirror(&self) -> Vec<std::time::Duration> {
        let mut slot = self.mirror.lock().await;
        if slot.is_none() {
            let poller = StreamPoller::connect(&self.sdk, &self.config.table)
                .await
                .unwrap_or_else(|e| panic!("stream: {e:?}"));
            *slot = Some((poller, self.another_repository()));
        }
        let Some((poller, repo)) = slot.as_mut() else {
            unreachable!("set above")
        };
        let (mut lags, mut failures) = (Vec::new(), 0);
        loop {
            let failure = match poller.poll(repo, self.config.seed_layout_mirror).await {
                Ok(poll) => {
                    lags.extend(poll.lags);
                    match poll.failure {
                        None if poll.records == 0 => return lags,
                        None => continue,
                        Some(e) => e,
                    }
                }
                Err(e) => e,
            };
            failures += 1;
            assert!(failures < 20, "the mirror keeps failing: {failure:?}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Writes a row whose bytes are in the blob store, as a commit or a
    /// publish of this service does: the blob (PUT with its SHA-256, which
    /// S3 checks) at `{prefix}.blobs/{name}/{sha256}`, then the row with
    /// `bytes = "blob"`. Returns the sha256.
    pub async fn put_blob_row(
        &self,
        name: &ArtifactName,
        version: shared::Version,
        content: &[u8],
        metadata: &[(&str, &str)],
    ) -> String {
        use aws_sdk_dynamodb::types::AttributeValue as V;
        use base64::Engine;
        use shared::layout::{BYTES_BLOB, attr, format_update_at, now};
        let sha256 = sha256_hex(content);
        let layout = self.repo.layout();
        self.s3
            .put_object()
            .bucket(&self.config.bucket)
            .key(layout.blob_key(name, &sha256))
            .checksum_sha256(
                base64::engine::general_purpose::STANDARD.encode(Sha256::digest(content)),
            )
            .body(content.to_vec().into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("put blob: {e:?}"));
        let s = |v: &str| V::S(v.to_owned());
        let metadata = metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), s(v)))
            .collect();
        self.ddb
            .put_item()
            .table_name(&self.config.table)
            .item(attr::PK, s(name.as_str()))
            .item(attr::SK, s(&version.sort_key()))
            .item(attr::SHA256, s(&sha256))
            .item(attr::IS_DELETED, V::Bool(false))
            .item(attr::UPDATE_AT, s(&format_update_at(now())))
            .item(attr::SIZE, V::N(content.len().to_string()))
            .item(attr::CONTENT_TYPE, s("text/plain"))
            .item(attr::METADATA, V::M(metadata))
            .item(attr::BYTES, s(BYTES_BLOB))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put row: {e:?}"));
        sha256
    }

    /// A repository over the same store whose AWS requests pass through
    /// `endpoint` (a [`proxy`] in front of the emulator).
    pub async fn repository_via(&self, endpoint: &str) -> Repository {
        Repository::new(&sdk_config_at(endpoint).await, &self.config)
    }

    /// A repository over the same store whose AWS requests pass through a
    /// proxy following `plan` (faults, holds, recordings).
    pub async fn through(&self, plan: &std::sync::Arc<proxy::Plan>) -> Repository {
        self.repository_via(&self.proxied(plan).await).await
    }

    /// An SDK configuration whose requests (S3, DynamoDB, CloudWatch, …)
    /// pass through a proxy following `plan`.
    pub async fn sdk_through(&self, plan: &std::sync::Arc<proxy::Plan>) -> SdkConfig {
        sdk_config_at(&self.proxied(plan).await).await
    }

    /// The URL of a new proxy to this store's emulator following `plan`.
    async fn proxied(&self, plan: &std::sync::Arc<proxy::Plan>) -> String {
        proxy::start(
            self.endpoint.clone(),
            proxy::Faults::Plan(plan.clone()),
            std::sync::Arc::new(proxy::FaultCounts::default()),
        )
        .await
    }

    /// Runs one call of the Python library `versioned` 1.0.1 on this store
    /// (`scripts/interop.py`): `library(&["call", "put_alias", r#"{...}"#])`.
    /// The call goes to an idle `interop.py serve` of this test process
    /// (one more is started when every one is busy), so Python and the
    /// library are imported once per process, not once per call.
    pub fn library(&self, args: &[&str]) -> serde_json::Value {
        let (command, rest) = args.split_first().unwrap_or((&"", &[]));
        let request: Vec<&str> = [
            *command,
            self.endpoint.as_str(),
            self.config.bucket.as_str(),
            self.config.table.as_str(),
        ]
        .into_iter()
        .chain(rest.iter().copied())
        .collect();
        let mut answer = library_server_call(&request);
        if let Some(error) = answer.get("error") {
            panic!("library failed: {}", error.as_str().unwrap_or_default());
        }
        answer
            .get_mut("ok")
            .map(serde_json::Value::take)
            .unwrap_or_else(|| panic!("library answered neither ok nor error: {answer}"))
    }

    /// [`Self::library`] once the mirror has caught up with every change so
    /// far (SPEC 7.14: what is written here becomes readable by the library
    /// within the mirror's lag).
    pub async fn library_after_mirror(&self, args: &[&str]) -> serde_json::Value {
        self.drain_mirror().await;
        self.library(args)
    }

    /// A second repository over the same store (another "Lambda instance").
    pub fn another_repository(&self) -> Repository {
        Repository::new(&self.sdk, &self.config)
    }

    /// The whole upload flow: declare, PUT the bytes to the presigned URL, commit.
    /// A repository whose first `operation` request (on an item whose key
    /// holds `key`, when given) waits at the gate before it is sent
    /// (`gate.arrived()` once it is there, `gate.open()` to let it go).
    pub async fn held_before(
        &self,
        operation: &str,
        key: Option<&str>,
    ) -> (Repository, std::sync::Arc<proxy::Gate>) {
        let plan = proxy::Plan::new();
        let gate = proxy::Gate::new();
        plan.add(proxy::Rule::new(
            operation,
            key,
            proxy::Action::HoldBefore(gate.clone()),
            1,
        ));
        (self.through(&plan).await, gate)
    }

    /// A repository whose first `operation` request (on an item whose key
    /// holds `key`, when given) lands but loses its answer: the SDK sends
    /// it again, as after a timeout.
    pub async fn losing_first_answer(&self, operation: &str, key: Option<&str>) -> Repository {
        let plan = proxy::Plan::new();
        plan.add(proxy::Rule::new(
            operation,
            key,
            proxy::Action::Fault(proxy::Fault::ResetAfter),
            1,
        ));
        self.through(&plan).await
    }

    /// How many upload rows `name` has (pending, committed, any state).
    pub async fn upload_rows(&self, name: &ArtifactName) -> usize {
        self.ddb
            .query()
            .table_name(&self.config.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", shared::layout::attr::PK)
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S(shared::layout::upload_pk(name)),
            )
            .consistent_read(true)
            .send()
            .await
            .expect("query the upload rows")
            .items()
            .len()
    }

    pub async fn upload(&self, name: &ArtifactName, bytes: &[u8]) -> Committed {
        upload_with(&self.repo, &self.http, name, bytes).await
    }

    /// An upload of `bytes` started and its bytes sent, not committed.
    pub async fn staged(&self, name: &ArtifactName, bytes: &[u8]) -> shared::model::UploadTicket {
        let ticket = self
            .repo
            .create_upload(name, declare(bytes), LOCAL_ACTOR)
            .await
            .unwrap_or_else(|e| panic!("start upload: {e:?}"));
        put_bytes(&self.http, &ticket, bytes).await;
        ticket
    }

    /// Each of `contents` uploaded, committed and published in turn:
    /// versions 1, 2, … of `name`.
    pub async fn publish_each(&self, name: &ArtifactName, contents: &[&[u8]]) {
        for content in contents {
            self.upload(name, content).await;
            self.repo
                .publish_version(name, false, LOCAL_ACTOR)
                .await
                .unwrap_or_else(|e| panic!("publish: {e:?}"));
        }
    }

    /// `content` uploaded with user metadata `meta`, committed and
    /// published (forced): the version it became.
    pub async fn publish_with(
        &self,
        name: &ArtifactName,
        content: &[u8],
        meta: &[(&str, &str)],
    ) -> shared::Version {
        let mut request = declare(content);
        request.metadata = meta
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let ticket = self
            .repo
            .create_upload(name, request, LOCAL_ACTOR)
            .await
            .unwrap_or_else(|e| panic!("start upload: {e:?}"));
        if !ticket.exists {
            put_bytes(&self.http, &ticket, content).await;
        }
        self.repo
            .commit_upload(name, &ticket.upload_id, LOCAL_ACTOR)
            .await
            .unwrap_or_else(|e| panic!("commit: {e:?}"));
        self.repo
            .publish_version(name, true, LOCAL_ACTOR)
            .await
            .unwrap_or_else(|e| panic!("publish: {e:?}"))
            .artifact
            .version
    }

    /// A store holding what the sample events (`events/*.json`) refer to:
    /// `my-app` versions 1 ("one") and 2 ("two"), LATEST "three" unpublished,
    /// alias `prod` → 1.
    pub async fn with_sample_artifact() -> Self {
        let store = Self::new().await;
        let n = name("my-app");
        store.publish_each(&n, &[b"one", b"two"]).await;
        store.upload(&n, b"three").await;
        let prod = shared::model::AliasTarget {
            version: shared::Version::Number(1),
            secondary: None,
        };
        let alias = "prod".parse().unwrap_or_else(|e| panic!("{e}"));
        store
            .repo
            .put_alias(&n, &alias, prod, &ChangeRequest::default())
            .await
            .unwrap_or_else(|e| panic!("put alias: {e:?}"));
        // The alarm the sample rollouts watch (a rollout starts only
        // while its alarms vouch for it); OK in every test of the process.
        store.alarm(SAMPLE_ALARM, "OK").await;
        store
    }

    /// Sets `attribute` of the item `pk`/`sk` to `value` as stored, behind
    /// the service's back (a write whose follow-up has not happened yet,
    /// another writer's, time passing).
    async fn set_raw(
        &self,
        pk: &str,
        sk: &str,
        attribute: &str,
        value: aws_sdk_dynamodb::types::AttributeValue,
    ) {
        use aws_sdk_dynamodb::types::AttributeValue;
        self.ddb
            .update_item()
            .table_name(&self.config.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .update_expression("SET #a = :v")
            .expression_attribute_names("#a", attribute)
            .expression_attribute_values(":v", value)
            .send()
            .await
            .unwrap_or_else(|e| panic!("set {attribute} of {pk}/{sk}: {e:?}"));
    }

    /// [`Self::set_raw`] of a string attribute.
    pub async fn set_raw_string(&self, pk: &str, sk: &str, attribute: &str, value: &str) {
        let value = aws_sdk_dynamodb::types::AttributeValue::S(value.to_owned());
        self.set_raw(pk, sk, attribute, value).await;
    }

    /// Makes the purge fence of `name` lapse (started long ago), as a purge
    /// that stalled past `PURGE_FENCE_STALE` leaves it.
    pub async fn lapse_purge_fence(&self, name: &ArtifactName) {
        let (pk, sk) = (shared::layout::fence_pk(name), shared::layout::FENCE_SK);
        let long_ago = aws_sdk_dynamodb::types::AttributeValue::N("0".into());
        self.set_raw(&pk, sk, "started_at", long_ago).await;
    }

    /// Makes upload `id` of `name` look as if its last step (its hand-over
    /// or a checkpoint) was long ago: a verification that stalled.
    pub async fn stall_upload(&self, name: &ArtifactName, id: &str) {
        let pk = shared::layout::upload_pk(name);
        self.set_raw_string(&pk, id, "update_at", "2000-01-01T00:00:00.000000+0000")
            .await;
    }

    /// Ends the lifetime of upload `id` of `name` (its `expires_at` long
    /// past), as if its time ran out before the TTL removed its row.
    pub async fn expire_upload(&self, name: &ArtifactName, id: &str) {
        let pk = shared::layout::upload_pk(name);
        let past = aws_sdk_dynamodb::types::AttributeValue::N("1000".into());
        self.set_raw(&pk, id, "expires_at", past).await;
    }

    /// Makes the commit of upload `id` of `name` look as if it started
    /// completing the parts long ago (its `completing_at` stamp): a commit
    /// cut off longer ago than an invocation runs.
    pub async fn age_completion_stamp(&self, name: &ArtifactName, id: &str) {
        let pk = shared::layout::upload_pk(name);
        let past = aws_sdk_dynamodb::types::AttributeValue::N("1000".into());
        self.set_raw(&pk, id, "completing_at", past).await;
    }

    /// Every raw item of the table, for "nothing else was written" checks.
    /// Every item except pending-upload rows (which starting an upload
    /// writes whatever happens next).
    pub async fn items_besides_uploads(
        &self,
    ) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        self.raw_items()
            .await
            .into_iter()
            .filter(|item| {
                !item
                    .get("pk")
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|pk| pk.ends_with("-upload") && pk.starts_with("__"))
            })
            .collect()
    }

    /// One raw item of the table as stored (strongly consistent).
    pub async fn raw_item(
        &self,
        pk: &str,
        sk: &str,
    ) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        use aws_sdk_dynamodb::types::AttributeValue;
        self.ddb
            .get_item()
            .table_name(&self.config.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get item: {e:?}"))
            .item
    }

    /// Puts an item of only its key (`pk`, `sk`), as stored.
    /// Deletes the item `pk`/`sk` as a raw DynamoDB call (what a purge
    /// stopped part-way, or DynamoDB's TTL, left behind).
    pub async fn delete_raw_key(&self, pk: &str, sk: &str) {
        use aws_sdk_dynamodb::types::AttributeValue;
        self.ddb
            .delete_item()
            .table_name(&self.config.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("delete item: {e:?}"));
    }

    pub async fn put_raw_key(&self, pk: &str, sk: &str) {
        use aws_sdk_dynamodb::types::AttributeValue;
        self.ddb
            .put_item()
            .table_name(&self.config.table)
            .item("pk", AttributeValue::S(pk.to_owned()))
            .item("sk", AttributeValue::S(sk.to_owned()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put item: {e:?}"));
    }

    /// [`Self::put_raw_key`] for each of `sort_keys` under `pk`, 25 to a
    /// BatchWriteItem (unprocessed items sent again).
    pub async fn put_raw_keys(&self, pk: &str, sort_keys: &[String]) {
        use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
        for chunk in sort_keys.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|sk| {
                    let put = PutRequest::builder()
                        .item("pk", AttributeValue::S(pk.to_owned()))
                        .item("sk", AttributeValue::S(sk.clone()))
                        .build()
                        .unwrap_or_else(|e| panic!("put request: {e:?}"));
                    WriteRequest::builder().put_request(put).build()
                })
                .collect();
            while !requests.is_empty() {
                let out = self
                    .ddb
                    .batch_write_item()
                    .request_items(&self.config.table, requests)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("batch write: {e:?}"));
                requests = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.config.table))
                    .unwrap_or_default();
            }
        }
    }

    pub async fn raw_items(
        &self,
    ) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .ddb
                .scan()
                .table_name(&self.config.table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap_or_else(|e| panic!("scan: {e:?}"));
            items.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return items,
            }
        }
    }

    /// Downloads a presigned URL.
    pub async fn download(&self, url: &str) -> Vec<u8> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(
            response.status().is_success(),
            "GET {url}: {}",
            response.status()
        );
        response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("body: {e}"))
            .to_vec()
    }
}

/// One sample event (`events/{function}.json`) run through its handler.
pub struct SampleRun {
    /// Seeded by [`TestStore::with_sample_artifact`].
    pub store: TestStore,
    pub event: serde_json::Value,
    /// The repository the handler ran on: its call record holds only the
    /// handler's AWS calls.
    pub repo: Repository,
    pub response: lambda_http::Response<lambda_http::Body>,
}

impl SampleRun {
    /// The answer's body as bytes.
    pub fn body(&self) -> Vec<u8> {
        match self.response.body() {
            lambda_http::Body::Text(t) => t.as_bytes().to_vec(),
            lambda_http::Body::Binary(b) => b.clone(),
            _ => Vec::new(),
        }
    }
}

/// Runs the sample event of `route` through its handler against a store
/// holding what the events refer to. The uploads the upload routes name are
/// staged for real under fresh ids: the commit's, a single PUT of "four";
/// the upload state's, a multipart upload of "four" whose one part arrived;
/// the parts route's, a multipart upload of "four" with no part yet.
pub async fn run_sample_event(route: &shared::api::Route) -> SampleRun {
    use shared::api::Operation;
    let store = TestStore::with_sample_artifact().await;
    let path = workspace_root()
        .join("events")
        .join(format!("{}.json", route.function));
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let event: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", route.function));
    let example_id = match route.operation {
        Operation::CommitUpload => event["body"]
            .as_str()
            .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
            .and_then(|body| body["upload_id"].as_str().map(str::to_owned)),
        Operation::GetUpload | Operation::GetUploadParts => event["pathParameters"]["upload_id"]
            .as_str()
            .map(str::to_owned),
        _ => None,
    };
    let n = name("my-app");
    let staged = match route.operation {
        Operation::CommitUpload => {
            let ticket = store
                .repo
                .create_upload(
                    &n,
                    UploadRequest {
                        sha256: sha256_hex(b"four"),
                        size: 4,
                        content_type: None,
                        metadata: Default::default(),
                        part_size: None,
                        key: None,
                    },
                    LOCAL_ACTOR,
                )
                .await
                .unwrap_or_else(|e| panic!("create_upload: {e:?}"));
            put_bytes(&store.http, &ticket, b"four").await;
            Some(ticket.upload_id)
        }
        Operation::GetUpload => {
            let (id, plan) = start_multipart(&store.repo, &n, b"four").await;
            send_parts(&store.repo, &store.http, &n, &id, b"four", &plan).await;
            Some(id)
        }
        Operation::GetUploadParts => Some(start_multipart(&store.repo, &n, b"four").await.0),
        _ => None,
    };
    if let (Some(example), Some(id)) = (example_id, staged) {
        text = text.replace(&example, &id);
    }
    // The rollout routes act on a rollout of `prod` to version 2 (10 % for
    // five minutes), started under a fresh id.
    if matches!(
        route.operation,
        Operation::ListRollouts | Operation::GetRollout | Operation::ControlRollout
    ) {
        let rollout = start_sample_rollout(&store.repo).await;
        if let Some(example) = event["pathParameters"]["id"].as_str() {
            text = text.replace(example, &rollout.id);
        }
    }
    let request =
        lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", route.function));
    let repo = store.another_repository();
    let response = route.operation.handle(&repo, request).await;
    SampleRun {
        store,
        event,
        repo,
        response,
    }
}

/// The alarm of the sample rollouts (events/start-rollout.json's).
pub const SAMPLE_ALARM: &str = "my-app-errors";

/// Starts rolling `prod` of `my-app` out to version 2 (10 % for five
/// minutes, then 100 %), watching [`SAMPLE_ALARM`], as `ci`.
pub async fn start_sample_rollout(repo: &Repository) -> shared::model::Rollout {
    let steps = shared::rollout::preset("canary-10-5m").unwrap_or_else(|e| panic!("{e}"));
    repo.start_rollout(
        &name("my-app"),
        &alias("prod"),
        shared::model::RolloutRequest {
            version: shared::Version::Number(2),
            steps,
            alarms: vec![SAMPLE_ALARM.into()],
            message: Some("release 2".into()),
        },
        "ci",
    )
    .await
    .unwrap_or_else(|e| panic!("start rollout: {e:?}"))
}

/// Starts a multipart upload of `bytes` (parts of S3's smallest size, 5 MiB)
/// as a new LATEST of `name`: its id and plan.
pub async fn start_multipart(
    repo: &Repository,
    name: &ArtifactName,
    bytes: &[u8],
) -> (String, shared::model::MultipartPlan) {
    let ticket = repo
        .create_upload(
            name,
            UploadRequest {
                sha256: sha256_hex(bytes),
                size: bytes.len() as u64,
                content_type: Some("application/octet-stream".into()),
                metadata: Default::default(),
                part_size: Some(shared::repository::MIN_PART_SIZE),
                key: None,
            },
            LOCAL_ACTOR,
        )
        .await
        .unwrap_or_else(|e| panic!("create_upload: {e:?}"));
    let plan = ticket
        .multipart
        .unwrap_or_else(|| panic!("not a multipart ticket: {ticket:?}"));
    (ticket.upload_id, plan)
}

/// Asks `repo` for the URLs of every part of `bytes` and PUTs them.
pub async fn send_parts(
    repo: &Repository,
    http: &reqwest::Client,
    name: &ArtifactName,
    upload_id: &str,
    bytes: &[u8],
    plan: &shared::model::MultipartPlan,
) {
    let parts = parts_of(bytes, plan);
    let requests: Vec<shared::model::PartRequest> = parts
        .iter()
        .map(|(number, part)| shared::model::PartRequest {
            number: *number,
            sha256: sha256_hex(part).parse().unwrap_or_else(|e| panic!("{e:?}")),
        })
        .collect();
    let urls = repo
        .upload_part_urls(name, upload_id, &requests)
        .await
        .unwrap_or_else(|e| panic!("upload_part_urls: {e:?}"));
    for url in &urls.parts {
        let part = parts
            .iter()
            .find(|(number, _)| *number == url.number)
            .map(|(_, part)| *part)
            .unwrap_or_else(|| panic!("no part {}", url.number));
        let (status, body) = put_part(http, url, part).await;
        assert!(status < 300, "part {} refused: {status} {body}", url.number);
    }
}

/// Declares, PUTs and commits `bytes` through `repo`.
pub async fn upload_with(
    repo: &Repository,
    http: &reqwest::Client,
    name: &ArtifactName,
    bytes: &[u8],
) -> Committed {
    let ticket = repo
        .create_upload(
            name,
            UploadRequest {
                sha256: sha256_hex(bytes),
                size: bytes.len() as u64,
                content_type: Some("application/octet-stream".into()),
                metadata: Default::default(),
                part_size: None,
                key: None,
            },
            LOCAL_ACTOR,
        )
        .await
        .unwrap_or_else(|e| panic!("create_upload: {e:?}"));
    if !ticket.exists {
        put_bytes(http, &ticket, bytes).await;
    }
    repo.commit_upload(name, &ticket.upload_id, LOCAL_ACTOR)
        .await
        .unwrap_or_else(|e| panic!("commit: {e:?}"))
}

/// PUTs bytes to a presigned upload URL with its headers; returns the status.
pub async fn put_bytes(
    http: &reqwest::Client,
    ticket: &shared::model::UploadTicket,
    bytes: &[u8],
) -> u16 {
    let url = ticket
        .url
        .as_deref()
        .unwrap_or_else(|| panic!("the ticket has no URL: {ticket:?}"));
    let mut request = http.put(url).body(bytes.to_vec());
    for (k, v) in ticket.headers.iter().flatten() {
        request = request.header(k, v);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT upload: {e}"));
    let status = response.status().as_u16();
    assert!(
        status < 300,
        "PUT upload: {status} {}",
        response.text().await.unwrap_or_default()
    );
    status
}

/// PUTs one part to its presigned UploadPart URL with its headers; returns
/// the status and the body (S3's error, when refused).
pub async fn put_part(
    http: &reqwest::Client,
    part: &shared::model::PartUrl,
    bytes: &[u8],
) -> (u16, String) {
    let mut request = http.put(&part.url).body(bytes.to_vec());
    for (k, v) in &part.headers {
        request = request.header(k, v);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT part {}: {e}", part.number));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// `bytes` cut as `plan` cuts them: (part number, the part's bytes).
pub fn parts_of<'a>(bytes: &'a [u8], plan: &shared::model::MultipartPlan) -> Vec<(u32, &'a [u8])> {
    bytes
        .chunks(plan.part_size as usize)
        .enumerate()
        .map(|(i, chunk)| (i as u32 + 1, chunk))
        .collect()
}

/// The keys of a JSON object, sorted (to compare an answer's shape).
pub fn sorted_keys(v: &serde_json::Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    k.sort_unstable();
    k
}

/// A declaration of `bytes` for one PUT: digest and size, nothing else.
/// `len` bytes of a pattern that `seed` varies (and that varies every
/// 4 KiB, so that parts of one upload differ).
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed ^ (i >> 12) as u8)
        })
        .collect()
}

/// A one-request pipeline that publishes and moves `alias` to the new
/// version (conditional on `if_revision` when given).
pub fn publishing_to(alias: &str, if_revision: Option<u64>) -> shared::model::Pipeline {
    shared::model::Pipeline {
        publish: true,
        force: false,
        alias: Some(shared::model::AliasMove {
            name: alias
                .parse()
                .unwrap_or_else(|e| panic!("alias {alias}: {e:?}")),
            weight: None,
            if_revision,
            message: None,
        }),
    }
}

pub fn declare(bytes: &[u8]) -> UploadRequest {
    UploadRequest {
        sha256: sha256_hex(bytes),
        size: bytes.len() as u64,
        content_type: None,
        metadata: Default::default(),
        part_size: None,
        key: None,
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn name(s: &str) -> ArtifactName {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

pub fn alias(s: &str) -> shared::AliasName {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

/// An alias target: `version` alone.
pub fn to(version: u32) -> shared::model::AliasTarget {
    shared::model::AliasTarget {
        version: shared::Version::Number(version),
        secondary: None,
    }
}

/// An alias target: `primary`, with `weight` percent on `secondary`.
pub fn split(primary: u32, secondary: u32, weight: i64) -> shared::model::AliasTarget {
    shared::model::AliasTarget {
        version: shared::Version::Number(primary),
        secondary: Some((
            shared::Version::Number(secondary),
            shared::Weight::new(weight).unwrap_or_else(|e| panic!("{e}")),
        )),
    }
}

/// The mirror's sample event (`events/mirror-seed-layout.json`) run through
/// its handler (mirror on).
pub struct MirrorSampleRun {
    /// Holds what the event refers to: `my-app` LATEST "three" in the blob
    /// store (no library object yet), and the mirror's copy at `old-app`
    /// LATEST ("gone") whose row the event's REMOVE deleted.
    pub store: TestStore,
    /// The repository the handler ran on: its call record holds only the
    /// handler's AWS calls.
    pub repo: Repository,
    /// The handler's answer, as Lambda reads it.
    pub response: serde_json::Value,
}

pub async fn run_mirror_sample_event() -> MirrorSampleRun {
    let store = TestStore::new().await;
    let layout = store.repo.layout();
    store
        .put_blob_row(
            &name("my-app"),
            shared::Version::Latest,
            b"three",
            &[("build", "42")],
        )
        .await;
    store
        .s3
        .put_object()
        .bucket(&store.config.bucket)
        .key(layout.object_key(&name("old-app"), shared::Version::Latest))
        .metadata(shared::layout::META_ARTIFACT_NAME, "old-app")
        .metadata(shared::layout::META_ARTIFACT_SHA256, sha256_hex(b"gone"))
        // The mirror's copy (the removed row was a blob row): its marker.
        .metadata(shared::mirror::META_MIRRORED_FOR, "LATEST")
        .body(b"gone".to_vec().into())
        .send()
        .await
        .unwrap_or_else(|e| panic!("put library object: {e:?}"));
    let path = workspace_root().join("events/mirror-seed-layout.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let payload = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let repo = store.another_repository();
    let event = lambda_runtime::LambdaEvent::new(payload, lambda_runtime::Context::default());
    let response = shared::mirror::handle_event(&repo, true, event)
        .await
        .unwrap_or_else(|e| panic!("handler: {e:?}"));
    MirrorSampleRun {
        store,
        repo,
        response: serde_json::to_value(&response).unwrap_or_else(|e| panic!("{e}")),
    }
}

/// The sample event of `verify-upload` (`events/verify-upload.json`) run
/// through its handler.
pub struct VerifySampleRun {
    /// Seeded by [`TestStore::with_sample_artifact`], plus the multipart
    /// upload of "four" the event names (under a fresh id), committed and
    /// waiting for its verification.
    pub store: TestStore,
    /// The event as run (the fresh upload id in it).
    pub request: shared::repository::VerifyRequest,
    /// The repository the handler ran on (no verifier of its own: it
    /// would ask for the next step, it does not run it): its call record
    /// holds only the handler's AWS calls.
    pub repo: Repository,
    pub step: shared::VerifyStep,
}

pub async fn run_verify_sample_event() -> VerifySampleRun {
    use shared::Verifier;
    let store = TestStore::with_sample_artifact().await;
    let n = name("my-app");
    let repo = store.another_repository().with_verifier(Verifier::Deferred);
    let (id, plan) = start_multipart(&repo, &n, b"four").await;
    send_parts(&repo, &store.http, &n, &id, b"four", &plan).await;
    let outcome = repo
        .commit(&n, &id, "ci")
        .await
        .unwrap_or_else(|e| panic!("commit: {e:?}"));
    assert!(
        matches!(outcome, shared::model::CommitOutcome::Verifying { .. }),
        "{outcome:?}"
    );
    let path = workspace_root().join("events/verify-upload.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let example: shared::repository::VerifyRequest =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let request: shared::repository::VerifyRequest =
        serde_json::from_str(&text.replace(&example.upload_id, &id))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let repo = store.another_repository().with_verifier(Verifier::Deferred);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let step = shared::verifier::handle(&repo, &request, Some(deadline))
        .await
        .unwrap_or_else(|e| panic!("handler: {e:?}"));
    VerifySampleRun {
        store,
        request,
        repo,
        step,
    }
}

/// A one-request pipeline: publish, and move `alias` to the new version
/// when given.
pub fn pipeline(alias: Option<&str>, force: bool) -> shared::model::Pipeline {
    shared::model::Pipeline {
        publish: true,
        force,
        alias: alias.map(|a| shared::model::AliasMove {
            name: a.parse().unwrap_or_else(|e| panic!("alias {a}: {e:?}")),
            weight: None,
            if_revision: None,
            message: None,
        }),
    }
}
