//! The book's reference pages and the chart's README are generated from what they describe, as
//! `crds/` is from the Rust types: the SlackToken fields from the CRD's schema, the command line
//! from clap (the binary's own `--help`), the metrics from the registry, and the chart's values
//! table from `values.yaml`'s `# --` comments (helm-docs' format). Each test fails when its page
//! is stale; `UPDATE=1 cargo test --test reference` rewrites them.

mod markdown;
mod scrape;

use markdown::{read, repo};
use serde_json::Value;
use slack_token_operator::crd;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Compares `generated` with the committed `path` (from the repository root), or writes it
/// with `UPDATE=1`.
fn in_sync(path: &str, generated: &str) {
    let file = repo().join(path);
    if std::env::var_os("UPDATE").is_some_and(|v| v == "1") {
        std::fs::write(&file, generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    if committed != generated {
        let name = path.replace('/', "_");
        let copy = std::env::temp_dir().join(format!("generated_{name}"));
        let _ = std::fs::write(&copy, generated);
        panic!(
            "{path} is stale (what it should be: {}): regenerate it with `UPDATE=1 cargo test --test reference`",
            copy.display()
        );
    }
}

/// The hand-written part of a page, up to and including its `marker` line, followed by `generated`.
fn below_marker(path: &str, marker: &str, generated: &str) -> String {
    let committed = read(&repo().join(path));
    let (head, _) = committed.split_once(marker).unwrap_or_else(|| panic!("{path} has the line {marker:?}"));
    format!("{head}{marker}\n{generated}")
}

const GENERATED: &str = "<!-- generated below: do not edit -->";

/// A table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    let one_line: Vec<&str> = text.split_whitespace().collect();
    // `<` outside code spans would start an HTML tag (a rule's message says `<name>-token`).
    let escaped: Vec<String> = one_line
        .join(" ")
        .split('`')
        .enumerate()
        .map(|(i, part)| if i % 2 == 0 { part.replace('<', "&lt;") } else { part.to_owned() })
        .collect();
    escaped.join("`").replace('|', "\\|")
}

// --- SlackToken fields, from the CRD's schema ---------------------------------------------------

fn schema_type(schema: &Value) -> String {
    if schema["x-kubernetes-int-or-string"] == true {
        return "int or string".into();
    }
    match schema["type"].as_str() {
        Some("array") => format!("[]{}", schema_type(&schema["items"])),
        Some("object") if schema["additionalProperties"].is_object() => {
            format!("map[string]{}", schema_type(&schema["additionalProperties"]))
        }
        Some(t) => t.to_owned(),
        None => "any".into(),
    }
}

fn fields(path: &str, schema: &Value, required: bool, rows: &mut Vec<String>) {
    let mut notes = Vec::new();
    if required {
        notes.push("**required**".to_owned());
    }
    if let Some(default) = schema.get("default") {
        notes.push(format!("default `{default}`"));
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> =
            values.iter().map(|v| format!("`{}`", v.as_str().unwrap_or_default())).collect();
        notes.push(format!("one of {}", values.join(", ")));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        notes.push(format!("pattern `{pattern}`"));
    }
    for (key, word) in [("minimum", "at least"), ("maximum", "at most"), ("maxLength", "length at most")] {
        if let Some(n) = schema.get(key) {
            notes.push(format!("{word} {n}"));
        }
    }
    match schema["x-kubernetes-list-type"].as_str() {
        Some("map") => {
            let keys: Vec<String> = schema["x-kubernetes-list-map-keys"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|k| format!("`{}`", k.as_str().unwrap_or_default()))
                .collect();
            notes.push(format!("unique by {}", keys.join(" and ")));
        }
        Some("set") => notes.push("unique items".to_owned()),
        _ => {}
    }
    if let Some(rules) = schema["x-kubernetes-validations"].as_array() {
        for rule in rules {
            notes.push(format!(
                "rule: {}",
                rule["message"].as_str().or(rule["rule"].as_str()).unwrap_or_default()
            ));
        }
    }
    rows.push(format!(
        "| `{path}` | {} | {} | {} |",
        schema_type(schema),
        cell(schema["description"].as_str().unwrap_or_default()),
        cell(&notes.join("; ")),
    ));
    let (object, prefix) = if schema["type"] == "array" {
        (&schema["items"], format!("{path}[]"))
    } else {
        (schema, path.to_owned())
    };
    if let Some(properties) = object["properties"].as_object() {
        let required: BTreeSet<&str> =
            object["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        for (key, child) in properties {
            fields(&format!("{prefix}.{key}"), child, required.contains(key.as_str()), rows);
        }
    }
}

fn slacktoken_page() -> String {
    let crd = serde_json::to_value(crd()).unwrap();
    let version = &crd["spec"]["versions"][0];
    let schema = &version["schema"]["openAPIV3Schema"];
    let mut out = format!(
        "\n`{}/{}`, kind `{}`, short name `{}`, namespaced. `kubectl explain slacktoken.spec` shows the same \
         descriptions on a cluster.\n",
        crd["spec"]["group"].as_str().unwrap(),
        version["name"].as_str().unwrap(),
        crd["spec"]["names"]["kind"].as_str().unwrap(),
        crd["spec"]["names"]["shortNames"][0].as_str().unwrap(),
    );
    for part in ["spec", "status"] {
        let mut rows = Vec::new();
        let required: BTreeSet<&str> =
            schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        fields(part, &schema["properties"][part], required.contains(part), &mut rows);
        out.push_str(&format!(
            "\n## `{part}`\n\n| Field | Type | Description | Constraints |\n|---|---|---|---|\n{}\n",
            rows.join("\n")
        ));
    }
    out
}

#[test]
fn the_slacktoken_reference_is_the_crds_schema() {
    let path = "docs/src/reference/slacktoken.md";
    in_sync(path, &below_marker(path, GENERATED, &slacktoken_page()));
}

// --- Command line, from clap ---------------------------------------------------------------------

fn help(args: &[&str]) -> String {
    // No environment: clap shows the value of each flag's variable, and wraps to the terminal.
    let output = Command::new(env!("CARGO_BIN_EXE_slack-token-operator"))
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .expect("run slack-token-operator --help");
    assert!(output.status.success(), "{args:?} --help: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn cli_page() -> String {
    let mut out = String::new();
    for (title, args) in [
        ("slack-token-operator", &[][..]),
        ("slack-token-operator run", &["run"][..]),
        ("slack-token-operator status", &["status"][..]),
        ("slack-token-operator rotate", &["rotate"][..]),
        ("slack-token-operator handover", &["handover"][..]),
        ("slack-token-operator crd", &["crd"][..]),
        ("slack-token-operator demo", &["demo"][..]),
        ("slack-token-operator emulate", &["emulate"][..]),
    ] {
        out.push_str(&format!("\n### `{title}`\n\n```text\n{}```\n", help(args)));
    }
    // The same binary run as `kubectl-slacktoken`, as kubectl runs the plugin.
    out.push_str(&format!("\n### `kubectl slacktoken`\n\n```text\n{}```\n", plugin_help()));
    out
}

/// `kubectl slacktoken --help`: the binary under the plugin's name.
fn plugin_help() -> String {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("kubectl-slacktoken");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_slack-token-operator"), &plugin).unwrap();
    let output =
        Command::new(&plugin).arg("--help").env_clear().output().expect("run kubectl-slacktoken --help");
    assert!(
        output.status.success(),
        "kubectl-slacktoken --help: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
#[cfg_attr(not(feature = "emulator"), ignore = "demo and emulate exist only with the emulator feature")]
fn the_command_line_reference_is_what_clap_prints() {
    let path = "docs/src/reference/cli.md";
    in_sync(path, &below_marker(path, GENERATED, &cli_page()));
    // The hand-written table explains every flag of `run` and no other.
    let page = read(&repo().join(path));
    let explained: BTreeSet<String> =
        markdown::first_cells(&markdown::section(&page, "## Operator flags, explained"))
            .into_iter()
            .map(|(flag, _)| flag)
            .collect();
    let run = help(&["run"]);
    let flags: BTreeSet<String> = run
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .map(|l| format!("--{}", l.split([' ', '<']).next().unwrap()))
        .filter(|f| f != "--help" && f != "--version")
        .collect();
    assert_eq!(explained, flags, "the table of operator flags in {path} and `run --help` disagree");
}

// --- Metrics, from the registry ------------------------------------------------------------------

fn metrics_page() -> String {
    let text = scrape::every_family();
    // name -> (type, help, label names)
    let mut families: BTreeMap<String, (String, String, BTreeSet<String>)> = BTreeMap::new();
    let mut order = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            order.push(name.to_owned());
            families.entry(name.to_owned()).or_default().1 = help.trim_end_matches('.').to_owned();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            families.entry(name.to_owned()).or_default().0 = kind.to_owned();
        } else if !line.starts_with('#') {
            let Some((series, labels)) = line.split_once('{') else { continue };
            let family =
                order.iter().rev().find(|f| series.starts_with(f.as_str())).cloned().unwrap_or_default();
            let labels = labels.split_once('}').map(|(l, _)| l).unwrap_or_default();
            for pair in labels.split(',').filter(|p| !p.is_empty()) {
                let name = pair.split_once('=').map(|(n, _)| n).unwrap_or(pair);
                if name != "le" {
                    families.entry(family.clone()).or_default().2.insert(name.to_owned());
                }
            }
        }
    }
    let mut rows = String::new();
    for name in &order {
        let (kind, help, labels) = &families[name];
        let shown = if kind == "counter" { format!("{name}_total") } else { name.clone() };
        let labels: Vec<String> = labels.iter().map(|l| format!("`{l}`")).collect();
        rows.push_str(&format!("| `{shown}` | {kind} | {} | {} |\n", labels.join(", "), cell(help)));
    }
    format!("\n| Metric | Type | Labels | Help |\n|---|---|---|---|\n{rows}")
}

#[test]
fn the_metrics_reference_is_the_registry() {
    let path = "docs/src/reference/metrics.md";
    in_sync(path, &below_marker(path, GENERATED, &metrics_page()));
}

// --- The chart's values, from values.yaml's `# --` comments (helm-docs) --------------------------

const CHART: &str = "charts/slack-token-operator";

/// (key, description) of each value with a `# --` comment, in file order: the comment and the
/// `#` lines after it, up to the key they stand above (helm-docs' format).
fn documented_values(yaml: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut parents: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<String> = None;
    for line in yaml.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(comment) = trimmed.strip_prefix('#') {
            let comment = comment.trim();
            if let Some(start) = comment.strip_prefix("-- ") {
                pending = Some(start.to_owned());
            } else if let Some(text) = pending.as_mut() {
                text.push(' ');
                text.push_str(comment);
            }
            continue;
        }
        let Some((key, _)) = trimmed.split_once(':') else { continue };
        if key.is_empty() || key.starts_with('-') || key.contains(' ') {
            continue;
        }
        while parents.last().is_some_and(|(i, _)| *i >= indent) {
            parents.pop();
        }
        let path: Vec<&str> = parents.iter().map(|(_, k)| k.as_str()).chain([key]).collect();
        let path = path.join(".");
        if let Some(description) = pending.take() {
            out.push((path.clone(), description));
        }
        parents.push((indent, key.to_owned()));
    }
    out
}

fn lookup<'a>(values: &'a Value, key: &str) -> &'a Value {
    key.split('.').fold(values, |v, k| &v[k])
}

