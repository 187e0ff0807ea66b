//! Field ownership and server-side apply, an approximation of the API server's
//! structured-merge-diff at the granularity the operator relies on:
//! - maps are merged key by key (labels, annotations, data, spec, status...);
//! - `metadata.finalizers` is a set (`v:` elements); `metadata.ownerReferences` is keyed by
//!   `uid`, `conditions` by `type`, and `containers`, `env`, `volumes`, `volumeMounts`,
//!   `imagePullSecrets`... by `name` (`k:` elements); every other list is atomic.
//!
//! Ownership is kept per manager entry (manager, operation, subresource) as a set of leaf
//! paths written in fieldsV1 keys (`f:data`, `f:password`), stored as
//! `metadata.managedFields[].fieldsV1` so tests can inspect it. An apply removes the fields
//! its manager applied before and no longer sends, unless another manager owns them; a field
//! another manager owns with a different value is a conflict unless forced (then ownership
//! moves). An update (PUT, merge/JSON patch) takes the fields it changes from everyone.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

/// Metadata the server owns: never part of anyone's field set.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub subresource: Option<String>,
    pub api_version: String,
    pub time: String,
    pub fields: FieldSet,
}

impl Entry {
    fn is(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }
}

/// A field another manager owns with a different value.
#[derive(Clone, Debug)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    pub path: FieldPath,
}

/// `.data.password`, `.status.conditions[type="Ready"].reason`, `.metadata.finalizers[="x"]`.
pub fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if let Some(f) = seg.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = seg.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = seg.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        }
    }
    out
}

#[derive(Clone, Copy)]
enum ListKind {
    Set,
    Keyed(&'static [&'static str]),
    Atomic,
}

fn list_kind<'a>(field: &str, mut items: impl Iterator<Item = &'a Value>) -> ListKind {
    let keys: &'static [&'static str] = match field {
        "finalizers" => return ListKind::Set,
        "ownerReferences" => &["uid"],
        "conditions" => &["type"],
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "volumeMounts"
        | "imagePullSecrets" => &["name"],
        _ => return ListKind::Atomic,
    };
    if items.all(|i| keys.iter().all(|k| i.get(k).is_some())) {
        ListKind::Keyed(keys)
    } else {
        ListKind::Atomic
    }
}

fn element_key(keys: &[&str], item: &Value) -> String {
    let key: std::collections::BTreeMap<&str, &Value> =
        keys.iter().map(|k| (*k, &item[*k])).collect();
    format!("k:{}", serde_json::to_string(&key).unwrap())
}

fn same_key(keys: &[&str], a: &Value, b: &Value) -> bool {
    keys.iter().all(|k| a.get(k) == b.get(k))
}

/// The leaf fields `object` sets.
pub fn field_set(object: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(top) = object.as_object() else {
        return out;
    };
    for (k, v) in top {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                for (mk, mv) in v.as_object().into_iter().flatten() {
                    if !SERVER_METADATA.contains(&mk.as_str()) {
                        walk(
                            &mut out,
                            vec!["f:metadata".into(), format!("f:{mk}")],
                            mk,
                            mv,
                        );
                    }
                }
            }
            _ => walk(&mut out, vec![format!("f:{k}")], k, v),
        }
    }
    out
}

fn walk(out: &mut FieldSet, path: FieldPath, field: &str, value: &Value) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let mut p = path.clone();
                p.push(format!("f:{k}"));
                walk(out, p, k, v);
            }
        }
        Value::Array(items) if !items.is_empty() => match list_kind(field, items.iter()) {
            ListKind::Set => {
                for item in items {
                    let mut p = path.clone();
                    p.push(format!("v:{}", serde_json::to_string(item).unwrap()));
                    out.insert(p);
                }
            }
            ListKind::Keyed(keys) => {
                for item in items {
                    let mut p = path.clone();
                    p.push(element_key(keys, item));
                    for (k, v) in item.as_object().into_iter().flatten() {
                        let mut q = p.clone();
                        q.push(format!("f:{k}"));
                        walk(out, q, k, v);
                    }
                }
            }
            ListKind::Atomic => {
                out.insert(path);
            }
        },
        _ => {
            out.insert(path);
        }
    }
}

fn matches_segment(seg: &str, item: &Value) -> bool {
    if let Some(k) = seg.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
        key.iter().all(|(k, v)| item.get(k) == Some(v))
    } else if let Some(v) = seg.strip_prefix("v:") {
        serde_json::from_str::<Value>(v).is_ok_and(|v| v == *item)
    } else {
        false
    }
}

