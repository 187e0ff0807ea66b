//! Tests of the fake Kubernetes API itself (`tests/support/fake_kube`): it must behave as
//! kube-apiserver does where the operator depends on it, or the reconcile tests prove nothing.

mod support;

use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use serde_json::{Value, json};
use support::FakeKube;
use support::fake_kube::Fault;

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

/// Drives a watcher in its own task (as a controller does), so its watches stay open.
fn spawned<K: Send + 'static>(
    stream: impl Stream<Item = watcher::Result<Event<K>>> + Send + 'static,
) -> futures::channel::mpsc::UnboundedReceiver<watcher::Result<Event<K>>> {
    let (tx, rx) = futures::channel::mpsc::unbounded();
    tokio::spawn(stream.map(Ok).forward(tx));
    rx
}

async fn until_watches_open(kube: &FakeKube, n: usize) {
    for _ in 0..100 {
        if kube.open_watches() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{n} watches did not open");
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

fn api_error(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other}"),
    }
}

fn vs_resource() -> ApiResource {
    ApiResource {
        group: "privx-operator.dev".into(),
        version: "v1alpha1".into(),
        api_version: "privx-operator.dev/v1alpha1".into(),
        kind: "VaultSecret".into(),
        plural: "vaultsecrets".into(),
    }
}

const VS: &str = "/apis/privx-operator.dev/v1alpha1/namespaces/demo/vaultsecrets/db";

fn vs_api(kube: &FakeKube) -> Api<DynamicObject> {
    Api::namespaced_with(kube.client(), NS, &vs_resource())
}

fn put_vs(kube: &FakeKube) -> Value {
    kube.put(
        VS,
        json!({"apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret",
               "metadata": {"name": "db", "namespace": NS}, "spec": {"name": "a"}}),
    )
}

fn apply_params(manager: &str) -> PatchParams {
    PatchParams::apply(manager)
}

/// The fieldsV1 of `manager`'s entries on the object, merged into one string for searching.
fn owned_by(object: &Value, manager: &str) -> String {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["manager"] == manager)
        .map(|e| e["fieldsV1"].to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn metadata_watches_follow_label_selectors_objects_leaving_them_are_deleted() {
    let kube = FakeKube::default();
    let api: Api<Secret> = Api::namespaced(kube.client(), NS);
    let meta: Api<PartialObjectMeta<Secret>> = Api::namespaced(kube.client(), NS);
    let mut events = watcher(meta, watcher::Config::default().labels("app=db")).boxed();
    kube.put(
        &secret_path("plain"),
        secret("plain", json!({}), json!({"k": "dg=="})),
    );
    kube.put(
        &secret_path("db"),
        secret("db", json!({"app": "db"}), json!({"k": "dg=="})),
    );
    match next_change(&mut events).await {
        Event::Apply(m) | Event::InitApply(m) => {
            assert_eq!(m.metadata.name.as_deref(), Some("db"));
            let types = m.types.expect("types");
            assert_eq!(
                (types.api_version.as_str(), types.kind.as_str()),
                ("meta.k8s.io/v1", "PartialObjectMetadata")
            );
        }
        other => panic!("expected db, got {:?}", name_of(&other)),
    }
    // Relabelled out of the selector: the watch sees a deletion.
    let mut o = kube.get(&secret_path("db")).unwrap();
    o["metadata"]["labels"] = json!({"app": "web"});
    kube.put(&secret_path("db"), o);
    assert_eq!(
        name_of(&next_change(&mut events).await),
        ("delete", "db".into())
    );
    // Labelled into it: an addition.
    let mut o = kube.get(&secret_path("plain")).unwrap();
    o["metadata"]["labels"] = json!({"app": "db"});
    kube.put(&secret_path("plain"), o);
    assert_eq!(
        name_of(&next_change(&mut events).await),
        ("apply", "plain".into())
    );

    // A metadata-only list answers metadata only.
    let list = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 2);
    let raw = kube.get(&secret_path("db")).unwrap();
    assert!(raw["data"].is_object(), "the object itself keeps its data");
}

