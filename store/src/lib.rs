//! The storage layer (SPEC 2): what the rows and objects look like and how
//! one request to DynamoDB or S3 is built and its failure read.
//!
//! Row families, each with its own requests (`impl Table` blocks, and
//! the transaction members as free functions):
//!
//! - [`alias_items`]: alias rows, their history entries, the members of an
//!   alias change's transaction (the row as read, the version rows'
//!   references).
//! - [`version_items`]: version rows' own requests (the publish's members,
//!   LATEST's counter and adoption marks, the version listing, the cleanup
//!   of stale alias references).
//! - [`upload_items`]: upload rows (reads, state changes, a verification's
//!   checkpoints) and the members of the transactions that start and
//!   commit an upload.
//! - [`claim`]: a pipeline's claim on its upload row.
//! - [`rollout_items`]: rollout rows, the registry of held aliases, the
//!   listing of an alias's rollouts.
//! - [`index_items`]: search's index reads and cursor, the version status
//!   writes.
//! - [`catalog_items`]: the listing of artifact names (the registry's
//!   page, the library's S3 "directories").
//! - [`permission_items`]: the permission targets' document and its
//!   history.
//! - [`purge_items`]: a purge's fence, the look at whether an artifact
//!   exists (the projected registry read), partition deletes.
//! - [`retention_items`]: retention's bookkeeping and lease, condemned
//!   blobs, a reclaim's stamps on version rows.
//! - [`bootstrap_items`]: the bucket and the table made ready (index,
//!   stream, TTL).
//! - [`change_events`]: the table's stream records as the events of SPEC
//!   10.2 (which change is which event, its detail), and a record's keys.
//!
//! S3 objects:
//!
//! - [`blob_objects`]: the S3 requests of uploads at a blob key (head,
//!   presigned PUT and parts, the multipart upload's life, ranged GETs).
//! - [`content_objects`]: the presigned GET of a version's bytes.
//! - [`adopt_objects`]: a publish's adoption of the library's LATEST (its
//!   object looked at, copied to the blob key whole or by parts).
//! - [`mirror_objects`]: the mirror's requests at a library key (its
//!   versions listed, headed and deleted, the conditional copy of a blob).
//! - [`objects`]: S3 objects as the rules see them, object versions.
//! - [`purge_objects`]: a purge's and a sweep's S3 requests (object
//!   versions and delete markers by pages, their heads and batch deletes,
//!   the current objects under a prefix by pages).
//!
//! What every family uses:
//!
//! - [`clients`]: the S3 client and the table, built once from the SDK
//!   configuration, their calls counted.
//! - [`layout`]: S3 keys, DynamoDB keys, attribute names and the formats of
//!   `versioned` 1.0.1.
//! - [`rows`]: item codecs, each row's `to_item` beside its `from_item`.
//! - [`table`]: the table's client and name, and the requests several
//!   families make (the consistent gets, a partition whole or by pages,
//!   the soft delete).
//! - [`coalesce`]: gets a request issues together sent as one
//!   BatchGetItem.
//! - [`tx`]: labelled transactions (a refusal is reported by label) and the
//!   one classifier of cancellation reasons.
//! - [`sdk_error`]: an SDK failure → the core error; the one
//!   condition-failed test.
//! - [`paging`]: page sizes, the one cursor codec, where a page ends.
//! - [`retry`]: how a request that lost a race is tried again.
//! - [`calls`]: counts of AWS requests per client.
//!
//! It depends on the core layer only; nothing here knows of use cases.

pub mod adopt_objects;
pub mod alias_items;
pub mod blob_objects;
pub mod bootstrap_items;
pub mod calls;
pub mod catalog_items;
pub mod change_events;
pub mod claim;
pub mod clients;
pub mod coalesce;
pub mod content_objects;
pub mod index_items;
pub mod layout;
pub mod mirror_objects;
pub mod objects;
pub mod paging;
pub mod permission_items;
pub mod purge_items;
pub mod purge_objects;
pub mod retention_items;
pub mod retry;
pub mod rollout_items;
pub mod rows;
pub mod sdk_error;
pub mod table;
pub mod tx;
pub mod upload_items;
pub mod version_items;

// The core's modules under the names the store's files use.
use artifact_core::{blob_rules, config, error, limits, model, names, publish_rules, rollout};
