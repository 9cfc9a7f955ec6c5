//! The checker: what the history of answers allows, against what the store
//! holds once background work has drained (SPEC 7, invariants 1–18 as the
//! checker issue lists them).

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use shared::Repository;
use test_support::TestStore;

use super::client::{Call, answer, list_all};
use super::history::{Event, Outcome};
use super::workload::{ALIASES, Library, NAMES, sha256_hex};

/// One broken invariant, with the events that show it.
#[derive(Debug)]
pub struct Violation {
    pub invariant: &'static str,
    pub name: String,
    pub what: String,
    pub events: Vec<usize>,
}

/// Slack after an unanswered request's end during which its writes may
/// still land (the proxy's delays and holds are shorter).
const LANDING_SLACK_MS: u64 = 1_000;

type Item = std::collections::HashMap<String, AttributeValue>;

fn text(item: &Item, key: &str) -> Option<String> {
    item.get(key).and_then(|v| v.as_s().ok()).cloned()
}

fn version_of(body: &Value) -> Option<u64> {
    body["version"].as_str()?.parse().ok()
}

/// Events that could have removed or replaced version `v` of `name`
/// after `after_ms`: deletes of it, retention that (maybe) deleted it,
/// purges.
fn may_have_removed(events: &[Event], name: &str, v: u64, after_ms: u64) -> bool {
    events.iter().any(|e| {
        e.name == name
            && e.end_ms + LANDING_SLACK_MS >= after_ms
            && !e.outcome.refused()
            && match e.op {
                "delete-version" => e.request["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(&format!("/versions/{v}"))),
                "lib-delete" => e.request["version"].as_u64() == Some(v),
                "retention" => {
                    !e.outcome.ok()
                        || e.outcome.body()["deleted"]
                            .as_array()
                            .is_some_and(|d| d.iter().any(|a| version_of(a) == Some(v)))
                }
                "purge" => true,
                _ => false,
            }
    })
}

/// The operation name of a start upload (with `commit`, also a commit).
const START: &str = "start-upload";

/// A commit: of an upload (again, for a recommit), or a start upload with
/// `commit` that committed (200) or may have (no clear answer); one that
/// answered a ticket (201) committed nothing.
fn is_commit(e: &Event) -> bool {
    match e.op {
        "commit" | "recommit" => true,
        START => e.request["body"]["commit"] == json!(true) && e.outcome.status() != Some(201),
        _ => false,
    }
}

/// The upload a commit committed: the one it names, or the one a start
/// upload with `commit` answered.
fn upload_of(e: &Event) -> Option<String> {
    let id = if e.op == START {
        e.outcome.body()["upload_id"].as_str()
    } else {
        e.request["body"]["upload_id"].as_str()
    };
    id.map(str::to_owned)
}

fn purged_since(events: &[Event], name: &str, after_ms: u64) -> bool {
    events.iter().any(|e| {
        e.name == name
            && e.op == "purge"
            && !e.outcome.refused()
            && e.end_ms + LANDING_SLACK_MS >= after_ms
    })
}

pub struct Checker<'a> {
    pub events: &'a [Event],
    pub repo: &'a Repository,
    pub store: &'a TestStore,
    pub violations: Vec<Violation>,
    /// Facts worth reporting that are not failures (e.g. blobs no row
    /// references and no reclaim considers).
    pub notes: Vec<String>,
    /// Known defects seen (reported, not yet fixed): printed, not failed.
    pub known: Vec<String>,
    pub checks: u64,
}

impl<'a> Checker<'a> {
    fn check(
        &mut self,
        ok: bool,
        invariant: &'static str,
        name: &str,
        events: Vec<usize>,
        what: impl FnOnce() -> String,
    ) {
        self.checks += 1;
        if !ok {
            self.violations.push(Violation {
                invariant,
                name: name.to_owned(),
                what: what(),
                events,
            });
        }
    }

    pub async fn run(&mut self, library: Option<&mut Library>) {
        let items = self.store.raw_items().await;
        let events = self.events;
        for e in events.iter().filter(|e| e.op == "mirror") {
            let what = e.outcome.body()["error"].to_string();
            self.check(false, "14/16", "*", vec![e.id], || {
                format!("the mirror kept failing on a record: {what}")
            });
        }
        let mut library = library;
        for name in NAMES {
            let live = self.serving(name).await;
            self.numbering(name, &items);
            self.publishes(name, &live);
            self.latest(name, &live);
            self.superseded_replays(name);
            self.late_verifications(name);
            for alias in ALIASES {
                self.alias_history(name, alias).await;
            }
            if let Some(library) = library.as_deref_mut() {
                self.library_reads(name, &live, library, &items).await;
            }
            self.leftovers(name, &items).await;
        }
    }

