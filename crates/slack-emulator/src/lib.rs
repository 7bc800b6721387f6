//! An emulator of the parts of the Slack Web API that rotate, exchange, test and revoke tokens.
//!
//! It listens on real HTTP (`127.0.0.1`) so the operator's own reqwest client runs unchanged against it.
//! Tests seed apps and installations through [`SlackEmulator`], inspect what the operator did
//! ([`SlackEmulator::calls`], [`SlackEmulator::broken_chains`], …) and inject failures
//! ([`SlackEmulator::fail_next`], [`SlackEmulator::set_outage`], [`SlackEmulator::set_rate_limit`]).
//! A separate process can do the same through the `/admin/…` HTTP endpoints (see the crate README).
//!
//! Time: every expiry and rate-limit window reads [`Config::now`]; the default clock is the wall time at
//! start plus elapsed *tokio* time, so `#[tokio::test(start_paused = true)]` with `tokio::time::advance`
//! moves the emulator's clock deterministically.

mod admin;
mod error;
mod faults;
mod http;
mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

pub use error::SlackError;
pub use faults::Fault;
pub use state::{App, ConfigToken, Installation, TokenKind};

use faults::Faults;
use state::Store;

/// The emulator's clock.
pub type NowFn = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// How to start the emulator.
#[derive(Clone)]
pub struct Config {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Lifetime of rotating access tokens and configuration tokens (Slack: 12 hours).
    pub access_token_ttl: Duration,
    /// How long a spent refresh token still works. Slack documents "a short grace period"; the default of
    /// zero makes any reuse fail, which is what the operator must be robust against.
    pub refresh_grace: Duration,
    /// Clock override; `None` means wall time at start plus elapsed tokio time.
    pub now: Option<NowFn>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 0,
            access_token_ttl: Duration::from_secs(43_200),
            refresh_grace: Duration::ZERO,
            now: None,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("port", &self.port)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_grace", &self.refresh_grace)
            .field("now", &self.now.as_ref().map(|_| "custom"))
            .finish()
    }
}

/// Mutable state behind one lock; no lock is ever held across an `.await`.
pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) faults: Faults,
    pub(crate) calls: HashMap<String, usize>,
}

/// What the HTTP handlers and the handle share.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    pub(crate) now: NowFn,
    /// Turns true (or closes) when the emulator shuts down; hanging requests wait on it.
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the emulator down with poisoned-lock panics.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn now(&self) -> jiff::Timestamp {
        (self.now)()
    }

    /// Resolves when the emulator shuts down.
    pub(crate) async fn stopped(&self) {
        let mut rx = self.shutdown.clone();
        // An error means the sender is gone, which is also a shutdown.
        let _ = rx.wait_for(|down| *down).await;
    }
}

/// Stops the server when the last [`SlackEmulator`] clone is dropped.
struct ServerGuard {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// A running emulator. Clones share the same server and state; dropping the last clone (or calling
/// [`SlackEmulator::shutdown`]) stops it.
#[derive(Clone)]
pub struct SlackEmulator {
    shared: Arc<Shared>,
    guard: Arc<ServerGuard>,
}

impl std::fmt::Debug for SlackEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackEmulator").field("addr", &self.guard.addr).finish()
    }
}

