//! Decisions of the mirror of the library's layout (SPEC 3.2), as pure
//! functions over what it read: the I/O is in `service/src/seed_layout.rs`.

use std::time::Duration;

use time::OffsetDateTime;

/// How long after a row of ours the mirror waits for a library row that may
/// follow an object the library PUT in the row's own second: the library
/// writes its object, then its row, milliseconds apart.
pub const LIBRARY_ROW_WINDOW: Duration = Duration::from_secs(3);

/// What the mirror does with the current object of a library key that is
/// not its own copy and holds other bytes than the live row of ours it
/// mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// Older than the row: our copy goes over it (it stays, noncurrent).
    Replace,
    /// Written after the row: a newer library write (its row follows or
    /// has followed), left alone.
    Leave,
    /// Written in the row's own second (S3 keeps whole seconds): before
    /// or after the row, nobody can tell yet. Judge again at this time,
    /// when the library's row, if this object was its write after ours,
    /// has landed. Copying at once overwrote the library's write in flight,
    /// and its publish then copied our bytes under its own digest.
    JudgeAgainAt(OffsetDateTime),
}

/// The rule for an object last modified at `last_modified` (whole seconds;
/// `None`: unknown) on the key of a row of ours written at `row_written`,
/// judged at `now`.
pub fn foreign_object(
    last_modified: Option<OffsetDateTime>,
    row_written: OffsetDateTime,
    now: OffsetDateTime,
) -> Foreign {
    let Some(modified) = last_modified else {
        return Foreign::Replace;
    };
    if modified > row_written {
        return Foreign::Leave;
    }
    let same_second = row_written < modified + Duration::from_secs(1);
    let settled = row_written + LIBRARY_ROW_WINDOW;
    if same_second && now < settled {
        Foreign::JudgeAgainAt(settled)
    } else {
        Foreign::Replace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_mirror_does_with_an_object_it_did_not_write_table() {
        let second = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let ms = |n: u64| second + Duration::from_millis(n);
        let row = ms(500);
        for (what, modified, now, want) in [
            ("unknown time", None, ms(600), Foreign::Replace),
            (
                "a second before the row",
                Some(ms(0) - Duration::from_secs(1)),
                ms(600),
                Foreign::Replace,
            ),
            ("the next second", Some(ms(1000)), ms(1100), Foreign::Leave),
            (
                "the row's own second, just now",
                Some(ms(0)),
                ms(600),
                Foreign::JudgeAgainAt(row + LIBRARY_ROW_WINDOW),
            ),
            (
                "the row's own second, long enough ago",
                Some(ms(0)),
                row + LIBRARY_ROW_WINDOW,
                Foreign::Replace,
            ),
        ] {
            assert_eq!(foreign_object(modified, row, now), want, "{what}");
        }
        // A row written exactly on the second: an object of that second
        // is ambiguous too.
        assert_eq!(
            foreign_object(Some(second), second, second),
            Foreign::JudgeAgainAt(second + LIBRARY_ROW_WINDOW)
        );
    }
}
