//! The S3 requests of uploads at a blob key: the HeadObject with its
//! checksum, the presigned PUT and UploadParts bound to their SHA-256,
//! the multipart upload's life (create, list parts, complete onto exactly
//! the object judged, abort), a verification's ranged GETs and the delete
//! of an object version it refused.

use std::collections::HashMap;

use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::clients::S3Client;
use crate::error::{Error, Result};
use crate::objects::{Head, NULL_VERSION, version_param};
use crate::sdk_error::upstream;

/// A part as S3 lists it, with what completing the upload needs.
pub struct ListedPart {
    pub number: u32,
    pub size: u64,
    pub etag: Option<String>,
    pub checksum_sha256: Option<String>,
}

/// A presigned request as a client sends it: the URL, the method and the
/// headers it must carry (lowercase names; `host` left out, the client's
/// HTTP stack sets it).
pub struct Presigned {
    pub url: String,
    pub method: String,
    pub headers: std::collections::BTreeMap<String, String>,
}

impl Presigned {
    fn from_sdk(request: aws_sdk_s3::presigning::PresignedRequest) -> Self {
        Self {
            url: request.uri().to_owned(),
            method: request.method().to_owned(),
            headers: request
                .headers()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
                .collect(),
        }
    }
}

/// What a CompleteMultipartUpload may replace at the blob key.
pub enum Over {
    Nothing,
    /// The object with this ETag (an unverified one nobody will verify).
    Object(String),
}

/// HeadObject of `key` with its checksum; `None` when there is no such
/// object.
pub async fn head_object(s3: &S3Client, bucket: &str, key: &str) -> Result<Option<Head>> {
    let s3 = &s3.0;
    match s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
    {
        Ok(head) => Ok(Some(Head::from_sdk(&head))),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
        Err(e) => Err(upstream("HeadObject", e)),
    }
}

/// A presigned PutObject of exactly `size` bytes whose SHA-256 is
/// `digest` to `key` (the signed `x-amz-checksum-sha256`: S3 refuses other
/// bytes), with `content_type` and `metadata`.
#[allow(clippy::too_many_arguments)]
pub async fn presign_put(
    s3: &S3Client,
    bucket: &str,
    key: String,
    digest: &[u8],
    size: i64,
    content_type: String,
    metadata: HashMap<String, String>,
    expires: std::time::Duration,
) -> Result<Presigned> {
    let s3 = &s3.0;
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(STANDARD.encode(digest))
        .content_length(size)
        .content_type(content_type)
        .set_metadata(Some(metadata))
        .presigned(crate::clients::presigning(expires)?)
        .await
        .map(Presigned::from_sdk)
        .map_err(|e| upstream("presign PutObject", e))
}

/// A presigned UploadPart of part `number` of S3's upload `upload_id` at
/// `key`: exactly `length` bytes whose SHA-256 is `digest`.
#[allow(clippy::too_many_arguments)]
pub async fn presign_upload_part(
    s3: &S3Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    number: u32,
    digest: &[u8],
    length: u64,
    expires: std::time::Duration,
) -> Result<Presigned> {
    let s3 = &s3.0;
    s3.upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .part_number(number as i32)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(STANDARD.encode(digest))
        .content_length(length as i64)
        .presigned(crate::clients::presigning(expires)?)
        .await
        .map(Presigned::from_sdk)
        .map_err(|e| upstream("presign UploadPart", e))
}

/// Starts a multipart upload at `key` (CreateMultipartUpload) with SHA-256
/// part checksums, `content_type` and `metadata`; S3's upload id.
pub async fn create_multipart(
    s3: &S3Client,
    bucket: &str,
    key: &str,
    content_type: &str,
    metadata: HashMap<String, String>,
) -> Result<String> {
    let s3 = &s3.0;
    let out = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .content_type(content_type)
        .set_metadata(Some(metadata))
        .send()
        .await
        .map_err(|e| upstream("CreateMultipartUpload", e))?;
    out.upload_id().map(str::to_owned).ok_or_else(|| {
        Error::internal(
            "CreateMultipartUpload",
            "S3 answered no upload id".to_owned(),
        )
    })
}

/// AbortMultipartUpload of S3's upload `upload_id` at `key`; one S3 no
/// longer knows is aborted already.
pub async fn abort_multipart(
    s3: &S3Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<()> {
    let s3 = &s3.0;
    match s3
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_upload()) => Ok(()),
        Err(e) => Err(upstream("AbortMultipartUpload", e)),
    }
}

