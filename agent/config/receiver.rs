//! The `otlp_receiver:` section: where applications push their pools' metrics over OTLP, and the
//! limits the receiver holds them to. On by default: `/v1/metrics` on the agent's own listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Checker, duration};
use crate::secret::Token;

/// The most an export request may weigh, compressed or not, unless configured.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;
/// How long a pool may stay silent before it leaves, unless configured: two exports missed at
/// the OpenTelemetry SDKs' default interval of 60 s.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(120);

/// The section in the file format.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReceiverEntry {
    /// Whether the agent takes OTLP metrics at all. Default `true`.
    enabled: Option<bool>,
    /// A separate address for OTLP over gRPC (conventionally `:4317`). Default: none.
    grpc_listen: Option<SocketAddr>,
    /// A separate address for OTLP over HTTP (conventionally `:4318`), beside `/v1/metrics` on
    /// `listen`. Default: none.
    http_listen: Option<SocketAddr>,
    /// Largest request, in bytes, compressed and decompressed alike. Default 4 MiB.
    max_payload_bytes: Option<Spanned<usize>>,
    /// File holding the bearer token clients must send (trailing newline ignored).
    bearer_token_file: Option<Spanned<PathBuf>>,
    /// Environment variable holding the bearer token.
    bearer_token_env: Option<Spanned<String>>,
    /// How long a pool may stay silent before its series go. Default `2m`.
    #[serde(default, deserialize_with = "duration")]
    stale_after: Option<Spanned<Duration>>,
}

/// The checked section.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceiverConfig {
    pub enabled: bool,
    pub grpc_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub max_payload_bytes: usize,
    /// Never logged: it prints as `***`.
    pub bearer_token: Option<Token>,
    pub stale_after: Duration,
}

impl Default for ReceiverConfig {
    fn default() -> ReceiverConfig {
        ReceiverConfig {
            enabled: true,
            grpc_listen: None,
            http_listen: None,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            bearer_token: None,
            stale_after: DEFAULT_STALE_AFTER,
        }
    }
}

impl Checker<'_> {
    pub(super) fn receiver(&mut self, entry: Option<ReceiverEntry>) -> ReceiverConfig {
        let Some(entry) = entry else {
            return ReceiverConfig::default();
        };
        let field = |name: &str| format!("otlp_receiver.{name}");
        let max_payload_bytes = match &entry.max_payload_bytes {
            Some(m) if m.value < 1024 => {
                self.problem(m, &field("max_payload_bytes"), "must be at least 1024");
                m.value
            }
            Some(m) => m.value,
            None => DEFAULT_MAX_PAYLOAD_BYTES,
        };
        let stale_after = match &entry.stale_after {
            Some(d) if d.value < Duration::from_secs(1) => {
                self.problem(d, &field("stale_after"), "must be at least 1s");
                d.value
            }
            Some(d) => d.value,
            None => DEFAULT_STALE_AFTER,
        };
        let secret = self.secret(
            entry.bearer_token_file.as_ref(),
            entry.bearer_token_env.as_ref(),
            &field("bearer_token_file"),
            &field("bearer_token_env"),
        );
        let bearer_token = match (secret, &entry.bearer_token_file, &entry.bearer_token_env) {
            (Some(text), Some(at), _) => self.token(at, &field("bearer_token_file"), &text),
            (Some(text), None, Some(at)) => self.token(at, &field("bearer_token_env"), &text),
            _ => None,
        };
        ReceiverConfig {
            enabled: entry.enabled.unwrap_or(true),
            grpc_listen: entry.grpc_listen,
            http_listen: entry.http_listen,
            max_payload_bytes,
            bearer_token,
            stale_after,
        }
    }

    fn token<T>(&mut self, at: &Spanned<T>, field: &str, token: &str) -> Option<Token> {
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            // The message never quotes the token.
            self.problem(
                at,
                field,
                "the token must be non-empty printable ASCII without spaces",
            );
            return None;
        }
        Some(Token::new(token.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;
    use super::*;

    #[test]
    fn on_by_default_with_its_own_target() {
        let config = Config::from_yaml(Path::new("c.yaml"), "{}", &|_: &str| None).unwrap();
        assert_eq!(config.otlp_receiver, ReceiverConfig::default());
        let names: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["otlp"]);
        let off = "otlp_receiver:\n  enabled: false\n";
        let config = Config::from_yaml(Path::new("c.yaml"), off, &|_: &str| None).unwrap();
        assert!(config.targets.is_empty());
    }

    #[test]
    fn settings_are_read_and_the_token_never_shown() {
        let text = "otlp_receiver:\n  grpc_listen: 127.0.0.1:4317\n  http_listen: 127.0.0.1:4318\n  max_payload_bytes: 65536\n  bearer_token_env: OTLP_TOKEN\n  stale_after: 30s\n";
        let env = |name: &str| (name == "OTLP_TOKEN").then(|| "s3cret-t0ken".to_string());
        let config = Config::from_yaml(Path::new("c.yaml"), text, &env).unwrap();
        let r = &config.otlp_receiver;
        assert_eq!(r.grpc_listen, Some("127.0.0.1:4317".parse().unwrap()));
        assert_eq!(r.http_listen, Some("127.0.0.1:4318".parse().unwrap()));
        assert_eq!(
            (r.max_payload_bytes, r.stale_after),
            (65536, Duration::from_secs(30))
        );
        assert!(
            r.bearer_token
                .as_ref()
                .unwrap()
                .authorizes(Some(b"Bearer s3cret-t0ken"))
        );
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn bad_settings_are_located() {
        let text = "otlp_receiver:\n  max_payload_bytes: 10\n  bearer_token_env: MISSING\n  stale_after: 0s\n  port: 4317\n";
        let problems = Config::from_yaml(Path::new("c.yaml"), text, &|_: &str| None).unwrap_err();
        let text = problems.to_string();
        assert!(text.contains("unknown field `port`"), "{text}");
        let text = "otlp_receiver:\n  max_payload_bytes: 10\n  bearer_token_env: MISSING\n  stale_after: 0s\n";
        let problems = Config::from_yaml(Path::new("c.yaml"), text, &|_: &str| None).unwrap_err();
        let lines: Vec<String> = problems.0.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].starts_with("c.yaml:2:22: otlp_receiver.max_payload_bytes"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("otlp_receiver.bearer_token_env: environment variable `MISSING`"),
            "{lines:?}"
        );
        assert!(
            lines[2].contains("otlp_receiver.stale_after: must be at least 1s"),
            "{lines:?}"
        );
    }
}
