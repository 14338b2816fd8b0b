//! The window of exported series, as Prometheus would hold them after scraping the agent: what
//! rules evaluate. Series are keyed by their full label set (`__name__` included) and indexed by
//! name; a series that stops being exported gets a staleness marker, as after a Prometheus scrape.
//! Series come out in label order, so that what rules compute (a sum's rounding, which series
//! an error names) never depends on hash order; they are found by hash, which keeps a scrape's
//! ingest cheap.

pub mod chunk;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use rustc_hash::FxHashMap;

use crate::exposition::{CATALOGUE, ExportedSample, LabelSet, family_of_series, pair_hash};
pub use chunk::Extreme;
use chunk::{Chunk, Head};

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

/// What `rate`, `increase` and `delta` read of a range of samples: its ends, how many samples
/// it has, and the value before each fall (a counter reset), in order.
#[derive(Clone, Debug, PartialEq)]
pub struct CounterRange {
    pub first: (Millis, f64),
    pub last: (Millis, f64),
    pub count: usize,
    pub falls: Vec<f64>,
}

impl CounterRange {
    /// The range of `samples`, oldest first; `None` when there are none.
    pub fn of(samples: impl IntoIterator<Item = (Millis, f64)>) -> Option<CounterRange> {
        let mut range: Option<CounterRange> = None;
        for sample in samples {
            CounterRange::add(&mut range, sample);
        }
        range
    }

    fn add(range: &mut Option<CounterRange>, (t, v): (Millis, f64)) {
        match range {
            None => {
                *range = Some(CounterRange {
                    first: (t, v),
                    last: (t, v),
                    count: 1,
                    falls: Vec::new(),
                })
            }
            Some(r) => {
                if v < r.last.1 {
                    r.falls.push(r.last.1);
                }
                r.last = (t, v);
                r.count += 1;
            }
        }
    }
}

/// One series and its samples, oldest first, packed in chunks as Prometheus' TSDB packs them.
#[derive(Clone, Debug)]
pub struct Series {
    /// Shared with the samples rules select from it.
    pub labels: Arc<SeriesLabels>,
    /// `labels` without the metric name, made the first time a range function reads the
    /// series and shared with every result since (functions drop the name).
    nameless: OnceLock<Arc<SeriesLabels>>,
    /// Sealed chunks, oldest first.
    sealed: VecDeque<Chunk>,
    /// The chunk new samples go to.
    head: Option<Head>,
    /// The newest sample, kept unpacked: an instant selector at the newest evaluation reads it
    /// without decoding a chunk.
    last: Option<(Millis, f64)>,
    /// Samples before this are past the retention. The oldest chunk may still hold some: a
    /// chunk goes when all of it is past, and until then they are skipped.
    from: Millis,
    /// The last scrape that carried this series.
    scraped_at: Option<Millis>,
    /// The exported sample this series was last fed from.
    origin: Option<Origin>,
}

/// The exported label set a series was fed from, and the label its family added to it (a pool's
/// connections by state): a pointer comparison and that label then tell that a sample belongs to
/// the series without looking its labels up.
#[derive(Clone, Debug)]
struct Origin {
    labels: Arc<LabelSet>,
    extra: Option<(&'static str, &'static str)>,
}

impl Origin {
    fn of(sample: &ExportedSample) -> Origin {
        Origin {
            labels: sample.labels.clone(),
            extra: sample.extra,
        }
    }

    fn fed(&self, sample: &ExportedSample) -> bool {
        Arc::ptr_eq(&self.labels, &sample.labels) && self.extra == sample.extra
    }
}

impl Series {
    /// The series' labels without the metric name.
    pub fn labels_without_name(&self) -> Arc<SeriesLabels> {
        let nameless = self.nameless.get_or_init(|| {
            let mut labels = (*self.labels).clone();
            labels.remove(NAME_LABEL);
            Arc::new(labels)
        });
        Arc::clone(nameless)
    }

    fn new(labels: SeriesLabels) -> Series {
        Series {
            labels: Arc::new(labels),
            nameless: OnceLock::new(),
            sealed: VecDeque::new(),
            head: None,
            last: None,
            from: Millis::MIN,
            scraped_at: None,
            origin: None,
        }
    }

