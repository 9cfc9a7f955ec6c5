//! Data safety under interleavings no earlier test exercised (issue 18):
//! one test per defect, each failing without its fix. Delays, holds and
//! lost answers go through the programmable proxy (`test_support::proxy`).

use std::time::Duration;

use shared::model::{ChangeRequest, CommitOutcome, LOCAL_ACTOR, UploadRequest};
use shared::repository::Allowed;
use shared::{Error, Repository, Verifier, VerifyStep, Version};
use test_support::proxy::{Action, Fault, Gate, Plan, Rule};
use test_support::{
    TestStore, alias, name, pattern as bytes, send_parts, sha256_hex, start_multipart, to,
};

const MIB: usize = 1024 * 1024;

fn declare(content: &[u8], size: usize, part_size: Option<u64>) -> UploadRequest {
    UploadRequest {
        sha256: sha256_hex(content),
        size: size as u64,
        content_type: None,
        metadata: Default::default(),
        part_size,
        key: None,
    }
}

async fn served(store: &TestStore, n: &shared::ArtifactName, version: Version) -> Vec<u8> {
    let artifact = store.repo.get_version(n, version).await.unwrap();
    store
        .download(artifact.download_url.as_deref().unwrap())
        .await
}

/// Runs verification steps of `id` until it ends.
async fn verify(repo: &Repository, n: &shared::ArtifactName, id: &str) -> VerifyStep {
    loop {
        match repo.verify_upload_step(n, id, None).await.unwrap() {
            VerifyStep::Continue { .. } => continue,
            step => return step,
        }
    }
}

// Item 1: a declaration of held bytes with a wrong size is refused before
// any transfer (it used to get a multipart ticket whose verification then
// deleted the held object version: every version holding it 404ed).
#[tokio::test]
async fn a_multipart_declaration_contradicting_held_bytes_is_refused_and_deletes_nothing() {
    let store = TestStore::new().await;
    let n = name("held");
    let content = b"the bytes every version serves".to_vec();
    store.upload(&n, &content).await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();

    for part_size in [Some(5 * MIB as u64), None] {
        let refused = store
            .repo
            .create_upload(&n, declare(&content, 1, part_size), LOCAL_ACTOR)
            .await;
        assert!(
            matches!(refused, Err(Error::InvalidRequest(ref m)) if m.contains("not the 1 declared")),
            "{refused:?}"
        );
    }
    assert_eq!(served(&store, &n, Version::Number(1)).await, content);
    assert_eq!(served(&store, &n, Version::Latest).await, content);
    let uploads = store
        .s3
        .list_multipart_uploads()
        .bucket(&store.config.bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "no S3 upload left behind");
}

// Item 1: a garbage multipart upload of X completed first no longer makes a
// correct upload of X fail (the correct one used to verify the garbage and
// delete it); a verification deletes only the object its own upload made.
#[tokio::test]
async fn a_garbage_upload_of_the_same_bytes_neither_fails_a_correct_one_nor_loses_its_object() {
    let store = TestStore::new().await;
    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("twins");
    let good = bytes(5 * MIB + 17, 1);
    let garbage = bytes(5 * MIB + 17, 2);
    // The garbage upload declares the good bytes' digest, sends its own.
    let bad = repo
        .create_upload(
            &n,
            declare(&good, good.len(), Some(5 * MIB as u64)),
            LOCAL_ACTOR,
        )
        .await
        .unwrap();
    let plan = bad.multipart.unwrap();
    send_parts(&repo, &store.http, &n, &bad.upload_id, &garbage, &plan).await;
    let (right, right_plan) = start_multipart(&repo, &n, &good).await;
    send_parts(&repo, &store.http, &n, &right, &good, &right_plan).await;
    assert!(matches!(
        repo.commit(&n, &bad.upload_id, "mallory").await.unwrap(),
        CommitOutcome::Verifying { .. }
    ));
    // The key holds the garbage, which a live upload is verifying: wait.
    let early = repo.commit(&n, &right, "ci").await;
    assert!(
        matches!(early, Err(Error::ConcurrentModification(ref m)) if m.contains("being verified")),
        "{early:?}"
    );
    assert!(matches!(
        verify(&repo, &n, &bad.upload_id).await,
        VerifyStep::Failed { .. }
    ));
    // Its parts were kept: the correct upload completes and verifies now.
    assert!(matches!(
        repo.commit(&n, &right, "ci").await.unwrap(),
        CommitOutcome::Verifying { .. }
    ));
    assert!(matches!(
        verify(&repo, &n, &right).await,
        VerifyStep::Committed(_)
    ));
    assert_eq!(served(&store, &n, Version::Latest).await, good);
}

// Item 2: a verification that ends after a newer commit finishes as
// `superseded` (it used to make its upload LATEST, rolling the newer one back).
#[tokio::test]
async fn a_verification_ending_after_a_newer_commit_never_rolls_latest_back() {
    let store = TestStore::new().await;
    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("ordered");
    let old = bytes(5 * MIB + 3, 3);
    let (u1, plan) = start_multipart(&repo, &n, &old).await;
    send_parts(&repo, &store.http, &n, &u1, &old, &plan).await;
    assert!(matches!(
        repo.commit(&n, &u1, "ci").await.unwrap(),
        CommitOutcome::Verifying { .. }
    ));
    let newer = store
        .repo
        .create_upload(&n, declare(b"committed after u1", 18, None), LOCAL_ACTOR)
        .await
        .unwrap();
    test_support::put_bytes(&store.http, &newer, b"committed after u1").await;
    store
        .repo
        .commit_upload(&n, &newer.upload_id, LOCAL_ACTOR)
        .await
        .unwrap();
    let step = verify(&repo, &n, &u1).await;
    assert!(matches!(step, VerifyStep::Superseded { .. }), "{step:?}");
    assert_eq!(
        served(&store, &n, Version::Latest).await,
        b"committed after u1"
    );
    let state = repo.upload_state(&n, &u1).await.unwrap();
    assert_eq!(state.state, "superseded");
    assert!(state.reason.is_some());
    assert!(matches!(
        repo.commit(&n, &u1, "ci").await,
        Err(Error::UploadSuperseded { .. })
    ));
    // The newer upload's retried commit still answers as it first did.
    let again = store
        .repo
        .commit_upload(&n, &newer.upload_id, LOCAL_ACTOR)
        .await;
    assert!(again.is_ok(), "{again:?}");
}

// Item 3: bytes stored in parts are recognised by `exists` once verified
// (a re-push used to transfer them all again), until purge removes them.
#[tokio::test]
async fn verified_multipart_bytes_are_recognised_by_start_upload_until_purged() {
    let store = TestStore::new().await;
    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("large");
    let content = bytes(5 * MIB + 99, 4);
    let (id, plan) = start_multipart(&repo, &n, &content).await;
    send_parts(&repo, &store.http, &n, &id, &content, &plan).await;
    repo.commit(&n, &id, "ci").await.unwrap();
    assert!(matches!(
        verify(&repo, &n, &id).await,
        VerifyStep::Committed(_)
    ));
    store.upload(&n, b"something else").await;

    for part_size in [Some(5 * MIB as u64), None] {
        let ticket = repo
            .create_upload(&n, declare(&content, content.len(), part_size), LOCAL_ACTOR)
            .await
            .unwrap();
        assert!(ticket.exists, "{ticket:?}");
        assert!(ticket.url.is_none() && ticket.multipart.is_none());
        let committed = repo
            .commit_upload(&n, &ticket.upload_id, LOCAL_ACTOR)
            .await
            .unwrap();
        assert_eq!(committed.artifact.sha256, sha256_hex(&content));
    }
    assert_eq!(served(&store, &n, Version::Latest).await, content);

    store.repo.purge_artifact(&n).await.unwrap();
    let ticket = repo
        .create_upload(&n, declare(&content, content.len(), None), LOCAL_ACTOR)
        .await
        .unwrap();
    assert!(!ticket.exists, "purge removed the bytes and their record");
}

// Item 4: purges of one artifact exclude each other, and the fence stays
// up until the running one ends (the second used to overwrite the fence and
// lower it while the first was still deleting).
#[tokio::test]
async fn a_second_purge_is_refused_while_the_first_runs_and_uploads_wait_for_it() {
    let store = TestStore::new().await;
    let n = name("doomed");
    store.upload(&n, b"bytes").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    let (first, gate) = purge_held_before_latest_goes(&store, &n).await;
    gate.arrived().await;

    let second = store.repo.purge_artifact(&n).await;
    assert!(
        matches!(second, Err(Error::ArtifactBeingPurged { .. })),
        "{second:?}"
    );
    let upload = store
        .repo
        .create_upload(&n, declare(b"new life", 8, None), LOCAL_ACTOR)
        .await;
    assert!(
        matches!(upload, Err(Error::ArtifactBeingPurged { .. })),
        "{upload:?}"
    );
    gate.open();
    first.await.unwrap().unwrap();
    // Once it has ended, the name starts a new life.
    store.upload(&n, b"new life").await;
    assert_eq!(served(&store, &n, Version::Latest).await, b"new life");
}

