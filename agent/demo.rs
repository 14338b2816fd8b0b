//! What `poolwatch demo` runs besides the agent: MDM-like datasets in embedded database files,
//! a workload of several users on deliberately undersized instrumented pools, those pools as
//! targets of the agent, the shipped rules with their waits shortened, and the live summary.
//!
//! The pools reach the agent as in-process targets ([`SourceConfig::InProcess`]), one per
//! database file, sampled by [`CountedPool::sample`]. That is the one view that sees what
//! the demo is about: callers waiting for a connection, their wait and the hold times, which
//! only the application knows (a file target sees the file and the processes holding it, not
//! the pool in front of it). A file target on the same files would add a second, differently
//! shaped pool per file and nothing the summary shows, so the demo has none.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::bench::workload::{BenchError, BlockingBackend, Dataset, Operation};
use crate::config::{SourceConfig, Target};
use crate::model::{Labels, PoolLimits, SourceKind, TargetSample};
use crate::pools::{CountedPool, InstrumentedPool, PoolSettings};
use crate::rules::alerts::{Alert, AlertState};
use crate::rules::files::RuleSet;
use crate::sources::inprocess::InProcessPools;
use crate::status::Published;

/// The longest `for` and `keep_firing_for` of the demo's rules, so that a rule fires within
/// seconds of the pools filling up instead of the minute the shipped rules wait.
pub const RULE_WAIT_CAP: Duration = Duration::from_secs(5);

/// The shipped rules with every `for` and `keep_firing_for` capped at `cap`.
pub fn shortened_rules(cap: Duration) -> RuleSet {
    let mut rules = RuleSet::embedded();
    for rule in rules.groups.iter_mut().flat_map(|g| g.rules.iter_mut()) {
        rule.for_ = rule.for_.min(cap);
        rule.keep_firing_for = rule.keep_firing_for.min(cap);
    }
    rules
}

/// One demo pool on one backend, and what its users did.
pub struct DemoPool<B: BlockingBackend> {
    pub backend: B,
    pub pool: InstrumentedPool<B::Manager>,
    pub dataset: Dataset,
    completed: AtomicU64,
    failed: AtomicU64,
    /// Ids handed to batch inserts, past the dataset's own test rows.
    next_test_id: AtomicU64,
}

impl<B: BlockingBackend> std::fmt::Debug for DemoPool<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoPool")
            .field("backend", &self.backend.name())
            .field("pool", &self.pool.name())
            .finish_non_exhaustive()
    }
}

