//! The mirror of the library's layout (SPEC 3.2, 7.14): rows whose bytes
//! are in the blob store become readable by `versioned` 1.0.1 at its own
//! keys; purged and reclaimed rows lose the objects the mirror wrote; the
//! library's own writes are never overwritten. Rows are written as
//! fixtures (blob + row with `bytes = "blob"`); the mirror runs over the
//! table's stream (`drain_mirror`) or over synthetic batches.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use shared::layout::{META_ARTIFACT_NAME, META_ARTIFACT_SHA256, attr, format_update_at, now};
use shared::mirror::{CopyPlan, META_MIRRORED_FOR, MirrorRecord};
use shared::model::LOCAL_ACTOR;
use shared::{ArtifactName, Repository, Version};
use test_support::proxy::{Action, Fault, Gate, Plan, Recorded, Rule};
use test_support::{TestStore, name, sha256_hex};

/// S3's `LastModified` has whole seconds: a pause that puts two writes in
/// different seconds.
const NEXT_SECOND: Duration = Duration::from_millis(1100);

/// The bytes `versioned` reads from the library key of `name`@`version`
/// (`get_content`), `None` when it has no such version.
fn library_content(store: &TestStore, name: &ArtifactName, version: &str) -> Option<Vec<u8>> {
    let read = store.library(&["read", name.as_str()]);
    read["content"][version]
        .as_str()
        .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap())
}

/// The library key's current object: its bytes and user metadata.
async fn library_object(
    store: &TestStore,
    name: &ArtifactName,
    version: Version,
) -> Option<(Vec<u8>, std::collections::HashMap<String, String>, String)> {
    let key = store.repo.layout().object_key(name, version);
    let out = store
        .s3
        .get_object()
        .bucket(&store.config.bucket)
        .key(&key)
        .send()
        .await;
    match out {
        Ok(out) => {
            let metadata = out.metadata().cloned().unwrap_or_default();
            let content_type = out.content_type().unwrap_or_default().to_owned();
            let bytes = out.body.collect().await.unwrap().into_bytes().to_vec();
            Some((bytes, metadata, content_type))
        }
        Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => None,
        Err(e) => panic!("GetObject {key}: {e:?}"),
    }
}

/// How many object versions the library key has.
async fn object_versions(store: &TestStore, name: &ArtifactName, version: Version) -> usize {
    let key = store.repo.layout().object_key(name, version);
    let out = store
        .s3
        .list_object_versions()
        .bucket(&store.config.bucket)
        .prefix(&key)
        .send()
        .await
        .unwrap();
    out.versions()
        .iter()
        .filter(|v| v.key() == Some(key.as_str()))
        .count()
}

/// What the library writes (a PUT of its own, with its metadata), without
/// its row: the first half of `put_artifact`. Returns the object's version.
async fn library_put_object(store: &TestStore, name: &ArtifactName, content: &[u8]) -> String {
    store
        .s3
        .put_object()
        .bucket(&store.config.bucket)
        .key(store.repo.layout().object_key(name, Version::Latest))
        .metadata(META_ARTIFACT_NAME, name.as_str())
        .metadata(META_ARTIFACT_SHA256, sha256_hex(content))
        .body(content.to_vec().into())
        .send()
        .await
        .unwrap()
        .version_id
        .expect("the bucket is versioned")
}

/// The version id of the library key's current object.
async fn current_version(store: &TestStore, name: &ArtifactName, version: Version) -> String {
    store
        .s3
        .head_object()
        .bucket(&store.config.bucket)
        .key(store.repo.layout().object_key(name, version))
        .send()
        .await
        .unwrap()
        .version_id
        .unwrap()
}

fn record(name: &ArtifactName, version: Version, sequence: u32) -> MirrorRecord {
    MirrorRecord {
        name: name.to_string(),
        sort_key: version.sort_key(),
        removed_sha256: None,
        removed_at: None,
        sequence_number: sequence.to_string(),
    }
}

fn removed(name: &ArtifactName, version: Version, sequence: u32, sha256: &str) -> MirrorRecord {
    MirrorRecord {
        removed_sha256: Some(sha256.to_owned()),
        ..record(name, version, sequence)
    }
}

/// Deletes every version of the library key of `name`@`version`, as a
/// purge does.
async fn delete_object_versions(store: &TestStore, name: &ArtifactName, version: Version) {
    let key = store.repo.layout().object_key(name, version);
    let listed = store
        .s3
        .list_object_versions()
        .bucket(&store.config.bucket)
        .prefix(&key)
        .send()
        .await
        .unwrap();
    for v in listed.versions() {
        store
            .s3
            .delete_object()
            .bucket(&store.config.bucket)
            .key(&key)
            .set_version_id(v.version_id().map(str::to_owned))
            .send()
            .await
            .unwrap();
    }
}

