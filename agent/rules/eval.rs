//! The PromQL subset rules are written in, evaluated over the agent's own series window with
//! Prometheus 2.42 semantics (5-minute lookback, staleness, extrapolated `rate`, inclusive
//! ranges) so that `poolwatch rules test` and `promtool test rules` give one verdict.
//!
//! Parsing is promql-parser's; [`check_supported`] rejects at load time what this evaluator
//! does not implement, naming the construct.

use std::collections::{BTreeMap, HashMap, HashSet};

use promql_parser::label::{MatchOp, Matchers};
use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, VectorMatchCardinality,
    VectorSelector,
};

use crate::series::{Millis, NAME_LABEL, SeriesLabels, SeriesStore, is_stale};

/// How far back an instant selector looks for a sample (Prometheus' default lookback delta).
pub const LOOKBACK: Millis = 5 * 60 * 1000;

/// Functions of the subset: name and whether it takes a range vector.
const FUNCTIONS: &[(&str, bool)] = &[
    ("rate", true),
    ("increase", true),
    ("delta", true),
    ("deriv", true),
    ("avg_over_time", true),
    ("min_over_time", true),
    ("max_over_time", true),
    ("predict_linear", true),
    ("absent", false),
    ("clamp_min", false),
    ("clamp_max", false),
    ("ceil", false),
    ("floor", false),
    ("abs", false),
    ("histogram_quantile", false),
];

const AGGREGATIONS: &[&str] = &["sum", "min", "max", "avg", "count"];
const BINARY: &[&str] = &[
    "+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", "and", "or", "unless",
];

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: SeriesLabels,
    pub value: f64,
}

type Points = Vec<(Millis, f64)>;

#[derive(Clone, Debug)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<Sample>),
    Matrix(Vec<(SeriesLabels, Points)>),
}

/// Parses an expression and checks it stays within the subset.
pub fn parse(text: &str) -> Result<Expr, String> {
    // The parser is not ours: a panic in it on some odd input must not take the agent down
    // (a rule file is reloaded while the agent runs).
    let parsed = std::panic::catch_unwind(|| promql_parser::parser::parse(text))
        .map_err(|_| "the PromQL parser failed on this expression".to_string())?;
    let expr = parsed?;
    check_supported(&expr)?;
    Ok(expr)
}

/// Rejects every construct outside the subset, naming it.
pub fn check_supported(expr: &Expr) -> Result<(), String> {
    match expr {
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            if !AGGREGATIONS.contains(&op.as_str()) {
                return Err(format!("aggregation `{op}` is not supported"));
            }
            if a.param.is_some() {
                return Err(format!("`{op}` with a parameter is not supported"));
            }
            check_supported(&a.expr)
        }
        Expr::Unary(u) => check_supported(&u.expr),
        Expr::Binary(b) => {
            let op = b.op.to_string();
            if !BINARY.contains(&op.as_str()) {
                return Err(format!("operator `{op}` is not supported"));
            }
            if let Some(m) = &b.modifier {
                if matches!(
                    m.card,
                    VectorMatchCardinality::ManyToOne(_) | VectorMatchCardinality::OneToMany(_)
                ) {
                    return Err("group_left/group_right is not supported".into());
                }
                if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                    return Err("fill values are not supported".into());
                }
            }
            check_supported(&b.lhs)?;
            check_supported(&b.rhs)
        }
        Expr::Paren(p) => check_supported(&p.expr),
        Expr::Subquery(_) => Err("subqueries are not supported".into()),
        Expr::NumberLiteral(_) => Ok(()),
        Expr::StringLiteral(_) => Err("string literals are not supported".into()),
        Expr::VectorSelector(vs) => check_selector(vs),
        Expr::MatrixSelector(ms) => check_selector(&ms.vs),
        Expr::Call(call) => {
            let name = call.func.name;
            if !FUNCTIONS.iter().any(|(f, _)| *f == name) {
                return Err(format!("function `{name}` is not supported"));
            }
            call.args.args.iter().try_for_each(|a| check_supported(a))
        }
        Expr::Extension(_) => Err("extension expressions are not supported".into()),
    }
}

fn check_selector(vs: &VectorSelector) -> Result<(), String> {
    if vs.offset.is_some() {
        return Err("the offset modifier is not supported".into());
    }
    if vs.at.is_some() {
        return Err("the @ modifier is not supported".into());
    }
    if !vs.matchers.or_matchers.is_empty() {
        return Err("`or` inside a selector is not supported".into());
    }
    Ok(())
}

