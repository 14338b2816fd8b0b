//! The target registry: every `type` of target is one variant of [`SourceEntry`] (the keys it
//! takes in the file, unknown ones rejected) and of [`SourceConfig`] (its checked form), and one
//! module in `sources/`. `--target TYPE=…` arguments go through the same registry.
//!
//! serde's internally tagged enums buffer the whole mapping before they know the variant, which
//! loses every line number below it. A target therefore states its `type` first; the keys after
//! it are read straight into that type's struct, so each mistake keeps its line and column.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::value::{BorrowedStrDeserializer, MapAccessDeserializer};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

use super::diagnostics::Diagnostic;
use super::{Checker, Env, LimitsEntry, PASSWORD_ENV, pool_size_override};
use crate::model::{Labels, PoolLimits, SourceKind};
use crate::secret::Connection;
use crate::sources::inprocess::InProcessPools;
use crate::tls::client::TlsSettings;

/// Where MDM keeps its files unless `MDM_HOME_DIR` says otherwise: `~/.mdm`.
pub const MDM_HOME_ENV: &str = "MDM_HOME_DIR";

/// One target in the file format: its `type` (first) and that type's keys.
#[derive(Debug)]
pub struct TargetEntry {
    pub kind: Spanned<SourceKind>,
    pub keys: SourceEntry,
}

/// The keys of each type of target.
#[derive(Debug)]
pub enum SourceEntry {
    /// PgBouncer's admin console.
    Pgbouncer(PgbouncerEntry),
    /// The PostgreSQL server's `pg_stat_activity`.
    Postgres(PostgresEntry),
    /// A SQLite database file.
    Sqlite(DatabaseFileEntry),
    /// A DuckDB database file.
    Duckdb(DatabaseFileEntry),
    /// An MDM home: one pool per dataset it registers.
    Mdm(MdmEntry),
}

/// `type: pgbouncer`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgbouncerEntry {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    /// Unique name, the `target` label. Default: the type.
    name: Option<Spanned<String>>,
    /// `postgres://user@host:port/pgbouncer` or `host=… user=…`.
    url: Spanned<String>,
    /// File holding the password (trailing newline ignored), relative to the config file.
    password_file: Option<Spanned<PathBuf>>,
    /// Environment variable holding the password.
    password_env: Option<Spanned<String>>,
    /// Extra labels on every series of this target (`dataset`, `role`, …).
    labels: Option<Spanned<BTreeMap<String, String>>>,
    /// Limits PgBouncer does not show (it shows its own pool_size and reserve_pool).
    limits: Option<Spanned<LimitsEntry>>,
    /// TLS to the target, in libpq's terms (sslmode, sslrootcert, sslcert, sslkey); paths
    /// relative to the config file.
    tls: Option<Spanned<TlsSettings>>,
}

/// `type: postgres`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresEntry {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    name: Option<Spanned<String>>,
    /// `postgres://user@host:port/dbname` or `host=… user=…`.
    url: Spanned<String>,
    password_file: Option<Spanned<PathBuf>>,
    password_env: Option<Spanned<String>>,
    labels: Option<Spanned<BTreeMap<String, String>>>,
    /// What makes connections one pool. Default `database`.
    pool_key: Option<Spanned<PoolKey>>,
    /// Limits of the application pools, which the server cannot see. Default: the
    /// `postgresql` section of `pool_templates`.
    limits: Option<Spanned<LimitsEntry>>,
    /// TLS to the server, as for `pgbouncer`.
    tls: Option<Spanned<TlsSettings>>,
}

/// `type: sqlite` and `type: duckdb`: one database file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseFileEntry {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    name: Option<Spanned<String>>,
    /// The database file, relative to the config file.
    path: Spanned<PathBuf>,
    labels: Option<Spanned<BTreeMap<String, String>>>,
    /// Limits of the application's pool on the file. Default: the `sqlite` or `duckdb` section
    /// of `pool_templates`.
    limits: Option<Spanned<LimitsEntry>>,
}

