//! The Prometheus exposition of a [`Snapshot`], rendered once per change (not per scrape) through
//! metrics-exporter-prometheus, then put in a canonical order so output can be diffed.
//!
//! Names: the OpenTelemetry semantic conventions for connection pools in their standard
//! Prometheus translation (`db.client.connection.count` → `db_client_connection_count`), and the
//! spec's own figures under `poolwatch_`. [`CATALOGUE`] is the list; the README's metric table is
//! checked against it by a test.

use metrics::{Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::model::{Labels, PoolFigures};
use crate::sources::ErrorKind;
use crate::status::{AgentStatus, Snapshot, TargetStatus};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// One exported metric family.
#[derive(Clone, Copy, Debug)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    /// Labels beyond the common ones (`target`, `source`, the target's config labels).
    pub labels: &'static str,
    pub help: &'static str,
}

const fn gauge(name: &'static str, labels: &'static str, help: &'static str) -> MetricDef {
    MetricDef {
        name,
        kind: Kind::Gauge,
        labels,
        help,
    }
}

const fn counter(name: &'static str, labels: &'static str, help: &'static str) -> MetricDef {
    MetricDef {
        name,
        kind: Kind::Counter,
        labels,
        help,
    }
}

const POOL: &str = "db_client_connection_pool_name";
const POOL_STATE: &str = "db_client_connection_pool_name, db_client_connection_state";

/// Every metric the agent exports.
pub const CATALOGUE: &[MetricDef] = &[
    gauge(
        "db_client_connection_count",
        POOL_STATE,
        "Connections in the pool by state: used (checked out) or idle.",
    ),
    gauge(
        "db_client_connection_max",
        POOL,
        "Most connections the pool may open: pool_size plus max_overflow.",
    ),
    gauge(
        "db_client_connection_pending_requests",
        POOL,
        "Callers waiting for a connection from the pool.",
    ),
    gauge(
        "poolwatch_pool_size",
        POOL,
        "The pool's pool_size, as the source sees it or as configured.",
    ),
    gauge(
        "poolwatch_pool_max_overflow",
        POOL,
        "The pool's max_overflow (PgBouncer: reserve_pool).",
    ),
    gauge(
        "poolwatch_pool_timeout_seconds",
        POOL,
        "Seconds a caller may wait for a connection before it fails.",
    ),
    gauge(
        "poolwatch_pool_recycle_seconds",
        POOL,
        "Seconds after which the pool replaces a connection.",
    ),
    gauge(
        "poolwatch_pool_utilization_ratio",
        POOL,
        "Used connections / pool_size.",
    ),
    gauge(
        "poolwatch_pool_overflow_utilization_ratio",
        POOL,
        "Connections beyond pool_size / max_overflow.",
    ),
    gauge(
        "poolwatch_pool_recommended_size",
        POOL,
        "Smallest pool_size that keeps used + pending at or below 80% utilization.",
    ),
    gauge(
        "poolwatch_pool_avg_wait_time_seconds",
        POOL,
        "Average time a caller waited for a connection, over the rate window.",
    ),
    gauge(
        "poolwatch_pool_avg_usage_time_seconds",
        POOL,
        "Average time a connection was held per transaction, over the rate window.",
    ),
    gauge(
        "poolwatch_pool_oldest_wait_seconds",
        POOL,
        "How long the longest-waiting caller has waited.",
    ),
    gauge(
        "poolwatch_pool_oldest_connection_age_seconds",
        POOL,
        "Age of the pool's oldest connection, to compare with its recycle.",
    ),
    gauge(
        "poolwatch_pool_lock_waits",
        POOL,
        "Connections of the pool waiting on a lock.",
    ),
    gauge(
        "poolwatch_pool_idle_in_transaction_connections",
        POOL,
        "Used connections idle inside a transaction.",
    ),
    gauge(
        "poolwatch_pool_connection_churn_per_minute",
        POOL,
        "Connections opened plus closed per minute, over the rate window.",
    ),
    counter(
        "poolwatch_pool_connections_opened_total",
        POOL,
        "Connections seen opening since the agent started watching.",
    ),
    counter(
        "poolwatch_pool_connections_closed_total",
        POOL,
        "Connections seen closing since the agent started watching.",
    ),
    counter(
        "poolwatch_pool_transactions_total",
        POOL,
        "Transactions served by the pool (PgBouncer: per database).",
    ),
    counter(
        "poolwatch_pool_connection_errors_total",
        POOL,
        "Failed connection attempts of the pool.",
    ),
    counter(
        "db_client_connection_timeouts_total",
        POOL,
        "Callers that gave up waiting for a connection.",
    ),
    gauge(
        "poolwatch_postgres_max_connections",
        "",
        "PostgreSQL max_connections.",
    ),
    gauge(
        "poolwatch_postgres_reserved_connections",
        "",
        "PostgreSQL superuser_reserved_connections.",
    ),
    gauge(
        "poolwatch_postgres_connections",
        "",
        "Client connections to PostgreSQL across all pools.",
    ),
    gauge(
        "poolwatch_postgres_headroom_connections",
        "",
        "max_connections - superuser_reserved_connections - all connections.",
    ),
    gauge(
        "poolwatch_pgbouncer_max_client_connections",
        "",
        "PgBouncer max_client_conn.",
    ),
    gauge(
        "poolwatch_pgbouncer_client_connections",
        "",
        "Clients connected to PgBouncer across all pools.",
    ),
    gauge(
        "poolwatch_target_up",
        "",
        "1 if the last sample of the target succeeded, else 0.",
    ),
    gauge(
        "poolwatch_target_sample_duration_seconds",
        "",
        "How long the last sample of the target took.",
    ),
    gauge(
        "poolwatch_target_last_success_timestamp_seconds",
        "",
        "Unix time of the target's last successful sample.",
    ),
    counter(
        "poolwatch_target_errors_total",
        "kind",
        "Failed samples of the target by kind: connect, auth, query, protocol, timeout.",
    ),
    gauge(
        "poolwatch_rules_loaded",
        "",
        "Alerting rules the agent evaluates.",
    ),
    gauge(
        "poolwatch_rule_evaluation_duration_seconds",
        "",
        "How long the last evaluation of every rule took.",
    ),
    gauge(
        "poolwatch_rule_evaluation_failing",
        "",
        "Rules whose last evaluation failed.",
    ),
    gauge(
        "poolwatch_reload_successful",
        "kind",
        "1 if the last load of the config or rule files succeeded; 0 while a broken file is ignored.",
    ),
    gauge(
        "poolwatch_reload_last_success_timestamp_seconds",
        "kind",
        "Unix time of the last successful load of the config or rule files.",
    ),
    gauge(
        "poolwatch_build_info",
        "version",
        "Always 1; the agent's version as a label.",
    ),
];

