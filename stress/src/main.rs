//! `make stress`: the API under parallel load and under injected faults.
//!
//! 1. concurrency — through the local server: 64 parallel publishes, 32
//!    commits interleaved with 32 publishes, 32 parallel alias moves.
//! 2. faults — the local server's repository talks to the emulator through a
//!    proxy that injects 503s, 500s, connection resets (before and after the
//!    request reached the emulator) and delays (`FAULT_RATE`, default 0.2). A
//!    scripted workload of every operation runs; then the store is audited
//!    directly: every request got its success or a clear JSON error, every
//!    live version serves bytes matching its sha256, no alias points at a
//!    missing version, no published number was overwritten.
//!
//! Each section prints `N passed, N failed`; the process fails if any check did.

use test_support::proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures::future::join_all;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shared::{Config, Repository};
use test_support::{TestStore, emulator};

/// Pass/fail bookkeeping of one section.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: Vec<String>,
}

impl Tally {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
        } else {
            let what = what();
            eprintln!("  FAILED: {what}");
            self.failed.push(what);
        }
    }

    fn report(&self, section: &str) {
        println!(
            "{section}: {} passed, {} failed",
            self.passed,
            self.failed.len()
        );
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A client of the local server.
#[derive(Clone)]
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn start(repo: Repository) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(local_api::serve(listener, Arc::new(repo)));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self { base, http }
    }

    /// One call: status and JSON body (`Null` when empty, `{"unparsable": text}` when not JSON).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(
            method.parse().expect("method"),
            format!("{}{}", self.base, path),
        );
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        match request.send().await {
            Err(e) => (0, json!({"transport": e.to_string()})),
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                let value = if text.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text).unwrap_or_else(|_| json!({"unparsable": text}))
                };
                (status, value)
            }
        }
    }

    /// Start, PUT (retrying the PUT itself a few times), commit.
    async fn upload(&self, name: &str, bytes: &[u8], log: &Log) -> Option<Value> {
        let declared = json!({"sha256": sha256_hex(bytes), "size": bytes.len()});
        let (status, ticket) = self
            .call(
                "POST",
                &format!("/artifacts/{name}/uploads"),
                Some(declared),
            )
            .await;
        log.record("start-upload", status, &ticket);
        if status != 201 {
            return None;
        }
        let mut stored = false;
        for _ in 0..5 {
            let mut put = self.http.put(ticket["url"].as_str()?).body(bytes.to_vec());
            for (k, v) in ticket["headers"].as_object()? {
                put = put.header(k, v.as_str()?);
            }
            if put.send().await.is_ok_and(|r| r.status().is_success()) {
                stored = true;
                break;
            }
        }
        if !stored {
            return None;
        }
        let commit = json!({"upload_id": ticket["upload_id"]});
        let (status, committed) = self
            .call("PUT", &format!("/artifacts/{name}"), Some(commit))
            .await;
        log.record("commit-upload", status, &committed);
        (status == 200).then_some(committed)
    }
}

/// Every answer the workload got, for the "success or a clear error" audit.
#[derive(Default)]
struct Log {
    answers: Mutex<Vec<(String, u16, Value)>>,
}

impl Log {
    fn record(&self, operation: &str, status: u16, body: &Value) {
        if let Ok(mut answers) = self.answers.lock() {
            answers.push((operation.to_owned(), status, body.clone()));
        }
    }
}

