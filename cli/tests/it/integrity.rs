//! A download whose bytes are not the recorded ones: exit 5, and nothing
//! written, not even a temporary file. The bytes are corrupted on the way
//! by a proxy in front of the real local API that points every
//! `download_url` at itself and flips one byte of what S3 serves.

use crate::support;

use std::collections::BTreeSet;
use std::path::Path;

use support::{Local, forward, original_url, receive, redirect_urls, respond};

/// Starts the corrupting proxy in front of `api`; returns its URL.
async fn corrupting_proxy(api: String) -> String {
    let (listener, me) = support::listener().await;
    let http = reqwest::Client::new();
    let own = me.clone();
    support::serve(listener, move |request| {
        let (http, api, me) = (http.clone(), api.clone(), own.clone());
        async move {
            let received = receive(request).await;
            if let Some(url) = original_url(&received.path, "tampered") {
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
                return respond(200, bytes);
            }
            let (status, body) =
                forward(&http, &format!("{api}{}", received.path), &received).await;
            respond(
                status,
                redirect_urls(&body, &me, &[("download_url", "tampered")]),
            )
        }
    });
    me
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

    // To stdout the bytes are held back until verified: a pipe reads none.
    let run = local.run_against(&proxy, &["pull", "app", "-o", "-"]).await;
    assert_eq!(run.code, 5);
    assert!(
        run.stdout.is_empty(),
        "{} bytes on stdout",
        run.stdout.len()
    );

    // The same pulls straight from the API succeed.
    local.run(&["pull", "app:prod", "-o", "out.bin"]).await.ok();
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(&file).unwrap()
    );
}