#[tokio::test]
async fn field_selectors_and_streaming_lists_work_as_the_watcher_uses_them() {
    let kube = FakeKube::default();
    kube.put(&secret_path("a"), secret("a", json!({}), json!({})));
    kube.put(&secret_path("b"), secret("b", json!({}), json!({})));
    let api: Api<Secret> = Api::namespaced(kube.client(), NS);
    let config = watcher::Config::default()
        .fields("metadata.name=b")
        .streaming_lists();
    let mut events = watcher(api, config).boxed();
    assert_eq!(
        name_of(&next_change(&mut events).await),
        ("init", "b".into())
    );
    kube.put(&secret_path("a"), secret("a", json!({"x": "1"}), json!({})));
    kube.put(&secret_path("b"), secret("b", json!({"x": "1"}), json!({})));
    assert_eq!(
        name_of(&next_change(&mut events).await),
        ("apply", "b".into())
    );
    let watches = kube.watch_requests();
    assert!(
        watches[0].query.contains("sendInitialEvents=true"),
        "{watches:?}"
    );
}

#[tokio::test]
async fn lists_carry_a_resource_version_and_page_with_limit_and_continue() {
    let kube = FakeKube::default();
    for n in ["a", "b", "c", "d", "e"] {
        kube.put(&secret_path(n), secret(n, json!({}), json!({})));
    }
    let rv = kube.resource_version().to_string();
    let api: Api<Secret> = Api::namespaced(kube.client(), NS);
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(
        first.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    let token = first.metadata.continue_.clone().expect("a continue token");
    kube.put(&secret_path("f"), secret("f", json!({}), json!({})));
    let second = api
        .list(&ListParams::default().limit(10).continue_token(&token))
        .await
        .unwrap();
    let names: Vec<_> = second
        .items
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["c", "d", "e", "f"]);
    assert_eq!(
        second.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    assert!(second.metadata.continue_.is_none());
    // The default watcher pages through everything.
    let all: Vec<Secret> = watcher(api, watcher::Config::default().page_size(2))
        .default_backoff()
        .take_while(|e| futures::future::ready(!matches!(e, Ok(Event::InitDone))))
        .filter_map(|e| {
            futures::future::ready(match e {
                Ok(Event::InitApply(s)) => Some(s),
                _ => None,
            })
        })
        .collect()
        .await;
    assert_eq!(all.len(), 6);
}

#[tokio::test]
async fn a_watch_resumes_after_the_fake_closes_every_watch_without_a_relist() {
    let kube = FakeKube::default();
    kube.put(&secret_path("a"), secret("a", json!({}), json!({})));
    let api: Api<Secret> = Api::namespaced(kube.client(), NS);
    let mut events = spawned(watcher(api, watcher::Config::default()).default_backoff());
    assert_eq!(
        name_of(&next_change(&mut events).await),
        ("init", "a".into())
    );
    until_watches_open(&kube, 1).await;
    let lists = |k: &FakeKube| k.requests().iter().filter(|r| r.verb() == "list").count();
    assert_eq!(lists(&kube), 1);

    kube.close_watches();
    assert_eq!(kube.open_watches(), 0);
    kube.put(&secret_path("b"), secret("b", json!({}), json!({})));
    assert_eq!(
        name_of(&next_change(&mut events).await),
        ("apply", "b".into())
    );
    kube.put(&secret_path("c"), secret("c", json!({}), json!({})));
    assert_eq!(
        name_of(&next_change(&mut events).await),
        ("apply", "c".into())
    );
    let watches = kube.watch_requests();
    assert_eq!(watches.len(), 2, "{watches:?}");
    assert!(
        !watches[1].query.contains("resourceVersion=0"),
        "resumed at its version: {watches:?}"
    );
    assert_eq!(lists(&kube), 1, "resumption is not a relist");
    assert_eq!(kube.open_watches(), 1);
}

#[tokio::test]
async fn an_outage_closes_watches_refuses_requests_and_a_too_old_version_relists() {
    let kube = FakeKube::default();
    kube.put(&secret_path("a"), secret("a", json!({}), json!({})));
    let api: Api<Secret> = Api::namespaced(kube.client(), NS);
    let mut events = spawned(watcher(api.clone(), watcher::Config::default()).default_backoff());
    assert_eq!(
        name_of(&next_change(&mut events).await),
        ("init", "a".into())
    );
    until_watches_open(&kube, 1).await;

    kube.fail(Fault::Refuse);
    assert_eq!(kube.open_watches(), 0);
    let refused = api.get("a").await.unwrap_err();
    assert!(
        !matches!(refused, kube::Error::Api(_)),
        "a transport error: {refused}"
    );
    kube.fail(Fault::Unavailable);
    assert_eq!(api_error(api.get("a").await.unwrap_err()).0, 503);
    // While it is down, a change happens and the history is compacted past the watcher.
    kube.put(&secret_path("b"), secret("b", json!({}), json!({})));
    kube.compact();
    kube.recover();
    let mut saw_gone = false;
    let mut relisted = Vec::new();
    while !relisted.contains(&"b".to_string()) {
        match tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap()
            .unwrap()
        {
            Err(watcher::Error::WatchError(e)) if e.code == 410 => saw_gone = true,
            Err(_) => {}
            Ok(Event::InitApply(s)) => relisted.push(s.metadata.name.unwrap()),
            Ok(_) => {}
        }
    }
    assert!(saw_gone, "the watcher was told 410 Gone");
    assert!(relisted.contains(&"a".to_string()));
    assert!(kube.refused() >= 2);
}

#[tokio::test]
async fn server_side_apply_removes_a_field_its_manager_stops_sending() {
    let kube = FakeKube::default();
    let api: Api<Secret> = Api::namespaced(kube.client(), NS);
    let first = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "m", "labels": {"a": "1", "b": "2"}},
                       "data": {"x": "eA==", "y": "eQ=="}});
    api.patch("m", &apply_params("op"), &Patch::Apply(&first))
        .await
        .unwrap();
    // Someone else adds a key of their own.
    api.patch(
        "m",
        &PatchParams::default(),
        &Patch::Merge(&json!({"data": {"z": "eg=="}})),
    )
    .await
    .unwrap();
    let second = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "m", "labels": {"a": "1"}},
                        "data": {"x": "eA=="}});
    api.patch("m", &apply_params("op"), &Patch::Apply(&second))
        .await
        .unwrap();
    let o = kube.get(&secret_path("m")).unwrap();
    assert_eq!(
        o["data"],
        json!({"x": "eA==", "z": "eg=="}),
        "y removed, z kept"
    );
    assert_eq!(o["metadata"]["labels"], json!({"a": "1"}));
    let mine = owned_by(&o, "op");
    assert!(
        mine.contains("f:x") && !mine.contains("f:y") && !mine.contains("f:z"),
        "{mine}"
    );
    assert!(owned_by(&o, "unknown").contains("f:z"));
}

