//! The krew manifest template (`plugins/slacktoken.yaml`) and the script the release workflow
//! renders it with (`scripts/krew-manifest`): what krew needs, pointing at the archives the
//! release publishes.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

const REPO: &str = "https://github.com/slack-token-operator/slack-token-operator";
const ARCHES: [&str; 2] = ["amd64", "arm64"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn archive_name(version: &str, arch: &str) -> String {
    format!("kubectl-slacktoken_v{version}_linux_{arch}.tar.gz")
}

/// Checks a rendered manifest for `version` with `sums` (arch → sha256), as krew's validation
/// and the krew-index review would.
fn check_manifest(manifest: &Value, version: &str, sums: &[(&str, String)]) {
    assert_eq!(manifest["apiVersion"], "krew.googlecontainertools.github.com/v1alpha2");
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "slacktoken", "the file name's stem, and `kubectl slacktoken`");
    let spec = &manifest["spec"];
    assert_eq!(spec["version"], format!("v{version}"), "semver with the v krew requires");
    assert_eq!(spec["homepage"], REPO);
    for key in ["shortDescription", "description"] {
        assert!(spec[key].as_str().is_some_and(|s| !s.trim().is_empty()), "{key} set");
    }
    let platforms = spec["platforms"].as_array().expect("platforms");
    assert_eq!(platforms.len(), ARCHES.len(), "{platforms:?}");
    for (arch, sum) in sums {
        let platform = platforms
            .iter()
            .find(|p| p["selector"]["matchLabels"]["arch"] == *arch)
            .unwrap_or_else(|| panic!("a platform for {arch}"));
        assert_eq!(platform["selector"]["matchLabels"]["os"], "linux");
        assert_eq!(
            platform["uri"],
            format!("{REPO}/releases/download/v{version}/{}", archive_name(version, arch))
        );
        assert_eq!(platform["sha256"], *sum);
        assert_eq!(platform["bin"], "kubectl-slacktoken", "what kubectl runs for `kubectl slacktoken`");
        let files: Vec<(&str, &str)> = platform["files"]
            .as_array()
            .expect("files")
            .iter()
            .map(|f| (f["from"].as_str().unwrap(), f["to"].as_str().unwrap()))
            .collect();
        assert_eq!(files, [("kubectl-slacktoken", "."), ("LICENSE", ".")], "the executable and the licence");
    }
}

fn parse(yaml: &str) -> Value {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("YAML: {e}\n{yaml}"))
}

#[test]
fn the_template_points_at_the_release_archives_with_placeholders_for_version_and_sums() {
    let template = std::fs::read_to_string(root().join("plugins/slacktoken.yaml")).unwrap();
    let sums: Vec<(&str, String)> =
        ARCHES.iter().map(|a| (*a, format!("{{{{SHA256_LINUX_{}}}}}", a.to_uppercase()))).collect();
    check_manifest(&parse(&template.replace("{{VERSION}}", "1.2.3")), "1.2.3", &sums);
}

/// A release archive as the release workflow makes it: `members` at its root.
fn archive(dir: &Path, version: &str, arch: &str, members: &[&str]) -> String {
    let content = dir.join(format!("content-{arch}"));
    std::fs::create_dir_all(&content).unwrap();
    for member in members {
        std::fs::write(content.join(member), format!("{member} for {arch}")).unwrap();
    }
    let path = dir.join(archive_name(version, arch));
    let status =
        Command::new("tar").arg("-czf").arg(&path).arg("-C").arg(&content).args(members).status().unwrap();
    assert!(status.success(), "tar");
    format!("{:x}", Sha256::digest(std::fs::read(&path).unwrap()))
}

fn render(version: &str, dir: &Path) -> std::process::Output {
    Command::new(root().join("scripts/krew-manifest"))
        .arg(version)
        .arg(dir)
        .output()
        .expect("the script runs")
}

#[test]
fn the_release_script_fills_in_version_and_checksums_and_checks_the_archives() {
    let dir = tempfile::tempdir().unwrap();
    let sums: Vec<(&str, String)> = ARCHES
        .iter()
        .map(|a| (*a, archive(dir.path(), "1.4.0", a, &["kubectl-slacktoken", "LICENSE"])))
        .collect();
    let out = render("1.4.0", dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rendered = String::from_utf8(out.stdout).unwrap();
    assert!(!rendered.contains("{{"), "no placeholder left:\n{rendered}");
    check_manifest(&parse(&rendered), "1.4.0", &sums);

    // An archive without the licence, a missing archive, a tag instead of a version: refused.
    archive(dir.path(), "1.4.0", "arm64", &["kubectl-slacktoken"]);
    let out = render("1.4.0", dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no LICENSE"), "{out:?}");
    let out = render("1.5.0", dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing release archive"), "{out:?}");
    let out = render("v1.4.0", dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without the leading v"), "{out:?}");
}
