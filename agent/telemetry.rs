//! The agent's own telemetry: sample durations and errors per target, rule evaluations, reloads
//! and the health of its exporters (OTLP exports and their failures), recorded through the `metrics` facade into one long-lived
//! metrics-exporter-prometheus recorder and appended to `/metrics` after the pool families.
//! Every event the agent records about itself is a function here, so names and labels live in
//! one place (and in the catalogue, which describes them).

use std::sync::OnceLock;
use std::time::Duration;

use metrics::Label;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::exposition::{CATALOGUE, Instrument, Read};
use crate::receiver::{Ingested, Outcome, Refusal};
use crate::sources::ErrorKind;

/// Bucket bounds of the sample-duration histogram, in seconds: a healthy sample takes a few
/// milliseconds; one near the deadline takes seconds.
const SAMPLE_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same handle). `None` if
/// another recorder was installed first, in which case the agent's telemetry goes there.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("poolwatch_target_sample_duration_seconds".into()),
                    SAMPLE_DURATION_BUCKETS,
                )
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            metrics::gauge!("poolwatch_build_info", "version" => env!("CARGO_PKG_VERSION"))
                .set(1.0);
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    for family in CATALOGUE.iter().filter(|f| matches!(f.read, Read::Agent)) {
        let (name, help) = (family.name, family.help);
        match family.instrument {
            Instrument::Counter => metrics::describe_counter!(name, help),
            Instrument::Histogram => metrics::describe_histogram!(name, help),
            Instrument::Gauge | Instrument::UpDownCounter => metrics::describe_gauge!(name, help),
        }
    }
}

/// The agent's telemetry in the text format, to append to the pool families (empty when the
/// recorder is not ours).
pub fn render() -> String {
    match HANDLE.get() {
        Some(Some(handle)) => {
            handle.run_upkeep();
            handle.render()
        }
        _ => String::new(),
    }
}

/// The labels a target's own series carry, built once per target.
pub fn target_labels(name: &str, source: &str, configured: &crate::model::Labels) -> Vec<Label> {
    let mut labels: Vec<Label> = configured
        .iter()
        .map(|(k, v)| Label::new(k.clone(), v.clone()))
        .collect();
    labels.push(Label::new("target", name.to_string()));
    labels.push(Label::new("source", source.to_string()));
    labels
}

/// A target is watched: its error counters exist, at 0, before the first error.
pub fn target_started(labels: &[Label]) {
    for kind in ErrorKind::ALL {
        metrics::counter!(
            "poolwatch_target_errors_total",
            with(labels, "kind", kind.as_str())
        )
        .increment(0);
    }
}

/// A sample of a target finished, successfully or with `error`.
pub fn sample_finished(labels: &[Label], duration: Duration, error: Option<ErrorKind>) {
    metrics::histogram!("poolwatch_target_sample_duration_seconds", labels.to_vec())
        .record(duration.as_secs_f64());
    if let Some(kind) = error {
        metrics::counter!(
            "poolwatch_target_errors_total",
            with(labels, "kind", kind.as_str())
        )
        .increment(1);
    }
}

/// The OTLP receiver started: its counters exist, at 0, before the first request.
pub fn otlp_receiver_started() {
    for outcome in ["accepted", "ignored", "refused"] {
        metrics::counter!("poolwatch_otlp_data_points_received_total", "outcome" => outcome)
            .increment(0);
    }
    for reason in Refusal::ALL {
        metrics::counter!("poolwatch_otlp_data_points_refused_total", "reason" => reason.as_str())
            .increment(0);
    }
    for transport in ["http", "grpc"] {
        for outcome in Outcome::ALL {
            otlp_request_count(transport, outcome.as_str()).increment(0);
        }
    }
}

/// The data points of one OTLP request were folded in.
pub fn otlp_points(ingested: &Ingested) {
    let received = |outcome: &'static str, n: u64| {
        metrics::counter!("poolwatch_otlp_data_points_received_total", "outcome" => outcome)
            .increment(n);
    };
    received("accepted", ingested.accepted);
    received("ignored", ingested.ignored);
    received("refused", ingested.refused_count());
    for (reason, (n, _)) in &ingested.refused {
        metrics::counter!("poolwatch_otlp_data_points_refused_total", "reason" => reason.as_str())
            .increment(*n);
    }
}

/// An OTLP request over `transport` (http, grpc) ended with `outcome`.
pub fn otlp_request(transport: &'static str, outcome: &'static str) {
    otlp_request_count(transport, outcome).increment(1);
}

