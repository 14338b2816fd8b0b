//! The window of exported series, as Prometheus would hold them after scraping the agent: what
//! rules evaluate. Series are keyed by their full label set (`__name__` included) and indexed by
//! name; a series that stops being exported gets a staleness marker, as after a Prometheus scrape.
//! Series come out in label order, so that what rules compute (a sum's rounding, which series
//! an error names) never depends on hash order; they are found by hash, which keeps a scrape's
//! ingest cheap.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// Milliseconds since the Unix epoch (Prometheus' sample timestamps).
pub type Millis = i64;

/// A series' labels, `__name__` included, sorted by name.
pub type SeriesLabels = BTreeMap<String, String>;

pub const NAME_LABEL: &str = "__name__";

/// Prometheus' staleness marker: a NaN with a bit pattern no computation produces.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

pub fn is_stale(value: f64) -> bool {
    value.to_bits() == STALE_NAN
}

pub fn stale_marker() -> f64 {
    f64::from_bits(STALE_NAN)
}

/// One series and its samples, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub labels: SeriesLabels,
    pub samples: VecDeque<(Millis, f64)>,
    /// The last scrape that carried this series.
    scraped_at: Option<Millis>,
}

impl Series {
    fn push(&mut self, t: Millis, value: f64) {
        if self.samples.back().is_some_and(|(last, _)| *last >= t) {
            return;
        }
        self.samples.push_back((t, value));
    }
}

/// The series of one metric name.
#[derive(Debug, Default)]
struct Family {
    /// In label order.
    series: Vec<Series>,
    /// Where each series is in `series`.
    index: HashMap<SeriesLabels, usize>,
}

impl Family {
    fn get_or_insert(&mut self, labels: SeriesLabels) -> &mut Series {
        // The common case is a series that exists, and its labels should not be cloned for it.
        if let Some(&i) = self.index.get(&labels) {
            return &mut self.series[i];
        }
        // A new series (a pool appears, a target starts): rare enough to shift the others.
        let at = self.series.partition_point(|s| s.labels < labels);
        self.series.insert(
            at,
            Series {
                labels: labels.clone(),
                samples: VecDeque::new(),
                scraped_at: None,
            },
        );
        for (i, s) in self.series.iter().enumerate().skip(at + 1) {
            *self.index.get_mut(&s.labels).expect("indexed") = i;
        }
        self.index.insert(labels, at);
        &mut self.series[at]
    }

    /// Drops series without samples.
    fn retain_non_empty(&mut self) {
        let before = self.series.len();
        self.series.retain(|s| !s.samples.is_empty());
        if self.series.len() != before {
            self.index = self
                .series
                .iter()
                .enumerate()
                .map(|(i, s)| (s.labels.clone(), i))
                .collect();
        }
    }
}

/// All series within `retention` of the newest sample.
#[derive(Debug)]
pub struct SeriesStore {
    retention: Millis,
    by_name: BTreeMap<String, Family>,
    /// When the previous scrape was, to mark the series it had and this one lacks as stale.
    last_scrape: Option<Millis>,
}

impl SeriesStore {
    pub fn new(retention: Millis) -> SeriesStore {
        SeriesStore {
            retention,
            by_name: BTreeMap::new(),
            last_scrape: None,
        }
    }

    /// Appends one sample (samples must come in time order per series; older ones are dropped).
    pub fn append(&mut self, labels: SeriesLabels, t: Millis, value: f64) {
        self.series_mut(labels).push(t, value);
    }

    fn series_mut(&mut self, labels: SeriesLabels) -> &mut Series {
        let name = labels.get(NAME_LABEL).map_or("", String::as_str);
        if !self.by_name.contains_key(name) {
            self.by_name.insert(name.to_string(), Family::default());
        }
        let family = self.by_name.get_mut(name).expect("inserted above");
        family.get_or_insert(labels)
    }

