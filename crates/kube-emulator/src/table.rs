//! `as=Table` responses (meta.k8s.io/v1 Table), which `kubectl get` asks for; custom
//! resources get their CRD's additionalPrinterColumns.

use crate::resources::ResourceType;
use serde_json::{json, Value};

/// Age as apimachinery's duration.HumanDuration renders it: a time more than a second in
/// the future is `<invalid>`.
pub fn human_age(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        let rem = s % 60;
        if rem == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{rem}s")
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        let rem = m % 60;
        if rem == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{rem}m")
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        let rem = h % 24;
        if rem == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{rem}h")
        }
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

/// Evaluates the simple JSONPath forms used in printer columns:
/// `.a.b`, `.a[0].b`, `.a[?(@.type=="Ready")].status`.
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    let mut rest = path.trim().trim_start_matches('{').trim_end_matches('}');
    rest = rest.strip_prefix('$').unwrap_or(rest);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            cur = cur.get(&r[..end])?;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (field, value) = filter.split_once("==")?;
                let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
                cur = cur
                    .as_array()?
                    .iter()
                    .find(|item| item.get(field.trim()).and_then(Value::as_str) == Some(value))?;
            } else {
                let idx: usize = inner.trim().parse().ok()?;
                cur = cur.as_array()?.get(idx)?;
            }
        } else {
            return None;
        }
    }
    Some(cur)
}

fn age_of(obj: &Value, now: jiff::Timestamp) -> String {
    obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| human_age(now.as_second() - t.as_second()))
        .unwrap_or_else(|| "<unknown>".into())
}

/// A CRD printer column's cell as the apiextensions table convertor makes it: a value of
/// the wrong type is an empty cell, integers are truncated, a date that does not parse is
/// `<invalid>`, and a `string` column prints any value as text.
fn printer_cell(ty: &str, v: &Value, now: jiff::Timestamp) -> Value {
    match (ty, v) {
        (_, Value::Null) => Value::Null,
        ("integer", Value::Number(n)) => {
            n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).map_or(Value::Null, |i| json!(i))
        }
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, |f| json!(f)),
        ("boolean", Value::Bool(b)) => json!(b),
        ("date", Value::String(t)) => match t.parse::<jiff::Timestamp>() {
            Ok(t) => json!(human_age(now.as_second() - t.as_second())),
            Err(_) => json!("<invalid>"),
        },
        ("string", Value::String(s)) => json!(s),
        ("string", other) => json!(other.to_string()),
        _ => Value::Null,
    }
}

fn col(name: &str, ty: &str, format: &str, description: &str, priority: i64) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

