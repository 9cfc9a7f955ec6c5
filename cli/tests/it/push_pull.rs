//! push → pull through the local server: bytes come back identical, through
//! LATEST, a version, an alias and stdout.

use crate::support;

use support::{Local, bytes, sha256_hex};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushed_files_of_every_size_pull_back_identical() {
    let local = Local::start().await;
    for (i, len) in [0usize, 1, 1000, (1 << 20) + 3].into_iter().enumerate() {
        let content = bytes(len, i as u8);
        let name = format!("size-{len}");
        let file = local.file(&format!("in-{len}"), &content);
        let pushed = local
            .run(&["--json", "push", &name, file.to_str().unwrap()])
            .await
            .ok()
            .json();
        assert_eq!(pushed["latest"]["sha256"], sha256_hex(&content));
        assert_eq!(pushed["latest"]["size"], len);
        assert_eq!(pushed["transferred"], true);

        let out = local.path(&format!("out-{len}"));
        let pulled = local
            .run(&["--json", "pull", &name, "-o", out.to_str().unwrap()])
            .await
            .ok()
            .json();
        assert_eq!(std::fs::read(&out).unwrap(), content, "{len} bytes");
        assert_eq!(pulled["sha256"], sha256_hex(&content));
        assert_eq!(pulled["size"], len);
        assert_eq!(pulled["version"], "LATEST");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn push_with_publish_and_alias_then_pull_through_the_alias() {
    let local = Local::start().await;
    let v1 = local.file("v1.bin", b"build one");
    let pushed = local
        .run(&[
            "--json",
            "push",
            "app",
            v1.to_str().unwrap(),
            "--publish",
            "--alias",
            "staging",
            "--content-type",
            "text/plain",
            "--meta",
            "git-sha=abc123",
        ])
        .await
        .ok()
        .json();
    assert_eq!(pushed["published"]["version"], "1");
    assert_eq!(pushed["alias"]["alias"], "staging");
    assert_eq!(pushed["alias"]["version"], "1");
    assert_eq!(pushed["alias"]["revision"], 1);

    let v2 = local.file("v2.bin", b"build two");
    let pushed = local
        .run(&["--json", "push", "app", v2.to_str().unwrap(), "--publish"])
        .await
        .ok()
        .json();
    assert_eq!(pushed["published"]["version"], "2");
    assert_eq!(pushed["alias"], serde_json::Value::Null);

    // staging still points at 1; the default output file is NAME.
    let pulled = local
        .run(&["--json", "pull", "app:staging"])
        .await
        .ok()
        .json();
    assert_eq!(pulled["version"], "1");
    assert_eq!(std::fs::read(local.path("app")).unwrap(), b"build one");

    local.run(&["pull", "app@2", "-o", "two"]).await.ok();
    assert_eq!(std::fs::read(local.path("two")).unwrap(), b"build two");
    std::fs::create_dir(local.path("into")).unwrap();
    local.run(&["pull", "app@2", "-o", "into"]).await.ok();
    assert_eq!(std::fs::read(local.path("into/app")).unwrap(), b"build two");

    // To stdout: the bytes and nothing else.
    let run = local.run(&["pull", "app:staging", "-o", "-"]).await.ok();
    assert_eq!(run.stdout, b"build one");

    // Moving the alias with the revision it is at; metadata was recorded.
    let moved = local
        .run(&[
            "--json",
            "push",
            "app",
            v2.to_str().unwrap(),
            "--alias",
            "staging",
            "--if-revision",
            "1",
        ])
        .await
        .ok()
        .json();
    assert_eq!(moved["latest"]["changed"], false);
    assert_eq!(moved["published"]["version"], "2");
    assert_eq!(moved["alias"]["version"], "2");
    assert_eq!(moved["alias"]["revision"], 2);
    let shown = local.run(&["--json", "show", "app@1"]).await.ok().json();
    assert_eq!(shown["content_type"], "text/plain");
    assert_eq!(shown["metadata"]["git-sha"], "abc123");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_text_output_names_what_happened() {
    let local = Local::start().await;
    let file = local.file("a.bin", b"hello");
    let run = local
        .run(&["push", "app", file.to_str().unwrap(), "--publish"])
        .await
        .ok();
    let text = run.text();
    assert!(text.contains("pushed app LATEST: 5 B sha256 "), "{text}");
    assert!(text.contains("published app@1"), "{text}");
    let run = local.run(&["pull", "app@1", "-o", "x"]).await.ok();
    assert!(
        run.text().starts_with("pulled app@1 (5 B, sha256 "),
        "{}",
        run.text()
    );
}

/// Black-box finding: a push of bytes LATEST already holds changes nothing
/// (SPEC 4.1), so the metadata it declared was dropped without a word; a
/// pipeline stamping each build kept the earlier build's stamp. It is said.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_of_unchanged_bytes_says_the_metadata_it_declared_was_not_applied() {
    let local = Local::start().await;
    let file = local.file("a.bin", b"same bytes");
    let path = file.to_str().unwrap();
    // Nothing on stderr (`ok` holds it to that) while nothing is dropped.
    local
        .run(&["push", "app", path, "--meta", "git=aaa"])
        .await
        .ok();
    local
        .run(&["push", "app", path, "--meta", "git=aaa"])
        .await
        .ok();
    let other = local
        .run(&[
            "push",
            "app",
            path,
            "--meta",
            "git=bbb",
            "--content-type",
            "text/plain",
        ])
        .await;
    assert_eq!(other.code, 0, "{}", other.stderr);
    assert!(other.text().contains("(unchanged)"), "{}", other.text());
    assert!(
        other
            .stderr
            .contains("warning: app LATEST already held these bytes")
            && other
                .stderr
                .contains("content type text/plain, git=bbb not applied"),
        "{}",
        other.stderr
    );
}

/// Above the multipart threshold push asks for an upload in parts; an API
/// that does not offer them (it refuses `part_size`) gets one PUT instead.
/// Either way the bytes come back identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_above_the_multipart_threshold_round_trips() {
    let local = Local::start().await;
    let content = bytes((6 << 20) + 7, 9);
    let file = local.file("big.bin", &content);
    let pushed = local
        .run(&[
            "--json",
            "push",
            "big",
            file.to_str().unwrap(),
            "--multipart-threshold",
            "1MiB",
            "--part-size",
            "5MiB",
            "--publish",
        ])
        .await
        .ok()
        .json();
    assert_eq!(pushed["latest"]["sha256"], sha256_hex(&content));
    assert_eq!(pushed["published"]["version"], "1");
    local.run(&["pull", "big@1", "-o", "big.out"]).await.ok();
    assert_eq!(std::fs::read(local.path("big.out")).unwrap(), content);
}

/// SPEC 4.1 (v3) as a pipeline feels it: `push --publish --alias` is start +
/// S3 PUT + commit (2 API requests), and a push of bytes the artifact holds
/// is 1 API request, both with the version and the alias in the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn push_publish_alias_takes_two_api_requests_and_an_unchanged_push_one() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use test_support::proxy::{self, FaultCounts, Faults, Plan};
    let local = Local::start().await;
    let counts = Arc::new(FaultCounts::default());
    let counted = proxy::start(local.api.clone(), Faults::Plan(Plan::new()), counts.clone()).await;
    let requests = || counts.forwarded.swap(0, Ordering::SeqCst);
    let file = local.file("build.bin", b"build one");
    let args = [
        "--json",
        "push",
        "app",
        file.to_str().unwrap(),
        "--publish",
        "--alias",
        "prod",
    ];
    let pushed = local.run_against(&counted, &args).await.ok().json();
    assert_eq!(requests(), 2, "start and commit (the bytes go to S3)");
    assert_eq!(pushed["transferred"], true);
    assert_eq!(pushed["published"]["version"], "1");
    assert_eq!(pushed["alias"]["version"], "1");
    assert_eq!(pushed["latest"]["sha256"], sha256_hex(b"build one"));

    let again = local.run_against(&counted, &args).await.ok().json();
    assert_eq!(requests(), 1, "the start commits, publishes and aliases");
    assert_eq!(again["transferred"], false);
    assert_eq!(again["published"]["version"], "1");
    assert_eq!(again["alias"]["version"], "1");

    // A canary in the same request: prod keeps 1, 25 % go to 2.
    let file = local.file("build2.bin", b"build two");
    let canary = local
        .run_against(
            &counted,
            &[
                "--json",
                "push",
                "app",
                file.to_str().unwrap(),
                "--alias",
                "prod",
                "--weight",
                "25",
                "--if-revision",
                "2",
            ],
        )
        .await
        .ok()
        .json();
    assert_eq!(requests(), 2);
    assert_eq!(
        (
            &canary["alias"]["version"],
            &canary["alias"]["secondary_version"]
        ),
        (&serde_json::json!("1"), &serde_json::json!("2"))
    );
    assert_eq!(canary["alias"]["secondary_version_weight"], 25);
}

/// Review finding: a pulled file was renamed from a temporary file made
/// 0600, so nobody but its owner could read it (a service account, a
/// container's user); it is made as any new file is (0666 less the umask).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pulled_file_has_the_mode_any_new_file_gets() {
    use std::os::unix::fs::PermissionsExt;
    let local = Local::start().await;
    let file = local.file("in", b"readable by others");
    local
        .run(&["push", "app", file.to_str().unwrap()])
        .await
        .ok();
    local.run(&["pull", "app", "-o", "out"]).await.ok();
    let mode =
        |path: std::path::PathBuf| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    // What this process's umask makes of a new file.
    let plain = local.file("plain", b"");
    assert_eq!(mode(local.path("out")), mode(plain));
}
