//! Command line: `run` (the operator), `crd`, `status`, `rotate`, `handover`, and with the `emulator` feature `demo` and `emulate`.

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use slack_token_operator::{
    check_slack_url,
    leader::{self, Candidate, LeaseTimes},
    Context, GoDuration, Journal, Settings, SlackClient, SystemClock,
};
use std::{net::SocketAddr, path::PathBuf, sync::Arc};

/// Heap profiling, only in a build with the `dhat-heap` feature (see `heap_profile`).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;
/// jemalloc: it gives memory back after a burst, and is faster here (figures in Cargo.toml).
#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `--version`: the crate's version and the git commit it was built from (see `build.rs`).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (revision ", env!("SOURCE_REVISION"), ")");

#[derive(Parser)]
#[command(name = "slack-token-operator", version = VERSION, about = "Keeps Slack tokens fresh in Kubernetes Secrets")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator (the default).
    Run(RunArgs),
    /// Print the SlackToken CustomResourceDefinition as YAML.
    Crd,
    /// Show every SlackToken: Ready and why, expiry, next rotation, last failure. Exits 1 if any
    /// is not Ready (2 if they cannot be listed).
    Status(slack_token_operator::overview::StatusArgs),
    /// Ask the operator to rotate a SlackToken now (as `kubectl slacktoken rotate`).
    Rotate(slack_token_operator::plugin::RotateArgs),
    /// Hand a re-issued token to a Manual SlackToken (as `kubectl slacktoken handover`).
    Handover(slack_token_operator::plugin::HandoverArgs),
    /// Run the operator against built-in Kubernetes and Slack emulators and print each rotation.
    #[cfg(feature = "emulator")]
    Demo(slack_token_operator::demo::DemoArgs),
    /// Serve the Kubernetes and Slack emulators for people, tests and benchmarks.
    #[cfg(feature = "emulator")]
    Emulate(slack_token_operator::demo::EmulateArgs),
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Base URL of Slack's Web API (GovSlack: https://slack-gov.com/api/).
    #[arg(long, env = "SLACK_API_URL", default_value = "https://slack.com/api/")]
    slack_api_url: String,
    /// Namespace to watch; repeat for several. Default: all namespaces.
    #[arg(long = "namespace", env = "WATCH_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Only SlackTokens with matching labels (a label selector, as `kubectl get -l`): several
    /// operators, each with its own selector, split a cluster's SlackTokens; each elects its own
    /// leader (the Lease name follows the selector).
    #[arg(long, env = "LABEL_SELECTOR")]
    selector: Option<String>,
    /// Take a Lease before working, so that only one replica rotates.
    #[arg(long, env = "LEADER_ELECT", default_value_t = false)]
    leader_elect: bool,
    /// How often long-lived (Manual) tokens are checked with auth.test.
    #[arg(long, env = "HEALTH_CHECK_INTERVAL", default_value = "6h")]
    health_check_interval: GoDuration,
    /// Directory for the crash journal: each token pair Slack issues is written here before
    /// anything else and kept until its credentials Secret holds it, so a restart of the
    /// container never loses one. Use a volume that outlives the container (an emptyDir).
    #[arg(long, env = "JOURNAL_DIR")]
    journal_dir: Option<PathBuf>,
    /// How long a leader's Lease holds after its last renewal (with --leader-elect).
    #[arg(long, env = "LEASE_DURATION", default_value = "15s")]
    lease_duration: GoDuration,
    /// After SIGTERM, how long in-flight rotations may take to save before the process exits
    /// anyway (what is not saved by then is in the journal). Keep it under the pod's
    /// terminationGracePeriodSeconds.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "20s")]
    shutdown_timeout: GoDuration,
    /// Allow a plain-http Slack API URL that is not on this machine (only for testing).
    #[arg(long, env = "ALLOW_INSECURE_SLACK_URL", default_value_t = false)]
    allow_insecure_slack_url: bool,
}

