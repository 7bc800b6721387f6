//! Memory benchmark: resident memory of the operator PROCESS for 1,000, 10,000 and 20,000
//! SlackTokens, and with 20,000 unrelated 100 KiB Secrets in the cluster.
//!
//! In-process the controller's memory cannot be told apart from the emulators' and the bench's, so
//! each scenario runs two child processes built from this package:
//! `slack-token-operator emulate --kubeconfig …` (both emulators) and `slack-token-operator run`
//! against it (the operator as deployed: `SystemClock`, all namespaces, no leader election;
//! started as the test ground starts it, `testground::process`). The
//! bench seeds the cluster through the kubeconfig and Slack through the emulator's `/admin/` HTTP
//! endpoints, waits until every SlackToken is Ready, and reads the operator's VmRSS (now) and
//! VmHWM (peak) from `/proc/<pid>/status`. Slack tokens live 12h, so nothing rotates during a run.
//!
//! Run: `cargo bench --bench memory` (env: BENCH_MEMORY_SCENARIOS="1000:0,1000:20000,10000:0,10000:20000,20000:0",
//! each `tokens:unrelated_secrets`; BENCH_MEMORY_LOG: the operator's RUST_LOG, default `error`;
//! BENCH_MEMORY_SETTLE_SECS: also read the operator's memory that long after Ready, e.g. 100 for
//! after kube's connection pool has closed the connections the start-up burst opened, idle 90 s).
//!
//! Where the bytes go: build the operator with the `dhat-heap` feature and symbols, and give the
//! bench that binary and a directory; the measured operator then writes a DHAT heap profile
//! (bytes per call stack at its peak and after Ready), summarised by `scripts/dhat-summary`:
//!
//! ```text
//! cargo build --profile profiling --features dhat-heap --bin slack-token-operator
//! BENCH_OPERATOR_BIN=target/profiling/slack-token-operator BENCH_MEMORY_DHAT=/tmp/dhat \
//!   BENCH_MEMORY_SCENARIOS=10000:0 cargo bench --bench memory
//! scripts/dhat-summary /tmp/dhat/dhat-10000-0.json
//! ```
//! (Recording every allocation slows that operator down: its times and resident sizes are not
//! the figures, only the bytes per site are.)

use anyhow::Context as _;
use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    api::{Api, ListParams, PostParams},
    Client,
};
use serde_json::{json, Value};
use slack_token_operator::{oauth_secret, SlackToken, SlackTokenSpec, TokenType};
use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};
use testground::process::{OperatorOptions, OperatorProcess};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

const BIN: &str = env!("CARGO_BIN_EXE_slack-token-operator");
const NAMESPACE: &str = "bench";
const DEFAULT_SCENARIOS: &str = "1000:0,1000:20000,10000:0,10000:20000,20000:0";
/// Size of each unrelated Secret's payload: clusters hold Helm releases (often near the 1 MiB
/// limit), certificates, etc.
const UNRELATED_SECRET_BYTES: usize = 100 * 1024;
/// Requests the bench keeps in flight while seeding.
const SEED_CONCURRENCY: usize = 32;
const PATIENCE: Duration = Duration::from_secs(600);

fn main() -> anyhow::Result<()> {
    // With harness = false, a bench target is a plain program: run only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("memory bench: run it with `cargo bench --bench memory`; skipping");
        return Ok(());
    }
    let scenarios =
        parse_scenarios(&std::env::var("BENCH_MEMORY_SCENARIOS").unwrap_or(DEFAULT_SCENARIOS.into()))?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        println!("slack-token-operator memory bench: `{BIN} run` as its own process");
        println!(
            "{:>9} {:>10} {:>14} {:>12} {:>12} {:>14} {:>14} {:>14} {:>10} {:>10} {:>14}",
            "tokens", "unrelated", "all Ready (s)", "VmRSS MiB", "VmHWM MiB", "idle RSS MiB", "emulator RSS", "op. sockets", "op. CPU s", "emu. CPU s", "settled MiB"
        );
        for (tokens, unrelated) in scenarios {
            let row = scenario(tokens, unrelated).await?;
            let settled = row.settled.as_ref().map_or("-".into(), |m| format!("{:.1} ({})", mib(m.rss_kib), m.sockets));
            println!(
                "{tokens:>9} {unrelated:>10} {:>14.1} {:>12.1} {:>12.1} {:>14.1} {:>14.1} {:>14} {:>10.1} {:>10.1} {settled:>14}",
                row.ready_after.as_secs_f64(),
                mib(row.operator.rss_kib),
                mib(row.operator.hwm_kib),
                mib(row.baseline_rss_kib),
                mib(row.emulator_rss_kib),
                row.operator.sockets,
                row.operator.cpu_secs,
                row.emulator_cpu_secs,
            );
        }
        println!("VmRSS: operator resident after every SlackToken is Ready plus 2 s; VmHWM: its peak resident.");
        println!("idle RSS: a first operator process on the same cluster before any SlackToken existed (the");
        println!("unrelated Secrets already there), 3 s after start. emulator RSS (both emulators) for scale only.");
        println!("op. sockets: sockets the operator holds open when VmRSS is read (idle pooled connections).");
        println!("op. CPU s: the operator's CPU time from start to VmRSS; emu. CPU s: both emulators' while it made");
        println!("every SlackToken Ready (on a machine of 2 cores, all Ready cannot be faster than their sum / 2).");
        println!("settled: VmRSS (and open sockets) BENCH_MEMORY_SETTLE_SECS after Ready, with nothing to do meanwhile.");
        anyhow::Ok(())
    })
}

