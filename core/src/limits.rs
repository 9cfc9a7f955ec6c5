//! Limits of what a caller may declare, and the object metadata keys the
//! service reserves for itself (the store writes them; a caller's metadata
//! may not use them).

use crate::error::{Error, Result};
use crate::model::{MultipartPlan, UploadRequest};

/// S3 object user-metadata keys the library reads and writes.
pub const META_ARTIFACT_NAME: &str = "artifact_name";
pub const META_ARTIFACT_SHA256: &str = "artifact_sha256";
/// The user-metadata key the mirror writes on every copy it makes to a
/// library key (`x-amz-meta-seed_layout_mirror`); its value is the sort key
/// of the row the copy was made for (`LATEST`, `000042`). An object whose
/// marker names its own key is the mirror's: it may replace or delete it.
/// Any other object is the library's (the library's publish copies LATEST's
/// metadata to the version key, so a marker naming another key is not
/// ours). `versioned` 1.0.1 reads only `artifact_name`, `artifact_sha256`
/// and hands the rest of the user metadata through, so the key is invisible
/// to it but as one more metadata entry.
pub const META_MIRRORED_FOR: &str = "seed_layout_mirror";

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
        + 14 // "53687091200000": the largest multipart size
        + super::META_UPLOAD_ID.len()
        + 32;
    /// The caller's budget: keys and values of `metadata`, in bytes.
    pub const USER_BYTES: usize = S3_USER_METADATA_BYTES - RESERVED_BYTES;
    /// Keys per upload: each is a signed `x-amz-meta-*` header of the PUT,
    /// which must stay well inside S3's 8 KiB request-header limit.
    pub const MAX_KEYS: usize = 16;
    pub const MAX_KEY_LEN: usize = 64;
    /// One entry, key and value together: each entry is the partition
    /// `__meta/{key}={value}` of the search index (SPEC 10.3), and the
    /// table's `pk` is also the sort key of its `by-sha256` index, which
    /// DynamoDB holds to 1024 bytes
    /// (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Constraints.html#limits-partition-sort-keys>);
    /// a longer entry would fail the publish that indexes it.
    pub const MAX_ENTRY_BYTES: usize = 1024 - "__meta/=".len();
    /// The longest value (under a one-character key).
    pub const MAX_VALUE_LEN: usize = MAX_ENTRY_BYTES - 1;
}

/// Staged-object metadata key holding the declared size (not copied to artifacts).
pub const META_UPLOAD_SIZE: &str = "upload_size";
/// Staged-object metadata key naming the upload that wrote the object (the
/// random half of its id): a verification recognises the object its own
/// upload created by it, and deletes no other (SPEC 7.15).
pub const META_UPLOAD_ID: &str = "upload_id";
/// User metadata keys a caller may not use: the service's own.
pub const RESERVED_METADATA: [&str; 5] = [
    META_ARTIFACT_NAME,
    META_ARTIFACT_SHA256,
    META_UPLOAD_SIZE,
    META_UPLOAD_ID,
    // The mirror's marker of its own copies: a user key of that name would
    // make a library object look like the mirror's.
    META_MIRRORED_FOR,
];

