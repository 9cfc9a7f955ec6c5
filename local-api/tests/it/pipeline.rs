//! The whole pipeline flow over real HTTP: local server → handlers →
//! emulator, bytes PUT to the presigned URL and downloaded back via /content.

use std::sync::Arc;

use serde_json::{Value, json};
use test_support::{TestStore, sha256_hex, sorted_keys};

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn start(store: &TestStore) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(local_api::serve(
            listener,
            Arc::new(store.another_repository()),
        ));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self { base, http }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_keyed(method, path, body, None).await
    }

    /// [`Self::call`] with an `Idempotency-Key`, as a client's retries send it.
    async fn call_keyed(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{}", self.base, path));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, value)
    }

    /// Start upload, PUT bytes, commit. Returns the commit body.
    async fn upload(&self, name: &str, bytes: &[u8]) -> Value {
        let declared = json!({"sha256": sha256_hex(bytes), "size": bytes.len()});
        let (status, ticket) = self
            .call(
                "POST",
                &format!("/artifacts/{name}/uploads"),
                Some(declared),
            )
            .await;
        assert_eq!(status, 201, "{ticket}");
        let mut put = self
            .http
            .put(ticket["url"].as_str().unwrap())
            .body(bytes.to_vec());
        for (k, v) in ticket["headers"].as_object().unwrap() {
            put = put.header(k, v.as_str().unwrap());
        }
        assert!(put.send().await.unwrap().status().is_success());
        let commit = json!({"upload_id": ticket["upload_id"]});
        let (status, committed) = self
            .call("PUT", &format!("/artifacts/{name}"), Some(commit))
            .await;
        assert_eq!(status, 200, "{committed}");
        committed
    }

    async fn download_content(&self, path: &str) -> Vec<u8> {
        let response = self
            .http
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 302);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        self.http
            .get(location)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pipeline_uploads_publishes_aliases_canaries_resolves_downloads_and_rolls_back() {
    let store = TestStore::new().await;
    let api = Api::start(&store).await;

    let committed = api.upload("web", b"release 1").await;
    assert_eq!(committed["changed"], true);
    assert_eq!(committed["version"], "LATEST");
    assert_eq!(
        sorted_keys(&committed),
        [
            "changed",
            "content_type",
            "created_by",
            "metadata",
            "name",
            "s3uri",
            "sha256",
            "size",
            "update_at",
            "version"
        ]
    );
    let (status, v1) = api.call("POST", "/artifacts/web/versions", None).await;
    assert_eq!((status, v1["version"].as_str()), (201, Some("1")));
    let (status, same) = api
        .call("POST", "/artifacts/web/versions", Some(json!({})))
        .await;
    assert_eq!((status, same["version"].as_str()), (200, Some("1")));

    api.upload("web", b"release 2").await;
    let (status, v2) = api
        .call(
            "POST",
            "/artifacts/web/versions",
            Some(json!({"force": false})),
        )
        .await;
    assert_eq!((status, v2["version"].as_str()), (201, Some("2")));

    let (status, got) = api.call("GET", "/artifacts/web/versions/1", None).await;
    assert_eq!(status, 200);
    assert!(got["download_url"].as_str().unwrap().starts_with("http"));
    assert_eq!(
        api.download_content("/artifacts/web/versions/1/content")
            .await,
        b"release 1"
    );
    assert_eq!(
        api.download_content("/artifacts/web/versions/LATEST/content")
            .await,
        b"release 2"
    );

    let (status, prod) = api
        .call(
            "PUT",
            "/artifacts/web/aliases/prod",
            Some(json!({"version": "1"})),
        )
        .await;
    assert_eq!(status, 200, "{prod}");
    assert_eq!(
        sorted_keys(&prod),
        [
            "alias",
            "name",
            "revision",
            "secondary_version",
            "secondary_version_s3uri",
            "secondary_version_weight",
            "update_at",
            "version",
            "version_s3uri"
        ]
    );
    let split = json!({"version": "1", "secondary_version": "2", "secondary_version_weight": 25});
    let (status, canary) = api
        .call("PUT", "/artifacts/web/aliases/prod", Some(split))
        .await;
    assert_eq!(
        (status, canary["secondary_version_weight"].as_u64()),
        (200, Some(25))
    );
    let (status, resolved) = api
        .call(
            "GET",
            "/artifacts/web/aliases/prod/resolve?key=runner-7",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        sorted_keys(&resolved),
        [
            "alias",
            "download_url",
            "name",
            "revision",
            "sha256",
            "version"
        ]
    );
    let url = resolved["download_url"].as_str().unwrap();
    let bytes = api
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256_hex(&bytes), resolved["sha256"].as_str().unwrap());

    // Version 2 is a canary target: it cannot be deleted.
    let (status, err) = api.call("DELETE", "/artifacts/web/versions/2", None).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("VersionInUse"))
    );
    // Roll back: prod to 1 only; then 2 can go.
    let (status, _) = api
        .call(
            "PUT",
            "/artifacts/web/aliases/prod",
            Some(json!({"version": "1"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = api.call("DELETE", "/artifacts/web/versions/2", None).await;
    assert_eq!((status, body), (204, Value::Null));

    let (status, page) = api
        .call("GET", "/artifacts/web/versions?limit=10", None)
        .await;
    assert_eq!(status, 200);
    let versions: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["LATEST", "1"]);
    assert_eq!(page["next_cursor"], Value::Null);
    let (status, aliases) = api.call("GET", "/artifacts/web/aliases", None).await;
    assert_eq!(
        (status, aliases["items"].as_array().unwrap().len()),
        (200, 1)
    );
    let (status, names) = api.call("GET", "/artifacts", None).await;
    assert_eq!((status, names["items"].clone()), (200, json!(["web"])));

    let policy = json!({"keep_last_n": 0, "purge_older_than_secs": 0, "dry_run": true});
    let (status, report) = api.call("POST", "/artifacts/web/purge", Some(policy)).await;
    assert_eq!(status, 200);
    assert_eq!(sorted_keys(&report), ["deleted", "dry_run", "purge_time"]);
    assert_eq!(report["deleted"], json!([]), "version 1 is prod's target");

    // Bytes the artifact holds again (a rebuild of release 1): nothing to
    // transfer, the commit makes them LATEST, a retried commit answers the same.
    let declared = json!({"sha256": sha256_hex(b"release 1"), "size": 9});
    let (status, ticket) = api
        .call("POST", "/artifacts/web/uploads", Some(declared))
        .await;
    assert_eq!(status, 200, "{ticket}");
    assert_eq!(
        sorted_keys(&ticket),
        ["exists", "expires_at", "state", "upload_id"]
    );
    assert_eq!(
        (ticket["exists"].as_bool(), ticket["state"].as_str()),
        (Some(true), Some("pending"))
    );
    let commit = json!({"upload_id": ticket["upload_id"]});
    let (status, first) = api
        .call("PUT", "/artifacts/web", Some(commit.clone()))
        .await;
    assert_eq!(
        (status, first["sha256"].as_str()),
        (200, Some(sha256_hex(b"release 1").as_str()))
    );
    assert_eq!(first["changed"], true);
    let (status, retried) = api.call("PUT", "/artifacts/web", Some(commit)).await;
    assert_eq!(
        (status, &retried),
        (200, &first),
        "a retried commit answers as the first"
    );
    assert_eq!(
        api.download_content("/artifacts/web/versions/LATEST/content")
            .await,
        b"release 1"
    );

    let (status, _) = api
        .call("DELETE", "/artifacts/web/aliases/prod", None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = api.call("DELETE", "/artifacts/web", None).await;
    assert_eq!(status, 204);
    let (status, err) = api.call("GET", "/artifacts/web/versions", None).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("ArtifactNotFound"))
    );
}

/// SPEC 4.1 multipart over HTTP: start with 5 MiB parts, ask for the parts'
/// URLs, PUT the parts in parallel (last first), commit (202 verifying),
/// follow the upload's state to committed, download the same bytes.
#[tokio::test]
async fn a_multipart_upload_over_http_verifies_and_becomes_latest() {
    let store = TestStore::new().await;
    let api = Api::start(&store).await;
    let part_size = 5 * 1024 * 1024;
    let content: Vec<u8> = (0..2 * part_size + 4321)
        .map(|i| (i * 13 % 256) as u8)
        .collect();
    let declared = json!({
        "sha256": sha256_hex(&content), "size": content.len(), "part_size": part_size,
    });
    let (status, ticket) = api
        .call("POST", "/artifacts/dataset/uploads", Some(declared))
        .await;
    assert_eq!(status, 201, "{ticket}");
    assert_eq!(
        ticket["multipart"],
        json!({"part_size": part_size, "part_count": 3})
    );
    assert!(ticket.get("url").is_none());
    let id = ticket["upload_id"].as_str().unwrap();
    let chunks: Vec<&[u8]> = content.chunks(part_size).collect();
    let parts: Vec<Value> = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"number": i + 1, "sha256": sha256_hex(c)}))
        .collect();
    let (status, urls) = api
        .call(
            "POST",
            &format!("/artifacts/dataset/uploads/{id}/parts"),
            Some(json!({"parts": parts})),
        )
        .await;
    assert_eq!(status, 200, "{urls}");
    let sends = urls["parts"].as_array().unwrap().iter().rev().map(|part| {
        let number = part["number"].as_u64().unwrap() as usize;
        let mut put = api
            .http
            .put(part["url"].as_str().unwrap())
            .body(chunks[number - 1].to_vec());
        for (k, v) in part["headers"].as_object().unwrap() {
            put = put.header(k, v.as_str().unwrap());
        }
        put.send()
    });
    for sent in futures::future::join_all(sends).await {
        assert!(sent.unwrap().status().is_success());
    }
    let (status, state) = api
        .call("GET", &format!("/artifacts/dataset/uploads/{id}"), None)
        .await;
    assert_eq!(
        (status, &state["parts_received"]),
        (200, &json!([1, 2, 3])),
        "{state}"
    );

    // One request for the pipeline: verified, then published and aliased.
    let commit = json!({"upload_id": id, "publish": true, "alias": {"name": "prod"}});
    let (status, first) = api
        .call("PUT", "/artifacts/dataset", Some(commit.clone()))
        .await;
    assert_eq!(
        (status, &first),
        (202, &json!({"upload_id": id, "state": "verifying"}))
    );
    let mut state = Value::Null;
    for _ in 0..600 {
        (_, state) = api
            .call("GET", &format!("/artifacts/dataset/uploads/{id}"), None)
            .await;
        if state["state"] != "verifying" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(state["state"], "committed", "{state}");
    assert_eq!(state["artifact"]["sha256"], sha256_hex(&content));
    // The verification ran the pipeline after its commit (the state shows
    // it once done).
    for _ in 0..600 {
        if state.get("published").is_some() || state.get("pipeline_error").is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        (_, state) = api
            .call("GET", &format!("/artifacts/dataset/uploads/{id}"), None)
            .await;
    }
    assert_eq!(state["published"]["version"], "1", "{state}");
    assert_eq!(state["published"]["sha256"], sha256_hex(&content));
    assert_eq!(
        (&state["alias"]["alias"], &state["alias"]["version"]),
        (&json!("prod"), &json!("1")),
        "{state}"
    );
    let (status, again) = api.call("PUT", "/artifacts/dataset", Some(commit)).await;
    assert_eq!(
        (status, &again["sha256"]),
        (200, &json!(sha256_hex(&content)))
    );
    assert_eq!(
        api.download_content("/artifacts/dataset/versions/LATEST/content")
            .await,
        content
    );
}

