//! The one pool model every source maps into: what a source saw in one sample, and the figures
//! derived from a window of samples. "Not visible from this source" is `None`, never 0.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::advisor;

/// Extra labels on every series of a pool (dataset, role, …), sorted so output is deterministic.
pub type Labels = BTreeMap<String, String>;

/// Which kind of system a target is; the `type` of a target in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Pgbouncer,
    Postgres,
    Sqlite,
    Duckdb,
    Mdm,
    /// Pools that applications report to the agent's OTLP receiver: the receiver's built-in
    /// target, never a `type` in the config.
    #[serde(skip_deserializing)]
    Otlp,
}

impl SourceKind {
    pub const ALL: [SourceKind; 5] = [
        SourceKind::Pgbouncer,
        SourceKind::Postgres,
        SourceKind::Sqlite,
        SourceKind::Duckdb,
        SourceKind::Mdm,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Pgbouncer => "pgbouncer",
            SourceKind::Postgres => "postgres",
            SourceKind::Sqlite => "sqlite",
            SourceKind::Duckdb => "duckdb",
            SourceKind::Mdm => "mdm",
            SourceKind::Otlp => "otlp",
        }
    }

    /// The kind a `--target TYPE=…` argument or a config `type` names.
    pub fn parse(name: &str) -> Option<SourceKind> {
        SourceKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The limits the spec tunes, in the spec's words. Each one may come from the source (PgBouncer
/// knows its pool_size) or from the config (an application pool behind PostgreSQL does not show
/// its own pool_size to the server).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PoolLimits {
    pub pool_size: Option<u64>,
    pub max_overflow: Option<u64>,
    /// Seconds a caller waits for a connection before giving up.
    pub timeout_seconds: Option<f64>,
    /// Seconds after which the pool replaces a connection.
    pub recycle_seconds: Option<f64>,
    /// Most and fewest idle connections the pool keeps (`db.client.connection.idle.max/min`).
    pub idle_max: Option<u64>,
    pub idle_min: Option<u64>,
}

impl PoolLimits {
    /// Each limit from `self` where set, otherwise from `fallback`.
    pub fn or(self, fallback: PoolLimits) -> PoolLimits {
        PoolLimits {
            pool_size: self.pool_size.or(fallback.pool_size),
            max_overflow: self.max_overflow.or(fallback.max_overflow),
            timeout_seconds: self.timeout_seconds.or(fallback.timeout_seconds),
            recycle_seconds: self.recycle_seconds.or(fallback.recycle_seconds),
            idle_max: self.idle_max.or(fallback.idle_max),
            idle_min: self.idle_min.or(fallback.idle_min),
        }
    }

    /// The most connections the pool may open: pool_size plus overflow.
    pub fn max_connections(&self) -> Option<u64> {
        Some(self.pool_size? + self.max_overflow.unwrap_or(0))
    }
}

/// Monotonic counters a source keeps for a pool; rates come from their deltas across the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PoolTotals {
    pub transactions: Option<u64>,
    /// Connections taken from the pool and given back, whose hold times `usage_seconds` adds
    /// up: the arrivals Erlang C sizes a pool for. Absent where the source's transactions are
    /// not this pool's checkouts (PgBouncer in session mode, or with several pools on one
    /// database, whose STATS are the database's).
    pub checkouts: Option<u64>,
    /// Times a waiting client was handed a connection (the divisor of the average wait).
    pub assignments: Option<u64>,
    pub wait_seconds: Option<f64>,
    pub usage_seconds: Option<f64>,
    /// `usage_seconds` counts from the caller's request, its wait for a connection included
    /// (PgBouncer's transaction time): the hold time is usage less wait.
    pub usage_includes_wait: bool,
    pub connections_opened: Option<u64>,
    pub connections_closed: Option<u64>,
    pub connection_errors: Option<u64>,
    pub timeouts: Option<u64>,
}

/// An explicit-bucket histogram as OpenTelemetry carries it: counts per bucket, not cumulative.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Histogram {
    /// Upper bounds of the buckets, ascending; the last bucket (to +Inf) has none.
    pub bounds: Vec<f64>,
    /// Observations per bucket: one more than there are bounds.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    /// Upper bound and cumulative count of every bucket, +Inf last, as Prometheus writes them.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let bounds = self.bounds.iter().copied().chain([f64::INFINITY]);
        bounds.zip(self.counts.iter().scan(0u64, |total, c| {
            *total += c;
            Some(*total)
        }))
    }
}

