//! Secrets never leave this module in readable form: a connection's password lives in
//! [`Connection`], whose `Debug` and `Display` print the endpoint without it, and every message
//! built from a driver error is passed through [`Connection::scrub`] before anyone sees it.

use std::fmt;
use std::str::FromStr;

/// A database connection: the driver's config (password included) and how to show it safely.
#[derive(Clone)]
pub struct Connection {
    config: tokio_postgres::Config,
    endpoint: String,
}

impl Connection {
    /// Parses a URL (`postgres://user:pw@host:port/db`) or key=value string. The error never
    /// echoes the input, which may hold a password.
    pub fn parse(dsn: &str) -> Result<Connection, String> {
        let config = tokio_postgres::Config::from_str(dsn).map_err(|_| {
            "not a valid connection string (expected postgres://user@host:port/dbname or \
             key=value pairs)"
                .to_string()
        })?;
        if config.get_hosts().is_empty() {
            return Err("the connection string names no host".to_string());
        }
        Ok(Connection::from_config(config))
    }

    /// A connection built field by field (MDM's registry gives host, port, user, password), so
    /// the password never passes through a URL string.
    pub fn from_config(config: tokio_postgres::Config) -> Connection {
        let endpoint = endpoint_of(&config);
        Connection { config, endpoint }
    }

    pub fn has_password(&self) -> bool {
        self.config.get_password().is_some()
    }

    pub fn set_password(&mut self, password: &str) {
        self.config.password(password);
    }

    /// The driver config, for connecting. Never format it.
    pub fn driver_config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// `postgres://user@host:port/dbname`, without the password.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Removes the password from a message built outside our control (a driver error).
    pub fn scrub(&self, message: &str) -> String {
        match self.config.get_password() {
            Some(pw) if !pw.is_empty() => {
                let pw = String::from_utf8_lossy(pw);
                message.replace(pw.as_ref(), "***")
            }
            _ => message.to_string(),
        }
    }
}

fn endpoint_of(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default();
    format!("postgres://{user}{host}:{port}/{db}")
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Connection").field(&self.endpoint).finish()
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_and_debug_hide_the_password() {
        let c = Connection::parse("postgres://monitor:hunter2@db.example:6432/pgbouncer").unwrap();
        assert!(c.has_password());
        assert_eq!(c.endpoint(), "postgres://monitor@db.example:6432/pgbouncer");
        assert!(!format!("{c:?} {c}").contains("hunter2"));
        assert_eq!(c.scrub("auth failed for hunter2"), "auth failed for ***");
    }

    #[test]
    fn key_value_strings_work_too() {
        let c = Connection::parse("host=127.0.0.1 port=5433 user=u password=pw dbname=d").unwrap();
        assert_eq!(c.endpoint(), "postgres://u@127.0.0.1:5433/d");
    }

    #[test]
    fn a_bad_string_is_not_echoed() {
        let err = Connection::parse("postgres://u:s3cret@host:notaport/db").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
    }
}