#[derive(ValueEnum, Clone, Copy)]
enum LogFormat {
    Json,
    Text,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    match format {
        LogFormat::Json => slack_token_operator::logs::json(filter, std::io::stdout).init(),
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Installed as `kubectl-slacktoken` (a copy or symlink), this binary is the kubectl plugin.
    if slack_token_operator::plugin::invoked_as_plugin(std::env::args_os().next().as_deref()) {
        let cli = slack_token_operator::plugin::Cli::parse();
        std::process::exit(slack_token_operator::plugin::main(cli).await);
    }
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => {
            print!("{}", slack_token_operator::crd_yaml());
            Ok(())
        }
        Some(Command::Status(args)) => match slack_token_operator::overview::status(args).await {
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(2)
            }
        },
        Some(Command::Rotate(args)) => std::process::exit(slack_token_operator::plugin::rotate(args).await),
        Some(Command::Handover(args)) => {
            std::process::exit(slack_token_operator::plugin::handover(args).await)
        }
        Some(Command::Run(args)) => run(args).await,
        #[cfg(feature = "emulator")]
        Some(Command::Demo(args)) => slack_token_operator::demo::demo(args).await,
        #[cfg(feature = "emulator")]
        Some(Command::Emulate(args)) => slack_token_operator::demo::emulate(args).await,
        None => run(cli.run).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let heap_profile = heap_profile();
    init_logging(args.log_format);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), revision = env!("SOURCE_REVISION"), "starting");
    check_slack_url(&args.slack_api_url, args.allow_insecure_slack_url).map_err(anyhow::Error::msg)?;
    let client =
        slack_token_operator::kube_client::infer().await.context("connecting to the Kubernetes API")?;
    let slack = SlackClient::new(&args.slack_api_url).context("building the Slack client")?;
    let journal = open_journal(args.journal_dir.as_deref())?;
    let settings = Settings { health_check_interval: args.health_check_interval.as_std() };
    let ctx = Context::with_journal(client.clone(), slack, Arc::new(SystemClock), settings, journal);
    let http = serve_probes(args.http_addr, &ctx).await?;
    // SIGTERM (or Ctrl-C) sets `stop`. The controller hears the signal too: it stops taking work
    // and waits for its running reconciles; `deadline` bounds that wait.
    let shutdown_timeout = args.shutdown_timeout.as_std();
    let stop = on_shutdown_signal(shutdown_timeout);
    let deadline = {
        let stop = stop.clone();
        async move {
            stopped(stop).await;
            tokio::time::sleep(shutdown_timeout).await;
        }
    };
    let work = operate(&ctx, client, args, stop);
    let result = tokio::select! {
        biased;
        result = work => result,
        () = heap_profile => Ok(()),
        result = http => result.context("http server task")?.context("http server"),
        () = deadline => {
            report_cut_off(&ctx);
            Ok(())
        }
    };
    tracing::info!(unsaved = ctx.pending().len(), "stopped");
    result
}

