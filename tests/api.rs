//! The JSON API and the readiness endpoint against a real PgBouncer: `/readyz` waits for every
//! target's first sample, `/api/v1/pools` shows the figures a known state gives, an average the
//! source cannot know yet is left out (not written as 0), and `/api/v1/health` lists every
//! target and pool in the spec's shape.

use std::time::Duration;

use crate::common::{self, Agent, Holders, PgBouncer, agent_config, target};

fn json(agent: &Agent, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = agent.get(path).unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_pools_health_and_an_unknown_average() {
    let bouncer = PgBouncer::start(5);
    // A hung PgBouncer: the first sample can only end at its deadline.
    bouncer.pause();
    let agent = Agent::start(&agent_config(
        "2s",
        "2s",
        &[target("pgbouncer", "bouncer", &bouncer.admin_url(), &[])],
    ));
    let (status, body) = agent.get("/readyz").unwrap();
    assert_eq!((status, body.as_str()), (503, "not sampled yet: bouncer\n"));
    common::wait_for(
        Duration::from_secs(10),
        "ready after the first sample",
        || (agent.get("/readyz").ok()?.0 == 200).then_some(()),
    );
    let (_, health) = json(&agent, "/api/v1/health");
    assert_eq!(health["status"], "unknown", "{health}");
    assert_eq!(health["targets"][0]["up"], false, "{health}");
    bouncer.resume();

    // Five clients each hold a transaction open: every connection of the pool of 5 is busy and
    // no transaction completes.
    let holders = Holders::spawn(&bouncer.app_config(), 5);
    let pool = common::wait_for(Duration::from_secs(15), "5 used in /api/v1/pools", || {
        let (_, pools) = json(&agent, "/api/v1/pools");
        let pool = pools.as_array()?.first()?.clone();
        (pool["used"] == 5).then_some(pool)
    });
    assert_eq!(pool["target"], "bouncer");
    assert_eq!(pool["source"], "pgbouncer");
    assert_eq!(pool["pool"], "mdm_demo/mdm");
    assert_eq!(
        (
            &pool["idle"],
            &pool["pending"],
            &pool["limits"]["pool_size"]
        ),
        (&0.into(), &0.into(), &5.into()),
        "{pool}"
    );
    assert_eq!(pool["utilization"], 1.0);
    // Past the rate window (10 s) with nothing completed: the average holding time is unknown,
    // so it is absent from the API and from /metrics rather than 0.
    common::wait_for(
        Duration::from_secs(30),
        "a full rate window of busy",
        || {
            let (_, pools) = json(&agent, "/api/v1/pools");
            (pools[0]["observed_seconds"].as_f64()? > 12.0).then_some(())
        },
    );
    let (_, pools) = json(&agent, "/api/v1/pools");
    assert!(pools[0]["avg_usage_time_seconds"].is_null(), "{pools}");
    let m = agent.metrics();
    assert_eq!(
        m.get(
            "poolwatch_pool_avg_usage_time_seconds",
            &[("db_client_connection_pool_name", "mdm_demo/mdm")]
        ),
        None,
        "{}",
        m.text
    );

    let (status, health) = json(&agent, "/api/v1/health");
    assert_eq!(status, 200);
    assert_eq!(health["targets"][0]["target"], "bouncer", "{health}");
    assert_eq!(health["targets"][0]["up"], true, "{health}");
    let pool = &health["pools"][0];
    for key in ["status", "warnings", "recommendations"] {
        assert!(!pool[key].is_null(), "{key} in {pool}");
    }
    let (status, alerts) = json(&agent, "/api/v1/alerts");
    assert_eq!(status, 200);
    assert!(alerts.is_array(), "{alerts}");
    holders.release().await;
}
