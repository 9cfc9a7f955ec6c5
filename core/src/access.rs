//! Access control (SPEC 10.4, invariant 18): permission targets, and the
//! decision whether a caller may perform an action on a name. Pure: the
//! targets are read by the repository (`repository/permissions.rs`), the caller
//! comes from the request (`http::actor`), and `api::Operation::handle`
//! asks [`decide`] before every route runs.
//!
//! A target grants `actions` on the artifact names matching `names` (and
//! none of `exclude`) to the principals matching `principals`; `promote`
//! only on aliases matching `aliases` (default: every alias). Patterns are
//! globs: `*` any run of characters, `?` one. An IAM assumed-role session
//! (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`) also matches as its
//! role (`arn:aws:iam::ACCOUNT:role/ROLE`). A principal pattern
//! `tag:KEY=VALUE` matches a caller whose IAM role or user carries tag KEY
//! with a value matching VALUE (the tags are looked up by the repository,
//! in the deployment's own account only: [`tag_subject`]). With no target
//! at all every caller may do everything (a deployment stays open until its
//! first target); once one exists, what no target grants is denied.

use std::collections::BTreeMap;

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

/// A principal's IAM tags, key to value.
pub type Tags = BTreeMap<String, String>;

/// Who asks: the caller's ARN, and the tags of its IAM role or user (empty
/// when no target names a tag, or the principal has none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub arn: String,
    pub tags: Tags,
}

impl Caller {
    /// A caller known by its ARN alone.
    pub fn new(arn: impl Into<String>) -> Self {
        Self {
            arn: arn.into(),
            tags: Tags::new(),
        }
    }
}

/// The prefix of a principal pattern that names a tag: `tag:KEY=VALUE`.
pub const TAG_PREFIX: &str = "tag:";

/// The IAM entity whose tags a caller carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TagSubject {
    /// A role, by name (`ListRoleTags`).
    Role(String),
    /// A user, by name (`ListUserTags`).
    User(String),
}

/// Whether `name` can name an IAM role or user (1 to 64 of `A-Z a-z 0-9`
/// and `+=,.@_-`): no other has tags, and IAM refuses to be asked about
/// one (a ValidationError, which answered 502 to a client's input).
fn iam_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

/// Whose tags `caller` carries, if its ARN is a role, an assumed-role
/// session or a user of `account` (the deployment's own: IAM names are
/// unique per account only, so a same-named role of another account must
/// not borrow ours). A path (`role/ci/build`) ends in the name.
pub fn tag_subject(caller: &str, account: &str) -> Option<TagSubject> {
    let rest = caller.strip_prefix("arn:")?;
    let [_partition, service, "", owner, resource] = rest.splitn(5, ':').collect::<Vec<_>>()[..]
    else {
        return None;
    };
    if owner != account || account.is_empty() {
        return None;
    }
    let last = |path: &str| {
        path.rsplit('/')
            .next()
            .filter(|n| iam_name(n))
            .map(str::to_owned)
    };
    match service {
        "iam" => {
            if let Some(path) = resource.strip_prefix("role/") {
                last(path).map(TagSubject::Role)
            } else if let Some(path) = resource.strip_prefix("user/") {
                last(path).map(TagSubject::User)
            } else {
                None
            }
        }
        "sts" => {
            let session = resource.strip_prefix("assumed-role/")?;
            let (role, _) = session.split_once('/')?;
            iam_name(role).then(|| TagSubject::Role(role.to_owned()))
        }
        _ => None,
    }
}

