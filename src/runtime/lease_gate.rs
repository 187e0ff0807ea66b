//! The lease gate: until when this replica may write, and the check before every write.
//!
//! The elector ([`super::leader`]) opens the gate on each successful renewal until
//! `start of that renewal + lease duration − grace` on the monotonic clock, and closes it when
//! leadership is lost or given up. Every write the controllers make asks the gate at the moment
//! of sending, reading the clock then: a Kubernetes write through [`LeaseGate::kube_client`]
//! (anything but GET/HEAD/OPTIONS; the Lease itself excepted) and a PrivX write through
//! [`LeaseGate::privx_gate`] (`PrivxClient::with_write_gate`). So a leader frozen past its lease
//! (SIGSTOP, a long GC pause, a suspended VM) writes nothing when it resumes, even before its
//! elector has run again, and a standby that took the Lease over after its expiry never
//! overlaps with it, provided the nodes' clocks differ by less than the grace.
//!
//! Owns no task and no Lease request. What it cannot cover: a request that passed the gate and
//! was then frozen before reaching the wire (a window of one poll, not of a reconcile).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use kube::client::Body;

/// The clock-skew margin taken off the lease: a fifth of the lease duration, at most 2 s
/// (3 s of a 15 s lease is generous for NTP-synchronised nodes; a 1 s test lease keeps 0.8 s).
pub fn grace_for(lease_duration: Duration) -> Duration {
    (lease_duration / 5).min(Duration::from_secs(2))
}

/// Whether this replica may write now. Cheap to clone; clones share the state.
#[derive(Clone, Default)]
pub struct LeaseGate {
    inner: Arc<GateState>,
}

#[derive(Default)]
struct GateState {
    /// `None`: closed (never led, or leadership lost).
    valid_until: Mutex<Option<Instant>>,
    refused: AtomicU64,
}

impl std::fmt::Debug for LeaseGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseGate")
            .field("open", &self.is_open())
            .finish_non_exhaustive()
    }
}

impl LeaseGate {
    /// A closed gate (nothing may be written until the first renewal).
    pub fn closed() -> Self {
        Self::default()
    }

    /// A renewal that started at `started` succeeded: writes are allowed until
    /// `started + lease_duration − grace`.
    pub fn renewed(&self, started: Instant, lease_duration: Duration, grace: Duration) {
        let until = started + lease_duration.saturating_sub(grace);
        let mut valid_until = self.inner.valid_until.lock().expect("lease gate lock");
        // A late answer to an older renewal never shortens a newer validity.
        if valid_until.is_none_or(|current| until > current) {
            *valid_until = Some(until);
        }
    }

    /// Leadership is lost or given up: no more writes.
    pub fn close(&self) {
        *self.inner.valid_until.lock().expect("lease gate lock") = None;
    }

    /// Whether a write may go now (the clock is read now).
    pub fn is_open(&self) -> bool {
        self.is_open_at(Instant::now())
    }

    pub fn is_open_at(&self, now: Instant) -> bool {
        self.valid_until().is_some_and(|until| now < until)
    }

    /// Until when writes are allowed, if at all.
    pub fn valid_until(&self) -> Option<Instant> {
        *self.inner.valid_until.lock().expect("lease gate lock")
    }

    /// Writes refused so far (Kubernetes and PrivX).
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Asks the gate for one write, counting a refusal.
    fn admit(&self) -> bool {
        let open = self.is_open();
        if !open {
            self.inner.refused.fetch_add(1, Ordering::Relaxed);
        }
        open
    }

    /// The hook for `PrivxClient::with_write_gate`.
    pub fn privx_gate(&self) -> privx_client::WriteGate {
        let gate = self.clone();
        Arc::new(move || gate.admit())
    }

    /// `client`, with every write checked against this gate when it is sent.
    pub fn kube_client(&self, client: kube::Client) -> kube::Client {
        let namespace = client.default_namespace().to_string();
        kube::Client::new(
            Gated {
                inner: client,
                gate: self.clone(),
            },
            namespace,
        )
    }
}

