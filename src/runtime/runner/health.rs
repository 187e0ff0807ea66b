//! The health of every watch: listing, up or down. The sync gate opens once every watch has
//! listed; readiness is reported false while any watch is down and true when all are back.
//!
//! A watch that resumes from its last resourceVersion says nothing when it succeeds (no event
//! until something changes), so a failed watch also counts as back once it has gone longer
//! than its longest backoff pause without another error ([`WatchHealth::tick`]): a watch that
//! still fails reports an error at least that often.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::watcher;
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The initial list has not completed yet.
    Listing,
    Up,
    /// Failing since the last error at `since`; `listed` once its initial list had completed.
    Down {
        listed: bool,
        since: Instant,
    },
}

struct Inner {
    watches: Mutex<Vec<(String, State)>>,
    gate: watch::Sender<bool>,
    report: Box<dyn Fn(bool) + Send + Sync>,
    last: Mutex<Option<bool>>,
}

/// Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct WatchHealth {
    inner: Arc<Inner>,
}

impl WatchHealth {
    /// `gate` is sent `true` once every watch has listed; `report` gets every change of
    /// "all watches listed and up".
    pub fn new(gate: watch::Sender<bool>, report: impl Fn(bool) + Send + Sync + 'static) -> Self {
        Self {
            inner: Arc::new(Inner {
                watches: Mutex::new(Vec::new()),
                gate,
                report: Box::new(report),
                last: Mutex::new(None),
            }),
        }
    }

    /// A watch to follow: call the returned closure on every event of its (backed-off) stream.
    pub fn track<K>(
        &self,
        what: &str,
    ) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) + Send + 'static {
        let index = {
            let mut watches = self.lock();
            watches.push((what.to_string(), State::Listing));
            watches.len() - 1
        };
        let health = self.clone();
        move |event| {
            health.update(index, event);
        }
    }

    fn update<K>(&self, index: usize, event: &Result<watcher::Event<K>, watcher::Error>) {
        let (listed, up) = {
            let mut watches = self.lock();
            let (what, state) = &mut watches[index];
            let new = match (*state, event) {
                (State::Listing, Err(_)) => State::Down {
                    listed: false,
                    since: Instant::now(),
                },
                (State::Up, Err(_)) => State::Down {
                    listed: true,
                    since: Instant::now(),
                },
                (State::Down { listed, .. }, Err(_)) => State::Down {
                    listed,
                    since: Instant::now(),
                },
                (_, Ok(watcher::Event::InitDone)) => State::Up,
                // Any answer after an error means the watch is back (a relist starts with Init).
                (State::Down { listed: true, .. }, Ok(_)) => State::Up,
                (State::Down { listed: false, .. }, Ok(_)) => State::Listing,
                (s, Ok(_)) => s,
            };
            if std::mem::discriminant(&new) != std::mem::discriminant(state)
                || matches!(new, State::Down { .. })
            {
                match (new, event) {
                    (State::Down { .. }, Err(e)) if !matches!(*state, State::Down { .. }) => {
                        warn!(watch = %what, error = %e, "watch down; retrying with backoff")
                    }
                    (State::Up, _) if matches!(*state, State::Down { .. }) => {
                        info!(watch = %what, "watch back")
                    }
                    _ => {}
                }
                *state = new;
            }
            Self::summary(&watches)
        };
        self.publish(listed, up);
    }

    /// Counts a failed watch as back when its last error is older than `quiet` (call it
    /// periodically; the runner uses the watch backoff's cap plus a margin).
    pub fn tick(&self, quiet: Duration) {
        let (listed, up) = {
            let mut watches = self.lock();
            for (what, state) in watches.iter_mut() {
                if let State::Down {
                    listed: true,
                    since,
                } = *state
                    && since.elapsed() > quiet
                {
                    info!(watch = %what, "watch back");
                    *state = State::Up;
                }
            }
            Self::summary(&watches)
        };
        self.publish(listed, up);
    }

    fn summary(watches: &[(String, State)]) -> (bool, bool) {
        let listed = watches
            .iter()
            .all(|(_, s)| matches!(s, State::Up | State::Down { listed: true, .. }));
        let up = watches.iter().all(|(_, s)| *s == State::Up);
        (listed, up)
    }

    fn publish(&self, listed: bool, up: bool) {
        if listed && !*self.inner.gate.borrow() {
            let _ = self.inner.gate.send(true);
        }
        let healthy = listed && up;
        let mut last = self.inner.last.lock().unwrap_or_else(|p| p.into_inner());
        if *last != Some(healthy) {
            *last = Some(healthy);
            (self.inner.report)(healthy);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, State)>> {
        self.inner.watches.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    type Ev = Result<watcher::Event<ConfigMap>, watcher::Error>;

    fn error() -> watcher::Error {
        watcher::Error::NoResourceVersion
    }

    #[test]
    fn gate_opens_after_every_list_and_readiness_follows_outages() {
        let (tx, rx) = watch::channel(false);
        let reports = Arc::new(Mutex::new(Vec::new()));
        let health = WatchHealth::new(tx, {
            let reports = reports.clone();
            move |up| reports.lock().unwrap().push(up)
        });
        let mut a = health.track::<ConfigMap>("a");
        let mut b = health.track::<ConfigMap>("b");
        let init: Ev = Ok(watcher::Event::Init);
        let done: Ev = Ok(watcher::Event::InitDone);
        a(&init);
        a(&done);
        assert!(!*rx.borrow(), "b has not listed yet");
        b(&Err(error()));
        assert!(!*rx.borrow(), "a failed list is not a list");
        b(&init);
        b(&done);
        assert!(*rx.borrow());
        a(&Err(error()));
        a(&Err(error()));
        a(&init);
        assert!(*rx.borrow(), "the gate stays open through an outage");
        assert_eq!(*reports.lock().unwrap(), vec![false, true, false, true]);
        // A watch that resumes silently counts as back after a quiet period without errors.
        b(&Err(error()));
        health.tick(Duration::from_secs(60));
        assert_eq!(reports.lock().unwrap().last(), Some(&false), "too early");
        std::thread::sleep(Duration::from_millis(20));
        health.tick(Duration::from_millis(10));
        assert_eq!(reports.lock().unwrap().last(), Some(&true));
    }
}
