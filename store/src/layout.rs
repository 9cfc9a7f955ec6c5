//! Where things live: S3 keys, DynamoDB keys, attribute names and the
//! `update_at` format, byte for byte as `versioned` 1.0.1 writes them (SPEC 3).

use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::config::Config;
use crate::names::{ArtifactName, Version};

/// DynamoDB attribute names. The first group is the library's; the rest are
/// ours, which the library ignores (PynamoDB drops unknown attributes).
pub mod attr {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    pub const SHA256: &str = "sha256";
    pub const IS_DELETED: &str = "is_deleted";
    pub const UPDATE_AT: &str = "update_at";
    pub const VERSION: &str = "version";
    pub const SECONDARY_VERSION: &str = "secondary_version";
    pub const SECONDARY_VERSION_WEIGHT: &str = "secondary_version_weight";

    pub const SIZE: &str = "size";
    pub const CONTENT_TYPE: &str = "content_type";
    pub const METADATA: &str = "metadata";
    /// S3 object version that holds exactly the bytes of this row (SPEC 7.3).
    pub const S3_VERSION_ID: &str = "s3_version_id";
    /// On version rows: the aliases whose primary or secondary is this version.
    pub const ALIASES: &str = "aliases";
    pub const DELETED_AT: &str = "deleted_at";
    /// On soft-deleted rows whose S3 bytes retention has deleted (tombstones).
    pub const RECLAIMED_AT: &str = "reclaimed_at";
    /// On LATEST: highest version number ever handed out (SPEC 7.1, 7.2).
    pub const LAST_VERSION: &str = "last_version";
    /// On LATEST: its sha256 when it was last published (SPEC 7.6).
    pub const PUBLISHED_SHA256: &str = "published_sha256";
    /// On LATEST: the upload last committed to it.
    pub const UPLOAD_ID: &str = "upload_id";
    /// On alias rows: optimistic-lock counter, and the targets' sha256 and S3
    /// version ids so that resolve needs a single read.
    pub const REVISION: &str = "revision";
    pub const VERSION_SHA256: &str = "version_sha256";
    pub const VERSION_S3_VERSION_ID: &str = "version_s3_version_id";
    pub const SECONDARY_SHA256: &str = "secondary_version_sha256";
    pub const SECONDARY_S3_VERSION_ID: &str = "secondary_version_s3_version_id";
    /// On alias rows: [`BYTES`] of each target.
    pub const VERSION_BYTES: &str = "version_bytes";
    pub const SECONDARY_BYTES: &str = "secondary_version_bytes";
    /// On LATEST: a random id given when the row is created (see `VersionRow::epoch`).
    pub const EPOCH: &str = "epoch";
    /// On pending-upload rows.
    pub const STATE: &str = "state";
    /// Epoch seconds: the table's TTL attribute (pending uploads). TTL only
    /// garbage-collects; expiry itself is enforced by conditions on it.
    pub const EXPIRES_AT: &str = "expires_at";
    /// On multipart upload rows: when it was committed (handed to
    /// verification); on LATEST: when a commit last recorded an upload on
    /// it without changing its bytes. In the `update_at` format.
    pub const COMMITTED_AT: &str = "committed_at";
    /// On multipart upload rows: LATEST as the commit that handed it to
    /// verification read it (`blob_rules::latest_seen`).
    pub const LATEST_SEEN: &str = "latest_seen";
    /// On pending multipart upload rows: when (unix seconds) a commit last
    /// started completing its parts (`blob_rules::Writer::CutOff`).
    pub const COMPLETING_AT: &str = "completing_at";
    /// On verifying upload rows: the object verified is the one this
    /// upload's own CompleteMultipartUpload created.
    pub const BLOB_OWNED: &str = "blob_owned";
    /// On multipart upload rows committed with a pipeline: the pipeline,
    /// and what it did once verified.
    pub const PIPELINE: &str = "pipeline";
    pub const PIPELINE_RESULT: &str = "pipeline_result";
    /// On upload rows whose commit published in its own transaction: the
    /// version number it took.
    pub const PIPELINE_PUBLISHED: &str = "pipeline_published";
    /// On upload rows whose pipeline runs: the run's token and when it took
    /// it (unix seconds). One run at a time; a claim older than a lease is
    /// taken over, and a run that follows any earlier one is idempotent.
    pub const PIPELINE_CLAIM: &str = "pipeline_claim";
    pub const PIPELINE_CLAIMED_AT: &str = "pipeline_claimed_at";
    /// On multipart upload rows: S3's upload id and the cut of the bytes.
    pub const S3_UPLOAD_ID: &str = "s3_upload_id";
    pub const PART_SIZE: &str = "part_size";
    pub const PART_COUNT: &str = "part_count";
    /// On verifying upload rows: the object version being verified, and
    /// the verification's checkpoint (bytes hashed, SHA-256 state).
    pub const BLOB_VERSION: &str = "blob_version_id";
    pub const VERIFIED_BYTES: &str = "verified_bytes";
    pub const HASH_STATE: &str = "hash_state";
    /// On failed upload rows.
    pub const REASON: &str = "reason";
    pub const CHANGED: &str = "changed";
    /// On purge fences.
    pub const PURGE_ID: &str = "purge_id";
    /// On condemned items: the `deleted_at` of the blob's previous deletion
    /// while a new one is under way (0: none), restored when it is lifted.
    pub const PRIOR_DELETED_AT: &str = "prior_deleted_at";
    pub const STARTED_AT: &str = "started_at";
    /// On a purge fence: the purge holding it failed and hands it to the
    /// next purge (writers stay out until it lapses).
    pub const HANDED_OVER: &str = "handed_over";
    /// On artifact rows: who committed or published it.
    pub const CREATED_BY: &str = "created_by";
    /// On artifact rows: where the bytes are. [`BYTES_BLOB`](super::BYTES_BLOB)
    /// means the blob store (`{prefix}.blobs/{name}/{sha256}`); absent means
    /// the library's key (rows the library or a previous release wrote).
    pub const BYTES: &str = "bytes";
    /// On a LATEST the library wrote, too large to adopt within a publish:
    /// the upload that copies its bytes into the blob store (a retried
    /// publish answers with it instead of starting another copy).
    pub const ADOPTING: &str = "adopting";
    /// On soft-deleted rows: the request that deleted it (a retried delete
    /// whose first answer was lost recognises its own write).
    pub const DELETED_BY_REQUEST: &str = "deleted_by_request";
    /// On version rows: the publish attempt that wrote the row (a write
    /// whose answer was lost recognises itself by it). LATEST rows of
    /// earlier releases may still carry one; nothing reads it there.
    pub const RESERVE_TOKEN: &str = "reserve_token";
    /// On numbered version rows: `deprecated` or `archived` (absent:
    /// active), and why (SPEC 10.3).
    pub const STATUS: &str = "status";
    pub const STATUS_MESSAGE: &str = "status_message";
    /// On alias rows: the status of a target when not active (copied from
    /// the version row; a status change refreshes it), so resolve can warn.
    pub const VERSION_STATUS: &str = "version_status";
    pub const SECONDARY_STATUS: &str = "secondary_version_status";
    /// On alias rows and history entries: the request that wrote them.
    pub const REQUEST_TOKEN: &str = "request_token";
    /// On history entries.
    pub const ALIAS: &str = "alias";
    pub const ACTOR: &str = "actor";
    pub const ACTION: &str = "action";
    pub const MESSAGE: &str = "message";
    pub const PREVIOUS: &str = "previous";
    /// On the permission targets' item and its history entries: the JSON
    /// document.
    pub const DOCUMENT: &str = "document";
    /// On alias rows: the rollout that holds the alias (SPEC 10.1).
    pub const ROLLOUT: &str = "rollout";
    /// On rollout items (and `ALIAS`, `VERSION`, `STATE`, `REVISION`,
    /// `MESSAGE`, `REASON`, `UPDATE_AT`, `STARTED_AT`).
    pub const ROLLOUT_ID: &str = "rollout_id";
    pub const FROM: &str = "from";
    pub const STEPS: &str = "steps";
    pub const STEP: &str = "step";
    pub const NEXT_STEP_AT: &str = "next_step_at";
    pub const ALARMS: &str = "alarms";
    pub const STARTED_BY: &str = "started_by";
    /// On an artifact's event log item (see [`super::events_pk`]): the
    /// events of the change last written, as JSON, and how many changes
    /// were written.
    pub const EVENTS: &str = "events";
    pub const SEQ: &str = "seq";
    /// On rows whose change is in the event log: the id of the event it
    /// logged (the stream record of the row then gives no event of its own).
    pub const LOGGED_EVENT: &str = "logged_event";
}

