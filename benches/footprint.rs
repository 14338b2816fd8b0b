//! The agent's footprint beside the exporter people run today.
//!
//! One PgBouncer holding 100 pools plus one PostgreSQL target. The bench measures:
//! - poolwatch's RSS and CPU time per sample cycle;
//! - `/metrics` latency (median, p99) and CPU per scrape, under the same scrape loop that is run
//!   against Debian's `prometheus-postgres-exporter` on the same PostgreSQL;
//! - poolwatch's RSS with OTLP export off, on (to the tests' live receiver), and on while the
//!   collector takes connections and never answers, each export every sample cycle.
//!
//! Then it prints the figures and the ratios. Run it with `scripts/bench.sh` (which starts the
//! services), or `cargo bench --bench footprint` when they already run. It prints; it asserts
//! nothing. With `FOOTPRINT_SMAPS=DIR` it also copies each OTLP run's `/proc/PID/smaps` into
//! DIR, to see which mappings its RSS is made of.

// Bench code: an unwrap that fails is the failure report.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "fixtures/live.rs"]
mod live;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::PgBouncer;
use common::otlp::{Receiver, Transport};
use indicatif::{ProgressBar, ProgressStyle};
use live::cpu_seconds;

const POOLS: usize = 100;
const SCRAPES: usize = 500;
/// Cycles a CPU figure averages over: 60 take in the odd slow one (a reconnect, a scheduling
/// delay) without letting it decide the figure.
const CYCLES: u32 = 60;
const INTERVAL: Duration = Duration::from_millis(500);

struct ScrapeFigures {
    median: Duration,
    p99: Duration,
    cpu_per_scrape: f64,
    bytes: usize,
}

fn scrape_loop(name: &str, addr: SocketAddr, pid: u32) -> ScrapeFigures {
    let bar = ProgressBar::new(SCRAPES as u64).with_style(
        ProgressStyle::with_template("{msg:>20} {bar:40} {pos}/{len} scrapes").unwrap(),
    );
    bar.set_message(name.to_string());
    let url = format!("http://{addr}/metrics");
    let cpu_before = cpu_seconds(pid);
    let mut latencies = Vec::with_capacity(SCRAPES);
    let mut bytes = 0;
    for _ in 0..SCRAPES {
        let start = Instant::now();
        let body = ureq::get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        latencies.push(start.elapsed());
        bytes = body.len();
        bar.inc(1);
    }
    bar.finish();
    let cpu = cpu_seconds(pid) - cpu_before;
    ScrapeFigures {
        median: live::percentile(&mut latencies, 50),
        p99: live::percentile(&mut latencies, 99),
        cpu_per_scrape: cpu / SCRAPES as f64,
        bytes,
    }
}

struct Exporter {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_postgres_exporter() -> Exporter {
    let addr = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let dsn = format!(
        "postgresql://monitor:{}@127.0.0.1:{}/postgres?sslmode=disable",
        common::MONITOR_PASSWORD,
        common::pg_port()
    );
    let child = Command::new("prometheus-postgres-exporter")
        .arg(format!("--web.listen-address={addr}"))
        .env("DATA_SOURCE_NAME", dsn)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-postgres-exporter is installed (scripts/services.sh start)");
    common::wait_for(
        Duration::from_secs(20),
        "postgres_exporter to answer",
        || ureq::get(&format!("http://{addr}/metrics")).call().ok(),
    );
    Exporter { child, addr }
}

/// User and system CPU ticks (1/100 s) a process has used, from /proc/PID/stat: too coarse for
/// a figure per cycle, but the only place the kernel's share of it shows.
pub fn cpu_ticks(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process runs");
    // Fields after the command's closing parenthesis, from the 3rd (state): utime is the 14th,
    // stime the 15th.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap_or(0) + 1..]
        .split_whitespace()
        .collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse().ok()).unwrap_or(0);
    (field(14), field(15))
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benches; this one needs services, so list none.
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    eprintln!("starting PgBouncer with {POOLS} pools and opening them");
    let bouncer = PgBouncer::with_pools(5, POOLS);
    let clients = runtime.block_on(live::open_pools(&bouncer, POOLS));

