//! Configuration from the environment (SPEC 5), validated once at start.

use std::time::Duration;

use crate::model::RetentionPolicy;

/// Settings shared by every function and the local server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub bucket: String,
    pub table: String,
    pub prefix: String,
    pub suffix: String,
    pub presign_expires: Duration,
    /// How long a pending upload can be committed (`UPLOAD_EXPIRES_SECS`).
    pub upload_expires: Duration,
    /// Retention defaults of the route and the schedule (`RETENTION_*`).
    pub retention: RetentionSchedule,
    /// `SEED_LAYOUT_MIRROR`: whether the stream-driven mirror keeps the
    /// library's layout equal to the rows (SPEC 3.2). Off: its handler does
    /// nothing, and each byte is stored once.
    pub seed_layout_mirror: bool,
    /// Bytes one `verify-upload` invocation hashes at most before it
    /// checkpoints and chains (`VERIFY_BUDGET_BYTES`; its deadline stops it
    /// earlier). Unlimited by default.
    pub verify_budget_bytes: u64,
    /// `ADOPT_COPY_MAX_BYTES`: a LATEST the library wrote of at most this
    /// size is adopted into the blob store by the publish itself (one
    /// CopyObject, its SHA-256 computed by S3); a larger one is copied in
    /// parallel parts and verified by `verify-upload`, the publish answered
    /// 202 (SPEC 3.1). 256 MiB by default.
    pub adopt_copy_max_bytes: u64,
    /// `VERIFY_FUNCTION_NAME`: the `verify-upload` function to invoke after
    /// a multipart commit; unset (the local server): verified in process.
    pub verify_function: Option<String>,
    /// `ROLLOUT_ALARM_PREFIX`: rollouts may watch only alarms whose names
    /// start with it (the driver's IAM reads only those). Empty: any.
    pub rollout_alarm_prefix: String,
    /// `EVENT_BUS_NAME`: the EventBridge bus that events of changes go to
    /// (SPEC 10.2); unset: the account's default bus.
    pub event_bus: Option<String>,
    /// `ACCOUNT_ID`: the deployment's AWS account. Callers of this account
    /// carry their IAM role's or user's tags into permission targets that
    /// name `tag:KEY=VALUE`; unset, no caller carries any.
    pub account_id: Option<String>,
}

/// A setting that is missing or malformed; the message names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

impl Config {
    pub const DEFAULT_TABLE: &'static str = "versioned-artifacts";
    pub const DEFAULT_PREFIX: &'static str = "versioned-artifacts";
    pub const DEFAULT_PRESIGN_SECS: u64 = 900;
    /// SigV4 presigned URLs live at most 7 days.
    pub const MAX_PRESIGN_SECS: u64 = 604_800;
    pub const DEFAULT_UPLOAD_SECS: u64 = 86_400;
    /// A week: S3's lifecycle rule aborts abandoned multipart uploads in days.
    pub const MAX_UPLOAD_SECS: u64 = 604_800;
    /// What one CopyObject does well inside publish's 15 s timeout.
    pub const DEFAULT_ADOPT_COPY_MAX_BYTES: u64 = 256 * 1024 * 1024;

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process env.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let bucket = get("BUCKET_NAME").ok_or_else(|| {
            ConfigError("BUCKET_NAME is required (the S3 bucket of the store)".into())
        })?;
        if !valid_bucket(&bucket) {
            return Err(ConfigError(format!(
                "BUCKET_NAME {bucket:?} is not a valid S3 bucket name (3-63 of a-z 0-9 . -)"
            )));
        }
        let table = get("TABLE_NAME").unwrap_or_else(|| Self::DEFAULT_TABLE.into());
        if !(3..=255).contains(&table.len())
            || !table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(ConfigError(format!(
                "TABLE_NAME {table:?} is not a valid DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)"
            )));
        }
        // Prefix and suffix are taken verbatim (no trimming): they are part of
        // every key, and an empty prefix must not silently become the default.
        let prefix = lookup("S3_PREFIX").unwrap_or_else(|| Self::DEFAULT_PREFIX.into());
        if !valid_prefix(&prefix) {
            return Err(ConfigError(format!(
                "S3_PREFIX {prefix:?} must be {PREFIX_RULE}"
            )));
        }
        let suffix = lookup("ARTIFACT_SUFFIX").unwrap_or_default();
        if !valid_suffix(&suffix) {
            return Err(ConfigError(format!(
                "ARTIFACT_SUFFIX {suffix:?} must be {SUFFIX_RULE}"
            )));
        }
        let presign_secs = match get("PRESIGN_EXPIRES_SECS") {
            None => Self::DEFAULT_PRESIGN_SECS,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (1..=Self::MAX_PRESIGN_SECS).contains(&n) => n,
                _ => {
                    return Err(ConfigError(format!(
                        "PRESIGN_EXPIRES_SECS {v:?} must be an integer from 1 to 604800"
                    )));
                }
            },
        };
        let upload_secs = match get("UPLOAD_EXPIRES_SECS") {
            None => Self::DEFAULT_UPLOAD_SECS,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (1..=Self::MAX_UPLOAD_SECS).contains(&n) => n,
                _ => {
                    return Err(ConfigError(format!(
                        "UPLOAD_EXPIRES_SECS {v:?} must be an integer from 1 to 604800"
                    )));
                }
            },
        };
        let retention = RetentionSchedule::from_lookup(&lookup)?;
        let seed_layout_mirror = match get("SEED_LAYOUT_MIRROR").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => {
                return Err(ConfigError(format!(
                    "SEED_LAYOUT_MIRROR {other:?} must be on or off"
                )));
            }
        };
        let verify_budget_bytes = match get("VERIFY_BUDGET_BYTES") {
            None => u64::MAX,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Err(ConfigError(format!(
                        "VERIFY_BUDGET_BYTES {v:?} must be a positive integer"
                    )));
                }
            },
        };
        let adopt_copy_max_bytes = match get("ADOPT_COPY_MAX_BYTES") {
            None => Self::DEFAULT_ADOPT_COPY_MAX_BYTES,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Err(ConfigError(format!(
                        "ADOPT_COPY_MAX_BYTES {v:?} must be a positive integer"
                    )));
                }
            },
        };
        let account_id = get("ACCOUNT_ID");
        if let Some(a) = &account_id
            && (a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ConfigError(format!(
                "ACCOUNT_ID must be an AWS account id of 12 digits, not {a:?}"
            )));
        }
        Ok(Self {
            bucket,
            table,
            prefix,
            suffix,
            presign_expires: Duration::from_secs(presign_secs),
            upload_expires: Duration::from_secs(upload_secs),
            retention,
            seed_layout_mirror,
            verify_budget_bytes,
            adopt_copy_max_bytes,
            verify_function: get("VERIFY_FUNCTION_NAME"),
            rollout_alarm_prefix: get("ROLLOUT_ALARM_PREFIX").unwrap_or_default(),
            event_bus: get("EVENT_BUS_NAME").filter(|b| b != "default"),
            account_id,
        })
    }
}

