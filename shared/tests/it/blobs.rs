//! The content-addressed blob store (SPEC 3.1, 4.1, 7.10–7.12): uploads of
//! bytes the artifact holds transfer nothing, an upload is committed at most
//! once, and a purge racing writers never leaves a row without bytes.

use base64::Engine;
use futures::future::join_all;
use shared::model::{Artifact, ChangeRequest, LOCAL_ACTOR};
use shared::{ArtifactName, Error, Repository, Version};
use test_support::{TestStore, alias, declare, name, put_bytes, sha256_hex, to};

/// The objects under the artifact's blob prefix (every version).
async fn blob_versions(store: &TestStore, n: &ArtifactName) -> usize {
    let out = store
        .s3
        .list_object_versions()
        .bucket(&store.config.bucket)
        .prefix(store.repo.layout().blob_prefix(n))
        .send()
        .await
        .unwrap();
    out.versions().len()
}

#[tokio::test]
async fn starting_an_upload_of_bytes_the_artifact_holds_answers_exists_and_nothing_is_transferred()
{
    let store = TestStore::new().await;
    let n = name("dedup");
    store.upload(&n, b"first build").await;
    store.upload(&n, b"second build").await;
    assert_eq!(blob_versions(&store, &n).await, 2);

    // GIVEN the artifact holds "first build" (no longer LATEST)
    // WHEN it is uploaded again
    let ticket = store
        .repo
        .create_upload(&n, declare(b"first build"), LOCAL_ACTOR)
        .await
        .unwrap();
    // THEN there is nothing to PUT, and the commit makes it LATEST.
    assert!(ticket.exists);
    assert!(ticket.url.is_none() && ticket.headers.is_none());
    let committed = store
        .repo
        .commit_upload(&n, &ticket.upload_id, LOCAL_ACTOR)
        .await
        .unwrap();
    assert!(committed.changed);
    assert_eq!(committed.artifact.sha256, sha256_hex(b"first build"));
    assert_eq!(
        blob_versions(&store, &n).await,
        2,
        "no byte was stored again"
    );
    let latest = store.repo.get_version(&n, Version::Latest).await.unwrap();
    assert_eq!(
        store
            .download(latest.download_url.as_deref().unwrap())
            .await,
        b"first build"
    );

    // Bytes the artifact never held need a transfer.
    let fresh = store
        .repo
        .create_upload(&n, declare(b"third build"), LOCAL_ACTOR)
        .await
        .unwrap();
    assert!(!fresh.exists && fresh.url.is_some());
}

#[tokio::test]
async fn an_upload_committed_then_superseded_is_refused_when_its_url_is_used_and_committed_again() {
    let store = TestStore::new().await;
    let n = name("replay");
    let old = store
        .repo
        .create_upload(&n, declare(b"old"), LOCAL_ACTOR)
        .await
        .unwrap();
    put_bytes(&store.http, &old, b"old").await;
    store
        .repo
        .commit_upload(&n, &old.upload_id, LOCAL_ACTOR)
        .await
        .unwrap();
    store.upload(&n, b"new").await;

    // The old URL still works at S3 (it has not expired)...
    put_bytes(&store.http, &old, b"old").await;
    // ...but the old upload never becomes LATEST again.
    let err = store
        .repo
        .commit_upload(&n, &old.upload_id, LOCAL_ACTOR)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UploadSuperseded { .. }), "{err:?}");
    let latest = store.repo.get_version(&n, Version::Latest).await.unwrap();
    assert_eq!(latest.sha256, sha256_hex(b"new"));
}

#[tokio::test]
async fn a_commit_of_bytes_that_never_arrived_is_refused_and_writes_nothing() {
    let store = TestStore::new().await;
    let n = name("missing");
    let ticket = store
        .repo
        .create_upload(&n, declare(b"never sent"), LOCAL_ACTOR)
        .await
        .unwrap();
    let err = store
        .repo
        .commit_upload(&n, &ticket.upload_id, LOCAL_ACTOR)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UploadMismatch(_)), "{err:?}");
    assert!(store.items_besides_uploads().await.is_empty());
}

#[tokio::test]
async fn an_artifact_is_listed_right_after_its_first_commit_without_any_library_object() {
    let store = TestStore::new().await;
    let n = name("fresh");
    store.upload(&n, b"bytes").await;
    let objects = store
        .s3
        .list_objects_v2()
        .bucket(&store.config.bucket)
        .prefix(store.repo.layout().store_prefix())
        .send()
        .await
        .unwrap();
    assert_eq!(
        objects.key_count(),
        Some(0),
        "nothing in the library's layout"
    );
    let names = store
        .repo
        .list_artifact_names(None, None, &|_| true)
        .await
        .unwrap();
    assert_eq!(names.items, [n]);
}

