//! What a publish does, as pure decisions over what it read: the number it
//! takes given LATEST, and what it does with a background adoption of the
//! library's LATEST that an earlier publish recorded.

use crate::limits::MIN_PART_SIZE;
use crate::model::UploadState;

/// LATEST as a publish read it: what the decision looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latest<'a> {
    /// LATEST is a tombstone (the artifact was purged).
    pub deleted: bool,
    /// The upload whose commit wrote LATEST.
    pub upload_id: Option<&'a str>,
    /// The counter: the highest version number taken (the library's rows
    /// carry none).
    pub last_version: Option<u32>,
    /// LATEST's bytes.
    pub sha256: &'a str,
    /// The bytes last published (the library's rows carry no marker).
    pub published_sha256: Option<&'a str>,
}

/// What a publish does with LATEST as read.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Take this number (the counter + 1).
    Number(u32),
    /// LATEST unchanged since it was published as `last_version`.
    Unchanged,
    /// LATEST has no counter yet (written by the Python library).
    CounterMissing,
    /// LATEST has no publish marker (written by the Python library).
    MarkerMissing,
    /// LATEST is a tombstone: the artifact is purged.
    NotFound,
    /// LATEST is no longer the commit of the upload asked for.
    Superseded,
}

/// When a publish takes a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Only when LATEST changed since it was last published.
    IfChanged,
    /// Always (`force`).
    Force,
    /// When LATEST still holds these bytes and carries no marker yet.
    FirstMarker(String),
}

/// The number a publish takes, or why it takes none; `upload` is the
/// upload whose LATEST a pipeline publishes (any LATEST when `None`).
pub fn decide(latest: &Latest<'_>, mode: &Mode, upload: Option<&str>) -> Decision {
    if latest.deleted {
        return Decision::NotFound;
    }
    if upload.is_some_and(|u| latest.upload_id != Some(u)) {
        return Decision::Superseded;
    }
    let Some(last) = latest.last_version else {
        return Decision::CounterMissing;
    };
    let next = Decision::Number(last.saturating_add(1));
    let published = latest.published_sha256;
    match mode {
        Mode::Force => next,
        Mode::IfChanged => match published {
            None => Decision::MarkerMissing,
            Some(p) if p == latest.sha256 => Decision::Unchanged,
            Some(_) => next,
        },
        Mode::FirstMarker(seen) => match published {
            // Checked against the newest version: publish these bytes.
            None if *seen == latest.sha256 => next,
            // LATEST changed since: judge it again.
            None => Decision::MarkerMissing,
            // A concurrent publish set the marker first.
            Some(p) if p == latest.sha256 => Decision::Unchanged,
            Some(_) => next,
        },
    }
}

/// What a publish does with the adoption LATEST records.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Being verified: answer with it.
    Wait,
    /// Pending (its publish was cut short): copy and commit it again.
    Resume,
    /// Over (committed, failed, superseded) or about to expire: start anew.
    Replace,
}

/// A pending adoption left this long before its expiry is replaced, not
/// resumed: its commit must land before the upload expires.
pub const RESUME_MARGIN_SECS: i64 = 300;

/// What to do with an adoption's upload in `state`, expiring at
/// `expires_at` (Unix seconds), at `now` (Unix seconds).
pub fn adoption_step(state: UploadState, expires_at: i64, now: i64) -> Step {
    match state {
        UploadState::Verifying => Step::Wait,
        UploadState::Pending if expires_at > now + RESUME_MARGIN_SECS => Step::Resume,
        _ => Step::Replace,
    }
}

/// Parts of a background adoption copied at once.
pub const ADOPT_PARALLEL_PARTS: usize = 16;

/// Parts of a background adoption: the object cut into as many parts as
/// are copied at once (one round of copies), each at least S3's minimum
/// and a whole number of MiB.
pub fn adopt_part_size(size: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let even = size.div_ceil(ADOPT_PARALLEL_PARTS as u64).div_ceil(MIB) * MIB;
    even.max(MIN_PART_SIZE)
}