pub fn render(
    rt: &ResourceType,
    items: &[Value],
    list_meta: Value,
    now: jiff::Timestamp,
    include: &str,
) -> Value {
    let mut columns = vec![col("Name", "string", "name", "Name must be unique within a namespace.", 0)];
    let mut cells: Vec<Cell> = vec![Box::new(|o: &Value| o["metadata"]["name"].clone())];
    let custom_cols = rt.crd.as_ref().map(|c| c.printer_columns.clone()).unwrap_or_default();
    if !custom_cols.is_empty() {
        for c in custom_cols {
            let ty = c["type"].as_str().unwrap_or("string").to_string();
            columns.push(col(
                c["name"].as_str().unwrap_or_default(),
                &ty,
                c["format"].as_str().unwrap_or_default(),
                c["description"].as_str().unwrap_or_default(),
                c["priority"].as_i64().unwrap_or(0),
            ));
            let path = c["jsonPath"].as_str().unwrap_or_default().to_string();
            cells.push(Box::new(move |o: &Value| {
                json_path(o, &path).map_or(Value::Null, |v| printer_cell(&ty, v, now))
            }));
        }
    } else {
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "secrets") => {
                columns.push(col("Type", "string", "", "The type of the secret", 0));
                columns.push(col("Data", "string", "", "The number of data items", 0));
                cells.push(Box::new(|o: &Value| o["type"].clone()));
                cells.push(Box::new(|o: &Value| json!(o["data"].as_object().map(|d| d.len()).unwrap_or(0))));
            }
            (_, "events") => {
                // Real columns: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE (name hidden by kubectl).
                columns = vec![
                    col("Last Seen", "string", "", "Time when this Event was last seen", 0),
                    col("Type", "string", "", "Type of this event (Normal, Warning)", 0),
                    col("Reason", "string", "", "Why the action was taken", 0),
                    col("Object", "string", "", "The object this Event is about", 0),
                    col("Message", "string", "", "A human-readable description", 0),
                    col("Name", "string", "name", "Name must be unique within a namespace.", 1),
                ];
                let events_v1 = rt.group == "events.k8s.io";
                cells = vec![
                    Box::new(move |o: &Value| {
                        let t = o["series"]["lastObservedTime"]
                            .as_str()
                            .or(o["lastTimestamp"].as_str())
                            .or(o["deprecatedLastTimestamp"].as_str())
                            .or(o["eventTime"].as_str())
                            .and_then(|t| t.parse::<jiff::Timestamp>().ok());
                        match t {
                            Some(t) => json!(human_age(now.as_second() - t.as_second())),
                            None => json!("<unknown>"),
                        }
                    }),
                    Box::new(|o: &Value| o["type"].clone()),
                    Box::new(|o: &Value| o["reason"].clone()),
                    Box::new(move |o: &Value| {
                        let r = if events_v1 { &o["regarding"] } else { &o["involvedObject"] };
                        json!(format!(
                            "{}/{}",
                            r["kind"].as_str().unwrap_or_default().to_lowercase(),
                            r["name"].as_str().unwrap_or_default()
                        ))
                    }),
                    Box::new(
                        move |o: &Value| {
                            if events_v1 {
                                o["note"].clone()
                            } else {
                                o["message"].clone()
                            }
                        },
                    ),
                    Box::new(|o: &Value| o["metadata"]["name"].clone()),
                ];
                return finish(columns, cells, items, list_meta, include);
            }
            ("coordination.k8s.io", "leases") => {
                columns.push(col("Holder", "string", "", "The holder of the lease", 0));
                cells.push(Box::new(|o: &Value| o["spec"]["holderIdentity"].clone()));
            }
            ("", "namespaces") => {
                columns.push(col("Status", "string", "", "The status of the namespace", 0));
                cells.push(Box::new(|o: &Value| o["status"]["phase"].clone()));
            }
            _ => {}
        }
        columns.push(col(
            "Age",
            "string",
            "",
            "CreationTimestamp is a timestamp representing the server time when this object was created.",
            0,
        ));
        cells.push(Box::new(move |o: &Value| json!(age_of(o, now))));
    }
    finish(columns, cells, items, list_meta, include)
}

type Cell = Box<dyn Fn(&Value) -> Value>;

fn finish(columns: Vec<Value>, cells: Vec<Cell>, items: &[Value], list_meta: Value, include: &str) -> Value {
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut row = json!({ "cells": cells.iter().map(|c| c(o)).collect::<Vec<_>>() });
            match include {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o["metadata"].clone(),
                    })
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_forms() {
        let o = json!({"status":{"conditions":[{"type":"A","status":"False"},{"type":"Ready","status":"True"}]},"spec":{"l":[5]}});
        assert_eq!(json_path(&o, ".status.conditions[?(@.type==\"Ready\")].status"), Some(&json!("True")));
        assert_eq!(json_path(&o, ".spec.l[0]"), Some(&json!(5)));
        assert_eq!(json_path(&o, ".spec.missing"), None);
    }

    #[test]
    fn ages_render_like_kubectl() {
        assert_eq!(human_age(5), "5s");
        assert_eq!(human_age(150), "2m30s");
        assert_eq!(human_age(3600 * 30), "30h");
        assert_eq!(human_age(300), "5m");
        assert_eq!(human_age(86400 * 3), "3d");
        assert_eq!(human_age(-1), "0s");
        assert_eq!(human_age(-3600), "<invalid>", "a future time");
    }

    #[test]
    fn printer_cells_follow_the_column_type() {
        let now: jiff::Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(printer_cell("date", &json!("2025-01-01T01:00:00Z"), now), json!("<invalid>"));
        assert_eq!(printer_cell("date", &json!("2024-12-31T23:55:00Z"), now), json!("5m"));
        assert_eq!(printer_cell("date", &json!("yesterday"), now), json!("<invalid>"));
        assert_eq!(printer_cell("integer", &json!(2.7), now), json!(2));
        assert_eq!(printer_cell("integer", &json!("2"), now), Value::Null);
        assert_eq!(printer_cell("number", &json!(2), now), json!(2.0));
        assert_eq!(printer_cell("boolean", &json!(true), now), json!(true));
        assert_eq!(printer_cell("string", &json!(5), now), json!("5"));
    }
}