/// Every live row of `n` serves bytes matching its sha256.
async fn audit(store: &TestStore, repo: &Repository, n: &ArtifactName) -> Vec<String> {
    let mut problems = Vec::new();
    let mut rows: Vec<Artifact> = Vec::new();
    match repo.list_versions(n, Some(1000), None).await {
        Ok(page) => rows.extend(page.items),
        Err(Error::ArtifactNotFound { .. }) => {}
        Err(e) => problems.push(format!("list: {e:?}")),
    }
    for row in rows {
        match repo.get_version(n, row.version).await {
            Ok(v) => {
                let url = v.download_url.unwrap_or_default();
                let response = store.http.get(&url).send().await.unwrap();
                let status = response.status();
                let bytes = response.bytes().await.unwrap_or_default();
                if !status.is_success() || sha256_hex(&bytes) != v.sha256 {
                    problems.push(format!(
                        "{n} {}: {status}, bytes do not match sha256 {}",
                        v.version, v.sha256
                    ));
                }
            }
            // Deleted or purged between the listing and the read.
            Err(Error::VersionNotFound { .. } | Error::ArtifactNotFound { .. }) => {}
            Err(e) => problems.push(format!("get {}: {e:?}", row.version)),
        }
    }
    problems
}

#[tokio::test]
async fn a_purge_racing_commits_publishes_and_alias_moves_never_leaves_a_row_without_bytes() {
    const TRIALS: usize = 32;
    let store = &TestStore::new().await;
    let repo = &store.repo;
    let trial = |i: usize| async move {
        let n = name(&format!("race-{i}"));
        store.upload(&n, format!("base {i}").as_bytes()).await;
        repo.publish_version(&n, false, LOCAL_ACTOR).await.unwrap();
        repo.put_alias(&n, &alias("prod"), to(1), &ChangeRequest::default())
            .await
            .unwrap();
        // A second upload, started and transferred before the race.
        let bytes = format!("racing {i}").into_bytes();
        let ticket = repo
            .create_upload(&n, declare(&bytes), LOCAL_ACTOR)
            .await
            .unwrap();
        put_bytes(&store.http, &ticket, &bytes).await;

        let change = ChangeRequest::default();
        let commit = repo.commit_upload(&n, &ticket.upload_id, LOCAL_ACTOR);
        let publish = repo.publish_version(&n, true, LOCAL_ACTOR);
        let prod = alias("prod");
        let move_alias = repo.put_alias(&n, &prod, to(1), &change);
        let purge = repo.purge_artifact(&n);
        let fresh = async {
            // An upload started while the purge may be running.
            match repo.create_upload(&n, declare(b"late"), LOCAL_ACTOR).await {
                Ok(t) => {
                    if !t.exists {
                        put_bytes(&store.http, &t, b"late").await;
                    }
                    repo.commit_upload(&n, &t.upload_id, LOCAL_ACTOR)
                        .await
                        .map(|_| ())
                }
                Err(e) => Err(e),
            }
        };
        let (c, p, a, purged, f) = tokio::join!(commit, publish, move_alias, purge, fresh);
        let mut problems = Vec::new();
        if let Err(e) = purged {
            problems.push(format!("{n}: purge failed: {e:?}"));
        }
        for (what, result) in [
            ("commit", c.map(|_| ())),
            ("publish", p.map(|_| ())),
            ("alias", a.map(|_| ())),
            ("late upload", f),
        ] {
            // A writer either landed or got a clear conflict / not-found.
            if let Err(e) = result
                && !matches!(
                    e.kind(),
                    shared::error::ErrorKind::Conflict
                        | shared::error::ErrorKind::NotFound
                        | shared::error::ErrorKind::PreconditionFailed
                )
            {
                problems.push(format!("{n}: {what}: {e:?}"));
            }
        }
        problems.extend(audit(store, repo, &n).await);
        problems
    };
    let problems: Vec<String> = join_all((0..TRIALS).map(trial))
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Racing commits of different uploads (SPEC 7.3, 7.14): 16 uploads
/// committed at once. LATEST is one of them and serves its recorded bytes,
/// every commit either landed or was refused with a clear conflict, and the
/// library's `get_content` of LATEST returns the same bytes once the mirror
/// has caught up.
#[tokio::test]
async fn racing_commits_leave_latest_serving_its_bytes_and_the_library_reading_the_same() {
    let store = TestStore::new().await;
    let n = name("racing");
    let contents: Vec<Vec<u8>> = (0..16)
        .map(|i| format!("build {i} ").repeat(i + 1).into_bytes())
        .collect();
    let mut ids = Vec::new();
    for bytes in &contents {
        let ticket = store
            .repo
            .create_upload(&n, declare(bytes), LOCAL_ACTOR)
            .await
            .unwrap();
        put_bytes(&store.http, &ticket, bytes).await;
        ids.push(ticket.upload_id);
    }
    let commits = ids.iter().map(|id| {
        let (repo, n) = (store.another_repository(), n.clone());
        async move { repo.commit_upload(&n, id, LOCAL_ACTOR).await }
    });
    for result in join_all(commits).await {
        match result {
            Ok(_) | Err(Error::UploadSuperseded { .. } | Error::ConcurrentModification(_)) => {}
            Err(e) => panic!("a racing commit failed unclearly: {e:?}"),
        }
    }
    let latest = store.repo.get_version(&n, Version::Latest).await.unwrap();
    let bytes = store
        .download(latest.download_url.as_deref().unwrap())
        .await;
    assert_eq!(sha256_hex(&bytes), latest.sha256);
    assert!(contents.contains(&bytes));
    let read = store.library_after_mirror(&["read", "racing"]).await;
    let library = base64::engine::general_purpose::STANDARD
        .decode(read["content"]["LATEST"].as_str().unwrap())
        .unwrap();
    assert_eq!(library, bytes, "the library reads LATEST's bytes");
}
