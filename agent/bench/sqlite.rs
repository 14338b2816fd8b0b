//! The benchmark on SQLite: the dataset is the file itself (as MDM keeps one database per
//! dataset), statements go through rusqlite's per-connection statement cache.

use std::path::PathBuf;

use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::workload::{Backend, BenchError, COLUMNS, Dataset, Statement, Table, insert_sql, row};
use crate::pools::Connection;
use crate::pools::sqlite::SqliteManager;

pub struct Sqlite {
    pub path: PathBuf,
    /// Keep the file at the end (the user named it); otherwise it is removed.
    pub keep: bool,
}

fn error(e: rusqlite::Error) -> BenchError {
    BenchError::Backend {
        backend: "sqlite",
        message: e.to_string(),
    }
}

fn row_values(first_id: i64, count: usize) -> Vec<Value> {
    let mut values = Vec::with_capacity(count * COLUMNS);
    for id in first_id..first_id + count as i64 {
        let (id, features, label) = row(id);
        values.push(Value::Integer(id));
        values.extend(features.iter().map(|f| Value::Real(*f)));
        values.push(Value::Integer(label));
        values.push(Value::Null);
    }
    values
}

fn batch_insert(
    conn: &rusqlite::Connection,
    table: Table,
    first_id: i64,
    count: usize,
) -> rusqlite::Result<()> {
    conn.prepare_cached(&insert_sql(table, count))?
        .execute(params_from_iter(row_values(first_id, count)))?;
    Ok(())
}

impl Backend for Sqlite {
    type Manager = SqliteManager;

    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn manager(&self) -> SqliteManager {
        SqliteManager::new(&self.path)
    }

    fn create(&self, dataset: &Dataset) -> Result<(), BenchError> {
        let conn = self.manager().open().map_err(error)?;
        let columns: Vec<String> = (0..super::workload::FEATURES)
            .map(|k| format!("feature_{k} REAL NOT NULL"))
            .collect();
        let mut ddl = String::from(
            "DROP TABLE IF EXISTS train; DROP TABLE IF EXISTS test; DROP TABLE IF EXISTS _metadata;\n",
        );
        for table in ["train", "test"] {
            ddl.push_str(&format!(
                "CREATE TABLE {table} (id INTEGER PRIMARY KEY, {}, label INTEGER NOT NULL, stats INTEGER);\n",
                columns.join(", ")
            ));
        }
        ddl.push_str("CREATE TABLE _metadata (key TEXT PRIMARY KEY, value TEXT NOT NULL);");
        conn.execute_batch(&ddl).map_err(error)?;
        conn.execute_batch("BEGIN").map_err(error)?;
        for (table, first_id, count) in dataset.batches() {
            batch_insert(&conn, table, first_id, count).map_err(error)?;
        }
        for (key, value) in dataset.metadata() {
            conn.execute(
                "INSERT INTO _metadata (key, value) VALUES (?1, ?2)",
                (key, value),
            )
            .map_err(error)?;
        }
        conn.execute_batch("COMMIT; ANALYZE").map_err(error)?;
        Ok(())
    }

    fn drop_dataset(&self) -> Result<(), BenchError> {
        if self.keep {
            return Ok(());
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(BenchError::Setup(format!("removing {path:?}: {e}"))),
            }
        }
        Ok(())
    }

    fn execute(
        &self,
        conn: &mut Connection<SqliteManager>,
        statement: &Statement,
    ) -> Result<(), BenchError> {
        match *statement {
            Statement::GetById { table, id } => {
                let sql = match table {
                    Table::Train => "SELECT * FROM train WHERE id = ?1",
                    Table::Test => "SELECT * FROM test WHERE id = ?1",
                };
                let mut stmt = conn.prepare_cached(sql).map_err(error)?;
                let mut rows = stmt.query([id]).map_err(error)?;
                while rows.next().map_err(error)?.is_some() {}
            }
            Statement::UpdateStats { table, id, stats } => {
                let sql = match table {
                    Table::Train => "UPDATE train SET stats = ?1 WHERE id = ?2",
                    Table::Test => "UPDATE test SET stats = ?1 WHERE id = ?2",
                };
                conn.prepare_cached(sql)
                    .map_err(error)?
                    .execute((stats, id))
                    .map_err(error)?;
            }
            Statement::BatchInsert {
                table,
                first_id,
                count,
            } => batch_insert(conn, table, first_id, count).map_err(error)?,
        }
        Ok(())
    }
}
