//! `metadata.managedFields` bookkeeping and server-side apply.
//!
//! Field ownership is tracked per manager entry (manager, operation, subresource, and for
//! Update operations the apiVersion: apimachinery's `BuildManagerIdentifier`) as a set of
//! field paths, encoded as FieldsV1 (`f:` fields, `k:` map-list items, `v:` set items, `.`
//! for a node that is itself a member and has members below it).
//!
//! Update operations (create, PUT, non-apply PATCH) follow structured-merge-diff's
//! `Updater.Update`: the old and new objects are compared ([`compare`]); the writer's entry
//! gains every added or modified path (containers a write creates included, hence the `.`
//! members), every entry loses the paths removed, and every other entry loses the paths the
//! writer changed. Apply entries hold the applied configuration's leaves (see [`leaves`]).
//! Maps are merged key by key; lists are atomic unless the schema marks them set/map.
//! See README.md "Server-side apply".

use crate::error::{ApiError, ApiResult};
use crate::fieldset::{
    compare, is_item_segment, item_matches, item_segment, same_value, value_at, ListKind, ListKinds, Path,
};
use crate::managed_fields::{read_entries, upsert, write_entries, Writer};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// Metadata the server owns, never tracked as a manager's field.
const SYSTEM_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "generateName",
];

/// Leaf paths of an object: what an applied configuration sets. Empty maps, scalars and
/// atomic lists are leaves; items of set/map lists are addressed by `v:`/`k:` segments like
/// the real FieldsV1. (The real ToFieldSet also makes a map-list item's own node a member;
/// leaving it out keeps an item's node from conflicting as a whole.)
pub fn leaves(obj: &Value, lists: ListKinds) -> BTreeSet<Path> {
    fn walk(v: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>, lists: ListKinds) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    if prefix.is_empty() && (k == "apiVersion" || k == "kind") {
                        continue;
                    }
                    if prefix.len() == 1 && prefix[0] == "metadata" && SYSTEM_META.contains(&k.as_str()) {
                        continue;
                    }
                    prefix.push(k.clone());
                    walk(child, prefix, out, lists);
                    prefix.pop();
                }
            }
            Value::Array(items) if !items.is_empty() && lists(prefix) != ListKind::Atomic => {
                let kind = lists(prefix);
                for item in items {
                    match item_segment(&kind, item) {
                        Some(seg) => {
                            prefix.push(seg);
                            if item.is_object() {
                                walk(item, prefix, out, lists);
                            } else {
                                out.insert(prefix.clone());
                            }
                            prefix.pop();
                        }
                        // An item we cannot address makes the whole list atomic.
                        None => {
                            out.insert(prefix.clone());
                        }
                    }
                }
            }
            _ => {
                if !prefix.is_empty() {
                    out.insert(prefix.clone());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(obj, &mut Vec::new(), &mut out, lists);
    // `metadata: {}` alone is not a field anyone sets.
    out.remove(&vec!["metadata".to_string()]);
    out
}

fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for seg in parents {
        let next = match cur {
            Value::Array(items) if is_item_segment(seg) => items.iter_mut().find(|i| item_matches(seg, i)),
            Value::Object(m) => m.get_mut(seg),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match cur {
        Value::Array(items) if is_item_segment(last) => items.retain(|i| !item_matches(last, i)),
        Value::Object(m) => {
            m.remove(last);
        }
        _ => {}
    }
}

/// Removes the list item addressed by the last (`k:`) segment of `item_path`, even when
/// its key fields are already gone.
fn remove_item(obj: &mut Value, item_path: &[String]) {
    let Some((seg, list_path)) = item_path.split_last() else {
        return;
    };
    let Ok(keys) = serde_json::from_str::<Map<String, Value>>(seg.get(2..).unwrap_or_default()) else {
        return;
    };
    let mut cur = obj;
    for s in list_path {
        let next = match cur {
            Value::Array(items) if is_item_segment(s) => items.iter_mut().find(|i| item_matches(s, i)),
            Value::Object(m) => m.get_mut(s),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Value::Array(items) = cur {
        // Match on whatever key fields remain; an item with no key field left is not a
        // valid map-list item any more and goes too.
        items.retain(|i| {
            let present: Vec<(&String, &Value)> =
                keys.iter().filter(|(k, _)| i.get(k.as_str()).is_some()).collect();
            let target = present.is_empty() || present.iter().all(|(k, v)| i.get(k.as_str()) == Some(*v));
            !target
        });
    }
}

fn is_empty_map(v: Option<&Value>) -> bool {
    v.and_then(Value::as_object).is_some_and(Map::is_empty)
}

/// Whether applying the leaf `p` changes the live object. An empty map merged into a
/// live map changes nothing.
fn changes(live: &Value, applied: &Value, p: &[String]) -> bool {
    let (l, a) = (value_at(live, p), value_at(applied, p));
    if is_empty_map(a) && l.is_some_and(Value::is_object) {
        return false;
    }
    match (l, a) {
        (Some(l), Some(a)) => !same_value(l, a),
        (l, a) => l != a,
    }
}

/// Whether applying leaf `p` touches field `q` owned by another manager. Owning a map as
/// a leaf (it was empty when written) does not own the fields later set inside it.
fn contends(p: &[String], q: &[String], live: &Value, applied: &Value) -> bool {
    if p == q {
        return true;
    }
    if p.starts_with(q) {
        return !value_at(live, q).is_some_and(Value::is_object);
    }
    if q.starts_with(p) {
        return !value_at(applied, p).is_some_and(Value::is_object);
    }
    false
}

/// Fields kubectl's client-side apply set (its last-applied-configuration annotation) that
/// still hold the value it set: `kubectl apply --server-side` may take them over.
fn client_side_applied(live: &Value, lists: ListKinds) -> BTreeSet<Path> {
    let Some(last) = live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .and_then(|a| serde_json::from_str::<Value>(a).ok())
    else {
        return BTreeSet::new();
    };
    leaves(&last, lists)
        .into_iter()
        .filter(|p| match (value_at(&last, p), value_at(live, p)) {
            (Some(a), Some(b)) => same_value(a, b),
            _ => false,
        })
        .collect()
}

/// Maps merge recursively, set/map lists merge by item, everything else is replaced.
pub fn deep_merge(base: &mut Value, patch: &Value, lists: ListKinds) {
    fn merge(base: &mut Value, patch: &Value, path: &mut Path, lists: ListKinds) {
        match (base, patch) {
            (Value::Object(b), Value::Object(p)) => {
                for (k, v) in p {
                    path.push(k.clone());
                    match b.get_mut(k) {
                        Some(existing)
                            if (existing.is_object() && v.is_object())
                                || (existing.is_array()
                                    && v.is_array()
                                    && lists(path) != ListKind::Atomic) =>
                        {
                            merge(existing, v, path, lists)
                        }
                        _ => {
                            b.insert(k.clone(), v.clone());
                        }
                    }
                    path.pop();
                }
            }
            (Value::Array(b), Value::Array(p)) => {
                let kind = lists(path);
                for item in p {
                    let seg = item_segment(&kind, item);
                    let existing = seg.as_ref().and_then(|seg| b.iter_mut().find(|i| item_matches(seg, i)));
                    match (existing, seg) {
                        (Some(e), Some(seg)) if e.is_object() => {
                            path.push(seg);
                            merge(e, item, path, lists);
                            path.pop();
                        }
                        (Some(_), _) => {}
                        (None, _) => b.push(item.clone()),
                    }
                }
            }
            (b, p) => *b = p.clone(),
        }
    }
    merge(base, patch, &mut Vec::new(), lists);
}

/// Server-side apply of `applied` onto `live` (None when creating). Returns the merged
/// object with managedFields set; 409 Conflict when another manager owns a field this
/// apply changes and `force` is false.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    w: &Writer,
    force: bool,
    lists: ListKinds,
) -> ApiResult<Value> {
    let empty = Value::Object(Map::new());
    let live_obj = live.unwrap_or(&empty);
    let mut entries = read_entries(live_obj);
    let applied_leaves = leaves(applied, lists);

    let mut conflicts: Vec<(String, String, Path)> = Vec::new();
    let mut contended: BTreeSet<Path> = BTreeSet::new();
    for e in entries.iter() {
        if e.manager == w.manager {
            continue;
        }
        for q in &e.fields {
            let clashing: Vec<&Path> = applied_leaves
                .iter()
                .filter(|p| contends(p, q, live_obj, applied) && changes(live_obj, applied, p))
                .collect();
            if !clashing.is_empty() {
                conflicts.push((e.manager.clone(), e.api_version.clone(), q.clone()));
                contended.extend(clashing.into_iter().cloned());
            }
        }
    }
    // `kubectl apply --server-side` (manager "kubectl") after a client-side apply: fields
    // the client-side apply set and nobody changed since are taken over, as if forced.
    let force = force
        || (w.manager == "kubectl" && !conflicts.is_empty() && {
            let allowed = client_side_applied(live_obj, lists);
            contended.iter().all(|p| allowed.contains(p))
        });
    if !conflicts.is_empty() && !force {
        let render = |p: &Path| format!(".{}", p.join("."));
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(m, v, p)| {
                json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with \"{m}\" using {v}"),
                    "field": render(p),
                })
            })
            .collect();
        let message = if conflicts.len() == 1 {
            let (m, v, p) = &conflicts[0];
            format!("Apply failed with 1 conflict: conflict with \"{m}\" using {v}: {}", render(p))
        } else {
            let list: Vec<String> = conflicts
                .iter()
                .map(|(m, v, p)| format!("conflict with \"{m}\" using {v}: {}", render(p)))
                .collect();
            format!("Apply failed with {} conflicts: {}", conflicts.len(), list.join("\n"))
        };
        return Err(ApiError {
            details: Some(json!({ "causes": causes })),
            ..ApiError::new(409, "Conflict", message)
        });
    }
    if force {
        for e in entries.iter_mut().filter(|e| e.manager != w.manager) {
            e.fields.retain(|q| {
                !applied_leaves
                    .iter()
                    .any(|p| contends(p, q, live_obj, applied) && changes(live_obj, applied, p))
            });
        }
    }

    let mut result = live_obj.clone();
    deep_merge(&mut result, applied, lists);

    // Fields this manager applied before but no longer does are removed unless someone
    // else also owns them.
    let previous: BTreeSet<Path> = entries
        .iter()
        .find(|e| e.manager == w.manager && e.operation == "Apply" && e.subresource == w.subresource)
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for p in previous.iter() {
        // Still applied: the same field, something inside it, or an atomic value covering
        // it (an empty map covers nothing).
        let still = applied_leaves
            .iter()
            .any(|a| a == p || a.starts_with(p) || (p.starts_with(a) && !is_empty_map(value_at(applied, a))));
        if still {
            continue;
        }
        // Owning a map or list item that holds `p` (an Update that created it) does not
        // keep `p`: only owning `p`, something below it, or an atomic value holding it does.
        let keeps = |q: &Path| {
            q.starts_with(p) || (p.starts_with(q) && !value_at(&result, q).is_some_and(Value::is_object))
        };
        let owned_elsewhere = entries.iter().any(|e| {
            !(e.manager == w.manager && e.operation == "Apply" && e.subresource == w.subresource)
                && e.fields.iter().any(keeps)
        });
        if !owned_elsewhere {
            remove_at(&mut result, p);
            // A map-list item that lost its key fields (or everything) is removed whole.
            if let Some(i) = p.iter().rposition(|seg| seg.starts_with("k:")) {
                let item_path = &p[..=i];
                let orphaned = value_at(&result, item_path)
                    .is_some_and(|item| item.as_object().is_some_and(Map::is_empty));
                let key_gone = value_at(&result, item_path).is_none()
                    || p.len() == i + 2 && {
                        let keys = serde_json::from_str::<Map<String, Value>>(&p[i][2..]).unwrap_or_default();
                        keys.contains_key(&p[i + 1])
                    };
                if orphaned || key_gone {
                    remove_item(&mut result, item_path);
                }
            }
        }
    }

    // What the apply removed (fields it no longer applies, items with them) is nobody's now.
    let removed = compare(live_obj, &result, lists).removed;
    for e in entries.iter_mut() {
        e.fields.retain(|q| !removed.contains(q));
    }
    upsert(&mut entries, w, "Apply").fields = applied_leaves;
    write_entries(&mut result, &entries);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fieldset::{from_fields_v1, meta_list_kind, to_fields_v1};

    fn kinds(p: &[String]) -> ListKind {
        meta_list_kind(p).unwrap_or(ListKind::Atomic)
    }

    fn writer(m: &str) -> Writer {
        Writer { manager: m.into(), api_version: "v1".into(), subresource: String::new(), time: "t".into() }
    }

    #[test]
    fn fields_v1_round_trips() {
        let obj = json!({"metadata":{"labels":{"a":"1"},"finalizers":["x/y"],"ownerReferences":[{"uid":"u1","name":"o"}]},"spec":{"x":1,"l":[1]}});
        let f = leaves(&obj, &kinds);
        assert!(f.contains(&vec!["metadata".to_string(), "finalizers".into(), "v:\"x/y\"".into()]));
        assert_eq!(from_fields_v1(&to_fields_v1(&f)), f);
    }

    #[test]
    fn apply_removes_fields_no_longer_applied() {
        let live = apply(None, &json!({"spec":{"a":1,"b":2}}), &writer("m"), false, &kinds).unwrap();
        let next = apply(Some(&live), &json!({"spec":{"a":1}}), &writer("m"), false, &kinds).unwrap();
        assert_eq!(next["spec"], json!({"a":1}));
    }

    #[test]
    fn apply_conflicts_with_other_manager() {
        let live = apply(None, &json!({"spec":{"a":1}}), &writer("m1"), false, &kinds).unwrap();
        let err = apply(Some(&live), &json!({"spec":{"a":2}}), &writer("m2"), false, &kinds).unwrap_err();
        assert_eq!(err.code, 409);
        // Same value: shared ownership, no conflict.
        assert!(apply(Some(&live), &json!({"spec":{"a":1}}), &writer("m2"), false, &kinds).is_ok());
        let forced = apply(Some(&live), &json!({"spec":{"a":2}}), &writer("m2"), true, &kinds).unwrap();
        assert_eq!(forced["spec"]["a"], 2);
    }

    #[test]
    fn finalizers_are_a_set_owned_per_item() {
        let a = json!({"metadata":{"finalizers":["a/x"]}});
        let b = json!({"metadata":{"finalizers":["b/y"]}});
        let live = apply(None, &a, &writer("ma"), false, &kinds).unwrap();
        let live = apply(Some(&live), &b, &writer("mb"), false, &kinds).unwrap();
        assert_eq!(live["metadata"]["finalizers"], json!(["a/x", "b/y"]));
        // mb stops applying its finalizer: only that item goes.
        let live = apply(Some(&live), &json!({"metadata":{}}), &writer("mb"), false, &kinds).unwrap();
        assert_eq!(live["metadata"]["finalizers"], json!(["a/x"]));
    }
}
