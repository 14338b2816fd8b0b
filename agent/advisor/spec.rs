//! The spec's two sizing formulas ("Pool Sizing Formulas"), with its exact arithmetic: the basic
//! formula, and `calculate_optimal_pool_size` (Little's law) as the spec's Python computes it —
//! float division, `int()` truncating toward zero, then `min` and `max` over integers.

use serde::{Deserialize, Serialize};

use super::AdvisorError;

/// `pool_size = (number_of_workers × connections_per_worker) + overhead`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicFormula {
    /// CPU cores or thread count.
    pub workers: u64,
    /// Average concurrent operations per worker.
    pub connections_per_worker: u64,
    /// Buffer for management operations (the spec: typically 2–5).
    pub overhead: u64,
    pub pool_size: u64,
}

impl BasicFormula {
    pub fn new(workers: u64, connections_per_worker: u64, overhead: u64) -> BasicFormula {
        BasicFormula {
            workers,
            connections_per_worker,
            overhead,
            pool_size: workers
                .saturating_mul(connections_per_worker)
                .saturating_add(overhead),
        }
    }
}

/// The inputs of the spec's `calculate_optimal_pool_size`, under its parameter names.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LittlesLaw {
    pub cpu_cores: u32,
    pub expected_concurrent_users: u32,
    pub avg_query_time_ms: f64,
    pub target_response_time_ms: f64,
    /// The spec's default is 50 ms.
    pub connection_overhead_ms: f64,
}

impl LittlesLaw {
    /// The spec's `calculate_optimal_pool_size`, step by step as its Python does it.
    pub fn pool_size(&self) -> Result<i64, AdvisorError> {
        for (field, value) in [
            ("avg_query_time_ms", self.avg_query_time_ms),
            ("target_response_time_ms", self.target_response_time_ms),
            ("connection_overhead_ms", self.connection_overhead_ms),
        ] {
            super::check(field, value)?;
        }
        // Effective processing time including overhead.
        let effective_time = self.avg_query_time_ms + self.connection_overhead_ms;
        if effective_time <= 0.0 {
            // Python raises ZeroDivisionError here.
            return Err(AdvisorError::NoProcessingTime);
        }
        let cpu_cores = i64::from(self.cpu_cores);
        // Maximum concurrent requests to meet the target response time (float × int in Python
        // converts the int exactly: it is far below 2^53).
        let max_concurrent = (self.target_response_time_ms / effective_time) * cpu_cores as f64;
        // `int()` truncates toward zero; `as` does the same, saturating where Python's int
        // would grow, and `min` below discards such a value either way.
        let with_safety_factor = (max_concurrent * 1.2) as i64;
        let pool_size = with_safety_factor
            .min(i64::from(self.expected_concurrent_users) * 2)
            .min(cpu_cores * 4);
        Ok(pool_size.max(cpu_cores))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_formula() {
        for (workers, per_worker, overhead, expected) in
            [(4, 1, 3, 7), (8, 2, 5, 21), (0, 3, 2, 2), (16, 0, 4, 4)]
        {
            assert_eq!(
                BasicFormula::new(workers, per_worker, overhead).pool_size,
                expected,
                "{workers} × {per_worker} + {overhead}"
            );
        }
    }

    /// Worked by hand from the spec's function.
    #[test]
    fn littles_law_as_the_spec_computes_it() {
        let cases = [
            // cores, users, query ms, target ms, overhead ms, expected
            // 200/60·4 = 13.33; ×1.2 = 16.0 → 16 (min(16, 200, 16)).
            (4, 100, 10.0, 200.0, 50.0, 16),
            // 100/100·8 = 8; ×1.2 = 9.6 → int 9; min(9, 10, 32) = 9.
            (8, 5, 50.0, 100.0, 50.0, 9),
            // Few users: min picks users × 2 = 4; max brings it up to the 8 cores.
            (8, 2, 5.0, 1000.0, 50.0, 8),
            // A tight target: 10/550·2 = 0.036 → int 0 → max(0, 2) = 2 cores.
            (2, 50, 500.0, 10.0, 50.0, 2),
            // cores × 4 caps a generous target.
            (4, 1000, 1.0, 10_000.0, 50.0, 16),
            // Zero overhead, as the caller may pass.
            (2, 100, 20.0, 100.0, 0.0, 8),
        ];
        for (cpu_cores, users, query, target, overhead, expected) in cases {
            let inputs = LittlesLaw {
                cpu_cores,
                expected_concurrent_users: users,
                avg_query_time_ms: query,
                target_response_time_ms: target,
                connection_overhead_ms: overhead,
            };
            assert_eq!(inputs.pool_size(), Ok(expected), "{inputs:?}");
        }
    }

    #[test]
    fn truncation_is_toward_zero_not_rounding() {
        // 250/90·3 = 8.33…; ×1.2 = 9.999999999999998 in floating point → 9, as in Python.
        let inputs = LittlesLaw {
            cpu_cores: 3,
            expected_concurrent_users: 100,
            avg_query_time_ms: 40.0,
            target_response_time_ms: 250.0,
            connection_overhead_ms: 50.0,
        };
        assert_eq!((250.0 / 90.0) * 3.0 * 1.2, 9.999999999999998);
        assert_eq!(inputs.pool_size(), Ok(9));
    }

    #[test]
    fn no_processing_time_is_an_error_not_a_division_by_zero() {
        let inputs = LittlesLaw {
            cpu_cores: 4,
            expected_concurrent_users: 10,
            avg_query_time_ms: 0.0,
            target_response_time_ms: 100.0,
            connection_overhead_ms: 0.0,
        };
        assert_eq!(inputs.pool_size(), Err(AdvisorError::NoProcessingTime));
        let negative = LittlesLaw {
            avg_query_time_ms: -1.0,
            ..inputs
        };
        assert!(matches!(
            negative.pool_size(),
            Err(AdvisorError::Invalid {
                field: "avg_query_time_ms",
                ..
            })
        ));
    }
}
