//! The S3 integrity guarantees of the upload flow, against an S3 emulator
//! that enforces them like S3 does (`s3s-fs`: it verifies SigV4 signatures,
//! presigned expiry and `x-amz-checksum-sha256`; moto does not). DynamoDB is
//! still moto's.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use hyper_util::rt::{TokioExecutor, TokioIo};
use shared::model::{UploadRequest, UploadTicket};
use shared::{Config, Error, Repository, Version};
use test_support::{TestStore, name, sha256_hex};

/// A moto table plus an s3s-fs bucket, and a repository over both.
struct Split {
    moto: TestStore,
    repo: Repository,
    s3: aws_sdk_s3::Client,
    bucket: String,
    _root: tempfile::TempDir,
}

async fn split(presign_secs: u64) -> Split {
    let moto = TestStore::new().await;
    let root = tempfile::tempdir().unwrap();
    let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single("test", "test"));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    let s3_sdk = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    let bucket = moto.config.bucket.clone();
    let config = Config::from_lookup(|key| match key {
        "BUCKET_NAME" => Some(bucket.clone()),
        "TABLE_NAME" => Some(moto.config.table.clone()),
        "PRESIGN_EXPIRES_SECS" => Some(presign_secs.to_string()),
        _ => None,
    })
    .unwrap();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&s3_sdk)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let repo = Repository::with_service_configs(&s3_sdk, &moto.sdk, &config);
    Split {
        moto,
        repo,
        s3,
        bucket,
        _root: root,
    }
}

async fn declare(repo: &Repository, bytes: &[u8]) -> UploadTicket {
    let request = UploadRequest {
        sha256: sha256_hex(bytes),
        size: bytes.len() as u64,
        content_type: None,
        metadata: Default::default(),
        part_size: None,
    };
    repo.create_upload(&name("app"), request).await.unwrap()
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
        .commit_upload(&name("app"), &ticket.upload_id)
        .await
        .unwrap();
    assert_eq!(committed.artifact.sha256, sha256_hex(b"good bytes"));
    s.repo.publish_version(&name("app"), false).await.unwrap();
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
        .commit_upload(&name("app"), &ticket.upload_id)
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
    let evil = {
        use base64::Engine;
        let digest = hex::decode(sha256_hex(b"evil bytes")).unwrap();
        base64::engine::general_purpose::STANDARD.encode(digest)
    };
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
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .metadata("artifact_sha256", sha256_hex(b"good bytes"))
        .metadata("upload_size", "10")
        .send()
        .await
        .unwrap();
    let err = s
        .repo
        .commit_upload(&name("app"), &ticket.upload_id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UploadMismatch(_)), "{err:?}");
    assert!(
        s.moto.items_besides_uploads().await.is_empty(),
        "a refused commit writes nothing"
    );
}
