//! A DuckDB file held by its writer for the whole run: the agent never opens it (the writer
//! never fails) and reports the holder's pid, name and lock; once the writer is gone the agent
//! reads what the file holds.

use std::time::Duration;

use crate::common::Agent;
use crate::common::mdm::{self, Process};

#[test]
fn a_duckdb_writer_holding_its_file_is_reported_and_never_disturbed() {
    let home = tempfile::tempdir().unwrap();
    mdm::dataset(home.path(), "sales", "duckdb", 20, "wal");
    let path = home.path().join("datasets/sales/sales.duckdb");
    let writer = Process::start(&["duckdb-writer", path.to_str().unwrap(), "10"]);
    let pid = writer.pid.to_string();
    let name = writer.name();
    let agent = Agent::start(&format!(
        "sample_interval: 100ms\nsample_timeout: 100ms\nrate_window: 1s\ntargets:\n  - type: duckdb\n    name: sales\n    path: {}\n",
        path.display()
    ));
    let m = agent.wait_metrics(Duration::from_secs(10), "the holder", |m| {
        m.get(
            "poolwatch_database_process_lock_info",
            &[("pid", &pid), ("lock", "write")],
        )
        .map(|_| m.clone())
    });
    assert_eq!(
        m.get(
            "poolwatch_database_process_lock_info",
            &[("pid", &pid), ("process", &name), ("lock", "write")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.get("poolwatch_database_process_connections", &[("pid", &pid)]),
        Some(1.0)
    );
    // What needs the file open stays absent while the writer holds it.
    assert_eq!(m.get("poolwatch_duckdb_blocks", &[("state", "used")]), None);
    assert_eq!(
        m.get(
            "poolwatch_database_setting_info",
            &[("setting", "library_version"), ("value", "v2.0.1")]
        ),
        Some(1.0)
    );
    assert!(m.get("poolwatch_database_size_bytes", &[]).unwrap() > 0.0);

    let report = writer.report();
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    let written = report["transactions"].as_u64().unwrap();
    assert!(written > 0);
    // Free now: the agent opens it read-only and counts the rows the writer left.
    let m = agent.wait_metrics(Duration::from_secs(10), "the file's blocks", |m| {
        m.get("poolwatch_duckdb_blocks", &[("state", "used")])
            .map(|_| m.clone())
    });
    assert_eq!(
        m.get("poolwatch_database_rows", &[]),
        Some((written + 20) as f64)
    );
    assert_eq!(
        m.get("poolwatch_database_process_connections", &[("pid", &pid)]),
        None
    );
}
