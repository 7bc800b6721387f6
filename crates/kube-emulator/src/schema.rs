//! CRD `openAPIV3Schema` handling: pruning of unknown fields, defaulting and
//! validation, in the order the real server applies them (prune, default, validate).
//!
//! Validation is delegated to the `jsonschema` crate after converting the structural
//! OpenAPI v3 schema to plain JSON Schema (draft 4, which matches OpenAPI 3.0's
//! keyword semantics, e.g. boolean `exclusiveMaximum`). `x-kubernetes-list-type` uniqueness
//! and the `x-kubernetes-validations` rules come after, as in the apiextensions-apiserver's
//! customResourceStrategy: the rules are compiled and run by `kube-cel` (see [`crate::rules`]).

use crate::error::{invalid_value, required_value, Cause};
use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::{Map, Value};

pub struct CrdSchema {
    /// The OpenAPI schema as written in the CRD (drives pruning and defaulting).
    raw: Value,
    validator: jsonschema::Validator,
    /// The `x-kubernetes-validations` rules, compiled once; `None` when the schema has none.
    rules: Option<crate::rules::Rules>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid openAPIV3Schema: {0}")]
pub struct SchemaError(String);

impl CrdSchema {
    pub fn new(openapi: &Value) -> Result<Self, SchemaError> {
        let converted = convert(openapi);
        let validator = jsonschema::draft4::new(&converted).map_err(|e| SchemaError(e.to_string()))?;
        let rules = crate::rules::Rules::compile(openapi).map_err(SchemaError)?;
        Ok(Self { raw: openapi.clone(), validator, rules })
    }

    /// `x-kubernetes-list-type` `set` and `map` invariants (no duplicate items or keys), as
    /// the real server's ValidateListSetsAndMaps reports them. On update only when the old
    /// object kept them, so an object stored before the schema said so can still be written.
    pub fn validate_lists(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let check = |value: &Value| {
            let mut causes = Vec::new();
            list_invariants(value, &self.raw, "", &mut causes);
            causes
        };
        if old.is_some_and(|old| !check(old).is_empty()) {
            return Vec::new();
        }
        check(obj)
    }

    /// The `x-kubernetes-validations` rules on `obj` (`old` for transition rules). `earlier`
    /// are the errors found before: as the real server, the rules are not run over an object
    /// that has a blocking error (a missing, unsupported, too long or mistyped value).
    pub fn validate_rules(
        &self,
        obj: &Value,
        old: Option<&Value>,
        earlier: &[Cause],
    ) -> crate::rules::Outcome {
        let Some(rules) = &self.rules else {
            return Default::default();
        };
        const BLOCKING: &[&str] = &[
            "FieldValueNotSupported",
            "FieldValueRequired",
            "FieldValueTooLong",
            "FieldValueTooMany",
            "FieldValueTypeInvalid",
        ];
        if earlier.iter().any(|c| BLOCKING.contains(&c.reason)) {
            // field.Invalid(nil, nil, ...): a nil path prints as `<nil>`, a nil value as null.
            let causes = vec![Cause {
                reason: "FieldValueInvalid",
                field: "<nil>".into(),
                message: "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation".into(),
            }];
            return crate::rules::Outcome { causes, warnings: Vec::new() };
        }
        rules.validate(&self.raw, obj, old)
    }

    /// The schema as the CRD has it (published in the OpenAPI documents).
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// Drops fields the schema does not know (unless preserved) and non-nullable nulls.
    /// Returns the paths of dropped unknown fields (for `fieldValidation`).
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        let mut unknown = Vec::new();
        prune(obj, &self.raw, true, "", &mut unknown);
        unknown
    }

    /// `x-kubernetes-list-type` of the list at `path` (item segments `k:`/`v:` step into
    /// `items`); lists without it are atomic, as in the real server.
    pub fn list_kind(&self, path: &[String]) -> crate::fieldset::ListKind {
        use crate::fieldset::ListKind;
        let mut cur = &self.raw;
        for seg in path {
            let next = if seg.starts_with("k:") || seg.starts_with("v:") {
                cur.get("items")
            } else {
                cur.get("properties")
                    .and_then(|p| p.get(seg))
                    .or_else(|| cur.get("additionalProperties").filter(|a| a.is_object()))
            };
            match next {
                Some(n) => cur = n,
                None => return ListKind::Atomic,
            }
        }
        match cur.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => ListKind::Set,
            Some("map") => {
                let keys: Vec<String> = cur["x-kubernetes-list-map-keys"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|k| k.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                if keys.is_empty() {
                    ListKind::Atomic
                } else {
                    ListKind::Map(keys)
                }
            }
            _ => ListKind::Atomic,
        }
    }

