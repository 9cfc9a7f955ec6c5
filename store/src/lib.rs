//! The storage layer (SPEC 2): what the rows and objects look like and how
//! one request to DynamoDB or S3 is built and its failure read.
//!
//! - [`layout`]: S3 keys, DynamoDB keys, attribute names and the formats of
//!   `versioned` 1.0.1.
//! - [`rows`]: item codecs, each row's `to_item` beside its `from_item`.
//! - [`tx`]: labelled transactions (a refusal is reported by label) and the
//!   one classifier of cancellation reasons.
//! - [`sdk_error`]: an SDK failure → the core error; the one
//!   condition-failed test.
//! - [`objects`]: S3 objects as the rules see them, object versions.
//! - [`table`]: the requests several use cases make (the consistent gets,
//!   a partition whole or by pages, the soft delete).
//! - [`paging`]: page sizes, the one cursor codec, where a page ends.
//! - [`permission_items`]: the permission targets' document and its
//!   history.
//! - [`catalog_items`]: the listing of artifact names (the registry's
//!   page, the library's S3 "directories").
//! - [`claim`]: a pipeline's claim on its upload row.
//! - [`index_items`]: search's index reads and cursor, the version status
//!   writes.
//! - [`registry_items`]: the presigned GET of a version's bytes.
//! - [`retry`]: how a request that lost a race is tried again.
//! - [`calls`]: counts of AWS requests per client.
//! - [`bootstrap_items`]: the bucket and the table made ready (index,
//!   stream, TTL).
//!
//! It depends on the core layer only; nothing here knows of use cases.

pub mod bootstrap_items;
pub mod calls;
pub mod catalog_items;
pub mod claim;
pub mod index_items;
pub mod layout;
pub mod objects;
pub mod paging;
pub mod permission_items;
pub mod registry_items;
pub mod retry;
pub mod rows;
pub mod sdk_error;
pub mod table;
pub mod tx;

// The core's modules under the names the store's files use.
use artifact_core::{blob_rules, config, error, limits, model, names, publish_rules, rollout};
