//! Presigned URLs that expired before they were used: S3 answers 403
//! "Request has expired", and the CLI asks the API again instead of failing.
//! A proxy in front of the local API points the presigned URLs at itself,
//! answers the first use of an upload URL and of a download URL as S3 does
//! for an expired one, and passes everything else to the API and S3.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use support::{Local, forward, original_url, receive, redirect_urls, respond};

const EXPIRED: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Request has expired</Message><Expires>2026-01-01T00:00:00Z</Expires><ServerTime>2026-01-01T00:15:00Z</ServerTime></Error>";

#[derive(Default)]
struct Expiring {
    upload_used: AtomicBool,
    download_used: AtomicBool,
    starts: AtomicU64,
    expired: AtomicU64,
}

async fn expiring_proxy(api: String, state: Arc<Expiring>) -> String {
    let (listener, me) = support::listener().await;
    let http = reqwest::Client::new();
    let own = me.clone();
    support::serve(listener, move |request| {
        let (http, api, me, state) = (http.clone(), api.clone(), own.clone(), state.clone());
        async move {
            let received = receive(request).await;
            for (prefix, used) in [
                ("s3-up", &state.upload_used),
                ("s3-down", &state.download_used),
            ] {
                if let Some(url) = original_url(&received.path, prefix) {
                    if !used.swap(true, Ordering::SeqCst) {
                        state.expired.fetch_add(1, Ordering::SeqCst);
                        return respond(403, EXPIRED);
                    }
                    let (status, body) = forward(&http, &url, &received).await;
                    return respond(status, body);
                }
            }
            if received.method == hyper::Method::POST && received.path.ends_with("/uploads") {
                state.starts.fetch_add(1, Ordering::SeqCst);
            }
            let (status, body) =
                forward(&http, &format!("{api}{}", received.path), &received).await;
            let fields = [("url", "s3-up"), ("download_url", "s3-down")];
            respond(status, redirect_urls(&body, &me, &fields))
        }
    });
    me
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_upload_and_download_urls_are_renewed_through_the_api() {
    let local = Local::start().await;
    let state = Arc::new(Expiring::default());
    let proxy = expiring_proxy(local.api.clone(), state.clone()).await;
    let content = support::bytes(50_000, 3);
    let file = local.file("in.bin", &content);

    let pushed = local
        .run_against(&proxy, &["--json", "push", "app", file.to_str().unwrap()])
        .await
        .ok()
        .json();
    assert_eq!(pushed["latest"]["sha256"], support::sha256_hex(&content));
    // The first upload's URL "expired": a second upload was started and committed.
    assert_eq!(state.starts.load(Ordering::SeqCst), 2);

    local
        .run_against(&proxy, &["pull", "app", "-o", "out.bin"])
        .await
        .ok();
    assert_eq!(std::fs::read(local.path("out.bin")).unwrap(), content);
    assert_eq!(state.expired.load(Ordering::SeqCst), 2);
}