    let agent = live::start(&bench_config(&bouncer), POOLS);
    let pid = agent.child.id();

    let bar = ProgressBar::new(u64::from(CYCLES)).with_style(
        ProgressStyle::with_template("{msg:>20} {bar:40} {pos}/{len} sample cycles").unwrap(),
    );
    bar.set_message("poolwatch idle");
    let cpu_before = cpu_seconds(pid);
    let ticks_before = cpu_ticks(pid);
    for _ in 0..CYCLES {
        std::thread::sleep(INTERVAL);
        bar.inc(1);
    }
    bar.finish();
    let cpu_per_cycle = (cpu_seconds(pid) - cpu_before) / f64::from(CYCLES);
    let ticks = cpu_ticks(pid);
    let (user, system) = (ticks.0 - ticks_before.0, ticks.1 - ticks_before.1);
    let kernel_share = system as f64 / (user + system).max(1) as f64;
    let ours = scrape_loop("poolwatch", agent.addr, pid);
    let (rss, peak) = common::memory_mib(pid);

    let exporter = start_postgres_exporter();
    let theirs = scrape_loop("postgres_exporter", exporter.addr, exporter.child.id());
    let (their_rss, their_peak) = common::memory_mib(exporter.child.id());
    live::stop(pid);

    let otlp = otlp_footprint(&bouncer);
    drop(clients);

    println!();
    println!(
        "poolwatch: one PgBouncer with {POOLS} pools + one PostgreSQL, sampled every {INTERVAL:?}"
    );
    println!(
        "  CPU per sample cycle   {:.3} ms ({:.0} % of it in the kernel, from {} ticks of 10 ms)",
        cpu_per_cycle * 1000.0,
        kernel_share * 100.0,
        user + system
    );
    println!("  RSS / peak RSS         {rss:.1} / {peak:.1} MiB");
    println!();
    println!(
        "{:<24}{:>16}{:>20}{:>10}",
        "", "poolwatch", "postgres_exporter", "ratio"
    );
    let row = |what: &str, a: f64, b: f64, unit: &str| {
        println!(
            "{what:<24}{:>13.3} {unit:<2}{:>17.3} {unit:<2}{:>10.1}x",
            a,
            b,
            b / a
        );
    };
    row("RSS", rss, their_rss, "MiB");
    row("peak RSS", peak, their_peak, "MiB");
    row(
        "CPU per scrape",
        ours.cpu_per_scrape * 1000.0,
        theirs.cpu_per_scrape * 1000.0,
        "ms",
    );
    row(
        "scrape median",
        ours.median.as_secs_f64() * 1000.0,
        theirs.median.as_secs_f64() * 1000.0,
        "ms",
    );
    row(
        "scrape p99",
        ours.p99.as_secs_f64() * 1000.0,
        theirs.p99.as_secs_f64() * 1000.0,
        "ms",
    );
    println!(
        "exposition size: poolwatch {} bytes ({} pools), postgres_exporter {} bytes; latencies {} / {}",
        ours.bytes,
        POOLS,
        theirs.bytes,
        ms(ours.median),
        ms(theirs.median)
    );
    println!();
    println!(
        "poolwatch with OTLP export (http/protobuf, every sample cycle), {OTLP_CYCLES} cycles each"
    );
    println!(
        "{:<24}{:>22}{:>18}{:>16}{:>20}",
        "OTLP", "RSS MiB (1/3, median)", "file / anon MiB", "peak RSS MiB", "CPU per cycle"
    );
    for (what, f) in otlp {
        println!(
            "{what:<24}{:>13.1} {:>8.1}{:>11.1} / {:<4.1}{:>16.1}{:>17.3} ms",
            f.rss_early,
            f.rss.total,
            f.rss.file,
            f.rss.anon,
            f.peak,
            f.cpu_per_cycle * 1000.0
        );
    }
}

/// The agent's config: the PgBouncer of 100 pools and the PostgreSQL, sampled every `INTERVAL`.
fn bench_config(bouncer: &PgBouncer) -> String {
    live::config(bouncer, INTERVAL, Duration::from_millis(400))
}

