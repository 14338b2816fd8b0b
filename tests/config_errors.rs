//! Bad config files: every mistake reported at once with file, line and field; non-zero exit.

use crate::common;

use std::process::Command;

fn validate(text: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("poolwatch.yaml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(common::binary())
        .args(["validate", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(path.to_str().unwrap(), "poolwatch.yaml");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        stderr,
    )
}

#[test]
fn three_mistakes_three_located_errors() {
    let (code, _, stderr) = validate(
        "listen: 127.0.0.1:9898\n\
         sample_interval: often\n\
         targets:\n\
         \x20 - type: pgbouncer\n\
         \x20   url: postgres://pgbouncer@127.0.0.1:6432/pgbouncer\n\
         \x20   colour: blue\n\
         \x20 - type: mysql\n\
         \x20   url: postgres://monitor@127.0.0.1:5432/postgres\n",
    );
    assert_eq!(code, Some(2));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        vec![
            "poolwatch.yaml:2:18: sample_interval: `often` is not a duration like 10s or 1m30s",
            "poolwatch.yaml:6:5: targets[0].colour: unknown field `colour`, expected one of type, name, url, password_file, password_env, labels, pool_key, limits, tls",
            "poolwatch.yaml:7:11: targets[1].type: unknown variant `mysql`, expected one of pgbouncer, postgres",
            "poolwatch.yaml: 3 problem(s)",
        ]
    );
}

#[test]
fn semantic_mistakes_are_located_too() {
    let (code, _, stderr) = validate(
        "sample_interval: 5s\n\
         sample_timeout: 10s\n\
         targets:\n\
         \x20 - type: pgbouncer\n\
         \x20   name: a\n\
         \x20   url: postgres://pgbouncer@127.0.0.1:6432/pgbouncer\n\
         \x20   pool_key: user\n\
         \x20 - type: postgres\n\
         \x20   name: a\n\
         \x20   url: postgres://monitor@127.0.0.1:5432/postgres\n\
         \x20   password_env: POOLWATCH_TEST_UNSET_VARIABLE\n\
         \x20   labels: {\"bad-name\": x}\n",
    );
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        vec![
            "poolwatch.yaml:2:17: sample_timeout: must not exceed sample_interval",
            "poolwatch.yaml:7:15: targets[0].pool_key: applies to postgres targets only",
            "poolwatch.yaml:9:11: targets[1].name: another target is already named `a`",
            "poolwatch.yaml:11:19: targets[1].password_env: environment variable `POOLWATCH_TEST_UNSET_VARIABLE` is not set",
            "poolwatch.yaml:12:13: targets[1].labels: label `bad-name` is not a valid Prometheus label name",
            "poolwatch.yaml: 5 problem(s)",
        ]
    );
}

#[test]
fn the_shipped_example_is_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(common::binary())
        .args([
            "validate",
            "--config",
            &format!("{root}/config/poolwatch.yaml"),
        ])
        .env("POOLWATCH_PGBOUNCER_PASSWORD", "x")
        .env("POOLWATCH_POSTGRES_PASSWORD", "y")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mdm_pool_size_overrides_the_template() {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/config/poolwatch.yaml")).unwrap();
    // The example's password variables, and nothing else (no OTEL_* variable).
    let env = |name: &str| match name {
        "MDM_POOL_SIZE" => Some("42".to_string()),
        // The passwords the example names; PGSSLMODE and the others stay unset.
        name if name.ends_with("_PASSWORD") => Some("pw".to_string()),
        _ => None,
    };
    let config = poolwatch::config::Config::from_yaml(
        std::path::Path::new(&format!("{root}/config/poolwatch.yaml")),
        &text,
        &env,
    )
    .unwrap();
    assert_eq!(config.targets[1].limits.pool_size, Some(42));
    // The rest of the limits still come from the file and its template.
    assert_eq!(config.targets[1].limits.max_overflow, Some(10));
}
