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

    // The recommendation behind the alerts (tests/rules.rs): 12 callers at 80%. No transaction
    // has ended, so no hold time is known and the 80% rule is the only model.
    assert_eq!(
        metrics.get(
            "poolwatch_pool_recommended_size",
            &[POOL, ("model", "utilization")]
        ),
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

/// Clients that each run `transaction` back to back until stopped: a closed loop, as the
/// request handlers of a busy application are.
struct Looping {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Looping {
    fn spawn(
        config: &tokio_postgres::Config,
        clients: usize,
        transaction: &'static str,
    ) -> Looping {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let tasks = (0..clients)
            .map(|_| {
                let config = config.clone();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    let client = common::connect(&config).await;
                    while !*stopped.borrow() {
                        client.simple_query(transaction).await.expect(transaction);
                    }
                })
            })
            .collect();
        Looping { stop, tasks }
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        for task in self.tasks {
            task.await.expect("client");
        }
    }
}

/// A pool of 3 under 8 clients running 50 ms transactions back to back: PgBouncer's STATS give
/// the checkout rate and the hold time, so Erlang C can size it. But the checkouts it sees are
/// all 3 connections can serve (about 60/s), not what the 8 clients would ask of a bigger pool,
/// so Erlang C on them undershoots; the 80% rule on used + pending wins and is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_pool_is_recommended_above_its_size_by_the_larger_model() {
    let bouncer = PgBouncer::start(3);
    let agent = Agent::start(&agent_config(
        "500ms",
        "400ms",
        &[target("pgbouncer", "bouncer", &bouncer.admin_url(), &[])],
    ));
    let load = Looping::spawn(
        &bouncer.app_config(),
        8,
        "BEGIN; SELECT pg_sleep(0.05); COMMIT",
    );
    // Figures with rates over at least 5 s of load, while callers wait.
    let pool = common::wait_for(
        Duration::from_secs(30),
        "a saturated pool with its checkout rate and hold time",
        || {
            let (_, body) = agent.get("/api/v1/pools").ok()?;
            let pools: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
            let pool = pools.into_iter().find(|p| p["pool"] == POOL.1)?;
            let ready = pool["pending"].as_u64()? > 0
                && pool["used"] == 3
                && pool["checkouts_per_second"].as_f64()? > 0.0
                && pool["avg_usage_time_seconds"].as_f64()? > 0.0
                && pool["observed_seconds"].as_f64()? >= 5.0;
            ready.then_some(pool)
        },
    );
    load.stop().await;

    let used = pool["used"].as_u64().unwrap();
    let pending = pool["pending"].as_u64().unwrap();
    let rate = pool["checkouts_per_second"].as_f64().unwrap();
    let hold = pool["avg_usage_time_seconds"].as_f64().unwrap();
    let recommendation = &pool["recommendation"];
    let size = recommendation["pool_size"].as_u64().unwrap();
    eprintln!(
        "used {used}, pending {pending}, {rate:.1} checkouts/s × {:.1} ms held: \
         recommended {size} ({})\n{}",
        hold * 1e3,
        recommendation["model"],
        recommendation["reasoning"].as_str().unwrap()
    );
    // Every transaction sleeps 50 ms (PgBouncer counts a transaction when it begins and its
    // time when it ends, so a window's average may fall a little short); the rate is what 3
    // connections serve (Little's law: the connections busy on average are at most the 3).
    assert!((0.04..0.5).contains(&hold), "{hold}");
    assert!(rate * hold <= 3.0 * 1.1, "{rate} × {hold}");
    // Erlang C from the figures the pool shows, and the 80% rule from its queue.
    let workload = poolwatch::advisor::Workload::new(rate, hold).unwrap();
    let target = poolwatch::advisor::WaitTarget::default();
    let erlang_c = poolwatch::advisor::recommend(workload, target, None)
        .unwrap()
        .pool_size;
    let utilization = ((used + pending) as f64 / 0.8).ceil() as u64;
    assert!(
        erlang_c < utilization,
        "Erlang C {erlang_c} should undershoot the queue's {utilization}"
    );
    assert_eq!(pool["recommended_pool_size"], size);
    assert_eq!(size, utilization);
    assert_eq!(recommendation["model"], "utilization");
    assert!(size > 3, "a recommendation above the current pool_size");
    let reasoning = recommendation["reasoning"].as_str().unwrap();
    assert!(
        reasoning.starts_with(&format!(
            "Utilization: {used} used + {pending} waiting = {} connections wanted now; \
             {utilization} keeps that at or below 80%.",
            used + pending
        )),
        "{reasoning}"
    );
    assert!(
        reasoning.contains(&format!(
            "Erlang C on the observed checkouts asks for only {erlang_c} (while callers wait"
        )),
        "{reasoning}"
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
