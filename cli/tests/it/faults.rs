//! Retries: with 20 % of API requests meeting an injected fault (503, 500,
//! a connection reset before or after the server acted, a delay), pushes
//! and pulls still succeed with the right bytes.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use support::{Local, bytes, sha256_hex};
use test_support::proxy::{self, FaultCounts, Faults};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn push_and_pull_succeed_through_an_api_that_fails_a_fifth_of_its_requests() {
    let local = Local::start().await;
    let counts = Arc::new(FaultCounts::default());
    let faulty = proxy::start(local.api.clone(), Faults::Random(0.2), counts.clone()).await;
    let failures = || {
        [
            &counts.status_503,
            &counts.status_500,
            &counts.reset_before,
            &counts.reset_after,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum::<u64>()
    };
    // Rounds until the retries met enough faults to mean something.
    let mut round = 0;
    while failures() < 5 {
        assert!(round < 40, "too few faults injected: {}", counts.summary());
        let content = bytes(10_000 + round, round as u8);
        let file = local.file(&format!("in-{round}"), &content);
        let pushed = local
            .run_against(
                &faulty,
                &[
                    "--json",
                    "--retries",
                    "8",
                    "push",
                    "app",
                    file.to_str().unwrap(),
                    "--publish",
                ],
            )
            .await
            .ok()
            .json();
        assert_eq!(pushed["latest"]["sha256"], sha256_hex(&content));
        let version = pushed["published"]["version"].as_str().unwrap().to_owned();
        assert_eq!(pushed["published"]["sha256"], sha256_hex(&content));

        let out = format!("out-{round}");
        local
            .run_against(
                &faulty,
                &[
                    "--retries",
                    "8",
                    "pull",
                    &format!("app@{version}"),
                    "-o",
                    &out,
                ],
            )
            .await
            .ok();
        assert_eq!(std::fs::read(local.path(&out)).unwrap(), content);
        round += 1;
    }
    eprintln!("{round} rounds; {}", counts.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conditional_alias_move_whose_answer_was_lost_succeeds_once() {
    let local = Local::start().await;
    for content in [&b"one"[..], b"two"] {
        let file = local.file("f", content);
        local
            .run(&["push", "app", file.to_str().unwrap(), "--publish"])
            .await
            .ok();
    }
    local.run(&["alias", "set", "app", "prod", "1"]).await.ok();
    // The first PUT through the proxy moves the alias, then its answer is
    // lost; the retry meets its own change (412).
    let counts = Arc::new(FaultCounts::default());
    let lossy = proxy::start(
        local.api.clone(),
        Faults::first("PUT", proxy::Fault::ResetAfter, 1),
        counts.clone(),
    )
    .await;
    let moved = local
        .run_against(
            &lossy,
            &[
                "--json",
                "alias",
                "set",
                "app",
                "prod",
                "2",
                "--if-revision",
                "1",
            ],
        )
        .await
        .ok()
        .json();
    assert_eq!(counts.reset_after.load(Ordering::Relaxed), 1);
    assert_eq!(
        (&moved["version"], &moved["revision"]),
        (&"2".into(), &2.into())
    );
    let history = local
        .run(&["--json", "history", "app", "prod"])
        .await
        .ok()
        .json();
    assert_eq!(
        history["items"].as_array().unwrap().len(),
        2,
        "one change, recorded once"
    );

    // A move that really lost the race still fails with 4.
    let run = local
        .run(&["alias", "set", "app", "prod", "1", "--if-revision", "1"])
        .await;
    assert_eq!(run.code, 4, "{run:?}");
}

/// A rollback and a forced publish whose answers were lost (the connection
/// reset after the server acted) are retried with the same
/// `Idempotency-Key`: each takes effect once. Without it, the retried
/// rollback undid itself (prod back on 2, exit 0) and the forced publish
/// made two versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollback_or_forced_publish_whose_answer_was_lost_takes_effect_once() {
    let local = Local::start().await;
    for content in [&b"one"[..], b"two"] {
        let file = local.file("f", content);
        local
            .run(&["push", "app", file.to_str().unwrap(), "--publish"])
            .await
            .ok();
    }
    local.run(&["alias", "set", "app", "prod", "1"]).await.ok();
    local.run(&["alias", "set", "app", "prod", "2"]).await.ok();
    let lossy = |method: &'static str| {
        let counts = Arc::new(FaultCounts::default());
        let api = local.api.clone();
        async move {
            let proxy = proxy::start(
                api,
                Faults::first(method, proxy::Fault::ResetAfter, 1),
                counts.clone(),
            )
            .await;
            (proxy, counts)
        }
    };
    let (proxy, counts) = lossy("POST").await;
    let rolled = local
        .run_against(&proxy, &["--json", "rollback", "app", "prod"])
        .await
        .ok()
        .json();
    assert_eq!(counts.reset_after.load(Ordering::Relaxed), 1);
    assert_eq!(
        (&rolled["version"], &rolled["revision"]),
        (&"1".into(), &3.into())
    );
    let prod = local
        .run(&["--json", "alias", "get", "app", "prod"])
        .await
        .ok()
        .json();
    assert_eq!(prod["version"], "1");

    let (proxy, counts) = lossy("POST").await;
    let forced = local
        .run_against(&proxy, &["--json", "publish", "app", "--force"])
        .await
        .ok()
        .json();
    assert_eq!(counts.reset_after.load(Ordering::Relaxed), 1);
    assert_eq!(forced["version"], "3");
    let versions = local.run(&["--json", "versions", "app"]).await.ok().json();
    assert_eq!(
        versions["items"].as_array().map(Vec::len),
        Some(4),
        "LATEST, 3, 2, 1: {versions}"
    );
}

/// Points `download_url` of an API answer at `{me}/s3-get/{hex}`.
fn redirect_download(body: &bytes::Bytes, me: &str) -> bytes::Bytes {
    let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(body) else {
        return body.clone();
    };
    if let Some(url) = doc.get("download_url").and_then(|u| u.as_str()) {
        doc["download_url"] = format!("{me}/s3-get/{}", hex::encode(url)).into();
    }
    bytes::Bytes::from(doc.to_string())
}

/// An API whose download URLs lead through a double that never answers the
/// first download (a connection gone silent) and forwards the rest.
async fn silent_first_download(api: String, silenced: Arc<AtomicU64>) -> String {
    let (listener, me) = support::listener().await;
    let http = reqwest::Client::new();
    let own = me.clone();
    support::serve(listener, move |request| {
        let (http, api, me, silenced) = (http.clone(), api.clone(), own.clone(), silenced.clone());
        async move {
            let received = support::receive(request).await;
            if let Some(url) = support::original_url(&received.path, "s3-get") {
                if silenced.fetch_add(1, Ordering::SeqCst) == 0 {
                    std::future::pending::<()>().await;
                }
                let (status, body) = support::forward(&http, &url, &received).await;
                return support::respond(status, body);
            }
            let (status, body) =
                support::forward(&http, &format!("{api}{}", received.path), &received).await;
            support::respond(status, redirect_download(&body, &me))
        }
    });
    me
}

/// Review finding: transfers had no read timeout (only API calls had a
/// deadline), so a connection to S3 that went silent mid-transfer hung a
/// push or pull for ever, its retries never run. A transfer that waits
/// `--read-timeout` seconds for a byte now counts as broken and is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_download_whose_connection_goes_silent_is_retried_after_the_read_timeout() {
    let local = Local::start().await;
    let content = bytes(10_000, 9);
    let file = local.file("in", &content);
    local
        .run(&["push", "app", file.to_str().unwrap()])
        .await
        .ok();
    let silenced = Arc::new(AtomicU64::new(0));
    let api = silent_first_download(local.api.clone(), silenced.clone()).await;
    let pull = local.run_against(&api, &["--read-timeout", "1", "pull", "app", "-o", "out"]);
    let run = tokio::time::timeout(std::time::Duration::from_secs(60), pull)
        .await
        .expect("the pull hung on a silent connection");
    run.ok();
    assert_eq!(silenced.load(Ordering::SeqCst), 2, "retried once");
    assert_eq!(std::fs::read(local.path("out")).unwrap(), content);
}
