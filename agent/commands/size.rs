//! `poolwatch size`: the spec's two sizing formulas and the Erlang C table with its
//! recommendation, for a workload described on the command line.

use std::fmt::Write as _;
use std::process::ExitCode;

use serde::Serialize;

use crate::advisor::spec::{BasicFormula, LittlesLaw};
use crate::advisor::{self, BackendLimit, Prediction, Recommendation, WaitTarget, Workload};

/// How `size` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Clone, Debug, clap::Args)]
pub struct SizeArgs {
    /// CPU cores of the service (the spec's number_of_workers unless --workers).
    #[arg(long)]
    pub cpu_cores: u32,
    /// Users expected at once.
    #[arg(long)]
    pub concurrent_users: u32,
    /// Mean time a query takes, in milliseconds.
    #[arg(long)]
    pub avg_query_time_ms: f64,
    /// The response time to meet, in milliseconds.
    #[arg(long)]
    pub target_response_time_ms: f64,
    /// Time per request spent on the connection besides the query, in milliseconds.
    #[arg(long, default_value_t = 50.0)]
    pub connection_overhead_ms: f64,
    /// Basic formula: number of workers (default: --cpu-cores).
    #[arg(long)]
    pub workers: Option<u64>,
    /// Basic formula: average concurrent operations per worker.
    #[arg(long, default_value_t = 1)]
    pub connections_per_worker: u64,
    /// Basic formula: buffer for management operations (the spec: typically 2–5).
    #[arg(long, default_value_t = 3)]
    pub overhead: u64,
    /// Erlang C: checkouts per second. Default: each user sends one request per target
    /// response time, concurrent_users × 1000 / target_response_time_ms.
    #[arg(long)]
    pub arrival_rate: Option<f64>,
    /// Erlang C: the p99 wait for a connection to stay under, in milliseconds.
    #[arg(long, default_value_t = 100.0)]
    pub target_p99_wait_ms: f64,
    /// The most connections the backend can give this pool (PostgreSQL: max_connections −
    /// superuser_reserved_connections − other pools; SQLite writers: 1).
    #[arg(long)]
    pub limit: Option<u64>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Serialize)]
struct Inputs {
    cpu_cores: u32,
    concurrent_users: u32,
    avg_query_time_ms: f64,
    target_response_time_ms: f64,
    connection_overhead_ms: f64,
}

#[derive(Debug, Serialize)]
struct ErlangC {
    arrival_rate: f64,
    /// Where the arrival rate came from.
    arrival_rate_from: &'static str,
    /// avg_query_time_ms + connection_overhead_ms, the spec's effective time.
    mean_hold_seconds: f64,
    offered_load: f64,
    target_p99_wait_seconds: f64,
    candidates: Vec<Prediction>,
    recommendation: Recommendation,
}

#[derive(Debug, Serialize)]
struct Sizing {
    inputs: Inputs,
    basic_formula: BasicFormula,
    /// The spec's `calculate_optimal_pool_size`.
    pool_size: i64,
    erlang_c: ErlangC,
}

/// The most rows of the Erlang C table: those just below and above the recommendation.
const TABLE_ROWS: usize = 20;