    pub fn apply_defaults(&self, obj: &mut Value) {
        default(obj, &self.raw);
    }

    /// Field errors as apimachinery renders them. `metadata` is not checked here.
    pub fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        for err in self.validator.iter_errors(obj) {
            let path = field_path(err.instance_path().as_str());
            if path == "metadata" || path.starts_with("metadata.") {
                continue;
            }
            let instance = err.instance().clone().into_owned();
            let cause = match err.kind() {
                ValidationErrorKind::Required { property } => {
                    let prop = property.as_str().unwrap_or_default();
                    let field = if path.is_empty() { prop.to_string() } else { format!("{path}.{prop}") };
                    required_value(&field, "")
                }
                ValidationErrorKind::Type { kind } => {
                    let t = match kind {
                        TypeKind::Single(t) => t.to_string(),
                        TypeKind::Multiple(ts) => {
                            ts.iter().map(|t| t.to_string()).collect::<Vec<_>>().join("/")
                        }
                    };
                    let t = if t == "integer/string" { "integer or string".to_string() } else { t };
                    let shown = short(&instance);
                    // field.TypeInvalid: printed as an invalid value, but its own reason (one
                    // that keeps the validation rules from running).
                    Cause {
                        reason: "FieldValueTypeInvalid",
                        ..invalid_value(
                            &path,
                            &instance,
                            &format!("{path} in body must be of type {t}: {shown}"),
                        )
                    }
                }
                ValidationErrorKind::MaxItems { limit } => {
                    let items = if *limit == 1 { "item" } else { "items" };
                    let actual = instance.as_array().map_or(0, Vec::len);
                    Cause {
                        reason: "FieldValueTooMany",
                        field: path.clone(),
                        message: format!("{path}: Too many: {actual}: must have at most {limit} {items}"),
                    }
                }
                ValidationErrorKind::Enum { options } => {
                    let supported: Vec<String> =
                        options.as_array().into_iter().flatten().map(short).collect();
                    Cause {
                        reason: "FieldValueNotSupported",
                        field: path.clone(),
                        message: format!(
                            "{path}: Unsupported value: {}: supported values: {}",
                            short(&instance),
                            supported.join(", ")
                        ),
                    }
                }
                ValidationErrorKind::Pattern { pattern } => {
                    invalid_value(&path, &instance, &format!("{path} in body should match '{pattern}'"))
                }
                ValidationErrorKind::Minimum { limit } => invalid_value(
                    &path,
                    &instance,
                    &format!("{path} in body should be greater than or equal to {limit}"),
                ),
                ValidationErrorKind::Maximum { limit } => invalid_value(
                    &path,
                    &instance,
                    &format!("{path} in body should be less than or equal to {limit}"),
                ),
                ValidationErrorKind::MaxLength { limit } => Cause {
                    reason: "FieldValueTooLong",
                    field: path.clone(),
                    message: format!("{path}: Too long: may not be more than {limit} bytes"),
                },
                ValidationErrorKind::MinLength { limit } => invalid_value(
                    &path,
                    &instance,
                    &format!("{path} in body should be at least {limit} chars long"),
                ),
                _ => invalid_value(&path, &instance, &err.to_string()),
            };
            causes.push(cause);
        }
        causes
    }
}

