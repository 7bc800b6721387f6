//! The operator's Slack client against the Slack emulator: every answer class is recognised.

use secrecy::{ExposeSecret, SecretString};
use slack_emulator::{Fault, SlackEmulator, TokenKind};
use slack_token_operator::{SlackClient, SlackError};
use std::time::Duration;

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

async fn setup() -> (SlackEmulator, SlackClient) {
    let slack = SlackEmulator::start().await.unwrap();
    let client = SlackClient::new(&slack.base_url()).unwrap();
    (slack, client)
}

#[tokio::test(start_paused = true)]
async fn refresh_returns_a_new_pair_and_spends_the_old_refresh_token() {
    let (slack, client) = setup().await;
    let app = slack.create_app(true);
    let install = slack.install(&app, "T1", TokenKind::Bot);
    let refresh = secret(install.refresh_token.as_deref().unwrap());
    let issued = client.refresh_oauth(&app.client_id, &secret(&app.client_secret), &refresh).await.unwrap();
    assert!(slack.token_is_valid(issued.access_token.expose_secret()));
    assert_eq!(issued.expires_in, Some(Duration::from_secs(12 * 3600)));
    assert_eq!(issued.identity.team_id.as_deref(), Some("T1"));
    let again =
        client.refresh_oauth(&app.client_id, &secret(&app.client_secret), &refresh).await.unwrap_err();
    assert_eq!(again.code(), Some("invalid_refresh_token"));
    assert!(!again.is_transient());
}

#[tokio::test(start_paused = true)]
async fn rate_limit_is_transient_and_carries_retry_after() {
    let (slack, client) = setup().await;
    slack.fail_next("tooling.tokens.rotate", 1, Fault::RateLimited { retry_after_secs: 42 });
    let err = client.rotate_config_token(&secret("xoxe-1-x")).await.unwrap_err();
    assert!(matches!(err, SlackError::RateLimited { .. }));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(42)));
    assert!(err.is_transient());
}

#[tokio::test(start_paused = true)]
async fn server_errors_malformed_answers_and_internal_errors_are_transient() {
    let (slack, client) = setup().await;
    let t = secret("xoxb-unknown");
    slack.fail_next("auth.test", 1, Fault::Http(503));
    assert!(matches!(client.auth_test(&t).await.unwrap_err(), SlackError::Http { status: 503, .. }));
    slack.fail_next("auth.test", 1, Fault::MalformedJson);
    assert!(matches!(client.auth_test(&t).await.unwrap_err(), SlackError::Decode { .. }));
    slack.fail_next("auth.test", 1, Fault::SlackError("internal_error".into()));
    assert!(client.auth_test(&t).await.unwrap_err().is_transient());
    assert_eq!(client.auth_test(&t).await.unwrap_err().code(), Some("invalid_auth"));
}

#[tokio::test(start_paused = true)]
async fn a_hanging_slack_times_out_and_says_so() {
    let (slack, client) = setup().await;
    slack.fail_next("auth.test", 1, Fault::Hang);
    let err = client.auth_test(&secret("xoxb-x")).await.unwrap_err();
    assert!(matches!(err, SlackError::Timeout { .. }), "{err:?}");
    assert_eq!(err.to_string(), "Slack did not answer auth.test within 15s");
    assert!(err.is_transient());
}

#[tokio::test(start_paused = true)]
async fn error_messages_never_contain_the_token() {
    let (slack, client) = setup().await;
    let app = slack.create_app(true);
    let err = client
        .refresh_oauth(&app.client_id, &secret("wrong-secret-value"), &secret("xoxe-1-SECRETVALUE"))
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("SECRETVALUE") && !text.contains("wrong-secret-value"), "{text}");
    assert_eq!(err.code(), Some("bad_client_secret"));
}

#[tokio::test(start_paused = true)]
async fn auth_test_and_revoke_work_on_a_long_lived_token() {
    let (slack, client) = setup().await;
    let token = slack.create_legacy_token("T9", "U9", TokenKind::User);
    let who = client.auth_test(&secret(&token)).await.unwrap();
    assert_eq!(who.team_id.as_deref(), Some("T9"));
    assert_eq!(who.user_id.as_deref(), Some("U9"));
    assert!(client.revoke(&secret(&token)).await.unwrap());
    assert!(slack.is_revoked(&token));
    assert_eq!(client.auth_test(&secret(&token)).await.unwrap_err().code(), Some("token_revoked"));
    // Revoking it again is not an error: nothing is left to revoke, and this call revoked nothing.
    assert!(!client.revoke(&secret(&token)).await.unwrap());
}
