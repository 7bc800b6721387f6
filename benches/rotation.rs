//! Rotation benchmark: N OAuth SlackTokens whose rotations all fall due in the same second,
//! rotated by the real controller (cluster-wide) against the test ground's emulators
//! (the `testground` crate), in REAL time.
//!
//! Phases:
//! 1. seed N installations whose credentials hold a token that falls due at one whole second D,
//!    start the controller and time until every SlackToken is Ready (published as it is);
//! 2. the round at D: counts per rotation between two quiet points (`testground::scale`:
//!    Kubernetes API reads and writes by the emulator's counters, Slack calls, Events,
//!    reconciles) and the lateness of each rotation, from D to the moment the bench's watch saw
//!    the new token in the output Secret;
//! 3. an idle window with nothing due, in which the operator should read and write nothing.
//!
//! The bench observes the cluster only through watches opened before the measured windows, so
//! the emulator's request counts are the controller's alone.
//!
//! Run: `cargo bench --bench rotation` (env: BENCH_TOKENS=1000, BENCH_LEAD_SECS=30: how long
//! after seeding starts the round falls due).

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    api::{Api, ListParams},
    runtime::{watcher, WatchStreamExt},
    Client, ResourceExt,
};
use slack_token_operator::{Context, SharedClock, SlackClient, SlackToken, MANAGED_BY, MANAGED_BY_LABEL};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use testground::{
    scale::{idle_requests, settle, PerRotation},
    Ground, GroundConfig,
};

/// The allocator the operator binary ships with (`src/main.rs`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const NAMESPACE: &str = "bench";
/// No counter moved for this long = the controller has settled.
const QUIET: Duration = Duration::from_millis(750);
const PATIENCE: Duration = Duration::from_secs(300);
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
    let tokens = env_number("BENCH_TOKENS", 1000)?;
    let lead = Duration::from_secs(env_number("BENCH_LEAD_SECS", 30)? as u64);
    anyhow::ensure!(tokens > 0, "BENCH_TOKENS must be positive");
    // Multi-threaded and real time: the emulators, the controller and this driver share the cores.
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(tokens, lead))
}

