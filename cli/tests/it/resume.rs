//! A multipart push interrupted midway resumes: run again with the same
//! file, it finds its upload (remembered in `ARTIFACT_STATE_DIR`, its state
//! asked from the API) and sends only the parts S3 has not received.
//!
//! A proxy in front of the local API points each part's presigned URL at
//! itself and counts the part PUTs; in the first run it lets two parts
//! through and refuses the rest as S3 refuses a request (a 4xx the CLI does
//! not retry), which ends the push as a killed process would.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use support::{Local, forward, original_url, receive, respond};

#[derive(Default)]
struct Parts {
    /// Part PUTs let through before the rest are refused (`u64::MAX`: all).
    allowed: AtomicU64,
    sent: AtomicU64,
    refused: AtomicU64,
    /// How long S3's answer to each part takes once its body arrived (ms).
    answer_after: AtomicU64,
}

/// Points `parts[].url` of a parts answer at `{me}/s3-part/{hex}`.
fn redirect_parts(body: &bytes::Bytes, me: &str) -> bytes::Bytes {
    let Ok(mut doc) = serde_json::from_slice::<Value>(body) else {
        return body.clone();
    };
    if let Some(parts) = doc.get_mut("parts").and_then(Value::as_array_mut) {
        for part in parts {
            if let Some(url) = part.get("url").and_then(Value::as_str) {
                part["url"] = format!("{me}/s3-part/{}", hex::encode(url)).into();
            }
        }
    }
    bytes::Bytes::from(doc.to_string())
}