/// The value of [`attr::BYTES`] on rows whose bytes are in the blob store.
pub const BYTES_BLOB: &str = "blob";

pub use crate::limits::{META_ARTIFACT_NAME, META_ARTIFACT_SHA256};

/// The storage layout of one configured store.
#[derive(Debug, Clone)]
pub struct Layout {
    pub bucket: String,
    pub table: String,
    prefix: String,
    suffix: String,
}

impl Layout {
    pub fn new(config: &Config) -> Self {
        Self {
            bucket: config.bucket.clone(),
            table: config.table.clone(),
            prefix: config.prefix.clone(),
            suffix: config.suffix.clone(),
        }
    }

    /// `{prefix}/` — every artifact lives below it.
    pub fn store_prefix(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// `{prefix}/{name}/` — every object of one artifact.
    pub fn artifact_prefix(&self, name: &ArtifactName) -> String {
        format!("{}/{}/", self.prefix, name)
    }

    /// The sort key (`LATEST`, `000042`) an object key of the library's
    /// layout under `artifact_prefix` names, or `None` for another key.
    pub fn sort_key_of<'k>(&self, artifact_prefix: &str, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(artifact_prefix)?
            .strip_suffix(self.suffix.as_str())
    }

    /// `{prefix}/{name}/{LATEST|000042}{suffix}`.
    pub fn object_key(&self, name: &ArtifactName, version: Version) -> String {
        format!(
            "{}/{}/{}{}",
            self.prefix,
            name,
            version.sort_key(),
            self.suffix
        )
    }

