//! Progressive rollouts (SPEC 10.1) over HTTP through the local server,
//! driven by the same driver the deployment runs (here every 200 ms),
//! against the emulator's CloudWatch alarms; and the events of a
//! push–publish–rollout–abort story (SPEC 10.2).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::model::{ChangeRequest, LOCAL_ACTOR};
use shared::rollout_driver::Driver;
use test_support::{TestStore, alias, name, to};

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    /// The local server over `store`, and (with `period`) its driver.
    async fn start(store: &TestStore, period: Option<Duration>) -> Self {
        Self::over(store, store.another_repository(), period).await
    }

    /// [`Self::start`] serving `repo` (over `store`).
    async fn over(store: &TestStore, repo: shared::Repository, period: Option<Duration>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(local_api::serve(listener, Arc::new(repo)));
        if let Some(period) = period {
            tokio::spawn(Driver::new(store.another_repository(), &store.sdk).run(period));
        }
        Self {
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{}", self.base, path));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, body)
    }

    async fn start_rollout(&self, body: Value) -> Value {
        let (status, rollout) = self
            .call("POST", "/artifacts/app/aliases/prod/rollouts", Some(body))
            .await;
        assert_eq!(status, 201, "{rollout}");
        rollout
    }

    /// `prod` points at version 1 alone (where `release` left it).
    async fn assert_prod_on_one_alone(&self) {
        let prod = self.alias().await;
        assert_eq!(
            (prod["version"].clone(), prod["secondary_version"].clone()),
            (json!("1"), Value::Null),
            "{prod}"
        );
    }

    async fn rollout(&self, id: &str) -> Value {
        let (status, rollout) = self
            .call(
                "GET",
                &format!("/artifacts/app/aliases/prod/rollouts/{id}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{rollout}");
        rollout
    }

    /// Polls the rollout until `done` says so (at most 20 s).
    async fn until(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let rollout = self.rollout(id).await;
            if done(&rollout) {
                return rollout;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "rollout stuck: {rollout}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn alias(&self) -> Value {
        self.call("GET", "/artifacts/app/aliases/prod", None)
            .await
            .1
    }

    /// The alias's history, oldest first.
    async fn history(&self) -> Vec<Value> {
        let (status, page) = self
            .call(
                "GET",
                "/artifacts/app/aliases/prod/history?limit=1000",
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let mut items = page["items"].as_array().unwrap().clone();
        items.reverse();
        items
    }
}

/// `app` versions 1 and 2, `prod` → 1.
async fn store_with_release() -> TestStore {
    let store = TestStore::new().await;
    release(&store).await;
    store
}

/// `app` versions 1 ("one") and 2 ("two"), `prod` → 1.
async fn release(store: &TestStore) {
    let app = name("app");
    store.publish_each(&app, &[b"one", b"two"]).await;
    store
        .repo
        .put_alias(&app, &alias("prod"), to(1), &ChangeRequest::default())
        .await
        .unwrap();
}

/// Alarms are the emulator's, shared by every test: each test has its own.
const ALARM_ARN: &str = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:three-step-errors";

/// History is gapless: revisions 1, 2, 3, … in order.
fn assert_gapless(history: &[Value]) {
    let revisions: Vec<u64> = history
        .iter()
        .map(|h| h["revision"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=history.len() as u64).collect();
    assert_eq!(revisions, expected, "history is gapless");
}

#[tokio::test]
async fn a_three_step_rollout_completes_while_its_alarm_stays_ok() {
    let store = store_with_release().await;
    store.alarm("three-step-errors", "OK").await;
    // The driver starts once the first step is checked: a first hold of
    // one second could otherwise pass before a slow check reads the alias.
    let api = Api::start(&store, None).await;
    let rollout = api
        .start_rollout(json!({
            "version": "2",
            "steps": [{"weight": 10, "hold": "1s"}, {"weight": 50, "hold": "1s"}, {"weight": 100}],
            "alarms": [ALARM_ARN],
            "message": "release 2",
        }))
        .await;
    // The first step is applied at once.
    assert_eq!(rollout["state"], "active");
    assert_eq!(rollout["step"], 1);
    assert_eq!(rollout["weight"], 10);
    assert_eq!(rollout["alarms"], json!(["three-step-errors"]));
    let alias = api.alias().await;
    assert_eq!(alias["version"], "1");
    assert_eq!(alias["secondary_version"], "2");
    assert_eq!(alias["secondary_version_weight"], 10);
    let id = rollout["id"].as_str().unwrap().to_owned();
    let (_, active) = api
        .call(
            "GET",
            "/artifacts/app/aliases/prod/rollouts?state=active",
            None,
        )
        .await;
    assert_eq!(active["items"][0]["id"], id.as_str());

    tokio::spawn(
        Driver::new(store.another_repository(), &store.sdk).run(Duration::from_millis(200)),
    );
    let done = api.until(&id, |r| r["state"] == "completed").await;
    assert_eq!(done["weight"], 100);
    assert_eq!(done["next_step_at"], Value::Null);
    let alias = api.alias().await;
    assert_eq!(alias["version"], "2");
    assert_eq!(alias["secondary_version"], Value::Null);
    assert_eq!(alias["revision"], done["revision"]);

    let history = api.history().await;
    assert_gapless(&history);
    let story: Vec<(String, Value, Value)> = history
        .iter()
        .map(|h| {
            (
                h["actor"].as_str().unwrap().to_owned(),
                h["version"].clone(),
                h["secondary_version_weight"].clone(),
            )
        })
        .collect();
    let driver = format!("rollout:{id}");
    assert_eq!(
        story,
        [
            ("local".to_owned(), json!("1"), Value::Null),
            ("local".to_owned(), json!("1"), json!(10)),
            (driver.clone(), json!("1"), json!(50)),
            (driver, json!("2"), Value::Null),
        ]
    );
    assert!(
        history[1]["message"]
            .as_str()
            .unwrap()
            .starts_with("release 2")
    );
    // Rollback works on a rollout's change as on any other.
    let (status, back) = api
        .call(
            "POST",
            "/artifacts/app/aliases/prod/rollback",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(back["secondary_version_weight"], 50);
    let (_, active) = api
        .call(
            "GET",
            "/artifacts/app/aliases/prod/rollouts?state=active",
            None,
        )
        .await;
    assert_eq!(active["items"], json!([]));
}

#[tokio::test]
async fn a_rollout_aborts_back_to_where_it_was_when_its_alarm_fires_mid_way() {
    let store = store_with_release().await;
    store.alarm("abort-errors", "OK").await;
    let api = Api::start(&store, Some(Duration::from_millis(200))).await;
    let rollout = api
        .start_rollout(json!({
            "version": "2",
            "steps": [{"weight": 10, "hold": "1s"}, {"weight": 50, "hold": "1h"}, {"weight": 100}],
            "alarms": ["abort-errors"],
        }))
        .await;
    let id = rollout["id"].as_str().unwrap().to_owned();
    api.until(&id, |r| r["step"] == 2).await;
    assert_eq!(api.alias().await["secondary_version_weight"], 50);

    store.alarm("abort-errors", "ALARM").await;
    let aborted = api.until(&id, |r| r["state"] == "aborted").await;
    assert!(
        aborted["reason"].as_str().unwrap().contains("abort-errors"),
        "{aborted}"
    );
    let alias = api.alias().await;
    assert_eq!(alias["version"], "1");
    assert_eq!(alias["secondary_version"], Value::Null);
    let history = api.history().await;
    assert_gapless(&history);
    assert_eq!(history.len(), 4, "create, 10 %, 50 %, abort");
    let abort = &history[3];
    assert_eq!(abort["action"], "rollback");
    assert_eq!(abort["actor"], format!("rollout:{id}"));
    assert!(abort["message"].as_str().unwrap().contains("abort-errors"));
    // Over: the target version is no alias's any more and may go.
    let (status, _) = api.call("DELETE", "/artifacts/app/versions/2", None).await;
    assert_eq!(status, 204);
    // Acting on a finished rollout is a conflict.
    let (status, body) = api
        .call(
            "POST",
            &format!("/artifacts/app/aliases/prod/rollouts/{id}/promote"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("RolloutConflict"))
    );
}

#[tokio::test]
async fn changes_racing_a_rollout_are_refused_or_cancel_it_and_a_deleted_target_is_impossible() {
    let store = store_with_release().await;
    // No driver: the rollout stays at its first step.
    let api = Api::start(&store, None).await;
    let rollout = api
        .start_rollout(json!({"version": "2", "preset": "canary-10-5m"}))
        .await;
    let id = rollout["id"].as_str().unwrap().to_owned();
    // A manual move: 409 naming the rollout.
    let (status, body) = api
        .call(
            "PUT",
            "/artifacts/app/aliases/prod",
            Some(json!({"version": "1"})),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "RolloutInProgress");
    assert!(body["error"]["message"].as_str().unwrap().contains(&id));
    // A second rollout: 409 too.
    let (status, body) = api
        .call(
            "POST",
            "/artifacts/app/aliases/prod/rollouts",
            Some(json!({"version": "2", "preset": "all-at-once"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("RolloutInProgress"))
    );
    // Rollback and delete too.
    for (method, path) in [
        ("POST", "/artifacts/app/aliases/prod/rollback"),
        ("DELETE", "/artifacts/app/aliases/prod"),
    ] {
        let (status, body) = api.call(method, path, None).await;
        assert_eq!(status, 409, "{method} {path}: {body}");
    }
    // The version being rolled out cannot be deleted.
    let (status, body) = api.call("DELETE", "/artifacts/app/versions/2", None).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("VersionInUse"))
    );
    // Pause and resume change the rollout only.
    let before = api.alias().await["revision"].clone();
    for action in ["pause", "resume"] {
        let (status, body) = api
            .call(
                "POST",
                &format!("/artifacts/app/aliases/prod/rollouts/{id}/{action}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(api.alias().await["revision"], before);
    // A move that cancels it explicitly.
    let (status, moved) = api
        .call(
            "PUT",
            "/artifacts/app/aliases/prod",
            Some(json!({"version": "1", "cancel_rollout": true, "message": "hotfix"})),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    let cancelled = api.rollout(&id).await;
    assert_eq!(cancelled["state"], "aborted");
    assert!(
        cancelled["reason"]
            .as_str()
            .unwrap()
            .contains("cancelled by local")
    );
    assert_gapless(&api.history().await);
    // Bad input is a 400 with a clear code.
    for bad in [
        json!({"version": "2"}),
        json!({"version": "2", "preset": "canary-10-5m", "steps": [{"weight": 10, "hold": "1m"}]}),
        json!({"version": "2", "steps": [{"weight": 10}]}),
        json!({"version": "2", "steps": [{"weight": 10, "hold": "8d"}]}),
        json!({"version": "2", "steps": [{"weight": 50, "hold": "1m"}, {"weight": 20, "hold": "1m"}]}),
        json!({"version": "2", "preset": "canary-10-5m", "alarms": ["arn:aws:sns:us-east-1:1:t"]}),
        json!({"version": 2, "preset": "canary-10-5m"}),
    ] {
        let (status, body) = api
            .call(
                "POST",
                "/artifacts/app/aliases/prod/rollouts",
                Some(bad.clone()),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, _) = api
        .call(
            "GET",
            "/artifacts/app/aliases/prod/rollouts/not-an-id",
            None,
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = api
        .call(
            "POST",
            &format!("/artifacts/app/aliases/prod/rollouts/{id}/jump"),
            None,
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_purge_during_a_rollout_wipes_it_and_the_driver_forgets_it() {
    let store = store_with_release().await;
    let api = Api::start(&store, None).await;
    let rollout = api
        .start_rollout(json!({"version": "2", "preset": "canary-10-1s"}))
        .await;
    let id = rollout["id"].as_str().unwrap().to_owned();
    let (status, _) = api.call("DELETE", "/artifacts/app", None).await;
    assert_eq!(status, 204);
    let (status, _) = api
        .call(
            "GET",
            &format!("/artifacts/app/aliases/prod/rollouts/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let driver = Driver::new(store.another_repository(), &store.sdk);
    let report = driver.pass().await.unwrap();
    assert_eq!(report.forgotten, 1, "{report:?}");
    assert!(store.repo.held_rollouts().await.unwrap().is_empty());
    // Nothing of the artifact came back.
    let (status, _) = api.call("GET", "/artifacts/app/aliases/prod", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn two_drivers_at_once_never_apply_a_step_twice() {
    let store = store_with_release().await;
    let api = Api::start(&store, None).await;
    let rollout = api
        .start_rollout(json!({
            "version": "2",
            "steps": [
                {"weight": 10, "hold": "1s"}, {"weight": 20, "hold": "1s"},
                {"weight": 30, "hold": "1s"}, {"weight": 100}
            ],
        }))
        .await;
    let id = rollout["id"].as_str().unwrap().to_owned();
    let (a, b) = (
        Driver::new(store.another_repository(), &store.sdk),
        Driver::new(store.another_repository(), &store.sdk),
    );
    let started = Instant::now();
    let (mut applied, mut lost) = (0, 0);
    while api.rollout(&id).await["state"] != "completed" {
        assert!(started.elapsed() < Duration::from_secs(30));
        let (ra, rb) = tokio::join!(a.pass(), b.pass());
        for report in [ra.unwrap(), rb.unwrap()] {
            applied += report.stepped + report.completed;
            lost += report.lost;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(applied, 3, "steps 2, 3 and the completion, once each");
    let history = api.history().await;
    assert_gapless(&history);
    let weights: Vec<Value> = history
        .iter()
        .map(|h| h["secondary_version_weight"].clone())
        .collect();
    assert_eq!(
        weights,
        [Value::Null, json!(10), json!(20), json!(30), Value::Null]
    );
    eprintln!("passes that found a step taken by the other: {lost}");
}

/// Events for push, publish, alias, push, publish, rollout, alarm, abort:
/// exactly the expected sequence once duplicates (same id, same detail)
/// are dropped.
#[tokio::test]
async fn a_push_publish_rollout_abort_story_gives_its_events_in_order() {
    let store = TestStore::new().await;
    let app = name("app");
    store.alarm("story-errors", "OK").await;
    store.upload(&app, b"one").await;
    store
        .repo
        .publish_version(&app, false, LOCAL_ACTOR)
        .await
        .unwrap();
    store
        .repo
        .put_alias(&app, &alias("prod"), to(1), &ChangeRequest::default())
        .await
        .unwrap();
    let first = store.drain_events().await;
    store.upload(&app, b"two").await;
    store
        .repo
        .publish_version(&app, false, LOCAL_ACTOR)
        .await
        .unwrap();
    let rollout = store
        .repo
        .start_rollout(
            &app,
            &alias("prod"),
            shared::model::RolloutRequest {
                version: shared::Version::Number(2),
                steps: shared::rollout::preset("canary-25-1h").unwrap(),
                alarms: vec!["story-errors".into()],
                message: None,
            },
            "ci",
        )
        .await
        .unwrap();
    store.alarm("story-errors", "ALARM").await;
    let report = Driver::new(store.another_repository(), &store.sdk)
        .pass()
        .await
        .unwrap();
    assert_eq!(report.aborted, 1);
    let events = store.drain_events().await;
    // Draining again (a redelivery) adds nothing new.
    assert_eq!(store.drain_events().await, events);
    assert!(events.starts_with(&first));

    let mut seen: std::collections::HashMap<String, Value> = Default::default();
    let mut story = Vec::new();
    for event in &events {
        assert_eq!(event.source, "versioned-artifacts");
        match seen.get(event.id()) {
            Some(detail) => assert_eq!(detail, &event.detail, "a duplicate is the same event"),
            None => {
                seen.insert(event.id().to_owned(), event.detail.clone());
                story.push(event);
            }
        }
    }
    let types: Vec<&str> = story.iter().map(|e| e.detail_type).collect();
    assert_eq!(
        types,
        [
            "Upload Committed",
            "Version Published",
            "Alias Changed",
            "Upload Committed",
            "Version Published",
            "Alias Changed",
            "Rollout Step",
            "Alias Changed",
            "Rollout Aborted",
        ]
    );
    assert_eq!(story[1].detail["version"], "1");
    assert_eq!(story[4].detail["version"], "2");
    assert_eq!(story[6].detail["rollout"], rollout.id.as_str());
    assert_eq!(story[6].detail["weight"], 25);
    assert_eq!(story[7].detail["action"], "rollback");
    assert_eq!(story[7].detail["actor"], format!("rollout:{}", rollout.id));
    assert_eq!(story[7].detail["after"]["version"], "1");
    assert!(
        story[8].detail["reason"]
            .as_str()
            .unwrap()
            .contains("story-errors")
    );
    for event in &story {
        assert_eq!(event.detail["name"], "app");
        assert!(event.detail["sequence"].is_string());
    }
    // A purge is an event too.
    store.repo.purge_artifact(&app).await.unwrap();
    let after = store.drain_events().await;
    assert_eq!(after.last().map(|e| e.detail_type), Some("Artifact Purged"));
}

// Review finding: a driver pass reads every rollout, asks CloudWatch for
// the alarms of those it read, then visits each (reading it again). A
// rollout whose first read failed (throttled, timed out) was visited all
// the same, its alarms taken for missing ones, and a healthy rollout was
// aborted and its alias rolled back.
#[tokio::test]
async fn a_rollout_the_pass_could_not_read_is_left_for_the_next_pass_not_aborted() {
    use test_support::proxy::{Action, Fault, Plan, Rule};
    let store = store_with_release().await;
    store.alarm("unread-errors", "OK").await;
    let api = Api::start(&store, None).await;
    let rollout = api
        .start_rollout(
            json!({"version": "2", "preset": "canary-10-1h", "alarms": ["unread-errors"]}),
        )
        .await;
    let id = rollout["id"].as_str().unwrap().to_owned();
    // GIVEN a pass whose first read of the rollout fails, every attempt of it.
    let plan = Plan::new();
    let failing = plan.add(Rule::new(
        "GetItem",
        Some(&id),
        Action::Fault(Fault::Status500),
        3,
    ));
    let report = Driver::new(store.through(&plan).await, &store.sdk)
        .pass()
        .await
        .unwrap();
    assert_eq!(failing.hits.load(std::sync::atomic::Ordering::SeqCst), 3);
    // THEN it is counted failed, and the rollout and its alias are untouched.
    assert_eq!((report.failed, report.aborted), (1, 0), "{report:?}");
    let after = api.rollout(&id).await;
    assert_eq!(after["state"], "active", "{after}");
    let (_, prod) = api.call("GET", "/artifacts/app/aliases/prod", None).await;
    assert_eq!(prod["secondary_version_weight"], 10, "{prod}");
}

// Review finding (SPEC 7.5): a pause whose write landed but whose answer
// was lost (the SDK sent it again, and its condition failed on its own
// write) answered 409, five reads later.
#[tokio::test]
async fn a_pause_whose_answer_was_lost_answers_as_if_it_had_arrived() {
    use shared::rollout::RolloutAction;
    let store = store_with_release().await;
    let api = Api::start(&store, None).await;
    let rollout = api
        .start_rollout(json!({"version": "2", "preset": "canary-10-1h"}))
        .await;
    let id = rollout["id"].as_str().unwrap().to_owned();
    for (action, state) in [
        (RolloutAction::Pause, "paused"),
        (RolloutAction::Resume, "active"),
    ] {
        let losing = store.losing_first_answer("PutItem", Some(&id)).await;
        let answer = losing
            .act_on_rollout(&name("app"), &alias("prod"), &id, action, "ci", None)
            .await
            .unwrap_or_else(|e| panic!("{action:?}: {e:?}"));
        assert_eq!(answer.state.as_str(), state);
        assert_eq!(api.rollout(&id).await["state"], state);
    }
}

// Review finding (SPEC 7.16): the library saves an alias row whole, which
// drops the rollout it named. A paused rollout (or one in a long hold) was
// never ended by the driver, which looked at the alias only when it moved
// it, and a person's abort answered 409 five times over.
#[tokio::test]
async fn a_rollout_whose_alias_the_library_rewrote_is_ended_by_the_next_pass_or_an_abort() {
    let store = store_with_release().await;
    let api = Api::start(&store, None).await;
    let library_moves_prod = || {
        store.library(&[
            "call",
            "put_alias",
            &json!({"name": "app", "alias": "prod", "version": 1}).to_string(),
        ])
    };
    // GIVEN a paused rollout whose alias the library rewrote.
    let paused = api
        .start_rollout(json!({"version": "2", "preset": "canary-10-1h"}))
        .await;
    let id = paused["id"].as_str().unwrap().to_owned();
    let (status, body) = api
        .call(
            "POST",
            &format!("/artifacts/app/aliases/prod/rollouts/{id}/pause"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    library_moves_prod();
    // WHEN the driver passes THEN it ends it, the alias as the library left it.
    let report = Driver::new(store.another_repository(), &store.sdk)
        .pass()
        .await
        .unwrap();
    assert_eq!(report.aborted, 1, "{report:?}");
    let ended = api.rollout(&id).await;
    assert_eq!(ended["state"], "aborted", "{ended}");
    assert_eq!(api.alias().await["version"], "1");
    assert!(store.repo.held_rollouts().await.unwrap().is_empty());

    // GIVEN another rollout, its alias rewritten by the library again,
    // WHEN a person aborts it THEN it ends.
    let active = api
        .start_rollout(json!({"version": "2", "preset": "canary-10-1h"}))
        .await;
    let id = active["id"].as_str().unwrap().to_owned();
    library_moves_prod();
    let (status, body) = api
        .call(
            "POST",
            &format!("/artifacts/app/aliases/prod/rollouts/{id}/abort"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["state"].clone()),
        (200, json!("aborted")),
        "{body}"
    );
    assert_eq!(api.alias().await["version"], "1");
}

// Acceptance finding (SPEC 10.1): a rollout started while an alarm it
// watches was in ALARM (or did not exist) applied its first step anyway,
// and an all-at-once one completed: the driver, the only reader of the
// alarms, came after. A rollout now starts only while its alarms vouch
// for it, and a refused start writes nothing.
#[tokio::test]
async fn a_rollout_does_not_start_while_an_alarm_it_watches_is_in_alarm_or_missing() {
    let store = store_with_release().await;
    let api = Api::start(&store, None).await;
    let alarm = format!("start-errors-{}", &store.config.table[5..]);
    store.alarm(&alarm, "ALARM").await;
    let start = |preset: &str, alarm: &str| {
        api.call(
            "POST",
            "/artifacts/app/aliases/prod/rollouts",
            Some(json!({"version": "2", "preset": preset, "alarms": [alarm]})),
        )
    };
    for preset in ["all-at-once", "canary-10-5m"] {
        let (status, body) = start(preset, &alarm).await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (409, json!("RolloutConflict")),
            "{body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("alarm {alarm} is in ALARM")),
            "{message}"
        );
    }
    let (status, body) = start("canary-10-5m", "no-such-alarm-anywhere").await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{body}"
    );
    // Nothing written: the alias as it was, no rollout.
    api.assert_prod_on_one_alone().await;
    let (_, rollouts) = api
        .call("GET", "/artifacts/app/aliases/prod/rollouts", None)
        .await;
    assert_eq!(rollouts["items"], json!([]), "{rollouts}");
    // Once the alarm is OK the rollout starts.
    store.alarm(&alarm, "OK").await;
    let started = api
        .start_rollout(json!({"version": "2", "preset": "all-at-once", "alarms": [alarm]}))
        .await;
    assert_eq!(started["state"], "completed", "{started}");
}

// Acceptance finding (SPEC 10.3): a version archived while a rollout moved
// traffic to it was still rolled out to 100 % by the driver's next steps,
// leaving the alias on an archived version alone. The driver now takes the
// alias back, as on an alarm.
#[tokio::test]
async fn a_rollout_whose_version_is_archived_meanwhile_is_aborted_by_the_next_pass() {
    let store = store_with_release().await;
    let api = Api::start(&store, None).await;
    let started = api
        .start_rollout(
            json!({"version": "2", "steps": [{"weight": 10, "hold": "1s"}, {"weight": 100}]}),
        )
        .await;
    let id = started["id"].as_str().unwrap().to_owned();
    let (status, body) = api
        .call(
            "PATCH",
            "/artifacts/app/versions/2",
            Some(json!({"status": "archived", "message": "bad build"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = Driver::new(store.another_repository(), &store.sdk)
        .pass()
        .await
        .unwrap();
    assert_eq!(report.aborted, 1, "{report:?}");
    let ended = api.rollout(&id).await;
    assert_eq!(ended["state"], "aborted", "{ended}");
    assert!(
        ended["reason"].as_str().unwrap().contains("archived"),
        "{ended}"
    );
    api.assert_prod_on_one_alone().await;
}

// Review finding (SPEC 10.1, 7.16): a rollout started on an alias the
// library had rewritten (dropping the rollout it named) before the
// driver's next pass overwrote the registry entry of the first: the first
// was never driven again and stayed active beside the second, and its
// abort answered 409 while the second lived. The start now ends it first.
#[tokio::test]
async fn a_rollout_started_after_the_library_rewrote_the_alias_ends_the_one_it_dropped() {
    let store = store_with_release().await;
    let api = Api::start(&store, None).await;
    let first = api
        .start_rollout(json!({"version": "2", "preset": "canary-10-1h"}))
        .await;
    let first = first["id"].as_str().unwrap().to_owned();
    store.library(&[
        "call",
        "put_alias",
        &json!({"name": "app", "alias": "prod", "version": 1}).to_string(),
    ]);
    // WHEN another rollout starts before any driver pass.
    let second = api
        .start_rollout(json!({"version": "2", "preset": "canary-20-1h"}))
        .await;
    let second = second["id"].as_str().unwrap().to_owned();
    // THEN the first is over, and only the second holds the alias.
    let ended = api.rollout(&first).await;
    assert_eq!(ended["state"], "aborted", "{ended}");
    let (status, active) = api
        .call(
            "GET",
            "/artifacts/app/aliases/prod/rollouts?state=active",
            None,
        )
        .await;
    assert_eq!(status, 200, "{active}");
    let ids: Vec<&str> = active["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, [second.as_str()]);
    let held = store.repo.held_rollouts().await.unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].2, second);
    assert_eq!(api.alias().await["secondary_version_weight"], 20);
}

// Audit finding (SPEC 7.16): ending a rollout whose alias the library
// rewrote is refused while a purge runs (its fence). That refusal was told
// apart from nothing: an abort tried again and again, then answered that
// the rollout "changed meanwhile". It is the purge's 409.
#[tokio::test]
async fn an_orphaned_rollout_aborted_during_a_purge_answers_that_the_artifact_is_being_purged() {
    let store = store_with_release().await;
    let api = Api::start(&store, None).await;
    let started = api
        .start_rollout(json!({"version": "2", "preset": "canary-10-1h"}))
        .await;
    let id = started["id"].as_str().unwrap().to_owned();
    store.library(&[
        "call",
        "put_alias",
        &json!({"name": "app", "alias": "prod", "version": 1}).to_string(),
    ]);
    // A purge holds its fence, held before it deletes LATEST.
    let (slow, gate) = store.held_before("DeleteItem", Some("LATEST")).await;
    let purge = tokio::spawn(async move { slow.purge_artifact(&name("app")).await });
    gate.arrived().await;
    let (status, body) = api
        .call(
            "POST",
            &format!("/artifacts/app/aliases/prod/rollouts/{id}/abort"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("ArtifactBeingPurged")),
        "{body}"
    );
    gate.open();
    purge.await.unwrap().unwrap();
}

// Review finding: the library deletes a version whatever points at it.
// A rollout toward a version deleted so failed its every next step, pass
// after pass, with the alias still sending traffic to it; now the pass
// takes the alias back, as an alarm would.
#[tokio::test]
async fn a_rollout_toward_a_version_the_library_deleted_aborts_at_its_next_step() {
    let store = store_with_release().await;
    let api = Api::start(&store, None).await;
    let rollout = api
        .start_rollout(
            json!({"version": "2", "steps": [{"weight": 10, "hold": "1s"}, {"weight": 100}]}),
        )
        .await;
    let id = rollout["id"].as_str().unwrap().to_owned();
    store.library(&[
        "call",
        "delete_artifact_version",
        &json!({"name": "app", "version": 2}).to_string(),
    ]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = Driver::new(store.another_repository(), &store.sdk)
        .pass()
        .await
        .unwrap();
    assert_eq!((report.aborted, report.failed), (1, 0), "{report:?}");
    let ended = api.rollout(&id).await;
    assert_eq!(ended["state"], "aborted", "{ended}");
    api.assert_prod_on_one_alone().await;
}

// Review finding: a purge leaves the driver's entry of a rollout it wiped
// (the driver forgets it at its next pass); an all-at-once rollout started
// before that pass on the artifact made again answered 409, its
// transaction deleting an entry that named the old rollout.
#[tokio::test]
async fn an_all_at_once_rollout_right_after_a_purge_mid_rollout_completes() {
    let store = store_with_release().await;
    let api = Api::start(&store, None).await;
    api.start_rollout(json!({"version": "2", "preset": "canary-10-1h"}))
        .await;
    let (status, _) = api.call("DELETE", "/artifacts/app", None).await;
    assert_eq!(status, 204);
    assert_eq!(store.repo.held_rollouts().await.unwrap().len(), 1);
    release(&store).await;
    let rollout = api
        .start_rollout(json!({"version": "2", "preset": "all-at-once"}))
        .await;
    assert_eq!(rollout["state"], "completed", "{rollout}");
    assert_eq!(api.alias().await["version"], "2");
}

// Review finding (SPEC 10.1, 10.3): the driver took "archived" from the
// alias row's copy of the version's status, which a status change writes
// after its own transaction. A pass between the two completed the rollout
// onto the archived version: the move let an archived version the alias
// already pointed at through, whatever its new share. A move that raises
// an archived version's share is refused now, and the driver aborts.
#[tokio::test]
async fn a_rollout_is_aborted_when_its_version_is_archived_before_the_alias_says_so() {
    let store = store_with_release().await;
    let api = Api::start(&store, None).await;
    let started = api
        .start_rollout(
            json!({"version": "2", "steps": [{"weight": 10, "hold": "1s"}, {"weight": 100}]}),
        )
        .await;
    let id = started["id"].as_str().unwrap().to_owned();
    // GIVEN version 2 archived, its status not yet copied onto the alias.
    store
        .set_raw_string("app", "000002", "status", "archived")
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // WHEN the driver's pass finds the hold over.
    let report = Driver::new(store.another_repository(), &store.sdk)
        .pass()
        .await
        .unwrap();
    // THEN it aborts: prod back on version 1 alone.
    assert_eq!(report.aborted, 1, "{report:?}");
    let ended = api.rollout(&id).await;
    assert!(
        ended["reason"].as_str().unwrap().contains("archived"),
        "{ended}"
    );
    api.assert_prod_on_one_alone().await;
}

/// SPEC 10.3: an archived version gains no traffic through an alias move,
/// even one the alias already points at; its share may only shrink.
#[tokio::test]
async fn an_archived_version_an_alias_points_at_gains_no_share() {
    let store = store_with_release().await;
    let api = Api::start(&store, None).await;
    let split = |weight: u32| json!({"version": "1", "secondary_version": "2", "secondary_version_weight": weight});
    let (status, body) = api
        .call("PUT", "/artifacts/app/aliases/prod", Some(split(10)))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .call(
            "PATCH",
            "/artifacts/app/versions/2",
            Some(json!({"status": "archived"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for (what, body) in [
        ("a higher weight", split(50)),
        ("made primary", json!({"version": "2"})),
        // Acceptance finding: primary with a smaller share than it had.
        (
            "made primary with less",
            json!({"version": "2", "secondary_version": "1", "secondary_version_weight": 99}),
        ),
    ] {
        let (status, answer) = api
            .call("PUT", "/artifacts/app/aliases/prod", Some(body))
            .await;
        assert_eq!(status, 409, "{what}: {answer}");
        assert_eq!(
            answer["error"]["code"], "VersionArchived",
            "{what}: {answer}"
        );
    }
    let (status, body) = api
        .call("PUT", "/artifacts/app/aliases/prod", Some(split(5)))
        .await;
    assert_eq!(status, 200, "a lower weight: {body}");
    // Audit finding: a rollback is a move like any other. Back to the 10 %
    // it had is a gain; back to a revision without it is not.
    let (status, answer) = api
        .call("POST", "/artifacts/app/aliases/prod/rollback", None)
        .await;
    assert_eq!(status, 409, "rolled back onto a larger share: {answer}");
    assert_eq!(answer["error"]["code"], "VersionArchived", "{answer}");
    let (status, answer) = api
        .call(
            "POST",
            "/artifacts/app/aliases/prod/rollback",
            Some(json!({"to_revision": 1})),
        )
        .await;
    assert_eq!(
        status, 200,
        "rolled back off the archived version: {answer}"
    );
    assert_eq!(answer["version"], "1", "{answer}");
    assert_eq!(answer["secondary_version"], Value::Null, "{answer}");
}

/// Review finding: a person takes a hand-made canary off an archived
/// primary by rolling it back (or moving the alias onto the primary alone):
/// the primary hands back the canary's share, it gains nothing.
#[tokio::test]
async fn a_canary_is_taken_off_an_archived_primary_by_a_rollback() {
    let store = store_with_release().await;
    let api = Api::start(&store, None).await;
    let (status, body) = api
        .call(
            "PUT",
            "/artifacts/app/aliases/prod",
            Some(json!({"version": "1", "secondary_version": "2", "secondary_version_weight": 10})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .call(
            "PATCH",
            "/artifacts/app/versions/1",
            Some(json!({"status": "archived"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Another canary is a new move: the archived primary gains by it.
    store.publish_each(&name("app"), &[b"three"]).await;
    let (status, answer) = api
        .call(
            "PUT",
            "/artifacts/app/aliases/prod",
            Some(json!({"version": "1", "secondary_version": "3", "secondary_version_weight": 5})),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "VersionArchived", "{answer}");
    let (status, body) = api
        .call("POST", "/artifacts/app/aliases/prod/rollback", None)
        .await;
    assert_eq!(status, 200, "{body}");
    api.assert_prod_on_one_alone().await;
}

/// Review of the rule above: a rollout's abort goes back to the state the
/// alias held, so it gives an archived version back its share; refusing it
/// left a canary running that no alarm or abort could take back while the
/// version before it was archived. (A person's rollback is a new move, and
/// is refused: the test above.)
#[tokio::test]
async fn a_rollout_aborts_back_onto_the_archived_version_it_started_from() {
    let store = store_with_release().await;
    let api = Api::start(&store, None).await;
    let started = api
        .start_rollout(json!({"version": "2", "preset": "canary-10-1h"}))
        .await;
    let id = started["id"].as_str().unwrap().to_owned();
    let (status, body) = api
        .call(
            "PATCH",
            "/artifacts/app/versions/1",
            Some(json!({"status": "archived"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .call(
            "POST",
            &format!("/artifacts/app/aliases/prod/rollouts/{id}/abort"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    api.assert_prod_on_one_alone().await;
}

// Audit finding (SPEC 10.1, 7.16): a start that read the alias before
// another start landed, and the registry entry after, took the other
// rollout for orphaned and ended it, while the alias still named it: the
// alias stayed split, held by an aborted rollout no pass drives and no
// change could cancel. The other rollout's end is conditional on the
// alias not naming it, and the late start answers 409.
#[tokio::test]
async fn a_start_that_read_the_alias_before_another_start_landed_never_ends_that_rollout() {
    let store = store_with_release().await;
    let (app, prod) = (name("app"), alias("prod"));
    let request = |preset: &str| shared::model::RolloutRequest {
        version: shared::Version::Number(2),
        steps: shared::rollout::preset(preset).unwrap(),
        alarms: vec![],
        message: None,
    };
    // GIVEN a start whose registry read waits until another start landed
    // (its alias read went first).
    let (held, gate) = store.held_before("GetItem", Some("__rollouts")).await;
    let late = {
        let (app, prod, request) = (app.clone(), prod.clone(), request("canary-20-1h"));
        tokio::spawn(async move { held.start_rollout(&app, &prod, request, "late").await })
    };
    gate.arrived().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = store
        .repo
        .start_rollout(&app, &prod, request("canary-10-1h"), "first")
        .await
        .unwrap();
    gate.open();
    // THEN the late start is refused, and the first rollout goes on,
    // holding the alias.
    let outcome = late.await.unwrap();
    assert!(
        matches!(outcome, Err(shared::Error::ConcurrentModification(_))),
        "{outcome:?}"
    );
    let rollout = store
        .repo
        .get_rollout(&app, &prod, &first.id)
        .await
        .unwrap();
    assert_eq!(rollout.state.as_str(), "active", "{rollout:?}");
    let held = store.repo.held_rollouts().await.unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].2, first.id);
    let alias_now = store.repo.get_alias(&app, &prod).await.unwrap();
    assert_eq!(rollout.weight, 10, "{rollout:?}");
    assert_eq!(
        alias_now.secondary_version_weight.map(|w| w.get()),
        Some(10),
        "{alias_now:?}"
    );
}

// Acceptance finding (SPEC 7.5): a one-request push moving an alias a
// rollout holds committed and published, then answered 409 for the move:
// a refused request left a new LATEST and a new version behind. The hold
// is checked with the alias's other preconditions, before any write.
#[tokio::test]
async fn a_pipeline_push_onto_an_alias_a_rollout_holds_writes_nothing() {
    let store = store_with_release().await;
    let api = Api::start(&store, None).await;
    api.start_rollout(json!({"version": "2", "preset": "canary-10-1h"}))
        .await;
    let app = name("app");
    let before = store.items_besides_uploads().await;
    let content = b"three";
    let ticket = store
        .repo
        .create_upload(&app, test_support::declare(content), LOCAL_ACTOR)
        .await
        .unwrap();
    test_support::put_bytes(&store.http, &ticket, content).await;
    let (status, answer) = api
        .call(
            "PUT",
            "/artifacts/app",
            Some(
                json!({"upload_id": ticket.upload_id, "publish": true, "alias": {"name": "prod"}}),
            ),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "RolloutInProgress", "{answer}");
    assert_eq!(store.items_besides_uploads().await, before);
    // The same push without the alias goes through.
    let (status, answer) = api
        .call(
            "PUT",
            "/artifacts/app",
            Some(json!({"upload_id": ticket.upload_id, "publish": true})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["published"]["version"], "3", "{answer}");
}

// Acceptance finding (SPEC 10.1): an alarm ARN of another region or
// account was cut down to its name and read in this deployment's own: the
// rollout watched a local alarm of the same name (or none), never the
// alarm listed. Such an ARN is refused.
#[tokio::test]
async fn an_alarm_of_another_region_or_account_is_refused_not_swapped_for_a_local_one() {
    let store = store_with_release().await;
    // Deployed, the template gives every function its account.
    let mut config = store.config.clone();
    config.account_id = Some("123456789012".into());
    let api = Api::over(&store, shared::Repository::new(&store.sdk, &config), None).await;
    store.alarm("swapped-errors", "OK").await;
    for arn in [
        "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:swapped-errors",
        "arn:aws:cloudwatch:us-east-1:999999999999:alarm:swapped-errors",
    ] {
        let (status, answer) = api
            .call(
                "POST",
                "/artifacts/app/aliases/prod/rollouts",
                Some(json!({"version": "2", "preset": "all-at-once", "alarms": [arn]})),
            )
            .await;
        assert_eq!(status, 400, "{arn}: {answer}");
        assert_eq!(answer["error"]["code"], "InvalidRequest", "{arn}: {answer}");
    }
    assert_eq!(api.alias().await["version"], "1");
    // This deployment's own ARN names the alarm.
    let (status, answer) = api
        .call(
            "POST",
            "/artifacts/app/aliases/prod/rollouts",
            Some(json!({"version": "2", "preset": "all-at-once",
                "alarms": ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:swapped-errors"]})),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
}

// Audit finding (SPEC 10.1): one failed DescribeAlarms (throttled, or an
// alarm the driver's role may not read) failed the whole pass, so no
// rollout of the deployment stepped, completed or aborted. The rollouts
// watching the unread alarms wait; the others go on.
#[tokio::test]
async fn an_alarm_read_that_fails_holds_back_only_the_rollouts_watching_it() {
    use test_support::proxy::{Action, Fault, Plan, Rule};
    let store = TestStore::new().await;
    release(&store).await;
    let other = name("other");
    store.publish_each(&other, &[b"one", b"two"]).await;
    store
        .repo
        .put_alias(&other, &alias("prod"), to(1), &ChangeRequest::default())
        .await
        .unwrap();
    store.alarm("unreadable-errors", "OK").await;
    store.alarm("readable-errors", "OK").await;
    let quick = |alarms: Vec<String>| shared::model::RolloutRequest {
        version: shared::Version::Number(2),
        steps: shared::rollout::preset("canary-10-1s").unwrap(),
        alarms,
        message: None,
    };
    let watching = store
        .repo
        .start_rollout(
            &name("app"),
            &alias("prod"),
            quick(vec!["unreadable-errors".into()]),
            "ci",
        )
        .await
        .unwrap();
    // Its alarm is read in the same DescribeAlarms call as the other's.
    let free = store
        .repo
        .start_rollout(
            &other,
            &alias("prod"),
            quick(vec!["readable-errors".into()]),
            "ci",
        )
        .await
        .unwrap();
    // GIVEN the driver's alarm reads of that alarm fail.
    let plan = Plan::new();
    for operation in ["DescribeAlarms", "POST"] {
        plan.add(Rule::new(
            operation,
            Some("unreadable-errors"),
            Action::Fault(Fault::Status500),
            u64::MAX,
        ));
    }
    let driver = Driver::new(store.another_repository(), &store.sdk_through(&plan).await);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // WHEN a pass runs after both holds.
    let report = driver.pass().await.unwrap();
    // THEN the rollout whose alarm was read (alone, once the call of both
    // failed) completes, the other waits.
    assert_eq!(report.completed, 1, "{report:?}");
    assert_eq!(report.alarms_unread, 1, "{report:?}");
    let done = store
        .repo
        .get_rollout(&other, &alias("prod"), &free.id)
        .await
        .unwrap();
    assert_eq!(done.state.as_str(), "completed");
    let waiting = store
        .repo
        .get_rollout(&name("app"), &alias("prod"), &watching.id)
        .await
        .unwrap();
    assert_eq!(waiting.state.as_str(), "active");
    assert_eq!(waiting.weight, 10);
    // AND the function's invocation fails all the same: its errors alarm
    // tells an operator that alarms went unread.
    let text =
        std::fs::read_to_string(test_support::workspace_root().join("events/rollout-driver.json"))
            .unwrap();
    let event = lambda_runtime::LambdaEvent::new(
        serde_json::from_str(&text).unwrap(),
        lambda_runtime::Context::default(),
    );
    let failed = shared::rollout_driver::handle_event(&driver, event).await;
    assert!(
        failed.is_err_and(|d| d.error_type == "AlarmsUnread"),
        "an invocation with unread alarms fails"
    );
}

// Audit finding (SPEC 7.5): a client retrying an action whose answer it
// lost met the state its first attempt made (409 "paused, not active",
// "aborted already"), and the CLI exited 4. An action finding the rollout
// where it takes it answers the rollout as it stands.
#[tokio::test]
async fn an_action_repeated_on_a_rollout_already_where_it_takes_it_answers_it() {
    let store = store_with_release().await;
    let api = Api::start(&store, None).await;
    let started = api
        .start_rollout(json!({"version": "2", "preset": "canary-10-1h"}))
        .await;
    let id = started["id"].as_str().unwrap().to_owned();
    let act = |action: &'static str| {
        let path = format!("/artifacts/app/aliases/prod/rollouts/{id}/{action}");
        let api = &api;
        async move { api.call("POST", &path, None).await }
    };
    for (action, state) in [
        ("pause", "paused"),
        ("resume", "active"),
        ("abort", "aborted"),
    ] {
        let first = act(action).await;
        let again = act(action).await;
        assert_eq!(first.0, 200, "{action}: {}", first.1);
        assert_eq!(again, first, "{action} again");
        assert_eq!(again.1["state"], state);
    }
    // Another action on an ended rollout is still a conflict.
    let (status, body) = act("promote").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("RolloutConflict"))
    );
    let history = api.history().await;
    assert_eq!(history.len(), 3, "create, 10 %, abort: {history:?}");
}
