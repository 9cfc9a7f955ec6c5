//! Repository behaviour against the emulator: every operation, its SPEC 6/7
//! semantics, and its AWS round trips (SDK interceptor counts).

use std::time::Duration;

use shared::model::{AliasTarget, ChangeRequest, LOCAL_ACTOR, RetentionPolicy, UploadRequest};
use shared::{Error, Repository, Version, Weight};
use test_support::{TestStore, alias, name, put_bytes, sha256_hex, split, to};

/// Runs `op` and returns its result with the AWS calls it made.
async fn counted<T>(repo: &Repository, op: impl std::future::Future<Output = T>) -> (T, u64) {
    let before = repo.calls();
    let out = op.await;
    (out, (repo.calls() - before).total())
}

#[tokio::test]
async fn upload_commit_publish_get_round_trips_bytes_and_sha256() {
    let store = TestStore::with_suffix(".bin").await;
    let n = name("app");
    let committed = store.upload(&n, b"build 1").await;
    assert!(committed.changed);
    assert_eq!(committed.artifact.version, Version::Latest);
    assert_eq!(committed.artifact.sha256, sha256_hex(b"build 1"));
    assert_eq!(committed.artifact.size, Some(7));
    assert_eq!(
        committed.artifact.s3uri,
        format!(
            "s3://{}/versioned-artifacts/app/LATEST.bin",
            store.config.bucket
        )
    );

    let published = store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert!(published.created);
    assert_eq!(published.artifact.version, Version::Number(1));
    assert!(published.artifact.s3uri.ends_with("/app/000001.bin"));

    let v1 = store
        .repo
        .get_version(&n, Version::Number(1))
        .await
        .unwrap();
    assert_eq!(
        store.download(v1.download_url.as_deref().unwrap()).await,
        b"build 1"
    );
    assert_eq!(v1.content_type.as_deref(), Some("application/octet-stream"));

    // The blob carries the library's metadata keys.
    let head = store
        .s3
        .head_object()
        .bucket(&store.config.bucket)
        .key(format!(
            "versioned-artifacts.blobs/app/{}",
            sha256_hex(b"build 1")
        ))
        .send()
        .await
        .unwrap();
    let meta = head.metadata().unwrap();
    assert_eq!(meta.get("artifact_name").map(String::as_str), Some("app"));
    assert_eq!(meta.get("artifact_sha256"), Some(&sha256_hex(b"build 1")));
}

#[tokio::test]
async fn user_metadata_and_content_type_given_at_upload_are_kept() {
    let store = TestStore::new().await;
    let n = name("cfg");
    let ticket = store
        .repo
        .create_upload(
            &n,
            UploadRequest {
                sha256: sha256_hex(b"{}"),
                size: 2,
                content_type: Some("application/json".into()),
                metadata: [("git-sha".to_owned(), "abc123".to_owned())].into(),
                part_size: None,
                key: None,
            },
            LOCAL_ACTOR,
        )
        .await
        .unwrap();
    put_bytes(&store.http, &ticket, b"{}").await;
    let committed = store
        .repo
        .commit_upload(&n, &ticket.upload_id, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(
        committed
            .artifact
            .metadata
            .get("git-sha")
            .map(String::as_str),
        Some("abc123")
    );
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    let v1 = store
        .repo
        .get_version(&n, Version::Number(1))
        .await
        .unwrap();
    assert_eq!(v1.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        v1.metadata.get("git-sha").map(String::as_str),
        Some("abc123")
    );
}

#[tokio::test]
async fn committing_the_same_content_changes_nothing_and_says_so() {
    let store = TestStore::new().await;
    let n = name("same");
    let first = store.upload(&n, b"x").await;
    let second = store.upload(&n, b"x").await;
    assert!(!second.changed);
    assert_eq!(second.artifact.update_at, first.artifact.update_at);
}

#[tokio::test]
async fn a_second_commit_of_one_upload_returns_the_same_result() {
    let store = TestStore::new().await;
    let n = name("retry");
    let ticket = store
        .repo
        .create_upload(
            &n,
            UploadRequest {
                sha256: sha256_hex(b"r"),
                size: 1,
                content_type: None,
                metadata: Default::default(),
                part_size: None,
                key: None,
            },
            LOCAL_ACTOR,
        )
        .await
        .unwrap();
    put_bytes(&store.http, &ticket, b"r").await;
    let first = store
        .repo
        .commit_upload(&n, &ticket.upload_id, LOCAL_ACTOR)
        .await
        .unwrap();
    let (again, calls) = counted(
        &store.repo,
        store.repo.commit_upload(&n, &ticket.upload_id, LOCAL_ACTOR),
    )
    .await;
    assert_eq!(again.unwrap(), first);
    assert!(calls <= 2, "retry took {calls} calls");
    // An id that was never uploaded is 404.
    let err = store
        .repo
        .commit_upload(&n, &"0".repeat(96), LOCAL_ACTOR)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UploadNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn commit_refuses_a_staged_object_whose_size_differs_from_the_declaration() {
    let store = TestStore::new().await;
    let n = name("liar");
    let ticket = store
        .repo
        .create_upload(
            &n,
            UploadRequest {
                sha256: sha256_hex(b"abc"),
                size: 3,
                content_type: None,
                metadata: Default::default(),
                part_size: None,
                key: None,
            },
            LOCAL_ACTOR,
        )
        .await
        .unwrap();
    // Bypass the URL: stage other bytes under the same key, no checksum.
    store
        .s3
        .put_object()
        .bucket(&store.config.bucket)
        .key(format!(
            "versioned-artifacts.blobs/liar/{}",
            sha256_hex(b"abc")
        ))
        .body(b"abcd".to_vec().into())
        .metadata("artifact_sha256", sha256_hex(b"abc"))
        .metadata("upload_size", "3")
        .send()
        .await
        .unwrap();
    let err = store
        .repo
        .commit_upload(&n, &ticket.upload_id, LOCAL_ACTOR)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UploadMismatch(_)), "{err:?}");
    assert!(
        store.items_besides_uploads().await.is_empty(),
        "a refused commit writes nothing"
    );
}

#[tokio::test]
async fn publishing_an_unchanged_latest_returns_the_newest_version_unless_forced() {
    let store = TestStore::new().await;
    let n = name("pub");
    store.upload(&n, b"a").await;
    let v1 = store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    let again = store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.artifact.version, v1.artifact.version);
    let forced = store
        .repo
        .publish_version(&n, true, LOCAL_ACTOR)
        .await
        .unwrap();
    assert!(forced.created);
    assert_eq!(forced.artifact.version, Version::Number(2));
    // A new LATEST publishes a new version.
    store.upload(&n, b"b").await;
    let v3 = store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(v3.artifact.version, Version::Number(3));
    assert_eq!(v3.artifact.sha256, sha256_hex(b"b"));
}

