//! Leader election through a `coordination.k8s.io/v1` Lease in the operator's namespace, so
//! that with several replicas exactly one reconciles.
//!
//! Owns the Lease object and the leader/standby state it implies. Must not start or stop the
//! controllers itself: it reports leadership on a `watch` channel and the runtime acts on it.
//!
//! Safety rests on the API server's optimistic concurrency: a Lease is only ever created
//! (which fails if it exists) or replaced with the `resourceVersion` that was read (which
//! fails with 409 if anyone wrote in between). Of two candidates racing for a free or expired
//! Lease, at most one write succeeds.
//!
//! And on the [`LeaseGate`]: each successful renewal opens it until the renewal's start plus
//! the lease duration minus a clock-skew grace ([`LeaseConfig::grace`]) on the monotonic clock;
//! losing or giving up the Lease closes it. Every controller write asks it when it is sent, so
//! a leader frozen past its lease writes nothing when it resumes.
//!
//! Why not `kube-lease-manager` (0.13 targets kube 5): it reports leadership on a channel that
//! its own task updates from the wall clock, and offers no "valid until" a write can check at
//! the moment it is sent — a resumed leader's channel still says "leading" until that task runs.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::lease_gate::{LeaseGate, grace_for};

/// Why a Lease request failed (a lost race is not an error, see [`Attempt::Conflict`]).
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("{action} Lease {namespace}/{name}: {source}")]
    Kube {
        action: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{action} Lease {namespace}/{name}: no answer within {}", human(.timeout))]
    Timeout {
        action: &'static str,
        namespace: String,
        name: String,
        timeout: Duration,
    },
}

/// A duration in human units for messages: `250ms`, `1.5s`, `10s`, `2m30s`.
pub fn human(d: &Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() != 0 && d.as_secs() < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        privx_client::duration::format_go(Duration::from_secs(d.as_secs()))
    }
}

/// Which Lease to hold, as whom, and for how long.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// The operator's namespace.
    pub namespace: String,
    /// The Lease's name (`--lease-name`).
    pub name: String,
    /// This replica's identity, unique among candidates (see [`default_identity`]).
    pub identity: String,
    /// How long the Lease is valid without renewal (`--lease-duration`); a standby takes
    /// over once it has run out.
    pub lease_duration: Duration,
}

impl LeaseConfig {
    /// The leader renews this often, so two renewals may fail before the Lease runs out.
    pub fn renew_interval(&self) -> Duration {
        self.lease_duration / 3
    }

    /// A leader that could not renew for this long gives leadership up. It is shorter than
    /// the lease duration, so the old leader stops before a standby may take over, with a
    /// third of the duration to spare for clock skew between the nodes.
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }

    /// The clock-skew margin of the [`LeaseGate`]: writes stop this long before the Lease
    /// expires as the other nodes see it (a fifth of the duration, at most 2 s).
    pub fn grace(&self) -> Duration {
        grace_for(self.lease_duration)
    }

    /// How often a standby (or a leader whose renewal failed) tries again.
    pub fn retry_period(&self) -> Duration {
        (self.lease_duration / 5).max(Duration::from_millis(100))
    }

    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}

/// The identity of this replica: the pod name (`POD_NAME`, else `HOSTNAME`, else the host
/// name) plus a random suffix, so that a restarted pod with the same name is a new candidate.
pub fn default_identity() -> String {
    use rand::Rng;
    let base = ["POD_NAME", "HOSTNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "privx-operator".to_owned());
    let suffix: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(6)
        .map(|b| char::from(b).to_ascii_lowercase())
        .collect();
    format!("{base}-{suffix}")
}

/// The outcome of one [`LeaderElector::try_acquire_or_renew`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// This replica holds the Lease (acquired or renewed just now).
    Leading,
    /// Another replica holds an unexpired Lease.
    Following { holder: String },
    /// Someone else wrote the Lease between our read and our write; we do not hold it.
    Conflict,
}

