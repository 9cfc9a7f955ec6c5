//! SPEC 7 under real parallel requests against the emulator. Every task uses
//! its own `Repository` (its own SDK clients), like separate Lambda instances.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::join_all;
use shared::model::{AliasTarget, ChangeRequest, LOCAL_ACTOR};
use shared::{Error, Version};
use test_support::{TestStore, alias, name, sha256_hex, upload_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn parallel_publishes_yield_distinct_consecutive_versions() {
    let store = Arc::new(TestStore::new().await);
    let n = name("race");
    store.upload(&n, b"content").await;
    let tasks = (0..64).map(|_| {
        let repo = store.another_repository();
        let n = n.clone();
        tokio::spawn(async move { repo.publish_version(&n, true, LOCAL_ACTOR).await })
    });
    let mut numbers: Vec<u32> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| match r.unwrap().unwrap().artifact.version {
            Version::Number(n) => n,
            Version::Latest => panic!("publish returned LATEST"),
        })
        .collect();
    numbers.sort();
    assert_eq!(
        numbers,
        (1..=64).collect::<Vec<_>>(),
        "every publish got its own number, none lost"
    );
    let listed = store
        .repo
        .list_versions(&n, Some(1000), None)
        .await
        .unwrap();
    assert_eq!(
        listed.items.len(),
        65,
        "LATEST + 64 versions, none overwritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn parallel_publishes_of_an_unchanged_latest_create_one_version() {
    let store = Arc::new(TestStore::new().await);
    let n = name("same");
    store.upload(&n, b"content").await;
    let tasks = (0..32).map(|_| {
        let repo = store.another_repository();
        let n = n.clone();
        tokio::spawn(async move { repo.publish_version(&n, false, LOCAL_ACTOR).await })
    });
    let results: Vec<_> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert_eq!(results.iter().filter(|p| p.created).count(), 1);
    assert!(
        results
            .iter()
            .all(|p| p.artifact.version == Version::Number(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn versions_serve_their_recorded_bytes_while_latest_is_overwritten() {
    let store = Arc::new(TestStore::new().await);
    let n = name("torn");
    store.upload(&n, b"seed").await;
    // 32 pipelines each commit then publish; 32 more publish at any moment.
    let mut tasks = Vec::new();
    for i in 0..32 {
        let repo = store.another_repository();
        let http = store.http.clone();
        let n2 = n.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!("build {i} ").repeat(100 + i);
            upload_with(&repo, &http, &n2, body.as_bytes()).await;
            repo.publish_version(&n2, false, LOCAL_ACTOR).await.unwrap();
        }));
        let repo = store.another_repository();
        let n2 = n.clone();
        tasks.push(tokio::spawn(async move {
            repo.publish_version(&n2, false, LOCAL_ACTOR).await.unwrap();
        }));
    }
    for t in join_all(tasks).await {
        t.unwrap();
    }
    let versions = store
        .repo
        .list_versions(&n, Some(1000), None)
        .await
        .unwrap();
    assert!(versions.items.len() >= 2, "publishes happened");
    for listed in versions.items {
        let artifact = store.repo.get_version(&n, listed.version).await.unwrap();
        let bytes = store
            .download(artifact.download_url.as_deref().unwrap())
            .await;
        assert_eq!(
            sha256_hex(&bytes),
            artifact.sha256,
            "version {} serves other bytes",
            artifact.version
        );
        assert_eq!(Some(bytes.len() as u64), artifact.size);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn racing_alias_moves_and_deletes_never_leave_an_alias_on_a_deleted_version() {
    let store = Arc::new(TestStore::new().await);
    let n = name("tug");
    for i in 0..16u8 {
        store.upload(&n, &[i]).await;
        store
            .repo
            .publish_version(&n, false, LOCAL_ACTOR)
            .await
            .unwrap();
    }
    // For every version, one task points `prod` at it and one deletes it.
    let mut tasks = Vec::new();
    for v in 1..=16 {
        let repo = store.another_repository();
        let n2 = n.clone();
        tasks.push(tokio::spawn(async move {
            let target = AliasTarget {
                version: Version::Number(v),
                secondary: None,
            };
            match repo
                .put_alias(&n2, &alias("prod"), target, &ChangeRequest::default())
                .await
            {
                Ok(_) | Err(Error::VersionNotFound { .. }) => {}
                Err(e) => panic!("put_alias: {e:?}"),
            }
        }));
        let repo = store.another_repository();
        let n2 = n.clone();
        tasks.push(tokio::spawn(async move {
            match repo
                .delete_version(
                    &n2,
                    Version::Number(v),
                    None,
                    shared::repository::Allowed::already(),
                )
                .await
            {
                Ok(()) | Err(Error::VersionInUse { .. }) => {}
                Err(e) => panic!("delete_version: {e:?}"),
            }
        }));
    }
    for t in join_all(tasks).await {
        t.unwrap();
    }
    let live: BTreeSet<Version> = store
        .repo
        .list_versions(&n, Some(1000), None)
        .await
        .unwrap()
        .items
        .iter()
        .map(|a| a.version)
        .collect();
    if let Ok(prod) = store.repo.get_alias(&n, &alias("prod")).await {
        assert!(
            live.contains(&prod.version),
            "prod points at deleted version {}",
            prod.version
        );
        let resolved = store
            .repo
            .resolve_alias(&n, &alias("prod"), None)
            .await
            .unwrap();
        let bytes = store.download(&resolved.download_url).await;
        assert_eq!(sha256_hex(&bytes), resolved.sha256);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn parallel_alias_moves_end_in_one_requested_state_with_consistent_references() {
    let store = Arc::new(TestStore::new().await);
    let n = name("moves");
    for i in 0..8u8 {
        store.upload(&n, &[i]).await;
        store
            .repo
            .publish_version(&n, false, LOCAL_ACTOR)
            .await
            .unwrap();
    }
    let requested: Vec<AliasTarget> = (0..32)
        .map(|i| AliasTarget {
            version: Version::Number(i % 8 + 1),
            secondary: (i % 3 == 0).then(|| {
                (
                    Version::Number((i + 1) % 8 + 1),
                    shared::Weight::new(i as i64).unwrap(),
                )
            }),
        })
        .collect();
    let tasks = requested.iter().map(|target| {
        let repo = store.another_repository();
        let (n, target) = (n.clone(), *target);
        tokio::spawn(async move {
            repo.put_alias(&n, &alias("prod"), target, &ChangeRequest::default())
                .await
        })
    });
    for t in join_all(tasks).await {
        t.unwrap().unwrap();
    }
    let prod = store.repo.get_alias(&n, &alias("prod")).await.unwrap();
    let state = AliasTarget {
        version: prod.version,
        secondary: prod.secondary_version.zip(prod.secondary_version_weight),
    };
    assert!(
        requested.contains(&state),
        "final alias {state:?} was never requested"
    );
    // Only the final targets are protected; every other version can be deleted.
    let targets: BTreeSet<Version> = std::iter::once(prod.version)
        .chain(prod.secondary_version)
        .collect();
    for v in 1..=8 {
        let v = Version::Number(v);
        let result = store
            .repo
            .delete_version(&n, v, None, shared::repository::Allowed::already())
            .await;
        if targets.contains(&v) {
            assert!(
                matches!(result, Err(Error::VersionInUse { .. })),
                "{v}: {result:?}"
            );
        } else {
            assert!(
                result.is_ok(),
                "{v} kept a stale alias reference: {result:?}"
            );
        }
    }
}

/// A commit writes LATEST back whole (a conditional Put of the row it read):
/// what publishes change on LATEST meanwhile (the version counter) must
/// never be overwritten by a stale copy, with alias moves onto LATEST (which
/// check LATEST in their transactions) racing too.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn commits_racing_publishes_and_alias_moves_keep_latests_counter() {
    let store = Arc::new(TestStore::new().await);
    let n = name("counter");
    store.upload(&n, b"seed").await;
    for round in 0..4 {
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (repo, http, n2) = (store.another_repository(), store.http.clone(), n.clone());
            tasks.push(tokio::spawn(async move {
                let body = format!("round {round} build {i}");
                upload_with(&repo, &http, &n2, body.as_bytes()).await;
            }));
            let (repo, n2) = (store.another_repository(), n.clone());
            tasks.push(tokio::spawn(async move {
                repo.publish_version(&n2, true, LOCAL_ACTOR).await.unwrap();
            }));
        }
        // Alias moves onto LATEST and back, racing the commits.
        let (repo, n2) = (store.another_repository(), n.clone());
        tasks.push(tokio::spawn(async move {
            let latest = AliasTarget {
                version: Version::Latest,
                secondary: None,
            };
            repo.put_alias(
                &n2,
                &alias(&format!("edge{round}")),
                latest,
                &ChangeRequest::default(),
            )
            .await
            .unwrap();
        }));
        for t in join_all(tasks).await {
            t.unwrap();
        }
        let items = store.raw_items().await;
        let partition =
            |item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>| {
                item.get("pk").and_then(|v| v.as_s().ok()) == Some(&n.to_string())
            };
        let highest = items
            .iter()
            .filter(|i| partition(i))
            .filter_map(|i| i.get("sk")?.as_s().ok()?.parse::<u32>().ok())
            .max()
            .unwrap();
        let latest = items
            .iter()
            .find(|i| {
                partition(i)
                    && i.get("sk").and_then(|v| v.as_s().ok()) == Some(&"LATEST".to_owned())
            })
            .unwrap();
        let counter: u32 = latest["last_version"].as_n().unwrap().parse().unwrap();
        assert_eq!(
            counter, highest,
            "round {round}: LATEST's counter lost a publish"
        );
        assert_eq!(
            latest["sha256"].as_s().unwrap(),
            &store
                .repo
                .get_version(&n, Version::Latest)
                .await
                .unwrap()
                .sha256
        );
    }
    let next = store
        .repo
        .publish_version(&n, true, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(next.artifact.version, Version::Number(4 * 8 + 1));
}
