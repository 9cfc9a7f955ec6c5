//! The randomized run: workers drawing operations, the library writer,
//! background work re-invoked as Lambda would, and the fault schedule. Every
//! random choice comes from a generator seeded from the run's seed (one per
//! worker, one for the library, one for faults, one for background crashes),
//! so a seed fixes the operation mix, the data and the fault schedule.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shared::{ArtifactName, Repository, VerifyStep};
use test_support::TestStore;
use test_support::proxy::{Action, Fault, Gate, Plan, Rule};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{RwLock, mpsc};

use super::client::{Call, Client, list_all};
use super::history::{History, Outcome};

/// Artifacts every worker shares, so they collide.
pub const NAMES: [&str; 3] = ["app0", "app1", "app2"];
/// Aliases the workers move (the library moves its own, `lib`).
pub const ALIASES: [&str; 2] = ["prod", "stage"];
/// The library writer's alias.
pub const LIBRARY_ALIAS: &str = "lib";
/// Distinct contents per artifact: few, so bytes repeat ("exists").
const POOL: usize = 6;
const PART_SIZE: u64 = 5 * 1024 * 1024;
/// A multipart upload this big needs two verification steps (a checkpoint).
const BIG: usize = 9 * 1024 * 1024;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Content `i` of artifact `name` (`big`: over one verification step).
pub fn content(name: &str, i: usize, big: bool) -> Vec<u8> {
    let unit = format!("{name} build {i} ");
    let len = if big { BIG + i } else { 64 + i * 37 };
    unit.bytes().cycle().take(len).collect()
}

/// Per artifact: workers hold it shared for each operation, the library
/// writer exclusively for the calls whose races are the library's own
/// (its publish takes `max + 1` and overwrites; its alias and delete check
/// nothing), so the checker judges the service, not the library.
pub type Locks = Arc<BTreeMap<&'static str, RwLock<()>>>;

pub fn locks() -> Locks {
    Arc::new(NAMES.iter().map(|n| (*n, RwLock::new(()))).collect())
}

/// A verification invocation: Lambda runs it, retries a failed one twice,
/// then sends it to the on-failure queue.
#[derive(Debug, Clone)]
pub struct VerifyJob {
    pub name: String,
    pub upload_id: String,
    pub attempt: u32,
}

/// What all parties share during a run.
#[derive(Clone)]
pub struct World {
    pub client: Client,
    pub locks: Locks,
    pub verify: mpsc::UnboundedSender<VerifyJob>,
    /// Version numbers answered by publishes, per artifact (alias targets
    /// and deletes draw from them).
    pub versions: Arc<Mutex<BTreeMap<String, BTreeSet<u64>>>>,
    pub http: reqwest::Client,
    pub crash_rate: f64,
}

impl World {
    fn known_versions(&self, name: &str) -> Vec<u64> {
        self.versions
            .lock()
            .map(|v| v.get(name).map(|s| s.iter().copied().collect()))
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn learn_version(&self, name: &str, body: &Value) {
        if let Some(v) = body["version"].as_str().and_then(|v| v.parse().ok())
            && let Ok(mut versions) = self.versions.lock()
        {
            versions.entry(name.to_owned()).or_default().insert(v);
        }
    }
}

/// One worker: draws operations until `until_ms`.
pub struct Worker {
    pub id: usize,
    pub rng: fastrand::Rng,
    pub world: World,
    /// Uploads this worker started: (artifact, upload id, multipart).
    uploads: Vec<(String, String, bool)>,
}

impl Worker {
    pub fn new(id: usize, seed: u64, world: World) -> Self {
        Self {
            id,
            rng: fastrand::Rng::with_seed(
                seed ^ (0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(id as u64 + 1)),
            ),
            world,
            uploads: Vec::new(),
        }
    }

    fn actor(&self) -> String {
        format!("w{}", self.id)
    }

