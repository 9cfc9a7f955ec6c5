//! Multipart uploads (SPEC 4.1, 7.11, 7.12): parts bound to their SHA-256,
//! resumable, completed, verified by the service before they become LATEST.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::join_all;
use shared::model::{
    CommitOutcome, LOCAL_ACTOR, MultipartPlan, PartRequest, UploadRequest, UploadStatus,
};
use shared::{ArtifactName, Error, Repository, Sha256, Verifier, VerifyStep, Version};
use test_support::{TestStore, name, parts_of, pattern as bytes, put_part, sha256_hex};

const MIB: usize = 1024 * 1024;

fn declare(sha256: String, size: usize) -> UploadRequest {
    UploadRequest {
        sha256,
        size: size as u64,
        content_type: Some("application/x-tar".into()),
        metadata: [("build".to_owned(), "42".to_owned())].into(),
        part_size: Some(5 * MIB as u64),
        key: None,
    }
}

fn digest(bytes: &[u8]) -> Sha256 {
    sha256_hex(bytes).parse().unwrap()
}

/// Starts a multipart upload of `content` declared as `declared`.
async fn start(
    repo: &Repository,
    n: &ArtifactName,
    content: &[u8],
    declared: String,
) -> (String, MultipartPlan) {
    let ticket = repo
        .create_upload(n, declare(declared, content.len()), LOCAL_ACTOR)
        .await
        .unwrap();
    assert!(!ticket.exists && ticket.url.is_none());
    (
        ticket.upload_id,
        ticket.multipart.expect("a multipart ticket"),
    )
}

/// Sends the parts numbered `numbers` of `content`, all in parallel.
async fn send_parts(
    store: &TestStore,
    n: &ArtifactName,
    id: &str,
    content: &[u8],
    plan: &MultipartPlan,
    numbers: &[u32],
) {
    let parts: Vec<(u32, &[u8])> = parts_of(content, plan)
        .into_iter()
        .filter(|(number, _)| numbers.contains(number))
        .collect();
    let requests: Vec<PartRequest> = parts
        .iter()
        .map(|(number, part)| PartRequest {
            number: *number,
            sha256: digest(part),
        })
        .collect();
    let urls = store.repo.upload_part_urls(n, id, &requests).await.unwrap();
    assert_eq!(urls.parts.len(), parts.len());
    let sent = join_all(urls.parts.iter().rev().map(|url| {
        let part = parts
            .iter()
            .find(|(number, _)| *number == url.number)
            .unwrap()
            .1;
        put_part(&store.http, url, part)
    }))
    .await;
    for (status, body) in sent {
        assert!(status < 300, "part refused: {status} {body}");
    }
}