impl<B: BlockingBackend> DemoPool<B> {
    /// Creates the dataset on `backend` and a pool named `name` in front of it (opening
    /// nothing yet).
    pub fn create(
        backend: B,
        name: &str,
        dataset: Dataset,
        settings: PoolSettings,
    ) -> Result<DemoPool<B>, BenchError> {
        backend.create(&dataset)?;
        let labels = Labels::from([
            ("backend".to_string(), backend.name().to_string()),
            ("dataset".to_string(), name.to_string()),
        ]);
        let pool = InstrumentedPool::new(name, labels, backend.manager(), settings)?;
        Ok(DemoPool {
            next_test_id: AtomicU64::new(dataset.test_rows as u64 + 1),
            backend,
            pool,
            dataset,
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
    }

    /// One user, until `stop`: a mixed MDM request through the pool, the connection held for
    /// an exponential time of mean `hold` (the application's work between its statements),
    /// then the next request at once. More users than connections queue on the pool.
    pub fn user(&self, seed: u64, hold: Duration, stop: &AtomicBool) {
        let mut rng = SmallRng::seed_from_u64(seed);
        while !stop.load(Ordering::Relaxed) {
            let statement = self.dataset.next(Operation::Mixed, &mut rng, |count| {
                self.next_test_id.fetch_add(count as u64, Ordering::Relaxed) as i64
            });
            let result = self
                .pool
                .get()
                .map_err(BenchError::from)
                .and_then(|mut conn| {
                    let result = self.backend.execute(&mut conn, &statement);
                    let u: f64 = rng.random();
                    thread::sleep(hold.mul_f64(-(1.0 - u).ln()));
                    result
                });
            match result {
                Ok(()) => self.completed.fetch_add(1, Ordering::Relaxed),
                Err(error) => {
                    tracing::debug!(pool = self.pool.name(), %error, "demo request failed");
                    self.failed.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }
}

/// What the demo tells of a pool when it stops, whatever its backend.
pub trait Outcomes: Send + Sync {
    fn pool_name(&self) -> &str;
    /// Requests completed and failed so far.
    fn outcomes(&self) -> (u64, u64);
}

impl<B: BlockingBackend> Outcomes for DemoPool<B> {
    fn pool_name(&self) -> &str {
        self.pool.name()
    }

    fn outcomes(&self) -> (u64, u64) {
        (
            self.completed.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// A demo pool as the agent's target: the pool's sample, nothing about a server.
impl<B: BlockingBackend> InProcessPools for DemoPool<B> {
    fn sample(&self) -> TargetSample {
        TargetSample {
            pools: vec![self.pool.sample()],
            ..TargetSample::default()
        }
    }
}

/// The in-process target of `pool`, named `name`, on a `kind` of database.
pub fn target<B: BlockingBackend>(name: &str, kind: SourceKind, pool: &Arc<DemoPool<B>>) -> Target {
    Target {
        name: name.to_string(),
        source: SourceConfig::InProcess {
            kind,
            endpoint: pool.backend.location(),
            pools: Arc::clone(pool) as Arc<dyn InProcessPools>,
        },
        labels: Labels::new(),
        limits: PoolLimits::default(),
    }
}

/// Starts `users` threads on `pool` until `stop`; join them to wait for the last request.
pub fn start_users<B: BlockingBackend>(
    pool: &Arc<DemoPool<B>>,
    users: u32,
    hold: Duration,
    stop: &Arc<AtomicBool>,
) -> Vec<thread::JoinHandle<()>> {
    (0..u64::from(users))
        .map(|user| {
            let pool = Arc::clone(pool);
            let stop = Arc::clone(stop);
            thread::spawn(move || pool.user(user.wrapping_mul(0x9E37_79B9_7F4A_7C15), hold, &stop))
        })
        .collect()
}

fn percent(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{:.0}%", v * 100.0))
}

fn millis(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{:.0} ms", v * 1e3))
}

fn count(v: Option<u64>) -> String {
    v.map_or("-".to_string(), |v| v.to_string())
}

/// `target/pool` of an alert, or its target alone.
fn alert_subject(alert: &Alert) -> String {
    let target = alert.labels.get("target").map_or("", String::as_str);
    match alert.labels.get("db_client_connection_pool_name") {
        Some(pool) => format!("{target}/{pool}"),
        None => target.to_string(),
    }
}

/// The live summary of one published state: per pool its connections, utilization, wait and
/// recommended size, then every pending and firing alert, then what to change.
pub fn summary(published: &Published) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<34} {:>4} {:>4} {:>7} {:>6} {:>9} {:>11} model",
        "pool", "used", "idle", "pending", "util", "wait avg", "recommended"
    );
    let pools = &published.health().pools;
    if pools.is_empty() {
        let _ = writeln!(out, "  (no pool sampled yet)");
    }
    for pool in pools {
        let f = &pool.figures;
        let _ = writeln!(
            out,
            "{:<34} {:>4} {:>4} {:>7} {:>6} {:>9} {:>11} {}",
            format!("{}/{}", pool.target, pool.pool),
            count(f.latest.used),
            count(f.latest.idle),
            count(f.latest.pending),
            percent(f.utilization),
            millis(f.avg_wait_time_seconds),
            count(f.recommended_pool_size),
            f.recommendation.as_ref().map_or("-", |r| r.model.as_str()),
        );
    }
    let mut alerts: Vec<&Alert> = published.alerts.iter().collect();
    alerts.sort_by_key(|a| (a.state != AlertState::Firing, a.labels.clone()));
    let _ = writeln!(out, "alerts:");
    if alerts.is_empty() {
        let _ = writeln!(out, "  (none pending or firing)");
    }
    for alert in alerts {
        let state = match alert.state {
            AlertState::Firing => "FIRING ",
            AlertState::Pending => "pending",
        };
        let name = alert.labels.get("alertname").map_or("", String::as_str);
        let _ = writeln!(out, "  {state} {name} on {}", alert_subject(alert));
    }
    let _ = writeln!(out, "recommendations:");
    let recommendations: BTreeMap<String, &Vec<String>> = pools
        .iter()
        .filter(|p| !p.recommendations.is_empty())
        .map(|p| (format!("{}/{}", p.target, p.pool), &p.recommendations))
        .collect();
    if recommendations.is_empty() {
        let _ = writeln!(out, "  (none yet: they come with firing alerts)");
    }
    for (pool, texts) in recommendations {
        for text in texts {
            let _ = writeln!(out, "  {pool}: {text}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{HealthReport, PoolHealth, Status};
    use crate::model::{PoolFigures, PoolSample};

    #[test]
    fn shortened_rules_cap_every_wait_and_keep_the_rest() {
        let shipped = RuleSet::embedded();
        let short = shortened_rules(RULE_WAIT_CAP);
        assert_eq!(short.rule_count(), shipped.rule_count());
        let rules = |set: &RuleSet| -> Vec<(String, Duration, Duration, String)> {
            set.groups
                .iter()
                .flat_map(|g| &g.rules)
                .map(|r| {
                    (
                        r.name.clone(),
                        r.for_,
                        r.keep_firing_for,
                        r.expr_text.clone(),
                    )
                })
                .collect()
        };
        for (old, new) in rules(&shipped).into_iter().zip(rules(&short)) {
            assert_eq!((&old.0, &old.3), (&new.0, &new.3));
            assert_eq!(new.1, old.1.min(RULE_WAIT_CAP), "{}", old.0);
            assert_eq!(new.2, old.2.min(RULE_WAIT_CAP), "{}", old.0);
        }
        let utilization = rules(&short)
            .into_iter()
            .find(|r| r.0 == "PoolUtilizationHigh")
            .unwrap();
        assert_eq!(
            (utilization.1, utilization.2),
            (RULE_WAIT_CAP, RULE_WAIT_CAP)
        );
    }

    #[test]
    fn summary_shows_figures_alerts_and_recommendations() {
        let mut published = Published::default();
        let mut figures = PoolFigures {
            utilization: Some(1.0),
            avg_wait_time_seconds: Some(0.0614),
            ..PoolFigures::from_latest(PoolSample {
                pool: "mdm_demo_sqlite".into(),
                used: Some(2),
                idle: Some(0),
                pending: Some(6),
                ..PoolSample::default()
            })
        };
        figures.recommend(crate::advisor::WaitTarget::default(), None, None);
        let mut health = HealthReport::default();
        health.pools.push(PoolHealth {
            target: "demo-sqlite".into(),
            pool: "mdm_demo_sqlite".into(),
            status: Status::Degraded,
            warnings: vec!["High pool utilization".into()],
            recommendations: vec!["Increase pool_size to 10".into()],
            alerts: vec!["PoolUtilizationHigh".into()],
            figures,
        });
        let _ = published.health.set(health);
        let mut alert = Alert::default();
        alert.labels = BTreeMap::from([
            ("alertname".to_string(), "PoolUtilizationHigh".to_string()),
            ("target".to_string(), "demo-sqlite".to_string()),
            (
                "db_client_connection_pool_name".to_string(),
                "mdm_demo_sqlite".to_string(),
            ),
        ]);
        alert.state = AlertState::Firing;
        published.alerts.push(alert);
        let text = summary(&published);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "pool                               used idle pending   util  wait avg recommended model",
                "demo-sqlite/mdm_demo_sqlite           2    0       6   100%     61 ms          10 utilization",
                "alerts:",
                "  FIRING  PoolUtilizationHigh on demo-sqlite/mdm_demo_sqlite",
                "recommendations:",
                "  demo-sqlite/mdm_demo_sqlite: Increase pool_size to 10",
            ]
        );
    }
}