#[tokio::test]
async fn server_side_apply_conflicts_on_another_managers_field_unless_forced() {
    let kube = FakeKube::default();
    kube.put_as(
        &secret_path("s"),
        secret("s", json!({"team": "a"}), json!({"k": "dg=="})),
        "kubectl",
    );
    let api: Api<Secret> = Api::namespaced(kube.client(), NS);
    let same = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "labels": {"team": "a", "extra": "1"}}});
    api.patch("s", &apply_params("op"), &Patch::Apply(&same))
        .await
        .expect("the same value is no conflict");
    let other = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "labels": {"team": "b"}}});
    let (code, reason, message) = api_error(
        api.patch("s", &apply_params("op"), &Patch::Apply(&other))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(
        message,
        "Apply failed with 1 conflict: conflict with \"kubectl\" using v1: .metadata.labels.team"
    );
    assert_eq!(
        kube.get(&secret_path("s")).unwrap()["metadata"]["labels"]["team"],
        "a"
    );

    api.patch("s", &apply_params("op").force(), &Patch::Apply(&other))
        .await
        .unwrap();
    let o = kube.get(&secret_path("s")).unwrap();
    assert_eq!(
        o["metadata"]["labels"],
        json!({"team": "b"}),
        "extra is no longer applied"
    );
    assert!(owned_by(&o, "op").contains("f:team"));
    assert!(
        !owned_by(&o, "kubectl").contains("f:team"),
        "ownership moved"
    );
    // A missing field manager is refused, as the API server does.
    let no_manager = PatchParams {
        field_manager: None,
        ..PatchParams::default()
    };
    assert_eq!(
        api_error(
            api.patch("s", &no_manager, &Patch::Apply(&other))
                .await
                .unwrap_err()
        )
        .0,
        400
    );
}