impl SlackEmulator {
    /// Starts on a random port with default settings.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(Config::default()).await
    }

    /// Starts with the given settings; the server runs on a tokio task until shutdown.
    pub async fn start_with(config: Config) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
        Self::start_with_listener(listener, config).await
    }

    /// Serves on a listener bound by the caller (e.g. `0.0.0.0` so a cluster can reach a separate
    /// emulator process); `config.port` is ignored and [`SlackEmulator::base_url`] uses the listener's address.
    pub async fn start_with_listener(
        listener: tokio::net::TcpListener,
        config: Config,
    ) -> anyhow::Result<Self> {
        let now = config.now.clone().unwrap_or_else(default_clock);
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                store: Store::new(config.access_token_ttl, config.refresh_grace),
                faults: Faults::default(),
                calls: HashMap::new(),
            }),
            now,
            shutdown: rx,
        });
        let app = http::router(shared.clone());
        let stop = shared.clone();
        tokio::spawn(async move {
            let served =
                axum::serve(listener, app).with_graceful_shutdown(async move { stop.stopped().await }).await;
            if let Err(error) = served {
                tracing::error!(%error, "slack emulator server failed");
            }
        });
        tracing::info!(%addr, "slack emulator listening");
        Ok(SlackEmulator { shared, guard: Arc::new(ServerGuard { addr, shutdown: tx }) })
    }

    /// Stops accepting requests and releases hanging ones; clones stop working too.
    pub fn shutdown(&self) {
        self.guard.shutdown.send_replace(true);
    }

    /// `http://127.0.0.1:PORT/api/` — the Slack API base URL (trailing slash, like `https://slack.com/api/`).
    pub fn base_url(&self) -> String {
        format!("http://{}/api/", self.guard.addr)
    }

    /// `http://127.0.0.1:PORT/admin/` — where the admin endpoints live.
    pub fn admin_url(&self) -> String {
        format!("http://{}/admin/", self.guard.addr)
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.guard.addr
    }

    // ------------------------------------------------------------------ seeding

    /// Registers a new app with fresh client credentials.
    pub fn create_app(&self, token_rotation: bool) -> App {
        self.shared.lock().store.create_app(token_rotation)
    }

    /// Turns token rotation on for an app, as its settings page does (it can never be turned off). Existing
    /// long-lived tokens keep working until they are exchanged with `oauth.v2.exchange` and refreshed.
    pub fn enable_token_rotation(&self, app: &App) -> App {
        let mut g = self.shared.lock();
        g.store.ensure_app(app);
        g.store.enable_token_rotation(&app.app_id).unwrap_or_else(|| app.clone())
    }

    /// Installs the app into a workspace. Rotation on: an expiring `xoxe.xoxb-1-`/`xoxe.xoxp-1-` token and
    /// an `xoxe-1-` refresh token. Rotation off: a long-lived `xoxb-`/`xoxp-` token and no refresh token.
    /// An `App` not made by this emulator is registered as given.
    pub fn install(&self, app: &App, team_id: &str, kind: TokenKind) -> Installation {
        let now = self.shared.now();
        self.shared.lock().store.install(app, team_id, kind, now)
    }

    /// An app configuration token (for the App Manifest APIs) and its refresh token.
    pub fn create_config_token(&self, team_id: &str, user_id: &str) -> ConfigToken {
        let now = self.shared.now();
        self.shared.lock().store.create_config_token(team_id, user_id, now)
    }

    /// A long-lived token with no app behind it: a legacy test token (`xoxp-`) or a custom-integration /
    /// Hubot bot token (`xoxb-`). No API can rotate it.
    pub fn create_legacy_token(&self, team_id: &str, user_id: &str, kind: TokenKind) -> String {
        self.shared.lock().store.create_legacy_token(team_id, user_id, kind)
    }

    // ------------------------------------------------------------------ introspection

    /// Requests received for a Web API method, whatever the answer (faults, 429s and errors included).
    pub fn calls(&self, method: &str) -> usize {
        self.shared.lock().calls.get(method).copied().unwrap_or(0)
    }

    /// Successful refreshes of an installation (or rotations of a configuration token, by its id).
    pub fn refreshes(&self, installation_id: &str) -> usize {
        self.shared.lock().store.refreshes(installation_id)
    }

    /// Installations (and configuration-token chains) to which a spent refresh token was presented after
    /// the grace period — in real Slack that app would now need a person to reinstall it.
    pub fn broken_chains(&self) -> Vec<String> {
        self.shared.lock().store.broken_chains()
    }

    /// An access token that works right now, or a refresh token that may be presented right now.
    pub fn token_is_valid(&self, token: &str) -> bool {
        let now = self.shared.now();
        self.shared.lock().store.token_is_valid(token, now)
    }

    /// Revoked by `auth.revoke`, by the two-active-tokens rule, or by removal of its installation.
    /// An expired token is not revoked.
    pub fn is_revoked(&self, token: &str) -> bool {
        self.shared.lock().store.is_revoked(token)
    }

    /// The installation (or configuration-token chain) an access or refresh token belongs to.
    pub fn installation_of(&self, token: &str) -> Option<String> {
        self.shared.lock().store.installation_of(token)
    }

    // ------------------------------------------------------------------ faults

    /// Answers the next `n` requests for `method` (`"*"` = any method) with `fault`. Faults queued for
    /// the method itself are used before those queued for `"*"`.
    pub fn fail_next(&self, method: &str, n: usize, fault: Fault) {
        self.shared.lock().faults.fail_next(method, n, fault);
    }

    /// While down, every Web API method answers HTTP 503 (admin endpoints keep working).
    pub fn set_outage(&self, down: bool) {
        self.shared.lock().faults.set_outage(down);
    }

    /// Access tokens issued from now on expire `ttl` after issue (those issued before keep their
    /// expiry), as when Slack shortens token lifetimes; with [`Fault::Amend`] removing
    /// `expires_in`, an answer that does not say how long its token lives.
    pub fn set_access_token_ttl(&self, ttl: Duration) {
        self.shared.lock().store.set_ttl(ttl);
    }

    /// Allows `per_minute` calls of `method` per one-minute window; beyond it HTTP 429 with
    /// `Retry-After`. `0` removes the limit.
    pub fn set_rate_limit(&self, method: &str, per_minute: u32) {
        self.shared.lock().faults.set_rate_limit(method, per_minute);
    }
}

/// Wall time at start plus elapsed tokio time: follows `tokio::time::pause`/`advance` in tests.
fn default_clock() -> NowFn {
    let wall = jiff::Timestamp::now();
    let start = tokio::time::Instant::now();
    Arc::new(move || {
        jiff::SignedDuration::try_from(start.elapsed())
            .ok()
            .and_then(|d| wall.checked_add(d).ok())
            .unwrap_or(jiff::Timestamp::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Handles are shared across tasks by the operator's tests and the `emulate` subcommand.
    #[test]
    fn handle_and_config_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<SlackEmulator>();
        assert_send_sync::<Config>();
        assert_send_sync::<Fault>();
    }
}
