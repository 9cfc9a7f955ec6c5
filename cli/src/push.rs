//! `artifact push`: hash in one pass, start the upload, transfer (skipped
//! when the artifact already holds the bytes; one PUT, or parts above the
//! threshold), commit, optionally publishing and moving an alias in the same
//! request (SPEC 4.1): a push is start + PUT + commit, 3 requests with or
//! without `--publish --alias`; a push of bytes the artifact holds is the
//! start alone, which commits them at once.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::args;
use crate::client::Api;
use crate::error::{Error, Result};
use crate::multipart::{self, Digests, MAX_PART_SIZE, Plan, Saved, StateDir};
use crate::output::{Rendered, human_size};
use crate::progress::Progress;
use crate::transfer::{Outcome, Presigned, put_range};

/// How often an expired single-PUT URL is renewed before giving up.
const RENEWALS: u32 = 3;

pub async fn push(
    api: &Api,
    api_url: &str,
    progress: Progress,
    o: &args::Push,
) -> Result<Rendered> {
    let name = o.name.as_str();
    let size = std::fs::metadata(&o.file)
        .map_err(|e| Error::io(o.file.display(), e))?
        .len();
    // A single PUT cannot exceed 5 GiB, whatever the threshold says.
    let plan = (size > o.multipart_threshold.min(MAX_PART_SIZE))
        .then(|| Plan::new(size, o.part_size))
        .transpose()?;
    let digests = hash(&o.file, size, plan.map(|p| p.part_size), progress).await?;
    let sha256 = digests.hex();

    let state = StateDir::from_env();
    let mut start = json!({"sha256": sha256, "size": size});
    if let Some(t) = &o.content_type {
        start["content_type"] = json!(t);
    }
    if !o.meta.is_empty() {
        let meta: Map<String, Value> = o.meta.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        start["metadata"] = Value::Object(meta);
    }
    if let Some(plan) = &plan {
        start["part_size"] = json!(plan.part_size);
    }
    let pipeline = pipeline_of(o);
    // Bytes the artifact holds are committed (published, aliased) at once.
    if let (Some(s), Some(p)) = (start.as_object_mut(), pipeline.as_object()) {
        s.insert("commit".into(), json!(true));
        s.extend(p.clone());
    }

    let in_parts = match plan {
        Some(plan) => {
            let job = Multipart {
                api,
                api_url,
                name,
                path: &o.file,
                plan,
                digests: &digests,
                concurrency: o.concurrency as usize,
                progress,
                state: state.as_ref(),
                pipeline: &pipeline,
            };
            job.run(&start).await?
        }
        None => None,
    };
    let (upload_id, done, transferred) = match in_parts {
        Some(done) => done,
        None => {
            if let Some(fields) = start.as_object_mut() {
                fields.remove("part_size");
            }
            match single(api, name, &start, &o.file, size, progress).await? {
                Single::Committed(id, answer) => (id, Done::of_commit(answer), false),
                Single::Sent(id, sent) => {
                    let done = commit(api, name, &id, &pipeline, progress).await?;
                    (id, done, sent)
                }
            }
        }
    };
    let Done {
        latest: committed,
        published,
        alias,
    } = done;
    let published = published.map(|p| {
        let created = p.get("created").and_then(Value::as_bool).unwrap_or(true);
        (p, created)
    });

    let changed = committed.get("changed").and_then(Value::as_bool);
    if changed == Some(false) {
        warn_of_undeclared(&committed, o);
    }
    let mut text = format!(
        "pushed {name} LATEST: {} sha256 {sha256}{}{}",
        human_size(size),
        match changed {
            Some(false) => " (unchanged)",
            _ => "",
        },
        if transferred {
            ""
        } else {
            " (bytes already stored: nothing transferred)"
        },
    );
    if let Some((p, created)) = &published {
        text.push_str(&format!(
            "\npublished {name}@{}{}",
            crate::output::field(p, "version"),
            if *created {
                ""
            } else {
                " (LATEST unchanged: the newest version)"
            }
        ));
    }
    if let Some(a) = &alias {
        text.push_str(&format!(
            "\nalias {name}:{} -> {} (revision {})",
            crate::output::field(a, "alias"),
            crate::output::alias_targets(a),
            crate::output::field(a, "revision"),
        ));
    }
    let json = json!({
        "upload_id": upload_id,
        "transferred": transferred,
        "latest": committed,
        "published": published.map(|(p, _)| p),
        "alias": alias,
    });
    Ok(Rendered::new(json, text))
}

