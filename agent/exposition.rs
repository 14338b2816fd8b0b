//! What the agent exports, once, for every way out: the catalogue of metric families (Prometheus
//! name, OpenTelemetry name, unit, instrument, help, labels, and where each value is read from)
//! and the samples of a snapshot in catalogue order. The Prometheus encoder, the OTLP push, the
//! rules' series window and the README's metric table all read this one model.
//!
//! Pool figures are named after the OpenTelemetry semantic conventions for connection pools
//! (`db.client.connection.count` → `db_client_connection_count`); the spec's own figures carry
//! the `poolwatch` prefix. A figure the source cannot know is absent: no sample, never a 0.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, LazyLock};

use Instrument::{Counter, Gauge, Histogram, UpDownCounter};
use rustc_hash::FxHashMap;

use crate::advisor::Model;
use crate::model::{self, PoolFigures, ServerSample};
use crate::rules::alerts::{Alert, AlertState};
use crate::status::{Snapshot, TargetStatus};

/// The label naming a pool on every pool series (`db.client.connection.pool.name`).
pub const POOL_LABEL: &str = "db_client_connection_pool_name";
/// The label of a connection's state on `db_client_connection_count`.
pub const STATE_LABEL: &str = "db_client_connection_state";

/// A label's OpenTelemetry attribute name: the semantic-convention labels go back to their
/// dotted names; the others (`target`, `source`, `dataset`, configured labels) stay as they are.
pub fn otel_attribute(label: &str) -> &str {
    match label {
        POOL_LABEL => "db.client.connection.pool.name",
        STATE_LABEL => "db.client.connection.state",
        other => other,
    }
}

/// The OpenTelemetry instrument a family is; Prometheus calls the first two gauges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instrument {
    Gauge,
    UpDownCounter,
    Counter,
    Histogram,
}

impl Instrument {
    /// The `# TYPE` of the family in the Prometheus text format.
    pub fn prometheus_type(self) -> &'static str {
        match self {
            Instrument::Gauge | Instrument::UpDownCounter => "gauge",
            Instrument::Counter => "counter",
            Instrument::Histogram => "histogram",
        }
    }
}

/// Reads one figure of a pool; `None` when the source cannot know it.
pub type PoolFigure = fn(&PoolFigures) -> Option<f64>;
/// Calls back with each extra label set of a pool's series and its value.
pub type PoolSeries = fn(&PoolFigures, &mut SeriesSink<'_>);

/// Where a [`PoolSeries`] reader puts each series: its extra labels and its value.
pub type SeriesSink<'a> = dyn FnMut(&[(&'static str, &str)], f64) + 'a;
/// Reads one histogram of a pool.
pub type PoolHistogram = fn(&PoolFigures) -> Option<&Arc<model::Histogram>>;

