//! The operator as its own process (`slack-token-operator run`), to be killed for real.
//!
//! Its JSON log lines are collected as they come, so a test can wait for one ("starting
//! controller", "became leader") and read timings from them after the process is gone.

use anyhow::Context as _;
use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

/// How to start one operator process.
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    /// The `slack-token-operator` binary (tests: `env!("CARGO_BIN_EXE_slack-token-operator")`).
    pub binary: PathBuf,
    pub kubeconfig: PathBuf,
    pub slack_url: String,
    pub namespaces: Vec<String>,
    pub journal_dir: Option<PathBuf>,
    /// `--leader-elect` with this Lease duration.
    pub leader_elect: Option<Duration>,
    /// The Pod name the process reports (the leader-election identity).
    pub pod_name: String,
    pub shutdown_timeout: Duration,
    /// `RUST_LOG` of the process.
    pub log_filter: String,
    /// More environment variables of the process.
    pub env: Vec<(String, String)>,
    /// Run the operator's image with podman instead of `binary` (see [`Container`]).
    pub container: Option<Container>,
}

/// The operator's image run by podman on the host's network, the kubeconfig mounted read-only
/// at the same path: `podman run ARGS -e … -v KUBECONFIG IMAGE run …`. podman passes SIGTERM on
/// to the container and exits with its exit code, so the process helpers work unchanged.
#[derive(Clone, Debug)]
pub struct Container {
    pub podman: PathBuf,
    /// Arguments of `podman` before `run` (e.g. `--runtime runc`).
    pub global_args: Vec<String>,
    /// Arguments of `podman run` (security settings, mounts, a name).
    pub run_args: Vec<String>,
    pub image: String,
}

impl OperatorOptions {
    pub fn new(binary: impl Into<PathBuf>, kubeconfig: PathBuf, slack_url: String) -> Self {
        Self {
            binary: binary.into(),
            kubeconfig,
            slack_url,
            namespaces: Vec::new(),
            journal_dir: None,
            leader_elect: None,
            pod_name: "operator-0".into(),
            shutdown_timeout: Duration::from_secs(20),
            log_filter: "info,slack_token_operator=debug,kube=warn".into(),
            env: Vec::new(),
            container: None,
        }
    }

    /// The operator's command line after the binary (`run …`).
    fn run_args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--slack-api-url".into(),
            self.slack_url.clone(),
            "--http-addr".into(),
            "127.0.0.1:0".into(),
            "--log-format".into(),
            "json".into(),
            "--shutdown-timeout".into(),
            format!("{}ms", self.shutdown_timeout.as_millis()),
        ];
        for ns in &self.namespaces {
            args.extend(["--namespace".into(), ns.clone()]);
        }
        if let Some(dir) = &self.journal_dir {
            args.extend(["--journal-dir".into(), dir.display().to_string()]);
        }
        if let Some(lease) = self.leader_elect {
            args.extend([
                "--leader-elect".into(),
                "--lease-duration".into(),
                format!("{}s", lease.as_secs().max(2)),
            ]);
        }
        args
    }

    /// The operator's environment.
    fn env_vars(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            ("KUBECONFIG".into(), self.kubeconfig.display().to_string()),
            ("RUST_LOG".into(), self.log_filter.clone()),
            ("POD_NAME".into(), self.pod_name.clone()),
            ("POD_NAMESPACE".into(), "default".into()),
        ];
        env.extend(self.env.iter().cloned());
        env
    }
}

/// A running (or stopped) operator process. Dropping it kills it.
pub struct OperatorProcess {
    child: Child,
    logs: Arc<Mutex<Vec<serde_json::Value>>>,
    pub options: OperatorOptions,
    /// Set by whoever waited for it to start (see `crash`).
    pub started_in: Duration,
}

impl OperatorProcess {
    pub fn spawn(options: &OperatorOptions) -> anyhow::Result<Self> {
        let (args, env) = (options.run_args(), options.env_vars());
        let kubeconfig = options.kubeconfig.display().to_string();
        let mut command = match &options.container {
            None => {
                let mut command = Command::new(&options.binary);
                command.args(&args).envs(env);
                command
            }
            Some(c) => {
                let mut command = Command::new(&c.podman);
                command.args(&c.global_args).arg("run").args(&c.run_args);
                command.args(["--network", "host", "-v", &format!("{kubeconfig}:{kubeconfig}:ro")]);
                for (k, v) in env {
                    command.args(["-e", &format!("{k}={v}")]);
                }
                command.arg(&c.image).args(&args);
                command
            }
        };
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().with_context(|| format!("starting {command:?}"))?;
        let logs: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let value = serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line));
                    logs.lock().unwrap_or_else(|e| e.into_inner()).push(value);
                }
            });
        }
        Ok(Self { child, logs, options: options.clone(), started_in: Duration::ZERO })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (a name as `kill -NAME` takes it) to the process.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {} failed", self.pid());
        Ok(())
    }

    /// Pairs in the process's journal (`--journal-dir`): on disk until saved, or dropped as
    /// superseded. 0 without a journal.
    pub fn journaled(&self) -> usize {
        let Some(dir) = &self.options.journal_dir else { return 0 };
        let entries = std::fs::read_dir(dir).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
        entries.iter().filter(|e| e.path().extension().is_some_and(|x| x == "pair")).count()
    }

    /// SIGKILL: no handler runs, memory is gone; only what is on disk remains.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, as the kubelet sends before a pod stops.
    pub fn terminate(&self) -> anyhow::Result<()> {
        self.signal("TERM")
    }

    /// SIGSTOP: the process is frozen (a stalled node, a long GC pause, a debugger).
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("STOP")
    }

    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("CONT")
    }

    /// Waits up to `within` for the process to exit by itself.
    pub async fn exited(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// GET `path` (`/readyz`, `/metrics`) from the process's HTTP server, once it has logged its
    /// address: the status and body, or `None` if it cannot be reached (yet).
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let line = self.lines("serving /healthz, /readyz and /metrics").into_iter().next()?;
        let addr = line.pointer("/fields/addr")?.as_str()?.to_owned();
        let response = reqwest::get(format!("http://{addr}{path}")).await.ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    }

    /// The value of the gauge `name` (no labels) on `/metrics`.
    pub async fn gauge(&self, name: &str) -> Option<i64> {
        let (_, body) = self.get("/metrics").await?;
        body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Every log line so far (JSON objects; a line that was not JSON as a string).
    pub fn logs(&self) -> Vec<serde_json::Value> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Log lines whose message is `message`.
    pub fn lines(&self, message: &str) -> Vec<serde_json::Value> {
        self.logs()
            .into_iter()
            .filter(|l| l.pointer("/fields/message").and_then(|m| m.as_str()) == Some(message))
            .collect()
    }

    /// Waits until a log line with `message` appears.
    pub async fn logged(&self, message: &str, within: Duration) -> anyhow::Result<serde_json::Value> {
        super::eventually(
            &format!("the operator to log {message:?}"),
            within,
            Duration::from_millis(10),
            || async { self.lines(message).into_iter().next() },
        )
        .await
        .with_context(|| format!("logs so far: {:#?}", self.logs().iter().rev().take(20).collect::<Vec<_>>()))
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
