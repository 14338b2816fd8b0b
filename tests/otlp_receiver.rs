//! The OTLP receiver end to end: the OpenTelemetry Rust SDK reports known pool states over
//! http/protobuf, http/json and gRPC to a running agent, whose `/metrics` must show exactly those
//! figures; delta, cumulative and an application restart; pools that end or go stale; and every
//! kind of bad request, answered with the right 4xx and its reason while the agent goes on.
//! Bad bodies are made from what the SDK really sends (captured, then cut, inflated or mislabelled).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_otlp::{
    Compression, MetricExporter, Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use prost::Message;

use crate::common::exposition::Exposition;
use crate::common::{Agent, free_port};

const POOL: &str = "db_client_connection_pool_name";
const BOUNDS: [f64; 4] = [0.1, 0.5, 1.0, 5.0];
const LIMIT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Transport {
    HttpProtobuf,
    HttpJson,
    Grpc,
}

/// A real SDK meter provider reporting one application's pools the way the poolwatch SQLAlchemy
/// integration names them. It exports only when flushed.
struct Sender {
    provider: SdkMeterProvider,
    instruments: Instruments,
    /// gRPC's client needs a Tokio runtime for as long as it exports.
    _runtime: Option<tokio::runtime::Runtime>,
}

struct Instruments {
    count: opentelemetry::metrics::UpDownCounter<i64>,
    pending: opentelemetry::metrics::UpDownCounter<i64>,
    max: opentelemetry::metrics::UpDownCounter<i64>,
    idle_max: opentelemetry::metrics::UpDownCounter<i64>,
    size: opentelemetry::metrics::UpDownCounter<i64>,
    overflow: opentelemetry::metrics::UpDownCounter<i64>,
    timeouts: opentelemetry::metrics::Counter<u64>,
    opened: opentelemetry::metrics::Counter<u64>,
    closed: opentelemetry::metrics::Counter<u64>,
    wait_time: opentelemetry::metrics::Histogram<f64>,
    use_time: opentelemetry::metrics::Histogram<f64>,
    create_time: opentelemetry::metrics::Histogram<f64>,
}

/// What a pool did between two reports.
#[derive(Clone, Default)]
struct Activity {
    /// Changes of the current counts.
    used: i64,
    idle: i64,
    pending: i64,
    limits: Option<(i64, i64)>,
    timeouts: u64,
    opened: u64,
    closed: u64,
    waits: Vec<f64>,
    uses: Vec<f64>,
    creates: Vec<f64>,
}

struct SenderOptions<'a> {
    transport: Transport,
    url: String,
    temporality: Temporality,
    instance: &'a str,
    token: Option<&'a str>,
    gzip: bool,
}

