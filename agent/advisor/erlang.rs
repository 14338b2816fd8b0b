//! Erlang C (M/M/c): callers arrive at random (Poisson) and hold a connection for an
//! exponentially distributed time; with `c` connections, how often does a caller wait, and how
//! long. Erlang C comes from the Erlang B recursion, which stays finite for any `c` where the
//! textbook formula (`a^c / c!`) overflows past a few hundred connections.

use serde::{Deserialize, Serialize};

use super::Workload;

/// What M/M/c predicts for one pool size.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Connections that may be in use at once (`c`).
    pub pool_size: u64,
    /// Offered load in Erlangs: arrival rate × mean hold time, the connections busy on average.
    pub offered_load: f64,
    /// Share of time each connection is busy: offered load / pool size.
    pub utilization: f64,
    /// Probability that a caller finds every connection busy and waits (Erlang C).
    pub wait_probability: f64,
    /// Mean wait of all callers, those served at once included; `None` when the pool is too
    /// small for the load and the queue grows without bound.
    pub mean_wait_seconds: Option<f64>,
    /// The wait 99% of callers stay under; `None` when the queue grows without bound.
    pub p99_wait_seconds: Option<f64>,
}

impl Prediction {
    /// The pool keeps up: fewer connections busy on average than it has.
    pub fn stable(&self) -> bool {
        self.mean_wait_seconds.is_some()
    }
}

/// The predictions for pool sizes 1, 2, 3, …: each step extends the Erlang B recursion by one
/// connection, so walking up to the recommended size costs one pass.
#[derive(Clone, Debug)]
pub struct Candidates {
    workload: Workload,
    size: u64,
    erlang_b: f64,
}

impl Candidates {
    pub fn new(workload: Workload) -> Candidates {
        Candidates {
            workload,
            size: 0,
            erlang_b: 1.0,
        }
    }
}

impl Iterator for Candidates {
    type Item = Prediction;

    fn next(&mut self) -> Option<Prediction> {
        let a = self.workload.offered_load();
        self.size += 1;
        let c = self.size as f64;
        // B(c, a) = a·B(c−1, a) / (c + a·B(c−1, a)), B(0, a) = 1.
        self.erlang_b = a * self.erlang_b / (c + a * self.erlang_b);
        Some(from_erlang_b(self.workload, self.size, self.erlang_b))
    }
}

/// The prediction for one pool size.
pub fn predict(workload: Workload, pool_size: u64) -> Prediction {
    let a = workload.offered_load();
    let mut b = 1.0;
    for k in 1..=pool_size {
        b = a * b / (k as f64 + a * b);
    }
    from_erlang_b(workload, pool_size, b)
}

fn from_erlang_b(workload: Workload, pool_size: u64, erlang_b: f64) -> Prediction {
    let a = workload.offered_load();
    let c = pool_size as f64;
    let hold = workload.mean_hold_seconds;
    let utilization = if c > 0.0 { a / c } else { f64::INFINITY };
    if a >= c {
        return Prediction {
            pool_size,
            offered_load: a,
            utilization,
            wait_probability: 1.0,
            mean_wait_seconds: None,
            p99_wait_seconds: None,
        };
    }
    // C(c, a) = c·B / (c − a·(1 − B)).
    let wait_probability = if a == 0.0 {
        0.0
    } else {
        c * erlang_b / (c - a * (1.0 - erlang_b))
    };
    // The wait of those who wait is exponential with rate cμ − λ = (c − a) / hold:
    // P(W > t) = C·e^{−(cμ−λ)t}, so the mean is C·hold/(c − a) and the q-quantile solves
    // C·e^{−(cμ−λ)t} = 1 − q.
    let mean_wait = wait_probability * hold / (c - a);
    Prediction {
        pool_size,
        offered_load: a,
        utilization,
        wait_probability,
        mean_wait_seconds: Some(mean_wait),
        p99_wait_seconds: Some(wait_quantile(wait_probability, hold / (c - a), 0.99)),
    }
}

/// The `q`-quantile of the wait when a caller waits with probability `wait_probability` and a
/// wait, once it happens, is exponential with mean `mean_conditional_wait`.
fn wait_quantile(wait_probability: f64, mean_conditional_wait: f64, q: f64) -> f64 {
    let tail = 1.0 - q;
    if wait_probability <= tail {
        0.0
    } else {
        mean_conditional_wait * (wait_probability / tail).ln()
    }
}

