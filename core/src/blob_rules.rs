//! Decisions about the bytes under a blob key, as pure functions over what
//! was read (no AWS types): what a start upload or a commit may take the
//! key to hold, what a multipart commit does when the key is occupied, and
//! when a verification may make its upload LATEST. The I/O around them is
//! in `repository/uploads.rs`, `multipart.rs` and `verification.rs`.
//!
//! The rules (README, "How it stays correct"):
//! - The key holds a digest's bytes only when S3 says so (the whole-object
//!   SHA-256 it checked on a single PUT), or when a verification of the
//!   very object version recorded so (the verified-blob row).
//! - A declaration that contradicts bytes known to be stored is refused
//!   before anything is transferred.
//! - A verification only ever deletes the object version its own upload's
//!   CompleteMultipartUpload created, never another (SPEC 7.15).
//! - A verification commits only over a LATEST older than its own commit.

use crate::error::Error;

/// S3's record of the object under a blob key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub size: u64,
    /// The checksum S3 recorded (base64): the whole object's SHA-256 for a
    /// single PUT, a composite (`…-N`) for a multipart object.
    pub checksum_sha256: Option<String>,
    /// Its version id (`null` without versioning).
    pub version: String,
    /// The upload that wrote it (the nonce in its metadata), if any.
    pub writer: Option<String>,
}

impl StoredObject {
    /// Whether S3 checked this object's whole SHA-256 to be `sha256` (hex).
    pub fn checksum_is(&self, sha256: &str) -> bool {
        use base64::Engine;
        let Ok(digest) = hex::decode(sha256) else {
            return false;
        };
        self.checksum_sha256.as_deref()
            == Some(
                base64::engine::general_purpose::STANDARD
                    .encode(digest)
                    .as_str(),
            )
    }
}

/// A verified-blob row: this object version was hashed by the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBlob {
    pub version: String,
    pub size: u64,
}

/// What the blob key holds, for a declaration of `(sha256, size)`.
#[derive(Debug)]
pub enum Stored {
    /// Nothing.
    Absent,
    /// Exactly the declared bytes.
    Holds,
    /// Bytes known to be `sha256`'s, of another size: the declaration is false.
    Contradicts(Error),
    /// An object nobody has checked yet (a multipart upload completed and
    /// not yet verified, or left by a crash).
    Unverified {
        version: String,
        writer: Option<String>,
    },
}

pub fn stored(
    object: Option<&StoredObject>,
    verified: Option<&VerifiedBlob>,
    sha256: &str,
    size: u64,
) -> Stored {
    let Some(object) = object else {
        return Stored::Absent;
    };
    let known = object.checksum_is(sha256)
        || verified.is_some_and(|v| v.version == object.version && v.size == object.size);
    match (known, object.size == size) {
        (true, true) => Stored::Holds,
        (true, false) => Stored::Contradicts(Error::InvalidRequest(format!(
            "the artifact holds the bytes of sha256 {sha256}: they are {} bytes long, not the \
             {size} declared",
            object.size
        ))),
        (false, _) => Stored::Unverified {
            version: object.version.clone(),
            writer: object.writer.clone(),
        },
    }
}

/// How long a commit's invocation may run, at most (a Lambda's longest
/// timeout, plus a minute): a pending upload whose commit started
/// completing its parts longer ago than this, and never handed them to
/// verification, was cut off in between.
pub const COMMIT_CUT_OFF_SECS: i64 = 16 * 60;

/// The upload that wrote an unverified object, as another upload of the
/// same bytes finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// It may still verify, and so commit or delete, the object: wait.
    Alive,
    /// It never will: its object may be completed over.
    Gone,
    /// Pending, its commit cut off between completing its parts and
    /// handing them to verification (it started completing at `stamp`,
    /// longer ago than [`COMMIT_CUT_OFF_SECS`]): gone once it is recorded
    /// superseded, conditional on that very stamp (a retry of its commit
    /// stamps again, and then it is alive). Waiting for its lifetime to
    /// end blocked every other upload of these bytes for a day (SPEC 7.16).
    CutOff { stamp: i64 },
}

