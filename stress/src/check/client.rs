//! Requests to the service as API Gateway would deliver them, to the very
//! handlers the Lambda functions run, in process: so a "crash" is the
//! handler's future dropped at whatever await point it reached when its
//! time ran out (a Lambda timing out), not a client giving up on an HTTP
//! connection while the server goes on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lambda_http::{Body, RequestExt};
use serde_json::{Value, json};
use shared::Repository;

use super::history::{Event, History, Outcome};

/// A caller of the service's handlers that records what it saw.
#[derive(Clone)]
pub struct Client {
    pub repo: Repository,
    pub history: Arc<History>,
}

/// One request: method, path (with query), optional JSON body, headers.
pub struct Call<'a> {
    pub method: &'a str,
    pub path: String,
    pub body: Option<Value>,
    pub headers: Vec<(&'static str, String)>,
}

impl<'a> Call<'a> {
    pub fn new(method: &'a str, path: String) -> Self {
        Self {
            method,
            path,
            body: None,
            headers: Vec::new(),
        }
    }

    pub fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl Client {
    /// Runs `call` through its handler, abandoned after `crash_after` when
    /// given, and records it as `op` of `actor` on artifact `name`.
    pub async fn send(
        &self,
        actor: &str,
        name: &str,
        op: &'static str,
        call: Call<'_>,
        crash_after: Option<Duration>,
    ) -> Event {
        let start = self.history.begin(actor, name, op);
        let mut request = json!({"method": call.method, "path": call.path});
        if let Some(body) = &call.body {
            request["body"] = body.clone();
        }
        for (k, v) in &call.headers {
            request[*k] = json!(v);
        }
        if let Some(after) = crash_after {
            request["crash_after_ms"] = json!(after.as_millis() as u64);
        }
        let outcome = match crash_after {
            Some(after) => tokio::time::timeout(after, answer(&self.repo, &call))
                .await
                .unwrap_or(Outcome::Crashed),
            None => answer(&self.repo, &call).await,
        };
        self.history
            .record(actor, name, op, request, start, outcome)
    }
}

/// The handler's answer to `call`.
pub async fn answer(repo: &Repository, call: &Call<'_>) -> Outcome {
    let (path, query) = call
        .path
        .split_once('?')
        .map_or((call.path.as_str(), ""), |(p, q)| (p, q));
    let method: lambda_http::http::Method = call.method.parse().unwrap_or_default();
    let (operation, params) = match shared::api::match_route(&method, path) {
        Ok(found) => found,
        Err(_) => {
            return Outcome::Answer {
                status: 404,
                body: json!({"error": {"code": "RouteNotFound"}}),
            };
        }
    };
    let mut builder = lambda_http::http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1{}", call.path));
    for (k, v) in &call.headers {
        builder = builder.header(*k, v);
    }
    if call.body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let body = call
        .body
        .as_ref()
        .map_or(Body::Empty, |b| Body::Text(b.to_string()));
    let Ok(request) = builder.body(body) else {
        return Outcome::Answer {
            status: 400,
            body: json!({"error": {"code": "BadRequestBuilt"}}),
        };
    };
    let params: HashMap<String, String> = params.into_iter().collect();
    let query: HashMap<String, Vec<String>> =
        form_urlencoded::parse(query.as_bytes()).fold(HashMap::new(), |mut map, (k, v)| {
            map.entry(k.into_owned())
                .or_insert_with(Vec::new)
                .push(v.into_owned());
            map
        });
    let request = request
        .with_path_parameters(params)
        .with_query_string_parameters(query);
    let response = operation.handle(repo, request).await;
    let status = response.status().as_u16();
    let body = match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap_or_else(|_| json!({"text": text})),
        Body::Binary(bytes) => serde_json::from_slice(bytes).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    Outcome::Answer { status, body }
}

/// Every item of a paginated listing at `path` (through the handlers, with
/// the clean repository); `None` when a page failed.
pub async fn list_all(repo: &Repository, path: &str) -> Option<Vec<Value>> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut full = format!("{path}{sep}limit=100");
        if let Some(c) = &cursor {
            full.push_str(&format!(
                "&cursor={}",
                form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()
            ));
        }
        let outcome = answer(repo, &Call::new("GET", full)).await;
        let Outcome::Answer { status, body, .. } = outcome else {
            return None;
        };
        if status == 404 {
            return Some(items);
        }
        if status != 200 {
            return None;
        }
        items.extend(body["items"].as_array().cloned().unwrap_or_default());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Some(items),
        }
    }
}
