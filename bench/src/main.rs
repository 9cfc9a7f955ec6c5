//! `make bench`: this project and `versioned` 1.0.1 measured in one run on
//! one emulator, written to BENCHMARKS.md.
//!
//! - per operation: latency (median, p95), AWS calls (both sides counted by
//!   the emulator's own request counter) and sequential round trips; the
//!   library in three ways of holding sessions (`scripts/bench_library.py`),
//!   the ratio against the fastest of them;
//! - commit and publish latency by size, 1 KiB to 1 GiB;
//! - mirror lag (p50, p99) after commits and publishes;
//! - Lambda cold start of every function binary, from process start to its
//!   first poll of a local Lambda Runtime API and to its first answer, with
//!   peak RSS; beside it the library's import time and RSS;
//! - resolve throughput of the local server under load, beside the
//!   emulator's own ceiling for the request resolve makes;
//! - multipart upload time by parallelism (64 MiB and 1 GiB), verification
//!   throughput (1 GiB), and the `artifact` CLI's push and pull throughput
//!   and peak RSS (`transfers.rs`), each beside the emulator's own ceiling
//!   for the same bytes: one plain PUT or GET.

mod runtime_api;
mod transfers;
mod user_side;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shared::model::{AliasTarget, ChangeRequest, LOCAL_ACTOR, RetentionPolicy, UploadRequest};
use shared::{ArtifactName, Repository, Version, Weight};
use test_support::{
    TestStore, emulator, name, put_bytes, sha256_hex, upload_with, venv_python, workspace_root,
};

#[derive(Debug, Clone, Copy)]
struct Sample {
    ms: f64,
    calls: u64,
    /// Body bytes the emulator received and sent during the call.
    io: u64,
    /// Milliseconds the emulator spent applying the call's requests.
    emulator_ms: f64,
}

fn median_io(samples: &[Sample]) -> f64 {
    quantile(samples.iter().map(|s| s.io as f64).collect(), 0.5)
}

fn bytes(n: f64) -> String {
    if n >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / 1024.0 / 1024.0)
    } else {
        format!("{:.1} KiB", n / 1024.0)
    }
}

fn quantile(mut values: Vec<f64>, q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let index = ((values.len() - 1) as f64 * q).round() as usize;
    values[index]
}

fn median_ms(samples: &[Sample]) -> f64 {
    quantile(samples.iter().map(|s| s.ms).collect(), 0.5)
}

fn p95_ms(samples: &[Sample]) -> f64 {
    quantile(samples.iter().map(|s| s.ms).collect(), 0.95)
}

fn median_emulator_ms(samples: &[Sample]) -> f64 {
    quantile(samples.iter().map(|s| s.emulator_ms).collect(), 0.5)
}

/// Per operation, the median time the emulator spent applying the
/// operation's requests against the rest (client, transport, waits), for
/// this project and the library's reused configuration.
fn time_split(md: &mut String, rust: &Results, reused: Option<&Results>) {
    let _ = writeln!(md, "### Where the time goes\n");
    let _ = writeln!(
        md,
        "The same samples split in two: *emulator* is the time the emulator spent applying the operation's requests \
         (its `/__emulator/busy` counter: moto's own work, one request at a time), *rest* is the median latency minus that \
         (the client building, signing and parsing requests, loopback transport, HTTP handling outside moto). \
         On AWS the first part is the service's work, whose cost grows with round trips and items touched, not with moto's \
         per-attribute Python; the second part is this process or the library's.\n"
    );
    let _ = writeln!(
        md,
        "| operation | this project calls | emulator ms | rest ms | emulator ms per call | library calls | emulator ms | rest ms | emulator ms per call |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (op, o) in rust {
        let Some(l) = reused.and_then(|r| r.get(op)) else {
            continue;
        };
        let cells = |s: &[Sample]| {
            let (calls, emu) = (median_calls(s), median_emulator_ms(s));
            format!(
                "{calls} | {emu:.1} | {:.1} | {:.2}",
                (median_ms(s) - emu).max(0.0),
                emu / calls.max(1.0)
            )
        };
        let _ = writeln!(md, "| {op} | {} | {} |", cells(o), cells(l));
    }
    let _ = writeln!(md);
}

fn median_calls(samples: &[Sample]) -> f64 {
    quantile(samples.iter().map(|s| s.calls as f64).collect(), 0.5)
}

