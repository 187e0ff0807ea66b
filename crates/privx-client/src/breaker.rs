//! One circuit breaker per PrivX service (auth, vault, secrets manager, role store), shared
//! like [`crate::limit::Limit`] by every clone of a [`crate::PrivxClient`] and by every client
//! built from a clone of the same [`crate::PrivxConfig`] (the per-namespace identities): the
//! load a failing PrivX receives then depends on the probe schedule, not on how many objects
//! or callers there are.
//!
//! - **Closed**: requests go. `failure_threshold` outage answers in a row (5xx, 408, 429,
//!   MAX_LOAD / TOO_MANY_CONNECTIONS / OUT_OF_RESOURCES, timeouts, refused or lost
//!   connections) open it; any other answer (2xx, and 4xx about one object: 404, 403, 400)
//!   resets the count. An outage answer with `Retry-After` opens it at once, for that long:
//!   the server's pause holds for every caller.
//! - **Open**: calls fail at once with [`PrivxError::Unavailable`] (`refused`), without a
//!   request; the text is the one of the failure that opened it, so a status message does not
//!   change between a real failure and a refusal. One background task per service sends a
//!   probe (`GET /<service>/api/v1/status`) when the probe interval has passed: jittered
//!   (±20 %), from `first_probe_interval` doubling up to `max_probe_interval`.
//! - **Half-open**: the probe is in flight; calls are still refused. A probe answered in any
//!   way but an outage closes the breaker; an outage answer opens it again with the next
//!   interval.
//!
//! After a probe closed it, the breaker is on probation until a real request is answered:
//! the first outage answer opens it again at once. A breaker that opens again soon after it
//! closed (within `max_probe_interval`) continues with the longer interval instead of starting
//! over. So a service whose status answers while its real endpoints fail (a token endpoint
//! behind a broken proxy route) costs about one probe and one real request per interval.
//!
//! Who needs to know watches [`Breakers::subscribe`]: the state of each service and a count
//! of closings (a closing is the moment to retry whatever failed because of the outage).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::PrivxError;

/// A PrivX service: the first segment of a request path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Auth,
    Vault,
    SecretsManager,
    RoleStore,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::Auth,
        Service::Vault,
        Service::SecretsManager,
        Service::RoleStore,
    ];

    /// The path prefix: `auth`, `vault`, `secrets-manager`, `role-store`.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Auth => "auth",
            Service::Vault => "vault",
            Service::SecretsManager => "secrets-manager",
            Service::RoleStore => "role-store",
        }
    }

    /// The service of a path prefix (`vault`), if it is one of the four.
    pub fn from_name(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.as_str() == name)
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The path the background probe asks: the service's status.
    pub(crate) fn status_path(self) -> &'static str {
        match self {
            Service::Auth => "/auth/api/v1/status",
            Service::Vault => "/vault/api/v1/status",
            Service::SecretsManager => "/secrets-manager/api/v1/status",
            Service::RoleStore => "/role-store/api/v1/status",
        }
    }

    /// The route template of the probe, for call records.
    pub(crate) fn status_route(self) -> &'static str {
        match self {
            Service::Auth => "GET /auth/api/v1/status",
            Service::Vault => "GET /vault/api/v1/status",
            Service::SecretsManager => "GET /secrets-manager/api/v1/status",
            Service::RoleStore => "GET /role-store/api/v1/status",
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of one service's breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Requests go.
    Closed,
    /// Calls are refused without a request; a probe is due later.
    Open,
    /// Calls are refused; the one probe is in flight.
    HalfOpen,
}

impl BreakerState {
    pub const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ];

    /// `closed`, `open`, `half-open` (metric label values).
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

/// When the breakers open and how often they probe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerSettings {
    /// Outage answers in a row that open a service's breaker (at least 1).
    pub failure_threshold: u32,
    /// The first probe interval after opening (more than zero).
    pub first_probe_interval: Duration,
    /// The longest probe interval (at least `first_probe_interval`).
    pub max_probe_interval: Duration,
    /// The longest `Retry-After` honoured as a pause of the whole service.
    pub max_pause: Duration,
}

pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;
pub const DEFAULT_FIRST_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// 10 s, not more: the probe interval bounds how long objects wait after PrivX is back (the
/// breaker closes at the next probe, up to 12 s with the jitter), and one probe every 10 s is
/// still only 0.1 requests per second for a PrivX that is down.
pub const DEFAULT_MAX_PROBE_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_PAUSE: Duration = Duration::from_secs(300);

