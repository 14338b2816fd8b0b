//! The HTTP endpoints: `/metrics` (Prometheus text format), `/healthz` (the agent itself),
//! `/api/v1/health` (per-pool health in the spec's shape), `/api/v1/alerts` (pending and firing
//! alerts) and `/api/v1/targets` (self-telemetry).
//! Handlers only read the last published state: they never wait for a target.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::status::Published;

type Shared = watch::Receiver<Arc<Published>>;

/// The content type of the Prometheus text exposition format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn router(published: Shared) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/health", get(health))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/alerts", get(alerts))
        .with_state(published)
}

/// Serves until the future is dropped.
pub async fn serve(listener: TcpListener, published: Shared) -> std::io::Result<()> {
    axum::serve(listener, router(published)).await
}

fn latest(state: &Shared) -> Arc<Published> {
    state.borrow().clone()
}

async fn metrics(State(state): State<Shared>) -> impl IntoResponse {
    let published = latest(&state);
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        published.metrics.clone(),
    )
}

async fn health(State(state): State<Shared>) -> impl IntoResponse {
    Json(latest(&state).health.clone())
}

async fn alerts(State(state): State<Shared>) -> impl IntoResponse {
    Json(latest(&state).alerts.clone())
}

async fn targets(State(state): State<Shared>) -> impl IntoResponse {
    Json(latest(&state).snapshot.targets.clone())
}
