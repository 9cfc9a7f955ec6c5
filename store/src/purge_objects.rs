//! The S3 requests of a purge and of retention's sweep: whether a prefix
//! holds anything, its object versions and delete markers page by page,
//! the HeadObject of one listed version, the DeleteObjects of a batch, and
//! the current objects under a prefix page by page.

use std::collections::HashMap;

use aws_sdk_s3::types::{Delete, ObjectIdentifier};

use crate::clients::S3Client;
use crate::error::{Error, Result};
use crate::sdk_error::upstream;

/// An object version or delete marker as ListObjectVersions lists it.
pub struct ListedVersion {
    pub key: String,
    pub version_id: Option<String>,
    /// LastModified in whole Unix seconds, when S3 gave it.
    pub last_modified: Option<i64>,
}

/// One page of ListObjectVersions.
pub struct VersionPage {
    pub versions: Vec<ListedVersion>,
    pub delete_markers: Vec<ListedVersion>,
    /// The key marker and version id marker of the next page; `None` when
    /// this page is the last (not truncated).
    pub next: Option<(Option<String>, Option<String>)>,
}

/// A current object as ListObjectsV2 lists it.
pub struct ListedObject {
    pub key: String,
    /// LastModified in whole Unix seconds, when S3 gave it.
    pub last_modified: Option<i64>,
}

/// One page of ListObjectsV2.
pub struct ObjectPage {
    pub objects: Vec<ListedObject>,
    /// The continuation token of the next page; `None` when this page is
    /// the last (not truncated).
    pub next_token: Option<String>,
}

/// Whether anything (an object version or a delete marker) is stored under
/// `prefix`: one ListObjectVersions of at most one key.
pub async fn any_version(s3: &S3Client, bucket: &str, prefix: &str) -> Result<bool> {
    let s3 = &s3.0;
    let out = s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(prefix)
        .max_keys(1)
        .send()
        .await
        .map_err(|e| upstream("ListObjectVersions", e))?;
    Ok(!out.versions().is_empty() || !out.delete_markers().is_empty())
}

/// One page of the object versions and delete markers under `prefix`
/// (ListObjectVersions from the key and version id markers of the page
/// before; none for the first page). S3 names the key of every entry it
/// lists: one without a key could be neither headed nor deleted, and is
/// left out.
pub async fn list_versions_page(
    s3: &S3Client,
    bucket: &str,
    prefix: &str,
    key_marker: Option<String>,
    version_id_marker: Option<String>,
) -> Result<VersionPage> {
    let s3 = &s3.0;
    let out = s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(prefix)
        .set_key_marker(key_marker)
        .set_version_id_marker(version_id_marker)
        .send()
        .await
        .map_err(|e| upstream("ListObjectVersions", e))?;
    let listed = |key: Option<&str>,
                  version_id: Option<&str>,
                  modified: Option<&aws_sdk_s3::primitives::DateTime>| {
        Some(ListedVersion {
            key: key?.to_owned(),
            version_id: version_id.map(str::to_owned),
            last_modified: modified.map(|m| m.secs()),
        })
    };
    let versions = out
        .versions()
        .iter()
        .filter_map(|v| listed(v.key(), v.version_id(), v.last_modified()))
        .collect();
    let delete_markers = out
        .delete_markers()
        .iter()
        .filter_map(|m| listed(m.key(), m.version_id(), m.last_modified()))
        .collect();
    let next = (out.is_truncated() == Some(true)).then(|| {
        (
            out.next_key_marker().map(str::to_owned),
            out.next_version_id_marker().map(str::to_owned),
        )
    });
    Ok(VersionPage {
        versions,
        delete_markers,
        next,
    })
}

/// The user metadata of object version `version_id` of `key` (HeadObject;
/// the key's current version without one); `None` when S3 answers 404
/// (the object or version is gone).
pub async fn head_metadata(
    s3: &S3Client,
    bucket: &str,
    key: &str,
    version_id: Option<String>,
) -> Result<Option<HashMap<String, String>>> {
    let s3 = &s3.0;
    let head = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version_id)
        .send()
        .await;
    match head {
        Ok(h) => Ok(Some(h.metadata().cloned().unwrap_or_default())),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
        Err(e) => Err(upstream("HeadObject", e)),
    }
}

/// Permanently deletes the object versions `ids` (key, version id; the
/// key's current version without one) in one quiet DeleteObjects (at most
/// 1 000 of them: one listed page). An error names the first version S3
/// could not delete.
pub async fn delete_versions(
    s3: &S3Client,
    bucket: &str,
    ids: Vec<(String, Option<String>)>,
) -> Result<()> {
    let s3 = &s3.0;
    let ids: Vec<ObjectIdentifier> = ids
        .into_iter()
        .filter_map(|(key, version_id)| {
            ObjectIdentifier::builder()
                .key(key)
                .set_version_id(version_id)
                .build()
                .ok()
        })
        .collect();
    let delete = Delete::builder()
        .set_objects(Some(ids))
        .quiet(true)
        .build()
        .map_err(|e| Error::internal("build request", e))?;
    let result = s3
        .delete_objects()
        .bucket(bucket)
        .delete(delete)
        .send()
        .await
        .map_err(|e| upstream("DeleteObjects", e))?;
    if let Some(failed) = result.errors().first() {
        return Err(Error::UpstreamError {
            operation: "DeleteObjects",
            source: format!("could not delete {:?}: {:?}", failed.key(), failed.code()).into(),
        });
    }
    Ok(())
}

/// One page of the current objects under `prefix` (ListObjectsV2 from the
/// continuation `token` of the page before; none for the first page).
/// S3 names the key of every object it lists: one without a key is left
/// out.
pub async fn list_objects_page(
    s3: &S3Client,
    bucket: &str,
    prefix: &str,
    token: Option<String>,
) -> Result<ObjectPage> {
    let s3 = &s3.0;
    let out = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .set_continuation_token(token)
        .send()
        .await
        .map_err(|e| upstream("ListObjectsV2", e))?;
    let objects = out
        .contents()
        .iter()
        .filter_map(|o| {
            Some(ListedObject {
                key: o.key()?.to_owned(),
                last_modified: o.last_modified().map(|t| t.secs()),
            })
        })
        .collect();
    let next_token = out
        .next_continuation_token()
        .filter(|_| out.is_truncated() == Some(true))
        .map(str::to_owned);
    Ok(ObjectPage {
        objects,
        next_token,
    })
}
