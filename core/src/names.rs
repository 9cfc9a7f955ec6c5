//! Validated domain values: artifact names, alias names, versions, weights.
//!
//! Each type can only be built through its parser, so holding one proves the
//! value is valid (SPEC 7.7). Parsing errors carry the offending input.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// Highest version number the 6-digit sort key can hold.
pub const MAX_VERSION: u32 = 999_999;

/// An artifact name: 1–128 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
///
/// Starting with a letter or digit rules out `.`, `..` and the `__…-alias`
/// partitions, so an artifact can never collide with alias rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtifactName(String);

impl ArtifactName {
    pub const MAX_LEN: usize = 128;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ArtifactName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let reason = if s.is_empty() {
            Some("must not be empty")
        } else if s.len() > Self::MAX_LEN {
            Some("must be at most 128 characters")
        } else if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            Some("may only contain A-Z a-z 0-9 . _ -")
        } else if !s.as_bytes()[0].is_ascii_alphanumeric() {
            Some("must start with a letter or digit")
        } else if s.contains("..") {
            Some("must not contain \"..\"")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidArtifactName(format!(
                "{:?} {reason}",
                truncated(s)
            ))),
            None => Ok(Self(s.to_owned())),
        }
    }
}

/// An alias name.
///
/// Two rules (SPEC 4.4): aliases this service *creates* follow the strict
/// rule ([`AliasName::check_new`]: 1–64 of `A-Z a-z 0-9 _ -`, starting with a
/// letter, not `LATEST`; starting with a letter refuses all-digit names, which
/// would read as versions). The Python library allows more (it bans only
/// `-`: `v1.0`, `1prod`, `a.b`), and what it wrote must stay usable, so
/// parsing ([`FromStr`]) accepts any name that is a valid URL path segment:
/// such aliases can be read, moved and deleted, never created here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AliasName(String);

impl AliasName {
    pub const MAX_LEN: usize = 64;
    /// Longest name addressed through the API: a DynamoDB sort key holds
    /// 1 KiB, and the history's keys add `/` and a 12-digit revision.
    pub const MAX_STORED_LEN: usize = 1000;

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A sort key of an alias partition as it is, whatever wrote it: rows
    /// must always be readable, even under names no URL can address.
    pub fn stored(sk: &str) -> Self {
        Self(sk.to_owned())
    }

    /// The rule for aliases this service creates.
    pub fn check_new(&self) -> Result<(), Error> {
        let s = self.0.as_str();
        let reason = if s.len() > Self::MAX_LEN {
            Some("must be at most 64 characters")
        } else if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
        {
            Some("may only contain A-Z a-z 0-9 _ -")
        } else if !s.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) {
            Some("must start with a letter")
        } else if s == Version::LATEST {
            Some("is reserved")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidAliasName(format!(
                "{:?} {reason} (new aliases; existing ones written by the library keep their names)",
                truncated(s)
            ))),
            None => Ok(()),
        }
    }
}

impl FromStr for AliasName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let reason = if s.is_empty() {
            Some("must not be empty")
        } else if s.len() > Self::MAX_STORED_LEN {
            Some("must be at most 1000 bytes")
        } else if s.contains('/') || s == "." || s == ".." {
            Some("must be a single URL path segment")
        } else if s.chars().any(char::is_control) {
            Some("must not contain control characters")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidAliasName(format!(
                "{:?} {reason}",
                truncated(s)
            ))),
            None => Ok(Self(s.to_owned())),
        }
    }
}

/// `LATEST` (the mutable head) or an immutable version `1..=999999`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    Latest,
    Number(u32),
}

impl Version {
    pub const LATEST: &'static str = "LATEST";

    /// A numbered version, if `n` is in range.
    pub fn number(n: u32) -> Result<Self, Error> {
        if (1..=MAX_VERSION).contains(&n) {
            Ok(Self::Number(n))
        } else {
            Err(Error::InvalidVersion(format!("{n} is outside 1..=999999")))
        }
    }

    /// The DynamoDB sort key: `LATEST` or the number zero-padded to 6 digits.
    pub fn sort_key(self) -> String {
        match self {
            Self::Latest => Self::LATEST.to_owned(),
            Self::Number(n) => format!("{n:06}"),
        }
    }

