//! The crash harness: the operator as its own process, SIGKILLed again and again, above all
//! while a pair Slack issued is not yet saved, and restarted on the same journal directory.
//!
//! A held kill: Secret writes are refused (HTTP 500) or stalled (the API server does not answer)
//! from before a rotation is asked for, so Slack answers and the save cannot happen; the process
//! is killed with the pair held, the fault is lifted and a new process starts. A random kill
//! comes at a random moment while rotation requests keep arriving. At the end every SlackToken
//! must be Ready with a token Slack accepts, one more rotation of each must work, and the Slack
//! emulator must have seen no spent refresh token presented again (a broken chain).
//!
//! Moments and choices come from one seeded RNG; the seed is in the report, so a run can be
//! repeated (process scheduling still varies).

use super::{
    eventually,
    process::{OperatorOptions, OperatorProcess},
    Bot, Ground, GroundConfig,
};
use anyhow::Context as _;
use kube_emulator::Verb;
use rand::{rngs::StdRng, RngExt, SeedableRng};
use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

const NAMESPACE: &str = "crash";

#[derive(Clone, Debug)]
pub struct CrashConfig {
    pub binary: PathBuf,
    pub seed: u64,
    /// Kills in all.
    pub kills: usize,
    /// Of those, at least this many while a pair is held.
    pub held_kills: usize,
    pub tokens: usize,
    /// Lifetime of Slack's access tokens: short, so scheduled rotations happen too.
    pub token_ttl: Duration,
    /// Run the operator with `--journal-dir` (without it, held kills are expected to break chains).
    pub journal: bool,
    /// How long Slack still accepts a refresh token after it was used. Real Slack keeps one
    /// working for "a short grace period"; that is what covers a kill in the milliseconds
    /// between Slack's answer and the journal write (see the report's journal window). Held
    /// kills wait longer than this after Slack answered, so the grace cannot hide a lost pair.
    pub refresh_grace: Duration,
    /// How long the end may take to settle (every SlackToken Ready, one more rotation each).
    pub settle: Duration,
}

impl CrashConfig {
    pub fn new(binary: impl Into<PathBuf>, seed: u64) -> Self {
        Self {
            binary: binary.into(),
            seed,
            kills: 50,
            held_kills: 12,
            tokens: 3,
            token_ttl: Duration::from_secs(6),
            journal: true,
            refresh_grace: Duration::from_secs(2),
            settle: Duration::from_secs(60),
        }
    }
}

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Window {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Window {
    fn of(mut ms: Vec<f64>) -> Self {
        if ms.is_empty() {
            return Self::default();
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        Self { samples: ms.len(), p50_ms: at(0.5), p99_ms: at(0.99), max_ms: ms[ms.len() - 1] }
    }
}

#[derive(Debug, Default)]
pub struct CrashReport {
    pub seed: u64,
    pub kills: usize,
    /// Kills while at least one pair was held (Slack had answered, the save had not happened).
    pub held_kills: usize,
    /// Of the held kills, those with the API server stalling rather than refusing.
    pub stalled_kills: usize,
    /// Pairs the restarted processes saved from the journal.
    pub replayed: usize,
    /// Refreshes Slack answered, first tokens included.
    pub rotations: usize,
    /// Installations whose refresh chain broke (a spent refresh token presented again).
    pub broken_chains: Vec<String>,
    /// The kills (by number) before which a chain had broken since the previous one.
    pub broke_at: Vec<usize>,
    /// Pairs Slack issued that no operator process had kept when it was killed: the kill came
    /// between Slack's answer and the journal write. Slack's grace period is all that covers them.
    pub unkept: usize,
    pub unkept_kills: Vec<usize>,
    /// Process start to "starting controller" (journal replayed), per restart.
    pub restart: Vec<Duration>,
    /// SlackTokens not Ready with a working token at the end.
    pub not_ready: Vec<String>,
    /// Slack's answer → the pair durable in the journal (or only in memory, without one).
    pub journal_window: Window,
    /// Slack's answer → the credentials Secret holds the pair, for saves that did not wait out a kill.
    pub save_window: Window,
    pub elapsed: Duration,
}

impl std::fmt::Display for CrashReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed {}: {} kills, {} while a pair was held ({} with the API server stalled, the rest refusing writes), in {:.1} s", self.seed, self.kills, self.held_kills, self.stalled_kills, self.elapsed.as_secs_f64())?;
        writeln!(
            f,
            "  rotations answered by Slack: {}; pairs saved from the journal after a kill: {}",
            self.rotations, self.replayed
        )?;
        writeln!(
            f,
            "  broken refresh chains: {} (seen before kills {:?}); SlackTokens not Ready at the end: {}",
            self.broken_chains.len(),
            self.broke_at,
            self.not_ready.len()
        )?;
        writeln!(f, "  kills between Slack's answer and the journal write: {} (kills {:?}; left to Slack's grace period)", self.unkept, self.unkept_kills)?;
        let restarts = Window::of(self.restart.iter().map(|d| d.as_secs_f64() * 1000.0).collect());
        writeln!(
            f,
            "  restart to work (journal replayed): p50 {:.0} ms, p99 {:.0} ms",
            restarts.p50_ms, restarts.p99_ms
        )?;
        let w = |w: &Window| {
            format!(
                "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} pairs)",
                w.p50_ms, w.p99_ms, w.max_ms, w.samples
            )
        };
        writeln!(f, "  window Slack answer → journal fsync: {}", w(&self.journal_window))?;
        write!(f, "  window Slack answer → credentials Secret saved: {}", w(&self.save_window))
    }
}

