//! The HTTP API over reqwest: URLs, SigV4 signing, retries, and the API's
//! error bodies turned into [`Error::Api`].

use std::future::Future;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::retry::{Policy, parse_retry_after, retryable_status};
use crate::sign;

/// Where the API is and how to reach it.
#[derive(Debug, Clone)]
pub struct Settings {
    pub api: String,
    /// `Some(true)`: always sign; `Some(false)`: never; `None`: sign unless
    /// the host is loopback.
    pub sign: Option<bool>,
    pub region: Option<String>,
    pub retries: u32,
    /// How long a request waits for its next byte before the connection
    /// counts as broken: a half-open connection (S3 gone mid-transfer)
    /// otherwise hangs a push or pull for ever, retries never run.
    pub read_timeout: Duration,
    /// The caller the local server acts as (its `x-artifact-caller`
    /// header; a deployed API ignores it and uses the SigV4 identity).
    pub caller: Option<String>,
}

/// Signs requests with credentials from the standard AWS chain.
#[derive(Clone)]
struct Signer {
    credentials: SharedCredentialsProvider,
    region: String,
}

/// A client of the API.
#[derive(Clone)]
pub struct Api {
    base: Url,
    signer: Option<Signer>,
    pub http: reqwest::Client,
    /// For uploads to S3: without the read timeout, which reqwest counts
    /// from the request's start until its answer's headers, so it would
    /// bound the whole time a large body takes to send.
    pub upload_http: reqwest::Client,
    pub policy: Policy,
    caller: Option<String>,
}

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub etag: Option<String>,
    pub body: Value,
}

/// One try's outcome, for [`retrying`].
pub enum Attempt<T> {
    Done(T),
    /// Worth another try (after `Retry-After` when given).
    Retry(Error, Option<Duration>),
    Fail(Error),
}

/// Runs `attempt` until it is done, fails for good, or the policy's retries
/// are spent (then the last error is returned).
pub async fn retrying<T, F, Fut>(policy: Policy, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Attempt::Done(value) => return Ok(value),
            Attempt::Fail(error) => return Err(error),
            Attempt::Retry(error, after) => {
                if tries >= policy.retries {
                    return Err(error);
                }
                tokio::time::sleep(policy.delay(tries, after)).await;
                tries += 1;
            }
        }
    }
}

/// A reqwest error as a retryable connection error.
pub fn connection_error(what: &str, e: &reqwest::Error) -> Error {
    let mut message = format!("{what}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    Error::Connection(message)
}

/// The `Retry-After` of an answer.
pub fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()))
}

/// An API error body (`{"error": {"code", "message"}}`), or a stand-in
/// naming the status when the body is not one (a proxy's bare 503).
pub fn api_error(status: StatusCode, body: &str) -> Error {
    let parsed: Option<(String, String)> = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        let e = v.get("error")?;
        Some((
            e.get("code")?.as_str()?.to_owned(),
            e.get("message")?.as_str()?.to_owned(),
        ))
    });
    let (code, message) = parsed.unwrap_or_else(|| {
        let reason = status.canonical_reason().unwrap_or("error");
        let text: String = body.chars().take(200).collect();
        (
            format!("Http{}", status.as_u16()),
            if text.trim().is_empty() {
                format!("HTTP {} {reason}", status.as_u16())
            } else {
                format!("HTTP {} {reason}: {}", status.as_u16(), text.trim())
            },
        )
    });
    Error::Api {
        status: status.as_u16(),
        code,
        message,
    }
}