/// LATEST already held these bytes, so the commit changed nothing (SPEC
/// 4.1): a content type or metadata this push declared that LATEST does
/// not carry was not applied. Said on stderr, so a pipeline that stamps
/// each build (`--meta commit=…`) hears that this one kept the earlier
/// build's stamp.
fn warn_of_undeclared(latest: &Value, o: &args::Push) {
    let mut differs = Vec::new();
    if let Some(t) = &o.content_type
        && latest.get("content_type").and_then(Value::as_str) != Some(t.as_str())
    {
        differs.push(format!("content type {t}"));
    }
    // As the request declared them: a key given twice, its last value.
    let declared: std::collections::BTreeMap<&str, &str> = o
        .meta
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (k, v) in declared {
        if latest["metadata"].get(k).and_then(Value::as_str) != Some(v) {
            differs.push(format!("{k}={v}"));
        }
    }
    if !differs.is_empty() {
        eprintln!(
            "warning: {} LATEST already held these bytes, so nothing changed: {} not applied (LATEST keeps its own)",
            o.name,
            differs.join(", ")
        );
    }
}

/// A push in parts: everything it needs, so its steps stay small.
struct Multipart<'a> {
    api: &'a Api,
    api_url: &'a str,
    name: &'a str,
    path: &'a Path,
    plan: Plan,
    digests: &'a Digests,
    concurrency: usize,
    progress: Progress,
    state: Option<&'a StateDir>,
    /// The commit's `publish` and `alias` (an empty object for none).
    pipeline: &'a Value,
}