    /// Takes a sample; it goes into the chunks only when `history` is wanted, and is the newest
    /// sample either way.
    fn push(&mut self, t: Millis, value: f64, history: bool) {
        if self.last.is_some_and(|(last, _)| last >= t) {
            return;
        }
        self.last = Some((t, value));
        if !history {
            return;
        }
        let head = self.head.get_or_insert_default();
        if head.chunk().is_full() {
            let full = std::mem::take(head);
            self.sealed.push_back(full.seal());
        }
        head.append(t, value);
    }

    /// Forgets the packed samples before `oldest`, and the whole series once its newest sample
    /// is before `gone` too.
    fn drop_before(&mut self, oldest: Millis, gone: Millis) {
        self.from = self.from.max(oldest);
        while self.sealed.front().is_some_and(|c| c.last_time() < oldest) {
            self.sealed.pop_front();
        }
        if self.sealed.is_empty()
            && self
                .head
                .as_ref()
                .is_some_and(|h| h.chunk().last_time() < oldest)
        {
            self.head = None;
        }
        if self.sealed.is_empty() && self.head.is_none() && self.last.is_some_and(|(t, _)| t < gone)
        {
            self.last = None;
        }
    }

    /// The chunks, oldest first.
    fn chunks(&self) -> impl DoubleEndedIterator<Item = &Chunk> {
        self.sealed
            .iter()
            .chain(self.head.as_ref().map(Head::chunk))
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_none()
    }

    /// Every sample within the retention, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = (Millis, f64)> + '_ {
        self.between(self.from, Millis::MAX)
    }

    /// The samples with `start ≤ t ≤ end`, oldest first: only the chunks that overlap are
    /// decoded, so the cost follows the range asked for, not the window kept.
    pub fn between(&self, start: Millis, end: Millis) -> impl Iterator<Item = (Millis, f64)> + '_ {
        let start = start.max(self.from);
        self.overlapping(start, end)
            .flat_map(|c| c.iter())
            .filter(move |(t, _)| *t >= start && *t <= end)
    }

    /// The chunks holding a sample time in `start..=end`, oldest first.
    fn overlapping(&self, start: Millis, end: Millis) -> impl Iterator<Item = &Chunk> {
        self.chunks()
            .filter(move |c| c.last_time() >= start && c.first_time() <= end)
    }

    /// The smallest or largest value with `start ≤ t ≤ end`, staleness markers left out, as
    /// `min_over_time` / `max_over_time` compute it. A chunk the range covers whole gives its
    /// own extreme without being decoded, so the cost stays with the chunks at the range's ends.
    pub fn extreme_between(&self, start: Millis, end: Millis, which: Extreme) -> Option<f64> {
        let start = start.max(self.from);
        let mut acc = None;
        for c in self.overlapping(start, end) {
            if c.first_time() >= start && c.last_time() <= end {
                if let Some(v) = c.extreme(which) {
                    acc = which.fold(acc, v);
                }
                continue;
            }
            for (t, v) in c.iter() {
                if t >= start && t <= end && !is_stale(v) {
                    acc = which.fold(acc, v);
                }
            }
        }
        acc
    }

    /// What `rate`, `increase` and `delta` read of the samples with `start ≤ t ≤ end`,
    /// staleness markers left out. A chunk the range covers whole whose values never fall
    /// gives its ends without being decoded: only the chunks at the range's ends are, and those
    /// with a reset or a staleness marker.
    pub fn counter_between(&self, start: Millis, end: Millis) -> Option<CounterRange> {
        let start = start.max(self.from);
        let mut range = None;
        for c in self.overlapping(start, end) {
            if c.first_time() >= start
                && c.last_time() <= end
                && let Some((first, last)) = c.rising_ends()
            {
                CounterRange::add(&mut range, first);
                if let Some(r) = &mut range
                    && c.count() > 1
                {
                    r.last = last;
                    r.count += c.count() - 1;
                }
                continue;
            }
            for (t, v) in c.iter() {
                if t >= start && t <= end && !is_stale(v) {
                    CounterRange::add(&mut range, (t, v));
                }
            }
        }
        range
    }

    /// The newest sample at or before `t`.
    pub fn at_or_before(&self, t: Millis) -> Option<(Millis, f64)> {
        match self.last {
            Some(last) if last.0 <= t => return Some(last),
            None => return None,
            Some(_) => {}
        }
        let chunk = self.chunks().rev().find(|c| c.first_time() <= t)?;
        chunk
            .iter()
            .take_while(|(ts, _)| *ts <= t)
            .last()
            .filter(|(ts, _)| *ts >= self.from)
    }

    /// Heap bytes the packed samples take.
    pub fn sample_bytes(&self) -> usize {
        self.chunks().map(Chunk::bytes).sum()
    }

    /// Samples packed, counted from the chunks without decoding them.
    pub fn packed_samples(&self) -> usize {
        self.chunks().map(Chunk::count).sum()
    }
}

