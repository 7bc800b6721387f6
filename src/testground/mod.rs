//! The test ground: both emulators in this process, the operator in this process or as its own
//! process, and the fixtures tests, benchmarks and the demo share. Built only with the
//! `emulator` feature (the container image has none of it).
//!
//! In-process tests usually run on tokio's paused clock; a [`process::OperatorProcess`] lives on
//! the real clock, so tests that kill processes run the emulators on real time too.

pub mod crash;
pub mod process;
pub mod scale;

use crate::{
    clock::{SharedClock, TokioClock},
    resource::{SlackToken, SlackTokenSpec, TokenType},
    secrets::oauth_secret,
};
use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    api::{Api, Patch, PatchParams, PostParams},
    Client, CustomResourceExt,
};
use std::{future::Future, path::PathBuf, sync::Arc, time::Duration};

/// How the emulators are set up.
#[derive(Clone)]
pub struct GroundConfig {
    /// Lifetime of the access tokens Slack issues.
    pub token_ttl: Duration,
    /// How long a spent refresh token still works at Slack (real Slack: "a short grace period").
    pub refresh_grace: Duration,
    /// Enforce RBAC in the Kubernetes emulator.
    pub rbac: bool,
    /// The clock both emulators read; `None`: wall time at start plus tokio time since.
    pub clock: Option<SharedClock>,
}

impl Default for GroundConfig {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(12 * 3600),
            refresh_grace: Duration::ZERO,
            rbac: false,
            clock: None,
        }
    }
}

/// A Kubernetes emulator and a Slack emulator, with the SlackToken CRD installed.
pub struct Ground {
    pub kube: kube_emulator::KubeEmulator,
    pub slack: slack_emulator::SlackEmulator,
    pub client: Client,
    pub clock: SharedClock,
    dir: tempfile::TempDir,
}

impl Ground {
    pub async fn start(config: GroundConfig) -> anyhow::Result<Self> {
        let clock: SharedClock = config.clock.unwrap_or_else(|| Arc::new(TokioClock::new()));
        let for_emulators = clock.clone();
        let now: slack_emulator::NowFn = Arc::new(move || for_emulators.now());
        let kube = kube_emulator::KubeEmulator::start_with(kube_emulator::Config {
            now: Some(now.clone()),
            rbac: config.rbac,
            ..Default::default()
        })
        .await?;
        let slack = slack_emulator::SlackEmulator::start_with(slack_emulator::Config {
            access_token_ttl: config.token_ttl,
            refresh_grace: config.refresh_grace,
            now: Some(now),
            ..Default::default()
        })
        .await?;
        let client = kube.client();
        install_crd(&client).await?;
        let dir = tempfile::tempdir()?;
        kube.write_kubeconfig(&dir.path().join("kubeconfig"))?;
        Ok(Self { kube, slack, client, clock, dir })
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

    pub async fn namespace(&self, name: &str) -> anyhow::Result<()> {
        let namespace: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        match Api::<Namespace>::all(self.client.clone()).create(&PostParams::default(), &namespace).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A rotating bot installation in Slack, its credentials Secret `<name>-creds` and a
    /// SlackToken `<name>` publishing into `<name>-token`, in namespace `ns`.
    pub async fn bot(&self, ns: &str, name: &str) -> anyhow::Result<Bot> {
        let app = self.slack.create_app(true);
        let installation = self.slack.install(&app, "T0GROUND", slack_emulator::TokenKind::Bot);
        let refresh =
            installation.refresh_token.clone().context("a rotating installation has a refresh token")?;
        let bot = Bot { ns: ns.to_owned(), name: name.to_owned(), installation_id: installation.id, app };
        let creds = oauth_secret(&bot.creds(), &bot.app.client_id, &bot.app.client_secret, &refresh);
        self.secrets(ns).create(&PostParams::default(), &creds).await?;
        let token = SlackToken::new(name, SlackTokenSpec::new(TokenType::OAuth, &bot.creds(), &bot.output()));
        self.tokens(ns).create(&PostParams::default(), &token).await?;
        Ok(bot)
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

    /// Asks for one rotation now (`slack.rotator.dev/rotate`).
    pub async fn rotate_now(&self, bot: &Bot, request: &str) -> anyhow::Result<()> {
        let patch =
            serde_json::json!({"metadata": {"annotations": {crate::resource::ROTATE_ANNOTATION: request}}});
        self.tokens(&bot.ns).patch(&bot.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        Ok(())
    }

    /// Whether the SlackToken is Ready and its output Secret holds a token Slack accepts now.
    pub async fn is_healthy(&self, bot: &Bot) -> bool {
        let Ok(Some(stk)) = self.tokens(&bot.ns).get_opt(&bot.name).await else { return false };
        let ready =
            stk.status.is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let published = self.secret_value(&bot.ns, &bot.output(), "token").await;
        let saved = self.secret_value(&bot.ns, &bot.creds(), "refreshToken").await;
        ready
            && published.is_some_and(|t| self.slack.token_is_valid(&t))
            && saved.is_some_and(|t| self.slack.token_is_valid(&t))
    }
}

/// A bot token set up by [`Ground::bot`].
#[derive(Clone, Debug)]
pub struct Bot {
    pub ns: String,
    pub name: String,
    pub installation_id: String,
    pub app: slack_emulator::App,
}

impl Bot {
    pub fn creds(&self) -> String {
        format!("{}-creds", self.name)
    }
    pub fn output(&self) -> String {
        format!("{}-token", self.name)
    }
}

/// Installs the CRD into a cluster (emulated or real) and waits until it is served.
pub async fn install_crd(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.create(&PostParams::default(), &SlackToken::crd()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e).context("installing the SlackToken CRD"),
    }
    let tokens: Api<SlackToken> = Api::all(client.clone());
    for _ in 0..100 {
        if tokens.list(&Default::default()).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the SlackToken CRD was not served in time")
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
