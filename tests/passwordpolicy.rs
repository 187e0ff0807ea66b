//! PasswordPolicy reconcile tests: the real controller against a fake Kubernetes API and the
//! real PrivX simulator over 127.0.0.1, in both password-policy generations (PrivX 34 and 35)
//! wherever the behaviour applies to both.

mod support;

use std::sync::Arc;
use std::time::Duration;

use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use privx_client::config::PolicyGenerationSetting;
use privx_client::{PasswordPolicy as PrivxPolicy, PrivxError};
use privx_operator::controller::password_policy;
use privx_operator::crd::Ownership;
use privx_operator::runtime::metrics::Metrics;
use privx_sim::{Fault, PolicyUnknownFields, PolicyUnsetFields, SimOptions, SimPolicyGeneration};
use serde_json::{Value, json};
use support::{Harness, NS, policy_path};

const GENERATIONS: [SimPolicyGeneration; 2] = [SimPolicyGeneration::V34, SimPolicyGeneration::V35];

const POLICY_CREATE: &str = "POST /secrets-manager/api/v1/password-policy";
const POLICY_UPDATE: &str = "PUT /secrets-manager/api/v1/password-policy/{id}";
const POLICY_DELETE: &str = "DELETE /secrets-manager/api/v1/password-policy/{id}";

const DAY: Duration = Duration::from_secs(86_400);

fn sim(generation: SimPolicyGeneration) -> SimOptions {
    SimOptions {
        policy_generation: generation,
        ..SimOptions::default()
    }
}

async fn harness(generation: SimPolicyGeneration) -> Harness {
    Harness::with_options(sim(generation)).await
}

fn spec() -> Value {
    json!({"rotationInterval": "720h", "retryInterval": "5m", "maxVersions": 5, "numberOfRetries": 3})
}

/// The PrivX id the PasswordPolicy's status records.
fn recorded_id(h: &Harness, name: &str) -> String {
    h.get_policy(name)
        .status
        .and_then(|s| s.id)
        .expect("status records the PrivX id")
}

async fn privx_policy(h: &Harness, id: &str) -> PrivxPolicy {
    h.someone_else
        .get_policy(id)
        .await
        .expect("policy in PrivX")
}

fn count(items: &[String], wanted: &str) -> usize {
    items.iter().filter(|i| *i == wanted).count()
}

/// Changes a policy in PrivX behind the operator's back.
async fn tamper(h: &Harness, id: &str, change: impl FnOnce(&mut PrivxPolicy)) {
    let mut p = privx_policy(h, id).await;
    change(&mut p);
    h.someone_else.update_policy(id, &p).await.unwrap();
}

fn finalizers(h: &Harness, name: &str) -> Value {
    h.kube.get(&policy_path(name)).expect("object exists")["metadata"]["finalizers"].clone()
}

#[tokio::test]
async fn creates_records_the_id_and_then_writes_nothing() {
    for generation in GENERATIONS {
        let mut h = harness(generation).await;
        h.policy("db-rotation", spec());
        h.sim.clear_requests();

        let action = h.reconcile_policy("db-rotation").await.expect("reconcile");
        assert_ne!(action, Action::await_change(), "{generation:?}: refreshed");
        // One read of the policies (the listing by name) besides the write: the status comes
        // from what the write knows, not from reading the policy back. (The API generation is
        // read once per client.)
        let reads: Vec<String> = h
            .privx_reads()
            .into_iter()
            .filter(|r| !r.ends_with("/status"))
            .collect();
        assert_eq!(
            reads,
            ["GET /secrets-manager/api/v1/password-policies"],
            "{generation:?}"
        );

        let status = h.get_policy("db-rotation").status.unwrap();
        let id = status.id.clone().expect("id recorded");
        let stored = privx_policy(&h, &id).await;
        assert_eq!(stored.name, "db-rotation");
        assert_eq!(stored.rotation_interval, Some(30 * DAY));
        assert_eq!(stored.retry_interval, Some(Duration::from_secs(300)));
        assert_eq!(stored.max_versions, Some(5));
        assert_eq!(stored.number_of_retries, Some(3));
        // Lengths and classes are sent with their effective defaults.
        assert_eq!(stored.password_min_length, Some(16));
        assert_eq!(stored.password_max_length, Some(32));
        assert_eq!(stored.use_special_characters, Some(true));
        assert_eq!(status.name.as_deref(), Some("db-rotation"));
        assert_eq!(status.ownership, Some(Ownership::Created));
        assert_eq!(status.observed_generation, Some(1));
        assert!(status.created.is_some(), "PrivX's timestamps are copied");
        for type_ in ["Ready", "Synced"] {
            let (s, reason, message) = h.policy_condition("db-rotation", type_);
            assert_eq!((s.as_str(), reason.as_str()), ("True", "Synced"));
            assert!(message.contains(&id), "{message}");
        }
        assert!(
            status
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(1))
        );
        assert_eq!(h.privx_writes(), [POLICY_CREATE], "{generation:?}");
        // Retain (default): no finalizer, one status write.
        assert_eq!(
            h.kube_writes(),
            [format!("PATCH {}/status", policy_path("db-rotation"))]
        );
        assert_eq!(h.kube.event_reasons(), ["Created"]);

        // Nothing changed: no write anywhere, no event.
        h.kube.clear_requests();
        h.sim.clear_requests();
        h.reconcile_policy("db-rotation").await.unwrap();
        assert!(h.kube.writes().is_empty(), "{:?}", h.kube_writes());
        assert!(h.kube.event_reasons().is_empty());
        assert!(h.privx_writes().is_empty(), "{:?}", h.privx_writes());

        // A spec change updates the same PrivX policy and moves observedGeneration.
        let mut changed = spec();
        changed["maxVersions"] = json!(7);
        h.policy("db-rotation", changed);
        h.sim.clear_requests();
        h.reconcile_policy("db-rotation").await.unwrap();
        assert_eq!(h.privx_writes(), [POLICY_UPDATE]);
        assert_eq!(privx_policy(&h, &id).await.max_versions, Some(7));
        assert_eq!(recorded_id(&h, "db-rotation"), id);
        assert_eq!(
            h.get_policy("db-rotation")
                .status
                .unwrap()
                .observed_generation,
            Some(2)
        );
        assert_eq!(count(&h.kube.event_reasons(), "Updated"), 1);
        assert_eq!(count(&h.kube.event_reasons(), "DriftCorrected"), 0);
    }
}

