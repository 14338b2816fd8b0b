//! `poolwatch.yaml`: the agent's config. The `*Entry` structs are the file format (doc comments
//! state the defaults; unknown keys are rejected); [`Config`] is the checked form the agent runs
//! on. Every problem in a file is reported at once, each with file, line and field.

pub mod alerting;
pub mod args;
pub mod diagnostics;
pub mod otlp;
pub mod receiver;
pub mod templates;
pub mod web;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

pub use alerting::Alerting;
pub use args::{AlertingArgs, TargetArgs};
pub use diagnostics::{Diagnostic, Diagnostics};
pub use otlp::OtlpConfig;
pub use receiver::ReceiverConfig;
use templates::{POOL_SIZE_ENV, Template};

use crate::model::{Labels, PoolLimits, SourceKind};
use crate::secret::Connection;
use crate::tls::client::TlsSettings;

/// The password a `--target` URL without one takes, as in libpq.
pub const PASSWORD_ENV: &str = "PGPASSWORD";

/// Where the agent serves `/metrics`, `/healthz` and `/api/v1/…` unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9898";
const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_SAMPLE_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);
const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(60);

/// The file format, top level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    /// Address for `/metrics`, `/healthz`, `/api/v1/health`. Default `127.0.0.1:9898`.
    listen: Option<SocketAddr>,
    /// How often every target is sampled. Default `10s`.
    #[serde(default, deserialize_with = "duration")]
    sample_interval: Option<Spanned<Duration>>,
    /// Deadline of one sample; a target slower than this counts as down. Default the smaller of
    /// `5s` and `sample_interval`.
    #[serde(default, deserialize_with = "duration")]
    sample_timeout: Option<Spanned<Duration>>,
    /// History of the exported series kept for the rules. Default `15m`.
    #[serde(default, deserialize_with = "duration")]
    window: Option<Spanned<Duration>>,
    /// Span over which rates (average wait, churn) are computed. Default `1m`.
    #[serde(default, deserialize_with = "duration")]
    rate_window: Option<Spanned<Duration>>,
    /// The spec's pool template (`pool_config_prod.yaml`), relative to this file.
    pool_templates: Option<Spanned<PathBuf>>,
    /// Rule files or directories of them, relative to this file. Default: the shipped rules.
    #[serde(default)]
    rules: Vec<Spanned<PathBuf>>,
    #[serde(default)]
    targets: Vec<TargetEntry>,
    /// exporter-toolkit's web config (TLS, basic auth, headers) for every listener, relative to
    /// this file. Default: none (plain HTTP, no auth).
    web_config_file: Option<Spanned<PathBuf>>,
    /// The OTLP receiver for pools that applications report themselves. On by default.
    otlp_receiver: Option<receiver::ReceiverEntry>,
    /// Alertmanagers (API v2) every firing and resolved alert is sent to: `http://host:9093`,
    /// with the path prefix it serves under, if any. Default: none.
    #[serde(default)]
    alertmanagers: Vec<Spanned<String>>,
    /// Deadline of one request to an Alertmanager. Default `10s`.
    #[serde(default, deserialize_with = "duration")]
    alertmanager_timeout: Option<Spanned<Duration>>,
    /// How often a firing alert is sent again, renewing its lease. Default `1m`.
    #[serde(default, deserialize_with = "duration")]
    alert_resend_delay: Option<Spanned<Duration>>,
    /// The URL on-call reaches the agent at, for each alert's `generatorURL`. Default
    /// `http://<listen>`.
    external_url: Option<Spanned<String>>,
    /// OTLP push; the OpenTelemetry environment fills in what it leaves out.
    otlp: Option<otlp::OtlpEntry>,
}

/// One target in the file format.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetEntry {
    /// `pgbouncer` (the admin console) or `postgres` (the server's `pg_stat_activity`).
    #[serde(rename = "type")]
    kind: Spanned<SourceKind>,
    /// Unique name, the `target` label. Default: the type.
    name: Option<Spanned<String>>,
    /// `postgres://user@host:port/dbname` or `host=… user=…`. Prefer `password_file` or
    /// `password_env` to a password here.
    url: Spanned<String>,
    /// File holding the password (trailing newline ignored), relative to this file.
    password_file: Option<Spanned<PathBuf>>,
    /// Environment variable holding the password.
    password_env: Option<Spanned<String>>,
    /// Extra labels on every series of this target (`dataset`, `role`, …).
    labels: Option<Spanned<BTreeMap<String, String>>>,
    /// postgres only: what makes connections one pool. Default `database`.
    pool_key: Option<Spanned<PoolKey>>,
    /// Pool limits the source cannot see for itself (an application pool's pool_size).
    limits: Option<Spanned<LimitsEntry>>,
    /// TLS to the target, in libpq's terms (sslmode, sslrootcert, sslcert, sslkey); paths
    /// relative to this file.
    tls: Option<Spanned<TlsSettings>>,
}

