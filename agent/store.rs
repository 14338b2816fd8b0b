//! The latest sample per pool and a window of its counters, for the figures that need more than
//! one sample: average wait and usage time from counter deltas, churn per minute. Time is passed
//! in, never read here.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::{PoolFigures, PoolLimits, PoolSample, PoolTotals};

/// One pool: its latest sample, and its counters over the window (all rates need), with the
/// size of its database's WAL for the WAL's growth.
#[derive(Debug)]
struct PoolWindow {
    latest: Arc<PoolSample>,
    totals: VecDeque<Counters>,
    /// The first sample of this unbroken run of samples.
    first_seen: Instant,
}

/// A pool's counters and WAL size at one sample, packed: an absent figure costs a bit rather
/// than an `Option`'s tag and padding (104 bytes a sample instead of 184; 100 pools sampled
/// every 500 ms keep 22 samples each).
#[derive(Clone, Copy, Debug)]
struct Counters {
    at: Instant,
    /// In the order [`Counters::pack`] writes them; floats as their bits.
    values: [u64; 10],
    /// Bit `i` set: `values[i]` is known.
    present: u16,
    usage_includes_wait: bool,
}

impl Counters {
    fn pack(at: Instant, totals: &PoolTotals, wal: Option<u64>) -> Counters {
        // Destructured whole, so that a counter added to PoolTotals is not silently dropped.
        let PoolTotals {
            transactions,
            checkouts,
            assignments,
            wait_seconds,
            usage_seconds,
            usage_includes_wait,
            connections_opened,
            connections_closed,
            connection_errors,
            timeouts,
        } = *totals;
        let bits = |v: Option<f64>| v.map(f64::to_bits);
        let all = [
            transactions,
            checkouts,
            assignments,
            bits(wait_seconds),
            bits(usage_seconds),
            connections_opened,
            connections_closed,
            connection_errors,
            timeouts,
            wal,
        ];
        let mut counters = Counters {
            at,
            values: [0; 10],
            present: 0,
            usage_includes_wait,
        };
        for (i, v) in all.into_iter().enumerate() {
            if let Some(v) = v {
                counters.values[i] = v;
                counters.present |= 1 << i;
            }
        }
        counters
    }

    fn get(&self, i: usize) -> Option<u64> {
        (self.present & (1 << i) != 0).then(|| self.values[i])
    }

    /// The counters and the WAL size, as [`Counters::pack`] took them.
    fn unpack(&self) -> (PoolTotals, Option<u64>) {
        let float = |i| self.get(i).map(f64::from_bits);
        let totals = PoolTotals {
            transactions: self.get(0),
            checkouts: self.get(1),
            assignments: self.get(2),
            wait_seconds: float(3),
            usage_seconds: float(4),
            usage_includes_wait: self.usage_includes_wait,
            connections_opened: self.get(5),
            connections_closed: self.get(6),
            connection_errors: self.get(7),
            timeouts: self.get(8),
        };
        (totals, self.get(9))
    }
}

/// Every pool of every target, with counters kept for `window`.
#[derive(Debug)]
pub struct Store {
    window: Duration,
    rate_window: Duration,
    /// By target, its pools in the order of their name and labels: pushed pools of one name
    /// from two service instances are two pools. A sample finds its pool's window by a binary
    /// search that borrows its name and labels, so a pool seen before costs no key of its own.
    pools: BTreeMap<String, Vec<PoolWindow>>,
}

impl Store {
    pub fn new(window: Duration, rate_window: Duration) -> Store {
        Store {
            window,
            rate_window,
            pools: BTreeMap::new(),
        }
    }

