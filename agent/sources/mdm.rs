//! An MDM home: the datasets MDM registered, discovered from its own files and watched with
//! notify, one pool per dataset labelled `dataset` and `backend`, each attached through the
//! source of its backend (the file sources for SQLite and DuckDB, one postgres session per
//! server for PostgreSQL).
//!
//! Where MDM keeps what (its `mdm.yaml`, `config/datasets/<name>.yaml`):
//! - `database.default_backend` and the sections `database.sqlalchemy` (pool_size 5,
//!   max_overflow 10 by default: MDM's pool limits), `database.duckdb` (threads, memory_limit),
//!   `database.postgresql` (host, port, user, password), and `paths`.
//! - A dataset's registry entry: `database.backend`, `database.path` for the file backends (it is
//!   authoritative; without it the usual `datasets/<name>/<name>.<backend>` and the older
//!   `<name>.db`, `dataset.db`, `data.db` are looked for), `host`, `port`, `user`, `password`
//!   and `database` for PostgreSQL, `tables`, and `metadata.statistics.row_count`.
//!
//! A registry file that does not parse, a path that does not exist, a file that is not a
//! database or cannot be read: each is a warning naming the file, and the other datasets keep
//! being watched. Passwords are never shown, not even inside such a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use serde::Deserialize;

use super::files::{self, Engine, FileRequest, FileWatcher};
use super::postgres::{Pools, Postgres};
use super::{SampleFuture, Source};
use crate::config::PoolKey;
use crate::model::{DatabaseSample, PoolLimits, PoolSample, ServerSample, TargetSample};
use crate::secret::Connection;

/// MDM's own defaults for what its `mdm.yaml` leaves out (MDM's config models).
const DEFAULT_POOL_SIZE: u64 = 5;
const DEFAULT_MAX_OVERFLOW: u64 = 10;
const DEFAULT_POOL_TIMEOUT: f64 = 30.0;
const DEFAULT_POOL_RECYCLE: f64 = 3600.0;
const DEFAULT_DUCKDB_THREADS: u64 = 4;
const DEFAULT_DUCKDB_MEMORY_LIMIT: &str = "8GB";
const DEFAULT_DATASETS_PATH: &str = "datasets/";
const DEFAULT_CONFIGS_PATH: &str = "config/datasets/";
/// The tables MDM counts in a dataset's size (its registrar's statistics).
const MAIN_TABLES: [&str; 4] = ["train", "test", "validation", "data"];

/// `mdm.yaml`, the parts the agent reads; MDM's other keys are ignored.
#[derive(Debug, Default, Deserialize)]
struct MdmFile {
    #[serde(default)]
    database: DatabaseSection,
    #[serde(default)]
    paths: PathsSection,
}

#[derive(Debug, Default, Deserialize)]
struct DatabaseSection {
    default_backend: Option<String>,
    #[serde(default)]
    sqlalchemy: SqlalchemySection,
    #[serde(default)]
    duckdb: DuckdbSection,
    #[serde(default)]
    postgresql: ServerSection,
}

#[derive(Debug, Default, Deserialize)]
struct SqlalchemySection {
    pool_size: Option<u64>,
    max_overflow: Option<u64>,
    pool_timeout: Option<f64>,
    pool_recycle: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct DuckdbSection {
    threads: Option<u64>,
    memory_limit: Option<String>,
}

#[derive(Clone, Default, Deserialize)]
struct ServerSection {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<String>,
    database_prefix: Option<String>,
}

impl std::fmt::Debug for ServerSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Deserialize)]
struct PathsSection {
    datasets_path: Option<String>,
    configs_path: Option<String>,
}

/// A registry file, `config/datasets/<name>.yaml` (MDM's `DatasetInfo`).
#[derive(Debug, Deserialize)]
struct RegistryFile {
    #[serde(default)]
    database: RegistryDatabase,
    #[serde(default)]
    tables: BTreeMap<String, String>,
    #[serde(default)]
    metadata: RegistryMetadata,
}

