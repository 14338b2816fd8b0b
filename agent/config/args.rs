//! Where a command's targets and rules come from: a config file, `--target` arguments, or both;
//! and where `run` sends alerts besides the config's Alertmanagers. Shared by `run`, `check` and
//! hot reload, which loads them again.

use std::path::PathBuf;

use clap::Args;

use super::alerting::{self, arg_problem};
use super::{Config, Diagnostics, Env, process_env};
use crate::rules::files::RuleSet;

/// Where the targets come from: a config file, `--target` arguments, or both.
#[derive(Clone, Debug, Default, Args)]
pub struct TargetArgs {
    /// The config file (see config/poolwatch.yaml).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// A target without a config file: TYPE=URL, TYPE is pgbouncer or postgres
    /// (e.g. pgbouncer=postgres://pgbouncer@127.0.0.1:6432/pgbouncer). A URL without a password
    /// takes PGPASSWORD. Repeatable.
    #[arg(long = "target", value_name = "TYPE=URL")]
    pub targets: Vec<String>,
    /// Rule files or directories, added to the config's `rules` (default: the shipped rules).
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
}

impl TargetArgs {
    /// The config these arguments describe.
    pub fn load(&self) -> Result<Config, Diagnostics> {
        let env: Env = &process_env;
        let mut config = match &self.config {
            Some(path) => Config::load(path, env)?,
            None => Config::from_targets(&[], env)?,
        };
        config.add_targets(&self.targets, env)?;
        Ok(config)
    }

    /// The rules to evaluate and the paths they come from (none: the shipped rules).
    pub fn rules(&self, config: &Config) -> Result<(RuleSet, Vec<PathBuf>), Diagnostics> {
        let paths: Vec<PathBuf> = config.rules.iter().chain(&self.rules).cloned().collect();
        if paths.is_empty() {
            return Ok((RuleSet::embedded(), paths));
        }
        Ok((RuleSet::load(&paths)?, paths))
    }
}

/// Where `run` sends alerts, on top of the config; applied again at every config reload.
#[derive(Clone, Debug, Default, Args)]
pub struct AlertingArgs {
    /// An Alertmanager to send alerts to (API v2), e.g. http://127.0.0.1:9093; added to the
    /// config's `alertmanagers`. Repeatable.
    #[arg(long = "alertmanager", value_name = "URL")]
    pub alertmanagers: Vec<String>,
    /// The URL on-call reaches this agent at, for each alert's generatorURL (overrides the
    /// config's `external_url`; default http://<listen address>).
    #[arg(long = "external-url", value_name = "URL")]
    pub external_url: Option<String>,
}

impl AlertingArgs {
    /// The config `targets` describe, with these added.
    pub fn load(&self, targets: &TargetArgs) -> Result<Config, Diagnostics> {
        let mut config = targets.load()?;
        self.apply(&mut config)?;
        Ok(config)
    }

    /// Adds these Alertmanagers (and the external URL) to `config`.
    pub fn apply(&self, config: &mut Config) -> Result<(), Diagnostics> {
        let mut problems = Vec::new();
        for given in &self.alertmanagers {
            match alerting::alertmanager_url(given) {
                Ok(url) => config.alerting.add_alertmanager(url),
                Err(e) => problems.push(arg_problem("--alertmanager", e.to_string())),
            }
        }
        if let Some(given) = &self.external_url {
            match alerting::external_url(given) {
                Ok(url) => config.alerting.external_url = Some(url),
                Err(e) => problems.push(arg_problem("--external-url", e.to_string())),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Diagnostics(problems))
        }
    }
}