/// SPEC 4.1 (v3): commit + publish + alias move in one request; an
/// unchanged push in one request; alias preconditions refused before
/// anything is written.
#[tokio::test]
async fn a_commit_publishes_and_moves_an_alias_in_one_request_and_an_unchanged_push_is_one_request()
{
    let store = TestStore::new().await;
    let api = Api::start(&store).await;
    let start = |bytes: &[u8], extra: Value| {
        let mut body = json!({"sha256": sha256_hex(bytes), "size": bytes.len()});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        body
    };
    // Start + PUT, then the commit that does the rest.
    let sent = |bytes: &'static [u8]| {
        let api = &api;
        async move {
            let (status, ticket) = api
                .call(
                    "POST",
                    "/artifacts/web/uploads",
                    Some(start(bytes, json!({"commit": true}))),
                )
                .await;
            assert_eq!(status, 201, "{ticket}");
            let mut put = api
                .http
                .put(ticket["url"].as_str().unwrap())
                .body(bytes.to_vec());
            for (k, v) in ticket["headers"].as_object().unwrap() {
                put = put.header(k, v.as_str().unwrap());
            }
            assert!(put.send().await.unwrap().status().is_success());
            ticket["upload_id"].as_str().unwrap().to_owned()
        }
    };

    let id = sent(b"build 1").await;
    let body = json!({"upload_id": id, "publish": true,
                      "alias": {"name": "prod", "message": "first release"}});
    let (status, done) = api.call("PUT", "/artifacts/web", Some(body)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        (&done["version"], &done["changed"]),
        (&json!("LATEST"), &json!(true))
    );
    assert_eq!(done["sha256"], sha256_hex(b"build 1"));
    assert_eq!(
        (&done["published"]["version"], &done["published"]["created"]),
        (&json!("1"), &json!(true))
    );
    assert_eq!(
        (&done["alias"]["version"], &done["alias"]["revision"]),
        (&json!("1"), &json!(1))
    );

    // A canary: prod keeps 1, 10 % go to the new version.
    let id = sent(b"build 2").await;
    let body = json!({"upload_id": id, "publish": true,
                      "alias": {"name": "prod", "weight": 10, "if_revision": 1}});
    let (status, canary) = api.call("PUT", "/artifacts/web", Some(body)).await;
    assert_eq!(status, 200, "{canary}");
    assert_eq!(
        (
            &canary["alias"]["version"],
            &canary["alias"]["secondary_version"],
            &canary["alias"]["secondary_version_weight"]
        ),
        (&json!("1"), &json!("2"), &json!(10))
    );

    // A stale If-Match: refused before the commit (LATEST is still build 2).
    let id = sent(b"build 3").await;
    let body = json!({"upload_id": id, "publish": true,
                      "alias": {"name": "prod", "if_revision": 1}});
    let (status, refused) = api.call("PUT", "/artifacts/web", Some(body)).await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (412, &json!("AliasModified"))
    );
    let (_, latest) = api
        .call("GET", "/artifacts/web/versions/LATEST", None)
        .await;
    assert_eq!(latest["sha256"], sha256_hex(b"build 2"));

    // Bytes the artifact holds: one request commits, publishes, promotes.
    let body = start(
        b"build 2",
        json!({"commit": true, "publish": true, "alias": {"name": "prod"}}),
    );
    let (status, once) = api.call("POST", "/artifacts/web/uploads", Some(body)).await;
    assert_eq!(status, 200, "{once}");
    assert_eq!(
        (&once["state"], &once["exists"], &once["changed"]),
        (&json!("committed"), &json!(true), &json!(false))
    );
    assert_eq!(
        (&once["published"]["version"], &once["published"]["created"]),
        (&json!("2"), &json!(false))
    );
    assert_eq!(
        (
            &once["alias"]["version"],
            &once["alias"]["secondary_version"]
        ),
        (&json!("2"), &Value::Null)
    );
    let (_, history) = api
        .call("GET", "/artifacts/web/aliases/prod/history", None)
        .await;
    let revisions: Vec<&Value> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["revision"])
        .collect();
    assert_eq!(revisions, [&json!(3), &json!(2), &json!(1)]);
    assert_eq!(history["items"][2]["message"], "first release");

    // Bad combinations are 400s and change nothing.
    for (path, body) in [
        (
            "/artifacts/web",
            json!({"upload_id": id, "alias": {"name": "prod"}}),
        ),
        ("/artifacts/web", json!({"upload_id": id, "force": true})),
        (
            "/artifacts/web",
            json!({"upload_id": id, "publish": true, "alias": {"name": "prod", "weight": 100}}),
        ),
        (
            "/artifacts/web",
            json!({"upload_id": id, "publish": true, "alias": {"name": "prod", "extra": 1}}),
        ),
        (
            "/artifacts/web",
            json!({"upload_id": id, "publish": true, "alias": {"name": "LATEST"}}),
        ),
        (
            "/artifacts/web/uploads",
            start(b"x", json!({"publish": true})),
        ),
    ] {
        let (status, error) = api
            .call(
                if path.ends_with("uploads") {
                    "POST"
                } else {
                    "PUT"
                },
                path,
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 400, "{body} → {error}");
    }
    let (_, latest) = api
        .call("GET", "/artifacts/web/versions/LATEST", None)
        .await;
    assert_eq!(latest["sha256"], sha256_hex(b"build 2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_parts_fit_in_one_parts_request() {
    const MIB: u64 = 1024 * 1024;
    let store = TestStore::new().await;
    let api = Api::start(&store).await;
    let declared = json!({
        "sha256": sha256_hex(b"declared only"),
        "size": 1000 * 5 * MIB,
        "part_size": 5 * MIB,
    });
    let (status, ticket) = api
        .call("POST", "/artifacts/huge/uploads", Some(declared))
        .await;
    assert_eq!(status, 201, "{ticket}");
    assert_eq!(ticket["multipart"]["part_count"], 1000);
    let asked: Vec<Value> = (1..=1000u32)
        .map(|n| json!({"number": n, "sha256": sha256_hex(&n.to_be_bytes())}))
        .collect();
    let body = serde_json::to_string_pretty(&json!({"parts": asked})).unwrap();
    assert!(body.len() > 100_000, "{} bytes", body.len());
    let response = api
        .http
        .post(format!(
            "{}/artifacts/huge/uploads/{}/parts",
            api.base,
            ticket["upload_id"].as_str().unwrap()
        ))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let answer: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["parts"].as_array().unwrap().len(), 1000);
}

