//! Pool sizing, as pure functions of plain numbers (no I/O, no clock): the spec's formulas
//! (`spec`), the queueing models that predict waits (`erlang` for callers that arrive on their
//! own, `finite` for a fixed set of callers), and the one recommendation the agent, `size` and
//! `analyze-benchmarks` publish — which says the model that produced it and why.
//!
//! The live agent calls [`recommend_pool`] per pool with what it observed: the checkout rate
//! and mean hold time when the source sees them (Erlang C), else used + pending (the 80% rule).

pub mod erlang;
pub mod finite;
pub mod spec;

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

pub use erlang::Prediction;

/// Why an input cannot be sized.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AdvisorError {
    #[error("{field} must be a finite number ≥ 0, not {value}")]
    Invalid { field: &'static str, value: f64 },
    #[error("avg_query_time_ms + connection_overhead_ms must be above 0")]
    NoProcessingTime,
    #[error("no pool size up to {searched} meets the target: the load is too high to size")]
    TooLarge { searched: u64 },
}

fn check(field: &'static str, value: f64) -> Result<(), AdvisorError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(AdvisorError::Invalid { field, value })
    }
}

/// Demand on a pool: checkouts per second and how long each holds its connection.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    pub arrival_rate: f64,
    pub mean_hold_seconds: f64,
}

impl Workload {
    pub fn new(arrival_rate: f64, mean_hold_seconds: f64) -> Result<Workload, AdvisorError> {
        check("arrival_rate", arrival_rate)?;
        check("mean_hold_seconds", mean_hold_seconds)?;
        Ok(Workload {
            arrival_rate,
            mean_hold_seconds,
        })
    }

    /// Connections busy on average (Erlangs): arrival rate × mean hold time.
    pub fn offered_load(&self) -> f64 {
        self.arrival_rate * self.mean_hold_seconds
    }
}

/// The p99 wait for a connection a pool should keep callers under.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct WaitTarget {
    pub p99_wait_seconds: f64,
}

impl Default for WaitTarget {
    /// 100 ms: the spec warns at an average wait of 1 s; a p99 of 100 ms keeps waits a small
    /// part of a typical response-time budget.
    fn default() -> WaitTarget {
        WaitTarget {
            p99_wait_seconds: 0.1,
        }
    }
}

/// The most connections the backend can give this pool, whatever the demand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BackendLimit {
    /// PostgreSQL: `max_connections − superuser_reserved_connections` less what every other
    /// client holds.
    Postgres {
        max_connections: u64,
        reserved_connections: u64,
        other_connections: u64,
    },
    /// SQLite has one writer at a time: a write pool beyond 1 connection only queues on the
    /// database lock (busy_timeout) instead of in the pool, where poolwatch can see it.
    SqliteWriter,
    /// A limit given by the operator.
    Connections { limit: u64 },
}

impl BackendLimit {
    pub fn limit(&self) -> u64 {
        match self {
            BackendLimit::Postgres {
                max_connections,
                reserved_connections,
                other_connections,
            } => max_connections
                .saturating_sub(*reserved_connections)
                .saturating_sub(*other_connections),
            BackendLimit::SqliteWriter => 1,
            BackendLimit::Connections { limit } => *limit,
        }
    }

    fn describe(&self) -> String {
        match self {
            BackendLimit::Postgres {
                max_connections,
                reserved_connections,
                other_connections,
            } => format!(
                "PostgreSQL max_connections {max_connections} − {reserved_connections} reserved \
                 − {other_connections} held by other clients = {}",
                self.limit()
            ),
            BackendLimit::SqliteWriter => "SQLite allows one writer at a time".into(),
            BackendLimit::Connections { limit } => format!("the backend's limit of {limit}"),
        }
    }
}

/// Which model produced a recommendation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// M/M/c from the checkout rate and hold time: the smallest size meeting the wait target.
    ErlangC,
    /// The spec's health threshold: used + pending at or below 80% of the pool.
    Utilization,
    /// Measured: the smallest benchmarked size within 5% of the best throughput.
    Measured,
}

impl Model {
    pub fn as_str(self) -> &'static str {
        match self {
            Model::ErlangC => "erlang_c",
            Model::Utilization => "utilization",
            Model::Measured => "measured",
        }
    }
}

/// A recommended pool size and how it was reached.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub pool_size: u64,
    pub model: Model,
    /// Whether the recommended size meets the target (false when the backend's limit is lower).
    pub meets_target: bool,
    /// The backend's limit, when one was given.
    pub limit: Option<u64>,
    /// What the model predicts at the recommended size (Erlang C only).
    pub prediction: Option<Prediction>,
    /// One paragraph a person can check: inputs, the deciding numbers, the limit.
    pub reasoning: String,
}

