//! Counts the requests each SDK client actually transmits (retries included).
//!
//! AWS round trips are the physical cost of every operation, so the tests
//! assert an upper bound per operation and the benchmarks report them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Requests sent so far, per service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCount {
    pub s3: u64,
    pub dynamodb: u64,
}

impl CallCount {
    pub fn total(self) -> u64 {
        self.s3 + self.dynamodb
    }
}

impl std::ops::Sub for CallCount {
    type Output = CallCount;
    fn sub(self, rhs: Self) -> Self {
        Self {
            s3: self.s3 - rhs.s3,
            dynamodb: self.dynamodb - rhs.dynamodb,
        }
    }
}

/// Shared counters; clone freely.
#[derive(Debug, Clone, Default)]
pub struct CallCounter {
    s3: Arc<AtomicU64>,
    dynamodb: Arc<AtomicU64>,
}

impl CallCounter {
    pub fn get(&self) -> CallCount {
        CallCount {
            s3: self.s3.load(Ordering::Relaxed),
            dynamodb: self.dynamodb.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn s3_interceptor(&self) -> Counting {
        Counting(self.s3.clone())
    }

    pub(crate) fn dynamodb_interceptor(&self) -> Counting {
        Counting(self.dynamodb.clone())
    }
}

#[derive(Debug)]
pub(crate) struct Counting(Arc<AtomicU64>);

impl Intercept for Counting {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Presigning runs the same pipeline but never transmits; its signature
        // goes into the query string instead of an Authorization header.
        if !context.request().uri().contains("X-Amz-Signature=") {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}