    pub fn s3uri(&self, name: &ArtifactName, version: Version) -> String {
        format!("s3://{}/{}", self.bucket, self.object_key(name, version))
    }

    /// `{prefix}.blobs/{name}/`: the blob store of one artifact. Beside the
    /// store, never below `{prefix}/`, so the library never lists it.
    pub fn blob_prefix(&self, name: &ArtifactName) -> String {
        format!("{}{}/", self.blob_root(), name)
    }

    /// `{prefix}.blobs/`: every artifact's blob store, one "directory" each.
    pub fn blob_root(&self) -> String {
        format!("{}.blobs/", self.prefix)
    }

    /// `{prefix}.blobs/{name}/{sha256}`: the bytes whose SHA-256 is `sha256`
    /// (lowercase hex).
    pub fn blob_key(&self, name: &ArtifactName, sha256: &str) -> String {
        format!("{}{}", self.blob_prefix(name), sha256)
    }
}

/// The `x-amz-copy-source` of an object (version): "The value must be
/// URL-encoded" (<https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html>),
/// so a key holding `+`, `%`, `?`, `#` or a space copies the right object.
pub fn copy_source(bucket: &str, key: &str, version_id: Option<&str>) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    // RFC 3986 unreserved characters stay; `/` separates key segments.
    const KEY: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b'/');
    const VALUE: &AsciiSet = &KEY.add(b'/');
    let mut source = format!("{bucket}/{}", utf8_percent_encode(key, KEY));
    if let Some(v) = version_id {
        source.push_str(&format!("?versionId={}", utf8_percent_encode(v, VALUE)));
    }
    source
}

/// The alias partition of an artifact: `__{name}-alias`.
pub fn alias_pk(name: &ArtifactName) -> String {
    format!("__{name}-alias")
}

/// The pending uploads of an artifact: `__{name}-upload`, sort key the upload id.
pub fn upload_pk(name: &ArtifactName) -> String {
    format!("__{name}-upload")
}

/// Blobs being deleted by reclaim: `__{name}-blob`, sort key the digest.
/// While such an item exists, no upload of those bytes starts or commits.
pub fn condemned_pk(name: &ArtifactName) -> String {
    format!("__{name}-blob")
}

/// Blobs whose SHA-256 the service computed itself (multipart uploads,
/// which S3 records only a composite checksum of): `__{name}-verified`,
/// sort key the digest, with the object version and size verified. Written
/// with the commit that verified them, deleted before reclaim or purge
/// deletes the blob; start upload and commit take such a blob as holding
/// its digest's bytes.
pub fn verified_pk(name: &ArtifactName) -> String {
    format!("__{name}-verified")
}

/// The status changes of an artifact's versions (SPEC 10.3):
/// `__{name}-status`, sort key `{version:06}/{update_at}`.
pub fn status_pk(name: &ArtifactName) -> String {
    format!("__{name}-status")
}

/// The search index of versions by one metadata entry, across artifacts
/// (SPEC 10.3): `__meta/{key}={value}`, sort key `{name}/{version:06}`,
/// written in the publish's transaction. Names cannot contain `/`, so this
/// partition is no artifact's. Entries of versions deleted since are
/// dropped when read (the rows are read back).
pub fn meta_index_pk(key: &str, value: &str) -> String {
    format!("__meta/{key}={value}")
}

