//! Where alerts go: the Alertmanagers of the config and of `run --alertmanager`, the request
//! timeout, how often a firing alert is sent again, and the URL on-call reaches the agent at.

use std::net::SocketAddr;
use std::time::Duration;

use serde_saphyr::Spanned;
use url::Url;

use super::{Checker, Diagnostic};

/// Prometheus' `alertmanager_config.timeout` default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Prometheus' `--rules.alert.resend-delay` default.
pub const DEFAULT_RESEND_DELAY: Duration = Duration::from_secs(60);

/// The path of Alertmanager's API v2 that takes alerts.
const PUSH_PATH: &str = "/api/v2/alerts";

/// The checked alerting settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Alerting {
    /// The URLs alerts are POSTed to (`…/api/v2/alerts`), without duplicates.
    pub alertmanagers: Vec<Url>,
    pub timeout: Duration,
    pub resend_delay: Duration,
    /// Where on-call reaches the agent; `None`: from the listen address.
    pub external_url: Option<Url>,
}

impl Default for Alerting {
    fn default() -> Alerting {
        Alerting {
            alertmanagers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            resend_delay: DEFAULT_RESEND_DELAY,
            external_url: None,
        }
    }
}

impl Alerting {
    /// Adds an Alertmanager unless it is already listed.
    pub fn add_alertmanager(&mut self, url: Url) {
        if !self.alertmanagers.contains(&url) {
            self.alertmanagers.push(url);
        }
    }

    /// The link sent as each alert's `generatorURL`: the agent's `/api/v1/alerts`, under
    /// `external_url`, else under the address the agent serves on.
    pub fn generator_url(&self, served_on: SocketAddr) -> String {
        let base = match &self.external_url {
            Some(url) => url.as_str().trim_end_matches('/').to_string(),
            None => default_external_url(served_on),
        };
        format!("{base}/api/v1/alerts")
    }
}

/// `http://<listen address>`; an agent listening on every interface is named by its host name,
/// as Prometheus does for its own external URL.
fn default_external_url(served_on: SocketAddr) -> String {
    if !served_on.ip().is_unspecified() {
        return format!("http://{served_on}");
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("http://{host}:{}", served_on.port())
}

/// Why a URL cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlProblem {
    #[error("not a URL ({0}); expected e.g. http://127.0.0.1:9093")]
    Invalid(url::ParseError),
    #[error("scheme `{given}` is not supported; use {expected}")]
    Scheme {
        given: String,
        expected: &'static str,
    },
    #[error("credentials in the URL are not supported; give the URL without user:password")]
    Credentials,
    #[error("a query or fragment has no place here")]
    Extra,
}

/// An Alertmanager's URL as given (`http://host:9093`, with a path prefix if it is served under
/// one, or the full `…/api/v2/alerts`) → the URL alerts are POSTed to.
pub fn alertmanager_url(given: &str) -> Result<Url, UrlProblem> {
    // TLS (and with it authentication) to Alertmanager is not built yet.
    let mut url = checked_url(given, &["http"], "http")?;
    let prefix = url.path().trim_end_matches('/');
    let path = match prefix.strip_suffix(PUSH_PATH) {
        Some(_) => prefix.to_string(),
        None => format!("{prefix}{PUSH_PATH}"),
    };
    url.set_path(&path);
    Ok(url)
}

/// The URL on-call reaches the agent at (http or https: it is only a link).
pub fn external_url(given: &str) -> Result<Url, UrlProblem> {
    checked_url(given, &["http", "https"], "http or https")
}

