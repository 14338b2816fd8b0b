//! CPU cost of turning a snapshot into what the endpoints serve, per pool count: the Prometheus
//! exposition and the health report, rendered once per change (not per scrape).

// Test and bench code: an unwrap that fails is the failure report.
#![allow(clippy::unwrap_used)]

#[path = "fixtures/mod.rs"]
mod fixtures;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use poolwatch::exporters::prometheus;
use poolwatch::health;

fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    for pools in [10, 100, 1000] {
        let snap = fixtures::snapshot(pools, 1);
        group.bench_with_input(BenchmarkId::new("exposition", pools), &snap, |b, s| {
            b.iter(|| prometheus::render(s))
        });
        group.bench_with_input(BenchmarkId::new("health", pools), &snap, |b, s| {
            b.iter(|| health::report(s, &[]))
        });
    }
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