/// The global secondary index of rows by `sha256` (hash) and `pk` (range):
/// search by content across artifacts, library-written rows included.
pub const SHA256_INDEX: &str = "by-sha256";

/// The purge fence of an artifact: `__{name}-purge` / `fence`. While it
/// stands, no upload starts (so nothing new can be committed).
pub fn fence_pk(name: &ArtifactName) -> String {
    format!("__{name}-purge")
}
pub const FENCE_SK: &str = "fence";

/// Every artifact this service committed: `__artifacts`, sort key `{name}/`
/// (the S3 listing's order of the library's "directories", so the two
/// listings merge in one order; names never start with `_`, so the
/// partition never clashes with an artifact's).
pub const REGISTRY_PK: &str = "__artifacts";

/// The permission targets (SPEC 10.4): one item, `__access` / `targets`,
/// holding the whole document and its revision; each change an entry of
/// `__access/history` (sort key: the revision, 12 digits). Names cannot
/// contain `/`: `__access-history` was also the alias history of an
/// artifact named `access`, which a purge of that name deleted.
pub const ACCESS_PK: &str = "__access";
pub const ACCESS_SK: &str = "targets";
pub const ACCESS_HISTORY_PK: &str = "__access/history";

/// The scheduled job's bookkeeping (its cursor and lease):
/// `__scheduled/retention` / `cursor`, no artifact's (`__scheduled-purge`
/// was the purge fence partition of an artifact named `scheduled`).
pub const RETENTION_PK: &str = "__scheduled/retention";

/// Every partition key that is no artifact's: none may be one an
/// artifact's partition functions give for any valid name.
pub const FIXED_PKS: [&str; 5] = [
    REGISTRY_PK,
    ACCESS_PK,
    ACCESS_HISTORY_PK,
    ROLLOUTS_PK,
    RETENTION_PK,
];

/// The alias history partition of an artifact: `__{name}-history`.
pub fn history_pk(name: &ArtifactName) -> String {
    format!("__{name}-history")
}

/// A history entry's sort key: `{alias}/{revision:012}`, so one alias's
/// entries sort by revision (alias names never contain `/`).
pub fn history_sk(alias: &str, revision: u64) -> String {
    format!("{}{revision:012}", history_sk_prefix(alias))
}

pub fn history_sk_prefix(alias: &str) -> String {
    format!("{alias}/")
}

/// An artifact's event log (SPEC 10.2): `__{name}-events` / `log`, one
/// item that every transaction writing an event-producing change updates
/// with that change's events. The table's stream orders the records of one
/// item as its writes, so the events read from this item's records are in
/// the order of the artifact's changes, whichever partitions the changes
/// touched (the records of different items, in different partitions, may
/// reach their reader in any order).
pub fn events_pk(name: &ArtifactName) -> String {
    format!("__{name}-events")
}

/// The sort key of the event log item.
pub const EVENT_LOG_SK: &str = "log";

/// The rollouts of an artifact's aliases: `__{name}-rollout`, sort key
/// `{alias}/{id}` (ids sort by start time).
pub fn rollout_pk(name: &ArtifactName) -> String {
    format!("__{name}-rollout")
}

/// Every rollout that holds an alias, for the driver: `__rollouts`, sort
/// key `{name}/{alias}`, written and deleted in the transactions that start
/// and end a rollout (a leftover of a purged artifact is dropped by the
/// driver).
pub const ROLLOUTS_PK: &str = "__rollouts";

/// PynamoDB's `UTCDateTimeAttribute` format: `2025-06-27T17:00:07.000000+0000`.
const PYNAMODB_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]+0000");