/// Competes for the Lease and keeps it while leading.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    gate: LeaseGate,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            gate: LeaseGate::closed(),
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// The gate this elector opens while it holds the Lease; give it to every writer.
    pub fn gate(&self) -> LeaseGate {
        self.gate.clone()
    }

    /// Competes until `shutdown` fires, sending `true` on `on_change` when this replica
    /// becomes leader and `false` when it stops being one.
    ///
    /// Leadership is lost when another replica holds the Lease or when renewal failed for
    /// [`LeaseConfig::renew_deadline`]. When `shutdown` fires the elector sends `false` and
    /// steps down by clearing the holder, so a standby takes over at once. Cancel `shutdown`
    /// only after in-flight reconciles have drained: until then this replica still leads.
    pub async fn run(self, on_change: watch::Sender<bool>, shutdown: CancellationToken) {
        let mut leading = false;
        let mut last_renewal = Instant::now();
        on_change.send_replace(false);
        loop {
            let attempt_started = Instant::now();
            let attempt = if leading {
                // A leader must know it lost the lease before a standby may take it, so a
                // slow renewal is cut off at the deadline.
                self.renew_before(last_renewal + self.config.renew_deadline())
                    .await
            } else {
                self.try_acquire_or_renew().await
            };
            match attempt {
                Ok(Attempt::Leading) => {
                    last_renewal = attempt_started;
                    self.gate.renewed(
                        attempt_started.into_std(),
                        self.config.lease_duration,
                        self.config.grace(),
                    );
                    if !leading {
                        leading = true;
                        tracing::info!(
                            identity = %self.config.identity,
                            lease = %self.config.name,
                            "acquired the leader lease"
                        );
                        on_change.send_replace(true);
                    }
                }
                Ok(Attempt::Following { holder }) => {
                    self.gate.close();
                    if leading {
                        leading = false;
                        tracing::warn!(%holder, "lost the leader lease to another replica");
                        on_change.send_replace(false);
                    } else {
                        tracing::debug!(%holder, "standing by: another replica leads");
                    }
                }
                Ok(Attempt::Conflict) => {
                    tracing::debug!("the leader lease changed while we wrote it; trying again");
                }
                Err(error) => {
                    tracing::warn!(error = %error, leading, "leader lease request failed");
                }
            }
            if leading && last_renewal.elapsed() >= self.config.renew_deadline() {
                leading = false;
                self.gate.close();
                tracing::error!(
                    deadline = ?self.config.renew_deadline(),
                    "could not renew the leader lease in time; stepping back to standby"
                );
                on_change.send_replace(false);
            }
            let renewed_now = leading && last_renewal == attempt_started;
            let mut wake_at = attempt_started
                + if renewed_now {
                    self.config.renew_interval()
                } else {
                    self.config.retry_period()
                };
            if leading {
                // Never sleep past the deadline: the next check must come in time.
                wake_at = wake_at.min(last_renewal + self.config.renew_deadline());
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(wake_at) => {}
            }
        }
        if leading {
            self.gate.close();
            on_change.send_replace(false);
            match self.step_down().await {
                Ok(()) => tracing::info!("stepped down from the leader lease"),
                // The Lease then simply expires and a standby takes over after its duration.
                Err(error) => {
                    tracing::warn!(error = %error, "could not step down from the leader lease")
                }
            }
        }
    }

    /// One round: reads the Lease, then creates it, renews it (we hold it) or takes it over
    /// (free or expired). Never overwrites an unexpired Lease of another holder.
    pub async fn try_acquire_or_renew(&self) -> Result<Attempt, LeaderError> {
        let now = jiff::Timestamp::now();
        let Some(mut lease) = self
            .bounded("reading", self.api.get_opt(&self.config.name))
            .await?
        else {
            return self.create(now).await;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        match holder {
            Some(holder) if holder == self.config.identity => {}
            Some(holder) if !self.is_expired(spec, now) => {
                return Ok(Attempt::Following { holder });
            }
            previous => {
                if let Some(previous) = previous {
                    tracing::info!(%previous, "the leader lease has expired; taking it over");
                }
                spec.holder_identity = Some(self.config.identity.clone());
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(self.config.lease_duration_seconds());
        self.replace(&lease, "writing").await
    }

    async fn renew_before(&self, deadline: Instant) -> Result<Attempt, LeaderError> {
        match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
            Ok(attempt) => attempt,
            // The configured deadline, not what was left of it (which may be nothing: the
            // message once read "no answer within 0ns").
            Err(_) => Err(LeaderError::Timeout {
                action: "renewing",
                namespace: self.config.namespace.clone(),
                name: self.config.name.clone(),
                timeout: self.config.renew_deadline(),
            }),
        }
    }

    /// Gives the Lease up if this replica holds it, so a standby need not wait for expiry.
    pub async fn step_down(&self) -> Result<(), LeaderError> {
        // A conflict means the Lease changed under us; read it again and re-check the holder.
        for _ in 0..3 {
            let Some(mut lease) = self
                .bounded("reading", self.api.get_opt(&self.config.name))
                .await?
            else {
                return Ok(());
            };
            let Some(spec) = lease.spec.as_mut() else {
                return Ok(());
            };
            if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.acquire_time = None;
            spec.renew_time = None;
            if self.replace(&lease, "releasing").await? == Attempt::Leading {
                return Ok(());
            }
        }
        Ok(())
    }

    fn is_expired(&self, spec: &LeaseSpec, now: jiff::Timestamp) -> bool {
        let Some(MicroTime(renewed)) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())
        else {
            // Held but never renewed: nothing proves the holder is alive.
            return true;
        };
        let duration_seconds = spec
            .lease_duration_seconds
            .unwrap_or_else(|| self.config.lease_duration_seconds());
        let valid_until = renewed
            .checked_add(jiff::SignedDuration::from_secs(i64::from(duration_seconds)))
            .unwrap_or(jiff::Timestamp::MAX);
        valid_until < now
    }

    async fn create(&self, now: jiff::Timestamp) -> Result<Attempt, LeaderError> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.config.lease_duration_seconds()),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        let created = self
            .bounded_attempt("creating", self.api.create(&PostParams::default(), &lease))
            .await?;
        Ok(created.map_or(Attempt::Conflict, |_| Attempt::Leading))
    }

    /// Replaces the Lease with the `resourceVersion` it was read with. `Leading` means the
    /// write went through, `Conflict` that someone else wrote first.
    async fn replace(&self, lease: &Lease, action: &'static str) -> Result<Attempt, LeaderError> {
        let written = self
            .bounded_attempt(
                action,
                self.api
                    .replace(&lease.name_any(), &PostParams::default(), lease),
            )
            .await?;
        Ok(written.map_or(Attempt::Conflict, |_| Attempt::Leading))
    }

    /// A write that may lose a race: `Ok(None)` on 409 (conflict or already exists).
    async fn bounded_attempt<T>(
        &self,
        action: &'static str,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<Option<T>, LeaderError> {
        let outcome = self
            .bounded(action, async {
                match request.await {
                    Ok(value) => Ok(Some(value)),
                    Err(kube::Error::Api(status))
                        if status.is_conflict() || status.is_already_exists() =>
                    {
                        Ok(None)
                    }
                    Err(error) => Err(error),
                }
            })
            .await?;
        Ok(outcome)
    }

    /// Runs one API request with a time limit, so a hanging API server cannot keep a leader
    /// believing it still leads past its renew deadline.
    async fn bounded<T>(
        &self,
        action: &'static str,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, LeaderError> {
        let timeout = self.config.renew_interval().max(Duration::from_secs(1));
        match tokio::time::timeout(timeout, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(LeaderError::Kube {
                action,
                namespace: self.config.namespace.clone(),
                name: self.config.name.clone(),
                source,
            }),
            Err(_) => Err(LeaderError::Timeout {
                action,
                namespace: self.config.namespace.clone(),
                name: self.config.name.clone(),
                timeout,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_fit_inside_the_lease_duration() {
        let config = LeaseConfig {
            namespace: "ops".into(),
            name: "lease".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(15),
        };
        assert_eq!(config.renew_interval(), Duration::from_secs(5));
        assert_eq!(human(&Duration::from_millis(250)), "250ms");
        assert_eq!(human(&Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(&Duration::from_secs(10)), "10s");
        assert_eq!(human(&Duration::from_secs(150)), "2m30s");
        let e = LeaderError::Timeout {
            action: "renewing",
            namespace: "ns".into(),
            name: "l".into(),
            timeout: config.renew_deadline(),
        };
        assert_eq!(e.to_string(), "renewing Lease ns/l: no answer within 10s");
        assert_eq!(config.renew_deadline(), Duration::from_secs(10));
        assert!(config.retry_period() < config.renew_deadline());
        assert_eq!(config.lease_duration_seconds(), 15);
    }

    #[test]
    fn identities_differ_per_call_and_keep_the_base() {
        let a = default_identity();
        let b = default_identity();
        assert_ne!(a, b);
        let (base_a, suffix) = a.rsplit_once('-').unwrap();
        assert_eq!(suffix.len(), 6);
        assert_eq!(base_a, b.rsplit_once('-').unwrap().0);
    }
}