/// Every part S3 holds for its upload `upload_id` at `key` (ListParts, each
/// page), by number; `None` when S3 knows no such upload (completed or
/// aborted).
pub async fn list_parts(
    s3: &S3Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<Option<Vec<ListedPart>>> {
    let s3 = &s3.0;
    let mut parts = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = match s3
            .list_parts()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .set_part_number_marker(marker.clone())
            .send()
            .await
        {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.meta().code() == Some("NoSuchUpload")) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(upstream("ListParts", e)),
        };
        for p in out.parts() {
            parts.push(ListedPart {
                number: p.part_number().unwrap_or_default().max(0) as u32,
                size: p.size().unwrap_or_default().max(0) as u64,
                etag: p.e_tag().map(str::to_owned),
                checksum_sha256: p.checksum_sha256().map(str::to_owned),
            });
        }
        match (out.is_truncated(), out.next_part_number_marker()) {
            (Some(true), Some(next)) => marker = Some(next.to_owned()),
            _ => break,
        }
    }
    parts.sort_by_key(|p| p.number);
    Ok(Some(parts))
}

/// CompleteMultipartUpload of `parts` onto an empty key (`If-None-Match:
/// *`), or over exactly the object judged (`If-Match: its ETag`): on AWS
/// a key that changed meanwhile refuses it with 412 (a conflict here).
/// Returns the new object version; `None` when S3 no longer knows the
/// upload (a concurrent commit completed it).
pub async fn complete_multipart(
    s3: &S3Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    parts: &[ListedPart],
    over: Over,
) -> Result<Option<String>> {
    let s3 = &s3.0;
    let completed = CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|p| {
                    CompletedPart::builder()
                        .part_number(p.number as i32)
                        .set_e_tag(p.etag.clone())
                        .set_checksum_sha256(p.checksum_sha256.clone())
                        .build()
                })
                .collect(),
        ))
        .build();
    let out = s3
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(completed);
    let out = match over {
        Over::Nothing => out.if_none_match("*"),
        Over::Object(etag) => out.if_match(etag),
    }
    .send()
    .await;
    match out {
        Ok(out) => Ok(Some(out.version_id().unwrap_or(NULL_VERSION).to_owned())),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.meta().code() == Some("NoSuchUpload")) =>
        {
            Ok(None)
        }
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
            Err(Error::ConcurrentModification(
                "another upload of these bytes completed meanwhile; commit again".into(),
            ))
        }
        Err(e) => Err(upstream("CompleteMultipartUpload", e)),
    }
}

/// What a ranged read of an object version got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeRead {
    /// How many bytes were asked for.
    pub expected: u64,
    /// The bytes S3 sent (fewer when the object is shorter, none past its
    /// end or when it is gone).
    pub bytes: Vec<u8>,
    /// The whole object's length, from `Content-Range` (`bytes a-b/N`),
    /// when S3 said it.
    pub object_len: Option<u64>,
}

/// `[from, to)` of object version `version` of `key` (a ranged GetObject).
pub async fn get_range(
    s3: &S3Client,
    bucket: &str,
    key: &str,
    version: &str,
    from: u64,
    to: u64,
) -> Result<RangeRead> {
    let s3 = &s3.0;
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version_param(version))
        .range(format!("bytes={from}-{}", to - 1))
        .send()
        .await;
    let out = match out {
        Ok(out) => out,
        // Past the end of a shorter object, or the object is gone.
        Err(e)
            if e.raw_response()
                .is_some_and(|r| matches!(r.status().as_u16(), 404 | 416)) =>
        {
            return Ok(RangeRead {
                expected: to - from,
                bytes: Vec::new(),
                object_len: None,
            });
        }
        Err(e) => return Err(upstream("GetObject", e)),
    };
    let object_len = out
        .content_range()
        .and_then(|r| r.rsplit_once('/'))
        .and_then(|(_, n)| n.parse().ok());
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| Error::UpstreamError {
            operation: "GetObject body",
            source: Box::new(e),
        })?
        .into_bytes();
    Ok(RangeRead {
        expected: to - from,
        bytes: bytes.to_vec(),
        object_len,
    })
}

/// DeleteObject of object version `version` of `key`.
pub async fn delete_version(s3: &S3Client, bucket: &str, key: String, version: &str) -> Result<()> {
    let s3 = &s3.0;
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version_param(version))
        .send()
        .await
        .map_err(|e| upstream("DeleteObject", e))?;
    Ok(())
}
