//! The debouncer (pure, clock injected): every restart request for a workload that arrives
//! within one window of the first pending one joins it, and a workload is never restarted
//! twice within one window, whatever happens.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::crd::vault_secret::RolloutKind;

/// Default debounce window (`--rollout-restart-debounce`).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(5);

/// A workload in a namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Workload {
    pub namespace: String,
    pub kind: RolloutKind,
    pub name: String,
}

impl Workload {
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// The VaultSecret that asked for a restart (for events).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Requester {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// A restart to make now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restart {
    pub workload: Workload,
    /// The value written to the workload: the data hash of the latest request. The same value
    /// twice is no change for Kubernetes, so a retried patch never restarts twice.
    pub token: String,
    pub requested_by: BTreeSet<Requester>,
}

#[derive(Clone, Debug)]
struct Pending {
    due: Instant,
    token: String,
    requested_by: BTreeSet<Requester>,
}

/// Requests in, at most one restart per workload per window out. No I/O, no clock of its own.
#[derive(Debug)]
pub struct Debouncer {
    window: Duration,
    pending: BTreeMap<Workload, Pending>,
    last_restart: BTreeMap<Workload, Instant>,
}

impl Debouncer {
    /// Sets the window (the operator's setting, given with each request).
    pub fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    pub fn new(window: Duration) -> Self {
        Self {
            window,
            pending: BTreeMap::new(),
            last_restart: BTreeMap::new(),
        }
    }

    /// Asks for a restart of `workload` with `token`; returns when it will happen. The first
    /// request of a burst fixes the time (one window later, and at least one window after the
    /// workload's last restart); later requests join it with their token, without delaying it.
    pub fn request(
        &mut self,
        now: Instant,
        workload: Workload,
        token: &str,
        by: Requester,
    ) -> Instant {
        let earliest = self
            .last_restart
            .get(&workload)
            .map_or(now, |last| *last + self.window);
        let entry = self.pending.entry(workload).or_insert_with(|| Pending {
            due: (now + self.window).max(earliest),
            token: String::new(),
            requested_by: BTreeSet::new(),
        });
        entry.token = token.to_string();
        entry.requested_by.insert(by);
        entry.due
    }

    /// The restarts due at `now`, taken out of the queue and recorded as made at `now`.
    pub fn take_due(&mut self, now: Instant) -> Vec<Restart> {
        let due: Vec<Workload> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(w, _)| w.clone())
            .collect();
        due.into_iter()
            .map(|workload| {
                let p = self.pending.remove(&workload).expect("listed above");
                self.last_restart.insert(workload.clone(), now);
                Restart {
                    workload,
                    token: p.token,
                    requested_by: p.requested_by,
                }
            })
            .collect()
    }

    /// When the next restart is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.due).min()
    }

    /// Forgets restarts made more than one window ago (they no longer hold anything back).
    pub fn prune(&mut self, now: Instant) {
        let window = self.window;
        self.last_restart
            .retain(|_, last| now.saturating_duration_since(*last) < window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> Workload {
        Workload {
            namespace: "demo".into(),
            kind: RolloutKind::Deployment,
            name: "web".into(),
        }
    }

    fn by(name: &str) -> Requester {
        Requester {
            namespace: "demo".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    const W: Duration = Duration::from_secs(5);

    #[test]
    fn several_vault_secrets_within_a_window_restart_one_deployment_once() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(W);
        assert_eq!(d.request(t0, web(), "h-a", by("a")), t0 + W);
        assert_eq!(
            d.request(t0 + Duration::from_secs(1), web(), "h-b", by("b")),
            t0 + W
        );
        assert_eq!(
            d.request(t0 + Duration::from_secs(4), web(), "h-c", by("c")),
            t0 + W
        );
        assert!(
            d.take_due(t0 + Duration::from_secs(4)).is_empty(),
            "not yet"
        );
        let restarts = d.take_due(t0 + W);
        assert_eq!(restarts.len(), 1);
        assert_eq!(restarts[0].token, "h-c", "the latest data");
        assert_eq!(
            restarts[0].requested_by,
            BTreeSet::from([by("a"), by("b"), by("c")])
        );
        assert!(d.take_due(t0 + W * 10).is_empty(), "nothing left");
        assert_eq!(d.next_due(), None);
    }

    #[test]
    fn a_workload_is_never_restarted_twice_within_a_window() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(W);
        d.request(t0, web(), "1", by("a"));
        let first = t0 + W;
        assert_eq!(d.take_due(first).len(), 1);
        // A request right after the restart waits a full window after it.
        let due = d.request(first + Duration::from_millis(10), web(), "2", by("a"));
        assert!(due >= first + W, "{due:?}");
        // Whatever the pattern of requests and polls, restarts of one workload are a window apart.
        let mut restarts = vec![first];
        let mut now = first;
        for step in 0..400u64 {
            now += Duration::from_millis(137 + (step * 7919) % 900);
            if step % 3 != 0 {
                d.request(now, web(), &step.to_string(), by("b"));
            }
            for r in d.take_due(now) {
                assert_eq!(r.workload, web());
                restarts.push(now);
            }
        }
        assert!(restarts.len() > 10, "restarts happen: {}", restarts.len());
        for pair in restarts.windows(2) {
            assert!(pair[1] - pair[0] >= W, "{:?}", pair[1] - pair[0]);
        }
    }

    #[test]
    fn different_workloads_are_independent() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(W);
        let api = Workload {
            name: "api".into(),
            ..web()
        };
        let other_ns = Workload {
            namespace: "other".into(),
            ..web()
        };
        d.request(t0, web(), "x", by("a"));
        d.request(t0 + Duration::from_secs(2), api.clone(), "x", by("a"));
        d.request(t0, other_ns.clone(), "x", by("a"));
        let at_w: Vec<Workload> = d.take_due(t0 + W).into_iter().map(|r| r.workload).collect();
        assert_eq!(at_w, vec![web(), other_ns]);
        assert_eq!(d.next_due(), Some(t0 + Duration::from_secs(2) + W));
        assert_eq!(d.take_due(t0 + Duration::from_secs(7))[0].workload, api);
    }

    #[test]
    fn a_zero_window_restarts_at_once() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(Duration::ZERO);
        assert_eq!(d.request(t0, web(), "x", by("a")), t0);
        assert_eq!(d.take_due(t0).len(), 1);
    }
}
