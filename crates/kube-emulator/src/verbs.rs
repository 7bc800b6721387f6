//! The API verbs over the store: get, list, create, update, patch, delete, plus the
//! write pipeline every write goes through (status/spec split, type-specific rules,
//! CRD schema, finalizers, generation, managedFields, no-op detection).

use crate::apply::{self, Writer};
use crate::error::{forbidden_field, invalid_value, required_value, ApiError, ApiResult, Cause};
use crate::patch::{self, PatchType};
use crate::resources::{to_served, to_stored, Registry, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{EventType, Key, Store};
use crate::NowFn;
use base64::Engine;
use serde_json::{json, Map, Value};

pub const CRD_STORAGE: &str = "customresourcedefinitions.apiextensions.k8s.io";
const CRD_CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

pub struct State {
    pub store: Store,
    pub registry: Registry,
    pub now: NowFn,
    /// Set while a foreground deletion may be waiting, so `settle` only scans then.
    foreground_pending: bool,
}

#[derive(Debug, Clone, Default)]
pub struct WriteOpts {
    pub field_manager: String,
    /// `Some("status")` for writes to the status subresource.
    pub subresource: Option<String>,
    /// `fieldValidation=Strict`: unknown fields are a 400 instead of being dropped.
    pub strict: bool,
    pub dry_run: bool,
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub propagation: Propagation,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ListOpts {
    pub labels: LabelSelector,
    pub fields: Option<FieldSelector>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj["metadata"][field].as_str()
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

fn is_deleting(obj: &Value) -> bool {
    obj["metadata"]["deletionTimestamp"].is_string()
}

/// DNS-1123 subdomain (most names) or label (namespaces).
fn name_problem(name: &str, label_only: bool) -> Option<String> {
    let max = if label_only { 63 } else { 253 };
    if name.len() > max {
        return Some(format!("must be no more than {max} characters"));
    }
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (!label_only && c == '.'));
    let ends_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok_chars && ends_ok {
        None
    } else if label_only {
        Some("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into())
    } else {
        Some("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into())
    }
}

fn random_suffix() -> String {
    use rand::Rng;
    // Same alphabet as apimachinery's utilrand.String (no vowels, no confusable digits).
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

/// List merge/ownership kinds for a resource: ObjectMeta's, then the CRD schema's.
fn list_kinds(rt: &ResourceType) -> impl Fn(&[String]) -> apply::ListKind + '_ {
    move |p: &[String]| {
        apply::meta_list_kind(p)
            .or_else(|| rt.crd.as_ref().and_then(|c| c.schema.as_ref()).map(|s| s.list_kind(p)))
            .unwrap_or(apply::ListKind::Atomic)
    }
}

/// Everything but metadata and status: what `metadata.generation` tracks.
fn spec_part(obj: &Value, status_subresource: bool) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if status_subresource {
            m.remove("status");
        }
    }
    o
}

impl State {
    pub fn new(now: NowFn) -> Self {
        let mut s =
            Self { store: Store::default(), registry: Registry::default(), now, foreground_pending: false };
        let ns = s.registry.find("", "v1", "namespaces").cloned().expect("builtin");
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let body = json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":name}});
            s.create(
                &ns,
                None,
                body,
                &WriteOpts { field_manager: "kube-apiserver".into(), ..Default::default() },
            )
            .expect("bootstrap namespaces");
        }
        s
    }

    pub fn now_string(&self) -> String {
        (self.now)().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    fn key(rt: &ResourceType, ns: Option<&str>, name: &str) -> Key {
        let ns = if rt.namespaced { ns.unwrap_or_default() } else { "" };
        (ns.to_string(), name.to_string())
    }

    fn writer(&self, rt: &ResourceType, opts: &WriteOpts, subresource: &str) -> Writer {
        Writer {
            manager: opts.field_manager.clone(),
            api_version: rt.api_version(),
            subresource: subresource.to_string(),
            time: self.now_string(),
        }
    }

    pub fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        self.store
            .get(&rt.storage, &Self::key(rt, ns, name))
            .map(|o| to_served(rt, o.clone()))
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }

    fn namespace_check(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> ApiResult<()> {
        if !rt.namespaced {
            return Ok(());
        }
        let ns = ns.unwrap_or_default();
        match self.store.get("namespaces", &(String::new(), ns.to_string())) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(n) if is_deleting(n) => Err(ApiError::forbidden(format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                crate::error::qualified(&rt.group, &rt.plural)
            ))),
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

    /// Type-specific defaulting and validation, then the CRD schema. `obj` is in served form.
    fn prepare(
        &self,
        rt: &ResourceType,
        old: Option<&Value>,
        obj: &mut Value,
        strict: bool,
    ) -> ApiResult<()> {
        typed_check(rt, obj)?;
        let name = meta_str(obj, "name").unwrap_or_default().to_string();
        let mut causes: Vec<Cause> = Vec::new();
        if let Some(labels) = obj["metadata"]["labels"].as_object() {
            for (k, v) in labels {
                if !v.is_string() {
                    return Err(ApiError::bad_request(format!(
                        "metadata.labels.{k}: label values must be strings"
                    )));
                }
            }
        }
        if let Some(ann) = obj["metadata"]["annotations"].as_object() {
            if let Some((k, _)) = ann.iter().find(|(_, v)| !v.is_string()) {
                return Err(ApiError::bad_request(format!(
                    "metadata.annotations.{k}: annotation values must be strings"
                )));
            }
        }
        validate_labels(obj, &mut causes);
        validate_owner_references(obj, &mut causes);
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "secrets") => prepare_secret(old, obj, &mut causes)?,
            ("", "namespaces") => {
                obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
                if old.is_none() {
                    obj["spec"]["finalizers"] = json!(["kubernetes"]);
                    obj["status"] = json!({"phase": "Active"});
                }
            }
            ("events.k8s.io", "events") if old.is_none() => {
                // ValidateEventCreate for events.k8s.io/v1.
                for f in ["eventTime", "reportingController", "reportingInstance", "action", "reason"] {
                    if obj[f].is_null() || obj[f] == json!("") {
                        causes.push(required_value(f, ""));
                    }
                }
                for (f, max) in [("reportingInstance", 128), ("action", 128), ("reason", 128), ("note", 1024)]
                {
                    if obj[f].as_str().is_some_and(|v| v.len() > max) {
                        causes.push(Cause {
                            reason: "FieldValueTooLong",
                            field: f.to_string(),
                            message: format!("{f}: Too long: may not be more than {max} bytes"),
                        });
                    }
                }
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                if old.is_none() {
                    // Set at creation by the real server; it holds deletion until the
                    // instances are gone.
                    let mut fins = finalizers(obj);
                    if !fins.iter().any(|f| f == CRD_CLEANUP_FINALIZER) {
                        fins.push(CRD_CLEANUP_FINALIZER.into());
                        obj["metadata"]["finalizers"] = json!(fins);
                    }
                }
                prepare_crd(obj, &mut causes);
            }
            _ => {}
        }
        if let Some(schema) = rt.crd.as_ref().and_then(|c| c.schema.as_ref()) {
            let unknown = schema.prune(obj);
            if strict && !unknown.is_empty() {
                let list: Vec<String> =
                    unknown.iter().map(|u| format!("unknown field \"{}\"", &u[1..])).collect();
                return Err(ApiError::bad_request(format!("strict decoding error: {}", list.join(", "))));
            }
            schema.apply_defaults(obj);
            causes.extend(schema.validate(obj));
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(&rt.group, &rt.kind, &name, causes))
        }
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
        self.prepare(rt, None, &mut obj, opts.strict)?;
        obj["metadata"]["uid"] = json!(new_uid());
        obj["metadata"]["creationTimestamp"] = json!(self.now_string());
        if rt.generation {
            obj["metadata"]["generation"] = json!(1);
        }
        let w = self.writer(rt, opts, "");
        apply::track_update(None, &mut obj, &w, &list_kinds(rt));
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
            self.delete_internal(storage, key, Propagation::Background);
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

    pub fn patch(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        ptype: PatchType,
        body: &[u8],
        opts: &WriteOpts,
    ) -> ApiResult<Value> {
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
                    let entries = apply::read_entries(&created);
                    if let Some(m) = created["metadata"].as_object_mut() {
                        m.remove("managedFields");
                    }
                    let mut out =
                        self.create(rt, ns, created, &WriteOpts { dry_run: true, ..opts.clone() })?;
                    apply::write_entries(&mut out, &entries);
                    if opts.dry_run {
                        return Ok(out);
                    }
                    let stored = to_stored(rt, out);
                    let key = Self::key(rt, ns, name);
                    let out = self.store.commit(&rt.storage, key.clone(), EventType::Added, stored, None);
                    if rt.storage == CRD_STORAGE {
                        self.sync_crds();
                    }
                    self.collect_if_dangling(&rt.storage, &key, &out);
                    return Ok(to_served(rt, out));
                }
                Err(e) => return Err(e),
            };
            check_preconditions(rt, &live, &applied)?;
            let merged = apply::apply(Some(&live), &applied, &w, opts.force, &list_kinds(rt))?;
            return self.write_existing(rt, live, merged, Managed::Done, opts);
        }
        let old = self.get(rt, ns, name)?;
        let mut patched = patch::apply_patch(ptype, &old, body)?;
        check_preconditions(rt, &old, &patched)?;
        Self::check_identity(rt, ns, Some(name), &mut patched)?;
        self.write_existing(rt, old, patched, Managed::Update(w), opts)
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
        self.prepare(rt, Some(&old), &mut merged, opts.strict)?;
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
            apply::track_update(Some(&old), &mut merged, w, &list_kinds(rt));
        }
        let mut a = old.clone();
        let mut b = merged.clone();
        apply::strip_times(&mut a);
        apply::strip_times(&mut b);
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
            let out = self.remove(&rt.storage, key, stored, old_stored, Propagation::Background);
            return Ok(to_served(rt, out));
        }
        let out = self.store.commit(&rt.storage, key.clone(), EventType::Modified, stored, Some(old_stored));
        if rt.storage == CRD_STORAGE {
            self.sync_crds();
        }
        self.settle();
        self.collect_if_dangling(&rt.storage, &key, &out);
        Ok(to_served(rt, out))
    }

    /// DELETE of one object. Returns the object (still present with a deletionTimestamp
    /// when finalizers hold it, or its last state) and whether it is gone.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOpts,
    ) -> ApiResult<(Value, bool)> {
        let obj = self.get(rt, ns, name)?;
        if rt.storage == "namespaces" && matches!(name, "default" | "kube-system" | "kube-public") {
            return Err(ApiError {
                details: Some(json!({"name": name, "kind": "namespaces"})),
                ..ApiError::forbidden(format!(
                    "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
                ))
            });
        }
        if let Some(uid) = &opts.precondition_uid {
            if meta_str(&obj, "uid") != Some(uid.as_str()) {
                return Err(ApiError::conflict(
                    &rt.group,
                    &rt.plural,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&obj, "uid").unwrap_or_default()
                    ),
                ));
            }
        }
        if let Some(rv) = &opts.precondition_rv {
            if meta_str(&obj, "resourceVersion") != Some(rv.as_str()) {
                return Err(ApiError::conflict(
                    &rt.group,
                    &rt.plural,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        meta_str(&obj, "resourceVersion").unwrap_or_default()
                    ),
                ));
            }
        }
        if opts.dry_run {
            return Ok((obj, false));
        }
        let key = Self::key(rt, ns, name);
        let gone = self.delete_internal(&rt.storage, &key, opts.propagation);
        let after = self.store.get(&rt.storage, &key).cloned();
        Ok(match (gone, after) {
            (_, Some(still)) => (to_served(rt, still), false),
            (Some(last), None) => (to_served(rt, last), true),
            (None, None) => (obj, true),
        })
    }

    /// Deletes honouring finalizers. Returns the removed object if it was removed now.
    fn delete_internal(&mut self, storage: &str, key: &Key, policy: Propagation) -> Option<Value> {
        let obj = self.store.get(storage, key)?.clone();
        let rt = self.registry.by_storage(storage).cloned();
        let generation = rt.as_ref().is_some_and(|r| r.generation);
        if storage == "namespaces" {
            if !is_deleting(&obj) {
                let mut next = obj.clone();
                next["metadata"]["deletionTimestamp"] = json!(self.now_string());
                next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                next["status"]["phase"] = json!("Terminating");
                self.store.commit(storage, key.clone(), EventType::Modified, next, Some(obj.clone()));
                let ns = key.1.clone();
                for s in self.store.storages() {
                    let keys: Vec<Key> =
                        self.store.objects(&s).filter(|(k, _)| k.0 == ns).map(|(k, _)| k.clone()).collect();
                    for k in keys {
                        self.delete_internal(&s, &k, Propagation::Background);
                    }
                }
            }
            self.settle();
            return if self.store.get(storage, key).is_none() { Some(obj) } else { None };
        }
        let mut fins = finalizers(&obj);
        if storage == CRD_STORAGE && !fins.iter().any(|f| f == CRD_CLEANUP_FINALIZER) {
            fins.push(CRD_CLEANUP_FINALIZER.into());
        }
        let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
        let foreground = policy == Propagation::Foreground
            && !is_deleting(&obj)
            && !crate::gc::dependents(self, &uid).is_empty();
        if !fins.is_empty() || foreground {
            if is_deleting(&obj) {
                return None;
            }
            let mut next = obj.clone();
            if foreground {
                // The owner stays (with this finalizer) until its dependents are gone.
                self.foreground_pending = true;
                let mut with = finalizers(&obj);
                with.push(FOREGROUND_FINALIZER.into());
                next["metadata"]["finalizers"] = json!(with);
            }
            next["metadata"]["deletionTimestamp"] = json!(self.now_string());
            next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if generation {
                let g = obj["metadata"]["generation"].as_i64().unwrap_or(0);
                next["metadata"]["generation"] = json!(g + 1);
            }
            self.store.commit(storage, key.clone(), EventType::Modified, next, Some(obj));
            if storage == CRD_STORAGE {
                self.delete_crd_instances(key);
            }
            if foreground {
                for (dep_storage, dep_key) in crate::gc::dependents(self, &uid) {
                    self.delete_internal(&dep_storage, &dep_key, Propagation::Foreground);
                }
            }
            self.settle();
            return None;
        }
        let out = self.remove(storage, key.clone(), obj.clone(), obj, policy);
        Some(out)
    }

    /// Removes an object for good and runs garbage collection for its dependents.
    fn remove(&mut self, storage: &str, key: Key, last: Value, old: Value, policy: Propagation) -> Value {
        let uid = meta_str(&last, "uid").unwrap_or_default().to_string();
        let out = self.store.commit(storage, key, EventType::Deleted, last, Some(old));
        crate::gc::collect(self, &uid, policy);
        if storage == CRD_STORAGE {
            self.sync_crds();
        }
        self.settle();
        out
    }

    fn delete_crd_instances(&mut self, crd_key: &Key) {
        let Some(crd) = self.store.get(CRD_STORAGE, crd_key) else {
            return;
        };
        let storage = crate::resources::storage_key(
            crd["spec"]["group"].as_str().unwrap_or_default(),
            crd["spec"]["names"]["plural"].as_str().unwrap_or_default(),
        );
        let keys: Vec<Key> = self.store.objects(&storage).map(|(k, _)| k.clone()).collect();
        for k in keys {
            self.delete_internal(&storage, &k, Propagation::Background);
        }
    }

    /// Finishes deletions that wait on other objects: terminating namespaces once empty,
    /// CRDs being deleted once their instances are gone.
    pub fn settle(&mut self) {
        loop {
            let mut progressed = false;
            let terminating: Vec<Value> = self
                .store
                .objects("namespaces")
                .filter(|(_, o)| is_deleting(o) && finalizers(o).is_empty())
                .map(|(_, o)| o.clone())
                .collect();
            for ns_obj in terminating {
                let ns = meta_str(&ns_obj, "name").unwrap_or_default().to_string();
                let empty =
                    self.store.storages().iter().all(|s| self.store.objects(s).all(|(k, _)| k.0 != ns));
                if empty {
                    let key = (String::new(), ns);
                    let mut last = ns_obj.clone();
                    last["spec"]["finalizers"] = json!([]);
                    self.remove("namespaces", key, last, ns_obj, Propagation::Background);
                    progressed = true;
                }
            }
            let deleting_crds: Vec<Value> = self
                .store
                .objects(CRD_STORAGE)
                .filter(|(_, o)| is_deleting(o))
                .map(|(_, o)| o.clone())
                .collect();
            for crd in deleting_crds {
                let storage = crate::resources::storage_key(
                    crd["spec"]["group"].as_str().unwrap_or_default(),
                    crd["spec"]["names"]["plural"].as_str().unwrap_or_default(),
                );
                if self.store.objects(&storage).next().is_none() {
                    let mut last = crd.clone();
                    let fins: Vec<String> =
                        finalizers(&crd).into_iter().filter(|f| f != CRD_CLEANUP_FINALIZER).collect();
                    last["metadata"]["finalizers"] = json!(fins);
                    let key = (String::new(), meta_str(&crd, "name").unwrap_or_default().to_string());
                    if fins.is_empty() {
                        self.remove(CRD_STORAGE, key, last, crd, Propagation::Background);
                    } else {
                        self.store.commit(CRD_STORAGE, key, EventType::Modified, last, Some(crd));
                    }
                    progressed = true;
                }
            }
            let waiting: Vec<(String, Key, Value)> = if !self.foreground_pending {
                vec![]
            } else {
                self.store
                    .storages()
                    .into_iter()
                    .flat_map(|st| {
                        self.store
                            .objects(&st)
                            .filter(|(_, o)| {
                                is_deleting(o) && finalizers(o).iter().any(|f| f == FOREGROUND_FINALIZER)
                            })
                            .map(|(k, o)| (st.clone(), k.clone(), o.clone()))
                            .collect::<Vec<_>>()
                    })
                    .collect()
            };
            if waiting.is_empty() {
                self.foreground_pending = false;
            }
            for (storage, key, obj) in waiting {
                let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
                if !crate::gc::dependents(self, &uid).is_empty() {
                    continue;
                }
                let rest: Vec<String> =
                    finalizers(&obj).into_iter().filter(|f| f != FOREGROUND_FINALIZER).collect();
                let mut last = obj.clone();
                last["metadata"]["finalizers"] = json!(rest);
                if rest.is_empty() {
                    self.remove(&storage, key, last, obj, Propagation::Background);
                } else {
                    self.store.commit(&storage, key, EventType::Modified, last, Some(obj));
                }
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
    }

    pub fn sync_crds(&mut self) {
        let crds: Vec<Value> = self.store.objects(CRD_STORAGE).map(|(_, v)| v.clone()).collect();
        self.registry.sync_crds(crds.iter());
    }

    /// Resolves the snapshot a list reads from: (objects, RV reported in the list).
    fn list_source(&self, rt: &ResourceType, o: &ListOpts) -> ApiResult<ListSource> {
        let current = self.store.current_rv();
        let too_large = |rv: u64| {
            let mut e = ApiError::new(
                504,
                "Timeout",
                format!("Too large resource version: {rv}, current: {current}"),
            );
            e.details = Some(
                json!({"causes":[{"reason":"ResourceVersionTooLarge","message":"Too large resource version"}],"retryAfterSeconds":1}),
            );
            e
        };
        if let Some(token) = &o.continue_token {
            let (rv, start) = decode_continue(token)?;
            if rv < self.store.compacted_rv() {
                return Err(ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list."));
            }
            let snap = self.store.snapshot_at(&rt.storage, rv);
            return Ok((Some(snap.into_iter().collect()), rv, Some(start)));
        }
        let rv: Option<u64> = match o.resource_version.as_deref() {
            None | Some("") => None,
            Some(s) => {
                Some(s.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}")))?)
            }
        };
        match (o.resource_version_match.as_deref(), rv) {
            (Some(m), None) if !m.is_empty() => Err(ApiError::bad_request(
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            )),
            (Some("Exact"), Some(rv)) => {
                if rv > current {
                    return Err(too_large(rv));
                }
                if rv < self.store.compacted_rv() {
                    return Err(ApiError::gone(format!(
                        "The resourceVersion for the provided list is too old. ({rv})"
                    )));
                }
                let snap = self.store.snapshot_at(&rt.storage, rv);
                Ok((Some(snap.into_iter().collect()), rv, None))
            }
            (Some(m), Some(_)) if m != "NotOlderThan" && m != "Exact" => {
                Err(ApiError::bad_request(format!("resourceVersionMatch: Unsupported value: \"{m}\"")))
            }
            (_, Some(rv)) if rv > current => Err(too_large(rv)),
            _ => Ok((None, current, None)),
        }
    }

    pub fn list(&self, rt: &ResourceType, ns: Option<&str>, o: &ListOpts) -> ApiResult<Value> {
        let (snapshot, rv, start) = self.list_source(rt, o)?;
        let objects: Box<dyn Iterator<Item = (&Key, &Value)>> = match &snapshot {
            Some(snap) => Box::new(snap.iter().map(|(k, v)| (k, v))),
            None => Box::new(self.store.objects(&rt.storage)),
        };
        // Selectors are matched on the stored form (labels are the same in every
        // representation; field labels use the storage's names), copying only matches.
        let selected: Vec<(Key, Value)> = objects
            .filter(|(k, _)| ns.is_none_or(|n| k.0 == n))
            .filter(|(k, _)| start.as_ref().is_none_or(|s| *k > s))
            .filter(|(_, v)| o.labels.matches(v) && o.fields.as_ref().is_none_or(|f| f.matches(v)))
            .map(|(k, v)| (k.clone(), to_served(rt, v.clone())))
            .collect();
        let mut meta = json!({ "resourceVersion": rv.to_string() });
        let items: Vec<Value> = match o.limit.filter(|l| *l > 0) {
            Some(limit) if selected.len() > limit => {
                let last = selected[limit - 1].0.clone();
                meta["continue"] = json!(encode_continue(rv, &last));
                let filtered = !o.labels.eq(&LabelSelector::default()) || o.fields.is_some();
                if !filtered {
                    meta["remainingItemCount"] = json!(selected.len() - limit);
                }
                selected.into_iter().take(limit).map(|(_, v)| v).collect()
            }
            _ => selected.into_iter().map(|(_, v)| v).collect(),
        };
        Ok(json!({
            "apiVersion": rt.api_version(),
            "kind": rt.list_kind(),
            "metadata": meta,
            "items": items,
        }))
    }

    /// DELETE on a collection: deletes every selected object (honouring finalizers).
    pub fn delete_collection(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        o: &ListOpts,
        d: &DeleteOpts,
    ) -> ApiResult<Value> {
        let list = self.list(rt, ns, &ListOpts { limit: None, continue_token: None, ..o.clone() })?;
        let mut items = Vec::new();
        for item in list["items"].as_array().cloned().unwrap_or_default() {
            let name = meta_str(&item, "name").unwrap_or_default().to_string();
            let item_ns = meta_str(&item, "namespace").map(String::from);
            if let Ok((obj, _)) = self.delete(rt, item_ns.as_deref(), &name, d) {
                items.push(obj);
            }
        }
        Ok(json!({
            "apiVersion": rt.api_version(),
            "kind": rt.list_kind(),
            "metadata": {"resourceVersion": self.store.current_rv().to_string()},
            "items": items,
        }))
    }

    /// Used by GC: rewrite an object in place (already in stored form).
    pub fn gc_update(&mut self, storage: &str, key: Key, next: Value, old: Value) {
        self.store.commit(storage, key, EventType::Modified, next, Some(old));
    }

    pub fn gc_delete(&mut self, storage: &str, key: &Key) {
        self.delete_internal(storage, key, Propagation::Background);
    }
}

/// Objects a list reads, the RV it reports, and the key to continue after.
/// `None` objects means "the current state" (read in place, without copying the store).
type ListSource = (Option<Vec<(Key, Value)>>, u64, Option<Key>);

pub enum Managed {
    Update(Writer),
    /// managedFields already computed (server-side apply).
    Done,
}

/// Decodes the object into its typed form (ObjectMeta only for custom resources), as the
/// real server does before anything else: type mismatches are a 400, never a panic later.
fn typed_check(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
    use k8s_openapi::api;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    fn check<T: serde::de::DeserializeOwned>(v: &Value) -> Result<(), serde_json::Error> {
        serde_json::from_value::<T>(v.clone()).map(drop)
    }
    let res = match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "secrets") => check::<api::core::v1::Secret>(obj),
        ("", "namespaces") => check::<api::core::v1::Namespace>(obj),
        ("", "configmaps") => check::<api::core::v1::ConfigMap>(obj),
        ("", "events") => check::<api::core::v1::Event>(obj),
        ("", "serviceaccounts") => check::<api::core::v1::ServiceAccount>(obj),
        ("events.k8s.io", "events") => check::<api::events::v1::Event>(obj),
        ("coordination.k8s.io", "leases") => check::<api::coordination::v1::Lease>(obj),
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            check::<apiext::CustomResourceDefinition>(obj)
        }
        ("rbac.authorization.k8s.io", "roles") => check::<api::rbac::v1::Role>(obj),
        ("rbac.authorization.k8s.io", "rolebindings") => check::<api::rbac::v1::RoleBinding>(obj),
        ("rbac.authorization.k8s.io", "clusterroles") => check::<api::rbac::v1::ClusterRole>(obj),
        ("rbac.authorization.k8s.io", "clusterrolebindings") => {
            check::<api::rbac::v1::ClusterRoleBinding>(obj)
        }
        _ => check::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(&obj["metadata"]),
    };
    // Go decoding leaves missing fields at their zero value (validation reports them as
    // 422 later); only type mismatches are decoding errors.
    let res = match res {
        Err(e) if e.to_string().starts_with("missing field") => Ok(()),
        other => other,
    };
    res.map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: {e}",
            kind = rt.kind,
            v = rt.version
        ))
    })
}