/// The time histograms only the application can measure (`db.client.connection.*_time`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PoolHistograms {
    /// Time a caller waited for a connection.
    pub wait_time: Option<Arc<Histogram>>,
    /// Time a connection was checked out.
    pub use_time: Option<Arc<Histogram>>,
    /// Time it took to open a connection.
    pub create_time: Option<Arc<Histogram>>,
}

/// One pool as one source saw it at one instant.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PoolSample {
    /// `db.client.connection.pool.name`.
    pub pool: String,
    /// Labels the source can tell (a dataset from an `mdm_<dataset>` database name).
    pub labels: Labels,
    /// Connections checked out: the spec's active connections.
    pub used: Option<u64>,
    pub idle: Option<u64>,
    /// Callers waiting for a connection.
    pub pending: Option<u64>,
    /// How long the longest-waiting caller has waited.
    pub oldest_wait_seconds: Option<f64>,
    pub oldest_connection_age_seconds: Option<f64>,
    /// Connections of the pool waiting on a lock.
    pub lock_waits: Option<u64>,
    /// Used connections that sit inside a transaction doing nothing: the typical leak.
    pub idle_in_transaction: Option<u64>,
    /// How long the connection idle in a transaction the longest has been so (0: none is).
    pub oldest_idle_in_transaction_seconds: Option<f64>,
    pub limits: PoolLimits,
    pub totals: PoolTotals,
    pub histograms: PoolHistograms,
    /// The database file behind the pool (SQLite, DuckDB).
    pub database: Option<Box<DatabaseSample>>,
}

impl PoolSample {
    /// What tells one target's pools apart, and orders them: the name, then the labels (pushed
    /// pools of one name from two service instances are two pools).
    pub fn key(&self) -> (&str, &Labels) {
        (&self.pool, &self.labels)
    }
}

/// A database file as the agent saw it: what the file holds and which processes hold the file.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DatabaseSample {
    pub path: String,
    pub size_bytes: Option<u64>,
    /// The write-ahead log (SQLite `-wal`, DuckDB `.wal`): 0 while there is none; absent for a
    /// SQLite file in rollback-journal mode, which keeps no WAL.
    pub wal_size_bytes: Option<u64>,
    /// Settings stored in the file whose value is a word, by name: SQLite `journal_mode`
    /// (`wal` or `rollback`) and `auto_vacuum`; DuckDB `storage_version` and `library_version`.
    pub settings: BTreeMap<String, String>,
    /// SQLite `page_size`.
    pub page_size_bytes: Option<u64>,
    /// Rows in the dataset's tables: MDM's registry statistics, else what the file says.
    pub rows: Option<u64>,
    /// DuckDB storage blocks.
    pub block_size_bytes: Option<u64>,
    pub blocks_used: Option<u64>,
    pub blocks_free: Option<u64>,
    /// DuckDB `threads` and `memory_limit` of the owner's connections (settings of a
    /// connection, not of the file: from MDM's config).
    pub threads: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    /// Processes that have the file open or hold a lock on it, by pid.
    pub processes: Vec<ProcessSample>,
    /// Lock requests on the file (or its WAL index) that the kernel holds blocked.
    pub lock_waiters: Option<u64>,
}

/// A process holding a database file.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProcessSample {
    pub pid: i32,
    /// The process name (`comm`).
    pub name: String,
    /// Its open file descriptors on the database file: one per SQLite connection.
    pub connections: Option<u64>,
    /// The locks it holds, in the database's own terms (SQLite rollback journal: `shared`,
    /// `reserved`, `pending`, `exclusive`; SQLite WAL: `wal_read`, `wal_write`, `wal_checkpoint`,
    /// `wal_recover`; DuckDB: `read`, `write`).
    pub locks: Vec<&'static str>,
    /// Share of one CPU it used since the previous sample.
    pub cpu_utilization: Option<f64>,
    pub resident_memory_bytes: Option<u64>,
}

/// The host the agent runs on, as the spec's ResourceLimiter sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HostSample {
    /// Share of all CPUs busy since the previous sample.
    pub cpu_utilization: Option<f64>,
    pub memory_total_bytes: Option<u64>,
    pub memory_available_bytes: Option<u64>,
}

impl HostSample {
    /// Memory in use / total, as psutil's `virtual_memory().percent` counts it (÷ 100).
    pub fn memory_utilization(&self) -> Option<f64> {
        let total = self.memory_total_bytes.filter(|&t| t > 0)? as f64;
        let available = self.memory_available_bytes? as f64;
        Some((total - available).max(0.0) / total)
    }
}

