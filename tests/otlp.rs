//! OTLP push against a real OTLP receiver (tests/otlp_receiver/receiver.py: OpenTelemetry's own
//! Python protobuf classes and gRPC), over http/protobuf and over gRPC: the semantic-convention
//! names, units and attributes, the resource, and the very values `/metrics` shows for the same
//! sample. Then a collector that is down, or that takes connections and never answers.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::otlp::{Receiver, Transport};
use crate::common::{self, Agent, Holders, PgBouncer, free_port, target, wait_for};

const POOL_NAME: &str = "mdm_demo/mdm";

/// Every data point of a request as the Prometheus series it is on `/metrics`: families mapped
/// back by the catalogue, attributes back to labels, histograms to buckets, sum and count.
fn as_series(request: &Value) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let mut series = BTreeMap::new();
    for m in all_metrics(request) {
        let otel = m["name"].as_str().unwrap();
        let family = poolwatch::exposition::CATALOGUE
            .iter()
            .find(|f| f.otel == otel)
            .unwrap_or_else(|| panic!("{otel} is not in the catalogue"));
        let mut put = |suffix: &str, labels: BTreeMap<String, String>, value: f64| {
            let name = format!("{}{suffix}", family.name);
            assert!(
                series.insert((name, labels), value).is_none(),
                "{otel} twice"
            );
        };
        for kind in ["gauge", "sum"] {
            for point in m[kind]["data_points"].as_array().into_iter().flatten() {
                put("", labels(point), point["as_double"].as_f64().unwrap());
            }
        }
        for point in m["histogram"]["data_points"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let labels = labels(point);
            let bounds = point["explicit_bounds"].as_array().unwrap();
            let mut cumulative = 0.0;
            for (i, count) in point["bucket_counts"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
            {
                cumulative += number(count);
                let le = bounds.get(i).map_or("+Inf".to_string(), |b| {
                    prometheus_number(b.as_f64().unwrap())
                });
                let mut with_le = labels.clone();
                with_le.insert("le".into(), le);
                put("_bucket", with_le, cumulative);
            }
            put("_sum", labels.clone(), point["sum"].as_f64().unwrap());
            put("_count", labels, number(&point["count"]));
        }
    }
    series
}

/// A number as the Prometheus text format writes it: integers without a fraction.
fn prometheus_number(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn all_metrics(request: &Value) -> Vec<&Value> {
    request["resource_metrics"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["scope_metrics"].as_array().unwrap())
        .flat_map(|s| s["metrics"].as_array().unwrap())
        .collect()
}

/// A 64-bit integer of protobuf's JSON mapping, which writes them as strings.
fn number(v: &Value) -> f64 {
    v.as_str()
        .map_or_else(|| v.as_f64().unwrap(), |s| s.parse().unwrap())
}

fn attributes(holder: &Value) -> BTreeMap<String, String> {
    holder["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|kv| {
            let key = kv["key"].as_str().unwrap().to_string();
            let value = kv["value"]["string_value"].as_str().unwrap().to_string();
            (key, value)
        })
        .collect()
}

fn labels(point: &Value) -> BTreeMap<String, String> {
    attributes(point)
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "db.client.connection.pool.name" => ("db_client_connection_pool_name".into(), v),
            "db.client.connection.state" => ("db_client_connection_state".into(), v),
            _ => (k, v),
        })
        .collect()
}

/// The series of `/metrics` that the pool model writes (not the agent's own telemetry).
fn model_series(
    m: &common::exposition::Exposition,
) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    m.series
        .iter()
        .filter(|s| {
            poolwatch::exposition::family_of_series(&s.name)
                .is_some_and(|f| !f.is_agent_telemetry())
        })
        .map(|s| ((s.name.clone(), s.labels.clone()), s.value))
        .collect()
}

fn metric<'a>(request: &'a Value, name: &str) -> &'a Value {
    all_metrics(request)
        .into_iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in the request"))
}