/// The probability that a caller waits longer than `seconds`.
pub fn wait_exceeds(prediction: &Prediction, hold_seconds: f64, seconds: f64) -> f64 {
    let c = prediction.pool_size as f64;
    let a = prediction.offered_load;
    if a >= c {
        return 1.0;
    }
    if hold_seconds == 0.0 {
        return 0.0;
    }
    prediction.wait_probability * (-(c - a) / hold_seconds * seconds).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(rate: f64, hold: f64) -> Workload {
        Workload::new(rate, hold).unwrap()
    }

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance * b.abs().max(1e-12)
    }

    /// Erlang C values from the closed form a^c/c!·c/(c−a) / (Σ_{k<c} a^k/k! + a^c/c!·c/(c−a)),
    /// computed independently for small c where it does not overflow.
    fn erlang_c_closed_form(c: u64, a: f64) -> f64 {
        let mut term = 1.0;
        let mut sum = 0.0;
        for k in 0..c {
            if k > 0 {
                term *= a / k as f64;
            }
            sum += term;
        }
        let top = term * a / c as f64 * (c as f64 / (c as f64 - a));
        top / (sum + top)
    }

    #[test]
    fn erlang_c_matches_the_closed_form() {
        for (c, a) in [
            (1, 0.5),
            (2, 1.0),
            (5, 3.5),
            (10, 8.0),
            (20, 12.3),
            (30, 29.0),
        ] {
            let p = predict(workload(a, 1.0), c);
            let expected = erlang_c_closed_form(c, a);
            assert!(
                close(p.wait_probability, expected, 1e-9),
                "c={c} a={a}: {} vs {expected}",
                p.wait_probability
            );
        }
    }

    #[test]
    fn textbook_values() {
        // M/M/1: P(wait) = ρ, mean wait = ρ/(μ−λ).
        let p = predict(workload(8.0, 0.1), 1);
        assert!(close(p.wait_probability, 0.8, 1e-12));
        assert!(close(p.mean_wait_seconds.unwrap(), 0.4, 1e-12));
        // M/M/2 with a = 1: C = 1/3; mean wait = C·hold/(c − a) = 1/3 s.
        let p = predict(workload(1.0, 1.0), 2);
        assert!(close(p.wait_probability, 1.0 / 3.0, 1e-12));
        assert!(close(p.mean_wait_seconds.unwrap(), 1.0 / 3.0, 1e-12));
        // Its p99: C·e^{−t} = 0.01 → t = ln(100/3).
        assert!(close(
            p.p99_wait_seconds.unwrap(),
            (100.0f64 / 3.0).ln(),
            1e-12
        ));
    }

    #[test]
    fn large_pools_stay_finite() {
        // 4,500 Erlangs on 5,000 connections: a^c/c! overflows f64 long before this.
        let p = predict(workload(45_000.0, 0.1), 5_000);
        assert!(p.wait_probability.is_finite() && p.wait_probability < 1e-6);
        assert_eq!(p.p99_wait_seconds, Some(0.0));
        let p = predict(workload(4_990.0, 1.0), 5_000);
        assert!(p.wait_probability > 0.5 && p.wait_probability < 1.0);
    }

    #[test]
    fn too_small_a_pool_has_no_finite_wait() {
        let p = predict(workload(10.0, 0.5), 5);
        assert_eq!(p.utilization, 1.0);
        assert_eq!((p.mean_wait_seconds, p.p99_wait_seconds), (None, None));
        assert!(!p.stable());
        assert_eq!(wait_exceeds(&p, 0.5, 100.0), 1.0);
    }

    #[test]
    fn no_load_means_no_wait() {
        for p in [
            predict(workload(0.0, 0.2), 1),
            predict(workload(100.0, 0.0), 1),
        ] {
            assert_eq!(p.wait_probability, 0.0);
            assert_eq!(p.mean_wait_seconds, Some(0.0));
            assert_eq!(p.p99_wait_seconds, Some(0.0));
        }
    }

    #[test]
    fn candidates_walk_the_same_numbers_as_predict() {
        let w = workload(120.0, 0.045);
        for (i, p) in Candidates::new(w).take(15).enumerate() {
            assert_eq!(p, predict(w, i as u64 + 1));
        }
    }

    #[test]
    fn the_p99_is_where_the_tail_reaches_one_percent() {
        let w = workload(50.0, 0.1);
        let p = predict(w, 7);
        let t = p.p99_wait_seconds.unwrap();
        assert!(t > 0.0);
        assert!(close(wait_exceeds(&p, 0.1, t), 0.01, 1e-9));
    }
}
