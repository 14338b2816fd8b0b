//! TLS without OpenSSL, for both ends: rustls on the ring provider. The agent is a TLS client
//! of its targets ([`client`], libpq's `sslmode`) and a TLS server on its listener (built from
//! the web config, with [`server`]'s additions). PEM files are read here, with errors that name the file and never show what
//! is in it: a key file's content is a secret.

pub mod client;
pub mod server;

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{CertificateError, Error as RustlsError};

/// ring: it builds from a few C and assembly files in seconds, where aws-lc-rs compiles a whole C
/// library (minutes on two cores, and cmake on some platforms). Neither end needs what aws-lc-rs
/// adds (FIPS, post-quantum key exchange).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A PEM input that cannot be used. Never carries the input's content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("cannot read {what}: {reason}")]
    Read { what: String, reason: String },
    #[error("{what} holds no PEM certificate")]
    NoCertificate { what: String },
    #[error("{what} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { what: String },
    #[error(
        "{what} holds an encrypted private key, which poolwatch cannot use: store it decrypted, \
         readable only by the agent's user"
    )]
    EncryptedKey { what: String },
    #[error("{what} is not valid PEM")]
    Malformed { what: String },
}

fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|e| PemError::Read {
        what: path.display().to_string(),
        reason: e.kind().to_string(),
    })
}

/// The certificates of a PEM file (a chain, or a CA bundle).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    certificates_from_pem(&read(path)?, &path.display().to_string())
}

/// The private key of a PEM file.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    private_key_from_pem(&read(path)?, &path.display().to_string())
}

/// The certificates in PEM text; `what` names the input in errors.
pub fn certificates_from_pem(
    pem: &[u8],
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e, what, false))?;
    if certificates.is_empty() {
        return Err(PemError::NoCertificate { what: what.into() });
    }
    Ok(certificates)
}

/// The private key in PEM text; `what` names the input in errors.
pub fn private_key_from_pem(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, PemError> {
    let encrypted = [
        &b"-----BEGIN ENCRYPTED PRIVATE KEY-----"[..],
        &b"Proc-Type: 4,ENCRYPTED"[..],
    ];
    if encrypted
        .iter()
        .any(|marker| pem.windows(marker.len()).any(|w| w == *marker))
    {
        return Err(PemError::EncryptedKey { what: what.into() });
    }
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| pem_error(e, what, true))
}

/// The PEM parser's own errors may quote a line or a byte of the input; only their kind is kept.
fn pem_error(error: pem::Error, what: &str, key: bool) -> PemError {
    let what = what.to_string();
    match error {
        pem::Error::NoItemsFound if key => PemError::NoKey { what },
        pem::Error::NoItemsFound => PemError::NoCertificate { what },
        pem::Error::Io(e) => PemError::Read {
            what,
            reason: e.kind().to_string(),
        },
        _ => PemError::Malformed { what },
    }
}

/// Which check a peer's certificate failed, in words an operator acts on; `None` when the error
/// is not about a certificate.
pub fn certificate_problem(error: &RustlsError) -> Option<String> {
    let problem = match error {
        RustlsError::InvalidCertificate(e) => match e {
            CertificateError::UnknownIssuer => {
                "unknown issuer (not signed by a trusted CA)".to_string()
            }
            CertificateError::BadSignature => "bad signature".to_string(),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "expired".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not valid yet".to_string()
            }
            CertificateError::NotValidForName => "name mismatch".to_string(),
            CertificateError::NotValidForNameContext { expected, .. } => {
                format!("name mismatch (not valid for {expected:?})")
            }
            CertificateError::Revoked => "revoked".to_string(),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "not issued for this purpose".to_string()
            }
            CertificateError::BadEncoding => "malformed certificate".to_string(),
            CertificateError::ApplicationVerificationFailure => {
                "none of its subject alternative names is allowed".to_string()
            }
            other => format!("{other:?}"),
        },
        RustlsError::NoCertificatesPresented => "no certificate presented".to_string(),
        RustlsError::AlertReceived(alert) => {
            use rustls::AlertDescription as A;
            match alert {
                A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::CertificateRequired => {
                    format!("the peer rejected our certificate ({alert:?})")
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(problem)
}

/// The rustls error somewhere in an error's chain (tokio-rustls wraps it in an `io::Error`).
pub fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a RustlsError> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<RustlsError>() {
            return Some(found);
        }
        if let Some(found) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<RustlsError>())
        {
            return Some(found);
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_errors_never_echo_the_input() {
        let secret = b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA!!\n-----END PRIVATE KEY-----\n";
        let err = private_key_from_pem(secret, "key.pem").unwrap_err();
        assert_eq!(
            err,
            PemError::Malformed {
                what: "key.pem".into()
            }
        );
        let err = private_key_from_pem(b"nothing here", "key.pem").unwrap_err();
        assert_eq!(
            err.to_string(),
            "key.pem holds no PEM private key (PKCS#8, PKCS#1 or SEC1)"
        );
        let encrypted =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(matches!(
            private_key_from_pem(encrypted, "k").unwrap_err(),
            PemError::EncryptedKey { .. }
        ));
        let err = certificates_from_pem(b"", "ca.pem").unwrap_err();
        assert_eq!(err.to_string(), "ca.pem holds no PEM certificate");
    }

    #[test]
    fn certificate_problems_say_which_check_failed() {
        let cases = [
            (
                CertificateError::UnknownIssuer,
                "unknown issuer (not signed by a trusted CA)",
            ),
            (CertificateError::Expired, "expired"),
            (CertificateError::NotValidYet, "not valid yet"),
            (CertificateError::NotValidForName, "name mismatch"),
            (CertificateError::BadSignature, "bad signature"),
        ];
        for (error, said) in cases {
            let problem = certificate_problem(&RustlsError::InvalidCertificate(error));
            assert_eq!(problem.as_deref(), Some(said));
        }
        assert_eq!(certificate_problem(&RustlsError::DecryptError), None);
    }
}
