//! End-to-end: the real controller rotating tokens against the emulators (or a real cluster when
//! `E2E_KUBECONFIG` is set). Time is tokio's paused clock against the emulator.

mod support;

use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use slack_emulator::Fault;
use slack_token_operator::default_renew_before;
use std::time::Duration;
use support::{e2e, Captured, TestEnv};

const OAUTH: &str = "oauth.v2.access";

/// How long after issue a default-scheduled token is rotated.
fn due_after(env: &TestEnv) -> Duration {
    env.ttl() - default_renew_before(Some(env.ttl()))
}

/// A small slice of the token lifetime, for "just before" / "just after".
fn margin(env: &TestEnv) -> Duration {
    env.ttl() / 30
}

#[test]
fn first_token_is_published_at_once() {
    e2e(|env| async move {
        let f = env.oauth_token("bot", "").await;
        let token = env.published_token(&f.output(), None).await;
        assert!(token.starts_with("xoxe.xoxb-"), "a rotated bot token is published");
        assert!(env.slack.token_is_valid(&token));
        assert_eq!(env.slack.refreshes(&f.installation_id), 1);
        let (reason, _) = env.ready("bot", "True").await;
        assert_eq!(reason, "TokenPublished");
        let status = env.status("bot").await;
        assert_eq!(status.rotation_count, 1);
        assert!(status.identity.and_then(|i| i.team_id).is_some(), "identity recorded");
        let saved = env.saved_refresh_token(&f).await.expect("refresh token saved");
        assert!(saved.starts_with("xoxe-1-"));
        assert!(env.slack.broken_chains().is_empty());
    });
}

#[test]
fn rotates_at_the_due_time_and_not_before() {
    e2e(|env| async move {
        let (f, first) = env.ready_bot().await;
        let renew = default_renew_before(Some(env.ttl()));
        assert_eq!(env.times("bot").await.renew_before(), Some(renew), "rotates renewBefore ahead");

        let wait = env.until_next_rotation("bot").await;
        env.advance(wait - margin(&env)).await;
        assert_eq!(env.slack.refreshes(&f.installation_id), 1, "no rotation before the due time");
        assert_eq!(env.secret_value(&f.output(), "token").await.as_deref(), Some(first.as_str()));

        env.advance(margin(&env) * 2).await;
        let second = env.published_token(&f.output(), Some(&first)).await;
        assert_eq!(env.slack.refreshes(&f.installation_id), 2, "exactly one rotation at the due time");
        assert!(env.slack.token_is_valid(&second));
        env.eventually("rotationCount 2", env.patience(), || async {
            (env.status("bot").await.rotation_count == 2).then_some(())
        })
        .await;
        assert!(env.slack.broken_chains().is_empty());
    });
}

