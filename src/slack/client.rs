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
mod tests {
    use super::*;

    #[test]
    fn the_slack_url_must_be_https_unless_it_stays_on_this_machine() {
        // (url, allow_insecure, accepted)
        let table = [
            ("https://slack.com/api/", false, true),
            ("https://slack-gov.com/api/", false, true),
            ("http://127.0.0.1:8080/api/", false, true),
            ("http://localhost:8080/api/", false, true),
            ("http://[::1]:8080/api/", false, true),
            ("http://slack.internal/api/", false, false),
            ("http://10.0.0.5/api/", false, false),
            ("http://slack.internal/api/", true, true),
            ("ftp://slack.com/api/", true, false),
            ("slack.com/api", false, false),
        ];
        for (url, allow, accepted) in table {
            assert_eq!(check_slack_url(url, allow).is_ok(), accepted, "{url} allow_insecure={allow}");
        }
    }

    #[test]
    fn redacted_token_shows_only_its_kind() {
        let token = SecretString::from("xoxe.xoxb-1-SECRETPART".to_owned());
        assert_eq!(redacted(&token), "xoxe.xoxb-1-…");
        assert_eq!(redacted(&SecretString::from("weird".to_owned())), "…");
    }

    #[test]
    fn oauth_answer_yields_tokens_and_identity() {
        let body = serde_json::json!({
            "ok": true, "access_token": "xoxe.xoxb-1-a", "refresh_token": "xoxe-1-r", "expires_in": 43200,
            "token_type": "bot", "scope": "chat:write", "bot_user_id": "U1", "app_id": "A1",
            "team": {"id": "T1", "name": "Team"}, "enterprise": null
        });
        let issued = issued_from_oauth("oauth.v2.access", &body).unwrap();
        assert_eq!(issued.expires_in, Some(Duration::from_secs(43200)));
        assert_eq!(issued.identity.team_id.as_deref(), Some("T1"));
        assert_eq!(issued.identity.bot_user_id.as_deref(), Some("U1"));
        assert_eq!(issued.identity.enterprise_id, None);
        assert!(!format!("{issued:?}").contains("xoxe-1-r"), "Debug must not show tokens");
    }

    #[test]
    fn a_lifetime_that_makes_no_sense_is_not_believed_and_12h_assumed() {
        use serde_json::json;
        let h = |hours: u64| Some(Duration::from_secs(hours * 3600));
        // (expires_in, exp, iat, believed lifetime)
        let table = [
            (json!(43200), json!(1_043_200), json!(1_000_000), h(12)),
            (json!(60), json!(1_000_060), json!(1_000_000), Some(Duration::from_secs(60))),
            (json!(7 * 24 * 3600), json!(1_604_800), json!(1_000_000), h(7 * 24)),
            (Value::Null, Value::Null, json!(1_000_000), None),
            (json!(0), json!(1_000_000), json!(1_000_000), None),
            (json!(-5), json!(999_995), json!(1_000_000), None),
            (json!(7 * 24 * 3600 + 1), json!(1_604_801), json!(1_000_000), None),
            (json!(u64::MAX), json!(i64::MAX), json!(i64::MIN), None),
            (json!("43200"), json!("1043200"), json!(1_000_000), None),
            (json!(43200.5), json!(1_043_200.5), json!(1_000_000), None),
        ];
        for (expires_in, exp, iat, lifetime) in table {
            let mut oauth = json!({"ok": true, "access_token": "xoxe.xoxb-1-a", "refresh_token": "xoxe-1-r"});
            if !expires_in.is_null() {
                oauth["expires_in"] = expires_in.clone();
            }
            let issued = issued_from_oauth("oauth.v2.access", &oauth).unwrap();
            assert_eq!(issued.expires_in, lifetime, "expires_in {expires_in}");
            assert_eq!(issued.lifetime(), lifetime.unwrap_or(ROTATING_TOKEN_LIFETIME));
            let mut config =
                json!({"ok": true, "token": "xoxe.xoxp-1-a", "refresh_token": "xoxe-1-r", "iat": iat});
            if !exp.is_null() {
                config["exp"] = exp.clone();
            }
            let issued = issued_from_config("tooling.tokens.rotate", &config).unwrap();
            assert_eq!(issued.expires_in, lifetime, "exp {exp} iat {}", config["iat"]);
        }
    }

