//! `crds/` is generated from the Rust types and must never drift from them, and the CRD must read
//! right on a real API server: no warnings on apply, sentences whole in `kubectl explain`, and
//! printer columns kubectl renders sensibly.

use serde_json::Value;
use slack_token_operator::{crd, crd_yaml, KNOWN_FORMATS};

#[test]
fn committed_crd_yaml_matches_the_rust_types() {
    let generated = crd_yaml();
    let committed = std::fs::read_to_string(
        std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()))
            .join("crds/slacktoken.yaml"),
    )
    .expect("crds/slacktoken.yaml exists");
    if generated != committed {
        let _ = std::fs::write(std::env::temp_dir().join("slacktoken.generated.yaml"), &generated);
    }
    assert!(
        generated == committed,
        "crds/slacktoken.yaml is stale: regenerate it with `cargo run -- crd > crds/slacktoken.yaml`"
    );
}

/// Every (path, key, value) of `value` whose key is `key`.
fn find<'a>(path: &str, value: &'a Value, key: &str, out: &mut Vec<(String, &'a Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let here = format!("{path}.{k}");
                if k == key {
                    out.push((here.clone(), v));
                }
                find(&here, v, key, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                find(&format!("{path}[{i}]"), v, key, out);
            }
        }
        _ => {}
    }
}

fn schema() -> Value {
    let crd = serde_json::to_value(crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn the_schema_uses_only_formats_kubernetes_knows() {
    // kube-apiserver answers every create or apply of a CRD with an unknown format with
    // `Warning: unrecognized format "uint32"`.
    let schema = schema();
    let mut formats = Vec::new();
    find("", &schema, "format", &mut formats);
    assert!(!formats.is_empty(), "the schema has formats to check");
    for (path, format) in formats {
        let format = format.as_str().unwrap_or_default();
        assert!(KNOWN_FORMATS.contains(&format), "{path}: format {format:?} is unknown to Kubernetes");
    }
    // Unsigned counters stay non-negative without their `uint` format.
    let count = &schema["properties"]["status"]["properties"]["rotationCount"];
    assert_eq!((count["format"].as_str(), count["minimum"].as_f64()), (Some("int64"), Some(0.0)));
}

#[test]
fn descriptions_have_no_hard_line_break_inside_a_sentence() {
    let schema = schema();
    let mut descriptions = Vec::new();
    find("", &schema, "description", &mut descriptions);
    assert!(descriptions.len() > 20, "the schema has descriptions to check");
    for (path, description) in descriptions {
        let text = description.as_str().unwrap_or_default();
        for (i, _) in text.match_indices('\n') {
            let (before, after) = (&text[..i], &text[i + 1..]);
            let paragraph_break = before.ends_with('\n') || after.starts_with('\n');
            let list_item = after.starts_with("- ") || after.starts_with("* ");
            assert!(paragraph_break || list_item, "{path}: a line break inside a sentence: {text:?}");
        }
    }
}

#[test]
fn printer_columns_show_absolute_times_and_an_age() {
    // A `date` column renders as an age, and a time in the future as `<invalid>` on a real API
    // server: expiry and next rotation are in the future, so they are strings (RFC 3339).
    let crd = serde_json::to_value(crd()).unwrap();
    let columns = crd["spec"]["versions"][0]["additionalPrinterColumns"].as_array().unwrap();
    let type_of = |name: &str| {
        columns.iter().find(|c| c["name"] == name).and_then(|c| c["type"].as_str()).unwrap_or("missing")
    };
    assert_eq!(type_of("Expires"), "string");
    assert_eq!(type_of("Next Rotation"), "string");
    assert_eq!(type_of("Age"), "date");
}
