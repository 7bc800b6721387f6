//! - `SOURCE_REVISION`, the git commit the binary was built from, for `--version`: taken from
//!   the environment (the Dockerfile's and `scripts/image`'s builds, where `.git` may be absent),
//!   else from `git rev-parse HEAD`, else "unknown".
//! - `cfg(e2e_real_cluster)` when the tests are built to run against a real cluster
//!   (`E2E_KUBECONFIG` set): tests that need the emulators' fault injection are then marked
//!   ignored, so they show as skipped rather than as a pass that checked nothing.

use std::process::Command;

fn main() {
    println!("cargo::rustc-env=SOURCE_REVISION={}", source_revision());

    println!("cargo::rustc-check-cfg=cfg(e2e_real_cluster)");
    println!("cargo::rerun-if-env-changed=E2E_KUBECONFIG");
    if std::env::var_os("E2E_KUBECONFIG").is_some() {
        println!("cargo::rustc-cfg=e2e_real_cluster");
    }
}

fn source_revision() -> String {
    println!("cargo::rerun-if-env-changed=SOURCE_REVISION");
    if let Some(revision) = std::env::var("SOURCE_REVISION").ok().filter(|r| !r.trim().is_empty()) {
        return revision.trim().to_owned();
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    // Built again when HEAD moves (a commit on this branch, a checkout), not on every build.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for path in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
        if let Some(path) =
            git(&["rev-parse", "--git-path", path]).filter(|p| std::path::Path::new(p).exists())
        {
            println!("cargo::rerun-if-changed={path}");
        }
    }
    git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
}
