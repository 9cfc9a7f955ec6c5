//! The scheduled retention job: over 50 artifacts with an artificially
//! short time budget every pass stops early, the next resumes after it, each
//! artifact is handled exactly once, and nothing protected is touched; a
//! failing artifact does not stop the job; stray entries do not stall it;
//! passes never overlap. Also the retention route's defaults, which are the
//! schedule's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_dynamodb::types::AttributeValue;
use futures::StreamExt;
use lambda_http::RequestExt;
use shared::model::{AliasTarget, ChangeRequest, LOCAL_ACTOR, RetentionPolicy};
use shared::scheduled::{Pass, RetentionSchedule, handle_event, run_pass, run_retention};
use shared::{ArtifactName, Config, Repository, Version};
use test_support::{TestStore, name, upload_with, workspace_root};

const ARTIFACTS: usize = 50;

fn artifact(i: usize) -> ArtifactName {
    name(&format!("svc-{i:03}"))
}

/// Each artifact: versions 1..=3 of one upload; every 10th has `prod` → 1.
async fn seed(store: &Arc<TestStore>) {
    seed_n(store, ARTIFACTS).await
}

async fn seed_n(store: &Arc<TestStore>, artifacts: usize) {
    futures::stream::iter(0..artifacts)
        .for_each_concurrent(8, |i| {
            let store = store.clone();
            async move {
                let n = artifact(i);
                upload_with(
                    &store.repo,
                    &store.http,
                    &n,
                    format!("content {i}").as_bytes(),
                )
                .await;
                for _ in 0..3 {
                    store
                        .repo
                        .publish_version(&n, true, LOCAL_ACTOR)
                        .await
                        .unwrap();
                }
                if i % 10 == 0 {
                    let prod = AliasTarget {
                        version: Version::Number(1),
                        secondary: None,
                    };
                    store
                        .repo
                        .put_alias(
                            &n,
                            &"prod".parse().unwrap(),
                            prod,
                            &ChangeRequest::default(),
                        )
                        .await
                        .unwrap();
                }
            }
        })
        .await;
}

