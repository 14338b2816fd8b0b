//! The `poolwatch` binary: parse, set up logging, run.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = poolwatch::cli::Cli::parse();
    // The demo's terminal belongs to its live summary: only warnings and errors by default.
    let level = match cli.command {
        poolwatch::cli::Command::Demo(_) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("POOLWATCH_LOG").unwrap_or_else(|_| EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        // Colour only for a terminal: a log file or a journal gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match poolwatch::cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("poolwatch: {error:#}");
            ExitCode::from(3)
        }
    }
}
