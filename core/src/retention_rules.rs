//! Which versions a retention pass deletes, as a pure function over the rows
//! it read (no AWS types, no I/O). The reads and the conditional soft
//! deletes around it are in `repository/retention.rs` (`purge_versions`).

use std::collections::BTreeSet;

use time::OffsetDateTime;

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
}