async fn concurrency(tally: &mut Tally) {
    let store = TestStore::new().await;
    let api = Api::start(store.another_repository()).await;
    let log = Log::default();

    // 64 parallel publishes → 64 distinct consecutive versions.
    api.upload("race", b"one build", &log).await;
    let publishes = (0..64).map(|_| {
        let api = api.clone();
        async move {
            api.call(
                "POST",
                "/artifacts/race/versions",
                Some(json!({"force": true})),
            )
            .await
        }
    });
    let mut numbers: Vec<u64> = join_all(publishes)
        .await
        .into_iter()
        .filter_map(|(status, body)| {
            (status == 201)
                .then(|| body["version"].as_str()?.parse().ok())
                .flatten()
        })
        .collect();
    numbers.sort();
    tally.check(numbers == (1..=64).collect::<Vec<_>>(), || {
        format!("64 parallel publishes gave {numbers:?}")
    });

    // 32 commits interleaved with 32 publishes → every version's bytes match.
    let mut tasks = Vec::new();
    for i in 0..32 {
        let uploader = api.clone();
        tasks.push(tokio::spawn(async move {
            let log = Log::default();
            uploader
                .upload(
                    "torn",
                    format!("build {i} ").repeat(50 + i).as_bytes(),
                    &log,
                )
                .await;
        }));
        let publisher = api.clone();
        tasks.push(tokio::spawn(async move {
            publisher
                .call("POST", "/artifacts/torn/versions", None)
                .await;
        }));
    }
    join_all(tasks).await;
    let (_, page) = api
        .call("GET", "/artifacts/torn/versions?limit=1000", None)
        .await;
    for item in page["items"].as_array().into_iter().flatten() {
        let version = item["version"].as_str().unwrap_or_default();
        let (_, got) = api
            .call("GET", &format!("/artifacts/torn/versions/{version}"), None)
            .await;
        let bytes = match got["download_url"].as_str() {
            Some(url) => api.http.get(url).send().await.ok().map(|r| r.bytes()),
            None => None,
        };
        let bytes = match bytes {
            Some(fut) => fut.await.map(|b| b.to_vec()).unwrap_or_default(),
            None => Vec::new(),
        };
        tally.check(
            got["sha256"].as_str() == Some(sha256_hex(&bytes).as_str()),
            || format!("torn version {version} serves bytes that do not match its sha256"),
        );
    }

    // 32 parallel alias moves → the final alias is one of the requested states.
    for i in 0..4 {
        api.upload("moves", format!("v{i}").as_bytes(), &log).await;
        api.call("POST", "/artifacts/moves/versions", None).await;
    }
    let requested: Vec<Value> = (0..32)
        .map(|i| {
            if i % 2 == 0 {
                json!({"version": (i % 4 + 1).to_string()})
            } else {
                json!({"version": (i % 4 + 1).to_string(), "secondary_version": ((i + 1) % 4 + 1).to_string(), "secondary_version_weight": i})
            }
        })
        .collect();
    let moves = requested.iter().map(|body| {
        let api = api.clone();
        let body = body.clone();
        async move {
            api.call("PUT", "/artifacts/moves/aliases/prod", Some(body))
                .await
                .0
        }
    });
    let statuses = join_all(moves).await;
    tally.check(statuses.iter().all(|s| *s == 200), || {
        format!("alias moves answered {statuses:?}")
    });
    let (_, prod) = api.call("GET", "/artifacts/moves/aliases/prod", None).await;
    let state = |v: &Value| {
        (
            v["version"].as_str().map(str::to_owned),
            v["secondary_version"].as_str().map(str::to_owned),
            v["secondary_version_weight"].as_u64(),
        )
    };
    tally.check(requested.iter().any(|r| state(r) == state(&prod)), || {
        format!("final alias {prod} was never requested")
    });
}

