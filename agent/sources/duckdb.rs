//! A DuckDB database file, never opened while another process holds it.
//!
//! DuckDB takes a POSIX lock on its whole file when it opens it, even read-only (a read lock),
//! and a process opening it for writing fails at once if anyone holds a lock. So:
//! - Every sample reads, without any lock: the file and `.wal` sizes (`stat`), the main header
//!   (`DUCK` magic, storage version, the DuckDB version that wrote it) with a plain `pread`, and
//!   the locks and open descriptors from `/proc`. A process holding the file is reported (pid,
//!   name, lock) and the file is left alone.
//! - Only when no process has the file open or locked, and it changed since the agent last
//!   looked, is it opened read-only for two catalogue queries (block usage, table sizes) and
//!   closed. Figures read that way are kept while the file stays unchanged.
//!
//! The residual risk, stated plainly: a writer that opens the file during those few
//! milliseconds finds the agent's read lock and fails to open ("Could not set lock on file").
//! Looking only when the file changed and no one holds it makes that window rare; it cannot be
//! closed without DuckDB offering an open that takes no lock.

use std::collections::HashMap;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::time::Instant;

use super::files::{Engine, FileError, FileRequest, Inspection, companion, open, size_or_zero};
use super::holders::{FileId, ProcScan};
use crate::model::DatabaseSample;

/// What DuckDB's main header says (the first block of the file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The storage format number.
    pub storage_version: u64,
    /// The DuckDB release that wrote the header (`v2.0.1`).
    pub library_version: String,
}

/// Reads DuckDB's main header: an 8-byte checksum, the magic `DUCK`, the storage version
/// (u64, little endian), four flag words, then the library version, NUL-padded to 32 bytes.
pub fn parse_header(bytes: &[u8; 84]) -> Result<Header, String> {
    if &bytes[8..12] != b"DUCK" {
        return Err("no DUCK magic in the header".into());
    }
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[12..20]);
    let library = &bytes[52..84];
    let end = library
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(library.len());
    Ok(Header {
        storage_version: u64::from_le_bytes(word),
        library_version: String::from_utf8_lossy(&library[..end]).into_owned(),
    })
}

/// What opening the file showed, and the state of the file it was true for.
#[derive(Clone, Debug, Default, PartialEq)]
struct Opened {
    block_size_bytes: Option<u64>,
    blocks_used: Option<u64>,
    blocks_free: Option<u64>,
    rows: Option<u64>,
}

/// A file's size, mtime (seconds, nanoseconds) and WAL size: unchanged, the file holds what it
/// held.
type FileState = (u64, i64, i64, u64);

/// Per file: what the last open read, and the state of the file then.
#[derive(Debug, Default)]
pub struct Cache {
    opened: HashMap<PathBuf, (FileState, Opened)>,
}

impl Cache {
    /// Reads one DuckDB file; opens it only if nobody holds it and it changed.
    pub fn inspect(
        &mut self,
        file: &FileRequest,
        scan: &ProcScan,
        deadline: Instant,
    ) -> Result<Inspection, FileError> {
        let path = &file.path;
        let (handle, metadata) = open(path)?;
        let mut bytes = [0u8; 84];
        let header = match handle.read_exact_at(&mut bytes, 0) {
            Ok(()) => parse_header(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err("shorter than a DuckDB header".into())
            }
            Err(e) => return Err(FileError::io(path, e)),
        }
        .map_err(|why| FileError::NotDatabase {
            path: path.clone(),
            engine: Engine::Duckdb,
            why,
        })?;
        drop(handle);
        let wal = size_or_zero(&companion(path, ".wal"));
        let mut sample = DatabaseSample {
            path: path.display().to_string(),
            size_bytes: Some(metadata.len()),
            wal_size_bytes: wal,
            rows: file.rows,
            ..DatabaseSample::default()
        };
        sample
            .settings
            .insert("storage_version".into(), header.storage_version.to_string());
        sample
            .settings
            .insert("library_version".into(), header.library_version);
        let held = scan.locks_on(FileId::of(&metadata));
        let mut locks: std::collections::BTreeMap<i32, Vec<&'static str>> = Default::default();
        for lock in held.iter().filter(|l| !l.blocked) {
            if let Some(pid) = lock.pid {
                let state = if lock.write { "write" } else { "read" };
                let states = locks.entry(pid).or_default();
                if !states.contains(&state) {
                    states.push(state);
                }
            }
        }
        let waiters = held.iter().filter(|l| l.blocked).count() as u64;
        // Free only if nothing holds a lock, no process has it open, and we could see both.
        let free =
            scan.locks_known && scan.complete && held.is_empty() && scan.open_on(path).is_empty();
        let state = (
            metadata.len(),
            metadata.mtime(),
            metadata.mtime_nsec(),
            wal.unwrap_or(0),
        );
        let cached = self.opened.get(path).filter(|(at, _)| *at == state);
        let opened = match (cached, free) {
            (Some((_, opened)), _) => Some(opened.clone()),
            (None, true) => {
                let opened = open_and_read(path, &file.tables, deadline).map_err(|message| {
                    FileError::Engine {
                        path: path.clone(),
                        engine: Engine::Duckdb,
                        message,
                    }
                })?;
                if let Some(opened) = &opened {
                    self.opened.insert(path.clone(), (state, opened.clone()));
                }
                opened
            }
            (None, false) => None,
        };
        if let Some(opened) = opened {
            sample.block_size_bytes = opened.block_size_bytes;
            sample.blocks_used = opened.blocks_used;
            sample.blocks_free = opened.blocks_free;
            sample.rows = sample.rows.or(opened.rows);
        }
        Ok(Inspection {
            sample,
            locks,
            lock_waiters: scan.locks_known.then_some(waiters),
        })
    }
}

