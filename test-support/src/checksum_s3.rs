//! An in-process S3 that verifies multipart part checksums like AWS does.
//!
//! `s3s-fs` (the S3 emulator the integrity tests run) verifies SigV4
//! signatures, presigned expiry and the `x-amz-checksum-*` of a PutObject,
//! but not those of a multipart upload: its UploadPart hashes MD5 only,
//! its ListParts returns no checksums, and its CompleteMultipartUpload
//! compares none. AWS S3 does all three (see [`ChecksumS3`]), so a test of
//! presigned part uploads against bare `s3s-fs` would pass where S3 refuses,
//! or refuse nothing where S3 would. [`ChecksumS3`] wraps `s3s-fs` and adds
//! what it lacks for SHA-256; [`LocalS3`] serves either on loopback.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use aws_config::SdkConfig;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};
use sha2::{Digest, Sha256};

/// The largest part S3 takes (5 GiB): a larger UploadPart is refused
/// before its body is read into memory.
/// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html>
const MAX_PART_SIZE: u64 = 5 << 30;

/// `s3s_fs::FileSystem` with AWS's checks of multipart SHA-256 checksums.
///
/// AWS S3 computes the checksum of what it receives and compares it with
/// the one the request declares: "S3 then independently calculates a
/// checksum of your data and validates it against the provided checksum
/// value", which "works consistently across [...] both single part and
/// multipart uploads"
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity-upload.html>).
/// For UploadPart the declaration is `x-amz-checksum-sha256`, "the Base64
/// encoded, 256-bit SHA256 digest"
/// (<https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPart.html>),
/// and a mismatch is refused with 400 `BadDigest`
/// (<https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html>).
/// ListParts then reports each part's `ChecksumSHA256`, "present if the
/// multipart upload request was created with the SHA256 checksum algorithm"
/// (<https://docs.aws.amazon.com/AmazonS3/latest/API/API_Part.html>); the
/// part list of CompleteMultipartUpload carries the same checksum per part
/// (<https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompletedPart.html>),
/// and a list naming parts other than those uploaded is refused with 400
/// `InvalidPart`
/// (<https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html>).
///
/// So, on top of `s3s-fs`:
/// - `UploadPart` with a SHA-256 (header `x-amz-checksum-sha256`, or the
///   trailer of that name in an `aws-chunked` body) hashes the body and
///   refuses it with `BadDigest` when the digest differs, storing nothing;
///   when it matches, the part is stored and its checksum remembered (in
///   memory, by upload id and part number) and returned.
/// - `ListParts` fills each part's `ChecksumSHA256` from what it remembered.
/// - `CompleteMultipartUpload` refuses with `InvalidPart` a part whose
///   `ChecksumSHA256` is not the one remembered for it.
///
/// Every other operation is `s3s-fs`'s own.
pub struct ChecksumS3 {
    fs: s3s_fs::FileSystem,
    /// SHA-256 of each part stored with one, by (upload id, part number).
    parts: Mutex<HashMap<(String, PartNumber), [u8; 32]>>,
}