/// The value of the point of `name` whose attributes include `wanted`.
fn point_value(request: &Value, name: &str, wanted: &[(&str, &str)]) -> Option<f64> {
    let m = all_metrics(request)
        .into_iter()
        .find(|m| m["name"] == name)?;
    ["gauge", "sum"]
        .iter()
        .flat_map(|k| m[*k]["data_points"].as_array().into_iter().flatten())
        .find(|p| {
            let a = attributes(p);
            wanted
                .iter()
                .all(|(k, v)| a.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|p| p["as_double"].as_f64().unwrap())
}

/// Clients hold 5 server connections of a private pool of 5, and 7 more wait for one; returns
/// once PgBouncer itself says so, so that the agent's one sample sees exactly that.
async fn saturated_pool() -> (PgBouncer, Holders) {
    let bouncer = PgBouncer::start(5);
    let holders = Holders::spawn(&bouncer.app_config(), 12);
    let admin: tokio_postgres::Config = bouncer.admin_url().parse().unwrap();
    let console = common::connect(&admin).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = console.simple_query("SHOW POOLS").await.unwrap();
        let saturated = rows.iter().any(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                r.get("database") == Some("mdm_demo")
                    && r.get("sv_active") == Some("5")
                    && r.get("cl_waiting") == Some("7")
            }
            _ => false,
        });
        if saturated {
            return (bouncer, holders);
        }
        assert!(
            Instant::now() < deadline,
            "PgBouncer never showed 5 active and 7 waiting"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An agent that samples `bouncer` once (the next sample is an hour away), so `/metrics` and
/// every export after it hold the same sample.
fn one_sample_config(bouncer: &PgBouncer, otlp: &str) -> String {
    format!(
        "sample_interval: 1h\nrate_window: 1h\nwindow: 1h\ntargets:\n{}{otlp}",
        target(
            "pgbouncer",
            "bouncer",
            &bouncer.admin_url(),
            &["labels: {role: write}"]
        )
    )
}

/// Waits for the export that carries the agent's sample of the saturated pool, then checks it
/// against `/metrics`: every series of the pool model, with the same value.
fn export_equals_metrics(agent: &Agent, receiver: &Receiver) -> Value {
    let pool = ("db.client.connection.pool.name", POOL_NAME);
    let request = wait_for(Duration::from_secs(30), "an export with the sample", || {
        receiver.requests().into_iter().rev().find(|r| {
            point_value(
                &r["request"],
                "db.client.connection.count",
                &[pool, ("db.client.connection.state", "used")],
            ) == Some(5.0)
        })
    });
    let shown = agent.metrics();
    let expected = model_series(&shown);
    let exported = as_series(&request["request"]);
    assert_eq!(exported, expected);
    let pending = point_value(
        &request["request"],
        "db.client.connection.pending_requests",
        &[pool],
    );
    assert_eq!(pending, Some(7.0));
    request
}

fn check_semantic_conventions(request: &Value) {
    let count = metric(request, "db.client.connection.count");
    assert_eq!(count["unit"], "{connection}");
    assert_eq!(
        count["sum"]["aggregation_temporality"],
        "AGGREGATION_TEMPORALITY_CUMULATIVE"
    );
    assert_eq!(
        count["sum"]["is_monotonic"],
        Value::Null,
        "an UpDownCounter (not monotonic)"
    );
    let used = count["sum"]["data_points"]
        .as_array()
        .unwrap()
        .iter()
        .map(attributes)
        .find(|a| a["db.client.connection.state"] == "used")
        .unwrap();
    let want: BTreeMap<String, String> = [
        ("db.client.connection.pool.name", POOL_NAME),
        ("db.client.connection.state", "used"),
        ("dataset", "demo"),
        ("role", "write"),
        ("source", "pgbouncer"),
        ("target", "bouncer"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(used, want);
    for (name, unit) in [
        ("db.client.connection.max", "{connection}"),
        ("db.client.connection.pending_requests", "{request}"),
        ("poolwatch.pool.utilization", "1"),
        ("poolwatch.pool.oldest_wait", "s"),
    ] {
        assert_eq!(metric(request, name)["unit"], unit, "{name}");
    }
    assert!(metric(request, "poolwatch.pool.utilization")["gauge"].is_object());
    let transactions = metric(request, "poolwatch.pool.transactions");
    assert_eq!(transactions["sum"]["is_monotonic"], true);
    let scope = &request["resource_metrics"][0]["scope_metrics"][0]["scope"];
    assert_eq!(scope["name"], "poolwatch");
}

fn resource(request: &Value) -> BTreeMap<String, String> {
    attributes(&request["resource_metrics"][0]["resource"])
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_export_carries_what_metrics_shows() {
    let (bouncer, holders) = saturated_pool().await;
    let port = free_port();
    let receiver = Receiver::start(Transport::Http, port);
    let secret = "key-5bd1-never-logged";
    let otlp = format!(
        "otlp:\n  endpoint: http://127.0.0.1:{port}/v1/metrics\n  interval: 300ms\n  \
         headers:\n    x-api-key: {secret}\n"
    );
    let agent = Agent::start(&one_sample_config(&bouncer, &otlp));
    let request = export_equals_metrics(&agent, &receiver);
    check_semantic_conventions(&request["request"]);
    assert_eq!(request["transport"], "http");
    assert_eq!(request["headers"]["content-type"], "application/x-protobuf");
    assert_eq!(request["headers"]["x-api-key"], secret);
    let resource = resource(&request["request"]);
    assert_eq!(resource["service.name"], "poolwatch");
    assert_eq!(resource["service.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(resource["host.name"], host_name());
    assert_eq!(resource["service.instance.id"].len(), 36, "a UUID");
    assert!(
        !agent.log().contains(secret),
        "the header value is in the log"
    );
    holders.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_configured_by_the_environment_carries_what_metrics_shows() {
    let (bouncer, holders) = saturated_pool().await;
    let port = free_port();
    let receiver = Receiver::start(Transport::Grpc, port);
    let endpoint = format!("http://127.0.0.1:{port}");
    let agent = Agent::start_env(
        &one_sample_config(&bouncer, ""),
        "debug",
        &[
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=env%20key"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
            ("OTEL_SERVICE_NAME", "pools-eu"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
        ],
    );
    let request = export_equals_metrics(&agent, &receiver);
    check_semantic_conventions(&request["request"]);
    assert_eq!(request["transport"], "grpc");
    assert_eq!(request["headers"]["x-api-key"], "env key");
    let resource = resource(&request["request"]);
    assert_eq!(resource["service.name"], "pools-eu");
    assert_eq!(resource["deployment.environment"], "test");
    assert_eq!(resource["host.name"], host_name());
    holders.release().await;
}

/// Resident memory of a process in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

fn scrape_within(agent: &Agent, limit: Duration) -> common::exposition::Exposition {
    let url = format!("http://{}/metrics", agent.addr);
    let body = ureq::get(&url)
        .config()
        .timeout_global(Some(limit))
        .build()
        .call()
        .unwrap_or_else(|e| panic!("/metrics did not answer within {limit:?}: {e}"))
        .body_mut()
        .read_to_string()
        .unwrap();
    common::exposition::Exposition::parse(&body)
}

#[test]
fn an_unreachable_or_silent_collector_costs_nothing_and_export_resumes() {
    // One collector is down (nothing listens on its port); the other takes connections and never
    // answers (a listener nobody accepts from).
    let down = free_port();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let bouncer = format!(
        "postgres://pgbouncer:{}@127.0.0.1:{}/pgbouncer",
        common::PGBOUNCER_PASSWORD,
        common::pgbouncer_port()
    );
    let config = |otlp: String| {
        format!(
            "sample_interval: 500ms\nsample_timeout: 500ms\nrate_window: 10s\ntargets:\n{}{otlp}",
            target("pgbouncer", "bouncer", &bouncer, &[])
        )
    };
    let agents = [
        (
            Agent::start(&config(format!(
                "otlp:\n  endpoint: http://127.0.0.1:{down}\n  protocol: grpc\n  \
                 interval: 200ms\n  timeout: 200ms\n"
            ))),
            "unreachable",
        ),
        (
            Agent::start(&config(format!(
                "otlp:\n  endpoint: http://127.0.0.1:{silent_port}/v1/metrics\n  \
                 interval: 200ms\n  timeout: 200ms\n"
            ))),
            "timeout",
        ),
    ];
    let failures = |m: &common::exposition::Exposition, reason: &str| {
        m.get(
            "poolwatch_otlp_export_failures_total",
            &[("reason", reason)],
        )
    };
    let samples = |m: &common::exposition::Exposition| {
        m.get(
            "poolwatch_target_sample_duration_seconds_count",
            &[("target", "bouncer")],
        )
    };
    let deadline = Duration::from_millis(500);
    for (agent, reason) in &agents {
        let before = scrape_within(agent, deadline);
        let rss_before = rss_mib(agent.child.id());
        // Scrapes keep answering within the sample deadline and sampling goes on while exports
        // fail, until 10 have failed.
        let after = wait_for(Duration::from_secs(30), "10 failed exports", || {
            let m = scrape_within(agent, deadline);
            (failures(&m, reason)? >= 10.0).then_some(m)
        });
        assert!(samples(&after) > samples(&before), "sampling stalled");
        assert_eq!(
            after.get("poolwatch_otlp_last_success_timestamp_seconds", &[]),
            None,
            "no export has succeeded"
        );
        assert!(after.get("poolwatch_otlp_exports_total", &[]).unwrap() >= 10.0);
        eprintln!(
            "{reason}: RSS {rss_before:.1} MiB before, {:.1} MiB after 10 failed exports",
            rss_mib(agent.child.id())
        );
    }

    // The collectors come back on the same ports.
    drop(silent);
    let receivers = [
        Receiver::start(Transport::Grpc, down),
        Receiver::start(Transport::Http, silent_port),
    ];
    for ((agent, _), receiver) in agents.iter().zip(&receivers) {
        wait_for(Duration::from_secs(30), "export to resume", || {
            let m = scrape_within(agent, deadline);
            m.get("poolwatch_otlp_last_success_timestamp_seconds", &[])?;
            receiver.requests().into_iter().find(|r| {
                point_value(
                    &r["request"],
                    "poolwatch.target.up",
                    &[("target", "bouncer")],
                ) == Some(1.0)
            })
        });
        assert!(agent.log().contains("OTLP export resumed"));
    }
}
