//! The spec's performance test (`benchmark`) and its report (`analyze-benchmarks`): users
//! driving an MDM-like workload through an instrumented pool, closed loop as in the spec's
//! script or open loop (Poisson arrivals) to compare with the queueing model.

pub mod analyze;
#[cfg(feature = "duckdb")]
pub mod duckdb;
pub mod html;
pub mod postgres;
pub mod report;
pub mod sqlite;
pub mod workload;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::model::Labels;
use crate::pools::postgres::PostgresManager;
use crate::pools::{AsyncInstrumentedPool, CountedPool, InstrumentedPool, Peaks, Stats};
use postgres::Postgres;
use report::{Handoffs, Percentiles, PoolMetrics, Report, Settings, StatementFigures};
use workload::{Backend, BenchError, BlockingBackend, Dataset, STATEMENTS, Statement};

/// A sample of the pool every this often, for idle, overflow and peaks.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// Distinct error messages a report keeps.
const ERROR_KINDS: usize = 5;

/// Sleeps of this thread end within ~1 µs of their deadline instead of Linux's default 50 µs
/// timer slack, which would add a constant to every simulated hold and arrival gap.
fn precise_sleeps() {
    #[cfg(target_os = "linux")]
    if let Err(error) = nix::sys::prctl::set_timerslack(1) {
        tracing::debug!(%error, "timer slack unchanged: sleeps end up to 50 µs late");
    }
}

/// An exponentially distributed duration with this mean (zero stays zero).
fn exponential(rng: &mut impl Rng, mean: Duration) -> Duration {
    if mean.is_zero() {
        return Duration::ZERO;
    }
    let u: f64 = rng.random();
    mean.mul_f64(-(1.0 - u).ln())
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 1 h at 2 significant digits: 1% resolution in ~30 KiB per histogram.
    Histogram::new_with_bounds(1_000, 3_600_000_000_000, 2).expect("valid histogram bounds")
}

/// A distribution being recorded: its histogram (ns) and exact sum.
struct Recorder {
    histogram: Histogram<u64>,
    sum_seconds: f64,
    sum_squares: f64,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            histogram: histogram(),
            sum_seconds: 0.0,
            sum_squares: 0.0,
        }
    }

    fn record(&mut self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(nanos);
        self.sum_seconds += d.as_secs_f64();
        self.sum_squares += d.as_secs_f64() * d.as_secs_f64();
    }

    fn merge(&mut self, other: &Recorder) {
        let _ = self.histogram.add(&other.histogram);
        self.sum_seconds += other.sum_seconds;
        self.sum_squares += other.sum_squares;
    }

    fn percentiles(&self) -> Percentiles {
        Percentiles::from_histogram(&self.histogram, self.sum_seconds, self.sum_squares)
    }
}

/// What one user recorded; merged into the report at the end.
struct Tally {
    latency: Recorder,
    wait: Recorder,
    hold: Recorder,
    delay: Recorder,
    statements: Vec<(Recorder, u64)>,
    /// When each request asked the pool, for the variability of arrivals as the pool saw them.
    asks: Vec<Instant>,
    ok: u64,
    errors: u64,
    messages: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: Recorder::new(),
            wait: Recorder::new(),
            hold: Recorder::new(),
            delay: Recorder::new(),
            statements: STATEMENTS.iter().map(|_| (Recorder::new(), 0)).collect(),
            asks: Vec::new(),
            ok: 0,
            errors: 0,
            messages: BTreeMap::new(),
        }
    }

    fn index(statement: &Statement) -> usize {
        STATEMENTS
            .iter()
            .position(|s| *s == statement.name())
            .unwrap_or(0)
    }

    fn error(&mut self, statement: &Statement, message: String) {
        self.errors += 1;
        self.statements[Tally::index(statement)].1 += 1;
        if self.messages.len() < ERROR_KINDS || self.messages.contains_key(&message) {
            *self.messages.entry(message).or_default() += 1;
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latency.merge(&other.latency);
        self.wait.merge(&other.wait);
        self.hold.merge(&other.hold);
        self.delay.merge(&other.delay);
        for (mine, theirs) in self.statements.iter_mut().zip(&other.statements) {
            mine.0.merge(&theirs.0);
            mine.1 += theirs.1;
        }
        self.asks.extend(other.asks);
        self.ok += other.ok;
        self.errors += other.errors;
        for (message, n) in other.messages {
            if self.messages.len() < ERROR_KINDS || self.messages.contains_key(&message) {
                *self.messages.entry(message).or_default() += n;
            }
        }
    }
}

