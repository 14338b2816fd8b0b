//! CPU cost of turning a snapshot into what the endpoints serve, per pool count: the Prometheus
//! exposition and the health report, rendered once per change (not per scrape).

use std::collections::BTreeMap;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use poolwatch::exporters::prometheus;
use poolwatch::health;
use poolwatch::model::{
    Labels, PoolFigures, PoolLimits, PoolSample, PoolTotals, ServerSample, SourceKind,
};
use poolwatch::status::{Snapshot, TargetStatus};

fn snapshot(pools: usize) -> Snapshot {
    let pools = (0..pools)
        .map(|i| PoolFigures {
            utilization: Some(0.5),
            overflow_utilization: Some(0.0),
            avg_wait_time_seconds: Some(0.01),
            avg_usage_time_seconds: Some(0.2),
            churn_per_minute: Some(1.0),
            connection_errors: None,
            recommended_pool_size: Some(7),
            latest: PoolSample {
                pool: format!("mdm_dataset_{i}/mdm"),
                labels: Labels::from([("dataset".into(), format!("dataset_{i}"))]),
                used: Some(5),
                idle: Some(5),
                pending: Some(0),
                oldest_wait_seconds: Some(0.0),
                limits: PoolLimits {
                    pool_size: Some(10),
                    max_overflow: Some(2),
                    timeout_seconds: Some(30.0),
                    recycle_seconds: Some(3600.0),
                },
                totals: PoolTotals {
                    transactions: Some(1000 + i as u64),
                    connections_opened: Some(10),
                    connections_closed: Some(5),
                    ..PoolTotals::default()
                },
                ..PoolSample::default()
            },
        })
        .collect();
    Snapshot {
        targets: vec![TargetStatus {
            name: "bouncer".into(),
            source: SourceKind::Pgbouncer,
            endpoint: "postgres://pgbouncer@127.0.0.1:6432/pgbouncer".into(),
            labels: Labels::new(),
            up: true,
            samples: 10,
            last_duration_seconds: Some(0.01),
            last_success_unix_seconds: Some(1.8e9),
            errors: BTreeMap::new(),
            last_error: None,
            warnings: vec![],
            server: Some(ServerSample::default()),
            pools,
        }],
        agent: Default::default(),
    }
}

fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    for pools in [10, 100, 1000] {
        let snap = snapshot(pools);
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