/// Percent-encodes one path segment or query component (RFC 3986 unreserved
/// characters stay as they are).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Api {
    /// Resolves the settings: the URL, whether to sign, the credentials and
    /// region when signing.
    pub async fn new(settings: &Settings) -> Result<Self> {
        let base = Url::parse(settings.api.trim_end_matches('/'))
            .map_err(|e| Error::Usage(format!("--api {:?} is not a URL: {e}", settings.api)))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::Usage(format!(
                "--api {:?} must be an http(s) URL",
                settings.api
            )));
        }
        let host = base.host_str().unwrap_or_default().to_owned();
        let signing = settings.sign.unwrap_or(!sign::is_loopback(&host));
        let signer = if signing {
            Some(signer(&host, settings.region.as_deref()).await?)
        } else {
            None
        };
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("artifact/", env!("CARGO_PKG_VERSION")))
        };
        let built = |b: reqwest::ClientBuilder| {
            b.build()
                .map_err(|e| Error::Config(format!("HTTP client: {e}")))
        };
        let http = built(builder().read_timeout(settings.read_timeout))?;
        let upload_http = built(builder())?;
        Ok(Self {
            base,
            signer,
            http,
            upload_http,
            policy: Policy::new(settings.retries),
            caller: settings.caller.clone(),
        })
    }

    /// The URL of `segments` (each percent-encoded) under the API's base.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> String {
        let mut url = self.base.as_str().trim_end_matches('/').to_owned();
        for s in segments {
            url.push('/');
            url.push_str(&encode(s));
        }
        let query: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        url
    }

    /// One API call, retried on connection errors, 429 and 5xx. A 4xx is an
    /// [`Error::Api`] at once.
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Answer> {
        let url = self.url(segments, query);
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut base_headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        if !body.is_empty() {
            base_headers.push(("content-type".into(), "application/json".into()));
        }
        if let Some(caller) = &self.caller {
            base_headers.push(("x-artifact-caller".into(), caller.clone()));
        }
        // One key per write, the same on each of its retries: a retry of a
        // write whose answer was lost is answered as the first attempt was,
        // never applied twice (SPEC 7.5).
        if method != Method::GET
            && method != Method::HEAD
            && !base_headers.iter().any(|(k, _)| k == IDEMPOTENCY_KEY)
        {
            base_headers.push((IDEMPOTENCY_KEY.into(), idempotency_key()));
        }
        let what = format!("{method} {url}");
        retrying(self.policy, || async {
            let mut headers = base_headers.clone();
            if let Some(signer) = &self.signer {
                let credentials = match signer.credentials.provide_credentials().await {
                    Ok(c) => c,
                    Err(e) => {
                        return Attempt::Fail(Error::Config(format!(
                            "no AWS credentials to sign with: {}",
                            error_chain(&e)
                        )));
                    }
                };
                match sign::sign_request(
                    method.as_str(),
                    &url,
                    &headers,
                    body.as_bytes(),
                    &credentials,
                    &signer.region,
                    SystemTime::now(),
                ) {
                    Ok(signed) => headers.extend(signed),
                    Err(e) => return Attempt::Fail(e),
                }
            }
            let mut request = self
                .http
                .request(method.clone(), &url)
                .timeout(Duration::from_secs(60))
                .body(body.clone());
            for (k, v) in &headers {
                request = request.header(k, v);
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => return Attempt::Retry(connection_error(&what, &e), None),
            };
            let status = response.status();
            let after = retry_after(&response);
            let etag = response
                .headers()
                .get(reqwest::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let text = match response.text().await {
                Ok(t) => t,
                Err(e) => return Attempt::Retry(connection_error(&what, &e), None),
            };
            if retryable_status(status.as_u16()) {
                return Attempt::Retry(api_error(status, &text), after);
            }
            if !status.is_success() {
                return Attempt::Fail(api_error(status, &text));
            }
            let body = if text.trim().is_empty() {
                Value::Null
            } else {
                match serde_json::from_str(&text) {
                    Ok(v) => v,
                    Err(e) => {
                        return Attempt::Fail(Error::Protocol(format!(
                            "{what} answered {status} with a body that is not JSON: {e}"
                        )));
                    }
                }
            };
            Attempt::Done(Answer {
                status: status.as_u16(),
                etag,
                body,
            })
        })
        .await
    }

    pub async fn get(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Answer> {
        self.call(Method::GET, segments, query, None, &[]).await
    }

    /// Every item of a paginated listing, following `next_cursor` to the end.
    pub async fn list_all(&self, segments: &[&str]) -> Result<Vec<Value>> {
        self.list_all_with(segments, &[]).await
    }

    /// [`Self::list_all`] with query parameters of the listing's own.
    pub async fn list_all_with(
        &self,
        segments: &[&str],
        params: &[(&str, &str)],
    ) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "1000")];
            query.extend_from_slice(params);
            if let Some(c) = &cursor {
                query.push(("cursor", c));
            }
            let page = self.get(segments, &query).await?.body;
            match page.get("items").and_then(Value::as_array) {
                Some(page_items) => items.extend(page_items.iter().cloned()),
                None => {
                    return Err(Error::Protocol(format!(
                        "a listing answered without items: {page}"
                    )));
                }
            }
            match page.get("next_cursor").and_then(Value::as_str) {
                Some(next) if cursor.as_deref() != Some(next) => cursor = Some(next.to_owned()),
                _ => return Ok(items),
            }
        }
    }
}

/// The header naming a write across its retries.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A fresh key: 128 random bits in hex.
fn idempotency_key() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    message
}

async fn signer(host: &str, region: Option<&str>) -> Result<Signer> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let region = region
        .map(str::to_owned)
        .or_else(|| sign::region_of_host(host).map(str::to_owned))
        .or_else(|| sdk.region().map(|r| r.to_string()))
        .ok_or_else(|| {
            Error::Config(format!(
                "cannot tell the AWS region of {host}: set AWS_REGION or --region"
            ))
        })?;
    let credentials = sdk.credentials_provider().ok_or_else(|| {
        Error::Config("no AWS credentials provider (set AWS_PROFILE or AWS_ACCESS_KEY_ID)".into())
    })?;
    Ok(Signer {
        credentials,
        region,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_and_query_values_are_percent_encoded() {
        assert_eq!(encode("my-app_1.0~x"), "my-app_1.0~x");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn api_errors_keep_code_and_message_and_name_bare_statuses() {
        let e = api_error(
            StatusCode::NOT_FOUND,
            r#"{"error":{"code":"ArtifactNotFound","message":"no"}}"#,
        );
        assert_eq!(
            (e.code(), e.message(), e.exit_code()),
            ("ArtifactNotFound", "no", 3)
        );
        let e = api_error(StatusCode::SERVICE_UNAVAILABLE, "");
        assert_eq!(e.code(), "Http503");
        assert_eq!(e.message(), "HTTP 503 Service Unavailable");
    }
}