#[tokio::test]
async fn conditions_merge_by_type_and_finalizers_as_a_set() {
    let kube = FakeKube::default();
    put_vs(&kube);
    let api = vs_api(&kube);
    let status = |t: &str| {
        json!({"apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret",
                                  "status": {"conditions": [{"type": t, "status": "True"}]}})
    };
    api.patch_status("db", &apply_params("op"), &Patch::Apply(&status("Ready")))
        .await
        .unwrap();
    api.patch_status(
        "db",
        &apply_params("other"),
        &Patch::Apply(&status("Synced")),
    )
    .await
    .unwrap();
    let o = kube.get(VS).unwrap();
    assert_eq!(
        o["status"]["conditions"].as_array().unwrap().len(),
        2,
        "{o}"
    );
    // op stops sending its condition: only that one goes.
    let none = json!({"apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret", "status": {"observedGeneration": 1}});
    api.patch_status("db", &apply_params("op"), &Patch::Apply(&none))
        .await
        .unwrap();
    let o = kube.get(VS).unwrap();
    assert_eq!(
        o["status"]["conditions"],
        json!([{"type": "Synced", "status": "True"}])
    );
    let entry = o["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "op")
        .unwrap()
        .clone();
    assert_eq!(entry["subresource"], "status");
    assert_eq!(entry["operation"], "Apply");

    let fin = |f: &str| json!({"apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret", "metadata": {"finalizers": [f]}});
    api.patch("db", &apply_params("op"), &Patch::Apply(&fin("a/one")))
        .await
        .unwrap();
    api.patch("db", &apply_params("other"), &Patch::Apply(&fin("b/two")))
        .await
        .unwrap();
    assert_eq!(
        kube.get(VS).unwrap()["metadata"]["finalizers"],
        json!(["a/one", "b/two"])
    );
    let bare =
        json!({"apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret", "metadata": {}});
    api.patch("db", &apply_params("op"), &Patch::Apply(&bare))
        .await
        .unwrap();
    assert_eq!(
        kube.get(VS).unwrap()["metadata"]["finalizers"],
        json!(["b/two"])
    );
}

#[tokio::test]
async fn a_stale_resource_version_is_a_409_conflict_and_a_no_op_is_no_write() {
    let kube = FakeKube::default();
    kube.put(
        &secret_path("s"),
        secret("s", json!({}), json!({"k": "dg=="})),
    );
    let api: Api<Secret> = Api::namespaced(kube.client(), NS);
    let current = api.get("s").await.unwrap();
    let stale = current.metadata.resource_version.clone().unwrap();
    api.patch(
        "s",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"resourceVersion": stale, "labels": {"a": "1"}}})),
    )
    .await
    .expect("the current version passes");
    let expected = "Operation cannot be fulfilled on secrets \"s\": the object has been modified; please apply your changes to the latest version and try again";
    let merge = json!({"metadata": {"resourceVersion": stale, "labels": {"a": "2"}}});
    let e = api_error(
        api.patch("s", &PatchParams::default(), &Patch::Merge(&merge))
            .await
            .unwrap_err(),
    );
    assert_eq!(e, (409, "Conflict".to_string(), expected.to_string()));
    let e = api_error(
        api.replace("s", &Default::default(), &current)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.0, 409);
    let apply = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "resourceVersion": stale}});
    assert_eq!(
        api_error(
            api.patch("s", &apply_params("op"), &Patch::Apply(&apply))
                .await
                .unwrap_err()
        )
        .0,
        409
    );
    let rv_test = json_patch::Patch(vec![
        serde_json::from_value(
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": stale}),
        )
        .unwrap(),
    ]);
    assert_eq!(
        api_error(
            api.patch("s", &PatchParams::default(), &Patch::Json::<()>(rv_test))
                .await
                .unwrap_err()
        )
        .0,
        422
    );
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: Some(stale),
            uid: None,
        }),
        ..Default::default()
    };
    assert_eq!(api_error(api.delete("s", &dp).await.unwrap_err()).0, 409);
    assert_eq!(
        kube.get(&secret_path("s")).unwrap()["metadata"]["labels"],
        json!({"a": "1"})
    );

    // A JSON patch works; a write that changes nothing gets no new resourceVersion and no event.
    let add = json_patch::Patch(vec![
        serde_json::from_value(json!({"op": "add", "path": "/metadata/labels/b", "value": "x"}))
            .unwrap(),
    ]);
    api.patch("s", &PatchParams::default(), &Patch::Json::<()>(add))
        .await
        .unwrap();
    let before = kube.resource_version();
    api.patch(
        "s",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"labels": {"b": "x"}}})),
    )
    .await
    .unwrap();
    let same = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dg=="}});
    api.patch("s", &apply_params("op"), &Patch::Apply(&same))
        .await
        .unwrap();
    api.patch("s", &apply_params("op"), &Patch::Apply(&same))
        .await
        .unwrap();
    let after_first_apply = kube.resource_version();
    assert_eq!(
        after_first_apply,
        before + 1,
        "only the first apply changed something (ownership)"
    );
}

