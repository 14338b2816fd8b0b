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
use crate::pools::{InstrumentedPool, Peaks, Stats};
use report::{Handoffs, Percentiles, PoolMetrics, Report, Settings, StatementFigures};
use workload::{Backend, BenchError, Dataset, STATEMENTS, Statement};

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

/// Everything the users share.
struct Shared<'a, B: Backend> {
    backend: &'a B,
    pool: &'a InstrumentedPool<B::Manager>,
    settings: &'a Settings,
    dataset: Dataset,
    next_test_id: &'a AtomicI64,
    completed: AtomicU64,
    done: AtomicBool,
    interrupted: &'a AtomicBool,
}

impl<B: Backend> Shared<'_, B> {
    fn stopping(&self) -> bool {
        self.done.load(Ordering::Relaxed) || self.interrupted.load(Ordering::Relaxed)
    }

    /// One request: its statement through a pooled connection. `arrived` is when the request
    /// came into being (its latency starts there).
    fn request(&self, tally: &mut Tally, rng: &mut SmallRng, arrived: Instant) {
        let statement = self.dataset.next(self.settings.operation, rng, |count| {
            self.next_test_id.fetch_add(count as i64, Ordering::Relaxed)
        });
        let asked = Instant::now();
        if self.settings.arrival_rate.is_some() {
            tally.asks.push(asked);
        }
        let mut conn = match self.pool.get() {
            Ok(conn) => conn,
            Err(e) => {
                tally.error(&statement, e.to_string());
                return;
            }
        };
        let got = Instant::now();
        tally.wait.record(got - asked);
        let result = self.backend.execute(&mut conn, &statement);
        let work = exponential(
            rng,
            Duration::from_secs_f64(self.settings.hold_time_ms / 1e3),
        );
        if !work.is_zero() {
            thread::sleep(work);
        }
        drop(conn);
        let end = Instant::now();
        tally.hold.record(end - got);
        match result {
            Ok(()) => {
                tally.ok += 1;
                tally.latency.record(end - arrived);
                tally.statements[Tally::index(&statement)]
                    .0
                    .record(end - arrived);
                self.completed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tally.error(&statement, e.to_string()),
        }
    }

    fn rng(&self, user: u64) -> SmallRng {
        SmallRng::seed_from_u64(
            self.settings
                .seed
                .wrapping_add(user.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        )
    }

    /// A user of the closed loop: the next request when the last one is done (after thinking).
    fn closed_user(&self, user: u64) -> Tally {
        precise_sleeps();
        let mut tally = Tally::new();
        let mut rng = self.rng(user);
        let think = Duration::from_secs_f64(self.settings.think_time_ms / 1e3);
        while !self.stopping() {
            let pause = exponential(&mut rng, think);
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
        let mut rng = self.rng(user);
        loop {
            let next = arrivals.lock().unwrap_or_else(|e| e.into_inner()).recv();
            let Ok(arrived) = next else { break };
            if self.interrupted.load(Ordering::Relaxed) {
                break;
            }
            tally.delay.record(arrived.elapsed());
            self.request(&mut tally, &mut rng, arrived);
        }
        tally
    }
}

/// Poisson arrivals at `rate` per second until `deadline`, on an absolute schedule so that a
/// late wake-up does not lower the rate. Returns how many it sent.
fn dispatch(
    rate: f64,
    seed: u64,
    deadline: Instant,
    stop: impl Fn() -> bool,
    arrivals: mpsc::Sender<Instant>,
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
        if arrivals.send(next).is_err() {
            return sent;
        }
        sent += 1;
    }
}

/// Runs one pool size: a fresh pool, pre-warmed to pool_size connections as the spec advises
/// (then `warm` is called), then `duration` of load. The dataset must exist ([`Backend::create`]); rows inserted take
/// ids from `next_test_id`, which the caller starts past the created test rows and keeps across
/// the runs on one dataset.
pub fn run<B: Backend>(
    backend: &B,
    settings: &Settings,
    next_test_id: &AtomicI64,
    interrupted: &AtomicBool,
    progress: &ProgressBar,
    warm: impl FnOnce(),
) -> Result<Report, BenchError> {
    let dataset = Dataset::new(settings.rows, settings.batch_size);
    let labels = Labels::from([("backend".to_string(), backend.name().to_string())]);
    let pool = InstrumentedPool::new(
        &format!("benchmark-{}", settings.pool.pool_size),
        labels,
        backend.manager(),
        settings.pool,
    )?;
    prewarm(&pool)?;
    warm();
    let before = pool.stats();
    // The peaks of the run start here, after the pre-warm.
    pool.take_peaks();
    let shared = Shared {
        backend,
        pool: &pool,
        settings,
        dataset,
        next_test_id,
        completed: AtomicU64::new(0),
        done: AtomicBool::new(false),
        interrupted,
    };
    let duration = Duration::from_secs_f64(settings.duration_seconds);
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let started = Instant::now();
    let deadline = started + duration;
    let mut samples = Samples::default();
    let mut sent = None;
    let tally = thread::scope(|scope| {
        let shared = &shared;
        let mut users = Vec::new();
        let mut dispatcher = None;
        match settings.arrival_rate {
            Some(rate) => {
                let (tx, rx) = mpsc::channel();
                let rx = std::sync::Arc::new(Mutex::new(rx));
                for user in 0..u64::from(settings.concurrent_users) {
                    let rx = std::sync::Arc::clone(&rx);
                    users.push(scope.spawn(move || shared.open_user(user, &rx)));
                }
                dispatcher = Some(scope.spawn(move || {
                    dispatch(rate, settings.seed, deadline, || shared.stopping(), tx)
                }));
            }
            None => {
                for user in 0..u64::from(settings.concurrent_users) {
                    users.push(scope.spawn(move || shared.closed_user(user)));
                }
            }
        }
        watch(shared, started, deadline, &mut samples, progress);
        shared.done.store(true, Ordering::Relaxed);
        sent = dispatcher.map(|d| d.join().unwrap_or(0));
        let mut tally = Tally::new();
        for user in users {
            if let Ok(t) = user.join() {
                tally.merge(t);
            }
        }
        tally
    });
    let elapsed = started.elapsed().as_secs_f64();
    let after = pool.stats();
    let measured = elapsed
        .min(settings.duration_seconds)
        .max(f64::MIN_POSITIVE);
    Ok(Report {
        poolwatch_version: env!("CARGO_PKG_VERSION").to_string(),
        settings: settings.clone(),
        started_at_unix_seconds: started_at,
        elapsed_seconds: elapsed,
        interrupted: interrupted.load(Ordering::Relaxed),
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
    })
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

/// Checks out pool_size connections at once and returns them: the spec's `prewarm_pool`, so the
/// measurement starts from a warm pool rather than timing connection set-up.
fn prewarm<M: r2d2::ManageConnection>(pool: &InstrumentedPool<M>) -> Result<(), BenchError> {
    let mut held = Vec::new();
    for _ in 0..pool.settings().pool_size {
        held.push(pool.get()?);
    }
    Ok(())
}

/// How often a run says how far it is when its progress bar is hidden (stderr is not a
/// terminal, as in CI logs): often enough to see it move, seldom enough to read.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The main thread during a run: samples the pool and moves the progress bar until the
/// deadline or Ctrl-C; with the bar hidden, a plain line every [`PLAIN_PROGRESS_EVERY`].
fn watch<B: Backend>(
    shared: &Shared<'_, B>,
    started: Instant,
    deadline: Instant,
    samples: &mut Samples,
    progress: &ProgressBar,
) {
    let pool_size = u64::from(shared.settings.pool.pool_size);
    let mut last_draw = started;
    let mut last_line = started;
    while Instant::now() < deadline && !shared.interrupted.load(Ordering::Relaxed) {
        thread::sleep(SAMPLE_EVERY.min(deadline.saturating_duration_since(Instant::now())));
        let stats = shared.pool.stats();
        samples.count += 1;
        samples.idle_sum += shared.pool.idle() as f64;
        samples.overflow_sum += stats.used.saturating_sub(pool_size) as f64;
        if last_draw.elapsed() >= Duration::from_millis(250) {
            last_draw = Instant::now();
            let seconds = started.elapsed().as_secs_f64();
            let done = shared.completed.load(Ordering::Relaxed);
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
                shared.completed.load(Ordering::Relaxed),
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
