//! `artifact doctor` against the local server: every check holds over an S3
//! that enforces checksums as AWS does (s3s-fs, which has no
//! ListObjectVersions, so the purge is checked over moto); the check that
//! S3 refuses other bytes fails over one that does not (moto), and the
//! scratch artifact is purged.

use crate::support;

use std::sync::Arc;

use serde_json::Value;
use support::{Local, Run, artifact};
use test_support::TestStore;
use test_support::checksum_s3::LocalS3;

/// The local API over moto's table and an S3 that checks
/// `x-amz-checksum-sha256` (s3s-fs), as AWS does.
struct Checked {
    _moto: TestStore,
    _s3: LocalS3,
    api: String,
    dir: tempfile::TempDir,
}

impl Checked {
    async fn start() -> Self {
        let moto = TestStore::new().await;
        let s3 = LocalS3::checksum_enforcing().await;
        let bucket = moto.config.bucket.clone();
        let table = moto.config.table.clone();
        let config = shared::config::Config::from_lookup(|key| match key {
            "BUCKET_NAME" => Some(bucket.clone()),
            "TABLE_NAME" => Some(table.clone()),
            // The mirror needs the stream, which only moto has.
            "SEED_LAYOUT_MIRROR" => Some("off".to_owned()),
            _ => None,
        })
        .unwrap();
        s3.s3.create_bucket().bucket(&bucket).send().await.unwrap();
        let repo = shared::Repository::with_service_configs(&s3.sdk, &moto.sdk, &config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(local_api::serve(listener, Arc::new(repo)));
        Self {
            _moto: moto,
            _s3: s3,
            api,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn run(&self, args: &[&str]) -> Run {
        artifact(
            self.dir.path(),
            &[&["--api", self.api.as_str()], args].concat(),
            &[],
        )
        .await
    }
}

fn checks(report: &Value) -> Vec<(&str, bool)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["check"].as_str().unwrap(), c["ok"].as_bool().unwrap()))
        .collect()
}

const ALL: [&str; 11] = [
    "api",
    "scratch-name",
    "missing-blob-head-start",
    "missing-blob-head-commit",
    "checksum-enforced",
    "presigned-upload",
    "commit",
    "publish",
    "download",
    "missing-version",
    "purge",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn doctor_checks_a_deployment_end_to_end_over_an_s3_that_checks_checksums() {
    let local = Checked::start().await;
    let run = local
        .run(&["--json", "doctor", "--name", "doctor-test", "--keep"])
        .await;
    let report = run.json();
    let checks = checks(&report);
    assert!(checks.iter().all(|(_, ok)| *ok), "{report:#}");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(report["ok"], true);
    let names: Vec<&str> = checks.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ALL[..ALL.len() - 1], "all but the purge (--keep)");
    // Kept: the scratch artifact is there, version 1.
    let versions = local
        .run(&["--json", "versions", "doctor-test"])
        .await
        .ok()
        .json();
    assert_eq!(versions["items"].as_array().unwrap().len(), 2, "{versions}");
    // Text output: a header and one row per check.
    let text = local.run(&["doctor", "--keep"]).await;
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert_eq!(text.text().lines().count(), ALL.len(), "{}", text.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn doctor_passes_every_check_over_the_emulator_and_purges_its_scratch_artifact() {
    // The emulator checks x-amz-checksum-sha256 as S3 does (it used to
    // accept any bytes, and this test showed the doctor failing
    // `checksum-enforced` then): every check passes, the purge included.
    let local = Local::start().await;
    let run = local.run(&["--json", "doctor"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["ok"], true, "{report:#}");
    let names: Vec<&str> = checks(&report).iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ALL, "every check ran");
    // Purged: nothing is listed.
    let ls = local.run(&["--json", "ls"]).await.ok().json();
    assert_eq!(ls["items"], serde_json::json!([]), "{ls}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn doctor_refuses_an_existing_artifact_and_touches_nothing() {
    let local = Local::start().await;
    let file = local.file("f", b"bytes");
    local
        .run(&["push", "taken", file.to_str().unwrap()])
        .await
        .ok();
    // Black-box finding: without --keep the doctor went on to purge the
    // artifact it had just found taken.
    let run = local.run(&["--json", "doctor", "--name", "taken"]).await;
    assert_eq!(run.code, 1);
    let report = run.json();
    assert_eq!(report["ok"], false);
    let (last, ok) = *checks(&report).last().unwrap();
    assert_eq!((last, ok), ("scratch-name", false), "{report}");
    // A name it may not check is not taken for free either (and not
    // reported as existing).
    let run = local
        .run(&["--json", "doctor", "--name", "bad..name"])
        .await;
    let report = run.json();
    let (last, ok) = *checks(&report).last().unwrap();
    assert_eq!((last, ok), ("scratch-name", false), "{report}");
    let detail = report["checks"].as_array().unwrap().last().unwrap()["detail"].to_string();
    assert!(detail.contains("could not be checked"), "{report}");
    let back = local.path("back");
    local
        .run(&["pull", "taken", "-o", back.to_str().unwrap()])
        .await
        .ok();
    assert_eq!(std::fs::read(back).unwrap(), b"bytes");
}
