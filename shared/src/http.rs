//! The HTTP edge, written once: request parsing, JSON responses, and the one
//! mapping from [`Error`] to a status and `{"error": {"code", "message"}}`.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind};
use crate::model::{LOCAL_ACTOR, Precondition};

/// Request bodies are small JSON documents (the largest: 1 000 parts of a
/// multipart upload, under 100 KB); anything bigger is refused.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Throttled => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The error body. Upstream failures are logged in full and answered with a
/// generic message: SDK text never reaches a client.
pub fn error_response(error: &Error) -> Response<Body> {
    let status = status_of(error.kind());
    if error.kind() == ErrorKind::Internal {
        tracing::error!(error = ?error, "internal error (a bug in this service)");
    } else if status.is_server_error() {
        tracing::error!(error = ?error, "upstream failure");
    } else {
        tracing::info!(code = error.code(), %error, "request refused");
    }
    // Display of upstream variants names the AWS operation, never SDK text.
    json_with_code(status, error.code(), &error.to_string())
}

/// A plain error body for conditions outside the domain (unknown route…).
pub fn json_with_code(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_string(value) {
        Ok(text) => {
            let mut response = Response::new(Body::Text(text));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "response serialization failed");
            let mut response = Response::new(Body::Empty);
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }
}

pub fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = status;
    response
}

pub fn redirect(location: &str) -> Response<Body> {
    let mut response = empty(StatusCode::FOUND);
    match HeaderValue::from_str(location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        Err(e) => error_response(&Error::internal("redirect Location", e)),
    }
}

/// A required path parameter, parsed into a domain value.
pub fn path<T: std::str::FromStr<Err = Error>>(request: &Request, name: &str) -> Result<T, Error> {
    let params = request.path_parameters();
    let raw = params
        .first(name)
        .ok_or_else(|| Error::InvalidRequest(format!("missing path parameter {name:?}")))?;
    raw.parse()
}

/// An optional query parameter, raw.
pub fn query(request: &Request, name: &str) -> Option<String> {
    request
        .query_string_parameters()
        .first(name)
        .map(str::to_owned)
}

/// Optional `?limit=` and `?cursor=`.
pub fn paging(request: &Request) -> Result<(Option<u32>, Option<String>), Error> {
    let limit = match query(request, "limit") {
        None => None,
        Some(l) => Some(l.parse::<u32>().map_err(|_| {
            Error::InvalidRequest(format!("limit {l:?} is not a positive integer"))
        })?),
    };
    // `?cursor=` (empty) asks for the first page.
    Ok((limit, query(request, "cursor").filter(|c| !c.is_empty())))
}

/// The JSON body as `T`; an empty body reads as `{}`. Unknown fields, wrong
/// types and oversized bodies are refused with a clear message.
pub fn body<T: DeserializeOwned>(request: &Request) -> Result<T, Error> {
    let bytes: &[u8] = match request.body() {
        Body::Empty => b"",
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => b"",
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(Error::TooLarge(format!(
            "request body exceeds {MAX_BODY_BYTES} bytes"
        )));
    }
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        bytes
    };
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::InvalidRequest(format!("request body: {}", readable(&e))))?;
    // Only an object can be a request: `[]`, `null`, `"x"` and `3` are
    // refused rather than read as `{}` by a lenient deserializer.
    if !value.is_object() {
        return Err(Error::InvalidRequest(format!(
            "request body must be a JSON object, not {}",
            json_kind(&value)
        )));
    }
    // Read from the text itself, not from the value: a field given twice
    // is refused ("duplicate field"), where the value kept the last.
    serde_json::from_slice(bytes)
        .map_err(|e| Error::InvalidRequest(format!("request body: {}", readable(&e))))
}

/// A nested object of a request body, given as a JSON object only.
/// serde's derived structs also take an array of their fields in order
/// (`"alias": ["prod"]`), a form no client is told of and one the
/// authorisation, reading the body as JSON, would not see as the same
/// request: a body means one thing to every reader.
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Only<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Only<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            // The map itself, read by T: its fields checked as T checks
            // them (unknown, missing, given twice).
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Only(std::marker::PhantomData))
            .map(Object)
    }
}