#[tokio::test]
async fn privx_name_comes_from_spec_name() {
    for generation in GENERATIONS {
        let mut h = harness(generation).await;
        let mut s = spec();
        s["name"] = json!("Team A rotation");
        h.policy("team-a", s);
        h.reconcile_policy("team-a").await.unwrap();
        let id = recorded_id(&h, "team-a");
        assert_eq!(privx_policy(&h, &id).await.name, "Team A rotation");
    }
}

#[tokio::test]
async fn drift_in_privx_is_put_back_with_an_event() {
    for generation in GENERATIONS {
        let mut h = harness(generation).await;
        h.policy("db-rotation", spec());
        h.reconcile_policy("db-rotation").await.unwrap();
        let id = recorded_id(&h, "db-rotation");

        tamper(&h, &id, |p| {
            p.max_versions = Some(99);
            p.rotation_interval = Some(DAY);
            p.use_numbers = Some(false);
        })
        .await;
        h.kube.clear_requests();
        h.sim.clear_requests();
        h.reconcile_policy("db-rotation").await.unwrap();

        let stored = privx_policy(&h, &id).await;
        assert_eq!(stored.max_versions, Some(5), "{generation:?}");
        assert_eq!(stored.rotation_interval, Some(30 * DAY));
        assert_eq!(stored.use_numbers, Some(true));
        assert_eq!(h.privx_writes(), [POLICY_UPDATE]);
        assert_eq!(h.kube.event_reasons(), ["DriftCorrected"]);
        assert!(
            h.kube
                .event_notes()
                .iter()
                .any(|n| n.contains("changed outside Kubernetes")),
            "{:?}",
            h.kube.event_notes()
        );
        assert_eq!(h.policy_ready("db-rotation").1, "Synced");

        // Put back once; then quiet again.
        h.sim.clear_requests();
        h.kube.clear_requests();
        h.reconcile_policy("db-rotation").await.unwrap();
        assert!(h.privx_writes().is_empty());
        assert!(h.kube.event_reasons().is_empty());

        // A policy deleted in PrivX is created again (the recorded id is gone).
        h.someone_else.delete_policy(&id).await.unwrap();
        h.reconcile_policy("db-rotation").await.unwrap();
        let new_id = recorded_id(&h, "db-rotation");
        assert_ne!(new_id, id);
        assert_eq!(privx_policy(&h, &new_id).await.max_versions, Some(5));
    }
}

