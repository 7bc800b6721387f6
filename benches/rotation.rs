//! Rotation benchmark: N OAuth SlackTokens rotated by the real controller (cluster-wide) against the
//! in-process Kubernetes and Slack emulators, in REAL time.
//!
//! Stands the system up the way the e2e harness does (`tests/support/mod.rs`): one `TokioClock`
//! shared by the controller and both emulators, `demo::install_crd`, `Context::new`,
//! `run`. Unlike the tests, tokio's clock is NOT paused (we measure wall time), Slack
//! tokens live `BENCH_TTL_SECS` (default 9 s, so the default renewBefore is 3 s and a token is due
//! 6 s after issue), and the controller watches all namespaces.
//!
//! Phases:
//! 1. seed N installations, credentials Secrets and SlackTokens, then start the controller and time
//!    until every output Secret holds a token (watch-observed);
//! 2. let every token come due once and count, between two quiet points, the Kubernetes API
//!    requests (emulator `Stats` deltas), Slack calls and Events per rotation, and the delay from
//!    `status.nextRotationTime` to the watch seeing the new token in the output Secret;
//! 3. an idle window with no rotation due, in which the operator should write nothing.
//!
//! The bench observes the cluster only through watches opened before the measured windows (and
//! lists Events only outside them), so the emulator's request counts are the controller's alone.
//!
//! Run: `cargo bench --bench rotation` (env: BENCH_TOKENS=200, BENCH_TTL_SECS=9).

use futures::{stream, StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::{
    core::v1::{Namespace, Secret},
    events::v1::Event as K8sEvent,
};
use kube::{
    api::{Api, ListParams, PostParams},
    runtime::{reflector, reflector::Store, watcher, WatchStreamExt},
    Client, ResourceExt,
};
use slack_emulator::{SlackEmulator, TokenKind};
use slack_token_operator::{
    default_renew_before, oauth_secret, Context, SharedClock, SlackClient, SlackToken, SlackTokenSpec,
    TokenType, TokioClock, MANAGED_BY, MANAGED_BY_LABEL,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

const NAMESPACE: &str = "bench";
/// Slack methods the operator may call; the per-rotation table lists those that were called.
const SLACK_METHODS: [&str; 5] =
    ["oauth.v2.access", "oauth.v2.exchange", "tooling.tokens.rotate", "auth.test", "auth.revoke"];
/// No API request for this long = the controller has settled (its follow-up reconciles are done).
const QUIET: Duration = Duration::from_millis(750);
/// Longest wait for any phase; beyond it the bench reports what is missing and stops.
const PATIENCE: Duration = Duration::from_secs(120);
/// Requested length of the idle window.
const IDLE: Duration = Duration::from_secs(3);

fn main() -> anyhow::Result<()> {
    // With harness = false, a bench target is a plain program; refuse to run outside `cargo bench`
    // (which passes --bench), so a `cargo test --benches` cannot spend minutes here.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("rotation bench: run it with `cargo bench --bench rotation`; skipping");
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let settings = Settings::from_env()?;
    // Multi-threaded and real time: the emulators, the controller and this driver share the cores,
    // as an operator would share a node with nothing else in the loop.
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(settings))
}

struct Settings {
    tokens: usize,
    ttl: Duration,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let tokens = env_number("BENCH_TOKENS", 200)?;
        let ttl = Duration::from_secs(env_number("BENCH_TTL_SECS", 9)? as u64);
        anyhow::ensure!(tokens > 0, "BENCH_TOKENS must be positive");
        anyhow::ensure!(ttl >= Duration::from_secs(3), "BENCH_TTL_SECS must be at least 3");
        Ok(Self { tokens, ttl })
    }
}

