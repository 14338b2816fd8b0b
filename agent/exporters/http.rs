//! The HTTP endpoints: `/metrics` (Prometheus text format), `/healthz` (the agent runs),
//! `/readyz` (every target sampled once), and the JSON API: `/api/v1/pools` (every pool's
//! figures), `/api/v1/health` (per-pool health in the spec's shape), `/api/v1/alerts` (pending
//! and firing alerts) and `/api/v1/targets` (self-telemetry); and, with the receiver on, the
//! OTLP `POST /v1/metrics` (see `receiver::http`).
//! Handlers only read the last published state: they never wait for a target.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use serde::Serialize;

use crate::exporters::{listener, prometheus};
use crate::model::{PoolFigures, SourceKind};
use crate::receiver::{self, Receiver};
use crate::status::Published;

type Shared = watch::Receiver<Arc<Published>>;

pub fn router(published: Shared, receiver: Option<Arc<Receiver>>) -> Router {
    let own = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/api/v1/pools", get(pools))
        .route("/api/v1/health", get(health))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/alerts", get(alerts))
        .with_state(published);
    match receiver {
        Some(receiver) => own.merge(receiver::http::routes(receiver)),
        None => own,
    }
}

/// Serves until the future is dropped, under the web config (TLS, basic auth, headers).
pub async fn serve(
    listener: TcpListener,
    published: Shared,
    receiver: Option<Arc<Receiver>>,
    web: listener::WebConfigs,
) -> std::io::Result<()> {
    listener::serve(listener, router(published, receiver), web).await
}

fn latest(state: &Shared) -> Arc<Published> {
    state.borrow().clone()
}

/// The pool families of the last publish, then the agent's own telemetry as it is now.
async fn metrics(State(state): State<Shared>) -> impl IntoResponse {
    let published = latest(&state);
    let pools = prometheus::exposition(&published);
    let own = crate::telemetry::render();
    let body = if own.is_empty() {
        pools.clone()
    } else {
        let mut all = Vec::with_capacity(pools.len() + own.len());
        all.extend_from_slice(pools);
        all.extend_from_slice(own.as_bytes());
        all.into()
    };
    ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], body)
}

/// 200 once every target has finished a sample (successful or not), so the figures and health
/// the agent serves describe every target; 503 with the targets still waiting until then.
async fn ready(State(state): State<Shared>) -> impl IntoResponse {
    let published = latest(&state);
    let waiting: Vec<&str> = published
        .snapshot
        .targets
        .iter()
        .filter(|t| t.samples == 0)
        .map(|t| t.name.as_str())
        .collect();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not sampled yet: {}\n", waiting.join(", ")),
        )
    }
}

/// One pool's current figures, with the target it belongs to.
#[derive(Serialize)]
struct PoolEntry<'a> {
    target: &'a str,
    source: SourceKind,
    #[serde(flatten)]
    figures: &'a PoolFigures,
}

async fn pools(State(state): State<Shared>) -> impl IntoResponse {
    let published = latest(&state);
    let entries: Vec<PoolEntry<'_>> = published
        .snapshot
        .targets
        .iter()
        .filter(|t| t.up)
        .flat_map(|t| {
            t.pools.iter().map(|figures| PoolEntry {
                target: &t.name,
                source: t.source,
                figures,
            })
        })
        .collect();
    Json(serde_json::to_value(entries).unwrap_or_default())
}

async fn health(State(state): State<Shared>) -> impl IntoResponse {
    Json(latest(&state).health().clone())
}

async fn alerts(State(state): State<Shared>) -> impl IntoResponse {
    Json(latest(&state).alerts.clone())
}

async fn targets(State(state): State<Shared>) -> impl IntoResponse {
    Json(latest(&state).snapshot.targets.clone())
}
