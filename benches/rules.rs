//! The rules' cost at scale: evaluating the shipped rules over 1,000 pools with a full window
//! (15 minutes of samples every 10 s), and the memory that window takes per pool. Prints; asserts
//! nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use criterion::{Criterion, criterion_group};
use poolwatch::exporters::prometheus;
use poolwatch::model::{
    Labels, PoolFigures, PoolLimits, PoolSample, PoolTotals, ServerSample, SourceKind,
};
use poolwatch::rules::alerts::RuleEngine;
use poolwatch::rules::files::RuleSet;
use poolwatch::series::{Millis, NAME_LABEL, SeriesLabels, SeriesStore};
use poolwatch::status::{Snapshot, TargetStatus};

/// Counts live heap bytes, to weigh the window.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const POOLS: usize = 1000;
const STEP: Millis = 10_000;
const SCRAPES: i64 = 90; // 15 minutes

fn snapshot(step: i64) -> Snapshot {
    let pools = (0..POOLS)
        .map(|i| {
            let used = ((i as i64 + step) % 6) as u64;
            PoolFigures::from_latest(PoolSample {
                pool: format!("mdm_dataset_{i}/mdm"),
                labels: Labels::from([("dataset".into(), format!("dataset_{i}"))]),
                used: Some(used),
                idle: Some(5 - used.min(5)),
                pending: Some(u64::from(i % 50 == 0) * 3),
                oldest_wait_seconds: Some(0.0),
                limits: PoolLimits {
                    pool_size: Some(5),
                    max_overflow: Some(2),
                    timeout_seconds: Some(30.0),
                    recycle_seconds: Some(3600.0),
                },
                totals: PoolTotals {
                    transactions: Some((step * 40 + i as i64) as u64),
                    connections_opened: Some(step as u64),
                    connections_closed: Some(step as u64),
                    ..PoolTotals::default()
                },
                ..PoolSample::default()
            })
        })
        .collect();
    Snapshot {
        targets: vec![TargetStatus {
            name: "bouncer".into(),
            source: SourceKind::Pgbouncer,
            endpoint: "postgres://pgbouncer@127.0.0.1:6432/pgbouncer".into(),
            labels: Labels::new(),
            up: true,
            samples: step as u64,
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

fn full_window() -> SeriesStore {
    let mut store = SeriesStore::new(SCRAPES * STEP);
    for step in 0..SCRAPES {
        let samples = prometheus::samples(&snapshot(step));
        store.ingest_scrape(
            step * STEP,
            samples.into_iter().map(|s| {
                let mut labels: SeriesLabels = s.labels.into_iter().collect();
                labels.insert(NAME_LABEL.into(), s.name.into());
                (labels, s.value)
            }),
        );
    }
    store
}

fn rules(c: &mut Criterion) {
    let store = full_window();
    let mut engine = RuleEngine::new(RuleSet::embedded());
    let t = (SCRAPES - 1) * STEP;
    c.bench_function("rules/shipped/1000-pools-full-window", |b| {
        b.iter(|| engine.evaluate_all(&store, t, true))
    });
}

criterion_group!(benches, rules);

fn main() {
    let before = LIVE.load(Ordering::Relaxed);
    let started = Instant::now();
    let store = full_window();
    let built = started.elapsed();
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "window: {POOLS} pools, {} series, {} samples over 15 min: {:.1} MiB, {:.1} KiB per pool, \
         {:.0} bytes per sample (built in {built:?})",
        store.series_count(),
        store.sample_count(),
        bytes as f64 / 1_048_576.0,
        bytes as f64 / 1024.0 / POOLS as f64,
        bytes as f64 / store.sample_count() as f64
    );
    drop(store);
    benches();
    Criterion::default().configure_from_args().final_summary();
}