/// `type: mdm`: every dataset of an MDM home.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MdmEntry {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    name: Option<Spanned<String>>,
    /// The MDM home, relative to the config file. Default `$MDM_HOME_DIR`, else `~/.mdm`.
    home: Option<Spanned<PathBuf>>,
    labels: Option<Spanned<BTreeMap<String, String>>>,
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

/// One checked target.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub source: SourceConfig,
    pub labels: Labels,
    /// Limits from the config (and `MDM_POOL_SIZE`); a source's own figures take precedence.
    pub limits: PoolLimits,
}

/// The checked form of each type of target: what its source is built from.
#[derive(Clone, Debug)]
pub enum SourceConfig {
    Pgbouncer {
        connection: Connection,
    },
    Postgres {
        connection: Connection,
        pool_key: PoolKey,
    },
    Sqlite {
        path: PathBuf,
    },
    Duckdb {
        path: PathBuf,
    },
    Mdm {
        home: PathBuf,
    },
    /// The pools applications push to the OTLP receiver: a built-in target, there whenever the
    /// receiver is enabled; not a `type` the file or `--target` takes.
    Otlp,
    /// Pools in the agent's own process (`poolwatch demo`'s), on a `kind` of database at
    /// `endpoint`; built by code, never named by the file or `--target`.
    InProcess {
        kind: SourceKind,
        endpoint: String,
        pools: Arc<dyn InProcessPools>,
    },
}

impl SourceConfig {
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceConfig::Pgbouncer { .. } => SourceKind::Pgbouncer,
            SourceConfig::Postgres { .. } => SourceKind::Postgres,
            SourceConfig::Sqlite { .. } => SourceKind::Sqlite,
            SourceConfig::Duckdb { .. } => SourceKind::Duckdb,
            SourceConfig::Mdm { .. } => SourceKind::Mdm,
            SourceConfig::Otlp => SourceKind::Otlp,
            SourceConfig::InProcess { kind, .. } => *kind,
        }
    }

    /// What the target watches, fit to show: a URL without its password, or a path.
    pub fn endpoint(&self) -> String {
        match self {
            SourceConfig::Pgbouncer { connection } | SourceConfig::Postgres { connection, .. } => {
                connection.endpoint().to_string()
            }
            SourceConfig::Sqlite { path }
            | SourceConfig::Duckdb { path }
            | SourceConfig::Mdm { home: path } => path.display().to_string(),
            SourceConfig::Otlp => "otlp (pushed by applications)".to_string(),
            SourceConfig::InProcess { endpoint, .. } => endpoint.clone(),
        }
    }

    /// The section of `pool_templates` a target of this type takes its limits from unless its
    /// `limits.template` names another.
    fn default_template(kind: SourceKind) -> Option<&'static str> {
        match kind {
            SourceKind::Postgres => Some("postgresql"),
            SourceKind::Sqlite => Some("sqlite"),
            SourceKind::Duckdb => Some("duckdb"),
            SourceKind::Pgbouncer | SourceKind::Mdm | SourceKind::Otlp => None,
        }
    }

    /// A `--target TYPE=VALUE` argument: a URL for the servers, a path for the files, an MDM
    /// home (optional) for `mdm`. A URL without a password takes `PGPASSWORD`, as libpq does.
    pub fn from_argument(
        kind: SourceKind,
        value: Option<&str>,
        env: Env,
    ) -> Result<SourceConfig, String> {
        let required = |what: &str| {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{kind} needs a {what}: {kind}=…"))
        };
        let connection = |value: &str| {
            let mut connection = Connection::parse(value)?;
            // As libpq does: a URL without a password takes PGPASSWORD, which keeps the
            // password out of the process list.
            if let (false, Some(password)) = (connection.has_password(), env(PASSWORD_ENV)) {
                connection.set_password(&password);
            }
            // sslmode and the rest from the URL, then PGSSLMODE and the like.
            connection.complete_tls(TlsSettings::default(), env)?;
            Ok::<_, String>(connection)
        };
        Ok(match kind {
            SourceKind::Pgbouncer => SourceConfig::Pgbouncer {
                connection: connection(required("URL")?)?,
            },
            SourceKind::Postgres => SourceConfig::Postgres {
                connection: connection(required("URL")?)?,
                pool_key: PoolKey::Database,
            },
            SourceKind::Sqlite => SourceConfig::Sqlite {
                path: PathBuf::from(required("PATH")?),
            },
            SourceKind::Duckdb => SourceConfig::Duckdb {
                path: PathBuf::from(required("PATH")?),
            },
            SourceKind::Mdm => SourceConfig::Mdm {
                home: match value.filter(|v| !v.is_empty()) {
                    Some(home) => expand_home(Path::new(home), env),
                    None => default_mdm_home(env),
                },
            },
            SourceKind::Otlp => return Err(built_in_otlp()),
        })
    }
}

