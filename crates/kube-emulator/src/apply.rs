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

/// Leaf paths of an object (empty maps, scalars and lists are leaves).
pub fn leaves(obj: &Value) -> BTreeSet<Path> {
    fn walk(v: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
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
                    walk(child, prefix, out);
                    prefix.pop();
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
    walk(obj, &mut Vec::new(), &mut out);
    // `metadata: {}` alone is not a field anyone sets.
    out.remove(&vec!["metadata".to_string()]);
    out
}

pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path {
        cur = cur.as_object()?.get(seg)?;
    }
    Some(cur)
}

fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for seg in parents {
        match cur.as_object_mut().and_then(|m| m.get_mut(seg)) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Maps merge recursively; everything else is replaced.
pub fn deep_merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => deep_merge(existing, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn fields_v1(fields: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut cur = &mut root;
        for seg in path {
            let entry = cur.entry(format!("f:{seg}")).or_insert_with(|| Value::Object(Map::new()));
            cur = entry.as_object_mut().expect("fieldsV1 nodes are objects");
        }
    }
    Value::Object(root)
}

fn parse_fields_v1(v: &Value) -> BTreeSet<Path> {
    fn walk(v: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
        let children: Vec<(&String, &Value)> =
            v.as_object().map(|m| m.iter().filter(|(k, _)| k.as_str() != ".").collect()).unwrap_or_default();
        // Keys other than `f:` (list items `k:`/`v:`/`i:`) make the parent an atomic leaf here.
        if children.is_empty() || children.iter().any(|(k, _)| !k.starts_with("f:")) {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
            return;
        }
        for (k, child) in children {
            prefix.push(k[2..].to_string());
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
pub fn track_update(old: Option<&Value>, new: &mut Value, w: &Writer) {
    let mut entries = old.map(read_entries).unwrap_or_default();
    let empty = Value::Object(Map::new());
    let old = old.unwrap_or(&empty);
    let old_leaves = leaves(old);
    let new_leaves = leaves(new);
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
pub fn apply(live: Option<&Value>, applied: &Value, w: &Writer, force: bool) -> ApiResult<Value> {
    let empty = Value::Object(Map::new());
    let live_obj = live.unwrap_or(&empty);
    let mut entries = read_entries(live_obj);
    let applied_leaves = leaves(applied);

    let mut conflicts: Vec<(String, String, Path)> = Vec::new();
    for e in entries.iter() {
        if e.manager == w.manager {
            continue;
        }
        for q in &e.fields {
            let clash = applied_leaves
                .iter()
                .any(|p| overlaps(p, q) && value_at(live_obj, p) != value_at(applied, p));
            if clash {
                conflicts.push((e.manager.clone(), e.api_version.clone(), q.clone()));
            }
        }
    }
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
                    .any(|p| overlaps(p, q) && value_at(live_obj, p) != value_at(applied, p))
            });
        }
    }

    let mut result = live_obj.clone();
    deep_merge(&mut result, applied);

    // Fields this manager applied before but no longer does are removed unless someone
    // else also owns them.
    let previous: BTreeSet<Path> = entries
        .iter()
        .find(|e| e.manager == w.manager && e.operation == "Apply" && e.subresource == w.subresource)
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for p in previous.iter() {
        if applied_leaves.iter().any(|a| overlaps(a, p)) {
            continue;
        }
        let owned_elsewhere = entries.iter().any(|e| {
            !(e.manager == w.manager && e.operation == "Apply" && e.subresource == w.subresource)
                && e.fields.iter().any(|q| overlaps(p, q))
        });
        if !owned_elsewhere {
            remove_at(&mut result, p);
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

    fn writer(m: &str) -> Writer {
        Writer { manager: m.into(), api_version: "v1".into(), subresource: String::new(), time: "t".into() }
    }

    #[test]
    fn fields_v1_round_trips() {
        let obj = json!({"metadata":{"labels":{"a":"1"}},"spec":{"x":1,"l":[1]}});
        let f = leaves(&obj);
        assert_eq!(parse_fields_v1(&fields_v1(&f)), f);
    }

    #[test]
    fn apply_removes_fields_no_longer_applied() {
        let live = apply(None, &json!({"spec":{"a":1,"b":2}}), &writer("m"), false).unwrap();
        let next = apply(Some(&live), &json!({"spec":{"a":1}}), &writer("m"), false).unwrap();
        assert_eq!(next["spec"], json!({"a":1}));
    }

    #[test]
    fn apply_conflicts_with_other_manager() {
        let live = apply(None, &json!({"spec":{"a":1}}), &writer("m1"), false).unwrap();
        let err = apply(Some(&live), &json!({"spec":{"a":2}}), &writer("m2"), false).unwrap_err();
        assert_eq!(err.code, 409);
        // Same value: shared ownership, no conflict.
        assert!(apply(Some(&live), &json!({"spec":{"a":1}}), &writer("m2"), false).is_ok());
        let forced = apply(Some(&live), &json!({"spec":{"a":2}}), &writer("m2"), true).unwrap();
        assert_eq!(forced["spec"]["a"], 2);
    }
}
