//! The local API server: every route of the API on one address.
//!
//! Each HTTP request becomes the `lambda_http::Request` API Gateway (HTTP
//! API, payload 2.0) would deliver — path parameters decoded, query string
//! parsed, body as text or binary — and goes to the very handler the Lambda
//! function of that route runs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lambda_http::http::{self, StatusCode};
use lambda_http::{Body, RequestExt};
use shared::Repository;
use shared::api::{NoRoute, match_route};
use shared::http::json_with_code;
use tokio::net::TcpListener;

/// Requests bigger than this never reach a handler (API Gateway's own cap is 10 MB).
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Serves connections from `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, repo: Arc<Repository>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let repo = repo.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let repo = repo.clone();
                async move { Ok::<_, Infallible>(handle(&repo, request).await) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
}

/// One request, start to end.
pub async fn handle(
    repo: &Repository,
    request: http::Request<Incoming>,
) -> http::Response<Full<Bytes>> {
    let started = Instant::now();
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = dispatch(repo, request).await;
    tracing::info!(%method, %path, status = response.status().as_u16(), ms = started.elapsed().as_millis() as u64);
    let (parts, body) = response.into_parts();
    let bytes = match body {
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    http::Response::from_parts(parts, Full::new(bytes))
}

async fn dispatch(repo: &Repository, request: http::Request<Incoming>) -> http::Response<Body> {
    let (operation, raw_params) = match match_route(request.method(), request.uri().path()) {
        Ok(found) => found,
        Err(NoRoute::MethodNotAllowed(allowed)) => {
            let message = format!("this path accepts {}", allowed.join(", "));
            let mut response =
                json_with_code(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", &message);
            if let Ok(value) = http::HeaderValue::from_str(&allowed.join(", ")) {
                response.headers_mut().insert(http::header::ALLOW, value);
            }
            return response;
        }
        Err(NoRoute::NotFound) => {
            return json_with_code(StatusCode::NOT_FOUND, "RouteNotFound", "no such route");
        }
    };
    let (parts, body) = request.into_parts();
    let bytes = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return json_with_code(
                StatusCode::PAYLOAD_TOO_LARGE,
                "TooLarge",
                "request body too large",
            );
        }
    };
    let query: HashMap<String, Vec<String>> = parts
        .uri
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes()).fold(
                HashMap::new(),
                |mut map: HashMap<String, Vec<String>>, (k, v)| {
                    map.entry(k.into_owned()).or_default().push(v.into_owned());
                    map
                },
            )
        })
        .unwrap_or_default();
    // API Gateway hands path parameters over percent-decoded.
    let params: HashMap<String, String> = raw_params
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                percent_encoding::percent_decode_str(&v)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        })
        .collect();
    let body = if bytes.is_empty() {
        Body::Empty
    } else {
        match String::from_utf8(bytes.to_vec()) {
            Ok(text) => Body::Text(text),
            Err(_) => Body::Binary(bytes.to_vec()),
        }
    };
    // SPEC 10.4: here alone (never on Lambda) the caller is taken from a
    // header, so tests and `make dev` can act as several principals.
    let caller = parts
        .headers
        .get(shared::http::CALLER_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| shared::http::LocalCaller(v.to_owned()));
    let mut request = http::Request::from_parts(parts, body)
        .with_path_parameters(params)
        .with_query_string_parameters(query);
    if let Some(caller) = caller {
        request.extensions_mut().insert(caller);
    }
    operation.handle(repo, request).await
}
