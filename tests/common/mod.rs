//! Shared by the integration tests: the real services started by `scripts/services.sh`, a
//! private PgBouncer a test may kill or stop, the agent binary as a child process, and a reader
//! for what it exports. Nothing here is mocked.

#![allow(dead_code)]

pub mod exposition;
pub mod mdm;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use exposition::Exposition;

/// Credentials `scripts/services.sh` gives its loopback cluster (kept in step with it).
pub const MONITOR_PASSWORD: &str = "monitor-pw-4f1c";
pub const APP_PASSWORD: &str = "mdm-pw-9a27";
pub const PGBOUNCER_PASSWORD: &str = "pgbouncer-pw-7d3e";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// The PostgreSQL port of `scripts/services.sh`; fails the test with the fix if it is not up.
pub fn pg_port() -> u16 {
    let port: u16 = env_or("POOLWATCH_PG_PORT", "55432")
        .parse()
        .expect("POOLWATCH_PG_PORT is a port");
    require_listening(port, "PostgreSQL");
    port
}

/// The shared PgBouncer of `scripts/services.sh`.
pub fn pgbouncer_port() -> u16 {
    let port: u16 = env_or("POOLWATCH_PGBOUNCER_PORT", "56432")
        .parse()
        .expect("POOLWATCH_PGBOUNCER_PORT is a port");
    require_listening(port, "PgBouncer");
    port
}

fn require_listening(port: u16, what: &str) {
    if TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .is_err()
    {
        panic!(
            "{what} is not listening on 127.0.0.1:{port}. Start the test services with \
             `scripts/services.sh start` (or run the whole suite with `scripts/test.sh`)."
        );
    }
}

pub fn monitor_url() -> String {
    format!(
        "postgres://monitor:{MONITOR_PASSWORD}@127.0.0.1:{}/postgres",
        pg_port()
    )
}

/// A direct application connection to PostgreSQL, tagged with `application_name`.
pub fn app_config(application_name: &str) -> tokio_postgres::Config {
    let mut config: tokio_postgres::Config = format!(
        "postgres://mdm:{APP_PASSWORD}@127.0.0.1:{}/mdm_demo",
        pg_port()
    )
    .parse()
    .unwrap();
    config.application_name(application_name);
    config
}

