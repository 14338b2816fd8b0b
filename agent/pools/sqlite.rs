//! SQLite connections for the instrumented pool: rusqlite opened with the spec's `connect_args`
//! and `SQLITE_PRAGMAS`. (r2d2_sqlite would pin another rusqlite than the one the SQLite source
//! links, and only one `libsqlite3-sys` may be linked.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// The spec's `SQLITE_PRAGMAS`, applied to every connection. `page_size` only takes effect on a
/// new database, before its first table.
pub const PRAGMAS: &[(&str, &str)] = &[
    ("page_size", "4096"),
    ("journal_mode", "WAL"),
    ("synchronous", "NORMAL"),
    ("cache_size", "-64000"),
    ("temp_store", "MEMORY"),
    ("mmap_size", "268435456"),
];

/// Opens connections to one SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteManager {
    path: PathBuf,
    /// The spec's `connect_args.timeout`: how long a statement waits on a locked database.
    busy_timeout: Duration,
}

impl SqliteManager {
    pub fn new(path: &Path) -> SqliteManager {
        SqliteManager {
            path: path.to_path_buf(),
            busy_timeout: Duration::from_secs(30),
        }
    }

    pub fn with_busy_timeout(mut self, timeout: Duration) -> SqliteManager {
        self.busy_timeout = timeout;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One connection with the spec's settings: autocommit (`isolation_level: None` is
    /// rusqlite's default), the busy timeout, the pragmas, then `PRAGMA optimize` as SQLite
    /// advises for long-lived connections.
    pub fn open(&self) -> rusqlite::Result<Connection> {
        // `check_same_thread: False` is Python's; a rusqlite connection moves between threads.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.busy_timeout(self.busy_timeout)?;
        for (name, value) in PRAGMAS {
            conn.execute_batch(&format!("PRAGMA {name} = {value}"))?;
        }
        conn.execute_batch("PRAGMA optimize = 0x10002")?;
        Ok(conn)
    }
}

impl r2d2::ManageConnection for SqliteManager {
    type Connection = Connection;
    type Error = rusqlite::Error;

    fn connect(&self) -> rusqlite::Result<Connection> {
        self.open()
    }

    fn is_valid(&self, conn: &mut Connection) -> rusqlite::Result<()> {
        conn.execute_batch("SELECT 1")
    }

    fn has_broken(&self, _: &mut Connection) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_carry_the_spec_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let conn = SqliteManager::new(&dir.path().join("t.db")).open().unwrap();
        let pragma = |name: &str| -> String {
            conn.query_row(&format!("PRAGMA {name}"), [], |r| {
                r.get::<_, rusqlite::types::Value>(0)
            })
            .map(|v| match v {
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Text(t) => t,
                other => format!("{other:?}"),
            })
            .unwrap()
        };
        assert_eq!(pragma("journal_mode"), "wal");
        // NORMAL is 1, MEMORY is 2.
        assert_eq!(pragma("synchronous"), "1");
        assert_eq!(pragma("cache_size"), "-64000");
        assert_eq!(pragma("temp_store"), "2");
        assert_eq!(pragma("mmap_size"), "268435456");
        assert_eq!(pragma("page_size"), "4096");
        assert_eq!(pragma("busy_timeout"), "30000");
    }
}