#[derive(Default, Deserialize)]
struct RegistryDatabase {
    backend: Option<String>,
    path: Option<PathBuf>,
    #[serde(flatten)]
    server: ServerSection,
    database: Option<String>,
    threads: Option<u64>,
    memory_limit: Option<String>,
}

impl std::fmt::Debug for RegistryDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryDatabase")
            .field("backend", &self.backend)
            .field("path", &self.path)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Deserialize)]
struct RegistryMetadata {
    #[serde(default)]
    statistics: RegistryStatistics,
}

#[derive(Debug, Default, Deserialize)]
struct RegistryStatistics {
    row_count: Option<u64>,
}

/// One dataset MDM registered.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub name: String,
    pub backend: Backend,
    /// MDM's pool limits (`database.sqlalchemy`).
    pub limits: PoolLimits,
    /// Rows from the registry's statistics.
    pub rows: Option<u64>,
    /// The tables whose rows make the dataset's size.
    pub tables: Vec<String>,
}

/// Where a dataset's data lives.
#[derive(Clone, Debug)]
pub enum Backend {
    File {
        engine: Engine,
        path: PathBuf,
        /// DuckDB connection settings MDM applies (registry entry, else `mdm.yaml`, else
        /// MDM's defaults).
        threads: Option<u64>,
        memory_limit_bytes: Option<u64>,
    },
    Postgres {
        connection: Box<Connection>,
        database: String,
    },
}

impl Backend {
    /// The `backend` label, in MDM's words.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::File { engine, .. } => engine.as_str(),
            Backend::Postgres { .. } => "postgresql",
        }
    }
}

/// What the files of an MDM home say now.
#[derive(Debug, Default)]
pub struct Discovery {
    pub datasets: Vec<Dataset>,
    /// Files that could not be used, each named with why.
    pub problems: Vec<String>,
    /// The directories whose changes can change the datasets.
    pub watch: Vec<PathBuf>,
}

/// Reads an MDM home. Never fails: what cannot be read is a problem, the rest is used.
pub fn discover(home: &Path) -> Discovery {
    let mut out = Discovery::default();
    let settings_file = home.join("mdm.yaml");
    let settings = match std::fs::read_to_string(&settings_file) {
        Ok(text) => match parse_yaml::<MdmFile>(&text) {
            Ok(settings) => settings,
            Err(e) => {
                out.problems
                    .push(format!("{}: {}", settings_file.display(), scrub(&e, &text)));
                MdmFile::default()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => MdmFile::default(),
        Err(e) => {
            out.problems
                .push(format!("{}: cannot read: {e}", settings_file.display()));
            MdmFile::default()
        }
    };
    let configs = home.join(
        settings
            .paths
            .configs_path
            .as_deref()
            .unwrap_or(DEFAULT_CONFIGS_PATH),
    );
    let datasets_dir = home.join(
        settings
            .paths
            .datasets_path
            .as_deref()
            .unwrap_or(DEFAULT_DATASETS_PATH),
    );
    // Every directory from the home down to the registry, so the registry appearing is seen.
    out.watch.push(home.to_path_buf());
    if let Ok(below) = configs.strip_prefix(home) {
        let mut at = home.to_path_buf();
        for part in below.components() {
            at.push(part);
            out.watch.push(at.clone());
        }
    } else {
        out.watch.push(configs.clone());
    }
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(&configs) {
        Ok(dir) => dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            out.problems
                .push(format!("{}: cannot list: {e}", configs.display()));
            Vec::new()
        }
    };
    entries.sort();
    for file in entries {
        match dataset(&file, &settings, home, &datasets_dir) {
            Ok(dataset) => out.datasets.push(dataset),
            Err(problem) => out.problems.push(problem),
        }
    }
    out
}

fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_saphyr::from_str_with_options::<T>(text, serde_saphyr::options! { with_snippet: false })
        .map_err(|e| e.without_snippet().to_string())
}

