//! `poolwatch.yaml`: the agent's config. The `*Entry` structs are the file format (doc comments
//! state the defaults; unknown keys are rejected); [`Config`] is the checked form the agent runs
//! on. Every problem in a file is reported at once, each with file, line and field.

pub mod alerting;
pub mod args;
pub mod diagnostics;
pub mod otlp;
pub mod receiver;
pub mod targets;
pub mod templates;
pub mod web;

use std::collections::HashSet;
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
pub use targets::{PoolKey, SourceConfig, Target, TargetEntry};
use templates::{POOL_SIZE_ENV, Template};

use crate::advisor::WaitTarget;
use crate::model::{Labels, PoolLimits, SourceKind};

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
    /// How often the rules are evaluated (a rule group's own `interval` wins). Default
    /// `sample_interval`.
    #[serde(default, deserialize_with = "duration")]
    evaluation_interval: Option<Spanned<Duration>>,
    /// History of the exported series kept for the rules. Default `15m`.
    #[serde(default, deserialize_with = "duration")]
    window: Option<Spanned<Duration>>,
    /// Span over which rates (average wait, churn) are computed. Default `1m`.
    #[serde(default, deserialize_with = "duration")]
    rate_window: Option<Spanned<Duration>>,
    /// The p99 wait for a connection the recommended pool_size must keep callers under
    /// (Erlang C). Default `100ms`.
    #[serde(default, deserialize_with = "duration")]
    target_p99_wait: Option<Spanned<Duration>>,
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

/// Pool limits in the spec's terms; any not given come from `template`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsEntry {
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