/// `$MDM_HOME_DIR`, else `~/.mdm`, as MDM itself decides.
pub fn default_mdm_home(env: Env) -> PathBuf {
    match env(MDM_HOME_ENV).filter(|h| !h.is_empty()) {
        Some(home) => expand_home(Path::new(&home), env),
        None => expand_home(Path::new("~/.mdm"), env),
    }
}

/// `~/x` → `$HOME/x`.
fn expand_home(path: &Path, env: Env) -> PathBuf {
    match (path.strip_prefix("~"), env("HOME")) {
        (Ok(rest), Some(home)) => Path::new(&home).join(rest),
        _ => path.to_path_buf(),
    }
}

impl<'de> Deserialize<'de> for TargetEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EntryVisitor)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = TargetEntry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a target: `type` first, then the keys of that type")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TargetEntry, A::Error> {
        match map.next_key::<String>()? {
            Some(key) if key == "type" => {}
            Some(first) => {
                // Said at the `type` that comes later, or as a missing `type` (which the
                // diagnostics drop when they blanked a bad `type` themselves).
                map.next_value::<IgnoredAny>()?;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "type" {
                        return Err(de::Error::custom(format!(
                            "`type` must come first in a target, before `{first}`: it decides \
                             which keys the target takes"
                        )));
                    }
                    map.next_value::<IgnoredAny>()?;
                }
                return Err(de::Error::missing_field("type"));
            }
            None => return Err(de::Error::missing_field("type")),
        }
        let kind: Spanned<SourceKind> = map.next_value()?;
        let name = kind.value.as_str();
        let keys = match kind.value {
            SourceKind::Pgbouncer => SourceEntry::Pgbouncer(rest(name, &mut map)?),
            SourceKind::Postgres => SourceEntry::Postgres(rest(name, &mut map)?),
            SourceKind::Sqlite => SourceEntry::Sqlite(rest(name, &mut map)?),
            SourceKind::Duckdb => SourceEntry::Duckdb(rest(name, &mut map)?),
            SourceKind::Mdm => SourceEntry::Mdm(rest(name, &mut map)?),
            SourceKind::Otlp => return Err(de::Error::custom(built_in_otlp())),
        };
        Ok(TargetEntry { kind, keys })
    }
}

/// Reads the keys after `type` into the struct of that type.
fn rest<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    kind: &'static str,
    map: &mut A,
) -> Result<T, A::Error> {
    T::deserialize(MapAccessDeserializer::new(ReplayType {
        kind: Some(kind),
        map,
    }))
}

/// The rest of a target's mapping, with the `type` already read handed over again first, so
/// each type's struct declares `type` among its keys (and a second `type` is a duplicate).
struct ReplayType<'m, A> {
    kind: Option<&'static str>,
    map: &'m mut A,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for ReplayType<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if self.kind.is_some() {
            return seed
                .deserialize(BorrowedStrDeserializer::new("type"))
                .map(Some);
        }
        self.map.next_key_seed(seed)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        match self.kind.take() {
            Some(kind) => seed.deserialize(BorrowedStrDeserializer::new(kind)),
            None => self.map.next_value_seed(seed),
        }
    }
}