/// One exported sample: what `/metrics` shows and what rules evaluate.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportedSample {
    pub name: &'static str,
    pub kind: Kind,
    /// Sorted by name.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Every sample the snapshot exports, in catalogue names.
pub fn samples(snapshot: &Snapshot) -> Vec<ExportedSample> {
    let mut out = Out::default();
    out.gauge(
        "poolwatch_build_info",
        vec![("version".into(), env!("CARGO_PKG_VERSION").into())],
        1.0,
    );
    write_agent(&mut out, &snapshot.agent);
    for target in &snapshot.targets {
        write_target(&mut out, target);
    }
    out.samples
}

fn write_agent(out: &mut Out, agent: &AgentStatus) {
    out.gauge("poolwatch_rules_loaded", vec![], agent.rules_loaded as f64);
    if let Some(d) = agent.rule_evaluation_seconds {
        out.gauge("poolwatch_rule_evaluation_duration_seconds", vec![], d);
    }
    out.gauge(
        "poolwatch_rule_evaluation_failing",
        vec![],
        agent.rule_errors.len() as f64,
    );
    for (kind, reload) in &agent.reloads {
        let labels = vec![("kind".to_string(), kind.to_string())];
        out.gauge(
            "poolwatch_reload_successful",
            labels.clone(),
            f64::from(u8::from(reload.successful)),
        );
        if let Some(t) = reload.last_success_unix_seconds {
            out.gauge("poolwatch_reload_last_success_timestamp_seconds", labels, t);
        }
    }
}

