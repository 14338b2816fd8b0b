//! PostgreSQL connections for the instrumented pool: r2d2_postgres with the spec's
//! `POSTGRES_CONNECT_ARGS` applied to the caller's connection (whose password stays in
//! [`crate::secret::Connection`]).

use std::time::Duration;

use r2d2_postgres::PostgresConnectionManager;
use r2d2_postgres::postgres::NoTls;

use crate::secret::Connection;

pub type PostgresManager = PostgresConnectionManager<NoTls>;

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
    PostgresConnectionManager::new(config.into(), NoTls)
}
