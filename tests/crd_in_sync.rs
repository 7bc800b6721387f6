//! `crds/` is generated from the Rust types and must never drift from them.

use kube::CustomResourceExt;
use slack_token_operator::crd::SlackToken;

#[test]
fn committed_crd_yaml_matches_the_rust_types() {
    let generated = serde_yaml::to_string(&SlackToken::crd()).expect("CRD serialises");
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/slacktoken.yaml"))
        .expect("crds/slacktoken.yaml exists");
    assert!(
        generated == committed,
        "crds/slacktoken.yaml is stale: regenerate it with `cargo run -- crd > crds/slacktoken.yaml`"
    );
}
