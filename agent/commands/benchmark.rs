//! `poolwatch benchmark`: the spec's performance testing script. Creates an MDM-like dataset,
//! runs the workload through an instrumented pool at each pool size and writes one JSON report
//! per size. Ctrl-C ends the current run, writes its report marked interrupted, and cleans up.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::bench::postgres::Postgres;
use crate::bench::report::{Report, Settings};
use crate::bench::sqlite::Sqlite;
use crate::bench::workload::{Backend, BenchError, Dataset, Operation};
use crate::bench::{RunArgs, run_tasks, run_threads};
use crate::config::PASSWORD_ENV;
use crate::pools::PoolSettings;
use crate::secret::Connection;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    Sqlite,
    /// Needs a build with the `duckdb` feature (the default).
    Duckdb,
    Postgres,
}

#[derive(Clone, Debug, clap::Args)]
pub struct BenchmarkArgs {
    /// The database to drive.
    #[arg(long, value_enum, default_value_t = BackendKind::Sqlite)]
    pub backend: BackendKind,
    /// Pool sizes to test, one run each (default: the spec's pool_size for the backend).
    #[arg(long, env = "MDM_POOL_SIZE", value_delimiter = ',')]
    pub pool_size: Vec<u32>,
    /// max_overflow (default: the spec's for the backend: sqlite 0, postgres 10).
    #[arg(long)]
    pub max_overflow: Option<u32>,
    /// Seconds a caller waits for a connection before failing (default: the spec's, 30).
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Validate connections on checkout (default: the spec's, true).
    #[arg(long)]
    pub pre_ping: Option<bool>,
    /// Seconds after which connections are replaced (default: the spec's, 3600).
    #[arg(long)]
    pub recycle: Option<f64>,
    /// Users sending requests at once.
    #[arg(long, default_value_t = 100)]
    pub concurrent_users: u32,
    /// Seconds per pool size (or a duration such as 10s, 2m).
    #[arg(long, default_value = "300", value_parser = parse_seconds)]
    pub duration: f64,
    #[arg(long, value_enum, default_value_t = Operation::Mixed)]
    pub operation: Operation,
    /// Report file per pool size; `{pool_size}` is replaced by the size.
    #[arg(long, default_value = "pool_test_{pool_size}.json")]
    pub report: String,
    /// Open loop: requests arrive at random (Poisson) at this rate per second, whether or not
    /// earlier ones finished. Without it, each user sends its next request when the last one
    /// is done (closed loop, as the spec's script).
    #[arg(long)]
    pub arrival_rate: Option<f64>,
    /// Mean extra milliseconds each operation holds its connection (exponentially
    /// distributed), standing for application work inside the transaction.
    #[arg(long, default_value_t = 0.0)]
    pub hold_time_ms: f64,
    /// Closed loop: mean milliseconds a user pauses between requests (exponential).
    #[arg(long, default_value_t = 0.0)]
    pub think_time_ms: f64,
    /// Rows in the train table (test gets a quarter).
    #[arg(long, default_value_t = 100_000)]
    pub rows: i64,
    /// Rows per batch_insert (the spec's batch_size).
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// PostgreSQL: the database (`postgres://user@host:port/db`); without a password in it,
    /// PGPASSWORD is used, as by libpq.
    #[arg(long, default_value = "postgres://mdm@127.0.0.1:55432/mdm_demo")]
    pub url: String,
    /// PostgreSQL: the schema the dataset's tables are created in (and dropped from at the
    /// end).
    #[arg(long, default_value = "poolwatch_bench")]
    pub dataset: String,
    /// SQLite, DuckDB: the database file (created; kept afterwards). Default: a temporary
    /// file, removed at the end.
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// Seed of the workload's random choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    let seconds = match text.parse::<f64>() {
        Ok(s) => s,
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("{text:?} is neither seconds nor a duration: {e}"))?
            .as_secs_f64(),
    };
    if seconds.is_finite() && seconds > 0.0 {
        Ok(seconds)
    } else {
        Err("the duration must be above 0".into())
    }
}

