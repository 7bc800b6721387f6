//! The `metadata.managedFields` entries of an object and how Update operations (create, PUT,
//! non-apply PATCH) change them, as kube-apiserver's field manager does
//! (k8s.io/apimachinery `util/managedfields/internal` over structured-merge-diff's
//! `Updater.Update`). Server-side apply is `crate::apply`.

use crate::fieldset::{compare, from_fields_v1, to_fields_v1, ListKinds, Path};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// One managedFields entry, its fields decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: BTreeSet<Path>,
}

/// Who is writing and how.
#[derive(Debug, Clone)]
pub struct Writer {
    /// `fieldManager`, else the User-Agent's prefix (possibly empty).
    pub manager: String,
    pub api_version: String,
    pub subresource: String,
    pub time: String,
}

/// Paths the server never records as anyone's (the field manager's stripMetaManager): the
/// type meta, `metadata` itself and the metadata the server sets.
fn stripped(path: &[String]) -> bool {
    match path {
        [f] => matches!(f.as_str(), "apiVersion" | "kind" | "metadata"),
        [m, f] if m == "metadata" => matches!(
            f.as_str(),
            "name"
                | "namespace"
                | "creationTimestamp"
                | "selfLink"
                | "uid"
                | "clusterName"
                | "generation"
                | "managedFields"
                | "resourceVersion"
        ),
        _ => false,
    }
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
            fields: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

/// Writes the entries that own something, in the server's order (apimachinery's
/// `sortEncodedManagedFields`: Apply before Update, then by time, manager, apiVersion,
/// subresource). An empty manager or subresource is left out, as Go's `omitempty` does.
pub fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let mut kept: Vec<&Entry> = entries.iter().filter(|e| !e.fields.is_empty()).collect();
    // Times are RFC 3339 in seconds, UTC: their text sorts as the times do.
    kept.sort_by(|p, q| {
        (&p.operation, &p.time, &p.manager, &p.api_version, &p.subresource).cmp(&(
            &q.operation,
            &q.time,
            &q.manager,
            &q.api_version,
            &q.subresource,
        ))
    });
    let list: Vec<Value> = kept
        .into_iter()
        .map(|e| {
            let mut v = json!({
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.manager.is_empty() {
                v["manager"] = json!(e.manager);
            }
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

/// The writer's entry for `operation`, made if missing, stamped with the writer's time and
/// apiVersion. Entries are told apart by manager, operation, subresource and, for Update
/// operations only, apiVersion (apimachinery's `BuildManagerIdentifier`).
pub fn upsert<'a>(entries: &'a mut Vec<Entry>, w: &Writer, operation: &str) -> &'a mut Entry {
    let pos = entries.iter().position(|e| {
        e.manager == w.manager
            && e.operation == operation
            && e.subresource == w.subresource
            && (operation == "Apply" || e.api_version == w.api_version)
    });
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

/// Records an Update-operation write from `old` (None when creating) to `new`, and writes the
/// entries into `new`. What the write added or modified (maps and list items it created
/// included) becomes the writer's and no other entry's; what it removed is no entry's. The
/// writer's entry is stamped with the time only when it took something, as the real
/// `managedFieldsUpdater` does; a write that only removes leaves the times alone.
pub fn track_update(old: Option<&Value>, new: &mut Value, w: &Writer, lists: ListKinds) {
    let mut entries = old.map(read_entries).unwrap_or_default();
    let empty = json!({});
    let c = compare(old.unwrap_or(&empty), new, lists);
    for e in entries.iter_mut() {
        e.fields.retain(|p| !c.added.contains(p) && !c.modified.contains(p) && !c.removed.contains(p));
    }
    let taken: BTreeSet<Path> = c.added.into_iter().chain(c.modified).filter(|p| !stripped(p)).collect();
    if !taken.is_empty() {
        upsert(&mut entries, w, "Update").fields.extend(taken);
    }
    write_entries(new, &entries);
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
    use crate::fieldset::{meta_list_kind, ListKind};

    fn kinds(p: &[String]) -> ListKind {
        meta_list_kind(p).unwrap_or(ListKind::Atomic)
    }

    fn writer(manager: &str, time: &str) -> Writer {
        Writer {
            manager: manager.into(),
            api_version: "v1".into(),
            subresource: String::new(),
            time: time.into(),
        }
    }

    fn entry<'a>(obj: &'a Value, manager: &str) -> &'a Value {
        let list = obj["metadata"]["managedFields"].as_array().expect("managedFields");
        list.iter()
            .find(|e| e["manager"] == manager)
            .unwrap_or_else(|| panic!("no entry for {manager}: {obj}"))
    }

    #[test]
    fn create_gives_the_creator_what_it_set_but_the_server_s_metadata() {
        let mut obj = json!({"apiVersion":"v1","kind":"Secret",
            "metadata":{"name":"s","namespace":"d","uid":"u","creationTimestamp":"t","finalizers":["a/b"]},
            "data":{"k":"dg=="}});
        track_update(None, &mut obj, &writer("creator", "t1"), &kinds);
        assert_eq!(obj["metadata"]["managedFields"].as_array().map(Vec::len), Some(1));
        let e = entry(&obj, "creator");
        assert_eq!((e["operation"].as_str(), e["time"].as_str()), (Some("Update"), Some("t1")));
        assert_eq!(
            e["fieldsV1"],
            json!({"f:data":{".":{},"f:k":{}},"f:metadata":{"f:finalizers":{".":{},"v:\"a/b\"":{}}}})
        );
    }

    #[test]
    fn a_writer_that_changes_nothing_or_only_removes_keeps_its_time_and_gets_no_entry() {
        let mut obj = json!({"metadata":{"labels":{"a":"1","b":"2"}}});
        track_update(None, &mut obj, &writer("creator", "t1"), &kinds);
        let old = obj.clone();
        let mut same = old.clone();
        track_update(Some(&old), &mut same, &writer("other", "t2"), &kinds);
        assert_eq!(same["metadata"]["managedFields"], old["metadata"]["managedFields"]);
        let mut removed = json!({"metadata":{"labels":{"a":"1"}},});
        track_update(Some(&old), &mut removed, &writer("other", "t2"), &kinds);
        let list = removed["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["time"], "t1");
        assert_eq!(list[0]["fieldsV1"], json!({"f:metadata":{"f:labels":{".":{},"f:a":{}}}}));
    }

    #[test]
    fn update_entries_differ_by_api_version_and_subresource_apply_entries_only_by_subresource() {
        let mut entries = Vec::new();
        let v1 = writer("m", "t1");
        let v2 = Writer { api_version: "v2".into(), ..writer("m", "t2") };
        let status = Writer { subresource: "status".into(), ..writer("m", "t3") };
        upsert(&mut entries, &v1, "Update");
        upsert(&mut entries, &v2, "Update");
        upsert(&mut entries, &status, "Update");
        assert_eq!(entries.len(), 3);
        upsert(&mut entries, &v1, "Apply");
        upsert(&mut entries, &v2, "Apply");
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[3].api_version, "v2");
    }

    #[test]
    fn entries_are_written_in_the_server_s_order() {
        let e = |manager: &str, operation: &str, time: &str, subresource: &str| Entry {
            manager: manager.into(),
            operation: operation.into(),
            api_version: "v1".into(),
            time: time.into(),
            subresource: subresource.into(),
            fields: [vec!["spec".to_string()]].into(),
        };
        let mut obj = json!({"metadata":{}});
        write_entries(
            &mut obj,
            &[
                e("b", "Update", "2026-01-01T00:00:02Z", ""),
                e("z", "Update", "2026-01-01T00:00:01Z", ""),
                e("a", "Update", "2026-01-01T00:00:02Z", "status"),
                e("a", "Update", "2026-01-01T00:00:02Z", ""),
                e("y", "Apply", "2026-01-01T00:00:09Z", ""),
                e("", "Update", "2026-01-01T00:00:02Z", ""),
            ],
        );
        let order: Vec<(Option<&str>, Option<&str>)> = obj["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["manager"].as_str(), e["subresource"].as_str()))
            .collect();
        assert_eq!(
            order,
            [
                (Some("y"), None),
                (Some("z"), None),
                (None, None),
                (Some("a"), None),
                (Some("a"), Some("status")),
                (Some("b"), None)
            ]
        );
    }
}