fn env_number(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| anyhow::anyhow!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let mut env = Env::start(settings.ttl).await?;
    let n = settings.tokens;
    let renew = default_renew_before(Some(settings.ttl));
    println!("slack-token-operator rotation bench");
    println!(
        "  {n} OAuth SlackTokens in one namespace, controller watching all namespaces, real time, {} cores",
        std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1)
    );
    println!(
        "  Slack access_token_ttl {}s, default renewBefore {}s: a token is due {}s after issue",
        settings.ttl.as_secs(),
        renew.as_secs(),
        (settings.ttl - renew).as_secs()
    );

    let installations = env.seed(n).await?;
    let observer = Observer::start(&env).await?;

    // Phase 1: first tokens.
    let started = Instant::now();
    let before_first = env.snapshot_before().await?;
    env.start_controller();
    observer.wait(&format!("{n} output Secrets holding a token"), |o| o.published_at_least(1) >= n).await?;
    let first_published = started.elapsed();
    observer
        .wait(&format!("{n} SlackTokens Ready with rotationCount 1"), |o| o.ready_with_count(1) >= n)
        .await?;
    let first_ready = started.elapsed();
    env.settle().await;
    let after_first = env.snapshot_after().await?;
    print_first_tokens(n, first_published, first_ready, &before_first, &after_first);
    check_refreshes(&env, &installations, 1);

    // Phase 2: one scheduled round. The due times are read before any of them passes.
    let due = observer.due_times();
    let first_due = due.values().min().copied();
    if let Some(first_due) = first_due {
        if first_due <= env.clock.now() {
            println!("  WARNING: a rotation came due before phase 1 settled; raise BENCH_TTL_SECS");
        }
    }
    let mut seconds: Vec<Timestamp> = due.values().copied().collect();
    seconds.sort();
    seconds.dedup();
    println!("\n{n} rotations come due on {} distinct whole seconds", seconds.len());
    let round_start = env.snapshot_stats();
    observer.wait(&format!("{n} SlackTokens with rotationCount 2"), |o| o.ready_with_count(2) >= n).await?;
    env.settle().await;
    let round_end = env.snapshot_stats();
    let after_round = env.snapshot_events().await?;
    print_round(n, &round_start, &round_end, &after_first.events, &after_round);
    println!(
        "  Rotated Event objects whose note says \"(Due)\": {} of {} (a repeat within kube's 6 min Event",
        after_round.due_notes, after_round.objects
    );
    println!("  cache is recorded as a series count on the first Event, whose note is not updated)");
    check_refreshes(&env, &installations, 2);
    print_latency(&observer.rotation_latencies(&due, 2));

    // Phase 3: idle window up to (just before) the next due time.
    idle_window(&env, &observer).await;

    let broken = env.slack.broken_chains();
    println!("\nbroken refresh chains: {} (must be 0)", broken.len());
    println!("issued pairs still unsaved in the operator: {}", env.ctx()?.pending.len());
    println!("failed reconciles (operator metric): {}", failures(&env.ctx()?.metrics.encode()));
    Ok(())
}

// ------------------------------------------------------------------ environment

/// The system under test, assembled as `tests/support/mod.rs` does it.
struct Env {
    kube: kube_emulator::KubeEmulator,
    client: Client,
    slack: SlackEmulator,
    clock: SharedClock,
    ctx: Option<Arc<Context>>,
}

