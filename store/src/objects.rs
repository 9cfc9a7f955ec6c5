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

/// The facts of S3's record of an object that the blob rules judge.
pub fn stored_object(head: &HeadObjectOutput) -> StoredObject {
    StoredObject {
        size: head.content_length().unwrap_or(-1).max(0) as u64,
        checksum_sha256: head.checksum_sha256().map(str::to_owned),
        version: head.version_id().unwrap_or(NULL_VERSION).to_owned(),
        writer: head.metadata().and_then(|m| m.get(META_UPLOAD_ID)).cloned(),
    }
}
