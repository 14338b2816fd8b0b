//! The `otlp:` section of the config and the OpenTelemetry SDK environment it falls back on:
//! whether, where, how and how often the agent pushes its metrics over OTLP.
//!
//! Precedence, key by key: the config file, then the signal-specific variable
//! (`OTEL_EXPORTER_OTLP_METRICS_*`), then the general one (`OTEL_EXPORTER_OTLP_*`), then the
//! OpenTelemetry default. The file is the operator's explicit configuration: OpenTelemetry's
//! own file-based (declarative) configuration takes the file over the environment too, and the
//! environment variables are the SDK's defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Diagnostic, Env};

/// The environment with empty variables taken as unset.
type EnvFn<'a> = dyn Fn(&str) -> Option<String> + 'a;

pub const EXPORTER_ENV: &str = "OTEL_METRICS_EXPORTER";
pub const SDK_DISABLED_ENV: &str = "OTEL_SDK_DISABLED";
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const METRICS_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
pub const PROTOCOL_ENV: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
pub const METRICS_PROTOCOL_ENV: &str = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL";
pub const HEADERS_ENV: &str = "OTEL_EXPORTER_OTLP_HEADERS";
pub const METRICS_HEADERS_ENV: &str = "OTEL_EXPORTER_OTLP_METRICS_HEADERS";
pub const TIMEOUT_ENV: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
pub const METRICS_TIMEOUT_ENV: &str = "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT";
pub const INTERVAL_ENV: &str = "OTEL_METRIC_EXPORT_INTERVAL";
pub const SERVICE_NAME_ENV: &str = "OTEL_SERVICE_NAME";
pub const RESOURCE_ATTRIBUTES_ENV: &str = "OTEL_RESOURCE_ATTRIBUTES";

/// The OpenTelemetry defaults: export every 60 s, give up on one export after 10 s.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const DEFAULT_SERVICE_NAME: &str = "poolwatch";
/// The OpenTelemetry default endpoints of each transport.
const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318/v1/metrics";
const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// The path OTLP/HTTP appends to a base endpoint for metrics.
const HTTP_METRICS_PATH: &str = "v1/metrics";

/// The `otlp:` section in the file format. Every key is optional; what is left out comes from
/// the OpenTelemetry environment, then the OpenTelemetry defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OtlpEntry {
    /// Whether to push. Default: on when the section is present.
    enabled: Option<Spanned<bool>>,
    /// The collector's URL. http/protobuf: the full URL, `/v1/metrics` included (default
    /// `http://localhost:4318/v1/metrics`); grpc: `http://host:4317`.
    endpoint: Option<Spanned<String>>,
    /// `http/protobuf` (default) or `grpc`.
    protocol: Option<Spanned<String>>,
    /// Extra request headers (gRPC metadata), e.g. an API key. Values are never logged.
    headers: Option<Spanned<BTreeMap<String, String>>>,
    /// How often the metrics are pushed. Default `60s`.
    #[serde(default, deserialize_with = "super::duration")]
    interval: Option<Spanned<Duration>>,
    /// Deadline of one push. Default the smaller of `10s` and `interval`.
    #[serde(default, deserialize_with = "super::duration")]
    timeout: Option<Spanned<Duration>>,
}

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    HttpProtobuf,
    Grpc,
}

impl Protocol {
    fn parse(text: &str) -> Result<Protocol, String> {
        match text.trim() {
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "grpc" => Ok(Protocol::Grpc),
            "http/json" => Err("`http/json` is not supported: use http/protobuf or grpc".into()),
            other => Err(format!(
                "`{other}` is not an OTLP protocol: use http/protobuf or grpc"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::Grpc => "grpc",
        }
    }
}

/// Request headers whose values are secrets (API keys, bearer tokens): `Debug` shows the names
/// only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(http::HeaderName, http::HeaderValue)>);

impl Headers {
    pub fn iter(&self) -> impl Iterator<Item = (&http::HeaderName, &http::HeaderValue)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Sets `name` (replacing an earlier value of the same name), or says why it cannot be sent.
    /// The message never holds the value.
    fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("`{}` is not a valid header name", name.trim()))?;
        let mut value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| format!("the value of header `{name}` is not valid in a header"))?;
        value.set_sensitive(true);
        self.0.retain(|(k, _)| *k != name);
        self.0.push((name, value));
        Ok(())
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, _)| (k.as_str(), "***")))
            .finish()
    }
}

/// The checked OTLP export settings.
#[derive(Clone, Debug, PartialEq)]
pub struct OtlpConfig {
    pub protocol: Protocol,
    /// The URL requests go to (http/protobuf: with its path; grpc: the server's address).
    pub endpoint: http::Uri,
    pub headers: Headers,
    pub interval: Duration,
    pub timeout: Duration,
    /// `service.name`: `OTEL_SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`,
    /// else `poolwatch`.
    pub service_name: String,
    /// `OTEL_RESOURCE_ATTRIBUTES`, decoded; they win over the attributes the agent detects.
    pub resource_attributes: BTreeMap<String, String>,
}

