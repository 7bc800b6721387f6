//! End-to-end: every token kind of Slack's help article, onboarding onto rotation, rotate-now
//! and revoke-on-delete.

mod support;

use kube::api::{DeleteParams, Patch, PatchParams};
use secrecy::SecretString;
use serde_json::json;
use slack_emulator::{Fault, TokenKind};
use slack_token_operator::SlackClient;
use support::{e2e, token_yaml, TestEnv};

fn period(env: &TestEnv) -> String {
    slack_token_operator::GoDuration(env.ttl() / 2).to_string()
}

async fn manual_token(env: &TestEnv, name: &str, kind: &str, token: &str) {
    env.manual_token(name, token, &format!("rotationPeriod: {}\nmanual:\n  kind: {kind}", period(env))).await;
}

async fn annotate(env: &TestEnv, name: &str, key: &str, value: &str) {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    env.tokens().patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

#[test]
fn manual_token_due_shows_rotation_due_with_the_steps_for_its_kind() {
    e2e(|env| async move {
        let kinds = [
            ("legacy", "LegacyTestToken", "legacy-tokens", TokenKind::User),
            ("bot", "CustomIntegrationBot", "custom-integrations", TokenKind::Bot),
            ("hubot", "HubotLita", "Regenerate", TokenKind::Bot),
            ("app", "App", "reinstall", TokenKind::Bot),
        ];
        for (name, kind, _, token_kind) in kinds {
            let token = env.slack.create_legacy_token("T1", &format!("U{name}"), token_kind);
            manual_token(&env, name, kind, &token).await;
            assert_eq!(env.published_token(&format!("{name}-token"), None).await, token);
            let (reason, _) = env.condition(name, "RotationDue", "False").await;
            assert_eq!(reason, "NotDue");
        }
        env.advance(env.ttl() / 2 + env.ttl() / 30).await;
        for (name, _, step, _) in kinds {
            let (_, message) = env.condition(name, "RotationDue", "True").await;
            assert!(message.contains(step), "{name}: {message}");
            assert!(message.contains("pendingToken"), "{name}: {message}");
            let (reason, _) = env.ready(name, "True").await;
            assert_eq!(reason, "TokenPublished", "the token still works");
            assert!(env.event_reasons(name).await.contains(&"RotationDue".to_owned()));
        }
        // Once due, the controller waits for a person: no busy reconciles.
        let reconciles = env.ctx.metrics().reconciles.get();
        env.advance(env.ctx.settings().health_check_interval / 2).await;
        assert_eq!(env.ctx.metrics().reconciles.get(), reconciles, "idle while due");
    });
}

#[test]
fn good_pending_token_is_published_and_the_old_one_revoked() {
    e2e(|env| async move {
        let old = env.slack.create_legacy_token("T1", "U1", TokenKind::User);
        manual_token(&env, "legacy", "LegacyTestToken", &old).await;
        env.published_token("legacy-token", None).await;
        env.ready("legacy", "True").await;
        let new = env.slack.create_legacy_token("T1", "U1", TokenKind::User);
        let patch = json!({"stringData": {"pendingToken": new}});
        env.secrets().patch("legacy-creds", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        assert_eq!(env.published_token("legacy-token", Some(&old)).await, new);
        env.eventually("old token revoked", env.patience(), || async {
            env.slack.is_revoked(&old).then_some(())
        })
        .await;
        env.eventually("pendingToken moved to accessToken", env.patience(), || async {
            let access = env.secret_value("legacy-creds", "accessToken").await?;
            let pending = env.secret_value("legacy-creds", "pendingToken").await;
            (access == new && pending.is_none()).then_some(())
        })
        .await;
        assert!(env.slack.token_is_valid(&new));
        env.condition("legacy", "RotationDue", "False").await;
        env.eventually("hand-over counted", env.patience(), || async {
            (env.status("legacy").await.rotation_count == 1).then_some(())
        })
        .await;
    });
}

#[test]
fn pending_token_from_another_team_is_refused_and_nothing_changes() {
    e2e(|env| async move {
        let old = env.slack.create_legacy_token("T1", "U1", TokenKind::Bot);
        manual_token(&env, "bot", "CustomIntegrationBot", &old).await;
        env.published_token("bot-token", None).await;
        let foreign = env.slack.create_legacy_token("T2", "U1", TokenKind::Bot);
        let patch = json!({"stringData": {"pendingToken": foreign}});
        env.secrets().patch("bot-creds", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        let (reason, message) = env.condition("bot", "PendingToken", "False").await;
        assert_eq!(reason, "PendingTokenRejected");
        assert!(message.contains("T2") && message.contains("T1"), "{message}");
        assert!(!message.contains(&foreign), "no token text in status");
        assert_eq!(env.secret_value("bot-token", "token").await.as_deref(), Some(old.as_str()));
        assert_eq!(env.secret_value("bot-creds", "accessToken").await.as_deref(), Some(old.as_str()));
        assert_eq!(env.secret_value("bot-creds", "pendingToken").await.as_deref(), Some(foreign.as_str()));
        assert!(!env.slack.is_revoked(&old));
        assert!(env.event_reasons("bot").await.contains(&"PendingTokenRejected".to_owned()));
    });
}

#[test]
fn pending_token_of_another_user_needs_allow_identity_change() {
    e2e(|env| async move {
        let old = env.slack.create_legacy_token("T1", "U1", TokenKind::User);
        let spec = format!("rotationPeriod: {}\nmanual:\n  kind: LegacyTestToken", period(&env));
        env.manual_token("legacy", &old, &spec).await;
        env.published_token("legacy-token", None).await;
        let other_user = env.slack.create_legacy_token("T1", "U2", TokenKind::User);
        let patch = json!({"stringData": {"pendingToken": other_user}});
        env.secrets().patch("legacy-creds", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();

        // Refused while the identity may not change: nothing published, the condition says how.
        let (reason, message) = env.condition("legacy", "PendingToken", "False").await;
        assert_eq!(reason, "PendingTokenRejected");
        assert!(message.contains("allowIdentityChange: true"), "{message}");
        assert_eq!(env.secret_value("legacy-token", "token").await.as_deref(), Some(old.as_str()));

        // Allowed: the same pending token is taken.
        let allow = json!({"spec": {"manual": {"allowIdentityChange": true}}});
        env.tokens().patch("legacy", &PatchParams::default(), &Patch::Merge(&allow)).await.unwrap();
        assert_eq!(env.published_token("legacy-token", Some(&old)).await, other_user);
    });
}

#[test]
fn revoked_long_lived_token_is_detected_by_the_health_check() {
    e2e(|env| async move {
        let token = env.slack.create_legacy_token("T1", "U1", TokenKind::Bot);
        manual_token(&env, "hubot", "HubotLita", &token).await;
        env.ready("hubot", "True").await;
        let slack = SlackClient::new(&env.slack.base_url()).unwrap();
        assert!(slack.revoke(&SecretString::from(token.clone())).await.unwrap());
        env.advance(env.ctx.settings().health_check_interval + env.ttl() / 30).await;
        let (reason, message) = env.ready("hubot", "False").await;
        assert_eq!(reason, "TokenRevoked");
        assert!(message.contains("pendingToken"), "{message}");
    });
}

#[test]
fn exchange_moves_a_long_lived_token_onto_rotation_without_revoking_it() {
    e2e(|env| async move {
        let app = env.slack.create_app(false);
        let install = env.slack.install(&app, "T1", TokenKind::Bot);
        let app = env.slack.enable_token_rotation(&app);
        let legacy = install.access_token.clone();
        env.create_secret(
            "bot-creds",
            &[("clientId", &app.client_id), ("clientSecret", &app.client_secret), ("legacyToken", &legacy)],
        )
        .await;
        env.create_token(&token_yaml("bot", "OAuth", "")).await;
        let rotating = env.published_token("bot-token", None).await;
        assert!(rotating.starts_with("xoxe.xoxb-"), "a rotating token is published");
        assert_eq!(env.slack.calls("oauth.v2.exchange"), 1);
        assert!(!env.slack.is_revoked(&legacy), "the long-lived token must not be revoked after an exchange");
        assert!(env.secret_value("bot-creds", "refreshToken").await.is_some());
        assert!(env.secret_value("bot-creds", "legacyToken").await.is_none(), "legacyToken dropped");
        env.ready("bot", "True").await;

        // From here on it is an ordinary rotating token.
        env.advance(env.until_next_rotation("bot").await + env.ttl() / 30).await;
        env.published_token("bot-token", Some(&rotating)).await;
        assert_eq!(env.slack.calls("oauth.v2.exchange"), 1);
        assert!(env.slack.broken_chains().is_empty());
    });
}

#[test]
fn exchange_errors_say_what_to_do_in_the_slack_app_settings() {
    e2e(|env| async move {
        // Rotation still off in the app.
        let off = env.slack.create_app(false);
        let off_token = env.slack.install(&off, "T1", TokenKind::Bot).access_token;
        // Already exchanged once, out of band.
        let on = env.slack.create_app(false);
        let done_token = env.slack.install(&on, "T1", TokenKind::Bot).access_token;
        let on = env.slack.enable_token_rotation(&on);
        let slack = SlackClient::new(&env.slack.base_url()).unwrap();
        let secret = SecretString::from(on.client_secret.clone());
        slack.exchange(&on.client_id, &secret, &SecretString::from(done_token.clone())).await.unwrap();
        let cases = [
            ("off", &off, off_token.as_str(), "token rotation"),
            ("done", &on, done_token.as_str(), "already exchanged"),
            ("unknown", &on, "xoxb-unknown", "legacyToken"),
        ];
        for (name, app, token, _) in cases {
            env.create_secret(
                &format!("{name}-creds"),
                &[("clientId", &app.client_id), ("clientSecret", &app.client_secret), ("legacyToken", token)],
            )
            .await;
            env.create_token(&token_yaml(name, "OAuth", "")).await;
        }
        for (name, _, _, hint) in cases {
            let (reason, message) = env.ready(name, "False").await;
            assert_eq!(reason, "ExchangeFailed", "{name}: {message}");
            assert!(message.contains(hint), "{name}: {message}");
        }
    });
}

#[test]
fn rotate_now_annotation_fires_once_per_value() {
    e2e(|env| async move {
        let f = env.oauth_token("bot", "").await;
        let first = env.published_token(&f.output(), None).await;
        annotate(&env, "bot", "slack.rotator.dev/rotate", "1").await;
        let second = env.published_token(&f.output(), Some(&first)).await;
        env.eventually("request recorded", env.patience(), || async {
            (env.status("bot").await.last_rotate_request.as_deref() == Some("1")).then_some(())
        })
        .await;
        // Any other change wakes the controller; the handled value must not fire again.
        annotate(&env, "bot", "unrelated", "x").await;
        // A shorter renewBefore than the default (a third of the lifetime): not due any sooner.
        let renew = slack_token_operator::GoDuration(env.ttl() / 4);
        let patch = json!({"spec": {"renewBefore": renew.to_string()}});
        env.tokens().patch("bot", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        env.advance(env.ttl() / 30).await;
        assert_eq!(env.slack.refreshes(&f.installation_id), 2);
        annotate(&env, "bot", "slack.rotator.dev/rotate", "2").await;
        env.published_token(&f.output(), Some(&second)).await;
        assert_eq!(env.slack.refreshes(&f.installation_id), 3);
    });
}

#[test]
#[cfg_attr(e2e_real_cluster, ignore = "needs the emulator's fault injection")]
fn rotate_now_fires_once_even_while_status_cannot_be_written() {
    // The handled value is also saved with the new tokens: if it lived only in status, a status
    // that cannot be written (API server trouble, RBAC without slacktokens/status) would make
    // every retry rotate again, each revoking a token a consumer may still use.
    e2e(|env| async move {
        let faults = env.fault_injection();
        let (f, first) = env.ready_bot().await;
        faults.fail_next(kube_emulator::Verb::Patch, "slacktokens", Some("status"), 1000, 500);
        annotate(&env, "bot", "slack.rotator.dev/rotate", "1").await;
        env.published_token(&f.output(), Some(&first)).await;
        env.advance(env.ttl() / 30).await; // many status retries
        assert_eq!(env.slack.refreshes(&f.installation_id), 2, "one rotation for one request");
        faults.clear();
        env.eventually("request recorded", env.patience(), || async {
            (env.status("bot").await.last_rotate_request.as_deref() == Some("1")).then_some(())
        })
        .await;
        assert_eq!(env.slack.refreshes(&f.installation_id), 2);
    });
}

#[test]
fn revoke_on_delete_revokes_the_token_then_releases_the_finalizer() {
    e2e(|env| async move {
        let f = env.oauth_token("bot", "revokeOnDelete: true").await;
        let token = env.published_token(&f.output(), None).await;
        env.eventually("finalizer added", env.patience(), || async {
            let t = env.tokens().get("bot").await.ok()?;
            t.metadata.finalizers?.contains(&"slack.rotator.dev/revoke-on-delete".to_owned()).then_some(())
        })
        .await;
        wait_held(&env, &f.creds(), true).await;
        env.tokens().delete("bot", &DeleteParams::default()).await.unwrap();
        env.eventually("SlackToken gone", env.patience(), || async {
            env.tokens().get_opt("bot").await.ok()?.is_none().then_some(())
        })
        .await;
        assert!(env.slack.is_revoked(&token));
        assert!(!held(&env, &f.creds()).await, "credentials released with the SlackToken");
    });
}

const REVOKE_FINALIZER: &str = "slack.rotator.dev/revoke-on-delete";

/// Whether Secret `name` carries the revokeOnDelete finalizer.
async fn held(env: &TestEnv, name: &str) -> bool {
    let secret = env.secrets().get_opt(name).await.unwrap();
    secret.and_then(|s| s.metadata.finalizers).is_some_and(|f| f.contains(&REVOKE_FINALIZER.to_owned()))
}

async fn wait_held(env: &TestEnv, name: &str, want: bool) {
    env.eventually(&format!("Secret {name} held: {want}"), env.patience(), || async {
        (held(env, name).await == want).then_some(())
    })
    .await;
}

#[test]
fn revoke_on_delete_still_revokes_when_the_whole_namespace_is_deleted() {
    // Deleting a namespace deletes the SlackToken and its credentials Secret together. The
    // Secret's finalizer keeps the token readable until it is revoked.
    e2e(|env| async move {
        let f = env.oauth_token("bot", "revokeOnDelete: true").await;
        let token = env.published_token(&f.output(), None).await;
        wait_held(&env, &f.creds(), true).await;
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(env.client.clone());
        namespaces.delete(&env.ns, &DeleteParams::default()).await.unwrap();
        env.eventually("token revoked", env.patience(), || async {
            env.slack.is_revoked(&token).then_some(())
        })
        .await;
        env.eventually("namespace gone", env.patience() * 2, || async {
            namespaces.get_opt(&env.ns).await.ok()?.is_none().then_some(())
        })
        .await;
    });
}

#[test]
fn credentials_are_held_only_while_revoke_on_delete_wants_them() {
    e2e(|env| async move {
        let f = env.oauth_token("bot", "revokeOnDelete: true").await;
        env.published_token(&f.output(), None).await;
        wait_held(&env, &f.creds(), true).await;
        // Move the SlackToken onto a copy of its credentials: the old Secret is let go.
        let data = env.secrets().get(&f.creds()).await.unwrap().data.unwrap_or_default();
        let pairs: Vec<(String, String)> =
            data.into_iter().map(|(k, v)| (k, String::from_utf8(v.0).unwrap())).collect();
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.create_secret("bot-creds-2", &pairs).await;
        let patch = json!({"spec": {"credentialsRef": {"name": "bot-creds-2"}}});
        env.tokens().patch("bot", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        wait_held(&env, "bot-creds-2", true).await;
        wait_held(&env, &f.creds(), false).await;
        // Turning revokeOnDelete off lets go of both the credentials and the SlackToken.
        let patch = json!({"spec": {"revokeOnDelete": false}});
        env.tokens().patch("bot", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        wait_held(&env, "bot-creds-2", false).await;
        env.eventually("SlackToken finalizer removed", env.patience(), || async {
            env.tokens()
                .get("bot")
                .await
                .ok()?
                .metadata
                .finalizers
                .unwrap_or_default()
                .is_empty()
                .then_some(())
        })
        .await;
    });
}

#[test]
fn revoke_on_delete_waits_out_a_slack_outage_and_can_be_skipped() {
    e2e(|env| async move {
        let f = env.oauth_token("bot", "revokeOnDelete: true").await;
        let token = env.published_token(&f.output(), None).await;
        env.eventually("finalizer added", env.patience(), || async {
            env.tokens().get("bot").await.ok()?.metadata.finalizers.map(|_| ())
        })
        .await;
        env.slack.fail_next("auth.revoke", 1000, Fault::Http(503));
        env.tokens().delete("bot", &DeleteParams::default()).await.unwrap();
        let (reason, _) = env.ready("bot", "False").await;
        assert_eq!(reason, "SlackUnavailable");
        assert!(env.tokens().get_opt("bot").await.unwrap().is_some(), "held while the token is not revoked");
        annotate(&env, "bot", "slack.rotator.dev/skip-revoke", "true").await;
        env.eventually("SlackToken gone", env.patience(), || async {
            env.tokens().get_opt("bot").await.ok()?.is_none().then_some(())
        })
        .await;
        assert!(!env.slack.is_revoked(&token), "skipped on request");
        assert!(!held(&env, &f.creds()).await, "the escape releases the credentials too");
    });
}