/// Why `otlp` is no type to write: its target is built in.
fn built_in_otlp() -> String {
    "otlp is built in (the receiver's target, on unless otlp_receiver.enabled is false); it is \
     not a type to give"
        .to_string()
}

/// The keys every server target has.
struct ServerKeys<'a> {
    url: &'a Spanned<String>,
    password_file: Option<&'a Spanned<PathBuf>>,
    password_env: Option<&'a Spanned<String>>,
    tls: Option<&'a Spanned<TlsSettings>>,
}

impl SourceEntry {
    fn name(&self) -> Option<&Spanned<String>> {
        match self {
            SourceEntry::Pgbouncer(e) => e.name.as_ref(),
            SourceEntry::Postgres(e) => e.name.as_ref(),
            SourceEntry::Sqlite(e) | SourceEntry::Duckdb(e) => e.name.as_ref(),
            SourceEntry::Mdm(e) => e.name.as_ref(),
        }
    }

    fn labels(&self) -> Option<&Spanned<BTreeMap<String, String>>> {
        match self {
            SourceEntry::Pgbouncer(e) => e.labels.as_ref(),
            SourceEntry::Postgres(e) => e.labels.as_ref(),
            SourceEntry::Sqlite(e) | SourceEntry::Duckdb(e) => e.labels.as_ref(),
            SourceEntry::Mdm(e) => e.labels.as_ref(),
        }
    }

    fn limits(&self) -> Option<&Spanned<LimitsEntry>> {
        match self {
            SourceEntry::Pgbouncer(e) => e.limits.as_ref(),
            SourceEntry::Postgres(e) => e.limits.as_ref(),
            SourceEntry::Sqlite(e) | SourceEntry::Duckdb(e) => e.limits.as_ref(),
            SourceEntry::Mdm(_) => None,
        }
    }
}