#[test]
fn rotation_period_change_reschedules() {
    e2e(|env| async move {
        let (f, first) = env.ready_bot().await;
        let before = env.until_next_rotation("bot").await;
        let period = env.ttl() / 4;
        let period_text = slack_token_operator::GoDuration(period).to_string();
        let patch = json!({"spec": {"rotationPeriod": period_text}});
        env.tokens().patch("bot", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        let after = env
            .eventually("nextRotationTime moved earlier", Duration::from_secs(30), || async {
                let left = env.until_next_rotation("bot").await;
                (left + margin(&env) < before).then_some(left)
            })
            .await;
        // Status times are whole seconds (rounded), so allow one second over the period.
        assert!(
            after <= period + Duration::from_secs(1),
            "next rotation within one rotationPeriod of the last: {after:?} > {period:?}"
        );
        env.advance(after + margin(&env)).await;
        env.published_token(&f.output(), Some(&first)).await;
        assert_eq!(env.slack.refreshes(&f.installation_id), 2);
    });
}

#[test]
fn renew_before_change_reschedules() {
    e2e(|env| async move {
        let f = env.oauth_token("bot", "").await;
        env.published_token(&f.output(), None).await;
        env.ready("bot", "True").await;
        let renew = env.ttl() / 2;
        let patch = json!({"spec": {"renewBefore": slack_token_operator::GoDuration(renew).to_string()}});
        env.tokens().patch("bot", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        env.eventually("nextRotationTime = expiry - renewBefore", Duration::from_secs(30), || async {
            (env.times("bot").await.renew_before() == Some(renew)).then_some(())
        })
        .await;
        assert_eq!(env.slack.refreshes(&f.installation_id), 1, "rescheduling alone does not rotate");
        // The wake-up moved with it: the rotation comes at the new time (with the emulator's
        // 12 h tokens, 6 h after issue; the default renewBefore of 2 h had it at 10 h, past
        // this wait and its patience).
        let wait = env.until_next_rotation("bot").await;
        assert!(wait <= renew, "due by expiry - renewBefore: {wait:?}");
        env.advance(wait + margin(&env)).await;
        env.eventually("the rotation at the new time", env.patience(), || async {
            (env.slack.refreshes(&f.installation_id) == 2).then_some(())
        })
        .await;
    });
}

#[test]
fn renew_before_as_long_as_the_token_lifetime_does_not_rotate_in_a_loop() {
    // Every new token would be due the moment it is issued: without a fallback the operator
    // rotates on each of its own Secret writes, and each rotation revokes a token a consumer uses.
    e2e(|env| async move {
        let f = env.oauth_token("bot", "renewBefore: 24h").await;
        env.published_token(&f.output(), None).await;
        let (_, message) = env.ready("bot", "True").await;
        assert!(message.contains("renewBefore 24h is not shorter than the token's lifetime"), "{message}");
        env.advance(margin(&env)).await;
        assert_eq!(env.slack.refreshes(&f.installation_id), 1, "one rotation, not a loop");
        let renew = default_renew_before(Some(env.ttl()));
        assert_eq!(env.times("bot").await.renew_before(), Some(renew), "the default renewBefore");
        env.eventually("a RenewBeforeTooLong Event", env.patience(), || async {
            env.event_reasons("bot").await.contains(&"RenewBeforeTooLong".to_owned()).then_some(())
        })
        .await;
        // Due at the default time, then once more only.
        env.advance(env.until_next_rotation("bot").await + margin(&env)).await;
        assert_eq!(env.slack.refreshes(&f.installation_id), 2);
    });
}

#[test]
fn deleted_output_secret_is_restored_without_rotating() {
    e2e(|env| async move {
        let f = env.oauth_token("bot", "").await;
        let token = env.published_token(&f.output(), None).await;
        env.ready("bot", "True").await;
        env.secrets().delete(&f.output(), &DeleteParams::default()).await.unwrap();
        let restored = env
            .eventually("output Secret recreated", Duration::from_secs(60), || async {
                env.secret_value(&f.output(), "token").await
            })
            .await;
        assert_eq!(restored, token);
        assert_eq!(env.slack.refreshes(&f.installation_id), 1);
    });
}

#[test]
fn hand_edited_output_secret_is_restored() {
    e2e(|env| async move {
        let f = env.oauth_token("bot", "").await;
        let token = env.published_token(&f.output(), None).await;
        env.ready("bot", "True").await;
        let patch = json!({"stringData": {"token": "tampered"}});
        env.secrets().patch(&f.output(), &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        env.eventually("token restored", Duration::from_secs(60), || async {
            (env.secret_value(&f.output(), "token").await? == token).then_some(())
        })
        .await;
        assert_eq!(env.slack.refreshes(&f.installation_id), 1);
    });
}

#[test]
fn deleting_the_slacktoken_garbage_collects_the_output_secret() {
    e2e(|env| async move {
        let f = env.oauth_token("bot", "").await;
        env.published_token(&f.output(), None).await;
        let secret = env.secrets().get(&f.output()).await.unwrap();
        let owner = &secret.metadata.owner_references.as_ref().expect("owner reference")[0];
        assert_eq!(owner.kind, "SlackToken");
        assert_eq!(owner.controller, Some(true));
        env.tokens().delete("bot", &DeleteParams::default()).await.unwrap();
        env.eventually("output Secret gone", Duration::from_secs(60), || async {
            env.secrets().get_opt(&f.output()).await.ok()?.is_none().then_some(())
        })
        .await;
        assert!(env.secrets().get_opt(&f.creds()).await.unwrap().is_some(), "the user's credentials stay");
    });
}

#[test]
fn missing_credentials_are_reported_then_picked_up_when_created() {
    e2e(|env| async move {
        let app = env.slack.create_app(true);
        let install = env.slack.install(&app, "T1", slack_emulator::TokenKind::Bot);
        env.create_token(&support::token_yaml("late", "OAuth", "")).await;
        let (reason, message) = env.ready("late", "False").await;
        assert_eq!(reason, "CredentialsNotFound");
        assert!(message.contains("late-creds"), "message names the Secret: {message}");
        let refresh = install.refresh_token.unwrap();
        env.create_secret(
            "late-creds",
            &[("clientId", &app.client_id), ("clientSecret", &app.client_secret), ("refreshToken", &refresh)],
        )
        .await;
        env.ready("late", "True").await;
        assert!(env.secret_value("late-token", "token").await.is_some());
    });
}

#[test]
fn invalid_refresh_token_is_reported_without_a_retry_storm() {
    e2e(|env| async move {
        let app = env.slack.create_app(true);
        env.create_secret(
            "bad-creds",
            &[
                ("clientId", &app.client_id),
                ("clientSecret", &app.client_secret),
                ("refreshToken", "xoxe-1-spent"),
            ],
        )
        .await;
        env.create_token(&support::token_yaml("bad", "OAuth", "")).await;
        let (reason, message) = env.ready("bad", "False").await;
        assert_eq!(reason, "InvalidRefreshToken");
        assert!(message.contains("reinstall"), "message says what to do: {message}");
        assert!(!message.contains("xoxe-1-spent"), "no token text in status");
        let calls = env.slack.calls(OAUTH);
        env.advance(env.ttl() / 24).await;
        assert!(env.slack.calls(OAUTH) <= calls + 1, "at most one retry in {:?}", env.ttl() / 24);

        // A person fixes the credentials: picked up at once through the watch.
        let install = env.slack.install(&app, "T1", slack_emulator::TokenKind::Bot);
        let patch = json!({"stringData": {"refreshToken": install.refresh_token.unwrap()}});
        env.secrets().patch("bad-creds", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        env.ready("bad", "True").await;
    });
}

#[test]
fn rate_limit_retry_after_is_honoured() {
    e2e(|env| async move {
        let retry_after = env.ttl() / 9;
        env.slack.fail_next(OAUTH, 1, Fault::RateLimited { retry_after_secs: retry_after.as_secs() });
        let f = env.oauth_token("bot", "").await;
        let (reason, _) = env.ready("bot", "False").await;
        assert_eq!(reason, "RateLimited");
        env.advance(retry_after - margin(&env)).await;
        assert_eq!(env.slack.calls(OAUTH), 1, "no call before Retry-After");
        env.advance(margin(&env) * 2).await;
        env.published_token(&f.output(), None).await;
        assert_eq!(env.slack.calls(OAUTH), 2);
    });
}

#[test]
fn slack_outage_is_retried_with_backoff_and_recovers() {
    e2e(|env| async move {
        let (f, first) = env.ready_bot().await;
        env.slack.set_outage(true);
        let wait = env.until_next_rotation("bot").await;
        env.advance(wait + margin(&env)).await;
        let (reason, _) = env.ready("bot", "False").await;
        assert_eq!(reason, "SlackUnavailable");
        let attempts = env.slack.calls(OAUTH);
        env.slack.set_outage(false);
        let second = env.published_token(&f.output(), Some(&first)).await;
        assert!(env.slack.token_is_valid(&second));
        assert!(attempts >= 2, "retried during the outage");
        assert!(env.slack.broken_chains().is_empty());
        env.ready("bot", "True").await;
    });
}

#[test]
fn app_configuration_token_is_rotated_with_tooling_tokens_rotate() {
    e2e(|env| async move {
        let config = env.slack.create_config_token("T1", "U1");
        env.create_secret("cfg-creds", &[("refreshToken", &config.refresh_token)]).await;
        env.create_token(&support::token_yaml("cfg", "AppConfiguration", "")).await;
        let token = env.published_token("cfg-token", None).await;
        assert!(env.slack.token_is_valid(&token));
        assert_eq!(env.slack.calls("tooling.tokens.rotate"), 1);
        env.ready("cfg", "True").await;
        // `exp` - `iat` gives the lifetime, so the schedule works as for OAuth tokens.
        let wait = env.until_next_rotation("cfg").await;
        // (Status times have second precision, hence the second of slack.)
        assert!(wait <= due_after(&env) + Duration::from_secs(1), "scheduled from the token's exp: {wait:?}");
        env.advance(wait + margin(&env)).await;
        let second = env.published_token("cfg-token", Some(&token)).await;
        assert!(env.slack.token_is_valid(&second));
        assert_eq!(env.slack.calls("tooling.tokens.rotate"), 2);
        assert!(env.slack.broken_chains().is_empty());
    });
}

#[test]
fn valid_access_token_in_credentials_is_published_without_rotating() {
    e2e(|env| async move {
        let app = env.slack.create_app(true);
        let install = env.slack.install(&app, "T1", slack_emulator::TokenKind::Bot);
        let expires = env.clock.now().checked_add(env.ttl()).unwrap();
        env.create_secret(
            "adopt-creds",
            &[
                ("clientId", &app.client_id),
                ("clientSecret", &app.client_secret),
                ("refreshToken", install.refresh_token.as_deref().unwrap()),
                ("accessToken", &install.access_token),
                ("expiresAt", &slack_token_operator::format_time(expires)),
            ],
        )
        .await;
        // An adopted token's issue time is unknown, so Slack's 12h lifetime (renew 2h before) is
        // assumed; with a real cluster's short-lived test tokens that would be due at once.
        let renew = slack_token_operator::GoDuration(env.ttl() / 3);
        env.create_token(&support::token_yaml("adopt", "OAuth", &format!("renewBefore: {renew}"))).await;
        let token = env.published_token("adopt-token", None).await;
        assert_eq!(token, install.access_token);
        assert_eq!(env.slack.calls(OAUTH), 0);
        env.ready("adopt", "True").await;
        assert!(env.times("adopt").await.next_rotation.is_some());
    });
}

#[test]
fn short_rotation_period_is_warned_about() {
    e2e(|env| async move {
        env.oauth_token("fast", "rotationPeriod: 30m").await;
        let (_, message) = env.ready("fast", "True").await;
        assert!(message.contains("under 1h"), "{message}");
        env.eventually("a ShortRotationPeriod Event", env.patience(), || async {
            env.event_reasons("fast").await.contains(&"ShortRotationPeriod".to_owned()).then_some(())
        })
        .await;
    });
}

#[test]
fn an_idle_hour_writes_nothing() {
    e2e(|env| async move {
        let f = env.oauth_token("bot", "").await;
        env.published_token(&f.output(), None).await;
        env.ready("bot", "True").await;
        env.advance(margin(&env)).await; // let the first round of watch events settle
        let before = env.versions(&f).await;
        let writes_before = env.kube.as_ref().map(|k| k.stats().writes());
        let idle = Duration::from_secs(3600).min(due_after(&env) / 2);
        env.advance(idle).await;
        assert_eq!(env.versions(&f).await, before, "no object changed");
        assert_eq!(env.kube.as_ref().map(|k| k.stats().writes()), writes_before, "no API write at all");
        assert_eq!(env.slack.refreshes(&f.installation_id), 1);
    });
}

#[test]
#[cfg_attr(e2e_real_cluster, ignore = "needs the emulator's fault injection")]
fn api_server_write_failure_after_slack_answered_loses_no_refresh_token() {
    e2e(|env| async move {
        let faults = env.fault_injection();
        let (f, first) = env.ready_bot().await;
        // The next three Secret updates fail: the first of them is the save of the rotated pair.
        faults.fail_next(kube_emulator::Verb::Update, "secrets", None, 3, 500);
        let wait = env.until_next_rotation("bot").await;
        env.advance(wait).await;
        let (reason, _) = env.ready("bot", "False").await;
        assert_eq!(reason, "KubernetesApiError");
        let second = env.published_token(&f.output(), Some(&first)).await;
        assert_eq!(
            env.slack.refreshes(&f.installation_id),
            2,
            "Slack was not called again for the same rotation"
        );
        assert!(env.slack.broken_chains().is_empty(), "no spent refresh token was presented");
        assert!(env.ctx.pending().is_empty());
        env.ready("bot", "True").await;
        env.eventually("the completed rotation counts once", env.patience(), || async {
            (env.status("bot").await.rotation_count == 2).then_some(())
        })
        .await;

        // The saved refresh token is the live one: the next rotation works.
        let wait = env.until_next_rotation("bot").await;
        env.advance(wait + margin(&env)).await;
        let third = env.published_token(&f.output(), Some(&second)).await;
        assert!(env.slack.token_is_valid(&third));
        assert_eq!(env.slack.refreshes(&f.installation_id), 3);
        assert!(env.slack.broken_chains().is_empty());
    });
}

#[test]
#[cfg_attr(e2e_real_cluster, ignore = "needs the emulator's fault injection")]
fn slacktoken_recreated_while_a_save_fails_saves_the_pending_pair_first() {
    // A GitOps tool replacing the SlackToken (delete + create: a new uid) while the credentials
    // Secret cannot be written must not lose the pair Slack issued: it continues that Secret's
    // refresh-token chain, whatever SlackToken object drives it.
    e2e(|env| async move {
        let faults = env.fault_injection();
        let (f, first) = env.ready_bot().await;
        faults.fail_next(kube_emulator::Verb::Update, "secrets", None, 1000, 500);
        let wait = env.until_next_rotation("bot").await;
        env.advance(wait).await;
        let (reason, _) = env.ready("bot", "False").await;
        assert_eq!(reason, "KubernetesApiError");
        assert_eq!(env.slack.refreshes(&f.installation_id), 2, "Slack answered; the save failed");
        assert_eq!(env.ctx.pending().len(), 1);

        env.tokens().delete("bot", &DeleteParams::default()).await.unwrap();
        env.eventually("SlackToken gone", env.patience(), || async {
            env.tokens().get_opt("bot").await.unwrap().is_none().then_some(())
        })
        .await;
        env.create_token(&support::token_yaml("bot", "OAuth", "")).await;
        faults.clear();

        let second = env.published_token(&f.output(), Some(&first)).await;
        assert!(env.slack.token_is_valid(&second));
        assert_eq!(env.slack.refreshes(&f.installation_id), 2, "the pending pair was saved, not re-fetched");
        assert!(env.slack.broken_chains().is_empty(), "no spent refresh token was presented");
        assert!(env.ctx.pending().is_empty());
    });
}

#[test]
fn stale_credentials_cache_never_spends_a_refresh_token_twice() {
    // Rotations in quick succession (rotate-now twice) must each read the newest refresh token.
    e2e(|env| async move {
        let f = env.oauth_token("bot", "").await;
        let mut token = env.published_token(&f.output(), None).await;
        for round in 1..=3 {
            let patch =
                json!({"metadata": {"annotations": {"slack.rotator.dev/rotate": format!("r{round}")}}});
            env.tokens().patch("bot", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
            token = env.published_token(&f.output(), Some(&token)).await;
        }
        assert_eq!(env.slack.refreshes(&f.installation_id), 4);
        assert!(env.slack.broken_chains().is_empty());
        assert_eq!(env.status("bot").await.last_rotate_request.as_deref(), Some("r3"));
    });
}

#[test]
fn malformed_durations_are_rejected_by_the_schema() {
    e2e(|env| async move {
        // Sent untyped: the Rust types would refuse to serialise a malformed duration at all.
        let yaml = support::token_yaml("bad", "OAuth", "renewBefore: 2d");
        let object: kube::api::DynamicObject = serde_saphyr::from_str(&yaml).unwrap();
        let resource = kube::api::ApiResource::erase::<slack_token_operator::SlackToken>(&());
        let api: kube::Api<kube::api::DynamicObject> =
            kube::Api::namespaced_with(env.client.clone(), &env.ns, &resource);
        let err = api.create(&Default::default(), &object).await.unwrap_err();
        let kube::Error::Api(status) = err else { panic!("expected an API error, got {err}") };
        assert_eq!(status.code, 422);
        assert!(status.message.contains("renewBefore"), "{}", status.message);
    });
}

#[test]
fn no_token_text_reaches_logs_events_status_or_metrics() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // The e2e runtime is single-threaded, so every task logs through this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let secrets_seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = secrets_seen.clone();
    e2e(|env| async move {
        let (f, first) = env.ready_bot().await;
        let wait = env.until_next_rotation("bot").await;
        env.advance(wait + margin(&env)).await;
        let second = env.published_token(&f.output(), Some(&first)).await;
        // And a failure: a refresh token Slack refuses.
        env.create_secret(
            "bad-creds",
            &[
                ("clientId", &f.app.client_id),
                ("clientSecret", &f.app.client_secret),
                ("refreshToken", "xoxe-1-REFUSED"),
            ],
        )
        .await;
        env.create_token(&support::token_yaml("bad", "OAuth", "")).await;
        env.ready("bad", "False").await;

        let mut secrets = vec![first, second, f.app.client_secret.clone(), "xoxe-1-REFUSED".to_owned()];
        secrets.extend(env.saved_refresh_token(&f).await);
        let mut public = String::new();
        for name in ["bot", "bad"] {
            public.push_str(&serde_json::to_string(&env.tokens().get(name).await.unwrap().status).unwrap());
        }
        let events: kube::Api<k8s_openapi::api::events::v1::Event> =
            kube::Api::namespaced(env.client.clone(), &env.ns);
        public.push_str(
            &serde_json::to_string(&events.list(&Default::default()).await.unwrap().items).unwrap(),
        );
        public.push_str(&env.scrape().await.0);
        for secret in &secrets {
            assert!(
                !public.contains(secret.as_str()),
                "a token or client secret in status, Events or metrics"
            );
        }
        seen.lock().unwrap().extend(secrets);
    });
    let logs = captured.text();
    assert!(logs.contains("rotated"), "the capture saw the controller's logs");
    for secret in secrets_seen.lock().unwrap().iter() {
        assert!(!logs.contains(secret.as_str()), "a token or client secret in the logs");
    }
}