/// The pool as sampled during the run (its peaks are kept exactly by the pool itself).
#[derive(Default)]
struct Samples {
    count: u64,
    idle_sum: f64,
    overflow_sum: f64,
}

/// What a run at one pool size is given.
#[derive(Clone, Copy)]
pub struct RunArgs<'a> {
    pub settings: &'a Settings,
    /// Where the ids of inserted test rows go on from: the caller starts it past the created
    /// test rows and keeps it across the runs on one dataset.
    pub next_test_id: &'a AtomicI64,
    /// Set by Ctrl-C: the run ends early, its report marked interrupted.
    pub interrupted: &'a AtomicBool,
    pub progress: &'a ProgressBar,
    /// Called once the pool is warm, before the measurement starts.
    pub warm: &'a (dyn Fn() + Sync),
}

/// What the users of one run share, whether they are threads or tasks.
struct Run<'a> {
    args: RunArgs<'a>,
    dataset: Dataset,
    completed: AtomicU64,
    done: AtomicBool,
}

impl<'a> Run<'a> {
    fn new(args: &RunArgs<'a>) -> Run<'a> {
        Run {
            args: *args,
            dataset: Dataset::new(args.settings.rows, args.settings.batch_size),
            completed: AtomicU64::new(0),
            done: AtomicBool::new(false),
        }
    }

    fn stopping(&self) -> bool {
        self.done.load(Ordering::Relaxed) || self.args.interrupted.load(Ordering::Relaxed)
    }

    fn rng(&self, user: u64) -> SmallRng {
        SmallRng::seed_from_u64(
            self.args
                .settings
                .seed
                .wrapping_add(user.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        )
    }

    /// A user's pause before its next request (closed loop).
    fn think(&self, rng: &mut SmallRng) -> Duration {
        exponential(
            rng,
            Duration::from_secs_f64(self.args.settings.think_time_ms / 1e3),
        )
    }

    /// A request's statement, and the instant it asks the pool for a connection.
    fn ask(&self, tally: &mut Tally, rng: &mut SmallRng) -> (Statement, Instant) {
        let statement = self
            .dataset
            .next(self.args.settings.operation, rng, |count| {
                self.args
                    .next_test_id
                    .fetch_add(count as i64, Ordering::Relaxed)
            });
        let asked = Instant::now();
        if self.args.settings.arrival_rate.is_some() {
            tally.asks.push(asked);
        }
        (statement, asked)
    }

    /// The work the application does holding the connection, after the statement.
    fn work(&self, rng: &mut SmallRng) -> Duration {
        exponential(
            rng,
            Duration::from_secs_f64(self.args.settings.hold_time_ms / 1e3),
        )
    }

    /// A request that ended at `end` (its connection back in the pool): `arrived` is when it
    /// came into being (its latency starts there), `got` when it had a connection.
    fn finish(
        &self,
        tally: &mut Tally,
        statement: &Statement,
        (arrived, got, end): (Instant, Instant, Instant),
        result: Result<(), BenchError>,
    ) {
        tally.hold.record(end - got);
        match result {
            Ok(()) => {
                tally.ok += 1;
                tally.latency.record(end - arrived);
                tally.statements[Tally::index(statement)]
                    .0
                    .record(end - arrived);
                self.completed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tally.error(statement, e.to_string()),
        }
    }
}

/// A run's users as threads, one each: for drivers that block (SQLite, DuckDB).
struct Threads<'a, B: BlockingBackend> {
    run: &'a Run<'a>,
    backend: &'a B,
    pool: &'a InstrumentedPool<B::Manager>,
}

impl<B: BlockingBackend> Threads<'_, B> {
    /// One request: its statement through a pooled connection.
    fn request(&self, tally: &mut Tally, rng: &mut SmallRng, arrived: Instant) {
        let (statement, asked) = self.run.ask(tally, rng);
        let mut conn = match self.pool.get() {
            Ok(conn) => conn,
            Err(e) => return tally.error(&statement, e.to_string()),
        };
        let got = Instant::now();
        tally.wait.record(got - asked);
        let result = self.backend.execute(&mut conn, &statement);
        let work = self.run.work(rng);
        if !work.is_zero() {
            thread::sleep(work);
        }
        drop(conn);
        let end = Instant::now();
        self.run
            .finish(tally, &statement, (arrived, got, end), result);
    }

    /// A user of the closed loop: the next request when the last one is done (after thinking).
    fn closed_user(&self, user: u64) -> Tally {
        precise_sleeps();
        let mut tally = Tally::new();
        let mut rng = self.run.rng(user);
        while !self.run.stopping() {
            let pause = self.run.think(&mut rng);
            if !pause.is_zero() {
                thread::sleep(pause);
            }
            self.request(&mut tally, &mut rng, Instant::now());
        }
        tally
    }

    /// A user of the open loop: takes the next arrival, whenever it came.
    fn open_user(&self, user: u64, arrivals: &Mutex<mpsc::Receiver<Instant>>) -> Tally {
        precise_sleeps();
        let mut tally = Tally::new();
        let mut rng = self.run.rng(user);
        loop {
            let next = arrivals.lock().unwrap_or_else(|e| e.into_inner()).recv();
            let Ok(arrived) = next else { break };
            if self.run.args.interrupted.load(Ordering::Relaxed) {
                break;
            }
            tally.delay.record(arrived.elapsed());
            self.request(&mut tally, &mut rng, arrived);
        }
        tally
    }

    /// Runs the users until the run stops; the dispatcher's count of arrivals in the open loop.
    fn drive(&self, deadline: Instant) -> (Tally, Option<u64>) {
        let (run, settings) = (self.run, self.run.args.settings);
        let (tx, rx) = mpsc::channel();
        let rx = Mutex::new(rx);
        thread::scope(|scope| {
            let mut users = Vec::new();
            let mut dispatcher = None;
            match settings.arrival_rate {
                Some(rate) => {
                    let rx = &rx;
                    for user in 0..u64::from(settings.concurrent_users) {
                        users.push(scope.spawn(move || self.open_user(user, rx)));
                    }
                    dispatcher = Some(scope.spawn(move || {
                        let send = |at| tx.send(at).is_ok();
                        dispatch(rate, settings.seed, deadline, || run.stopping(), send)
                    }));
                }
                None => {
                    for user in 0..u64::from(settings.concurrent_users) {
                        users.push(scope.spawn(move || self.closed_user(user)));
                    }
                }
            }
            let sent = dispatcher.map(|d| d.join().unwrap_or(0));
            let mut tally = Tally::new();
            for user in users {
                if let Ok(t) = user.join() {
                    tally.merge(t);
                }
            }
            (tally, sent)
        })
    }
}

/// A run's users as tasks on one thread's event loop, as pgbench's clients share its threads:
/// for PostgreSQL, whose driver is tokio's. A thread per user would cost the load generator a
/// wake-up of its own per statement, on the cores the server needs. Pauses are slept on tokio's
/// timer, which rounds them up to the next millisecond.
struct Tasks<'a> {
    run: &'a Run<'a>,
    backend: &'a Postgres,
    pool: &'a AsyncInstrumentedPool<PostgresManager>,
}

