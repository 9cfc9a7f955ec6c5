//! S3 objects as the rules see them: the facts of a HeadObject the blob
//! rules judge, and object versions as requests name them.

use aws_sdk_s3::operation::head_object::HeadObjectOutput;

use crate::blob_rules::StoredObject;
use crate::limits::META_UPLOAD_ID;

/// S3's name of an object version: its id, or `null` (the one version of
/// a key in a bucket without versioning, e.g. a test double of S3).
pub const NULL_VERSION: &str = "null";

/// The `versionId` to send for `version`: none for the null version (the
/// key's one object where versioning is off).
pub fn version_param(version: &str) -> Option<String> {
    (version != NULL_VERSION).then(|| version.to_owned())
}

/// What a HeadObject (with its checksum) answered about an object.
#[derive(Debug, Clone)]
pub struct Head {
    pub content_length: Option<i64>,
    /// Base64 of the SHA-256 S3 recorded, when it recorded one.
    pub checksum_sha256: Option<String>,
    pub e_tag: Option<String>,
    pub version_id: Option<String>,
    /// The upload that wrote the object (`META_UPLOAD_ID`), if ours.
    pub writer: Option<String>,
}

impl Head {
    pub fn from_sdk(head: &HeadObjectOutput) -> Self {
        Self {
            content_length: head.content_length(),
            checksum_sha256: head.checksum_sha256().map(str::to_owned),
            e_tag: head.e_tag().map(str::to_owned),
            version_id: head.version_id().map(str::to_owned),
            writer: head.metadata().and_then(|m| m.get(META_UPLOAD_ID)).cloned(),
        }
    }

    pub fn content_length(&self) -> Option<i64> {
        self.content_length
    }

    pub fn checksum_sha256(&self) -> Option<&str> {
        self.checksum_sha256.as_deref()
    }

    pub fn e_tag(&self) -> Option<&str> {
        self.e_tag.as_deref()
    }
}

/// The facts of S3's record of an object that the blob rules judge.
pub fn stored_object(head: &Head) -> StoredObject {
    StoredObject {
        size: head.content_length.unwrap_or(-1).max(0) as u64,
        checksum_sha256: head.checksum_sha256.clone(),
        version: head
            .version_id
            .as_deref()
            .unwrap_or(NULL_VERSION)
            .to_owned(),
        writer: head.writer.clone(),
    }
}
