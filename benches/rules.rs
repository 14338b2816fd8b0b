//! The rules' cost at scale: evaluating the shipped rules over 1,000 pools with a full window
//! (15 minutes of samples every 10 s), taking one scrape into the window at 100 pools, and the
//! memory a full window takes there and at 100 pools sampled every second (the soak's case).
//! Prints; asserts nothing.

// Bench code: an unwrap that fails is the failure report. The unsafe is a counting allocator, here
// and nowhere in the agent.
#![allow(clippy::unwrap_used, unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

#[path = "fixtures/mod.rs"]
mod fixtures;

use criterion::{Criterion, criterion_group};
use poolwatch::exposition::Exposer;
use poolwatch::rules::alerts::RuleEngine;
use poolwatch::rules::files::RuleSet;
use poolwatch::series::{Millis, SeriesStore};

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

/// When scrape `i` lands: a real tick lands a few milliseconds off the interval, which costs
/// bits.
fn scrape_time(i: i64, step: Millis) -> Millis {
    i * step + (i * 7919) % 23 - 11
}

/// The window as the agent keeps it: only the series some shipped rule reads.
fn full_window(pools: usize, step: Millis, scrapes: i64) -> SeriesStore {
    let mut store = SeriesStore::for_reads(scrapes * step, RuleSet::embedded().reads());
    let mut exposer = Exposer::default();
    let mut samples = Vec::new();
    for i in 0..scrapes {
        exposer.samples(&fixtures::snapshot(pools, i), &mut samples);
        store.ingest_scrape(scrape_time(i, step), &samples);
    }
    store
}

/// Builds a full window and prints what it weighs: every live heap byte it holds (labels and
/// indexes included) and the packed samples alone, per sample.
fn weigh_window(pools: usize, step: Millis, scrapes: i64) {
    let before = LIVE.load(Ordering::Relaxed);
    let started = Instant::now();
    let store = full_window(pools, step, scrapes);
    let built = started.elapsed();
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    let samples = store.sample_count() as f64;
    println!(
        "window: {pools} pools every {} s for {} min, {} series, {} samples: {:.1} MiB, \
         {:.1} KiB per pool, {:.2} bytes per sample with labels and indexes, {:.2} in the packed \
         samples alone (built in {built:?})",
        step / 1000,
        scrapes * step / 60_000,
        store.series_count(),
        store.sample_count(),
        bytes as f64 / 1_048_576.0,
        bytes as f64 / 1024.0 / pools as f64,
        bytes as f64 / samples,
        store.sample_bytes() as f64 / samples,
    );
}

/// Times the shipped rules over a full window of `pools` pools sampled every `step`.
fn evaluate(c: &mut Criterion, pools: usize, step: Millis, scrapes: i64) {
    let store = full_window(pools, step, scrapes);
    let mut engine = RuleEngine::new(RuleSet::embedded());
    // The agent evaluates at the time of the scrape it just took.
    let t = scrape_time(scrapes - 1, step);
    // What is timed must be whole evaluations: a rule that fails early would look fast.
    engine.evaluate_all(&store, t, true);
    println!(
        "rules over {pools} pools every {} s: {} active alerts, {} rules failing {:?}",
        step / 1000,
        engine.alerts().len(),
        engine.errors.len(),
        engine.errors.keys().collect::<Vec<_>>()
    );
    let name = format!(
        "rules/shipped/{pools}-pools-every-{}s-full-window",
        step / 1000
    );
    c.bench_function(&name, |b| b.iter(|| engine.evaluate_all(&store, t, true)));
}

/// Times what each sample cycle does before the rules run: the snapshot's samples made and taken
/// into a window that is already full, at 100 pools sampled every second.
fn ingest(c: &mut Criterion) {
    let (pools, step, scrapes) = (100, 1000, 900);
    let mut store = full_window(pools, step, scrapes);
    let mut exposer = Exposer::default();
    let snapshot = fixtures::snapshot(pools, scrapes);
    let mut samples = Vec::new();
    let mut i = scrapes;
    c.bench_function("series/ingest/100-pools-every-1s-full-window", |b| {
        b.iter(|| {
            exposer.samples(&snapshot, &mut samples);
            store.ingest_scrape(scrape_time(i, step), &samples);
            i += 1;
        })
    });
}

fn rules(c: &mut Criterion) {
    ingest(c);
    evaluate(c, POOLS, STEP, SCRAPES);
    // The steady state: 100 pools sampled every second, every rule evaluated each cycle.
    evaluate(c, 100, 1000, 900);
}

criterion_group!(benches, rules);

fn main() {
    weigh_window(POOLS, STEP, SCRAPES);
    weigh_window(100, 1000, 900);
    benches();
    Criterion::default().configure_from_args().final_summary();
}
