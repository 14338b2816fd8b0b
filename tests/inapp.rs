//! In-app pools end to end: Python processes on real SQLAlchemy, instrumented with the
//! integration in integrations/sqlalchemy, report to a running agent over OTLP.
//! - A QueuePool of 5 + 2 under 20 threads, against real PostgreSQL and against a SQLite file:
//!   at its quiet moments the agent shows the pending callers and timeouts the workload counted,
//!   its wait-time median and p99 are within 10% of the workload's own, and the spec's health
//!   rules fire on the pool, naming the pool_size to set.
//! - MDM as it is: a command that opens and disposes of an engine per operation for a few
//!   seconds, instrumented by the environment switch alone: its pool appears, its last figures
//!   arrive, and once it has exited the pool ends and leaves `/metrics`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use crate::common::exposition::Exposition;
use crate::common::{self, APP_PASSWORD, Agent};

const LIMIT: Duration = Duration::from_secs(30);
/// Long enough for the agent to see the 13 waiters before they give up.
const POOL_TIMEOUT_SECONDS: u32 = 20;

fn programs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("integrations/sqlalchemy/tests/programs")
}

/// Bucket bounds fine enough (4% apart, 10 µs to 60 s) that a quantile read from the buckets
/// is within a few percent of the true one.
fn fine_buckets() -> String {
    let mut bounds = vec![];
    let mut b = 1e-5f64;
    while b < 60.0 {
        bounds.push(format!("{b:.7}"));
        b *= 1.04;
    }
    bounds.join(",")
}