/// Whether the upload that wrote an unverified object (in `state`, its
/// lifetime ending at `expires_at`, its commit having started completing
/// at `completing_at`, `now` in Unix seconds) may still verify it, and so
/// commit or delete it: pending and unexpired (a pending upload commits
/// only then) unless its commit was cut off, or verifying, expired or not
/// (a verification commits whenever it ends; its row goes only by TTL).
/// Taking a verifying writer past its lifetime for gone let another upload
/// complete over the object it was hashing, and its commit then served
/// those other bytes. A pending writer without a stamp (an earlier
/// release's) is alive until it expires.
pub fn writer_state(
    state: crate::model::UploadState,
    expires_at: i64,
    completing_at: Option<i64>,
    now: i64,
) -> Writer {
    use crate::model::UploadState;
    match state {
        UploadState::Pending if expires_at <= now => Writer::Gone,
        UploadState::Pending => match completing_at {
            Some(stamp) if now - stamp > COMMIT_CUT_OFF_SECS => Writer::CutOff { stamp },
            _ => Writer::Alive,
        },
        UploadState::Verifying => Writer::Alive,
        _ => Writer::Gone,
    }
}

/// What a multipart commit does when the blob key already holds an object.
#[derive(Debug)]
pub enum OnOccupied {
    /// The key holds the declared bytes: give the parts up, write the rows.
    CommitRows,
    Refuse(Error),
    /// Verify that object; `owned`: this upload wrote it (so a failed
    /// verification may delete it).
    Verify {
        owned: bool,
    },
    /// Another live upload wrote it and is verifying it: commit again later.
    Wait(Error),
    /// An unverified object nobody will verify (its writer is gone, or
    /// unknown) holds the key, and this upload still has its parts: they
    /// are completed over that object (which no row references: rows only
    /// reference checked bytes) and verified as this upload's own. Giving
    /// the parts up to verify that object instead would fail every later
    /// upload of these bytes for ever when it is garbage.
    CompleteOver,
}

/// `own` is this upload's nonce; `writer_alive` whether the upload that
/// wrote an unverified object may still verify (and delete) it; `has_parts`
/// whether this upload's parts are still in S3.
pub fn on_occupied(stored: Stored, own: &str, writer_alive: bool, has_parts: bool) -> OnOccupied {
    match stored {
        Stored::Holds => OnOccupied::CommitRows,
        Stored::Contradicts(e) => OnOccupied::Refuse(e),
        Stored::Unverified { writer, .. } if writer.as_deref() == Some(own) => {
            OnOccupied::Verify { owned: true }
        }
        Stored::Unverified { .. } if writer_alive => {
            OnOccupied::Wait(Error::ConcurrentModification(
                "another upload of these bytes is being verified; commit again once it has ended \
             (its parts are kept)"
                    .into(),
            ))
        }
        Stored::Unverified { .. } if has_parts => OnOccupied::CompleteOver,
        // Nobody will check it but us; not ours, so never deleted by us.
        Stored::Unverified { .. } | Stored::Absent => OnOccupied::Verify { owned: false },
    }
}

/// What a multipart commit records of LATEST as it read it, when it hands
/// its upload to verification: when LATEST was written, its bytes, and
/// when a commit last recorded an unchanged upload on it (empty parts when
/// there was none). Every commit to LATEST changes one of the three.
pub fn latest_seen(
    update_at: Option<&str>,
    sha256: Option<&str>,
    committed_at: Option<&str>,
) -> String {
    format!(
        "{}|{}|{}",
        update_at.unwrap_or_default(),
        sha256.unwrap_or_default(),
        committed_at.unwrap_or_default()
    )
}

/// Whether `seen` (recorded at a hand-over) is [`latest_seen`] with all
/// three parts, as this release records it (an earlier one recorded when
/// LATEST was written and its bytes only).
pub fn seen_in_full(seen: &str) -> bool {
    seen.matches('|').count() == 2
}

/// LATEST as a verification reads it before committing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatestNow<'a> {
    /// When it was last written, and when a commit last recorded an
    /// unchanged upload on it (`None`: no LATEST, or never).
    pub update_at: Option<&'a str>,
    pub committed_at: Option<&'a str>,
    /// The library wrote it (no upload of this service's is on it).
    pub by_library: bool,
    /// [`latest_seen`] of it now.
    pub seen: &'a str,
}

