//! auth.test, auth.revoke, and how Slack takes tokens and client credentials.

use slack_emulator::TokenKind;

use crate::common::{s, Slack};

#[tokio::test]
async fn auth_test_reports_identity_and_expiry() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let bot = slack.emu.install(&app, "T1", TokenKind::Bot);
    let v = slack.auth_test(&bot.access_token).await.ok();
    assert!(s(&v["url"]).starts_with("https://"));
    assert!(v["team"].is_string());
    assert!(v["user"].is_string());
    assert_eq!(v["team_id"], "T1");
    assert!(s(&v["user_id"]).starts_with('U'));
    assert!(s(&v["bot_id"]).starts_with('B'));
    assert_eq!(v["app_id"], app.app_id.as_str());
    assert!(v["enterprise_id"].is_null());
    assert_eq!(v["is_enterprise_install"], false);
    let left = v["expires_in"].as_i64().unwrap();
    assert!((43_000..=43_200).contains(&left), "{v}");

    // The refresh answer's bot_user_id is the bot token's user.
    let r = slack
        .refresh(&app, bot.refresh_token.as_deref().unwrap())
        .await
        .ok();
    assert_eq!(r["bot_user_id"], v["user_id"]);

    let user = slack.emu.install(&app, "T1", TokenKind::User);
    let v = slack.auth_test(&user.access_token).await.ok();
    assert!(v.get("bot_id").is_none(), "{v}");
    assert!(v["expires_in"].is_i64());
}

#[tokio::test]
async fn auth_test_rejects_missing_unknown_and_revoked_tokens() {
    let slack = Slack::start().await;
    assert_eq!(slack.call("auth.test", &[]).await.error(), "not_authed");
    assert_eq!(slack.auth_test("xoxb-1-nope").await.error(), "invalid_auth");
    let app = slack.emu.create_app(true);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    slack
        .call("auth.revoke", &[("token", &inst.access_token)])
        .await
        .ok();
    assert_eq!(
        slack.auth_test(&inst.access_token).await.error(),
        "token_revoked"
    );
    // A refresh token is not an access token.
    assert_eq!(
        slack
            .auth_test(inst.refresh_token.as_deref().unwrap())
            .await
            .error(),
        "invalid_auth"
    );
}

#[tokio::test]
async fn auth_revoke_test_mode_does_not_revoke() {
    let slack = Slack::start().await;
    let legacy = slack.emu.create_legacy_token("T1", "U1", TokenKind::User);
    let v = slack
        .call("auth.revoke", &[("token", &legacy), ("test", "1")])
        .await
        .ok();
    assert_eq!(v["revoked"], false);
    assert!(!slack.emu.is_revoked(&legacy));
    slack.auth_test(&legacy).await.ok();
    let v = slack.call("auth.revoke", &[("token", &legacy)]).await.ok();
    assert_eq!(v["revoked"], true);
    assert!(slack.emu.is_revoked(&legacy));
    assert_eq!(
        slack
            .call("auth.revoke", &[("token", &legacy)])
            .await
            .error(),
        "token_revoked"
    );
}

#[tokio::test]
async fn auth_revoke_of_rotating_token_leaves_installation_intact() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    let v = slack
        .call_bearer("auth.revoke", &inst.access_token, &[])
        .await
        .ok();
    assert_eq!(v["revoked"], true);
    let v = slack
        .refresh(&app, inst.refresh_token.as_deref().unwrap())
        .await
        .ok();
    slack.auth_test(&s(&v["access_token"])).await.ok();
}

#[tokio::test]
async fn legacy_tokens_are_long_lived_and_not_rotatable() {
    let slack = Slack::start().await;
    let user = slack.emu.create_legacy_token("T1", "U1", TokenKind::User);
    let bot = slack.emu.create_legacy_token("T1", "U2", TokenKind::Bot);
    assert!(user.starts_with("xoxp-"));
    assert!(bot.starts_with("xoxb-"));
    let v = slack.auth_test(&user).await.ok();
    assert_eq!(v["user_id"], "U1");
    assert!(v.get("expires_in").is_none());
    assert!(v.get("app_id").is_none());
    let v = slack.auth_test(&bot).await.ok();
    assert!(v["bot_id"].is_string());
    assert_eq!(slack.emu.installation_of(&user), None);
}

