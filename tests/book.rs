//! The book in `docs/` and the Markdown files around it: every relative link and `#anchor`
//! resolves, every page is in the book's summary, mdBook builds it, README.md stays two screens,
//! and the tables that list what the operator does (Event reasons, metrics, `kubectl get`
//! columns) list exactly that.

mod markdown;
mod scrape;

use markdown::{first_cells, parse, read, repo, section};
use slack_token_operator::{crd, EventReason};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn src() -> PathBuf {
    repo().join("docs/src")
}

/// Every `.md` file under `dir`, sorted.
fn markdown_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The Markdown files outside the book that people read on GitHub.
fn repository_documents() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["README.md", "CONTRIBUTING.md", "SECURITY.md", "CHANGELOG.md"]
        .iter()
        .map(|f| repo().join(f))
        .collect();
    files.push(repo().join("charts/slack-token-operator/README.md"));
    files.extend(markdown_files(&repo().join("crates")));
    files
}

#[test]
fn every_link_and_anchor_in_the_book_resolves_inside_it() {
    let pages = markdown_files(&src());
    assert!(pages.len() > 20, "the book has its pages");
    let broken: Vec<String> = pages.iter().flat_map(|page| markdown::broken_links(page, &src())).collect();
    assert!(broken.is_empty(), "broken links in the book:\n{}", broken.join("\n"));
}

#[test]
fn every_link_and_anchor_in_the_repository_documents_resolves() {
    let broken: Vec<String> =
        repository_documents().iter().flat_map(|doc| markdown::broken_links(doc, repo())).collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_check_finds_a_missing_page_a_missing_anchor_and_a_link_out_of_the_book() {
    let dir = tempfile::tempdir().unwrap();
    let book = dir.path().join("src");
    std::fs::create_dir_all(book.join("guides")).unwrap();
    std::fs::write(book.join("guides/a.md"), "# A page\n\n## Rotate now, and `revoke` on delete\n").unwrap();
    std::fs::write(
        book.join("index.md"),
        "# Index\n\n[fine](guides/a.md#rotate-now-and-revoke-on-delete) [self](#index) [web](https://x.test/#y)\n\
         [gone](guides/b.md) [no anchor](guides/a.md#rotate-now) [out](../README.md)\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("README.md"), "# Readme\n").unwrap();
    let broken = markdown::broken_links(&book.join("index.md"), &book);
    let broken: Vec<&str> = broken.iter().map(|b| b.rsplit_once(": ").unwrap().0).collect();
    assert_eq!(broken.len(), 3, "{broken:?}");
    assert!(broken[0].ends_with("guides/b.md"), "{broken:?}");
    assert!(broken[1].ends_with("guides/a.md#rotate-now"), "{broken:?}");
    assert!(broken[2].ends_with("../README.md"), "{broken:?}");
}

#[test]
fn anchors_follow_mdbooks_rules_including_repeated_headings() {
    let page = parse("# How rotation works\n\n## `Ready` — don't panic!\n\n## Events\n\n### Events\n");
    let anchors: Vec<&str> = page.headings.iter().map(|h| h.anchor.as_str()).collect();
    assert_eq!(anchors, ["how-rotation-works", "ready--dont-panic", "events", "events-1"]);
}

#[test]
fn every_page_is_in_the_summary_and_every_entry_is_a_page() {
    let summary = parse(&read(&src().join("SUMMARY.md")));
    let listed: BTreeSet<PathBuf> = summary.links.iter().map(|l| src().join(&l.dest)).collect();
    let pages: BTreeSet<PathBuf> =
        markdown_files(&src()).into_iter().filter(|p| !p.ends_with("SUMMARY.md")).collect();
    assert_eq!(listed, pages, "docs/src/SUMMARY.md and the pages under docs/src differ");
}

#[test]
fn the_readme_fits_in_two_screens_and_links_into_the_book() {
    let readme = read(&repo().join("README.md"));
    let lines = readme.lines().count();
    assert!(lines <= 200, "README.md has {lines} lines; the rest belongs in the book (docs/src)");
    let into_book = parse(&readme).links.iter().filter(|l| l.dest.starts_with("docs/src/")).count();
    assert!(into_book >= 10, "README.md links into the book ({into_book} links)");
}

/// Builds the book with the project's own mdBook (installed by `scripts/mdbook` on first use)
/// and checks that every anchor the link check expects is an `id` in the HTML mdBook wrote:
/// the link check's idea of mdBook's anchors is mdBook's.
#[test]
fn mdbook_builds_the_book_with_the_anchors_the_link_check_expects() {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(repo().join("scripts/mdbook"))
        .args(["build", "docs", "--dest-dir"])
        .arg(out.path())
        .current_dir(repo())
        .output()
        .expect("run scripts/mdbook (needs bash and cargo)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "scripts/mdbook build docs failed:\n{stderr}");
    assert!(!stderr.contains("WARN") && !stderr.contains("ERROR"), "mdBook warned:\n{stderr}");
    let mut checked = 0;
    for page in markdown_files(&src()).iter().filter(|p| !p.ends_with("SUMMARY.md")) {
        let html_path = out.path().join(page.strip_prefix(src()).unwrap()).with_extension("html");
        let html = read(&html_path);
        for heading in parse(&read(page)).headings {
            assert!(
                html.contains(&format!("id=\"{}\"", heading.anchor)),
                "{}: mdBook gave heading {:?} another id than #{}",
                html_path.display(),
                heading.text,
                heading.anchor
            );
            checked += 1;
        }
    }
    assert!(checked > 50, "checked {checked} headings");
}

#[test]
fn every_event_reason_is_documented_with_its_type() {
    let events = read(&src().join("operations/events.md"));
    let documented = first_cells(&events);
    let expected: Vec<(String, String)> = EventReason::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), if r.is_warning() { "Warning" } else { "Normal" }.to_owned()))
        .collect();
    assert_eq!(documented, expected, "the book's Events table and EventReason disagree");
}

/// Every metric `/metrics` exposes once each kind of series exists.
fn exposed_metrics() -> BTreeSet<String> {
    scrape::every_family()
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
        .collect()
}

#[test]
fn the_observability_page_lists_every_metric_and_no_other() {
    let page = read(&src().join("operations/observability.md"));
    let documented: BTreeSet<String> =
        first_cells(&section(&page, "## Metrics")).into_iter().map(|(m, _)| m).collect();
    assert_eq!(documented, exposed_metrics(), "the book's metrics tables and /metrics disagree");
}

#[test]
fn the_kubectl_get_examples_are_what_a_real_api_server_prints() {
    let page = read(&src().join("operations/troubleshooting.md"));
    kubectl_get_example_is_real(&section(&page, "## A SlackToken's state"));
    kubectl_get_example_is_real(&read(&repo().join("README.md")));
}

/// The first `$ kubectl get stk` example of `text` has the CRD's printer columns, laid out as
/// kubectl lays them out, with absolute times and an age where the columns say so.
fn kubectl_get_example_is_real(text: &str) {
    let (_, example) = text.split_once("$ kubectl get stk").expect("a kubectl get stk example");
    let example = example.split_once('\n').unwrap().1;
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
