//! Every shipped rule still catches what it is for: each fires in a rule-test case (checked
//! here), and the ones a live scenario can produce on this machine fire on real services with
//! the shipped rules unchanged: a saturated PgBouncer pool (PoolUtilizationHigh and
//! PoolSlowAcquisition), and a PostgreSQL session left idle in its transaction past a minute
//! (PoolIdleInTransaction), which its commit resolves. TargetDown is fired live in
//! `failures`, the health rules with short `for`s in `rules`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use poolwatch::rules::alerts::RuleEngine;
use poolwatch::rules::files::RuleSet;
use poolwatch::rules::testfile;
use poolwatch::series::{Millis, SeriesLabels, SeriesStore};

use crate::common::{self, Agent, Holders, PgBouncer, agent_config, app_config, connect, target};

fn alerts(agent: &Agent) -> Vec<serde_json::Value> {
    let (_, body) = agent.get("/api/v1/alerts").unwrap();
    serde_json::from_str(&body).unwrap()
}

/// The alert named `name` whose labels include `pool`, if pending or firing.
fn alert(agent: &Agent, name: &str, pool: &str) -> Option<serde_json::Value> {
    alerts(agent).into_iter().find(|a| {
        a["labels"]["alertname"] == name && a["labels"]["db_client_connection_pool_name"] == pool
    })
}

fn firing(agent: &Agent, name: &str, pool: &str) -> Option<serde_json::Value> {
    alert(agent, name, pool).filter(|a| a["state"] == "firing")
}

#[test]
fn every_shipped_rule_fires_in_some_rule_test() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules/tests");
    let mut fired = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let file = testfile::parse_test_file(&text).unwrap();
        for test in file.tests.iter().flat_map(|g| &g.alert_rule_test) {
            if !test.exp_alerts.is_empty() {
                fired.insert(test.alertname.clone());
            }
        }
    }
    let shipped: BTreeSet<String> = RuleSet::embedded()
        .groups
        .iter()
        .flat_map(|g| g.rules.iter().map(|r| r.name.clone()))
        .collect();
    let never: Vec<&String> = shipped.difference(&fired).collect();
    assert!(
        never.is_empty(),
        "shipped rules no test makes fire: {never:?}"
    );
}

/// What the 30-minute false-alarm run found: a healthy pool whose bursts of short transactions
/// pull its average usage time down for a few seconds every 15 s. The average is then often
/// twice its 10-minute low and the fitted slope is positive half the time; that once put
/// PoolUsageTimeClimbing in pending. Promtool-format tests see only firing alerts, so the shipped
/// rules are run here, every 2 s for 30 minutes, and nothing may even go pending.
#[test]
fn a_usage_time_that_swings_with_bursts_never_goes_pending() {
    let mut store = SeriesStore::new(Millis::MAX / 4);
    let series = |name: &str| -> SeriesLabels {
        [
            ("__name__", name),
            ("target", "bouncer"),
            ("source", "pgbouncer"),
            ("db_client_connection_pool_name", "mdm/mdm"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let mut engine = RuleEngine::new(RuleSet::embedded());
    for step in 0..900i64 {
        let t = step * 2_000;
        // 25 ms per transaction; for 10 s of every 15 s after a burst, a third of that, plus a
        // little noise so no two cycles are alike.
        let phase = (t / 1_000) % 15;
        let noise = ((step * 7919) % 13) as f64 / 1_000.0;
        let usage = if phase < 10 { 0.012 } else { 0.025 } + noise;
        store.append(series("poolwatch_pool_avg_usage_time_seconds"), t, usage);
        store.append(series("poolwatch_pool_observed_seconds"), t, t as f64 / 1e3);
        engine.evaluate_all(&store, t, true);
        let raised: Vec<String> = engine
            .alerts()
            .iter()
            .map(|(rule, alert)| format!("{} {:?} at {t} ms", rule.name, alert.state))
            .collect();
        assert!(raised.is_empty(), "{raised:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_pool_fires_utilization_and_slow_acquisition() {
    let bouncer = PgBouncer::start(5);
    // No `rules`: the shipped rules, with their own `for`s.
    let agent = Agent::start_logging(
        &agent_config(
            "1s",
            "900ms",
            &[target("pgbouncer", "bouncer", &bouncer.admin_url(), &[])],
        ),
        "info",
    );
    let holders = Holders::spawn(&bouncer.app_config(), 12);
    let pool = "mdm_demo/mdm";
    let both = common::wait_for(Duration::from_secs(120), "both alerts to fire", || {
        let utilization = firing(&agent, "PoolUtilizationHigh", pool)?;
        let slow = firing(&agent, "PoolSlowAcquisition", pool)?;
        Some((utilization, slow))
    });
    assert_eq!(
        both.0["annotations"]["recommendation"], "Increase pool_size to 15",
        "{both:?}"
    );
    // The oldest of the seven waiting callers has waited more than 5 s for over a minute.
    assert!(both.1["value"].as_f64().unwrap() > 60.0, "{both:?}");
    holders.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_idle_in_its_transaction_past_a_minute_fires_and_its_commit_resolves() {
    let app = format!("idle-in-tx-{}", std::process::id());
    let agent = Agent::start_logging(
        &agent_config(
            "1s",
            "900ms",
            &[target(
                "postgres",
                "pg",
                &common::monitor_url(),
                &["pool_key: application_name"],
            )],
        ),
        "info",
    );
    let client = connect(&app_config(&app)).await;
    client.simple_query("BEGIN").await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    // Past 55 s it has not fired yet: the threshold is a minute of idleness, not a sample.
    common::wait_for(Duration::from_secs(70), "the session to idle 55 s", || {
        let m = agent.metrics();
        let age = m.get(
            "poolwatch_pool_oldest_idle_in_transaction_seconds",
            &[("db_client_connection_pool_name", &app)],
        )?;
        (age > 55.0).then_some(())
    });
    assert!(firing(&agent, "PoolIdleInTransaction", &app).is_none());
    let fired = common::wait_for(Duration::from_secs(30), "the alert to fire", || {
        firing(&agent, "PoolIdleInTransaction", &app)
    });
    assert!(fired["value"].as_f64().unwrap() > 60.0, "{fired}");
    client.simple_query("COMMIT").await.unwrap();
    common::wait_for(Duration::from_secs(10), "the commit to resolve it", || {
        alert(&agent, "PoolIdleInTransaction", &app)
            .is_none()
            .then_some(())
    });
}
