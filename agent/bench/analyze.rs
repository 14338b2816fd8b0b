//! `analyze-benchmarks`: reads benchmark reports, puts the queueing model's prediction beside
//! each measurement and recommends a pool size, saying which model produced it and why.
//!
//! Open-loop runs (Poisson arrivals) share one workload: the arrival rate and mean hold time
//! pooled over the runs, from which Erlang C predicts each pool size and recommends the
//! smallest that meets the p99 wait target. Closed-loop runs (the spec's script: users back to
//! back) are predicted by the finite-source model from each run's own hold time; the
//! recommendation is then the measured knee: the smallest pool within 5% of the best throughput.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::report::Report;
use crate::advisor::{self, Model, Recommendation, WaitTarget, Workload, erlang, finite};

/// Throughput within this share of the best counts as the best (the closed-loop knee).
pub const KNEE: f64 = 0.95;

/// Why reports cannot be analysed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("no reports given")]
    Empty,
    #[error(
        "{open} is an open-loop run (--arrival-rate) and {closed} a closed-loop one: analyse \
         them separately"
    )]
    MixedLoops { open: PathBuf, closed: PathBuf },
    #[error(transparent)]
    Advisor(#[from] advisor::AdvisorError),
}

/// Reads and parses report files.
pub fn load(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Report)>, AnalyzeError> {
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).map_err(|e| AnalyzeError::Read {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let report = serde_json::from_str(&text).map_err(|e| AnalyzeError::Read {
                path: path.clone(),
                message: format!("line {} column {}: {e}", e.line(), e.column()),
            })?;
            Ok((path.clone(), report))
        })
        .collect()
}

/// What a model predicts for one run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Predicted {
    pub throughput_per_second: f64,
    pub mean_wait_seconds: Option<f64>,
    pub p99_wait_seconds: Option<f64>,
    /// Connections in use / pool_size.
    pub utilization: f64,
}

/// One run, measured and predicted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    pub file: String,
    pub pool_size: u32,
    pub max_overflow: u32,
    pub throughput_per_second: f64,
    pub mean_wait_seconds: f64,
    pub p99_wait_seconds: f64,
    pub p99_latency_seconds: f64,
    pub mean_hold_seconds: f64,
    pub utilization: f64,
    pub errors: u64,
    pub timeouts: u64,
    pub interrupted: bool,
    pub predicted: Option<Predicted>,
}

/// The reports, predictions and the recommendation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Analysis {
    /// By pool size.
    pub points: Vec<Point>,
    /// `erlang_c` for open-loop runs, `finite_source` for closed-loop ones.
    pub prediction_model: &'static str,
    /// The open-loop workload the predictions come from.
    pub workload: Option<Workload>,
    pub target: WaitTarget,
    pub recommendation: Option<Recommendation>,
    /// Settings that differ between the reports, and other things a reader should know.
    pub notes: Vec<String>,
    /// The first report's settings, for the header.
    pub settings: super::report::Settings,
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

fn measured(path: &Path, report: &Report) -> Point {
    Point {
        file: file_name(path),
        pool_size: report.settings.pool.pool_size,
        max_overflow: report.settings.pool.max_overflow,
        throughput_per_second: report.throughput_per_second,
        mean_wait_seconds: report.wait_seconds.mean,
        p99_wait_seconds: report.wait_seconds.p99,
        p99_latency_seconds: report.latency_seconds.p99,
        mean_hold_seconds: report.hold_seconds.mean,
        utilization: report.pool_metrics.pool_utilization,
        errors: report.errors,
        timeouts: report.pool_metrics.timeout_count,
        interrupted: report.interrupted,
        predicted: None,
    }
}

/// Settings other than the pool size that differ between reports.
fn differences(reports: &[(PathBuf, Report)]) -> Vec<String> {
    let first = &reports[0].1.settings;
    let mut notes = Vec::new();
    let mut note = |name: &str, differs: bool| {
        if differs {
            notes.push(format!(
                "The reports differ in {name}: they measure different workloads."
            ));
        }
    };
    let all = |f: &dyn Fn(&super::report::Settings) -> String| {
        reports.iter().any(|(_, r)| f(&r.settings) != f(first))
    };
    note("backend", all(&|s| s.backend.clone()));
    note("operation", all(&|s| s.operation.to_string()));
    note("concurrent_users", all(&|s| s.concurrent_users.to_string()));
    note("arrival_rate", all(&|s| format!("{:?}", s.arrival_rate)));
    note("hold_time_ms", all(&|s| s.hold_time_ms.to_string()));
    notes
}

