//! Sources: each one samples one target into the pool model. A source knows its system and
//! nothing of cadence, deadlines or telemetry: the scheduler owns those.

pub mod churn;
pub mod duckdb;
pub mod files;
pub mod holders;
pub mod host;
pub mod inprocess;
pub mod mdm;
pub mod otlp;
pub mod pgbouncer;
pub mod postgres;
pub mod rows;
pub mod session;
pub mod sqlite;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{SourceConfig, Target};
use crate::model::TargetSample;
use crate::receiver::Receiver;
use files::{Engine, FileSource};

/// Why a sample failed; the `kind` label of `poolwatch_target_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The target could not be reached or closed the connection.
    Connect,
    /// The target refused our credentials.
    Auth,
    /// A query failed on the server.
    Query,
    /// The answer had a shape we cannot read.
    Protocol,
    /// The sample did not finish before its deadline.
    Timeout,
    /// A certificate check failed (the server's, or ours as the server judged it), or a
    /// certificate or key file could not be used.
    Certificate,
    /// TLS failed otherwise: the server refused it under `sslmode=require` or later, or the
    /// handshake broke.
    Tls,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::Auth,
        ErrorKind::Query,
        ErrorKind::Protocol,
        ErrorKind::Timeout,
        ErrorKind::Certificate,
        ErrorKind::Tls,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Auth => "auth",
            ErrorKind::Query => "query",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Certificate => "certificate",
            ErrorKind::Tls => "tls",
        }
    }
}

/// A failed sample. The message is already free of secrets.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleError {
    pub kind: ErrorKind,
    pub message: String,
}

impl fmt::Display for SampleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for SampleError {}

pub type SampleFuture<'a> =
    Pin<Box<dyn Future<Output = Result<TargetSample, SampleError>> + Send + 'a>>;

/// One target's sampler.
pub trait Source: Send {
    /// Takes one sample. May be cancelled at any await point (the deadline passed).
    fn sample(&mut self) -> SampleFuture<'_>;

    /// Closes the connection, after a cancelled or failed sample; the next sample reconnects.
    fn reset(&mut self);
}

/// Builds the source a target's config declares; the otlp target reads `receiver`.
pub fn build(
    target: &Target,
    timeout: Duration,
    receiver: Option<&Arc<Receiver>>,
) -> Box<dyn Source> {
    match &target.source {
        SourceConfig::Otlp => Box::new(otlp::Otlp::new(receiver.cloned())),
        SourceConfig::Pgbouncer { connection } => {
            Box::new(pgbouncer::PgBouncer::new(connection, timeout))
        }
        SourceConfig::Postgres {
            connection,
            pool_key,
        } => Box::new(postgres::Postgres::new(
            connection,
            postgres::Pools {
                key: *pool_key,
                databases: None,
            },
            timeout,
        )),
        SourceConfig::Sqlite { path } => Box::new(FileSource::new(Engine::Sqlite, path, timeout)),
        SourceConfig::Duckdb { path } => Box::new(FileSource::new(Engine::Duckdb, path, timeout)),
        SourceConfig::Mdm { home } => Box::new(mdm::Mdm::new(home, timeout)),
        SourceConfig::InProcess { pools, .. } => {
            Box::new(inprocess::InProcess::new(Arc::clone(pools)))
        }
    }
}
