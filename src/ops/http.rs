//! /healthz, /readyz and /metrics.

use super::metrics::Metrics;
use axum::{extract::State, routing::get, Router};
use std::{net::SocketAddr, sync::Arc};

pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/metrics", get(|State(m): State<Arc<Metrics>>| async move { m.encode() }))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