#[tokio::test]
async fn the_same_duration_in_another_spelling_is_not_drift() {
    for generation in GENERATIONS {
        // PrivX stores its canonical spelling: 720h is read back as 720h0m0s (34) or P30D (35).
        let mut h = Harness::with_options(SimOptions {
            policy_normalise_durations: true,
            ..sim(generation)
        })
        .await;
        h.policy("db-rotation", spec());
        h.reconcile_policy("db-rotation").await.unwrap();
        let id = recorded_id(&h, "db-rotation");
        for spelling in ["720h", "720h0m0s", "P30D", "PT720H"] {
            let mut s = spec();
            s["rotationInterval"] = json!(spelling);
            s["retryInterval"] = json!(if spelling.starts_with('P') {
                "PT5M"
            } else {
                "5m0s"
            });
            h.policy("db-rotation", s);
            h.sim.clear_requests();
            h.kube.clear_requests();
            h.reconcile_policy("db-rotation").await.unwrap();
            assert!(
                h.privx_writes().is_empty(),
                "{generation:?} {spelling}: {:?}",
                h.privx_writes()
            );
            assert!(h.kube.event_reasons().is_empty(), "{spelling}");
            let object = h.get_policy("db-rotation");
            let status = object.status.unwrap();
            assert_eq!(status.id.as_deref(), Some(id.as_str()));
            assert_eq!(h.policy_ready("db-rotation").1, "Synced");
            // The respelling is a new generation, observed without touching PrivX.
            assert_eq!(status.observed_generation, object.metadata.generation);
        }
        // A different meaning is a change.
        let mut s = spec();
        s["rotationInterval"] = json!("P31D");
        h.policy("db-rotation", s);
        h.sim.clear_requests();
        h.reconcile_policy("db-rotation").await.unwrap();
        assert_eq!(h.privx_writes(), [POLICY_UPDATE]);
        assert_eq!(
            privx_policy(&h, &id).await.rotation_interval,
            Some(31 * DAY)
        );
    }
}

#[tokio::test]
async fn an_unmanaged_policy_of_the_same_name_needs_adopt_and_is_then_owned() {
    for generation in GENERATIONS {
        let mut h = harness(generation).await;
        let theirs = PrivxPolicy {
            name: "shared-rotation".into(),
            rotation_interval: Some(7 * DAY),
            max_versions: Some(2),
            password_min_length: Some(12),
            password_max_length: Some(12),
            ..Default::default()
        };
        let their_id = h.someone_else.create_policy(&theirs).await.unwrap();
        let before = privx_policy(&h, &their_id).await;
        let mut s = spec();
        s["name"] = json!("shared-rotation");
        h.policy("shared", s.clone());
        h.sim.clear_requests();

        let action = h
            .reconcile_policy("shared")
            .await
            .expect("a conflict is a status, not an error");
        assert_ne!(action, Action::await_change(), "looked at again later");
        let (ready, reason, message) = h.policy_ready("shared");
        assert_eq!((ready.as_str(), reason.as_str()), ("False", "Conflict"));
        assert!(
            message.contains("spec.adopt") && message.contains(&their_id),
            "{message}"
        );
        assert_eq!(h.policy_condition("shared", "Synced").1, "Conflict");
        assert!(h.privx_writes().is_empty(), "{:?}", h.privx_writes());
        assert_eq!(privx_policy(&h, &their_id).await, before, "untouched");
        assert_eq!(
            h.get_policy("shared").status.unwrap().id,
            None,
            "not recorded as ours"
        );
        assert_eq!(h.kube.event_reasons(), ["Conflict"]);
        // The same refusal again: no second event, no status write.
        h.kube.clear_requests();
        h.reconcile_policy("shared").await.unwrap();
        assert!(h.kube.event_reasons().is_empty());
        assert!(h.kube.writes().is_empty(), "{:?}", h.kube_writes());

        // With adopt: taken over and written.
        s["adopt"] = json!(true);
        h.policy("shared", s.clone());
        h.reconcile_policy("shared").await.unwrap();
        let status = h.get_policy("shared").status.unwrap();
        assert_eq!(status.id.as_deref(), Some(their_id.as_str()));
        assert_eq!(status.ownership, Some(Ownership::Adopted));
        let stored = privx_policy(&h, &their_id).await;
        assert_eq!(stored.max_versions, Some(5));
        assert_eq!(stored.rotation_interval, Some(30 * DAY));
        assert_eq!(h.policy_ready("shared").1, "Synced");
        assert_eq!(count(&h.kube.event_reasons(), "Adopted"), 1);

        // From then on it is ours, with or without adopt: drift is corrected.
        s.as_object_mut().unwrap().remove("adopt");
        h.policy("shared", s);
        h.reconcile_policy("shared").await.unwrap();
        tamper(&h, &their_id, |p| p.max_versions = Some(1)).await;
        h.kube.clear_requests();
        h.reconcile_policy("shared").await.unwrap();
        assert_eq!(privx_policy(&h, &their_id).await.max_versions, Some(5));
        assert_eq!(h.kube.event_reasons(), ["DriftCorrected"]);
        assert_eq!(
            h.get_policy("shared").status.unwrap().ownership,
            Some(Ownership::Adopted)
        );
    }
}