fn parse_scenarios(text: &str) -> anyhow::Result<Vec<(usize, usize)>> {
    text.split(',')
        .map(|s| {
            let (t, u) = s.trim().split_once(':').context("scenario is tokens:unrelated_secrets")?;
            Ok((t.parse()?, u.parse()?))
        })
        .collect()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

struct Row {
    ready_after: Duration,
    operator: Memory,
    baseline_rss_kib: u64,
    emulator_rss_kib: u64,
    /// CPU seconds of both emulators while the operator made every SlackToken Ready.
    emulator_cpu_secs: f64,
    /// The operator's memory BENCH_MEMORY_SETTLE_SECS after Ready, if asked for.
    settled: Option<Memory>,
}

/// One cluster: start the emulators, seed, start the operator, wait for Ready, read its memory.
async fn scenario(tokens: usize, unrelated: usize) -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    let (mut emulator, slack_url) = start_emulators(&kubeconfig).await?;
    let client = client_for(&kubeconfig).await?;
    testground::install_crd(&client).await?;
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await?;
    seed_unrelated_secrets(&client, unrelated).await?;

    // Baseline: the operator with the unrelated Secrets but no SlackToken, after its initial sync.
    let mut operator = start_operator(&kubeconfig, &slack_url, None)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let baseline = memory(operator.pid())?;
    operator.kill()?;

    seed_tokens(&client, &slack_url, tokens).await?;
    if let Some(file) = heap_profile_file(tokens, unrelated) {
        std::fs::create_dir_all(file.parent().context("a directory")?)?;
        let _ = std::fs::remove_file(&file);
    }
    let mut operator = start_operator(&kubeconfig, &slack_url, heap_profile_file(tokens, unrelated))?;
    let emulator_pid = emulator.id().context("emulator exited")?;
    let emulator_cpu = cpu_seconds(emulator_pid)?;
    let started = Instant::now();
    wait_all_ready(&client, tokens).await?;
    let ready_after = started.elapsed();
    let emulator_cpu_secs = cpu_seconds(emulator_pid)? - emulator_cpu;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut row = Row {
        ready_after,
        operator: memory(operator.pid())?,
        baseline_rss_kib: baseline.rss_kib,
        emulator_rss_kib: memory(emulator_pid)?.rss_kib,
        emulator_cpu_secs,
        settled: None,
    };
    let settle: u64 = std::env::var("BENCH_MEMORY_SETTLE_SECS").map_or(Ok(0), |s| s.parse())?;
    if settle > 0 {
        tokio::time::sleep(Duration::from_secs(settle)).await;
        row.settled = Some(memory(operator.pid())?);
    }
    if let Some(file) = heap_profile_file(tokens, unrelated) {
        operator.signal("USR1")?;
        wait_written(&file).await?;
        println!(
            "  heap profile of the operator ({tokens} tokens, {unrelated} unrelated): {}",
            file.display()
        );
    }
    operator.kill()?;
    stop(&mut emulator).await;
    Ok(row)
}

/// `slack-token-operator emulate`; returns the child and the Slack API base URL it printed.
async fn start_emulators(kubeconfig: &Path) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(BIN)
        .args(["emulate", "--token-lifetime", "12h", "--kubeconfig"])
        .arg(kubeconfig)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the emulators")?;
    let stdout = child.stdout.take().context("emulator stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    // "ready: kubernetes http://… (kubeconfig …), slack http://127.0.0.1:PORT/api/ (admin …)"
    while let Some(line) = lines.next_line().await? {
        let slack =
            line.strip_prefix("ready: ").and_then(|l| l.split_whitespace().find(|w| w.ends_with("/api/")));
        if let Some(slack) = slack {
            let slack = slack.to_owned();
            // Keep draining stdout so the child never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok((child, slack));
        }
    }
    anyhow::bail!("the emulator exited before printing its addresses")
}

