//! Against a real PostgreSQL: pools as the server sees them in pg_stat_activity.

use crate::common;

use std::time::Duration;

use crate::common::{Agent, agent_config, app_config, connect, monitor_url, target};

fn agent() -> Agent {
    Agent::start(&agent_config(
        "300ms",
        "250ms",
        &[target(
            "postgres",
            "pg",
            &monitor_url(),
            &[
                "pool_key: application_name",
                "limits: {pool_size: 10, max_overflow: 5}",
            ],
        )],
    ))
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), common::free_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sleeping_and_eight_idle_sessions_are_used_3_idle_8() {
    let agent = agent();
    let app = unique("pw-states");
    let config = app_config(&app);
    let mut sleepers = Vec::new();
    for _ in 0..3 {
        let client = connect(&config).await;
        let cancel = client.cancel_token();
        let task = tokio::spawn(async move {
            // Cancelled below; the error is the cancellation.
            let _ = client.simple_query("SELECT pg_sleep(60)").await;
        });
        sleepers.push((cancel, task));
    }
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(connect(&config).await);
    }
    let pool = ("db_client_connection_pool_name", app.as_str());
    let m = agent.wait_metrics(Duration::from_secs(20), "used=3 idle=8", |m| {
        let used = m.get(
            "db_client_connection_count",
            &[pool, ("db_client_connection_state", "used")],
        )?;
        let idle = m.get(
            "db_client_connection_count",
            &[pool, ("db_client_connection_state", "idle")],
        )?;
        (used == 3.0 && idle == 8.0).then(|| m.clone())
    });
    // Configured limits fill what the server cannot see; pending stays absent, never 0.
    assert_eq!(
        m.get("poolwatch_pool_utilization_ratio", &[pool]),
        Some(0.3)
    );
    assert_eq!(m.get("db_client_connection_max", &[pool]), Some(15.0));
    assert_eq!(
        m.get("db_client_connection_pending_requests", &[pool]),
        None
    );
    assert_eq!(m.get("poolwatch_pool_lock_waits", &[pool]), Some(0.0));
    let headroom = m
        .get("poolwatch_postgres_headroom_connections", &[])
        .unwrap();
    let max = m.get("poolwatch_postgres_max_connections", &[]).unwrap();
    let reserved = m
        .get("poolwatch_postgres_reserved_connections", &[])
        .unwrap();
    let all = m.get("poolwatch_postgres_connections", &[]).unwrap();
    assert_eq!(headroom, max - reserved - all);
    assert!(all >= 12.0, "our 11 sessions and the agent's own: {all}");

    for (cancel, task) in sleepers {
        cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
        task.await.unwrap();
    }
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_and_closing_ten_connections_is_churn() {
    let agent = agent();
    let app = unique("pw-churn");
    let config = app_config(&app);
    let pool = ("db_client_connection_pool_name", app.as_str());
    let idle_count = |n: f64| {
        move |m: &common::exposition::Exposition| {
            (m.get(
                "db_client_connection_count",
                &[pool, ("db_client_connection_state", "idle")],
            )? == n)
                .then_some(())
        }
    };
    // One connection stays throughout so the pool (a key in pg_stat_activity) stays visible.
    let _anchor = connect(&config).await;
    agent.wait_metrics(Duration::from_secs(20), "the anchor", idle_count(1.0));
    // (opened, closed) so far for the pool.
    let churn_counts = |m: &common::exposition::Exposition| {
        let count = |name| m.get(name, &[pool]).expect("the pool's churn counters");
        (
            count("poolwatch_pool_connections_opened_total"),
            count("poolwatch_pool_connections_closed_total"),
        )
    };
    let (opened_before, closed_before) = churn_counts(&agent.metrics());

    let mut ten = Vec::new();
    for _ in 0..10 {
        ten.push(connect(&config).await);
    }
    agent.wait_metrics(
        Duration::from_secs(20),
        "eleven connections",
        idle_count(11.0),
    );
    drop(ten);
    agent.wait_metrics(
        Duration::from_secs(20),
        "back to the anchor",
        idle_count(1.0),
    );

    let after = agent.metrics();
    let (opened, closed) = churn_counts(&after);
    assert_eq!(
        (opened - opened_before, closed - closed_before),
        (10.0, 10.0)
    );
    let churn = after
        .get("poolwatch_pool_connection_churn_per_minute", &[pool])
        .unwrap();
    assert!(
        churn > 0.0,
        "churn per minute over the rate window: {churn}"
    );
}
