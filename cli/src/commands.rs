//! The commands that are one API call (or one listing): publish, listings,
//! show, aliases, rollback, history, resolve, rm, retention, purge.

use reqwest::Method;
use serde_json::{Value, json};

use crate::args::{AliasCommand, Command, Reference, parse_reference, parse_version};
use crate::client::Api;
use crate::error::{Error, Result};
use crate::output::{Rendered, alias_targets, field, short_digest, size_field, table};
use crate::progress::Progress;

/// `POST …/versions`: the version, and whether it is new (201) rather than
/// the newest one because LATEST was unchanged (200). A large LATEST
/// of the library is copied in the background (202 with its upload): the
/// publish waits for that upload's verification, which publishes.
pub async fn publish_version(
    api: &Api,
    name: &str,
    force: bool,
    progress: Progress,
) -> Result<(Value, bool)> {
    let body = if force {
        json!({"force": true})
    } else {
        json!({})
    };
    let answer = api
        .call(
            Method::POST,
            &["artifacts", name, "versions"],
            &[],
            Some(&body),
            &[],
        )
        .await?;
    if answer.status == 202 {
        let upload_id = answer
            .body
            .get("upload_id")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Protocol(format!("a 202 without upload_id: {}", answer.body)))?;
        let pipeline = json!({"publish": true, "force": force});
        let done = crate::push::wait_verified(api, name, upload_id, &pipeline, progress).await?;
        let mut published = done.published.ok_or_else(|| {
            Error::Protocol(format!(
                "upload {upload_id} was committed without its publish"
            ))
        })?;
        let created = published
            .as_object_mut()
            .and_then(|o| o.remove("created"))
            .and_then(|c| c.as_bool())
            .unwrap_or(true);
        return Ok((published, created));
    }
    Ok((answer.body, answer.status == 201))
}

fn if_match(revision: Option<u64>) -> Vec<(&'static str, String)> {
    revision
        .map(|r| ("if-match", format!("\"{r}\"")))
        .into_iter()
        .collect()
}

/// `PUT …/aliases/{alias}` with `body`, conditional on `if_revision`.
///
/// A conditional move whose answer was lost and was retried meets its own
/// change: 412. When the alias is then exactly one revision further and
/// points where this call asked, that change was this call's (or one
/// identical to it), and it answers as the first attempt would have.
pub async fn set_alias(
    api: &Api,
    name: &str,
    alias: &str,
    body: &Value,
    if_revision: Option<u64>,
) -> Result<Value> {
    let segments = ["artifacts", name, "aliases", alias];
    match api
        .call(
            Method::PUT,
            &segments,
            &[],
            Some(body),
            &if_match(if_revision),
        )
        .await
    {
        Ok(answer) => Ok(answer.body),
        Err(e @ Error::Api { status: 412, .. }) => {
            let Some(expected) = if_revision else {
                return Err(e);
            };
            // The alias gone (or never there) is the 412's own answer:
            // the precondition failed, not a missing thing (exit 4, not 3).
            let now = match api.get(&segments, &[]).await {
                Ok(now) => now.body,
                Err(Error::Api { status: 404, .. }) => return Err(e),
                Err(other) => return Err(other),
            };
            let same = |k: &str| now.get(k) == body.get(k).or(Some(&Value::Null));
            let landed = now.get("revision").and_then(Value::as_u64) == Some(expected + 1)
                && same("version")
                && same("secondary_version")
                && same("secondary_version_weight");
            if landed { Ok(now) } else { Err(e) }
        }
        Err(e) => Err(e),
    }
}

fn version_arg(s: &str) -> Result<String> {
    parse_version(s).map_err(Error::Usage)
}

fn versions_table(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|v| {
            vec![
                field(v, "version"),
                size_field(v),
                short_digest(v),
                field(v, "update_at"),
                field(v, "created_by"),
                v.get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("active")
                    .to_owned(),
            ]
        })
        .collect();
    table(
        &["VERSION", "SIZE", "SHA256", "UPDATED", "BY", "STATUS"],
        &rows,
    )
}

