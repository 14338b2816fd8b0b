//! Where a command's targets and rules come from: a config file, `--target` arguments, or both.
//! Shared by `run`, `check` and hot reload, which loads them again.

use std::path::PathBuf;

use clap::Args;

use super::{Config, Diagnostics, Env, process_env};
use crate::rules::files::RuleSet;

/// Where the targets come from: a config file, `--target` arguments, or both.
#[derive(Clone, Debug, Default, Args)]
pub struct TargetArgs {
    /// The config file (see config/poolwatch.yaml).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// A target without a config file, repeatable: pgbouncer=URL, postgres=URL (e.g.
    /// pgbouncer=postgres://pgbouncer@127.0.0.1:6432/pgbouncer; a URL without a password takes
    /// PGPASSWORD), sqlite=PATH, duckdb=PATH, or mdm=MDM_HOME (`mdm` alone: $MDM_HOME_DIR, else
    /// ~/.mdm).
    #[arg(long = "target", value_name = "TYPE=URL|PATH")]
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