/// Removes from `message` every password the file's text holds, in case the parser quoted it.
fn scrub(message: &str, text: &str) -> String {
    let mut out = message.to_string();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if key.trim().trim_start_matches("- ") == "password" {
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            if !value.is_empty() {
                out = out.replace(value, "***");
            }
        }
    }
    out
}

fn dataset(
    file: &Path,
    settings: &MdmFile,
    home: &Path,
    datasets_dir: &Path,
) -> Result<Dataset, String> {
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(format!(
            "{}: `{name}` is not an MDM dataset name (lower case letters, digits, _ and -)",
            file.display()
        ));
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
    let entry: RegistryFile =
        parse_yaml(&text).map_err(|e| format!("{}: {}", file.display(), scrub(&e, &text)))?;
    let db = &settings.database;
    let backend_name = entry
        .database
        .backend
        .clone()
        .or_else(|| db.default_backend.clone())
        .unwrap_or_else(|| "sqlite".into());
    let sqlalchemy = &db.sqlalchemy;
    let limits = PoolLimits {
        pool_size: Some(sqlalchemy.pool_size.unwrap_or(DEFAULT_POOL_SIZE)),
        max_overflow: Some(sqlalchemy.max_overflow.unwrap_or(DEFAULT_MAX_OVERFLOW)),
        timeout_seconds: Some(sqlalchemy.pool_timeout.unwrap_or(DEFAULT_POOL_TIMEOUT)),
        recycle_seconds: Some(sqlalchemy.pool_recycle.unwrap_or(DEFAULT_POOL_RECYCLE)),
        ..PoolLimits::default()
    };
    let mut tables: Vec<String> = entry
        .tables
        .iter()
        .filter(|(kind, _)| MAIN_TABLES.contains(&kind.as_str()))
        .map(|(_, table)| table.clone())
        .collect();
    tables.sort();
    let backend = match backend_name.as_str() {
        "sqlite" | "duckdb" => {
            let engine = if backend_name == "sqlite" {
                Engine::Sqlite
            } else {
                Engine::Duckdb
            };
            let path = match &entry.database.path {
                Some(path) => home.join(path),
                None => find_file(datasets_dir, &name, engine).ok_or_else(|| {
                    format!(
                        "{}: no database.path, and no database file for `{name}` in {}",
                        file.display(),
                        datasets_dir.join(&name).display()
                    )
                })?,
            };
            let (threads, memory_limit) = match engine {
                Engine::Duckdb => (
                    entry
                        .database
                        .threads
                        .or(db.duckdb.threads)
                        .or(Some(DEFAULT_DUCKDB_THREADS)),
                    Some(
                        entry
                            .database
                            .memory_limit
                            .clone()
                            .or(db.duckdb.memory_limit.clone())
                            .unwrap_or_else(|| DEFAULT_DUCKDB_MEMORY_LIMIT.into()),
                    ),
                ),
                Engine::Sqlite => (None, None),
            };
            let memory_limit_bytes = match memory_limit {
                Some(text) => Some(duckdb_bytes(&text).ok_or_else(|| {
                    format!(
                        "{}: database.memory_limit `{text}` is not a DuckDB memory size",
                        file.display()
                    )
                })?),
                None => None,
            };
            Backend::File {
                engine,
                path,
                threads,
                memory_limit_bytes,
            }
        }
        "postgresql" => {
            let (given, global) = (&entry.database.server, &db.postgresql);
            let host = given.host.clone().or(global.host.clone());
            let mut config = tokio_postgres::Config::new();
            config
                .host(host.as_deref().unwrap_or("localhost"))
                .port(given.port.or(global.port).unwrap_or(5432))
                .dbname("postgres");
            if let Some(user) = given.user.as_ref().or(global.user.as_ref()) {
                config.user(user);
            }
            if let Some(password) = given.password.as_ref().or(global.password.as_ref()) {
                config.password(password);
            }
            let prefix = global.database_prefix.as_deref().unwrap_or("mdm_");
            Backend::Postgres {
                connection: Box::new(Connection::from_config(config)),
                database: entry
                    .database
                    .database
                    .clone()
                    .unwrap_or_else(|| format!("{prefix}{name}")),
            }
        }
        other => {
            return Err(format!(
                "{}: database.backend `{other}` is not sqlite, duckdb or postgresql",
                file.display()
            ));
        }
    };
    Ok(Dataset {
        name,
        backend,
        limits,
        rows: entry.metadata.statistics.row_count,
        tables,
    })
}