    #[test]
    fn an_answer_without_either_token_is_unreadable() {
        use serde_json::json;
        for (missing, body) in [
            ("refresh_token", json!({"ok": true, "access_token": "xoxe.xoxb-1-a", "expires_in": 43200})),
            ("access_token", json!({"ok": true, "refresh_token": "xoxe-1-r", "expires_in": 43200})),
            ("access_token", json!({"ok": true, "access_token": "", "refresh_token": "xoxe-1-r"})),
            ("refresh_token", json!({"ok": true, "access_token": "a", "refresh_token": 5})),
        ] {
            let err = issued_from_oauth("oauth.v2.access", &body).unwrap_err();
            assert_eq!(err.kind(), crate::slack::SlackErrorKind::Unreadable, "{body}");
            assert!(err.to_string().contains(missing), "{err}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use serde_json::json;

        /// Any JSON value, nested a few levels, with the keys Slack's answers use among others.
        fn any_json() -> impl Strategy<Value = Value> {
            let key = prop_oneof![
                Just("ok".to_owned()),
                Just("error".to_owned()),
                Just("access_token".to_owned()),
                Just("refresh_token".to_owned()),
                Just("token".to_owned()),
                Just("expires_in".to_owned()),
                Just("exp".to_owned()),
                Just("iat".to_owned()),
                Just("team".to_owned()),
                Just("authed_user".to_owned()),
                Just("id".to_owned()),
                "[a-z_]{1,8}",
            ];
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
                ".{0,12}".prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 32, 6, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    prop::collection::btree_map(key.clone(), inner, 0..8)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// Reads an answer the way the client does, to the end: every outcome is either the
        /// fields or a classified error.
        fn read_all(text: &str) -> Vec<Result<(), SlackError>> {
            match read_answer("oauth.v2.access", text) {
                Ok(body) => vec![
                    issued_from_oauth("oauth.v2.access", &body).map(drop),
                    issued_from_config("tooling.tokens.rotate", &body).map(drop),
                ],
                Err(e) => vec![Err(e)],
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2048))]

            #[test]
            fn any_bytes_are_an_answer_or_a_classified_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                for result in read_all(&String::from_utf8_lossy(&bytes)) {
                    if let Err(e) = result {
                        let classified = matches!(
                            e,
                            SlackError::Decode { .. } | SlackError::Api { .. } | SlackError::RateLimited { .. }
                        );
                        prop_assert!(classified, "{:?}", e);
                    }
                }
            }

            #[test]
            fn any_json_is_an_answer_or_a_classified_error(mut body in any_json(), field in 0usize..3) {
                // A token-looking value in whatever answer: never repeated by an error.
                const TOKEN: &str = "xoxe-1-NEVERSHOWN";
                if let Some(map) = body.as_object_mut() {
                    map.insert(["access_token", "refresh_token", "token"][field].into(), Value::from(TOKEN));
                }
                for result in read_all(&body.to_string()) {
                    if let Err(e) = result {
                        let classified = matches!(
                            e,
                            SlackError::Decode { .. } | SlackError::Api { .. } | SlackError::RateLimited { .. }
                        );
                        prop_assert!(classified, "{:?}", e);
                        let text = format!("{e} {e:?}");
                        prop_assert!(!text.contains("NEVERSHOWN"), "an error repeats the token: {}", text);
                    }
                }
            }

            #[test]
            fn an_ok_answer_without_a_token_is_unreadable_never_accepted(mut body in any_json()) {
                if let Some(map) = body.as_object_mut() {
                    map.insert("ok".into(), Value::Bool(true));
                    map.remove("refresh_token");
                }
                if let Ok(body) = read_answer("oauth.v2.access", &body.to_string()) {
                    let e = issued_from_oauth("oauth.v2.access", &body).unwrap_err();
                    prop_assert_eq!(e.kind(), crate::slack::SlackErrorKind::Unreadable);
                }
            }

            #[test]
            fn a_well_formed_answer_round_trips(
                access in "xoxe\\.xox[bp]-1-[A-Za-z0-9-]{1,150}",
                refresh in "xoxe-1-[A-Za-z0-9-]{1,150}",
                expires_in in 1u64..=MAX_REPORTED_LIFETIME.as_secs(),
                team in "T[A-Z0-9]{1,10}",
                user in proptest::option::of("U[A-Z0-9]{1,10}"),
                app in "A[A-Z0-9]{1,10}",
                scope in "[a-z:,]{1,40}",
            ) {
                let text = json!({
                    "ok": true, "access_token": access, "refresh_token": refresh, "expires_in": expires_in,
                    "token_type": "bot", "scope": scope, "app_id": app, "team": {"id": team, "name": "x"},
                    "authed_user": {"id": user}, "enterprise": null,
                }).to_string();
                let issued = issued_from_oauth("oauth.v2.access", &read_answer("oauth.v2.access", &text).unwrap()).unwrap();
                prop_assert_eq!(issued.access_token.expose_secret(), access.as_str());
                prop_assert_eq!(issued.refresh_token.expose_secret(), refresh.as_str());
                prop_assert_eq!(issued.expires_in, Some(Duration::from_secs(expires_in)));
                prop_assert_eq!(issued.identity.team_id, Some(team));
                prop_assert_eq!(issued.identity.user_id, user);
                prop_assert_eq!(issued.identity.app_id, Some(app));
                prop_assert_eq!(issued.identity.scopes, Some(scope));
            }
        }
    }
}