/// Pool limits in the spec's terms; any not given come from `template`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsEntry {
    /// Section of `pool_templates`: `postgresql`, `sqlite` or `duckdb`. Default `postgresql` for
    /// postgres targets when `pool_templates` is set.
    template: Option<String>,
    pool_size: Option<u64>,
    max_overflow: Option<u64>,
    /// Seconds a caller may wait for a connection.
    timeout: Option<f64>,
    /// Seconds after which the pool recycles a connection (`pool_recycle`).
    recycle: Option<f64>,
}

/// What makes PostgreSQL connections one pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolKey {
    /// `datname`: MDM keeps one database (`mdm_<dataset>`) per dataset.
    Database,
    /// `usename`.
    User,
    /// `application_name`.
    ApplicationName,
}

impl PoolKey {
    /// The `pg_stat_activity` column holding the key.
    pub fn column(self) -> &'static str {
        match self {
            PoolKey::Database => "datname",
            PoolKey::User => "usename",
            PoolKey::ApplicationName => "application_name",
        }
    }
}

/// The checked config the agent runs on.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub sample_interval: Duration,
    pub sample_timeout: Duration,
    pub window: Duration,
    pub rate_window: Duration,
    /// Rule files and directories; empty: the rules shipped in the binary.
    pub rules: Vec<PathBuf>,
    pub targets: Vec<Target>,
    /// exporter-toolkit's web config file for the listeners, if any.
    pub web_config_file: Option<PathBuf>,
    pub otlp_receiver: ReceiverConfig,
    pub alerting: Alerting,
    /// OTLP push, when on (the `otlp` section or `OTEL_METRICS_EXPORTER=otlp`).
    pub otlp: Option<OtlpConfig>,
}

/// One checked target.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub source: SourceConfig,
    pub connection: Connection,
    pub labels: Labels,
    /// Limits from the config (and `MDM_POOL_SIZE`); a source's own figures take precedence.
    pub limits: PoolLimits,
}

/// The registry of sources: adding one is a variant here and a module in `sources/`.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceConfig {
    Pgbouncer,
    Postgres {
        pool_key: PoolKey,
    },
    /// The pools applications push to the OTLP receiver: a built-in target, there whenever the
    /// receiver is enabled.
    Otlp,
}

impl SourceConfig {
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceConfig::Pgbouncer => SourceKind::Pgbouncer,
            SourceConfig::Postgres { .. } => SourceKind::Postgres,
            SourceConfig::Otlp => SourceKind::Otlp,
        }
    }
}

/// The name of the receiver's built-in target (the `target` label of pushed pools).
pub const OTLP_TARGET: &str = "otlp";

