//! A real Alertmanager (the Debian package's binary) per test, on free ports with its own
//! storage, routing with `config/alertmanager.yml` to a webhook receiver the test runs.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{free_port, wait_for};

/// Debian names the binary `prometheus-alertmanager`; upstream's is `alertmanager`.
fn binary() -> &'static str {
    for name in ["prometheus-alertmanager", "alertmanager"] {
        let found = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
            .unwrap_or(false);
        if found {
            return name;
        }
    }
    panic!(
        "Alertmanager is not installed. `scripts/services.sh start` installs it (Debian package \
         prometheus-alertmanager)."
    );
}

/// `config/alertmanager.yml` with its webhooks pointed at `webhook` and its timers shortened so
/// a test sees a notification within a second (the routes, grouping and inhibition unchanged).
pub fn routing_config(webhook: SocketAddr) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/alertmanager.yml");
    let original = std::fs::read_to_string(path).unwrap();
    let mut text = original.clone();
    for (from, to) in [
        ("http://127.0.0.1:9095/", format!("http://{webhook}/")),
        ("group_wait: 30s", "group_wait: 200ms".into()),
        ("group_interval: 5m", "group_interval: 500ms".into()),
        ("repeat_interval: 4h", "repeat_interval: 1h".into()),
    ] {
        assert!(
            text.contains(from),
            "config/alertmanager.yml has no {from:?}"
        );
        text = text.replace(from, &to);
    }
    text
}

/// An Alertmanager of the test's own; killed when dropped.
pub struct Alertmanager {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Alertmanager {
    /// Starts one with `config` (YAML) and waits until it is ready.
    pub fn start(config: &str) -> Alertmanager {
        let dir = tempfile::Builder::new()
            .prefix("poolwatch-alertmanager")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("alertmanager.yml"), config).unwrap();
        let mut am = Alertmanager {
            port: free_port(),
            dir,
            child: None,
        };
        am.resume();
        am
    }

    /// The URL to give poolwatch.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts (again) on the same port and storage, and waits until it is ready.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("alertmanager.log"))
            .unwrap();
        let child = Command::new(binary())
            .arg(format!(
                "--config.file={}",
                self.dir.path().join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", self.storage().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            // The URL it names itself by in notifications: tells the test who sent one.
            .arg(format!("--web.external-url={}", self.url()))
            // No gossip: each test's Alertmanager stands alone.
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start Alertmanager");
        self.child = Some(child);
        let ready = format!("{}/-/ready", self.url());
        wait_for(Duration::from_secs(20), "Alertmanager to be ready", || {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("Alertmanager exited with {status}:\n{}", self.log());
            }
            let response = ureq::get(&ready)
                .config()
                .timeout_global(Some(Duration::from_secs(2)))
                .http_status_as_error(false)
                .build()
                .call()
                .ok()?;
            (response.status().as_u16() == 200).then_some(())
        });
    }

    /// Stops it as an operator would (SIGTERM: it writes its notification log to storage) and
    /// waits until the port is free.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        wait_for(Duration::from_secs(20), "Alertmanager to exit", || {
            child.try_wait().unwrap()
        });
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_for(Duration::from_secs(10), "the port to be free", || {
            TcpListener::bind(addr).ok()
        });
    }

    /// Its alerts (`GET /api/v2/alerts`, every state).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let url = format!("{}/api/v2/alerts", self.url());
        let mut response = ureq::get(&url)
            .config()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .call()
            .unwrap();
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
    }

    /// Its alert named `alertname`, if it has one.
    pub fn alert(&self, alertname: &str) -> Option<serde_json::Value> {
        self.alerts()
            .into_iter()
            .find(|a| a["labels"]["alertname"] == alertname)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One notification an Alertmanager POSTed to the webhook.
#[derive(Clone, Debug)]
pub struct Notification {
    /// The path it was posted to: the receiver in config/alertmanager.yml (`on-call`, `team`).
    pub path: String,
    pub body: serde_json::Value,
}

impl Notification {
    /// `firing` or `resolved`.
    pub fn status(&self) -> &str {
        self.body["status"].as_str().unwrap_or_default()
    }

    /// Which Alertmanager sent it.
    pub fn sender(&self) -> &str {
        self.body["externalURL"].as_str().unwrap_or_default()
    }

    pub fn alerts(&self) -> &[serde_json::Value] {
        self.body["alerts"].as_array().map_or(&[], Vec::as_slice)
    }

    /// Whether it tells about alert `alertname` in state `status`.
    pub fn has(&self, alertname: &str, status: &str) -> bool {
        self.alerts()
            .iter()
            .any(|a| a["labels"]["alertname"] == alertname && a["status"] == status)
    }
}

/// The webhook receiver: an HTTP server on its own thread that keeps every POST.
pub struct Webhook {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Notification>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Webhook {
    pub fn start() -> Webhook {
        use axum::extract::{Path, State};
        let received: Arc<Mutex<Vec<Notification>>> = Arc::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let store = received.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = axum::Router::new()
                    .route(
                        "/{receiver}",
                        axum::routing::post(
                            |State(store): State<Arc<Mutex<Vec<Notification>>>>,
                             Path(receiver): Path<String>,
                             body: axum::body::Bytes| async move {
                                let body = serde_json::from_slice(&body).unwrap();
                                store.lock().unwrap().push(Notification {
                                    path: receiver,
                                    body,
                                });
                            },
                        ),
                    )
                    .with_state(store);
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Webhook {
            addr,
            received,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Every notification so far, in arrival order.
    pub fn received(&self) -> Vec<Notification> {
        self.received.lock().unwrap().clone()
    }

    /// Waits for the first notification `want` accepts.
    pub fn wait(
        &self,
        limit: Duration,
        what: &str,
        want: impl Fn(&Notification) -> bool,
    ) -> Notification {
        wait_for(limit, what, || self.received().into_iter().find(&want))
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