    /// Reads a sort key (`LATEST`, `000042`) or a JSON version (`42`).
    pub fn from_sort_key(sk: &str) -> Result<Self, Error> {
        sk.parse()
    }

    pub fn is_latest(self) -> bool {
        self == Self::Latest
    }
}

impl FromStr for Version {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s == Self::LATEST {
            return Ok(Self::Latest);
        }
        let invalid = || {
            Error::InvalidVersion(format!(
                "{:?} is not LATEST or a number in 1..=999999",
                truncated(s)
            ))
        };
        if s.is_empty() || s.len() > 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        match s.parse::<u32>() {
            Ok(n) if (1..=MAX_VERSION).contains(&n) => Ok(Self::Number(n)),
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest => f.write_str(Self::LATEST),
            Self::Number(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    /// Versions are JSON strings (`"LATEST"`, `"3"`); numbers are refused so
    /// that one spelling exists on the wire.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Percent of traffic routed to an alias's secondary version: an integer 0..=99.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Weight(u8);

impl Weight {
    pub fn new(w: i64) -> Result<Self, Error> {
        match u8::try_from(w) {
            Ok(w) if w <= 99 => Ok(Self(w)),
            _ => Err(Error::InvalidWeight(format!("{w} is outside 0..=99"))),
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Weight {
    /// Only JSON integers: `1.5` and `"10"` are refused.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = i64::deserialize(d)?;
        Weight::new(w).map_err(serde::de::Error::custom)
    }
}

/// A SHA-256 digest as 64 lowercase hexadecimal characters (uppercase input
/// is accepted and lowercased): the identity of an artifact's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(String);

impl Sha256 {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 32 bytes of the digest.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        // Parsing guarantees 64 hex digits.
        for (i, pair) in self.0.as_bytes().chunks(2).enumerate() {
            out[i] = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
        }
        out
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => 0,
    }
}

impl FromStr for Sha256 {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(Error::InvalidRequest(format!(
                "sha256 {:?} is not 64 hexadecimal characters",
                truncated(s)
            )))
        }
    }
}

/// An upload id: 32 random lowercase hex characters, then the declared
/// SHA-256 (64 more), so a commit knows the blob key before it reads a row
/// and checks the blob and the rows in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadId(String);

impl UploadId {
    /// The id of a new upload of `sha256` (64 lowercase hex characters):
    /// `nonce` is 32 random lowercase hex characters (a simple UUID v4,
    /// drawn by the service). Anything else is refused as a parse is.
    pub fn with_nonce(nonce: &str, sha256: &str) -> Result<Self, Error> {
        if nonce.len() != 32 {
            return Err(Error::internal(
                "upload id",
                "the nonce is not 32 characters",
            ));
        }
        format!("{nonce}{sha256}").parse()
    }

    /// The declared SHA-256 (lowercase hex).
    pub fn sha256(&self) -> &str {
        &self.0[32..]
    }

    /// The random half: what the objects this upload writes carry as
    /// `META_UPLOAD_ID` (`limits`).
    pub fn nonce(&self) -> &str {
        &self.0[..32]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The error for an upload of `name` that is not there (or no longer
    /// pending).
    pub fn not_found(&self, name: &ArtifactName) -> Error {
        Error::UploadNotFound {
            name: name.to_string(),
            upload_id: self.0.clone(),
        }
    }
}

impl std::str::FromStr for UploadId {
    type Err = Error;

    fn from_str(id: &str) -> Result<Self, Error> {
        let valid = id.len() == 96
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if valid {
            Ok(Self(id.to_owned()))
        } else {
            Err(Error::InvalidRequest(
                "upload_id must be the 96 lowercase hexadecimal characters start upload returned"
                    .into(),
            ))
        }
    }
}

macro_rules! string_serde {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
string_serde!(ArtifactName);
string_serde!(AliasName);
string_serde!(Sha256);

/// Keeps error messages short when the input is huge.
fn truncated(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_are_a_nonce_then_the_declared_digest_and_parse_only_as_issued() {
        let sha = "ab".repeat(32);
        let nonce = "0123456789abcdef0123456789abcdef";
        let id = UploadId::with_nonce(nonce, &sha).unwrap();
        assert!(UploadId::with_nonce(&nonce[1..], &format!("0{sha}")).is_err());
        assert!(UploadId::with_nonce(nonce, &sha.to_uppercase()).is_err());
        assert_eq!((id.nonce(), id.sha256()), (nonce, sha.as_str()));
        assert_eq!(id.as_str().parse::<UploadId>().unwrap(), id);
        for bad in [
            "",
            &id.as_str()[1..],
            &id.as_str().to_uppercase(),
            &format!("{}g", &id.as_str()[1..]),
            &format!("{}0", id.as_str()),
        ] {
            assert!(bad.parse::<UploadId>().is_err(), "{bad:?}");
        }
        let name: ArtifactName = "app".parse().unwrap();
        assert_eq!(id.not_found(&name).code(), "UploadNotFound");
    }

    #[test]
    fn digests_are_64_hex_digits_lowercased() {
        let d: Sha256 = "AB".repeat(32).parse().unwrap();
        assert_eq!(d.as_str(), "ab".repeat(32));
        assert_eq!(d.to_bytes(), [0xab; 32]);
        for bad in ["", "ab", &"g".repeat(64), &"a".repeat(65)] {
            assert!(bad.parse::<Sha256>().is_err(), "{bad}");
        }
    }

    #[test]
    fn artifact_names_follow_the_charset_and_length_rules() {
        for ok in ["a", "A1", "9lives", "my-app_v2.tar.gz", &"x".repeat(128)] {
            assert!(ok.parse::<ArtifactName>().is_ok(), "{ok} should be valid");
        }
        let long = "x".repeat(129);
        for bad in [
            "", ".", "..", "../x", "a/b", "_x", "-x", ".x", "a b", "é", "a\0", &long, "a..b",
            "a..", "a...b",
        ] {
            assert!(
                bad.parse::<ArtifactName>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn new_alias_names_allow_hyphens_and_refuse_digits_latest_and_punctuation() {
        for ok in ["prod", "blue-green", "canary_1", "P", &"a".repeat(64)] {
            let alias: AliasName = ok.parse().unwrap();
            assert!(alias.check_new().is_ok(), "{ok} should be valid");
        }
        let long = "a".repeat(65);
        for bad in [
            "LATEST", "123", "1abc", "a b", "a.b", "_a", "-a", "v1.0", &long,
        ] {
            let alias: AliasName = bad.parse().unwrap();
            assert!(alias.check_new().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn names_the_library_allows_parse_as_existing_aliases() {
        for ok in [
            "v1.0",
            "1prod",
            "a.b",
            "LATEST",
            "a b",
            "caf\u{e9}",
            &"a".repeat(65),
        ] {
            assert!(ok.parse::<AliasName>().is_ok(), "{ok:?} should be readable");
        }
        for bad in ["", "a/b", ".", "..", "a\nb", &"a".repeat(1001)] {
            assert!(
                bad.parse::<AliasName>().is_err(),
                "{bad:?} is no path segment"
            );
        }
    }

    #[test]
    fn versions_parse_latest_and_1_to_999999_only() {
        assert_eq!("LATEST".parse::<Version>().ok(), Some(Version::Latest));
        assert_eq!("42".parse::<Version>().ok(), Some(Version::Number(42)));
        assert_eq!("000042".parse::<Version>().ok(), Some(Version::Number(42)));
        assert_eq!(
            "999999".parse::<Version>().ok(),
            Some(Version::Number(999_999))
        );
        for bad in [
            "", "0", "000000", "-1", "+1", "abc", "1000000", "1.0", "latest", " 1",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn version_sort_keys_are_zero_padded_like_versioned() {
        assert_eq!(Version::Number(1).sort_key(), "000001");
        assert_eq!(Version::Latest.sort_key(), "LATEST");
        assert_eq!(Version::Number(7).to_string(), "7");
    }

    #[test]
    fn weights_are_integers_from_0_to_99() {
        assert!(Weight::new(0).is_ok() && Weight::new(99).is_ok());
        assert!(Weight::new(100).is_err() && Weight::new(-1).is_err());
        assert!(serde_json::from_str::<Weight>("1.5").is_err());
        assert!(serde_json::from_str::<Weight>("\"10\"").is_err());
        assert_eq!(serde_json::from_str::<Weight>("10").ok(), Some(Weight(10)));
    }
}