/// Where a family's values come from.
#[derive(Clone, Copy)]
pub enum Read {
    /// One value per pool of a target that is up.
    Pool(PoolFigure),
    /// One value per pool and value of one more label (a connection's state).
    PoolByLabel(&'static str, &'static [(&'static str, PoolFigure)]),
    /// Series of a pool whose extra labels come from the sample (a holder's pid, a setting's
    /// value); built each cycle, so kept for the few pools that have them.
    PoolSeries(PoolSeries),
    /// One histogram per pool that has it.
    PoolHistogram(PoolHistogram),
    /// One value per target that is up, about the server behind it.
    Server(fn(&ServerSample) -> Option<f64>),
    /// One value per target, up or not.
    Target(fn(&TargetStatus) -> Option<f64>),
    /// One sample per pending or firing alert.
    Alerts,
    /// The agent's own telemetry, recorded through the `metrics` facade (see `telemetry`).
    Agent,
}

/// One exported metric family.
#[derive(Clone, Copy)]
pub struct Family {
    /// The Prometheus name.
    pub name: &'static str,
    /// The OpenTelemetry name (semantic conventions where they define one).
    pub otel: &'static str,
    /// The unit in UCUM, as OpenTelemetry writes it.
    pub unit: &'static str,
    pub instrument: Instrument,
    pub help: &'static str,
    /// Labels beyond the common ones (`target`, `source`, the target's configured labels).
    pub labels: &'static [&'static str],
    pub read: Read,
}

impl std::fmt::Debug for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl Family {
    /// The family's position in [`CATALOGUE`].
    pub fn id(&'static self) -> usize {
        let base = CATALOGUE.as_ptr() as usize;
        let at = (self as *const Family as usize - base) / std::mem::size_of::<Family>();
        debug_assert!(std::ptr::eq(&CATALOGUE[at], self));
        at
    }

    /// Whether the agent's own telemetry, rather than the pool model, writes this family.
    pub fn is_agent_telemetry(&self) -> bool {
        matches!(self.read, Read::Agent)
    }
}

const POOL: &[&str] = &[POOL_LABEL];
const POOL_STATE: &[&str] = &[POOL_LABEL, STATE_LABEL];
const PROCESS: &[&str] = &[POOL_LABEL, "pid", "process"];
const NONE: &[&str] = &[];

const fn family(
    name: &'static str,
    otel: &'static str,
    unit: &'static str,
    instrument: Instrument,
    labels: &'static [&'static str],
    read: Read,
    help: &'static str,
) -> Family {
    Family {
        name,
        otel,
        unit,
        instrument,
        help,
        labels,
        read,
    }
}

/// The recommended pool_size, if `model` produced it.
fn recommended_by(f: &PoolFigures, model: Model) -> Option<f64> {
    f.recommendation
        .as_ref()
        .filter(|r| r.model == model)
        .map(|r| r.pool_size as f64)
}

fn count(v: Option<u64>) -> Option<f64> {
    v.map(|v| v as f64)
}

/// The database file behind a pool (SQLite, DuckDB), if it has one.
fn database(f: &PoolFigures) -> Option<&model::DatabaseSample> {
    f.latest.database.as_deref()
}

/// One series per process holding the pool's database file, labelled with its pid and name.
fn for_processes(
    f: &PoolFigures,
    out: &mut SeriesSink<'_>,
    read: fn(&model::ProcessSample) -> Option<f64>,
) {
    for p in database(f)
        .map(|d| d.processes.as_slice())
        .unwrap_or_default()
    {
        if let Some(v) = read(p) {
            out(&[("pid", &p.pid.to_string()), ("process", &p.name)], v);
        }
    }
}

/// Every family the agent exports, sorted by Prometheus name (the order of `/metrics`).
pub static CATALOGUE: &[Family] = &[
    family(
        "db_client_connection_count",
        "db.client.connection.count",
        "{connection}",
        UpDownCounter,
        POOL_STATE,
        Read::PoolByLabel(
            STATE_LABEL,
            &[
                ("idle", |f| count(f.latest.idle)),
                ("used", |f| count(f.latest.used)),
            ],
        ),
        "Connections in the pool by state: used (checked out) or idle.",
    ),
    family(
        "db_client_connection_create_time_seconds",
        "db.client.connection.create_time",
        "s",
        Histogram,
        POOL,
        Read::PoolHistogram(|f| f.latest.histograms.create_time.as_ref()),
        "Time it took to open a connection, as the application measured it.",
    ),
    family(
        "db_client_connection_idle_max",
        "db.client.connection.idle.max",
        "{connection}",
        UpDownCounter,
        POOL,
        Read::Pool(|f| count(f.latest.limits.idle_max)),
        "Most idle connections the pool keeps open.",
    ),
    family(
        "db_client_connection_idle_min",
        "db.client.connection.idle.min",
        "{connection}",
        UpDownCounter,
        POOL,
        Read::Pool(|f| count(f.latest.limits.idle_min)),
        "Fewest idle connections the pool keeps open.",
    ),
    family(
        "db_client_connection_max",
        "db.client.connection.max",
        "{connection}",
        UpDownCounter,
        POOL,
        Read::Pool(|f| count(f.latest.limits.max_connections())),
        "Most connections the pool may open: pool_size plus max_overflow.",
    ),
    family(
        "db_client_connection_pending_requests",
        "db.client.connection.pending_requests",
        "{request}",
        UpDownCounter,
        POOL,
        Read::Pool(|f| count(f.latest.pending)),
        "Callers waiting for a connection from the pool.",
    ),
    family(
        "db_client_connection_timeouts_total",
        "db.client.connection.timeouts",
        "{timeout}",
        Counter,
        POOL,
        Read::Pool(|f| count(f.latest.totals.timeouts)),
        "Callers that gave up waiting for a connection.",
    ),
    family(
        "db_client_connection_use_time_seconds",
        "db.client.connection.use_time",
        "s",
        Histogram,
        POOL,
        Read::PoolHistogram(|f| f.latest.histograms.use_time.as_ref()),
        "Time between borrowing a connection and returning it, as the application measured it.",
    ),
    family(
        "db_client_connection_wait_time_seconds",
        "db.client.connection.wait_time",
        "s",
        Histogram,
        POOL,
        Read::PoolHistogram(|f| f.latest.histograms.wait_time.as_ref()),
        "Time a caller waited for a connection, as the application measured it.",
    ),
    family(
        "poolwatch_alertmanagers",
        "poolwatch.alertmanagers",
        "{alertmanager}",
        Gauge,
        NONE,
        Read::Agent,
        "Alertmanagers alerts are sent to.",
    ),
    family(
        "poolwatch_alerts",
        "poolwatch.alerts",
        "{alert}",
        Gauge,
        &["alertname", "alertstate", "severity"],
        Read::Alerts,
        "Pending and firing alerts of the agent's rules, one series each, with the alert's labels.",
    ),
    family(
        "poolwatch_build_info",
        "poolwatch.build.info",
        "1",
        Gauge,
        &["version"],
        Read::Agent,
        "Always 1; the agent's version as a label.",
    ),
    family(
        "poolwatch_database_lock_waiters",
        "poolwatch.database.lock_waiters",
        "{request}",
        Gauge,
        POOL,
        Read::Pool(|f| count(database(f)?.lock_waiters)),
        "Lock requests on the database file or its WAL index that the kernel holds blocked.",
    ),
    family(
        "poolwatch_database_process_connections",
        "poolwatch.database.process.connections",
        "{connection}",
        Gauge,
        PROCESS,
        Read::PoolSeries(|f, out| {
            for_processes(f, out, |p| count(p.connections));
        }),
        "Open file descriptors a process has on the database file: one per SQLite connection.",
    ),
    family(
        "poolwatch_database_process_cpu_utilization_ratio",
        "poolwatch.database.process.cpu.utilization",
        "1",
        Gauge,
        PROCESS,
        Read::PoolSeries(|f, out| for_processes(f, out, |p| p.cpu_utilization)),
        "Share of one CPU a process holding the database used since the previous sample.",
    ),
    family(
        "poolwatch_database_process_lock_info",
        "poolwatch.database.process.lock",
        "1",
        Gauge,
        &[POOL_LABEL, "pid", "process", "lock"],
        Read::PoolSeries(|f, out| {
            for p in database(f)
                .map(|d| d.processes.as_slice())
                .unwrap_or_default()
            {
                let pid = p.pid.to_string();
                for lock in &p.locks {
                    out(&[("pid", &pid), ("process", &p.name), ("lock", lock)], 1.0);
                }
            }
        }),
        "Always 1; a lock a process holds on the database: shared, reserved, pending, exclusive (SQLite rollback journal), wal_read, wal_write, wal_checkpoint, wal_recover (SQLite WAL), read, write (DuckDB).",
    ),
    family(
        "poolwatch_database_process_resident_memory_bytes",
        "poolwatch.database.process.memory.rss",
        "By",
        Gauge,
        PROCESS,
        Read::PoolSeries(|f, out| for_processes(f, out, |p| count(p.resident_memory_bytes))),
        "Resident memory of a process holding the database.",
    ),
    family(
        "poolwatch_database_rows",
        "poolwatch.database.rows",
        "{row}",
        Gauge,
        POOL,
        Read::Pool(|f| count(database(f)?.rows)),
        "Rows in the dataset's tables: MDM's registry statistics, else read from the file (SQLite: largest rowid per table; DuckDB: estimated_size).",
    ),
    family(
        "poolwatch_database_setting_info",
        "poolwatch.database.setting",
        "1",
        Gauge,
        &[POOL_LABEL, "setting", "value"],
        Read::PoolSeries(|f, out| {
            for (setting, value) in database(f).map(|d| &d.settings).into_iter().flatten() {
                out(&[("setting", setting), ("value", value)], 1.0);
            }
        }),
        "Always 1; a setting stored in the database file and its value: SQLite journal_mode (wal or rollback) and auto_vacuum, DuckDB storage_version and library_version.",
    ),
    family(
        "poolwatch_database_size_bytes",
        "poolwatch.database.size",
        "By",
        Gauge,
        POOL,
        Read::Pool(|f| count(database(f)?.size_bytes)),
        "Size of the database file.",
    ),
    family(
        "poolwatch_database_wal_growth_bytes_per_second",
        "poolwatch.database.wal.growth",
        "By/s",
        Gauge,
        POOL,
        Read::Pool(|f| f.wal_growth_bytes_per_second),
        "How fast the write-ahead log grew over the rate window; negative after a checkpoint truncated it.",
    ),
    family(
        "poolwatch_database_wal_size_bytes",
        "poolwatch.database.wal.size",
        "By",
        Gauge,
        POOL,
        Read::Pool(|f| count(database(f)?.wal_size_bytes)),
        "Size of the database's write-ahead log (SQLite -wal, DuckDB .wal); 0 while there is none.",
    ),
    family(
        "poolwatch_duckdb_block_size_bytes",
        "poolwatch.duckdb.block_size",
        "By",
        Gauge,
        POOL,
        Read::Pool(|f| count(database(f)?.block_size_bytes)),
        "DuckDB block size of the database file.",
    ),
    family(
        "poolwatch_duckdb_blocks",
        "poolwatch.duckdb.blocks",
        "{block}",
        Gauge,
        &[POOL_LABEL, "state"],
        Read::PoolByLabel(
            "state",
            &[
                ("free", |f| count(database(f)?.blocks_free)),
                ("used", |f| count(database(f)?.blocks_used)),
            ],
        ),
        "DuckDB blocks of the database file by state: used or free.",
    ),
    family(
        "poolwatch_duckdb_memory_limit_bytes",
        "poolwatch.duckdb.memory_limit",
        "By",
        Gauge,
        POOL,
        Read::Pool(|f| count(database(f)?.memory_limit_bytes)),
        "DuckDB memory_limit of the owner's connections (MDM's database.duckdb).",
    ),
    family(
        "poolwatch_duckdb_threads",
        "poolwatch.duckdb.threads",
        "{thread}",
        Gauge,
        POOL,
        Read::Pool(|f| count(database(f)?.threads)),
        "DuckDB threads the owner's connections run with (MDM's database.duckdb).",
    ),
    family(
        "poolwatch_host_cpu_utilization_ratio",
        "poolwatch.host.cpu.utilization",
        "1",
        Gauge,
        NONE,
        Read::Server(|s| s.host.as_ref()?.cpu_utilization),
        "Share of all the host's CPUs busy since the previous sample.",
    ),
    family(
        "poolwatch_host_memory_available_bytes",
        "poolwatch.host.memory.available",
        "By",
        Gauge,
        NONE,
        Read::Server(|s| count(s.host.as_ref()?.memory_available_bytes)),
        "Memory available to new work on the host (MemAvailable).",
    ),
    family(
        "poolwatch_host_memory_total_bytes",
        "poolwatch.host.memory.total",
        "By",
        Gauge,
        NONE,
        Read::Server(|s| count(s.host.as_ref()?.memory_total_bytes)),
        "The host's memory.",
    ),
    family(
        "poolwatch_host_memory_utilization_ratio",
        "poolwatch.host.memory.utilization",
        "1",
        Gauge,
        NONE,
        Read::Server(|s| s.host.as_ref()?.memory_utilization()),
        "(total - available) / total memory of the host, as psutil's virtual_memory().percent / 100.",
    ),
    family(
        "poolwatch_notifications_dropped_total",
        "poolwatch.notifications.dropped",
        "{alert}",
        Counter,
        &["alertmanager"],
        Read::Agent,
        "Alerts not delivered to the Alertmanager: the oldest dropped from a full queue, or rejected by it.",
    ),
    family(
        "poolwatch_notifications_errors_total",
        "poolwatch.notifications.errors",
        "{request}",
        Counter,
        &["alertmanager"],
        Read::Agent,
        "Requests to the Alertmanager that failed (unreachable, timed out, or not 2xx).",
    ),
    family(
        "poolwatch_notifications_queue_capacity",
        "poolwatch.notifications.queue.capacity",
        "{alert}",
        Gauge,
        NONE,
        Read::Agent,
        "Alerts each Alertmanager's queue holds before the oldest are dropped.",
    ),
    family(
        "poolwatch_notifications_queue_length",
        "poolwatch.notifications.queue.length",
        "{alert}",
        Gauge,
        &["alertmanager"],
        Read::Agent,
        "Alerts waiting to be delivered to the Alertmanager.",
    ),
    family(
        "poolwatch_notifications_sent_total",
        "poolwatch.notifications.sent",
        "{alert}",
        Counter,
        &["alertmanager"],
        Read::Agent,
        "Alerts delivered to the Alertmanager (accepted with a 2xx).",
    ),
    family(
        "poolwatch_otlp_data_points_received_total",
        "poolwatch.otlp.data_points.received",
        "{data_point}",
        Counter,
        &["outcome"],
        Read::Agent,
        "Data points the OTLP receiver took in: accepted into a pool, ignored (a metric it does not read) or refused.",
    ),
    family(
        "poolwatch_otlp_data_points_refused_total",
        "poolwatch.otlp.data_points.refused",
        "{data_point}",
        Counter,
        &["reason"],
        Read::Agent,
        "Data points the OTLP receiver refused, by reason.",
    ),
    family(
        "poolwatch_otlp_export_failures_total",
        "poolwatch.otlp.export.failures",
        "{export}",
        Counter,
        &["reason"],
        Read::Agent,
        "OTLP exports that failed, by reason: unreachable, timeout, rejected (the collector said no).",
    ),
    family(
        "poolwatch_otlp_exports_total",
        "poolwatch.otlp.exports",
        "{export}",
        Counter,
        NONE,
        Read::Agent,
        "OTLP exports attempted, successful or not.",
    ),
    family(
        "poolwatch_otlp_last_success_timestamp_seconds",
        "poolwatch.otlp.last_success",
        "s",
        Gauge,
        NONE,
        Read::Agent,
        "Unix time of the last OTLP export the collector accepted.",
    ),
    family(
        "poolwatch_otlp_requests_total",
        "poolwatch.otlp.requests",
        "{request}",
        Counter,
        &["transport", "outcome"],
        Read::Agent,
        "OTLP export requests by transport (http, grpc) and outcome.",
    ),
    family(
        "poolwatch_pgbouncer_client_connections",
        "poolwatch.pgbouncer.client_connections",
        "{connection}",
        Gauge,
        NONE,
        Read::Server(|s| count(s.client_connections)),
        "Clients connected to PgBouncer across all pools.",
    ),
    family(
        "poolwatch_pgbouncer_max_client_connections",
        "poolwatch.pgbouncer.max_client_connections",
        "{connection}",
        Gauge,
        NONE,
        Read::Server(|s| count(s.max_client_connections)),
        "PgBouncer max_client_conn.",
    ),
    family(
        "poolwatch_pool_avg_usage_time_seconds",
        "poolwatch.pool.avg_usage_time",
        "s",
        Gauge,
        POOL,
        Read::Pool(|f| f.avg_usage_time_seconds),
        "Average time a connection was held per transaction, over the rate window.",
    ),
    family(
        "poolwatch_pool_avg_wait_time_seconds",
        "poolwatch.pool.avg_wait_time",
        "s",
        Gauge,
        POOL,
        Read::Pool(|f| f.avg_wait_time_seconds),
        "Average time a caller waited for a connection, over the rate window.",
    ),
    family(
        "poolwatch_pool_connection_churn_per_minute",
        "poolwatch.pool.connection_churn",
        "{connection}/min",
        Gauge,
        POOL,
        Read::Pool(|f| f.churn_per_minute),
        "Connections opened plus closed per minute, over the rate window.",
    ),
    family(
        "poolwatch_pool_connection_errors_total",
        "poolwatch.pool.connection_errors",
        "{error}",
        Counter,
        POOL,
        Read::Pool(|f| count(f.latest.totals.connection_errors)),
        "Failed connection attempts of the pool.",
    ),
    family(
        "poolwatch_pool_connections_closed_total",
        "poolwatch.pool.connections.closed",
        "{connection}",
        Counter,
        POOL,
        Read::Pool(|f| count(f.latest.totals.connections_closed)),
        "Connections seen closing since the agent started watching.",
    ),
    family(
        "poolwatch_pool_connections_opened_total",
        "poolwatch.pool.connections.opened",
        "{connection}",
        Counter,
        POOL,
        Read::Pool(|f| count(f.latest.totals.connections_opened)),
        "Connections seen opening since the agent started watching.",
    ),
    family(
        "poolwatch_pool_dataset_recommended_size",
        "poolwatch.pool.dataset_recommended_size",
        "{connection}",
        Gauge,
        &[POOL_LABEL, "pool_size"],
        Read::PoolSeries(|f, out| {
            // The configured pool_size rides along as a label, so that a rule's annotation can
            // name both (templates have no query function).
            if let (Some(size), Some(configured)) =
                (f.dataset_recommended_size, f.latest.limits.pool_size)
            {
                out(&[("pool_size", &configured.to_string())], size as f64);
            }
        }),
        "pool_size the spec's PerDatasetPoolManager gives the dataset: twice pool_size above 1e9 rows, half of it (at least 2) below 1e6; pool_size is the configured one.",
    ),
    family(
        "poolwatch_pool_idle_in_transaction_connections",
        "poolwatch.pool.idle_in_transaction",
        "{connection}",
        Gauge,
        POOL,
        Read::Pool(|f| count(f.latest.idle_in_transaction)),
        "Used connections idle inside a transaction.",
    ),
    family(
        "poolwatch_pool_lock_waits",
        "poolwatch.pool.lock_waits",
        "{connection}",
        Gauge,
        POOL,
        Read::Pool(|f| count(f.latest.lock_waits)),
        "Connections of the pool waiting on a lock.",
    ),
    family(
        "poolwatch_pool_max_overflow",
        "poolwatch.pool.max_overflow",
        "{connection}",
        Gauge,
        POOL,
        Read::Pool(|f| count(f.latest.limits.max_overflow)),
        "The pool's max_overflow (PgBouncer: reserve_pool).",
    ),
    family(
        "poolwatch_pool_observed_seconds",
        "poolwatch.pool.observed",
        "s",
        Gauge,
        POOL,
        Read::Pool(|f| f.observed_seconds),
        "How long the agent has watched the pool without a gap; rules over a range wait for it to cover the range.",
    ),
    family(
        "poolwatch_pool_oldest_connection_age_seconds",
        "poolwatch.pool.oldest_connection_age",
        "s",
        Gauge,
        POOL,
        Read::Pool(|f| f.latest.oldest_connection_age_seconds),
        "Age of the pool's oldest connection, to compare with its recycle.",
    ),
    family(
        "poolwatch_pool_oldest_idle_in_transaction_seconds",
        "poolwatch.pool.oldest_idle_in_transaction",
        "s",
        Gauge,
        POOL,
        Read::Pool(|f| f.latest.oldest_idle_in_transaction_seconds),
        "How long the connection idle in a transaction the longest has been so; 0 when none is.",
    ),
    family(
        "poolwatch_pool_oldest_wait_seconds",
        "poolwatch.pool.oldest_wait",
        "s",
        Gauge,
        POOL,
        Read::Pool(|f| f.latest.oldest_wait_seconds),
        "How long the longest-waiting caller has waited.",
    ),
    family(
        "poolwatch_pool_overflow_utilization_ratio",
        "poolwatch.pool.overflow_utilization",
        "1",
        Gauge,
        POOL,
        Read::Pool(|f| f.overflow_utilization),
        "Connections beyond pool_size / max_overflow.",
    ),
    family(
        "poolwatch_pool_recommended_size",
        "poolwatch.pool.recommended_size",
        "{connection}",
        Gauge,
        &[POOL_LABEL, "model"],
        Read::PoolByLabel(
            "model",
            &[
                ("erlang_c", |f| recommended_by(f, Model::ErlangC)),
                ("utilization", |f| recommended_by(f, Model::Utilization)),
            ],
        ),
        "pool_size to set, by the model that produced it: erlang_c, the smallest whose predicted p99 wait meets target_p99_wait (from the checkout rate and mean hold time), or utilization, the smallest that keeps used + pending at or below 80%; the larger where both apply.",
    ),
    family(
        "poolwatch_pool_recycle_seconds",
        "poolwatch.pool.recycle",
        "s",
        Gauge,
        POOL,
        Read::Pool(|f| f.latest.limits.recycle_seconds),
        "Seconds after which the pool replaces a connection.",
    ),
    family(
        "poolwatch_pool_size",
        "poolwatch.pool.size",
        "{connection}",
        Gauge,
        POOL,
        Read::Pool(|f| count(f.latest.limits.pool_size)),
        "The pool's pool_size, as the source sees it or as configured.",
    ),
    family(
        "poolwatch_pool_timeout_seconds",
        "poolwatch.pool.timeout",
        "s",
        Gauge,
        POOL,
        Read::Pool(|f| f.latest.limits.timeout_seconds),
        "Seconds a caller may wait for a connection before it fails.",
    ),
    family(
        "poolwatch_pool_transactions_total",
        "poolwatch.pool.transactions",
        "{transaction}",
        Counter,
        POOL,
        Read::Pool(|f| count(f.latest.totals.transactions)),
        "Transactions served by the pool (PgBouncer: per database).",
    ),
    family(
        "poolwatch_pool_utilization_ratio",
        "poolwatch.pool.utilization",
        "1",
        Gauge,
        POOL,
        Read::Pool(|f| f.utilization),
        "Used connections / pool_size.",
    ),
    family(
        "poolwatch_postgres_checkpoint_completion_target",
        "poolwatch.postgres.checkpoint_completion_target",
        "1",
        Gauge,
        NONE,
        Read::Server(|s| s.postgres_settings.checkpoint_completion_target),
        "PostgreSQL checkpoint_completion_target.",
    ),
    family(
        "poolwatch_postgres_connections",
        "poolwatch.postgres.connections",
        "{connection}",
        Gauge,
        NONE,
        Read::Server(|s| count(s.connections)),
        "Client connections to PostgreSQL across all pools.",
    ),
    family(
        "poolwatch_postgres_effective_cache_size_bytes",
        "poolwatch.postgres.effective_cache_size",
        "By",
        Gauge,
        NONE,
        Read::Server(|s| s.postgres_settings.effective_cache_size_bytes),
        "PostgreSQL effective_cache_size.",
    ),
    family(
        "poolwatch_postgres_headroom_connections",
        "poolwatch.postgres.headroom",
        "{connection}",
        Gauge,
        NONE,
        Read::Server(|s| s.headroom().map(|v| v as f64)),
        "max_connections - superuser_reserved_connections - all connections.",
    ),
    family(
        "poolwatch_postgres_maintenance_work_mem_bytes",
        "poolwatch.postgres.maintenance_work_mem",
        "By",
        Gauge,
        NONE,
        Read::Server(|s| s.postgres_settings.maintenance_work_mem_bytes),
        "PostgreSQL maintenance_work_mem.",
    ),
    family(
        "poolwatch_postgres_max_connections",
        "poolwatch.postgres.max_connections",
        "{connection}",
        Gauge,
        NONE,
        Read::Server(|s| count(s.max_connections)),
        "PostgreSQL max_connections.",
    ),
    family(
        "poolwatch_postgres_random_page_cost",
        "poolwatch.postgres.random_page_cost",
        "1",
        Gauge,
        NONE,
        Read::Server(|s| s.postgres_settings.random_page_cost),
        "PostgreSQL random_page_cost.",
    ),
    family(
        "poolwatch_postgres_reserved_connections",
        "poolwatch.postgres.reserved_connections",
        "{connection}",
        Gauge,
        NONE,
        Read::Server(|s| count(s.reserved_connections)),
        "PostgreSQL superuser_reserved_connections.",
    ),
    family(
        "poolwatch_postgres_shared_buffers_bytes",
        "poolwatch.postgres.shared_buffers",
        "By",
        Gauge,
        NONE,
        Read::Server(|s| s.postgres_settings.shared_buffers_bytes),
        "PostgreSQL shared_buffers.",
    ),
    family(
        "poolwatch_postgres_wal_buffers_bytes",
        "poolwatch.postgres.wal_buffers",
        "By",
        Gauge,
        NONE,
        Read::Server(|s| s.postgres_settings.wal_buffers_bytes),
        "PostgreSQL wal_buffers.",
    ),
    family(
        "poolwatch_postgres_work_mem_bytes",
        "poolwatch.postgres.work_mem",
        "By",
        Gauge,
        NONE,
        Read::Server(|s| s.postgres_settings.work_mem_bytes),
        "PostgreSQL work_mem.",
    ),
    family(
        "poolwatch_reload_last_success_timestamp_seconds",
        "poolwatch.reload.last_success",
        "s",
        Gauge,
        &["kind"],
        Read::Agent,
        "Unix time of the last successful load of the config, rule or web config files.",
    ),
    family(
        "poolwatch_reload_successful",
        "poolwatch.reload.successful",
        "1",
        Gauge,
        &["kind"],
        Read::Agent,
        "1 if the last load of the config, rule or web config files succeeded; 0 while a broken file is ignored.",
    ),
    family(
        "poolwatch_rule_evaluation_duration_seconds",
        "poolwatch.rule.evaluation.duration",
        "s",
        Gauge,
        NONE,
        Read::Agent,
        "How long the last evaluation of every rule took.",
    ),
    family(
        "poolwatch_rule_evaluation_failing",
        "poolwatch.rule.evaluation.failing",
        "{rule}",
        Gauge,
        NONE,
        Read::Agent,
        "Rules whose last evaluation failed.",
    ),
    family(
        "poolwatch_rules_loaded",
        "poolwatch.rules.loaded",
        "{rule}",
        Gauge,
        NONE,
        Read::Agent,
        "Alerting rules the agent evaluates.",
    ),
    family(
        "poolwatch_rules_window_bytes",
        "poolwatch.rules.window.size",
        "By",
        Gauge,
        NONE,
        Read::Agent,
        "Heap bytes of the packed samples in the rules' window (labels and indexes not counted).",
    ),
    family(
        "poolwatch_rules_window_samples",
        "poolwatch.rules.window.samples",
        "{sample}",
        Gauge,
        NONE,
        Read::Agent,
        "Samples packed in the rules' window: with its bytes, the cost of a kept sample.",
    ),
    family(
        "poolwatch_rules_window_series",
        "poolwatch.rules.window.series",
        "{series}",
        Gauge,
        NONE,
        Read::Agent,
        "Series in the rules' window: those some loaded rule reads.",
    ),
    family(
        "poolwatch_sqlite_page_size_bytes",
        "poolwatch.sqlite.page_size",
        "By",
        Gauge,
        POOL,
        Read::Pool(|f| count(database(f)?.page_size_bytes)),
        "SQLite page_size of the database file.",
    ),
    family(
        "poolwatch_target_errors_total",
        "poolwatch.target.errors",
        "{error}",
        Counter,
        &["kind"],
        Read::Agent,
        "Failed samples of the target by kind: connect, auth, query, protocol, timeout, certificate, tls.",
    ),
    family(
        "poolwatch_target_last_success_timestamp_seconds",
        "poolwatch.target.last_success",
        "s",
        Gauge,
        NONE,
        Read::Target(|t| t.last_success_unix_seconds),
        "Unix time of the target's last successful sample.",
    ),
    family(
        "poolwatch_target_sample_duration_seconds",
        "poolwatch.target.sample.duration",
        "s",
        Histogram,
        NONE,
        Read::Agent,
        "How long samples of the target took, successful or not.",
    ),
    family(
        "poolwatch_target_up",
        "poolwatch.target.up",
        "1",
        Gauge,
        NONE,
        // A target not sampled yet is neither up nor down: absent, so no TargetDown at start.
        Read::Target(|t| (t.samples > 0).then_some(if t.up { 1.0 } else { 0.0 })),
        "1 if the last sample of the target succeeded, else 0; absent until the first sample ends.",
    ),
];

/// The family named `name`.
pub fn family_named(name: &str) -> Option<&'static Family> {
    CATALOGUE.iter().find(|f| f.name == name)
}

