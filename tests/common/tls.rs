//! A certificate authority of the test's own (rcgen), issuing server and client certificates
//! into a temporary directory, and an HTTP client that speaks TLS and basic auth to the agent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA and the certificates it issued, as PEM files in `dir`.
pub struct Authority {
    pub dir: tempfile::TempDir,
    name: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Authority {
    pub fn new(name: &str) -> Authority {
        let dir = tempfile::Builder::new()
            .prefix("poolwatch-pki")
            .tempdir()
            .unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join(format!("{name}.crt")), cert.pem()).unwrap();
        Authority {
            dir,
            name: name.to_string(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA's certificate file.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join(format!("{}.crt", self.name))
    }

    /// A certificate for `common_name`, valid for `names` (host names or IP addresses), for
    /// servers and clients alike.
    pub fn issue(&self, common_name: &str, names: &[&str]) -> Issued {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let issued = Issued {
            cert: self.dir.path().join(format!("{common_name}.crt")),
            key: self.dir.path().join(format!("{common_name}.key")),
        };
        std::fs::write(&issued.cert, cert.pem()).unwrap();
        std::fs::write(&issued.key, key.serialize_pem()).unwrap();
        issued
    }
}

/// A web config next to `ca`'s files: TLS with a certificate for 127.0.0.1, and one bcrypt
/// user. Returns its path and the user's hash.
pub fn tls_and_user(ca: &Authority, user: &str, password: &str, cost: u32) -> (PathBuf, String) {
    ca.issue("agent", &["127.0.0.1"]);
    let hash = bcrypt::hash(password, cost).unwrap();
    let web = ca.dir.path().join("web.yml");
    let text = format!(
        "tls_server_config:\n  cert_file: agent.crt\n  key_file: agent.key\nbasic_auth_users:\n  {user}: {hash}\n"
    );
    std::fs::write(&web, text).unwrap();
    (web, hash)
}

/// How a test reaches the agent: plain or HTTPS (trusting `ca`), with a client certificate or
/// basic auth credentials.
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub https_ca: Option<PathBuf>,
    pub client: Option<Issued>,
    pub basic: Option<(String, String)>,
}

impl Access {
    pub fn basic(user: &str, password: &str) -> Access {
        Access {
            basic: Some((user.to_string(), password.to_string())),
            ..Access::default()
        }
    }

    /// GET `path` on `addr`: (status, `WWW-Authenticate`, body); an error when no HTTP answer
    /// came (refused handshake, plain HTTP to a TLS listener…).
    pub fn get(
        &self,
        addr: std::net::SocketAddr,
        path: &str,
    ) -> Result<(u16, Option<String>, String), ureq::Error> {
        let scheme = if self.https_ca.is_some() {
            "https"
        } else {
            "http"
        };
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(ca) = &self.https_ca {
            let ca = ureq::tls::Certificate::from_pem(&read(ca))
                .unwrap()
                .to_owned();
            tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![ca])));
        }
        if let Some(client) = &self.client {
            let cert = ureq::tls::Certificate::from_pem(&read(&client.cert))
                .unwrap()
                .to_owned();
            let key = ureq::tls::PrivateKey::from_pem(&read(&client.key))
                .unwrap()
                .to_owned();
            tls = tls.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&[cert], key)));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut request = agent.get(format!("{scheme}://{addr}{path}"));
        if let Some((user, password)) = &self.basic {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            request = request.header("Authorization", format!("Basic {encoded}"));
        }
        let mut response = request.call()?;
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap_or_default().to_string());
        let body = response.body_mut().read_to_string()?;
        Ok((status, challenge, body))
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}