/// The series of one metric name: in label order, found by the content hash of their labels.
#[derive(Debug)]
struct Family {
    name: String,
    /// How much of each series' past is packed; 0 keeps only the newest sample.
    history: Millis,
    /// In label order.
    series: Vec<Series>,
    /// Content hash → position. A hash two label sets share (never seen, but possible) keeps
    /// the first; the other is found by a scan.
    index: FxHashMap<u64, usize>,
}

impl Family {
    fn new(name: &str, history: Millis) -> Family {
        Family {
            name: name.to_string(),
            history,
            series: Vec::new(),
            index: FxHashMap::default(),
        }
    }

    fn find(&self, hash: u64, is_it: impl Fn(&Series) -> bool) -> Option<usize> {
        match self.index.get(&hash) {
            Some(&i) if is_it(&self.series[i]) => Some(i),
            Some(_) => self.series.iter().position(is_it),
            None => None,
        }
    }

    /// Puts a new series at its place in label order. New series are rare (a pool appears, a
    /// target starts), so shifting the others is cheaper than sorting on every read.
    fn insert(&mut self, hash: u64, series: Series) -> usize {
        let at = self.series.partition_point(|s| s.labels < series.labels);
        self.series.insert(at, series);
        for i in self.index.values_mut() {
            if *i >= at {
                *i += 1;
            }
        }
        self.index.entry(hash).or_insert(at);
        at
    }

    /// Drops series without samples.
    fn retain_non_empty(&mut self) {
        let before = self.series.len();
        self.series.retain(|s| !s.is_empty());
        if self.series.len() != before {
            self.index.clear();
            for (i, s) in self.series.iter().enumerate() {
                self.index.entry(labels_hash(&s.labels)).or_insert(i);
            }
        }
    }
}

/// How much of a `name` series' past a store keeps packed: the rules' longest range over it,
/// within the retention; everything within it when no reads are given.
fn history(retention: Millis, reads: Option<&Reads>, name: &str) -> Millis {
    match reads {
        None => retention,
        Some(reads) => reads.range_of(name).unwrap_or(0).min(retention),
    }
}

/// The content hash of a full label set, as [`ExportedSample::series_hash`] computes it.
fn labels_hash(labels: &SeriesLabels) -> u64 {
    labels
        .iter()
        .fold(0u64, |h, (k, v)| h.wrapping_add(pair_hash(k, v)))
}

/// How far back the rules read each metric: the longest range a rule selects it over, 0 when
/// rules read only its newest sample.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reads {
    by_name: HashMap<String, Millis>,
    /// The longest range a selector without a metric name reads: it may match any metric.
    any: Option<Millis>,
}

impl Reads {
    /// Notes that a rule reads `name` (any metric when `None`) back `range`.
    pub fn add(&mut self, name: Option<String>, range: Millis) {
        let longest = match name {
            Some(name) => self.by_name.entry(name).or_insert(range),
            None => self.any.get_or_insert(range),
        };
        *longest = (*longest).max(range);
    }

    /// The metric names rules read, and whether some selector may read any metric.
    fn names(&self) -> (impl Iterator<Item = &str>, bool) {
        (self.by_name.keys().map(String::as_str), self.any.is_some())
    }

    /// How far back rules read `name`; `None` when no rule reads it.
    pub fn range_of(&self, name: &str) -> Option<Millis> {
        self.by_name.get(name).copied().max(self.any)
    }
}

/// The series the rules read, each kept for `retention` after its newest sample and with as
/// much of its past packed as the rules' longest range over it.
#[derive(Debug)]
pub struct SeriesStore {
    retention: Millis,
    /// `None` keeps every series' whole past within the retention (rule unit tests evaluate
    /// at any time in it).
    reads: Option<Reads>,
    /// By catalogue position, whether a scrape's samples of the family are kept: those some
    /// rule reads (all of them without `reads`).
    wanted: Vec<bool>,
    families: Vec<Family>,
    /// Name → position in `families`.
    by_name: BTreeMap<String, usize>,
    /// When the previous scrape was, to mark the series it had and this one lacks as stale.
    last_scrape: Option<Millis>,
}

