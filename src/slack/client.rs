//! Client for the few Slack Web API methods the operator calls.
//!
//! Every answer becomes either the fields the operator needs or a [`SlackError`] (classified in
//! [`super::error`]). Tokens only ever travel as [`SecretString`], so they cannot end up in a log
//! line or an error message by accident.

use super::error::SlackError;
use crate::resource::Identity;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use std::{sync::Arc, time::Duration};
use tracing::warn;

/// What Slack says when no `Retry-After` comes with a 429; Slack's tier-1 limit is one call a minute.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Giving up on connecting; a healthy Slack edge answers in well under a second.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Giving up on a whole call. A hung Slack must not hold a reconcile (and its concurrency slot).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long Slack's rotating tokens live (`expires_in: 43200`); assumed when an answer gives no
/// usable lifetime, so that the token is still rotated before it dies.
pub const ROTATING_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// A lifetime Slack reports beyond this is not believed: its rotating tokens live 12 hours, and
/// trusting a wrong long one would let the token die unrotated.
pub const MAX_REPORTED_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// A freshly issued token pair.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    /// Lifetime of the access token as Slack reported it; `None` when the answer gave none that
    /// makes sense (missing, zero, negative, over [`MAX_REPORTED_LIFETIME`]).
    pub expires_in: Option<Duration>,
    pub identity: Identity,
}

impl Issued {
    /// The lifetime to schedule by: Slack's, or its documented 12 hours when it gave none.
    pub fn lifetime(&self) -> Duration {
        self.expires_in.unwrap_or(ROTATING_TOKEN_LIFETIME)
    }
}

/// What `auth.test` says about a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthTest {
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub app_id: Option<String>,
    pub enterprise_id: Option<String>,
    /// Seconds the token has left, which Slack reports for rotating tokens; `None` when it
    /// gave none that makes sense (as for [`Issued::expires_in`]).
    pub expires_in: Option<Duration>,
}

/// Told the outcome and duration of every Slack call (the operator's metrics implement it).
pub trait CallObserver: Send + Sync {
    fn observe(&self, method: &'static str, outcome: Result<(), &SlackError>, elapsed: Duration);
}

/// Connections to Slack kept open when idle.
const IDLE_CONNECTIONS: usize = 8;

#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    base_url: String,
    observer: Option<Arc<dyn CallObserver>>,
}

