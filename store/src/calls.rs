//! Counts the requests each SDK client actually transmits (retries included),
//! and records which AWS operations were called or presigned.
//!
//! AWS round trips are the physical cost of every operation, so the tests
//! assert an upper bound per operation and the benchmarks report them. The
//! operation names let the IAM contract test check each function's grants
//! against the calls its handler really makes.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

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
    operations: Arc<Mutex<BTreeSet<String>>>,
    /// Requests sent and not yet answered, all services together.
    in_flight: Arc<AtomicU64>,
    /// Sequential rounds: how often a request went out while none was in
    /// flight (two requests sent together are one round).
    rounds: Arc<AtomicU64>,
}

impl CallCounter {
    /// Sequential rounds of requests so far (all counted services): what a
    /// caller waits for, where [`Self::get`] counts what it pays for.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    pub fn get(&self) -> CallCount {
        CallCount {
            s3: self.s3.load(Ordering::Relaxed),
            dynamodb: self.dynamodb.load(Ordering::Relaxed),
        }
    }

    /// Every AWS operation sent or presigned so far (`HeadObject`,
    /// `TransactWriteItems`, …).
    pub fn operations(&self) -> BTreeSet<String> {
        self.operations
            .lock()
            .map(|o| o.clone())
            .unwrap_or_default()
    }

    fn counting(&self, sent: &Arc<AtomicU64>) -> Counting {
        Counting {
            sent: sent.clone(),
            operations: self.operations.clone(),
            in_flight: self.in_flight.clone(),
            rounds: self.rounds.clone(),
        }
    }

    pub fn s3_interceptor(&self) -> Counting {
        self.counting(&self.s3)
    }

    pub fn dynamodb_interceptor(&self) -> Counting {
        self.counting(&self.dynamodb)
    }

    /// For the other services' clients (CloudWatch, EventBridge): their
    /// operations are recorded (the IAM contract reads them), not counted.
    pub fn recording_interceptor(&self) -> Counting {
        Counting {
            sent: Arc::default(),
            operations: self.operations.clone(),
            in_flight: Arc::default(),
            rounds: Arc::default(),
        }
    }
}

#[derive(Debug)]
pub struct Counting {
    sent: Arc<AtomicU64>,
    operations: Arc<Mutex<BTreeSet<String>>>,
    in_flight: Arc<AtomicU64>,
    rounds: Arc<AtomicU64>,
}

/// Marks an attempt whose request was sent (and counted in flight).
#[derive(Debug, Clone, Copy)]
struct InFlight;

impl Storable for InFlight {
    type Storer = StoreReplace<Self>;
}

impl Intercept for Counting {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let (Some(metadata), Ok(mut operations)) =
            (cfg.load::<Metadata>(), self.operations.lock())
        {
            operations.insert(metadata.name().to_owned());
        }
        // Presigning runs the same pipeline but never transmits; its signature
        // goes into the query string instead of an Authorization header.
        if !context.request().uri().contains("X-Amz-Signature=") {
            self.sent.fetch_add(1, Ordering::Relaxed);
            if self.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
                self.rounds.fetch_add(1, Ordering::Relaxed);
            }
            cfg.interceptor_state().store_put(InFlight);
        }
        Ok(())
    }

    fn read_after_attempt(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<InFlight>().is_some() {
            cfg.interceptor_state().unset::<InFlight>();
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(())
    }
}