#[tokio::test]
async fn generation_starts_at_one_and_moves_only_with_the_spec() {
    let kube = FakeKube::default();
    let api = vs_api(&kube);
    let obj = |spec: Value| {
        json!({"apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret",
                                   "metadata": {"name": "db"}, "spec": spec})
    };
    let generation = |k: &FakeKube| {
        k.get(VS).unwrap()["metadata"]["generation"]
            .as_i64()
            .unwrap()
    };
    api.patch(
        "db",
        &apply_params("user"),
        &Patch::Apply(&obj(json!({"name": "a"}))),
    )
    .await
    .unwrap();
    assert_eq!(generation(&kube), 1);
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"labels": {"x": "y"}, "annotations": {"a": "b"}}})),
    )
    .await
    .unwrap();
    assert_eq!(generation(&kube), 1, "metadata is not spec");
    let status = json!({"apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret", "status": {"observedGeneration": 1}});
    api.patch_status("db", &apply_params("op"), &Patch::Apply(&status))
        .await
        .unwrap();
    assert_eq!(generation(&kube), 1, "status is not spec");
    api.patch(
        "db",
        &apply_params("user"),
        &Patch::Apply(&obj(json!({"name": "b"}))),
    )
    .await
    .unwrap();
    assert_eq!(generation(&kube), 2);
    api.patch(
        "db",
        &apply_params("user"),
        &Patch::Apply(&obj(json!({"name": "b"}))),
    )
    .await
    .unwrap();
    assert_eq!(generation(&kube), 2, "the same spec again");
    // A Secret has no generation, as in the API server.
    kube.put(&secret_path("s"), secret("s", json!({}), json!({})));
    assert!(kube.get(&secret_path("s")).unwrap()["metadata"]["generation"].is_null());
}

