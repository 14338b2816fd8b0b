//! CPU cost of turning a snapshot into what the endpoints serve, per pool count, as the agent
//! does it once per sample cycle: the samples of the exposition model (label sets kept from the
//! previous cycle), the Prometheus text written from them, and the health report. Prints the
//! cost per series beside criterion's figures.

// Bench code: an unwrap that fails is the failure report.
#![allow(clippy::unwrap_used)]

#[path = "fixtures/mod.rs"]
mod fixtures;

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use poolwatch::exporters::prometheus;
use poolwatch::exposition::{ExportedSample, Exposer};
use poolwatch::health;
use poolwatch::status::Snapshot;

/// One cycle's exposition: samples from the snapshot, then the text.
fn expose(exposer: &mut Exposer, samples: &mut Vec<ExportedSample>, snap: &Snapshot) -> usize {
    exposer.samples(snap, samples);
    let mut out = Vec::with_capacity(samples.len() * 160);
    prometheus::encode(samples, &[], &mut out);
    out.len()
}

/// Plain series in the exposition (a histogram counts as its buckets, sum and count).
fn series_count(samples: &[ExportedSample]) -> u64 {
    let mut n = 0;
    for s in samples {
        s.scalars(|_| n += 1);
    }
    n
}

fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    for pools in [10, 100, 1000] {
        let snap = fixtures::snapshot(pools, 1);
        let (mut exposer, mut samples) = (Exposer::default(), Vec::new());
        expose(&mut exposer, &mut samples, &snap);
        group.throughput(Throughput::Elements(series_count(&samples)));
        group.bench_with_input(BenchmarkId::new("exposition", pools), &snap, |b, s| {
            b.iter(|| expose(&mut exposer, &mut samples, s))
        });
        group.bench_with_input(BenchmarkId::new("health", pools), &snap, |b, s| {
            b.iter(|| health::report(s, &[]))
        });
    }
    group.finish();
}

criterion_group!(benches, render);

/// The per-series figure the issue tracks: the median of many steady-state cycles.
fn per_series() {
    for pools in [100, 1000] {
        let snap = fixtures::snapshot(pools, 1);
        let (mut exposer, mut samples) = (Exposer::default(), Vec::new());
        expose(&mut exposer, &mut samples, &snap);
        let series = series_count(&samples);
        let mut times: Vec<Duration> = (0..200)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(expose(&mut exposer, &mut samples, &snap));
                start.elapsed()
            })
            .collect();
        times.sort();
        let median = times[times.len() / 2];
        println!(
            "exposition of {pools} pools: {series} series, {:.1} µs per cycle, {:.3} µs per series",
            median.as_secs_f64() * 1e6,
            median.as_secs_f64() * 1e6 / series as f64
        );
    }
}

fn main() {
    benches();
    per_series();
    Criterion::default().configure_from_args().final_summary();
}