/// Duplicates in the lists of `v` whose schema says `x-kubernetes-list-type: set` or `map`.
fn list_invariants(v: &Value, s: &Value, path: &str, causes: &mut Vec<Cause>) {
    match v {
        Value::Object(m) => {
            let props = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in m {
                // Go's field.Path: `.k` for a property, `[k]` for a key of a map.
                if let Some(cs) = props.and_then(|p| p.get(k)) {
                    let child_path = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    list_invariants(child, cs, &child_path, causes);
                } else if let Some(cs) = additional {
                    list_invariants(child, cs, &format!("{path}[{k}]"), causes);
                }
            }
        }
        Value::Array(items) => {
            let keys: Option<Vec<&str>> = match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => Some(Vec::new()),
                Some("map") => Some(
                    s["x-kubernetes-list-map-keys"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect(),
                ),
                _ => None,
            };
            if let Some(keys) = keys {
                // The key of each item: the item itself for a set, its key fields for a map.
                let key_of = |item: &Value| -> Value {
                    if keys.is_empty() {
                        return item.clone();
                    }
                    let mut key = Map::new();
                    for k in &keys {
                        if let Some(kv) = item.get(*k) {
                            key.insert((*k).to_string(), kv.clone());
                        }
                    }
                    Value::Object(key)
                };
                // Each key's second appearance is reported (not a third), as validateListSet does.
                let mut seen: Vec<(Value, usize)> = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let key = key_of(item);
                    match seen.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, times)) => {
                            *times += 1;
                            if *times == 2 {
                                // field.Duplicate(path.Index(i), key): Go marshals the key as JSON.
                                let field = format!("{path}[{i}]");
                                causes.push(Cause {
                                    reason: "FieldValueDuplicate",
                                    message: format!("{field}: Duplicate value: {}", go_json(&key)),
                                    field,
                                });
                            }
                        }
                        None => seen.push((key, 1)),
                    }
                }
            }
            if let Some(item_schema) = s.get("items").filter(|i| i.is_object()) {
                for (i, item) in items.iter().enumerate() {
                    list_invariants(item, item_schema, &format!("{path}[{i}]"), causes);
                }
            }
        }
        _ => {}
    }
}

