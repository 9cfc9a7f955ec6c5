//! Alias history, rollback, point-in-time reads and compare-and-swap moves
//! (SPEC 4.2, 7.13), over HTTP through the local server and through the
//! handlers with the sample event's IAM identity.

use std::sync::Arc;

use futures::future::join_all;
use serde_json::{Value, json};
use shared::api::Operation;
use shared::model::{ChangeRequest, LOCAL_ACTOR};
use test_support::{TestStore, name, workspace_root};

struct Api {
    base: String,
    http: reqwest::Client,
}

struct Answer {
    status: u16,
    etag: Option<String>,
    body: Value,
}

impl Api {
    async fn start(store: &TestStore) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(local_api::serve(
            listener,
            Arc::new(store.another_repository()),
        ));
        Self {
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{}", self.base, path));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        Answer { status, etag, body }
    }

    async fn history(&self, alias: &str) -> Vec<Value> {
        let answer = self
            .call(
                "GET",
                &format!("/artifacts/app/aliases/{alias}/history?limit=1000"),
                None,
                &[],
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["items"].as_array().unwrap().clone()
    }
}

/// `app` with versions 1..=n.
async fn seeded(n: u32) -> TestStore {
    let store = TestStore::new().await;
    let app = name("app");
    for i in 1..=n {
        store.upload(&app, format!("build {i}").as_bytes()).await;
        store
            .repo
            .publish_version(&app, false, LOCAL_ACTOR)
            .await
            .unwrap();
    }
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn pipelines_moving_an_alias_with_if_match_at_once_win_one_per_revision_and_lose_nothing() {
    let store = seeded(3).await;
    let api = Api::start(&store).await;
    let created = api
        .call(
            "PUT",
            "/artifacts/app/aliases/prod",
            Some(json!({"version": "1"})),
            &[],
        )
        .await;
    assert_eq!(
        (created.status, created.etag.as_deref()),
        (200, Some("\"1\""))
    );

    let mut winners = Vec::new();
    for round in 0..4 {
        // 32 pipelines read the alias, then all move it at the same moment.
        let reads =
            join_all((0..32).map(|_| api.call("GET", "/artifacts/app/aliases/prod", None, &[])))
                .await;
        let moves = reads.iter().enumerate().map(|(i, read)| {
            let etag = read.etag.clone().unwrap();
            let version = (i % 3 + 1).to_string();
            let message = format!("round {round} pipeline {i}");
            let api = &api;
            async move {
                let body = json!({"version": version, "message": message});
                let answer = api
                    .call(
                        "PUT",
                        "/artifacts/app/aliases/prod",
                        Some(body),
                        &[("if-match", &etag)],
                    )
                    .await;
                (answer, message)
            }
        });
        let answers = join_all(moves).await;
        let won: Vec<_> = answers.iter().filter(|(a, _)| a.status == 200).collect();
        for (answer, _) in &answers {
            assert!(
                answer.status == 200
                    || (answer.status == 412 && answer.body["error"]["code"] == "AliasModified"),
                "{} {}",
                answer.status,
                answer.body
            );
        }
        assert_eq!(won.len(), 1, "exactly one pipeline wins round {round}");
        winners.push((won[0].0.body.clone(), won[0].1.clone()));
    }

    let history = api.history("prod").await;
    let revisions: Vec<u64> = history
        .iter()
        .map(|h| h["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(
        revisions,
        [5, 4, 3, 2, 1],
        "consecutive, none lost or duplicated"
    );
    for (round, (alias, message)) in winners.iter().enumerate() {
        let entry = &history[3 - round];
        assert_eq!(entry["revision"], alias["revision"]);
        assert_eq!(entry["version"], alias["version"]);
        assert_eq!(
            entry["message"],
            message.as_str(),
            "the winner's change is recorded"
        );
        assert_eq!(entry["actor"], "local");
    }
    let now = api
        .call("GET", "/artifacts/app/aliases/prod", None, &[])
        .await;
    assert_eq!(now.body["revision"], 5);
    assert_eq!(now.etag.as_deref(), Some("\"5\""));
}

/// The sample `put-alias` / `rollback-alias` events (IAM identity of a CI
/// role) with another body, run through the handlers.
fn event(function: &str, body: Value, if_match: Option<u64>) -> lambda_http::Request {
    let path = workspace_root().join(format!("events/{function}.json"));
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    event["pathParameters"]["name"] = json!("app");
    event["body"] = json!(body.to_string());
    let headers = event["headers"].as_object_mut().unwrap();
    headers.remove("if-match");
    if let Some(revision) = if_match {
        headers.insert("if-match".into(), json!(format!("\"{revision}\"")));
    }
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

async fn run(
    store: &TestStore,
    operation: Operation,
    request: lambda_http::Request,
) -> (u16, Value) {
    let response = operation.handle(&store.repo, request).await;
    let status = response.status().as_u16();
    let body = match response.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (status, body)
}

fn state(v: &Value) -> (Value, Value, Value) {
    (
        v["version"].clone(),
        v["secondary_version"].clone(),
        v["secondary_version_weight"].clone(),
    )
}

#[tokio::test]
async fn create_move_canaries_move_and_two_rollbacks_are_each_recorded_with_who_and_why() {
    let store = seeded(3).await;
    let caller = "arn:aws:sts::123456789012:assumed-role/ci-pipeline/build-142";
    let steps = [
        json!({"version": "1", "message": "first release"}),
        json!({"version": "2"}),
        json!({"version": "2", "secondary_version": "3", "secondary_version_weight": 10, "message": "canary 10"}),
        json!({"version": "2", "secondary_version": "3", "secondary_version_weight": 50}),
        json!({"version": "3", "message": "promote"}),
    ];
    for (i, body) in steps.iter().enumerate() {
        let (status, alias) = run(
            &store,
            Operation::PutAlias,
            event("put-alias", body.clone(), None),
        )
        .await;
        assert_eq!(status, 200, "{alias}");
        assert_eq!(alias["revision"], i as u64 + 1);
    }
    let (status, back) = run(
        &store,
        Operation::RollbackAlias,
        event("rollback-alias", json!({"message": "3 is broken"}), None),
    )
    .await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(
        state(&back),
        (json!("2"), json!("3"), json!(50)),
        "back to canary 50"
    );
    // A second rollback undoes the first (the state before the last change).
    let (status, again) = run(
        &store,
        Operation::RollbackAlias,
        event("rollback-alias", json!({}), Some(6)),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(state(&again), (json!("3"), Value::Null, Value::Null));

    let history = store
        .repo
        .alias_history(&name("app"), &"prod".parse().unwrap(), None, None)
        .await
        .unwrap();
    let history: Vec<Value> = history
        .items
        .iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .collect();
    let actions: Vec<&str> = history
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "rollback", "rollback", "move", "move", "move", "move", "create"
        ]
    );
    for entry in &history {
        assert_eq!(entry["actor"], caller, "the caller's IAM identity");
    }
    let (r7, r6, r5, r3, r1) = (
        &history[0],
        &history[1],
        &history[2],
        &history[4],
        &history[6],
    );
    assert_eq!(r1["previous"], Value::Null);
    assert_eq!(r1["message"], "first release");
    assert_eq!(state(r3), (json!("2"), json!("3"), json!(10)));
    assert_eq!(
        state(&r3["previous"]),
        (json!("2"), Value::Null, Value::Null)
    );
    assert_eq!(r5["message"], "promote");
    assert_eq!(state(&r5["previous"]), (json!("2"), json!("3"), json!(50)));
    assert_eq!(r6["message"], "3 is broken");
    assert_eq!(
        state(&r6["previous"]),
        (json!("3"), Value::Null, Value::Null)
    );
    assert_eq!(state(r7), (json!("3"), Value::Null, Value::Null));
    assert_eq!(r7["message"], Value::Null);

    // A stale If-Match changes nothing.
    let (status, body) = run(
        &store,
        Operation::PutAlias,
        event("put-alias", json!({"version": "1"}), Some(6)),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (412, Some("AliasModified"))
    );
    let (_, now) = run(
        &store,
        Operation::RollbackAlias,
        event("rollback-alias", json!({"to_revision": 1}), Some(7)),
    )
    .await;
    assert_eq!(
        state(&now),
        (json!("1"), Value::Null, Value::Null),
        "to_revision"
    );
}

#[tokio::test]
async fn the_alias_as_it_was_at_a_time_before_between_at_and_after_its_changes() {
    let store = seeded(2).await;
    let api = Api::start(&store).await;
    let at = |t: &str| format!("/artifacts/app/aliases/prod?at={}", t.replace('+', "%2B"));
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(30));
    let before = time::OffsetDateTime::now_utc();
    pause().await;
    api.call(
        "PUT",
        "/artifacts/app/aliases/prod",
        Some(json!({"version": "1"})),
        &[],
    )
    .await;
    pause().await;
    let between = time::OffsetDateTime::now_utc();
    pause().await;
    api.call(
        "PUT",
        "/artifacts/app/aliases/prod",
        Some(json!({"version": "2"})),
        &[],
    )
    .await;
    pause().await;
    api.call("DELETE", "/artifacts/app/aliases/prod", None, &[])
        .await;
    pause().await;
    let after = time::OffsetDateTime::now_utc();
    let history = api.history("prod").await;
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };

    let then = api.call("GET", &at(&rfc(before)), None, &[]).await;
    assert_eq!(then.status, 404, "before creation: {}", then.body);
    let then = api.call("GET", &at(&rfc(between)), None, &[]).await;
    assert_eq!(
        (then.status, then.body["version"].clone()),
        (200, json!("1"))
    );
    assert_eq!(then.etag.as_deref(), Some("\"1\""));
    let moved_at = history[1]["at"].as_str().unwrap();
    let then = api.call("GET", &at(moved_at), None, &[]).await;
    assert_eq!(
        then.body["version"], "2",
        "at the exact time of a change: after it"
    );
    let then = api.call("GET", &at(&rfc(after)), None, &[]).await;
    assert_eq!(then.status, 404, "after deletion");
    let bad = api
        .call("GET", "/artifacts/app/aliases/prod?at=yesterday", None, &[])
        .await;
    assert_eq!(
        (bad.status, bad.body["error"]["code"].as_str()),
        (400, Some("InvalidRequest"))
    );
}

#[tokio::test]
async fn a_deleted_alias_comes_back_by_rollback_and_a_rollback_onto_a_deleted_version_changes_nothing()
 {
    let store = seeded(3).await;
    let api = Api::start(&store).await;
    let put = |v: &str| json!({"version": v});
    api.call("PUT", "/artifacts/app/aliases/prod", Some(put("1")), &[])
        .await;
    let deleted = api
        .call(
            "DELETE",
            "/artifacts/app/aliases/prod",
            Some(json!({"message": "retire"})),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let back = api
        .call(
            "POST",
            "/artifacts/app/aliases/prod/rollback",
            Some(json!({})),
            &[],
        )
        .await;
    assert_eq!(
        (back.status, back.body["version"].clone()),
        (200, json!("1")),
        "{}",
        back.body
    );
    assert_eq!(
        back.body["revision"], 3,
        "the revision sequence survives the delete"
    );

    api.call("PUT", "/artifacts/app/aliases/prod", Some(put("2")), &[])
        .await;
    let deleted = api
        .call("DELETE", "/artifacts/app/versions/1", None, &[])
        .await;
    assert_eq!(deleted.status, 204);
    let refused = api
        .call("POST", "/artifacts/app/aliases/prod/rollback", None, &[])
        .await;
    assert_eq!(
        (refused.status, refused.body["error"]["code"].as_str()),
        (409, Some("TargetGone"))
    );
    let now = api
        .call("GET", "/artifacts/app/aliases/prod", None, &[])
        .await;
    assert_eq!(
        (now.body["version"].clone(), now.body["revision"].clone()),
        (json!("2"), json!(4))
    );
    assert_eq!(
        api.history("prod").await.len(),
        4,
        "nothing recorded for the refusal"
    );

    // Create-only, and malformed preconditions.
    let exists = api
        .call(
            "PUT",
            "/artifacts/app/aliases/prod",
            Some(put("3")),
            &[("if-none-match", "*")],
        )
        .await;
    assert_eq!(exists.status, 412);
    let fresh = api
        .call(
            "PUT",
            "/artifacts/app/aliases/fresh",
            Some(put("3")),
            &[("if-none-match", "*")],
        )
        .await;
    assert_eq!(fresh.status, 200);
    for bad in ["3", "\"x\"", "\"\"", "W/\"4\"", "\"4\", \"5\""] {
        let answer = api
            .call(
                "PUT",
                "/artifacts/app/aliases/prod",
                Some(put("3")),
                &[("if-match", bad)],
            )
            .await;
        assert_eq!(answer.status, 400, "If-Match: {bad}");
    }
    let nothing = api
        .call("POST", "/artifacts/app/aliases/fresh/rollback", None, &[])
        .await;
    assert_eq!(
        (nothing.status, nothing.body["error"]["code"].as_str()),
        (404, Some("NothingToRollBack")),
        "its only change created it"
    );
    let must_exist = api
        .call(
            "PUT",
            "/artifacts/app/aliases/other",
            Some(put("3")),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(
        must_exist.status, 412,
        "If-Match: * needs an existing alias"
    );
}

#[tokio::test]
async fn history_never_shows_in_listings_and_the_library_reads_aliases_and_versions_unchanged() {
    let store = seeded(2).await;
    let app = name("app");
    let prod = "prod".parse().unwrap();
    for version in [1, 2, 1] {
        let target = shared::model::AliasTarget {
            version: shared::Version::Number(version),
            secondary: None,
        };
        store
            .repo
            .put_alias(&app, &prod, target, &ChangeRequest::default())
            .await
            .unwrap();
    }
    let aliases = store.repo.list_aliases(&app, None, None).await.unwrap();
    assert_eq!(aliases.items.len(), 1);
    let versions = store.repo.list_versions(&app, None, None).await.unwrap();
    assert_eq!(versions.items.len(), 3, "LATEST, 2, 1");
    let names = store
        .repo
        .list_artifact_names(None, None, &|_| true)
        .await
        .unwrap();
    assert_eq!(names.items, std::slice::from_ref(&app));

    let library = store.library_after_mirror(&["read", "app"]).await;
    assert_eq!(library["names"], json!(["app"]));
    assert_eq!(library["aliases"].as_array().unwrap().len(), 1);
    assert_eq!(library["aliases"][0]["version"], "1");
    let library_versions: Vec<&str> = library["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(library_versions, ["LATEST", "2", "1"]);

    // Purging the artifact removes its history with it.
    store.repo.purge_artifact(&app).await.unwrap();
    let gone = store.repo.alias_history(&app, &prod, None, None).await;
    assert_eq!(gone.unwrap_err().code(), "AliasNotFound");
    let leftovers = store.raw_items().await;
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
