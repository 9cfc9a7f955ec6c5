//! Bytes to and from presigned S3 URLs: a streamed PUT of a file range and
//! a streamed GET, each retried on connection errors, 429 and 5xx, and each
//! telling an expired URL apart so the caller can ask the API for a new one.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use indicatif::ProgressBar;
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::client::{Attempt, connection_error, retry_after, retrying};
use crate::error::{Error, Result};
use crate::retry::{Policy, retryable_status};

const CHUNK: u64 = 256 * 1024;

/// A presigned request: where, how, and the headers it was signed with.
#[derive(Debug, Clone)]
pub struct Presigned {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
}

impl Presigned {
    /// From an API answer's `url`, `method` (PUT when absent) and `headers`.
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let url = value
            .get("url")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| Error::Protocol(format!("no presigned url in {value}")))?;
        let method = value
            .get("method")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("PUT");
        let headers = value
            .get("headers")
            .and_then(serde_json::Value::as_object)
            .map(|h| {
                h.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            url: url.to_owned(),
            method: method.to_owned(),
            headers,
        })
    }
}

/// How a transfer ended when it did not fail.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    Done(T),
    /// S3 refused the URL as expired: ask the API for a fresh one.
    Expired,
}

/// S3's `<Code>` and `<Message>` of an XML error body.
fn s3_error(body: &str) -> (String, String) {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        body.split_once(&open)
            .and_then(|(_, rest)| rest.split_once(&close))
            .map(|(inner, _)| inner.trim().to_owned())
    };
    (
        tag("Code").unwrap_or_default(),
        tag("Message").unwrap_or_else(|| body.chars().take(200).collect()),
    )
}

/// Whether S3 refused a presigned request because it expired.
pub fn is_expired(status: StatusCode, body: &str) -> bool {
    status == StatusCode::FORBIDDEN && {
        let (code, message) = s3_error(body);
        code == "ExpiredToken"
            || message.to_ascii_lowercase().contains("expired")
            || body.to_ascii_lowercase().contains("request has expired")
    }
}

fn s3_failure(what: &str, status: StatusCode, body: &str) -> Error {
    let (code, message) = s3_error(body);
    let code = if code.is_empty() {
        format!("Http{}", status.as_u16())
    } else {
        code
    };
    if matches!(
        code.as_str(),
        "BadDigest" | "InvalidDigest" | "XAmzContentSHA256Mismatch"
    ) {
        return Error::Integrity(format!(
            "{what}: S3 refused the bytes ({code}: {message}); did the file change while pushing?"
        ));
    }
    Error::Api {
        status: status.as_u16(),
        code,
        message: format!("{what}: {message}"),
    }
}

/// PUTs `len` bytes of `path` from `offset` to a presigned URL, streaming
/// them from disk.
pub async fn put_range(
    http: &reqwest::Client,
    policy: Policy,
    target: &Presigned,
    path: &Path,
    offset: u64,
    len: u64,
    bar: &ProgressBar,
) -> Result<Outcome<()>> {
    let what = format!("upload of {}", path.display());
    let method = Method::from_bytes(target.method.as_bytes())
        .map_err(|_| Error::Protocol(format!("bad upload method {:?}", target.method)))?;
    retrying(policy, || async {
        let sent = Arc::new(AtomicU64::new(0));
        let result = put_once(http, &method, target, path, offset, len, bar, &sent).await;
        // A failed attempt's bytes are sent again: take them off the bar.
        let undo = |bar: &ProgressBar| {
            let n = sent.load(Ordering::Relaxed);
            bar.set_position(bar.position().saturating_sub(n));
        };
        match result {
            Ok(response) => {
                let status = response.status();
                let after = retry_after(&response);
                let body = response.text().await.unwrap_or_default();
                if status.is_success() {
                    return Attempt::Done(Outcome::Done(()));
                }
                undo(bar);
                if is_expired(status, &body) {
                    Attempt::Done(Outcome::Expired)
                } else if retryable_status(status.as_u16()) {
                    Attempt::Retry(s3_failure(&what, status, &body), after)
                } else {
                    Attempt::Fail(s3_failure(&what, status, &body))
                }
            }
            Err(Fatal::Local(e)) => Attempt::Fail(e),
            Err(Fatal::Network(e)) => {
                undo(bar);
                Attempt::Retry(connection_error(&what, &e), None)
            }
        }
    })
    .await
}