/// The suffixes of the series a histogram family is written as.
pub const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

/// The family a series name belongs to: the family itself, or a histogram's `_bucket`, `_sum`
/// or `_count`.
pub fn family_of_series(name: &str) -> Option<&'static Family> {
    family_named(name).or_else(|| {
        HISTOGRAM_SUFFIXES.iter().find_map(|suffix| {
            let base = family_named(name.strip_suffix(suffix)?)?;
            (base.instrument == Instrument::Histogram).then_some(base)
        })
    })
}

/// A series' labels, built once and shared by every sample that carries them: sorted pairs, the
/// Prometheus rendering of them, and a hash of their content.
#[derive(Debug, PartialEq, Eq)]
pub struct LabelSet {
    pairs: Box<[(Box<str>, Box<str>)]>,
    /// `a="x",b="y"`, escaped for the text format; empty for no labels.
    rendered: Box<str>,
    hash: u64,
}

impl LabelSet {
    pub fn new(labels: BTreeMap<String, String>) -> LabelSet {
        let mut rendered = String::new();
        let mut hash = 0u64;
        let pairs: Box<[(Box<str>, Box<str>)]> = labels
            .into_iter()
            .map(|(k, v)| {
                if !rendered.is_empty() {
                    rendered.push(',');
                }
                push_label(&mut rendered, &k, &v);
                hash = hash.wrapping_add(pair_hash(&k, &v));
                (k.into_boxed_str(), v.into_boxed_str())
            })
            .collect();
        LabelSet {
            pairs,
            rendered: rendered.into_boxed_str(),
            hash,
        }
    }

    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| &**v)
    }

    /// The labels in the Prometheus text format, without braces.
    pub fn rendered(&self) -> &str {
        &self.rendered
    }

    /// A hash of the labels' content, additive over pairs so that a series' hash is this plus
    /// the hashes of its extra label and name (see [`pair_hash`]).
    pub fn content_hash(&self) -> u64 {
        self.hash
    }
}

