//! The instrumented pool on the real PostgreSQL (bb8, callers as tasks): what it reports in the
//! pool model matches what the server sees, pending is exact, and overflow connections close on
//! return.

use std::sync::Arc;
use std::time::Duration;

use poolwatch::model::Labels;
use poolwatch::pools::{AsyncInstrumentedPool, CountedPool, PoolSettings, postgres};
use poolwatch::secret::Connection;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

use crate::common::{APP_PASSWORD, connect, monitor_url, pg_port, wait_for};

fn sessions(application_name: &str) -> i64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = connect(&monitor_url().parse().unwrap()).await;
        client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&application_name],
            )
            .await
            .unwrap()
            .get(0)
    })
}

#[test]
fn the_pool_model_matches_the_server() {
    let app = format!(
        "pw-pool-{}-{}",
        std::process::id(),
        crate::common::free_port()
    );
    let endpoint = Connection::parse(&format!(
        "postgres://mdm:{APP_PASSWORD}@127.0.0.1:{}/mdm_demo",
        pg_port()
    ))
    .unwrap();
    let settings = PoolSettings {
        pool_size: 2,
        max_overflow: 1,
        timeout: Duration::from_secs(20),
        pre_ping: true,
        recycle: Some(Duration::from_secs(3600)),
    };
    let runtime = runtime();
    let pool = runtime.block_on(async {
        let labels = Labels::from([("backend".into(), "postgres".into())]);
        let manager = postgres::manager(&endpoint, &app);
        Arc::new(AsyncInstrumentedPool::new("mdm_demo", labels, manager, settings).unwrap())
    });
    let held = runtime.block_on(async {
        let mut held = Vec::new();
        for _ in 0..3 {
            let conn = pool.get().await.unwrap();
            conn.client.simple_query("SELECT 1").await.unwrap();
            held.push(conn);
        }
        held
    });
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let pool = Arc::clone(&pool);
            runtime.spawn(async move {
                let conn = pool.get().await.unwrap();
                conn.client.simple_query("SELECT 1").await.unwrap();
            })
        })
        .collect();
    wait_for(Duration::from_secs(10), "2 callers pending", || {
        (pool.stats().pending == 2).then_some(())
    });
    let sample = pool.sample();
    assert_eq!(
        (sample.used, sample.idle, sample.pending),
        (Some(3), Some(0), Some(2))
    );
    assert_eq!(
        sample.labels.get("backend").map(String::as_str),
        Some("postgres")
    );
    assert_eq!(sample.limits.max_connections(), Some(3));
    assert_eq!(sample.limits.recycle_seconds, Some(3600.0));
    // The server sees the pool's three connections under the spec's application_name.
    assert_eq!(sessions(&app), 3);
    drop(held);
    runtime.block_on(async {
        for w in waiters {
            w.await.unwrap();
        }
    });
    let sample = pool.sample();
    assert_eq!((sample.used, sample.pending), (Some(0), Some(0)));
    // The overflow connection closed on its return: two stay, as pool_size says.
    assert_eq!(sample.idle, Some(2));
    assert_eq!(sample.totals.connections_opened, Some(3));
    assert_eq!(sample.totals.connections_closed, Some(1));
    assert_eq!(sample.totals.assignments, Some(5));
    assert_eq!(sample.totals.transactions, Some(5));
    assert_eq!(sample.totals.connection_errors, Some(0));
    // Both waiters took a connection checked in while they waited: two hand-offs.
    assert_eq!(pool.stats().handoffs, 2);
    wait_for(
        Duration::from_secs(10),
        "the server to drop the closed one",
        || (sessions(&app) == 2).then_some(()),
    );
}

#[test]
fn failed_connects_are_counted_as_connection_errors() {
    let endpoint = Connection::parse(&format!(
        "postgres://mdm:wrong-password@127.0.0.1:{}/mdm_demo",
        pg_port()
    ))
    .unwrap();
    let settings = PoolSettings {
        pool_size: 1,
        max_overflow: 0,
        // Long enough for the failed SCRAM exchange to finish on a busy machine.
        timeout: Duration::from_secs(5),
        pre_ping: true,
        recycle: None,
    };
    let runtime = runtime();
    let pool = runtime.block_on(async {
        let manager = postgres::manager(&endpoint, "pw-bad");
        AsyncInstrumentedPool::new("bad", Labels::new(), manager, settings).unwrap()
    });
    let error = runtime
        .block_on(pool.get())
        .err()
        .expect("no connection with a wrong password");
    let message = error.to_string();
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );
    assert!(!message.contains("wrong-password"), "{message}");
    let stats = pool.stats();
    assert!(stats.connection_errors >= 1);
    assert_eq!((stats.timeouts, stats.open, stats.pending), (1, 0, 0));
}
