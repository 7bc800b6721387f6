//! `slack-token-operator status`, run as a person or a script runs it, against the Kubernetes
//! emulator through a kubeconfig.

use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use slack_token_operator::{SlackToken, SlackTokenSpec, TokenType};
use std::process::Command;
use testground::{Ground, GroundConfig};

fn status(kubeconfig: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_slack-token-operator"))
        .arg("status")
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .output()
        .expect("status runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn status_lists_slacktokens_by_next_rotation_and_fails_when_one_is_not_ready() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ground = runtime.block_on(async {
        let ground = Ground::start(GroundConfig::default()).await.unwrap();
        let tokens = ground.tokens("default");
        for (name, ready, next) in
            [("later", "True", "2099-01-01T10:00:00Z"), ("sooner", "True", "2099-01-01T08:00:00Z")]
        {
            let stk = SlackToken::new(name, SlackTokenSpec::new(TokenType::OAuth, "c", "o"));
            tokens.create(&PostParams::default(), &stk).await.unwrap();
            let status = json!({"status": {
                "conditions": [{"type": "Ready", "status": ready, "reason": "TokenPublished",
                    "message": "token published to Secret o", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                "expirationTime": "2099-01-01T12:00:00Z", "nextRotationTime": next}});
            tokens.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
        }
        ground
    });
    let kubeconfig = ground.kubeconfig();

    let (code, out) = status(&kubeconfig, &[]);
    assert_eq!(code, 0, "all Ready:\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NAME     READY   REASON") && lines[0].contains("NEXT ROTATION"), "{out}");
    assert!(
        lines[1].starts_with("sooner") && lines[2].starts_with("later"),
        "soonest rotation first:\n{out}"
    );

    // A SlackToken the operator has not reported on yet is not Ready.
    let stk = SlackToken::new("new", SlackTokenSpec::new(TokenType::OAuth, "c", "o"));
    runtime.block_on(ground.tokens("default").create(&PostParams::default(), &stk)).unwrap();
    let (code, out) = status(&kubeconfig, &["-A"]);
    assert_eq!(code, 1, "one is not Ready:\n{out}");
    assert!(out.lines().next().unwrap().starts_with("NAMESPACE"), "{out}");
    assert!(out.contains("default/new: NotReconciled"), "says which and why:\n{out}");

    let (code, out) = status(&kubeconfig, &["-n", "default", "-o", "json"]);
    assert_eq!(code, 1);
    let rows: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(rows[0]["name"], "sooner");
    assert_eq!(rows[0]["nextRotationTime"], "2099-01-01T08:00:00Z");
    assert_eq!(rows[2]["ready"], "Unknown");

    let (code, _) = status(&kubeconfig, &["-n", "empty"]);
    assert_eq!(code, 0, "nothing to be not Ready");
}