/// The PostgreSQL server settings the spec tunes (`POSTGRES_SERVER_TUNING`), in base units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PostgresSettings {
    pub shared_buffers_bytes: Option<f64>,
    pub effective_cache_size_bytes: Option<f64>,
    pub maintenance_work_mem_bytes: Option<f64>,
    pub work_mem_bytes: Option<f64>,
    pub wal_buffers_bytes: Option<f64>,
    pub checkpoint_completion_target: Option<f64>,
    pub random_page_cost: Option<f64>,
}

/// Figures about the server behind a target, shared by all its pools.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServerSample {
    /// PostgreSQL `max_connections`.
    pub max_connections: Option<u64>,
    /// PostgreSQL `superuser_reserved_connections`.
    pub reserved_connections: Option<u64>,
    /// Every client connection the server holds, across all pools (the agent's own included).
    pub connections: Option<u64>,
    /// PgBouncer `max_client_conn`.
    pub max_client_connections: Option<u64>,
    /// Clients connected to PgBouncer, across all pools.
    pub client_connections: Option<u64>,
    /// PostgreSQL settings the spec tunes.
    pub postgres_settings: PostgresSettings,
    /// The host, for file databases whose server is the host itself.
    pub host: Option<HostSample>,
}

impl ServerSample {
    /// Connections still free for ordinary users:
    /// `max_connections − superuser_reserved_connections − all connections`.
    pub fn headroom(&self) -> Option<i64> {
        let max = i64::try_from(self.max_connections?).ok()?;
        let reserved = i64::try_from(self.reserved_connections.unwrap_or(0)).ok()?;
        let used = i64::try_from(self.connections?).ok()?;
        Some(max - reserved - used)
    }

    /// The most connections a PostgreSQL server can give `pool`, one of its own pools:
    /// max_connections − reserved − what every other client holds (the agent's own session
    /// among them). `None` unless the server's figures and the pool's connections are known.
    pub fn postgres_limit_for(&self, pool: &PoolSample) -> Option<advisor::BackendLimit> {
        let own = pool.used? + pool.idle?;
        Some(advisor::BackendLimit::Postgres {
            max_connections: self.max_connections?,
            reserved_connections: self.reserved_connections.unwrap_or(0),
            other_connections: self.connections?.saturating_sub(own),
        })
    }
}

/// What one sample of one target returns: its pools, its server, and problems that did not stop
/// the sample (a column this PgBouncer version lacks, say).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TargetSample {
    pub pools: Vec<PoolSample>,
    pub server: ServerSample,
    pub warnings: Vec<String>,
    /// Pools that stopped reporting (pushed pools only): no longer exported, still listed.
    pub gone: Vec<GonePool>,
}

/// How a pushed pool stopped reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolEnd {
    /// Its last report had no connection open and nothing pending: the process closed its pool
    /// and exited, the normal end of a short-lived command.
    Ended,
    /// It stopped reporting with connections open or callers waiting: its health is unknown.
    Stale,
}

/// A pushed pool that has not reported for the receiver's `stale_after`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GonePool {
    pub pool: String,
    pub labels: Labels,
    pub state: PoolEnd,
    pub last_report_unix_seconds: f64,
    /// What its last report showed.
    pub used: Option<u64>,
    pub idle: Option<u64>,
    pub pending: Option<u64>,
}

/// A pool's figures over the window: the latest sample plus what needs more than one sample.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PoolFigures {
    /// Shared with the store, which keeps it until the pool's next sample.
    #[serde(flatten)]
    pub latest: Arc<PoolSample>,
    /// used / pool_size.
    pub utilization: Option<f64>,
    /// Connections beyond pool_size / max_overflow.
    pub overflow_utilization: Option<f64>,
    /// Seconds a caller waited for a connection, on average over the rate window.
    pub avg_wait_time_seconds: Option<f64>,
    /// Seconds a connection was held per transaction, on average over the rate window.
    pub avg_usage_time_seconds: Option<f64>,
    /// Checkouts per second over the rate window: with `avg_usage_time_seconds` (their mean
    /// hold) the demand Erlang C sizes the pool for. Only where the source counts checkouts and
    /// the time they held their connection (PgBouncer: transactions; in-app pools: use_time).
    pub checkouts_per_second: Option<f64>,
    /// Connections opened plus closed per minute over the rate window.
    pub churn_per_minute: Option<f64>,
    /// Failed connection attempts over the rate window.
    pub connection_errors: Option<u64>,
    /// The pool_size to set: `recommendation.pool_size`.
    pub recommended_pool_size: Option<u64>,
    /// How the recommended size was reached: the model, the backend's limit, the reasoning.
    pub recommendation: Option<advisor::Recommendation>,
    /// How long the agent has watched the pool without a gap: the history its rules may judge.
    pub observed_seconds: Option<f64>,
    /// The pool_size the spec's `PerDatasetPoolManager` gives the pool's dataset.
    pub dataset_recommended_size: Option<u64>,
    /// How fast the database's WAL grew over the rate window, in bytes per second (negative
    /// when a checkpoint truncated it).
    pub wal_growth_bytes_per_second: Option<f64>,
    /// What `recommendation` was made from: the next sample's figures reuse it while these
    /// stay the same (an idle pool's, typically), rather than write its reasoning again.
    #[serde(skip)]
    pub recommended_from: Option<RecommendationInputs>,
}