#[tokio::test]
async fn the_status_subresource_is_separate_from_the_main_resource() {
    let kube = FakeKube::default();
    put_vs(&kube);
    let api = vs_api(&kube);
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"dataHash": "x"}, "metadata": {"labels": {"l": "1"}}})),
    )
    .await
    .unwrap();
    let o = kube.get(VS).unwrap();
    assert!(
        o["status"].is_null(),
        "status ignored on the main resource: {o}"
    );
    assert_eq!(o["metadata"]["labels"]["l"], "1");
    api.patch_status(
        "db",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"dataHash": "y"}, "spec": {"name": "changed"}})),
    )
    .await
    .unwrap();
    let o = kube.get(VS).unwrap();
    assert_eq!(o["status"]["dataHash"], "y");
    assert_eq!(o["spec"]["name"], "a", "spec ignored on /status");
    assert_eq!(o["metadata"]["generation"], 1);
    let apply = json!({"apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret", "spec": {"name": "b"}, "status": {"dataHash": "z"}});
    api.patch("db", &apply_params("user").force(), &Patch::Apply(&apply))
        .await
        .unwrap();
    let o = kube.get(VS).unwrap();
    assert_eq!(
        (o["spec"]["name"].as_str(), o["status"]["dataHash"].as_str()),
        (Some("b"), Some("y"))
    );
    // A status write to an object that does not exist is a 404, not a creation.
    assert_eq!(
        api_error(
            api.patch_status("nope", &apply_params("op"), &Patch::Apply(&apply))
                .await
                .unwrap_err()
        )
        .0,
        404
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_and_owned_objects_are_collected() {
    let kube = FakeKube::default();
    let owner = put_vs(&kube);
    let api = vs_api(&kube);
    let secrets: Api<Secret> = Api::namespaced(kube.client(), NS);
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    assert_eq!(
        name_of(&next_change(&mut events).await),
        ("init", "db".into())
    );
    let owned = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mirror",
        "ownerReferences": [{"apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret", "name": "db", "uid": owner["metadata"]["uid"]}]}});
    secrets
        .patch("mirror", &apply_params("op"), &Patch::Apply(&owned))
        .await
        .unwrap();
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"finalizers": ["x/guard"]}})),
    )
    .await
    .unwrap();
    assert_eq!(
        name_of(&next_change(&mut events).await),
        ("apply", "db".into())
    );

    api.delete("db", &DeleteParams::default()).await.unwrap();
    match next_change(&mut events).await {
        Event::Apply(o) => assert!(o.metadata.deletion_timestamp.is_some()),
        other => panic!("expected the deletion mark, got {:?}", name_of(&other)),
    }
    assert!(kube.get(VS).is_some(), "held by its finalizer");
    assert!(
        kube.get(&secret_path("mirror")).is_some(),
        "its owner still exists"
    );
    let add = json!({"metadata": {"finalizers": ["x/guard", "y/late"]}});
    assert_eq!(
        api_error(
            api.patch("db", &PatchParams::default(), &Patch::Merge(&add))
                .await
                .unwrap_err()
        )
        .0,
        422
    );
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(
        name_of(&next_change(&mut events).await),
        ("delete", "db".into())
    );
    assert!(kube.get(VS).is_none());
    assert!(
        kube.get(&secret_path("mirror")).is_none(),
        "garbage collected with its owner"
    );

    // Without finalizers an object goes at once.
    kube.put(&secret_path("plain"), secret("plain", json!({}), json!({})));
    assert!(
        secrets
            .delete("plain", &DeleteParams::default())
            .await
            .unwrap()
            .is_right()
    );
    assert!(kube.get(&secret_path("plain")).is_none());
}

#[tokio::test]
async fn writes_are_counted_by_verb_and_resource() {
    let kube = FakeKube::default();
    put_vs(&kube);
    let api = vs_api(&kube);
    let secrets: Api<Secret> = Api::namespaced(kube.client(), NS);
    let mirror = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "m"}});
    secrets
        .patch("m", &apply_params("op"), &Patch::Apply(&mirror))
        .await
        .unwrap();
    secrets
        .patch("m", &apply_params("op"), &Patch::Apply(&mirror))
        .await
        .unwrap();
    let status = json!({"apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret", "status": {"observedGeneration": 1}});
    api.patch_status("db", &apply_params("op"), &Patch::Apply(&status))
        .await
        .unwrap();
    secrets.get("m").await.unwrap();
    let counts = kube.write_counts();
    assert_eq!(counts.get("patch secrets"), Some(&2), "{counts:?}");
    assert_eq!(
        counts.get("patch vaultsecrets/status"),
        Some(&1),
        "{counts:?}"
    );
    assert_eq!(
        counts.values().sum::<usize>(),
        3,
        "puts and reads are not writes: {counts:?}"
    );
    assert_eq!(kube.writes_to(VS).len(), 1);
    assert_eq!(kube.writes_to(&secret_path("m")).len(), 2);
}