/// Pool sizes the search walks before it gives up: far beyond any backend's max_connections.
pub const SEARCH_LIMIT: u64 = 1_000_000;

/// Erlang C: the smallest pool size whose predicted p99 wait meets `target`, capped by `limit`.
pub fn recommend(
    workload: Workload,
    target: WaitTarget,
    limit: Option<&BackendLimit>,
) -> Result<Recommendation, AdvisorError> {
    check("p99_wait_seconds", target.p99_wait_seconds)?;
    let a = workload.offered_load();
    let mut smaller: Option<Prediction> = None;
    let mut found = None;
    for p in erlang::Candidates::new(workload).take(SEARCH_LIMIT as usize) {
        if p.p99_wait_seconds
            .is_some_and(|t| t <= target.p99_wait_seconds)
        {
            found = Some(p);
            break;
        }
        smaller = Some(p);
    }
    let Some(best) = found else {
        return Err(AdvisorError::TooLarge {
            searched: SEARCH_LIMIT,
        });
    };
    let mut reasoning = format!(
        "Erlang C (M/M/c): {} checkouts/s × {} held = {a:.2} connections busy on average. \
         At pool_size {} the predicted p99 wait is {} (P(wait) {:.1}%, mean {}), within the \
         {} target",
        round(workload.arrival_rate),
        millis(workload.mean_hold_seconds),
        best.pool_size,
        millis(best.p99_wait_seconds.unwrap_or(0.0)),
        best.wait_probability * 100.0,
        millis(best.mean_wait_seconds.unwrap_or(0.0)),
        millis(target.p99_wait_seconds),
    );
    match smaller {
        Some(p) => match p.p99_wait_seconds {
            Some(t) => {
                let _ = write!(reasoning, "; at {} it would be {}.", p.pool_size, millis(t));
            }
            None => {
                let _ = write!(
                    reasoning,
                    "; at {} the queue would grow without bound.",
                    p.pool_size
                );
            }
        },
        None => reasoning.push('.'),
    }
    let mut recommendation = Recommendation {
        pool_size: best.pool_size,
        model: Model::ErlangC,
        meets_target: true,
        limit: limit.map(BackendLimit::limit),
        prediction: Some(best),
        reasoning,
    };
    apply_limit(&mut recommendation, limit, |size| {
        Some(erlang::predict(workload, size))
    });
    Ok(recommendation)
}

/// The spec's 80% rule, for pools whose checkout rate or hold time is not visible: the smallest
/// size that keeps today's demand (used + pending) at or below 80% utilization.
pub fn recommend_from_demand(
    used: u64,
    pending: Option<u64>,
    limit: Option<&BackendLimit>,
) -> Recommendation {
    let demand = used + pending.unwrap_or(0);
    let pool_size = utilization_rule(demand);
    let mut recommendation = Recommendation {
        pool_size,
        model: Model::Utilization,
        meets_target: true,
        limit: limit.map(BackendLimit::limit),
        prediction: None,
        reasoning: format!(
            "Utilization: {used} used + {} waiting = {demand} connections wanted now; \
             {pool_size} keeps that at or below {:.0}%.",
            pending.unwrap_or(0),
            UTILIZATION_TARGET * 100.0
        ),
    };
    apply_limit(&mut recommendation, limit, |_| None::<Prediction>);
    recommendation
}

/// The utilization the spec treats as the limit of a healthy pool.
pub const UTILIZATION_TARGET: f64 = 0.8;

/// The smallest pool size (at least 1) that serves `demand` connections at or below 80%.
pub fn utilization_rule(demand: u64) -> u64 {
    ((demand as f64 / UTILIZATION_TARGET).ceil() as u64).max(1)
}

/// What the agent observed of one pool, for [`recommend_pool`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Observed {
    pub used: Option<u64>,
    pub pending: Option<u64>,
    /// Checkouts per second over the rate window.
    pub checkout_rate: Option<f64>,
    /// Mean time a checkout held its connection over the rate window.
    pub mean_hold_seconds: Option<f64>,
}

