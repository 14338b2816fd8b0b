//! SQLite files as MDM makes them: a writer with busy_timeout 0 never sees an error while the
//! agent samples its file every 100 ms (WAL and rollback journal), the rollback journal gets the
//! audit's WAL recommendation, and a process's connections are counted.

use std::process::Command;
use std::time::Duration;

use crate::common::exposition::Exposition;
use crate::common::mdm::{self, Process};
use crate::common::{self, Agent};

/// How long the writer runs while the agent samples its file.
const WRITER_SECONDS: &str = "30";

fn file_config(interval: &str, path: &std::path::Path) -> String {
    format!(
        "sample_interval: {interval}\nsample_timeout: {interval}\nrate_window: 2s\ntargets:\n  - type: sqlite\n    name: file\n    path: {}\n",
        path.display()
    )
}

fn samples(agent: &Agent) -> u64 {
    let (_, body) = agent.get("/api/v1/targets").unwrap();
    let targets: serde_json::Value = serde_json::from_str(&body).unwrap();
    targets[0]["samples"].as_u64().unwrap()
}

/// What the agent showed while the writer ran, the writer's report, and the agent, still
/// sampling the file (in `home`).
struct WriterRun {
    during: Exposition,
    report: serde_json::Value,
    agent: Agent,
    _home: tempfile::TempDir,
}

/// The writer commits small transactions for 30 s with busy_timeout 0 while the agent samples
/// every 100 ms; every error the writer sees is reported.
fn writer_is_never_disturbed(journal: &str, expected_mode: &str) -> WriterRun {
    let home = tempfile::tempdir().unwrap();
    mdm::dataset(home.path(), "live", "sqlite", 10, journal);
    let path = home.path().join("datasets/live/live.sqlite");
    let agent = Agent::start(&file_config("100ms", &path));
    let writer = Process::start(&["sqlite-writer", path.to_str().unwrap(), WRITER_SECONDS]);
    let pid = writer.pid.to_string();
    // A full sample while the writer runs (in WAL mode with the rows read from its files).
    let during = agent.wait_metrics(
        Duration::from_secs(10),
        "the agent to see the writer",
        |m| {
            let seen = m
                .get("poolwatch_database_process_connections", &[("pid", &pid)])
                .is_some_and(|c| c >= 1.0);
            let opened = journal != "wal" || m.get("poolwatch_database_rows", &[]).is_some();
            (seen && opened).then(|| m.clone())
        },
    );
    let before = samples(&agent);
    let report = writer.report();
    let after = samples(&agent);
    assert_eq!(report["journal_mode"], expected_mode, "{report}");
    assert_eq!(
        report["errors"],
        serde_json::json!([]),
        "the writer saw errors while the agent sampled"
    );
    assert!(report["transactions"].as_u64().unwrap() > 0, "{report}");
    // The agent really was sampling the file all along (about 300 samples in 30 s).
    assert!(after - before >= 50, "only {} samples", after - before);
    WriterRun {
        during,
        report,
        agent,
        _home: home,
    }
}

#[test]
fn a_wal_writer_never_sees_an_error_from_the_agent() {
    let run = writer_is_never_disturbed("wal", "wal");
    let m = &run.during;
    assert_eq!(
        m.get(
            "poolwatch_database_setting_info",
            &[("setting", "journal_mode"), ("value", "wal")]
        ),
        Some(1.0)
    );
    // Rows are read from the files while the writer runs: the WAL path ran at every sample.
    assert!(m.get("poolwatch_database_rows", &[]).unwrap() >= 10.0);
    assert!(m.get("poolwatch_database_wal_size_bytes", &[]).is_some());
    assert_eq!(
        m.get(
            "poolwatch_target_errors_total",
            &[("target", "file"), ("kind", "query")]
        ),
        Some(0.0)
    );
    // Once the writer has closed the file: exactly the dataset's 10 rows and one a commit.
    let want = 10.0 + run.report["transactions"].as_f64().unwrap();
    run.agent
        .wait_metrics(Duration::from_secs(5), "the rows after the writer", |m| {
            (m.get("poolwatch_database_rows", &[]) == Some(want)).then_some(())
        });
}

#[test]
fn a_rollback_journal_writer_never_sees_an_error_from_the_agent() {
    let m = writer_is_never_disturbed("delete", "delete").during;
    assert_eq!(
        m.get(
            "poolwatch_database_setting_info",
            &[("setting", "journal_mode"), ("value", "rollback")]
        ),
        Some(1.0)
    );
    // In a rollback journal the file is never opened with SQLite: no rows, no WAL.
    assert_eq!(m.get("poolwatch_database_rows", &[]), None);
    assert_eq!(m.get("poolwatch_database_wal_size_bytes", &[]), None);
    assert_eq!(m.get("poolwatch_sqlite_page_size_bytes", &[]), Some(4096.0));
}

#[test]
fn a_rollback_journal_gets_the_wal_recommendation() {
    let home = tempfile::tempdir().unwrap();
    mdm::dataset(home.path(), "old", "sqlite", 3, "delete");
    let path = home.path().join("datasets/old/old.sqlite");
    let out = Command::new(common::binary())
        .args(["check", "--window", "200ms", "--format", "json"])
        .args(["--target", &format!("sqlite={}", path.display())])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let pool = &report["pools"][0];
    assert_eq!(pool["pool"], "old");
    assert_eq!(pool["status"], "degraded");
    assert_eq!(
        pool["warnings"],
        serde_json::json!(["SQLite not in WAL mode"])
    );
    assert_eq!(
        pool["recommendations"],
        serde_json::json!([
            "Set journal_mode to WAL (now rollback) with PRAGMA journal_mode=WAL, and keep database.sqlite.journal_mode WAL in MDM's config"
        ])
    );
}

#[test]
fn a_process_with_four_connections_is_reported_with_four() {
    let home = tempfile::tempdir().unwrap();
    mdm::dataset(home.path(), "held", "sqlite", 5, "wal");
    let path = home.path().join("datasets/held/held.sqlite");
    let holder = Process::start(&["hold-sqlite", path.to_str().unwrap(), "4"]);
    let agent = Agent::start(&file_config("500ms", &path));
    let pid = holder.pid.to_string();
    let name = holder.name();
    let m = agent.wait_metrics(Duration::from_secs(10), "the holder", |m| {
        m.get("poolwatch_database_process_connections", &[("pid", &pid)])
            .map(|_| m.clone())
    });
    assert_eq!(
        m.get(
            "poolwatch_database_process_connections",
            &[
                ("pid", &pid),
                ("process", &name),
                ("db_client_connection_pool_name", "held")
            ]
        ),
        Some(4.0)
    );
    // Connections are open, so the pool is not empty; which are checked out is not visible.
    assert_eq!(
        m.get(
            "db_client_connection_count",
            &[("db_client_connection_state", "used")]
        ),
        None
    );
    assert!(
        m.get(
            "poolwatch_database_process_resident_memory_bytes",
            &[("pid", &pid)]
        )
        .unwrap()
            > 0.0
    );
    holder.report();
    agent.wait_metrics(Duration::from_secs(20), "the pool to read empty", |m| {
        (m.get(
            "db_client_connection_count",
            &[("db_client_connection_state", "used")],
        ) == Some(0.0)
            && m.get("poolwatch_database_process_connections", &[("pid", &pid)])
                .is_none())
        .then_some(())
    });
}