/// Problems found while checking, each with where it came from.
struct Problems<'a> {
    origin: &'a Path,
    found: Vec<Diagnostic>,
}

impl Problems<'_> {
    fn at<T>(&mut self, at: &Spanned<T>, field: &str, message: impl Into<String>) {
        self.found
            .push(Diagnostic::at(self.origin, at, field, message));
    }

    fn env(&mut self, name: &str, message: impl Into<String>) {
        self.found.push(Diagnostic::environment(name, message));
    }
}

/// Checks the `otlp:` section of `origin` against the environment: the settings (`None` when
/// export is off) and every problem found.
pub(super) fn check(
    entry: Option<&OtlpEntry>,
    origin: &Path,
    env: Env,
) -> (Option<OtlpConfig>, Vec<Diagnostic>) {
    let mut problems = Problems {
        origin,
        found: Vec::new(),
    };
    // As the OpenTelemetry SDKs do, an empty variable counts as unset.
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let enabled = enabled(entry, &env, &mut problems);
    let protocol = protocol(entry, &env, &mut problems);
    let endpoint = endpoint(entry, protocol, &env, &mut problems);
    let headers = headers(entry, &env, &mut problems);
    let (interval, timeout) = timing(entry, &env, &mut problems);
    let resource_attributes = resource_attributes(&env, &mut problems);
    let service_name = env(SERVICE_NAME_ENV)
        .map(|s| s.trim().to_string())
        .or_else(|| resource_attributes.get("service.name").cloned())
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.into());
    let config = endpoint.filter(|_| enabled).map(|endpoint| OtlpConfig {
        protocol,
        endpoint,
        headers,
        interval,
        timeout,
        service_name,
        resource_attributes,
    });
    (config, problems.found)
}

/// The section turns export on unless it says `enabled: false`; without it,
/// `OTEL_METRICS_EXPORTER=otlp` does (and `OTEL_SDK_DISABLED=true` keeps it off).
fn enabled(entry: Option<&OtlpEntry>, env: &EnvFn, problems: &mut Problems) -> bool {
    if let Some(entry) = entry {
        return entry.enabled.as_ref().is_none_or(|e| e.value);
    }
    let mut on = false;
    for name in env(EXPORTER_ENV).iter().flat_map(|l| l.split(',')) {
        match name.trim() {
            "otlp" => on = true,
            // Prometheus is always served at /metrics.
            "none" | "prometheus" | "" => {}
            other => problems.env(
                EXPORTER_ENV,
                format!(
                    "`{other}` is not a metrics exporter poolwatch has: use otlp, prometheus \
                     (always on at /metrics) or none"
                ),
            ),
        }
    }
    on && env(SDK_DISABLED_ENV).is_none_or(|v| v.trim() != "true")
}

fn protocol(entry: Option<&OtlpEntry>, env: &EnvFn, problems: &mut Problems) -> Protocol {
    let parsed = match entry.and_then(|e| e.protocol.as_ref()) {
        Some(p) => Protocol::parse(&p.value).map_err(|why| problems.at(p, "otlp.protocol", why)),
        None => match first_env(env, &[METRICS_PROTOCOL_ENV, PROTOCOL_ENV]) {
            Some((name, value)) => Protocol::parse(&value).map_err(|why| problems.env(name, why)),
            None => Ok(Protocol::HttpProtobuf),
        },
    };
    parsed.unwrap_or(Protocol::HttpProtobuf)
}

fn endpoint(
    entry: Option<&OtlpEntry>,
    protocol: Protocol,
    env: &EnvFn,
    problems: &mut Problems,
) -> Option<http::Uri> {
    if let Some(e) = entry.and_then(|e| e.endpoint.as_ref()) {
        return collector_url(&e.value, protocol)
            .map_err(|why| problems.at(e, "otlp.endpoint", why))
            .ok();
    }
    let (name, url) = match (env(METRICS_ENDPOINT_ENV), env(ENDPOINT_ENV)) {
        (Some(url), _) => (METRICS_ENDPOINT_ENV, url),
        // The general endpoint is a base URL: over HTTP each signal adds its own path.
        (None, Some(base)) if protocol == Protocol::HttpProtobuf => {
            let base = base.trim().trim_end_matches('/').to_string();
            (ENDPOINT_ENV, format!("{base}/{HTTP_METRICS_PATH}"))
        }
        (None, Some(base)) => (ENDPOINT_ENV, base),
        (None, None) => match protocol {
            Protocol::HttpProtobuf => ("(default)", DEFAULT_HTTP_ENDPOINT.to_string()),
            Protocol::Grpc => ("(default)", DEFAULT_GRPC_ENDPOINT.to_string()),
        },
    };
    collector_url(&url, protocol)
        .map_err(|why| problems.env(name, why))
        .ok()
}