    fn crash(&mut self) -> Option<Duration> {
        (self.rng.f64() < self.world.crash_rate)
            .then(|| Duration::from_millis(self.rng.u64(1..120)))
    }

    async fn send(
        &mut self,
        name: &str,
        op: &'static str,
        call: Call<'_>,
        crash: Option<Duration>,
    ) -> Outcome {
        let actor = self.actor();
        self.world
            .client
            .send(&actor, name, op, call, crash)
            .await
            .outcome
    }

    pub async fn run(mut self, until_ms: u64) {
        while self.world.client.history.now() < until_ms {
            let name = NAMES[self.rng.usize(..NAMES.len())];
            let roll = self.rng.u32(..100);
            let locks = self.world.locks.clone();
            let history = self.world.client.history.clone();
            let _shared = match locks.get(name) {
                Some(lock) => Some(lock.read().await),
                None => None,
            };
            let started = history.now();
            let op = async {
                match roll {
                    0..=21 => self.upload(name, false).await,
                    22..=31 => self.upload(name, true).await,
                    32..=35 => self.replay(name).await,
                    36..=50 => self.publish(name).await,
                    51..=62 => self.put_alias(name).await,
                    63..=67 => self.rollback(name).await,
                    68..=71 => self.delete_alias(name).await,
                    72..=79 => self.delete_version(name).await,
                    80..=85 => self.retention(name).await,
                    86..=92 => self.reclaim(name).await,
                    93 => self.purge(name).await,
                    94..=96 => self.move_while_deleting(name).await,
                    _ => self.upload(name, false).await,
                }
            };
            if tokio::time::timeout(Duration::from_secs(60), op)
                .await
                .is_err()
            {
                eprintln!(
                    "check: w{} op {roll} on {name} from {started} ms took over 60 s",
                    self.id
                );
            }
        }
    }

    /// Start an upload (right, wrong-size or wrong-digest declaration,
    /// often of bytes the artifact holds), send the bytes, commit, maybe
    /// commit again.
    async fn upload(&mut self, name: &str, multipart: bool) {
        let i = self.rng.usize(..POOL);
        let big = multipart && self.rng.u32(..12) == 0;
        let bytes = content(name, i, big);
        let kind = self.rng.u32(..10);
        let sha256 = if kind == 9 {
            // Another content's digest: bytes the artifact may hold.
            sha256_hex(&content(
                name,
                (i + 1 + self.rng.usize(..POOL - 1)) % POOL,
                false,
            ))
        } else {
            sha256_hex(&bytes)
        };
        let size = match kind {
            8 if self.rng.bool() => bytes.len() as u64 + 1,
            8 => bytes.len() as u64 - 1,
            _ => bytes.len() as u64,
        };
        let mut declared = json!({"sha256": sha256, "size": size});
        if multipart {
            declared["part_size"] = json!(PART_SIZE);
        }
        // As `artifact push` asks: commit at once when the artifact holds
        // the bytes (when LATEST does, in one transaction).
        let at_once = self.rng.u32(..3) == 0;
        if at_once {
            declared["commit"] = json!(true);
            self.pipeline(&mut declared);
        }
        let crash = self.crash();
        let start = self
            .send(
                name,
                "start-upload",
                Call::new("POST", format!("/artifacts/{name}/uploads")).body(declared),
                crash,
            )
            .await;
        if !start.ok() {
            return;
        }
        let ticket = start.body().clone();
        let Some(upload_id) = ticket["upload_id"].as_str().map(str::to_owned) else {
            return;
        };
        if at_once && ticket["state"] == json!("committed") {
            self.uploads.push((name.to_owned(), upload_id, multipart));
            return;
        }
        if ticket["exists"] != json!(true) {
            if ticket["multipart"].is_object() {
                self.send_parts(name, &upload_id, &bytes).await;
            } else {
                self.put_bytes(&ticket, &bytes).await;
            }
        }
        self.uploads
            .push((name.to_owned(), upload_id.clone(), multipart));
        let times = if self.rng.u32(..5) == 0 { 2 } else { 1 };
        for _ in 0..times {
            self.commit(name, &upload_id, multipart, "commit").await;
        }
    }

