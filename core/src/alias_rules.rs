//! What an alias change does, decided from the rows it read (SPEC 4.2), as
//! a pure function (no AWS types, no I/O): whether its precondition holds,
//! which action it is, whether its targets may be taken, and the revision it
//! writes; what a rollback goes back to; and which target a resolve picks
//! (SPEC 7.9). The reads, the
//! transaction and the retries around them are in the service's
//! `aliases.rs` (`change_alias_linked`, `resolve_alias`).

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::model::{AliasAction, AliasState, AliasTarget, Precondition};
use crate::names::{AliasName, ArtifactName, Version, Weight};

/// What the request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    Put,
    Delete,
    Rollback,
}

/// The alias row as read, when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// Absent on a row the library wrote (it keeps no revision).
    pub revision: Option<u64>,
    /// When the row was written, in microseconds since the epoch.
    pub written_at: i64,
    /// The versions it points at now.
    pub targets: BTreeSet<Version>,
}

/// A version the change would point at, as read: `None` when it has no row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub version: Version,
    pub row: Option<TargetRow>,
    /// The change gives it more than the alias does now ([`gains`]).
    pub grows: bool,
}

/// The percent of resolves `target` sends to `version`: the primary's
/// `100 - weight`, the secondary's weight; 0 when it is neither (or there
/// is no target).
pub fn share_of(target: Option<&AliasTarget>, version: Version) -> u8 {
    let Some(target) = target else {
        return 0;
    };
    let weight = target.secondary.map_or(0, |(_, w)| w.get());
    let mut share = 0;
    if target.version == version {
        share += 100 - weight;
    }
    if target.secondary.is_some_and(|(v, _)| v == version) {
        share += weight;
    }
    share
}

/// Whether moving an alias from `now` to `next` gives `version` more than
/// it has: a larger share of resolves ([`share_of`]), or the primary's
/// place it does not hold (an archived version may keep its place with the
/// same share or less, never more, and never become primary: README,
/// version status) — save that an archived primary may take back what its
/// own canary took, as that canary is taken off or lowered.
pub fn gains(next: Option<&AliasTarget>, now: Option<&AliasTarget>, version: Version) -> bool {
    let primary = |t: Option<&AliasTarget>| t.is_some_and(|t| t.version == version);
    // The primary staying primary while its canary is taken off, or
    // lowered, gains back only the share that canary took from it: that
    // must stay possible (by a move or a rollback) while the primary is
    // archived. Another canary is a new move, and the share the primary
    // gains by it a gain.
    if primary(next) && primary(now) {
        let canary_off_or_lowered = match (
            next.and_then(|t| t.secondary),
            now.and_then(|t| t.secondary),
        ) {
            (None, _) => true,
            (Some((v, w)), Some((was, had))) => v == was && w.get() <= had.get(),
            (Some(_), None) => false,
        };
        if canary_off_or_lowered {
            return false;
        }
    }
    share_of(next, version) > share_of(now, version) || (primary(next) && !primary(now))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetRow {
    pub live: bool,
    pub archived: bool,
}

/// What the change writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub action: AliasAction,
    /// The revision of the new row and of its history entry.
    pub revision: u64,
}

