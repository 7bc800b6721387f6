//! The end-to-end test ground: the real controller against the Kubernetes emulator (or a real
//! cluster when `E2E_KUBECONFIG` names a kubeconfig) and the Slack emulator.
//!
//! Against the emulator, tokio's clock is paused: waiting for a rotation twelve hours away costs
//! nothing and is deterministic. A real cluster cannot be paused, so there the Slack tokens live
//! `REAL_TTL` instead of 12h and tests express every duration as a fraction of `env.ttl()`.
#![allow(dead_code)]

use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    api::{Api, DeleteParams, PostParams},
    Client, ResourceExt,
};
use slack_emulator::{SlackEmulator, TokenKind};
use slack_token_operator::{
    Context, Journal, Replayed, Settings, SharedClock, SlackClient, SlackToken, SlackTokenStatus, TokioClock,
};
use std::{future::Future, sync::Arc, time::Duration};

pub const EMULATED_TTL: Duration = Duration::from_secs(12 * 3600);
pub const REAL_TTL: Duration = Duration::from_secs(90);

/// Runs an end-to-end test body on a fresh runtime: paused clock against the emulator, real
/// clock against a real cluster.
pub fn e2e<F, Fut>(body: F)
where
    F: FnOnce(TestEnv) -> Fut,
    Fut: Future<Output = ()>,
{
    run_e2e(true, body)
}

/// As [`e2e`], but the controller is not running until the body calls
/// [`TestEnv::start_controller`] (the operator's HTTP endpoints are served from the start).
pub fn e2e_before_start<F, Fut>(body: F)
where
    F: FnOnce(TestEnv) -> Fut,
    Fut: Future<Output = ()>,
{
    run_e2e(false, body)
}

fn run_e2e<F, Fut>(start_controller: bool, body: F)
where
    F: FnOnce(TestEnv) -> Fut,
    Fut: Future<Output = ()>,
{
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let real = std::env::var_os("E2E_KUBECONFIG").is_some();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(!real)
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let mut env = TestEnv::start().await;
        if start_controller {
            env.start_controller();
        }
        let leftovers = env.is_real_cluster().then(|| (env.client.clone(), env.ns.clone()));
        // Catch a failing test's panic so that its namespace is still removed from a real cluster.
        let outcome = std::panic::AssertUnwindSafe(body(env)).catch_unwind().await;
        if let Some((client, ns)) = leftovers {
            remove_namespace(client, &ns).await;
        }
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    });
}

