//! An in-process Kubernetes API server emulator for tests, demos and benchmarks.
//!
//! It serves real HTTP on 127.0.0.1 so that kube-rs clients, `kube::runtime` watchers and
//! controllers, and `kubectl` talk to it exactly as to a real API server. See README.md
//! for what is emulated and what is deliberately left out.

mod access;
mod apply;
mod discovery;
mod error;
mod faults;
mod fieldset;
mod gc;
mod kubeconfig;
mod managed_fields;
mod openapi;
mod patch;
mod proto;
mod rbac;
mod resources;
mod routes;
mod rules;
mod schema;
mod selector;
mod store;
mod table;
mod verbs;
mod watch;

pub use faults::{Faults, Stats, Verb};

use routes::Shared;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Wall clock used for timestamps (creationTimestamp, deletionTimestamp, managedFields time).
pub type NowFn = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// Emulator settings.
#[derive(Clone, Default)]
pub struct Config {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Authorize service-account tokens against stored RBAC objects.
    pub rbac: bool,
    /// Wall clock; None = start wall time + elapsed tokio time (consistent under a paused clock).
    pub now: Option<NowFn>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("port", &self.port)
            .field("rbac", &self.rbac)
            .field("now", &self.now.as_ref().map(|_| "custom clock"))
            .finish()
    }
}

impl std::fmt::Debug for KubeEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeEmulator").field("url", &self.url()).finish()
    }
}

const ADMIN_TOKEN: &str = "kube-emulator-admin-token";

/// A running emulator. Dropping it (or calling [`KubeEmulator::shutdown`]) stops the server.
pub struct KubeEmulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

fn default_clock() -> NowFn {
    let wall = jiff::Timestamp::now();
    let start = tokio::time::Instant::now();
    Arc::new(move || {
        let elapsed = tokio::time::Instant::now().duration_since(start);
        wall.checked_add(jiff::SignedDuration::try_from(elapsed).unwrap_or_default()).unwrap_or(wall)
    })
}

impl KubeEmulator {
    /// Starts on a random port with `Config::default()`.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(Config::default()).await
    }

    pub async fn start_with(config: Config) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let now = config.now.clone().unwrap_or_else(default_clock);
        let state = Arc::new(Mutex::new(verbs::State::new(now)));
        let faults = Faults { rules: Arc::default(), state: state.clone() };
        let shared = Arc::new(Shared {
            state,
            faults,
            stats: Mutex::new(Stats::default()),
            stats_by_resource: Mutex::new(HashMap::new()),
            rbac: config.rbac,
            admin_token: ADMIN_TOKEN.to_string(),
            tokens: Mutex::new(HashMap::new()),
            addr: addr.to_string(),
        });
        let handler_shared = shared.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let s = handler_shared.clone();
            async move { routes::handle(s, req).await }
        });
        // TCP_NODELAY: without it, Nagle + delayed ACK hold small watch chunks in the kernel
        // for ~40 ms of real time on reused connections, and a test on tokio's paused clock
        // auto-advances virtual time past its deadlines meanwhile.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "kube-emulator server stopped with an error");
            }
        });
        Ok(Self { shared, addr, shutdown: Some(tx), task: Some(task) })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kubeconfig with an admin user; works with kubectl and `kube::Config::from_custom_kubeconfig`.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig::render(&self.url(), &self.shared.admin_token)
    }

    pub fn write_kubeconfig(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    fn client_for_token(&self, token: &str) -> kube::Client {
        let uri = self.url().parse().expect("the emulator URL is always a valid URI");
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".into();
        config.auth_info = serde_json::from_value(serde_json::json!({ "token": token }))
            .expect("AuthInfo with a token deserializes");
        kube::Client::try_from(config).expect("building an HTTP client for the emulator")
    }

    /// Admin client over real HTTP (bypasses RBAC).
    pub fn client(&self) -> kube::Client {
        self.client_for_token(&self.shared.admin_token)
    }

    /// A client authenticated as ServiceAccount `namespace/name`. With `Config::rbac` on,
    /// its requests are authorized against the stored Roles/ClusterRoles and bindings.
    pub fn service_account_client(&self, namespace: &str, name: &str) -> kube::Client {
        let token = format!("sa-{namespace}-{name}-{:016x}", rand::random::<u64>());
        if let Ok(mut t) = self.shared.tokens.lock() {
            t.insert(token.clone(), rbac::User::service_account(namespace, name));
        }
        self.client_for_token(&token)
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// Requests per verb for one resource: its plural (`"secrets"`, `"widgets"`), or
    /// `"widgets/status"` for the status subresource.
    pub fn stats_for(&self, resource: &str) -> Stats {
        self.shared.stats_by_resource.lock().ok().and_then(|m| m.get(resource).copied()).unwrap_or_default()
    }

    /// Stops the server, ending open watches, and waits for it to finish.
    pub async fn shutdown(mut self) {
        self.stop();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn stop(&mut self) {
        self.shared.faults.cut_watches();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for KubeEmulator {
    fn drop(&mut self) {
        self.stop();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
