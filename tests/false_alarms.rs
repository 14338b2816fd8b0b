//! No alert on a healthy pool: real PgBouncer and PostgreSQL under a healthy load (transactions
//! with pauses inside, moderate utilization, short bursts below every threshold), watched with
//! the shipped rules from the agent's first sample. Nothing may go pending or firing.
//! `scripts/bench-false-alarms.sh` runs the same scenario for half an hour.

use std::time::Duration;

use crate::common::healthy_load;

/// How long the CI run watches; POOLWATCH_FALSE_ALARM_SECONDS runs it longer.
const DEFAULT_SECONDS: u64 = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_healthy_pool_raises_no_alert_from_a_cold_start() {
    let seconds = std::env::var("POOLWATCH_FALSE_ALARM_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SECONDS);
    let watched = healthy_load::start();
    let observed = healthy_load::run(&watched, Duration::from_secs(seconds), |_| {}).await;
    assert!(
        observed.alerts.is_empty(),
        "alerts on a healthy pool: {:#?}\nagent log:\n{}",
        observed.alerts.values().collect::<Vec<_>>(),
        watched.agent.log()
    );
    // The scenario did what it says, so the quiet above means something: the shipped rules
    // were loaded and judged a pool that was busy, bursting, and idle inside transactions.
    let m = watched.agent.metrics();
    let shipped = poolwatch::rules::files::RuleSet::embedded().rule_count() as f64;
    assert_eq!(m.get("poolwatch_rules_loaded", &[]), Some(shipped));
    assert!(
        (0.4..0.8).contains(&observed.max_utilization),
        "bursts reach between 0.4 and 0.8 of the pool: {observed:?}"
    );
    assert!(
        observed.max_idle_in_transaction > 0.0,
        "the pauses inside transactions were seen: {observed:?}"
    );
    assert!(observed.transactions > 1000, "{observed:?}");
}
