//! oauth.v2.access refreshes and tooling.tokens.rotate: single-use refresh tokens, expiry, two active tokens.

use std::time::Duration;

use slack_emulator::{Config, TokenKind};

use crate::common::{s, Slack};

const TTL: Duration = Duration::from_secs(43_200);

#[tokio::test]
async fn refresh_returns_new_access_and_refresh_tokens() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    assert!(inst.access_token.starts_with("xoxe.xoxb-1-"));
    let refresh = inst
        .refresh_token
        .clone()
        .expect("rotating install has a refresh token");
    assert!(refresh.starts_with("xoxe-1-"));
    assert_eq!(inst.expires_in, Some(43_200));

    let v = slack.refresh(&app, &refresh).await.ok();
    let access = s(&v["access_token"]);
    let new_refresh = s(&v["refresh_token"]);
    assert!(access.starts_with("xoxe.xoxb-1-"), "{v}");
    assert!(new_refresh.starts_with("xoxe-1-"), "{v}");
    assert_ne!(access, inst.access_token);
    assert_ne!(new_refresh, refresh);
    assert_eq!(v["expires_in"], 43_200);
    assert_eq!(v["token_type"], "bot");
    assert!(v["scope"].is_string());
    assert!(s(&v["bot_user_id"]).starts_with('U'));
    assert_eq!(v["app_id"], app.app_id.as_str());
    assert_eq!(v["team"]["id"], "T1");
    assert!(v["team"]["name"].is_string());
    assert!(v["enterprise"].is_null());
    assert_eq!(v["is_enterprise_install"], false);

    assert_eq!(slack.emu.refreshes(&inst.id), 1);
    assert_eq!(slack.emu.installation_of(&access), Some(inst.id.clone()));
    assert!(slack.emu.token_is_valid(&access));
    // The new pair chains on: refreshing with the new refresh token works.
    slack.refresh(&app, &new_refresh).await.ok();
    assert_eq!(slack.emu.refreshes(&inst.id), 2);
}

#[tokio::test]
async fn user_token_refresh_reports_token_type_user() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let inst = slack.emu.install(&app, "T1", TokenKind::User);
    assert!(inst.access_token.starts_with("xoxe.xoxp-1-"));
    let v = slack
        .refresh(&app, inst.refresh_token.as_deref().unwrap())
        .await
        .ok();
    assert!(s(&v["access_token"]).starts_with("xoxe.xoxp-1-"));
    assert_eq!(v["token_type"], "user");
    assert!(s(&v["user_id"]).starts_with('U'));
    assert_eq!(v["authed_user"]["id"], v["user_id"]);
    assert!(v.get("bot_user_id").is_none(), "{v}");
}

#[tokio::test]
async fn spent_refresh_token_is_rejected() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    let refresh = inst.refresh_token.unwrap();
    slack.refresh(&app, &refresh).await.ok();
    assert!(!slack.emu.token_is_valid(&refresh));
    assert_eq!(
        slack.refresh(&app, &refresh).await.error(),
        "invalid_refresh_token"
    );
    assert_eq!(slack.emu.refreshes(&inst.id), 1);
}

#[tokio::test]
async fn spent_refresh_token_is_recorded_as_broken_chain() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let good = slack.emu.install(&app, "T1", TokenKind::Bot);
    let bad = slack.emu.install(&app, "T2", TokenKind::Bot);
    slack
        .refresh(&app, good.refresh_token.as_deref().unwrap())
        .await
        .ok();
    let spent = bad.refresh_token.unwrap();
    slack.refresh(&app, &spent).await.ok();
    assert!(slack.emu.broken_chains().is_empty());
    slack.refresh(&app, &spent).await.error();
    slack.refresh(&app, &spent).await.error();
    assert_eq!(slack.emu.broken_chains(), vec![bad.id]);
}

#[tokio::test]
async fn unknown_refresh_token_is_rejected_without_breaking_a_chain() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    assert_eq!(
        slack.refresh(&app, "xoxe-1-nonsense").await.error(),
        "invalid_refresh_token"
    );
    assert!(slack.emu.broken_chains().is_empty());
}

#[tokio::test(start_paused = true)]
async fn refresh_grace_allows_reuse_briefly() {
    let slack = Slack::start_with(Config {
        refresh_grace: Duration::from_secs(60),
        ..Config::default()
    })
    .await;
    let app = slack.emu.create_app(true);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    let refresh = inst.refresh_token.unwrap();
    slack.refresh(&app, &refresh).await.ok();
    tokio::time::advance(Duration::from_secs(10)).await;
    // A retry after a lost answer, within the grace period, still works.
    slack.refresh(&app, &refresh).await.ok();
    assert!(slack.emu.broken_chains().is_empty());
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(
        slack.refresh(&app, &refresh).await.error(),
        "invalid_refresh_token"
    );
    assert_eq!(slack.emu.broken_chains(), vec![inst.id]);
}