/// The database file of a dataset without `database.path`: MDM's usual name, then the names
/// older MDM versions used.
fn find_file(datasets_dir: &Path, name: &str, engine: Engine) -> Option<PathBuf> {
    let dir = datasets_dir.join(name);
    let ext = engine.as_str();
    [
        format!("{name}.{ext}"),
        format!("{name}.db"),
        format!("dataset.{ext}"),
        "dataset.db".to_string(),
        "data.db".to_string(),
    ]
    .iter()
    .map(|f| dir.join(f))
    .find(|p| p.is_file())
}

/// A DuckDB memory size (`4GB`, `512MiB`, `1.5 GB`) in bytes, with DuckDB's units: KB, MB, GB,
/// TB are powers of 1000, KiB… of 1024, a bare number is bytes.
pub fn duckdb_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let number: f64 = text[..split].trim().parse().ok()?;
    let factor = match text[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" | "byte" | "bytes" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        _ => return None,
    };
    Some((number * factor).round() as u64)
}

/// The watcher over the home's directories: any change marks the datasets to be read again.
struct Watch {
    _watcher: RecommendedWatcher,
    watched: Vec<PathBuf>,
}

/// The `mdm` source.
pub struct Mdm {
    home: PathBuf,
    timeout: Duration,
    changed: Arc<AtomicBool>,
    watch: Option<Watch>,
    discovery: Discovery,
    files: Arc<Mutex<FileWatcher>>,
    /// One session per PostgreSQL server, with the databases it holds.
    servers: BTreeMap<String, (BTreeSet<String>, Postgres)>,
}

impl Mdm {
    pub fn new(home: &Path, timeout: Duration) -> Mdm {
        Mdm {
            home: home.to_path_buf(),
            timeout,
            changed: Arc::new(AtomicBool::new(true)),
            watch: None,
            discovery: Discovery::default(),
            files: Arc::default(),
            servers: BTreeMap::new(),
        }
    }

    /// Reads the home again if something changed, and (re)watches what is to watch.
    fn refresh(&mut self, warnings: &mut Vec<String>) {
        if !self.changed.swap(false, Ordering::SeqCst) {
            return;
        }
        self.discovery = discover(&self.home);
        if self.discovery.watch.iter().any(|d| !d.is_dir()) {
            // Part of the home does not exist yet, so nothing there can be watched: read it
            // again at every sample until it does.
            self.changed.store(true, Ordering::SeqCst);
        }
        let wanted: Vec<PathBuf> = self
            .discovery
            .watch
            .iter()
            .filter(|d| d.is_dir())
            .cloned()
            .collect();
        if self.watch.as_ref().is_some_and(|w| w.watched == wanted) {
            return;
        }
        let changed = self.changed.clone();
        let made = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                changed.store(true, Ordering::SeqCst);
            }
        })
        .and_then(|mut watcher| {
            for dir in &wanted {
                watcher.watch(dir, RecursiveMode::NonRecursive)?;
            }
            Ok(watcher)
        });
        match made {
            Ok(watcher) => {
                self.watch = Some(Watch {
                    _watcher: watcher,
                    watched: wanted,
                })
            }
            Err(e) => {
                // Without a watch, read the home at every sample instead.
                self.changed.store(true, Ordering::SeqCst);
                warnings.push(format!(
                    "{}: cannot watch for changes ({e}); reading it at every sample",
                    self.home.display()
                ));
            }
        }
    }
}

