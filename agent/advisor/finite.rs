//! The finite-source model (M/M/c//N, the "machine repairman"): a fixed set of N callers, each
//! thinking for a mean Z between requests and holding a connection for a mean S. It is the right
//! model for a closed-loop load test such as the spec's `benchmark --concurrent-users N`, where
//! a caller sends its next request only after the last one finished; Erlang C assumes arrivals
//! that do not wait on the pool.

use serde::{Deserialize, Serialize};

use super::AdvisorError;

/// A closed population of callers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Population {
    pub callers: u64,
    /// Mean time between a caller's requests, connection not held (0: back to back).
    pub think_seconds: f64,
    pub mean_hold_seconds: f64,
}

/// What the model predicts for one pool size.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClosedPrediction {
    pub pool_size: u64,
    /// Requests served per second.
    pub throughput_per_second: f64,
    /// Mean share of the pool in use.
    pub utilization: f64,
    /// Mean wait for a connection.
    pub mean_wait_seconds: f64,
}

impl Population {
    pub fn new(
        callers: u64,
        think_seconds: f64,
        mean_hold_seconds: f64,
    ) -> Result<Population, AdvisorError> {
        super::check("think_seconds", think_seconds)?;
        super::check("mean_hold_seconds", mean_hold_seconds)?;
        if mean_hold_seconds == 0.0 {
            return Err(AdvisorError::Invalid {
                field: "mean_hold_seconds",
                value: mean_hold_seconds,
            });
        }
        Ok(Population {
            callers,
            think_seconds,
            mean_hold_seconds,
        })
    }

    /// The stationary distribution of the birth–death chain over k = callers holding or waiting
    /// (birth (N−k)/Z, death min(k, c)/S), in log space so that thousands of callers stay finite.
    pub fn predict(&self, pool_size: u64) -> ClosedPrediction {
        let n = self.callers;
        let c = pool_size.max(1);
        let s = self.mean_hold_seconds;
        if n == 0 {
            return ClosedPrediction {
                pool_size,
                throughput_per_second: 0.0,
                utilization: 0.0,
                mean_wait_seconds: 0.0,
            };
        }
        let in_system: Vec<(f64, f64)> = if self.think_seconds == 0.0 {
            // Without think time every caller is always holding or waiting.
            vec![(n as f64, 1.0)]
        } else {
            let z = self.think_seconds;
            let mut log_p = Vec::with_capacity(n as usize + 1);
            log_p.push(0.0f64);
            for k in 1..=n {
                let birth = (n - k + 1) as f64 / z;
                let death = k.min(c) as f64 / s;
                log_p.push(log_p[k as usize - 1] + (birth / death).ln());
            }
            let top = log_p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = log_p.iter().map(|l| (l - top).exp()).collect();
            let total: f64 = weights.iter().sum();
            weights
                .iter()
                .enumerate()
                .map(|(k, w)| (k as f64, w / total))
                .collect()
        };
        let busy: f64 = in_system.iter().map(|(k, p)| k.min(c as f64) * p).sum();
        let present: f64 = in_system.iter().map(|(k, p)| k * p).sum();
        let throughput = busy / s;
        ClosedPrediction {
            pool_size,
            throughput_per_second: throughput,
            utilization: busy / c as f64,
            // Little's law over the callers present: time in system = present / throughput.
            mean_wait_seconds: (present / throughput - s).max(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1e-12)
    }

    #[test]
    fn back_to_back_callers_queue_for_whatever_the_pool_lacks() {
        let population = Population::new(100, 0.0, 0.01).unwrap();
        // 100 callers on 20 connections: 20 busy, 80 waiting, 2,000 requests/s, and each
        // caller waits 100/2000 − 0.01 = 40 ms.
        let p = population.predict(20);
        assert!(close(p.throughput_per_second, 2_000.0));
        assert!(close(p.utilization, 1.0));
        assert!(close(p.mean_wait_seconds, 0.04));
        // More connections than callers: nobody waits and part of the pool idles.
        let p = population.predict(200);
        assert!(close(p.throughput_per_second, 10_000.0));
        assert!(close(p.utilization, 0.5));
        assert_eq!(p.mean_wait_seconds, 0.0);
    }

    #[test]
    fn one_caller_one_connection_alternates_think_and_hold() {
        // Busy S/(S+Z) of the time; never waits.
        let p = Population::new(1, 0.3, 0.1).unwrap().predict(1);
        assert!(close(p.utilization, 0.25));
        assert!(close(p.throughput_per_second, 2.5));
        assert!(p.mean_wait_seconds.abs() < 1e-12);
    }

    #[test]
    fn two_callers_on_one_connection_match_the_hand_computed_chain() {
        // States 0,1,2 with birth 2/Z, 1/Z and death 1/S. Z = S = 1: p ∝ 1, 2, 2.
        let p = Population::new(2, 1.0, 1.0).unwrap().predict(1);
        let (p0, p1, p2) = (0.2, 0.4, 0.4);
        let throughput = p1 + p2;
        assert!(close(p.throughput_per_second, throughput));
        let present = p1 + 2.0 * p2;
        assert!(close(p.mean_wait_seconds, present / throughput - 1.0));
        assert!(close(p.utilization, 1.0 - p0));
    }

    #[test]
    fn thousands_of_callers_stay_finite() {
        let p = Population::new(5_000, 1.0, 0.05).unwrap().predict(300);
        assert!(p.throughput_per_second.is_finite() && p.throughput_per_second > 0.0);
        assert!(p.utilization <= 1.0);
    }

    #[test]
    fn a_zero_hold_time_is_refused() {
        assert!(Population::new(10, 0.0, 0.0).is_err());
        assert!(Population::new(10, f64::NAN, 0.1).is_err());
    }
}
