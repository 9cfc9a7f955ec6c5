//! The deployment's storage made ready (the library's `bootstrap`): the
//! bucket with versioning on; the table with its `by-sha256` index, its
//! stream (the mirror's input) and TTL on `expires_at` (SPEC 3.3).

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    VersioningConfiguration,
};

use crate::clients::S3Client;
use crate::error::{Error, Result};
use crate::layout::{SHA256_INDEX, attr};
use crate::sdk_error::invalid_sdk_input;
use crate::table::Table;

/// Creates `bucket` when missing (in the client's region; no location
/// constraint in us-east-1) and turns its versioning on. Idempotent. AWS
/// calls: CreateBucket, PutBucketVersioning.
pub async fn create_bucket(s3: &S3Client, bucket: &str) -> Result<()> {
    let s3 = &s3.0;
    let region = s3.config().region().map(|r| r.as_ref().to_owned());
    let mut create = s3.create_bucket().bucket(bucket);
    if let Some(region) = region.filter(|r| r != "us-east-1") {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region.as_str()))
                .build(),
        );
    }
    match create.send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error().is_some_and(|e| {
                e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
            }) => {}
        Err(e) => return Err(crate::sdk_error::upstream("CreateBucket", e)),
    }
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map_err(|e| crate::sdk_error::upstream("PutBucketVersioning", e))?;
    Ok(())
}

impl Table {
    /// The table as DescribeTable describes it (`None`: no description).
    async fn describe(&self) -> Result<Option<aws_sdk_dynamodb::types::TableDescription>> {
        let described = self
            .ddb
            .describe_table()
            .table_name(&self.name)
            .send()
            .await
            .map_err(|e| crate::sdk_error::upstream("DescribeTable", e))?;
        Ok(described.table)
    }

    /// The table's stream (DescribeTable): what the local stream poller
    /// reads, as Lambda's event source mapping does on AWS.
    pub async fn stream_arn(&self) -> Result<String> {
        self.describe()
            .await?
            .and_then(|t| t.latest_stream_arn)
            .ok_or_else(|| Error::UpstreamError {
                operation: "DescribeTable",
                source: format!("table {} has no stream (bootstrap adds one)", self.name).into(),
            })
    }

