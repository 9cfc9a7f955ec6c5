//! The SDK clients the store's requests go through, built once per cold
//! start from the deployment's SDK configuration, each counting its calls.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_s3::presigning::PresigningConfig;

use crate::calls::CallCounter;
use crate::error::{Error, Result};
use crate::table::Table;

/// The S3 client (opaque above the store: S3 requests are built here).
#[derive(Debug, Clone)]
pub struct S3Client(pub(crate) aws_sdk_s3::Client);

/// The S3 client and the table, from one SDK configuration each (e.g. S3
/// and DynamoDB served by different emulators), their calls counted by
/// `calls`.
///
/// S3 emulators only speak path-style addressing, so path style is used
/// whenever an endpoint override is configured (SPEC 5's `AWS_ENDPOINT_URL*`).
pub fn connect(
    s3_sdk: &SdkConfig,
    dynamodb_sdk: &SdkConfig,
    calls: &CallCounter,
    table: &str,
) -> (S3Client, Table) {
    let s3_endpoint_overridden =
        s3_sdk.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let s3 = aws_sdk_s3::config::Builder::from(s3_sdk)
        .force_path_style(s3_endpoint_overridden)
        // Checksums are declared by the client and verified by S3; the SDK
        // must not add its own (a presigned PUT would carry one of no bytes).
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .interceptor(calls.s3_interceptor())
        .build();
    let ddb = aws_sdk_dynamodb::config::Builder::from(dynamodb_sdk)
        .interceptor(calls.dynamodb_interceptor())
        .build();
    (
        S3Client(aws_sdk_s3::Client::from_conf(s3)),
        Table::new(aws_sdk_dynamodb::Client::from_conf(ddb), table),
    )
}

/// A table client without call counting (the local stream poller's look at
/// the table's stream).
pub fn table(sdk: &SdkConfig, table: &str) -> Table {
    Table::new(aws_sdk_dynamodb::Client::new(sdk), table)
}

/// How long a presigned URL stays valid.
pub(crate) fn presigning(expires: Duration) -> Result<PresigningConfig> {
    PresigningConfig::expires_in(expires).map_err(|e| Error::internal("presigning config", e))
}
