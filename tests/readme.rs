//! README.md says what the operator does: every Event reason it records, every metric it
//! exposes, and a `kubectl get stk` that a real API server prints.

use slack_token_operator::{crd, CallObserver, EventReason, Metrics, SlackError, TokenGauges};
use std::collections::BTreeSet;

fn readme() -> String {
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    std::fs::read_to_string(std::path::Path::new(&root).join("README.md")).expect("README.md")
}

/// The section under `heading` (a whole heading line), up to the next heading of any level.
fn section(heading: &str) -> String {
    let text = readme();
    let (_, rest) =
        text.split_once(&format!("\n{heading}\n")).unwrap_or_else(|| panic!("README has {heading}"));
    rest.split("\n#").next().unwrap_or_default().to_owned()
}

/// The first cells (between backticks) of a section's table rows.
fn first_cells(section: &str) -> Vec<(String, String)> {
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(first, rest)| (first.to_owned(), rest.split('|').nth(1).unwrap_or_default().trim().to_owned()))
        .collect()
}

#[test]
fn every_event_reason_is_documented_with_its_type() {
    let documented = first_cells(&section("### Events"));
    let expected: Vec<(String, String)> = EventReason::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), if r.is_warning() { "Warning" } else { "Normal" }.to_owned()))
        .collect();
    assert_eq!(documented, expected, "README's Events table and EventReason disagree");
}

#[test]
fn the_metrics_tables_list_every_metric_and_no_other() {
    let metrics = Metrics::default();
    let all =
        TokenGauges { expiration: Some(1), next_rotation: Some(1), ready: true, rotation_due: Some(true) };
    metrics.set_token("ns", "n", "Manual", &all);
    metrics.count_rotation("OAuth", "Due");
    metrics.count_failure("OAuth", "SlackUnavailable");
    metrics.count_rollout_restart("Restarted");
    let limited =
        SlackError::RateLimited { method: "auth.test", retry_after: std::time::Duration::from_secs(1) };
    metrics.observe("auth.test", Err(&limited), std::time::Duration::from_millis(1));
    let exposed: BTreeSet<String> = metrics
        .encode()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            }
        })
        .collect();
    let documented: BTreeSet<String> =
        first_cells(&section("### Metrics")).into_iter().map(|(m, _)| m).collect();
    assert_eq!(documented, exposed, "README's metrics tables and /metrics disagree");
}

#[test]
fn the_kubectl_get_example_is_what_a_real_api_server_prints() {
    let status = section("### Status");
    let (_, example) = status.split_once("$ kubectl get stk\n").expect("a kubectl get stk example");
    let lines: Vec<&str> = example.lines().take_while(|l| !l.starts_with("```")).collect();
    let header: Vec<&str> = lines[0].split("   ").map(str::trim).filter(|c| !c.is_empty()).collect();
    let crd = serde_json::to_value(crd()).unwrap();
    let columns = crd["spec"]["versions"][0]["additionalPrinterColumns"].as_array().unwrap().clone();
    let mut expected = vec!["NAME".to_owned()];
    expected.extend(columns.iter().map(|c| c["name"].as_str().unwrap().to_uppercase()));
    assert_eq!(header, expected, "the example's columns are the CRD's printer columns");
    for (i, column) in columns.iter().enumerate() {
        // Where each column starts in the header: the cells below start there too (kubectl's layout).
        let start = lines[0].find(&expected[i + 1]).unwrap();
        for row in &lines[1..] {
            let cell: String = row.chars().skip(start).take_while(|c| *c != ' ').collect();
            if cell.is_empty() {
                continue; // no value (a Manual token's expiry)
            }
            match column["type"].as_str().unwrap() {
                // A `string` time column shows the time as stored, never an age or `<invalid>`.
                "string"
                    if column["name"] != "Ready"
                        && column["name"] != "Type"
                        && column["name"] != "Secret" =>
                {
                    assert!(
                        cell.parse::<jiff::Timestamp>().is_ok(),
                        "{}: {cell:?} is an RFC 3339 time",
                        column["name"]
                    );
                }
                "date" => assert!(
                    cell.chars().last().is_some_and(|c| "smhdy".contains(c)) && cell != "<invalid>",
                    "{}: {cell:?} is an age",
                    column["name"]
                ),
                _ => {}
            }
        }
    }
}