impl UploadRequest {
    /// Checks the declaration before anything is signed.
    pub fn validate(mut self) -> Result<Self> {
        self.sha256 = self.sha256.to_ascii_lowercase();
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidRequest(
                "sha256 must be 64 hexadecimal characters".into(),
            ));
        }
        if let Some(ct) = &self.content_type
            && (ct.is_empty() || ct.len() > 255 || !ct.bytes().all(|b| (0x20..0x7f).contains(&b)))
        {
            return Err(Error::InvalidRequest(
                "content_type must be 1-255 printable ASCII characters".into(),
            ));
        }
        use metadata_limits::{MAX_ENTRY_BYTES, MAX_KEY_LEN, MAX_KEYS, USER_BYTES};
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
            if k.len() + v.len() > MAX_ENTRY_BYTES {
                return Err(Error::TooLarge(format!(
                    "metadata entry {k:?} takes {} bytes, key and value; at most {MAX_ENTRY_BYTES} \
                     (each entry is a search index key)",
                    k.len() + v.len()
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

/// S3's single-PUT limit.
pub const MAX_UPLOAD_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// S3's smallest part (every part but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// S3's most parts per upload.
pub const MAX_PARTS: u64 = 10_000;
/// The part size chosen when the client names none.
pub const DEFAULT_PART_SIZE: u64 = 64 * 1024 * 1024;
/// Parts per call of the parts route.
pub const MAX_PARTS_PER_REQUEST: usize = 1000;
/// The largest upload: S3's most parts of its largest size.
pub const MAX_MULTIPART_SIZE: u64 = MAX_PARTS * MAX_PART_SIZE;

const MIB: u64 = 1024 * 1024;

/// How an upload of `size` bytes is cut: `None` for a single PUT (≤ 5 GiB
/// and no part size asked for). Without a part size, parts of 64 MiB, or
/// more when 10 000 of them would not hold `size`.
pub fn plan(size: u64, part_size: Option<u64>) -> Result<Option<MultipartPlan>> {
    if size > MAX_MULTIPART_SIZE {
        return Err(Error::TooLarge(format!(
            "size {size} exceeds S3's largest object ({MAX_MULTIPART_SIZE} bytes: \
             {MAX_PARTS} parts of 5 GiB)"
        )));
    }
    let part_size = match part_size {
        None if size <= MAX_UPLOAD_SIZE => return Ok(None),
        None => DEFAULT_PART_SIZE.max(size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB),
        Some(p) if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&p) => {
            return Err(Error::InvalidRequest(format!(
                "part_size {p} must be between {MIN_PART_SIZE} (5 MiB) and {MAX_PART_SIZE} (5 GiB)"
            )));
        }
        Some(p) => p,
    };
    let part_count = size.div_ceil(part_size).max(1);
    if part_count > MAX_PARTS {
        return Err(Error::InvalidRequest(format!(
            "part_size {part_size} cuts {size} bytes into {part_count} parts; S3 takes at most \
             {MAX_PARTS}: use at least {}",
            size.div_ceil(MAX_PARTS)
        )));
    }
    Ok(Some(MultipartPlan {
        part_size,
        part_count: part_count as u32,
    }))
}

impl MultipartPlan {
    /// The length of part `number` (1-based): `part_size`, the last one the rest.
    pub fn part_length(&self, number: u32, size: u64) -> u64 {
        if number < self.part_count {
            self.part_size
        } else {
            size - self.part_size * u64::from(self.part_count - 1)
        }
    }
}

/// A purge fence not renewed for this long is taken to be a crashed purge's:
/// it no longer blocks uploads, and another purge may take it over. A
/// running purge renews it before every step (each well under a second;
/// twice the purge function's 15 s timeout, so a purge that timed out
/// stops blocking soon after).
pub const PURGE_FENCE_STALE: std::time::Duration = std::time::Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_cut_into_at_most_ten_thousand_parts() {
        assert_eq!(plan(1024, None).unwrap(), None);
        let p = plan(5 * MIB * 3 + 1, Some(5 * MIB)).unwrap().unwrap();
        assert_eq!((p.part_size, p.part_count), (5 * MIB, 4));
        assert_eq!(p.part_length(4, 5 * MIB * 3 + 1), 1);
        let big = 6 * 1024 * MIB;
        let p = plan(big, None).unwrap().unwrap();
        assert_eq!((p.part_size, p.part_count), (DEFAULT_PART_SIZE, 96));
        let p = plan(MAX_MULTIPART_SIZE, None).unwrap().unwrap();
        assert!(u64::from(p.part_count) <= MAX_PARTS);
        assert!(plan(MAX_MULTIPART_SIZE + 1, None).is_err());
        assert!(plan(100, Some(5 * MIB - 1)).is_err());
        assert!(plan(100, Some(MAX_PART_SIZE + 1)).is_err());
        assert!(plan(MAX_PARTS * 5 * MIB + 1, Some(5 * MIB)).is_err());
        assert_eq!(plan(0, Some(5 * MIB)).unwrap().unwrap().part_count, 1);
    }
}
