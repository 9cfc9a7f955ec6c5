//! What the repository itself asks of S3 for every use case that answers
//! a version: the presigned GET of a version's bytes (SPEC 7.3).

use crate::clients::S3Client;
use crate::error::Result;
use crate::layout::Layout;
use crate::names::{ArtifactName, Version};
use crate::rows::Location;

/// A presigned GET of exactly the bytes of version `version` of `name`,
/// whose SHA-256 is `sha256`, stored at `location` (its blob, or the
/// library's object at its object version), valid for `expires`.
/// No request is sent.
pub async fn presigned_get(
    s3: &S3Client,
    layout: &Layout,
    name: &ArtifactName,
    version: Version,
    sha256: &str,
    location: &Location,
    expires: std::time::Duration,
) -> Result<String> {
    let s3 = &s3.0;
    let (key, version_id) = location.object(layout, name, version, sha256);
    let presigned = s3
        .get_object()
        .bucket(&layout.bucket)
        .key(key)
        .set_version_id(version_id)
        .presigned(crate::clients::presigning(expires)?)
        .await
        .map_err(|e| crate::sdk_error::upstream("presign GetObject", e))?;
    Ok(presigned.uri().to_owned())
}
