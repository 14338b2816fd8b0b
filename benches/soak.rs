//! The soak: a release build of the agent for an hour (POOLWATCH_SOAK_SECONDS to change it)
//! against one private PgBouncer of 200 pools (POOLWATCH_SOAK_POOLS for another count) plus the
//! shared PostgreSQL, sampled every second with the shipped rules, under load that moves across
//! the pools (see `soak/load.rs`).
//!
//! It prints a progress line every minute, then the start (after a warm-up minute) and the end
//! of the run side by side: RSS and its growth, CPU per sample cycle, `/metrics` p50 and p99 of
//! a scrape loop of its own (four scrapes a second), the series the agent exports and its rule
//! evaluation time; then what the load did, by the driver's count and by PgBouncer's. Run it
//! with `scripts/soak.sh [SECONDS]`. It prints; it asserts nothing.

// Bench code: an unwrap that fails is the failure report.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "fixtures/live.rs"]
mod live;
#[path = "soak/load.rs"]
mod load;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::PgBouncer;
use common::exposition::Exposition;
use live::cpu_seconds;
use load::Load;

/// Pools when `POOLWATCH_SOAK_POOLS` does not say.
const DEFAULT_POOLS: usize = 200;
const POOL_SIZE: u32 = 2;
/// PgBouncer's `max_user_connections`: the most server connections the load takes from the
/// shared PostgreSQL (max_connections 300), whatever the waves ask.
const SERVER_CONNECTIONS: &str = "60";
/// Idle server connections close after this (PgBouncer's default is 600 s), so that pools the
/// waves have left hand theirs back.
const SERVER_IDLE_TIMEOUT: &str = "30";
const INTERVAL: Duration = Duration::from_secs(1);
const WARM_UP_SECONDS: u64 = 60;
/// The agent's default window: by 15 minutes into a run it holds all it will (the shipped rules'
/// 10-minute ranges, and series that vanished are kept 15 minutes).
const WINDOW_SECONDS: u64 = 900;
/// The longest stretches at the start and the end that CPU per cycle and scrape latency are
/// taken over.
const CPU_STRETCH_SECONDS: u64 = 300;
const SCRAPE_STRETCH_SECONDS: u64 = 60;
const SCRAPES_PER_SECOND: u64 = 4;
/// One scrape in this many is read for the figures: one every 5 s.
const READ_EVERY: u64 = 5 * SCRAPES_PER_SECOND;

/// What one read scrape showed, with the agent's CPU time and memory at that moment.
struct Checkpoint {
    at: u64,
    cpu_seconds: f64,
    cycles: f64,
    rss: f64,
    peak_rss: f64,
    series: usize,
    rule_seconds: f64,
    /// The rules' window: its series, its packed samples and their heap bytes.
    window_series: f64,
    window_samples: f64,
    window_bytes: f64,
    pending_alerts: usize,
    firing_alerts: usize,
    /// The most callers any PgBouncer pool had waiting, as the agent exported it.
    most_pending: f64,
}