impl Checker<'_> {
    /// Checks one target, collecting every problem; `None` if it cannot run.
    pub(super) fn target(
        &mut self,
        index: usize,
        entry: TargetEntry,
        names: &mut std::collections::HashSet<String>,
    ) -> Option<Target> {
        let field = |name: &str| format!("targets[{index}].{name}");
        let kind = entry.kind.value;
        let name = match entry.keys.name() {
            Some(n) if n.value.trim().is_empty() => {
                self.problem(n, &field("name"), "must not be empty");
                return None;
            }
            Some(n) => n.value.clone(),
            None => kind.as_str().to_string(),
        };
        if !names.insert(name.clone()) {
            let message = format!("another target is already named `{name}`");
            match entry.keys.name() {
                Some(at) => self.problem(at, &field("name"), message),
                None => self.problem(&entry.kind, &field("name"), message),
            }
        }
        let labels = entry
            .keys
            .labels()
            .map(|l| l.value.clone())
            .unwrap_or_default();
        if let Some(at) = entry.keys.labels() {
            for key in labels.keys() {
                if let Err(why) = super::check_label_name(key) {
                    self.problem(at, &field("labels"), format!("label `{key}` {why}"));
                }
            }
        }
        let limits = self.limits(&entry, &field);
        let source = match &entry.keys {
            SourceEntry::Pgbouncer(e) => SourceConfig::Pgbouncer {
                connection: self.connection(e.server(), &field)?,
            },
            SourceEntry::Postgres(e) => SourceConfig::Postgres {
                connection: self.connection(e.server(), &field)?,
                pool_key: e.pool_key.as_ref().map_or(PoolKey::Database, |k| k.value),
            },
            SourceEntry::Sqlite(e) => SourceConfig::Sqlite {
                path: self.base.join(&e.path.value),
            },
            SourceEntry::Duckdb(e) => SourceConfig::Duckdb {
                path: self.base.join(&e.path.value),
            },
            SourceEntry::Mdm(e) => SourceConfig::Mdm {
                home: match &e.home {
                    Some(home) => self.base.join(expand_home(&home.value, self.env)),
                    None => default_mdm_home(self.env),
                },
            },
        };
        Some(Target {
            name,
            source,
            labels,
            limits: limits?,
        })
    }

    fn connection(
        &mut self,
        keys: ServerKeys<'_>,
        field: &dyn Fn(&str) -> String,
    ) -> Option<Connection> {
        let mut connection = match Connection::parse(&keys.url.value) {
            Ok(c) => Some(c),
            Err(e) => {
                self.problem(keys.url, &field("url"), e);
                None
            }
        };
        let password = self.password(&keys, field, connection.as_ref());
        if let (Some(c), Some(pw)) = (connection.as_mut(), password) {
            c.set_password(&pw);
        }
        if let Some(c) = connection.as_mut() {
            let configured = keys.tls.map(|t| t.value.clone().relative_to(self.base));
            if let Err(e) = c.complete_tls(configured.unwrap_or_default(), self.env) {
                match keys.tls {
                    Some(at) => self.problem(at, &field("tls"), e),
                    None => self.problem(keys.url, &field("url"), e),
                }
            }
        }
        connection
    }

    fn password(
        &mut self,
        keys: &ServerKeys<'_>,
        field: &dyn Fn(&str) -> String,
        connection: Option<&Connection>,
    ) -> Option<String> {
        let in_url = connection.is_some_and(Connection::has_password);
        if let (true, Some(at)) = (in_url, keys.password_file) {
            self.problem(
                at,
                &field("password_file"),
                "the url already holds a password",
            );
        }
        if let (true, Some(at)) = (in_url, keys.password_env) {
            self.problem(
                at,
                &field("password_env"),
                "the url already holds a password",
            );
        }
        self.secret(
            keys.password_file,
            keys.password_env,
            &field("password_file"),
            &field("password_env"),
        )
    }

    fn limits(
        &mut self,
        entry: &TargetEntry,
        field: &dyn Fn(&str) -> String,
    ) -> Option<PoolLimits> {
        let empty = LimitsEntry::default();
        let given = entry.keys.limits().map_or(&empty, |l| &l.value);
        let template = self.template.clone();
        let section = given.template.clone().or_else(|| {
            template
                .as_ref()
                .and(SourceConfig::default_template(entry.kind.value))
                .map(str::to_string)
        });
        let from_template = match (&section, &template) {
            (Some(name), Some(t)) => match t.get(name) {
                Some(s) => s.limits(),
                None => {
                    let message = format!("the pool template has no `{name}` section");
                    match entry.keys.limits() {
                        Some(at) => self.problem(at, &field("limits.template"), message),
                        None => self.problem(&entry.kind, &field("limits.template"), message),
                    }
                    PoolLimits::default()
                }
            },
            (Some(_), None) => {
                if let Some(at) = entry.keys.limits() {
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

impl PgbouncerEntry {
    fn server(&self) -> ServerKeys<'_> {
        ServerKeys {
            url: &self.url,
            password_file: self.password_file.as_ref(),
            password_env: self.password_env.as_ref(),
            tls: self.tls.as_ref(),
        }
    }
}

impl PostgresEntry {
    fn server(&self) -> ServerKeys<'_> {
        ServerKeys {
            url: &self.url,
            password_file: self.password_file.as_ref(),
            password_env: self.password_env.as_ref(),
            tls: self.tls.as_ref(),
        }
    }
}

/// A problem with one `--target` argument.
pub(super) fn argument_problem(message: &str) -> Diagnostic {
    Diagnostic {
        origin: "--target".into(),
        line: 0,
        column: 0,
        field: "target".into(),
        message: message.to_string(),
    }
}

/// The types a `--target` may name, for messages.
pub(super) fn known_types() -> String {
    SourceKind::ALL.map(SourceKind::as_str).join(", ")
}