#[tokio::test]
async fn the_generation_setting_decides_the_wire_format() {
    use PolicyGenerationSetting::{Auto, V34, V35};
    for server in GENERATIONS {
        for setting in [Auto, V34, V35] {
            for report_version in [true, false] {
                let mut h = Harness::with_generation(
                    setting,
                    SimOptions {
                        report_version,
                        ..sim(server)
                    },
                )
                .await;
                // Only one duration, so the field PrivX refuses is known.
                h.policy("p", json!({"rotationInterval": "720h", "maxVersions": 3}));
                let result = h.reconcile_policy("p").await;
                let speaks_servers_format = match setting {
                    Auto => true,
                    V34 => server == SimPolicyGeneration::V34,
                    V35 => server == SimPolicyGeneration::V35,
                };
                let case = format!(
                    "server {server:?}, setting {setting:?}, version reported: {report_version}"
                );
                let (ready, reason, message) = h.policy_ready("p");
                if speaks_servers_format {
                    result.unwrap_or_else(|e| panic!("{case}: {e}"));
                    assert_eq!(
                        (ready.as_str(), reason.as_str()),
                        ("True", "Synced"),
                        "{case}"
                    );
                    let id = recorded_id(&h, "p");
                    assert_eq!(
                        privx_policy(&h, &id).await.rotation_interval,
                        Some(30 * DAY)
                    );
                } else {
                    // The other generation's spelling: the server refuses the duration.
                    let error = result.expect_err(&case);
                    assert_eq!(error.label(), "privx_invalid_request", "{case}");
                    assert_eq!(ready, "False", "{case}");
                    assert_eq!(reason, "InvalidSpec", "{case}");
                    assert!(message.contains("rotation_interval"), "{case}: {message}");
                    assert!(
                        !h.privx_writes().is_empty(),
                        "{case}: the forced format was sent"
                    );
                    assert!(
                        h.someone_else
                            .list_policies()
                            .await
                            .unwrap()
                            .iter()
                            .all(|p| p.name != "p"),
                        "{case}"
                    );
                }
            }
        }
    }
}

/// Whether PrivX refuses or ignores fields it does not know, and whether it answers unset
/// fields with zero values or leaves them out (docs/privx-api.md section 3), the operator
/// syncs, detects the generation (without a version in `/status`) and then writes no more.
#[tokio::test]
async fn either_answer_on_unknown_and_unset_fields_keeps_policies_synced() {
    for server in GENERATIONS {
        for unknown in [PolicyUnknownFields::Refuse, PolicyUnknownFields::Ignore] {
            for unset in [PolicyUnsetFields::Zero, PolicyUnsetFields::Omit] {
                let case = format!("server {server:?}, unknown {unknown:?}, unset {unset:?}");
                let mut h = Harness::with_generation(
                    PolicyGenerationSetting::Auto,
                    SimOptions {
                        report_version: false,
                        policy_unknown_fields: unknown,
                        policy_unset_fields: unset,
                        ..sim(server)
                    },
                )
                .await;
                h.policy("p", spec());
                h.reconcile_policy("p")
                    .await
                    .unwrap_or_else(|e| panic!("{case}: {e}"));
                assert_eq!(h.policy_ready("p").1, "Synced", "{case}");
                let id = recorded_id(&h, "p");
                let stored = privx_policy(&h, &id).await;
                assert_eq!(stored.rotation_interval, Some(30 * DAY), "{case}");
                assert_eq!(stored.max_versions, Some(5), "{case}");
                h.sim.clear_requests();
                h.reconcile_policy("p")
                    .await
                    .unwrap_or_else(|e| panic!("{case}: {e}"));
                let writes: Vec<String> = h
                    .privx_writes()
                    .into_iter()
                    .filter(|r| r.contains("password-polic"))
                    .collect();
                assert_eq!(writes, Vec::<String>::new(), "{case}: nothing drifted");
                assert_eq!(h.policy_ready("p").1, "Synced", "{case}");
            }
        }
    }
}