/// The inputs of a pool's recommendation: what was observed, the wait target, the limit.
#[derive(Clone, Debug, PartialEq)]
pub struct RecommendationInputs {
    observed: advisor::Observed,
    target: advisor::WaitTarget,
    limit: Option<advisor::BackendLimit>,
}

pub use crate::advisor::UTILIZATION_TARGET;

impl PoolFigures {
    /// Derives the ratios that need only the latest sample; the store adds the rates.
    pub fn from_latest(latest: impl Into<Arc<PoolSample>>) -> PoolFigures {
        let latest = latest.into();
        let used = latest.used.map(|v| v as f64);
        let pool_size = latest.limits.pool_size.filter(|&s| s > 0).map(|s| s as f64);
        let utilization = used.zip(pool_size).map(|(u, s)| u / s);
        let overflow_utilization = match (used, pool_size, latest.limits.max_overflow) {
            (Some(u), Some(s), Some(o)) if o > 0 => Some((u - s).max(0.0) / o as f64),
            _ => None,
        };
        let rows = latest.database.as_ref().and_then(|d| d.rows);
        let dataset_recommended_size = latest
            .limits
            .pool_size
            .zip(rows)
            .map(|(size, rows)| pool_size_for_dataset(size, rows));
        PoolFigures {
            latest,
            utilization,
            overflow_utilization,
            dataset_recommended_size,
            ..PoolFigures::default()
        }
    }

    /// Sets the recommended pool_size from what is known (see [`advisor::recommend_pool`]), once
    /// the rates are in: the reasoning it writes is worth writing once a cycle, not twice. The
    /// pool's figures of the last sample (`last`) give theirs when it was made from the same
    /// inputs.
    pub fn recommend(
        &mut self,
        target: advisor::WaitTarget,
        limit: Option<&advisor::BackendLimit>,
        last: Option<&PoolFigures>,
    ) {
        let inputs = RecommendationInputs {
            observed: advisor::Observed {
                used: self.latest.used,
                pending: self.latest.pending,
                checkout_rate: self.checkouts_per_second,
                mean_hold_seconds: self.avg_usage_time_seconds,
            },
            target,
            limit: limit.cloned(),
        };
        self.recommendation = match last {
            Some(last) if last.recommended_from.as_ref() == Some(&inputs) => {
                last.recommendation.clone()
            }
            _ => advisor::recommend_pool(&inputs.observed, target, limit),
        };
        self.recommended_pool_size = self.recommendation.as_ref().map(|r| r.pool_size);
        self.recommended_from = Some(inputs);
    }
}

/// The spec's `PerDatasetPoolManager`: twice the pool above a billion rows, half of it (at
/// least 2) below a million.
pub fn pool_size_for_dataset(pool_size: u64, rows: u64) -> u64 {
    if rows > 1_000_000_000 {
        pool_size * 2
    } else if rows < 1_000_000 {
        (pool_size / 2).max(2)
    } else {
        pool_size
    }
}

