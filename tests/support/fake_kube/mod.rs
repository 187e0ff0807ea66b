//! An in-memory Kubernetes API server for the tests, behind kube-rs's mock service
//! (`tower_test::mock::pair`): `FakeKube::client()` gives a `kube::Client` that talks to it,
//! and the real runner's `kube::runtime::watcher`s run against it.
//!
//! What it does as kube-apiserver does (`store.rs`, `write.rs`, `apply.rs`, `watch.rs`):
//! - **Watches** (`?watch=true`): newline-delimited `WatchEvent`s (ADDED / MODIFIED /
//!   DELETED) for every change after the given `resourceVersion`, filtered by namespace,
//!   `labelSelector` and `fieldSelector` (an object leaving a selector is DELETED, entering it
//!   ADDED); `resourceVersion=0`/none starts with the current objects as ADDED;
//!   `sendInitialEvents=true` ends those with the `k8s.io/initial-events-end` BOOKMARK;
//!   `timeoutSeconds` closes the watch. A resourceVersion older than the kept history (the last
//!   1,000 changes, `set_history_limit`, `compact`) answers a 410 `Expired` ERROR event, so
//!   the watcher relists. Lists carry a collection `resourceVersion` and page with
//!   `limit`/`continue`. `Accept: ...;as=PartialObjectMetadata[List]` answers metadata only.
//! - **Server-side apply** with field managers (see `apply.rs`): unsent fields are removed,
//!   another manager's field with a different value is a 409 conflict unless `force=true`;
//!   `metadata.managedFields` is kept on the object. Merge, strategic-merge (treated as a
//!   merge) and JSON patches and PUT are updates that take ownership of what they change.
//! - **resourceVersion**: one counter for all writes; a write that changes nothing is not a
//!   write (no new resourceVersion, no event). A stale `metadata.resourceVersion` in a PUT,
//!   patch or apply body (or a DELETE precondition) is a 409 Conflict with the real message.
//! - **generation**: 1 on create, bumped when anything but metadata (and status, for kinds
//!   with a status subresource) changes. Secrets, ConfigMaps, Namespaces, Events, Leases,
//!   ServiceAccounts and Endpoints carry none, as in the real server.
//! - **Status subresource** (VaultSecret, PasswordPolicy, workloads, Namespaces...;
//!   `set_status_subresource`): `/status` writes change only `status`; main-resource writes
//!   keep the stored `status`.
//! - **Deletion**: with finalizers an object gets `deletionTimestamp` and stays until the last
//!   finalizer is removed (then DELETED); no new finalizer may be added meanwhile; without
//!   finalizers it goes at once. Background **garbage collection**: when an object goes, its
//!   dependents none of whose `ownerReferences` still exist are deleted too
//!   (`set_garbage_collection(false)` turns it off).
//! - **TokenRequest** (`serviceaccounts/NAME/token`, see `token.rs`): a JWT of an existing
//!   ServiceAccount signed by a test key, 404 for a missing one.
//!
//! For tests: `put`/`put_as` (write a whole object, status included, as a manager; an
//! explicitly different `generation` wins), `get`, `list`, `remove` (gone at once, finalizers
//! or not), `delete` (API semantics); the request log (`requests`, `writes`, `write_counts`
//! by "verb resource", `writes_to(path)`, `event_reasons`, `event_notes`; watches are logged
//! apart in `watch_requests`; `set_request_log(false)` keeps only the counts); faults: `close_watches`, `fail(Fault::Refuse | Unavailable)` /
//! `recover`, `outage(fault, duration)`; `open_watches`, `resource_version`.

#![allow(dead_code)]

pub mod apply;
pub mod path;
pub mod serve;
pub mod store;
pub mod token;
pub mod watch;
pub mod write;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

use path::Target;
use store::{Answer, State, WriteOpts, bad_request, status};
use watch::{FakeBody, FieldSelector, LabelSelector, Subscription, event_line, partial_metadata};

/// One request as it reached the fake.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub body: Option<Value>,
}

impl Recorded {
    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }

    /// The Kubernetes verb: get, list, watch, create, update, patch, delete.
    pub fn verb(&self) -> &'static str {
        let collection = Target::parse(&self.path).is_some_and(|t| t.name.is_none());
        match self.method.as_str() {
            "GET" if self.query.contains("watch=true") => "watch",
            "GET" if collection => "list",
            "GET" => "get",
            "POST" => "create",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "other",
        }
    }

    /// The resource, with its subresource: `secrets`, `vaultsecrets/status`.
    pub fn resource(&self) -> String {
        match Target::parse(&self.path) {
            Some(Target {
                resource,
                subresource: Some(s),
                ..
            }) => format!("{resource}/{s}"),
            Some(t) => t.resource,
            None => self.path.clone(),
        }
    }

    /// The path of the object this request is about (no subresource), if it names one.
    pub fn object_path(&self) -> Option<String> {
        Target::parse(&self.path)
            .filter(|t| t.name.is_some())
            .map(|t| t.object_path())
    }
}