impl SlackClient {
    /// `base_url` is e.g. `https://slack.com/api/` (GovSlack: `https://slack-gov.com/api/`).
    pub fn new(base_url: &str) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("slack-token-operator/", env!("CARGO_PKG_VERSION")))
            // A burst opens a connection per running reconcile; between rotations hours apart a
            // few kept open are enough (each TLS connection holds tens of KiB of buffers).
            .pool_max_idle_per_host(IDLE_CONNECTIONS)
            .build()?;
        let mut base_url = base_url.to_owned();
        if !base_url.ends_with('/') {
            base_url.push('/');
        }
        Ok(Self { http, base_url, observer: None })
    }

    /// The same client, telling `observer` about every call.
    pub fn observed_by(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// `oauth.v2.access` with `grant_type=refresh_token`: rotate a bot or user token.
    pub async fn refresh_oauth(
        &self,
        client_id: &str,
        client_secret: &SecretString,
        refresh_token: &SecretString,
    ) -> Result<Issued, SlackError> {
        const METHOD: &str = "oauth.v2.access";
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token.expose_secret())];
        let body = self.call_with_client(METHOD, client_id, client_secret, &form).await?;
        issued_from_oauth(METHOD, &body)
    }

    /// `oauth.v2.exchange`: move a long-lived token onto rotation. Works once per token.
    pub async fn exchange(
        &self,
        client_id: &str,
        client_secret: &SecretString,
        long_lived: &SecretString,
    ) -> Result<Issued, SlackError> {
        const METHOD: &str = "oauth.v2.exchange";
        let form = [("token", long_lived.expose_secret())];
        let body = self.call_with_client(METHOD, client_id, client_secret, &form).await?;
        issued_from_oauth(METHOD, &body)
    }

    /// `tooling.tokens.rotate`: rotate an app configuration token.
    pub async fn rotate_config_token(&self, refresh_token: &SecretString) -> Result<Issued, SlackError> {
        const METHOD: &str = "tooling.tokens.rotate";
        let request = self.post(METHOD).form(&[("refresh_token", refresh_token.expose_secret())]);
        let body = self.send(METHOD, request).await?;
        issued_from_config(METHOD, &body)
    }

    /// `auth.test`: who a token belongs to, and whether it still works.
    pub async fn auth_test(&self, token: &SecretString) -> Result<AuthTest, SlackError> {
        const METHOD: &str = "auth.test";
        let request = self.post(METHOD).bearer_auth(token.expose_secret());
        let body = self.send(METHOD, request).await?;
        Ok(AuthTest {
            team_id: string(&body, "team_id"),
            user_id: string(&body, "user_id"),
            app_id: string(&body, "app_id"),
            enterprise_id: string(&body, "enterprise_id"),
            // Absent for long-lived tokens: nothing to warn about here.
            expires_in: believable_lifetime(body.get("expires_in")),
        })
    }

    /// `auth.revoke`: revoke a token. Returns whether this call revoked it. A token Slack no
    /// longer accepts counts as done (`false`): nothing is left to revoke.
    pub async fn revoke(&self, token: &SecretString) -> Result<bool, SlackError> {
        const METHOD: &str = "auth.revoke";
        let request = self.post(METHOD).bearer_auth(token.expose_secret());
        match self.send(METHOD, request).await {
            Ok(body) => Ok(body.get("revoked").and_then(Value::as_bool).unwrap_or(false)),
            Err(e) if e.token_is_dead() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn post(&self, method: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{}", self.base_url, method))
    }

    /// Client credentials go as HTTP Basic auth, which Slack prefers over form fields.
    async fn call_with_client(
        &self,
        method: &'static str,
        client_id: &str,
        client_secret: &SecretString,
        form: &[(&str, &str)],
    ) -> Result<Value, SlackError> {
        let request = self.post(method).basic_auth(client_id, Some(client_secret.expose_secret())).form(form);
        self.send(method, request).await
    }

    async fn send(
        &self,
        method: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, SlackError> {
        let started = tokio::time::Instant::now();
        let result = self.send_unobserved(method, request).await;
        if let Some(observer) = &self.observer {
            observer.observe(method, result.as_ref().map(|_| ()), started.elapsed());
        }
        result
    }

    async fn send_unobserved(
        &self,
        method: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, SlackError> {
        // Error texts of reqwest carry the URL; ours never contains a token, but strip it anyway.
        let transport = |source: reqwest::Error| match source.is_timeout() {
            true => SlackError::Timeout { method, after: REQUEST_TIMEOUT },
            false => SlackError::Transport { method, source: source.without_url() },
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        if status.as_u16() == 429 {
            return Err(SlackError::RateLimited { method, retry_after: retry_after(&response) });
        }
        if !status.is_success() {
            return Err(SlackError::Http { method, status: status.as_u16() });
        }
        let text = response.text().await.map_err(transport)?;
        read_answer(method, &text)
    }
}

/// The body of an HTTP 200 answer: `{"ok": true, …}`, or what its `ok: false` means.
fn read_answer(method: &'static str, text: &str) -> Result<Value, SlackError> {
    // serde_json's syntax errors give a position, never the text, so none of a token can leak.
    let body: Value = serde_json::from_str(text)
        .map_err(|e| SlackError::Decode { method, detail: format!("not JSON ({e})") })?;
    match body.get("ok").and_then(Value::as_bool) {
        Some(true) => Ok(body),
        Some(false) => {
            let code = string(&body, "error").unwrap_or_else(|| "unknown_error".to_owned());
            if code == "ratelimited" {
                return Err(SlackError::RateLimited { method, retry_after: DEFAULT_RETRY_AFTER });
            }
            Err(SlackError::Api { method, code })
        }
        None => Err(SlackError::Decode { method, detail: "no `ok` field".to_owned() }),
    }
}

fn retry_after(response: &reqwest::Response) -> Duration {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_RETRY_AFTER)
}

fn string(body: &Value, field: &str) -> Option<String> {
    body.get(field).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
}

fn required_secret(method: &'static str, body: &Value, field: &str) -> Result<SecretString, SlackError> {
    body.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(|s| SecretString::from(s.to_owned()))
        .ok_or_else(|| SlackError::Decode { method, detail: format!("no `{field}` in the answer") })
}

#[derive(Deserialize, Default)]
struct Named {
    id: Option<String>,
}

/// A lifetime in seconds as Slack reported it, if it makes sense. Zero would make the token due
/// the moment it is saved, a negative one already dead, a huge one never due: none is believed.
fn reported_lifetime(method: &'static str, field: &str, seconds: Option<&Value>) -> Option<Duration> {
    let lifetime = believable_lifetime(seconds);
    if lifetime.is_none() {
        // Only the number (or its absence) is logged: never anything else of the answer.
        let got = match seconds {
            None => "nothing".to_owned(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => "not a number".to_owned(),
        };
        warn!(method, field, got, "Slack gave no usable token lifetime; assuming 12h");
    }
    lifetime
}

/// Seconds as Slack reported them, if they make sense: over zero, at most [`MAX_REPORTED_LIFETIME`].
fn believable_lifetime(seconds: Option<&Value>) -> Option<Duration> {
    seconds
        .and_then(Value::as_u64)
        .map(Duration::from_secs)
        .filter(|d| !d.is_zero() && *d <= MAX_REPORTED_LIFETIME)
}

fn issued_from_config(method: &'static str, body: &Value) -> Result<Issued, SlackError> {
    let access_token = required_secret(method, body, "token")?;
    let refresh_token = required_secret(method, body, "refresh_token")?;
    let (exp, iat) = (body.get("exp").and_then(Value::as_i64), body.get("iat").and_then(Value::as_i64));
    let seconds = exp.zip(iat).and_then(|(exp, iat)| exp.checked_sub(iat)).map(Value::from);
    let expires_in = reported_lifetime(method, "exp - iat", seconds.as_ref());
    let identity =
        Identity { team_id: string(body, "team_id"), user_id: string(body, "user_id"), ..Default::default() };
    Ok(Issued { access_token, refresh_token, expires_in, identity })
}

fn issued_from_oauth(method: &'static str, body: &Value) -> Result<Issued, SlackError> {
    let access_token = required_secret(method, body, "access_token")?;
    let refresh_token = required_secret(method, body, "refresh_token")?;
    let expires_in = reported_lifetime(method, "expires_in", body.get("expires_in"));
    let id_of = |field: &str| {
        body.get(field).cloned().and_then(|v| serde_json::from_value::<Named>(v).ok()).and_then(|n| n.id)
    };
    let user_id = string(body, "user_id").or_else(|| id_of("authed_user"));
    let identity = Identity {
        team_id: id_of("team"),
        enterprise_id: id_of("enterprise"),
        app_id: string(body, "app_id"),
        user_id,
        bot_user_id: string(body, "bot_user_id"),
        scopes: string(body, "scope"),
    };
    Ok(Issued { access_token, refresh_token, expires_in, identity })
}

/// Checks the Slack API base URL: https, or plain http only to this machine (the emulators) or
/// with `allow_insecure`. Tokens travel in every request; they must not cross a network in clear.
pub fn check_slack_url(url: &str, allow_insecure: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("Slack API URL {url:?} is not a URL: {e}"))?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback || allow_insecure => Ok(()),
        "http" => Err(format!(
            "Slack API URL {url} is plain http to another machine: tokens would cross the network in clear (use https, or --allow-insecure-slack-url for a test setup)"
        )),
        other => Err(format!("Slack API URL {url}: scheme {other:?} is not http(s)")),
    }
}

/// A token shown to people: its kind prefix only (`xoxe.xoxb-1-…`), never the secret part.
/// (Only the demo shows tokens at all.)
#[cfg(any(feature = "emulator", test))]
pub fn redacted(token: &SecretString) -> String {
    let t = token.expose_secret();
    let prefix_len = ["xoxe.xoxb-1-", "xoxe.xoxp-1-", "xoxe-1-", "xoxb-", "xoxp-", "xoxe-", "xapp-"]
        .iter()
        .find(|p| t.starts_with(*p))
        .map(|p| p.len())
        .unwrap_or(0);
    format!("{}…", &t[..prefix_len])
}

#[cfg(test)]
mod tests;