/// SPEC 7.5: a client that lost the answer of a write and sends it again
/// with the same `Idempotency-Key` gets the first answer's effect only.
/// Without the key's token, the retried start of bytes the artifact holds
/// committed them again over a newer push (LATEST rolled back, the bytes
/// published a second time, the alias moved again), a retried rollback
/// undid itself, a retried forced publish published twice and a retried
/// delete answered 404.
#[tokio::test]
async fn writes_retried_with_their_idempotency_key_take_effect_once() {
    let store = TestStore::new().await;
    let api = Api::start(&store).await;
    api.upload("app", b"x bytes").await;
    api.upload("app", b"y bytes").await;
    let start = json!({"sha256": sha256_hex(b"x bytes"), "size": 7, "commit": true,
                       "publish": true, "alias": {"name": "prod"}});
    let uploads = "/artifacts/app/uploads";
    let (status, first) = api
        .call_keyed("POST", uploads, Some(start.clone()), Some("push-1"))
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["published"]["version"], "1");
    // Another pipeline pushes meanwhile.
    api.upload("app", b"z bytes").await;
    let (_, second) = api.call("POST", "/artifacts/app/versions", None).await;
    assert_eq!(second["version"], "2");
    // The first client's answer was lost: it sends the start again.
    let (status, again) = api
        .call_keyed("POST", uploads, Some(start.clone()), Some("push-1"))
        .await;
    // Its upload was committed, then superseded: refused, nothing written.
    assert_eq!(
        (status, &again["error"]["code"]),
        (409, &json!("UploadSuperseded")),
        "{again}"
    );
    let (_, latest) = api
        .call("GET", "/artifacts/app/versions/LATEST", None)
        .await;
    assert_eq!(
        latest["sha256"],
        sha256_hex(b"z bytes"),
        "LATEST rolled back"
    );
    let (_, versions) = api.call("GET", "/artifacts/app/versions", None).await;
    // LATEST, 2 and 1: no third version.
    assert_eq!(versions["items"].as_array().unwrap().len(), 3, "{versions}");
    let (_, prod) = api
        .call("GET", "/artifacts/app/aliases/prod/history", None)
        .await;
    assert_eq!(prod["items"].as_array().unwrap().len(), 1, "{prod}");
    // A rollback whose answer was lost, sent again.
    let to = |v: &str| json!({"version": v});
    api.call("PUT", "/artifacts/app/aliases/prod", Some(to("2")))
        .await;
    let rollback = "/artifacts/app/aliases/prod/rollback";
    for _ in 0..2 {
        let (status, rolled) = api
            .call_keyed("POST", rollback, Some(json!({})), Some("rollback-1"))
            .await;
        assert_eq!(
            (status, &rolled["version"], &rolled["revision"]),
            (200, &json!("1"), &json!(3)),
            "{rolled}"
        );
    }

    // Someone moves prod meanwhile: the rollback sent again is not
    // applied again (it would undo their move), and says so.
    api.call("PUT", "/artifacts/app/aliases/prod", Some(to("2")))
        .await;
    let (status, again) = api
        .call_keyed("POST", rollback, Some(json!({})), Some("rollback-1"))
        .await;
    assert_eq!(
        (status, &again["error"]["code"]),
        (409, &json!("AlreadyApplied")),
        "{again}"
    );
    let (_, prod) = api.call("GET", "/artifacts/app/aliases/prod", None).await;
    assert_eq!(
        (&prod["version"], &prod["revision"]),
        (&json!("2"), &json!(4))
    );

    // A forced publish whose answer was lost, sent again — also after
    // someone else published.
    let force = |key: &'static str| {
        let api = &api;
        async move {
            api.call_keyed(
                "POST",
                "/artifacts/app/versions",
                Some(json!({"force": true})),
                Some(key),
            )
            .await
        }
    };
    for _ in 0..2 {
        let (status, forced) = force("force-1").await;
        assert_eq!((status, &forced["version"]), (201, &json!("3")), "{forced}");
    }
    let (_, other) = force("force-2").await;
    assert_eq!(other["version"], "4");
    let (status, forced) = force("force-1").await;
    assert_eq!((status, &forced["version"]), (201, &json!("3")), "{forced}");

    // A delete whose answer was lost, sent again: 204 both times.
    for _ in 0..2 {
        let (status, deleted) = api
            .call_keyed("DELETE", "/artifacts/app/versions/3", None, Some("rm-1"))
            .await;
        assert_eq!(status, 204, "{deleted}");
    }
    let (status, _) = api
        .call_keyed("DELETE", "/artifacts/app/versions/3", None, Some("rm-2"))
        .await;
    assert_eq!(status, 404, "another request deleting it again");
    let (status, bad) = api
        .call_keyed("DELETE", "/artifacts/app/versions/2", None, Some(""))
        .await;
    assert_eq!(status, 400, "{bad}");
}