impl Tasks<'_> {
    async fn request(&self, tally: &mut Tally, rng: &mut SmallRng, arrived: Instant) {
        let (statement, asked) = self.run.ask(tally, rng);
        let mut conn = match self.pool.get().await {
            Ok(conn) => conn,
            Err(e) => return tally.error(&statement, e.to_string()),
        };
        let got = Instant::now();
        tally.wait.record(got - asked);
        let result = self.backend.execute(&mut conn, &statement).await;
        let work = self.run.work(rng);
        if !work.is_zero() {
            tokio::time::sleep(work).await;
        }
        drop(conn);
        let end = Instant::now();
        self.run
            .finish(tally, &statement, (arrived, got, end), result);
    }

    async fn closed_user(&self, user: u64) -> Tally {
        let mut tally = Tally::new();
        let mut rng = self.run.rng(user);
        while !self.run.stopping() {
            let pause = self.run.think(&mut rng);
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            self.request(&mut tally, &mut rng, Instant::now()).await;
        }
        tally
    }

    async fn open_user(
        &self,
        user: u64,
        arrivals: &tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Instant>>,
    ) -> Tally {
        let mut tally = Tally::new();
        let mut rng = self.run.rng(user);
        loop {
            let next = arrivals.lock().await.recv().await;
            let Some(arrived) = next else { break };
            if self.run.args.interrupted.load(Ordering::Relaxed) {
                break;
            }
            tally.delay.record(arrived.elapsed());
            self.request(&mut tally, &mut rng, arrived).await;
        }
        tally
    }

    /// Runs the users on `runtime` until the run stops; the open loop's arrivals come from a
    /// thread of their own, whose sleeps keep the microsecond.
    fn drive(&self, runtime: &tokio::runtime::Runtime, deadline: Instant) -> (Tally, Option<u64>) {
        let (run, settings) = (self.run, self.run.args.settings);
        let users = 0..u64::from(settings.concurrent_users);
        let (tallies, sent) = match settings.arrival_rate {
            Some(rate) => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let rx = tokio::sync::Mutex::new(rx);
                thread::scope(|scope| {
                    let dispatcher = scope.spawn(move || {
                        let send = |at| tx.send(at).is_ok();
                        dispatch(rate, settings.seed, deadline, || run.stopping(), send)
                    });
                    let users = users.map(|user| self.open_user(user, &rx));
                    let tallies = runtime.block_on(futures_util::future::join_all(users));
                    (tallies, Some(dispatcher.join().unwrap_or(0)))
                })
            }
            None => {
                let users = users.map(|user| self.closed_user(user));
                (
                    runtime.block_on(futures_util::future::join_all(users)),
                    None,
                )
            }
        };
        let mut tally = Tally::new();
        for t in tallies {
            tally.merge(t);
        }
        (tally, sent)
    }
}

