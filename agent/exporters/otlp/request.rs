//! One OTLP export request from a published snapshot: every sample the exposition model made of
//! it (not the agent's own telemetry), under its family's OpenTelemetry name, unit and
//! instrument, with the labels turned back into attributes. A pure function of the samples, the
//! resource and the time, except for the start times of cumulative series, which it remembers.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use rustc_hash::FxHashMap;

use crate::exposition::{self, CATALOGUE, ExportedSample, Family, Instrument, Read, Scalar, Value};
use crate::status::Published;

/// The instrumentation scope the metrics are reported under.
const SCOPE: &str = "poolwatch";

/// Builds requests, keeping what must persist between them: when each cumulative series
/// started.
pub struct Encoder {
    resource: Resource,
    starts: Starts,
}

/// By series, when its cumulative count began and its last count, to see a reset.
#[derive(Default)]
struct Starts {
    by_series: FxHashMap<u64, Start>,
    /// Bumped per request; series not seen in one are forgotten.
    generation: u64,
}

struct Start {
    at: u64,
    last: f64,
    seen: u64,
}

impl Encoder {
    /// `resource`: the resource attributes, in the order they are sent.
    pub fn new(resource: &[(String, String)]) -> Encoder {
        Encoder {
            resource: Resource {
                attributes: resource.iter().map(|(k, v)| attribute(k, v)).collect(),
                ..Resource::default()
            },
            starts: Starts::default(),
        }
    }

    /// The request carrying `published` at `now`.
    pub fn request(
        &mut self,
        published: &Published,
        now: SystemTime,
    ) -> ExportMetricsServiceRequest {
        let now = unix_nanos(now);
        self.starts.generation += 1;
        let mut metrics = Vec::new();
        for family in CATALOGUE {
            let samples = match family.read {
                Read::Agent => continue,
                Read::Alerts => &published.alert_samples[..],
                _ => exposition::of_family(&published.samples, family),
            };
            if samples.is_empty() {
                continue;
            }
            let data = metric_data(&mut self.starts, family, samples, now);
            metrics.push(Metric {
                name: family.otel.to_string(),
                description: family.help.to_string(),
                unit: family.unit.to_string(),
                data: Some(data),
                ..Metric::default()
            });
        }
        let generation = self.starts.generation;
        self.starts.by_series.retain(|_, s| s.seen == generation);
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: SCOPE.into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..InstrumentationScope::default()
                    }),
                    metrics,
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        }
    }
}

fn metric_data(
    starts: &mut Starts,
    family: &'static Family,
    samples: &[ExportedSample],
    now: u64,
) -> metric::Data {
    let cumulative = AggregationTemporality::Cumulative as i32;
    match family.instrument {
        Instrument::Gauge => metric::Data::Gauge(Gauge {
            data_points: samples
                .iter()
                .filter_map(|s| number_point(s, 0, now))
                .collect(),
        }),
        Instrument::UpDownCounter | Instrument::Counter => {
            let monotonic = family.instrument == Instrument::Counter;
            let data_points = samples
                .iter()
                .filter_map(|s| {
                    let Value::Scalar(v) = s.value else {
                        return None;
                    };
                    let start = starts.start(s, v, monotonic, now);
                    number_point(s, start, now)
                })
                .collect();
            metric::Data::Sum(Sum {
                data_points,
                aggregation_temporality: cumulative,
                is_monotonic: monotonic,
            })
        }
        Instrument::Histogram => metric::Data::Histogram(Histogram {
            data_points: samples
                .iter()
                .filter_map(|s| {
                    let Value::Histogram(h) = &s.value else {
                        return None;
                    };
                    Some(HistogramDataPoint {
                        attributes: attributes(s),
                        start_time_unix_nano: starts.start(s, h.count as f64, true, now),
                        time_unix_nano: now,
                        count: h.count,
                        sum: Some(h.sum),
                        bucket_counts: h.counts.clone(),
                        explicit_bounds: h.bounds.clone(),
                        ..HistogramDataPoint::default()
                    })
                })
                .collect(),
            aggregation_temporality: cumulative,
        }),
    }
}

impl Starts {
    /// When the cumulative series of `sample` began. The sources do not say when their counters
    /// started, so it is when the agent first saw the series, or when a monotonic one last went
    /// down (its source restarted), as OpenTelemetry's Prometheus receiver does.
    fn start(&mut self, sample: &ExportedSample, value: f64, monotonic: bool, now: u64) -> u64 {
        let key = sample.series_hash(&Scalar {
            suffix: "",
            le: None,
            value,
        });
        let generation = self.generation;
        let start = self.by_series.entry(key).or_insert(Start {
            at: now,
            last: value,
            seen: generation,
        });
        if monotonic && value < start.last {
            start.at = now;
        }
        start.last = value;
        start.seen = generation;
        start.at
    }
}

fn number_point(sample: &ExportedSample, start: u64, now: u64) -> Option<NumberDataPoint> {
    let Value::Scalar(v) = sample.value else {
        return None;
    };
    Some(NumberDataPoint {
        attributes: attributes(sample),
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..NumberDataPoint::default()
    })
}

/// The sample's labels as attributes, under their OpenTelemetry names.
fn attributes(sample: &ExportedSample) -> Vec<KeyValue> {
    let pairs = sample.labels.pairs().chain(sample.extra);
    pairs
        .map(|(k, v)| attribute(exposition::otel_attribute(k), v))
        .collect()
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..KeyValue::default()
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