/// Reads what the config may take from the environment (passwords, `MDM_POOL_SIZE`); injected so
/// tests do not touch the process environment.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path, env: Env) -> Result<Config, Diagnostics> {
        Config::from_yaml(path, &diagnostics::read_file(path)?, env)
    }

    /// Checks a config given as text; `origin` names it in errors and anchors relative paths.
    pub fn from_yaml(origin: &Path, text: &str, env: Env) -> Result<Config, Diagnostics> {
        let (file, mut problems) = diagnostics::deserialize_all::<FileEntry>(origin, text);
        let mut check = Checker {
            origin,
            base: origin.parent().unwrap_or(Path::new(".")),
            env,
            problems: Vec::new(),
        };
        let config = file.map(|file| check.config(file));
        problems.append(&mut check.problems);
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => {
                problems.sort_by_key(|p| (p.line, p.column));
                Err(Diagnostics(problems))
            }
        }
    }

    /// A config made only of `--target TYPE=URL` arguments, with every default.
    pub fn from_targets(specs: &[String], env: Env) -> Result<Config, Diagnostics> {
        let mut config = Config::from_yaml(Path::new("(defaults)"), "{}", env)?;
        config.add_targets(specs, env)?;
        Ok(config)
    }

    /// Adds `--target TYPE=URL` arguments to this config.
    pub fn add_targets(&mut self, specs: &[String], env: Env) -> Result<(), Diagnostics> {
        let origin = Path::new("--target");
        let mut problems = Vec::new();
        let mut names: HashSet<String> = self.targets.iter().map(|t| t.name.clone()).collect();
        for spec in specs {
            let Some((kind, url)) = spec.split_once('=') else {
                problems.push(arg_problem(
                    "expected TYPE=URL, as in pgbouncer=postgres://…",
                ));
                continue;
            };
            let source = match kind {
                "pgbouncer" => SourceConfig::Pgbouncer,
                "postgres" => SourceConfig::Postgres {
                    pool_key: PoolKey::Database,
                },
                other => {
                    problems.push(arg_problem(&format!(
                        "unknown type `{other}`, expected pgbouncer or postgres"
                    )));
                    continue;
                }
            };
            let mut connection = match Connection::parse(url) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(arg_problem(&e));
                    continue;
                }
            };
            // As libpq does: a URL without a password takes PGPASSWORD, which keeps the
            // password out of the process list.
            if let (false, Some(password)) = (connection.has_password(), env(PASSWORD_ENV)) {
                connection.set_password(&password);
            }
            if let Err(e) = connection.complete_tls(TlsSettings::default(), env) {
                problems.push(arg_problem(&e));
                continue;
            }
            let name = unique_name(kind, &names);
            names.insert(name.clone());
            let limits = match pool_size_override(PoolLimits::default(), env) {
                Ok(l) => l,
                Err(e) => {
                    problems.push(Diagnostic {
                        origin: origin.into(),
                        ..e
                    });
                    continue;
                }
            };
            self.targets.push(Target {
                name,
                source,
                connection,
                labels: Labels::new(),
                limits,
            });
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Diagnostics(problems))
        }
    }
}

fn arg_problem(message: &str) -> Diagnostic {
    Diagnostic {
        origin: "--target".into(),
        line: 0,
        column: 0,
        field: "target".into(),
        message: message.to_string(),
    }
}

fn unique_name(base: &str, taken: &HashSet<String>) -> String {
    if !taken.contains(base) {
        return base.to_string();
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|name| !taken.contains(name))
        .unwrap_or_else(|| base.to_string())
}

/// `MDM_POOL_SIZE`, when set, replaces the configured pool_size (as in the spec's test script).
fn pool_size_override(limits: PoolLimits, env: Env) -> Result<PoolLimits, Diagnostic> {
    let Some(value) = env(POOL_SIZE_ENV) else {
        return Ok(limits);
    };
    match value.trim().parse::<u64>() {
        Ok(size) if size > 0 => Ok(PoolLimits {
            pool_size: Some(size),
            ..limits
        }),
        _ => Err(Diagnostic::environment(
            POOL_SIZE_ENV,
            format!("`{value}` is not a positive pool size"),
        )),
    }
}

