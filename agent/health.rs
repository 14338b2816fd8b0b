//! Health per pool in the spec's shape `{status, warnings[], recommendations[]}`, from the spec's
//! `check_pool_health` thresholds. Recommendations name the setting and, where the figures allow,
//! the value to set.
//!
//! Status: `healthy`; `degraded` when there are warnings (the spec keeps status `healthy` with
//! warnings; we name the state so `check` can exit 1 on it); `unhealthy` on excessive connection
//! errors; `unknown` when the pool's target could not be sampled.

use serde::Serialize;

use crate::model::PoolFigures;
use crate::status::Snapshot;

/// The spec's thresholds.
pub const UTILIZATION_THRESHOLD: f64 = 0.8;
pub const WAIT_THRESHOLD_SECONDS: f64 = 1.0;
pub const CONNECTION_ERRORS_THRESHOLD: u64 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Healthy,
    Degraded,
    Unhealthy,
    Unknown,
}

impl Status {
    /// `check`'s exit code: 0 healthy, 1 warnings, 2 unhealthy, 3 could not check.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Healthy => 0,
            Status::Degraded => 1,
            Status::Unhealthy => 2,
            Status::Unknown => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Unhealthy => "unhealthy",
            Status::Unknown => "unknown",
        }
    }
}

/// One pool's health, in the spec's shape, with its figures.
#[derive(Clone, Debug, Serialize)]
pub struct PoolHealth {
    pub target: String,
    pub pool: String,
    pub status: Status,
    pub warnings: Vec<String>,
    pub recommendations: Vec<String>,
    pub figures: PoolFigures,
}

/// A target that could not be sampled: its pools' health is unknown.
#[derive(Clone, Debug, Serialize)]
pub struct TargetProblem {
    pub target: String,
    pub error: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct HealthReport {
    /// The worst status of any pool or target.
    pub status: Status,
    pub pools: Vec<PoolHealth>,
    pub unreachable: Vec<TargetProblem>,
}

/// Judges every pool of every target.
pub fn report(snapshot: &Snapshot) -> HealthReport {
    let mut pools = Vec::new();
    let mut unreachable = Vec::new();
    for target in &snapshot.targets {
        if !target.up {
            unreachable.push(TargetProblem {
                target: target.name.clone(),
                error: target
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "not sampled yet".into()),
            });
            continue;
        }
        for figures in &target.pools {
            pools.push(assess(&target.name, figures));
        }
    }
    let worst_pool = pools
        .iter()
        .map(|p| p.status)
        .max()
        .unwrap_or(Status::Healthy);
    let status = if unreachable.is_empty() {
        worst_pool
    } else {
        Status::Unknown
    };
    HealthReport {
        status,
        pools,
        unreachable,
    }
}

/// The spec's `check_pool_health` for one pool.
pub fn assess(target: &str, f: &PoolFigures) -> PoolHealth {
    let mut status = Status::Healthy;
    let mut warnings = Vec::new();
    let mut recommendations = Vec::new();
    let limits = f.latest.limits;
    if let Some(utilization) = f.utilization.filter(|u| *u > UTILIZATION_THRESHOLD) {
        warnings.push(format!(
            "High pool utilization: {:.0}% of pool_size {}",
            utilization * 100.0,
            limits.pool_size.unwrap_or_default()
        ));
        recommendations.push(match (limits.pool_size, recommended_pool_size(f)) {
            (Some(now), Some(to)) => format!(
                "Increase pool_size from {now} to {to} (demand {} keeps utilization at or \
                 below {:.0}%)",
                demand(f),
                UTILIZATION_THRESHOLD * 100.0
            ),
            _ => "Increase pool_size".into(),
        });
    }
    if let Some(wait) = f
        .avg_wait_time_seconds
        .filter(|w| *w > WAIT_THRESHOLD_SECONDS)
    {
        warnings.push(format!("High connection wait time: {wait:.2}s on average"));
        recommendations.push(match (limits.pool_size, recommended_pool_size(f)) {
            (Some(now), Some(to)) => {
                format!("Increase pool_size from {now} to {to} or optimize queries")
            }
            _ => "Increase pool_size or optimize queries".into(),
        });
    }
    if let Some(errors) = f
        .connection_errors
        .filter(|e| *e > CONNECTION_ERRORS_THRESHOLD)
    {
        status = Status::Unhealthy;
        warnings.push(format!(
            "Excessive connection errors: {errors} in the rate window"
        ));
    }
    if status == Status::Healthy && !warnings.is_empty() {
        status = Status::Degraded;
    }
    PoolHealth {
        target: target.to_string(),
        pool: f.latest.pool.clone(),
        status,
        warnings,
        recommendations,
        figures: f.clone(),
    }
}

/// Connections the pool's callers want right now: those holding one plus those waiting.
fn demand(f: &PoolFigures) -> u64 {
    f.latest.used.unwrap_or(0) + f.latest.pending.unwrap_or(0)
}

/// The smallest pool_size that serves today's demand at or below the utilization threshold,
/// and always more than the current size.
pub fn recommended_pool_size(f: &PoolFigures) -> Option<u64> {
    let now = f.latest.limits.pool_size?;
    let needed = (demand(f) as f64 / UTILIZATION_THRESHOLD).ceil() as u64;
    Some(needed.max(now + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PoolLimits, PoolSample};

    fn figures(used: u64, pending: u64, pool_size: u64) -> PoolFigures {
        PoolFigures::from_latest(PoolSample {
            pool: "p".into(),
            used: Some(used),
            pending: Some(pending),
            limits: PoolLimits {
                pool_size: Some(pool_size),
                ..PoolLimits::default()
            },
            ..PoolSample::default()
        })
    }

    #[test]
    fn saturated_pool_gets_the_size_that_serves_its_demand() {
        let h = assess("t", &figures(5, 7, 5));
        assert_eq!(h.status, Status::Degraded);
        assert_eq!(
            h.warnings,
            vec!["High pool utilization: 100% of pool_size 5"]
        );
        assert_eq!(
            h.recommendations,
            vec!["Increase pool_size from 5 to 15 (demand 12 keeps utilization at or below 80%)"]
        );
    }

    #[test]
    fn the_thresholds_are_strict_as_in_the_spec() {
        assert_eq!(assess("t", &figures(8, 0, 10)).status, Status::Healthy);
        assert_eq!(assess("t", &figures(9, 0, 10)).status, Status::Degraded);
        let mut f = figures(1, 0, 10);
        f.avg_wait_time_seconds = Some(1.0);
        assert_eq!(assess("t", &f).status, Status::Healthy);
        f.avg_wait_time_seconds = Some(1.5);
        assert_eq!(
            assess("t", &f).recommendations,
            vec!["Increase pool_size from 10 to 11 or optimize queries"]
        );
        f.connection_errors = Some(11);
        assert_eq!(assess("t", &f).status, Status::Unhealthy);
    }

    #[test]
    fn absent_figures_raise_nothing() {
        let f = PoolFigures::from_latest(PoolSample::default());
        let h = assess("t", &f);
        assert_eq!((h.status, h.warnings.len()), (Status::Healthy, 0));
    }
}
