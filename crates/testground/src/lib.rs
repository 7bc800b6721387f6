//! The test ground: both emulators in this process, the operator in this process or as its own
//! process, and the fixtures that tests (end-to-end, chart, CLI, crash, HA, scale) and benchmarks
//! share. A dev-dependency of the operator crate: no build of the operator contains it. The
//! emulators start as the `demo` command starts them ([`slack_token_operator::demo::ground`]).
//!
//! - [`Ground`]: the Kubernetes emulator and the Slack emulator, the CRD installed, a kubeconfig
//!   written. It dereferences to [`Apis`], so `ground.slack`, `ground.client` and the fixtures
//!   are at hand.
//! - [`Apis`]: the Slack emulator beside a Kubernetes API, emulated or real (the end-to-end tests
//!   run against a real cluster too), with the fixtures: SlackTokens of each type with their
//!   credentials, namespaces, status [`Times`], and an operator [`Context`] to run in-process.
//! - [`eventually`]: the one polling helper.
//! - [`process`] the operator as its own process, [`crash`] the crash harness, [`scale`] fleets
//!   of SlackTokens and what the operator asked of the APIs for them.
//!
//! In-process tests usually run on tokio's paused clock; a [`process::OperatorProcess`] lives on
//! the real clock, so tests that kill processes run the emulators on real time too.

pub mod crash;
pub mod process;
pub mod scale;

use anyhow::Context as _;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    api::{Api, Patch, PatchParams, PostParams},
    Client, ResourceExt,
};
pub use slack_token_operator::demo::ground::{start_kube_emulator, GroundConfig};
use slack_token_operator::{
    crd,
    demo::ground::{install_crd as install, start_slack_emulator},
    oauth_secret, until, Condition, Context, Journal, Settings, SharedClock, SlackClient, SlackToken,
    SlackTokenStatus, ROTATE_ANNOTATION,
};
use std::{future::Future, ops::Deref, path::PathBuf, sync::Arc, time::Duration};

/// The Slack team of the installations the fixtures make.
pub const TEAM: &str = "T0GROUND";

/// A Kubernetes emulator and a Slack emulator, with the SlackToken CRD installed.
pub struct Ground {
    pub kube: kube_emulator::KubeEmulator,
    apis: Apis,
    dir: tempfile::TempDir,
}

impl Deref for Ground {
    type Target = Apis;
    fn deref(&self) -> &Apis {
        &self.apis
    }
}

impl Ground {
    pub async fn start(config: GroundConfig) -> anyhow::Result<Self> {
        let clock = config.clock();
        let kube = start_kube_emulator(&config, &clock).await?;
        let apis = Apis::start(kube.client(), &config, clock).await?;
        let dir = tempfile::tempdir()?;
        kube.write_kubeconfig(&dir.path().join("kubeconfig"))?;
        Ok(Self { kube, apis, dir })
    }

    /// A kubeconfig for the Kubernetes emulator (admin), for kubectl and operator processes.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// A directory that lives as long as the ground (journals, files of a test).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let _ = std::fs::create_dir_all(&path);
        path
    }

    /// Stops both emulators.
    pub async fn shutdown(self) {
        self.apis.slack.shutdown();
        self.kube.shutdown().await;
    }
}

/// The two APIs the operator talks to: a Kubernetes API (emulated or a real cluster's) through
/// `client`, and the Slack emulator. The fixtures work on either.
pub struct Apis {
    pub client: Client,
    pub slack: slack_emulator::SlackEmulator,
    /// The clock of the Slack emulator (and the Kubernetes emulator's, if there is one).
    pub clock: SharedClock,
}

impl Apis {
    /// Starts the Slack emulator on `clock` and installs `config.crd` through `client`.
    pub async fn start(client: Client, config: &GroundConfig, clock: SharedClock) -> anyhow::Result<Self> {
        let slack = start_slack_emulator(config, &clock).await?;
        if let Some(crd) = &config.crd {
            install(&client, crd).await?;
        }
        Ok(Self { client, slack, clock })
    }

