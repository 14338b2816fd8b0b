//! OTLP push: every `interval`, the last published snapshot goes to an OpenTelemetry collector
//! over http/protobuf or gRPC, with the pool figures under their semantic-convention names.
//!
//! Why not the SDK's `MetricExporter`: opentelemetry_sdk 0.33 builds its `ResourceMetrics` only
//! from its own instruments (their fields are private and the external `MetricProducer` was
//! removed), and no instrument takes a histogram that is already aggregated, as the
//! applications' wait, use and create times are. So the request is built here from the
//! exposition model with the generated OTLP messages of `opentelemetry-proto` (the ones the
//! SDK's exporter encodes), and sent with the same transports (tonic for gRPC, an HTTP POST of
//! the protobuf).
//!
//! A collector that is down or slow costs one request at a time: exports run on a thread of
//! their own, never on the scheduler or the HTTP workers; each is bounded by the timeout; a
//! failed one is dropped, not queued or retried, because the next carries the newer cumulative
//! values. Outcomes show in the agent's own telemetry.

mod request;
mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{oneshot, watch};

use crate::config::OtlpConfig;
use crate::status::Published;
use crate::telemetry;
pub use request::Encoder;
pub use transport::{Accepted, Client, SendError};

/// The running exporter; [`Exporter::shutdown`] flushes once and stops it.
pub struct Exporter {
    stop: oneshot::Sender<()>,
    stopped: oneshot::Receiver<()>,
    timeout: Duration,
}

/// Starts pushing what `published` holds. `listen` is the agent's HTTP address, part of its
/// `service.instance.id`.
pub fn start(
    config: OtlpConfig,
    listen: SocketAddr,
    published: watch::Receiver<Arc<Published>>,
) -> std::io::Result<Exporter> {
    let resource = resource(&config, listen, host_name().as_deref());
    tracing::info!(
        endpoint = %config.endpoint,
        protocol = config.protocol.as_str(),
        interval = %humantime::format_duration(config.interval),
        "pushing metrics over OTLP"
    );
    let (stop, stop_rx) = oneshot::channel();
    let (stopped_tx, stopped) = oneshot::channel();
    let timeout = config.timeout;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("otlp-export".into())
        .spawn(move || {
            runtime.block_on(push_loop(config, resource, published, stop_rx));
            let _ = stopped_tx.send(());
        })?;
    telemetry::otlp_started(&SendError::REASONS);
    Ok(Exporter {
        stop,
        stopped,
        timeout,
    })
}

impl Exporter {
    /// Pushes the last snapshot once more and stops, within the export timeout (plus a margin):
    /// an unreachable collector does not hold up the agent's exit for longer.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let limit = self.timeout + Duration::from_secs(1);
        if tokio::time::timeout(limit, self.stopped).await.is_err() {
            tracing::warn!("the last OTLP export did not finish in time; exiting without it");
        }
    }
}

async fn push_loop(
    config: OtlpConfig,
    resource: Vec<(String, String)>,
    published: watch::Receiver<Arc<Published>>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut client = Client::new(&config);
    let mut encoder = Encoder::new(&resource);
    let mut pusher = Pusher {
        config: &config,
        healthy: true,
    };
    let start = tokio::time::Instant::now() + config.interval;
    let mut ticker = tokio::time::interval_at(start, config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => pusher.push(&mut client, &mut encoder, &published).await,
            _ = &mut stop => {
                pusher.push(&mut client, &mut encoder, &published).await;
                return;
            }
        }
    }
}

struct Pusher<'a> {
    config: &'a OtlpConfig,
    /// Whether the last export succeeded, so a run of failures is logged once.
    healthy: bool,
}

impl Pusher<'_> {
    async fn push(
        &mut self,
        client: &mut Client,
        encoder: &mut Encoder,
        published: &watch::Receiver<Arc<Published>>,
    ) {
        let latest = published.borrow().clone();
        let request = encoder.request(&latest, SystemTime::now());
        drop(latest);
        let outcome = match tokio::time::timeout(self.config.timeout, client.send(request)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(SendError::Timeout),
        };
        match outcome {
            Ok(accepted) => {
                if !self.healthy {
                    tracing::info!(endpoint = %self.config.endpoint, "OTLP export resumed");
                }
                self.healthy = true;
                if accepted.rejected_points > 0 {
                    tracing::warn!(
                        rejected = accepted.rejected_points,
                        message = %accepted.message,
                        "the collector rejected some data points"
                    );
                }
                telemetry::otlp_exported(None, unix_now());
            }
            Err(error) => {
                if self.healthy {
                    tracing::warn!(endpoint = %self.config.endpoint, %error, "OTLP export failed");
                } else {
                    tracing::debug!(endpoint = %self.config.endpoint, %error, "OTLP export failed again");
                }
                self.healthy = false;
                telemetry::otlp_exported(Some(error.reason()), unix_now());
            }
        }
        // The request and its encoding (about a megabyte at 100 pools) are freed by now.
        crate::memory::release_freed();
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The resource attributes: what the agent knows of itself, then `OTEL_RESOURCE_ATTRIBUTES`
/// over it, then `service.name` as resolved from `OTEL_SERVICE_NAME`. Sorted by key.
///
/// `service.instance.id` is a UUID (v5, in a namespace of its own) of the host name and the listen address: the same for
/// the life of the process and across its restarts, and different for two agents on one host,
/// which cannot share a listen address.
pub fn resource(
    config: &OtlpConfig,
    listen: SocketAddr,
    host: Option<&str>,
) -> Vec<(String, String)> {
    let mut attributes = std::collections::BTreeMap::new();
    attributes.insert(
        "service.version".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    let instance = format!("{}/{listen}", host.unwrap_or(""));
    let namespace = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_DNS, b"poolwatch");
    let id = uuid::Uuid::new_v5(&namespace, instance.as_bytes());
    attributes.insert("service.instance.id".to_string(), id.to_string());
    if let Some(host) = host {
        attributes.insert("host.name".to_string(), host.to_string());
    }
    for (k, v) in &config.resource_attributes {
        attributes.insert(k.clone(), v.clone());
    }
    attributes.insert("service.name".to_string(), config.service_name.clone());
    attributes.into_iter().collect()
}

/// The kernel's host name; absent (not made up) where it cannot be read.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests;