/// The hash of one label pair. Series hashes are sums of pair hashes, so that a label set and
/// one more label can be combined without rebuilding either.
pub fn pair_hash(name: &str, value: &str) -> u64 {
    let mut h = rustc_hash::FxBuildHasher.build_hasher();
    name.hash(&mut h);
    value.hash(&mut h);
    // FxHash alone mixes poorly in its low bits; a final avalanche makes sums safe to compare.
    let mut x = h.finish();
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Appends `name="value"` with the value escaped as the text format requires.
fn push_label(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A sample's value: one number, or a histogram.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(f64),
    Histogram(Arc<model::Histogram>),
}

/// One exported sample: what `/metrics` shows, OTLP carries and rules evaluate.
#[derive(Clone, Debug)]
pub struct ExportedSample {
    pub family: &'static Family,
    pub labels: Arc<LabelSet>,
    /// One more label, for families that split a pool by state.
    pub extra: Option<(&'static str, &'static str)>,
    pub value: Value,
}

/// One plain series of a sample, as Prometheus stores it: a histogram is several (`_bucket` per
/// bound with `le`, `_sum`, `_count`), anything else one.
#[derive(Clone, Copy, Debug)]
pub struct Scalar<'a> {
    /// The name suffix (`_bucket`, `_sum`, `_count`; empty for a plain sample).
    pub suffix: &'static str,
    /// The `le` label of a bucket, as written.
    pub le: Option<&'a str>,
    pub value: f64,
}