/// The `S3Prefix` and `ArtifactSuffix` rules of `template.yaml` (its
/// `AllowedPattern`s); a contract test checks that both agree on examples.
const PREFIX_RULE: &str = "1-512 characters: segments of A-Z a-z 0-9 ! - _ . ' ( ) \
    separated by single '/', no leading or trailing '/', no segment of only dots";
const SUFFIX_RULE: &str = "0-32 characters of A-Z a-z 0-9 . _ -";
const MAX_PREFIX_LEN: usize = 512;
const MAX_SUFFIX_LEN: usize = 32;

/// S3's "safe" key characters, which need no escaping in URLs, XML or policy
/// ARNs, except `*`: IAM resource ARNs and `StringLike` conditions read it as
/// a wildcard, so a prefix holding one would widen every grant on the store.
/// A segment of only dots (`.`, `..`) would be folded away by URL path
/// normalisation, so it is refused.
fn valid_prefix(prefix: &str) -> bool {
    (1..=MAX_PREFIX_LEN).contains(&prefix.len())
        && prefix.split('/').all(|segment| {
            segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!-_.'()".contains(&b))
                && segment.bytes().any(|b| b != b'.')
        })
}

/// A file-name extension such as `.zip` or `.tar.gz`.
fn valid_suffix(suffix: &str) -> bool {
    suffix.len() <= MAX_SUFFIX_LEN
        && suffix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

/// The deployment's retention parameters (the SAM template's), read into
/// [`crate::Config`] at start: the schedule's policy, and the defaults of
/// `POST /artifacts/{name}/purge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSchedule {
    pub policy: RetentionPolicy,
    /// How long a version stays soft-deleted before its bytes are deleted.
    pub reclaim_grace: Duration,
}

const DAY: u64 = 24 * 60 * 60;