/// The hardest case for detection: no version in `/status`, no policy in PrivX, no duration in
/// the spec. The guess (v35) is sent to a v34 server; a refusing server names the v35 field, an
/// ignoring one accepts the body without it. Either way the operator ends at v34, names the
/// unsupported field, and stops writing.
#[tokio::test]
async fn a_guessed_generation_is_corrected_whether_unknown_fields_are_refused_or_ignored() {
    for unknown in [PolicyUnknownFields::Refuse, PolicyUnknownFields::Ignore] {
        let mut seed = privx_sim::demo_seed();
        seed.policies.clear();
        let mut h = Harness::with_generation(
            PolicyGenerationSetting::Auto,
            SimOptions {
                seed,
                report_version: false,
                policy_unknown_fields: unknown,
                ..sim(SimPolicyGeneration::V34)
            },
        )
        .await;
        h.policy("p", json!({"maxVersions": 3, "rotateOnRelease": true}));
        // Refuse: the first pass stops at the refusal, which corrects the generation. Ignore:
        // the first pass writes the guess, the second reads the v34 shape back and stops at
        // the field v34 lacks. Each failed pass is retried by the controller's backoff.
        let mut passes = Vec::new();
        for _ in 0..3 {
            passes.push(h.reconcile_policy("p").await.is_ok());
        }
        assert_eq!(passes.last(), Some(&true), "{unknown:?}: {passes:?}");
        let (ready, reason, message) = h.policy_ready("p");
        assert_eq!(
            (ready.as_str(), reason.as_str()),
            ("True", "UnsupportedField"),
            "{unknown:?}: {message}"
        );
        assert!(message.contains("spec.rotateOnRelease"), "{message}");
        h.sim.clear_requests();
        h.kube.clear_requests();
        h.reconcile_policy("p").await.unwrap();
        let writes: Vec<String> = h
            .privx_writes()
            .into_iter()
            .filter(|r| r.contains("password-polic"))
            .collect();
        assert_eq!(writes, Vec::<String>::new(), "{unknown:?}: steady");
        assert_eq!(h.kube.event_reasons(), Vec::<String>::new(), "{unknown:?}");
    }
}

#[tokio::test]
async fn fields_the_server_generation_lacks_are_named_in_the_condition() {
    // (server, spec fields, the camelCase field the server lacks or None)
    let cases = [
        (
            SimPolicyGeneration::V35,
            json!({"fallbackToPrevious": true}),
            Some("spec.fallbackToPrevious"),
        ),
        (
            SimPolicyGeneration::V35,
            json!({"deleteVersionAfter": "2160h"}),
            Some("spec.deleteVersionAfter"),
        ),
        (
            SimPolicyGeneration::V34,
            json!({"rotateOnRelease": true}),
            Some("spec.rotateOnRelease"),
        ),
        (
            SimPolicyGeneration::V34,
            json!({"maxCheckoutDuration": "PT8H", "maxConcurrentCheckouts": 2}),
            Some("spec.maxCheckoutDuration"),
        ),
        (
            SimPolicyGeneration::V34,
            json!({"fallbackToPrevious": true}),
            None,
        ),
        (
            SimPolicyGeneration::V35,
            json!({"rotateOnRelease": true}),
            None,
        ),
    ];
    for (server, extra, missing) in cases {
        let mut h = harness(server).await;
        let mut s = spec();
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        h.policy("p", s);
        h.reconcile_policy("p").await.expect("reconcile");
        let id = recorded_id(&h, "p");
        let stored = privx_policy(&h, &id).await;
        assert_eq!(stored.max_versions, Some(5), "the rest is synced");
        let (ready, ready_reason, message) = h.policy_ready("p");
        let (synced, synced_reason, _) = h.policy_condition("p", "Synced");
        match missing {
            Some(field) => {
                assert_eq!(ready_reason, "UnsupportedField", "{server:?} {extra}");
                assert_eq!(ready, "True", "the policy is usable");
                assert_eq!(
                    (synced.as_str(), synced_reason.as_str()),
                    ("False", "UnsupportedField")
                );
                assert!(message.contains(field), "{message}");
                // Not sent, so not stored. (The server's own unset fields may read back as
                // zero values: that is PrivX's default, not something the operator sent.)
                let unsent = match server {
                    SimPolicyGeneration::V34 => [
                        stored.rotate_on_release.is_some(),
                        stored.max_checkout_duration.is_some(),
                    ],
                    SimPolicyGeneration::V35 => [
                        stored.fallback_to_previous.is_some(),
                        stored.delete_version_after.is_some(),
                    ],
                };
                assert_eq!(unsent, [false, false], "{server:?} {extra}");
            }
            None => {
                assert_eq!((ready.as_str(), ready_reason.as_str()), ("True", "Synced"));
                assert_eq!(synced, "True");
                let sent = match server {
                    SimPolicyGeneration::V34 => stored.fallback_to_previous,
                    SimPolicyGeneration::V35 => stored.rotate_on_release,
                };
                assert_eq!(sent, Some(true), "{server:?} {extra}");
            }
        }
        // Either way a steady state: the next reconcile writes nothing.
        h.kube.clear_requests();
        h.sim.clear_requests();
        h.reconcile_policy("p").await.unwrap();
        assert!(h.privx_writes().is_empty(), "{server:?} {extra}");
        assert!(h.kube.writes().is_empty(), "{:?}", h.kube_writes());
        assert!(h.kube.event_reasons().is_empty());
    }
}