impl ExportedSample {
    /// Calls `f` with every plain series of the sample, in exposition order.
    pub fn scalars(&self, mut f: impl FnMut(Scalar<'_>)) {
        match &self.value {
            Value::Scalar(value) => f(Scalar {
                suffix: "",
                le: None,
                value: *value,
            }),
            Value::Histogram(h) => {
                let mut le = Vec::with_capacity(24);
                for (bound, count) in h.cumulative() {
                    le.clear();
                    crate::exporters::prometheus::write_value(bound, &mut le);
                    f(Scalar {
                        suffix: "_bucket",
                        le: Some(std::str::from_utf8(&le).expect("ASCII")),
                        value: count as f64,
                    });
                }
                f(Scalar {
                    suffix: "_sum",
                    le: None,
                    value: h.sum,
                });
                f(Scalar {
                    suffix: "_count",
                    le: None,
                    value: h.count as f64,
                });
            }
        }
    }

    /// The content hash of one plain series' full label set, its name included.
    pub fn series_hash(&self, scalar: &Scalar<'_>) -> u64 {
        /// Each family's name pair hashed once: every sample of the family adds it.
        static NAME_HASHES: LazyLock<Vec<u64>> = LazyLock::new(|| {
            CATALOGUE
                .iter()
                .map(|f| pair_hash(crate::series::NAME_LABEL, f.name))
                .collect()
        });
        let mut h = self.labels.content_hash();
        h = h.wrapping_add(if scalar.suffix.is_empty() {
            NAME_HASHES[self.family.id()]
        } else {
            pair_hash(
                crate::series::NAME_LABEL,
                &format!("{}{}", self.family.name, scalar.suffix),
            )
        });
        if let Some((k, v)) = self.extra {
            h = h.wrapping_add(pair_hash(k, v));
        }
        if let Some(le) = scalar.le {
            h = h.wrapping_add(pair_hash("le", le));
        }
        h
    }

    /// Every label of one plain series, the name under `__name__` included, sorted.
    pub fn full_labels(&self, scalar: &Scalar<'_>) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> = self
            .labels
            .pairs()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some((k, v)) = self.extra {
            labels.insert(k.to_string(), v.to_string());
        }
        if let Some(le) = scalar.le {
            labels.insert("le".into(), le.to_string());
        }
        labels.insert(
            crate::series::NAME_LABEL.to_string(),
            format!("{}{}", self.family.name, scalar.suffix),
        );
        labels
    }
}

/// Turns snapshots into samples. It keeps each target's and pool's label set from one snapshot
/// to the next, so a sample cycle builds and hashes labels only for what changed.
#[derive(Default)]
pub struct Exposer {
    targets: FxHashMap<String, TargetLabels>,
    generation: u64,
}

struct TargetLabels {
    /// What the target's label set was built from: its source and configured labels.
    source: &'static str,
    configured: crate::model::Labels,
    labels: Arc<LabelSet>,
    /// By a hash of the pool's name and own labels: pushed pools of one name from several
    /// service instances are several pools.
    pools: FxHashMap<u64, PoolLabels>,
    seen: u64,
}

struct PoolLabels {
    pool: String,
    from: crate::model::Labels,
    labels: Arc<LabelSet>,
    seen: u64,
}

/// The labels every series of a target carries: its configured labels, `target` and `source`.
fn target_labels(target: &TargetStatus) -> BTreeMap<String, String> {
    let mut all = target.labels.clone();
    all.insert("target".into(), target.name.clone());
    all.insert("source".into(), target.source.as_str().into());
    all
}

impl Exposer {
    /// The samples of a snapshot, family by family in catalogue order, without alerts and the
    /// agent's own telemetry.
    pub fn samples(&mut self, snapshot: &Snapshot, out: &mut Vec<ExportedSample>) {
        out.clear();
        self.generation += 1;
        let generation = self.generation;
        // Label sets first, so the family loop below only looks them up.
        let mut sets: Vec<(Arc<LabelSet>, Vec<Arc<LabelSet>>)> =
            Vec::with_capacity(snapshot.targets.len());
        for target in &snapshot.targets {
            let entry = self.target_entry(target, generation);
            let pools = target
                .pools
                .iter()
                .map(|p| pool_entry(entry, target, p, generation))
                .collect();
            sets.push((entry.labels.clone(), pools));
        }
        self.targets.retain(|_, t| {
            t.pools.retain(|_, p| p.seen == generation);
            t.seen == generation
        });
        for family in CATALOGUE {
            for (target, (target_set, pool_sets)) in snapshot.targets.iter().zip(&sets) {
                let push = |out: &mut Vec<ExportedSample>, labels: &Arc<LabelSet>, extra, v| {
                    out.push(ExportedSample {
                        family,
                        labels: labels.clone(),
                        extra,
                        value: Value::Scalar(v),
                    })
                };
                match family.read {
                    Read::Target(read) => {
                        if let Some(v) = read(target) {
                            push(out, target_set, None, v);
                        }
                    }
                    // Figures of a target we cannot reach are unknown now: absent, not stale.
                    _ if !target.up => {}
                    Read::Server(read) => {
                        if let Some(v) = target.server.as_ref().and_then(read) {
                            push(out, target_set, None, v);
                        }
                    }
                    Read::Pool(read) => {
                        for (pool, labels) in target.pools.iter().zip(pool_sets) {
                            if let Some(v) = read(pool) {
                                push(out, labels, None, v);
                            }
                        }
                    }
                    Read::PoolHistogram(read) => {
                        for (pool, labels) in target.pools.iter().zip(pool_sets) {
                            if let Some(h) = read(pool) {
                                out.push(ExportedSample {
                                    family,
                                    labels: labels.clone(),
                                    extra: None,
                                    value: Value::Histogram(h.clone()),
                                });
                            }
                        }
                    }
                    Read::PoolByLabel(label, parts) => {
                        for (pool, labels) in target.pools.iter().zip(pool_sets) {
                            for (value, read) in parts {
                                if let Some(v) = read(pool) {
                                    push(out, labels, Some((label, *value)), v);
                                }
                            }
                        }
                    }
                    Read::PoolSeries(read) => {
                        for (pool, labels) in target.pools.iter().zip(pool_sets) {
                            read(pool, &mut |extra, v| {
                                let mut all: BTreeMap<String, String> = labels
                                    .pairs()
                                    .map(|(k, v)| (k.to_string(), v.to_string()))
                                    .collect();
                                for (k, x) in extra {
                                    all.insert(k.to_string(), x.to_string());
                                }
                                let set = Arc::new(LabelSet::new(all));
                                push(out, &set, None, v);
                            });
                        }
                    }
                    Read::Alerts | Read::Agent => {}
                }
            }
        }
    }

