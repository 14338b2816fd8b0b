//! The false-alarm scenario of `tests/false_alarms.rs` for as long as asked (30 minutes unless
//! POOLWATCH_FALSE_ALARM_SECONDS says otherwise): a healthy pool watched with the shipped rules
//! from a cold start. Prints every alert that went pending or firing, and the load it judged.
//! Run it with `scripts/bench-false-alarms.sh`. It prints; it asserts nothing.

// Test and bench code: an unwrap that fails is the failure report.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::healthy_load;
use indicatif::{ProgressBar, ProgressStyle};

fn main() {
    // `cargo bench` passes --bench; this bench takes no other arguments.
    let seconds = std::env::var("POOLWATCH_FALSE_ALARM_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1800u64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let bar = ProgressBar::new(seconds).with_style(
        ProgressStyle::with_template("healthy load {bar:40} {pos}/{len} s ({eta} left)").unwrap(),
    );
    let watched = healthy_load::start();
    let observed = runtime.block_on(healthy_load::run(
        &watched,
        Duration::from_secs(seconds),
        |elapsed| bar.set_position(elapsed),
    ));
    bar.finish_and_clear();
    println!("healthy load for {seconds} s, shipped rules, sampling every 2 s");
    println!(
        "  transactions {}, scrapes {}, highest utilization {:.2}, longest idle in a transaction {:.3} s",
        observed.transactions,
        observed.scrapes,
        observed.max_utilization,
        observed.max_idle_in_transaction
    );
    if observed.alerts.is_empty() {
        println!("  alerts pending or firing: none");
    } else {
        println!("  alerts pending or firing: {}", observed.alerts.len());
        for alert in observed.alerts.values() {
            println!(
                "    {} {} (value {}, first seen {})",
                alert["state"], alert["labels"], alert["value"], alert["active_at"]
            );
        }
    }
}