fn report_path(template: &str, pool_size: u32, runs: usize) -> anyhow::Result<PathBuf> {
    if runs > 1 && !template.contains("{pool_size}") {
        anyhow::bail!(
            "--report {template:?} has no {{pool_size}}: every pool size would write the same file"
        );
    }
    Ok(PathBuf::from(
        template.replace("{pool_size}", &pool_size.to_string()),
    ))
}

/// Sets `flag` on Ctrl-C, from a thread of its own so the workers stay plain threads.
fn on_interrupt(flag: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ninterrupted: finishing the current run and cleaning up");
                flag.store(true, Ordering::Relaxed);
            }
        });
    });
}

pub fn benchmark(args: &BenchmarkArgs) -> anyhow::Result<ExitCode> {
    if let Some(rate) = args.arrival_rate
        && !(rate.is_finite() && rate > 0.0)
    {
        anyhow::bail!("--arrival-rate must be above 0");
    }
    for (flag, value) in [
        ("--hold-time-ms", args.hold_time_ms),
        ("--think-time-ms", args.think_time_ms),
    ] {
        if !(value.is_finite() && value >= 0.0) {
            anyhow::bail!("{flag} must be 0 or more");
        }
    }
    if args.concurrent_users == 0 {
        anyhow::bail!("--concurrent-users must be at least 1");
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    on_interrupt(Arc::clone(&interrupted));
    match args.backend {
        BackendKind::Sqlite => {
            let (path, keep) = database_file(args, "mdm_benchmark.sqlite")?;
            let backend = Sqlite { path, keep };
            let result = drive(
                &backend,
                run_threads,
                args,
                PoolSettings::sqlite(),
                &interrupted,
            );
            remove_temporary_dir(&backend.path, keep);
            result
        }
        #[cfg(feature = "duckdb")]
        BackendKind::Duckdb => {
            let (path, keep) = database_file(args, "mdm_benchmark.duckdb")?;
            let backend = crate::bench::duckdb::Duckdb::new(path, keep);
            let result = drive(
                &backend,
                run_threads,
                args,
                PoolSettings::duckdb(),
                &interrupted,
            );
            remove_temporary_dir(&backend.path, keep);
            result
        }
        #[cfg(not(feature = "duckdb"))]
        BackendKind::Duckdb => {
            anyhow::bail!("--backend duckdb: this poolwatch was built without the duckdb feature")
        }
        BackendKind::Postgres => {
            let mut endpoint =
                Connection::parse(&args.url).map_err(|e| anyhow::anyhow!("--url: {e}"))?;
            if let (false, Ok(password)) = (endpoint.has_password(), std::env::var(PASSWORD_ENV)) {
                endpoint.set_password(&password);
            }
            let backend = Postgres::new(endpoint, &args.dataset, args.batch_size)?;
            drive(
                &backend,
                run_tasks,
                args,
                PoolSettings::postgres(),
                &interrupted,
            )
        }
    }
}

/// The database file of a file backend: `--path` (kept), else `name` in a directory of its own
/// under the temporary directory (removed at the end).
fn database_file(args: &BenchmarkArgs, name: &str) -> anyhow::Result<(PathBuf, bool)> {
    if let Some(path) = &args.path {
        return Ok((path.clone(), true));
    }
    let dir = std::env::temp_dir().join(format!("poolwatch-benchmark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok((dir.join(name), false))
}

fn remove_temporary_dir(path: &Path, keep: bool) {
    if !keep && let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir(dir);
    }
}

fn settings_for(args: &BenchmarkArgs, backend: &impl Backend, pool: PoolSettings) -> Settings {
    Settings {
        backend: backend.name().to_string(),
        location: backend.location(),
        pool,
        concurrent_users: args.concurrent_users,
        duration_seconds: args.duration,
        operation: args.operation,
        arrival_rate: args.arrival_rate,
        hold_time_ms: args.hold_time_ms,
        think_time_ms: args.think_time_ms,
        rows: args.rows,
        batch_size: args.batch_size,
        seed: args.seed,
    }
}

/// How a backend runs one pool size: [`crate::bench::run_threads`] or
/// [`crate::bench::run_tasks`].
type RunOne<B> = fn(&B, &RunArgs<'_>) -> Result<Report, BenchError>;

fn drive<B: Backend>(
    backend: &B,
    run: RunOne<B>,
    args: &BenchmarkArgs,
    defaults: PoolSettings,
    interrupted: &AtomicBool,
) -> anyhow::Result<ExitCode> {
    let sizes = if args.pool_size.is_empty() {
        vec![defaults.pool_size]
    } else {
        args.pool_size.clone()
    };
    if sizes.contains(&0) {
        anyhow::bail!("--pool-size: every size must be at least 1");
    }
    let paths: Vec<PathBuf> = sizes
        .iter()
        .map(|&size| report_path(&args.report, size, sizes.len()))
        .collect::<anyhow::Result<_>>()?;
    let seconds = |v: Option<f64>, default: Duration| -> anyhow::Result<Duration> {
        match v {
            None => Ok(default),
            Some(v) => Duration::try_from_secs_f64(v).map_err(|e| anyhow::anyhow!("{v}: {e}")),
        }
    };
    let base = PoolSettings {
        max_overflow: args.max_overflow.unwrap_or(defaults.max_overflow),
        timeout: seconds(args.timeout, defaults.timeout).context("--timeout")?,
        pre_ping: args.pre_ping.unwrap_or(defaults.pre_ping),
        recycle: match args.recycle {
            Some(_) => Some(seconds(args.recycle, Duration::ZERO).context("--recycle")?),
            None => defaults.recycle,
        },
        ..defaults
    };
    let dataset = Dataset::new(args.rows, args.batch_size);
    eprintln!(
        "creating the dataset in {}: {} train rows, {} test rows, batches of {}",
        backend.location(),
        dataset.train_rows,
        dataset.test_rows,
        dataset.batch_size
    );
    backend.create(&dataset)?;
    let next_test_id = AtomicI64::new(dataset.test_rows + 1);
    let mut outcome = Ok(());
    for (size, path) in sizes.iter().zip(&paths) {
        if interrupted.load(Ordering::Relaxed) {
            break;
        }
        let settings = settings_for(
            args,
            backend,
            PoolSettings {
                pool_size: *size,
                ..base
            },
        );
        let progress = ProgressBar::new((args.duration * 1000.0) as u64);
        progress.set_style(
            ProgressStyle::with_template("{prefix:>14} [{bar:30}] {elapsed:>4}/{duration} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        progress.set_prefix(format!("pool_size={size}"));
        let announce = || {
            progress.suspend(|| {
                eprintln!(
                    "pool_size={size}: running {} for {} s",
                    args.operation, args.duration
                );
            });
        };
        let run_args = RunArgs {
            settings: &settings,
            next_test_id: &next_test_id,
            interrupted,
            progress: &progress,
            warm: &announce,
        };
        let report = match run(backend, &run_args) {
            Ok(report) => report,
            Err(e) => {
                progress.abandon();
                outcome = Err(e);
                break;
            }
        };
        progress.finish_and_clear();
        write_report(path, &report)?;
        eprintln!(
            "pool_size={size}: {:.0} ops/s, latency p99 {:.2} ms, wait mean {:.3} ms p99 {:.2} ms, \
             utilization {:.0}%, {} errors → {}",
            report.throughput_per_second,
            report.latency_seconds.p99 * 1e3,
            report.wait_seconds.mean * 1e3,
            report.wait_seconds.p99 * 1e3,
            report.pool_metrics.pool_utilization * 100.0,
            report.errors,
            path.display()
        );
    }
    if let Err(e) = backend.drop_dataset() {
        eprintln!("cleaning up: {e}");
    }
    outcome?;
    Ok(if interrupted.load(Ordering::Relaxed) {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

fn write_report(path: &Path, report: &crate::bench::report::Report) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}