/// Probe waits are the interval times a factor in this range.
const JITTER: (f64, f64) = (0.8, 1.2);

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            first_probe_interval: DEFAULT_FIRST_PROBE_INTERVAL,
            max_probe_interval: DEFAULT_MAX_PROBE_INTERVAL,
            max_pause: DEFAULT_MAX_PAUSE,
        }
    }
}

impl BreakerSettings {
    fn check(&self) -> Result<(), PrivxError> {
        let bad = |what: &str| Err(PrivxError::Config(format!("circuit breaker: {what}")));
        if self.failure_threshold == 0 {
            return bad("failure_threshold must be at least 1");
        }
        if self.first_probe_interval.is_zero() {
            return bad("first_probe_interval must be more than zero");
        }
        if self.max_probe_interval < self.first_probe_interval {
            return bad("max_probe_interval must be at least first_probe_interval");
        }
        Ok(())
    }

    /// The probe intervals in order (without jitter): first, doubled, ... up to the maximum.
    pub fn probe_intervals(&self) -> impl Iterator<Item = Duration> + '_ {
        std::iter::successors(Some(self.first_probe_interval), |i| {
            Some((*i * 2).min(self.max_probe_interval))
        })
    }

    /// The most probes a breaker that stays open can send in `window` (an upper bound: every
    /// wait at the shortest jitter), not counting the requests that opened it.
    pub fn max_probes_within(&self, window: Duration) -> u32 {
        let mut elapsed = Duration::ZERO;
        self.probe_intervals()
            .take_while(|interval| {
                elapsed += interval.mul_f64(JITTER.0);
                elapsed <= window
            })
            .count() as u32
    }
}

/// What every service's breaker says. Sent on [`Breakers::subscribe`] at every change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerStatus {
    states: [BreakerState; 4],
    closings: [u64; 4],
}

impl BreakerStatus {
    pub fn state(&self, service: Service) -> BreakerState {
        self.states[service.index()]
    }

    /// How often `service`'s breaker has closed after being open (grows by one at each
    /// recovery): a change is the moment to retry what failed because of the outage.
    pub fn closings(&self, service: Service) -> u64 {
        self.closings[service.index()]
    }

    /// The services whose breaker is not closed.
    pub fn unavailable(&self) -> Vec<Service> {
        Service::ALL
            .into_iter()
            .filter(|s| self.state(*s) != BreakerState::Closed)
            .collect()
    }
}

/// The breakers of every service, shared by clones.
#[derive(Clone)]
pub struct Breakers {
    settings: BreakerSettings,
    shared: Arc<Shared>,
}

struct Shared {
    machines: [Mutex<Machine>; 4],
    status: watch::Sender<BreakerStatus>,
}

struct Machine {
    phase: Phase,
    /// The text of the outage answer that opened the breaker (fixed text, never a body).
    last_failure: String,
    /// The probe interval now (before jitter).
    interval: Duration,
    closed_at: Option<Instant>,
    /// Closed by a probe, and no real request answered since: the first outage answer opens
    /// it again (the status may answer while the real endpoints do not).
    probation: bool,
    /// Counts probes, so that a late verdict of an abandoned probe changes nothing.
    probe_serial: u64,
    /// The background task probing this service, if one runs.
    prober: Option<u64>,
    prober_serial: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Closed { failures: u32 },
    Open { probe_at: Instant },
    HalfOpen { serial: u64 },
}

impl Phase {
    fn state(self) -> BreakerState {
        match self {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// What one request said about its service.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// An answer that is not an outage (2xx, 4xx about one object, 401...).
    Served,
    /// An outage answer or no answer; `message` is its fixed text (`HTTP 503 from vault`).
    Failed {
        message: String,
        retry_after: Option<Duration>,
    },
}

/// A call refused by an open breaker.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Refusal {
    pub service: Service,
    /// The text of the outage that opened the breaker.
    pub message: String,
}

/// Leave to send one request to a service. A probe's leave that is dropped without a verdict
/// (its task was cancelled) makes the probe due again at once.
pub(crate) struct Permit {
    breakers: Breakers,
    service: Service,
    probe: Option<u64>,
    reported: bool,
}

/// A state change, for the call observer.
pub(crate) type Transition = Option<(Service, BreakerState)>;

impl Default for Breakers {
    fn default() -> Self {
        Self::new(BreakerSettings::default()).expect("the default breaker settings are valid")
    }
}

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breakers")
            .field("settings", &self.settings)
            .field("status", &self.status())
            .finish()
    }
}