/// What a run works on: the emulators, the SlackTokens, the journal directory and how operator
/// processes are started.
struct Harness {
    config: CrashConfig,
    ground: Ground,
    bots: Vec<Bot>,
    journal: PathBuf,
    options: OperatorOptions,
    /// Removed at the end of the run.
    _journal_root: tempfile::TempDir,
}

pub async fn run(config: CrashConfig) -> anyhow::Result<CrashReport> {
    let started = tokio::time::Instant::now();
    let h = Harness::start(config).await?;
    let mut rng = StdRng::seed_from_u64(h.config.seed);
    let mut report = CrashReport { seed: h.config.seed, ..Default::default() };
    let mut logs = Vec::new();

    let mut operator = start(&h.options).await?;
    all_healthy(&h.ground, &h.bots, Duration::from_secs(30)).await?;
    let driving = Arc::new(AtomicBool::new(true));
    let driver = tokio::spawn(drive(h.ground.client.clone(), h.bots.clone(), driving.clone(), rng.random()));
    let mut broken_seen = 0;
    for kill in 0..h.config.kills {
        h.kill(kill, &mut operator, &mut rng, &mut report).await?;
        logs.extend(operator.logs());
        // Pairs Slack issued that no process kept (the kill came between Slack's answer and
        // the journal write): only Slack's grace period can save those chains.
        let unkept = unkept_pairs(&h.ground, &h.bots, &logs);
        if unkept > report.unkept {
            report.unkept_kills.push(kill);
            report.unkept = unkept;
        }
        operator = start(&h.options).await?;
        report.restart.push(operator.started_in);
        if h.ground.slack.broken_chains().len() > broken_seen {
            report.broke_at.push(kill);
            broken_seen = h.ground.slack.broken_chains().len();
        }
        report.replayed += replayed(&operator);
    }
    driving.store(false, Ordering::Relaxed);
    let _ = driver.await;

    h.settle(&mut report).await?;
    logs.extend(operator.logs());
    drop(operator);
    report.journal_window = Window::of(field_ms(&logs, "new pair kept", "journal_ms"));
    report.save_window = Window::of(field_ms(&logs, "new pair saved", "save_ms"));
    report.elapsed = started.elapsed();
    Ok(report)
}

