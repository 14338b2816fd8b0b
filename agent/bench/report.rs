//! What one benchmark run writes (`pool_test_{pool_size}.json`) and `analyze-benchmarks` reads:
//! the run's settings, throughput, latency and wait percentiles, and the spec's `PoolMetrics`.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::workload::Operation;
use crate::pools::PoolSettings;

/// The settings of a run, exactly as given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub backend: String,
    /// The database file, or the server and schema (never a password).
    pub location: String,
    pub pool: PoolSettings,
    pub concurrent_users: u32,
    pub duration_seconds: f64,
    pub operation: Operation,
    /// Open loop: Poisson arrivals at this rate per second. Absent: each user sends its next
    /// request when the last one finished (closed loop, the spec's script).
    pub arrival_rate: Option<f64>,
    /// Mean extra time each operation holds its connection (exponential), simulating work the
    /// application does inside the transaction.
    pub hold_time_ms: f64,
    /// Closed loop: mean pause of a user between requests (exponential).
    pub think_time_ms: f64,
    pub rows: i64,
    pub batch_size: usize,
    pub seed: u64,
}

/// A distribution in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    /// Exact mean (from the sum, not the histogram).
    pub mean: f64,
    /// Exact standard deviation.
    pub stddev: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of nanoseconds and the exact sum of its values and of their squares.
    pub fn from_histogram(
        histogram: &Histogram<u64>,
        sum_seconds: f64,
        sum_squares: f64,
    ) -> Percentiles {
        let count = histogram.len();
        if count == 0 {
            return Percentiles::default();
        }
        let at = |q: f64| histogram.value_at_quantile(q) as f64 / 1e9;
        let mean = sum_seconds / count as f64;
        Percentiles {
            count,
            mean,
            stddev: (sum_squares / count as f64 - mean * mean).max(0.0).sqrt(),
            p50: at(0.50),
            p90: at(0.90),
            p95: at(0.95),
            p99: at(0.99),
            p999: at(0.999),
            max: histogram.max() as f64 / 1e9,
        }
    }
}

/// The spec's `PoolMetrics` over the run. Gauges are time averages: active and pending are
/// exact (total hold and wait time / elapsed, by Little's law), idle is sampled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolMetrics {
    pub active_connections: f64,
    pub idle_connections: f64,
    pub pending_requests: f64,
    /// Seconds to acquire a connection, on average.
    pub avg_wait_time: f64,
    /// Seconds a connection was held, on average.
    pub avg_usage_time: f64,
    pub connection_errors: u64,
    pub timeout_count: u64,
    /// active / pool_size.
    pub pool_utilization: f64,
    /// Connections beyond pool_size / max_overflow, averaged over samples; absent without
    /// overflow.
    pub overflow_utilization: Option<f64>,
    /// Connections created plus destroyed per minute.
    pub connection_churn: f64,
    pub peak_active_connections: u64,
    pub peak_pending_requests: u64,
    pub peak_open_connections: u64,
}

/// Hand-offs of connections to waiting callers over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Handoffs {
    pub count: u64,
    pub total_seconds: f64,
}

/// Figures of one statement kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatementFigures {
    pub count: u64,
    pub errors: u64,
    pub latency_seconds: Percentiles,
}

/// One run at one pool size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub poolwatch_version: String,
    pub settings: Settings,
    pub started_at_unix_seconds: f64,
    /// Wall time of the measured period.
    pub elapsed_seconds: f64,
    /// Ctrl-C ended the run early.
    pub interrupted: bool,
    /// Operations completed without error.
    pub operations: u64,
    pub errors: u64,
    pub throughput_per_second: f64,
    /// Open loop: arrivals per second actually generated.
    pub arrival_rate_per_second: Option<f64>,
    /// From the request's arrival (open loop) or start (closed loop) to its end.
    pub latency_seconds: Percentiles,
    /// Time to check a connection out of the pool.
    pub wait_seconds: Percentiles,
    /// Time a connection was held, checkout to return.
    pub hold_seconds: Percentiles,
    /// Connections handed from a returning caller to a waiting one, and how long each took to
    /// reach the waiter (check-in to checkout). Absent in reports of older versions.
    #[serde(default)]
    pub handoffs: Option<Handoffs>,
    /// Open loop: time an arrival waited for a free user before it asked the pool. Near zero
    /// unless the load generator itself is the bottleneck.
    pub generator_delay_seconds: Option<Percentiles>,
    /// Open loop: squared coefficient of variation of the gaps between requests as they reached
    /// the pool. Poisson arrivals give 1; above it, arrivals bunched (Erlang C then predicts
    /// too little waiting).
    pub arrival_scv: Option<f64>,
    pub by_statement: BTreeMap<String, StatementFigures>,
    pub pool_metrics: PoolMetrics,
    /// Errors by message (first 5 kinds), to say what failed.
    pub error_messages: BTreeMap<String, u64>,
}