fn ms(d: &Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Where cargo builds: `$CARGO_TARGET_DIR` (relative to the workspace root
/// when relative), else `target/` — as the Makefile and scripts/release.sh.
fn target_dir() -> PathBuf {
    workspace_root().join(std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into()))
}

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Sizes of the by-size section: label, bytes, samples of this project.
const SIZES: [(&str, usize, usize); 5] = [
    ("1 KiB", KIB, 10),
    ("1 MiB", MIB, 10),
    ("64 MiB", 64 * MIB, 5),
    ("256 MiB", 256 * MIB, 3),
    ("1 GiB", 1024 * MIB, 3),
];

/// Sequential round trips to AWS per operation of this project, from the
/// code (the `AWS calls:` comments in service/src/*.rs and the
/// functions they describe); `None` where it depends on the data.
fn our_round_trips(op: &str) -> Option<&'static str> {
    Some(match op {
        // HeadObject ∥ BatchGetItem, then TransactWriteItems.
        "commit 1 KiB" | "commit 1 MiB" => "2",
        // UpdateItem, then TransactWriteItems (unchanged LATEST: UpdateItem, GetItem).
        "publish" => "2",
        "get version" | "list 50 versions" | "get alias" | "resolve alias" => "1",
        // BatchGetItem, then TransactWriteItems.
        "put alias" => "2",
        // Query, then UpdateItem.
        "delete version" => "2",
        _ => return None,
    })
}

async fn emulator_requests(http: &reqwest::Client) -> u64 {
    emulator_counter(http, "requests").await
}

async fn emulator_bytes(http: &reqwest::Client) -> u64 {
    emulator_counter(http, "bytes").await
}

async fn emulator_counter(http: &reqwest::Client, counter: &str) -> u64 {
    let url = format!("{}/__emulator/{counter}", emulator().endpoint);
    match http.get(url).send().await {
        Ok(r) => r
            .text()
            .await
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// Declares and PUTs `bytes` (not timed: the client sends them to S3); returns the upload id.
async fn stage(
    repo: &Repository,
    http: &reqwest::Client,
    n: &ArtifactName,
    bytes: &[u8],
) -> String {
    let request = UploadRequest {
        sha256: sha256_hex(bytes),
        size: bytes.len() as u64,
        content_type: None,
        metadata: Default::default(),
        part_size: None,
        key: None,
    };
    let ticket = repo
        .create_upload(n, request, LOCAL_ACTOR)
        .await
        .expect("create upload");
    put_bytes(http, &ticket, bytes).await;
    ticket.upload_id
}

fn random_bytes(len: usize) -> Vec<u8> {
    let block: Vec<u8> = (0..1024 * 1024.min(len.max(1)))
        .map(|_| rand::random::<u8>())
        .collect();
    block.iter().copied().cycle().take(len).collect()
}

struct Measure<'a> {
    http: &'a reqwest::Client,
    results: BTreeMap<String, Vec<Sample>>,
}

impl Measure<'_> {
    async fn time<F: std::future::Future>(&mut self, op: &str, f: F) {
        let before = emulator_requests(self.http).await;
        let bytes_before = emulator_bytes(self.http).await;
        let busy_before = emulator_counter(self.http, "busy").await;
        let start = Instant::now();
        f.await;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        let emulator_ms = (emulator_counter(self.http, "busy").await - busy_before) as f64 / 1000.0;
        let io = emulator_bytes(self.http).await - bytes_before;
        let calls = emulator_requests(self.http).await - before;
        self.results.entry(op.to_owned()).or_default().push(Sample {
            ms,
            calls,
            io,
            emulator_ms,
        });
    }
}

async fn ours(iterations: usize) -> BTreeMap<String, Vec<Sample>> {
    let store = TestStore::new().await;
    let (repo, http) = (&store.repo, &store.http);
    let mut m = Measure {
        http,
        results: BTreeMap::new(),
    };
    for (op, size) in [("commit 1 KiB", 1024), ("commit 1 MiB", 1024 * 1024)] {
        let n = name(&format!("rs-{}", size));
        for _ in 0..iterations {
            let id = stage(repo, http, &n, &random_bytes(size)).await;
            m.time(op, async {
                repo.commit_upload(&n, &id, LOCAL_ACTOR)
                    .await
                    .expect("commit")
            })
            .await;
        }
    }
    let n = name("rs-pub");
    for _ in 0..iterations {
        upload_with(repo, http, &n, &random_bytes(64)).await;
        m.time("publish", async {
            repo.publish_version(&n, false, LOCAL_ACTOR)
                .await
                .expect("publish")
        })
        .await;
    }
    for _ in 0..iterations {
        m.time("get version", async {
            repo.get_version(&n, Version::Number(1)).await.expect("get")
        })
        .await;
    }
    let list = name("rs-list");
    for _ in 0..50 {
        upload_with(repo, http, &list, &random_bytes(32)).await;
        repo.publish_version(&list, false, LOCAL_ACTOR)
            .await
            .expect("publish");
    }
    for _ in 0..iterations {
        m.time("list 50 versions", async {
            repo.list_versions(&list, Some(100), None)
                .await
                .expect("list")
        })
        .await;
    }
    let prod = "prod".parse().expect("alias");
    for i in 0..iterations as u32 {
        let split = AliasTarget {
            version: Version::Number(i % 50 + 1),
            secondary: Some((
                Version::Number((i + 1) % 50 + 1),
                Weight::new(10).expect("weight"),
            )),
        };
        m.time("put alias", async {
            repo.put_alias(&list, &prod, split, &ChangeRequest::default())
                .await
                .expect("put alias")
        })
        .await;
    }
    for _ in 0..iterations {
        m.time("get alias", async {
            repo.get_alias(&list, &prod).await.expect("get alias")
        })
        .await;
    }
    for _ in 0..iterations {
        m.time("resolve alias", async {
            repo.resolve_alias(&list, &prod, None)
                .await
                .expect("resolve")
        })
        .await;
    }
    let del = name("rs-del");
    for _ in 0..iterations {
        upload_with(repo, http, &del, &random_bytes(64)).await;
        let v = repo
            .publish_version(&del, false, LOCAL_ACTOR)
            .await
            .expect("publish")
            .artifact
            .version;
        m.time("delete version", async {
            repo.delete_version(&del, v, None, shared::repository::Allowed::already())
                .await
                .expect("delete")
        })
        .await;
    }
    for i in 0..3 {
        let purge = name(&format!("rs-purge-{i}"));
        for _ in 0..50 {
            upload_with(repo, http, &purge, &random_bytes(32)).await;
            repo.publish_version(&purge, false, LOCAL_ACTOR)
                .await
                .expect("publish");
        }
        let policy = RetentionPolicy {
            keep_last_n: 10,
            older_than: Duration::ZERO,
        };
        m.time("purge 50 keeping 10", async {
            repo.purge_versions(&purge, policy, false)
                .await
                .expect("purge")
        })
        .await;
    }
    m.results
}