impl Sender {
    fn new(o: SenderOptions) -> Sender {
        let mut headers = HashMap::new();
        if let Some(token) = o.token {
            headers.insert("authorization".to_string(), format!("Bearer {token}"));
        }
        let compression = o.gzip.then_some(Compression::Gzip);
        let (exporter, runtime) = match o.transport {
            Transport::HttpProtobuf | Transport::HttpJson => {
                let protocol = if o.transport == Transport::HttpJson {
                    Protocol::HttpJson
                } else {
                    Protocol::HttpBinary
                };
                let mut builder = MetricExporter::builder()
                    .with_http()
                    .with_protocol(protocol)
                    .with_endpoint(&o.url)
                    .with_timeout(Duration::from_secs(5))
                    .with_headers(headers)
                    .with_temporality(o.temporality);
                if let Some(c) = compression {
                    builder = builder.with_compression(c);
                }
                (builder.build().unwrap(), None)
            }
            Transport::Grpc => {
                let runtime = tokio::runtime::Runtime::new().unwrap();
                let mut metadata = tonic::metadata::MetadataMap::new();
                if let Some(token) = o.token {
                    metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
                }
                let exporter = runtime.block_on(async {
                    let mut builder = MetricExporter::builder()
                        .with_tonic()
                        .with_endpoint(&o.url)
                        .with_timeout(Duration::from_secs(5))
                        .with_metadata(metadata)
                        .with_temporality(o.temporality);
                    if let Some(c) = compression {
                        builder = builder.with_compression(c);
                    }
                    builder.build().unwrap()
                });
                (exporter, Some(runtime))
            }
        };
        let reader = PeriodicReader::builder(exporter)
            .with_interval(Duration::from_secs(3600))
            .build();
        let resource = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", "mdm-tests"),
                KeyValue::new("service.instance.id", o.instance.to_string()),
            ])
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource)
            .build();
        let meter = provider.meter("poolwatch-tests");
        let up_down = |name: &'static str| meter.i64_up_down_counter(name).build();
        let counter = |name: &'static str| meter.u64_counter(name).build();
        let seconds = |name: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_boundaries(BOUNDS.to_vec())
                .build()
        };
        let instruments = Instruments {
            count: up_down("db.client.connection.count"),
            pending: up_down("db.client.connection.pending_requests"),
            max: up_down("db.client.connection.max"),
            idle_max: up_down("db.client.connection.idle.max"),
            size: up_down("poolwatch.pool.size"),
            overflow: up_down("poolwatch.pool.max_overflow"),
            timeouts: counter("db.client.connection.timeouts"),
            opened: counter("poolwatch.pool.connections.opened"),
            closed: counter("poolwatch.pool.connections.closed"),
            wait_time: seconds("db.client.connection.wait_time"),
            use_time: seconds("db.client.connection.use_time"),
            create_time: seconds("db.client.connection.create_time"),
        };
        Sender {
            provider,
            instruments,
            _runtime: runtime,
        }
    }

    /// Records what a pool did, under `pool` (no pool name at all when `None`).
    fn record(&self, pool: Option<&str>, a: &Activity) {
        let i = &self.instruments;
        let attrs: Vec<KeyValue> = pool
            .map(|p| KeyValue::new("db.client.connection.pool.name", p.to_string()))
            .into_iter()
            .collect();
        let with = |key: &'static str, value: &'static str| {
            let mut all = attrs.clone();
            all.push(KeyValue::new(key, value));
            all
        };
        i.count
            .add(a.used, &with("db.client.connection.state", "used"));
        i.count
            .add(a.idle, &with("db.client.connection.state", "idle"));
        i.pending.add(a.pending, &attrs);
        if let Some((size, overflow)) = a.limits {
            i.max.add(size + overflow, &attrs);
            i.idle_max.add(size, &attrs);
            i.size.add(size, &attrs);
            i.overflow.add(overflow, &attrs);
        }
        i.timeouts.add(a.timeouts, &attrs);
        i.opened.add(a.opened, &attrs);
        i.closed.add(a.closed, &with("reason", "close"));
        a.waits.iter().for_each(|w| i.wait_time.record(*w, &attrs));
        a.uses.iter().for_each(|u| i.use_time.record(*u, &attrs));
        a.creates
            .iter()
            .for_each(|c| i.create_time.record(*c, &attrs));
    }

    fn flush(&self) -> Result<(), String> {
        self.provider.force_flush().map_err(|e| e.to_string())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// The figures of the first report: 3 used, 2 idle, 4 waiting on a 5 + 2 pool.
fn first_report() -> Activity {
    Activity {
        used: 3,
        idle: 2,
        pending: 4,
        limits: Some((5, 2)),
        timeouts: 2,
        opened: 6,
        closed: 1,
        waits: vec![0.05, 0.2, 0.25, 2.0],
        uses: vec![0.5, 1.5],
        creates: vec![0.01, 0.02, 0.03, 0.04, 0.05, 0.06],
    }
}

/// Two more checkouts: they waited 0.3 and 0.5 s and held their connection 1 and 3 s.
fn second_report() -> Activity {
    Activity {
        pending: -4,
        timeouts: 1,
        waits: vec![0.3, 0.5],
        uses: vec![1.0, 3.0],
        ..Activity::default()
    }
}

fn labels<'a>(pool: &'a str, instance: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("target", "otlp"),
        ("source", "otlp"),
        (POOL, pool),
        ("service_name", "mdm-tests"),
        ("service_instance_id", instance),
    ]
}