/// What the fake does to requests while failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Connections are refused: the client gets a transport error.
    Refuse,
    /// Every request answers 503 Service Unavailable.
    Unavailable,
}

#[derive(Default)]
struct Shared {
    state: State,
    requests: Vec<Recorded>,
    watch_requests: Vec<Recorded>,
    fault: Option<Fault>,
    refused: usize,
    /// Writes by "verb resource", kept even when the log is off.
    counts: BTreeMap<String, usize>,
    log_off: bool,
}

/// The fake API server. Clone freely: clones share state.
#[derive(Clone, Default)]
pub struct FakeKube {
    shared: Arc<Mutex<Shared>>,
}

fn query_map(query: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn respond(code: u16, value: &Value) -> Response<FakeBody> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(watch::whole(serde_json::to_vec(value).unwrap()))
        .unwrap()
}

impl FakeKube {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A kube client talking to this fake (requests are served concurrently).
    pub fn client(&self) -> kube::Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<FakeBody>>();
        let me = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let (parts, body) = request.into_parts();
                    let bytes = body.collect_bytes().await.unwrap_or_default();
                    match me.answer(parts, &bytes) {
                        Ok(response) => send.send_response(response),
                        Err(refused) => send.send_error(refused),
                    }
                });
            }
        });
        kube::Client::new(service, "default")
    }

    /// Answers one request, faults included: `Err` is a refused connection.
    fn answer(
        &self,
        parts: http::request::Parts,
        bytes: &[u8],
    ) -> Result<Response<FakeBody>, std::io::Error> {
        let fault = {
            let mut shared = self.lock();
            if shared.fault.is_some() {
                shared.refused += 1;
            }
            shared.fault
        };
        match fault {
            Some(Fault::Refuse) => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused (fake Kubernetes API fault)",
            )),
            Some(Fault::Unavailable) => Ok(respond(
                503,
                &status(
                    503,
                    "ServiceUnavailable",
                    "the server is currently unable to handle the request",
                ),
            )),
            None => Ok(self.serve(parts, bytes)),
        }
    }

    fn serve(&self, parts: http::request::Parts, bytes: &[u8]) -> Response<FakeBody> {
        let method = parts.method.to_string();
        let path = parts.uri.path().to_string();
        let raw_query = parts.uri.query().unwrap_or_default().to_string();
        let query = query_map(&raw_query);
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let content_type = header("content-type");
        let metadata_only =
            header("accept").is_some_and(|a| a.contains("as=PartialObjectMetadata"));
        let body: Option<Value> = if bytes.is_empty() {
            None
        } else {
            serde_json::from_slice(bytes).ok().or_else(|| {
                std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|s| serde_saphyr::from_str(s).ok())
            })
        };
        let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
        let recorded = Recorded {
            method: method.clone(),
            path: path.clone(),
            query: raw_query,
            content_type: content_type.clone(),
            body: body.clone(),
        };
        let mut shared = self.lock();
        if recorded.is_write() {
            let key = format!("{} {}", recorded.verb(), recorded.resource());
            *shared.counts.entry(key).or_insert(0) += 1;
        }
        match (shared.log_off, watch) {
            (true, _) => {}
            (false, true) => shared.watch_requests.push(recorded),
            (false, false) => shared.requests.push(recorded),
        }
        let Some(target) = Target::parse(&path) else {
            return respond(
                404,
                &status(
                    404,
                    "NotFound",
                    &format!("the server could not find the requested resource ({path})"),
                ),
            );
        };
        if !bytes.is_empty() && body.is_none() {
            return respond(400, &bad_request("the request body is not JSON or YAML").1);
        }
        let opts = WriteOpts {
            manager: query
                .get("fieldManager")
                .cloned()
                .or_else(|| {
                    header("user-agent")
                        .map(|ua| ua.split('/').next().unwrap_or_default().to_string())
                })
                .unwrap_or_default(),
            force: query.get("force").is_some_and(|f| f == "true"),
            dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
        };
        let update_opts = || WriteOpts {
            manager: if opts.manager.is_empty() {
                "unknown".into()
            } else {
                opts.manager.clone()
            },
            ..opts.clone()
        };
        let state = &mut shared.state;
        let (code, value): Answer = match (method.as_str(), target.name.is_some()) {
            _ if token::is_token_request(&method, &target) => {
                token::token_request(state, &target, body.as_ref())
            }
            ("GET", false) if watch => {
                drop(shared);
                return self.open_watch(&target, &query, metadata_only);
            }
            ("GET", false) => state.list(&target, &query, metadata_only),
            ("GET", true) => state.get(&target),
            ("POST", false) => state.create(&target, body.unwrap_or_default(), &update_opts()),
            ("PUT", true) => state.replace(&target, body.unwrap_or_default(), &update_opts()),
            ("PATCH", true) => {
                let ct = content_type
                    .as_deref()
                    .unwrap_or("application/merge-patch+json");
                let opts = if ct.starts_with("application/apply-patch") {
                    opts.clone()
                } else {
                    update_opts()
                };
                state.patch(&target, ct, body.unwrap_or_default(), &opts)
            }
            ("DELETE", true) => state.delete(&target, body.as_ref(), &opts),
            (m, _) => (
                405,
                status(
                    405,
                    "MethodNotAllowed",
                    &format!("{m} is not supported on {path}"),
                ),
            ),
        };
        let value = if metadata_only
            && code < 300
            && value["kind"] != "Status"
            && !value["kind"].as_str().is_some_and(|k| k.ends_with("List"))
        {
            partial_metadata(&value)
        } else {
            value
        };
        if std::env::var_os("FAKE_KUBE_DEBUG").is_some() {
            eprintln!(
                "fake-kube: {method} {path} {code} {}",
                if code >= 300 {
                    value["message"].to_string()
                } else {
                    String::new()
                }
            );
        }
        respond(code, &value)
    }

    fn open_watch(
        &self,
        collection: &Target,
        query: &BTreeMap<String, String>,
        metadata_only: bool,
    ) -> Response<FakeBody> {
        let labels = match LabelSelector::parse(query.get("labelSelector").map_or("", |s| s)) {
            Ok(l) => l,
            Err(e) => return respond(400, &bad_request(&e).1),
        };
        let fields = match FieldSelector::parse(query.get("fieldSelector").map_or("", |s| s)) {
            Ok(f) => f,
            Err(e) => return respond(400, &bad_request(&e).1),
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut shared = self.lock();
        let state = &mut shared.state;
        state.next_watch += 1;
        let sub = Subscription {
            id: state.next_watch,
            collection: collection.clone(),
            labels,
            fields,
            metadata_only,
            tx,
        };
        let rv = query
            .get("resourceVersion")
            .map(String::as_str)
            .unwrap_or("");
        let initial = query.get("sendInitialEvents").is_some_and(|s| s == "true");
        let mut open = true;
        if initial || rv.is_empty() || rv == "0" {
            for (_, o) in state.select(&sub.collection, &sub.labels, &sub.fields) {
                sub.send("ADDED", &o);
            }
            if initial {
                let bookmark = json!({
                    "apiVersion": collection.api_version(), "kind": "Bookmark",
                    "metadata": {"resourceVersion": state.version.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}},
                });
                sub.send("BOOKMARK", &bookmark);
            }
        } else {
            let Ok(from) = rv.parse::<u64>() else {
                return respond(
                    400,
                    &bad_request(&format!("invalid resourceVersion {rv:?}")).1,
                );
            };
            if from < state.compacted {
                let gone = status(
                    410,
                    "Expired",
                    &format!("too old resource version: {from} ({})", state.compacted + 1),
                );
                let _ = sub.tx.send(event_line("ERROR", &gone, false));
                open = false;
            } else {
                for change in state.history.iter().filter(|c| c.rv > from) {
                    sub.deliver(change);
                }
            }
        }
        let id = sub.id;
        if open {
            state.watches.push(sub);
            let timeout = query
                .get("timeoutSeconds")
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(1800);
            let me = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(timeout)).await;
                me.lock().state.watches.retain(|w| w.id != id);
            });
        }
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(watch::streaming(rx))
            .unwrap()
    }

    // ---- for tests: objects ----

    /// Creates or replaces the whole object at its API path (e.g.
    /// `/api/v1/namespaces/ns/secrets/x`), status included, as field manager `test`; fills in
    /// what the API server would. Returns the stored object.
    pub fn put(&self, path: &str, object: Value) -> Value {
        self.put_as(path, object, "test")
    }

    /// `put` as the given field manager (an update: it owns the fields it changes).
    pub fn put_as(&self, path: &str, object: Value, manager: &str) -> Value {
        self.lock().state.put(path, object, manager)
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.lock().state.get_object(path).map(|o| (*o).clone())
    }

    /// Removes the object at once, finalizers or not (a DELETED event follows).
    pub fn remove(&self, path: &str) {
        let mut shared = self.lock();
        if let Some(target) = Target::parse(path)
            && shared.state.get_object(&target.object_path()).is_some()
        {
            shared.state.commit(&target, None);
        }
    }

    /// Deletes as a client's DELETE would (finalizers hold the object). Returns the code.
    pub fn delete(&self, path: &str) -> u16 {
        let target = Target::parse(path).expect("an object path");
        self.lock()
            .state
            .delete(&target, None, &WriteOpts::default())
            .0
    }

    /// Objects whose path starts with `prefix`.
    pub fn list(&self, prefix: &str) -> Vec<Value> {
        self.lock()
            .state
            .objects
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, s)| (*s.object).clone())
            .collect()
    }

    /// The resourceVersion of the last write.
    pub fn resource_version(&self) -> u64 {
        self.lock().state.version
    }

    /// Whether `/status` is a subresource of `resource` (plural, e.g. `vaultsecrets`).
    pub fn set_status_subresource(&self, resource: &str, on: bool) {
        let set = &mut self.lock().state.status_subresources;
        if on {
            set.insert(resource.to_string());
        } else {
            set.remove(resource);
        }
    }

    pub fn set_garbage_collection(&self, on: bool) {
        self.lock().state.garbage_collection = on;
    }

    /// How many changes watches can resume from.
    pub fn set_history_limit(&self, changes: usize) {
        self.lock().state.history_limit = changes;
    }

    /// Forgets the change history: any watch from an older resourceVersion gets 410 Gone.
    pub fn compact(&self) {
        let state = &mut self.lock().state;
        state.history.clear();
        state.compacted = state.version;
    }

    // ---- for tests: faults ----

    /// Ends every open watch (the watchers then re-watch from their last resourceVersion).
    pub fn close_watches(&self) {
        self.lock().state.watches.clear();
    }

    /// The number of watches open now.
    pub fn open_watches(&self) -> usize {
        let state = &mut self.lock().state;
        state.watches.retain(|w| !w.tx.is_closed());
        state.watches.len()
    }

    /// Closes every watch and fails every request the given way until `recover`.
    pub fn fail(&self, fault: Fault) {
        let mut shared = self.lock();
        shared.fault = Some(fault);
        shared.state.watches.clear();
    }

    pub fn recover(&self) {
        self.lock().fault = None;
    }

    /// `fail`, wait `duration`, `recover`.
    pub async fn outage(&self, fault: Fault, duration: Duration) {
        self.fail(fault);
        tokio::time::sleep(duration).await;
        self.recover();
    }

    /// Requests refused or answered 503 by a fault so far.
    pub fn refused(&self) -> usize {
        self.lock().refused
    }

    // ---- for tests: the request log ----

    /// Every request but watches, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Every watch request, in order.
    pub fn watch_requests(&self) -> Vec<Recorded> {
        self.lock().watch_requests.clone()
    }

    /// Forgets the request log and the write counts.
    pub fn clear_requests(&self) {
        let mut shared = self.lock();
        shared.requests.clear();
        shared.watch_requests.clear();
        shared.counts.clear();
    }

    /// Whether requests are kept in the log (on by default). Off, only `write_counts` are
    /// kept: a benchmark of thousands of objects does not measure the log's memory.
    pub fn set_request_log(&self, on: bool) {
        self.lock().log_off = !on;
    }

    /// Writes recorded so far, excluding events.
    pub fn writes(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_write() && !r.path.contains("/events"))
            .collect()
    }

    /// Writes (events included) counted by "verb resource": `patch secrets`,
    /// `patch vaultsecrets/status`, `create events`.
    pub fn write_counts(&self) -> BTreeMap<String, usize> {
        self.lock().counts.clone()
    }

    /// Writes to the object at `path` (its subresources included).
    pub fn writes_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_write() && r.object_path().as_deref() == Some(path))
            .collect()
    }

    /// Reasons of the events posted so far, in order.
    pub fn event_reasons(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.contains("/events"))
            .filter_map(|r| r.body.and_then(|b| b["reason"].as_str().map(String::from)))
            .collect()
    }

    /// Every event note posted so far.
    pub fn event_notes(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.contains("/events"))
            .filter_map(|r| r.body.and_then(|b| b["note"].as_str().map(String::from)))
            .collect()
    }
}
