//! The sections of `make bench` that move bytes: multipart upload time by
//! parallelism, verification throughput, and the `artifact` CLI's push and
//! pull throughput with its peak RSS — each beside the emulator's own
//! ceiling for the same bytes (one plain PUT or GET), since on loopback the
//! emulator, not the network, is what bounds them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use shared::model::{CommitOutcome, LOCAL_ACTOR, PartRequest, UploadRequest};
use shared::{ArtifactName, Repository, Verifier, VerifyStep, Version};
use test_support::{TestStore, name};

use crate::{MIB, emulator_requests, quantile, random_bytes, start_local_api, target_dir};

/// The multipart section: label, object size, part size, samples per
/// parallelism.
const MULTIPART: [(&str, usize, usize, usize); 2] = [
    ("64 MiB", 64 * MIB, 8 * MIB, 3),
    ("1 GiB", 1024 * MIB, 64 * MIB, 1),
];
/// Part PUTs in flight (1: the parts one after the other, for reference).
const PARALLEL: [usize; 4] = [1, 4, 8, 16];
/// The verification section: the object and the parts it is sent in (untimed).
const VERIFY: (&str, usize, usize) = ("1 GiB", 1024 * MIB, 64 * MIB);
/// The CLI section: the throughput file, its samples, and the file of the
/// peak-RSS run.
const CLI: (&str, usize, usize) = ("256 MiB", 256 * MIB, 3);
const CLI_RSS: (&str, usize) = ("1 GiB", 1024 * MIB);
/// The CLI's goal for its peak RSS, whatever the file's size.
const CLI_RSS_GOAL_MIB: f64 = 64.0;

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn mib_per_s(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / MIB as f64 / seconds
}

fn median(values: &[f64]) -> f64 {
    quantile(values.to_vec(), 0.5)
}

/// Bytes to upload, with their SHA-256 (computed before any timing).
struct Content {
    bytes: Bytes,
    sha256: String,
}

impl Content {
    fn random(len: usize) -> Self {
        let bytes = Bytes::from(random_bytes(len));
        let sha256 = hex::encode(Sha256::digest(&bytes));
        Self { bytes, sha256 }
    }

    /// Each part's SHA-256, as a client computes them before sending.
    fn part_digests(&self, part_size: usize) -> Vec<shared::Sha256> {
        self.bytes
            .chunks(part_size)
            .map(|part| {
                hex::encode(Sha256::digest(part))
                    .parse()
                    .expect("a SHA-256")
            })
            .collect()
    }

    fn request(&self, part_size: Option<usize>) -> UploadRequest {
        UploadRequest {
            sha256: self.sha256.clone(),
            size: self.bytes.len() as u64,
            content_type: None,
            metadata: Default::default(),
            part_size: part_size.map(|p| p as u64),
            key: None,
        }
    }
}

/// One PUT of `body` to a presigned URL with the headers it was signed with.
async fn put(
    http: &reqwest::Client,
    url: &str,
    headers: &BTreeMap<String, String>,
    body: Bytes,
) -> Result<(), String> {
    let mut request = http.put(url).body(body);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let response = request.send().await.map_err(|e| format!("PUT: {e}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "PUT: {status} {}",
            response.text().await.unwrap_or_default()
        ))
    }
}

/// One GET of `url` (of `range` when given, end exclusive), the body
/// streamed and discarded, or hashed: the time, the bytes, the digest.
async fn get(
    http: &reqwest::Client,
    url: &str,
    range: Option<(u64, u64)>,
    hash: bool,
) -> (Duration, u64, Option<String>) {
    let start = Instant::now();
    let mut request = http.get(url);
    if let Some((from, to)) = range {
        request = request.header("range", format!("bytes={from}-{}", to - 1));
    }
    let mut response = request.send().await.expect("GET");
    assert!(response.status().is_success(), "GET: {}", response.status());
    let mut hasher = hash.then(Sha256::new);
    let mut len = 0;
    while let Some(chunk) = response.chunk().await.expect("GET body") {
        len += chunk.len() as u64;
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk);
        }
    }
    let digest = hasher.map(|h| hex::encode(h.finalize()));
    (start.elapsed(), len, digest)
}