/// Whether a verification of an upload committed at `committed_at` (which
/// saw LATEST as `seen_at_hand_over`, when recorded) may make it LATEST
/// over `latest`.
///
/// The commit is ordered where it read LATEST: any commit to LATEST since
/// (of other bytes, or of the same bytes) is a later one, so it may only
/// while LATEST is still as it saw it. Times cannot order them: a commit
/// stamps its time before its write lands, so one delayed between the two
/// carries a time older than a hand-over it landed after (and the
/// library's time is its PUT's start, in whole seconds).
///
/// An upload handed over by a release that recorded less of LATEST (no
/// commit time) or nothing is ordered by times (in the `update_at` format,
/// which sorts as time does), and a library LATEST that is not the one it
/// saw is newer.
pub fn verification_may_commit(
    committed_at: &str,
    seen_at_hand_over: Option<&str>,
    latest: LatestNow<'_>,
) -> bool {
    match seen_at_hand_over {
        Some(seen) if seen_in_full(seen) => seen == latest.seen,
        legacy => {
            let seen_then_legacy = latest.seen.rsplit_once('|').map_or("", |(head, _)| head);
            if latest.by_library && legacy.is_some_and(|seen| seen != seen_then_legacy) {
                return false;
            }
            latest.update_at.is_none_or(|t| t < committed_at)
                && latest.committed_at.is_none_or(|t| t < committed_at)
        }
    }
}

/// LATEST as a start upload with `commit` read it: what deciding whether
/// it may commit at once looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestBytes<'a> {
    /// LATEST exists and is not a tombstone.
    pub live: bool,
    /// LATEST's bytes are the service's blob of its SHA-256 (not the
    /// library's object).
    pub in_blob: bool,
    pub sha256: &'a str,
    pub size: Option<u64>,
}

