//! The advisor against its oracle, the spec's own Python function for `size`. Its Erlang C
//! prediction is compared with real measurements in the `measure` test binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::io::Write as _;

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
