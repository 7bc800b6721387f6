//! PATCH body handling: JSON merge patch, JSON patch, strategic merge patch (treated as
//! merge patch with the directives we can honour) and the apply-patch body parser.

use crate::error::{ApiError, ApiResult};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> ApiResult<Self> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/json-patch+json" => Ok(Self::Json),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            other => Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"
            ))),
        }
    }
}

/// Decodes a JSON (or, when `yaml_ok`, YAML) request body.
pub fn parse_body(body: &[u8], yaml_ok: bool) -> ApiResult<Value> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(json_err) if yaml_ok => serde_saphyr::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e} (as JSON: {json_err})"))),
        Err(e) => {
            Err(ApiError::bad_request(format!("the object provided is unrecognized or malformed: {e}")))
        }
    }
}

/// Strategic-merge directives we do not implement are removed so they do not end up stored.
fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with("$") && !k.starts_with("$setElementOrder/"));
            for child in m.values_mut() {
                strip_directives(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

/// ObjectMeta's `finalizers` (patchStrategy merge) and `ownerReferences` (merge key
/// `uid`) are merged, not replaced, by a strategic merge patch; `$patch: delete` items and
/// `$deleteFromPrimitiveList/finalizers` remove entries. The merged lists are written
/// into the patch so the following JSON merge sets them.
fn strategic_meta_lists(current: &Value, patch: &mut Value) {
    let Some(pm) = patch.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let cur = &current["metadata"];
    let delete_fins: Vec<Value> = pm
        .remove("$deleteFromPrimitiveList/finalizers")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    if let Some(Value::Array(add)) = pm.get("finalizers").cloned() {
        let mut fins: Vec<Value> = cur["finalizers"].as_array().cloned().unwrap_or_default();
        for f in add {
            if !fins.contains(&f) {
                fins.push(f);
            }
        }
        fins.retain(|f| !delete_fins.contains(f));
        pm.insert("finalizers".into(), Value::Array(fins));
    } else if !delete_fins.is_empty() {
        let mut fins: Vec<Value> = cur["finalizers"].as_array().cloned().unwrap_or_default();
        fins.retain(|f| !delete_fins.contains(f));
        pm.insert("finalizers".into(), Value::Array(fins));
    }
    if let Some(Value::Array(refs)) = pm.get("ownerReferences").cloned() {
        let mut merged: Vec<Value> = cur["ownerReferences"].as_array().cloned().unwrap_or_default();
        for r in refs {
            let uid = r["uid"].clone();
            let delete = r["$patch"] == "delete";
            match merged.iter_mut().position(|m| m["uid"] == uid) {
                Some(i) if delete => {
                    merged.remove(i);
                }
                Some(i) => json_patch::merge(&mut merged[i], &r),
                None if delete => {}
                None => merged.push(r),
            }
        }
        pm.insert("ownerReferences".into(), Value::Array(merged));
    }
}

pub fn apply_patch(ptype: PatchType, current: &Value, body: &[u8]) -> ApiResult<Value> {
    let mut out = current.clone();
    match ptype {
        PatchType::Merge | PatchType::Strategic => {
            let mut p = parse_body(body, false)?;
            if !p.is_object() {
                return Err(ApiError::bad_request("merge patch must be a JSON object"));
            }
            if ptype == PatchType::Strategic {
                strategic_meta_lists(&out, &mut p);
                strip_directives(&mut p);
            }
            json_patch::merge(&mut out, &p);
        }
        PatchType::Json => {
            let p = parse_body(body, false)?;
            let Value::Array(ops) = p else {
                return Err(ApiError::bad_request("invalid JSON patch: expected an array of operations"));
            };
            // Applied one by one so that a `test` of `null` against a missing path passes,
            // as in the server's JSON patch library (kube-runtime's finalizer helper relies
            // on it when an object has no finalizers yet).
            for op in ops {
                let is_null_test = op["op"] == "test" && op.get("value").is_some_and(Value::is_null);
                if is_null_test {
                    let path = op["path"].as_str().unwrap_or_default();
                    if out.pointer(path).is_none_or(Value::is_null) {
                        continue;
                    }
                }
                let one: json_patch::Patch = serde_json::from_value(Value::Array(vec![op]))
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                json_patch::patch(&mut out, &one).map_err(|e| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!("the server rejected our request due to an error in our request: {e}"),
                    )
                })?;
            }
        }
        PatchType::Apply => return Err(ApiError::internal("apply patches are handled by the apply module")),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_bodies_may_be_yaml_and_merge_bodies_may_not() {
        let yaml =
            b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  labels: {a: \"1\"}\ndata: {}\nn: 3\n";
        let parsed = parse_body(yaml, true).expect("YAML parses");
        let expected = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "labels": {"a": "1"}}, "data": {}, "n": 3
        });
        assert_eq!(parsed, expected);
        assert!(parse_body(yaml, false).is_err());
        assert!(parse_body(b"a: [", true).is_err());
    }
}
