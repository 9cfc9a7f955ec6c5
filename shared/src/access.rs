//! Access control (SPEC 10.4, invariant 18): permission targets, and the
//! decision whether a caller may perform an action on a name. Pure: the
//! targets are read by the repository (`repository/access.rs`), the caller
//! comes from the request (`http::actor`), and `api::Operation::handle`
//! asks [`decide`] before every route runs.
//!
//! A target grants `actions` on the artifact names matching `names` (and
//! none of `exclude`) to the principals matching `principals`; `promote`
//! only on aliases matching `aliases` (default: every alias). Patterns are
//! globs: `*` any run of characters, `?` one. An IAM assumed-role session
//! (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`) also matches as its
//! role (`arn:aws:iam::ACCOUNT:role/ROLE`). With no target at all every
//! caller may do everything (a deployment stays open until its first
//! target); once one exists, what no target grants is denied.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a route does to a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Read versions, aliases, uploads, history; download; list; search.
    Read,
    /// Upload, commit, publish.
    Write,
    /// Delete versions, apply retention, change a version's status.
    Delete,
    /// Move, delete or roll back an alias, run its rollouts.
    Promote,
    /// Everything, plus purge; on names `*`, managing the targets.
    Admin,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Delete => "delete",
            Self::Promote => "promote",
            Self::Admin => "admin",
        }
    }
}

/// One permission target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// IAM principal ARN patterns (`local-api`: the caller header's value).
    pub principals: Vec<String>,
    /// Artifact name patterns.
    pub names: Vec<String>,
    /// Names excluded from `names`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    pub actions: Vec<Action>,
    /// Alias patterns `promote` is limited to (absent: every alias).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aliases: Option<Vec<String>>,
}

/// The whole set of targets, replaced as one document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    pub targets: Vec<Target>,
}

/// Most targets, and patterns per list.
pub const MAX_TARGETS: usize = 200;
pub const MAX_PATTERNS: usize = 50;

impl Targets {
    /// Refuses a document that cannot be meant (400): empty lists, overlong
    /// patterns, too many targets.
    pub fn validate(&self) -> Result<()> {
        if self.targets.len() > MAX_TARGETS {
            return Err(Error::InvalidRequest(format!(
                "at most {MAX_TARGETS} targets"
            )));
        }
        for (i, t) in self.targets.iter().enumerate() {
            let lists = [
                ("principals", &t.principals, false),
                ("names", &t.names, false),
                ("exclude", &t.exclude, true),
            ];
            for (field, list, may_be_empty) in lists {
                if list.is_empty() && !may_be_empty {
                    return Err(Error::InvalidRequest(format!(
                        "targets[{i}].{field} must list at least one pattern"
                    )));
                }
                if list.len() > MAX_PATTERNS
                    || list
                        .iter()
                        .any(|p| p.is_empty() || p.len() > 2048 || p.chars().any(char::is_control))
                {
                    return Err(Error::InvalidRequest(format!(
                        "targets[{i}].{field}: at most {MAX_PATTERNS} patterns of 1 to 2048 printable characters"
                    )));
                }
            }
            if t.actions.is_empty() {
                return Err(Error::InvalidRequest(format!(
                    "targets[{i}].actions must list at least one of read, write, delete, promote, admin"
                )));
            }
            if let Some(aliases) = &t.aliases
                && (aliases.is_empty()
                    || aliases.len() > MAX_PATTERNS
                    || aliases.iter().any(|p| p.is_empty() || p.len() > 1000))
            {
                return Err(Error::InvalidRequest(format!(
                    "targets[{i}].aliases: 1 to {MAX_PATTERNS} patterns of at most 1000 characters"
                )));
            }
        }
        Ok(())
    }
}

/// What a request needs: an action, on a name (none: the targets
/// themselves), on an alias (for `promote`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need<'a> {
    pub action: Action,
    pub name: Option<&'a str>,
    pub alias: Option<&'a str>,
}

/// Whether `caller` may do what `need` says, and if not, why (the 403's
/// message).
pub fn decide(targets: &Targets, caller: &str, need: &Need<'_>) -> std::result::Result<(), String> {
    if targets.targets.is_empty() {
        return Ok(());
    }
    let principals = principal_forms(caller);
    let grants = |t: &Target| {
        t.principals
            .iter()
            .any(|p| principals.iter().any(|c| glob(p, c)))
            && t.actions
                .iter()
                .any(|a| *a == need.action || *a == Action::Admin)
            && match need.name {
                Some(name) => {
                    t.names.iter().any(|p| glob(p, name))
                        && !t.exclude.iter().any(|p| glob(p, name))
                }
                // The targets themselves: an admin of every name.
                None => t.names.iter().any(|p| p == "*") && t.exclude.is_empty(),
            }
            && match (need.action, need.alias, &t.aliases) {
                (Action::Promote, Some(alias), Some(patterns)) => {
                    t.actions.contains(&Action::Admin) || patterns.iter().any(|p| glob(p, alias))
                }
                _ => true,
            }
    };
    if targets.targets.iter().any(grants) {
        return Ok(());
    }
    let on = match (need.name, need.alias) {
        (None, _) => "the permission targets".to_owned(),
        (Some(name), Some(alias)) if need.action == Action::Promote => {
            format!("alias {alias:?} of {name:?}")
        }
        (Some(name), _) => format!("{name:?}"),
    };
    Err(format!(
        "{caller} may not {} {on}: no permission target grants it",
        need.action.as_str()
    ))
}

