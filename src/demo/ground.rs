//! The ground `demo` and `emulate` stand on: the Kubernetes emulator and the Slack emulator in
//! this process, on one clock, with the SlackToken CRD installed. The test ground
//! (`crates/testground`) starts its emulators with these functions too, and adds the fixtures,
//! harnesses and waits that only tests need.

use crate::{
    clock::{SharedClock, TokioClock},
    reconcile::{Context, Settings},
    resource::{crd, SlackToken},
    slack::SlackClient,
};
use anyhow::Context as _;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    api::{Api, PostParams},
    Client,
};
use std::{sync::Arc, time::Duration};

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
    /// The CRD to install (default: the operator's, [`crate::crd`]); `None` installs none.
    pub crd: Option<CustomResourceDefinition>,
    /// Ports on 127.0.0.1; 0 picks a free one.
    pub kube_port: u16,
    pub slack_port: u16,
}

impl Default for GroundConfig {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(12 * 3600),
            refresh_grace: Duration::ZERO,
            rbac: false,
            clock: None,
            crd: Some(crd()),
            kube_port: 0,
            slack_port: 0,
        }
    }
}

impl GroundConfig {
    /// The configured clock, or wall time at start plus tokio time since.
    pub fn clock(&self) -> SharedClock {
        self.clock.clone().unwrap_or_else(|| Arc::new(TokioClock::new()))
    }
}

fn emulator_clock(clock: &SharedClock) -> slack_emulator::NowFn {
    let clock = clock.clone();
    Arc::new(move || clock.now())
}

/// The Kubernetes emulator as `config` says, reading `clock`.
pub async fn start_kube_emulator(
    config: &GroundConfig,
    clock: &SharedClock,
) -> anyhow::Result<kube_emulator::KubeEmulator> {
    kube_emulator::KubeEmulator::start_with(kube_emulator::Config {
        port: config.kube_port,
        rbac: config.rbac,
        now: Some(emulator_clock(clock)),
    })
    .await
}

/// The Slack emulator as `config` says, reading `clock`.
pub async fn start_slack_emulator(
    config: &GroundConfig,
    clock: &SharedClock,
) -> anyhow::Result<slack_emulator::SlackEmulator> {
    slack_emulator::SlackEmulator::start_with(slack_emulator::Config {
        port: config.slack_port,
        access_token_ttl: config.token_ttl,
        refresh_grace: config.refresh_grace,
        now: Some(emulator_clock(clock)),
    })
    .await
}

/// Both emulators on one clock, with `config.crd` installed.
pub struct Emulators {
    pub kube: kube_emulator::KubeEmulator,
    pub slack: slack_emulator::SlackEmulator,
    /// An admin client of the Kubernetes emulator.
    pub client: Client,
    pub clock: SharedClock,
}

impl Emulators {
    pub async fn start(config: &GroundConfig) -> anyhow::Result<Self> {
        let clock = config.clock();
        let kube = start_kube_emulator(config, &clock).await?;
        let slack = start_slack_emulator(config, &clock).await?;
        let client = kube.client();
        if let Some(crd) = &config.crd {
            install_crd(&client, crd).await?;
        }
        Ok(Self { kube, slack, client, clock })
    }

    /// A Context for an operator in this process calling the Slack emulator, on the emulators'
    /// clock.
    pub fn context(&self, settings: Settings) -> anyhow::Result<Arc<Context>> {
        let slack = SlackClient::new(&self.slack.base_url()).context("the Slack emulator's URL")?;
        Ok(Context::with_journal(self.client.clone(), slack, self.clock.clone(), settings, None))
    }
}

/// Installs `crd` (a SlackToken CRD) into a cluster (emulated or real) and waits until
/// SlackTokens are served.
pub async fn install_crd(client: &Client, crd: &CustomResourceDefinition) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.create(&PostParams::default(), crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e).context("installing the SlackToken CRD"),
    }
    let tokens: Api<SlackToken> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokens.list(&Default::default()).await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(e).context("the SlackToken CRD is not served after 10s")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