#[tokio::test(start_paused = true)]
async fn access_token_expires_after_ttl() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    tokio::time::advance(TTL / 2).await;
    let v = slack.auth_test(&inst.access_token).await.ok();
    let left = v["expires_in"].as_i64().unwrap();
    assert!((21_000..=21_600).contains(&left), "{v}");
    tokio::time::advance(TTL / 2 + Duration::from_secs(1)).await;
    assert!(!slack.emu.token_is_valid(&inst.access_token));
    assert!(!slack.emu.is_revoked(&inst.access_token));
    assert_eq!(
        slack.auth_test(&inst.access_token).await.error(),
        "token_expired"
    );
    // The refresh token outlives the access token.
    let v = slack
        .refresh(&app, inst.refresh_token.as_deref().unwrap())
        .await
        .ok();
    slack.auth_test(&s(&v["access_token"])).await.ok();
}

#[tokio::test(start_paused = true)]
async fn custom_ttl_sets_expires_in() {
    let slack = Slack::start_with(Config {
        access_token_ttl: Duration::from_secs(600),
        ..Config::default()
    })
    .await;
    let app = slack.emu.create_app(true);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    assert_eq!(inst.expires_in, Some(600));
    let v = slack
        .refresh(&app, inst.refresh_token.as_deref().unwrap())
        .await
        .ok();
    assert_eq!(v["expires_in"], 600);
    tokio::time::advance(Duration::from_secs(601)).await;
    assert_eq!(
        slack.auth_test(&s(&v["access_token"])).await.error(),
        "token_expired"
    );
}

#[tokio::test]
async fn previous_access_token_stays_valid_after_refresh() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    let v = slack
        .refresh(&app, inst.refresh_token.as_deref().unwrap())
        .await
        .ok();
    slack.auth_test(&inst.access_token).await.ok();
    slack.auth_test(&s(&v["access_token"])).await.ok();
}

#[tokio::test]
async fn third_refresh_revokes_oldest_access_token() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    let a = inst.access_token.clone();
    let v = slack
        .refresh(&app, inst.refresh_token.as_deref().unwrap())
        .await
        .ok();
    let b = s(&v["access_token"]);
    // Two active tokens is fine.
    slack.auth_test(&a).await.ok();
    let v = slack.refresh(&app, &s(&v["refresh_token"])).await.ok();
    let c = s(&v["access_token"]);
    // A third active token revokes the oldest one.
    assert_eq!(slack.auth_test(&a).await.error(), "token_revoked");
    assert!(slack.emu.is_revoked(&a));
    slack.auth_test(&b).await.ok();
    slack.auth_test(&c).await.ok();
    let v = slack.refresh(&app, &s(&v["refresh_token"])).await.ok();
    assert_eq!(slack.auth_test(&b).await.error(), "token_revoked");
    slack.auth_test(&c).await.ok();
    slack.auth_test(&s(&v["access_token"])).await.ok();
}

#[tokio::test(start_paused = true)]
async fn expired_tokens_do_not_count_towards_the_two_active() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    tokio::time::advance(TTL + Duration::from_secs(1)).await;
    let v = slack
        .refresh(&app, inst.refresh_token.as_deref().unwrap())
        .await
        .ok();
    let b = s(&v["access_token"]);
    let v = slack.refresh(&app, &s(&v["refresh_token"])).await.ok();
    // a expired (not revoked), so b and c are the two active tokens.
    assert_eq!(
        slack.auth_test(&inst.access_token).await.error(),
        "token_expired"
    );
    slack.auth_test(&b).await.ok();
    slack.auth_test(&s(&v["access_token"])).await.ok();
}