#[tokio::test]
async fn retain_keeps_the_privx_policy_and_needs_no_finalizer() {
    for generation in GENERATIONS {
        let mut h = harness(generation).await;
        h.policy("p", spec());
        h.reconcile_policy("p").await.unwrap();
        let id = recorded_id(&h, "p");
        assert!(finalizers(&h, "p").is_null());
        h.delete(&policy_path("p"));
        assert!(h.kube.get(&policy_path("p")).is_none());
        privx_policy(&h, &id).await;

        // Explicit Retain after Delete: the finalizer is dropped again.
        let mut s = spec();
        s["deletionPolicy"] = json!("Delete");
        h.policy("q", s.clone());
        h.reconcile_policy("q").await.unwrap();
        assert_eq!(finalizers(&h, "q"), json!(["privx-operator.dev/cleanup"]));
        s["deletionPolicy"] = json!("Retain");
        h.policy("q", s);
        h.reconcile_policy("q").await.unwrap();
        assert_eq!(finalizers(&h, "q"), json!([]));
        let id = recorded_id(&h, "q");
        h.delete(&policy_path("q"));
        assert!(h.kube.get(&policy_path("q")).is_none());
        privx_policy(&h, &id).await;
    }
}

#[tokio::test]
async fn delete_removes_the_privx_policy_then_the_finalizer() {
    for generation in GENERATIONS {
        let mut h = harness(generation).await;
        let mut s = spec();
        s["deletionPolicy"] = json!("Delete");
        h.policy("p", s);
        h.reconcile_policy("p").await.unwrap();
        // The finalizer is in place, and the PrivX name recorded (in the same metadata patch),
        // before the PrivX create; the id is recorded after it.
        let writes = h.kube_writes();
        assert_eq!(
            writes,
            [
                format!("PATCH {}", policy_path("p")),
                format!("PATCH {}/status", policy_path("p")),
            ]
        );
        assert_eq!(finalizers(&h, "p"), json!(["privx-operator.dev/cleanup"]));
        assert_eq!(
            h.kube.get(&policy_path("p")).unwrap()["metadata"]["annotations"]["privx-operator.dev/cleanup-target"],
            r#"{"name":"p"}"#
        );
        let id = recorded_id(&h, "p");

        h.delete(&policy_path("p"));
        h.sim.clear_requests();
        let action = h.reconcile_policy("p").await.unwrap();
        assert_eq!(action, Action::await_change());
        assert_eq!(h.privx_writes(), [POLICY_DELETE]);
        assert!(matches!(
            h.someone_else.get_policy(&id).await,
            Err(PrivxError::NotFound { .. })
        ));
        assert!(
            h.kube.get(&policy_path("p")).is_none(),
            "finalizer released"
        );
        assert!(h.kube.event_reasons().contains(&"Deleted".to_string()));
    }
}

#[tokio::test]
async fn a_policy_in_use_keeps_the_finalizer_and_is_retried_with_backoff() {
    for (generation, in_use_code) in [
        (SimPolicyGeneration::V34, "INVALID_REQUEST_DATA"),
        (SimPolicyGeneration::V35, "INVALID_REQUEST_DATA"),
        (SimPolicyGeneration::V35, "POLICY_IN_USE"),
    ] {
        let mut h = Harness::with_options(SimOptions {
            policy_in_use_code: in_use_code.into(),
            ..sim(generation)
        })
        .await;
        let mut s = spec();
        s["deletionPolicy"] = json!("Delete");
        h.policy("p", s);
        h.reconcile_policy("p").await.unwrap();
        let id = recorded_id(&h, "p");
        assert!(h.sim.set_policy_in_use(&id, true));
        h.delete(&policy_path("p"));

        let backoff_key = "p";
        for attempt in 1..=2u32 {
            let error = h
                .reconcile_policy("p")
                .await
                .expect_err("a refused delete is an error, for backoff");
            assert!(error.to_string().contains(&id), "{error}");
            let object = h.kube.get(&policy_path("p")).expect("not gone");
            assert_eq!(
                object["metadata"]["finalizers"],
                json!(["privx-operator.dev/cleanup"])
            );
            let (ready, reason, message) = h.policy_ready("p");
            assert_eq!(
                (ready.as_str(), reason.as_str()),
                ("False", "DeleteBlocked")
            );
            assert!(
                message.contains("in use") && message.contains("finalizer"),
                "{message}"
            );
            assert!(message.contains("deletionPolicy: Retain"), "{message}");
            // The controller's error policy backs off per object, longer each time.
            let guard = Arc::new(DeserializeGuard(Ok(h.get_policy("p"))));
            let _ = password_policy::error_policy(guard, &error, h.ctx.core.clone());
            assert_eq!(
                h.ctx.backoff.failures("passwordpolicy", backoff_key),
                attempt
            );
            assert_eq!(h.ctx.backoff.failures("passwordpolicy", "other"), 0);
        }
        assert!(
            h.kube
                .event_reasons()
                .contains(&"DeleteBlocked".to_string())
        );
        privx_policy(&h, &id).await;

        // No longer in use: deleted, finalizer released, backoff forgotten.
        assert!(h.sim.set_policy_in_use(&id, false));
        h.reconcile_policy("p").await.expect("deleted now");
        assert!(h.kube.get(&policy_path("p")).is_none());
        assert!(matches!(
            h.someone_else.get_policy(&id).await,
            Err(PrivxError::NotFound { .. })
        ));
        assert_eq!(h.ctx.backoff.failures("passwordpolicy", backoff_key), 0);
    }
}

