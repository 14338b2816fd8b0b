//! The benchmark on DuckDB: the dataset is the file itself (MDM keeps one database per dataset),
//! statements go through duckdb's per-connection statement cache, every pooled connection on
//! the one database instance the file may have per process.

use std::path::PathBuf;

use duckdb::params_from_iter;
use duckdb::types::Value;

use super::workload::{
    Backend, BenchError, COLUMNS, Dataset, FEATURES, Statement, Table, insert_sql, row,
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

fn row_values(first_id: i64, count: usize) -> Vec<Value> {
    let mut values = Vec::with_capacity(count * COLUMNS);
    for id in first_id..first_id + count as i64 {
        let (id, features, label) = row(id);
        values.push(Value::BigInt(id));
        values.extend(features.iter().map(|f| Value::Double(*f)));
        values.push(Value::BigInt(label));
        values.push(Value::Null);
    }
    values
}

fn batch_insert(
    conn: &duckdb::Connection,
    table: Table,
    first_id: i64,
    count: usize,
) -> duckdb::Result<()> {
    conn.prepare_cached(&insert_sql(table, count))?
        .execute(params_from_iter(row_values(first_id, count)))?;
    Ok(())
}

impl Backend for Duckdb {
    type Manager = DuckdbManager;

    fn name(&self) -> &'static str {
        "duckdb"
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn manager(&self) -> DuckdbManager {
        self.manager.clone()
    }

    fn create(&self, dataset: &Dataset) -> Result<(), BenchError> {
        let conn = self.manager.open().map_err(error)?;
        let columns: Vec<String> = (0..FEATURES)
            .map(|k| format!("feature_{k} DOUBLE NOT NULL"))
            .collect();
        let mut ddl = String::from(
            "DROP TABLE IF EXISTS train; DROP TABLE IF EXISTS test; DROP TABLE IF EXISTS _metadata;\n",
        );
        for table in ["train", "test"] {
            ddl.push_str(&format!(
                "CREATE TABLE {table} (id BIGINT PRIMARY KEY, {}, label BIGINT NOT NULL, stats BIGINT);\n",
                columns.join(", ")
            ));
        }
        ddl.push_str("CREATE TABLE _metadata (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);");
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
        for suffix in ["", ".wal"] {
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
        conn: &mut Connection<DuckdbManager>,
        statement: &Statement,
    ) -> Result<(), BenchError> {
        match *statement {
            Statement::GetById { table, id } => {
                let sql = match table {
                    Table::Train => "SELECT * FROM train WHERE id = ?",
                    Table::Test => "SELECT * FROM test WHERE id = ?",
                };
                let mut stmt = conn.prepare_cached(sql).map_err(error)?;
                let mut rows = stmt.query([id]).map_err(error)?;
                while rows.next().map_err(error)?.is_some() {}
            }
            Statement::UpdateStats { table, id, stats } => {
                let sql = match table {
                    Table::Train => "UPDATE train SET stats = ? WHERE id = ?",
                    Table::Test => "UPDATE test SET stats = ? WHERE id = ?",
                };
                conn.prepare_cached(sql)
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