fn helm_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "string",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

fn values_table() -> String {
    let yaml = read(&repo().join(CHART).join("values.yaml"));
    let values: Value = serde_saphyr::from_str(&yaml).unwrap();
    let mut rows = String::new();
    for (key, description) in documented_values(&yaml) {
        let value = lookup(&values, &key);
        rows.push_str(&format!(
            "| `{key}` | {} | `{}` | {} |\n",
            helm_type(value),
            value.to_string().replace('|', "\\|"),
            cell(&description)
        ));
    }
    format!("| Key | Type | Default | Description |\n|---|---|---|---|\n{rows}")
}

#[test]
fn the_chart_readme_lists_every_value_of_values_yaml() {
    let path = format!("{CHART}/README.md");
    let committed = read(&repo().join(&path));
    let (head, rest) =
        committed.split_once("<!-- ANCHOR: values -->\n").expect("the chart README has its values anchor");
    let (_, tail) = rest.split_once("<!-- ANCHOR_END: values -->").expect("and its end");
    in_sync(
        &path,
        &format!("{head}<!-- ANCHOR: values -->\n{}<!-- ANCHOR_END: values -->{tail}", values_table()),
    );

    // Every value is documented: it has a `# --` comment, or a map above it has one.
    fn leaves(prefix: &str, value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                    leaves(&path, child, out);
                }
            }
            _ => {
                out.insert(prefix.to_owned());
            }
        }
    }
    let yaml = read(&repo().join(CHART).join("values.yaml"));
    let values: Value = serde_saphyr::from_str(&yaml).unwrap();
    let mut all = BTreeSet::new();
    leaves("", &values, &mut all);
    let documented: Vec<String> = documented_values(&yaml).into_iter().map(|(k, _)| k).collect();
    for key in &documented {
        assert!(!lookup(&values, key).is_null(), "{key} is documented but not a value");
    }
    let undocumented: Vec<&String> = all
        .iter()
        .filter(|leaf| !documented.iter().any(|d| *leaf == d || leaf.starts_with(&format!("{d}."))))
        .collect();
    assert!(undocumented.is_empty(), "values without a `# --` comment in values.yaml: {undocumented:?}");
}

#[test]
fn the_values_parser_reads_helm_docs_comments() {
    let yaml = "# Not a description.\nimage:\n  # -- Operator image\n  # repository.\n  repository: x\n  tag: \"\"\n\
                # -- Resources, as a whole.\nresources:\n  limits:\n    memory: 1Mi\n";
    assert_eq!(
        documented_values(yaml),
        [
            ("image.repository".to_owned(), "Operator image repository.".to_owned()),
            ("resources".to_owned(), "Resources, as a whole.".to_owned())
        ]
    );
}