impl Harness {
    /// The emulators (Slack with `config`'s token lifetime and grace), the SlackTokens and a
    /// journal directory.
    async fn start(config: CrashConfig) -> anyhow::Result<Self> {
        let ground = Ground::start(GroundConfig {
            token_ttl: config.token_ttl,
            refresh_grace: config.refresh_grace,
            ..Default::default()
        })
        .await?;
        ground.namespace(NAMESPACE).await?;
        let mut bots = Vec::new();
        for i in 0..config.tokens {
            bots.push(ground.bot(NAMESPACE, &format!("bot-{i}")).await?);
        }
        // Memory-backed, as the chart's emptyDir (medium: Memory) is: an fsync costs nothing there.
        let shm = Path::new("/dev/shm");
        let journal_root = if shm.is_dir() { tempfile::tempdir_in(shm)? } else { tempfile::tempdir()? };
        let journal = journal_root.path().to_owned();
        let mut options = OperatorOptions::new(&config.binary, ground.kubeconfig(), ground.slack.base_url());
        options.namespaces = vec![NAMESPACE.into()];
        options.journal_dir = config.journal.then(|| journal.clone());
        Ok(Self { config, ground, bots, journal, options, _journal_root: journal_root })
    }

    /// Kill number `kill`: with a pair held (as many as `held_kills` asks for, and some more at
    /// random) or at a random moment.
    async fn kill(
        &self,
        kill: usize,
        operator: &mut OperatorProcess,
        rng: &mut StdRng,
        report: &mut CrashReport,
    ) -> anyhow::Result<()> {
        let held_left = self.config.held_kills.saturating_sub(report.held_kills);
        let kills_left = self.config.kills - kill;
        if held_left >= kills_left || rng.random_bool(0.4) {
            self.held_kill(kill, operator, rng, report).await?;
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..1000))).await;
            operator.kill()?;
        }
        report.kills += 1;
        Ok(())
    }

    /// Secret writes refused or stalled, a rotation asked for, and the process killed once Slack
    /// has answered (and the pair is journaled) and Slack's grace has run out.
    async fn held_kill(
        &self,
        kill: usize,
        operator: &mut OperatorProcess,
        rng: &mut StdRng,
        report: &mut CrashReport,
    ) -> anyhow::Result<()> {
        let (ground, faults) = (&self.ground, self.ground.kube.faults());
        let stall = rng.random_bool(0.5);
        let bot = &self.bots[rng.random_range(0..self.bots.len())];
        let answered = ground.slack.refreshes(&bot.installation_id);
        match stall {
            true => faults.add_latency(Some(Verb::Update), Some("secrets"), Duration::from_secs(3600)),
            false => faults.fail_next(Verb::Update, "secrets", None, u32::MAX, 500),
        }
        ground.rotate_now(bot, &format!("held-{kill}")).await?;
        let held = eventually(
            "Slack to answer while the save cannot happen",
            Duration::from_secs(10),
            Duration::from_millis(5),
            || async {
                let slack_answered = ground.slack.refreshes(&bot.installation_id) > answered;
                let journaled = !self.config.journal || entries(&self.journal) > 0;
                (slack_answered && journaled).then_some(())
            },
        )
        .await
        .is_ok();
        // The pair is held for longer than Slack's grace: the spent token is dead now, as it
        // would be after a real API server stall, and only the journal can save the chain.
        tokio::time::sleep(self.config.refresh_grace + Duration::from_millis(rng.random_range(100..300)))
            .await;
        operator.kill()?;
        faults.clear();
        if held {
            report.held_kills += 1;
            report.stalled_kills += usize::from(stall);
        }
        Ok(())
    }

    /// The end: every SlackToken works, and one more rotation of each works (the chains go on).
    async fn settle(&self, report: &mut CrashReport) -> anyhow::Result<()> {
        let (ground, bots, settle) = (&self.ground, &self.bots, self.config.settle);
        let settled = all_healthy(ground, bots, settle).await;
        for bot in bots {
            let before = ground.slack.refreshes(&bot.installation_id);
            ground.rotate_now(bot, "final").await?;
            let _ = eventually("one more rotation", settle / 3, Duration::from_millis(20), || async {
                (ground.slack.refreshes(&bot.installation_id) > before && ground.is_healthy(bot).await)
                    .then_some(())
            })
            .await;
        }
        for bot in bots {
            if !ground.is_healthy(bot).await {
                report.not_ready.push(bot.name.clone());
            }
            report.rotations += ground.slack.refreshes(&bot.installation_id);
        }
        if settled.is_err() && report.not_ready.is_empty() {
            report.not_ready.push("(slow to settle)".into());
        }
        report.broken_chains = ground.slack.broken_chains();
        Ok(())
    }
}

