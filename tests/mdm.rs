//! An MDM home made the way MDM makes it: its datasets are discovered and labelled, a new one
//! appears and a removed one disappears with its series, and bad input (a registry file that
//! does not parse, a missing file, a file that is not a database, one that cannot be read) is
//! named while the other datasets keep being watched.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::common::mdm;
use crate::common::{self, Agent, exposition::Exposition};

fn mdm_config(home: &Path) -> String {
    format!(
        "sample_interval: 1s\nsample_timeout: 1s\nrate_window: 3s\ntargets:\n  - type: mdm\n    name: mdm\n    home: {}\n",
        home.display()
    )
}

fn datasets(m: &Exposition) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = m
        .series
        .iter()
        .filter(|s| s.name == "poolwatch_pool_size")
        .map(|s| (s.labels["dataset"].clone(), s.labels["backend"].clone()))
        .collect();
    found.sort();
    found
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn warnings(agent: &Agent) -> Vec<String> {
    let (_, body) = agent.get("/api/v1/targets").unwrap();
    let targets: serde_json::Value = serde_json::from_str(&body).unwrap();
    targets[0]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn datasets_are_discovered_labelled_added_and_removed() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    mdm::dataset(home, "iris", "sqlite", 150, "wal");
    mdm::dataset(home, "wine", "sqlite", 40, "wal");
    mdm::dataset(home, "sales", "duckdb", 300, "wal");
    let agent = Agent::start(&mdm_config(home));
    let m = agent.wait_metrics(Duration::from_secs(20), "three datasets", |m| {
        (datasets(m).len() == 3).then(|| m.clone())
    });
    assert_eq!(
        datasets(&m),
        pairs(&[("iris", "sqlite"), ("sales", "duckdb"), ("wine", "sqlite")])
    );
    let iris = [
        ("dataset", "iris"),
        ("db_client_connection_pool_name", "iris"),
    ];
    // Nobody has the file open: the pool exists and is empty.
    for state in ["used", "idle"] {
        let mut labels = iris.to_vec();
        labels.push(("db_client_connection_state", state));
        assert_eq!(m.get("db_client_connection_count", &labels), Some(0.0));
    }
    // MDM's limits (5 + 10), its registry's row count, and the spec's size for 150 rows.
    assert_eq!(m.get("poolwatch_pool_size", &iris), Some(5.0));
    assert_eq!(m.get("poolwatch_pool_max_overflow", &iris), Some(10.0));
    assert_eq!(m.get("poolwatch_database_rows", &iris), Some(150.0));
    assert_eq!(
        m.get(
            "poolwatch_pool_dataset_recommended_size",
            &[("dataset", "iris"), ("pool_size", "5")]
        ),
        Some(2.0)
    );
    assert_eq!(
        m.get(
            "poolwatch_database_setting_info",
            &[
                ("dataset", "iris"),
                ("setting", "journal_mode"),
                ("value", "wal")
            ]
        ),
        Some(1.0)
    );
    let sales = [("dataset", "sales")];
    assert_eq!(m.get("poolwatch_duckdb_threads", &sales), Some(4.0));
    assert_eq!(
        m.get("poolwatch_duckdb_memory_limit_bytes", &sales),
        Some(8e9)
    );
    assert_eq!(m.get("poolwatch_database_rows", &sales), Some(300.0));
    assert!(
        m.get("poolwatch_host_memory_total_bytes", &[("target", "mdm")])
            .unwrap()
            > 0.0
    );

    mdm::dataset(home, "taxi", "duckdb", 7, "wal");
    agent.wait_metrics(Duration::from_secs(20), "the fourth dataset", |m| {
        (datasets(m).len() == 4).then_some(())
    });
    mdm::run(&["remove", home.to_str().unwrap(), "wine"]);
    let m = agent.wait_metrics(Duration::from_secs(20), "wine to go", |m| {
        (datasets(m).len() == 3).then(|| m.clone())
    });
    assert_eq!(
        datasets(&m),
        pairs(&[("iris", "sqlite"), ("sales", "duckdb"), ("taxi", "duckdb")])
    );
    // Its alerts end at the next rule evaluation: the rules run once per sample interval (1 s
    // here), on the first report of a tick, which may come before this target's.
    let wine = |m: &Exposition| {
        m.series
            .iter()
            .filter(|s| s.labels.get("dataset").map(String::as_str) == Some("wine"))
            .count()
    };
    agent.wait_metrics(
        Duration::from_secs(5),
        "a removed dataset to leave no series",
        |m| (wine(m) == 0).then_some(()),
    );
}