async fn faults(tally: &mut Tally, rate: f64) {
    let store = TestStore::new().await;
    let counts = Arc::new(proxy::FaultCounts::default());
    let proxy_url = proxy::start(
        emulator().endpoint.clone(),
        proxy::Faults::Random(rate),
        counts.clone(),
    )
    .await;
    let faulty_sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&proxy_url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    let config = Config::from_lookup(|k| match k {
        "BUCKET_NAME" => Some(store.config.bucket.clone()),
        "TABLE_NAME" => Some(store.config.table.clone()),
        _ => None,
    })
    .expect("config");
    let api = Api::start(Repository::new(&faulty_sdk, &config)).await;
    let log = Arc::new(Log::default());
    let published: Arc<Mutex<BTreeMap<(String, String), String>>> = Default::default();

    let workers = (0..6).map(|w| {
        let (api, log, published) = (api.clone(), log.clone(), published.clone());
        tokio::spawn(async move {
            let name = format!("svc-{w}");
            for round in 0..25u32 {
                let bytes = format!("{name} round {round} ").repeat(1 + (round as usize * 37) % 200);
                api.upload(&name, bytes.as_bytes(), &log).await;
                let (status, body) = api.call("POST", &format!("/artifacts/{name}/versions"), None).await;
                log.record("publish-version", status, &body);
                if status == 201 || status == 200 {
                    if let (Some(v), Some(sha)) = (body["version"].as_str(), body["sha256"].as_str())
                        && let Ok(mut p) = published.lock()
                    {
                        p.insert((name.clone(), v.to_owned()), sha.to_owned());
                    }
                    let version = body["version"].as_str().unwrap_or("1").to_owned();
                    let (s, b) = api.call("GET", &format!("/artifacts/{name}/versions/{version}"), None).await;
                    log.record("get-version", s, &b);
                    let path = format!("/artifacts/{name}/versions/{version}/content");
                    let (s, b) = api.call("GET", &path, None).await;
                    log.record("get-version-content", s, &b);
                    let alias = if round % 2 == 0 {
                        json!({"version": version})
                    } else {
                        let previous = version.parse::<u32>().unwrap_or(2).saturating_sub(1).max(1).to_string();
                        json!({"version": previous, "secondary_version": version, "secondary_version_weight": 25})
                    };
                    let (s, b) = api.call("PUT", &format!("/artifacts/{name}/aliases/prod"), Some(alias)).await;
                    log.record("put-alias", s, &b);
                }
                let (s, b) = api.call("GET", &format!("/artifacts/{name}/aliases/prod/resolve?key=k{round}"), None).await;
                log.record("resolve-alias", s, &b);
                let (s, b) = api.call("GET", &format!("/artifacts/{name}/aliases/prod"), None).await;
                log.record("get-alias", s, &b);
                if round % 3 == 2 {
                    let old = (round / 2).max(1);
                    let (s, b) = api.call("DELETE", &format!("/artifacts/{name}/versions/{old}"), None).await;
                    log.record("delete-version", s, &b);
                }
                let (s, b) = api.call("GET", &format!("/artifacts/{name}/versions?limit=5"), None).await;
                log.record("list-versions", s, &b);
                let (s, b) = api.call("GET", &format!("/artifacts/{name}/aliases"), None).await;
                log.record("list-aliases", s, &b);
                if round % 5 == 4 {
                    let policy = json!({"keep_last_n": 3, "purge_older_than_secs": 0, "dry_run": round % 10 == 4});
                    let (s, b) = api.call("POST", &format!("/artifacts/{name}/purge"), Some(policy)).await;
                    log.record("apply-retention", s, &b);
                }
                if round % 8 == 7 {
                    let (s, b) = api.call("PUT", &format!("/artifacts/{name}/aliases/staging"), Some(json!({}))).await;
                    log.record("put-alias", s, &b);
                    let (s, b) = api.call("DELETE", &format!("/artifacts/{name}/aliases/staging"), None).await;
                    log.record("delete-alias", s, &b);
                }
            }
            let (s, b) = api.call("GET", "/artifacts", None).await;
            log.record("list-artifacts", s, &b);
            if w == 0 {
                let (s, b) = api.call("DELETE", &format!("/artifacts/{name}"), None).await;
                log.record("purge-artifact", s, &b);
            }
        })
    });
    for worker in join_all(workers).await {
        tally.check(worker.is_ok(), || "a workload task panicked".into());
    }
    println!("faults: {}", counts.summary());

    // Every request got its success or a clear error.
    let answers = log.answers.lock().map(|a| a.clone()).unwrap_or_default();
    let mut by_outcome: BTreeMap<String, u64> = BTreeMap::new();
    for (operation, status, body) in &answers {
        let code = body["error"]["code"].as_str();
        let clear = match status {
            200..=399 => true,
            400..=499 => code.is_some(),
            502 | 503 => matches!(code, Some("UpstreamError" | "Throttled")),
            _ => false,
        };
        *by_outcome
            .entry(format!("{status} {}", code.unwrap_or("")))
            .or_default() += 1;
        tally.check(clear, || {
            format!("{operation}: unclear answer {status} {body}")
        });
    }
    println!("faults: answers by outcome: {by_outcome:?}");
    if let Some((_, _, body)) = answers.iter().find(|(_, s, _)| *s == 412) {
        println!("faults: example 412: {body}");
    }

    // The audit reads the emulator directly, without faults.
    let repo = &store.repo;
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        match repo
            .list_artifact_names(Some(1000), cursor.as_deref())
            .await
        {
            Ok(page) => {
                names.extend(page.items);
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            Err(e) => {
                tally.check(false, || format!("audit: list names: {e:?}"));
                break;
            }
        }
    }
    let purged: shared::ArtifactName = "svc-0".parse().expect("name");
    tally.check(!names.contains(&purged), || {
        "purged artifact svc-0 still listed".into()
    });
    let published = published.lock().map(|p| p.clone()).unwrap_or_default();
    for name in &names {
        let versions = match repo.list_versions(name, Some(1000), None).await {
            Ok(page) => page.items,
            Err(e) => {
                tally.check(false, || format!("audit: list versions of {name}: {e:?}"));
                continue;
            }
        };
        let live: BTreeSet<String> = versions.iter().map(|a| a.version.to_string()).collect();
        for listed in &versions {
            // No version without bytes, no bytes without a matching sha256.
            let artifact = repo.get_version(name, listed.version).await;
            let ok = match &artifact {
                Ok(a) => match store
                    .http
                    .get(a.download_url.clone().unwrap_or_default())
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        let bytes = r.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                        sha256_hex(&bytes) == a.sha256 && Some(bytes.len() as u64) == a.size
                    }
                    _ => false,
                },
                Err(_) => false,
            };
            tally.check(ok, || {
                format!(
                    "audit: {name} version {} does not serve its recorded bytes",
                    listed.version
                )
            });
            // No published number overwritten with other content.
            if let Some(sha) = published.get(&(name.to_string(), listed.version.to_string())) {
                tally.check(*sha == listed.sha256, || {
                    format!("audit: {name} v{} changed content", listed.version)
                });
            }
        }
        // No alias pointing at a missing or deleted version.
        if let Ok(aliases) = repo.list_aliases(name, None, None).await {
            for alias in aliases.items {
                for target in std::iter::once(alias.version).chain(alias.secondary_version) {
                    tally.check(live.contains(&target.to_string()), || {
                        format!(
                            "audit: alias {} of {name} points at missing version {target}",
                            alias.alias
                        )
                    });
                }
            }
        }
    }
    let rows = store.raw_items().await;
    tally.check(
        !rows.iter().any(|r| {
            r.get("pk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|pk| pk.contains("svc-0"))
        }),
        || "audit: rows of the purged artifact remain".into(),
    );
}

#[tokio::main]
async fn main() {
    let rate: f64 = std::env::var("FAULT_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0.2);
    let mut failed = 0;

    let mut tally = Tally::default();
    concurrency(&mut tally).await;
    tally.report("concurrency");
    failed += tally.failed.len();

    let mut tally = Tally::default();
    faults(&mut tally, rate).await;
    tally.report(&format!("faults (rate {rate})"));
    failed += tally.failed.len();

    if failed > 0 {
        std::process::exit(1);
    }
}