/// Leaves a real cluster as we found it. The controller is gone by now, so finalizers it would
/// have released (on SlackTokens and credentials Secrets) are dropped first, or the namespace
/// would hang in Terminating.
async fn remove_namespace(client: Client, ns: &str) {
    let release = serde_json::json!({"metadata": {"finalizers": null}});
    let patch = kube::api::Patch::Merge(&release);
    let tokens: Api<SlackToken> = Api::namespaced(client.clone(), ns);
    for stk in tokens.list(&Default::default()).await.map(|l| l.items).unwrap_or_default() {
        let _ = tokens.patch(&stk.name_any(), &Default::default(), &patch).await;
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    for secret in secrets.list(&Default::default()).await.map(|l| l.items).unwrap_or_default() {
        if secret.metadata.finalizers.is_some() {
            let _ = secrets.patch(&secret.name_any(), &Default::default(), &patch).await;
        }
    }
    let namespaces: Api<Namespace> = Api::all(client);
    match namespaces.delete(ns, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {} // the test deleted it
        Err(e) => eprintln!("could not delete test namespace {ns}: {e}"),
    }
}

pub struct TestEnv {
    pub kube: Option<kube_emulator::KubeEmulator>,
    pub client: Client,
    pub slack: SlackEmulator,
    pub ns: String,
    pub clock: SharedClock,
    pub ctx: Arc<Context>,
    /// Where the operator's /healthz, /readyz and /metrics are served.
    pub http: std::net::SocketAddr,
    controller: Option<tokio::task::JoinHandle<()>>,
    http_server: tokio::task::JoinHandle<()>,
    settings: Settings,
}

impl TestEnv {
    async fn start() -> Self {
        // Start on a whole second so that runs are repeatable: status times are rounded to
        // seconds, and a random sub-second start would round differently from run to run.
        let start =
            jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now());
        let clock: SharedClock = Arc::new(TokioClock::starting_at(start));
        let clock_for_emulators = clock.clone();
        let now: slack_emulator::NowFn = Arc::new(move || clock_for_emulators.now());
        let (kube, client, ttl) = match std::env::var("E2E_KUBECONFIG") {
            Ok(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("E2E_KUBECONFIG readable");
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                    .await
                    .expect("E2E_KUBECONFIG usable");
                (None, Client::try_from(config).expect("client"), REAL_TTL)
            }
            Err(_) => {
                let kube = kube_emulator::KubeEmulator::start_with(kube_emulator::Config {
                    now: Some(now.clone()),
                    ..Default::default()
                })
                .await
                .expect("kube emulator starts");
                let client = kube.client();
                (Some(kube), client, EMULATED_TTL)
            }
        };
        slack_token_operator::demo::install_crd(&client).await.expect("CRD installed");
        let slack = SlackEmulator::start_with(slack_emulator::Config {
            access_token_ttl: ttl,
            now: Some(now),
            ..Default::default()
        })
        .await
        .expect("slack emulator starts");
        let ns = format!("e2e-{}", rand_suffix());
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
        namespaces.create(&PostParams::default(), &namespace).await.expect("namespace created");
        let settings = Settings { health_check_interval: ttl / 4 };
        let ctx = Context::with_settings(
            client.clone(),
            SlackClient::new(&slack.base_url()).unwrap(),
            clock.clone(),
            settings.clone(),
        );
        let (http, http_server) = serve_http(&ctx).await;
        Self { kube, client, slack, ns, clock, ctx, http, controller: None, http_server, settings }
    }

    /// Starts the controller, watching the test's namespace.
    pub fn start_controller(&mut self) {
        assert!(self.controller.is_none(), "the controller runs already");
        let run = slack_token_operator::run(self.ctx.clone(), vec![self.ns.clone()]);
        self.controller = Some(tokio::spawn(run));
    }

    /// Stops the operator as a crash would (its memory, and every pair held there, is gone) and
    /// starts a new one, with the crash journal in `journal` if given. The new operator replays
    /// the journal before it takes any work, as `run` does; returns what the replay did.
    pub async fn restart_operator(&mut self, journal: Option<&std::path::Path>) -> Replayed {
        if let Some(controller) = self.controller.take() {
            controller.abort();
            let _ = controller.await;
        }
        self.http_server.abort();
        let journal = journal.map(|dir| Journal::open(dir).expect("journal directory usable"));
        self.ctx = Context::with_journal(
            self.client.clone(),
            SlackClient::new(&self.slack.base_url()).unwrap(),
            self.clock.clone(),
            self.settings.clone(),
            journal,
        );
        (self.http, self.http_server) = serve_http(&self.ctx).await;
        let replayed = self.ctx.replay_journal().await;
        self.start_controller();
        replayed
    }

    /// GETs `path` from the operator's HTTP server: (status code, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("http://{}{path}", self.http)).await.expect("HTTP answer");
        let code = response.status().as_u16();
        (code, response.text().await.expect("HTTP body"))
    }

    /// A scrape of `/metrics`.
    pub async fn scrape(&self) -> Scrape {
        let (code, text) = self.get("/metrics").await;
        assert_eq!(code, 200, "/metrics answers");
        Scrape(text)
    }

    pub fn is_real_cluster(&self) -> bool {
        self.kube.is_none()
    }

    /// Lifetime of the access tokens the Slack emulator issues.
    pub fn ttl(&self) -> Duration {
        if self.is_real_cluster() {
            REAL_TTL
        } else {
            EMULATED_TTL
        }
    }

    /// How long to wait for the controller to react: longer than its longest transient backoff.
    pub fn patience(&self) -> Duration {
        Duration::from_secs(60).max(self.ttl() / 60)
    }

    pub fn tokens(&self) -> Api<SlackToken> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Lets `d` pass: instantly under the paused clock, for real against a real cluster.
    pub async fn advance(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    /// Polls `check` until it yields `Some`, failing the test after `within`.
    pub async fn eventually<T, F, Fut>(&self, what: &str, within: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn status(&self, name: &str) -> SlackTokenStatus {
        self.tokens().get(name).await.expect("SlackToken exists").status.unwrap_or_default()
    }

    /// Waits for the Ready condition to have `status` and returns its (reason, message).
    pub async fn ready(&self, name: &str, status: &str) -> (String, String) {
        self.eventually(&format!("{name} Ready={status}"), self.patience(), || async {
            let s = self.tokens().get_opt(name).await.ok()??.status?;
            let c = s.conditions.iter().find(|c| c.type_ == "Ready")?;
            (c.status == status).then(|| (c.reason.clone(), c.message.clone()))
        })
        .await
    }

    pub async fn secret_value(&self, name: &str, key: &str) -> Option<String> {
        let secret = self.secrets().get_opt(name).await.ok()??;
        let bytes = secret.data?.get(key)?.0.clone();
        String::from_utf8(bytes).ok()
    }

    /// Waits until the output Secret holds a token different from `previous`.
    pub async fn published_token(&self, secret: &str, previous: Option<&str>) -> String {
        self.eventually(&format!("new token in {secret}"), self.patience(), || async {
            self.secret_value(secret, "token").await.filter(|v| Some(v.as_str()) != previous)
        })
        .await
    }

    pub async fn create_secret(&self, name: &str, data: &[(&str, &str)]) {
        let string_data: serde_json::Map<String, serde_json::Value> =
            data.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect();
        let secret: Secret = serde_json::from_value(
            serde_json::json!({"metadata": {"name": name}, "stringData": string_data}),
        )
        .unwrap();
        self.secrets().create(&PostParams::default(), &secret).await.expect("secret created");
    }

    pub async fn create_token(&self, yaml: &str) -> SlackToken {
        let token: SlackToken = serde_yaml::from_str(yaml).expect("SlackToken YAML");
        self.tokens().create(&PostParams::default(), &token).await.expect("SlackToken created")
    }

    /// A rotating bot installation, its credentials Secret `<name>-creds` and a SlackToken `<name>`
    /// publishing into `<name>-token`, with `extra_spec` appended to the spec.
    pub async fn oauth_token(&self, name: &str, extra_spec: &str) -> Fixture {
        let app = self.slack.create_app(true);
        let installation = self.slack.install(&app, "T0E2E", TokenKind::Bot);
        let refresh = installation.refresh_token.clone().expect("rotating installation");
        self.create_secret(
            &format!("{name}-creds"),
            &[("clientId", &app.client_id), ("clientSecret", &app.client_secret), ("refreshToken", &refresh)],
        )
        .await;
        self.create_token(&token_yaml(name, "OAuth", extra_spec)).await;
        Fixture { name: name.to_owned(), installation_id: installation.id, app }
    }

    /// An app configuration token, its credentials Secret `<name>-creds` and a SlackToken `<name>`
    /// publishing into `<name>-token`. The fixture's installation is the token's chain.
    pub async fn config_token(&self, name: &str) -> Fixture {
        let config = self.slack.create_config_token("T0E2E", "U0E2E");
        let chain = self.slack.installation_of(&config.refresh_token).expect("a configuration token chain");
        self.create_secret(&format!("{name}-creds"), &[("refreshToken", &config.refresh_token)]).await;
        self.create_token(&token_yaml(name, "AppConfiguration", "")).await;
        Fixture { name: name.to_owned(), installation_id: chain, app: self.slack.create_app(true) }
    }

    /// The usual start: bot token `bot` with rotation, published and Ready. Returns its fixture
    /// and the first token.
    pub async fn ready_bot(&self) -> (Fixture, String) {
        let f = self.oauth_token("bot", "").await;
        let first = self.published_token(&f.output(), None).await;
        self.ready("bot", "True").await;
        (f, first)
    }

    /// The emulator's fault injection. Tests that use it are marked
    /// `#[cfg_attr(e2e_real_cluster, ignore = "...")]`, so against a real cluster they show as
    /// ignored instead of passing without having checked anything.
    pub fn fault_injection(&self) -> kube_emulator::Faults {
        self.kube
            .as_ref()
            .expect("a test using fault injection must be ignored against a real cluster")
            .faults()
    }

    /// Resource versions of the SlackToken and its two Secrets: equal snapshots mean no writes.
    pub async fn versions(&self, f: &Fixture) -> Vec<Option<String>> {
        vec![
            self.tokens().get(&f.name).await.ok().and_then(|t| t.resource_version()),
            self.secrets().get(&f.creds()).await.ok().and_then(|s| s.resource_version()),
            self.secrets().get(&f.output()).await.ok().and_then(|s| s.resource_version()),
        ]
    }

    /// Reasons of the Events recorded about SlackToken `name`.
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.client.clone(), &self.ns);
        let list = events.list(&Default::default()).await.expect("events listed");
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter_map(|e| e.reason)
            .collect()
    }

    /// The condition `type_` of SlackToken `name`, once it has `status`.
    pub async fn condition(&self, name: &str, type_: &str, status: &str) -> (String, String) {
        self.eventually(&format!("{name} {type_}={status}"), self.patience(), || async {
            let s = self.tokens().get_opt(name).await.ok()??.status?;
            let c = s.conditions.iter().find(|c| c.type_ == type_)?;
            (c.status == status).then(|| (c.reason.clone(), c.message.clone()))
        })
        .await
    }

    /// The refresh token currently saved in the credentials Secret.
    pub async fn saved_refresh_token(&self, f: &Fixture) -> Option<String> {
        self.secret_value(&f.creds(), "refreshToken").await
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(controller) = &self.controller {
            controller.abort();
        }
        self.http_server.abort();
    }
}

