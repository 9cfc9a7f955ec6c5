//! The CLI's one error type and its exit codes (SPEC 8).

use std::fmt;

/// Exit codes, as documented in `artifact --help` and the README.
pub mod exit {
    pub const OK: i32 = 0;
    pub const ERROR: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const NOT_FOUND: i32 = 3;
    pub const CONFLICT: i32 = 4;
    pub const INTEGRITY: i32 = 5;
}

/// What went wrong, with the code shown as `error: <code>: <message>`.
#[derive(Debug)]
pub enum Error {
    /// The API answered with an error (`{"error": {"code", "message"}}`).
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// A bad invocation caught after parsing (exit 2).
    Usage(String),
    /// The downloaded or uploaded bytes are not the ones declared (exit 5).
    Integrity(String),
    /// The API or S3 could not be reached (after the retries).
    Connection(String),
    /// Reading or writing a local file.
    Io(String),
    /// Configuration: credentials, region, the API URL.
    Config(String),
    /// An answer the CLI does not understand.
    Protocol(String),
}

impl Error {
    pub fn code(&self) -> &str {
        match self {
            Self::Api { code, .. } => code,
            Self::Usage(_) => "Usage",
            Self::Integrity(_) => "IntegrityError",
            Self::Connection(_) => "ConnectionError",
            Self::Io(_) => "IoError",
            Self::Config(_) => "ConfigError",
            Self::Protocol(_) => "ProtocolError",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Api { message, .. } => message,
            Self::Usage(m)
            | Self::Integrity(m)
            | Self::Connection(m)
            | Self::Io(m)
            | Self::Config(m)
            | Self::Protocol(m) => m,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Api { status: 404, .. } => exit::NOT_FOUND,
            Self::Api {
                status: 409 | 412, ..
            } => exit::CONFLICT,
            Self::Usage(_) => exit::USAGE,
            Self::Integrity(_) => exit::INTEGRITY,
            _ => exit::ERROR,
        }
    }

    /// The JSON error document printed on stdout with `--json`: the API's
    /// own error shape.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code(), "message": self.message()}})
    }

    pub fn io(context: impl fmt::Display, e: std::io::Error) -> Self {
        Self::Io(format!("{context}: {e}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> Error {
        Error::Api {
            status,
            code: "X".into(),
            message: "m".into(),
        }
    }

    #[test]
    fn statuses_map_to_the_documented_exit_codes() {
        assert_eq!(api(404).exit_code(), 3);
        assert_eq!(api(409).exit_code(), 4);
        assert_eq!(api(412).exit_code(), 4);
        assert_eq!(api(400).exit_code(), 1);
        assert_eq!(api(503).exit_code(), 1);
        assert_eq!(Error::Usage("u".into()).exit_code(), 2);
        assert_eq!(Error::Integrity("i".into()).exit_code(), 5);
    }
}
