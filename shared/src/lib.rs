//! The artifact repository crate: everything the Lambda functions and the
//! local server share.
//!
//! - [`names`]: validated artifact names, alias names, versions, weights.
//! - [`layout`]: S3 keys, DynamoDB keys and formats of `versioned` 1.0.1.
//! - [`config`]: settings from the environment, checked at start.
//! - [`error`]: the one error type, with stable codes.
//! - [`model`]: what operations return (the JSON shapes of the API).
//! - [`repository`]: the [`Repository`] over S3 + DynamoDB.
//! - [`calls`]: counts of AWS requests per client.
//! - [`mirror`]: the stream-driven mirror of the library's layout.

pub mod access;
pub mod alias_rules;
pub mod api;
pub mod blob_rules;
pub mod calls;
pub mod config;
pub mod error;
pub mod events;
pub mod http;
pub mod layout;
pub mod mirror;
pub mod model;
pub mod names;
pub mod query;
pub mod repository;
pub mod retention_rules;
pub mod rollout;
pub mod rollout_driver;
mod rows;
pub mod scheduled;
pub mod verifier;

pub use config::{Config, ConfigError};
pub use error::{Error, ErrorKind, Result};
pub use names::{AliasName, ArtifactName, Sha256, Version, Weight};
pub use repository::{Repository, Verifier, VerifyStep};
