//! The benchmark's workload: an MDM-like dataset (tables `train` and `test` with many rows, and
//! `_metadata`), the spec's prepared statements (`get_by_id`, `batch_insert`, `update_stats`)
//! and what each `--operation` runs. A backend is one implementation of [`Backend`], and of
//! [`BlockingBackend`] if its driver blocks; adding one (DuckDB through its r2d2 manager) is one
//! more file.

use std::fmt;
use std::path::Path;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::pools::Connection;

/// Feature columns per row, as in a small tabular ML dataset.
pub const FEATURES: usize = 4;
/// Columns of `train` and `test`: id, the features, label, stats.
pub const COLUMNS: usize = FEATURES + 3;

/// The dataset's two row tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Train,
    Test,
}

impl Table {
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Train => "train",
            Table::Test => "test",
        }
    }
}

/// One of the spec's prepared statements, with its arguments.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Statement {
    /// `SELECT * FROM {table} WHERE id = %s`.
    GetById { table: Table, id: i64 },
    /// `UPDATE {table} SET stats = %s WHERE id = %s`.
    UpdateStats { table: Table, id: i64, stats: i64 },
    /// `INSERT INTO {table} VALUES %s`: `count` generated rows from `first_id`, as one
    /// statement.
    BatchInsert {
        table: Table,
        first_id: i64,
        count: usize,
    },
}

impl Statement {
    /// The spec's name for the statement.
    pub fn name(&self) -> &'static str {
        match self {
            Statement::GetById { .. } => "get_by_id",
            Statement::UpdateStats { .. } => "update_stats",
            Statement::BatchInsert { .. } => "batch_insert",
        }
    }
}

/// The statements in a report, in a fixed order.
pub const STATEMENTS: [&str; 3] = ["get_by_id", "update_stats", "batch_insert"];

/// `--operation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// get_by_id on a random train row.
    Read,
    /// update_stats on a random train row; 1 in 10 is a batch_insert into test.
    Write,
    /// 80% read, 18% update_stats, 2% batch_insert: MDM reads far more than it writes.
    Mixed,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Mixed => "mixed",
        })
    }
}

/// The dataset a run creates and works on.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub train_rows: i64,
    pub test_rows: i64,
    /// Rows per `batch_insert` (the spec's `batch_size = 1000`).
    pub batch_size: usize,
}

impl Dataset {
    /// `rows` in train and a quarter of that in test (at least one row each).
    pub fn new(rows: i64, batch_size: usize) -> Dataset {
        Dataset {
            train_rows: rows.max(1),
            test_rows: (rows / 4).max(1),
            batch_size: batch_size.max(1),
        }
    }

    /// The dataset's rows as batch_insert statements: (table, first id, rows) for train, then
    /// test, `batch_size` rows each but the last.
    pub fn batches(&self) -> Vec<(Table, i64, usize)> {
        let mut batches = Vec::new();
        for (table, rows) in [
            (Table::Train, self.train_rows),
            (Table::Test, self.test_rows),
        ] {
            let mut id = 1;
            while id <= rows {
                let count = self.batch_size.min((rows - id + 1) as usize);
                batches.push((table, id, count));
                id += count as i64;
            }
        }
        batches
    }

    /// The rows of `_metadata`: what the dataset holds.
    pub fn metadata(&self) -> [(&'static str, String); 3] {
        [
            ("train_rows", self.train_rows.to_string()),
            ("test_rows", self.test_rows.to_string()),
            ("created_by", "poolwatch benchmark".to_string()),
        ]
    }

    /// The next statement for `operation`; `next_test_id` hands out ids for inserted rows.
    pub fn next(
        &self,
        operation: Operation,
        rng: &mut impl Rng,
        next_test_id: impl FnOnce(usize) -> i64,
    ) -> Statement {
        let roll: u32 = rng.random_range(0..100);
        let (read, update) = match operation {
            Operation::Read => (100, 0),
            Operation::Write => (0, 90),
            Operation::Mixed => (80, 18),
        };
        let id = rng.random_range(1..=self.train_rows);
        if roll < read {
            Statement::GetById {
                table: Table::Train,
                id,
            }
        } else if roll < read + update {
            Statement::UpdateStats {
                table: Table::Train,
                id,
                stats: rng.random_range(0..1_000_000),
            }
        } else {
            let count = self.batch_size;
            Statement::BatchInsert {
                table: Table::Test,
                first_id: next_test_id(count),
                count,
            }
        }
    }
}

/// `INSERT INTO {table} VALUES (?, …), …` for `count` rows: one statement per batch, with
/// the placeholders SQLite and DuckDB both take.
pub fn insert_sql(table: Table, count: usize) -> String {
    let one = format!("({})", ["?"; COLUMNS].join(", "));
    format!(
        "INSERT INTO {} VALUES {}",
        table.as_str(),
        vec![one.as_str(); count].join(", ")
    )
}

/// The SQL types a file backend names the dataset's columns with.
pub struct SqlTypes {
    pub integer: &'static str,
    pub real: &'static str,
    pub text: &'static str,
}

/// The dataset's tables, dropped first if they exist, in one batch of SQL that SQLite and DuckDB
/// both run.
pub fn file_schema(types: &SqlTypes) -> String {
    let SqlTypes {
        integer,
        real,
        text,
    } = types;
    let columns: Vec<String> = (0..FEATURES)
        .map(|k| format!("feature_{k} {real} NOT NULL"))
        .collect();
    let mut ddl = String::from(
        "DROP TABLE IF EXISTS train; DROP TABLE IF EXISTS test; DROP TABLE IF EXISTS _metadata;\n",
    );
    for table in ["train", "test"] {
        ddl.push_str(&format!(
            "CREATE TABLE {table} (id {integer} PRIMARY KEY, {}, label {integer} NOT NULL, \
             stats {integer});\n",
            columns.join(", ")
        ));
    }
    ddl.push_str(&format!(
        "CREATE TABLE _metadata (key {text} PRIMARY KEY, value {text} NOT NULL);"
    ));
    ddl
}

/// `get_by_id` with a `?` placeholder (SQLite and DuckDB) for the id.
pub fn get_by_id_sql(table: Table) -> &'static str {
    match table {
        Table::Train => "SELECT * FROM train WHERE id = ?",
        Table::Test => "SELECT * FROM test WHERE id = ?",
    }
}

