//! The defects found when the service was tried beside `versioned` 1.0.1,
//! against AWS's documented behaviour and with hostile input — one test per
//! fix, each failing without it.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use shared::model::{ChangeRequest, LOCAL_ACTOR, RetentionPolicy, UploadRequest};
use shared::repository::{DEFAULT_CONTENT_TYPE, metadata_limits};
use shared::{ErrorKind, Version};
use test_support::proxy::{self, Fault, FaultCounts, Faults};
use test_support::{TestStore, alias, name, put_bytes, sha256_hex, to};
use yaml_rust2::{Yaml, YamlLoader};

fn keep(keep_last_n: u32) -> RetentionPolicy {
    RetentionPolicy {
        keep_last_n,
        older_than: Duration::ZERO,
    }
}

/// `app` with versions 1..=n of distinct bytes.
async fn published(store: &TestStore, n: u32) -> shared::ArtifactName {
    let app = name("app");
    for i in 1..=n {
        store.upload(&app, format!("build {i}").as_bytes()).await;
        store
            .repo
            .publish_version(&app, false, LOCAL_ACTOR)
            .await
            .unwrap();
    }
    app
}

fn call(store: &TestStore, method: &str, kwargs: serde_json::Value) -> serde_json::Value {
    store.library(&["call", method, &kwargs.to_string()])
}

/// `app`'s LATEST put and published by the library.
fn library_published(store: &TestStore, content: &str) {
    call(
        store,
        "put_artifact",
        serde_json::json!({"name": "app", "content": content}),
    );
    call(
        store,
        "publish_artifact_version",
        serde_json::json!({"name": "app"}),
    );
}

#[tokio::test]
async fn aliases_named_as_only_the_library_allows_are_listed_protect_their_targets_and_can_be_moved_and_deleted()
 {
    let store = TestStore::new().await;
    let app = published(&store, 3).await;
    for library_name in ["v1.0", "1prod"] {
        call(
            &store,
            "put_alias",
            serde_json::json!({"name": "app", "alias": library_name, "version": 1}),
        );
    }

    let listed = store.repo.list_aliases(&app, None, None).await.unwrap();
    let names: Vec<&str> = listed.items.iter().map(|a| a.alias.as_str()).collect();
    assert_eq!(names, ["1prod", "v1.0"]);
    let refused = store
        .repo
        .delete_version(
            &app,
            Version::Number(1),
            None,
            shared::repository::Allowed::already(),
        )
        .await;
    assert_eq!(refused.unwrap_err().code(), "VersionInUse");
    let report = store
        .repo
        .purge_versions(&app, keep(1), false)
        .await
        .unwrap();
    let deleted: Vec<Version> = report.deleted.iter().map(|a| a.version).collect();
    assert_eq!(
        deleted,
        [Version::Number(2)],
        "1 is kept for its aliases, 3 is the newest"
    );

    assert_eq!(
        store
            .repo
            .get_alias(&app, &alias("v1.0"))
            .await
            .unwrap()
            .version,
        Version::Number(1)
    );
    let moved = store
        .repo
        .put_alias(&app, &alias("v1.0"), to(3), &ChangeRequest::default())
        .await;
    assert_eq!(moved.unwrap().version, Version::Number(3));
    store
        .repo
        .delete_alias(&app, &alias("1prod"), &ChangeRequest::default())
        .await
        .unwrap();
    store
        .repo
        .delete_version(
            &app,
            Version::Number(1),
            None,
            shared::repository::Allowed::already(),
        )
        .await
        .unwrap();
    // New aliases keep the strict rule.
    let created = store
        .repo
        .put_alias(&app, &alias("v2.0"), to(3), &ChangeRequest::default())
        .await;
    assert_eq!(created.unwrap_err().code(), "InvalidAliasName");
}