/// The live agent's recommendation for one pool: Erlang C where the checkout rate and hold time
/// are known, never below the 80% rule on used + pending; the 80% rule alone where they are
/// not; nothing without used.
///
/// Why the floor: while callers wait, the checkouts the agent observes are capped by the pool's
/// own throughput (pool_size / hold time), not by the demand, so Erlang C on them undershoots a
/// saturated pool. And a size below the 80% rule would sit above the utilization threshold the
/// rules judge pools by. The larger of the two wins, and names its model.
pub fn recommend_pool(
    observed: &Observed,
    target: WaitTarget,
    limit: Option<&BackendLimit>,
) -> Option<Recommendation> {
    let modelled = match (observed.checkout_rate, observed.mean_hold_seconds) {
        (Some(rate), Some(hold)) => Workload::new(rate, hold)
            .and_then(|workload| recommend(workload, target, limit))
            .ok(),
        _ => None,
    };
    let floor = observed
        .used
        .map(|used| recommend_from_demand(used, observed.pending, limit));
    match (modelled, floor) {
        (Some(modelled), Some(floor)) if floor.pool_size > modelled.pool_size => {
            let mut chosen = floor;
            let _ = write!(
                chosen.reasoning,
                " Erlang C on the observed checkouts asks for only {}{}, which this rule \
                 overrides.",
                modelled.pool_size,
                if observed.pending.is_some_and(|p| p > 0) {
                    " (while callers wait, the checkouts observed are capped by the pool's own \
                     throughput, so it undershoots)"
                } else {
                    ""
                }
            );
            Some(chosen)
        }
        (Some(mut modelled), Some(floor)) => {
            let _ = write!(
                modelled.reasoning,
                " The 80% rule on used + pending asks for {}.",
                floor.pool_size
            );
            Some(modelled)
        }
        (None, Some(mut floor)) => {
            floor
                .reasoning
                .push_str(" No checkout rate or hold time is seen to model waits with.");
            Some(floor)
        }
        (modelled, None) => modelled,
    }
}

/// Caps a recommendation at the backend's limit and says so.
fn apply_limit<F>(recommendation: &mut Recommendation, limit: Option<&BackendLimit>, predict: F)
where
    F: Fn(u64) -> Option<Prediction>,
{
    let Some(limit) = limit else { return };
    let cap = limit.limit().max(1);
    if recommendation.pool_size <= cap {
        return;
    }
    let wanted = recommendation.pool_size;
    recommendation.pool_size = cap;
    recommendation.meets_target = false;
    recommendation.prediction = predict(cap);
    let _ = write!(
        recommendation.reasoning,
        " Capped at {cap}: {}. The pool needs {wanted}; reduce the hold time or the load, or \
         raise the limit.",
        limit.describe()
    );
    if let Some(p) = &recommendation.prediction {
        let _ = write!(
            recommendation.reasoning,
            " At {cap} the predicted p99 wait is {}.",
            p.p99_wait_seconds.map_or("unbounded".to_string(), millis)
        );
    }
}