/// A body's parse error in the client's terms: serde names the Rust type a
/// nested object or choice should be ("expected struct AliasMoveBody",
/// "untagged enum StepsBody"), a name no client knows; only those phrases
/// are rewritten (never the client's own text echoed in the message).
fn readable(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let mut out = String::with_capacity(message.len());
    let mut rest = message.as_str();
    loop {
        let found = ["expected struct ", "untagged enum ", "expected enum "]
            .iter()
            .filter_map(|word| rest.find(word).map(|at| (at, *word)))
            .min();
        let Some((at, word)) = found else {
            break;
        };
        out.push_str(&rest[..at]);
        out.push_str(match word {
            "expected struct " => "expected an object",
            "expected enum " => "expected one of the accepted forms",
            _ => "one of the accepted forms",
        });
        let after = &rest[at + word.len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The caller the local server read from its `x-artifact-caller` header
/// (SPEC 10.4: only `local-api` takes the caller from a header, so tests
/// and `make dev` can act as several principals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCaller(pub String);

/// The header `local-api` (only it) takes the caller from.
pub const CALLER_HEADER: &str = "x-artifact-caller";

/// The caller's IAM identity, from the API Gateway request context (SPEC
/// 4.2): `userArn`, else the caller id, else the caller's account; `local`
/// when the request carries no context (the local server). The API's own
/// account (`requestContext.accountId`) is not the caller's: never used.
pub fn actor(request: &Request) -> String {
    use lambda_http::request::RequestContext;
    // Only the local server puts a caller here (from its documented
    // header); a Lambda's request never carries one.
    if let Some(LocalCaller(caller)) = request.extensions().get::<LocalCaller>() {
        return caller.clone();
    }
    let Some(RequestContext::ApiGatewayV2(context)) = request.request_context_ref() else {
        return LOCAL_ACTOR.to_owned();
    };
    let iam = context.authorizer.as_ref().and_then(|a| a.iam.as_ref());
    iam.and_then(|i| i.user_arn.clone())
        .or_else(|| iam.and_then(|i| i.caller_id.clone()))
        .or_else(|| iam.and_then(|i| i.account_id.clone()))
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "anonymous".to_owned())
}

/// The identity of a write sent with an `Idempotency-Key` (SPEC 7.5: a
/// retry is safe): the key with who sends it, the method, the path and the
/// body, so that only the very same request sent again (a retry whose
/// first answer was lost) is answered as its first attempt was and never
/// applied twice, while another request reusing the key (another caller,
/// route or body) is a request of its own. The service hashes it into the
/// request's token. `None` without the header.
pub fn idempotency_key(request: &Request) -> Result<Option<String>, Error> {
    let Some(key) = idempotency_key_header(request)? else {
        return Ok(None);
    };
    let body: &[u8] = match request.body() {
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    };
    Ok(Some(format!(
        "{key}\n{}\n{} {}\n{}",
        actor(request),
        request.method(),
        request.uri().path(),
        String::from_utf8_lossy(body)
    )))
}

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters, quoted
/// or not (`"8e03978e-40d5-43e8-bc93-6894a57f9324"`, as the IETF draft
/// writes it); anything else is a 400, never ignored.
pub fn idempotency_key_header(request: &Request) -> Result<Option<String>, Error> {
    let Some(value) = request.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    let unquoted = text.strip_prefix('"').unwrap_or(text);
    let unquoted = unquoted.strip_suffix('"').unwrap_or(unquoted);
    // `"` or `""` is a key of quotes, not an empty one.
    let key = if unquoted.is_empty() { text } else { unquoted };
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::InvalidRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
        ));
    }
    Ok(Some(key.to_owned()))
}

/// The header a client names a request by, across its retries.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// `If-Match: "<revision>"` or `If-None-Match: *` (SPEC 4.2). A malformed
/// header is a 400, never ignored.
pub fn precondition(request: &Request) -> Result<Precondition, Error> {
    let header = |name: header::HeaderName| -> Result<Option<String>, Error> {
        request
            .headers()
            .get(&name)
            .map(|v| {
                v.to_str()
                    .map(|s| s.trim().to_owned())
                    .map_err(|_| Error::InvalidRequest(format!("{name} must be printable ASCII")))
            })
            .transpose()
    };
    match (header(header::IF_MATCH)?, header(header::IF_NONE_MATCH)?) {
        (Some(_), Some(_)) => Err(Error::InvalidRequest(
            "send either If-Match or If-None-Match, not both".into(),
        )),
        (Some(tag), None) if tag == "*" => Ok(Precondition::Exists),
        (Some(tag), None) => {
            // If-Match compares strongly: a weak tag (`W/"3"`) never matches.
            let digits =
                |t: &str| !t.is_empty() && t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit());
            let quoted = tag.strip_prefix('"').and_then(|t| t.strip_suffix('"'));
            // `"0.<micros>"`: a row the library wrote, as read.
            let library = quoted
                .and_then(|t| t.strip_prefix("0."))
                .filter(|t| digits(t))
                .and_then(|t| t.parse::<i64>().ok())
                .map(Precondition::LibraryRow);
            let revision = quoted
                .filter(|t| digits(t))
                .and_then(|t| t.parse::<u64>().ok())
                .map(Precondition::Revision);
            library.or(revision).ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "If-Match must be a revision in quotes, like \"3\", not {tag:?}"
                ))
            })
        }
        (None, Some(tag)) if tag == "*" => Ok(Precondition::Absent),
        (None, Some(tag)) => Err(Error::InvalidRequest(format!(
            "If-None-Match supports only *, not {tag:?}"
        ))),
        (None, None) => Ok(Precondition::None),
    }
}

/// Adds `ETag: "<revision>"` to a response (the access targets, a rollout).
pub fn with_etag(mut response: Response<Body>, revision: u64) -> Response<Body> {
    if let Ok(value) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// Adds an alias's `ETag` (`model::alias_etag`: `"<revision>"`, or
/// `"0.<micros>"` for a row the library wrote) to its response.
pub fn with_alias_etag(
    mut response: Response<Body>,
    alias: &crate::model::Alias,
) -> Response<Body> {
    let tag = crate::model::alias_etag(alias.revision, alias.update_at);
    if let Ok(value) = HeaderValue::from_str(&tag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}
