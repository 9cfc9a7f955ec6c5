//! The one error type of the repository, with stable codes.
//!
//! Each variant has a stable `code` (the `error.code` of an HTTP body) and a
//! [`ErrorKind`] that the HTTP layer maps to a status in one place. SDK errors
//! stay attached as sources for logs; their text never reaches a client.

use std::error::Error as StdError;

pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong, from the caller's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed or invalid input (400).
    Invalid,
    /// No permission target grants the caller this (403).
    Forbidden,
    /// The thing does not exist (404).
    NotFound,
    /// The request conflicts with the current state (409).
    Conflict,
    /// A staged upload does not match what was declared (412).
    PreconditionFailed,
    /// The declared size exceeds what the store accepts (413).
    TooLarge,
    /// AWS throttled us; retrying later will help (503).
    Throttled,
    /// AWS failed or answered something unexpected (502).
    Upstream,
    /// A bug in this service: a malformed row, a request it built wrongly,
    /// an impossible state (500, logged in full).
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid artifact name: {0}")]
    InvalidArtifactName(String),
    #[error("invalid alias name: {0}")]
    InvalidAliasName(String),
    #[error("invalid version: {0}")]
    InvalidVersion(String),
    #[error("invalid weight: {0}")]
    InvalidWeight(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("artifact {name:?} not found")]
    ArtifactNotFound { name: String },
    #[error("version {version} of artifact {name:?} not found")]
    VersionNotFound { name: String, version: String },
    #[error("alias {alias:?} of artifact {name:?} not found")]
    AliasNotFound { name: String, alias: String },
    #[error(
        "upload {upload_id:?} of artifact {name:?} not found (never uploaded, expired, or superseded)"
    )]
    UploadNotFound { name: String, upload_id: String },
    #[error(
        "upload {upload_id:?} of artifact {name:?} was committed already and LATEST has changed since; start a new upload"
    )]
    UploadSuperseded { name: String, upload_id: String },
    #[error("artifact {name:?} is being purged; retry once the purge has finished")]
    ArtifactBeingPurged { name: String },
    #[error(
        "version {version} of artifact {name:?} is the target of alias(es) {aliases}; move or delete them first"
    )]
    VersionInUse {
        name: String,
        version: String,
        aliases: String,
    },
    #[error("rollout {id:?} of alias {alias:?} of artifact {name:?} not found")]
    RolloutNotFound {
        name: String,
        alias: String,
        id: String,
    },
    #[error(
        "alias {alias:?} of artifact {name:?} is being rolled out by rollout {id:?}; abort or promote it, or send cancel_rollout: true to cancel it with this change"
    )]
    RolloutInProgress {
        name: String,
        alias: String,
        id: String,
    },
    #[error("{0}")]
    RolloutConflict(String),
    #[error(
        "version {version} of artifact {name:?} is archived: it cannot become an alias's target (set its status to active first)"
    )]
    VersionArchived { name: String, version: String },
    #[error("{0}")]
    ConcurrentModification(String),
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("alias {alias:?} of artifact {name:?} {detail}")]
    AliasModified {
        name: String,
        alias: String,
        detail: String,
    },
    /// The permission targets changed since the revision in `If-Match`.
    #[error("{0}")]
    AccessModified(String),
    #[error("{0}")]
    TargetGone(String),
    #[error("{0}")]
    NothingToRollBack(String),
    #[error("upload verification failed: {0}")]
    UploadMismatch(String),
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("AWS throttled {operation}; retry later")]
    Throttled {
        operation: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("AWS {operation} failed")]
    UpstreamError {
        operation: &'static str,
        #[source]
        source: BoxError,
    },
    /// The answer an earlier run of the same request gave, replayed (a
    /// retried one-request pipeline answers as its first attempt did).
    #[error("{message}")]
    Replayed {
        code: &'static str,
        kind: ErrorKind,
        message: String,
    },
    /// Our own bug, never the caller's or AWS's; the detail goes to the log only.
    #[error("internal error in {context}")]
    Internal {
        context: &'static str,
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidArtifactName(_) => "InvalidArtifactName",
            Self::InvalidAliasName(_) => "InvalidAliasName",
            Self::InvalidVersion(_) => "InvalidVersion",
            Self::InvalidWeight(_) => "InvalidWeight",
            Self::InvalidRequest(_) => "InvalidRequest",
            Self::ArtifactNotFound { .. } => "ArtifactNotFound",
            Self::VersionNotFound { .. } => "VersionNotFound",
            Self::AliasNotFound { .. } => "AliasNotFound",
            Self::UploadNotFound { .. } => "UploadNotFound",
            Self::UploadSuperseded { .. } => "UploadSuperseded",
            Self::ArtifactBeingPurged { .. } => "ArtifactBeingPurged",
            Self::VersionInUse { .. } => "VersionInUse",
            Self::RolloutNotFound { .. } => "RolloutNotFound",
            Self::RolloutInProgress { .. } => "RolloutInProgress",
            Self::RolloutConflict(_) => "RolloutConflict",
            Self::VersionArchived { .. } => "VersionArchived",
            Self::ConcurrentModification(_) => "ConcurrentModification",
            Self::AccessDenied(_) => "AccessDenied",
            Self::AliasModified { .. } => "AliasModified",
            Self::AccessModified(_) => "AccessModified",
            Self::TargetGone(_) => "TargetGone",
            Self::NothingToRollBack(_) => "NothingToRollBack",
            Self::UploadMismatch(_) => "UploadMismatch",
            Self::TooLarge(_) => "TooLarge",
            Self::Throttled { .. } => "Throttled",
            Self::UpstreamError { .. } => "UpstreamError",
            Self::Internal { .. } => "Internal",
            Self::Replayed { code, .. } => code,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidArtifactName(_)
            | Self::InvalidAliasName(_)
            | Self::InvalidVersion(_)
            | Self::InvalidWeight(_)
            | Self::InvalidRequest(_) => ErrorKind::Invalid,
            Self::ArtifactNotFound { .. }
            | Self::VersionNotFound { .. }
            | Self::AliasNotFound { .. }
            | Self::UploadNotFound { .. }
            | Self::RolloutNotFound { .. }
            | Self::NothingToRollBack(_) => ErrorKind::NotFound,
            Self::VersionInUse { .. }
            | Self::RolloutInProgress { .. }
            | Self::RolloutConflict(_)
            | Self::VersionArchived { .. }
            | Self::ConcurrentModification(_)
            | Self::TargetGone(_)
            | Self::UploadSuperseded { .. }
            | Self::ArtifactBeingPurged { .. } => ErrorKind::Conflict,
            Self::UploadMismatch(_) | Self::AliasModified { .. } | Self::AccessModified(_) => {
                ErrorKind::PreconditionFailed
            }
            Self::AccessDenied(_) => ErrorKind::Forbidden,
            Self::TooLarge(_) => ErrorKind::TooLarge,
            Self::Throttled { .. } => ErrorKind::Throttled,
            Self::UpstreamError { .. } => ErrorKind::Upstream,
            Self::Internal { .. } => ErrorKind::Internal,
            Self::Replayed { kind, .. } => *kind,
        }
    }

    /// An answer stored by [`Self::to_stored`], as an error again.
    pub fn from_stored(stored: &serde_json::Value) -> Option<Self> {
        let code = stored.get("code")?.as_str()?;
        let kind = match stored.get("kind")?.as_str()? {
            "Invalid" => ErrorKind::Invalid,
            "Forbidden" => ErrorKind::Forbidden,
            "NotFound" => ErrorKind::NotFound,
            "Conflict" => ErrorKind::Conflict,
            "PreconditionFailed" => ErrorKind::PreconditionFailed,
            "TooLarge" => ErrorKind::TooLarge,
            _ => return None,
        };
        let code = STORABLE_CODES.iter().find(|c| **c == code)?;
        Some(Self::Replayed {
            code,
            kind,
            message: stored.get("message")?.as_str()?.to_owned(),
        })
    }

    /// The caller's error as stored for a replay; `None` for a transient
    /// one (throttled, upstream, internal, or writers that kept colliding:
    /// its message says "retry"), which a retry must try again.
    pub fn to_stored(&self) -> Option<serde_json::Value> {
        if self.is_transient() {
            return None;
        }
        let kind = format!("{:?}", self.kind());
        Some(serde_json::json!({"code": self.code(), "kind": kind, "message": self.to_string()}))
    }

    /// Whether a retry may well succeed where this failed: throttling, an
    /// upstream failure, a bug, or writers that kept colliding.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::ConcurrentModification(_))
            || matches!(
                self.kind(),
                ErrorKind::Throttled | ErrorKind::Upstream | ErrorKind::Internal
            )
    }

    /// A bug of ours (see [`ErrorKind::Internal`]).
    pub fn internal(context: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Internal {
            context,
            source: source.into(),
        }
    }

    pub fn version_not_found(name: &impl ToString, version: impl ToString) -> Self {
        Self::VersionNotFound {
            name: name.to_string(),
            version: version.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The codes of the errors a stored answer may carry (the caller's errors).
const STORABLE_CODES: &[&str] = &[
    "InvalidArtifactName",
    "InvalidAliasName",
    "InvalidVersion",
    "InvalidWeight",
    "InvalidRequest",
    "ArtifactNotFound",
    "VersionNotFound",
    "AliasNotFound",
    "UploadNotFound",
    "UploadSuperseded",
    "ArtifactBeingPurged",
    "VersionInUse",
    "RolloutNotFound",
    "RolloutInProgress",
    "RolloutConflict",
    "VersionArchived",
    "ConcurrentModification",
    "AccessDenied",
    "AliasModified",
    "AccessModified",
    "TargetGone",
    "NothingToRollBack",
    "UploadMismatch",
    "TooLarge",
    // Only ever `Replayed` (a retry meeting what its first attempt did):
    // stored and replayed as such, not as a ConcurrentModification.
    "AlreadyApplied",
    "UploadVerifying",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant, built once (a new variant must be added here).
    pub(crate) fn every_variant() -> Vec<Error> {
        let s = String::new;
        vec![
            Error::InvalidArtifactName(s()),
            Error::InvalidAliasName(s()),
            Error::InvalidVersion(s()),
            Error::InvalidWeight(s()),
            Error::InvalidRequest(s()),
            Error::ArtifactNotFound { name: s() },
            Error::VersionNotFound {
                name: s(),
                version: s(),
            },
            Error::AliasNotFound {
                name: s(),
                alias: s(),
            },
            Error::UploadNotFound {
                name: s(),
                upload_id: s(),
            },
            Error::VersionInUse {
                name: s(),
                version: s(),
                aliases: s(),
            },
            Error::RolloutNotFound {
                name: s(),
                alias: s(),
                id: s(),
            },
            Error::RolloutInProgress {
                name: s(),
                alias: s(),
                id: s(),
            },
            Error::RolloutConflict(s()),
            Error::VersionArchived {
                name: s(),
                version: s(),
            },
            Error::ConcurrentModification(s()),
            Error::AccessDenied(s()),
            Error::AliasModified {
                name: s(),
                alias: s(),
                detail: s(),
            },
            Error::AccessModified(s()),
            Error::TargetGone(s()),
            Error::NothingToRollBack(s()),
            Error::UploadMismatch(s()),
            Error::TooLarge(s()),
            Error::Throttled {
                operation: "x",
                source: "x".into(),
            },
            Error::UpstreamError {
                operation: "x",
                source: "x".into(),
            },
            Error::internal("x", "x"),
        ]
    }

    #[test]
    fn each_variant_is_named_as_its_code() {
        for error in every_variant() {
            let debug = format!("{error:?}");
            let variant = debug
                .split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap_or_default();
            assert_eq!(variant, error.code(), "variant and code disagree");
        }
    }

    #[test]
    fn every_callers_error_replays_as_itself_and_transient_ones_are_not_stored() {
        for error in every_variant() {
            match error.to_stored() {
                Some(stored) => {
                    let replayed = Error::from_stored(&stored).expect("a stored error replays");
                    assert_eq!(replayed.code(), error.code());
                    assert_eq!(replayed.kind(), error.kind());
                    assert_eq!(replayed.to_string(), error.to_string());
                }
                None => assert!(
                    matches!(
                        error.kind(),
                        ErrorKind::Throttled | ErrorKind::Upstream | ErrorKind::Internal
                    ) || matches!(error, Error::ConcurrentModification(_)),
                    "{error:?}"
                ),
            }
        }
        assert!(
            Error::from_stored(
                &serde_json::json!({"code": "Nope", "kind": "Conflict", "message": ""})
            )
            .is_none()
        );
        // Replays of what a first attempt did replay as themselves (the
        // edge audit found them replayed as "failed earlier" conflicts).
        for code in ["AlreadyApplied", "UploadVerifying"] {
            let error = Error::Replayed {
                code,
                kind: ErrorKind::Conflict,
                message: "as the first did".into(),
            };
            let replayed = error
                .to_stored()
                .and_then(|stored| Error::from_stored(&stored));
            assert_eq!(replayed.map(|e| e.code()), Some(code));
        }
        // Writers that kept colliding: a retry runs again, not a replay of
        // "retry" forever.
        assert!(
            Error::ConcurrentModification("kept conflicting; retry".into())
                .to_stored()
                .is_none()
        );
    }
}
