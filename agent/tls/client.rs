//! libpq's TLS parameters for a target (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) and the
//! rustls connector they make, with libpq's semantics:
//!
//! | sslmode | TLS | chain checked | host name checked |
//! |---|---|---|---|
//! | `disable` | never | — | — |
//! | `prefer` (default) | if the server accepts; plain if it refuses | only with `sslrootcert` | no |
//! | `require` | always | only with `sslrootcert` (then as `verify-ca`) | no |
//! | `verify-ca` | always | yes (`sslrootcert` required) | no |
//! | `verify-full` | always | yes (`sslrootcert` required) | yes |
//!
//! They come from the connection string, the target's `tls:` section, or `PGSSLMODE`,
//! `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`, in that order of precedence. The files are read
//! when a connection opens, so a renewed certificate is used on the next reconnect.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use serde::Deserialize;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{PemError, provider, read_certificates, read_private_key};

/// How much TLS a connection insists on; libpq's `sslmode` (its `allow` is not offered).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(text: &str) -> Result<SslMode, TlsError> {
        [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ]
        .into_iter()
        .find(|m| m.as_str() == text)
        .ok_or(TlsError::BadMode)
    }
}

/// Why TLS settings cannot be used. Never carries a file's content or a password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("sslmode must be disable, prefer, require, verify-ca or verify-full")]
    BadMode,
    #[error("`{0}` is not supported by poolwatch")]
    Unsupported(String),
    #[error(
        "sslrootcert=system is not supported: give the file of the CA that signed the server's \
         certificate"
    )]
    SystemRoots,
    #[error("{0} is given both in the url and in the tls section")]
    Twice(&'static str),
    #[error("sslmode={0} needs sslrootcert: the CA that signed the server's certificate")]
    NoRootCert(&'static str),
    #[error("sslcert and sslkey go together: give both or neither")]
    HalfClientCert,
    #[error("sslrootcert {0} holds no usable CA certificate")]
    NoUsableRoot(String),
    #[error("sslcert and sslkey cannot be used together (a key that does not match?)")]
    ClientCert,
    #[error("{0}")]
    Pem(#[from] PemError),
}

/// The environment variables libpq reads for these parameters.
pub const ENV: [(&str, &str); 4] = [
    ("PGSSLMODE", "sslmode"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
];

/// libpq parameters about TLS that poolwatch does not implement: refused by name, so that a
/// setting the operator relies on is never silently ignored.
const UNSUPPORTED: &[&str] = &[
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslcertmode",
    "sslcompression",
    "sslsni",
    "requiressl",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
];

/// A target's TLS parameters, each as given (unset: the next source, then libpq's default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// `disable`, `prefer` (default), `require`, `verify-ca` or `verify-full`.
    #[serde(rename = "sslmode")]
    pub mode: Option<SslMode>,
    /// PEM file of the CA(s) the server's certificate must chain to.
    #[serde(rename = "sslrootcert")]
    pub root_cert: Option<PathBuf>,
    /// PEM file of the client certificate, for servers that authenticate clients by it.
    #[serde(rename = "sslcert")]
    pub cert: Option<PathBuf>,
    /// PEM file of the client certificate's key (unencrypted).
    #[serde(rename = "sslkey")]
    pub key: Option<PathBuf>,
}

impl TlsSettings {
    /// Takes one connection-string parameter if it is about TLS: `Ok(false)` for any other key.
    pub fn take(&mut self, key: &str, value: &str) -> Result<bool, TlsError> {
        match key {
            "sslmode" => self.mode = Some(SslMode::parse(value)?),
            "sslrootcert" if value == "system" => return Err(TlsError::SystemRoots),
            "sslrootcert" => self.root_cert = Some(value.into()),
            "sslcert" => self.cert = Some(value.into()),
            "sslkey" => self.key = Some(value.into()),
            other if UNSUPPORTED.contains(&other) => {
                return Err(TlsError::Unsupported(other.to_string()));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `PGSSLMODE` and the others; an error names the variable.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<TlsSettings, (String, TlsError)> {
        let mut settings = TlsSettings::default();
        for (var, key) in ENV {
            if let Some(value) = env(var).filter(|v| !v.is_empty()) {
                settings
                    .take(key, &value)
                    .map_err(|e| (var.to_string(), e))?;
            }
        }
        Ok(settings)
    }

    /// The first parameter both set, if any.
    pub fn overlap(&self, other: &TlsSettings) -> Option<&'static str> {
        [
            ("sslmode", self.mode.is_some() && other.mode.is_some()),
            (
                "sslrootcert",
                self.root_cert.is_some() && other.root_cert.is_some(),
            ),
            ("sslcert", self.cert.is_some() && other.cert.is_some()),
            ("sslkey", self.key.is_some() && other.key.is_some()),
        ]
        .into_iter()
        .find_map(|(key, both)| both.then_some(key))
    }

    /// These settings, with what they leave unset taken from `fallback`.
    pub fn or(self, fallback: TlsSettings) -> TlsSettings {
        TlsSettings {
            mode: self.mode.or(fallback.mode),
            root_cert: self.root_cert.or(fallback.root_cert),
            cert: self.cert.or(fallback.cert),
            key: self.key.or(fallback.key),
        }
    }

    /// Relative paths made relative to `base` (the config file's directory).
    pub fn relative_to(self, base: &Path) -> TlsSettings {
        let join = |p: Option<PathBuf>| p.map(|p| base.join(p));
        TlsSettings {
            mode: self.mode,
            root_cert: join(self.root_cert),
            cert: join(self.cert),
            key: join(self.key),
        }
    }

    pub fn mode(&self) -> SslMode {
        self.mode.unwrap_or_default()
    }

    /// What the driver is told: it knows whether to ask for TLS, not how to verify it.
    pub fn driver_mode(&self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Driver;
        match self.mode() {
            SslMode::Disable => Driver::Disable,
            SslMode::Prefer => Driver::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Driver::Require,
        }
    }

    /// Checks the settings as a whole and reads every file they name, as a connection will.
    pub fn check(&self) -> Result<(), TlsError> {
        self.client_config().map(|_| ())
    }

    /// The connector for a new connection, the files read now; `None` with `sslmode=disable`.
    pub fn connector(&self) -> Result<Option<MakeRustlsConnect>, TlsError> {
        Ok(self.client_config()?.map(MakeRustlsConnect::new))
    }

    fn client_config(&self) -> Result<Option<ClientConfig>, TlsError> {
        let mode = self.mode();
        if mode == SslMode::Disable {
            return Ok(None);
        }
        let provider = provider();
        let verifier: Arc<dyn ServerCertVerifier> = match (&self.root_cert, mode) {
            (None, SslMode::VerifyCa | SslMode::VerifyFull) => {
                return Err(TlsError::NoRootCert(mode.as_str()));
            }
            (None, _) => Arc::new(Lenient {
                provider: provider.clone(),
                chain: None,
            }),
            (Some(path), _) => {
                let mut roots = RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(read_certificates(path)?);
                let no_root = || TlsError::NoUsableRoot(path.display().to_string());
                if added == 0 {
                    return Err(no_root());
                }
                let full =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|_| no_root())?;
                if mode == SslMode::VerifyFull {
                    full
                } else {
                    // libpq: `require` (and `prefer`) with a root certificate check the chain as
                    // `verify-ca` does.
                    Arc::new(Lenient {
                        provider: provider.clone(),
                        chain: Some(full),
                    })
                }
            }
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|_| TlsError::ClientCert)?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&self.cert, &self.key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(read_certificates(cert)?, read_private_key(key)?)
                .map_err(|_| TlsError::ClientCert)?,
            _ => return Err(TlsError::HalfClientCert),
        };
        Ok(Some(config))
    }
}

/// Splits a connection string (URL or key=value) into what the driver reads and the TLS
/// parameters, which it does not know. Errors never echo the input.
pub fn extract(dsn: &str) -> Result<(String, TlsSettings), Option<TlsError>> {
    let mut settings = TlsSettings::default();
    let rest = if is_url(dsn) {
        extract_url(dsn, &mut settings)?
    } else {
        extract_pairs(dsn, &mut settings)?
    };
    Ok((rest, settings))
}

fn is_url(dsn: &str) -> bool {
    dsn.starts_with("postgres://") || dsn.starts_with("postgresql://")
}

/// The query starts at the first `?` after the credentials, which end at the first `@`: as the
/// driver reads a URL.
fn extract_url(dsn: &str, settings: &mut TlsSettings) -> Result<String, Option<TlsError>> {
    let after_credentials = dsn.find('@').map_or(0, |at| at + 1);
    let Some(q) = dsn[after_credentials..]
        .find('?')
        .map(|q| q + after_credentials)
    else {
        return Ok(dsn.to_string());
    };
    let mut kept = Vec::new();
    for pair in dsn[q + 1..].split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (decode(key).ok_or(None)?, decode(value).ok_or(None)?);
        if !settings.take(&key, &value).map_err(Some)? {
            kept.push(pair);
        }
    }
    let head = &dsn[..q];
    Ok(if kept.is_empty() {
        head.to_string()
    } else {
        format!("{head}?{}", kept.join("&"))
    })
}

fn decode(text: &str) -> Option<Cow<'_, str>> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
}

