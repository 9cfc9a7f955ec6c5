//! The S3 integrity guarantees of the upload flow, against an S3 emulator
//! that enforces them like S3 does (`s3s-fs`: it verifies SigV4 signatures,
//! presigned expiry and `x-amz-checksum-sha256`; moto does not). DynamoDB is
//! still moto's. `s3s-fs` runs behind test-support's `ChecksumS3`, which adds
//! AWS's checks of multipart part checksums that `s3s-fs` lacks (tested at
//! the end).

use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use shared::model::{LOCAL_ACTOR, UploadRequest, UploadTicket};
use shared::{Config, Error, Repository, Version};
use test_support::checksum_s3::LocalS3;
use test_support::{TestStore, name, sha256_hex};

/// A moto table plus an s3s-fs bucket, and a repository over both.
struct Split {
    moto: TestStore,
    repo: Repository,
    s3: aws_sdk_s3::Client,
    bucket: String,
    _s3s: LocalS3,
}

async fn split(presign_secs: u64) -> Split {
    let moto = TestStore::new().await;
    let s3s = LocalS3::checksum_enforcing().await;
    let bucket = moto.config.bucket.clone();
    let config = Config::from_lookup(|key| match key {
        "BUCKET_NAME" => Some(bucket.clone()),
        "TABLE_NAME" => Some(moto.config.table.clone()),
        "PRESIGN_EXPIRES_SECS" => Some(presign_secs.to_string()),
        _ => None,
    })
    .unwrap();
    let s3 = computing_checksums(&s3s);
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let repo = Repository::with_service_configs(&s3s.sdk, &moto.sdk, &config);
    Split {
        moto,
        repo,
        s3,
        bucket,
        _s3s: s3s,
    }
}

/// A client of `s3` with the SDK's default checksum behaviour: it computes
/// the checksum a request names (`LocalS3::s3`, like the repository's
/// client, computes none).
fn computing_checksums(s3: &LocalS3) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&s3.sdk)
            .force_path_style(true)
            .build(),
    )
}

async fn declare(repo: &Repository, bytes: &[u8]) -> UploadTicket {
    let request = UploadRequest {
        sha256: sha256_hex(bytes),
        size: bytes.len() as u64,
        content_type: None,
        metadata: Default::default(),
        part_size: None,
        key: None,
    };
    repo.create_upload(&name("app"), request, LOCAL_ACTOR)
        .await
        .unwrap()
}

/// PUTs `bytes` with the ticket's headers, `edit` applied to them first.
async fn put(
    ticket: &UploadTicket,
    bytes: &[u8],
    edit: impl Fn(&str, &str) -> String,
) -> (u16, String) {
    let url = ticket.url.as_deref().expect("a URL to PUT to");
    let mut request = reqwest::Client::new().put(url).body(bytes.to_vec());
    for (k, v) in ticket.headers.iter().flatten() {
        request = request.header(k, edit(k, v));
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

fn unchanged(_: &str, v: &str) -> String {
    v.to_owned()
}

#[tokio::test]
async fn the_upload_flow_works_on_a_checksum_enforcing_s3() {
    let s = split(900).await;
    let ticket = declare(&s.repo, b"good bytes").await;
    let (status, body) = put(&ticket, b"good bytes", unchanged).await;
    assert_eq!(status, 200, "{body}");
    let committed = s
        .repo
        .commit_upload(&name("app"), &ticket.upload_id, LOCAL_ACTOR)
        .await
        .unwrap();
    assert_eq!(committed.artifact.sha256, sha256_hex(b"good bytes"));
    s.repo
        .publish_version(&name("app"), false, LOCAL_ACTOR)
        .await
        .unwrap();
    let v1 = s
        .repo
        .get_version(&name("app"), Version::Number(1))
        .await
        .unwrap();
    let bytes = reqwest::get(v1.download_url.unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"good bytes");
}

#[tokio::test]
async fn s3_refuses_bytes_that_do_not_match_the_declared_sha256() {
    let s = split(900).await;
    let ticket = declare(&s.repo, b"good bytes").await;
    let (status, body) = put(&ticket, b"evil bytes", unchanged).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("BadDigest"), "{body}");
    // S3 stores nothing (404 on commit). s3s-fs leaves the refused bytes
    // behind without a checksum; commit refuses those too.
    let err = s
        .repo
        .commit_upload(&name("app"), &ticket.upload_id, LOCAL_ACTOR)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UploadNotFound { .. } | Error::UploadMismatch(_)),
        "{err:?}"
    );
    assert!(s.moto.items_besides_uploads().await.is_empty());
}