/// Connects and drives the connection on the runtime; the client closes it when dropped.
pub async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Clients that each open a transaction and hold it until released: through PgBouncer in
/// transaction pooling, each holds a server connection or waits for one.
pub struct Holders {
    release: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Holders {
    /// Spawns `n` holders on the current runtime.
    pub fn spawn(config: &tokio_postgres::Config, n: usize) -> Holders {
        let (release, released) = tokio::sync::watch::channel(false);
        let tasks = (0..n)
            .map(|_| {
                let config = config.clone();
                let mut released = released.clone();
                tokio::spawn(async move {
                    let client = connect(&config).await;
                    client.simple_query("BEGIN").await.expect("BEGIN");
                    released.wait_for(|r| *r).await.expect("released");
                    client.simple_query("COMMIT").await.expect("COMMIT");
                })
            })
            .collect();
        Holders { release, tasks }
    }

    /// Lets every holder commit and waits until all have.
    pub async fn release(self) {
        self.release.send_replace(true);
        for task in self.tasks {
            task.await.expect("holder");
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `probe` until it returns `Some`, or fails the test with `what` after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn postgres_ids() -> Option<(u32, u32)> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name("postgres").ok().flatten()?;
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

/// A PgBouncer of the test's own, on its own port, in front of the shared PostgreSQL: one pool
/// `mdm_demo` with the given pool_size and no reserve pool. Killed when dropped.
pub struct PgBouncer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PgBouncer {
    pub fn start(pool_size: u32) -> PgBouncer {
        PgBouncer::with_pools(pool_size, 0)
    }

    /// As [`PgBouncer::start`], plus `extra` databases `mdm_bench_N` (aliases of `mdm_demo`):
    /// each is a pool of its own once a client has used it.
    pub fn with_pools(pool_size: u32, extra: usize) -> PgBouncer {
        let pg = pg_port();
        let aliases: String = (0..extra)
            .map(|i| format!("mdm_bench_{i} = host=127.0.0.1 port={pg} dbname=mdm_demo pool_size={pool_size}\n"))
            .collect();
        let dir = tempfile::Builder::new()
            .prefix("poolwatch-pgbouncer")
            .tempdir()
            .unwrap();
        let port = free_port();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("userlist.txt"),
            format!("\"pgbouncer\" \"{PGBOUNCER_PASSWORD}\"\n\"mdm\" \"{APP_PASSWORD}\"\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pgbouncer.ini"),
            format!(
                "[databases]\n\
                 mdm_demo = host=127.0.0.1 port={pg} dbname=mdm_demo pool_size={pool_size}\n\
                 {aliases}\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = scram-sha-256\nauth_file = {d}/userlist.txt\n\
                 admin_users = pgbouncer\npool_mode = transaction\n\
                 reserve_pool_size = 0\nmax_client_conn = 400\nlogfile = {d}/pgbouncer.log\n"
            ),
        )
        .unwrap();
        if let Some((uid, gid)) = postgres_ids() {
            for entry in ["", "userlist.txt", "pgbouncer.ini"] {
                let path = dir.path().join(entry);
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            }
        }
        let mut bouncer = PgBouncer {
            port,
            dir,
            child: None,
        };
        bouncer.spawn();
        bouncer
    }

    fn spawn(&mut self) {
        let mut command = Command::new("pgbouncer");
        command
            .arg(self.dir.path().join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // PgBouncer refuses to run as root.
        if let Some((uid, gid)) = postgres_ids() {
            command.uid(uid).gid(gid);
        }
        let child = command
            .spawn()
            .expect("pgbouncer is installed (scripts/services.sh start)");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_for(Duration::from_secs(10), "PgBouncer to listen", || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
        });
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    pub fn admin_url(&self) -> String {
        format!(
            "postgres://pgbouncer:{PGBOUNCER_PASSWORD}@127.0.0.1:{}/pgbouncer",
            self.port
        )
    }

    /// An application connection through this PgBouncer to `mdm_demo`.
    pub fn app_config(&self) -> tokio_postgres::Config {
        self.app_config_for("mdm_demo")
    }

    /// An application connection through this PgBouncer to one of its databases.
    pub fn app_config_for(&self, database: &str) -> tokio_postgres::Config {
        format!(
            "postgres://mdm:{APP_PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
        .parse()
        .unwrap()
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGSTOP: the process keeps its socket but answers nothing (a hung target).
    pub fn pause(&self) {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGSTOP).unwrap();
    }

    pub fn resume(&self) {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGCONT).unwrap();
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.resume();
        }
        self.kill();
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_poolwatch")
}

/// The agent binary running `poolwatch run`, its log kept in a file. Killed when dropped.
pub struct Agent {
    pub addr: SocketAddr,
    pub child: Child,
    dir: tempfile::TempDir,
}

impl Agent {
    /// Runs the agent on `config` (YAML; `listen` is set here).
    pub fn start(config: &str) -> Agent {
        Agent::start_logging(config, "debug")
    }

    /// As [`Agent::start`], logging at `level` (benchmarks log less).
    pub fn start_logging(config: &str, level: &str) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("poolwatch.yaml");
        std::fs::write(&path, config).unwrap();
        Agent::start_with(dir, &["run", "--config", path.to_str().unwrap()], level)
    }

    /// Runs `poolwatch run` with these arguments (plus `--listen`).
    pub fn start_args(args: &[&str]) -> Agent {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        Agent::start_with(tempfile::tempdir().unwrap(), &all, "debug")
    }

    /// As [`Agent::start`], run through `wrapper` (e.g. `setpriv` dropping capabilities).
    pub fn start_wrapped(config: &str, wrapper: &[&str]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("poolwatch.yaml");
        std::fs::write(&path, config).unwrap();
        let wrapper = wrapper.join(" ");
        Agent::start_under(
            dir,
            &["run", "--config", path.to_str().unwrap()],
            "debug",
            &wrapper,
        )
    }

    fn start_with(dir: tempfile::TempDir, args: &[&str], level: &str) -> Agent {
        // POOLWATCH_AGENT_WRAPPER runs the agent under a profiler (e.g. valgrind's massif).
        let wrapper = std::env::var("POOLWATCH_AGENT_WRAPPER").unwrap_or_default();
        Agent::start_under(dir, args, level, &wrapper)
    }

    fn start_under(dir: tempfile::TempDir, args: &[&str], level: &str, wrapper: &str) -> Agent {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
        let mut words: Vec<&str> = wrapper.split_whitespace().collect();
        words.push(binary());
        let child = Command::new(words[0])
            .args(&words[1..])
            .args(args)
            .args(["--listen", &addr.to_string()])
            .env("POOLWATCH_LOG", level)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut agent = Agent { addr, child, dir };
        wait_for(
            Duration::from_secs(20),
            "the agent to serve /healthz",
            || {
                if let Ok(Some(status)) = agent.child.try_wait() {
                    panic!("the agent exited with {status}:\n{}", agent.log());
                }
                agent
                    .get("/healthz")
                    .ok()
                    .filter(|(status, _)| *status == 200)
            },
        );
        agent
    }

    /// GET a path: (status, body).
    pub fn get(&self, path: &str) -> Result<(u16, String), ureq::Error> {
        let url = format!("http://{}{}", self.addr, path);
        let mut response = ureq::get(&url)
            .config()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .call()?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string()?;
        Ok((status, body))
    }

    pub fn metrics(&self) -> Exposition {
        let (status, body) = self.get("/metrics").expect("scrape /metrics");
        assert_eq!(status, 200);
        Exposition::parse(&body)
    }

    /// Polls `path` until its body satisfies `probe`; (status, body).
    pub fn wait_for_body(
        &self,
        limit: Duration,
        path: &str,
        mut probe: impl FnMut(&str) -> bool,
    ) -> (u16, String) {
        wait_for(limit, path, || {
            self.get(path).ok().filter(|(_, b)| probe(b))
        })
    }

    /// Polls /metrics until `probe` finds what it wants.
    pub fn wait_metrics<T>(
        &self,
        limit: Duration,
        what: &str,
        mut probe: impl FnMut(&Exposition) -> Option<T>,
    ) -> T {
        wait_for(limit, what, || probe(&self.metrics()))
    }

    pub fn log(&self) -> String {
        let mut text = String::new();
        std::fs::File::open(self.log_path())
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An agent config sampling `targets` (from [`target`]) every `interval`.
pub fn agent_config(interval: &str, timeout: &str, targets: &[String]) -> String {
    format!(
        "sample_interval: {interval}\nsample_timeout: {timeout}\nrate_window: 10s\ntargets:\n{}",
        targets.concat()
    )
}

/// One entry of `targets:`; `extra` holds further keys, one per line.
pub fn target(kind: &str, name: &str, url: &str, extra: &[&str]) -> String {
    let mut out = format!("  - type: {kind}\n    name: {name}\n    url: {url}\n");
    for line in extra {
        out.push_str(&format!("    {line}\n"));
    }
    out
}
