//! The fake API's state and its verbs: create, get, list, update (PUT), patch (merge, JSON,
//! strategic ≈ merge, server-side apply), delete; resourceVersion preconditions, generation,
//! the status subresource, finalizers, garbage collection, and the change history watches
//! resume from.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};

use super::apply::{self, Applier};
use super::path::Target;
use super::watch::{
    Change, ChangeKind, FieldSelector, LabelSelector, Subscription, partial_metadata,
};

/// (HTTP code, JSON body).
pub type Answer = (u16, Value);

/// A Kubernetes `Status` body.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": if code < 300 { "Success" } else { "Failure" },
           "message": message, "reason": reason, "code": code})
}

fn with_details(mut s: Value, target: &Target) -> Value {
    s["details"] = json!({"name": target.name, "group": target.group(), "kind": target.resource});
    s
}

pub fn not_found(target: &Target) -> Answer {
    let msg = format!(
        "{} {:?} not found",
        target.qualified_resource(),
        target.name.as_deref().unwrap_or_default()
    );
    (404, with_details(status(404, "NotFound", &msg), target))
}

pub fn modified_conflict(target: &Target) -> Answer {
    let msg = format!(
        "Operation cannot be fulfilled on {} {:?}: the object has been modified; please apply your changes to the latest version and try again",
        target.qualified_resource(),
        target.name.as_deref().unwrap_or_default()
    );
    (409, with_details(status(409, "Conflict", &msg), target))
}

pub fn bad_request(message: &str) -> Answer {
    (400, status(400, "BadRequest", message))
}

fn invalid(target: &Target, message: &str) -> Answer {
    (422, with_details(status(422, "Invalid", message), target))
}

/// Kinds whose objects carry no `metadata.generation` (the API server sets none for them).
const NO_GENERATION: &[&str] = &[
    "secrets",
    "configmaps",
    "events",
    "namespaces",
    "leases",
    "serviceaccounts",
    "endpoints",
];

pub fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap()
        .to_string()
}

/// How a write is made: who, whether forced, whether only a dry run.
#[derive(Clone, Debug, Default)]
pub struct WriteOpts {
    pub manager: String,
    pub force: bool,
    pub dry_run: bool,
}

pub struct Stored {
    pub target: Target,
    pub object: Arc<Value>,
}

pub struct State {
    pub objects: BTreeMap<String, Stored>,
    pub version: u64,
    uids: u64,
    pub history: VecDeque<Change>,
    pub history_limit: usize,
    /// The newest resourceVersion whose change is no longer in `history`: a watch from an
    /// older one gets 410 Gone.
    pub compacted: u64,
    pub watches: Vec<Subscription>,
    pub next_watch: u64,
    pub status_subresources: BTreeSet<String>,
    pub garbage_collection: bool,
    kinds: BTreeMap<(String, String), String>,
}

impl Default for State {
    fn default() -> Self {
        State {
            objects: BTreeMap::new(),
            version: 1,
            uids: 0,
            history: VecDeque::new(),
            history_limit: 1000,
            compacted: 0,
            watches: Vec::new(),
            next_watch: 0,
            status_subresources: [
                "vaultsecrets",
                "passwordpolicies",
                "deployments",
                "statefulsets",
                "daemonsets",
                "replicasets",
                "pods",
                "jobs",
                "namespaces",
                "services",
                "nodes",
                "customresourcedefinitions",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            garbage_collection: true,
            kinds: BTreeMap::new(),
        }
    }
}

/// The object without what generation does not count: metadata, and status where status is
/// a subresource.
fn generation_part(object: &Value, status_subresource: bool) -> Value {
    let mut v = object.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        if status_subresource {
            m.remove("status");
        }
    }
    v
}

fn finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(String::from))
        .collect()
}

/// Two states equal but for resourceVersion: a write that changes nothing is no write.
fn same_object(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        v
    };
    strip(a) == strip(b)
}

