//! `poolwatch demo`: the main job on the embedded default, with no service, package or root.
//! It makes MDM-like datasets in a temporary directory, drives them through undersized pools,
//! and runs the agent on those pools in the same process: the scheduler, the shipped rules (their
//! waits shortened), `/metrics`, the JSON API and the OTLP receiver on the usual listener, with
//! a live summary in the terminal. Ctrl-C stops it, exits 130 and removes its files.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bench::sqlite::Sqlite;
use crate::bench::workload::{BlockingBackend, Dataset};
use crate::config::web::WebConfig;
use crate::config::{Config, DEFAULT_LISTEN, SourceConfig};
use crate::demo::{self, DemoPool, Outcomes, RULE_WAIT_CAP};
use crate::exporters::http;
use crate::model::SourceKind;
use crate::pools::PoolSettings;
use crate::receiver::Receiver;
use crate::scheduler::{Agent, Options};

/// The agent's settings for the demo: a sample a second and rates over 10 s, so figures move
/// as the load does; nothing read from the environment.
const DEMO_CONFIG: &str = "sample_interval: 1s\nrate_window: 10s\nwindow: 5m\n";

/// Rows in each dataset's `train` table (a quarter as many in `test`).
const ROWS: i64 = 20_000;

/// Between two summaries when stdout is not a terminal (a terminal gets one per sample).
const PLAIN_EVERY: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// Address to serve /metrics, the JSON API and the OTLP receiver on.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// pool_size of each demo pool: deliberately too small for its users.
    #[arg(long, default_value_t = 2)]
    pub pool_size: u32,
    /// Threads using each pool at once.
    #[arg(long, default_value_t = 8)]
    pub users: u32,
    /// Mean milliseconds a user holds its connection per request (its work between
    /// statements).
    #[arg(long, default_value_t = 20.0)]
    pub hold_time_ms: f64,
}

/// The demo's directory, removed with everything in it when dropped.
struct Workspace(PathBuf);

impl Workspace {
    fn create() -> anyhow::Result<Workspace> {
        let path = std::env::temp_dir().join(format!("poolwatch-demo-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Workspace(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            eprintln!(
                "poolwatch demo: could not remove {}: {error}",
                self.0.display()
            );
        }
    }
}

/// The pools' settings: the spec's for the backend, but `pool_size` connections and no overflow.
fn undersized(spec: PoolSettings, pool_size: u32) -> PoolSettings {
    PoolSettings {
        pool_size,
        max_overflow: 0,
        ..spec
    }
}

pub fn demo(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    if args.pool_size == 0 || args.users == 0 {
        anyhow::bail!("--pool-size and --users must be at least 1");
    }
    if !(args.hold_time_ms.is_finite() && args.hold_time_ms >= 0.0) {
        anyhow::bail!("--hold-time-ms must be 0 or more");
    }
    let workspace = Workspace::create()?;
    let code = run(args, workspace.path());
    drop(workspace);
    code
}

/// The demo's pools as the agent's targets, and how to start their users.
struct Setup {
    config: Config,
    pools: Vec<Arc<dyn Outcomes>>,
    starts: Vec<Box<dyn FnOnce() -> Vec<JoinHandle<()>> + Send>>,
}

/// What every demo pool gets: its dataset, and users holding connections `hold` on average
/// until `stop`.
struct Load {
    dataset: Dataset,
    pool_size: u32,
    users: u32,
    hold: Duration,
    stop: Arc<AtomicBool>,
}

impl Setup {
    /// Creates `backend`'s dataset and an undersized pool named `pool` on it (the spec's
    /// `settings` otherwise), watched as the in-process target `target`.
    fn add<B: BlockingBackend>(
        &mut self,
        load: &Load,
        backend: B,
        (pool, target): (&str, &str),
        kind: SourceKind,
        settings: PoolSettings,
    ) -> anyhow::Result<()> {
        let settings = undersized(settings, load.pool_size);
        let pool = Arc::new(DemoPool::create(backend, pool, load.dataset, settings)?);
        self.config.targets.push(demo::target(target, kind, &pool));
        self.pools.push(pool.clone());
        let (stop, users, hold) = (Arc::clone(&load.stop), load.users, load.hold);
        self.starts.push(Box::new(move || {
            demo::start_users(&pool, users, hold, &stop)
        }));
        Ok(())
    }
}

/// Creates the datasets and their pools (no connection open yet) and the agent's config.
fn setup(args: &DemoArgs, dir: &Path, stop: Arc<AtomicBool>) -> anyhow::Result<Setup> {
    let load = Load {
        dataset: Dataset::new(ROWS, 1_000),
        pool_size: args.pool_size,
        users: args.users,
        hold: Duration::from_secs_f64(args.hold_time_ms / 1e3),
        stop,
    };
    println!(
        "poolwatch demo: creating MDM-like datasets in {} ({} train rows, {} test rows each)",
        dir.display(),
        load.dataset.train_rows,
        load.dataset.test_rows
    );
    let mut config = Config::from_yaml(Path::new("poolwatch demo"), DEMO_CONFIG, &|_| None)
        .map_err(|problems| anyhow::anyhow!("the demo's config: {problems}"))?;
    config.listen = args.listen;
    let mut setup = Setup {
        config,
        pools: Vec::new(),
        starts: Vec::new(),
    };
    let sqlite = Sqlite {
        path: dir.join("mdm_demo.sqlite"),
        keep: false,
    };
    let names = ("mdm_demo_sqlite", "demo-sqlite");
    setup.add(
        &load,
        sqlite,
        names,
        SourceKind::Sqlite,
        PoolSettings::sqlite(),
    )?;
    #[cfg(feature = "duckdb")]
    {
        let duckdb = crate::bench::duckdb::Duckdb::new(dir.join("mdm_demo.duckdb"), false);
        let names = ("mdm_demo_duckdb", "demo-duckdb");
        setup.add(
            &load,
            duckdb,
            names,
            SourceKind::Duckdb,
            PoolSettings::duckdb(),
        )?;
    }
    // The demo's pools first, then the receiver's built-in target.
    setup
        .config
        .targets
        .sort_by_key(|t| !matches!(t.source, SourceConfig::InProcess { .. }));
    Ok(setup)
}

