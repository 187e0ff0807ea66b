//! The shared circuit breakers against the simulator, over real HTTP on 127.0.0.1 (issue 22):
//! an outage costs PrivX the probe schedule whatever the number of callers, the breaker closes
//! after recovery, answers about one object never open it, scattered failures do not keep it
//! open, a `Retry-After` pauses every caller, one service's outage leaves the others alone.
//!
//! The probe schedule is shortened (100 ms doubling to 800 ms) so an outage of a few seconds
//! shows many intervals; request counts are asserted against the bound that schedule gives,
//! never against a duration.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use privx_client::config::CredentialSource;
use privx_client::{
    BreakerSettings, BreakerState, Breakers, CallObserver, CallRecord, Credentials, Limit, Limits,
    PrivxClient, PrivxConfig, PrivxError, SecretLocation, Service,
};
use privx_sim::{Fault, SimOptions, Simulator, demo};
use tokio::time::Instant;

const SETTINGS: BreakerSettings = BreakerSettings {
    failure_threshold: 5,
    first_probe_interval: Duration::from_millis(100),
    max_probe_interval: Duration::from_millis(800),
    max_pause: Duration::from_secs(60),
};
const MAX_CONCURRENCY: usize = 16;
/// A guard against a hang, far above anything expected; not a measurement.
const GUARD: Duration = Duration::from_secs(30);

fn config(sim: &Simulator) -> PrivxConfig {
    let c = sim.credentials();
    let mut config = PrivxConfig::new(
        sim.base_url(),
        CredentialSource::Static(Credentials {
            oauth_client_id: c.oauth_client_id,
            oauth_client_secret: c.oauth_client_secret,
            api_client_id: c.api_client_id,
            api_client_secret: c.api_client_secret,
        }),
    );
    config.timeout = Duration::from_secs(5);
    config.max_retries = 3;
    config.retry_base_delay = Duration::from_millis(10);
    config.limit = Limit::new(Limits {
        max_concurrency: MAX_CONCURRENCY,
        ..Limits::unlimited()
    })
    .unwrap();
    config.breakers = Breakers::new(SETTINGS).unwrap();
    config
}

async fn start() -> (Simulator, PrivxConfig, PrivxClient) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start(SimOptions::default()).await.unwrap();
    let config = config(&sim);
    let client = PrivxClient::new(config.clone()).unwrap();
    (sim, config, client)
}

/// Requests the simulator saw to `service` (its prefix in the route).
fn requests_to(sim: &Simulator, service: Service) -> Vec<String> {
    let prefix = format!(" /{service}/");
    sim.requests()
        .into_iter()
        .map(|r| r.route)
        .filter(|route| route.contains(&prefix))
        .collect()
}

async fn read(client: &PrivxClient) -> Result<(), PrivxError> {
    client
        .get_secret(&SecretLocation::Shared, demo::SECRET_UPSTREAM)
        .await
        .map(drop)
}

async fn wait_for(client: &PrivxClient, service: Service, state: BreakerState) {
    let mut watch = client.breakers().subscribe();
    tokio::time::timeout(GUARD, watch.wait_for(|s| s.state(service) == state))
        .await
        .unwrap_or_else(|_| panic!("{service} never became {state:?}"))
        .unwrap();
}

/// What the callers saw: calls made, and of them refused unsent.
#[derive(Debug, Default)]
struct Tally {
    calls: usize,
    refused: usize,
    succeeded: usize,
}

/// `callers` clones of `client` reading until `until`: after a refusal a caller waits for
/// the breaker to change (as a controller would), after anything else it reads again.
async fn read_until(client: &PrivxClient, callers: usize, until: Instant) -> Tally {
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut watch = client.breakers().subscribe();
                while Instant::now() < until {
                    watch.mark_unchanged();
                    tally.calls += 1;
                    match read(&client).await {
                        Ok(()) => tally.succeeded += 1,
                        Err(e) if e.breaker_refusal().is_some() => {
                            tally.refused += 1;
                            let _ = tokio::time::timeout_at(until, watch.changed()).await;
                        }
                        Err(e) => assert!(e.is_retryable(), "{e}"),
                    }
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        let t = task.await.unwrap();
        total.calls += t.calls;
        total.refused += t.refused;
        total.succeeded += t.succeeded;
    }
    total
}

