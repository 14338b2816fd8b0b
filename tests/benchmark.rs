//! `poolwatch benchmark` against the real PostgreSQL and on SQLite files: reports that echo the
//! run's settings exactly and whose figures add up, the instrumented pool seen from the
//! server, and a clean Ctrl-C.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use poolwatch::bench::report::{Report, Settings};
use poolwatch::bench::workload::{Operation, STATEMENTS};
use poolwatch::pools::PoolSettings;

use crate::common::benchmark::benchmark;
use crate::common::{APP_PASSWORD, binary, connect, monitor_url, pg_port, wait_for};

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        crate::common::free_port()
    )
}

/// The services' PostgreSQL, without the password (the runs take PGPASSWORD).
fn postgres_url() -> String {
    format!("postgres://mdm@127.0.0.1:{}/mdm_demo", pg_port())
}

/// `benchmark` on the services' PostgreSQL, its dataset in the schema `schema`, with `args`
/// after the backend's own.
fn on_postgres(dir: &Path, schema: &str, args: &[&str]) -> Vec<Report> {
    let url = postgres_url();
    let mut all = vec!["--backend", "postgres", "--url", &url, "--dataset", schema];
    all.extend_from_slice(args);
    benchmark(dir, &all, &[("PGPASSWORD", APP_PASSWORD)])
}

/// What every report must satisfy, whatever the timing.
fn consistent(report: &Report) {
    assert!(report.operations > 0, "no operation completed");
    assert_eq!(report.errors, 0, "{:?}", report.error_messages);
    let by_statement: u64 = report.by_statement.values().map(|s| s.count).sum();
    assert_eq!(by_statement, report.operations);
    assert_eq!(
        report.by_statement.keys().collect::<Vec<_>>(),
        {
            let mut names = STATEMENTS.to_vec();
            names.sort();
            names
        }
        .iter()
        .collect::<Vec<_>>()
    );
    assert_eq!(report.latency_seconds.count, report.operations);
    // Every checkout is either completed or failed; none is lost.
    assert_eq!(report.wait_seconds.count, report.operations + report.errors);
    for p in [
        &report.latency_seconds,
        &report.wait_seconds,
        &report.hold_seconds,
    ] {
        assert!(p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.p999);
        // Percentiles come from a 2-significant-digit histogram: within 1% of the exact max.
        assert!(p.p999 <= p.max * 1.01 + 1e-6, "{p:?}");
    }
    let m = &report.pool_metrics;
    let pool = &report.settings.pool;
    assert!(m.peak_open_connections <= u64::from(pool.pool_size + pool.max_overflow));
    assert!(m.peak_active_connections <= u64::from(pool.pool_size + pool.max_overflow));
    assert!(m.pool_utilization >= 0.0);
    assert!(
        m.pool_utilization
            <= f64::from(pool.pool_size + pool.max_overflow) / f64::from(pool.pool_size) + 1e-9
    );
    assert_eq!(m.timeout_count, 0);
    assert_eq!(m.connection_errors, 0);
    let throughput = report.operations as f64 / report.elapsed_seconds;
    assert!((report.throughput_per_second - throughput).abs() < 1e-9);
}

#[test]
fn postgres_reports_echo_the_settings_and_add_up() {
    let _load = crate::common::exclusive_load();
    let schema = unique("pw_bench");
    let dir = tempfile::tempdir().unwrap();
    let url = postgres_url();
    let args = [
        "--pool-size",
        "2,4",
        "--max-overflow",
        "1",
        "--timeout",
        "5",
        "--pre-ping",
        "false",
        "--recycle",
        "60",
        "--concurrent-users",
        "8",
        "--duration",
        "1.5",
        "--operation",
        "mixed",
        "--rows",
        "3000",
        "--batch-size",
        "50",
        "--seed",
        "42",
    ];
    let reports = on_postgres(dir.path(), &schema, &args);
    assert_eq!(reports.len(), 2);
    for (report, size) in reports.iter().zip([2, 4]) {
        assert_eq!(
            report.settings,
            Settings {
                backend: "postgres".into(),
                location: format!("{url} schema {schema}"),
                pool: PoolSettings {
                    pool_size: size,
                    max_overflow: 1,
                    timeout: Duration::from_secs(5),
                    pre_ping: false,
                    recycle: Some(Duration::from_secs(60)),
                },
                concurrent_users: 8,
                duration_seconds: 1.5,
                operation: Operation::Mixed,
                arrival_rate: None,
                hold_time_ms: 0.0,
                think_time_ms: 0.0,
                rows: 3000,
                batch_size: 50,
                seed: 42,
            }
        );
        consistent(report);
        assert!(!report.interrupted);
        assert_eq!(report.arrival_rate_per_second, None);
        assert_eq!(report.generator_delay_seconds, None);
        assert_eq!(report.arrival_scv, None);
        // 8 users back to back on at most size + 1 connections: the pool is full the whole run.
        assert_eq!(
            report.pool_metrics.peak_active_connections,
            u64::from(size) + 1
        );
    }
    let text = std::fs::read_to_string(dir.path().join("pool_test_2.json")).unwrap();
    assert!(!text.contains(APP_PASSWORD));
    // The dataset's schema is gone afterwards.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let left: i64 = runtime.block_on(async {
        let client = connect(&monitor_url().parse().unwrap()).await;
        client
            .query_one(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                &[&schema],
            )
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(left, 0);
}