/// The environment's headers, then the file's: header by header the file wins, so a token can
/// stay in the environment while the file names the rest.
fn headers(entry: Option<&OtlpEntry>, env: &EnvFn, problems: &mut Problems) -> Headers {
    let mut headers = Headers::default();
    for name in [HEADERS_ENV, METRICS_HEADERS_ENV] {
        for pair in env(name).iter().flat_map(|l| l.split(',')) {
            if pair.trim().is_empty() {
                continue;
            }
            let set = match pair.split_once('=') {
                Some((key, value)) => headers.set(key, &decode(value)),
                None => Err("expected key=value pairs separated by commas".to_string()),
            };
            if let Err(why) = set {
                problems.env(name, why);
            }
        }
    }
    if let Some(at) = entry.and_then(|e| e.headers.as_ref()) {
        for (key, value) in &at.value {
            if let Err(why) = headers.set(key, value) {
                problems.at(at, "otlp.headers", why);
            }
        }
    }
    headers
}

/// The interval and the timeout of one push.
fn timing(entry: Option<&OtlpEntry>, env: &EnvFn, problems: &mut Problems) -> (Duration, Duration) {
    let interval = match entry.and_then(|e| e.interval.as_ref()) {
        Some(i) => {
            if i.value < MIN_INTERVAL {
                problems.at(i, "otlp.interval", "must be at least 100ms");
            }
            i.value
        }
        None => match millis_env(env, &[INTERVAL_ENV], problems) {
            Some((name, d)) => {
                if d < MIN_INTERVAL {
                    problems.env(name, "must be at least 100 (milliseconds)");
                }
                d
            }
            None => DEFAULT_INTERVAL,
        },
    };
    let timeout = match entry.and_then(|e| e.timeout.as_ref()) {
        Some(t) => {
            if t.value.is_zero() || t.value > interval {
                problems.at(
                    t,
                    "otlp.timeout",
                    "must be more than 0 and at most the interval",
                );
            }
            t.value
        }
        None => match millis_env(env, &[METRICS_TIMEOUT_ENV, TIMEOUT_ENV], problems) {
            Some((name, d)) if d.is_zero() => {
                problems.env(name, "must be more than 0");
                d
            }
            // One push at a time: a longer deadline from the environment is held to the interval.
            Some((_, d)) => d.min(interval),
            None => DEFAULT_TIMEOUT.min(interval),
        },
    };
    (interval, timeout)
}

fn resource_attributes(env: &EnvFn, problems: &mut Problems) -> BTreeMap<String, String> {
    let mut attributes = BTreeMap::new();
    for pair in env(RESOURCE_ATTRIBUTES_ENV)
        .iter()
        .flat_map(|l| l.split(','))
    {
        if pair.trim().is_empty() {
            continue;
        }
        match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                attributes.insert(key.trim().to_string(), decode(value));
            }
            _ => problems.env(
                RESOURCE_ATTRIBUTES_ENV,
                "expected key=value pairs separated by commas",
            ),
        }
    }
    attributes
}

/// A value of a `key=value` list, percent-decoded as the OpenTelemetry variables are.
fn decode(value: &str) -> String {
    percent_encoding::percent_decode_str(value.trim())
        .decode_utf8_lossy()
        .into_owned()
}

/// The first of `names` that is set, with its value.
fn first_env(env: &EnvFn, names: &[&'static str]) -> Option<(&'static str, String)> {
    names.iter().find_map(|n| env(n).map(|v| (*n, v)))
}

/// A duration in milliseconds, as the OpenTelemetry variables give it.
fn millis_env(
    env: &EnvFn,
    names: &[&'static str],
    problems: &mut Problems,
) -> Option<(&'static str, Duration)> {
    let (name, value) = first_env(env, names)?;
    match value.trim().parse::<u64>() {
        Ok(ms) => Some((name, Duration::from_millis(ms))),
        Err(_) => {
            problems.env(
                name,
                format!("`{}` is not a number of milliseconds", value.trim()),
            );
            None
        }
    }
}

/// A collector URL the transports can use, or why not.
fn collector_url(url: &str, protocol: Protocol) -> Result<http::Uri, String> {
    let url = url.trim();
    // Credentials belong in headers, which are never shown; a URL is logged and echoed.
    if url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .is_some_and(|a| a.contains('@'))
    {
        return Err("the URL holds credentials: give them in headers instead".into());
    }
    let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(
                "https is not supported by this build (no TLS): send to a collector over http://"
                    .into(),
            );
        }
        _ => return Err(format!("`{url}` is not an http:// URL")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{url}` names no host"));
    }
    if protocol == Protocol::HttpProtobuf && uri.path() == "/" {
        return Err(format!(
            "give the full URL for http/protobuf, e.g. {}/{HTTP_METRICS_PATH}",
            url.trim_end_matches('/')
        ));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests;
