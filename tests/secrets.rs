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
    // The JSON API serves the last publish, which may trail the counters by a coalescing window.
    common::wait_for(
        Duration::from_secs(10),
        "the auth error in /api/v1/targets",
        || {
            let (_, targets_json) = agent.get("/api/v1/targets").ok()?;
            targets_json.contains("28P01").then_some(())
        },
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

const LISTENER_PASSWORD: &str = "listener-pw-51ab";
const WRONG_LISTENER_PASSWORD: &str = "wrong-listener-pw-93cd";
const TLS_TARGET_PASSWORD: &str = "tls-target-pw-ae07";
const PLAIN_TARGET_PASSWORD: &str = "plain-target-pw-11f4";

/// The base64 lines of a PEM file: what would show if its content leaked.
fn pem_body(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
        .map(str::to_string)
        .collect()
}

/// The TLS and auth paths: a listener with TLS and a bcrypt user refusing a wrong password, a
/// target whose certificate check fails (the agent's own TLS listener, reached with direct TLS
/// and an untrusted CA, while presenting a client certificate), and a server that refuses TLS.
#[test]
fn tls_and_auth_paths_leak_nothing() {
    use crate::common::tls::{self, Access, Authority};
    let ca = Authority::new("secrets-ca");
    let (web, hash) = tls::tls_and_user(&ca, "prometheus", LISTENER_PASSWORD, 4);
    let server_key = ca.dir.path().join("agent.key");
    let client = ca.issue("client", &[]);
    let stranger = Authority::new("secrets-stranger");
    let https = Access {
        https_ca: Some(ca.ca()),
        ..Access::basic("prometheus", LISTENER_PASSWORD)
    };
    let plain_target = common::pgbouncer_target();
    let web_arg = ["--web-config-file", web.to_str().unwrap()];
    let tls_peer = Agent::start_secured(
        &[&["--target", &plain_target][..], &web_arg[..]].concat(),
        https.clone(),
    );
    let untrusted = format!(
        "postgres=postgres://monitor:{TLS_TARGET_PASSWORD}@127.0.0.1:{}/postgres?sslnegotiation=direct&sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        tls_peer.addr.port(),
        stranger.ca().display(),
        client.cert.display(),
        client.key.display()
    );
    let refused = format!(
        "postgres=postgres://monitor:{PLAIN_TARGET_PASSWORD}@127.0.0.1:{}/postgres?sslmode=require",
        pg_port()
    );
    let args = [
        &["--target", &untrusted, "--target", &refused][..],
        &web_arg[..],
    ]
    .concat();
    let agent = Agent::start_secured(&args, https.clone());
    let m = agent.wait_metrics(Duration::from_secs(30), "both TLS failures", |m| {
        let certificate = m.get(
            "poolwatch_target_errors_total",
            &[("target", "postgres"), ("kind", "certificate")],
        )? >= 1.0;
        let tls = m.get(
            "poolwatch_target_errors_total",
            &[("target", "postgres-2"), ("kind", "tls")],
        )? >= 1.0;
        (certificate && tls).then(|| m.clone())
    });
    let wrong = Access::basic("prometheus", WRONG_LISTENER_PASSWORD);
    let wrong = Access {
        https_ca: Some(ca.ca()),
        ..wrong
    };
    let (status, _, refusal) = wrong.get(agent.addr, "/metrics").unwrap();
    assert_eq!(status, 401);

    let mut secrets: Vec<String> = [
        LISTENER_PASSWORD,
        WRONG_LISTENER_PASSWORD,
        TLS_TARGET_PASSWORD,
        PLAIN_TARGET_PASSWORD,
        hash.as_str(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    secrets.extend(pem_body(&server_key));
    secrets.extend(pem_body(&client.key));
    let clean = |what: &str, text: &str| {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what} shows a secret:\n{text}"
            );
        }
    };
    clean("/metrics", &m.text);
    clean("the 401", &refusal);
    for path in ["/api/v1/targets", "/api/v1/health", "/healthz"] {
        let (_, body) = agent.get(path).unwrap();
        clean(path, &body);
    }
    common::wait_for(
        Duration::from_secs(10),
        "the check that failed, in the API",
        || {
            let (_, targets) = agent.get("/api/v1/targets").ok()?;
            targets
                .contains("certificate check failed: unknown issuer")
                .then_some(())
        },
    );
    let log = agent.log();
    assert!(log.contains("target is down"), "{log}");
    clean("the log", &log);
    clean("the peer's log", &tls_peer.log());
}

/// A key file that is not a key, and a TLS parameter poolwatch refuses: the errors name the file
/// and the parameter, never what is in them.
#[test]
fn tls_config_errors_do_not_echo_key_material() {
    let ca = crate::common::tls::Authority::new("garbage-key-ca");
    let client = ca.issue("client", &[]);
    let marker = "KEY-MATERIAL-9f3e";
    std::fs::write(
        &client.key,
        format!("-----BEGIN PRIVATE KEY-----\n{marker}!!\n-----END PRIVATE KEY-----\n"),
    )
    .unwrap();
    let path = ca.dir.path().join("poolwatch.yaml");
    std::fs::write(
        &path,
        format!(
            "targets:\n  - type: postgres\n    url: postgres://monitor@127.0.0.1:5432/postgres\n    tls: {{sslmode: require, sslcert: client.crt, sslkey: client.key}}\n  - type: postgres\n    name: second\n    url: postgres://monitor@127.0.0.1:5432/postgres?sslpassword={WRONG_PASSWORD}\n"
        ),
    )
    .unwrap();
    let (code, stderr) = common::validate(&path);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("client.key is not valid PEM"), "{stderr}");
    assert!(
        stderr.contains("targets[1].url: `sslpassword` is not supported by poolwatch"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(marker) && !stderr.contains(WRONG_PASSWORD),
        "{stderr}"
    );
}
