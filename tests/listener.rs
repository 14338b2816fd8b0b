//! The listener under an exporter-toolkit web config: basic auth with a bcrypt user, TLS, client
//! certificates, the configured headers, the `/healthz` exemption, and hot reload with the last
//! good version kept.

use std::path::Path;
use std::time::Duration;

use crate::common::tls::{self, Access, Authority};
use crate::common::{Agent, pgbouncer_target, wait_for};

const USER: &str = "prometheus";
const PASSWORD: &str = "scrape-pw-5e1f";

fn users() -> String {
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    format!("basic_auth_users:\n  {USER}: {hash}\n")
}

fn start(web_config: &Path, access: Access) -> Agent {
    let target = pgbouncer_target();
    let args = [
        "--target",
        &target,
        "--web-config-file",
        web_config.to_str().unwrap(),
    ];
    Agent::start_secured(&args, access)
}

#[test]
fn basic_auth_refuses_missing_and_wrong_passwords_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    let headers = "http_server_config:\n  headers:\n    X-Frame-Options: deny\n";
    std::fs::write(&web, format!("{}{headers}", users())).unwrap();
    let agent = start(&web, Access::basic(USER, PASSWORD));
    let addr = agent.addr;

    let (status, challenge, body) = Access::default().get(addr, "/metrics").unwrap();
    assert_eq!(
        (status, challenge.as_deref()),
        (401, Some("Basic")),
        "{body}"
    );
    let (status, challenge, _) = Access::basic(USER, "wrong").get(addr, "/metrics").unwrap();
    assert_eq!((status, challenge.as_deref()), (401, Some("Basic")));
    let (status, _, _) = Access::basic("mallory", PASSWORD)
        .get(addr, "/metrics")
        .unwrap();
    assert_eq!(status, 401);
    let (status, _, body) = Access::basic(USER, PASSWORD).get(addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("poolwatch_build_info"), "{body}");
    // Every endpoint is behind it, /healthz too unless the file says otherwise.
    for path in ["/healthz", "/readyz", "/api/v1/health", "/api/v1/targets"] {
        let (status, _, _) = Access::default().get(addr, path).unwrap();
        assert_eq!(status, 401, "{path}");
    }
    let m = agent.metrics();
    assert_eq!(
        m.get("poolwatch_reload_successful", &[("kind", "web_config")]),
        Some(1.0)
    );

    // The exemption, by reload.
    let exempt = "poolwatch:\n  healthz_without_auth: true\n";
    std::fs::write(&web, format!("{}{headers}{exempt}", users())).unwrap();
    wait_for(
        Duration::from_secs(10),
        "/healthz without credentials",
        || {
            let (status, _, _) = Access::default().get(addr, "/healthz").ok()?;
            (status == 200).then_some(())
        },
    );
    let (status, _, _) = Access::default().get(addr, "/metrics").unwrap();
    assert_eq!(status, 401, "only /healthz is exempt");

    // A broken file: the last good config keeps serving, and the reload shows it.
    std::fs::write(&web, "basic_auth_users:\n  prometheus: not-a-hash\n").unwrap();
    agent.wait_metrics(Duration::from_secs(10), "the failed reload", |m| {
        (m.get("poolwatch_reload_successful", &[("kind", "web_config")])? == 0.0).then_some(())
    });
    assert_eq!(Access::default().get(addr, "/metrics").unwrap().0, 401);
    assert_eq!(Access::default().get(addr, "/healthz").unwrap().0, 200);
    let log = agent.log();
    assert!(
        log.contains("web config not reloaded") && log.contains("basic_auth_users.prometheus"),
        "{log}"
    );
}

