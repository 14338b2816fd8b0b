//! The benchmark on PostgreSQL: the dataset's tables live in a schema of their own (created at
//! the start, dropped at the end), and each pooled connection prepares the spec's statements
//! once and keeps them with the connection.

use r2d2_postgres::postgres::types::ToSql;
use r2d2_postgres::postgres::{Client, Statement as Prepared};

use super::workload::{Backend, BenchError, COLUMNS, Dataset, FEATURES, Statement, Table, row};
use crate::pools::Connection;
use crate::pools::postgres::{PostgresManager, manager};
use crate::secret::Connection as Endpoint;

pub struct Postgres {
    pub endpoint: Endpoint,
    /// The schema the dataset's tables live in.
    pub schema: String,
    /// Rows per batch_insert during the run, prepared once per connection.
    pub batch_size: usize,
}

impl Postgres {
    /// `schema` must be a plain lower-case identifier: it is written into SQL.
    pub fn new(
        endpoint: Endpoint,
        schema: &str,
        batch_size: usize,
    ) -> Result<Postgres, BenchError> {
        let plain = !schema.is_empty()
            && schema.len() < 64
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !schema.starts_with(|c: char| c.is_ascii_digit());
        if !plain {
            return Err(BenchError::Setup(format!(
                "--dataset {schema:?}: use lower-case letters, digits and _ (it names a schema)"
            )));
        }
        Ok(Postgres {
            endpoint,
            schema: schema.to_string(),
            batch_size,
        })
    }

    fn error(&self, e: r2d2_postgres::postgres::Error) -> BenchError {
        BenchError::Backend {
            backend: "postgres",
            message: self.endpoint.scrub(&crate::pools::error_chain(&e)),
        }
    }

    fn table(&self, table: Table) -> String {
        format!("{}.{}", self.schema, table.as_str())
    }

    fn insert_sql(&self, table: Table, count: usize) -> String {
        let mut sql = format!("INSERT INTO {} VALUES ", self.table(table));
        for r in 0..count {
            if r > 0 {
                sql.push_str(", ");
            }
            let params: Vec<String> = (1..=COLUMNS)
                .map(|c| format!("${}", r * COLUMNS + c))
                .collect();
            sql.push('(');
            sql.push_str(&params.join(", "));
            sql.push(')');
        }
        sql
    }

    fn connect(&self) -> Result<Client, BenchError> {
        use r2d2::ManageConnection;
        manager(&self.endpoint, "poolwatch-benchmark")
            .connect()
            .map_err(|e| self.error(e))
    }

    /// The spec's statements for both tables, prepared on this connection.
    fn prepare(&self, client: &mut Client) -> Result<Statements, BenchError> {
        let mut prepare = |sql: String| client.prepare(&sql).map_err(|e| self.error(e));
        let mut by_table = Vec::new();
        for table in [Table::Train, Table::Test] {
            let name = self.table(table);
            by_table.push([
                prepare(format!("SELECT * FROM {name} WHERE id = $1"))?,
                prepare(format!("UPDATE {name} SET stats = $1 WHERE id = $2"))?,
                prepare(self.insert_sql(table, self.batch_size))?,
            ]);
        }
        let test = by_table.pop().expect("two tables");
        let train = by_table.pop().expect("two tables");
        Ok(Statements { train, test })
    }
}

/// The spec's prepared statements on one connection, per table: get_by_id, update_stats and
/// batch_insert of the run's batch size.
struct Statements {
    train: [Prepared; 3],
    test: [Prepared; 3],
}

impl Statements {
    fn of(&self, statement: &Statement) -> Prepared {
        let (table, index) = match statement {
            Statement::GetById { table, .. } => (table, 0),
            Statement::UpdateStats { table, .. } => (table, 1),
            Statement::BatchInsert { table, .. } => (table, 2),
        };
        match table {
            Table::Train => self.train[index].clone(),
            Table::Test => self.test[index].clone(),
        }
    }
}

/// Rows as statement parameters.
struct Rows {
    ids: Vec<i64>,
    features: Vec<[f64; FEATURES]>,
    labels: Vec<i64>,
    stats: Option<i64>,
}