enum Fatal {
    Local(Error),
    Network(reqwest::Error),
}

#[allow(clippy::too_many_arguments)]
async fn put_once(
    http: &reqwest::Client,
    method: &Method,
    target: &Presigned,
    path: &Path,
    offset: u64,
    len: u64,
    bar: &ProgressBar,
    sent: &Arc<AtomicU64>,
) -> std::result::Result<reqwest::Response, Fatal> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Fatal::Local(Error::io(path.display(), e)))?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| Fatal::Local(Error::io(path.display(), e)))?;
    let (bar, sent_in_stream) = (bar.clone(), sent.clone());
    let stream = futures::stream::try_unfold((file, len), move |(mut file, remaining)| {
        let (bar, sent) = (bar.clone(), sent_in_stream.clone());
        async move {
            if remaining == 0 {
                return Ok::<_, std::io::Error>(None);
            }
            let n = remaining.min(CHUNK);
            let mut buf = vec![0; n as usize];
            file.read_exact(&mut buf).await?;
            bar.inc(n);
            sent.fetch_add(n, Ordering::Relaxed);
            Ok(Some((Bytes::from(buf), (file, remaining - n))))
        }
    });
    let mut request = http
        .request(method.clone(), &target.url)
        .body(reqwest::Body::wrap_stream(stream));
    let mut has_length = false;
    for (k, v) in &target.headers {
        has_length |= k.eq_ignore_ascii_case("content-length");
        request = request.header(k, v);
    }
    if !has_length {
        request = request.header(reqwest::header::CONTENT_LENGTH, len);
    }
    request.send().await.map_err(Fatal::Network)
}

/// Where downloaded bytes go.
pub trait Sink {
    fn write(&mut self, chunk: &[u8]) -> Result<()>;
    /// Forget what a broken-off attempt wrote: the download starts over.
    fn restart(&mut self) -> Result<()>;
}

/// GETs a presigned URL into `sink`, starting over after a broken-off
/// attempt.
pub async fn download(
    http: &reqwest::Client,
    policy: Policy,
    url: &str,
    bar: &ProgressBar,
    sink: &mut impl Sink,
) -> Result<Outcome<()>> {
    let what = "download";
    let mut tries = 0;
    loop {
        if tries > 0 {
            sink.restart()?;
        }
        bar.set_position(0);
        let (error, after) = match http.get(url).send().await {
            Err(e) => (connection_error(what, &e), None),
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    if let Some(len) = response.content_length() {
                        bar.set_length(len);
                    }
                    let mut body = response.bytes_stream();
                    let mut broken = None;
                    while let Some(chunk) = body.next().await {
                        match chunk {
                            Ok(bytes) => {
                                sink.write(&bytes)?;
                                bar.inc(bytes.len() as u64);
                            }
                            Err(e) => {
                                broken = Some(connection_error(what, &e));
                                break;
                            }
                        }
                    }
                    match broken {
                        None => return Ok(Outcome::Done(())),
                        Some(e) => (e, None),
                    }
                } else {
                    let after = retry_after(&response);
                    let body = response.text().await.unwrap_or_default();
                    if is_expired(status, &body) {
                        return Ok(Outcome::Expired);
                    }
                    if !retryable_status(status.as_u16()) {
                        return Err(s3_failure(what, status, &body));
                    }
                    (s3_failure(what, status, &body), after)
                }
            }
        };
        if tries >= policy.retries {
            return Err(error);
        }
        tokio::time::sleep(policy.delay(tries, after)).await;
        tries += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_presigned_url_is_told_apart_from_other_refusals() {
        let expired = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message><Expires>2026-01-01T00:00:00Z</Expires></Error>";
        assert!(is_expired(StatusCode::FORBIDDEN, expired));
        let denied = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
        assert!(!is_expired(StatusCode::FORBIDDEN, denied));
        assert!(!is_expired(StatusCode::BAD_REQUEST, expired));
    }

    #[test]
    fn a_refused_checksum_is_an_integrity_failure() {
        let body = "<Error><Code>BadDigest</Code><Message>The SHA256 you specified did not match the calculated checksum.</Message></Error>";
        let e = s3_failure("upload", StatusCode::BAD_REQUEST, body);
        assert_eq!(e.exit_code(), 5);
        let e = s3_failure("upload", StatusCode::FORBIDDEN, "");
        assert_eq!((e.code(), e.exit_code()), ("Http403", 1));
    }
}