    /// Records a target's pools, one sample each. Limits the source did not see come from
    /// `configured`; pools the target no longer has are dropped.
    pub fn record(
        &mut self,
        target: &str,
        now: Instant,
        pools: Vec<PoolSample>,
        configured: PoolLimits,
    ) {
        let mut windows = self.pools.remove(target).unwrap_or_default();
        let mut seen = vec![false; windows.len()];
        let mut fresh = Vec::new();
        for mut latest in pools {
            latest.limits = latest.limits.or(configured);
            let totals = latest.totals;
            let wal = latest.database.as_ref().and_then(|d| d.wal_size_bytes);
            let window = match windows.binary_search_by(|w| w.latest.key().cmp(&latest.key())) {
                Ok(i) => {
                    seen[i] = true;
                    let window = &mut windows[i];
                    window.latest = Arc::new(latest);
                    window
                }
                Err(_) => {
                    fresh.push(PoolWindow {
                        latest: Arc::new(latest),
                        totals: VecDeque::new(),
                        first_seen: now,
                    });
                    let last = fresh.len() - 1;
                    &mut fresh[last]
                }
            };
            while window
                .totals
                .front()
                .is_some_and(|c| now.saturating_duration_since(c.at) > self.window)
            {
                window.totals.pop_front();
            }
            // Grown one sample at a time, the window holds what it needs: doubling left 100
            // pools' windows of 22 samples with room for 32 (0.2 MB). Its length is steady
            // once it is full, so this reallocates only while it fills.
            if window.totals.len() == window.totals.capacity() {
                window.totals.reserve_exact(1);
            }
            window.totals.push_back(Counters::pack(now, &totals, wal));
        }
        let mut seen = seen.into_iter();
        windows.retain(|_| seen.next().unwrap_or(false));
        if !fresh.is_empty() {
            windows.append(&mut fresh);
            windows.sort_by(|a, b| a.latest.key().cmp(&b.latest.key()));
            // A source that names a new pool twice: its last sample is the pool's.
            windows.dedup_by(|later, earlier| {
                let same = later.latest.key() == earlier.latest.key();
                if same {
                    std::mem::swap(later, earlier);
                }
                same
            });
        }
        if !windows.is_empty() {
            self.pools.insert(target.to_string(), windows);
        }
    }

    /// Forgets a target's pools: after a failed sample, what comes next starts a new history.
    pub fn forget(&mut self, target: &str) {
        self.pools.remove(target);
    }

    /// The figures of a target's pools, by pool name.
    pub fn figures(&self, target: &str) -> Vec<PoolFigures> {
        self.pools.get(target).map_or_else(Vec::new, |windows| {
            windows.iter().filter_map(|w| self.figures_of(w)).collect()
        })
    }

    /// How many samples the store holds in all (for self-telemetry and benchmarks).
    pub fn sample_count(&self) -> usize {
        self.pools.values().flatten().map(|w| w.totals.len()).sum()
    }

