//! `x-kubernetes-validations`: a CRD's CEL validation rules, compiled and run by `kube-cel`
//! (kube-rs's CEL crate, the one kube-core's `cel` feature uses), with failures laid out as the
//! apiextensions-apiserver lays them out (`pkg/apiserver/schema/cel/validation.go`):
//!
//! - the field is the path of the rule's schema node, followed by the rule's `fieldPath`;
//! - the error type follows the rule's `reason` (`fieldErrorForReason`): `Invalid value` (the
//!   default), `Forbidden`, `Required value`, or `Duplicate value` (which shows no message);
//! - the detail is the rule's `message` (trimmed), else `failed rule: <rule>`;
//! - an `Invalid value` shows the node's value, except for an object or array node
//!   (`field.OmitValueType`);
//! - on update, a failing rule that does not use `oldSelf` on a node whose value did not change
//!   is a warning, not an error (validation ratcheting, on by default since 1.30), so an object
//!   stored before a rule existed can still be written.

use crate::error::Cause;
use kube_cel::{CompiledSchema, ErrorKind, ValidationError};
use serde_json::Value;

/// The compiled rules, per top-level property of the object (`spec`, `status`) that has any,
/// or of the whole object when its root has rules. kube-cel converts the value at every node
/// it walks into CEL, rules or not; a split below the root spares it the metadata (managed
/// fields and all) on every write. The rules and what they see are the same either way.
pub struct Rules {
    parts: Vec<(Option<String>, CompiledSchema)>,
}

/// What a rule check found: errors (the write is refused) and ratcheted failures (warnings).
#[derive(Default)]
pub struct Outcome {
    pub causes: Vec<Cause>,
    pub warnings: Vec<String>,
}

impl Rules {
    /// The rules of `schema`, compiled; `None` if it has none. A rule that does not compile
    /// makes the CRD invalid, as on the real server.
    pub fn compile(schema: &Value) -> Result<Option<Self>, String> {
        if !has_rules(schema) {
            return Ok(None);
        }
        let roots: Vec<(Option<String>, &Value)> = if schema.get("x-kubernetes-validations").is_some() {
            vec![(None, schema)]
        } else {
            let properties = schema.get("properties").and_then(Value::as_object);
            properties
                .into_iter()
                .flatten()
                .filter(|(_, sub)| has_rules(sub))
                .map(|(k, sub)| (Some(k.clone()), sub))
                .collect()
        };
        let mut parts = Vec::new();
        for (property, sub) in roots {
            let compiled = kube_cel::compile_schema(sub);
            if let Some(err) = compiled.compilation_errors().first() {
                return Err(format!("x-kubernetes-validations: {err}"));
            }
            parts.push((property, compiled));
        }
        Ok(Some(Self { parts }))
    }

    /// kube-cel's failures over the object, their paths from its root.
    fn failures(&self, obj: &Value, old: Option<&Value>) -> Vec<ValidationError> {
        let mut out = Vec::new();
        for (property, compiled) in &self.parts {
            let (value, old) = match property {
                None => (Some(obj), old),
                Some(k) => (obj.get(k), old.and_then(|o| o.get(k))),
            };
            let Some(value) = value.filter(|v| !v.is_null()) else { continue };
            let Err(errors) = kube_cel::validate_compiled(compiled, value, old) else { continue };
            for mut error in errors {
                // A rule on the root with a fieldPath: Go's nil.Child("spec.x") is `spec.x`.
                if let Some(path) = error.field_path.strip_prefix('.') {
                    error.field_path = path.to_string();
                }
                if let Some(k) = property {
                    error.field_path = match error.field_path.as_str() {
                        "" => k.clone(),
                        p if p.starts_with('[') => format!("{k}{p}"),
                        p => format!("{k}.{p}"),
                    };
                }
                out.push(error);
            }
        }
        out
    }

    /// Runs the rules on `obj` (already defaulted), with `old` for transition rules. `raw` is
    /// the schema the rules were compiled from, to find each failing rule's node.
    pub fn validate(&self, raw: &Value, obj: &Value, old: Option<&Value>) -> Outcome {
        let mut outcome = Outcome::default();
        for error in &self.failures(obj, old) {
            let node = find_node(raw, obj, error);
            let cause = cause(error, node.as_ref());
            let ratchets = old.is_some_and(|old| {
                !error.rule.contains("oldSelf")
                    && node.as_ref().is_some_and(|n| n.value.is_some() && value_at(old, &n.path) == n.value)
            });
            if ratchets {
                outcome.warnings.push(cause.message);
            } else {
                outcome.causes.push(cause);
            }
        }
        outcome
    }
}

/// The schema node a failing rule sits on: its path in the object (segments) and value there.
struct Node<'a> {
    path: Vec<Segment>,
    type_: &'a str,
    value: Option<&'a Value>,
    rule: &'a Value,
}