    /// A commit, retried by its client while it has no clear answer (as a
    /// pipeline does: SPEC 7.16 counts on that retry to finish the step).
    async fn commit(&mut self, name: &str, upload_id: &str, multipart: bool, op: &'static str) {
        let mut outcome = Outcome::Crashed;
        let mut body = json!({"upload_id": upload_id});
        if op == "commit" {
            self.pipeline(&mut body);
        }
        for _ in 0..3 {
            let crash = self.crash();
            outcome = self
                .send(
                    name,
                    op,
                    Call::new("PUT", format!("/artifacts/{name}")).body(body.clone()),
                    crash,
                )
                .await;
            if !outcome.unsure() {
                break;
            }
        }
        // The commit asked for a verification (202), or may have (no
        // answer, 5xx: the client's retry would ask again).
        if multipart && !outcome.refused() && outcome.status() != Some(200) {
            let _ = self.world.verify.send(VerifyJob {
                name: name.to_owned(),
                upload_id: upload_id.to_owned(),
                attempt: 0,
            });
        }
    }

    /// Sometimes a pipeline on a commit (or a start with `commit`), as
    /// `artifact push --publish [--alias prod]` sends: publish the new
    /// LATEST, and move `prod` to it. The same body on every retry.
    fn pipeline(&mut self, body: &mut Value) {
        match self.rng.u32(..8) {
            0 | 1 => body["publish"] = json!(true),
            2 => {
                body["publish"] = json!(true);
                body["alias"] = json!({"name": "prod"});
            }
            _ => {}
        }
    }