    fn figures_of(&self, window: &PoolWindow) -> Option<PoolFigures> {
        let newest = window.totals.back()?;
        let now = newest.at;
        let mut figures = PoolFigures::from_latest(Arc::clone(&window.latest));
        figures.observed_seconds = Some(
            now.saturating_duration_since(window.first_seen)
                .as_secs_f64(),
        );
        let Some(oldest) = window
            .totals
            .iter()
            .find(|c| now.saturating_duration_since(c.at) <= self.rate_window)
            .filter(|c| c.at < now)
        else {
            return Some(figures);
        };
        let ((a, wal_then), (b, wal_now)) = (oldest.unpack(), newest.unpack());
        let seconds = now.saturating_duration_since(oldest.at).as_secs_f64();
        let minutes = seconds / 60.0;
        figures.wal_growth_bytes_per_second = match (wal_then, wal_now) {
            (Some(a), Some(b)) if seconds > 0.0 => Some((b as f64 - a as f64) / seconds),
            _ => None,
        };
        let per = |num: Option<f64>, den: Option<u64>| match (num, den) {
            (Some(n), Some(d)) if d > 0 => Some(n / d as f64),
            _ => None,
        };
        figures.avg_wait_time_seconds = per(
            delta_f64(a.wait_seconds, b.wait_seconds),
            delta(a.assignments, b.assignments),
        );
        // PgBouncer counts a transaction when it begins and adds its time when it ends: over a
        // window in which every connection sat in one long transaction the count rises and the
        // time does not. No transaction takes no time, so no time added means none was
        // measured, and the average is unknown rather than 0.
        let wait = delta_f64(a.wait_seconds, b.wait_seconds);
        let usage = delta_f64(a.usage_seconds, b.usage_seconds).filter(|t| *t > 0.0);
        let held = if b.usage_includes_wait {
            usage.zip(wait).map(|(u, w)| u - w)
        } else {
            usage
        };
        figures.avg_usage_time_seconds = per(
            held.filter(|t| *t > 0.0),
            delta(a.transactions, b.transactions),
        );
        figures.checkouts_per_second = delta(a.checkouts, b.checkouts)
            .filter(|_| seconds > 0.0)
            .map(|n| n as f64 / seconds);
        let churn = match (
            delta(a.connections_opened, b.connections_opened),
            delta(a.connections_closed, b.connections_closed),
        ) {
            (Some(o), Some(c)) => Some((o + c) as f64),
            _ => None,
        };
        figures.churn_per_minute = churn.filter(|_| minutes > 0.0).map(|c| c / minutes);
        figures.connection_errors = delta(a.connection_errors, b.connection_errors);
        Some(figures)
    }
}

/// Increase of a counter; a decrease means the counter restarted (PgBouncer restarted), so the
/// new value is the increase, as Prometheus' `increase` treats resets.
fn delta(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    let (a, b) = (before?, after?);
    Some(if b >= a { b - a } else { b })
}