/// A URL of one of `schemes`, with no credentials (they would show in logs and labels), query
/// or fragment.
fn checked_url(given: &str, schemes: &[&str], expected: &'static str) -> Result<Url, UrlProblem> {
    let url = Url::parse(given.trim()).map_err(UrlProblem::Invalid)?;
    if !schemes.contains(&url.scheme()) {
        return Err(UrlProblem::Scheme {
            given: url.scheme().to_string(),
            expected,
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlProblem::Credentials);
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(UrlProblem::Extra);
    }
    Ok(url)
}

/// A problem with a command-line argument (`--alertmanager`, `--external-url`).
pub(super) fn arg_problem(flag: &str, message: String) -> Diagnostic {
    Diagnostic {
        origin: flag.into(),
        line: 0,
        column: 0,
        field: flag.trim_start_matches('-').into(),
        message,
    }
}

/// The alerting keys of the file format.
pub(super) struct AlertingEntry {
    pub alertmanagers: Vec<Spanned<String>>,
    pub timeout: Option<Spanned<Duration>>,
    pub resend_delay: Option<Spanned<Duration>>,
    pub external_url: Option<Spanned<String>>,
}

impl Checker<'_> {
    pub(super) fn alerting(&mut self, entry: AlertingEntry) -> Alerting {
        let mut alerting = Alerting::default();
        for (i, given) in entry.alertmanagers.iter().enumerate() {
            match alertmanager_url(&given.value) {
                Ok(url) => alerting.add_alertmanager(url),
                Err(e) => self.problem(given, &format!("alertmanagers[{i}]"), e.to_string()),
            }
        }
        if let Some(t) = &entry.timeout {
            if t.value.is_zero() {
                self.problem(t, "alertmanager_timeout", "must be more than 0");
            }
            alerting.timeout = t.value;
        }
        if let Some(d) = &entry.resend_delay {
            if d.value < Duration::from_secs(1) {
                self.problem(d, "alert_resend_delay", "must be at least 1s");
            }
            alerting.resend_delay = d.value;
        }
        if let Some(given) = &entry.external_url {
            match external_url(&given.value) {
                Ok(url) => alerting.external_url = Some(url),
                Err(e) => self.problem(given, "external_url", e.to_string()),
            }
        }
        alerting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AlertingArgs;

    #[test]
    fn alertmanager_urls_become_the_push_url() {
        let cases = [
            (
                "http://127.0.0.1:9093",
                "http://127.0.0.1:9093/api/v2/alerts",
            ),
            ("http://am:9093/", "http://am:9093/api/v2/alerts"),
            (
                "http://proxy/alertmanager",
                "http://proxy/alertmanager/api/v2/alerts",
            ),
            (
                "http://am:9093/api/v2/alerts",
                "http://am:9093/api/v2/alerts",
            ),
        ];
        for (given, push) in cases {
            assert_eq!(alertmanager_url(given).unwrap().as_str(), push, "{given}");
        }
        assert_eq!(
            alertmanager_url("https://am:9093").unwrap_err().to_string(),
            "scheme `https` is not supported; use http"
        );
        assert_eq!(
            alertmanager_url("http://admin:hunter2@am:9093"),
            Err(UrlProblem::Credentials)
        );
        assert_eq!(
            alertmanager_url("http://am:9093/?x=1"),
            Err(UrlProblem::Extra)
        );
        assert!(matches!(
            alertmanager_url("am:9093"),
            Err(UrlProblem::Scheme { .. })
        ));
        assert!(matches!(
            alertmanager_url("not a url"),
            Err(UrlProblem::Invalid(_))
        ));
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_keys_are_read_and_bad_urls_located() {
        use crate::config::Config;
        let text = "alertmanagers:\n  - http://127.0.0.1:9093\n  - http://am-2:9093/alertmanager/\n  - http://127.0.0.1:9093/\nalertmanager_timeout: 3s\nalert_resend_delay: 30s\nexternal_url: https://poolwatch.example.com\n";
        let config = Config::from_yaml(std::path::Path::new("p.yaml"), text, &no_env).unwrap();
        let urls: Vec<&str> = config
            .alerting
            .alertmanagers
            .iter()
            .map(Url::as_str)
            .collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:9093/api/v2/alerts",
                "http://am-2:9093/alertmanager/api/v2/alerts"
            ],
            "a repeated Alertmanager is sent to once"
        );
        assert_eq!(config.alerting.timeout, Duration::from_secs(3));
        assert_eq!(config.alerting.resend_delay, Duration::from_secs(30));
        assert_eq!(
            config.alerting.external_url.unwrap().as_str(),
            "https://poolwatch.example.com/"
        );

        let text = "alertmanagers:\n  - http://127.0.0.1:9093\n  - https://am:9093\nalert_resend_delay: 10ms\nexternal_url: poolwatch\n";
        let problems = Config::from_yaml(std::path::Path::new("p.yaml"), text, &no_env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            problems,
            "p.yaml:3:5: alertmanagers[1]: scheme `https` is not supported; use http\n\
             p.yaml:4:21: alert_resend_delay: must be at least 1s\n\
             p.yaml:5:15: external_url: not a URL (relative URL without a base); expected e.g. http://127.0.0.1:9093"
        );
    }

    #[test]
    fn command_line_alertmanagers_add_to_the_config() {
        let mut config = crate::config::Config::from_yaml(
            std::path::Path::new("p.yaml"),
            "alertmanagers: [http://a:9093]\n",
            &no_env,
        )
        .unwrap();
        let args = AlertingArgs {
            alertmanagers: vec!["http://b:9093".into(), "http://a:9093".into()],
            external_url: Some("http://agent:9898".into()),
        };
        args.apply(&mut config).unwrap();
        assert_eq!(config.alerting.alertmanagers.len(), 2);
        assert_eq!(
            config
                .alerting
                .generator_url("127.0.0.1:1".parse().unwrap()),
            "http://agent:9898/api/v1/alerts"
        );
        let bad = AlertingArgs {
            alertmanagers: vec!["http://user:secret@b:9093".into()],
            external_url: None,
        };
        let problems = bad.apply(&mut config).unwrap_err().to_string();
        assert_eq!(
            problems,
            "--alertmanager: alertmanager: credentials in the URL are not supported; give the URL without user:password"
        );
        assert!(!problems.contains("secret"));
    }

    #[test]
    fn the_generator_url_points_at_the_alerts_api() {
        let served: SocketAddr = "127.0.0.1:9898".parse().unwrap();
        let mut alerting = Alerting::default();
        assert_eq!(
            alerting.generator_url(served),
            "http://127.0.0.1:9898/api/v1/alerts"
        );
        alerting.external_url = Some(external_url("https://poolwatch.example.com/db/").unwrap());
        assert_eq!(
            alerting.generator_url(served),
            "https://poolwatch.example.com/db/api/v1/alerts"
        );
        let everywhere: SocketAddr = "0.0.0.0:9898".parse().unwrap();
        let url = Alerting::default().generator_url(everywhere);
        assert!(
            !url.contains("0.0.0.0") && url.ends_with(":9898/api/v1/alerts"),
            "{url}"
        );
    }
}