#[tokio::test]
async fn s3_refuses_a_declared_checksum_swapped_for_that_of_other_bytes() {
    let s = split(900).await;
    let ticket = declare(&s.repo, b"good bytes").await;
    let evil = sha256_base64(b"evil bytes");
    let swap = |k: &str, v: &str| {
        if k == "x-amz-checksum-sha256" {
            evil.clone()
        } else {
            v.to_owned()
        }
    };
    let (status, body) = put(&ticket, b"evil bytes", swap).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("SignatureDoesNotMatch"), "{body}");
}

#[tokio::test]
async fn s3_refuses_an_expired_upload_url() {
    let s = split(1).await;
    let ticket = declare(&s.repo, b"late bytes").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = put(&ticket, b"late bytes", unchanged).await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test]
async fn commit_refuses_a_staged_object_whose_checksum_differs_from_the_declaration() {
    let s = split(900).await;
    let ticket = declare(&s.repo, b"good bytes").await;
    // Someone with bucket access puts other bytes at the upload's blob
    // key, claiming the declared sha256 in metadata.
    s.s3.put_object()
        .bucket(&s.bucket)
        .key(format!(
            "versioned-artifacts.blobs/app/{}",
            sha256_hex(b"good bytes")
        ))
        .body(b"evil bytes".to_vec().into())
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .metadata("artifact_sha256", sha256_hex(b"good bytes"))
        .metadata("upload_size", "10")
        .send()
        .await
        .unwrap();
    let err = s
        .repo
        .commit_upload(&name("app"), &ticket.upload_id, LOCAL_ACTOR)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UploadMismatch(_)), "{err:?}");
    assert!(
        s.moto.items_besides_uploads().await.is_empty(),
        "a refused commit writes nothing"
    );
}

fn sha256_base64(bytes: &[u8]) -> String {
    STANDARD.encode(hex::decode(sha256_hex(bytes)).unwrap())
}

// Multipart uploads. s3s-fs checks no part checksum; `ChecksumS3` checks
// them as AWS does (its doc cites the pages). Parts here are small: only
// CompleteMultipartUpload enforces the 5 MiB minimum, and not on the last
// (here the only) part.

const PART: &[u8] = b"the part's bytes";
const OTHER: &[u8] = b"other part bytes";

/// A multipart upload created with ChecksumAlgorithm SHA256 in a bucket of
/// its own S3.
struct Multipart {
    s3: LocalS3,
    bucket: String,
    key: String,
    upload_id: String,
}

impl Multipart {
    async fn start(s3: LocalS3) -> Self {
        let bucket = "parts".to_owned();
        let key = "blobs/part-test".to_owned();
        s3.s3.create_bucket().bucket(&bucket).send().await.unwrap();
        let created = s3
            .s3
            .create_multipart_upload()
            .bucket(&bucket)
            .key(&key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .unwrap();
        let upload_id = created.upload_id().unwrap().to_owned();
        Self {
            s3,
            bucket,
            key,
            upload_id,
        }
    }

    /// A presigned UploadPart of part 1, signed for `bytes`' SHA-256 and
    /// length: its URL and the headers to send with it.
    async fn presign_part(&self, bytes: &[u8]) -> (String, Vec<(String, String)>) {
        let presigned = self
            .s3
            .s3
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(1)
            .checksum_sha256(sha256_base64(bytes))
            .content_length(bytes.len() as i64)
            .presigned(PresigningConfig::expires_in(Duration::from_secs(900)).unwrap())
            .await
            .unwrap();
        let headers = presigned
            .headers()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
            .collect();
        (presigned.uri().to_owned(), headers)
    }

    /// The parts ListParts reports: number and ChecksumSHA256.
    async fn listed(&self) -> Vec<(Option<i32>, Option<String>)> {
        let listed = self
            .s3
            .s3
            .list_parts()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await
            .unwrap();
        listed
            .parts()
            .iter()
            .map(|p| (p.part_number(), p.checksum_sha256().map(str::to_owned)))
            .collect()
    }

    /// CompleteMultipartUpload naming part 1 with `etag` and `sha256`.
    async fn complete(&self, etag: &str, sha256: String) -> Result<(), aws_sdk_s3::Error> {
        let part = CompletedPart::builder()
            .part_number(1)
            .e_tag(etag)
            .checksum_sha256(sha256)
            .build();
        self.s3
            .s3
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().parts(part).build())
            .send()
            .await
            .map(|_| ())
            .map_err(aws_sdk_s3::Error::from)
    }
}