fn value(
    m: &Exposition,
    name: &str,
    labels: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> Option<f64> {
    let all: Vec<(&str, &str)> = labels.iter().chain(extra).copied().collect();
    m.get(name, &all)
}

/// A series' name, the labels beyond the pool's, and its value.
type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// Every figure of the first report, as `/metrics` must show it.
fn assert_first_report(m: &Exposition, pool: &str, instance: &str) {
    let l = labels(pool, instance);
    let get = |name: &str, extra: &[(&str, &str)]| value(m, name, &l, extra);
    let expected: &[Expected] = &[
        (
            "db_client_connection_count",
            &[("db_client_connection_state", "used")],
            3.0,
        ),
        (
            "db_client_connection_count",
            &[("db_client_connection_state", "idle")],
            2.0,
        ),
        ("db_client_connection_pending_requests", &[], 4.0),
        ("db_client_connection_max", &[], 7.0),
        ("db_client_connection_idle_max", &[], 5.0),
        ("poolwatch_pool_size", &[], 5.0),
        ("poolwatch_pool_max_overflow", &[], 2.0),
        ("db_client_connection_timeouts_total", &[], 2.0),
        ("poolwatch_pool_connections_opened_total", &[], 6.0),
        ("poolwatch_pool_connections_closed_total", &[], 1.0),
        ("poolwatch_pool_utilization_ratio", &[], 0.6),
        ("poolwatch_pool_transactions_total", &[], 2.0),
    ];
    for (name, extra, want) in expected {
        let got =
            get(name, extra).unwrap_or_else(|| panic!("{name}{extra:?} missing:\n{}", m.text));
        assert!(
            (got - want).abs() < 1e-9,
            "{name}{extra:?}: {got}, expected {want}"
        );
    }
    // Cumulative buckets by `le` (a bound holds what equals it): waits 0.05 | 0.2 0.25 | - |
    // 2.0 | -, uses - | 0.5 | - | 1.5 | -.
    let buckets: &[(&str, &[(&str, f64)])] = &[
        (
            "db_client_connection_wait_time_seconds",
            &[
                ("0.1", 1.0),
                ("0.5", 3.0),
                ("1", 3.0),
                ("5", 4.0),
                ("+Inf", 4.0),
            ],
        ),
        (
            "db_client_connection_use_time_seconds",
            &[
                ("0.1", 0.0),
                ("0.5", 1.0),
                ("1", 1.0),
                ("5", 2.0),
                ("+Inf", 2.0),
            ],
        ),
        (
            "db_client_connection_create_time_seconds",
            &[
                ("0.1", 6.0),
                ("0.5", 6.0),
                ("1", 6.0),
                ("5", 6.0),
                ("+Inf", 6.0),
            ],
        ),
    ];
    for (family, by_le) in buckets {
        for (le, want) in *by_le {
            let got = get(&format!("{family}_bucket"), &[("le", le)]);
            assert_eq!(got, Some(*want), "{family} le={le}");
        }
        let count = by_le.last().map(|(_, c)| *c);
        assert_eq!(
            get(&format!("{family}_count"), &[]),
            count,
            "{family}_count"
        );
    }
    let sums = [
        ("db_client_connection_wait_time_seconds_sum", 2.5),
        ("db_client_connection_use_time_seconds_sum", 2.0),
        ("db_client_connection_create_time_seconds_sum", 0.21),
    ];
    for (name, want) in sums {
        let got = get(name, &[]).unwrap();
        assert!((got - want).abs() < 1e-9, "{name}: {got}, expected {want}");
    }
}

/// The totals after both reports, 6 waits in all, and the current pending count.
fn assert_second_report(m: &Exposition, l: &[(&str, &str)], pending: f64) {
    let get = |name: &str, extra: &[(&str, &str)]| value(m, name, l, extra);
    assert_eq!(get("db_client_connection_timeouts_total", &[]), Some(3.0));
    assert_eq!(
        get("db_client_connection_wait_time_seconds_count", &[]),
        Some(6.0)
    );
    assert_eq!(
        get(
            "db_client_connection_wait_time_seconds_bucket",
            &[("le", "0.5")]
        ),
        Some(5.0)
    );
    assert_eq!(
        get("db_client_connection_pending_requests", &[]),
        Some(pending)
    );
}

fn receiver_config(extra: &str, grpc: u16, http: u16) -> String {
    format!(
        "sample_interval: 250ms\nrate_window: 1m\notlp_receiver:\n  grpc_listen: 127.0.0.1:{grpc}\n  http_listen: 127.0.0.1:{http}\n{extra}"
    )
}

/// The same pool state over the three transports (and both temporalities, gzip or not) lands in
/// `/metrics` exactly; a second report gives the spec's average wait and usage over the rate
/// window from the histograms' sums and counts.
#[test]
fn sdk_reports_over_every_transport_show_exactly() {
    let (grpc, http) = (free_port(), free_port());
    let agent = Agent::start(&receiver_config("", grpc, http));
    let senders = [
        (
            "proto",
            Transport::HttpProtobuf,
            format!("http://{}/v1/metrics", agent.addr),
            Temporality::Cumulative,
            false,
        ),
        (
            "json",
            Transport::HttpJson,
            format!("http://127.0.0.1:{http}/v1/metrics"),
            Temporality::Delta,
            true,
        ),
        (
            "grpc",
            Transport::Grpc,
            format!("http://127.0.0.1:{grpc}"),
            Temporality::Cumulative,
            true,
        ),
    ];
    let senders: Vec<(&str, Sender)> = senders
        .into_iter()
        .map(|(instance, transport, url, temporality, gzip)| {
            let sender = Sender::new(SenderOptions {
                transport,
                url,
                temporality,
                instance,
                token: None,
                gzip,
            });
            sender.record(Some("mdm_demo"), &first_report());
            sender
                .flush()
                .unwrap_or_else(|e| panic!("{instance}: {e}\n{}", agent.log()));
            (instance, sender)
        })
        .collect();
    let m = agent.wait_metrics(LIMIT, "the three pools", |m| {
        senders
            .iter()
            .all(|(i, _)| {
                value(
                    m,
                    "db_client_connection_wait_time_seconds_count",
                    &labels("mdm_demo", i),
                    &[],
                ) == Some(4.0)
            })
            .then(|| m.clone())
    });
    for (instance, _) in &senders {
        assert_first_report(&m, "mdm_demo", instance);
    }
    for (instance, sender) in &senders {
        sender.record(Some("mdm_demo"), &second_report());
        sender.flush().unwrap();
        let l = labels("mdm_demo", instance);
        let m = agent.wait_metrics(LIMIT, "the averages", |m| {
            value(m, "poolwatch_pool_avg_usage_time_seconds", &l, &[]).map(|_| m.clone())
        });
        // (0.3 + 0.5) / 2 and (1 + 3) / 2 since the first report.
        let wait = value(&m, "poolwatch_pool_avg_wait_time_seconds", &l, &[]).unwrap();
        let usage = value(&m, "poolwatch_pool_avg_usage_time_seconds", &l, &[]).unwrap();
        assert!(
            (wait - 0.4).abs() < 1e-9 && (usage - 2.0).abs() < 1e-9,
            "{instance}: {wait} {usage}"
        );
        assert_second_report(&m, &l, 0.0);
    }
    let own = agent.metrics();
    assert_eq!(
        own.get(
            "poolwatch_otlp_requests_total",
            &[("transport", "grpc"), ("outcome", "accepted")]
        ),
        Some(2.0)
    );
    assert_eq!(
        own.get(
            "poolwatch_otlp_data_points_refused_total",
            &[("reason", "missing_pool_name")]
        ),
        Some(0.0)
    );
}

/// An application that restarts starts its cumulative counters and histograms again; the agent's
/// totals go on from where they were, as Prometheus' increase() counts across a reset.
#[test]
fn an_application_restart_is_a_reset_not_a_drop() {
    let agent = Agent::start("sample_interval: 250ms\n");
    let url = format!("http://{}/v1/metrics", agent.addr);
    let options = || SenderOptions {
        transport: Transport::HttpProtobuf,
        url: url.clone(),
        temporality: Temporality::Cumulative,
        instance: "restarting",
        token: None,
        gzip: false,
    };
    let l = labels("p", "restarting");
    let first = Sender::new(options());
    first.record(Some("p"), &first_report());
    first.flush().unwrap();
    agent.wait_metrics(LIMIT, "the first run", |m| {
        (value(m, "db_client_connection_timeouts_total", &l, &[]) == Some(2.0)).then_some(())
    });
    drop(first);
    // The same instance id, a new process: its counters start over at a later start time.
    let second = Sender::new(options());
    second.record(
        Some("p"),
        &Activity {
            pending: 1,
            ..second_report()
        },
    );
    second.flush().unwrap();
    let m = agent.wait_metrics(LIMIT, "the second run", |m| {
        (value(m, "db_client_connection_timeouts_total", &l, &[]) == Some(3.0)).then(|| m.clone())
    });
    // The second run's current counts are its own (1 pending), not added to the first's.
    assert_second_report(&m, &l, 1.0);
}

/// A pool whose process closed everything and exited is ended; one that went silent with
/// connections in use is stale, its health unknown. Both leave /metrics.
#[test]
fn silent_pools_end_or_go_stale() {
    let agent = Agent::start("sample_interval: 250ms\notlp_receiver:\n  stale_after: 2s\n");
    let sender = Sender::new(SenderOptions {
        transport: Transport::HttpProtobuf,
        url: format!("http://{}/v1/metrics", agent.addr),
        temporality: Temporality::Cumulative,
        instance: "short-lived",
        token: None,
        gzip: false,
    });
    sender.record(
        Some("disposed"),
        &Activity {
            used: 2,
            idle: 1,
            ..Activity::default()
        },
    );
    sender.record(
        Some("crashed"),
        &Activity {
            used: 2,
            pending: 1,
            ..Activity::default()
        },
    );
    sender.flush().unwrap();
    // engine.dispose(): every connection closed, then the exit flush.
    sender.record(
        Some("disposed"),
        &Activity {
            used: -2,
            idle: -1,
            closed: 3,
            ..Activity::default()
        },
    );
    sender.flush().unwrap();
    agent.wait_metrics(LIMIT, "both pools", |m| {
        let used = |p| {
            value(
                m,
                "db_client_connection_count",
                &labels(p, "short-lived"),
                &[("db_client_connection_state", "used")],
            )
        };
        (used("disposed") == Some(0.0) && used("crashed") == Some(2.0)).then_some(())
    });
    drop(sender);
    agent.wait_metrics(LIMIT, "the pools to leave /metrics", |m| {
        (!m.text.contains("service_instance_id=\"short-lived\"")).then_some(())
    });
    let (_, targets) = agent.get("/api/v1/targets").unwrap();
    let targets: serde_json::Value = serde_json::from_str(&targets).unwrap();
    let otlp = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "otlp")
        .unwrap();
    let gone: BTreeMap<String, String> = otlp["gone"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["pool"].as_str().unwrap().to_string(),
                g["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        gone,
        BTreeMap::from([
            ("crashed".into(), "stale".into()),
            ("disposed".into(), "ended".into())
        ])
    );
    let (_, health) = agent.get("/api/v1/health").unwrap();
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    let pools: Vec<(&str, &str)> = health["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["pool"].as_str().unwrap(), p["status"].as_str().unwrap()))
        .collect();
    assert_eq!(pools, [("crashed", "unknown")]);
    let log = agent.log();
    assert!(log.contains("pushed pool ended"), "{log}");
    assert!(
        log.contains("stopped reporting with connections open"),
        "{log}"
    );
}

/// Captures the body (and headers) the SDK sends for `activity`, answering like a receiver.
fn captured(
    transport: Transport,
    pool: Option<&str>,
    activity: &Activity,
    gzip: bool,
) -> (String, Vec<u8>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/metrics", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut data = Vec::new();
        let mut buf = [0u8; 8192];
        let (head, length) = loop {
            let n = stream.read(&mut buf).unwrap();
            data.extend_from_slice(&buf[..n]);
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                data.drain(..end + 4);
                break (head, length);
            }
        };
        while data.len() < length {
            let n = stream.read(&mut buf).unwrap();
            data.extend_from_slice(&buf[..n]);
        }
        let content_type = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-type:")
                    .map(|v| v.trim().to_string())
            })
            .unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
        (content_type, data)
    });
    let sender = Sender::new(SenderOptions {
        transport,
        url,
        temporality: Temporality::Cumulative,
        instance: "captured",
        token: None,
        gzip,
    });
    sender.record(pool, activity);
    sender.flush().unwrap();
    server.join().unwrap()
}

