//! The end-to-end layer over the `testground` crate: the real controller against the
//! Kubernetes emulator (or a real cluster when `E2E_KUBECONFIG` names a kubeconfig) and the
//! Slack emulator, each test in a namespace of its own.
//!
//! Against the emulator, tokio's clock is paused: waiting for a rotation twelve hours away costs
//! nothing and is deterministic. A real cluster cannot be paused, so there the Slack tokens live
//! `REAL_TTL` instead of 12h and tests express every duration as a fraction of `env.ttl()`.
//!
//! [`TestEnv`] dereferences to the ground's [`Apis`] (`env.slack`, `env.client`, `env.clock`);
//! its own methods are the ground's fixtures and waits in the test's namespace, failing the test
//! instead of returning errors.
#![allow(dead_code, unused_imports)] // each test file uses a part of it

use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    api::{Api, DeleteParams},
    Client, ResourceExt,
};
use slack_token_operator::{
    Context, Journal, Replayed, Settings, SharedClock, SlackToken, SlackTokenStatus, TokioClock,
};
use std::{future::Future, ops::Deref, sync::Arc, time::Duration};
use testground::{self, Apis, GroundConfig, Task, Times};

pub use testground::{token_yaml, Fixture, TEAM};

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
    /// The Kubernetes emulator; `None` against a real cluster.
    pub kube: Option<kube_emulator::KubeEmulator>,
    apis: Apis,
    pub ns: String,
    pub ctx: Arc<Context>,
    /// Where the operator's /healthz, /readyz and /metrics are served.
    pub http: std::net::SocketAddr,
    controller: Option<Task>,
    http_server: Task,
    settings: Settings,
}

impl Deref for TestEnv {
    type Target = Apis;
    fn deref(&self) -> &Apis {
        &self.apis
    }
}

