//! The OTLP receiver's cost, printed (it asserts nothing):
//! - throughput on one core, in data points per second: protobuf and OTLP/JSON decode plus the
//!   mapping into the pool table, each part timed on its own too;
//! - the agent's RSS with 1,000 pools reporting (each its own service instance, as 1,000 MDM
//!   processes would be), every second over HTTP;
//! - `/metrics` latency and the otlp target's sample duration, idle and while one client pushes
//!   as fast as it can: ingest must slow neither.
//!
//! The requests have the shape the poolwatch SQLAlchemy integration sends: per pool 2 counts,
//! pending, 4 limits, 3 counters and 3 explicit-bucket histograms of 24 buckets, cumulative.
//! `cargo bench --bench otlp_ingest` (no services needed).

// Bench code: an unwrap that fails is the failure report.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use poolwatch::receiver::PoolTable;
use prost::Message;

const BOUNDS: [f64; 23] = [
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1,
    0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
];
/// Data points one pool sends per export.
const POINTS_PER_POOL: usize = 13;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

/// One export of `pools` pools, pool `i` from service instance `i` (first pool `first`), at
/// round `round` (times and counts grow with it).
fn request(first: usize, pools: usize, round: u64) -> ExportMetricsServiceRequest {
    let time = 1_800_000_000_000_000_000 + round * 1_000_000_000;
    let start = 1_800_000_000_000_000_000;
    let number = |attrs: Vec<KeyValue>, v: i64| NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(number_data_point::Value::AsInt(v)),
        ..NumberDataPoint::default()
    };
    let sum = |name: &str, points: Vec<NumberDataPoint>, monotonic: bool| Metric {
        name: name.into(),
        data: Some(Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: monotonic,
        })),
        ..Metric::default()
    };
    let histogram = |name: &str, pool: &[KeyValue]| {
        let mut counts = vec![round; BOUNDS.len() + 1];
        counts[3] += round;
        Metric {
            name: name.into(),
            unit: "s".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: pool.to_vec(),
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    count: counts.iter().sum(),
                    sum: Some(round as f64 * 3.5),
                    bucket_counts: counts,
                    explicit_bounds: BOUNDS.to_vec(),
                    ..HistogramDataPoint::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Metric::default()
        }
    };
    let r = round as i64;
    let resource_metrics = (first..first + pools)
        .map(|i| {
            let pool = vec![kv(
                "db.client.connection.pool.name",
                &format!("127.0.0.1:5432/mdm_{i}"),
            )];
            let state = |s: &str| {
                let mut a = pool.clone();
                a.push(kv("db.client.connection.state", s));
                a
            };
            let metrics = vec![
                sum(
                    "db.client.connection.count",
                    vec![
                        number(state("used"), r % 7),
                        number(state("idle"), 5 - r % 5),
                    ],
                    false,
                ),
                sum(
                    "db.client.connection.pending_requests",
                    vec![number(pool.clone(), r % 3)],
                    false,
                ),
                sum(
                    "db.client.connection.max",
                    vec![number(pool.clone(), 15)],
                    false,
                ),
                sum(
                    "db.client.connection.idle.max",
                    vec![number(pool.clone(), 5)],
                    false,
                ),
                sum("poolwatch.pool.size", vec![number(pool.clone(), 5)], false),
                sum(
                    "poolwatch.pool.max_overflow",
                    vec![number(pool.clone(), 10)],
                    false,
                ),
                sum(
                    "db.client.connection.timeouts",
                    vec![number(pool.clone(), r / 10)],
                    true,
                ),
                sum(
                    "poolwatch.pool.connections.opened",
                    vec![number(pool.clone(), r)],
                    true,
                ),
                sum(
                    "poolwatch.pool.connections.closed",
                    vec![number(state("close"), r / 2)],
                    true,
                ),
                histogram("db.client.connection.wait_time", &pool),
                histogram("db.client.connection.use_time", &pool),
                histogram("db.client.connection.create_time", &pool),
            ];
            ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", "mdm"),
                        kv("service.instance.id", &format!("instance-{i}")),
                        kv("telemetry.sdk.language", "python"),
                    ],
                    ..Resource::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

fn per_second(points: u64, took: Duration) -> String {
    format!("{:>9.0} points/s", points as f64 / took.as_secs_f64())
}

/// Decode + map on this thread, over bodies in round order, a fresh table per pass.
fn throughput(
    name: &str,
    bodies: &[Vec<u8>],
    decode: impl Fn(&[u8]) -> ExportMetricsServiceRequest,
) {
    let (mut decoding, mut mapping, mut points) = (Duration::ZERO, Duration::ZERO, 0u64);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let mut table = PoolTable::new(Duration::from_secs(120));
        let now = Instant::now();
        for body in bodies {
            let t0 = Instant::now();
            let request = decode(body);
            let t1 = Instant::now();
            let ingested = table.ingest(&request, now, 0.0);
            mapping += t1.elapsed();
            decoding += t1 - t0;
            points += ingested.accepted;
        }
        assert_eq!(table.len(), POOLS_PER_REQUEST as usize);
    }
    let total = decoding + mapping;
    println!(
        "{name:<22} {}   (decode {}, map {}; {:.1} KiB a request of {} points)",
        per_second(points, total),
        per_second(points, decoding).trim(),
        per_second(points, mapping).trim(),
        bodies[0].len() as f64 / 1024.0,
        POOLS_PER_REQUEST * POINTS_PER_POOL as u64
    );
}

const POOLS_PER_REQUEST: u64 = 100;
const ROUNDS: u64 = 60;
const REPORTING_POOLS: usize = 1000;
const SCRAPES: usize = 100;

