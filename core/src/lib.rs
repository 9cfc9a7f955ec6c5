//! The core layer: what the artifact repository is, without how it is
//! stored. No AWS SDK, no Lambda, no I/O: every module here is tested
//! without an emulator.
//!
//! - [`names`]: validated artifact names, alias names, versions, digests, weights.
//! - [`error`]: the one error type, with stable codes and kinds.
//! - [`model`]: what operations take and return (the JSON shapes of the API).
//! - [`config`]: settings from the environment, checked at start.
//! - [`limits`]: what a caller may declare; the metadata keys the service reserves.
//! - [`rollout`]: rollout steps, presets, holds and states.
//! - [`access`]: permission targets and their evaluation.
//! - [`query`]: search expressions, parsed once at the edge.
//! - The rules, decisions as pure functions over what was read:
//!   [`alias_rules`] (what an alias change does), [`blob_rules`] (what a
//!   stored object proves, whether a blob may be reclaimed),
//!   [`retention_rules`] (which versions a pass deletes), [`publish_rules`]
//!   (the number a publish takes; what it does with an adoption under way).

pub mod access;
pub mod alias_rules;
pub mod blob_rules;
pub mod config;
pub mod error;
pub mod hash_state;
pub mod limits;
pub mod mirror_rules;
pub mod model;
pub mod names;
pub mod publish_rules;
pub mod query;
pub mod retention_rules;
pub mod rollout;

pub use config::{Config, ConfigError};
pub use error::{Error, ErrorKind, Result};
pub use names::{AliasName, ArtifactName, Sha256, Version, Weight};