    /// Invariants 3, 10, 12 (and 4): every live row serves bytes matching
    /// its sha256; every alias target is live. The live rows: version →
    /// sha256 ("LATEST" included).
    async fn serving(&mut self, name: &str) -> BTreeMap<String, String> {
        let mut live = BTreeMap::new();
        let Some(listed) = list_all(self.repo, &format!("/artifacts/{name}/versions")).await else {
            self.check(false, "10", name, vec![], || {
                "listing versions failed".into()
            });
            return live;
        };
        for artifact in listed {
            let version = artifact["version"].as_str().unwrap_or_default().to_owned();
            let got = answer(
                self.repo,
                &Call::new("GET", format!("/artifacts/{name}/versions/{version}")),
            )
            .await;
            let sha = got.body()["sha256"].as_str().unwrap_or_default().to_owned();
            let bytes = match got.body()["download_url"].as_str() {
                Some(url) => match self.store.http.get(url).send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.ok().map(|b| b.to_vec()),
                    _ => None,
                },
                None => None,
            };
            let served = bytes.as_deref().map(sha256_hex);
            self.check(
                served.as_deref() == Some(sha.as_str()),
                "3/10/12",
                name,
                vec![],
                || {
                    format!(
                        "version {version} is listed with sha256 {sha} but serves {}",
                        served.as_deref().unwrap_or("nothing (no bytes)")
                    )
                },
            );
            live.insert(version, sha);
        }
        let aliases = list_all(self.repo, &format!("/artifacts/{name}/aliases"))
            .await
            .unwrap_or_default();
        for alias in aliases {
            for target in [&alias["version"], &alias["secondary_version"]] {
                if let Some(v) = target.as_str() {
                    let ok = live.contains_key(v);
                    self.check(ok, "4/10", name, vec![], || {
                        format!(
                            "alias {} targets version {v}, which is not live",
                            alias["alias"]
                        )
                    });
                }
            }
        }
        live
    }

    /// Invariants 1, 2: numbers consecutive from 1 (tombstones keep theirs).
    fn numbering(&mut self, name: &str, items: &[Item]) {
        let mut numbers: Vec<u64> = items
            .iter()
            .filter(|i| text(i, "pk").as_deref() == Some(name))
            .filter_map(|i| text(i, "sk")?.parse().ok())
            .collect();
        numbers.sort();
        let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
        let publishes = self
            .events
            .iter()
            .filter(|e| {
                e.name == name && (e.op == "publish" || e.op == "lib-publish") && !e.outcome.ok()
            })
            .map(|e| e.id)
            .collect();
        let missing: Vec<u64> = (1..=numbers.last().copied().unwrap_or(0))
            .filter(|n| !numbers.contains(n))
            .collect();
        // A publish takes its number in the transaction that writes its
        // row: an abandoned or failed publish skips nothing, so any gap is
        // a violation (the count is shown to help read the history).
        let last_purge = self
            .events
            .iter()
            .filter(|e| e.name == name && e.op == "purge" && !e.outcome.refused())
            .map(|e| e.start_ms)
            .max()
            .unwrap_or(0);
        let abandoned = self
            .events
            .iter()
            .filter(|e| {
                e.name == name && e.op == "publish" && e.outcome.unsure() && e.end_ms >= last_purge
            })
            .count();
        self.check(missing.is_empty() && numbers == expected, "1/2", name, publishes, || {
            format!(
                "version numbers are not consecutive from 1: missing {missing:?} (highest {:?}; {abandoned} publishes abandoned or failed meanwhile)",
                numbers.last()
            )
        });
    }

    /// Every acknowledged publish (alone or in a commit's pipeline) is
    /// there with its bytes, unless something that may delete it ran after
    /// it started.
    fn publishes(&mut self, name: &str, live: &BTreeMap<String, String>) {
        let events = self.events;
        // A publish's answer, or the `published` of a commit's pipeline.
        let answers = events
            .iter()
            .filter(|e| e.name == name && e.outcome.ok())
            .filter_map(|e| {
                let body = e.outcome.body();
                match e.op {
                    "publish" => Some((e, body)),
                    _ if is_commit(e) && body["published"].is_object() => {
                        Some((e, &body["published"]))
                    }
                    _ => None,
                }
            });
        for (e, body) in answers {
            let (Some(v), Some(sha)) = (version_of(body), body["sha256"].as_str()) else {
                continue;
            };
            if may_have_removed(events, name, v, e.start_ms) {
                continue;
            }
            let now = live.get(&v.to_string());
            self.check(
                now.map(String::as_str) == Some(sha),
                "1/5",
                name,
                vec![e.id],
                || {
                    format!(
                        "publish #{} answered version {v} ({sha}); the store has {now:?}",
                        e.id
                    )
                },
            );
        }
    }

    /// The declared sha256 of each upload id (from the start answers).
    fn declared(&self) -> BTreeMap<String, String> {
        self.events
            .iter()
            .filter(|e| e.op == START && e.outcome.ok())
            .filter_map(|e| {
                Some((
                    e.outcome.body()["upload_id"].as_str()?.to_owned(),
                    e.request["body"]["sha256"].as_str()?.to_owned(),
                ))
            })
            .collect()
    }

    /// Invariant 11 (and 15): LATEST holds the bytes of a commit (or library
    /// put) that no acknowledged commit started after.
    fn latest(&mut self, name: &str, live: &BTreeMap<String, String>) {
        let Some(latest) = live.get("LATEST").cloned() else {
            return;
        };
        let declared = self.declared();
        let upload_sha = |e: &Event| {
            if e.op == START {
                // Unsure ones too: they answered no upload id.
                return e.request["body"]["sha256"].as_str().map(str::to_owned);
            }
            upload_of(e).and_then(|id| declared.get(&id).cloned())
        };
        let commits: Vec<&Event> = self
            .events
            .iter()
            .filter(|e| e.name == name && is_commit(e))
            .collect();
        let acked: Vec<(&Event, String)> = commits
            .iter()
            .filter(|e| e.outcome.status() == Some(200))
            .filter_map(|e| Some((*e, e.outcome.body()["sha256"].as_str()?.to_owned())))
            .collect();
        let mut candidates: Vec<(u64, usize)> = commits
            .iter()
            .filter(|e| !e.outcome.refused() && upload_sha(e).as_deref() == Some(latest.as_str()))
            .map(|e| {
                (
                    e.end_ms + if e.outcome.ok() { 0 } else { LANDING_SLACK_MS },
                    e.id,
                )
            })
            .collect();
        candidates.extend(
            self.events
                .iter()
                .filter(|e| e.name == name && e.op == "lib-put")
                .filter(|e| e.request["sha256"].as_str() == Some(latest.as_str()))
                .map(|e| (e.end_ms + LANDING_SLACK_MS, e.id)),
        );
        let newest = candidates.iter().max().copied();
        let Some((end, id)) = newest else {
            self.check(false, "11", name, vec![], || {
                format!("LATEST holds {latest}, which no commit or library put declared")
            });
            return;
        };
        let later: Vec<usize> = acked
            .iter()
            .filter(|(c, sha)| *sha != latest && c.start_ms > end)
            .map(|(c, _)| c.id)
            .collect();
        let mut shown = vec![id];
        shown.extend(later.iter().take(3));
        self.check(later.is_empty(), "11", name, shown, || {
            format!(
                "LATEST holds {latest} (last written by #{id}), but commit #{} of other bytes was acknowledged after that ended",
                later[0]
            )
        });
    }

    /// Invariant 11 (SPEC 7.11, commits are ordered by commit, not by the
    /// end of their verification): a verification step that committed its
    /// upload as LATEST began after no acknowledged commit of other bytes
    /// that started after the upload's own commit was answered (that commit
    /// is newer: the verification must answer `Superseded`). Judged per
    /// step, so a late commit is seen even when LATEST moves on after it.
    fn late_verifications(&mut self, name: &str) {
        let declared = self.declared();
        let id_of = upload_of;
        let commits: Vec<&Event> = self
            .events
            .iter()
            .filter(|e| e.name == name && is_commit(e))
            .collect();
        let steps = self.events.iter().filter(|e| {
            e.name == name
                && e.op == "verify-step"
                && e.outcome.status() == Some(200)
                && e.outcome.body()["step"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Committed"))
        });
        let mut found = Vec::new();
        for step in steps {
            let Some(u) = step.request["upload_id"].as_str() else {
                continue;
            };
            let sha_u = declared.get(u).map(String::as_str);
            // When the upload's commit was answered at the latest: its
            // commit time is no later.
            let Some(committed) = commits
                .iter()
                .filter(|c| id_of(c).as_deref() == Some(u) && c.outcome.status() == Some(202))
                .map(|c| c.end_ms)
                .min()
            else {
                continue;
            };
            if purged_since(self.events, name, committed) {
                continue;
            }
            // A commit's upload may have been committed by an earlier
            // attempt (a recommit answers as the first did): it is newer
            // only when its upload's first commit started after.
            let first_start = |b: &Event| {
                commits
                    .iter()
                    .filter(|c| id_of(c) == id_of(b))
                    .map(|c| c.start_ms)
                    .min()
                    .unwrap_or(b.start_ms)
            };
            if let Some(newer) = commits.iter().find(|b| {
                first_start(b) > committed
                    && b.end_ms < step.start_ms
                    && b.outcome.status() == Some(200)
                    && b.outcome.body()["changed"] == json!(true)
                    && id_of(b).as_deref() != Some(u)
                    && b.outcome.body()["sha256"].as_str() != sha_u
            }) {
                found.push((step.id, newer.id, u.to_owned()));
            }
        }
        for (step, newer, u) in found {
            self.check(false, "11", name, vec![newer, step], || {
                format!(
                    "verification step #{step} committed upload {u} as LATEST, but commit #{newer} of other bytes (its upload first committed after that upload's commit was answered) was acknowledged before the step began (it should have been superseded)"
                )
            });
        }
    }

    /// Invariant 11: once another upload's commit was acknowledged, an
    /// earlier committed upload is refused when committed again (or, still
    /// being verified, answered 202 and later superseded).
    fn superseded_replays(&mut self, name: &str) {
        let declared = self.declared();
        let commits: Vec<&Event> = self
            .events
            .iter()
            .filter(|e| e.name == name && is_commit(e))
            .collect();
        let id_of = upload_of;
        for first in commits.iter().filter(|e| e.outcome.ok()) {
            let Some(u) = id_of(first) else { continue };
            let sha_u = declared.get(&u);
            let Some(newer) = commits.iter().find(|v| {
                v.start_ms > first.end_ms
                    && v.outcome.status() == Some(200)
                    && v.outcome.body()["changed"] == json!(true)
                    && id_of(v).as_ref() != Some(&u)
                    && v.outcome.body()["sha256"].as_str() != sha_u.map(String::as_str)
            }) else {
                continue;
            };
            if purged_since(self.events, name, first.start_ms) {
                continue;
            }
            // A replay of an upload still being verified answers 202 (its
            // verification must then end superseded: `late_verifications`);
            // only a 200 claims it committed.
            for replay in commits.iter().filter(|r| {
                r.start_ms > newer.end_ms
                    && id_of(r).as_ref() == Some(&u)
                    && r.outcome.status() == Some(200)
            }) {
                self.check(false, "11", name, vec![first.id, newer.id, replay.id], || {
                    format!(
                        "upload {u} was superseded by #{}'s commit, yet its commit #{} answered {:?}",
                        newer.id,
                        replay.id,
                        replay.outcome.status()
                    )
                });
            }
        }
    }

    /// Invariant 13: each alias's history is gapless from 1, its newest
    /// entry is the alias's state, every acknowledged change is in it at the
    /// revision it answered, and an `If-Match` change took the very next
    /// revision after the one it named.
    async fn alias_history(&mut self, name: &str, alias: &str) {
        let Some(mut entries) = list_all(
            self.repo,
            &format!("/artifacts/{name}/aliases/{alias}/history"),
        )
        .await
        else {
            self.check(false, "13", name, vec![], || {
                format!("history of {alias} unreadable")
            });
            return;
        };
        entries.sort_by_key(|e| e["revision"].as_u64());
        let revisions: Vec<u64> = entries
            .iter()
            .filter_map(|e| e["revision"].as_u64())
            .collect();
        let expected: Vec<u64> = (1..=revisions.len() as u64).collect();
        self.check(revisions == expected, "13", name, vec![], || {
            format!(
                "history of {alias} has revisions {revisions:?}, not 1..={}",
                revisions.len()
            )
        });
        let current = answer(
            self.repo,
            &Call::new("GET", format!("/artifacts/{name}/aliases/{alias}")),
        )
        .await;
        let newest = entries.last();
        let targets = |v: &Value| {
            (
                v["version"].as_str().map(str::to_owned),
                v["secondary_version"].as_str().map(str::to_owned),
                v["secondary_version_weight"].as_u64(),
            )
        };
        match (current.status(), newest) {
            (Some(200), Some(entry)) => {
                let (a, b) = (targets(current.body()), targets(entry));
                let rev = current.body()["revision"].as_u64();
                self.check(rev == entry["revision"].as_u64() && a == b, "13", name, vec![], || {
                    format!("alias {alias} is {a:?} at revision {rev:?}, its newest history entry {entry}")
                });
            }
            (Some(200), None) => self.check(false, "13", name, vec![], || {
                format!("alias {alias} exists without any history entry")
            }),
            (Some(404), Some(entry)) => self.check(
                entry["action"] == json!("delete"),
                "13",
                name,
                vec![],
                || format!("alias {alias} is gone, its newest history entry is {entry}"),
            ),
            _ => {}
        }
        let by_revision: BTreeMap<u64, &Value> = entries
            .iter()
            .filter_map(|e| Some((e["revision"].as_u64()?, e)))
            .collect();
        let path = format!("/artifacts/{name}/aliases/{alias}");
        let events = self.events;
        for e in events.iter().filter(|e| {
            e.name == name
                && (e.op == "put-alias" || e.op == "rollback")
                && e.outcome.ok()
                && e.request["path"]
                    .as_str()
                    .is_some_and(|p| p == path || p == format!("{path}/rollback"))
        }) {
            if purged_since(events, name, e.start_ms) {
                continue;
            }
            let body = e.outcome.body();
            let Some(revision) = body["revision"].as_u64() else {
                continue;
            };
            let entry = by_revision.get(&revision);
            self.check(
                entry.is_some_and(|h| targets(h) == targets(body)),
                "13",
                name,
                vec![e.id],
                || {
                    format!(
                        "#{} answered {alias} at revision {revision} {:?}; history holds {entry:?}",
                        e.id,
                        targets(body)
                    )
                },
            );
            if let Some(tag) = e.request["if-match"].as_str() {
                let named: Option<u64> = tag.trim_matches('"').parse().ok();
                self.check(
                    named.map(|n| n + 1) == Some(revision),
                    "13",
                    name,
                    vec![e.id],
                    || {
                        format!(
                            "#{} moved {alias} with If-Match {tag} to revision {revision}",
                            e.id
                        )
                    },
                );
            }
        }
    }

    /// Every object version and delete marker of the library's key of
    /// `version` of `name`, newest first: when written, which sha256, whose.
    async fn key_history(&self, name: &str, version: &str) -> String {
        let sort_key = match version.parse::<u64>() {
            Ok(n) => format!("{n:06}"),
            Err(_) => version.to_owned(),
        };
        let key = format!("{}/{name}/{sort_key}", self.store.config.prefix);
        let s3 = &self.store.s3;
        let Ok(out) = s3
            .list_object_versions()
            .bucket(&self.store.config.bucket)
            .prefix(&key)
            .send()
            .await
        else {
            return "(could not list it)".into();
        };
        let mut lines = Vec::new();
        for v in out.versions() {
            let head = s3
                .head_object()
                .bucket(&self.store.config.bucket)
                .key(&key)
                .set_version_id(v.version_id().map(str::to_owned))
                .send()
                .await
                .ok();
            let meta = head.as_ref().and_then(|h| h.metadata());
            lines.push(format!(
                "{{version {:?} at {:?}, sha256 {:?}, mirror marker {:?}, current {:?}}}",
                v.version_id(),
                v.last_modified().map(|t| t.secs()),
                meta.and_then(|m| m.get("artifact_sha256")),
                meta.and_then(|m| m.get("seed_layout_mirror")),
                v.is_latest()
            ));
        }
        for m in out.delete_markers() {
            lines.push(format!(
                "{{delete marker {:?} at {:?}, current {:?}}}",
                m.version_id(),
                m.last_modified().map(|t| t.secs()),
                m.is_latest()
            ));
        }
        if lines.is_empty() {
            "nothing at all".into()
        } else {
            lines.join(", ")
        }
    }

    /// Invariant 14: after the mirror, the library reads what the API serves.
    async fn library_reads(
        &mut self,
        name: &str,
        live: &BTreeMap<String, String>,
        library: &mut Library,
        items: &[Item],
    ) {
        let read = match library.call("read", json!({"name": name})).await {
            Ok(read) => read,
            Err(e) => {
                let ok = live.is_empty();
                self.check(ok, "14", name, vec![], || {
                    format!("the library cannot read {name}: {e}")
                });
                return;
            }
        };
        let normal = |v: &str| v.trim_start_matches('0').to_owned();
        let mut seen = BTreeMap::new();
        for (version, got) in read["versions"].as_object().into_iter().flatten() {
            let version = if version == "LATEST" {
                version.clone()
            } else {
                normal(version)
            };
            let (sha, content) = (got["sha256"].as_str(), got["content_sha256"].as_str());
            // What the key holds, for the report: every object version and
            // delete marker, newest first, with the mirror's marker.
            let (held, row, involved) = if sha.is_some() && sha == content {
                (String::new(), String::new(), vec![])
            } else {
                (
                    self.key_history(name, &version).await,
                    row_of(items, name, &version),
                    mentioning(self.events, name, sha.unwrap_or_default()),
                )
            };
            self.check(sha.is_some() && sha == content, "14", name, involved, || {
                format!(
                    "the library reads version {version} as {sha:?} but downloads bytes {content:?}; the key holds {held}; its row: {row}"
                )
            });
            seen.insert(version, sha.unwrap_or_default().to_owned());
        }
        self.check(&seen == live, "14", name, vec![], || {
            format!("the library reads versions {seen:?}, the API serves {live:?}")
        });
    }

    /// Invariant 16 (and 8): nothing stays blocked or behind. No upload is
    /// still `verifying` once every invocation ran; no reclaim left a
    /// condemned item unfinished or bytes only tombstones reference.
    async fn leftovers(&mut self, name: &str, items: &[Item]) {
        let in_partition = |suffix: &str| {
            let pk = format!("__{name}-{suffix}");
            items
                .iter()
                .filter(move |i| text(i, "pk").as_deref() == Some(pk.as_str()))
        };
        let stuck: Vec<String> = in_partition("upload")
            .filter(|i| text(i, "state").as_deref() == Some("verifying"))
            .filter_map(|i| text(i, "sk"))
            .collect();
        let verifies: Vec<usize> = self
            .events
            .iter()
            .filter(|e| {
                e.name == name
                    && stuck
                        .iter()
                        .any(|u| e.request.to_string().contains(u.as_str()))
            })
            .map(|e| e.id)
            .collect();
        self.check(stuck.is_empty(), "16", name, verifies, || {
            format!("uploads {stuck:?} stay 'verifying' with no verification left to run")
        });
        let unfinished: Vec<String> = in_partition("blob")
            .filter(|i| !i.contains_key("deleted_at"))
            .filter_map(|i| text(i, "sk"))
            .collect();
        self.check(unfinished.is_empty(), "16", name, vec![], || {
            format!("condemned items {unfinished:?} remain after the final reclaim")
        });
        // Bytes after reclaim with grace 0.
        let rows: Vec<&Item> = items
            .iter()
            .filter(|i| text(i, "pk").as_deref() == Some(name))
            .collect();
        let aliased: BTreeSet<String> = items
            .iter()
            .filter(|i| text(i, "pk").as_deref() == Some(format!("__{name}-alias").as_str()))
            .flat_map(|i| [text(i, "version"), text(i, "secondary_version")])
            .flatten()
            .collect();
        let mut held: BTreeSet<String> = BTreeSet::new();
        let mut tombstoned: BTreeSet<String> = BTreeSet::new();
        for row in &rows {
            let (Some(sha), sk) = (text(row, "sha256"), text(row, "sk").unwrap_or_default()) else {
                continue;
            };
            let deleted = row
                .get("is_deleted")
                .and_then(|v| v.as_bool().ok())
                .copied()
                == Some(true);
            if !deleted || sk == "LATEST" || aliased.contains(&sk) {
                held.insert(sha);
            } else if !row.contains_key("reclaimed_at") {
                held.insert(sha); // not yet stamped or within no grace: reclaim's next pass
            } else {
                tombstoned.insert(sha);
            }
        }
        for upload in in_partition("upload") {
            if matches!(
                text(upload, "state").as_deref(),
                Some("pending" | "verifying")
            ) && let Some(sha) = text(upload, "sha256")
            {
                held.insert(sha);
            }
        }
        let blobs = self.blob_keys(name).await;
        let leaked: Vec<&String> = blobs
            .iter()
            .filter(|sha| tombstoned.contains(*sha) && !held.contains(*sha))
            .collect();
        self.check(leaked.is_empty(), "8", name, vec![], || {
            format!("bytes {leaked:?} are referenced only by reclaimed rows, yet remain")
        });
        let orphans = blobs
            .iter()
            .filter(|sha| !held.contains(*sha) && !tombstoned.contains(*sha))
            .count();
        if orphans > 0 {
            self.notes.push(format!(
                "{name}: {orphans} blob(s) no row or pending upload references (superseded LATESTs, failed uploads): no reclaim pass considers them"
            ));
        }
    }

    async fn blob_keys(&self, name: &str) -> Vec<String> {
        let prefix = match name.parse() {
            Ok(n) => self.repo.layout().blob_prefix(&n),
            Err(_) => return Vec::new(),
        };
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let Ok(out) = self
                .store
                .s3
                .list_objects_v2()
                .bucket(&self.store.config.bucket)
                .prefix(&prefix)
                .set_continuation_token(token)
                .send()
                .await
            else {
                return keys;
            };
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key()?.strip_prefix(&prefix).map(str::to_owned)),
            );
            match out.next_continuation_token() {
                Some(t) => token = Some(t.to_owned()),
                None => return keys,
            }
        }
    }
}

