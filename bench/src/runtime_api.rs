//! A minimal Lambda Runtime API: hands one event to a function process and
//! records when the process first asked for work and when it answered.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[derive(Debug, Default, Clone)]
pub struct Timeline {
    /// First `GET /next`: the function finished its init.
    pub first_next: Option<Instant>,
    /// The event's response (or error) was posted.
    pub answered: Option<Instant>,
    pub answer: Option<String>,
}

pub struct RuntimeApi {
    pub address: String,
    pub timeline: Arc<Mutex<Timeline>>,
}

/// Serves `event` once to whichever process polls this address.
pub async fn start(event: String) -> RuntimeApi {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind runtime api");
    let address = listener.local_addr().expect("address").to_string();
    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let state = (timeline.clone(), Arc::new(Mutex::new(Some(event))));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (timeline, event) = state.clone();
                    async move {
                        let path = request.uri().path().to_owned();
                        if path.ends_with("/invocation/next") {
                            if let Ok(mut t) = timeline.lock() {
                                t.first_next.get_or_insert_with(Instant::now);
                            }
                            let next = event.lock().ok().and_then(|mut e| e.take());
                            let Some(body) = next else {
                                // Only one event: park later polls until the process is killed.
                                futures::future::pending::<()>().await;
                                unreachable!()
                            };
                            let deadline = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map(|d| d.as_millis() + 60_000)
                                .unwrap_or_default();
                            let response = Response::builder()
                                .header("lambda-runtime-aws-request-id", "bench-request-1")
                                .header("lambda-runtime-deadline-ms", deadline.to_string())
                                .header(
                                    "lambda-runtime-invoked-function-arn",
                                    "arn:aws:lambda:us-east-1:123456789012:function:bench",
                                )
                                .header(
                                    "lambda-runtime-trace-id",
                                    "Root=1-00000000-000000000000000000000000",
                                )
                                .body(Full::new(Bytes::from(body)))
                                .expect("response");
                            return Ok::<_, Infallible>(response);
                        }
                        let answer = request
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        if let Ok(mut t) = timeline.lock() {
                            t.answered.get_or_insert_with(Instant::now);
                            t.answer =
                                Some(format!("{path}: {}", String::from_utf8_lossy(&answer)));
                        }
                        Ok(Response::builder()
                            .status(202)
                            .body(Full::new(Bytes::new()))
                            .expect("response"))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    RuntimeApi { address, timeline }
}