#[test]
fn bad_datasets_are_named_and_the_others_keep_being_watched() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    mdm::dataset(home, "good", "sqlite", 12, "wal");
    mdm::dataset(home, "locked", "sqlite", 3, "wal");
    let registry = home.join("config/datasets");
    // A registry file that does not parse, and one whose file is gone.
    std::fs::write(
        registry.join("garbled.yaml"),
        "database: [backend: sqlite\n",
    )
    .unwrap();
    std::fs::write(
        registry.join("gone.yaml"),
        format!(
            "database:\n  backend: sqlite\n  path: {}\n",
            home.join("datasets/gone/gone.sqlite").display()
        ),
    )
    .unwrap();
    // A file that is not a database.
    let junk = home.join("datasets/junk/junk.duckdb");
    std::fs::create_dir_all(junk.parent().unwrap()).unwrap();
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    std::fs::write(
        registry.join("junk.yaml"),
        format!("database:\n  backend: duckdb\n  path: {}\n", junk.display()),
    )
    .unwrap();
    // A file the agent may not read. The tests run as root, which reads any file whatever its
    // mode, so the agent runs without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH: still root
    // (it can read /proc), but bound by file modes like anyone else.
    let locked = home.join("datasets/locked/locked.sqlite");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let agent = Agent::start_wrapped(
        &mdm_config(home),
        &[
            "setpriv",
            "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search",
        ],
    );
    let all = agent.wait_metrics(Duration::from_secs(20), "the good dataset", |m| {
        m.get("poolwatch_database_rows", &[("dataset", "good")])
            .map(|_| m.clone())
    });
    assert_eq!(
        all.get("poolwatch_database_rows", &[("dataset", "good")]),
        Some(12.0)
    );
    assert_eq!(
        all.get("poolwatch_target_up", &[("target", "mdm")]),
        Some(1.0)
    );
    let said = warnings(&agent);
    let registry = registry.display().to_string();
    let expect = [
        format!("{registry}/garbled.yaml: "),
        format!(
            "dataset gone: {}: does not exist",
            home.join("datasets/gone/gone.sqlite").display()
        ),
        format!(
            "dataset junk: {}: not a DuckDB database (no DUCK magic in the header)",
            junk.display()
        ),
        format!(
            "dataset locked: {}: cannot read: Permission denied",
            locked.display()
        ),
    ];
    for want in &expect {
        assert!(
            said.iter().any(|w| w.starts_with(want)),
            "no warning starting {want:?} in {said:#?}"
        );
    }
    // Nothing else is wrong with the datasets (the agent, without its DAC capabilities, may
    // also say that other users' processes are hidden from it).
    let about_datasets = said
        .iter()
        .filter(|w| w.starts_with("dataset ") || w.starts_with(&registry))
        .count();
    assert_eq!(about_datasets, 4, "{said:#?}");
    // The datasets whose registry entry parsed are pools all the same, with what is known.
    assert_eq!(
        datasets(&all),
        pairs(&[
            ("gone", "sqlite"),
            ("good", "sqlite"),
            ("junk", "duckdb"),
            ("locked", "sqlite")
        ])
    );
    assert_eq!(
        all.get("poolwatch_database_rows", &[("dataset", "locked")]),
        Some(3.0)
    );
}

/// A PostgreSQL dataset, made as MDM's registrar makes one (`CREATE DATABASE mdm_<name>` by
/// MDM's user), with the password in its registry entry as MDM writes it.
struct PostgresDataset {
    name: String,
}

impl PostgresDataset {
    async fn create(home: &Path) -> PostgresDataset {
        let name = format!("pw{}", std::process::id());
        let admin = common::connect(&common::app_config("mdm-registrar")).await;
        admin
            .simple_query(&format!("CREATE DATABASE mdm_{name}"))
            .await
            .unwrap();
        let registry = home.join("config/datasets");
        std::fs::create_dir_all(&registry).unwrap();
        std::fs::write(
            registry.join(format!("{name}.yaml")),
            format!(
                "name: {name}\ndatabase:\n  backend: postgresql\n  host: 127.0.0.1\n  port: {}\n  database: mdm_{name}\n  user: mdm\n  password: {}\nmetadata:\n  statistics:\n    row_count: 2000000000\n",
                common::pg_port(),
                common::APP_PASSWORD
            ),
        )
        .unwrap();
        PostgresDataset { name }
    }

    fn config(&self) -> tokio_postgres::Config {
        let mut config = common::app_config("mdm");
        config.dbname(format!("mdm_{}", self.name));
        config
    }

    async fn drop(self) {
        let admin = common::connect(&common::app_config("mdm-registrar")).await;
        admin
            .simple_query(&format!("DROP DATABASE mdm_{} WITH (FORCE)", self.name))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_dataset_is_a_pool_before_its_first_connection() {
    let home = tempfile::tempdir().unwrap();
    let dataset = PostgresDataset::create(home.path()).await;
    let agent = Agent::start(&mdm_config(home.path()));
    let name = dataset.name.clone();
    let count = |m: &Exposition, state: &str| {
        m.get(
            "db_client_connection_count",
            &[("dataset", &name), ("db_client_connection_state", state)],
        )
    };
    let m = agent.wait_metrics(Duration::from_secs(20), "the empty pool", |m| {
        count(m, "idle").map(|_| m.clone())
    });
    assert_eq!(
        (count(&m, "used"), count(&m, "idle")),
        (Some(0.0), Some(0.0))
    );
    let labels = [("dataset", name.as_str()), ("backend", "postgresql")];
    assert_eq!(m.get("poolwatch_pool_size", &labels), Some(5.0));
    // Two billion rows in the registry: the spec doubles the pool.
    assert_eq!(
        m.get("poolwatch_pool_dataset_recommended_size", &labels),
        Some(10.0)
    );
    // The audit reads the server's settings through the same session.
    assert_eq!(
        m.get("poolwatch_postgres_max_connections", &[("target", "mdm")]),
        Some(300.0)
    );
    assert_eq!(
        m.get(
            "poolwatch_postgres_shared_buffers_bytes",
            &[("target", "mdm")]
        ),
        Some(64.0 * 1024.0 * 1024.0)
    );

    let client = common::connect(&dataset.config()).await;
    client.simple_query("SELECT 1").await.unwrap();
    agent.wait_metrics(Duration::from_secs(20), "one idle connection", |m| {
        (count(m, "idle") == Some(1.0) && count(m, "used") == Some(0.0)).then_some(())
    });
    drop(client);
    dataset.drop().await;
}