fn immediate() -> RetentionSchedule {
    RetentionSchedule {
        policy: RetentionPolicy {
            keep_last_n: 1,
            older_than: Duration::ZERO,
        },
        reclaim_grace: Duration::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_budget_stops_early_and_the_next_pass_resumes_until_every_artifact_is_done() {
    let store = Arc::new(TestStore::new().await);
    seed(&store).await;

    let mut passes = Vec::new();
    loop {
        let summary = run_retention(
            &store.repo,
            immediate(),
            Instant::now() + Duration::from_millis(300),
        )
        .await
        .unwrap();
        let done = summary.completed;
        passes.push(summary);
        if done {
            break;
        }
        assert!(passes.len() < 500, "no progress");
    }
    assert!(
        passes.len() >= 2,
        "a 300 ms budget cannot cover 50 artifacts"
    );
    for pair in passes.windows(2) {
        assert_eq!(
            pair[1].resumed_from, pair[0].stopped_after,
            "each pass resumes where the last stopped"
        );
    }
    assert_eq!(passes[0].resumed_from, None);
    let scanned: u64 = passes.iter().map(|p| p.artifacts_scanned).sum();
    assert_eq!(scanned, ARTIFACTS as u64, "every artifact exactly once");
    let deleted: u64 = passes.iter().map(|p| p.versions_soft_deleted).sum();
    let reclaimed: u64 = passes.iter().map(|p| p.objects_reclaimed).sum();
    let protected = ARTIFACTS / 10;
    assert_eq!(deleted, (ARTIFACTS * 2 - protected) as u64);
    assert_eq!(reclaimed, deleted);
    assert_eq!(
        store.repo.retention_bookkeeping().await.unwrap().after,
        None,
        "a complete pass clears its cursor"
    );

    for i in 0..ARTIFACTS {
        let n = artifact(i);
        let live: Vec<String> = store
            .repo
            .list_versions(&n, None, None)
            .await
            .unwrap()
            .items
            .iter()
            .map(|a| a.version.to_string())
            .collect();
        let expected: &[&str] = if i % 10 == 0 {
            &["LATEST", "3", "1"]
        } else {
            &["LATEST", "3"]
        };
        assert_eq!(live, expected, "{n}");
        if i % 10 == 0 {
            let v1 = store
                .repo
                .get_version(&n, Version::Number(1))
                .await
                .unwrap();
            assert_eq!(
                store.download(v1.download_url.as_deref().unwrap()).await,
                format!("content {i}").as_bytes()
            );
        }
        let key = format!("versioned-artifacts/{n}/000002");
        let objects = store
            .s3
            .list_object_versions()
            .bucket(&store.config.bucket)
            .prefix(&key)
            .send()
            .await
            .unwrap();
        assert!(objects.versions().is_empty(), "{key} reclaimed");
    }
}

#[tokio::test]
async fn the_eventbridge_event_file_runs_through_the_handler() {
    let store = TestStore::new().await;
    store.upload(&name("app"), b"x").await;
    let text =
        std::fs::read_to_string(workspace_root().join("events/scheduled-purge.json")).unwrap();
    let payload = serde_json::from_str(&text).unwrap();
    let mut context = lambda_runtime::Context::default();
    let in_a_minute = std::time::SystemTime::now() + Duration::from_secs(60);
    context.deadline = in_a_minute
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let summary = handle_event(
        &store.repo,
        immediate(),
        lambda_runtime::LambdaEvent::new(payload, context),
    )
    .await
    .unwrap();
    assert!(summary.completed);
    assert_eq!(summary.artifacts_scanned, 1);
    let json = serde_json::to_value(&summary).unwrap();
    for field in [
        "artifacts_scanned",
        "versions_soft_deleted",
        "objects_reclaimed",
        "resumed_from",
        "skipped",
        "failed",
    ] {
        assert!(json.get(field).is_some(), "summary has {field}");
    }
}

#[test]
fn the_schedule_reads_its_policy_from_the_environment_and_refuses_nonsense() {
    let schedule = RetentionSchedule::from_lookup(|k| match k {
        "RETENTION_KEEP_LAST_N" => Some("3".into()),
        "RETENTION_PURGE_OLDER_THAN_DAYS" => Some("7".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(schedule.policy.keep_last_n, 3);
    assert_eq!(schedule.policy.older_than, Duration::from_secs(7 * 86_400));
    assert_eq!(schedule.reclaim_grace, Duration::from_secs(30 * 86_400));
    let err = RetentionSchedule::from_lookup(|k| {
        (k == "RETENTION_RECLAIM_GRACE_DAYS").then(|| "soon".into())
    })
    .unwrap_err();
    assert!(err.to_string().contains("RETENTION_RECLAIM_GRACE_DAYS"));
}

/// The live versions of an artifact, as listed.
async fn live(repo: &Repository, n: &ArtifactName) -> Vec<String> {
    repo.list_versions(n, None, None)
        .await
        .unwrap_or_else(|e| panic!("{n}: {e:?}"))
        .items
        .iter()
        .map(|a| a.version.to_string())
        .collect()
}

/// What `seed` leaves after retention keeping the newest version.
fn retained(i: usize) -> &'static [&'static str] {
    if i.is_multiple_of(10) {
        &["LATEST", "3", "1"]
    } else {
        &["LATEST", "3"]
    }
}

fn a_minute() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

/// Sets `update_at` of one version row, bypassing the repository.
async fn write_update_at(store: &TestStore, n: &ArtifactName, version: u32, value: &str) {
    store
        .ddb
        .update_item()
        .table_name(&store.config.table)
        .key("pk", AttributeValue::S(n.to_string()))
        .key("sk", AttributeValue::S(Version::Number(version).sort_key()))
        .update_expression("SET update_at = :v")
        .expression_attribute_values(":v", AttributeValue::S(value.into()))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_artifact_that_fails_is_reported_the_pass_goes_on_and_the_next_pass_retries_it_first() {
    // GIVEN 12 artifacts, the 6th with a malformed version row
    let store = Arc::new(TestStore::new().await);
    let total = 12;
    seed_n(&store, total).await;
    let broken = artifact(5);
    write_update_at(&store, &broken, 2, "garbage").await;

    // WHEN a pass runs: it completes, names the failed artifact, and
    // purges the artifacts after it
    let first = run_retention(&store.repo, immediate(), a_minute())
        .await
        .unwrap();
    assert!(first.completed, "{first:?}");
    assert_eq!(first.artifacts_scanned, total as u64);
    let failed: Vec<&str> = first.failed.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(failed, [broken.as_str()]);
    assert_eq!(
        first.failed[0].code, "Internal",
        "a malformed row is our bug"
    );
    assert_eq!(first.failed_total, 1);
    for i in 6..total {
        assert_eq!(live(&store.repo, &artifact(i)).await, retained(i));
    }
    assert_eq!(
        store.repo.retention_bookkeeping().await.unwrap().failed,
        [broken.to_string()],
        "kept for the next pass"
    );

    // THEN the next pass tries it first (and not twice), still failing
    let second = run_retention(&store.repo, immediate(), a_minute())
        .await
        .unwrap();
    assert_eq!(second.retried, [broken.to_string()]);
    assert_eq!(second.failed.len(), 1);
    assert_eq!(second.artifacts_scanned, total as u64, "each exactly once");

    // AND once the row is repaired, the retry succeeds and nothing is left
    let valid = shared::layout::format_update_at(shared::layout::now());
    write_update_at(&store, &broken, 2, &valid).await;
    let third = run_retention(&store.repo, immediate(), a_minute())
        .await
        .unwrap();
    assert_eq!(third.retried, [broken.to_string()]);
    assert!(third.failed.is_empty(), "{third:?}");
    assert_eq!(live(&store.repo, &broken).await, ["LATEST", "3"]);
    let fourth = run_retention(&store.repo, immediate(), a_minute())
        .await
        .unwrap();
    assert!(fourth.retried.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_without_a_valid_artifact_name_still_advance_the_pass() {
    // GIVEN pages of entries that are no artifact (objects right under the
    // prefix, "directories" whose names only the library allows) before and
    // after the artifacts
    let store = Arc::new(TestStore::new().await);
    seed_n(&store, 3).await;
    let prefix = &store.config.prefix;
    let mut stray: Vec<String> = Vec::new();
    for i in 0..3 {
        stray.push(format!("{prefix}/.hidden-{i}/x"));
        stray.push(format!("{prefix}/A-stray-{i}.txt"));
        stray.push(format!("{prefix}/_x{i}/x"));
        stray.push(format!("{prefix}/a..b{i}/x"));
    }
    stray.push(format!("{prefix}/zz-stray.txt"));
    for key in &stray {
        store
            .s3
            .put_object()
            .bucket(&store.config.bucket)
            .key(key)
            .body(b"stray".to_vec().into())
            .send()
            .await
            .unwrap();
    }

    // WHEN a pass lists two entries per page
    let pass = Pass::until(a_minute()).with_page_size(2);
    let summary = tokio::time::timeout(
        Duration::from_secs(60),
        run_pass(&store.repo, immediate(), pass),
    )
    .await
    .expect("the pass re-lists the same page forever")
    .unwrap();

    // THEN it completes and purges every artifact
    assert!(summary.completed, "{summary:?}");
    assert_eq!(summary.artifacts_scanned, 3);
    for i in 0..3 {
        assert_eq!(live(&store.repo, &artifact(i)).await, retained(i));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_passes_started_together_exactly_one_runs_and_the_other_is_skipped() {
    let store = Arc::new(TestStore::new().await);
    seed_n(&store, 10).await;
    let other = store.another_repository();
    let (a, b) = tokio::join!(
        run_retention(&store.repo, immediate(), a_minute()),
        run_retention(&other, immediate(), a_minute()),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.skipped != b.skipped, "exactly one skipped: {a:?} {b:?}");
    let (ran, skipped) = if a.skipped { (b, a) } else { (a, b) };
    assert!(ran.completed);
    assert_eq!(ran.artifacts_scanned, 10);
    assert_eq!(skipped.artifacts_scanned, 0);
    assert!(!skipped.completed);

    let json = serde_json::to_value(&skipped).unwrap();
    assert_eq!(json["skipped"], true);

    let after = run_retention(&other, immediate(), a_minute())
        .await
        .unwrap();
    assert!(!after.skipped, "the lease is released at the end of a pass");
}

#[tokio::test]
async fn a_held_lease_skips_the_pass_until_it_expires_and_then_is_taken_over() {
    let store = TestStore::new().await;
    store.upload(&name("app"), b"x").await;
    let in_an_hour = SystemTime::now() + Duration::from_secs(3600);
    assert!(
        store
            .repo
            .take_retention_lease("crashed-pass", in_an_hour)
            .await
            .unwrap()
            .is_some()
    );
    let summary = run_retention(&store.repo, immediate(), a_minute())
        .await
        .unwrap();
    assert!(summary.skipped);
    assert_eq!(summary.artifacts_scanned, 0);

    // The crashed pass's lease runs out.
    let a_second_ago = SystemTime::now() - Duration::from_secs(1);
    store
        .repo
        .take_retention_lease("crashed-pass", a_second_ago)
        .await
        .unwrap()
        .unwrap();
    let summary = run_retention(&store.repo, immediate(), a_minute())
        .await
        .unwrap();
    assert!(!summary.skipped, "an expired lease is taken over");
    assert!(summary.completed);
    assert_eq!(summary.artifacts_scanned, 1);
}

fn purge_request(n: &ArtifactName, body: &str) -> lambda_http::Request {
    lambda_http::http::Request::builder()
        .method("POST")
        .uri(format!("/artifacts/{n}/purge"))
        .body(lambda_http::Body::Text(body.into()))
        .unwrap()
        .with_path_parameters(HashMap::from([("name".to_string(), n.to_string())]))
}

async fn deleted_by_route(repo: &Repository, n: &ArtifactName) -> Vec<String> {
    let response = shared::api::apply_retention(repo, &purge_request(n, "{}"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    body["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["version"].to_string())
        .collect()
}

#[tokio::test]
async fn the_retention_route_takes_its_defaults_from_the_deployments_retention_parameters() {
    let store = TestStore::new().await;
    let n = name("app");
    store.upload(&n, b"x").await;
    for _ in 0..3 {
        store
            .repo
            .publish_version(&n, true, LOCAL_ACTOR)
            .await
            .unwrap();
    }

    // Unset: 10 versions and 90 days, so nothing this young goes.
    assert_eq!(store.repo.retention().policy, RetentionPolicy::default());
    assert_eq!(
        RetentionPolicy::default(),
        RetentionPolicy {
            keep_last_n: 10,
            older_than: Duration::from_secs(90 * 86_400),
        }
    );
    assert!(deleted_by_route(&store.repo, &n).await.is_empty());

    // Keep 1, whatever its age: all but the newest go.
    let config = Config::from_lookup(|k| match k {
        "BUCKET_NAME" => Some(store.config.bucket.clone()),
        "TABLE_NAME" => Some(store.config.table.clone()),
        "RETENTION_KEEP_LAST_N" => Some("1".into()),
        "RETENTION_PURGE_OLDER_THAN_DAYS" => Some("0".into()),
        _ => None,
    })
    .unwrap();
    let repo = Repository::new(&store.sdk, &config);
    assert_eq!(deleted_by_route(&repo, &n).await.len(), 2);
    assert_eq!(live(&repo, &n).await, ["LATEST", "3"]);
}

/// Review (retention): the pass visited only names with rows (the
/// registry, the library's directories), and left a name without rows at
/// once. Bytes uploaded under a name never committed (or left by a purge
/// stopped after the rows went) stayed for ever (SPEC 7.8). The pass now
/// also visits the names under the blob root, and reclaims bytes no row
/// and no live upload holds wherever no row is left.
#[tokio::test]
async fn bytes_under_a_name_with_no_rows_are_reclaimed_and_a_live_uploads_are_kept() {
    let store = TestStore::new().await;
    let abandoned = name("never-committed");
    let ticket = store.staged(&abandoned, b"bytes nobody committed").await;
    // Its upload row went (expired: DynamoDB's TTL deletes it).
    store
        .delete_raw_key(&shared::layout::upload_pk(&abandoned), &ticket.upload_id)
        .await;
    let pending = name("still-uploading");
    store
        .staged(&pending, b"bytes of an upload in progress")
        .await;

    let summary = run_pass(&store.repo, immediate(), Pass::until(a_minute()))
        .await
        .unwrap();
    assert!(summary.completed, "{summary:?}");
    let blob = |n: &ArtifactName, content: &[u8]| {
        store
            .repo
            .layout()
            .blob_key(n, &test_support::sha256_hex(content))
    };
    let exists = |key: String| async {
        store
            .s3
            .head_object()
            .bucket(&store.config.bucket)
            .key(key)
            .send()
            .await
            .is_ok()
    };
    assert!(!exists(blob(&abandoned, b"bytes nobody committed")).await);
    assert!(exists(blob(&pending, b"bytes of an upload in progress")).await);
    // Neither name is listed as an artifact.
    let names = store
        .repo
        .list_artifact_names(None, None, &|_| true)
        .await
        .unwrap();
    assert!(names.items.is_empty(), "{names:?}");
}

/// Where a purge stopped: its fence up (not renewed for long), LATEST and
/// version 1 of `n` (which held versions 1 and 2) deleted.
async fn purge_stopped_part_way(store: &TestStore, n: &ArtifactName) {
    store
        .put_raw_key(&shared::layout::fence_pk(n), shared::layout::FENCE_SK)
        .await;
    store
        .ddb
        .update_item()
        .table_name(&store.config.table)
        .key("pk", AttributeValue::S(shared::layout::fence_pk(n)))
        .key("sk", AttributeValue::S(shared::layout::FENCE_SK.into()))
        .update_expression("SET purge_id = :id, started_at = :long_ago")
        .expression_attribute_values(":id", AttributeValue::S("crashed".into()))
        .expression_attribute_values(":long_ago", AttributeValue::N("0".into()))
        .send()
        .await
        .unwrap();
    for sk in ["LATEST", "000001"] {
        store.delete_raw_key(&n.to_string(), sk).await;
    }
}

/// Review (purge): a purge that stopped part-way (its Lambda timed out
/// after LATEST and some rows went) was finished only if someone sent the
/// DELETE again; its rows stayed visible (SPEC 7.5, 7.16). The scheduled
/// pass finishes it once its fence has lapsed or was handed over.
#[tokio::test]
async fn the_pass_finishes_a_purge_that_stopped_part_way() {
    let store = TestStore::new().await;
    let n = name("half-gone");
    store.publish_each(&n, &[b"one", b"two"]).await;
    purge_stopped_part_way(&store, &n).await;

    let summary = run_pass(&store.repo, immediate(), Pass::until(a_minute()))
        .await
        .unwrap();
    assert_eq!(summary.purges_finished, 1, "{summary:?}");
    let left = store.raw_items().await;
    assert!(
        left.iter().all(|item| {
            let pk = item["pk"].as_s().unwrap();
            !pk.contains("half-gone")
        }),
        "{left:?}"
    );
    let objects = store
        .s3
        .list_object_versions()
        .bucket(&store.config.bucket)
        .send()
        .await
        .unwrap();
    assert!(objects.versions().is_empty(), "{objects:?}");
}

/// Review of the above: a fence left by a purge that stopped lapses, and
/// writers come back (an upload starts once it is stale). The pass must
/// not finish that purge over their writes (SPEC 7.10: the writers won):
/// it takes the fence, finds the upload, and lowers it again.
#[tokio::test]
async fn the_pass_leaves_a_stopped_purge_whose_artifact_writers_came_back_to() {
    let store = TestStore::new().await;
    let n = name("came-back");
    store.publish_each(&n, &[b"one", b"two"]).await;
    purge_stopped_part_way(&store, &n).await;
    let ticket = store.staged(&n, b"written after the fence lapsed").await;

    let summary = run_pass(&store.repo, immediate(), Pass::until(a_minute()))
        .await
        .unwrap();
    assert_eq!(summary.purges_finished, 0, "{summary:?}");
    let fence = store
        .raw_item(&shared::layout::fence_pk(&n), shared::layout::FENCE_SK)
        .await;
    assert!(fence.is_none(), "{fence:?}");
    store
        .repo
        .commit_upload(&n, &ticket.upload_id, LOCAL_ACTOR)
        .await
        .unwrap();
    let published = store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(published.artifact.version, Version::Number(3));
}

/// The library's purge deletes its rows, alias rows and objects, and
/// nothing of this service's: the registry row kept the name listed for
/// ever (every route of it a 404), and its history, blobs and records
/// stayed. The pass finishes that purge as it finishes one of its own.
#[tokio::test]
async fn the_pass_finishes_what_a_library_purge_left() {
    let store = TestStore::new().await;
    let n = name("library-gone");
    store.publish_each(&n, &[b"one", b"two"]).await;
    store
        .repo
        .put_alias(
            &n,
            &test_support::alias("prod"),
            test_support::to(1),
            &ChangeRequest::default(),
        )
        .await
        .unwrap();
    store.drain_mirror().await;
    store.library(&[
        "call",
        "purge_artifact",
        &serde_json::json!({"name": "library-gone"}).to_string(),
    ]);
    let listed = || async {
        store
            .repo
            .list_artifact_names(Some(1000), None, &|_| true)
            .await
            .unwrap()
            .items
            .iter()
            .any(|a| a.as_str() == "library-gone")
    };
    assert!(listed().await, "the registry lists it");
    // The purge keeps the library's object versions (its delete markers
    // here) of the second its rows go, as a racing library put's (the
    // emulator lists a prefix holding only delete markers).
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let summary = run_pass(&store.repo, immediate(), Pass::until(a_minute()))
        .await
        .unwrap();
    assert_eq!(summary.purges_finished, 1, "{summary:?}");
    assert!(!listed().await);
    let left = store.raw_items().await;
    assert!(
        left.iter()
            .all(|item| !item["pk"].as_s().unwrap().contains("library-gone")),
        "{left:?}"
    );
}

/// Writers back after the library's purge (the name registered, no LATEST,
/// no fence): an upload in progress tells the pass there is no purge to
/// finish before it puts a fence, which would refuse the upload's writers
/// (409) while it stood.
#[tokio::test]
async fn the_pass_puts_no_fence_over_an_upload_after_a_library_purge() {
    use test_support::proxy::{Action, Plan, Recorded, Rule};
    let store = TestStore::new().await;
    let n = name("first-upload");
    store.publish_each(&n, &[b"before the purge"]).await;
    // What the library's purge leaves of this service's: LATEST gone, the
    // registry row there.
    store.delete_raw_key("first-upload", "LATEST").await;
    let ticket = store.staged(&n, b"the first bytes").await;
    let plan = Plan::new();
    let fence = plan.add(Rule::new(
        "PutItem",
        Some("__first-upload-purge"),
        Action::Record(Recorded::new()),
        u64::MAX,
    ));
    let repo = store.through(&plan).await;

    let summary = run_pass(&repo, immediate(), Pass::until(a_minute()))
        .await
        .unwrap();
    assert_eq!(summary.purges_finished, 0, "{summary:?}");
    assert_eq!(
        fence.hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a fence was put over the upload"
    );
    store
        .repo
        .commit_upload(&n, &ticket.upload_id, LOCAL_ACTOR)
        .await
        .unwrap();
}

/// Review of the above: the library writes its artifact again while the
/// pass finishes what its purge left (it knows no fence). Its LATEST,
/// written after the pass found none, and its object stay: the pass
/// stops there (SPEC 7.10: the writers won), and tries again only when
/// LATEST is gone again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_write_during_the_finish_of_its_purge_stays() {
    let store = TestStore::new().await;
    let n = name("library-back");
    store.publish_each(&n, &[b"one", b"two"]).await;
    store.drain_mirror().await;
    store.library(&[
        "call",
        "purge_artifact",
        &serde_json::json!({"name": "library-back"}).to_string(),
    ]);
    // See the_pass_finishes_what_a_library_purge_left.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The pass stops at its first fence renewal, after its check found no
    // LATEST; the library writes meanwhile.
    let (repo, gate) = store
        .held_before("UpdateItem", Some("__library-back-purge"))
        .await;
    let pass =
        tokio::spawn(async move { run_pass(&repo, immediate(), Pass::until(a_minute())).await });
    gate.arrived().await;
    store.library(&[
        "call",
        "put_artifact",
        &serde_json::json!({"name": "library-back", "content": "the library is back"}).to_string(),
    ]);
    gate.open();
    let summary = pass.await.unwrap().unwrap();
    assert_eq!(summary.purges_finished, 0, "{summary:?}");
    let read = store.library(&["read", "library-back"]);
    let latest = read["content"]["LATEST"]
        .as_str()
        .map(|b| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).unwrap());
    assert_eq!(
        latest.as_deref(),
        Some(&b"the library is back"[..]),
        "{read}"
    );
    let fence = store
        .raw_item(&shared::layout::fence_pk(&n), shared::layout::FENCE_SK)
        .await;
    assert!(fence.is_none(), "{fence:?}");
}
