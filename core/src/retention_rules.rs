//! Which versions a retention pass deletes, and what a reclaim pass does
//! with each deleted row and each blob, as pure functions over the rows it
//! read (no AWS types, no I/O). The reads and the conditional writes around
//! them are in `service/src/retention.rs` (`purge_versions`, `reclaim`).

use std::collections::BTreeSet;

use time::OffsetDateTime;

use crate::model::UploadState;
use crate::names::Version;

/// A version row as the rule needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub version: Version,
    pub live: bool,
    pub update_at: OffsetDateTime,
}

/// The numbered versions a pass deletes, newest first: the live ones beyond
/// the newest `keep_last_n` (LATEST is never one of them, alias targets count
/// toward `keep_last_n` like any live version) that were written before
/// `expire` and that no alias targets (`protected`).
pub fn to_delete(
    rows: &[Row],
    keep_last_n: u32,
    expire: OffsetDateTime,
    protected: &BTreeSet<Version>,
) -> Vec<Version> {
    let mut live: Vec<&Row> = rows
        .iter()
        .filter(|r| r.live && !r.version.is_latest())
        .collect();
    live.sort_by_key(|r| std::cmp::Reverse(r.version));
    live.into_iter()
        .skip(keep_last_n as usize)
        .filter(|r| r.update_at < expire)
        .filter(|r| !protected.contains(&r.version))
        .map(|r| r.version)
        .collect()
}

/// A version row as the reclaim pass needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReclaimRow {
    pub version: Version,
    pub live: bool,
    /// When the grace period started (stamped by an earlier pass).
    pub deleted_at: Option<OffsetDateTime>,
    /// Its bytes were reclaimed already.
    pub reclaimed: bool,
    /// Its bytes are in the artifact's blob store (shared by content), not
    /// in an object of its own (the library's key).
    pub in_blob: bool,
}

/// What a reclaim pass does with one version row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reclaim {
    /// Nothing: live, LATEST, reclaimed already, or an alias targets it
    /// (the library lets an alias point at a deleted version).
    Keep,
    /// Deleted, never stamped: its grace period starts now.
    Stamp,
    /// Within its grace period.
    Wait,
    /// Its own object goes, and the row is marked reclaimed.
    Object,
    /// Its share of a blob: the blob goes once nothing else references it.
    Blob,
}

/// What a reclaim pass does with `row`, given the alias targets
/// (`protected`) and the end of the grace period (`cutoff`: rows deleted
/// at or before it are due).
pub fn reclaim_step(
    row: &ReclaimRow,
    protected: &BTreeSet<Version>,
    cutoff: OffsetDateTime,
) -> Reclaim {
    if row.live || row.version.is_latest() || row.reclaimed || protected.contains(&row.version) {
        return Reclaim::Keep;
    }
    match row.deleted_at {
        None => Reclaim::Stamp,
        Some(at) if at > cutoff => Reclaim::Wait,
        Some(_) if row.in_blob => Reclaim::Blob,
        Some(_) => Reclaim::Object,
    }
}

/// Whether the reclaim of a version's own object (the library's key of
/// its number) may go ahead, given the row as the pass read it (`read`,
/// due: [`Reclaim::Object`]) and as read again just before the deletion
/// (`again`, strongly consistent; `None` when gone). Only the very row the
/// pass read may lose its bytes: a row gone, live, reclaimed or stamped
/// otherwise is another life of that number (the artifact purged and
/// written again meanwhile, SPEC 7.10) or another pass's work. When it
/// may, the answer is the Unix second before which the object versions
/// to delete were written: those of the row's life were written before
/// its grace period began, a new life's only after (a purge between a
/// pass's read and its deletion is after the grace period began).
pub fn object_reclaim_before(read: &ReclaimRow, again: Option<&ReclaimRow>) -> Option<i64> {
    let again = again?;
    let deleted_at = read.deleted_at?;
    let same = again.version == read.version
        && !again.live
        && !again.reclaimed
        && !again.in_blob
        && again.deleted_at == Some(deleted_at);
    same.then(|| deleted_at.unix_timestamp() + 1)
}

/// Whether an upload still holds its bytes against reclaim: it may yet be
/// committed (pending, or verifying: committed when its bytes check out)
/// and has not expired (`expires_at`, `now` in Unix seconds).
pub fn upload_holds(state: UploadState, expires_at: i64, now: i64) -> bool {
    matches!(state, UploadState::Pending | UploadState::Verifying) && expires_at > now
}