impl ChecksumS3 {
    /// `s3s-fs` keeping its buckets under `root` (an existing directory),
    /// with the checks above.
    pub fn new(root: impl AsRef<Path>) -> Result<Self, s3s_fs::Error> {
        Ok(Self {
            fs: s3s_fs::FileSystem::new(root)?,
            parts: Mutex::new(HashMap::new()),
        })
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<(String, PartNumber), [u8; 32]>> {
        // A panic while holding the lock leaves the map whole: keep using it.
        self.parts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn forget_upload(&self, upload_id: &str) {
        self.remembered().retain(|(id, _), _| id != upload_id);
    }

    async fn checked_upload_part(
        &self,
        mut req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        if req
            .input
            .content_length
            .is_some_and(|n| u64::try_from(n).is_ok_and(|n| n > MAX_PART_SIZE))
        {
            return Err(s3_error!(EntityTooLarge));
        }
        let body = req
            .input
            .body
            .take()
            .ok_or_else(|| s3_error!(IncompleteBody))?;
        let limit = usize::try_from(MAX_PART_SIZE).unwrap_or(usize::MAX);
        let bytes = s3s::Body::from(body)
            .store_all_limited(limit)
            .await
            .map_err(|e| match e.downcast::<S3Error>() {
                Ok(e) => *e,
                Err(e) => S3Error::with_source(S3ErrorCode::IncompleteBody, e),
            })?;
        // The trailer is complete once the body has been read.
        let declared = match req.input.checksum_sha256.clone() {
            Some(header) => Some(header),
            None => req
                .trailing_headers
                .as_ref()
                .and_then(|t| t.read(|h| h.get("x-amz-checksum-sha256").cloned()))
                .flatten()
                .map(|v| v.to_str().map(str::to_owned))
                .transpose()
                .map_err(|_| invalid_sha256())?,
        };
        let key = (req.input.upload_id.clone(), req.input.part_number);
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if let Some(declared) = &declared
            && decode_sha256(declared)? != digest
        {
            return Err(s3_error!(
                BadDigest,
                "The SHA256 you specified did not match the calculated checksum."
            ));
        }
        req.input.body = Some(StreamingBlob::from(s3s::Body::from(bytes)));
        let mut response = self.fs.upload_part(req).await?;
        if declared.is_some() {
            response.output.checksum_sha256 = Some(STANDARD.encode(digest));
            self.remembered().insert(key, digest);
        } else {
            // The part was replaced by one without a checksum.
            self.remembered().remove(&key);
        }
        Ok(response)
    }

    async fn checked_list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let upload_id = req.input.upload_id.clone();
        let mut response = self.fs.list_parts(req).await?;
        let remembered = self.remembered();
        for part in response.output.parts.iter_mut().flatten() {
            if let Some(digest) = part
                .part_number
                .and_then(|n| remembered.get(&(upload_id.clone(), n)))
            {
                part.checksum_sha256 = Some(STANDARD.encode(digest));
            }
        }
        Ok(response)
    }

    async fn checked_complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let upload_id = req.input.upload_id.clone();
        let completed = req
            .input
            .multipart_upload
            .iter()
            .flat_map(|u| u.parts.iter().flatten());
        for part in completed {
            let (Some(number), Some(declared)) = (part.part_number, &part.checksum_sha256) else {
                continue;
            };
            let declared = decode_sha256(declared)?;
            if self.remembered().get(&(upload_id.clone(), number)) != Some(&declared) {
                return Err(s3_error!(
                    InvalidPart,
                    "part {number}: ChecksumSHA256 {declared:?} is not that of the uploaded part",
                    declared = STANDARD.encode(declared)
                ));
            }
        }
        let response = self.fs.complete_multipart_upload(req).await?;
        self.forget_upload(&upload_id);
        Ok(response)
    }

    async fn forgetting_abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let upload_id = req.input.upload_id.clone();
        let response = self.fs.abort_multipart_upload(req).await?;
        self.forget_upload(&upload_id);
        Ok(response)
    }
}

fn invalid_sha256() -> S3Error {
    s3_error!(
        InvalidRequest,
        "Value for x-amz-checksum-sha256 header is invalid."
    )
}

/// A declared `x-amz-checksum-sha256`: the base64 of 32 bytes.
fn decode_sha256(value: &str) -> S3Result<[u8; 32]> {
    STANDARD
        .decode(value)
        .ok()
        .and_then(|d| <[u8; 32]>::try_from(d).ok())
        .ok_or_else(invalid_sha256)
}

/// `impl S3 for ChecksumS3`: the checked operations by their methods above,
/// every other operation of the `S3` trait (s3s 0.14) passed to `s3s-fs`
/// as is. (One macro writes the whole impl because `#[async_trait]` must
/// see the methods.)
macro_rules! impl_s3 {
    (
        checked { $($c:ident: $ci:ident -> $co:ident => $m:ident;)* }
        delegated { $($op:ident: $i:ident -> $o:ident;)* }
    ) => {
        #[async_trait::async_trait]
        impl S3 for ChecksumS3 {
            $(
                async fn $c(&self, req: S3Request<$ci>) -> S3Result<S3Response<$co>> {
                    self.$m(req).await
                }
            )*
            $(
                async fn $op(&self, req: S3Request<$i>) -> S3Result<S3Response<$o>> {
                    self.fs.$op(req).await
                }
            )*
        }
    };
}

