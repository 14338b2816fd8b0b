//! Against a real PgBouncer: a pool of 5 with 12 clients each holding a transaction open.

use crate::common;

use std::time::Duration;

use crate::common::{Agent, Holders, PgBouncer, agent_config, target};

const POOL: (&str, &str) = ("db_client_connection_pool_name", "mdm_demo/mdm");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_pool_shows_used_pending_and_utilization_then_drains() {
    let bouncer = PgBouncer::start(5);
    let agent = Agent::start(&agent_config(
        "300ms",
        "250ms",
        &[target("pgbouncer", "bouncer", &bouncer.admin_url(), &[])],
    ));
    // In transaction pooling a server stays with the client until COMMIT: the first five
    // hold all of pool_size, the other seven wait inside their BEGIN.
    let holders = Holders::spawn(&bouncer.app_config(), 12);

    let state = ("db_client_connection_state", "used");
    let metrics = agent.wait_metrics(Duration::from_secs(20), "used=5 and pending=7", |m| {
        let used = m.get("db_client_connection_count", &[POOL, state])?;
        let pending = m.get("db_client_connection_pending_requests", &[POOL])?;
        let waited = m.get("poolwatch_pool_oldest_wait_seconds", &[POOL])?;
        (used == 5.0 && pending == 7.0 && waited > 0.0).then(|| m.clone())
    });
    assert_eq!(
        metrics.get("poolwatch_pool_utilization_ratio", &[POOL]),
        Some(1.0)
    );
    assert_eq!(metrics.get("poolwatch_pool_size", &[POOL]), Some(5.0));
    assert_eq!(metrics.get("db_client_connection_max", &[POOL]), Some(5.0));
    assert_eq!(
        metrics.get(
            "db_client_connection_count",
            &[POOL, ("db_client_connection_state", "idle")]
        ),
        Some(0.0)
    );
    assert_eq!(
        metrics.get("poolwatch_pool_idle_in_transaction_connections", &[POOL]),
        None,
        "PgBouncer cannot see it"
    );

    // The recommendation behind the alerts (tests/rules.rs): 12 callers at 80%.
    assert_eq!(
        metrics.get("poolwatch_pool_recommended_size", &[POOL]),
        Some(15.0)
    );

    holders.release().await;
    agent.wait_metrics(Duration::from_secs(20), "used=0 and pending=0", |m| {
        let used = m.get("db_client_connection_count", &[POOL, state])?;
        let pending = m.get("db_client_connection_pending_requests", &[POOL])?;
        (used == 0.0 && pending == 0.0).then_some(())
    });
    let after = agent.metrics();
    assert_eq!(
        after.get("poolwatch_pool_utilization_ratio", &[POOL]),
        Some(0.0)
    );
    assert!(
        after
            .get("poolwatch_pool_transactions_total", &[POOL])
            .unwrap()
            >= 12.0
    );
}

#[test]
fn check_exits_unhealthy_and_names_the_new_pool_size() {
    // `check` on a full pool with a caller waiting, judged by the shipped rules (without waiting
    // for their `for`): utilization high (warning) and the pool exhausted (critical), so exit 2;
    // 2 used + 1 waiting at 80% is a pool of 4.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bouncer = PgBouncer::start(2);
    let holders = {
        let _runtime = runtime.enter();
        Holders::spawn(&bouncer.app_config(), 3)
    };
    let target = format!("pgbouncer={}", bouncer.admin_url());
    let (code, stdout) = common::wait_for(
        Duration::from_secs(20),
        "check to see the waiting client",
        || {
            let output = std::process::Command::new(common::binary())
                .args(["check", "--window", "300ms", "--target", &target])
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout).to_string();
            stdout
                .contains("status: unhealthy")
                .then_some((output.status.code(), stdout))
        },
    );
    assert_eq!(code, Some(2), "{stdout}");
    for line in [
        "warning: High pool utilization",
        "warning: Connection pool exhaustion",
        "recommendation: Increase pool_size to 4",
    ] {
        assert!(stdout.contains(line), "{line} in:\n{stdout}");
    }
    runtime.block_on(holders.release());
}

#[test]
fn a_missing_password_is_reported_as_auth() {
    // As a newcomer meets it: the README's `check` command without PGPASSWORD set.
    let target = format!(
        "pgbouncer=postgres://pgbouncer@127.0.0.1:{}/pgbouncer",
        common::pgbouncer_port()
    );
    let output = std::process::Command::new(common::binary())
        .args(["check", "--window", "300ms", "--target", &target])
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains(
            "could not check pgbouncer: auth: invalid configuration: password missing (set \
             PGPASSWORD, or password_file or password_env in the config)"
        ),
        "{stdout}"
    );
}