impl Breakers {
    /// Fails on settings that cannot work (a threshold of 0, a zero interval, a maximum below
    /// the first interval), naming the setting.
    pub fn new(settings: BreakerSettings) -> Result<Self, PrivxError> {
        settings.check()?;
        let machine = || {
            Mutex::new(Machine {
                phase: Phase::Closed { failures: 0 },
                last_failure: String::new(),
                interval: settings.first_probe_interval,
                closed_at: None,
                probation: false,
                probe_serial: 0,
                prober: None,
                prober_serial: 0,
            })
        };
        Ok(Self {
            settings,
            shared: Arc::new(Shared {
                machines: [machine(), machine(), machine(), machine()],
                status: watch::channel(BreakerStatus {
                    states: [BreakerState::Closed; 4],
                    closings: [0; 4],
                })
                .0,
            }),
        })
    }

    pub fn settings(&self) -> BreakerSettings {
        self.settings
    }

    /// Every service's state now.
    pub fn status(&self) -> BreakerStatus {
        *self.shared.status.borrow()
    }

    /// Changes whenever a breaker changes state.
    pub fn subscribe(&self) -> watch::Receiver<BreakerStatus> {
        self.shared.status.subscribe()
    }

    fn machine(&self, service: Service) -> MutexGuard<'_, Machine> {
        self.shared.machines[service.index()]
            .lock()
            .expect("breaker lock")
    }

    /// Whether a call to `service` would be refused now (a look without a change; the real
    /// decision is [`Breakers::admit`], taken right before sending).
    pub(crate) fn refusal(&self, service: Service) -> Option<Refusal> {
        let machine = self.machine(service);
        match machine.phase {
            Phase::Closed { .. } => None,
            Phase::Open { .. } | Phase::HalfOpen { .. } => Some(Refusal {
                service,
                message: machine.last_failure.clone(),
            }),
        }
    }

    /// Leave for one ordinary request, or the refusal.
    pub(crate) fn admit(&self, service: Service) -> Result<Permit, Refusal> {
        match self.refusal(service) {
            Some(refusal) => Err(refusal),
            None => Ok(Permit {
                breakers: self.clone(),
                service,
                probe: None,
                reported: false,
            }),
        }
    }

    /// How long until the next probe of `service` is due (zero: now), for the prober `id`;
    /// `None` when its breaker is closed, and then the prober is released in the same step
    /// (a breaker that opens right after needs a new one).
    pub(crate) fn until_probe(&self, service: Service, id: u64, now: Instant) -> Option<Duration> {
        let mut machine = self.machine(service);
        match machine.phase {
            Phase::Open { probe_at } => Some(probe_at.saturating_duration_since(now)),
            // Only this prober's probe makes it half-open, and that probe has ended: not seen.
            Phase::HalfOpen { .. } => Some(self.settings.first_probe_interval),
            Phase::Closed { .. } => {
                if machine.prober == Some(id) {
                    machine.prober = None;
                }
                None
            }
        }
    }

    /// Leave for the probe, if one is due now: the breaker turns half-open.
    pub(crate) fn admit_probe(
        &self,
        service: Service,
        now: Instant,
    ) -> Option<(Permit, Transition)> {
        let mut machine = self.machine(service);
        match machine.phase {
            Phase::Open { probe_at } if probe_at <= now => {
                machine.probe_serial += 1;
                let serial = machine.probe_serial;
                let transition = self.set_phase(service, &mut machine, Phase::HalfOpen { serial });
                Some((
                    Permit {
                        breakers: self.clone(),
                        service,
                        probe: Some(serial),
                        reported: false,
                    },
                    transition,
                ))
            }
            _ => None,
        }
    }

    /// Marks a prober as running for `service` if its breaker is not closed and none runs:
    /// `Some(id)` means the caller must start one, known by `id`.
    pub(crate) fn claim_prober(&self, service: Service) -> Option<u64> {
        let mut machine = self.machine(service);
        if machine.prober.is_some() || matches!(machine.phase, Phase::Closed { .. }) {
            return None;
        }
        machine.prober_serial += 1;
        let id = machine.prober_serial;
        machine.prober = Some(id);
        Some(id)
    }

    /// The prober `id` of `service` has ended.
    pub(crate) fn release_prober(&self, service: Service, id: u64) {
        let mut machine = self.machine(service);
        if machine.prober == Some(id) {
            machine.prober = None;
        }
    }

    fn record(
        &self,
        service: Service,
        probe: Option<u64>,
        outcome: &Outcome,
        now: Instant,
    ) -> Transition {
        let settings = self.settings;
        let mut machine = self.machine(service);
        let phase = machine.phase;
        let current_probe = matches!(phase, Phase::HalfOpen { serial } if Some(serial) == probe);
        match outcome {
            Outcome::Served => match phase {
                Phase::Closed { .. } => {
                    machine.phase = Phase::Closed { failures: 0 };
                    machine.probation = false;
                    None
                }
                _ if current_probe => {
                    machine.closed_at = Some(now);
                    machine.probation = true;
                    tracing::info!(service = %service, "PrivX {service} answers again; calls to it resume (circuit breaker closed)");
                    self.set_phase(service, &mut machine, Phase::Closed { failures: 0 })
                }
                // A request sent before the breaker opened: the probe decides.
                _ => None,
            },
            Outcome::Failed {
                message,
                retry_after,
            } => {
                let pause = retry_after.map(|d| d.min(settings.max_pause));
                let opens = match phase {
                    Phase::Closed { failures } => {
                        let failures = failures + 1;
                        machine.phase = Phase::Closed { failures };
                        if failures >= settings.failure_threshold
                            || pause.is_some()
                            || machine.probation
                        {
                            machine.probation = false;
                            let recent = machine.closed_at.is_some_and(|at| {
                                now.saturating_duration_since(at) < settings.max_probe_interval
                            });
                            machine.interval = if recent {
                                (machine.interval * 2).min(settings.max_probe_interval)
                            } else {
                                settings.first_probe_interval
                            };
                            true
                        } else {
                            false
                        }
                    }
                    _ if current_probe => {
                        machine.interval = (machine.interval * 2).min(settings.max_probe_interval);
                        true
                    }
                    Phase::Open { probe_at } => {
                        // A late answer that asks for a longer pause still holds for everyone.
                        if let Some(pause) = pause
                            && now + pause > probe_at
                        {
                            machine.phase = Phase::Open {
                                probe_at: now + pause,
                            };
                        }
                        false
                    }
                    Phase::HalfOpen { .. } => false,
                };
                if !opens {
                    return None;
                }
                // A server's Retry-After decides the first probe; otherwise the interval does.
                let wait = pause.unwrap_or_else(|| jittered(machine.interval));
                machine.last_failure = message.clone();
                if matches!(phase, Phase::Closed { .. }) {
                    tracing::warn!(
                        service = %service,
                        failure = %message,
                        next_probe_ms = wait.as_millis() as u64,
                        "PrivX {service} is failing; calls to it are refused until a probe succeeds (circuit breaker open)"
                    );
                } else {
                    tracing::debug!(service = %service, failure = %message, next_probe_ms = wait.as_millis() as u64, "PrivX probe failed");
                }
                self.set_phase(
                    service,
                    &mut machine,
                    Phase::Open {
                        probe_at: now + wait,
                    },
                )
            }
        }
    }

    /// A probe ended without a verdict: the next one is due at once.
    fn abandon(&self, service: Service, serial: u64, now: Instant) -> Transition {
        let mut machine = self.machine(service);
        match machine.phase {
            Phase::HalfOpen { serial: current } if current == serial => {
                self.set_phase(service, &mut machine, Phase::Open { probe_at: now })
            }
            _ => None,
        }
    }

    fn set_phase(&self, service: Service, machine: &mut Machine, phase: Phase) -> Transition {
        let before = machine.phase.state();
        machine.phase = phase;
        let after = phase.state();
        if before == after {
            return None;
        }
        self.shared.status.send_modify(|status| {
            status.states[service.index()] = after;
            if after == BreakerState::Closed {
                status.closings[service.index()] += 1;
            }
        });
        Some((service, after))
    }
}

impl Permit {
    pub(crate) fn service(&self) -> Service {
        self.service
    }

    /// Reports what the request said; the state change it caused, if any.
    pub(crate) fn report(mut self, outcome: &Outcome) -> Transition {
        self.reported = true;
        self.breakers
            .record(self.service, self.probe, outcome, Instant::now())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let (false, Some(serial)) = (self.reported, self.probe) {
            self.breakers.abandon(self.service, serial, Instant::now());
        }
    }
}

/// `interval` times a random factor in [`JITTER`], so that many processes that saw the same
/// outage do not probe in step.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::rng().random_range(JITTER.0..=JITTER.1))
}

#[cfg(test)]
mod tests;