struct Scrape {
    at: f64,
    latency: Duration,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benches; this one needs services, so list none.
    }
    let seconds: u64 = match std::env::var("POOLWATCH_SOAK_SECONDS") {
        Ok(text) => text.parse().unwrap_or_else(|_| {
            panic!("POOLWATCH_SOAK_SECONDS is a number of seconds, not {text:?}")
        }),
        Err(_) => 3600,
    };
    let pools: usize =
        match std::env::var("POOLWATCH_SOAK_POOLS") {
            Ok(text) => text.parse().ok().filter(|&n| n > 0).unwrap_or_else(|| {
                panic!("POOLWATCH_SOAK_POOLS is a number of pools, not {text:?}")
            }),
            Err(_) => DEFAULT_POOLS,
        };
    if seconds < WARM_UP_SECONDS + 2 * SCRAPE_STRETCH_SECONDS {
        eprintln!(
            "a soak of {seconds} s has no start and end to compare: give it at least {} s",
            WARM_UP_SECONDS + 2 * SCRAPE_STRETCH_SECONDS
        );
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("starting PgBouncer with {pools} pools (pool_size {POOL_SIZE}) and opening them");
    let bouncer = PgBouncer::with_pools_and(
        POOL_SIZE,
        pools,
        &[
            ("max_user_connections", SERVER_CONNECTIONS),
            ("server_idle_timeout", SERVER_IDLE_TIMEOUT),
        ],
    );
    drop(runtime.block_on(live::open_pools(&bouncer, pools)));
    // As deployed: the default rate window (1m) and window (15m), the shipped rules.
    let config = live::config(&bouncer, INTERVAL, INTERVAL).replace("rate_window: 10s\n", "");
    let agent = live::start(&config, pools);
    let pid = agent.child.id();
    let bouncer_cpu_before = cpu_seconds(bouncer.pid().as_raw() as u32);
    let own_cpu_before = cpu_seconds(std::process::id());
    let load = runtime.block_on(Load::start(&bouncer, pools));
    println!(
        "soaking for {seconds} s: agent pid {pid}, sampling every {INTERVAL:?}, progress every minute"
    );

    let url = format!("http://{}/metrics", agent.addr);
    let started = Instant::now();
    let mut scrapes = Vec::with_capacity((seconds * SCRAPES_PER_SECOND) as usize + 1);
    let mut checkpoints = Vec::new();
    let mut alert_names = BTreeSet::new();
    // After the warm-up: the fewest and the most pools with callers waiting at once (PgBouncer).
    let mut waiting_pools = (u64::MAX, 0);
    for n in 0..=seconds * SCRAPES_PER_SECOND {
        let due = started + Duration::from_millis(n * 1000 / SCRAPES_PER_SECOND);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let begun = Instant::now();
        let body = ureq::get(&url)
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .unwrap_or_else(|e| panic!("scraping the agent failed: {e}\n{}", agent.log()));
        scrapes.push(Scrape {
            at: begun.duration_since(started).as_secs_f64(),
            latency: begun.elapsed(),
        });
        if n.is_multiple_of(READ_EVERY) {
            let at = n / SCRAPES_PER_SECOND;
            let exposition = Exposition::parse(&body);
            checkpoints.push(checkpoint(at, pid, &exposition));
            alert_names.extend(
                exposition
                    .series
                    .iter()
                    .filter(|s| s.name == "poolwatch_alerts")
                    .map(|s| s.labels["alertname"].clone()),
            );
            if at >= WARM_UP_SECONDS {
                let now = load.seen().now.waiting_pools;
                waiting_pools = (waiting_pools.0.min(now), waiting_pools.1.max(now));
            }
            if at > 0 && at.is_multiple_of(60) {
                progress(&checkpoints, &scrapes, &load);
            }
        }
    }

    let seen = load.seen();
    runtime.block_on(load.stop(Duration::from_secs(90)));
    let bouncer_cpu = cpu_seconds(bouncer.pid().as_raw() as u32) - bouncer_cpu_before;
    let own_cpu = cpu_seconds(std::process::id()) - own_cpu_before;
    let bouncer_transactions = runtime.block_on(load::bouncer_transactions(&bouncer));
    live::stop(pid);

    println!();
    println!(
        "soak: {seconds} s, one PgBouncer with {pools} pools (pool_size {POOL_SIZE}) + the shared \
         PostgreSQL, sampled every {INTERVAL:?}, shipped rules, window {} min",
        WINDOW_SECONDS / 60
    );
    report(&checkpoints, &scrapes, seconds);
    println!();
    let transactions = load.transactions.load(Ordering::Relaxed);
    println!(
        "load: {transactions} transactions by the driver; PgBouncer counted {bouncer_transactions} \
         ({pools} of them the queries that opened the pools)"
    );
    println!(
        "  {} client sessions opened, at most {} clients and {} server connections at once; {} failures{}",
        load.sessions.load(Ordering::Relaxed),
        seen.most_clients,
        seen.most_servers,
        load.failures.load(Ordering::Relaxed),
        load.first_failure
            .lock()
            .unwrap()
            .as_ref()
            .map_or(String::new(), |e| format!(" (first: {e})"))
    );
    println!(
        "  highest pending (PgBouncer, every second): {} in one pool, {} across pools; pools with \
         callers waiting after the warm-up: {} to {} at once (every 5 s)",
        seen.most_pending_in_a_pool, seen.most_pending, waiting_pools.0, waiting_pools.1
    );
    println!(
        "  highest pending the agent exported (every 5 s): {}",
        checkpoints
            .iter()
            .map(|c| c.most_pending)
            .fold(0.0, f64::max)
    );
    println!(
        "  alerts seen: {}",
        if alert_names.is_empty() {
            "none".to_string()
        } else {
            alert_names.into_iter().collect::<Vec<_>>().join(", ")
        }
    );
    println!(
        "  CPU of the load: this process (driver and scrapes) {:.1}% of a core, PgBouncer {:.1}%",
        own_cpu / seconds as f64 * 100.0,
        bouncer_cpu / seconds as f64 * 100.0
    );
}

