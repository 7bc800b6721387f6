//! Garbage collection of dependents through `metadata.ownerReferences`, run synchronously
//! when an owner is removed (the real collector is asynchronous but reaches the same end
//! state: a dependent whose owners are all gone is deleted; one that still has a live
//! owner only loses the dangling reference).

use crate::store::Key;
use crate::verbs::{Propagation, State};
use serde_json::Value;

pub fn collect(state: &mut State, owner_uid: &str, policy: Propagation) {
    if owner_uid.is_empty() {
        return;
    }
    let dependents: Vec<(String, Key, Value)> = dependents(state, owner_uid)
        .into_iter()
        .filter_map(|(storage, key)| {
            let obj = state.store.get(&storage, &key)?.clone();
            Some((storage, key, obj))
        })
        .collect();
    for (storage, key, obj) in dependents {
        let refs = obj["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
        let remaining: Vec<Value> =
            refs.iter().filter(|r| r["uid"].as_str() != Some(owner_uid)).cloned().collect();
        let other_live_owner =
            remaining.iter().any(|r| r["uid"].as_str().is_some_and(|u| state.store.has_uid(u)));
        if policy == Propagation::Orphan || other_live_owner {
            let mut next = obj.clone();
            if remaining.is_empty() {
                if let Some(m) = next["metadata"].as_object_mut() {
                    m.remove("ownerReferences");
                }
            } else {
                next["metadata"]["ownerReferences"] = Value::Array(remaining);
            }
            state.gc_update(&storage, key, next, obj);
        } else {
            state.gc_delete(&storage, &key);
        }
    }
}

/// (storage, key) of every object with an ownerReference to `owner_uid`.
pub fn dependents(state: &State, owner_uid: &str) -> Vec<(String, Key)> {
    if owner_uid.is_empty() {
        return vec![];
    }
    let mut out = Vec::new();
    for storage in state.store.storages() {
        for (key, obj) in state.store.objects(&storage) {
            let owned = obj["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(owner_uid)));
            if owned {
                out.push((storage.clone(), key.clone()));
            }
        }
    }
    out
}