fn step<'a>(value: &'a Value, seg: &str) -> Option<&'a Value> {
    match seg.strip_prefix("f:") {
        Some(f) => value.as_object()?.get(f),
        None => value.as_array()?.iter().find(|i| matches_segment(seg, i)),
    }
}

/// The value at a field path.
pub fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, seg| step(v, seg))
}

fn lookup_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut v = value;
    for seg in path {
        v = match seg.strip_prefix("f:") {
            Some(f) => v.as_object_mut()?.get_mut(f)?,
            None => v
                .as_array_mut()?
                .iter_mut()
                .find(|i| matches_segment(seg, i))?,
        };
    }
    Some(v)
}

fn remove_at(value: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    match lookup_mut(value, parent) {
        Some(Value::Object(m)) => {
            if let Some(f) = last.strip_prefix("f:") {
                m.remove(f);
            }
        }
        Some(Value::Array(items)) => items.retain(|i| !matches_segment(last, i)),
        _ => {}
    }
}

/// Whether some path in `set` is `path` or lies under it.
fn owns_within(set: &FieldSet, path: &[String]) -> bool {
    set.range(path.to_vec()..)
        .next()
        .is_some_and(|q| q.starts_with(path))
}

/// A key field of a keyed list element (`f:type` right under `k:{"type":...}`).
fn is_element_key(path: &[String]) -> bool {
    match path {
        [.., element, field] => element.strip_prefix("k:").is_some_and(|k| {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            field
                .strip_prefix("f:")
                .is_some_and(|f| key.contains_key(f))
        }),
        _ => false,
    }
}

fn is_empty_node(node: &Value, seg: &str) -> bool {
    match node {
        Value::Object(m) => match seg.strip_prefix("k:") {
            Some(k) => {
                let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                m.keys().all(|f| key.contains_key(f))
            }
            None => m.is_empty(),
        },
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// Removes `path` and then every parent it leaves empty that nobody owns (never `metadata`).
fn remove_unowned(object: &mut Value, path: &[String], owned: &dyn Fn(&[String]) -> bool) {
    if !is_element_key(path) {
        remove_at(object, path);
    }
    for n in (1..path.len()).rev() {
        let ancestor = &path[..n];
        if ancestor == ["f:metadata"] || owned(ancestor) {
            break;
        }
        match lookup(object, ancestor) {
            Some(node) if is_empty_node(node, &ancestor[n - 1]) => remove_at(object, ancestor),
            _ => break,
        }
    }
}

/// Merges an apply configuration into the live object (maps by key, lists by their kind).
fn merge_into(live: &mut Value, config: &Value, field: &str) {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            for (k, cv) in c {
                if cv.is_null() {
                    l.remove(k);
                } else if let Some(lv) = l.get_mut(k) {
                    merge_into(lv, cv, k);
                } else {
                    l.insert(k.clone(), cv.clone());
                }
            }
        }
        (Value::Array(l), Value::Array(c)) => match list_kind(field, l.iter().chain(c.iter())) {
            ListKind::Set => {
                for x in c {
                    if !l.contains(x) {
                        l.push(x.clone());
                    }
                }
            }
            ListKind::Keyed(keys) => {
                for x in c {
                    match l.iter_mut().find(|e| same_key(keys, e, x)) {
                        Some(e) => merge_into(e, x, ""),
                        None => l.push(x.clone()),
                    }
                }
            }
            ListKind::Atomic => *l = c.clone(),
        },
        (l, c) => *l = c.clone(),
    }
}

/// The manager entries recorded in `metadata.managedFields`.
pub fn read_entries(object: &Value) -> Vec<Entry> {
    let mut out = Vec::new();
    for e in object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let mut fields = FieldSet::new();
        tree_to_set(&e["fieldsV1"], &mut Vec::new(), &mut fields);
        out.push(Entry {
            manager: e["manager"].as_str().unwrap_or_default().to_string(),
            operation: e["operation"].as_str().unwrap_or("Update").to_string(),
            subresource: e["subresource"].as_str().map(String::from),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: e["time"].as_str().unwrap_or_default().to_string(),
            fields,
        });
    }
    out
}

fn tree_to_set(tree: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
    let Some(m) = tree.as_object() else { return };
    for (k, child) in m {
        if k == "." {
            out.insert(prefix.clone());
            continue;
        }
        prefix.push(k.clone());
        if child.as_object().is_none_or(|c| c.is_empty()) {
            out.insert(prefix.clone());
        } else {
            tree_to_set(child, prefix, out);
        }
        prefix.pop();
    }
}