fn artifact_details(a: &Value) -> String {
    let mut lines = vec![
        format!("name:         {}", field(a, "name")),
        format!("version:      {}", field(a, "version")),
        format!("sha256:       {}", field(a, "sha256")),
        format!("size:         {}", size_field(a)),
        format!("content type: {}", field(a, "content_type")),
        format!("updated:      {}", field(a, "update_at")),
        format!("created by:   {}", field(a, "created_by")),
        format!("s3uri:        {}", field(a, "s3uri")),
    ];
    if let Some(status) = a.get("status").and_then(Value::as_str) {
        let why = a
            .get("status_message")
            .and_then(Value::as_str)
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        lines.push(format!("status:       {status}{why}"));
    }
    if let Some(meta) = a.get("metadata").and_then(Value::as_object) {
        for (k, v) in meta {
            lines.push(format!("meta {k}: {}", v.as_str().unwrap_or_default()));
        }
    }
    if a.get("download_url").is_some() {
        lines.push(format!("download url: {}", field(a, "download_url")));
    }
    lines.join("\n")
}

fn alias_details(a: &Value) -> String {
    format!(
        "{}:{} -> {} (revision {}, updated {})",
        field(a, "name"),
        field(a, "alias"),
        alias_targets(a),
        field(a, "revision"),
        field(a, "update_at")
    )
}

fn items(items: Vec<Value>) -> Value {
    json!({"items": items})
}