#[tokio::test]
async fn publishing_a_missing_artifact_is_not_found_and_writes_nothing() {
    let store = TestStore::new().await;
    let err = store
        .repo
        .publish_version(&name("ghost"), false, LOCAL_ACTOR)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ArtifactNotFound { .. }), "{err:?}");
    assert!(store.raw_items().await.is_empty());
}

#[tokio::test]
async fn list_versions_puts_latest_first_then_newest_and_hides_deleted() {
    let store = TestStore::new().await;
    let n = name("list");
    for content in [b"1", b"2", b"3"] {
        store.upload(&n, content).await;
        store
            .repo
            .publish_version(&n, false, LOCAL_ACTOR)
            .await
            .unwrap();
    }
    store
        .repo
        .delete_version(
            &n,
            Version::Number(2),
            None,
            shared::repository::Allowed::already(),
        )
        .await
        .unwrap();
    let page = store.repo.list_versions(&n, None, None).await.unwrap();
    let versions: Vec<String> = page.items.iter().map(|a| a.version.to_string()).collect();
    assert_eq!(versions, ["LATEST", "3", "1"]);

    // Pages of one, following cursors, give the same sequence.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (page, calls) = counted(
            &store.repo,
            store.repo.list_versions(&n, Some(1), cursor.as_deref()),
        )
        .await;
        let page = page.unwrap();
        assert_eq!(calls, 1, "one call per page");
        seen.extend(page.items.iter().map(|a| a.version.to_string()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ["LATEST", "3", "1"]);
    assert!(matches!(
        store
            .repo
            .list_versions(&name("nothing"), None, None)
            .await
            .unwrap_err(),
        Error::ArtifactNotFound { .. }
    ));
    assert!(matches!(
        store
            .repo
            .list_versions(&n, None, Some("!!"))
            .await
            .unwrap_err(),
        Error::InvalidRequest(_)
    ));
}

#[tokio::test]
async fn listing_versions_by_content_answers_only_the_versions_holding_those_bytes() {
    let store = TestStore::new().await;
    let n = name("by-content");
    for content in [b"build a", b"build b", b"build a"] {
        store.upload(&n, content).await;
        store
            .repo
            .publish_version(&n, false, LOCAL_ACTOR)
            .await
            .unwrap();
    }
    let a: shared::Sha256 = sha256_hex(b"build a").to_uppercase().parse().unwrap();
    let page = store
        .repo
        .list_versions_holding(&n, None, None, Some(&a))
        .await
        .unwrap();
    let versions: Vec<String> = page.items.iter().map(|a| a.version.to_string()).collect();
    assert_eq!(versions, ["LATEST", "3", "1"]);
    // Every field of an artifact is there (the listing reads a projection).
    let full = store
        .repo
        .get_version(&n, Version::Number(3))
        .await
        .unwrap();
    let listed = &page.items[1];
    assert_eq!(
        serde_json::to_value(listed).unwrap(),
        serde_json::to_value(shared::model::Artifact {
            download_url: None,
            ..full
        })
        .unwrap()
    );
    // No version holds these bytes: an empty page, not a missing artifact.
    let none: shared::Sha256 = sha256_hex(b"never uploaded").parse().unwrap();
    let page = store
        .repo
        .list_versions_holding(&n, None, None, Some(&none))
        .await
        .unwrap();
    assert!(page.items.is_empty() && page.next_cursor.is_none());
}

#[tokio::test]
async fn deleted_versions_are_hidden_from_get_and_cannot_become_alias_targets() {
    let store = TestStore::new().await;
    let n = name("hide");
    store.upload(&n, b"a").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    store
        .repo
        .delete_version(
            &n,
            Version::Number(1),
            None,
            shared::repository::Allowed::already(),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .repo
            .get_version(&n, Version::Number(1))
            .await
            .unwrap_err(),
        Error::VersionNotFound { .. }
    ));
    assert!(matches!(
        store
            .repo
            .put_alias(&n, &alias("prod"), to(1), &ChangeRequest::default())
            .await
            .unwrap_err(),
        Error::VersionNotFound { .. }
    ));
    assert!(matches!(
        store
            .repo
            .delete_version(
                &n,
                Version::Number(1),
                None,
                shared::repository::Allowed::already()
            )
            .await
            .unwrap_err(),
        Error::VersionNotFound { .. }
    ));
}

#[tokio::test]
async fn deleting_a_missing_version_is_not_found_and_creates_no_phantom_row() {
    let store = TestStore::new().await;
    let n = name("phantom");
    store.upload(&n, b"a").await;
    let before = store.raw_items().await;
    let err = store
        .repo
        .delete_version(
            &n,
            Version::Number(7),
            None,
            shared::repository::Allowed::already(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::VersionNotFound { .. }), "{err:?}");
    let err = store
        .repo
        .delete_version(
            &name("nobody"),
            Version::Number(1),
            None,
            shared::repository::Allowed::already(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::VersionNotFound { .. }), "{err:?}");
    assert_eq!(store.raw_items().await, before);
    assert!(matches!(
        store
            .repo
            .delete_version(
                &n,
                Version::Latest,
                None,
                shared::repository::Allowed::already()
            )
            .await
            .unwrap_err(),
        Error::InvalidVersion(_)
    ));
}

