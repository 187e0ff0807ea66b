//! A small in-memory Kubernetes API server behind kube-rs's mock service
//! (`tower_test::mock::pair`), for reconcile tests. It keeps objects as JSON by path and
//! understands what the controllers send: GET, POST (create), DELETE (with finalizers),
//! server-side apply (deep merge), JSON merge patch (with resourceVersion preconditions), and
//! the status subresource. Every request is recorded so tests can count writes.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

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
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    requests: Vec<Recorded>,
    version: u64,
}

/// The fake API server. Clone freely: clones share state.
#[derive(Clone, Default)]
pub struct FakeKube {
    state: Arc<Mutex<State>>,
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code})
}

/// JSON merge (RFC 7386): objects merge, null deletes, everything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

impl FakeKube {
    /// A kube client talking to this fake, and the task serving it.
    pub fn client(&self) -> kube::Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let me = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let watch = request
                    .uri()
                    .query()
                    .is_some_and(|q| q.contains("watch=true"));
                if watch {
                    // Hold watches open (no events are streamed): the initial list is what
                    // the tests exercise. The answer comes when the test's runtime ends.
                    tokio::spawn(async move {
                        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                        send.send_response(
                            Response::builder().status(200).body(Body::empty()).unwrap(),
                        );
                    });
                    continue;
                }
                let response = me.handle(request).await;
                send.send_response(response);
            }
        });
        kube::Client::new(service, "default")
    }

    /// Puts an object at its API path (e.g. `/api/v1/namespaces/ns/secrets/x`), filling in
    /// metadata the API server would.
    pub fn put(&self, path: &str, mut object: Value) {
        let mut state = self.state.lock().unwrap();
        state.version += 1;
        let v = state.version;
        let meta = object["metadata"]
            .as_object_mut()
            .expect("object has metadata");
        meta.entry("uid").or_insert(json!(format!("uid-{v}")));
        meta.insert("resourceVersion".into(), json!(v.to_string()));
        meta.entry("generation").or_insert(json!(1));
        meta.entry("creationTimestamp").or_insert(json!(format!(
            "2026-11-23T00:{:02}:{:02}Z",
            v / 60 % 60,
            v % 60
        )));
        state.objects.insert(path.to_string(), object);
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    pub fn remove(&self, path: &str) {
        self.state.lock().unwrap().objects.remove(path);
    }

    /// Objects whose path starts with `prefix`.
    pub fn list(&self, prefix: &str) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .objects
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.state.lock().unwrap().requests.clear();
    }

    /// Writes recorded so far, excluding events.
    pub fn writes(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_write() && !r.path.contains("/events"))
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

    async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().to_string();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let content_type = request
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .unwrap_or_default();
        let body: Option<Value> = if bytes.is_empty() {
            None
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        self.state.lock().unwrap().requests.push(Recorded {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: body.clone(),
        });
        let (code, value) = if method == "GET" && self.get(&path).is_none() && is_collection(&path)
        {
            (200, self.list_collection(&path, &query))
        } else {
            self.dispatch(&method, &path, content_type.as_deref(), body)
        };
        Response::builder()
            .status(StatusCode::from_u16(code).unwrap())
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&value).unwrap()))
            .unwrap()
    }

    /// A list answer for a collection path, filtered by namespace and `labelSelector=k=v`.
    fn list_collection(&self, path: &str, query: &str) -> Value {
        let (prefix, namespace, resource) = split_collection(path);
        let selector: Option<(String, String)> = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("labelSelector="))
            .map(|s| s.replace("%3D", "=").replace("%2F", "/"))
            .and_then(|s| {
                s.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            });
        let state = self.state.lock().unwrap();
        let items: Vec<Value> = state
            .objects
            .iter()
            .filter(|(p, _)| {
                let (obj_prefix, obj_ns, obj_resource) = split_object(p);
                obj_prefix == prefix
                    && obj_resource == resource
                    && (namespace.is_none() || namespace == obj_ns)
            })
            .map(|(_, o)| o.clone())
            .filter(|o| match &selector {
                Some((k, v)) => o["metadata"]["labels"][k].as_str() == Some(v),
                None => true,
            })
            .collect();
        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": state.version.to_string()}, "items": items})
    }

    fn dispatch(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (object_path, subresource) = match path.strip_suffix("/status") {
            Some(p) => (p.to_string(), Some("status")),
            None => (path.to_string(), None),
        };
        let mut state = self.state.lock().unwrap();
        match method {
            "GET" => match state.objects.get(&object_path) {
                Some(o) => (200, o.clone()),
                None => (
                    404,
                    status(404, "NotFound", &format!("{object_path} not found")),
                ),
            },
            "POST" => {
                let mut object = body.unwrap_or_default();
                let name = object["metadata"]["name"]
                    .as_str()
                    .map(String::from)
                    .or_else(|| {
                        object["metadata"]["generateName"]
                            .as_str()
                            .map(|g| format!("{g}{}", state.version))
                    })
                    .unwrap_or_default();
                object["metadata"]["name"] = json!(name);
                let full = format!("{path}/{name}");
                if state.objects.contains_key(&full) {
                    return (
                        409,
                        status(409, "AlreadyExists", &format!("{full} already exists")),
                    );
                }
                state.version += 1;
                let v = state.version;
                object["metadata"]["uid"] = json!(format!("uid-{v}"));
                object["metadata"]["resourceVersion"] = json!(v.to_string());
                object["metadata"]["creationTimestamp"] = json!("2026-11-23T01:00:00Z");
                state.objects.insert(full, object.clone());
                (201, object)
            }
            "DELETE" => {
                let Some(mut object) = state.objects.get(&object_path).cloned() else {
                    return (
                        404,
                        status(404, "NotFound", &format!("{object_path} not found")),
                    );
                };
                let has_finalizers = object["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty());
                if has_finalizers {
                    object["metadata"]["deletionTimestamp"] = json!("2026-11-23T02:00:00Z");
                    state.version += 1;
                    object["metadata"]["resourceVersion"] = json!(state.version.to_string());
                    state.objects.insert(object_path, object.clone());
                    (200, object)
                } else {
                    state.objects.remove(&object_path);
                    (200, status(200, "Success", "deleted"))
                }
            }
            "PATCH" => {
                let patch = body.unwrap_or_default();
                let apply = content_type.is_some_and(|c| c.starts_with("application/apply-patch"));
                let existing = state.objects.get(&object_path).cloned();
                let mut object = match (existing, apply, subresource) {
                    (Some(o), _, _) => o,
                    (None, true, None) => {
                        let mut fresh = json!({"metadata": {"name": patch["metadata"]["name"]}});
                        state.version += 1;
                        let v = state.version;
                        fresh["metadata"]["uid"] = json!(format!("uid-{v}"));
                        fresh["metadata"]["creationTimestamp"] = json!("2026-11-23T01:00:00Z");
                        fresh["metadata"]["generation"] = json!(1);
                        fresh
                    }
                    (None, _, _) => {
                        return (
                            404,
                            status(404, "NotFound", &format!("{object_path} not found")),
                        );
                    }
                };
                if !apply
                    && let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
                    && object["metadata"]["resourceVersion"].as_str() != Some(rv)
                {
                    return (409, status(409, "Conflict", "the object has been modified"));
                }
                let before_spec = object.get("spec").cloned();
                match subresource {
                    Some(_) => merge(&mut object["status"], &patch["status"]),
                    None => {
                        let mut p = patch.clone();
                        if let Some(m) = p.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                            m.remove("resourceVersion");
                        }
                        // Finalizer removal from an object being deleted completes the deletion.
                        merge(&mut object, &p);
                    }
                }
                if subresource.is_none() && object.get("spec").cloned() != before_spec {
                    let g = object["metadata"]["generation"].as_i64().unwrap_or(1);
                    object["metadata"]["generation"] = json!(g + 1);
                }
                state.version += 1;
                object["metadata"]["resourceVersion"] = json!(state.version.to_string());
                let deleting = object["metadata"]["deletionTimestamp"].is_string();
                let no_finalizers = object["metadata"]["finalizers"]
                    .as_array()
                    .is_none_or(|f| f.is_empty());
                if deleting && no_finalizers {
                    state.objects.remove(&object_path);
                } else {
                    state.objects.insert(object_path, object.clone());
                }
                (200, object)
            }
            _ => (405, status(405, "MethodNotAllowed", method)),
        }
    }
}