/// resourceVersion and uid in a write body are preconditions on the stored object.
fn check_preconditions(rt: &ResourceType, old: &Value, new: &Value) -> ApiResult<()> {
    let name = meta_str(old, "name").unwrap_or_default();
    if let Some(rv) = meta_str(new, "resourceVersion").filter(|r| !r.is_empty()) {
        if Some(rv) != meta_str(old, "resourceVersion") {
            return Err(ApiError::stale(&rt.group, &rt.plural, name));
        }
    }
    if let Some(uid) = meta_str(new, "uid").filter(|u| !u.is_empty()) {
        let current = meta_str(old, "uid").unwrap_or_default();
        if uid != current {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                name,
                &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {current}"),
            ));
        }
    }
    Ok(())
}

/// ownerReferences as apimachinery's ValidateOwnerReferences checks them.
fn validate_owner_references(obj: &Value, causes: &mut Vec<Cause>) {
    let Some(refs) = obj["metadata"]["ownerReferences"].as_array() else {
        return;
    };
    let field = "metadata.ownerReferences";
    for r in refs {
        for (key, what) in [("apiVersion", "version"), ("kind", "kind"), ("name", "name"), ("uid", "uid")] {
            if r[key].as_str().is_none_or(str::is_empty) {
                causes.push(invalid_value(
                    &format!("{field}.{key}"),
                    &json!(""),
                    &format!("{what} must not be empty"),
                ));
            }
        }
    }
    let controllers = refs.iter().filter(|r| r["controller"] == json!(true)).count();
    if controllers > 1 {
        causes.push(invalid_value(
            field,
            &Value::Array(refs.clone()),
            "Only one reference can have Controller set to true",
        ));
    }
}