/// Commit, then publish, at each of [`SIZES`], every sample on an artifact
/// of its own: the bytes are staged first (not timed: the client PUTs them
/// to S3 on the presigned URL), then `commit_upload` is timed, then
/// `publish_version` of that LATEST. Ops "commit {size}", "publish {size}".
async fn ours_by_size() -> BTreeMap<String, Vec<Sample>> {
    let store = TestStore::new().await;
    let (repo, http) = (&store.repo, &store.http);
    let mut m = Measure {
        http,
        results: BTreeMap::new(),
    };
    for (label, size, n) in SIZES {
        eprintln!("bench: commit and publish {label}…");
        let content = random_bytes(size);
        for i in 0..n {
            let a = name(&format!("rs-size-{}-{i}", label.replace(' ', "")));
            let id = stage(repo, http, &a, &content).await;
            m.time(&format!("commit {label}"), async {
                repo.commit_upload(&a, &id, LOCAL_ACTOR)
                    .await
                    .expect("commit")
            })
            .await;
            m.time(&format!("publish {label}"), async {
                repo.publish_version(&a, false, LOCAL_ACTOR)
                    .await
                    .expect("publish")
            })
            .await;
        }
    }
    m.results
}

struct MirrorLag {
    /// Per stream record: its ApproximateCreationDateTime → the mirror done with it.
    after_commit: Vec<Duration>,
    after_publish: Vec<Duration>,
    /// Per operation: the operation returned → `drain_mirror` returned.
    wall_commit: Vec<Duration>,
    wall_publish: Vec<Duration>,
}

/// `iterations` × (commit new bytes; drain the mirror; publish; drain the
/// mirror) on one artifact of a store of its own.
async fn mirror_lag(iterations: usize) -> MirrorLag {
    let store = TestStore::new().await;
    let (repo, http) = (&store.repo, &store.http);
    let n = name("rs-mirror");
    // Connects the poller and handles whatever bootstrap wrote.
    store.drain_mirror().await;
    let mut lag = MirrorLag {
        after_commit: Vec::new(),
        after_publish: Vec::new(),
        wall_commit: Vec::new(),
        wall_publish: Vec::new(),
    };
    for _ in 0..iterations {
        let id = stage(repo, http, &n, &random_bytes(KIB)).await;
        // The pending upload's own record, so that the next drain sees the commit's only.
        store.drain_mirror().await;
        repo.commit_upload(&n, &id, LOCAL_ACTOR)
            .await
            .expect("commit");
        let returned = Instant::now();
        lag.after_commit.extend(store.drain_mirror().await);
        lag.wall_commit.push(returned.elapsed());
        repo.publish_version(&n, false, LOCAL_ACTOR)
            .await
            .expect("publish");
        let returned = Instant::now();
        lag.after_publish.extend(store.drain_mirror().await);
        lag.wall_publish.push(returned.elapsed());
    }
    lag
}

type Results = BTreeMap<String, Vec<Sample>>;

/// The library's per-operation results by configuration ("reused", "bsm",
/// "per call"; see scripts/bench_library.py), and its by-size results.
struct Library {
    configs: BTreeMap<String, Results>,
    sizes: Results,
}

fn parse_results(json: &serde_json::Value) -> Results {
    json.as_object()
        .expect("object")
        .iter()
        .map(|(op, samples)| {
            let samples = samples
                .as_array()
                .expect("samples")
                .iter()
                .map(|s| Sample {
                    ms: s["ms"].as_f64().unwrap_or(f64::NAN),
                    calls: s["calls"].as_u64().unwrap_or(0),
                    io: s["io"].as_u64().unwrap_or(0),
                    emulator_ms: s["emulator_ms"].as_f64().unwrap_or(f64::NAN),
                })
                .collect();
            (op.clone(), samples)
        })
        .collect()
}