/// Every metric name the expression selects, to check against what the agent exports.
pub fn metric_names(expr: &Expr) -> Vec<String> {
    let mut names = Vec::new();
    collect_names(expr, &mut names);
    names
}

fn collect_names(expr: &Expr, out: &mut Vec<String>) {
    let selector_name = |vs: &VectorSelector| {
        vs.name.clone().or_else(|| {
            vs.matchers
                .matchers
                .iter()
                .find(|m| m.name == NAME_LABEL && matches!(m.op, MatchOp::Equal))
                .map(|m| m.value.clone())
        })
    };
    match expr {
        Expr::Aggregate(a) => collect_names(&a.expr, out),
        Expr::Unary(u) => collect_names(&u.expr, out),
        Expr::Binary(b) => {
            collect_names(&b.lhs, out);
            collect_names(&b.rhs, out);
        }
        Expr::Paren(p) => collect_names(&p.expr, out),
        Expr::Subquery(s) => collect_names(&s.expr, out),
        Expr::VectorSelector(vs) => out.extend(selector_name(vs)),
        Expr::MatrixSelector(ms) => out.extend(selector_name(&ms.vs)),
        Expr::Call(c) => c.args.args.iter().for_each(|a| collect_names(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Evaluates `expr` at time `t`.
pub fn eval(expr: &Expr, store: &SeriesStore, t: Millis) -> Result<Value, String> {
    Evaluator { store, t }.eval(expr)
}

/// Evaluates a rule expression to an instant vector (a scalar becomes one label-less sample,
/// as in Prometheus' rule manager).
pub fn eval_vector(expr: &Expr, store: &SeriesStore, t: Millis) -> Result<Vec<Sample>, String> {
    match eval(expr, store, t)? {
        Value::Vector(v) => Ok(v),
        Value::Scalar(v) => Ok(vec![Sample {
            labels: SeriesLabels::new(),
            value: v,
        }]),
        Value::Matrix(_) => Err("a range vector cannot be a rule's result".into()),
    }
}

struct Evaluator<'a> {
    store: &'a SeriesStore,
    t: Millis,
}

fn drop_name(mut labels: SeriesLabels) -> SeriesLabels {
    labels.remove(NAME_LABEL);
    labels
}

fn matches(matchers: &Matchers, name: Option<&str>, labels: &SeriesLabels) -> bool {
    name.is_none_or(|n| labels.get(NAME_LABEL).map(String::as_str) == Some(n))
        && matchers
            .matchers
            .iter()
            .all(|m| m.is_match(labels.get(&m.name).map_or("", String::as_str)))
}

impl Evaluator<'_> {
    fn eval(&self, expr: &Expr) -> Result<Value, String> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(samples) => Ok(Value::Vector(
                    samples
                        .into_iter()
                        .map(|s| Sample {
                            labels: drop_name(s.labels),
                            value: -s.value,
                        })
                        .collect(),
                )),
                Value::Matrix(_) => Err("unary minus on a range vector".into()),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.instant(vs))),
            Expr::MatrixSelector(ms) => Ok(Value::Matrix(self.range(ms))),
            Expr::Call(call) => self.call(call),
            Expr::Aggregate(a) => self.aggregate(a),
            Expr::Binary(b) => self.binary(b),
            other => Err(format!("cannot evaluate `{other}`")),
        }
    }

    fn vector(&self, expr: &Expr) -> Result<Vec<Sample>, String> {
        match self.eval(expr)? {
            Value::Vector(v) => Ok(v),
            _ => Err(format!("`{expr}` is not an instant vector")),
        }
    }

    fn scalar(&self, expr: &Expr) -> Result<f64, String> {
        match self.eval(expr)? {
            Value::Scalar(v) => Ok(v),
            _ => Err(format!("`{expr}` is not a scalar")),
        }
    }

    fn instant(&self, vs: &VectorSelector) -> Vec<Sample> {
        let oldest = self.t - LOOKBACK;
        self.store
            .series(vs.name.as_deref())
            .filter(|s| matches(&vs.matchers, vs.name.as_deref(), &s.labels))
            .filter_map(|s| {
                let (ts, v) = s.samples.iter().rev().find(|(ts, _)| *ts <= self.t)?;
                (*ts >= oldest && !is_stale(*v)).then(|| Sample {
                    labels: s.labels.clone(),
                    value: *v,
                })
            })
            .collect()
    }

    fn range(&self, ms: &MatrixSelector) -> Vec<(SeriesLabels, Points)> {
        let start = self.t - ms.range.as_millis() as Millis;
        self.store
            .series(ms.vs.name.as_deref())
            .filter(|s| matches(&ms.vs.matchers, ms.vs.name.as_deref(), &s.labels))
            .filter_map(|s| {
                let points: Points = s
                    .samples
                    .iter()
                    .filter(|(ts, v)| *ts >= start && *ts <= self.t && !is_stale(*v))
                    .copied()
                    .collect();
                (!points.is_empty()).then(|| (s.labels.clone(), points))
            })
            .collect()
    }

    fn call(&self, call: &Call) -> Result<Value, String> {
        let name = call.func.name;
        let arg = |i: usize| {
            call.args
                .args
                .get(i)
                .ok_or_else(|| format!("`{name}` needs argument {}", i + 1))
        };
        let takes_range = FUNCTIONS.iter().any(|(f, range)| *f == name && *range);
        if takes_range {
            let Expr::MatrixSelector(ms) = arg(0)?.as_ref() else {
                return Err(format!("`{name}` needs a range selector"));
            };
            let range_ms = ms.range.as_millis() as Millis;
            let param = match name {
                "predict_linear" => Some(self.scalar(arg(1)?)?),
                _ => None,
            };
            let out = self
                .range(ms)
                .into_iter()
                .filter_map(|(labels, points)| {
                    let value = self.range_function(name, &points, range_ms, param)?;
                    Some(Sample {
                        labels: drop_name(labels),
                        value,
                    })
                })
                .collect();
            return Ok(Value::Vector(out));
        }
        match name {
            "absent" => {
                let found = self.vector(arg(0)?)?;
                if !found.is_empty() {
                    return Ok(Value::Vector(Vec::new()));
                }
                Ok(Value::Vector(vec![Sample {
                    labels: absent_labels(arg(0)?),
                    value: 1.0,
                }]))
            }
            "clamp_min" | "clamp_max" => {
                let bound = self.scalar(arg(1)?)?;
                let samples = self.vector(arg(0)?)?;
                Ok(Value::Vector(map_values(samples, |v| {
                    if name == "clamp_min" {
                        v.max(bound)
                    } else {
                        v.min(bound)
                    }
                })))
            }
            "ceil" => Ok(Value::Vector(map_values(self.vector(arg(0)?)?, f64::ceil))),
            "floor" => Ok(Value::Vector(map_values(self.vector(arg(0)?)?, f64::floor))),
            "abs" => Ok(Value::Vector(map_values(self.vector(arg(0)?)?, f64::abs))),
            "histogram_quantile" => {
                histogram::histogram_quantile(self.scalar(arg(0)?)?, self.vector(arg(1)?)?)
                    .map(Value::Vector)
            }
            other => Err(format!("function `{other}` is not supported")),
        }
    }

    fn range_function(
        &self,
        name: &str,
        points: &[(Millis, f64)],
        range_ms: Millis,
        param: Option<f64>,
    ) -> Option<f64> {
        let (start, end) = (self.t - range_ms, self.t);
        match name {
            "rate" => extrapolated_rate(points, start, end, true, true),
            "increase" => extrapolated_rate(points, start, end, true, false),
            "delta" => extrapolated_rate(points, start, end, false, false),
            "deriv" => (points.len() >= 2).then(|| linear_regression(points, points[0].0).0),
            "predict_linear" => (points.len() >= 2).then(|| {
                let (slope, intercept) = linear_regression(points, self.t);
                intercept + slope * param.unwrap_or(0.0)
            }),
            "avg_over_time" => {
                // Prometheus' incremental mean (it avoids overflow; the same rounding matters
                // for tests compared with promtool).
                let mut mean = 0.0;
                for (i, (_, v)) in points.iter().enumerate() {
                    let n = (i + 1) as f64;
                    mean += v / n - mean / n;
                }
                Some(mean)
            }
            "min_over_time" => points
                .iter()
                .map(|p| p.1)
                .reduce(|a, b| if b < a || a.is_nan() { b } else { a }),
            "max_over_time" => points
                .iter()
                .map(|p| p.1)
                .reduce(|a, b| if b > a || a.is_nan() { b } else { a }),
            _ => None,
        }
    }

    fn aggregate(&self, a: &AggregateExpr) -> Result<Value, String> {
        let op = a.op.to_string();
        let samples = self.vector(&a.expr)?;
        let mut groups: BTreeMap<SeriesLabels, (f64, usize)> = BTreeMap::new();
        for s in samples {
            let key = match &a.modifier {
                Some(LabelModifier::Include(by)) => s
                    .labels
                    .iter()
                    .filter(|(k, _)| by.labels.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                Some(LabelModifier::Exclude(without)) => s
                    .labels
                    .iter()
                    .filter(|(k, _)| k.as_str() != NAME_LABEL && !without.labels.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                None => SeriesLabels::new(),
            };
            let v = s.value;
            match groups.get_mut(&key) {
                None => {
                    let first = if op == "count" { 1.0 } else { v };
                    groups.insert(key, (first, 1));
                }
                Some((acc, n)) => {
                    *n += 1;
                    match op.as_str() {
                        "sum" => *acc += v,
                        "count" => *acc += 1.0,
                        "min" if v < *acc || acc.is_nan() => *acc = v,
                        "max" if v > *acc || acc.is_nan() => *acc = v,
                        // Prometheus' incremental mean, for the same rounding.
                        "avg" => *acc += v / *n as f64 - *acc / *n as f64,
                        _ => {}
                    }
                }
            }
        }
        Ok(Value::Vector(
            groups
                .into_iter()
                .map(|(labels, (value, _))| Sample { labels, value })
                .collect(),
        ))
    }

    fn binary(&self, b: &BinaryExpr) -> Result<Value, String> {
        let op = b.op.to_string();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let comparison = is_comparison(&op);
        let (lhs, rhs) = (self.eval(&b.lhs)?, self.eval(&b.rhs)?);
        match (lhs, rhs) {
            (Value::Scalar(l), Value::Scalar(r)) => {
                let (value, keep) = elem_binop(&op, l, r);
                Ok(Value::Scalar(if comparison {
                    f64::from(u8::from(keep))
                } else {
                    value
                }))
            }
            (Value::Vector(v), Value::Scalar(s)) => {
                Ok(Value::Vector(vector_scalar(&op, v, s, false, return_bool)))
            }
            (Value::Scalar(s), Value::Vector(v)) => {
                Ok(Value::Vector(vector_scalar(&op, v, s, true, return_bool)))
            }
            (Value::Vector(l), Value::Vector(r)) => {
                let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
                match op.as_str() {
                    "and" | "or" | "unless" => Ok(Value::Vector(set_op(&op, l, r, matching))),
                    _ => vector_vector(&op, l, r, matching, return_bool).map(Value::Vector),
                }
            }
            _ => Err(format!("operator `{op}` cannot take a range vector")),
        }
    }
}

fn map_values(samples: Vec<Sample>, f: impl Fn(f64) -> f64) -> Vec<Sample> {
    samples
        .into_iter()
        .map(|s| Sample {
            labels: drop_name(s.labels),
            value: f(s.value),
        })
        .collect()
}

/// `absent(sel{a="x"})` answers with the labels its equality matchers name.
fn absent_labels(arg: &Expr) -> SeriesLabels {
    let Expr::VectorSelector(vs) = arg else {
        return SeriesLabels::new();
    };
    let mut labels = SeriesLabels::new();
    let mut twice = HashSet::new();
    for m in &vs.matchers.matchers {
        if m.name == NAME_LABEL || !matches!(m.op, MatchOp::Equal) {
            continue;
        }
        if labels.insert(m.name.clone(), m.value.clone()).is_some() {
            twice.insert(m.name.clone());
        }
    }
    labels.retain(|k, _| !twice.contains(k));
    labels
}

fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

/// (value, keep) as Prometheus' vectorElemBinop: comparisons keep the left value when true.
fn elem_binop(op: &str, l: f64, r: f64) -> (f64, bool) {
    match op {
        "+" => (l + r, true),
        "-" => (l - r, true),
        "*" => (l * r, true),
        "/" => (l / r, true),
        "%" => (l % r, true),
        "^" => (l.powf(r), true),
        "==" => (l, l == r),
        "!=" => (l, l != r),
        ">" => (l, l > r),
        "<" => (l, l < r),
        ">=" => (l, l >= r),
        "<=" => (l, l <= r),
        _ => (f64::NAN, false),
    }
}

fn vector_scalar(
    op: &str,
    v: Vec<Sample>,
    scalar: f64,
    scalar_left: bool,
    return_bool: bool,
) -> Vec<Sample> {
    let comparison = is_comparison(op);
    v.into_iter()
        .filter_map(|s| {
            let (l, r) = if scalar_left {
                (scalar, s.value)
            } else {
                (s.value, scalar)
            };
            let (mut value, mut keep) = elem_binop(op, l, r);
            // A comparison always answers with the vector's value, whichever side it is on.
            if comparison && scalar_left {
                value = r;
            }
            if return_bool {
                value = f64::from(u8::from(keep));
                keep = true;
            }
            keep.then(|| Sample {
                labels: if !comparison || return_bool {
                    drop_name(s.labels)
                } else {
                    s.labels
                },
                value,
            })
        })
        .collect()
}

/// The labels two series are matched on.
fn signature(labels: &SeriesLabels, matching: Option<&LabelModifier>) -> Vec<(String, String)> {
    labels
        .iter()
        .filter(|(k, _)| match matching {
            Some(LabelModifier::Include(on)) => on.labels.contains(k),
            Some(LabelModifier::Exclude(ignoring)) => {
                k.as_str() != NAME_LABEL && !ignoring.labels.contains(k)
            }
            None => k.as_str() != NAME_LABEL,
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn set_op(
    op: &str,
    l: Vec<Sample>,
    r: Vec<Sample>,
    matching: Option<&LabelModifier>,
) -> Vec<Sample> {
    let right: HashSet<_> = r.iter().map(|s| signature(&s.labels, matching)).collect();
    match op {
        "and" => l
            .into_iter()
            .filter(|s| right.contains(&signature(&s.labels, matching)))
            .collect(),
        "unless" => l
            .into_iter()
            .filter(|s| !right.contains(&signature(&s.labels, matching)))
            .collect(),
        _ => {
            let left: HashSet<_> = l.iter().map(|s| signature(&s.labels, matching)).collect();
            let mut out = l;
            out.extend(
                r.into_iter()
                    .filter(|s| !left.contains(&signature(&s.labels, matching))),
            );
            out
        }
    }
}

fn vector_vector(
    op: &str,
    l: Vec<Sample>,
    r: Vec<Sample>,
    matching: Option<&LabelModifier>,
    return_bool: bool,
) -> Result<Vec<Sample>, String> {
    let mut right: HashMap<Vec<(String, String)>, Sample> = HashMap::new();
    for s in r {
        let sig = signature(&s.labels, matching);
        if right.insert(sig.clone(), s).is_some() {
            return Err(format!(
                "found duplicate series for the match group {sig:?} on the right hand-side of the \
                 operation: many-to-many matching not allowed"
            ));
        }
    }
    let mut matched = HashSet::new();
    let mut out = Vec::new();
    for s in l {
        let sig = signature(&s.labels, matching);
        let Some(other) = right.get(&sig) else {
            continue;
        };
        if !matched.insert(sig.clone()) {
            return Err(format!(
                "multiple matches for labels {sig:?}: many-to-one matching must be explicit"
            ));
        }
        let (mut value, mut keep) = elem_binop(op, s.value, other.value);
        if return_bool {
            value = f64::from(u8::from(keep));
            keep = true;
        }
        if !keep {
            continue;
        }
        let mut labels = s.labels;
        if !is_comparison(op) || return_bool {
            labels.remove(NAME_LABEL);
        }
        match matching {
            Some(LabelModifier::Include(on)) => labels.retain(|k, _| on.labels.contains(k)),
            Some(LabelModifier::Exclude(ignoring)) => {
                labels.retain(|k, _| !ignoring.labels.contains(k))
            }
            None => {}
        }
        out.push(Sample { labels, value });
    }
    Ok(out)
}

/// Prometheus' extrapolatedRate (2.42): the increase between the first and last sample in the
/// range, corrected for counter resets and extrapolated towards the range's edges.
fn extrapolated_rate(
    points: &[(Millis, f64)],
    start: Millis,
    end: Millis,
    counter: bool,
    rate: bool,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (first_t, first_v) = points[0];
    let (last_t, last_v) = points[points.len() - 1];
    let mut result = last_v - first_v;
    if counter {
        let mut previous = first_v;
        for &(_, v) in &points[1..] {
            if v < previous {
                result += previous;
            }
            previous = v;
        }
    }
    let mut to_start = (first_t - start) as f64 / 1000.0;
    let to_end = (end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let average_step = sampled / (points.len() - 1) as f64;
    if counter && result > 0.0 && first_v >= 0.0 {
        // A counter cannot have been below zero: do not extrapolate past where it was zero.
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average_step * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average_step / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        average_step / 2.0
    };
    result *= interval / sampled;
    if rate {
        result /= (end - start) as f64 / 1000.0;
    }
    Some(result)
}

/// Least-squares slope and intercept, x in seconds relative to `intercept_time`.
fn linear_regression(points: &[(Millis, f64)], intercept_time: Millis) -> (f64, f64) {
    let (mut n, mut sum_x, mut sum_y, mut sum_xy, mut sum_x2) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(t, v) in points {
        let x = (t - intercept_time) as f64 / 1000.0;
        n += 1.0;
        sum_y += v;
        sum_x += x;
        sum_xy += x * v;
        sum_x2 += x * x;
    }
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

mod histogram;
#[cfg(test)]
mod tests;
