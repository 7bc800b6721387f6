//! Deletes: single objects and collections, finalizers, garbage collection hand-off,
//! namespace and CRD teardown, and `settle` for deletions that wait on other objects.

use super::{finalizers, is_deleting, meta_str, DeleteOpts, ListOpts, Propagation, State, CRD_STORAGE};
use crate::error::{ApiError, ApiResult};
use crate::resources::{to_served, ResourceType};
use crate::store::{EventType, Key};
use serde_json::{json, Value};

const CRD_CLEANUP_FINALIZER: &str = super::CRD_CLEANUP_FINALIZER;
const FOREGROUND_FINALIZER: &str = super::FOREGROUND_FINALIZER;

impl State {
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
    pub(super) fn delete_internal(&mut self, storage: &str, key: &Key, policy: Propagation) -> Option<Value> {
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
    pub(super) fn remove(
        &mut self,
        storage: &str,
        key: Key,
        last: Value,
        old: Value,
        policy: Propagation,
    ) -> Value {
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
}