/// The change `asked` of `alias` under `precondition`, given the alias row
/// read (`current`), the revision of the last history entry when that row
/// has none (`logged`: a new alias, or one the library wrote, continues the
/// history's sequence), and the rows of the versions it would point at.
pub fn decide(
    name: &ArtifactName,
    alias: &AliasName,
    asked: Asked,
    precondition: Precondition,
    current: Option<&Current>,
    logged: Option<u64>,
    targets: &[Target],
) -> Result<Decision, Error> {
    let modified = |detail: String| Error::AliasModified {
        name: name.to_string(),
        alias: alias.to_string(),
        detail,
    };
    let at = match current {
        Some(c) => c.revision.unwrap_or(0),
        None => logged.unwrap_or(0),
    };
    match precondition {
        Precondition::Revision(r) if current.is_none() && asked == Asked::Put => {
            return Err(modified(format!("does not exist (If-Match: \"{r}\")")));
        }
        Precondition::Revision(r) if r != at => {
            return Err(modified(format!("is at revision {at}, not {r}")));
        }
        Precondition::LibraryRow(_) if current.is_none() => {
            return Err(modified(
                "does not exist (If-Match names a library row)".into(),
            ));
        }
        Precondition::LibraryRow(_) if current.is_some_and(|c| c.revision.is_some()) => {
            return Err(modified(format!(
                "is at revision {at}, no longer the library's row"
            )));
        }
        Precondition::LibraryRow(w) if current.is_some_and(|c| c.written_at != w) => {
            return Err(modified("was written again by the library since".into()));
        }
        Precondition::Exists if current.is_none() => {
            return Err(modified("does not exist (If-Match: *)".into()));
        }
        Precondition::Absent if current.is_some() => {
            return Err(modified("exists already (If-None-Match: *)".into()));
        }
        _ => {}
    }
    let action = match (asked, current) {
        (Asked::Put, None) => {
            alias.check_new()?;
            AliasAction::Create
        }
        (Asked::Put, Some(_)) => AliasAction::Move,
        (Asked::Delete, None) => {
            return Err(Error::AliasNotFound {
                name: name.to_string(),
                alias: alias.to_string(),
            });
        }
        (Asked::Delete, Some(_)) => AliasAction::Delete,
        (Asked::Rollback, _) => AliasAction::Rollback,
    };
    let held: BTreeSet<Version> = current.map(|c| c.targets.clone()).unwrap_or_default();
    for Target {
        version,
        row,
        grows,
    } in targets
    {
        match row {
            // An archived version is never a new target (SPEC 10.3), and
            // gains no traffic: one the alias already points at may stay,
            // with the same share or less.
            Some(r) if r.archived && (*grows || !held.contains(version)) => {
                return Err(Error::VersionArchived {
                    name: name.to_string(),
                    version: version.to_string(),
                });
            }
            Some(r) if r.live => {}
            _ if asked == Asked::Rollback => {
                return Err(Error::TargetGone(format!(
                    "cannot roll alias {alias} of {name} back: version {version} has since been deleted"
                )));
            }
            _ if version.is_latest() => {
                return Err(Error::ArtifactNotFound {
                    name: name.to_string(),
                });
            }
            _ => return Err(Error::version_not_found(name, version)),
        }
    }
    let revision = match current.and_then(|c| c.revision) {
        Some(r) => r + 1,
        None => logged.unwrap_or(0) + 1,
    };
    Ok(Decision { action, revision })
}

/// A stable bucket in 0..100 for one key of one alias: the first 8 bytes
/// of SHA-256(name NUL alias NUL key), modulo 100.
pub fn sticky_bucket(name: &ArtifactName, alias: &AliasName, key: &str) -> u8 {
    let digest = Sha256::new()
        .chain_update(name.as_str())
        .chain_update([0])
        .chain_update(alias.as_str())
        .chain_update([0])
        .chain_update(key)
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % 100) as u8
}

/// Whether a resolve landing in `bucket` (0..100: a key's
/// [`sticky_bucket`], or a random one) takes the secondary target of a
/// split with `weight` percent on it: when the bucket is below the
/// weight. A key's bucket never changes, so a key stays on its target
/// while the weight does (sticky), and raising the weight only ever moves
/// keys from primary to secondary (monotone).
pub fn takes_secondary(bucket: u8, weight: Weight) -> bool {
    bucket < weight.get()
}