impl TestEnv {
    async fn start() -> Self {
        // Start on a whole second so that runs are repeatable: status times are rounded to
        // seconds, and a random sub-second start would round differently from run to run.
        let start =
            jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now());
        let clock: SharedClock = Arc::new(TokioClock::starting_at(start));
        let real = std::env::var("E2E_KUBECONFIG").ok();
        let ttl = if real.is_some() { REAL_TTL } else { EMULATED_TTL };
        let config = GroundConfig { token_ttl: ttl, clock: Some(clock.clone()), ..Default::default() };
        let (kube, client) = match real {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("E2E_KUBECONFIG readable");
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                    .await
                    .expect("E2E_KUBECONFIG usable");
                (None, Client::try_from(config).expect("client"))
            }
            None => {
                let kube =
                    testground::start_kube_emulator(&config, &clock).await.expect("kube emulator starts");
                let client = kube.client();
                (Some(kube), client)
            }
        };
        let apis = Apis::start(client, &config, clock).await.expect("Slack emulator started, CRD installed");
        let ns = format!("e2e-{}", rand_suffix());
        apis.namespace(&ns).await.expect("namespace created");
        let settings = Settings { health_check_interval: ttl / 4 };
        let ctx = apis.context(apis.client.clone(), settings.clone(), None);
        let (http, http_server) = testground::serve_http(&ctx).await.expect("HTTP server");
        Self { kube, apis, ns, ctx, http, controller: None, http_server, settings }
    }

    /// Starts the controller, watching the test's namespace.
    pub fn start_controller(&mut self) {
        assert!(self.controller.is_none(), "the controller runs already");
        self.controller = Some(testground::spawn_controller(self.ctx.clone(), vec![self.ns.clone()]));
    }

    /// Stops the operator as a crash would (its memory, and every pair held there, is gone) and
    /// starts a new one, with the crash journal in `journal` if given. The new operator replays
    /// the journal before it takes any work, as `run` does; returns what the replay did.
    pub async fn restart_operator(&mut self, journal: Option<&std::path::Path>) -> Replayed {
        if let Some(controller) = self.controller.take() {
            controller.stop().await;
        }
        let journal = journal.map(|dir| Journal::open(dir).expect("journal directory usable"));
        self.ctx = self.apis.context(self.client.clone(), self.settings.clone(), journal);
        let (http, server) = testground::serve_http(&self.ctx).await.expect("HTTP server");
        (self.http, self.http_server) = (http, server);
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
        self.apis.tokens(&self.ns)
    }

    pub fn secrets(&self) -> Api<Secret> {
        self.apis.secrets(&self.ns)
    }

    /// Lets `d` pass: instantly under the paused clock, for real against a real cluster.
    pub async fn advance(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    /// Polls `check` until it yields `Some`, failing the test after `within`.
    pub async fn eventually<T, F, Fut>(&self, what: &str, within: Duration, check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        testground::eventually(what, within, Duration::from_millis(200), check)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn status(&self, name: &str) -> SlackTokenStatus {
        self.apis.status(&self.ns, name).await.expect("SlackToken exists")
    }

    /// The times of SlackToken `name`'s status.
    pub async fn times(&self, name: &str) -> Times {
        Times::of(&self.status(name).await)
    }

    /// How long until SlackToken `name`'s next rotation.
    pub async fn until_next_rotation(&self, name: &str) -> Duration {
        self.apis.until_next_rotation(&self.ns, name).await.expect("nextRotationTime set")
    }

    /// Waits for the Ready condition to have `status` and returns its (reason, message).
    pub async fn ready(&self, name: &str, status: &str) -> (String, String) {
        self.condition(name, "Ready", status).await
    }

    /// The condition `type_` of SlackToken `name`, once it has `status`: (reason, message).
    pub async fn condition(&self, name: &str, type_: &str, status: &str) -> (String, String) {
        self.eventually(&format!("{name} {type_}={status}"), self.patience(), || async {
            let c = self.apis.condition(&self.ns, name, type_).await?;
            (c.status == status).then_some((c.reason, c.message))
        })
        .await
    }

    pub async fn secret_value(&self, name: &str, key: &str) -> Option<String> {
        self.apis.secret_value(&self.ns, name, key).await
    }

    /// Waits until the output Secret holds a token different from `previous`.
    pub async fn published_token(&self, secret: &str, previous: Option<&str>) -> String {
        self.eventually(&format!("new token in {secret}"), self.patience(), || async {
            self.secret_value(secret, "token").await.filter(|v| Some(v.as_str()) != previous)
        })
        .await
    }

    pub async fn create_secret(&self, name: &str, data: &[(&str, &str)]) {
        self.apis.create_secret(&self.ns, name, data).await.expect("Secret created");
    }

    pub async fn create_token(&self, yaml: &str) -> SlackToken {
        self.apis.create_token(&self.ns, yaml).await.expect("SlackToken created")
    }

    /// A rotating bot installation, its credentials Secret `<name>-creds` and a SlackToken `<name>`
    /// publishing into `<name>-token`, with `extra_spec` appended to the spec.
    pub async fn oauth_token(&self, name: &str, extra_spec: &str) -> Fixture {
        self.apis.oauth_token(&self.ns, name, extra_spec).await.expect("OAuth fixture")
    }

    /// An app configuration token, its credentials Secret `<name>-creds` and a SlackToken `<name>`
    /// publishing into `<name>-token`. The fixture's installation is the token's chain.
    pub async fn config_token(&self, name: &str) -> Fixture {
        self.apis.config_token(&self.ns, name).await.expect("AppConfiguration fixture")
    }

    /// A long-lived `token` and a Manual SlackToken `<name>` publishing it; `spec` needs
    /// `rotationPeriod` and `manual`.
    pub async fn manual_token(&self, name: &str, token: &str, spec: &str) {
        self.apis.manual_token(&self.ns, name, token, spec).await.expect("Manual fixture")
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

    /// Reasons of the Events recorded about SlackToken `name`.
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        self.apis.event_reasons(&self.ns, name).await.expect("Events listed")
    }

    /// The refresh token currently saved in the credentials Secret.
    pub async fn saved_refresh_token(&self, f: &Fixture) -> Option<String> {
        self.secret_value(&f.creds(), "refreshToken").await
    }
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

fn rand_suffix() -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    (0..6).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect()
}

/// Collects everything logged through it: give `move || captured.clone()` to a subscriber as its
/// writer, and read it back with [`Captured::text`].
#[derive(Clone, Default)]
pub struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
