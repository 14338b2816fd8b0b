//! The advisor against its oracles: the spec's own Python function for `size`, and real
//! benchmark measurements for the Erlang C prediction.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::io::Write as _;

use poolwatch::bench::analyze;
use poolwatch::bench::report::Report;

use crate::common::binary;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs the spec's function (the fixture) with python3 on every row.
fn spec_results(rows: &[(u32, u32, f64, f64, f64)]) -> Vec<i64> {
    let input: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::json!([r.0, r.1, r.2, r.3, r.4]))
        .collect();
    let mut child = Command::new("python3")
        .arg(fixture("spec_pool_size.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the spec's function (install python3)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the spec's function failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_fixture_is_the_spec_function_verbatim() {
    let spec =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/spec/pool-tuning-guidelines.md");
    let spec = std::fs::read_to_string(&spec)
        .unwrap_or_else(|e| panic!("{} (shared/ lies beside the clone): {e}", spec.display()));
    let fixture = std::fs::read_to_string(fixture("spec_pool_size.py")).unwrap();
    let start = spec.find("def calculate_optimal_pool_size(").unwrap();
    let end = spec[start..].find("```").unwrap();
    let function = spec[start..start + end].trim_end();
    assert!(
        fixture.contains(function),
        "tests/fixtures/spec_pool_size.py must hold the spec's function as written"
    );
}

#[test]
fn size_reproduces_the_spec_function() {
    // cores, users, query ms, target ms, overhead ms: each clause of the function binds in
    // some row, and some rows sit on a floating-point truncation edge.
    let rows: Vec<(u32, u32, f64, f64, f64)> = vec![
        (4, 100, 10.0, 200.0, 50.0),
        (8, 5, 50.0, 100.0, 50.0),
        (8, 2, 5.0, 1000.0, 50.0),
        (2, 50, 500.0, 10.0, 50.0),
        (4, 1000, 1.0, 10_000.0, 50.0),
        (2, 100, 20.0, 100.0, 0.0),
        (3, 100, 40.0, 250.0, 50.0),
        (5, 100, 10.0, 10.0, 50.0),
        (5, 100, 40.0, 30.0, 50.0),
        (5, 100, 10.0, 70.0, 50.0),
        (5, 100, 25.0, 100.0, 50.0),
        (5, 100, 10.0, 110.0, 50.0),
        (5, 100, 40.0, 210.0, 50.0),
        (6, 100, 40.0, 250.0, 50.0),
        (1, 1, 0.5, 1.0, 0.5),
        (1, 0, 10.0, 100.0, 50.0),
        (16, 7, 12.5, 333.3, 50.0),
        (32, 1000, 3.7, 95.1, 12.25),
        (12, 40, 100.0, 2000.0, 50.0),
        (64, 10_000, 0.8, 50.0, 0.2),
        (7, 3, 0.0, 100.0, 50.0),
        (10, 50, 1234.5, 6789.0, 50.0),
    ];
    let expected = spec_results(&rows);
    assert_eq!(expected.len(), rows.len());
    for (row, expected) in rows.iter().zip(expected) {
        let out = Command::new(binary())
            .args(["size", "--format", "json"])
            .args(["--cpu-cores", &row.0.to_string()])
            .args(["--concurrent-users", &row.1.to_string()])
            .args(["--avg-query-time-ms", &row.2.to_string()])
            .args(["--target-response-time-ms", &row.3.to_string()])
            .args(["--connection-overhead-ms", &row.4.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{row:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["pool_size"], expected, "{row:?}");
    }
}

/// `poolwatch size` with these arguments.
fn size(args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .arg("size")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn size_prints_all_three_models() {
    let workload = [
        "--cpu-cores",
        "4",
        "--concurrent-users",
        "100",
        "--avg-query-time-ms",
        "10",
        "--target-response-time-ms",
        "200",
    ];
    let out = size(&workload);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Basic formula         pool_size = 4 workers × 1 connections per worker + 3 overhead = 7"), "{text}");
    assert!(
        text.contains("Little's law (spec)   pool_size = 16"),
        "{text}"
    );
    // 100 users / 0.2 s = 500 checkouts/s × 60 ms = 30 Erlangs.
    assert!(text.contains("500.0 checkouts/s"), "{text}");
    assert!(
        text.contains("= 30.00 connections busy on average"),
        "{text}"
    );
    assert!(text.contains("← recommended"), "{text}");
    let json = size(&[&workload[..], &["--format", "json"]].concat());
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let recommended = json["erlang_c"]["recommendation"]["pool_size"]
        .as_u64()
        .unwrap();
    assert_eq!(json["erlang_c"]["recommendation"]["model"], "erlang_c");
    assert!(text.contains(&format!("Recommended pool_size {recommended} (erlang_c)")));
    // The table's row at the recommendation meets the 100 ms p99 target, the row below not.
    let rows = json["erlang_c"]["candidates"].as_array().unwrap();
    let at = |size: u64| {
        rows.iter()
            .find(|r| r["pool_size"] == size)
            .and_then(|r| r["p99_wait_seconds"].as_f64())
    };
    assert!(at(recommended).unwrap() <= 0.1);
    assert!(at(recommended - 1).is_none_or(|t| t > 0.1));
}

#[test]
fn size_refuses_inputs_the_spec_cannot_compute() {
    let out = size(&[
        "--cpu-cores",
        "4",
        "--concurrent-users",
        "10",
        "--avg-query-time-ms",
        "0",
        "--target-response-time-ms",
        "100",
        "--connection-overhead-ms",
        "0",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("avg_query_time_ms + connection_overhead_ms must be above 0"),
        "{err}"
    );
}

/// Runs `benchmark` with these arguments, failing the test with its output if it fails.
pub fn benchmark(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Vec<Report> {
    run_benchmark(Command::new(binary()), dir, args, env)
}

/// As [`benchmark`], at real-time priority where the test runs as root (as CI does): waits of
/// a fraction of a millisecond are then the pool's, not the time other processes kept the
/// woken caller off the CPU. The load generator sleeps most of the time, and the kernel keeps
/// 5% of each second for everything else whatever it does.
fn benchmark_realtime(dir: &Path, args: &[&str]) -> Vec<Report> {
    let root = nix::unistd::Uid::effective().is_root();
    let command = if root && Command::new("chrt").arg("--version").output().is_ok() {
        let mut command = Command::new("chrt");
        command.args(["--fifo", "10", binary()]);
        command
    } else {
        Command::new(binary())
    };
    run_benchmark(command, dir, args, &[])
}

fn run_benchmark(
    mut command: Command,
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Vec<Report> {
    let out = command
        .arg("benchmark")
        .args(args)
        .envs(env.iter().copied())
        .arg("--report")
        .arg(dir.join("pool_test_{pool_size}.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "benchmark failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reports: Vec<Report> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap())
        .collect();
    reports.sort_by_key(|r| r.settings.pool.pool_size);
    reports
}

/// Open loop on SQLite with a controlled hold time: Poisson arrivals, each holding its
/// connection ~20 ms (exponential), on 4, 6 and 8 connections at 120, 180 and 240 arrivals a
/// second, so that each pool runs at ~0.6 utilization, without pre-ping so that the wait is the
/// queue's alone. Each run is predicted from its own arrival rate and mean service time, as the
/// agent predicts a pool from what it observes.
///
/// The service time is the hold plus the hand-off: a returned connection reaches a waiting
/// caller only once that caller's thread runs again, tens of microseconds later on a busy
/// machine, during which the connection serves nobody. The pool measures each hand-off (check-in
/// to the waiter's checkout), and the model gets that time as part of the service; without it the
/// model under-predicts by up to a quarter on a loaded two-core machine.
///
/// What the model leaves out is every checkout's own bookkeeping, waiting or not: 20–40 µs
/// here. Where most callers do not queue (Erlang C's wait probability is under one half, which
/// the test checks), the median wait is that bookkeeping alone, so the queue's wait is the mean
/// less the median. Uncorrected, in an earlier version of this test (5, 6 and 7 connections at 175
/// arrivals a second), it made the smallest mean wait (~0.5 ms at 7) read 8–25 % high.
///
/// At one utilization for all three sizes, none runs near saturation, where a queue's busy
/// periods are long and a minute of arrivals gives a loose mean: at 0.7 utilization six runs
/// read 0.78–1.13 of the prediction; at 0.6 a queue forgets its past within a fraction of a
/// second, and the 7,000–14,000 arrivals a size give a tight estimate.
#[test]
fn erlang_c_predicts_the_measured_mean_wait_within_20_percent() {
    let _load = crate::common::exclusive_load();
    // Erlang C is a model of Poisson arrivals: the comparison means something only if the
    // generator delivered them. When the machine kept its threads off the CPU, arrivals reach
    // the pool in bursts (gap SCV well above 1) and the pool rightly waits more than the model
    // predicts: such a measurement is taken again, up to three times in all.
    let mut attempts = Vec::new();
    let (reports, table) = loop {
        let reports: Vec<Report> = [("4", "120"), ("6", "180"), ("8", "240")]
            .into_iter()
            .flat_map(|(size, rate)| {
                let dir = tempfile::tempdir().unwrap();
                benchmark_realtime(
                    dir.path(),
                    &[
                        "--backend",
                        "sqlite",
                        "--operation",
                        "read",
                        "--rows",
                        "1000",
                        "--pool-size",
                        size,
                        "--pre-ping",
                        "false",
                        "--arrival-rate",
                        rate,
                        "--hold-time-ms",
                        "20",
                        "--concurrent-users",
                        "32",
                        "--duration",
                        "60",
                    ],
                )
            })
            .collect();
        assert_eq!(reports.len(), 3);
        let table = erlang_c_table(&reports);
        eprintln!("{table}");
        let poisson = reports
            .iter()
            .all(|r| (0.85..=1.15).contains(&r.arrival_scv.unwrap()));
        attempts.push(table.clone());
        if poisson {
            break (reports, table);
        }
        assert!(
            attempts.len() < 3,
            "the load generator did not deliver Poisson arrivals (gap SCV 1 expected) in three \
             attempts: the machine is too busy for this measurement\n{}",
            attempts.join("\n")
        );
    };
    for report in &reports {
        assert_eq!(report.errors, 0, "{:?}", report.error_messages);
        assert!(
            prediction(report).wait_probability < 0.5,
            "most callers queue, so the median wait is not the bookkeeping alone:\n{table}"
        );
        let ratio = queue_wait(report) / predicted_mean_wait(report);
        assert!(
            (0.8..=1.2).contains(&ratio),
            "measured / predicted mean wait out of 20%:\n{table}"
        );
    }
}

/// The measured wait the queue accounts for: the mean less the median, every checkout's own
/// bookkeeping where most callers do not queue.
fn queue_wait(report: &Report) -> f64 {
    report.wait_seconds.mean - report.wait_seconds.p50
}

fn prediction(report: &Report) -> poolwatch::advisor::erlang::Prediction {
    let workload = analyze::run_workload(report).unwrap();
    let c = u64::from(report.settings.pool.pool_size);
    poolwatch::advisor::erlang::predict(workload, c)
}

/// Erlang C's mean wait for a run, from its own arrival rate and service time.
fn predicted_mean_wait(report: &Report) -> f64 {
    prediction(report).mean_wait_seconds.unwrap()
}

/// Predicted against measured mean wait per run, with what the prediction rests on.
fn erlang_c_table(reports: &[Report]) -> String {
    let mut table = String::from(
        "pool_size  arrivals/s  service ms  predicted mean wait ms  measured less median  ratio\n",
    );
    for report in reports {
        let workload = analyze::run_workload(report).unwrap();
        let predicted = predicted_mean_wait(report);
        let measured = queue_wait(report);
        let handoffs = report.handoffs.unwrap();
        table.push_str(&format!(
            "{:>9}  {:>10.0}  {:>10.4}  {:>22.4}  {:>20.4}  {:>5.2}   (hold {:.4} ms + {} hand-offs \
             of {:.1} µs mean; median wait {:.1} µs; arrival SCV {:.2}, hold SCV {:.2}, generator \
             delay mean {:.3} ms)\n",
            report.settings.pool.pool_size,
            workload.arrival_rate,
            workload.mean_hold_seconds * 1e3,
            predicted * 1e3,
            measured * 1e3,
            measured / predicted,
            report.hold_seconds.mean * 1e3,
            handoffs.count,
            handoffs.total_seconds / handoffs.count.max(1) as f64 * 1e6,
            report.wait_seconds.p50 * 1e6,
            report.arrival_scv.unwrap_or(f64::NAN),
            (report.hold_seconds.stddev / report.hold_seconds.mean).powi(2),
            report.generator_delay_seconds.unwrap().mean * 1e3
        ));
    }
    table
}