#[tokio::test]
async fn refresh_checks_client_credentials_and_grant_type() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let other = slack.emu.create_app(true);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    let refresh = inst.refresh_token.unwrap();
    let form = |id: &str, secret: &str, grant: &str| {
        vec![
            ("client_id".to_string(), id.to_string()),
            ("client_secret".to_string(), secret.to_string()),
            ("grant_type".to_string(), grant.to_string()),
            ("refresh_token".to_string(), refresh.clone()),
        ]
    };
    let post = |f: Vec<(String, String)>| {
        slack.send(slack.http.post(slack.url("oauth.v2.access")).form(&f))
    };
    assert_eq!(
        post(form("123.456", &app.client_secret, "refresh_token"))
            .await
            .error(),
        "invalid_client_id"
    );
    assert_eq!(
        post(form(&app.client_id, "wrong", "refresh_token"))
            .await
            .error(),
        "bad_client_secret"
    );
    assert_eq!(
        post(form(&app.client_id, &app.client_secret, "password"))
            .await
            .error(),
        "invalid_grant_type"
    );
    // Another app cannot spend this app's refresh token.
    assert_eq!(
        post(form(
            &other.client_id,
            &other.client_secret,
            "refresh_token"
        ))
        .await
        .error(),
        "invalid_refresh_token"
    );
    // None of the failures above spent the token.
    slack.refresh(&app, &refresh).await.ok();
}

#[tokio::test]
async fn config_token_rotation_is_single_use() {
    let slack = Slack::start().await;
    let cfg = slack.emu.create_config_token("T1", "U1");
    assert!(cfg.token.starts_with("xoxe.xoxp-1-"));
    assert!(cfg.refresh_token.starts_with("xoxe-1-"));
    let v = slack
        .call(
            "tooling.tokens.rotate",
            &[("refresh_token", &cfg.refresh_token)],
        )
        .await
        .ok();
    assert!(s(&v["token"]).starts_with("xoxe.xoxp-1-"));
    assert!(s(&v["refresh_token"]).starts_with("xoxe-1-"));
    assert_eq!(v["team_id"], "T1");
    assert_eq!(v["user_id"], "U1");
    let (iat, exp) = (v["iat"].as_i64().unwrap(), v["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 43_200);
    assert!(exp >= cfg.exp);
    let again = slack
        .call(
            "tooling.tokens.rotate",
            &[("refresh_token", &cfg.refresh_token)],
        )
        .await;
    assert_eq!(again.error(), "invalid_refresh_token");
    let chain = slack
        .emu
        .installation_of(&cfg.refresh_token)
        .expect("config chain id");
    assert_eq!(slack.emu.broken_chains(), vec![chain.clone()]);
    assert_eq!(slack.emu.refreshes(&chain), 1);
    // The new refresh token continues the chain.
    slack
        .call(
            "tooling.tokens.rotate",
            &[("refresh_token", &s(&v["refresh_token"]))],
        )
        .await
        .ok();
}

#[tokio::test]
async fn rotation_refresh_token_is_not_a_config_refresh_token() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    let cfg = slack.emu.create_config_token("T1", "U1");
    let r = slack
        .call(
            "tooling.tokens.rotate",
            &[("refresh_token", inst.refresh_token.as_deref().unwrap())],
        )
        .await;
    assert_eq!(r.error(), "invalid_refresh_token");
    assert_eq!(
        slack.refresh(&app, &cfg.refresh_token).await.error(),
        "invalid_refresh_token"
    );
    let r = slack.call("tooling.tokens.rotate", &[]).await;
    assert_eq!(r.error(), "invalid_refresh_token");
}

#[tokio::test]
async fn authorization_code_flow_is_not_emulated() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let r = slack
        .call(
            "oauth.v2.access",
            &[
                ("client_id", &app.client_id),
                ("client_secret", &app.client_secret),
                ("code", "123"),
            ],
        )
        .await;
    assert_eq!(r.error(), "invalid_code");
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_break_the_chain() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    let refresh = inst.refresh_token.unwrap();
    let (a, b) = tokio::join!(slack.refresh(&app, &refresh), slack.refresh(&app, &refresh));
    let oks = [&a, &b].iter().filter(|r| r.json()["ok"] == true).count();
    assert_eq!(
        oks, 1,
        "exactly one of two racing refreshes wins: {a:?} {b:?}"
    );
    assert_eq!(slack.emu.broken_chains(), vec![inst.id.clone()]);
    assert_eq!(slack.emu.refreshes(&inst.id), 1);
}

#[tokio::test]
async fn installing_a_hand_made_app_registers_it() {
    let slack = Slack::start().await;
    let app = slack_emulator::App {
        app_id: "AHAND".into(),
        client_id: "111.222".into(),
        client_secret: "s3cret".into(),
        token_rotation: true,
    };
    let inst = slack.emu.install(&app, "T1", TokenKind::User);
    slack
        .refresh(&app, inst.refresh_token.as_deref().unwrap())
        .await
        .ok();
    assert_eq!(slack.emu.refreshes(&inst.id), 1);
    assert_eq!(slack.emu.refreshes("nope"), 0);
}
