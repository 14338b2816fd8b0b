//! Secrets never leave this module in readable form: a connection's password lives in
//! [`Connection`], whose `Debug` and `Display` print the endpoint without it, and every message
//! built from a driver error is passed through [`Connection::scrub`] before anyone sees it.
//! Its TLS settings travel with it: the driver does not know libpq's `sslrootcert` and the
//! others, so they are taken out of the connection string here.

use std::fmt;
use std::str::FromStr;

use crate::config::Env;
use crate::tls::client::{self, TlsSettings};

const INVALID: &str =
    "not a valid connection string (expected postgres://user@host:port/dbname or key=value pairs)";

/// A database connection: the driver's config (password included), its TLS settings, and how to
/// show it safely.
#[derive(Clone)]
pub struct Connection {
    config: tokio_postgres::Config,
    endpoint: String,
    tls: TlsSettings,
}

impl Connection {
    /// Parses a URL (`postgres://user:pw@host:port/db?sslmode=…`) or key=value string. The error
    /// never echoes the input, which may hold a password.
    pub fn parse(dsn: &str) -> Result<Connection, String> {
        let (rest, tls) = client::extract(dsn)
            .map_err(|e| e.map_or_else(|| INVALID.to_string(), |e| e.to_string()))?;
        let config = tokio_postgres::Config::from_str(&rest).map_err(|_| INVALID.to_string())?;
        if config.get_hosts().is_empty() {
            return Err("the connection string names no host".to_string());
        }
        let endpoint = endpoint_of(&config);
        let mut connection = Connection {
            config,
            endpoint,
            tls,
        };
        connection.apply_tls();
        Ok(connection)
    }

    /// Completes the TLS settings the connection string left unset, from the target's config
    /// (`configured`, paths already resolved) and then libpq's environment (`PGSSLMODE`…), and
    /// checks the result, reading the files it names. Giving one parameter both in the string
    /// and in the config is an error.
    pub fn complete_tls(&mut self, configured: TlsSettings, env: Env) -> Result<(), String> {
        if let Some(key) = self.tls.overlap(&configured) {
            return Err(client::TlsError::Twice(key).to_string());
        }
        let from_env =
            TlsSettings::from_env(env).map_err(|(var, error)| format!("{var}: {error}"))?;
        self.tls = self.tls.clone().or(configured).or(from_env);
        self.apply_tls();
        self.tls.check().map_err(|e| e.to_string())
    }

    fn apply_tls(&mut self) {
        let mode = if self.unix_only() {
            tokio_postgres::config::SslMode::Disable
        } else {
            self.tls.driver_mode()
        };
        self.config.ssl_mode(mode);
    }

    /// libpq uses no TLS on Unix-domain sockets, whatever sslmode says.
    fn unix_only(&self) -> bool {
        use tokio_postgres::config::Host;
        self.config
            .get_hosts()
            .iter()
            .all(|h| matches!(h, Host::Unix(_)))
    }

    pub fn tls(&self) -> &TlsSettings {
        &self.tls
    }

    /// The TLS connector for a new connection (its files read now); `None`: plain.
    pub fn tls_connector(
        &self,
    ) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, client::TlsError> {
        if self.unix_only() {
            return Ok(None);
        }
        self.tls.connector()
    }

    /// A target the agent does not connect to (the OTLP receiver's pools): only an endpoint to
    /// show.
    pub fn none(endpoint: &str) -> Connection {
        Connection {
            config: tokio_postgres::Config::new(),
            endpoint: endpoint.to_string(),
            tls: TlsSettings::default(),
        }
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

/// A bearer token clients must present. It prints as `***` and is compared in constant time, so
/// neither a log line nor response timing gives it away.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(token: String) -> Token {
        Token(token)
    }

    /// Whether an `Authorization` header value is `Bearer <this token>`.
    pub fn authorizes(&self, header: Option<&[u8]>) -> bool {
        let Some(presented) = header.and_then(|h| {
            let scheme = h.get(..7)?;
            scheme
                .eq_ignore_ascii_case(b"bearer ")
                .then(|| h[7..].trim_ascii())
        }) else {
            return false;
        };
        let expected = self.0.as_bytes();
        let differences = presented
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        differences == 0 && presented.len() == expected.len()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
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
    fn a_token_authorizes_only_itself_and_never_prints() {
        let token = Token::new("t0ken-4b2".into());
        assert!(token.authorizes(Some(b"Bearer t0ken-4b2")));
        assert!(token.authorizes(Some(b"bearer t0ken-4b2")));
        for wrong in [
            &b"Bearer t0ken-4b"[..],
            b"Bearer t0ken-4b2x",
            b"Basic t0ken-4b2",
            b"",
        ] {
            assert!(!token.authorizes(Some(wrong)), "{wrong:?}");
        }
        assert!(!token.authorizes(None));
        assert!(!format!("{token} {token:?}").contains("t0ken"));
    }

    #[test]
    fn a_bad_string_is_not_echoed() {
        let err = Connection::parse("postgres://u:s3cret@host:notaport/db").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
    }
}
