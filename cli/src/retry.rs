//! When and how long to wait before trying a request again: connection
//! errors, 429 and 5xx, with exponential backoff and full jitter, honouring
//! `Retry-After`; never a 4xx other than 429.

use std::time::Duration;

/// Bounded exponential backoff.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Retries after the first attempt.
    pub retries: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Policy {
    pub fn new(retries: u32) -> Self {
        Self {
            retries,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(20),
        }
    }

    /// The wait before retry number `attempt` (0-based): a random duration up
    /// to `base * 2^attempt` (capped), or what the server asked for with
    /// `Retry-After` (itself capped at [`RETRY_AFTER_CAP`], so a bad header
    /// cannot stall a pipeline).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(RETRY_AFTER_CAP);
        }
        let ceiling = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.cap);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// Whether an HTTP status is worth another try.
pub fn retryable_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// The longest wait a `Retry-After` gets: a server asking for longer is
/// waited for this long, then asked again.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(120);

/// `Retry-After`: seconds, or an HTTP date (RFC 9110 10.2.3: `Wed, 21 Oct
/// 2015 07:28:00 GMT`), the wait until then from `now` (none once past).
/// Anything else is treated as absent: the backoff applies.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let now = time::OffsetDateTime::from(now);
    Some((at - now).try_into().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_429_and_5xx_are_retried() {
        for s in [429, 500, 502, 503, 504] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [200, 204, 302, 400, 403, 404, 409, 412, 413] {
            assert!(!retryable_status(s), "{s}");
        }
    }

    #[test]
    fn backoff_grows_exponentially_within_its_cap() {
        let policy = Policy {
            retries: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for attempt in 0..10 {
            let ceiling = Duration::from_millis(100 * 2u64.pow(attempt)).min(policy.cap);
            for _ in 0..50 {
                assert!(policy.delay(attempt, None) <= ceiling);
            }
        }
    }

    #[test]
    fn retry_after_is_honoured_but_capped() {
        let policy = Policy::new(5);
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        // Longer than the backoff's own cap, up to the header's.
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(45))),
            Duration::from_secs(45)
        );
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(3600))),
            RETRY_AFTER_CAP
        );
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_450); // 07:27:30
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        // The date form (it was ignored): the wait until then, none once past.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