#[tokio::test]
async fn deletion_never_hangs_on_an_invalid_spec() {
    for generation in GENERATIONS {
        let mut h = harness(generation).await;
        let mut s = spec();
        s["deletionPolicy"] = json!("Delete");
        h.policy("p", s.clone());
        h.reconcile_policy("p").await.unwrap();
        let id = recorded_id(&h, "p");

        // The spec turns invalid (min above max): refused, nothing written to PrivX.
        s["passwordMinLength"] = json!(40);
        s["passwordMaxLength"] = json!(20);
        h.policy("p", s);
        h.sim.clear_requests();
        let action = h.reconcile_policy("p").await.unwrap();
        assert_eq!(action, Action::await_change());
        let (ready, reason, message) = h.policy_ready("p");
        assert_eq!((ready.as_str(), reason.as_str()), ("False", "InvalidSpec"));
        assert!(message.contains("spec.passwordMinLength"), "{message}");
        assert!(h.privx_writes().is_empty());

        // Deleting it still cleans up what status recorded.
        h.delete(&policy_path("p"));
        h.reconcile_policy("p").await.unwrap();
        assert!(h.kube.get(&policy_path("p")).is_none());
        assert!(matches!(
            h.someone_else.get_policy(&id).await,
            Err(PrivxError::NotFound { .. })
        ));

        // A finalizer with nothing recorded (never synced) is released without PrivX.
        let mut s = spec();
        s["deletionPolicy"] = json!("Delete");
        s["retryInterval"] = json!("soon");
        h.policy("never", s);
        h.reconcile_policy("never").await.unwrap();
        assert_eq!(h.policy_ready("never").1, "InvalidSpec");
        let mut o = h.kube.get(&policy_path("never")).unwrap();
        o["metadata"]["finalizers"] = json!(["privx-operator.dev/cleanup"]);
        h.kube.put(&policy_path("never"), o);
        h.delete(&policy_path("never"));
        h.sim.clear_requests();
        h.reconcile_policy("never").await.unwrap();
        assert!(h.kube.get(&policy_path("never")).is_none());
        assert!(h.privx_writes().is_empty());
    }
}

#[tokio::test]
async fn a_policy_change_applies_to_the_next_generated_password_only() {
    for generation in GENERATIONS {
        let mut h = harness(generation).await;
        h.policy(
            "app-passwords",
            json!({"maxVersions": 3, "passwordMinLength": 20, "passwordMaxLength": 20, "useSpecialCharacters": false}),
        );
        h.reconcile_policy("app-passwords").await.unwrap();
        let spec = json!({
            "source": {"generate": {"passwordPolicyRef": {"name": "app-passwords"}, "key": "password"}},
            "mirror": {},
        });
        h.vault_secret("gen", spec.clone());
        h.reconcile("gen").await.unwrap();
        let first = h.secret_data(NS, "gen").unwrap()["password"].clone();
        assert_eq!(first.len(), 20);

        // The policy changes: PrivX follows, the existing password does not.
        h.policy(
            "app-passwords",
            json!({"maxVersions": 3, "passwordMinLength": 28, "passwordMaxLength": 28}),
        );
        h.reconcile_policy("app-passwords").await.unwrap();
        let id = recorded_id(&h, "app-passwords");
        assert_eq!(
            privx_policy(&h, &id).await.password_min_length,
            Some(28),
            "{generation:?}"
        );
        h.reconcile("gen").await.unwrap();
        h.reconcile("gen").await.unwrap();
        assert_eq!(h.secret_data(NS, "gen").unwrap()["password"], first);
        assert_eq!(h.ready_reason("gen").1, "Synced");

        // The next generation follows the new policy.
        h.vault_secret_with(
            "gen",
            spec,
            json!({"annotations": {"privx-operator.dev/regenerate": "now"}}),
        );
        h.reconcile("gen").await.unwrap();
        let second = h.secret_data(NS, "gen").unwrap()["password"].clone();
        assert_ne!(second, first);
        assert_eq!(second.len(), 28);
        // Passwords never reach PasswordPolicy status or events.
        let status = serde_json::to_string(&h.get_policy("app-passwords").status).unwrap();
        for password in [&first, &second] {
            assert!(!status.contains(password.as_str()));
            assert!(
                h.kube
                    .event_notes()
                    .iter()
                    .all(|n| !n.contains(password.as_str()))
            );
        }
    }
}

