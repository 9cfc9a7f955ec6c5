//! Presigned URLs that expired before they were used: S3 answers 403
//! "Request has expired", and the CLI asks the API again instead of failing.
//! A proxy in front of the local API points the presigned URLs at itself,
//! answers the first use of an upload URL and of a download URL as S3 does
//! for an expired one, and passes everything else to the API and S3.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::Local;

const EXPIRED: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Request has expired</Message><Expires>2026-01-01T00:00:00Z</Expires><ServerTime>2026-01-01T00:15:00Z</ServerTime></Error>";

#[derive(Default)]
struct Expiring {
    upload_used: AtomicBool,
    download_used: AtomicBool,
    starts: AtomicU64,
    expired: AtomicU64,
}

async fn expiring_proxy(api: String, state: Arc<Expiring>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = format!("http://{}", listener.local_addr().unwrap());
    let own = me.clone();
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (http, api, me, state) = (http.clone(), api.clone(), own.clone(), state.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let (http, api, me, state) =
                        (http.clone(), api.clone(), me.clone(), state.clone());
                    async move { Ok::<_, Infallible>(answer(&http, &api, &me, &state, request).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    me
}

async fn answer(
    http: &reqwest::Client,
    api: &str,
    me: &str,
    state: &Expiring,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let path = request.uri().path_and_query().unwrap().as_str().to_owned();
    let method = request.method().clone();
    let headers = request.headers().clone();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let s3 = [
        ("/s3-up/", &state.upload_used),
        ("/s3-down/", &state.download_used),
    ]
    .into_iter()
    .find_map(|(prefix, used)| {
        path.strip_prefix(prefix)
            .map(|rest| (rest.to_owned(), used))
    });
    let (url, is_s3) = match &s3 {
        Some((hex_url, used)) => {
            if !used.swap(true, Ordering::SeqCst) {
                state.expired.fetch_add(1, Ordering::SeqCst);
                let mut response = hyper::Response::new(Full::new(Bytes::from(EXPIRED)));
                *response.status_mut() = hyper::StatusCode::FORBIDDEN;
                return response;
            }
            (
                String::from_utf8(hex::decode(hex_url).unwrap()).unwrap(),
                true,
            )
        }
        None => {
            if method == hyper::Method::POST && path.ends_with("/uploads") {
                state.starts.fetch_add(1, Ordering::SeqCst);
            }
            (format!("{api}{path}"), false)
        }
    };
    let mut forward = http.request(method, url).body(body);
    for (k, v) in &headers {
        if k != hyper::header::HOST {
            forward = forward.header(k, v);
        }
    }
    let answered = forward.send().await.unwrap();
    let status = answered.status();
    let mut bytes = answered.bytes().await.unwrap();
    if !is_s3 && let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&bytes) {
        for (field, prefix) in [("url", "s3-up"), ("download_url", "s3-down")] {
            if let Some(u) = doc.get(field).and_then(|u| u.as_str()) {
                doc[field] = format!("{me}/{prefix}/{}", hex::encode(u)).into();
            }
        }
        bytes = Bytes::from(doc.to_string());
    }
    let mut response = hyper::Response::new(Full::new(bytes));
    *response.status_mut() = status;
    response
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
