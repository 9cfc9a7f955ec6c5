//! The scheduled retention job over 200 artifacts with an artificially short
//! time budget: every pass stops early, the next resumes after it, each
//! artifact is handled exactly once, and nothing protected is touched.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use shared::model::{AliasTarget, RetentionPolicy};
use shared::scheduled::{RetentionSchedule, handle_event, run_retention};
use shared::{ArtifactName, Version};
use test_support::{TestStore, name, upload_with, workspace_root};

const ARTIFACTS: usize = 200;

fn artifact(i: usize) -> ArtifactName {
    name(&format!("svc-{i:03}"))
}

/// Each artifact: versions 1..=3 of one upload; every 10th has `prod` → 1.
async fn seed(store: &Arc<TestStore>) {
    futures::stream::iter(0..ARTIFACTS)
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
                    store.repo.publish_version(&n, true).await.unwrap();
                }
                if i % 10 == 0 {
                    let prod = AliasTarget {
                        version: Version::Number(1),
                        secondary: None,
                    };
                    store
                        .repo
                        .put_alias(&n, &"prod".parse().unwrap(), prod)
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
        "a 300 ms budget cannot cover 200 artifacts"
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
        store.repo.retention_cursor().await.unwrap(),
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
