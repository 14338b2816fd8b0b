//! DuckDB connections for the instrumented pool. A DuckDB file is one database instance per
//! process: the first connection opens it, every other one is a clone of that root connection
//! (a new connection on the same instance, as duckdb's own r2d2 manager makes them), so the pool
//! never tries to lock the file twice. The root closes with the last manager holding it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use duckdb::Connection;

/// Opens connections to one DuckDB file. Clones share the database instance.
#[derive(Clone, Debug)]
pub struct DuckdbManager {
    path: PathBuf,
    root: Arc<Mutex<Option<Connection>>>,
}

impl DuckdbManager {
    pub fn new(path: &Path) -> DuckdbManager {
        DuckdbManager {
            path: path.to_path_buf(),
            root: Arc::new(Mutex::new(None)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new connection on the file's instance, opening the instance first if it is not yet.
    pub fn open(&self) -> duckdb::Result<Connection> {
        let mut root = self.root.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(root) = root.as_ref() {
            return root.try_clone();
        }
        let opened = Connection::open(&self.path)?;
        let connection = opened.try_clone()?;
        *root = Some(opened);
        Ok(connection)
    }

    /// Closes the instance once no pooled connection uses it (they hold it open until then).
    pub fn close(&self) {
        self.root.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl r2d2::ManageConnection for DuckdbManager {
    type Connection = Connection;
    type Error = duckdb::Error;

    fn connect(&self) -> duckdb::Result<Connection> {
        self.open()
    }

    fn is_valid(&self, conn: &mut Connection) -> duckdb::Result<()> {
        conn.execute_batch("SELECT 1")
    }

    fn has_broken(&self, _: &mut Connection) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use crate::pools::{CountedPool, InstrumentedPool, PoolSettings};

    #[test]
    fn pooled_connections_share_one_instance_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let manager = DuckdbManager::new(&dir.path().join("t.duckdb"));
        let settings = PoolSettings {
            pool_size: 3,
            ..PoolSettings::duckdb()
        };
        let pool = InstrumentedPool::new("t", Labels::new(), manager.clone(), settings).unwrap();
        let a = pool.get().unwrap();
        let b = pool.get().unwrap();
        a.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (7)")
            .unwrap();
        let x: i32 = b.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(x, 7);
        let stats = pool.stats();
        assert_eq!(
            (stats.used, stats.open, stats.connections_opened),
            (2, 2, 2)
        );
        drop((a, b));
        assert_eq!(pool.stats().used, 0);
    }
}