fn run(args: &DemoArgs, dir: &Path) -> anyhow::Result<ExitCode> {
    crate::telemetry::install();
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let signal = runtime.block_on(async {
        // Ctrl-C is ours from the start, so that one during set-up removes the files too.
        let mut signal = std::pin::pin!(signals());
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {} (give --listen ADDR)", args.listen))?;
        let address = listener.local_addr()?;
        let creating = tokio::task::spawn_blocking({
            let (args, dir, stop) = (args.clone(), dir.to_path_buf(), Arc::clone(&stop));
            move || setup(&args, &dir, stop)
        });
        let mut creating = std::pin::pin!(creating);
        let Setup {
            config,
            pools,
            starts,
        } = tokio::select! {
            created = &mut creating => created.context("creating the datasets")??,
            signal = &mut signal => {
                // The files are removed once their writer is done with them.
                let _ = creating.await;
                return Ok(Some(signal));
            }
        };
        let receiver = Receiver::new(&config.otlp_receiver);
        let users: Vec<JoinHandle<()>> = starts.into_iter().flat_map(|start| start()).collect();
        println!(
            "workload: {} users per pool, pool_size {}, max_overflow 0 (deliberately too small), \
             a mixed MDM load (80% reads, 18% updates, 2% batch inserts)",
            args.users, args.pool_size
        );
        println!(
            "rules: the shipped ones, with every `for` and `keep_firing_for` capped at {} for \
             the demo",
            humantime::format_duration(RULE_WAIT_CAP)
        );
        println!(
            "serving: http://{address}/metrics, /api/v1/pools, /api/v1/alerts, /api/v1/health"
        );
        println!(
            "receiver: OTLP at http://{address}/v1/metrics; point the SQLAlchemy integration \
             at it with OTEL_EXPORTER_OTLP_ENDPOINT=http://{address}"
        );
        println!("Ctrl-C stops the demo and removes its files.\n");
        let agent = Agent::start(
            &config,
            Options {
                rules: demo::shortened_rules(RULE_WAIT_CAP),
                hold: true,
                receiver: Some(receiver.clone()),
                // Built in, not read from files: nothing the reload series count.
                loaded: Vec::new(),
            },
        );
        let (_web_updates, web) = tokio::sync::watch::channel(Arc::new(WebConfig::default()));
        let outcome = tokio::select! {
            served = http::serve(listener, agent.subscribe(), Some(receiver), web) => {
                served.context("serving HTTP").map(|()| None)
            }
            _ = live_summary(&agent) => Ok(None),
            signal = &mut signal => Ok(Some(signal)),
        };
        stop.store(true, Ordering::Relaxed);
        for user in users {
            let _ = user.join();
        }
        println!();
        for pool in &pools {
            let (completed, failed) = pool.outcomes();
            println!(
                "{}: {completed} requests completed, {failed} failed",
                pool.pool_name()
            );
        }
        println!("stopped; removing {}", dir.display());
        outcome
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(match signal {
        Some(Signal::Interrupt) => ExitCode::from(130),
        Some(Signal::Terminate) => ExitCode::from(143),
        None => ExitCode::SUCCESS,
    })
}

/// Redraws the summary in place at every published state on a terminal; prints it every
/// [`PLAIN_EVERY`] otherwise (a pipe or a file gets whole, plain blocks).
async fn live_summary(agent: &Agent) {
    let mut updates = agent.subscribe();
    let tty = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut drawn = 0;
    let mut last_plain: Option<Instant> = None;
    while updates.changed().await.is_ok() {
        let published = updates.borrow_and_update().clone();
        let text = format!(
            "poolwatch demo, {} s in\n{}",
            started.elapsed().as_secs(),
            demo::summary(&published)
        );
        let mut out = std::io::stdout().lock();
        if tty {
            if drawn > 0 {
                // Up to the first line drawn, then clear to the end of the screen.
                let _ = write!(out, "\x1b[{drawn}A\x1b[J");
            }
            drawn = text.lines().count();
            let _ = write!(out, "{text}");
        } else if last_plain.is_none_or(|at| at.elapsed() >= PLAIN_EVERY) {
            last_plain = Some(Instant::now());
            let _ = writeln!(out, "{text}");
        }
        let _ = out.flush();
    }
}

enum Signal {
    Interrupt,
    Terminate,
}

async fn signals() -> Signal {
    let ctrl_c = tokio::signal::ctrl_c();
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = ctrl_c.await;
        return Signal::Interrupt;
    };
    tokio::select! {
        _ = ctrl_c => Signal::Interrupt,
        _ = term.recv() => Signal::Terminate,
    }
}
