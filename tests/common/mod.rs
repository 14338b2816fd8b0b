//! Shared by the integration tests: the real services started by `scripts/services.sh`, a
//! private PgBouncer a test may kill or stop, the agent binary as a child process, and a reader
//! for what it exports. Nothing here is mocked.

#![allow(dead_code)]

pub mod alertmanager;
pub mod benchmark;
pub mod exposition;
pub mod healthy_load;
pub mod mdm;
pub mod otlp;
pub mod prometheus;
pub mod tls;

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

/// Resident and peak resident memory in MiB, from /proc/PID/status.
pub fn memory_mib(pid: u32) -> (f64, f64) {
    let status = proc_status_mib(pid);
    (status("VmRSS:"), status("VmHWM:"))
}

/// A process's resident memory by kind, MiB: mapped from files (its code and read-only data)
/// and anonymous (heap, stacks, data written since start).
pub fn rss_split_mib(pid: u32) -> (f64, f64) {
    let status = proc_status_mib(pid);
    (status("RssFile:"), status("RssAnon:"))
}

/// Reads a process's `/proc/PID/status` once; the closure gives a field of it in MiB.
fn proc_status_mib(pid: u32) -> impl Fn(&str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    move |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
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
        PgBouncer::in_front_of(pg_port(), "mdm_demo", pool_size, extra)
    }

    /// As [`PgBouncer::with_pools`], with further `[pgbouncer]` settings (name, value).
    pub fn with_pools_and(pool_size: u32, extra: usize, settings: &[(&str, &str)]) -> PgBouncer {
        PgBouncer::configured(pg_port(), "mdm_demo", pool_size, extra, settings)
    }

    /// A PgBouncer in front of the PostgreSQL on `pg`, pooling `database` (and `extra` aliases
    /// of it) with `pool_size` server connections each.
    pub fn in_front_of(pg: u16, database: &str, pool_size: u32, extra: usize) -> PgBouncer {
        PgBouncer::configured(pg, database, pool_size, extra, &[])
    }

    fn configured(
        pg: u16,
        database: &str,
        pool_size: u32,
        extra: usize,
        settings: &[(&str, &str)],
    ) -> PgBouncer {
        let aliases: String = (0..extra)
            .map(|i| format!("mdm_bench_{i} = host=127.0.0.1 port={pg} dbname={database} pool_size={pool_size}\n"))
            .collect();
        let settings: String = settings
            .iter()
            .map(|(name, value)| format!("{name} = {value}\n"))
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
                 {database} = host=127.0.0.1 port={pg} dbname={database} pool_size={pool_size}\n\
                 {aliases}\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = scram-sha-256\nauth_file = {d}/userlist.txt\n\
                 admin_users = pgbouncer\npool_mode = transaction\n\
                 reserve_pool_size = 0\nmax_client_conn = 400\nlogfile = {d}/pgbouncer.log\n\
                 {settings}"
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

    pub fn pid(&self) -> nix::unistd::Pid {
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

    /// Gives `mdm_demo` a new pool_size and has PgBouncer reload its config (SIGHUP), as an
    /// operator following a recommendation would.
    pub fn set_pool_size(&self, pool_size: u32) {
        let ini = self.dir.path().join("pgbouncer.ini");
        let text = std::fs::read_to_string(&ini).unwrap();
        let text: String = text
            .lines()
            .map(|line| match line.strip_prefix("mdm_demo = ") {
                Some(rest) => {
                    let (before, _) = rest.split_once(" pool_size=").expect("pool_size");
                    format!("mdm_demo = {before} pool_size={pool_size}\n")
                }
                None => format!("{line}\n"),
            })
            .collect();
        std::fs::write(&ini, text).unwrap();
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGHUP).unwrap();
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

/// A PostgreSQL cluster of the test's own (initdb in a temporary directory, its own port), so
/// that what other tests do to the shared cluster cannot show in what this test watches. Roles
/// `monitor` (pg_monitor) and `mdm`, and `database` owned by `mdm`; local trust authentication.
/// Stopped when dropped.
pub struct Postgres {
    pub port: u16,
    dir: tempfile::TempDir,
}

/// TLS on a private cluster: the server's certificate, and the CA whose client certificates
/// the role `certuser` must log in with (`hostssl … cert`).
pub struct ServerTls<'a> {
    pub server: &'a tls::Issued,
    pub client_ca: &'a Path,
}

impl Postgres {
    pub fn start(database: &str) -> Postgres {
        Postgres::start_with(database, None, &[("max_connections", "100")])
    }

    /// As [`Postgres::start`], with `ssl = on`.
    pub fn with_tls(database: &str, tls: &ServerTls) -> Postgres {
        Postgres::start_with(database, Some(tls), &[("max_connections", "100")])
    }

    /// As [`Postgres::start`], with the spec's `POSTGRES_SERVER_TUNING`: a server the settings
    /// audit has nothing to say about. shared_buffers is mapped, not touched, so its 4 GB cost
    /// only what the test writes.
    pub fn tuned_as_the_spec(database: &str) -> Postgres {
        Postgres::start_with(
            database,
            None,
            &[
                ("max_connections", "200"),
                ("shared_buffers", "4GB"),
                ("effective_cache_size", "12GB"),
                ("maintenance_work_mem", "1GB"),
                ("work_mem", "32MB"),
                ("wal_buffers", "16MB"),
                ("checkpoint_completion_target", "0.9"),
                ("random_page_cost", "1.1"),
            ],
        )
    }

    fn start_with(database: &str, tls: Option<&ServerTls>, settings: &[(&str, &str)]) -> Postgres {
        let bin = PathBuf::from(
            std::env::var("POOLWATCH_PG_BIN")
                .expect("POOLWATCH_PG_BIN is set (eval \"$(scripts/services.sh env)\")"),
        );
        let dir = tempfile::Builder::new()
            .prefix("poolwatch-postgres")
            .tempdir()
            .unwrap();
        if let Some((uid, gid)) = postgres_ids() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let port = free_port();
        let run = |program: &str, args: &[&str]| {
            let mut command = Command::new(bin.join(program));
            command
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            if let Some((uid, gid)) = postgres_ids() {
                command.uid(uid).gid(gid);
            }
            let out = command.output().unwrap();
            assert!(
                out.status.success(),
                "{program} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let data_arg = data.to_str().unwrap();
        run(
            "initdb",
            &[
                "-D",
                data_arg,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let mut options = format!(
            "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c fsync=off",
            dir.path().display()
        );
        for (name, value) in settings {
            options.push_str(&format!(" -c {name}={value}"));
        }
        if let Some(tls) = tls {
            // The server reads its key only if the postgres user owns it, mode 0600.
            let copy = |from: &Path, name: &str| {
                let to = dir.path().join(name);
                std::fs::copy(from, &to).unwrap();
                std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                    .unwrap();
                if let Some((uid, gid)) = postgres_ids() {
                    std::os::unix::fs::chown(&to, Some(uid), Some(gid)).unwrap();
                }
                to.display().to_string()
            };
            let (cert, key) = (
                copy(&tls.server.cert, "server.crt"),
                copy(&tls.server.key, "server.key"),
            );
            let ca = copy(tls.client_ca, "client-ca.crt");
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key} -c ssl_ca_file={ca}"
            ));
            let hba = data.join("pg_hba.conf");
            let rest = std::fs::read_to_string(&hba).unwrap();
            std::fs::write(
                &hba,
                format!("hostssl all certuser 127.0.0.1/32 cert\n{rest}"),
            )
            .unwrap();
        }
        let log = dir.path().join("postgres.log");
        run(
            "pg_ctl",
            &[
                "-D",
                data_arg,
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        let postgres = Postgres { port, dir };
        let host = postgres.dir.path().to_str().unwrap().to_string();
        let port_arg = port.to_string();
        let create = format!("CREATE DATABASE {database} OWNER mdm");
        // One -c each: CREATE DATABASE cannot share a transaction with the rest.
        run(
            "psql",
            &[
                "-h",
                &host,
                "-p",
                &port_arg,
                "-U",
                "postgres",
                "-qAt",
                "-c",
                "CREATE ROLE monitor LOGIN",
                "-c",
                "GRANT pg_monitor TO monitor",
                "-c",
                "CREATE ROLE mdm LOGIN",
                "-c",
                "CREATE ROLE certuser LOGIN IN ROLE pg_monitor",
                "-c",
                &create,
            ],
        );
        postgres
    }

    /// The monitoring role's URL (trust authentication: no password).
    pub fn monitor_url(&self) -> String {
        format!("postgres://monitor@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs `sql` as the superuser over the Unix socket; the rows as psql's unaligned output.
    pub fn query(&self, sql: &str) -> String {
        let bin = PathBuf::from(std::env::var("POOLWATCH_PG_BIN").unwrap());
        let mut command = Command::new(bin.join("psql"));
        command
            .args(["-h", self.dir.path().to_str().unwrap()])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-qAt",
                "-c",
                sql,
            ]);
        if let Some((uid, gid)) = postgres_ids() {
            command.uid(uid).gid(gid);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let Ok(bin) = std::env::var("POOLWATCH_PG_BIN") else {
            return;
        };
        let mut command = Command::new(PathBuf::from(bin).join("pg_ctl"));
        command
            .args(["-D", self.dir.path().join("data").to_str().unwrap()])
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = postgres_ids() {
            command.uid(uid).gid(gid);
        }
        let _ = command.status();
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_poolwatch")
}

/// `poolwatch validate --config PATH`: its exit code and what it wrote on stderr.
pub fn validate(path: &Path) -> (Option<i32>, String) {
    let out = Command::new(binary())
        .args(["validate", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr)
}

/// The shared PgBouncer's admin console as a `--target` argument, password included.
pub fn pgbouncer_target() -> String {
    format!(
        "pgbouncer=postgres://pgbouncer:{PGBOUNCER_PASSWORD}@127.0.0.1:{}/pgbouncer",
        pgbouncer_port()
    )
}

/// The agent binary running `poolwatch run`, its log kept in a file. Killed when dropped.
pub struct Agent {
    pub addr: SocketAddr,
    pub child: Child,
    dir: tempfile::TempDir,
    /// How `get` reaches the agent (TLS, credentials).
    pub access: tls::Access,
}

impl Agent {
    /// Runs the agent on `config` (YAML; `listen` is set here).
    pub fn start(config: &str) -> Agent {
        Agent::start_logging(config, "debug")
    }

    /// As [`Agent::start`], logging at `level` (benchmarks log less).
    pub fn start_logging(config: &str, level: &str) -> Agent {
        Agent::start_env(config, level, &[])
    }

    /// As [`Agent::start_logging`], with these variables in the agent's environment.
    pub fn start_env(config: &str, level: &str, env: &[(&str, &str)]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("poolwatch.yaml");
        std::fs::write(&path, config).unwrap();
        let args = ["run", "--config", path.to_str().unwrap()];
        Agent::start_with(dir, &args, level, tls::Access::default(), env)
    }

    /// Runs `poolwatch run` with these arguments (plus `--listen`).
    pub fn start_args(args: &[&str]) -> Agent {
        Agent::start_secured(args, tls::Access::default())
    }

    /// As [`Agent::start_args`], for an agent reached through `access` (its web config).
    pub fn start_secured(args: &[&str], access: tls::Access) -> Agent {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        Agent::start_with(tempfile::tempdir().unwrap(), &all, "debug", access, &[])
    }

    /// As [`Agent::start`], run through `wrapper` (e.g. `setpriv` dropping capabilities).
    pub fn start_wrapped(config: &str, wrapper: &[&str]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("poolwatch.yaml");
        std::fs::write(&path, config).unwrap();
        let args = ["run", "--config", path.to_str().unwrap()];
        Agent::launch(
            dir,
            &args,
            "debug",
            tls::Access::default(),
            &[],
            &wrapper.join(" "),
        )
    }

    fn start_with(
        dir: tempfile::TempDir,
        args: &[&str],
        level: &str,
        access: tls::Access,
        env: &[(&str, &str)],
    ) -> Agent {
        // POOLWATCH_AGENT_WRAPPER runs the agent under a profiler (e.g. valgrind's massif).
        let wrapper = std::env::var("POOLWATCH_AGENT_WRAPPER").unwrap_or_default();
        Agent::launch(dir, args, level, access, env, &wrapper)
    }

    fn launch(
        dir: tempfile::TempDir,
        args: &[&str],
        level: &str,
        access: tls::Access,
        env: &[(&str, &str)],
        wrapper: &str,
    ) -> Agent {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
        let mut words: Vec<&str> = wrapper.split_whitespace().collect();
        words.push(binary());
        let child = Command::new(words[0])
            .args(&words[1..])
            .args(args)
            .args(["--listen", &addr.to_string()])
            .env("POOLWATCH_LOG", level)
            .envs(env.iter().copied())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut agent = Agent {
            addr,
            child,
            dir,
            access,
        };
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
        let (status, _, body) = self.access.get(self.addr, path)?;
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

/// The shipped health rules (rules/pool-health.yaml) with `for` and `keep_firing_for` short
/// enough for a test, written under `dir`; returns the rules directory.
pub fn quick_health_rules(dir: &Path) -> PathBuf {
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules/pool-health.yaml");
    let text = std::fs::read_to_string(shipped)
        .unwrap()
        .replace("for: 1m", "for: 2s")
        .replace("keep_firing_for: 2m", "keep_firing_for: 1s");
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("pool-health.yaml"), text).unwrap();
    rules
}

/// The project's Python (scripts/python-env.sh) with the SQLAlchemy integration installed.
pub fn python() -> String {
    std::env::var("POOLWATCH_PYTHON").unwrap_or_else(|_| {
        panic!(
            "POOLWATCH_PYTHON is not set: run the suite with scripts/test.sh, or \
             export POOLWATCH_PYTHON=$(scripts/python-env.sh)"
        )
    })
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

static LOAD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Held by the tests that put load on the machine (benchmarks), so that they never run beside
/// one another: a test that measures waits would otherwise measure the other's CPU use.
pub fn exclusive_load() -> std::sync::MutexGuard<'static, ()> {
    LOAD.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