/// PUTs `body` to a presigned URL with `headers`, `edit` applied to their
/// values; returns the status, the body and the ETag.
async fn put_part(
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    edit: impl Fn(&str, &str) -> String,
) -> (u16, String, Option<String>) {
    let mut request = reqwest::Client::new().put(url).body(body.to_vec());
    for (k, v) in headers {
        request = request.header(k, edit(k, v));
    }
    let response = request.send().await.unwrap();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
        etag,
    )
}

#[tokio::test]
async fn s3_accepts_a_presigned_part_of_the_signed_bytes_and_lists_its_sha256() {
    let mpu = Multipart::start(LocalS3::checksum_enforcing().await).await;
    let (url, headers) = mpu.presign_part(PART).await;
    assert!(
        headers.iter().any(|(k, _)| k == "x-amz-checksum-sha256"),
        "{headers:?}"
    );
    let (status, body, _) = put_part(&url, &headers, PART, unchanged).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(mpu.listed().await, [(Some(1), Some(sha256_base64(PART)))]);
}

#[tokio::test]
async fn s3_refuses_a_presigned_part_of_other_bytes_and_stores_nothing() {
    let mpu = Multipart::start(LocalS3::checksum_enforcing().await).await;
    let (url, headers) = mpu.presign_part(PART).await;
    assert_eq!(OTHER.len(), PART.len());
    let (status, body, _) = put_part(&url, &headers, OTHER, unchanged).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("BadDigest"), "{body}");
    assert_eq!(mpu.listed().await, []);
}

/// Why `ChecksumS3` exists: the same request as above, on bare s3s-fs.
#[tokio::test]
async fn bare_s3s_fs_accepts_a_part_of_other_bytes_than_its_sha256_and_lists_no_sha256() {
    let mpu = Multipart::start(LocalS3::plain_s3s_fs().await).await;
    let (url, headers) = mpu.presign_part(PART).await;
    let (status, body, _) = put_part(&url, &headers, OTHER, unchanged).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(mpu.listed().await, [(Some(1), None)]);
}

/// The SigV4 signature covers `x-amz-checksum-sha256`: s3s refuses this
/// before `ChecksumS3` sees it (bare s3s-fs refuses it too), and it is
/// what stops bytes that do match their (swapped) checksum.
#[tokio::test]
async fn s3_refuses_a_presigned_part_whose_sha256_header_was_swapped_for_that_of_other_bytes() {
    let mpu = Multipart::start(LocalS3::checksum_enforcing().await).await;
    let (url, headers) = mpu.presign_part(PART).await;
    let other = sha256_base64(OTHER);
    let swap = |k: &str, v: &str| {
        if k == "x-amz-checksum-sha256" {
            other.clone()
        } else {
            v.to_owned()
        }
    };
    let (status, body, _) = put_part(&url, &headers, OTHER, swap).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("SignatureDoesNotMatch"), "{body}");
    assert_eq!(mpu.listed().await, []);
}

#[tokio::test]
async fn s3_refuses_to_complete_with_a_part_sha256_other_than_the_uploaded_one() {
    let mpu = Multipart::start(LocalS3::checksum_enforcing().await).await;
    let (url, headers) = mpu.presign_part(PART).await;
    let (status, body, etag) = put_part(&url, &headers, PART, unchanged).await;
    assert_eq!(status, 200, "{body}");
    let etag = etag.unwrap();
    let err = mpu.complete(&etag, sha256_base64(OTHER)).await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidPart"), "{err:?}");
    mpu.complete(&etag, sha256_base64(PART)).await.unwrap();
    let object = mpu
        .s3
        .s3
        .get_object()
        .bucket(&mpu.bucket)
        .key(&mpu.key)
        .send()
        .await
        .unwrap();
    assert_eq!(&object.body.collect().await.unwrap().into_bytes()[..], PART);
}

