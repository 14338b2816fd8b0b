//! The database files a target watches (SQLite, DuckDB), sampled in one blocking pass: one
//! `/proc` scan for all of them, each file read by its engine's module, then the processes that
//! hold each file with their locks, CPU and memory, and the host's.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::holders::ProcScan;
use super::host::CpuTracker;
use super::{ErrorKind, SampleError, SampleFuture, Source, duckdb, sqlite};
use crate::model::{
    DatabaseSample, HostSample, Labels, PoolSample, ProcessSample, ServerSample, TargetSample,
};

/// Why a file could not be read. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}: does not exist", .path.display())]
    Missing { path: PathBuf },
    #[error("{}: cannot read: {source}", .path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("{}: not a {engine} database ({why})", .path.display())]
    NotDatabase {
        path: PathBuf,
        engine: Engine,
        why: String,
    },
    #[error("{}: {engine} could not read it: {message}", .path.display())]
    Engine {
        path: PathBuf,
        engine: Engine,
        message: String,
    },
}

impl FileError {
    /// Classifies the error of opening or reading `path`.
    pub fn io(path: &Path, error: io::Error) -> FileError {
        match error.kind() {
            io::ErrorKind::NotFound => FileError::Missing {
                path: path.to_path_buf(),
            },
            _ => FileError::Unreadable {
                path: path.to_path_buf(),
                source: error,
            },
        }
    }
}

/// The database engines whose files the agent reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Engine {
    Sqlite,
    Duckdb,
}

impl Engine {
    /// The `backend` label, as MDM names its backends.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Duckdb => "duckdb",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Sqlite => "SQLite",
            Engine::Duckdb => "DuckDB",
        })
    }
}

/// One file to sample, with what is known of it beforehand.
#[derive(Clone, Debug, PartialEq)]
pub struct FileRequest {
    pub engine: Engine,
    pub path: PathBuf,
    /// Rows from MDM's registry statistics; the file is counted only without them.
    pub rows: Option<u64>,
    /// The tables whose rows make the dataset's size; empty: every table.
    pub tables: Vec<String>,
}

/// What an engine module read from one file: the sample without its processes, and the locks
/// each process holds in the engine's own terms.
#[derive(Debug, Default)]
pub struct Inspection {
    pub sample: DatabaseSample,
    pub locks: BTreeMap<i32, Vec<&'static str>>,
    /// Lock requests on the file that the kernel holds blocked; absent without /proc/locks.
    pub lock_waiters: Option<u64>,
}

/// One blocking pass over a target's files.
#[derive(Debug, Default)]
pub struct FilesSample {
    /// One result per file asked for, in order.
    pub files: Vec<Result<DatabaseSample, FileError>>,
    pub host: HostSample,
    /// What /proc did not show.
    pub problems: Vec<String>,
    /// Whether every process's open files could be seen, so a file nobody holds is known free.
    pub holders_known: bool,
}

/// What is kept between samples: CPU readings, and what DuckDB files last showed when open.
#[derive(Debug, Default)]
pub struct FileWatcher {
    cpu: CpuTracker,
    duckdb: duckdb::Cache,
}

impl FileWatcher {
    /// Samples every file and the host. Blocking: run it off the async executor.
    pub fn sample(&mut self, files: &[FileRequest], deadline: Instant) -> FilesSample {
        let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
        let mut scan = ProcScan::take(&paths);
        let now = Instant::now();
        let mut seen = BTreeSet::new();
        let results: Vec<_> = files
            .iter()
            .map(|file| -> Result<DatabaseSample, FileError> {
                let inspection = match file.engine {
                    Engine::Sqlite => sqlite::inspect(file, &scan, deadline),
                    Engine::Duckdb => self.duckdb.inspect(file, &scan, deadline),
                }?;
                let mut sample = inspection.sample;
                sample.lock_waiters = inspection.lock_waiters;
                let open = scan.open_on(&file.path);
                let pids: BTreeSet<i32> = open
                    .keys()
                    .chain(inspection.locks.keys())
                    .copied()
                    .collect();
                for pid in pids {
                    seen.insert(pid);
                    let usage = self.cpu.process(pid, now);
                    sample.processes.push(ProcessSample {
                        pid,
                        name: scan.name_of(pid),
                        // A lock holder whose descriptors were hidden from us: unknown.
                        connections: open.get(&pid).copied().or(scan.complete.then_some(0)),
                        locks: inspection.locks.get(&pid).cloned().unwrap_or_default(),
                        cpu_utilization: usage.cpu_utilization,
                        resident_memory_bytes: usage.resident_memory_bytes,
                    });
                }
                Ok(sample)
            })
            .collect();
        self.cpu.retain(&seen.into_iter().collect::<Vec<_>>());
        FilesSample {
            files: results,
            host: self.cpu.host(),
            problems: std::mem::take(&mut scan.problems),
            holders_known: scan.complete,
        }
    }
}

