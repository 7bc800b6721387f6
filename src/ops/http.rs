//! /healthz, /readyz and /metrics.

use super::{health::Health, metrics::Metrics};
use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    routing::get,
    serve::ListenerExt,
    Router,
};
use std::sync::Arc;
use tokio::net::TcpListener;

/// What the endpoints read.
#[derive(Clone)]
pub struct Endpoints {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn answer(result: Result<(), &'static str>) -> (StatusCode, &'static str) {
    match result {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

pub fn router(endpoints: Endpoints) -> Router {
    Router::new()
        .route("/healthz", get(|State(e): State<Endpoints>| async move { answer(e.health.liveness()) }))
        .route("/readyz", get(|State(e): State<Endpoints>| async move { answer(e.health.readiness()) }))
        .route(
            "/metrics",
            get(|State(e): State<Endpoints>| async move {
                ([(header::CONTENT_TYPE, OPENMETRICS)], e.metrics.encode()).into_response()
            }),
        )
        .with_state(endpoints)
}

/// Serves the endpoints on `listener` until the process ends.
pub async fn serve(listener: TcpListener, endpoints: Endpoints) -> anyhow::Result<()> {
    // Small answers on kept-alive connections must not wait for Nagle's algorithm (tests run
    // this on a paused clock, where such a wait lets virtual time run ahead).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(endpoints)).await?;
    Ok(())
}