#[tokio::test]
async fn an_aliased_version_cannot_be_deleted_primary_or_secondary() {
    let store = TestStore::new().await;
    let n = name("guarded");
    for content in [b"1", b"2", b"3"] {
        store.upload(&n, content).await;
        store
            .repo
            .publish_version(&n, false, LOCAL_ACTOR)
            .await
            .unwrap();
    }
    store
        .repo
        .put_alias(
            &n,
            &alias("prod"),
            split(1, 2, 10),
            &ChangeRequest::default(),
        )
        .await
        .unwrap();
    for v in [1, 2] {
        let err = store
            .repo
            .delete_version(
                &n,
                Version::Number(v),
                None,
                shared::repository::Allowed::already(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::VersionInUse { .. }), "{err:?}");
        assert!(store.repo.get_version(&n, Version::Number(v)).await.is_ok());
    }
    // Once the alias moves away, the old targets can go.
    store
        .repo
        .put_alias(&n, &alias("prod"), to(3), &ChangeRequest::default())
        .await
        .unwrap();
    store
        .repo
        .delete_version(
            &n,
            Version::Number(1),
            None,
            shared::repository::Allowed::already(),
        )
        .await
        .unwrap();
    store
        .repo
        .delete_version(
            &n,
            Version::Number(2),
            None,
            shared::repository::Allowed::already(),
        )
        .await
        .unwrap();
    let err = store
        .repo
        .delete_version(
            &n,
            Version::Number(3),
            None,
            shared::repository::Allowed::already(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::VersionInUse { .. }), "{err:?}");
    store
        .repo
        .delete_alias(&n, &alias("prod"), &ChangeRequest::default())
        .await
        .unwrap();
    store
        .repo
        .delete_version(
            &n,
            Version::Number(3),
            None,
            shared::repository::Allowed::already(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn version_numbers_are_never_reused_after_delete_and_reclaim() {
    let store = TestStore::new().await;
    let n = name("mono");
    store.upload(&n, b"1").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    store.upload(&n, b"2").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    store
        .repo
        .delete_version(
            &n,
            Version::Number(2),
            None,
            shared::repository::Allowed::already(),
        )
        .await
        .unwrap();
    let report = store.repo.reclaim(&n, Duration::ZERO).await.unwrap();
    assert_eq!(report.reclaimed, [Version::Number(2)]);
    store.upload(&n, b"3").await;
    let next = store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(next.artifact.version, Version::Number(3));
}

#[tokio::test]
async fn reclaim_deletes_the_bytes_after_the_grace_period_and_keeps_a_tombstone() {
    let store = TestStore::new().await;
    let n = name("reclaim");
    store.upload(&n, b"old").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    store
        .repo
        .delete_version(
            &n,
            Version::Number(1),
            None,
            shared::repository::Allowed::already(),
        )
        .await
        .unwrap();
    // LATEST moves on, so nothing references those bytes any more.
    store.upload(&n, b"new").await;
    let key = format!("versioned-artifacts.blobs/reclaim/{}", sha256_hex(b"old"));
    let key = key.as_str();
    // Within the grace period nothing is reclaimed.
    let report = store
        .repo
        .reclaim(&n, Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(report.reclaimed.is_empty());
    let versions = store
        .s3
        .list_object_versions()
        .bucket(&store.config.bucket)
        .prefix(key)
        .send()
        .await
        .unwrap();
    assert_eq!(versions.versions().len(), 1);
    // After it, every object version of that key is gone; the row stays deleted.
    let report = store.repo.reclaim(&n, Duration::ZERO).await.unwrap();
    assert_eq!(report.reclaimed, [Version::Number(1)]);
    let versions = store
        .s3
        .list_object_versions()
        .bucket(&store.config.bucket)
        .prefix(key)
        .send()
        .await
        .unwrap();
    assert!(versions.versions().is_empty() && versions.delete_markers().is_empty());
    let rows = store.raw_items().await;
    let tombstone = rows
        .iter()
        .find(|r| r.get("sk").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("000001"))
        .unwrap();
    assert_eq!(
        tombstone.get("is_deleted").and_then(|v| v.as_bool().ok()),
        Some(&true)
    );
    assert!(tombstone.contains_key("reclaimed_at"));
    // LATEST's bytes are untouched.
    let latest = store.repo.get_version(&n, Version::Latest).await.unwrap();
    assert_eq!(
        store
            .download(latest.download_url.as_deref().unwrap())
            .await,
        b"new"
    );
}

#[tokio::test]
async fn retention_keeps_latest_the_newest_n_and_alias_targets_and_supports_dry_run() {
    let store = TestStore::new().await;
    let n = name("keep");
    for i in 1..=6u8 {
        store.upload(&n, &[i]).await;
        store
            .repo
            .publish_version(&n, false, LOCAL_ACTOR)
            .await
            .unwrap();
    }
    store
        .repo
        .put_alias(&n, &alias("prod"), to(1), &ChangeRequest::default())
        .await
        .unwrap();
    let policy = RetentionPolicy {
        keep_last_n: 2,
        older_than: Duration::ZERO,
    };

    let dry = store.repo.purge_versions(&n, policy, true).await.unwrap();
    let would: Vec<String> = dry.deleted.iter().map(|a| a.version.to_string()).collect();
    assert_eq!(would, ["4", "3", "2"]);
    assert_eq!(
        store
            .repo
            .list_versions(&n, None, None)
            .await
            .unwrap()
            .items
            .len(),
        7,
        "dry run writes nothing"
    );

    let real = store.repo.purge_versions(&n, policy, false).await.unwrap();
    assert_eq!(real.deleted, dry.deleted);
    let left: Vec<String> = store
        .repo
        .list_versions(&n, None, None)
        .await
        .unwrap()
        .items
        .iter()
        .map(|a| a.version.to_string())
        .collect();
    assert_eq!(left, ["LATEST", "6", "5", "1"]);

    // Nothing is older than a day: nothing goes.
    let young = RetentionPolicy {
        keep_last_n: 0,
        older_than: Duration::from_secs(86_400),
    };
    assert!(
        store
            .repo
            .purge_versions(&n, young, false)
            .await
            .unwrap()
            .deleted
            .is_empty()
    );
}

#[tokio::test]
async fn aliases_put_get_list_delete_with_canary_split() {
    let store = TestStore::new().await;
    let n = name("aliased");
    for content in [b"1", b"2"] {
        store.upload(&n, content).await;
        store
            .repo
            .publish_version(&n, false, LOCAL_ACTOR)
            .await
            .unwrap();
    }
    let prod = store
        .repo
        .put_alias(
            &n,
            &alias("prod"),
            split(1, 2, 20),
            &ChangeRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(prod.secondary_version, Some(Version::Number(2)));
    assert_eq!(prod.secondary_version_weight.map(Weight::get), Some(20));
    assert!(prod.version_s3uri.ends_with("/aliased/000001"));
    store
        .repo
        .put_alias(
            &n,
            &alias("dev-latest"),
            AliasTarget {
                version: Version::Latest,
                secondary: None,
            },
            &ChangeRequest::default(),
        )
        .await
        .unwrap();
    let (got, calls) = counted(&store.repo, store.repo.get_alias(&n, &alias("prod"))).await;
    assert_eq!(got.unwrap(), prod);
    assert_eq!(calls, 1);
    let listed = store.repo.list_aliases(&n, None, None).await.unwrap();
    let names: Vec<String> = listed.items.iter().map(|a| a.alias.to_string()).collect();
    assert_eq!(names, ["dev-latest", "prod"]);

    assert!(matches!(
        store
            .repo
            .put_alias(&n, &alias("bad"), split(1, 1, 5), &ChangeRequest::default())
            .await
            .unwrap_err(),
        Error::InvalidRequest(_)
    ));
    assert!(matches!(
        store
            .repo
            .put_alias(&n, &alias("bad"), to(9), &ChangeRequest::default())
            .await
            .unwrap_err(),
        Error::VersionNotFound { .. }
    ));
    store
        .repo
        .delete_alias(&n, &alias("prod"), &ChangeRequest::default())
        .await
        .unwrap();
    let before = store.raw_items().await;
    assert!(matches!(
        store
            .repo
            .delete_alias(&n, &alias("prod"), &ChangeRequest::default())
            .await
            .unwrap_err(),
        Error::AliasNotFound { .. }
    ));
    assert!(matches!(
        store.repo.get_alias(&n, &alias("prod")).await.unwrap_err(),
        Error::AliasNotFound { .. }
    ));
    assert_eq!(
        store.raw_items().await,
        before,
        "a 404 delete writes nothing"
    );
}

#[tokio::test]
async fn resolve_is_sticky_per_key_and_monotone_in_the_weight() {
    let store = TestStore::new().await;
    let n = name("canary");
    for content in [b"stable", b"canary"] {
        store.upload(&n, content).await;
        store
            .repo
            .publish_version(&n, false, LOCAL_ACTOR)
            .await
            .unwrap();
    }
    // The rule itself (sticky, monotone, the weight's share over 10 000
    // keys) is table-tested in core (`alias_rules`); here the repository
    // answers what it decides, again and again, at every weight.
    let keys: Vec<String> = (0..40).map(|i| format!("host-{i}")).collect();
    let mut on_secondary_before: Vec<bool> = vec![false; keys.len()];
    for weight in [0, 10, 25, 50, 99] {
        store
            .repo
            .put_alias(
                &n,
                &alias("prod"),
                split(1, 2, weight),
                &ChangeRequest::default(),
            )
            .await
            .unwrap();
        let weight = shared::Weight::new(weight).unwrap();
        for (i, key) in keys.iter().enumerate() {
            let first = store
                .repo
                .resolve_alias(&n, &alias("prod"), Some(key))
                .await
                .unwrap();
            let again = store
                .repo
                .resolve_alias(&n, &alias("prod"), Some(key))
                .await
                .unwrap();
            assert_eq!(first.version, again.version, "sticky for {key}");
            let is_secondary = first.version == Version::Number(2);
            let bucket = shared::alias_rules::sticky_bucket(&n, &alias("prod"), key);
            assert_eq!(
                is_secondary,
                shared::alias_rules::takes_secondary(bucket, weight),
                "{key} at {weight:?}"
            );
            assert!(
                !on_secondary_before[i] || is_secondary,
                "{key} moved back to primary at weight {weight:?}"
            );
            on_secondary_before[i] = is_secondary;
        }
    }
    assert!(
        on_secondary_before.iter().any(|s| *s),
        "at 99 % some keys take the secondary"
    );
    let (resolved, calls) = counted(
        &store.repo,
        store.repo.resolve_alias(&n, &alias("prod"), Some("x")),
    )
    .await;
    let resolved = resolved.unwrap();
    assert_eq!(calls, 1);
    let expected = if resolved.version == Version::Number(2) {
        &b"canary"[..]
    } else {
        &b"stable"[..]
    };
    assert_eq!(store.download(&resolved.download_url).await, expected);
    assert_eq!(resolved.sha256, sha256_hex(expected));
}

#[tokio::test]
async fn resolving_an_alias_of_latest_follows_new_commits() {
    let store = TestStore::new().await;
    let n = name("follow");
    store.upload(&n, b"one").await;
    store
        .repo
        .put_alias(
            &n,
            &alias("edge"),
            AliasTarget {
                version: Version::Latest,
                secondary: None,
            },
            &ChangeRequest::default(),
        )
        .await
        .unwrap();
    store.upload(&n, b"two").await;
    let resolved = store
        .repo
        .resolve_alias(&n, &alias("edge"), None)
        .await
        .unwrap();
    assert_eq!(resolved.version, Version::Latest);
    assert_eq!(resolved.sha256, sha256_hex(b"two"));
    assert_eq!(store.download(&resolved.download_url).await, b"two");
}

#[tokio::test]
async fn list_artifact_names_pages_through_every_name() {
    let store = TestStore::new().await;
    for n in ["a1", "b2", "c3"] {
        store.upload(&name(n), b"x").await;
    }
    let all = store
        .repo
        .list_artifact_names(None, None, &|_| true)
        .await
        .unwrap();
    assert_eq!(
        all.items.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        ["a1", "b2", "c3"]
    );
    let first = store
        .repo
        .list_artifact_names(Some(2), None, &|_| true)
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    let rest = store
        .repo
        .list_artifact_names(Some(2), first.next_cursor.as_deref(), &|_| true)
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        ["c3"]
    );
    assert_eq!(rest.next_cursor, None);
}

#[tokio::test]
async fn purging_an_artifact_wipes_everything_and_numbering_starts_over() {
    let store = TestStore::new().await;
    let n = name("wipe");
    let keep = name("keep");
    store.upload(&keep, b"k").await;
    for content in [b"1", b"2"] {
        store.upload(&n, content).await;
        store
            .repo
            .publish_version(&n, false, LOCAL_ACTOR)
            .await
            .unwrap();
    }
    store
        .repo
        .put_alias(&n, &alias("prod"), to(2), &ChangeRequest::default())
        .await
        .unwrap();
    store
        .repo
        .delete_version(
            &n,
            Version::Number(1),
            None,
            shared::repository::Allowed::already(),
        )
        .await
        .unwrap();
    store.repo.purge_artifact(&n).await.unwrap();

    let rows = store.raw_items().await;
    let field = |r: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
                 k: &str| {
        r.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    let foreign: Vec<_> = rows
        .iter()
        .filter(|r| {
            let (pk, sk) = (field(r, "pk"), field(r, "sk"));
            !(pk == "keep" || pk.starts_with("__keep-") || (pk == "__artifacts" && sk == "keep/"))
        })
        .collect();
    assert!(
        foreign.is_empty(),
        "rows of the purged artifact remain: {foreign:?}"
    );
    let blobs = store
        .s3
        .list_object_versions()
        .bucket(&store.config.bucket)
        .prefix("versioned-artifacts.blobs/wipe/")
        .send()
        .await
        .unwrap();
    assert!(blobs.versions().is_empty() && blobs.delete_markers().is_empty());
    let objects = store
        .s3
        .list_object_versions()
        .bucket(&store.config.bucket)
        .prefix("versioned-artifacts/wipe/")
        .send()
        .await
        .unwrap();
    assert!(objects.versions().is_empty() && objects.delete_markers().is_empty());
    let names = store
        .repo
        .list_artifact_names(None, None, &|_| true)
        .await
        .unwrap();
    assert_eq!(names.items, [keep]);
    assert!(matches!(
        store.repo.purge_artifact(&n).await.unwrap_err(),
        Error::ArtifactNotFound { .. }
    ));

    store.upload(&n, b"again").await;
    assert_eq!(
        store
            .repo
            .publish_version(&n, false, LOCAL_ACTOR)
            .await
            .unwrap()
            .artifact
            .version,
        Version::Number(1)
    );
}

// Issue 21: a pipeline's commit with `publish` and `alias` is the commit's
// 3 calls (the publish rides on its transaction) and the alias move's 2
// (the record of the run rides on the move's transaction): 5, in 4 round
// trips; it was 9 (claim, publish and record each on their own).
#[tokio::test]
async fn a_commit_that_publishes_and_moves_an_alias_makes_five_aws_calls() {
    let store = TestStore::new().await;
    let repo = &store.repo;
    let n = name("pipeline-budget");
    let pipeline = test_support::publishing_to("prod", None);
    let mut calls = Vec::new();
    for build in [&b"build 1"[..], b"build 2", b"build 3"] {
        let ticket = repo
            .create_upload(&n, test_support::declare(build), LOCAL_ACTOR)
            .await
            .unwrap();
        put_bytes(&store.http, &ticket, build).await;
        // Within a request's coalescing, as the API runs it: the alias
        // check's GetItem goes in the commit's first BatchGetItem.
        let (r, c) = counted(
            repo,
            shared::coalesce::coalescing(repo.commit_pipeline(
                &n,
                &ticket.upload_id,
                LOCAL_ACTOR,
                &pipeline,
                shared::repository::Allowed::already(),
            )),
        )
        .await;
        let shared::repository::PipelineOutcome::Committed(done) = r.unwrap() else {
            panic!("a single PUT is committed");
        };
        let moved = done.alias.expect("the alias moved");
        assert_eq!(
            moved["version"],
            done.published.expect("published")["version"]
        );
        calls.push(c);
    }
    // The first creates the alias: one Query more (the last revision).
    assert_eq!(calls, vec![6, 5, 5]);
    // What the runs recorded is what they answered: a retry replays it.
    let prod = repo.get_alias(&n, &alias("prod")).await.unwrap();
    assert_eq!(prod.version, Version::Number(3));
    assert_eq!(prod.revision, 3);
}

#[tokio::test]
async fn every_operation_stays_within_its_aws_call_budget() {
    let store = TestStore::new().await;
    let repo = &store.repo;
    let n = name("budget");
    let mut report = Vec::new();

    let request = UploadRequest {
        sha256: sha256_hex(b"v1"),
        size: 2,
        content_type: None,
        metadata: Default::default(),
        part_size: None,
        key: None,
    };
    let (ticket, c) = counted(repo, repo.create_upload(&n, request, LOCAL_ACTOR)).await;
    let ticket = ticket.unwrap();
    report.push(("start upload", c, 2));
    put_bytes(&store.http, &ticket, b"v1").await;
    let (r, c) = counted(repo, repo.commit_upload(&n, &ticket.upload_id, LOCAL_ACTOR)).await;
    r.unwrap();
    report.push(("commit", c, 3));
    let held = test_support::declare(b"v1");
    let nothing = shared::model::Pipeline::default();
    let (r, c) = counted(
        repo,
        repo.start_and_commit(
            &n,
            held,
            LOCAL_ACTOR,
            &nothing,
            shared::repository::Allowed::already(),
        ),
    )
    .await;
    assert!(
        matches!(r, Ok(shared::repository::StartOutcome::Committed { .. })),
        "{r:?}"
    );
    report.push(("start upload, commit (bytes LATEST holds)", c, 2));
    let ticket = repo
        .create_upload(&n, test_support::declare(b"v0"), LOCAL_ACTOR)
        .await
        .unwrap();
    put_bytes(&store.http, &ticket, b"v0").await;
    let publish = shared::model::Pipeline {
        publish: true,
        force: false,
        alias: None,
    };
    let (r, c) = counted(
        repo,
        repo.commit_pipeline(
            &n,
            &ticket.upload_id,
            LOCAL_ACTOR,
            &publish,
            shared::repository::Allowed::already(),
        ),
    )
    .await;
    r.unwrap();
    // The commit's 3 (HeadObject ∥ BatchGetItem, TransactWriteItems): the
    // claim, the publish and the record of what it did ride on the
    // commit's transaction.
    report.push(("commit with publish", c, 3));
    let ticket = repo
        .create_upload(&n, test_support::declare(b"v1"), LOCAL_ACTOR)
        .await
        .unwrap();
    assert!(ticket.exists, "the blob of v1 is stored: LATEST back to it");
    repo.commit_upload(&n, &ticket.upload_id, LOCAL_ACTOR)
        .await
        .unwrap();
    let (r, c) = counted(repo, repo.publish_version(&n, false, LOCAL_ACTOR)).await;
    r.unwrap();
    report.push(("publish", c, 2));
    let (r, c) = counted(repo, repo.publish_version(&n, false, LOCAL_ACTOR)).await;
    r.unwrap();
    report.push(("publish (unchanged)", c, 2));
    repo.publish_version(&n, true, LOCAL_ACTOR).await.unwrap();
    let (r, c) = counted(repo, repo.get_version(&n, Version::Number(1))).await;
    r.unwrap();
    report.push(("get version", c, 1));
    let (r, c) = counted(repo, repo.list_versions(&n, None, None)).await;
    r.unwrap();
    report.push(("list versions (1 page)", c, 1));
    let (r, c) = counted(
        repo,
        repo.put_alias(
            &n,
            &alias("prod"),
            split(1, 2, 10),
            &ChangeRequest::default(),
        ),
    )
    .await;
    r.unwrap();
    report.push(("put alias (create)", c, 3));
    let (r, c) = counted(
        repo,
        repo.put_alias(&n, &alias("prod"), to(2), &ChangeRequest::default()),
    )
    .await;
    r.unwrap();
    report.push(("put alias (move)", c, 2));
    let (r, c) = counted(repo, repo.alias_history(&n, &alias("prod"), None, None)).await;
    r.unwrap();
    report.push(("alias history (1 page)", c, 1));
    let (r, c) = counted(
        repo,
        repo.get_alias_at(&n, &alias("prod"), shared::layout::now()),
    )
    .await;
    r.unwrap();
    report.push(("get alias at a time", c, 1));
    let (prod, change) = (alias("prod"), Default::default());
    let (r, c) = counted(repo, repo.rollback_alias(&n, &prod, None, &change)).await;
    r.unwrap();
    report.push(("rollback alias", c, 3));
    repo.put_alias(&n, &alias("prod"), to(2), &ChangeRequest::default())
        .await
        .unwrap();
    let (r, c) = counted(repo, repo.get_alias(&n, &alias("prod"))).await;
    r.unwrap();
    report.push(("get alias", c, 1));
    let (r, c) = counted(repo, repo.resolve_alias(&n, &alias("prod"), None)).await;
    r.unwrap();
    report.push(("resolve alias", c, 1));
    let (r, c) = counted(repo, repo.list_aliases(&n, None, None)).await;
    r.unwrap();
    report.push(("list aliases (1 page)", c, 1));
    let (r, c) = counted(
        repo,
        repo.delete_version(
            &n,
            Version::Number(1),
            None,
            shared::repository::Allowed::already(),
        ),
    )
    .await;
    r.unwrap();
    // The row is read beside the aliases (one round trip): its
    // `Version Deleted` goes in the event log in the delete's transaction.
    report.push(("delete version", c, 3));
    let (r, c) = counted(
        repo,
        repo.delete_alias(&n, &alias("prod"), &ChangeRequest::default()),
    )
    .await;
    r.unwrap();
    report.push(("delete alias", c, 2));
    let (r, c) = counted(repo, repo.list_artifact_names(None, None, &|_| true)).await;
    r.unwrap();
    report.push(("list names (1 page)", c, 2));

    for (op, calls, budget) in &report {
        println!("{op:<42} {calls} AWS calls (budget {budget})");
    }
    for (op, calls, budget) in report {
        assert!(calls <= budget, "{op}: {calls} AWS calls, budget {budget}");
    }
}

#[tokio::test]
async fn retention_ages_beyond_the_calendar_keep_everything_instead_of_failing() {
    let store = TestStore::new().await;
    let n = name("ancient");
    store.upload(&n, b"a").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    store
        .repo
        .publish_version(&n, true, LOCAL_ACTOR)
        .await
        .unwrap();
    let policy = RetentionPolicy {
        keep_last_n: 0,
        older_than: Duration::from_secs(u64::MAX),
    };
    let report = store.repo.purge_versions(&n, policy, false).await.unwrap();
    assert!(report.deleted.is_empty());
    let reclaimed = store
        .repo
        .reclaim(&n, Duration::from_secs(u64::MAX))
        .await
        .unwrap();
    assert!(reclaimed.reclaimed.is_empty());
}

/// SPEC 10.3: search by bytes and by metadata across artifacts returns
/// exactly the live versions (library-written ones included for bytes),
/// one round trip of index Queries + one BatchGetItem per page.
#[tokio::test]
async fn search_by_bytes_and_metadata_answers_exactly_the_live_versions_in_two_calls() {
    use shared::model::{SearchQuery, VersionStatus};
    let store = TestStore::new().await;
    let (api, web) = (name("api"), name("web"));
    let model = b"the model".to_vec();
    let v1 = store
        .publish_with(&api, &model, &[("team", "ml"), ("commit", "4f2a")])
        .await;
    let v2 = store
        .publish_with(&api, b"other", &[("team", "ml"), ("commit", "9c1d")])
        .await;
    let w1 = store
        .publish_with(&web, &model, &[("team", "web"), ("commit", "4f2a")])
        .await;
    store
        .repo
        .put_alias(&api, &alias("prod"), to(1), &ChangeRequest::default())
        .await
        .unwrap();
    // The library writes the same bytes under a third name.
    store.library(&[
        "call",
        "put_artifact",
        &serde_json::json!({"name": "lib", "content": "the model"}).to_string(),
    ]);

    let by_bytes = SearchQuery::Sha256(sha256_hex(&model).parse().unwrap());
    let (page, calls) = counted(
        &store.repo,
        store.repo.search(&by_bytes, None, None, &|_| true),
    )
    .await;
    let page = page.unwrap();
    // The index's two name ranges at once (see
    // `a_digest_term_counts_versions_only_whatever_uploads_declare_it`).
    assert_eq!(
        calls, 3,
        "two Queries of the index in one round trip, one BatchGetItem"
    );
    let mut found: Vec<(String, String, Vec<String>)> = page
        .items
        .iter()
        .map(|h| {
            (
                h.artifact.name.to_string(),
                h.artifact.version.to_string(),
                h.aliases.clone(),
            )
        })
        .collect();
    // Within a name LATEST first, then the newest (SPEC 6; the index keeps
    // no order among one name's entries: an acceptance tester saw LATEST
    // last).
    let web_order: Vec<&str> = found
        .iter()
        .filter(|(n, _, _)| n == "web")
        .map(|(_, v, _)| v.as_str())
        .collect();
    assert_eq!(web_order, ["LATEST".to_owned(), w1.to_string()]);
    found.sort();
    let s = |v: &str| v.to_owned();
    assert_eq!(
        found,
        [
            (s("api"), v1.to_string(), vec![s("prod")]),
            (s("lib"), s("LATEST"), vec![]),
            (s("web"), w1.to_string(), vec![]),
            (s("web"), s("LATEST"), vec![]),
        ]
    );

    let by_meta = |terms: &[(&str, &str)]| {
        SearchQuery::Metadata(terms.iter().map(|(k, v)| (s(k), s(v))).collect())
    };
    let versions = |page: shared::model::Page<shared::model::SearchHit>| -> Vec<String> {
        page.items
            .iter()
            .map(|h| format!("{}@{}", h.artifact.name, h.artifact.version))
            .collect()
    };
    let (ml, calls) = counted(
        &store.repo,
        store
            .repo
            .search(&by_meta(&[("team", "ml")]), None, None, &|_| true),
    )
    .await;
    assert_eq!(calls, 2);
    assert_eq!(
        versions(ml.unwrap()),
        [format!("api@{v2}"), format!("api@{v1}")],
        "newest first"
    );
    let both = store
        .repo
        .search(
            &by_meta(&[("commit", "4f2a"), ("team", "web")]),
            None,
            None,
            &|_| true,
        )
        .await
        .unwrap();
    assert_eq!(versions(both), [format!("web@{w1}")]);
    // Paged: one hit per page, a cursor that goes on, the same hits.
    let first = store
        .repo
        .search(&by_meta(&[("commit", "4f2a")]), Some(1), None, &|_| true)
        .await
        .unwrap();
    let rest = store
        .repo
        .search(
            &by_meta(&[("commit", "4f2a")]),
            Some(1),
            first.next_cursor.as_deref(),
            &|_| true,
        )
        .await
        .unwrap();
    assert_eq!(
        [versions(first), versions(rest)].concat(),
        [format!("api@{v1}"), format!("web@{w1}")]
    );
    // Listing one artifact's versions by metadata.
    let listed = store
        .repo
        .list_versions_matching(
            &api,
            None,
            None,
            None,
            &[(s("commit"), s("9c1d"))].into_iter().collect(),
        )
        .await
        .unwrap();
    let listed: Vec<Version> = listed.items.iter().map(|a| a.version).collect();
    assert_eq!(
        listed,
        [Version::Latest, v2],
        "LATEST first, as every listing"
    );

    // A deleted version, and a purged artifact, are never answered.
    store
        .repo
        .delete_version(&api, v2, None, shared::repository::Allowed::already())
        .await
        .unwrap();
    let ml = store
        .repo
        .search(&by_meta(&[("team", "ml")]), None, None, &|_| true)
        .await
        .unwrap();
    assert_eq!(versions(ml), [format!("api@{v1}")]);
    store.repo.purge_artifact(&web).await.unwrap();
    let after = store
        .repo
        .search(&by_bytes, None, None, &|_| true)
        .await
        .unwrap();
    assert!(after.items.iter().all(|h| h.artifact.name != web));
    assert!(
        store
            .raw_items()
            .await
            .iter()
            .all(|i| !i["sk"].as_s().unwrap().starts_with("web/")),
        "the purge removed web's metadata index entries"
    );

    // Status: deprecated shows on reads; archived cannot become a target.
    let change = shared::repository::StatusChange {
        actor: "release".into(),
        message: Some("CVE: use a newer build".into()),
        expected: Some(VersionStatus::Active),
    };
    let deprecated = store
        .repo
        .set_version_status(&api, v1, VersionStatus::Deprecated, &change)
        .await
        .unwrap();
    assert_eq!(deprecated.status, Some(VersionStatus::Deprecated));
    // prod points at v1: its resolve warns (and still serves v1).
    let resolved = store
        .repo
        .resolve_alias(&api, &alias("prod"), None)
        .await
        .unwrap();
    assert_eq!(resolved.version, v1);
    assert!(
        resolved
            .warning
            .as_deref()
            .is_some_and(|w| w.contains("deprecated")),
        "{resolved:?}"
    );
    let again = store
        .repo
        .set_version_status(&api, v1, VersionStatus::Archived, &change)
        .await;
    assert!(
        matches!(again, Err(Error::ConcurrentModification(_))),
        "{again:?}"
    );
    let archive = shared::repository::StatusChange {
        expected: None,
        ..change
    };
    store
        .repo
        .set_version_status(&api, v1, VersionStatus::Archived, &archive)
        .await
        .unwrap();
    let got = store.repo.get_version(&api, v1).await.unwrap();
    assert_eq!(got.status, Some(VersionStatus::Archived));
    // prod already points at v1: it may stay (a message-only move works),
    // but no other alias may take it.
    let staging = store
        .repo
        .put_alias(&api, &alias("staging"), to(1), &ChangeRequest::default())
        .await;
    assert!(
        matches!(staging, Err(Error::VersionArchived { .. })),
        "{staging:?}"
    );
    store
        .repo
        .put_alias(&api, &alias("prod"), to(1), &ChangeRequest::default())
        .await
        .unwrap();
    assert!(matches!(
        store
            .repo
            .set_version_status(&api, Version::Number(99), VersionStatus::Active, &archive)
            .await,
        Err(Error::VersionNotFound { .. })
    ));
}

/// SPEC 10.3: a `q=` search answers only rows its query holds for, read
/// back: the library purges an artifact's rows but not this service's
/// metadata index entries, so after a purge by the library and a new
/// version 1 with other metadata, the old entry names the new row (which
/// a search answered as a match, though none of its metadata matched).
#[tokio::test]
async fn a_query_never_answers_a_row_its_terms_do_not_hold_for_after_a_library_purge() {
    let store = TestStore::new().await;
    let n = name("reborn");
    let first = store
        .publish_with(&n, b"first life", &[("team", "ml")])
        .await;
    assert_eq!(first, Version::Number(1));
    store.library(&[
        "call",
        "purge_artifact",
        &serde_json::json!({"name": "reborn"}).to_string(),
    ]);
    let again = store
        .publish_with(&n, b"second life", &[("team", "web")])
        .await;
    assert_eq!(
        again,
        Version::Number(1),
        "numbers start over after a purge"
    );
    let found = |q: &str| {
        let q = shared::query::parse(q).unwrap();
        let repo = &store.repo;
        async move {
            repo.search_expression(&q, None, None, &|_| true)
                .await
                .unwrap()
                .items
                .iter()
                .map(|h| {
                    format!(
                        "{}@{}:{}",
                        h.artifact.name, h.artifact.version, h.artifact.sha256
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(found("meta.team='ml'").await, Vec::<String>::new());
    let second = sha256_hex(b"second life");
    assert_eq!(
        found("meta.team='web'").await,
        vec![format!("reborn@1:{second}")]
    );
}

/// SPEC 10.3, the query form: `q=` terms combined with AND, OR, IN and
/// parentheses, each term one index query, AND/OR as set operations;
/// live versions only, ordered by name then newest first, paged.
#[tokio::test]
async fn search_by_query_combines_terms_as_sets_and_pages() {
    let store = TestStore::new().await;
    let (fraud, churn, web) = (name("fraud"), name("churn"), name("web"));
    let f1 = store
        .publish_with(&fraud, b"f1", &[("team", "ml"), ("tier", "c")])
        .await;
    let f2 = store
        .publish_with(&fraud, b"f2", &[("team", "ml"), ("tier", "c")])
        .await;
    let c1 = store
        .publish_with(&churn, b"c1", &[("team", "ml"), ("tier", "a")])
        .await;
    let c2 = store
        .publish_with(&churn, b"c2", &[("team", "ml"), ("tier", "z")])
        .await;
    let w1 = store
        .publish_with(&web, b"w1", &[("team", "web"), ("tier", "b")])
        .await;
    store
        .repo
        .delete_version(&fraud, f1, None, shared::repository::Allowed::already())
        .await
        .unwrap();

    let ask = |q: &str| shared::query::parse(q).unwrap();
    let found = |page: shared::model::Page<shared::model::SearchHit>| -> Vec<String> {
        page.items
            .iter()
            .map(|h| format!("{}@{}", h.artifact.name, h.artifact.version))
            .collect()
    };
    let q = ask("meta.team='ml' AND (name='fraud' OR meta.tier IN ('a','b'))");
    let page = store
        .repo
        .search_expression(&q, None, None, &|_| true)
        .await
        .unwrap();
    // fraud@f1 is deleted; churn@c2 is tier z; web@w1 is not team ml.
    assert_eq!(found(page), [format!("churn@{c1}"), format!("fraud@{f2}")]);

    let q = ask("meta.tier='b' OR name='churn'");
    let page = store
        .repo
        .search_expression(&q, None, None, &|_| true)
        .await
        .unwrap();
    assert_eq!(
        found(page),
        [
            "churn@LATEST".to_owned(),
            format!("churn@{c2}"),
            format!("churn@{c1}"),
            format!("web@{w1}"),
        ]
    );

    // Paged: two at a time, every match once, in order.
    let q = ask("meta.team='ml'");
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .repo
            .search_expression(&q, Some(2), cursor.as_deref(), &|_| true)
            .await
            .unwrap();
        cursor = page.next_cursor.clone();
        all.extend(found(page));
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(
        all,
        [
            format!("churn@{c2}"),
            format!("churn@{c1}"),
            format!("fraud@{f2}")
        ]
    );
    let bad = store
        .repo
        .search_expression(&q, None, Some("%%"), &|_| true)
        .await;
    assert!(
        matches!(bad, Err(shared::Error::InvalidRequest(_))),
        "{bad:?}"
    );
}

/// SPEC 10.4 with many names: a listing of a caller who may read one name
/// far from the start skips the others in pages of up to 1 000 after the
/// first, not `limit` at a time (a page of 1 used to cost one round per
/// name skipped, and a large catalog outran the function's timeout).
#[tokio::test]
async fn a_sparse_listing_skips_hidden_names_in_large_pages() {
    let store = TestStore::new().await;
    for i in 0..40 {
        let n = name(&format!("hidden-{i:02}"));
        store
            .put_raw_key(shared::layout::REGISTRY_PK, &format!("{n}/"))
            .await;
    }
    store
        .put_raw_key(shared::layout::REGISTRY_PK, "shown/")
        .await;
    let (page, calls) = counted(
        &store.repo,
        store
            .repo
            .list_artifact_names(Some(1), None, &|n| n == "shown"),
    )
    .await;
    let page = page.unwrap();
    assert_eq!(page.items, vec![name("shown")]);
    assert_eq!(page.next_cursor, None);
    // Two rounds (Query ∥ ListObjectsV2 each), not forty.
    assert!(calls <= 4, "{calls} AWS calls");
}

/// (service::allowed) What a write waits for before it writes: decided
/// once and kept; a sender dropped without a word refuses.
#[tokio::test]
async fn the_decision_is_waited_for_once_and_kept() {
    assert!(shared::repository::Allowed::already().wait().await.is_ok());

    let (said, heard) = tokio::sync::oneshot::channel();
    let mut allowed = shared::repository::Allowed::when(heard);
    said.send(true).unwrap();
    assert!(allowed.wait().await.is_ok());
    assert!(allowed.wait().await.is_ok());

    let (said, heard) = tokio::sync::oneshot::channel();
    let mut refused = shared::repository::Allowed::when(heard);
    said.send(false).unwrap();
    assert!(matches!(
        refused.wait().await,
        Err(shared::Error::AccessDenied(_))
    ));
    assert!(
        matches!(refused.wait().await, Err(shared::Error::AccessDenied(_))),
        "a refusal stays one"
    );

    let (said, heard) = tokio::sync::oneshot::channel::<bool>();
    drop(said);
    let mut unheard = shared::repository::Allowed::when(heard);
    assert!(matches!(
        unheard.wait().await,
        Err(shared::Error::AccessDenied(_))
    ));
}

/// A digest's term reads version rows only: upload rows (anyone who may
/// write one name may start uploads declaring any digest) sit in the same
/// index, and a thousand of them made `sha256='…'` a 400 for every
/// caller. Names of each first character class (digit, capital, small
/// letter) are all found.
#[tokio::test]
async fn a_digest_term_counts_versions_only_whatever_uploads_declare_it() {
    use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
    let store = TestStore::new().await;
    let bytes = b"the same bytes everywhere";
    let digest = test_support::sha256_hex(bytes);
    for artifact in ["9lives", "Zeta", "alpha"] {
        store.publish_each(&name(artifact), &[bytes]).await;
    }
    let hog = "__hog-upload";
    // More than a term may match, and than a plain search's largest page.
    let ids: Vec<String> = (0..=2 * shared::query::MAX_TERM_MATCHES)
        .map(|i| format!("u{i:05}"))
        .collect();
    for chunk in ids.chunks(25) {
        let requests: Vec<WriteRequest> = chunk
            .iter()
            .map(|id| {
                let put = PutRequest::builder()
                    .item("pk", AttributeValue::S(hog.into()))
                    .item("sk", AttributeValue::S(id.clone()))
                    .item("sha256", AttributeValue::S(digest.clone()))
                    .build()
                    .unwrap();
                WriteRequest::builder().put_request(put).build()
            })
            .collect();
        store
            .ddb
            .batch_write_item()
            .request_items(&store.config.table, requests)
            .send()
            .await
            .unwrap();
    }
    let want: Vec<(String, String)> = [
        ("9lives", "1"),
        ("9lives", "LATEST"),
        ("Zeta", "1"),
        ("Zeta", "LATEST"),
        ("alpha", "1"),
        ("alpha", "LATEST"),
    ]
    .map(|(n, v)| (n.to_owned(), v.to_owned()))
    .to_vec();
    let sorted = |hits: &[shared::model::SearchHit]| {
        let mut names: Vec<(String, String)> = hits
            .iter()
            .map(|hit| {
                (
                    hit.artifact.name.to_string(),
                    hit.artifact.version.to_string(),
                )
            })
            .collect();
        names.sort();
        names
    };
    let q = shared::query::parse(&format!("sha256='{digest}'")).unwrap();
    let found = store
        .repo
        .search_expression(&q, Some(100), None, &|_| true)
        .await
        .unwrap();
    assert_eq!(sorted(&found.items), want);
    // The plain form alike, and the uploads cost it no reads: the two
    // name ranges in one round trip, then the rows.
    let plain = shared::model::SearchQuery::Sha256(digest.parse().unwrap());
    let (found, calls) = counted(
        &store.repo,
        store.repo.search(&plain, Some(100), None, &|_| true),
    )
    .await;
    assert_eq!(sorted(&found.unwrap().items), want);
    assert_eq!(calls, 3, "two Queries at once, one BatchGetItem");
    // Paged two by two, across both ranges: each version once.
    let (mut paged, mut cursor) = (Vec::new(), None);
    for _ in 0..want.len() {
        let page = store
            .repo
            .search(&plain, Some(2), cursor.as_deref(), &|_| true)
            .await
            .unwrap();
        paged.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(cursor, None);
    assert_eq!(sorted(&paged), want);
    // A cursor naming a service partition is none this search gave.
    let forged = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{hog}\nu00001"))
    };
    let refused = store
        .repo
        .search(&plain, Some(2), Some(&forged), &|_| true)
        .await;
    assert_eq!(
        refused.map(|_| ()).map_err(|e| e.code()),
        Err("InvalidRequest")
    );
}