    /// Creates namespace `name` unless it exists.
    pub async fn namespace(&self, name: &str) -> anyhow::Result<()> {
        let namespace: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        match Api::<Namespace>::all(self.client.clone()).create(&PostParams::default(), &namespace).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("creating namespace {name}")),
        }
    }

    pub fn tokens(&self, ns: &str) -> Api<SlackToken> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub fn secrets(&self, ns: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// A value of a key of Secret `ns/name`, if there.
    pub async fn secret_value(&self, ns: &str, name: &str, key: &str) -> Option<String> {
        let secret = self.secrets(ns).get_opt(name).await.ok()??;
        String::from_utf8(secret.data?.get(key)?.0.clone()).ok()
    }

    /// Creates Secret `ns/name` holding `data` (as `stringData`).
    pub async fn create_secret(&self, ns: &str, name: &str, data: &[(&str, &str)]) -> anyhow::Result<Secret> {
        let string_data: serde_json::Map<String, serde_json::Value> =
            data.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect();
        let secret: Secret = serde_json::from_value(
            serde_json::json!({"metadata": {"name": name}, "stringData": string_data}),
        )?;
        self.secrets(ns)
            .create(&PostParams::default(), &secret)
            .await
            .with_context(|| format!("creating Secret {name}"))
    }

    /// Creates the SlackToken written in `yaml` in namespace `ns`.
    pub async fn create_token(&self, ns: &str, yaml: &str) -> anyhow::Result<SlackToken> {
        let token: SlackToken = serde_saphyr::from_str(yaml).context("SlackToken YAML")?;
        self.tokens(ns).create(&PostParams::default(), &token).await.context("creating the SlackToken")
    }

    /// A rotating bot installation in Slack, its credentials Secret `<name>-creds` and a
    /// SlackToken `<name>` publishing into `<name>-token`, in namespace `ns`, with `extra_spec`
    /// (YAML lines) added to the spec.
    pub async fn oauth_token(&self, ns: &str, name: &str, extra_spec: &str) -> anyhow::Result<Fixture> {
        let app = self.slack.create_app(true);
        let installation = self.slack.install(&app, TEAM, slack_emulator::TokenKind::Bot);
        let refresh =
            installation.refresh_token.clone().context("a rotating installation has a refresh token")?;
        let f = Fixture { ns: ns.to_owned(), name: name.to_owned(), installation_id: installation.id, app };
        let creds = oauth_secret(&f.creds(), &f.app.client_id, &f.app.client_secret, &refresh);
        self.secrets(ns).create(&PostParams::default(), &creds).await.context("creating the credentials")?;
        self.create_token(ns, &token_yaml(name, "OAuth", extra_spec)).await?;
        Ok(f)
    }

    /// [`Apis::oauth_token`] with the spec's defaults.
    pub async fn bot(&self, ns: &str, name: &str) -> anyhow::Result<Bot> {
        self.oauth_token(ns, name, "").await
    }

    /// An app configuration token, its credentials Secret `<name>-creds` and a SlackToken
    /// `<name>` publishing into `<name>-token`. The fixture's installation is the token's chain
    /// (its app is unused).
    pub async fn config_token(&self, ns: &str, name: &str) -> anyhow::Result<Fixture> {
        let config = self.slack.create_config_token(TEAM, "U0GROUND");
        let chain =
            self.slack.installation_of(&config.refresh_token).context("a configuration token chain")?;
        self.create_secret(ns, &format!("{name}-creds"), &[("refreshToken", &config.refresh_token)]).await?;
        self.create_token(ns, &token_yaml(name, "AppConfiguration", "")).await?;
        let app = self.slack.create_app(true);
        Ok(Fixture { ns: ns.to_owned(), name: name.to_owned(), installation_id: chain, app })
    }

    /// A long-lived `token` in credentials Secret `<name>-creds` and a Manual SlackToken `<name>`
    /// publishing it into `<name>-token`; `spec` (YAML lines) needs `rotationPeriod` and `manual`.
    pub async fn manual_token(&self, ns: &str, name: &str, token: &str, spec: &str) -> anyhow::Result<()> {
        self.create_secret(ns, &format!("{name}-creds"), &[("accessToken", token)]).await?;
        self.create_token(ns, &token_yaml(name, "Manual", spec)).await?;
        Ok(())
    }

    /// Asks for one rotation now (`slack.rotator.dev/rotate`).
    pub async fn rotate_now(&self, f: &Fixture, request: &str) -> anyhow::Result<()> {
        let patch = serde_json::json!({"metadata": {"annotations": {ROTATE_ANNOTATION: request}}});
        self.tokens(&f.ns).patch(&f.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        Ok(())
    }

    /// The status of SlackToken `ns/name` (empty before the operator wrote one).
    pub async fn status(&self, ns: &str, name: &str) -> anyhow::Result<SlackTokenStatus> {
        let stk = self.tokens(ns).get(name).await.with_context(|| format!("reading SlackToken {name}"))?;
        Ok(stk.status.unwrap_or_default())
    }

    /// The times of SlackToken `ns/name`'s status.
    pub async fn times(&self, ns: &str, name: &str) -> anyhow::Result<Times> {
        Ok(Times::of(&self.status(ns, name).await?))
    }

    /// How long until SlackToken `ns/name`'s `nextRotationTime`, on the ground's clock.
    pub async fn until_next_rotation(&self, ns: &str, name: &str) -> anyhow::Result<Duration> {
        let next = self.times(ns, name).await?.next_rotation.context("no nextRotationTime")?;
        Ok(until(self.clock.now(), next))
    }

    /// The condition `type_` of SlackToken `ns/name`, if the SlackToken and the condition exist.
    pub async fn condition(&self, ns: &str, name: &str, type_: &str) -> Option<Condition> {
        let status = self.tokens(ns).get_opt(name).await.ok()??.status?;
        status.conditions.into_iter().find(|c| c.type_ == type_)
    }

    /// Reasons of the Events recorded about SlackToken `ns/name`.
    pub async fn event_reasons(&self, ns: &str, name: &str) -> anyhow::Result<Vec<String>> {
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.client.clone(), ns);
        let list = events.list(&Default::default()).await.context("listing Events")?;
        Ok(list
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter_map(|e| e.reason)
            .collect())
    }

    /// Resource versions of the SlackToken and its two Secrets: equal snapshots mean no writes.
    pub async fn versions(&self, f: &Fixture) -> Vec<Option<String>> {
        vec![
            self.tokens(&f.ns).get(&f.name).await.ok().and_then(|t| t.resource_version()),
            self.secrets(&f.ns).get(&f.creds()).await.ok().and_then(|s| s.resource_version()),
            self.secrets(&f.ns).get(&f.output()).await.ok().and_then(|s| s.resource_version()),
        ]
    }

    /// Whether the SlackToken is Ready and its output Secret holds a token Slack accepts now.
    pub async fn is_healthy(&self, f: &Fixture) -> bool {
        let ready = self.condition(&f.ns, &f.name, "Ready").await.is_some_and(|c| c.status == "True");
        let published = self.secret_value(&f.ns, &f.output(), "token").await;
        let saved = self.secret_value(&f.ns, &f.creds(), "refreshToken").await;
        ready
            && published.is_some_and(|t| self.slack.token_is_valid(&t))
            && saved.is_some_and(|t| self.slack.token_is_valid(&t))
    }

    /// A Context for an operator in this process, as `client` (the ground's, or a narrower one),
    /// calling the Slack emulator, on the ground's clock.
    pub fn context(&self, client: Client, settings: Settings, journal: Option<Journal>) -> Arc<Context> {
        let slack = SlackClient::new(&self.slack.base_url()).expect("the Slack emulator's URL is valid");
        Context::with_journal(client, slack, self.clock.clone(), settings, journal)
    }
}

