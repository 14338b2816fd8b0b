use super::*;

fn problems(text: &str) -> Vec<String> {
    match WebConfig::from_yaml(Path::new("/etc/poolwatch/web.yml"), text) {
        Ok(_) => Vec::new(),
        Err(d) => d.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn an_empty_file_is_plain_http_without_auth() {
    for text in ["", "# nothing\n", "{}\n"] {
        let config = WebConfig::from_yaml(Path::new("w.yml"), text).unwrap();
        assert!(config.tls.is_none() && config.users.is_empty(), "{text:?}");
    }
}

#[test]
fn users_headers_and_the_healthz_exemption() {
    let hash = bcrypt::hash("pw", 4).unwrap();
    let text = format!(
        "basic_auth_users:\n  alice: {hash}\nhttp_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\n    Content-Security-Policy: \"default-src 'self'\"\npoolwatch:\n  healthz_without_auth: true\n"
    );
    let config = WebConfig::from_yaml(Path::new("w.yml"), &text).unwrap();
    assert_eq!(config.users.keys().collect::<Vec<_>>(), vec!["alice"]);
    assert!(config.healthz_without_auth);
    let dummy = config.dummy_hash.as_ref().unwrap().as_str();
    assert_eq!(dummy.parse::<bcrypt::HashParts>().unwrap().get_cost(), 4);
    let headers: Vec<String> = config
        .headers
        .iter()
        .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
        .collect();
    assert_eq!(
        headers,
        vec![
            "content-security-policy: default-src 'self'",
            "x-frame-options: deny"
        ]
    );
    assert!(
        !format!("{config:?}").contains(&hash),
        "Debug shows no hash"
    );
}

#[test]
fn every_problem_is_located_and_no_hash_is_echoed() {
    let text = "tls_server_config:\n  cert_file: missing.crt\n  min_version: TLS10\n  client_auth_type: RequireAnyClientCert\nhttp_server_config:\n  headers:\n    X-Frame-Options: allow\n    Server: poolwatch\nbasic_auth_users:\n  bob: not-a-bcrypt-hash-s3cret\nrate_limit:\n  interval: 1s\n";
    let found = problems(text);
    assert_eq!(
        found,
        vec![
            "/etc/poolwatch/web.yml:2:3: tls_server_config.key_file: missing one of key or key_file",
            "/etc/poolwatch/web.yml:2:14: tls_server_config.cert_file: cannot read /etc/poolwatch/missing.crt: entity not found",
            "/etc/poolwatch/web.yml:3:16: tls_server_config.min_version: TLS10: rustls implements TLS12 and TLS13 only (older versions are broken)",
            "/etc/poolwatch/web.yml:4:21: tls_server_config.client_auth_type: RequireAnyClientCert accepts certificates nobody verified; use RequireAndVerifyClientCert",
            "/etc/poolwatch/web.yml:7:22: http_server_config.headers.X-Frame-Options: must be one of deny, sameorigin",
            "/etc/poolwatch/web.yml:8:13: http_server_config.headers.Server: cannot be configured; one of Content-Security-Policy, Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection",
            "/etc/poolwatch/web.yml:10:8: basic_auth_users.bob: not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)",
            "/etc/poolwatch/web.yml:12:3: rate_limit: not supported by poolwatch (its endpoints answer from memory)",
        ]
    );
    assert!(!found.concat().contains("s3cret"));
}

#[test]
fn unknown_keys_are_refused_where_they_are() {
    let found = problems("tls_server_config:\n  cert_fil: a.crt\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(
            "/etc/poolwatch/web.yml:2:3: tls_server_config.cert_fil: unknown field `cert_fil`"
        ),
        "{found:?}"
    );
}

#[test]
fn the_example_file_parses_once_its_certificates_exist() {
    let example = include_str!("../../../config/web-config.yml");
    // Without agent.crt and agent.key next to it, only those are missing.
    let found = problems(example);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .all(|p| p.contains("cannot read /etc/poolwatch/agent."))
    );
    // Its hash is that of the password its comment gives.
    let hash = example
        .lines()
        .find_map(|l| l.trim().strip_prefix("prometheus: "))
        .unwrap();
    assert!(bcrypt::verify("change-me", hash).unwrap());
}

#[test]
fn allowed_sans_need_a_verifying_client_auth_type() {
    let found = problems(
        "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n  client_allowed_sans: [scraper.example]\n",
    );
    assert!(
        found.contains(&"/etc/poolwatch/web.yml:4:24: tls_server_config.client_allowed_sans: needs a client_auth_type that verifies client certificates".to_string()),
        "{found:?}"
    );
}