/// Semantic checks that serde cannot express, collecting every problem.
struct Checker<'a> {
    origin: &'a Path,
    base: &'a Path,
    env: Env<'a>,
    problems: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn problem<T>(&mut self, at: &Spanned<T>, field: &str, message: impl Into<String>) {
        self.problems
            .push(Diagnostic::at(self.origin, at, field, message));
    }

    fn config(&mut self, file: FileEntry) -> Config {
        let sample_interval = file
            .sample_interval
            .as_ref()
            .map_or(DEFAULT_SAMPLE_INTERVAL, |d| d.value);
        if let Some(d) = &file.sample_interval
            && d.value < Duration::from_millis(100)
        {
            self.problem(d, "sample_interval", "must be at least 100ms");
        }
        let sample_timeout = match &file.sample_timeout {
            Some(t) if t.value > sample_interval => {
                self.problem(t, "sample_timeout", "must not exceed sample_interval");
                t.value
            }
            Some(t) if t.value.is_zero() => {
                self.problem(t, "sample_timeout", "must be more than 0");
                t.value
            }
            Some(t) => t.value,
            None => DEFAULT_SAMPLE_TIMEOUT.min(sample_interval),
        };
        let window = file.window.as_ref().map_or(DEFAULT_WINDOW, |d| d.value);
        let rate_window = file
            .rate_window
            .as_ref()
            .map_or(DEFAULT_RATE_WINDOW, |d| d.value);
        if let Some(r) = &file.rate_window
            && r.value < sample_interval
        {
            self.problem(r, "rate_window", "must be at least sample_interval");
        }
        if let Some(w) = &file.window
            && w.value < rate_window
        {
            self.problem(w, "window", "must be at least rate_window");
        }
        let template = file.pool_templates.as_ref().and_then(|p| self.template(p));
        let rules = file
            .rules
            .iter()
            .filter_map(|r| {
                let path = self.base.join(&r.value);
                if path.exists() {
                    Some(path)
                } else {
                    self.problem(r, "rules", format!("{} does not exist", path.display()));
                    None
                }
            })
            .collect();
        let alerting = self.alerting(alerting::AlertingEntry {
            alertmanagers: file.alertmanagers,
            timeout: file.alertmanager_timeout,
            resend_delay: file.alert_resend_delay,
            external_url: file.external_url,
        });
        let mut names = HashSet::new();
        let mut targets: Vec<Target> = file
            .targets
            .into_iter()
            .enumerate()
            .filter_map(|(i, entry)| self.target(i, entry, template.as_ref(), &mut names))
            .collect();
        let web_config_file = file.web_config_file.as_ref().and_then(|p| {
            let path = self.base.join(&p.value);
            if path.is_file() {
                Some(path)
            } else {
                let message = format!("{} is not a readable file", path.display());
                self.problem(p, "web_config_file", message);
                None
            }
        });
        let otlp_receiver = self.receiver(file.otlp_receiver);
        if otlp_receiver.enabled {
            targets.push(Target {
                name: unique_name(OTLP_TARGET, &names),
                source: SourceConfig::Otlp,
                connection: Connection::none("otlp (pushed by applications)"),
                labels: Labels::new(),
                limits: PoolLimits::default(),
            });
        }
        let (otlp, mut problems) = otlp::check(file.otlp.as_ref(), self.origin, self.env);
        self.problems.append(&mut problems);
        Config {
            web_config_file,
            listen: file
                .listen
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default address is valid")),
            sample_interval,
            sample_timeout,
            window,
            rate_window,
            rules,
            targets,
            otlp_receiver,
            alerting,
            otlp,
        }
    }

    fn template(&mut self, path: &Spanned<PathBuf>) -> Option<Template> {
        let full = self.base.join(&path.value);
        let text = match std::fs::read_to_string(&full) {
            Ok(t) => t,
            Err(e) => {
                self.problem(
                    path,
                    "pool_templates",
                    format!("cannot read {}: {e}", full.display()),
                );
                return None;
            }
        };
        match serde_saphyr::from_str_with_options::<Template>(
            &text,
            serde_saphyr::options! { with_snippet: false },
        ) {
            Ok(t) => Some(t),
            Err(e) => {
                self.problem(
                    path,
                    "pool_templates",
                    format!("{}: {}", full.display(), e.without_snippet()),
                );
                None
            }
        }
    }

    fn target(
        &mut self,
        index: usize,
        entry: TargetEntry,
        template: Option<&Template>,
        names: &mut HashSet<String>,
    ) -> Option<Target> {
        let field = |name: &str| format!("targets[{index}].{name}");
        let kind = entry.kind.value;
        let name = match &entry.name {
            Some(n) if n.value.trim().is_empty() => {
                self.problem(n, &field("name"), "must not be empty");
                return None;
            }
            Some(n) => n.value.clone(),
            None => kind.as_str().to_string(),
        };
        if !names.insert(name.clone()) {
            let at = entry.name.as_ref().unwrap_or(&entry.url);
            self.problem(
                at,
                &field("name"),
                format!("another target is already named `{name}`"),
            );
        }
        let mut connection = match Connection::parse(&entry.url.value) {
            Ok(c) => Some(c),
            Err(e) => {
                self.problem(&entry.url, &field("url"), e);
                None
            }
        };
        let password = self.password(&entry, &field, connection.as_ref());
        if let (Some(c), Some(pw)) = (connection.as_mut(), password) {
            c.set_password(&pw);
        }
        if let Some(c) = connection.as_mut() {
            let configured = entry
                .tls
                .as_ref()
                .map(|t| t.value.clone().relative_to(self.base));
            if let Err(e) = c.complete_tls(configured.unwrap_or_default(), self.env) {
                match &entry.tls {
                    Some(at) => self.problem(at, &field("tls"), e),
                    None => self.problem(&entry.url, &field("url"), e),
                }
            }
        }
        let labels = entry
            .labels
            .as_ref()
            .map(|l| l.value.clone())
            .unwrap_or_default();
        if let Some(at) = &entry.labels {
            for key in labels.keys() {
                if let Err(why) = check_label_name(key) {
                    self.problem(at, &field("labels"), format!("label `{key}` {why}"));
                }
            }
        }
        let source = match kind {
            SourceKind::Pgbouncer => {
                if let Some(k) = &entry.pool_key {
                    self.problem(k, &field("pool_key"), "applies to postgres targets only");
                }
                SourceConfig::Pgbouncer
            }
            SourceKind::Postgres => SourceConfig::Postgres {
                pool_key: entry
                    .pool_key
                    .as_ref()
                    .map_or(PoolKey::Database, |k| k.value),
            },
            // Not a `type` the file format takes: the receiver's target is built in.
            SourceKind::Otlp => return None,
        };
        let limits = self.limits(&entry, &field, kind, template);
        Some(Target {
            name,
            source,
            connection: connection?,
            labels,
            limits: limits?,
        })
    }

    fn password(
        &mut self,
        entry: &TargetEntry,
        field: &dyn Fn(&str) -> String,
        connection: Option<&Connection>,
    ) -> Option<String> {
        let in_url = connection.is_some_and(Connection::has_password);
        if let (true, Some(at)) = (in_url, &entry.password_file) {
            self.problem(
                at,
                &field("password_file"),
                "the url already holds a password",
            );
        }
        if let (true, Some(at)) = (in_url, &entry.password_env) {
            self.problem(
                at,
                &field("password_env"),
                "the url already holds a password",
            );
        }
        self.secret(
            entry.password_file.as_ref(),
            entry.password_env.as_ref(),
            &field("password_file"),
            &field("password_env"),
        )
    }

    /// A secret from a file (relative to the config, trailing newline dropped) or from an
    /// environment variable; giving both, an unreadable file or an unset variable is a problem.
    fn secret(
        &mut self,
        file: Option<&Spanned<PathBuf>>,
        var: Option<&Spanned<String>>,
        file_field: &str,
        var_field: &str,
    ) -> Option<String> {
        match (file, var) {
            (Some(_), Some(var)) => {
                self.problem(
                    var,
                    var_field,
                    format!(
                        "give {} or {}, not both",
                        short(file_field),
                        short(var_field)
                    ),
                );
                None
            }
            (Some(file), None) => {
                let path = self.base.join(&file.value);
                match std::fs::read_to_string(&path) {
                    Ok(secret) => Some(secret.trim_end_matches(['\n', '\r']).to_string()),
                    Err(e) => {
                        self.problem(
                            file,
                            file_field,
                            format!("cannot read {}: {e}", path.display()),
                        );
                        None
                    }
                }
            }
            (None, Some(var)) => {
                let value = (self.env)(&var.value);
                if value.is_none() {
                    self.problem(
                        var,
                        var_field,
                        format!("environment variable `{}` is not set", var.value),
                    );
                }
                value
            }
            (None, None) => None,
        }
    }

    fn limits(
        &mut self,
        entry: &TargetEntry,
        field: &dyn Fn(&str) -> String,
        kind: SourceKind,
        template: Option<&Template>,
    ) -> Option<PoolLimits> {
        let empty = LimitsEntry::default();
        let given = entry.limits.as_ref().map_or(&empty, |l| &l.value);
        let section = given.template.clone().or_else(|| {
            (kind == SourceKind::Postgres && template.is_some()).then(|| "postgresql".into())
        });
        let from_template = match (&section, template) {
            (Some(name), Some(t)) => match t.get(name) {
                Some(s) => s.limits(),
                None => {
                    let message = format!("the pool template has no `{name}` section");
                    match &entry.limits {
                        Some(at) => self.problem(at, &field("limits.template"), message),
                        None => self.problem(&entry.kind, &field("limits.template"), message),
                    }
                    PoolLimits::default()
                }
            },
            (Some(_), None) => {
                if let Some(at) = &entry.limits {
                    self.problem(
                        at,
                        &field("limits.template"),
                        "needs `pool_templates` at the top level",
                    );
                }
                PoolLimits::default()
            }
            (None, _) => PoolLimits::default(),
        };
        let explicit = PoolLimits {
            pool_size: given.pool_size,
            max_overflow: given.max_overflow,
            timeout_seconds: given.timeout,
            recycle_seconds: given.recycle,
            ..PoolLimits::default()
        };
        match pool_size_override(explicit.or(from_template), self.env) {
            Ok(limits) => Some(limits),
            Err(problem) => {
                self.problems.push(problem);
                None
            }
        }
    }
}