/// RSS and CPU of one agent run.
struct Footprint {
    cpu_per_cycle: f64,
    /// RSS after a third of the run: growth would show between it and the median after it.
    rss_early: f64,
    /// The median of the RSS read five times a cycle over the last two thirds of the run: a
    /// single reading lands before, in or after a cycle's burst of allocation, and moves by up
    /// to 1 MiB.
    rss: Rss,
    peak: f64,
}

/// Resident memory, MiB: in all, mapped from files (the binary's code and read-only data,
/// the libraries'), and anonymous (heap, stacks).
struct Rss {
    total: f64,
    file: f64,
    anon: f64,
}

impl Rss {
    fn read(pid: u32) -> Rss {
        let (file, anon) = common::rss_split_mib(pid);
        Rss {
            total: common::memory_mib(pid).0,
            file,
            anon,
        }
    }

    /// The median of each figure on its own.
    fn median(readings: &[Rss]) -> Rss {
        let median = |figure: fn(&Rss) -> f64| {
            let mut values: Vec<f64> = readings.iter().map(figure).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        Rss {
            total: median(|r| r.total),
            file: median(|r| r.file),
            anon: median(|r| r.anon),
        }
    }
}

/// How long each OTLP run lasts: long enough for a silent collector to time out 60 exports.
const OTLP_CYCLES: u32 = 60;
const READINGS_PER_CYCLE: u32 = 5;

/// A fresh agent on the same targets for each row: OTLP off, exporting every cycle to a live
/// receiver, and exporting to a collector that accepts connections and never answers (each
/// export times out).
fn otlp_footprint(bouncer: &PgBouncer) -> Vec<(&'static str, Footprint)> {
    let live_port = common::free_port();
    let _receiver = Receiver::start(Transport::Http, live_port);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let mut rows = Vec::new();
    for (what, port) in [
        ("off", None),
        ("on, live receiver", Some(live_port)),
        ("on, collector silent", Some(silent_port)),
    ] {
        let mut config = bench_config(bouncer);
        if let Some(port) = port {
            config.push_str(&format!(
                "otlp:\n  endpoint: http://127.0.0.1:{port}/v1/metrics\n  interval: {0}ms\n  \
                 timeout: {0}ms\n",
                INTERVAL.as_millis()
            ));
        }
        let agent = live::start(&config, POOLS);
        let pid = agent.child.id();
        let bar = ProgressBar::new(u64::from(OTLP_CYCLES)).with_style(
            ProgressStyle::with_template("{msg:>20} {bar:40} {pos}/{len} sample cycles").unwrap(),
        );
        bar.set_message(format!("OTLP {what}"));
        let cpu_before = cpu_seconds(pid);
        let mut rss_early = 0.0;
        let mut readings = Vec::new();
        for cycle in 1..=OTLP_CYCLES {
            // Five readings a cycle, so that they fall at every phase of it.
            for _ in 0..READINGS_PER_CYCLE {
                std::thread::sleep(INTERVAL / READINGS_PER_CYCLE);
                if cycle > OTLP_CYCLES / 3 {
                    readings.push(Rss::read(pid));
                }
            }
            if cycle == OTLP_CYCLES / 3 {
                rss_early = common::memory_mib(pid).0;
            }
            bar.inc(1);
        }
        bar.finish();
        let cpu_per_cycle = (cpu_seconds(pid) - cpu_before) / f64::from(OTLP_CYCLES);
        let peak = common::memory_mib(pid).1;
        if let Ok(dir) = std::env::var("FOOTPRINT_SMAPS") {
            let file = format!("{dir}/otlp-{}.smaps", what.replace([' ', ','], "-"));
            std::fs::copy(format!("/proc/{pid}/smaps"), file).unwrap();
        }
        let exports = agent.metrics();
        let count = |name: &str, labels: &[(&str, &str)]| exports.get(name, labels).unwrap_or(0.0);
        eprintln!(
            "OTLP {what}: {} exports, {} timed out",
            count("poolwatch_otlp_exports_total", &[]),
            count(
                "poolwatch_otlp_export_failures_total",
                &[("reason", "timeout")]
            )
        );
        rows.push((
            what,
            Footprint {
                cpu_per_cycle,
                rss_early,
                rss: Rss::median(&readings),
                peak,
            },
        ));
    }
    rows
}
