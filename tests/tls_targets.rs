//! TLS to real PostgreSQL servers, with libpq's sslmode semantics: a private cluster with
//! `ssl = on` and a certificate from a CA this test makes (valid for 127.0.0.1 only), and the
//! shared cluster, which has no TLS. Each outcome is checked where the server sees it
//! (`pg_stat_ssl`) and where the operator does (`poolwatch_target_up`, the error kind, the log).

use std::time::Duration;

use crate::common::tls::Authority;
use crate::common::{
    Agent, MONITOR_PASSWORD, Postgres, ServerTls, agent_config, pg_port, target, wait_for,
};

#[test]
fn sslmodes_against_servers_with_and_without_tls() {
    let ca = Authority::new("poolwatch-test-ca");
    let stranger = Authority::new("some-other-ca");
    let server = ca.issue("server", &["127.0.0.1"]);
    let client = ca.issue("certuser", &[]);
    let postgres = Postgres::with_tls(
        "mdm_tls",
        &ServerTls {
            server: &server,
            client_ca: &ca.ca(),
        },
    );
    let port = postgres.port;
    let ca_file = ca.ca().display().to_string();
    // The certificate names 127.0.0.1 only: reached as `localhost` its name does not match.
    let by_ip = |mode: &str, root: &str| {
        format!("postgres://monitor@127.0.0.1:{port}/postgres?sslmode={mode}&sslrootcert={root}")
    };
    let by_name = |mode: &str| {
        format!(
            "postgres://monitor@localhost:{port}/postgres?hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={ca_file}"
        )
    };
    let shared = |mode: &str| {
        format!(
            "postgres://monitor:{MONITOR_PASSWORD}@127.0.0.1:{}/postgres?sslmode={mode}",
            pg_port()
        )
    };
    let client_tls = format!(
        "tls: {{sslmode: verify-full, sslrootcert: {ca_file}, sslcert: {}, sslkey: {}}}",
        client.cert.display(),
        client.key.display()
    );
    let certuser = format!("postgres://certuser@127.0.0.1:{port}/postgres");
    let config = agent_config(
        "500ms",
        "400ms",
        &[
            target("postgres", "full", &by_ip("verify-full", &ca_file), &[]),
            target("postgres", "chain_only", &by_name("verify-ca"), &[]),
            target("postgres", "name_mismatch", &by_name("verify-full"), &[]),
            target(
                "postgres",
                "unknown_ca",
                &by_ip("verify-full", &stranger.ca().display().to_string()),
                &[],
            ),
            target(
                "postgres",
                "require",
                &format!("postgres://monitor@127.0.0.1:{port}/postgres?sslmode=require"),
                &[],
            ),
            target("postgres", "prefer_plain", &shared("prefer"), &[]),
            target("postgres", "require_plain", &shared("require"), &[]),
            target("postgres", "client_cert", &certuser, &[&client_tls]),
            target(
                "postgres",
                "no_client_cert",
                &certuser,
                &["tls: {sslmode: require}"],
            ),
        ],
    );
    let agent = Agent::start(&config);
    let up = |m: &crate::common::exposition::Exposition, name: &str| {
        m.get("poolwatch_target_up", &[("target", name)])
    };
    let errors = |m: &crate::common::exposition::Exposition, name: &str, kind: &str| {
        m.get(
            "poolwatch_target_errors_total",
            &[("target", name), ("kind", kind)],
        )
        .unwrap_or(0.0)
    };
    let m = agent.wait_metrics(Duration::from_secs(30), "every target's outcome", |m| {
        let ups = [
            "full",
            "chain_only",
            "require",
            "prefer_plain",
            "client_cert",
        ]
        .iter()
        .all(|t| up(m, t) == Some(1.0));
        let failed = [
            ("name_mismatch", "certificate"),
            ("unknown_ca", "certificate"),
            ("require_plain", "tls"),
            ("no_client_cert", "auth"),
        ]
        .iter()
        .all(|(t, kind)| up(m, t) == Some(0.0) && errors(m, t, kind) >= 1.0);
        (ups && failed).then(|| m.clone())
    });
    // Every failure is of its own kind only.
    for name in ["name_mismatch", "unknown_ca"] {
        for kind in ["connect", "auth", "query", "protocol", "tls"] {
            assert_eq!(errors(&m, name, kind), 0.0, "{name} {kind}");
        }
    }

    // The server's view: the three verified or required sessions and the certificate login are
    // encrypted; the refused ones never got a session.
    let sessions = postgres.query(
        "SELECT a.usename, s.ssl, s.client_dn IS NOT NULL FROM pg_stat_ssl s \
         JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'poolwatch' \
         ORDER BY 1, 3",
    );
    assert_eq!(
        sessions, "certuser|t|t\nmonitor|t|f\nmonitor|t|f\nmonitor|t|f\n",
        "full, chain_only and require as monitor, client_cert as certuser"
    );

    let said = [
        "certificate check failed: name mismatch",
        "certificate check failed: unknown issuer (not signed by a trusted CA)",
        "server does not support TLS",
    ];
    // The JSON API serves the last publish, which may trail the counters by a coalescing window.
    wait_for(
        Duration::from_secs(10),
        "each failure said in the API",
        || {
            let (_, targets) = agent.get("/api/v1/targets").ok()?;
            said.iter().all(|s| targets.contains(s)).then_some(())
        },
    );
    let log = agent.log();
    for said in said {
        assert!(log.contains(said), "{said} in the log: {log}");
    }
    assert!(log.contains("sslmode=verify-full"), "{log}");
}

#[test]
fn a_verifying_sslmode_without_a_root_certificate_is_a_located_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("poolwatch.yaml");
    std::fs::write(
        &path,
        "targets:\n  - type: postgres\n    url: postgres://monitor@127.0.0.1:5432/postgres?sslmode=verify-full\n  - type: postgres\n    name: second\n    url: postgres://monitor@127.0.0.1:5432/postgres\n    tls:\n      sslmode: verify-ca\n      sslrootcert: missing-ca.crt\n",
    )
    .unwrap();
    let (code, stderr) = crate::common::validate(&path);
    assert_eq!(code, Some(2), "{stderr}");
    let missing = dir.path().join("missing-ca.crt");
    let expected = format!(
        "{p}:3:10: targets[0].url: sslmode=verify-full needs sslrootcert: the CA that signed the server's certificate\n\
         {p}:8:7: targets[1].tls: cannot read {m}: entity not found\n",
        p = path.display(),
        m = missing.display()
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
}
