//! The S3 requests of the mirror of the library's layout (SPEC 3.2) at a
//! library key: the listing of the key's versions, the HeadObject of one
//! version with its user metadata, the delete of one version, and the
//! conditional copy of a blob to the key (one CopyObject, or a multipart
//! copy: CreateMultipartUpload, UploadPartCopy per part,
//! CompleteMultipartUpload). Which object is whose, and what to do about
//! it, is the service's.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, MetadataDirective,
};
use time::OffsetDateTime;

use crate::clients::S3Client;
use crate::error::{Error, Result};
use crate::sdk_error::upstream;

/// One version of a key as ListObjectVersions lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersion {
    pub version_id: String,
    /// Whether it is the key's current version.
    pub is_latest: bool,
}

/// What HeadObject answers of one object version.
#[derive(Debug, Clone, Default)]
pub struct ObjectHead {
    pub version_id: Option<String>,
    pub e_tag: Option<String>,
    pub last_modified: Option<OffsetDateTime>,
    /// Its user metadata (empty when it has none).
    pub metadata: HashMap<String, String>,
}

/// The condition a write to the library key is made on: `If-Match` an
/// ETag, `If-None-Match` (`*`: the key holds nothing), both or neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Condition {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
}

/// What a conditional write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditional<T> {
    /// It landed, with what S3 answered.
    Written(T),
    /// S3 refused it on its condition: the key changed since it was read.
    Refused,
}

/// What a CopyObject that landed answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedObject {
    /// The version it created (`None` without versioning).
    pub version_id: Option<String>,
    /// The SHA-256 S3 computed of the copy (base64), as S3 gives it.
    pub checksum_sha256: Option<String>,
}

/// A part an UploadPartCopy copied, as the completion names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedPart {
    pub number: i32,
    pub e_tag: Option<String>,
}

/// Every version of exactly `key` (ListObjectVersions by prefix `key`,
/// each page; versions of longer keys and versions without an id are
/// left out), newest first as S3 lists them.
pub async fn key_versions(s3: &S3Client, bucket: &str, key: &str) -> Result<Vec<KeyVersion>> {
    let s3 = &s3.0;
    let mut versions = Vec::new();
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let out = s3
            .list_object_versions()
            .bucket(bucket)
            .prefix(key)
            .set_key_marker(key_marker)
            .set_version_id_marker(version_marker)
            .send()
            .await
            .map_err(|e| upstream("ListObjectVersions", e))?;
        versions.extend(
            out.versions()
                .iter()
                .filter(|v| v.key() == Some(key))
                .filter_map(|v| {
                    Some(KeyVersion {
                        version_id: v.version_id()?.to_owned(),
                        is_latest: v.is_latest() == Some(true),
                    })
                }),
        );
        if out.is_truncated() != Some(true) {
            break;
        }
        key_marker = out.next_key_marker().map(str::to_owned);
        version_marker = out.next_version_id_marker().map(str::to_owned);
    }
    Ok(versions)
}

/// HeadObject of `key`'s current object, or of its version `version_id`
/// (sent as given); `None` when there is no such object (404).
pub async fn head(
    s3: &S3Client,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<Option<ObjectHead>> {
    let s3 = &s3.0;
    let out = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version_id.map(str::to_owned))
        .send()
        .await;
    match out {
        Ok(out) => Ok(Some(ObjectHead {
            last_modified: out
                .last_modified()
                .and_then(|t| OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos()).ok()),
            e_tag: out.e_tag().map(str::to_owned),
            metadata: out.metadata().cloned().unwrap_or_default(),
            version_id: out.version_id,
        })),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
        Err(e) => Err(upstream("HeadObject", e)),
    }
}

/// DeleteObject of `key`'s version `version_id` (sent as given), or of
/// the key without a version id when `None`.
pub async fn delete(
    s3: &S3Client,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<()> {
    let s3 = &s3.0;
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version_id.map(str::to_owned))
        .send()
        .await
        .map_err(|e| upstream("DeleteObject", e))?;
    Ok(())
}

