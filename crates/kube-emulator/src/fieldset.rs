//! Field paths and sets as structured-merge-diff sees them: list kinds and item segments
//! (`k:`/`v:`), the comparison of two objects that Update operations record, and the
//! FieldsV1 encoding of a set.
//!
//! A set is a `BTreeSet` of paths; a path may be in the set together with paths below it (a
//! map the writer created and the keys it set in it), which FieldsV1 writes as a `.` member.

use serde_json::{Map, Value};
use std::collections::BTreeSet;

pub type Path = Vec<String>;

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

pub fn item_segment(kind: &ListKind, item: &Value) -> Option<String> {
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

pub fn item_matches(seg: &str, item: &Value) -> bool {
    if let Some(v) = seg.strip_prefix("v:") {
        return serde_json::from_str::<Value>(v).is_ok_and(|v| &v == item);
    }
    if let Some(k) = seg.strip_prefix("k:") {
        return serde_json::from_str::<Map<String, Value>>(k)
            .is_ok_and(|keys| keys.iter().all(|(kk, kv)| item.get(kk) == Some(kv)));
    }
    false
}

pub fn is_item_segment(seg: &str) -> bool {
    seg.starts_with("k:") || seg.starts_with("v:")
}

/// The value at a path (`k:`/`v:` segments find list items).
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

/// What a write changed, as structured-merge-diff's `TypedValue.Compare` reports it. A path
/// is in at most one set. Scalars, atomic lists and maps/lists empty on both sides are
/// leaves (added, removed or modified as a whole); a map or granular list is walked item by
/// item, and is itself added (or removed) only when it did not exist before (or after):
/// a key set in an existing map adds that key, not the map.
#[derive(Debug, Default, PartialEq)]
pub struct Comparison {
    pub added: BTreeSet<Path>,
    pub modified: BTreeSet<Path>,
    pub removed: BTreeSet<Path>,
}

/// Compares `old` with `new` (whole objects). `metadata.managedFields` is not compared.
pub fn compare(old: &Value, new: &Value, lists: ListKinds) -> Comparison {
    let mut out = Comparison::default();
    compare_at(Some(old), Some(new), &mut Vec::new(), &mut out, lists);
    out
}

fn compare_at(l: Option<&Value>, r: Option<&Value>, path: &mut Path, out: &mut Comparison, lists: ListKinds) {
    if matches!(path.as_slice(), [m, f] if m == "metadata" && f == "managedFields") {
        return;
    }
    let walked = match (l, r) {
        (Some(Value::Object(_)) | None, Some(Value::Object(_)) | None) => {
            compare_maps(l, r, path, out, lists)
        }
        (Some(Value::Array(_)) | None, Some(Value::Array(_)) | None) => compare_lists(l, r, path, out, lists),
        _ => false,
    };
    if path.is_empty() {
        return;
    }
    if walked {
        match (l, r) {
            (None, _) => {
                out.added.insert(path.clone());
            }
            (_, None) => {
                out.removed.insert(path.clone());
            }
            _ => {}
        }
        return;
    }
    match (l, r) {
        (None, _) => out.added.insert(path.clone()),
        (_, None) => out.removed.insert(path.clone()),
        (Some(a), Some(b)) if !same_value(a, b) => out.modified.insert(path.clone()),
        _ => false,
    };
}

/// Walks two maps key by key; false when they are a leaf (both empty or absent).
fn compare_maps(
    l: Option<&Value>,
    r: Option<&Value>,
    path: &mut Path,
    out: &mut Comparison,
    lists: ListKinds,
) -> bool {
    let (lm, rm) = (l.and_then(Value::as_object), r.and_then(Value::as_object));
    if lm.is_none_or(Map::is_empty) && rm.is_none_or(Map::is_empty) {
        return false;
    }
    let keys: BTreeSet<&String> = lm.into_iter().chain(rm).flat_map(Map::keys).collect();
    for k in keys {
        path.push(k.clone());
        compare_at(lm.and_then(|m| m.get(k)), rm.and_then(|m| m.get(k)), path, out, lists);
        path.pop();
    }
    true
}

/// Walks two set/map lists item by item; false when they are a leaf (atomic, both empty, or
/// holding an item that cannot be addressed).
fn compare_lists(
    l: Option<&Value>,
    r: Option<&Value>,
    path: &mut Path,
    out: &mut Comparison,
    lists: ListKinds,
) -> bool {
    let (la, ra) = (l.and_then(Value::as_array), r.and_then(Value::as_array));
    if la.is_none_or(Vec::is_empty) && ra.is_none_or(Vec::is_empty) {
        return false;
    }
    let kind = lists(path);
    if kind == ListKind::Atomic {
        return false;
    }
    let (Some(before), Some(after)) = (item_segments(&kind, la), item_segments(&kind, ra)) else {
        return false;
    };
    let mut all: Vec<&String> = before.iter().chain(&after).map(|(s, _)| s).collect();
    all.sort();
    all.dedup();
    for seg in all {
        let a = before.iter().find(|(s, _)| s == seg).map(|(_, v)| *v);
        let b = after.iter().find(|(s, _)| s == seg).map(|(_, v)| *v);
        path.push(seg.clone());
        compare_at(a, b, path, out, lists);
        path.pop();
    }
    true
}

/// The items of a list with their segments, a duplicate counted once (the real walker compares
/// duplicates as a block); None when an item cannot be addressed.
fn item_segments<'a>(kind: &ListKind, items: Option<&'a Vec<Value>>) -> Option<Vec<(String, &'a Value)>> {
    let mut seen: Vec<(String, &'a Value)> = Vec::new();
    for item in items.into_iter().flatten() {
        let seg = item_segment(kind, item)?;
        if !seen.iter().any(|(s, _)| *s == seg) {
            seen.push((seg, item));
        }
    }
    Some(seen)
}

/// FieldsV1 of a set: `f:<field>`, `k:<keys>`, `v:<value>` nodes; a member with members
/// below it carries `".": {}`.
pub fn to_fields_v1(fields: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    let mut it = fields.iter().peekable();
    while let Some(path) = it.next() {
        let mut cur = &mut root;
        for seg in path {
            let key = if is_item_segment(seg) { seg.clone() } else { format!("f:{seg}") };
            let entry = cur.entry(key).or_insert_with(|| Value::Object(Map::new()));
            cur = entry.as_object_mut().expect("fieldsV1 nodes are objects");
        }
        // Sorted paths: those below `path` come right after it.
        if it.peek().is_some_and(|next| next.len() > path.len() && next.starts_with(path)) {
            cur.insert(".".into(), Value::Object(Map::new()));
        }
    }
    Value::Object(root)
}

/// The set a FieldsV1 value encodes (inverse of [`to_fields_v1`]).
pub fn from_fields_v1(v: &Value) -> BTreeSet<Path> {
    fn walk(v: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
        let map = v.as_object();
        let children: Vec<(&String, &Value)> =
            map.map(|m| m.iter().filter(|(k, _)| k.as_str() != ".").collect()).unwrap_or_default();
        // `i:` (positional) keys are not emulated; they make the parent an atomic leaf.
        let known = |k: &str| k.starts_with("f:") || is_item_segment(k);
        if children.is_empty() || children.iter().any(|(k, _)| !known(k)) {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
            return;
        }
        if !prefix.is_empty() && map.is_some_and(|m| m.contains_key(".")) {
            out.insert(prefix.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds(p: &[String]) -> ListKind {
        meta_list_kind(p).unwrap_or(ListKind::Atomic)
    }

    fn paths(list: &[&str]) -> BTreeSet<Path> {
        list.iter().map(|p| p.split('|').map(String::from).collect()).collect()
    }

    #[test]
    fn a_created_map_is_added_with_its_keys() {
        let new = json!({"data":{"a":"x"},"metadata":{"labels":{"app":"a"}},"type":"Opaque"});
        let c = compare(&json!({}), &new, &kinds);
        let want = paths(&["data", "data|a", "metadata", "metadata|labels", "metadata|labels|app", "type"]);
        assert_eq!(c, Comparison { added: want, ..Default::default() });
    }

    #[test]
    fn a_key_set_in_an_existing_map_adds_only_the_key() {
        let old = json!({"data":{"a":"x"}});
        let new = json!({"data":{"a":"y","b":"z"}});
        let c = compare(&old, &new, &kinds);
        assert_eq!(c.added, paths(&["data|b"]));
        assert_eq!(c.modified, paths(&["data|a"]));
        assert!(c.removed.is_empty());
        let gone = compare(&new, &json!({}), &kinds);
        assert_eq!(gone.removed, paths(&["data", "data|a", "data|b"]));
    }

    #[test]
    fn set_items_are_compared_one_by_one_and_atomic_lists_whole() {
        let old = json!({"metadata":{"finalizers":["a/x"]},"spec":{"l":[1]}});
        let new = json!({"metadata":{"finalizers":["a/x","b/y"]},"spec":{"l":[1,2]}});
        let c = compare(&old, &new, &kinds);
        assert_eq!(c.added, paths(&["metadata|finalizers|v:\"b/y\""]));
        assert_eq!(c.modified, paths(&["spec|l"]));
    }

    #[test]
    fn fields_v1_marks_members_with_members_below_them() {
        let set = paths(&["data", "data|a", "metadata|labels", "metadata|labels|app", "type"]);
        let v = to_fields_v1(&set);
        assert_eq!(
            v,
            json!({"f:data":{".":{},"f:a":{}},"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:type":{}})
        );
        assert_eq!(from_fields_v1(&v), set);
    }
}