    /// Commit again an upload this worker started earlier (a replay: of a
    /// superseded upload it must be refused).
    async fn replay(&mut self, name: &str) {
        let mine: Vec<(String, bool)> = self
            .uploads
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, id, m)| (id.clone(), *m))
            .collect();
        if mine.is_empty() {
            return self.upload(name, false).await;
        }
        let (id, multipart) = mine[self.rng.usize(..mine.len())].clone();
        self.commit(name, &id, multipart, "recommit").await;
    }

    async fn put_bytes(&mut self, ticket: &Value, bytes: &[u8]) {
        let Some(url) = ticket["url"].as_str() else {
            return;
        };
        for _ in 0..4 {
            let mut put = self.world.http.put(url).body(bytes.to_vec());
            for (k, v) in ticket["headers"].as_object().into_iter().flatten() {
                // The length is the body's: a wrong-size declaration's
                // signed length must meet the real one (and be refused),
                // not leave the server waiting for bytes that never come.
                if let Some(v) = v.as_str()
                    && !k.eq_ignore_ascii_case("content-length")
                {
                    put = put.header(k, v);
                }
            }
            match put.send().await {
                Ok(r) if r.status().is_success() => return,
                // S3 refused the bytes (wrong size or digest): final.
                Ok(r) if r.status().is_client_error() => return,
                _ => {}
            }
        }
    }

    async fn send_parts(&mut self, name: &str, upload_id: &str, bytes: &[u8]) {
        let parts: Vec<Value> = bytes
            .chunks(PART_SIZE as usize)
            .enumerate()
            .map(|(n, chunk)| json!({"number": n + 1, "sha256": sha256_hex(chunk)}))
            .collect();
        let answer = self
            .send(
                name,
                "upload-parts",
                Call::new(
                    "POST",
                    format!("/artifacts/{name}/uploads/{upload_id}/parts"),
                )
                .body(json!({"parts": parts})),
                None,
            )
            .await;
        let urls = answer.body()["parts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for part in urls {
            let number = part["number"].as_u64().unwrap_or(0) as usize;
            let Some(chunk) = bytes
                .chunks(PART_SIZE as usize)
                .nth(number.saturating_sub(1))
            else {
                continue;
            };
            let ticket = json!({"url": part["url"], "headers": part["headers"]});
            self.put_bytes(&ticket, chunk).await;
        }
    }

    async fn publish(&mut self, name: &str) {
        let force = self.rng.u32(..3) == 0;
        let mut call = Call::new("POST", format!("/artifacts/{name}/versions"));
        if force {
            call = call.body(json!({"force": true}));
        }
        let crash = self.crash();
        let outcome = self.send(name, "publish", call, crash).await;
        if outcome.ok() {
            self.world.learn_version(name, outcome.body());
        }
    }

    fn pick_version(&mut self, name: &str) -> Option<u64> {
        let known = self.world.known_versions(name);
        (!known.is_empty()).then(|| known[self.rng.usize(..known.len())])
    }

    /// `If-Match` on the alias's revision as a read just saw it (sometimes
    /// a stale guess), or `If-None-Match: *`, or nothing.
    async fn precondition(&mut self, name: &str, alias: &str) -> Option<(&'static str, String)> {
        match self.rng.u32(..10) {
            0..=3 => {
                let read = self
                    .send(
                        name,
                        "get-alias",
                        Call::new("GET", format!("/artifacts/{name}/aliases/{alias}")),
                        None,
                    )
                    .await;
                let revision = read.body()["revision"].as_u64()?;
                let guess = if self.rng.u32(..5) == 0 {
                    revision.saturating_sub(1).max(1)
                } else {
                    revision
                };
                Some(("if-match", format!("\"{guess}\"")))
            }
            4 => Some(("if-none-match", "*".to_owned())),
            _ => None,
        }
    }

    async fn put_alias(&mut self, name: &str) {
        let alias = ALIASES[self.rng.usize(..ALIASES.len())];
        let mut body = json!({});
        if self.rng.u32(..5) != 0
            && let Some(v) = self.pick_version(name)
        {
            body["version"] = json!(v.to_string());
        }
        if self.rng.u32(..3) == 0
            && let Some(secondary) = self.pick_version(name)
            && body["version"] != json!(secondary.to_string())
        {
            body["secondary_version"] = json!(secondary.to_string());
            body["secondary_version_weight"] = json!(self.rng.u32(..100));
        }
        let mut call = Call::new("PUT", format!("/artifacts/{name}/aliases/{alias}")).body(body);
        if let Some((header, value)) = self.precondition(name, alias).await {
            call = call.header(header, value);
        }
        let crash = self.crash();
        self.send(name, "put-alias", call, crash).await;
    }

    async fn rollback(&mut self, name: &str) {
        let alias = ALIASES[self.rng.usize(..ALIASES.len())];
        let mut call = Call::new(
            "POST",
            format!("/artifacts/{name}/aliases/{alias}/rollback"),
        )
        .body(json!({}));
        if let Some(("if-match", value)) = self.precondition(name, alias).await {
            call = call.header("if-match", value);
        }
        let crash = self.crash();
        self.send(name, "rollback", call, crash).await;
    }

    async fn delete_alias(&mut self, name: &str) {
        let alias = ALIASES[self.rng.usize(..ALIASES.len())];
        let mut call = Call::new("DELETE", format!("/artifacts/{name}/aliases/{alias}"));
        if let Some(("if-match", value)) = self.precondition(name, alias).await {
            call = call.header("if-match", value);
        }
        let crash = self.crash();
        self.send(name, "delete-alias", call, crash).await;
    }

    async fn delete_version(&mut self, name: &str) {
        let Some(v) = self.pick_version(name) else {
            return;
        };
        let crash = self.crash();
        self.send(
            name,
            "delete-version",
            Call::new("DELETE", format!("/artifacts/{name}/versions/{v}")),
            crash,
        )
        .await;
    }

    /// An alias moved onto a version while that version is deleted, both
    /// requests at once: a move must not land on a target deleted before
    /// its transaction (invariants 4, 10), whichever reads first.
    async fn move_while_deleting(&mut self, name: &str) {
        let Some(v) = self.pick_version(name) else {
            return;
        };
        let alias = ALIASES[self.rng.usize(..ALIASES.len())];
        let (move_crash, delete_crash) = (self.crash(), self.crash());
        let actor = self.actor();
        let client = &self.world.client;
        tokio::join!(
            client.send(
                &actor,
                name,
                "put-alias",
                Call::new("PUT", format!("/artifacts/{name}/aliases/{alias}"))
                    .body(json!({"version": v.to_string()})),
                move_crash,
            ),
            client.send(
                &actor,
                name,
                "delete-version",
                Call::new("DELETE", format!("/artifacts/{name}/versions/{v}")),
                delete_crash,
            )
        );
    }

    async fn retention(&mut self, name: &str) {
        let keep = self.rng.u32(1..4);
        let crash = self.crash();
        self.send(
            name,
            "retention",
            Call::new("POST", format!("/artifacts/{name}/purge"))
                .body(json!({"keep_last_n": keep, "purge_older_than_secs": 0})),
            crash,
        )
        .await;
    }

    async fn reclaim(&mut self, name: &str) {
        let crash = self.crash();
        let actor = self.actor();
        reclaim(&self.world.client, &actor, name, crash).await;
    }

    /// A purge, retried by its client while it has no clear answer. One
    /// left unfinished (its fence still up after its last attempt) is
    /// finished by the drain ([`finish_purge`]), as its client would.
    async fn purge(&mut self, name: &str) {
        for _ in 0..3 {
            let crash = self.crash();
            let outcome = self
                .send(
                    name,
                    "purge",
                    Call::new("DELETE", format!("/artifacts/{name}")),
                    crash,
                )
                .await;
            if !outcome.unsure() {
                break;
            }
        }
    }
}

