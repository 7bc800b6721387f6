//! The /admin endpoints a separate process uses to seed, inspect and break the emulator.

use serde_json::{json, Value};

use crate::common::{s, Slack};

async fn admin(slack: &Slack, path: &str, body: Value) -> Value {
    let resp = slack
        .http
        .post(format!("{}{path}", slack.emu.admin_url()))
        .json(&body)
        .send()
        .await
        .expect("admin answers");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.expect("admin JSON")
}

async fn stats(slack: &Slack) -> Value {
    let resp = slack
        .http
        .get(format!("{}stats", slack.emu.admin_url()))
        .send()
        .await
        .unwrap();
    resp.json().await.unwrap()
}

#[tokio::test]
async fn admin_endpoints_seed_an_installation() {
    let slack = Slack::start().await;
    let app = admin(&slack, "apps", json!({"token_rotation": true})).await;
    assert_eq!(app["token_rotation"], true);
    let inst = admin(
        &slack,
        "installations",
        json!({"client_id": app["client_id"], "team_id": "T9", "kind": "user"}),
    )
    .await;
    assert!(s(&inst["access_token"]).starts_with("xoxe.xoxp-1-"));
    assert_eq!(inst["team_id"], "T9");
    assert_eq!(inst["expires_in"], 43_200);
    let v = slack.auth_test(&s(&inst["access_token"])).await.ok();
    assert_eq!(v["team_id"], "T9");
    // The installation refreshes over the API with the credentials the admin API returned.
    let r = slack
        .call(
            "oauth.v2.access",
            &[
                ("client_id", &s(&app["client_id"])),
                ("client_secret", &s(&app["client_secret"])),
                ("grant_type", "refresh_token"),
                ("refresh_token", &s(&inst["refresh_token"])),
            ],
        )
        .await
        .ok();
    let info = admin(
        &slack,
        "tokens/inspect",
        json!({"token": r["access_token"]}),
    )
    .await;
    assert_eq!(info["valid"], true);
    assert_eq!(info["installation"], inst["id"]);
}

#[tokio::test]
async fn admin_seeds_long_lived_config_and_legacy_tokens() {
    let slack = Slack::start().await;
    let app = admin(&slack, "apps", json!({})).await;
    assert_eq!(app["token_rotation"], false);
    let inst = admin(
        &slack,
        "installations",
        json!({"app_id": app["app_id"], "team_id": "T1"}),
    )
    .await;
    assert!(s(&inst["access_token"]).starts_with("xoxb-"));
    assert!(inst["refresh_token"].is_null());
    let app = admin(
        &slack,
        &format!("apps/{}/token-rotation", s(&app["app_id"])),
        json!({}),
    )
    .await;
    assert_eq!(app["token_rotation"], true);
    let cfg = admin(
        &slack,
        "config-tokens",
        json!({"team_id": "T1", "user_id": "U1"}),
    )
    .await;
    assert!(s(&cfg["token"]).starts_with("xoxe.xoxp-1-"));
    assert!(cfg["exp"].is_i64());
    let legacy = admin(
        &slack,
        "legacy-tokens",
        json!({"team_id": "T1", "user_id": "U1", "kind": "user"}),
    )
    .await;
    assert!(s(&legacy["token"]).starts_with("xoxp-"));
    let resp = slack
        .http
        .post(format!("{}installations", slack.emu.admin_url()))
        .json(&json!({"client_id": "nope", "team_id": "T1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn admin_stats_report_calls_refreshes_and_broken_chains() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let inst = slack
        .emu
        .install(&app, "T1", slack_emulator::TokenKind::Bot);
    let refresh = inst.refresh_token.unwrap();
    slack.refresh(&app, &refresh).await.ok();
    slack.refresh(&app, &refresh).await.error();
    slack.auth_test(&inst.access_token).await.ok();
    let st = stats(&slack).await;
    assert_eq!(st["calls"]["oauth.v2.access"], 2);
    assert_eq!(st["calls"]["auth.test"], 1);
    assert_eq!(st["refreshes"][&inst.id], 1);
    assert_eq!(st["broken_chains"], json!([inst.id]));
    assert_eq!(st["outage"], false);
}

#[tokio::test]
async fn admin_injects_faults_outage_and_rate_limits() {
    let slack = Slack::start().await;
    let token = slack
        .emu
        .create_legacy_token("T1", "U1", slack_emulator::TokenKind::Bot);
    admin(
        &slack,
        "faults",
        json!({"method": "auth.test", "count": 2, "fault": {"http": 500}}),
    )
    .await;
    admin(
        &slack,
        "faults",
        json!({"method": "auth.test", "fault": {"slack_error": "internal_error"}}),
    )
    .await;
    admin(
        &slack,
        "faults",
        json!({"method": "auth.test", "fault": {"delay": 10}}),
    )
    .await;
    admin(
        &slack,
        "faults",
        json!({"method": "auth.test", "fault": "malformed_json"}),
    )
    .await;
    assert_eq!(slack.auth_test(&token).await.status, 500);
    assert_eq!(slack.auth_test(&token).await.status, 500);
    assert_eq!(slack.auth_test(&token).await.error(), "internal_error");
    slack.auth_test(&token).await.ok();
    assert!(serde_json::from_str::<Value>(&slack.auth_test(&token).await.text).is_err());

    admin(&slack, "outage", json!({"down": true})).await;
    assert_eq!(slack.auth_test(&token).await.status, 503);
    assert_eq!(stats(&slack).await["outage"], true);
    admin(&slack, "outage", json!({"down": false})).await;

    admin(
        &slack,
        "rate-limits",
        json!({"method": "auth.test", "per_minute": 1}),
    )
    .await;
    slack.auth_test(&token).await.ok();
    assert_eq!(slack.auth_test(&token).await.status, 429);
}
