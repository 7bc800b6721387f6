//! Garbage collection of dependents through `metadata.ownerReferences`, run synchronously
//! when an owner is removed (the real collector is asynchronous but reaches the same end
//! state: a dependent whose owners are all gone is deleted; one that still has a live
//! owner only loses the dangling reference), and the `orphan` finalizer's work.

use crate::store::Key;
use crate::verbs::State;
use serde_json::Value;

/// After the owner with `owner_uid` is gone: dependents without another live owner are
/// deleted (background), the others lose the reference.
pub fn collect(state: &mut State, owner_uid: &str) {
    rewrite_dependents(state, owner_uid, false);
}

/// The `orphan` finalizer: every dependent loses its reference to the owner and stays.
pub fn orphan(state: &mut State, owner_uid: &str) {
    rewrite_dependents(state, owner_uid, true);
}

fn rewrite_dependents(state: &mut State, owner_uid: &str, orphan: bool) {
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
        if orphan || other_live_owner {
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
    dependents_where(state, owner_uid, |_| true)
}

/// Dependents whose reference has `blockOwnerDeletion: true`: only these hold an owner
/// deleted in the foreground.
pub fn blocking_dependents(state: &State, owner_uid: &str) -> Vec<(String, Key)> {
    dependents_where(state, owner_uid, |r| r["blockOwnerDeletion"] == Value::Bool(true))
}

fn dependents_where(state: &State, owner_uid: &str, pick: impl Fn(&Value) -> bool) -> Vec<(String, Key)> {
    if owner_uid.is_empty() {
        return vec![];
    }
    let mut out = Vec::new();
    for storage in state.store.storages() {
        for (key, obj) in state.store.objects(&storage) {
            let owned = obj["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(owner_uid) && pick(r)));
            if owned {
                out.push((storage.clone(), key.clone()));
            }
        }
    }
    out
}