impl SeriesStore {
    /// A store that keeps every series' whole past within `retention`, so that rules can be
    /// evaluated at any time in it.
    pub fn new(retention: Millis) -> SeriesStore {
        SeriesStore {
            retention,
            reads: None,
            wanted: vec![true; CATALOGUE.len()],
            families: Vec::new(),
            by_name: BTreeMap::new(),
            last_scrape: None,
        }
    }

    /// A store for rules evaluated at the newest scrape: of a series only rules read back
    /// `range`, the samples in that range are packed, and of one they read only at an instant,
    /// only the newest sample is kept.
    pub fn for_reads(retention: Millis, reads: Reads) -> SeriesStore {
        let mut store = SeriesStore::new(retention);
        store.set_reads(reads);
        store
    }

    /// Changes what the rules read (after a rule reload): families keep their series, with
    /// their history trimmed or grown from now on.
    pub fn set_reads(&mut self, reads: Reads) {
        for family in &mut self.families {
            family.history = history(self.retention, Some(&reads), &family.name);
        }
        let (names, any) = reads.names();
        self.wanted = vec![any; CATALOGUE.len()];
        for family in names.filter_map(family_of_series) {
            self.wanted[family.id()] = true;
        }
        self.reads = Some(reads);
    }

    /// Where the family `name` is in `families`, made if new.
    fn family_at(&mut self, name: &str) -> usize {
        if let Some(&at) = self.by_name.get(name) {
            return at;
        }
        let history = history(self.retention, self.reads.as_ref(), name);
        self.families.push(Family::new(name, history));
        self.by_name
            .insert(name.to_string(), self.families.len() - 1);
        self.families.len() - 1
    }

    /// Appends one sample (samples must come in time order per series; older ones are dropped).
    pub fn append(&mut self, labels: SeriesLabels, t: Millis, value: f64) {
        let name = labels.get(NAME_LABEL).cloned().unwrap_or_default();
        let at = self.family_at(&name);
        let family = &mut self.families[at];
        let hash = labels_hash(&labels);
        let at = match family.find(hash, |s| *s.labels == labels) {
            Some(i) => i,
            None => family.insert(hash, Series::new(labels)),
        };
        let keep = family.history > 0;
        family.series[at].push(t, value, keep);
    }

