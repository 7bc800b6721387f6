//! `kubectl describe stk` tells a SlackToken's story: its conditions with what to do, last and
//! next rotation, expiry, identity and the recent Events with their documented reasons. Run with
//! the real kubectl against the Kubernetes emulator and the real controller.

use slack_token_operator::Settings;
use std::time::Duration;
use testground::{eventually, kubectl, spawn_controller, Ground, GroundConfig, TEAM};

#[test]
fn kubectl_describe_shows_conditions_rotations_identity_and_events() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (ground, _controller) = runtime.block_on(async {
        let ground = Ground::start(GroundConfig::default()).await.unwrap();
        let spec = "rolloutRestartTargets: [{kind: Deployment, name: gone}]";
        let bot = ground.oauth_token("default", "bot", spec).await.unwrap();
        let ctx = ground.context(ground.client.clone(), Settings::default(), None);
        let controller = spawn_controller(ctx, vec!["default".into()]);
        // Ready, then a rotation on request: the restart target is missing.
        let within = Duration::from_secs(10);
        let every = Duration::from_millis(100);
        eventually("the first rotation", within, every, || async {
            (ground.status("default", "bot").await.ok()?.rotation_count == 1).then_some(())
        })
        .await
        .unwrap();
        ground.rotate_now(&bot, "now").await.unwrap();
        eventually("a RolloutRestart condition", within, every, || async {
            ground.condition("default", "bot", "RolloutRestart").await.map(|_| ())
        })
        .await
        .unwrap();
        (ground, controller)
    });

    let out = kubectl(&ground.kubeconfig(), &["describe", "stk", "bot", "--namespace", "default"]);
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
        TEAM,
        "Events:",
        "Rotated",
        "RolloutRestartFailed",
    ] {
        assert!(text.contains(expected), "`kubectl describe stk` lacks {expected:?}:\n{text}");
    }
}