    /// Creates the table when missing (keys `pk`/`sk`, the `by-sha256`
    /// index, the stream), waits until it is ACTIVE, adds the index or
    /// the stream to a table made before them (waiting again), then
    /// enables TTL on `expires_at`. Idempotent. AWS calls: CreateTable,
    /// DescribeTable every 500 ms (at most 120), UpdateTable when
    /// something is missing, UpdateTimeToLive.
    pub async fn create_if_missing(&self) -> Result<()> {
        let key = |name: &str, key_type| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
        };
        let def = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let created = self
            .ddb
            .create_table()
            .table_name(&self.name)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key(attr::PK, KeyType::Hash).map_err(invalid_sdk_input)?)
            .key_schema(key(attr::SK, KeyType::Range).map_err(invalid_sdk_input)?)
            .attribute_definitions(def(attr::PK).map_err(invalid_sdk_input)?)
            .attribute_definitions(def(attr::SK).map_err(invalid_sdk_input)?)
            .attribute_definitions(def(attr::SHA256).map_err(invalid_sdk_input)?)
            .global_secondary_indexes(sha256_index()?)
            .stream_specification(stream()?)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) => {}
            Err(e) => return Err(crate::sdk_error::upstream("CreateTable", e)),
        }
        // Wait until the table is usable (instant on emulators, seconds on AWS).
        for _ in 0..120 {
            let table = self.describe().await?;
            let active = table
                .as_ref()
                .and_then(|t| t.table_status())
                .is_some_and(|s| *s == aws_sdk_dynamodb::types::TableStatus::Active);
            let streamed = table
                .as_ref()
                .and_then(|t| t.stream_specification())
                .is_some_and(|s| s.stream_enabled());
            let indexed = table.as_ref().is_some_and(|t| {
                t.global_secondary_indexes()
                    .iter()
                    .any(|i| i.index_name() == Some(SHA256_INDEX))
            });
            if active && !indexed {
                // A table made before search: add the index, wait again.
                let create = aws_sdk_dynamodb::types::CreateGlobalSecondaryIndexAction::builder()
                    .index_name(SHA256_INDEX)
                    .key_schema(key(attr::SHA256, KeyType::Hash).map_err(invalid_sdk_input)?)
                    .key_schema(key(attr::PK, KeyType::Range).map_err(invalid_sdk_input)?)
                    .projection(
                        aws_sdk_dynamodb::types::Projection::builder()
                            .projection_type(aws_sdk_dynamodb::types::ProjectionType::KeysOnly)
                            .build(),
                    )
                    .build()
                    .map_err(invalid_sdk_input)?;
                self.ddb
                    .update_table()
                    .table_name(&self.name)
                    .attribute_definitions(def(attr::SHA256).map_err(invalid_sdk_input)?)
                    .attribute_definitions(def(attr::PK).map_err(invalid_sdk_input)?)
                    .global_secondary_index_updates(
                        aws_sdk_dynamodb::types::GlobalSecondaryIndexUpdate::builder()
                            .create(create)
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| crate::sdk_error::upstream("UpdateTable", e))?;
            } else if active && !streamed {
                // A table made before the mirror: add the stream, wait again.
                self.ddb
                    .update_table()
                    .table_name(&self.name)
                    .stream_specification(stream()?)
                    .send()
                    .await
                    .map_err(|e| crate::sdk_error::upstream("UpdateTable", e))?;
            } else if active {
                return self.enable_ttl().await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(Error::UpstreamError {
            operation: "DescribeTable",
            source: format!("table {} did not become ACTIVE", self.name).into(),
        })
    }

    /// TTL on `expires_at`; enabling it again is refused as a
    /// ValidationException ("TimeToLive is already enabled"), which is fine.
    async fn enable_ttl(&self) -> Result<()> {
        let ttl = TimeToLiveSpecification::builder()
            .attribute_name(attr::EXPIRES_AT)
            .enabled(true)
            .build()
            .map_err(invalid_sdk_input)?;
        match self
            .ddb
            .update_time_to_live()
            .table_name(&self.name)
            .time_to_live_specification(ttl)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error().is_some_and(|e| {
                    e.meta().code() == Some("ValidationException")
                        && e.meta()
                            .message()
                            .is_some_and(|m| m.contains("already enabled"))
                }) =>
            {
                Ok(())
            }
            Err(e) => Err(crate::sdk_error::upstream("UpdateTimeToLive", e)),
        }
    }
}

/// Rows by `sha256` (search by content across artifacts, SPEC 10.3): keys
/// only; a search reads the rows themselves back, strongly consistent.
fn sha256_index() -> Result<aws_sdk_dynamodb::types::GlobalSecondaryIndex> {
    let key = |name: &str, key_type| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .map_err(invalid_sdk_input)
    };
    aws_sdk_dynamodb::types::GlobalSecondaryIndex::builder()
        .index_name(SHA256_INDEX)
        .key_schema(key(attr::SHA256, KeyType::Hash)?)
        .key_schema(key(attr::PK, KeyType::Range)?)
        .projection(
            aws_sdk_dynamodb::types::Projection::builder()
                .projection_type(aws_sdk_dynamodb::types::ProjectionType::KeysOnly)
                .build(),
        )
        .build()
        .map_err(invalid_sdk_input)
}

/// The table's stream: both images, so that a REMOVE tells the mirror
/// what the row held (SPEC 3.3).
fn stream() -> Result<StreamSpecification> {
    StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewAndOldImages)
        .build()
        .map_err(invalid_sdk_input)
}