/// One permission target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// IAM principal ARN patterns (`local-api`: the caller header's value),
    /// or principal tags, `tag:KEY=VALUE` (VALUE a pattern).
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
            if let Some(bad) = t.principals.iter().find(|p| {
                p.strip_prefix(TAG_PREFIX).is_some_and(|tag| {
                    tag.split_once('=')
                        .is_none_or(|(key, _)| key.is_empty() || key.len() > 128)
                })
            }) {
                return Err(Error::InvalidRequest(format!(
                    "targets[{i}].principals: {bad:?} names a tag as tag:KEY=VALUE, KEY 1 to 128 characters"
                )));
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

    /// Whether any target names a principal tag (only then are a caller's
    /// tags looked up).
    pub fn names_tags(&self) -> bool {
        self.targets
            .iter()
            .flat_map(|t| &t.principals)
            .any(|p| p.starts_with(TAG_PREFIX))
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
pub fn decide(
    targets: &Targets,
    caller: &Caller,
    need: &Need<'_>,
) -> std::result::Result<(), String> {
    if targets.targets.is_empty() {
        return Ok(());
    }
    let principals = principal_forms(&caller.arn);
    let matches = |pattern: &str| match pattern.strip_prefix(TAG_PREFIX) {
        // IAM tag keys are case-insensitive (aws:PrincipalTag), values not.
        Some(tag) => tag.split_once('=').is_some_and(|(key, value)| {
            caller
                .tags
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case(key) && glob(value, v))
        }),
        None => principals.iter().any(|c| glob(pattern, c)),
    };
    let grants = |t: &Target| {
        t.principals.iter().any(|p| matches(p))
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
                // A move of an alias not known by name: only a target that
                // grants every alias grants it (closed, not open).
                (Action::Promote, None, Some(patterns)) => {
                    t.actions.contains(&Action::Admin) || patterns.iter().any(|p| p == "*")
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
        (Some(name), None) if need.action == Action::Promote => {
            format!("an alias of {name:?} the request does not name readably")
        }
        (Some(name), _) => format!("{name:?}"),
    };
    Err(format!(
        "{} may not {} {on}: no permission target grants it",
        caller.arn,
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
        let every_alias = "arn:aws:iam::1:role/deployer";
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
                Target {
                    aliases: Some(vec!["*".into()]),
                    ..target(&[every_alias], &["*"], &[Promote])
                },
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
            // A move of an alias the request does not name readably: only
            // a grant of every alias covers it.
            (team_a, need(Promote, Some("team-a.app"), None), false),
            (release, need(Promote, Some("team-b.app"), None), false),
            (admin, need(Promote, Some("team-b.app"), None), true),
            (every_alias, need(Promote, Some("team-b.app"), None), true),
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
            let got = decide(&targets, &Caller::new(caller), &need);
            assert_eq!(got.is_ok(), want, "{caller} {need:?}: {got:?}");
        }
        // No target at all: open.
        assert!(
            decide(
                &Targets::default(),
                &Caller::new("anyone"),
                &need(Admin, None, None)
            )
            .is_ok()
        );
        let denied = decide(
            &targets,
            &Caller::new(team_a),
            &need(Write, Some("team-b.app"), None),
        );
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
            r#"{"targets": [{"principals": ["tag:team"], "names": ["*"], "actions": ["read"]}]}"#,
            r#"{"targets": [{"principals": ["tag:=a"], "names": ["*"], "actions": ["read"]}]}"#,
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

    #[test]
    fn principal_tags_grant_to_whoever_carries_them() {
        use Action::*;
        let targets = Targets {
            targets: vec![
                target(&["tag:team=payments"], &["payments.*"], &[Read, Write]),
                target(&["tag:tier=gold-*"], &["*"], &[Read]),
            ],
        };
        assert!(targets.names_tags());
        assert!(targets.validate().is_ok());
        let with = |tags: &[(&str, &str)]| Caller {
            arn: "arn:aws:sts::1:assumed-role/ci/build".into(),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let write = Need {
            action: Write,
            name: Some("payments.api"),
            alias: None,
        };
        let read_other = Need {
            action: Read,
            name: Some("search.index"),
            alias: None,
        };
        for (caller, need, want) in [
            (with(&[("team", "payments")]), &write, true),
            (with(&[("Team", "payments")]), &write, true),
            (with(&[("team", "Payments")]), &write, false),
            (with(&[("team", "search")]), &write, false),
            (with(&[]), &write, false),
            (with(&[("team", "payments")]), &read_other, false),
            (with(&[("tier", "gold-eu")]), &read_other, true),
            (with(&[("tier", "silver")]), &read_other, false),
        ] {
            assert_eq!(
                decide(&targets, &caller, need).is_ok(),
                want,
                "{caller:?} {need:?}"
            );
        }
        // A tag pattern is never an ARN pattern: an ARN spelled like one
        // matches nothing.
        let arn_like = Caller::new("tag:team=payments");
        assert!(decide(&targets, &arn_like, &write).is_err());
        let plain = Targets {
            targets: vec![target(&["arn:aws:iam::1:role/*"], &["*"], &[Read])],
        };
        assert!(!plain.names_tags());
    }

    #[test]
    fn tags_are_looked_up_for_roles_sessions_and_users_of_this_account_only() {
        let role = |n: &str| Some(TagSubject::Role(n.to_owned()));
        for (caller, want) in [
            ("arn:aws:iam::111:role/ci", role("ci")),
            ("arn:aws:iam::111:role/teams/a/ci", role("ci")),
            ("arn:aws:sts::111:assumed-role/ci/build-7", role("ci")),
            ("arn:aws-cn:sts::111:assumed-role/ci/build-7", role("ci")),
            (
                "arn:aws:iam::111:user/ops/alice",
                Some(TagSubject::User("alice".into())),
            ),
            ("arn:aws:sts::222:assumed-role/ci/build-7", None),
            ("arn:aws:iam::222:role/ci", None),
            ("arn:aws:iam::111:root", None),
            ("arn:aws:iam::111:role/", None),
            ("arn:aws:sts::111:federated-user/bob", None),
            ("arn:aws:s3:::111", None),
            ("local", None),
            ("tag:team=payments", None),
            // Names IAM refuses to be asked about (a 502 from a client's
            // `?principal=`): no tags.
            ("arn:aws:iam::111:role/a b", None),
            ("arn:aws:sts::111:assumed-role/a%20b/s", None),
            (&format!("arn:aws:iam::111:role/{}", "r".repeat(65)), None),
            (
                "arn:aws:iam::111:role/ci+deploy=x,y.z@w_v-u",
                role("ci+deploy=x,y.z@w_v-u"),
            ),
        ] {
            assert_eq!(tag_subject(caller, "111"), want, "{caller}");
        }
        assert_eq!(tag_subject("arn:aws:iam:::role/ci", ""), None);
    }
}
