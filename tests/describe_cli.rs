//! `kubectl describe stk` tells a SlackToken's story: its conditions with what to do, last and
//! next rotation, expiry, identity and the recent Events with their documented reasons. Run with
//! the real kubectl against the Kubernetes emulator and the real controller.

use kube::api::{Api, PostParams};
use slack_token_operator::{Context, SlackClient, SlackToken, SlackTokenSpec, TokenType, TokioClock};
use std::{process::Command, sync::Arc, time::Duration};

#[test]
fn kubectl_describe_shows_conditions_rotations_identity_and_events() {
    if Command::new("kubectl").arg("version").arg("--client").output().is_err() {
        eprintln!("skipped: kubectl is not on PATH");
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let (_kube, _slack, controller) = runtime.block_on(async {
        let kube = kube_emulator::KubeEmulator::start().await.unwrap();
        kube.write_kubeconfig(&kubeconfig).unwrap();
        let client = kube.client();
        slack_token_operator::demo::install_crd(&client).await.unwrap();
        let slack = slack_emulator::SlackEmulator::start().await.unwrap();
        let app = slack.create_app(true);
        let installation = slack.install(&app, "T0DESCRIBE", slack_emulator::TokenKind::Bot);
        let creds = slack_token_operator::oauth_secret(
            "bot-creds",
            &app.client_id,
            &app.client_secret,
            installation.refresh_token.as_deref().unwrap(),
        );
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), "default");
        secrets.create(&PostParams::default(), &creds).await.unwrap();
        let mut stk = SlackToken::new("bot", SlackTokenSpec::new(TokenType::OAuth, "bot-creds", "bot-token"));
        stk.spec.rollout_restart_targets =
            vec![serde_json::from_value(serde_json::json!({"kind": "Deployment", "name": "gone"})).unwrap()];
        let tokens: Api<SlackToken> = Api::namespaced(client.clone(), "default");
        tokens.create(&PostParams::default(), &stk).await.unwrap();
        let ctx =
            Context::new(client, SlackClient::new(&slack.base_url()).unwrap(), Arc::new(TokioClock::new()));
        let controller = tokio::spawn(slack_token_operator::run(ctx, vec!["default".into()]));
        // Ready, then a rotation on request: the restart target is missing.
        for _ in 0..100 {
            let status = tokens.get("bot").await.unwrap().status.unwrap_or_default();
            if status.rotation_count == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let patch = serde_json::json!({"metadata": {"annotations": {"slack.rotator.dev/rotate": "now"}}});
        tokens.patch("bot", &Default::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
        for _ in 0..100 {
            let status = tokens.get("bot").await.unwrap().status.unwrap_or_default();
            if status.conditions.iter().any(|c| c.type_ == "RolloutRestart") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (kube, slack, controller)
    });

    let out = Command::new("kubectl")
        .env("KUBECONFIG", &kubeconfig)
        .args(["describe", "stk", "bot", "--namespace", "default"])
        .output()
        .expect("kubectl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for expected in [
        "Conditions:",
        "TokenPublished",
        "token published to Secret bot-token",
        "TargetNotFound",
        "Deployment/gone: not found in namespace default; fix spec.rolloutRestartTargets",
        "Last Rotation Time:",
        "Next Rotation Time:",
        "Expiration Time:",
        "Rotation Count:",
        "Identity:",
        "T0DESCRIBE",
        "Events:",
        "Rotated",
        "RolloutRestartFailed",
    ] {
        assert!(text.contains(expected), "`kubectl describe stk` lacks {expected:?}:\n{text}");
    }
    controller.abort();
}