/// Opens a database file for plain reads, with its metadata; errors name the file.
pub fn open(path: &Path) -> Result<(std::fs::File, std::fs::Metadata), FileError> {
    let file = std::fs::File::open(path).map_err(|e| FileError::io(path, e))?;
    let metadata = file.metadata().map_err(|e| FileError::io(path, e))?;
    Ok((file, metadata))
}

/// `path` with `suffix` appended to its file name (`x.db` → `x.db-wal`).
pub fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// The size of a file that may not exist: `Some(0)` if it does not.
pub fn size_or_zero(path: &Path) -> Option<u64> {
    match std::fs::metadata(path) {
        Ok(m) => Some(m.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some(0),
        Err(_) => None,
    }
}

/// The pool of an application on a database file: the file's figures, labelled with its
/// backend. With no process holding the file (and every process seen) the pool has no
/// connection at all (0 used, 0 idle); while processes hold it, which of their connections are
/// checked out cannot be seen from outside them, so used and idle are absent.
pub fn pool_of(
    name: &str,
    engine: Engine,
    database: DatabaseSample,
    holders_known: bool,
) -> PoolSample {
    let nobody = holders_known && database.processes.is_empty();
    PoolSample {
        pool: name.to_string(),
        labels: Labels::from([("backend".to_string(), engine.as_str().to_string())]),
        used: nobody.then_some(0),
        idle: nobody.then_some(0),
        database: Some(Box::new(database)),
        ..PoolSample::default()
    }
}

/// Runs a file sample on the blocking pool; a sample still running from a previous deadline
/// makes this one fail instead of queueing behind it.
pub async fn sample_blocking(
    watcher: Arc<Mutex<FileWatcher>>,
    files: Vec<FileRequest>,
    deadline: Instant,
) -> Result<FilesSample, SampleError> {
    let task = tokio::task::spawn_blocking(move || {
        let Ok(mut watcher) = watcher.try_lock() else {
            return Err(SampleError {
                kind: ErrorKind::Timeout,
                message: "the previous sample of these files is still running".into(),
            });
        };
        Ok(watcher.sample(&files, deadline))
    });
    task.await.map_err(|e| SampleError {
        kind: ErrorKind::Protocol,
        message: format!("the file sample stopped: {e}"),
    })?
}

impl FileError {
    /// The `kind` of `poolwatch_target_errors_total` this counts as.
    pub fn kind(&self) -> ErrorKind {
        match self {
            FileError::Missing { .. } => ErrorKind::Connect,
            FileError::Unreadable { source, .. }
                if source.kind() == io::ErrorKind::PermissionDenied =>
            {
                ErrorKind::Auth
            }
            FileError::Unreadable { .. } => ErrorKind::Connect,
            FileError::NotDatabase { .. } => ErrorKind::Protocol,
            FileError::Engine { .. } => ErrorKind::Query,
        }
    }
}

/// A `sqlite` or `duckdb` target: one file, one pool named after the file.
pub struct FileSource {
    pool: String,
    request: FileRequest,
    timeout: Duration,
    watcher: Arc<Mutex<FileWatcher>>,
}

impl FileSource {
    pub fn new(engine: Engine, path: &Path, timeout: Duration) -> FileSource {
        FileSource {
            pool: path.file_stem().map_or_else(
                || path.display().to_string(),
                |s| s.to_string_lossy().into_owned(),
            ),
            request: FileRequest {
                engine,
                path: path.to_path_buf(),
                rows: None,
                tables: Vec::new(),
            },
            timeout,
            watcher: Arc::default(),
        }
    }
}

impl Source for FileSource {
    fn sample(&mut self) -> SampleFuture<'_> {
        Box::pin(async move {
            let deadline = Instant::now() + self.timeout;
            let mut sample =
                sample_blocking(self.watcher.clone(), vec![self.request.clone()], deadline).await?;
            let database = match sample.files.pop() {
                Some(Ok(database)) => database,
                Some(Err(e)) => {
                    return Err(SampleError {
                        kind: e.kind(),
                        message: e.to_string(),
                    });
                }
                None => unreachable!("one result per file"),
            };
            let pool = pool_of(
                &self.pool,
                self.request.engine,
                database,
                sample.holders_known,
            );
            Ok(TargetSample {
                pools: vec![pool],
                server: ServerSample {
                    host: Some(sample.host),
                    ..ServerSample::default()
                },
                warnings: sample.problems,
                gone: Vec::new(),
            })
        })
    }

    fn reset(&mut self) {}
}
