//! The pool table against points built with the protocol's own types: temporality, resets,
//! units, refusals that change nothing, two instances of one pool name, and staleness.

use opentelemetry_proto::tonic::common::v1::AnyValue as Any;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Histogram as OtlpHistogram, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;

use super::*;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(Any {
            value: Some(AnyValue::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

fn request(instance: &str, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(OtlpResource {
                attributes: vec![
                    kv("service.name", "mdm"),
                    kv("service.instance.id", instance),
                ],
                ..OtlpResource::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
}

fn point(attributes: Vec<KeyValue>, value: i64, start: u64, time: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(NumberValue::AsInt(value)),
        ..NumberDataPoint::default()
    }
}

fn metric(name: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(data),
        ..Metric::default()
    }
}

fn sum(points: Vec<NumberDataPoint>, temporality: AggregationTemporality) -> Data {
    Data::Sum(Sum {
        data_points: points,
        aggregation_temporality: temporality as i32,
        is_monotonic: true,
    })
}

fn pool(name: &str) -> Vec<KeyValue> {
    vec![kv(POOL_NAME, name)]
}

fn timeouts(value: i64, start: u64, time: u64, temporality: AggregationTemporality) -> Metric {
    metric(
        "db.client.connection.timeouts",
        "{timeout}",
        sum(vec![point(pool("p"), value, start, time)], temporality),
    )
}

fn wait(counts: Vec<u64>, sum: f64, start: u64, time: u64, delta: bool) -> Metric {
    let temporality = if delta {
        AggregationTemporality::Delta
    } else {
        AggregationTemporality::Cumulative
    };
    metric(
        "db.client.connection.wait_time",
        "s",
        Data::Histogram(OtlpHistogram {
            data_points: vec![HistogramDataPoint {
                attributes: pool("p"),
                start_time_unix_nano: start,
                time_unix_nano: time,
                count: counts.iter().sum(),
                sum: Some(sum),
                bucket_counts: counts,
                explicit_bounds: vec![0.1, 1.0],
                ..HistogramDataPoint::default()
            }],
            aggregation_temporality: temporality as i32,
        }),
    )
}

struct Clock {
    start: Instant,
}

impl Clock {
    fn at(&self, seconds: u64) -> Instant {
        self.start + Duration::from_secs(seconds)
    }
}

fn table() -> (PoolTable, Clock) {
    (
        PoolTable::new(Duration::from_secs(60)),
        Clock {
            start: Instant::now(),
        },
    )
}

fn only(table: &mut PoolTable, now: Instant) -> PoolSample {
    let sample = table.sample(now);
    assert_eq!(sample.pools.len(), 1, "{:?}", sample.pools);
    sample.pools.into_iter().next().unwrap()
}

use AggregationTemporality::{Cumulative, Delta};

#[test]
fn cumulative_counters_follow_the_app_and_survive_its_restart() {
    let (mut t, clock) = table();
    for (value, start, time) in [(3, 100, 110), (5, 100, 120), (5, 100, 120), (2, 200, 210)] {
        let ingested = t.ingest(
            &request("i", vec![timeouts(value, start, time, Cumulative)]),
            clock.at(0),
            0.0,
        );
        assert_eq!(ingested.accepted, 1);
    }
    // 5 before the restart (the repeat at 120 counted once), then 2 more since.
    assert_eq!(only(&mut t, clock.at(0)).totals.timeouts, Some(7));
    // A value that goes down without a new start is a reset too.
    t.ingest(
        &request("i", vec![timeouts(1, 200, 220, Cumulative)]),
        clock.at(0),
        0.0,
    );
    assert_eq!(only(&mut t, clock.at(0)).totals.timeouts, Some(8));
}

#[test]
fn delta_points_add_up() {
    let (mut t, clock) = table();
    for (value, time) in [(3, 110), (0, 120), (4, 130)] {
        t.ingest(
            &request("i", vec![timeouts(value, time - 10, time, Delta)]),
            clock.at(0),
            0.0,
        );
    }
    assert_eq!(only(&mut t, clock.at(0)).totals.timeouts, Some(7));
}

#[test]
fn histograms_accumulate_and_feed_the_averages() {
    let (mut t, clock) = table();
    t.ingest(
        &request("i", vec![wait(vec![2, 1, 0], 0.5, 100, 110, false)]),
        clock.at(0),
        0.0,
    );
    t.ingest(
        &request("i", vec![wait(vec![4, 3, 1], 4.5, 100, 120, false)]),
        clock.at(0),
        0.0,
    );
    // The app restarted: its new cumulative histogram adds to what came before.
    t.ingest(
        &request("i", vec![wait(vec![1, 0, 0], 0.05, 300, 310, false)]),
        clock.at(0),
        0.0,
    );
    let p = only(&mut t, clock.at(0));
    let h = p.histograms.wait_time.unwrap();
    assert_eq!(
        (h.bounds.clone(), h.counts.clone(), h.count),
        (vec![0.1, 1.0], vec![5, 3, 1], 9)
    );
    assert!((h.sum - 4.55).abs() < 1e-12, "{}", h.sum);
    assert_eq!(
        (p.totals.assignments, p.totals.wait_seconds),
        (Some(9), Some(h.sum))
    );

    let (mut t, clock) = table();
    for _ in 0..2 {
        t.ingest(
            &request("i", vec![wait(vec![1, 1, 0], 0.75, 0, 0, true)]),
            clock.at(0),
            0.0,
        );
    }
    let h = only(&mut t, clock.at(0)).histograms.wait_time.unwrap();
    assert_eq!((h.counts.clone(), h.sum), (vec![2, 2, 0], 1.5));
}

#[test]
fn the_older_names_are_milliseconds_keyed_by_pool_name() {
    let (mut t, clock) = table();
    let mut old = wait(vec![1, 1, 0], 750.0, 100, 110, false);
    old.name = "db.client.connections.use_time".into();
    old.unit = "ms".into();
    let Some(Data::Histogram(h)) = &mut old.data else {
        unreachable!()
    };
    h.data_points[0].attributes = vec![kv(OLD_POOL_NAME, "p")];
    h.data_points[0].explicit_bounds = vec![100.0, 1000.0];
    let usage = metric(
        "db.client.connections.usage",
        "{connection}",
        sum(
            vec![
                point(
                    vec![kv(OLD_POOL_NAME, "p"), kv("state", "used")],
                    3,
                    100,
                    110,
                ),
                point(
                    vec![kv(OLD_POOL_NAME, "p"), kv("state", "idle")],
                    2,
                    100,
                    110,
                ),
            ],
            Cumulative,
        ),
    );
    t.ingest(&request("i", vec![old, usage]), clock.at(0), 0.0);
    let p = only(&mut t, clock.at(0));
    let h = p.histograms.use_time.unwrap();
    assert_eq!((h.bounds.clone(), h.sum), (vec![0.1, 1.0], 0.75));
    assert_eq!(
        (p.totals.transactions, p.totals.usage_seconds),
        (Some(2), Some(0.75))
    );
    assert_eq!((p.used, p.idle), (Some(3), Some(2)));
}

#[test]
fn limits_come_from_size_and_overflow_or_from_max_alone() {
    let (mut t, clock) = table();
    let gauge = |name: &str, value| {
        metric(
            name,
            "{connection}",
            sum(vec![point(pool("p"), value, 1, 2)], Cumulative),
        )
    };
    t.ingest(
        &request(
            "i",
            vec![
                gauge("db.client.connection.max", 7),
                gauge("poolwatch.pool.size", 5),
            ],
        ),
        clock.at(0),
        0.0,
    );
    let limits = only(&mut t, clock.at(0)).limits;
    assert_eq!((limits.pool_size, limits.max_overflow), (Some(5), Some(2)));
    let (mut t, clock) = table();
    t.ingest(
        &request("i", vec![gauge("db.client.connection.max", 10)]),
        clock.at(0),
        0.0,
    );
    let limits = only(&mut t, clock.at(0)).limits;
    assert_eq!((limits.pool_size, limits.max_overflow), (Some(10), None));
}

#[test]
fn refused_points_say_why_and_change_nothing() {
    let (mut t, clock) = table();
    t.ingest(
        &request("i", vec![timeouts(3, 100, 110, Cumulative)]),
        clock.at(0),
        0.0,
    );
    let before = t.sample(clock.at(0));
    let nameless = metric(
        "db.client.connection.timeouts",
        "{timeout}",
        sum(vec![point(vec![], 9, 100, 120)], Cumulative),
    );
    let mut exponential = timeouts(0, 0, 0, Cumulative);
    exponential.name = "db.client.connection.wait_time".into();
    exponential.data = Some(Data::ExponentialHistogram(Default::default()));
    if let Some(Data::ExponentialHistogram(h)) = &mut exponential.data {
        h.data_points.push(Default::default());
    }
    let as_histogram = metric(
        "db.client.connection.pending_requests",
        "{request}",
        wait(vec![1, 0, 0], 0.0, 1, 2, false).data.unwrap(),
    );
    let mut bad_buckets = wait(vec![1, 0, 0], 0.1, 100, 130, false);
    if let Some(Data::Histogram(h)) = &mut bad_buckets.data {
        h.data_points[0].explicit_bounds = vec![1.0];
    }
    let no_state = metric(
        "db.client.connection.count",
        "{connection}",
        Data::Gauge(Gauge {
            data_points: vec![point(pool("p"), 1, 0, 5)],
        }),
    );
    let unspecified = timeouts(5, 100, 140, AggregationTemporality::Unspecified);
    let ignored = metric(
        "http.server.request.duration",
        "s",
        sum(vec![point(pool("p"), 1, 0, 1)], Delta),
    );
    let ingested = t.ingest(
        &request(
            "i",
            vec![
                nameless,
                exponential,
                as_histogram,
                bad_buckets,
                no_state,
                unspecified,
                ignored,
            ],
        ),
        clock.at(0),
        0.0,
    );
    assert_eq!(
        (
            ingested.accepted,
            ingested.ignored,
            ingested.refused_count()
        ),
        (0, 1, 6)
    );
    let reasons: Vec<Refusal> = ingested.refused.keys().copied().collect();
    assert_eq!(reasons, Refusal::ALL);
    let message = ingested.message();
    assert!(
        message.contains("1 refused (missing_pool_name, e.g. db.client.connection.timeouts)"),
        "{message}"
    );
    assert_eq!(t.sample(clock.at(0)), before);
}

#[test]
fn two_instances_of_one_pool_name_are_two_pools() {
    let (mut t, clock) = table();
    t.ingest(
        &request("a", vec![timeouts(1, 1, 2, Cumulative)]),
        clock.at(0),
        0.0,
    );
    t.ingest(
        &request("b", vec![timeouts(2, 1, 2, Cumulative)]),
        clock.at(0),
        0.0,
    );
    let pools = t.sample(clock.at(0)).pools;
    let seen: Vec<(Option<&String>, Option<u64>)> = pools
        .iter()
        .map(|p| (p.labels.get(SERVICE_INSTANCE_LABEL), p.totals.timeouts))
        .collect();
    assert_eq!(
        seen,
        [
            (Some(&"a".to_string()), Some(1)),
            (Some(&"b".to_string()), Some(2))
        ]
    );
    assert!(
        pools
            .iter()
            .all(|p| p.pool == "p" && p.labels[SERVICE_NAME_LABEL] == "mdm")
    );
}

#[test]
fn silent_pools_leave_as_ended_or_stale_and_are_listed_a_while() {
    let (mut t, clock) = table();
    let count = |name: &str, used: i64| {
        metric(
            "db.client.connection.count",
            "{connection}",
            sum(
                vec![
                    point(
                        vec![
                            kv(POOL_NAME, name),
                            kv("db.client.connection.state", "used"),
                        ],
                        used,
                        1,
                        2,
                    ),
                    point(
                        vec![
                            kv(POOL_NAME, name),
                            kv("db.client.connection.state", "idle"),
                        ],
                        0,
                        1,
                        2,
                    ),
                ],
                Cumulative,
            ),
        )
    };
    t.ingest(
        &request("i", vec![count("disposed", 0), count("crashed", 3)]),
        clock.at(0),
        1000.0,
    );
    assert_eq!(t.sample(clock.at(60)).pools.len(), 2);
    let sample = t.sample(clock.at(61));
    assert!(sample.pools.is_empty());
    let gone: Vec<(&str, PoolEnd, Option<u64>)> = sample
        .gone
        .iter()
        .map(|g| (g.pool.as_str(), g.state, g.used))
        .collect();
    assert_eq!(
        gone,
        [
            ("crashed", PoolEnd::Stale, Some(3)),
            ("disposed", PoolEnd::Ended, Some(0))
        ]
    );
    assert_eq!(sample.gone[0].last_report_unix_seconds, 1000.0);
    assert_eq!(t.sample(clock.at(361)).gone.len(), 2);
    assert!(t.sample(clock.at(362)).gone.is_empty());
}