/// Label keys/values as apimachinery's ValidateLabels checks them.
fn validate_labels(obj: &Value, causes: &mut Vec<Cause>) {
    let Some(labels) = obj["metadata"]["labels"].as_object() else {
        return;
    };
    for (k, v) in labels {
        let (prefix, name) = match k.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, k.as_str()),
        };
        let name_ok = !name.is_empty()
            && name.len() <= 63
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric());
        let prefix_ok = prefix.is_none_or(|p| name_problem(p, false).is_none());
        if !name_ok || !prefix_ok {
            causes.push(invalid_value(
                "metadata.labels",
                &json!(k),
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ));
        }
        let val = v.as_str().unwrap_or_default();
        let val_ok = val.is_empty()
            || (val.len() <= 63
                && val.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && val.starts_with(|c: char| c.is_ascii_alphanumeric())
                && val.ends_with(|c: char| c.is_ascii_alphanumeric()));
        if !val_ok {
            causes.push(invalid_value(
                "metadata.labels",
                v,
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ));
        }
    }
}

fn prepare_secret(old: Option<&Value>, obj: &mut Value, causes: &mut Vec<Cause>) -> ApiResult<()> {
    let engine = base64::engine::general_purpose::STANDARD;
    if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
        let data = obj["data"].as_object().cloned().unwrap_or_default();
        let mut data: Map<String, Value> = data;
        for (k, v) in sd {
            let s = match v {
                Value::String(s) => s,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "Secret in version \"v1\" cannot be handled as a Secret: stringData.{k}: expected string, got {other}"
                    )))
                }
            };
            data.insert(k, json!(engine.encode(s.as_bytes())));
        }
        obj["data"] = Value::Object(data);
    }
    if let Some(data) = obj["data"].as_object() {
        for (k, v) in data {
            let ok = v.as_str().is_some_and(|s| engine.decode(s).is_ok());
            if !ok {
                return Err(ApiError::bad_request(format!(
                    "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in data.{k}"
                )));
            }
            let valid_key =
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid_key {
                causes.push(invalid_value(
                    &format!("data[{k}]"),
                    &json!(k),
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                ));
            }
        }
    }
    if obj["type"].is_null() {
        obj["type"] = json!(old.and_then(|o| o["type"].as_str()).unwrap_or("Opaque"));
    }
    if let Some(old) = old {
        if old["type"] != obj["type"] {
            causes.push(invalid_value("type", &obj["type"], "field is immutable"));
        }
        if old["immutable"] == json!(true) && (old["data"] != obj["data"] || obj["immutable"] != json!(true))
        {
            causes.push(forbidden_field("data", "field is immutable when `immutable` is set"));
        }
    }
    if obj["data"].as_object().is_some_and(|d| d.is_empty()) {
        if let Some(m) = obj.as_object_mut() {
            m.remove("data");
        }
    }
    Ok(())
}

