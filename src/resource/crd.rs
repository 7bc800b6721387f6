//! The CustomResourceDefinition as a real API server should see it.
//!
//! kube-derive builds the CRD from the Rust types through schemars, which says two things a
//! Kubernetes API server does not take as meant: formats outside the OpenAPI set Kubernetes
//! knows (`uint32`, `uint64` for unsigned fields; kube-apiserver then prints
//! `Warning: unrecognized format` on every apply and install), and descriptions that keep the
//! hard line breaks of the doc comments (`kubectl explain` then breaks sentences mid-line).
//! [`crd`] is the derived CRD with both put right; everything that prints or installs the CRD
//! uses it.

use super::slacktoken::SlackToken;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

/// The formats kube-apiserver recognises in a CRD schema: those it validates (see the
/// `format` field of JSONSchemaProps) and the numeric ones of OpenAPI.
pub const KNOWN_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "date-time",
    "int32",
    "int64",
    "float",
    "double",
];

/// The SlackToken CRD, ready for a real API server.
pub fn crd() -> CustomResourceDefinition {
    let derived = SlackToken::crd();
    let mut value = serde_json::to_value(&derived).expect("a CRD serialises to JSON");
    fix_schema(&mut value);
    serde_json::from_value(value).expect("fixing formats and descriptions keeps the CRD valid")
}

/// [`crd`] as YAML, as `slack-token-operator crd` prints it and `crds/slacktoken.yaml` holds it:
/// each description on one line (or, with paragraphs, a literal block), not folded at 80
/// columns, so a description reads as `kubectl explain` shows it.
pub fn crd_yaml() -> String {
    let options = serde_saphyr::ser_options! { folded_wrap_chars: usize::MAX };
    serde_saphyr::to_string_with_options(&crd(), options).expect("a CRD serialises to YAML")
}

/// Walks a schema (any JSON below it), fixing every `format` and `description` it meets.
fn fix_schema(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(format)) = map.get("format").cloned() {
                match known_format(&format) {
                    Some(known) => {
                        map.insert("format".into(), Value::String(known.into()));
                        if format.starts_with("uint") && !map.contains_key("minimum") {
                            map.insert("minimum".into(), Value::from(0));
                        }
                    }
                    None => {
                        map.remove("format");
                    }
                }
            }
            if let Some(Value::String(description)) = map.get_mut("description") {
                *description = unwrap_lines(description);
            }
            map.values_mut().for_each(fix_schema);
        }
        Value::Array(items) => items.iter_mut().for_each(fix_schema),
        _ => {}
    }
}

/// The format Kubernetes knows for `format`: itself if known, the signed format of the same
/// width for an unsigned one (the sign goes into `minimum: 0`), `None` for any other.
pub fn known_format(format: &str) -> Option<&'static str> {
    let format = match format {
        "uint8" | "uint16" | "uint32" | "int8" | "int16" => "int32",
        "uint" | "uint64" | "int" => "int64",
        other => other,
    };
    KNOWN_FORMATS.iter().find(|known| **known == format).copied()
}

/// Joins the lines of each paragraph with a space; paragraphs (blank-line separated) and
/// list items stay on lines of their own. Doc comments wrap at the source's line width, which
/// means nothing to `kubectl explain`.
pub fn unwrap_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            let mut out = String::new();
            for line in paragraph.lines().map(str::trim) {
                if !out.is_empty() {
                    let list_item = line.starts_with("- ") || line.starts_with("* ");
                    out.push(if list_item { '\n' } else { ' ' });
                }
                out.push_str(line);
            }
            out
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_become_ones_kubernetes_knows() {
        // (schemars' format, what the CRD says)
        let table = [
            ("uint32", Some("int32")),
            ("uint64", Some("int64")),
            ("uint16", Some("int32")),
            ("int32", Some("int32")),
            ("int64", Some("int64")),
            ("date-time", Some("date-time")),
            ("double", Some("double")),
            ("uint128", None),
            ("made-up", None),
        ];
        for (format, expected) in table {
            assert_eq!(known_format(format), expected, "{format}");
        }
    }

    #[test]
    fn unsigned_fields_keep_their_sign_as_a_minimum() {
        let mut schema = serde_json::json!({"properties": {
            "a": {"type": "integer", "format": "uint32"},
            "b": {"type": "integer", "format": "uint64", "minimum": 5},
            "c": {"type": "string", "format": "made-up"},
        }});
        fix_schema(&mut schema);
        assert_eq!(
            schema["properties"]["a"],
            serde_json::json!({"type": "integer", "format": "int32", "minimum": 0})
        );
        assert_eq!(schema["properties"]["b"]["minimum"], 5);
        assert_eq!(schema["properties"]["c"], serde_json::json!({"type": "string"}));
    }

    #[test]
    fn descriptions_lose_hard_line_breaks_but_keep_paragraphs_and_lists() {
        // (doc comment text, description)
        let table = [
            ("one line", "one line"),
            ("a sentence\nbroken in two.", "a sentence broken in two."),
            ("first.\n\nsecond\nparagraph.", "first.\n\nsecond paragraph."),
            ("items:\n- one\n- two", "items:\n- one\n- two"),
        ];
        for (text, expected) in table {
            assert_eq!(unwrap_lines(text), expected, "{text:?}");
        }
    }
}
