//! `demo` and `emulate`: the operator against the project's built-in Kubernetes and Slack
//! emulators (started by [`ground`]). Built only with the `emulator` feature.

pub mod ground;

use crate::{
    controller,
    reconcile::Settings,
    resource::{GoDuration, SlackToken, SlackTokenSpec, TokenType},
    secrets::oauth_secret,
    slack::redacted,
};
use anyhow::Context as _;
use futures::StreamExt;
use ground::{Emulators, GroundConfig};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    api::{Api, PostParams},
    runtime::{watcher, WatchStreamExt},
    Client, ResourceExt,
};
use secrecy::SecretString;
use std::path::PathBuf;

/// The demo's SlackToken, in namespace `default`.
const NAME: &str = "deploy-bot";

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Stop after this long (e.g. `90s`); default: run until Ctrl-C.
    #[arg(long = "for")]
    run_for: Option<GoDuration>,
    /// Lifetime of the emulated Slack access tokens.
    #[arg(long, default_value = "1m")]
    token_lifetime: GoDuration,
    /// Also write a kubeconfig here, to look around with kubectl while the demo runs.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct EmulateArgs {
    /// Where to write the kubeconfig for the Kubernetes emulator.
    #[arg(long)]
    kubeconfig: PathBuf,
    #[arg(long, default_value_t = 0)]
    kube_port: u16,
    #[arg(long, default_value_t = 0)]
    slack_port: u16,
    /// Lifetime of the emulated Slack access tokens.
    #[arg(long, default_value = "12h")]
    token_lifetime: GoDuration,
    /// Authorize impersonated users and ServiceAccount tokens with RBAC, as a cluster does
    /// (the written admin kubeconfig is not restricted). `--rbac=false` allows everyone everything.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    rbac: bool,
}

pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    // Keep the operator's own logs quiet: the demo prints what matters.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let ground =
        Emulators::start(&GroundConfig { token_ttl: args.token_lifetime.as_std(), ..Default::default() })
            .await?;
    if let Some(path) = &args.kubeconfig {
        ground.kube.write_kubeconfig(path)?;
        println!(
            "kubeconfig written to {} (try: kubectl --kubeconfig {} get stk)",
            path.display(),
            path.display()
        );
    }
    let installation = bot(&ground).await?;

    println!(
        "Demo: SlackToken default/deploy-bot rotates a bot token living {} into Secret deploy-bot-token.",
        args.token_lifetime
    );
    println!(
        "Kubernetes emulator at {}, Slack emulator at {}. Ctrl-C to stop.",
        ground.kube.url(),
        ground.slack.base_url()
    );

    let ctx = ground.context(Settings::default())?;
    let controller = tokio::spawn(controller::run(ctx, vec!["default".to_owned()]));
    let printer = print_rotations(ground.client.clone());
    let stop = async {
        match args.run_for {
            Some(d) => tokio::time::sleep(d.as_std()).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::select! {
        result = printer => result?,
        () = stop => {}
    }
    controller.abort();
    let _ = controller.await;
    let broken = ground.slack.broken_chains();
    println!(
        "Done: {} refreshes, broken refresh chains: {}.",
        ground.slack.refreshes(&installation),
        if broken.is_empty() { "none".to_owned() } else { broken.join(", ") }
    );
    Ok(())
}

/// A rotating bot installation in the Slack emulator, its credentials Secret
/// `default/deploy-bot-creds` and SlackToken `default/deploy-bot` publishing into
/// `deploy-bot-token`. Returns the installation's id.
async fn bot(ground: &Emulators) -> anyhow::Result<String> {
    let app = ground.slack.create_app(true);
    let installation = ground.slack.install(&app, "T0DEMO", slack_emulator::TokenKind::Bot);
    let refresh = installation.refresh_token.context("a rotating installation has a refresh token")?;
    let (creds, output) = (format!("{NAME}-creds"), format!("{NAME}-token"));
    let secret = oauth_secret(&creds, &app.client_id, &app.client_secret, &refresh);
    let secrets: Api<Secret> = Api::namespaced(ground.client.clone(), "default");
    secrets.create(&PostParams::default(), &secret).await.context("creating the credentials")?;
    let token = SlackToken::new(NAME, SlackTokenSpec::new(TokenType::OAuth, &creds, &output));
    let tokens: Api<SlackToken> = Api::namespaced(ground.client.clone(), "default");
    tokens.create(&PostParams::default(), &token).await.context("creating the SlackToken")?;
    Ok(installation.id)
}

/// Prints one line each time the output Secret gets a new token.
async fn print_rotations(client: Client) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client, "default");
    let config = watcher::Config::default().fields("metadata.name=deploy-bot-token");
    let mut stream = std::pin::pin!(watcher(secrets.clone(), config).default_backoff().applied_objects());
    let mut last: Option<Vec<u8>> = None;
    while let Some(secret) = stream.next().await {
        let secret = secret?;
        let Some(value) = secret.data.as_ref().and_then(|d| d.get("token")).map(|v| v.0.clone()) else {
            continue;
        };
        if last.as_ref() == Some(&value) {
            continue;
        }
        last = Some(value.clone());
        // The expiry is saved in the credentials Secret before the token is published.
        let expires = secrets
            .get("deploy-bot-creds")
            .await
            .ok()
            .and_then(|s| s.data?.get("expiresAt").map(|v| String::from_utf8_lossy(&v.0).into_owned()))
            .unwrap_or_else(|| "?".into());
        let token = SecretString::from(String::from_utf8_lossy(&value).into_owned());
        println!(
            "{}  Secret default/{} now holds {} (fingerprint {})  expires {expires}",
            jiff::Timestamp::now().strftime("%H:%M:%S"),
            secret.name_any(),
            redacted(&token),
            fingerprint(&value),
        );
    }
    Ok(())
}

/// A short, one-way fingerprint so that people can tell tokens apart without seeing them.
fn fingerprint(value: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    format!("{:08x}", h.finish() >> 32)
}

pub async fn emulate(args: EmulateArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    // People and benchmarks install the CRD themselves, as on a cluster.
    let ground = Emulators::start(&GroundConfig {
        kube_port: args.kube_port,
        slack_port: args.slack_port,
        token_ttl: args.token_lifetime.as_std(),
        rbac: args.rbac,
        crd: None,
        ..Default::default()
    })
    .await?;
    let (kube, slack) = (&ground.kube, &ground.slack);
    kube.write_kubeconfig(&args.kubeconfig)?;
    println!(
        "ready: kubernetes {} (kubeconfig {}), slack {} (admin {})",
        kube.url(),
        args.kubeconfig.display(),
        slack.base_url(),
        slack.admin_url()
    );
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}
