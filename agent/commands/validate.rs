//! `poolwatch validate`: every problem of a config file, one per line, on stderr.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, Config};

pub fn validate(path: &Path) -> ExitCode {
    match Config::load(path, &config::process_env) {
        Ok(config) => match crate::rules::files::RuleSet::load(&config.rules) {
            Ok(rules) if !config.rules.is_empty() => {
                println!(
                    "{}: ok, {} target(s), {} rule(s)",
                    path.display(),
                    config.targets.len(),
                    rules.rule_count()
                );
                ExitCode::SUCCESS
            }
            Ok(_) => {
                println!("{}: ok, {} target(s)", path.display(), config.targets.len());
                ExitCode::SUCCESS
            }
            Err(problems) => {
                eprintln!("{problems}");
                eprintln!(
                    "{}: {} problem(s) in its rule files",
                    path.display(),
                    problems.0.len()
                );
                ExitCode::from(2)
            }
        },
        Err(problems) => {
            eprintln!("{problems}");
            eprintln!("{}: {} problem(s)", path.display(), problems.0.len());
            ExitCode::from(2)
        }
    }
}
