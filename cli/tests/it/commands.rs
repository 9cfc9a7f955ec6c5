//! Every command with `--json` prints one document of the documented shape;
//! errors exit with the documented codes and say `error: <code>: <message>`.

use crate::support;

use serde_json::Value;
use support::{Local, Run};
use test_support::sorted_keys;

const ARTIFACT: &[&str] = &[
    "content_type",
    "created_by",
    "metadata",
    "name",
    "s3uri",
    "sha256",
    "size",
    "update_at",
    "version",
];
const ALIAS: &[&str] = &[
    "alias",
    "name",
    "revision",
    "secondary_version",
    "secondary_version_s3uri",
    "secondary_version_weight",
    "update_at",
    "version",
    "version_s3uri",
];

fn with(base: &[&'static str], extra: &[&'static str]) -> Vec<&'static str> {
    let mut all = [base, extra].concat();
    all.sort_unstable();
    all
}

/// An error run: its exit code, one `error: CODE: …` line on stderr, and
/// with `--json` the error document on stdout.
fn failed(run: &Run, code: i32, error_code: &str) {
    assert_eq!(run.code, code, "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{:?}", run.stderr);
    assert!(
        lines[0].starts_with(&format!("error: {error_code}: ")),
        "{:?}",
        run.stderr
    );
    let doc = run.json();
    assert_eq!(doc["error"]["code"], error_code, "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_command_prints_one_json_document_of_its_documented_shape() {
    let local = Local::start().await;
    let one = local.file("one", b"one");
    let two = local.file("two", b"two");
    let pushed = local
        .run(&["--json", "push", "app", one.to_str().unwrap()])
        .await
        .ok()
        .json();
    assert_eq!(
        sorted_keys(&pushed),
        ["alias", "latest", "published", "transferred", "upload_id"]
    );
    assert_eq!(sorted_keys(&pushed["latest"]), with(ARTIFACT, &["changed"]));

    let published = local.run(&["--json", "publish", "app"]).await.ok().json();
    assert_eq!(sorted_keys(&published), with(ARTIFACT, &["created"]));
    assert_eq!(
        (&published["version"], &published["created"]),
        (&"1".into(), &true.into())
    );
    let again = local.run(&["--json", "publish", "app"]).await.ok().json();
    assert_eq!(
        (&again["version"], &again["created"]),
        (&"1".into(), &false.into())
    );
    let forced = local
        .run(&["--json", "publish", "app", "--force"])
        .await
        .ok()
        .json();
    assert_eq!(
        (&forced["version"], &forced["created"]),
        (&"2".into(), &true.into())
    );
    local
        .run(&["push", "app", two.to_str().unwrap(), "--publish"])
        .await
        .ok();

    let names = local.run(&["--json", "ls"]).await.ok().json();
    assert_eq!(names, serde_json::json!({"items": ["app"]}));
    for listing in [&["--json", "ls", "app"][..], &["--json", "versions", "app"]] {
        let versions = local.run(listing).await.ok().json();
        let items = versions["items"].as_array().unwrap();
        let numbers: Vec<&str> = items
            .iter()
            .map(|v| v["version"].as_str().unwrap())
            .collect();
        assert_eq!(numbers, ["LATEST", "3", "2", "1"]);
        assert_eq!(sorted_keys(&items[0]), ARTIFACT);
    }
    let shown = local.run(&["--json", "show", "app@2"]).await.ok().json();
    assert_eq!(sorted_keys(&shown), with(ARTIFACT, &["download_url"]));
    let latest = local.run(&["--json", "show", "app"]).await.ok().json();
    assert_eq!(latest["version"], "LATEST");

    let set = local
        .run(&["--json", "alias", "set", "app", "prod", "1", "-m", "first"])
        .await
        .ok()
        .json();
    assert_eq!(sorted_keys(&set), ALIAS);
    let canary = local
        .run(&[
            "--json",
            "alias",
            "set",
            "app",
            "prod",
            "1",
            "--canary",
            "3",
            "--weight",
            "20",
            "--if-revision",
            "1",
        ])
        .await
        .ok()
        .json();
    assert_eq!(
        (
            &canary["revision"],
            &canary["secondary_version"],
            &canary["secondary_version_weight"]
        ),
        (&2.into(), &"3".into(), &20.into())
    );
    let got = local
        .run(&["--json", "alias", "get", "app", "prod"])
        .await
        .ok()
        .json();
    assert_eq!(got, canary);
    let listed = local
        .run(&["--json", "alias", "ls", "app"])
        .await
        .ok()
        .json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(sorted_keys(&listed["items"][0]), ALIAS);

    let resolved = local
        .run(&["--json", "resolve", "app", "prod", "--key", "runner-1"])
        .await
        .ok()
        .json();
    assert_eq!(
        sorted_keys(&resolved),
        [
            "alias",
            "download_url",
            "name",
            "revision",
            "sha256",
            "version"
        ]
    );
    let rolled = local
        .run(&["--json", "rollback", "app", "prod", "-m", "too slow"])
        .await
        .ok()
        .json();
    assert_eq!(sorted_keys(&rolled), ALIAS);
    assert_eq!(
        (&rolled["revision"], &rolled["secondary_version"]),
        (&3.into(), &Value::Null)
    );
    let history = local
        .run(&["--json", "history", "app", "prod"])
        .await
        .ok()
        .json();
    let entries = history["items"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["rollback", "move", "create"]);
    assert_eq!(entries[2]["message"], "first");

    let removed = local.run(&["--json", "rm", "app", "2"]).await.ok().json();
    assert_eq!(
        removed,
        serde_json::json!({"deleted": true, "name": "app", "version": "2"})
    );
    let dry = local
        .run(&[
            "--json",
            "retention",
            "app",
            "--keep",
            "0",
            "--older-than",
            "0",
            "--dry-run",
        ])
        .await
        .ok()
        .json();
    assert_eq!(sorted_keys(&dry), ["deleted", "dry_run", "purge_time"]);
    assert_eq!(dry["dry_run"], true);
    // Version 1 is prod's target and 2 is deleted: only 3 goes.
    let deleted: Vec<&str> = dry["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["version"].as_str().unwrap())
        .collect();
    assert_eq!(deleted, ["3"]);
    let kept = local.run(&["--json", "ls", "app"]).await.ok().json();
    assert_eq!(
        kept["items"].as_array().unwrap().len(),
        3,
        "a dry run deletes nothing"
    );

    let alias_rm = local
        .run(&["--json", "alias", "rm", "app", "prod"])
        .await
        .ok()
        .json();
    assert_eq!(
        alias_rm,
        serde_json::json!({"deleted": true, "name": "app", "alias": "prod"})
    );
    let purged = local
        .run(&["--json", "purge", "app", "--yes"])
        .await
        .ok()
        .json();
    assert_eq!(purged, serde_json::json!({"purged": true, "name": "app"}));
    let names = local.run(&["--json", "ls"]).await.ok().json();
    assert_eq!(names, serde_json::json!({"items": []}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_exit_with_the_documented_codes() {
    let local = Local::start().await;
    let file = local.file("f", b"bytes");
    local
        .run(&["push", "app", file.to_str().unwrap(), "--alias", "prod"])
        .await
        .ok();

    // 404: 3.
    failed(
        &local.run(&["--json", "show", "nope"]).await,
        3,
        "ArtifactNotFound",
    );
    failed(
        &local.run(&["--json", "pull", "app@7"]).await,
        3,
        "VersionNotFound",
    );
    failed(
        &local.run(&["--json", "alias", "get", "app", "dev"]).await,
        3,
        "AliasNotFound",
    );
    assert!(!local.path("app").exists());
    // 409 and 412: 4.
    failed(
        &local.run(&["--json", "rm", "app", "1"]).await,
        4,
        "VersionInUse",
    );
    failed(
        &local
            .run(&[
                "--json",
                "alias",
                "set",
                "app",
                "prod",
                "LATEST",
                "--if-revision",
                "7",
            ])
            .await,
        4,
        "AliasModified",
    );
    // A conditional move of an alias that does not exist is the
    // precondition failing too (it answered the re-read's 404: 3).
    failed(
        &local
            .run(&[
                "--json",
                "alias",
                "set",
                "app",
                "nowhere",
                "LATEST",
                "--if-revision",
                "1",
            ])
            .await,
        4,
        "AliasModified",
    );
    // Usage: 2, before any request.
    failed(&local.run(&["--json", "purge", "app"]).await, 2, "Usage");
    failed(
        &local.run(&["--json", "rm", "app", "one"]).await,
        2,
        "Usage",
    );
    failed(&local.run(&["--json", "push", "app"]).await, 2, "Usage");
    failed(
        &local
            .run(&["--json", "alias", "set", "a", "b", "1", "--weight", "5"])
            .await,
        2,
        "Usage",
    );
    failed(&local.run(&["--json", "frobnicate"]).await, 2, "Usage");
    failed(
        &local.run(&["--json", "pull", "app", "-o", "-"]).await,
        2,
        "Usage",
    );
    failed(
        &local.run(&["--json", "show", "app:prod"]).await,
        2,
        "Usage",
    );
    let none = support::artifact(local.dir.path(), &["--json", "ls"], &[]).await;
    failed(&none, 2, "Usage");
    // 400 from the API: 1.
    failed(
        &local.run(&["--json", "ls", "bad..name"]).await,
        1,
        "InvalidArtifactName",
    );
    // An unreachable API: 1, after the retries.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    failed(
        &local
            .run_against(&gone, &["--json", "--retries", "1", "ls"])
            .await,
        1,
        "ConnectionError",
    );

    // Still there after all that: purge refused without --yes.
    local.run(&["show", "app@1"]).await.ok();
    // Without --json: the line on stderr, nothing on stdout.
    let run = local.run(&["show", "nope"]).await;
    assert_eq!((run.code, run.stdout.len()), (3, 0));
    assert!(
        run.stderr.starts_with("error: ArtifactNotFound: "),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn help_documents_the_exit_codes_and_completions_are_generated() {
    let local = Local::start().await;
    let help = local.run(&["--help"]).await.ok().text();
    for line in [
        "3  not found",
        "4  conflict or precondition failed",
        "5  integrity failure",
    ] {
        assert!(help.contains(line), "{help}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let script = local.run(&["completions", shell]).await.ok().text();
        assert!(
            script.contains("artifact") && script.contains("rollback"),
            "{shell}"
        );
    }
}

/// Review finding (SPEC 8: `--json` prints exactly one JSON document on
/// stdout): help and version printed clap's text there, completions a
/// shell script, and a publish answered with something other than an
/// object panicked (exit 101). Help and version are JSON documents now,
/// completions refuse `--json`, and an odd answer is a protocol error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_json_even_help_version_and_odd_answers_print_one_json_document() {
    let local = Local::start().await;
    let help = local.run(&["--json", "--help"]).await.ok().json();
    assert!(
        help["help"]
            .as_str()
            .is_some_and(|h| h.contains("3  not found")),
        "{help}"
    );
    let version = local.run(&["--json", "--version"]).await.ok().json();
    assert!(
        version["version"]
            .as_str()
            .is_some_and(|v| v.contains("artifact"))
    );
    failed(
        &local.run(&["--json", "completions", "bash"]).await,
        2,
        "Usage",
    );

    let (listener, odd_api) = support::listener().await;
    support::serve(listener, |_request| async {
        support::respond(201, "\"ok\"")
    });
    let publish = local
        .run_against(&odd_api, &["--json", "--retries", "0", "publish", "app"])
        .await;
    failed(&publish, 1, "ProtocolError");
}

/// SPEC 10.3 from the CLI: search by file or digest and by metadata, and
/// version status (deprecate, archive: no new alias may take it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn search_deprecate_and_archive_from_the_command_line() {
    let local = Local::start().await;
    let file = local.file("model.bin", b"model weights");
    for name in ["fraud", "churn"] {
        local
            .run(&[
                "push",
                name,
                file.to_str().unwrap(),
                "--meta",
                "team=ml",
                "--meta",
                &format!("model={name}"),
                "--publish",
            ])
            .await
            .ok();
    }
    let by_file = local
        .run(&["--json", "search", "--sha256", file.to_str().unwrap()])
        .await
        .ok()
        .json();
    let mut hits: Vec<String> = by_file["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{}@{}",
                h["name"].as_str().unwrap(),
                h["version"].as_str().unwrap()
            )
        })
        .collect();
    hits.sort();
    assert_eq!(hits, ["churn@1", "churn@LATEST", "fraud@1", "fraud@LATEST"]);
    let by_meta = local
        .run(&[
            "--json",
            "search",
            "--meta",
            "team=ml",
            "--meta",
            "model=fraud",
        ])
        .await
        .ok()
        .json();
    let hits = by_meta["items"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{by_meta}");
    assert_eq!(
        (hits[0]["name"].as_str(), hits[0]["version"].as_str()),
        (Some("fraud"), Some("1"))
    );
    let by_query = local
        .run(&[
            "--json",
            "search",
            "--query",
            "meta.team='ml' AND (name='churn' OR meta.model IN ('fraud','x'))",
        ])
        .await
        .ok()
        .json();
    let hits: Vec<String> = by_query["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{}@{}",
                h["name"].as_str().unwrap(),
                h["version"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(hits, ["churn@1", "fraud@1"], "{by_query}");

    let deprecated = local
        .run(&["--json", "deprecate", "fraud@1", "-m", "retrained"])
        .await
        .ok()
        .json();
    assert_eq!(deprecated["status"], "deprecated");
    assert_eq!(deprecated["status_message"], "retrained");
    let out = local.path("pulled");
    let pulled = local
        .run(&["pull", "fraud@1", "-o", out.to_str().unwrap()])
        .await;
    assert_eq!(pulled.code, 0, "{}", pulled.stderr);
    assert!(
        pulled
            .stderr
            .contains("warning: fraud@1 is deprecated: retrained"),
        "{}",
        pulled.stderr
    );
    // Resolve warns too, and show tells the status (an acceptance tester
    // found both silent in text mode).
    local
        .run(&["alias", "set", "fraud", "staging", "1"])
        .await
        .ok();
    let resolved = local.run(&["resolve", "fraud", "staging"]).await;
    assert_eq!(resolved.code, 0, "{}", resolved.stderr);
    assert!(
        resolved.stderr.contains("warning:") && resolved.stderr.contains("deprecated"),
        "{}",
        resolved.stderr
    );
    let listed = local.run(&["versions", "fraud"]).await.ok().text();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with('1') && l.trim_end().ends_with("deprecated")),
        "{listed}"
    );
    let shown = local.run(&["show", "fraud@1"]).await;
    assert!(
        shown
            .text()
            .contains("status:       deprecated (retrained)"),
        "{}",
        shown.text()
    );
    local.run(&["archive", "fraud@1"]).await.ok();
    let refused = local.run(&["alias", "set", "fraud", "prod", "1"]).await;
    assert_eq!(refused.code, 4, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("VersionArchived"),
        "{}",
        refused.stderr
    );
    local.run(&["reactivate", "fraud@1"]).await.ok();
    local
        .run(&["alias", "set", "fraud", "prod", "1"])
        .await
        .ok();
}

/// SPEC 10.4 from the CLI: `access set` from a file (refused when it would
/// lock the caller out), `access get`, `access history`, and `--caller`
/// acting as another principal on the local server (403: exit 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_targets_are_managed_and_enforced_from_the_command_line() {
    let local = Local::start().await;
    let file = local.file("app.bin", b"team a build");
    local
        .run(&[
            "--caller",
            "arn:aws:iam::1:role/team-a-ci",
            "push",
            "team-a.app",
            file.to_str().unwrap(),
        ])
        .await
        .ok();
    let admin = "arn:aws:iam::1:role/platform";
    let doc = local.file(
        "targets.json",
        serde_json::json!({"targets": [
            {"principals": [admin], "names": ["*"], "actions": ["admin"]},
            {"principals": ["arn:aws:iam::1:role/team-a-*"], "names": ["team-a.*"], "actions": ["read", "write"]}
        ]})
        .to_string()
        .as_bytes(),
    );
    let locked_out = local
        .run(&[
            "--caller",
            "arn:aws:iam::1:role/team-a-ci",
            "access",
            "set",
            doc.to_str().unwrap(),
        ])
        .await;
    assert_eq!(locked_out.code, 1, "{}", locked_out.stderr);
    assert!(
        locked_out.stderr.contains("lock you out"),
        "{}",
        locked_out.stderr
    );
    let set = local
        .run(&[
            "--json",
            "--caller",
            admin,
            "access",
            "set",
            doc.to_str().unwrap(),
            "--if-revision",
            "0",
        ])
        .await
        .ok()
        .json();
    assert_eq!(set["revision"], 1);
    let shown = local
        .run(&["--caller", admin, "access", "get"])
        .await
        .ok()
        .text();
    assert!(shown.contains("team-a.*"), "{shown}");

    let team = ["--caller", "arn:aws:sts::1:assumed-role/team-a-ci/build-9"];
    local
        .run(
            &[
                &team[..],
                &["push", "team-a.app", file.to_str().unwrap(), "--publish"],
            ]
            .concat(),
        )
        .await
        .ok();
    let denied = local
        .run(&[&team[..], &["push", "team-b.app", file.to_str().unwrap()]].concat())
        .await;
    assert_eq!(denied.code, 1, "{}", denied.stderr);
    assert!(denied.stderr.contains("AccessDenied"), "{}", denied.stderr);
    // grant and revoke edit the document (If-Match on the revision read).
    let reader = [
        "--caller",
        "arn:aws:iam::1:role/dashboards",
        "versions",
        "team-a.app",
    ];
    assert_eq!(
        local.run(&reader).await.code,
        1,
        "no target for the reader yet"
    );
    local
        .run(&[
            "--caller",
            admin,
            "access",
            "grant",
            "--principal",
            "arn:aws:iam::1:role/dashboards",
            "--action",
            "read",
            "--name",
            "*",
        ])
        .await
        .ok();
    assert_eq!(local.run(&reader).await.code, 0, "granted");
    let test = |alias: &'static str| {
        [
            "--caller",
            admin,
            "access",
            "test",
            "--principal",
            "arn:aws:sts::1:assumed-role/dashboards/s",
            "--action",
            "promote",
            "--name",
            "team-a.app",
            "--alias",
            alias,
        ]
    };
    let denied = local.run(&test("prod")).await;
    assert_eq!(denied.code, 1);
    assert!(
        denied.stderr.contains("may not promote"),
        "{}",
        denied.stderr
    );
    let allowed = local
        .run(&[
            "--caller",
            admin,
            "access",
            "test",
            "--principal",
            "arn:aws:iam::1:role/dashboards",
            "--action",
            "read",
            "--name",
            "team-a.app",
        ])
        .await
        .ok();
    assert!(allowed.text().contains("allowed"));
    let ls = local
        .run(&["--caller", admin, "access", "ls"])
        .await
        .ok()
        .text();
    assert!(ls.contains("dashboards -> read on *"), "{ls}");
    local
        .run(&[
            "--caller",
            admin,
            "access",
            "revoke",
            "--principal",
            "arn:aws:iam::1:role/dashboards",
        ])
        .await
        .ok();
    assert_eq!(local.run(&reader).await.code, 1, "revoked");
    // Black-box finding: a revoke that matched nothing wrote a change.
    let nothing = local
        .run(&[
            "--caller",
            admin,
            "access",
            "revoke",
            "--principal",
            "arn:aws:iam::1:role/nosuch",
        ])
        .await;
    assert_eq!(nothing.code, 3, "{}", nothing.stderr);
    let history = local
        .run(&["--json", "--caller", admin, "access", "history"])
        .await
        .ok()
        .json();
    assert_eq!(history["items"][0]["actor"], admin);
    assert_eq!(history["items"][0]["revision"], 3);
}

/// `artifact publish` of a large LATEST the library wrote: the server
/// copies it in the background and answers 202 with an upload; the CLI
/// waits for that upload's verification and prints the version it
/// published, as for any publish.
#[tokio::test]
async fn publish_waits_for_a_large_library_latest_copied_in_the_background() {
    let local = Local::with_settings(&[("ADOPT_COPY_MAX_BYTES", "1024")]).await;
    let bytes: Vec<u8> = (0..6 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    let file = local.file("big.bin", &bytes);
    local.store.library(&[
        "call",
        "put_artifact",
        &serde_json::json!({"name": "big", "content_file": file}).to_string(),
    ]);
    let published = local.run(&["--json", "publish", "big"]).await.ok().json();
    assert_eq!(published["version"], "1");
    assert_eq!(published["created"], true);
    assert_eq!(
        published["sha256"].as_str(),
        Some(test_support::sha256_hex(&bytes).as_str())
    );
    // The bytes are in the blob store now: a second publish finds LATEST
    // unchanged, at once.
    let again = local.run(&["publish", "big"]).await.ok().text();
    assert!(
        again.contains("published big@1 (LATEST unchanged"),
        "{again}"
    );
    let pulled = local.path("pulled.bin");
    local
        .run(&["pull", "big@1", "-o", pulled.to_str().unwrap()])
        .await
        .ok();
    assert_eq!(std::fs::read(pulled).unwrap(), bytes);
}