async fn parts_proxy(api: String, parts: Arc<Parts>) -> String {
    let (listener, me) = support::listener().await;
    let http = reqwest::Client::new();
    let own = me.clone();
    support::serve(listener, move |request| {
        let (http, api, me, parts) = (http.clone(), api.clone(), own.clone(), parts.clone());
        async move {
            let received = receive(request).await;
            if let Some(url) = original_url(&received.path, "s3-part") {
                if parts.sent.load(Ordering::SeqCst) >= parts.allowed.load(Ordering::SeqCst) {
                    parts.refused.fetch_add(1, Ordering::SeqCst);
                    return respond(400, "<Error><Code>InvalidRequest</Code></Error>");
                }
                let (status, body) = forward(&http, &url, &received).await;
                parts.sent.fetch_add(1, Ordering::SeqCst);
                let after = parts.answer_after.load(Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(after)).await;
                return respond(status, body);
            }
            let (status, body) =
                forward(&http, &format!("{api}{}", received.path), &received).await;
            respond(status, redirect_parts(&body, &me))
        }
    });
    me
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_multipart_push_resumes_sending_only_the_missing_parts() {
    let local = Local::start().await;
    let parts = Arc::new(Parts::default());
    let proxy = parts_proxy(local.api.clone(), parts.clone()).await;
    // 5 parts of 5 MiB (the last one shorter).
    let content = support::bytes(4 * (5 << 20) + 1000, 4);
    let file = local.file("model.bin", &content);
    let push = [
        "--json",
        "push",
        "model",
        file.to_str().unwrap(),
        "--multipart-threshold",
        "1MiB",
        "--part-size",
        "5MiB",
        "--concurrency",
        "1",
        "--retries",
        "0",
    ];

    parts.allowed.store(2, Ordering::SeqCst);
    let first = local.run_against(&proxy, &push).await;
    assert_ne!(
        first.code,
        0,
        "the first push must be cut off: {}",
        first.text()
    );
    assert_eq!(parts.sent.load(Ordering::SeqCst), 2);

    parts.allowed.store(u64::MAX, Ordering::SeqCst);
    let second = local.run_against(&proxy, &push).await.ok().json();
    assert_eq!(second["latest"]["sha256"], support::sha256_hex(&content));
    // Only the 3 parts the first run did not send went out again.
    assert_eq!(parts.sent.load(Ordering::SeqCst), 5);

    local.run(&["pull", "model", "-o", "model.out"]).await.ok();
    assert_eq!(std::fs::read(local.path("model.out")).unwrap(), content);
}

/// A push of the same bytes with other metadata (or content type) after
/// one was cut off starts its own upload: resuming the first committed
/// the first push's metadata, and answered success.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_with_other_metadata_does_not_resume_the_upload_of_one_cut_off() {
    let local = Local::start().await;
    let parts = Arc::new(Parts::default());
    let proxy = parts_proxy(local.api.clone(), parts.clone()).await;
    let content = support::bytes(2 * (5 << 20) + 1000, 5);
    let file = local.file("model.bin", &content);
    let push = |build: &str| {
        [
            "--json",
            "push",
            "model",
            file.to_str().unwrap(),
            "--multipart-threshold",
            "1MiB",
            "--part-size",
            "5MiB",
            "--concurrency",
            "1",
            "--retries",
            "0",
            "--meta",
            build,
        ]
        .map(str::to_owned)
    };
    parts.allowed.store(1, Ordering::SeqCst);
    let (one, two) = (push("build=41"), push("build=42"));
    let first = local
        .run_against(&proxy, &one.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    assert_ne!(first.code, 0, "the first push must be cut off");
    parts.allowed.store(u64::MAX, Ordering::SeqCst);
    let second = local
        .run_against(&proxy, &two.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .ok()
        .json();
    assert_eq!(second["latest"]["metadata"]["build"], "42");
    // Its own upload: all 3 parts sent again.
    assert_eq!(parts.sent.load(Ordering::SeqCst), 1 + 3);
}

/// A run that committed its upload but died before forgetting it left it
/// remembered. Resuming it made every later push of those bytes answer as
/// that run (or, once LATEST moved on, be refused 409 for as long as the
/// upload row lived, a day): a committed upload is not resumed, and a push
/// refused for good forgets what it remembered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_committed_upload_a_dead_run_remembered_does_not_refuse_later_pushes() {
    use sha2::Digest;
    let local = Local::start().await;
    let content = support::bytes((5 << 20) + 1000, 7);
    let file = local.file("model.bin", &content);
    let push = |path: &str| {
        vec![
            "--json".to_owned(),
            "push".to_owned(),
            "model".to_owned(),
            path.to_owned(),
            "--multipart-threshold".to_owned(),
            "1MiB".to_owned(),
            "--part-size".to_owned(),
            "5MiB".to_owned(),
        ]
    };
    let args = push(file.to_str().unwrap());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = local.run(&args).await.ok().json();
    let upload_id = first["upload_id"].as_str().unwrap().to_owned();
    // What a run that died right after its commit leaves behind.
    let sha256 = support::sha256_hex(&content);
    let api = hex::encode(&sha2::Sha256::digest(local.api.as_bytes())[..8]);
    let state = local.path(".state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join(format!("model-{sha256}-{api}.json")),
        serde_json::json!({"upload_id": upload_id, "part_size": 5 << 20, "start": {
            "sha256": sha256, "size": content.len(), "part_size": 5 << 20, "commit": true,
        }})
        .to_string(),
    )
    .unwrap();
    // Another push moves LATEST on.
    let other = local.file("other.bin", b"other bytes");
    local
        .run(&["push", "model", other.to_str().unwrap()])
        .await
        .ok();

    let again = local.run(&args).await.ok().json();
    assert_ne!(again["upload_id"], upload_id.as_str());
    assert_eq!(again["latest"]["sha256"], sha256);
}

/// Review finding: the read timeout (`--read-timeout`) was reqwest's, which
/// counts from a request's start until its answer's headers: on an upload
/// it bounded the whole time its body took to send, and every part slower
/// than that failed. Uploads go through a client without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_slower_than_the_read_timeout_still_succeeds() {
    let local = Local::start().await;
    let parts = Arc::new(Parts::default());
    parts.allowed.store(u64::MAX, Ordering::SeqCst);
    parts.answer_after.store(1500, Ordering::SeqCst);
    let proxy = parts_proxy(local.api.clone(), parts.clone()).await;
    let content = support::bytes((5 << 20) + 1000, 8);
    let file = local.file("model.bin", &content);
    let pushed = local
        .run_against(
            &proxy,
            &[
                "--json",
                "--read-timeout",
                "1",
                "--retries",
                "0",
                "push",
                "model",
                file.to_str().unwrap(),
                "--multipart-threshold",
                "1MiB",
                "--part-size",
                "5MiB",
            ],
        )
        .await
        .ok()
        .json();
    assert_eq!(pushed["latest"]["sha256"], support::sha256_hex(&content));
    assert_eq!(parts.sent.load(Ordering::SeqCst), 2);
}