/// Whether the blob of `sha256` may not be deleted: a row not yet
/// reclaimed holds it (besides the rows being reclaimed, `reclaiming`), or
/// an upload that [`upload_holds`]. `rows` are (version, sha256,
/// reclaimed); `uploads` are (sha256, holds).
pub fn blob_referenced<'a>(
    sha256: &str,
    rows: impl IntoIterator<Item = (Version, &'a str, bool)>,
    uploads: impl IntoIterator<Item = (&'a str, bool)>,
    reclaiming: &[Version],
) -> bool {
    rows.into_iter().any(|(version, held, reclaimed)| {
        !reclaimed && held == sha256 && !reclaiming.contains(&version)
    }) || uploads
        .into_iter()
        .any(|(held, holds)| holds && held == sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::days(d)
    }

    fn rows(spec: &[(u32, bool, i64)]) -> Vec<Row> {
        spec.iter()
            .map(|&(n, live, d)| Row {
                version: if n == 0 {
                    Version::Latest
                } else {
                    Version::Number(n)
                },
                live,
                update_at: day(d),
            })
            .collect()
    }

    fn numbers(versions: Vec<Version>) -> Vec<String> {
        versions.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn which_versions_a_retention_pass_deletes_table() {
        // (what, rows as (version, 0 = LATEST; live; written on day), keep,
        //  expire day, alias targets, deleted newest first)
        #[allow(clippy::type_complexity)]
        let table: Vec<(&str, Vec<(u32, bool, i64)>, u32, i64, Vec<u32>, Vec<&str>)> = vec![
            (
                "nothing beyond keep",
                vec![(0, true, 9), (1, true, 1), (2, true, 2)],
                2,
                100,
                vec![],
                vec![],
            ),
            (
                "the oldest beyond keep",
                vec![(1, true, 1), (2, true, 2), (3, true, 3)],
                1,
                100,
                vec![],
                vec!["2", "1"],
            ),
            (
                "LATEST neither counts nor goes",
                vec![(0, true, 1), (1, true, 1), (2, true, 2)],
                1,
                100,
                vec![],
                vec!["1"],
            ),
            (
                "too young to go",
                vec![(1, true, 1), (2, true, 50), (3, true, 60)],
                1,
                40,
                vec![],
                vec!["1"],
            ),
            (
                "alias targets stay and count toward keep",
                vec![(1, true, 1), (2, true, 2), (3, true, 3)],
                1,
                100,
                vec![3, 1],
                vec!["2"],
            ),
            (
                "an alias target beyond keep stays",
                vec![(1, true, 1), (2, true, 2), (3, true, 3)],
                1,
                100,
                vec![1],
                vec!["2"],
            ),
            (
                "deleted rows neither count nor go again",
                vec![(1, true, 1), (2, false, 2), (3, true, 3)],
                1,
                100,
                vec![],
                vec!["1"],
            ),
            (
                "keep 0 deletes every old version",
                vec![(0, true, 1), (1, true, 1), (2, true, 2)],
                0,
                100,
                vec![],
                vec!["2", "1"],
            ),
            (
                "order by number, not by read order",
                vec![(10, true, 1), (9, true, 1), (11, true, 1)],
                1,
                100,
                vec![],
                vec!["10", "9"],
            ),
        ];
        for (what, spec, keep, expire, aliased, expected) in table {
            let protected = aliased.into_iter().map(Version::Number).collect();
            let got = to_delete(&rows(&spec), keep, day(expire), &protected);
            assert_eq!(numbers(got), expected, "{what}");
        }
    }

    #[test]
    fn what_a_reclaim_pass_does_with_a_row_table() {
        // (what, version (0 = LATEST), live, deleted on day, reclaimed,
        //  in the blob store, alias targets, expected)
        #[allow(clippy::type_complexity)]
        let table: Vec<(&str, u32, bool, Option<i64>, bool, bool, Vec<u32>, Reclaim)> = vec![
            (
                "a live version stays",
                1,
                true,
                None,
                false,
                true,
                vec![],
                Reclaim::Keep,
            ),
            (
                "LATEST stays",
                0,
                false,
                Some(1),
                false,
                true,
                vec![],
                Reclaim::Keep,
            ),
            (
                "reclaimed already",
                1,
                false,
                Some(1),
                true,
                true,
                vec![],
                Reclaim::Keep,
            ),
            (
                "an alias target stays",
                1,
                false,
                Some(1),
                false,
                true,
                vec![1],
                Reclaim::Keep,
            ),
            (
                "deleted, not stamped: stamped",
                1,
                false,
                None,
                false,
                true,
                vec![],
                Reclaim::Stamp,
            ),
            (
                "within the grace period",
                1,
                false,
                Some(11),
                false,
                true,
                vec![],
                Reclaim::Wait,
            ),
            (
                "due, in a blob",
                1,
                false,
                Some(9),
                false,
                true,
                vec![],
                Reclaim::Blob,
            ),
            (
                "due at the cutoff itself",
                1,
                false,
                Some(10),
                false,
                true,
                vec![],
                Reclaim::Blob,
            ),
            (
                "due, its own object",
                1,
                false,
                Some(9),
                false,
                false,
                vec![],
                Reclaim::Object,
            ),
            (
                "another version's alias",
                1,
                false,
                Some(9),
                false,
                true,
                vec![2],
                Reclaim::Blob,
            ),
        ];
        for (what, n, live, deleted, reclaimed, in_blob, aliased, expected) in table {
            let row = ReclaimRow {
                version: if n == 0 {
                    Version::Latest
                } else {
                    Version::Number(n)
                },
                live,
                deleted_at: deleted.map(day),
                reclaimed,
                in_blob,
            };
            let protected = aliased.into_iter().map(Version::Number).collect();
            assert_eq!(reclaim_step(&row, &protected, day(10)), expected, "{what}");
        }
    }

    #[test]
    fn when_a_version_s_own_object_may_be_reclaimed_table() {
        let due = ReclaimRow {
            version: Version::Number(1),
            live: false,
            deleted_at: Some(day(9)),
            reclaimed: false,
            in_blob: false,
        };
        let stamp_second = day(9).unix_timestamp();
        for (what, again, expected) in [
            ("the same row", Some(due), Some(stamp_second + 1)),
            ("gone (purged)", None, None),
            (
                "live again (re-created)",
                Some(ReclaimRow {
                    live: true,
                    deleted_at: None,
                    ..due
                }),
                None,
            ),
            (
                "deleted again, another grace period",
                Some(ReclaimRow {
                    deleted_at: Some(day(10)),
                    ..due
                }),
                None,
            ),
            (
                "deleted again, not yet stamped",
                Some(ReclaimRow {
                    deleted_at: None,
                    ..due
                }),
                None,
            ),
            (
                "reclaimed by another pass",
                Some(ReclaimRow {
                    reclaimed: true,
                    ..due
                }),
                None,
            ),
            (
                "re-created in the blob store",
                Some(ReclaimRow {
                    in_blob: true,
                    ..due
                }),
                None,
            ),
        ] {
            assert_eq!(
                object_reclaim_before(&due, again.as_ref()),
                expected,
                "{what}"
            );
        }
        let unstamped = ReclaimRow {
            deleted_at: None,
            ..due
        };
        assert_eq!(object_reclaim_before(&unstamped, Some(&unstamped)), None);
    }

    #[test]
    fn whether_an_upload_or_a_row_holds_a_blob_table() {
        use UploadState::*;
        for (state, expires_at, holds) in [
            (Pending, 11, true),
            (Verifying, 11, true),
            (Pending, 10, false),
            (Verifying, 9, false),
            (Committed, 11, false),
            (Failed, 11, false),
        ] {
            assert_eq!(
                upload_holds(state, expires_at, 10),
                holds,
                "{state:?} until {expires_at}"
            );
        }
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let v = Version::Number;
        // (what, rows, uploads, reclaiming, referenced)
        #[allow(clippy::type_complexity)]
        let table: Vec<(
            &str,
            Vec<(Version, &str, bool)>,
            Vec<(&str, bool)>,
            Vec<Version>,
            bool,
        )> = vec![
            ("nothing", vec![], vec![], vec![], false),
            (
                "a row holds it",
                vec![(v(1), &a, false)],
                vec![],
                vec![],
                true,
            ),
            (
                "LATEST holds it",
                vec![(Version::Latest, &a, false)],
                vec![],
                vec![],
                true,
            ),
            (
                "only other bytes",
                vec![(v(1), &b, false)],
                vec![(&b, true)],
                vec![],
                false,
            ),
            (
                "a reclaimed row does not",
                vec![(v(1), &a, true)],
                vec![],
                vec![],
                false,
            ),
            (
                "the rows being reclaimed do not",
                vec![(v(1), &a, false)],
                vec![],
                vec![v(1)],
                false,
            ),
            (
                "another row still does",
                vec![(v(1), &a, false), (v(2), &a, false)],
                vec![],
                vec![v(1)],
                true,
            ),
            (
                "an upload that may commit",
                vec![],
                vec![(&a, true)],
                vec![],
                true,
            ),
            (
                "an upload that cannot",
                vec![],
                vec![(&a, false)],
                vec![],
                false,
            ),
        ];
        for (what, rows, uploads, reclaiming, expected) in table {
            assert_eq!(
                blob_referenced(&a, rows, uploads, &reclaiming),
                expected,
                "{what}"
            );
        }
    }
}