/// Poisson arrivals at `rate` per second until `deadline`, on an absolute schedule so that a
/// late wake-up does not lower the rate; each is sent as the instant it is due, until `send`
/// says nobody takes them. Returns how many it sent.
fn dispatch(
    rate: f64,
    seed: u64,
    deadline: Instant,
    stop: impl Fn() -> bool,
    mut send: impl FnMut(Instant) -> bool,
) -> u64 {
    precise_sleeps();
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xA5A5_A5A5);
    let mean = Duration::from_secs_f64(1.0 / rate);
    let mut next = Instant::now();
    let mut sent = 0;
    loop {
        next += exponential(&mut rng, mean);
        if next >= deadline || stop() {
            return sent;
        }
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        }
        if !send(next) {
            return sent;
        }
        sent += 1;
    }
}

/// The pool's name and labels in a run at this pool size.
fn pool_identity(backend: &impl Backend, settings: &Settings) -> (String, Labels) {
    (
        format!("benchmark-{}", settings.pool.pool_size),
        Labels::from([("backend".to_string(), backend.name().to_string())]),
    )
}

/// Runs one pool size of a backend whose driver blocks, a thread per user: a fresh pool,
/// pre-warmed to pool_size connections as the spec advises (then `warm` is called), then
/// `duration` of load. The dataset must exist ([`Backend::create`]).
pub fn run_threads<B: BlockingBackend>(
    backend: &B,
    run: &RunArgs<'_>,
) -> Result<Report, BenchError> {
    let RunArgs { settings, warm, .. } = *run;
    let (name, labels) = pool_identity(backend, settings);
    let pool = InstrumentedPool::new(&name, labels, backend.manager(), settings.pool)?;
    // The spec's `prewarm_pool`: pool_size connections checked out at once and returned, so
    // that the measurement starts from a warm pool rather than timing connection set-up.
    let held = (0..settings.pool.pool_size)
        .map(|_| pool.get())
        .collect::<Result<Vec<_>, _>>()?;
    drop(held);
    warm();
    let run = Run::new(run);
    let users = Threads {
        run: &run,
        backend,
        pool: &pool,
    };
    Ok(measure(&pool, &run, |deadline| users.drive(deadline)))
}

