//! The pools applications report over OTLP, as the receiver has folded them so far: one entry
//! per (service.name, service.instance.id, pool name), with running totals that survive delta
//! and cumulative temporality and the resets of an application that restarts. The otlp source
//! reads it each tick; pools that stop reporting leave it after `stale_after`, as ended or stale.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as NumberValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, HistogramDataPoint, Metric, NumberDataPoint,
};
use rustc_hash::{FxHashMap, FxHasher};

use crate::exposition::pair_hash;

use super::mapping::{self, Figure, Mapping, OLD_POOL_NAME, POOL_NAME, Shape};
use crate::model::{
    GonePool, Histogram, Labels, PoolEnd, PoolHistograms, PoolLimits, PoolSample, PoolTotals,
    TargetSample,
};

/// Labels a pushed pool carries, from its resource.
pub const SERVICE_NAME_LABEL: &str = "service_name";
pub const SERVICE_INSTANCE_LABEL: &str = "service_instance_id";

/// How many pools that stopped reporting are still listed, at most (MDM starts a process, so a
/// service instance, per command), and for how long: Prometheus' lookback.
const GONE_LISTED: usize = 1000;
const GONE_LISTED_FOR: Duration = Duration::from_secs(5 * 60);

/// Why a data point was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    MissingPoolName,
    MissingState,
    WrongType,
    ExponentialHistogram,
    UnspecifiedTemporality,
    InvalidValue,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::MissingPoolName,
        Refusal::MissingState,
        Refusal::WrongType,
        Refusal::ExponentialHistogram,
        Refusal::UnspecifiedTemporality,
        Refusal::InvalidValue,
    ];

    /// The `reason` label of `poolwatch_otlp_refused_data_points_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MissingPoolName => "missing_pool_name",
            Refusal::MissingState => "missing_state",
            Refusal::WrongType => "wrong_type",
            Refusal::ExponentialHistogram => "exponential_histogram",
            Refusal::UnspecifiedTemporality => "unspecified_temporality",
            Refusal::InvalidValue => "invalid_value",
        }
    }

    fn explain(self) -> &'static str {
        match self {
            Refusal::MissingPoolName => {
                "no db.client.connection.pool.name (or pool.name) attribute names the pool"
            }
            Refusal::MissingState => "its state attribute is neither used nor idle",
            Refusal::WrongType => {
                "its type does not fit the name (a gauge or sum for a count, a sum for a \
                 counter, a histogram for a time)"
            }
            Refusal::ExponentialHistogram => {
                "exponential histograms are not supported: give the instrument explicit bucket \
                 boundaries"
            }
            Refusal::UnspecifiedTemporality => "its aggregation temporality is unspecified",
            Refusal::InvalidValue => {
                "its value is missing, negative or not finite, or its buckets do not match its \
                 bounds and count"
            }
        }
    }
}

/// What became of one export request's data points.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ingested {
    /// Points that fed a pool.
    pub accepted: u64,
    /// Points of metrics the receiver does not read.
    pub ignored: u64,
    /// Refused points by reason, with the first metric refused for it.
    pub refused: BTreeMap<Refusal, (u64, String)>,
}

impl Ingested {
    pub fn refused_count(&self) -> u64 {
        self.refused.values().map(|(n, _)| n).sum()
    }

    /// The partial-success message: every reason, with a metric it was seen on.
    pub fn message(&self) -> String {
        let reasons: Vec<String> = self
            .refused
            .iter()
            .map(|(reason, (n, metric))| {
                format!(
                    "{n} refused ({}, e.g. {metric}): {}",
                    reason.as_str(),
                    reason.explain()
                )
            })
            .collect();
        reasons.join("; ")
    }

