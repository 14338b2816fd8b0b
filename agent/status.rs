//! What the agent knows right now, per target: its self-telemetry and its pools' figures, and
//! what is published from it once per change (the exposition model's samples, alerts; the text
//! exposition and health when first read): the one plain value every exporter (Prometheus,
//! OTLP, JSON API, `check`) reads.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::Serialize;

use crate::exposition::ExportedSample;
use crate::health::HealthReport;
use crate::model::{GonePool, Labels, PoolFigures, ServerSample, SourceKind};
use crate::rules::alerts::{Alert, Notification};
use crate::sources::ErrorKind;

/// Everything the exporters serve, rendered once per change.
#[derive(Debug, Default)]
pub struct Published {
    pub snapshot: Snapshot,
    /// The exposition model's samples of `snapshot`, family by family in catalogue order: what
    /// `metrics` encodes, and what the OTLP exporter pushes.
    pub samples: Vec<ExportedSample>,
    /// One `poolwatch_alerts` sample per pending or firing alert.
    pub alert_samples: Vec<ExportedSample>,
    /// The Prometheus exposition of `samples` and `alert_samples`, rendered by the first scrape
    /// that asks for it (`exporters::prometheus::exposition`) and shared by every scrape after
    /// it without a copy. Most publishes are never scraped: the agent samples every second or
    /// so, Prometheus scrapes every 15 s or more.
    pub metrics: OnceLock<bytes::Bytes>,
    /// The length `metrics` is expected to have: the last rendered exposition's.
    pub metrics_hint: usize,
    /// Pending and firing alerts.
    pub alerts: Vec<Alert>,
    /// Firing alerts and those resolved within the resolved retention: what Alertmanager is
    /// told. Read by the Alertmanager sender only.
    pub notifications: Vec<Notification>,
    /// The health of every pool and target, judged from `snapshot` and `alerts` by the first
    /// reader that asks ([`Published::health`]): the API and `check` read it, most publishes
    /// are never read.
    pub health: OnceLock<HealthReport>,
}

impl Published {
    pub fn health(&self) -> &HealthReport {
        self.health
            .get_or_init(|| crate::health::report(&self.snapshot, &self.alerts))
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    pub targets: Vec<TargetStatus>,
    pub agent: AgentStatus,
}

/// The agent's own state: its rules and the reloads of its input files.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AgentStatus {
    pub rules_loaded: usize,
    /// Seconds the last rule evaluation took.
    pub rule_evaluation_seconds: Option<f64>,
    /// Rules whose last evaluation failed, with why.
    pub rule_errors: BTreeMap<String, String>,
    /// By what was reloaded: `config`, `rules`.
    pub reloads: BTreeMap<&'static str, ReloadStatus>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ReloadStatus {
    /// Whether the last attempt to load the file(s) succeeded; on failure the previous version
    /// keeps running.
    pub successful: bool,
    pub last_success_unix_seconds: Option<f64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TargetStatus {
    pub name: String,
    pub source: SourceKind,
    /// The endpoint without its password.
    pub endpoint: String,
    /// Labels from the config, on every series of the target.
    pub labels: Labels,
    /// Whether the last sample succeeded.
    pub up: bool,
    /// Samples finished, successful or not.
    pub samples: u64,
    pub last_duration_seconds: Option<f64>,
    pub last_success_unix_seconds: Option<f64>,
    #[serde(serialize_with = "errors_by_name")]
    pub errors: BTreeMap<ErrorKind, u64>,
    pub last_error: Option<String>,
    pub warnings: Vec<String>,
    pub server: Option<ServerSample>,
    /// Shared with every snapshot published since the target's last sample: a publish copies
    /// the statuses, not their pools.
    pub pools: Arc<[PoolFigures]>,
    /// Pushed pools that stopped reporting: ended cleanly, or stale.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gone: Vec<GonePool>,
}

fn errors_by_name<S: serde::Serializer>(
    errors: &BTreeMap<ErrorKind, u64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(errors.iter().map(|(k, v)| (k.as_str(), v)))
}
