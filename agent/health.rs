//! Health per pool in the spec's shape `{status, warnings[], recommendations[]}`, derived from
//! the firing alerts of the threshold rules in `rules/`.
//!
//! Severity decides status: `critical` → `unhealthy`; `warning` → `degraded` (the spec keeps
//! status `healthy` while listing warnings; we name that state so `check` can exit 1 on it);
//! `info` is listed without changing the status. A pool's warnings are its alerts' `warning`
//! annotations (else `summary`), its recommendations their `recommendation` annotations. A
//! target that could not be sampled makes the report `unknown`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{Labels, PoolEnd, PoolFigures, PoolSample};
use crate::rules::alerts::{Alert, AlertState};
use crate::rules::files::AlertRule;
use crate::status::Snapshot;

/// The label that names a pool in alerts, as in every pool series.
pub const POOL_LABEL: &str = "db_client_connection_pool_name";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
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

    fn of_severity(severity: &str) -> Status {
        match severity {
            "critical" => Status::Unhealthy,
            "warning" => Status::Degraded,
            _ => Status::Healthy,
        }
    }
}

/// The verdict of the alerts about one pool or one target.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdict {
    pub status: Option<Status>,
    pub warnings: Vec<String>,
    pub recommendations: Vec<String>,
    /// Names of the firing alerts behind the verdict.
    pub alerts: Vec<String>,
}

impl Verdict {
    fn add(&mut self, rule: &AlertRule, alert: &Alert) {
        let status = Status::of_severity(rule.severity());
        self.status = Some(self.status.map_or(status, |s| s.max(status)));
        let warning = alert
            .annotations
            .get("warning")
            .or(alert.annotations.get("summary"));
        self.warnings
            .extend(warning.filter(|w| !w.is_empty()).cloned());
        let recommendation = alert.annotations.get("recommendation");
        self.recommendations
            .extend(recommendation.filter(|r| !r.is_empty()).cloned());
        self.alerts.push(rule.name.clone());
    }

    fn status(&self) -> Status {
        self.status.unwrap_or(Status::Healthy)
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
    pub alerts: Vec<String>,
    pub figures: PoolFigures,
}

/// Alerts about a target as a whole (down, PostgreSQL headroom).
#[derive(Clone, Debug, Serialize)]
pub struct TargetHealth {
    pub target: String,
    pub status: Status,
    pub warnings: Vec<String>,
    pub recommendations: Vec<String>,
    pub alerts: Vec<String>,
}

/// A target whose last sample failed: its pools' health is unknown.
#[derive(Clone, Debug, Serialize)]
pub struct TargetProblem {
    pub target: String,
    pub error: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct HealthReport {
    /// The worst status of any pool or target.
    pub status: Status,
    pub pools: Vec<PoolHealth>,
    pub targets: Vec<TargetHealth>,
    pub unreachable: Vec<TargetProblem>,
}

/// Judges every pool from the firing alerts.
pub fn report(snapshot: &Snapshot, alerts: &[(&AlertRule, &Alert)]) -> HealthReport {
    // A pool is its target, its name and its own labels: pushed pools of one name from two
    // service instances are told apart by their service labels.
    let mut pool_labels: BTreeMap<(&str, &str), Vec<&Labels>> = BTreeMap::new();
    for target in &snapshot.targets {
        for figures in &target.pools {
            pool_labels
                .entry((target.name.as_str(), figures.latest.pool.as_str()))
                .or_default()
                .push(&figures.latest.labels);
        }
    }
    let mut by_pool: BTreeMap<(String, String, Labels), Verdict> = BTreeMap::new();
    let mut by_target: BTreeMap<String, Verdict> = BTreeMap::new();
    for (rule, alert) in alerts.iter().filter(|(_, a)| a.state == AlertState::Firing) {
        let target = alert.labels.get("target").cloned().unwrap_or_default();
        match alert.labels.get(POOL_LABEL) {
            Some(pool) => {
                let own = pool_labels
                    .get(&(target.as_str(), pool.as_str()))
                    .into_iter()
                    .flatten()
                    .find(|own| own.iter().all(|(k, v)| alert.labels.get(k) == Some(v)))
                    .map(|own| (*own).clone())
                    .unwrap_or_default();
                by_pool
                    .entry((target, pool.clone(), own))
                    .or_default()
                    .add(rule, alert)
            }
            None => by_target.entry(target).or_default().add(rule, alert),
        }
    }
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
            let key = (
                target.name.clone(),
                figures.latest.pool.clone(),
                figures.latest.labels.clone(),
            );
            let verdict = by_pool.remove(&key).unwrap_or_default();
            pools.push(PoolHealth {
                target: key.0,
                pool: key.1,
                status: verdict.status(),
                warnings: verdict.warnings,
                recommendations: verdict.recommendations,
                alerts: verdict.alerts,
                figures: figures.clone(),
            });
        }
        // A pushed pool that went silent with connections open: nobody knows how it is. One
        // that ended cleanly is no failure and is only listed with its target.
        for gone in target.gone.iter().filter(|g| g.state == PoolEnd::Stale) {
            pools.push(PoolHealth {
                target: target.name.clone(),
                pool: gone.pool.clone(),
                status: Status::Unknown,
                warnings: vec![format!(
                    "stopped reporting with {} connections in use and {} callers waiting",
                    gone.used.unwrap_or(0),
                    gone.pending.unwrap_or(0)
                )],
                recommendations: Vec::new(),
                alerts: Vec::new(),
                figures: PoolFigures::from_latest(PoolSample {
                    pool: gone.pool.clone(),
                    labels: gone.labels.clone(),
                    ..PoolSample::default()
                }),
            });
        }
    }
    // Alerts about pools the snapshot no longer shows (kept firing a while) still count.
    for ((target, _, _), verdict) in by_pool {
        let entry = by_target.entry(target).or_default();
        entry.status = entry.status.max(verdict.status);
        entry.warnings.extend(verdict.warnings);
        entry.recommendations.extend(verdict.recommendations);
        entry.alerts.extend(verdict.alerts);
    }
    let targets: Vec<TargetHealth> = by_target
        .into_iter()
        .map(|(target, v)| TargetHealth {
            target,
            status: v.status(),
            warnings: v.warnings,
            recommendations: v.recommendations,
            alerts: v.alerts,
        })
        .collect();
    let worst = pools
        .iter()
        .map(|p| p.status)
        .chain(targets.iter().map(|t| t.status))
        .max()
        .unwrap_or(Status::Healthy);
    HealthReport {
        status: if unreachable.is_empty() {
            worst
        } else {
            Status::Unknown
        },
        pools,
        targets,
        unreachable,
    }
}
