//! Deletes: single objects and collections, finalizers, garbage collection hand-off,
//! namespace and CRD teardown, and `settle` for deletions that wait on other objects.

use super::{finalizers, is_deleting, meta_str, DeleteOpts, ListOpts, Propagation, State, CRD_STORAGE};
use crate::error::{ApiError, ApiResult};
use crate::resources::{to_served, ResourceType};
use crate::store::{EventType, Key};
use serde_json::{json, Value};

const CRD_CLEANUP_FINALIZER: &str = super::CRD_CLEANUP_FINALIZER;
const FOREGROUND_FINALIZER: &str = super::FOREGROUND_FINALIZER;
const ORPHAN_FINALIZER: &str = "orphan";

/// What a DELETE did.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// Removed now; its last state (the real server answers a `Status`).
    Gone(Value),
    /// Still there, held by finalizers, as it stood after the DELETE's own write (the real
    /// server answers with this object).
    Pending(Value),
}

/// Namespace status conditions as the namespace controller sets them once it has tried
/// to delete the content: `remaining` counts objects per resource, `finalizers` objects
/// per finalizer.
fn namespace_conditions(
    now: &str,
    remaining: &std::collections::BTreeMap<String, usize>,
    finalizers: &std::collections::BTreeMap<String, usize>,
) -> Value {
    let cond = |t: &str, status: bool, reason: &str, message: String| json!({"type": t, "status": if status { "True" } else { "False" }, "lastTransitionTime": now, "reason": reason, "message": message});
    let content = if remaining.is_empty() {
        cond("NamespaceContentRemaining", false, "ContentRemoved", "All content successfully removed".into())
    } else {
        let list: Vec<String> =
            remaining.iter().map(|(r, n)| format!("{r} has {n} resource instances")).collect();
        cond(
            "NamespaceContentRemaining",
            true,
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", list.join(", ")),
        )
    };
    let fins = if finalizers.is_empty() {
        cond(
            "NamespaceFinalizersRemaining",
            false,
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished".into(),
        )
    } else {
        let list: Vec<String> =
            finalizers.iter().map(|(f, n)| format!("{f} in {n} resource instances")).collect();
        cond(
            "NamespaceFinalizersRemaining",
            true,
            "SomeFinalizersRemain",
            format!("Some content in the namespace has finalizers remaining: {}", list.join(", ")),
        )
    };
    json!([
        cond(
            "NamespaceDeletionDiscoveryFailure",
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered".into()
        ),
        cond(
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into()
        ),
        cond(
            "NamespaceDeletionContentFailure",
            false,
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".into()
        ),
        content,
        fins,
    ])
}

/// The finalizers a deletion leaves on an object: its own, plus the garbage collector's
/// `orphan` / `foregroundDeletion` as the propagation policy asks (an explicit policy
/// replaces whichever of the two the object had).
fn deletion_finalizers(current: &[String], policy: Option<Propagation>) -> Vec<String> {
    let has = |f: &str| current.iter().any(|c| c == f);
    let orphan = match policy {
        Some(p) => p == Propagation::Orphan,
        None => has(ORPHAN_FINALIZER),
    };
    let foreground = match policy {
        Some(p) => p == Propagation::Foreground,
        None => has(FOREGROUND_FINALIZER) && !orphan,
    };
    let mut out: Vec<String> =
        current.iter().filter(|f| *f != ORPHAN_FINALIZER && *f != FOREGROUND_FINALIZER).cloned().collect();
    if orphan {
        out.push(ORPHAN_FINALIZER.into());
    }
    if foreground {
        out.push(FOREGROUND_FINALIZER.into());
    }
    out
}