/// `update_stats` with `?` placeholders (SQLite and DuckDB): the stats, then the id.
pub fn update_stats_sql(table: Table) -> &'static str {
    match table {
        Table::Train => "UPDATE train SET stats = ? WHERE id = ?",
        Table::Test => "UPDATE test SET stats = ? WHERE id = ?",
    }
}

/// The parameters of generated rows `first_id..first_id + count`, in column order, as a
/// driver's values.
pub fn row_values<V>(
    first_id: i64,
    count: usize,
    integer: impl Fn(i64) -> V,
    real: impl Fn(f64) -> V,
    null: impl Fn() -> V,
) -> Vec<V> {
    let mut values = Vec::with_capacity(count * COLUMNS);
    for id in first_id..first_id + count as i64 {
        let (id, features, label) = row(id);
        values.push(integer(id));
        values.extend(features.iter().map(|f| real(*f)));
        values.push(integer(label));
        values.push(null());
    }
    values
}

/// Removes a database file and its companions (`path` + each suffix); missing ones are fine.
pub fn remove_database_files(path: &Path, suffixes: &[&str]) -> Result<(), BenchError> {
    for suffix in suffixes {
        let mut file = path.as_os_str().to_os_string();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BenchError::Setup(format!("removing {file:?}: {e}"))),
        }
    }
    Ok(())
}

/// The values of a generated row: deterministic from its id, so a dataset is the same each run.
pub fn row(id: i64) -> (i64, [f64; FEATURES], i64) {
    let mut features = [0.0; FEATURES];
    for (k, f) in features.iter_mut().enumerate() {
        *f = ((id.wrapping_mul(2_654_435_761 + k as i64 * 40_503)).rem_euclid(10_000)) as f64
            / 10_000.0;
    }
    (id, features, id % 10)
}

/// Why a benchmark step failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{backend}: {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },
    #[error(transparent)]
    Pool(#[from] crate::pools::PoolError),
    #[error("{0}")]
    Setup(String),
}

/// A database the benchmark can drive.
pub trait Backend: Send + Sync + 'static {
    /// `sqlite`, `postgres`…
    fn name(&self) -> &'static str;

    /// Where the dataset lives, as shown in reports (never with a password).
    fn location(&self) -> String;

    /// Creates the dataset afresh over one direct connection, loading it with batch_insert in
    /// batches of `dataset.batch_size`. Connection errors surface here at once, not as a pool
    /// timeout later.
    fn create(&self, dataset: &Dataset) -> Result<(), BenchError>;

    /// Removes what [`Backend::create`] made.
    fn drop_dataset(&self) -> Result<(), BenchError>;
}

/// A backend whose driver blocks: pooled by r2d2, a thread per user.
pub trait BlockingBackend: Backend {
    type Manager: r2d2::ManageConnection;

    /// A manager for the pool's connections.
    fn manager(&self) -> Self::Manager;

    /// Runs one statement on a pooled connection.
    fn execute(
        &self,
        conn: &mut Connection<Self::Manager>,
        statement: &Statement,
    ) -> Result<(), BenchError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn operations_mix_as_documented() {
        let dataset = Dataset::new(1000, 100);
        let mut rng = SmallRng::seed_from_u64(7);
        for (operation, expected) in [
            (Operation::Read, [100.0, 0.0, 0.0]),
            (Operation::Write, [0.0, 90.0, 10.0]),
            (Operation::Mixed, [80.0, 18.0, 2.0]),
        ] {
            let mut counts = [0u32; 3];
            let n = 100_000;
            let mut next = 0;
            for _ in 0..n {
                let s = dataset.next(operation, &mut rng, |count| {
                    next += count as i64;
                    next
                });
                let i = STATEMENTS.iter().position(|x| *x == s.name()).unwrap();
                counts[i] += 1;
                if let Statement::GetById { id, .. } | Statement::UpdateStats { id, .. } = s {
                    assert!((1..=1000).contains(&id));
                }
            }
            for (got, want) in counts.iter().zip(expected) {
                let percent = f64::from(*got) * 100.0 / f64::from(n);
                assert!((percent - want).abs() < 0.5, "{operation}: {counts:?}");
            }
        }
    }

    #[test]
    fn batches_cover_every_row_once() {
        let batches = Dataset::new(2_500, 1_000).batches();
        assert_eq!(
            batches,
            vec![
                (Table::Train, 1, 1000),
                (Table::Train, 1001, 1000),
                (Table::Train, 2001, 500),
                (Table::Test, 1, 625),
            ]
        );
    }

    #[test]
    fn rows_are_deterministic() {
        assert_eq!(row(42), row(42));
        assert_ne!(row(42).1, row(43).1);
        assert!(row(7).1.iter().all(|f| (0.0..1.0).contains(f)));
    }
}