impl Env {
    async fn start(ttl: Duration) -> anyhow::Result<Self> {
        let clock: SharedClock = Arc::new(TokioClock::new());
        let clock_for_emulators = clock.clone();
        let now: slack_emulator::NowFn = Arc::new(move || clock_for_emulators.now());
        let kube = kube_emulator::KubeEmulator::start_with(kube_emulator::Config {
            now: Some(now.clone()),
            ..Default::default()
        })
        .await?;
        let client = kube.client();
        slack_token_operator::demo::install_crd(&client).await?;
        let slack = SlackEmulator::start_with(slack_emulator::Config {
            access_token_ttl: ttl,
            now: Some(now),
            ..Default::default()
        })
        .await?;
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}}))?;
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await?;
        Ok(Self { kube, client, slack, clock, ctx: None })
    }

    /// Starts the controller for all namespaces (`run(ctx, vec![])`). It runs until the bench ends.
    fn start_controller(&mut self) {
        let slack = SlackClient::new(&self.slack.base_url()).expect("Slack client for the emulator");
        let ctx = Context::new(self.client.clone(), slack, self.clock.clone());
        self.ctx = Some(ctx.clone());
        tokio::spawn(slack_token_operator::run(ctx, vec![]));
    }

    fn ctx(&self) -> anyhow::Result<&Arc<Context>> {
        self.ctx.as_ref().ok_or_else(|| anyhow::anyhow!("controller not started"))
    }

    /// N rotating bot installations, their credentials Secrets `stk-i-creds` and SlackTokens
    /// `stk-i` publishing into `stk-i-token`, created before the controller starts so that phase 1
    /// times the operator alone. Returns the installation ids.
    async fn seed(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), NAMESPACE);
        let tokens: Api<SlackToken> = Api::namespaced(self.client.clone(), NAMESPACE);
        let seeded: Vec<String> = stream::iter(0..n)
            .map(|i| {
                let (secrets, tokens) = (secrets.clone(), tokens.clone());
                async move {
                    let name = format!("stk-{i}");
                    let app = self.slack.create_app(true);
                    let installation = self.slack.install(&app, "T0BENCH", TokenKind::Bot);
                    let refresh = installation.refresh_token.clone().unwrap_or_default();
                    let creds =
                        oauth_secret(&format!("{name}-creds"), &app.client_id, &app.client_secret, &refresh);
                    secrets.create(&PostParams::default(), &creds).await?;
                    let spec = SlackTokenSpec::new(
                        TokenType::OAuth,
                        &format!("{name}-creds"),
                        &format!("{name}-token"),
                    );
                    let token = SlackToken::new(&name, spec);
                    tokens.create(&PostParams::default(), &token).await?;
                    anyhow::Ok(installation.id)
                }
            })
            .buffer_unordered(32)
            .try_collect()
            .await?;
        Ok(seeded)
    }

    /// Waits until the emulator has served no request for `QUIET`: the controller's follow-up
    /// reconciles (woken by its own Secret writes) have finished.
    async fn settle(&self) {
        let mut last = self.kube.stats();
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < QUIET {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.kube.stats();
            if now != last {
                last = now;
                quiet_since = Instant::now();
            }
        }
    }

    fn snapshot_stats(&self) -> Counts {
        Counts {
            kube: self.kube.stats(),
            slack: SLACK_METHODS.iter().map(|m| (*m, self.slack.calls(m))).collect(),
            reconciles: self.ctx.as_ref().map_or(0, |c| c.metrics.reconciles.get()),
        }
    }

    /// Opens a window: Events, then counters. The Event list is itself a request, so it must
    /// stay outside the window it would otherwise inflate.
    async fn snapshot_before(&self) -> anyhow::Result<Snapshot> {
        let events = self.snapshot_events().await?;
        Ok(Snapshot { counts: self.snapshot_stats(), events })
    }

    /// Closes a window: counters, then Events.
    async fn snapshot_after(&self) -> anyhow::Result<Snapshot> {
        let counts = self.snapshot_stats();
        Ok(Snapshot { counts, events: self.snapshot_events().await? })
    }

    async fn snapshot_events(&self) -> anyhow::Result<EventTally> {
        let events: Api<K8sEvent> = Api::all(self.client.clone());
        let list = events.list(&ListParams::default()).await?;
        let rotated: Vec<&K8sEvent> =
            list.items.iter().filter(|e| e.reason.as_deref() == Some("Rotated")).collect();
        Ok(EventTally {
            objects: rotated.len(),
            // A repeated Event is recorded as a series on one object (kube's Recorder patches it).
            occurrences: rotated
                .iter()
                .map(|e| e.series.as_ref().map_or(1, |s| s.count.max(1) as usize))
                .sum(),
            due_notes: rotated
                .iter()
                .filter(|e| e.note.as_deref().is_some_and(|n| n.contains("(Due)")))
                .count(),
        })
    }
}