impl Rows {
    fn new(first_id: i64, count: usize) -> Rows {
        let mut rows = Rows {
            ids: Vec::with_capacity(count),
            features: Vec::with_capacity(count),
            labels: Vec::with_capacity(count),
            stats: None,
        };
        for id in first_id..first_id + count as i64 {
            let (id, features, label) = row(id);
            rows.ids.push(id);
            rows.features.push(features);
            rows.labels.push(label);
        }
        rows
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(self.ids.len() * COLUMNS);
        for i in 0..self.ids.len() {
            params.push(&self.ids[i]);
            for f in &self.features[i] {
                params.push(f);
            }
            params.push(&self.labels[i]);
            params.push(&self.stats);
        }
        params
    }
}

impl Backend for Postgres {
    type Manager = PostgresManager;

    fn name(&self) -> &'static str {
        "postgres"
    }

    fn location(&self) -> String {
        format!("{} schema {}", self.endpoint.endpoint(), self.schema)
    }

    fn manager(&self) -> PostgresManager {
        manager(&self.endpoint, "poolwatch-benchmark")
    }

    fn create(&self, dataset: &Dataset) -> Result<(), BenchError> {
        let mut client = self.connect()?;
        let columns: Vec<String> = (0..FEATURES)
            .map(|k| format!("feature_{k} double precision NOT NULL"))
            .collect();
        let schema = &self.schema;
        let mut ddl = format!(
            "SET client_min_messages = warning; DROP SCHEMA IF EXISTS {schema} CASCADE; \
             CREATE SCHEMA {schema};\n"
        );
        for table in [Table::Train, Table::Test] {
            ddl.push_str(&format!(
                "CREATE TABLE {} (id bigint PRIMARY KEY, {}, label bigint NOT NULL, stats bigint);\n",
                self.table(table),
                columns.join(", ")
            ));
        }
        ddl.push_str(&format!(
            "CREATE TABLE {schema}._metadata (key text PRIMARY KEY, value text NOT NULL);"
        ));
        client.batch_execute(&ddl).map_err(|e| self.error(e))?;
        let mut tx = client.transaction().map_err(|e| self.error(e))?;
        for (table, first_id, count) in dataset.batches() {
            let batch = Rows::new(first_id, count);
            tx.execute(&self.insert_sql(table, count), &batch.params())
                .map_err(|e| self.error(e))?;
        }
        for (key, value) in dataset.metadata() {
            tx.execute(
                &format!("INSERT INTO {schema}._metadata (key, value) VALUES ($1, $2)"),
                &[&key, &value],
            )
            .map_err(|e| self.error(e))?;
        }
        tx.commit().map_err(|e| self.error(e))?;
        client
            .batch_execute(&format!("ANALYZE {0}.train; ANALYZE {0}.test", schema))
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    fn drop_dataset(&self) -> Result<(), BenchError> {
        let mut client = self.connect()?;
        client
            .batch_execute(&format!(
                "SET client_min_messages = warning; DROP SCHEMA IF EXISTS {} CASCADE",
                self.schema
            ))
            .map_err(|e| self.error(e))
    }

    fn execute(
        &self,
        conn: &mut Connection<PostgresManager>,
        statement: &Statement,
    ) -> Result<(), BenchError> {
        if r2d2::PooledConnection::extensions(conn)
            .get::<Statements>()
            .is_none()
        {
            let prepared = self.prepare(conn)?;
            r2d2::PooledConnection::extensions_mut(conn).insert(prepared);
        }
        let prepared = r2d2::PooledConnection::extensions(conn)
            .get::<Statements>()
            .map(|s| s.of(statement))
            .ok_or_else(|| BenchError::Setup("statements were not prepared".into()))?;
        let client: &mut Client = conn;
        let result = match *statement {
            Statement::GetById { id, .. } => client.query(&prepared, &[&id]).map(|_| ()),
            Statement::UpdateStats { id, stats, .. } => {
                client.execute(&prepared, &[&stats, &id]).map(|_| ())
            }
            Statement::BatchInsert {
                first_id, count, ..
            } if count == self.batch_size => {
                let rows = Rows::new(first_id, count);
                client.execute(&prepared, &rows.params()).map(|_| ())
            }
            Statement::BatchInsert {
                table,
                first_id,
                count,
            } => {
                let rows = Rows::new(first_id, count);
                client
                    .execute(&self.insert_sql(table, count), &rows.params())
                    .map(|_| ())
            }
        };
        result.map_err(|e| self.error(e))
    }
}
