//! `crds/` is generated from the Rust types and must never drift from them.

use kube::CustomResourceExt;
use slack_token_operator::SlackToken;

#[test]
fn committed_crd_yaml_matches_the_rust_types() {
    let generated = serde_yaml::to_string(&SlackToken::crd()).expect("CRD serialises");
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
