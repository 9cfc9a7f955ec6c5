//! The sections of `make bench` measured as a pipeline sees them: requests
//! over HTTP to the release `local-api`, beside `versioned` 1.0.1 in-process
//! in its fastest configuration (one session reused, `scripts/bench_library.py
//! serve`), both on the same emulator, one sample of each side after the
//! other so that both see the same machine at the same moment:
//!
//! - the user-side table: each operation a pipeline makes, and the pipeline
//!   flows (push + publish + alias at 1 KiB, 1 MiB and 64 MiB, and a push of
//!   bytes the artifact holds);
//! - the growth table: publish, list (first page), get version, put alias
//!   and a retention pass at 10, 100 and 1 000 versions, and put alias and
//!   resolve at 10 and 100 aliases — which costs grow with the work.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use reqwest::Method;
use serde_json::{Value, json};
use test_support::{TestStore, emulator, sha256_hex, venv_python, workspace_root};

use crate::{KIB, MIB, quantile, random_bytes, start_local_api};

/// The library, one operation per line (`bench_library.py serve`).
struct Library {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// One of the library's answers: its time and result.
struct Reply {
    ms: f64,
    result: Value,
}

impl Library {
    fn start(store: &TestStore) -> Option<Self> {
        let mut child = Command::new(venv_python())
            .arg(workspace_root().join("scripts/bench_library.py"))
            .args([
                &emulator().endpoint,
                &store.config.bucket,
                &store.config.table,
                "serve",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .ok()?;
        let stdin = child.stdin.take()?;
        let stdout = BufReader::new(child.stdout.take()?);
        Some(Self {
            child,
            stdin,
            stdout,
        })
    }

    /// Runs `request` in the library; an error names the operation.
    fn call(&mut self, request: Value) -> Result<Reply, String> {
        tokio::task::block_in_place(|| {
            writeln!(self.stdin, "{request}").map_err(|e| format!("library: {e}"))?;
            let mut line = String::new();
            self.stdout
                .read_line(&mut line)
                .map_err(|e| format!("library: {e}"))?;
            let answer: Value =
                serde_json::from_str(&line).map_err(|e| format!("library said {line:?}: {e}"))?;
            if let Some(error) = answer["error"].as_str() {
                return Err(format!("library {request}: {error}"));
            }
            Ok(Reply {
                ms: answer["ms"].as_f64().unwrap_or(f64::NAN),
                result: answer["result"].clone(),
            })
        })
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This project as a pipeline calls it: JSON requests to `local-api`, the
/// bytes PUT to S3 on the presigned URL it answers with; counts requests.
struct Api {
    http: reqwest::Client,
    base: String,
    requests: AtomicU64,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: impl Into<String>,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let path: String = path.into();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("{method} {path}: {status} {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `artifact push`'s requests: start the upload asking to commit at once
    /// when the artifact holds the bytes, else PUT them and commit, with
    /// `pipeline` (`publish`, `alias`) on both. The commit's answer.
    async fn push(&self, name: &str, bytes: &Bytes, pipeline: &Value) -> Result<Value, String> {
        let mut start = json!({"sha256": sha256_hex(bytes), "size": bytes.len(), "commit": true});
        extend(&mut start, pipeline);
        let answer = self
            .call(
                Method::POST,
                &format!("/artifacts/{name}/uploads"),
                Some(start),
            )
            .await?;
        if answer["state"] == "committed" {
            return Ok(answer);
        }
        let id = answer["upload_id"]
            .as_str()
            .ok_or_else(|| format!("no upload id in {answer}"))?
            .to_owned();
        if answer["exists"] != true {
            let url = answer["url"]
                .as_str()
                .ok_or_else(|| format!("no url in {answer}"))?;
            let mut put = self.http.put(url).body(bytes.clone());
            if let Some(headers) = answer["headers"].as_object() {
                for (k, v) in headers {
                    put = put.header(k, v.as_str().unwrap_or_default());
                }
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let sent = put.send().await.map_err(|e| format!("PUT: {e}"))?;
            if !sent.status().is_success() {
                return Err(format!("PUT: {}", sent.status()));
            }
        }
        let mut commit = json!({"upload_id": id});
        extend(&mut commit, pipeline);
        self.call(Method::PUT, &format!("/artifacts/{name}"), Some(commit))
            .await
    }

    async fn publish(&self, name: &str) -> Result<String, String> {
        let answer = self
            .call(Method::POST, &format!("/artifacts/{name}/versions"), None)
            .await?;
        answer["version"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no version in {answer}"))
    }

    /// `count` more versions of `name` (one push with `publish` each).
    async fn grow(&self, name: &str, count: usize) -> Result<(), String> {
        for _ in 0..count {
            let bytes = Bytes::from(random_bytes(32));
            self.push(name, &bytes, &json!({"publish": true})).await?;
        }
        Ok(())
    }
}

fn extend(target: &mut Value, fields: &Value) {
    if let (Some(t), Some(f)) = (target.as_object_mut(), fields.as_object()) {
        t.extend(f.clone());
    }
}

/// One operation's samples on both sides.
#[derive(Default)]
struct Row {
    ours_ms: Vec<f64>,
    /// API requests per sample (this project).
    requests: u64,
    library_ms: Vec<f64>,
}

impl Row {
    fn median(values: &[f64]) -> f64 {
        quantile(values.to_vec(), 0.5)
    }

    fn ratio(&self) -> f64 {
        Self::median(&self.ours_ms) / Self::median(&self.library_ms)
    }
}

/// Both sides of the comparison: the HTTP client and the library, each on a
/// store of its own; samples are taken one of each after the other.
struct Sides {
    api: Api,
    library: Library,
    rows: BTreeMap<String, Row>,
    order: Vec<String>,
}

impl Sides {
    fn row(&mut self, op: &str) -> &mut Row {
        if !self.rows.contains_key(op) {
            self.order.push(op.to_owned());
        }
        self.rows.entry(op.to_owned()).or_default()
    }

    /// Records `ours` (timed by [`Api::timed`]), then runs and times the
    /// library's `request`: both answers.
    fn record<T>(
        &mut self,
        op: &str,
        ours: Timed<T>,
        request: Value,
    ) -> Result<(T, Value), String> {
        let reply = self.library.call(request)?;
        let row = self.row(op);
        row.ours_ms.push(ours.ms);
        row.requests = ours.requests;
        row.library_ms.push(reply.ms);
        Ok((ours.answer, reply.result))
    }
}

/// One of this project's samples: its answer, time and API requests.
struct Timed<T> {
    answer: T,
    ms: f64,
    requests: u64,
}

impl Api {
    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, String>>,
    ) -> Result<Timed<T>, String> {
        let before = self.requests.load(Ordering::Relaxed);
        let started = Instant::now();
        let answer = call.await?;
        Ok(Timed {
            answer,
            ms: started.elapsed().as_secs_f64() * 1000.0,
            requests: self.requests.load(Ordering::Relaxed) - before,
        })
    }
}

/// One sample of each side: `$ours` (a call on `$s.api`), then the
/// library's `$request`.
macro_rules! sample {
    ($s:expr, $op:expr, $ours:expr, $request:expr $(,)?) => {{
        let timed = $s.api.timed($ours).await?;
        $s.record(&$op, timed, $request)
    }};
}

/// The stores, the server and the library; `Err` says what is missing.
async fn sides() -> Result<(Sides, std::process::Child, TestStore, TestStore), String> {
    let ours = TestStore::new().await;
    let theirs = TestStore::new().await;
    // The mirror of the library's layout, the events and the rollout driver
    // are off: on AWS each runs in a function of its own, after the answer;
    // here they would compete for the emulator.
    let quiet = [
        ("SEED_LAYOUT_MIRROR", "off"),
        ("EVENTS_SINK", "off"),
        ("ROLLOUT_DRIVER_PERIOD_MS", "3600000"),
    ];
    let (server, base) = start_local_api(&ours, &quiet).await.ok_or(
        "the release `local-api` binary is missing or did not start (`make bench` builds it)",
    )?;
    let library = Library::start(&theirs).ok_or("bench_library.py serve did not start")?;
    let sides = Sides {
        api: Api {
            http: reqwest::Client::new(),
            base,
            requests: AtomicU64::new(0),
        },
        library,
        rows: BTreeMap::new(),
        order: Vec::new(),
    };
    Ok((sides, server, ours, theirs))
}

fn version_of(answer: &Value) -> Result<String, String> {
    answer["published"]["version"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no version in {answer}"))
}

fn lib_version(result: &Value) -> Result<String, String> {
    match result {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("library answered {other} for a version")),
    }
}

/// The user-side operations, `iterations` samples each (64 MiB: 5; the
/// retention pass: 3, each on 50 fresh versions).
async fn operations(s: &mut Sides, iterations: usize) -> Result<(), String> {
    let none = json!({});
    for (label, size) in [("1 KiB", KIB), ("1 MiB", MIB)] {
        let name = format!("put-{}", label.replace(' ', ""));
        for _ in 0..iterations {
            let bytes = Bytes::from(random_bytes(size));
            sample!(
                s,
                &format!("put {label} (start upload + S3 PUT + commit)"),
                s.api.push(&name, &bytes, &none),
                json!({"op": "put", "name": name, "size": size}),
            )?;
        }
    }
    for _ in 0..iterations {
        let bytes = Bytes::from(random_bytes(KIB));
        s.api.push("same", &bytes, &none).await?;
        s.library
            .call(json!({"op": "put", "name": "same", "size": KIB}))?;
        sample!(
            s,
            "push of bytes the artifact holds",
            s.api.push("same", &bytes, &none),
            json!({"op": "put_same", "name": "same"}),
        )?;
    }
    let alias = json!({"publish": true, "alias": {"name": "prod"}});
    for (label, size, n) in [
        ("1 KiB", KIB, iterations),
        ("1 MiB", MIB, iterations),
        ("64 MiB", 64 * MIB, 5.min(iterations)),
    ] {
        let name = format!("flow-{}", label.replace(' ', ""));
        for _ in 0..n {
            let bytes = Bytes::from(random_bytes(size));
            let (answer, lib) = sample!(
                s,
                format!("pipeline: push + publish + alias, {label}"),
                s.api.push(&name, &bytes, &alias),
                json!({"op": "pipeline", "name": name, "size": size, "alias": "prod"}),
            )?;
            if answer["alias"].is_null() || lib.is_null() {
                return Err(format!("the flow did not move the alias: {answer} / {lib}"));
            }
        }
    }
    for _ in 0..iterations {
        let bytes = Bytes::from(random_bytes(64));
        s.api.push("pub", &bytes, &none).await?;
        s.library
            .call(json!({"op": "put", "name": "pub", "size": 64}))?;
        sample!(
            s,
            "publish",
            s.api.publish("pub"),
            json!({"op": "publish", "name": "pub"}),
        )?;
    }
    for _ in 0..iterations {
        sample!(
            s,
            "get version",
            s.api.call(Method::GET, "/artifacts/pub/versions/1", None),
            json!({"op": "get_version", "name": "pub", "version": 1}),
        )?;
    }
    s.api.grow("list", 50).await?;
    s.library
        .call(json!({"op": "versions", "name": "list", "count": 50}))?;
    for _ in 0..iterations {
        sample!(
            s,
            "list 50 versions",
            s.api.call(Method::GET, "/artifacts/list/versions", None),
            json!({"op": "list", "name": "list"}),
        )?;
    }
    for i in 0..iterations {
        let (v, w) = (i % 50 + 1, (i + 1) % 50 + 1);
        sample!(
            s,
            "put alias",
            {
                s.api.call(
                    Method::PUT,
                    "/artifacts/list/aliases/prod",
                    Some(json!({"version": v.to_string()})),
                )
            },
            json!({"op": "put_alias", "name": "list", "alias": "prod", "version": v}),
        )?;
        sample!(
            s,
            "put alias, weighted",
            {
                s.api.call(
                    Method::PUT,
                    "/artifacts/list/aliases/canary",
                    Some(
                        json!({"version": v.to_string(), "secondary_version": w.to_string(),
                                "secondary_version_weight": 10}),
                    ),
                )
            },
            json!({"op": "put_alias", "name": "list", "alias": "canary", "version": v,
                   "secondary_version": w, "weight": 10}),
        )?;
    }
    for _ in 0..iterations {
        sample!(
            s,
            "resolve alias (library: get_alias + random_artifact)",
            s.api
                .call(Method::GET, "/artifacts/list/aliases/canary/resolve", None),
            json!({"op": "resolve", "name": "list", "alias": "canary"}),
        )?;
    }
    for _ in 0..iterations {
        let ours = version_of(
            &s.api
                .push(
                    "del",
                    &Bytes::from(random_bytes(64)),
                    &json!({"publish": true}),
                )
                .await?,
        )?;
        s.library
            .call(json!({"op": "put", "name": "del", "size": 64}))?;
        let theirs = lib_version(
            &s.library
                .call(json!({"op": "publish", "name": "del"}))?
                .result,
        )?;
        sample!(
            s,
            "delete version",
            s.api.call(
                Method::DELETE,
                format!("/artifacts/del/versions/{ours}"),
                None
            ),
            json!({"op": "delete_version", "name": "del", "version": theirs.parse::<u64>().unwrap_or(0)}),
        )?;
    }
    for i in 0..3.min(iterations) {
        let name = format!("ret-{i}");
        s.api.grow(&name, 50).await?;
        s.library
            .call(json!({"op": "versions", "name": name, "count": 50}))?;
        sample!(
            s,
            "retention: 50 versions, keep 10",
            {
                s.api.call(
                    Method::POST,
                    format!("/artifacts/{name}/purge"),
                    Some(json!({"keep_last_n": 10, "purge_older_than_secs": 0})),
                )
            },
            json!({"op": "purge", "name": name, "keep": 10}),
        )?;
    }
    Ok(())
}

/// The growth table's levels of versions and of aliases.
const VERSIONS: [usize; 3] = [10, 100, 1000];
const ALIASES: [usize; 2] = [10, 100];

/// The growth operations at each level, `samples` each. Each publish adds a
/// version and each retention pass (keep the newest N, older than 0 s)
/// deletes the oldest one, so the artifact stays at N to N + 1 versions.
async fn growth(s: &mut Sides, samples: usize) -> Result<(), String> {
    let none = json!({});
    let mut have = 0;
    for n in VERSIONS {
        eprintln!("bench: growth at {n} versions…");
        s.api.grow("growth", n - have).await?;
        s.library
            .call(json!({"op": "versions", "name": "growth", "count": n - have}))?;
        have = n;
        let mut newest = (String::new(), String::new());
        for _ in 0..samples {
            let bytes = Bytes::from(random_bytes(64));
            s.api.push("growth", &bytes, &none).await?;
            s.library
                .call(json!({"op": "put", "name": "growth", "size": 64}))?;
            let (ours, theirs) = sample!(
                s,
                format!("publish @{n}"),
                s.api.publish("growth"),
                json!({"op": "publish", "name": "growth"}),
            )?;
            newest = (ours, lib_version(&theirs)?);
            sample!(
                s,
                &format!("retention pass (deletes 1) @{n}"),
                {
                    s.api.call(
                        Method::POST,
                        "/artifacts/growth/purge",
                        Some(json!({"keep_last_n": n, "purge_older_than_secs": 0})),
                    )
                },
                json!({"op": "purge", "name": "growth", "keep": n}),
            )?;
        }
        let (ours, theirs) = newest;
        for i in 0..samples {
            sample!(
                s,
                &format!("get version @{n}"),
                s.api.call(
                    Method::GET,
                    format!("/artifacts/growth/versions/{ours}"),
                    None
                ),
                json!({"op": "get_version", "name": "growth", "version": theirs.parse::<u64>().unwrap_or(0)}),
            )?;
            sample!(
                s,
                &format!("list, first page @{n}"),
                s.api.call(Method::GET, "/artifacts/growth/versions", None),
                json!({"op": "list", "name": "growth"}),
            )?;
            // Between the newest and LATEST, so every sample moves it.
            let (v, lv) = if i % 2 == 0 {
                (json!(ours), json!(theirs.parse::<u64>().unwrap_or(0)))
            } else {
                (Value::Null, Value::Null)
            };
            sample!(
                s,
                &format!("put alias @{n}"),
                {
                    s.api.call(
                        Method::PUT,
                        "/artifacts/growth/aliases/prod",
                        Some(json!({"version": v})),
                    )
                },
                json!({"op": "put_alias", "name": "growth", "alias": "prod", "version": lv}),
            )?;
        }
    }
    s.api.grow("aliased", 10).await?;
    s.library
        .call(json!({"op": "versions", "name": "aliased", "count": 10}))?;
    let mut have = 0;
    for n in ALIASES {
        eprintln!("bench: growth at {n} aliases…");
        for a in have..n {
            let path = format!("/artifacts/aliased/aliases/a{a}");
            let version = (a % 10 + 1).to_string();
            s.api
                .call(Method::PUT, &path, Some(json!({"version": version})))
                .await?;
            s.library.call(
                json!({"op": "put_alias", "name": "aliased", "alias": format!("a{a}"),
                                  "version": a % 10 + 1}),
            )?;
        }
        have = n;
        for i in 0..samples {
            let v = i % 10 + 1;
            sample!(
                s,
                format!("move one alias of many @{n} aliases"),
                {
                    s.api.call(
                        Method::PUT,
                        "/artifacts/aliased/aliases/a0",
                        Some(json!({"version": v.to_string()})),
                    )
                },
                json!({"op": "put_alias", "name": "aliased", "alias": "a0", "version": v}),
            )?;
            sample!(
                s,
                format!("resolve one alias of many @{n} aliases"),
                s.api
                    .call(Method::GET, "/artifacts/aliased/aliases/a0/resolve", None),
                json!({"op": "resolve", "name": "aliased", "alias": "a0"}),
            )?;
        }
    }
    Ok(())
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The user-side table and the pipeline flows, then the growth table, as
/// markdown (a note in place of a table that could not be measured).
pub async fn tables(iterations: usize) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## As a pipeline sees it: HTTP to the server vs the library in-process\n"
    );
    let _ = writeln!(
        md,
        "This project through its API, as `artifact` and any pipeline call it: JSON requests to the release `local-api` \
         over loopback HTTP, the bytes PUT straight to S3 on the presigned URL it answers with (`bench/src/user_side.rs`, \
         the requests `artifact push` makes: start the upload with `commit: true`, then PUT and commit unless the artifact \
         held the bytes; `publish`/`alias` ride on both). Beside it `versioned` 1.0.1 in-process in its fastest \
         configuration (one session reused, `scripts/bench_library.py serve`, one operation per line on a pipe, timed \
         inside Python). Both on the same emulator, each on a store of its own; the samples alternate, one of ours then \
         one of the library's, so both sides see the machine in the same state. `local-api` runs with the mirror of \
         the library's layout, the events and the rollout driver off (on AWS each is a function of its own, after the \
         answer; its stream poller still reads the stream every few hundred ms). *Requests* are this project's HTTP \
         requests per operation: API requests plus the S3 PUT of the bytes. AWS calls of both sides are in the \
         per-operation table above (counted there with nothing else running). Medians of {iterations} samples (64 MiB: 5; retention: 3, each on 50 fresh versions); ratio = ours / library. `BENCH_ONLY=user` \
         re-measures this section and the next alone and rewrites only them here.\n\n\
         Where our extra time goes on the simple reads (get version, resolve): each API request also reads the \
         permission targets (strongly consistent, SPEC 10.4: access is evaluated on every route, so a revoked grant \
         stops at once) — in one BatchGetItem with a plain read's own gets and with the first gets of a start, commit, \
         publish, delete or alias change (one call; the answer waits for the decision), beside a listing's Query, before everything \
         else on the other routes — plus the HTTP hop (about 0.6 ms here).\n"
    );
    let (mut s, mut server, _ours, _theirs) = match sides().await {
        Ok(sides) => sides,
        Err(e) => {
            let _ = writeln!(md, "_Not measured: {e}._\n");
            return md;
        }
    };
    eprintln!("bench: user side, HTTP vs the library ({iterations} samples each)…");
    let measured = operations(&mut s, iterations).await;
    table(&mut md, &s, |op| !op.contains('@'));
    if let Err(e) = measured {
        let _ = writeln!(md, "_Stopped early: {e}._\n");
    }
    let samples = iterations.min(10);
    let _ = writeln!(md, "## Cost as the work grows\n");
    let _ = writeln!(
        md,
        "The same two sides, on one artifact grown to 10, 100 and 1 000 versions (and one with 10 and 100 aliases), \
         {samples} samples per operation at each level. Each *publish* adds a version and each *retention pass* \
         (keep the newest N, older than 0 s) then deletes the oldest, so the artifact holds N to N + 1 versions \
         throughout; *list, first page* is this project's first page (50 items) and the library's whole list (it has \
         no pages); *put alias* moves `prod` between the newest version and LATEST. The last columns divide each \
         side's median at the largest level by its median at the smallest: about 1 means the cost does not grow.\n"
    );
    s.rows.clear();
    s.order.clear();
    match growth(&mut s, samples).await {
        Ok(()) => growth_table(&mut md, &s),
        Err(e) => {
            table(&mut md, &s, |_| true);
            let _ = writeln!(md, "_Stopped early: {e}._\n");
        }
    }
    drop(s);
    let _ = server.kill();
    let _ = server.wait();
    println!("{md}");
    md
}

/// The section's heading, and the one that follows it in BENCHMARKS.md.
const HEADING: &str = "## As a pipeline sees it";
const NEXT: &str = "## Commit and publish latency by artifact size";

/// `doc` with its user-side section (from [`HEADING`] to [`NEXT`]) replaced
/// by `section`, or `section` inserted before [`NEXT`] (appended when
/// neither is there).
pub fn splice(doc: &str, section: &str) -> String {
    let end = doc.find(NEXT).unwrap_or(doc.len());
    let start = doc[..end].find(HEADING).unwrap_or(end);
    format!("{}{section}{}", &doc[..start], &doc[end..])
}

fn table(md: &mut String, s: &Sides, keep: impl Fn(&str) -> bool) {
    let _ = writeln!(
        md,
        "| operation | this project via HTTP median ms | p95 ms | requests | library median ms | p95 ms | ratio |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
    for op in s.order.iter().filter(|op| keep(op)) {
        let r = &s.rows[op];
        let _ = writeln!(
            md,
            "| {op} | {} | {} | {} | {} | {} | {:.2} |",
            ms(Row::median(&r.ours_ms)),
            ms(quantile(r.ours_ms.clone(), 0.95)),
            r.requests,
            ms(Row::median(&r.library_ms)),
            ms(quantile(r.library_ms.clone(), 0.95)),
            r.ratio()
        );
    }
    let _ = writeln!(md);
}

fn growth_table(md: &mut String, s: &Sides) {
    // "publish @10" -> ("publish", "10")
    let mut ops: Vec<String> = Vec::new();
    let mut levels: BTreeMap<String, Vec<(String, &Row)>> = BTreeMap::new();
    for op in &s.order {
        let Some((what, level)) = op.split_once(" @") else {
            continue;
        };
        if !ops.iter().any(|o| o == what) {
            ops.push(what.to_owned());
        }
        levels
            .entry(what.to_owned())
            .or_default()
            .push((level.to_owned(), &s.rows[op]));
    }
    let _ = writeln!(
        md,
        "| operation | at | this project median ms | library median ms | ratio |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|");
    let mut growth = Vec::new();
    for what in &ops {
        let rows = &levels[what];
        for (level, r) in rows {
            let at = if level.contains("aliases") {
                level.clone()
            } else {
                format!("{level} versions")
            };
            let _ = writeln!(
                md,
                "| {what} | {at} | {} | {} | {:.2} |",
                ms(Row::median(&r.ours_ms)),
                ms(Row::median(&r.library_ms)),
                r.ratio()
            );
        }
        if let (Some((l0, first)), Some((l1, last))) = (rows.first(), rows.last()) {
            growth.push(format!(
                "{what} {l0} → {l1}: this project ×{:.1}, library ×{:.1}",
                Row::median(&last.ours_ms) / Row::median(&first.ours_ms),
                Row::median(&last.library_ms) / Row::median(&first.library_ms),
            ));
        }
    }
    let _ = writeln!(
        md,
        "\nGrowth, median at the largest level / at the smallest:\n"
    );
    for g in growth {
        let _ = writeln!(md, "- {g}");
    }
    let _ = writeln!(md);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_replaces_its_old_self_or_goes_before_the_next_one() {
        let section = format!("{HEADING}: new\n\n");
        let old = format!("# B\n\n{HEADING}: old\n\nrows\n\n{NEXT}\n\nmore\n");
        assert_eq!(
            splice(&old, &section),
            format!("# B\n\n{section}{NEXT}\n\nmore\n")
        );
        let without = format!("# B\n\n{NEXT}\n");
        assert_eq!(
            splice(&without, &section),
            format!("# B\n\n{section}{NEXT}\n")
        );
        assert_eq!(splice("# B\n", &section), format!("# B\n{section}"));
    }
}
