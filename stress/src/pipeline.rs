//! The faults section's workload and its answer audit (SPEC 7.5, 7.13).
//!
//! Each pipeline alone writes one artifact and its aliases, one step after
//! another, so what every mutating request should answer follows from the
//! answers before it: a model of the artifact (what LATEST holds, the newest
//! version number) and of each alias (revision, targets now and before the
//! last change, every change that answered success) predicts each answer.
//! A lost answer that the SDK retried must not show: a delete of what
//! existed answers 204 (never 404), a move answers the next revision (never
//! two later), a create with `If-None-Match: *` or a move with `If-Match`
//! answers 200 (never 412 against itself), a rollback undoes one change.
//!
//! A clear 502 `UpstreamError` / 503 `Throttled` (the SDK's retries ran out)
//! is accepted for any step; the step then may or may not have happened, so
//! it is not judged, and the model keeps both possibilities until an answer
//! settles them. Only exact predictions count as answer checks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use shared::{AliasName, ArtifactName, Repository};

use crate::{Answer, Api, Log, sha256_hex};

/// An alias's targets: `version`, `secondary_version`, `secondary_version_weight`.
pub type State = (Value, Value, Value);

pub fn state_of(v: &Value) -> State {
    (
        v["version"].clone(),
        v["secondary_version"].clone(),
        v["secondary_version_weight"].clone(),
    )
}

/// What a step's answer says, judged against the model.
enum Verdict {
    /// Exactly what the model predicts: one answer check.
    Checked,
    /// One of several answers the model allows (it did not know): not counted.
    Accepted,
    /// Inconsistent with what happened.
    Wrong(String),
}