fn delta_f64(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    let (a, b) = (before?, after?);
    Some(if b >= a { b - a } else { b })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Labels, PoolTotals};

    fn sample(wait: f64, assignments: u64, opened: u64, closed: u64) -> Vec<PoolSample> {
        vec![PoolSample {
            pool: "p".into(),
            used: Some(4),
            totals: PoolTotals {
                wait_seconds: Some(wait),
                assignments: Some(assignments),
                transactions: Some(assignments),
                checkouts: Some(assignments),
                usage_seconds: Some(wait * 2.0),
                connections_opened: Some(opened),
                connections_closed: Some(closed),
                ..PoolTotals::default()
            },
            ..PoolSample::default()
        }]
    }

    #[test]
    fn counters_unpack_to_what_was_packed() {
        let at = Instant::now();
        let all = PoolTotals {
            transactions: Some(1),
            checkouts: Some(u64::MAX),
            assignments: Some(0),
            wait_seconds: Some(0.25),
            usage_seconds: Some(-0.0),
            usage_includes_wait: true,
            connections_opened: Some(5),
            connections_closed: Some(6),
            connection_errors: Some(7),
            timeouts: Some(8),
        };
        let none = PoolTotals::default();
        let some = PoolTotals {
            wait_seconds: Some(1.5),
            timeouts: Some(0),
            ..PoolTotals::default()
        };
        for (totals, wal) in [(all, Some(9)), (none, None), (some, Some(0))] {
            let packed = Counters::pack(at, &totals, wal);
            assert_eq!(packed.unpack(), (totals, wal));
            assert_eq!(packed.at, at);
        }
    }

    fn store() -> Store {
        Store::new(Duration::from_secs(300), Duration::from_secs(60))
    }

    #[test]
    fn one_sample_has_no_rates() {
        let mut s = store();
        s.record(
            "t",
            Instant::now(),
            sample(1.0, 10, 0, 0),
            PoolLimits::default(),
        );
        let f = &s.figures("t")[0];
        assert_eq!((f.avg_wait_time_seconds, f.churn_per_minute), (None, None));
    }

    #[test]
    fn rates_come_from_deltas_within_the_rate_window() {
        let mut s = store();
        let t0 = Instant::now();
        s.record("t", t0, sample(0.0, 0, 0, 0), PoolLimits::default());
        s.record(
            "t",
            t0 + Duration::from_secs(30),
            sample(1.0, 10, 3, 0),
            PoolLimits::default(),
        );
        s.record(
            "t",
            t0 + Duration::from_secs(90),
            sample(7.0, 20, 10, 10),
            PoolLimits::default(),
        );
        let f = &s.figures("t")[0];
        // From the sample at 30 s (the oldest within 60 s) to 90 s: 6 s of wait over 10 clients.
        assert_eq!(f.avg_wait_time_seconds, Some(0.6));
        assert_eq!(f.avg_usage_time_seconds, Some(1.2));
        // 7 opened + 10 closed in one minute.
        assert_eq!(f.churn_per_minute, Some(17.0));
        // 10 checkouts in 60 s, each holding 1.2 s on average.
        assert_eq!(f.checkouts_per_second, Some(10.0 / 60.0));
    }

    #[test]
    fn usage_that_includes_the_wait_is_held_for_the_rest() {
        let mut s = store();
        let t0 = Instant::now();
        let mut bouncer = sample(0.0, 0, 0, 0);
        bouncer[0].totals.usage_includes_wait = true;
        s.record("t", t0, bouncer.clone(), PoolLimits::default());
        // 10 transactions of 1.3 s each, 0.8 s of it waiting for a server: held 0.5 s.
        bouncer[0].totals.transactions = Some(10);
        bouncer[0].totals.usage_seconds = Some(13.0);
        bouncer[0].totals.wait_seconds = Some(8.0);
        s.record(
            "t",
            t0 + Duration::from_secs(10),
            bouncer.clone(),
            PoolLimits::default(),
        );
        assert_eq!(s.figures("t")[0].avg_usage_time_seconds, Some(0.5));
    }

    #[test]
    fn transactions_begun_but_not_ended_give_no_average_usage() {
        let mut s = store();
        let t0 = Instant::now();
        let mut begun = sample(0.0, 0, 0, 0);
        begun[0].totals.usage_seconds = Some(4.0);
        s.record("t", t0, begun.clone(), PoolLimits::default());
        begun[0].totals.transactions = Some(5);
        s.record(
            "t",
            t0 + Duration::from_secs(10),
            begun.clone(),
            PoolLimits::default(),
        );
        assert_eq!(s.figures("t")[0].avg_usage_time_seconds, None);
    }

    #[test]
    fn a_counter_reset_is_not_a_negative_rate() {
        let mut s = store();
        let t0 = Instant::now();
        s.record("t", t0, sample(100.0, 1000, 0, 0), PoolLimits::default());
        s.record(
            "t",
            t0 + Duration::from_secs(10),
            sample(2.0, 4, 0, 0),
            PoolLimits::default(),
        );
        assert_eq!(s.figures("t")[0].avg_wait_time_seconds, Some(0.5));
    }

    /// Pools reported in any order keep their own history; one name with two sets of labels
    /// is two pools; the figures come in the order of name and labels.
    #[test]
    fn each_pool_keeps_its_history_whatever_order_they_come_in() {
        let mut s = store();
        let t0 = Instant::now();
        let pool = |name: &str, instance: &str, waited: f64| PoolSample {
            pool: name.into(),
            labels: Labels::from([("instance".to_string(), instance.to_string())]),
            totals: PoolTotals {
                wait_seconds: Some(waited),
                assignments: Some(waited as u64),
                ..PoolTotals::default()
            },
            ..PoolSample::default()
        };
        // Every 10 s; in the last, c is new and a/2 is gone.
        let samples = [
            [("b", "1", 0.0), ("a", "2", 0.0), ("a", "1", 0.0)],
            [("a", "1", 1.0), ("b", "1", 3.0), ("a", "2", 2.0)],
            [("c", "1", 0.0), ("b", "1", 9.0), ("a", "1", 4.0)],
        ];
        for (i, pools) in samples.into_iter().enumerate() {
            let at = t0 + Duration::from_secs(10 * i as u64);
            let pools = pools.map(|(name, instance, waited)| pool(name, instance, waited));
            s.record("t", at, pools.into(), PoolLimits::default());
        }
        let figures: Vec<_> = s
            .figures("t")
            .iter()
            .map(|f| {
                (
                    f.latest.pool.clone(),
                    f.latest.labels["instance"].clone(),
                    f.observed_seconds,
                    f.avg_wait_time_seconds,
                )
            })
            .collect();
        let row = |p: &str, i: &str, seen: f64, wait: Option<f64>| {
            (p.to_string(), i.to_string(), Some(seen), wait)
        };
        assert_eq!(
            figures,
            [
                row("a", "1", 20.0, Some(1.0)),
                row("b", "1", 20.0, Some(1.0)),
                row("c", "1", 0.0, None),
            ]
        );
        assert_eq!(s.sample_count(), 3 + 3 + 1);
        assert!(s.figures("other").is_empty());
    }

    #[test]
    fn configured_limits_fill_in_and_vanished_pools_go() {
        let mut s = store();
        let limits = PoolLimits {
            pool_size: Some(8),
            ..PoolLimits::default()
        };
        s.record("t", Instant::now(), sample(0.0, 0, 0, 0), limits);
        assert_eq!(s.figures("t")[0].utilization, Some(0.5));
        s.record("t", Instant::now(), Vec::new(), limits);
        assert!(s.figures("t").is_empty());
    }

    #[test]
    fn observed_time_counts_from_the_first_sample_and_restarts_after_a_gap() {
        let mut s = store();
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        s.record("t", at(0), sample(0.0, 0, 0, 0), PoolLimits::default());
        assert_eq!(s.figures("t")[0].observed_seconds, Some(0.0));
        s.record("t", at(30), sample(0.0, 0, 0, 0), PoolLimits::default());
        assert_eq!(s.figures("t")[0].observed_seconds, Some(30.0));
        s.forget("t");
        assert!(s.figures("t").is_empty());
        s.record("t", at(40), sample(0.0, 0, 0, 0), PoolLimits::default());
        assert_eq!(s.figures("t")[0].observed_seconds, Some(0.0));
    }

    #[test]
    fn wal_growth_is_bytes_per_second_across_the_rate_window() {
        let with_wal = |bytes: Option<u64>| {
            vec![PoolSample {
                pool: "p".into(),
                database: Some(Box::new(crate::model::DatabaseSample {
                    wal_size_bytes: bytes,
                    ..Default::default()
                })),
                ..PoolSample::default()
            }]
        };
        let mut s = store();
        let t0 = Instant::now();
        s.record("t", t0, with_wal(Some(4096)), PoolLimits::default());
        assert_eq!(s.figures("t")[0].wal_growth_bytes_per_second, None);
        s.record(
            "t",
            t0 + Duration::from_secs(4),
            with_wal(Some(45056)),
            PoolLimits::default(),
        );
        assert_eq!(s.figures("t")[0].wal_growth_bytes_per_second, Some(10240.0));
        // A checkpoint that truncates the WAL shows as shrinking, not as a reset.
        s.record(
            "t",
            t0 + Duration::from_secs(8),
            with_wal(Some(0)),
            PoolLimits::default(),
        );
        assert_eq!(s.figures("t")[0].wal_growth_bytes_per_second, Some(-512.0));
        s.record(
            "t",
            t0 + Duration::from_secs(12),
            with_wal(None),
            PoolLimits::default(),
        );
        assert_eq!(s.figures("t")[0].wal_growth_bytes_per_second, None);
    }

    #[test]
    fn the_window_is_bounded() {
        let mut s = Store::new(Duration::from_secs(60), Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..100 {
            s.record(
                "t",
                t0 + Duration::from_secs(i * 10),
                sample(0.0, 0, 0, 0),
                PoolLimits::default(),
            );
        }
        assert_eq!(s.sample_count(), 7);
    }
}
