//! A fault-injecting HTTP proxy between the repository's SDK clients and the
//! emulator. A [`Faults`] plan decides per request: a 503, a 500, the
//! connection dropped before forwarding, the connection dropped *after*
//! forwarding (the write happened, its answer is lost), or a delay. `make
//! stress` injects them at random; tests target one AWS operation, or
//! program a [`Plan`]: rules matching an operation and a key (a substring of
//! the request's path or body, e.g. a DynamoDB partition key or an S3 key),
//! each holding the request at a [`Gate`] until released, dropping it after
//! forwarding, answering 500, or recording its headers, a given number of
//! times.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

#[derive(Debug, Default)]
pub struct FaultCounts {
    pub forwarded: AtomicU64,
    pub status_503: AtomicU64,
    pub status_500: AtomicU64,
    pub reset_before: AtomicU64,
    pub reset_after: AtomicU64,
    pub delayed: AtomicU64,
}

impl FaultCounts {
    pub fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{} requests forwarded; injected: {} × 503, {} × 500, {} resets before forwarding, {} resets after forwarding, {} delays",
            get(&self.forwarded),
            get(&self.status_503),
            get(&self.status_500),
            get(&self.reset_before),
            get(&self.reset_after),
            get(&self.delayed)
        )
    }
}

/// A fault for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Status503,
    Status500,
    ResetBefore,
    /// Forward, then drop the connection: the write lands, its answer is lost.
    ResetAfter,
    Delay,
}

/// Which requests meet which fault.
#[derive(Clone)]
pub enum Faults {
    /// Each request, with probability `rate`, meets one of the five faults.
    Random(f64),
    /// The first `times` requests whose DynamoDB operation (`X-Amz-Target`,
    /// e.g. `UpdateItem`) or S3 method is `operation` meet `fault`.
    First {
        operation: &'static str,
        fault: Fault,
        times: Arc<AtomicU64>,
    },
    /// Programmable rules, changed while requests flow.
    Plan(Arc<Plan>),
}

/// What a [`Rule`] does to a request it matches.
#[derive(Clone)]
pub enum Action {
    /// One of the plain faults (reset after forwarding = a lost answer).
    Fault(Fault),
    /// Wait at the gate until it opens, then forward.
    HoldBefore(Arc<Gate>),
    /// Forward, then wait at the gate before answering (the write landed,
    /// its answer is late).
    HoldAfter(Arc<Gate>),
    /// Forward unchanged, keeping the request's headers (e.g. to see the
    /// conditions a write was sent with).
    Record(Arc<Recorded>),
    /// Answer at once with this status and JSON body, forwarding nothing:
    /// an AWS answer the emulator never gives (e.g. [`TRANSACTION_CONFLICT`]).
    Answer { status: u16, body: &'static str },
}

/// DynamoDB's answer to a TransactWriteItems that met another transaction
/// on one of its items (two members): nothing was written.
pub const TRANSACTION_CONFLICT: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","message":"Transaction cancelled, please refer cancellation reasons for specific reasons [TransactionConflict, None]","CancellationReasons":[{"Code":"TransactionConflict","Message":"Transaction is ongoing for the item"},{"Code":"None"}]}"#;

/// The headers of the requests an [`Action::Record`] rule matched, in order.
#[derive(Default)]
pub struct Recorded {
    headers: std::sync::Mutex<Vec<hyper::HeaderMap>>,
}

impl Recorded {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The headers of each request recorded so far.
    pub fn headers(&self) -> Vec<hyper::HeaderMap> {
        self.headers.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

/// A request rule: operation (`X-Amz-Target` suffix such as
/// `TransactWriteItems`, or the S3 HTTP method), an optional substring of
/// the path or body, what to do, and how many more requests it applies to.
pub struct Rule {
    pub operation: String,
    pub key: Option<String>,
    pub action: Action,
    remaining: AtomicU64,
    /// How many requests this rule acted on.
    pub hits: AtomicU64,
}

impl Rule {
    pub fn new(operation: &str, key: Option<&str>, action: Action, times: u64) -> Self {
        Self {
            operation: operation.to_owned(),
            key: key.map(str::to_owned),
            action,
            remaining: AtomicU64::new(times),
            hits: AtomicU64::new(0),
        }
    }

    fn take(&self, operation: &[&str], path: &str, body: &[u8]) -> Option<Action> {
        if !operation.contains(&self.operation.as_str()) {
            return None;
        }
        if let Some(key) = &self.key {
            let in_body = body.windows(key.len().max(1)).any(|w| w == key.as_bytes());
            if !path.contains(key.as_str()) && !in_body {
                return None;
            }
        }
        self.remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .ok()?;
        self.hits.fetch_add(1, Ordering::SeqCst);
        Some(self.action.clone())
    }
}

/// Rules tried in order; the first that matches acts.
#[derive(Default)]
pub struct Plan {
    rules: std::sync::Mutex<Vec<Arc<Rule>>>,
}

impl Plan {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Adds a rule; the returned handle tells how often it acted.
    pub fn add(&self, rule: Rule) -> Arc<Rule> {
        let rule = Arc::new(rule);
        if let Ok(mut rules) = self.rules.lock() {
            rules.push(rule.clone());
        }
        rule
    }

    pub fn clear(&self) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.clear();
        }
    }

