//! `poolwatch validate`: every problem of a config file, one per line, on stderr.

use std::path::Path;
use std::process::ExitCode;

use crate::config::web::WebConfig;
use crate::config::{self, Config};

pub fn validate(path: &Path) -> ExitCode {
    let loaded = Config::load(path, &config::process_env);
    if let Ok(config) = &loaded
        && let Some(Err(problems)) = config.web_config_file.as_deref().map(WebConfig::load)
    {
        eprintln!("{problems}");
        let count = problems.0.len();
        eprintln!("{}: {count} problem(s) in its web config", path.display());
        return ExitCode::from(2);
    }
    match loaded {
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