async fn client_for(kubeconfig: &Path) -> anyhow::Result<Client> {
    let config = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

/// The operator as deployed, all namespaces, logs at error only unless BENCH_MEMORY_LOG says
/// otherwise (they would mostly measure the pipe). With `profile`, it records its heap
/// (see the module's doc).
fn start_operator(
    kubeconfig: &Path,
    slack_url: &str,
    profile: Option<std::path::PathBuf>,
) -> anyhow::Result<OperatorProcess> {
    let binary = std::env::var("BENCH_OPERATOR_BIN").unwrap_or(BIN.into());
    let mut options = OperatorOptions::new(binary, kubeconfig.to_owned(), slack_url.to_owned());
    options.log_filter = std::env::var("BENCH_MEMORY_LOG").unwrap_or("error".into());
    if let Some(file) = profile {
        options.env.push(("SLACK_TOKEN_OPERATOR_DHAT".into(), file.display().to_string()));
    }
    OperatorProcess::spawn(&options)
}

/// Where the measured operator of a scenario writes its heap profile (BENCH_MEMORY_DHAT=DIR).
fn heap_profile_file(tokens: usize, unrelated: usize) -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("BENCH_MEMORY_DHAT")?;
    Some(Path::new(&dir).join(format!("dhat-{tokens}-{unrelated}.json")))
}

/// Waits until `file` exists and has stopped growing.
async fn wait_written(file: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    let mut last = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let size = std::fs::metadata(file).map(|m| m.len()).ok();
        if size.is_some_and(|s| s > 0) && size == last {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "no heap profile in {}", file.display());
        last = size;
    }
}

async fn stop(child: &mut Child) {
    // Only our own child, by its handle.
    let _ = child.kill().await;
}

/// Opaque Secrets the operator must never load: it watches only labelled Secrets' metadata.
async fn seed_unrelated_secrets(client: &Client, count: usize) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let payload = "x".repeat(UNRELATED_SECRET_BYTES);
    stream::iter(0..count)
        .map(|i| {
            let (secrets, payload) = (secrets.clone(), payload.clone());
            async move {
                let secret: Secret = serde_json::from_value(json!({
                    "metadata": {"name": format!("unrelated-{i}"), "labels": {"app": "something-else"}},
                    "stringData": {"payload": payload},
                }))?;
                secrets.create(&PostParams::default(), &secret).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect::<()>()
        .await
}

/// N rotating installations seeded through the Slack emulator's admin endpoints, each with its
/// credentials Secret and SlackToken.
async fn seed_tokens(client: &Client, slack_api: &str, count: usize) -> anyhow::Result<()> {
    let admin = slack_api.trim_end_matches('/').trim_end_matches("api").to_owned() + "admin";
    let http = reqwest::Client::new();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let tokens: Api<SlackToken> = Api::namespaced(client.clone(), NAMESPACE);
    stream::iter(0..count)
        .map(|i| {
            let (http, admin, secrets, tokens) =
                (http.clone(), admin.clone(), secrets.clone(), tokens.clone());
            async move {
                let app = post(&http, &format!("{admin}/apps"), json!({"token_rotation": true})).await?;
                let installation = post(
                    &http,
                    &format!("{admin}/installations"),
                    json!({"client_id": app["client_id"], "team_id": "T0MEM"}),
                )
                .await?;
                let name = format!("stk-{i}");
                let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                let creds = oauth_secret(
                    &format!("{name}-creds"),
                    &text(&app["client_id"]),
                    &text(&app["client_secret"]),
                    &text(&installation["refresh_token"]),
                );
                secrets.create(&PostParams::default(), &creds).await?;
                let spec =
                    SlackTokenSpec::new(TokenType::OAuth, &format!("{name}-creds"), &format!("{name}-token"));
                let token = SlackToken::new(&name, spec);
                tokens.create(&PostParams::default(), &token).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect::<()>()
        .await
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> anyhow::Result<Value> {
    let response = http.post(url).json(&body).send().await?.error_for_status()?;
    Ok(response.json().await?)
}

/// Polls (once a second, to stay out of the operator's way) until every SlackToken is Ready.
async fn wait_all_ready(client: &Client, count: usize) -> anyhow::Result<()> {
    let tokens: Api<SlackToken> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let list = tokens.list(&ListParams::default()).await?;
        let ready = list
            .items
            .iter()
            .filter_map(|t| t.status.as_ref())
            .filter(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            .count();
        if ready >= count {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {ready}/{count} SlackTokens Ready after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
    /// Open sockets: the emulators speak HTTP/1.1, so every concurrent request is a connection.
    sockets: usize,
    /// CPU time used so far.
    cpu_secs: f64,
}

/// VmRSS and VmHWM of a child from /proc/<pid>/status (Linux only).
fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status.lines().find(|l| l.starts_with(name)).context("field in /proc status")?;
        Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
    };
    let sockets = std::fs::read_dir(format!("/proc/{pid}/fd"))?
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count();
    Ok(Memory { rss_kib: field("VmRSS:")?, hwm_kib: field("VmHWM:")?, sockets, cpu_secs: cpu_seconds(pid)? })
}

/// User and system CPU time of a child so far, from /proc/<pid>/stat (Linux only).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat.rsplit_once(") ").context("stat")?.1.split_whitespace().collect();
    let ticks =
        |i: usize| -> anyhow::Result<f64> { Ok(fields.get(i).context("stat field")?.parse::<f64>()?) };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}