/// Whether `path` names a collection (`.../secrets`) rather than an object.
fn is_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // api/v1/R, api/v1/namespaces/NS/R, apis/G/V/R, apis/G/V/namespaces/NS/R
    match segments.first() {
        Some(&"api") => segments.len() == 3 || (segments.len() == 5 && segments[2] == "namespaces"),
        Some(&"apis") => {
            segments.len() == 4 || (segments.len() == 6 && segments[3] == "namespaces")
        }
        _ => false,
    }
}

/// (group-version prefix, namespace, resource) of a collection path.
fn split_collection(path: &str) -> (String, Option<String>, String) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let base = if segments[0] == "api" { 2 } else { 3 };
    let prefix = segments[..base].join("/");
    if segments.len() > base + 1 && segments[base] == "namespaces" {
        (
            prefix,
            Some(segments[base + 1].to_string()),
            segments[base + 2].to_string(),
        )
    } else {
        (prefix, None, segments[base].to_string())
    }
}

/// (group-version prefix, namespace, resource) of an object path.
fn split_object(path: &str) -> (String, Option<String>, String) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let base = if segments[0] == "api" { 2 } else { 3 };
    let prefix = segments[..base].join("/");
    if segments.len() >= base + 4 && segments[base] == "namespaces" {
        (
            prefix,
            Some(segments[base + 1].to_string()),
            segments[base + 2].to_string(),
        )
    } else if segments.len() == base + 2 {
        // Cluster-scoped object, or a Namespace itself (`api/v1/namespaces/NAME`).
        (prefix, None, segments[base].to_string())
    } else {
        (prefix, None, String::new())
    }
}
