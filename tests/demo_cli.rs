//! `slack-token-operator demo`, the README's first command, as a newcomer runs it.

use std::process::Command;

#[test]
fn demo_prints_rotations_and_breaks_no_refresh_chain() {
    // Tokens living 15s are rotated every 10s: a 20s run shows the first token and a rotation.
    let out = Command::new(env!("CARGO_BIN_EXE_slack-token-operator"))
        .args(["demo", "--for", "20s", "--token-lifetime", "15s"])
        .output()
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let published = stdout.lines().filter(|l| l.contains("now holds xoxe.xoxb-1-…")).count();
    assert!(published >= 2, "first token and at least one rotation:\n{stdout}");
    assert!(stdout.contains("broken refresh chains: none"), "{stdout}");
    let fingerprints: std::collections::HashSet<&str> =
        stdout.lines().filter_map(|l| l.split("fingerprint ").nth(1)).map(|r| &r[..8]).collect();
    assert_eq!(fingerprints.len(), published, "each line shows a different token");
}
