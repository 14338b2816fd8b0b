//! Connection churn from identity sets: a connection present now and not in the previous sample
//! was opened, one gone since was closed. The first sample of a target is the baseline.

use std::collections::{HashMap, HashSet};

/// Cumulative opened / closed counts per pool, kept by a source between samples.
#[derive(Debug, Default)]
pub struct ChurnTracker {
    previous: Option<HashMap<String, HashSet<String>>>,
    counts: HashMap<String, (u64, u64)>,
}

impl ChurnTracker {
    /// Takes the connections seen now, by pool; returns nothing, [`ChurnTracker::totals`] reads.
    pub fn observe(&mut self, now: HashMap<String, HashSet<String>>) {
        if let Some(previous) = &self.previous {
            let empty = HashSet::new();
            let pools: HashSet<&String> = previous.keys().chain(now.keys()).collect();
            for pool in pools {
                let before = previous.get(pool).unwrap_or(&empty);
                let after = now.get(pool).unwrap_or(&empty);
                let opened = after.difference(before).count() as u64;
                let closed = before.difference(after).count() as u64;
                let entry = self.counts.entry(pool.clone()).or_default();
                entry.0 += opened;
                entry.1 += closed;
            }
        } else {
            for pool in now.keys() {
                self.counts.entry(pool.clone()).or_default();
            }
        }
        self.previous = Some(now);
    }

    /// (opened, closed) since the baseline.
    pub fn totals(&self, pool: &str) -> (u64, u64) {
        self.counts.get(pool).copied().unwrap_or_default()
    }

    /// Forgets the baseline: after a lost connection we cannot tell what changed meanwhile.
    pub fn reset(&mut self) {
        self.previous = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(pairs: &[(&str, &[&str])]) -> HashMap<String, HashSet<String>> {
        pairs
            .iter()
            .map(|(p, ids)| (p.to_string(), ids.iter().map(|i| i.to_string()).collect()))
            .collect()
    }

    #[test]
    fn baseline_then_differences() {
        let mut t = ChurnTracker::default();
        t.observe(seen(&[("a", &["1", "2"])]));
        assert_eq!(t.totals("a"), (0, 0), "the baseline opens nothing");
        t.observe(seen(&[("a", &["2", "3", "4"]), ("b", &["9"])]));
        assert_eq!(t.totals("a"), (2, 1));
        assert_eq!(t.totals("b"), (1, 0));
        t.observe(seen(&[("a", &["2", "3", "4"])]));
        assert_eq!(
            t.totals("b"),
            (1, 1),
            "a vanished pool closes its connections"
        );
    }

    #[test]
    fn reset_makes_a_new_baseline_and_keeps_counts() {
        let mut t = ChurnTracker::default();
        t.observe(seen(&[("a", &["1"])]));
        t.observe(seen(&[("a", &["2"])]));
        t.reset();
        t.observe(seen(&[("a", &["7", "8"])]));
        assert_eq!(t.totals("a"), (1, 1));
    }
}