/// Formats a time the way PynamoDB stores `update_at`.
pub fn format_update_at(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(PYNAMODB_FORMAT)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Parses a PynamoDB `update_at` (also tolerates RFC 3339).
pub fn parse_update_at(s: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(s, PYNAMODB_FORMAT)
        .map(|t| t.assume_utc())
        .ok()
        .or_else(|| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
}

/// Now, truncated to microseconds (what the stored format can hold), so a
/// value read back equals the value written.
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}

/// Milliseconds since the epoch: the number attributes of times.
pub fn unix_millis(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos() / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn layout(suffix: &str) -> Layout {
        Layout {
            bucket: "bkt".into(),
            table: "tbl".into(),
            prefix: "versioned-artifacts".into(),
            suffix: suffix.into(),
        }
    }

    #[test]
    fn the_longest_metadata_entry_an_upload_may_declare_is_an_index_key_dynamodb_takes() {
        use crate::limits::metadata_limits::MAX_ENTRY_BYTES;
        let key = "k".repeat(10);
        let value = "v".repeat(MAX_ENTRY_BYTES - key.len());
        assert_eq!(meta_index_pk(&key, &value).len(), 1024);
    }

    #[test]
    fn an_object_key_names_its_sort_key() {
        let name: ArtifactName = "my-app".parse().unwrap();
        let l = layout(".zip");
        let prefix = l.artifact_prefix(&name);
        for (key, sort_key) in [
            ("versioned-artifacts/my-app/LATEST.zip", Some("LATEST")),
            ("versioned-artifacts/my-app/000003.zip", Some("000003")),
            // Another artifact's, another suffix, no suffix.
            ("versioned-artifacts/my-app2/000003.zip", None),
            ("versioned-artifacts/my-app/000003.tar", None),
            ("versioned-artifacts/my-app/000003", None),
        ] {
            assert_eq!(l.sort_key_of(&prefix, key), sort_key, "{key}");
        }
        for version in [Version::Latest, Version::Number(42)] {
            let key = l.object_key(&name, version);
            assert_eq!(
                l.sort_key_of(&prefix, &key),
                Some(version.sort_key().as_str())
            );
        }
    }

    #[test]
    fn object_keys_match_the_library() {
        let name: ArtifactName = "my-app".parse().unwrap();
        let l = layout(".zip");
        assert_eq!(
            l.object_key(&name, Version::Latest),
            "versioned-artifacts/my-app/LATEST.zip"
        );
        assert_eq!(
            l.object_key(&name, Version::Number(3)),
            "versioned-artifacts/my-app/000003.zip"
        );
        assert_eq!(
            l.s3uri(&name, Version::Number(3)),
            "s3://bkt/versioned-artifacts/my-app/000003.zip"
        );
        assert_eq!(alias_pk(&name), "__my-app-alias");
        assert!(!l.blob_key(&name, "ab").starts_with(&l.store_prefix()));
    }

    /// A fixed partition an artifact's partition functions could produce
    /// would be read, written and purged as that artifact's: `f(n) == C`
    /// needs `n` to be `C` without `f`'s prefix and suffix, so checking that
    /// one candidate per (function, key) covers every name.
    #[test]
    fn no_artifact_partition_is_a_fixed_one() {
        type Partition = fn(&ArtifactName) -> String;
        let per_artifact: [(&str, Partition); 9] = [
            ("-alias", alias_pk),
            ("-events", events_pk),
            ("-upload", upload_pk),
            ("-blob", condemned_pk),
            ("-verified", verified_pk),
            ("-status", status_pk),
            ("-purge", fence_pk),
            ("-history", history_pk),
            ("-rollout", rollout_pk),
        ];
        let sample: ArtifactName = "x".parse().unwrap();
        for (suffix, f) in per_artifact {
            assert_eq!(f(&sample), format!("__x{suffix}"), "{suffix}");
            for fixed in FIXED_PKS {
                let candidate = fixed
                    .strip_prefix("__")
                    .and_then(|rest| rest.strip_suffix(suffix))
                    .and_then(|n| n.parse::<ArtifactName>().ok());
                if let Some(n) = candidate {
                    assert_ne!(f(&n), fixed, "the artifact {n} would own {fixed}");
                }
            }
        }
        for fixed in FIXED_PKS {
            assert!(fixed.starts_with("__"), "{fixed}: names never start with _");
            assert!(!fixed.starts_with("__meta/"), "{fixed}");
        }
    }

    #[test]
    fn copy_sources_are_url_encoded() {
        assert_eq!(
            copy_source("b", "p/a b+c%d?e#f.zip", Some("v+1/2")),
            "b/p/a%20b%2Bc%25d%3Fe%23f.zip?versionId=v%2B1%2F2"
        );
        assert_eq!(
            copy_source("b", "versioned-artifacts/my-app/LATEST", None),
            "b/versioned-artifacts/my-app/LATEST"
        );
    }

    #[test]
    fn update_at_uses_the_pynamodb_format_and_round_trips() {
        let t = datetime!(2025-06-27 17:00:07.123456 UTC);
        let s = format_update_at(t);
        assert_eq!(s, "2025-06-27T17:00:07.123456+0000");
        assert_eq!(parse_update_at(&s), Some(t));
        assert_eq!(
            parse_update_at("2025-06-27T17:00:07.000000+0000"),
            Some(datetime!(2025-06-27 17:00:07 UTC))
        );
    }
}