/// The journal replayed, leadership won (with --leader-elect), then the controller until the
/// shutdown signal or the loss of leadership. A graceful exit hands the Lease over at once
/// instead of leaving it to run out.
async fn operate(
    ctx: &Arc<Context>,
    client: kube::Client,
    args: RunArgs,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    replay_journal(ctx).await;
    let mut leadership = match args.leader_elect {
        true => {
            let candidate = Candidate::from_env(
                &leader::lease_name(args.selector.as_deref()),
                LeaseTimes::lasting(args.lease_duration.as_std()),
            );
            tokio::select! {
                leadership = leader::acquire(client, candidate, ctx.health(), ctx.metrics().leader.clone()) => Some(leadership),
                // A standby has nothing to finish.
                () = stopped(stop.clone()) => return Ok(()),
            }
        }
        false => {
            ctx.metrics().leader.set(1);
            None
        }
    };
    if !*stop.borrow() {
        tracing::info!(namespaces = ?args.namespaces, selector = ?args.selector, slack = %args.slack_api_url, "starting controller");
        let scope = slack_token_operator::Scope { namespaces: args.namespaces, selector: args.selector };
        let lost = async {
            match &mut leadership {
                Some(l) => l.lost().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = slack_token_operator::run_scoped(ctx.clone(), scope) => {}
            () = lost => anyhow::bail!("lost leadership; exiting so that only the leader rotates"),
        }
    }
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    Ok(())
}

/// Returns once the shutdown flag is set.
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// The crash journal in `dir`; without one, a warning of what that risks.
fn open_journal(dir: Option<&std::path::Path>) -> anyhow::Result<Option<Journal>> {
    let Some(dir) = dir else {
        tracing::warn!("no --journal-dir: a token pair Slack issued lives only in memory until its credentials Secret is written; a restart inside that window loses it and breaks that app's refresh chain");
        return Ok(None);
    };
    Ok(Some(Journal::open(dir).with_context(|| format!("opening the journal in {}", dir.display()))?))
}

/// /healthz, /readyz and /metrics on `addr`. They answer from the start: /readyz says 503 until
/// the watches have synced.
async fn serve_probes(
    addr: SocketAddr,
    ctx: &Context,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    }
    Ok(tokio::spawn(slack_token_operator::http::serve(listener, ctx.endpoints())))
}

/// A flag set once SIGTERM (or Ctrl-C) arrives.
fn on_shutdown_signal(timeout: std::time::Duration) -> tokio::sync::watch::Receiver<bool> {
    let (signalled, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!(
            timeout_secs = timeout.as_secs(),
            "shutting down: no new rotations, running ones may finish"
        );
        let _ = signalled.send(true);
    });
    stop
}

/// Before any work, on every replica: pairs a previous run of this container issued but did not
/// save are saved now (or found superseded).
async fn replay_journal(ctx: &Context) {
    if ctx.pending().journal().is_none() {
        return;
    }
    let r = ctx.replay_journal().await;
    tracing::info!(
        saved = r.saved,
        already_saved = r.already_saved,
        superseded = r.superseded,
        dropped = r.dropped,
        damaged = r.damaged,
        left_pending = r.left_pending,
        "journal replayed"
    );
}

/// After the shutdown timeout: what was cut off, and only when something was: reconciles still
/// running, and pairs Slack issued that are not saved (by credentials Secret).
fn report_cut_off(ctx: &Context) {
    let running = ctx.running();
    let mut unsaved: Vec<String> =
        ctx.pending().all().iter().map(|e| format!("{}/{}", e.namespace, e.name)).collect();
    unsaved.sort();
    match (running.is_empty() && unsaved.is_empty(), ctx.pending().journal().is_some()) {
        (true, _) => tracing::info!("shutdown timeout: the controller had not stopped; no rotation was running and no pair is unsaved"),
        (false, true) => tracing::warn!(?running, ?unsaved, "shutdown timeout: exiting with rotations still running (their pairs are journaled)"),
        (false, false) => tracing::warn!(?running, ?unsaved, "shutdown timeout: exiting with rotations still running (unsaved pairs are lost: no --journal-dir)"),
    }
}

/// With the `dhat-heap` feature and `SLACK_TOKEN_OPERATOR_DHAT=FILE`: every allocation from here
/// on is recorded by its call stack, and SIGUSR1 writes FILE (bytes per call stack at the peak
/// and at that moment) while the operator goes on. Never completes. The memory bench uses it.
#[cfg(feature = "dhat-heap")]
fn heap_profile() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let profiler = std::env::var_os("SLACK_TOKEN_OPERATOR_DHAT")
        .map(|file| dhat::Profiler::builder().file_name(file).trim_backtraces(Some(40)).build());
    let usr1 = signal(SignalKind::user_defined1());
    async move {
        if let (Some(profiler), Ok(mut usr1)) = (profiler, usr1) {
            usr1.recv().await;
            drop(profiler);
            tracing::info!("heap profile written");
        }
        std::future::pending().await
    }
}

#[cfg(not(feature = "dhat-heap"))]
fn heap_profile() -> std::future::Pending<()> {
    std::future::pending()
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
