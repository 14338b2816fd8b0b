//! What real consumers make of `/metrics`: `promtool check metrics` on a live scrape with pools
//! from every source, and the README's metric table kept in step with the catalogue.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::mdm::{self, Process};
use crate::common::{
    Agent, PGBOUNCER_PASSWORD, agent_config, connect, monitor_url, pgbouncer_port, target,
};

/// The one objection promtool has, which the OTel→Prometheus translation dictates.
const KNOWN_OBJECTION: &str = "db_client_connection_count non-histogram and non-summary metrics should not have \"_count\" suffix";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_a_live_scrape_but_for_the_semconv_count() {
    let bouncer_url = format!(
        "postgres://pgbouncer:{PGBOUNCER_PASSWORD}@127.0.0.1:{}/pgbouncer",
        pgbouncer_port()
    );
    // An MDM home with a SQLite dataset held open and a DuckDB one.
    let home = tempfile::tempdir().unwrap();
    mdm::dataset(home.path(), "iris", "sqlite", 5, "wal");
    mdm::dataset(home.path(), "sales", "duckdb", 5, "wal");
    let iris = home.path().join("datasets/iris/iris.sqlite");
    let holder = Process::start(&["hold-sqlite", iris.to_str().unwrap(), "1"]);
    let agent = Agent::start(&format!(
        "{}  - type: mdm\n    name: mdm\n    home: {}\n",
        agent_config(
            "300ms",
            "250ms",
            &[
                target("pgbouncer", "bouncer", &bouncer_url, &[]),
                target("postgres", "pg", &monitor_url(), &[]),
            ],
        ),
        home.path().display()
    ));
    // A client through the shared PgBouncer makes sure it has a pool to show.
    let app: tokio_postgres::Config = format!(
        "postgres://mdm:{}@127.0.0.1:{}/mdm_demo",
        common::APP_PASSWORD,
        pgbouncer_port()
    )
    .parse()
    .unwrap();
    let client = connect(&app).await;
    client.simple_query("SELECT 1").await.unwrap();
    // A bound, not a figure: on a machine loaded with other runs the first samples of every
    // source have taken longer than 20 s.
    let m = agent.wait_metrics(Duration::from_secs(60), "pools from every source", |m| {
        let pools = |source: &str| {
            m.series
                .iter()
                .any(|s| s.name == "db_client_connection_count" && s.labels["source"] == source)
        };
        let held = m
            .get(
                "poolwatch_database_process_connections",
                &[("dataset", "iris")],
            )
            .is_some();
        let host_cpu = m.get("poolwatch_host_cpu_utilization_ratio", &[]).is_some();
        let every = ["pgbouncer", "postgres", "mdm"].into_iter().all(pools);
        (every && held && host_cpu).then(|| m.clone())
    });
    drop(holder);

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/services.sh start)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(m.text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let objections: Vec<&str> = said
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(objections, vec![KNOWN_OBJECTION], "promtool said:\n{said}");
}

#[test]
fn readme_metric_table_matches_the_catalogue() {
    const BEGIN: &str = "<!-- metrics:begin -->\n";
    const END: &str = "<!-- metrics:end -->";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let start = readme
        .find(BEGIN)
        .expect("README has the metrics:begin marker")
        + BEGIN.len();
    let end = readme.find(END).expect("README has the metrics:end marker");
    let want = poolwatch::exposition::markdown_table();
    if std::env::var_os("POOLWATCH_BLESS").is_some() {
        std::fs::write(
            path,
            format!("{}{}{}", &readme[..start], want, &readme[end..]),
        )
        .unwrap();
        return;
    }
    assert_eq!(
        &readme[start..end],
        want,
        "run with POOLWATCH_BLESS=1 to regenerate the README table"
    );
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["check", "--help"],
        &["validate", "--help"],
        &["rules", "--help"],
        &["rules", "test", "--help"],
        &["rules", "export", "--help"],
    ] {
        let out = Command::new(common::binary()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage: poolwatch"),
            "{args:?}"
        );
    }
}
