//! The one connection a source holds to its target: opened lazily, with a connect timeout and
//! keepalives, closed for good on `reset` (its I/O task is aborted, so a hung peer cannot keep a
//! second connection alive behind our back). TLS follows the target's `sslmode` (see
//! [`crate::tls::client`]). Errors come back classified and scrubbed.

use std::time::Duration;

use futures_util::future::try_join_all;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::rows::Rows;
use super::{ErrorKind, SampleError};
use crate::secret::Connection;
use crate::tls;

/// What the session asks of the server at startup.
#[derive(Clone, Debug, Default)]
pub struct Startup {
    /// PostgreSQL `-c name=value` settings: read-only, statement timeout… PgBouncer's admin
    /// console refuses `options`, so its sessions send none.
    pub settings: Vec<(String, String)>,
}

pub struct Session {
    connection: Connection,
    startup: Startup,
    timeout: Duration,
    open: Option<(Client, JoinHandle<()>)>,
}

impl Session {
    pub fn new(connection: Connection, startup: Startup, timeout: Duration) -> Session {
        Session {
            connection,
            startup,
            timeout,
            open: None,
        }
    }

    /// Runs simple-protocol queries (the only protocol PgBouncer's console speaks), pipelined:
    /// all are sent at once and answered in order, in one round trip instead of one each. The
    /// first that fails fails them all.
    pub async fn queries<const N: usize>(
        &mut self,
        sql: [&str; N],
    ) -> Result<[Rows; N], SampleError> {
        if self.open.as_ref().is_some_and(|(c, _)| c.is_closed()) {
            self.reset();
        }
        if self.open.is_none() {
            self.open = Some(self.connect().await?);
        }
        let Some((client, _)) = &self.open else {
            unreachable!("connected just above");
        };
        // Polled together, the queries are queued on the connection in order before the first
        // answer is awaited: that is tokio-postgres' pipelining.
        match try_join_all(sql.map(|q| client.simple_query(q))).await {
            Ok(answers) => {
                let mut answers = answers.into_iter().map(Rows::from_messages);
                // try_join_all answers one for each of the N queries.
                Ok(std::array::from_fn(|_| answers.next().unwrap_or_default()))
            }
            Err(e) => {
                let error = self.classify(&e);
                if client.is_closed() {
                    self.reset();
                }
                Err(error)
            }
        }
    }

    /// Closes the connection now.
    pub fn reset(&mut self) {
        if let Some((_, task)) = self.open.take() {
            task.abort();
        }
    }

    async fn connect(&self) -> Result<(Client, JoinHandle<()>), SampleError> {
        let mut config = self.connection.driver_config().clone();
        config
            .connect_timeout(self.timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .application_name("poolwatch");
        if !self.startup.settings.is_empty() {
            let mut options = config.get_options().unwrap_or_default().to_string();
            for (name, value) in &self.startup.settings {
                options.push_str(&format!(" -c {name}={value}"));
            }
            config.options(options.trim());
        }
        let tls = self.connection.tls_connector().map_err(|e| SampleError {
            kind: ErrorKind::Certificate,
            message: format!("{e} ({})", self.connection.endpoint()),
        })?;
        // The connection ends when the client is dropped or the peer goes; either way the next
        // query notices through `is_closed`.
        let (client, task) = match tls {
            None => {
                let (client, connection) =
                    config.connect(NoTls).await.map_err(|e| self.classify(&e))?;
                (client, tokio::spawn(async move { drop(connection.await) }))
            }
            Some(tls) => {
                let (client, connection) =
                    config.connect(tls).await.map_err(|e| self.classify(&e))?;
                (client, tokio::spawn(async move { drop(connection.await) }))
            }
        };
        Ok((client, task))
    }

    fn classify(&self, error: &tokio_postgres::Error) -> SampleError {
        if let Some(tls) = tls_error(error) {
            return SampleError {
                kind: tls.0,
                message: format!(
                    "{} (sslmode={}, {})",
                    self.connection.scrub(&tls.1),
                    self.connection.tls().mode().as_str(),
                    self.connection.endpoint()
                ),
            };
        }
        // The driver's own text is often only the outer half ("invalid configuration"); the
        // reason ("password missing") is its source, so both are read.
        let mut message = error.to_string();
        if let Some(db) = error.as_db_error() {
            message = format!("{}: {}", db.code().code(), db.message());
        } else if let Some(source) = std::error::Error::source(error) {
            message = format!("{message}: {source}");
        }
        let kind = match error.code() {
            Some(c) if *c == SqlState::INVALID_PASSWORD => ErrorKind::Auth,
            Some(c) if *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => ErrorKind::Auth,
            Some(_) => ErrorKind::Query,
            None if error.is_closed() => ErrorKind::Connect,
            None => {
                if message.contains("timed out") {
                    ErrorKind::Timeout
                } else if message.contains("password") || message.contains("authentication") {
                    ErrorKind::Auth
                } else if message.starts_with("error connecting") || message.contains("connection")
                {
                    ErrorKind::Connect
                } else {
                    ErrorKind::Protocol
                }
            }
        };
        if message.ends_with("password missing") {
            message.push_str(" (set PGPASSWORD, or password_file or password_env in the config)");
        }
        SampleError {
            kind,
            message: format!(
                "{} ({})",
                self.connection.scrub(&message),
                self.connection.endpoint()
            ),
        }
    }
}

/// A TLS failure: a certificate check (which one) or another TLS problem. The driver reports
/// every TLS failure as one kind whose text starts as below; the certificate checks are read
/// from the rustls error inside.
fn tls_error(error: &tokio_postgres::Error) -> Option<(ErrorKind, String)> {
    let source = std::error::Error::source(error);
    if let Some(problem) = source
        .and_then(tls::rustls_error)
        .and_then(tls::certificate_problem)
    {
        return Some((
            ErrorKind::Certificate,
            format!("certificate check failed: {problem}"),
        ));
    }
    let tls_failed = error
        .to_string()
        .starts_with("error performing TLS handshake")
        || source.and_then(tls::rustls_error).is_some();
    tls_failed.then(|| {
        let detail = source.map(ToString::to_string).unwrap_or_default();
        (ErrorKind::Tls, format!("TLS failed: {detail}"))
    })
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reset();
    }
}
