//! One limit on the load the client puts on PrivX, shared by every clone of a
//! [`crate::PrivxClient`] (so by every worker of both controllers) and by every client built
//! from a clone of the same [`crate::PrivxConfig`] (the per-namespace identities): at most `max_concurrency`
//! HTTP requests in flight, and at most `rate` requests per second on average with bursts of up
//! to `burst` (a token bucket). Every HTTP attempt takes its turn: retries, 401 refreshes and
//! token grants included ([`crate::transport::Transport::send`] is the one place that sends).
//!
//! The bucket hands out reservations: a request that finds it empty takes the next free slot
//! (the count may go below zero) and sleeps until that slot, so waiters are served in order and
//! the lock is never held across a sleep.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::PrivxError;

/// Bounds on the requests sent to PrivX. `0` switches a bound off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Requests in flight at once (0: unbounded).
    pub max_concurrency: usize,
    /// Requests per second on average (0: unbounded).
    pub rate: f64,
    /// Requests that may start at once after a quiet period (at least 1 when `rate` is set).
    pub burst: u32,
}

/// Defaults (docs/configuration.md gives the measurements they come from).
pub const DEFAULT_MAX_CONCURRENCY: usize = 16;
pub const DEFAULT_RATE: f64 = 1000.0;
pub const DEFAULT_BURST: u32 = 50;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            rate: DEFAULT_RATE,
            burst: DEFAULT_BURST,
        }
    }
}

impl Limits {
    /// No bound at all.
    pub fn unlimited() -> Self {
        Self {
            max_concurrency: 0,
            rate: 0.0,
            burst: 0,
        }
    }

    pub(crate) fn check(&self) -> Result<(), PrivxError> {
        if !self.rate.is_finite() || self.rate < 0.0 {
            return Err(PrivxError::Config(format!(
                "rate limit {} is not a number of requests per second (0 or more)",
                self.rate
            )));
        }
        if self.rate > 0.0 && self.burst == 0 {
            return Err(PrivxError::Config(
                "rate limit burst must be at least 1 when a rate limit is set".into(),
            ));
        }
        if self.max_concurrency > Semaphore::MAX_PERMITS {
            return Err(PrivxError::Config(format!(
                "max concurrency {} is too large",
                self.max_concurrency
            )));
        }
        Ok(())
    }
}

/// One shared limit: [`Limits`] and the state behind them. Clones share the state, so every
/// client built from a configuration holding this (or a clone of it) takes its turns from
/// the same bucket and the same places in flight.
#[derive(Clone)]
pub struct Limit {
    limits: Limits,
    shared: Arc<Limiter>,
}

impl Limit {
    /// Fails on a negative or non-finite rate, or a rate without a burst.
    pub fn new(limits: Limits) -> Result<Self, PrivxError> {
        Ok(Self {
            limits,
            shared: Arc::new(Limiter::new(&limits)?),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Waits until the limits allow one more request; held while it is in flight.
    pub(crate) async fn turn(&self) -> Turn<'_> {
        self.shared.turn().await
    }
}

impl Default for Limit {
    fn default() -> Self {
        Self::new(Limits::default()).expect("the default limits are valid")
    }
}

impl std::fmt::Debug for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.limits.fmt(f)
    }
}

/// The state behind a [`Limit`].
pub(crate) struct Limiter {
    permits: Option<Semaphore>,
    bucket: Option<Mutex<Bucket>>,
}

struct Bucket {
    /// Seconds between two tokens.
    interval: f64,
    burst: f64,
    /// Tokens at `at`; negative when reservations are waiting.
    tokens: f64,
    at: Instant,
}

/// Held while one request is in flight.
pub(crate) struct Turn<'a> {
    _permit: Option<SemaphorePermit<'a>>,
}

impl Limiter {
    pub(crate) fn new(limits: &Limits) -> Result<Self, PrivxError> {
        limits.check()?;
        Ok(Self {
            permits: (limits.max_concurrency > 0).then(|| Semaphore::new(limits.max_concurrency)),
            bucket: (limits.rate > 0.0).then(|| {
                Mutex::new(Bucket {
                    interval: 1.0 / limits.rate,
                    burst: f64::from(limits.burst),
                    tokens: f64::from(limits.burst),
                    at: Instant::now(),
                })
            }),
        })
    }

    /// Waits for a place among the requests in flight, then for a token of the rate limit.
    pub(crate) async fn turn(&self) -> Turn<'_> {
        let permit = match &self.permits {
            Some(permits) => Some(
                permits
                    .acquire()
                    .await
                    .expect("the semaphore is never closed"),
            ),
            None => None,
        };
        if let Some(wait) = self.reserve(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        Turn { _permit: permit }
    }

    /// Takes a token at `now`; how long to wait for it when the bucket is empty.
    fn reserve(&self, now: Instant) -> Option<Duration> {
        let mut bucket = self.bucket.as_ref()?.lock().expect("bucket lock");
        let now = now.max(bucket.at);
        let refilled = now.duration_since(bucket.at).as_secs_f64() / bucket.interval;
        bucket.tokens = (bucket.tokens + refilled).min(bucket.burst);
        bucket.at = now;
        bucket.tokens -= 1.0;
        (bucket.tokens < 0.0).then(|| Duration::from_secs_f64(-bucket.tokens * bucket.interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_limits_are_refused_with_the_setting_named() {
        let bad = |rate: f64, burst: u32| {
            Limiter::new(&Limits {
                max_concurrency: 1,
                rate,
                burst,
            })
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
        };
        assert!(bad(-1.0, 1).contains("rate limit"));
        assert!(bad(f64::NAN, 1).contains("rate limit"));
        assert!(bad(10.0, 0).contains("burst"));
        assert!(bad(0.0, 0).is_empty(), "no rate: no burst needed");
    }

    #[test]
    fn the_bucket_lets_a_burst_through_then_one_per_interval() {
        let start = Instant::now();
        let limiter = Limiter::new(&Limits {
            max_concurrency: 0,
            rate: 10.0,
            burst: 3,
        })
        .unwrap();
        // The burst needs no wait; the next ones queue at 100 ms each, in order.
        let waits: Vec<Option<Duration>> = (0..5).map(|_| limiter.reserve(start)).collect();
        assert_eq!(waits[..3], [None, None, None]);
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis()).unwrap_or(0);
        assert_eq!(ms(waits[3]), 100);
        assert_eq!(ms(waits[4]), 200);
        // A quiet period refills at most the burst.
        let later = start + Duration::from_secs(10);
        let waits: Vec<Option<Duration>> = (0..4).map(|_| limiter.reserve(later)).collect();
        assert_eq!(waits.iter().filter(|w| w.is_none()).count(), 3);
    }
}