    fn target_entry(&mut self, target: &TargetStatus, generation: u64) -> &mut TargetLabels {
        let source = target.source.as_str();
        let entry = self
            .targets
            .entry(target.name.clone())
            .or_insert_with(|| TargetLabels {
                source,
                configured: target.labels.clone(),
                labels: Arc::new(LabelSet::new(target_labels(target))),
                pools: FxHashMap::default(),
                seen: generation,
            });
        if entry.source != source || entry.configured != target.labels {
            entry.source = source;
            entry.configured = target.labels.clone();
            entry.labels = Arc::new(LabelSet::new(target_labels(target)));
            entry.pools.clear();
        }
        entry.seen = generation;
        entry
    }
}

fn pool_entry(
    entry: &mut TargetLabels,
    target: &TargetStatus,
    pool: &PoolFigures,
    generation: u64,
) -> Arc<LabelSet> {
    let build = || {
        let mut all = target_labels(target);
        for (k, v) in &pool.latest.labels {
            // Configured labels win over what a source derives (a dataset name, say).
            all.entry(k.clone()).or_insert_with(|| v.clone());
        }
        all.insert(POOL_LABEL.into(), pool.latest.pool.clone());
        Arc::new(LabelSet::new(all))
    };
    let key = rustc_hash::FxBuildHasher.hash_one((&pool.latest.pool, &pool.latest.labels));
    match entry.pools.get_mut(&key) {
        Some(p) => {
            if p.pool != pool.latest.pool || p.from != pool.latest.labels {
                p.pool = pool.latest.pool.clone();
                p.from = pool.latest.labels.clone();
                p.labels = build();
            }
            p.seen = generation;
            p.labels.clone()
        }
        None => {
            let labels = build();
            entry.pools.insert(
                key,
                PoolLabels {
                    pool: pool.latest.pool.clone(),
                    from: pool.latest.labels.clone(),
                    labels: labels.clone(),
                    seen: generation,
                },
            );
            labels
        }
    }
}

/// One `poolwatch_alerts` sample per pending or firing alert: the alert's labels plus
/// `alertstate`, as Prometheus' `ALERTS` series.
pub fn alert_samples<'a>(
    alerts: impl IntoIterator<Item = &'a Alert>,
    out: &mut Vec<ExportedSample>,
) {
    out.clear();
    let family = family_named("poolwatch_alerts").expect("in the catalogue");
    for alert in alerts {
        let mut labels = alert.labels.clone();
        let state = match alert.state {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        };
        labels.insert("alertstate".into(), state.into());
        out.push(ExportedSample {
            family,
            labels: Arc::new(LabelSet::new(labels)),
            extra: None,
            value: Value::Scalar(1.0),
        });
    }
}

