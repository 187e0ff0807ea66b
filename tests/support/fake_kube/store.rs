//! The fake API's state: objects, the resourceVersion counter, the change history watches
//! resume from, reads (get, list with paging), and the commit every write ends in (watch
//! events, removal when the last finalizer goes, garbage collection). The writes themselves
//! are in `write.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};

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

pub fn with_details(mut s: Value, target: &Target) -> Value {
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

pub fn invalid(target: &Target, message: &str) -> Answer {
    (422, with_details(status(422, "Invalid", message), target))
}

/// Kinds whose objects carry no `metadata.generation` (the API server sets none for them).
pub const NO_GENERATION: &[&str] = &[
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
    pub uids: u64,
    pub history: VecDeque<Change>,
    pub history_limit: usize,
    /// The newest resourceVersion whose change is no longer in `history`: a watch from an
    /// older one gets 410 Gone.
    pub compacted: u64,
    pub watches: Vec<Subscription>,
    pub next_watch: u64,
    pub status_subresources: BTreeSet<String>,
    pub garbage_collection: bool,
    pub kinds: BTreeMap<(String, String), String>,
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
pub fn generation_part(object: &Value, status_subresource: bool) -> Value {
    let mut v = object.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        if status_subresource {
            m.remove("status");
        }
    }
    v
}

pub fn finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(String::from))
        .collect()
}

/// Two states equal but for resourceVersion: a write that changes nothing is no write.
pub fn same_object(a: &Value, b: &Value) -> bool {
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