/// Whether a Kubernetes request changes something the gate guards (the Lease is the elector's).
fn guarded(method: &Method, path: &str) -> bool {
    let read = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    !read && !path.starts_with("/apis/coordination.k8s.io/")
}

/// A Kubernetes write refused by the lease gate (never sent).
#[derive(Debug, thiserror::Error)]
#[error("{method} {path} not sent: this replica no longer holds a valid leader lease")]
pub struct WriteRefused {
    method: Method,
    path: String,
}

/// The tower service behind a gated client: asks the gate, then sends through the inner client.
#[derive(Clone)]
struct Gated {
    inner: kube::Client,
    gate: LeaseGate,
}

impl tower::Service<Request<Body>> for Gated {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, kube::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let client = self.inner.clone();
        let gate = self.gate.clone();
        Box::pin(async move {
            // Asked when the request goes, not when it was built.
            if guarded(request.method(), request.uri().path()) && !gate.admit() {
                let refused = WriteRefused {
                    method: request.method().clone(),
                    path: request.uri().path().to_string(),
                };
                tracing::warn!(error = %refused, "Kubernetes write refused by the lease gate");
                return Err(kube::Error::Service(Box::new(refused)));
            }
            client.send(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(15);

    #[test]
    fn grace_is_a_fifth_of_the_lease_at_most_two_seconds() {
        assert_eq!(grace_for(LEASE), Duration::from_secs(2));
        assert_eq!(grace_for(Duration::from_secs(5)), Duration::from_secs(1));
        assert_eq!(
            grace_for(Duration::from_secs(1)),
            Duration::from_millis(200)
        );
    }

    #[test]
    fn closed_until_the_first_renewal_then_valid_until_lease_minus_grace() {
        let gate = LeaseGate::closed();
        let t0 = Instant::now();
        assert!(!gate.is_open_at(t0));
        gate.renewed(t0, LEASE, grace_for(LEASE));
        assert!(gate.is_open_at(t0));
        assert!(gate.is_open_at(t0 + Duration::from_secs(12)));
        assert!(
            !gate.is_open_at(t0 + Duration::from_secs(13)),
            "grace taken off"
        );
        assert!(!gate.is_open_at(t0 + Duration::from_secs(60)));
    }

    #[test]
    fn a_paused_leader_is_refused_when_it_resumes() {
        // Valid right after a renewal (a whole lease of margin, however slow the machine).
        let gate = LeaseGate::closed();
        gate.renewed(Instant::now(), LEASE, grace_for(LEASE));
        assert!(gate.privx_gate()(), "valid right after the renewal");
        assert_eq!(gate.refused(), 0);
        // A SIGSTOPped leader resumes with its last renewal more than a lease in the past: the
        // first write is refused. The renewal is dated back instead of sleeping past a short
        // lease (no timing window for a loaded machine to miss).
        let paused = LeaseGate::closed();
        let before_pause = Instant::now()
            .checked_sub(LEASE + Duration::from_secs(1))
            .expect("the clock has run longer than a lease");
        paused.renewed(before_pause, LEASE, grace_for(LEASE));
        assert!(!paused.privx_gate()(), "expired while paused");
        assert_eq!(paused.refused(), 1);
    }

    #[test]
    fn closing_refuses_at_once_and_an_older_renewal_never_shortens() {
        let gate = LeaseGate::closed();
        let t0 = Instant::now();
        gate.renewed(t0 + Duration::from_secs(5), LEASE, Duration::ZERO);
        gate.renewed(t0, LEASE, Duration::ZERO);
        assert_eq!(gate.valid_until(), Some(t0 + Duration::from_secs(20)));
        gate.close();
        assert!(!gate.is_open_at(t0));
        assert_eq!(gate.valid_until(), None);
    }

    #[test]
    fn only_writes_other_than_the_lease_are_guarded() {
        let pod = "/api/v1/namespaces/a/secrets/x";
        assert!(!guarded(&Method::GET, pod));
        assert!(!guarded(&Method::HEAD, pod));
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(guarded(&m, pod), "{m}");
            assert!(!guarded(
                &m,
                "/apis/coordination.k8s.io/v1/namespaces/ops/leases/privx-operator"
            ));
        }
    }
}
