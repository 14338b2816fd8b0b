//! Prometheus itself (the Debian package, 2.42) scrapes the agent through TLS and basic auth,
//! with its own `scrape_config` settings: `up` is 1 for the job with the right password and 0
//! for one with a wrong password, so the 1 is not luck.

use std::time::Duration;

use crate::common::prometheus::Prometheus;
use crate::common::tls::{self, Access, Authority};
use crate::common::{Agent, pgbouncer_target, wait_for};

const PASSWORD: &str = "prom-scrape-pw-77aa";

/// `up` of each job, once Prometheus has scraped both.
fn up(prometheus: &Prometheus) -> Option<Vec<(String, String)>> {
    let mut up: Vec<(String, String)> = prometheus
        .query("up")
        .ok()?
        .iter()
        .map(|r| {
            let job = r["metric"]["job"].as_str().unwrap_or_default().to_string();
            (job, r["value"][1].as_str().unwrap_or_default().to_string())
        })
        .collect();
    up.sort();
    (up.len() == 2).then_some(up)
}

#[test]
fn prometheus_scrapes_through_tls_and_basic_auth() {
    let ca = Authority::new("prometheus-ca");
    // bcrypt's usual cost, as an operator's file would have.
    let (web, _) = tls::tls_and_user(&ca, "prometheus", PASSWORD, 10);
    let target = pgbouncer_target();
    let access = Access {
        https_ca: Some(ca.ca()),
        ..Access::basic("prometheus", PASSWORD)
    };
    let args = [
        "--target",
        &target,
        "--web-config-file",
        web.to_str().unwrap(),
    ];
    let agent = Agent::start_secured(&args, access);
    let job = |name: &str, password: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n    basic_auth:\n      username: prometheus\n      password: {password}\n    static_configs:\n      - targets: ['{addr}']\n",
            ca = ca.ca().display(),
            addr = agent.addr
        )
    };
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}",
        job("poolwatch", PASSWORD),
        job("wrong_password", "not-it")
    );
    let prometheus = Prometheus::start(&config);
    let up = wait_for(
        Duration::from_secs(60),
        "Prometheus to scrape both jobs",
        || up(&prometheus).filter(|up| up.iter().any(|(job, v)| job == "poolwatch" && v == "1")),
    );
    assert_eq!(
        up,
        vec![
            ("poolwatch".to_string(), "1".to_string()),
            ("wrong_password".to_string(), "0".to_string())
        ]
    );
}
