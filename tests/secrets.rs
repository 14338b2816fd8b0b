//! A password given to the agent appears nowhere it writes: logs (at debug), /metrics, the JSON
//! API, `check`, or the errors of a target that refuses the password or cannot be reached.

use crate::common;

use std::process::Command;
use std::time::Duration;

use crate::common::{Agent, PGBOUNCER_PASSWORD, free_port, pg_port, pgbouncer_port};

const WRONG_PASSWORD: &str = "wrong-pw-c0ffee";
const UNREACHABLE_PASSWORD: &str = "unreachable-pw-beef";

fn targets() -> Vec<String> {
    vec![
        format!(
            "pgbouncer=postgres://pgbouncer:{PGBOUNCER_PASSWORD}@127.0.0.1:{}/pgbouncer",
            pgbouncer_port()
        ),
        format!(
            "postgres=postgres://monitor:{WRONG_PASSWORD}@127.0.0.1:{}/postgres",
            pg_port()
        ),
        format!(
            "pgbouncer=postgres://pgbouncer:{UNREACHABLE_PASSWORD}@127.0.0.1:{}/pgbouncer",
            free_port()
        ),
    ]
}

fn assert_clean(what: &str, text: &str) {
    for secret in [PGBOUNCER_PASSWORD, WRONG_PASSWORD, UNREACHABLE_PASSWORD] {
        assert!(!text.contains(secret), "{what} shows a password:\n{text}");
    }
}

#[test]
fn passwords_never_leave_the_agent() {
    let targets = targets();
    let mut args: Vec<&str> = Vec::new();
    for t in &targets {
        args.extend(["--target", t]);
    }
    let agent = Agent::start_args(&args);
    // Wait until every path has run: a good sample, a refused password, a refused connection.
    let m = agent.wait_metrics(Duration::from_secs(30), "all three outcomes", |m| {
        let good = m.get("poolwatch_target_up", &[("target", "pgbouncer")])? == 1.0;
        let auth = m.get(
            "poolwatch_target_errors_total",
            &[("target", "postgres"), ("kind", "auth")],
        )? >= 1.0;
        let refused = m.get(
            "poolwatch_target_errors_total",
            &[("target", "pgbouncer-2"), ("kind", "connect")],
        )? >= 1.0;
        (good && auth && refused).then(|| m.clone())
    });
    assert_clean("/metrics", &m.text);
    for path in ["/api/v1/health", "/api/v1/targets", "/healthz"] {
        let (_, body) = agent.get(path).unwrap();
        assert_clean(path, &body);
    }
    let (_, targets_json) = agent.get("/api/v1/targets").unwrap();
    assert!(
        targets_json.contains("28P01"),
        "the auth error is reported: {targets_json}"
    );
    let log = agent.log();
    assert!(
        log.contains("target is down"),
        "the failures are logged: {log}"
    );
    assert_clean("the log", &log);

    for format in ["table", "json"] {
        let mut check = Command::new(common::binary());
        check.args(["check", "--window", "200ms", "--format", format]);
        for t in &targets {
            check.args(["--target", t]);
        }
        let out = check.env("POOLWATCH_LOG", "debug").output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(3),
            "two targets could not be checked"
        );
        assert_clean("check's output", &String::from_utf8_lossy(&out.stdout));
        assert_clean("check's log", &String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn config_errors_do_not_echo_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("poolwatch.yaml");
    std::fs::write(
        &path,
        format!(
            "targets:\n  - type: postgres\n    url: postgres://monitor:{WRONG_PASSWORD}@127.0.0.1:notaport/postgres\n    password_env: ALSO_SET\n"
        ),
    )
    .unwrap();
    let out = Command::new(common::binary())
        .args(["validate", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("targets[0].url: not a valid connection string"),
        "{stderr}"
    );
    assert_clean("validate", &stderr);
}

const REGISTRY_PASSWORD: &str = "registry-pw-5e11";

/// MDM's registry holds PostgreSQL passwords in plain text: one that the server refuses, and
/// one inside a registry file that does not parse. Neither shows anywhere.
#[test]
fn registry_passwords_never_leave_the_agent() {
    let home = tempfile::tempdir().unwrap();
    let registry = home.path().join("config/datasets");
    std::fs::create_dir_all(&registry).unwrap();
    std::fs::write(
        registry.join("refused.yaml"),
        format!(
            "database:\n  backend: postgresql\n  host: 127.0.0.1\n  port: {}\n  user: mdm\n  password: {REGISTRY_PASSWORD}\n  database: mdm_refused\n",
            pg_port()
        ),
    )
    .unwrap();
    std::fs::write(
        registry.join("broken.yaml"),
        format!("database:\n  backend: postgresql\n  password: {REGISTRY_PASSWORD}\n  port: [{REGISTRY_PASSWORD}\n"),
    )
    .unwrap();
    let agent = Agent::start_args(&["--target", &format!("mdm={}", home.path().display())]);
    let (_, targets) = agent.wait_for_body(Duration::from_secs(20), "/api/v1/targets", |body| {
        body.contains("28P01") && body.contains("broken.yaml")
    });
    let clean = |what: &str, text: &str| {
        assert!(
            !text.contains(REGISTRY_PASSWORD),
            "{what} shows a password:\n{text}"
        );
    };
    clean("/api/v1/targets", &targets);
    clean("/metrics", &agent.metrics().text);
    clean("/api/v1/health", &agent.get("/api/v1/health").unwrap().1);
    clean("the log", &agent.log());
    let out = Command::new(common::binary())
        .args(["check", "--window", "200ms", "--format", "json"])
        .args(["--target", &format!("mdm={}", home.path().display())])
        .env("POOLWATCH_LOG", "debug")
        .output()
        .unwrap();
    clean("check's output", &String::from_utf8_lossy(&out.stdout));
    clean("check's log", &String::from_utf8_lossy(&out.stderr));
}