/// A field set as fieldsV1 (`{"f:data": {"f:a": {}}}`; `"."` marks a node that is itself
/// owned and has owned children).
pub fn set_to_tree(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for seg in path {
            node = node
                .entry(seg.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .unwrap();
        }
        node.insert(".".into(), json!({}));
    }
    fn tidy(m: &mut Map<String, Value>) {
        for v in m.values_mut() {
            let c = v.as_object_mut().unwrap();
            if c.len() == 1 && c.contains_key(".") {
                c.clear();
            } else {
                tidy(c);
            }
        }
    }
    tidy(&mut root);
    Value::Object(root)
}

pub fn write_entries(object: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": set_to_tree(&e.fields),
            });
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    let meta = object["metadata"].as_object_mut().expect("metadata");
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// Who is applying: manager name, subresource, whether forced, and the entry's apiVersion/time.
pub struct Applier<'a> {
    pub manager: &'a str,
    pub subresource: Option<&'a str>,
    pub force: bool,
    pub api_version: &'a str,
    pub now: &'a str,
}

/// Server-side applies `config` (already narrowed to what the endpoint may change) onto
/// `live` (None: a new object). Returns the merged object with its managed fields.
pub fn apply(live: Option<&Value>, config: &Value, who: &Applier) -> Result<Value, Vec<Conflict>> {
    let mut entries = live.map(read_entries).unwrap_or_default();
    let base = live.cloned().unwrap_or_else(|| json!({"metadata": {}}));
    let applied = field_set(config);
    let mine = |e: &Entry| e.is(who.manager, "Apply", who.subresource);

    let mut conflicts = Vec::new();
    for e in entries.iter().filter(|e| !mine(e)) {
        for p in &applied {
            if owns_within(&e.fields, p) && lookup(&base, p) != lookup(config, p) {
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    api_version: e.api_version.clone(),
                    path: p.clone(),
                });
            }
        }
    }
    if !conflicts.is_empty() {
        if !who.force {
            return Err(conflicts);
        }
        for c in &conflicts {
            for e in entries
                .iter_mut()
                .filter(|e| e.manager == c.manager && !mine(e))
            {
                e.fields.retain(|q| !q.starts_with(&c.path));
            }
        }
    }

    let previous = entries
        .iter()
        .find(|e| mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut merged = base;
    merge_into(&mut merged, config, "");
    {
        let others: Vec<&FieldSet> = entries
            .iter()
            .filter(|e| !mine(e))
            .map(|e| &e.fields)
            .collect();
        let owned =
            |p: &[String]| owns_within(&applied, p) || others.iter().any(|s| owns_within(s, p));
        for p in previous.difference(&applied) {
            if !owned(p) {
                remove_unowned(&mut merged, p, &owned);
            }
        }
    }

    match entries.iter_mut().find(|e| mine(e)) {
        Some(e) => {
            if e.fields != applied {
                e.time = who.now.to_string();
            }
            e.fields = applied;
            e.api_version = who.api_version.to_string();
        }
        None => entries.push(Entry {
            manager: who.manager.to_string(),
            operation: "Apply".into(),
            subresource: who.subresource.map(String::from),
            api_version: who.api_version.to_string(),
            time: who.now.to_string(),
            fields: applied,
        }),
    }
    for e in &mut entries {
        e.fields.retain(|p| lookup(&merged, p).is_some());
    }
    write_entries(&mut merged, &entries);
    Ok(merged)
}

/// Records an update (not an apply) by `manager`: it takes every field it changed from
/// whoever owned it; fields that are gone leave every owner.
pub fn update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    api_version: &str,
    now: &str,
) {
    let mut entries = old.map(read_entries).unwrap_or_default();
    let changed: FieldSet = field_set(new)
        .into_iter()
        .filter(|p| old.and_then(|o| lookup(o, p)) != lookup(new, p))
        .collect();
    for e in &mut entries {
        e.fields
            .retain(|p| lookup(new, p).is_some() && !changed.contains(p));
    }
    if !changed.is_empty() {
        match entries
            .iter_mut()
            .find(|e| e.is(manager, "Update", subresource))
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now.to_string();
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                subresource: subresource.map(String::from),
                api_version: api_version.to_string(),
                time: now.to_string(),
                fields: changed,
            }),
        }
    }
    write_entries(new, &entries);
}
