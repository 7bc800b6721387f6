//! Writes: create, update (PUT), patch (including server-side apply) and the update
//! pipeline they share.

use super::validate::{check_preconditions, name_problem};
use super::{
    finalizers, is_deleting, list_kinds, meta_str, new_uid, random_suffix, spec_part, Managed, State,
    WriteOpts, CRD_STORAGE,
};
use crate::apply;
use crate::error::{forbidden_field, invalid_value, required_value, ApiError, ApiResult};
use crate::managed_fields;
use crate::patch::{self, PatchType};
use crate::resources::{to_served, to_stored, ResourceType};
use crate::store::{EventType, Key};
use serde_json::{json, Value};

impl State {
    fn namespace_check(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> ApiResult<()> {
        if !rt.namespaced {
            return Ok(());
        }
        let ns = ns.unwrap_or_default();
        match self.store.get("namespaces", &(String::new(), ns.to_string())) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(n) if is_deleting(n) => Err(ApiError {
                details: Some(json!({
                    "name": name,
                    "kind": rt.plural,
                    "causes": [{
                        "reason": "NamespaceTerminating",
                        "message": format!("namespace {ns} is being terminated"),
                        "field": "metadata.namespace",
                    }],
                })),
                ..ApiError::forbidden(format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    crate::error::qualified(&rt.group, &rt.plural)
                ))
            }),
            Some(_) => Ok(()),
        }
    }

    /// Checks apiVersion/kind/name/namespace of a request body against the URL.
    fn check_identity(
        rt: &ResourceType,
        ns: Option<&str>,
        name: Option<&str>,
        obj: &mut Value,
    ) -> ApiResult<()> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        match obj.get("kind").and_then(Value::as_str) {
            Some(k) if k != rt.kind => {
                return Err(ApiError::bad_request(format!(
                    "the kind of the provided object ({k}) does not match the expected kind ({})",
                    rt.kind
                )))
            }
            _ => {}
        }
        match obj.get("apiVersion").and_then(Value::as_str) {
            Some(v) if v != rt.api_version() => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({})",
                    rt.api_version()
                )))
            }
            _ => {}
        }
        if !obj["metadata"].is_object() {
            if obj["metadata"].is_null() {
                obj["metadata"] = json!({});
            } else {
                return Err(ApiError::bad_request("metadata must be an object"));
            }
        }
        if rt.namespaced {
            let url_ns = ns.unwrap_or_default();
            match meta_str(obj, "namespace") {
                Some(b) if !b.is_empty() && b != url_ns => return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                )),
                _ => obj["metadata"]["namespace"] = json!(url_ns),
            }
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        if let Some(url_name) = name {
            match meta_str(obj, "name") {
                Some(b) if !b.is_empty() && b != url_name => {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({b}) does not match the name on the URL ({url_name})"
                    )))
                }
                _ => obj["metadata"]["name"] = json!(url_name),
            }
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        Ok(())
    }

    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        mut obj: Value,
        opts: &WriteOpts,
    ) -> ApiResult<Value> {
        Self::check_identity(rt, ns, None, &mut obj)?;
        let mut name = meta_str(&obj, "name").unwrap_or_default().to_string();
        if name.is_empty() {
            match meta_str(&obj, "generateName").filter(|g| !g.is_empty()) {
                Some(prefix) => {
                    name = format!("{prefix}{}", random_suffix());
                    obj["metadata"]["name"] = json!(name);
                }
                None => {
                    return Err(ApiError::invalid(
                        &rt.group,
                        &rt.kind,
                        "",
                        vec![required_value("metadata.name", "name or generateName is required")],
                    ))
                }
            }
        }
        if let Some(problem) = name_problem(&name, rt.plural == "namespaces" && rt.group.is_empty()) {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.kind,
                &name,
                vec![invalid_value("metadata.name", &json!(name), &problem)],
            ));
        }
        self.namespace_check(rt, ns, &name)?;
        let key = Self::key(rt, ns, &name);
        if self.store.get(&rt.storage, &key).is_some() {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        if meta_str(&obj, "resourceVersion").is_some_and(|r| !r.is_empty()) {
            // etcd3 storage refuses this; clients that re-create a fetched object hit it.
            return Err(ApiError::internal("resourceVersion should not be set on objects to be created"));
        }
        if let Some(meta) = obj["metadata"].as_object_mut() {
            for f in [
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "selfLink",
                "managedFields",
            ] {
                meta.remove(f);
            }
        }
        if rt.status_subresource {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        self.prepare(rt, None, &mut obj, opts.field_validation)?;
        obj["metadata"]["uid"] = json!(new_uid());
        obj["metadata"]["creationTimestamp"] = json!(self.now_string());
        if rt.generation {
            obj["metadata"]["generation"] = json!(1);
        }
        let w = self.writer(rt, opts, "");
        managed_fields::track_update(None, &mut obj, &w, &list_kinds(rt));
        if opts.dry_run {
            return Ok(obj);
        }
        let stored = to_stored(rt, obj);
        let out = self.store.commit(&rt.storage, key.clone(), EventType::Added, stored, None);
        if rt.storage == CRD_STORAGE {
            self.sync_crds();
        }
        self.collect_if_dangling(&rt.storage, &key, &out);
        Ok(to_served(rt, out))
    }

    /// The garbage collector deletes a dependent whose owners are all absent (no live
    /// object has their uid). The real collector does this shortly after the write; here
    /// it happens right after it, so the writer gets its response and watchers see the
    /// ADDED/MODIFIED followed by the DELETED.
    fn collect_if_dangling(&mut self, storage: &str, key: &Key, obj: &Value) {
        let Some(refs) = obj["metadata"]["ownerReferences"].as_array().filter(|r| !r.is_empty()) else {
            return;
        };
        let any_live = refs.iter().filter_map(|r| r["uid"].as_str()).any(|u| self.store.has_uid(u));
        if !any_live {
            self.delete_internal(storage, key, None, false);
        }
    }

    /// PUT (main resource or `/status`).
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        opts: &WriteOpts,
    ) -> ApiResult<Value> {
        let subresource = opts.subresource.as_deref();
        Self::check_identity(rt, ns, Some(name), &mut obj)?;
        let old = self.get(rt, ns, name)?;
        check_preconditions(rt, &old, &obj)?;
        let w = self.writer(rt, opts, subresource.unwrap_or_default());
        self.write_existing(rt, old, obj, Managed::Update(w), opts)
    }

    /// PATCH; the flag tells whether server-side apply created the object (201).
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        ptype: PatchType,
        body: &[u8],
        opts: &WriteOpts,
    ) -> ApiResult<(Value, bool)> {
        let subresource = opts.subresource.as_deref();
        if ptype == PatchType::Strategic && rt.is_custom() {
            return Err(ApiError::unsupported_media_type(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        let w = self.writer(rt, opts, subresource.unwrap_or_default());
        if ptype == PatchType::Apply {
            let mut applied = patch::parse_body(body, true)?;
            if opts.field_manager.is_empty() {
                return Err(ApiError::bad_request(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            Self::check_identity(rt, ns, Some(name), &mut applied)?;
            let live = match self.get(rt, ns, name) {
                Ok(live) => live,
                Err(e) if e.code == 404 && subresource.is_none() => {
                    // Apply creates the object when absent.
                    if let Some(m) = applied["metadata"].as_object_mut() {
                        m.remove("resourceVersion");
                    }
                    let mut created = apply::apply(None, &applied, &w, opts.force, &list_kinds(rt))?;
                    let entries = managed_fields::read_entries(&created);
                    if let Some(m) = created["metadata"].as_object_mut() {
                        m.remove("managedFields");
                    }
                    let mut out =
                        self.create(rt, ns, created, &WriteOpts { dry_run: true, ..opts.clone() })?;
                    managed_fields::write_entries(&mut out, &entries);
                    if opts.dry_run {
                        return Ok((out, true));
                    }
                    let stored = to_stored(rt, out);
                    let key = Self::key(rt, ns, name);
                    let out = self.store.commit(&rt.storage, key.clone(), EventType::Added, stored, None);
                    if rt.storage == CRD_STORAGE {
                        self.sync_crds();
                    }
                    self.collect_if_dangling(&rt.storage, &key, &out);
                    return Ok((to_served(rt, out), true));
                }
                Err(e) => return Err(e),
            };
            check_preconditions(rt, &live, &applied)?;
            let merged = apply::apply(Some(&live), &applied, &w, opts.force, &list_kinds(rt))?;
            return self.write_existing(rt, live, merged, Managed::Done, opts).map(|o| (o, false));
        }
        let old = self.get(rt, ns, name)?;
        let mut patched = patch::apply_patch(ptype, &old, body)?;
        check_preconditions(rt, &old, &patched)?;
        Self::check_identity(rt, ns, Some(name), &mut patched)?;
        self.write_existing(rt, old, patched, Managed::Update(w), opts).map(|o| (o, false))
    }

    /// The update pipeline shared by PUT, PATCH and apply. `old` and `new` are served form.
    fn write_existing(
        &mut self,
        rt: &ResourceType,
        old: Value,
        new: Value,
        managed: Managed,
        opts: &WriteOpts,
    ) -> ApiResult<Value> {
        let subresource = opts.subresource.as_deref();
        let dry_run = opts.dry_run;
        let name = meta_str(&old, "name").unwrap_or_default().to_string();
        let mut merged = if subresource == Some("finalize") {
            // namespaces/finalize changes only spec.finalizers.
            let mut m = old.clone();
            m["spec"]["finalizers"] = new["spec"]["finalizers"].clone();
            m
        } else if subresource == Some("status") {
            // Status writes change only .status (metadata, spec are the stored ones).
            let mut m = old.clone();
            match new.get("status") {
                Some(s) => m["status"] = s.clone(),
                None => {
                    if let Some(o) = m.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            if let Some(mf) = new["metadata"].get("managedFields") {
                m["metadata"]["managedFields"] = mf.clone();
            }
            m
        } else {
            let mut m = new;
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
            ] {
                match old["metadata"].get(f) {
                    Some(v) => m["metadata"][f] = v.clone(),
                    None => {
                        if let Some(meta) = m["metadata"].as_object_mut() {
                            meta.remove(f);
                        }
                    }
                }
            }
            if matches!(managed, Managed::Update(_)) && m["metadata"].get("managedFields").is_none() {
                if let Some(mf) = old["metadata"].get("managedFields") {
                    m["metadata"]["managedFields"] = mf.clone();
                }
            }
            if rt.status_subresource {
                match old.get("status") {
                    Some(s) => m["status"] = s.clone(),
                    None => {
                        if let Some(o) = m.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            m
        };
        self.prepare(rt, Some(&old), &mut merged, opts.field_validation)?;
        if is_deleting(&old) {
            let before = finalizers(&old);
            if finalizers(&merged).iter().any(|f| !before.contains(f)) {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    &name,
                    vec![forbidden_field(
                        "metadata.finalizers",
                        "no new finalizers can be added if the object is being deleted",
                    )],
                ));
            }
        }
        if rt.generation
            && spec_part(&old, rt.status_subresource) != spec_part(&merged, rt.status_subresource)
        {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0);
            merged["metadata"]["generation"] = json!(g + 1);
        }
        if let Managed::Update(w) = &managed {
            managed_fields::track_update(Some(&old), &mut merged, w, &list_kinds(rt));
        }
        let mut a = old.clone();
        let mut b = merged.clone();
        managed_fields::strip_times(&mut a);
        managed_fields::strip_times(&mut b);
        if a == b {
            // The real server skips the write entirely: same RV, no watch event.
            return Ok(old);
        }
        if dry_run {
            return Ok(merged);
        }
        let key = (meta_str(&old, "namespace").unwrap_or_default().to_string(), name.clone());
        let stored = to_stored(rt, merged);
        let old_stored = to_stored(rt, old);
        // Namespaces are removed by `settle` once empty (the namespace controller's job).
        if is_deleting(&stored) && finalizers(&stored).is_empty() && rt.storage != "namespaces" {
            // The real store deletes instead of writing: watchers see the last stored state,
            // the writer gets the object it sent.
            self.remove(&rt.storage, key, old_stored);
            return Ok(to_served(rt, stored));
        }
        let out = self.store.commit(&rt.storage, key.clone(), EventType::Modified, stored, Some(old_stored));
        if rt.storage == CRD_STORAGE {
            self.sync_crds();
        }
        self.settle();
        self.collect_if_dangling(&rt.storage, &key, &out);
        Ok(to_served(rt, out))
    }
}
