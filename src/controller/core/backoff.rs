//! Per-object exponential backoff with jitter for failing reconciles: about 1 s, doubling, up
//! to 5 min; reset by the first success. And the backoff of the watches: 0.5 s doubling to 5 s,
//! jittered, so that every watch resumes within seconds of the API server's return.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;

pub const BASE: Duration = Duration::from_secs(1);
pub const CAP: Duration = Duration::from_secs(300);

/// The failures of each failing object, by controller (an object's key is unique within its
/// controller only: a VaultSecret `passwordpolicy/x` is not the PasswordPolicy `x`).
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<&'static str, HashMap<String, u32>>>,
}

impl Backoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, HashMap<String, u32>>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one more failure of `key` of `controller`: how long to wait before retrying,
    /// and how many objects of the controller are now waiting to retry.
    pub fn next_delay(&self, controller: &'static str, key: &str) -> (Duration, usize) {
        let (attempt, waiting) = {
            let mut failures = self.lock();
            let objects = failures.entry(controller).or_default();
            let n = objects.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            (*n, objects.len())
        };
        (jittered(delay_for_attempt(attempt)), waiting)
    }

    /// Forgets the failures of `key` (after a success or when the object is gone); how many
    /// objects of the controller are still waiting to retry.
    pub fn reset(&self, controller: &'static str, key: &str) -> usize {
        let mut failures = self.lock();
        let objects = failures.entry(controller).or_default();
        objects.remove(key);
        objects.len()
    }

    pub fn failures(&self, controller: &'static str, key: &str) -> u32 {
        self.lock()
            .get(controller)
            .and_then(|objects| objects.get(key))
            .copied()
            .unwrap_or(0)
    }
}

/// First and longest pause of a failing watch before it tries again.
pub const WATCH_BASE: Duration = Duration::from_millis(500);
pub const WATCH_CAP: Duration = Duration::from_secs(5);

/// The backoff of one watch (reset by the watcher's stream on its next success).
#[derive(Debug, Default)]
pub struct WatchBackoff {
    failures: u32,
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        let exp = (self.failures - 1).min(16);
        Some(jittered(WATCH_BASE.saturating_mul(1 << exp).min(WATCH_CAP)))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// The un-jittered delay of the n-th consecutive failure (1-based).
pub fn delay_for_attempt(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(16);
    BASE.saturating_mul(1 << exp).min(CAP)
}

/// Spreads a delay over [d/2, d] so that objects failing together do not retry together.
pub fn jittered(d: Duration) -> Duration {
    let half = d / 2;
    half + Duration::from_millis(rand::rng().random_range(0..=half.as_millis().max(1) as u64))
}

/// Spreads a refresh interval over ±10 % so that thousands of objects never align.
pub fn jittered_refresh(d: Duration) -> Duration {
    let spread = d.as_millis() as u64 / 10;
    let offset = rand::rng().random_range(0..=spread * 2);
    Duration::from_millis(d.as_millis() as u64 - spread + offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_to_five_minutes() {
        assert_eq!(delay_for_attempt(1), Duration::from_secs(1));
        assert_eq!(delay_for_attempt(2), Duration::from_secs(2));
        assert_eq!(delay_for_attempt(5), Duration::from_secs(16));
        assert_eq!(delay_for_attempt(9), Duration::from_secs(256));
        assert_eq!(delay_for_attempt(10), CAP);
        assert_eq!(delay_for_attempt(1000), CAP);
    }

    #[test]
    fn per_object_and_reset() {
        let b = Backoff::default();
        for _ in 0..3 {
            b.next_delay("c", "a");
        }
        assert_eq!(b.next_delay("c", "b").1, 2, "two objects of c wait");
        assert_eq!(b.next_delay("other", "a").1, 1, "another controller's a");
        assert_eq!(b.failures("c", "a"), 3);
        assert_eq!(b.failures("c", "b"), 1);
        assert_eq!(b.failures("other", "a"), 1);
        let (d, _) = b.next_delay("c", "a");
        assert!(
            d >= Duration::from_secs(4) && d <= Duration::from_secs(8),
            "{d:?}"
        );
        assert_eq!(b.reset("c", "a"), 1, "b still waits");
        assert_eq!(b.failures("c", "a"), 0);
        assert_eq!(b.failures("other", "a"), 1);
    }

    #[test]
    fn watch_backoff_is_bounded_jittered_and_resets() {
        use kube::runtime::utils::Backoff as _;
        let mut b = WatchBackoff::default();
        let delays: Vec<Duration> = (0..10).map(|_| b.next().unwrap()).collect();
        assert!(delays[0] >= Duration::from_millis(250) && delays[0] <= WATCH_BASE);
        assert!(delays.iter().all(|d| *d <= WATCH_CAP), "{delays:?}");
        assert!(delays[9] >= WATCH_CAP / 2, "{delays:?}");
        b.reset();
        assert!(b.next().unwrap() <= WATCH_BASE);
    }

    #[test]
    fn refresh_jitter_stays_within_ten_percent_and_varies() {
        let base = Duration::from_secs(3600);
        let samples: Vec<_> = (0..200).map(|_| jittered_refresh(base)).collect();
        assert!(
            samples
                .iter()
                .all(|d| *d >= Duration::from_secs(3240) && *d <= Duration::from_secs(3960))
        );
        let distinct: std::collections::HashSet<_> = samples.iter().collect();
        assert!(distinct.len() > 100, "jitter must spread objects out");
    }
}
