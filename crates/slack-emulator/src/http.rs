//! The HTTP face of the emulator: `POST /api/<method>` the way Slack parses and answers it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::error::SlackError;
use crate::faults::Fault;
use crate::{admin, Shared};

/// Methods whose documented content type is only `application/x-www-form-urlencoded`; Slack ignores a
/// JSON body for them, so their arguments must come from the form (or query string).
const FORM_ONLY: &[&str] = &["oauth.v2.access", "oauth.v2.exchange", "tooling.tokens.rotate"];

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().route("/api/{method}", any(api)).nest("/admin", admin::router()).with_state(shared)
}

/// The arguments of one call, wherever they came from.
#[derive(Debug, Default)]
struct Args {
    params: HashMap<String, String>,
    bearer: Option<String>,
    basic: Option<(String, String)>,
}

impl Args {
    fn parse(method: &str, headers: &HeaderMap, uri: &Uri, body: &Bytes) -> Result<Self, SlackError> {
        let mut args = Args::default();
        // Slack reads arguments from the query string too; body values win.
        if let Some(q) = uri.query() {
            args.params.extend(parse_form(q.as_bytes()));
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("application/json") {
            if !FORM_ONLY.contains(&method) && !body.is_empty() {
                let value: Value = serde_json::from_slice(body).map_err(|_| SlackError::InvalidJson)?;
                let Value::Object(map) = value else {
                    return Err(SlackError::InvalidJson);
                };
                for (k, v) in map {
                    // With a JSON body the token must travel in the Authorization header.
                    if k == "token" {
                        continue;
                    }
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    args.params.insert(k, v);
                }
            }
        } else {
            args.params.extend(parse_form(body));
        }
        if let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
            let auth = auth.trim();
            if let Some(token) = strip_scheme(auth, "bearer") {
                args.bearer = Some(token.trim().to_string());
            } else if let Some(encoded) = strip_scheme(auth, "basic") {
                args.basic = decode_basic(encoded.trim());
            }
        }
        Ok(args)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    fn token(&self) -> Option<&str> {
        self.bearer.as_deref().or_else(|| self.get("token"))
    }

    /// HTTP Basic first (Slack's preference), then the form fields.
    fn client(&self) -> (Option<&str>, Option<&str>) {
        match &self.basic {
            Some((id, secret)) => (Some(id.as_str()), Some(secret.as_str())),
            None => (self.get("client_id"), self.get("client_secret")),
        }
    }
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (head, rest) = value.split_once(' ')?;
    head.eq_ignore_ascii_case(scheme).then_some(rest)
}

fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// Lenient form parsing: an undecodable body counts as no arguments, as it would carry none Slack can read.
fn parse_form(bytes: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(bytes).unwrap_or_default()
}

async fn api(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let (outage, fault) = {
        let mut g = shared.lock();
        *g.calls.entry(method.clone()).or_default() += 1;
        let outage = g.faults.outage();
        let fault = if outage { None } else { g.faults.take(&method) };
        (outage, fault)
    };
    tracing::debug!(method = %method, "slack api call");
    if outage {
        return http_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    let mut amend = None;
    match fault {
        None => {}
        Some(Fault::Amend(changes)) => amend = Some(changes),
        Some(Fault::Delay(d)) => {
            tokio::select! {
                () = tokio::time::sleep(d) => {}
                () = shared.stopped() => return http_error(StatusCode::SERVICE_UNAVAILABLE),
            }
        }
        Some(Fault::Hang) => {
            shared.stopped().await;
            return http_error(StatusCode::SERVICE_UNAVAILABLE);
        }
        Some(fault) => return fault_response(fault),
    }

    let now = shared.now();
    if let Err(retry_after) = shared.lock().faults.admit(&method, now) {
        tracing::debug!(method = %method, retry_after, "rate limited");
        return rate_limited(retry_after);
    }

    let answer = Args::parse(&method, &headers, &uri, &body).and_then(|args| {
        let mut g = shared.lock();
        let store = &mut g.store;
        match method.as_str() {
            "oauth.v2.access" => {
                let (id, secret) = args.client();
                store.oauth_v2_access(id, secret, args.get("grant_type"), args.get("refresh_token"), now)
            }
            "oauth.v2.exchange" => {
                let (id, secret) = args.client();
                store.oauth_v2_exchange(id, secret, args.get("token"), now)
            }
            "tooling.tokens.rotate" => store.tooling_tokens_rotate(args.get("refresh_token"), now),
            "auth.test" => store.auth_test(args.token(), now),
            "auth.revoke" => {
                let test = matches!(args.get("test"), Some("1" | "true"));
                store.auth_revoke(args.token(), test, now)
            }
            _ => Err(SlackError::UnknownMethod),
        }
    });
    match answer {
        Ok(mut body) => {
            if let (Some(changes), Some(fields)) = (amend, body.as_object_mut()) {
                for (key, value) in changes {
                    match value {
                        Value::Null => fields.remove(&key),
                        value => fields.insert(key, value),
                    };
                }
            }
            json_response(StatusCode::OK, &body)
        }
        Err(SlackError::UnknownMethod) => json_response(
            StatusCode::OK,
            &json!({"ok": false, "error": "unknown_method", "req_method": method}),
        ),
        Err(error) => {
            tracing::debug!(method = %method, error = %error, "slack api error");
            json_response(StatusCode::OK, &json!({"ok": false, "error": error.code()}))
        }
    }
}

fn fault_response(fault: Fault) -> Response {
    match fault {
        Fault::Http(code) => {
            http_error(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        }
        Fault::RateLimited { retry_after_secs } => rate_limited(retry_after_secs),
        Fault::SlackError(code) => json_response(StatusCode::OK, &json!({"ok": false, "error": code})),
        Fault::Body(body) => json_response(StatusCode::OK, &body),
        Fault::MalformedJson => {
            let mut resp = (StatusCode::OK, Body::from(r#"{"ok":true,"access_token":"#)).into_response();
            resp.headers_mut().insert(header::CONTENT_TYPE, json_content_type());
            resp
        }
        // Handled by the caller; answering normally here is the safe fallback.
        Fault::Delay(_) | Fault::Hang | Fault::Amend(_) => http_error(StatusCode::SERVICE_UNAVAILABLE),
    }
}

fn json_content_type() -> HeaderValue {
    HeaderValue::from_static("application/json; charset=utf-8")
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, Body::from(body.to_string())).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, json_content_type());
    resp
}

/// A gateway-style error page: what a client sees when the request never reached Slack's API servers.
fn http_error(status: StatusCode) -> Response {
    let text = format!(
        "<html><head><title>{status}</title></head><body><h1>{status}</h1></body></html>",
        status = status
    );
    let mut resp = (status, Body::from(text)).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    resp
}

fn rate_limited(retry_after_secs: u64) -> Response {
    let mut resp = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({"ok": false, "error": SlackError::RateLimited.code()}),
    );
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    resp
}
