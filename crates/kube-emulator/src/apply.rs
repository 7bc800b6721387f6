//! `metadata.managedFields` bookkeeping and server-side apply.
//!
//! Field ownership is tracked per (manager, operation, subresource) as a set of leaf
//! paths. Maps are merged key by key; lists and scalars are atomic leaves (the real
//! server additionally merges associative lists by key via schema markers, which is
//! not emulated). See README.md "Server-side apply".

use crate::error::{ApiError, ApiResult};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

pub type Path = Vec<String>;

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

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: BTreeSet<Path>,
}

/// How a list is merged and owned (`x-kubernetes-list-type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind {
    /// Replaced and owned as a whole (the default for CRD lists).
    Atomic,
    /// Scalar items owned one by one (`v:<value>` path segments).
    Set,
    /// Object items identified by these keys (`k:{...}` path segments).
    Map(Vec<String>),
}

/// Tells the list kind of the list at a path (segments as in field paths).
pub type ListKinds<'a> = &'a dyn Fn(&[String]) -> ListKind;

/// List kinds of ObjectMeta, which every resource shares.
pub fn meta_list_kind(path: &[String]) -> Option<ListKind> {
    match path {
        [m, f] if m == "metadata" && f == "finalizers" => Some(ListKind::Set),
        [m, f] if m == "metadata" && f == "ownerReferences" => Some(ListKind::Map(vec!["uid".into()])),
        _ => None,
    }
}

fn item_segment(kind: &ListKind, item: &Value) -> Option<String> {
    match kind {
        ListKind::Set if !item.is_object() && !item.is_array() => Some(format!("v:{item}")),
        ListKind::Map(keys) => {
            let mut k = Map::new();
            for key in keys {
                k.insert(key.clone(), item.get(key)?.clone());
            }
            Some(format!("k:{}", Value::Object(k)))
        }
        _ => None,
    }
}

fn item_matches(seg: &str, item: &Value) -> bool {
    if let Some(v) = seg.strip_prefix("v:") {
        return serde_json::from_str::<Value>(v).is_ok_and(|v| &v == item);
    }
    if let Some(k) = seg.strip_prefix("k:") {
        return serde_json::from_str::<Map<String, Value>>(k)
            .is_ok_and(|keys| keys.iter().all(|(kk, kv)| item.get(kk) == Some(kv)));
    }
    false
}

fn is_item_segment(seg: &str) -> bool {
    seg.starts_with("k:") || seg.starts_with("v:")
}

/// Leaf paths of an object. Empty maps, scalars and atomic lists are leaves; items of
/// set/map lists are addressed by `v:`/`k:` segments like the real FieldsV1.
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

pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path {
        cur = match cur {
            Value::Array(items) if is_item_segment(seg) => items.iter().find(|i| item_matches(seg, i))?,
            _ => cur.as_object()?.get(seg)?,
        };
    }
    Some(cur)
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

/// JSON equality as the server's structured values see it: numbers compare by value, so
/// an applied `0` equals a stored `0.0`.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
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

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
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

fn fields_v1(fields: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut cur = &mut root;
        for seg in path {
            let key = if is_item_segment(seg) { seg.clone() } else { format!("f:{seg}") };
            let entry = cur.entry(key).or_insert_with(|| Value::Object(Map::new()));
            cur = entry.as_object_mut().expect("fieldsV1 nodes are objects");
        }
    }
    Value::Object(root)
}

fn parse_fields_v1(v: &Value) -> BTreeSet<Path> {
    fn walk(v: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
        let children: Vec<(&String, &Value)> =
            v.as_object().map(|m| m.iter().filter(|(k, _)| k.as_str() != ".").collect()).unwrap_or_default();
        // `i:` (positional) keys are not emulated; they make the parent an atomic leaf.
        let known = |k: &str| k.starts_with("f:") || is_item_segment(k);
        if children.is_empty() || children.iter().any(|(k, _)| !known(k)) {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
            return;
        }
        for (k, child) in children {
            let seg = if is_item_segment(k) { k.to_string() } else { k[2..].to_string() };
            prefix.push(seg);
            walk(child, prefix, out);
            prefix.pop();
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

pub fn read_entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().to_string(),
            operation: e["operation"].as_str().unwrap_or("Update").to_string(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: e["time"].as_str().unwrap_or_default().to_string(),
            subresource: e["subresource"].as_str().unwrap_or_default().to_string(),
            fields: parse_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

pub fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if list.is_empty() {
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
    } else if obj.is_object() {
        obj["metadata"]["managedFields"] = Value::Array(list);
    }
}

/// Who is writing and how.
#[derive(Debug, Clone)]
pub struct Writer {
    pub manager: String,
    pub api_version: String,
    pub subresource: String,
    pub time: String,
}

fn upsert<'a>(entries: &'a mut Vec<Entry>, w: &Writer, operation: &str) -> &'a mut Entry {
    let pos = entries
        .iter()
        .position(|e| e.manager == w.manager && e.operation == operation && e.subresource == w.subresource);
    let idx = match pos {
        Some(i) => i,
        None => {
            entries.push(Entry {
                manager: w.manager.clone(),
                operation: operation.to_string(),
                api_version: w.api_version.clone(),
                time: w.time.clone(),
                subresource: w.subresource.clone(),
                fields: BTreeSet::new(),
            });
            entries.len() - 1
        }
    };
    let e = &mut entries[idx];
    e.time = w.time.clone();
    e.api_version = w.api_version.clone();
    e
}

/// Records an Update-operation write: changed fields move to `w`, removed fields are
/// forgotten by everyone. `new` must not yet carry the result (it is written here).
pub fn track_update(old: Option<&Value>, new: &mut Value, w: &Writer, lists: ListKinds) {
    let mut entries = old.map(read_entries).unwrap_or_default();
    let empty = Value::Object(Map::new());
    let old = old.unwrap_or(&empty);
    let old_leaves = leaves(old, lists);
    let new_leaves = leaves(new, lists);
    let changed: BTreeSet<Path> =
        new_leaves.iter().filter(|p| value_at(old, p) != value_at(new, p)).cloned().collect();
    let removed: Vec<&Path> = old_leaves.difference(&new_leaves).collect();
    if changed.is_empty() && removed.is_empty() {
        write_entries(new, &entries);
        return;
    }
    for e in entries.iter_mut() {
        e.fields
            .retain(|p| !changed.iter().any(|c| overlaps(c, p)) && !removed.iter().any(|r| overlaps(r, p)));
    }
    if !changed.is_empty() {
        upsert(&mut entries, w, "Update").fields.extend(changed);
    }
    write_entries(new, &entries);
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
        let owned_elsewhere = entries.iter().any(|e| {
            !(e.manager == w.manager && e.operation == "Apply" && e.subresource == w.subresource)
                && e.fields.iter().any(|q| overlaps(p, q))
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

    upsert(&mut entries, w, "Apply").fields = applied_leaves;
    write_entries(&mut result, &entries);
    Ok(result)
}

/// managedFields without timestamps, for no-op detection.
pub fn strip_times(obj: &mut Value) {
    if let Some(list) = obj["metadata"]["managedFields"].as_array_mut() {
        for e in list {
            if let Some(m) = e.as_object_mut() {
                m.remove("time");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(parse_fields_v1(&fields_v1(&f)), f);
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
