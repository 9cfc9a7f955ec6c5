//! Bad input gets a clear 4xx JSON error and changes nothing: a table of
//! malformed requests sent over HTTP to the local server (routing, parsing,
//! validation, handlers), each checked for status, error code, and a store
//! identical before and after (every DynamoDB item, every S3 object version).

use std::sync::Arc;

use serde_json::{Value, json};
use shared::model::{AliasTarget, ChangeRequest, LOCAL_ACTOR};
use shared::{Version, Weight};
use test_support::{TestStore, name, sha256_hex};

struct Case {
    method: &'static str,
    path: String,
    body: Option<String>,
    status: u16,
    code: &'static str,
}

fn case(
    method: &'static str,
    path: &str,
    body: Option<&str>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        method,
        path: path.to_owned(),
        body: body.map(str::to_owned),
        status,
        code,
    }
}

fn cases() -> Vec<Case> {
    let sha = sha256_hex(b"x");
    let up = "/artifacts/app/uploads";
    let upload = |extra: &str| format!(r#"{{"sha256": "{sha}", "size": 1{extra}}}"#);
    let long = "x".repeat(300);
    let big = format!(
        r#"{{"upload_id": "{}"}}"#,
        "a".repeat(shared::http::MAX_BODY_BYTES)
    );
    let alias = "/artifacts/app/aliases/prod";
    let unknown = format!("/artifacts/app/uploads/{}{sha}", "0".repeat(32));
    let parts = format!("{unknown}/parts");
    let part = |number: &str, digest: &str| {
        format!(r#"{{"parts": [{{"number": {number}, "sha256": "{digest}"}}]}}"#)
    };
    let thousand_and_one = format!(
        r#"{{"parts": [{}]}}"#,
        (1..=1001)
            .map(|n| format!(r#"{{"number": {n}, "sha256": "{sha}"}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut cases = vec![
        // Multipart: part sizes outside S3's limits, part numbers outside
        // 1..=10000, duplicates, malformed digests, too many parts, unknown
        // or malformed upload ids.
        case(
            "POST",
            up,
            Some(&upload(r#", "part_size": 1"#)),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            up,
            Some(&upload(r#", "part_size": 5368709121"#)),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            up,
            Some(&upload(r#", "part_size": 5.5"#)),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            up,
            Some(&format!(r#"{{"sha256": "{sha}", "size": 53687091200001}}"#)),
            413,
            "TooLarge",
        ),
        case(
            "POST",
            &parts,
            Some(&part("0", &sha)),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            &parts,
            Some(&part("10001", &sha)),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            &parts,
            Some(&part("1", "abc")),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            &parts,
            Some(r#"{"parts": []}"#),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            &parts,
            Some(&format!(
                r#"{{"parts": [{{"number": 1, "sha256": "{sha}"}}, {{"number": 1, "sha256": "{sha}"}}]}}"#
            )),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            &parts,
            Some(&thousand_and_one),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            &parts,
            Some(&part("1", &sha)),
            404,
            "UploadNotFound",
        ),
        case(
            "POST",
            &parts,
            Some(r#"{"parts": [], "x": 1}"#),
            400,
            "InvalidRequest",
        ),
        case("GET", &unknown, None, 404, "UploadNotFound"),
        case(
            "GET",
            "/artifacts/app/uploads/nope",
            None,
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            "/artifacts/app/uploads/nope/parts",
            Some(&part("1", &sha)),
            400,
            "InvalidRequest",
        ),
        // Malformed JSON and wrong types.
        case("POST", up, Some("{"), 400, "InvalidRequest"),
        case("POST", up, Some("[]"), 400, "InvalidRequest"),
        case("POST", up, Some("null"), 400, "InvalidRequest"),
        case(
            "POST",
            up,
            Some(r#"{"sha256": 5, "size": 1}"#),
            400,
            "InvalidRequest",
        ),
        case("POST", up, Some(r#"{"size": 1}"#), 400, "InvalidRequest"),
        case(
            "POST",
            up,
            Some(r#"{"sha256": "abc", "size": 1}"#),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            up,
            Some(&format!(r#"{{"sha256": "{sha}", "size": -1}}"#)),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            up,
            Some(&format!(r#"{{"sha256": "{sha}", "size": "1"}}"#)),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            up,
            Some(&upload(r#", "colour": "red""#)),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            up,
            Some(&upload(r#", "metadata": {"artifact_sha256": "x"}"#)),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            up,
            Some(&upload(r#", "metadata": {"k": "caf\u00e9"}"#)),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            up,
            Some(&upload(r#", "metadata": {"Bad Key": "v"}"#)),
            400,
            "InvalidRequest",
        ),
        // Artifact names.
        case(
            "POST",
            "/artifacts/..%2Fx/uploads",
            Some(&upload("")),
            400,
            "InvalidArtifactName",
        ),
        case(
            "POST",
            "/artifacts/a%2Fb/uploads",
            Some(&upload("")),
            400,
            "InvalidArtifactName",
        ),
        case(
            "POST",
            "/artifacts/_x/uploads",
            Some(&upload("")),
            400,
            "InvalidArtifactName",
        ),
        case(
            "POST",
            "/artifacts/-x/uploads",
            Some(&upload("")),
            400,
            "InvalidArtifactName",
        ),
        case(
            "POST",
            &format!("/artifacts/{long}/uploads"),
            Some(&upload("")),
            400,
            "InvalidArtifactName",
        ),
        case(
            "POST",
            "/artifacts/%C3%A9t%C3%A9/uploads",
            Some(&upload("")),
            400,
            "InvalidArtifactName",
        ),
        case(
            "POST",
            "/artifacts/a%20b/versions",
            None,
            400,
            "InvalidArtifactName",
        ),
        case("GET", "/artifacts//versions", None, 404, "RouteNotFound"),
        // Commits.
        case("PUT", "/artifacts/app", Some("{}"), 400, "InvalidRequest"),
        case(
            "PUT",
            "/artifacts/app",
            Some(r#"{"upload_id": "../../etc/passwd"}"#),
            400,
            "InvalidRequest",
        ),
        case(
            "PUT",
            "/artifacts/app",
            Some(r#"{"upload_id": 123}"#),
            400,
            "InvalidRequest",
        ),
        case(
            "PUT",
            "/artifacts/app",
            Some(&format!(r#"{{"upload_id": "{}"}}"#, "0".repeat(96))),
            404,
            "UploadNotFound",
        ),
        // Not an id start upload can return: too short, upper case.
        case(
            "PUT",
            "/artifacts/app",
            Some(&format!(r#"{{"upload_id": "{}"}}"#, "0".repeat(32))),
            400,
            "InvalidRequest",
        ),
        case(
            "PUT",
            "/artifacts/app",
            Some(&format!(r#"{{"upload_id": "{}"}}"#, "A".repeat(96))),
            400,
            "InvalidRequest",
        ),
        case("PUT", "/artifacts/app", Some(&big), 413, "TooLarge"),
        // Publish.
        case(
            "POST",
            "/artifacts/app/versions",
            Some(r#"{"force": "yes"}"#),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            "/artifacts/app/versions",
            Some(r#"{"forse": true}"#),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            "/artifacts/ghost/versions",
            None,
            404,
            "ArtifactNotFound",
        ),
        // Versions.
        case(
            "GET",
            "/artifacts/app/versions/0",
            None,
            400,
            "InvalidVersion",
        ),
        case(
            "GET",
            "/artifacts/app/versions/-1",
            None,
            400,
            "InvalidVersion",
        ),
        case(
            "GET",
            "/artifacts/app/versions/abc",
            None,
            400,
            "InvalidVersion",
        ),
        case(
            "GET",
            "/artifacts/app/versions/1000000",
            None,
            400,
            "InvalidVersion",
        ),
        case(
            "GET",
            "/artifacts/app/versions/1.0",
            None,
            400,
            "InvalidVersion",
        ),
        case(
            "GET",
            "/artifacts/app/versions/99",
            None,
            404,
            "VersionNotFound",
        ),
        case(
            "GET",
            "/artifacts/app/versions/99/content",
            None,
            404,
            "VersionNotFound",
        ),
        case(
            "DELETE",
            "/artifacts/app/versions/0",
            None,
            400,
            "InvalidVersion",
        ),
        case(
            "DELETE",
            "/artifacts/app/versions/99",
            None,
            404,
            "VersionNotFound",
        ),
        case(
            "DELETE",
            "/artifacts/app/versions/LATEST",
            None,
            400,
            "InvalidVersion",
        ),
        case(
            "DELETE",
            "/artifacts/app/versions/1",
            None,
            409,
            "VersionInUse",
        ),
        case(
            "DELETE",
            "/artifacts/app/versions/2",
            None,
            409,
            "VersionInUse",
        ),
        // Alias names.
        case(
            "PUT",
            "/artifacts/app/aliases/LATEST",
            Some(r#"{"version": "1"}"#),
            400,
            "InvalidAliasName",
        ),
        case(
            "PUT",
            "/artifacts/app/aliases/123",
            Some(r#"{"version": "1"}"#),
            400,
            "InvalidAliasName",
        ),
        case(
            "PUT",
            "/artifacts/app/aliases/a%20b",
            Some(r#"{"version": "1"}"#),
            400,
            "InvalidAliasName",
        ),
        case(
            "PUT",
            "/artifacts/app/aliases/a.b",
            Some(r#"{"version": "1"}"#),
            400,
            "InvalidAliasName",
        ),
        case(
            "PUT",
            &format!("/artifacts/app/aliases/{}", "a".repeat(65)),
            Some("{}"),
            400,
            "InvalidAliasName",
        ),
        // Alias bodies.
        case(
            "PUT",
            alias,
            Some(r#"{"version": "0"}"#),
            400,
            "InvalidVersion",
        ),
        case(
            "PUT",
            alias,
            Some(r#"{"version": 1}"#),
            400,
            "InvalidVersion",
        ),
        case(
            "PUT",
            alias,
            Some(r#"{"version": "7"}"#),
            404,
            "VersionNotFound",
        ),
        case(
            "PUT",
            alias,
            Some(r#"{"version": "1", "secondary_version": "2", "secondary_version_weight": 100}"#),
            400,
            "InvalidWeight",
        ),
        case(
            "PUT",
            alias,
            Some(r#"{"version": "1", "secondary_version": "2", "secondary_version_weight": -1}"#),
            400,
            "InvalidWeight",
        ),
        case(
            "PUT",
            alias,
            Some(r#"{"version": "1", "secondary_version": "2", "secondary_version_weight": 1.5}"#),
            400,
            "InvalidWeight",
        ),
        case(
            "PUT",
            alias,
            Some(r#"{"version": "1", "secondary_version": "2", "secondary_version_weight": "10"}"#),
            400,
            "InvalidWeight",
        ),
        case(
            "PUT",
            alias,
            Some(r#"{"version": "1", "secondary_version_weight": 10}"#),
            400,
            "InvalidWeight",
        ),
        case(
            "PUT",
            alias,
            Some(r#"{"version": "1", "secondary_version": "2"}"#),
            400,
            "InvalidWeight",
        ),
        case(
            "PUT",
            alias,
            Some(r#"{"version": "1", "secondary_version": "1", "secondary_version_weight": 10}"#),
            400,
            "InvalidRequest",
        ),
        case(
            "PUT",
            alias,
            Some(r#"{"version": "1", "weight": 10}"#),
            400,
            "InvalidRequest",
        ),
        case(
            "DELETE",
            "/artifacts/app/aliases/staging",
            None,
            404,
            "AliasNotFound",
        ),
        case(
            "GET",
            "/artifacts/app/aliases/staging/resolve",
            None,
            404,
            "AliasNotFound",
        ),
        // Listings.
        case("GET", "/artifacts?limit=0", None, 400, "InvalidRequest"),
        case("GET", "/artifacts?limit=abc", None, 400, "InvalidRequest"),
        case("GET", "/artifacts?limit=5000", None, 400, "InvalidRequest"),
        case(
            "GET",
            "/artifacts/app/versions?cursor=%21%21",
            None,
            400,
            "InvalidRequest",
        ),
        case(
            "GET",
            "/artifacts/app/versions?cursor=Z2FyYmFnZQ",
            None,
            400,
            "InvalidRequest",
        ),
        case(
            "GET",
            "/artifacts/app/versions?sha256=abc",
            None,
            400,
            "InvalidRequest",
        ),
        case(
            "GET",
            // "\"\x08C": a control character, never a key the listing
            // returned (schemathesis found S3 refusing it: a 502).
            "/artifacts?cursor=IghD",
            None,
            400,
            "InvalidRequest",
        ),
        case(
            "GET",
            // "a/b": no alias is named so (a cursor we never issued).
            "/artifacts/app/aliases?cursor=YS9i",
            None,
            400,
            "InvalidRequest",
        ),
        // Cursors decoding to sort keys over DynamoDB's 1 024 bytes ("a/a"
        // + 1 200 × "a", "aaa" is "YWFh"): a 400 here, not DynamoDB's
        // ValidationException (a 502).
        case(
            "GET",
            &format!("{alias}/history?cursor=YS9h{}", "YWFh".repeat(400)),
            None,
            400,
            "InvalidRequest",
        ),
        case(
            "GET",
            &format!("/artifacts?cursor={}", "YWFh".repeat(400)),
            None,
            400,
            "InvalidRequest",
        ),
        // Search and version status (SPEC 10.3).
        case("GET", "/search", None, 400, "InvalidRequest"),
        case("GET", "/search?sha256=abc", None, 400, "InvalidRequest"),
        case("GET", "/search?meta.BAD=1", None, 400, "InvalidRequest"),
        case("GET", "/search?name=app", None, 400, "InvalidRequest"),
        // Permission targets (SPEC 10.4): malformed documents.
        case("PUT", "/access", Some("[]"), 400, "InvalidRequest"),
        case(
            "PUT",
            "/access",
            Some(r#"{"targets": [{"principals": ["*"], "names": ["*"], "actions": ["fly"]}]}"#),
            400,
            "InvalidRequest",
        ),
        case(
            "PUT",
            "/access",
            Some(r#"{"targets": [{"principals": [], "names": ["*"], "actions": ["admin"]}]}"#),
            400,
            "InvalidRequest",
        ),
        case(
            "PUT",
            "/access",
            Some(
                r#"{"targets": [{"principals": ["someone-else"], "names": ["*"], "actions": ["admin"]}]}"#,
            ),
            400,
            "InvalidRequest",
        ),
        case(
            "GET",
            "/access/history?cursor=YQ",
            None,
            400,
            "InvalidRequest",
        ),
        case(
            "GET",
            "/search?q=meta.team%3Dml",
            None,
            400,
            "InvalidRequest",
        ),
        case(
            "GET",
            "/search?q=owner%3D%27x%27",
            None,
            400,
            "InvalidRequest",
        ),
        case(
            "GET",
            "/search?q=name%3D%27a%27&meta.team=ml",
            None,
            400,
            "InvalidRequest",
        ),
        case(
            "GET",
            &format!("/search?sha256={sha}&meta.team=ml"),
            None,
            400,
            "InvalidRequest",
        ),
        case(
            "GET",
            "/search?meta.team=ml&cursor=YQ",
            None,
            400,
            "InvalidRequest",
        ),
        // A by-sha256 cursor whose artifact name is longer than the index's
        // range key allows (1024 bytes) is refused, not sent to DynamoDB.
        case(
            "GET",
            // base64url of 1025 × "a", "\n", "x".
            &format!("/search?sha256={sha}&cursor={}YWEKeA", "YWFh".repeat(341)),
            None,
            400,
            "InvalidRequest",
        ),
        case(
            "PATCH",
            "/artifacts/app/versions/1",
            Some(r#"{"status": "gone"}"#),
            400,
            "InvalidRequest",
        ),
        case(
            "PATCH",
            "/artifacts/app/versions/LATEST",
            Some(r#"{"status": "deprecated"}"#),
            400,
            "InvalidVersion",
        ),
        case(
            "PATCH",
            "/artifacts/app/versions/1",
            Some(r#"{"status": "deprecated", "why": "x"}"#),
            400,
            "InvalidRequest",
        ),
        case(
            "PATCH",
            "/artifacts/app/versions/999",
            Some(r#"{"status": "deprecated"}"#),
            404,
            "VersionNotFound",
        ),
        // Retention.
        case(
            "POST",
            "/artifacts/app/purge",
            Some(r#"{"keep_last_n": -1}"#),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            "/artifacts/app/purge",
            Some(r#"{"dry_run": "yes"}"#),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            "/artifacts/app/purge",
            Some(r#"{"keep": 3}"#),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            "/artifacts/ghost/purge",
            Some("{}"),
            404,
            "ArtifactNotFound",
        ),
        case("DELETE", "/artifacts/ghost", None, 404, "ArtifactNotFound"),
        // Routing.
        case("GET", "/nope", None, 404, "RouteNotFound"),
        case(
            "GET",
            "/artifacts/app/versions/1/content/extra",
            None,
            404,
            "RouteNotFound",
        ),
        case("PATCH", "/artifacts/app", None, 405, "MethodNotAllowed"),
        case("POST", "/artifacts", None, 405, "MethodNotAllowed"),
        // `..` anywhere in an artifact name (SPEC 4.4).
        case(
            "GET",
            "/artifacts/a..b/versions",
            None,
            400,
            "InvalidArtifactName",
        ),
        case(
            "POST",
            "/artifacts/app..x/uploads",
            Some(&upload("")),
            400,
            "InvalidArtifactName",
        ),
        // Edge audit: a nested field of the wrong kind is told in the
        // client's terms (no Rust type name), a field given twice is
        // refused, and revisions start at 1.
        case(
            "POST",
            up,
            Some(&upload(
                r#", "commit": true, "publish": true, "alias": "prod""#,
            )),
            400,
            "InvalidRequest",
        ),
        case(
            "PUT",
            "/access",
            Some(r#"{"targets": ["x"]}"#),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            &parts,
            Some(r#"{"parts": [1]}"#),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            &format!("{alias}/rollouts"),
            Some(r#"{"version": "2", "steps": [10]}"#),
            400,
            "InvalidRequest",
        ),
        case(
            "PUT",
            alias,
            Some(r#"{"version": "1", "version": "2"}"#),
            400,
            "InvalidRequest",
        ),
        case(
            "POST",
            &format!("{alias}/rollback"),
            Some(r#"{"to_revision": 0}"#),
            400,
            "InvalidRequest",
        ),
    ];
    // JSON that is not an object is never read as `{}`, on every route that
    // takes a body (where `{}` alone would change the store).
    let with_body = [
        ("POST", up),
        ("PUT", "/artifacts/app"),
        ("POST", "/artifacts/app/versions"),
        ("POST", "/artifacts/app/purge"),
        ("PUT", alias),
        ("PUT", "/artifacts/app/aliases/fresh"),
    ];
    for (method, path) in with_body {
        for body in ["[]", "[1]", "\"x\"", "3", "true", "null", "[{}]"] {
            cases.push(case(method, path, Some(body), 400, "InvalidRequest"));
        }
    }
    cases
}

/// Every item and every object version of the store.
async fn snapshot(store: &TestStore) -> (Value, Vec<(String, String)>) {
    let mut items: Vec<String> = store
        .raw_items()
        .await
        .into_iter()
        .map(|i| {
            format!(
                "{:?}",
                i.into_iter().collect::<std::collections::BTreeMap<_, _>>()
            )
        })
        .collect();
    items.sort();
    let objects = store
        .s3
        .list_object_versions()
        .bucket(&store.config.bucket)
        .send()
        .await
        .unwrap();
    let mut versions: Vec<(String, String)> = objects
        .versions()
        .iter()
        .map(|v| {
            (
                v.key().unwrap_or_default().to_owned(),
                v.version_id().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    versions.sort();
    (json!(items), versions)
}

/// A store with `app` versions 1 and 2 and `prod` = 1 + 5 % on 2, and a
/// local server over it.
async fn seeded_server() -> (TestStore, String) {
    let store = TestStore::new().await;
    let app = name("app");
    for content in [&b"1"[..], b"2"] {
        store.upload(&app, content).await;
        store
            .repo
            .publish_version(&app, false, LOCAL_ACTOR)
            .await
            .unwrap();
    }
    let split = AliasTarget {
        version: Version::Number(1),
        secondary: Some((Version::Number(2), Weight::new(5).unwrap())),
    };
    store
        .repo
        .put_alias(
            &app,
            &"prod".parse().unwrap(),
            split,
            &ChangeRequest::default(),
        )
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(local_api::serve(
        listener,
        Arc::new(store.another_repository()),
    ));
    (store, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schema_valid_edge_inputs_are_accepted() {
    let (_store, base) = seeded_server().await;
    let http = reqwest::Client::new();
    let cases = [
        (
            "POST",
            "/artifacts/app/purge",
            r#"{"keep_last_n": 4294967295.0, "purge_older_than_secs": 18446744073709551615, "dry_run": true}"#,
        ),
        (
            "PUT",
            "/artifacts/app/aliases/canary",
            r#"{"version": "1", "secondary_version": "2", "secondary_version_weight": 10.0}"#,
        ),
        ("GET", "/artifacts/app/versions?cursor=", ""),
        (
            "POST",
            "/artifacts/app/uploads",
            r#"{"sha256": "AB00000000000000000000000000000000000000000000000000000000000000", "size": 0.0}"#,
        ),
    ];
    for (method, path, body) in cases {
        let response = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(
            (200..300).contains(&status),
            "{method} {path} {body}: {status} {}",
            response.text().await.unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let (store, base) = seeded_server().await;
    let http = reqwest::Client::new();

    let before = snapshot(&store).await;
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let mut request =
            http.request(case.method.parse().unwrap(), format!("{base}{}", case.path));
        if let Some(body) = &case.body {
            request = request
                .header("content-type", "application/json")
                .body(body.clone());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("").to_owned());
        let body: Value =
            serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str().unwrap_or("<none>");
        let message = body["error"]["message"].as_str().unwrap_or("");
        let short_path: String = case.path.chars().take(60).collect();
        if status != case.status || code != case.code {
            failures.push(format!(
                "{} {short_path}: got {status} {code} ({message}), want {} {}",
                case.method, case.status, case.code
            ));
        }
        if content_type.as_deref() != Some("application/json") || message.is_empty() {
            failures.push(format!(
                "{} {short_path}: no JSON error message",
                case.method
            ));
        }
        if message.contains("Unhandled")
            || message.contains("ErrorMetadata")
            || message.contains("panicked")
            || message.contains("struct ")
            || message.contains("Body")
        {
            failures.push(format!(
                "{} {short_path}: leaks internals: {message}",
                case.method
            ));
        }
        if snapshot(&store).await != before {
            failures.push(format!("{} {short_path}: changed the store", case.method));
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