    fn refuse(&mut self, reason: Refusal, metric: &str) {
        self.refused
            .entry(reason)
            .or_insert_with(|| (0, metric.to_string()))
            .0 += 1;
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Resource {
    service_name: Option<String>,
    service_instance_id: Option<String>,
}

/// One explicit-bucket histogram point, in seconds.
#[derive(Clone, Debug, PartialEq)]
struct HistogramPoint {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl HistogramPoint {
    /// `self - before`, or `None` if a bucket or the count went down (a reset).
    fn minus(&self, before: &HistogramPoint) -> Option<HistogramPoint> {
        if self.bounds != before.bounds || self.count < before.count {
            return None;
        }
        let counts = self
            .counts
            .iter()
            .zip(&before.counts)
            .map(|(a, b)| a.checked_sub(*b))
            .collect::<Option<Vec<u64>>>()?;
        Some(HistogramPoint {
            bounds: self.bounds.clone(),
            counts,
            sum: (self.sum - before.sum).max(0.0),
            count: self.count - before.count,
        })
    }
}

/// One time series of a pool: a metric with one set of attributes.
#[derive(Debug)]
struct Stream {
    figure: Figure,
    /// `start_time_unix_nano` of its last cumulative point: when it moves, the app restarted.
    start: u64,
    /// `time_unix_nano` of its last point, to drop repeats and points that arrive late.
    time: u64,
    /// A count's current value, or a counter's last cumulative value.
    value: f64,
    /// A histogram's last cumulative point.
    histogram: Option<HistogramPoint>,
}

/// A histogram's running total since the receiver first saw the pool.
#[derive(Debug, Default)]
struct RunningHistogram {
    total: Option<HistogramPoint>,
    /// Built at the first sample after a change, then shared with every reader.
    shared: Option<Arc<Histogram>>,
}

impl RunningHistogram {
    fn add(&mut self, increase: &HistogramPoint) {
        self.shared = None;
        match &mut self.total {
            // Bounds that changed (the app was reconfigured) start the histogram over.
            Some(total) if total.bounds == increase.bounds => {
                for (t, i) in total.counts.iter_mut().zip(&increase.counts) {
                    *t += i;
                }
                total.sum += increase.sum;
                total.count += increase.count;
            }
            _ => self.total = Some(increase.clone()),
        }
    }

    fn shared(&mut self) -> Option<Arc<Histogram>> {
        let total = self.total.as_ref()?;
        let shared = self.shared.get_or_insert_with(|| {
            Arc::new(Histogram {
                bounds: total.bounds.clone(),
                counts: total.counts.clone(),
                sum: total.sum,
                count: total.count,
            })
        });
        Some(shared.clone())
    }
}

/// One reporting pool.
#[derive(Debug)]
struct Pool {
    last_report: Instant,
    last_report_unix: f64,
    streams: FxHashMap<u64, Stream>,
    /// Running totals of the counters, by figure index.
    counters: [Option<f64>; Figure::COUNT],
    wait_time: RunningHistogram,
    use_time: RunningHistogram,
    create_time: RunningHistogram,
}

impl Pool {
    fn new(now: Instant, unix_now: f64) -> Pool {
        Pool {
            last_report: now,
            last_report_unix: unix_now,
            streams: FxHashMap::default(),
            counters: [None; Figure::COUNT],
            wait_time: RunningHistogram::default(),
            use_time: RunningHistogram::default(),
            create_time: RunningHistogram::default(),
        }
    }

    fn histogram(&mut self, figure: Figure) -> &mut RunningHistogram {
        match figure {
            Figure::UseTime => &mut self.use_time,
            Figure::CreateTime => &mut self.create_time,
            _ => &mut self.wait_time,
        }
    }

    /// The sum over streams of a current value; `None` if no stream reports it.
    fn current(&self, figure: Figure) -> Option<f64> {
        self.streams
            .values()
            .filter(|s| s.figure == figure)
            .map(|s| s.value)
            .reduce(|a, b| a + b)
    }

    fn count(&self, figure: Figure) -> Option<u64> {
        self.current(figure).map(|v| v.max(0.0).round() as u64)
    }

    fn counter(&self, figure: Figure) -> Option<u64> {
        self.counters[figure.index()].map(|v| v.max(0.0).round() as u64)
    }

    /// No connection open and nothing pending: what a pool shows once its engine is disposed.
    fn closed_cleanly(&self) -> bool {
        let (used, idle) = (self.count(Figure::Used), self.count(Figure::Idle));
        (used.is_some() || idle.is_some())
            && used.unwrap_or(0) == 0
            && idle.unwrap_or(0) == 0
            && self.count(Figure::Pending).unwrap_or(0) == 0
    }

    fn sample(&mut self, name: &str, labels: &Labels) -> PoolSample {
        let size = self.count(Figure::PoolSize);
        let max = self.count(Figure::Max);
        let overflow = self.count(Figure::MaxOverflow);
        let limits = PoolLimits {
            // A pool without an overflow (HikariCP) reports only its maximum.
            pool_size: size.or(max),
            max_overflow: overflow.or_else(|| max?.checked_sub(size?)),
            idle_max: self.count(Figure::IdleMax),
            idle_min: self.count(Figure::IdleMin),
            ..PoolLimits::default()
        };
        let histograms = PoolHistograms {
            wait_time: self.wait_time.shared(),
            use_time: self.use_time.shared(),
            create_time: self.create_time.shared(),
        };
        // The spec's average wait and usage time are these histograms' sums over their counts.
        let totals = PoolTotals {
            assignments: histograms.wait_time.as_ref().map(|h| h.count),
            wait_seconds: histograms.wait_time.as_ref().map(|h| h.sum),
            transactions: histograms.use_time.as_ref().map(|h| h.count),
            checkouts: histograms.use_time.as_ref().map(|h| h.count),
            usage_seconds: histograms.use_time.as_ref().map(|h| h.sum),
            connections_opened: self.counter(Figure::Opened),
            connections_closed: self.counter(Figure::Closed),
            connection_errors: self.counter(Figure::ConnectionErrors),
            timeouts: self.counter(Figure::Timeouts),
            usage_includes_wait: false,
        };
        PoolSample {
            pool: name.to_string(),
            labels: labels.clone(),
            used: self.count(Figure::Used),
            idle: self.count(Figure::Idle),
            pending: self.count(Figure::Pending),
            limits,
            totals,
            histograms,
            ..PoolSample::default()
        }
    }
}

/// Every pool reporting to the receiver.
#[derive(Debug)]
pub struct PoolTable {
    stale_after: Duration,
    resources: FxHashMap<Resource, FxHashMap<String, Pool>>,
    /// Pools that stopped reporting, with when they did, listed for `GONE_LISTED_FOR`.
    gone: VecDeque<(Instant, GonePool)>,
}

/// A data point's value, once checked.
enum Point {
    Number {
        value: f64,
        timing: Timing,
    },
    Histogram {
        point: HistogramPoint,
        timing: Timing,
    },
}

#[derive(Clone, Copy)]
struct Timing {
    /// Each point is an increase (delta temporality), rather than a total since `start`.
    delta: bool,
    start: u64,
    time: u64,
}

impl Point {
    fn timing(&self) -> Timing {
        match self {
            Point::Number { timing, .. } | Point::Histogram { timing, .. } => *timing,
        }
    }
}

impl PoolTable {
    pub fn new(stale_after: Duration) -> PoolTable {
        PoolTable {
            stale_after,
            resources: FxHashMap::default(),
            gone: VecDeque::new(),
        }
    }

    /// How many pools are reporting.
    pub fn len(&self) -> usize {
        self.resources.values().map(FxHashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Folds one export request in. Every point is checked before it changes anything, so a
    /// refused point leaves the pools as they were.
    pub fn ingest(
        &mut self,
        request: &ExportMetricsServiceRequest,
        now: Instant,
        unix_now: f64,
    ) -> Ingested {
        let mut out = Ingested::default();
        for resource_metrics in &request.resource_metrics {
            let attributes = resource_metrics
                .resource
                .as_ref()
                .map_or(&[][..], |r| &r.attributes[..]);
            let resource = Resource {
                service_name: string_attribute(attributes, "service.name").map(str::to_string),
                service_instance_id: string_attribute(attributes, "service.instance.id")
                    .map(str::to_string),
            };
            let pools = self.resources.entry(resource.clone()).or_default();
            for metric in resource_metrics
                .scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
            {
                ingest_metric(pools, metric, now, unix_now, &mut out);
            }
            if pools.is_empty() {
                self.resources.remove(&resource);
            }
        }
        out
    }

    /// The pools now, for the otlp source. Pools silent for `stale_after` leave the table here:
    /// as ended if their last report had nothing open or pending, else as stale.
    pub fn sample(&mut self, now: Instant) -> TargetSample {
        let stale_after = self.stale_after;
        let gone = &mut self.gone;
        for (resource, pools) in &mut self.resources {
            pools.retain(|name, pool| {
                if now.saturating_duration_since(pool.last_report) <= stale_after {
                    return true;
                }
                let labels = labels_of(resource);
                let state = if pool.closed_cleanly() {
                    tracing::info!(pool = %name, ?labels, "pushed pool ended: its last report had no connection open");
                    PoolEnd::Ended
                } else {
                    tracing::warn!(
                        pool = %name,
                        ?labels,
                        used = pool.count(Figure::Used),
                        pending = pool.count(Figure::Pending),
                        "pushed pool stopped reporting with connections open: stale"
                    );
                    PoolEnd::Stale
                };
                gone.push_back((
                    now,
                    GonePool {
                        pool: name.clone(),
                        labels,
                        state,
                        last_report_unix_seconds: pool.last_report_unix,
                        used: pool.count(Figure::Used),
                        idle: pool.count(Figure::Idle),
                        pending: pool.count(Figure::Pending),
                    },
                ));
                false
            });
        }
        self.resources.retain(|_, pools| !pools.is_empty());
        while self.gone.len() > GONE_LISTED
            || self
                .gone
                .front()
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) > GONE_LISTED_FOR)
        {
            self.gone.pop_front();
        }
        let mut pools: Vec<PoolSample> = Vec::with_capacity(self.len());
        for (resource, by_name) in &mut self.resources {
            let labels = labels_of(resource);
            pools.extend(
                by_name
                    .iter_mut()
                    .map(|(name, pool)| pool.sample(name, &labels)),
            );
        }
        pools.sort_by(|a, b| (&a.pool, &a.labels).cmp(&(&b.pool, &b.labels)));
        // A pool that reports again is no longer gone.
        self.gone.retain(|(_, g)| {
            pools
                .binary_search_by(|p| (&p.pool, &p.labels).cmp(&(&g.pool, &g.labels)))
                .is_err()
        });
        let mut gone: Vec<GonePool> = self.gone.iter().map(|(_, g)| g.clone()).collect();
        gone.sort_by(|a, b| (&a.pool, &a.labels).cmp(&(&b.pool, &b.labels)));
        TargetSample {
            pools,
            gone,
            ..TargetSample::default()
        }
    }
}

fn labels_of(resource: &Resource) -> Labels {
    let mut labels = Labels::new();
    if let Some(name) = &resource.service_name {
        labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    }
    if let Some(id) = &resource.service_instance_id {
        labels.insert(SERVICE_INSTANCE_LABEL.into(), id.clone());
    }
    labels
}

fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
        .filter(|s| !s.is_empty())
}

/// The attributes of every data point of a metric, whatever its type.
fn point_attributes(data: &Data) -> Vec<&[KeyValue]> {
    match data {
        Data::Gauge(g) => g.data_points.iter().map(|p| &p.attributes[..]).collect(),
        Data::Sum(s) => s.data_points.iter().map(|p| &p.attributes[..]).collect(),
        Data::Histogram(h) => h.data_points.iter().map(|p| &p.attributes[..]).collect(),
        Data::ExponentialHistogram(h) => h.data_points.iter().map(|p| &p.attributes[..]).collect(),
        Data::Summary(s) => s.data_points.iter().map(|p| &p.attributes[..]).collect(),
    }
}

/// Whether a point carries a value: OTLP's FLAG_NO_RECORDED_VALUE marks one that does not.
fn has_value(flags: u32) -> bool {
    flags & 1 == 0
}

fn ingest_metric(
    pools: &mut FxHashMap<String, Pool>,
    metric: &Metric,
    now: Instant,
    unix_now: f64,
    out: &mut Ingested,
) {
    let Some(mapping) = mapping::mapping(&metric.name) else {
        out.ignored += metric
            .data
            .as_ref()
            .map_or(0, |d| point_attributes(d).len() as u64);
        return;
    };
    let (scale, shape) = match mapping {
        Mapping::To(figure) => (1.0, figure.shape()),
        Mapping::ByState(_) => (1.0, Shape::Current),
        Mapping::Time(figure, by_name) => (
            mapping::seconds_per_unit(&metric.unit).unwrap_or(by_name),
            figure.shape(),
        ),
    };
    let mut each = |attributes: &[KeyValue], checked: Result<Point, Refusal>| {
        let result = checked.and_then(|point| {
            let figure = match mapping {
                Mapping::To(figure) | Mapping::Time(figure, _) => figure,
                Mapping::ByState(key) => match string_attribute(attributes, key) {
                    Some("used") => Figure::Used,
                    Some("idle") => Figure::Idle,
                    _ => return Err(Refusal::MissingState),
                },
            };
            let name = string_attribute(attributes, POOL_NAME)
                .or_else(|| string_attribute(attributes, OLD_POOL_NAME))
                .ok_or(Refusal::MissingPoolName)?;
            let pool = match pools.get_mut(name) {
                Some(pool) => pool,
                None => pools
                    .entry(name.to_string())
                    .or_insert_with(|| Pool::new(now, unix_now)),
            };
            pool.last_report = now;
            pool.last_report_unix = unix_now;
            apply(pool, figure, stream_key(figure, attributes), point);
            Ok(())
        });
        match result {
            Ok(()) => out.accepted += 1,
            Err(reason) => out.refuse(reason, &metric.name),
        }
    };
    match (&metric.data, shape) {
        (Some(Data::Gauge(gauge)), Shape::Current) => {
            for p in gauge.data_points.iter().filter(|p| has_value(p.flags)) {
                each(&p.attributes, number(p, false, false));
            }
        }
        (Some(Data::Sum(sum)), Shape::Current | Shape::Counter) => {
            let delta = is_delta(sum.aggregation_temporality);
            // An up-down counter's delta may be negative; nothing else may.
            let may_be_negative = delta == Some(true) && shape == Shape::Current;
            for p in sum.data_points.iter().filter(|p| has_value(p.flags)) {
                let point = delta
                    .ok_or(Refusal::UnspecifiedTemporality)
                    .and_then(|delta| number(p, delta, may_be_negative));
                each(&p.attributes, point);
            }
        }
        (Some(Data::Histogram(histogram)), Shape::Histogram) => {
            let delta = is_delta(histogram.aggregation_temporality);
            for p in histogram.data_points.iter().filter(|p| has_value(p.flags)) {
                let point = delta
                    .ok_or(Refusal::UnspecifiedTemporality)
                    .and_then(|delta| histogram_point(p, delta, scale));
                each(&p.attributes, point);
            }
        }
        (Some(data), _) => {
            let reason = match data {
                Data::ExponentialHistogram(_) if shape == Shape::Histogram => {
                    Refusal::ExponentialHistogram
                }
                _ => Refusal::WrongType,
            };
            for attributes in point_attributes(data) {
                each(attributes, Err(reason));
            }
        }
        (None, _) => {}
    }
}

/// Whether a sum or histogram is delta (`Some(true)`) or cumulative; `None` if unspecified.
fn is_delta(temporality: i32) -> Option<bool> {
    match AggregationTemporality::try_from(temporality) {
        Ok(AggregationTemporality::Delta) => Some(true),
        Ok(AggregationTemporality::Cumulative) => Some(false),
        _ => None,
    }
}

fn number(p: &NumberDataPoint, delta: bool, may_be_negative: bool) -> Result<Point, Refusal> {
    let value = match p.value {
        Some(NumberValue::AsDouble(v)) => v,
        Some(NumberValue::AsInt(v)) => v as f64,
        None => return Err(Refusal::InvalidValue),
    };
    if !value.is_finite() || (value < 0.0 && !may_be_negative) {
        return Err(Refusal::InvalidValue);
    }
    Ok(Point::Number {
        value,
        timing: Timing {
            delta,
            start: p.start_time_unix_nano,
            time: p.time_unix_nano,
        },
    })
}

fn histogram_point(p: &HistogramDataPoint, delta: bool, scale: f64) -> Result<Point, Refusal> {
    let sum = p.sum.filter(|s| s.is_finite() && *s >= 0.0);
    let bounds: Vec<f64> = p.explicit_bounds.iter().map(|b| b * scale).collect();
    let counts = if p.bucket_counts.is_empty() && bounds.is_empty() {
        vec![p.count]
    } else {
        p.bucket_counts.clone()
    };
    let valid = sum.is_some()
        && counts.len() == bounds.len() + 1
        && bounds.iter().all(|b| b.is_finite())
        && bounds.windows(2).all(|w| w[0] < w[1])
        && counts.iter().try_fold(0u64, |a, c| a.checked_add(*c)) == Some(p.count);
    if !valid {
        return Err(Refusal::InvalidValue);
    }
    Ok(Point::Histogram {
        point: HistogramPoint {
            bounds,
            counts,
            sum: sum.unwrap_or(0.0) * scale,
            count: p.count,
        },
        timing: Timing {
            delta,
            start: p.start_time_unix_nano,
            time: p.time_unix_nano,
        },
    })
}

/// A stream's identity within its pool: the figure and every attribute but the pool's name, in
/// any order.
fn stream_key(figure: Figure, attributes: &[KeyValue]) -> u64 {
    let mut key = {
        let mut h = FxHasher::default();
        figure.hash(&mut h);
        h.finish()
    };
    for kv in attributes {
        if kv.key == POOL_NAME || kv.key == OLD_POOL_NAME {
            continue;
        }
        key = key.wrapping_add(match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(AnyValue::StringValue(s)) => pair_hash(&kv.key, s),
            other => pair_hash(&kv.key, &format!("{other:?}")),
        });
    }
    key
}

/// Folds a checked point into its stream and the pool's totals.
fn apply(pool: &mut Pool, figure: Figure, key: u64, point: Point) {
    let Timing { delta, start, time } = point.timing();
    let stream = pool.streams.entry(key).or_insert_with(|| Stream {
        figure,
        start,
        time: 0,
        value: 0.0,
        histogram: None,
    });
    // A repeat (an exporter's retry) or a point older than the last: already counted.
    if time != 0 && time <= stream.time {
        return;
    }
    stream.time = time;
    let restarted = !delta && start != stream.start;
    stream.start = start;
    match point {
        Point::Number { value, .. } => match figure.shape() {
            Shape::Current if delta => stream.value += value,
            Shape::Current => stream.value = value,
            _ => {
                let increase = if delta || restarted || value < stream.value {
                    // After a reset, as Prometheus' increase has it: counting started from 0.
                    value
                } else {
                    value - stream.value
                };
                if !delta {
                    stream.value = value;
                }
                let total = &mut pool.counters[figure.index()];
                *total = Some(total.unwrap_or(0.0) + increase);
            }
        },
        Point::Histogram { point, .. } => {
            let increase = match &stream.histogram {
                Some(before) if !delta && !restarted => {
                    point.minus(before).unwrap_or_else(|| point.clone())
                }
                _ => point.clone(),
            };
            if !delta {
                stream.histogram = Some(point);
            }
            pool.histogram(figure).add(&increase);
        }
    }
}

#[cfg(test)]
mod tests;