/// POSTs a body to the agent: (status, content type, body).
fn post(
    agent: &Agent,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let url = format!("http://{}/v1/metrics", agent.addr);
    let mut request = ureq::post(&url)
        .config()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .header("content-type", content_type);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut response = request.send(body).unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.body_mut().read_to_vec().unwrap();
    (status, kind, body)
}

/// `google.rpc.Status`, an OTLP/HTTP error body in protobuf.
#[derive(Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// The `message` of a `google.rpc.Status` error body, in JSON or protobuf.
fn reason_in(content_type: &str, body: &[u8]) -> String {
    if content_type == "application/x-protobuf" {
        let status = RpcStatus::decode(body).unwrap();
        assert_eq!(status.code, 3);
        return status.message;
    }
    let status: serde_json::Value = serde_json::from_slice(body).unwrap();
    status["message"].as_str().unwrap().to_string()
}

fn reason(body: &[u8]) -> String {
    reason_in("application/json", body)
}

/// A good pool's series, to check nothing else moved.
/// The good pool's series, but for how long it has been watched (which moves with the clock).
fn good_series(m: &Exposition) -> Vec<(String, BTreeMap<String, String>, u64)> {
    m.series
        .iter()
        .filter(|s| s.labels.get("service_instance_id").map(String::as_str) == Some("good"))
        .filter(|s| s.name != "poolwatch_pool_observed_seconds")
        .map(|s| (s.name.clone(), s.labels.clone(), s.value.to_bits()))
        .collect()
}