#[derive(Clone, Debug, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn has_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(m) => m.contains_key("x-kubernetes-validations") || m.values().any(has_rules),
        Value::Array(a) => a.iter().any(has_rules),
        _ => false,
    }
}

/// `spec.items[0].name` as kube-cel writes its paths.
fn render(path: &[Segment]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Splits a kube-cel path (`spec.items[0].name`) into segments.
fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Segment::Key(key.to_string()));
        }
        while let Some(end) = rest.find(']') {
            match rest[1..end].parse() {
                Ok(i) => out.push(Segment::Index(i)),
                Err(_) => out.push(Segment::Key(rest[1..end].to_string())),
            }
            rest = &rest[end + 1..];
        }
    }
    out
}

/// kube-cel's path of a failure: the node's path, then the rule's `fieldPath`.
fn failure_path(node: &str, field_path: Option<&str>) -> String {
    match field_path {
        Some(fp) if node.is_empty() => fp.strip_prefix('.').unwrap_or(fp).to_string(),
        Some(fp) if fp.starts_with('.') => format!("{node}{fp}"),
        Some(fp) if !node.is_empty() => format!("{node}.{fp}"),
        Some(fp) => fp.to_string(),
        None => node.to_string(),
    }
}

/// Walks the schema and object along the failure's path to the node holding its rule.
fn find_node<'a>(schema: &'a Value, obj: &'a Value, error: &ValidationError) -> Option<Node<'a>> {
    let all = segments(&error.field_path);
    let mut s = schema;
    let mut v = Some(obj);
    for depth in 0..=all.len() {
        let here = &all[..depth];
        let rendered = render(here);
        let rules = s.get("x-kubernetes-validations").and_then(Value::as_array);
        let rule = rules.into_iter().flatten().find(|r| {
            r["rule"].as_str() == Some(error.rule.as_str())
                && failure_path(&rendered, r["fieldPath"].as_str()) == error.field_path
        });
        if let Some(rule) = rule {
            return Some(Node {
                path: here.to_vec(),
                type_: s.get("type").and_then(Value::as_str).unwrap_or_default(),
                value: v,
                rule,
            });
        }
        let Some(next) = all.get(depth) else { break };
        s = match next {
            Segment::Key(k) => s
                .get("properties")
                .and_then(|p| p.get(k))
                .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))?,
            Segment::Index(_) => s.get("items")?,
        };
        v = v.and_then(|v| match next {
            Segment::Key(k) => v.get(k),
            Segment::Index(i) => v.get(i),
        });
    }
    None
}

fn value_at<'a>(obj: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, seg| match seg {
        Segment::Key(k) => v.get(k),
        Segment::Index(i) => v.get(i),
    })
}

