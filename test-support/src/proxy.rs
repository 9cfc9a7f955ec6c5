//! A fault-injecting HTTP proxy between the repository's SDK clients and the
//! emulator. A [`Faults`] plan decides per request: a 503, a 500, the
//! connection dropped before forwarding, the connection dropped *after*
//! forwarding (the write happened, its answer is lost), or a delay. `make
//! stress` injects them at random; tests target one AWS operation.

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
    let fault = faults.pick(&operation);
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
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(|_| Reset)?.to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
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

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}