#[derive(Default)]
struct Recorder {
    states: Mutex<Vec<(Service, BreakerState)>>,
    refusals: Mutex<Vec<Service>>,
}

impl CallObserver for Recorder {
    fn on_call(&self, _: &CallRecord) {}
    fn on_token_refresh(&self, _: bool) {}
    fn on_breaker_state(&self, service: Service, state: BreakerState) {
        self.states.lock().unwrap().push((service, state));
    }
    fn on_breaker_refusal(&self, service: Service) {
        self.refusals.lock().unwrap().push(service);
    }
}

/// The most requests `callers` callers can send to a service that fails throughout
/// `elapsed`: while it is closed, at most threshold - 1 failures counted plus what is in
/// flight at once; once open, one probe per interval of the schedule.
fn bound(callers: usize, elapsed: Duration) -> usize {
    (SETTINGS.failure_threshold as usize - 1)
        + MAX_CONCURRENCY.min(callers)
        + SETTINGS.max_probes_within(elapsed) as usize
}

/// One outage of `/vault/*` lasting `window` with `callers` callers: the requests PrivX saw,
/// the bound the probe schedule gives, and what the callers saw.
async fn outage(callers: usize, window: Duration) -> (usize, usize, Tally) {
    let (sim, _, client) = start().await;
    let recorder = Arc::new(Recorder::default());
    let client = client.with_observer(recorder.clone());
    read(&client)
        .await
        .expect("PrivX answers before the outage");
    sim.set_faults(vec![Fault::status("/vault/*", 503)]);
    sim.clear_requests();
    let started = Instant::now();
    let tally = read_until(&client, callers, started + window).await;
    let seen = requests_to(&sim, Service::Vault);
    let bound = bound(callers, started.elapsed());
    assert!(
        seen.iter().any(|r| r == "GET /vault/api/v1/status"),
        "the probe asks the status: {seen:?}"
    );
    assert_ne!(
        client.breakers().status().state(Service::Vault),
        BreakerState::Closed,
        "still failing at the end of the window"
    );
    assert_eq!(tally.succeeded, 0);
    assert_eq!(
        recorder.refusals.lock().unwrap().len(),
        tally.refused,
        "every refusal reaches the observer"
    );

    // PrivX answers again: the next probe closes the breaker, and reads go.
    sim.set_faults(vec![]);
    wait_for(&client, Service::Vault, BreakerState::Closed).await;
    read(&client).await.expect("reads go once it closed");
    let states: Vec<BreakerState> = recorder
        .states
        .lock()
        .unwrap()
        .iter()
        .filter(|(s, _)| *s == Service::Vault)
        .map(|(_, state)| *state)
        .collect();
    assert_eq!(states.first(), Some(&BreakerState::Closed), "{states:?}");
    assert_eq!(states.get(1), Some(&BreakerState::Open), "{states:?}");
    assert!(states.contains(&BreakerState::HalfOpen), "{states:?}");
    assert_eq!(states.last(), Some(&BreakerState::Closed), "{states:?}");
    assert_eq!(client.breakers().status().closings(Service::Vault), 1);
    sim.shutdown().await;
    (seen.len(), bound, tally)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_costs_privx_the_probe_schedule_whatever_the_callers() {
    let window = Duration::from_millis(2500);
    let (few, bound_few, tally_few) = outage(10, window).await;
    let (many, bound_many, tally_many) = outage(200, window).await;
    eprintln!(
        "outage {window:?}: 10 callers -> {few} requests (bound {bound_few}), {tally_few:?}; 200 callers -> {many} requests (bound {bound_many}), {tally_many:?}"
    );
    assert!(few >= 5 && few <= bound_few, "{few} > {bound_few}");
    assert!(many >= 5 && many <= bound_many, "{many} > {bound_many}");
    // Twenty times the callers made many more calls, not more requests than the bound.
    assert!(
        tally_many.calls > many * 4,
        "{tally_many:?} for {many} requests"
    );
}

#[tokio::test]
async fn answers_about_one_object_never_open_it() {
    let (sim, _, client) = start().await;
    read(&client).await.unwrap();
    sim.clear_requests();
    for i in 0..20 {
        let err = client
            .get_secret(&SecretLocation::Shared, &format!("missing/{i}"))
            .await
            .unwrap_err();
        assert!(matches!(err, PrivxError::NotFound { .. }), "{err:?}");
    }
    sim.set_faults(vec![Fault::status("GET /vault/api/v1/secrets/{name}", 403)]);
    for _ in 0..10 {
        let err = read(&client).await.unwrap_err();
        assert!(
            matches!(err, PrivxError::PermissionDenied { .. }),
            "{err:?}"
        );
    }
    assert_eq!(
        client.breakers().status().state(Service::Vault),
        BreakerState::Closed
    );
    assert_eq!(
        requests_to(&sim, Service::Vault).len(),
        30,
        "every call was sent"
    );
    sim.shutdown().await;
}

/// 50 callers, each until 10 of its reads succeeded, while every PrivX route (the probe's
/// included) fails `rate` of the requests at random, after a first burst of `burst` failing
/// reads: how many times the vault breaker closed again.
async fn converge_under_random_failures(rate: f64, burst: u32) -> u64 {
    let (sim, _, client) = start().await;
    read(&client).await.unwrap();
    if burst > 0 {
        // The burst first, one read at a time: with callers running at once, a success could
        // land between the failures and reset the count, and the burst would not open it.
        sim.set_faults(vec![
            Fault::status("GET /vault/api/v1/secrets/{name}", 500).for_next(burst),
        ]);
        for _ in 0..burst {
            let _ = read(&client).await;
        }
        assert_ne!(
            client.breakers().status().state(Service::Vault),
            BreakerState::Closed,
            "a burst of {burst} failures in a row opens the breaker"
        );
    }
    sim.set_faults(vec![Fault::status("*", 500).with_rate(rate)]);
    let started = Instant::now();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut watch = client.breakers().subscribe();
                let mut done = 0;
                let mut refused = 0;
                while done < 10 {
                    watch.mark_unchanged();
                    match read(&client).await {
                        Ok(()) => done += 1,
                        Err(e) if e.breaker_refusal().is_some() => {
                            refused += 1;
                            watch.changed().await.unwrap();
                        }
                        Err(e) => assert!(e.is_retryable(), "{e}"),
                    }
                }
                refused
            })
        })
        .collect();
    let mut refused = 0;
    for task in tasks {
        refused += tokio::time::timeout(GUARD, task)
            .await
            .expect("every caller converges")
            .unwrap();
    }
    // If it opened, it closes again (the failures go on).
    wait_for(&client, Service::Vault, BreakerState::Closed).await;
    let closings = client.breakers().status().closings(Service::Vault);
    eprintln!(
        "{}% failures after a burst of {burst}: 500 reads done in {:?}, {refused} refusals, the vault breaker closed again {closings} times",
        rate * 100.0,
        started.elapsed()
    );
    sim.shutdown().await;
    closings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_failures_do_not_keep_it_open() {
    converge_under_random_failures(0.1, 0).await;
    // A burst opens it for certain; the scattered failures that go on do not keep it open.
    assert!(converge_under_random_failures(0.1, 8).await >= 1);
}

