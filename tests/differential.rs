//! The evaluator against promtool, on cases of our own making: seeded random series (counter
//! resets, gaps, staleness markers, NaN and ±Inf, histogram buckets) and random expressions from
//! the whole subset the README documents. Each case is one group of a promtool-format test file
//! whose `exp_samples` are what our evaluator says; `promtool test rules` and `poolwatch rules
//! test` run the same file, and their reports must agree case by case. A disagreement prints
//! the seed and the case, shrunk to a minimal one.
//!
//! `POOLWATCH_DIFF_CASES` sets the number of cases (a few thousand by default),
//! `POOLWATCH_DIFF_SEED` the seed (by default a new one each run, printed), and
//! `POOLWATCH_DIFF_KEEP` a directory where the generated files are kept.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use poolwatch::rules::{gofmt, runner, testfile};
use poolwatch::series::SeriesLabels as Labels;

use crate::common;

/// Cases per CI run: a few thousand keep the test well under a minute on two cores.
const DEFAULT_CASES: usize = 3000;
/// Cases per promtool file: promtool starts once per batch, not once per case.
const BATCH: usize = 500;
/// Every file uses promtool's default evaluation interval.
const EVALUATION_INTERVAL: Duration = Duration::from_secs(60);

/// SplitMix64: small, seedable, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// The seed of case `index` of a run: any case can be replayed alone.
fn case_seed(seed: u64, index: usize) -> u64 {
    Rng(seed ^ (index as u64).wrapping_mul(0xd134_2543_de82_ef95)).next()
}

// ---------------------------------------------------------------------------------------------
// Series

/// Metric names the agent exports, by the labels their series carry.
const POOL_GAUGES: &[&str] = &[
    "db_client_connection_pending_requests",
    "poolwatch_pool_size",
    "poolwatch_pool_utilization_ratio",
    "db_client_connection_max",
    "poolwatch_pool_avg_wait_time_seconds",
];
const POOL_COUNTERS: &[&str] = &[
    "poolwatch_pool_transactions_total",
    "poolwatch_pool_connections_opened_total",
    "poolwatch_pool_connection_errors_total",
];
const STATE_GAUGE: &str = "db_client_connection_count";
const TARGET_GAUGES: &[&str] = &["poolwatch_postgres_max_connections", "poolwatch_target_up"];

const TARGETS: &[&str] = &["a", "b"];
const POOLS: &[&str] = &["p1", "p2", "p3"];
const STATES: &[&str] = &["used", "idle"];
/// The wait-time histogram as Prometheus stores it: a counter per bucket bound.
const HISTOGRAM: &str = "db_client_connection_wait_time_seconds_bucket";
/// Bucket bounds; `1` and `1.0` are one bound spelled twice, which Prometheus merges.
const BOUNDS: &[&str] = &["0.25", "0.5", "1", "1.0", "+Inf"];
const QUANTILES: &[&str] = &["0.5", "0.9", "0.99", "0.25", "0", "1", "-1", "2", "NaN"];

#[derive(Clone, Debug)]
struct InputSeries {
    name: String,
    labels: Labels,
    values: String,
}

impl InputSeries {
    fn notation(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={}", gofmt::quote(v)))
            .collect();
        format!("{}{{{}}}", self.name, labels.join(", "))
    }
}

/// Values that keep sums exact and averages interesting, and the odd ones Prometheus treats
/// specially.
fn gauge_value(rng: &mut Rng) -> String {
    match rng.below(20) {
        0 => "NaN".into(),
        1 => "Inf".into(),
        2 => "-Inf".into(),
        3..=5 => rng
            .pick(&["0.1", "0.3", "0.6", "-0.6", "2.5", "0.25", "1e3"])
            .to_string(),
        6 => "0".into(),
        7 => format!("-{}", rng.below(5)),
        _ => rng.below(50).to_string(),
    }
}

/// A values string of `steps` entries in promtool's notation.
fn values(rng: &mut Rng, steps: usize, counter: bool) -> String {
    let mut out = Vec::new();
    let mut level = rng.below(20) as i64;
    let mut left = steps;
    // Occasionally a flat run written as an expansion (`-0.6x4`) or a ramp (`3+2x4`).
    if !counter && rng.chance(15) {
        let n = 1 + rng.below(steps.max(2) - 1);
        out.push(format!("{}x{}", rng.pick(&["-0.6", "0.1", "7", "0"]), n));
        left = left.saturating_sub(n + 1);
    } else if counter && rng.chance(20) {
        let n = 1 + rng.below(steps.max(2) - 1);
        out.push(format!(
            "{level}+{}x{n}",
            rng.pick(&["1", "3", "0.5", "10"])
        ));
        left = left.saturating_sub(n + 1);
    }
    for _ in 0..left {
        let token = match rng.below(20) {
            0 | 1 => "_".to_string(),
            2 => "stale".to_string(),
            _ if counter => {
                if rng.chance(10) {
                    level = rng.below(3) as i64; // a reset
                } else {
                    level += rng.below(6) as i64;
                }
                level.to_string()
            }
            _ => gauge_value(rng),
        };
        out.push(token);
    }
    out.join(" ")
}