    fn take(&self, operation: &[&str], path: &str, body: &[u8]) -> Option<Action> {
        let rules = self.rules.lock().ok()?.clone();
        rules.iter().find_map(|r| r.take(operation, path, body))
    }
}

/// Where held requests wait: [`Gate::arrived`] resolves when a request got
/// there, [`Gate::open`] lets every held request (and later ones) through.
pub struct Gate {
    arrivals: tokio::sync::Semaphore,
    open: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            arrivals: tokio::sync::Semaphore::new(0),
            open: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Waits until one more request is held here (at most 30 s: panics then).
    pub async fn arrived(&self) {
        match tokio::time::timeout(Duration::from_secs(30), self.arrivals.acquire()).await {
            Ok(Ok(permit)) => permit.forget(),
            _ => panic!("no request reached the gate within 30 s"),
        }
    }

    pub fn open(&self) {
        self.open.send_replace(true);
    }

    async fn pass(&self) {
        self.arrivals.add_permits(1);
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
    }
}

impl Faults {
    pub fn first(operation: &'static str, fault: Fault, times: u64) -> Self {
        Self::First {
            operation,
            fault,
            times: Arc::new(AtomicU64::new(times)),
        }
    }

    fn pick(&self, operation: &str) -> Option<Fault> {
        match self {
            Self::Plan(_) => None,
            Self::Random(rate) => (rand::random::<f64>() < *rate).then(|| {
                [
                    Fault::Status503,
                    Fault::Status500,
                    Fault::ResetBefore,
                    Fault::ResetAfter,
                    Fault::Delay,
                ][rand::random_range(0..5usize)]
            }),
            Self::First {
                operation: wanted,
                fault,
                times,
            } => (operation == *wanted
                && times
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok())
            .then_some(*fault),
        }
    }
}

/// Starts the proxy on a free loopback port; returns its URL.
pub async fn start(upstream: String, faults: Faults, counts: Arc<FaultCounts>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let url = format!("http://{}", listener.local_addr().expect("proxy address"));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("proxy client");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (client, upstream, counts, faults) = (
                client.clone(),
                upstream.clone(),
                counts.clone(),
                faults.clone(),
            );
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let (client, upstream, counts, faults) = (
                        client.clone(),
                        upstream.clone(),
                        counts.clone(),
                        faults.clone(),
                    );
                    async move { handle(request, &client, &upstream, &faults, &counts).await }
                });
                // A service error closes the connection without an answer: the reset faults.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected connection reset")
    }
}

impl std::error::Error for Reset {}