/// Serves `ctx`'s /healthz, /readyz and /metrics on a free local port.
async fn serve_http(ctx: &Arc<Context>) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("HTTP port");
    let http = listener.local_addr().unwrap();
    let endpoints = ctx.endpoints();
    let server = tokio::spawn(async move {
        slack_token_operator::http::serve(listener, endpoints).await.expect("HTTP server runs");
    });
    (http, server)
}

/// One scrape of the operator's `/metrics` (OpenMetrics text).
pub struct Scrape(pub String);

impl Scrape {
    /// The value of the sample `name` whose labels are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut wanted: Vec<(String, String)> =
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        wanted.sort();
        self.samples().find(|(n, l, _)| n == name && *l == wanted).map(|(_, _, v)| v)
    }

    /// Whether any sample of any metric has label `key` = `value`.
    pub fn has_label(&self, key: &str, value: &str) -> bool {
        self.samples().any(|(_, l, _)| l.iter().any(|(k, v)| k == key && v == value))
    }

    /// (name, sorted labels, value) of every sample. Our label values hold no `,`, `"` or `}`.
    fn samples(&self) -> impl Iterator<Item = (String, Vec<(String, String)>, f64)> + '_ {
        self.0.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value = value.parse::<f64>().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let mut labels: Vec<(String, String)> = labels
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                .collect();
            labels.sort();
            Some((name.to_owned(), labels, value))
        })
    }
}

pub struct Fixture {
    pub name: String,
    pub installation_id: String,
    pub app: slack_emulator::App,
}

impl Fixture {
    pub fn creds(&self) -> String {
        format!("{}-creds", self.name)
    }
    pub fn output(&self) -> String {
        format!("{}-token", self.name)
    }
}

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

fn rand_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..6).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect()
}