/// A field's own name, without the path to it (`password_env` of `targets[0].password_env`).
fn short(field: &str) -> &str {
    field.rsplit('.').next().unwrap_or(field)
}

fn check_label_name(name: &str) -> Result<(), &'static str> {
    const RESERVED: [&str; 4] = [
        "db_client_connection_pool_name",
        "db_client_connection_state",
        "target",
        "source",
    ];
    let mut chars = name.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !valid_start || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("is not a valid Prometheus label name");
    }
    if name.starts_with("__") || RESERVED.contains(&name) {
        return Err("is reserved by poolwatch");
    }
    Ok(())
}

/// `10s`, `1m30s`, `250ms`, or a number of seconds.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Spanned<Duration>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(f64),
        Text(String),
    }
    let raw = Spanned::<Raw>::deserialize(d)?;
    let value = match raw.value {
        Raw::Seconds(s) if s >= 0.0 && s.is_finite() => Duration::from_secs_f64(s),
        Raw::Seconds(s) => {
            return Err(serde::de::Error::custom(format!("`{s}` is not a duration")));
        }
        Raw::Text(t) => humantime::parse_duration(&t).map_err(|_| {
            serde::de::Error::custom(format!("`{t}` is not a duration like 10s or 1m30s"))
        })?,
    };
    Ok(Some(Spanned::new(value, raw.referenced, raw.defined)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_password_file_next_to_the_config_is_read_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("monitor.pass"), "s3cret-from-file\n").unwrap();
        let origin = dir.path().join("poolwatch.yaml");
        let text = "targets:\n  - type: postgres\n    url: postgres://monitor@127.0.0.1:5432/postgres\n    password_file: monitor.pass\n";
        let config = Config::from_yaml(&origin, text, &no_env).unwrap();
        let connection = &config.targets[0].connection;
        assert!(connection.has_password());
        assert_eq!(
            connection.driver_config().get_password(),
            Some(&b"s3cret-from-file"[..])
        );
        assert!(!format!("{connection} {connection:?} {:?}", config.targets[0]).contains("s3cret"));
    }

    #[test]
    fn a_missing_password_file_and_two_passwords_are_located() {
        let text = "targets:\n  - type: postgres\n    url: postgres://monitor:pw@127.0.0.1:5432/postgres\n    password_file: nowhere.pass\n";
        let problems = Config::from_yaml(Path::new("/tmp/p.yaml"), text, &no_env).unwrap_err();
        let lines: Vec<String> = problems.0.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with(
                "/tmp/p.yaml:4:20: targets[0].password_file: the url already holds a password"
            ),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with(
                "/tmp/p.yaml:4:20: targets[0].password_file: cannot read /tmp/nowhere.pass"
            ),
            "{lines:?}"
        );
    }

    #[test]
    fn defaults_apply_and_the_timeout_follows_a_short_interval() {
        let config =
            Config::from_yaml(Path::new("c.yaml"), "sample_interval: 2s\n", &no_env).unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.sample_timeout, Duration::from_secs(2));
        assert_eq!(
            (config.window, config.rate_window),
            (DEFAULT_WINDOW, DEFAULT_RATE_WINDOW)
        );
    }

    #[test]
    fn command_line_targets_get_unique_names() {
        let specs = vec![
            "pgbouncer=postgres://pgbouncer@127.0.0.1:6432/pgbouncer".to_string(),
            "pgbouncer=postgres://pgbouncer@127.0.0.1:6433/pgbouncer".to_string(),
            "postgres=postgres://monitor@127.0.0.1:5432/postgres".to_string(),
        ];
        let config = Config::from_targets(&specs, &no_env).unwrap();
        let names: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
        // The receiver's built-in target comes with the defaults.
        assert_eq!(names, vec!["otlp", "pgbouncer", "pgbouncer-2", "postgres"]);
        let pgpassword = |name: &str| (name == PASSWORD_ENV).then(|| "from-env".to_string());
        let config = Config::from_targets(&specs, &pgpassword).unwrap();
        let password = config.targets[1].connection.driver_config().get_password();
        assert_eq!(password, Some(&b"from-env"[..]));
        let bad = Config::from_targets(&["mysql=x".to_string()], &no_env).unwrap_err();
        assert!(bad.to_string().contains("unknown type `mysql`"), "{bad}");
    }
}