#[tokio::test]
async fn client_credentials_accepted_as_http_basic() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    let req = slack
        .http
        .post(slack.url("oauth.v2.access"))
        .basic_auth(&app.client_id, Some(&app.client_secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", inst.refresh_token.as_deref().unwrap()),
        ]);
    slack.send(req).await.ok();
    let req = slack
        .http
        .post(slack.url("oauth.v2.access"))
        .basic_auth(&app.client_id, Some("wrong"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "xoxe-1-x"),
        ]);
    assert_eq!(slack.send(req).await.error(), "bad_client_secret");
}

#[tokio::test]
async fn bearer_token_accepted() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    let v = slack
        .call_bearer("auth.test", &inst.access_token, &[])
        .await
        .ok();
    assert_eq!(v["team_id"], "T1");
    // No body at all, as many clients send auth.test.
    let r = slack
        .send(
            slack
                .http
                .post(slack.url("auth.test"))
                .bearer_auth(&inst.access_token),
        )
        .await;
    r.ok();
}

#[tokio::test]
async fn json_body_takes_token_only_from_authorization_header() {
    let slack = Slack::start().await;
    let legacy = slack.emu.create_legacy_token("T1", "U1", TokenKind::User);
    let body = serde_json::json!({"token": legacy, "test": true});
    let r = slack
        .send(slack.http.post(slack.url("auth.revoke")).json(&body))
        .await;
    assert_eq!(r.error(), "not_authed");
    let r = slack
        .send(
            slack
                .http
                .post(slack.url("auth.revoke"))
                .bearer_auth(&legacy)
                .json(&body),
        )
        .await;
    assert_eq!(r.ok()["revoked"], false);
    let r = slack
        .send(
            slack
                .http
                .post(slack.url("auth.test"))
                .bearer_auth(&legacy)
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_eq!(r.error(), "invalid_json");
}

#[tokio::test]
async fn unknown_method_is_reported() {
    let slack = Slack::start().await;
    let r = slack.call("chat.postMessage", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.error(), "unknown_method");
    assert_eq!(r.json()["req_method"], "chat.postMessage");
}

#[tokio::test]
async fn arguments_accepted_in_query_string_with_get() {
    let slack = Slack::start().await;
    let legacy = slack.emu.create_legacy_token("T1", "U1", TokenKind::User);
    let r = slack
        .send(
            slack
                .http
                .get(slack.url("auth.test"))
                .query(&[("token", &legacy)]),
        )
        .await;
    assert_eq!(r.ok()["user_id"], "U1");
}

#[tokio::test]
async fn garbage_requests_get_slack_errors_not_crashes() {
    let slack = Slack::start().await;
    let post = |method: &str| slack.http.post(slack.url(method));
    let r = slack
        .send(post("auth.test").header("authorization", "Basic !!!not-base64"))
        .await;
    assert_eq!(r.error(), "not_authed");
    let r = slack
        .send(post("oauth.v2.access").header("authorization", "Basic Zm9v"))
        .await;
    assert_eq!(r.error(), "invalid_client_id");
    let r = slack
        .send(post("auth.test").header("authorization", "Bearer"))
        .await;
    assert_eq!(r.error(), "not_authed");
    let r = slack
        .send(
            post("auth.test")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(vec![0xff, 0xfe, b'=', 0x00]),
        )
        .await;
    assert_eq!(r.error(), "not_authed");
    let r = slack
        .send(
            post("auth.test")
                .header("content-type", "application/json")
                .body("[1,2]"),
        )
        .await;
    assert_eq!(r.error(), "invalid_json");
    let r = slack
        .send(
            post("oauth.v2.access")
                .header("content-type", "application/json")
                .body("{}"),
        )
        .await;
    assert_eq!(r.error(), "invalid_client_id");
    // The emulator is still up.
    let legacy = slack.emu.create_legacy_token("T1", "U1", TokenKind::User);
    slack.auth_test(&legacy).await.ok();
}