fn millis(seconds: f64) -> String {
    let ms = seconds * 1000.0;
    if ms == 0.0 {
        "0 ms".into()
    } else if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn round(rate: f64) -> String {
    if rate >= 100.0 {
        format!("{rate:.0}")
    } else {
        format!("{rate:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recommends_the_smallest_size_meeting_the_p99_target() {
        let target = WaitTarget::default();
        // rate/s, hold s, expected size: each checked against its neighbour below.
        for (rate, hold) in [
            (100.0, 0.05),
            (1000.0, 0.01),
            (50.0, 0.2),
            (2.0, 0.01),
            (5000.0, 0.02),
        ] {
            let w = Workload::new(rate, hold).unwrap();
            let r = recommend(w, target, None).unwrap();
            assert_eq!(r.model, Model::ErlangC);
            assert!(r.meets_target);
            let at = erlang::predict(w, r.pool_size);
            assert!(at.p99_wait_seconds.unwrap() <= 0.1, "{rate} {hold}");
            if r.pool_size > 1 {
                let below = erlang::predict(w, r.pool_size - 1);
                assert!(
                    below.p99_wait_seconds.is_none_or(|t| t > 0.1),
                    "{rate} {hold}: {} is not the smallest",
                    r.pool_size
                );
            }
            assert!(r.pool_size as f64 > w.offered_load());
        }
    }

    #[test]
    fn known_sizes() {
        // 5 Erlangs with 50 ms holds: p99 at 7 is 74 ms, at 6 it is 220 ms.
        let w = Workload::new(100.0, 0.05).unwrap();
        let r = recommend(w, WaitTarget::default(), None).unwrap();
        assert_eq!(r.pool_size, 7);
        assert!(
            r.reasoning
                .starts_with("Erlang C (M/M/c): 100 checkouts/s × 50 ms held")
        );
        assert!(r.reasoning.contains("at 6 it would be"), "{}", r.reasoning);
        // No load: one connection.
        let r = recommend(
            Workload::new(0.0, 0.05).unwrap(),
            WaitTarget::default(),
            None,
        )
        .unwrap();
        assert_eq!(r.pool_size, 1);
    }

    #[test]
    fn the_backend_limit_caps_and_says_so() {
        let w = Workload::new(1000.0, 0.05).unwrap();
        let limit = BackendLimit::Postgres {
            max_connections: 100,
            reserved_connections: 3,
            other_connections: 60,
        };
        let r = recommend(w, WaitTarget::default(), Some(&limit)).unwrap();
        assert_eq!(r.pool_size, 37);
        assert_eq!(r.limit, Some(37));
        assert!(!r.meets_target);
        assert!(r.reasoning.contains("Capped at 37"), "{}", r.reasoning);
        assert!(r.reasoning.contains("unbounded"), "{}", r.reasoning);
        let r = recommend(w, WaitTarget::default(), Some(&BackendLimit::SqliteWriter)).unwrap();
        assert_eq!(r.pool_size, 1);
        // A limit above the need changes nothing.
        let roomy = BackendLimit::Connections { limit: 500 };
        let r = recommend(w, WaitTarget::default(), Some(&roomy)).unwrap();
        assert!(r.meets_target && r.pool_size < 500);
    }

    #[test]
    fn the_utilization_rule_serves_used_plus_pending_at_80_percent() {
        for (used, pending, expected) in [
            (5, Some(7), 15),
            (8, None, 10),
            (0, Some(0), 1),
            (4, Some(0), 5),
        ] {
            let r = recommend_from_demand(used, pending, None);
            assert_eq!(r.pool_size, expected, "{used} + {pending:?}");
            assert_eq!(r.model, Model::Utilization);
        }
        let r = recommend_from_demand(5, Some(7), Some(&BackendLimit::Connections { limit: 10 }));
        assert_eq!((r.pool_size, r.meets_target), (10, false));
    }

    #[test]
    fn the_agent_models_waits_where_it_can_and_falls_back_where_it_cannot() {
        let target = WaitTarget::default();
        // 100 checkouts/s × 50 ms: Erlang C asks for 7; 4 used, nobody waiting asks for 5.
        let calm = Observed {
            used: Some(4),
            pending: Some(0),
            checkout_rate: Some(100.0),
            mean_hold_seconds: Some(0.05),
        };
        let r = recommend_pool(&calm, target, None).unwrap();
        assert_eq!((r.model, r.pool_size), (Model::ErlangC, 7));
        assert!(
            r.reasoning
                .ends_with("The 80% rule on used + pending asks for 5."),
            "{}",
            r.reasoning
        );
        let no_hold = Observed {
            mean_hold_seconds: None,
            ..calm
        };
        let r = recommend_pool(&no_hold, target, None).unwrap();
        assert_eq!((r.model, r.pool_size), (Model::Utilization, 5));
        assert!(
            r.reasoning.ends_with("to model waits with."),
            "{}",
            r.reasoning
        );
        assert_eq!(recommend_pool(&Observed::default(), target, None), None);
    }

    #[test]
    fn a_saturated_pool_is_never_sized_below_the_utilization_rule() {
        // 5 used, 7 waiting: the checkouts observed are what 5 connections could serve, so
        // Erlang C on them (7) undershoots what the callers want now (15 at 80%).
        let saturated = Observed {
            used: Some(5),
            pending: Some(7),
            checkout_rate: Some(100.0),
            mean_hold_seconds: Some(0.05),
        };
        let r = recommend_pool(&saturated, WaitTarget::default(), None).unwrap();
        assert_eq!((r.model, r.pool_size), (Model::Utilization, 15));
        assert!(
            r.reasoning
                .contains("Erlang C on the observed checkouts asks for only 7 (while"),
            "{}",
            r.reasoning
        );
        // A tie goes to Erlang C, whose size also meets the wait target.
        let tie = Observed {
            pending: Some(0),
            ..saturated
        };
        let r = recommend_pool(&tie, WaitTarget::default(), None).unwrap();
        assert_eq!((r.model, r.pool_size), (Model::ErlangC, 7));
        // Both are capped by the backend.
        let limit = BackendLimit::Connections { limit: 10 };
        let r = recommend_pool(&saturated, WaitTarget::default(), Some(&limit)).unwrap();
        assert_eq!(
            (r.model, r.pool_size, r.meets_target),
            (Model::Utilization, 10, false)
        );
    }

    #[test]
    fn bad_numbers_are_refused() {
        assert!(Workload::new(f64::NAN, 0.1).is_err());
        assert!(Workload::new(1.0, -0.1).is_err());
        let w = Workload::new(1.0, 0.1).unwrap();
        let bad = WaitTarget {
            p99_wait_seconds: f64::INFINITY,
        };
        assert!(recommend(w, bad, None).is_err());
    }
}