/// The dataset an MDM database belongs to: MDM names a dataset's database `mdm_<dataset>`.
pub fn dataset_of_database(database: &str) -> Option<&str> {
    database.strip_prefix("mdm_").filter(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilization_needs_both_used_and_pool_size() {
        let mut sample = PoolSample {
            used: Some(5),
            ..PoolSample::default()
        };
        assert_eq!(PoolFigures::from_latest(sample.clone()).utilization, None);
        sample.limits.pool_size = Some(5);
        assert_eq!(
            PoolFigures::from_latest(sample.clone()).utilization,
            Some(1.0)
        );
        sample.used = None;
        assert_eq!(PoolFigures::from_latest(sample).utilization, None);
    }

    #[test]
    fn recommended_size_serves_used_plus_pending_at_80_percent() {
        let sample = |used, pending| {
            let mut figures = PoolFigures::from_latest(PoolSample {
                used: Some(used),
                pending,
                ..PoolSample::default()
            });
            figures.recommend(advisor::WaitTarget::default(), None, None);
            figures
        };
        assert_eq!(sample(5, Some(7)).recommended_pool_size, Some(15));
        assert_eq!(sample(8, None).recommended_pool_size, Some(10));
        assert_eq!(sample(0, Some(0)).recommended_pool_size, Some(1));
    }

    /// The last sample's recommendation is reused only when everything it was made from is
    /// the same: what was observed, the wait target and the limit.
    #[test]
    fn a_recommendation_is_reused_while_its_inputs_stay_the_same() {
        let figures = |used, checkout_rate: Option<f64>| {
            let mut f = PoolFigures::from_latest(PoolSample {
                used: Some(used),
                ..PoolSample::default()
            });
            f.checkouts_per_second = checkout_rate;
            f.avg_usage_time_seconds = checkout_rate.map(|_| 0.2);
            f
        };
        let target = advisor::WaitTarget::default();
        let mut last = figures(4, Some(10.0));
        last.recommend(target, None, None);
        let made = last.recommendation.clone().unwrap();
        assert_eq!(made.model, advisor::Model::ErlangC);
        // Marked, to tell a reused recommendation from one made again.
        last.recommendation.as_mut().unwrap().reasoning = "reused".into();
        let reasoning = |used, rate, target, limit: Option<&advisor::BackendLimit>| {
            let mut f = figures(used, rate);
            f.recommend(target, limit, Some(&last));
            f.recommendation.unwrap().reasoning
        };
        assert_eq!(reasoning(4, Some(10.0), target, None), "reused");
        assert_ne!(reasoning(5, Some(10.0), target, None), "reused");
        assert_ne!(reasoning(4, Some(10.5), target, None), "reused");
        assert_ne!(reasoning(4, None, target, None), "reused");
        let stricter = advisor::WaitTarget {
            p99_wait_seconds: 0.01,
        };
        assert_ne!(reasoning(4, Some(10.0), stricter, None), "reused");
        let limit = advisor::BackendLimit::Postgres {
            max_connections: 100,
            reserved_connections: 3,
            other_connections: 0,
        };
        assert_ne!(reasoning(4, Some(10.0), target, Some(&limit)), "reused");
    }

    #[test]
    fn overflow_utilization_counts_only_beyond_pool_size() {
        let sample = |used| PoolSample {
            used: Some(used),
            limits: PoolLimits {
                pool_size: Some(10),
                max_overflow: Some(4),
                ..PoolLimits::default()
            },
            ..PoolSample::default()
        };
        assert_eq!(
            PoolFigures::from_latest(sample(8)).overflow_utilization,
            Some(0.0)
        );
        assert_eq!(
            PoolFigures::from_latest(sample(12)).overflow_utilization,
            Some(0.5)
        );
    }

    #[test]
    fn headroom_subtracts_reserved_and_all_connections() {
        let server = ServerSample {
            max_connections: Some(100),
            reserved_connections: Some(3),
            connections: Some(40),
            ..ServerSample::default()
        };
        assert_eq!(server.headroom(), Some(57));
        assert_eq!(ServerSample::default().headroom(), None);
    }

    #[test]
    fn per_dataset_sizing_follows_the_spec() {
        let cases = [
            // (pool_size, rows, expected)
            (5, 150, 2),
            (3, 10, 2),
            (20, 999_999, 10),
            (5, 1_000_000, 5),
            (5, 1_000_000_000, 5),
            (5, 1_000_000_001, 10),
        ];
        for (size, rows, want) in cases {
            assert_eq!(pool_size_for_dataset(size, rows), want, "{size} {rows}");
        }
        let sample = PoolSample {
            limits: PoolLimits {
                pool_size: Some(5),
                ..PoolLimits::default()
            },
            database: Some(Box::new(DatabaseSample {
                rows: Some(150),
                ..DatabaseSample::default()
            })),
            ..PoolSample::default()
        };
        assert_eq!(
            PoolFigures::from_latest(sample).dataset_recommended_size,
            Some(2)
        );
    }

    #[test]
    fn dataset_comes_from_mdm_database_names_only() {
        assert_eq!(dataset_of_database("mdm_images"), Some("images"));
        assert_eq!(dataset_of_database("mdm_"), None);
        assert_eq!(dataset_of_database("postgres"), None);
    }
}