impl RetentionSchedule {
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<Self, ConfigError> {
        let number = |key: &str, default: u64| -> std::result::Result<u64, ConfigError> {
            match lookup(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
            {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n <= 100_000)
                    .ok_or_else(|| {
                        ConfigError(format!("{key} {v:?} must be an integer from 0 to 100000"))
                    }),
            }
        };
        let defaults = RetentionPolicy::default();
        Ok(Self {
            policy: RetentionPolicy {
                keep_last_n: number("RETENTION_KEEP_LAST_N", defaults.keep_last_n.into())? as u32,
                older_than: Duration::from_secs(
                    number(
                        "RETENTION_PURGE_OLDER_THAN_DAYS",
                        defaults.older_than.as_secs() / DAY,
                    )? * DAY,
                ),
            },
            reclaim_grace: Duration::from_secs(number("RETENTION_RECLAIM_GRACE_DAYS", 30)? * DAY),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_apply_when_only_the_bucket_is_set() {
        let c = config(&[("BUCKET_NAME", "my-bucket")]).unwrap();
        assert_eq!(c.table, "versioned-artifacts");
        assert_eq!(c.prefix, "versioned-artifacts");
        assert_eq!(c.suffix, "");
        assert_eq!(c.presign_expires, Duration::from_secs(900));
        assert!(c.seed_layout_mirror, "the mirror is on unless turned off");
    }

    #[test]
    fn the_mirror_is_turned_on_or_off_and_nothing_else() {
        let mirror = |v: &str| config(&[("BUCKET_NAME", "ok-bucket"), ("SEED_LAYOUT_MIRROR", v)]);
        assert!(mirror("on").unwrap().seed_layout_mirror);
        assert!(!mirror("off").unwrap().seed_layout_mirror);
        assert!(!mirror(" off ").unwrap().seed_layout_mirror);
        for bad in ["OFF", "false", "0", "yes"] {
            let err = mirror(bad).unwrap_err().to_string();
            assert!(err.contains("SEED_LAYOUT_MIRROR"), "{err}");
            assert_eq!(err.lines().count(), 1, "one clear line: {err}");
        }
    }

    #[test]
    fn a_bad_or_missing_setting_names_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "BUCKET_NAME"),
            (&[("BUCKET_NAME", "Bad_Bucket")], "BUCKET_NAME"),
            (
                &[("BUCKET_NAME", "ok-bucket"), ("TABLE_NAME", "a b")],
                "TABLE_NAME",
            ),
            (
                &[("BUCKET_NAME", "ok-bucket"), ("S3_PREFIX", "/x")],
                "S3_PREFIX",
            ),
            (
                &[("BUCKET_NAME", "ok-bucket"), ("ARTIFACT_SUFFIX", "a/b")],
                "ARTIFACT_SUFFIX",
            ),
            (
                &[("BUCKET_NAME", "ok-bucket"), ("PRESIGN_EXPIRES_SECS", "0")],
                "PRESIGN_EXPIRES_SECS",
            ),
            (
                &[("BUCKET_NAME", "ok-bucket"), ("PRESIGN_EXPIRES_SECS", "x")],
                "PRESIGN_EXPIRES_SECS",
            ),
        ];
        for (vars, name) in cases {
            let err = config(vars).unwrap_err();
            assert!(err.to_string().contains(name), "{err} should name {name}");
        }
    }

    fn prefix_ok(prefix: &str) -> bool {
        config(&[("BUCKET_NAME", "ok-bucket"), ("S3_PREFIX", prefix)]).is_ok()
    }

    fn suffix_ok(suffix: &str) -> bool {
        config(&[("BUCKET_NAME", "ok-bucket"), ("ARTIFACT_SUFFIX", suffix)]).is_ok()
    }

    #[test]
    fn s3_prefix_takes_segments_of_safe_key_characters_separated_by_single_slashes() {
        let long_segment = "a".repeat(MAX_PREFIX_LEN);
        for good in [
            "versioned-artifacts",
            "a",
            "team/ci/artifacts",
            "A.b_c-d!e'f(g)",
            ".hidden/..x/x..",
            long_segment.as_str(),
        ] {
            assert!(prefix_ok(good), "{good:?} should be accepted");
        }
        let too_long = "a".repeat(MAX_PREFIX_LEN + 1);
        for bad in [
            "",
            "/x",
            "x/",
            "a//b",
            "a/./b",
            "a/..",
            "..",
            "a/...",
            "a*",
            "a?b",
            "a b",
            " a",
            "a\t",
            "a%2f",
            "a+b",
            "a=b",
            "a&b",
            "a$b",
            "a{b}",
            "é",
            too_long.as_str(),
        ] {
            assert!(!prefix_ok(bad), "{bad:?} should be refused");
        }
    }

    #[test]
    fn artifact_suffix_is_a_short_extension_of_safe_characters() {
        for good in ["", ".zip", ".tar.gz", "-x_1", &"z".repeat(MAX_SUFFIX_LEN)] {
            assert!(suffix_ok(good), "{good:?} should be accepted");
        }
        for bad in [
            "a/b",
            " ",
            ".zip ",
            "*",
            "a?",
            "(1)",
            "%20",
            "é",
            &"z".repeat(MAX_SUFFIX_LEN + 1),
        ] {
            assert!(!suffix_ok(bad), "{bad:?} should be refused");
        }
    }
}