/// The samples of `family` within `samples` (which are in catalogue order).
pub fn of_family<'a>(
    samples: &'a [ExportedSample],
    family: &'static Family,
) -> &'a [ExportedSample] {
    let id = family.id();
    let start = samples.partition_point(|s| s.family.id() < id);
    let end = samples.partition_point(|s| s.family.id() <= id);
    &samples[start..end]
}

/// The catalogue as the README's table (kept in step by a test).
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| metric | type | OpenTelemetry | unit | labels | meaning |\n|---|---|---|---|---|---|\n",
    );
    for f in CATALOGUE {
        let labels = if f.labels.is_empty() {
            "—".to_string()
        } else {
            f.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | `{}` | `{}` | {} | {} |",
            f.name,
            f.instrument.prometheus_type(),
            f.otel,
            f.unit,
            labels,
            f.help
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_is_sorted_unique_and_ids_round_trip() {
        for pair in CATALOGUE.windows(2) {
            assert!(pair[0].name < pair[1].name, "{:?} {:?}", pair[0], pair[1]);
        }
        for (i, f) in CATALOGUE.iter().enumerate() {
            assert_eq!(f.id(), i);
            assert!(!f.help.contains('\n'));
        }
    }

    #[test]
    fn counters_end_in_total_and_seconds_are_seconds() {
        for f in CATALOGUE {
            assert_eq!(
                f.instrument == Instrument::Counter,
                f.name.ends_with("_total"),
                "{f:?}"
            );
            assert_eq!(f.unit == "s", f.name.ends_with("_seconds"), "{f:?}");
        }
    }

    #[test]
    fn label_values_are_escaped_once() {
        let set = LabelSet::new(BTreeMap::from([
            ("b".to_string(), "say \"hi\"\n".to_string()),
            ("a".to_string(), "back\\slash".to_string()),
        ]));
        assert_eq!(set.rendered(), r#"a="back\\slash",b="say \"hi\"\n""#);
    }

    #[test]
    fn content_hash_does_not_depend_on_construction_order() {
        let a = LabelSet::new(BTreeMap::from([
            ("x".to_string(), "1".to_string()),
            ("y".to_string(), "2".to_string()),
        ]));
        let b = LabelSet::new(BTreeMap::from([
            ("y".to_string(), "2".to_string()),
            ("x".to_string(), "1".to_string()),
        ]));
        assert_eq!(a.content_hash(), b.content_hash());
        let c = LabelSet::new(BTreeMap::from([
            ("x".to_string(), "2".to_string()),
            ("y".to_string(), "1".to_string()),
        ]));
        assert_ne!(a.content_hash(), c.content_hash());
    }
}