/// CopyObject of `source` (an `x-amz-copy-source`) to `key` on
/// `condition`, replacing the metadata with `metadata` and `content_type`,
/// S3 computing the copy's SHA-256. Refused when S3 answers 412 or 409.
pub async fn copy(
    s3: &S3Client,
    bucket: &str,
    key: &str,
    source: &str,
    condition: &Condition,
    metadata: HashMap<String, String>,
    content_type: Option<String>,
) -> Result<Conditional<CopiedObject>> {
    let s3 = &s3.0;
    let out = s3
        .copy_object()
        .bucket(bucket)
        .key(key)
        .copy_source(source)
        .set_if_match(condition.if_match.clone())
        .set_if_none_match(condition.if_none_match.clone())
        .metadata_directive(MetadataDirective::Replace)
        .set_metadata(Some(metadata))
        .set_content_type(content_type)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .send()
        .await;
    match out {
        Ok(out) => Ok(Conditional::Written(CopiedObject {
            checksum_sha256: out
                .copy_object_result()
                .and_then(|r| r.checksum_sha256())
                .map(str::to_owned),
            version_id: out.version_id,
        })),
        Err(e) if refused(e.raw_response().map(|r| r.status().as_u16())) => {
            Ok(Conditional::Refused)
        }
        Err(e) => Err(upstream("CopyObject", e)),
    }
}

/// CreateMultipartUpload at `key` with `metadata` and `content_type` and
/// no checksum algorithm (S3 would then require each part's checksum on
/// completion); S3's upload id.
pub async fn create_multipart_copy(
    s3: &S3Client,
    bucket: &str,
    key: &str,
    metadata: HashMap<String, String>,
    content_type: Option<String>,
) -> Result<String> {
    let s3 = &s3.0;
    let upload = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .set_metadata(Some(metadata))
        .set_content_type(content_type)
        .send()
        .await
        .map_err(|e| upstream("CreateMultipartUpload", e))?;
    upload
        .upload_id()
        .map(str::to_owned)
        .ok_or_else(|| Error::internal("mirror copy", "CreateMultipartUpload gave no upload id"))
}

/// UploadPartCopy of the bytes `range` (first and last byte, inclusive) of
/// `source` as part `number` of S3's upload `upload_id` at `key`.
pub async fn upload_part_copy(
    s3: &S3Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    number: i32,
    source: &str,
    range: RangeInclusive<u64>,
) -> Result<CopiedPart> {
    let s3 = &s3.0;
    let out = s3
        .upload_part_copy()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .part_number(number)
        .copy_source(source)
        .copy_source_range(format!("bytes={}-{}", range.start(), range.end()))
        .send()
        .await
        .map_err(|e| upstream("UploadPartCopy", e))?;
    Ok(CopiedPart {
        number,
        e_tag: out
            .copy_part_result()
            .and_then(|r| r.e_tag())
            .map(str::to_owned),
    })
}

/// CompleteMultipartUpload of `parts` of S3's upload `upload_id` at `key`
/// on `condition`; the version it created (`None` without versioning).
/// Refused when S3 answers 412 or 409.
pub async fn complete_multipart_copy(
    s3: &S3Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    parts: Vec<CopiedPart>,
    condition: &Condition,
) -> Result<Conditional<Option<String>>> {
    let s3 = &s3.0;
    let parts = parts
        .into_iter()
        .map(|p| {
            CompletedPart::builder()
                .part_number(p.number)
                .set_e_tag(p.e_tag)
                .build()
        })
        .collect();
    let out = s3
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .set_if_match(condition.if_match.clone())
        .set_if_none_match(condition.if_none_match.clone())
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await;
    match out {
        Ok(out) => Ok(Conditional::Written(out.version_id)),
        Err(e) if refused(e.raw_response().map(|r| r.status().as_u16())) => {
            Ok(Conditional::Refused)
        }
        Err(e) => Err(upstream("CompleteMultipartUpload", e)),
    }
}

/// Whether S3 refused a conditional write because the key changed: 412
/// Precondition Failed, or 409 ConditionalRequestConflict (a write racing
/// ours).
fn refused(status: Option<u16>) -> bool {
    matches!(status, Some(412 | 409))
}