/// A value as field.Error shows it: strings quoted, numbers and booleans bare, others as JSON.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The field error the real server builds for a failing rule.
fn cause(error: &ValidationError, node: Option<&Node>) -> Cause {
    // The real validator starts from a nil field.Path, which prints as `<nil>`.
    let field = if error.field_path.is_empty() { "<nil>".to_string() } else { error.field_path.clone() };
    let type_ = node.map(|n| n.type_).unwrap_or_default();
    if error.kind != ErrorKind::ValidationFailure {
        // A rule that cannot be evaluated: field.Invalid(path, schemaType, why).
        return Cause {
            reason: "FieldValueInvalid",
            message: format!("{field}: Invalid value: {}: {}", shown(&Value::from(type_)), error.message),
            field,
        };
    }
    let detail = error.message.trim();
    // field.OmitValueType for objects and arrays: their value is not printed.
    let value = node
        .and_then(|n| n.value)
        .filter(|_| !matches!(type_, "object" | "array"))
        .map(|v| format!(": {}", shown(v)))
        .unwrap_or_default();
    let reason = node.and_then(|n| n.rule["reason"].as_str()).or(error.reason.as_deref());
    let (reason, message) = match reason {
        Some("FieldValueForbidden") => ("FieldValueForbidden", format!("{field}: Forbidden: {detail}")),
        Some("FieldValueRequired") => ("FieldValueRequired", format!("{field}: Required value: {detail}")),
        Some("FieldValueDuplicate") => ("FieldValueDuplicate", format!("{field}: Duplicate value{value}")),
        _ => ("FieldValueInvalid", format!("{field}: Invalid value{value}: {detail}")),
    };
    Cause { reason, field, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {"spec": {
                "type": "object",
                "properties": {
                    "mode": {"type": "string", "x-kubernetes-validations": [
                        {"rule": "self == oldSelf", "message": "mode is immutable"}
                    ]},
                    "a": {"type": "string"},
                    "b": {"type": "string"},
                    "size": {"type": "integer"},
                    "extra": {"type": "string"},
                },
                "x-kubernetes-validations": [
                    {"rule": "self.a != self.b", "message": " b must differ from a ", "fieldPath": ".b"},
                    {"rule": "self.mode != 'X' || has(self.size)", "message": "mode X needs size",
                     "fieldPath": ".size", "reason": "FieldValueRequired"},
                    {"rule": "!has(self.extra)", "message": "extra is not allowed",
                     "fieldPath": ".extra", "reason": "FieldValueForbidden"},
                    {"rule": "self.a != 'dup'", "reason": "FieldValueDuplicate"},
                    {"rule": "self.a != 'plain'"},
                ],
            }},
        })
    }

    fn run(obj: Value, old: Option<Value>) -> Outcome {
        let raw = schema();
        let rules = Rules::compile(&raw).unwrap().unwrap();
        rules.validate(&raw, &obj, old.as_ref())
    }

    fn messages(outcome: &Outcome) -> Vec<(&str, &str, &str)> {
        outcome.causes.iter().map(|c| (c.reason, c.field.as_str(), c.message.as_str())).collect()
    }

    #[test]
    fn failures_read_as_the_real_server_writes_them() {
        // (object, the one expected cause: reason, field, message)
        let table = [
            (
                json!({"spec": {"mode": "Y", "a": "s", "b": "s"}}),
                ("FieldValueInvalid", "spec.b", "spec.b: Invalid value: b must differ from a"),
            ),
            (
                json!({"spec": {"mode": "X", "a": "s", "b": "t"}}),
                ("FieldValueRequired", "spec.size", "spec.size: Required value: mode X needs size"),
            ),
            (
                json!({"spec": {"mode": "Y", "a": "s", "b": "t", "extra": "e"}}),
                ("FieldValueForbidden", "spec.extra", "spec.extra: Forbidden: extra is not allowed"),
            ),
            (
                json!({"spec": {"mode": "Y", "a": "dup", "b": "t"}}),
                ("FieldValueDuplicate", "spec", "spec: Duplicate value"),
            ),
            (
                json!({"spec": {"mode": "Y", "a": "plain", "b": "t"}}),
                ("FieldValueInvalid", "spec", "spec: Invalid value: failed rule: self.a != 'plain'"),
            ),
        ];
        for (obj, expected) in table {
            let outcome = run(obj.clone(), None);
            assert_eq!(messages(&outcome), vec![expected], "{obj}");
        }
        assert!(run(json!({"spec": {"mode": "Y", "a": "s", "b": "t"}}), None).causes.is_empty());
    }

    #[test]
    fn transition_rules_compare_with_the_old_object_and_show_a_scalar_value() {
        let old = json!({"spec": {"mode": "Y", "a": "s", "b": "t"}});
        let outcome = run(json!({"spec": {"mode": "Z", "a": "s", "b": "t"}}), Some(old.clone()));
        assert_eq!(
            messages(&outcome),
            vec![("FieldValueInvalid", "spec.mode", "spec.mode: Invalid value: \"Z\": mode is immutable")]
        );
        assert!(run(old.clone(), Some(old)).causes.is_empty());
        // On create there is no old value: transition rules do not run.
        assert!(run(json!({"spec": {"mode": "Z", "a": "s", "b": "t"}}), None).causes.is_empty());
    }

    #[test]
    fn a_failure_on_an_unchanged_node_ratchets_to_a_warning() {
        let stored = json!({"spec": {"mode": "Y", "a": "s", "b": "s"}});
        let unchanged = run(stored.clone(), Some(stored.clone()));
        assert!(unchanged.causes.is_empty());
        assert_eq!(unchanged.warnings, vec!["spec.b: Invalid value: b must differ from a".to_string()]);
        // Any change of the node (spec) brings the error back.
        let changed = run(json!({"spec": {"mode": "Y", "a": "s", "b": "s", "size": 1}}), Some(stored));
        assert_eq!(changed.causes.len(), 1);
    }

    #[test]
    fn a_rule_on_the_root_reports_its_field_path_from_the_root() {
        let raw = json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"x": {"type": "string"}}}},
            "x-kubernetes-validations": [{"rule": "self.spec.x != 'no'", "message": "not no",
                "fieldPath": ".spec.x"}]});
        let rules = Rules::compile(&raw).unwrap().unwrap();
        let outcome = rules.validate(&raw, &json!({"spec": {"x": "no"}}), None);
        assert_eq!(
            messages(&outcome),
            vec![("FieldValueInvalid", "spec.x", "spec.x: Invalid value: not no")]
        );
    }

    #[test]
    fn a_rule_that_does_not_compile_makes_the_schema_invalid() {
        let bad = json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.a ==="}]});
        assert!(Rules::compile(&bad).is_err());
        assert!(Rules::compile(&json!({"type": "object"})).unwrap().is_none());
    }

    #[test]
    fn paths_split_into_keys_and_indices() {
        assert_eq!(
            segments("spec.items[2].name"),
            vec![
                Segment::Key("spec".into()),
                Segment::Key("items".into()),
                Segment::Index(2),
                Segment::Key("name".into())
            ]
        );
        assert_eq!(render(&segments("spec.items[2].name")), "spec.items[2].name");
    }
}
