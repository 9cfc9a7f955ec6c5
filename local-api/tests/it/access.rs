//! Access control (SPEC 10.4, invariant 18) over HTTP through the local
//! server, acting as several principals through its `x-artifact-caller`
//! header: a caller whose targets do not grant an action on a name never
//! performs it on that name, through any route; a refusal is a 403 that
//! changes nothing; listings show only what the caller may read.

use std::sync::Arc;

use serde_json::{Value, json};
use shared::api::{Operation, ROUTES};
use shared::model::LOCAL_ACTOR;
use test_support::{TestStore, name, sha256_hex};

const ADMIN: &str = "arn:aws:iam::1:role/platform";
const TEAM_A: &str = "arn:aws:iam::1:role/team-a-ci";
const READER: &str = "arn:aws:iam::1:role/dashboards";
const RELEASE: &str = "arn:aws:iam::1:role/release";

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
        Self {
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        caller: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{}", self.base, path))
            .header(shared::http::CALLER_HEADER, caller);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn targets() -> Value {
    json!({"targets": [
        {"principals": [ADMIN], "names": ["*"], "actions": ["admin"]},
        {"principals": ["arn:aws:iam::1:role/team-a-*"], "names": ["team-a.*"],
         "exclude": ["team-a.secret"],
         "actions": ["read", "write", "delete", "promote"], "aliases": ["staging"]},
        {"principals": [READER], "names": ["*"], "actions": ["read"]},
        {"principals": [RELEASE], "names": ["*"], "actions": ["read", "promote"], "aliases": ["prod"]}
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn teams_readers_and_releasers_reach_exactly_what_their_targets_grant() {
    let store = TestStore::new().await;
    let api = Api::start(&store).await;
    for artifact in ["team-a.app", "team-b.app", "team-a.secret"] {
        store.upload(&name(artifact), artifact.as_bytes()).await;
        store
            .repo
            .publish_version(&name(artifact), false, LOCAL_ACTOR)
            .await
            .unwrap();
    }

    // Open until the first target; a document that would lock its author
    // out is refused.
    let (status, _) = api
        .call(READER, "GET", "/artifacts/team-b.app/versions/1", None)
        .await;
    assert_eq!(status, 200, "no targets yet: open");
    let (status, body) = api
        .call(
            TEAM_A,
            "PUT",
            "/access",
            Some(json!({"targets": [
            {"principals": [READER], "names": ["*"], "actions": ["read"]}]})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lock you out")
    );
    let (status, body) = api.call(ADMIN, "PUT", "/access", Some(targets())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revision"], 1);

    // Team A: its names, not the excluded one, not another team's.
    let (status, _) = api
        .call(
            TEAM_A,
            "POST",
            "/artifacts/team-a.app/versions",
            Some(json!({"force": true})),
        )
        .await;
    assert_eq!(status, 201);
    for (method, path, body) in [
        (
            "POST",
            "/artifacts/team-b.app/versions",
            Some(json!({"force": true})),
        ),
        ("GET", "/artifacts/team-b.app/versions/1", None),
        ("GET", "/artifacts/team-a.secret/versions/1", None),
        ("DELETE", "/artifacts/team-b.app/versions/1", None),
        ("DELETE", "/artifacts/team-a.app", None),
        (
            "PUT",
            "/artifacts/team-a.app/aliases/prod",
            Some(json!({"version": "1"})),
        ),
        ("GET", "/access", None),
    ] {
        let (status, answer) = api.call(TEAM_A, method, path, body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "AccessDenied");
    }
    let (status, _) = api
        .call(
            TEAM_A,
            "PUT",
            "/artifacts/team-a.app/aliases/staging",
            Some(json!({"version": "1"})),
        )
        .await;
    assert_eq!(status, 200, "team A promotes staging");
    // Through a one-request pipeline too: the alias in the body counts.
    let bytes = b"team a, build 3";
    let (status, ticket) = api
        .call(
            TEAM_A,
            "POST",
            "/artifacts/team-a.app/uploads",
            Some(
                json!({"sha256": sha256_hex(bytes), "size": bytes.len(), "commit": true,
                        "publish": true, "alias": {"name": "prod"}}),
            ),
        )
        .await;
    assert_eq!(status, 403, "prod is the release role's: {ticket}");
    // Bytes LATEST holds are committed in one transaction, after reads that
    // go beside the authorisation: refused, the transaction never runs.
    let held = b"team-a.app";
    let before = store.upload_rows(&name("team-a.app")).await;
    let (status, answer) = api
        .call(
            READER,
            "POST",
            "/artifacts/team-a.app/uploads",
            Some(json!({"sha256": sha256_hex(held), "size": held.len(), "commit": true})),
        )
        .await;
    assert_eq!(status, 403, "the reader changes nothing: {answer}");
    assert_eq!(store.upload_rows(&name("team-a.app")).await, before);
    // A commit reads the upload and LATEST beside the authorisation too:
    // refused, the upload stays pending and LATEST as it was.
    let staged = store
        .repo
        .create_upload(
            &name("team-a.app"),
            test_support::declare(bytes),
            LOCAL_ACTOR,
        )
        .await
        .unwrap();
    test_support::put_bytes(&store.http, &staged, bytes).await;
    let (status, answer) = api
        .call(
            READER,
            "PUT",
            "/artifacts/team-a.app",
            Some(json!({"upload_id": staged.upload_id})),
        )
        .await;
    assert_eq!(status, 403, "the reader commits nothing: {answer}");
    let upload = store
        .repo
        .upload_state(&name("team-a.app"), &staged.upload_id)
        .await
        .unwrap();
    assert_eq!(upload.state, "pending");
    let latest = store
        .repo
        .get_version(&name("team-a.app"), shared::Version::Latest)
        .await
        .unwrap();
    assert_eq!(latest.sha256, sha256_hex(held));

    // A publish reads LATEST beside the authorisation too: refused, the
    // changed LATEST stays unpublished.
    store.upload(&name("team-a.app"), b"team a, build 4").await;
    let versions = |page: shared::model::Page<shared::model::Artifact>| page.items.len();
    let before = versions(
        store
            .repo
            .list_versions(&name("team-a.app"), None, None)
            .await
            .unwrap(),
    );
    let (status, answer) = api
        .call(READER, "POST", "/artifacts/team-a.app/versions", None)
        .await;
    assert_eq!(status, 403, "the reader publishes nothing: {answer}");
    let after = versions(
        store
            .repo
            .list_versions(&name("team-a.app"), None, None)
            .await
            .unwrap(),
    );
    assert_eq!(after, before);

    // The reader reads everything, changes nothing.
    let (status, _) = api
        .call(READER, "GET", "/artifacts/team-a.secret/versions/1", None)
        .await;
    assert_eq!(status, 200);
    for (method, path) in [
        ("POST", "/artifacts/team-b.app/versions"),
        ("DELETE", "/artifacts/team-b.app/versions/1"),
    ] {
        let (status, _) = api.call(READER, method, path, None).await;
        assert_eq!(status, 403, "reader: {method} {path}");
    }
    // A version's delete reads the alias partition beside the
    // authorisation: refused, the version stays.
    let (status, answer) = api
        .call(READER, "GET", "/artifacts/team-b.app/versions/1", None)
        .await;
    assert_eq!(status, 200, "the refused delete deleted nothing: {answer}");
    // The release role moves prod anywhere, and nothing else.
    let (status, _) = api
        .call(
            RELEASE,
            "PUT",
            "/artifacts/team-b.app/aliases/prod",
            Some(json!({"version": "1"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = api
        .call(
            RELEASE,
            "PUT",
            "/artifacts/team-b.app/aliases/staging",
            Some(json!({"version": "1"})),
        )
        .await;
    assert_eq!(status, 403);

    // A 403 changed nothing: team B's versions and aliases are as they were.
    let versions = store
        .repo
        .list_versions(&name("team-b.app"), None, None)
        .await
        .unwrap();
    assert_eq!(versions.items.len(), 2, "LATEST and 1");
    let aliases = store
        .repo
        .list_aliases(&name("team-a.app"), None, None)
        .await
        .unwrap();
    assert_eq!(aliases.items.len(), 1, "staging only: {aliases:?}");

    // Listings: only names the caller may read.
    let (_, listed) = api.call(TEAM_A, "GET", "/artifacts", None).await;
    assert_eq!(listed["items"], json!(["team-a.app"]));
    let (_, listed) = api.call(READER, "GET", "/artifacts", None).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 3);
    let (_, found) = api
        .call(
            TEAM_A,
            "GET",
            &format!("/search?sha256={}", sha256_hex(b"team-b.app")),
            None,
        )
        .await;
    assert_eq!(
        found["items"],
        json!([]),
        "team B's bytes are not team A's to find"
    );
    // An unknown caller: nothing.
    let (status, _) = api
        .call(
            "arn:aws:iam::2:role/stranger",
            "GET",
            "/artifacts/team-a.app/versions/1",
            None,
        )
        .await;
    assert_eq!(status, 403);

    // Every change of the targets is recorded, who and when.
    let (status, history) = api.call(ADMIN, "GET", "/access/history", None).await;
    assert_eq!(status, 200);
    assert_eq!(history["items"][0]["actor"], ADMIN);
    assert_eq!(history["items"][0]["revision"], 1);
    assert_eq!(history["items"][0]["previous"], json!({"targets": []}));
}

/// Invariant 18, route by route: with targets granting a principal nothing
/// on a name, every route on that name answers 403 and the store is
/// unchanged; each route's needed action is the documented one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_route_lets_a_caller_act_on_a_name_no_target_grants() {
    let store = TestStore::new().await;
    let api = Api::start(&store).await;
    let n = name("guarded");
    store.upload(&n, b"guarded bytes").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    // An alias with a change to undo: the alias routes read beside the
    // authorisation (put, delete, rollback), and must write nothing.
    let prod: shared::AliasName = "prod".parse().unwrap();
    for version in [shared::Version::Number(1), shared::Version::Latest] {
        let target = shared::model::AliasTarget {
            version,
            secondary: None,
        };
        let change = shared::model::ChangeRequest::default();
        store
            .repo
            .put_alias(&n, &prod, target, &change)
            .await
            .unwrap();
    }
    let (status, _) = api.call(ADMIN, "PUT", "/access", Some(targets())).await;
    assert_eq!(status, 200);
    let before = store.repo.list_versions(&n, None, None).await.unwrap();
    let aliases = || async {
        let alias = store.repo.get_alias(&n, &prod).await.unwrap();
        let history = store
            .repo
            .alias_history(&n, &prod, None, None)
            .await
            .unwrap();
        serde_json::to_value((alias, history)).unwrap()
    };
    let aliases_before = aliases().await;
    let outsider = "arn:aws:iam::1:role/team-a-ci";
    for route in ROUTES {
        let path = route
            .path
            .replace("{name}", "guarded")
            .replace("{alias}", "prod")
            .replace("{version}", "1")
            .replace("{upload_id}", &"0".repeat(96))
            .replace("{id}", "0123456789abcdef")
            .replace("{action}", "pause");
        let body = match route.method {
            "POST" | "PUT" | "PATCH" => Some(json!({})),
            _ => None,
        };
        let (status, answer) = api.call(outsider, route.method, &path, body).await;
        let listing = matches!(
            route.operation,
            Operation::ListArtifacts | Operation::SearchVersions
        );
        if listing {
            assert!(
                status == 200 || status == 400,
                "{} {path}: {status} {answer}",
                route.method
            );
            if status == 200 {
                assert!(
                    !answer.to_string().contains("guarded"),
                    "{} lists what the caller may not read: {answer}",
                    route.function
                );
            }
        } else {
            assert_eq!(status, 403, "{} {path}: {answer}", route.method);
        }
    }
    let after = store.repo.list_versions(&n, None, None).await.unwrap();
    assert_eq!(
        serde_json::to_value(&after.items).unwrap(),
        serde_json::to_value(&before.items).unwrap(),
        "nothing changed"
    );
    assert_eq!(aliases().await, aliases_before, "no alias change landed");
}

/// A name cannot be smuggled past a pattern: percent-encoding, case, dot
/// segments, names in query expressions, and cursors issued for another
/// name or caller all end in a refusal (or an answer that leaves the name
/// out), never in another team's bytes or a change to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encoded_names_case_dot_segments_queries_and_cursors_smuggle_no_name_past_a_pattern() {
    let store = TestStore::new().await;
    let api = Api::start(&store).await;
    for artifact in ["team-a.app", "team-a.zzz", "team-b.app", "team-b.web"] {
        store.upload(&name(artifact), artifact.as_bytes()).await;
        store
            .repo
            .publish_version(&name(artifact), false, LOCAL_ACTOR)
            .await
            .unwrap();
    }
    let (status, body) = api.call(ADMIN, "PUT", "/access", Some(targets())).await;
    assert_eq!(status, 200, "{body}");

    // The name as the route decodes it is the one matched: an encoded
    // `team-b.app` is team B's, and refused.
    for path in [
        "/artifacts/%74eam-b.app/versions/1",
        "/artifacts/team%2Db.app/versions/1",
        "/artifacts/team-b%2Eapp/versions/1",
    ] {
        let (status, answer) = api.call(TEAM_A, "GET", path, None).await;
        assert_eq!(status, 403, "GET {path}: {answer}");
        assert_eq!(answer["error"]["code"], "AccessDenied", "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("team-b.app"),
            "the refusal names the decoded name: {answer}"
        );
    }
    // An encoded name in a write is refused and changes nothing.
    let (status, answer) = api
        .call(
            TEAM_A,
            "PUT",
            "/artifacts/%74eam-b.app/aliases/staging",
            Some(json!({"version": "1"})),
        )
        .await;
    assert_eq!(status, 403, "{answer}");
    // Case: `TEAM-A.app` is another name than `team-a.app`, and no pattern of
    // team A's matches it.
    let (status, answer) = api
        .call(
            TEAM_A,
            "POST",
            "/artifacts/TEAM-A.app/versions",
            Some(json!({"force": true})),
        )
        .await;
    assert_eq!(status, 403, "{answer}");
    // Dot segments and encoded slashes: no route takes them as a name team A
    // holds, and none answers with team B's data.
    for path in [
        "/artifacts/team-a.app%2F..%2Fteam-b.app/versions/1",
        "/artifacts/team-a.app/%2E%2E/team-b.app/versions/1",
        "/artifacts/team-a.app/..%2Fteam-b.app/versions/1",
        "/artifacts/..%2Fteam-b.app/versions/1",
    ] {
        let (status, answer) = api.call(TEAM_A, "GET", path, None).await;
        assert!(
            [400, 403, 404].contains(&status),
            "GET {path}: {status} {answer}"
        );
        assert!(
            !answer.to_string().contains(&sha256_hex(b"team-b.app")),
            "GET {path} answered team B's version: {answer}"
        );
    }
    // Names in a query expression: team B's matches are left out.
    for q in [
        "name='team-b.app'",
        "name='team-a.app' OR name='team-b.app'",
        "name IN ('team-b.app','team-b.web')",
    ] {
        let (status, found) = api
            .call(TEAM_A, "GET", &format!("/search?q={}", urlencode(q)), None)
            .await;
        assert_eq!(status, 200, "{q}: {found}");
        assert!(
            !found.to_string().contains("team-b"),
            "{q} shows team B's: {found}"
        );
    }
    // Cursors: one the admin was issued, resumed by team A, lists only what
    // team A may read; a version cursor of team B's artifact, sent to team
    // A's listing, never lists team B's versions.
    let (status, page) = api.call(ADMIN, "GET", "/artifacts?limit=1", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"], json!(["team-a.app"]));
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (status, rest) = api
        .call(
            TEAM_A,
            "GET",
            &format!("/artifacts?cursor={}", urlencode(&cursor)),
            None,
        )
        .await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["items"], json!(["team-a.zzz"]));
    let (status, page) = api
        .call(ADMIN, "GET", "/artifacts/team-b.app/versions?limit=1", None)
        .await;
    assert_eq!(status, 200, "{page}");
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (status, answer) = api
        .call(
            TEAM_A,
            "GET",
            &format!(
                "/artifacts/team-a.app/versions?cursor={}",
                urlencode(&cursor)
            ),
            None,
        )
        .await;
    assert!(
        !answer.to_string().contains("team-b"),
        "{status}: a cursor of team B's listed its versions: {answer}"
    );
    let (status, answer) = api
        .call(
            TEAM_A,
            "GET",
            &format!(
                "/artifacts/team-b.app/versions?cursor={}",
                urlencode(&cursor)
            ),
            None,
        )
        .await;
    assert_eq!(status, 403, "{answer}");

    // Nothing of team B's changed.
    let aliases = store
        .repo
        .list_aliases(&name("team-b.app"), None, None)
        .await
        .unwrap();
    assert!(aliases.items.is_empty(), "{aliases:?}");
    let versions = store
        .repo
        .list_versions(&name("team-b.app"), None, None)
        .await
        .unwrap();
    assert_eq!(versions.items.len(), 2, "LATEST and 1");
}

/// What a caller reads page by page, following cursors: every item of
/// every page and every cursor's text.
async fn follow(api: &Api, caller: &str, first: &str) -> (Vec<Value>, Vec<String>) {
    let (mut items, mut cursors) = (Vec::new(), Vec::new());
    let mut path = first.to_owned();
    for _ in 0..50 {
        let (status, page) = api.call(caller, "GET", &path, None).await;
        assert_eq!(status, 200, "{path}: {page}");
        let got = page["items"].as_array().unwrap().clone();
        let Some(cursor) = page["next_cursor"].as_str() else {
            items.extend(got);
            return (items, cursors);
        };
        assert!(!got.is_empty(), "{path}: an empty page with a cursor");
        items.extend(got);
        let text = shared::repository::cursor_text(cursor).unwrap_or_default();
        cursors.push(text);
        let sep = if first.contains('?') { '&' } else { '?' };
        path = format!("{first}{sep}cursor={}", urlencode(cursor));
    }
    panic!("{first}: more than 50 pages");
}

/// SPEC 10.4: listings show only names the caller may read, and their
/// cursors are cut on what they show: following `limit=1` pages of the
/// artifact listing, a search by bytes, by metadata or by a `q=` query
/// never hands a caller a cursor (or a page) naming what it may not read,
/// nor tells it which of those match (a cursor built from the last entry
/// read, before filtering, did: any caller could list every name).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_and_cursors_of_listings_and_searches_name_nothing_the_caller_may_not_read() {
    let store = TestStore::new().await;
    let api = Api::start(&store).await;
    let shown = ["team-a.app", "team-a.web"];
    let hidden = ["team-a.secret", "team-b.app", "team-b.zzz"];
    for artifact in [
        "team-a.app",
        "team-a.secret",
        "team-a.web",
        "team-b.app",
        "team-b.zzz",
    ] {
        store
            .publish_with(&name(artifact), b"shared bytes", &[("team", "all")])
            .await;
    }
    let (status, body) = api.call(ADMIN, "PUT", "/access", Some(targets())).await;
    assert_eq!(status, 200, "{body}");
    let leaks = |cursors: &[String]| {
        cursors
            .iter()
            .filter(|c| hidden.iter().any(|h| c.contains(h)))
            .cloned()
            .collect::<Vec<_>>()
    };

    // The last page shown has no cursor: whether hidden names follow it is
    // not told either (review finding: a cursor there, leading to an empty
    // page, said that some name the caller may not read sorts after it,
    // or holds the bytes or metadata searched for).
    let no_cursor_past_the_last = |items: &[Value], cursors: &[String], what: &str| {
        assert_eq!(cursors.len() + 1, items.len(), "{what}: {cursors:?}");
    };
    let (items, cursors) = follow(&api, TEAM_A, "/artifacts?limit=1").await;
    assert_eq!(items, json!(shown).as_array().unwrap().clone());
    assert_eq!(leaks(&cursors), Vec::<String>::new());
    no_cursor_past_the_last(&items, &cursors, "listing");
    // The admin still pages through every name.
    let (all, _) = follow(&api, ADMIN, "/artifacts?limit=2").await;
    assert_eq!(all.len(), 5, "{all:?}");

    let digest = sha256_hex(b"shared bytes");
    for first in [
        format!("/search?sha256={digest}&limit=1"),
        "/search?meta.team=all&limit=1".to_owned(),
        format!(
            "/search?limit=1&q={}",
            urlencode("meta.team='all' OR name='team-b.app'")
        ),
    ] {
        let (items, cursors) = follow(&api, TEAM_A, &first).await;
        let mut names: Vec<&str> = items.iter().map(|h| h["name"].as_str().unwrap()).collect();
        names.dedup();
        assert_eq!(names, shown, "{first}: {items:?}");
        assert_eq!(leaks(&cursors), Vec::<String>::new(), "{first}");
        no_cursor_past_the_last(&items, &cursors, &first);
    }
    // A query whose only hidden match comes first answers team A's match
    // on the first page, not an empty page whose cursor names the other.
    let q = urlencode("(name='team-b.app' AND meta.team='all') OR name='team-a.web'");
    let (status, page) = api
        .call(TEAM_A, "GET", &format!("/search?limit=1&q={q}"), None)
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["name"], "team-a.web", "{page}");
    let cursor = page["next_cursor"]
        .as_str()
        .map(shared::repository::cursor_text);
    assert!(!format!("{cursor:?}").contains("team-b"), "{cursor:?}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Targets naming `tag:KEY=VALUE` match this account's roles (and their
/// sessions) and users by their IAM tags, looked up in IAM: a tagged role's
/// CI session writes its team's names, another team's role does not, a
/// same-named role of another account borrows nothing, and a principal IAM
/// does not know is refused, not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn principal_tags_grant_to_this_accounts_tagged_roles_and_users() {
    const ACCOUNT: &str = "123456789012"; // the emulator's account
    let store = TestStore::with_settings(&[("ACCOUNT_ID", ACCOUNT)]).await;
    let iam = aws_sdk_iam::Client::new(&store.sdk);
    // IAM is one namespace for every test on the emulator.
    let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let tag = |k: &str, v: &str| {
        aws_sdk_iam::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
            .unwrap()
    };
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"codebuild.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    for (role, team) in [("payments-ci", "payments"), ("search-ci", "search")] {
        iam.create_role()
            .role_name(format!("{role}-{id}"))
            .path("/ci/")
            .assume_role_policy_document(trust)
            .tags(tag("team", team))
            .tags(tag("cost-center", "42"))
            .send()
            .await
            .unwrap();
    }
    iam.create_user()
        .user_name(format!("alice-{id}"))
        .tags(tag("Team", "payments"))
        .send()
        .await
        .unwrap();
    let payments_session = format!("arn:aws:sts::{ACCOUNT}:assumed-role/payments-ci-{id}/build-1");
    let search_session = format!("arn:aws:sts::{ACCOUNT}:assumed-role/search-ci-{id}/build-1");
    let alice = format!("arn:aws:iam::{ACCOUNT}:user/alice-{id}");
    let foreign = format!("arn:aws:sts::999999999999:assumed-role/payments-ci-{id}/build-1");
    let ghost = format!("arn:aws:sts::{ACCOUNT}:assumed-role/ghost-{id}/build-1");

    // Before any target names a tag, nobody's tags are looked up.
    let repo = store.another_repository();
    let plain = repo.access_targets().await.unwrap().targets;
    let caller = repo.caller(&payments_session, &plain).await.unwrap();
    assert!(caller.tags.is_empty());
    assert!(
        !repo.operations().contains("ListRoleTags"),
        "{:?}",
        repo.operations()
    );

    let api = Api::start(&store).await;
    store.upload(&name("payments.app"), b"payments v1").await;
    store
        .repo
        .publish_version(&name("payments.app"), false, LOCAL_ACTOR)
        .await
        .unwrap();
    let targets = json!({"targets": [
        {"principals": [ADMIN], "names": ["*"], "actions": ["admin"]},
        {"principals": ["tag:team=payments"], "names": ["payments.*"], "actions": ["read", "write"]}
    ]});
    let (status, body) = api.call(ADMIN, "PUT", "/access", Some(targets)).await;
    assert_eq!(status, 200, "{body}");

    let publish = |caller: String| {
        let api = &api;
        async move {
            api.call(
                &caller,
                "POST",
                "/artifacts/payments.app/versions",
                Some(json!({"force": true})),
            )
            .await
        }
    };
    let (status, body) = publish(payments_session.clone()).await;
    assert_eq!(status, 201, "the payments role's session: {body}");
    for (who, caller) in [
        ("another team's role", search_session.clone()),
        ("a same-named role of another account", foreign.clone()),
        ("a role IAM does not know", ghost.clone()),
    ] {
        let (status, body) = publish(caller).await;
        assert_eq!(status, 403, "{who}: {body}");
        assert_eq!(body["error"]["code"], "AccessDenied", "{who}: {body}");
    }
    // A user, its tag key in another case (IAM keys are case-insensitive).
    let (status, body) = api
        .call(&alice, "GET", "/artifacts/payments.app/versions/1", None)
        .await;
    assert_eq!(status, 200, "{body}");
    // The test route answers as the routes decide, tags included.
    for (principal, want) in [(&payments_session, true), (&search_session, false)] {
        let (status, body) = api
            .call(
                ADMIN,
                "GET",
                &format!(
                    "/access?principal={}&action=write&name=payments.app",
                    urlencode(principal)
                ),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["allowed"], want, "{principal}: {body}");
    }
    // Listings follow the tags too.
    let (_, listed) = api.call(&search_session, "GET", "/artifacts", None).await;
    assert_eq!(listed["items"], json!([]));
    let (_, listed) = api.call(&payments_session, "GET", "/artifacts", None).await;
    assert_eq!(listed["items"], json!(["payments.app"]));

    // A repository looks a caller's tags up once, then answers from memory
    // until they are a minute old; a new one (another Lambda instance) sees
    // a changed tag at once.
    let tagged = repo.access_targets().await.unwrap().targets;
    assert!(tagged.names_tags());
    let caller = repo.caller(&payments_session, &tagged).await.unwrap();
    assert_eq!(
        caller.tags.get("team").map(String::as_str),
        Some("payments")
    );
    iam.untag_role()
        .role_name(format!("payments-ci-{id}"))
        .tag_keys("team")
        .send()
        .await
        .unwrap();
    let cached = repo.caller(&payments_session, &tagged).await.unwrap();
    assert_eq!(cached.tags, caller.tags);
    let fresh = store
        .another_repository()
        .caller(&payments_session, &tagged)
        .await
        .unwrap();
    assert_eq!(fresh.tags.get("team"), None, "{fresh:?}");
    assert_eq!(
        fresh.tags.get("cost-center").map(String::as_str),
        Some("42")
    );
}

/// Review of the access routes: emptying the targets reopened every route
/// to every principal (deny by default holds while targets exist), and a
/// document near the body's limit made its history entry (it and the one
/// it replaces, in one item) exceed DynamoDB's 400 KB: a 5xx. Both are
/// refused as requests (400, 413) and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_targets_are_never_emptied_once_set_nor_larger_than_their_history_holds() {
    let store = TestStore::new().await;
    let api = Api::start(&store).await;
    let (status, body) = api.call(ADMIN, "PUT", "/access", Some(targets())).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .call(ADMIN, "PUT", "/access", Some(json!({"targets": []})))
        .await;
    assert_eq!(status, 400, "{body}");
    let stranger = "arn:aws:iam::1:role/stranger";
    let (status, _) = api.call(stranger, "GET", "/access", None).await;
    assert_eq!(status, 403, "still closed to whom no target grants");

    let mut large = vec![json!({"principals": [ADMIN], "names": ["*"], "actions": ["admin"]})];
    for i in 0..199 {
        let principals: Vec<String> = (0..30)
            .map(|j| format!("arn:aws:iam::1:role/t{i:03}-{j:02}-xxxxxx"))
            .collect();
        large.push(json!({"principals": principals, "names": ["*"], "actions": ["read"]}));
    }
    let large = json!({ "targets": large });
    assert!(
        large.to_string().len() < 256 * 1024,
        "within the body's limit"
    );
    let (status, body) = api.call(ADMIN, "PUT", "/access", Some(large)).await;
    assert_eq!(status, 413, "{body}");
    let (_, now) = api.call(ADMIN, "GET", "/access", None).await;
    assert_eq!(now["revision"], 1, "{now}");
}

/// Acceptance finding (SPEC 10.4): after the break-glass the README
/// documents (a table administrator deletes the targets' item), the
/// targets read as revision 0 while their history held revisions 1 and
/// 2, and every `PUT /access` was refused 412 (its history entry, revision
/// 1, existed): the targets could never be set again. The change is now
/// recorded after the newest entry. Their times are RFC 3339, as every
/// other time the API answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_targets_are_set_again_after_their_item_was_deleted_by_hand() {
    let store = TestStore::new().await;
    let api = Api::start(&store).await;
    for _ in 0..2 {
        let (status, body) = api.call(ADMIN, "PUT", "/access", Some(targets())).await;
        assert_eq!(status, 200, "{body}");
    }
    store.delete_raw_key("__access", "targets").await;
    let stranger = "arn:aws:iam::1:role/stranger";
    let (status, open) = api.call(stranger, "GET", "/access", None).await;
    assert_eq!(
        (status, open["revision"].clone()),
        (200, json!(0)),
        "{open}"
    );
    // WHEN the targets are set again, as read (revision 0).
    let response = reqwest::Client::new()
        .put(format!("{}/access", api.base))
        .header(shared::http::CALLER_HEADER, ADMIN)
        .header("if-match", "\"0\"")
        .header("content-type", "application/json")
        .body(targets().to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let set: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    // THEN they are, recorded after the history kept.
    assert_eq!((status, set["revision"].clone()), (200, json!(3)), "{set}");
    let (status, _) = api.call(stranger, "GET", "/access", None).await;
    assert_eq!(status, 403, "closed again");
    let (_, history) = api.call(ADMIN, "GET", "/access/history", None).await;
    let revisions: Vec<u64> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revisions, [3, 2, 1], "{history}");
    let rfc3339 = |t: &Value| {
        time::OffsetDateTime::parse(
            t.as_str().unwrap_or_default(),
            &time::format_description::well_known::Rfc3339,
        )
        .is_ok()
    };
    let (_, now) = api.call(ADMIN, "GET", "/access", None).await;
    assert!(rfc3339(&now["update_at"]), "{now}");
    assert!(rfc3339(&set["update_at"]), "{set}");
    assert!(
        history["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| rfc3339(&h["at"])),
        "{history}"
    );
}

/// Review of the access routes: a `q=` search counted a term's matches
/// before leaving out the names the caller may not read, so its "matches
/// more than 1000 versions" 400 told whether a hidden artifact had that
/// many rows. A term now counts, and looks up, readable names only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_search_limit_tells_nothing_of_names_the_caller_may_not_read() {
    let store = TestStore::new().await;
    let api = Api::start(&store).await;
    let (status, body) = api.call(ADMIN, "PUT", "/access", Some(targets())).await;
    assert_eq!(status, 200, "{body}");
    // More rows under the hidden name than a term may match.
    let keys: Vec<String> = (1..=1001).map(|v| format!("{v:06}")).collect();
    futures::future::join_all(keys.iter().map(|k| store.put_raw_key("team-a.secret", k))).await;
    let q = urlencode("name='team-a.secret'");
    let (status, found) = api
        .call(ADMIN, "GET", &format!("/search?q={q}"), None)
        .await;
    assert_eq!(status, 400, "the admin may read it: {found}");
    let (status, found) = api
        .call(TEAM_A, "GET", &format!("/search?q={q}"), None)
        .await;
    assert_eq!(
        (status, &found["items"]),
        (200, &json!([])),
        "team A may not read it: {found}"
    );
}

/// A term's index is read only so far, whoever asks: past
/// `MAX_TERM_ENTRIES_READ` entries across the repository the answer is the
/// same 400 for a caller who may read none of them as for the admin, so
/// neither the work nor the time a hidden artifact's entries cost grows
/// without bound (`q=` and the plain `meta.`/`sha256=` form alike).
#[tokio::test]
async fn a_term_reads_a_bounded_number_of_entries_whoever_asks() {
    let store = TestStore::new().await;
    let api = Api::start(&store).await;
    let (status, body) = api.call(ADMIN, "PUT", "/access", Some(targets())).await;
    assert_eq!(status, 200, "{body}");
    let entries: Vec<String> = (1..=shared::query::MAX_TERM_ENTRIES_READ + 1)
        .map(|v| format!("team-a.secret/{v:06}"))
        .collect();
    store.put_raw_keys("__meta/team=hidden", &entries).await;
    // The query form, and the plain one (whose pages stop at `limit`
    // readable entries: the admin's first page is read at once), with one
    // message whichever limit was met.
    let q = urlencode("meta.team='hidden'");
    let plain = "/search?meta.team=hidden";
    let mut messages = std::collections::BTreeSet::new();
    for (caller, path) in [
        (ADMIN, format!("/search?q={q}")),
        (TEAM_A, format!("/search?q={q}")),
        (TEAM_A, plain.to_owned()),
    ] {
        let (status, found) = api.call(caller, "GET", &path, None).await;
        assert_eq!(status, 400, "{caller} {path}: {found}");
        messages.insert(found["error"]["message"].to_string());
    }
    assert_eq!(messages.len(), 1, "{messages:?}");
    let (status, found) = api.call(ADMIN, "GET", plain, None).await;
    assert_eq!(status, 200, "{found}");
}

/// Review finding: looked-up tags were kept by caller ARN, which names the
/// session: every CI job's session (its own session name) looked the role's
/// tags up again, and a stream of new session names flushed the cache, each
/// request an IAM call until IAM throttled and authorisation answered 502.
/// Every session of a role now uses the role's looked-up tags.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_session_of_a_role_shares_its_looked_up_tags() {
    const ACCOUNT: &str = "123456789012"; // the emulator's account
    let store = TestStore::with_settings(&[("ACCOUNT_ID", ACCOUNT)]).await;
    let iam = aws_sdk_iam::Client::new(&store.sdk);
    let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let role = format!("sessions-ci-{id}");
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"codebuild.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    iam.create_role()
        .role_name(&role)
        .assume_role_policy_document(trust)
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("team")
                .value("payments")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let repo = store.another_repository();
    let targets: shared::access::Targets = serde_json::from_value(json!({"targets": [
        {"principals": ["tag:team=payments"], "names": ["payments.*"], "actions": ["read"]}
    ]}))
    .unwrap();
    let session = |job: u32| format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/job-{job}");
    let first = repo.caller(&session(1), &targets).await.unwrap();
    assert!(!first.tags.is_empty(), "{first:?}");
    // The role's tags change in IAM: a lookup would now find none.
    iam.untag_role()
        .role_name(&role)
        .tag_keys("team")
        .send()
        .await
        .unwrap();
    // Other jobs' sessions, within the tags' freshness, look nothing up.
    for job in 2..5 {
        let caller = repo.caller(&session(job), &targets).await.unwrap();
        assert_eq!(caller.tags, first.tags, "job {job}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pipeline_alias_in_any_form_of_the_body_needs_promote_on_that_alias() {
    let store = TestStore::new().await;
    let api = Api::start(&store).await;
    let artifact = "team-a.app";
    let bytes = b"team-a.app";
    store.upload(&name(artifact), bytes).await;
    let (status, body) = api.call(ADMIN, "PUT", "/access", Some(targets())).await;
    assert_eq!(status, 200, "{body}");
    let declared = json!({"sha256": sha256_hex(bytes), "size": bytes.len()});
    let with = |extra: Value| {
        let mut b = declared.clone();
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let uploads = format!("/artifacts/{artifact}/uploads");
    // Team A may promote `staging` only: `prod` as an object, as an array
    // of the object's fields, or given twice, is a promotion of prod.
    for alias in [
        json!({"name": "prod"}),
        json!(["prod"]),
        json!(["prod", 10]),
    ] {
        let start = with(json!({"commit": true, "publish": true, "force": true, "alias": alias}));
        let (status, answer) = api.call(TEAM_A, "POST", &uploads, Some(start)).await;
        assert_eq!(status, 403, "start with alias {alias}: {answer}");
        assert_eq!(answer["error"]["code"], "AccessDenied", "{answer}");
    }
    let (status, ticket) = api
        .call(TEAM_A, "POST", &uploads, Some(declared.clone()))
        .await;
    assert_eq!(status, 200, "{ticket}");
    let upload_id = ticket["upload_id"].as_str().unwrap().to_owned();
    let commit = format!("/artifacts/{artifact}");
    for body in [
        json!({"upload_id": upload_id, "publish": true, "alias": ["prod"]}),
        json!({"upload_id": upload_id, "publish": true, "alias": {"name": "prod"}}),
    ] {
        let (status, answer) = api.call(TEAM_A, "PUT", &commit, Some(body.clone())).await;
        assert_eq!(status, 403, "commit {body}: {answer}");
    }
    let duplicated = format!(
        r#"{{"upload_id": "{upload_id}", "publish": true, "alias": {{"name": "staging"}}, "alias": {{"name": "prod"}}}}"#
    );
    let response = api
        .http
        .put(format!("{}{commit}", api.base))
        .header(shared::http::CALLER_HEADER, TEAM_A)
        .header("content-type", "application/json")
        .body(duplicated)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403, "alias given twice");
    // One granted every alias is told the array form is no object.
    let (status, answer) = api
        .call(
            ADMIN,
            "PUT",
            &commit,
            Some(json!({"upload_id": upload_id, "publish": true, "alias": ["prod"]})),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expected an object"),
        "{answer}"
    );
    // None of it moved or created prod.
    let (status, answer) = api
        .call(
            ADMIN,
            "GET",
            &format!("/artifacts/{artifact}/aliases/prod"),
            None,
        )
        .await;
    assert_eq!(status, 404, "{answer}");
    // The alias team A may promote goes through, in the one form there is.
    let (status, answer) = api
        .call(
            TEAM_A,
            "PUT",
            &commit,
            Some(json!({"upload_id": upload_id, "publish": true, "alias": {"name": "staging"}})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
}

// Audit finding (SPEC 10.4, 7.13): `PUT /access` decided on one revision of
// the targets and wrote on the one it read next. Another admin's change
// landing between the two (taking this caller's admin away) was
// overwritten by a caller the targets no longer made an admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_targets_change_is_written_on_the_revision_that_authorised_it_or_not_at_all() {
    use test_support::proxy;
    const SECOND: &str = "arn:aws:iam::1:role/platform-2";
    let store = TestStore::new().await;
    let api = Api::start(&store).await;
    let both = json!({"targets": [
        {"principals": [ADMIN, SECOND], "names": ["*"], "actions": ["admin"]}
    ]});
    let (status, body) = api.call(ADMIN, "PUT", "/access", Some(both.clone())).await;
    assert_eq!(status, 200, "{body}");
    // GIVEN the second admin's change, whose handler reads the targets
    // again only after the first admin's change landed.
    let plan = proxy::Plan::new();
    plan.add(proxy::Rule::new(
        "GetItem",
        Some("__access"),
        proxy::Action::Record(proxy::Recorded::new()),
        1,
    ));
    let gate = proxy::Gate::new();
    plan.add(proxy::Rule::new(
        "GetItem",
        Some("__access"),
        proxy::Action::HoldBefore(gate.clone()),
        1,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let held = Api {
        base: format!("http://{}", listener.local_addr().unwrap()),
        http: reqwest::Client::new(),
    };
    tokio::spawn(local_api::serve(
        listener,
        Arc::new(store.through(&plan).await),
    ));
    let late = tokio::spawn(async move {
        let mine = json!({"targets": [
            {"principals": [SECOND], "names": ["*"], "actions": ["admin"]}
        ]});
        held.call(SECOND, "PUT", "/access", Some(mine)).await
    });
    gate.arrived().await;
    let only_first = json!({"targets": [
        {"principals": [ADMIN], "names": ["*"], "actions": ["admin"]}
    ]});
    let (status, body) = api.call(ADMIN, "PUT", "/access", Some(only_first)).await;
    assert_eq!(status, 200, "{body}");
    gate.open();
    // THEN the late change is refused, and the first admin's stands.
    let (status, answer) = late.await.unwrap();
    assert_eq!(status, 412, "{answer}");
    assert_eq!(answer["error"]["code"], "AccessModified", "{answer}");
    let (status, now) = api.call(ADMIN, "GET", "/access", None).await;
    assert_eq!(status, 200, "{now}");
    assert_eq!(now["revision"], 2, "{now}");
    assert_eq!(now["targets"][0]["principals"], json!([ADMIN]), "{now}");
}
