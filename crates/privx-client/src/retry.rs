//! Backoff between retries of retryable failures: exponential from a base delay, with jitter,
//! honouring a server's `Retry-After` up to a cap.

use std::time::Duration;

use rand::Rng;

/// Longest single wait inside one call, whatever the server asks for; longer waits are the
/// caller's business (the error carries `retry_after`).
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(30);

/// The wait before retry number `attempt` (0 for the first retry): `base · 2^attempt`, capped
/// at [`MAX_WAIT`], with "equal jitter" (uniform in the upper half) so that many clients
/// retrying together spread out. A `Retry-After` wins when it is longer.
pub(crate) fn backoff(base: Duration, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exp = base
        .checked_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .unwrap_or(MAX_WAIT)
        .min(MAX_WAIT);
    let half = exp / 2;
    let jitter = if half.is_zero() {
        Duration::ZERO
    } else {
        rand::rng().random_range(Duration::ZERO..=half)
    };
    let computed = half + jitter;
    match retry_after {
        Some(after) => after.min(MAX_WAIT).max(computed),
        None => computed,
    }
}

/// Parses a `Retry-After` header: delay seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let now = jiff::Timestamp::now();
    let wait = at.duration_since(now);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_bounds() {
        let base = Duration::from_millis(100);
        for attempt in 0..4 {
            let full = base * 2u32.pow(attempt);
            for _ in 0..50 {
                let d = backoff(base, attempt, None);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn is_capped() {
        assert!(backoff(Duration::from_secs(10), 30, None) <= MAX_WAIT);
        assert!(backoff(Duration::from_secs(1), 1, Some(Duration::from_secs(3600))) <= MAX_WAIT);
    }

    #[test]
    fn honours_a_longer_retry_after() {
        let d = backoff(Duration::from_millis(10), 0, Some(Duration::from_secs(2)));
        assert_eq!(d, Duration::from_secs(2));
    }

    #[test]
    fn parses_both_retry_after_forms() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(120);
        let header = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&later)
            .unwrap();
        let parsed = parse_retry_after(&header).unwrap();
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
