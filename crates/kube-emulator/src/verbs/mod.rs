//! The API verbs over the store: get, list, create, update, patch, delete, plus the
//! write pipeline every write goes through (status/spec split, type-specific rules,
//! CRD schema, finalizers, generation, managedFields, no-op detection).
//!
//! - `write`: create, update, patch and the shared update pipeline;
//! - `delete`: delete, deletecollection, finalizers, namespace and CRD teardown, and
//!   the deletions that wait on other objects (`settle`);
//! - `list`: list with selectors, pagination and resourceVersion semantics;
//! - `validate`: decoding checks and per-type validation and defaulting.

mod delete;

pub use delete::Deleted;
mod list;
mod validate;
mod write;

use crate::error::{ApiError, ApiResult};
use crate::fieldset::{self, ListKind};
use crate::managed_fields::Writer;
use crate::resources::{to_served, Registry, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{EventType, Key, Store};
use crate::NowFn;
use serde_json::{json, Value};

pub const CRD_STORAGE: &str = "customresourcedefinitions.apiextensions.k8s.io";
const CRD_CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

pub struct State {
    pub store: Store,
    pub registry: Registry,
    pub now: NowFn,
    /// Set while a foreground deletion or orphaning may be waiting, so `settle` only scans then.
    gc_pending: bool,
    /// Warnings for the request being served (`Warning` response headers); taken by the
    /// HTTP layer after each call.
    pub warnings: std::cell::RefCell<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct WriteOpts {
    pub field_manager: String,
    /// `Some("status")` for writes to the status subresource.
    pub subresource: Option<String>,
    /// `fieldValidation`: what unknown fields in the body do.
    pub field_validation: FieldValidation,
    pub dry_run: bool,
    pub force: bool,
}

/// The `fieldValidation` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Unknown fields are dropped silently.
    Ignore,
    /// Dropped, with a `Warning` header each (the server's default).
    #[default]
    Warn,
    /// A 400 `strict decoding error`.
    Strict,
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
    /// None: the object's own GC finalizers decide, else background.
    pub propagation: Option<Propagation>,
    /// `orphanDependents: false` given explicitly (a pending deletion then answers 202).
    pub orphan_dependents: Option<bool>,
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

fn random_suffix() -> String {
    use rand::RngExt;
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
fn list_kinds(rt: &ResourceType) -> impl Fn(&[String]) -> ListKind + '_ {
    move |p: &[String]| {
        fieldset::meta_list_kind(p)
            .or_else(|| rt.crd.as_ref().and_then(|c| c.schema.as_ref()).map(|s| s.list_kind(p)))
            .unwrap_or(ListKind::Atomic)
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
        let mut s = Self {
            store: Store::default(),
            registry: Registry::default(),
            now,
            gc_pending: false,
            warnings: Default::default(),
        };
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

    pub fn sync_crds(&mut self) {
        let crds: Vec<Value> = self.store.objects(CRD_STORAGE).map(|(_, v)| v.clone()).collect();
        self.registry.sync_crds(crds.iter());
    }

    /// Used by GC: rewrite an object in place (already in stored form).
    pub fn gc_update(&mut self, storage: &str, key: Key, next: Value, old: Value) {
        self.store.commit(storage, key, EventType::Modified, next, Some(old));
    }

    pub fn gc_delete(&mut self, storage: &str, key: &Key) {
        self.delete_internal(storage, key, None, false);
    }
}

pub enum Managed {
    Update(Writer),
    /// managedFields already computed (server-side apply).
    Done,
}