/// Pairs the process saved from the journal when it started.
fn replayed(operator: &OperatorProcess) -> usize {
    operator
        .lines("journal replayed")
        .first()
        .and_then(|l| l.pointer("/fields/saved"))
        .and_then(|v| v.as_u64())
        .map_or(0, |saved| saved as usize)
}

async fn start(options: &OperatorOptions) -> anyhow::Result<OperatorProcess> {
    let spawned = tokio::time::Instant::now();
    let mut operator = OperatorProcess::spawn(options)?;
    operator
        .logged("starting controller", Duration::from_secs(30))
        .await
        .context("the operator did not start")?;
    operator.started_in = spawned.elapsed();
    Ok(operator)
}

async fn all_healthy(ground: &Ground, bots: &[Bot], within: Duration) -> anyhow::Result<()> {
    eventually("every SlackToken Ready with a working token", within, Duration::from_millis(50), || async {
        for bot in bots {
            if !ground.is_healthy(bot).await {
                return None;
            }
        }
        Some(())
    })
    .await
}

/// Keeps asking for rotations of random SlackTokens, as people and schedules do.
async fn drive(client: kube::Client, bots: Vec<Bot>, driving: Arc<AtomicBool>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = 0u64;
    while driving.load(Ordering::Relaxed) {
        let bot = &bots[rng.random_range(0..bots.len())];
        let patch = serde_json::json!({"metadata": {"annotations": {slack_token_operator::ROTATE_ANNOTATION: format!("auto-{n}")}}});
        let tokens: kube::Api<slack_token_operator::SlackToken> =
            kube::Api::namespaced(client.clone(), &bot.ns);
        let _ = tokens.patch(&bot.name, &Default::default(), &kube::api::Patch::Merge(&patch)).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
    }
}

fn entries(journal: &Path) -> usize {
    std::fs::read_dir(journal)
        .map(|dir| {
            dir.filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "pair")))
                .count()
        })
        .unwrap_or(0)
}

/// Refreshes Slack answered beyond the pairs operator processes logged as kept, over all bots.
/// (The first token of each SlackToken is kept like any other.)
fn unkept_pairs(ground: &Ground, bots: &[Bot], logs: &[serde_json::Value]) -> usize {
    bots.iter()
        .map(|bot| {
            let kept = logs
                .iter()
                .filter(|l| l.pointer("/fields/message").and_then(|m| m.as_str()) == Some("new pair kept"))
                .filter(|l| {
                    l.pointer("/fields/secret").and_then(|m| m.as_str()) == Some(bot.creds().as_str())
                })
                .count();
            ground.slack.refreshes(&bot.installation_id).saturating_sub(kept)
        })
        .sum()
}

fn field_ms(logs: &[serde_json::Value], message: &str, field: &str) -> Vec<f64> {
    logs.iter()
        .filter(|l| l.pointer("/fields/message").and_then(|m| m.as_str()) == Some(message))
        .filter_map(|l| l.pointer(&format!("/fields/{field}")).and_then(|v| v.as_f64()))
        .collect()
}
