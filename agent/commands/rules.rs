//! `poolwatch rules test|export|check`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::rules::export;
use crate::rules::files::RuleSet;
use crate::rules::runner;

/// Runs promtool-format rule tests; exit 1 if any fails.
pub fn test(files: &[PathBuf]) -> ExitCode {
    let mut failed = 0;
    for file in files {
        println!("Unit Testing: {}", file.display());
        let result = runner::run_file(file);
        if result.passed() {
            println!("  SUCCESS\n");
        } else {
            failed += 1;
            println!("  FAILED:");
            for failure in &result.failures {
                println!("    {failure}");
            }
            println!();
        }
    }
    println!("{} passed, {failed} failed", files.len() - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Writes the rules as a Prometheus rule file.
pub fn export(paths: &[PathBuf], output: Option<&Path>) -> anyhow::Result<ExitCode> {
    let rules = if paths.is_empty() {
        RuleSet::embedded()
    } else {
        match RuleSet::load(paths) {
            Ok(rules) => rules,
            Err(problems) => {
                eprintln!("{problems}");
                return Ok(ExitCode::from(2));
            }
        }
    };
    let text = export::to_prometheus(&rules).map_err(anyhow::Error::msg)?;
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads and checks rule files, printing every problem.
pub fn check(paths: &[PathBuf]) -> ExitCode {
    match RuleSet::load(paths) {
        Ok(rules) => {
            println!(
                "{} rule(s) in {} file(s): ok",
                rules.rule_count(),
                rules.files.len()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            eprintln!("{problems}");
            eprintln!("{} problem(s)", problems.0.len());
            ExitCode::from(2)
        }
    }
}