async fn delete_row(store: &TestStore, name: &ArtifactName, version: Version) {
    store
        .ddb
        .delete_item()
        .table_name(&store.config.table)
        .key(attr::PK, AttributeValue::S(name.to_string()))
        .key(attr::SK, AttributeValue::S(version.sort_key()))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_blob_row_becomes_readable_by_the_library_with_its_metadata_once_the_stream_is_drained() {
    let store = TestStore::new().await;
    let n = name("mirrored");
    let sha = store
        .put_blob_row(&n, Version::Latest, b"hello mirror", &[("build", "42")])
        .await;
    assert_eq!(library_object(&store, &n, Version::Latest).await, None);

    let lags = store.drain_mirror().await;
    assert!(!lags.is_empty(), "the lag of each record is measured");
    assert!(
        lags.iter().all(|l| *l < Duration::from_secs(60)),
        "{lags:?}"
    );

    let (bytes, metadata, content_type) = library_object(&store, &n, Version::Latest)
        .await
        .expect("the library key holds the blob");
    assert_eq!(bytes, b"hello mirror");
    assert_eq!(metadata[META_ARTIFACT_NAME], "mirrored");
    assert_eq!(metadata[META_ARTIFACT_SHA256], sha);
    assert_eq!(metadata["build"], "42", "the row's user metadata");
    assert_eq!(content_type, "text/plain", "the row's content type");
    assert_eq!(
        library_content(&store, &n, "LATEST").as_deref(),
        Some(&b"hello mirror"[..]),
        "versioned get_content reads it"
    );
}

#[tokio::test]
async fn numbered_versions_are_mirrored_to_their_zero_padded_keys_with_the_suffix() {
    let store = TestStore::with_suffix(".txt").await;
    let n = name("numbered");
    store
        .put_blob_row(&n, Version::Number(7), b"seven", &[])
        .await;
    store.drain_mirror().await;
    let key = store.repo.layout().object_key(&n, Version::Number(7));
    assert!(key.ends_with("/numbered/000007.txt"), "{key}");
    let (bytes, _, _) = library_object(&store, &n, Version::Number(7))
        .await
        .unwrap();
    assert_eq!(bytes, b"seven");
}

#[tokio::test]
async fn two_latest_rows_in_quick_succession_leave_the_library_latest_at_the_second() {
    let store = TestStore::new().await;
    let n = name("quick");
    store.put_blob_row(&n, Version::Latest, b"first", &[]).await;
    store
        .put_blob_row(&n, Version::Latest, b"second", &[])
        .await;
    store.drain_mirror().await;
    assert_eq!(
        library_content(&store, &n, "LATEST").as_deref(),
        Some(&b"second"[..])
    );

    // One batch per record, the first handled after the second row landed:
    // each reads the row as it is now.
    store.put_blob_row(&n, Version::Latest, b"third", &[]).await;
    let report = store
        .another_repository()
        .mirror(&[record(&n, Version::Latest, 1)])
        .await;
    assert!(report.failure.is_none());
    store
        .put_blob_row(&n, Version::Latest, b"fourth", &[])
        .await;
    store.drain_mirror().await;
    assert_eq!(
        library_content(&store, &n, "LATEST").as_deref(),
        Some(&b"fourth"[..])
    );
}

#[tokio::test]
async fn the_same_batch_applied_twice_copies_once_and_fails_nothing() {
    let store = TestStore::new().await;
    let n = name("twice");
    store.put_blob_row(&n, Version::Latest, b"once", &[]).await;
    let batch = [
        record(&n, Version::Latest, 1),
        record(&n, Version::Latest, 2),
    ];
    let repo = store.another_repository();
    let first = repo.mirror(&batch).await;
    assert!(first.failure.is_none(), "{:?}", first.failure);
    assert_eq!((first.handled, first.copied), (2, 1));
    let again = repo.mirror(&batch).await;
    assert!(again.failure.is_none(), "{:?}", again.failure);
    assert_eq!((again.handled, again.copied), (2, 0), "nothing to do again");
    store.drain_mirror().await; // the stream's own records: still nothing new
    assert_eq!(object_versions(&store, &n, Version::Latest).await, 1);
}

#[tokio::test]
async fn a_library_put_artifact_after_ours_is_not_overwritten() {
    let store = TestStore::new().await;
    let n = name("shared-app");
    store.put_blob_row(&n, Version::Latest, b"ours", &[]).await;
    store.drain_mirror().await;
    store.library(&[
        "call",
        "put_artifact",
        r#"{"name": "shared-app", "content": "theirs"}"#,
    ]);
    store.drain_mirror().await;
    assert_eq!(
        library_content(&store, &n, "LATEST").as_deref(),
        Some(&b"theirs"[..])
    );
    let ours = store.repo.get_version(&n, Version::Latest).await.unwrap();
    assert_eq!(
        ours.sha256,
        sha256_hex(b"theirs"),
        "the row is the library's"
    );
}

#[tokio::test]
async fn a_library_write_that_landed_before_its_row_is_not_overwritten() {
    // The library PUTs the object, then writes its row: between the two,
    // the row is still ours and the key holds newer, other bytes.
    let store = TestStore::new().await;
    let n = name("racing");
    store.put_blob_row(&n, Version::Latest, b"ours", &[]).await;
    tokio::time::sleep(NEXT_SECOND).await; // S3 times have 1 s precision
    library_put_object(&store, &n, b"theirs").await;
    let report = store
        .another_repository()
        .mirror(&[record(&n, Version::Latest, 1)])
        .await;
    assert!(report.failure.is_none());
    assert_eq!(report.copied, 0);
    let (bytes, _, _) = library_object(&store, &n, Version::Latest).await.unwrap();
    assert_eq!(bytes, b"theirs");
}

#[tokio::test]
async fn a_library_object_older_than_the_row_is_replaced_but_its_version_kept() {
    let store = TestStore::new().await;
    let n = name("stale");
    library_put_object(&store, &n, b"old").await;
    tokio::time::sleep(NEXT_SECOND).await;
    store.put_blob_row(&n, Version::Latest, b"new", &[]).await;
    store.drain_mirror().await;
    let (bytes, metadata, _) = library_object(&store, &n, Version::Latest).await.unwrap();
    assert_eq!(bytes, b"new");
    // Issue 18 item 5: the mirror prunes only versions it wrote itself;
    // the library's displaced object stays (noncurrent), never deleted.
    assert_eq!(object_versions(&store, &n, Version::Latest).await, 2);
    assert_eq!(metadata[META_MIRRORED_FOR], "LATEST", "our copy says so");
}

// Issue 18 item 5: a library `put_artifact` landing while the mirror's copy
// is on its way. The copy is conditional on the object the mirror read (S3
// refuses it; the emulator ignores the condition); once it landed anyway,
// the mirror sees a version it did not write beneath its own and withdraws
// its copy; and it never prunes the library's version. It used to prune it
// as a noncurrent LATEST: the library's bytes were gone and its row
// pointed at ours.
#[tokio::test]
async fn a_library_write_landing_during_the_mirror_copy_survives_and_stays_current() {
    let store = TestStore::new().await;
    let n = name("contended");
    store
        .put_blob_row(&n, Version::Latest, b"ours one", &[])
        .await;
    store.drain_mirror().await;
    store
        .put_blob_row(&n, Version::Latest, b"ours two", &[])
        .await;

    let plan = Plan::new();
    let gate = Gate::new();
    plan.add(Rule::new(
        "CopyObject",
        Some(n.as_str()),
        Action::HoldBefore(gate.clone()),
        1,
    ));
    let repo = store.through(&plan).await;
    let batch = [record(&n, Version::Latest, 1)];
    let mirror = tokio::spawn(async move { repo.mirror(&batch).await });
    gate.arrived().await;
    store.library(&[
        "call",
        "put_artifact",
        r#"{"name": "contended", "content": "theirs"}"#,
    ]);
    gate.open();
    let report = mirror.await.unwrap();
    assert!(report.failure.is_none(), "{:?}", report.failure);

    assert_eq!(
        library_content(&store, &n, "LATEST").as_deref(),
        Some(&b"theirs"[..]),
        "the library reads what it wrote"
    );
    let (_, metadata, _) = library_object(&store, &n, Version::Latest).await.unwrap();
    assert!(!metadata.contains_key(META_MIRRORED_FOR));
    store.drain_mirror().await; // the library's own row changes nothing
    assert_eq!(
        library_content(&store, &n, "LATEST").as_deref(),
        Some(&b"theirs"[..])
    );
}

// Issue 18 item 5: a copy is made only over what the mirror read: on an
// empty key `If-None-Match: *`, over an object `If-Match` its ETag (S3
// refuses the copy when another write landed since).
#[tokio::test]
async fn copies_are_conditional_on_what_the_mirror_read() {
    let store = TestStore::new().await;
    let n = name("conditional");
    store.put_blob_row(&n, Version::Latest, b"one", &[]).await;
    let plan = Plan::new();
    let recorded = Recorded::new();
    plan.add(Rule::new(
        "CopyObject",
        Some(n.as_str()),
        Action::Record(recorded.clone()),
        u64::MAX,
    ));
    let repo = store.through(&plan).await;
    let report = repo.mirror(&[record(&n, Version::Latest, 1)]).await;
    assert!(report.failure.is_none(), "{:?}", report.failure);
    let first_copy = store
        .s3
        .head_object()
        .bucket(&store.config.bucket)
        .key(store.repo.layout().object_key(&n, Version::Latest))
        .send()
        .await
        .unwrap()
        .e_tag
        .unwrap();
    store.put_blob_row(&n, Version::Latest, b"two", &[]).await;
    let report = repo.mirror(&[record(&n, Version::Latest, 2)]).await;
    assert!(report.failure.is_none(), "{:?}", report.failure);

    let headers = recorded.headers();
    let header =
        |i: usize, name: &str| headers[i].get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(headers.len(), 2);
    assert_eq!(header(0, "if-none-match").as_deref(), Some("*"));
    assert_eq!(header(0, "if-match"), None);
    assert_eq!(header(1, "if-match"), Some(first_copy));
    assert_eq!(header(1, "if-none-match"), None);
    assert_eq!(
        library_content(&store, &n, "LATEST").as_deref(),
        Some(&b"two"[..])
    );
}

// Issue 18 item 5, where the emulator enforces the condition (it does on
// CompleteMultipartUpload): a library write landing while a large copy is
// completed makes S3 refuse the completion; the mirror aborts it and,
// judging again, leaves the library's newer object alone. The completion
// used to land over it and the prune then deleted the library's version.
#[tokio::test]
async fn a_library_write_landing_during_a_multipart_copy_gets_the_copy_refused() {
    let store = TestStore::new().await;
    let n = name("contended-large");
    let content: Vec<u8> = (0..11 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    store.put_blob_row(&n, Version::Latest, &content, &[]).await;
    let plan = Plan::new();
    let gate = Gate::new();
    plan.add(Rule::new(
        "CompleteMultipartUpload",
        Some(n.as_str()),
        Action::HoldBefore(gate.clone()),
        1,
    ));
    let repo = store.through(&plan).await;
    let copy_plan = CopyPlan {
        single_copy_max: 1024 * 1024,
        part_size: 5 * 1024 * 1024,
        parallel_parts: 2,
    };
    let batch = [record(&n, Version::Latest, 1)];
    let mirror = tokio::spawn(async move {
        let report = repo.mirror_with(&batch, &copy_plan).await;
        (report, repo.operations())
    });
    gate.arrived().await;
    store.library(&[
        "call",
        "put_artifact",
        r#"{"name": "contended-large", "content": "theirs"}"#,
    ]);
    gate.open();
    let (report, operations) = mirror.await.unwrap();
    assert!(report.failure.is_none(), "{:?}", report.failure);
    assert_eq!(report.copied, 0, "the copy was refused");
    assert!(
        operations.contains("AbortMultipartUpload"),
        "{operations:?}"
    );
    assert!(
        !operations.contains("DeleteObject"),
        "refused, not withdrawn: {operations:?}"
    );

    assert_eq!(
        library_content(&store, &n, "LATEST").as_deref(),
        Some(&b"theirs"[..])
    );
    assert_eq!(object_versions(&store, &n, Version::Latest).await, 1);
    let uploads = store
        .s3
        .list_multipart_uploads()
        .bucket(&store.config.bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "the refused copy was aborted");
}

// Issue 18 item 5, the window S3's condition cannot close: the library PUTs
// its object, a commit of ours lands (a row newer than that object), the
// mirror copies over the library's object, and then the library's row
// lands. The library's version was kept (never pruned); the library's row
// gives it back: our copy is withdrawn. The library used to read our bytes
// under its row's sha256, its own bytes deleted.
#[tokio::test]
async fn a_library_row_landing_after_our_copy_gets_its_object_back() {
    let store = TestStore::new().await;
    let n = name("overtaken");
    let theirs = library_put_object(&store, &n, b"theirs").await;
    tokio::time::sleep(NEXT_SECOND).await;
    store.put_blob_row(&n, Version::Latest, b"ours", &[]).await;
    store.drain_mirror().await;
    let (bytes, _, _) = library_object(&store, &n, Version::Latest).await.unwrap();
    assert_eq!(bytes, b"ours", "our row was the newer: copied");

    // The second half of the library's put_artifact: its row.
    store
        .ddb
        .put_item()
        .table_name(&store.config.table)
        .item(attr::PK, AttributeValue::S(n.to_string()))
        .item(attr::SK, AttributeValue::S(Version::Latest.sort_key()))
        .item(attr::SHA256, AttributeValue::S(sha256_hex(b"theirs")))
        .item(attr::IS_DELETED, AttributeValue::Bool(false))
        .item(attr::UPDATE_AT, AttributeValue::S(format_update_at(now())))
        .send()
        .await
        .unwrap();
    store.drain_mirror().await;

    assert_eq!(current_version(&store, &n, Version::Latest).await, theirs);
    assert_eq!(
        library_content(&store, &n, "LATEST").as_deref(),
        Some(&b"theirs"[..])
    );
    assert_eq!(object_versions(&store, &n, Version::Latest).await, 1);
}

// Issue 18 item 6: the mirror recognises its own copy from the object (its
// marker), not from the memory of one invocation. A commit lands while the
// mirror's copy of the previous content is on its way; the invocation dies
// after the copy landed (its next read fails), and the retried batch finds
// a copy newer than the row. It used to take that copy for a library write
// and leave it: the library read the old bytes for ever.
#[tokio::test]
async fn a_retried_batch_recognises_its_own_stale_copy_and_replaces_it() {
    let store = TestStore::new().await;
    let n = name("retried");
    store.put_blob_row(&n, Version::Latest, b"first", &[]).await;

    let plan = Plan::new();
    let gate = Gate::new();
    plan.add(Rule::new(
        "CopyObject",
        Some(n.as_str()),
        Action::HoldBefore(gate.clone()),
        1,
    ));
    let repo = store.through(&plan).await;
    let batch = [record(&n, Version::Latest, 1)];
    let first = tokio::spawn(async move { repo.mirror(&batch).await });
    gate.arrived().await;
    store
        .put_blob_row(&n, Version::Latest, b"second", &[])
        .await;
    tokio::time::sleep(NEXT_SECOND).await; // the copy lands after the row's second
    plan.add(Rule::new(
        "GetItem",
        Some(n.as_str()),
        Action::Fault(Fault::Status500),
        u64::MAX,
    ));
    gate.open();
    let report = first.await.unwrap();
    assert!(
        report.failure.is_some(),
        "the invocation fails after its copy"
    );
    plan.clear();
    let (bytes, _, _) = library_object(&store, &n, Version::Latest).await.unwrap();
    assert_eq!(bytes, b"first", "the stale copy landed");

    // Lambda retries the batch: a new invocation, no memory of the copy.
    let again = store
        .another_repository()
        .mirror(&[record(&n, Version::Latest, 1)])
        .await;
    assert!(again.failure.is_none(), "{:?}", again.failure);
    assert_eq!(
        library_content(&store, &n, "LATEST").as_deref(),
        Some(&b"second"[..])
    );
    assert_eq!(
        object_versions(&store, &n, Version::Latest).await,
        1,
        "the stale copy was ours: pruned"
    );
}

#[tokio::test]
async fn purged_rows_lose_the_library_objects_the_mirror_wrote_but_not_a_newer_library_write() {
    let store = TestStore::new().await;
    let (gone, kept) = (name("gone-app"), name("kept-app"));
    store
        .put_blob_row(&gone, Version::Latest, b"mine", &[])
        .await;
    store
        .put_blob_row(&kept, Version::Latest, b"mine", &[])
        .await;
    store.drain_mirror().await;
    assert!(
        library_object(&store, &gone, Version::Latest)
            .await
            .is_some()
    );

    // Since our copy, the library wrote kept-app (its object; its row not yet).
    library_put_object(&store, &kept, b"theirs").await;
    delete_row(&store, &gone, Version::Latest).await;
    delete_row(&store, &kept, Version::Latest).await;
    store.drain_mirror().await;

    assert_eq!(library_object(&store, &gone, Version::Latest).await, None);
    assert_eq!(object_versions(&store, &gone, Version::Latest).await, 0);
    let (bytes, _, _) = library_object(&store, &kept, Version::Latest)
        .await
        .expect("the library's write survives");
    assert_eq!(bytes, b"theirs");
}

// Issue 18 item 13: a REMOVE handled late deletes the mirror's own copies,
// and an object it did not write only when it holds the removed row's
// sha256 and was written before the removal. The library writes its object
// before its row: the same bytes written anew after a purge, their row not
// yet there, used to be deleted by the purge's late REMOVE.
#[tokio::test]
async fn a_late_remove_spares_a_library_write_made_after_the_removal() {
    let store = TestStore::new().await;
    let (reborn, legacy) = (name("reborn"), name("legacy"));
    // An object of a previous release (no marker) for a row purged later.
    library_put_object(&store, &legacy, b"legacy").await;
    store
        .put_blob_row(&legacy, Version::Latest, b"legacy", &[])
        .await;
    store
        .put_blob_row(&reborn, Version::Latest, b"same bytes", &[])
        .await;
    store.drain_mirror().await;
    tokio::time::sleep(NEXT_SECOND).await;
    delete_row(&store, &reborn, Version::Latest).await;
    delete_row(&store, &legacy, Version::Latest).await;
    tokio::time::sleep(NEXT_SECOND).await;
    // The library's put_artifact of the same bytes: its object has landed,
    // its row is on its way, when the mirror handles the purge.
    let theirs = library_put_object(&store, &reborn, b"same bytes").await;
    store.drain_mirror().await;

    assert_eq!(
        current_version(&store, &reborn, Version::Latest).await,
        theirs,
        "the library's write survives the late REMOVE"
    );
    let (bytes, metadata, _) = library_object(&store, &reborn, Version::Latest)
        .await
        .unwrap();
    assert_eq!(bytes, b"same bytes");
    assert!(!metadata.contains_key(META_MIRRORED_FOR));
    assert_eq!(
        object_versions(&store, &reborn, Version::Latest).await,
        1,
        "our copy went, the library's object stayed"
    );
    assert_eq!(
        object_versions(&store, &legacy, Version::Latest).await,
        0,
        "an object of the removed bytes, older than the removal, goes"
    );
}

#[tokio::test]
async fn a_remove_later_in_the_batch_than_another_record_of_its_key_still_deletes() {
    let store = TestStore::new().await;
    let n = name("merged");
    let sha = store.put_blob_row(&n, Version::Latest, b"mine", &[]).await;
    store.drain_mirror().await;
    delete_row(&store, &n, Version::Latest).await;
    let report = store
        .another_repository()
        .mirror(&[
            record(&n, Version::Latest, 1),
            removed(&n, Version::Latest, 2, &sha),
        ])
        .await;
    assert!(report.failure.is_none());
    assert_eq!(report.deleted, 1);
    assert_eq!(library_object(&store, &n, Version::Latest).await, None);
}

#[tokio::test]
async fn a_reclaimed_version_loses_its_library_objects_and_a_soft_deleted_one_keeps_them() {
    let store = TestStore::new().await;
    let n = name("reclaimed");
    store
        .put_blob_row(&n, Version::Number(1), b"one", &[])
        .await;
    store
        .put_blob_row(&n, Version::Number(2), b"two", &[])
        .await;
    store.drain_mirror().await;
    let at = format_update_at(now());
    for (version, reclaimed) in [(1, true), (2, false)] {
        store
            .ddb
            .update_item()
            .table_name(&store.config.table)
            .key(attr::PK, AttributeValue::S(n.to_string()))
            .key(
                attr::SK,
                AttributeValue::S(Version::Number(version).sort_key()),
            )
            .update_expression(if reclaimed {
                "SET is_deleted = :t, deleted_at = :at, reclaimed_at = :at"
            } else {
                "SET is_deleted = :t, deleted_at = :at"
            })
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":at", AttributeValue::S(at.clone()))
            .send()
            .await
            .unwrap();
    }
    store.drain_mirror().await;
    assert_eq!(object_versions(&store, &n, Version::Number(1)).await, 0);
    assert_eq!(object_versions(&store, &n, Version::Number(2)).await, 1);
}

#[tokio::test]
async fn rows_the_library_wrote_and_our_own_partitions_are_left_alone() {
    let store = TestStore::new().await;
    store.library(&[
        "call",
        "put_artifact",
        r#"{"name": "py-only", "content": "python"}"#,
    ]);
    let n = name("py-only");
    assert_eq!(object_versions(&store, &n, Version::Latest).await, 1);
    let repo = store.another_repository();
    let report = repo
        .mirror(&[
            record(&n, Version::Latest, 1),
            MirrorRecord {
                name: "__py-only-alias".into(),
                sort_key: "prod".into(),
                removed_sha256: None,
                removed_at: None,
                sequence_number: "2".into(),
            },
        ])
        .await;
    assert!(report.failure.is_none());
    assert_eq!((report.copied, report.deleted), (0, 0));
    assert_eq!(object_versions(&store, &n, Version::Latest).await, 1);
    let operations = repo.operations();
    assert_eq!(
        operations.into_iter().collect::<Vec<_>>(),
        ["GetItem", "HeadObject"],
        "one read of the library's row and of its object, none of ours"
    );
}

#[tokio::test]
async fn with_the_mirror_off_nothing_is_written_to_the_library_keys() {
    let store = TestStore::with_settings(&[("SEED_LAYOUT_MIRROR", "off")]).await;
    assert!(!store.config.seed_layout_mirror);
    let n = name("unmirrored");
    store
        .put_blob_row(&n, Version::Latest, b"blob only", &[])
        .await;
    store.drain_mirror().await;
    let listed = store
        .s3
        .list_objects_v2()
        .bucket(&store.config.bucket)
        .prefix(store.repo.layout().store_prefix())
        .send()
        .await
        .unwrap();
    assert_eq!(listed.key_count(), Some(0), "{:?}", listed.contents());

    // The handler itself does nothing either.
    let text = std::fs::read_to_string(
        test_support::workspace_root().join("events/mirror-seed-layout.json"),
    )
    .unwrap();
    let repo = store.another_repository();
    let event = lambda_runtime::LambdaEvent::new(
        serde_json::from_str(&text).unwrap(),
        lambda_runtime::Context::default(),
    );
    let response = shared::mirror::handle_event(&repo, false, event)
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert!(repo.operations().is_empty(), "no AWS call at all");
}

#[tokio::test]
async fn a_failing_record_is_reported_by_its_sequence_number_and_nothing_after_it_is_done() {
    let store = TestStore::new().await;
    let (broken, fine) = (name("broken"), name("fine"));
    let sha = store
        .put_blob_row(&broken, Version::Latest, b"lost", &[])
        .await;
    store
        .s3
        .delete_object()
        .bucket(&store.config.bucket)
        .key(store.repo.layout().blob_key(&broken, &sha))
        .send()
        .await
        .unwrap();
    store
        .put_blob_row(&fine, Version::Latest, b"fine", &[])
        .await;
    let report = store
        .another_repository()
        .mirror(&[
            record(&fine, Version::Number(1), 10),
            record(&broken, Version::Latest, 11),
            record(&fine, Version::Latest, 12),
        ])
        .await;
    let failure = report.failure.expect("the copy of a missing blob fails");
    assert_eq!(failure.sequence_number, "11");
    assert_eq!(report.handled, 1, "the records before it");
    assert_eq!(library_object(&store, &fine, Version::Latest).await, None);
}

#[tokio::test]
async fn the_stream_event_file_runs_through_the_handler() {
    let run = test_support::run_mirror_sample_event().await;
    assert_eq!(run.response, serde_json::json!({"batchItemFailures": []}));
    let store = &run.store;
    let (bytes, metadata, content_type) = library_object(store, &name("my-app"), Version::Latest)
        .await
        .expect("my-app LATEST mirrored");
    assert_eq!(bytes, b"three");
    assert_eq!(metadata["build"], "42");
    assert_eq!(content_type, "text/plain");
    assert_eq!(
        library_content(store, &name("my-app"), "LATEST").as_deref(),
        Some(&b"three"[..])
    );
    assert_eq!(
        library_object(store, &name("old-app"), Version::Latest).await,
        None,
        "the purged row's library object is gone"
    );
}

#[tokio::test]
async fn a_blob_larger_than_one_copy_allows_is_copied_in_parallel_parts() {
    let store = TestStore::new().await;
    let n = name("large");
    // moto, like S3, wants parts of at least 5 MiB (but the last).
    let content: Vec<u8> = (0..11 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let sha = store
        .put_blob_row(&n, Version::Latest, &content, &[("build", "7")])
        .await;
    let plan = CopyPlan {
        single_copy_max: 1024 * 1024,
        part_size: 5 * 1024 * 1024,
        parallel_parts: 2,
    };
    let repo = store.another_repository();
    let report = repo
        .mirror_with(&[record(&n, Version::Latest, 1)], &plan)
        .await;
    assert!(report.failure.is_none(), "{:?}", report.failure);
    assert_eq!(report.copied, 1);
    for operation in [
        "CreateMultipartUpload",
        "UploadPartCopy",
        "CompleteMultipartUpload",
    ] {
        assert!(repo.operations().contains(operation), "{operation}");
    }
    assert!(!repo.operations().contains("CopyObject"));
    let (bytes, metadata, content_type) =
        library_object(&store, &n, Version::Latest).await.unwrap();
    assert!(bytes == content, "the parts add up to the blob");
    assert_eq!(metadata[META_ARTIFACT_SHA256], sha);
    assert_eq!(metadata["build"], "7");
    assert_eq!(content_type, "text/plain");
}

#[tokio::test]
async fn bootstrap_gives_an_existing_table_its_stream_and_ttl_and_can_run_again() {
    let store = TestStore::new().await;
    let table = format!("{}-old", store.config.table);
    let key = |name: &str, t| {
        aws_sdk_dynamodb::types::KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(t)
            .build()
            .unwrap()
    };
    let def = |name: &str| {
        aws_sdk_dynamodb::types::AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    store
        .ddb
        .create_table()
        .table_name(&table)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .key_schema(key("pk", aws_sdk_dynamodb::types::KeyType::Hash))
        .key_schema(key("sk", aws_sdk_dynamodb::types::KeyType::Range))
        .attribute_definitions(def("pk"))
        .attribute_definitions(def("sk"))
        .send()
        .await
        .unwrap();
    let config = shared::Config::from_lookup(|k| match k {
        "BUCKET_NAME" => Some(store.config.bucket.clone()),
        "TABLE_NAME" => Some(table.clone()),
        _ => None,
    })
    .unwrap();
    let repo = Repository::new(&store.sdk, &config);
    for _ in 0..2 {
        repo.bootstrap().await.unwrap();
        let described = store
            .ddb
            .describe_table()
            .table_name(&table)
            .send()
            .await
            .unwrap();
        let stream = described.table().unwrap().stream_specification().unwrap();
        assert!(stream.stream_enabled());
        assert_eq!(
            stream.stream_view_type(),
            Some(&aws_sdk_dynamodb::types::StreamViewType::NewAndOldImages)
        );
        let ttl = store
            .ddb
            .describe_time_to_live()
            .table_name(&table)
            .send()
            .await
            .unwrap();
        let ttl = ttl.time_to_live_description().unwrap();
        assert_eq!(ttl.attribute_name(), Some("expires_at"));
        assert_eq!(
            ttl.time_to_live_status(),
            Some(&aws_sdk_dynamodb::types::TimeToLiveStatus::Enabled)
        );
    }
}

#[tokio::test]
async fn a_new_store_has_a_stream_of_both_images() {
    let store = TestStore::new().await;
    let n = name("streamed");
    store.put_blob_row(&n, Version::Latest, b"a", &[]).await;
    let described = store
        .ddb
        .describe_table()
        .table_name(&store.config.table)
        .send()
        .await
        .unwrap();
    let table = described.table().unwrap();
    assert!(table.latest_stream_arn().is_some());
    assert_eq!(
        table.stream_specification().unwrap().stream_view_type(),
        Some(&aws_sdk_dynamodb::types::StreamViewType::NewAndOldImages)
    );
}

/// Each commit's copy to the library's LATEST key replaces the previous
/// one: the noncurrent versions are deleted (the bucket has no
/// noncurrent-version expiration), while published versions keep theirs.
#[tokio::test]
async fn the_library_latest_key_keeps_one_version_across_commits() {
    let store = TestStore::new().await;
    let n = name("pruned");
    for build in ["one", "two", "three"] {
        store.upload(&n, build.as_bytes()).await;
        store
            .repo
            .publish_version(&n, false, LOCAL_ACTOR)
            .await
            .unwrap();
        store.drain_mirror().await;
    }
    assert_eq!(object_versions(&store, &n, Version::Latest).await, 1);
    assert_eq!(library_content(&store, &n, "LATEST").unwrap(), b"three");
    for (version, bytes) in [(1, "one"), (2, "two"), (3, "three")] {
        assert_eq!(
            object_versions(&store, &n, Version::Number(version)).await,
            1
        );
        assert_eq!(
            library_content(&store, &n, &version.to_string()).unwrap(),
            bytes.as_bytes()
        );
    }
}

/// The emulator's stream holds no record of a cancelled transaction, as on
/// AWS, also for an iterator taken before it. moto restored a copy of the
/// stream shard, so such an iterator returned the cancelled write as a
/// record numbered like the next real one, and the local poller, having
/// gone past that number, skipped the real record: the mirror never copied
/// that version (the checker's finding 11: the library could not read a
/// version the API served).
#[tokio::test]
async fn a_cancelled_transaction_leaves_no_record_in_the_stream() {
    use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem};
    use aws_sdk_dynamodbstreams::types::ShardIteratorType;
    let store = TestStore::new().await;
    let table = &store.config.table;
    let key = |pk: &str| {
        std::collections::HashMap::from([
            ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
            ("sk".to_owned(), AttributeValue::S("x".to_owned())),
        ])
    };
    store
        .ddb
        .put_item()
        .table_name(table)
        .set_item(Some(key("__stream-a")))
        .send()
        .await
        .unwrap();
    let streams = aws_sdk_dynamodbstreams::Client::new(&store.sdk);
    let arn = store
        .ddb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .table()
        .and_then(|t| t.latest_stream_arn())
        .unwrap()
        .to_owned();
    let shard = streams
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .unwrap()
        .stream_description()
        .and_then(|d| d.shards().last())
        .and_then(|s| s.shard_id())
        .unwrap()
        .to_owned();
    let iterator = streams
        .get_shard_iterator()
        .stream_arn(&arn)
        .shard_id(&shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .unwrap()
        .to_owned();
    // Cancelled: its Put must leave nothing.
    let cancelled = store
        .ddb
        .transact_write_items()
        .transact_items(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(table)
                        .set_item(Some(key("__stream-phantom")))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .transact_items(
            TransactWriteItem::builder()
                .condition_check(
                    ConditionCheck::builder()
                        .table_name(table)
                        .set_key(Some(key("__stream-a")))
                        .condition_expression("attribute_not_exists(pk)")
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await;
    assert!(cancelled.is_err());
    store
        .ddb
        .put_item()
        .table_name(table)
        .set_item(Some(key("__stream-real")))
        .send()
        .await
        .unwrap();
    let records = streams
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .unwrap();
    let keys: Vec<String> = records
        .records()
        .iter()
        .filter_map(|r| r.dynamodb()?.keys()?.get("pk")?.as_s().ok().cloned())
        .filter(|pk| pk.starts_with("__stream-"))
        .collect();
    assert_eq!(keys, ["__stream-a", "__stream-real"]);
}

// Review finding (SPEC 7.3, 7.14): the library's publish copies the object
// its LATEST key holds and names the bytes of the LATEST row it read. Run
// while the mirror had not yet copied a LATEST committed here, it made a
// version whose key held the previous bytes: every read of it, here and in
// the library, got other bytes than its sha256. The mirror now copies the
// bytes the row names onto its key.
#[tokio::test]
async fn a_library_publish_during_the_mirrors_lag_ends_serving_the_bytes_its_row_names() {
    let store = TestStore::new().await;
    let n = name("lagging");
    let call = |method: &str, args: serde_json::Value| {
        store.library(&["call", method, &args.to_string()]);
    };
    call(
        "put_artifact",
        serde_json::json!({"name": n.as_str(), "content": "library bytes"}),
    );
    store.drain_mirror().await;
    // GIVEN a commit here that the mirror has not copied yet.
    let committed = b"committed here";
    store.upload(&n, committed).await;
    // WHEN the library publishes meanwhile.
    call(
        "publish_artifact_version",
        serde_json::json!({"name": n.as_str()}),
    );
    store.drain_mirror().await;
    // THEN version 1 serves the bytes its row names, here and to the library.
    let v1 = store
        .repo
        .get_version(&n, Version::Number(1))
        .await
        .unwrap();
    assert_eq!(v1.sha256, sha256_hex(committed));
    assert_eq!(
        store.download(v1.download_url.as_deref().unwrap()).await,
        committed
    );
    let (bytes, metadata, _) = library_object(&store, &n, Version::Number(1))
        .await
        .unwrap();
    assert_eq!(bytes, committed);
    assert_eq!(metadata[META_ARTIFACT_SHA256], sha256_hex(committed));
}

// Review finding (SPEC 7.14, 7.15): for a reclaimed row the mirror
// deleted every version of the library key holding its bytes, from a
// row read before it listed them. A purge and a re-creation by the
// library in between (the same bytes at that number) lost the library's
// new object. It now deletes only versions written before the reclaim,
// and only while the row read again is still that one.
#[tokio::test]
async fn a_reclaimed_row_never_costs_the_library_its_new_object_of_the_same_bytes() {
    let store = TestStore::new().await;
    let n = name("reclaimed-reborn");
    store
        .put_blob_row(&n, Version::Number(1), b"one", &[])
        .await;
    store.drain_mirror().await;
    store
        .ddb
        .update_item()
        .table_name(&store.config.table)
        .key(attr::PK, AttributeValue::S(n.to_string()))
        .key(attr::SK, AttributeValue::S(Version::Number(1).sort_key()))
        .update_expression("SET is_deleted = :t, deleted_at = :at, reclaimed_at = :at")
        .expression_attribute_values(":t", AttributeValue::Bool(true))
        .expression_attribute_values(":at", AttributeValue::S(format_update_at(now())))
        .send()
        .await
        .unwrap();
    // GIVEN the mirror, having read the reclaimed row, about to list the key.
    let (held, gate) = store.held_before("ListObjectVersions", None).await;
    let mirror = {
        let n = n.clone();
        tokio::spawn(async move { held.mirror(&[record(&n, Version::Number(1), 1)]).await })
    };
    gate.arrived().await;
    // WHEN the artifact is gone and the library writes version 1 again,
    // of the same bytes.
    delete_row(&store, &n, Version::Number(1)).await;
    delete_object_versions(&store, &n, Version::Number(1)).await;
    tokio::time::sleep(NEXT_SECOND).await;
    for (method, args) in [
        (
            "put_artifact",
            serde_json::json!({"name": n.as_str(), "content": "one"}),
        ),
        (
            "publish_artifact_version",
            serde_json::json!({"name": n.as_str()}),
        ),
    ] {
        store.library(&["call", method, &args.to_string()]);
    }
    gate.open();
    let report = mirror.await.unwrap();
    assert!(report.failure.is_none(), "{report:?}");
    // THEN the library still reads its version 1.
    let (bytes, _, _) = library_object(&store, &n, Version::Number(1))
        .await
        .expect("the library's new object was deleted");
    assert_eq!(bytes, b"one");
}

// Interop acceptance finding (SPEC 7.3, 7.15): a library `put_artifact` in
// the second of a commit of ours, before the mirror's copy for it: S3 keeps
// whole seconds, so the library's object looked older than our row and was
// overwritten while its row was on its way; the library's publish then
// copied our bytes under its own digest. An object of the row's own second
// is judged again once the library's row would have followed.
#[tokio::test]
async fn a_library_write_of_the_rows_own_second_is_not_overwritten_while_its_row_follows() {
    let store = TestStore::new().await;
    let n = name("same-second");
    // GIVEN, early in one second, a commit of ours, then the library's
    // object (its row follows half a second later).
    let into_second = now().nanosecond() as u64;
    tokio::time::sleep(Duration::from_nanos(
        1_000_000_000 - into_second + 20_000_000,
    ))
    .await;
    store.put_blob_row(&n, Version::Latest, b"ours", &[]).await;
    library_put_object(&store, &n, b"theirs").await;
    let row_follows = {
        let (ddb, table, n) = (store.ddb.clone(), store.config.table.clone(), n.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let at = format!("{}.000000+0000", &format_update_at(now())[..19]);
            ddb.put_item()
                .table_name(table)
                .item(attr::PK, AttributeValue::S(n.to_string()))
                .item(attr::SK, AttributeValue::S("LATEST".into()))
                .item(attr::SHA256, AttributeValue::S(sha256_hex(b"theirs")))
                .item(attr::IS_DELETED, AttributeValue::Bool(false))
                .item(attr::UPDATE_AT, AttributeValue::S(at))
                .send()
                .await
                .unwrap();
        })
    };
    // WHEN the mirror handles our commit's record meanwhile.
    let report = store
        .another_repository()
        .mirror(&[record(&n, Version::Latest, 1)])
        .await;
    row_follows.await.unwrap();
    // THEN the library's object stays current.
    assert!(report.failure.is_none(), "{report:?}");
    assert_eq!(report.copied, 0, "{report:?}");
    let (bytes, _, _) = library_object(&store, &n, Version::Latest).await.unwrap();
    assert_eq!(bytes, b"theirs");
}

// Interop acceptance finding (SPEC 3.2, 7.14): the library keeps a put's
// content type and user metadata on its object alone. Publishing its
// LATEST here made a version without them, and the mirror's copy of that
// version then dropped them from the library's own object too. The
// adoption takes them from the library's object onto LATEST.
#[tokio::test]
async fn a_library_latest_published_here_keeps_its_content_type_and_metadata() {
    let store = TestStore::new().await;
    let n = name("described");
    let put = serde_json::json!({
        "name": "described",
        "content": "{\"a\": 1}",
        "content_type": "application/json",
        "metadata": {"owner": "py", "build": "42"},
    });
    store.library(&["call", "put_artifact", &put.to_string()]);
    let published = store
        .repo
        .publish_version(&n, false, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(
        published.artifact.content_type.as_deref(),
        Some("application/json")
    );
    assert_eq!(
        published.artifact.metadata.get("owner").map(String::as_str),
        Some("py")
    );
    store.drain_mirror().await;
    let (_, metadata, content_type) = library_object(&store, &n, Version::Number(1))
        .await
        .unwrap();
    assert_eq!(content_type, "application/json");
    assert_eq!(metadata.get("build").map(String::as_str), Some("42"));
}
