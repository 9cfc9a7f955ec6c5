//! Configuration from the environment (SPEC 5), validated once at start.

use std::time::Duration;

/// Settings shared by every function and the local server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub bucket: String,
    pub table: String,
    pub prefix: String,
    pub suffix: String,
    pub presign_expires: Duration,
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
        let prefix = get("S3_PREFIX").unwrap_or_else(|| Self::DEFAULT_PREFIX.into());
        if prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains("//") {
            return Err(ConfigError(format!(
                "S3_PREFIX {prefix:?} must not start or end with '/' nor contain '//'"
            )));
        }
        // The suffix is not trimmed away when it is only whitespace: keep it verbatim.
        let suffix = lookup("ARTIFACT_SUFFIX").unwrap_or_default();
        if suffix.contains('/') {
            return Err(ConfigError(format!(
                "ARTIFACT_SUFFIX {suffix:?} must not contain '/'"
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
        Ok(Self {
            bucket,
            table,
            prefix,
            suffix,
            presign_expires: Duration::from_secs(presign_secs),
        })
    }
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
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
}