/// `BENCH_QUICK=1`: the per-operation comparison only (this project against
/// the library's reused configuration), printed, BENCHMARKS.md untouched.
/// For iterating on one operation's cost.
async fn quick(iterations: usize) {
    let rust = ours(iterations).await;
    let lib = library_with(iterations, "quick");
    let reused = &lib.configs["reused"];
    println!("| operation | ours median ms | calls | library median ms | calls | ratio |");
    for (op, samples) in &rust {
        let Some(theirs) = reused.get(op) else {
            continue;
        };
        let (a, b) = (median_ms(samples), median_ms(theirs));
        println!(
            "| {op} | {a:.1} | {} | {b:.1} | {} | {:.2} |",
            median_calls(samples),
            median_calls(theirs),
            a / b
        );
    }
    let mut md = String::new();
    time_split(&mut md, &rust, Some(reused));
    println!("{md}");
}

fn library(iterations: usize) -> Library {
    library_with(iterations, "full")
}

fn library_with(iterations: usize, mode: &str) -> Library {
    // The library writes into a store of its own on the same emulator.
    let runtime = tokio::runtime::Handle::current();
    let store = tokio::task::block_in_place(|| runtime.block_on(TestStore::new()));
    let output = Command::new(venv_python())
        .arg(workspace_root().join("scripts/bench_library.py"))
        .args([
            &emulator().endpoint,
            &store.config.bucket,
            &store.config.table,
            &iterations.to_string(),
            mode,
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("run bench_library.py");
    assert!(output.status.success(), "bench_library.py failed");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("library JSON");
    Library {
        configs: json["configs"]
            .as_object()
            .expect("configs")
            .iter()
            .map(|(config, results)| (config.clone(), parse_results(results)))
            .collect(),
        sizes: parse_results(&json["sizes"]),
    }
}

struct ColdStart {
    init_ms: f64,
    first_answer_ms: f64,
    peak_rss_kib: u64,
    answer: String,
}

async fn cold_start(binary: &std::path::Path, function: &str) -> Option<ColdStart> {
    let store = TestStore::with_sample_artifact().await;
    let event =
        std::fs::read_to_string(workspace_root().join(format!("events/{function}.json"))).ok()?;
    let api = runtime_api::start(event).await;
    let start = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", &api.address)
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .env("AWS_LAMBDA_LOG_LEVEL", "ERROR")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL", &emulator().endpoint)
        .env("BUCKET_NAME", &store.config.bucket)
        .env("TABLE_NAME", &store.config.table)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let timeline = loop {
        let t = api.timeline.lock().ok()?.clone();
        if t.answered.is_some() || Instant::now() > deadline {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let peak_rss_kib = vm_hwm_kib(child.id()).unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    Some(ColdStart {
        init_ms: timeline.first_next?.duration_since(start).as_secs_f64() * 1000.0,
        first_answer_ms: timeline.answered?.duration_since(start).as_secs_f64() * 1000.0,
        peak_rss_kib,
        answer: timeline.answer.unwrap_or_default(),
    })
}

/// The peak RSS of process `pid` (VmHWM of `/proc/<pid>/status`, KiB);
/// `None` when there is no such line (no /proc, or the process has exited).
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The release `local-api` (`make bench` builds it) over `store` on a free
/// loopback port, with `env` besides: the process and its base URL once it
/// answers; `None` when the binary is missing or does not answer.
async fn start_local_api(
    store: &TestStore,
    env: &[(&str, &str)],
) -> Option<(std::process::Child, String)> {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
        listener.local_addr().ok()?.port()
    };
    let mut server = Command::new(target_dir().join("lambda-x86-64/local-api/bootstrap"))
        .env("AWS_ENDPOINT_URL", &emulator().endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("BUCKET_NAME", &store.config.bucket)
        .env("TABLE_NAME", &store.config.table)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "error")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(format!("{base}/artifacts")).send().await.is_ok() {
            return Some((server, base));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = server.kill();
    let _ = server.wait();
    None
}

/// `concurrency` loops issuing `request` for `seconds`: requests/s, median ms, errors.
async fn load<F, Fut>(concurrency: usize, seconds: u64, request: F) -> (f64, f64, u64)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let end = Instant::now() + Duration::from_secs(seconds);
    let workers = (0..concurrency).map(|_| {
        let request = request.clone();
        tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < end {
                let start = Instant::now();
                if request().await {
                    latencies.push(start.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        })
    });
    let mut all = Vec::new();
    let mut errors = 0;
    for (latencies, e) in futures::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
    {
        all.extend(latencies);
        errors += e;
    }
    (
        all.len() as f64 / seconds as f64,
        quantile(all, 0.5),
        errors,
    )
}

async fn throughput() -> (f64, f64, u64, f64, f64) {
    let store = TestStore::with_sample_artifact().await;
    let n = name("my-app");
    let split = AliasTarget {
        version: Version::Number(1),
        secondary: Some((Version::Number(2), Weight::new(20).expect("w"))),
    };
    store
        .repo
        .put_alias(
            &n,
            &"prod".parse().expect("alias"),
            split,
            &ChangeRequest::default(),
        )
        .await
        .expect("alias");
    let (mut server, base) = start_local_api(&store, &[])
        .await
        .expect("start the release local-api (make bench builds it)");
    let http = reqwest::Client::new();
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (api_rps, api_ms, api_errors) = load(16, 8, move || {
        let (http, base) = (http.clone(), base.clone());
        let key = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async move {
            let url = format!("{base}/artifacts/my-app/aliases/prod/resolve?key=runner-{key}");
            http.get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    let _ = server.kill();
    let _ = server.wait();
    // The emulator's own ceiling for what one resolve costs it: one BatchGetItem.
    let ddb = aws_sdk_dynamodb::Client::new(&store.sdk);
    let table = store.config.table.clone();
    let (emulator_rps, emulator_ms, _) = load(16, 8, move || {
        let (ddb, table) = (ddb.clone(), table.clone());
        async move {
            let key = |pk: &str, sk: &str| {
                std::collections::HashMap::from([
                    (
                        "pk".to_owned(),
                        aws_sdk_dynamodb::types::AttributeValue::S(pk.into()),
                    ),
                    (
                        "sk".to_owned(),
                        aws_sdk_dynamodb::types::AttributeValue::S(sk.into()),
                    ),
                ])
            };
            let Ok(keys) = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                .keys(key("__my-app-alias", "prod"))
                .keys(key("my-app", "LATEST"))
                .consistent_read(true)
                .build()
            else {
                return false;
            };
            ddb.batch_get_item()
                .request_items(table, keys)
                .send()
                .await
                .is_ok()
        }
    })
    .await;
    (api_rps, api_ms, api_errors, emulator_rps, emulator_ms)
}

fn python_import() -> (f64, f64, f64) {
    let mut imports = Vec::new();
    let mut processes = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let output = Command::new(venv_python())
            .arg(workspace_root().join("scripts/bench_library.py"))
            .arg("import")
            .output()
            .expect("python import");
        processes.push(start.elapsed().as_secs_f64() * 1000.0);
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        imports.push(json["import_ms"].as_f64().unwrap_or(f64::NAN));
        rss.push(json["peak_rss_kib"].as_f64().unwrap_or(f64::NAN));
    }
    (
        quantile(imports, 0.5),
        quantile(processes, 0.5),
        quantile(rss, 0.5),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    // Both sides and every counter read one emulator (`emulator()`): the
    // stores must not be spread over several.
    if std::env::var(test_support::EMULATORS_SETTING).is_ok_and(|v| v.trim() != "1") {
        eprintln!(
            "bench: unset {} (or set it to 1): both sides and the request counters use one emulator",
            test_support::EMULATORS_SETTING
        );
        std::process::exit(2);
    }
    let iterations: usize = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    if std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1") {
        return quick(iterations).await;
    }
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "user") {
        // The HTTP and growth tables alone: printed, and put in place of
        // their section of BENCHMARKS.md (the rest of it is left as it was).
        let section = user_side::tables(iterations).await;
        let path = workspace_root().join("BENCHMARKS.md");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        std::fs::write(&path, user_side::splice(&old, &section)).expect("write BENCHMARKS.md");
        return;
    }
    let lambda_dir = target_dir().join("lambda-x86-64");
    let mut md = String::new();
    let started = Instant::now();

    eprintln!("bench: per-operation, this project ({iterations} iterations)…");
    let rust = ours(iterations).await;
    let sized = ours_by_size().await;
    eprintln!("bench: mirror lag ({iterations} commits and publishes)…");
    let lag = mirror_lag(iterations).await;
    eprintln!("bench: versioned 1.0.1, per operation in three configurations, then by size…");
    let lib = library(iterations);
    let configs = ["reused", "bsm", "per call"];

    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `make bench` ({}), one run on one machine (2 cores, shared and noisy): quote medians and ratios only. \
         Both sides run in-process against the same local emulator (moto, each request applied atomically); \
         **AWS calls are counted by the emulator itself** for both. Latencies are emulator round trips on loopback, \
         so they rank designs by round trips and work per call, not absolute AWS latency.\n",
        iterations_note(iterations)
    );
    let _ = writeln!(md, "## Per operation\n");
    let _ = writeln!(
        md,
        "`versioned` 1.0.1 is measured in three ways of holding AWS sessions (`scripts/bench_library.py`), each on artifacts of its own:\n\n\
         - **reused** — `repo.bootstrap(bsm)` once, then every call without `bsm`: bootstrap binds s3pathlib and the library's \
         PynamoDB models to that one session, so one S3 client and one DynamoDB connection serve every call. This is the \
         library's fastest configuration;\n\
         - **bsm** — one `BotoSesManager` passed as `bsm=` to every call (what this benchmark measured before). Its S3 client is reused, \
         but `use_boto_session` (pynamodb_session_manager) drops the model's DynamoDB connection when entering and leaving \
         every call that touches DynamoDB, so each such call builds a new botocore client;\n\
         - **per call** — the quick-start usage, a session passed per call: a new `BotoSesManager` (built as `scripts/interop.py` builds it) \
         for every call, inside the timed region, so a new boto3 session and new clients each call.\n\n\
         *Round trips* are sequential requests to AWS: for this project a fixed figure per operation, read from the code \
         (the `AWS calls:` comments in `service/src/*.rs` and the code they describe); the library issues its calls one after \
         another, so its round trips are its calls (measured, reused configuration). \
         The last column divides this project's median by the **fastest** library median for that operation \
         (reused unless another configuration is named).\n"
    );
    let _ = writeln!(
        md,
        "| operation | round trips | this project median ms | p95 ms | AWS calls \
         | library reused median ms | p95 ms | AWS calls \
         | library bsm median ms | p95 ms | AWS calls \
         | library per call median ms | p95 ms | AWS calls \
         | library round trips | ratio (project / fastest library) |"
    );
    let _ = writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let order = [
        "commit 1 KiB",
        "commit 1 MiB",
        "publish",
        "get version",
        "list 50 versions",
        "put alias",
        "get alias",
        "resolve alias",
        "delete version",
        "purge 50 keeping 10",
    ];
    // (operation, project / fastest library, fastest configuration, project / library per call)
    let mut ratios = Vec::new();
    for op in order {
        let Some(o) = rust.get(op) else {
            continue;
        };
        let mut row = format!(
            "| {op} | {} | {:.1} | {:.1} | {} ",
            our_round_trips(op).unwrap_or("—"),
            median_ms(o),
            p95_ms(o),
            median_calls(o)
        );
        let mut fastest: Option<(&str, f64)> = None;
        for config in configs {
            match lib.configs.get(config).and_then(|r| r.get(op)) {
                Some(l) => {
                    let _ = write!(
                        row,
                        "| {:.1} | {:.1} | {} ",
                        median_ms(l),
                        p95_ms(l),
                        median_calls(l)
                    );
                    if fastest.is_none_or(|(_, m)| median_ms(l) < m) {
                        fastest = Some((config, median_ms(l)));
                    }
                }
                None => row.push_str("| — | — | — "),
            }
        }
        let round_trips = lib
            .configs
            .get("reused")
            .and_then(|r| r.get(op))
            .map_or("—".to_owned(), |l| median_calls(l).to_string());
        let per_call = lib
            .configs
            .get("per call")
            .and_then(|r| r.get(op))
            .map(|l| median_ms(l));
        match fastest {
            Some((config, fastest_ms)) => {
                let ratio = median_ms(o) / fastest_ms;
                let named = if config == "reused" {
                    String::new()
                } else {
                    format!(" ({config})")
                };
                let _ = writeln!(md, "{row}| {round_trips} | {ratio:.2}{named} |");
                ratios.push((op, ratio, config, per_call.map(|p| median_ms(o) / p)));
            }
            None => {
                let _ = writeln!(md, "{row}| {round_trips} | — |");
            }
        }
    }
    let faster: Vec<String> = ratios
        .iter()
        .filter(|(_, r, ..)| *r < 1.0)
        .map(|(op, r, ..)| format!("{op} {:.1}×", 1.0 / r))
        .collect();
    let slower: Vec<String> = ratios
        .iter()
        .filter(|(_, r, ..)| *r >= 1.0)
        .map(|(op, r, ..)| format!("{op} (ratio {r:.2})"))
        .collect();
    let _ = writeln!(
        md,
        "\nAgainst the library's **fastest** configuration, this project's median is lower on {} of {} operations: {}.{}",
        faster.len(),
        ratios.len(),
        if faster.is_empty() {
            "none".to_owned()
        } else {
            faster.join(", ")
        },
        if slower.is_empty() {
            String::new()
        } else {
            format!(" It is not faster on: {}.", slower.join(", "))
        }
    );
    let per_call: Vec<f64> = ratios.iter().filter_map(|(_, _, _, p)| *p).collect();
    if !per_call.is_empty() {
        let lo = per_call.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = per_call.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            md,
            "Against the quick-start usage (per call) the medians are {:.1}× to {:.1}× lower; \
             that gap is mostly the library building sessions and clients per call, not its design, so it is not the comparison to quote.",
            1.0 / hi,
            1.0 / lo
        );
    }
    let _ = writeln!(
        md,
        "\n\"commit\" is `PUT /artifacts/{{name}}` for this project (the bytes went to S3 beforehand, straight from the client, \
         on a presigned URL; not timed) and `put_artifact` for the library (bytes through the caller). \"publish\" of this project \
         always finds LATEST changed here; an unchanged LATEST costs UpdateItem, then GetItem (2 round trips). \"resolve alias\" for the library \
         is `get_alias` + `random_artifact`; it has no download URL to sign. Purge's round trips depend on the versions purged.\n"
    );

    time_split(&mut md, &rust, lib.configs.get("reused"));

    md.push_str(&user_side::tables(iterations).await);
    let _ = writeln!(md, "## Commit and publish latency by artifact size\n");
    let _ = writeln!(
        md,
        "Each sample on an artifact of its own. This project: the bytes are staged first (start upload and the PUT on the presigned URL, \
         not timed), then `commit_upload` is timed, then `publish_version` of that LATEST. The library (reused configuration): \
         `put_artifact` (the bytes through the caller), then `publish_artifact_version`. *Bytes* are the request and response bodies \
         the emulator received and sent during commit + publish.\n"
    );
    let _ = writeln!(
        md,
        "| size | this project commit median ms | publish median ms | bytes to/from AWS | samples \
         | library put_artifact median ms | publish median ms | bytes to/from AWS | samples |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let get = |results: &Results, op: &str| results.get(op).filter(|s| !s.is_empty()).cloned();
    for (label, ..) in SIZES {
        let (commit, publish) = (
            get(&sized, &format!("commit {label}")),
            get(&sized, &format!("publish {label}")),
        );
        let (put, lib_publish) = (
            get(&lib.sizes, &format!("put {label}")),
            get(&lib.sizes, &format!("publish {label}")),
        );
        let cell = |s: &Option<Vec<Sample>>| {
            s.as_deref()
                .map_or("—".into(), |s| format!("{:.1}", median_ms(s)))
        };
        let io = |a: &Option<Vec<Sample>>, b: &Option<Vec<Sample>>| match (a, b) {
            (Some(a), Some(b)) => bytes(median_io(a) + median_io(b)),
            _ => "—".into(),
        };
        let count = |s: &Option<Vec<Sample>>| s.as_ref().map_or(0, Vec::len);
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&commit),
            cell(&publish),
            io(&commit, &publish),
            count(&commit),
            cell(&put),
            cell(&lib_publish),
            io(&put, &lib_publish),
            count(&put),
        );
    }
    let growth = |results: &Results, op: &str| match (
        get(results, &format!("{op} 1 GiB")),
        get(results, &format!("{op} 1 KiB")),
    ) {
        (Some(big), Some(small)) => median_ms(&big) / median_ms(&small),
        _ => f64::NAN,
    };
    let (commit_growth, publish_growth) = (growth(&sized, "commit"), growth(&sized, "publish"));
    let _ = writeln!(
        md,
        "\n**1 GiB / 1 KiB median latency: this project's commit {commit_growth:.2}, publish {publish_growth:.2}** (the goal: ≤ 1.2, flat; {}); \
         the library's put_artifact {:.0}×, publish {:.0}×.\n",
        if commit_growth <= 1.2 && publish_growth <= 1.2 {
            "met"
        } else {
            "NOT met in this run: the bytes exchanged are the same at every size, so the growth is time \
             spent inside the emulator for the same requests"
        },
        growth(&lib.sizes, "put"),
        growth(&lib.sizes, "publish"),
    );
    let _ = writeln!(
        md,
        "Neither commit nor publish of this project touches the bytes: commit is HeadObject ∥ BatchGetItem, then one \
         TransactWriteItems (3 calls, 2 round trips); publish is UpdateItem, then one TransactWriteItems (2 calls, 2 round trips); \
         no copy of any object. The bytes exchanged are the same few KiB at every size. The library moves the artifact through the \
         caller on put_artifact, and its publish copies the object to the version's key (CopyObject), which moto carries out in \
         Python in time proportional to the size (on S3, server-side). A size whose library sample took over {} s is measured once.\n",
        120
    );

    let _ = writeln!(md, "## Mirror lag\n");
    let _ = writeln!(
        md,
        "The mirror (copies of the blobs to the Python library's layout) is driven by the table's DynamoDB stream. Locally it is \
         the same handler (`shared::mirror`) fed by a poller over the emulator's stream (`shared::mirror::poller::StreamPoller`, \
         which `local-api` runs every 50 ms). Here, {iterations} × (commit 1 KiB of new bytes; publish) on one artifact, each followed \
         immediately by `TestStore::drain_mirror`, which runs that poller and handler until the stream has nothing new (the \
         pending upload's record is drained before the commit, untimed). So the figures exclude the wait for the next poll \
         (≤ 50 ms with `local-api`; on AWS, the event source mapping's own delay).\n\n\
         - **record lag**: per stream record, its `ApproximateCreationDateTime` → the mirror done with its batch. moto stamps \
         records with the time of the write and sends it as epoch seconds with millisecond resolution, so this is measured to \
         about 1 ms here (on AWS the field has whole-second resolution);\n\
         - **wall**: the commit or publish returned → `drain_mirror` returned (every record of that operation handled).\n"
    );
    let _ = writeln!(
        md,
        "| after | records | record lag p50 ms | p99 ms | operations | wall p50 ms | p99 ms |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
    let both_lags: Vec<Duration> = lag
        .after_commit
        .iter()
        .chain(&lag.after_publish)
        .copied()
        .collect();
    let both_walls: Vec<Duration> = lag
        .wall_commit
        .iter()
        .chain(&lag.wall_publish)
        .copied()
        .collect();
    for (label, lags, walls) in [
        ("commit", &lag.after_commit, &lag.wall_commit),
        ("publish", &lag.after_publish, &lag.wall_publish),
        ("both", &both_lags, &both_walls),
    ] {
        let q = |v: &Vec<Duration>, p| quantile(v.iter().map(ms).collect(), p);
        let _ = writeln!(
            md,
            "| {label} | {} | {:.1} | {:.1} | {} | {:.1} | {:.1} |",
            lags.len(),
            q(lags, 0.5),
            q(lags, 0.99),
            walls.len(),
            q(walls, 0.5),
            q(walls, 0.99),
        );
    }
    let _ = writeln!(
        md,
        "\nWith {iterations} operations of each kind, p99 is close to the largest sample.\n"
    );
    eprintln!("bench: cold starts…");
    let _ = writeln!(md, "## Lambda cold start\n");
    let _ = writeln!(
        md,
        "Each release binary (`cargo lambda build --release`, x86_64) started against a local Lambda Runtime API of the project's \
         (`bench/src/runtime_api.rs`) with its sample event; median of 3 starts. *init* = process start → first poll for work \
         (config read, SDK clients built); *first answer* = process start → the event's response posted (one emulator round trip \
         or more); peak RSS after that request.\n"
    );
    let _ = writeln!(
        md,
        "| function | init ms | first answer ms | peak RSS MiB | first answer |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---|");
    let mut functions: Vec<String> = std::fs::read_dir(workspace_root().join("functions"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    functions.sort();
    for function in &functions {
        let binary = lambda_dir.join(function).join("bootstrap");
        let mut runs = Vec::new();
        for _ in 0..3 {
            if let Some(run) = cold_start(&binary, function).await {
                runs.push(run);
            }
        }
        if runs.is_empty() {
            let _ = writeln!(
                md,
                "| {function} | — | — | — | binary missing: run `make release` |"
            );
            continue;
        }
        let status = runs[0]
            .answer
            .split(':')
            .next()
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_owned();
        let code = serde_json::from_str::<serde_json::Value>(
            runs[0].answer.split_once(": ").map(|x| x.1).unwrap_or(""),
        )
        .ok()
        .and_then(|v| {
            v.get("statusCode")
                .and_then(|s| s.as_u64())
                .map(|s| format!("HTTP {s}"))
        })
        .unwrap_or_else(|| status.clone());
        let _ = writeln!(
            md,
            "| {function} | {:.1} | {:.1} | {:.1} | {code} |",
            quantile(runs.iter().map(|r| r.init_ms).collect(), 0.5),
            quantile(runs.iter().map(|r| r.first_answer_ms).collect(), 0.5),
            quantile(
                runs.iter()
                    .map(|r| r.peak_rss_kib as f64 / 1024.0)
                    .collect(),
                0.5
            ),
        );
    }
    let (import_ms, process_ms, rss_kib) = python_import();
    let _ = writeln!(
        md,
        "\nFor comparison, `versioned` 1.0.1 in CPython 3.11: `from versioned.api import s3_and_dynamodb_backend` takes **{import_ms:.0} ms** \
         (the whole interpreter process, start to exit: {process_ms:.0} ms) and peaks at **{:.1} MiB** RSS, before it makes any AWS call.\n",
        rss_kib / 1024.0
    );

    eprintln!("bench: resolve throughput…");
    let (api_rps, api_ms, api_errors, emulator_rps, emulator_ms) = throughput().await;
    let _ = writeln!(md, "## Resolve throughput\n");
    let _ = writeln!(
        md,
        "16 concurrent keep-alive clients for 8 s (the project's own load generator in `bench/`), each request \
         `GET /artifacts/my-app/aliases/prod/resolve?key=…` on the release `local-api` (a 20 % canary split). \
         Beside it, the emulator's ceiling measured the same way for what one resolve costs it: one BatchGetItem.\n"
    );
    let _ = writeln!(md, "| target | requests/s | median ms | errors |");
    let _ = writeln!(md, "|---|---:|---:|---:|");
    let _ = writeln!(
        md,
        "| local-api resolve | {api_rps:.0} | {api_ms:.1} | {api_errors} |"
    );
    let _ = writeln!(
        md,
        "| emulator BatchGetItem (ceiling) | {emulator_rps:.0} | {emulator_ms:.1} | — |"
    );
    let _ = writeln!(
        md,
        "\nResolve makes exactly one emulator request, so it cannot exceed the emulator's ceiling; the ratio \
         ({:.0} %) shows how much the server itself costs on top.\n",
        api_rps / emulator_rps * 100.0
    );
    md.push_str(&transfers::multipart().await);
    md.push_str(&transfers::verification().await);
    md.push_str(&transfers::cli().await);
    let _ = writeln!(
        md,
        "_Bench run took {:.0} s._",
        started.elapsed().as_secs_f64()
    );
    std::fs::write(workspace_root().join("BENCHMARKS.md"), &md).expect("write BENCHMARKS.md");
    println!("{md}");
}

fn iterations_note(iterations: usize) -> String {
    format!(
        "{iterations} iterations per operation; 3 for purge; by size, the sample counts in its table"
    )
}
