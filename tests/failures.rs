//! A target that dies or hangs: its `up` drops within one interval, /metrics keeps answering
//! fast, the other target goes on, and it comes back without restarting the agent.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::exposition::Exposition;
use crate::common::{Agent, PgBouncer, agent_config, monitor_url, target};

const INTERVAL: Duration = Duration::from_secs(2);
/// Long on purpose: a /metrics that waited for the hung target would take this long.
const DEADLINE: Duration = Duration::from_millis(1500);
const BOUNCER: (&str, &str) = ("target", "bouncer");
const PG: (&str, &str) = ("target", "pg");

/// One test at a time: scrape latencies are measured, so the tests should not crowd each other.
static SERIAL: Mutex<()> = Mutex::new(());

/// Scrapes, timing every answer, until `who` reports `up == want`.
fn wait_up(
    agent: &Agent,
    who: (&str, &str),
    want: f64,
    limit: Duration,
    latencies: &mut Vec<Duration>,
) -> Exposition {
    let start = Instant::now();
    loop {
        let scrape = Instant::now();
        let (status, body) = agent.get("/metrics").expect("/metrics answers");
        latencies.push(scrape.elapsed());
        assert_eq!(status, 200);
        let metrics = Exposition::parse(&body);
        if metrics.get("poolwatch_target_up", &[who]) == Some(want) {
            return metrics;
        }
        assert!(
            start.elapsed() < limit,
            "{who:?} not up={want} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// /metrics answers within 100 ms while a target is down or hung. The median and 90th
/// percentile must meet it; no single answer may come near the sample deadline, which is what
/// waiting on the target would cost (the slack is for a loaded 2-core machine, not for design).
fn assert_fast(latencies: &mut [Duration]) {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    assert!(
        at(0.5) < Duration::from_millis(100),
        "median {:?} of {latencies:?}",
        at(0.5)
    );
    assert!(
        at(0.9) < Duration::from_millis(100),
        "p90 {:?} of {latencies:?}",
        at(0.9)
    );
    assert!(
        at(1.0) < DEADLINE / 2,
        "slowest {:?} of {latencies:?}",
        at(1.0)
    );
}

fn last_success(m: &Exposition, who: (&str, &str)) -> f64 {
    m.get("poolwatch_target_last_success_timestamp_seconds", &[who])
        .expect("the target has succeeded before")
}

fn watch_both(bouncer: &PgBouncer) -> Agent {
    let agent = Agent::start(&agent_config(
        &format!("{}ms", INTERVAL.as_millis()),
        &format!("{}ms", DEADLINE.as_millis()),
        &[
            target("pgbouncer", "bouncer", &bouncer.admin_url(), &[]),
            target("postgres", "pg", &monitor_url(), &[]),
        ],
    ));
    let mut ignore = Vec::new();
    wait_up(&agent, BOUNCER, 1.0, Duration::from_secs(10), &mut ignore);
    wait_up(&agent, PG, 1.0, Duration::from_secs(10), &mut ignore);
    agent
}

/// The next tick comes within one interval; a hung target then needs its deadline to pass.
fn detection_limit(hung: bool) -> Duration {
    let slack = Duration::from_millis(500);
    if hung {
        INTERVAL + DEADLINE + slack
    } else {
        INTERVAL + slack
    }
}

/// PostgreSQL goes on being sampled while PgBouncer is out.
fn assert_other_target_unaffected(agent: &Agent, since: f64, latencies: &mut Vec<Duration>) {
    let m = wait_up(agent, PG, 1.0, Duration::from_secs(1), latencies);
    let start = Instant::now();
    let mut m = m;
    while last_success(&m, PG) <= since + INTERVAL.as_secs_f64() {
        assert!(
            start.elapsed() < INTERVAL * 3,
            "PostgreSQL stopped being sampled"
        );
        std::thread::sleep(Duration::from_millis(50));
        m = wait_up(agent, PG, 1.0, Duration::from_secs(1), latencies);
    }
    assert_eq!(
        m.get("poolwatch_target_up", &[BOUNCER]),
        Some(0.0),
        "PgBouncer is still out"
    );
}

/// Breaks PgBouncer, checks the agent copes, mends it, checks it recovers.
fn outage(break_it: fn(&mut PgBouncer), hung: bool, error_kind: &str, mend: fn(&mut PgBouncer)) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut bouncer = PgBouncer::start(5);
    let agent = watch_both(&bouncer);
    let mut latencies = Vec::new();
    let pg_before = last_success(&agent.metrics(), PG);

    break_it(&mut bouncer);
    let m = wait_up(&agent, BOUNCER, 0.0, detection_limit(hung), &mut latencies);
    let errors = m.get(
        "poolwatch_target_errors_total",
        &[BOUNCER, ("kind", error_kind)],
    );
    assert!(errors.unwrap() >= 1.0, "{error_kind} errors: {errors:?}");
    assert_eq!(
        m.get("db_client_connection_count", &[BOUNCER]),
        None,
        "no stale pool figures"
    );
    assert_other_target_unaffected(&agent, pg_before, &mut latencies);
    assert_fast(&mut latencies);

    mend(&mut bouncer);
    wait_up(
        &agent,
        BOUNCER,
        1.0,
        Duration::from_secs(10),
        &mut latencies,
    );
}

#[test]
fn killed_pgbouncer_is_down_then_back() {
    outage(PgBouncer::kill, false, "connect", PgBouncer::restart);
}

#[test]
fn stopped_pgbouncer_times_out_then_comes_back() {
    outage(|b| b.pause(), true, "timeout", |b| b.resume());
}