/// libpq's `key = value` pairs: values bare or single-quoted, with backslash escapes.
fn extract_pairs(dsn: &str, settings: &mut TlsSettings) -> Result<String, Option<TlsError>> {
    let mut kept = String::new();
    let mut chars = dsn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(None);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.push(chars.next().ok_or(None)?),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(None),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                match c {
                    '\\' => value.push(chars.next().ok_or(None)?),
                    c => value.push(c),
                }
            }
        }
        if !settings.take(&key, &value).map_err(Some)? {
            let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push_str(&format!("{key}='{escaped}' "));
        }
    }
    Ok(kept.trim_end().to_string())
}

/// libpq's weaker checks: `chain: None` (`require` without a root certificate) accepts any
/// certificate, as libpq does; `chain: Some` (`verify-ca`) wants the chain to lead to a trusted
/// root, validity dates included, and leaves the name unchecked. webpki checks the chain before
/// the name, so a name error means the chain passed. Either way the link is encrypted and the
/// handshake's signatures are checked.
#[derive(Debug)]
struct Lenient {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_leave_the_url_and_the_rest_stays() {
        let (rest, tls) = extract(
            "postgres://u:p%3Fw@db.example:5432/postgres?sslmode=verify-full&application_name=x&sslrootcert=%2Fca.pem",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p%3Fw@db.example:5432/postgres?application_name=x"
        );
        assert_eq!(tls.mode, Some(SslMode::VerifyFull));
        assert_eq!(tls.root_cert, Some(PathBuf::from("/ca.pem")));
        let (rest, tls) = extract("postgres://u@h/db?sslmode=require").unwrap();
        assert_eq!(
            (rest.as_str(), tls.mode()),
            ("postgres://u@h/db", SslMode::Require)
        );
    }

