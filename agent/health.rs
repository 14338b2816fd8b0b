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

use crate::model::{Labels, PoolEnd, PoolFigures, PoolSample, SourceKind};
use crate::rules::alerts::{Alert, AlertState};
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
    /// Counts a firing alert in, by its `severity` label (`warning` without one, as a rule
    /// without one is read) and named by its `alertname`.
    fn add(&mut self, alert: &Alert) {
        let severity = alert
            .labels
            .get("severity")
            .map_or("warning", String::as_str);
        let status = Status::of_severity(severity);
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
        self.alerts.extend(alert.labels.get("alertname").cloned());
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

/// A target as a whole: whether it could be sampled, and the alerts about it rather than one of
/// its pools (down, PostgreSQL headroom), including those of pools it no longer shows.
#[derive(Clone, Debug, Serialize)]
pub struct TargetHealth {
    pub target: String,
    pub source: SourceKind,
    /// Whether its last sample succeeded; absent until the first one ends.
    pub up: Option<bool>,
    /// `unknown` while it cannot be sampled; otherwise from its alerts.
    pub status: Status,
    /// Why the last sample failed.
    pub error: Option<String>,
    pub warnings: Vec<String>,
    pub recommendations: Vec<String>,
    pub alerts: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct HealthReport {
    /// The worst status of any pool or target.
    pub status: Status,
    pub pools: Vec<PoolHealth>,
    /// Every target, up or not.
    pub targets: Vec<TargetHealth>,
}

/// Judges every pool and target from the firing alerts.
pub fn report(snapshot: &Snapshot, alerts: &[Alert]) -> HealthReport {
    // A pool is its target, its name and its own labels: pushed pools of one name from two
    // service instances are told apart by their service labels.
    let mut pool_labels: BTreeMap<(&str, &str), Vec<&Labels>> = BTreeMap::new();
    for target in &snapshot.targets {
        for figures in target.pools.iter() {
            pool_labels
                .entry((target.name.as_str(), figures.latest.pool.as_str()))
                .or_default()
                .push(&figures.latest.labels);
        }
    }
    let mut by_pool: BTreeMap<(String, String, Labels), Verdict> = BTreeMap::new();
    let mut by_target: BTreeMap<String, Verdict> = BTreeMap::new();
    for alert in alerts.iter().filter(|a| a.state == AlertState::Firing) {
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
                    .add(alert)
            }
            None => by_target.entry(target).or_default().add(alert),
        }
    }
    let count = (snapshot.targets.iter().filter(|t| t.up))
        .map(|t| t.pools.len() + t.gone.len())
        .sum();
    let mut pools = Vec::with_capacity(count);
    for target in snapshot.targets.iter().filter(|t| t.up) {
        for figures in target.pools.iter() {
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
    let targets: Vec<TargetHealth> = snapshot
        .targets
        .iter()
        .map(|t| {
            let verdict = by_target.remove(&t.name).unwrap_or_default();
            let sampled = t.samples > 0;
            TargetHealth {
                target: t.name.clone(),
                source: t.source,
                up: sampled.then_some(t.up),
                status: if t.up {
                    verdict.status()
                } else {
                    Status::Unknown
                },
                error: match (t.up, sampled) {
                    (true, _) => None,
                    (false, true) => t.last_error.clone(),
                    (false, false) => Some("not sampled yet".into()),
                },
                warnings: verdict.warnings,
                recommendations: verdict.recommendations,
                alerts: verdict.alerts,
            }
        })
        .collect();
    let status = pools
        .iter()
        .map(|p| p.status)
        .chain(targets.iter().map(|t| t.status))
        .max()
        .unwrap_or(Status::Healthy);
    HealthReport {
        status,
        pools,
        targets,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::model::{Labels, PoolSample};
    use crate::rules::alerts::RuleEngine;
    use crate::rules::files::{RuleSet, parse_file};
    use crate::series::{NAME_LABEL, SeriesStore};
    use crate::status::TargetStatus;

    /// One rule per severity, each firing on a series of its own (told apart by a `signal`
    /// label), so a case picks its alerts by the series it feeds.
    const RULES: &str = r#"
groups:
  - name: g
    rules:
      - alert: Critical
        expr: poolwatch_pool_lock_waits{signal="critical"} > 0
        labels: {severity: critical}
        annotations: {summary: s, warning: "c warning", recommendation: "c recommendation"}
      - alert: Warning
        expr: poolwatch_pool_lock_waits{signal="warning"} > 0
        labels: {severity: warning}
        annotations: {summary: s, warning: "w warning", recommendation: "w recommendation"}
      - alert: Info
        expr: poolwatch_pool_lock_waits{signal="info"} > 0
        labels: {severity: info}
        annotations: {summary: "i summary"}
      - alert: Slow
        expr: poolwatch_pool_lock_waits{signal="pending"} > 0
        for: 1h
        labels: {severity: critical}
        annotations: {summary: s}
"#;

    fn target(name: &str, up: bool, samples: u64, pools: &[&str]) -> TargetStatus {
        TargetStatus {
            name: name.into(),
            source: SourceKind::Pgbouncer,
            endpoint: String::new(),
            labels: Labels::new(),
            up,
            samples,
            last_duration_seconds: None,
            last_success_unix_seconds: None,
            errors: BTreeMap::new(),
            last_error: (!up && samples > 0).then(|| "connect: refused".to_string()),
            warnings: vec![],
            server: None,
            gone: vec![],
            pools: pools
                .iter()
                .map(|p| {
                    PoolFigures::from_latest(PoolSample {
                        pool: p.to_string(),
                        ..PoolSample::default()
                    })
                })
                .collect(),
        }
    }

    /// Fires `signal` (a series of RULES) with these labels.
    fn judge(targets: Vec<TargetStatus>, signals: &[(&str, &[(&str, &str)])]) -> HealthReport {
        let set = RuleSet {
            groups: parse_file(Path::new("t.yaml"), RULES).unwrap(),
            files: vec![],
        };
        let mut store = SeriesStore::new(60_000);
        for (name, labels) in signals {
            let mut all: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            all.insert(
                "signal".into(),
                name.trim_end_matches("_signal").to_string(),
            );
            all.insert(NAME_LABEL.into(), "poolwatch_pool_lock_waits".to_string());
            store.append(all, 0, 1.0);
        }
        let mut engine = RuleEngine::new(set);
        engine.evaluate_all(&store, 0, true);
        let snapshot = Snapshot {
            targets,
            ..Snapshot::default()
        };
        let alerts: Vec<Alert> = (engine.alerts().into_iter())
            .map(|(_, a)| a.clone())
            .collect();
        report(&snapshot, &alerts)
    }

    const P: (&str, &str) = (POOL_LABEL, "p");
    const T: (&str, &str) = ("target", "t");

    #[test]
    fn statuses_come_from_severities_and_reachability() {
        struct Case {
            name: &'static str,
            targets: Vec<TargetStatus>,
            signals: Vec<(&'static str, Vec<(&'static str, &'static str)>)>,
            overall: Status,
            pool: Option<Status>,
            target: Status,
        }
        let cases = vec![
            Case {
                name: "no alert",
                targets: vec![target("t", true, 1, &["p"])],
                signals: vec![],
                overall: Status::Healthy,
                pool: Some(Status::Healthy),
                target: Status::Healthy,
            },
            Case {
                name: "a warning degrades the pool",
                targets: vec![target("t", true, 1, &["p"])],
                signals: vec![("warning_signal", vec![T, P])],
                overall: Status::Degraded,
                pool: Some(Status::Degraded),
                target: Status::Healthy,
            },
            Case {
                name: "critical wins over warning",
                targets: vec![target("t", true, 1, &["p"])],
                signals: vec![
                    ("warning_signal", vec![T, P]),
                    ("critical_signal", vec![T, P]),
                ],
                overall: Status::Unhealthy,
                pool: Some(Status::Unhealthy),
                target: Status::Healthy,
            },
            Case {
                name: "info is listed but changes nothing",
                targets: vec![target("t", true, 1, &["p"])],
                signals: vec![("info_signal", vec![T, P])],
                overall: Status::Healthy,
                pool: Some(Status::Healthy),
                target: Status::Healthy,
            },
            Case {
                name: "a pending alert is not a verdict",
                targets: vec![target("t", true, 1, &["p"])],
                signals: vec![("pending_signal", vec![T, P])],
                overall: Status::Healthy,
                pool: Some(Status::Healthy),
                target: Status::Healthy,
            },
            Case {
                name: "an alert about the target as a whole",
                targets: vec![target("t", true, 1, &["p"])],
                signals: vec![("critical_signal", vec![T])],
                overall: Status::Unhealthy,
                pool: Some(Status::Healthy),
                target: Status::Unhealthy,
            },
            Case {
                name: "a vanished pool's alert counts on its target",
                targets: vec![target("t", true, 1, &[])],
                signals: vec![("warning_signal", vec![T, P])],
                overall: Status::Degraded,
                pool: None,
                target: Status::Degraded,
            },
            Case {
                name: "a target that cannot be sampled is unknown",
                targets: vec![target("t", false, 3, &[])],
                signals: vec![],
                overall: Status::Unknown,
                pool: None,
                target: Status::Unknown,
            },
            Case {
                name: "a target not sampled yet is unknown",
                targets: vec![target("t", false, 0, &[])],
                signals: vec![],
                overall: Status::Unknown,
                pool: None,
                target: Status::Unknown,
            },
        ];
        for case in cases {
            let signals: Vec<(&str, &[(&str, &str)])> = case
                .signals
                .iter()
                .map(|(n, l)| (*n, l.as_slice()))
                .collect();
            let report = judge(case.targets, &signals);
            assert_eq!(report.status, case.overall, "{}", case.name);
            assert_eq!(
                report.pools.first().map(|p| p.status),
                case.pool,
                "{}",
                case.name
            );
            assert_eq!(report.targets[0].status, case.target, "{}", case.name);
        }
    }

    #[test]
    fn warnings_and_recommendations_come_from_annotations() {
        let report = judge(
            vec![target("t", true, 1, &["p"])],
            &[("warning_signal", &[T, P]), ("info_signal", &[T, P])],
        );
        let pool = &report.pools[0];
        assert_eq!(pool.warnings, vec!["w warning", "i summary"]);
        assert_eq!(pool.recommendations, vec!["w recommendation"]);
        assert_eq!(pool.alerts, vec!["Warning", "Info"]);
    }

    #[test]
    fn a_down_target_says_why_and_shows_no_pools() {
        let report = judge(vec![target("t", false, 2, &["p"])], &[]);
        assert!(report.pools.is_empty());
        assert_eq!(report.targets[0].up, Some(false));
        assert_eq!(report.targets[0].error.as_deref(), Some("connect: refused"));
        let fresh = judge(vec![target("t", false, 0, &[])], &[]);
        assert_eq!(fresh.targets[0].up, None);
        assert_eq!(fresh.targets[0].error.as_deref(), Some("not sampled yet"));
    }
}
