//! The web configuration file of the listeners, in exporter-toolkit's format (the file an
//! operator already has for node_exporter): `tls_server_config`, `http_server_config.headers`
//! and `basic_auth_users` with bcrypt hashes, plus one poolwatch key, `poolwatch:
//! healthz_without_auth`. It is checked in full when loaded (certificates and keys read, hashes
//! parsed), every problem located; what exporter-toolkit knows but poolwatch does not do is
//! refused by name rather than ignored. Hashes and keys never appear in a message or `Debug`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::diagnostics::{self, Diagnostic, Diagnostics};
use crate::tls::{self, PemError};

/// exporter-toolkit's headers and, for those with a fixed set, the values it allows.
const HEADERS: &[(&str, &[&str])] = &[
    ("Content-Security-Policy", &[]),
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
];

/// The client authentication policies poolwatch implements. Go's `RequestClientCert` and
/// `RequireAnyClientCert` accept a certificate nobody verified; they are refused.
const CLIENT_AUTH_TYPES: &[&str] = &[
    "NoClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    tls_server_config: Option<Spanned<TlsEntry>>,
    http_server_config: Option<Spanned<HttpEntry>>,
    basic_auth_users: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// exporter-toolkit's rate limiter: not implemented, refused.
    rate_limit: Option<Spanned<serde::de::IgnoredAny>>,
    poolwatch: Option<Spanned<PoolwatchEntry>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsEntry {
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    client_ca: Option<Spanned<String>>,
    cert_file: Option<Spanned<PathBuf>>,
    key_file: Option<Spanned<PathBuf>>,
    client_auth_type: Option<Spanned<String>>,
    client_ca_file: Option<Spanned<PathBuf>>,
    client_allowed_sans: Option<Spanned<Vec<String>>>,
    min_version: Option<Spanned<String>>,
    max_version: Option<Spanned<String>>,
    cipher_suites: Option<Spanned<Vec<Spanned<String>>>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpEntry {
    /// Accepted for compatibility; poolwatch serves HTTP/1.1 (and says so over ALPN).
    #[allow(dead_code)]
    http2: Option<bool>,
    headers: Option<BTreeMap<String, Spanned<String>>>,
}

/// Keys of poolwatch's own; exporter-toolkit has no such section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolwatchEntry {
    /// `/healthz` answers without basic auth (TLS and client certificates still apply: they are
    /// per connection). Default false.
    healthz_without_auth: Option<bool>,
}

/// A bcrypt hash; shown as `***`.
#[derive(Clone)]
pub struct Hash(String);

impl Hash {
    pub fn new(hash: String) -> Hash {
        Hash(hash)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The checked web config every listener applies. The default is plain HTTP without auth.
#[derive(Clone, Default)]
pub struct WebConfig {
    /// TLS for new connections; `None`: plain HTTP.
    pub tls: Option<Arc<ServerConfig>>,
    /// Users and their bcrypt hashes; empty: no basic auth.
    pub users: BTreeMap<String, Hash>,
    /// A hash of the users' cost that no password matches, verified for unknown users and
    /// requests without credentials, so that every refusal costs one bcrypt verification.
    pub dummy_hash: Option<Hash>,
    /// Headers added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub healthz_without_auth: bool,
    /// Every file the config was read from, to watch for changes.
    pub files: Vec<PathBuf>,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("headers", &self.headers)
            .field("healthz_without_auth", &self.healthz_without_auth)
            .field("files", &self.files)
            .finish()
    }
}

impl WebConfig {
    /// Reads and checks a web config file, and the files it names.
    pub fn load(path: &Path) -> Result<WebConfig, Diagnostics> {
        WebConfig::from_yaml(path, &diagnostics::read_file(path)?)
    }

    /// Checks a web config given as text; `origin` names it and anchors relative paths.
    pub fn from_yaml(origin: &Path, text: &str) -> Result<WebConfig, Diagnostics> {
        let blank = text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
        let (file, mut problems) = if blank {
            (Some(FileEntry::default()), Vec::new())
        } else {
            diagnostics::deserialize_all::<FileEntry>(origin, text)
        };
        let mut check = Checker {
            origin,
            base: origin.parent().unwrap_or(Path::new(".")),
            problems: Vec::new(),
            files: vec![origin.to_path_buf()],
        };
        let config = file.map(|file| check.config(file));
        problems.append(&mut check.problems);
        match config {
            Some(mut config) if problems.is_empty() => {
                config.files = check.files;
                Ok(config)
            }
            _ => {
                problems.sort_by_key(|p| (p.line, p.column));
                Err(Diagnostics(problems))
            }
        }
    }
}

/// exporter-toolkit's rule: any of these turns TLS on (and then cert and key are required).
fn enabled(t: &TlsEntry) -> bool {
    t.cert.is_some()
        || t.key.is_some()
        || t.cert_file.is_some()
        || t.key_file.is_some()
        || t.client_ca.is_some()
        || t.client_ca_file.is_some()
        || t.client_auth_type.is_some()
}

struct Checker<'a> {
    origin: &'a Path,
    base: &'a Path,
    problems: Vec<Diagnostic>,
    files: Vec<PathBuf>,
}

impl Checker<'_> {
    fn problem<T>(&mut self, at: &Spanned<T>, field: &str, message: impl Into<String>) {
        self.problems
            .push(Diagnostic::at(self.origin, at, field, message));
    }

    fn config(&mut self, file: FileEntry) -> WebConfig {
        if let Some(at) = &file.rate_limit {
            self.problem(
                at,
                "rate_limit",
                "not supported by poolwatch (its endpoints answer from memory)",
            );
        }
        let before = self.problems.len();
        let tls = file.tls_server_config.as_ref().and_then(|t| self.tls(t));
        if let (Some(at), None) = (&file.tls_server_config, &tls)
            && self.problems.len() == before
            && enabled(&at.value)
        {
            // Never fall back to plain HTTP without saying why.
            self.problem(
                at,
                "tls_server_config",
                "cannot be used with these settings",
            );
        }
        let headers = file
            .http_server_config
            .as_ref()
            .map(|h| self.headers(&h.value))
            .unwrap_or_default();
        let users = self.users(file.basic_auth_users.as_ref());
        let dummy_hash = self.dummy_hash(&users);
        WebConfig {
            tls,
            users,
            dummy_hash,
            headers,
            healthz_without_auth: file
                .poolwatch
                .as_ref()
                .and_then(|p| p.value.healthz_without_auth)
                .unwrap_or(false),
            files: Vec::new(),
        }
    }

    fn users(
        &mut self,
        entry: Option<&Spanned<BTreeMap<String, Spanned<String>>>>,
    ) -> BTreeMap<String, Hash> {
        let mut users = BTreeMap::new();
        for (name, hash) in entry.map(|e| &e.value).into_iter().flatten() {
            let field = format!("basic_auth_users.{name}");
            if name.contains(':') {
                // Basic auth splits user and password at the first colon.
                self.problem(hash, &field, "a user name cannot contain `:`");
            } else if hash.value.parse::<bcrypt::HashParts>().is_err() {
                self.problem(
                    hash,
                    &field,
                    "not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)",
                );
            } else {
                users.insert(name.clone(), Hash(hash.value.clone()));
            }
        }
        users
    }

    /// At the highest cost among the users, so that an unknown user costs what a known one does.
    fn dummy_hash(&mut self, users: &BTreeMap<String, Hash>) -> Option<Hash> {
        let cost = users
            .values()
            .filter_map(|h| h.0.parse::<bcrypt::HashParts>().ok())
            .map(|p| p.get_cost())
            .max()?;
        let hash = bcrypt::hash_with_salt("poolwatch: no password matches this", cost, [7; 16]);
        hash.ok().map(|h| Hash(h.to_string()))
    }

    fn headers(&mut self, entry: &HttpEntry) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        for (name, value) in entry.headers.iter().flatten() {
            let field = format!("http_server_config.headers.{name}");
            let Some((_, allowed)) = HEADERS.iter().find(|(n, _)| n == name) else {
                let names: Vec<&str> = HEADERS.iter().map(|(n, _)| *n).collect();
                let message = format!("cannot be configured; one of {}", names.join(", "));
                self.problem(value, &field, message);
                continue;
            };
            if !allowed.is_empty() && !allowed.contains(&value.value.as_str()) {
                let message = format!("must be one of {}", allowed.join(", "));
                self.problem(value, &field, message);
                continue;
            }
            if value.value.is_empty() {
                // exporter-toolkit: blank means unset.
                continue;
            }
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value.value),
            ) {
                (Ok(n), Ok(v)) => out.push((n, v)),
                _ => self.problem(value, &field, "not a valid header value"),
            }
        }
        out
    }

    /// A PEM input given inline (`inline`) or as a file (`file`), never both.
    fn pem_input(
        &mut self,
        inline: Option<&Spanned<String>>,
        file: Option<&Spanned<PathBuf>>,
        names: (&str, &str),
    ) -> Option<(Vec<u8>, String, Spanned<()>)> {
        let field = |n: &str| format!("tls_server_config.{n}");
        match (inline, file) {
            (Some(_), Some(f)) => {
                let message = format!("give {} or {}, not both", names.0, names.1);
                self.problem(f, &field(names.1), message);
                None
            }
            (Some(text), None) => Some((
                text.value.clone().into_bytes(),
                format!("tls_server_config.{}", names.0),
                Spanned::new((), text.referenced, text.defined),
            )),
            (None, Some(f)) => {
                let path = self.base.join(&f.value);
                self.files.push(path.clone());
                match std::fs::read(&path) {
                    Ok(bytes) => Some((
                        bytes,
                        path.display().to_string(),
                        Spanned::new((), f.referenced, f.defined),
                    )),
                    Err(e) => {
                        let message = format!("cannot read {}: {}", path.display(), e.kind());
                        self.problem(f, &field(names.1), message);
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    fn tls(&mut self, entry: &Spanned<TlsEntry>) -> Option<Arc<ServerConfig>> {
        let t = &entry.value;
        let field = |n: &str| format!("tls_server_config.{n}");
        if !enabled(t) {
            return None;
        }
        let cert = self.pem_input(t.cert.as_ref(), t.cert_file.as_ref(), ("cert", "cert_file"));
        let key = self.pem_input(t.key.as_ref(), t.key_file.as_ref(), ("key", "key_file"));
        let client_ca = self.pem_input(
            t.client_ca.as_ref(),
            t.client_ca_file.as_ref(),
            ("client_ca", "client_ca_file"),
        );
        if cert.is_none() && t.cert.is_none() && t.cert_file.is_none() {
            self.problem(
                entry,
                &field("cert_file"),
                "missing one of cert or cert_file",
            );
        }
        if key.is_none() && t.key.is_none() && t.key_file.is_none() {
            self.problem(entry, &field("key_file"), "missing one of key or key_file");
        }
        let chain = cert.and_then(|(bytes, what, at)| {
            self.pem(&at, "cert_file", tls::certificates_from_pem(&bytes, &what))
        });
        let key = key.and_then(|(bytes, what, at)| {
            self.pem(&at, "key_file", tls::private_key_from_pem(&bytes, &what))
        });
        let versions = self.versions(t);
        let provider = self.provider(t);
        let client_auth = self.client_auth(t, client_ca);
        let (chain, key, versions, provider, client_auth) =
            (chain?, key?, versions?, provider?, client_auth?);
        let builder = match ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&versions)
        {
            Ok(builder) => builder,
            Err(_) => {
                let message = "no cipher suite left for the TLS versions allowed";
                self.problem(entry, &field("cipher_suites"), message);
                return None;
            }
        };
        let builder = match client_auth {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = match builder.with_single_cert(chain, key) {
            Ok(config) => config,
            Err(_) => {
                self.problem(
                    entry,
                    &field("key_file"),
                    "the key does not match the certificate, or cannot be used",
                );
                return None;
            }
        };
        config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(Arc::new(config))
    }

    fn pem<T>(&mut self, at: &Spanned<()>, name: &str, read: Result<T, PemError>) -> Option<T> {
        read.map_err(|e| self.problem(at, &format!("tls_server_config.{name}"), e.to_string()))
            .ok()
    }

    fn versions(&mut self, t: &TlsEntry) -> Option<Vec<&'static SupportedProtocolVersion>> {
        let mut parse = |v: Option<&Spanned<String>>, name: &str, default: u8| match v {
            None => Some(default),
            Some(v) => match v.value.as_str() {
                "TLS12" => Some(2),
                "TLS13" => Some(3),
                "TLS10" | "TLS11" => {
                    let message = format!(
                        "{}: rustls implements TLS12 and TLS13 only (older versions are broken)",
                        v.value
                    );
                    self.problem(v, &format!("tls_server_config.{name}"), message);
                    None
                }
                other => {
                    let message = format!("unknown TLS version `{other}` (TLS12 or TLS13)");
                    self.problem(v, &format!("tls_server_config.{name}"), message);
                    None
                }
            },
        };
        let min = parse(t.min_version.as_ref(), "min_version", 2);
        let max = parse(t.max_version.as_ref(), "max_version", 3);
        let (min, max) = (min?, max?);
        if min > max {
            if let Some(at) = &t.min_version {
                self.problem(at, "tls_server_config.min_version", "above max_version");
            }
            return None;
        }
        let all: [(u8, &'static SupportedProtocolVersion); 2] =
            [(3, &rustls::version::TLS13), (2, &rustls::version::TLS12)];
        Some(
            all.into_iter()
                .filter(|(v, _)| (min..=max).contains(v))
                .map(|(_, p)| p)
                .collect(),
        )
    }

    /// The crypto provider narrowed to the configured TLS 1.2 cipher suites (TLS 1.3 suites are
    /// not configurable, as in Go) and curve order.
    fn provider(&mut self, t: &TlsEntry) -> Option<rustls::crypto::CryptoProvider> {
        let mut provider = rustls::crypto::ring::default_provider();
        let mut ok = true;
        if let Some(names) = &t.cipher_suites {
            let all = provider.cipher_suites.clone();
            let tls13 = all.iter().filter(|s| s.tls13().is_some()).copied();
            let tls12 = self.pick(
                names,
                "tls_server_config.cipher_suites",
                "is not a TLS 1.2 cipher suite rustls offers",
                |name| {
                    all.iter()
                        .find(|s| s.tls13().is_none() && format!("{:?}", s.suite()) == name)
                        .copied()
                },
            );
            ok &= tls12.is_some();
            provider.cipher_suites = tls13.chain(tls12.unwrap_or_default()).collect();
        }
        if let Some(names) = &t.curve_preferences {
            let all = provider.kx_groups.clone();
            let groups = self.pick(
                names,
                "tls_server_config.curve_preferences",
                "is not offered (X25519, CurveP256 or CurveP384)",
                |name| {
                    let group = match name {
                        "X25519" => rustls::NamedGroup::X25519,
                        "CurveP256" => rustls::NamedGroup::secp256r1,
                        "CurveP384" => rustls::NamedGroup::secp384r1,
                        _ => return None,
                    };
                    all.iter().find(|k| k.name() == group).copied()
                },
            );
            ok &= groups.is_some();
            provider.kx_groups = groups.unwrap_or_default();
        }
        ok.then_some(provider)
    }

    /// What each of `names` stands for, in their order; `None` once one stands for nothing.
    fn pick<T>(
        &mut self,
        names: &Spanned<Vec<Spanned<String>>>,
        field: &str,
        unknown: &str,
        find: impl Fn(&str) -> Option<T>,
    ) -> Option<Vec<T>> {
        let mut picked = Some(Vec::new());
        for name in &names.value {
            match (find(&name.value), picked.as_mut()) {
                (Some(found), Some(all)) => all.push(found),
                (Some(_), None) => {}
                (None, _) => {
                    self.problem(name, field, format!("`{}` {unknown}", name.value));
                    picked = None;
                }
            }
        }
        picked
    }

    /// `Some(None)`: no client certificates; `None`: a problem was reported.
    fn client_auth(
        &mut self,
        t: &TlsEntry,
        client_ca: Option<(Vec<u8>, String, Spanned<()>)>,
    ) -> Option<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>> {
        let field = "tls_server_config.client_auth_type";
        let kind = t.client_auth_type.as_ref();
        let name = kind.map_or("NoClientCert", |k| k.value.as_str());
        let name = if name.is_empty() {
            "NoClientCert"
        } else {
            name
        };
        if !CLIENT_AUTH_TYPES.contains(&name) {
            let message = match name {
                "RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert" => format!(
                    "{name} accepts certificates nobody verified; use RequireAndVerifyClientCert"
                ),
                other => format!(
                    "unknown client_auth_type `{other}`; one of {}",
                    CLIENT_AUTH_TYPES.join(", ")
                ),
            };
            if let Some(at) = kind {
                self.problem(at, field, message);
            }
            return None;
        }
        let has_ca = t.client_ca.is_some() || t.client_ca_file.is_some();
        if let (Some(at), "NoClientCert") = (&t.client_allowed_sans, name) {
            let message = "needs a client_auth_type that verifies client certificates";
            self.problem(at, "tls_server_config.client_allowed_sans", message);
            return None;
        }
        if name == "NoClientCert" {
            if let Some((_, _, at)) = client_ca {
                self.problem(
                    &at,
                    "tls_server_config.client_ca_file",
                    "client CAs are configured without a client_auth_type",
                );
                return None;
            }
            return Some(None);
        }
        let Some((bytes, what, at)) = client_ca else {
            if !has_ca && let Some(at) = kind {
                self.problem(at, field, format!("{name} needs client_ca_file"));
            }
            return None;
        };
        let roots: Vec<CertificateDer<'static>> = self.pem(
            &at,
            "client_ca_file",
            tls::certificates_from_pem(&bytes, &what),
        )?;
        let mut store = RootCertStore::empty();
        let (added, _) = store.add_parsable_certificates(roots);
        let builder = WebPkiClientVerifier::builder_with_provider(
            Arc::new(store),
            Arc::new(rustls::crypto::ring::default_provider()),
        );
        let builder = if name == "VerifyClientCertIfGiven" {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        match builder.build() {
            Ok(verifier) if added > 0 => match &t.client_allowed_sans {
                Some(sans) => Some(Some(Arc::new(tls::server::AllowedSans {
                    inner: verifier,
                    allowed: sans.value.clone(),
                }))),
                None => Some(Some(verifier)),
            },
            _ => {
                let message = format!("{what} holds no usable CA certificate");
                self.problem(&at, "tls_server_config.client_ca_file", message);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
