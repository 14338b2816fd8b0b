//! The `otlp:` section and the OpenTelemetry environment, key by key, with an injected
//! environment.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::Config;

fn load(yaml: &str, vars: &[(&str, &str)]) -> Result<Config, crate::config::Diagnostics> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    Config::from_yaml(Path::new("p.yaml"), yaml, &env)
}

fn otlp(yaml: &str, vars: &[(&str, &str)]) -> Option<OtlpConfig> {
    load(yaml, vars).unwrap().otlp
}

fn problems(yaml: &str, vars: &[(&str, &str)]) -> Vec<String> {
    load(yaml, vars)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn off_without_the_section_or_the_exporter_variable() {
    assert_eq!(otlp("{}", &[]), None);
    assert_eq!(otlp("{}", &[(ENDPOINT_ENV, "http://c:4318")]), None);
    assert_eq!(otlp("{}", &[(EXPORTER_ENV, "none")]), None);
}

#[test]
fn the_exporter_variable_turns_it_on_with_the_opentelemetry_defaults() {
    let config = otlp("{}", &[(EXPORTER_ENV, "otlp")]).unwrap();
    assert_eq!(config.protocol, Protocol::HttpProtobuf);
    assert_eq!(
        config.endpoint.to_string(),
        "http://localhost:4318/v1/metrics"
    );
    assert_eq!(config.interval, Duration::from_secs(60));
    assert_eq!(config.timeout, Duration::from_secs(10));
    assert_eq!(config.service_name, "poolwatch");
    let grpc = otlp("{}", &[(EXPORTER_ENV, "otlp"), (PROTOCOL_ENV, "grpc")]).unwrap();
    assert_eq!(grpc.endpoint.to_string(), "http://localhost:4317/");
    // OTEL_SDK_DISABLED wins over the variable, an explicit section over both.
    let disabled = [(EXPORTER_ENV, "otlp"), (SDK_DISABLED_ENV, "true")];
    assert_eq!(otlp("{}", &disabled), None);
    assert!(otlp("otlp: {}\n", &disabled).is_some());
    assert_eq!(
        otlp("otlp:\n  enabled: false\n", &[(EXPORTER_ENV, "otlp")]),
        None
    );
}

#[test]
fn endpoints_follow_the_signal_and_the_transport() {
    let on = (EXPORTER_ENV, "otlp");
    // The general endpoint is a base URL: http/protobuf adds the signal's path, gRPC does not.
    let base = (ENDPOINT_ENV, "http://collector:4318/");
    assert_eq!(
        otlp("{}", &[on, base]).unwrap().endpoint.to_string(),
        "http://collector:4318/v1/metrics"
    );
    let grpc = [
        on,
        (ENDPOINT_ENV, "http://collector:4317"),
        (PROTOCOL_ENV, "grpc"),
    ];
    assert_eq!(
        otlp("{}", &grpc).unwrap().endpoint.to_string(),
        "http://collector:4317/"
    );
    // The signal's own variables win over the general ones, the file over both.
    let both = [
        on,
        base,
        (METRICS_ENDPOINT_ENV, "http://metrics:9000/otlp"),
        (PROTOCOL_ENV, "grpc"),
        (METRICS_PROTOCOL_ENV, "http/protobuf"),
    ];
    let config = otlp("{}", &both).unwrap();
    assert_eq!(config.endpoint.to_string(), "http://metrics:9000/otlp");
    assert_eq!(config.protocol, Protocol::HttpProtobuf);
    let file = "otlp:\n  endpoint: http://file:4317\n  protocol: grpc\n";
    let config = otlp(file, &both).unwrap();
    assert_eq!(
        (config.endpoint.to_string(), config.protocol),
        ("http://file:4317/".to_string(), Protocol::Grpc)
    );
}

#[test]
fn headers_merge_name_by_name_and_never_show_their_values() {
    let vars = [
        (EXPORTER_ENV, "otlp"),
        (HEADERS_ENV, "api-key=from%20env,x-team=pools"),
        (METRICS_HEADERS_ENV, "x-team=metrics"),
    ];
    let file = "otlp:\n  headers:\n    X-Team: file\n";
    let config = otlp(file, &vars).unwrap();
    let headers: Vec<(String, String)> = config
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        headers,
        vec![
            ("api-key".to_string(), "from env".to_string()),
            ("x-team".to_string(), "file".to_string()),
        ]
    );
    let shown = format!("{config:?}");
    assert!(
        shown.contains("api-key") && !shown.contains("from env"),
        "{shown}"
    );
}

