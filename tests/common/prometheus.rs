//! A real Prometheus (the Debian package, 2.42) per test: its own port and storage in a
//! temporary directory, its config and the files it names written there. Killed when dropped.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use super::free_port;

pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    pub fn start(config: &str) -> Prometheus {
        Prometheus::start_with(config, &[])
    }

    /// As [`Prometheus::start`], with `files` (name, content) beside the config, where its
    /// relative paths (`rule_files`) point.
    pub fn start_with(config: &str, files: &[(&str, &str)]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
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

    /// GET an API path with query parameters: the `data` of a successful answer, or why not.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<serde_json::Value, String> {
        let mut request = ureq::get(format!("http://{}{path}", self.addr));
        for (k, v) in params {
            request = request.query(*k, *v);
        }
        // A 400 carries Prometheus' reason in its body.
        let request = request.config().http_status_as_error(false).build();
        let mut response = request.call().map_err(|e| e.to_string())?;
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let body: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        match body["status"].as_str() {
            Some("success") => Ok(body["data"].clone()),
            _ => Err(text),
        }
    }

    /// The result of an instant query (`/api/v1/query`).
    pub fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let data = self.api("/api/v1/query", &[("query", expr)])?;
        match data["result"].as_array() {
            Some(result) => Ok(result.clone()),
            None => Err(format!("no vector: {data}")),
        }
    }
}