/// Minimal CRD validation plus the status the apiextensions controllers would set.
fn prepare_crd(obj: &mut Value, causes: &mut Vec<Cause>) {
    let spec = obj["spec"].clone();
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    let kind = spec["names"]["kind"].as_str().unwrap_or_default();
    if group.is_empty() {
        causes.push(required_value("spec.group", ""));
    }
    if plural.is_empty() {
        causes.push(required_value("spec.names.plural", ""));
    }
    if kind.is_empty() {
        causes.push(required_value("spec.names.kind", ""));
    }
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        causes.push(invalid_value(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        causes
            .push(required_value("spec.versions", "must have exactly one version marked as storage version"));
    }
    if !matches!(spec["scope"].as_str(), Some("Namespaced") | Some("Cluster")) {
        causes.push(invalid_value(
            "spec.scope",
            &spec["scope"],
            "supported values: \"Cluster\", \"Namespaced\"",
        ));
    }
    let mut storage = None;
    for (i, v) in versions.iter().enumerate() {
        if v["storage"].as_bool() == Some(true) {
            storage = v["name"].as_str().map(String::from);
        }
        let schema = &v["schema"]["openAPIV3Schema"];
        if schema.is_object() {
            if let Err(e) = crate::schema::CrdSchema::new(schema) {
                causes.push(invalid_value(
                    &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    &json!(""),
                    &e.to_string(),
                ));
            }
        }
    }
    if !kind.is_empty() {
        if obj["spec"]["names"]["singular"].is_null() {
            obj["spec"]["names"]["singular"] = json!(kind.to_lowercase());
        }
        if obj["spec"]["names"]["listKind"].is_null() {
            obj["spec"]["names"]["listKind"] = json!(format!("{kind}List"));
        }
    }
    let now_names = obj["spec"]["names"].clone();
    let mut stored: Vec<Value> = obj["status"]["storedVersions"].as_array().cloned().unwrap_or_default();
    if let Some(s) = storage {
        if !stored.contains(&json!(s)) {
            stored.push(json!(s));
        }
    }
    obj["status"] = json!({
        "acceptedNames": now_names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": obj["metadata"]["creationTimestamp"].clone()},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": obj["metadata"]["creationTimestamp"].clone()},
        ],
        "storedVersions": stored,
    });
}

fn encode_continue(rv: u64, key: &Key) -> String {
    let raw = json!({"rv": rv, "ns": key.0, "name": key.1}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> ApiResult<(u64, Key)> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v["rv"].as_u64().ok_or_else(bad)?;
    let ns = v["ns"].as_str().ok_or_else(bad)?.to_string();
    let name = v["name"].as_str().ok_or_else(bad)?.to_string();
    Ok((rv, (ns, name)))
}