impl State {
    pub fn has_status_subresource(&self, resource: &str) -> bool {
        self.status_subresources.contains(resource)
    }

    pub fn get_object(&self, path: &str) -> Option<Arc<Value>> {
        self.objects.get(path).map(|s| s.object.clone())
    }

    fn kind_of(&self, collection: &Target) -> String {
        self.kinds
            .get(&(collection.prefix.clone(), collection.resource.clone()))
            .cloned()
            .unwrap_or_else(|| {
                let r = collection.resource.trim_end_matches('s');
                let mut c = r.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            })
    }

    /// Objects of `collection` matching the selectors, in path order.
    pub fn select(
        &self,
        collection: &Target,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<(String, Arc<Value>)> {
        self.objects
            .iter()
            .filter(|(_, s)| collection.contains(&s.target))
            .filter(|(_, s)| {
                labels.matches(s.object["metadata"]["labels"].as_object())
                    && fields.matches(&s.object)
            })
            .map(|(p, s)| (p.clone(), s.object.clone()))
            .collect()
    }

    /// A list answer: `limit` and `continue` page through the objects in path order; every
    /// page carries the resourceVersion of the first.
    pub fn list(
        &self,
        collection: &Target,
        query: &BTreeMap<String, String>,
        metadata_only: bool,
    ) -> Answer {
        let labels = match LabelSelector::parse(query.get("labelSelector").map_or("", |s| s)) {
            Ok(l) => l,
            Err(e) => return bad_request(&e),
        };
        let fields = match FieldSelector::parse(query.get("fieldSelector").map_or("", |s| s)) {
            Ok(f) => f,
            Err(e) => return bad_request(&e),
        };
        let (rv, after) = match query.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => match token
                .split_once(':')
                .and_then(|(rv, p)| Some((rv.parse::<u64>().ok()?, p.to_string())))
            {
                Some((rv, p)) => (rv, Some(p)),
                None => return bad_request("invalid continue token"),
            },
            None => (self.version, None),
        };
        let mut items = self.select(collection, &labels, &fields);
        if let Some(after) = &after {
            items.retain(|(p, _)| p > after);
        }
        let limit = query
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0);
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if let Some(limit) = limit
            && items.len() > limit
        {
            metadata["remainingItemCount"] = json!(items.len() - limit);
            items.truncate(limit);
            metadata["continue"] = json!(format!("{rv}:{}", items.last().unwrap().0));
        }
        let items: Vec<Value> = items
            .into_iter()
            .map(|(_, o)| {
                if metadata_only {
                    partial_metadata(&o)
                } else {
                    (*o).clone()
                }
            })
            .collect();
        let (api_version, kind) = if metadata_only {
            (
                "meta.k8s.io/v1".to_string(),
                "PartialObjectMetadataList".to_string(),
            )
        } else {
            (
                collection.api_version(),
                format!("{}List", self.kind_of(collection)),
            )
        };
        (
            200,
            json!({"apiVersion": api_version, "kind": kind, "metadata": metadata, "items": items}),
        )
    }

    pub fn get(&self, target: &Target) -> Answer {
        match self.get_object(&target.object_path()) {
            Some(o)
                if target.subresource.is_none()
                    || target.subresource.as_deref() == Some("status") =>
            {
                (200, (*o).clone())
            }
            Some(_) => not_found(target),
            None => not_found(target),
        }
    }

    /// Stores a new state of an object (or its removal), bumps the resourceVersion and tells
    /// the watches. An object being deleted whose last finalizer is gone is removed.
    pub fn commit(&mut self, target: &Target, new: Option<Value>) -> Value {
        let path = target.object_path();
        let old = self.get_object(&path);
        self.version += 1;
        let rv = self.version;
        let removing = match &new {
            None => true,
            Some(n) => n["metadata"]["deletionTimestamp"].is_string() && finalizers(n).is_empty(),
        };
        let mut object = new.or_else(|| old.as_deref().cloned()).unwrap_or_default();
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        if let Some(k) = object["kind"].as_str() {
            self.kinds.insert(
                (target.prefix.clone(), target.resource.clone()),
                k.to_string(),
            );
        }
        let object = Arc::new(object);
        let kind = if removing {
            self.objects.remove(&path);
            ChangeKind::Deleted
        } else {
            self.objects.insert(
                path,
                Stored {
                    target: target.clone(),
                    object: object.clone(),
                },
            );
            if old.is_some() {
                ChangeKind::Modified
            } else {
                ChangeKind::Added
            }
        };
        if removing && old.is_none() {
            // Created and finished in one step: nothing was there, nothing to tell.
            self.version -= 1;
            return (*object).clone();
        }
        let change = Change {
            rv,
            kind,
            target: target.clone(),
            old,
            object: object.clone(),
        };
        self.watches.retain(|w| w.deliver(&change));
        self.history.push_back(change);
        while self.history.len() > self.history_limit {
            let dropped = self.history.pop_front().unwrap();
            self.compacted = self.compacted.max(dropped.rv);
        }
        if removing && self.garbage_collection {
            self.collect_dependents(object["metadata"]["uid"].as_str().unwrap_or_default());
        }
        (*object).clone()
    }

    /// Background garbage collection: dependents none of whose owners exist any more are
    /// deleted (with their finalizers honoured).
    fn collect_dependents(&mut self, uid: &str) {
        if uid.is_empty() {
            return;
        }
        let live: BTreeSet<String> = self
            .objects
            .values()
            .filter_map(|s| s.object["metadata"]["uid"].as_str().map(String::from))
            .collect();
        let orphans: Vec<Target> = self
            .objects
            .values()
            .filter(|s| {
                let owners: Vec<&str> = s.object["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|o| o["uid"].as_str())
                    .collect();
                owners.contains(&uid) && owners.iter().all(|o| !live.contains(*o))
            })
            .map(|s| s.target.clone())
            .collect();
        for t in orphans {
            let _ = self.delete(&t, None, &WriteOpts::default());
        }
    }

    /// The server's part of every write: identity and server-owned metadata from the stored
    /// object, the status subresource boundary, the finalizer rule while deleting, generation.
    fn prepare(
        &mut self,
        target: &Target,
        old: Option<&Value>,
        mut new: Value,
    ) -> Result<Value, Answer> {
        if !new.is_object() {
            return Err(bad_request("the body must be a JSON object"));
        }
        if !new["metadata"].is_object() {
            new["metadata"] = json!({});
        }
        let name = target.name.clone().unwrap_or_default();
        match new["metadata"]["name"].as_str() {
            Some(n) if n != name => {
                return Err(bad_request(&format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => new["metadata"]["name"] = json!(name),
        }
        match (&target.namespace, new["metadata"]["namespace"].as_str()) {
            (Some(ns), Some(n)) if n != ns => {
                return Err(bad_request(&format!(
                    "the namespace of the object ({n}) does not match the namespace on the request ({ns})"
                )));
            }
            (Some(ns), _) => new["metadata"]["namespace"] = json!(ns),
            (None, _) => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove("namespace");
                }
            }
        }
        let status_sub = self.has_status_subresource(&target.resource);
        if status_sub {
            let on_status = target.subresource.as_deref() == Some("status");
            let (mut base, status) = if on_status {
                let mut base = old.cloned().ok_or_else(|| not_found(target))?;
                if let Some(mf) = new["metadata"].get("managedFields") {
                    base["metadata"]["managedFields"] = mf.clone();
                } else if let Some(m) = base["metadata"].as_object_mut() {
                    m.remove("managedFields");
                }
                (base, new.get("status").cloned())
            } else {
                (new, old.and_then(|o| o.get("status").cloned()))
            };
            let m = base.as_object_mut().unwrap();
            match status {
                Some(s) => m.insert("status".into(), s),
                None => m.remove("status"),
            };
            new = base;
        }
        let meta = new["metadata"].as_object_mut().unwrap();
        meta.remove("resourceVersion");
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
        ] {
            match old.and_then(|o| o["metadata"].get(field)) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        if old.is_none() {
            self.uids += 1;
            meta.insert(
                "uid".into(),
                json!(format!("00000000-fake-{:012}", self.uids)),
            );
            meta.insert("creationTimestamp".into(), json!(now()));
        }
        if let Some(old) = old
            && old["metadata"]["deletionTimestamp"].is_string()
        {
            let before = finalizers(old);
            if let Some(added) = finalizers(&new).into_iter().find(|f| !before.contains(f)) {
                return Err(invalid(
                    target,
                    &format!(
                        "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers [{added:?}]"
                    ),
                ));
            }
        }
        if !NO_GENERATION.contains(&target.resource.as_str()) {
            let generation = match old {
                None => 1,
                Some(o) => {
                    let g = o["metadata"]["generation"].as_i64().unwrap_or(1);
                    if generation_part(o, status_sub) != generation_part(&new, status_sub) {
                        g + 1
                    } else {
                        g
                    }
                }
            };
            new["metadata"]["generation"] = json!(generation);
        }
        Ok(new)
    }

    /// Writes the prepared state unless it changes nothing; answers with what is stored.
    fn finish(
        &mut self,
        target: &Target,
        old: Option<&Value>,
        new: Value,
        opts: &WriteOpts,
        created: u16,
    ) -> Answer {
        if let Some(old) = old
            && same_object(old, &new)
        {
            return (200, old.clone());
        }
        let code = if old.is_none() { created } else { 200 };
        if opts.dry_run {
            return (code, new);
        }
        (code, self.commit(target, Some(new)))
    }

    pub fn create(&mut self, collection: &Target, mut body: Value, opts: &WriteOpts) -> Answer {
        let name = match (
            body["metadata"]["name"].as_str(),
            body["metadata"]["generateName"].as_str(),
        ) {
            (Some(n), _) if !n.is_empty() => n.to_string(),
            (_, Some(g)) => format!("{g}{:05x}", self.version),
            _ => {
                return invalid(
                    collection,
                    "metadata.name: Required value: name or generateName is required",
                );
            }
        };
        body["metadata"]["name"] = json!(name);
        let mut target = collection.clone();
        target.name = Some(name.clone());
        if self.objects.contains_key(&target.object_path()) {
            let msg = format!("{} {name:?} already exists", target.qualified_resource());
            return (
                409,
                with_details(status(409, "AlreadyExists", &msg), &target),
            );
        }
        let mut new = match self.prepare(&target, None, body) {
            Ok(n) => n,
            Err(a) => return a,
        };
        apply::update(
            None,
            &mut new,
            &opts.manager,
            None,
            &target.api_version(),
            &now(),
        );
        self.finish(&target, None, new, opts, 201)
    }

    /// PUT: the whole object (or the whole status, on `/status`); a resourceVersion in the
    /// body must be the stored one.
    pub fn replace(&mut self, target: &Target, body: Value, opts: &WriteOpts) -> Answer {
        let Some(old) = self.get_object(&target.object_path()) else {
            return not_found(target);
        };
        if let Some(rv) = body["metadata"]["resourceVersion"].as_str()
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            return modified_conflict(target);
        }
        self.update_with(target, &old, body, opts)
    }

    fn update_with(
        &mut self,
        target: &Target,
        old: &Value,
        mut proposed: Value,
        opts: &WriteOpts,
    ) -> Answer {
        // The managed fields of a request are not the client's to set.
        if let Some(m) = proposed["metadata"].as_object_mut() {
            match old["metadata"].get("managedFields") {
                Some(mf) => m.insert("managedFields".into(), mf.clone()),
                None => m.remove("managedFields"),
            };
        }
        let mut new = match self.prepare(target, Some(old), proposed) {
            Ok(n) => n,
            Err(a) => return a,
        };
        apply::update(
            Some(old),
            &mut new,
            &opts.manager,
            target.subresource.as_deref(),
            &target.api_version(),
            &now(),
        );
        self.finish(target, Some(old), new, opts, 200)
    }

    pub fn patch(
        &mut self,
        target: &Target,
        content_type: &str,
        body: Value,
        opts: &WriteOpts,
    ) -> Answer {
        let path = target.object_path();
        let old = self.get_object(&path);
        if content_type.starts_with("application/apply-patch") {
            return self.server_side_apply(target, old.as_deref(), body, opts);
        }
        let Some(old) = old else {
            return not_found(target);
        };
        let mut patched = (*old).clone();
        if content_type.starts_with("application/json-patch") {
            let ops: json_patch::Patch = match serde_json::from_value(body) {
                Ok(p) => p,
                Err(e) => return bad_request(&format!("invalid JSON patch: {e}")),
            };
            if let Err(e) = json_patch::patch(&mut patched, &ops.0) {
                return invalid(target, &format!("the JSON patch cannot be applied: {e}"));
            }
        } else {
            merge_patch(&mut patched, &body);
        }
        // The resourceVersion of the patched object is a precondition, as in the API server.
        if patched["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"] {
            return modified_conflict(target);
        }
        self.update_with(target, &old, patched, opts)
    }

    fn server_side_apply(
        &mut self,
        target: &Target,
        old: Option<&Value>,
        mut config: Value,
        opts: &WriteOpts,
    ) -> Answer {
        if opts.manager.is_empty() {
            return bad_request("PATCH /apply requires fieldManager");
        }
        if !config["apiVersion"].is_string() || !config["kind"].is_string() {
            return bad_request("an apply configuration must set apiVersion and kind");
        }
        let on_status = target.subresource.as_deref() == Some("status");
        if old.is_none() && on_status {
            return not_found(target);
        }
        if let Some(rv) = config["metadata"]["resourceVersion"].as_str()
            && old.and_then(|o| o["metadata"]["resourceVersion"].as_str()) != Some(rv)
        {
            return modified_conflict(target);
        }
        // Only what this endpoint may change is applied (and owned).
        if self.has_status_subresource(&target.resource) {
            let m = config.as_object_mut().unwrap();
            if on_status {
                m.retain(|k, _| {
                    matches!(k.as_str(), "apiVersion" | "kind" | "status" | "metadata")
                });
                if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.retain(|k, _| k == "name" || k == "namespace");
                }
            } else {
                m.remove("status");
            }
        }
        let now = now();
        let api_version = config["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let who = Applier {
            manager: &opts.manager,
            subresource: target.subresource.as_deref(),
            force: opts.force,
            api_version: &api_version,
            now: &now,
        };
        let merged = match apply::apply(old, &config, &who) {
            Ok(m) => m,
            Err(conflicts) => {
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {:?} using {}", c.manager, c.api_version), "field": apply::display_path(&c.path)}))
                    .collect();
                let listed: Vec<String> = conflicts
                    .iter()
                    .map(|c| {
                        format!(
                            "conflict with {:?} using {}: {}",
                            c.manager,
                            c.api_version,
                            apply::display_path(&c.path)
                        )
                    })
                    .collect();
                let n = conflicts.len();
                let msg = format!(
                    "Apply failed with {n} conflict{}: {}",
                    if n == 1 { "" } else { "s" },
                    listed.join("\n")
                );
                let mut s = with_details(status(409, "Conflict", &msg), target);
                s["details"]["causes"] = json!(causes);
                return (409, s);
            }
        };
        let new = match self.prepare(target, old, merged) {
            Ok(n) => n,
            Err(a) => return a,
        };
        self.finish(target, old, new, opts, 201)
    }

    /// DELETE: with finalizers the object only gets its deletionTimestamp; without, it goes.
    pub fn delete(&mut self, target: &Target, options: Option<&Value>, opts: &WriteOpts) -> Answer {
        let Some(old) = self.get_object(&target.object_path()) else {
            return not_found(target);
        };
        let pre = options.map(|o| &o["preconditions"]);
        if let Some(uid) = pre.and_then(|p| p["uid"].as_str())
            && Some(uid) != old["metadata"]["uid"].as_str()
        {
            let msg = format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                old["metadata"]["uid"].as_str().unwrap_or_default()
            );
            return (409, with_details(status(409, "Conflict", &msg), target));
        }
        if let Some(rv) = pre.and_then(|p| p["resourceVersion"].as_str())
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            let msg = format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                old["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
            );
            return (409, with_details(status(409, "Conflict", &msg), target));
        }
        if !finalizers(&old).is_empty() {
            if old["metadata"]["deletionTimestamp"].is_string() || opts.dry_run {
                return (202, (*old).clone());
            }
            let mut new = (*old).clone();
            new["metadata"]["deletionTimestamp"] = json!(now());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            return (202, self.commit(target, Some(new)));
        }
        if !opts.dry_run {
            self.commit(target, None);
        }
        let mut s = with_details(status(200, "", ""), target);
        s["details"]["uid"] = old["metadata"]["uid"].clone();
        s.as_object_mut().unwrap().remove("reason");
        s.as_object_mut().unwrap().remove("message");
        (200, s)
    }

    /// A test's own write of a whole object (status included), as manager `manager`:
    /// creates or replaces, keeping server-owned metadata unless the object sets it.
    pub fn put(&mut self, path: &str, object: Value, manager: &str) -> Value {
        let target = Target::parse(path).unwrap_or_else(|| panic!("not an object path: {path}"));
        let path = target.object_path();
        let old = self.get_object(&path);
        let mut new = object;
        let given = new["metadata"].clone();
        // put() writes status too: prepare() sees it as a status-subresource write would.
        let status_sub = self.status_subresources.remove(&target.resource);
        let prepared = self.prepare(&target, old.as_deref(), new.clone());
        if status_sub {
            self.status_subresources.insert(target.resource.clone());
        }
        new = prepared.unwrap_or_else(|(_, s)| panic!("put {path}: {}", s["message"]));
        // Generation and the status boundary as a subresource kind would have them.
        if status_sub && !NO_GENERATION.contains(&target.resource.as_str()) {
            let g = match old.as_deref() {
                None => 1,
                Some(o) => {
                    let g = o["metadata"]["generation"].as_i64().unwrap_or(1);
                    if generation_part(o, true) != generation_part(&new, true) {
                        g + 1
                    } else {
                        g
                    }
                }
            };
            new["metadata"]["generation"] = json!(g);
        }
        for field in ["uid", "creationTimestamp", "deletionTimestamp"] {
            if let Some(v) = given.get(field).filter(|v| !v.is_null()) {
                new["metadata"][field] = v.clone();
            }
        }
        // A generation the test sets on purpose (not just the one it read back) wins.
        if let Some(g) = given.get("generation").filter(|g| !g.is_null())
            && old
                .as_deref()
                .is_none_or(|o| o["metadata"]["generation"] != *g)
        {
            new["metadata"]["generation"] = g.clone();
        }
        if given.get("managedFields").is_none() {
            if let Some(m) = new["metadata"].as_object_mut() {
                match old
                    .as_deref()
                    .and_then(|o| o["metadata"].get("managedFields"))
                {
                    Some(mf) => m.insert("managedFields".into(), mf.clone()),
                    None => m.remove("managedFields"),
                };
            }
            apply::update(
                old.as_deref(),
                &mut new,
                manager,
                None,
                &target.api_version(),
                &now(),
            );
        }
        self.commit(&target, Some(new))
    }
}

/// JSON merge patch (RFC 7386): objects merge, null deletes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}