fn checkpoint(at: u64, pid: u32, exposition: &Exposition) -> Checkpoint {
    let (rss, peak_rss) = common::memory_mib(pid);
    let alerts = |state: &str| {
        exposition
            .series
            .iter()
            .filter(|s| s.name == "poolwatch_alerts" && s.labels["alertstate"] == state)
            .count()
    };
    Checkpoint {
        at,
        cpu_seconds: cpu_seconds(pid),
        cycles: exposition
            .get(
                "poolwatch_target_sample_duration_seconds_count",
                &[("target", "bouncer")],
            )
            .unwrap_or(0.0),
        rss,
        peak_rss,
        series: exposition.series.len(),
        rule_seconds: exposition
            .get("poolwatch_rule_evaluation_duration_seconds", &[])
            .unwrap_or(0.0),
        window_series: exposition
            .get("poolwatch_rules_window_series", &[])
            .unwrap_or(0.0),
        window_samples: exposition
            .get("poolwatch_rules_window_samples", &[])
            .unwrap_or(0.0),
        window_bytes: exposition
            .get("poolwatch_rules_window_bytes", &[])
            .unwrap_or(0.0),
        pending_alerts: alerts("pending"),
        firing_alerts: alerts("firing"),
        most_pending: exposition
            .series
            .iter()
            .filter(|s| {
                s.name == "db_client_connection_pending_requests"
                    && s.labels["source"] == "pgbouncer"
            })
            .map(|s| s.value)
            .fold(0.0, f64::max),
    }
}

/// The checkpoint taken at `at` seconds, or the last one before.
fn at(checkpoints: &[Checkpoint], at: u64) -> &Checkpoint {
    checkpoints.iter().rev().find(|c| c.at <= at).unwrap()
}

/// The agent's CPU time per sample cycle between two checkpoints.
fn cpu_per_cycle(from: &Checkpoint, to: &Checkpoint) -> f64 {
    (to.cpu_seconds - from.cpu_seconds) / (to.cycles - from.cycles).max(1.0)
}

/// p50 and p99 of the scrapes begun in [from, to) seconds.
fn latency(scrapes: &[Scrape], from: u64, to: u64) -> (Duration, Duration, usize) {
    let mut latencies: Vec<Duration> = scrapes
        .iter()
        .filter(|s| s.at >= from as f64 && s.at < to as f64)
        .map(|s| s.latency)
        .collect();
    let count = latencies.len();
    (
        live::percentile(&mut latencies, 50),
        live::percentile(&mut latencies, 99),
        count,
    )
}

fn ms(seconds: f64) -> String {
    format!("{:.2} ms", seconds * 1000.0)
}

/// One plain line a minute: the run is unattended, its output likely a log file.
fn progress(checkpoints: &[Checkpoint], scrapes: &[Scrape], load: &Load) {
    let now = checkpoints.last().unwrap();
    let minute_ago = at(checkpoints, now.at - 60);
    let (_, p99, _) = latency(scrapes, now.at - 60, now.at);
    let seen = load.seen().now;
    let levels: Vec<String> = load
        .levels()
        .iter()
        .map(|(level, n)| format!("{n} {}", level.name()))
        .collect();
    println!(
        "[{:>3} min] RSS {:.1} MiB, CPU per cycle {} so far ({} last minute), /metrics p99 {} \
         last minute, {} series, alerts {} pending {} firing | load: {} transactions, {} sessions \
         open, pools {}; PgBouncer: {} pools with callers waiting ({} waiting), {} active, {} quiet",
        now.at / 60,
        now.rss,
        ms(now.cpu_seconds / now.cycles.max(1.0)),
        ms(cpu_per_cycle(minute_ago, now)),
        ms(p99.as_secs_f64()),
        now.series,
        now.pending_alerts,
        now.firing_alerts,
        load.transactions.load(Ordering::Relaxed),
        load.open_sessions(),
        levels.join(" / "),
        seen.waiting_pools,
        seen.pending,
        seen.active_pools,
        seen.quiet_pools,
    );
}