#[test]
fn bad_requests_get_the_right_4xx_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("otlp.token");
    std::fs::write(&token_file, "t0ken-9c1\n").unwrap();
    let (grpc, http) = (free_port(), free_port());
    let agent = Agent::start(&receiver_config(
        &format!(
            "  bearer_token_file: {}\n  max_payload_bytes: 65536\n",
            token_file.display()
        ),
        grpc,
        http,
    ));
    let good = Sender::new(SenderOptions {
        transport: Transport::HttpProtobuf,
        url: format!("http://{}/v1/metrics", agent.addr),
        temporality: Temporality::Cumulative,
        instance: "good",
        token: Some("t0ken-9c1"),
        gzip: false,
    });
    good.record(Some("kept"), &first_report());
    good.flush().unwrap();
    // Once it has a rate (two samples), nothing about it changes until it reports again.
    let before = agent.wait_metrics(LIMIT, "the good pool", |m| {
        value(
            m,
            "poolwatch_pool_connection_churn_per_minute",
            &labels("kept", "good"),
            &[],
        )
        .map(|_| m.clone())
    });
    let auth = [("authorization", "Bearer t0ken-9c1")];
    let (proto_type, proto) =
        captured(Transport::HttpProtobuf, Some("bad"), &first_report(), false);
    let (json_type, json) = captured(Transport::HttpJson, Some("bad"), &first_report(), false);
    assert_eq!(
        (proto_type.as_str(), json_type.as_str()),
        ("application/x-protobuf", "application/json")
    );
    let (_, nameless) = captured(Transport::HttpProtobuf, None, &first_report(), false);

    // The token: missing or wrong is 401, before anything is read.
    for headers in [
        &[][..],
        &[("authorization", "Bearer wrong")][..],
        &[("authorization", "t0ken-9c1")][..],
    ] {
        let (status, _, body) = post(&agent, "application/json", headers, &json);
        assert_eq!(status, 401, "{headers:?}");
        assert_eq!(reason(&body), "missing or wrong bearer token");
    }
    let wrong_token = Sender::new(SenderOptions {
        transport: Transport::Grpc,
        url: format!("http://127.0.0.1:{grpc}"),
        temporality: Temporality::Cumulative,
        instance: "bad",
        token: Some("wrong"),
        gzip: false,
    });
    wrong_token.record(Some("bad"), &first_report());
    // The SDK only says the flush failed; the agent counts why (below).
    assert!(wrong_token.flush().is_err());

    // Malformed, truncated and mislabelled bodies: 400 with why.
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "garbage",
            "application/x-protobuf",
            b"\xff\xfe not protobuf".to_vec(),
            "not a protobuf ExportMetricsServiceRequest",
        ),
        (
            "truncated protobuf",
            "application/x-protobuf",
            proto[..proto.len() / 2].to_vec(),
            "not a protobuf ExportMetricsServiceRequest",
        ),
        (
            "truncated json",
            "application/json",
            json[..json.len() / 2].to_vec(),
            "not an OTLP/JSON ExportMetricsServiceRequest",
        ),
        (
            "protobuf sent as json",
            "application/json",
            proto.clone(),
            "not an OTLP/JSON ExportMetricsServiceRequest",
        ),
        (
            "a number for a name",
            "application/json",
            br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":5}]}]}]}"#.to_vec(),
            "invalid type: integer `5`, expected a string",
        ),
        (
            "bad gzip",
            "application/x-protobuf",
            b"\x1f\x8b\x08\x00\x00\x00".to_vec(),
            "gzip",
        ),
    ];
    for (what, content_type, body, why) in &cases {
        let mut headers = auth.to_vec();
        if *what == "bad gzip" {
            headers.push(("content-encoding", "gzip"));
        }
        let (status, kind, answer) = post(&agent, content_type, &headers, body);
        assert_eq!(status, 400, "{what}");
        let message = reason_in(&kind, &answer);
        assert!(message.contains(why), "{what}: {message}");
    }

    // A value of the wrong type inside a point: the point is refused, and alone it is a 400.
    let object_for_int = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"db.client.connection.max","gauge":{"dataPoints":[{"asInt":{},"attributes":[{"key":"db.client.connection.pool.name","value":{"stringValue":"bad"}}]}]}}]}]}]}"#;
    let (status, _, body) = post(&agent, "application/json", &auth, object_for_int);
    assert_eq!(status, 400);
    assert!(reason(&body).starts_with("1 refused (invalid_value, e.g. db.client.connection.max)"));

    // The wrong media type is 415; an unknown content encoding too.
    let (status, _, body) = post(&agent, "text/plain", &auth, &json);
    assert_eq!(status, 415);
    assert!(String::from_utf8_lossy(&body).contains("unsupported content type `text/plain`"));
    let (status, _, _) = post(
        &agent,
        "application/json",
        &[auth[0], ("content-encoding", "br")],
        &json,
    );
    assert_eq!(status, 415);

    // Oversized: as sent, and once inflated from a small gzip body.
    let big = vec![b' '; 70_000];
    let (status, _, body) = post(&agent, "application/json", &auth, &big);
    assert_eq!(status, 413);
    assert!(reason(&body).contains("limit of 65536 bytes"));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&big).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1000);
    let (status, _, _) = post(
        &agent,
        "application/json",
        &[auth[0], ("content-encoding", "gzip")],
        &bomb,
    );
    assert_eq!(status, 413);

    // Points without a pool name: 400 when they are all there is, partial success beside good ones.
    // One point per instrument and attribute set: 2 counts, pending, 4 limits, 3 counters and
    // 3 histograms.
    let nameless_points = 13;
    let (status, kind, body) = post(&agent, "application/x-protobuf", &auth, &nameless);
    assert_eq!(status, 400);
    let message = reason_in(&kind, &body);
    assert!(
        message.starts_with("13 refused (missing_pool_name"),
        "{message}"
    );
    let mut mixed =
        opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest::decode(
            &nameless[..],
        )
        .unwrap();
    let named =
        opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest::decode(
            &proto[..],
        )
        .unwrap();
    mixed.resource_metrics.extend(named.resource_metrics);
    let (status, _, body_mixed) = post(
        &agent,
        "application/x-protobuf",
        &auth,
        &mixed.encode_to_vec(),
    );
    assert_eq!(status, 200);
    let response = ExportMetricsServiceResponse::decode(&body_mixed[..]).unwrap();
    let partial = response.partial_success.unwrap();
    assert_eq!(partial.rejected_data_points, nameless_points);
    assert!(
        partial
            .error_message
            .contains("db.client.connection.pool.name"),
        "{}",
        partial.error_message
    );

    // The same good pool, the same figures, and /metrics still serving.
    let after = agent.metrics();
    assert_eq!(good_series(&after), good_series(&before));
    assert_first_report(&after, "kept", "good");
    let count = |outcome| {
        after.get(
            "poolwatch_otlp_requests_total",
            &[("transport", "http"), ("outcome", outcome)],
        )
    };
    assert_eq!(count("unauthorized"), Some(3.0));
    assert_eq!(count("malformed"), Some(cases.len() as f64));
    assert_eq!(count("unsupported_type"), Some(2.0));
    assert_eq!(count("too_large"), Some(2.0));
    assert_eq!(count("refused"), Some(2.0));
    assert_eq!(count("partial"), Some(1.0));
    assert_eq!(
        after.get(
            "poolwatch_otlp_requests_total",
            &[("transport", "grpc"), ("outcome", "unauthorized")]
        ),
        Some(1.0)
    );
    assert_eq!(
        after.get(
            "poolwatch_otlp_data_points_refused_total",
            &[("reason", "missing_pool_name")]
        ),
        Some(2.0 * nameless_points as f64)
    );
    assert!(!agent.log().contains("t0ken-9c1"));
}