    #[test]
    fn tls_parameters_leave_key_value_strings() {
        let (rest, tls) = extract(
            "host=h port=5 sslmode = verify-ca  password='it\\'s ok' sslkey='/k y.pem' sslcert=/c.pem",
        )
        .unwrap();
        assert_eq!(tls.mode, Some(SslMode::VerifyCa));
        assert_eq!(tls.key, Some(PathBuf::from("/k y.pem")));
        assert_eq!(tls.cert, Some(PathBuf::from("/c.pem")));
        assert_eq!(rest, "host='h' port='5' password='it\\'s ok'");
    }

    #[test]
    fn bad_and_unsupported_parameters_are_refused_by_name() {
        assert_eq!(
            extract("postgres://h/db?sslmode=allow").unwrap_err(),
            Some(TlsError::BadMode)
        );
        assert_eq!(
            extract("host=h sslpassword=hunter2").unwrap_err(),
            Some(TlsError::Unsupported("sslpassword".into()))
        );
        assert_eq!(
            extract("host=h sslrootcert=system").unwrap_err(),
            Some(TlsError::SystemRoots)
        );
        assert_eq!(extract("host='unterminated").unwrap_err(), None);
    }

    #[test]
    fn verifying_modes_need_a_root_certificate_and_disable_needs_nothing() {
        let mut tls = TlsSettings {
            mode: Some(SslMode::VerifyFull),
            ..TlsSettings::default()
        };
        assert_eq!(tls.check(), Err(TlsError::NoRootCert("verify-full")));
        tls.mode = Some(SslMode::Require);
        assert_eq!(tls.check(), Ok(()));
        tls.cert = Some("/nowhere/c.pem".into());
        assert_eq!(tls.check(), Err(TlsError::HalfClientCert));
        tls.mode = Some(SslMode::Disable);
        assert!(tls.connector().unwrap().is_none());
    }

    #[test]
    fn the_environment_fills_what_the_url_leaves() {
        let env = |name: &str| match name {
            "PGSSLMODE" => Some("verify-ca".to_string()),
            "PGSSLROOTCERT" => Some("/env/ca.pem".to_string()),
            _ => None,
        };
        let from_url = TlsSettings {
            mode: Some(SslMode::Require),
            ..TlsSettings::default()
        };
        let merged = from_url.or(TlsSettings::from_env(&env).unwrap());
        assert_eq!(merged.mode(), SslMode::Require);
        assert_eq!(merged.root_cert, Some(PathBuf::from("/env/ca.pem")));
        let bad = |name: &str| (name == "PGSSLMODE").then(|| "sometimes".to_string());
        let (var, error) = TlsSettings::from_env(&bad).unwrap_err();
        assert_eq!((var.as_str(), error), ("PGSSLMODE", TlsError::BadMode));
    }
}
