//! The HTTP endpoints: `/metrics` (Prometheus text format), `/healthz` (the agent itself),
//! `/api/v1/health` (per-pool health in the spec's shape), `/api/v1/alerts` (pending and firing
//! alerts) and `/api/v1/targets` (self-telemetry); and, with the receiver on, the OTLP
//! `POST /v1/metrics` (see `receiver::http`).
//! Handlers only read the last published state: they never wait for a target.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::exporters::prometheus;
use crate::receiver::{self, Receiver};
use crate::status::Published;

type Shared = watch::Receiver<Arc<Published>>;

pub fn router(published: Shared, receiver: Option<Arc<Receiver>>) -> Router {
    let own = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/health", get(health))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/alerts", get(alerts))
        .with_state(published);
    match receiver {
        Some(receiver) => own.merge(receiver::http::routes(receiver)),
        None => own,
    }
}

/// Serves until the future is dropped.
pub async fn serve(
    listener: TcpListener,
    published: Shared,
    receiver: Option<Arc<Receiver>>,
) -> std::io::Result<()> {
    axum::serve(listener, router(published, receiver)).await
}

fn latest(state: &Shared) -> Arc<Published> {
    state.borrow().clone()
}

/// The pool families rendered at the last publish, then the agent's own telemetry as it is now.
async fn metrics(State(state): State<Shared>) -> impl IntoResponse {
    let published = latest(&state);
    let own = crate::telemetry::render();
    let body = if own.is_empty() {
        published.metrics.clone()
    } else {
        let mut all = Vec::with_capacity(published.metrics.len() + own.len());
        all.extend_from_slice(&published.metrics);
        all.extend_from_slice(own.as_bytes());
        all.into()
    };
    ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], body)
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