/// A SlackToken `name` in namespace `ns` made by a fixture, with its credentials Secret
/// `<name>-creds` and output Secret `<name>-token`.
#[derive(Clone, Debug)]
pub struct Fixture {
    pub ns: String,
    pub name: String,
    /// The Slack refresh-token chain behind it.
    pub installation_id: String,
    pub app: slack_emulator::App,
}

/// A rotating bot token made by [`Apis::bot`].
pub type Bot = Fixture;

impl Fixture {
    pub fn creds(&self) -> String {
        format!("{}-creds", self.name)
    }
    pub fn output(&self) -> String {
        format!("{}-token", self.name)
    }
}

/// A SlackToken manifest: `name` of `type_`, reading `<name>-creds`, publishing into
/// `<name>-token`, with `extra_spec` (YAML lines) added to its spec.
pub fn token_yaml(name: &str, type_: &str, extra_spec: &str) -> String {
    let mut yaml = format!(
        "apiVersion: slack.rotator.dev/v1alpha1\nkind: SlackToken\nmetadata:\n  name: {name}\nspec:\n  type: {type_}\n  credentialsRef:\n    name: {name}-creds\n  secretRef:\n    name: {name}-token\n"
    );
    for line in extra_spec.lines().filter(|l| !l.trim().is_empty()) {
        yaml.push_str("  ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

/// The times of a SlackToken's status, parsed. The operator writes them (RFC 3339), so one that
/// does not parse fails the test here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Times {
    pub last_rotation: Option<Timestamp>,
    pub next_rotation: Option<Timestamp>,
    pub expiration: Option<Timestamp>,
    pub last_failure: Option<Timestamp>,
    pub last_check: Option<Timestamp>,
}

impl Times {
    pub fn of(status: &SlackTokenStatus) -> Self {
        let parse = |field: &str, value: &Option<String>| {
            value.as_deref().map(|text| {
                text.parse::<Timestamp>()
                    .unwrap_or_else(|e| panic!("status.{field} {text:?} is no time: {e}"))
            })
        };
        Self {
            last_rotation: parse("lastRotationTime", &status.last_rotation_time),
            next_rotation: parse("nextRotationTime", &status.next_rotation_time),
            expiration: parse("expirationTime", &status.expiration_time),
            last_failure: parse("lastFailureTime", &status.last_failure_time),
            last_check: parse("lastCheckTime", &status.last_check_time),
        }
    }

    /// How long before expiry the next rotation is.
    pub fn renew_before(&self) -> Option<Duration> {
        let (next, expires) = (self.next_rotation?, self.expiration?);
        expires.duration_since(next).try_into().ok()
    }
}

/// A task spawned on the current runtime that ends when dropped (or [`Task::stop`]ped).
pub struct Task(Option<tokio::task::JoinHandle<()>>);

impl Task {
    pub fn spawn(future: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(Some(tokio::spawn(future)))
    }

    /// Aborts the task and waits until it is gone.
    pub async fn stop(mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
            let _ = handle.await;
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

/// Runs the controller on `ctx`, watching `namespaces` (all if empty), until the task is dropped.
pub fn spawn_controller(ctx: Arc<Context>, namespaces: Vec<String>) -> Task {
    Task::spawn(slack_token_operator::run(ctx, namespaces))
}

/// Serves `ctx`'s /healthz, /readyz and /metrics on a free local port.
pub async fn serve_http(ctx: &Context) -> anyhow::Result<(std::net::SocketAddr, Task)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let endpoints = ctx.endpoints();
    let server = Task::spawn(async move {
        slack_token_operator::http::serve(listener, endpoints).await.expect("the HTTP server runs");
    });
    Ok((addr, server))
}

/// Runs kubectl against `kubeconfig`. The tests that use it need kubectl on PATH (the project's
/// machines have it); without it they fail, saying so.
pub fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubectl ({e}): this test needs kubectl on PATH"))
}

/// Installs the operator's CRD into a cluster (emulated or real) and waits until it is served.
pub async fn install_crd(client: &Client) -> anyhow::Result<()> {
    install(client, &crd()).await
}

/// Polls `check` every `every` until it yields `Some`, or fails after `within`.
pub async fn eventually<T, F, Fut>(
    what: &str,
    within: Duration,
    every: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(every).await;
    }
}