    /// Takes one scrape's worth of samples at `t`: series missing from it since the last scrape
    /// get a staleness marker, and everything older than the retention is dropped.
    pub fn ingest_scrape(
        &mut self,
        t: Millis,
        samples: impl IntoIterator<Item = (SeriesLabels, f64)>,
    ) {
        for (labels, value) in samples {
            let series = self.series_mut(labels);
            series.push(t, value);
            series.scraped_at = Some(t);
        }
        if let Some(previous) = self.last_scrape {
            for series in self.by_name.values_mut().flat_map(|f| &mut f.series) {
                if series.scraped_at == Some(previous) {
                    series.push(t, stale_marker());
                }
            }
        }
        self.last_scrape = Some(t);
        self.prune(t);
    }

    /// Drops samples older than the retention, and series left empty.
    pub fn prune(&mut self, now: Millis) {
        let oldest = now - self.retention;
        for family in self.by_name.values_mut() {
            for series in &mut family.series {
                while series.samples.front().is_some_and(|(t, _)| *t < oldest) {
                    series.samples.pop_front();
                }
            }
            family.retain_non_empty();
        }
        self.by_name.retain(|_, f| !f.series.is_empty());
    }

    /// Series named `name` (all series when `None`), in label order.
    pub fn series<'a>(&'a self, name: Option<&str>) -> Box<dyn Iterator<Item = &'a Series> + 'a> {
        match name {
            Some(name) => Box::new(self.by_name.get(name).into_iter().flat_map(|f| &f.series)),
            None => Box::new(self.by_name.values().flat_map(|f| &f.series)),
        }
    }

    pub fn series_count(&self) -> usize {
        self.by_name.values().map(|f| f.series.len()).sum()
    }

    pub fn sample_count(&self) -> usize {
        self.series(None).map(|s| s.samples.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(name: &str, pool: &str) -> SeriesLabels {
        SeriesLabels::from([
            (NAME_LABEL.into(), name.into()),
            ("pool".into(), pool.into()),
        ])
    }

    #[test]
    fn vanished_series_get_a_staleness_marker() {
        let mut store = SeriesStore::new(60_000);
        store.ingest_scrape(0, [(labels("up", "a"), 1.0), (labels("up", "b"), 1.0)]);
        store.ingest_scrape(1000, [(labels("up", "a"), 1.0)]);
        let b: Vec<&Series> = store
            .series(Some("up"))
            .filter(|s| s.labels["pool"] == "b")
            .collect();
        assert!(is_stale(b[0].samples[1].1));
        assert_eq!(store.series_count(), 2);
    }

    #[test]
    fn series_come_in_label_order_whatever_the_arrival() {
        let mut store = SeriesStore::new(60_000);
        for (t, pools) in [(0, ["c", "a", "b"]), (1000, ["b", "d", "a"])] {
            store.ingest_scrape(t, pools.map(|p| (labels("up", p), 1.0)));
        }
        let order = |store: &SeriesStore| -> Vec<String> {
            store
                .series(None)
                .map(|s| s.labels["pool"].clone())
                .collect()
        };
        assert_eq!(order(&store), ["a", "b", "c", "d"]);
        // Two minutes on: c (stale since 1 s) leaves the window; a and b keep their marker.
        store.ingest_scrape(
            120_000,
            [(labels("up", "d"), 2.0), (labels("up", "e"), 2.0)],
        );
        assert_eq!(order(&store), ["a", "b", "d", "e"]);
        store.append(labels("up", "c"), 121_000, 3.0);
        assert_eq!(order(&store), ["a", "b", "c", "d", "e"]);
        // Found by hash after the shifts: each append lands on its own series.
        store.append(labels("up", "e"), 122_000, 4.0);
        let counts: Vec<usize> = store.series(None).map(|s| s.samples.len()).collect();
        assert_eq!(counts, [1, 1, 1, 1, 2]);
    }

    #[test]
    fn retention_drops_old_samples_and_empty_series() {
        let mut store = SeriesStore::new(10_000);
        store.ingest_scrape(0, [(labels("up", "a"), 1.0)]);
        store.ingest_scrape(5_000, [(labels("up", "b"), 1.0)]);
        store.ingest_scrape(20_000, [(labels("up", "b"), 1.0)]);
        // a: its sample at 0 and its marker at 5 s are both older than 10 s.
        assert_eq!(store.series_count(), 1);
        assert_eq!(store.sample_count(), 1);
    }
}