struct Counts {
    kube: kube_emulator::Stats,
    slack: Vec<(&'static str, usize)>,
    reconciles: u64,
}

#[derive(Clone, Copy)]
struct EventTally {
    objects: usize,
    occurrences: usize,
    /// Rotated Events whose note describes a scheduled rotation, "Rotated (Due); …".
    due_notes: usize,
}

struct Snapshot {
    counts: Counts,
    events: EventTally,
}

// ------------------------------------------------------------------ observer

/// What the bench sees through its own watches: when each output Secret's token changed (wall time
/// of the controller's clock), and the SlackTokens' status.
struct Observer {
    published: Arc<Mutex<Published>>,
    tokens: Store<SlackToken>,
}

#[derive(Default)]
struct Published {
    last: HashMap<String, Vec<u8>>,
    /// Times the token value changed, first publication included.
    changes: HashMap<String, Vec<Timestamp>>,
}

impl Observer {
    async fn start(env: &Env) -> anyhow::Result<Self> {
        let published = Arc::new(Mutex::new(Published::default()));
        let (listed, secrets_listed) = tokio::sync::oneshot::channel();
        tokio::spawn(watch_output_secrets(env.client.clone(), env.clock.clone(), published.clone(), listed));
        let (tokens, writer) = reflector::store();
        let api: Api<SlackToken> = Api::all(env.client.clone());
        let reflect = reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
        tokio::spawn(reflect.for_each(|_| futures::future::ready(())));
        tokens.wait_until_ready().await?;
        secrets_listed.await?;
        // A watcher sends its watch request just after its initial list: let both go out before
        // any window opens.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(Self { published, tokens })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Published> {
        self.published.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Output Secrets whose token changed at least `times` times.
    fn published_at_least(&self, times: usize) -> usize {
        self.lock().changes.values().filter(|c| c.len() >= times).count()
    }

    /// SlackTokens Ready=True whose status counts exactly `count` rotations.
    fn ready_with_count(&self, count: u64) -> usize {
        self.tokens
            .state()
            .iter()
            .filter_map(|t| t.status.as_ref())
            .filter(|s| s.rotation_count == count)
            .filter(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            .count()
    }

    /// `status.nextRotationTime` of every SlackToken, by output Secret name.
    fn due_times(&self) -> HashMap<String, Timestamp> {
        self.tokens
            .state()
            .iter()
            .filter_map(|t| {
                let next = t.status.as_ref()?.next_rotation_time.as_ref()?.parse().ok()?;
                Some((t.spec.secret_ref.name.clone(), next))
            })
            .collect()
    }

    /// For each token: when the watch saw its `nth` value (1 = first publication) minus when that
    /// rotation was due.
    fn rotation_latencies(&self, due: &HashMap<String, Timestamp>, nth: usize) -> Vec<Duration> {
        let published = self.lock();
        let mut out = Vec::new();
        let mut early = 0;
        for (secret, due_at) in due {
            let Some(seen) = published.changes.get(secret).and_then(|c| c.get(nth - 1)) else {
                continue;
            };
            match Duration::try_from(seen.duration_since(*due_at)) {
                Ok(d) => out.push(d),
                Err(_) => early += 1,
            }
        }
        if early > 0 {
            println!("  WARNING: {early} tokens were seen rotated BEFORE their nextRotationTime");
        }
        out
    }

    async fn wait(&self, what: &str, done: impl Fn(&Self) -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            anyhow::ensure!(Instant::now() < deadline, "gave up after {PATIENCE:?} waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// Records each change of an output Secret's `token` with the controller's clock. Only Secrets the
/// operator manages are watched (label selector), with their data, because we compare values.
/// Signals `listed` once its initial list is done, so that list falls outside every window.
async fn watch_output_secrets(
    client: Client,
    clock: SharedClock,
    published: Arc<Mutex<Published>>,
    listed: tokio::sync::oneshot::Sender<()>,
) {
    let api: Api<Secret> = Api::all(client);
    let config = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    let mut listed = Some(listed);
    while let Some(event) = events.next().await {
        let secret = match event {
            Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => s,
            Ok(watcher::Event::InitDone) => {
                if let Some(tx) = listed.take() {
                    let _ = tx.send(());
                }
                continue;
            }
            _ => continue,
        };
        let seen = clock.now();
        let Some(value) = secret.data.as_ref().and_then(|d| d.get("token")).map(|v| v.0.clone()) else {
            continue;
        };
        let mut p = published.lock().unwrap_or_else(|e| e.into_inner());
        let name = secret.name_any();
        if p.last.get(&name) != Some(&value) {
            p.last.insert(name.clone(), value);
            p.changes.entry(name).or_default().push(seen);
        }
    }
}

// ------------------------------------------------------------------ checks and idle window

/// Every installation must have been refreshed exactly `expected` times: more means a round
/// overlapped the measurement window, fewer that a rotation is missing.
fn check_refreshes(env: &Env, installations: &[String], expected: usize) {
    let counts: Vec<usize> = installations.iter().map(|i| env.slack.refreshes(i)).collect();
    let off = counts.iter().filter(|c| **c != expected).count();
    if off > 0 {
        let (min, max) = (counts.iter().min(), counts.iter().max());
        println!(
            "  WARNING: {off} installations not refreshed exactly {expected}x (min {min:?}, max {max:?}); figures above mix rounds"
        );
    }
}

/// Counts API requests while no rotation is due: from now until shortly before the earliest
/// `nextRotationTime`, at most `IDLE`.
async fn idle_window(env: &Env, observer: &Observer) {
    const MARGIN: Duration = Duration::from_millis(250);
    let next_due = observer.due_times().into_values().min();
    let available = next_due
        .map(|t| slack_token_operator::until(env.clock.now(), t))
        .unwrap_or(IDLE + MARGIN)
        .saturating_sub(MARGIN);
    let window = available.min(IDLE);
    println!();
    if window < Duration::from_millis(500) {
        println!("idle window: skipped, the next rotation is due in {available:?}; raise BENCH_TTL_SECS");
        return;
    }
    let before = env.kube.stats();
    tokio::time::sleep(window).await;
    let after = env.kube.stats();
    println!(
        "idle window of {:.2}s with no rotation due: API writes {} (create {}, update {}, patch {}, delete {}), reads {} (get {}, list {})",
        window.as_secs_f64(),
        after.writes() - before.writes(),
        after.create - before.create,
        after.update - before.update,
        after.patch - before.patch,
        after.delete - before.delete,
        (after.get + after.list) - (before.get + before.list),
        after.get - before.get,
        after.list - before.list,
    );
}

/// Sum of the operator's `failures_total` counters, read from its Prometheus text.
fn failures(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("slack_token_operator_failures_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

// ------------------------------------------------------------------ reports

fn print_first_tokens(n: usize, published: Duration, ready: Duration, before: &Snapshot, after: &Snapshot) {
    println!("\nfirst tokens (controller started with {n} SlackTokens already present)");
    println!("  all {n} output Secrets hold a token after {:>8.3} s", published.as_secs_f64());
    println!("  all {n} SlackTokens Ready after          {:>8.3} s", ready.as_secs_f64());
    println!(
        "  throughput                              {:>8.1} tokens/s",
        n as f64 / published.as_secs_f64()
    );
    println!("  per first token (includes the controller's initial list+watch):");
    print_per_rotation(n, &before.counts, &after.counts, &before.events, &after.events);
}

fn print_round(n: usize, start: &Counts, end: &Counts, ev_start: &EventTally, ev_end: &EventTally) {
    println!("\none scheduled round: {n} rotations, counted between two quiet points");
    print_per_rotation(n, start, end, ev_start, ev_end);
}

/// The per-rotation table: Kubernetes requests by verb, Slack calls by method, Events, reconciles.
fn print_per_rotation(n: usize, a: &Counts, b: &Counts, ev_a: &EventTally, ev_b: &EventTally) {
    let (s, t) = (&a.kube, &b.kube);
    println!("    {:<34} {:>10} {:>14}", "", "total", "per rotation");
    let row =
        |label: &str, total: u64| println!("    {label:<34} {total:>10} {:>14.2}", total as f64 / n as f64);
    row("k8s API writes", t.writes() - s.writes());
    row("  create", t.create - s.create);
    row("  update", t.update - s.update);
    row("  patch", t.patch - s.patch);
    row("  delete", t.delete - s.delete);
    row("k8s API reads (get + list)", (t.get + t.list) - (s.get + s.list));
    row("  get", t.get - s.get);
    row("  list", t.list - s.list);
    row("k8s watch requests", t.watch - s.watch);
    for ((method, x), (_, y)) in a.slack.iter().zip(&b.slack) {
        if y > x {
            row(&format!("Slack {method}"), (*y - *x) as u64);
        }
    }
    row("Events recorded (Rotated)", (ev_b.occurrences - ev_a.occurrences) as u64);
    row("  as new Event objects", (ev_b.objects - ev_a.objects) as u64);
    row("reconciles run", b.reconciles - a.reconciles);
}

fn print_latency(latencies: &[Duration]) {
    println!("\ndue -> rotated: watch saw the new token in the output Secret − status.nextRotationTime");
    println!("  (nextRotationTime has SECOND precision: the operator stores issue and expiry times rounded");
    println!("   to the second and schedules on them, so the due time it acts on is that whole second;");
    println!("   it lies up to 0.5 s either side of issue + ttl - renewBefore in unrounded time)");
    if latencies.is_empty() {
        println!("  no rotation observed");
        return;
    }
    let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let pick = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    println!(
        "  n {}   min {:.0} ms   median {:.0} ms   p95 {:.0} ms   max {:.0} ms",
        ms.len(),
        ms[0],
        pick(0.5),
        pick(0.95),
        ms[ms.len() - 1]
    );
}
