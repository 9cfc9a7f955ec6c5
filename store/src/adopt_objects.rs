//! The S3 requests of a publish that adopts a LATEST the library wrote
//! into the blob store (SPEC 3.1): the look at the library's object and
//! the server-side copy of a part of it to the blob key (a whole copy is
//! the mirror's conditional [`crate::mirror_objects::copy`], on
//! `If-None-Match: *`). A copy that brought other bytes is removed with
//! [`crate::blob_objects::delete_version`].

use crate::clients::S3Client;
use crate::error::Result;
use crate::sdk_error::upstream;

/// The library's object as HeadObject saw it; `Gone` when there is none
/// (404: the key, or the pinned object version, no longer exists).
pub enum LibraryObject {
    Found {
        /// The object version read (the pinned one, else the current one).
        version_id: Option<String>,
        size: u64,
        /// What the object says of its bytes (the library's row keeps
        /// neither its content type nor its user metadata).
        description: crate::publish_rules::LibraryDescription,
    },
    Gone,
}

/// HeadObject of `key` at object version `version` (the current one when
/// `None`).
pub async fn head_library_object(
    s3: &S3Client,
    bucket: &str,
    key: &str,
    version: Option<String>,
) -> Result<LibraryObject> {
    let head =
        s3.0.head_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version)
            .send()
            .await;
    match head {
        Ok(head) => Ok(LibraryObject::Found {
            version_id: head.version_id().map(str::to_owned),
            size: head.content_length().unwrap_or_default().max(0) as u64,
            description: crate::publish_rules::LibraryDescription {
                sha256: head
                    .metadata()
                    .and_then(|m| m.get(crate::limits::META_ARTIFACT_SHA256))
                    .cloned(),
                mirrored: head
                    .metadata()
                    .is_some_and(|m| m.contains_key(crate::limits::META_MIRRORED_FOR)),
                content_type: head.content_type().map(str::to_owned),
                metadata: head
                    .metadata()
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| !crate::limits::RESERVED_METADATA.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            },
        }),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
            Ok(LibraryObject::Gone)
        }
        Err(e) => Err(upstream("HeadObject", e)),
    }
}

/// What a copy of one part of the library's object did.
pub enum PartCopy {
    Copied,
    /// S3 no longer knows the multipart upload (an earlier commit of it,
    /// whose answer was lost, completed it).
    NoSuchUpload,
    /// The source is gone (404).
    SourceGone,
}

/// UploadPartCopy of bytes `start..=end` of `source` (a `bucket/key?versionId=`
/// copy source) as part `number` of S3's multipart upload `upload_id` at
/// `key`.
#[allow(clippy::too_many_arguments)]
pub async fn copy_part(
    s3: &S3Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    number: u32,
    source: &str,
    start: u64,
    end: u64,
) -> Result<PartCopy> {
    match s3
        .0
        .upload_part_copy()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .part_number(number as i32)
        .copy_source(source)
        .copy_source_range(format!("bytes={start}-{end}"))
        .send()
        .await
    {
        Ok(_) => Ok(PartCopy::Copied),
        Err(e)
            if e.as_service_error()
                .and_then(|e| e.meta().code())
                .is_some_and(|c| c == "NoSuchUpload") =>
        {
            Ok(PartCopy::NoSuchUpload)
        }
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
            Ok(PartCopy::SourceGone)
        }
        Err(e) => Err(upstream("UploadPartCopy", e)),
    }
}