#[test]
fn headers_are_on_every_answer() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    let headers = "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n";
    std::fs::write(&web, format!("{}{headers}", users())).unwrap();
    let agent = start(&web, Access::basic(USER, PASSWORD));
    let url = format!("http://{}/metrics", agent.addr);
    for authorized in [false, true] {
        let mut request = ureq::get(&url).config().http_status_as_error(false).build();
        if authorized {
            let creds = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{USER}:{PASSWORD}"),
            );
            request = request.header("Authorization", format!("Basic {creds}"));
        }
        let response = request.call().unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(header("x-frame-options").as_deref(), Some("deny"));
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
        assert_eq!(
            response.status().as_u16(),
            if authorized { 200 } else { 401 }
        );
    }
}

#[test]
fn with_tls_plain_http_fails_and_https_with_the_ca_succeeds() {
    let ca = Authority::new("listener-ca");
    let (web, _) = tls::tls_and_user(&ca, USER, PASSWORD, 4);
    let https = Access {
        https_ca: Some(ca.ca()),
        ..Access::basic(USER, PASSWORD)
    };
    let agent = start(&web, https.clone());
    let addr = agent.addr;
    assert!(
        Access::basic(USER, PASSWORD).get(addr, "/metrics").is_err(),
        "plain HTTP gets no answer"
    );
    let (status, _, body) = https.get(addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("poolwatch_build_info"));
    let no_password = Access {
        basic: None,
        ..https.clone()
    };
    assert_eq!(no_password.get(addr, "/metrics").unwrap().0, 401);
    let stranger = Authority::new("stranger-ca");
    let wrong_ca = Access {
        https_ca: Some(stranger.ca()),
        ..https.clone()
    };
    assert!(
        wrong_ca.get(addr, "/metrics").is_err(),
        "the agent's CA is not trusted"
    );
}

#[test]
fn client_certificates_when_required() {
    let ca = Authority::new("mtls-ca");
    ca.issue("agent", &["127.0.0.1"]);
    let scraper = ca.issue("scraper", &["scraper.example"]);
    // Signed by the right CA, but with a name the file does not allow.
    let outsider = ca.issue("outsider", &["outsider.example"]);
    let stranger = Authority::new("stranger-ca");
    let impostor = stranger.issue("impostor", &[]);
    let web = ca.dir.path().join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: agent.crt\n  key_file: agent.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: mtls-ca.crt\n  client_allowed_sans: [scraper.example]\n  min_version: TLS13\n",
    )
    .unwrap();
    let with_cert = Access {
        https_ca: Some(ca.ca()),
        client: Some(scraper),
        ..Access::default()
    };
    let agent = start(&web, with_cert.clone());
    let (status, _, _) = with_cert.get(agent.addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    let without = Access {
        client: None,
        ..with_cert.clone()
    };
    assert!(without.get(agent.addr, "/metrics").is_err());
    let impostor = Access {
        client: Some(impostor),
        ..with_cert.clone()
    };
    assert!(impostor.get(agent.addr, "/metrics").is_err());
    let outsider = Access {
        client: Some(outsider),
        ..with_cert
    };
    assert!(outsider.get(agent.addr, "/metrics").is_err());
    let log = agent.log();
    for refusal in [
        "client certificate: no certificate presented",
        "client certificate: unknown issuer",
        "client certificate: none of its subject alternative names is allowed",
    ] {
        assert!(log.contains(refusal), "{refusal}: {log}");
    }
}

#[test]
fn validate_checks_the_web_config_a_config_names() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        "basic_auth_users:\n  prometheus: plaintext-is-not-a-hash\n",
    )
    .unwrap();
    let config = dir.path().join("poolwatch.yaml");
    std::fs::write(
        &config,
        "web_config_file: web.yml\ntargets:\n  - type: pgbouncer\n    url: postgres://pgbouncer@127.0.0.1:6432/pgbouncer\n",
    )
    .unwrap();
    let (code, stderr) = crate::common::validate(&config);
    assert_eq!(code, Some(2), "{stderr}");
    let expected = format!(
        "{}:2:15: basic_auth_users.prometheus: not a bcrypt hash",
        web.display()
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(!stderr.contains("plaintext-is-not-a-hash"), "{stderr}");
}
