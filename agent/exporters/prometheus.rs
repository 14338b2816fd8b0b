//! The Prometheus exposition of a [`Snapshot`], rendered once per change (not per scrape) through
//! metrics-exporter-prometheus, then put in a canonical order so output can be diffed.
//!
//! Names: the OpenTelemetry semantic conventions for connection pools in their standard
//! Prometheus translation (`db.client.connection.count` → `db_client_connection_count`), and the
//! spec's own figures under `poolwatch_`. [`CATALOGUE`] is the list; the README's metric table is
//! checked against it by a test.

use metrics::{Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::model::{Labels, PoolFigures, ServerSample};
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
    // Database files (SQLite, DuckDB) and the processes holding them, the host, MDM datasets,
    // and the PostgreSQL settings the spec tunes.
    gauge(
        "poolwatch_database_size_bytes",
        POOL,
        "Size of the database file.",
    ),
    gauge(
        "poolwatch_database_wal_size_bytes",
        POOL,
        "Size of the database's write-ahead log (SQLite -wal, DuckDB .wal); 0 while there is none.",
    ),
    gauge(
        "poolwatch_database_wal_growth_bytes_per_second",
        POOL,
        "How fast the write-ahead log grew over the rate window; negative after a checkpoint truncated it.",
    ),
    gauge(
        "poolwatch_database_setting_info",
        "db_client_connection_pool_name, setting, value",
        "Always 1; a setting stored in the database file and its value: SQLite journal_mode (wal or rollback) and auto_vacuum, DuckDB storage_version and library_version.",
    ),
    gauge(
        "poolwatch_sqlite_page_size_bytes",
        POOL,
        "SQLite page_size of the database file.",
    ),
    gauge(
        "poolwatch_database_rows",
        POOL,
        "Rows in the dataset's tables: MDM's registry statistics, else read from the file (SQLite: largest rowid per table; DuckDB: estimated_size).",
    ),
    gauge(
        "poolwatch_pool_dataset_recommended_size",
        "db_client_connection_pool_name, pool_size",
        "pool_size the spec's PerDatasetPoolManager gives the dataset: twice pool_size above 1e9 rows, half of it (at least 2) below 1e6; pool_size is the configured one.",
    ),
    gauge(
        "poolwatch_duckdb_block_size_bytes",
        POOL,
        "DuckDB block size of the database file.",
    ),
    gauge(
        "poolwatch_duckdb_blocks",
        "db_client_connection_pool_name, state",
        "DuckDB blocks of the database file by state: used or free.",
    ),
    gauge(
        "poolwatch_duckdb_threads",
        POOL,
        "DuckDB threads the owner's connections run with (MDM's database.duckdb).",
    ),
    gauge(
        "poolwatch_duckdb_memory_limit_bytes",
        POOL,
        "DuckDB memory_limit of the owner's connections (MDM's database.duckdb).",
    ),
    gauge(
        "poolwatch_database_process_connections",
        "db_client_connection_pool_name, pid, process",
        "Open file descriptors a process has on the database file: one per SQLite connection.",
    ),
    gauge(
        "poolwatch_database_process_lock_info",
        "db_client_connection_pool_name, pid, process, lock",
        "Always 1; a lock a process holds on the database: shared, reserved, pending, exclusive (SQLite rollback journal), wal_read, wal_write, wal_checkpoint, wal_recover (SQLite WAL), read, write (DuckDB).",
    ),
    gauge(
        "poolwatch_database_lock_waiters",
        POOL,
        "Lock requests on the database file or its WAL index that the kernel holds blocked.",
    ),
    gauge(
        "poolwatch_database_process_cpu_utilization_ratio",
        "db_client_connection_pool_name, pid, process",
        "Share of one CPU a process holding the database used since the previous sample.",
    ),
    gauge(
        "poolwatch_database_process_resident_memory_bytes",
        "db_client_connection_pool_name, pid, process",
        "Resident memory of a process holding the database.",
    ),
    gauge(
        "poolwatch_host_cpu_utilization_ratio",
        "",
        "Share of all the host's CPUs busy since the previous sample.",
    ),
    gauge(
        "poolwatch_host_memory_total_bytes",
        "",
        "The host's memory.",
    ),
    gauge(
        "poolwatch_host_memory_available_bytes",
        "",
        "Memory available to new work on the host (MemAvailable).",
    ),
    gauge(
        "poolwatch_host_memory_utilization_ratio",
        "",
        "(total - available) / total memory of the host, as psutil's virtual_memory().percent / 100.",
    ),
    gauge(
        "poolwatch_postgres_shared_buffers_bytes",
        "",
        "PostgreSQL shared_buffers.",
    ),
    gauge(
        "poolwatch_postgres_effective_cache_size_bytes",
        "",
        "PostgreSQL effective_cache_size.",
    ),
    gauge(
        "poolwatch_postgres_maintenance_work_mem_bytes",
        "",
        "PostgreSQL maintenance_work_mem.",
    ),
    gauge(
        "poolwatch_postgres_work_mem_bytes",
        "",
        "PostgreSQL work_mem.",
    ),
    gauge(
        "poolwatch_postgres_wal_buffers_bytes",
        "",
        "PostgreSQL wal_buffers.",
    ),
    gauge(
        "poolwatch_postgres_checkpoint_completion_target",
        "",
        "PostgreSQL checkpoint_completion_target.",
    ),
    gauge(
        "poolwatch_postgres_random_page_cost",
        "",
        "PostgreSQL random_page_cost.",
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
        write_server_settings(out, &labels(&[]), server);
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
    write_database(out, &base, f);
}

/// `labels` with `extra` added, kept sorted by name.
fn with(labels: &LabelPairs, extra: &[(&str, &str)]) -> LabelPairs {
    let mut all = labels.clone();
    for (k, v) in extra {
        let at = all.partition_point(|(name, _)| name.as_str() < *k);
        all.insert(at, (k.to_string(), v.to_string()));
    }
    all
}

/// The PostgreSQL settings the spec tunes, and the host of file databases.
fn write_server_settings(out: &mut Out, labels: &LabelPairs, server: &ServerSample) {
    let s = &server.postgres_settings;
    let settings = [
        (
            "poolwatch_postgres_shared_buffers_bytes",
            s.shared_buffers_bytes,
        ),
        (
            "poolwatch_postgres_effective_cache_size_bytes",
            s.effective_cache_size_bytes,
        ),
        (
            "poolwatch_postgres_maintenance_work_mem_bytes",
            s.maintenance_work_mem_bytes,
        ),
        ("poolwatch_postgres_work_mem_bytes", s.work_mem_bytes),
        ("poolwatch_postgres_wal_buffers_bytes", s.wal_buffers_bytes),
        (
            "poolwatch_postgres_checkpoint_completion_target",
            s.checkpoint_completion_target,
        ),
        ("poolwatch_postgres_random_page_cost", s.random_page_cost),
    ];
    let host = server.host.as_ref();
    let host_figures = [
        (
            "poolwatch_host_cpu_utilization_ratio",
            host.and_then(|h| h.cpu_utilization),
        ),
        (
            "poolwatch_host_memory_total_bytes",
            host.and_then(|h| h.memory_total_bytes).map(|v| v as f64),
        ),
        (
            "poolwatch_host_memory_available_bytes",
            host.and_then(|h| h.memory_available_bytes)
                .map(|v| v as f64),
        ),
        (
            "poolwatch_host_memory_utilization_ratio",
            host.and_then(|h| h.memory_utilization()),
        ),
    ];
    for (name, value) in settings.into_iter().chain(host_figures) {
        if let Some(v) = value {
            out.gauge(name, labels.clone(), v);
        }
    }
}

/// A pool's database file, the processes holding it, and the spec's size for its dataset.
fn write_database(out: &mut Out, base: &LabelPairs, f: &PoolFigures) {
    if let Some(size) = f.dataset_recommended_size
        && let Some(configured) = f.latest.limits.pool_size
    {
        let configured = configured.to_string();
        out.gauge(
            "poolwatch_pool_dataset_recommended_size",
            with(base, &[("pool_size", configured.as_str())]),
            size as f64,
        );
    }
    let Some(db) = f.latest.database.as_deref() else {
        return;
    };
    let as_f64 = |v: Option<u64>| v.map(|v| v as f64);
    let gauges = [
        ("poolwatch_database_size_bytes", as_f64(db.size_bytes)),
        (
            "poolwatch_database_wal_size_bytes",
            as_f64(db.wal_size_bytes),
        ),
        (
            "poolwatch_database_wal_growth_bytes_per_second",
            f.wal_growth_bytes_per_second,
        ),
        (
            "poolwatch_sqlite_page_size_bytes",
            as_f64(db.page_size_bytes),
        ),
        ("poolwatch_database_rows", as_f64(db.rows)),
        (
            "poolwatch_duckdb_block_size_bytes",
            as_f64(db.block_size_bytes),
        ),
        ("poolwatch_duckdb_threads", as_f64(db.threads)),
        (
            "poolwatch_duckdb_memory_limit_bytes",
            as_f64(db.memory_limit_bytes),
        ),
        ("poolwatch_database_lock_waiters", as_f64(db.lock_waiters)),
    ];
    for (name, value) in gauges {
        if let Some(v) = value {
            out.gauge(name, base.clone(), v);
        }
    }
    for (state, blocks) in [("used", db.blocks_used), ("free", db.blocks_free)] {
        if let Some(n) = blocks {
            out.gauge(
                "poolwatch_duckdb_blocks",
                with(base, &[("state", state)]),
                n as f64,
            );
        }
    }
    for (setting, value) in &db.settings {
        out.gauge(
            "poolwatch_database_setting_info",
            with(
                base,
                &[("setting", setting.as_str()), ("value", value.as_str())],
            ),
            1.0,
        );
    }
    for p in &db.processes {
        let pid = p.pid.to_string();
        let process = with(base, &[("pid", pid.as_str()), ("process", p.name.as_str())]);
        let figures = [
            (
                "poolwatch_database_process_connections",
                as_f64(p.connections),
            ),
            (
                "poolwatch_database_process_cpu_utilization_ratio",
                p.cpu_utilization,
            ),
            (
                "poolwatch_database_process_resident_memory_bytes",
                as_f64(p.resident_memory_bytes),
            ),
        ];
        for (name, value) in figures {
            if let Some(v) = value {
                out.gauge(name, process.clone(), v);
            }
        }
        for lock in &p.locks {
            out.gauge(
                "poolwatch_database_process_lock_info",
                with(&process, &[("lock", *lock)]),
                1.0,
            );
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