/// Opens the file read-only with one thread and a small memory limit, no extension loading and
/// no external access, reads the catalogue, and closes it.
#[cfg(feature = "duckdb")]
fn open_and_read(
    path: &std::path::Path,
    tables: &[String],
    deadline: Instant,
) -> Result<Option<Opened>, String> {
    use duckdb::{AccessMode, Config, Connection};
    let text = |e: duckdb::Error| e.to_string();
    let config = Config::default()
        .access_mode(AccessMode::ReadOnly)
        .and_then(|c| c.threads(1))
        .and_then(|c| c.max_memory("64MB"))
        .and_then(|c| c.enable_autoload_extension(false))
        .and_then(|c| c.enable_external_access(false))
        .and_then(|c| c.with("autoinstall_known_extensions", "false"))
        .map_err(text)?;
    let connection = Connection::open_with_flags(path, config).map_err(text)?;
    let interrupt = connection.interrupt_handle();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    // A statement still running at the deadline is interrupted, so the lock is let go.
    let watchdog = std::thread::spawn(move || {
        let left = deadline.saturating_duration_since(Instant::now());
        if finished.recv_timeout(left).is_err() {
            interrupt.interrupt();
        }
    });
    let read = || -> Result<Opened, duckdb::Error> {
        let (block_size, used, free): (i64, i64, i64) = connection.query_row(
            "SELECT block_size, used_blocks, free_blocks FROM pragma_database_size() \
             WHERE database_name = current_database()",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let mut statement = connection.prepare(
            "SELECT table_name, estimated_size FROM duckdb_tables() \
             WHERE database_name = current_database() ORDER BY table_name",
        )?;
        let sizes: Vec<(String, i64)> = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let rows = sizes
            .iter()
            .filter(|(name, _)| tables.is_empty() || tables.contains(name))
            .map(|(_, n)| (*n).max(0) as u64)
            .sum();
        Ok(Opened {
            block_size_bytes: u64::try_from(block_size).ok(),
            blocks_used: u64::try_from(used).ok(),
            blocks_free: u64::try_from(free).ok(),
            rows: Some(rows),
        })
    };
    let result = read().map_err(text);
    drop(connection);
    let _ = done.send(());
    let _ = watchdog.join();
    result.map(Some)
}

/// Without the `duckdb` feature (a development build) the agent reports only what it reads
/// without DuckDB: sizes, header, holders; block usage and rows stay absent.
#[cfg(not(feature = "duckdb"))]
fn open_and_read(_: &std::path::Path, _: &[String], _: Instant) -> Result<Option<Opened>, String> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_main_header_gives_storage_and_library_versions() {
        // The first 84 bytes of a file DuckDB 2.0.1 wrote.
        let mut bytes = [0u8; 84];
        bytes[..8].copy_from_slice(&[0x8e, 0x0f, 0xfc, 0x38, 0x45, 0x25, 0xe8, 0x61]);
        bytes[8..12].copy_from_slice(b"DUCK");
        bytes[12..20].copy_from_slice(&999u64.to_le_bytes());
        bytes[52..58].copy_from_slice(b"v2.0.1");
        assert_eq!(
            parse_header(&bytes),
            Ok(Header {
                storage_version: 999,
                library_version: "v2.0.1".into()
            })
        );
        bytes[8] = b'X';
        assert!(parse_header(&bytes).is_err());
    }
}