/// The fake's building blocks on their own.
#[tokio::test]
async fn served_over_http_a_real_client_creates_lists_watches_and_sees_faults() {
    let kube = FakeKube::default();
    let served = kube.serve_http().await.unwrap();
    // kube's own retries of a 503 would take minutes; the fault below is to be seen at once.
    let mut config = served.config(NS);
    config.default_retry = false;
    let client = kube::Client::try_from(config).unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");

    let api: Api<Secret> = Api::default_namespaced(client.clone());
    let mut events = spawned(watcher(api.clone(), watcher::Config::default()));
    until_watches_open(&kube, 1).await;
    api.create(
        &Default::default(),
        &serde_json::from_value(secret("a", json!({"app": "x"}), json!({"k": "djE="}))).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        name_of(&next_change(&mut events).await),
        ("apply", "a".into())
    );
    // What the client wrote is in the fake, counted as a write.
    assert_eq!(kube.get(&secret_path("a")).unwrap()["data"]["k"], "djE=");
    assert_eq!(kube.write_counts()["create secrets"], 1);
    let listed = api
        .list_metadata(&ListParams::default().labels("app=x"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        name_of(&next_change(&mut events).await),
        ("delete", "a".into())
    );

    kube.fail(Fault::Refuse);
    let (code, reason, _) = api_error(api.get("a").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (503, "ServiceUnavailable"));
    kube.recover();
    let (code, ..) = api_error(api.get("a").await.unwrap_err());
    assert_eq!(code, 404);

    // The kubeconfig names the same server, as a process outside this one reads it.
    let kubeconfig: kube::config::Kubeconfig =
        serde_json::from_value(served.kubeconfig(NS)).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    assert_eq!(config.cluster_url.to_string(), format!("{}/", served.url));
    assert_eq!(config.default_namespace, NS);
}

mod parts {
    use super::support::fake_kube::apply::{Applier, apply, display_path, read_entries, update};
    use super::support::fake_kube::path::Target;
    use super::support::fake_kube::watch::{FieldSelector, LabelSelector};
    use serde_json::json;

    #[test]
    fn parses_the_shapes_of_paths() {
        let t = Target::parse("/api/v1/namespaces/demo/secrets/x").unwrap();
        assert_eq!(
            (
                t.namespace.as_deref(),
                t.resource.as_str(),
                t.name.as_deref()
            ),
            (Some("demo"), "secrets", Some("x"))
        );
        let t = Target::parse("/api/v1/namespaces/demo").unwrap();
        assert_eq!((t.namespace, t.resource.as_str()), (None, "namespaces"));
        let t = Target::parse("/api/v1/namespaces/demo/status").unwrap();
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = Target::parse("/apis/g.dev/v1/passwordpolicies/p/status").unwrap();
        assert_eq!((t.group(), t.api_version()), ("g.dev", "g.dev/v1".into()));
        assert_eq!(t.object_path(), "/apis/g.dev/v1/passwordpolicies/p");
    }

    #[test]
    fn label_selectors_follow_the_api_semantics() {
        let labels = json!({"app": "db", "tier": "back"});
        let m = labels.as_object();
        let yes = |s: &str| LabelSelector::parse(s).unwrap().matches(m);
        assert!(yes("app=db"));
        assert!(yes("app==db,tier"));
        assert!(yes("app in (web, db),!missing"));
        assert!(yes("missing!=x"));
        assert!(!yes("app notin (db)"));
        assert!(!yes("app=db,tier=front"));
        assert!(LabelSelector::parse("app in db").is_err());
    }

    #[test]
    fn field_selectors_compare_dotted_paths() {
        let o = json!({"metadata": {"name": "a", "namespace": "n"}, "type": "Opaque"});
        assert!(
            FieldSelector::parse("metadata.name=a,type==Opaque")
                .unwrap()
                .matches(&o)
        );
        assert!(
            !FieldSelector::parse("metadata.namespace!=n")
                .unwrap()
                .matches(&o)
        );
    }

    fn who(manager: &str, force: bool) -> Applier<'_> {
        Applier {
            manager,
            subresource: None,
            force,
            api_version: "v1",
            now: "t",
        }
    }

    #[test]
    fn a_field_no_longer_applied_is_removed_unless_someone_else_owns_it() {
        let first = apply(
            None,
            &json!({"metadata": {"name": "x"}, "data": {"a": "1", "b": "2"}}),
            &who("op", false),
        )
        .unwrap();
        let mut with_c = first.clone();
        with_c["data"]["c"] = json!("3");
        update(Some(&first), &mut with_c, "human", None, "v1", "t");
        let second = apply(
            Some(&with_c),
            &json!({"metadata": {"name": "x"}, "data": {"a": "1"}}),
            &who("op", false),
        )
        .unwrap();
        assert_eq!(second["data"], json!({"a": "1", "c": "3"}));
    }

    #[test]
    fn conditions_merge_by_type_and_finalizers_as_a_set() {
        let a = apply(None, &json!({"metadata": {"finalizers": ["a"]}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}), &who("op", false)).unwrap();
        let b = apply(Some(&a), &json!({"metadata": {"finalizers": ["b"]}, "status": {"conditions": [{"type": "Synced", "status": "True"}]}}), &who("other", false)).unwrap();
        assert_eq!(b["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(b["status"]["conditions"].as_array().unwrap().len(), 2);
        let c = apply(Some(&b), &json!({"metadata": {}}), &who("op", false)).unwrap();
        assert_eq!(c["metadata"]["finalizers"], json!(["b"]));
        assert_eq!(
            c["status"]["conditions"],
            json!([{"type": "Synced", "status": "True"}])
        );
    }

    #[test]
    fn a_different_value_of_another_managers_field_conflicts_unless_forced() {
        let a = apply(
            None,
            &json!({"metadata": {}, "data": {"a": "1"}}),
            &who("one", false),
        )
        .unwrap();
        let err = apply(
            Some(&a),
            &json!({"metadata": {}, "data": {"a": "2"}}),
            &who("two", false),
        )
        .unwrap_err();
        assert_eq!(display_path(&err[0].path), ".data.a");
        assert!(
            apply(
                Some(&a),
                &json!({"metadata": {}, "data": {"a": "1"}}),
                &who("two", false)
            )
            .is_ok()
        );
        let forced = apply(
            Some(&a),
            &json!({"metadata": {}, "data": {"a": "2"}}),
            &who("two", true),
        )
        .unwrap();
        let entries = read_entries(&forced);
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].manager, "two");
    }
}

