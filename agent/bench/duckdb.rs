//! The benchmark on DuckDB: the dataset is the file itself (MDM keeps one database per dataset),
//! statements go through duckdb's per-connection statement cache, every pooled connection on
//! the one database instance the file may have per process.

use std::path::PathBuf;

use duckdb::params_from_iter;
use duckdb::types::Value;

use super::workload::{
    Backend, BenchError, BlockingBackend, Dataset, SqlTypes, Statement, Table, file_schema,
    get_by_id_sql, insert_sql, remove_database_files, row_values, update_stats_sql,
};
use crate::pools::Connection;
use crate::pools::duckdb::DuckdbManager;

pub struct Duckdb {
    pub path: PathBuf,
    /// Keep the file at the end (the user named it); otherwise it is removed.
    pub keep: bool,
    manager: DuckdbManager,
}

impl Duckdb {
    pub fn new(path: PathBuf, keep: bool) -> Duckdb {
        Duckdb {
            manager: DuckdbManager::new(&path),
            path,
            keep,
        }
    }
}

fn error(e: duckdb::Error) -> BenchError {
    BenchError::Backend {
        backend: "duckdb",
        message: e.to_string(),
    }
}

fn batch_insert(
    conn: &duckdb::Connection,
    table: Table,
    first_id: i64,
    count: usize,
) -> duckdb::Result<()> {
    conn.prepare_cached(&insert_sql(table, count))?
        .execute(params_from_iter(row_values(
            first_id,
            count,
            Value::BigInt,
            Value::Double,
            || Value::Null,
        )))?;
    Ok(())
}

impl Backend for Duckdb {
    fn name(&self) -> &'static str {
        "duckdb"
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn create(&self, dataset: &Dataset) -> Result<(), BenchError> {
        let conn = self.manager.open().map_err(error)?;
        let ddl = file_schema(&SqlTypes {
            integer: "BIGINT",
            real: "DOUBLE",
            text: "VARCHAR",
        });
        conn.execute_batch(&ddl).map_err(error)?;
        conn.execute_batch("BEGIN").map_err(error)?;
        for (table, first_id, count) in dataset.batches() {
            batch_insert(&conn, table, first_id, count).map_err(error)?;
        }
        for (key, value) in dataset.metadata() {
            conn.execute(
                "INSERT INTO _metadata (key, value) VALUES (?, ?)",
                [key, value.as_str()],
            )
            .map_err(error)?;
        }
        conn.execute_batch("COMMIT; CHECKPOINT").map_err(error)?;
        Ok(())
    }

    fn drop_dataset(&self) -> Result<(), BenchError> {
        self.manager.close();
        if self.keep {
            return Ok(());
        }
        remove_database_files(&self.path, &["", ".wal"])
    }
}

impl BlockingBackend for Duckdb {
    type Manager = DuckdbManager;

    fn manager(&self) -> DuckdbManager {
        self.manager.clone()
    }

    fn execute(
        &self,
        conn: &mut Connection<DuckdbManager>,
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
                    .execute([stats, id])
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
