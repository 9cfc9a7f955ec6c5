//! Interoperability with the Python library `versioned` 1.0.1 (SPEC 3): on
//! one emulator, bucket and table, each side reads what the other wrote.

use base64::Engine;
use shared::model::{AliasTarget, ChangeRequest, LOCAL_ACTOR};
use shared::{Version, Weight};
use test_support::{TestStore, alias, name, sha256_hex};

#[tokio::test]
async fn the_repository_reads_what_the_library_wrote() {
    let store = TestStore::new().await;
    let written = store.library(&["write"]);
    let n = name("py-app");

    let names = store
        .repo
        .list_artifact_names(None, None, &|_| true)
        .await
        .unwrap();
    assert_eq!(names.items, std::slice::from_ref(&n));

    let versions = store.repo.list_versions(&n, None, None).await.unwrap();
    let ours: Vec<(String, String, String)> = versions
        .items
        .iter()
        .map(|a| (a.version.to_string(), a.sha256.clone(), a.s3uri.clone()))
        .collect();
    let theirs: Vec<(String, String, String)> = written["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap().into(),
                v["sha256"].as_str().unwrap().into(),
                v["s3uri"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(ours, theirs);
    assert_eq!(
        ours.iter().map(|v| v.0.as_str()).collect::<Vec<_>>(),
        ["LATEST", "2", "1"]
    );

    for (version, content) in [
        (Version::Number(1), &b"python one"[..]),
        (Version::Number(2), b"python two"),
        (Version::Latest, b"python two"),
    ] {
        let artifact = store.repo.get_version(&n, version).await.unwrap();
        assert_eq!(artifact.sha256, sha256_hex(content));
        assert_eq!(
            store
                .download(artifact.download_url.as_deref().unwrap())
                .await,
            content
        );
    }

    let canary = store.repo.get_alias(&n, &alias("canary")).await.unwrap();
    assert_eq!(canary.version, Version::Number(1));
    assert_eq!(canary.secondary_version, Some(Version::Number(2)));
    assert_eq!(
        canary.secondary_version_weight,
        Some(Weight::new(20).unwrap())
    );
    assert_eq!(
        canary.version_s3uri,
        written["get_alias"]["canary"]["version_s3uri"]
            .as_str()
            .unwrap()
    );
    let listed: Vec<String> = store
        .repo
        .list_aliases(&n, None, None)
        .await
        .unwrap()
        .items
        .iter()
        .map(|a| a.alias.to_string())
        .collect();
    assert_eq!(listed, ["canary", "prod"]);
    let resolved = store
        .repo
        .resolve_alias(&n, &alias("prod"), None)
        .await
        .unwrap();
    assert_eq!(resolved.sha256, sha256_hex(b"python one"));
    assert_eq!(store.download(&resolved.download_url).await, b"python one");

    // The repository keeps writing where the library stopped: numbering
    // continues, and versions the library's aliases target stay protected.
    store.upload(&n, b"rust three").await;
    let published = store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(published.artifact.version, Version::Number(3));
    assert!(
        store
            .repo
            .delete_version(
                &n,
                Version::Number(1),
                None,
                shared::repository::Allowed::already()
            )
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_library_reads_what_the_repository_wrote() {
    let store = TestStore::new().await;
    let n = name("rs-app");
    store.upload(&n, b"rust one").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    store.upload(&n, b"rust two").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    let prod = AliasTarget {
        version: Version::Number(1),
        secondary: Some((Version::Number(2), Weight::new(30).unwrap())),
    };
    store
        .repo
        .put_alias(&n, &alias("prod"), prod, &ChangeRequest::default())
        .await
        .unwrap();
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

    let read = store.library_after_mirror(&["read", "rs-app"]).await;
    assert_eq!(read["names"], serde_json::json!(["rs-app"]));
    let ours = store.repo.list_versions(&n, None, None).await.unwrap();
    let theirs = read["versions"].as_array().unwrap();
    assert_eq!(theirs.len(), ours.items.len());
    for (mine, lib) in ours.items.iter().zip(theirs) {
        assert_eq!(lib["version"].as_str().unwrap(), mine.version.to_string());
        assert_eq!(lib["sha256"].as_str().unwrap(), mine.sha256);
        assert_eq!(lib["s3uri"].as_str().unwrap(), mine.s3uri);
        let got = &read["get"][mine.version.to_string()];
        assert_eq!(got["sha256"].as_str().unwrap(), mine.sha256);
        let content = base64::engine::general_purpose::STANDARD
            .decode(read["content"][mine.version.to_string()].as_str().unwrap())
            .unwrap();
        assert_eq!(
            sha256_hex(&content),
            mine.sha256,
            "library downloads the bytes of {}",
            mine.version
        );
    }
    let lib_prod = &read["get_alias"]["prod"];
    assert_eq!(lib_prod["version"], "1");
    assert_eq!(lib_prod["secondary_version"], "2");
    assert_eq!(lib_prod["secondary_version_weight"], 30);
    assert_eq!(read["get_alias"]["edge"]["version"], "LATEST");
    assert_eq!(read["aliases"].as_array().unwrap().len(), 2);
}

/// The library and the service writing the same artifact in turn (SPEC
/// 7.14): each write is read back by the other side with the bytes and the
/// numbering of both, the library's LATEST is adopted into the blob store
/// when the service publishes it, and the library reads the service's
/// writes once the mirror has caught up.
#[tokio::test]
async fn the_library_and_the_service_writing_in_turn_read_each_others_writes() {
    let store = TestStore::new().await;
    let n = name("mixed");
    let call = |method: &str, kwargs: serde_json::Value| {
        store.library(&["call", method, &kwargs.to_string()])
    };
    // 1: the service.
    store.upload(&n, b"service one").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    store.drain_mirror().await;
    // 2: the library, on top of what it reads of ours.
    call(
        "put_artifact",
        serde_json::json!({"name": "mixed", "content": "library two"}),
    );
    let published = call(
        "publish_artifact_version",
        serde_json::json!({"name": "mixed"}),
    );
    assert_eq!(published["version"], "2", "the library numbers after ours");
    // 3: the service publishes the library's LATEST unchanged (the newest
    // version), then commits and publishes its own bytes.
    let again = store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.artifact.version, Version::Number(2));
    call(
        "put_artifact",
        serde_json::json!({"name": "mixed", "content": "library three"}),
    );
    // A LATEST the library wrote is adopted when the service publishes it.
    let adopted = store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(adopted.artifact.version, Version::Number(3));
    assert_eq!(adopted.artifact.sha256, sha256_hex(b"library three"));
    store.upload(&n, b"service four").await;
    let four = store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(four.artifact.version, Version::Number(4));

    let expected: [(&str, &[u8]); 5] = [
        ("LATEST", b"service four"),
        ("4", b"service four"),
        ("3", b"library three"),
        ("2", b"library two"),
        ("1", b"service one"),
    ];
    // The service serves every version's bytes...
    for (version, bytes) in expected {
        let got = store
            .repo
            .get_version(&n, version.parse().unwrap())
            .await
            .unwrap();
        assert_eq!(
            store.download(got.download_url.as_deref().unwrap()).await,
            bytes,
            "service reads {version}"
        );
    }
    // ...and so does the library once the mirror has caught up.
    let read = store.library_after_mirror(&["read", "mixed"]).await;
    for (version, bytes) in expected {
        let content = base64::engine::general_purpose::STANDARD
            .decode(read["content"][version].as_str().unwrap())
            .unwrap();
        assert_eq!(content, bytes, "library reads {version}");
    }
}

/// Rows the previous release wrote: bytes at the library's keys, pinned by
/// S3 object version (`s3_version_id`), no blob. They read, publish (the
/// LATEST is adopted into the blob store from the pinned version, not from
/// whatever the key holds now) and delete.
#[tokio::test]
async fn rows_the_previous_release_wrote_read_publish_and_delete() {
    use aws_sdk_dynamodb::types::AttributeValue as Av;
    let store = TestStore::new().await;
    let n = name("legacy");
    let layout = store.repo.layout();
    let put = |version: Version, bytes: &'static [u8]| {
        let s3 = store.s3.clone();
        let bucket = store.config.bucket.clone();
        let key = layout.object_key(&n, version);
        async move {
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .metadata("artifact_name", "legacy")
                .metadata("artifact_sha256", sha256_hex(bytes))
                .body(bytes.to_vec().into())
                .send()
                .await
                .unwrap()
                .version_id()
                .unwrap()
                .to_owned()
        }
    };
    let row = |version: Version, bytes: &[u8], s3_version: &str| {
        let mut item = std::collections::HashMap::from([
            ("pk".to_owned(), Av::S("legacy".into())),
            ("sk".to_owned(), Av::S(version.sort_key())),
            ("sha256".to_owned(), Av::S(sha256_hex(bytes))),
            ("is_deleted".to_owned(), Av::Bool(false)),
            (
                "update_at".to_owned(),
                Av::S("2026-01-02T03:04:05.000000+0000".into()),
            ),
            ("size".to_owned(), Av::N(bytes.len().to_string())),
            ("s3_version_id".to_owned(), Av::S(s3_version.to_owned())),
        ]);
        if version.is_latest() {
            item.insert("last_version".into(), Av::N("1".into()));
        }
        item
    };
    let v1 = put(Version::Number(1), b"release one").await;
    let latest = put(Version::Latest, b"release two").await;
    // The key moved on after the row was written (a racing commit of the
    // previous release): the row's pinned version is no longer current.
    put(Version::Latest, b"someone else").await;
    for item in [
        row(Version::Number(1), b"release one", &v1),
        row(Version::Latest, b"release two", &latest),
    ] {
        store
            .ddb
            .put_item()
            .table_name(&store.config.table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }

    for (version, bytes) in [
        (Version::Number(1), &b"release one"[..]),
        (Version::Latest, b"release two"),
    ] {
        let got = store.repo.get_version(&n, version).await.unwrap();
        assert_eq!(
            store.download(got.download_url.as_deref().unwrap()).await,
            bytes,
            "reads {version}"
        );
    }
    let published = store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(published.artifact.version, Version::Number(2));
    assert_eq!(published.artifact.sha256, sha256_hex(b"release two"));
    let two = store
        .repo
        .get_version(&n, Version::Number(2))
        .await
        .unwrap();
    assert_eq!(
        store.download(two.download_url.as_deref().unwrap()).await,
        b"release two",
        "the pinned bytes were adopted, not the key's current ones"
    );
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
    let live: Vec<Version> = store
        .repo
        .list_versions(&n, None, None)
        .await
        .unwrap()
        .items
        .iter()
        .map(|a| a.version)
        .collect();
    assert_eq!(live, [Version::Latest, Version::Number(2)]);
}

/// A LATEST the library wrote that is larger than `ADOPT_COPY_MAX_BYTES`
/// is not copied by the publish request (issue 24: up to 5 GiB in a 15 s
/// function, repeated by a retry): publish answers with an upload whose
/// parts S3 copied in parallel from the library's pinned object; its
/// verification hashes them, commits the same bytes as LATEST in the blob
/// store and publishes them. A publish retried meanwhile answers with the
/// same upload instead of copying again.
#[tokio::test]
async fn a_large_library_latest_is_copied_in_parts_and_published_by_its_verification() {
    use shared::model::PublishOutcome;
    use shared::repository::{Verifier, VerifyStep};
    const MIB: usize = 1024 * 1024;
    let store = TestStore::with_settings(&[("ADOPT_COPY_MAX_BYTES", "1024")]).await;
    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("big");
    store.upload(&n, b"service one").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    // 12 MiB: three parts of 5 MiB at least (S3's minimum).
    let bytes: Vec<u8> = (0..12 * MIB).map(|i| (i % 251) as u8).collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    store.library(&[
        "call",
        "put_artifact",
        &serde_json::json!({"name": "big", "content_file": file.path()}).to_string(),
    ]);

    let PublishOutcome::Adopting { upload_id } = repo
        .publish(
            &n,
            false,
            "ci",
            None,
            shared::repository::Allowed::already(),
        )
        .await
        .unwrap()
    else {
        panic!("a large LATEST of the library is adopted in the background");
    };
    let state = repo.upload_state(&n, &upload_id).await.unwrap();
    assert_eq!(state.state, "verifying");
    assert_eq!(
        state.multipart.map(|p| (p.part_size, p.part_count)),
        Some((5 * MIB as u64, 3))
    );
    // A retry (the answer lost) answers with the same upload: no new copy.
    assert_eq!(
        repo.publish(
            &n,
            false,
            "ci",
            None,
            shared::repository::Allowed::already()
        )
        .await
        .unwrap(),
        PublishOutcome::Adopting {
            upload_id: upload_id.clone()
        }
    );
    let refused = repo.publish_version(&n, false, "ci").await.unwrap_err();
    assert!(refused.to_string().contains(&upload_id), "{refused}");
    // Meanwhile the library reads its LATEST (which records the adoption)
    // as it wrote it.
    let read = store.library_after_mirror(&["read", "big"]).await;
    let latest = base64::engine::general_purpose::STANDARD
        .decode(read["content"]["LATEST"].as_str().unwrap())
        .unwrap();
    assert!(latest == bytes, "the library reads its LATEST");

    let committed = loop {
        match repo.verify_upload_step(&n, &upload_id, None).await.unwrap() {
            VerifyStep::Continue { .. } => continue,
            VerifyStep::Committed(c) => break c,
            other => panic!("the copied bytes are the library's: {other:?}"),
        }
    };
    assert_eq!(committed.artifact.sha256, sha256_hex(&bytes));
    let state = repo.upload_state(&n, &upload_id).await.unwrap();
    assert_eq!(state.state, "committed");
    let published = state.published.expect("the verification published");
    assert_eq!(published["version"], "2");
    assert_eq!(published["created"], true);
    assert_eq!(published["created_by"], "ci");

    // Version 2 serves the library's bytes from the blob store, and a
    // publish now finds LATEST unchanged.
    let two = repo.get_version(&n, Version::Number(2)).await.unwrap();
    assert_eq!(two.sha256, sha256_hex(&bytes));
    let url = two.download_url.as_deref().unwrap();
    assert!(url.contains(".blobs/"), "served from the blob store: {url}");
    assert_eq!(store.download(url).await, bytes);
    match repo
        .publish(
            &n,
            false,
            "ci",
            None,
            shared::repository::Allowed::already(),
        )
        .await
        .unwrap()
    {
        PublishOutcome::Published(p) => {
            assert!(!p.created);
            assert_eq!(p.artifact.version, Version::Number(2));
        }
        other => panic!("LATEST is unchanged: {other:?}"),
    }
    // The library reads it too.
    let read = store.library_after_mirror(&["read", "big"]).await;
    let content = base64::engine::general_purpose::STANDARD
        .decode(read["content"]["2"].as_str().unwrap())
        .unwrap();
    assert_eq!(content, bytes);
}

/// SPEC 10.2: every alias change is an event — also the library's, which
/// writes the alias row and no history entry (told from the row: revision
/// 0); this service's move is one event (its history entry's), not two.
#[tokio::test]
async fn an_alias_the_library_moves_is_an_alias_changed_event_and_ours_is_one() {
    let store = TestStore::new().await;
    let n = name("app");
    store.publish_each(&n, &[b"one", b"two"]).await;
    store
        .repo
        .put_alias(
            &n,
            &alias("prod"),
            AliasTarget {
                version: Version::Number(1),
                secondary: None,
            },
            &ChangeRequest::default(),
        )
        .await
        .unwrap();
    store.drain_mirror().await;
    store.library(&[
        "call",
        "put_alias",
        &serde_json::json!({"name": "app", "alias": "prod", "version": 2}).to_string(),
    ]);
    let changes: Vec<serde_json::Value> = store
        .drain_events()
        .await
        .into_iter()
        .filter(|e| e.detail_type == "Alias Changed")
        .map(|e| e.detail)
        .collect();
    assert_eq!(changes.len(), 2, "{changes:#?}");
    assert_eq!(
        (&changes[0]["revision"], &changes[0]["after"]["version"]),
        (&serde_json::json!(1), &serde_json::json!("1"))
    );
    assert_eq!(
        (
            &changes[1]["revision"],
            &changes[1]["after"]["version"],
            &changes[1]["previous"]["version"]
        ),
        (
            &serde_json::json!(0),
            &serde_json::json!("2"),
            &serde_json::json!("1")
        )
    );
}
