//! The breaker's state machine on tokio's paused clock: no request, no sleep.

use super::*;

const VAULT: Service = Service::Vault;

fn breakers() -> Breakers {
    Breakers::default()
}

fn failed(message: &str) -> Outcome {
    Outcome::Failed {
        message: message.into(),
        retry_after: None,
    }
}

/// One ordinary request to `service` with `outcome`; whether it was let through.
fn call(b: &Breakers, service: Service, outcome: &Outcome) -> bool {
    match b.admit(service) {
        Ok(permit) => {
            permit.report(outcome);
            true
        }
        Err(_) => false,
    }
}

/// Outage answers until it opens: the threshold, or one on probation.
fn open(b: &Breakers) {
    for _ in 0..DEFAULT_FAILURE_THRESHOLD {
        if b.status().state(VAULT) != BreakerState::Closed {
            break;
        }
        assert!(call(b, VAULT, &failed("HTTP 503 from vault")));
    }
    assert_eq!(b.status().state(VAULT), BreakerState::Open);
}

/// Waits (on the paused clock) until the probe is due and takes it.
async fn probe(b: &Breakers) -> Permit {
    let wait = b.until_probe(VAULT, 0, Instant::now()).expect("open");
    tokio::time::advance(wait).await;
    b.admit_probe(VAULT, Instant::now()).expect("due").0
}

#[tokio::test(start_paused = true)]
async fn opens_after_consecutive_outages_only() {
    let b = breakers();
    // An answer that is not an outage between failures resets the count.
    for _ in 0..10 {
        for _ in 0..DEFAULT_FAILURE_THRESHOLD - 1 {
            assert!(call(&b, VAULT, &failed("HTTP 500 from vault")));
        }
        assert!(call(&b, VAULT, &Outcome::Served));
    }
    assert_eq!(b.status().state(VAULT), BreakerState::Closed);

    open(&b);
    // Refused with the outage's text, and only for that service.
    let refusal = b.admit(VAULT).err().expect("refused");
    assert_eq!(refusal.message, "HTTP 503 from vault");
    assert_eq!(refusal.service, VAULT);
    for other in [Service::Auth, Service::RoleStore, Service::SecretsManager] {
        assert!(b.admit(other).is_ok(), "{other}");
    }
    assert_eq!(b.status().unavailable(), vec![VAULT]);
}

