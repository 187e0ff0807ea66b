//! Migration without downtime (issue 24), against a real cluster: a Secret another controller
//! owns (an owner reference to a foreign kind, as an External Secrets `ExternalSecret` or a
//! Vault Secrets Operator `VaultStaticSecret` leaves) and a Deployment reading it are taken over
//! by a VaultSecret with `spec.mirror.adopt: true`, while a watch on the Secret proves that it
//! never disappears: same uid throughout, no DELETED event. Then the old owner is deleted and
//! the real garbage collector leaves the Secret alone.
//!
//! The foreign owner is a ConfigMap standing in for the other operator's object: a kind that is
//! not VaultSecret and that exists (the garbage collector deletes dependents whose owners are
//! all gone, so a dangling reference would make the test about something else).

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use super::harness::{E2e, eventually, secret_value};

/// What the watch on the Secret saw: every uid it was seen with, and deletions.
#[derive(Default)]
struct Seen {
    listed: bool,
    uids: Vec<String>,
    deleted: usize,
}

#[tokio::test]
#[ignore = "needs a cluster: set PRIVX_OPERATOR_E2E_CONTEXT (docs/testing.md)"]
async fn a_secret_owned_by_another_operator_is_taken_over_without_ever_disappearing() {
    let e2e = E2e::start().await;

    // The old world: the other operator's object, the Secret it controls, a workload using it.
    let old_owner = e2e
        .api::<ConfigMap>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "legacy-external-secret"}}))
                .unwrap(),
        )
        .await
        .expect("creating the stand-in of the other operator's object");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {
            "name": "app-db",
            "labels": {"team": "payments"},
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "ConfigMap", "name": "legacy-external-secret",
                "uid": old_owner.metadata.uid, "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "type": "Opaque",
        "stringData": {"password": "same-everywhere"},
    }))
    .unwrap();
    let created = e2e
        .api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("creating the other operator's Secret");
    let uid = created.metadata.uid.clone().unwrap();
    let mut web = E2e::deployment("web");
    web["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
        json!([{"secretRef": {"name": "app-db"}}]);
    e2e.apply(web).await;
    let (before, generation) = e2e.deployment_restart("web").await;

    // Watched throughout.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watch = tokio::spawn({
        let seen = seen.clone();
        let config = watcher::Config::default().fields("metadata.name=app-db");
        watcher(e2e.api::<Secret>(), config).for_each(move |event| {
            let mut seen = seen.lock().unwrap();
            match event {
                Ok(watcher::Event::InitDone) => seen.listed = true,
                Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                    seen.uids.push(s.metadata.uid.unwrap_or_default())
                }
                Ok(watcher::Event::Delete(_)) => seen.deleted += 1,
                _ => {}
            }
            futures::future::ready(())
        })
    });
    eventually("the watch on the Secret listed", || async {
        if seen.lock().unwrap().listed {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;

    // The takeover: the same data in the source, adopt on.
    e2e.apply(E2e::secret_manifest(
        "db",
        &[("password", "same-everywhere")],
    ))
    .await;
    e2e.apply(json!({
        "apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret",
        "metadata": {"name": "app-db"},
        "spec": {
            "source": {"secretRef": {"name": "db"}},
            "mirror": {"secretName": "app-db", "adopt": true,
                       "rolloutRestartTargets": [{"kind": "Deployment", "name": "web"}]},
        },
    }))
    .await;
    let vs = e2e.wait_synced("app-db").await;
    let vs_uid = vs.metadata.uid.clone().unwrap();
    let taken = e2e.secret("app-db").await.expect("the Secret is there");
    assert_eq!(
        taken.metadata.uid.as_deref(),
        Some(uid.as_str()),
        "the same Secret"
    );
    let owners: Vec<(String, String)> = taken
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.kind, r.uid))
        .collect();
    assert_eq!(owners, [("VaultSecret".to_string(), vs_uid)]);
    assert_eq!(
        secret_value(&taken, "password").as_deref(),
        Some("same-everywhere")
    );
    assert_eq!(
        taken
            .metadata
            .labels
            .unwrap_or_default()
            .get("team")
            .map(String::as_str),
        Some("payments"),
        "their label kept"
    );
    assert_eq!(
        e2e.deployment_restart("web").await,
        (before, generation),
        "byte-identical data: no rollout restart"
    );

    // The old owner goes (background propagation): the garbage collector no longer has a
    // reason to touch the Secret.
    e2e.api::<ConfigMap>()
        .delete("legacy-external-secret", &DeleteParams::background())
        .await
        .expect("deleting the old owner");
    eventually("the old owner gone", || async {
        match e2e
            .api::<ConfigMap>()
            .get_opt("legacy-external-secret")
            .await
        {
            Ok(None) => Ok(()),
            other => Err(format!("still there: {:?}", other.map(|c| c.is_some()))),
        }
    })
    .await;
    // One more round trip through the operator (a spec change) before the verdict.
    e2e.apply(json!({
        "apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret",
        "metadata": {"name": "app-db"},
        "spec": {
            "source": {"secretRef": {"name": "db"}},
            "mirror": {"secretName": "app-db", "adopt": true, "labels": {"migrated": "yes"},
                       "rolloutRestartTargets": [{"kind": "Deployment", "name": "web"}]},
        },
    }))
    .await;
    e2e.wait_synced("app-db").await;
    assert!(e2e.secret("app-db").await.is_some());

    watch.abort();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.deleted, 0, "the Secret never disappeared");
    assert!(
        seen.uids.iter().all(|u| *u == uid),
        "never re-created: uids seen {:?}",
        seen.uids
    );
}