impl State {
    /// DELETE of one object.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOpts,
    ) -> ApiResult<Deleted> {
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
        let key = Self::key(rt, ns, name);
        let out = self.delete_internal(&rt.storage, &key, opts.propagation, opts.dry_run);
        Ok(match out {
            Some(Deleted::Gone(last)) => Deleted::Gone(to_served(rt, last)),
            Some(Deleted::Pending(o)) => Deleted::Pending(to_served(rt, o)),
            None => Deleted::Gone(obj),
        })
    }

    /// Deletes honouring finalizers, then lets the emulated controllers (garbage collector,
    /// namespace and CRD finalizers) do their part at once. `None` if there is no such object.
    pub(super) fn delete_internal(
        &mut self,
        storage: &str,
        key: &Key,
        policy: Option<Propagation>,
        dry_run: bool,
    ) -> Option<Deleted> {
        let obj = self.store.get(storage, key)?.clone();
        if storage == "namespaces" {
            if is_deleting(&obj) {
                return Some(Deleted::Pending(obj));
            }
            let mut next = obj.clone();
            next["metadata"]["deletionTimestamp"] = json!(self.now_string());
            next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            next["status"]["phase"] = json!("Terminating");
            if dry_run {
                return Some(Deleted::Pending(next));
            }
            let marked = self.store.commit(storage, key.clone(), EventType::Modified, next, Some(obj));
            // The namespace controller: delete the content, then report what remains.
            let ns = key.1.clone();
            for s in self.store.storages() {
                let keys: Vec<Key> =
                    self.store.objects(&s).filter(|(k, _)| k.0 == ns).map(|(k, _)| k.clone()).collect();
                for k in keys {
                    self.delete_internal(&s, &k, None, false);
                }
            }
            self.settle();
            self.namespace_status(&ns);
            return Some(Deleted::Pending(marked));
        }
        let mut fins = finalizers(&obj);
        if storage == CRD_STORAGE && !fins.iter().any(|f| f == CRD_CLEANUP_FINALIZER) {
            fins.push(CRD_CLEANUP_FINALIZER.into());
        }
        let wanted = deletion_finalizers(&fins, policy);
        if is_deleting(&obj) && wanted == fins {
            return Some(Deleted::Pending(obj));
        }
        if wanted.is_empty() {
            if dry_run {
                return Some(Deleted::Gone(obj));
            }
            return Some(Deleted::Gone(self.remove(storage, key.clone(), obj)));
        }
        let mut next = obj.clone();
        next["metadata"]["finalizers"] = json!(wanted);
        if !is_deleting(&obj) {
            next["metadata"]["deletionTimestamp"] = json!(self.now_string());
            next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if let Some(g) = obj["metadata"]["generation"].as_i64().filter(|g| *g > 0) {
                next["metadata"]["generation"] = json!(g + 1);
            }
        }
        if dry_run {
            return Some(Deleted::Pending(next));
        }
        if wanted.iter().any(|f| f == FOREGROUND_FINALIZER || f == ORPHAN_FINALIZER) {
            self.gc_pending = true;
        }
        let marked = self.store.commit(storage, key.clone(), EventType::Modified, next, Some(obj));
        if storage == CRD_STORAGE {
            self.delete_crd_instances(key);
        }
        if wanted.iter().any(|f| f == FOREGROUND_FINALIZER) {
            // The garbage collector deletes every dependent; the owner waits for those
            // that block its deletion.
            let uid = meta_str(&marked, "uid").unwrap_or_default().to_string();
            for (dep_storage, dep_key) in crate::gc::dependents(self, &uid) {
                self.delete_internal(&dep_storage, &dep_key, Some(Propagation::Foreground), false);
            }
        }
        self.settle();
        Some(Deleted::Pending(marked))
    }

    /// Removes an object for good (the watch event carries its last stored state) and runs
    /// garbage collection for its dependents.
    pub(super) fn remove(&mut self, storage: &str, key: Key, last: Value) -> Value {
        let uid = meta_str(&last, "uid").unwrap_or_default().to_string();
        let out = self.store.commit(storage, key, EventType::Deleted, last.clone(), Some(last));
        crate::gc::collect(self, &uid);
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
            self.delete_internal(&storage, &k, None, false);
        }
    }

    /// Records in a terminating namespace's status what still holds it.
    fn namespace_status(&mut self, ns: &str) {
        let key = (String::new(), ns.to_string());
        let Some(obj) = self.store.get("namespaces", &key).cloned() else {
            return;
        };
        let mut remaining = std::collections::BTreeMap::new();
        let mut held = std::collections::BTreeMap::new();
        for s in self.store.storages() {
            for (_, o) in self.store.objects(&s).filter(|(k, _)| k.0 == ns) {
                *remaining.entry(s.clone()).or_insert(0) += 1;
                for f in finalizers(o) {
                    *held.entry(f).or_insert(0) += 1;
                }
            }
        }
        let mut next = obj.clone();
        next["status"]["conditions"] = namespace_conditions(&self.now_string(), &remaining, &held);
        if next != obj {
            self.store.commit("namespaces", key, EventType::Modified, next, Some(obj));
        }
    }

    /// Finishes deletions that wait on other objects: terminating namespaces once empty,
    /// CRDs being deleted once their instances are gone, owners deleted in the foreground
    /// once no dependent blocks them, and orphaning.
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
                    // Conditions cleared and `finalize` (spec.finalizers emptied), then removed.
                    let key = (String::new(), ns);
                    let mut last = ns_obj.clone();
                    last["spec"]["finalizers"] = json!([]);
                    last["status"]["conditions"] =
                        namespace_conditions(&self.now_string(), &Default::default(), &Default::default());
                    let last =
                        self.store.commit("namespaces", key.clone(), EventType::Modified, last, Some(ns_obj));
                    self.remove("namespaces", key, last);
                    progressed = true;
                }
            }
            let deleting_crds: Vec<Value> = self
                .store
                .objects(CRD_STORAGE)
                .filter(|(_, o)| is_deleting(o) && finalizers(o).iter().any(|f| f == CRD_CLEANUP_FINALIZER))
                .map(|(_, o)| o.clone())
                .collect();
            for crd in deleting_crds {
                let storage = crate::resources::storage_key(
                    crd["spec"]["group"].as_str().unwrap_or_default(),
                    crd["spec"]["names"]["plural"].as_str().unwrap_or_default(),
                );
                if self.store.objects(&storage).next().is_none() {
                    let key = (String::new(), meta_str(&crd, "name").unwrap_or_default().to_string());
                    self.drop_finalizer(CRD_STORAGE, key, crd, CRD_CLEANUP_FINALIZER);
                    progressed = true;
                }
            }
            let waiting: Vec<(String, Key, Value)> = if !self.gc_pending {
                vec![]
            } else {
                self.store
                    .storages()
                    .into_iter()
                    .flat_map(|st| {
                        self.store
                            .objects(&st)
                            .filter(|(_, o)| {
                                is_deleting(o)
                                    && finalizers(o)
                                        .iter()
                                        .any(|f| f == FOREGROUND_FINALIZER || f == ORPHAN_FINALIZER)
                            })
                            .map(|(k, o)| (st.clone(), k.clone(), o.clone()))
                            .collect::<Vec<_>>()
                    })
                    .collect()
            };
            if waiting.is_empty() {
                self.gc_pending = false;
            }
            for (storage, key, obj) in waiting {
                let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
                if finalizers(&obj).iter().any(|f| f == ORPHAN_FINALIZER) {
                    crate::gc::orphan(self, &uid);
                    self.drop_finalizer(&storage, key, obj, ORPHAN_FINALIZER);
                    progressed = true;
                    continue;
                }
                if !crate::gc::blocking_dependents(self, &uid).is_empty() {
                    continue;
                }
                self.drop_finalizer(&storage, key, obj, FOREGROUND_FINALIZER);
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
    }

    /// A controller removes its finalizer; the last one to go deletes the object.
    fn drop_finalizer(&mut self, storage: &str, key: Key, obj: Value, finalizer: &str) {
        let rest: Vec<String> = finalizers(&obj).into_iter().filter(|f| f != finalizer).collect();
        if rest.is_empty() {
            self.remove(storage, key, obj);
        } else {
            let mut next = obj.clone();
            next["metadata"]["finalizers"] = json!(rest);
            self.store.commit(storage, key, EventType::Modified, next, Some(obj));
        }
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
            match self.delete(rt, item_ns.as_deref(), &name, d) {
                Ok(Deleted::Gone(obj) | Deleted::Pending(obj)) => items.push(obj),
                Err(_) => {}
            }
        }
        Ok(json!({
            "apiVersion": rt.api_version(),
            "kind": rt.list_kind(),
            "metadata": {"resourceVersion": self.store.current_rv().to_string()},
            "items": items,
        }))
    }
}
