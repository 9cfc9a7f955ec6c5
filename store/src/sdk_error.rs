//! AWS SDK failures as the core's [`Error`]: the one place that reads an
//! SDK error's code (the core names no SDK type).

use std::error::Error as StdError;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::error::{BoxError, Error};

/// Wraps an SDK failure, telling throttling apart from other failures.
pub fn upstream<E, R>(operation: &'static str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let throttled = err
        .as_service_error()
        .and_then(|e| e.code())
        .is_some_and(is_throttling);
    let source: BoxError = Box::new(err);
    if throttled {
        Error::Throttled { operation, source }
    } else {
        Error::UpstreamError { operation, source }
    }
}

/// The error codes by which S3 and DynamoDB say "slow down".
fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException"
            | "Throttling"
            | "ProvisionedThroughputExceededException"
            | "RequestLimitExceeded"
            | "SlowDown"
            | "TooManyRequestsException"
    )
}

/// Whether a single-item write (PutItem, UpdateItem, DeleteItem) failed on
/// its condition: the one place that reads DynamoDB's error code for it.
pub fn condition_failed<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .is_some_and(|e| e.code() == Some("ConditionalCheckFailedException"))
}

/// Whether a conditional single-item write applied: `false` when its
/// condition failed (someone else got there first, or the item is gone),
/// any other failure an upstream error of `operation`.
pub fn applied<O, E, R>(
    operation: &'static str,
    out: std::result::Result<O, SdkError<E, R>>,
) -> crate::error::Result<bool>
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match out {
        Ok(_) => Ok(true),
        Err(e) if condition_failed(&e) => Ok(false),
        Err(e) => Err(upstream(operation, e)),
    }
}

pub fn invalid_sdk_input(e: aws_sdk_dynamodb::error::BuildError) -> Error {
    Error::internal("build request", e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn throttling_codes_are_told_apart_from_other_failures() {
        for code in [
            "ThrottlingException",
            "SlowDown",
            "ProvisionedThroughputExceededException",
        ] {
            assert!(is_throttling(code), "{code}");
        }
        for code in [
            "ConditionalCheckFailedException",
            "InternalError",
            "NoSuchKey",
        ] {
            assert!(!is_throttling(code), "{code}");
        }
    }

    /// A conditional write: applied, refused on its condition (no error),
    /// or failed otherwise (throttled: 503; anything else: 502).
    #[test]
    #[allow(clippy::result_large_err)] // the SDK's own error type, as sent
    fn a_failed_condition_is_an_answer_and_other_failures_are_errors() {
        use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
        use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
        use aws_smithy_runtime_api::http::{Response, StatusCode};
        use aws_smithy_types::body::SdkBody;
        use aws_smithy_types::error::ErrorMetadata;
        let failed = |err: UpdateItemError| -> std::result::Result<(), _> {
            Err(SdkError::service_error(
                err,
                Response::new(StatusCode::try_from(400).unwrap(), SdkBody::empty()),
            ))
        };
        let code = |c: &str| ErrorMetadata::builder().code(c).build();
        assert!(
            applied(
                "UpdateItem",
                Ok::<(), SdkError<UpdateItemError, Response>>(())
            )
            .unwrap()
        );
        let refused = UpdateItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder()
                .meta(code("ConditionalCheckFailedException"))
                .build(),
        );
        assert!(!applied("UpdateItem", failed(refused)).unwrap());
        let throttled = UpdateItemError::generic(code("ThrottlingException"));
        assert_eq!(
            applied("UpdateItem", failed(throttled)).unwrap_err().kind(),
            ErrorKind::Throttled
        );
        let other = UpdateItemError::generic(code("InternalServerError"));
        assert_eq!(
            applied("UpdateItem", failed(other)).unwrap_err().kind(),
            ErrorKind::Upstream
        );
    }

    #[test]
    fn bugs_are_internal_500s_and_only_aws_failures_are_upstream() {
        assert_eq!(Error::internal("x", "x").kind(), ErrorKind::Internal);
    }
}
