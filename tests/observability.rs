//! End-to-end: what people watching the operator see — `/metrics` per SlackToken and in total,
//! and `/readyz`/`/healthz` — scraped over HTTP from the operator's own server while the real
//! controller runs against the emulators (or a real cluster when `E2E_KUBECONFIG` is set).

mod support;

use kube::api::DeleteParams;
use slack_emulator::Fault;
use std::time::Duration;
use support::{e2e, e2e_before_start, Scrape, TestEnv};
use testground::Times;

const OAUTH: &str = "oauth.v2.access";

/// A status time as the gauges give it: seconds since the epoch.
fn seconds(t: jiff::Timestamp) -> f64 {
    t.as_second() as f64
}

/// Waits until a scrape satisfies `check`.
async fn scrape_until(env: &TestEnv, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    env.eventually(what, env.patience(), || async {
        let scrape = env.scrape().await;
        check(&scrape).then_some(scrape)
    })
    .await
}

#[test]
fn readyz_is_503_before_the_controller_starts_and_200_once_its_watches_synced() {
    e2e_before_start(|mut env| async move {
        let (code, body) = env.get("/readyz").await;
        assert_eq!(code, 503, "not ready before the controller starts: {body}");
        assert_eq!(env.get("/healthz").await.0, 200, "alive all the same");
        env.start_controller();
        env.eventually("/readyz 200", env.patience(), || async {
            (env.get("/readyz").await.0 == 200).then_some(())
        })
        .await;
        assert_eq!(env.get("/healthz").await.0, 200);
    });
}

#[test]
#[cfg_attr(e2e_real_cluster, ignore = "needs the emulator's fault injection")]
fn readyz_stays_503_while_slacktokens_cannot_be_listed() {
    e2e_before_start(|mut env| async move {
        let faults = env.fault_injection();
        faults.fail_next(kube_emulator::Verb::List, "slacktokens", None, 1000, 500);
        env.start_controller();
        env.advance(Duration::from_secs(30)).await;
        let (code, body) = env.get("/readyz").await;
        assert_eq!(code, 503, "not ready while SlackTokens cannot be listed");
        assert!(body.contains("watches have not synced"), "says why: {body}");
        faults.clear();
        env.eventually("/readyz 200", env.patience(), || async {
            (env.get("/readyz").await.0 == 200).then_some(())
        })
        .await;
    });
}

#[test]
fn the_expiry_gauge_is_each_tokens_status_expiration_time() {
    e2e(|env| async move {
        let (_, _) = env.ready_bot().await;
        let config = env.slack.create_config_token("T1", "U1");
        env.create_secret("cfg-creds", &[("refreshToken", &config.refresh_token)]).await;
        env.create_token(&support::token_yaml("cfg", "AppConfiguration", "")).await;
        env.ready("cfg", "True").await;

        for (name, type_) in [("bot", "OAuth"), ("cfg", "AppConfiguration")] {
            let times = env.times(name).await;
            let labels = [("namespace", env.ns.as_str()), ("name", name), ("type", type_)];
            let expires = seconds(times.expiration.expect("expirationTime"));
            let next = seconds(times.next_rotation.expect("nextRotationTime"));
            let scrape = scrape_until(&env, "the gauges of {name}", |s| {
                s.value("slacktoken_expiration_timestamp_seconds", &labels) == Some(expires)
            })
            .await;
            assert_eq!(
                scrape.value("slacktoken_next_rotation_timestamp_seconds", &labels),
                Some(next),
                "{name}"
            );
            assert_eq!(scrape.value("slacktoken_ready", &labels), Some(1.0), "{name}");
            assert_eq!(scrape.value("slacktoken_rotation_due", &labels), None, "{name}: Manual tokens only");
        }
    });
}

#[test]
fn counters_move_on_rotation_and_on_failure() {
    e2e(|env| async move {
        let (f, first) = env.ready_bot().await;
        let ns = env.ns.clone();
        let token = [("namespace", ns.as_str()), ("name", "bot"), ("type", "OAuth")];
        let first_token = [("type", "OAuth"), ("reason", "FirstToken")];
        let scrape = scrape_until(&env, "the first rotation counted", |s| {
            s.value("slacktoken_rotations_total", &first_token) == Some(1.0)
        })
        .await;
        let ok_calls = scrape.value("slack_api_requests_total", &[("method", OAUTH), ("result", "ok")]);
        assert_eq!(ok_calls, Some(1.0));
        let reconciles = scrape.value("slack_token_operator_reconciles_total", &[]).unwrap();
        assert!(reconciles >= 1.0);
        assert!(scrape.value("slack_api_request_duration_seconds_count", &[("method", OAUTH)]) >= Some(1.0));

        // The next rotation is rate-limited once: a failure, then the rotation.
        env.slack.fail_next(OAUTH, 1, Fault::RateLimited { retry_after_secs: 60 });
        env.advance(env.until_next_rotation("bot").await).await;
        let (reason, _) = env.ready("bot", "False").await;
        assert_eq!(reason, "RateLimited");
        let scrape = scrape_until(&env, "the failure counted", |s| {
            s.value("slacktoken_rotation_failures_total", &[("type", "OAuth"), ("reason", "RateLimited")])
                == Some(1.0)
        })
        .await;
        assert_eq!(scrape.value("slack_api_rate_limited_total", &[("method", OAUTH)]), Some(1.0));
        assert_eq!(
            scrape.value("slack_api_requests_total", &[("method", OAUTH), ("result", "RateLimited")]),
            Some(1.0)
        );
        assert_eq!(scrape.value("slacktoken_ready", &token), Some(0.0), "Ready=False shows");

        env.published_token(&f.output(), Some(&first)).await;
        let expires = env
            .eventually("Ready again", env.patience(), || async {
                let s = env.status("bot").await;
                (s.rotation_count == 2).then(|| Times::of(&s).expiration)?
            })
            .await;
        let scrape = scrape_until(&env, "the scheduled rotation counted", |s| {
            s.value("slacktoken_rotations_total", &[("type", "OAuth"), ("reason", "Due")]) == Some(1.0)
        })
        .await;
        assert_eq!(scrape.value("slacktoken_ready", &token), Some(1.0));
        assert_eq!(scrape.value("slacktoken_expiration_timestamp_seconds", &token), Some(seconds(expires)));
        assert!(scrape.value("slack_token_operator_reconciles_total", &[]).unwrap() > reconciles);
    });
}

#[test]
fn a_deleted_slacktokens_series_are_gone() {
    e2e(|env| async move {
        env.ready_bot().await;
        let mut extra = env.oauth_token("other", "").await;
        extra.name = "other".into();
        env.ready("other", "True").await;
        scrape_until(&env, "series for bot", |s| s.has_label("name", "bot") && s.has_label("name", "other"))
            .await;

        env.tokens().delete("bot", &DeleteParams::default()).await.unwrap();
        let scrape = scrape_until(&env, "no series for bot", |s| !s.has_label("name", "bot")).await;
        assert!(scrape.has_label("name", "other"), "the other SlackToken's series stay");
        // Totals are not per token: they stay.
        assert!(
            scrape.value("slacktoken_rotations_total", &[("type", "OAuth"), ("reason", "FirstToken")])
                >= Some(2.0)
        );
    });
}