fn otlp_request_count(transport: &'static str, outcome: &'static str) -> metrics::Counter {
    metrics::counter!("poolwatch_otlp_requests_total", "transport" => transport, "outcome" => outcome)
}

/// The Alertmanager sender starts with `count` Alertmanagers, each with a queue of `capacity`.
pub fn alertmanagers(count: usize, capacity: usize) {
    metrics::gauge!("poolwatch_alertmanagers").set(count as f64);
    metrics::gauge!("poolwatch_notifications_queue_capacity").set(capacity as f64);
}

/// Sending to one Alertmanager starts: its counters exist, at 0, before anything happens, so a
/// rate of its failures is 0 rather than absent.
pub fn alertmanager_started(alertmanager: &str) {
    for name in [
        "poolwatch_notifications_sent_total",
        "poolwatch_notifications_errors_total",
        "poolwatch_notifications_dropped_total",
    ] {
        metrics::counter!(name, "alertmanager" => alertmanager.to_string()).increment(0);
    }
    notification_queue(alertmanager, 0);
}

/// Alerts waiting for one Alertmanager.
pub fn notification_queue(alertmanager: &str, length: usize) {
    metrics::gauge!("poolwatch_notifications_queue_length", "alertmanager" => alertmanager.to_string())
        .set(length as f64);
}

/// An Alertmanager accepted `count` alerts.
pub fn notifications_sent(alertmanager: &str, count: usize) {
    metrics::counter!("poolwatch_notifications_sent_total", "alertmanager" => alertmanager.to_string())
        .increment(count as u64);
}

/// A request to an Alertmanager failed (unreachable, timed out, or not 2xx).
pub fn notification_failed(alertmanager: &str) {
    metrics::counter!("poolwatch_notifications_errors_total", "alertmanager" => alertmanager.to_string())
        .increment(1);
}

/// `count` alerts will not reach an Alertmanager: dropped from a full queue, or rejected.
pub fn notifications_dropped(alertmanager: &str, count: usize) {
    metrics::counter!("poolwatch_notifications_dropped_total", "alertmanager" => alertmanager.to_string())
        .increment(count as u64);
}

/// The rules were (re)loaded.
pub fn rules_loaded(count: usize) {
    metrics::gauge!("poolwatch_rules_loaded").set(count as f64);
}

/// The rules' window after a scrape was taken into it.
pub fn window_kept(series: usize, samples: usize, sample_bytes: usize) {
    metrics::gauge!("poolwatch_rules_window_series").set(series as f64);
    metrics::gauge!("poolwatch_rules_window_samples").set(samples as f64);
    metrics::gauge!("poolwatch_rules_window_bytes").set(sample_bytes as f64);
}

/// Every due rule was evaluated.
pub fn rules_evaluated(duration: Duration, failing: usize) {
    metrics::gauge!("poolwatch_rule_evaluation_duration_seconds").set(duration.as_secs_f64());
    metrics::gauge!("poolwatch_rule_evaluation_failing").set(failing as f64);
}

/// A reload of `kind` (`config`, `rules`) succeeded at `unix_seconds`, or failed.
pub fn reloaded(kind: &'static str, success: Option<f64>) {
    metrics::gauge!("poolwatch_reload_successful", "kind" => kind)
        .set(f64::from(u8::from(success.is_some())));
    if let Some(at) = success {
        metrics::gauge!("poolwatch_reload_last_success_timestamp_seconds", "kind" => kind).set(at);
    }
}

/// The OTLP exporter started: its counters exist, at 0, before the first export.
pub fn otlp_started(reasons: &[&'static str]) {
    metrics::counter!("poolwatch_otlp_exports_total").increment(0);
    for reason in reasons {
        metrics::counter!("poolwatch_otlp_export_failures_total", "reason" => *reason).increment(0);
    }
}

/// An OTLP export finished at `unix_seconds`: accepted by the collector, or failed for `failure`.
pub fn otlp_exported(failure: Option<&'static str>, unix_seconds: f64) {
    metrics::counter!("poolwatch_otlp_exports_total").increment(1);
    match failure {
        Some(reason) => {
            metrics::counter!("poolwatch_otlp_export_failures_total", "reason" => reason)
                .increment(1);
        }
        None => metrics::gauge!("poolwatch_otlp_last_success_timestamp_seconds").set(unix_seconds),
    }
}

fn with(labels: &[Label], name: &'static str, value: &'static str) -> Vec<Label> {
    let mut all = labels.to_vec();
    all.push(Label::new(name, value));
    all
}