impl_s3! {
checked {
    upload_part: UploadPartInput -> UploadPartOutput => checked_upload_part;
    list_parts: ListPartsInput -> ListPartsOutput => checked_list_parts;
    complete_multipart_upload: CompleteMultipartUploadInput -> CompleteMultipartUploadOutput
        => checked_complete_multipart_upload;
    abort_multipart_upload: AbortMultipartUploadInput -> AbortMultipartUploadOutput
        => forgetting_abort_multipart_upload;
}
delegated {
    copy_object: CopyObjectInput -> CopyObjectOutput;
    create_bucket: CreateBucketInput -> CreateBucketOutput;
    create_bucket_metadata_table_configuration: CreateBucketMetadataTableConfigurationInput -> CreateBucketMetadataTableConfigurationOutput;
    create_multipart_upload: CreateMultipartUploadInput -> CreateMultipartUploadOutput;
    create_session: CreateSessionInput -> CreateSessionOutput;
    delete_bucket: DeleteBucketInput -> DeleteBucketOutput;
    delete_bucket_analytics_configuration: DeleteBucketAnalyticsConfigurationInput -> DeleteBucketAnalyticsConfigurationOutput;
    delete_bucket_cors: DeleteBucketCorsInput -> DeleteBucketCorsOutput;
    delete_bucket_encryption: DeleteBucketEncryptionInput -> DeleteBucketEncryptionOutput;
    delete_bucket_intelligent_tiering_configuration: DeleteBucketIntelligentTieringConfigurationInput -> DeleteBucketIntelligentTieringConfigurationOutput;
    delete_bucket_inventory_configuration: DeleteBucketInventoryConfigurationInput -> DeleteBucketInventoryConfigurationOutput;
    delete_bucket_lifecycle: DeleteBucketLifecycleInput -> DeleteBucketLifecycleOutput;
    delete_bucket_metadata_table_configuration: DeleteBucketMetadataTableConfigurationInput -> DeleteBucketMetadataTableConfigurationOutput;
    delete_bucket_metrics_configuration: DeleteBucketMetricsConfigurationInput -> DeleteBucketMetricsConfigurationOutput;
    delete_bucket_ownership_controls: DeleteBucketOwnershipControlsInput -> DeleteBucketOwnershipControlsOutput;
    delete_bucket_policy: DeleteBucketPolicyInput -> DeleteBucketPolicyOutput;
    delete_bucket_replication: DeleteBucketReplicationInput -> DeleteBucketReplicationOutput;
    delete_bucket_tagging: DeleteBucketTaggingInput -> DeleteBucketTaggingOutput;
    delete_bucket_website: DeleteBucketWebsiteInput -> DeleteBucketWebsiteOutput;
    delete_object: DeleteObjectInput -> DeleteObjectOutput;
    delete_object_tagging: DeleteObjectTaggingInput -> DeleteObjectTaggingOutput;
    delete_objects: DeleteObjectsInput -> DeleteObjectsOutput;
    delete_public_access_block: DeletePublicAccessBlockInput -> DeletePublicAccessBlockOutput;
    get_bucket_accelerate_configuration: GetBucketAccelerateConfigurationInput -> GetBucketAccelerateConfigurationOutput;
    get_bucket_acl: GetBucketAclInput -> GetBucketAclOutput;
    get_bucket_analytics_configuration: GetBucketAnalyticsConfigurationInput -> GetBucketAnalyticsConfigurationOutput;
    get_bucket_cors: GetBucketCorsInput -> GetBucketCorsOutput;
    get_bucket_encryption: GetBucketEncryptionInput -> GetBucketEncryptionOutput;
    get_bucket_intelligent_tiering_configuration: GetBucketIntelligentTieringConfigurationInput -> GetBucketIntelligentTieringConfigurationOutput;
    get_bucket_inventory_configuration: GetBucketInventoryConfigurationInput -> GetBucketInventoryConfigurationOutput;
    get_bucket_lifecycle_configuration: GetBucketLifecycleConfigurationInput -> GetBucketLifecycleConfigurationOutput;
    get_bucket_location: GetBucketLocationInput -> GetBucketLocationOutput;
    get_bucket_logging: GetBucketLoggingInput -> GetBucketLoggingOutput;
    get_bucket_metadata_table_configuration: GetBucketMetadataTableConfigurationInput -> GetBucketMetadataTableConfigurationOutput;
    get_bucket_metrics_configuration: GetBucketMetricsConfigurationInput -> GetBucketMetricsConfigurationOutput;
    get_bucket_notification_configuration: GetBucketNotificationConfigurationInput -> GetBucketNotificationConfigurationOutput;
    get_bucket_ownership_controls: GetBucketOwnershipControlsInput -> GetBucketOwnershipControlsOutput;
    get_bucket_policy: GetBucketPolicyInput -> GetBucketPolicyOutput;
    get_bucket_policy_status: GetBucketPolicyStatusInput -> GetBucketPolicyStatusOutput;
    get_bucket_replication: GetBucketReplicationInput -> GetBucketReplicationOutput;
    get_bucket_request_payment: GetBucketRequestPaymentInput -> GetBucketRequestPaymentOutput;
    get_bucket_tagging: GetBucketTaggingInput -> GetBucketTaggingOutput;
    get_bucket_versioning: GetBucketVersioningInput -> GetBucketVersioningOutput;
    get_bucket_website: GetBucketWebsiteInput -> GetBucketWebsiteOutput;
    get_object: GetObjectInput -> GetObjectOutput;
    get_object_acl: GetObjectAclInput -> GetObjectAclOutput;
    get_object_attributes: GetObjectAttributesInput -> GetObjectAttributesOutput;
    get_object_legal_hold: GetObjectLegalHoldInput -> GetObjectLegalHoldOutput;
    get_object_lock_configuration: GetObjectLockConfigurationInput -> GetObjectLockConfigurationOutput;
    get_object_retention: GetObjectRetentionInput -> GetObjectRetentionOutput;
    get_object_tagging: GetObjectTaggingInput -> GetObjectTaggingOutput;
    get_object_torrent: GetObjectTorrentInput -> GetObjectTorrentOutput;
    get_public_access_block: GetPublicAccessBlockInput -> GetPublicAccessBlockOutput;
    head_bucket: HeadBucketInput -> HeadBucketOutput;
    head_object: HeadObjectInput -> HeadObjectOutput;
    list_bucket_analytics_configurations: ListBucketAnalyticsConfigurationsInput -> ListBucketAnalyticsConfigurationsOutput;
    list_bucket_intelligent_tiering_configurations: ListBucketIntelligentTieringConfigurationsInput -> ListBucketIntelligentTieringConfigurationsOutput;
    list_bucket_inventory_configurations: ListBucketInventoryConfigurationsInput -> ListBucketInventoryConfigurationsOutput;
    list_bucket_metrics_configurations: ListBucketMetricsConfigurationsInput -> ListBucketMetricsConfigurationsOutput;
    list_buckets: ListBucketsInput -> ListBucketsOutput;
    list_directory_buckets: ListDirectoryBucketsInput -> ListDirectoryBucketsOutput;
    list_multipart_uploads: ListMultipartUploadsInput -> ListMultipartUploadsOutput;
    list_object_versions: ListObjectVersionsInput -> ListObjectVersionsOutput;
    list_objects: ListObjectsInput -> ListObjectsOutput;
    list_objects_v2: ListObjectsV2Input -> ListObjectsV2Output;
    post_object: PostObjectInput -> PostObjectOutput;
    put_bucket_accelerate_configuration: PutBucketAccelerateConfigurationInput -> PutBucketAccelerateConfigurationOutput;
    put_bucket_acl: PutBucketAclInput -> PutBucketAclOutput;
    put_bucket_analytics_configuration: PutBucketAnalyticsConfigurationInput -> PutBucketAnalyticsConfigurationOutput;
    put_bucket_cors: PutBucketCorsInput -> PutBucketCorsOutput;
    put_bucket_encryption: PutBucketEncryptionInput -> PutBucketEncryptionOutput;
    put_bucket_intelligent_tiering_configuration: PutBucketIntelligentTieringConfigurationInput -> PutBucketIntelligentTieringConfigurationOutput;
    put_bucket_inventory_configuration: PutBucketInventoryConfigurationInput -> PutBucketInventoryConfigurationOutput;
    put_bucket_lifecycle_configuration: PutBucketLifecycleConfigurationInput -> PutBucketLifecycleConfigurationOutput;
    put_bucket_logging: PutBucketLoggingInput -> PutBucketLoggingOutput;
    put_bucket_metrics_configuration: PutBucketMetricsConfigurationInput -> PutBucketMetricsConfigurationOutput;
    put_bucket_notification_configuration: PutBucketNotificationConfigurationInput -> PutBucketNotificationConfigurationOutput;
    put_bucket_ownership_controls: PutBucketOwnershipControlsInput -> PutBucketOwnershipControlsOutput;
    put_bucket_policy: PutBucketPolicyInput -> PutBucketPolicyOutput;
    put_bucket_replication: PutBucketReplicationInput -> PutBucketReplicationOutput;
    put_bucket_request_payment: PutBucketRequestPaymentInput -> PutBucketRequestPaymentOutput;
    put_bucket_tagging: PutBucketTaggingInput -> PutBucketTaggingOutput;
    put_bucket_versioning: PutBucketVersioningInput -> PutBucketVersioningOutput;
    put_bucket_website: PutBucketWebsiteInput -> PutBucketWebsiteOutput;
    put_object: PutObjectInput -> PutObjectOutput;
    put_object_acl: PutObjectAclInput -> PutObjectAclOutput;
    put_object_legal_hold: PutObjectLegalHoldInput -> PutObjectLegalHoldOutput;
    put_object_lock_configuration: PutObjectLockConfigurationInput -> PutObjectLockConfigurationOutput;
    put_object_retention: PutObjectRetentionInput -> PutObjectRetentionOutput;
    put_object_tagging: PutObjectTaggingInput -> PutObjectTaggingOutput;
    put_public_access_block: PutPublicAccessBlockInput -> PutPublicAccessBlockOutput;
    restore_object: RestoreObjectInput -> RestoreObjectOutput;
    select_object_content: SelectObjectContentInput -> SelectObjectContentOutput;
    upload_part_copy: UploadPartCopyInput -> UploadPartCopyOutput;
    write_get_object_response: WriteGetObjectResponseInput -> WriteGetObjectResponseOutput;
}
}