/// A part streamed by the SDK carries its SHA-256 in the trailer of an
/// `aws-chunked` body (`x-amz-trailer`), not in a header: checked and
/// listed the same way.
#[tokio::test]
async fn s3_lists_the_sha256_of_a_part_whose_checksum_came_in_a_trailer() {
    let mpu = Multipart::start(LocalS3::checksum_enforcing().await).await;
    let sdk_s3 = computing_checksums(&mpu.s3);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), PART).unwrap();
    let uploaded = sdk_s3
        .upload_part()
        .bucket(&mpu.bucket)
        .key(&mpu.key)
        .upload_id(&mpu.upload_id)
        .part_number(1)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        // A file body is streamed, with the checksum trailing it.
        .body(
            aws_sdk_s3::primitives::ByteStream::from_path(file.path())
                .await
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.checksum_sha256(), Some(&*sha256_base64(PART)));
    assert_eq!(mpu.listed().await, [(Some(1), Some(sha256_base64(PART)))]);
}

/// The whole multipart flow on a checksum-enforcing S3: the parts route's
/// URLs bind each part's bytes (other bytes are refused by S3 itself, the
/// part is not stored, and the upload cannot be committed without it), the
/// right parts complete, and verification commits exactly these bytes.
#[tokio::test]
async fn a_part_of_other_bytes_than_the_parts_route_signed_for_is_refused_by_s3() {
    let s = split(900).await;
    let repo = s.repo.clone().with_verifier(shared::Verifier::Deferred);
    let n = name("parts");
    let content: Vec<u8> = (0..5 * 1024 * 1024 + 3).map(|i| (i % 251) as u8).collect();
    let ticket = repo
        .create_upload(
            &n,
            UploadRequest {
                sha256: sha256_hex(&content),
                size: content.len() as u64,
                content_type: None,
                metadata: Default::default(),
                part_size: Some(5 * 1024 * 1024),
                key: None,
            },
            LOCAL_ACTOR,
        )
        .await
        .unwrap();
    let plan = ticket.multipart.unwrap();
    let parts = test_support::parts_of(&content, &plan);
    let requests: Vec<shared::model::PartRequest> = parts
        .iter()
        .map(|(number, bytes)| shared::model::PartRequest {
            number: *number,
            sha256: sha256_hex(bytes).parse().unwrap(),
        })
        .collect();
    let urls = repo
        .upload_part_urls(&n, &ticket.upload_id, &requests)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    // Part 2 with other bytes of its length: refused.
    let (status, body) = test_support::put_part(&http, &urls.parts[1], b"xyz").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("BadDigest"), "{body}");
    match repo.commit(&n, &ticket.upload_id, "ci").await {
        Err(Error::UploadMismatch(m)) => assert!(m.contains("parts 1, 2"), "{m}"),
        other => panic!("{other:?}"),
    }
    // The right bytes: accepted, listed with S3's SHA-256 of them.
    for (url, (_, bytes)) in urls.parts.iter().zip(&parts) {
        let (status, body) = test_support::put_part(&http, url, bytes).await;
        assert_eq!(status, 200, "{body}");
    }
    let state = repo.upload_state(&n, &ticket.upload_id).await.unwrap();
    let listed: Vec<Option<String>> = state.parts.unwrap().into_iter().map(|p| p.sha256).collect();
    let declared: Vec<Option<String>> = parts.iter().map(|(_, b)| Some(sha256_hex(b))).collect();
    assert_eq!(listed, declared);
    repo.commit(&n, &ticket.upload_id, "ci").await.unwrap();
    let step = repo
        .verify_upload_step(&n, &ticket.upload_id, None)
        .await
        .unwrap();
    assert!(matches!(step, shared::VerifyStep::Committed(_)), "{step:?}");
    let latest = repo.get_version(&n, Version::Latest).await.unwrap();
    let downloaded = http
        .get(latest.download_url.unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(downloaded.as_ref(), content.as_slice());
}
