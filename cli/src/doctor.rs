//! `artifact doctor`: after a deploy, checks what the deployment assumes
//! and no unit test can show, through the API as a pipeline uses it, on a
//! scratch artifact that it purges at the end.
//!
//! Above all: a function reading a key that does not exist must see S3's
//! 404, not 403. S3 answers 404 only to a caller allowed `s3:ListBucket`,
//! and the roles hold that only under an `s3:prefix` condition; AWS does not
//! document that a HeadObject's key is matched as `s3:prefix`, so a 403
//! here (the API answers 502 `UpstreamError`) would break uploads of new
//! bytes and commits retried before their bytes arrived. Besides: SigV4 is
//! accepted, S3 refuses bytes other than the declared ones, the blob-prefix
//! deny of the bucket policy lets the functions' presigned URLs through,
//! downloads serve the bytes, and purge removes everything.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::client::Api;
use crate::error::{Error, Result};
use crate::output::{Rendered, table};
use crate::transfer::Presigned;

/// One check: its name, whether it held, what was seen.
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

/// The checks in order; later ones are skipped once one fails that they
/// depend on.
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn record(&mut self, name: &'static str, outcome: Result<String, String>) -> bool {
        let ok = outcome.is_ok();
        let detail = outcome.unwrap_or_else(|e| e);
        self.checks.push(Check { name, ok, detail });
        ok
    }

    fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    fn render(&self, name: &str) -> Rendered {
        let json = json!({
            "ok": self.ok(),
            "artifact": name,
            "checks": self.checks.iter().map(|c| json!({
                "check": c.name, "ok": c.ok, "detail": c.detail,
            })).collect::<Vec<_>>(),
        });
        let rows: Vec<Vec<String>> = self
            .checks
            .iter()
            .map(|c| {
                vec![
                    if c.ok { "ok" } else { "FAILED" }.to_owned(),
                    c.name.to_owned(),
                    c.detail.clone(),
                ]
            })
            .collect();
        Rendered::new(json, table(&["RESULT", "CHECK", "DETAIL"], &rows))
    }
}

/// What an API error says, for a check's detail.
fn said(e: &Error) -> String {
    match e {
        Error::Api { status, code, .. } => format!("{status} {code}: {}", e.message()),
        other => other.to_string(),
    }
}

