//! Connection churn from identities: a connection present now and not in the previous sample
//! was opened, one gone since was closed. The first sample of a target is the baseline.
//!
//! A source names each connection it sees ([`ChurnTracker::saw`]) between
//! [`ChurnTracker::begin`] and [`ChurnTracker::end`]. The tracker keeps, per pool, the
//! connections of the last sample marked with the sample that last saw them: one seen again
//! costs a lookup by the source's borrowed text, and only a new one is copied.

use rustc_hash::FxHashMap;

/// Cumulative opened / closed counts per pool, kept by a source between samples.
#[derive(Debug, Default)]
pub struct ChurnTracker {
    pools: FxHashMap<String, PoolConnections>,
    /// The sample being read, counted from 1; what each connection is marked with.
    sample: u64,
    /// Whether the sample being read is compared with the last one: false for a baseline
    /// (the first sample, or the first after a reset), whose connections open and close nothing.
    counted: bool,
}

#[derive(Debug, Default)]
struct PoolConnections {
    /// Connection → the last sample that saw it.
    seen: FxHashMap<Box<str>, u64>,
    opened: u64,
    closed: u64,
}

impl ChurnTracker {
    /// Starts reading a sample.
    pub fn begin(&mut self) {
        self.sample += 1;
    }

    /// Connection `id` of `pool` is open in the sample being read.
    pub fn saw(&mut self, pool: &str, id: &str) {
        let connections = match self.pools.get_mut(pool) {
            Some(connections) => connections,
            None => self.pools.entry(pool.to_string()).or_default(),
        };
        match connections.seen.get_mut(id) {
            Some(last) => *last = self.sample,
            None => {
                connections.seen.insert(id.into(), self.sample);
                if self.counted {
                    connections.opened += 1;
                }
            }
        }
    }

    /// Ends the sample: a connection it did not see was closed.
    pub fn end(&mut self) {
        for connections in self.pools.values_mut() {
            let before = connections.seen.len();
            connections.seen.retain(|_, last| *last == self.sample);
            if self.counted {
                connections.closed += (before - connections.seen.len()) as u64;
            }
        }
        self.counted = true;
    }

    /// (opened, closed) since the baseline.
    pub fn totals(&self, pool: &str) -> (u64, u64) {
        self.pools
            .get(pool)
            .map_or((0, 0), |c| (c.opened, c.closed))
    }

    /// Forgets the baseline: after a lost connection we cannot tell what changed meanwhile.
    pub fn reset(&mut self) {
        self.counted = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe(t: &mut ChurnTracker, pairs: &[(&str, &[&str])]) {
        t.begin();
        for (pool, ids) in pairs {
            for id in *ids {
                t.saw(pool, id);
            }
        }
        t.end();
    }

    #[test]
    fn baseline_then_differences() {
        let mut t = ChurnTracker::default();
        observe(&mut t, &[("a", &["1", "2"])]);
        assert_eq!(t.totals("a"), (0, 0), "the baseline opens nothing");
        observe(&mut t, &[("a", &["2", "3", "4"]), ("b", &["9"])]);
        assert_eq!(t.totals("a"), (2, 1));
        assert_eq!(t.totals("b"), (1, 0));
        observe(&mut t, &[("a", &["2", "3", "4"])]);
        assert_eq!(
            t.totals("b"),
            (1, 1),
            "a vanished pool closes its connections"
        );
        assert_eq!(t.totals("a"), (2, 1));
        assert_eq!(t.totals("never seen"), (0, 0));
    }

    #[test]
    fn reset_makes_a_new_baseline_and_keeps_counts() {
        let mut t = ChurnTracker::default();
        observe(&mut t, &[("a", &["1"])]);
        observe(&mut t, &[("a", &["2"])]);
        t.reset();
        observe(&mut t, &[("a", &["7", "8"])]);
        assert_eq!(t.totals("a"), (1, 1));
        // The new baseline is what the next sample is compared with.
        observe(&mut t, &[("a", &["8", "9"])]);
        assert_eq!(t.totals("a"), (2, 2));
    }

    #[test]
    fn a_connection_seen_twice_in_one_sample_is_one() {
        let mut t = ChurnTracker::default();
        observe(&mut t, &[("a", &[])]);
        observe(&mut t, &[("a", &["1", "1"])]);
        assert_eq!(t.totals("a"), (1, 0));
    }
}