#[tokio::test]
async fn a_vault_secret_waiting_for_its_policy_syncs_once_the_policy_exists() {
    for generation in GENERATIONS {
        let mut h = harness(generation).await;
        h.vault_secret(
            "gen",
            json!({"source": {"generate": {"passwordPolicyRef": {"name": "later"}, "key": "password"}}, "mirror": {}}),
        );
        h.reconcile("gen").await.unwrap();
        let (ready, reason, message) = h.ready_reason("gen");
        assert_eq!(
            (ready.as_str(), reason.as_str()),
            ("False", "PolicyNotFound")
        );
        assert!(message.contains("later"), "{message}");
        assert!(h.secret_data(NS, "gen").is_none());

        // The policy appears (the runner's policy watch maps it to this VaultSecret).
        h.policy(
            "later",
            json!({"maxVersions": 2, "passwordMinLength": 24, "passwordMaxLength": 24}),
        );
        h.reconcile_policy("later").await.unwrap();
        assert_eq!(h.policy_ready("later").1, "Synced");
        h.reconcile("gen").await.unwrap();
        assert_eq!(h.ready_reason("gen").1, "Synced", "{generation:?}");
        assert_eq!(h.secret_data(NS, "gen").unwrap()["password"].len(), 24);
    }
}

#[tokio::test]
async fn a_privx_outage_fails_with_backoff_and_recovers_on_its_own() {
    for generation in GENERATIONS {
        let metrics = Arc::new(Metrics::new());
        let mut h = Harness::build(
            PolicyGenerationSetting::Auto,
            sim(generation),
            metrics.clone(),
        )
        .await;
        h.policy("p", spec());
        h.reconcile_policy("p").await.unwrap();
        let id = recorded_id(&h, "p");

        h.sim
            .set_faults(vec![Fault::status("/secrets-manager/*", 503)]);
        let mut changed = spec();
        changed["maxVersions"] = json!(8);
        h.policy("p", changed.clone());
        let error = h
            .reconcile_policy("p")
            .await
            .expect_err("PrivX down is an error, for backoff");
        assert_eq!(error.label(), "privx_unavailable");
        let (ready, reason, _) = h.policy_ready("p");
        assert_eq!(
            (ready.as_str(), reason.as_str()),
            ("False", "PrivXUnavailable"),
            "{generation:?}"
        );
        assert_eq!(
            h.get_policy("p").status.unwrap().id.as_deref(),
            Some(id.as_str()),
            "what was recorded is kept"
        );
        let guard = Arc::new(DeserializeGuard(Ok(h.get_policy("p"))));
        let _ = password_policy::error_policy(guard, &error, h.ctx.core.clone());
        assert_eq!(h.ctx.backoff.failures("passwordpolicy", "p"), 1);
        let text = metrics.encode();
        assert!(
            text.contains(r#"privx_operator_reconcile_errors_total{controller="passwordpolicy",reason="privx_unavailable"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"privx_operator_objects{controller="passwordpolicy",condition="Ready",status="False",reason="PrivXUnavailable"} 1"#),
            "{text}"
        );

        // An invalid spec is refused before any PrivX call: a status, not a failure, so the
        // failure streak ends (the next failure starts from the shortest delay again).
        let mut invalid = spec();
        invalid["retryInterval"] = json!("soon");
        h.policy("p", invalid);
        assert_eq!(
            h.reconcile_policy("p").await.unwrap(),
            Action::await_change()
        );
        assert_eq!(h.policy_ready("p").1, "InvalidSpec");
        assert_eq!(h.ctx.backoff.failures("passwordpolicy", "p"), 0);
        h.policy("p", changed);
        let error = h.reconcile_policy("p").await.expect_err("still down");
        let guard = Arc::new(DeserializeGuard(Ok(h.get_policy("p"))));
        let _ = password_policy::error_policy(guard, &error, h.ctx.core.clone());
        assert_eq!(h.ctx.backoff.failures("passwordpolicy", "p"), 1);

        // PrivX is back: synced, the failure count forgotten, the metrics follow.
        h.sim.set_faults(vec![]);
        h.reconcile_policy("p").await.expect("recovers");
        assert_eq!(h.policy_ready("p").1, "Synced");
        assert_eq!(privx_policy(&h, &id).await.max_versions, Some(8));
        assert_eq!(h.ctx.backoff.failures("passwordpolicy", "p"), 0);
        let text = metrics.encode();
        assert!(
            text.contains(r#"privx_operator_objects{controller="passwordpolicy",condition="Ready",status="True",reason="Synced"} 1"#),
            "{text}"
        );
        assert!(!text.contains(r#"reason="PrivXUnavailable""#), "{text}");
    }
}
