//! The command line: arguments parsed once into a validated form, one function per command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands;
use crate::commands::check::Format;
use crate::config::{AlertingArgs, TargetArgs};

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
    /// The main job with nothing to install: an MDM-like workload on embedded SQLite and
    /// DuckDB files with undersized pools, watched by the full agent (rules, /metrics, the
    /// JSON API, the OTLP receiver), with a live summary. Ctrl-C stops it and removes its files.
    Demo(commands::demo::DemoArgs),
    /// Run the agent: sample every target, serve /metrics, /healthz and /api/v1/health, send
    /// alerts to Alertmanager.
    Run {
        #[command(flatten)]
        targets: TargetArgs,
        /// Address to serve on (overrides `listen` in the config).
        #[arg(long)]
        listen: Option<SocketAddr>,
        #[command(flatten)]
        alerting: AlertingArgs,
        /// exporter-toolkit web config (TLS, basic auth, headers) for every endpoint
        /// (overrides `web_config_file` in the config).
        #[arg(long, value_name = "FILE")]
        web_config_file: Option<PathBuf>,
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
    /// Recommend a pool size: the spec's basic formula and Little's-law function, and the
    /// Erlang C (M/M/c) table of waits per pool size.
    Size(commands::size::SizeArgs),
    /// The spec's performance test: drive a pool at each pool size and write a JSON report
    /// per size.
    Benchmark(Box<commands::benchmark::BenchmarkArgs>),
    /// Turn benchmark reports into one self-contained HTML report with charts and a
    /// recommended pool size.
    AnalyzeBenchmarks(commands::analyze::AnalyzeArgs),
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

/// Runs the parsed command; the process exit code comes back.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run {
            targets,
            listen,
            alerting,
            web_config_file,
        } => commands::run::run(targets, alerting, listen, web_config_file),
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
        Command::Demo(args) => commands::demo::demo(&args),
        Command::Size(args) => commands::size::size(&args),
        Command::Benchmark(args) => commands::benchmark::benchmark(&args),
        Command::AnalyzeBenchmarks(args) => commands::analyze::analyze_benchmarks(&args),
    }
}
