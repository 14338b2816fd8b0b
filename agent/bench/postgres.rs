//! The benchmark on PostgreSQL: the dataset's tables live in a schema of their own (created at
//! the start, dropped at the end), and each pooled session prepares the spec's statements the
//! first time it runs them and keeps them. Its users are tasks ([`crate::bench::run_tasks`]).

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::workload::{Backend, BenchError, COLUMNS, Dataset, FEATURES, Statement, Table, row};
use crate::pools::postgres::{PostgresManager, Session, manager};
use crate::secret::Connection as Endpoint;

pub struct Postgres {
    pub endpoint: Endpoint,
    /// The schema the dataset's tables live in.
    pub schema: String,
    /// Rows per batch_insert during the run, prepared once per connection.
    pub batch_size: usize,
    /// The spec's statements by table (train, test): get_by_id, update_stats and batch_insert
    /// of `batch_size` rows.
    sql: [[String; 3]; 2],
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
        let mut postgres = Postgres {
            endpoint,
            schema: schema.to_string(),
            batch_size,
            sql: Default::default(),
        };
        postgres.sql = [Table::Train, Table::Test].map(|table| {
            let name = postgres.table(table);
            [
                format!("SELECT * FROM {name} WHERE id = $1"),
                format!("UPDATE {name} SET stats = $1 WHERE id = $2"),
                postgres.insert_sql(table, batch_size),
            ]
        });
        Ok(postgres)
    }

    fn error(&self, e: tokio_postgres::Error) -> BenchError {
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

    /// One session outside the pool, on an event loop of its own, for `work`: creating and
    /// dropping the dataset.
    fn direct<T>(
        &self,
        work: impl AsyncFnOnce(&mut Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, BenchError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BenchError::Setup(format!("starting an event loop: {e}")))?;
        let manager = self.manager();
        let sessions = manager.sessions();
        runtime.block_on(async {
            let mut session = bb8::ManageConnection::connect(&manager)
                .await
                .map_err(|e| self.error(e))?;
            let result = work(&mut session.client).await.map_err(|e| self.error(e));
            drop(session);
            sessions.ended(std::time::Duration::from_secs(5)).await;
            result
        })
    }

    /// A pooled session's manager.
    pub fn manager(&self) -> PostgresManager {
        manager(&self.endpoint, "poolwatch-benchmark")
    }

    /// Runs one statement on a pooled session.
    pub async fn execute(
        &self,
        session: &mut Session,
        statement: &Statement,
    ) -> Result<(), BenchError> {
        let sql = |table: Table, index: usize| &self.sql[table as usize][index];
        let run = async {
            match *statement {
                Statement::GetById { table, id } => {
                    let prepared = session.prepare_cached(sql(table, 0)).await?;
                    session.client.query(&prepared, &[&id]).await?;
                }
                Statement::UpdateStats { table, id, stats } => {
                    let prepared = session.prepare_cached(sql(table, 1)).await?;
                    session.client.execute(&prepared, &[&stats, &id]).await?;
                }
                Statement::BatchInsert {
                    table,
                    first_id,
                    count,
                } => {
                    let rows = Rows::new(first_id, count);
                    // The run's batch size is prepared once; a shorter last batch is not.
                    if count == self.batch_size {
                        let prepared = session.prepare_cached(sql(table, 2)).await?;
                        session.client.execute(&prepared, &rows.params()).await?;
                    } else {
                        let sql = self.insert_sql(table, count);
                        session.client.execute(&sql, &rows.params()).await?;
                    }
                }
            }
            Ok(())
        };
        run.await.map_err(|e| self.error(e))
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
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn location(&self) -> String {
        format!("{} schema {}", self.endpoint.endpoint(), self.schema)
    }

    fn create(&self, dataset: &Dataset) -> Result<(), BenchError> {
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
        self.direct(async |client| {
            client.batch_execute(&ddl).await?;
            let tx = client.transaction().await?;
            for (table, first_id, count) in dataset.batches() {
                let batch = Rows::new(first_id, count);
                tx.execute(&self.insert_sql(table, count), &batch.params())
                    .await?;
            }
            for (key, value) in dataset.metadata() {
                tx.execute(
                    &format!("INSERT INTO {schema}._metadata (key, value) VALUES ($1, $2)"),
                    &[&key, &value],
                )
                .await?;
            }
            tx.commit().await?;
            client
                .batch_execute(&format!("ANALYZE {0}.train; ANALYZE {0}.test", schema))
                .await
        })
    }

    fn drop_dataset(&self) -> Result<(), BenchError> {
        let sql = format!(
            "SET client_min_messages = warning; DROP SCHEMA IF EXISTS {} CASCADE",
            self.schema
        );
        self.direct(async |client| client.batch_execute(&sql).await)
    }
}
