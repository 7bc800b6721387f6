//! Real processes, real kills: the operator runs as `slack-token-operator run` against the
//! emulators in this process and is killed with SIGKILL (and stopped with SIGTERM) while pairs
//! Slack issued are not yet saved. Real time, so these tests take tens of seconds.
//! The long form is `cargo bench --bench crash`.

use std::time::Duration;
use testground::{
    crash::{self, CrashConfig},
    eventually,
    process::{OperatorOptions, OperatorProcess},
    Ground, GroundConfig,
};

const BINARY: &str = env!("CARGO_BIN_EXE_slack-token-operator");

/// The seed: `CRASH_SEED` to repeat a run, else a fresh one (printed either way).
fn seed() -> u64 {
    std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_and_inside_the_write_window_loses_no_refresh_token() {
    let config = CrashConfig::new(BINARY, seed());
    eprintln!("crash harness seed {} (CRASH_SEED={} repeats it)", config.seed, config.seed);
    let report = crash::run(config).await.expect("the harness runs");
    eprintln!("{report}");
    assert!(report.kills >= 50, "{report}");
    assert!(report.held_kills >= 10, "kills inside the write window: {report}");
    assert!(report.replayed >= 1, "pairs came back from the journal: {report}");
    assert!(report.broken_chains.is_empty(), "{report}");
    assert!(report.not_ready.is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_journal_the_same_kills_break_chains() {
    // The harness can see what it is there to see: the in-memory operator of before loses pairs.
    let mut config = CrashConfig::new(BINARY, seed());
    config.journal = false;
    config.kills = 3;
    config.held_kills = 3;
    config.settle = Duration::from_secs(6);
    let report = crash::run(config).await.expect("the harness runs");
    eprintln!("{report}");
    assert!(report.held_kills >= 1, "{report}");
    assert!(!report.broken_chains.is_empty(), "held pairs were lost: {report}");
}

/// SIGTERM while a rotation's save is refused (the reconcile has failed and waits to retry) or
/// stalled (the reconcile is still waiting on the API server): the operator exits, at the latest
/// when --shutdown-timeout runs out, and the pair is saved by the next process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_refused_or_stalled_save_exits_in_time_and_the_pair_is_saved_after_restart() {
    for stall in [false, true] {
        let ground = Ground::start(GroundConfig::default()).await.unwrap();
        ground.namespace("term").await.unwrap();
        let bot = ground.bot("term", "bot").await.unwrap();
        let mut options = OperatorOptions::new(BINARY, ground.kubeconfig(), ground.slack.base_url());
        options.namespaces = vec!["term".into()];
        options.journal_dir = Some(ground.scratch("journal"));
        options.shutdown_timeout = Duration::from_secs(3);
        let mut operator = OperatorProcess::spawn(&options).unwrap();
        let healthy = || async { ground.is_healthy(&bot).await.then_some(()) };
        eventually("the first token", Duration::from_secs(30), Duration::from_millis(50), healthy)
            .await
            .unwrap();

        // From now on the API server refuses, or never answers, Secret writes: a rotation gets its
        // pair from Slack and cannot save it.
        let faults = ground.kube.faults();
        match stall {
            true => faults.add_latency(
                Some(kube_emulator::Verb::Update),
                Some("secrets"),
                Duration::from_secs(3600),
            ),
            false => faults.fail_next(kube_emulator::Verb::Update, "secrets", None, u32::MAX, 500),
        }
        ground.rotate_now(&bot, "term").await.unwrap();
        eventually(
            "Slack answered the second rotation and its pair is journaled, unsaved",
            Duration::from_secs(30),
            Duration::from_millis(10),
            || async {
                (ground.slack.refreshes(&bot.installation_id) == 2 && operator.journaled() == 1).then_some(())
            },
        )
        .await
        .unwrap();

        operator.terminate().unwrap();
        // Within the pod's grace period with room to spare, whatever the load on this machine.
        let status = operator.exited(Duration::from_secs(25)).await.expect("exits after SIGTERM");
        assert!(status.success(), "stall={stall}: {status:?}");
        assert_eq!(operator.journaled(), 1, "stall={stall}: the unsaved pair is still on disk");
        // A stalled save keeps its reconcile running: only the shutdown timeout ends it.
        // The cut-off report: a warning naming what was still running or unsaved.
        let timed_out: Vec<_> = operator
            .logs()
            .into_iter()
            .filter(|l| l["level"] == "WARN" && l.pointer("/fields/unsaved").is_some())
            .collect();
        assert_eq!(
            !timed_out.is_empty(),
            stall,
            "stall={stall}: the shutdown timeout bounds the wait for a stuck save, and only then"
        );
        if let Some(line) = timed_out.first() {
            // The reconcile still running, or the credentials Secret whose pair is unsaved.
            let field = |f: &str| line.pointer(f).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
            let (running, unsaved) = (field("/fields/running"), field("/fields/unsaved"));
            assert!(
                running.contains(&format!("{}/{}", bot.ns, bot.name))
                    || unsaved.contains(&format!("{}/{}", bot.ns, bot.creds())),
                "names the cut-off rotation: {line}"
            );
        }

        faults.clear();
        let restarted = OperatorProcess::spawn(&options).unwrap();
        eventually("the new token published", Duration::from_secs(30), Duration::from_millis(50), healthy)
            .await
            .unwrap();
        // Saved from the journal, then taken off it.
        let emptied = || async { (restarted.journaled() == 0).then_some(()) };
        eventually("the journal emptied", Duration::from_secs(30), Duration::from_millis(50), emptied)
            .await
            .unwrap();
        assert_eq!(
            ground.slack.refreshes(&bot.installation_id),
            2,
            "stall={stall}: the journaled pair was used"
        );
        assert!(ground.slack.broken_chains().is_empty(), "stall={stall}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_logs_a_journal_replay_only_with_a_journal() {
    let ground = Ground::start(GroundConfig::default()).await.unwrap();
    for journal in [false, true] {
        let mut options = OperatorOptions::new(BINARY, ground.kubeconfig(), ground.slack.base_url());
        options.journal_dir = journal.then(|| ground.scratch("journal"));
        let operator = OperatorProcess::spawn(&options).unwrap();
        // The replay, when there is one, comes before the controller starts and Ready.
        let ready = || async { (operator.get("/readyz").await?.0 == 200).then_some(()) };
        eventually("Ready", Duration::from_secs(30), Duration::from_millis(20), ready).await.unwrap();
        let warned = operator.logs().iter().any(|l| {
            l.pointer("/fields/message")
                .and_then(|m| m.as_str())
                .is_some_and(|m| m.starts_with("no --journal-dir"))
        });
        assert_eq!(!operator.lines("journal replayed").is_empty(), journal, "journal={journal}");
        assert_eq!(warned, !journal, "journal={journal}");
    }
}
