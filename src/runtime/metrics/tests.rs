//! Unit tests of the metrics: what each report puts into the OpenMetrics text.

mod direct {
    use std::time::Duration;

    use super::super::Metrics;
    use privx_client::{CallObserver, CallRecord};

    /// The value of the one sample line that starts with `series ` (series = name{labels}).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.parse().expect("sample value is a number"))
    }

    #[test]
    fn privx_calls_land_in_counter_and_histogram_buckets() {
        let metrics = Metrics::new();
        let endpoint = "GET /vault/api/v1/secrets/{name}";
        metrics.on_call(&CallRecord {
            endpoint,
            status: 200,
            duration: Duration::from_millis(70),
        });
        metrics.on_call(&CallRecord {
            endpoint,
            status: 0,
            duration: Duration::from_secs(3),
        });
        metrics.on_token_refresh(true);
        metrics.on_token_refresh(false);
        metrics.on_token_refresh(false);

        let text = metrics.encode();
        let requests = |status: &str| {
            sample(
                &text,
                &format!(
                    r#"privx_operator_privx_requests_total{{endpoint="{endpoint}",status="{status}"}}"#
                ),
            )
        };
        assert_eq!(requests("200"), Some(1.0));
        assert_eq!(requests("none"), Some(1.0));
        let bucket = |le: &str| {
            sample(
                &text,
                &format!(
                    r#"privx_operator_privx_request_duration_seconds_bucket{{le="{le}",endpoint="{endpoint}"}}"#
                ),
            )
        };
        // 70 ms falls into le=0.1 and above; 3 s only into le=5.0 and above.
        assert_eq!(bucket("0.05"), Some(0.0));
        assert_eq!(bucket("0.1"), Some(1.0));
        assert_eq!(bucket("2.5"), Some(1.0));
        assert_eq!(bucket("5.0"), Some(2.0));
        assert_eq!(bucket("+Inf"), Some(2.0));
        let sum = sample(
            &text,
            &format!(
                r#"privx_operator_privx_request_duration_seconds_sum{{endpoint="{endpoint}"}}"#
            ),
        )
        .expect("histogram sum present");
        assert!((sum - 3.07).abs() < 1e-9, "sum was {sum}");
        assert_eq!(
            sample(
                &text,
                r#"privx_operator_privx_token_refreshes_total{result="success"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"privx_operator_privx_token_refreshes_total{result="failure"}"#
            ),
            Some(2.0)
        );
    }

    #[test]
    fn breaker_states_are_a_state_set_and_refusals_a_counter() {
        use privx_client::{BreakerState, Service};
        let metrics = Metrics::new();
        metrics.on_breaker_state(Service::Vault, BreakerState::Closed);
        metrics.on_breaker_state(Service::Vault, BreakerState::Open);
        metrics.on_breaker_state(Service::Auth, BreakerState::Closed);
        metrics.on_breaker_refusal(Service::Vault);
        metrics.on_breaker_refusal(Service::Vault);
        let text = metrics.encode();
        let state = |service: &str, state: &str| {
            sample(
                &text,
                &format!(
                    r#"privx_operator_privx_breaker_state{{service="{service}",state="{state}"}}"#
                ),
            )
        };
        assert_eq!(state("vault", "open"), Some(1.0));
        assert_eq!(state("vault", "closed"), Some(0.0));
        assert_eq!(state("vault", "half-open"), Some(0.0));
        assert_eq!(state("auth", "closed"), Some(1.0));
        assert_eq!(
            sample(
                &text,
                r#"privx_operator_privx_breaker_refusals_total{service="vault"}"#
            ),
            Some(2.0)
        );
    }

    fn objects(text: &str, status: &str, reason: &str) -> Option<f64> {
        sample(
            text,
            &format!(
                r#"privx_operator_objects{{controller="vaultsecret",condition="Ready",status="{status}",reason="{reason}"}}"#
            ),
        )
    }

    #[test]
    fn object_gauge_moves_an_object_when_its_condition_changes() {
        let metrics = Metrics::new();
        metrics.set_object_condition("vaultsecret", "ns/a", "Ready", "True", "Synced");
        metrics.set_object_condition("vaultsecret", "ns/b", "Ready", "True", "Synced");
        // Repeating the same report must not count the object twice.
        metrics.set_object_condition("vaultsecret", "ns/b", "Ready", "True", "Synced");
        assert_eq!(objects(&metrics.encode(), "True", "Synced"), Some(2.0));

        metrics.set_object_condition("vaultsecret", "ns/b", "Ready", "False", "PrivxError");
        let text = metrics.encode();
        assert_eq!(objects(&text, "True", "Synced"), Some(1.0));
        assert_eq!(objects(&text, "False", "PrivxError"), Some(1.0));

        metrics.set_object_condition("vaultsecret", "ns/b", "Ready", "True", "Synced");
        let text = metrics.encode();
        assert_eq!(objects(&text, "True", "Synced"), Some(2.0));
        assert_eq!(
            objects(&text, "False", "PrivxError"),
            None,
            "a series no object reports any more is removed"
        );
    }

    #[test]
    fn forgetting_an_object_removes_all_its_conditions_and_nothing_else() {
        let metrics = Metrics::new();
        metrics.set_object_condition("vaultsecret", "ns/a", "Ready", "True", "Synced");
        metrics.set_object_condition("vaultsecret", "ns/a", "Degraded", "False", "Ok");
        metrics.set_object_condition("vaultsecret", "ns/b", "Ready", "True", "Synced");
        // Same key under another controller is another object.
        metrics.set_object_condition("passwordpolicy", "ns/a", "Ready", "True", "Synced");

        metrics.forget_object("vaultsecret", "ns/a");
        let text = metrics.encode();
        assert_eq!(objects(&text, "True", "Synced"), Some(1.0));
        assert!(!text.contains(r#"condition="Degraded""#), "{text}");
        assert_eq!(
            sample(
                &text,
                r#"privx_operator_objects{controller="passwordpolicy",condition="Ready",status="True",reason="Synced"}"#
            ),
            Some(1.0)
        );

        // Forgetting twice, or an unknown object, changes nothing.
        metrics.forget_object("vaultsecret", "ns/a");
        metrics.forget_object("vaultsecret", "ns/unknown");
        assert_eq!(objects(&metrics.encode(), "True", "Synced"), Some(1.0));
    }

    #[test]
    fn leader_gauge_follows_set_leader() {
        let metrics = Metrics::new();
        assert_eq!(
            sample(&metrics.encode(), "privx_operator_leader"),
            Some(0.0)
        );
        metrics.set_leader(true);
        assert_eq!(
            sample(&metrics.encode(), "privx_operator_leader"),
            Some(1.0)
        );
        metrics.set_leader(false);
        assert_eq!(
            sample(&metrics.encode(), "privx_operator_leader"),
            Some(0.0)
        );
    }

    #[test]
    fn kubernetes_writes_are_counted_by_verb_and_resource() {
        let metrics = Metrics::new();
        metrics.kubernetes_write("patch", "secrets");
        metrics.kubernetes_write("patch", "secrets");
        metrics.kubernetes_write("patch", "vaultsecrets/status");
        metrics.kubernetes_write("create", "events");
        let text = metrics.encode();
        let writes = |verb: &str, resource: &str| {
            sample(
                &text,
                &format!(
                    r#"privx_operator_kubernetes_writes_total{{verb="{verb}",resource="{resource}"}}"#
                ),
            )
        };
        assert_eq!(writes("patch", "secrets"), Some(2.0));
        assert_eq!(writes("patch", "vaultsecrets/status"), Some(1.0));
        assert_eq!(writes("create", "events"), Some(1.0));
        assert_eq!(writes("create", "secrets"), None);
        assert!(
            text.trim_end().ends_with("# EOF"),
            "OpenMetrics text ends with # EOF"
        );
    }
}

/// The controllers' view of the metrics: `Metrics` used through `dyn ControllerMetrics`, as
/// the controllers' `Context` holds it.
mod controller_metrics_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::Metrics;
    use crate::controller::core::ControllerMetrics;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.parse().expect("sample value is a number"))
    }

    fn ready(text: &str, controller: &str, status: &str, reason: &str) -> Option<f64> {
        sample(
            text,
            &format!(
                r#"privx_operator_objects{{controller="{controller}",condition="Ready",status="{status}",reason="{reason}"}}"#
            ),
        )
    }

    fn as_controller_metrics(metrics: &Arc<Metrics>) -> Arc<dyn ControllerMetrics> {
        metrics.clone()
    }

    #[test]
    fn reconciles_are_counted_and_timed_and_errors_counted_by_label() {
        let metrics = Arc::new(Metrics::new());
        let reporter = as_controller_metrics(&metrics);
        reporter.reconciled("passwordpolicy", Duration::from_millis(30), None);
        reporter.reconciled(
            "passwordpolicy",
            Duration::from_millis(700),
            Some("privx_unavailable"),
        );
        reporter.reconciled(
            "passwordpolicy",
            Duration::from_millis(3),
            Some("privx_unavailable"),
        );
        reporter.reconciled("vaultsecret", Duration::from_millis(1), Some("kubernetes"));

        let text = metrics.encode();
        let reconciles = |controller: &str| {
            sample(
                &text,
                &format!(r#"privx_operator_reconciles_total{{controller="{controller}"}}"#),
            )
        };
        assert_eq!(reconciles("passwordpolicy"), Some(3.0));
        assert_eq!(reconciles("vaultsecret"), Some(1.0));
        let errors = |controller: &str, reason: &str| {
            sample(
                &text,
                &format!(
                    r#"privx_operator_reconcile_errors_total{{controller="{controller}",reason="{reason}"}}"#
                ),
            )
        };
        assert_eq!(errors("passwordpolicy", "privx_unavailable"), Some(2.0));
        assert_eq!(errors("vaultsecret", "kubernetes"), Some(1.0));
        assert_eq!(
            errors("passwordpolicy", "kubernetes"),
            None,
            "labels are per controller"
        );
        // A successful reconcile is no error of any label.
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("privx_operator_reconcile_errors_total{"))
                .count(),
            2,
            "{text}"
        );

        let bucket = |le: &str| {
            sample(
                &text,
                &format!(
                    r#"privx_operator_reconcile_duration_seconds_bucket{{le="{le}",controller="passwordpolicy"}}"#
                ),
            )
        };
        // 3 ms, 30 ms and 700 ms.
        assert_eq!(bucket("0.005"), Some(1.0));
        assert_eq!(bucket("0.05"), Some(2.0));
        assert_eq!(bucket("0.5"), Some(2.0));
        assert_eq!(bucket("1.0"), Some(3.0));
        assert_eq!(
            sample(
                &text,
                r#"privx_operator_reconcile_duration_seconds_count{controller="passwordpolicy"}"#
            ),
            Some(3.0)
        );
        let sum = sample(
            &text,
            r#"privx_operator_reconcile_duration_seconds_sum{controller="passwordpolicy"}"#,
        )
        .expect("histogram sum");
        assert!((sum - 0.733).abs() < 1e-9, "sum was {sum}");
    }

    #[test]
    fn objects_are_counted_by_their_ready_condition_and_forgotten() {
        let metrics = Arc::new(Metrics::new());
        let reporter = as_controller_metrics(&metrics);
        reporter.object_condition("passwordpolicy", "a", true, "Synced");
        reporter.object_condition("passwordpolicy", "b", true, "Synced");
        reporter.object_condition("passwordpolicy", "c", false, "InvalidSpec");
        reporter.object_condition("vaultsecret", "demo/a", false, "PrivXUnavailable");
        // Reporting the same state again counts nothing twice.
        reporter.object_condition("passwordpolicy", "a", true, "Synced");

        let text = metrics.encode();
        assert_eq!(ready(&text, "passwordpolicy", "True", "Synced"), Some(2.0));
        assert_eq!(
            ready(&text, "passwordpolicy", "False", "InvalidSpec"),
            Some(1.0)
        );
        assert_eq!(
            ready(&text, "vaultsecret", "False", "PrivXUnavailable"),
            Some(1.0)
        );

        // b fails, c is fixed: each object moves from one series to the other.
        reporter.object_condition("passwordpolicy", "b", false, "PrivXUnavailable");
        reporter.object_condition("passwordpolicy", "c", true, "UnsupportedField");
        let text = metrics.encode();
        assert_eq!(ready(&text, "passwordpolicy", "True", "Synced"), Some(1.0));
        assert_eq!(
            ready(&text, "passwordpolicy", "False", "PrivXUnavailable"),
            Some(1.0)
        );
        assert_eq!(
            ready(&text, "passwordpolicy", "True", "UnsupportedField"),
            Some(1.0)
        );
        assert_eq!(ready(&text, "passwordpolicy", "False", "InvalidSpec"), None);

        // Deleted objects leave the gauge; the other controller's objects stay.
        reporter.forget_object("passwordpolicy", "b");
        reporter.forget_object("passwordpolicy", "a");
        let text = metrics.encode();
        assert_eq!(ready(&text, "passwordpolicy", "True", "Synced"), None);
        assert_eq!(
            ready(&text, "passwordpolicy", "False", "PrivXUnavailable"),
            None
        );
        assert_eq!(
            ready(&text, "passwordpolicy", "True", "UnsupportedField"),
            Some(1.0)
        );
        assert_eq!(
            ready(&text, "vaultsecret", "False", "PrivXUnavailable"),
            Some(1.0)
        );
    }

    #[test]
    fn the_stalest_object_per_controller_is_measured_from_its_last_successful_sync() {
        let metrics = Arc::new(Metrics::new());
        let reporter = as_controller_metrics(&metrics);
        reporter.object_condition("vaultsecret", "demo/a", true, "Synced");
        reporter.object_condition("vaultsecret", "demo/b", false, "PrivXUnavailable");
        let start = std::time::Instant::now();
        let age = |text: &str| {
            sample(
                text,
                r#"privx_operator_oldest_sync_age_seconds{controller="vaultsecret"}"#,
            )
            .expect("the staleness gauge")
        };
        // 100 s later neither synced again: the stalest is at least 100 s old.
        let later = start + Duration::from_secs(100);
        assert!(age(&metrics.encode_at(later)) >= 100.0);
        // b succeeds now; a is still as old as it was; once a is gone, only b counts.
        reporter.object_condition("vaultsecret", "demo/b", true, "Synced");
        assert!(age(&metrics.encode_at(later)) >= 100.0);
        reporter.forget_object("vaultsecret", "demo/a");
        let fresh = age(&metrics.encode_at(later));
        assert!((99.0..100.0).contains(&fresh), "{fresh}");
        // A failure does not count as a sync: b keeps the time of its last success.
        reporter.object_condition("vaultsecret", "demo/b", false, "PrivXUnavailable");
        let much_later = later + Duration::from_secs(50);
        assert!(age(&metrics.encode_at(much_later)) >= 149.0);
    }

    #[test]
    fn build_info_and_queue_depth_are_exported() {
        let metrics = Arc::new(Metrics::new());
        let reporter = as_controller_metrics(&metrics);
        reporter.queued("vaultsecret", 7);
        reporter.queued("passwordpolicy", 0);
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                r#"privx_operator_work_queue_depth{controller="vaultsecret"}"#
            ),
            Some(7.0)
        );
        let version = env!("CARGO_PKG_VERSION");
        assert!(
            text.lines()
                .any(|l| l.starts_with("privx_operator_build_info{")
                    && l.contains(&format!("version=\"{version}\""))
                    && l.contains("revision=")
                    && l.ends_with(" 1")),
            "{text}"
        );
    }
}