#[tokio::test]
async fn retry_after_pauses_every_caller_and_every_client_of_the_configuration() {
    let (sim, config, client) = start().await;
    read(&client).await.unwrap();
    // A namespace's own client: another login, the same breakers.
    let other = PrivxClient::new(config.clone()).unwrap();
    read(&other).await.unwrap();
    sim.set_faults(vec![
        Fault::status("/vault/*", 503)
            .with_retry_after(2)
            .for_next(1),
    ]);
    sim.clear_requests();
    let err = read(&client).await.unwrap_err();
    let PrivxError::Unavailable {
        retry_after,
        refused: false,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*retry_after, Some(Duration::from_secs(2)));
    assert_eq!(
        requests_to(&sim, Service::Vault).len(),
        1,
        "the call did not retry into the pause"
    );
    // Everyone else is refused at once, unsent.
    for c in [&client, &other, &client.clone()] {
        for _ in 0..5 {
            let err = read(c).await.unwrap_err();
            assert_eq!(err.breaker_refusal(), Some(Service::Vault), "{err:?}");
            assert!(err.to_string().ends_with(": HTTP 503 from vault"), "{err}");
        }
    }
    assert_eq!(requests_to(&sim, Service::Vault).len(), 1);
    // After the pause, one probe; it succeeds and everyone reads again.
    wait_for(&other, Service::Vault, BreakerState::Closed).await;
    read(&client).await.unwrap();
    read(&other).await.unwrap();
    let seen = requests_to(&sim, Service::Vault);
    assert_eq!(
        seen.iter()
            .filter(|r| *r == "GET /vault/api/v1/status")
            .count(),
        1,
        "{seen:?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_role_store_outage_leaves_vault_calls_alone() {
    let (sim, _, client) = start().await;
    read(&client).await.unwrap();
    sim.set_faults(vec![Fault::status("/role-store/*", 503)]);
    let names = vec!["privx-operator".to_string()];
    for _ in 0..3 {
        assert!(
            client
                .resolve_roles(&names)
                .await
                .unwrap_err()
                .is_retryable()
        );
    }
    wait_for(&client, Service::RoleStore, BreakerState::Open).await;
    let err = client.resolve_roles(&names).await.unwrap_err();
    assert_eq!(err.breaker_refusal(), Some(Service::RoleStore));
    sim.clear_requests();
    for _ in 0..10 {
        read(&client).await.expect("vault reads go on");
    }
    assert_eq!(requests_to(&sim, Service::Vault).len(), 10);
    assert_eq!(
        client.breakers().status().unavailable(),
        vec![Service::RoleStore]
    );
    sim.set_faults(vec![]);
    wait_for(&client, Service::RoleStore, BreakerState::Closed).await;
    client.resolve_roles(&names).await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_token_endpoint_costs_one_grant_per_probe_though_the_status_answers() {
    let (sim, _, client) = start().await;
    // Only the token endpoint fails; the auth status (the probe) answers: each probe closes
    // the breaker, and the next grant, failing, opens it again at once (probation). Grants are
    // one at a time, so at most the threshold before it opens, then one per probe.
    sim.set_faults(vec![Fault::token_endpoint_down()]);
    let window = Duration::from_millis(2500);
    let started = Instant::now();
    let tally = read_until(&client, 100, started + window).await;
    let elapsed = started.elapsed();
    let grants = sim
        .requests()
        .iter()
        .filter(|r| r.route == "POST /auth/api/v1/oauth/token")
        .count();
    let probes = requests_to(&sim, Service::Auth).len() - grants;
    let bound = SETTINGS.failure_threshold as usize + SETTINGS.max_probes_within(elapsed) as usize;
    eprintln!(
        "token endpoint down {window:?}, 100 callers: {grants} grants (bound {bound}), {probes} probes, {tally:?}"
    );
    assert!(grants <= bound, "{grants} > {bound}");
    assert!(probes >= 1 && tally.succeeded == 0, "{tally:?}");
    sim.set_faults(vec![]);
    wait_for(&client, Service::Auth, BreakerState::Closed).await;
    read(&client)
        .await
        .expect("logs in and reads once the token endpoint answers");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_auth_service_behaves_like_a_vault_outage() {
    let (sim, _, client) = start().await;
    // No token yet: every read needs a grant first. The auth service is down, its status too.
    sim.set_faults(vec![Fault::status("/auth/*", 503)]);
    let window = Duration::from_millis(2500);
    let started = Instant::now();
    let tally = read_until(&client, 100, started + window).await;
    let seen = requests_to(&sim, Service::Auth);
    let bound = bound(100, started.elapsed());
    eprintln!(
        "auth outage {window:?}, 100 callers: {} requests (bound {bound}), {tally:?}",
        seen.len()
    );
    assert!(seen.len() <= bound, "{} > {bound}: {seen:?}", seen.len());
    assert!(tally.refused > 0 && tally.succeeded == 0, "{tally:?}");
    assert!(
        requests_to(&sim, Service::Vault).is_empty(),
        "no token, no vault call"
    );
    let err = read(&client).await.unwrap_err();
    assert_eq!(err.breaker_refusal(), Some(Service::Auth), "{err:?}");
    assert!(err.to_string().ends_with("HTTP 503 from auth"), "{err}");
    sim.set_faults(vec![]);
    wait_for(&client, Service::Auth, BreakerState::Closed).await;
    read(&client)
        .await
        .expect("logs in and reads once auth answers");
    sim.shutdown().await;
}