// Edge audit (SPEC 7.5): a one-request push declaring its digest in
// capitals, retried with its Idempotency-Key after its alias move landed,
// met its own move (`if_revision` no longer current) and then answered 400
// (the upload id built from the digest as written, not as validated),
// instead of the first request's answer.
#[tokio::test]
async fn a_retried_one_request_push_with_a_capital_digest_answers_as_the_first_did() {
    let store = TestStore::new().await;
    let api = Api::start(&store).await;
    for build in [&b"one"[..], b"two"] {
        api.upload("app", build).await;
        let (status, body) = api.call("POST", "/artifacts/app/versions", None).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = api
        .call(
            "PUT",
            "/artifacts/app/aliases/prod",
            Some(json!({"version": "1"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let push = json!({
        "sha256": sha256_hex(b"two").to_uppercase(),
        "size": 3,
        "commit": true,
        "publish": true,
        "alias": {"name": "prod", "if_revision": 1},
    });
    let mut answers = Vec::new();
    for _ in 0..2 {
        answers.push(
            api.call_keyed(
                "POST",
                "/artifacts/app/uploads",
                Some(push.clone()),
                Some("push-two"),
            )
            .await,
        );
    }
    assert_eq!(answers[0].0, 200, "{}", answers[0].1);
    assert_eq!(answers[0].1["alias"]["version"], "2", "{}", answers[0].1);
    assert_eq!(answers[1], answers[0]);
}
