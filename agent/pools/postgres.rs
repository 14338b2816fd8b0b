//! PostgreSQL connections for the instrumented pool: tokio-postgres sessions with the spec's
//! `POSTGRES_CONNECT_ARGS` applied to the caller's connection (whose password stays in
//! [`crate::secret::Connection`]), each with its own cache of prepared statements.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, Statement};

use crate::secret::Connection;

/// One pooled session: the client, and the statements prepared on it so far by their SQL.
pub struct Session {
    pub client: Client,
    prepared: HashMap<String, Statement>,
}

impl Session {
    /// `sql` prepared on this session, once: later calls return the same statement.
    pub async fn prepare_cached(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        self.prepared.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

/// Opens [`Session`]s for bb8; each session's connection runs as a task on the runtime that
/// opened it.
pub struct PostgresManager {
    config: tokio_postgres::Config,
    sessions: Sessions,
}

impl PostgresManager {
    /// The tasks of the sessions this manager opens, to wait for their end.
    pub fn sessions(&self) -> Sessions {
        self.sessions.clone()
    }
}

/// The connection tasks of a manager's sessions.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<Vec<JoinHandle<()>>>>);

impl Sessions {
    fn add(&self, task: JoinHandle<()>) {
        let mut tasks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Waits, at most `within`, until every session has ended: once its client is dropped, a
    /// session's task says goodbye to the server (a Terminate message) and closes the socket.
    pub async fn ended(&self, within: Duration) {
        let tasks = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        let _ = tokio::time::timeout(within, futures_util::future::join_all(tasks)).await;
    }
}

impl bb8::ManageConnection for PostgresManager {
    type Connection = Session;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<Session, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(NoTls).await?;
        self.sessions.add(tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "pooled PostgreSQL connection ended");
            }
        }));
        Ok(Session {
            client,
            prepared: HashMap::new(),
        })
    }

    /// The spec's `pool_pre_ping`: an empty query, one round trip.
    async fn is_valid(&self, session: &mut Session) -> Result<(), tokio_postgres::Error> {
        session.client.simple_query("").await.map(|_| ())
    }

    fn has_broken(&self, session: &mut Session) -> bool {
        session.client.is_closed()
    }
}

/// The spec's `POSTGRES_CONNECT_ARGS`; `application_name` names the pool's sessions in
/// `pg_stat_activity` (the spec uses `mdm`).
pub fn manager(connection: &Connection, application_name: &str) -> PostgresManager {
    let mut config = connection.driver_config().clone();
    config
        .connect_timeout(Duration::from_secs(10))
        .application_name(application_name)
        .options("-c statement_timeout=300000")
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(10))
        .keepalives_retries(5);
    PostgresManager {
        config,
        sessions: Sessions::default(),
    }
}
