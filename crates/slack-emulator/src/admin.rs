//! `/admin/…`: JSON endpoints to seed, inspect and break a running emulator from another process
//! (the operator's `emulate` subcommand, benchmarks, people with curl). Not part of Slack.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::faults::Fault;
use crate::http::json_response;
use crate::state::{App, TokenKind};
use crate::Shared;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/apps", post(create_app))
        .route("/apps/{app_id}/token-rotation", post(enable_rotation))
        .route("/installations", post(install))
        .route("/config-tokens", post(config_token))
        .route("/legacy-tokens", post(legacy_token))
        .route("/tokens/inspect", post(inspect))
        .route("/stats", get(stats))
        .route("/faults", post(faults))
        .route("/outage", post(outage))
        .route("/rate-limits", post(rate_limit))
}

fn not_found(what: &str) -> Response {
    json_response(StatusCode::NOT_FOUND, &json!({"error": what}))
}

fn ok<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_value(value) {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": e.to_string()}),
        ),
    }
}

#[derive(Deserialize)]
struct NewApp {
    #[serde(default)]
    token_rotation: bool,
}

async fn create_app(State(s): State<Arc<Shared>>, Json(req): Json<NewApp>) -> Response {
    let app = s.lock().store.create_app(req.token_rotation);
    ok(&app)
}

async fn enable_rotation(State(s): State<Arc<Shared>>, Path(app_id): Path<String>) -> Response {
    match s.lock().store.enable_token_rotation(&app_id) {
        Some(app) => ok(&app),
        None => not_found("unknown app_id"),
    }
}

fn default_kind() -> TokenKind {
    TokenKind::Bot
}

#[derive(Deserialize)]
struct NewInstallation {
    /// Either identifies the app.
    client_id: Option<String>,
    app_id: Option<String>,
    team_id: String,
    #[serde(default = "default_kind")]
    kind: TokenKind,
}

async fn install(State(s): State<Arc<Shared>>, Json(req): Json<NewInstallation>) -> Response {
    let now = s.now();
    let mut g = s.lock();
    let app: Option<App> = match (&req.client_id, &req.app_id) {
        (Some(client_id), _) => g.store.app_by_client_id(client_id),
        (None, Some(app_id)) => g.store.app(app_id),
        (None, None) => None,
    };
    let Some(app) = app else {
        return not_found(
            "unknown app: give client_id or app_id of an app made with POST /admin/apps",
        );
    };
    let inst = g.store.install(&app, &req.team_id, req.kind, now);
    ok(&inst)
}

#[derive(Deserialize)]
struct NewConfigToken {
    team_id: String,
    user_id: String,
}

async fn config_token(State(s): State<Arc<Shared>>, Json(req): Json<NewConfigToken>) -> Response {
    let now = s.now();
    let token = s
        .lock()
        .store
        .create_config_token(&req.team_id, &req.user_id, now);
    ok(&token)
}

#[derive(Deserialize)]
struct NewLegacyToken {
    team_id: String,
    user_id: String,
    #[serde(default = "default_kind")]
    kind: TokenKind,
}

async fn legacy_token(State(s): State<Arc<Shared>>, Json(req): Json<NewLegacyToken>) -> Response {
    let token = s
        .lock()
        .store
        .create_legacy_token(&req.team_id, &req.user_id, req.kind);
    ok(&json!({"token": token}))
}

#[derive(Deserialize)]
struct Inspect {
    token: String,
}

/// Token in the body, not the path, so it never lands in access logs.
async fn inspect(State(s): State<Arc<Shared>>, Json(req): Json<Inspect>) -> Response {
    let now = s.now();
    let g = s.lock();
    ok(&json!({
        "valid": g.store.token_is_valid(&req.token, now),
        "revoked": g.store.is_revoked(&req.token),
        "installation": g.store.installation_of(&req.token),
    }))
}

async fn stats(State(s): State<Arc<Shared>>) -> Response {
    let g = s.lock();
    // Sorted maps keep the output stable for people and diffs.
    let calls: BTreeMap<_, _> = g.calls.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let refreshes: BTreeMap<_, _> = g.store.all_refreshes().into_iter().collect();
    ok(&json!({
        "calls": calls,
        "refreshes": refreshes,
        "broken_chains": g.store.broken_chains(),
        "outage": g.faults.outage(),
    }))
}

fn default_method() -> String {
    "*".to_string()
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
struct InjectFault {
    #[serde(default = "default_method")]
    method: String,
    #[serde(default = "one")]
    count: usize,
    fault: Fault,
}

async fn faults(State(s): State<Arc<Shared>>, Json(req): Json<InjectFault>) -> Response {
    s.lock().faults.fail_next(&req.method, req.count, req.fault);
    ok(&json!({"ok": true}))
}

#[derive(Deserialize)]
struct Outage {
    down: bool,
}

async fn outage(State(s): State<Arc<Shared>>, Json(req): Json<Outage>) -> Response {
    s.lock().faults.set_outage(req.down);
    ok(&json!({"ok": true}))
}

#[derive(Deserialize)]
struct RateLimit {
    method: String,
    per_minute: u32,
}

async fn rate_limit(State(s): State<Arc<Shared>>, Json(req): Json<RateLimit>) -> Response {
    s.lock().faults.set_rate_limit(&req.method, req.per_minute);
    ok(&json!({"ok": true}))
}