/// Start upload (multipart), the parts' presigned URLs, then every part PUT
/// with `parallel` in flight: the upload id, and the time from the start
/// upload call to the last part sent.
async fn send_in_parts(
    repo: &Repository,
    http: &reqwest::Client,
    n: &ArtifactName,
    content: &Content,
    part_size: usize,
    digests: &[shared::Sha256],
    parallel: usize,
) -> (String, Duration) {
    let start = Instant::now();
    let ticket = repo
        .create_upload(n, content.request(Some(part_size)), LOCAL_ACTOR)
        .await
        .expect("start a multipart upload");
    let plan = ticket.multipart.expect("a multipart ticket");
    assert_eq!(plan.part_count as usize, digests.len());
    let requests: Vec<PartRequest> = digests
        .iter()
        .enumerate()
        .map(|(i, sha256)| PartRequest {
            number: i as u32 + 1,
            sha256: sha256.clone(),
        })
        .collect();
    let urls = repo
        .upload_part_urls(n, &ticket.upload_id, &requests)
        .await
        .expect("part URLs");
    let sent: Vec<Result<(), String>> = futures::stream::iter(&urls.parts)
        .map(|part| {
            let from = (part.number as usize - 1) * part_size;
            let to = (from + part_size).min(content.bytes.len());
            put(
                http,
                &part.url,
                &part.headers,
                content.bytes.slice(from..to),
            )
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    for result in sent {
        result.unwrap_or_else(|e| panic!("part: {e}"));
    }
    (ticket.upload_id, start.elapsed())
}

/// The commit of a multipart upload (ListParts, CompleteMultipartUpload,
/// recorded `verifying`) through a repository whose verifier is
/// [`Verifier::Deferred`]: its time.
async fn commit_multipart(repo: &Repository, n: &ArtifactName, id: &str) -> Duration {
    let start = Instant::now();
    match repo.commit(n, id, "bench").await.expect("commit") {
        CommitOutcome::Verifying { .. } => {}
        other => panic!("a multipart commit answered {other:?}"),
    }
    start.elapsed()
}

/// `verify_upload_step(.., None)` until the upload is committed: the time
/// and the steps taken.
async fn verify(repo: &Repository, n: &ArtifactName, id: &str) -> (Duration, usize) {
    let start = Instant::now();
    let mut steps = 0;
    loop {
        steps += 1;
        match repo
            .verify_upload_step(n, id, None)
            .await
            .expect("verification step")
        {
            VerifyStep::Continue { .. } => {}
            VerifyStep::Committed(_) => return (start.elapsed(), steps),
            other => panic!("verification answered {other:?}"),
        }
    }
}

/// Start upload (one PUT, untimed), then that PUT of the whole object
/// (timed): the upload id and the PUT's time.
async fn single_put(
    repo: &Repository,
    http: &reqwest::Client,
    n: &ArtifactName,
    content: &Content,
) -> (String, Duration) {
    let ticket = repo
        .create_upload(n, content.request(None), LOCAL_ACTOR)
        .await
        .expect("start a single-PUT upload");
    let url = ticket.url.clone().expect("a single-PUT URL");
    let headers = ticket.headers.clone().unwrap_or_default();
    let start = Instant::now();
    put(http, &url, &headers, content.bytes.clone())
        .await
        .unwrap_or_else(|e| panic!("single PUT: {e}"));
    (ticket.upload_id, start.elapsed())
}

/// LATEST's presigned download URL.
async fn download_url(repo: &Repository, n: &ArtifactName) -> String {
    repo.get_version(n, Version::Latest)
        .await
        .expect("LATEST")
        .download_url
        .expect("a download URL")
}

/// Deletes every object version of the store's bucket, so that the
/// emulator (which keeps each object in a temporary file until then) does
/// not accumulate gigabytes across sections. Best effort.
async fn empty_bucket(store: &TestStore) {
    for _ in 0..20 {
        let Ok(listed) = store
            .s3
            .list_object_versions()
            .bucket(&store.config.bucket)
            .send()
            .await
        else {
            return;
        };
        let doomed: Vec<(String, Option<String>)> = listed
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(
                listed
                    .delete_markers()
                    .iter()
                    .map(|m| (m.key(), m.version_id())),
            )
            .filter_map(|(k, v)| Some((k?.to_owned(), v.map(str::to_owned))))
            .collect();
        if doomed.is_empty() {
            return;
        }
        for (key, version) in doomed {
            let _ = store
                .s3
                .delete_object()
                .bucket(&store.config.bucket)
                .key(key)
                .set_version_id(version)
                .send()
                .await;
        }
    }
}

/// Multipart upload time at each size and parallelism, the commit and the
/// verification after it, and the emulator's ceiling: one PUT of the whole
/// object. Returns the section's Markdown (also printed).
pub async fn multipart() -> String {
    let store = TestStore::new().await;
    let http = &store.http;
    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    let mut md = String::new();
    let _ = writeln!(md, "## Multipart upload time by parallelism\n");
    let _ = writeln!(
        md,
        "An upload in parts as a client drives it, through the repository (`create_upload` with `part_size`, \
         `upload_part_urls`, then every part PUT on its presigned URL with the given number in flight); each part's SHA-256 \
         and the whole object's are computed before timing. *Upload* = start upload → the last part sent (the two API calls \
         take a few ms of it). Then, separately, *commit* (ListParts, CompleteMultipartUpload, the upload recorded \
         `verifying`; the verifier deferred) and *verification* (`verify_upload_step` until LATEST is committed; \
         see the next section). Beside them, the emulator's own rate for the same bytes in one request: **one presigned PUT of the \
         whole object** (start upload untimed; a single PUT takes up to 5 GiB), and the commit after it (which needs no \
         verification: S3 checked the SHA-256 the PUT was signed with). 64 MiB is sent in parts of 8 MiB (8 parts, so \
         16 in flight is 8 in flight), 1 GiB in parts of 64 MiB (16 parts). Median of the samples shown.\n"
    );
    let _ = writeln!(
        md,
        "| size | parts | PUTs in flight | upload s | upload MiB/s | commit s | verification s | samples |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    for (label, size, part_size, samples) in MULTIPART {
        eprintln!("bench: multipart upload {label}…");
        let content = Content::random(size);
        let digests = content.part_digests(part_size);
        let parts = format!("{} × {} MiB", digests.len(), part_size / MIB);
        let mut best_parts = f64::INFINITY;
        for parallel in PARALLEL {
            let (mut upload, mut commit, mut verification) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..samples {
                let n = name(&format!("mp-{}-{parallel}-{i}", label.replace(' ', "")));
                let (id, sent) =
                    send_in_parts(&repo, http, &n, &content, part_size, &digests, parallel).await;
                upload.push(secs(sent));
                commit.push(secs(commit_multipart(&repo, &n, &id).await));
                verification.push(secs(verify(&repo, &n, &id).await.0));
            }
            best_parts = best_parts.min(median(&upload));
            let _ = writeln!(
                md,
                "| {label} | {parts} | {parallel}{} | {:.2} | {:.0} | {:.2} | {:.2} | {samples} |",
                if parallel > digests.len() {
                    format!(" ({})", digests.len())
                } else {
                    String::new()
                },
                median(&upload),
                mib_per_s(size, median(&upload)),
                median(&commit),
                median(&verification),
            );
        }
        let (mut one_put, mut commit) = (Vec::new(), Vec::new());
        for i in 0..samples {
            let n = name(&format!("mp-{}-single-{i}", label.replace(' ', "")));
            let (id, took) = single_put(&repo, http, &n, &content).await;
            one_put.push(secs(took));
            let start = Instant::now();
            repo.commit_upload(&n, &id, LOCAL_ACTOR)
                .await
                .expect("commit");
            commit.push(secs(start.elapsed()));
        }
        let _ = writeln!(
            md,
            "| {label} | one PUT of the whole object | 1 | {:.2} | {:.0} | {:.3} | — | {samples} |",
            median(&one_put),
            mib_per_s(size, median(&one_put)),
            median(&commit),
        );
        ratios.push((label, best_parts, median(&one_put)));
        empty_bucket(&store).await;
    }
    let _ = writeln!(
        md,
        "\nFastest upload in parts against one PUT of the same bytes: {}. The emulator applies one request at a time \
         (`scripts/emulator.py` holds one lock across each request, its body included), so part PUTs in flight queue \
         inside it rather than being received in parallel (compare 1 in flight with 4 to 16). Nor is its time per byte \
         the same for every request: a request whose body exceeds 32 MiB makes it run a full garbage collection before \
         it answers (`LARGE_BODY` there), which one PUT pays at both sizes and every 64 MiB part pays at 1 GiB. So one \
         PUT is the emulator's rate for the same bytes in one request, a reference rather than a hard ceiling; on S3 \
         parts are received in parallel and the upload in parts is what scales. The multipart commit includes the \
         emulator concatenating the parts (CompleteMultipartUpload copies them, in Python), server-side on S3; the \
         verification after it is the next section's subject.\n",
        ratios
            .iter()
            .map(|(label, parts, one)| format!(
                "{label} {parts:.2} s against {one:.2} s ({})",
                if parts < one {
                    format!("parts {:.1}× faster", one / parts)
                } else {
                    format!("one PUT {:.1}× faster", parts / one)
                }
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!("{md}");
    md
}

/// Verification throughput of a 1 GiB multipart upload, beside what the
/// emulator itself takes to serve the same bytes. Returns the section's
/// Markdown (also printed).
pub async fn verification() -> String {
    let (label, size, part_size) = VERIFY;
    eprintln!("bench: verification throughput ({label})…");
    let store = TestStore::new().await;
    let http = &store.http;
    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    let content = Content::random(size);
    let digests = content.part_digests(part_size);
    let n = name("verify-throughput");
    let (id, _) = send_in_parts(&repo, http, &n, &content, part_size, &digests, 8).await;
    commit_multipart(&repo, &n, &id).await;
    let before = emulator_requests(http).await;
    let (verified, steps) = verify(&repo, &n, &id).await;
    let calls = emulator_requests(http).await.saturating_sub(before);
    let url = download_url(&repo, &n).await;
    let (discarded, len, _) = get(http, &url, None, false).await;
    assert_eq!(len, size as u64, "the whole object");
    let (hashed, _, digest) = get(http, &url, None, true).await;
    assert_eq!(digest.as_deref(), Some(content.sha256.as_str()));
    // One range as verification asks for them, at three places (median),
    // times the number of ranges verification reads.
    let range = shared::repository::RANGE_BYTES;
    let ranges = (size as u64).div_ceil(range);
    let mut one_range = Vec::new();
    for i in 0..3 {
        let from = (ranges * i / 3) * range;
        let (took, got, _) = get(http, &url, Some((from, from + range)), false).await;
        assert_eq!(got, range, "one range");
        one_range.push(secs(took));
    }
    let ranged = median(&one_range) * ranges as f64;
    let start = Instant::now();
    let in_memory = Sha256::digest(&content.bytes);
    let in_memory_s = secs(start.elapsed());
    assert_eq!(hex::encode(in_memory), content.sha256);
    empty_bucket(&store).await;

    let mut md = String::new();
    let _ = writeln!(md, "## Verification throughput\n");
    let _ = writeln!(
        md,
        "A {label} multipart upload (parts of {} MiB, sent untimed) committed with the verifier deferred \
         (`Verifier::Deferred`), then the loop of `verify_upload_step(.., None)` timed until the upload is committed as \
         LATEST: the SHA-256 of the whole object computed from S3 by ranged GETs of {} MiB, {} in flight, fed in order \
         into one hasher (`service/src/verification.rs`), then the commit's transaction. Without a deadline and with \
         the default byte budget one step does it all. Beside it, what the emulator takes to serve the same object to a \
         plain client (reqwest, body streamed), and the hashing cost alone.\n",
        part_size / MIB,
        range / MIB as u64,
        shared::repository::PARALLEL_RANGES,
    );
    let _ = writeln!(md, "| measured | s | MiB/s | emulator requests |");
    let _ = writeln!(md, "|---|---:|---:|---:|");
    let _ = writeln!(
        md,
        "| **verification** ({steps} step{}) | {:.2} | **{:.0}** | {calls} |",
        if steps == 1 { "" } else { "s" },
        secs(verified),
        mib_per_s(size, secs(verified)),
    );
    let _ = writeln!(
        md,
        "| emulator ceiling: one GET of the whole object, body discarded | {:.2} | **{:.0}** | 1 |",
        secs(discarded),
        mib_per_s(size, secs(discarded)),
    );
    let _ = writeln!(
        md,
        "| one GET of the whole object, body hashed (SHA-256) as it arrives | {:.2} | {:.0} | 1 |",
        secs(hashed),
        mib_per_s(size, secs(hashed)),
    );
    let _ = writeln!(
        md,
        "| emulator: one ranged GET of {} MiB (median of 3) × {ranges} ranges | {ranged:.2} | {:.0} | {ranges} |",
        range / MIB as u64,
        mib_per_s(size, ranged),
    );
    let _ = writeln!(
        md,
        "| SHA-256 of {label} in memory (no I/O) | {in_memory_s:.2} | {:.0} | — |",
        mib_per_s(size, in_memory_s),
    );
    let _ = writeln!(
        md,
        "\nVerification runs at {:.0} % of one plain GET's rate for the same object, and takes {:.2}× the time of the \
         ranged GETs it makes, served one by one. The emulator's ceiling for verification is \
         not that GET but the ranged GETs: moto answers a ranged GET by reading the **whole** object from its temporary \
         file and slicing it (`_handle_range_header` on `key.value`), one request at a time, so each {} MiB range of a \
         {label} object costs as much as reading the {label}, and the {ranges} ranges cost {ranges} reads of the whole \
         object (the row above). Verification's time follows that cost (the ratio above), which is the emulator's: \
         quadratic in the object's size, where on S3 a ranged GET costs its range. The hashing itself ({:.0} MiB/s in memory) is \
         not the bound.\n",
        secs(discarded) / secs(verified) * 100.0,
        secs(verified) / ranged,
        range / MIB as u64,
        mib_per_s(size, in_memory_s),
    );
    println!("{md}");
    md
}

/// What one run of the CLI took.
struct CliRun {
    seconds: f64,
    peak_rss_kib: Option<u64>,
    failure: Option<String>,
}

/// `artifact --api API --no-sign --quiet --json ARGS` in `dir`, its peak
/// RSS read from `/proc/<pid>/status` (VmHWM) every 5 ms while it runs.
async fn run_cli(binary: &Path, api: &str, dir: &Path, args: &[&str]) -> CliRun {
    let start = Instant::now();
    let child = tokio::process::Command::new(binary)
        .args(["--api", api, "--no-sign", "--quiet", "--json"])
        .args(args)
        .current_dir(dir)
        .env_remove("ARTIFACT_API_URL")
        .env("ARTIFACT_STATE_DIR", dir.join(".state"))
        .env("CI", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) => {
            return CliRun {
                seconds: f64::NAN,
                peak_rss_kib: None,
                failure: Some(format!("cannot run {}: {e}", binary.display())),
            };
        }
    };
    let peak = Arc::new(AtomicU64::new(0));
    let watcher = child.id().map(|pid| {
        let peak = peak.clone();
        tokio::spawn(async move {
            // VmHWM is gone once the process has exited.
            while let Some(kib) = crate::vm_hwm_kib(pid) {
                peak.fetch_max(kib, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    });
    let output = child.wait_with_output().await;
    let seconds = secs(start.elapsed());
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    let peak_rss_kib = Some(peak.load(Ordering::Relaxed)).filter(|kib| *kib > 0);
    let failure = match output {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "exit {}: {}",
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("{e}")),
    };
    CliRun {
        seconds,
        peak_rss_kib,
        failure,
    }
}

/// The release `artifact` binary: cargo-lambda's (scripts/release.sh builds
/// it with the functions), its copy, or a plain release build.
fn cli_binary() -> Option<PathBuf> {
    let target = target_dir();
    [
        target.join("lambda-x86-64/artifact/bootstrap"),
        target.join("cli/artifact-linux-x86_64"),
        target.join("release/artifact"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// A row of the CLI table from runs of one command.
fn cli_row(md: &mut String, what: &str, size: usize, runs: &[CliRun]) -> Option<f64> {
    let failed: Vec<&str> = runs.iter().filter_map(|r| r.failure.as_deref()).collect();
    if let Some(first) = failed.first() {
        let _ = writeln!(
            md,
            "| {what} | {} | — | — | — | failed {} of {}: {} |",
            bytes_label(size),
            failed.len(),
            runs.len(),
            first.replace('|', "/").replace('\n', " ")
        );
        return None;
    }
    let seconds = median(&runs.iter().map(|r| r.seconds).collect::<Vec<_>>());
    let rss = runs.iter().filter_map(|r| r.peak_rss_kib).max();
    let _ = writeln!(
        md,
        "| {what} | {} | {seconds:.2} | {:.0} | {} | {} |",
        bytes_label(size),
        mib_per_s(size, seconds),
        rss.map_or("—".into(), |kib| format!("{:.1}", kib as f64 / 1024.0)),
        runs.len(),
    );
    Some(seconds)
}

/// The CLI's default `--multipart-threshold`.
const CLI_MULTIPART_THRESHOLD: usize = 100 * MIB;

fn push_label(size: usize) -> String {
    if size > CLI_MULTIPART_THRESHOLD {
        "`artifact push` (parts, verified)".to_owned()
    } else {
        "`artifact push` (one PUT: below the multipart threshold)".to_owned()
    }
}

fn bytes_label(size: usize) -> String {
    if size >= 1024 * MIB {
        format!("{} GiB", size / 1024 / MIB)
    } else {
        format!("{} MiB", size / MIB)
    }
}

/// `artifact push` and `artifact pull` through the release `local-api` on
/// the emulator, beside one presigned PUT and one GET of the same bytes;
/// the CLI's peak RSS while it pushes (and pulls) 1 GiB. Returns the
/// section's Markdown (also printed).
pub async fn cli() -> String {
    let (label, size, samples) = CLI;
    let (rss_label, rss_size) = CLI_RSS;
    let mut md = String::new();
    let _ = writeln!(md, "## CLI throughput and memory\n");
    let _ = writeln!(
        md,
        "The release `artifact` binary (built by `make release` with the functions) run as a user runs it, \
         `artifact --api http://127.0.0.1:PORT --no-sign --quiet --json push|pull …`, against the release `local-api` \
         on the same emulator (its mirror of the library's layout off, so no copy competes; verification runs in the \
         server's process, as `make dev` does). Each push is of the {label} file (written untimed) to an artifact of its \
         own, so the bytes are always sent; the time is the CLI process's, start to exit: *push* = one pass hashing the \
         file (the whole digest and each part's), start upload, parts of 16 MiB with 4 in flight (the defaults; files \
         above 100 MiB go in parts), commit, then polling the upload's state until the server's verification committed \
         it (the CLI polls at 0.5, 1, 2, 4, 5, 5… s, so up to that much of the time is waiting for the next poll); \
         *push, one PUT* = the same with `--multipart-threshold 5GiB` (hash, start upload, one streamed PUT, commit); \
         *pull* = resolve, one streamed GET hashed as it arrives, written to a temporary file renamed into place. Peak \
         RSS is the process's VmHWM (`/proc/<pid>/status`), read every 5 ms while it runs. Beside them, the emulator's \
         ceiling for the same bytes: one presigned PUT and one GET with reqwest (the body in memory / discarded).\n"
    );
    let Some(binary) = cli_binary() else {
        let _ = writeln!(
            md,
            "_Not measured: no release `artifact` binary under {}/ (`make release` builds it)._\n",
            target_dir().display()
        );
        println!("{md}");
        return md;
    };
    eprintln!("bench: CLI push and pull ({label}, then {rss_label})…");
    let store = TestStore::new().await;
    let http = &store.http;
    let Some((mut server, api)) = start_local_api(&store, &[("SEED_LAYOUT_MIRROR", "off")]).await
    else {
        let _ = writeln!(
            md,
            "_Not measured: the release `local-api` binary is missing or did not start (`make bench` builds it)._\n"
        );
        println!("{md}");
        return md;
    };
    let dir = std::env::temp_dir().join(format!("bench-cli-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let content = Content::random(size);
    let file = dir.join("file.bin");
    std::fs::write(&file, &content.bytes).expect("write the file");
    let file = file.to_string_lossy().into_owned();
    let out = dir.join("pulled.bin");
    let out_arg = out.to_string_lossy().into_owned();

    let (mut pushes, mut single, mut pulls) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ceiling_put, mut ceiling_get) = (Vec::new(), Vec::new());
    for i in 0..samples {
        let parts = format!("cli-parts-{i}");
        pushes.push(run_cli(&binary, &api, &dir, &["push", &parts, &file]).await);
        let one = format!("cli-one-{i}");
        let args = ["push", &one, &file, "--multipart-threshold", "5GiB"];
        single.push(run_cli(&binary, &api, &dir, &args).await);
        if pushes.last().is_some_and(|r| r.failure.is_none()) {
            pulls.push(run_cli(&binary, &api, &dir, &["pull", &parts, "-o", &out_arg]).await);
            let _ = std::fs::remove_file(&out);
        }
        let n = name(&format!("cli-ceiling-{i}"));
        let (id, took) = single_put(&store.repo, http, &n, &content).await;
        ceiling_put.push(secs(took));
        store
            .repo
            .commit_upload(&n, &id, LOCAL_ACTOR)
            .await
            .expect("commit");
        let url = download_url(&store.repo, &n).await;
        let (took, got, _) = get(http, &url, None, false).await;
        assert_eq!(got, size as u64);
        ceiling_get.push(secs(took));
    }
    let _ = writeln!(md, "| run | bytes | s | MiB/s | peak RSS MiB | samples |");
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|");
    let push_s = cli_row(&mut md, &push_label(size), size, &pushes);
    let single_s = cli_row(&mut md, "`artifact push`, one PUT", size, &single);
    let pull_s = cli_row(&mut md, "`artifact pull`", size, &pulls);
    let (put_s, get_s) = (median(&ceiling_put), median(&ceiling_get));
    let _ = writeln!(
        md,
        "| emulator ceiling: one presigned PUT (reqwest) | {label} | {put_s:.2} | {:.0} | — | {samples} |",
        mib_per_s(size, put_s)
    );
    let _ = writeln!(
        md,
        "| emulator ceiling: one GET (reqwest, body discarded) | {label} | {get_s:.2} | {:.0} | — | {samples} |",
        mib_per_s(size, get_s)
    );
    drop(content);
    empty_bucket(&store).await;

    // Peak RSS while pushing (then pulling) a file larger than any buffer.
    let big = Content::random(rss_size);
    std::fs::write(&file, &big.bytes).expect("write the file");
    drop(big);
    let pushed = run_cli(&binary, &api, &dir, &["push", "cli-rss", &file]).await;
    let pulled = if pushed.failure.is_none() {
        let run = run_cli(&binary, &api, &dir, &["pull", "cli-rss", "-o", &out_arg]).await;
        let _ = std::fs::remove_file(&out);
        Some(run)
    } else {
        None
    };
    let peak_push = pushed.peak_rss_kib;
    let what = format!("{} — peak RSS run", push_label(rss_size));
    cli_row(&mut md, &what, rss_size, &[pushed]);
    if let Some(pulled) = pulled {
        cli_row(
            &mut md,
            "`artifact pull` — peak RSS run",
            rss_size,
            &[pulled],
        );
    }
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    empty_bucket(&store).await;

    let ratio = |ours: Option<f64>, ceiling: f64| {
        ours.map_or("—".to_owned(), |s| {
            format!("{:.0} %", ceiling / s * 100.0)
        })
    };
    let _ = writeln!(
        md,
        "\nAgainst the emulator's ceiling for the same {label}: push (default) at {} of one PUT's rate, push with one PUT \
         at {}, pull at {} of one GET's. **Peak RSS during the {rss_label} push: {}** (the goal: ≤ {CLI_RSS_GOAL_MIB:.0} MiB, \
         so the CLI streams the file rather than holding it).\n",
        ratio(push_s, put_s),
        ratio(single_s, put_s),
        ratio(pull_s, get_s),
        match peak_push {
            Some(kib) => {
                let mib = kib as f64 / 1024.0;
                format!(
                    "{mib:.1} MiB, {}",
                    if mib <= CLI_RSS_GOAL_MIB {
                        "met"
                    } else {
                        "NOT met"
                    }
                )
            }
            None => "not measured (no /proc/<pid>/status here)".to_owned(),
        }
    );
    let _ = writeln!(
        md,
        "The push in parts pays for more than the bytes: one pass hashing the file, the emulator concatenating the \
         parts on CompleteMultipartUpload, the server's verification reading the object back in ranged GETs (which on \
         the emulator costs a read of the whole object per 8 MiB range: see *Verification throughput*), and the CLI's \
         polling interval. The one-PUT push shows the CLI's own cost over the ceiling: the hashing pass and four API \
         calls.\n"
    );
    println!("{md}");
    md
}