impl Multipart<'_> {
    /// Resumes the remembered upload of these bytes or starts one, sends the
    /// parts not yet received, commits, and waits for the verification: the
    /// upload id, the new LATEST, and whether bytes were sent. `None` when
    /// the API does not offer multipart uploads (it refuses `part_size`) and
    /// the file still fits one PUT.
    async fn run(&self, start: &Value) -> Result<Option<(String, Done, bool)>> {
        let (api, name) = (self.api, self.name);
        let sha256 = self.digests.hex();
        let saved = self.state.and_then(|s| s.load(self.api_url, name, &sha256));
        let saved = saved.filter(|s| &s.start == start);
        let (upload_id, answer) = match resume(api, name, saved, &self.plan).await? {
            Some(found) => found,
            None => match start_upload(api, name, start).await {
                Ok(answer) => (upload_id_of(&answer)?, answer),
                Err(Error::Api {
                    status: 400,
                    message,
                    ..
                }) if message.contains("part_size") && self.plan.size <= MAX_PART_SIZE => {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            },
        };
        let mut transferred = false;
        let outcome = self
            .finish(&upload_id, answer, start, &sha256, &mut transferred)
            .await;
        // Forgotten once answered for good: done, or refused (superseded,
        // failed, gone); kept only to resume after a connection failure.
        if let Some(s) = self.state
            && (outcome.is_ok()
                || matches!(
                    &outcome,
                    Err(Error::Api {
                        status: 404 | 409 | 412,
                        ..
                    } | Error::Integrity(_))
                ))
        {
            s.remove(self.api_url, name, &sha256);
        }
        outcome.map(|committed| Some((upload_id, committed, transferred)))
    }

    /// The rest of [`Self::run`] once the upload is known: its parts sent
    /// (as `answer` says), the commit, the wait for its verification.
    async fn finish(
        &self,
        upload_id: &str,
        answer: Value,
        start: &Value,
        sha256: &str,
        transferred: &mut bool,
    ) -> Result<Done> {
        let (api, name) = (self.api, self.name);
        let upload_id = upload_id.to_owned();
        let committed = match answer.get("state").and_then(Value::as_str) {
            // Committed at once by the start (bytes the artifact held).
            Some("committed") if answer.get("artifact").is_none() => Done::of_commit(answer),
            // A resumed upload: its verification ran the pipeline, or a
            // commit again does.
            Some("committed") => {
                commit(api, name, &upload_id, self.pipeline, self.progress).await?
            }
            Some("verifying") => {
                wait_verified(api, name, &upload_id, self.pipeline, self.progress).await?
            }
            _ if answer.get("exists").and_then(Value::as_bool) == Some(true) => {
                commit(api, name, &upload_id, self.pipeline, self.progress).await?
            }
            _ => {
                if let Some(s) = self.state {
                    let saved = Saved {
                        upload_id: upload_id.clone(),
                        part_size: self.plan.part_size,
                        start: start.clone(),
                    };
                    s.save(self.api_url, name, sha256, &saved);
                }
                let plan = server_plan(&answer, self.plan)?;
                let received: Vec<u64> = answer
                    .get("parts_received")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default();
                let missing = multipart::missing_parts(plan.part_count, &received);
                let bar = self.progress.bytes(plan.size, "upload");
                let pending: u64 = missing.iter().map(|n| plan.range(*n).1).sum();
                bar.set_position(plan.size - pending);
                multipart::upload_parts(
                    api,
                    name,
                    &upload_id,
                    &plan,
                    self.digests,
                    self.path,
                    &missing,
                    self.concurrency,
                    &bar,
                )
                .await?;
                bar.finish_and_clear();
                *transferred = !missing.is_empty();
                commit(api, name, &upload_id, self.pipeline, self.progress).await?
            }
        };
        Ok(committed)
    }
}

/// The one streaming pass over the file: its digest and the parts' digests.
async fn hash(
    path: &Path,
    size: u64,
    part_size: Option<u64>,
    progress: Progress,
) -> Result<Digests> {
    let bar = progress.bytes(size, "hash");
    let path_buf = path.to_path_buf();
    let bar_in = bar.clone();
    let digests = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path_buf).map_err(|e| Error::io(path_buf.display(), e))?;
        multipart::digest(file, part_size, |n| bar_in.inc(n))
            .map_err(|e| Error::io(path_buf.display(), e))
    })
    .await
    .map_err(|e| Error::Io(format!("hashing stopped: {e}")))??;
    bar.finish_and_clear();
    if digests.size != size {
        return Err(Error::Io(format!(
            "{} changed while it was read ({size} bytes, then {})",
            path.display(),
            digests.size
        )));
    }
    Ok(digests)
}

async fn start_upload(api: &Api, name: &str, body: &Value) -> Result<Value> {
    Ok(api
        .call(
            Method::POST,
            &["artifacts", name, "uploads"],
            &[],
            Some(body),
            &[],
        )
        .await?
        .body)
}

fn upload_id_of(answer: &Value) -> Result<String> {
    answer
        .get("upload_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::Protocol(format!("start upload answered without upload_id: {answer}"))
        })
}

/// What a single-PUT push's start led to.
enum Single {
    /// The artifact held the bytes: committed by the start itself.
    Committed(String, Value),
    /// Sent (or not, `false`): commit next.
    Sent(String, bool),
}