/// What a library object of LATEST says of its bytes, as its HeadObject
/// read it: its `artifact_sha256`, whether the mirror wrote it, its
/// content type and user metadata (the reserved keys already left out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LibraryDescription {
    pub sha256: Option<String>,
    pub mirrored: bool,
    pub content_type: Option<String>,
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// The content type and user metadata an adoption of a library LATEST
/// holding `row_sha256` takes from `object` onto the row: only from the
/// library's own object of those bytes (not another put between its S3 PUT
/// and its row PUT, nor a copy of ours), and only what an upload may
/// declare (the library allows more: its metadata, kept on the row, would
/// break the publish's transaction or the mirror's copy); else nothing, or
/// the content type alone.
pub fn adopted_description(
    object: &LibraryDescription,
    row_sha256: &str,
) -> Option<(Option<String>, std::collections::BTreeMap<String, String>)> {
    if object.mirrored || object.sha256.as_deref() != Some(row_sha256) {
        return None;
    }
    let declared = |content_type: Option<String>, metadata| crate::model::UploadRequest {
        sha256: row_sha256.to_owned(),
        size: 0,
        content_type,
        metadata,
        part_size: None,
        key: None,
    };
    let whole = declared(object.content_type.clone(), object.metadata.clone());
    if whole.validate().is_ok() {
        return Some((object.content_type.clone(), object.metadata.clone()));
    }
    let typed = declared(object.content_type.clone(), Default::default());
    typed
        .validate()
        .is_ok()
        .then(|| (object.content_type.clone(), Default::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latest<'a>(last: Option<u32>, sha: &'a str, published: Option<&'a str>) -> Latest<'a> {
        Latest {
            deleted: false,
            upload_id: Some("u1"),
            last_version: last,
            sha256: sha,
            published_sha256: published,
        }
    }

    #[test]
    fn an_adoption_in_parts_is_cut_into_one_round_of_copies() {
        const MIB: u64 = 1024 * 1024;
        for (size, part_size, parts) in [
            // S3's minimum part: small objects take few parts.
            (1, 5 * MIB, 1),
            (12 * MIB, 5 * MIB, 3),
            (80 * MIB, 5 * MIB, 16),
            // Above 80 MiB: 16 parts, rounded up to whole MiB.
            (81 * MIB, 6 * MIB, 14),
            (1024 * MIB, 64 * MIB, 16),
            (5 * 1024 * MIB, 320 * MIB, 16),
            (5 * 1024 * MIB + 1, 321 * MIB, 16),
        ] {
            let got = adopt_part_size(size);
            assert_eq!(got, part_size, "{size}");
            assert_eq!(size.div_ceil(got), parts, "{size}");
            assert!(crate::limits::plan(size, Some(got)).is_ok(), "{size}");
        }
    }

    #[test]
    fn a_retried_publish_waits_for_resumes_or_replaces_the_adoption_recorded() {
        let now = 1_700_000_000;
        for (state, expires_in, step) in [
            (UploadState::Verifying, 3600, Step::Wait),
            // Verifying is not bound by the upload's expiry.
            (UploadState::Verifying, -10, Step::Wait),
            (UploadState::Pending, 3600, Step::Resume),
            // Too close to expiry to commit in time: a new one.
            (UploadState::Pending, RESUME_MARGIN_SECS - 1, Step::Replace),
            (UploadState::Pending, -10, Step::Replace),
            (UploadState::Committed, 3600, Step::Replace),
            (UploadState::Failed, 3600, Step::Replace),
            (UploadState::Superseded, 3600, Step::Replace),
        ] {
            assert_eq!(
                adoption_step(state, now + expires_in, now),
                step,
                "{state:?} expiring in {expires_in} s"
            );
        }
    }

    #[test]
    fn a_publish_decides_from_latest_as_read() {
        let first_marker = Mode::FirstMarker("a".into());
        let cases: [(Latest<'_>, &Mode, Option<&str>, Decision); 11] = [
            (
                latest(Some(3), "a", Some("b")),
                &Mode::IfChanged,
                None,
                Decision::Number(4),
            ),
            (
                latest(Some(3), "a", Some("a")),
                &Mode::IfChanged,
                None,
                Decision::Unchanged,
            ),
            (
                latest(Some(3), "a", Some("a")),
                &Mode::Force,
                None,
                Decision::Number(4),
            ),
            (
                latest(Some(0), "a", Some("a")),
                &Mode::Force,
                None,
                Decision::Number(1),
            ),
            (
                latest(None, "a", None),
                &Mode::Force,
                None,
                Decision::CounterMissing,
            ),
            (
                latest(Some(3), "a", None),
                &Mode::IfChanged,
                None,
                Decision::MarkerMissing,
            ),
            (
                latest(Some(3), "a", None),
                &first_marker,
                None,
                Decision::Number(4),
            ),
            (
                latest(Some(3), "c", None),
                &first_marker,
                None,
                Decision::MarkerMissing,
            ),
            (
                latest(Some(3), "a", Some("a")),
                &first_marker,
                None,
                Decision::Unchanged,
            ),
            (
                latest(Some(3), "a", Some("a")),
                &Mode::Force,
                Some("u1"),
                Decision::Number(4),
            ),
            (
                latest(Some(3), "a", Some("a")),
                &Mode::Force,
                Some("u2"),
                Decision::Superseded,
            ),
        ];
        for (row, mode, upload, want) in cases {
            assert_eq!(decide(&row, mode, upload), want, "{row:?} {upload:?}");
        }
        let purged = Latest {
            deleted: true,
            ..latest(Some(3), "a", Some("a"))
        };
        assert_eq!(decide(&purged, &Mode::Force, None), Decision::NotFound);
    }

    #[test]
    fn what_an_adoption_takes_from_the_librarys_object_table() {
        let sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let meta = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let object = |sha256: Option<&str>, mirrored: bool, metadata| LibraryDescription {
            sha256: sha256.map(str::to_owned),
            mirrored,
            content_type: Some("application/json".into()),
            metadata,
        };
        let json = Some("application/json".to_owned());
        let owner = meta(&[("owner", "py")]);
        for (what, read, want) in [
            (
                "the library's object of the row's bytes",
                object(Some(sha), false, owner.clone()),
                Some((json.clone(), owner.clone())),
            ),
            (
                "another put's object",
                object(Some(&"0".repeat(64)), false, owner.clone()),
                None,
            ),
            ("no digest on it", object(None, false, owner.clone()), None),
            (
                "a copy of ours",
                object(Some(sha), true, owner.clone()),
                None,
            ),
            (
                "metadata an upload may not declare: the content type alone",
                object(Some(sha), false, meta(&[("Build.Id", "7")])),
                Some((json.clone(), Default::default())),
            ),
        ] {
            assert_eq!(adopted_description(&read, sha), want, "{what}");
        }
        let too_long = LibraryDescription {
            content_type: Some("x".repeat(300)),
            ..object(Some(sha), false, owner)
        };
        assert_eq!(adopted_description(&too_long, sha), None);
    }
}