/// Finishes a purge whose client got no answer that it ended (a 5xx, a
/// crash, or the 409 of its own earlier attempt's fence): retries it, a
/// second apart while the fence stands, until it ends (at most ~45 s, the
/// fence's lease and more).
pub async fn finish_purge(client: &Client, name: &str) {
    for _ in 0..45 {
        let outcome = client
            .send(
                "bg",
                name,
                "purge",
                Call::new("DELETE", format!("/artifacts/{name}")),
                None,
            )
            .await
            .outcome;
        if outcome.ok() || outcome.status() == Some(404) {
            return;
        }
        if outcome.status() == Some(409) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Reclaim with grace 0 (the scheduled job's second half), abandoned after
/// `crash` when given; recorded as an event of `actor`.
pub async fn reclaim(client: &Client, actor: &str, name: &str, crash: Option<Duration>) {
    let start = client.history.begin(actor, name, "reclaim");
    let Ok(artifact) = name.parse::<ArtifactName>() else {
        return;
    };
    let work = client.repo.reclaim(&artifact, Duration::ZERO);
    let result = match crash {
        Some(after) => tokio::time::timeout(after, work).await.ok(),
        None => Some(work.await),
    };
    let outcome = match result {
        None => Outcome::Crashed,
        Some(Ok(report)) => Outcome::Answer {
            status: 200,
            body: json!({"report": format!("{report:?}")}),
        },
        Some(Err(e)) => Outcome::Answer {
            status: 500,
            body: json!({"error": e.to_string()}),
        },
    };
    let request = json!({"grace_secs": 0, "crash_after_ms": crash.map(|c| c.as_millis() as u64)});
    client
        .history
        .record(actor, name, "reclaim", request, start, outcome);
}

/// One verification step as a `verify-upload` invocation, abandoned after
/// `crash` when given. The next invocation to queue, if any.
pub async fn verify_step(
    client: &Client,
    locks: &Locks,
    job: &VerifyJob,
    crash: Option<Duration>,
) -> Option<VerifyJob> {
    let _shared = match locks.get(job.name.as_str()) {
        Some(lock) => Some(lock.read().await),
        None => None,
    };
    let start = client.history.begin("bg", &job.name, "verify-step");
    let name: ArtifactName = job.name.parse().ok()?;
    let work = client.repo.verify_upload_step(&name, &job.upload_id, None);
    let result = match crash {
        Some(after) => tokio::time::timeout(after, work).await.ok(),
        None => Some(work.await),
    };
    let (outcome, next) = match result {
        None => (Outcome::Crashed, retry(job)),
        Some(Ok(step)) => {
            let next = matches!(step, VerifyStep::Continue { .. }).then(|| VerifyJob {
                attempt: 0,
                ..job.clone()
            });
            let body = json!({"step": format!("{step:?}").chars().take(200).collect::<String>()});
            (Outcome::Answer { status: 200, body }, next)
        }
        Some(Err(e)) => (
            Outcome::Answer {
                status: 500,
                body: json!({"error": e.to_string()}),
            },
            retry(job),
        ),
    };
    let request = json!({"upload_id": job.upload_id, "attempt": job.attempt, "crash_after_ms": crash.map(|c| c.as_millis() as u64)});
    client
        .history
        .record("bg", &job.name, "verify-step", request, start, outcome);
    next
}

/// Lambda's retry of a failed asynchronous invocation (two more attempts;
/// then the on-failure queue, which the final drain redrives).
fn retry(job: &VerifyJob) -> Option<VerifyJob> {
    Some(VerifyJob {
        attempt: job.attempt + 1,
        ..job.clone()
    })
}

pub const LAMBDA_ATTEMPTS: u32 = 3;

/// The verification "function": runs queued invocations (in parallel, as
/// Lambda does), crashing some; failed ones are retried, then parked in
/// `dead` (the on-failure queue).
pub async fn verify_driver(
    client: Client,
    locks: Locks,
    mut queue: mpsc::UnboundedReceiver<VerifyJob>,
    requeue: mpsc::UnboundedSender<VerifyJob>,
    dead: Arc<Mutex<Vec<VerifyJob>>>,
    seed: u64,
    crash_rate: f64,
) {
    let rng = Arc::new(Mutex::new(fastrand::Rng::with_seed(
        seed ^ 0x005e_ed0f_7e51,
    )));
    while let Some(job) = queue.recv().await {
        if job.attempt >= LAMBDA_ATTEMPTS {
            if let Ok(mut dead) = dead.lock() {
                dead.push(job);
            }
            continue;
        }
        let (client, locks, requeue, rng) =
            (client.clone(), locks.clone(), requeue.clone(), rng.clone());
        tokio::spawn(async move {
            // Asynchronous invocations start late now and then (Lambda's
            // queue): one in four after 100-600 ms, which leaves room for
            // a newer commit to land before the verification's.
            let (crash, pause) = match rng.lock() {
                Ok(mut rng) => (
                    (rng.f64() < crash_rate).then(|| Duration::from_millis(rng.u64(1..150))),
                    Duration::from_millis(if rng.u32(..4) == 0 {
                        rng.u64(100..600)
                    } else {
                        rng.u64(0..100)
                    }),
                ),
                Err(_) => (None, Duration::ZERO),
            };
            tokio::time::sleep(pause).await;
            if let Some(next) = verify_step(&client, &locks, &job, crash).await {
                let _ = requeue.send(next);
            }
        });
    }
}

/// The fault schedule: rules added to the proxy's plan at seeded moments,
/// each acting on the next request of one AWS operation (optionally of one
/// artifact): a delay, a 503 (throttling), a 500, a reset before
/// forwarding, a reset after forwarding (a lost answer the SDK retries), or
/// a hold before or after forwarding released a little later.
pub async fn fault_schedule(plan: Arc<Plan>, seed: u64, until_ms: u64, history: Arc<History>) {
    const OPERATIONS: [&str; 15] = [
        "TransactWriteItems",
        "UpdateItem",
        "PutItem",
        "DeleteItem",
        "GetItem",
        // Gets a request issues together (`artifact_store::coalesce`).
        "BatchGetItem",
        "Query",
        "PutObject",
        "CopyObject",
        "GetObject",
        "HeadObject",
        "DeleteObject",
        "DeleteObjects",
        "CompleteMultipartUpload",
        "ListObjectVersions",
    ];
    let mut rng = fastrand::Rng::with_seed(seed ^ 0xfa17_5eed);
    let mut cleared = history.now();
    while history.now() < until_ms {
        tokio::time::sleep(Duration::from_millis(rng.u64(10..120))).await;
        if history.now() > cleared + 4000 {
            plan.clear();
            cleared = history.now();
        }
        let operation = OPERATIONS[rng.usize(..OPERATIONS.len())];
        let key = (rng.u32(..3) == 0).then(|| NAMES[rng.usize(..NAMES.len())]);
        let action = match rng.u32(..8) {
            0 => Action::Fault(Fault::Delay),
            1 => Action::Fault(Fault::Status503),
            2 => Action::Fault(Fault::Status500),
            3 => Action::Fault(Fault::ResetBefore),
            4 | 5 => Action::Fault(Fault::ResetAfter),
            hold => {
                let gate = Gate::new();
                let release = gate.clone();
                let after = Duration::from_millis(rng.u64(20..300));
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    release.open();
                });
                if hold == 6 {
                    Action::HoldBefore(gate)
                } else {
                    Action::HoldAfter(gate)
                }
            }
        };
        plan.add(Rule::new(operation, key, action, rng.u64(1..3)));
    }
    plan.clear();
}

/// The library (`versioned` 1.0.1) as a long-lived process.
pub struct Library {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: BufReader<tokio::process::ChildStdout>,
}

impl Library {
    pub async fn start(store: &TestStore) -> Result<Self, String> {
        let script = test_support::workspace_root().join("stress/library.py");
        let mut child = tokio::process::Command::new(test_support::venv_python())
            .arg(script)
            .arg(&store.endpoint)
            .arg(&store.config.bucket)
            .arg(&store.config.table)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("start stress/library.py: {e}"))?;
        let stdin = child.stdin.take().ok_or("library stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("library stdout")?);
        let mut library = Self {
            _child: child,
            stdin,
            stdout,
        };
        library.read_line().await?;
        Ok(library)
    }

    async fn read_line(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .await
            .map_err(|e| format!("library: {e}"))?;
        serde_json::from_str(&line).map_err(|e| format!("library said {line:?}: {e}"))
    }

    /// One call: `Ok(result)` or `Err(the library's exception)`.
    pub async fn call(&mut self, method: &str, kwargs: Value) -> Result<Value, String> {
        let line = json!({"method": method, "kwargs": kwargs}).to_string() + "\n";
        self.stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("library: {e}"))?;
        let answer = self.read_line().await?;
        match answer.get("ok") {
            Some(ok) => Ok(ok.clone()),
            None => Err(answer["error"].as_str().unwrap_or("?").to_owned()),
        }
    }
}

