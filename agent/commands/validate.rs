//! `poolwatch validate`: every problem of a config file, one per line, on stderr.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, Config};

pub fn validate(path: &Path) -> ExitCode {
    match Config::load(path, &config::process_env) {
        Ok(config) => {
            println!("{}: ok, {} target(s)", path.display(), config.targets.len());
            ExitCode::SUCCESS
        }
        Err(problems) => {
            eprintln!("{problems}");
            eprintln!("{}: {} problem(s)", path.display(), problems.0.len());
            ExitCode::from(2)
        }
    }
}
