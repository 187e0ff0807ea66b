//! The fake API's writes: create, update (PUT), patch (merge, JSON, strategic ≈ merge,
//! server-side apply), delete, and a test's own `put`; resourceVersion preconditions,
//! generation, the status subresource boundary and the finalizer rule while deleting.

use serde_json::{Value, json};

use super::apply::{self, Applier};
use super::path::Target;
use super::store::{
    Answer, NO_GENERATION, State, WriteOpts, bad_request, finalizers, generation_part, invalid,
    merge_patch, modified_conflict, not_found, now, same_object, status, with_details,
};

impl State {
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
