//! `poolwatch check`: two samples of every target, `window` apart so rates exist, then each
//! pool's health. Exit code: 0 healthy, 1 warnings, 2 unhealthy, 3 could not check.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::config::{SourceConfig, TargetArgs};
use crate::health::{HealthReport, Status};
use crate::scheduler::{Agent, Options};

/// How `check` prints its report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

pub fn check(args: &TargetArgs, window: Duration, format: Format) -> anyhow::Result<ExitCode> {
    let mut config = match args.load() {
        Ok(config) => config,
        Err(problems) => {
            eprintln!("{problems}");
            return Ok(ExitCode::from(Status::Unknown.exit_code()));
        }
    };
    // One look has no receiver running: pushed pools are for `run`.
    config
        .targets
        .retain(|t| !matches!(t.source, SourceConfig::Otlp));
    if config.targets.is_empty() {
        eprintln!("no targets: give --config FILE or --target TYPE=URL|PATH");
        return Ok(ExitCode::from(Status::Unknown.exit_code()));
    }
    let rules = match args.rules(&config) {
        Ok((rules, _)) => rules,
        Err(problems) => {
            eprintln!("{problems}");
            return Ok(ExitCode::from(Status::Unknown.exit_code()));
        }
    };
    let window = window.max(Duration::from_millis(100));
    config.sample_interval = window;
    config.evaluation_interval = window;
    config.sample_timeout = config.sample_timeout.min(window);
    config.rate_window = config.rate_window.max(window);
    config.window = config.window.max(config.rate_window);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = runtime.block_on(async {
        // One look has no history to wait on: a rule counts when its condition holds now.
        let agent = Agent::start(
            &config,
            Options {
                rules,
                hold: false,
                receiver: None,
                loaded: Vec::new(),
            },
        );
        let mut updates = agent.subscribe();
        let enough =
            |p: &crate::status::Published| p.snapshot.targets.iter().all(|t| t.samples >= 2);
        let limit = window * 2 + config.sample_timeout * 2 + Duration::from_secs(1);
        let _ = tokio::time::timeout(limit, updates.wait_for(|p| enough(p))).await;
        agent.published().health().clone()
    });
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => print!("{}", table(&report)),
    }
    Ok(ExitCode::from(report.status.exit_code()))
}

fn percent(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.0}%", v * 100.0))
}

fn number<T: ToString>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn seconds(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}s"))
}

/// A plain table: one line per pool, its warnings and recommendations indented below.
pub fn table(report: &HealthReport) -> String {
    let mut out = String::new();
    let header = [
        "TARGET",
        "POOL",
        "STATUS",
        "USED",
        "IDLE",
        "PENDING",
        "SIZE",
        "UTIL",
        "AVG WAIT",
        "OLDEST WAIT",
        "CHURN/MIN",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for pool in &report.pools {
        let f = &pool.figures;
        rows.push(vec![
            pool.target.clone(),
            pool.pool.clone(),
            pool.status.as_str().into(),
            number(f.latest.used),
            number(f.latest.idle),
            number(f.latest.pending),
            number(f.latest.limits.pool_size),
            percent(f.utilization),
            seconds(f.avg_wait_time_seconds),
            seconds(f.latest.oldest_wait_seconds),
            f.churn_per_minute.map_or("-".into(), |c| format!("{c:.1}")),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
        if i == 0 {
            continue;
        }
        let pool = &report.pools[i - 1];
        for w in &pool.warnings {
            let _ = writeln!(out, "    warning: {w}");
        }
        for r in &pool.recommendations {
            let _ = writeln!(out, "    recommendation: {r}");
        }
    }
    for target in &report.targets {
        if let Some(error) = &target.error {
            let _ = writeln!(out, "could not check {}: {error}", target.target);
        }
        if target.alerts.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{} ({}):", target.target, target.status.as_str());
        for w in &target.warnings {
            let _ = writeln!(out, "    warning: {w}");
        }
        for r in &target.recommendations {
            let _ = writeln!(out, "    recommendation: {r}");
        }
    }
    let _ = writeln!(out, "status: {}", report.status.as_str());
    out
}
