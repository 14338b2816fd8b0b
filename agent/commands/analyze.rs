//! `poolwatch analyze-benchmarks`: benchmark reports in, one self-contained HTML report out.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::advisor::WaitTarget;
use crate::bench::{analyze, html};

#[derive(Clone, Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Reports written by `poolwatch benchmark` (pool_test_*.json).
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// The HTML file to write.
    #[arg(long, short, default_value = "pool_optimization_report.html")]
    pub output: PathBuf,
    /// The p99 wait for a connection the recommendation must meet, in milliseconds.
    #[arg(long, default_value_t = 100.0)]
    pub target_p99_wait_ms: f64,
}

pub fn analyze_benchmarks(args: &AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let reports = analyze::load(&args.reports)?;
    let target = WaitTarget {
        p99_wait_seconds: args.target_p99_wait_ms / 1000.0,
    };
    let analysis = analyze::analyze(reports, target)?;
    std::fs::write(&args.output, html::render(&analysis))
        .with_context(|| format!("writing {}", args.output.display()))?;
    match &analysis.recommendation {
        Some(r) => eprintln!(
            "recommended pool_size {} ({}): {}\nwrote {}",
            r.pool_size,
            r.model.as_str(),
            r.reasoning,
            args.output.display()
        ),
        None => eprintln!("wrote {}", args.output.display()),
    }
    Ok(ExitCode::SUCCESS)
}
