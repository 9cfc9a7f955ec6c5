//! The artifact repository crate: everything the Lambda functions and the
//! local server share.
//!
//! - the core layer (`artifact-core`, re-exported): [`names`], [`error`],
//!   [`model`], [`config`], [`limits`], [`rollout`], [`access`] and the
//!   rules ([`alias_rules`], [`blob_rules`], [`publish_rules`], [`retention_rules`]).
//! - [`layout`]: S3 keys, DynamoDB keys and formats of `versioned` 1.0.1.
//! - [`repository`]: the [`Repository`] over S3 + DynamoDB.
//! - [`calls`]: counts of AWS requests per client.
//! - [`mirror`]: the stream-driven mirror of the library's layout.

pub mod api;
pub mod calls;
pub mod events;
pub mod http;
pub mod layout;
pub mod mirror;
pub mod repository;
pub mod rollout_driver;
mod rows;
pub mod scheduled;
mod sdk_error;
pub mod verifier;

// The core layer, re-exported: `shared::names`, `crate::error`, … name
// the same modules everywhere.
pub use artifact_core::{
    access, alias_rules, blob_rules, config, error, limits, model, names, publish_rules, query,
    retention_rules, rollout,
};

pub use config::{Config, ConfigError};
pub use error::{Error, ErrorKind, Result};
pub use names::{AliasName, ArtifactName, Sha256, Version, Weight};
pub use repository::{Repository, Verifier, VerifyStep};
