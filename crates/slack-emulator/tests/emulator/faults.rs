//! Rate limits, injected faults and outages.

use std::time::Duration;

use slack_emulator::{Fault, TokenKind};

use crate::common::Slack;

#[tokio::test(start_paused = true)]
async fn rate_limit_answers_429_with_retry_after() {
    let slack = Slack::start().await;
    let token = slack.emu.create_legacy_token("T1", "U1", TokenKind::Bot);
    slack.emu.set_rate_limit("auth.test", 2);
    slack.auth_test(&token).await.ok();
    slack.auth_test(&token).await.ok();
    let r = slack.auth_test(&token).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.error(), "ratelimited");
    let secs: u64 = r.retry_after.as_deref().expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
    // Other methods have their own limits.
    slack.call("auth.revoke", &[("token", &token), ("test", "1")]).await.ok();
    tokio::time::advance(Duration::from_secs(secs)).await;
    slack.auth_test(&token).await.ok();
    assert_eq!(slack.emu.calls("auth.test"), 4);
    slack.emu.set_rate_limit("auth.test", 0);
    for _ in 0..5 {
        slack.auth_test(&token).await.ok();
    }
}

#[tokio::test]
async fn injected_fault_answers_once() {
    let slack = Slack::start().await;
    let token = slack.emu.create_legacy_token("T1", "U1", TokenKind::Bot);
    slack.emu.fail_next("auth.test", 1, Fault::Http(502));
    let r = slack.auth_test(&token).await;
    assert_eq!(r.status, 502);
    assert!(serde_json::from_str::<serde_json::Value>(&r.text).is_err(), "gateway errors are not JSON");
    slack.auth_test(&token).await.ok();
    assert_eq!(slack.emu.calls("auth.test"), 2);
}

#[tokio::test]
async fn faults_are_queued_per_method_then_wildcard() {
    let slack = Slack::start().await;
    let token = slack.emu.create_legacy_token("T1", "U1", TokenKind::Bot);
    slack.emu.fail_next("*", 1, Fault::SlackError("fatal_error".into()));
    slack.emu.fail_next("auth.test", 2, Fault::SlackError("internal_error".into()));
    assert_eq!(slack.auth_test(&token).await.error(), "internal_error");
    assert_eq!(slack.auth_test(&token).await.error(), "internal_error");
    let r = slack.call("auth.revoke", &[("token", &token), ("test", "1")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.error(), "fatal_error");
    slack.auth_test(&token).await.ok();
}

#[tokio::test]
async fn injected_rate_limit_and_malformed_json() {
    let slack = Slack::start().await;
    let token = slack.emu.create_legacy_token("T1", "U1", TokenKind::Bot);
    slack.emu.fail_next("auth.test", 1, Fault::RateLimited { retry_after_secs: 7 });
    slack.emu.fail_next("auth.test", 1, Fault::MalformedJson);
    let r = slack.auth_test(&token).await;
    assert_eq!((r.status.as_u16(), r.retry_after.as_deref()), (429, Some("7")));
    assert_eq!(r.error(), "ratelimited");
    let r = slack.auth_test(&token).await;
    assert_eq!(r.status, 200);
    assert!(serde_json::from_str::<serde_json::Value>(&r.text).is_err());
}

#[tokio::test]
async fn body_fault_answers_that_json_and_spends_nothing() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    let refresh = inst.refresh_token.as_deref().unwrap();
    slack.emu.fail_next(
        "oauth.v2.access",
        1,
        Fault::Body(serde_json::json!({"ok": true, "access_token": "x"})),
    );
    let r = slack.refresh(&app, refresh).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!({"ok": true, "access_token": "x"}));
    assert_eq!(slack.emu.refreshes(&inst.id), 0, "the call was not made");
    assert!(slack.emu.token_is_valid(refresh), "the refresh token is not spent");
}

#[tokio::test]
async fn amend_fault_changes_a_real_answer() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    let changes = serde_json::json!({"expires_in": null, "scope": "changed"});
    slack.emu.fail_next("oauth.v2.access", 1, Fault::Amend(changes.as_object().unwrap().clone()));
    let body = slack.refresh(&app, inst.refresh_token.as_deref().unwrap()).await.json();
    assert!(body.get("expires_in").is_none(), "{body}");
    assert_eq!(body["scope"], "changed");
    assert_eq!(slack.emu.refreshes(&inst.id), 1, "the call was made");
    let issued = body["access_token"].as_str().unwrap();
    assert!(slack.emu.token_is_valid(issued), "the tokens in the answer are real");
    // An error answer is left alone.
    slack.emu.fail_next("oauth.v2.access", 1, Fault::Amend(changes.as_object().unwrap().clone()));
    assert_eq!(slack.refresh(&app, "xoxe-1-unknown").await.error(), "invalid_refresh_token");
}

#[tokio::test(start_paused = true)]
async fn delay_fault_answers_late() {
    let slack = Slack::start().await;
    let token = slack.emu.create_legacy_token("T1", "U1", TokenKind::Bot);
    slack.emu.fail_next("auth.test", 1, Fault::Delay(Duration::from_secs(30)));
    let start = tokio::time::Instant::now();
    slack.auth_test(&token).await.ok();
    assert!(start.elapsed() >= Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn hang_fault_never_answers() {
    let slack = Slack::start().await;
    let token = slack.emu.create_legacy_token("T1", "U1", TokenKind::Bot);
    slack.emu.fail_next("auth.test", 1, Fault::Hang);
    let hung = tokio::time::timeout(Duration::from_secs(600), slack.auth_test(&token)).await;
    assert!(hung.is_err(), "a hanging request must time out on the client");
    // The next request is answered normally.
    slack.auth_test(&token).await.ok();
}

#[tokio::test]
async fn outage_answers_503() {
    let slack = Slack::start().await;
    let app = slack.emu.create_app(true);
    let inst = slack.emu.install(&app, "T1", TokenKind::Bot);
    slack.emu.set_outage(true);
    assert_eq!(slack.auth_test(&inst.access_token).await.status, 503);
    assert_eq!(slack.refresh(&app, inst.refresh_token.as_deref().unwrap()).await.status, 503);
    slack.emu.set_outage(false);
    // The refresh during the outage did not spend the token.
    slack.refresh(&app, inst.refresh_token.as_deref().unwrap()).await.ok();
    assert_eq!(slack.emu.calls("oauth.v2.access"), 2);
}

#[tokio::test]
async fn dropping_the_emulator_stops_the_server() {
    let slack = Slack::start().await;
    let url = slack.url("auth.test");
    let http = slack.http.clone();
    drop(slack);
    // Graceful shutdown is asynchronous: wait until the listener is gone (bounded, no sleeping).
    let mut refused = false;
    for _ in 0..100 {
        if http.post(&url).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "server still answering after drop");
}