fn sizing(args: &SizeArgs) -> anyhow::Result<Sizing> {
    let littles_law = LittlesLaw {
        cpu_cores: args.cpu_cores,
        expected_concurrent_users: args.concurrent_users,
        avg_query_time_ms: args.avg_query_time_ms,
        target_response_time_ms: args.target_response_time_ms,
        connection_overhead_ms: args.connection_overhead_ms,
    };
    let pool_size = littles_law.pool_size()?;
    let basic_formula = BasicFormula::new(
        args.workers.unwrap_or(u64::from(args.cpu_cores)),
        args.connections_per_worker,
        args.overhead,
    );
    let (arrival_rate, arrival_rate_from) = match args.arrival_rate {
        Some(rate) => (rate, "--arrival-rate"),
        None if args.target_response_time_ms > 0.0 => (
            f64::from(args.concurrent_users) * 1000.0 / args.target_response_time_ms,
            "concurrent_users × 1000 / target_response_time_ms",
        ),
        None => anyhow::bail!(
            "--target-response-time-ms must be above 0 to derive an arrival rate (or give \
             --arrival-rate)"
        ),
    };
    let hold = (args.avg_query_time_ms + args.connection_overhead_ms) / 1000.0;
    let workload = Workload::new(arrival_rate, hold)?;
    let target = WaitTarget {
        p99_wait_seconds: args.target_p99_wait_ms / 1000.0,
    };
    let limit = args.limit.map(|limit| BackendLimit::Connections { limit });
    let recommendation = advisor::recommend(workload, target, limit.as_ref())?;
    let last = recommendation
        .pool_size
        .max(u64::try_from(pool_size).unwrap_or(0))
        + 2;
    let first = last.saturating_sub(TABLE_ROWS as u64 - 1).max(1);
    let candidates = advisor::erlang::Candidates::new(workload)
        .skip(first as usize - 1)
        .take((last - first + 1) as usize)
        .collect();
    Ok(Sizing {
        inputs: Inputs {
            cpu_cores: args.cpu_cores,
            concurrent_users: args.concurrent_users,
            avg_query_time_ms: args.avg_query_time_ms,
            target_response_time_ms: args.target_response_time_ms,
            connection_overhead_ms: args.connection_overhead_ms,
        },
        basic_formula,
        pool_size,
        erlang_c: ErlangC {
            arrival_rate,
            arrival_rate_from,
            mean_hold_seconds: hold,
            offered_load: workload.offered_load(),
            target_p99_wait_seconds: target.p99_wait_seconds,
            candidates,
            recommendation,
        },
    })
}

fn ms(v: Option<f64>) -> String {
    v.map_or("unbounded".into(), |v| format!("{:.1} ms", v * 1000.0))
}

fn table(s: &Sizing) -> String {
    let mut out = String::new();
    let b = &s.basic_formula;
    let _ = writeln!(
        out,
        "Basic formula         pool_size = {} workers × {} connections per worker + {} overhead = {}",
        b.workers, b.connections_per_worker, b.overhead, b.pool_size
    );
    let _ = writeln!(
        out,
        "Little's law (spec)   pool_size = {}   (calculate_optimal_pool_size)",
        s.pool_size
    );
    let e = &s.erlang_c;
    let _ = writeln!(
        out,
        "Erlang C (M/M/c)      {:.1} checkouts/s ({}) × {:.1} ms held = {:.2} connections busy on average\n",
        e.arrival_rate,
        e.arrival_rate_from,
        e.mean_hold_seconds * 1000.0,
        e.offered_load
    );
    let _ = writeln!(
        out,
        "{:>9}  {:>11}  {:>7}  {:>12}  {:>12}",
        "POOL_SIZE", "UTILIZATION", "P(WAIT)", "MEAN WAIT", "P99 WAIT"
    );
    for p in &e.candidates {
        let mark = if p.pool_size == e.recommendation.pool_size {
            "  ← recommended"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{:>9}  {:>10.0}%  {:>6.1}%  {:>12}  {:>12}{mark}",
            p.pool_size,
            p.utilization * 100.0,
            p.wait_probability * 100.0,
            ms(p.mean_wait_seconds),
            ms(p.p99_wait_seconds)
        );
    }
    let _ = writeln!(
        out,
        "\nRecommended pool_size {} ({}): {}",
        e.recommendation.pool_size,
        e.recommendation.model.as_str(),
        e.recommendation.reasoning
    );
    out
}

pub fn size(args: &SizeArgs) -> anyhow::Result<ExitCode> {
    let sizing = sizing(args)?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&sizing)?),
        Format::Table => print!("{}", table(&sizing)),
    }
    Ok(ExitCode::SUCCESS)
}