/// The library writer: puts (racing the service), and under the
/// artifact's exclusive lock publishes (after the mirror caught up, as a
/// library user waits for the mirror's lag), moves its own alias, and
/// deletes versions no alias targets.
pub async fn library_writer(
    mut library: Library,
    store: Arc<TestStore>,
    clean: Repository,
    locks: Locks,
    history: Arc<History>,
    seed: u64,
    until_ms: u64,
) {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x11b_7a7e);
    while history.now() < until_ms {
        tokio::time::sleep(Duration::from_millis(rng.u64(50..300))).await;
        let name = NAMES[rng.usize(..NAMES.len())];
        let Some(lock) = locks.get(name) else {
            continue;
        };
        let roll = rng.u32(..10);
        if roll < 4 {
            let i = rng.usize(..POOL);
            let bytes = content(name, i, false);
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let _shared = lock.read().await;
            let start = history.begin("lib", name, "lib-put");
            let result = library
                .call("put_artifact", json!({"name": name, "content": text}))
                .await;
            record_library(
                &history,
                name,
                "lib-put",
                json!({"sha256": sha256_hex(&bytes)}),
                start,
                result,
            );
            continue;
        }
        let _exclusive = lock.write().await;
        // Writes of abandoned handlers still in the proxy land first.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let live = list_all(&clean, &format!("/artifacts/{name}/versions"))
            .await
            .unwrap_or_default();
        let numbers: Vec<u64> = live
            .iter()
            .filter_map(|a| a["version"].as_str()?.parse().ok())
            .collect();
        match roll {
            4..=6 => {
                // A library user waits for the mirror's lag; while the
                // mirror is behind, the library's publish would copy a
                // stale LATEST object (its own race, not the service's).
                if !drain_mirror(&store, &history, "mirror-retry").await {
                    continue;
                }
                let start = history.begin("lib", name, "lib-publish");
                let result = library
                    .call("publish_artifact_version", json!({"name": name}))
                    .await;
                record_library(&history, name, "lib-publish", json!({}), start, result);
            }
            7 | 8 if !numbers.is_empty() => {
                let v = numbers[rng.usize(..numbers.len())];
                let start = history.begin("lib", name, "lib-alias");
                let result = library
                    .call(
                        "put_alias",
                        json!({"name": name, "alias": LIBRARY_ALIAS, "version": v}),
                    )
                    .await;
                record_library(
                    &history,
                    name,
                    "lib-alias",
                    json!({"version": v}),
                    start,
                    result,
                );
            }
            9 if !numbers.is_empty() => {
                let aliases = list_all(&clean, &format!("/artifacts/{name}/aliases"))
                    .await
                    .unwrap_or_default();
                let targeted: BTreeSet<u64> = aliases
                    .iter()
                    .flat_map(|a| [a["version"].as_str(), a["secondary_version"].as_str()])
                    .flatten()
                    .filter_map(|v| v.parse().ok())
                    .collect();
                let free: Vec<u64> = numbers
                    .iter()
                    .copied()
                    .filter(|v| !targeted.contains(v))
                    .collect();
                if free.is_empty() {
                    continue;
                }
                let v = free[rng.usize(..free.len())];
                let start = history.begin("lib", name, "lib-delete");
                let result = library
                    .call(
                        "delete_artifact_version",
                        json!({"name": name, "version": v}),
                    )
                    .await;
                record_library(
                    &history,
                    name,
                    "lib-delete",
                    json!({"version": v}),
                    start,
                    result,
                );
            }
            _ => {}
        }
    }
}