/// Serves `s3` on a free loopback port, accepting SigV4 requests signed
/// with the test credentials ([`crate::sdk_config_at`]'s); returns its
/// endpoint (`http://127.0.0.1:port`). The server runs on the calling
/// test's runtime and stops with it.
pub async fn serve(s3: impl S3) -> String {
    let mut builder = s3s::service::S3ServiceBuilder::new(s3);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(
        crate::ACCESS_KEY,
        crate::SECRET_KEY,
    ));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind s3s: {e}"));
    let endpoint = format!(
        "http://{}",
        listener
            .local_addr()
            .unwrap_or_else(|e| panic!("s3s address: {e}"))
    );
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    endpoint
}

/// An `s3s-fs` S3 over a temporary directory, served on loopback for the
/// calling test (see [`serve`]); the directory goes when this is dropped.
pub struct LocalS3 {
    pub endpoint: String,
    /// Points at `endpoint` with the test credentials.
    pub sdk: SdkConfig,
    /// Path-style, and adding no checksum of its own (as `Repository`'s
    /// client): what a request declares is what S3 checks.
    pub s3: aws_sdk_s3::Client,
    _root: tempfile::TempDir,
}

impl LocalS3 {
    /// `s3s-fs` behind [`ChecksumS3`]: checks part checksums like AWS.
    pub async fn checksum_enforcing() -> Self {
        Self::start(|root| ChecksumS3::new(root).unwrap_or_else(|e| panic!("s3s-fs: {e:?}"))).await
    }

    /// Bare `s3s-fs`, which accepts any part whatever its declared
    /// checksum: what [`ChecksumS3`] is for.
    pub async fn plain_s3s_fs() -> Self {
        Self::start(|root| {
            s3s_fs::FileSystem::new(root).unwrap_or_else(|e| panic!("s3s-fs: {e:?}"))
        })
        .await
    }

    async fn start<T: S3>(s3: impl FnOnce(&Path) -> T) -> Self {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let endpoint = serve(s3(root.path())).await;
        let sdk = crate::sdk_config_at(&endpoint).await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .request_checksum_calculation(
                    aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
                )
                .build(),
        );
        Self {
            endpoint,
            sdk,
            s3,
            _root: root,
        }
    }
}
