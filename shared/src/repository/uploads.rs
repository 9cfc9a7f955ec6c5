//! Uploads: a presigned PUT bound to the declared bytes, then a verified commit.
//!
//! Bytes never pass through the service. S3 itself refuses bytes whose SHA-256
//! differs from the declared one (the signed `x-amz-checksum-sha256` header);
//! the commit re-checks what S3 recorded before the upload becomes LATEST.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, MetadataDirective};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use time::OffsetDateTime;

use super::Repository;
use crate::error::{Error, Result};
use crate::layout::{META_ARTIFACT_NAME, META_ARTIFACT_SHA256, attr, format_update_at, now};
use crate::model::{Committed, LOCAL_ACTOR, UploadRequest, UploadTicket};
use crate::names::{ArtifactName, Version};
use crate::rows::{VersionRow, nv, sv, version_key};

/// S3's single-PUT limit.
pub const MAX_UPLOAD_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// The limits of upload metadata: one place that the code enforces and
/// `openapi.yaml` states (a contract test keeps them equal).
///
/// S3 keeps at most 2 KiB of user-defined metadata per object, "measured by
/// taking the sum of the number of bytes in the UTF-8 encoding of each key
/// and value", inside a PUT request header of at most 8 KiB
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingMetadata.html#UserMetadata>).
/// The service adds its own keys, so the caller's budget is what is left
/// with the longest artifact name, the longest digest and size.
pub mod metadata_limits {
    use crate::names::ArtifactName;

    /// S3's limit on user-defined metadata, keys and values together.
    pub const S3_USER_METADATA_BYTES: usize = 2048;
    /// What the service's own keys take at most.
    pub const RESERVED_BYTES: usize = super::META_ARTIFACT_NAME.len()
        + ArtifactName::MAX_LEN
        + super::META_ARTIFACT_SHA256.len()
        + 64
        + super::META_UPLOAD_SIZE.len()
        + 10; // "5368709120": the largest single-PUT size
    /// The caller's budget: keys and values of `metadata`, in bytes.
    pub const USER_BYTES: usize = S3_USER_METADATA_BYTES - RESERVED_BYTES;
    /// Keys per upload: each is a signed `x-amz-meta-*` header of the PUT,
    /// which must stay well inside S3's 8 KiB request-header limit.
    pub const MAX_KEYS: usize = 16;
    pub const MAX_KEY_LEN: usize = 64;
}

/// Staged-object metadata key holding the declared size (not copied to artifacts).
const META_UPLOAD_SIZE: &str = "upload_size";
const RESERVED_METADATA: [&str; 3] = [META_ARTIFACT_NAME, META_ARTIFACT_SHA256, META_UPLOAD_SIZE];
/// What S3 records when the client declares no content type; signed all the
/// same, so no content type is ever stored that was not validated here.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

impl UploadRequest {
    /// Checks the declaration before anything is signed.
    pub fn validate(mut self) -> Result<Self> {
        self.sha256 = self.sha256.to_ascii_lowercase();
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidRequest(
                "sha256 must be 64 hexadecimal characters".into(),
            ));
        }
        if self.size > MAX_UPLOAD_SIZE {
            return Err(Error::TooLarge(format!(
                "size {} exceeds the 5 GiB single-upload limit",
                self.size
            )));
        }
        if let Some(ct) = &self.content_type
            && (ct.is_empty() || ct.len() > 255 || !ct.bytes().all(|b| (0x20..0x7f).contains(&b)))
        {
            return Err(Error::InvalidRequest(
                "content_type must be 1-255 printable ASCII characters".into(),
            ));
        }
        use metadata_limits::{MAX_KEY_LEN, MAX_KEYS, USER_BYTES};
        if self.metadata.len() > MAX_KEYS {
            return Err(Error::InvalidRequest(format!(
                "metadata has {} keys; at most {MAX_KEYS}",
                self.metadata.len()
            )));
        }
        let mut total = 0;
        for (k, v) in &self.metadata {
            if k.is_empty()
                || k.len() > MAX_KEY_LEN
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b))
            {
                return Err(Error::InvalidRequest(format!(
                    "metadata key {k:?} must be 1-{MAX_KEY_LEN} of a-z 0-9 - _"
                )));
            }
            if RESERVED_METADATA.contains(&k.as_str()) {
                return Err(Error::InvalidRequest(format!(
                    "metadata key {k:?} is reserved"
                )));
            }
            if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(Error::InvalidRequest(format!(
                    "metadata value of {k:?} must be printable ASCII"
                )));
            }
            total += k.len() + v.len();
        }
        if total > USER_BYTES {
            return Err(Error::TooLarge(format!(
                "metadata keys and values take {total} bytes; at most {USER_BYTES}"
            )));
        }
        Ok(self)
    }
}