/// One column of the table: the checkpoint RSS and the series are read at, and the stretches CPU
/// (between two checkpoints) and scrape latency (in seconds) are taken over.
struct Side<'a> {
    read_at: &'a Checkpoint,
    cpu: (&'a Checkpoint, &'a Checkpoint),
    scrapes: (u64, u64),
}

const ROWS: [&str; 11] = [
    "RSS (MiB)",
    "CPU per sample cycle",
    "  over (s), cycles",
    "/metrics p50",
    "/metrics p99",
    "  over (s), scrapes",
    "series in /metrics",
    "rule evaluation (mean)",
    "alerts pending / firing",
    "rules window series, MiB",
    "  packed samples, bytes each",
];

/// The figures of one side, in the order of [`ROWS`].
fn column(side: &Side, checkpoints: &[Checkpoint], scrapes: &[Scrape]) -> [String; 11] {
    let (from, to) = side.cpu;
    let (p50, p99, count) = latency(scrapes, side.scrapes.0, side.scrapes.1);
    let rule_seconds: Vec<f64> = checkpoints
        .iter()
        .filter(|c| c.at >= from.at && c.at <= to.at)
        .map(|c| c.rule_seconds)
        .collect();
    let read = side.read_at;
    [
        format!("{:.1} at {} s", read.rss, read.at),
        ms(cpu_per_cycle(from, to)),
        format!("{}-{}, {:.0}", from.at, to.at, to.cycles - from.cycles),
        ms(p50.as_secs_f64()),
        ms(p99.as_secs_f64()),
        format!("{}-{}, {count}", side.scrapes.0, side.scrapes.1),
        read.series.to_string(),
        ms(rule_seconds.iter().sum::<f64>() / rule_seconds.len().max(1) as f64),
        format!("{} / {}", read.pending_alerts, read.firing_alerts),
        format!(
            "{:.0}, {:.2}",
            read.window_series,
            read.window_bytes / 1_048_576.0
        ),
        format!(
            "{:.0}, {:.2}",
            read.window_samples,
            read.window_bytes / read.window_samples.max(1.0)
        ),
    ]
}

/// The start (after the warm-up) and the end of the run, side by side.
fn report(checkpoints: &[Checkpoint], scrapes: &[Scrape], seconds: u64) {
    let measured = seconds - WARM_UP_SECONDS;
    let cpu_stretch = CPU_STRETCH_SECONDS.min(measured / 2);
    let scrape_stretch = SCRAPE_STRETCH_SECONDS.min(measured / 2);
    let (first, last) = (at(checkpoints, WARM_UP_SECONDS), at(checkpoints, seconds));
    let start = Side {
        read_at: first,
        cpu: (first, at(checkpoints, WARM_UP_SECONDS + cpu_stretch)),
        scrapes: (WARM_UP_SECONDS, WARM_UP_SECONDS + scrape_stretch),
    };
    let end = Side {
        read_at: last,
        cpu: (at(checkpoints, seconds - cpu_stretch), last),
        scrapes: (seconds - scrape_stretch, seconds),
    };
    println!("{:<34}{:>16}{:>16}", "", "start", "end");
    let columns = [&start, &end].map(|side| column(side, checkpoints, scrapes));
    for (i, what) in ROWS.iter().enumerate() {
        println!("{what:<34}{:>16}{:>16}", columns[0][i], columns[1][i]);
    }
    let growth = last.rss - first.rss;
    let hours = (last.at - first.at) as f64 / 3600.0;
    println!(
        "RSS growth {growth:+.1} MiB over {} s = {:+.1} MiB per hour; peak RSS {:.1} MiB",
        last.at - first.at,
        growth / hours,
        last.peak_rss
    );
    // The window fills during the first 15 minutes: growth then is expected, growth after is not.
    if seconds >= WINDOW_SECONDS + CPU_STRETCH_SECONDS {
        let full = at(checkpoints, WINDOW_SECONDS);
        let after = last.rss - full.rss;
        println!(
            "RSS growth once the window is full ({} s to the end): {after:+.1} MiB = {:+.1} MiB per \
             hour; CPU per cycle there {}",
            full.at,
            after / ((last.at - full.at) as f64 / 3600.0),
            ms(cpu_per_cycle(full, last))
        );
    }
}