/// Whether a start upload declaring `sha256` and `size`, asking to commit,
/// commits at once on LATEST as read, in one transaction and without
/// looking at S3: LATEST is live and points at the blob of exactly these
/// bytes. A row never points at a blob that is not there (SPEC 7), and the
/// transaction holds only while LATEST still does, so the bytes are there
/// when it lands; the commit changes no content, it records the upload.
/// Any other case goes the ordinary way (a pending row, then the commit,
/// which looks at the blob after the row exists).
pub fn commits_on_latest(latest: &LatestBytes<'_>, sha256: &str, size: u64) -> bool {
    latest.live && latest.in_blob && latest.sha256 == sha256 && latest.size == Some(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whether_the_writer_of_an_unverified_object_may_still_verify_it_table() {
        use crate::model::UploadState::*;
        let now = 10_000;
        let cut = now - COMMIT_CUT_OFF_SECS - 1;
        for (state, expires_at, completing_at, writer) in [
            (Pending, now + 1, None, Writer::Alive),
            (Pending, now, None, Writer::Gone),
            // Its commit is completing, or was just cut off: alive.
            (Pending, now + 1, Some(now - 5), Writer::Alive),
            (
                Pending,
                now + 1,
                Some(now - COMMIT_CUT_OFF_SECS),
                Writer::Alive,
            ),
            // Cut off longer ago than a commit runs.
            (Pending, now + 1, Some(cut), Writer::CutOff { stamp: cut }),
            (Pending, now, Some(cut), Writer::Gone),
            (Verifying, now + 1, None, Writer::Alive),
            (Verifying, now - 1, Some(cut), Writer::Alive),
            (Committed, now + 1, None, Writer::Gone),
            (Failed, now + 1, Some(cut), Writer::Gone),
            (Superseded, now + 1, None, Writer::Gone),
        ] {
            assert_eq!(
                writer_state(state, expires_at, completing_at, now),
                writer,
                "{state:?} until {expires_at}, completing since {completing_at:?}"
            );
        }
    }

    const SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"; // "hello"

    fn object(checksum: Option<&str>, size: u64, writer: Option<&str>) -> StoredObject {
        StoredObject {
            size,
            checksum_sha256: checksum.map(str::to_owned),
            version: "v1".into(),
            writer: writer.map(str::to_owned),
        }
    }

    #[test]
    fn what_a_blob_key_holds_for_a_declaration() {
        let full = "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";
        let verified = VerifiedBlob {
            version: "v1".into(),
            size: 5,
        };
        let stale = VerifiedBlob {
            version: "v0".into(),
            size: 5,
        };
        let cases: Vec<(Option<StoredObject>, Option<&VerifiedBlob>, u64, &str)> = vec![
            (None, None, 5, "absent"),
            (Some(object(Some(full), 5, None)), None, 5, "holds"),
            // Known bytes, a false size: refused before any transfer.
            (Some(object(Some(full), 5, None)), None, 1, "contradicts"),
            (
                Some(object(Some("abc-2"), 5, None)),
                Some(&verified),
                5,
                "holds",
            ),
            (
                Some(object(Some("abc-2"), 5, None)),
                Some(&verified),
                1,
                "contradicts",
            ),
            // A verified row of another object version says nothing of this one.
            (
                Some(object(Some("abc-2"), 5, None)),
                Some(&stale),
                5,
                "unverified",
            ),
            // An unverified object proves nothing, whatever its size.
            (Some(object(Some("abc-2"), 7, None)), None, 5, "unverified"),
            (Some(object(None, 5, None)), None, 5, "unverified"),
        ];
        for (object, verified, size, want) in cases {
            let got = match stored(object.as_ref(), verified, SHA, size) {
                Stored::Absent => "absent",
                Stored::Holds => "holds",
                Stored::Contradicts(_) => "contradicts",
                Stored::Unverified { .. } => "unverified",
            };
            assert_eq!(got, want, "{object:?} {verified:?} size {size}");
        }
    }

    #[test]
    fn an_occupied_key_is_verified_deleted_or_waited_for_by_who_wrote_it() {
        let unverified = |writer: Option<&str>| Stored::Unverified {
            version: "v1".into(),
            writer: writer.map(str::to_owned),
        };
        let show = |o: OnOccupied| match o {
            OnOccupied::CommitRows => "commit rows",
            OnOccupied::Refuse(_) => "refuse",
            OnOccupied::Verify { owned: true } => "verify, may delete",
            OnOccupied::Verify { owned: false } => "verify, never delete",
            OnOccupied::Wait(_) => "wait",
            OnOccupied::CompleteOver => "complete own parts over it, verify",
        };
        // (what the key holds, its writer alive, this upload has parts)
        let cases = [
            (Stored::Holds, false, true, "commit rows"),
            (Stored::Holds, false, false, "commit rows"),
            (
                Stored::Contradicts(Error::InvalidRequest(String::new())),
                false,
                true,
                "refuse",
            ),
            (unverified(Some("mine")), true, false, "verify, may delete"),
            (unverified(Some("mine")), false, false, "verify, may delete"),
            (unverified(Some("theirs")), true, true, "wait"),
            (
                unverified(Some("theirs")),
                false,
                true,
                "complete own parts over it, verify",
            ),
            (
                unverified(None),
                false,
                true,
                "complete own parts over it, verify",
            ),
            (
                unverified(Some("theirs")),
                false,
                false,
                "verify, never delete",
            ),
            (unverified(None), false, false, "verify, never delete"),
        ];
        for (stored, alive, parts, want) in cases {
            let shown = format!("{stored:?} alive={alive} parts={parts}");
            assert_eq!(
                show(on_occupied(stored, "mine", alive, parts)),
                want,
                "{shown}"
            );
        }
    }

    #[test]
    fn a_verification_commits_only_over_the_latest_its_commit_saw_table() {
        let t = |s: &str| format!("2026-12-05T07:00:0{s}.000000+0000");
        let (before, at, after) = (t("1"), t("2"), t("3"));
        let seen = latest_seen(Some(&before), Some("aa"), None);
        for (what, now, by_library, may) in [
            ("as it saw it", seen.clone(), false, true),
            ("as it saw it, the library's", seen.clone(), true, true),
            (
                "other bytes committed since, stamped before the hand-over",
                latest_seen(Some(&t("0")), Some("bb"), None),
                false,
                false,
            ),
            (
                "the same bytes committed since",
                latest_seen(Some(&before), Some("aa"), Some(&before)),
                false,
                false,
            ),
            (
                "written again since, later",
                latest_seen(Some(&after), Some("aa"), None),
                false,
                false,
            ),
            (
                "gone since (purged)",
                latest_seen(None, None, None),
                false,
                false,
            ),
        ] {
            let latest = LatestNow {
                update_at: Some(&before),
                committed_at: None,
                by_library,
                seen: &now,
            };
            assert_eq!(
                verification_may_commit(&at, Some(&seen), latest),
                may,
                "{what}"
            );
        }
        // It saw none: any LATEST since is newer.
        let none = latest_seen(None, None, None);
        let latest = LatestNow {
            update_at: Some(&before),
            committed_at: None,
            by_library: false,
            seen: &seen,
        };
        assert!(!verification_may_commit(&at, Some(&none), latest));
        assert!(verification_may_commit(
            &at,
            Some(&none),
            LatestNow {
                update_at: None,
                seen: &none,
                ..latest
            }
        ));
    }

    #[test]
    fn a_verification_handed_over_by_an_earlier_release_commits_only_over_an_older_latest() {
        let t = |s: &str| format!("2026-12-05T07:00:0{s}.000000+0000");
        let (before, at, after) = (t("1"), t("2"), t("3"));
        let ours = |update_at: Option<&str>, committed_at: Option<&str>| -> bool {
            let latest = LatestNow {
                update_at,
                committed_at,
                by_library: false,
                seen: "",
            };
            verification_may_commit(&at, Some("other"), latest)
        };
        assert!(ours(None, None));
        assert!(ours(Some(&before), None));
        assert!(!ours(Some(&after), None));
        assert!(!ours(Some(&at), None));
        // A later commit of the bytes LATEST already held counts too.
        assert!(!ours(Some(&before), Some(&after)));
        assert!(ours(Some(&before), Some(&before)));

        // The library's: older by its time, and the one the commit saw
        // (recorded then without LATEST's commit time).
        let legacy = |update_at: &str, sha256: &str| format!("{update_at}|{sha256}");
        let seen = legacy(&before, "aa");
        let library = |seen_now: &str, at_hand_over: Option<&str>| -> bool {
            let latest = LatestNow {
                update_at: Some(&before),
                committed_at: None,
                by_library: true,
                seen: seen_now,
            };
            verification_may_commit(&at, at_hand_over, latest)
        };
        let now = |update_at: &str, sha256: &str| latest_seen(Some(update_at), Some(sha256), None);
        assert!(library(&now(&before, "aa"), Some(&seen)));
        // Written since the hand-over (other bytes, or another second):
        // newer, whatever its time says.
        assert!(!library(&now(&before, "bb"), Some(&seen)));
        assert!(!library(&now(&t("0"), "aa"), Some(&seen)));
        // None when the commit saw no LATEST: the library's is newer.
        assert!(!library(&now(&before, "aa"), Some("|")));
        // Handed over before commits recorded what they saw: by time.
        assert!(library(&now(&before, "bb"), None));
    }

    #[test]
    fn a_start_commits_on_latest_only_when_latest_holds_exactly_the_declared_bytes() {
        let other = "0".repeat(64);
        let latest = |live, in_blob, sha256, size| LatestBytes {
            live,
            in_blob,
            sha256,
            size,
        };
        let table: [(LatestBytes<'_>, u64, bool); 7] = [
            (latest(true, true, SHA, Some(5)), 5, true),
            // The declaration's size is not LATEST's: the ordinary way
            // finds the contradiction on S3 and refuses it.
            (latest(true, true, SHA, Some(6)), 5, false),
            (latest(true, true, SHA, None), 5, false),
            (latest(true, true, &other, Some(5)), 5, false),
            // The library's object: adopted by a publish, not here.
            (latest(true, false, SHA, Some(5)), 5, false),
            // A tombstone: a purge went by.
            (latest(false, true, SHA, Some(5)), 5, false),
            (latest(false, false, &other, None), 5, false),
        ];
        for (latest, size, expected) in table {
            assert_eq!(
                commits_on_latest(&latest, SHA, size),
                expected,
                "{latest:?} declared {size}"
            );
        }
    }
}
