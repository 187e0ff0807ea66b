//! The client's shared limits against the simulator, over real HTTP on 127.0.0.1: the
//! simulator counts the requests it handles at once and the requests it has seen.

use std::time::Duration;

use privx_client::config::CredentialSource;
use privx_client::{Credentials, Limit, Limits, PrivxClient, PrivxConfig};
use privx_sim::{Fault, SimOptions, Simulator};

async fn simulator() -> Simulator {
    Simulator::start(SimOptions::default())
        .await
        .expect("simulator starts")
}

fn client(sim: &Simulator, limits: Limits) -> PrivxClient {
    let mut config = config(sim);
    config.limit = Limit::new(limits).expect("valid limits");
    PrivxClient::new(config).expect("client builds")
}

fn config(sim: &Simulator) -> PrivxConfig {
    let c = sim.credentials();
    let source = CredentialSource::Static(Credentials {
        oauth_client_id: c.oauth_client_id,
        oauth_client_secret: c.oauth_client_secret,
        api_client_id: c.api_client_id,
        api_client_secret: c.api_client_secret,
    });
    let mut config = PrivxConfig::new(sim.base_url(), source);
    config.timeout = Duration::from_secs(20);
    config
}

/// `calls` reads at once, from clones of `client` (as the workers of both controllers hold).
async fn read_at_once(client: &PrivxClient, calls: usize) {
    let tasks: Vec<_> = (0..calls)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.current_user().await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("read succeeds");
    }
}

#[tokio::test]
async fn max_concurrency_bounds_the_requests_privx_sees_at_once() {
    let sim = simulator().await;
    // Slow answers, so that unbounded requests overlap.
    sim.set_faults(vec![Fault::latency("*", Duration::from_millis(150))]);

    // Without a bound, the simulator sees more than 3 at once: the scenario can show a breach.
    let unbounded = client(&sim, Limits::unlimited());
    unbounded.ping().await.unwrap();
    sim.reset_max_in_flight();
    read_at_once(&unbounded, 24).await;
    let (_, max_unbounded) = sim.in_flight();
    assert!(max_unbounded > 3, "{max_unbounded} at once without a bound");

    let bounded = client(
        &sim,
        Limits {
            max_concurrency: 3,
            ..Limits::unlimited()
        },
    );
    sim.reset_max_in_flight();
    // The token grant counts too: the first calls all need one.
    read_at_once(&bounded, 24).await;
    let (now, max_bounded) = sim.in_flight();
    assert_eq!(now, 0);
    assert!(
        (1..=3).contains(&max_bounded),
        "{max_bounded} at once with --privx-max-concurrency 3"
    );
}

#[tokio::test]
async fn clients_built_from_one_configuration_share_its_limit() {
    let sim = simulator().await;
    sim.set_faults(vec![Fault::latency("*", Duration::from_millis(150))]);
    let mut config = config(&sim);
    config.limit = Limit::new(Limits {
        max_concurrency: 2,
        ..Limits::unlimited()
    })
    .unwrap();
    // As the per-namespace identities do: one client per clone of the configuration.
    let clients: Vec<PrivxClient> = (0..3)
        .map(|_| PrivxClient::new(config.clone()).unwrap())
        .collect();
    sim.reset_max_in_flight();
    futures::future::join_all(clients.iter().map(|c| read_at_once(c, 8))).await;
    let (_, max) = sim.in_flight();
    assert!(
        (1..=2).contains(&max),
        "{max} at once from three clients sharing a limit of 2"
    );
}

#[tokio::test]
async fn the_rate_limit_bounds_the_requests_in_a_window() {
    let sim = simulator().await;
    let rate = 20.0;
    let burst = 4;
    let client = client(
        &sim,
        Limits {
            max_concurrency: 0,
            rate,
            burst,
        },
    );
    let calls = 60;
    let started = tokio::time::Instant::now();
    let work = tokio::spawn({
        let client = client.clone();
        async move { read_at_once(&client, calls).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Requests seen by now, and the time that really passed (the machine may be slow: the
    // bound grows with it).
    let seen = sim.requests().len();
    let elapsed = started.elapsed().as_secs_f64();
    let bound = f64::from(burst) + rate * elapsed + 1.0;
    assert!(
        (seen as f64) <= bound,
        "{seen} requests in {elapsed:.2} s; the limit allows {bound:.0}"
    );
    assert!(
        seen < calls,
        "the limit held some of the {calls} calls back"
    );
    work.await.unwrap();
    // Every call got through in the end (and one token grant).
    assert_eq!(sim.requests().len(), calls + 1);
}