/// Renders the snapshot in the Prometheus text format, families and series sorted.
pub fn render(snapshot: &Snapshot) -> String {
    render_samples(&samples(snapshot))
}

/// Renders samples through metrics-exporter-prometheus, families and series sorted.
pub fn render_samples(samples: &[ExportedSample]) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    for def in CATALOGUE {
        match def.kind {
            Kind::Gauge => recorder.describe_gauge(def.name.into(), None, def.help.into()),
            Kind::Counter => recorder.describe_counter(def.name.into(), None, def.help.into()),
        }
    }
    for sample in samples {
        let labels: Vec<Label> = sample
            .labels
            .iter()
            .map(|(k, v)| Label::new(k.clone(), v.clone()))
            .collect();
        let key = Key::from_parts(sample.name, labels);
        match sample.kind {
            Kind::Gauge => recorder.register_gauge(&key, &METADATA).set(sample.value),
            Kind::Counter => recorder
                .register_counter(&key, &METADATA)
                .absolute(sample.value as u64),
        }
    }
    canonical(&recorder.handle().render())
}

#[derive(Default)]
struct Out {
    samples: Vec<ExportedSample>,
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

type LabelPairs = Vec<(String, String)>;

impl Out {
    fn push(&mut self, name: &'static str, kind: Kind, labels: LabelPairs, value: f64) {
        debug_assert!(
            CATALOGUE.iter().any(|d| d.name == name && d.kind == kind),
            "{name}"
        );
        self.samples.push(ExportedSample {
            name,
            kind,
            labels,
            value,
        });
    }

    fn gauge(&mut self, name: &'static str, labels: LabelPairs, value: f64) {
        self.push(name, Kind::Gauge, labels, value);
    }

