//! Prometheus itself (the Debian package, 2.42) scrapes the agent through TLS and basic auth,
//! with its own `scrape_config` settings: `up` is 1 for the job with the right password and 0
//! for one with a wrong password, so the 1 is not luck.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::tls::{self, Access, Authority};
use crate::common::{Agent, free_port, pgbouncer_target, wait_for};

const PASSWORD: &str = "prom-scrape-pw-77aa";

struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(config: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed (scripts/services.sh start installs it)");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// `up` of each job, once Prometheus has scraped both.
    fn up(&self) -> Option<Vec<(String, String)>> {
        let url = format!("http://{}/api/v1/query?query=up", self.addr);
        let mut response = ureq::get(&url).call().ok()?;
        let text = response.body_mut().read_to_string().ok()?;
        let body: serde_json::Value = serde_json::from_str(&text).ok()?;
        let mut up: Vec<(String, String)> = body["data"]["result"]
            .as_array()?
            .iter()
            .map(|r| {
                let job = r["metric"]["job"].as_str().unwrap_or_default().to_string();
                (job, r["value"][1].as_str().unwrap_or_default().to_string())
            })
            .collect();
        up.sort();
        (up.len() == 2).then_some(up)
    }
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
        || {
            prometheus
                .up()
                .filter(|up| up.iter().any(|(job, v)| job == "poolwatch" && v == "1"))
        },
    );
    assert_eq!(
        up,
        vec![
            ("poolwatch".to_string(), "1".to_string()),
            ("wrong_password".to_string(), "0".to_string())
        ]
    );
}