impl Source for Mdm {
    fn sample(&mut self) -> SampleFuture<'_> {
        Box::pin(async move {
            let deadline = Instant::now() + self.timeout;
            let mut warnings = Vec::new();
            self.refresh(&mut warnings);
            warnings.extend(self.discovery.problems.iter().cloned());
            let datasets = self.discovery.datasets.clone();

            let requests: Vec<FileRequest> = datasets
                .iter()
                .filter_map(|d| match &d.backend {
                    Backend::File { engine, path, .. } => Some(FileRequest {
                        engine: *engine,
                        path: path.clone(),
                        rows: d.rows,
                        tables: d.tables.clone(),
                    }),
                    Backend::Postgres { .. } => None,
                })
                .collect();
            let mut sampled =
                files::sample_blocking(self.files.clone(), requests, deadline).await?;
            warnings.append(&mut sampled.problems);
            let holders_known = sampled.holders_known;
            let mut file_results = sampled.files.into_iter();

            // One session per server, filtered to the databases MDM registered on it.
            let mut wanted: BTreeMap<String, (Connection, BTreeSet<String>)> = BTreeMap::new();
            for d in &datasets {
                if let Backend::Postgres {
                    connection,
                    database,
                } = &d.backend
                {
                    wanted
                        .entry(connection.endpoint().to_string())
                        .or_insert_with(|| ((**connection).clone(), BTreeSet::new()))
                        .1
                        .insert(database.clone());
                }
            }
            self.servers.retain(|endpoint, (databases, _)| {
                wanted.get(endpoint).is_some_and(|(_, d)| d == databases)
            });
            let mut by_database: BTreeMap<String, PoolSample> = BTreeMap::new();
            let mut server = ServerSample::default();
            for (endpoint, (connection, databases)) in wanted {
                let timeout = self.timeout;
                let (_, session) = self.servers.entry(endpoint.clone()).or_insert_with(|| {
                    let pools = Pools {
                        key: PoolKey::Database,
                        databases: Some(databases.clone()),
                    };
                    (databases, Postgres::new(&connection, pools, timeout))
                });
                match session.sample().await {
                    Ok(sample) => {
                        if server.max_connections.is_none() {
                            server = sample.server;
                        } else {
                            warnings.push(format!(
                                "datasets on {endpoint}: the server figures shown are those of \
                                 the first PostgreSQL server only"
                            ));
                        }
                        warnings.extend(sample.warnings);
                        for pool in sample.pools {
                            by_database.insert(pool.pool.clone(), pool);
                        }
                    }
                    Err(e) => {
                        session.reset();
                        warnings.push(format!("datasets on {endpoint}: {e}"));
                    }
                }
            }

            let mut pools = Vec::new();
            for dataset in &datasets {
                let mut pool = match &dataset.backend {
                    Backend::File {
                        engine,
                        threads,
                        memory_limit_bytes,
                        ..
                    } => match file_results.next() {
                        Some(Ok(mut database)) => {
                            database.threads = *threads;
                            database.memory_limit_bytes = *memory_limit_bytes;
                            files::pool_of(&dataset.name, *engine, database, holders_known)
                        }
                        Some(Err(e)) => {
                            warnings.push(format!("dataset {}: {e}", dataset.name));
                            PoolSample::default()
                        }
                        None => PoolSample::default(),
                    },
                    Backend::Postgres { database, .. } => {
                        by_database.remove(database).unwrap_or_default()
                    }
                };
                pool.pool = dataset.name.clone();
                pool.labels.insert("dataset".into(), dataset.name.clone());
                pool.labels
                    .insert("backend".into(), dataset.backend.name().into());
                pool.limits = pool.limits.or(dataset.limits);
                if pool.database.is_none() && dataset.rows.is_some() {
                    pool.database = Some(Box::new(DatabaseSample {
                        rows: dataset.rows,
                        ..DatabaseSample::default()
                    }));
                }
                pools.push(pool);
            }
            pools.sort_by(|a, b| a.pool.cmp(&b.pool));
            server.host = Some(sampled.host);
            Ok(TargetSample {
                pools,
                server,
                warnings,
                gone: Vec::new(),
            })
        })
    }

    fn reset(&mut self) {
        for (_, session) in self.servers.values_mut() {
            session.reset();
        }
    }
}

#[cfg(test)]
mod tests;
