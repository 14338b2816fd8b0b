//! The command line: arguments parsed once into a validated form, one function per command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands;
use crate::config::{self, Config, Diagnostics};
use crate::rules::files::RuleSet;

#[derive(Debug, Parser)]
#[command(
    name = "poolwatch",
    version,
    about = "Watches database connection pools and says what to change before users notice."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: sample every target, serve /metrics, /healthz and /api/v1/health.
    Run {
        #[command(flatten)]
        targets: TargetArgs,
        /// Address to serve on (overrides `listen` in the config).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Check a config file (and the rule files it names) and print every problem in it.
    Validate {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Work with threshold rule files.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Sample every pool over a short window, print its health; exit 0 healthy, 1 warnings,
    /// 2 unhealthy, 3 could not check.
    Check {
        #[command(flatten)]
        targets: TargetArgs,
        /// Time between the two samples rates are computed from.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        window: Duration,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Run rule unit tests written for `promtool test rules` on poolwatch's evaluator.
    Test {
        /// Test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write the rules as one Prometheus rule file (to stdout unless --output).
    Export {
        #[arg(long, value_enum, default_value_t = ExportFormat::Prometheus)]
        format: ExportFormat,
        /// Rule files or directories (default: the rules shipped in the binary).
        #[arg(long = "rules", value_name = "PATH")]
        rules: Vec<PathBuf>,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Check rule files and print every problem.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Prometheus,
}

/// Where the targets come from: a config file, `--target` arguments, or both.
#[derive(Clone, Debug, Args)]
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

impl TargetArgs {
    /// The config these arguments describe.
    pub fn load(&self) -> Result<Config, Diagnostics> {
        let env: config::Env = &config::process_env;
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

/// Runs the parsed command; the process exit code comes back.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { targets, listen } => commands::run::run(targets, listen),
        Command::Validate { config } => Ok(commands::validate::validate(&config)),
        Command::Check {
            targets,
            window,
            format,
        } => commands::check::check(&targets, window, format),
        Command::Rules(RulesCommand::Test { files }) => Ok(commands::rules::test(&files)),
        Command::Rules(RulesCommand::Export {
            format: ExportFormat::Prometheus,
            rules,
            output,
        }) => commands::rules::export(&rules, output.as_deref()),
        Command::Rules(RulesCommand::Check { paths }) => Ok(commands::rules::check(&paths)),
    }
}