    /// Takes one scrape's worth of samples at `t`, those of families no rule reads left out:
    /// series missing from it since the last scrape get a staleness marker, and everything
    /// older than the retention is dropped. A series that exists costs a hash lookup and a
    /// pointer comparison; labels are built only for new ones.
    pub fn ingest_scrape<'a>(
        &mut self,
        t: Millis,
        samples: impl IntoIterator<Item = &'a ExportedSample>,
    ) {
        let mut name = String::new();
        // Samples come family by family: the positions of the current family's names (one a
        // suffix: `_bucket`, `_sum`, `_count` of a histogram), so a name is looked up once.
        let mut current: (Option<usize>, Vec<(&str, usize)>) = (None, Vec::new());
        // Whether a series was added: families grow one series at a time, and the room their
        // vectors doubled into is given back once the scrape is in.
        let mut grown = false;
        for sample in samples {
            let id = sample.family.id();
            if !self.wanted[id] {
                continue;
            }
            if current.0 != Some(id) {
                current = (Some(id), Vec::new());
            }
            sample.scalars(|scalar| {
                let known = current
                    .1
                    .iter()
                    .find(|(suffix, _)| *suffix == scalar.suffix);
                let at = match known {
                    Some(&(_, at)) => at,
                    None => {
                        name.clear();
                        name.push_str(sample.family.name);
                        name.push_str(scalar.suffix);
                        let at = self.family_at(&name);
                        current.1.push((scalar.suffix, at));
                        at
                    }
                };
                let family = &mut self.families[at];
                let hash = sample.series_hash(&scalar);
                let same = |s: &Series| match &s.origin {
                    Some(o) if o.fed(sample) => scalar
                        .le
                        .is_none_or(|le| s.labels.get("le").is_some_and(|x| x == le)),
                    _ => *s.labels == sample.full_labels(&scalar),
                };
                let at = match family.find(hash, same) {
                    Some(i) => i,
                    None => {
                        grown = true;
                        family.insert(hash, Series::new(sample.full_labels(&scalar)))
                    }
                };
                let keep = family.history > 0;
                let series = &mut family.series[at];
                if !series.origin.as_ref().is_some_and(|o| o.fed(sample)) {
                    series.origin = Some(Origin::of(sample));
                }
                series.push(t, scalar.value, keep);
                series.scraped_at = Some(t);
            });
        }
        if let Some(previous) = self.last_scrape {
            for family in &mut self.families {
                let keep = family.history > 0;
                for series in &mut family.series {
                    if series.scraped_at == Some(previous) {
                        series.push(t, stale_marker(), keep);
                    }
                }
            }
        }
        if grown {
            for family in &mut self.families {
                family.series.shrink_to_fit();
                family.index.shrink_to_fit();
            }
        }
        self.last_scrape = Some(t);
        self.prune(t);
    }

    /// Drops packed samples older than their family's history, and series whose newest sample
    /// is older than the retention.
    pub fn prune(&mut self, now: Millis) {
        let gone = now - self.retention;
        for family in &mut self.families {
            let oldest = now - family.history;
            for series in &mut family.series {
                series.drop_before(oldest, gone);
            }
            family.retain_non_empty();
        }
        let before = self.families.len();
        self.families.retain(|f| !f.series.is_empty());
        if self.families.len() != before {
            self.by_name = (self.families.iter().enumerate())
                .map(|(at, f)| (f.name.clone(), at))
                .collect();
        }
    }

    /// Series named `name` (all series when `None`), in label order.
    pub fn series<'a>(&'a self, name: Option<&str>) -> Box<dyn Iterator<Item = &'a Series> + 'a> {
        match name {
            Some(name) => Box::new(
                (self.by_name.get(name).into_iter()).flat_map(|&at| &self.families[at].series),
            ),
            None => Box::new((self.by_name.values()).flat_map(|&at| &self.families[at].series)),
        }
    }

    pub fn series_count(&self) -> usize {
        self.families.iter().map(|f| f.series.len()).sum()
    }

    pub fn sample_count(&self) -> usize {
        self.series(None).map(|s| s.samples().count()).sum()
    }

    /// Heap bytes the packed samples of every series take.
    pub fn sample_bytes(&self) -> usize {
        self.series(None).map(Series::sample_bytes).sum()
    }

    /// Samples packed in every series (a series' newest sample, kept unpacked, not counted).
    pub fn packed_samples(&self) -> usize {
        self.series(None).map(Series::packed_samples).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{Scalar, Value, family_named};

    fn sample(target: &str) -> ExportedSample {
        ExportedSample {
            family: family_named("poolwatch_target_up").unwrap(),
            labels: Arc::new(LabelSet::new(BTreeMap::from([(
                "target".to_string(),
                target.to_string(),
            )]))),
            extra: None,
            value: Value::Scalar(1.0),
        }
    }

    /// The labels of `sample(target)`'s series, built apart from it.
    fn full_labels(target: &str) -> SeriesLabels {
        sample(target).full_labels(&Scalar {
            suffix: "",
            le: None,
            value: 0.0,
        })
    }

    #[test]
    fn vanished_series_get_a_staleness_marker() {
        let mut store = SeriesStore::new(60_000);
        let (a, b) = (sample("a"), sample("b"));
        store.ingest_scrape(0, [&a, &b]);
        store.ingest_scrape(1000, [&a]);
        let b: Vec<&Series> = store
            .series(Some("poolwatch_target_up"))
            .filter(|s| s.labels["target"] == "b")
            .collect();
        assert!(is_stale(b[0].samples().nth(1).unwrap().1));
        assert_eq!(store.series_count(), 2);
    }

    #[test]
    fn series_come_in_label_order_whatever_the_arrival() {
        let mut store = SeriesStore::new(60_000);
        for (t, targets) in [(0, ["c", "a", "b"]), (1000, ["b", "d", "a"])] {
            let samples = targets.map(sample);
            store.ingest_scrape(t, &samples);
        }
        let order = |store: &SeriesStore| -> Vec<String> {
            store
                .series(None)
                .map(|s| s.labels["target"].clone())
                .collect()
        };
        assert_eq!(order(&store), ["a", "b", "c", "d"]);
        // Two minutes on: c (stale since 1 s) leaves the window; a and b keep their marker.
        store.ingest_scrape(120_000, &[sample("d"), sample("e")]);
        assert_eq!(order(&store), ["a", "b", "d", "e"]);
        store.append(full_labels("c"), 121_000, 3.0);
        assert_eq!(order(&store), ["a", "b", "c", "d", "e"]);
        // Found by hash after the shifts: each append lands on its own series.
        store.append(full_labels("e"), 122_000, 4.0);
        let counts: Vec<usize> = store.series(None).map(|s| s.samples().count()).collect();
        assert_eq!(counts, [1, 1, 1, 1, 2]);
    }

    #[test]
    fn a_rebuilt_label_set_finds_the_same_series() {
        let mut store = SeriesStore::new(60_000);
        store.ingest_scrape(0, [&sample("a")]);
        store.ingest_scrape(1000, [&sample("a")]);
        assert_eq!(store.series_count(), 1);
        assert_eq!(store.sample_count(), 2);
        // A test file's series with the same labels is that series too.
        store.append(full_labels("a"), 2000, 3.0);
        assert_eq!((store.series_count(), store.sample_count()), (1, 3));
    }

    #[test]
    fn samples_split_by_state_from_one_label_set_keep_their_own_series() {
        fn by_state(labels: &Arc<LabelSet>, values: [f64; 3]) -> Vec<ExportedSample> {
            ["used", "idle", "pending"]
                .into_iter()
                .zip(values)
                .map(|(state, v)| ExportedSample {
                    family: family_named("db_client_connection_count").unwrap(),
                    labels: labels.clone(),
                    extra: Some(("state", state)),
                    value: Value::Scalar(v),
                })
                .collect()
        }
        let mut store = SeriesStore::new(60_000);
        let pool = || Arc::new(LabelSet::new(BTreeMap::from([("pool".into(), "p".into())])));
        let shared = pool();
        store.ingest_scrape(0, &by_state(&shared, [1.0, 2.0, 3.0]));
        store.ingest_scrape(1000, &by_state(&shared, [4.0, 5.0, 6.0]));
        // A rebuilt label set, fed in another order: each state still finds its series.
        let mut rebuilt = by_state(&pool(), [7.0, 8.0, 9.0]);
        rebuilt.reverse();
        store.ingest_scrape(2000, &rebuilt);
        // The shortcut tells the states of one label set apart: a sample whose hash collides with
        // another series is filed by it.
        let used = store
            .series(Some("db_client_connection_count"))
            .find(|s| s.labels["state"] == "used")
            .unwrap();
        let origin = used.origin.as_ref().unwrap();
        assert!(origin.fed(&rebuilt[2]));
        assert!(!origin.fed(&rebuilt[1]));
        assert!(!origin.fed(&by_state(&shared, [0.0; 3])[0]));
        let values: Vec<(String, Vec<f64>)> = store
            .series(Some("db_client_connection_count"))
            .map(|s| {
                (
                    s.labels["state"].clone(),
                    s.samples().map(|(_, v)| v).collect(),
                )
            })
            .collect();
        assert_eq!(
            values,
            [
                ("idle".to_string(), vec![2.0, 5.0, 8.0]),
                ("pending".to_string(), vec![3.0, 6.0, 9.0]),
                ("used".to_string(), vec![1.0, 4.0, 7.0]),
            ]
        );
    }

    #[test]
    fn a_histogram_is_stored_as_prometheus_stores_it() {
        let mut store = SeriesStore::new(60_000);
        let histogram = ExportedSample {
            family: family_named("db_client_connection_wait_time_seconds").unwrap(),
            value: Value::Histogram(Arc::new(crate::model::Histogram {
                bounds: vec![0.5, 1.0],
                counts: vec![2, 1, 1],
                sum: 3.0,
                count: 4,
            })),
            ..sample("a")
        };
        store.ingest_scrape(0, [&histogram]);
        let buckets: BTreeMap<String, f64> = store
            .series(Some("db_client_connection_wait_time_seconds_bucket"))
            .map(|s| (s.labels["le"].clone(), s.at_or_before(0).unwrap().1))
            .collect();
        let want = [("+Inf", 4.0), ("0.5", 2.0), ("1", 3.0)];
        assert_eq!(
            buckets,
            want.map(|(k, v)| (k.to_string(), v)).into_iter().collect()
        );
        let count = store
            .series(Some("db_client_connection_wait_time_seconds_count"))
            .next()
            .unwrap();
        assert_eq!(count.at_or_before(0), Some((0, 4.0)));
        store.ingest_scrape(1000, [&histogram]);
        assert_eq!(
            store.series_count(),
            5,
            "the same series again, not new ones"
        );
    }

    #[test]
    fn samples_read_back_across_chunks_as_they_were_written() {
        let mut store = SeriesStore::new(1_000_000);
        let a = sample("a");
        // 300 scrapes a second apart: three chunks, the last one open.
        for i in 0..300 {
            store.ingest_scrape(i * 1000, [&a]);
        }
        let series = store.series(None).next().unwrap();
        assert_eq!(series.chunks().count(), 3);
        let all: Vec<Millis> = series.samples().map(|(t, _)| t).collect();
        assert_eq!(all, (0..300).map(|i| i * 1000).collect::<Vec<_>>());
        // Between two sample times, in a sealed chunk, and before the first sample.
        assert_eq!(series.at_or_before(130_500), Some((130_000, 1.0)));
        assert_eq!(series.at_or_before(299_000), Some((299_000, 1.0)));
        assert_eq!(series.at_or_before(-1), None);
        let range: Vec<Millis> = series.between(118_000, 121_000).map(|(t, _)| t).collect();
        assert_eq!(range, [118_000, 119_000, 120_000, 121_000]);
        // The retention hides what it passed, though its chunk stays until all of it passed.
        store.prune(1_000_000 + 119_500);
        let series = store.series(None).next().unwrap();
        assert_eq!(series.chunks().count(), 2);
        assert_eq!(series.samples().next(), Some((120_000, 1.0)));
        store.prune(1_000_000 + 125_000);
        let series = store.series(None).next().unwrap();
        assert_eq!(series.samples().next(), Some((125_000, 1.0)));
        assert_eq!(series.at_or_before(124_000), None);
        assert_eq!(store.sample_count(), 175);
    }

    #[test]
    fn extremes_from_whole_chunks_equal_the_fold_of_every_sample() {
        let mut store = SeriesStore::new(10_000_000);
        let labels = full_labels("a");
        // 500 samples: a sawtooth with NaNs, signed zeros and staleness markers among them.
        for i in 0..500i64 {
            let v = match i % 37 {
                5 => f64::NAN,
                6 => -0.0,
                7 => 0.0,
                8 => stale_marker(),
                _ => ((i * 7919) % 101) as f64 - 50.0,
            };
            store.append(labels.clone(), i * 1000, v);
        }
        let series = store.series(None).next().unwrap();
        for (start, end) in [
            (0, 499_000),
            (100_500, 370_000),
            (119_000, 121_000),
            (250_000, 250_000),
        ] {
            for which in [Extreme::Min, Extreme::Max] {
                let want = series
                    .between(start, end)
                    .filter(|(_, v)| !is_stale(*v))
                    .fold(None, |acc, (_, v)| which.fold(acc, v));
                let got = series.extreme_between(start, end, which);
                assert_eq!(
                    got.map(f64::to_bits),
                    want.map(f64::to_bits),
                    "{start}..{end} {which:?}"
                );
            }
        }
    }

    /// A range's ends, count and falls, bit for bit (a NaN is a value too).
    fn counter_bits(
        range: Option<CounterRange>,
    ) -> Option<(Millis, u64, Millis, u64, usize, Vec<u64>)> {
        range.map(|r| {
            let falls = r.falls.iter().map(|v| v.to_bits()).collect();
            (
                r.first.0,
                r.first.1.to_bits(),
                r.last.0,
                r.last.1.to_bits(),
                r.count,
                falls,
            )
        })
    }

    proptest::proptest! {
        /// Whole rising chunks stand for their samples: what `rate` reads of a range equals
        /// what it reads of every sample decoded, whatever the counter does (steps, resets,
        /// repeats, signed zeros, NaNs, staleness markers) and wherever the range falls.
        #[test]
        fn counter_ranges_from_whole_chunks_equal_those_of_every_sample(
            // One step in 400 breaks a chunk's rise, so most chunks rise and some do not.
            steps in proptest::collection::vec(0u16..2000, 1..700),
            start in 0i64..700_000,
            length in 0i64..700_000,
        ) {
            let mut store = SeriesStore::new(10_000_000);
            let labels = full_labels("a");
            let mut value = 0.0;
            for (i, step) in steps.iter().enumerate() {
                value = match step {
                    0 => 0.0,
                    1 => -0.0,
                    2 => f64::NAN,
                    3 => stale_marker(),
                    4 => value / 2.0,
                    5..=999 => value,
                    _ => if value.is_nan() { 1.0 } else { value + f64::from(*step) },
                };
                store.append(labels.clone(), i as Millis * 1000, value);
            }
            let series = store.series(None).next().unwrap();
            let end = start + length;
            let every = CounterRange::of(series.between(start, end).filter(|(_, v)| !is_stale(*v)));
            proptest::prop_assert_eq!(
                counter_bits(series.counter_between(start, end)),
                counter_bits(every)
            );
        }
    }

    #[test]
    fn a_steady_series_costs_under_a_byte_a_sample() {
        let mut store = SeriesStore::new(900_000);
        let a = sample("a");
        for i in 0..900 {
            store.ingest_scrape(i * 1000, [&a]);
        }
        let bytes = store.sample_bytes();
        assert!(bytes < 900, "{bytes} bytes for 900 samples");
    }

    #[test]
    fn only_the_range_rules_read_is_packed() {
        let up = "poolwatch_target_up";
        let mut reads = Reads::default();
        let mut store = SeriesStore::for_reads(60_000, reads.clone());
        let (a, b) = (sample("a"), sample("b"));
        // Read by no rule: not kept at all.
        store.ingest_scrape(0, [&a, &b]);
        assert_eq!(store.series_count(), 0);
        // Read at an instant only: the newest sample is kept, nothing is packed.
        reads.add(Some(up.into()), 0);
        store.set_reads(reads.clone());
        for t in 0..30 {
            store.ingest_scrape(t * 1000, [&a, &b]);
        }
        assert_eq!(store.sample_count(), 0);
        assert_eq!(store.packed_samples(), 0);
        assert_eq!(store.sample_bytes(), 0);
        let newest = |store: &SeriesStore, t| -> Vec<Option<(Millis, f64)>> {
            store.series(Some(up)).map(|s| s.at_or_before(t)).collect()
        };
        assert_eq!(newest(&store, 29_000), [Some((29_000, 1.0)); 2]);
        // Read over 10 s: from now on each series packs the samples of the last 10 s.
        reads.add(Some(up.into()), 10_000);
        store.set_reads(reads);
        for t in 30..60 {
            store.ingest_scrape(t * 1000, [&a, &b]);
        }
        let kept: Vec<Vec<Millis>> = store
            .series(Some(up))
            .map(|s| s.samples().map(|(t, _)| t).collect())
            .collect();
        let last_ten: Vec<Millis> = (49..60).map(|t| t * 1000).collect();
        assert_eq!(kept, [last_ten.clone(), last_ten]);
        // Packed: the 30 samples since, in one chunk each, which goes whole once it ends
        // before the range.
        assert_eq!(store.packed_samples(), 2 * 30);
        // b vanishes: its staleness marker is the newest sample until the retention passes it.
        store.ingest_scrape(60_000, [&a]);
        assert!(newest(&store, 60_000)[1].is_some_and(|(_, v)| is_stale(v)));
        store.ingest_scrape(120_000, [&a]);
        assert_eq!(store.series_count(), 2);
        store.ingest_scrape(120_001, [&a]);
        assert_eq!(store.series_count(), 1);
    }

    #[test]
    fn reads_keep_the_longest_range_and_any_name_covers_every_metric() {
        let mut reads = Reads::default();
        reads.add(Some("x".into()), 600_000);
        reads.add(Some("x".into()), 0);
        reads.add(Some("y".into()), 0);
        assert_eq!(reads.range_of("x"), Some(600_000));
        assert_eq!(reads.range_of("y"), Some(0));
        assert_eq!(reads.range_of("z"), None);
        reads.add(None, 60_000);
        assert_eq!(reads.range_of("y"), Some(60_000));
        assert_eq!(reads.range_of("z"), Some(60_000));
    }

    #[test]
    fn retention_drops_old_samples_and_empty_series() {
        let mut store = SeriesStore::new(10_000);
        let (a, b) = (sample("a"), sample("b"));
        store.ingest_scrape(0, [&a]);
        store.ingest_scrape(5_000, [&b]);
        store.ingest_scrape(20_000, [&b]);
        // a: its sample at 0 and its marker at 5 s are both older than 10 s.
        assert_eq!(store.series_count(), 1);
        assert_eq!(store.sample_count(), 1);
    }
}