/// [`run_threads`] for PostgreSQL: the same run, its users tasks on one thread ([`Tasks`]).
pub fn run_tasks(backend: &Postgres, run: &RunArgs<'_>) -> Result<Report, BenchError> {
    let RunArgs { settings, warm, .. } = *run;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Setup(format!("starting the users' event loop: {e}")))?;
    let (name, labels) = pool_identity(backend, settings);
    let manager = backend.manager();
    let sessions = manager.sessions();
    let pool = runtime.block_on(async {
        let pool = AsyncInstrumentedPool::new(&name, labels, manager, settings.pool)?;
        let mut held = Vec::new();
        for _ in 0..settings.pool.pool_size {
            held.push(pool.get().await?);
        }
        drop(held);
        Ok::<_, BenchError>(pool)
    })?;
    warm();
    let run = Run::new(run);
    let users = Tasks {
        run: &run,
        backend,
        pool: &pool,
    };
    let report = measure(&pool, &run, |deadline| users.drive(&runtime, deadline));
    // Every session told the server it is leaving before the event loop goes.
    runtime.block_on(async {
        drop(pool);
        sessions.ended(Duration::from_secs(5)).await;
    });
    Ok(report)
}

/// The measurement around `drive`, which runs the users until `done` (set by the watch at the
/// deadline) and returns their tally, and the arrivals dispatched in the open loop.
fn measure<P: CountedPool + Sync>(
    pool: &P,
    run: &Run<'_>,
    drive: impl FnOnce(Instant) -> (Tally, Option<u64>),
) -> Report {
    let settings = run.args.settings;
    let before = pool.stats();
    // The peaks of the run start here, after the pre-warm.
    pool.take_peaks();
    let duration = Duration::from_secs_f64(settings.duration_seconds);
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let started = Instant::now();
    let deadline = started + duration;
    let mut samples = Samples::default();
    let (tally, sent) = thread::scope(|scope| {
        let samples = &mut samples;
        let watcher = scope.spawn(move || {
            watch(pool, run, started, deadline, samples);
            run.done.store(true, Ordering::Relaxed);
        });
        let outcome = drive(deadline);
        let _ = watcher.join();
        outcome
    });
    let elapsed = started.elapsed().as_secs_f64();
    let after = pool.stats();
    let measured = elapsed
        .min(settings.duration_seconds)
        .max(f64::MIN_POSITIVE);
    Report {
        poolwatch_version: env!("CARGO_PKG_VERSION").to_string(),
        settings: settings.clone(),
        started_at_unix_seconds: started_at,
        elapsed_seconds: elapsed,
        interrupted: run.args.interrupted.load(Ordering::Relaxed),
        operations: tally.ok,
        errors: tally.errors,
        throughput_per_second: tally.ok as f64 / elapsed,
        arrival_rate_per_second: sent.map(|n| n as f64 / measured),
        latency_seconds: tally.latency.percentiles(),
        wait_seconds: tally.wait.percentiles(),
        hold_seconds: tally.hold.percentiles(),
        handoffs: Some(Handoffs {
            count: after.handoffs - before.handoffs,
            total_seconds: after.handoff_seconds - before.handoff_seconds,
        }),
        generator_delay_seconds: settings.arrival_rate.map(|_| tally.delay.percentiles()),
        arrival_scv: settings.arrival_rate.and_then(|_| gap_scv(tally.asks)),
        by_statement: STATEMENTS
            .iter()
            .zip(&tally.statements)
            .map(|(name, (recorder, errors))| {
                let latency = recorder.percentiles();
                (
                    name.to_string(),
                    StatementFigures {
                        count: latency.count,
                        errors: *errors,
                        latency_seconds: latency,
                    },
                )
            })
            .collect(),
        pool_metrics: pool_metrics(
            settings,
            &before,
            &after,
            pool.take_peaks(),
            &samples,
            elapsed,
        ),
        error_messages: tally.messages,
    }
}