#[test]
fn interval_and_timeout_in_milliseconds_from_the_environment() {
    let vars = [
        (EXPORTER_ENV, "otlp"),
        (INTERVAL_ENV, "2000"),
        (TIMEOUT_ENV, "30000"),
    ];
    let config = otlp("{}", &vars).unwrap();
    // One push at a time: a deadline past the interval is held to it.
    assert_eq!(
        (config.interval, config.timeout),
        (Duration::from_secs(2), Duration::from_secs(2))
    );
    let config = otlp("otlp:\n  interval: 5s\n", &vars).unwrap();
    assert_eq!(
        (config.interval, config.timeout),
        (Duration::from_secs(5), Duration::from_secs(5))
    );
    let config = otlp("otlp:\n  interval: 30s\n", &[]).unwrap();
    assert_eq!(config.timeout, Duration::from_secs(10));
}

#[test]
fn the_service_name_and_resource_attributes_come_from_the_environment() {
    let vars = [
        (EXPORTER_ENV, "otlp"),
        (
            RESOURCE_ATTRIBUTES_ENV,
            "service.name=from-attributes,deployment.environment=prod%2Feu",
        ),
    ];
    let config = otlp("{}", &vars).unwrap();
    assert_eq!(config.service_name, "from-attributes");
    assert_eq!(
        config.resource_attributes["deployment.environment"],
        "prod/eu"
    );
    let named = [vars[0], vars[1], (SERVICE_NAME_ENV, "pools-eu")];
    assert_eq!(otlp("{}", &named).unwrap().service_name, "pools-eu");
}

#[test]
fn mistakes_are_located_in_the_file_or_named_in_the_environment() {
    let file = "otlp:\n  protocol: http/json\n  endpoint: https://c:4318/v1/metrics\n  \
                interval: 50ms\n  headers:\n    bad name: secret-value\n";
    // The section decides whether export is on: the variable is not read.
    let found = problems(file, &[(EXPORTER_ENV, "console")]);
    assert_eq!(
        found,
        vec![
            "p.yaml:2:13: otlp.protocol: `http/json` is not supported: use http/protobuf or grpc",
            "p.yaml:3:13: otlp.endpoint: https is not supported by this build (no TLS): send to \
             a collector over http://",
            "p.yaml:4:13: otlp.interval: must be at least 100ms",
            "p.yaml:6:5: otlp.headers: `bad name` is not a valid header name",
        ]
    );
    let env = [
        (EXPORTER_ENV, "otlp,console"),
        (INTERVAL_ENV, "soon"),
        (HEADERS_ENV, "authorization=Bearer top\nsecret"),
        (ENDPOINT_ENV, "collector:4318"),
    ];
    let found = problems("{}", &env);
    assert_eq!(
        found,
        vec![
            "(environment): OTEL_METRICS_EXPORTER: `console` is not a metrics exporter poolwatch \
             has: use otlp, prometheus (always on at /metrics) or none",
            "(environment): OTEL_EXPORTER_OTLP_ENDPOINT: `collector:4318/v1/metrics` is not a \
             URL",
            "(environment): OTEL_EXPORTER_OTLP_HEADERS: the value of header `authorization` is \
             not valid in a header",
            "(environment): OTEL_METRIC_EXPORT_INTERVAL: `soon` is not a number of milliseconds",
        ]
    );
    assert!(!found.concat().contains("top"), "{found:?}");
    let found = problems("otlp:\n  endpoint: http://c:4318\n", &[]);
    assert_eq!(
        found,
        vec![
            "p.yaml:2:13: otlp.endpoint: give the full URL for http/protobuf, e.g. \
             http://c:4318/v1/metrics"
        ]
    );
    let found = problems(
        "otlp:\n  endpoint: http://u:pw-9f2@c:4318/v1/metrics\n",
        &[],
    );
    assert_eq!(
        found,
        vec!["p.yaml:2:13: otlp.endpoint: the URL holds credentials: give them in headers instead"]
    );
}