/// A presigned request sent as the CLI sends one, with `body`; the status.
async fn send(api: &Api, target: &Presigned, body: Vec<u8>) -> Result<u16, String> {
    let method = Method::from_bytes(target.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut request = api
        .http
        .request(method, &target.url)
        .timeout(Duration::from_secs(60))
        .body(body);
    for (k, v) in &target.headers {
        request = request.header(k, v);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}

/// Runs every check on the artifact `name` (which must not exist), purging
/// it at the end unless `keep`. The report, and whether every check held.
pub async fn doctor(api: &Api, name: &str, keep: bool) -> Result<(Rendered, bool)> {
    let mut report = Report { checks: Vec::new() };
    let bytes = format!("artifact doctor {name}\n").into_bytes();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    // Only a name this run found free is its own to purge: a name that
    // exists, or could not be checked, is somebody's artifact.
    let claimed = run(api, name, &bytes, &sha256, &mut report).await;
    if claimed && !keep {
        let purged = match api
            .call(Method::DELETE, &["artifacts", name], &[], None, &[])
            .await
        {
            Ok(_) | Err(Error::Api { status: 404, .. }) => {
                match api.get(&["artifacts", name, "versions"], &[]).await {
                    Err(Error::Api { status: 404, .. }) => {
                        Ok("purged; its versions are gone (404)".to_owned())
                    }
                    Ok(answer) => Err(format!(
                        "versions still listed after purge: {}",
                        answer.body
                    )),
                    Err(e) => Err(said(&e)),
                }
            }
            Err(e) => Err(said(&e)),
        };
        report.record("purge", purged);
    }
    let ok = report.ok();
    Ok((report.render(name), ok))
}

/// The checks; whether the scratch name was found free (and so may have
/// been written by them).
async fn run(api: &Api, name: &str, bytes: &[u8], sha256: &str, report: &mut Report) -> bool {
    // SigV4 accepted, list-artifacts' role may list the library's names.
    let listed = api
        .get(&["artifacts"], &[("limit", "1")])
        .await
        .map(|_| "GET /artifacts answered 200".to_owned())
        .map_err(|e| said(&e));
    if !report.record("api", listed) {
        return false;
    }
    let free = match api.get(&["artifacts", name, "versions"], &[]).await {
        Err(Error::Api { status: 404, .. }) => Ok(format!("{name} is free")),
        Ok(_) => Err(format!(
            "{name} exists already: pass another --name (nothing of it was touched)"
        )),
        Err(e) => Err(format!("{name} could not be checked: {}", said(&e))),
    };
    if !report.record("scratch-name", free) {
        return false;
    }
    run_on_free_name(api, name, bytes, sha256, report).await;
    true
}

async fn run_on_free_name(api: &Api, name: &str, bytes: &[u8], sha256: &str, report: &mut Report) {
    // start-upload HEADs the blob key, which does not exist yet.
    let started = api
        .call(
            Method::POST,
            &["artifacts", name, "uploads"],
            &[],
            Some(&json!({"sha256": sha256, "size": bytes.len(), "content_type": "text/plain"})),
            &[],
        )
        .await;
    let started = match started {
        Ok(answer) if answer.status == 201 => answer.body,
        Ok(answer) => {
            report.record(
                "missing-blob-head-start",
                Err(format!(
                    "expected 201 with a URL, got {}: {}",
                    answer.status, answer.body
                )),
            );
            return;
        }
        Err(e) => {
            report.record(
                "missing-blob-head-start",
                Err(format!("{} (a 502 UpstreamError means S3 answered 403 for a missing key: s3:ListBucket on the blob prefix)", said(&e))),
            );
            return;
        }
    };
    report.record(
        "missing-blob-head-start",
        Ok("start upload of new bytes: 201 (S3 answered 404 for the missing blob)".into()),
    );
    let Some(upload_id) = started.get("upload_id").and_then(Value::as_str) else {
        report.record(
            "missing-blob-head-start",
            Err(format!("no upload_id in {started}")),
        );
        return;
    };
    let upload_id = upload_id.to_owned();
    let target = match Presigned::from_json(&started) {
        Ok(t) => t,
        Err(e) => {
            report.record("missing-blob-head-start", Err(e.to_string()));
            return;
        }
    };

    // commit-upload HEADs the blob key before the bytes arrived.
    let commit_body = json!({"upload_id": upload_id});
    let segments = ["artifacts", name];
    let commit = || api.call(Method::PUT, &segments, &[], Some(&commit_body), &[]);
    let early = match commit().await {
        Err(Error::Api {
            status: 412, code, ..
        }) if code == "UploadMismatch" => {
            Ok("commit before the bytes: 412 UploadMismatch (S3 answered 404)".into())
        }
        Err(e) => Err(format!(
            "expected 412 UploadMismatch, got {} (a 502 UpstreamError means S3 answered 403 for a missing key)",
            said(&e)
        )),
        Ok(answer) => Err(format!("committed without bytes: {}", answer.body)),
    };
    if !report.record("missing-blob-head-commit", early) {
        return;
    }

    // The URL is signed over the checksum: other bytes are refused.
    let mut other = bytes.to_vec();
    other[0] ^= 1;
    let refused = match send(api, &target, other).await {
        Ok(status) if (400..500).contains(&status) => Ok(format!(
            "other bytes of the same size: S3 answered {status}"
        )),
        Ok(status) => Err(format!(
            "S3 accepted bytes other than the declared ones ({status}): the URL is not checked against x-amz-checksum-sha256"
        )),
        Err(e) => Err(e),
    };
    report.record("checksum-enforced", refused);

    // start-upload's role signed the URL: the blob-prefix deny excepts it.
    let put = match send(api, &target, bytes.to_vec()).await {
        Ok(status) if (200..300).contains(&status) => {
            Ok(format!("PUT to the presigned URL: {status}"))
        }
        Ok(status) => Err(format!(
            "PUT to the presigned URL answered {status}: does the bucket policy's blob-prefix deny except start-upload's role?"
        )),
        Err(e) => Err(e),
    };
    if !report.record("presigned-upload", put) {
        return;
    }
    let committed = commit()
        .await
        .map(|a| format!("commit: {}", a.status))
        .map_err(|e| said(&e));
    if !report.record("commit", committed) {
        return;
    }
    let published = api
        .call(
            Method::POST,
            &["artifacts", name, "versions"],
            &[],
            Some(&json!({})),
            &[],
        )
        .await
        .map_err(|e| said(&e))
        .and_then(|a| match a.status {
            201 => Ok("publish: 201, version 1".to_owned()),
            other => Err(format!("publish answered {other}: {}", a.body)),
        });
    if !report.record("publish", published) {
        return;
    }

    // get-version's role signs the download; the bytes are the ones pushed.
    let downloaded = match api.get(&["artifacts", name, "versions", "1"], &[]).await {
        Ok(answer) => match answer.body.get("download_url").and_then(Value::as_str) {
            Some(url) => match api
                .http
                .get(url)
                .timeout(Duration::from_secs(60))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => match r.bytes().await {
                    Ok(b) if hex::encode(Sha256::digest(&b)) == sha256 => {
                        Ok("download URL serves the pushed bytes".to_owned())
                    }
                    Ok(_) => Err("the download URL served other bytes".to_owned()),
                    Err(e) => Err(e.to_string()),
                },
                Ok(r) => Err(format!("the download URL answered {}", r.status())),
                Err(e) => Err(e.to_string()),
            },
            None => Err(format!("no download_url in {}", answer.body)),
        },
        Err(e) => Err(said(&e)),
    };
    report.record("download", downloaded);

    let missing = match api
        .get(&["artifacts", name, "versions", "999999"], &[])
        .await
    {
        Err(Error::Api { status: 404, .. }) => Ok("a version that does not exist: 404".to_owned()),
        Err(e) => Err(format!("expected 404, got {}", said(&e))),
        Ok(a) => Err(format!("expected 404, got {}", a.status)),
    };
    report.record("missing-version", missing);
}