/// The checked config the agent runs on.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub sample_interval: Duration,
    pub sample_timeout: Duration,
    /// How often rule groups without an `interval` of their own are evaluated.
    pub evaluation_interval: Duration,
    pub window: Duration,
    pub rate_window: Duration,
    /// The p99 wait the recommended pool_size must meet where Erlang C can size a pool.
    pub target_p99_wait: WaitTarget,
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
            template: None,
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

    /// A config made only of `--target TYPE=VALUE` arguments, with every default.
    pub fn from_targets(specs: &[String], env: Env) -> Result<Config, Diagnostics> {
        let mut config = Config::from_yaml(Path::new("(defaults)"), "{}", env)?;
        config.add_targets(specs, env)?;
        Ok(config)
    }

    /// Adds `--target TYPE=VALUE` arguments to this config (see [`SourceConfig::from_argument`]).
    pub fn add_targets(&mut self, specs: &[String], env: Env) -> Result<(), Diagnostics> {
        let mut problems = Vec::new();
        let mut names: HashSet<String> = self.targets.iter().map(|t| t.name.clone()).collect();
        for spec in specs {
            let (kind, value) = match spec.split_once('=') {
                Some((kind, value)) => (kind, Some(value)),
                None => (spec.as_str(), None),
            };
            let Some(kind) = SourceKind::parse(kind) else {
                problems.push(targets::argument_problem(&format!(
                    "unknown type `{kind}`, expected one of {} (TYPE=URL or TYPE=PATH)",
                    targets::known_types()
                )));
                continue;
            };
            let source = match SourceConfig::from_argument(kind, value, env) {
                Ok(source) => source,
                Err(e) => {
                    problems.push(targets::argument_problem(&e));
                    continue;
                }
            };
            let name = unique_name(kind.as_str(), &names);
            names.insert(name.clone());
            let limits = match pool_size_override(PoolLimits::default(), env) {
                Ok(l) => l,
                Err(e) => {
                    problems.push(Diagnostic {
                        origin: "--target".into(),
                        ..e
                    });
                    continue;
                }
            };
            self.targets.push(Target {
                name,
                source,
                labels: Default::default(),
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
pub(crate) fn pool_size_override(limits: PoolLimits, env: Env) -> Result<PoolLimits, Diagnostic> {
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
    /// The file's `pool_templates`, once read.
    template: Option<Template>,
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
        let evaluation_interval = match &file.evaluation_interval {
            Some(e) if e.value < sample_interval => {
                self.problem(e, "evaluation_interval", "must be at least sample_interval");
                sample_interval
            }
            Some(e) => e.value,
            None => sample_interval,
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
        let target_p99_wait = match &file.target_p99_wait {
            Some(t) if t.value.is_zero() => {
                self.problem(t, "target_p99_wait", "must be more than 0");
                WaitTarget::default()
            }
            Some(t) => WaitTarget {
                p99_wait_seconds: t.value.as_secs_f64(),
            },
            None => WaitTarget::default(),
        };
        self.template = file.pool_templates.as_ref().and_then(|p| self.template(p));
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
            .filter_map(|(i, entry)| self.target(i, entry, &mut names))
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
            evaluation_interval,
            window,
            rate_window,
            target_p99_wait,
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
}

/// A field's own name, without the path to it (`password_env` of `targets[0].password_env`).
fn short(field: &str) -> &str {
    field.rsplit('.').next().unwrap_or(field)
}

pub(crate) fn check_label_name(name: &str) -> Result<(), &'static str> {
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
        let SourceConfig::Postgres { connection, .. } = &config.targets[0].source else {
            panic!("a postgres target");
        };
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
        assert_eq!(config.target_p99_wait, WaitTarget::default());
    }

    #[test]
    fn rules_are_evaluated_every_sample_unless_told_less_often() {
        let config =
            Config::from_yaml(Path::new("c.yaml"), "sample_interval: 2s\n", &no_env).unwrap();
        assert_eq!(config.evaluation_interval, Duration::from_secs(2));
        let yaml = "sample_interval: 1s\nevaluation_interval: 15s\n";
        let config = Config::from_yaml(Path::new("c.yaml"), yaml, &no_env).unwrap();
        assert_eq!(config.evaluation_interval, Duration::from_secs(15));
        let yaml = "sample_interval: 10s\nevaluation_interval: 5s\n";
        let bad = Config::from_yaml(Path::new("c.yaml"), yaml, &no_env)
            .unwrap_err()
            .to_string();
        assert!(
            bad.starts_with("c.yaml:2:22: evaluation_interval: must be at least sample_interval"),
            "{bad}"
        );
    }

    #[test]
    fn the_wait_target_is_a_duration_above_zero() {
        let config =
            Config::from_yaml(Path::new("c.yaml"), "target_p99_wait: 250ms\n", &no_env).unwrap();
        assert_eq!(config.target_p99_wait.p99_wait_seconds, 0.25);
        let bad = Config::from_yaml(Path::new("c.yaml"), "target_p99_wait: 0s\n", &no_env)
            .unwrap_err()
            .to_string();
        assert!(
            bad.starts_with("c.yaml:1:18: target_p99_wait: must be more than 0"),
            "{bad}"
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
        let SourceConfig::Pgbouncer { connection } = &config.targets[1].source else {
            panic!("a pgbouncer target");
        };
        assert_eq!(
            connection.driver_config().get_password(),
            Some(&b"from-env"[..])
        );
        let bad = Config::from_targets(&["mysql=x".to_string()], &no_env).unwrap_err();
        assert!(bad.to_string().contains("unknown type `mysql`"), "{bad}");
    }

    #[test]
    fn command_line_file_and_mdm_targets_go_through_the_registry() {
        let specs: Vec<String> = [
            "sqlite=/data/iris.sqlite",
            "duckdb=rel/sales.duckdb",
            "mdm",
            "mdm=",
            "mdm=/srv/mdm",
            "mdm=~/other",
        ]
        .map(String::from)
        .to_vec();
        let env = |name: &str| match name {
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        let config = Config::from_targets(&specs, &env).unwrap();
        let seen: Vec<(String, String)> = config
            .targets
            .iter()
            .map(|t| (t.name.clone(), t.source.endpoint()))
            .collect();
        let want = [
            ("otlp", "otlp (pushed by applications)"),
            ("sqlite", "/data/iris.sqlite"),
            ("duckdb", "rel/sales.duckdb"),
            ("mdm", "/home/u/.mdm"),
            ("mdm-2", "/home/u/.mdm"),
            ("mdm-3", "/srv/mdm"),
            ("mdm-4", "/home/u/other"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()));
        assert_eq!(seen, want);
        let home_dir = |name: &str| match name {
            "MDM_HOME_DIR" => Some("/var/lib/mdm".to_string()),
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        let config = Config::from_targets(&["mdm".to_string()], &home_dir).unwrap();
        assert_eq!(config.targets[1].source.endpoint(), "/var/lib/mdm");
        let bad = Config::from_targets(&["sqlite".to_string()], &no_env).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "--target: target: sqlite needs a PATH: sqlite=…"
        );
    }

    #[test]
    fn file_targets_resolve_paths_and_take_their_template_section() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pools.yaml"),
            "sqlite:\n  pool_size: 5\n  max_overflow: 0\nduckdb:\n  pool_size: 10\n",
        )
        .unwrap();
        let origin = dir.path().join("poolwatch.yaml");
        let text = "pool_templates: pools.yaml\ntargets:\n  - type: sqlite\n    path: data/iris.sqlite\n  - type: duckdb\n    path: /abs/sales.duckdb\n    limits: {max_overflow: 3}\n";
        let config = Config::from_yaml(&origin, text, &no_env).unwrap();
        let SourceConfig::Sqlite { path } = &config.targets[0].source else {
            panic!("sqlite");
        };
        assert_eq!(path, &dir.path().join("data/iris.sqlite"));
        assert_eq!(config.targets[0].limits.max_overflow, Some(0));
        assert_eq!(config.targets[1].source.endpoint(), "/abs/sales.duckdb");
        assert_eq!(
            (
                config.targets[1].limits.pool_size,
                config.targets[1].limits.max_overflow
            ),
            (Some(10), Some(3))
        );
    }
}