/// Upload ids are 32 lowercase hex characters (a v4 UUID, simple form).
fn valid_upload_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Repository {
    /// Signs a PUT of exactly the declared bytes to a staging key. No AWS call.
    pub async fn create_upload(
        &self,
        name: &ArtifactName,
        request: UploadRequest,
    ) -> Result<UploadTicket> {
        let request = request.validate()?;
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let digest = hex::decode(&request.sha256)
            .map_err(|_| Error::InvalidRequest("sha256 must be hexadecimal".into()))?;
        let mut metadata: HashMap<String, String> = request.metadata.clone().into_iter().collect();
        metadata.insert(META_ARTIFACT_NAME.into(), name.to_string());
        metadata.insert(META_ARTIFACT_SHA256.into(), request.sha256.clone());
        metadata.insert(META_UPLOAD_SIZE.into(), request.size.to_string());
        let size = i64::try_from(request.size)
            .map_err(|_| Error::TooLarge(format!("size {} is too large", request.size)))?;
        let config = self.presigning()?;
        let expires_at = OffsetDateTime::now_utc() + config.expires();
        let presigned = self
            .s3
            .put_object()
            .bucket(&self.layout.bucket)
            .key(self.layout.staging_key(name, &upload_id))
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(STANDARD.encode(digest))
            .content_length(size)
            .content_type(
                request
                    .content_type
                    .as_deref()
                    .unwrap_or(DEFAULT_CONTENT_TYPE),
            )
            .set_metadata(Some(metadata))
            .presigned(config)
            .await
            .map_err(|e| Error::upstream("presign PutObject", e))?;
        let headers = presigned
            .headers()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
            .collect::<BTreeMap<_, _>>();
        Ok(UploadTicket {
            upload_id,
            url: presigned.uri().to_owned(),
            method: presigned.method().to_owned(),
            headers,
            expires_at: expires_at.replace_nanosecond(0).unwrap_or(expires_at),
        })
    }

    /// Verifies a staged upload and makes it LATEST.
    ///
    /// AWS calls: HeadObject, GetItem, CopyObject, UpdateItem, DeleteObject (5);
    /// 4 when the content equals LATEST already; a retry after success costs 2
    /// (3 when the staged object could not be deleted the first time).
    pub async fn commit_upload(&self, name: &ArtifactName, upload_id: &str) -> Result<Committed> {
        self.commit_upload_as(name, upload_id, LOCAL_ACTOR).await
    }

    /// [`Self::commit_upload`], recording `actor` as LATEST's creator.
    pub async fn commit_upload_as(
        &self,
        name: &ArtifactName,
        upload_id: &str,
        actor: &str,
    ) -> Result<Committed> {
        if !valid_upload_id(upload_id) {
            return Err(Error::InvalidRequest(
                "upload_id must be 32 lowercase hexadecimal characters".into(),
            ));
        }
        let staging_key = self.layout.staging_key(name, upload_id);
        let head = self
            .s3
            .head_object()
            .bucket(&self.layout.bucket)
            .key(&staging_key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        let head = match head {
            Ok(head) => head,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => {
                return self.already_committed(name, upload_id).await;
            }
            Err(e) => return Err(Error::upstream("HeadObject", e)),
        };

        // What the client declared when the URL was signed...
        let mut metadata = head.metadata().cloned().unwrap_or_default();
        let declared_sha = metadata.remove(META_ARTIFACT_SHA256).unwrap_or_default();
        let declared_size = metadata
            .remove(META_UPLOAD_SIZE)
            .and_then(|s| s.parse::<i64>().ok());
        metadata.remove(META_ARTIFACT_NAME);
        // ...against what S3 recorded for the bytes it received.
        let expected_checksum = hex::decode(&declared_sha).map(|d| STANDARD.encode(d)).ok();
        match (head.checksum_sha256(), &expected_checksum) {
            (Some(got), Some(want)) if got == want => {}
            (None, _) => {
                return Err(Error::UploadMismatch(
                    "S3 recorded no SHA-256 checksum for the upload; PUT it with the returned headers".into(),
                ));
            }
            _ => {
                return Err(Error::UploadMismatch(
                    "the uploaded bytes do not match the declared sha256".into(),
                ));
            }
        }
        if declared_size.is_none() || head.content_length() != declared_size {
            return Err(Error::UploadMismatch(format!(
                "uploaded {} bytes, declared {}",
                head.content_length().unwrap_or(-1),
                declared_size.map_or("nothing".into(), |s| s.to_string())
            )));
        }
        let size = head.content_length().unwrap_or_default().max(0) as u64;
        let content_type = head.content_type().map(str::to_owned);
        let staged_version = head.version_id().map(str::to_owned);

        let latest = self.get_row(name, Version::Latest).await?;
        if let Some(row) = &latest
            && row.is_live()
            && row.upload_id.as_deref() == Some(upload_id)
        {
            // Committed already (only the answer or the clean-up was lost): same answer.
            self.discard_staged(&staging_key, staged_version).await;
            return Ok(Committed {
                changed: row.upload_changed.unwrap_or(true),
                artifact: row.to_artifact(&self.layout),
            });
        }
        let unchanged = latest
            .as_ref()
            .is_some_and(|row| row.is_live() && row.sha256 == declared_sha);
        let committed = if unchanged {
            self.record_upload(name, upload_id).await?
        } else {
            let version_id = self
                .copy_to_latest(
                    name,
                    &staging_key,
                    staged_version.as_deref(),
                    &declared_sha,
                    &metadata,
                    content_type.as_deref(),
                )
                .await?;
            let last_version = match &latest {
                Some(row) if row.last_version.is_none() => self.highest_version(name).await?,
                _ => 0,
            };
            let row = NewLatest {
                sha256: &declared_sha,
                size,
                content_type: content_type.as_deref(),
                metadata: &metadata,
                s3_version_id: version_id.as_deref(),
                upload_id,
                last_version,
                actor,
            };
            self.write_latest(name, row).await?
        };
        self.discard_staged(&staging_key, staged_version).await;
        Ok(committed)
    }

    /// Deletes a committed staged object. Best effort: the commit stands
    /// either way, a retry recognises it, and the bucket's lifecycle rule
    /// expires staged objects left behind after a day.
    async fn discard_staged(&self, staging_key: &str, version: Option<String>) {
        let deleted = self
            .s3
            .delete_object()
            .bucket(&self.layout.bucket)
            .key(staging_key)
            .set_version_id(version)
            .send()
            .await;
        if let Err(e) = deleted {
            tracing::warn!(error = ?e, staging_key, "could not delete a committed staged upload");
        }
    }

    /// A commit retried after it succeeded (the staged object is gone): same answer.
    async fn already_committed(&self, name: &ArtifactName, upload_id: &str) -> Result<Committed> {
        match self.get_row(name, Version::Latest).await? {
            Some(row) if row.upload_id.as_deref() == Some(upload_id) && row.is_live() => {
                Ok(Committed {
                    changed: row.upload_changed.unwrap_or(true),
                    artifact: row.to_artifact(&self.layout),
                })
            }
            _ => Err(Error::UploadNotFound {
                name: name.to_string(),
                upload_id: upload_id.to_owned(),
            }),
        }
    }

    /// Server-side copy of the verified staged version onto the LATEST key.
    async fn copy_to_latest(
        &self,
        name: &ArtifactName,
        staging_key: &str,
        staged_version: Option<&str>,
        sha256: &str,
        user_metadata: &HashMap<String, String>,
        content_type: Option<&str>,
    ) -> Result<Option<String>> {
        let mut metadata = user_metadata.clone();
        metadata.insert(META_ARTIFACT_NAME.into(), name.to_string());
        metadata.insert(META_ARTIFACT_SHA256.into(), sha256.to_owned());
        let source = crate::layout::copy_source(&self.layout.bucket, staging_key, staged_version);
        let out = self
            .s3
            .copy_object()
            .bucket(&self.layout.bucket)
            .key(self.layout.object_key(name, Version::Latest))
            .copy_source(source)
            .metadata_directive(MetadataDirective::Replace)
            .set_metadata(Some(metadata))
            .set_content_type(content_type.map(str::to_owned))
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .map_err(|e| Error::upstream("CopyObject", e))?;
        Ok(out.version_id().map(str::to_owned))
    }

    /// Records that `upload_id` was committed without changing LATEST.
    async fn record_upload(&self, name: &ArtifactName, upload_id: &str) -> Result<Committed> {
        let out = self
            .ddb
            .update_item()
            .table_name(&self.layout.table)
            .set_key(Some(version_key(name, Version::Latest)))
            .update_expression("SET #upload_id = :upload_id, #changed = :false")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#upload_id", attr::UPLOAD_ID)
            .expression_attribute_names("#changed", attr::UPLOAD_CHANGED)
            .expression_attribute_values(":upload_id", sv(upload_id))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| Error::upstream("UpdateItem", e))?;
        let row = out
            .attributes()
            .map(VersionRow::from_item)
            .transpose()?
            .ok_or_else(|| Error::ArtifactNotFound {
                name: name.to_string(),
            })?;
        Ok(Committed {
            artifact: row.to_artifact(&self.layout),
            changed: false,
        })
    }

    /// Points the LATEST row at new bytes, keeping every attribute the row has
    /// beyond the content (version counter, publish marker).
    async fn write_latest(&self, name: &ArtifactName, new: NewLatest<'_>) -> Result<Committed> {
        let metadata = new
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), sv(v)))
            .collect::<HashMap<_, _>>();
        let mut set = vec![
            "#sha256 = :sha256",
            "#is_deleted = :false",
            "#update_at = :now",
            "#size = :size",
            "#metadata = :metadata",
            "#upload_id = :upload_id",
            "#changed = :true",
            "#last_version = if_not_exists(#last_version, :last_version)",
            // A row this service wrote always has a publish marker (empty:
            // never published); its absence means the library wrote LATEST.
            "#published = if_not_exists(#published, :never)",
            "#created_by = :actor",
        ];
        let mut remove = vec![];
        let mut update = self
            .ddb
            .update_item()
            .table_name(&self.layout.table)
            .set_key(Some(version_key(name, Version::Latest)))
            .expression_attribute_names("#sha256", attr::SHA256)
            .expression_attribute_names("#is_deleted", attr::IS_DELETED)
            .expression_attribute_names("#update_at", attr::UPDATE_AT)
            .expression_attribute_names("#size", attr::SIZE)
            .expression_attribute_names("#metadata", attr::METADATA)
            .expression_attribute_names("#upload_id", attr::UPLOAD_ID)
            .expression_attribute_names("#changed", attr::UPLOAD_CHANGED)
            .expression_attribute_names("#last_version", attr::LAST_VERSION)
            .expression_attribute_names("#content_type", attr::CONTENT_TYPE)
            .expression_attribute_names("#s3_version_id", attr::S3_VERSION_ID)
            .expression_attribute_values(":sha256", sv(new.sha256))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":now", sv(format_update_at(now())))
            .expression_attribute_values(":size", nv(new.size))
            .expression_attribute_values(":metadata", AttributeValue::M(metadata))
            .expression_attribute_values(":upload_id", sv(new.upload_id))
            .expression_attribute_values(":last_version", nv(new.last_version))
            .expression_attribute_names("#published", attr::PUBLISHED_SHA256)
            .expression_attribute_names("#created_by", attr::CREATED_BY)
            .expression_attribute_values(":never", sv(""))
            .expression_attribute_values(":actor", sv(new.actor));
        match new.content_type {
            Some(ct) => {
                set.push("#content_type = :content_type");
                update = update.expression_attribute_values(":content_type", sv(ct));
            }
            None => remove.push("#content_type"),
        }
        match new.s3_version_id {
            Some(v) => {
                set.push("#s3_version_id = :s3_version_id");
                update = update.expression_attribute_values(":s3_version_id", sv(v));
            }
            None => remove.push("#s3_version_id"),
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let out = update
            .update_expression(expression)
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| Error::upstream("UpdateItem", e))?;
        let row = out
            .attributes()
            .map(VersionRow::from_item)
            .transpose()?
            .ok_or_else(|| Error::ArtifactNotFound {
                name: name.to_string(),
            })?;
        Ok(Committed {
            artifact: row.to_artifact(&self.layout),
            changed: true,
        })
    }
}

struct NewLatest<'a> {
    sha256: &'a str,
    size: u64,
    content_type: Option<&'a str>,
    metadata: &'a HashMap<String, String>,
    s3_version_id: Option<&'a str>,
    upload_id: &'a str,
    /// Seed for the version counter when the row has none yet.
    last_version: u32,
    actor: &'a str,
}