    fn counter(&mut self, name: &'static str, labels: LabelPairs, value: u64) {
        self.push(name, Kind::Counter, labels, value as f64);
    }
}

fn labels_of(
    target: &TargetStatus,
    extra: &[(&'static str, &str)],
    pool_labels: &Labels,
) -> LabelPairs {
    let mut all: Labels = target.labels.clone();
    for (k, v) in pool_labels {
        // Config labels win over what a source derives (a dataset name, say).
        all.entry(k.clone()).or_insert_with(|| v.clone());
    }
    all.insert("target".into(), target.name.clone());
    all.insert("source".into(), target.source.as_str().into());
    for (k, v) in extra {
        all.insert(k.to_string(), v.to_string());
    }
    all.into_iter().collect()
}

fn write_target(out: &mut Out, target: &TargetStatus) {
    let none = Labels::new();
    let labels = |extra: &[(&'static str, &str)]| labels_of(target, extra, &none);
    out.gauge(
        "poolwatch_target_up",
        labels(&[]),
        if target.up { 1.0 } else { 0.0 },
    );
    if let Some(d) = target.last_duration_seconds {
        out.gauge("poolwatch_target_sample_duration_seconds", labels(&[]), d);
    }
    if let Some(t) = target.last_success_unix_seconds {
        out.gauge(
            "poolwatch_target_last_success_timestamp_seconds",
            labels(&[]),
            t,
        );
    }
    for kind in ErrorKind::ALL {
        let count = target.errors.get(&kind).copied().unwrap_or(0);
        out.counter(
            "poolwatch_target_errors_total",
            labels(&[("kind", kind.as_str())]),
            count,
        );
    }
    if !target.up {
        // Figures of a target we cannot reach are unknown now: absent, not stale.
        return;
    }
    if let Some(server) = &target.server {
        let figures = [
            (
                "poolwatch_postgres_max_connections",
                server.max_connections.map(|v| v as f64),
            ),
            (
                "poolwatch_postgres_reserved_connections",
                server.reserved_connections.map(|v| v as f64),
            ),
            (
                "poolwatch_postgres_connections",
                server.connections.map(|v| v as f64),
            ),
            (
                "poolwatch_postgres_headroom_connections",
                server.headroom().map(|v| v as f64),
            ),
            (
                "poolwatch_pgbouncer_max_client_connections",
                server.max_client_connections.map(|v| v as f64),
            ),
            (
                "poolwatch_pgbouncer_client_connections",
                server.client_connections.map(|v| v as f64),
            ),
        ];
        for (name, value) in figures {
            if let Some(v) = value {
                out.gauge(name, labels(&[]), v);
            }
        }
    }
    for pool in &target.pools {
        write_pool(out, target, pool);
    }
}

fn write_pool(out: &mut Out, target: &TargetStatus, f: &PoolFigures) {
    let p = &f.latest;
    // Built once per pool: most of the rendering cost is label handling.
    let base = labels_of(target, &[(POOL, p.pool.as_str())], &p.labels);
    let state = |s: &'static str| {
        let mut all = base.clone();
        let at = all.partition_point(|(k, _)| k.as_str() < "db_client_connection_state");
        all.insert(at, ("db_client_connection_state".into(), s.into()));
        all
    };
    let as_f64 = |v: Option<u64>| v.map(|v| v as f64);
    let gauges = [
        (
            "db_client_connection_max",
            as_f64(p.limits.max_connections()),
        ),
        ("db_client_connection_pending_requests", as_f64(p.pending)),
        ("poolwatch_pool_size", as_f64(p.limits.pool_size)),
        ("poolwatch_pool_max_overflow", as_f64(p.limits.max_overflow)),
        ("poolwatch_pool_timeout_seconds", p.limits.timeout_seconds),
        ("poolwatch_pool_recycle_seconds", p.limits.recycle_seconds),
        ("poolwatch_pool_utilization_ratio", f.utilization),
        (
            "poolwatch_pool_overflow_utilization_ratio",
            f.overflow_utilization,
        ),
        (
            "poolwatch_pool_recommended_size",
            as_f64(f.recommended_pool_size),
        ),
        (
            "poolwatch_pool_avg_wait_time_seconds",
            f.avg_wait_time_seconds,
        ),
        (
            "poolwatch_pool_avg_usage_time_seconds",
            f.avg_usage_time_seconds,
        ),
        ("poolwatch_pool_oldest_wait_seconds", p.oldest_wait_seconds),
        (
            "poolwatch_pool_oldest_connection_age_seconds",
            p.oldest_connection_age_seconds,
        ),
        ("poolwatch_pool_lock_waits", as_f64(p.lock_waits)),
        (
            "poolwatch_pool_idle_in_transaction_connections",
            as_f64(p.idle_in_transaction),
        ),
        (
            "poolwatch_pool_connection_churn_per_minute",
            f.churn_per_minute,
        ),
    ];
    if let Some(used) = p.used {
        out.gauge("db_client_connection_count", state("used"), used as f64);
    }
    if let Some(idle) = p.idle {
        out.gauge("db_client_connection_count", state("idle"), idle as f64);
    }
    for (name, value) in gauges {
        if let Some(v) = value {
            out.gauge(name, base.clone(), v);
        }
    }
    let counters = [
        (
            "poolwatch_pool_connections_opened_total",
            p.totals.connections_opened,
        ),
        (
            "poolwatch_pool_connections_closed_total",
            p.totals.connections_closed,
        ),
        ("poolwatch_pool_transactions_total", p.totals.transactions),
        (
            "poolwatch_pool_connection_errors_total",
            p.totals.connection_errors,
        ),
        ("db_client_connection_timeouts_total", p.totals.timeouts),
    ];
    for (name, value) in counters {
        if let Some(v) = value {
            out.counter(name, base.clone(), v);
        }
    }
}

/// Families sorted by name, series sorted within each family: the recorder keeps hash order.
fn canonical(text: &str) -> String {
    let mut families: Vec<(String, Vec<&str>, Vec<&str>)> = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let (mut header, mut series): (Vec<&str>, Vec<&str>) = block
            .lines()
            .filter(|l| !l.is_empty())
            .partition(|l| l.starts_with('#'));
        header.sort_by_key(|l| !l.starts_with("# HELP"));
        series.sort_unstable();
        let name = header
            .iter()
            .find_map(|l| l.strip_prefix("# TYPE "))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        families.push((name, header, series));
    }
    families.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::with_capacity(text.len());
    for (_, header, series) in families {
        for line in header.into_iter().chain(series) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests;