/// The excerpt of the history that shows a violation: its events, and the
/// events on the same artifact around them (at most `limit` lines).
/// The raw row of `version` (as the library names it: `LATEST` or a number
/// without padding) of `name`, for a report.
fn row_of(items: &[Item], name: &str, version: &str) -> String {
    let sort_key = match version.parse::<u64>() {
        Ok(n) => format!("{n:06}"),
        Err(_) => version.to_owned(),
    };
    items
        .iter()
        .find(|i| text(i, "pk").as_deref() == Some(name) && text(i, "sk") == Some(sort_key.clone()))
        .map(|i| {
            let mut fields: Vec<String> = i
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "pk" | "sk"))
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            fields.sort();
            fields.join(" ")
        })
        .unwrap_or_else(|| "none".into())
}

/// The events on `name` whose request or answer names `sha256` (the last
/// eight), for a report's excerpt.
fn mentioning(events: &[Event], name: &str, sha256: &str) -> Vec<usize> {
    if sha256.is_empty() {
        return vec![];
    }
    let ids: Vec<usize> = events
        .iter()
        .filter(|e| e.name == name)
        .filter(|e| {
            e.request.to_string().contains(sha256)
                || matches!(&e.outcome, Outcome::Answer { body, .. } if body.to_string().contains(sha256))
        })
        .map(|e| e.id)
        .collect();
    ids[ids.len().saturating_sub(8)..].to_vec()
}

pub fn excerpt(events: &[Event], violation: &Violation, limit: usize) -> Vec<String> {
    let mut shown: BTreeSet<usize> = violation.events.iter().copied().collect();
    let on_name: Vec<&Event> = events
        .iter()
        .filter(|e| e.name == violation.name && !matches!(e.op, "get-alias" | "upload-parts"))
        .collect();
    if shown.is_empty() {
        // The last writes on the artifact.
        for e in on_name.iter().rev().take(limit) {
            shown.insert(e.id);
        }
    } else {
        let anchors: Vec<usize> = shown.iter().copied().collect();
        for anchor in anchors {
            if let Some(pos) = on_name.iter().position(|e| e.id == anchor) {
                for e in on_name.iter().skip(pos.saturating_sub(3)).take(5) {
                    shown.insert(e.id);
                }
            }
        }
    }
    let mut lines: Vec<&Event> = events.iter().filter(|e| shown.contains(&e.id)).collect();
    lines.sort_by_key(|e| e.start_ms);
    let skip = lines.len().saturating_sub(limit);
    lines
        .into_iter()
        .skip(skip)
        .map(|e| match &e.outcome {
            Outcome::Crashed | Outcome::Answer { .. } => e.line(),
        })
        .collect()
}
