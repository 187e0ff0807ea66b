//! Tests of the fake Kubernetes API itself (`tests/support/fake_kube`): it must behave as
//! kube-apiserver does where the operator depends on it, or the reconcile tests prove nothing.

mod support;

use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::DeleteParams;
use kube::runtime::watcher::{self, Event, watcher};
use serde_json::{Value, json};
use support::FakeKube;

const NS: &str = "demo";

fn secret_path(name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/secrets/{name}")
}

fn secret(name: &str, labels: Value, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": name, "namespace": NS, "labels": labels}, "data": data})
}

/// The next watcher event that is not a relist marker, within 5 s.
async fn next_change<K>(
    events: &mut (impl Stream<Item = watcher::Result<Event<K>>> + Unpin),
) -> Event<K> {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("an event within 5 s")
            .expect("the stream goes on")
            .expect("no watch error");
        if !matches!(e, Event::Init | Event::InitDone) {
            return e;
        }
    }
}

fn name_of<K: kube::Resource>(e: &Event<K>) -> (&'static str, String) {
    match e {
        Event::Apply(o) => ("apply", o.meta().name.clone().unwrap()),
        Event::InitApply(o) => ("init", o.meta().name.clone().unwrap()),
        Event::Delete(o) => ("delete", o.meta().name.clone().unwrap()),
        Event::Init | Event::InitDone => ("marker", String::new()),
    }
}

#[tokio::test]
async fn a_kube_runtime_watcher_receives_added_modified_and_deleted() {
    let kube = FakeKube::default();
    kube.put(
        &secret_path("before"),
        secret("before", json!({}), json!({})),
    );
    let api: Api<Secret> = Api::namespaced(kube.client(), NS);
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    assert_eq!(
        name_of(&next_change(&mut events).await),
        ("init", "before".into())
    );

    kube.put(
        &secret_path("a"),
        secret("a", json!({}), json!({"k": "djE="})),
    );
    assert_eq!(
        name_of(&next_change(&mut events).await),
        ("apply", "a".into())
    );
    let mut changed = kube.get(&secret_path("a")).unwrap();
    changed["data"]["k"] = json!("djI=");
    kube.put(&secret_path("a"), changed);
    match next_change(&mut events).await {
        Event::Apply(s) => assert_eq!(s.data.unwrap()["k"].0, b"v2"),
        other => panic!("expected the modification, got {:?}", name_of(&other)),
    }
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        name_of(&next_change(&mut events).await),
        ("delete", "a".into())
    );
    // Another namespace's object is not this watch's business.
    kube.put(
        "/api/v1/namespaces/other/secrets/x",
        json!({"metadata": {"name": "x", "namespace": "other"}}),
    );
    kube.put(&secret_path("b"), secret("b", json!({}), json!({})));
    assert_eq!(
        name_of(&next_change(&mut events).await),
        ("apply", "b".into())
    );
}
