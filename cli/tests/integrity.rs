//! A download whose bytes are not the recorded ones: exit 5, and nothing
//! written, not even a temporary file. The bytes are corrupted on the way
//! by a proxy in front of the real local API that points every
//! `download_url` at itself and flips one byte of what S3 serves.

mod support;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::Local;

/// Starts the corrupting proxy in front of `api`; returns its URL.
async fn corrupting_proxy(api: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = format!("http://{}", listener.local_addr().unwrap());
    let own = me.clone();
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (http, api, me) = (http.clone(), api.clone(), own.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let (http, api, me) = (http.clone(), api.clone(), me.clone());
                    async move { Ok::<_, Infallible>(answer(&http, &api, &me, request).await) }
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
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let path_and_query = request.uri().path_and_query().unwrap().as_str().to_owned();
    if let Some(original) = path_and_query.strip_prefix("/tampered/") {
        let url = String::from_utf8(hex::decode(original).unwrap()).unwrap();
        let mut bytes = http
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        match bytes.last_mut() {
            Some(last) => *last ^= 1,
            None => bytes.push(0),
        }
        return hyper::Response::new(Full::new(Bytes::from(bytes)));
    }
    let method = request.method().clone();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let forwarded = http
        .request(method, format!("{api}{path_and_query}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = forwarded.status();
    let mut text = forwarded.text().await.unwrap();
    if let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(url) = doc.get("download_url").and_then(|u| u.as_str())
    {
        doc["download_url"] = format!("{me}/tampered/{}", hex::encode(url)).into();
        text = doc.to_string();
    }
    let mut response = hyper::Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
}

fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupted_download_exits_5_and_leaves_nothing_behind() {
    let local = Local::start().await;
    let file = local.file("build.bin", &support::bytes(300_000, 7));
    local
        .run(&["push", "app", file.to_str().unwrap(), "--alias", "prod"])
        .await
        .ok();
    let proxy = corrupting_proxy(local.api.clone()).await;
    // The proxy passes the API through untouched otherwise.
    local.run_against(&proxy, &["show", "app@1"]).await.ok();

    let before = entries(local.dir.path());
    for reference in ["app", "app@1", "app:prod"] {
        let run = local
            .run_against(&proxy, &["--json", "pull", reference, "-o", "out.bin"])
            .await;
        assert_eq!(run.code, 5, "{reference}: {run:?}");
        assert!(
            run.stderr.starts_with("error: IntegrityError: "),
            "{}",
            run.stderr
        );
        assert_eq!(run.json()["error"]["code"], "IntegrityError");
        assert_eq!(
            entries(local.dir.path()),
            before,
            "{reference}: files left behind"
        );
    }

    // A file already at the target stays as it was.
    let target = local.file("out.bin", b"previous");
    let run = local
        .run_against(&proxy, &["pull", "app", "-o", "out.bin"])
        .await;
    assert_eq!(run.code, 5);
    assert_eq!(std::fs::read(&target).unwrap(), b"previous");

    // To stdout the bytes cannot be held back, but the exit code tells.
    let run = local.run_against(&proxy, &["pull", "app", "-o", "-"]).await;
    assert_eq!(run.code, 5);

    // The same pulls straight from the API succeed.
    local.run(&["pull", "app:prod", "-o", "out.bin"]).await.ok();
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(&file).unwrap()
    );
}
