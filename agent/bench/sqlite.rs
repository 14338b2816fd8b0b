//! The benchmark on SQLite: the dataset is the file itself (as MDM keeps one database per
//! dataset), statements go through rusqlite's per-connection statement cache.

use std::path::PathBuf;

use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::workload::{
    Backend, BenchError, BlockingBackend, Dataset, SqlTypes, Statement, Table, file_schema,
    get_by_id_sql, insert_sql, remove_database_files, row_values, update_stats_sql,
};
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

fn batch_insert(
    conn: &rusqlite::Connection,
    table: Table,
    first_id: i64,
    count: usize,
) -> rusqlite::Result<()> {
    conn.prepare_cached(&insert_sql(table, count))?
        .execute(params_from_iter(row_values(
            first_id,
            count,
            Value::Integer,
            Value::Real,
            || Value::Null,
        )))?;
    Ok(())
}

impl Backend for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn create(&self, dataset: &Dataset) -> Result<(), BenchError> {
        let conn = self.manager().open().map_err(error)?;
        let ddl = file_schema(&SqlTypes {
            integer: "INTEGER",
            real: "REAL",
            text: "TEXT",
        });
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
        remove_database_files(&self.path, &["", "-wal", "-shm"])
    }
}

impl BlockingBackend for Sqlite {
    type Manager = SqliteManager;

    fn manager(&self) -> SqliteManager {
        SqliteManager::new(&self.path)
    }

    fn execute(
        &self,
        conn: &mut Connection<SqliteManager>,
        statement: &Statement,
    ) -> Result<(), BenchError> {
        match *statement {
            Statement::GetById { table, id } => {
                let mut stmt = conn.prepare_cached(get_by_id_sql(table)).map_err(error)?;
                let mut rows = stmt.query([id]).map_err(error)?;
                while rows.next().map_err(error)?.is_some() {}
            }
            Statement::UpdateStats { table, id, stats } => {
                conn.prepare_cached(update_stats_sql(table))
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
