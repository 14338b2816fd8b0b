//! A healthy pool under a realistic load, watched with the shipped rules from the agent's first
//! sample: what the false-alarm test asserts quiet for a few minutes and its bench watches for
//! half an hour. A private PostgreSQL and PgBouncer keep other tests' pools out of view.
//!
//! The load: four clients run multi-statement transactions with a pause inside (as an app that
//! works between statements does) and a little think time between them, about a third of a
//! pool of 10; every 15 s three more clients run a 2-second burst of short transactions, which
//! lifts utilization to about 0.7, below every threshold.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Agent, PgBouncer, Postgres, agent_config, connect, target};

pub const DATABASE: &str = "mdm_healthy";
pub const POOL_SIZE: u32 = 10;
const STEADY_CLIENTS: usize = 4;
const BURST_CLIENTS: usize = 3;
const BURST_EVERY: Duration = Duration::from_secs(15);
const BURST_LENGTH: Duration = Duration::from_secs(2);

/// The watched services and the agent watching them.
pub struct Watched {
    pub agent: Agent,
    pub bouncer: PgBouncer,
    pub postgres: Postgres,
}

/// What the run saw.
#[derive(Debug, Default)]
pub struct Observed {
    /// Every alert seen pending or firing, by alert name and labels, with its first sighting.
    pub alerts: BTreeMap<String, serde_json::Value>,
    /// The highest utilization of the PgBouncer pool any scrape showed.
    pub max_utilization: f64,
    /// The longest a PostgreSQL connection was seen idle inside a transaction.
    pub max_idle_in_transaction: f64,
    pub transactions: u64,
    pub scrapes: u64,
}

/// Starts the services and the agent (shipped rules, sampling every 2 s).
pub fn start() -> Watched {
    let postgres = Postgres::start(DATABASE);
    let bouncer = PgBouncer::in_front_of(postgres.port, DATABASE, POOL_SIZE, 0);
    // The PostgreSQL side sees PgBouncer's server connections: their pool is PgBouncer's.
    let limits = [
        "limits:",
        "  pool_size: 10",
        "  max_overflow: 0",
        "  timeout: 30",
        "  recycle: 3600",
    ];
    // Sampling every 2 s, as in the run that found the false alarms; the deadline leaves room
    // for a loaded CI machine, where a late sample would be a real (if harmless) TargetDown.
    // The default rate window (1m), as a deployment has it.
    let config = agent_config(
        "2s",
        "1800ms",
        &[
            target("pgbouncer", "bouncer", &bouncer.admin_url(), &[]),
            target("postgres", "pg", &postgres.monitor_url(), &limits),
        ],
    )
    .replace("rate_window: 10s\n", "");
    let agent = Agent::start_logging(&config, "info");
    Watched {
        agent,
        bouncer,
        postgres,
    }
}

/// Runs the load for `duration` while polling the agent; `progress` hears the seconds elapsed.
pub async fn run(
    watched: &Watched,
    duration: Duration,
    mut progress: impl FnMut(u64) + Send,
) -> Observed {
    let config = watched.bouncer.app_config_for(DATABASE);
    let deadline = Instant::now() + duration;
    let mut workers = Vec::new();
    for _ in 0..STEADY_CLIENTS {
        let config = config.clone();
        workers.push(tokio::spawn(async move {
            let client = connect(&config).await;
            let mut done = 0u64;
            while Instant::now() < deadline {
                client.simple_query("BEGIN").await.expect("BEGIN");
                client.simple_query("SELECT 1").await.expect("SELECT");
                tokio::time::sleep(Duration::from_millis(20)).await;
                client
                    .simple_query("SELECT count(*) FROM pg_class")
                    .await
                    .expect("SELECT");
                client.simple_query("COMMIT").await.expect("COMMIT");
                done += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            done
        }));
    }
    let bursts = {
        let config = config.clone();
        tokio::spawn(async move {
            let mut done = 0u64;
            let mut next = Instant::now() + BURST_EVERY / 2;
            while next + BURST_LENGTH < deadline {
                tokio::time::sleep_until(next.into()).await;
                let end = Instant::now() + BURST_LENGTH;
                let burst: Vec<_> = (0..BURST_CLIENTS)
                    .map(|_| {
                        let config = config.clone();
                        tokio::spawn(async move {
                            let client = connect(&config).await;
                            let mut done = 0u64;
                            while Instant::now() < end {
                                client.simple_query("BEGIN").await.expect("BEGIN");
                                client.simple_query("SELECT 1").await.expect("SELECT");
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                client.simple_query("COMMIT").await.expect("COMMIT");
                                done += 1;
                            }
                            done
                        })
                    })
                    .collect();
                for client in burst {
                    done += client.await.expect("burst client");
                }
                next += BURST_EVERY;
            }
            done
        })
    };
    let observed = tokio::task::block_in_place(|| {
        let mut observed = Observed::default();
        let started = Instant::now();
        while Instant::now() < deadline {
            observe(&watched.agent, &mut observed);
            progress(started.elapsed().as_secs());
            std::thread::sleep(Duration::from_millis(500));
        }
        observe(&watched.agent, &mut observed);
        observed
    });
    let mut observed = observed;
    for worker in workers {
        observed.transactions += worker.await.expect("steady client");
    }
    observed.transactions += bursts.await.expect("bursts");
    observed
}

fn observe(agent: &Agent, observed: &mut Observed) {
    let (_, body) = agent.get("/api/v1/alerts").expect("GET /api/v1/alerts");
    let alerts: Vec<serde_json::Value> = serde_json::from_str(&body).expect("alerts are JSON");
    for alert in alerts {
        observed
            .alerts
            .entry(alert["labels"].to_string())
            .or_insert(alert);
    }
    let m = agent.metrics();
    observed.scrapes += 1;
    let of = |name: &str, source: &str| {
        m.series
            .iter()
            .filter(|s| {
                s.name == name && s.labels.get("source").map(String::as_str) == Some(source)
            })
            .map(|s| s.value)
            .fold(0.0, f64::max)
    };
    observed.max_utilization = observed
        .max_utilization
        .max(of("poolwatch_pool_utilization_ratio", "pgbouncer"));
    observed.max_idle_in_transaction = observed.max_idle_in_transaction.max(of(
        "poolwatch_pool_oldest_idle_in_transaction_seconds",
        "postgres",
    ));
}
