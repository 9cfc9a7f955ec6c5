//! How a request that lost a race (an optimistic write, keys a batch read
//! left unprocessed) is tried again.

use std::time::Duration;

/// How many times an optimistic write is retried when a concurrent writer won.
pub const MAX_ATTEMPTS: u32 = 64;

/// `base` doubled `attempt` times (at most 64 times), plus up to as much
/// again at random: the pause before retrying a call refused for a reason
/// that passes (throttling).
pub fn growing(base: Duration, attempt: u32) -> Duration {
    let ms = (base.as_millis() as u64).saturating_mul(1 << attempt.min(6));
    Duration::from_millis(ms + rand::random_range(0..=ms))
}

/// Short jittered pause before retrying an optimistic write.
pub async fn backoff(attempt: u32) {
    let cap = 2u64.saturating_pow(attempt.min(6)).min(50);
    let ms = rand::random_range(1..=cap.max(2));
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