/// The open loop on PostgreSQL, whose users are tasks on one thread: every arrival the
/// dispatcher sent is served, none lost in the hand-over to the event loop, and the holds are
/// slept on its timer.
#[test]
fn postgres_open_loop_serves_every_arrival() {
    let _load = crate::common::exclusive_load();
    let schema = unique("pw_open");
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--pool-size",
        "2",
        "--max-overflow",
        "0",
        "--pre-ping",
        "false",
        "--concurrent-users",
        "4",
        "--arrival-rate",
        "250",
        "--hold-time-ms",
        "5",
        "--duration",
        "2",
        "--operation",
        "read",
        "--rows",
        "2000",
    ];
    let reports = on_postgres(dir.path(), &schema, &args);
    let report = &reports[0];
    consistent(report);
    let rate = report.arrival_rate_per_second.expect("an open-loop run");
    // 500 Poisson arrivals expected: their count is within 20% but for one run in 10^5.
    assert!((200.0..300.0).contains(&rate), "{rate}");
    let sent = (rate * report.settings.duration_seconds).round() as u64;
    assert_eq!(report.operations + report.errors, sent);
    assert!(report.generator_delay_seconds.is_some());
    assert!(report.arrival_scv.is_some());
    // The hold is the statement plus 5 ms of simulated work on average, which tokio's timer
    // rounds up to its next millisecond.
    let hold_ms = report.hold_seconds.mean * 1e3;
    assert!((4.5..8.0).contains(&hold_ms), "{hold_ms} ms");
}

#[test]
fn a_missing_password_fails_at_once_with_the_reason() {
    let port = pg_port();
    let out = Command::new(binary())
        .args(["benchmark", "--backend", "postgres", "--duration", "1"])
        .args([
            "--url",
            &format!("postgres://mdm@127.0.0.1:{port}/mdm_demo"),
        ])
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("postgres:") && err.contains("password"),
        "{err}"
    );
}

#[test]
fn ctrl_c_writes_the_report_marked_interrupted_and_removes_the_dataset() {
    let _load = crate::common::exclusive_load();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r_{pool_size}.json");
    let mut child = Command::new(binary())
        .args(["benchmark", "--backend", "sqlite", "--rows", "2000"])
        .args([
            "--pool-size",
            "3,5",
            "--concurrent-users",
            "6",
            "--duration",
            "600",
        ])
        .arg("--report")
        .arg(&report)
        .env("TMPDIR", dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let creating = line.clone();
    assert!(line.starts_with("creating the dataset in "), "{line}");
    let database = line
        .trim_end()
        .strip_prefix("creating the dataset in ")
        .and_then(|l| l.split(": ").next())
        .unwrap()
        .to_string();
    assert!(
        database.starts_with(dir.path().to_str().unwrap()),
        "{database}"
    );
    // The first run announces itself once its pool is warm; its deadline is 600 s, so only
    // Ctrl-C can end it. Its first plain progress line (stderr is not a terminal) says it has
    // done some work: interrupted before any, the report would rightly hold none.
    line.clear();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("pool_size=3: running"), "{creating}{line}");
    line.clear();
    stderr.read_line(&mut line).unwrap();
    let done: u64 = line
        .strip_prefix("pool_size=3: ")
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|d| d.strip_suffix(" done"))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("a progress line: {line}"));
    assert!(done > 0, "{line}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = wait_for(Duration::from_secs(20), "the benchmark to exit", || {
        child.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(130));
    let written: Report =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r_3.json")).unwrap())
            .unwrap();
    assert!(written.interrupted);
    assert!(written.elapsed_seconds < 600.0);
    consistent(&written);
    // The second pool size never ran, and the temporary database is gone with its directory.
    assert!(!dir.path().join("r_5.json").exists());
    assert!(!std::path::Path::new(&database).exists());
    assert!(!std::path::Path::new(&database).parent().unwrap().exists());
}

/// DuckDB through its instrumented pool: every pooled connection on the one database instance
/// the file may have per process, the spec's DuckDB settings where no flag is given, a report
/// whose figures add up, and the temporary file gone afterwards.
#[cfg(feature = "duckdb")]
#[test]
fn duckdb_reports_echo_the_settings_and_add_up() {
    let _load = crate::common::exclusive_load();
    let dir = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(binary())
        .args(["benchmark", "--backend", "duckdb", "--pool-size", "3"])
        .args(["--concurrent-users", "6", "--duration", "1.5"])
        .args([
            "--operation",
            "read",
            "--rows",
            "3000",
            "--batch-size",
            "100",
        ])
        .args(["--seed", "7", "--report"])
        .arg(dir.path().join("pool_test_{pool_size}.json"))
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Report = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("pool_test_3.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report.settings.backend, "duckdb");
    assert_eq!(
        report.settings.pool,
        PoolSettings {
            pool_size: 3,
            ..PoolSettings::duckdb()
        }
    );
    consistent(&report);
    // Whatever ran of reads, updates and batch inserts, none was refused (DuckDB's conflict
    // checks included): `consistent` holds errors at 0.
    // 6 users back to back on at most 3 + 5 connections.
    assert!(report.pool_metrics.peak_active_connections <= 8);
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