/// Runs every command that is not push, pull or completions.
pub async fn run(api: &Api, command: &Command, progress: Progress) -> Result<Rendered> {
    match command {
        Command::Publish { name, force } => {
            let (artifact, created) = publish_version(api, name, *force, progress).await?;
            let text = format!(
                "published {name}@{}{}",
                field(&artifact, "version"),
                if created {
                    String::new()
                } else {
                    " (LATEST unchanged: this is the newest version; --force publishes anyway)"
                        .into()
                }
            );
            let Value::Object(mut json) = artifact else {
                return Err(Error::Protocol(format!(
                    "the publish answer is not a JSON object: {artifact}"
                )));
            };
            json.insert("created".into(), json!(created));
            Ok(Rendered::new(Value::Object(json), text))
        }
        Command::Ls { name: None } => {
            let names = api.list_all(&["artifacts"]).await?;
            let text = names
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n");
            Ok(Rendered::new(items(names), text))
        }
        Command::Ls { name: Some(name) } | Command::Versions { name } => {
            let versions = api.list_all(&["artifacts", name, "versions"]).await?;
            let text = versions_table(&versions);
            Ok(Rendered::new(items(versions), text))
        }
        Command::Show { reference } => {
            let (name, version) = match parse_reference(reference).map_err(Error::Usage)? {
                Reference::Version(n, v) => (n, v),
                Reference::Alias(..) => {
                    return Err(Error::Usage(
                        "show takes NAME or NAME@VERSION; for an alias use `alias get` or `resolve`"
                            .into(),
                    ));
                }
            };
            let artifact = api
                .get(&["artifacts", &name, "versions", &version], &[])
                .await?
                .body;
            let text = artifact_details(&artifact);
            Ok(Rendered::new(artifact, text))
        }
        Command::Alias(c) => alias(api, c).await,
        Command::Rollback {
            name,
            alias,
            to_revision,
            if_revision,
            message,
        } => {
            let mut body = json!({});
            if let Some(r) = to_revision {
                body["to_revision"] = json!(r);
            }
            if let Some(m) = message {
                body["message"] = json!(m);
            }
            let rolled = api
                .call(
                    Method::POST,
                    &["artifacts", name, "aliases", alias, "rollback"],
                    &[],
                    Some(&body),
                    &if_match(*if_revision),
                )
                .await?
                .body;
            let text = format!("rolled back {}", alias_details(&rolled));
            Ok(Rendered::new(rolled, text))
        }
        Command::History { name, alias } => {
            let changes = api
                .list_all(&["artifacts", name, "aliases", alias, "history"])
                .await?;
            let rows: Vec<Vec<String>> = changes
                .iter()
                .map(|c| {
                    vec![
                        field(c, "revision"),
                        field(c, "at"),
                        field(c, "action"),
                        alias_targets(c),
                        c.get("previous")
                            .filter(|p| !p.is_null())
                            .map_or_else(|| "-".into(), alias_targets),
                        field(c, "actor"),
                        field(c, "message"),
                    ]
                })
                .collect();
            let text = table(
                &["REV", "AT", "ACTION", "TARGET", "BEFORE", "BY", "MESSAGE"],
                &rows,
            );
            Ok(Rendered::new(items(changes), text))
        }
        Command::Resolve { name, alias, key } => {
            let query: Vec<(&str, &str)> = key.as_deref().map(|k| ("key", k)).into_iter().collect();
            let resolved = api
                .get(&["artifacts", name, "aliases", alias, "resolve"], &query)
                .await?
                .body;
            crate::pull::warn_of_status(&resolved, name);
            let text = format!(
                "{name}:{alias} -> {} (sha256 {}, alias revision {})",
                field(&resolved, "version"),
                field(&resolved, "sha256"),
                field(&resolved, "revision")
            );
            Ok(Rendered::new(resolved, text))
        }
        Command::Rm { name, version } => {
            let version = version_arg(version)?;
            api.call(
                Method::DELETE,
                &["artifacts", name, "versions", &version],
                &[],
                None,
                &[],
            )
            .await?;
            Ok(Rendered::new(
                json!({"deleted": true, "name": name, "version": version}),
                format!("deleted {name}@{version}"),
            ))
        }
        Command::Access(access) => access_command(api, access).await,
        Command::Search {
            sha256,
            meta,
            query: expression,
        } => {
            let mut query: Vec<(String, String)> = Vec::new();
            match sha256 {
                None if expression.is_some() => {
                    query.push(("q".into(), expression.clone().unwrap_or_default()));
                }
                Some(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    query.push(("sha256".into(), s.to_ascii_lowercase()));
                }
                Some(path) => {
                    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
                    let digests = crate::multipart::digest(file, None, |_| {})
                        .map_err(|e| Error::io(path, e))?;
                    query.push(("sha256".into(), digests.hex()));
                }
                None if meta.is_empty() => {
                    return Err(Error::Usage(
                        "search needs --sha256, --meta k=v or --query".into(),
                    ));
                }
                None => {}
            }
            query.extend(meta.iter().map(|(k, v)| (format!("meta.{k}"), v.clone())));
            let pairs: Vec<(&str, &str)> = query
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let hits = api.list_all_with(&["search"], &pairs).await?;
            let text = hits
                .iter()
                .map(|h| {
                    let aliases = h["aliases"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default();
                    format!(
                        "{}@{}\t{}{}",
                        field(h, "name"),
                        field(h, "version"),
                        field(h, "sha256"),
                        if aliases.is_empty() {
                            String::new()
                        } else {
                            format!("\t{aliases}")
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            Ok(Rendered::new(items(hits), text))
        }
        Command::Deprecate { reference, message }
        | Command::Archive { reference, message }
        | Command::Reactivate { reference, message } => {
            let status = match command {
                Command::Deprecate { .. } => "deprecated",
                Command::Archive { .. } => "archived",
                _ => "active",
            };
            let (name, version) = match parse_reference(reference).map_err(Error::Usage)? {
                Reference::Version(n, v) if v != "LATEST" => (n, v),
                _ => {
                    return Err(Error::Usage(
                        "give a published version: NAME@VERSION".into(),
                    ));
                }
            };
            let mut body = json!({"status": status});
            if let Some(m) = message {
                body["message"] = json!(m);
            }
            let artifact = api
                .call(
                    Method::PATCH,
                    &["artifacts", &name, "versions", &version],
                    &[],
                    Some(&body),
                    &[],
                )
                .await?
                .body;
            let text = format!("{name}@{version} is {status}");
            Ok(Rendered::new(artifact, text))
        }
        Command::Retention {
            name,
            keep,
            older_than,
            dry_run,
        } => {
            let mut body = json!({"dry_run": dry_run});
            if let Some(k) = keep {
                body["keep_last_n"] = json!(k);
            }
            if let Some(s) = older_than {
                body["purge_older_than_secs"] = json!(s);
            }
            let report = api
                .call(
                    Method::POST,
                    &["artifacts", name, "purge"],
                    &[],
                    Some(&body),
                    &[],
                )
                .await?
                .body;
            let deleted = report
                .get("deleted")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let verb = if *dry_run { "would delete" } else { "deleted" };
            let mut text = format!("{name}: {verb} {} version(s)", deleted.len());
            if !deleted.is_empty() {
                text.push('\n');
                text.push_str(&versions_table(&deleted));
            }
            Ok(Rendered::new(report, text))
        }
        Command::Purge { name, yes } => {
            if !yes {
                return Err(Error::Usage(format!(
                    "purging {name} deletes every version, alias, history entry and byte; pass --yes"
                )));
            }
            api.call(Method::DELETE, &["artifacts", name], &[], None, &[])
                .await?;
            Ok(Rendered::new(
                json!({"purged": true, "name": name}),
                format!("purged {name}"),
            ))
        }
        Command::Push(_)
        | Command::Pull(_)
        | Command::Rollout(_)
        | Command::Doctor { .. }
        | Command::Completions { .. } => Err(Error::Protocol(
            "push, pull and completions are not single calls".into(),
        )),
    }
}

async fn alias(api: &Api, command: &AliasCommand) -> Result<Rendered> {
    match command {
        AliasCommand::Set {
            name,
            alias,
            version,
            canary,
            weight,
            if_revision,
            message,
        } => {
            let mut body = json!({"version": version_arg(version)?});
            if let (Some(c), Some(w)) = (canary, weight) {
                body["secondary_version"] = json!(version_arg(c)?);
                body["secondary_version_weight"] = json!(w);
            }
            if let Some(m) = message {
                body["message"] = json!(m);
            }
            let set = set_alias(api, name, alias, &body, *if_revision).await?;
            let text = alias_details(&set);
            Ok(Rendered::new(set, text))
        }
        AliasCommand::Get { name, alias, at } => {
            let query: Vec<(&str, &str)> = at.as_deref().map(|t| ("at", t)).into_iter().collect();
            let found = api
                .get(&["artifacts", name, "aliases", alias], &query)
                .await?
                .body;
            let text = alias_details(&found);
            Ok(Rendered::new(found, text))
        }
        AliasCommand::Ls { name } => {
            let aliases = api.list_all(&["artifacts", name, "aliases"]).await?;
            let rows: Vec<Vec<String>> = aliases
                .iter()
                .map(|a| {
                    vec![
                        field(a, "alias"),
                        alias_targets(a),
                        field(a, "revision"),
                        field(a, "update_at"),
                    ]
                })
                .collect();
            let text = table(&["ALIAS", "TARGET", "REV", "UPDATED"], &rows);
            Ok(Rendered::new(items(aliases), text))
        }
        AliasCommand::Rm {
            name,
            alias,
            if_revision,
            message,
        } => {
            let body = message.as_ref().map(|m| json!({"message": m}));
            api.call(
                Method::DELETE,
                &["artifacts", name, "aliases", alias],
                &[],
                body.as_ref(),
                &if_match(*if_revision),
            )
            .await?;
            Ok(Rendered::new(
                json!({"deleted": true, "name": name, "alias": alias}),
                format!("deleted alias {name}:{alias}"),
            ))
        }
    }
}

/// `artifact access get|set|history` (SPEC 10.4).
async fn access_command(api: &Api, command: &crate::args::AccessCommand) -> Result<Rendered> {
    use crate::args::AccessCommand;
    let describe = |doc: &Value| {
        let targets = doc["targets"].as_array().cloned().unwrap_or_default();
        let mut text = format!(
            "permission targets at revision {}{}",
            doc["revision"],
            if targets.is_empty() {
                " (none: every caller may do everything)"
            } else {
                ""
            }
        );
        for t in &targets {
            let list = |k: &str| {
                t[k].as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default()
            };
            text.push_str(&format!(
                "\n{} -> {} on {}{}{}",
                list("principals"),
                list("actions"),
                list("names"),
                if t["exclude"].is_array() {
                    format!(" except {}", list("exclude"))
                } else {
                    String::new()
                },
                if t["aliases"].is_array() {
                    format!(" (promote: {})", list("aliases"))
                } else {
                    String::new()
                }
            ));
        }
        text
    };
    match command {
        AccessCommand::Get => {
            let answer = api.call(Method::GET, &["access"], &[], None, &[]).await?;
            let text = describe(&answer.body);
            Ok(Rendered::new(answer.body, text))
        }
        AccessCommand::Set { file, if_revision } => {
            let text = std::fs::read_to_string(file).map_err(|e| Error::io(file.display(), e))?;
            let document: Value = serde_json::from_str(&text).map_err(|e| {
                Error::Usage(format!("{}: not a JSON document: {e}", file.display()))
            })?;
            let headers: Vec<(&str, String)> = if_revision
                .map(|r| vec![("if-match", format!("\"{r}\""))])
                .unwrap_or_default();
            let answer = api
                .call(Method::PUT, &["access"], &[], Some(&document), &headers)
                .await?;
            let text = describe(&answer.body);
            Ok(Rendered::new(answer.body, text))
        }
        AccessCommand::Grant {
            principal,
            actions,
            names,
            exclude,
            aliases,
        } => {
            let mut target = json!({"principals": [principal], "names": names, "actions": actions});
            if !exclude.is_empty() {
                target["exclude"] = json!(exclude);
            }
            if !aliases.is_empty() {
                target["aliases"] = json!(aliases);
            }
            let answer = edit_targets(api, |targets| targets.push(target.clone()))
                .await?
                .ok_or_else(|| Error::Usage("the grant changed nothing".into()))?;
            let text = describe(&answer);
            Ok(Rendered::new(answer, text))
        }
        AccessCommand::Revoke { principal, names } => {
            let matches = |t: &Value| {
                t["principals"] == json!([principal])
                    && (names.is_empty() || t["names"] == json!(names))
            };
            let answer = edit_targets(api, |targets| targets.retain(|t| !matches(t))).await?;
            // Nothing matched: nothing is written (the history records
            // changes only), and the caller hears so, as `rm` of nothing.
            let answer = answer.ok_or_else(|| Error::Api {
                status: 404,
                code: "TargetNotFound".into(),
                message: format!(
                    "no target is {principal}'s alone with exactly those names; nothing revoked"
                ),
            })?;
            let text = describe(&answer);
            Ok(Rendered::new(answer, text))
        }
        AccessCommand::Test {
            principal,
            action,
            name,
            alias,
        } => {
            let mut query = vec![
                ("principal", principal.as_str()),
                ("action", action.as_str()),
            ];
            if let Some(n) = name {
                query.push(("name", n));
            }
            if let Some(a) = alias {
                query.push(("alias", a));
            }
            let answer = api
                .call(Method::GET, &["access"], &query, None, &[])
                .await?;
            if answer.body["allowed"] == json!(true) {
                let text = format!("allowed: {principal} may {action}");
                Ok(Rendered::new(answer.body, text))
            } else {
                Err(Error::Api {
                    status: 403,
                    code: "AccessDenied".into(),
                    message: answer.body["reason"]
                        .as_str()
                        .unwrap_or("denied")
                        .to_owned(),
                })
            }
        }
        AccessCommand::History => {
            let changes = api.list_all_with(&["access", "history"], &[]).await?;
            let text = changes
                .iter()
                .map(|c| {
                    format!(
                        "{}\t{}\t{}\t{} targets (was {})",
                        c["revision"],
                        field(c, "at"),
                        field(c, "actor"),
                        c["targets"]["targets"].as_array().map_or(0, Vec::len),
                        c["previous"]["targets"].as_array().map_or(0, Vec::len)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            Ok(Rendered::new(items(changes), text))
        }
    }
}

/// Reads the targets, changes them with `edit`, and writes them back only
/// if nobody changed them meanwhile (If-Match on the revision read).
/// The targets as `edit` leaves them, written on the revision read; None
/// (and nothing written) when `edit` changed nothing.
async fn edit_targets(api: &Api, edit: impl Fn(&mut Vec<Value>)) -> Result<Option<Value>> {
    let current = api.call(Method::GET, &["access"], &[], None, &[]).await?;
    let before = current.body["targets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut targets = before.clone();
    edit(&mut targets);
    if targets == before {
        return Ok(None);
    }
    let revision = current.body["revision"].as_u64().unwrap_or(0);
    let answer = api
        .call(
            Method::PUT,
            &["access"],
            &[],
            Some(&json!({ "targets": targets })),
            &[("if-match", format!("\"{revision}\""))],
        )
        .await?;
    Ok(Some(answer.body))
}