/// Start, then one PUT of the whole file (renewing an expired URL by
/// starting again).
async fn single(
    api: &Api,
    name: &str,
    start: &Value,
    path: &Path,
    size: u64,
    progress: Progress,
) -> Result<Single> {
    for _ in 0..=RENEWALS {
        let answer = start_upload(api, name, start).await?;
        let upload_id = upload_id_of(&answer)?;
        if answer.get("state").and_then(Value::as_str) == Some("committed") {
            return Ok(Single::Committed(upload_id, answer));
        }
        if answer.get("exists").and_then(Value::as_bool) == Some(true) {
            return Ok(Single::Sent(upload_id, false));
        }
        let target = Presigned::from_json(&answer)?;
        let bar = progress.bytes(size, "upload");
        let outcome = put_range(&api.upload_http, api.policy, &target, path, 0, size, &bar).await?;
        bar.finish_and_clear();
        if outcome != Outcome::Expired {
            return Ok(Single::Sent(upload_id, true));
        }
    }
    Err(Error::Connection(
        "the presigned upload URL kept expiring before the upload finished".into(),
    ))
}

/// The commit's `publish`/`alias` fields for `o` (an empty object for none).
fn pipeline_of(o: &args::Push) -> Value {
    let mut pipeline = json!({});
    if o.publish || o.alias.is_some() {
        pipeline["publish"] = json!(true);
    }
    if let Some(alias) = &o.alias {
        let mut a = json!({"name": alias});
        if let Some(r) = o.if_revision {
            a["if_revision"] = json!(r);
        }
        if let Some(w) = o.weight {
            a["weight"] = json!(w);
        }
        pipeline["alias"] = a;
    }
    pipeline
}

/// What a push ended with: LATEST, and the version and alias it asked for.
pub(crate) struct Done {
    pub latest: Value,
    pub published: Option<Value>,
    pub alias: Option<Value>,
}

impl Done {
    /// From a commit's answer (LATEST with `published` and `alias`).
    fn of_commit(mut answer: Value) -> Self {
        let mut take = |key: &str| {
            answer
                .as_object_mut()
                .and_then(|o| o.remove(key))
                .filter(|v| !v.is_null())
        };
        let (published, alias) = (take("published"), take("alias"));
        for key in ["upload_id", "state", "exists"] {
            take(key);
        }
        Self {
            latest: answer,
            published,
            alias,
        }
    }
}

/// `PUT /artifacts/{name}` with the pipeline: 200 with the new LATEST (and
/// the version and alias), 202 while a multipart upload is verified.
async fn commit(
    api: &Api,
    name: &str,
    upload_id: &str,
    pipeline: &Value,
    progress: Progress,
) -> Result<Done> {
    let mut body = json!({"upload_id": upload_id});
    if let (Some(b), Some(p)) = (body.as_object_mut(), pipeline.as_object()) {
        b.extend(p.clone());
    }
    let answer = api
        .call(Method::PUT, &["artifacts", name], &[], Some(&body), &[])
        .await?;
    if answer.status == 202 {
        return wait_verified(api, name, upload_id, pipeline, progress).await;
    }
    Ok(Done::of_commit(answer.body))
}

