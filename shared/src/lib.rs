//! The artifact repository crate: everything the Lambda functions and the
//! local server share.
//!
//! - the core layer (`artifact-core`, re-exported): [`names`], [`error`],
//!   [`model`], [`config`], [`limits`], [`rollout`], [`access`] and the
//!   rules ([`alias_rules`], [`blob_rules`], [`publish_rules`], [`retention_rules`]).
//! - the store layer (`artifact-store`, re-exported): [`layout`] (S3 keys,
//!   DynamoDB keys and formats of `versioned` 1.0.1), [`calls`] (counts of
//!   AWS requests per client); its codecs and transactions stay below.
//! - the service layer (`artifact-service`, re-exported as [`repository`]):
//!   the [`Repository`] over S3 + DynamoDB, one module per use case.
//! - the edge, here: [`api`] (the route table and handlers), [`http`]
//!   (parsing, error → status), and the handlers of the background
//!   functions: [`scheduled`], [`verifier`], [`mirror`], [`rollout_driver`],
//!   [`events`].

pub mod api;
pub mod events;
pub mod http;
pub mod mirror;
pub mod rollout_driver;
pub mod scheduled;
pub mod verifier;

// The store and service layers, re-exported: `shared::layout`,
// `shared::repository::Repository`, … name the same items everywhere.
pub use artifact_service as repository;
pub use artifact_store::{calls, coalesce, layout};
use artifact_store::{rows, sdk_error};

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
