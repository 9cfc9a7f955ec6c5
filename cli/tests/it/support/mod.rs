//! The harness of the CLI's tests: the local server over its own store on
//! the emulator, and the `artifact` binary run against it as a user would.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use test_support::TestStore;

/// A local API over a fresh store, and a working directory for the CLI.
pub struct Local {
    pub store: TestStore,
    pub api: String,
    pub dir: tempfile::TempDir,
}

/// What one run of `artifact` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stdout as exactly one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}): {:?}\nstderr: {}",
                self.text(),
                self.stderr
            )
        })
    }

    /// Asserts success with nothing on stderr (no progress off a terminal).
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code,
            0,
            "exit {}: stderr {:?}, stdout {:?}",
            self.code,
            self.stderr,
            self.text()
        );
        assert_eq!(self.stderr, "", "stderr on success");
        self
    }
}

impl Local {
    pub async fn start() -> Self {
        Self::with_settings(&[]).await
    }

    /// [`Self::start`] with settings of the server (`Config`'s variables).
    pub async fn with_settings(settings: &[(&str, &str)]) -> Self {
        let store = TestStore::with_settings(settings).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(local_api::serve(
            listener,
            Arc::new(store.another_repository()),
        ));
        Self {
            store,
            api,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A file of `bytes` in the working directory.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `artifact --api <local> ARGS` in the working directory.
    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_against(&self.api, args).await
    }

    /// `artifact --api <api> ARGS` in the working directory.
    pub async fn run_against(&self, api: &str, args: &[&str]) -> Run {
        artifact(self.dir.path(), &[&["--api", api], args].concat(), &[]).await
    }
}

/// Runs the binary in `dir` with `args` and extra environment `env`.
pub async fn artifact(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_artifact"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("ARTIFACT_API_URL")
        .env("ARTIFACT_STATE_DIR", dir.join(".state"))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().await.unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Deterministic bytes of any length.
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    test_support::sha256_hex(bytes)
}

/// A loopback listener and its URL, for a test double that must know its
/// own address before it serves.
pub async fn listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

pub type Response = hyper::Response<http_body_util::Full<bytes::Bytes>>;

/// Serves every connection of `listener` with `handler` (HTTP/1).
pub fn serve<F, Fut>(listener: tokio::net::TcpListener, handler: F)
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let answer = handler(request);
                    async move { Ok::<_, std::convert::Infallible>(answer.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// An answer with `status` and `body`.
pub fn respond(status: u16, body: impl Into<bytes::Bytes>) -> Response {
    let mut response = hyper::Response::new(http_body_util::Full::new(body.into()));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    response
}

/// A test double's request, whole: method, path and query, headers, body.
pub struct Received {
    pub method: hyper::Method,
    pub path: String,
    pub headers: hyper::HeaderMap,
    pub body: bytes::Bytes,
}

pub async fn receive(request: hyper::Request<hyper::body::Incoming>) -> Received {
    use http_body_util::BodyExt;
    let method = request.method().clone();
    let path = request.uri().path_and_query().unwrap().as_str().to_owned();
    let headers = request.headers().clone();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    Received {
        method,
        path,
        headers,
        body,
    }
}

/// Forwards a received request to `url` (all headers but `Host`); the
/// answer's status and body.
pub async fn forward(
    http: &reqwest::Client,
    url: &str,
    received: &Received,
) -> (u16, bytes::Bytes) {
    let mut request = http
        .request(received.method.clone(), url)
        .body(received.body.clone());
    for (k, v) in &received.headers {
        if k != hyper::header::HOST {
            request = request.header(k, v);
        }
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.bytes().await.unwrap())
}

/// Points the presigned URLs in an API answer (`fields` of a JSON body) at
/// `{me}/{prefix}/{hex of the URL}`, where a test double serves them.
pub fn redirect_urls(body: &bytes::Bytes, me: &str, fields: &[(&str, &str)]) -> bytes::Bytes {
    let Ok(mut doc) = serde_json::from_slice::<Value>(body) else {
        return body.clone();
    };
    for (field, prefix) in fields {
        if let Some(url) = doc.get(*field).and_then(Value::as_str) {
            doc[*field] = format!("{me}/{prefix}/{}", hex::encode(url)).into();
        }
    }
    bytes::Bytes::from(doc.to_string())
}

/// The original URL of a path made by [`redirect_urls`].
pub fn original_url(path: &str, prefix: &str) -> Option<String> {
    let hex_url = path.strip_prefix(&format!("/{prefix}/"))?;
    String::from_utf8(hex::decode(hex_url).ok()?).ok()
}