/// Polls `GET …/uploads/{id}` until the verifier committed the upload (its
/// artifact, and the version and alias its pipeline made) or refused it (an
/// integrity failure), showing the bytes verified so far.
pub(crate) async fn wait_verified(
    api: &Api,
    name: &str,
    upload_id: &str,
    pipeline: &Value,
    progress: Progress,
) -> Result<Done> {
    let mut wait = Duration::from_millis(500);
    let deadline = std::time::Instant::now() + Duration::from_secs(2 * 3600);
    let wants_pipeline = pipeline.get("publish").is_some();
    let mut bar = None;
    loop {
        let state = api
            .get(&["artifacts", name, "uploads", upload_id], &[])
            .await?
            .body;
        if let Some(verified) = state.get("verified_bytes").and_then(Value::as_u64) {
            let size = state
                .pointer("/multipart/part_size")
                .and_then(Value::as_u64)
                .zip(
                    state
                        .pointer("/multipart/part_count")
                        .and_then(Value::as_u64),
                )
                .map(|(s, c)| s * c)
                .unwrap_or(verified);
            let b = bar.get_or_insert_with(|| progress.bytes(size, "verify"));
            b.set_position(verified.min(size));
        }
        match state.get("state").and_then(Value::as_str) {
            Some("committed") if wants_pipeline && state.get("pipeline_error").is_some() => {
                let error = &state["pipeline_error"];
                return Err(Error::Api {
                    status: 409,
                    code: error["code"].as_str().unwrap_or("PipelineError").to_owned(),
                    message: format!(
                        "committed, but {}",
                        error["message"]
                            .as_str()
                            .unwrap_or("the publish or alias move failed")
                    ),
                });
            }
            // The verification commits first, then runs the pipeline.
            Some("committed") if wants_pipeline && state.get("published").is_none() => {}
            Some("committed") => {
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                return Ok(Done {
                    latest: artifact_of_state(&state)?,
                    published: state.get("published").cloned(),
                    alias: state.get("alias").cloned(),
                });
            }
            Some("superseded") => {
                return Err(Error::Api {
                    status: 409,
                    code: "UploadSuperseded".into(),
                    message: format!(
                        "upload {upload_id} was verified after a newer commit: {}",
                        state
                            .get("reason")
                            .and_then(Value::as_str)
                            .unwrap_or("it never becomes LATEST")
                    ),
                });
            }
            Some("failed") => {
                return Err(Error::Integrity(format!(
                    "upload {upload_id} failed verification: {}",
                    state
                        .get("reason")
                        .and_then(Value::as_str)
                        .unwrap_or("no reason given")
                )));
            }
            _ if std::time::Instant::now() > deadline => {
                return Err(Error::Connection(format!(
                    "upload {upload_id} is still being verified after 2 hours"
                )));
            }
            _ => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn artifact_of_state(state: &Value) -> Result<Value> {
    state
        .get("artifact")
        .cloned()
        .ok_or_else(|| Error::Protocol(format!("a committed upload without artifact: {state}")))
}

/// A remembered upload that can go on: its state (with `parts_received`)
/// when it is still pending, verifying or committed; `None` when it is gone
/// or failed, or was cut differently.
async fn resume(
    api: &Api,
    name: &str,
    saved: Option<Saved>,
    plan: &Plan,
) -> Result<Option<(String, Value)>> {
    let Some(saved) = saved.filter(|s| s.part_size == plan.part_size) else {
        return Ok(None);
    };
    match api
        .get(&["artifacts", name, "uploads", &saved.upload_id], &[])
        .await
    {
        // A committed one is done with: its answer was the run's that
        // committed it (a run that died before forgetting it must not make
        // every later push of these bytes answer, or be refused, as that one).
        Ok(answer) => match answer.body.get("state").and_then(Value::as_str) {
            Some("pending" | "verifying") => {
                let mut body = answer.body;
                if body.get("multipart").is_none() {
                    body["multipart"] =
                        json!({"part_size": plan.part_size, "part_count": plan.part_count});
                }
                Ok(Some((saved.upload_id, body)))
            }
            _ => Ok(None),
        },
        Err(Error::Api {
            status: 404 | 409, ..
        }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The plan the server answered (`multipart: {part_size, part_count}`),
/// which must be the one the digests were computed for.
fn server_plan(answer: &Value, ours: Plan) -> Result<Plan> {
    let Some(m) = answer.get("multipart") else {
        return Err(Error::Protocol(format!(
            "start upload answered neither url, exists nor multipart: {answer}"
        )));
    };
    let part_size = m.get("part_size").and_then(Value::as_u64);
    let part_count = m.get("part_count").and_then(Value::as_u64);
    if part_size != Some(ours.part_size) || part_count != Some(u64::from(ours.part_count)) {
        return Err(Error::Protocol(format!(
            "the API cut the upload into {m}, not the {} parts of {} bytes asked for",
            ours.part_count, ours.part_size
        )));
    }
    Ok(ours)
}
