//! `poolwatch.yaml`: the agent's config. The `*Entry` structs are the file format (doc comments
//! state the defaults; unknown keys are rejected); [`Config`] is the checked form the agent runs
//! on. Every problem in a file is reported at once, each with file, line and field.

pub mod args;
pub mod diagnostics;
pub mod targets;
pub mod templates;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

pub use args::TargetArgs;
pub use diagnostics::{Diagnostic, Diagnostics};
pub use targets::{PoolKey, SourceConfig, Target, TargetEntry};
use templates::{POOL_SIZE_ENV, Template};

use crate::model::{PoolLimits, SourceKind};

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
    pub window: Duration,
    pub rate_window: Duration,
    /// Rule files and directories; empty: the rules shipped in the binary.
    pub rules: Vec<PathBuf>,
    pub targets: Vec<Target>,
}

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
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![Diagnostic {
                origin: path.to_path_buf(),
                line: 0,
                column: 0,
                field: "(file)".into(),
                message: format!("cannot read: {e}"),
            }])
        })?;
        Config::from_yaml(path, &text, env)
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
        _ => Err(Diagnostic {
            origin: "(environment)".into(),
            line: 0,
            column: 0,
            field: POOL_SIZE_ENV.into(),
            message: format!("`{value}` is not a positive pool size"),
        }),
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
        self.problems.push(Diagnostic {
            origin: self.origin.to_path_buf(),
            line: at.referenced.line(),
            column: at.referenced.column(),
            field: field.to_string(),
            message: message.into(),
        });
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
        let mut names = HashSet::new();
        let targets = file
            .targets
            .into_iter()
            .enumerate()
            .filter_map(|(i, entry)| self.target(i, entry, &mut names))
            .collect();
        Config {
            listen: file
                .listen
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default address is valid")),
            sample_interval,
            sample_timeout,
            window,
            rate_window,
            rules,
            targets,
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
        assert_eq!(names, vec!["pgbouncer", "pgbouncer-2", "postgres"]);
        let pgpassword = |name: &str| (name == PASSWORD_ENV).then(|| "from-env".to_string());
        let config = Config::from_targets(&specs, &pgpassword).unwrap();
        let SourceConfig::Pgbouncer { connection } = &config.targets[0].source else {
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
        assert_eq!(config.targets[0].source.endpoint(), "/var/lib/mdm");
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