/// The squared coefficient of variation of the gaps between instants: 1 for Poisson arrivals,
/// more when they come in bursts.
fn gap_scv(mut instants: Vec<Instant>) -> Option<f64> {
    instants.sort_unstable();
    let gaps: Vec<f64> = instants
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    if gaps.len() < 2 {
        return None;
    }
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let variance = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    (mean > 0.0).then(|| variance / (mean * mean))
}

/// How often a run says how far it is when its progress bar is hidden (stderr is not a
/// terminal, as in CI logs): often enough to see it move, seldom enough to read.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The main thread during a run: samples the pool and moves the progress bar until the
/// deadline or Ctrl-C; with the bar hidden, a plain line every [`PLAIN_PROGRESS_EVERY`].
fn watch<P: CountedPool>(
    pool: &P,
    run: &Run<'_>,
    started: Instant,
    deadline: Instant,
    samples: &mut Samples,
) {
    let progress = run.args.progress;
    let pool_size = u64::from(run.args.settings.pool.pool_size);
    let mut last_draw = started;
    let mut last_line = started;
    while Instant::now() < deadline && !run.args.interrupted.load(Ordering::Relaxed) {
        thread::sleep(SAMPLE_EVERY.min(deadline.saturating_duration_since(Instant::now())));
        let stats = pool.stats();
        samples.count += 1;
        samples.idle_sum += pool.idle() as f64;
        samples.overflow_sum += stats.used.saturating_sub(pool_size) as f64;
        if last_draw.elapsed() >= Duration::from_millis(250) {
            last_draw = Instant::now();
            let seconds = started.elapsed().as_secs_f64();
            let done = run.completed.load(Ordering::Relaxed);
            progress.set_position(started.elapsed().as_millis() as u64);
            progress.set_message(format!(
                "{:.0} ops/s · {} in use · {} waiting",
                done as f64 / seconds,
                stats.used,
                stats.pending
            ));
        }
        if progress.is_hidden() && last_line.elapsed() >= PLAIN_PROGRESS_EVERY {
            last_line = Instant::now();
            eprintln!(
                "{}: {:.0} s, {} done, {} in use, {} waiting",
                progress.prefix(),
                started.elapsed().as_secs_f64(),
                run.completed.load(Ordering::Relaxed),
                stats.used,
                stats.pending
            );
        }
    }
}

fn pool_metrics(
    settings: &Settings,
    before: &Stats,
    after: &Stats,
    peaks: Peaks,
    samples: &Samples,
    elapsed: f64,
) -> PoolMetrics {
    let per = |num: f64, den: u64| if den > 0 { num / den as f64 } else { 0.0 };
    let active = (after.usage_seconds - before.usage_seconds) / elapsed;
    let sampled = |sum: f64| {
        if samples.count > 0 {
            sum / samples.count as f64
        } else {
            0.0
        }
    };
    let churn = (after.connections_opened - before.connections_opened)
        + (after.connections_closed - before.connections_closed);
    PoolMetrics {
        active_connections: active,
        idle_connections: sampled(samples.idle_sum),
        pending_requests: (after.wait_seconds - before.wait_seconds) / elapsed,
        avg_wait_time: per(
            after.wait_seconds - before.wait_seconds,
            after.checkouts - before.checkouts,
        ),
        avg_usage_time: per(
            after.usage_seconds - before.usage_seconds,
            after.checkins - before.checkins,
        ),
        connection_errors: after.connection_errors - before.connection_errors,
        timeout_count: after.timeouts - before.timeouts,
        pool_utilization: active / f64::from(settings.pool.pool_size),
        overflow_utilization: (settings.pool.max_overflow > 0)
            .then(|| sampled(samples.overflow_sum) / f64::from(settings.pool.max_overflow)),
        connection_churn: churn as f64 / (elapsed / 60.0),
        peak_active_connections: peaks.used,
        peak_pending_requests: peaks.pending,
        peak_open_connections: peaks.open,
    }
}