fn record_library(
    history: &History,
    name: &str,
    op: &'static str,
    request: Value,
    start: u64,
    result: Result<Value, String>,
) {
    let outcome = match result {
        Ok(body) => Outcome::Answer { status: 200, body },
        Err(e) => Outcome::Answer {
            status: 400,
            body: json!({"error": e}),
        },
    };
    history.record("lib", name, op, request, start, outcome);
}

/// Runs the mirror over the stream so far (as its event source mapping
/// would); a mirror that keeps failing on a record is recorded as a failed
/// `op` event, not a crash of the run: `mirror-retry` during the run (the
/// event source mapping retries the batch later), `mirror` in the final
/// drain (the checker reports it).
pub async fn drain_mirror(
    store: &Arc<TestStore>,
    history: &Arc<History>,
    op: &'static str,
) -> bool {
    let start = history.now();
    let task = {
        let store = store.clone();
        tokio::spawn(async move { store.drain_mirror().await.len() })
    };
    let outcome = match task.await {
        Ok(_) => return true,
        Err(e) => {
            let message = e
                .try_into_panic()
                .ok()
                .and_then(|p| {
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                })
                .unwrap_or_default();
            Outcome::Answer {
                status: 500,
                body: serde_json::json!({"error": message}),
            }
        }
    };
    history.record("bg", "*", op, serde_json::Value::Null, start, outcome);
    false
}