// Item 7: publishing a LATEST the library wrote, while the library is
// between its S3 PUT and its row PUT, copies nothing over the blob that
// versions serve (the copy used to replace it until a later DeleteObject).
#[tokio::test]
async fn adopting_a_library_latest_never_copies_over_bytes_versions_serve() {
    let store = TestStore::new().await;
    let n = name("shared-app");
    let content = b"build one".to_vec();
    store.upload(&n, &content).await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    store.library(&[
        "call",
        "put_artifact",
        &serde_json::json!({"name": "shared-app", "content": "build one"}).to_string(),
    ]);
    // The library's next write has reached S3, not yet its row.
    store
        .s3
        .put_object()
        .bucket(&store.config.bucket)
        .key(store.repo.layout().object_key(&n, Version::Latest))
        .body(b"build two, half written".to_vec().into())
        .send()
        .await
        .unwrap();
    let plan = Plan::new();
    let copies = plan.add(Rule::new(
        "CopyObject",
        None,
        Action::Fault(Fault::Delay),
        u64::MAX,
    ));
    let repo = store.through(&plan).await;
    let published = repo.publish_version(&n, true, LOCAL_ACTOR).await.unwrap();
    assert_eq!(published.artifact.version, Version::Number(2));
    assert_eq!(copies.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    for version in [Version::Number(1), Version::Number(2)] {
        assert_eq!(served(&store, &n, version).await, content);
    }
}

// Item 8: a reclaim interrupted after it condemned a blob is finished by
// the next pass (the condemned item used to block those bytes for ever).
#[tokio::test]
async fn a_reclaim_interrupted_after_condemning_a_blob_is_finished_by_the_next_pass() {
    let store = TestStore::new().await;
    let n = name("reclaimed");
    store.upload(&n, b"old bytes").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    store.upload(&n, b"new bytes").await;
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
    let plan = Plan::new();
    plan.add(Rule::new(
        "ListObjectVersions",
        Some(&sha256_hex(b"old bytes")),
        Action::Fault(Fault::Status500),
        u64::MAX,
    ));
    let faulty = store.through(&plan).await;
    assert!(faulty.reclaim(&n, Duration::ZERO).await.is_err());
    let blocked = store
        .repo
        .create_upload(&n, declare(b"old bytes", 9, None), LOCAL_ACTOR)
        .await;
    assert!(blocked.is_err(), "the deletion is under way: {blocked:?}");

    store.repo.reclaim(&n, Duration::ZERO).await.unwrap();
    let ticket = store
        .repo
        .create_upload(&n, declare(b"old bytes", 9, None), LOCAL_ACTOR)
        .await
        .unwrap();
    assert!(!ticket.exists, "the bytes were deleted, and may come back");
    assert_eq!(served(&store, &n, Version::Number(2)).await, b"new bytes");
}

// Review finding (SPEC 7.10, 7.15): adopting a LATEST the library wrote
// marked it as stored in the blob store with no check that a reclaim was
// deleting that very blob: the library put back bytes being reclaimed, a
// publish adopted them (the blob still there), and the reclaim then
// deleted the blob under LATEST. The mark now carries the reclaim's and
// the purge's checks, as every write pointing a row at a blob does.
#[tokio::test]
async fn a_library_latest_is_never_adopted_into_a_blob_a_reclaim_is_deleting() {
    let store = TestStore::new().await;
    let n = name("adopt-reclaimed");
    with_reclaimable_version(&store, &n).await;
    // GIVEN a pass that condemned the bytes of version 1, found nothing
    // referencing them, and is about to delete them.
    let (held, gate) = store.held_before("DeleteObjects", None).await;
    let pass = {
        let n = n.clone();
        tokio::spawn(async move { held.reclaim(&n, Duration::ZERO).await })
    };
    gate.arrived().await;
    // WHEN the library puts those bytes back as LATEST and a publish
    // adopts them.
    store.library(&[
        "call",
        "put_artifact",
        &serde_json::json!({"name": n.as_str(), "content": "old bytes"}).to_string(),
    ]);
    let published = store.repo.publish_version(&n, false, LOCAL_ACTOR).await;
    assert!(
        published.is_err(),
        "the bytes are being reclaimed: {published:?}"
    );
    gate.open();
    pass.await.unwrap().unwrap();
    // THEN once the reclaim deleted the blob, LATEST still serves its bytes.
    assert_eq!(served(&store, &n, Version::Latest).await, b"old bytes");
    assert_eq!(served(&store, &n, Version::Number(2)).await, b"new bytes");
}

// Review finding (SPEC 7.17): between reading an artifact's partitions and
// deleting the last of what it read (rows, then the blob records, the
// event log and the registry row) a purge did not renew its fence, which
// on an artifact of thousands of rows lapses (PURGE_FENCE_STALE): writers
// passed it, and the purge went on deleting what it had read before, such
// as the verified record of bytes a commit had just relied on. It now
// renews (and stops when the fence lapsed) before each slice it deletes.
#[tokio::test]
async fn a_purge_whose_fence_lapsed_while_it_deleted_rows_deletes_nothing_more() {
    let store = TestStore::new().await;
    let n = name("purge-lapsed");
    store.publish_each(&n, &[b"one", b"two"]).await;
    let log = (shared::layout::events_pk(&n), shared::layout::EVENT_LOG_SK);
    assert!(store.raw_item(&log.0, log.1).await.is_some());
    // GIVEN a purge held before it deletes the version rows.
    let (held, gate) = store.held_before("BatchWriteItem", Some("000001")).await;
    let purge = {
        let n = n.clone();
        tokio::spawn(async move { held.purge_artifact(&n).await })
    };
    gate.arrived().await;
    // WHEN its fence lapses meanwhile.
    store.lapse_purge_fence(&n).await;
    gate.open();
    // THEN it stops there: what it read before and was to delete after
    // the rows stays, for the purge that takes over.
    let stopped = purge.await.unwrap();
    assert!(
        matches!(stopped, Err(Error::ArtifactBeingPurged { .. })),
        "{stopped:?}"
    );
    assert!(
        store.raw_item(&log.0, log.1).await.is_some(),
        "the event log was deleted after the fence lapsed"
    );
    store.repo.purge_artifact(&n).await.unwrap();
    assert!(store.raw_item(&log.0, log.1).await.is_none());
}

// Item 9: a publish whose number reservation (or version write) lost its
// answer takes exactly one number (it used to skip one, or take two).
#[tokio::test]
async fn publishes_whose_answers_were_lost_take_consecutive_numbers() {
    let store = TestStore::new().await;
    let n = name("numbered");
    for (round, force, lost) in [
        (1, false, "GetItem"),
        (2, true, "GetItem"),
        (3, false, "TransactWriteItems"),
        (4, true, "TransactWriteItems"),
    ] {
        store.upload(&n, format!("build {round}").as_bytes()).await;
        let plan = Plan::new();
        let rule = plan.add(Rule::new(
            lost,
            Some(n.as_str()),
            Action::Fault(Fault::ResetAfter),
            1,
        ));
        let repo = store.through(&plan).await;
        let published = repo.publish_version(&n, force, LOCAL_ACTOR).await.unwrap();
        assert_eq!(rule.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(published.artifact.version, Version::Number(round), "{lost}");
        assert!(published.created);
    }
    let versions: Vec<Version> = store
        .repo
        .list_versions(&n, None, None)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|a| a.version)
        .collect();
    assert_eq!(
        versions,
        [
            Version::Latest,
            Version::Number(4),
            Version::Number(3),
            Version::Number(2),
            Version::Number(1)
        ]
    );
}

// Item 10: a verification checkpoint whose answer was lost goes on (the
// retried write used to fail on its own first write and stop: idle).
#[tokio::test]
async fn a_checkpoint_whose_answer_was_lost_goes_on() {
    let store = TestStore::with_settings(&[("VERIFY_BUDGET_BYTES", "1")]).await;
    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("checkpointed");
    let content = bytes(2 * 5 * MIB + 5, 5);
    let (id, plan) = start_multipart(&repo, &n, &content).await;
    send_parts(&repo, &store.http, &n, &id, &content, &plan).await;
    repo.commit(&n, &id, "ci").await.unwrap();
    let faults = Plan::new();
    let lost = faults.add(Rule::new(
        "UpdateItem",
        Some(&id),
        Action::Fault(Fault::ResetAfter),
        1,
    ));
    let lossy = store
        .through(&faults)
        .await
        .with_verifier(Verifier::Deferred);
    let step = lossy.verify_upload_step(&n, &id, None).await.unwrap();
    assert_eq!(lost.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        step,
        VerifyStep::Continue {
            verified_bytes: 8 * MIB as u64
        }
    );
    assert!(matches!(
        verify(&repo, &n, &id).await,
        VerifyStep::Committed(_)
    ));
}

// Item 13: purging what does not exist writes nothing; a failed upload-row
// write aborts the S3 multipart upload it started.
#[tokio::test]
async fn purging_a_missing_artifact_writes_nothing() {
    let store = TestStore::new().await;
    let repo = store.another_repository();
    let missing = repo.purge_artifact(&name("never-was")).await;
    assert!(matches!(missing, Err(Error::ArtifactNotFound { .. })));
    let written: Vec<String> = repo
        .operations()
        .into_iter()
        .filter(|op| !["Query", "GetItem", "ListObjectVersions"].contains(&op.as_str()))
        .collect();
    assert!(written.is_empty(), "{written:?}");
    assert!(store.raw_items().await.is_empty());
}

#[tokio::test]
async fn a_multipart_start_whose_row_cannot_be_written_leaves_no_s3_upload() {
    let store = TestStore::new().await;
    let n = name("orphan");
    let plan = Plan::new();
    plan.add(Rule::new(
        "TransactWriteItems",
        Some("orphan"),
        Action::Fault(Fault::Status500),
        u64::MAX,
    ));
    let faulty = store.through(&plan).await;
    let content = bytes(100, 6);
    let failed = faulty
        .create_upload(
            &n,
            declare(&content, content.len(), Some(5 * MIB as u64)),
            LOCAL_ACTOR,
        )
        .await;
    assert!(failed.is_err());
    let uploads = store
        .s3
        .list_multipart_uploads()
        .bucket(&store.config.bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
}

// The emulator checks a PUT's declared SHA-256 as S3 does (moto alone
// stored any bytes and reported the declared checksum): a presigned upload
// of other bytes is refused, and nothing can be committed from it.
#[tokio::test]
async fn a_presigned_put_of_other_bytes_is_refused_and_cannot_be_committed() {
    let store = TestStore::new().await;
    let n = name("honest");
    let ticket = store
        .repo
        .create_upload(&n, declare(b"declared bytes", 14, None), LOCAL_ACTOR)
        .await
        .unwrap();
    let mut put = store
        .http
        .put(ticket.url.as_deref().unwrap())
        .body(b"sent otherwise".to_vec());
    for (k, v) in ticket.headers.iter().flatten() {
        put = put.header(k, v);
    }
    let response = put.send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.text().await.unwrap().contains("BadDigest"));
    let commit = store
        .repo
        .commit_upload(&n, &ticket.upload_id, LOCAL_ACTOR)
        .await;
    assert!(
        matches!(commit, Err(Error::UploadMismatch(_))),
        "{commit:?}"
    );
}

/// A commit with a pipeline: publish (forced) and move `prod` at
/// `if_revision`.
fn forced_release(if_revision: Option<u64>) -> shared::model::Pipeline {
    shared::model::Pipeline {
        publish: true,
        force: true,
        alias: Some(shared::model::AliasMove {
            name: "prod".parse().unwrap(),
            weight: None,
            if_revision,
            message: None,
        }),
    }
}

/// "release 1" published as version 1 of `n`, `prod` created on it: the
/// alias's name and the alias.
async fn released_on_prod(
    store: &TestStore,
    n: &shared::ArtifactName,
) -> (shared::AliasName, shared::model::Alias) {
    store.upload(n, b"release 1").await;
    store
        .repo
        .publish_version(n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    let prod: shared::AliasName = "prod".parse().unwrap();
    let alias = store
        .repo
        .put_alias(
            n,
            &prod,
            shared::model::AliasTarget {
                version: Version::Number(1),
                secondary: None,
            },
            &ChangeRequest::default(),
        )
        .await
        .unwrap();
    (prod, alias)
}

/// Uploads `content` (a single PUT, not committed): its upload id.
async fn staged(store: &TestStore, n: &shared::ArtifactName, content: &[u8]) -> String {
    let ticket = store
        .repo
        .create_upload(n, declare(content, content.len(), None), LOCAL_ACTOR)
        .await
        .unwrap();
    // Bytes the artifact holds: nothing to send.
    if !ticket.exists {
        test_support::put_bytes(&store.http, &ticket, content).await;
    }
    ticket.upload_id
}

async fn numbered(store: &TestStore, n: &shared::ArtifactName) -> Vec<Version> {
    store
        .repo
        .list_versions(n, None, None)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|a| a.version)
        .filter(|v| *v != Version::Latest)
        .collect()
}

// Review defect 1: a one-request commit retried after its answer was lost
// (or sent twice at once) runs its pipeline once and answers as the first
// attempt did. It used to run the pipeline again: a forced publish made a
// second version, and the alias move at `if_revision` answered 412.
#[tokio::test]
async fn a_retried_one_request_commit_runs_its_pipeline_once_and_answers_the_same() {
    let store = TestStore::new().await;
    let n = name("pipeline-once");
    let (prod, before) = released_on_prod(&store, &n).await;

    let id = staged(&store, &n, b"release 2").await;
    let pipeline = forced_release(Some(before.revision));
    let first = store
        .repo
        .commit_pipeline(&n, &id, "ci", &pipeline, Allowed::already())
        .await
        .unwrap();
    let retried = store
        .repo
        .commit_pipeline(&n, &id, "ci", &pipeline, Allowed::already())
        .await
        .unwrap();
    let answer = |o: &shared::repository::PipelineOutcome| serde_json::to_value(o).unwrap();
    assert_eq!(answer(&retried), answer(&first));
    assert_eq!(answer(&first)["published"]["version"], "2");
    assert_eq!(
        answer(&first)["alias"]["revision"],
        serde_json::json!(before.revision + 1)
    );
    assert_eq!(
        numbered(&store, &n).await,
        [Version::Number(2), Version::Number(1)]
    );

    // Two at once: one run, both answered with it.
    let id = staged(&store, &n, b"release 3").await;
    let pipeline = forced_release(None);
    let (a, b) = tokio::join!(
        store
            .repo
            .commit_pipeline(&n, &id, "ci", &pipeline, Allowed::already()),
        store
            .repo
            .commit_pipeline(&n, &id, "ci", &pipeline, Allowed::already())
    );
    assert_eq!(answer(&a.unwrap()), answer(&b.unwrap()));
    assert_eq!(
        numbered(&store, &n).await,
        [Version::Number(3), Version::Number(2), Version::Number(1)]
    );
    let history = store
        .repo
        .alias_history(&n, &prod, None, None)
        .await
        .unwrap();
    assert_eq!(history.items.len(), 3, "create, release 2, release 3");
}

// Review finding (SPEC 7.5): a start upload with `commit` and an alias
// `if_revision` checked the revision before looking for its own earlier
// run, so a client's retry (same `Idempotency-Key`) of a push whose
// answer was lost got 412: the alias had moved, by that very push. It now
// answers as the first did, as a retried commit does.
#[tokio::test]
async fn a_retried_one_request_push_with_if_revision_answers_as_the_first_did() {
    let store = TestStore::new().await;
    let n = name("push-once");
    let (_, before) = released_on_prod(&store, &n).await;
    // GIVEN LATEST holds the bytes pushed (nothing to transfer).
    store.upload(&n, b"release 2").await;
    let pipeline = forced_release(Some(before.revision));
    let push = || {
        let request = shared::model::UploadRequest {
            key: Some("build-42".to_owned()),
            ..test_support::declare(b"release 2")
        };
        store
            .repo
            .start_and_commit(&n, request, "ci", &pipeline, Allowed::already())
    };
    let first = push().await.unwrap();
    // WHEN the client sends it again THEN the same answer, nothing more.
    let retried = push().await.unwrap();
    let answer = |o: &shared::repository::StartOutcome| serde_json::to_value(o).unwrap();
    assert_eq!(answer(&retried), answer(&first));
    assert_eq!(
        answer(&first)["published"]["version"],
        "2",
        "{}",
        answer(&first)
    );
    assert_eq!(
        answer(&first)["alias"]["revision"],
        serde_json::json!(before.revision + 1)
    );
    assert_eq!(
        numbered(&store, &n).await,
        [Version::Number(2), Version::Number(1)]
    );
    // A push with another key still meets the alias's revision: 412.
    let other = store
        .repo
        .start_and_commit(
            &n,
            test_support::declare(b"release 2"),
            "ci",
            &forced_release(Some(before.revision)),
            Allowed::already(),
        )
        .await;
    assert!(
        matches!(other, Err(Error::AliasModified { .. })),
        "{other:?}"
    );
}

// Review defect 2: a verification whose pipeline was cut short (its
// publish failed) and is resumed after a newer commit never publishes the
// newer writer's LATEST as its own: it records UploadSuperseded. It used to
// publish whatever LATEST was.
#[tokio::test]
async fn a_resumed_verification_pipeline_never_publishes_another_writers_latest() {
    let store = TestStore::new().await;
    let n = name("pipeline-own");
    let content = bytes(5 * MIB + 11, 7);
    let (u1, parts) = start_multipart(&store.repo, &n, &content).await;
    send_parts(&store.repo, &store.http, &n, &u1, &content, &parts).await;
    let deferred = store.repo.clone().with_verifier(Verifier::Deferred);
    let pipeline = test_support::pipeline(None, false);
    assert!(matches!(
        deferred
            .commit_pipeline(&n, &u1, "ci", &pipeline, Allowed::already())
            .await
            .unwrap(),
        shared::repository::PipelineOutcome::Verifying { .. }
    ));
    // The verification commits u1, then every publish attempt fails.
    let plan = Plan::new();
    plan.add(Rule::new(
        "TransactWriteItems",
        Some(":read_number"),
        Action::Fault(Fault::Status500),
        1000,
    ));
    let failing = store.through(&plan).await.with_verifier(Verifier::Deferred);
    let cut = loop {
        match failing.verify_upload_step(&n, &u1, None).await {
            Ok(VerifyStep::Continue { .. }) => continue,
            other => break other,
        }
    };
    assert!(cut.is_err(), "the publish failed: {cut:?}");
    assert_eq!(
        deferred.upload_state(&n, &u1).await.unwrap().state,
        "committed"
    );

    // A newer writer commits; then the verification is retried.
    let newer = staged(&store, &n, b"a newer writer's LATEST").await;
    store
        .repo
        .commit_upload(&n, &newer, LOCAL_ACTOR)
        .await
        .unwrap();
    let step = verify(&deferred, &n, &u1).await;
    assert!(matches!(step, VerifyStep::Idle), "{step:?}");
    assert!(numbered(&store, &n).await.is_empty(), "nothing published");
    let state = deferred.upload_state(&n, &u1).await.unwrap();
    let error = state
        .pipeline_error
        .expect("the pipeline's refusal is recorded");
    assert_eq!(error["code"], "UploadSuperseded", "{error}");
}

fn status_change(
    expected: Option<shared::model::VersionStatus>,
) -> shared::repository::StatusChange {
    shared::repository::StatusChange {
        actor: "ops".into(),
        message: None,
        expected,
    }
}

// Review defect 3: an alias move racing an archive of its new target is
// refused (VersionArchived) when the archive lands first. The status was
// only checked on the move's read: the move landed on an archived version.
#[tokio::test]
async fn an_alias_move_racing_an_archive_of_its_target_is_refused() {
    use shared::model::VersionStatus;
    let store = TestStore::new().await;
    let n = name("archive-race");
    for build in [b"build 1".as_slice(), b"build 2"] {
        store.upload(&n, build).await;
        store
            .repo
            .publish_version(&n, false, LOCAL_ACTOR)
            .await
            .unwrap();
    }
    let prod: shared::AliasName = "prod".parse().unwrap();
    let at = |version| shared::model::AliasTarget {
        version,
        secondary: None,
    };
    store
        .repo
        .put_alias(&n, &prod, at(Version::Number(1)), &ChangeRequest::default())
        .await
        .unwrap();
    // The move has read version 2 (active) and waits before its transaction.
    let (repo, gate) = store.held_before("TransactWriteItems", Some("prod")).await;
    let mv = tokio::spawn({
        let n = n.clone();
        let prod = prod.clone();
        async move {
            repo.put_alias(&n, &prod, at(Version::Number(2)), &ChangeRequest::default())
                .await
        }
    });
    gate.arrived().await;
    store
        .repo
        .set_version_status(
            &n,
            Version::Number(2),
            VersionStatus::Archived,
            &status_change(None),
        )
        .await
        .unwrap();
    gate.open();
    let moved = mv.await.unwrap();
    assert!(
        matches!(moved, Err(Error::VersionArchived { .. })),
        "{moved:?}"
    );
    let alias = store.repo.get_alias(&n, &prod).await.unwrap();
    assert_eq!(alias.version, Version::Number(1));
}

// Review defect 4: a status change whose answer was lost is retried with
// the same `expected_status`: it succeeds (the version is at the status
// asked for) and refreshes the aliases. The retry used to answer 409, and
// the alias rows kept the old status (resolve gave no warning).
#[tokio::test]
async fn a_status_change_retried_after_a_lost_answer_succeeds_and_refreshes_aliases() {
    use shared::model::VersionStatus;
    let store = TestStore::new().await;
    let n = name("status-retry");
    store.upload(&n, b"build 1").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    let prod: shared::AliasName = "prod".parse().unwrap();
    store
        .repo
        .put_alias(
            &n,
            &prod,
            shared::model::AliasTarget {
                version: Version::Number(1),
                secondary: None,
            },
            &ChangeRequest::default(),
        )
        .await
        .unwrap();
    // The transaction lands; its answer is lost every time the SDK sends it.
    let plan = Plan::new();
    plan.add(Rule::new(
        "TransactWriteItems",
        Some("deprecated"),
        Action::Fault(Fault::ResetAfter),
        100,
    ));
    let repo = store.through(&plan).await;
    let change = status_change(Some(VersionStatus::Active));
    let lost = repo
        .set_version_status(&n, Version::Number(1), VersionStatus::Deprecated, &change)
        .await;
    assert!(lost.is_err(), "every answer was lost: {lost:?}");
    let retried = store
        .repo
        .set_version_status(&n, Version::Number(1), VersionStatus::Deprecated, &change)
        .await;
    assert!(retried.is_ok(), "{retried:?}");
    let resolved = store.repo.resolve_alias(&n, &prod, None).await.unwrap();
    assert!(
        serde_json::to_value(&resolved).unwrap()["warning"].is_string(),
        "resolve warns of the deprecated target: {resolved:?}"
    );
}

// Audit finding (SPEC 7.16, 10.3): a status change that landed and was cut
// off before it copied the status onto the aliases (a timeout, a failed
// call) left them telling the old one for good: resolve gave no warning of
// a deprecated target, and nothing but a repeat of the change repaired it.
// The next retention pass does.
#[tokio::test]
async fn a_status_change_cut_off_before_its_aliases_learned_it_is_finished_by_the_next_retention_pass()
 {
    use shared::model::{AliasTarget, RetentionPolicy, VersionStatus};
    let store = TestStore::new().await;
    let n = name("status-cut");
    store.upload(&n, b"build 1").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    let prod: shared::AliasName = "prod".parse().unwrap();
    let target = AliasTarget {
        version: Version::Number(1),
        secondary: None,
    };
    store
        .repo
        .put_alias(&n, &prod, target, &ChangeRequest::default())
        .await
        .unwrap();
    // GIVEN a change whose copy onto the alias fails, every time.
    let plan = Plan::new();
    plan.add(Rule::new(
        "UpdateItem",
        Some("-alias"),
        Action::Fault(Fault::Status500),
        u64::MAX,
    ));
    let repo = store.through(&plan).await;
    let cut = repo
        .set_version_status(
            &n,
            Version::Number(1),
            VersionStatus::Deprecated,
            &status_change(None),
        )
        .await;
    assert!(cut.is_err(), "the copy failed: {cut:?}");
    let warning = |resolved: &shared::model::Resolved| {
        serde_json::to_value(resolved).unwrap()["warning"].is_string()
    };
    let resolved = store.repo.resolve_alias(&n, &prod, None).await.unwrap();
    assert!(
        !warning(&resolved),
        "the alias still says active: {resolved:?}"
    );
    // A dry run changes nothing, this included.
    let policy = RetentionPolicy {
        keep_last_n: 10,
        older_than: std::time::Duration::from_secs(86_400),
    };
    store.repo.purge_versions(&n, policy, true).await.unwrap();
    let resolved = store.repo.resolve_alias(&n, &prod, None).await.unwrap();
    assert!(!warning(&resolved), "{resolved:?}");
    // WHEN the retention pass visits the artifact THEN resolve warns.
    store.repo.purge_versions(&n, policy, false).await.unwrap();
    let resolved = store.repo.resolve_alias(&n, &prod, None).await.unwrap();
    assert!(
        warning(&resolved),
        "resolve warns of the deprecated target: {resolved:?}"
    );
}

// Issue 20 review: a status change whose transaction meets another
// transaction at every attempt (DynamoDB's TransactionConflict, which the
// emulator never gives: answered by the proxy) gives up with 409 and
// changes nothing. It used to fall out of its retry loop and answer 200
// with the old status, as if the change had landed.
#[tokio::test]
async fn a_status_change_that_never_lands_is_not_answered_as_done() {
    use shared::model::VersionStatus;
    let store = TestStore::new().await;
    let n = name("status-conflict");
    store.upload(&n, b"build 1").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    let plan = Plan::new();
    let conflicts = plan.add(Rule::new(
        "TransactWriteItems",
        Some("deprecated"),
        Action::Answer {
            status: 400,
            body: test_support::proxy::TRANSACTION_CONFLICT,
        },
        u64::MAX,
    ));
    let repo = store.through(&plan).await;
    let answer = repo
        .set_version_status(
            &n,
            Version::Number(1),
            VersionStatus::Deprecated,
            &status_change(None),
        )
        .await;
    assert!(
        matches!(answer, Err(Error::ConcurrentModification(_))),
        "{answer:?}"
    );
    assert!(
        conflicts.hits.load(std::sync::atomic::Ordering::SeqCst) > 1,
        "tried again before giving up"
    );
    let row = store
        .repo
        .get_version(&n, Version::Number(1))
        .await
        .unwrap();
    assert_eq!(row.status, None, "still active: {row:?}");
}

// Issue 20 review: a change of the permission targets whose transaction
// met another transaction (DynamoDB's TransactionConflict: nothing written,
// the targets unchanged) is tried again, as every optimistic write is. It
// used to answer 412 "changed meanwhile" naming the very revision the
// caller had given.
#[tokio::test]
async fn a_change_of_the_access_targets_that_met_another_transaction_is_tried_again() {
    let store = TestStore::new().await;
    let admin = "arn:aws:iam::1:role/admin";
    let targets: shared::access::Targets = serde_json::from_value(serde_json::json!({
        "targets": [{"principals": [admin], "names": ["*"], "actions": ["admin"]}]
    }))
    .unwrap();
    let plan = Plan::new();
    let conflicts = plan.add(Rule::new(
        "TransactWriteItems",
        None,
        Action::Answer {
            status: 400,
            body: test_support::proxy::TRANSACTION_CONFLICT,
        },
        2,
    ));
    let repo = store.through(&plan).await;
    let written = repo.put_access_targets(&targets, admin, Some(0)).await;
    assert_eq!(conflicts.hits.load(std::sync::atomic::Ordering::SeqCst), 2);
    let written = written.expect("written on a later attempt");
    assert_eq!(written.revision, 1);
    let stored = store.repo.access_targets().await.unwrap();
    assert_eq!((stored.revision, stored.targets), (1, targets));
}

// Review defect 8: a purge that stalled past its fence's lease (writers
// then take the fence for a crashed purge's and commit) stops at its next
// renewal instead of deleting what they wrote. Renewal used to check only
// that the fence was still its own.
#[tokio::test]
async fn a_purge_whose_fence_lapsed_stops_before_deleting_a_later_commit() {
    let store = TestStore::new().await;
    let n = name("lapsed");
    store.upload(&n, b"before the purge").await;
    let fence = shared::layout::fence_pk(&n);
    let plan = Plan::new();
    let gate = Gate::new();
    plan.add(Rule::new(
        "PutItem",
        Some(&fence),
        Action::HoldAfter(gate.clone()),
        1,
    ));
    let repo = store.through(&plan).await;
    let purge = tokio::spawn({
        let n = n.clone();
        async move { repo.purge_artifact(&n).await }
    });
    // The fence is up; the purge stalls past its lease.
    gate.arrived().await;
    store.lapse_purge_fence(&n).await;
    store.upload(&n, b"committed after the lease lapsed").await;
    gate.open();
    let purged = purge.await.unwrap();
    assert!(
        matches!(purged, Err(Error::ArtifactBeingPurged { .. })),
        "{purged:?}"
    );
    assert_eq!(
        served(&store, &n, Version::Latest).await,
        b"committed after the lease lapsed"
    );
}

// Review defect 5: a reclaim never condemns bytes a live row still holds
// (it used to condemn first and lift after checking: interrupted between
// the two, the live bytes could be neither uploaded nor published until
// the next pass); and a condemned item left by a release that did not name
// its pass is lifted by any pass (it used to stay for ever).
#[tokio::test]
async fn a_reclaim_never_blocks_bytes_live_rows_hold() {
    let store = TestStore::new().await;
    let n = name("live-bytes");
    let held = b"bytes LATEST holds again";
    store.upload(&n, held).await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    store.upload(&n, b"another build").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    store.upload(&n, held).await;
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
    // Whatever would lift a condemned item fails.
    let plan = Plan::new();
    let condemned = shared::layout::condemned_pk(&n);
    for operation in ["DeleteItem", "UpdateItem"] {
        plan.add(Rule::new(
            operation,
            Some(&condemned),
            Action::Fault(Fault::Status500),
            u64::MAX,
        ));
    }
    let faulty = store.through(&plan).await;
    let report = faulty.reclaim(&n, Duration::ZERO).await;
    assert!(report.is_ok(), "{report:?}");
    let published = store.repo.publish_version(&n, true, LOCAL_ACTOR).await;
    assert!(
        published.is_ok(),
        "LATEST's bytes are not blocked: {published:?}"
    );
    let ticket = store
        .repo
        .create_upload(&n, declare(held, held.len(), None), LOCAL_ACTOR)
        .await
        .unwrap();
    assert!(ticket.exists);

    // An owner-less condemned item (an earlier release's) on live bytes.
    let sha = sha256_hex(b"another build");
    store
        .ddb
        .put_item()
        .table_name(&store.config.table)
        .item(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(condemned.clone()),
        )
        .item(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(sha.clone()),
        )
        .item(
            "started_at",
            aws_sdk_dynamodb::types::AttributeValue::N("0".into()),
        )
        .send()
        .await
        .unwrap();
    assert!(
        store
            .repo
            .create_upload(&n, declare(b"another build", 13, None), LOCAL_ACTOR)
            .await
            .is_err(),
        "blocked while the item stands"
    );
    store.repo.reclaim(&n, Duration::ZERO).await.unwrap();
    let ticket = store
        .repo
        .create_upload(&n, declare(b"another build", 13, None), LOCAL_ACTOR)
        .await;
    assert!(ticket.is_ok_and(|t| t.exists), "lifted by the next pass");
    assert_eq!(
        served(&store, &n, Version::Number(2)).await,
        b"another build"
    );
}

// Review defect 6: an abandoned upload left unverified garbage at the blob
// key (committed, never verified, its row gone). A later multipart upload
// of the right bytes completes its own parts over it and is verified; it
// used to give its parts up, verify the garbage, fail, and so would every
// later upload of those bytes.
#[tokio::test]
async fn an_abandoned_unverified_object_does_not_block_later_uploads_of_its_bytes() {
    let store = TestStore::new().await;
    let deferred = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("abandoned");
    let content = bytes(5 * MIB + 5, 9);
    let garbage = bytes(5 * MIB + 5, 10);
    let (abandoned, parts) = start_multipart(&deferred, &n, &content).await;
    send_parts(&deferred, &store.http, &n, &abandoned, &garbage, &parts).await;
    assert!(matches!(
        deferred.commit(&n, &abandoned, "ci").await.unwrap(),
        CommitOutcome::Verifying { .. }
    ));
    // Its verification never runs; its row goes (expired, cleaned up).
    store
        .delete_raw_key(&shared::layout::upload_pk(&n), &abandoned)
        .await;

    let (id, parts) = start_multipart(&deferred, &n, &content).await;
    send_parts(&deferred, &store.http, &n, &id, &content, &parts).await;
    assert!(matches!(
        deferred.commit(&n, &id, "ci").await.unwrap(),
        CommitOutcome::Verifying { .. }
    ));
    let step = verify(&deferred, &n, &id).await;
    assert!(matches!(step, VerifyStep::Committed(_)), "{step:?}");
    assert_eq!(served(&store, &n, Version::Latest).await, content);
    // From now on the bytes are known: a push of them transfers nothing.
    let again = deferred
        .create_upload(
            &n,
            declare(&content, content.len(), Some(5 * MIB as u64)),
            LOCAL_ACTOR,
        )
        .await
        .unwrap();
    assert!(again.exists);
}

// Checker finding (issue 19): a publish interrupted after it took its
// number and before it wrote the row left a gap (the next publish took the
// number after). The number and the row are one transaction now.
#[tokio::test]
async fn an_interrupted_publish_leaves_no_gap_in_the_numbers() {
    let store = TestStore::new().await;
    let n = name("no-gap");
    store.upload(&n, b"build 1").await;
    let plan = Plan::new();
    plan.add(Rule::new(
        "TransactWriteItems",
        Some(n.as_str()),
        Action::Fault(Fault::Status500),
        u64::MAX,
    ));
    let interrupted = store.through(&plan).await;
    assert!(
        interrupted
            .publish_version(&n, true, LOCAL_ACTOR)
            .await
            .is_err()
    );
    let published = store
        .repo
        .publish_version(&n, true, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(published.artifact.version, Version::Number(1));
    assert_eq!(numbered(&store, &n).await, [Version::Number(1)]);
}

// Checker findings 4 and 6 (issue 19; SPEC 7.8): bytes no row references
// at all (a LATEST replaced before it was published, an upload that went
// away) are deleted by reclaim after the grace period; bytes a live row or
// a pending upload holds stay. Reclaim used to start from soft-deleted
// rows only, so these stayed for ever.
#[tokio::test]
async fn reclaim_deletes_bytes_no_row_references_and_keeps_the_rest() {
    let store = TestStore::new().await;
    let n = name("unreferenced");
    store.upload(&n, b"replaced before it was published").await;
    store.upload(&n, b"published").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    let pending = staged(&store, &n, b"sent, not committed yet").await;

    let report = store
        .repo
        .reclaim(&n, Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(
        report.unreferenced.is_empty(),
        "within the grace: {report:?}"
    );
    let report = store.repo.reclaim(&n, Duration::ZERO).await.unwrap();
    assert_eq!(
        report.unreferenced,
        [sha256_hex(b"replaced before it was published")]
    );
    let again = store
        .repo
        .create_upload(
            &n,
            declare(b"replaced before it was published", 32, None),
            LOCAL_ACTOR,
        )
        .await
        .unwrap();
    assert!(!again.exists, "its bytes are gone");
    assert_eq!(served(&store, &n, Version::Number(1)).await, b"published");
    store
        .repo
        .commit_upload(&n, &pending, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(
        served(&store, &n, Version::Latest).await,
        b"sent, not committed yet"
    );
}

// Checker finding 3 (issue 19): a purge interrupted while deleting an
// alias's history left its newest entries (oldest went first), so the
// alias re-created afterwards continued a history without its beginning.
// Newest go first now: what an interruption leaves is a prefix from 1.
#[tokio::test]
async fn a_purge_interrupted_in_an_alias_history_leaves_it_gapless_from_one() {
    let store = TestStore::new().await;
    let n = name("history-purge");
    store.upload(&n, b"build").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    let prod: shared::AliasName = "prod".parse().unwrap();
    let to_one = shared::model::AliasTarget {
        version: Version::Number(1),
        secondary: None,
    };
    for _ in 0..30 {
        store
            .repo
            .put_alias(&n, &prod, to_one, &ChangeRequest::default())
            .await
            .unwrap();
    }
    // The first batch of deletions (the alias row and 24 entries) lands,
    // then every later one fails: the purge stops half-way.
    let plan = Plan::new();
    let history = format!("__{n}-history");
    plan.add(Rule::new(
        "BatchWriteItem",
        Some(&history),
        Action::Record(test_support::proxy::Recorded::new()),
        1,
    ));
    plan.add(Rule::new(
        "BatchWriteItem",
        Some(&history),
        Action::Fault(Fault::Status500),
        u64::MAX,
    ));
    let interrupted = store.through(&plan).await;
    assert!(interrupted.purge_artifact(&n).await.is_err());
    // Its fence lapses; a pipeline brings the artifact back and re-creates
    // the alias, continuing the history that is left.
    store.lapse_purge_fence(&n).await;
    store.upload(&n, b"build again").await;
    let alias = store
        .repo
        .put_alias(&n, &prod, to_one, &ChangeRequest::default())
        .await
        .unwrap();
    let entries = store
        .repo
        .alias_history(&n, &prod, Some(100), None)
        .await
        .unwrap()
        .items;
    let mut revisions: Vec<u64> = entries.iter().map(|e| e.revision).collect();
    revisions.sort_unstable();
    let gapless: Vec<u64> = (1..=alias.revision).collect();
    assert_eq!(revisions, gapless);
}

// Stress finding (CI of stop 29, faults at rate 0.2): a purge whose rows
// and objects went but whose fence could not be lowered answered 502; its
// retry found none of the partitions it looked at, answered 404, and left
// the fence row for good. The same for a purge cut short after the version
// rows went but before the registry row: the artifact stayed listed. A
// retry finds whatever a purge deletes, and finishes the job.
#[tokio::test]
async fn a_purge_retried_after_failing_at_its_last_step_finishes_the_job() {
    let store = TestStore::new().await;
    let n = name("purge-last-step");
    store.upload(&n, b"build").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    // Every attempt to lower the fence fails: the purge answers an error
    // after everything else went (its fence is handed over).
    let plan = Plan::new();
    let fence = shared::layout::fence_pk(&n);
    plan.add(Rule::new(
        "DeleteItem",
        Some(&fence),
        Action::Fault(Fault::Status500),
        u64::MAX,
    ));
    let failing = store.through(&plan).await;
    assert!(failing.purge_artifact(&n).await.is_err());
    let left = |items: Vec<
        std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    >| {
        items
            .into_iter()
            .filter_map(|item| {
                let pk = item.get("pk")?.as_s().ok()?.clone();
                let sk = item.get("sk")?.as_s().ok()?.clone();
                (pk.contains(n.as_str()) || sk.starts_with(&format!("{n}/"))).then_some((pk, sk))
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        left(store.raw_items().await),
        vec![(fence.clone(), shared::layout::FENCE_SK.to_owned())],
        "only the fence is left"
    );
    store.repo.purge_artifact(&n).await.unwrap();
    assert_eq!(
        left(store.raw_items().await),
        vec![],
        "the retry lowered the fence"
    );

    // Cut short after the version rows went: only the registry row is left.
    store.upload(&n, b"build again").await;
    store.repo.purge_artifact(&n).await.unwrap();
    store.put_raw_key("__artifacts", &format!("{n}/")).await;
    let listed = |page: shared::model::Page<shared::ArtifactName>| page.items.contains(&n);
    assert!(listed(
        store
            .repo
            .list_artifact_names(None, None, &|_| true)
            .await
            .unwrap()
    ));
    store.repo.purge_artifact(&n).await.unwrap();
    assert_eq!(left(store.raw_items().await), vec![]);
    assert!(!listed(
        store
            .repo
            .list_artifact_names(None, None, &|_| true)
            .await
            .unwrap()
    ));
    assert!(matches!(
        store.repo.purge_artifact(&n).await,
        Err(Error::ArtifactNotFound { .. })
    ));
}

/// The LATEST row the library wrote for `n`, as stored.
async fn latest_item(
    store: &TestStore,
    n: &shared::ArtifactName,
) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    store
        .raw_item(n.as_str(), "LATEST")
        .await
        .expect("the library's LATEST row")
}

/// The first of the library's two writes of a put: its object (with the
/// user metadata `versioned` 1.0.1 writes).
async fn library_object(store: &TestStore, n: &shared::ArtifactName, content: &[u8]) {
    store
        .s3
        .put_object()
        .bucket(&store.config.bucket)
        .key(store.repo.layout().object_key(n, Version::Latest))
        .metadata("artifact_name", n.as_str())
        .metadata("artifact_sha256", sha256_hex(content))
        .body(content.to_vec().into())
        .send()
        .await
        .unwrap();
}

/// The second: its row, as it wrote `template`, now holding `content`.
async fn library_row(
    store: &TestStore,
    template: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    content: &[u8],
) {
    let mut item = template.clone();
    item.insert(
        "sha256".into(),
        aws_sdk_dynamodb::types::AttributeValue::S(sha256_hex(content)),
    );
    store
        .ddb
        .put_item()
        .table_name(&store.config.table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
}

// Checker finding (seed 9, invariant 14): the library knows no fence. Its
// put's object, PUT while a purge ran, was deleted with the artifact's
// objects; its row, PUT after the purge deleted the rows, then named
// nothing ("the library cannot read: NoSuchKey"). Objects of the second the
// rows began to go, or later, now stay unless the mirror wrote them.
#[tokio::test]
async fn a_library_put_landing_during_a_purge_keeps_its_bytes_with_its_row() {
    let store = TestStore::new().await;
    let n = name("lib-racer");
    store.library(&[
        "call",
        "put_artifact",
        &serde_json::json!({"name": "lib-racer", "content": "first"}).to_string(),
    ]);
    let template = latest_item(&store, &n).await;
    // Held once the rows are gone, at the listing of the objects to delete:
    // the two listings of the existence check go through first (holding
    // one of those let the library's object land before the rows went,
    // in an earlier second now and then: a flaky test).
    let plan = Plan::new();
    plan.add(Rule::new(
        "ListObjectVersions",
        Some("lib-racer"),
        Action::Record(test_support::proxy::Recorded::new()),
        2,
    ));
    let gate = Gate::new();
    plan.add(Rule::new(
        "ListObjectVersions",
        Some("lib-racer"),
        Action::HoldBefore(gate.clone()),
        1,
    ));
    let slow = store.through(&plan).await;
    let purge = tokio::spawn({
        let n = n.clone();
        async move { slow.purge_artifact(&n).await }
    });
    gate.arrived().await;
    // The rows are gone; the library's next put writes its object...
    library_object(&store, &n, b"second").await;
    gate.open();
    purge.await.unwrap().unwrap();
    // ...and then its row, which names bytes that are there.
    library_row(&store, &template, b"second").await;
    assert_eq!(served(&store, &n, Version::Latest).await, b"second");
}

// The other order: the library's object was PUT before the purge began,
// its row lands after the purge deleted the rows but before it deleted the
// objects. The purge, at its end, deletes that row too (it used to stay,
// naming bytes the purge had deleted).
#[tokio::test]
async fn a_library_row_landing_after_a_purge_took_its_bytes_goes_too() {
    let store = TestStore::new().await;
    let n = name("lib-late");
    store.library(&[
        "call",
        "put_artifact",
        &serde_json::json!({"name": "lib-late", "content": "first"}).to_string(),
    ]);
    let template = latest_item(&store, &n).await;
    library_object(&store, &n, b"second").await;
    // In an earlier second than the purge's start.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let plan = Plan::new();
    let gate = Gate::new();
    let held = plan.add(Rule::new(
        "DeleteObjects",
        Some(&store.repo.layout().object_key(&n, Version::Latest)),
        Action::HoldBefore(gate.clone()),
        1,
    ));
    let slow = store.through(&plan).await;
    let purge = tokio::spawn({
        let n = n.clone();
        async move { slow.purge_artifact(&n).await }
    });
    gate.arrived().await;
    library_row(&store, &template, b"second").await;
    gate.open();
    purge.await.unwrap().unwrap();
    assert_eq!(held.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    let latest = store.repo.get_version(&n, Version::Latest).await;
    assert!(
        latest.is_err(),
        "a row naming purged bytes survived: {latest:?}"
    );
}

// Checker finding (seed 13, invariant 4/10): while a purge ran, the library
// brought LATEST back (it knows no fence), an alias moved onto it (its
// transaction only asked that LATEST exist), and the purge's end deleted
// that LATEST for naming bytes the purge took: the alias pointed at
// nothing. Alias moves and publishes now also need the fence down.
#[tokio::test]
async fn alias_moves_and_publishes_wait_for_a_running_purge() {
    let store = TestStore::new().await;
    let n = name("fenced");
    store.upload(&n, b"one").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    let (purge, gate) = purge_held_before_latest_goes(&store, &n).await;
    // The fence is up, LATEST still there.
    gate.arrived().await;
    let moved = store
        .repo
        .put_alias(&n, &alias("prod"), to(1), &ChangeRequest::default())
        .await;
    assert!(
        matches!(moved, Err(Error::ArtifactBeingPurged { .. })),
        "{moved:?}"
    );
    let published = store.repo.publish_version(&n, true, LOCAL_ACTOR).await;
    assert!(
        matches!(published, Err(Error::ArtifactBeingPurged { .. })),
        "{published:?}"
    );
    gate.open();
    purge.await.unwrap().unwrap();
    assert!(
        store
            .repo
            .list_aliases(&n, None, None)
            .await
            .map(|p| p.items.is_empty())
            .unwrap_or(true)
    );
}

// Checker finding (seed 9 again, invariant 4/10): a purge that failed
// half-way (a 5xx past the SDK's retries) kept its fence for the whole
// lease, so its client's retry was refused (409) and the artifact stayed
// half-purged — LATEST gone, an alias still naming it. A purge that fails
// now hands its fence to the next one, which finishes the job at once;
// writers stay out meanwhile.
#[tokio::test]
async fn a_failed_purge_hands_its_fence_to_the_retry_which_finishes_the_job() {
    let store = TestStore::new().await;
    let n = name("half-purged");
    store.upload(&n, b"one").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    store
        .repo
        .put_alias(&n, &alias("stage"), to(1), &ChangeRequest::default())
        .await
        .unwrap();
    let plan = Plan::new();
    plan.add(Rule::new(
        "BatchWriteItem",
        None,
        Action::Fault(Fault::Status500),
        u64::MAX,
    ));
    let failing = store.through(&plan).await;
    let failed = failing.purge_artifact(&n).await;
    assert!(failed.is_err(), "{failed:?}");
    // Half-way: LATEST is gone; writers are still kept out.
    let upload = store
        .repo
        .create_upload(&n, declare(b"new life", 8, None), LOCAL_ACTOR)
        .await;
    assert!(
        matches!(upload, Err(Error::ArtifactBeingPurged { .. })),
        "{upload:?}"
    );
    // The retry takes the fence over and finishes.
    store.repo.purge_artifact(&n).await.unwrap();
    assert!(
        store
            .repo
            .list_aliases(&n, None, None)
            .await
            .map(|p| p.items.is_empty())
            .unwrap_or(true)
    );
    store.upload(&n, b"new life").await;
    assert_eq!(served(&store, &n, Version::Latest).await, b"new life");
}

// CI (stop 28): a purge failed on the upstream, and so did its one try to
// hand the fence over (the same upstream, its retries spent); the client's
// retry was refused 409 until the fence lapsed. The hand-over is now tried
// again: one failed UpdateItem (every SDK attempt of it) no longer leaves
// the fence up.
#[tokio::test]
async fn a_failed_purge_hands_its_fence_over_even_when_the_first_try_fails() {
    let store = TestStore::new().await;
    let n = name("hand-over");
    store.upload(&n, b"one").await;
    let plan = Plan::new();
    plan.add(Rule::new(
        "BatchWriteItem",
        None,
        Action::Fault(Fault::Status500),
        u64::MAX,
    ));
    let hand_over = plan.add(Rule::new(
        "UpdateItem",
        Some("handed_over"),
        Action::Fault(Fault::Status500),
        3,
    ));
    let failing = store.through(&plan).await;
    let failed = failing.purge_artifact(&n).await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(hand_over.hits.load(std::sync::atomic::Ordering::SeqCst), 3);
    store.repo.purge_artifact(&n).await.unwrap();
    assert!(matches!(
        store.repo.get_version(&n, Version::Latest).await,
        Err(Error::ArtifactNotFound { .. } | Error::VersionNotFound { .. })
    ));
}

// Issue 24 item 7: a publish adopting a large LATEST of the library in the
// background, cut short while S3 copies its parts (a Lambda timing out), is
// taken up by its retry: the same upload, copied and committed again,
// never a second copy beside it; its verification publishes the bytes once.
#[tokio::test]
async fn a_background_adoption_cut_short_is_resumed_by_the_retried_publish() {
    use shared::model::PublishOutcome;
    let store = TestStore::with_settings(&[("ADOPT_COPY_MAX_BYTES", "1024")]).await;
    let n = name("big");
    let content = bytes(7 * MIB, 3);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &content).unwrap();
    store.library(&[
        "call",
        "put_artifact",
        &serde_json::json!({"name": "big", "content_file": file.path()}).to_string(),
    ]);
    let plan = Plan::new();
    let gate = Gate::new();
    plan.add(Rule::new(
        "PUT",
        Some("partNumber"),
        Action::HoldBefore(gate.clone()),
        1,
    ));
    let slow = store.through(&plan).await.with_verifier(Verifier::Deferred);
    let first = tokio::spawn({
        let n = n.clone();
        async move {
            slow.publish(&n, false, "ci", None, Allowed::already())
                .await
        }
    });
    gate.arrived().await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());

    // LATEST records the upload the cut-short publish started.
    let latest = store.raw_item("big", "LATEST").await;
    let started = latest.as_ref().and_then(|i| i.get("adopting")).unwrap();
    let started = started.as_s().unwrap().clone();

    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    let PublishOutcome::Adopting { upload_id } = repo
        .publish(&n, false, "ci", None, Allowed::already())
        .await
        .unwrap()
    else {
        panic!("still adopted in the background");
    };
    assert_eq!(upload_id, started, "the retry takes up the same upload");
    let again = repo
        .publish(&n, false, "ci", None, Allowed::already())
        .await
        .unwrap();
    assert_eq!(
        again,
        PublishOutcome::Adopting {
            upload_id: upload_id.clone()
        },
        "one upload adopts LATEST"
    );
    gate.open();
    match verify(&repo, &n, &upload_id).await {
        VerifyStep::Committed(c) => assert_eq!(c.artifact.sha256, sha256_hex(&content)),
        other => panic!("{other:?}"),
    }
    let state = repo.upload_state(&n, &upload_id).await.unwrap();
    assert_eq!(state.published.unwrap()["version"], "1");
    assert_eq!(served(&store, &n, Version::Number(1)).await, content);
    let versions = repo.list_versions(&n, None, None).await.unwrap();
    let numbered: Vec<Version> = versions
        .items
        .iter()
        .map(|a| a.version)
        .filter(|v| *v != Version::Latest)
        .collect();
    assert_eq!(numbered, [Version::Number(1)], "published once");
}

// Checker finding 11 (seeds 47, 4; invariant 14, a numbered key of the
// library holding nothing at all): the library's publish copies LATEST to
// its numbered key with LATEST's metadata, so when the mirror wrote LATEST
// the library's new object carries the mirror's marker (naming LATEST). A
// purge racing that publish took the marker for its own and deleted the
// object; the library's row, landing after the purge, named nothing. The
// marker counts only on the key it names.
#[tokio::test]
async fn a_library_publish_racing_a_purge_keeps_its_copy_of_a_mirrored_latest() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let store = TestStore::new().await;
    let n = name("lib-pub");
    store.upload(&n, b"mirrored latest").await;
    store.drain_mirror().await;
    let latest_key = store.repo.layout().object_key(&n, Version::Latest);
    let one_key = store.repo.layout().object_key(&n, Version::Number(1));
    let plan = Plan::new();
    let gate = Gate::new();
    // The purge's existence check lists both prefixes first (let through:
    // a copy made before the purge began is rightly purged); the listing
    // held is the deletion's, after the rows are gone.
    plan.add(Rule::new(
        "ListObjectVersions",
        Some("lib-pub"),
        Action::Record(test_support::proxy::Recorded::new()),
        2,
    ));
    plan.add(Rule::new(
        "ListObjectVersions",
        Some("lib-pub"),
        Action::HoldBefore(gate.clone()),
        1,
    ));
    let slow = store.through(&plan).await;
    let purge = tokio::spawn({
        let n = n.clone();
        async move { slow.purge_artifact(&n).await }
    });
    gate.arrived().await;
    assert!(
        store.repo.get_version(&n, Version::Latest).await.is_err(),
        "the held listing is the deletion's, after the rows"
    );
    // The rows are gone; the library's publish copies LATEST (metadata and
    // all, as `versioned` 1.0.1 does)...
    let copied = store
        .s3
        .copy_object()
        .bucket(&store.config.bucket)
        .key(&one_key)
        .copy_source(format!("{}/{latest_key}", store.config.bucket))
        .send()
        .await
        .unwrap();
    let head = store
        .s3
        .head_object()
        .bucket(&store.config.bucket)
        .key(&one_key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata().and_then(|m| m.get("seed_layout_mirror")),
        Some(&"LATEST".to_owned()),
        "the copy carries the mirror's marker of LATEST"
    );
    gate.open();
    purge.await.unwrap().unwrap();
    // ...and then writes its row, which names bytes that are there.
    let row = std::collections::HashMap::from([
        (
            "pk".to_owned(),
            aws_sdk_dynamodb::types::AttributeValue::S(n.to_string()),
        ),
        ("sk".to_owned(), AttributeValue::S("000001".into())),
        (
            "sha256".to_owned(),
            AttributeValue::S(sha256_hex(b"mirrored latest")),
        ),
        ("is_deleted".to_owned(), AttributeValue::Bool(false)),
        (
            "update_at".to_owned(),
            AttributeValue::S("2026-12-05T17:00:07.000000+0000".into()),
        ),
    ]);
    store
        .ddb
        .put_item()
        .table_name(&store.config.table)
        .set_item(Some(row))
        .send()
        .await
        .unwrap();
    let kept = store
        .s3
        .head_object()
        .bucket(&store.config.bucket)
        .key(&one_key)
        .send()
        .await;
    assert!(
        kept.is_ok_and(|h| h.version_id() == copied.version_id()),
        "the library's copy was deleted by the purge"
    );
    assert_eq!(
        served(&store, &n, Version::Number(1)).await,
        b"mirrored latest"
    );
}

/// A start upload asking to commit `bytes` at once, with no pipeline.
fn held_push(
    repo: &Repository,
    n: &shared::ArtifactName,
    bytes: &'static [u8],
) -> impl std::future::Future<Output = shared::Result<shared::repository::StartOutcome>> + use<> {
    let (repo, n) = (repo.clone(), n.clone());
    async move {
        let nothing = shared::model::Pipeline::default();
        repo.start_and_commit(
            &n,
            test_support::declare(bytes),
            LOCAL_ACTOR,
            &nothing,
            Allowed::already(),
        )
        .await
    }
}

// Issue 21: a push of the bytes LATEST holds commits in one transaction,
// without a pending row first. That transaction carries the purge fence:
// while a purge runs it is refused (no upload row the purge would have to
// see lands behind it), and the purge leaves nothing of the artifact.
#[tokio::test]
async fn a_push_of_the_bytes_latest_holds_commits_at_once_but_never_during_a_purge() {
    let store = TestStore::new().await;
    let n = name("held-fenced");
    store.upload(&n, b"one").await;
    let before = store.upload_rows(&n).await;
    let again = held_push(&store.repo, &n, b"one").await.unwrap();
    let shared::repository::StartOutcome::Committed { committed, .. } = again else {
        panic!("bytes LATEST holds are committed at once: {again:?}");
    };
    assert!(!committed.committed.changed);
    assert_eq!(store.upload_rows(&n).await, before + 1);

    let (purge, gate) = purge_held_before_latest_goes(&store, &n).await;
    // The fence is up, LATEST (holding "one") still there.
    gate.arrived().await;
    let during = held_push(&store.repo, &n, b"one").await;
    assert!(
        matches!(during, Err(Error::ArtifactBeingPurged { .. })),
        "{during:?}"
    );
    gate.open();
    purge.await.unwrap().unwrap();
    assert_eq!(store.upload_rows(&n).await, 0);
    assert!(matches!(
        store.repo.get_version(&n, Version::Latest).await,
        Err(Error::ArtifactNotFound { .. })
    ));
}

// Issue 21: LATEST moved between the read and the one transaction (another
// commit): the transaction is refused on LATEST and the push goes the
// ordinary way, which commits the bytes (they are still stored) as a change.
#[tokio::test]
async fn a_push_of_held_bytes_whose_latest_moved_meanwhile_commits_them_the_ordinary_way() {
    let store = TestStore::new().await;
    let n = name("held-raced");
    store.upload(&n, b"one").await;
    let (slow, gate) = store.held_before("TransactWriteItems", None).await;
    let push = tokio::spawn(held_push(&slow, &n, b"one"));
    gate.arrived().await;
    store.upload(&n, b"two").await;
    gate.open();
    let pushed = push.await.unwrap().unwrap();
    let shared::repository::StartOutcome::Committed { committed, .. } = pushed else {
        panic!("the bytes exist: committed at once: {pushed:?}");
    };
    assert!(committed.committed.changed, "LATEST held \"two\"");
    let latest = store.repo.get_version(&n, Version::Latest).await.unwrap();
    assert_eq!(latest.sha256, sha256_hex(b"one"));
}

// Issue 21: the one transaction's answer is lost and the SDK sends it again:
// the retry finds its own upload row and answers committed, without a
// second upload (the ordinary way would have started one).
#[tokio::test]
async fn a_push_of_held_bytes_whose_answer_was_lost_is_committed_once() {
    let store = TestStore::new().await;
    let n = name("held-lost");
    store.upload(&n, b"one").await;
    let before = store.upload_rows(&n).await;
    let lossy = store.losing_first_answer("TransactWriteItems", None).await;
    let pushed = held_push(&lossy, &n, b"one").await.unwrap();
    assert!(
        matches!(pushed, shared::repository::StartOutcome::Committed { ref committed, .. } if !committed.committed.changed),
        "{pushed:?}"
    );
    assert_eq!(store.upload_rows(&n).await, before + 1);
}

/// A purge of `n`, running, held just before it deletes LATEST (its fence
/// up, the upload rows gone, LATEST still there): its task and the gate
/// that holds it (`gate.arrived()` once it is there).
async fn purge_held_before_latest_goes(
    store: &TestStore,
    n: &shared::ArtifactName,
) -> (
    tokio::task::JoinHandle<shared::Result<()>>,
    std::sync::Arc<Gate>,
) {
    let (slow, gate) = store.held_before("DeleteItem", Some("LATEST")).await;
    let n = n.clone();
    let purge = tokio::spawn(async move { slow.purge_artifact(&n).await });
    (purge, gate)
}

// Issue 21: a commit with a pipeline claims the pipeline's run in its own
// transaction. When that transaction's answer is lost (the SDK sends it
// again and it is refused: the upload is committed), the request knows the
// claim on the row for its own and runs the pipeline at once, instead of
// waiting for a claim nobody runs until its lease lapses.
#[tokio::test]
async fn a_pipeline_commit_whose_answer_was_lost_runs_its_pipeline_at_once() {
    let store = TestStore::new().await;
    let n = name("claim-lost");
    store.upload(&n, b"one").await;
    let ticket = store.staged(&n, b"two").await;
    let lossy = store.losing_first_answer("TransactWriteItems", None).await;
    let pipeline = test_support::pipeline(None, false);
    // Waiting for a claim nobody runs ends in a 409 (ConcurrentModification).
    let outcome = lossy
        .commit_pipeline(&n, &ticket.upload_id, "ci", &pipeline, Allowed::already())
        .await
        .unwrap();
    let shared::repository::PipelineOutcome::Committed(done) = outcome else {
        panic!("a single PUT is committed: {outcome:?}");
    };
    assert!(done.published.is_some(), "{done:?}");
    let latest = store.repo.get_version(&n, Version::Latest).await.unwrap();
    assert_eq!(latest.sha256, sha256_hex(b"two"));
}

// Issue 21: a commit with `publish` publishes in its own transaction
// (version row, counter and marker on LATEST, index entries, fence, the
// number on the upload row, and the answer when no alias moves). Each
// case, its answer received or lost (the SDK sends the transaction again
// and it is refused), answers the version it published as created, once:
// one row per number, consecutive, the alias at it.
#[tokio::test]
async fn a_commit_that_publishes_in_its_transaction_answers_its_version_once_even_when_its_answer_is_lost()
 {
    let store = TestStore::new().await;
    let cases = [
        ("fused-plain", false, false),
        ("fused-alias", true, false),
        ("fused-lost", false, true),
        ("fused-alias-lost", true, true),
    ];
    for (label, moves_alias, lost) in cases {
        let n = name(label);
        // One version published the separate way, then a changed LATEST.
        store.upload(&n, b"one").await;
        store
            .repo
            .publish_version(&n, false, LOCAL_ACTOR)
            .await
            .unwrap();
        let ticket = store.staged(&n, b"two").await;
        let repo = if lost {
            store.losing_first_answer("TransactWriteItems", None).await
        } else {
            store.another_repository()
        };
        let pipeline = test_support::pipeline(moves_alias.then_some("prod"), false);
        let outcome = repo
            .commit_pipeline(&n, &ticket.upload_id, "ci", &pipeline, Allowed::already())
            .await
            .unwrap();
        let shared::repository::PipelineOutcome::Committed(done) = outcome else {
            panic!("{label}: a single PUT is committed: {outcome:?}");
        };
        let published = done.published.clone().expect("published");
        assert_eq!(published["version"], "2", "{label}: {published}");
        assert_eq!(published["created"], true, "{label}: {published}");
        assert_eq!(published["sha256"], sha256_hex(b"two"), "{label}");
        assert_eq!(published["created_by"], "ci", "{label}");
        if moves_alias {
            let moved = done.alias.clone().expect("alias");
            assert_eq!(moved["version"], "2", "{label}: {moved}");
            let prod = store.repo.get_alias(&n, &alias("prod")).await.unwrap();
            assert_eq!(prod.version, Version::Number(2), "{label}");
        } else {
            assert!(done.alias.is_none(), "{label}");
        }
        let versions = store.repo.list_versions(&n, None, None).await.unwrap();
        let numbers: Vec<Version> = versions.items.iter().map(|v| v.version).collect();
        assert_eq!(
            numbers,
            vec![Version::Latest, Version::Number(2), Version::Number(1)],
            "{label}: one row per number"
        );
        // LATEST carries the counter and the marker: publishing again
        // finds it unchanged, and the next commit takes 3.
        let again = store
            .repo
            .publish_version(&n, false, LOCAL_ACTOR)
            .await
            .unwrap();
        assert!(!again.created, "{label}");
        assert_eq!(again.artifact.version, Version::Number(2), "{label}");
        // The commit's retry answers the same.
        let retried = store
            .repo
            .commit_pipeline(&n, &ticket.upload_id, "ci", &pipeline, Allowed::already())
            .await
            .unwrap();
        let shared::repository::PipelineOutcome::Committed(retried) = retried else {
            panic!("{label}: committed");
        };
        assert_eq!(retried.published, done.published, "{label}");
    }
}

// Issue 21: the number a commit would publish in its transaction is taken
// meanwhile (the library, which keeps no counter, wrote that row): the
// commit is not refused; it commits alone and the pipeline's publish
// takes the next free number, as a separate publish does.
#[tokio::test]
async fn a_commit_whose_number_the_library_took_commits_alone_and_publishes_the_next() {
    let store = TestStore::new().await;
    let n = name("fused-taken");
    store.upload(&n, b"one").await;
    store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    let ticket = store.staged(&n, b"two").await;
    // Version 2 as the library writes it: a row, no counter on LATEST.
    let mut row = store
        .raw_item(n.as_str(), "000001")
        .await
        .expect("version 1");
    row.insert(
        "sk".into(),
        aws_sdk_dynamodb::types::AttributeValue::S("000002".into()),
    );
    row.remove("reserve_token");
    store
        .ddb
        .put_item()
        .table_name(&store.config.table)
        .set_item(Some(row))
        .send()
        .await
        .unwrap();
    let pipeline = test_support::pipeline(None, false);
    let outcome = store
        .repo
        .commit_pipeline(&n, &ticket.upload_id, "ci", &pipeline, Allowed::already())
        .await
        .unwrap();
    let shared::repository::PipelineOutcome::Committed(done) = outcome else {
        panic!("a single PUT is committed: {outcome:?}");
    };
    let published = done.published.expect("published");
    assert_eq!(published["version"], "3", "{published}");
    assert_eq!(published["sha256"], sha256_hex(b"two"));
    let latest = store.repo.get_version(&n, Version::Latest).await.unwrap();
    assert_eq!(latest.sha256, sha256_hex(b"two"));
    let two = store
        .repo
        .get_version(&n, Version::Number(2))
        .await
        .unwrap();
    assert_eq!(two.sha256, sha256_hex(b"one"), "the library's row stands");
}

// Review finding (issue 21): a pipeline's commit whose answer was lost is
// retried after another upload made LATEST. The upload is superseded: the
// retry is refused (409, SPEC 4: a superseded upload is refused; the
// checker's invariant 11 holds it to that), and publishes nothing more:
// the version the first commit's transaction published stands, once.
#[tokio::test]
async fn a_retried_pipeline_commit_after_a_later_commit_is_refused_and_publishes_nothing_more() {
    let store = TestStore::new().await;
    for (label, moves_alias) in [("retried-plain", false), ("retried-alias", true)] {
        let n = name(label);
        let ticket = store.staged(&n, b"mine").await;
        let pipeline = test_support::pipeline(moves_alias.then_some("prod"), true);
        let commit = || {
            store
                .repo
                .commit_pipeline(&n, &ticket.upload_id, "ci", &pipeline, Allowed::already())
        };
        let shared::repository::PipelineOutcome::Committed(first) = commit().await.unwrap() else {
            panic!("{label}: committed");
        };
        assert_eq!(first.published.expect("published")["version"], "1");
        // Another pipeline's commit makes LATEST meanwhile.
        store.upload(&n, b"theirs").await;
        let retried = commit().await;
        assert!(
            matches!(retried, Err(Error::UploadSuperseded { .. })),
            "{label}: {retried:?}"
        );
        let versions = store.repo.list_versions(&n, None, None).await.unwrap();
        let numbered: Vec<(Version, String)> = versions
            .items
            .iter()
            .filter(|v| !v.version.is_latest())
            .map(|v| (v.version, v.sha256.clone()))
            .collect();
        assert_eq!(
            numbered,
            vec![(Version::Number(1), sha256_hex(b"mine"))],
            "{label}: the first commit's version, once"
        );
    }
}

// Review finding (issue 21): a pipeline's commit transaction lands, its
// answer is lost, and another commit makes LATEST before this call reads
// the upload again. The commit is this very call's (its claim is on the
// row), overlapping the later one: it answers what it committed and its
// pipeline runs on (the alias moves to the version its transaction
// published), instead of 409 with the run left half done for good.
#[tokio::test]
async fn a_pipeline_commit_whose_answer_was_lost_while_another_commit_landed_finishes_its_run() {
    let store = TestStore::new().await;
    for (label, moves_alias) in [("overlap-plain", false), ("overlap-alias", true)] {
        let n = name(label);
        let ticket = store.staged(&n, b"mine").await;
        let plan = Plan::new();
        // The first read goes through; the transaction lands and its answer
        // is lost; the read after it waits at the gate.
        plan.add(Rule::new(
            "BatchGetItem",
            Some(&ticket.upload_id),
            Action::Record(test_support::proxy::Recorded::new()),
            1,
        ));
        plan.add(Rule::new(
            "TransactWriteItems",
            None,
            Action::Fault(Fault::ResetAfter),
            1,
        ));
        let gate = Gate::new();
        plan.add(Rule::new(
            "BatchGetItem",
            Some(&ticket.upload_id),
            Action::HoldBefore(gate.clone()),
            1,
        ));
        let repo = store.through(&plan).await;
        let pipeline = test_support::pipeline(moves_alias.then_some("prod"), false);
        let commit = tokio::spawn({
            let (n, id, pipeline) = (n.clone(), ticket.upload_id.clone(), pipeline.clone());
            async move {
                repo.commit_pipeline(&n, &id, "ci", &pipeline, Allowed::already())
                    .await
            }
        });
        gate.arrived().await;
        store.upload(&n, b"theirs").await;
        gate.open();
        let outcome = commit.await.unwrap();
        let Ok(shared::repository::PipelineOutcome::Committed(done)) = outcome else {
            panic!("{label}: its own commit answers, got {outcome:?}");
        };
        assert_eq!(
            done.committed.artifact.sha256,
            sha256_hex(b"mine"),
            "{label}"
        );
        let published = done.published.expect("published");
        assert_eq!(published["version"], "1", "{label}: {published}");
        assert_eq!(published["created"], true, "{label}");
        if moves_alias {
            let prod = store.repo.get_alias(&n, &alias("prod")).await.unwrap();
            assert_eq!(prod.version, Version::Number(1), "{label}");
        }
    }
}

/// `n` with versions 1 ("old bytes", soft-deleted: its bytes reclaimable
/// at once) and 2 ("new bytes", LATEST's too).
async fn with_reclaimable_version(store: &TestStore, n: &shared::ArtifactName) {
    store.publish_each(n, &[b"old bytes", b"new bytes"]).await;
    store
        .repo
        .delete_version(n, Version::Number(1), None, Allowed::already())
        .await
        .unwrap();
}

/// After a purge of `n` (made by `with_reclaimable_version`): its
/// condemned partition (`__{n}-blob`) is empty, and an upload and commit
/// of the reclaimed bytes under that name succeeds.
async fn no_condemned_item_outlived_the_purge(store: &TestStore, n: &shared::ArtifactName) {
    let pk = shared::layout::condemned_pk(n);
    let left: Vec<_> = store
        .raw_items()
        .await
        .into_iter()
        .filter(|item| item.get("pk").and_then(|v| v.as_s().ok()) == Some(&pk))
        .collect();
    assert!(
        left.is_empty(),
        "a condemned item outlived the purge: {left:?}"
    );
    store.upload(n, b"old bytes").await;
    assert_eq!(served(store, n, Version::Latest).await, b"old bytes");
}

// Review defect (retention vs purge, SPEC 7.16): a reclaim pass stamped
// its condemned item deleted with an unconditional UpdateItem. A purge of
// the artifact that ran between the pass's deletion of the bytes and the
// stamp deleted the item, and the stamp then created a stray one that
// outlived the purge. The stamp holds only while the item exists now.
#[tokio::test]
async fn a_reclaim_stamping_after_a_purge_took_its_condemned_item_leaves_none_behind() {
    let store = TestStore::new().await;
    let n = name("stamped-after-purge");
    with_reclaimable_version(&store, &n).await;
    // GIVEN a pass held at its stamp: the bytes of version 1 are deleted.
    let (held, gate) = store
        .held_before("UpdateItem", Some(&shared::layout::condemned_pk(&n)))
        .await;
    let pass = {
        let n = n.clone();
        tokio::spawn(async move { held.reclaim(&n, Duration::ZERO).await })
    };
    gate.arrived().await;
    // WHEN the artifact is purged meanwhile, and the stamp goes after.
    store.repo.purge_artifact(&n).await.unwrap();
    gate.open();
    let report = pass.await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    // THEN nothing of the artifact is left, and its bytes come back freely.
    no_condemned_item_outlived_the_purge(&store, &n).await;
}

// Review defect (retention vs purge, SPEC 7.16, 7.17): a reclaim pass put
// its condemned item up with an unconditional PutItem, so one landing
// while a purge of the artifact ran, after the purge had read the
// condemned partition, outlived the purge. Condemning holds only while no
// purge runs now; fenced out, the pass stops (no error: the purge deletes
// everything) without deleting those bytes.
#[tokio::test]
async fn a_reclaim_racing_a_purge_condemns_nothing_behind_its_fence() {
    let store = TestStore::new().await;
    let n = name("condemned-during-purge");
    with_reclaimable_version(&store, &n).await;
    // GIVEN a purge, its fence up, held just after it read the condemned
    // partition (at its read of the next one; the first Query of that
    // partition is the existence check before the fence).
    let plan = Plan::new();
    let verified = shared::layout::verified_pk(&n);
    let existence_check = plan.add(Rule::new(
        "Query",
        Some(&verified),
        Action::Record(test_support::proxy::Recorded::new()),
        1,
    ));
    let gate = Gate::new();
    plan.add(Rule::new(
        "Query",
        Some(&verified),
        Action::HoldBefore(gate.clone()),
        1,
    ));
    let purging = store.through(&plan).await;
    let purge = {
        let n = n.clone();
        tokio::spawn(async move { purging.purge_artifact(&n).await })
    };
    gate.arrived().await;
    assert_eq!(
        existence_check
            .hits
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    // WHEN a reclaim pass runs meanwhile.
    let report = store.repo.reclaim(&n, Duration::ZERO).await;
    assert!(report.is_ok(), "a running purge is no failure: {report:?}");
    gate.open();
    purge.await.unwrap().unwrap();
    // THEN nothing of the artifact is left, and its bytes come back freely.
    no_condemned_item_outlived_the_purge(&store, &n).await;
}

// Review finding (retention vs purge, SPEC 7.10): a reclaim pass that
// stalled between its reference check and its deletion of the bytes
// through a whole purge of the artifact, and a new upload of the same
// bytes that committed meanwhile (the purge took the condemned item, so
// nothing refused it), deleted every object version at the blob key: the
// new LATEST had no bytes. The pass deletes exactly the versions it listed
// while its condemned item stood, and nothing once a purge took the item;
// here it stalls before its listing, then before its delete.
#[tokio::test]
async fn a_reclaim_stalled_through_a_purge_keeps_the_bytes_uploaded_again_since() {
    for (i, stalled_at) in ["ListObjectVersions", "DeleteObjects"]
        .into_iter()
        .enumerate()
    {
        let store = TestStore::new().await;
        let n = name(&format!("stalled-through-purge-{i}"));
        with_reclaimable_version(&store, &n).await;
        // GIVEN a pass that condemned the bytes of version 1 and found
        // nothing referencing them, held at `stalled_at`.
        let (held, gate) = store.held_before(stalled_at, None).await;
        let pass = {
            let n = n.clone();
            tokio::spawn(async move { held.reclaim(&n, Duration::ZERO).await })
        };
        gate.arrived().await;
        // WHEN the artifact is purged and the same bytes are uploaded again.
        store.repo.purge_artifact(&n).await.unwrap();
        store.upload(&n, b"old bytes").await;
        gate.open();
        let report = pass.await.unwrap();
        // THEN the new LATEST serves its bytes.
        assert_eq!(
            served(&store, &n, Version::Latest).await,
            b"old bytes",
            "stalled at {stalled_at}: {report:?}"
        );
    }
}

// Review finding (SPEC 7.15): a pass condemned a blob by reading the
// condemned item, then putting its own over it. A second pass that
// deleted the bytes and stamped the item between that read and that put
// lost its stamp: the first pass, finding the bytes wanted again, lifted
// the item back to the stamp it had read (none), and a commit that read
// the blob before the deletion would then have passed onto missing bytes.
#[tokio::test]
async fn a_condemn_never_overwrites_a_stamp_another_pass_put_since_it_read() {
    let store = TestStore::new().await;
    let n = name("condemn-over-stamp");
    with_reclaimable_version(&store, &n).await;
    let sha = sha256_hex(b"old bytes");
    // GIVEN a pass that read the condemned item (none yet) and is about
    // to put its own up.
    let (held, gate) = store.held_before("TransactWriteItems", Some(&sha)).await;
    let pass = {
        let n = n.clone();
        tokio::spawn(async move { held.reclaim(&n, Duration::ZERO).await })
    };
    gate.arrived().await;
    // WHEN another pass deletes the bytes and stamps the item, and the
    // same bytes are uploaded again (not committed yet) before the first
    // pass goes on.
    let second = store.repo.reclaim(&n, Duration::ZERO).await.unwrap();
    assert_eq!(second.reclaimed, vec![Version::Number(1)], "{second:?}");
    let pk = shared::layout::condemned_pk(&n);
    let stamp = async || {
        let item = store.raw_item(&pk, &sha).await.expect("a condemned item");
        item.get("deleted_at").and_then(|v| v.as_n().ok()).cloned()
    };
    let deleted_at = stamp().await.expect("stamped by the second pass");
    store.staged(&n, b"old bytes").await;
    gate.open();
    pass.await.unwrap().unwrap();
    // THEN the first pass, which found the bytes wanted again, leaves the
    // second pass's stamp in place.
    assert_eq!(stamp().await, Some(deleted_at));
}

// Review finding (SPEC 7.15): a pass that stalled just before deleting the
// verified record of the bytes it condemned, through a purge of the
// artifact and a multipart upload of the same bytes verified since,
// deleted the new upload's record: bytes verified and kept, but no longer
// recognised, so the next push of them transferred them all again.
#[tokio::test]
async fn a_reclaim_stalled_through_a_purge_keeps_the_record_of_bytes_verified_since() {
    let store = TestStore::new().await;
    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("verified-again");
    let content = bytes(5 * MIB + 7, 9);
    let multipart = async || {
        let (id, plan) = start_multipart(&repo, &n, &content).await;
        send_parts(&repo, &store.http, &n, &id, &content, &plan).await;
        repo.commit(&n, &id, "ci").await.unwrap();
        assert!(matches!(
            verify(&repo, &n, &id).await,
            VerifyStep::Committed(_)
        ));
    };
    // GIVEN version 1 of verified multipart bytes, deleted and reclaimable,
    // and a pass held just before it deletes their verified record.
    multipart().await;
    for _ in 0..2 {
        repo.publish_version(&n, true, LOCAL_ACTOR).await.unwrap();
    }
    repo.delete_version(&n, Version::Number(1), None, Allowed::already())
        .await
        .unwrap();
    store.upload(&n, b"something else").await;
    repo.delete_version(&n, Version::Number(2), None, Allowed::already())
        .await
        .unwrap();
    let verified = shared::layout::verified_pk(&n);
    let (held, gate) = store.held_before("DeleteItem", Some(&verified)).await;
    let pass = {
        let n = n.clone();
        tokio::spawn(async move { held.reclaim(&n, Duration::ZERO).await })
    };
    gate.arrived().await;
    // WHEN the artifact is purged, the same bytes are uploaded in parts,
    // verified again and published, and LATEST moves on before the pass
    // goes on. (Published: bytes no row holds are the pass's to sweep
    // once its grace (none here) has passed, and S3 dates objects to the
    // second, so unpublished they would go whenever the upload fell in
    // the second the pass started. LATEST moved on: start upload then
    // recognises the bytes by their verified record alone.)
    store.repo.purge_artifact(&n).await.unwrap();
    multipart().await;
    repo.publish_version(&n, false, LOCAL_ACTOR).await.unwrap();
    store.upload(&n, b"something else").await;
    gate.open();
    pass.await.unwrap().unwrap();
    // THEN the bytes are still recognised: nothing to transfer.
    let ticket = repo
        .create_upload(
            &n,
            declare(&content, content.len(), Some(5 * MIB as u64)),
            LOCAL_ACTOR,
        )
        .await
        .unwrap();
    assert!(ticket.exists, "{ticket:?}");
}

// Review finding (SPEC 7.13): a one-request pipeline moving an alias to a
// canary (`weight`) keeps the primary it read, but wrote with no
// precondition: a promote made between its read and its write was undone
// without anyone seeing it.
#[tokio::test]
async fn a_canary_pipeline_never_undoes_an_alias_move_made_after_it_read_the_alias() {
    let store = TestStore::new().await;
    let n = name("canary-pipeline");
    store.publish_each(&n, &[b"one", b"two"]).await;
    let prod = alias("prod");
    store
        .repo
        .put_alias(&n, &prod, to(1), &ChangeRequest::default())
        .await
        .unwrap();
    let id = staged(&store, &n, b"three").await;
    let mut pipeline = forced_release(None);
    if let Some(m) = pipeline.alias.as_mut() {
        m.weight = Some(shared::Weight::new(10).unwrap());
    }
    // GIVEN a pipeline that read `prod` (at 1) and is about to move it to
    // 1 + 3 at 10 %.
    let (held, gate) = store
        .held_before("TransactWriteItems", Some("-history"))
        .await;
    let run = {
        let n = n.clone();
        tokio::spawn(async move {
            held.commit_pipeline(&n, &id, "ci", &pipeline, Allowed::already())
                .await
        })
    };
    gate.arrived().await;
    // WHEN `prod` is promoted to 2 meanwhile.
    store
        .repo
        .put_alias(&n, &prod, to(2), &ChangeRequest::default())
        .await
        .unwrap();
    gate.open();
    run.await.unwrap().unwrap();
    // THEN the canary goes on top of the promote.
    let now = store.repo.get_alias(&n, &prod).await.unwrap();
    assert_eq!(
        (now.version, now.secondary_version),
        (Version::Number(2), Some(Version::Number(3))),
        "{now:?}"
    );
}

// Review finding (SPEC 7.6, 7.5): a pipeline run taken over (its first run
// failed with an AWS error, or timed out) dropped `force`, so that it
// would not publish twice: when the first run had failed before its
// publish, the retry answered the old version, `created: false`, and
// published nothing. The number a pipeline's publish takes is now
// recorded on its upload row in the publish's own transaction, which only
// lands while the run holds its claim: a run that takes over knows.
#[tokio::test]
async fn a_forced_pipeline_retried_after_a_failure_publishes_exactly_once() {
    let store = TestStore::new().await;
    let n = name("forced-retry");
    store.publish_each(&n, &[b"build"]).await;
    let answer = |o: &shared::repository::PipelineOutcome| serde_json::to_value(o).unwrap();
    let failing = |key: &str| {
        let plan = Plan::new();
        plan.add(Rule::new(
            "TransactWriteItems",
            Some(key),
            Action::Fault(Fault::Status500),
            100,
        ));
        plan
    };
    // GIVEN the same bytes pushed again with a forced publish, whose
    // publish fails (every attempt: a 502 to the caller).
    let id = staged(&store, &n, b"build").await;
    let plan = failing("\"000002\"");
    let first = store
        .through(&plan)
        .await
        .commit_pipeline(&n, &id, "ci", &forced_release(None), Allowed::already())
        .await;
    assert!(first.is_err(), "{first:?}");
    // WHEN it is retried THEN it publishes version 2 (as asked: forced).
    let retried = store
        .repo
        .commit_pipeline(&n, &id, "ci", &forced_release(None), Allowed::already())
        .await
        .unwrap();
    assert_eq!(answer(&retried)["published"]["version"], "2");
    assert_eq!(answer(&retried)["published"]["created"], true);

    // GIVEN another forced push whose publish lands and whose alias move
    // then fails.
    let id = staged(&store, &n, b"build").await;
    let plan = failing("-history");
    let first = store
        .through(&plan)
        .await
        .commit_pipeline(&n, &id, "ci", &forced_release(None), Allowed::already())
        .await;
    assert!(first.is_err(), "{first:?}");
    assert_eq!(numbered(&store, &n).await.len(), 3, "version 3 published");
    // WHEN it is retried THEN it answers version 3 and moves the alias,
    // publishing nothing more.
    let retried = store
        .repo
        .commit_pipeline(&n, &id, "ci", &forced_release(None), Allowed::already())
        .await
        .unwrap();
    assert_eq!(answer(&retried)["published"]["version"], "3");
    assert_eq!(answer(&retried)["alias"]["version"], "3");
    assert_eq!(
        numbered(&store, &n).await.len(),
        3,
        "nothing published twice"
    );
}

// Review finding (SPEC 7.5): a run that took a pipeline over read the
// version its predecessor published only when the claim's answer showed
// another run's claim. When that answer was lost, the SDK's retry of the
// claim saw the run's own claim, and a forced pipeline published the same
// bytes a second time. The claim now answers the row it replaced, whose
// recorded publish holds whoever's claim it shows.
#[tokio::test]
async fn a_forced_pipeline_taken_over_with_its_claims_answer_lost_publishes_nothing_more() {
    let store = TestStore::new().await;
    let n = name("forced-lost-claim");
    store.publish_each(&n, &[b"build"]).await;
    // GIVEN a forced push of the same bytes whose publish lands (version
    // 2) and whose alias move then fails.
    let id = staged(&store, &n, b"build").await;
    let plan = Plan::new();
    plan.add(Rule::new(
        "TransactWriteItems",
        Some("-history"),
        Action::Fault(Fault::Status500),
        100,
    ));
    let first = store
        .through(&plan)
        .await
        .commit_pipeline(&n, &id, "ci", &forced_release(None), Allowed::already())
        .await;
    assert!(first.is_err(), "{first:?}");
    assert_eq!(numbered(&store, &n).await.len(), 2, "version 2 published");
    // WHEN its retry's claim lands but the answer is lost (the SDK sends
    // it again).
    let plan = Plan::new();
    let lost = plan.add(Rule::new(
        "UpdateItem",
        Some("-upload"),
        Action::Fault(Fault::ResetAfter),
        1,
    ));
    let retried = store
        .through(&plan)
        .await
        .commit_pipeline(&n, &id, "ci", &forced_release(None), Allowed::already())
        .await
        .unwrap();
    assert_eq!(
        lost.hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the claim's answer was lost"
    );
    // THEN it answers version 2 and moves the alias there, publishing
    // nothing more.
    let answer = serde_json::to_value(&retried).unwrap();
    assert_eq!(answer["published"]["version"], "2", "{answer}");
    assert_eq!(answer["alias"]["version"], "2", "{answer}");
    assert_eq!(
        numbered(&store, &n).await.len(),
        2,
        "nothing published twice"
    );
}

// The checker (seed 73) against a change of this session, reverted: a
// commit of an upload superseded by a newer commit answered 200 again once
// a third upload committed the first one's bytes once more. Superseded is
// superseded (SPEC 4.1, 7.11), whatever LATEST holds later.
#[tokio::test]
async fn an_upload_superseded_stays_refused_when_its_bytes_are_committed_again() {
    let store = TestStore::new().await;
    let n = name("superseded-then-same");
    let first = staged(&store, &n, b"build one").await;
    store.repo.commit_upload(&n, &first, "ci").await.unwrap();
    store.upload(&n, b"build two").await;
    store.upload(&n, b"build one").await;
    let again = store.repo.commit_upload(&n, &first, "ci").await;
    assert!(
        matches!(again, Err(Error::UploadSuperseded { .. })),
        "{again:?}"
    );
}

// Review (purge): the service's own partitions were keys an artifact's
// could be: `__access-history` (the permission changes) was the alias
// history of an artifact named `access`, `__scheduled-purge` (the
// scheduled job's cursor and lease) the purge fence of one named
// `scheduled`. Purging `access`, which did not exist, answered 204 and
// deleted the audit of every permission change (SPEC 7.5, 7.18), and an
// alias change of `access` wrote into that audit.
#[tokio::test]
async fn artifacts_named_access_or_scheduled_own_none_of_the_services_partitions() {
    let store = TestStore::new().await;
    let admin = "arn:aws:iam::1:role/admin";
    let targets: shared::access::Targets = serde_json::from_value(serde_json::json!({
        "targets": [{"principals": [admin], "names": ["*"], "actions": ["admin"]}]
    }))
    .unwrap();
    store
        .repo
        .put_access_targets(&targets, admin, Some(0))
        .await
        .unwrap();
    let schedule = shared::scheduled::RetentionSchedule::from_lookup(|_| None).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    shared::scheduled::run_pass(
        &store.repo,
        schedule,
        shared::scheduled::Pass::until(deadline),
    )
    .await
    .unwrap();

    for absent in ["access", "scheduled"] {
        let purged = store.repo.purge_artifact(&name(absent)).await;
        assert!(
            matches!(purged, Err(Error::ArtifactNotFound { .. })),
            "{absent}: {purged:?}"
        );
    }
    let history = store.repo.access_history(None, None).await.unwrap();
    assert_eq!(history.items.len(), 1, "{history:?}");

    // An artifact named `access`, its alias moved: the audit of permission
    // changes holds what it held.
    let access = name("access");
    store.publish_each(&access, &[b"one"]).await;
    store
        .repo
        .put_alias(&access, &alias("prod"), to(1), &ChangeRequest::default())
        .await
        .unwrap();
    let history = store.repo.access_history(None, None).await.unwrap();
    assert_eq!(history.items.len(), 1, "{history:?}");
    store.repo.purge_artifact(&access).await.unwrap();
    let history = store.repo.access_history(None, None).await.unwrap();
    assert_eq!(history.items.len(), 1, "{history:?}");
}

// Review (purge): a purge stopped part-way (its Lambda timed out, its
// deletes ran out of retries) leaves LATEST gone and only some version
// rows deleted, oldest first. A commit then found no LATEST, started the
// counter at 0, and the next publishes reused 1, 2, … while 3 remained
// (SPEC 7.2: only a full purge starts over).
#[tokio::test]
async fn a_commit_after_a_purge_stopped_part_way_numbers_after_the_versions_it_left() {
    let store = TestStore::new().await;
    let n = name("half-purged");
    store.publish_each(&n, &[b"one", b"two", b"three"]).await;
    // What the purge had deleted when it stopped: LATEST, then 1 and 2.
    for sk in ["LATEST", "000001", "000002"] {
        store.delete_raw_key(&n.to_string(), sk).await;
    }
    store.upload(&n, b"four").await;
    let published = store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(published.artifact.version, Version::Number(4));
    // A push that publishes in its own transaction numbers after what is
    // left too (the purge stopped again, after LATEST).
    for sk in ["LATEST", "000003"] {
        store.delete_raw_key(&n.to_string(), sk).await;
    }
    let staged = store.staged(&n, b"five").await;
    let outcome = store
        .repo
        .commit_pipeline(
            &n,
            &staged.upload_id,
            LOCAL_ACTOR,
            &test_support::pipeline(None, false),
            Allowed::already(),
        )
        .await
        .unwrap();
    let answer = serde_json::to_value(&outcome).unwrap();
    assert_eq!(answer["published"]["version"], "5", "{answer}");
}

// Review (purge): a status change had no purge fence and no LATEST in its
// transaction. One landing after a purge deleted LATEST (and before it
// deleted the version rows) wrote a status entry the purge had already
// read past: it outlived the purge, and the gone name was "present" (a
// DELETE of it answered 204 and wrote a fence: SPEC 7.5).
#[tokio::test]
async fn a_status_change_racing_a_purge_writes_nothing_once_latest_is_gone() {
    use shared::model::VersionStatus;
    use shared::repository::StatusChange;
    let store = TestStore::new().await;
    let n = name("going");
    store.publish_each(&n, &[b"one"]).await;
    // Where a purge is after its first row deletion.
    store.delete_raw_key(&n.to_string(), "LATEST").await;
    let change = StatusChange {
        actor: LOCAL_ACTOR.into(),
        message: None,
        expected: None,
    };
    let refused = store
        .repo
        .set_version_status(&n, Version::Number(1), VersionStatus::Deprecated, &change)
        .await;
    assert!(
        matches!(refused, Err(Error::VersionNotFound { .. })),
        "{refused:?}"
    );
    let status_entries = store
        .raw_items()
        .await
        .into_iter()
        .filter(|item| item["pk"].as_s().is_ok_and(|pk| pk.ends_with("-status")))
        .count();
    assert_eq!(status_entries, 0);
}

// Review (verification): the library stamps LATEST's `update_at` with its
// object's LastModified, whole seconds, taken when its PUT began: a
// library write landing after a multipart upload was handed to
// verification can carry an `update_at` before the hand-over. The
// verification took it for older and made its upload LATEST over the
// library's newer bytes (SPEC 7.15).
#[tokio::test]
async fn a_verification_never_rolls_back_a_library_write_stamped_before_the_hand_over() {
    let store = TestStore::new().await;
    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("slow-library");
    store.library(&[
        "call",
        "put_artifact",
        &serde_json::json!({"name": "slow-library", "content": "the library's first"}).to_string(),
    ]);
    let ours = bytes(5 * MIB + 3, 7);
    let (u1, plan) = start_multipart(&repo, &n, &ours).await;
    send_parts(&repo, &store.http, &n, &u1, &ours, &plan).await;
    assert!(matches!(
        repo.commit(&n, &u1, "ci").await.unwrap(),
        CommitOutcome::Verifying { .. }
    ));
    // The library's slow PUT, begun before the hand-over, lands after it:
    // its row says the second its PUT began.
    store.library(&[
        "call",
        "put_artifact",
        &serde_json::json!({"name": "slow-library", "content": "the library's newer"}).to_string(),
    ]);
    let began = "2000-01-01T00:00:00.000000+0000";
    store
        .ddb
        .update_item()
        .table_name(&store.config.table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(n.to_string()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("LATEST".into()),
        )
        .update_expression("SET update_at = :began")
        .expression_attribute_values(
            ":began",
            aws_sdk_dynamodb::types::AttributeValue::S(began.into()),
        )
        .send()
        .await
        .unwrap();
    let step = verify(&repo, &n, &u1).await;
    assert!(matches!(step, VerifyStep::Superseded { .. }), "{step:?}");
    assert_eq!(
        served(&store, &n, Version::Latest).await,
        b"the library's newer"
    );
}

// Review (verification): a verification hashed only the declared length.
// An upload whose parts are gone verifies whatever unverified object holds
// its key (nobody else will); one longer than declared whose first bytes
// are the declared ones passed, and LATEST served the extra bytes too
// (SPEC 7.3, 7.12).
#[tokio::test]
async fn a_verification_fails_an_object_longer_than_declared_whose_prefix_hashes_right() {
    let store = TestStore::new().await;
    let deferred = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("padded");
    let content = bytes(5 * MIB + 5, 11);
    let mut padded = content.clone();
    padded.extend_from_slice(b"and a tail nobody declared");
    // Left at the key by an upload that never went through its checks.
    store
        .s3
        .put_object()
        .bucket(&store.config.bucket)
        .key(store.repo.layout().blob_key(&n, &sha256_hex(&content)))
        .body(padded.into())
        .send()
        .await
        .unwrap();
    let (id, _parts) = start_multipart(&deferred, &n, &content).await;
    // Its own parts are gone (aborted): it verifies the object it finds.
    let row = store
        .raw_item(&shared::layout::upload_pk(&n), &id)
        .await
        .unwrap();
    let s3_upload = row["s3_upload_id"].as_s().unwrap().clone();
    store
        .s3
        .abort_multipart_upload()
        .bucket(&store.config.bucket)
        .key(store.repo.layout().blob_key(&n, &sha256_hex(&content)))
        .upload_id(s3_upload)
        .send()
        .await
        .unwrap();
    assert!(matches!(
        deferred.commit(&n, &id, "ci").await.unwrap(),
        CommitOutcome::Verifying { .. }
    ));
    let step = verify(&deferred, &n, &id).await;
    assert!(matches!(step, VerifyStep::Failed { .. }), "{step:?}");
    let latest = store.repo.get_version(&n, Version::Latest).await;
    assert!(latest.is_err(), "{latest:?}");
}

// Review (publish): each attempt of a publish had a token of its own. On
// AWS, the SDK's retry of a transaction whose answer was lost can meet it
// still running (TransactionInProgressException, taken for contention);
// the next attempt then published again: a forced publish made two
// versions for one request (SPEC 7.5). Every attempt's token now carries
// the request's, and a later attempt finds the row an earlier one wrote.
#[tokio::test]
async fn a_forced_publish_whose_transaction_was_still_in_progress_publishes_once() {
    let store = TestStore::new().await;
    let n = name("in-progress");
    store.upload(&n, b"build").await;
    let plan = Plan::new();
    plan.add(Rule::new(
        "TransactWriteItems",
        None,
        Action::Fault(Fault::ResetAfter),
        1,
    ));
    plan.add(Rule::new(
        "TransactWriteItems",
        None,
        Action::Answer {
            status: 400,
            body: r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionInProgressException","message":"The transaction with the given request token is already in progress."}"#,
        },
        // Every retry the SDK makes of it.
        3,
    ));
    let repo = store.through(&plan).await;
    let published = repo.publish_version(&n, true, LOCAL_ACTOR).await.unwrap();
    assert_eq!(
        (published.artifact.version, published.created),
        (Version::Number(1), true)
    );
    let versions = store.repo.list_versions(&n, None, None).await.unwrap();
    assert_eq!(versions.items.len(), 2, "LATEST and 1: {versions:?}");
}

// Review (verification): a verification whose invocations all gave up
// (the request went to the failure queue) left its upload `verifying`:
// every other upload of those bytes was told to wait (409) until that
// upload expired, a day later (SPEC 7.16). Such a wait now asks for the
// stalled verification again.
#[tokio::test]
async fn an_upload_waiting_on_a_stalled_verification_asks_for_it_again() {
    let store = TestStore::new().await;
    let deferred = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("stalled");
    let content = bytes(5 * MIB + 7, 13);
    let (first, parts) = start_multipart(&deferred, &n, &content).await;
    send_parts(&deferred, &store.http, &n, &first, &content, &parts).await;
    assert!(matches!(
        deferred.commit(&n, &first, "ci").await.unwrap(),
        CommitOutcome::Verifying { .. }
    ));
    // Its last step was long ago.
    store.stall_upload(&n, &first).await;

    let (asked, mut requests) = tokio::sync::mpsc::unbounded_channel();
    let queued = store.repo.clone().with_verifier(Verifier::Queue(asked));
    let (second, parts) = start_multipart(&queued, &n, &content).await;
    send_parts(&queued, &store.http, &n, &second, &content, &parts).await;
    let waited = queued.commit(&n, &second, "ci").await;
    assert!(
        matches!(waited, Err(Error::ConcurrentModification(_))),
        "{waited:?}"
    );
    let request = requests
        .try_recv()
        .expect("the stalled verification asked for again");
    assert_eq!(request.upload_id, first);
    // Once it ran, the waiting upload commits the bytes it verified.
    assert!(matches!(
        verify(&deferred, &n, &first).await,
        VerifyStep::Committed(_)
    ));
    let committed = queued.commit(&n, &second, "ci").await;
    assert!(committed.is_ok(), "{committed:?}");
}

/// Review of this session's bare-row fix: a LATEST the library left bare
/// (its delete of a LATEST that did not exist: no `update_at`) now reads as
/// deleted, and a multipart upload over it must still commit; its
/// verification's "LATEST older than the commit" condition failed on the
/// missing attribute for ever, leaving the upload verifying.
#[tokio::test]
async fn a_verification_commits_over_a_bare_latest_the_library_left() {
    let store = TestStore::new().await;
    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    store.library(&[
        "call",
        "delete_artifact_version",
        &serde_json::json!({"name": "bare"}).to_string(),
    ]);
    let n = name("bare");
    let content = bytes(5 * MIB + 7, 9);
    let (id, plan) = start_multipart(&repo, &n, &content).await;
    send_parts(&repo, &store.http, &n, &id, &content, &plan).await;
    assert!(matches!(
        repo.commit(&n, &id, "ci").await.unwrap(),
        CommitOutcome::Verifying { .. }
    ));
    let step = tokio::time::timeout(std::time::Duration::from_secs(60), verify(&repo, &n, &id))
        .await
        .expect("the verification kept retrying its commit");
    assert!(matches!(step, VerifyStep::Committed(_)), "{step:?}");
    assert_eq!(served(&store, &n, Version::Latest).await, content);
}

/// A writer whose first transaction waits at `at_write`; once it is there,
/// [`WriteThenReread::hold_reread`] makes its next GetItem (the read of
/// the row after a refused write) wait at the gate it returns: the two
/// instants a state can come and go between.
struct WriteThenReread {
    repo: Repository,
    plan: std::sync::Arc<Plan>,
    at_write: std::sync::Arc<Gate>,
}

impl WriteThenReread {
    async fn new(store: &TestStore) -> Self {
        let plan = Plan::new();
        let at_write = Gate::new();
        plan.add(Rule::new(
            "TransactWriteItems",
            None,
            Action::HoldBefore(at_write.clone()),
            1,
        ));
        let repo = store.through(&plan).await;
        Self {
            repo,
            plan,
            at_write,
        }
    }

    fn hold_reread(&self) -> std::sync::Arc<Gate> {
        let at_reread = Gate::new();
        self.plan.add(Rule::new(
            "GetItem",
            None,
            Action::HoldBefore(at_reread.clone()),
            1,
        ));
        at_reread
    }
}

// SPEC 7.7: a delete whose condition failed because an alias pointed at the
// version for a moment (moved on to it, then away, before the delete read
// the row again) is a delete of a live, unreferenced version: it is tried
// again and deletes it, never answering 404 for a version that exists.
// Found by running the concurrency tests on an emulator of their own
// (`racing_alias_moves_and_deletes_…` answered `VersionNotFound`).
#[tokio::test]
async fn a_delete_refused_by_an_alias_that_came_and_went_deletes_on_its_next_try() {
    let store = TestStore::new().await;
    let n = name("blink");
    store.publish_each(&n, &[b"one", b"two"]).await;
    let writer = WriteThenReread::new(&store).await;
    let (slow, at_write) = (writer.repo.clone(), writer.at_write.clone());
    let n2 = n.clone();
    let delete = tokio::spawn(async move {
        slow.delete_version(&n2, Version::Number(1), None, Allowed::already())
            .await
    });
    // The delete read version 1 unreferenced; `prod` now points at it.
    at_write.arrived().await;
    let at_reread = writer.hold_reread();
    let change = ChangeRequest::default();
    store
        .repo
        .put_alias(&n, &alias("prod"), to(1), &change)
        .await
        .unwrap();
    at_write.open();
    // Refused on the reference; before it reads the row again, `prod`
    // moves on and the version is unreferenced once more.
    at_reread.arrived().await;
    store
        .repo
        .put_alias(&n, &alias("prod"), to(2), &change)
        .await
        .unwrap();
    at_reread.open();
    let deleted = delete.await.unwrap();
    assert!(deleted.is_ok(), "{deleted:?}");
    assert!(matches!(
        store.repo.get_version(&n, Version::Number(1)).await,
        Err(Error::VersionNotFound { .. })
    ));
    assert!(store.repo.get_version(&n, Version::Number(2)).await.is_ok());
}

// SPEC 7.18: a status change expecting `active` whose write was refused
// because another writer had the version deprecated, and back to active by
// the time it read the row again, holds on a row at the status it expects:
// it is tried again and lands, rather than a 409 saying "active, not active".
#[tokio::test]
async fn a_status_change_refused_by_a_status_that_came_and_went_lands_on_its_next_try() {
    use shared::model::VersionStatus;
    use shared::repository::StatusChange;
    let store = TestStore::new().await;
    let n = name("flicker");
    store.publish_each(&n, &[b"one", b"two"]).await;
    let writer = WriteThenReread::new(&store).await;
    let (slow, at_write) = (writer.repo.clone(), writer.at_write.clone());
    let n2 = n.clone();
    let archive = tokio::spawn(async move {
        let change = StatusChange {
            actor: "release".into(),
            message: Some("superseded".into()),
            expected: Some(VersionStatus::Active),
        };
        slow.set_version_status(&n2, Version::Number(1), VersionStatus::Archived, &change)
            .await
    });
    at_write.arrived().await;
    let at_reread = writer.hold_reread();
    let other = StatusChange {
        actor: "other".into(),
        message: None,
        expected: None,
    };
    let v1 = Version::Number(1);
    store
        .repo
        .set_version_status(&n, v1, VersionStatus::Deprecated, &other)
        .await
        .unwrap();
    at_write.open();
    at_reread.arrived().await;
    store
        .repo
        .set_version_status(&n, v1, VersionStatus::Active, &other)
        .await
        .unwrap();
    at_reread.open();
    let archived = archive.await.unwrap();
    assert!(
        matches!(&archived, Ok(a) if a.status == Some(VersionStatus::Archived)),
        "{archived:?}"
    );
}

// SPEC 7.14: a version row without the `is_deleted` flag reads as live
// (`VersionRow::from_item`), so every write conditioned on a live row and
// every listing takes it as live too: listed, aliased, given a status and
// deleted like any other.
#[tokio::test]
async fn a_version_row_without_the_deleted_flag_is_live_to_every_write_and_listing() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use shared::layout::attr;
    use shared::model::VersionStatus;
    let store = TestStore::new().await;
    let n = name("flagless");
    store.publish_each(&n, &[b"one", b"two"]).await;
    let v1 = Version::Number(1);
    store
        .ddb
        .update_item()
        .table_name(&store.config.table)
        .key(attr::PK, AttributeValue::S(n.to_string()))
        .key(attr::SK, AttributeValue::S(v1.sort_key()))
        .update_expression("REMOVE #d")
        .expression_attribute_names("#d", attr::IS_DELETED)
        .send()
        .await
        .unwrap();
    assert!(store.repo.get_version(&n, v1).await.is_ok());
    let listed: Vec<Version> = store
        .repo
        .list_versions(&n, Some(10), None)
        .await
        .unwrap()
        .items
        .iter()
        .map(|a| a.version)
        .collect();
    assert!(listed.contains(&v1), "{listed:?}");
    let change = ChangeRequest::default();
    let moved = store
        .repo
        .put_alias(&n, &alias("prod"), to(1), &change)
        .await;
    assert!(moved.is_ok(), "{moved:?}");
    let status = shared::repository::StatusChange {
        actor: "release".into(),
        message: None,
        expected: Some(VersionStatus::Active),
    };
    let deprecated = store
        .repo
        .set_version_status(&n, v1, VersionStatus::Deprecated, &status)
        .await;
    assert!(deprecated.is_ok(), "{deprecated:?}");
    store
        .repo
        .put_alias(&n, &alias("prod"), to(2), &change)
        .await
        .unwrap();
    let deleted = store
        .repo
        .delete_version(&n, v1, None, Allowed::already())
        .await;
    assert!(deleted.is_ok(), "{deleted:?}");
}

// Audit finding (SPEC 7.12): a multipart commit whose hand-over to
// verification is refused because the upload expired between the commit's
// check and its write finds the upload still `pending`, and expired: the
// upload is gone for every purpose (a 404), not "changed state meanwhile".
#[tokio::test]
async fn a_multipart_commit_refused_because_its_upload_expired_meanwhile_answers_404() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use shared::layout::attr;
    let store = TestStore::new().await;
    let n = name("lapsed");
    let content = bytes(5 * MIB + 3, 4);
    let (id, plan) = start_multipart(&store.repo, &n, &content).await;
    send_parts(&store.repo, &store.http, &n, &id, &content, &plan).await;
    let (slow, gate) = store.held_before("UpdateItem", Some(&id)).await;
    let slow = slow.with_verifier(Verifier::Deferred);
    let (n2, id2) = (n.clone(), id.clone());
    let commit = tokio::spawn(async move { slow.commit(&n2, &id2, "ci").await });
    gate.arrived().await;
    store
        .ddb
        .update_item()
        .table_name(&store.config.table)
        .key(attr::PK, AttributeValue::S(shared::layout::upload_pk(&n)))
        .key(attr::SK, AttributeValue::S(id.clone()))
        .update_expression("SET #expires = :past")
        .expression_attribute_names("#expires", attr::EXPIRES_AT)
        .expression_attribute_values(":past", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    gate.open();
    let outcome = commit.await.unwrap();
    assert!(
        matches!(outcome, Err(Error::UploadNotFound { .. })),
        "{outcome:?}"
    );
}

// Audit finding (SPEC 10.3): an alias records the status of each target as
// it read it. A move that read version 1 active, landing after version 1
// was deprecated (and the alias refreshed), recorded `active` again, and
// resolving kept serving version 1 without its warning. The move is now
// conditioned on the status it records: refused, it reads again.
#[tokio::test]
async fn an_alias_move_racing_a_status_change_never_records_the_status_the_version_left() {
    use shared::model::VersionStatus;
    let store = TestStore::new().await;
    let n = name("stale-status");
    store.publish_each(&n, &[b"one", b"two"]).await;
    let change = ChangeRequest::default();
    store
        .repo
        .put_alias(&n, &alias("prod"), to(1), &change)
        .await
        .unwrap();
    let (slow, gate) = store.held_before("TransactWriteItems", None).await;
    let n2 = n.clone();
    let canary = tokio::spawn(async move {
        let target = test_support::split(1, 2, 10);
        slow.put_alias(&n2, &alias("prod"), target, &ChangeRequest::default())
            .await
    });
    // The move read version 1 active; it is deprecated before the move lands.
    gate.arrived().await;
    let status = shared::repository::StatusChange {
        actor: "release".into(),
        message: Some("CVE".into()),
        expected: None,
    };
    store
        .repo
        .set_version_status(&n, Version::Number(1), VersionStatus::Deprecated, &status)
        .await
        .unwrap();
    gate.open();
    let moved = canary.await.unwrap();
    assert!(moved.is_ok(), "{moved:?}");
    let mut primaries = 0;
    for i in 0..40 {
        let resolved = store
            .repo
            .resolve_alias(&n, &alias("prod"), Some(&format!("client-{i}")))
            .await
            .unwrap();
        if resolved.version == Version::Number(1) {
            primaries += 1;
            assert!(
                resolved.warning.is_some(),
                "version 1 is deprecated: {resolved:?}"
            );
        }
    }
    assert!(primaries > 0, "no key picked version 1");
}

// Review finding (SPEC 10.3): two status changes of one version, the later
// one's alias refresh running before the earlier one's, left the alias
// recording the earlier status (reactivated, then deprecated: resolve
// served the deprecated version without its warning). A refresh reads the
// version again after writing, and writes its status until the two agree.
#[tokio::test]
async fn a_late_alias_refresh_never_leaves_the_status_of_an_earlier_change() {
    use shared::model::VersionStatus;
    use shared::repository::StatusChange;
    let store = TestStore::new().await;
    let n = name("late-refresh");
    store.publish_each(&n, &[b"one", b"two"]).await;
    let change = ChangeRequest::default();
    store
        .repo
        .put_alias(&n, &alias("prod"), to(1), &change)
        .await
        .unwrap();
    let status = |message: &str| StatusChange {
        actor: "release".into(),
        message: Some(message.into()),
        expected: None,
    };
    let v1 = Version::Number(1);
    store
        .repo
        .set_version_status(&n, v1, VersionStatus::Deprecated, &status("old"))
        .await
        .unwrap();
    // Reactivated; its refresh of `prod` waits.
    let (slow, gate) = store.held_before("UpdateItem", Some("prod")).await;
    let n2 = n.clone();
    let reactivate = tokio::spawn(async move {
        slow.set_version_status(
            &n2,
            v1,
            VersionStatus::Active,
            &StatusChange {
                actor: "release".into(),
                message: None,
                expected: None,
            },
        )
        .await
    });
    gate.arrived().await;
    // Deprecated again, refresh and all, before the first refresh lands.
    store
        .repo
        .set_version_status(&n, v1, VersionStatus::Deprecated, &status("again"))
        .await
        .unwrap();
    gate.open();
    reactivate.await.unwrap().unwrap();
    let resolved = store
        .repo
        .resolve_alias(&n, &alias("prod"), None)
        .await
        .unwrap();
    assert_eq!(resolved.version, v1);
    assert!(
        resolved.warning.is_some(),
        "version 1 is deprecated: {resolved:?}"
    );
}

/// The library's writes of `n`: `contents` put and published in turn.
fn library_publishes(store: &TestStore, n: &shared::ArtifactName, contents: &[&str]) {
    for content in contents {
        for (call, args) in [
            (
                "put_artifact",
                serde_json::json!({"name": n.as_str(), "content": content}),
            ),
            (
                "publish_artifact_version",
                serde_json::json!({"name": n.as_str()}),
            ),
        ] {
            store.library(&["call", call, &args.to_string()]);
        }
    }
}

// Review finding D2 (SPEC 7.10, 7.15): the reclaim of a library version's
// own object (`{prefix}/{name}/{N:06}`) deleted every version of that key
// from rows read once, maybe minutes before. A purge and a re-creation of
// the artifact up to version N in between lost the new version's bytes.
// It now reads the row again and deletes only the object versions written
// before the row's grace period began.
#[tokio::test]
async fn a_reclaim_never_deletes_the_library_object_of_a_version_recreated_after_a_purge() {
    let store = TestStore::new().await;
    let n = name("reclaim-reborn");
    // GIVEN a library version 1, deleted, its grace period started and over.
    library_publishes(&store, &n, &["old one", "old two"]);
    store.library(&[
        "call",
        "delete_artifact_version",
        &serde_json::json!({"name": n.as_str(), "version": 1}).to_string(),
    ]);
    let stamped = store.repo.reclaim(&n, Duration::ZERO).await.unwrap();
    assert_eq!(stamped.stamped, vec![Version::Number(1)]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // ... and a pass that read the rows and is about to delete its object.
    let (held, gate) = store.held_before("ListObjectVersions", None).await;
    let pass = {
        let n = n.clone();
        tokio::spawn(async move { held.reclaim(&n, Duration::ZERO).await })
    };
    gate.arrived().await;
    // WHEN the artifact is purged and the library writes a new version 1.
    store.repo.purge_artifact(&n).await.unwrap();
    library_publishes(&store, &n, &["new one"]);
    gate.open();
    let _ = pass.await.unwrap();
    // THEN the new version 1 still serves its bytes.
    assert_eq!(served(&store, &n, Version::Number(1)).await, b"new one");
}

// Review finding D4 (SPEC 7.10): retention soft-deleted the rows it had
// chosen on condition only that they were live and unaliased. A purge and
// a re-creation of the artifact between its read and its writes had it
// delete the new life's young versions, which its policy keeps. Each soft
// delete is now conditional on the very row read (its `update_at`).
#[tokio::test]
async fn retention_never_deletes_a_version_written_again_after_a_purge_it_did_not_see() {
    let store = TestStore::new().await;
    let n = name("retention-reborn");
    store.publish_each(&n, &[b"old one", b"old two"]).await;
    // GIVEN a retention pass keeping one version, about to delete version 1.
    let (held, gate) = store
        .held_before("TransactWriteItems", Some("000001"))
        .await;
    let pass = {
        let n = n.clone();
        tokio::spawn(async move {
            let policy = shared::model::RetentionPolicy {
                keep_last_n: 1,
                older_than: Duration::ZERO,
            };
            held.purge_versions(&n, policy, false).await
        })
    };
    gate.arrived().await;
    // WHEN the artifact is purged and written again from version 1.
    store.repo.purge_artifact(&n).await.unwrap();
    store.publish_each(&n, &[b"new one", b"new two"]).await;
    gate.open();
    let report = pass.await.unwrap().unwrap();
    // THEN the new version 1 lives on.
    assert!(report.deleted.is_empty(), "{report:?}");
    assert_eq!(served(&store, &n, Version::Number(1)).await, b"new one");
}

// Review finding (SPEC 7.3, 7.12): a multipart commit over an unverified
// object read the verified record, then whether the object's writer was
// alive. A verification committing between the two reads left the object
// looking unverified and its writer gone: the commit completed its own
// (garbage) parts over the bytes LATEST now served. The writer is read
// first now; its verification writes both in one transaction.
#[tokio::test]
async fn a_multipart_commit_never_completes_over_bytes_a_verification_committed_meanwhile() {
    let store = TestStore::new().await;
    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("overwritten");
    let good = bytes(5 * MIB + 21, 11);
    let garbage = bytes(5 * MIB + 21, 12);
    // GIVEN a correct upload verifying, and one declaring the same digest
    // with other bytes, its parts sent.
    let (right, right_plan) = start_multipart(&repo, &n, &good).await;
    send_parts(&repo, &store.http, &n, &right, &good, &right_plan).await;
    let (bad, bad_plan) = start_multipart(&repo, &n, &good).await;
    send_parts(&repo, &store.http, &n, &bad, &garbage, &bad_plan).await;
    assert!(matches!(
        repo.commit(&n, &right, "ci").await.unwrap(),
        CommitOutcome::Verifying { .. }
    ));
    // WHEN the second upload's commit reads the first's row just after
    // the first's verification committed.
    let writer = &right[..right.len() - 64];
    let (held, gate) = store.held_before("GetItem", Some(writer)).await;
    let commit = {
        let (n, bad) = (n.clone(), bad.clone());
        let held = held.with_verifier(Verifier::Deferred);
        tokio::spawn(async move { held.commit(&n, &bad, "mallory").await })
    };
    gate.arrived().await;
    assert!(matches!(
        verify(&repo, &n, &right).await,
        VerifyStep::Committed(_)
    ));
    gate.open();
    let outcome = commit.await.unwrap();
    // THEN its parts never replace what LATEST serves.
    assert!(
        !matches!(outcome, Ok(CommitOutcome::Verifying { .. })),
        "{outcome:?}"
    );
    assert_eq!(served(&store, &n, Version::Latest).await, good);
}

// Review finding (SPEC 7.3, 7.12): a writer verifying past its upload's
// lifetime was taken for gone, so another upload of the same digest
// completed its parts over the object being hashed; the verification
// then committed, and LATEST served the other upload's bytes. A
// verification commits whenever it ends, so its writer counts as alive.
#[tokio::test]
async fn a_writer_verifying_past_its_lifetime_is_never_completed_over() {
    let store = TestStore::new().await;
    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("slow-verify");
    let good = bytes(5 * MIB + 23, 13);
    let garbage = bytes(5 * MIB + 23, 14);
    let (right, right_plan) = start_multipart(&repo, &n, &good).await;
    send_parts(&repo, &store.http, &n, &right, &good, &right_plan).await;
    let (bad, bad_plan) = start_multipart(&repo, &n, &good).await;
    send_parts(&repo, &store.http, &n, &bad, &garbage, &bad_plan).await;
    // GIVEN a correct upload verifying past its lifetime.
    assert!(matches!(
        repo.commit(&n, &right, "ci").await.unwrap(),
        CommitOutcome::Verifying { .. }
    ));
    store.expire_upload(&n, &right).await;
    // WHEN another upload of the same digest commits.
    let early = repo.commit(&n, &bad, "mallory").await;
    // THEN it waits for that verification, which makes the right bytes
    // LATEST.
    assert!(
        matches!(early, Err(Error::ConcurrentModification(ref m)) if m.contains("being verified")),
        "{early:?}"
    );
    assert!(matches!(
        verify(&repo, &n, &right).await,
        VerifyStep::Committed(_)
    ));
    assert_eq!(served(&store, &n, Version::Latest).await, good);
}

// Review finding (SPEC 7.5, 7.11): a start replayed with the key of an
// earlier one, but declaring a size the stored bytes contradict, deleted
// the earlier request's upload row (the delete meant for a row written
// beside the check): that upload's commit retry then answered 404. The
// replay is refused and deletes nothing.
#[tokio::test]
async fn a_contradicted_replay_of_a_start_never_deletes_the_first_requests_upload() {
    let store = TestStore::new().await;
    let n = name("replayed-start");
    let content = b"the first request's bytes";
    let keyed = |size: usize| UploadRequest {
        key: Some("start-once".into()),
        ..declare(content, size, None)
    };
    let first = store
        .repo
        .create_upload(&n, keyed(content.len()), LOCAL_ACTOR)
        .await
        .unwrap();
    test_support::put_bytes(&store.http, &first, content).await;
    let committed = store
        .repo
        .commit_upload(&n, &first.upload_id, LOCAL_ACTOR)
        .await
        .unwrap();
    let replay = store
        .repo
        .create_upload(&n, keyed(content.len() + 1), LOCAL_ACTOR)
        .await;
    assert!(
        matches!(replay, Err(Error::InvalidRequest(_))),
        "{replay:?}"
    );
    let again = store
        .repo
        .commit_upload(&n, &first.upload_id, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(again.artifact.sha256, committed.artifact.sha256);
    assert_eq!(store.upload_rows(&n).await, 1);
}

// Review finding (SPEC 7.11, 7.15): a verification ordered commits by
// their times, but a commit takes its time before its write lands. One
// delayed in between landed after a multipart upload was handed to
// verification, with an older time, and the verification then rolled
// LATEST back over it. A verification now commits only over the LATEST
// its commit read.
#[tokio::test]
async fn a_verification_never_rolls_back_a_commit_that_landed_after_its_hand_over() {
    let store = TestStore::new().await;
    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("delayed-commit");
    let multipart = bytes(5 * MIB + 25, 15);
    let (m, plan) = start_multipart(&repo, &n, &multipart).await;
    send_parts(&repo, &store.http, &n, &m, &multipart, &plan).await;
    // GIVEN a commit that took its time, then was delayed before its write.
    let later = b"landed after the hand-over";
    let c = store
        .repo
        .create_upload(&n, declare(later, later.len(), None), LOCAL_ACTOR)
        .await
        .unwrap();
    test_support::put_bytes(&store.http, &c, later).await;
    let nonce = c.upload_id[..c.upload_id.len() - 64].to_owned();
    let (held, gate) = store.held_before("TransactWriteItems", Some(&nonce)).await;
    let commit = {
        let (n, id) = (n.clone(), c.upload_id.clone());
        tokio::spawn(async move { held.commit_upload(&n, &id, LOCAL_ACTOR).await })
    };
    gate.arrived().await;
    // WHEN a multipart upload is handed to verification meanwhile, and the
    // delayed commit lands after it.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(matches!(
        repo.commit(&n, &m, "ci").await.unwrap(),
        CommitOutcome::Verifying { .. }
    ));
    gate.open();
    commit.await.unwrap().unwrap();
    // THEN the verification ends superseded: LATEST stays the later commit.
    let step = verify(&repo, &n, &m).await;
    assert!(matches!(step, VerifyStep::Superseded { .. }), "{step:?}");
    assert_eq!(served(&store, &n, Version::Latest).await, later);
}

// Review finding (SPEC 7.16): a commit cut off after it handed its upload
// to verification and before it asked for it left the upload verifying
// with nothing behind it; the commit's retry found it verifying and
// answered 202, and the client then only read the upload's state, which
// never asked. The state read asks for a stalled verification again.
#[tokio::test]
async fn reading_the_state_of_an_upload_whose_verification_stalled_asks_for_it_again() {
    let store = TestStore::new().await;
    let deferred = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("never-asked");
    let content = bytes(5 * MIB + 9, 17);
    let (id, parts) = start_multipart(&deferred, &n, &content).await;
    send_parts(&deferred, &store.http, &n, &id, &content, &parts).await;
    assert!(matches!(
        deferred.commit(&n, &id, "ci").await.unwrap(),
        CommitOutcome::Verifying { .. }
    ));
    let (asked, mut requests) = tokio::sync::mpsc::unbounded_channel();
    let queued = store.repo.clone().with_verifier(Verifier::Queue(asked));
    // Handed over just now: a read asks for nothing.
    assert_eq!(
        queued.upload_state(&n, &id).await.unwrap().state,
        "verifying"
    );
    assert!(requests.try_recv().is_err());
    // Nothing for longer than an invocation runs: the read asks again.
    store.stall_upload(&n, &id).await;
    assert_eq!(
        queued.upload_state(&n, &id).await.unwrap().state,
        "verifying"
    );
    let request = requests
        .try_recv()
        .expect("the stalled verification asked for again");
    assert_eq!(request.upload_id, id);
    assert!(matches!(
        verify(&deferred, &n, &id).await,
        VerifyStep::Committed(_)
    ));
}

// Review finding (SPEC 7.5): a rollback that re-created a deleted alias,
// retried with its key after its answer was lost, found its own entry the
// last change and nothing to undo before it (404 NothingToRollBack), where
// the first attempt had answered 200. The retry now answers as the first.
#[tokio::test]
async fn a_retried_rollback_that_recreated_a_deleted_alias_answers_as_the_first_did() {
    let store = TestStore::new().await;
    let n = name("rollback-retried");
    let prod = alias("prod");
    store.publish_each(&n, &[b"one"]).await;
    let plain = ChangeRequest::default();
    store
        .repo
        .put_alias(&n, &prod, to(1), &plain)
        .await
        .unwrap();
    store.repo.delete_alias(&n, &prod, &plain).await.unwrap();
    let keyed = ChangeRequest {
        key: Some("rollback-once".into()),
        ..ChangeRequest::default()
    };
    let first = store
        .repo
        .rollback_alias(&n, &prod, None, &keyed)
        .await
        .unwrap();
    assert_eq!((first.version, first.revision), (Version::Number(1), 3));
    let again = store.repo.rollback_alias(&n, &prod, None, &keyed).await;
    assert!(again.as_ref().is_ok_and(|a| a.revision == 3), "{again:?}");
    let history = store
        .repo
        .alias_history(&n, &prod, None, None)
        .await
        .unwrap();
    assert_eq!(history.items.len(), 3, "applied once");
    // A retry of a rollback that undid a move is still not undone itself.
    store
        .repo
        .put_alias(&n, &prod, to(1), &plain)
        .await
        .unwrap();
    let keyed = ChangeRequest {
        key: Some("rollback-twice".into()),
        ..ChangeRequest::default()
    };
    let undone = store.repo.rollback_alias(&n, &prod, None, &keyed).await;
    let repeated = store.repo.rollback_alias(&n, &prod, None, &keyed).await;
    assert_eq!(
        undone.map(|a| a.revision).ok(),
        repeated.map(|a| a.revision).ok()
    );
}

// Review finding (SPEC 10.3): a version deleted (by a caller or by
// retention) kept its search entries by metadata for good. Every search by
// a common metadata pair read them, counted against what a search may
// read, until it answered 400 "too broad" for ever. They go with the row.
#[tokio::test]
async fn a_deleted_versions_search_entries_go_with_it() {
    let store = TestStore::new().await;
    let n = name("indexed");
    for content in [&b"one"[..], b"two", b"three"] {
        store.publish_with(&n, content, &[("team", "x")]).await;
    }
    let pk = shared::layout::meta_index_pk("team", "x");
    let sk = |version: u32| format!("{n}/{}", Version::Number(version).sort_key());
    assert!(store.raw_item(&pk, &sk(1)).await.is_some());
    store
        .repo
        .delete_version(&n, Version::Number(1), None, Allowed::already())
        .await
        .unwrap();
    let policy = shared::model::RetentionPolicy {
        keep_last_n: 1,
        older_than: Duration::ZERO,
    };
    let report = store.repo.purge_versions(&n, policy, false).await.unwrap();
    assert_eq!(report.deleted.len(), 1, "{report:?}");
    assert!(
        store.raw_item(&pk, &sk(1)).await.is_none(),
        "deleted by a caller"
    );
    assert!(
        store.raw_item(&pk, &sk(2)).await.is_none(),
        "deleted by retention"
    );
    assert!(
        store.raw_item(&pk, &sk(3)).await.is_some(),
        "a live one's stays"
    );
}

// Review finding (SPEC 10.3): resolving an alias the library wrote took
// the warning from the alias row's copy of the status, which the
// library's rows never carry: a deprecated version resolved silently. The
// status is the version row's, read for that resolve anyway.
#[tokio::test]
async fn resolving_a_library_alias_onto_a_deprecated_version_warns() {
    use shared::model::VersionStatus;
    use shared::repository::StatusChange;
    let store = TestStore::new().await;
    let n = name("library-deprecated");
    store.publish_each(&n, &[b"one", b"two"]).await;
    store.library(&[
        "call",
        "put_alias",
        &serde_json::json!({"name": n.as_str(), "alias": "prod", "version": 1}).to_string(),
    ]);
    let deprecate = StatusChange {
        actor: "release".into(),
        message: None,
        expected: None,
    };
    store
        .repo
        .set_version_status(
            &n,
            Version::Number(1),
            VersionStatus::Deprecated,
            &deprecate,
        )
        .await
        .unwrap();
    let resolved = store
        .repo
        .resolve_alias(&n, &alias("prod"), None)
        .await
        .unwrap();
    assert_eq!(resolved.version, Version::Number(1));
    assert!(resolved.warning.is_some(), "{resolved:?}");
}

// Review of the ordering by what a commit saw: the verification's write
// still required LATEST to be older than the upload's commit time, which
// another function's clock running ahead defeats: the read said "commit",
// the write refused, for ever (neither committed nor superseded). The
// write now requires LATEST exactly as read, commit time included.
#[tokio::test]
async fn a_verification_commits_over_the_latest_it_saw_whatever_the_clocks_said() {
    let store = TestStore::new().await;
    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("skewed");
    store.upload(&n, b"first").await;
    // LATEST as written by a function whose clock ran far ahead.
    store
        .set_raw_string(
            n.as_str(),
            "LATEST",
            "update_at",
            "2099-01-01T00:00:00.000000+0000",
        )
        .await;
    let content = bytes(5 * MIB + 27, 19);
    let (id, plan) = start_multipart(&repo, &n, &content).await;
    send_parts(&repo, &store.http, &n, &id, &content, &plan).await;
    assert!(matches!(
        repo.commit(&n, &id, "ci").await.unwrap(),
        CommitOutcome::Verifying { .. }
    ));
    let step = tokio::time::timeout(Duration::from_secs(60), verify(&repo, &n, &id))
        .await
        .expect("the verification kept retrying");
    assert!(matches!(step, VerifyStep::Committed(_)), "{step:?}");
    assert_eq!(served(&store, &n, Version::Latest).await, content);
}

/// Two multipart uploads of `content` to `n`, their parts sent; the first's
/// commit cut off after it completed its parts, before it handed them to
/// verification. Their ids, the first's first.
async fn two_uploads_the_first_cut_off(
    store: &TestStore,
    repo: &Repository,
    n: &shared::ArtifactName,
    content: &[u8],
) -> (String, String) {
    let (first, first_plan) = start_multipart(repo, n, content).await;
    send_parts(repo, &store.http, n, &first, content, &first_plan).await;
    let (second, second_plan) = start_multipart(repo, n, content).await;
    send_parts(repo, &store.http, n, &second, content, &second_plan).await;
    let (held, gate) = store
        .held_before("UpdateItem", Some("blob_version_id"))
        .await;
    let cut = {
        let (n, first) = (n.clone(), first.clone());
        let held = held.with_verifier(Verifier::Deferred);
        tokio::spawn(async move { held.commit(&n, &first, "ci").await })
    };
    gate.arrived().await;
    cut.abort();
    (first, second)
}

// Left alone last session (SPEC 7.16): a multipart commit cut off between
// completing its parts and handing them to verification left an object
// its pending writer would verify if ever retried, so every other upload
// of those bytes answered "being verified" until that writer's row
// expired, a day later. Once the cut-off is older than a commit runs, the
// other upload records the writer superseded (conditional on the stamp
// its commit left) and completes its own parts over the object.
#[tokio::test]
async fn a_multipart_commit_cut_off_before_its_hand_over_blocks_its_bytes_no_longer_than_a_commit_runs()
 {
    let store = TestStore::new().await;
    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("cut-off-commit");
    let content = bytes(5 * MIB + 29, 15);
    // GIVEN the first upload's commit cut off after it completed the
    // parts, before it handed them to verification.
    let (first, second) = two_uploads_the_first_cut_off(&store, &repo, &n, &content).await;
    // WHEN the other upload commits while that commit may still run, it
    // waits for it.
    let early = repo.commit(&n, &second, "ci").await;
    assert!(
        matches!(early, Err(Error::ConcurrentModification(ref m)) if m.contains("being verified")),
        "{early:?}"
    );
    // THEN once it was cut off longer ago than a commit runs, the other
    // upload goes on: its own bytes are verified and become LATEST.
    store.age_completion_stamp(&n, &first).await;
    assert!(matches!(
        repo.commit(&n, &second, "ci").await.unwrap(),
        CommitOutcome::Verifying { .. }
    ));
    assert!(matches!(
        verify(&repo, &n, &second).await,
        VerifyStep::Committed(_)
    ));
    assert_eq!(served(&store, &n, Version::Latest).await, content);
    // AND the first upload, retried now, is superseded: it never hands
    // the object over any more.
    let late = repo.commit(&n, &first, "ci").await;
    assert!(
        matches!(late, Err(Error::UploadSuperseded { .. })),
        "{late:?}"
    );
    let state = repo.upload_state(&n, &first).await.unwrap();
    assert_eq!(state.state, "superseded");
    assert!(
        state
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("cut off"),
        "{state:?}"
    );
}

// A retry of the cut-off commit that stamps again keeps its upload alive:
// the other upload's supersede is conditional on the stamp it read.
#[tokio::test]
async fn a_cut_off_multipart_commit_retried_in_time_keeps_its_upload() {
    let store = TestStore::new().await;
    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("cut-off-retried");
    let content = bytes(5 * MIB + 31, 16);
    let (first, second) = two_uploads_the_first_cut_off(&store, &repo, &n, &content).await;
    store.age_completion_stamp(&n, &first).await;
    // GIVEN the first commit's retry, held just before its hand-over
    // (after the other upload read the writer's old stamp).
    let (reader, read) = store.held_before("UpdateItem", Some(":stamp")).await;
    let other = {
        let (n, second) = (n.clone(), second.clone());
        let reader = reader.with_verifier(Verifier::Deferred);
        tokio::spawn(async move { reader.commit(&n, &second, "ci").await })
    };
    read.arrived().await;
    // The retry finds its parts completed already: it hands the object
    // over, verifying it as its own.
    assert!(matches!(
        repo.commit(&n, &first, "ci").await.unwrap(),
        CommitOutcome::Verifying { .. }
    ));
    read.open();
    // THEN the other upload's supersede fails: it waits.
    let outcome = other.await.unwrap();
    assert!(
        matches!(outcome, Err(Error::ConcurrentModification(ref m)) if m.contains("being verified")),
        "{outcome:?}"
    );
    assert!(matches!(
        verify(&repo, &n, &first).await,
        VerifyStep::Committed(_)
    ));
    assert_eq!(served(&store, &n, Version::Latest).await, content);
}

// Left alone last session (SPEC 7.10, 7.15): a reclaim's stamp of a row
// reclaimed was conditional only on "exists and deleted". A purge, a
// re-creation of the number and its deletion, all between the pass's read
// and its stamp, left the new row stamped reclaimed before its grace
// period (and the mirror then deleted its library objects). The stamp
// holds only while the row is the very one read.
#[tokio::test]
async fn a_reclaim_never_stamps_a_row_written_again_after_a_purge_as_reclaimed() {
    let store = TestStore::new().await;
    let n = name("stamp-reborn");
    library_publishes(&store, &n, &["old one", "old two"]);
    let delete_one = serde_json::json!({"name": n.as_str(), "version": 1}).to_string();
    store.library(&["call", "delete_artifact_version", &delete_one]);
    let stamped = store.repo.reclaim(&n, Duration::ZERO).await.unwrap();
    assert_eq!(stamped.stamped, vec![Version::Number(1)]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // GIVEN a pass about to stamp version 1 reclaimed.
    let (held, gate) = store.held_before("UpdateItem", Some("reclaimed_at")).await;
    let pass = {
        let n = n.clone();
        tokio::spawn(async move { held.reclaim(&n, Duration::ZERO).await })
    };
    gate.arrived().await;
    // WHEN the artifact is purged, and the library writes a new version 1
    // and deletes it.
    store.repo.purge_artifact(&n).await.unwrap();
    library_publishes(&store, &n, &["new one"]);
    store.library(&["call", "delete_artifact_version", &delete_one]);
    gate.open();
    let report = pass.await.unwrap().unwrap();
    // THEN the new row is not reclaimed: its grace period has not begun.
    assert!(report.reclaimed.is_empty(), "{report:?}");
    let row = store
        .raw_item(n.as_str(), "000001")
        .await
        .expect("the new version 1");
    assert!(!row.contains_key("reclaimed_at"), "{row:?}");
}

// Review of this session's diff (SPEC 7.5): the pipeline's alias check
// now reads the alias on every one-request commit. A multipart commit
// answered 202 (its pipeline stored for its verification); a rollout then
// took the alias; the client's retry of the commit met the rollout (409)
// instead of the first answer. A commit handed over already answers as
// the first did.
#[tokio::test]
async fn a_retried_multipart_pipeline_commit_answers_as_the_first_whatever_holds_its_alias_now() {
    let store = TestStore::new().await;
    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("pipeline-retried");
    store.publish_each(&n, &[b"one", b"two"]).await;
    repo.put_alias(&n, &alias("prod"), to(1), &ChangeRequest::default())
        .await
        .unwrap();
    let content = bytes(5 * MIB + 37, 17);
    let (id, plan) = start_multipart(&repo, &n, &content).await;
    send_parts(&repo, &store.http, &n, &id, &content, &plan).await;
    let pipeline = test_support::publishing_to("prod", None);
    let first = repo
        .commit_pipeline(&n, &id, "ci", &pipeline, Allowed::already())
        .await
        .unwrap();
    assert!(matches!(
        first,
        shared::repository::PipelineOutcome::Verifying { .. }
    ));
    // GIVEN a rollout took the alias since.
    repo.start_rollout(
        &n,
        &alias("prod"),
        shared::model::RolloutRequest {
            version: Version::Number(2),
            steps: shared::rollout::preset("canary-10-1h").unwrap(),
            alarms: vec![],
            message: None,
        },
        "ci",
    )
    .await
    .unwrap();
    // WHEN the client retries its commit, THEN it answers as the first did.
    let again = repo
        .commit_pipeline(&n, &id, "ci", &pipeline, Allowed::already())
        .await;
    assert!(
        matches!(
            again,
            Ok(shared::repository::PipelineOutcome::Verifying { .. })
        ),
        "{again:?}"
    );
}

// Review of the fix above: only an upload handed over with its pipeline
// answers as its first commit did. One committed by a plain commit, then
// committed again with a pipeline whose alias check fails, is refused
// before anything is written (it published, then refused the move).
#[tokio::test]
async fn a_pipeline_commit_of_an_upload_committed_without_one_is_checked_before_it_publishes() {
    let store = TestStore::new().await;
    let repo = &store.repo;
    let n = name("plain-then-pipeline");
    store.publish_each(&n, &[b"one", b"two"]).await;
    repo.put_alias(&n, &alias("prod"), to(1), &ChangeRequest::default())
        .await
        .unwrap();
    let ticket = repo
        .create_upload(&n, test_support::declare(b"three"), LOCAL_ACTOR)
        .await
        .unwrap();
    test_support::put_bytes(&store.http, &ticket, b"three").await;
    repo.commit(&n, &ticket.upload_id, "ci").await.unwrap();
    let pipeline = test_support::publishing_to("prod", Some(5));
    let refused = repo
        .commit_pipeline(&n, &ticket.upload_id, "ci", &pipeline, Allowed::already())
        .await;
    assert!(
        matches!(refused, Err(Error::AliasModified { .. })),
        "{refused:?}"
    );
    let versions = repo.list_versions(&n, None, None).await.unwrap();
    assert_eq!(versions.items.len(), 3, "LATEST, 2, 1: nothing published");
}
