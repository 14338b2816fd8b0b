use super::*;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn datasets_come_from_the_registry_with_mdm_defaults_and_older_layouts() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    write(
        &home.join("mdm.yaml"),
        "database:\n  default_backend: duckdb\n  sqlalchemy:\n    pool_size: 8\n  duckdb:\n    threads: 2\n",
    );
    let iris = home.join("datasets/iris/iris.sqlite");
    write(&iris, "");
    write(
        &home.join("config/datasets/iris.yaml"),
        &format!(
            "name: iris\ndatabase:\n  backend: sqlite\n  path: {}\n  journal_mode: WAL\ntables:\n  train: train\n  test: test\n  train_features: train_features\nmetadata:\n  statistics:\n    row_count: 150\n",
            iris.display()
        ),
    );
    // An older layout: no database.path, the file is dataset.db; the backend is the default.
    write(&home.join("datasets/wine/dataset.db"), "");
    write(
        &home.join("config/datasets/wine.yaml"),
        "name: wine\ndatabase:\n  memory_limit: 512MB\n",
    );
    write(
        &home.join("config/datasets/sales.yaml"),
        "database:\n  backend: postgresql\n  host: 127.0.0.1\n  port: 5433\n  user: mdm\n  password: hunter2-secret\n  database: mdm_sales\n",
    );
    let found = discover(home);
    assert!(found.problems.is_empty(), "{:?}", found.problems);
    let names: Vec<(&str, &str)> = found
        .datasets
        .iter()
        .map(|d| (d.name.as_str(), d.backend.name()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("iris", "sqlite"),
            ("sales", "postgresql"),
            ("wine", "duckdb")
        ]
    );
    let iris_set = &found.datasets[0];
    assert_eq!(iris_set.limits.pool_size, Some(8));
    assert_eq!(iris_set.limits.max_overflow, Some(DEFAULT_MAX_OVERFLOW));
    assert_eq!(iris_set.rows, Some(150));
    assert_eq!(
        iris_set.tables,
        vec!["test".to_string(), "train".to_string()]
    );
    let Backend::File {
        path,
        threads,
        memory_limit_bytes,
        ..
    } = &found.datasets[2].backend
    else {
        panic!("wine is a file dataset");
    };
    assert_eq!(path, &home.join("datasets/wine/dataset.db"));
    // The registry entry wins over mdm.yaml, which wins over MDM's defaults.
    assert_eq!(
        (*threads, *memory_limit_bytes),
        (Some(2), Some(512_000_000))
    );
    let Backend::Postgres {
        connection,
        database,
    } = &found.datasets[1].backend
    else {
        panic!("sales is on PostgreSQL");
    };
    assert_eq!(database, "mdm_sales");
    assert_eq!(
        connection.endpoint(),
        "postgres://mdm@127.0.0.1:5433/postgres"
    );
    assert!(!format!("{:?}", found.datasets).contains("hunter2"));
}

#[test]
fn a_bad_registry_file_is_named_and_the_others_stay() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    write(&home.join("datasets/ok/ok.sqlite"), "");
    write(
        &home.join("config/datasets/ok.yaml"),
        "database:\n  backend: sqlite\n",
    );
    write(
        &home.join("config/datasets/broken.yaml"),
        "database:\n  backend: postgresql\n  password: s3cret-in-broken\n  port: [s3cret-in-broken\n",
    );
    write(
        &home.join("config/datasets/Bad Name.yaml"),
        "database: {}\n",
    );
    write(
        &home.join("config/datasets/lost.yaml"),
        "database:\n  backend: duckdb\n",
    );
    let found = discover(home);
    let names: Vec<&str> = found.datasets.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, vec!["ok"]);
    assert_eq!(found.problems.len(), 3, "{:?}", found.problems);
    for problem in &found.problems {
        assert!(!problem.contains("s3cret"), "{problem}");
        assert!(
            problem.starts_with(&home.join("config/datasets").display().to_string()),
            "{problem}"
        );
    }
    assert!(
        found.problems[0].contains("Bad Name.yaml"),
        "{:?}",
        found.problems
    );
    assert!(
        found.problems[1].contains("broken.yaml"),
        "{:?}",
        found.problems
    );
    assert!(
        found.problems[2].contains("lost.yaml: no database.path, and no database file"),
        "{:?}",
        found.problems
    );
}

#[test]
fn duckdb_memory_sizes_use_duckdb_units() {
    let cases = [
        ("4GB", Some(4_000_000_000)),
        ("8GB", Some(8_000_000_000)),
        ("4GiB", Some(4 * 1024 * 1024 * 1024)),
        ("512 MB", Some(512_000_000)),
        ("1.5gb", Some(1_500_000_000)),
        ("1000", Some(1000)),
        ("lots", None),
        ("4 parsecs", None),
    ];
    for (text, want) in cases {
        assert_eq!(duckdb_bytes(text), want, "{text}");
    }
}
