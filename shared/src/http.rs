//! The HTTP edge, written once: request parsing, JSON responses, and the one
//! mapping from [`Error`] to a status and `{"error": {"code", "message"}}`.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind};

/// Request bodies are small JSON documents; anything bigger is refused.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Throttled => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
    }
}

/// The error body. Upstream failures are logged in full and answered with a
/// generic message: SDK text never reaches a client.
pub fn error_response(error: &Error) -> Response<Body> {
    let status = status_of(error.kind());
    if status.is_server_error() {
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
        Err(_) => error_response(&Error::Upstream {
            operation: "presign",
            source: "invalid URL".into(),
        }),
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
    serde_json::from_slice(bytes).map_err(|e| Error::InvalidRequest(format!("request body: {e}")))
}
