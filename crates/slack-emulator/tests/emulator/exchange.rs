//! oauth.v2.exchange: moving a long-lived xoxb-/xoxp- token onto rotation.

use slack_emulator::TokenKind;

use crate::common::{s, Slack};

#[tokio::test]
async fn install_without_rotation_gives_long_lived_token() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(false);
    let bot = slack.emu.install(&app, "T1", TokenKind::Bot);
    assert!(bot.access_token.starts_with("xoxb-"));
    assert_eq!(bot.refresh_token, None);
    assert_eq!(bot.expires_in, None);
    let user = slack.emu.install(&app, "T1", TokenKind::User);
    assert!(user.access_token.starts_with("xoxp-"));
    let v = slack.auth_test(&bot.access_token).await.ok();
    assert!(v.get("expires_in").is_none(), "{v}");
}

#[tokio::test]
async fn exchange_works_once_per_token() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(false);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    let app = slack.emu.enable_token_rotation(&app);
    assert!(app.token_rotation);
    let v = slack.exchange(&app, &inst.access_token).await.ok();
    assert!(s(&v["access_token"]).starts_with("xoxe.xoxb-1-"), "{v}");
    assert!(s(&v["refresh_token"]).starts_with("xoxe-1-"));
    assert_eq!(v["expires_in"], 43_200);
    assert_eq!(v["token_type"], "bot");
    assert_eq!(v["team"]["id"], "T1");
    assert_eq!(
        slack.emu.installation_of(&s(&v["access_token"])),
        Some(inst.id.clone())
    );
    assert_eq!(
        slack.exchange(&app, &inst.access_token).await.error(),
        "token_already_exchanged"
    );
    // The exchanged chain refreshes like any other.
    slack.refresh(&app, &s(&v["refresh_token"])).await.ok();
}

#[tokio::test]
async fn exchange_requires_rotation_enabled() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(false);
    let inst = slack.emu.install(&app, "T1", TokenKind::User);
    assert_eq!(
        slack.exchange(&app, &inst.access_token).await.error(),
        "token_rotation_not_enabled"
    );
    // Still exchangeable once rotation is on.
    let app = slack.emu.enable_token_rotation(&app);
    let v = slack.exchange(&app, &inst.access_token).await.ok();
    assert!(s(&v["access_token"]).starts_with("xoxe.xoxp-1-"));
    assert_eq!(v["token_type"], "user");
}

#[tokio::test]
async fn exchange_rejects_tokens_it_cannot_exchange() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let other = slack.emu.create_app(false);
    let other_inst = slack.emu.install(&other, "T1", TokenKind::Bot);
    let rotating = slack.emu.install(&app, "T1", TokenKind::Bot);
    let legacy = slack.emu.create_legacy_token("T1", "U1", TokenKind::User);
    assert_eq!(
        slack.exchange(&app, "xoxb-unknown").await.error(),
        "invalid_token"
    );
    assert_eq!(
        slack.exchange(&app, &rotating.access_token).await.error(),
        "invalid_token"
    );
    assert_eq!(slack.exchange(&app, &legacy).await.error(), "invalid_token");
    assert_eq!(
        slack.exchange(&app, &other_inst.access_token).await.error(),
        "invalid_token"
    );
    let r = slack
        .call(
            "oauth.v2.exchange",
            &[
                ("client_id", &app.client_id),
                ("client_secret", "nope"),
                ("token", &legacy),
            ],
        )
        .await;
    assert_eq!(r.error(), "bad_client_secret");
    let r = slack.call("oauth.v2.exchange", &[("token", &legacy)]).await;
    assert_eq!(r.error(), "invalid_client_id");
}

#[tokio::test]
async fn long_lived_token_stops_after_first_refresh_of_exchanged_chain() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(false);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    let app = slack.emu.enable_token_rotation(&app);
    // Turning rotation on alone does not touch the long-lived token.
    slack.auth_test(&inst.access_token).await.ok();
    let v = slack.exchange(&app, &inst.access_token).await.ok();
    // Exchanging does not either: consumers can move over at their pace.
    slack.auth_test(&inst.access_token).await.ok();
    slack.refresh(&app, &s(&v["refresh_token"])).await.ok();
    assert_eq!(
        slack.auth_test(&inst.access_token).await.error(),
        "token_expired"
    );
    assert!(!slack.emu.token_is_valid(&inst.access_token));
    assert!(!slack.emu.is_revoked(&inst.access_token));
}

#[tokio::test]
async fn revoking_long_lived_token_before_refresh_loses_the_installation() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(false);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    let app = slack.emu.enable_token_rotation(&app);
    let v = slack.exchange(&app, &inst.access_token).await.ok();
    let r = slack
        .call("auth.revoke", &[("token", &inst.access_token)])
        .await
        .ok();
    assert_eq!(r["revoked"], true);
    assert_eq!(
        slack.auth_test(&s(&v["access_token"])).await.error(),
        "token_revoked"
    );
    assert_eq!(
        slack.refresh(&app, &s(&v["refresh_token"])).await.error(),
        "invalid_refresh_token"
    );
}