/// `/metrics`, however large: 1,000 pools with three 24-bucket histograms each pass ureq's
/// default limit of 10 MiB.
fn scrape(addr: std::net::SocketAddr) -> String {
    ureq::get(&format!("http://{addr}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .unwrap()
}

fn scrape_latencies(addr: std::net::SocketAddr) -> (Duration, Duration, usize) {
    let mut latencies = Vec::with_capacity(SCRAPES);
    let mut bytes = 0;
    for _ in 0..SCRAPES {
        let start = Instant::now();
        let body = scrape(addr);
        latencies.push(start.elapsed());
        bytes = body.len();
    }
    latencies.sort();
    (latencies[SCRAPES / 2], latencies[SCRAPES * 99 / 100], bytes)
}

/// The otlp target's samples so far: (count, seconds in all).
fn sample_durations(agent: &common::Agent) -> (f64, f64) {
    let m = common::exposition::Exposition::parse(&scrape(agent.addr));
    let get = |suffix: &str| {
        m.get(
            &format!("poolwatch_target_sample_duration_seconds_{suffix}"),
            &[("target", "otlp")],
        )
        .unwrap_or(0.0)
    };
    (get("count"), get("sum"))
}

fn post(url: &str, body: &[u8]) {
    let response = ureq::post(url)
        .header("content-type", "application/x-protobuf")
        .send(body)
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

/// Scrapes while one client pushes rounds of all pools every `pace` (none: no pushing), and
/// prints the scrape latencies, the otlp target's sample duration and the points pushed.
fn phase(agent: &common::Agent, url: &str, name: &str, pace: Option<Duration>) {
    let pushing = Arc::new(AtomicBool::new(pace.is_some()));
    let pushed = Arc::new(AtomicU64::new(0));
    let pusher = {
        let (pushing, pushed, url) = (pushing.clone(), pushed.clone(), url.to_string());
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut round = 1000;
            while pushing.load(Ordering::Relaxed) {
                let began = Instant::now();
                for first in (0..REPORTING_POOLS).step_by(POOLS_PER_REQUEST as usize) {
                    let body = request(first, POOLS_PER_REQUEST as usize, round).encode_to_vec();
                    post(&url, &body);
                    pushed.fetch_add(
                        POOLS_PER_REQUEST * POINTS_PER_POOL as u64,
                        Ordering::Relaxed,
                    );
                }
                round += 1;
                let pause = pace.unwrap_or_default().saturating_sub(began.elapsed());
                std::thread::sleep(pause);
            }
            started.elapsed()
        })
    };
    let before = sample_durations(agent);
    let (median, p99, bytes) = scrape_latencies(agent.addr);
    let after = sample_durations(agent);
    pushing.store(false, Ordering::Relaxed);
    let took = pusher.join().unwrap();
    let per_sample = if after.0 > before.0 {
        Duration::from_secs_f64((after.1 - before.1) / (after.0 - before.0))
    } else {
        Duration::ZERO
    };
    let rate = match pace {
        Some(_) => per_second(pushed.load(Ordering::Relaxed), took)
            .trim()
            .to_string(),
        None => "nothing".into(),
    };
    println!(
        "    {name:<26} /metrics ({:.0} KiB) median {} p99 {}; sample {} ({} samples); pushed {rate}",
        bytes as f64 / 1024.0,
        ms(median),
        ms(p99),
        ms(per_sample),
        after.0 - before.0
    );
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("OTLP ingest on one core (decode + map into the pool table):");
    let requests: Vec<ExportMetricsServiceRequest> = (1..=ROUNDS)
        .map(|round| request(0, POOLS_PER_REQUEST as usize, round))
        .collect();
    let protobuf: Vec<Vec<u8>> = requests.iter().map(Message::encode_to_vec).collect();
    let json: Vec<Vec<u8>> = requests
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap())
        .collect();
    throughput("protobuf", &protobuf, |b| {
        ExportMetricsServiceRequest::decode(b).unwrap()
    });
    throughput("OTLP/JSON", &json, |b| serde_json::from_slice(b).unwrap());

    println!("\nThe agent with {REPORTING_POOLS} pools reporting every second over HTTP:");
    // Short enough for several samples in each phase below.
    let agent = common::Agent::start_logging("sample_interval: 2s\n", "warn");
    let pid = agent.child.id();
    let url = format!("http://{}/v1/metrics", agent.addr);
    let batches: Vec<Vec<Vec<u8>>> = (1..=20u64)
        .map(|round| {
            (0..REPORTING_POOLS / POOLS_PER_REQUEST as usize)
                .map(|b| {
                    request(
                        b * POOLS_PER_REQUEST as usize,
                        POOLS_PER_REQUEST as usize,
                        round,
                    )
                    .encode_to_vec()
                })
                .collect()
        })
        .collect();
    for batch in &batches {
        let round = Instant::now();
        for body in batch {
            post(&url, body);
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(round.elapsed()));
    }
    let pools = common::wait_for(Duration::from_secs(20), "1,000 pools", || {
        let m = common::exposition::Exposition::parse(&scrape(agent.addr));
        let n = m
            .series
            .iter()
            .filter(|s| s.name == "db_client_connection_max")
            .count();
        (n == REPORTING_POOLS).then_some(n)
    });
    let (rss, peak) = common::memory_mib(pid);
    println!(
        "  RSS {:.1} MiB (peak {:.1} MiB) with {pools} pools after 20 rounds",
        rss, peak
    );

    println!("  /metrics and sampling, {SCRAPES} scrapes in each phase:");
    phase(&agent, &url, "idle", None);
    phase(
        &agent,
        &url,
        "1,000 pools every second",
        Some(Duration::from_secs(1)),
    );
    phase(&agent, &url, "pushing flat out", Some(Duration::ZERO));
}