/// The real runner's watches get the fake's events: an object created after the initial list
/// is reconciled, and a change of its source Secret reaches the mirror.
#[tokio::test]
async fn the_runners_watches_see_changes_made_after_they_listed() {
    use privx_operator::controller::core::NoMetrics;
    use privx_operator::controller::vault_secret::Settings;
    use privx_operator::controller::vault_secret::hashing::HmacKey;
    use privx_operator::runtime::runner::{self, RunOptions};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let sim = privx_sim::Simulator::start(privx_sim::SimOptions::default())
        .await
        .unwrap();
    let privx = support::privx_client_for(&sim, sim.credentials());
    let kube = FakeKube::default();
    kube.put(
        "/api/v1/namespaces/demo",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    );
    let synced = Arc::new(AtomicBool::new(false));
    let stop = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn({
        let (synced, stop, client) = (synced.clone(), stop.clone(), kube.client());
        async move {
            runner::run(
                client,
                privx,
                Settings {
                    self_roles: vec!["privx-operator".to_string()].into(),
                    hmac_key: HmacKey::new(vec![3; 32]),
                    ..Settings::default()
                },
                Arc::new(NoMetrics),
                RunOptions {
                    namespaces: vec![],
                    concurrency: 4,
                    instance: None,
                    privx_identity: None,
                    ..Default::default()
                },
                stop,
                move |up| synced.store(up, Ordering::SeqCst),
            )
            .await
        }
    });
    let eventually = async |what: &str, check: &dyn Fn() -> bool| {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    };
    eventually("watches synced", &|| synced.load(Ordering::SeqCst)).await;
    assert!(kube.list("/apis/privx-operator.dev").is_empty());

    kube.put(
        &secret_path("db-creds"),
        secret("db-creds", json!({}), json!({"password": "djE="})),
    );
    kube.put(
        "/apis/privx-operator.dev/v1alpha1/namespaces/demo/vaultsecrets/db",
        json!({"apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret",
               "metadata": {"name": "db", "namespace": NS},
               "spec": {"source": {"secretRef": {"name": "db-creds"}}, "mirror": {}}}),
    );
    eventually(
        "the mirror of a VaultSecret created after the list",
        &|| {
            kube.get(&secret_path("db"))
                .is_some_and(|m| m["data"]["password"] == "djE=")
        },
    )
    .await;
    // (The source Secret is not labelled: the operator watches sources metadata-only without a
    // label, docs/vaultsecret.md.)
    let mut source = kube.get(&secret_path("db-creds")).unwrap();
    source["data"]["password"] = json!("djI=");
    kube.put(&secret_path("db-creds"), source);
    eventually("the changed source reaching the mirror", &|| {
        kube.get(&secret_path("db"))
            .is_some_and(|m| m["data"]["password"] == "djI=")
    })
    .await;

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the runner stops")
        .unwrap();
}
