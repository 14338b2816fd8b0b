//! The OTLP request of the exposition's fixed snapshot: the same values as `/metrics`, under the
//! OpenTelemetry names, units, instruments and attributes.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};

use super::*;
use crate::exporters::prometheus;
use crate::exposition::{CATALOGUE, POOL_LABEL, STATE_LABEL};
use crate::status::{Published, Snapshot};

#[path = "../../../tests/common/exposition.rs"]
#[allow(dead_code)]
mod text;

fn published() -> Published {
    published_of(prometheus::tests::snapshot())
}

/// What the scheduler publishes of `snapshot`, alerts aside: the snapshot and its samples.
fn published_of(snapshot: Snapshot) -> Published {
    let mut samples = Vec::new();
    crate::exposition::Exposer::default().samples(&snapshot, &mut samples);
    Published {
        snapshot,
        samples,
        ..Published::default()
    }
}

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn metrics(request: &ExportMetricsServiceRequest) -> &[Metric] {
    &request.resource_metrics[0].scope_metrics[0].metrics
}

fn metric<'a>(request: &'a ExportMetricsServiceRequest, name: &str) -> &'a Metric {
    metrics(request)
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the request"))
}

fn string_attributes(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => panic!("{} is not a string: {other:?}", kv.key),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// A label set of the Prometheus exposition from OTLP attributes.
fn prometheus_labels(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    string_attributes(attributes)
        .into_iter()
        .map(|(k, v)| {
            let label = [POOL_LABEL, STATE_LABEL]
                .into_iter()
                .find(|l| crate::exposition::otel_attribute(l) == k)
                .map_or(k, str::to_string);
            (label, v)
        })
        .collect()
}

/// The request written back as Prometheus series: (name, labels) → value.
fn as_series(
    request: &ExportMetricsServiceRequest,
) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let mut series = BTreeMap::new();
    for m in metrics(request) {
        let family = CATALOGUE.iter().find(|f| f.otel == m.name).unwrap();
        let mut put = |suffix: &str, labels: BTreeMap<String, String>, v: f64| {
            let key = (format!("{}{suffix}", family.name), labels);
            assert!(series.insert(key, v).is_none(), "{} twice", family.name);
        };
        match m.data.as_ref().unwrap() {
            metric::Data::Gauge(g) => g.data_points.iter().for_each(|p| {
                let Some(number_data_point::Value::AsDouble(v)) = p.value else {
                    panic!()
                };
                put("", prometheus_labels(&p.attributes), v);
            }),
            metric::Data::Sum(s) => s.data_points.iter().for_each(|p| {
                let Some(number_data_point::Value::AsDouble(v)) = p.value else {
                    panic!()
                };
                put("", prometheus_labels(&p.attributes), v);
            }),
            metric::Data::Histogram(h) => h.data_points.iter().for_each(|p| {
                let labels = prometheus_labels(&p.attributes);
                let bounds = p.explicit_bounds.iter().copied().chain([f64::INFINITY]);
                let mut cumulative = 0;
                for (bound, count) in bounds.zip(&p.bucket_counts) {
                    cumulative += count;
                    let mut le = Vec::new();
                    prometheus::write_value(bound, &mut le);
                    let mut with_le = labels.clone();
                    with_le.insert("le".into(), String::from_utf8(le).unwrap());
                    put("_bucket", with_le, cumulative as f64);
                }
                put("_sum", labels.clone(), p.sum.unwrap());
                put("_count", labels, p.count as f64);
            }),
            other => panic!("{} is {other:?}", m.name),
        }
    }
    series
}

#[test]
fn the_request_carries_exactly_what_metrics_shows() {
    let published = published();
    let shown = text::Exposition::parse(&prometheus::render(&published.snapshot));
    let expected: BTreeMap<_, _> = shown
        .series
        .iter()
        .map(|s| ((s.name.clone(), s.labels.clone()), s.value))
        .collect();
    let request = Encoder::new(&[]).request(&published, at(1_800_000_100));
    assert_eq!(as_series(&request), expected);
}