fn env_number(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| anyhow::anyhow!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

async fn run(n: usize, lead: Duration) -> anyhow::Result<()> {
    let ground = Ground::start(GroundConfig::default()).await?;
    let clock = ground.clock.clone();
    println!("slack-token-operator rotation bench");
    println!(
        "  {n} OAuth SlackTokens in one namespace, all due in the same second; controller watching all namespaces, real time, {} cores",
        std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1)
    );
    let due = clock.now().checked_add(lead)?.round(jiff::Unit::Second)?;
    let seeding = Instant::now();
    let bots = ground.fleet(NAMESPACE, n, Some(due), 32).await?;
    println!("  seeded in {:.1} s; the round falls due at {due}", seeding.elapsed().as_secs_f64());
    let published = watch_output_secrets(ground.client.clone(), clock.clone()).await?;

    // Phase 1: the controller publishes every token as it is.
    let started = Instant::now();
    let slack = SlackClient::new(&ground.slack.base_url())?;
    let ctx = Context::new(ground.client.clone(), slack, clock.clone());
    tokio::spawn(slack_token_operator::run(ctx.clone(), vec![]));
    wait(&format!("{n} output Secrets holding a token"), || published.count_at_least(1) >= n).await?;
    println!(
        "\nfirst publication: all {n} output Secrets hold a token after {:.3} s",
        started.elapsed().as_secs_f64()
    );
    settle(&ground, Some(&ctx), QUIET, Duration::from_millis(50)).await;
    anyhow::ensure!(clock.now() < due, "phase 1 ran past the due time; raise BENCH_LEAD_SECS");

    // Phase 2: the round.
    let before = ground.tally(Some(&ctx));
    let round_cpu_start = cpu_seconds();
    wait(&format!("{n} rotations"), || published.count_at_least(2) >= n).await?;
    let round_cpu = cpu_seconds().zip(round_cpu_start).map(|(b, a)| b - a);
    let round_wall = clock.now().duration_since(due).as_secs_f64().max(0.0);
    settle(&ground, Some(&ctx), QUIET, Duration::from_millis(50)).await;
    let after = ground.tally(Some(&ctx));
    let refreshed = bots.iter().filter(|b| ground.slack.refreshes(&b.installation_id) == 1).count();
    if refreshed != n {
        println!("  WARNING: {} installations not refreshed exactly once", n - refreshed);
    }
    let per = PerRotation::between(&before, &after, n);
    println!("\none round: {n} rotations due at the same second, counted between two quiet points");
    print!("{}", per.table());
    let broken = per.broken_invariants();
    println!("  invariants: {}", if broken.is_empty() { "all hold".to_owned() } else { broken.join("; ") });
    print_lateness(&published.lateness(due, 2));
    println!(
        "  CPU of this whole process from the wait's start to the last rotation (emulators, bench and controller; {:.2} s after the due second): {}",
        round_wall,
        round_cpu.map_or("?".into(), |c| format!("{c:.3} s"))
    );

    // Phase 3: idle.
    let idle_start = ground.tally(Some(&ctx));
    let cpu_start = cpu_seconds();
    tokio::time::sleep(IDLE).await;
    let (writes, reads) = idle_requests(&idle_start, &ground.tally(Some(&ctx)));
    let cpu = cpu_seconds().zip(cpu_start).map(|(b, a)| b - a);
    println!(
        "\nidle window of {}s with nothing due: API writes {writes}, reads {reads}; CPU of this whole process (emulators and bench included) {}",
        IDLE.as_secs(),
        cpu.map_or("?".into(), |c| format!("{c:.3} s"))
    );
    println!("broken refresh chains: {} (must be 0)", ground.broken_chains());
    println!("issued pairs still unsaved in the operator: {}", ctx.pending().len());
    let tokens: Api<SlackToken> = Api::namespaced(ground.client.clone(), NAMESPACE);
    let ready = tokens
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|t| t.status.as_ref())
        .filter(|s| {
            s.rotation_count == 1 && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .count();
    println!("SlackTokens Ready with rotationCount 1: {ready} of {n}");
    Ok(())
}

/// User and system CPU time of this process so far, from /proc (Linux).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

async fn wait(what: &str, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "gave up after {PATIENCE:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// An output Secret's last token and when each of its values was first seen.
type Changes = (Vec<u8>, Vec<Timestamp>);

/// When each output Secret's token changed, by the controller's clock.
#[derive(Clone, Default)]
struct Published(Arc<Mutex<HashMap<String, Changes>>>);

impl Published {
    fn count_at_least(&self, times: usize) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|(_, c)| c.len() >= times).count()
    }

    /// For each token, when its `nth` value (1 = first publication) was seen, minus `due`.
    fn lateness(&self, due: Timestamp, nth: usize) -> Vec<f64> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.values()
            .filter_map(|(_, changes)| changes.get(nth - 1))
            .map(|seen| seen.duration_since(due).as_secs_f64() * 1000.0)
            .collect()
    }
}

/// Watches the operator's output Secrets (with data: values are compared) and records each
/// change of `token`. Returns once the initial list is done, so it falls outside every window.
async fn watch_output_secrets(client: Client, clock: SharedClock) -> anyhow::Result<Published> {
    let published = Published::default();
    let api: Api<Secret> = Api::all(client);
    let config = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let (listed, on_listed) = tokio::sync::oneshot::channel();
    let record = published.clone();
    tokio::spawn(async move {
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
            let mut map = record.0.lock().unwrap_or_else(|e| e.into_inner());
            let entry = map.entry(secret.name_any()).or_default();
            if entry.0 != value {
                entry.0 = value;
                entry.1.push(seen);
            }
        }
    });
    on_listed.await?;
    // A watcher sends its watch request just after its initial list: let it go out first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(published)
}

fn print_lateness(ms: &[f64]) {
    println!("\nlateness, due -> rotated: the bench's watch saw the new token in the output Secret − the due second");
    if ms.is_empty() {
        println!("  no rotation observed");
        return;
    }
    let mut ms = ms.to_vec();
    ms.sort_by(f64::total_cmp);
    let pick = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    let early = ms.iter().filter(|m| **m < 0.0).count();
    println!(
        "  n {}   min {:.0} ms   median {:.0} ms   p95 {:.0} ms   p99 {:.0} ms   max {:.0} ms   (before the due second: {early})",
        ms.len(),
        ms[0],
        pick(0.5),
        pick(0.95),
        pick(0.99),
        ms[ms.len() - 1]
    );
}