/// What "undo the alias's last change" (a rollback without a revision,
/// SPEC 4.2) goes back to, given its newest history entry (`after`: the
/// targets it set, `None` for a delete; `before`: its `previous`) and, when
/// the library wrote the alias row since (it keeps no history and no
/// revision: a row without revision), that row's targets. The library's
/// write is then the last change: undone, the alias goes back to the
/// entry's targets; unless it wrote the very targets the entry set, when
/// the entry's change is still the last one that changed anything. `Err`:
/// why there is nothing to go back to.
pub fn rollback_target(
    after: Option<&AliasState>,
    before: Option<&AliasState>,
    library_row: Option<&AliasState>,
) -> Result<AliasState, &'static str> {
    match library_row {
        Some(now) if Some(now) != after => after
            .cloned()
            .ok_or("the library created it again after its last change deleted it"),
        _ => before.cloned().ok_or("its only change created it"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollback_undoes_the_librarys_move_when_it_made_the_last_change() {
        let state = |n: u32| AliasState {
            version: v(n),
            secondary_version: None,
            secondary_version_weight: None,
        };
        let (one, two, three) = (state(1), state(2), state(3));
        // What, the entry's targets, its previous, the library's row, outcome.
        type Case<'a> = (
            &'a str,
            Option<&'a AliasState>,
            Option<&'a AliasState>,
            Option<&'a AliasState>,
            Result<AliasState, &'a str>,
        );
        let cases: [Case; 6] = [
            (
                "our move is the last change",
                Some(&two),
                Some(&one),
                None,
                Ok(one.clone()),
            ),
            (
                "our create is the only change",
                Some(&one),
                None,
                None,
                Err("its only change created it"),
            ),
            (
                "the library moved it since",
                Some(&two),
                Some(&one),
                Some(&three),
                Ok(two.clone()),
            ),
            (
                "the library moved it after our create",
                Some(&one),
                None,
                Some(&three),
                Ok(one.clone()),
            ),
            (
                "the library wrote the same targets again",
                Some(&two),
                Some(&one),
                Some(&two),
                Ok(one.clone()),
            ),
            (
                "the library created it after our delete",
                None,
                Some(&one),
                Some(&three),
                Err("the library created it again after its last change deleted it"),
            ),
        ];
        for (what, after, before, library, want) in cases {
            assert_eq!(rollback_target(after, before, library), want, "{what}");
        }
    }

    fn v(n: u32) -> Version {
        Version::Number(n)
    }

    fn row(live: bool, archived: bool) -> Option<TargetRow> {
        Some(TargetRow { live, archived })
    }

    fn at(revision: Option<u64>, targets: &[Version]) -> Option<Current> {
        Some(Current {
            revision,
            written_at: 1_000,
            targets: targets.iter().copied().collect(),
        })
    }

    /// What, asked, precondition, alias row, logged revision, targets, outcome.
    type Case<'a> = (
        &'a str,
        Asked,
        Precondition,
        Option<Current>,
        Option<u64>,
        &'a [Target],
        &'a str,
    );

    /// The outcome as a short word: the action and revision, or the error's code.
    fn outcome(result: Result<Decision, Error>) -> String {
        match result {
            Ok(d) => format!("{} r{}", d.action.as_str(), d.revision),
            Err(e) => e.code().to_owned(),
        }
    }

    #[test]
    fn the_share_of_resolves_a_version_gets_table() {
        let split = |primary: u32, secondary: u32, weight: i64| AliasTarget {
            version: v(primary),
            secondary: Some((v(secondary), Weight::new(weight).expect("weight"))),
        };
        let alone = AliasTarget {
            version: v(1),
            secondary: None,
        };
        for (what, target, version, share) in [
            ("no alias", None, 1, 0),
            ("the primary alone", Some(alone), 1, 100),
            ("not a target", Some(alone), 2, 0),
            ("the primary of a split", Some(split(1, 2, 10)), 1, 90),
            ("the secondary of a split", Some(split(1, 2, 10)), 2, 10),
            ("a secondary at 0", Some(split(1, 2, 0)), 2, 0),
        ] {
            assert_eq!(share_of(target.as_ref(), v(version)), share, "{what}");
        }
    }

    #[test]
    fn what_a_move_gives_a_version_table() {
        let split = |primary: u32, secondary: u32, weight: i64| AliasTarget {
            version: v(primary),
            secondary: Some((v(secondary), Weight::new(weight).expect("weight"))),
        };
        let alone = |primary: u32| AliasTarget {
            version: v(primary),
            secondary: None,
        };
        for (what, next, now, version, gains_more) in [
            ("a new target", Some(alone(2)), Some(alone(1)), 2, true),
            ("created onto it", Some(alone(2)), None, 2, true),
            (
                "a canary raised",
                Some(split(1, 2, 30)),
                Some(split(1, 2, 10)),
                2,
                true,
            ),
            (
                "a canary lowered",
                Some(split(1, 2, 5)),
                Some(split(1, 2, 10)),
                2,
                false,
            ),
            (
                "a canary kept",
                Some(split(1, 2, 10)),
                Some(split(1, 2, 10)),
                2,
                false,
            ),
            (
                "made primary with less",
                Some(split(2, 1, 99)),
                Some(split(1, 2, 10)),
                2,
                true,
            ),
            (
                "the primary keeps its place",
                Some(split(1, 2, 20)),
                Some(split(1, 2, 10)),
                1,
                false,
            ),
            (
                "the primary made a canary",
                Some(split(2, 1, 10)),
                Some(alone(1)),
                1,
                false,
            ),
            ("dropped", Some(alone(1)), Some(split(1, 2, 10)), 2, false),
            // Review finding: the way back off a canary over an archived
            // primary (a person's rollback, or the move it undoes).
            (
                "a canary taken off the primary",
                Some(alone(1)),
                Some(split(1, 2, 10)),
                1,
                false,
            ),
            (
                "a canary lowered under the primary",
                Some(split(1, 2, 5)),
                Some(split(1, 2, 10)),
                1,
                false,
            ),
            // Review finding: another canary is a new move, and the share
            // the primary gets back by it a gain.
            (
                "the canary swapped for another, smaller one",
                Some(split(1, 3, 1)),
                Some(split(1, 2, 99)),
                1,
                true,
            ),
            (
                "the canary swapped for another of its weight",
                Some(split(1, 3, 10)),
                Some(split(1, 2, 10)),
                1,
                false,
            ),
        ] {
            assert_eq!(
                gains(next.as_ref(), now.as_ref(), v(version)),
                gains_more,
                "{what}"
            );
        }
    }

    #[test]
    fn the_rule_of_an_alias_change_table() {
        use Asked::*;
        use Precondition as P;
        let live = [Target {
            version: v(2),
            row: row(true, false),
            grows: true,
        }];
        let deleted = [Target {
            version: v(2),
            row: row(false, false),
            grows: true,
        }];
        let missing = [Target {
            version: v(2),
            row: None,
            grows: true,
        }];
        let archived = [Target {
            version: v(2),
            row: row(true, true),
            grows: true,
        }];
        let archived_kept = [Target {
            version: v(2),
            row: row(true, true),
            grows: false,
        }];
        let latest_gone = [Target {
            version: Version::Latest,
            row: None,
            grows: true,
        }];
        let none: [Target; 0] = [];
        // (what, asked, precondition, alias row, logged revision, targets, outcome)
        #[rustfmt::skip]
        let table: Vec<Case> = vec![
            ("create a new alias", Put, P::None, None, None, &live, "create r1"),
            ("create after a delete continues the history", Put, P::None, None, Some(4), &live, "create r5"),
            ("move", Put, P::None, at(Some(3), &[v(1)]), None, &live, "move r4"),
            ("move a library alias (no revision)", Put, P::None, at(None, &[v(1)]), Some(2), &live, "move r3"),
            ("If-Match on the revision read", Put, P::Revision(3), at(Some(3), &[v(1)]), None, &live, "move r4"),
            ("If-Match on another revision", Put, P::Revision(2), at(Some(3), &[v(1)]), None, &live, "AliasModified"),
            ("If-Match on an absent alias", Put, P::Revision(0), None, None, &live, "AliasModified"),
            ("If-Match: * on an absent alias", Put, P::Exists, None, None, &live, "AliasModified"),
            ("If-None-Match: * on an existing alias", Put, P::Absent, at(Some(1), &[v(1)]), None, &live, "AliasModified"),
            ("If-None-Match: * on an absent alias", Put, P::Absent, None, Some(7), &live, "create r8"),
            ("a library alias is at revision 0 for If-Match", Put, P::Revision(0), at(None, &[v(1)]), Some(2), &live, "move r3"),
            ("If-Match on the library row read", Put, P::LibraryRow(1_000), at(None, &[v(1)]), Some(2), &live, "move r3"),
            ("If-Match on a library row written again", Put, P::LibraryRow(999), at(None, &[v(1)]), Some(2), &live, "AliasModified"),
            ("If-Match on a library row moved here since", Put, P::LibraryRow(1_000), at(Some(3), &[v(1)]), None, &live, "AliasModified"),
            ("If-Match on a library row deleted since", Put, P::LibraryRow(1_000), None, Some(2), &live, "AliasModified"),
            ("delete", Delete, P::None, at(Some(3), &[v(1)]), None, &none, "delete r4"),
            ("delete an absent alias", Delete, P::None, None, Some(4), &none, "AliasNotFound"),
            ("delete If-Match another revision", Delete, P::Revision(1), at(Some(3), &[v(1)]), None, &none, "AliasModified"),
            ("rollback re-creates a deleted alias", Rollback, P::None, None, Some(4), &live, "rollback r5"),
            ("onto a deleted version", Put, P::None, at(Some(1), &[v(1)]), None, &deleted, "VersionNotFound"),
            ("onto a version without a row", Put, P::None, at(Some(1), &[v(1)]), None, &missing, "VersionNotFound"),
            ("onto LATEST of a purged artifact", Put, P::None, at(Some(1), &[v(1)]), None, &latest_gone, "ArtifactNotFound"),
            ("rollback onto a deleted version", Rollback, P::None, at(Some(1), &[v(1)]), None, &deleted, "TargetGone"),
            ("onto an archived version", Put, P::None, at(Some(1), &[v(1)]), None, &archived, "VersionArchived"),
            ("an archived version it already points at stays", Put, P::None, at(Some(1), &[v(2)]), None, &archived_kept, "move r2"),
            ("an archived version it points at gains no share", Put, P::None, at(Some(1), &[v(2)]), None, &archived, "VersionArchived"),
        ];
        let name: ArtifactName = "app".parse().expect("name");
        let alias: AliasName = "prod".parse().expect("alias");
        for (what, asked, precondition, current, logged, targets, expected) in table {
            let got = outcome(decide(
                &name,
                &alias,
                asked,
                precondition,
                current.as_ref(),
                logged,
                targets,
            ));
            assert_eq!(got, expected, "{what}");
        }
    }

    #[test]
    fn a_new_alias_must_follow_the_strict_naming_rule_but_an_old_one_may_move() {
        let name: ArtifactName = "app".parse().expect("name");
        // The library writes names this service does not create.
        let alias: AliasName = "v1.0".parse().expect("a name the library allows");
        let refused = alias.check_new().expect_err("not a name created here");
        let target = [Target {
            version: v(1),
            row: row(true, false),
            grows: true,
        }];
        let create = decide(
            &name,
            &alias,
            Asked::Put,
            Precondition::None,
            None,
            None,
            &target,
        );
        assert_eq!(outcome(create), refused.code());
        let old = at(None, &[v(1)]);
        let moved = decide(
            &name,
            &alias,
            Asked::Put,
            Precondition::None,
            old.as_ref(),
            None,
            &target,
        );
        assert_eq!(outcome(moved), "move r1");
    }

    #[test]
    fn a_resolve_key_is_sticky_monotone_in_the_weight_and_takes_about_its_share() {
        let (name, prod) = (
            "canary".parse::<ArtifactName>().unwrap(),
            "prod".parse::<AliasName>().unwrap(),
        );
        let keys: Vec<String> = (0..10_000).map(|i| format!("host-{i}")).collect();
        let buckets: Vec<u8> = keys
            .iter()
            .map(|k| sticky_bucket(&name, &prod, k))
            .collect();
        assert!(buckets.iter().all(|b| *b < 100));
        // Sticky: the same key, the same bucket.
        assert_eq!(buckets[7], sticky_bucket(&name, &prod, "host-7"));
        // Another alias (or artifact) splits the keys differently.
        let staging = "staging".parse::<AliasName>().unwrap();
        assert!(
            keys.iter()
                .zip(&buckets)
                .any(|(k, b)| sticky_bucket(&name, &staging, k) != *b)
        );
        let mut before = vec![false; keys.len()];
        for (weight, low, high) in [
            (0, 0.0, 0.0),
            (10, 8.0, 12.0),
            (25, 23.0, 27.0),
            (50, 48.0, 52.0),
            (99, 98.0, 99.9),
        ] {
            let weight = Weight::new(weight).unwrap();
            let mut secondary = 0;
            for (i, bucket) in buckets.iter().enumerate() {
                let now = takes_secondary(*bucket, weight);
                assert!(
                    !before[i] || now,
                    "key {i} moved back to primary at {weight:?}"
                );
                before[i] = now;
                secondary += usize::from(now);
            }
            let share = secondary as f64 / keys.len() as f64 * 100.0;
            assert!(
                (low..=high).contains(&share),
                "weight {weight:?}: {share}% on secondary"
            );
        }
    }
}