/// A value as Go's encoding/json writes it in a field error: map keys sorted (serde_json's
/// maps are sorted too), and a string as a quoted string.
pub(crate) fn go_json(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

/// JSON pointer `/spec/items/0/name` -> `spec.items[0].name`.
fn field_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

fn flag(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// OpenAPI v3 (Kubernetes dialect) -> JSON Schema draft 4.
fn convert(s: &Value) -> Value {
    let Some(m) = s.as_object() else {
        return s.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        match k.as_str() {
            "properties" | "patternProperties" | "definitions" => {
                let props = v
                    .as_object()
                    .map(|p| p.iter().map(|(pk, pv)| (pk.clone(), convert(pv))).collect())
                    .unwrap_or_default();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" | "not" => {
                let conv = match v {
                    Value::Array(a) => Value::Array(a.iter().map(convert).collect()),
                    other => convert(other),
                };
                out.insert(k.clone(), conv);
            }
            "additionalProperties" => {
                let conv = if v.is_object() { convert(v) } else { v.clone() };
                out.insert(k.clone(), conv);
            }
            "allOf" | "anyOf" | "oneOf" => {
                let arr = v.as_array().map(|a| a.iter().map(convert).collect()).unwrap_or_default();
                out.insert(k.clone(), Value::Array(arr));
            }
            // Formats are annotations for us; Kubernetes-specific keys have no JSON Schema meaning.
            "nullable" | "format" | "description" | "example" | "externalDocs" | "default" => {}
            key if key.starts_with("x-kubernetes-") => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    let nullable = flag(s, "nullable");
    if flag(s, "x-kubernetes-int-or-string") {
        out.remove("type");
        let mut types = vec![Value::from("integer"), Value::from("string")];
        if nullable {
            types.push(Value::from("null"));
        }
        out.insert("type".into(), Value::Array(types));
    } else if nullable {
        if let Some(Value::String(t)) = out.get("type").cloned() {
            out.insert("type".into(), Value::Array(vec![Value::String(t), Value::from("null")]));
        }
        if let Some(Value::Array(e)) = out.get_mut("enum") {
            if !e.contains(&Value::Null) {
                e.push(Value::Null);
            }
        }
    }
    Value::Object(out)
}

/// Structural-schema pruning. `keep_meta` is true at the root and for embedded resources,
/// where apiVersion/kind/metadata are always kept.
fn prune(v: &mut Value, s: &Value, keep_meta: bool, path: &str, unknown: &mut Vec<String>) {
    let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
    match v {
        Value::Object(m) => {
            let props = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties").filter(|a| a.is_object());
            let additional_any = s.get("additionalProperties") == Some(&Value::Bool(true));
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if keep_meta && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let sub = props.and_then(|p| p.get(&k)).or(additional);
                match sub {
                    Some(ps) => {
                        let child = m.get_mut(&k).expect("key exists");
                        if child.is_null() && !flag(ps, "nullable") {
                            m.remove(&k);
                            continue;
                        }
                        let child_path = format!("{path}.{k}");
                        prune(child, ps, flag(ps, "x-kubernetes-embedded-resource"), &child_path, unknown);
                    }
                    None if preserve || additional_any => {}
                    None => {
                        unknown.push(format!("{path}.{k}"));
                        m.remove(&k);
                    }
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.get("items").filter(|i| i.is_object()) {
                for (i, item) in a.iter_mut().enumerate() {
                    let child_path = format!("{path}[{i}]");
                    prune(item, items, flag(items, "x-kubernetes-embedded-resource"), &child_path, unknown);
                }
            }
        }
        _ => {}
    }
}

fn default(v: &mut Value, s: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, ps) in props {
                    if !m.contains_key(k) {
                        if let Some(d) = ps.get("default") {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                    if let Some(child) = m.get_mut(k) {
                        default(child, ps);
                    }
                }
            }
            if let Some(additional) = s.get("additionalProperties").filter(|a| a.is_object()) {
                let known: Vec<String> = s
                    .get("properties")
                    .and_then(Value::as_object)
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default();
                for (k, child) in m.iter_mut() {
                    if !known.contains(k) {
                        default(child, additional);
                    }
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.get("items").filter(|i| i.is_object()) {
                for item in a.iter_mut() {
                    default(item, items);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_paths_use_dots_and_brackets() {
        assert_eq!(field_path("/spec/items/0/name"), "spec.items[0].name");
        assert_eq!(field_path(""), "");
    }

    fn list_schema() -> CrdSchema {
        CrdSchema::new(&json!({"type": "object", "properties": {
            "targets": {"type": "array", "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["kind", "name"],
                "items": {"type": "object", "required": ["kind", "name"], "properties": {
                    "kind": {"type": "string"}, "name": {"type": "string"}, "note": {"type": "string"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        }}))
        .unwrap()
    }

    #[test]
    fn list_map_keys_and_set_items_are_unique_as_the_real_server_reports_it() {
        let s = list_schema();
        let obj = json!({
            "targets": [
                {"kind": "A", "name": "x"}, {"kind": "B", "name": "x"},
                {"kind": "A", "name": "x", "note": "again"}, {"kind": "A", "name": "x"},
            ],
            "tags": ["a", "b", "a"],
        });
        let causes: Vec<(String, String, &str)> =
            s.validate_lists(&obj, None).into_iter().map(|c| (c.field, c.message, c.reason)).collect();
        // Only a key's second appearance is reported.
        assert_eq!(
            causes,
            vec![
                ("tags[2]".to_string(), "tags[2]: Duplicate value: \"a\"".to_string(), "FieldValueDuplicate"),
                (
                    "targets[2]".to_string(),
                    "targets[2]: Duplicate value: {\"kind\":\"A\",\"name\":\"x\"}".to_string(),
                    "FieldValueDuplicate"
                ),
            ]
        );
        let unique = json!({"targets": [{"kind": "A", "name": "x"}, {"kind": "A", "name": "y"}]});
        assert!(s.validate_lists(&unique, None).is_empty());
        // An object stored with duplicates (before the schema said so) can still be updated.
        assert!(s.validate_lists(&obj, Some(&obj)).is_empty());
    }

    #[test]
    fn rules_are_not_run_over_an_object_with_a_blocking_error() {
        let s = CrdSchema::new(&json!({"type": "object", "required": ["a"],
            "properties": {"a": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": "self.a == 'x'"}]}))
        .unwrap();
        let obj = json!({});
        let earlier = s.validate(&obj);
        assert_eq!(earlier[0].reason, "FieldValueRequired");
        let outcome = s.validate_rules(&obj, None, &earlier);
        assert_eq!(outcome.causes.len(), 1);
        assert_eq!(outcome.causes[0].field, "<nil>");
        assert!(outcome.causes[0].message.contains("some validation rules were not checked"));
        let failing = s.validate_rules(&json!({"a": "y"}), None, &[]);
        // A rule on the root: the real validator's path is nil, printed `<nil>`.
        assert_eq!(failing.causes[0].message, "<nil>: Invalid value: failed rule: self.a == 'x'");
    }

    #[test]
    fn int_or_string_accepts_both() {
        let s =
            CrdSchema::new(&json!({"type":"object","properties":{"p":{"x-kubernetes-int-or-string":true}}}))
                .unwrap();
        assert!(s.validate(&json!({"p": 1})).is_empty());
        assert!(s.validate(&json!({"p": "1"})).is_empty());
        assert_eq!(s.validate(&json!({"p": true})).len(), 1);
    }
}