/// The caller, and for an assumed-role session also its role's ARN.
fn principal_forms(caller: &str) -> Vec<String> {
    let mut forms = vec![caller.to_owned()];
    if let Some(rest) = caller.strip_prefix("arn:")
        && let [partition, "sts", "", account, resource] =
            rest.splitn(5, ':').collect::<Vec<_>>()[..]
        && let Some(session) = resource.strip_prefix("assumed-role/")
        && let Some((role, _)) = session.split_once('/')
    {
        forms.push(format!("arn:{partition}:iam::{account}:role/{role}"));
    }
    forms
}

/// Glob match: `*` any run of characters (also none), `?` one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(principals: &[&str], names: &[&str], actions: &[Action]) -> Target {
        Target {
            principals: principals.iter().map(|s| (*s).to_owned()).collect(),
            names: names.iter().map(|s| (*s).to_owned()).collect(),
            exclude: Vec::new(),
            actions: actions.to_vec(),
            aliases: None,
        }
    }

    #[test]
    fn globs_match_as_documented() {
        for (pattern, text, want) in [
            ("*", "", true),
            ("*", "anything", true),
            ("team-a.*", "team-a.app", true),
            ("team-a.*", "team-a", false),
            ("team-a.*", "team-b.app", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            (
                "arn:aws:iam::1:role/ci-*",
                "arn:aws:iam::1:role/ci-build",
                true,
            ),
            (
                "arn:aws:iam::1:role/ci-*",
                "arn:aws:iam::2:role/ci-build",
                false,
            ),
            ("*prod*", "my-prod-x", true),
            ("exact", "exactly", false),
        ] {
            assert_eq!(glob(pattern, text), want, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn who_may_do_what() {
        use Action::*;
        let team_a = "arn:aws:iam::1:role/team-a-ci";
        let reader = "arn:aws:iam::1:role/dashboards";
        let release = "arn:aws:iam::1:role/release";
        let admin = "arn:aws:iam::1:role/platform";
        let mut release_target = target(&[release], &["*"], &[Promote]);
        release_target.aliases = Some(vec!["prod".into()]);
        let mut team_target = target(&[team_a], &["team-a.*"], &[Read, Write, Delete, Promote]);
        team_target.exclude = vec!["team-a.secret".into()];
        team_target.aliases = Some(vec!["staging".into(), "dev-*".into()]);
        let targets = Targets {
            targets: vec![
                team_target,
                target(&[reader], &["*"], &[Read]),
                release_target,
                target(&[admin], &["*"], &[Admin]),
            ],
        };
        let need = |action, name: Option<&'static str>, alias: Option<&'static str>| Need {
            action,
            name,
            alias,
        };
        let cases = [
            (team_a, need(Write, Some("team-a.app"), None), true),
            (team_a, need(Write, Some("team-b.app"), None), false),
            (team_a, need(Read, Some("team-a.secret"), None), false),
            (team_a, need(Admin, Some("team-a.app"), None), false),
            (
                team_a,
                need(Promote, Some("team-a.app"), Some("staging")),
                true,
            ),
            (
                team_a,
                need(Promote, Some("team-a.app"), Some("dev-1")),
                true,
            ),
            (
                team_a,
                need(Promote, Some("team-a.app"), Some("prod")),
                false,
            ),
            (reader, need(Read, Some("team-b.app"), None), true),
            (reader, need(Write, Some("team-b.app"), None), false),
            (reader, need(Delete, Some("team-b.app"), None), false),
            (
                release,
                need(Promote, Some("team-b.app"), Some("prod")),
                true,
            ),
            (
                release,
                need(Promote, Some("team-b.app"), Some("staging")),
                false,
            ),
            (release, need(Read, Some("team-b.app"), None), false),
            (admin, need(Admin, Some("anything"), None), true),
            (admin, need(Promote, Some("x"), Some("prod")), true),
            (admin, need(Admin, None, None), true),
            (team_a, need(Admin, None, None), false),
            (
                "arn:aws:sts::1:assumed-role/team-a-ci/build-77",
                need(Write, Some("team-a.app"), None),
                true,
            ),
            (
                "arn:aws:sts::1:assumed-role/team-a-cix/build-77",
                need(Write, Some("team-a.app"), None),
                false,
            ),
            ("anonymous", need(Read, Some("team-a.app"), None), false),
        ];
        for (caller, need, want) in cases {
            let got = decide(&targets, caller, &need);
            assert_eq!(got.is_ok(), want, "{caller} {need:?}: {got:?}");
        }
        // No target at all: open.
        assert!(decide(&Targets::default(), "anyone", &need(Admin, None, None)).is_ok());
        let denied = decide(&targets, team_a, &need(Write, Some("team-b.app"), None));
        assert!(denied.is_err_and(|m| m.contains("may not write \"team-b.app\"")));
    }

    #[test]
    fn documents_that_cannot_be_meant_are_refused() {
        let ok = Targets {
            targets: vec![target(&["*"], &["*"], &[Action::Read])],
        };
        assert!(ok.validate().is_ok());
        for bad in [
            r#"{"targets": [{"principals": [], "names": ["*"], "actions": ["read"]}]}"#,
            r#"{"targets": [{"principals": ["*"], "names": ["*"], "actions": []}]}"#,
            r#"{"targets": [{"principals": ["*"], "names": [""], "actions": ["read"]}]}"#,
            r#"{"targets": [{"principals": ["*"], "names": ["*"], "actions": ["read"], "aliases": []}]}"#,
        ] {
            let doc: Targets = serde_json::from_str(bad).expect("parses");
            assert!(doc.validate().is_err(), "{bad}");
        }
        for unparsable in [
            r#"{"targets": [{"principals": ["*"], "names": ["*"], "actions": ["fly"]}]}"#,
            r#"{"targets": [{"principals": ["*"], "names": ["*"], "actions": ["read"], "extra": 1}]}"#,
        ] {
            assert!(
                serde_json::from_str::<Targets>(unparsable).is_err(),
                "{unparsable}"
            );
        }
    }
}