async fn handle(
    request: Request<Incoming>,
    client: &reqwest::Client,
    upstream: &str,
    faults: &Faults,
    counts: &FaultCounts,
) -> Result<Response<Full<Bytes>>, Reset> {
    let operation = request
        .headers()
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or_else(|| request.method().as_str())
        .to_owned();
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(|_| Reset)?.to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    let planned = match faults {
        Faults::Plan(plan) => plan.take(
            &[
                &operation,
                s3_operation(&parts.method, &path, &parts.headers),
            ],
            &path,
            &body,
        ),
        _ => None,
    };
    let fault = match &planned {
        Some(Action::Fault(fault)) => Some(*fault),
        Some(_) => None,
        None => faults.pick(&operation),
    };
    match fault {
        Some(Fault::Status503) => {
            counts.status_503.fetch_add(1, Ordering::Relaxed);
            return Ok(status(StatusCode::SERVICE_UNAVAILABLE));
        }
        Some(Fault::Status500) => {
            counts.status_500.fetch_add(1, Ordering::Relaxed);
            return Ok(status(StatusCode::INTERNAL_SERVER_ERROR));
        }
        Some(Fault::ResetBefore) => {
            counts.reset_before.fetch_add(1, Ordering::Relaxed);
            return Err(Reset);
        }
        Some(Fault::Delay) => {
            counts.delayed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(rand::random_range(20..200))).await;
        }
        _ => {}
    }
    if let Some(Action::Answer { status, body }) = &planned {
        let mut answer = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *answer.status_mut() = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST);
        answer.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/x-amz-json-1.0"),
        );
        return Ok(answer);
    }
    if let Some(Action::HoldBefore(gate)) = &planned {
        gate.pass().await;
    }
    if let Some(Action::Record(recorded)) = &planned
        && let Ok(mut headers) = recorded.headers.lock()
    {
        headers.push(parts.headers.clone());
    }
    let mut forward = client
        .request(parts.method.clone(), format!("{upstream}{path}"))
        .body(body);
    for (name, value) in &parts.headers {
        forward = forward.header(name, value);
    }
    let response = forward.send().await.map_err(|_| Reset)?;
    counts.forwarded.fetch_add(1, Ordering::Relaxed);
    let status_code = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.map_err(|_| Reset)?;
    if let Some(Action::HoldAfter(gate)) = &planned {
        gate.pass().await;
    }
    if fault == Some(Fault::ResetAfter) {
        counts.reset_after.fetch_add(1, Ordering::Relaxed);
        return Err(Reset);
    }
    let mut answer = Response::new(Full::new(bytes));
    *answer.status_mut() = status_code;
    for (name, value) in &headers {
        // Keep content-length: on a HEAD answer it is the object's size.
        if name != "transfer-encoding" {
            answer.headers_mut().append(name, value.clone());
        }
    }
    Ok(answer)
}

/// The S3 operation of a request (rules may name it instead of the method).
fn s3_operation(method: &hyper::Method, path: &str, headers: &hyper::HeaderMap) -> &'static str {
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    let has = |param: &str| {
        query
            .split('&')
            .any(|p| p == param || p.starts_with(&format!("{param}=")))
    };
    match *method {
        hyper::Method::PUT if headers.contains_key("x-amz-copy-source") && has("partNumber") => {
            "UploadPartCopy"
        }
        hyper::Method::PUT if headers.contains_key("x-amz-copy-source") => "CopyObject",
        hyper::Method::PUT if has("partNumber") => "UploadPart",
        hyper::Method::PUT => "PutObject",
        hyper::Method::POST if has("uploads") => "CreateMultipartUpload",
        hyper::Method::POST if has("uploadId") => "CompleteMultipartUpload",
        hyper::Method::POST if has("delete") => "DeleteObjects",
        hyper::Method::DELETE if has("uploadId") => "AbortMultipartUpload",
        hyper::Method::DELETE => "DeleteObject",
        hyper::Method::HEAD => "HeadObject",
        hyper::Method::GET if has("versions") => "ListObjectVersions",
        hyper::Method::GET if has("uploadId") => "ListParts",
        hyper::Method::GET if has("list-type") => "ListObjectsV2",
        hyper::Method::GET => "GetObject",
        _ => "",
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}