/// A Python program reporting to the agent every 300 ms.
fn python(agent: &Agent, program: &str, args: &[&str]) -> Command {
    let mut command = Command::new(common::python());
    command
        .arg(programs().join(program))
        .args(args)
        .env(
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            format!("http://{}/v1/metrics", agent.addr),
        )
        .env("OTEL_METRIC_EXPORT_INTERVAL", "300")
        .env("OTEL_SERVICE_NAME", "mdm-e2e")
        .env("POOLWATCH_SQLALCHEMY_BUCKETS", fine_buckets())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

struct Workload {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Workload {
    /// The next JSON line the workload prints.
    fn says(&mut self) -> serde_json::Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("the workload said {line:?}"))
    }

    fn go_on(&mut self) {
        self.stdin.write_all(b"next\n").unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prometheus' histogram_quantile over one histogram's cumulative buckets.
fn bucket_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    let total = buckets.last().unwrap().1;
    let rank = q * total;
    let at = buckets.iter().position(|(_, c)| *c >= rank).unwrap();
    let (upper, count) = buckets[at];
    if at == buckets.len() - 1 {
        return buckets[at - 1].0;
    }
    let (lower, below) = if at == 0 { (0.0, 0.0) } else { buckets[at - 1] };
    lower + (upper - lower) * (rank - below) / (count - below)
}

/// The true quantile of the workload's own waits (nearest rank).
fn true_quantile(q: f64, waits: &mut [f64]) -> f64 {
    waits.sort_by(f64::total_cmp);
    let rank = ((q * waits.len() as f64).ceil() as usize).max(1);
    waits[rank - 1]
}

fn pool_value(m: &Exposition, name: &str, pool: &str, extra: &[(&str, &str)]) -> Option<f64> {
    let mut labels = vec![("db_client_connection_pool_name", pool)];
    labels.extend_from_slice(extra);
    m.get(name, &labels)
}

fn wait_buckets(m: &Exposition, pool: &str) -> Vec<(f64, f64)> {
    let mut buckets: Vec<(f64, f64)> = m
        .series
        .iter()
        .filter(|s| {
            s.name == "db_client_connection_wait_time_seconds_bucket"
                && s.labels["db_client_connection_pool_name"] == pool
        })
        .map(|s| {
            let le = match s.labels["le"].as_str() {
                "+Inf" => f64::INFINITY,
                le => le.parse().unwrap(),
            };
            (le, s.value)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

fn firing(agent: &Agent, alert: &str, pool: &str) -> Option<serde_json::Value> {
    let (_, body) = agent.get("/api/v1/alerts").ok()?;
    let alerts: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
    alerts.into_iter().find(|a| {
        a["labels"]["alertname"] == alert
            && a["labels"]["db_client_connection_pool_name"] == pool
            && a["state"] == "firing"
    })
}

fn queue_pool_against(url: &str, pool: &str) {
    let dir = tempfile::tempdir().unwrap();
    let rules = common::quick_health_rules(dir.path());
    let agent = Agent::start(&format!(
        "sample_interval: 500ms\nrate_window: 5s\nrules: [{}]\n",
        rules.display()
    ));
    let mut child = python(
        &agent,
        "agent_workload.py",
        &[url, pool, &POOL_TIMEOUT_SECONDS.to_string()],
    )
    .spawn()
    .unwrap();
    let mut workload = Workload {
        stdin: child.stdin.take().unwrap(),
        stdout: BufReader::new(child.stdout.take().unwrap()),
        child,
    };

    // Quiet moment 1: 7 held, 13 blocked in the pool's queue.
    let quiet = workload.says();
    assert_eq!(quiet["quiet"], "pending", "{quiet}");
    let (pending, timeouts) = (quiet["pending"].as_f64(), quiet["timeouts"].as_f64());
    agent.wait_metrics(LIMIT, "the agent to show the quiet moment", |m| {
        let shown = (
            pool_value(m, "db_client_connection_pending_requests", pool, &[]),
            pool_value(m, "db_client_connection_timeouts_total", pool, &[]),
            pool_value(
                m,
                "db_client_connection_count",
                pool,
                &[("db_client_connection_state", "used")],
            ),
        );
        (shown == (pending, timeouts, Some(7.0))).then_some(())
    });
    // The spec's utilization check fires and names the size: (7 used + 13 waiting) / 0.8.
    let alert = common::wait_for(LIMIT, "PoolUtilizationHigh to fire", || {
        firing(&agent, "PoolUtilizationHigh", pool)
    });
    assert_eq!(
        alert["annotations"]["recommendation"], "Increase pool_size to 25",
        "{alert}"
    );
    workload.go_on();

    // Quiet moment 2: the 13 gave up; nothing held, nothing waiting.
    let quiet = workload.says();
    assert_eq!(quiet["quiet"], "timeouts", "{quiet}");
    let timeouts = quiet["timeouts"].as_f64();
    agent.wait_metrics(LIMIT, "the timeouts to arrive", |m| {
        let shown = (
            pool_value(m, "db_client_connection_pending_requests", pool, &[]),
            pool_value(m, "db_client_connection_timeouts_total", pool, &[]),
        );
        (shown == (Some(0.0), timeouts)).then_some(())
    });
    // Callers waited 20 s each: the average wait check fires too.
    common::wait_for(LIMIT, "PoolWaitTimeHigh to fire", || {
        firing(&agent, "PoolWaitTimeHigh", pool)
    });
    workload.go_on();

    // The waits: every one the workload timed is in the agent's histogram, and its median
    // and p99 read from the buckets are within 10% of the workload's.
    let done = workload.says();
    let mut waits: Vec<f64> = done["waits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_f64().unwrap())
        .collect();
    let m = agent.wait_metrics(LIMIT, "every wait in the histogram", |m| {
        let count = pool_value(m, "db_client_connection_wait_time_seconds_count", pool, &[])?;
        (count == waits.len() as f64).then(|| m.clone())
    });
    let buckets = wait_buckets(&m, pool);
    for q in [0.5, 0.99] {
        let agent_says = bucket_quantile(q, &buckets);
        let truth = true_quantile(q, &mut waits);
        let error = (agent_says - truth).abs() / truth;
        eprintln!(
            "{pool} wait q{q}: agent {agent_says:.6} s, workload {truth:.6} s ({:.2}% off)",
            error * 100.0
        );
        assert!(
            error <= 0.10,
            "q{q}: agent {agent_says:.6} s vs workload {truth:.6} s ({:.1}% off)",
            error * 100.0
        );
    }
    workload.go_on();
    assert!(workload.child.wait().unwrap().success());
}

#[test]
fn a_queue_pool_on_postgres_reports_what_its_workload_counted() {
    let url = format!(
        "postgresql+psycopg://mdm:{APP_PASSWORD}@127.0.0.1:{}/mdm_demo",
        common::pg_port()
    );
    queue_pool_against(&url, "e2e-postgres");
}

#[test]
fn a_queue_pool_on_sqlite_reports_what_its_workload_counted() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:///{}", dir.path().join("dataset.sqlite").display());
    queue_pool_against(&url, "e2e-sqlite");
}

#[test]
fn an_mdm_command_appears_reports_its_last_figures_and_ends() {
    let agent = Agent::start("sample_interval: 250ms\notlp_receiver:\n  stale_after: 2s\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("images.sqlite");
    let url = format!("sqlite:///{}", file.display());
    // The environment switch alone instruments it: the program never imports the package.
    let mut command = python(&agent, "mdm_operations.py", &[&url, "3"]);
    command
        .env("POOLWATCH_SQLALCHEMY", "1")
        .env_remove("POOLWATCH_SQLALCHEMY_BUCKETS");
    let child = command.spawn().unwrap();
    // Its pool is named by its database file, the integration's default.
    let pool = file.display().to_string();
    agent.wait_metrics(LIMIT, "the command's pool to appear", |m| {
        pool_value(m, "db_client_connection_max", &pool, &[]).map(|_| ())
    });
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let truth: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(truth["instrumented"], true, "{truth}");
    // The exit flush carries the last checkout: the agent's count is the command's.
    let checkouts = truth["checkouts"].as_f64();
    agent.wait_metrics(LIMIT, "the command's last figures", |m| {
        (pool_value(m, "db_client_connection_use_time_seconds_count", &pool, &[]) == checkouts)
            .then_some(())
    });
    agent.wait_metrics(LIMIT, "the ended pool to leave /metrics", |m| {
        (!m.text.contains(&pool)).then_some(())
    });
    let (_, targets) = agent.get("/api/v1/targets").unwrap();
    let targets: serde_json::Value = serde_json::from_str(&targets).unwrap();
    let gone = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "otlp")
        .map(|t| t["gone"].clone())
        .unwrap();
    let ended = gone
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["pool"] == pool.as_str())
        .unwrap_or_else(|| panic!("{gone}"));
    assert_eq!(ended["state"], "ended", "{ended}");
}
