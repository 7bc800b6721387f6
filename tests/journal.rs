//! End-to-end: the crash journal. The operator is stopped the way a crash stops it (its memory
//! gone) while the API server refuses the write that would save a pair Slack just issued, and a
//! new operator starts on the same journal directory. (`tests/crash.rs` does the same with real
//! processes and SIGKILL.)

mod support;

use kube::api::{Patch, PatchParams};
use kube_emulator::Verb;
use secrecy::ExposeSecret;
use serde_json::json;
use slack_emulator::TokenKind;
use std::{path::Path, time::Duration};
use support::{e2e, Captured, Fixture, TestEnv};

fn journal_entries(dir: &Path, extension: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == extension))
        .count()
}

async fn rotate_now(env: &TestEnv, name: &str, request: &str) {
    let patch = json!({"metadata": {"annotations": {"slack.rotator.dev/rotate": request}}});
    env.tokens().patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

/// Rotates `f` while every Secret write fails, and waits until Slack has answered and the pair
/// is held (in the journal when there is one). Returns the refresh token Slack issued.
async fn rotate_into_a_refused_save(env: &TestEnv, f: &Fixture, journal: Option<&Path>) -> String {
    let faults = env.fault_injection();
    let refreshes = env.slack.refreshes(&f.installation_id);
    faults.fail_next(Verb::Update, "secrets", None, u32::MAX, 503);
    rotate_now(env, &f.name, "crash").await;
    env.eventually("Slack answered and the save failed", env.patience(), || async {
        let held = env.ctx.pending().len() == 1 && env.slack.refreshes(&f.installation_id) == refreshes + 1;
        let journaled = journal.is_none_or(|dir| journal_entries(dir, "pair") == 1);
        (held && journaled).then_some(())
    })
    .await;
    env.ctx.pending().all()[0].issued.refresh_token.expose_secret().to_owned()
}

#[test]
#[cfg_attr(e2e_real_cluster, ignore = "needs the emulator's fault injection")]
fn a_pair_issued_before_a_crash_is_saved_by_the_next_operator_from_the_journal() {
    for kind in ["OAuth", "AppConfiguration"] {
        e2e(|mut env| async move {
            let journal = tempfile::tempdir().unwrap();
            env.restart_operator(Some(journal.path())).await;
            let f = match kind {
                "OAuth" => env.oauth_token("bot", "").await,
                _ => env.config_token("bot").await,
            };
            let first = env.published_token(&f.output(), None).await;
            let issued = rotate_into_a_refused_save(&env, &f, Some(journal.path())).await;

            // Crash, then the API server recovers and the container restarts on the same volume.
            env.fault_injection().clear();
            let replayed = env.restart_operator(Some(journal.path())).await;
            assert_eq!(replayed.saved, 1, "{kind}: {replayed:?}");
            assert_eq!(journal_entries(journal.path(), "pair"), 0, "{kind}: saved pairs leave the journal");
            assert_eq!(env.saved_refresh_token(&f).await.as_deref(), Some(issued.as_str()), "{kind}");
            let second = env.published_token(&f.output(), Some(&first)).await;
            assert!(env.slack.token_is_valid(&second), "{kind}");
            assert_eq!(
                env.slack.refreshes(&f.installation_id),
                2,
                "{kind}: the pair was saved, not fetched again"
            );

            // The chain goes on.
            rotate_now(&env, "bot", "after").await;
            let third = env.published_token(&f.output(), Some(&second)).await;
            assert!(env.slack.token_is_valid(&third), "{kind}");
            assert!(env.slack.broken_chains().is_empty(), "{kind}: {:?}", env.slack.broken_chains());
        });
    }
}

#[test]
#[cfg_attr(e2e_real_cluster, ignore = "needs the emulator's fault injection")]
fn without_a_journal_a_crash_in_the_write_window_breaks_the_chain() {
    // The failure the journal exists for, shown once: this is what users lose without it.
    e2e(|mut env| async move {
        let (f, first) = env.ready_bot().await;
        rotate_into_a_refused_save(&env, &f, None).await;
        env.fault_injection().clear();
        let replayed = env.restart_operator(None).await;
        assert_eq!(replayed, Default::default());
        let (reason, message) = env.ready("bot", "False").await;
        assert_eq!(reason, "ChainBroken", "{message}");
        assert!(message.contains("reinstall"), "{message}");
        assert_eq!(env.slack.broken_chains(), vec![f.installation_id.clone()]);
        assert_eq!(env.secret_value(&f.output(), "token").await.as_deref(), Some(first.as_str()));
    });
}

#[test]
#[cfg_attr(e2e_real_cluster, ignore = "needs the emulator's fault injection")]
fn replay_waits_for_the_api_server_before_the_operator_takes_work() {
    e2e(|mut env| async move {
        let journal = tempfile::tempdir().unwrap();
        env.restart_operator(Some(journal.path())).await;
        let (f, _) = env.ready_bot().await;
        let issued = rotate_into_a_refused_save(&env, &f, Some(journal.path())).await;
        let faults = env.fault_injection();
        faults.clear();
        // The API server still fails the first reads of the new process (500: kube's client
        // retries 503s itself, which would hide the replay's own waiting).
        faults.fail_next(Verb::Get, "secrets", None, 4, 500);
        let started = tokio::time::Instant::now();
        let replayed = env.restart_operator(Some(journal.path())).await;
        assert_eq!(replayed.saved, 1, "{replayed:?}");
        assert!(
            started.elapsed() >= Duration::from_secs(1 + 2 + 4 + 8),
            "replay backed off: {:?}",
            started.elapsed()
        );
        assert_eq!(env.saved_refresh_token(&f).await.as_deref(), Some(issued.as_str()));
        assert!(env.slack.broken_chains().is_empty());
    });
}

#[test]
#[cfg_attr(e2e_real_cluster, ignore = "needs the emulator's fault injection")]
fn a_journaled_pair_is_dropped_when_the_secret_has_moved_on() {
    // While the operator was down, a person reinstalled the app and put the new refresh token in:
    // the old pair must not overwrite it.
    e2e(|mut env| async move {
        let journal = tempfile::tempdir().unwrap();
        env.restart_operator(Some(journal.path())).await;
        let (f, _) = env.ready_bot().await;
        rotate_into_a_refused_save(&env, &f, Some(journal.path())).await;
        env.fault_injection().clear();
        let reinstalled = env.slack.install(&f.app, support::TEAM, TokenKind::Bot);
        let fresh = reinstalled.refresh_token.clone().unwrap();
        let patch = json!({"stringData": {"refreshToken": fresh}});
        env.secrets().patch(&f.creds(), &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();

        let replayed = env.restart_operator(Some(journal.path())).await;
        assert_eq!(replayed.superseded, 1, "{replayed:?}");
        assert_eq!(journal_entries(journal.path(), "pair"), 0);
        env.eventually("the person's refresh token is used, not overwritten", env.patience(), || async {
            (env.slack.refreshes(&reinstalled.id) >= 1).then_some(())
        })
        .await;
        env.ready("bot", "True").await;
    });
}

#[test]
#[cfg_attr(e2e_real_cluster, ignore = "needs the emulator's fault injection")]
fn a_damaged_journal_entry_is_set_aside_and_the_broken_chain_reported() {
    e2e(|mut env| async move {
        let journal = tempfile::tempdir().unwrap();
        env.restart_operator(Some(journal.path())).await;
        let (f, _) = env.ready_bot().await;
        rotate_into_a_refused_save(&env, &f, Some(journal.path())).await;
        env.fault_injection().clear();
        // The disk loses the end of the entry.
        let entry = std::fs::read_dir(journal.path()).unwrap().next().unwrap().unwrap().path();
        let bytes = std::fs::read(&entry).unwrap();
        std::fs::write(&entry, &bytes[..bytes.len() / 2]).unwrap();

        let replayed = env.restart_operator(Some(journal.path())).await;
        assert_eq!(replayed.damaged, 1, "{replayed:?}");
        assert_eq!(journal_entries(journal.path(), "corrupt"), 1, "kept for a person to look at");
        let (reason, message) = env.ready("bot", "False").await;
        assert_eq!(reason, "ChainBroken");
        assert!(message.contains(&format!("api.slack.com/apps/{}/oauth", f.app.app_id)), "{message}");
    });
}

#[test]
fn a_broken_chain_is_reported_with_the_reinstall_steps_and_not_retried_in_a_loop() {
    e2e(|env| async move {
        let (f, _) = env.ready_bot().await;
        // Someone else spends the saved refresh token (another tool sharing the credentials).
        let saved = env.saved_refresh_token(&f).await.unwrap();
        let other = slack_token_operator::SlackClient::new(&env.slack.base_url()).unwrap();
        other
            .refresh_oauth(&f.app.client_id, &f.app.client_secret.clone().into(), &saved.into())
            .await
            .expect("the other tool refreshes");
        let calls = env.slack.calls("oauth.v2.access");
        rotate_now(&env, "bot", "1").await;
        let (reason, message) = env.ready("bot", "False").await;
        assert_eq!(reason, "ChainBroken");
        assert!(message.contains("Reinstall to Workspace") && message.contains("refreshToken"), "{message}");
        assert_eq!(env.slack.calls("oauth.v2.access"), calls + 1);
        assert!(env.event_reasons("bot").await.contains(&"RotationFailed".to_owned()));
        // Longer than any transient backoff (a loop would have retried by then).
        env.advance(env.patience()).await;
        assert_eq!(env.slack.calls("oauth.v2.access"), calls + 1, "no retry loop against Slack");
    });
}

#[test]
fn a_refresh_token_a_person_supplied_that_slack_refuses_is_not_called_a_broken_chain() {
    e2e(|env| async move {
        let app = env.slack.create_app(true);
        env.create_secret(
            "typo-creds",
            &[
                ("clientId", &app.client_id),
                ("clientSecret", &app.client_secret),
                ("refreshToken", "xoxe-1-typo"),
            ],
        )
        .await;
        env.create_token(&support::token_yaml("typo", "OAuth", "")).await;
        let (reason, message) = env.ready("typo", "False").await;
        assert_eq!(reason, "InvalidRefreshToken", "{message}");
    });
}

#[test]
#[cfg_attr(e2e_real_cluster, ignore = "needs the emulator's fault injection")]
fn journaling_and_replaying_a_pair_logs_no_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let tokens = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = tokens.clone();
    e2e(|mut env| async move {
        let journal = tempfile::tempdir().unwrap();
        env.restart_operator(Some(journal.path())).await;
        let (f, first) = env.ready_bot().await;
        let held = rotate_into_a_refused_save(&env, &f, Some(journal.path())).await;
        let pending_access = env.ctx.pending().all()[0].issued.access_token.expose_secret().to_owned();
        env.fault_injection().clear();
        let replayed = env.restart_operator(Some(journal.path())).await;
        assert_eq!(replayed.saved, 1);
        env.published_token(&f.output(), Some(&first)).await;
        seen.lock().unwrap().extend([first, held, pending_access, f.app.client_secret.clone()]);
    });
    let logs = captured.text();
    assert!(
        logs.contains("new pair kept") && logs.contains("saved a token pair from the journal"),
        "the capture saw the journal's logs"
    );
    for token in tokens.lock().unwrap().iter() {
        assert!(!logs.contains(token.as_str()), "a token in the logs");
    }
}