fn input_series(rng: &mut Rng, steps: usize) -> Vec<InputSeries> {
    let mut names: Vec<&str> = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let name = match rng.below(10) {
            0..=3 => rng.pick(POOL_GAUGES),
            4..=6 => rng.pick(POOL_COUNTERS),
            7 | 8 => STATE_GAUGE,
            _ => rng.pick(TARGET_GAUGES),
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    // A few pools per case, shared by every metric, so that operators find partners.
    let pools: Vec<(&str, &str)> = (0..2 + rng.below(3))
        .map(|_| (rng.pick(TARGETS), rng.pick(POOLS)))
        .collect();
    let mut out: Vec<InputSeries> = Vec::new();
    for name in names {
        for _ in 0..1 + rng.below(4) {
            let (target, pool) = rng.pick(&pools);
            let mut labels = BTreeMap::new();
            labels.insert("target".to_string(), target.to_string());
            if !TARGET_GAUGES.contains(&name) {
                labels.insert(
                    "db_client_connection_pool_name".to_string(),
                    pool.to_string(),
                );
            }
            if name == STATE_GAUGE {
                labels.insert(
                    "db_client_connection_state".to_string(),
                    rng.pick(STATES).to_string(),
                );
            }
            // promtool keeps one definition per series; a repeat would replace the first.
            if out.iter().any(|s| s.name == name && s.labels == labels) {
                continue;
            }
            let counter = POOL_COUNTERS.contains(&name);
            out.push(InputSeries {
                name: name.to_string(),
                labels,
                values: values(rng, steps, counter),
            });
        }
    }
    if rng.chance(30) {
        histogram_series(rng, steps, &pools, &mut out);
    }
    out
}

/// The bucket series of one or two pools. Counts are cumulative across bounds, as a histogram
/// exports them, except for what Prometheus has to repair: a bound left out (the `+Inf` one
/// too), a count below the bound before it, and gaps, staleness and resets.
fn histogram_series(
    rng: &mut Rng,
    steps: usize,
    pools: &[(&str, &str)],
    out: &mut Vec<InputSeries>,
) {
    let bounds: Vec<&str> = BOUNDS
        .iter()
        .copied()
        .filter(|&b| match b {
            "1.0" => rng.chance(10),
            "+Inf" => !rng.chance(10),
            _ => !rng.chance(15),
        })
        .collect();
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for _ in 0..1 + rng.below(2) {
        let (target, pool) = rng.pick(pools);
        if seen.contains(&(target, pool)) {
            continue;
        }
        seen.push((target, pool));
        let mut totals = vec![0u64; bounds.len()];
        let mut tokens: Vec<Vec<String>> = vec![Vec::new(); bounds.len()];
        for _ in 0..steps {
            if rng.chance(5) {
                totals.iter_mut().for_each(|t| *t = 0);
            }
            let mut below = 0;
            for (i, total) in totals.iter_mut().enumerate() {
                below += rng.below(4) as u64;
                *total += below;
                tokens[i].push(match rng.below(40) {
                    0 | 1 => "_".to_string(),
                    2 => "stale".to_string(),
                    3 => (*total / 2).to_string(),
                    _ => total.to_string(),
                });
            }
        }
        for (bound, tokens) in bounds.iter().zip(tokens) {
            let labels = BTreeMap::from([
                ("target".to_string(), target.to_string()),
                (
                    "db_client_connection_pool_name".to_string(),
                    pool.to_string(),
                ),
                ("le".to_string(), bound.to_string()),
            ]);
            out.push(InputSeries {
                name: HISTOGRAM.to_string(),
                labels,
                values: tokens.join(" "),
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Expressions

/// A scalar expression.
#[derive(Clone, Debug)]
enum Scalar {
    Number(&'static str),
    Binary(&'static str, Box<Scalar>, Box<Scalar>),
}

/// An instant-vector expression.
#[derive(Clone, Debug)]
enum Vector {
    Selector(String),
    Range(&'static str, String, &'static str),
    PredictLinear(String, &'static str, Scalar),
    Absent(Box<Vector>),
    Clamp(&'static str, Box<Vector>, Scalar),
    Simple(&'static str, Box<Vector>),
    Negate(Box<Vector>),
    /// Operator (with ` bool` where it applies), matching modifier, left, right.
    Binary(String, &'static str, Box<Vector>, Box<Vector>),
    /// Operator, the vector, the scalar, whether the scalar is on the left.
    WithScalar(String, Box<Vector>, Scalar, bool),
    Aggregate(&'static str, &'static str, Box<Vector>),
    Paren(Box<Vector>),
    HistogramQuantile(Scalar, Box<Vector>),
}

#[derive(Clone, Debug)]
enum Expr {
    Vector(Vector),
    Scalar(Scalar),
}

const NUMBERS: &[&str] = &[
    "0", "1", "2", "0.5", "-1", "10", "0.1", "3", "NaN", "Inf", "-Inf", "1e3", "-0.6",
];
/// Exponents whose Go `math.Pow` result the evaluator reproduces to the bit: integers and
/// ±0.5. A fractional exponent goes through `exp(log(x))`, which Go computes its own way.
const EXPONENTS: &[&str] = &["2", "3", "-1", "0.5", "-0.5", "0", "1", "-2", "5"];
const ARITHMETIC: &[&str] = &["+", "-", "*", "/", "%"];
const COMPARISONS: &[&str] = &["==", "!=", ">", "<", ">=", "<="];
const MATCHING: &[&str] = &[
    "",
    "",
    "",
    " on (target)",
    " on (target, db_client_connection_pool_name)",
    " on ()",
    " ignoring (db_client_connection_pool_name)",
    " ignoring (db_client_connection_state)",
];
const GROUPING: &[&str] = &[
    "",
    "",
    " by (target)",
    " by (db_client_connection_pool_name)",
    " without (db_client_connection_pool_name)",
    " by ()",
    " without (target, db_client_connection_state)",
    " by (__name__)",
];
const RANGES: &[&str] = &["30s", "1m", "90s", "2m", "5m", "10m"];

fn scalar(rng: &mut Rng, depth: usize) -> Scalar {
    if depth == 0 || rng.chance(70) {
        return Scalar::Number(rng.pick(NUMBERS));
    }
    let op = match rng.below(10) {
        0..=5 => rng.pick(ARITHMETIC),
        6 => "^",
        _ => match rng.pick(COMPARISONS) {
            // Scalars compare only with `bool`.
            "==" => "== bool",
            "!=" => "!= bool",
            ">" => "> bool",
            "<" => "< bool",
            ">=" => ">= bool",
            _ => "<= bool",
        },
    };
    let right = if op == "^" {
        Scalar::Number(rng.pick(EXPONENTS))
    } else {
        scalar(rng, depth - 1)
    };
    Scalar::Binary(op, Box::new(scalar(rng, depth - 1)), Box::new(right))
}

/// A selector over the case's series: by name, with matchers that match, miss, repeat or
/// contradict, or by a name regex across two metrics.
fn selector(rng: &mut Rng, series: &[InputSeries]) -> String {
    let names: Vec<&str> = {
        let mut n: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
        n.dedup();
        n
    };
    let name = if names.is_empty() || rng.chance(5) {
        rng.pick(POOL_GAUGES)
    } else {
        rng.pick(&names)
    };
    // Mostly matchers on labels the metric has; now and then one on a label it lacks.
    let has_pool = !TARGET_GAUGES.contains(&name);
    let has_state = name == STATE_GAUGE;
    let matcher = |rng: &mut Rng| -> String {
        let foreign = rng.chance(10);
        match rng.below(10) {
            0 => format!("target=\"{}\"", rng.pick(TARGETS)),
            1 => format!("target!=\"{}\"", rng.pick(TARGETS)),
            2 => "target=~\"a|b\"".to_string(),
            3 | 4 if has_pool || foreign => format!(
                "db_client_connection_pool_name=~\"{}\"",
                rng.pick(&["p1|p2", "p.*", "p3"])
            ),
            5 if has_pool || foreign => format!(
                "db_client_connection_pool_name!~\"{}\"",
                rng.pick(&["p1", "p2|p3"])
            ),
            6 if has_pool || foreign => {
                format!("db_client_connection_pool_name=\"{}\"", rng.pick(POOLS))
            }
            7 | 8 if has_state || foreign => {
                format!("db_client_connection_state=\"{}\"", rng.pick(STATES))
            }
            9 => rng
                .pick(&["db_client_connection_state=\"\"", "source=\"\""])
                .to_string(),
            _ => format!("target!=\"{}\"", rng.pick(&["c", ""])),
        }
    };
    if rng.chance(8) && names.len() >= 2 {
        // Two metrics at once: their series may differ by name alone.
        return format!("{{__name__=~\"{}|{}\"}}", names[0], names[1]);
    }
    let count = match rng.below(10) {
        0..=4 => 0,
        5..=7 => 1,
        _ => 2,
    };
    let matchers: Vec<String> = (0..count).map(|_| matcher(rng)).collect();
    if matchers.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", matchers.join(", "))
    }
}

fn vector(rng: &mut Rng, series: &[InputSeries], depth: usize) -> Vector {
    let leaf = depth == 0 || rng.chance(25);
    if leaf {
        return if rng.chance(60) {
            Vector::Selector(selector(rng, series))
        } else {
            let f = rng.pick(&[
                "rate",
                "increase",
                "delta",
                "deriv",
                "avg_over_time",
                "min_over_time",
                "max_over_time",
            ]);
            Vector::Range(f, selector(rng, series), rng.pick(RANGES))
        };
    }
    if series.iter().any(|s| s.name == HISTOGRAM) && rng.chance(25) {
        return histogram_quantile(rng);
    }
    let sub = |rng: &mut Rng| Box::new(vector(rng, series, depth - 1));
    // Matching on the name as well is rare, and only pairs a metric with itself.
    let matching = |rng: &mut Rng| {
        if rng.chance(3) {
            " on (__name__, target, db_client_connection_pool_name)"
        } else {
            rng.pick(MATCHING)
        }
    };
    match rng.below(22) {
        0 => Vector::PredictLinear(
            selector(rng, series),
            rng.pick(RANGES),
            Scalar::Number(rng.pick(&["0", "60", "300", "-60", "3600"])),
        ),
        1 | 2 => Vector::Absent(if rng.chance(70) {
            Box::new(Vector::Selector(selector(rng, series)))
        } else {
            sub(rng)
        }),
        3 => Vector::Clamp(
            rng.pick(&["clamp_min", "clamp_max"]),
            sub(rng),
            scalar(rng, 1),
        ),
        4 => Vector::Simple(rng.pick(&["ceil", "floor", "abs"]), sub(rng)),
        5 => Vector::Negate(sub(rng)),
        6..=10 => {
            let op = match rng.below(10) {
                0..=3 => rng.pick(ARITHMETIC).to_string(),
                4..=6 => rng.pick(COMPARISONS).to_string(),
                _ => format!("{} bool", rng.pick(COMPARISONS)),
            };
            Vector::Binary(op, matching(rng), sub(rng), sub(rng))
        }
        11..=13 => Vector::Binary(
            rng.pick(&["and", "or", "unless"]).to_string(),
            matching(rng),
            sub(rng),
            sub(rng),
        ),
        14..=17 => {
            let (op, s) = match rng.below(10) {
                0..=4 => (rng.pick(ARITHMETIC).to_string(), scalar(rng, 1)),
                5 => ("^".to_string(), Scalar::Number(rng.pick(EXPONENTS))),
                6..=7 => (rng.pick(COMPARISONS).to_string(), scalar(rng, 1)),
                _ => (format!("{} bool", rng.pick(COMPARISONS)), scalar(rng, 1)),
            };
            // A vector as exponent would be any number: keep `^` with the scalar on the right.
            let left = op != "^" && rng.chance(40);
            Vector::WithScalar(op, sub(rng), s, left)
        }
        18..=20 => Vector::Aggregate(
            rng.pick(&["sum", "min", "max", "avg", "count"]),
            rng.pick(GROUPING),
            sub(rng),
        ),
        _ => Vector::Paren(sub(rng)),
    }
}

/// `histogram_quantile` over the buckets as they are, their rate or increase, or a sum of rates
/// by `le` (or by something else, which leaves no `le` to read).
fn histogram_quantile(rng: &mut Rng) -> Vector {
    let q = if rng.chance(80) {
        Scalar::Number(rng.pick(QUANTILES))
    } else {
        scalar(rng, 1)
    };
    let buckets = match rng.below(4) {
        0 => HISTOGRAM.to_string(),
        1 => format!("{HISTOGRAM}{{target=\"{}\"}}", rng.pick(TARGETS)),
        2 => format!("{HISTOGRAM}{{le!=\"{}\"}}", rng.pick(BOUNDS)),
        _ => format!(
            "{HISTOGRAM}{{db_client_connection_pool_name=~\"{}\"}}",
            rng.pick(&["p1|p2", "p3"])
        ),
    };
    let inner = match rng.below(5) {
        0 => Vector::Selector(buckets),
        1 | 2 => Vector::Range(
            rng.pick(&["rate", "increase", "delta"]),
            buckets,
            rng.pick(RANGES),
        ),
        _ => Vector::Aggregate(
            rng.pick(&["sum", "sum", "max"]),
            rng.pick(&[
                " by (le)",
                " by (le, target)",
                " without (db_client_connection_pool_name)",
                " by (target)",
            ]),
            Box::new(Vector::Range("rate", buckets, rng.pick(RANGES))),
        ),
    };
    Vector::HistogramQuantile(q, Box::new(inner))
}

fn render_scalar(s: &Scalar) -> String {
    match s {
        Scalar::Number(n) => n.to_string(),
        Scalar::Binary(op, l, r) => format!("({} {op} {})", render_scalar(l), render_scalar(r)),
    }
}

/// Operands that are operators themselves get parentheses, so that both parsers see one tree.
fn operand(v: &Vector) -> String {
    match v {
        Vector::Binary(..) | Vector::WithScalar(..) | Vector::Negate(..) => {
            format!("({})", render(v))
        }
        _ => render(v),
    }
}

fn render(v: &Vector) -> String {
    match v {
        Vector::Selector(s) => s.clone(),
        Vector::Range(f, s, r) => format!("{f}({s}[{r}])"),
        Vector::PredictLinear(s, r, k) => format!("predict_linear({s}[{r}], {})", render_scalar(k)),
        Vector::Absent(inner) => format!("absent({})", render(inner)),
        Vector::Clamp(f, inner, k) => format!("{f}({}, {})", render(inner), render_scalar(k)),
        Vector::Simple(f, inner) => format!("{f}({})", render(inner)),
        Vector::Negate(inner) => format!("-{}", operand(inner)),
        Vector::Binary(op, matching, l, r) => {
            format!("{} {op}{matching} {}", operand(l), operand(r))
        }
        Vector::WithScalar(op, inner, s, true) => {
            format!("{} {op} {}", render_scalar(s), operand(inner))
        }
        Vector::WithScalar(op, inner, s, false) => {
            format!("{} {op} {}", operand(inner), render_scalar(s))
        }
        Vector::Aggregate(op, grouping, inner) => format!("{op}{grouping} ({})", render(inner)),
        Vector::Paren(inner) => format!("({})", render(inner)),
        Vector::HistogramQuantile(q, inner) => {
            format!(
                "histogram_quantile({}, {})",
                render_scalar(q),
                render(inner)
            )
        }
    }
}

fn render_expr(e: &Expr) -> String {
    match e {
        Expr::Vector(v) => render(v),
        Expr::Scalar(s) => render_scalar(s),
    }
}

/// Smaller expressions of the same kind, for shrinking a disagreement.
fn simpler(e: &Expr) -> Vec<Expr> {
    let v = match e {
        Expr::Vector(v) => v,
        Expr::Scalar(Scalar::Binary(_, l, r)) => {
            return vec![Expr::Scalar((**l).clone()), Expr::Scalar((**r).clone())];
        }
        Expr::Scalar(_) => return Vec::new(),
    };
    let children: Vec<Vector> = match v {
        Vector::Absent(i) | Vector::Clamp(_, i, _) | Vector::Simple(_, i) | Vector::Negate(i) => {
            vec![(**i).clone()]
        }
        Vector::Aggregate(_, _, i)
        | Vector::Paren(i)
        | Vector::WithScalar(_, i, _, _)
        | Vector::HistogramQuantile(_, i) => vec![(**i).clone()],
        Vector::Binary(_, _, l, r) => vec![(**l).clone(), (**r).clone()],
        Vector::Range(_, s, _) | Vector::PredictLinear(s, _, _) => {
            vec![Vector::Selector(s.clone())]
        }
        Vector::Selector(_) => Vec::new(),
    };
    children.into_iter().map(Expr::Vector).collect()
}

// ---------------------------------------------------------------------------------------------
// Cases

#[derive(Clone, Debug)]
struct Case {
    seed: u64,
    index: usize,
    interval: &'static str,
    series: Vec<InputSeries>,
    expr: Expr,
    eval_time: String,
}

fn generate(seed: u64, index: usize) -> Case {
    let mut rng = Rng(case_seed(seed, index));
    let steps = 3 + rng.below(14);
    // No interval at all now and then: promtool 2.42 then puts every value at 0 s.
    let (interval, step_secs) = rng.pick(&[
        ("1m", 60),
        ("1m", 60),
        ("1m", 60),
        ("30s", 30),
        ("15s", 15),
        ("", 0),
    ]);
    let series = input_series(&mut rng, steps);
    let expr = if rng.chance(8) {
        Expr::Scalar(scalar(&mut rng, 2))
    } else {
        Expr::Vector(vector(&mut rng, &series, 3))
    };
    // A multiple of 30 s, mostly within the samples, sometimes up to two minutes past the last
    // (lookback, staleness); times between evaluation steps see only what promtool loaded at
    // the step before.
    let mut last = (steps as u64 - 1) * step_secs;
    if step_secs == 0 || rng.chance(20) {
        last += 120;
    }
    let eval_time = format!("{}s", 30 * rng.below((last / 30) as usize + 1));
    Case {
        seed,
        index,
        interval,
        series,
        expr,
        eval_time,
    }
}

/// The tag that finds a case's report in a tool's output.
fn tag(case: &Case) -> String {
    format!("# c{}", case.index)
}

fn yaml_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A YAML float both promtool (yaml.v2) and poolwatch read back as the same `f64`.
fn yaml_float(v: f64) -> String {
    if v.is_nan() {
        ".nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { ".inf" } else { "-.inf" }.into()
    } else {
        format!("{v:e}")
    }
}

/// The case as one test group; `expected` fills `exp_samples`.
fn group_yaml(case: &Case, expected: &runner::Samples) -> String {
    let mut out = String::from("  - ");
    if !case.interval.is_empty() {
        let _ = write!(out, "interval: {}\n    ", case.interval);
    }
    out.push_str(if case.series.is_empty() {
        "input_series: []\n"
    } else {
        "input_series:\n"
    });
    for s in &case.series {
        let _ = writeln!(
            out,
            "      - series: {}\n        values: {}",
            yaml_quote(&s.notation()),
            yaml_quote(&s.values)
        );
    }
    let _ = writeln!(
        out,
        "    promql_expr_test:\n      - expr: {}\n        eval_time: {}\n        exp_samples:{}",
        yaml_quote(&format!("{} {}", render_expr(&case.expr), tag(case))),
        case.eval_time,
        if expected.is_empty() { " []" } else { "" }
    );
    for (labels, value) in expected {
        let _ = writeln!(
            out,
            "          - labels: {}\n            value: {}",
            yaml_quote(&gofmt::label_set(labels)),
            yaml_float(*value)
        );
    }
    out
}

/// Our evaluator's answer for a case, read through the same test-file code that
/// `poolwatch rules test` uses.
fn ours(case: &Case, rank: Option<&dyn Fn(&Labels) -> u64>) -> Result<runner::Samples, String> {
    let file = testfile::parse_test_file(&format!("tests:\n{}", group_yaml(case, &Vec::new())))
        .map_err(|e| format!("our test-file reader rejects the case: {e}"))?;
    let group = &file.tests[0];
    runner::expr_result(group, &group.promql_expr_test[0], EVALUATION_INTERVAL, rank)
}

// ---------------------------------------------------------------------------------------------
// Running both tools

/// Each tool's report on one case: `None` when it passed.
type Reports = BTreeMap<usize, String>;

fn run_tool(cmd: &mut Command, file: &Path) -> (Option<i32>, String) {
    let out = cmd.arg(file).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {cmd:?}: {e}. promtool comes with the Debian package `prometheus`, \
             which scripts/services.sh installs."
        )
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// A tool's failure reports in order: a report starts at a line `    expr: "…"` and goes on
/// over the lines indented deeper (`exp:`, `got:`).
fn report_list(output: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in output.lines() {
        if line.starts_with("    expr: \"") {
            out.extend(current.take());
            current = Some(line.trim_start().to_string());
        } else if line.starts_with("        ") {
            if let Some(text) = &mut current {
                text.push('\n');
                text.push_str(line.trim_start());
            }
        } else {
            out.extend(current.take());
        }
    }
    out.extend(current);
    out
}

/// The reports by the case tag in their expression.
fn reports(output: &str) -> Reports {
    report_list(output)
        .into_iter()
        .map(|report| {
            let index = report
                .find("# c")
                .and_then(|at| {
                    let digits: String = report[at + 3..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    digits.parse().ok()
                })
                .unwrap_or_else(|| panic!("a report without a case tag: {report}"));
            (index, report)
        })
        .collect()
}

/// A report without what hangs on promtool's storage order: which match group a many-to-many
/// error names, when several have two series, and which two series.
fn normalized(report: &str) -> String {
    let (Some(a), Some(b)) = (
        report.find("found duplicate series for the match group "),
        report.find(";many-to-many matching not allowed"),
    ) else {
        return report.to_string();
    };
    format!("{}many-to-many{}", &report[..a], &report[b..])
}

/// The `got:` samples of a failure report, as promtool writes them.
fn got_samples(report: &str) -> Option<runner::Samples> {
    let list = report.lines().find_map(|l| l.strip_prefix("got: "))?;
    if list == "nil" {
        return Some(Vec::new());
    }
    let mut out = Vec::new();
    let mut rest = list;
    while !rest.is_empty() {
        let (labels, after) = parse_labels(rest)?;
        let after = after.strip_prefix(' ')?;
        let end = after.find(", {").unwrap_or(after.len());
        let value = match &after[..end] {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().ok()?,
        };
        out.push((labels, value));
        rest = after[end..].strip_prefix(", ").unwrap_or("");
    }
    Some(out)
}

/// `{a="b", c="d"}` at the start of `text`, and what follows it.
fn parse_labels(text: &str) -> Option<(Labels, &str)> {
    let mut rest = text.strip_prefix('{')?;
    let mut labels = BTreeMap::new();
    while !rest.starts_with('}') {
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => value.push(chars.next()?.1),
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.to_string(), value);
        rest = after[end + 1..]
            .strip_prefix(", ")
            .unwrap_or(&after[end + 1..]);
    }
    Some((labels, &rest[1..]))
}

fn same_samples(a: &runner::Samples, b: &runner::Samples) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.0 == y.0 && (x.1 == y.1 || (x.1.is_nan() && y.1.is_nan())))
}

/// Whether some order in which promtool's storage may have created the case's series makes
/// our evaluator give `theirs`. promtool creates series as it loads them, step by step of the
/// evaluation interval, in Go map order within a step; sums and averages of three or more
/// values round by that order.
fn agrees_in_some_order(case: &Case, theirs: &runner::Samples) -> bool {
    let step_ms = EVALUATION_INTERVAL.as_millis() as u64;
    let interval_ms = match case.interval {
        "" => 0,
        text => testfile::parse_prometheus_duration(text).map_or(60_000, |d| d.as_millis() as u64),
    };
    // The evaluation step at which each series gets its first sample.
    let mut keyed: Vec<(u64, Labels)> = Vec::new();
    for s in &case.series {
        let Ok(values) = testfile::expand_values(&s.values) else {
            return false;
        };
        let Some(first) = values.iter().position(Option::is_some) else {
            continue;
        };
        let mut labels = s.labels.clone();
        labels.insert("__name__".into(), s.name.clone());
        keyed.push(((first as u64 * interval_ms).div_ceil(step_ms), labels));
    }
    if keyed.len() < 2 {
        return false;
    }
    keyed.sort_by_key(|(step, _)| *step);
    // Series first loaded at one step may be created in any order among themselves.
    let mut tied: Vec<Vec<Labels>> = Vec::new();
    for (i, (step, labels)) in keyed.iter().enumerate() {
        if i == 0 || keyed[i - 1].0 != *step {
            tied.push(Vec::new());
        }
        tied.last_mut().unwrap().push(labels.clone());
    }
    let agrees = |order: &[Labels]| {
        let position: BTreeMap<&Labels, u64> = order
            .iter()
            .enumerate()
            .map(|(i, l)| (l, i as u64))
            .collect();
        let rank = |l: &Labels| position.get(l).copied().unwrap_or(u64::MAX);
        ours(case, Some(&rank)).is_ok_and(|s| same_samples(&s, theirs))
    };
    let orders: u64 = tied
        .iter()
        .map(|g| (1..=g.len() as u64).product::<u64>())
        .product();
    if orders <= 5040 {
        return every_order(&tied, &mut Vec::new(), &agrees);
    }
    let mut rng = Rng(case.seed ^ 0x5eed);
    (0..3000).any(|_| {
        let mut order = Vec::new();
        for group in &tied {
            let mut group = group.clone();
            for i in (1..group.len()).rev() {
                group.swap(i, rng.below(i + 1));
            }
            order.extend(group);
        }
        agrees(&order)
    })
}

type Agrees<'a> = dyn Fn(&[Labels]) -> bool + 'a;

/// Tries every order that keeps the groups in sequence and permutes within each.
fn every_order(groups: &[Vec<Labels>], prefix: &mut Vec<Labels>, agrees: &Agrees) -> bool {
    let Some((first, rest)) = groups.split_first() else {
        return agrees(prefix);
    };
    permutations(first).into_iter().any(|p| {
        let len = prefix.len();
        prefix.extend(p);
        let found = every_order(rest, prefix, agrees);
        prefix.truncate(len);
        found
    })
}

fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first.clone());
            out.push(p);
        }
    }
    out
}

#[derive(Debug)]
enum Verdict {
    Agree,
    /// promtool's answer is ours under another series order (float rounding).
    AgreeInOtherOrder,
    Disagree {
        ours: Option<String>,
        theirs: Option<String>,
    },
}

struct Batch {
    verdicts: Vec<(Case, Verdict)>,
    /// What our evaluator answered: samples, nothing, an error.
    answers: [usize; 3],
}

/// Runs both tools on one file holding every case.
fn run_batch(cases: Vec<Case>, dir: &Path) -> Batch {
    let name = format!("cases-{}.test.yaml", cases.first().map_or(0, |c| c.index));
    run_batch_in(cases, &dir.join(name))
}

fn run_batch_in(cases: Vec<Case>, file: &Path) -> Batch {
    let mut text = String::from("# Generated by tests/differential.rs.\ntests:\n");
    let mut answers = [0; 3];
    for case in &cases {
        let answer = ours(case, None);
        answers[match &answer {
            Ok(s) if !s.is_empty() => 0,
            Ok(_) => 1,
            Err(_) => 2,
        }] += 1;
        text.push_str(&group_yaml(case, &answer.unwrap_or_default()));
    }
    std::fs::write(file, &text).unwrap();
    // promtool opens a TSDB per group in TMPDIR (and removes it): on tmpfs that costs no
    // disk syncs.
    let mut promtool = Command::new("promtool");
    if Path::new(TMPFS).is_dir() {
        promtool.env("TMPDIR", TMPFS);
    }
    let (their_code, their_output) = run_tool(promtool.args(["test", "rules"]), file);
    let (our_code, our_output) =
        run_tool(Command::new(common::binary()).args(["rules", "test"]), file);
    assert!(
        matches!(their_code, Some(0 | 1)) && matches!(our_code, Some(0 | 1)),
        "a tool could not run the file {}:\npromtool:\n{their_output}\npoolwatch:\n{our_output}",
        file.display()
    );
    let (theirs, mine) = (reports(&their_output), reports(&our_output));
    let verdicts = cases
        .into_iter()
        .map(|case| {
            let (t, o) = (theirs.get(&case.index), mine.get(&case.index));
            let verdict = if t.map(|r| normalized(r)) == o.map(|r| normalized(r)) {
                Verdict::Agree
            } else if let Some(their_got) = t.and_then(|r| got_samples(r))
                && agrees_in_some_order(&case, &their_got)
            {
                Verdict::AgreeInOtherOrder
            } else {
                Verdict::Disagree {
                    ours: o.cloned(),
                    theirs: t.cloned(),
                }
            };
            (case, verdict)
        })
        .collect();
    Batch { verdicts, answers }
}

/// Greedy shrinking: drop series and replace the expression by a part of it while the tools
/// still disagree. Each round runs both tools once, on every candidate at once.
fn shrink(case: &Case, dir: &Path) -> Case {
    let mut best = case.clone();
    for _ in 0..30 {
        let mut candidates: Vec<Case> = Vec::new();
        for i in 0..best.series.len() {
            let mut c = best.clone();
            c.series.remove(i);
            candidates.push(c);
        }
        for e in simpler(&best.expr) {
            let mut c = best.clone();
            c.expr = e;
            candidates.push(c);
        }
        for (i, c) in candidates.iter_mut().enumerate() {
            c.index = i;
        }
        if candidates.is_empty() {
            break;
        }
        let batch = run_batch(candidates, dir);
        match batch
            .verdicts
            .into_iter()
            .find(|(_, v)| matches!(v, Verdict::Disagree { .. }))
        {
            Some((c, _)) => best = c,
            None => break,
        }
    }
    best.index = case.index;
    best
}

const TMPFS: &str = "/dev/shm";

/// Where the batch files go: POOLWATCH_DIFF_KEEP to keep them, else a temporary directory
/// (on tmpfs where there is one).
fn batch_dir() -> tempfile::TempDir {
    if let Some(keep) = std::env::var_os("POOLWATCH_DIFF_KEEP") {
        std::fs::create_dir_all(&keep).unwrap();
        return tempfile::Builder::new()
            .prefix("run")
            .disable_cleanup(true)
            .tempdir_in(keep)
            .unwrap();
    }
    tempfile::Builder::new()
        .prefix("poolwatch-diff")
        .tempdir_in(if Path::new(TMPFS).is_dir() {
            TMPFS
        } else {
            "/tmp"
        })
        .unwrap()
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}"))
    })
}

#[test]
fn the_evaluator_agrees_with_promtool_on_generated_cases() {
    let cases = env_number("POOLWATCH_DIFF_CASES").map_or(DEFAULT_CASES, |n| n as usize);
    let seed = env_number("POOLWATCH_DIFF_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    println!("differential: seed {seed} ({cases} cases); replay with POOLWATCH_DIFF_SEED={seed}");
    let dir = batch_dir();
    let started = Instant::now();
    let (mut agreed, mut reordered, mut disagreements) = (0, 0, Vec::new());
    let mut answers = [0; 3];
    let starts: Vec<usize> = (0..cases).step_by(BATCH).collect();
    // Two batches at a time: promtool spends half its time waiting on its own storage.
    for pair in starts.chunks(2) {
        let batches: Vec<Batch> = std::thread::scope(|scope| {
            let running: Vec<_> = pair
                .iter()
                .map(|&start| {
                    let dir = dir.path();
                    scope.spawn(move || {
                        let batch = (start..cases.min(start + BATCH))
                            .map(|i| generate(seed, i))
                            .collect();
                        run_batch(batch, dir)
                    })
                })
                .collect();
            running.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for batch in &batches {
            (0..3).for_each(|i| answers[i] += batch.answers[i]);
        }
        for (case, verdict) in batches.into_iter().flat_map(|b| b.verdicts) {
            match verdict {
                Verdict::Agree => agreed += 1,
                Verdict::AgreeInOtherOrder => reordered += 1,
                Verdict::Disagree { .. } => disagreements.push(case),
            }
        }
    }
    println!(
        "differential: {cases} cases in {:.1?}: {agreed} agree, {reordered} agree once promtool's \
         series order is taken, {} disagree (answers: {} with samples, {} empty, {} errors)",
        started.elapsed(),
        disagreements.len(),
        answers[0],
        answers[1],
        answers[2],
    );
    let mut shown = String::new();
    for case in &disagreements {
        let minimal = shrink(case, dir.path());
        let batch = run_batch(vec![minimal.clone()], dir.path());
        let expected = ours(&minimal, None);
        let (ours_report, their_report) = match &batch.verdicts[0].1 {
            Verdict::Disagree { ours, theirs } => (ours.clone(), theirs.clone()),
            _ => (None, None),
        };
        let _ = writeln!(
            shown,
            "\nseed {seed} case {} (minimal form; ours: {expected:?}):\ntests:\n{}\
             poolwatch rules test: {}\npromtool test rules: {}",
            case.index,
            group_yaml(&minimal, &expected.clone().unwrap_or_default()),
            ours_report.as_deref().unwrap_or("passes"),
            their_report.as_deref().unwrap_or("passes"),
        );
    }
    assert!(
        disagreements.is_empty(),
        "{} of {cases} cases disagree (seed {seed}):{shown}",
        disagreements.len()
    );
}

/// The regressions Prometheus answers with an error, or whose expectation promtool rejects:
/// both tools fail every case, with the same report.
#[test]
fn failing_regressions_fail_alike_in_both_tools() {
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/tests/promql-regressions.failing.yaml");
    let cases = std::fs::read_to_string(&file)
        .unwrap()
        .matches("- expr:")
        .count();
    let (their_code, their_output) =
        run_tool(Command::new("promtool").args(["test", "rules"]), &file);
    let (our_code, our_output) = run_tool(
        Command::new(common::binary()).args(["rules", "test"]),
        &file,
    );
    assert_eq!(their_code, Some(1), "{their_output}");
    assert_eq!(our_code, Some(1), "{our_output}");
    let theirs: Vec<String> = report_list(&their_output)
        .iter()
        .map(|r| normalized(r))
        .collect();
    let mine: Vec<String> = report_list(&our_output)
        .iter()
        .map(|r| normalized(r))
        .collect();
    assert_eq!(theirs.len(), cases, "promtool:\n{their_output}");
    for (t, o) in theirs.iter().zip(&mine) {
        assert_eq!(o, t, "poolwatch, then promtool");
    }
    assert_eq!(mine.len(), cases, "poolwatch:\n{our_output}");
}