#[test]
fn names_units_instruments_and_attributes_follow_the_semantic_conventions() {
    let request = Encoder::new(&[]).request(&published(), at(1_800_000_100));
    let count = metric(&request, "db.client.connection.count");
    assert_eq!(count.unit, "{connection}");
    let metric::Data::Sum(sum) = count.data.as_ref().unwrap() else {
        panic!("{count:?}")
    };
    assert!(!sum.is_monotonic);
    assert_eq!(sum.aggregation_temporality, 2, "cumulative");
    let used = sum
        .data_points
        .iter()
        .map(|p| string_attributes(&p.attributes))
        .find(|a| a["db.client.connection.state"] == "used")
        .unwrap();
    assert_eq!(
        used,
        BTreeMap::from(
            [
                ("db.client.connection.pool.name", "mdm_images/mdm"),
                ("db.client.connection.state", "used"),
                ("dataset", "images"),
                ("role", "write"),
                ("source", "pgbouncer"),
                ("target", "bouncer"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        )
    );
    let transactions = metric(&request, "poolwatch.pool.transactions");
    let Some(metric::Data::Sum(sum)) = &transactions.data else {
        panic!()
    };
    assert!(sum.is_monotonic);
    assert_eq!(transactions.unit, "{transaction}");
    let wait = metric(&request, "db.client.connection.wait_time");
    assert_eq!(wait.unit, "s");
    let Some(metric::Data::Histogram(h)) = &wait.data else {
        panic!()
    };
    let point = &h.data_points[0];
    assert_eq!(
        (
            &point.explicit_bounds[..],
            &point.bucket_counts[..],
            point.sum,
            point.count
        ),
        (&[0.005, 0.1, 1.0][..], &[3, 4, 0, 1][..], Some(2.75), 8)
    );
    let utilization = metric(&request, "poolwatch.pool.utilization");
    assert!(matches!(utilization.data, Some(metric::Data::Gauge(_))));
    assert_eq!(utilization.unit, "1");
    // The agent's own telemetry stays on /metrics.
    for name in [
        "poolwatch.build.info",
        "poolwatch.target.errors",
        "poolwatch.otlp.exports",
    ] {
        assert!(metrics(&request).iter().all(|m| m.name != name), "{name}");
    }
}

#[test]
fn cumulative_series_start_when_first_seen_and_again_after_a_reset() {
    let mut snapshot = prometheus::tests::snapshot();
    let mut encoder = Encoder::new(&[]);
    let start_of = |request: &ExportMetricsServiceRequest, name: &str| {
        let Some(metric::Data::Sum(sum)) = &metric(request, name).data else {
            panic!()
        };
        (
            sum.data_points[0].start_time_unix_nano,
            sum.data_points[0].time_unix_nano,
        )
    };
    let first = encoder.request(&published_of(snapshot.clone()), at(100));
    let t100 = 100 * 1_000_000_000;
    assert_eq!(
        start_of(&first, "poolwatch.pool.transactions"),
        (t100, t100)
    );
    // PgBouncer restarted: its counter went down, so the series starts again.
    Arc::make_mut(&mut Arc::make_mut(&mut snapshot.targets[0].pools)[0].latest)
        .totals
        .transactions = Some(3);
    let second = encoder.request(&published_of(snapshot), at(160));
    let t160 = 160 * 1_000_000_000;
    assert_eq!(
        start_of(&second, "poolwatch.pool.transactions"),
        (t160, t160)
    );
    assert_eq!(
        start_of(&second, "poolwatch.pool.connections.opened"),
        (t100, t160)
    );
    let Some(metric::Data::Gauge(gauge)) = &metric(&second, "poolwatch.pool.size").data else {
        panic!()
    };
    assert_eq!(gauge.data_points[0].start_time_unix_nano, 0);
}

#[test]
fn the_resource_names_the_service_and_this_instance() {
    let config = crate::config::Config::from_yaml(
        std::path::Path::new("p.yaml"),
        "otlp: {}\n",
        &|name: &str| {
            (name == "OTEL_RESOURCE_ATTRIBUTES").then(|| "host.name=override,team=db".to_string())
        },
    )
    .unwrap()
    .otlp
    .unwrap();
    let listen: SocketAddr = "127.0.0.1:9898".parse().unwrap();
    let resource: BTreeMap<String, String> = resource(&config, listen, Some("db-1"))
        .into_iter()
        .collect();
    assert_eq!(resource["service.name"], "poolwatch");
    assert_eq!(resource["service.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(resource["host.name"], "override");
    assert_eq!(resource["team"], "db");
    let id = &resource["service.instance.id"];
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 5);
    let again: BTreeMap<_, _> = super::resource(&config, listen, Some("db-1"))
        .into_iter()
        .collect();
    assert_eq!(&again["service.instance.id"], id, "stable");
    let other: BTreeMap<_, _> =
        super::resource(&config, "127.0.0.1:9899".parse().unwrap(), Some("db-1"))
            .into_iter()
            .collect();
    assert_ne!(&other["service.instance.id"], id, "one per listen address");
}