fn expect(ok: bool, what: &str) -> Verdict {
    if ok {
        Verdict::Checked
    } else {
        Verdict::Wrong(format!("expected {what}"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    /// A clear 502/503: the step may or may not have happened.
    Unsure,
    Wrong,
}

/// A clear upstream failure after the SDK's retries: acceptable for any step.
fn upstream_failure(answer: &Answer) -> bool {
    matches!(
        (answer.status, answer.body["error"]["code"].as_str()),
        (502, Some("UpstreamError")) | (503, Some("Throttled"))
    )
}

/// The action of an alias put made while the model did not know whether
/// the alias existed.
const CREATE_OR_MOVE: &str = "create or move";

/// One alias that only its pipeline changes.
pub struct AliasModel {
    pub alias: &'static str,
    /// The revision of the last change known to have landed (0: none); the
    /// real one is at most `unsure` higher.
    revision: u64,
    /// Changes answered with a clear 5xx since `revision` was known.
    unsure: u64,
    /// Such changes over the whole run: history entries nobody saw succeed.
    pub unsure_total: u64,
    /// Targets now (`Some(None)`: absent); `None` while unknown.
    now: Option<Option<State>>,
    /// Targets before the last change (what a rollback restores); `None` while unknown.
    before: Option<Option<State>>,
    /// Every change answered as a success: its revision when known exactly,
    /// its action, its targets afterwards.
    pub changes: Vec<(Option<u64>, &'static str, Option<State>)>,
}

impl AliasModel {
    fn new(alias: &'static str) -> Self {
        Self {
            alias,
            revision: 0,
            unsure: 0,
            unsure_total: 0,
            now: Some(None),
            before: None,
            changes: Vec::new(),
        }
    }

    /// The current revision, when known exactly.
    fn known(&self) -> Option<u64> {
        (self.unsure == 0).then_some(self.revision)
    }

    /// A change answered success (`revision` from its answer, if any).
    fn landed(&mut self, revision: Option<u64>, action: &'static str, after: Option<State>) {
        let exact = match revision {
            Some(r) => Some(r),
            None => self.known().map(|r| r + 1),
        };
        match exact {
            Some(r) => {
                self.revision = r;
                self.unsure = 0;
            }
            // A 204 after unsure changes: one more landed, which one is not known.
            None => self.revision += 1,
        }
        self.before = self.now.take();
        self.now = Some(after.clone());
        self.changes.push((exact, action, after));
    }

    /// A change answered a clear 5xx (or wrongly): it may have landed.
    fn maybe_landed(&mut self) {
        self.unsure += 1;
        self.unsure_total += 1;
        self.now = None;
        self.before = None;
    }

    /// Learns the alias from a read (after unsure changes).
    fn observe(&mut self, answer: &Answer) {
        match answer.status {
            200 if self.unsure > 0 => {
                if let Some(r) = answer.body["revision"].as_u64()
                    && r >= self.revision
                {
                    self.revision = r;
                    self.unsure = 0;
                    self.now = Some(Some(state_of(&answer.body)));
                }
            }
            404 => self.now = Some(None),
            _ => {}
        }
    }
}

/// One pipeline of the faults section: its artifact, its model, its checks.
pub struct Pipeline {
    api: Api,
    log: Arc<Log>,
    pub name: String,
    round: u32,
    /// Answer checks made, by step.
    pub checks: BTreeMap<&'static str, u64>,
    /// Steps that answered a clear 5xx (not judged).
    pub unsure_steps: u64,
    pub failures: Vec<String>,
    /// Every sha256 LATEST may hold (one when known).
    latest: Vec<String>,
    /// Whether this round's commit is known to have changed LATEST.
    committed: bool,
    /// Whether LATEST is known to exist (a commit or publish answered success).
    exists: bool,
    /// The highest version number an answer showed.
    newest: u64,
    /// The last version published from a commit (prod's next target).
    current: Option<u64>,
    pub prod: AliasModel,
    pub staging: AliasModel,
    /// Every version a publish answered: number → sha256.
    pub published: BTreeMap<u64, String>,
    /// Versions known deleted: a 204, or listed by a retention run.
    pub deleted: BTreeSet<u64>,
    /// Versions whose delete answered a clear 5xx.
    pub maybe_deleted: BTreeSet<u64>,
    /// Whether a retention run answered a clear 5xx (then any version may be gone).
    pub retention_unsure: bool,
}

impl Pipeline {
    pub fn new(api: Api, log: Arc<Log>, name: String) -> Self {
        Self {
            api,
            log,
            name,
            round: 0,
            checks: BTreeMap::new(),
            unsure_steps: 0,
            failures: Vec::new(),
            latest: Vec::new(),
            committed: false,
            exists: false,
            newest: 0,
            current: None,
            prod: AliasModel::new("prod"),
            staging: AliasModel::new("staging"),
            published: BTreeMap::new(),
            deleted: BTreeSet::new(),
            maybe_deleted: BTreeSet::new(),
            retention_unsure: false,
        }
    }

    /// Records a failure (the section's tally prints it).
    pub fn fail(&mut self, what: String) {
        self.failures.push(what);
    }

    /// Records the answer and judges it.
    fn judge(&mut self, step: &'static str, answer: &Answer, verdict: Verdict) -> Outcome {
        self.log.record(step, answer.status, &answer.body);
        if upstream_failure(answer) {
            self.unsure_steps += 1;
            return Outcome::Unsure;
        }
        match verdict {
            Verdict::Checked => {
                *self.checks.entry(step).or_default() += 1;
                Outcome::Success
            }
            Verdict::Accepted => Outcome::Success,
            Verdict::Wrong(why) => {
                let (name, round, status) = (&self.name, self.round, answer.status);
                let what = format!(
                    "{name} round {round} {step}: {why}; got {status} {}",
                    answer.body
                );
                self.fail(what);
                Outcome::Wrong
            }
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("/artifacts/{}{rest}", self.name)
    }

    /// One round of every operation.
    pub async fn round(&mut self, round: u32) {
        self.round = round;
        let bytes = format!("{} round {round} ", self.name).repeat(1 + (round as usize * 37) % 200);
        self.upload(bytes.as_bytes()).await;
        if let Some(version) = self.publish(false).await {
            for rest in [
                format!("/versions/{version}"),
                format!("/versions/{version}/content"),
            ] {
                let answer = self.api.send("GET", &self.path(&rest), None, &[]).await;
                self.log.record("get-version", answer.status, &answer.body);
            }
            let previous = self.current.replace(version);
            let target = match previous {
                Some(p) if round % 2 == 1 && p != version => json!({
                    "version": p.to_string(),
                    "secondary_version": version.to_string(),
                    "secondary_version_weight": 25,
                }),
                _ => json!({"version": version.to_string()}),
            };
            self.put_alias(Which::Prod, target.clone()).await;
            let undoable = self.prod.known().is_some() && matches!(self.prod.before, Some(Some(_)));
            if round % 4 == 1 && undoable {
                // Undo the move, then make it again.
                self.rollback(Which::Prod).await;
                self.put_alias(Which::Prod, target).await;
            }
        }
        self.get_alias(Which::Prod).await;
        self.resolve().await;
        if round % 3 == 2 {
            self.publish_and_delete().await;
        }
        for rest in ["/versions?limit=5", "/aliases"] {
            let answer = self.api.send("GET", &self.path(rest), None, &[]).await;
            self.log.record("list", answer.status, &answer.body);
        }
        if round % 5 == 4 {
            self.retention(round % 10 == 4).await;
        }
        if round % 8 == 7 {
            self.put_alias(Which::Staging, json!({})).await;
            self.get_alias(Which::Staging).await;
            self.delete_alias(Which::Staging).await;
        }
    }

    /// Start, PUT (retried a few times), commit: LATEST becomes these bytes.
    async fn upload(&mut self, bytes: &[u8]) {
        self.committed = false;
        let sha = sha256_hex(bytes);
        let declared = json!({"sha256": sha, "size": bytes.len()});
        let start = self
            .api
            .send("POST", &self.path("/uploads"), Some(declared), &[])
            .await;
        // 201 with a URL; 200 `exists` when an earlier attempt whose commit
        // failed already stored these bytes.
        let exists = start.status == 200 && start.body["exists"] == true;
        let verdict = expect(
            (start.status == 201 && start.body["url"].is_string()) || exists,
            "201 with an upload URL, or 200 exists (these bytes are stored)",
        );
        if self.judge("start-upload", &start, verdict) != Outcome::Success {
            return; // nothing to commit: LATEST is unchanged
        }
        let mut stored = exists;
        for _ in 0..5 {
            if stored {
                break;
            }
            let mut put = self
                .api
                .http
                .put(start.body["url"].as_str().unwrap_or_default())
                .body(bytes.to_vec());
            for (k, v) in start.body["headers"].as_object().into_iter().flatten() {
                put = put.header(k, v.as_str().unwrap_or_default());
            }
            if put.send().await.is_ok_and(|r| r.status().is_success()) {
                stored = true;
                break;
            }
        }
        if !stored {
            return;
        }
        let commit = json!({"upload_id": start.body["upload_id"]});
        let answer = self
            .api
            .send("PUT", &self.path(""), Some(commit), &[])
            .await;
        let verdict = expect(
            answer.status == 200 && answer.body["sha256"] == sha && answer.body["changed"] == true,
            "200 with changed: true and the declared sha256",
        );
        match self.judge("commit-upload", &answer, verdict) {
            Outcome::Success => {
                self.latest = vec![sha];
                self.committed = true;
                self.exists = true;
            }
            _ => self.latest.push(sha),
        }
    }

    /// Publishes LATEST; the version number when the answer gave one.
    async fn publish(&mut self, force: bool) -> Option<u64> {
        let body = force.then(|| json!({"force": true}));
        let answer = self
            .api
            .send("POST", &self.path("/versions"), body, &[])
            .await;
        let version = answer.body["version"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok());
        let sha = answer.body["sha256"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let holds_latest = self.latest.contains(&sha);
        let known = self.latest.len() == 1 && (force || self.committed);
        let verdict = match (answer.status, version) {
            (201, Some(v)) if v > self.newest && holds_latest => {
                if known {
                    Verdict::Checked
                } else {
                    Verdict::Accepted
                }
            }
            // LATEST perhaps unchanged: its newest version (perhaps one
            // an unsure publish made).
            (200, Some(_)) if !known && holds_latest => Verdict::Accepted,
            // No commit known to have landed yet.
            (404, _) if !self.exists && answer.body["error"]["code"] == "ArtifactNotFound" => {
                Verdict::Accepted
            }
            _ => Verdict::Wrong(format!(
                "{} with a version above {} holding LATEST (one of {:?})",
                if known { "201" } else { "200 or 201" },
                self.newest,
                self.latest
            )),
        };
        let step = if force {
            "publish-version (force)"
        } else {
            "publish-version"
        };
        match (self.judge(step, &answer, verdict), version) {
            (Outcome::Success, Some(v)) => {
                self.newest = self.newest.max(v);
                self.exists = true;
                self.latest = vec![sha.clone()];
                self.published.insert(v, sha);
                Some(v)
            }
            _ => None,
        }
    }

    /// Publishes LATEST once more and deletes that version, twice: nobody
    /// else knows it, so the first delete is a 204 and the second a 404.
    async fn publish_and_delete(&mut self) {
        let Some(version) = self.publish(true).await else {
            return;
        };
        let path = self.path(&format!("/versions/{version}"));
        let answer = self.api.send("DELETE", &path, None, &[]).await;
        let verdict = expect(answer.status == 204, "204 (this pipeline published it)");
        match self.judge("delete-version", &answer, verdict) {
            Outcome::Success => {
                self.deleted.insert(version);
            }
            _ => {
                self.maybe_deleted.insert(version);
                return;
            }
        }
        let again = self.api.send("DELETE", &path, None, &[]).await;
        let verdict = expect(
            again.status == 404 && again.body["error"]["code"] == "VersionNotFound",
            "404 VersionNotFound (deleted already)",
        );
        self.judge("delete-version (again)", &again, verdict);
    }

    fn model_ref(&self, which: Which) -> &AliasModel {
        match which {
            Which::Prod => &self.prod,
            Which::Staging => &self.staging,
        }
    }

    fn model(&mut self, which: Which) -> &mut AliasModel {
        match which {
            Which::Prod => &mut self.prod,
            Which::Staging => &mut self.staging,
        }
    }

    /// The precondition a careful pipeline sends: `If-None-Match: *` for a
    /// create, `If-Match` of the revision it knows for a change.
    fn precondition(&mut self, which: Which) -> Option<(&'static str, String)> {
        let model = self.model(which);
        match (model.known(), &model.now) {
            (Some(_), Some(None)) => Some(("if-none-match", "*".to_owned())),
            (Some(r), Some(Some(_))) => Some(("if-match", format!("\"{r}\""))),
            _ => None,
        }
    }

    /// Judges a 200 carrying the alias after a change to `after`.
    fn judge_change(
        &mut self,
        which: Which,
        step: &'static str,
        action: &'static str,
        answer: &Answer,
        after: Option<State>,
    ) {
        let model = self.model(which);
        let revision = answer.body["revision"].as_u64().unwrap_or_default();
        let (low, high) = (model.revision + 1, model.revision + 1 + model.unsure);
        let exact = model.known().is_some();
        let verdict = if answer.status != 200 {
            Verdict::Wrong("200".into())
        } else if after.as_ref().is_some_and(|a| *a != state_of(&answer.body)) {
            Verdict::Wrong(format!("the targets {after:?}"))
        } else if !(low..=high).contains(&revision)
            || answer.etag != Some(format!("\"{revision}\""))
        {
            Verdict::Wrong(format!(
                "revision {low}..={high} (one per change) and its ETag"
            ))
        } else if exact && after.is_some() {
            Verdict::Checked
        } else {
            Verdict::Accepted
        };
        let outcome = self.judge(step, answer, verdict);
        let model = self.model(which);
        match outcome {
            Outcome::Success => model.landed(Some(revision), action, Some(state_of(&answer.body))),
            _ => model.maybe_landed(),
        }
    }

    async fn put_alias(&mut self, which: Which, body: Value) {
        let model = self.model(which);
        let path = format!("/aliases/{}", model.alias);
        // Unknown after a change whose answer was a clear 5xx (a delete
        // that may have landed): either a create or a move.
        let action = match model.now {
            Some(None) => "create",
            Some(Some(_)) => "move",
            None => CREATE_OR_MOVE,
        };
        let precondition = self.precondition(which);
        let headers: Vec<(&str, &str)> =
            precondition.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = self
            .api
            .send("PUT", &self.path(&path), Some(body.clone()), &headers)
            .await;
        let mut after = state_of(&body);
        if after.0.is_null() {
            after.0 = json!("LATEST");
        }
        self.judge_change(which, "put-alias", action, &answer, Some(after));
    }

    /// Undoes the last change: the alias goes back to the targets before it.
    async fn rollback(&mut self, which: Which) {
        let model = self.model(which);
        let path = format!("/aliases/{}/rollback", model.alias);
        let before = model.before.clone().flatten();
        let precondition = self.precondition(which);
        let headers: Vec<(&str, &str)> =
            precondition.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = json!({"message": format!("round {} rollback", self.round)});
        let answer = self
            .api
            .send("POST", &self.path(&path), Some(body), &headers)
            .await;
        self.judge_change(which, "rollback-alias", "rollback", &answer, before);
    }

    async fn delete_alias(&mut self, which: Which) {
        let model = self.model(which);
        let path = format!("/aliases/{}", model.alias);
        let exists = model.known().is_some() && matches!(model.now, Some(Some(_)));
        let precondition = self.precondition(which);
        let headers: Vec<(&str, &str)> =
            precondition.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = self
            .api
            .send("DELETE", &self.path(&path), None, &headers)
            .await;
        let verdict = match answer.status {
            204 if exists => Verdict::Checked,
            204 | 404 if !exists => Verdict::Accepted,
            _ => Verdict::Wrong("204 (the alias existed)".into()),
        };
        let outcome = self.judge("delete-alias", &answer, verdict);
        let model = self.model(which);
        match (outcome, answer.status) {
            (Outcome::Success, 204) => model.landed(None, "delete", None),
            (Outcome::Success, _) => model.now = Some(None),
            _ => model.maybe_landed(),
        }
    }

    /// Reads the alias: as the model says when it knows, else learns it.
    async fn get_alias(&mut self, which: Which) {
        let model = self.model(which);
        let path = format!("/aliases/{}", model.alias);
        let answer = self.api.send("GET", &self.path(&path), None, &[]).await;
        let model = self.model(which);
        let verdict = match (model.known(), &model.now) {
            (Some(_), Some(None)) => expect(
                answer.status == 404 && answer.body["error"]["code"] == "AliasNotFound",
                "404 AliasNotFound (deleted or never created)",
            ),
            (Some(r), Some(Some(now))) => expect(
                answer.status == 200
                    && answer.body["revision"] == r
                    && answer.etag == Some(format!("\"{r}\""))
                    && state_of(&answer.body) == *now,
                &format!("200 at revision {r}, ETag \"{r}\", targets {now:?}"),
            ),
            _ => Verdict::Accepted,
        };
        if self.judge("get-alias", &answer, verdict) == Outcome::Success {
            self.model(which).observe(&answer);
        }
    }

    /// Resolves prod: one of its targets.
    async fn resolve(&mut self) {
        let path = self.path(&format!("/aliases/prod/resolve?key=k{}", self.round));
        let answer = self.api.send("GET", &path, None, &[]).await;
        let verdict = match (self.prod.known(), &self.prod.now) {
            (Some(r), Some(Some((primary, secondary, _)))) => expect(
                answer.status == 200
                    && answer.body["revision"] == r
                    && (answer.body["version"] == *primary || answer.body["version"] == *secondary),
                &format!("200 at revision {r} with {primary} or {secondary}"),
            ),
            _ => Verdict::Accepted,
        };
        self.judge("resolve-alias", &answer, verdict);
    }

    /// Applies retention (keep 3): it never takes an alias's target.
    async fn retention(&mut self, dry_run: bool) {
        let policy = json!({"keep_last_n": 3, "purge_older_than_secs": 0, "dry_run": dry_run});
        let answer = self
            .api
            .send("POST", &self.path("/purge"), Some(policy), &[])
            .await;
        let taken: Vec<u64> = answer.body["deleted"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["version"].as_str()?.parse().ok())
            .collect();
        let targets: BTreeSet<u64> = [&self.prod, &self.staging]
            .iter()
            .filter_map(|m| m.now.clone().flatten())
            .flat_map(|(p, s, _)| [p, s])
            .filter_map(|v| v.as_str()?.parse().ok())
            .collect();
        let verdict = expect(
            answer.status == 200
                && answer.body["dry_run"] == dry_run
                && self.current.is_none_or(|c| !taken.contains(&c))
                && taken.iter().all(|v| !targets.contains(v)),
            "200 that keeps the newest version and every alias target",
        );
        match self.judge("apply-retention", &answer, verdict) {
            Outcome::Success if !dry_run => self.deleted.extend(taken),
            Outcome::Success => {}
            _ => self.retention_unsure |= !dry_run,
        }
    }

    /// Purges the artifact, retrying a clear 5xx as a pipeline would (a
    /// purge cut short by an upstream failure leaves the rest for its
    /// retry): 204 the first time it completes; after an attempt that
    /// failed part-way, a retry may find nothing left and answer 404, or
    /// find the fence of the failed attempt still up (its hand-over failed
    /// too) and answer 409 ArtifactBeingPurged until the fence lapses —
    /// waited out, as the answer asks.
    pub async fn purge(&mut self) {
        let mut retried = false;
        let mut fence_lapsed_by = tokio::time::Instant::now();
        for _ in 0..PURGE_ATTEMPTS {
            let mut answer = self.api.send("DELETE", &self.path(""), None, &[]).await;
            while retried
                && answer.status == 409
                && answer.body["error"]["code"] == "ArtifactBeingPurged"
                && tokio::time::Instant::now() < fence_lapsed_by
            {
                self.log
                    .record("purge-artifact", answer.status, &answer.body);
                tokio::time::sleep(Duration::from_secs(2)).await;
                answer = self.api.send("DELETE", &self.path(""), None, &[]).await;
            }
            let verdict = expect(
                answer.status == 204 || (retried && answer.status == 404),
                "204 (the artifact existed)",
            );
            if !matches!(
                self.judge("purge-artifact", &answer, verdict),
                Outcome::Unsure
            ) {
                return;
            }
            retried = true;
            fence_lapsed_by = tokio::time::Instant::now() + PURGE_FENCE_WAIT;
        }
        self.fail(format!(
            "{}: purge answered 5xx {PURGE_ATTEMPTS} times",
            self.name
        ));
    }

    /// After the run, straight from the store: each alias's history holds
    /// exactly one entry per change that answered success (at the revision
    /// its answer gave), consecutive revisions from 1, and no more entries
    /// than changes whose answer was a clear 5xx could add; the alias is
    /// where the model says. Returns the entries checked.
    pub async fn audit_history(&mut self, repo: &Repository) -> u64 {
        let mut checked = 0;
        let Ok(name) = self.name.parse::<ArtifactName>() else {
            self.fail(format!("{} is not a valid name", self.name));
            return 0;
        };
        for which in [Which::Prod, Which::Staging] {
            let model = self.model_ref(which);
            let label = format!("{} alias {}", self.name, model.alias);
            let Ok(alias) = model.alias.parse::<AliasName>() else {
                continue;
            };
            let history = match repo.alias_history(&name, &alias, Some(1000), None).await {
                Ok(page) => page.items,
                // Never created: no history.
                Err(_) if model.changes.is_empty() && model.unsure_total == 0 => continue,
                Err(e) => {
                    self.fail(format!("{label}: history: {e:?}"));
                    continue;
                }
            };
            let entries: Vec<Value> = history
                .iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect();
            let model = self.model_ref(which);
            let mut failures = Vec::new();
            let revisions: Vec<u64> = entries
                .iter()
                .filter_map(|e| e["revision"].as_u64())
                .collect();
            let consecutive: Vec<u64> = (1..=revisions.len() as u64).rev().collect();
            if revisions != consecutive {
                failures.push(format!(
                    "{label}: history revisions {revisions:?}, not consecutive from 1"
                ));
            }
            let (least, most) = (
                model.changes.len(),
                model.changes.len() + model.unsure_total as usize,
            );
            if !(least..=most).contains(&entries.len()) {
                failures.push(format!(
                    "{label}: {} history entries for {least} successful changes and {} unsure ones",
                    entries.len(),
                    model.unsure_total
                ));
            }
            for (revision, action, after) in &model.changes {
                let Some(revision) = revision else { continue };
                let entry = entries.iter().find(|e| e["revision"] == *revision);
                let after_json = after
                    .clone()
                    .unwrap_or((Value::Null, Value::Null, Value::Null));
                let action_ok = |e: &Value| match *action {
                    CREATE_OR_MOVE => matches!(e["action"].as_str(), Some("create" | "move")),
                    action => e["action"] == action,
                };
                match entry {
                    Some(e) if action_ok(e) && state_of(e) == after_json => checked += 1,
                    _ => failures.push(format!(
                        "{label}: revision {revision} should be {action} to {after_json:?}, history has {entry:?}"
                    )),
                }
            }
            if let (Some(r), Some(now)) = (model.known(), model.now.clone()) {
                let found = repo.get_alias(&name, &alias).await;
                let ok = match (&found, &now) {
                    (Ok(a), Some(state)) => serde_json::to_value(a)
                        .is_ok_and(|v| v["revision"] == r && state_of(&v) == *state),
                    (Err(shared::Error::AliasNotFound { .. }), None) => true,
                    _ => false,
                };
                if ok {
                    checked += 1;
                } else {
                    failures.push(format!(
                        "{label}: ends as {found:?}, not at revision {r} {now:?}"
                    ));
                }
            }
            for failure in failures {
                self.fail(failure);
            }
        }
        checked
    }
}

/// A 20 % fault rate fails a multi-call purge often; ten tries make a
/// run that never completes it vanishingly rare.
const PURGE_ATTEMPTS: usize = 10;

/// How long a retried purge waits out the fence of its own failed attempt:
/// longer than the fence takes to lapse (30 s).
const PURGE_FENCE_WAIT: Duration = Duration::from_secs(45);

#[derive(Debug, Clone, Copy)]
enum Which {
    Prod,
    Staging,
}