#[tokio::test(start_paused = true)]
async fn probes_once_per_growing_jittered_interval_then_stays_at_the_maximum() {
    let b = breakers();
    open(&b);
    let settings = b.settings();
    let expected: Vec<Duration> = settings.probe_intervals().take(8).collect();
    assert_eq!(
        expected.iter().map(|d| d.as_secs()).collect::<Vec<_>>(),
        [1, 2, 4, 8, 10, 10, 10, 10]
    );
    for interval in expected {
        let wait = b.until_probe(VAULT, 0, Instant::now()).unwrap();
        assert!(
            wait >= interval.mul_f64(0.8) && wait <= interval.mul_f64(1.2),
            "{wait:?} for {interval:?}"
        );
        // Not before it is due.
        tokio::time::advance(wait.mul_f64(0.5)).await;
        assert!(b.admit_probe(VAULT, Instant::now()).is_none());
        tokio::time::advance(wait - wait.mul_f64(0.5)).await;
        let (permit, transition) = b.admit_probe(VAULT, Instant::now()).unwrap();
        assert_eq!(transition, Some((VAULT, BreakerState::HalfOpen)));
        // One probe at a time; callers are refused meanwhile.
        assert!(b.admit_probe(VAULT, Instant::now()).is_none());
        assert!(b.admit(VAULT).is_err());
        assert_eq!(
            permit.report(&failed("timeout talking to vault")),
            Some((VAULT, BreakerState::Open))
        );
        // The refusal text follows the latest outage.
        assert_eq!(
            b.admit(VAULT).err().unwrap().message,
            "timeout talking to vault"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_served_probe_closes_and_tells_the_watchers() {
    let b = breakers();
    let mut watch = b.subscribe();
    open(&b);
    assert!(watch.has_changed().unwrap());
    assert_eq!(watch.borrow_and_update().state(VAULT), BreakerState::Open);
    let permit = probe(&b).await;
    assert_eq!(
        permit.report(&Outcome::Served),
        Some((VAULT, BreakerState::Closed))
    );
    let status = *watch.borrow_and_update();
    assert_eq!(status.state(VAULT), BreakerState::Closed);
    assert_eq!(status.closings(VAULT), 1);
    assert_eq!(status.closings(Service::Auth), 0);
    assert!(b.admit(VAULT).is_ok());
    // The prober is released when it sees the breaker closed.
    let id = {
        open(&b);
        b.claim_prober(VAULT).expect("no prober yet")
    };
    assert_eq!(b.claim_prober(VAULT), None, "one prober per service");
    probe(&b).await.report(&Outcome::Served);
    assert_eq!(b.until_probe(VAULT, id, Instant::now()), None);
    open(&b);
    assert!(
        b.claim_prober(VAULT).is_some(),
        "released, so a new one may start"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_pauses_the_service_for_everyone_at_once() {
    let b = breakers();
    let outage = Outcome::Failed {
        message: "HTTP 429 from vault".into(),
        retry_after: Some(Duration::from_secs(7)),
    };
    // One answer is enough, and the pause is the server's, not the jittered interval.
    assert!(call(&b, VAULT, &outage));
    assert_eq!(b.status().state(VAULT), BreakerState::Open);
    assert_eq!(
        b.until_probe(VAULT, 0, Instant::now()),
        Some(Duration::from_secs(7))
    );
    assert!(b.admit(VAULT).is_err());
    // A later answer of a request already in flight can lengthen the pause, never shorten it.
    let in_flight = Outcome::Failed {
        message: "HTTP 503 from vault".into(),
        retry_after: Some(Duration::from_secs(3600)),
    };
    b.record(VAULT, None, &in_flight, Instant::now());
    assert_eq!(
        b.until_probe(VAULT, 0, Instant::now()),
        Some(DEFAULT_MAX_PAUSE),
        "capped"
    );
    b.record(VAULT, None, &outage, Instant::now());
    assert_eq!(
        b.until_probe(VAULT, 0, Instant::now()),
        Some(DEFAULT_MAX_PAUSE)
    );
}

#[tokio::test(start_paused = true)]
async fn late_answers_of_requests_sent_before_opening_do_not_decide() {
    let b = breakers();
    let early = b.admit(VAULT).unwrap();
    open(&b);
    // Sent while closed, answered now: the probe decides, not this.
    assert_eq!(early.report(&Outcome::Served), None);
    assert_eq!(b.status().state(VAULT), BreakerState::Open);
    let probe_permit = probe(&b).await;
    b.record(VAULT, None, &failed("HTTP 500 from vault"), Instant::now());
    assert_eq!(b.status().state(VAULT), BreakerState::HalfOpen);
    probe_permit.report(&Outcome::Served);
    assert_eq!(b.status().state(VAULT), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_probe_is_due_again_at_once() {
    let b = breakers();
    open(&b);
    let permit = probe(&b).await;
    drop(permit);
    assert_eq!(b.status().state(VAULT), BreakerState::Open);
    assert_eq!(
        b.until_probe(VAULT, 0, Instant::now()),
        Some(Duration::ZERO)
    );
}

#[tokio::test(start_paused = true)]
async fn reopening_soon_after_closing_continues_the_longer_interval() {
    let b = breakers();
    open(&b);
    for _ in 0..3 {
        probe(&b).await.report(&failed("HTTP 503 from vault"));
    }
    // Interval now 8 s; the probe succeeds but the real endpoints fail again at once: the
    // next interval (16 s, capped at the 10 s maximum), not the first.
    probe(&b).await.report(&Outcome::Served);
    open(&b);
    let wait = b.until_probe(VAULT, 0, Instant::now()).unwrap();
    assert!(wait >= Duration::from_secs(10).mul_f64(0.8), "{wait:?}");
    probe(&b).await.report(&Outcome::Served);
    // After a quiet while, an outage starts over at the first interval.
    tokio::time::advance(DEFAULT_MAX_PROBE_INTERVAL).await;
    open(&b);
    let wait = b.until_probe(VAULT, 0, Instant::now()).unwrap();
    assert!(wait <= Duration::from_secs(1).mul_f64(1.2), "{wait:?}");
}

#[tokio::test(start_paused = true)]
async fn after_a_probe_closed_it_the_first_real_outage_opens_it_again() {
    let b = breakers();
    open(&b);
    probe(&b).await.report(&Outcome::Served);
    // The status answered, the real endpoint does not: one failure is enough.
    assert!(call(&b, VAULT, &failed("HTTP 503 from vault")));
    assert_eq!(b.status().state(VAULT), BreakerState::Open);
    // A real answer ends the probation: back to the threshold.
    probe(&b).await.report(&Outcome::Served);
    assert!(call(&b, VAULT, &Outcome::Served));
    for _ in 0..DEFAULT_FAILURE_THRESHOLD - 1 {
        assert!(call(&b, VAULT, &failed("HTTP 503 from vault")));
    }
    assert_eq!(b.status().state(VAULT), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn scattered_failures_do_not_keep_it_open() {
    let b = breakers();
    // One request in ten fails: never five in a row, never open.
    for i in 0..1000 {
        let outcome = if i % 10 == 0 {
            failed("HTTP 500 from vault")
        } else {
            Outcome::Served
        };
        assert!(call(&b, VAULT, &outcome), "request {i} refused");
    }
    // A burst opens it; the next probe, answered as most are, closes it.
    open(&b);
    probe(&b).await.report(&Outcome::Served);
    assert_eq!(b.status().state(VAULT), BreakerState::Closed);
}

#[test]
fn bad_settings_are_refused_with_the_setting_named() {
    let bad = |settings: BreakerSettings| Breakers::new(settings).unwrap_err().to_string();
    let ok = BreakerSettings::default();
    assert!(
        bad(BreakerSettings {
            failure_threshold: 0,
            ..ok
        })
        .contains("failure_threshold")
    );
    assert!(
        bad(BreakerSettings {
            first_probe_interval: Duration::ZERO,
            ..ok
        })
        .contains("first_probe_interval")
    );
    assert!(
        bad(BreakerSettings {
            max_probe_interval: Duration::from_millis(500),
            ..ok
        })
        .contains("max_probe_interval")
    );
}

#[test]
fn the_probe_bound_follows_the_schedule() {
    let settings = BreakerSettings::default();
    // Shortest waits 0.8, 1.6, 3.2, 6.4, then 8 each: probes at 0.8, 2.4, 5.6, 12, 20, 28, ...
    assert_eq!(settings.max_probes_within(Duration::from_secs(11)), 3);
    assert_eq!(settings.max_probes_within(Duration::from_secs(47)), 8);
    assert_eq!(settings.max_probes_within(Duration::from_secs(59)), 9);
    assert_eq!(settings.max_probes_within(Duration::from_secs(600)), 77);
}

#[test]
fn service_names_are_path_prefixes() {
    for service in Service::ALL {
        assert_eq!(Service::from_name(service.as_str()), Some(service));
        assert!(
            service
                .status_path()
                .starts_with(&format!("/{service}/api/v1/"))
        );
        assert!(service.status_route().ends_with(service.status_path()));
    }
    assert_eq!(Service::from_name("PrivX"), None);
}
