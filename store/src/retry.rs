//! How a request that lost a race (an optimistic write, keys a batch read
//! left unprocessed) is tried again.

use std::time::Duration;

/// How many times an optimistic write is retried when a concurrent writer won.
pub const MAX_ATTEMPTS: u32 = 64;

/// Short jittered pause before retrying an optimistic write.
pub async fn backoff(attempt: u32) {
    let cap = 2u64.saturating_pow(attempt.min(6)).min(50);
    let ms = rand::random_range(1..=cap.max(2));
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