/// Polls the upload's state until it is no longer `verifying`.
async fn settled(repo: &Repository, n: &ArtifactName, id: &str) -> UploadStatus {
    for _ in 0..600 {
        let status = repo.upload_state(n, id).await.unwrap();
        if status.state != "verifying" {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("upload {id} still verifying after 30 s");
}

async fn latest_bytes(store: &TestStore, n: &ArtifactName) -> Vec<u8> {
    let latest = store.repo.get_version(n, Version::Latest).await.unwrap();
    store
        .download(latest.download_url.as_deref().unwrap())
        .await
}

#[tokio::test]
async fn parts_sent_in_parallel_in_any_order_become_latest_once_verified() {
    let store = TestStore::new().await;
    let n = name("model");
    let content = bytes(2 * 5 * MIB + 1234, 1);
    let (id, plan) = start(&store.repo, &n, &content, sha256_hex(&content)).await;
    assert_eq!(plan.part_count, 3);
    send_parts(&store, &n, &id, &content, &plan, &[1, 2, 3]).await;

    let first = store.repo.commit(&n, &id, "ci").await.unwrap();
    assert!(
        matches!(
            first,
            CommitOutcome::Verifying {
                state: "verifying",
                ..
            }
        ),
        "{first:?}"
    );
    let status = settled(&store.repo, &n, &id).await;
    assert_eq!(status.state, "committed", "{status:?}");
    let artifact = status.artifact.unwrap();
    assert_eq!(artifact.sha256, sha256_hex(&content));
    assert_eq!(artifact.size, Some(content.len() as u64));
    assert_eq!(latest_bytes(&store, &n).await, content);
    let latest = store.repo.get_version(&n, Version::Latest).await.unwrap();
    assert_eq!(latest.metadata.get("build").map(String::as_str), Some("42"));
    assert_eq!(latest.content_type.as_deref(), Some("application/x-tar"));
    // The committer, not whoever started the upload, created LATEST.
    assert_eq!(latest.created_by.as_deref(), Some("ci"));

    // A retried commit answers as a committed upload does, and publishing
    // works as for any LATEST.
    match store.repo.commit(&n, &id, "ci").await.unwrap() {
        CommitOutcome::Committed(c) => assert_eq!(c.artifact.sha256, sha256_hex(&content)),
        other => panic!("{other:?}"),
    }
    let published = store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(published.artifact.version, Version::Number(1));
}

#[tokio::test]
async fn a_wrong_whole_object_digest_fails_the_upload_deletes_its_bytes_and_leaves_latest_alone() {
    let store = TestStore::new().await;
    let n = name("liar");
    store.upload(&n, b"the good build").await;
    let content = bytes(5 * MIB + 10, 2);
    // Every part is right; the whole-object digest declared is another's.
    let declared = sha256_hex(b"not these bytes");
    let (id, plan) = start(&store.repo, &n, &content, declared.clone()).await;
    send_parts(&store, &n, &id, &content, &plan, &[1, 2]).await;

    let first = store.repo.commit(&n, &id, "ci").await.unwrap();
    assert!(matches!(first, CommitOutcome::Verifying { .. }));
    let status = settled(&store.repo, &n, &id).await;
    assert_eq!(status.state, "failed");
    assert!(status.reason.unwrap().contains(&sha256_hex(&content)));

    let blob = store.repo.layout().blob_key(&n, &declared);
    let versions = store
        .s3
        .list_object_versions()
        .bucket(&store.config.bucket)
        .prefix(&blob)
        .send()
        .await
        .unwrap();
    assert!(
        versions.versions().is_empty(),
        "the unverified bytes are deleted"
    );
    assert_eq!(latest_bytes(&store, &n).await, b"the good build");
    // A retried commit answers the same failure, every time.
    for _ in 0..2 {
        match store.repo.commit(&n, &id, "ci").await {
            Err(Error::UploadMismatch(reason)) => assert!(reason.contains("not the declared")),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn an_interrupted_upload_resumes_with_the_parts_it_lacks() {
    let store = TestStore::new().await;
    let n = name("resumed");
    let content = bytes(3 * 5 * MIB + 7, 3);
    let (id, plan) = start(&store.repo, &n, &content, sha256_hex(&content)).await;
    send_parts(&store, &n, &id, &content, &plan, &[1, 3]).await;

    let status = store.repo.upload_state(&n, &id).await.unwrap();
    assert_eq!(status.state, "pending");
    assert_eq!(status.parts_received, Some(vec![1, 3]));
    let parts = status.parts.unwrap();
    assert_eq!(parts[0].size, 5 * MIB as u64);
    // Committing now changes nothing: parts 2 and 4 are missing.
    match store.repo.commit(&n, &id, "ci").await {
        Err(Error::UploadMismatch(m)) => assert!(m.contains("2, 4"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.repo.upload_state(&n, &id).await.unwrap().state,
        "pending"
    );

    // The same parts can be asked for again; the rest are sent; commit.
    send_parts(&store, &n, &id, &content, &plan, &[2, 4]).await;
    store.repo.commit(&n, &id, "ci").await.unwrap();
    assert_eq!(settled(&store.repo, &n, &id).await.state, "committed");
    assert_eq!(latest_bytes(&store, &n).await, content);
}

#[tokio::test]
async fn verification_goes_on_across_invocations_from_its_checkpoint() {
    let store = TestStore::with_settings(&[("VERIFY_BUDGET_BYTES", "1")]).await;
    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("checkpointed");
    let content = bytes(4 * 5 * MIB + 99, 4);
    let (id, plan) = start(&repo, &n, &content, sha256_hex(&content)).await;
    send_parts(&store, &n, &id, &content, &plan, &[1, 2, 3, 4, 5]).await;
    repo.commit(&n, &id, "ci").await.unwrap();

    // Each step hashes one range (8 MiB) at most, then checkpoints.
    let mut steps = Vec::new();
    loop {
        let step = repo.verify_upload_step(&n, &id, None).await.unwrap();
        match step {
            VerifyStep::Continue { verified_bytes } => {
                let status = repo.upload_state(&n, &id).await.unwrap();
                assert_eq!(status.verified_bytes, Some(verified_bytes));
                steps.push(verified_bytes);
            }
            VerifyStep::Committed(c) => {
                assert_eq!(c.artifact.sha256, sha256_hex(&content));
                break;
            }
            other => panic!("{other:?}"),
        }
        assert!(steps.len() < 10);
    }
    assert_eq!(steps, [8 * MIB as u64, 16 * MIB as u64]);
    // A late duplicate invocation finds nothing to do.
    assert_eq!(
        repo.verify_upload_step(&n, &id, None).await.unwrap(),
        VerifyStep::Idle
    );
    assert_eq!(latest_bytes(&store, &n).await, content);
}

#[tokio::test]
async fn parts_requests_out_of_bounds_or_for_other_uploads_are_refused_and_change_nothing() {
    let store = TestStore::new().await;
    let n = name("bounds");
    let content = bytes(5 * MIB + 1, 5);
    let (id, _) = start(&store.repo, &n, &content, sha256_hex(&content)).await;
    let part = |number| PartRequest {
        number,
        sha256: digest(b"x"),
    };
    let refused = |result: Result<_, Error>| match result {
        Err(e @ Error::InvalidRequest(_)) => e,
        other => panic!("{other:?}"),
    };
    refused(store.repo.upload_part_urls(&n, &id, &[part(3)]).await);
    refused(store.repo.upload_part_urls(&n, &id, &[part(0)]).await);
    refused(
        store
            .repo
            .upload_part_urls(&n, &id, &[part(1), part(1)])
            .await,
    );
    refused(store.repo.upload_part_urls(&n, &id, &[]).await);
    let too_many: Vec<PartRequest> = (1..=1001).map(part).collect();
    refused(store.repo.upload_part_urls(&n, &id, &too_many).await);

    // A single-PUT upload has no parts.
    let single = store
        .repo
        .create_upload(
            &n,
            UploadRequest {
                part_size: None,
                ..declare(sha256_hex(b"small"), 5)
            },
            LOCAL_ACTOR,
        )
        .await
        .unwrap();
    refused(
        store
            .repo
            .upload_part_urls(&n, &single.upload_id, &[part(1)])
            .await,
    );
    // Its state has no parts either.
    let state = store
        .repo
        .upload_state(&n, &single.upload_id)
        .await
        .unwrap();
    assert_eq!(state.state, "pending");
    assert!(state.multipart.is_none() && state.parts_received.is_none());
    // Unknown uploads are 404.
    let unknown = format!("{}{}", "0".repeat(32), sha256_hex(b"x"));
    assert!(matches!(
        store.repo.upload_part_urls(&n, &unknown, &[part(1)]).await,
        Err(Error::UploadNotFound { .. })
    ));
    assert!(matches!(
        store.repo.upload_state(&n, &unknown).await,
        Err(Error::UploadNotFound { .. })
    ));
    // Part sizes outside S3's limits are refused at the start.
    for part_size in [5 * MIB as u64 - 1, 5 * 1024 * MIB as u64 + 1] {
        let refused_start = store
            .repo
            .create_upload(
                &n,
                UploadRequest {
                    part_size: Some(part_size),
                    ..declare(sha256_hex(b"y"), 10)
                },
                LOCAL_ACTOR,
            )
            .await;
        assert!(
            matches!(refused_start, Err(Error::InvalidRequest(_))),
            "{part_size}"
        );
    }
    // Nothing reached LATEST.
    assert!(store.repo.get_version(&n, Version::Latest).await.is_err());
    assert_eq!(
        store.repo.upload_state(&n, &id).await.unwrap().state,
        "pending"
    );
}

#[tokio::test]
async fn an_expired_multipart_upload_is_not_found() {
    let store = TestStore::new().await;
    let n = name("late");
    let content = bytes(5 * MIB + 1, 6);
    let (id, plan) = start(&store.repo, &n, &content, sha256_hex(&content)).await;
    send_parts(&store, &n, &id, &content, &plan, &[1, 2]).await;
    // Its lifetime ends (the TTL has not removed the row yet).
    store.expire_upload(&n, &id).await;
    let part = [PartRequest {
        number: 1,
        sha256: digest(b"x"),
    }];
    assert!(matches!(
        store.repo.upload_part_urls(&n, &id, &part).await,
        Err(Error::UploadNotFound { .. })
    ));
    assert!(matches!(
        store.repo.commit(&n, &id, "ci").await,
        Err(Error::UploadNotFound { .. })
    ));
}

#[tokio::test]
async fn a_multipart_start_of_bytes_the_artifact_holds_answers_exists() {
    let store = TestStore::new().await;
    let n = name("held");
    let content = bytes(6 * MIB, 7);
    store.upload(&n, &content).await;
    store.upload(&n, b"newer").await;
    let ticket = store
        .repo
        .create_upload(
            &n,
            declare(sha256_hex(&content), content.len()),
            LOCAL_ACTOR,
        )
        .await
        .unwrap();
    assert!(ticket.exists && ticket.multipart.is_none());
    let committed = store
        .repo
        .commit_upload(&n, &ticket.upload_id, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(committed.artifact.sha256, sha256_hex(&content));
    assert_eq!(latest_bytes(&store, &n).await, content);
}

#[tokio::test]
async fn purging_an_artifact_aborts_its_multipart_uploads_in_progress() {
    let store = TestStore::new().await;
    let n = name("purged-midway");
    store.upload(&n, b"v1").await;
    let content = bytes(5 * MIB + 5, 8);
    let (id, plan) = start(&store.repo, &n, &content, sha256_hex(&content)).await;
    send_parts(&store, &n, &id, &content, &plan, &[1]).await;
    let in_progress = || async {
        store
            .s3
            .list_multipart_uploads()
            .bucket(&store.config.bucket)
            .prefix(store.repo.layout().blob_prefix(&n))
            .send()
            .await
            .unwrap()
            .uploads()
            .len()
    };
    assert_eq!(in_progress().await, 1);
    store.repo.purge_artifact(&n).await.unwrap();
    assert_eq!(in_progress().await, 0);
    assert!(matches!(
        store.repo.commit(&n, &id, "ci").await,
        Err(Error::UploadNotFound { .. })
    ));
}

#[tokio::test]
async fn racing_commits_of_one_multipart_upload_all_answer_and_commit_it_once() {
    let store = TestStore::new().await;
    let n = name("raced");
    let content = bytes(5 * MIB + 77, 9);
    let (id, plan) = start(&store.repo, &n, &content, sha256_hex(&content)).await;
    send_parts(&store, &n, &id, &content, &plan, &[1, 2]).await;
    let commits = join_all((0..6).map(|_| store.repo.commit(&n, &id, "ci"))).await;
    for commit in commits {
        assert!(
            matches!(
                commit,
                Ok(CommitOutcome::Verifying { .. } | CommitOutcome::Committed(_))
            ),
            "{commit:?}"
        );
    }
    assert_eq!(settled(&store.repo, &n, &id).await.state, "committed");
    assert_eq!(latest_bytes(&store, &n).await, content);
    let versions = store
        .s3
        .list_object_versions()
        .bucket(&store.config.bucket)
        .prefix(store.repo.layout().blob_key(&n, &sha256_hex(&content)))
        .send()
        .await
        .unwrap();
    assert_eq!(versions.versions().len(), 1, "completed once");
}

#[tokio::test]
async fn a_retried_commit_restarts_a_verification_that_stopped() {
    let store = TestStore::new().await;
    // Nobody runs the verification this commit asks for (as if every
    // invocation had failed).
    let stalled = store.repo.clone().with_verifier(Verifier::Deferred);
    let n = name("stalled");
    let content = bytes(5 * MIB + 3, 10);
    let (id, plan) = start(&stalled, &n, &content, sha256_hex(&content)).await;
    send_parts(&store, &n, &id, &content, &plan, &[1, 2]).await;
    stalled.commit(&n, &id, "ci").await.unwrap();
    // A retry while it may still be running asks for nothing more.
    stalled.commit(&n, &id, "ci").await.unwrap();
    assert_eq!(
        store.repo.upload_state(&n, &id).await.unwrap().state,
        "verifying"
    );
    // No checkpoint for an hour: a retried commit (on a repository whose
    // verifier runs) asks for the verification again.
    store
        .ddb
        .update_item()
        .table_name(&store.config.table)
        .key("pk", AttributeValue::S(format!("__{n}-upload")))
        .key("sk", AttributeValue::S(id.clone()))
        .update_expression("SET update_at = :then")
        .expression_attribute_values(
            ":then",
            AttributeValue::S("2020-01-01T00:00:00.000000+0000".into()),
        )
        .send()
        .await
        .unwrap();
    let retried = store.repo.commit(&n, &id, "ci").await.unwrap();
    assert!(matches!(retried, CommitOutcome::Verifying { .. }));
    assert_eq!(settled(&store.repo, &n, &id).await.state, "committed");
    assert_eq!(latest_bytes(&store, &n).await, content);
}

/// The AWS calls of each multipart step (the README's budgets): start 3
/// (HeadObject ∥ CreateMultipartUpload, then TransactWriteItems), parts 1
/// (GetItem; presigning is local), state 2 (GetItem, ListParts), commit 6
/// (HeadObject ∥ BatchGetItem, ListParts ∥ UpdateItem (the completion
/// stamp), CompleteMultipartUpload, UpdateItem; then the verifier's
/// Invoke: 5 round trips), whatever the size and the
/// number of parts up to 1 000.
#[tokio::test]
async fn multipart_steps_make_a_fixed_number_of_aws_calls() {
    let store = TestStore::new().await;
    let repo = store.repo.clone().with_verifier(Verifier::Deferred);
    let calls = || repo.calls().total();
    let n = name("budget");
    let content = bytes(2 * 5 * MIB + 1, 11);
    let before = calls();
    let (id, plan) = start(&repo, &n, &content, sha256_hex(&content)).await;
    assert_eq!(calls() - before, 3, "start");
    let before = calls();
    let parts: Vec<PartRequest> = parts_of(&content, &plan)
        .into_iter()
        .map(|(number, part)| PartRequest {
            number,
            sha256: digest(part),
        })
        .collect();
    let urls = repo.upload_part_urls(&n, &id, &parts).await.unwrap();
    assert_eq!(calls() - before, 1, "parts");
    for (url, (_, part)) in urls.parts.iter().zip(parts_of(&content, &plan)) {
        assert_eq!(put_part(&store.http, url, part).await.0, 200);
    }
    let before = calls();
    repo.upload_state(&n, &id).await.unwrap();
    assert_eq!(calls() - before, 2, "state");
    let before = calls();
    repo.commit(&n, &id, "ci").await.unwrap();
    assert_eq!(calls() - before, 6, "commit");
}