#[tokio::test]
async fn publishing_an_unchanged_latest_after_the_library_published_it_returns_the_newest_version()
{
    let store = TestStore::new().await;
    let app = name("app");
    library_published(&store, "library build");

    let again = store
        .repo
        .publish_version(&app, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert!(!again.created, "an unchanged LATEST is not published again");
    assert_eq!(again.artifact.version, Version::Number(1));
    let versions = store.repo.list_versions(&app, None, None).await.unwrap();
    assert_eq!(versions.items.len(), 2, "LATEST and 1 only");

    call(
        &store,
        "put_artifact",
        serde_json::json!({"name": "app", "content": "library build 2"}),
    );
    let next = store
        .repo
        .publish_version(&app, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert!(next.created);
    assert_eq!(next.artifact.version, Version::Number(2));
    let same = store
        .repo
        .publish_version(&app, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(
        (same.created, same.artifact.version),
        (false, Version::Number(2))
    );
}

#[tokio::test]
async fn reclaim_keeps_the_bytes_of_a_deleted_version_that_a_library_alias_points_at() {
    let store = TestStore::new().await;
    let app = published(&store, 2).await;
    // The library deletes a version its alias points at.
    call(
        &store,
        "put_alias",
        serde_json::json!({"name": "app", "alias": "prod", "version": 1}),
    );
    call(
        &store,
        "delete_artifact_version",
        serde_json::json!({"name": "app", "version": 1}),
    );

    // The first pass starts the grace period of the library's deletion; the
    // second would reclaim it.
    for _ in 0..2 {
        let report = store.repo.reclaim(&app, Duration::ZERO).await.unwrap();
        assert!(report.reclaimed.is_empty(), "{:?}", report.reclaimed);
    }
    // This service stored them in the blob store.
    let key = store
        .repo
        .layout()
        .blob_key(&app, &test_support::sha256_hex(b"build 1"));
    let head = store
        .s3
        .head_object()
        .bucket(&store.config.bucket)
        .key(&key)
        .send()
        .await;
    assert!(head.is_ok(), "the bytes of version 1 are still there");
}

#[tokio::test]
async fn stale_alias_references_left_by_the_library_do_not_block_delete_or_retention() {
    let store = TestStore::new().await;
    let app = published(&store, 3).await;
    store
        .repo
        .put_alias(&app, &alias("prod"), to(1), &ChangeRequest::default())
        .await
        .unwrap();
    store
        .repo
        .put_alias(&app, &alias("staging"), to(2), &ChangeRequest::default())
        .await
        .unwrap();
    // The library deletes and moves aliases without touching our references.
    call(
        &store,
        "delete_alias",
        serde_json::json!({"name": "app", "alias": "prod"}),
    );
    call(
        &store,
        "put_alias",
        serde_json::json!({"name": "app", "alias": "staging", "version": 3}),
    );

    store
        .repo
        .delete_version(
            &app,
            Version::Number(1),
            None,
            shared::repository::Allowed::already(),
        )
        .await
        .unwrap();
    let report = store
        .repo
        .purge_versions(&app, keep(0), false)
        .await
        .unwrap();
    let deleted: Vec<Version> = report.deleted.iter().map(|a| a.version).collect();
    assert_eq!(deleted, [Version::Number(2)], "3 is staging's, for real");
    let refused = store
        .repo
        .delete_version(
            &app,
            Version::Number(3),
            None,
            shared::repository::Allowed::already(),
        )
        .await;
    assert_eq!(refused.unwrap_err().code(), "VersionInUse");
}

#[tokio::test]
async fn metadata_up_to_the_documented_budget_fits_s3s_2_kib_with_the_longest_name() {
    let store = TestStore::new().await;
    let longest = name(&"n".repeat(shared::ArtifactName::MAX_LEN));
    let declare = |metadata: Vec<(String, String)>| UploadRequest {
        sha256: sha256_hex(b"x"),
        size: 1,
        content_type: None,
        metadata: metadata.into_iter().collect(),
        part_size: None,
        key: None,
    };
    let budget = metadata_limits::USER_BYTES;
    // Entries of at most MAX_ENTRY_BYTES each, the budget in all.
    let half = budget / 2;
    let fits = vec![
        ("k".to_owned(), "v".repeat(half - 1)),
        ("l".to_owned(), "v".repeat(budget - half - 1)),
    ];
    let ticket = store
        .repo
        .create_upload(&longest, declare(fits), LOCAL_ACTOR)
        .await
        .unwrap();
    // What S3 counts: every x-amz-meta-* key (without the prefix) and value.
    let stored: usize = ticket
        .headers
        .iter()
        .flatten()
        .filter_map(|(k, v)| k.strip_prefix("x-amz-meta-").map(|k| k.len() + v.len()))
        .sum();
    assert!(
        stored <= metadata_limits::S3_USER_METADATA_BYTES,
        "{stored} bytes of user metadata would be refused by S3"
    );
    let over = vec![
        ("k".to_owned(), "v".repeat(half - 1)),
        ("l".to_owned(), "v".repeat(budget - half)),
    ];
    let refused = store
        .repo
        .create_upload(&longest, declare(over), LOCAL_ACTOR)
        .await;
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::TooLarge);
    let many: Vec<_> = (0..=metadata_limits::MAX_KEYS)
        .map(|i| (format!("k{i}"), "v".into()))
        .collect();
    let refused = store
        .repo
        .create_upload(&longest, declare(many), LOCAL_ACTOR)
        .await;
    assert_eq!(refused.unwrap_err().code(), "InvalidRequest");
}

// Audit finding (SPEC 4.3, 10.3): one entry longer than a search index key
// may be (1024 bytes on DynamoDB) was taken at upload and failed every
// publish of it with a 502. It is refused at upload; one at the limit
// publishes and is found.
#[tokio::test]
async fn a_metadata_entry_at_its_limit_is_published_and_found_and_a_longer_one_is_refused_up_front()
{
    use shared::model::SearchQuery;
    let store = TestStore::new().await;
    let app = name("app");
    let value = "x".repeat(metadata_limits::MAX_ENTRY_BYTES - 1);
    let version = store
        .publish_with(&app, b"long entry", &[("k", &value)])
        .await;
    let query = SearchQuery::Metadata([("k".to_owned(), value.clone())].into());
    let page = store
        .repo
        .search(&query, None, None, &|_| true)
        .await
        .unwrap();
    let found: Vec<String> = page
        .items
        .iter()
        .map(|h| h.artifact.version.to_string())
        .collect();
    assert_eq!(found, [version.to_string()]);
    let mut over = test_support::declare(b"longer entry");
    over.metadata = [("k".to_owned(), format!("{value}x"))].into();
    let refused = store.repo.create_upload(&app, over, LOCAL_ACTOR).await;
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::TooLarge);
}

#[test]
fn openapi_states_the_metadata_limits_the_code_enforces() {
    let root = test_support::workspace_root();
    let text = std::fs::read_to_string(root.join("openapi.yaml")).unwrap();
    let doc: Yaml = YamlLoader::load_from_str(&text).unwrap().remove(0);
    let schema = &doc["paths"]["/artifacts/{name}/uploads"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"]["properties"]["metadata"];
    assert_eq!(
        schema["maxProperties"].as_i64(),
        Some(metadata_limits::MAX_KEYS as i64)
    );
    let budget = metadata_limits::USER_BYTES.to_string();
    let entry = metadata_limits::MAX_ENTRY_BYTES.to_string();
    for limit in [&budget, &entry] {
        assert!(
            schema["description"].as_str().unwrap().contains(limit),
            "the description states {limit} bytes"
        );
    }
    assert!(
        schema["additionalProperties"]["pattern"]
            .as_str()
            .unwrap()
            .contains(&format!("{{0,{}}}", metadata_limits::MAX_VALUE_LEN))
    );
    assert!(
        schema["propertyNames"]["pattern"]
            .as_str()
            .unwrap()
            .contains(&format!("{{1,{}}}", metadata_limits::MAX_KEY_LEN))
    );
}

#[tokio::test]
async fn an_upload_without_a_content_type_is_signed_over_the_default_one() {
    let store = TestStore::new().await;
    let app = name("app");
    let ticket = store
        .repo
        .create_upload(
            &app,
            UploadRequest {
                sha256: sha256_hex(b"bytes"),
                size: 5,
                content_type: None,
                metadata: Default::default(),
                part_size: None,
                key: None,
            },
            LOCAL_ACTOR,
        )
        .await
        .unwrap();
    assert_eq!(
        ticket
            .headers
            .as_ref()
            .and_then(|h| h.get("content-type"))
            .map(String::as_str),
        Some(DEFAULT_CONTENT_TYPE)
    );
    let signed_headers = ticket
        .url
        .as_deref()
        .unwrap_or_default()
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("X-Amz-SignedHeaders="))
        .unwrap_or_default();
    assert!(
        signed_headers.split("%3B").any(|h| h == "content-type"),
        "content-type is a signed header: {signed_headers}"
    );
    put_bytes(&store.http, &ticket, b"bytes").await;
    let committed = store
        .repo
        .commit_upload(&app, &ticket.upload_id, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(
        committed.artifact.content_type.as_deref(),
        Some(DEFAULT_CONTENT_TYPE)
    );
}

/// A repository whose first `operation` request lands but loses its answer
/// (the SDK then retries it).
async fn losing_first_answer_of(
    store: &TestStore,
    operation: &'static str,
) -> (shared::Repository, Arc<FaultCounts>) {
    let counts = Arc::new(FaultCounts::default());
    let url = proxy::start(
        store.endpoint.clone(),
        Faults::first(operation, Fault::ResetAfter, 1),
        counts.clone(),
    )
    .await;
    (store.repository_via(&url).await, counts)
}

fn answers_lost(counts: &FaultCounts) -> u64 {
    counts
        .reset_after
        .load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test]
async fn a_version_delete_whose_answer_was_lost_answers_as_if_it_had_arrived() {
    let store = TestStore::new().await;
    let app = published(&store, 2).await;
    let (repo, counts) = losing_first_answer_of(&store, "TransactWriteItems").await;
    repo.delete_version(
        &app,
        Version::Number(1),
        None,
        shared::repository::Allowed::already(),
    )
    .await
    .unwrap();
    assert_eq!(answers_lost(&counts), 1, "the fault was injected");
    let gone = store.repo.get_version(&app, Version::Number(1)).await;
    assert_eq!(gone.unwrap_err().code(), "VersionNotFound");
    // A real second delete is still a 404.
    let again = store
        .repo
        .delete_version(
            &app,
            Version::Number(1),
            None,
            shared::repository::Allowed::already(),
        )
        .await;
    assert_eq!(again.unwrap_err().code(), "VersionNotFound");
}

#[tokio::test]
async fn alias_changes_whose_answer_was_lost_apply_once_and_answer_as_if_it_had_arrived() {
    let store = TestStore::new().await;
    let app = published(&store, 2).await;
    let prod = alias("prod");

    let (repo, counts) = losing_first_answer_of(&store, "TransactWriteItems").await;
    let put = repo
        .put_alias(&app, &prod, to(1), &ChangeRequest::default())
        .await
        .unwrap();
    assert_eq!(put.revision, 1);
    assert_eq!(answers_lost(&counts), 1, "the fault was injected");
    let (repo, counts) = losing_first_answer_of(&store, "TransactWriteItems").await;
    repo.delete_alias(&app, &prod, &ChangeRequest::default())
        .await
        .unwrap();
    assert_eq!(answers_lost(&counts), 1, "the fault was injected");

    let history = store
        .repo
        .alias_history(&app, &prod, None, None)
        .await
        .unwrap();
    let revisions: Vec<u64> = history.items.iter().map(|c| c.revision).collect();
    assert_eq!(revisions, [2, 1], "each change recorded exactly once");
}

#[tokio::test]
async fn a_malformed_row_is_an_internal_error_not_an_upstream_one() {
    let store = TestStore::new().await;
    let app = published(&store, 1).await;
    store
        .ddb
        .update_item()
        .table_name(&store.config.table)
        .key("pk", AttributeValue::S("app".into()))
        .key("sk", AttributeValue::S("000001".into()))
        .update_expression("SET update_at = :bad")
        .expression_attribute_values(":bad", AttributeValue::S("not a time".into()))
        .send()
        .await
        .unwrap();
    let error = store
        .repo
        .get_version(&app, Version::Number(1))
        .await
        .unwrap_err();
    assert_eq!(
        (error.kind(), error.code()),
        (ErrorKind::Internal, "Internal")
    );
    let response = shared::http::error_response(&error);
    assert_eq!(response.status().as_u16(), 500);
}

#[tokio::test]
async fn an_alias_change_racing_a_purge_that_removed_latest_fails_and_writes_nothing() {
    let store = TestStore::new().await;
    let app = published(&store, 1).await;
    store
        .repo
        .put_alias(&app, &alias("prod"), to(1), &ChangeRequest::default())
        .await
        .unwrap();
    // A purge deletes LATEST first, then reads and deletes the partitions.
    store
        .ddb
        .delete_item()
        .table_name(&store.config.table)
        .key("pk", AttributeValue::S("app".into()))
        .key("sk", AttributeValue::S("LATEST".into()))
        .send()
        .await
        .unwrap();
    let before = store.raw_items().await.len();
    let moved = store
        .repo
        .put_alias(&app, &alias("staging"), to(1), &ChangeRequest::default())
        .await;
    assert_eq!(moved.unwrap_err().code(), "ArtifactNotFound");
    let deleted = store
        .repo
        .delete_alias(&app, &alias("prod"), &ChangeRequest::default())
        .await;
    assert_eq!(deleted.unwrap_err().code(), "ArtifactNotFound");
    assert_eq!(store.raw_items().await.len(), before, "nothing written");
    store.repo.purge_artifact(&app).await.unwrap();
    assert!(store.raw_items().await.is_empty());
}

// Review finding (SPEC 7.6): the library keeps no publish marker. A push
// of the very bytes its LATEST and newest version hold, with `publish`,
// wrote LATEST with an empty marker ("never published") and published
// them again as a new version, where a publish alone answered the newest.
#[tokio::test]
async fn pushing_and_publishing_the_bytes_the_library_published_returns_its_version() {
    let store = TestStore::new().await;
    let app = name("app");
    library_published(&store, "library build");
    let staged = store.staged(&app, b"library build").await;
    let outcome = store
        .repo
        .commit_pipeline(
            &app,
            &staged.upload_id,
            LOCAL_ACTOR,
            &test_support::pipeline(None, false),
            shared::repository::Allowed::already(),
        )
        .await
        .unwrap();
    let answer = serde_json::to_value(&outcome).unwrap();
    assert_eq!(
        (
            answer["published"]["version"].clone(),
            answer["published"]["created"].clone()
        ),
        (serde_json::json!("1"), serde_json::json!(false)),
        "{answer}"
    );
    let versions = store.repo.list_versions(&app, None, None).await.unwrap();
    assert_eq!(versions.items.len(), 2, "LATEST and 1 only");
    // Bytes the library never published are published as the next one.
    store.upload(&app, b"our build").await;
    let next = store
        .repo
        .publish_version(&app, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(
        (next.created, next.artifact.version),
        (true, Version::Number(2))
    );
}

// Review (publish): an unchanged LATEST answered the version its publish
// marker named, not the newest (SPEC 7.6): after the library published
// the same bytes again (a later number, the counter untouched), a publish
// answered the older one; and after the version the marker named was
// deleted, a publish created another though an older live one held the
// bytes.
#[tokio::test]
async fn publishing_an_unchanged_latest_answers_the_newest_live_version_holding_its_bytes() {
    let store = TestStore::new().await;
    let app = name("app");
    store.upload(&app, b"build").await;
    let first = store
        .repo
        .publish_version(&app, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(first.artifact.version, Version::Number(1));
    // The library publishes LATEST again (once the mirror wrote its
    // layout): version 2, the same bytes.
    store.drain_mirror().await;
    call(
        &store,
        "publish_artifact_version",
        serde_json::json!({"name": "app"}),
    );
    let again = store
        .repo
        .publish_version(&app, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(
        (again.artifact.version, again.created),
        (Version::Number(2), false)
    );

    // Forced: 3; deleted: the newest live one holding the bytes is 2.
    let forced = store
        .repo
        .publish_version(&app, true, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(forced.artifact.version, Version::Number(3));
    store
        .repo
        .delete_version(
            &app,
            Version::Number(3),
            None,
            shared::repository::Allowed::already(),
        )
        .await
        .unwrap();
    let after_delete = store
        .repo
        .publish_version(&app, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(
        (after_delete.artifact.version, after_delete.created),
        (Version::Number(2), false)
    );
}

// Review (aliases): every row the library writes is at revision 0, so its
// ETag was "0" whatever it held, and `If-Match: "0"` sent after reading
// one library state overwrote the next (SPEC 7.13). A library row's ETag
// is now `"0.<micros it was written at>"`, and a change under it holds
// only while the row is that one. Rollout starts and canary pipelines
// keep the row they read the same way.
#[tokio::test]
async fn if_match_on_a_library_alias_never_overwrites_a_later_library_write() {
    use shared::model::{Precondition, alias_etag};
    let store = TestStore::new().await;
    let app = name("app");
    for content in ["one", "two", "three"] {
        library_published(&store, content);
    }
    call(
        &store,
        "put_alias",
        serde_json::json!({"name": "app", "alias": "prod", "version": 1}),
    );
    let read = store.repo.get_alias(&app, &alias("prod")).await.unwrap();
    assert_eq!(read.revision, 0);
    let etag = alias_etag(read.revision, read.update_at);
    assert!(etag.starts_with("\"0."), "{etag}");
    // The library moves it again after our read.
    call(
        &store,
        "put_alias",
        serde_json::json!({"name": "app", "alias": "prod", "version": 2}),
    );
    let stale = ChangeRequest {
        precondition: Precondition::as_read(None, read.update_at),
        ..ChangeRequest::default()
    };
    let refused = store
        .repo
        .put_alias(&app, &alias("prod"), to(3), &stale)
        .await;
    assert!(
        matches!(refused, Err(shared::Error::AliasModified { .. })),
        "{refused:?}"
    );
    let now = store.repo.get_alias(&app, &alias("prod")).await.unwrap();
    assert_eq!(now.version, Version::Number(2));
    // Under the row as it is now, the move lands.
    let fresh = ChangeRequest {
        precondition: Precondition::as_read(None, now.update_at),
        ..ChangeRequest::default()
    };
    let moved = store
        .repo
        .put_alias(&app, &alias("prod"), to(3), &fresh)
        .await
        .unwrap();
    assert_eq!(moved.version, Version::Number(3));
}

/// The library's `delete_artifact_version` is an UpdateItem without a
/// condition: on a version (or a LATEST) that does not exist it creates a
/// bare row, `{pk, sk, is_deleted: true}`, without `update_at` or `sha256`.
/// Such a row is a deleted version (it still holds its number), never a
/// 500: reads of it are 404, and retention, publish and commit go on.
#[tokio::test]
async fn a_bare_deleted_row_the_library_left_reads_as_deleted_not_as_an_error() {
    let store = TestStore::new().await;
    let app = published(&store, 2).await;
    call(
        &store,
        "delete_artifact_version",
        serde_json::json!({"name": "app", "version": 9}),
    );
    fn kind<T>(r: Result<T, shared::Error>) -> Result<(), ErrorKind> {
        r.map(drop).map_err(|e| e.kind())
    }
    assert_eq!(
        kind(store.repo.get_version(&app, Version::Number(9)).await),
        Err(ErrorKind::NotFound)
    );
    assert_eq!(
        kind(
            store
                .repo
                .delete_version(
                    &app,
                    Version::Number(9),
                    None,
                    shared::repository::Allowed::already()
                )
                .await
        ),
        Err(ErrorKind::NotFound)
    );
    assert_eq!(
        kind(
            store
                .repo
                .put_alias(&app, &alias("prod"), to(9), &ChangeRequest::default())
                .await
        ),
        Err(ErrorKind::NotFound)
    );
    let report = store
        .repo
        .purge_versions(&app, keep(1), false)
        .await
        .unwrap();
    assert_eq!(report.deleted.len(), 1, "{report:?}");
    store.upload(&app, b"build 3").await;
    let next = store
        .repo
        .publish_version(&app, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert!(next.created);

    // A bare LATEST (a delete of LATEST under a name with no rows).
    call(
        &store,
        "delete_artifact_version",
        serde_json::json!({"name": "ghost"}),
    );
    let ghost = name("ghost");
    assert_eq!(
        kind(store.repo.get_version(&ghost, Version::Latest).await),
        Err(ErrorKind::NotFound)
    );
    store.upload(&ghost, b"first ghost").await;
    let first = store
        .repo
        .publish_version(&ghost, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(first.artifact.version, Version::Number(1));
}

/// A version the library was asked to delete under a sort key that is no
/// number (`delete_artifact_version(name, "1.2.3")` writes `01.2.3`, which
/// sorts above every six-digit version) hid the highest number: a publish
/// over a LATEST without a counter took 1 again and kept conflicting.
#[tokio::test]
async fn a_sort_key_that_is_no_number_never_hides_the_highest_version() {
    let store = TestStore::new().await;
    let app = published(&store, 2).await;
    call(
        &store,
        "delete_artifact_version",
        serde_json::json!({"name": "app", "version": "1.2.3"}),
    );
    // The library's put drops this service's counter from LATEST.
    call(
        &store,
        "put_artifact",
        serde_json::json!({"name": "app", "content": "build 3"}),
    );
    let next = tokio::time::timeout(
        Duration::from_secs(60),
        store.repo.publish_version(&app, false, LOCAL_ACTOR),
    )
    .await
    .expect("the publish kept conflicting")
    .unwrap();
    assert_eq!(next.artifact.version, Version::Number(3));
}

// Review finding (SPEC 4.2, 7.14): the library moves an alias without
// history or revision, so a rollback, which undoes the last change on
// condition that the alias is still at the revision of its newest entry,
// was refused (409) for good: that condition could never hold again. The
// library's move is the last change; undone, the alias goes back to where
// this service's last change left it.
#[tokio::test]
async fn a_rollback_after_the_library_moved_the_alias_undoes_the_librarys_move() {
    let store = TestStore::new().await;
    let app = published(&store, 3).await;
    let prod = alias("prod");
    for version in [1, 2] {
        store
            .repo
            .put_alias(&app, &prod, to(version), &ChangeRequest::default())
            .await
            .unwrap();
    }
    call(
        &store,
        "put_alias",
        serde_json::json!({"name": "app", "alias": "prod", "version": 3}),
    );
    let back = store
        .repo
        .rollback_alias(&app, &prod, None, &ChangeRequest::default())
        .await
        .unwrap();
    assert_eq!((back.version, back.revision), (Version::Number(2), 3));
    let history = store
        .repo
        .alias_history(&app, &prod, None, None)
        .await
        .unwrap();
    let newest = &history.items[0];
    assert_eq!(newest.action.as_str(), "rollback");
    assert_eq!(
        newest.previous.as_ref().map(|p| p.version),
        Some(Version::Number(3)),
        "what the library had set"
    );
    // The rollback is this service's change again: the next one undoes it.
    let again = store
        .repo
        .rollback_alias(&app, &prod, None, &ChangeRequest::default())
        .await
        .unwrap();
    assert_eq!((again.version, again.revision), (Version::Number(3), 4));
}