/// Analyses reports (in any order) against a p99 wait target.
pub fn analyze(
    mut reports: Vec<(PathBuf, Report)>,
    target: WaitTarget,
) -> Result<Analysis, AnalyzeError> {
    if reports.is_empty() {
        return Err(AnalyzeError::Empty);
    }
    reports.sort_by(|a, b| {
        (a.1.settings.pool.pool_size, &a.0).cmp(&(b.1.settings.pool.pool_size, &b.0))
    });
    let open = reports
        .iter()
        .find(|(_, r)| r.settings.arrival_rate.is_some());
    let closed = reports
        .iter()
        .find(|(_, r)| r.settings.arrival_rate.is_none());
    if let (Some(open), Some(closed)) = (open, closed) {
        return Err(AnalyzeError::MixedLoops {
            open: open.0.clone(),
            closed: closed.0.clone(),
        });
    }
    let mut notes = differences(&reports);
    for (path, report) in &reports {
        if report.interrupted {
            notes.push(format!(
                "{} was interrupted after {:.0} s.",
                file_name(path),
                report.elapsed_seconds
            ));
        }
        if report.errors > 0 {
            notes.push(format!(
                "{}: {} operations failed.",
                file_name(path),
                report.errors
            ));
        }
    }
    let mut points: Vec<Point> = reports.iter().map(|(p, r)| measured(p, r)).collect();
    let settings = reports[0].1.settings.clone();
    if open.is_some() {
        // Each run is predicted from its own observed arrival rate and hold time, as the live
        // agent predicts a pool from what it observes; the recommendation pools them all.
        for (point, (_, report)) in points.iter_mut().zip(&reports) {
            if let Ok(workload) = run_workload(report) {
                point.predicted = Some(open_prediction(workload, point));
            }
        }
        let workload = pooled_workload(&reports)?;
        let recommendation = advisor::recommend(workload, target, None)?;
        return Ok(Analysis {
            points,
            prediction_model: "erlang_c",
            workload: Some(workload),
            target,
            recommendation: Some(recommendation),
            notes,
            settings,
        });
    }
    for (point, (_, report)) in points.iter_mut().zip(&reports) {
        let population = finite::Population::new(
            u64::from(report.settings.concurrent_users),
            report.settings.think_time_ms / 1e3,
            report.hold_seconds.mean,
        );
        if let Ok(population) = population {
            let c = u64::from(point.pool_size + point.max_overflow);
            let p = population.predict(c);
            point.predicted = Some(Predicted {
                throughput_per_second: p.throughput_per_second,
                mean_wait_seconds: Some(p.mean_wait_seconds),
                p99_wait_seconds: None,
                utilization: p.utilization * c as f64 / f64::from(point.pool_size),
            });
        }
    }
    let recommendation = knee(&points, settings.concurrent_users);
    Ok(Analysis {
        points,
        prediction_model: "finite_source",
        workload: None,
        target,
        recommendation,
        notes,
        settings,
    })
}

/// What Erlang C predicts for a run's pool (pool_size + max_overflow connections).
fn open_prediction(workload: Workload, point: &Point) -> Predicted {
    let c = u64::from(point.pool_size + point.max_overflow);
    let p = erlang::predict(workload, c);
    Predicted {
        throughput_per_second: if p.stable() {
            workload.arrival_rate
        } else {
            c as f64 / workload.mean_hold_seconds
        },
        mean_wait_seconds: p.mean_wait_seconds,
        p99_wait_seconds: p.p99_wait_seconds,
        utilization: p.offered_load.min(c as f64) / f64::from(point.pool_size),
    }
}

/// A run's own workload: the arrival rate it generated and the mean time each checkout kept a
/// connection from the next caller: its hold, plus the hand-off to a waiting caller where
/// there was one (a returned connection reaches a sleeping waiter only once that thread runs;
/// the model would otherwise count that time as free).
pub fn run_workload(report: &Report) -> Result<Workload, AnalyzeError> {
    let rate = report
        .arrival_rate_per_second
        .or(report.settings.arrival_rate)
        .unwrap_or(report.throughput_per_second);
    Ok(Workload::new(rate, service_seconds(report))?)
}

/// The mean hold time with the hand-offs spread over every checkout.
fn service_seconds(report: &Report) -> f64 {
    let hold = &report.hold_seconds;
    match report.handoffs {
        Some(h) if hold.count > 0 => hold.mean + h.total_seconds / hold.count as f64,
        _ => hold.mean,
    }
}

/// The open-loop workload: arrivals per second over all runs, and the mean hold time (hand-offs
/// included, as in [`run_workload`]) over all their checkouts.
fn pooled_workload(reports: &[(PathBuf, Report)]) -> Result<Workload, AnalyzeError> {
    let mut arrivals = 0.0;
    let mut seconds = 0.0;
    let mut holds = 0.0;
    let mut hold_seconds = 0.0;
    for (_, r) in reports {
        let rate = r
            .arrival_rate_per_second
            .or(r.settings.arrival_rate)
            .unwrap_or(0.0);
        let measured = r.elapsed_seconds.min(r.settings.duration_seconds);
        arrivals += rate * measured;
        seconds += measured;
        holds += r.hold_seconds.count as f64;
        hold_seconds += service_seconds(r) * r.hold_seconds.count as f64;
    }
    let rate = if seconds > 0.0 {
        arrivals / seconds
    } else {
        0.0
    };
    let hold = if holds > 0.0 {
        hold_seconds / holds
    } else {
        0.0
    };
    Ok(Workload::new(rate, hold)?)
}

/// Closed loop: the smallest pool size within 5% of the best measured throughput.
fn knee(points: &[Point], users: u32) -> Option<Recommendation> {
    let best = points
        .iter()
        .max_by(|a, b| a.throughput_per_second.total_cmp(&b.throughput_per_second))?;
    let chosen = points
        .iter()
        .find(|p| p.throughput_per_second >= KNEE * best.throughput_per_second)?;
    let mut reasoning = format!(
        "Measured (closed loop, {} users back to back): the best throughput is {:.0} ops/s at \
         pool_size {}. pool_size {} reaches {:.0} ops/s ({:.0}% of it)",
        users,
        best.throughput_per_second,
        best.pool_size,
        chosen.pool_size,
        chosen.throughput_per_second,
        chosen.throughput_per_second / best.throughput_per_second * 100.0
    );
    let _ = write!(
        reasoning,
        "; beyond it more connections add little throughput, and callers who no longer wait in \
         the pool wait inside the database instead. With users sending back to back, the pool \
         always has a queue (p99 wait {:.0} ms at {}); to size for a wait target, run with \
         --arrival-rate at the expected request rate.",
        chosen.p99_wait_seconds * 1e3,
        chosen.pool_size
    );
    Some(Recommendation {
        pool_size: u64::from(chosen.pool_size),
        model: Model::Measured,
        meets_target: true,
        limit: None,
        prediction: None,
        reasoning,
    })
}
