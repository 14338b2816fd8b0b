//! The PromQL subset rules are written in, evaluated over the agent's own series window with
//! Prometheus 2.42 semantics (5-minute lookback, staleness, extrapolated `rate`, inclusive
//! ranges) so that `poolwatch rules test` and `promtool test rules` give one verdict.
//!
//! Parsing is promql-parser's; [`check_supported`] rejects at load time what this evaluator
//! does not implement, naming the construct.
//!
//! Where Prometheus' answer hangs on the order of its input (a float sum's rounding, which
//! duplicate an error names), series are taken in label order; no result depends on hash order.
//! Errors are Prometheus' own, in its words ([`EvalError`]).

use std::collections::HashSet;
use std::sync::Arc;

use promql_parser::label::{MatchOp, Matchers};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, VectorMatchCardinality,
    VectorSelector,
};
use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::SmallVec;

use super::gofmt;
use crate::series::{
    CounterRange, Extreme, Millis, NAME_LABEL, Series, SeriesLabels, SeriesStore, is_stale,
};

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

/// One element of an instant vector. Its labels are shared with the series it came from until
/// an operation changes them: a selector and a filter copy none.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Arc<SeriesLabels>,
    pub value: f64,
}

type Points = Vec<(Millis, f64)>;

/// Why an expression has no value, worded as Prometheus 2.42 words it, so that a rule test
/// fails the same way under both tools.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// Two series of the right-hand side of a one-to-one operation share the labels it
    /// matches on (Prometheus checks the right side whole, once the left side has a series).
    #[error(
        "found duplicate series for the match group {group} on the right hand-side of the \
         operation: [{series}, {other}];many-to-many matching not allowed: matching labels must \
         be unique on one side"
    )]
    ManyToMany {
        group: String,
        series: String,
        other: String,
    },
    /// Two series of the left-hand side matched the same right-hand series and both made it
    /// into the result.
    #[error(
        "multiple matches for labels: many-to-one matching must be explicit \
         (group_left/group_right)"
    )]
    ManyToOne,
    /// Dropping the metric name left two samples with one label set.
    #[error("vector cannot contain metrics with the same labelset")]
    DuplicateLabelset,
    /// An operand of the wrong type; the parser rejects these, so only an expression built by
    /// hand gets here.
    #[error("{0}")]
    Invalid(String),
}

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
    reads(expr)
        .into_iter()
        .filter_map(|(name, _)| name)
        .collect()
}

/// What the expression reads: each selector's metric name (`None` when it names none and may
/// match any) and how far back it reads, 0 when it reads only the newest sample.
pub fn reads(expr: &Expr) -> Vec<(Option<String>, Millis)> {
    let mut reads = Vec::new();
    collect_reads(expr, &mut reads);
    reads
}

fn collect_reads(expr: &Expr, out: &mut Vec<(Option<String>, Millis)>) {
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
        Expr::Aggregate(a) => collect_reads(&a.expr, out),
        Expr::Unary(u) => collect_reads(&u.expr, out),
        Expr::Binary(b) => {
            collect_reads(&b.lhs, out);
            collect_reads(&b.rhs, out);
        }
        Expr::Paren(p) => collect_reads(&p.expr, out),
        Expr::Subquery(s) => collect_reads(&s.expr, out),
        Expr::VectorSelector(vs) => out.push((selector_name(vs), 0)),
        Expr::MatrixSelector(ms) => {
            out.push((selector_name(&ms.vs), ms.range.as_millis() as Millis));
        }
        Expr::Call(c) => c.args.args.iter().for_each(|a| collect_reads(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Evaluates `expr` at time `t`.
pub fn eval(expr: &Expr, store: &SeriesStore, t: Millis) -> Result<Value, EvalError> {
    Evaluator {
        store,
        t,
        rank: None,
    }
    .eval(expr)
}

/// Evaluates a rule expression to an instant vector (a scalar becomes one label-less sample,
/// as in Prometheus' rule manager).
pub fn eval_vector(expr: &Expr, store: &SeriesStore, t: Millis) -> Result<Vec<Sample>, EvalError> {
    to_vector(eval(expr, store, t)?)
}

/// [`eval_vector`] with the series of every selector taken in the order of `rank` (lowest
/// first) instead of label order.
///
/// Prometheus takes series in the order its storage created them. A rule cannot see that order,
/// except in the last bits of a sum or an average of three or more values; the differential
/// test uses this to tell such a case from a real disagreement.
pub fn eval_vector_ranked(
    expr: &Expr,
    store: &SeriesStore,
    t: Millis,
    rank: &dyn Fn(&SeriesLabels) -> u64,
) -> Result<Vec<Sample>, EvalError> {
    let evaluator = Evaluator {
        store,
        t,
        rank: Some(rank),
    };
    to_vector(evaluator.eval(expr)?)
}

fn to_vector(value: Value) -> Result<Vec<Sample>, EvalError> {
    match value {
        Value::Vector(v) => Ok(v),
        Value::Scalar(v) => Ok(vec![Sample {
            labels: Arc::default(),
            value: v,
        }]),
        Value::Matrix(_) => Err(EvalError::Invalid(
            "a range vector cannot be a rule's result".into(),
        )),
    }
}

struct Evaluator<'a> {
    store: &'a SeriesStore,
    t: Millis,
    rank: Option<&'a dyn Fn(&SeriesLabels) -> u64>,
}

fn matches(matchers: &Matchers, name: Option<&str>, labels: &SeriesLabels) -> bool {
    name.is_none_or(|n| labels.get(NAME_LABEL).map(String::as_str) == Some(n))
        && matchers
            .matchers
            .iter()
            .all(|m| m.is_match(labels.get(&m.name).map_or("", String::as_str)))
}

/// Prometheus unwraps parentheses around function arguments before it looks at them, so
/// `rate((x[5m]))` works and `absent((x{a="b"}))` still answers with `a`.
fn unwrap_parens(mut expr: &Expr) -> &Expr {
    while let Expr::Paren(p) = expr {
        expr = &p.expr;
    }
    expr
}

impl<'a> Evaluator<'a> {
    fn eval(&self, expr: &Expr) -> Result<Value, EvalError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(samples) => {
                    let negated = samples
                        .into_iter()
                        .map(|s| Sample {
                            value: -s.value,
                            ..s
                        })
                        .collect();
                    Ok(Value::Vector(without_names(negated)?))
                }
                Value::Matrix(_) => Err(EvalError::Invalid("unary minus on a range vector".into())),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.instant(vs))),
            Expr::MatrixSelector(ms) => Ok(Value::Matrix(self.range(ms))),
            Expr::Call(call) => self.call(call),
            Expr::Aggregate(a) => self.aggregate(a),
            Expr::Binary(b) => self.binary(b),
            other => Err(EvalError::Invalid(format!("cannot evaluate `{other}`"))),
        }
    }

    fn vector(&self, expr: &Expr) -> Result<Vec<Sample>, EvalError> {
        match self.eval(expr)? {
            Value::Vector(v) => Ok(v),
            _ => Err(EvalError::Invalid(format!(
                "`{expr}` is not an instant vector"
            ))),
        }
    }

    fn scalar(&self, expr: &Expr) -> Result<f64, EvalError> {
        match self.eval(expr)? {
            Value::Scalar(v) => Ok(v),
            _ => Err(EvalError::Invalid(format!("`{expr}` is not a scalar"))),
        }
    }

    fn in_order<T>(&self, mut items: Vec<T>, labels: impl Fn(&T) -> &SeriesLabels) -> Vec<T> {
        if let Some(rank) = self.rank {
            items.sort_by_key(|item| rank(labels(item)));
        }
        items
    }

    fn instant(&self, vs: &VectorSelector) -> Vec<Sample> {
        let found = self
            .selected(vs)
            .map(|(s, value)| Sample {
                labels: s.labels.clone(),
                value,
            })
            .collect();
        self.in_order(found, |s| &s.labels)
    }

    /// The series `vs` names and matches, in store order.
    fn series_of<'v>(&self, vs: &'v VectorSelector) -> impl Iterator<Item = &'a Series> + 'v
    where
        'a: 'v,
    {
        (self.store.series(vs.name.as_deref()))
            .filter(|s| matches(&vs.matchers, vs.name.as_deref(), &s.labels))
    }

    /// The series `vs` selects, with their value at the evaluation time.
    fn selected<'v>(&self, vs: &'v VectorSelector) -> impl Iterator<Item = (&'a Series, f64)> + 'v
    where
        'a: 'v,
    {
        let (t, oldest) = (self.t, self.t - LOOKBACK);
        self.series_of(vs).filter_map(move |s| {
            let (ts, v) = s.at_or_before(t)?;
            (ts >= oldest && !is_stale(v)).then_some((s, v))
        })
    }

    /// What `vs` selects, its samples without their metric name, as an operand of arithmetic
    /// or of a `bool` comparison. A selector's series give the labels without it
    /// that they keep (see [`Series::labels_without_name`]): no evaluation copies them.
    fn selected_without_names(&self, vs: &VectorSelector) -> Result<Vec<Sample>, EvalError> {
        let found = self.in_order(self.selected(vs).collect(), |(s, _)| &s.labels);
        self.function_results(found)
    }

    fn range(&self, ms: &MatrixSelector) -> Vec<(SeriesLabels, Points)> {
        let mut found = Vec::new();
        self.each_range(ms, |series, points| {
            found.push((SeriesLabels::clone(&series.labels), points.to_vec()));
        });
        self.in_order(found, |(labels, _)| labels)
    }

    /// `min_over_time` / `max_over_time`: whole chunks answer from their own extremes.
    fn extreme_over_time(&self, ms: &MatrixSelector, which: Extreme) -> Vec<(&'a Series, f64)> {
        let start = self.t - ms.range.as_millis() as Millis;
        self.series_of(&ms.vs)
            .filter_map(|s| Some((s, s.extreme_between(start, self.t, which)?)))
            .collect()
    }

    /// A range function's results, one per series: in the evaluator's order, and named as
    /// functions name them, by the series' labels without the metric name (which each series
    /// keeps, rather than every evaluation copying its labels to drop it).
    fn function_results(&self, found: Vec<(&Series, f64)>) -> Result<Vec<Sample>, EvalError> {
        let found = self.in_order(found, |(s, _)| &s.labels);
        let several_names = found
            .windows(2)
            .any(|w| w[0].0.labels.get(NAME_LABEL) != w[1].0.labels.get(NAME_LABEL));
        let out: Vec<Sample> = found
            .into_iter()
            .map(|(s, value)| Sample {
                labels: s.labels_without_name(),
                value,
            })
            .collect();
        if several_names {
            ensure_unique(&out)?;
        }
        Ok(out)
    }

    /// `f` of what each selected series has in the range for `rate`, `increase` and `delta`
    /// (see [`Series::counter_between`]), with the range's start and end.
    fn counter_ranges(
        &self,
        ms: &MatrixSelector,
        f: impl Fn(&CounterRange, Millis, Millis) -> Option<f64>,
    ) -> Vec<(&'a Series, f64)> {
        let start = self.t - ms.range.as_millis() as Millis;
        self.series_of(&ms.vs)
            .filter_map(|s| Some((s, f(&s.counter_between(start, self.t)?, start, self.t)?)))
            .collect()
    }

    /// Calls `f` with each selected series and its points in the range, in store order,
    /// skipping series without any. The points go through one buffer: a range function over
    /// hundreds of series allocates once.
    fn each_range(&self, ms: &MatrixSelector, mut f: impl FnMut(&'a Series, &[(Millis, f64)])) {
        let start = self.t - ms.range.as_millis() as Millis;
        let mut points: Points = Vec::new();
        for s in self.series_of(&ms.vs) {
            points.clear();
            points.extend(s.between(start, self.t).filter(|(_, v)| !is_stale(*v)));
            if !points.is_empty() {
                f(s, &points);
            }
        }
    }

    fn call(&self, call: &Call) -> Result<Value, EvalError> {
        let name = call.func.name;
        let arg = |i: usize| {
            call.args
                .args
                .get(i)
                .map(|a| unwrap_parens(a))
                .ok_or_else(|| EvalError::Invalid(format!("`{name}` needs argument {}", i + 1)))
        };
        let takes_range = FUNCTIONS.iter().any(|(f, range)| *f == name && *range);
        if takes_range {
            let Expr::MatrixSelector(ms) = arg(0)? else {
                return Err(EvalError::Invalid(format!(
                    "`{name}` needs a range selector"
                )));
            };
            // Prometheus evaluates the other arguments first.
            let param = match name {
                "predict_linear" => Some(self.scalar(arg(1)?)?),
                _ => None,
            };
            if let Some(which) = match name {
                "min_over_time" => Some(Extreme::Min),
                "max_over_time" => Some(Extreme::Max),
                _ => None,
            } {
                let found = self.extreme_over_time(ms, which);
                return Ok(Value::Vector(self.function_results(found)?));
            }
            if let Some((counter, rate)) = match name {
                "rate" => Some((true, true)),
                "increase" => Some((true, false)),
                "delta" => Some((false, false)),
                _ => None,
            } {
                let found = self.counter_ranges(ms, |range, start, end| {
                    extrapolated_rate(range, start, end, counter, rate)
                });
                return Ok(Value::Vector(self.function_results(found)?));
            }
            let mut found = Vec::new();
            self.each_range(ms, |series, points| {
                if let Some(value) = self.range_function(name, points, param) {
                    found.push((series, value));
                }
            });
            return Ok(Value::Vector(self.function_results(found)?));
        }
        match name {
            "absent" => {
                let found = self.vector(arg(0)?)?;
                if !found.is_empty() {
                    return Ok(Value::Vector(Vec::new()));
                }
                Ok(Value::Vector(vec![Sample {
                    labels: Arc::new(absent_labels(arg(0)?)),
                    value: 1.0,
                }]))
            }
            "clamp_min" | "clamp_max" => {
                let samples = self.vector(arg(0)?)?;
                let bound = self.scalar(arg(1)?)?;
                let clamp = |v| {
                    if name == "clamp_min" {
                        go_max(bound, v)
                    } else {
                        go_min(bound, v)
                    }
                };
                Ok(Value::Vector(map_values(samples, clamp)?))
            }
            "ceil" => Ok(Value::Vector(map_values(self.vector(arg(0)?)?, f64::ceil)?)),
            "floor" => Ok(Value::Vector(map_values(
                self.vector(arg(0)?)?,
                f64::floor,
            )?)),
            "abs" => Ok(Value::Vector(map_values(self.vector(arg(0)?)?, f64::abs)?)),
            "histogram_quantile" => {
                histogram::histogram_quantile(self.scalar(arg(0)?)?, self.vector(arg(1)?)?)
                    .map(Value::Vector)
            }
            other => Err(EvalError::Invalid(format!(
                "function `{other}` is not supported"
            ))),
        }
    }

    fn range_function(
        &self,
        name: &str,
        points: &[(Millis, f64)],
        param: Option<f64>,
    ) -> Option<f64> {
        match name {
            // Centred on the first sample, as Prometheus does against rounding.
            "deriv" => (points.len() >= 2).then(|| linear_regression(points, points[0].0).0),
            "predict_linear" => (points.len() >= 2).then(|| {
                let (slope, intercept) = linear_regression(points, self.t);
                slope * param.unwrap_or(0.0) + intercept
            }),
            "avg_over_time" => Some(mean_over_time(points)),
            _ => None,
        }
    }

    /// Prometheus' aggregation: groups in the order their first series comes, each folded in
    /// input order (a float sum's rounding depends on it).
    fn aggregate(&self, a: &AggregateExpr) -> Result<Value, EvalError> {
        struct Group {
            labels: SeriesLabels,
            value: f64,
            count: usize,
        }
        let op = a.op.to_string();
        let samples = self.vector(&a.expr)?;
        // Groups are found by their labels borrowed from the samples; only a new group's are
        // copied.
        let mut index: FxHashMap<Signature, usize> = FxHashMap::default();
        let mut groups: Vec<Group> = Vec::new();
        for s in &samples {
            let key: Signature = s
                .labels
                .iter()
                .filter(|(k, _)| match &a.modifier {
                    Some(LabelModifier::Include(by)) => by.labels.contains(k),
                    Some(LabelModifier::Exclude(without)) => {
                        k.as_str() != NAME_LABEL && !without.labels.contains(k)
                    }
                    None => false,
                })
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let v = s.value;
            let Some(&i) = index.get(&key) else {
                let labels = key
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                index.insert(key, groups.len());
                groups.push(Group {
                    labels,
                    value: v,
                    count: 1,
                });
                continue;
            };
            let group = &mut groups[i];
            group.count += 1;
            match op.as_str() {
                "sum" => group.value += v,
                "min" if group.value > v || group.value.is_nan() => group.value = v,
                "max" if group.value < v || group.value.is_nan() => group.value = v,
                "avg" => group.value = mean_step(group.value, v, group.count),
                _ => {}
            }
        }
        Ok(Value::Vector(
            groups
                .into_iter()
                .map(|g| Sample {
                    labels: Arc::new(g.labels),
                    value: if op == "count" {
                        g.count as f64
                    } else {
                        g.value
                    },
                })
                .collect(),
        ))
    }

    fn binary(&self, b: &BinaryExpr) -> Result<Value, EvalError> {
        let op = b.op.to_string();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let comparison = is_comparison(&op);
        let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
        // Arithmetic and `bool` between a selector and a scalar drop the selected series'
        // names: the selector is read without them at once.
        let drops_names = is_arithmetic(&op) || return_bool;
        let operand = |expr: &Expr, other: &Expr| match unwrap_parens(expr) {
            Expr::VectorSelector(vs) if drops_names && other.value_type() == ValueType::Scalar => {
                self.selected_without_names(vs).map(Value::Vector)
            }
            _ => self.eval(expr),
        };
        let (lhs, rhs) = (operand(&b.lhs, &b.rhs)?, operand(&b.rhs, &b.lhs)?);
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
                vector_scalar(&op, v, s, false, return_bool).map(Value::Vector)
            }
            (Value::Scalar(s), Value::Vector(v)) => {
                vector_scalar(&op, v, s, true, return_bool).map(Value::Vector)
            }
            (Value::Vector(l), Value::Vector(r)) => match op.as_str() {
                "and" | "or" | "unless" => Ok(Value::Vector(set_op(&op, l, r, matching))),
                _ => vector_vector(&op, l, r, matching, return_bool).map(Value::Vector),
            },
            _ => Err(EvalError::Invalid(format!(
                "operator `{op}` cannot take a range vector"
            ))),
        }
    }
}

/// Two samples with one label set after the metric name went: Prometheus refuses the result.
fn ensure_unique(samples: &[Sample]) -> Result<(), EvalError> {
    let mut sets: Vec<&SeriesLabels> = samples.iter().map(|s| &*s.labels).collect();
    sets.sort_unstable();
    if sets.windows(2).any(|w| w[0] == w[1]) {
        return Err(EvalError::DuplicateLabelset);
    }
    Ok(())
}

/// Drops the metric name, as functions, arithmetic and unary minus do. Every vector holds
/// distinct label sets, so only series that differed by name alone can collide: the full
/// check runs only when there are several names.
fn without_names(mut samples: Vec<Sample>) -> Result<Vec<Sample>, EvalError> {
    let first_name = samples
        .first()
        .and_then(|s| s.labels.get(NAME_LABEL).cloned());
    let several_names = samples
        .iter()
        .any(|s| s.labels.get(NAME_LABEL) != first_name.as_ref());
    for s in &mut samples {
        if s.labels.contains_key(NAME_LABEL) {
            Arc::make_mut(&mut s.labels).remove(NAME_LABEL);
        }
    }
    if several_names {
        ensure_unique(&samples)?;
    }
    Ok(samples)
}

fn map_values(mut samples: Vec<Sample>, f: impl Fn(f64) -> f64) -> Result<Vec<Sample>, EvalError> {
    for s in &mut samples {
        s.value = f(s.value);
    }
    without_names(samples)
}

/// Go's `math.Max`: +Inf wins over NaN, NaN over any other number, +0 over -0.
fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() { y } else { x }
    } else if x > y {
        x
    } else {
        y
    }
}

/// Go's `math.Min`, the mirror image of [`go_max`]: -Inf wins over NaN, NaN over any other
/// number, -0 over +0.
fn go_min(x: f64, y: f64) -> f64 {
    -go_max(-x, -y)
}

/// The labels `absent()` answers with, as Prometheus' `createLabelsForAbsentFunction`: those
/// an equality matcher names, in matcher order; a label matched again (by any matcher) after
/// its first equality drops out, and an empty value means no label.
fn absent_labels(arg: &Expr) -> SeriesLabels {
    let matchers = match arg {
        Expr::VectorSelector(vs) => &vs.matchers.matchers,
        Expr::MatrixSelector(ms) => &ms.vs.matchers.matchers,
        _ => return SeriesLabels::new(),
    };
    let mut labels = SeriesLabels::new();
    let mut set_once = HashSet::new();
    for m in matchers.iter().filter(|m| m.name != NAME_LABEL) {
        if matches!(m.op, MatchOp::Equal) && !set_once.contains(&m.name) {
            if m.value.is_empty() {
                labels.remove(&m.name);
            } else {
                labels.insert(m.name.clone(), m.value.clone());
            }
            set_once.insert(m.name.clone());
        } else {
            labels.remove(&m.name);
        }
    }
    labels
}

fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

/// Whether the operator's result loses the metric name (Prometheus' `shouldDropMetricName`).
fn is_arithmetic(op: &str) -> bool {
    matches!(op, "+" | "-" | "*" | "/" | "%" | "^")
}

/// (value, keep) as Prometheus' vectorElemBinop: comparisons keep the left value when true.
fn elem_binop(op: &str, l: f64, r: f64) -> (f64, bool) {
    match op {
        "+" => (l + r, true),
        "-" => (l - r, true),
        "*" => (l * r, true),
        "/" => (l / r, true),
        // IEEE remainder is exact, so Rust's `%` and Go's `math.Mod` agree to the bit.
        "%" => (l % r, true),
        "^" => (go_pow(l, r), true),
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
) -> Result<Vec<Sample>, EvalError> {
    let comparison = is_comparison(op);
    let out: Vec<Sample> = v
        .into_iter()
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
            keep.then_some(Sample { value, ..s })
        })
        .collect();
    if is_arithmetic(op) || return_bool {
        without_names(out)
    } else {
        Ok(out)
    }
}

/// The labels two series are matched on, or a group is made of, borrowed from the series: a
/// few pairs, inline.
type Signature<'l> = SmallVec<[(&'l str, &'l str); 6]>;

fn signature<'l>(labels: &'l SeriesLabels, matching: Option<&LabelModifier>) -> Signature<'l> {
    labels
        .iter()
        .filter(|(k, _)| match matching {
            Some(LabelModifier::Include(on)) => on.labels.contains(k),
            Some(LabelModifier::Exclude(ignoring)) => {
                k.as_str() != NAME_LABEL && !ignoring.labels.contains(k)
            }
            None => k.as_str() != NAME_LABEL,
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn set_op(
    op: &str,
    l: Vec<Sample>,
    r: Vec<Sample>,
    matching: Option<&LabelModifier>,
) -> Vec<Sample> {
    if op == "or" {
        let keep: Vec<bool> = {
            let left: FxHashSet<Signature> =
                l.iter().map(|s| signature(&s.labels, matching)).collect();
            r.iter()
                .map(|s| !left.contains(&signature(&s.labels, matching)))
                .collect()
        };
        let mut out = l;
        out.extend(r.into_iter().zip(keep).filter_map(|(s, k)| k.then_some(s)));
        return out;
    }
    let keep: Vec<bool> = {
        let right: FxHashSet<Signature> =
            r.iter().map(|s| signature(&s.labels, matching)).collect();
        l.iter()
            .map(|s| right.contains(&signature(&s.labels, matching)) == (op == "and"))
            .collect()
    };
    l.into_iter()
        .zip(keep)
        .filter_map(|(s, k)| k.then_some(s))
        .collect()
}

/// Prometheus' VectorBinop for one-to-one matching, check for check in its order: nothing on
/// either side gives nothing; a right-hand match group with two series is many-to-many (even
/// if no left series matches it); a left match group is many-to-one only when two of its
/// series make it into the result (a comparison may filter one out).
fn vector_vector(
    op: &str,
    l: Vec<Sample>,
    r: Vec<Sample>,
    matching: Option<&LabelModifier>,
    return_bool: bool,
) -> Result<Vec<Sample>, EvalError> {
    if l.is_empty() || r.is_empty() {
        return Ok(Vec::new());
    }
    let mut right: FxHashMap<Signature, &Sample> =
        FxHashMap::with_capacity_and_hasher(r.len(), Default::default());
    for s in &r {
        let sig = signature(&s.labels, matching);
        if let Some(other) = right.get(&sig) {
            return Err(EvalError::ManyToMany {
                group: gofmt::labels(sig.iter().copied()),
                series: gofmt::label_set(&s.labels),
                other: gofmt::label_set(&other.labels),
            });
        }
        right.insert(sig, s);
    }
    let drop_name = is_arithmetic(op) || return_bool;
    let mut matched: FxHashSet<Signature> =
        FxHashSet::with_capacity_and_hasher(l.len(), Default::default());
    let mut out = Vec::new();
    for s in &l {
        let sig = signature(&s.labels, matching);
        let Some(other) = right.get(&sig) else {
            continue;
        };
        let (mut value, keep) = elem_binop(op, s.value, other.value);
        if return_bool {
            value = f64::from(u8::from(keep));
        } else if !keep {
            continue;
        }
        let labels = match matching {
            // The labels `on` keeps are the signature: built from it, not cut from a copy.
            Some(LabelModifier::Include(_)) => Arc::new(
                (sig.iter())
                    .filter(|(k, _)| !(drop_name && *k == NAME_LABEL))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            _ => {
                let mut labels = s.labels.clone();
                if drop_name && labels.contains_key(NAME_LABEL) {
                    Arc::make_mut(&mut labels).remove(NAME_LABEL);
                }
                if let Some(LabelModifier::Exclude(ignoring)) = matching {
                    Arc::make_mut(&mut labels).retain(|k, _| !ignoring.labels.contains(k));
                }
                labels
            }
        };
        if !matched.insert(sig) {
            return Err(EvalError::ManyToOne);
        }
        out.push(Sample { labels, value });
    }
    // The result's labels are the match signature (plus the name when kept), which the
    // many-to-one check made unique; only `on(__name__, …)` with the name dropped can
    // leave two samples with one label set.
    let on_name = matches!(matching, Some(LabelModifier::Include(on)) if on.labels.iter().any(|l| l == NAME_LABEL));
    if drop_name && on_name {
        ensure_unique(&out)?;
    }
    Ok(out)
}

/// Prometheus' extrapolatedRate (2.42): the increase between the first and last sample in the
/// range, corrected for counter resets and extrapolated towards the range's edges.
fn extrapolated_rate(
    range: &CounterRange,
    start: Millis,
    end: Millis,
    counter: bool,
    rate: bool,
) -> Option<f64> {
    if range.count < 2 {
        return None;
    }
    let ((first_t, first_v), (last_t, last_v)) = (range.first, range.last);
    let mut result = last_v - first_v;
    if counter {
        for previous in &range.falls {
            result += previous;
        }
    }
    let mut to_start = (first_t - start) as f64 / 1000.0;
    let to_end = (end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let average_step = sampled / (range.count - 1) as f64;
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
    // One factor, then one multiplication, in Prometheus' order: the rounding is part of the
    // answer a rule test compares.
    let mut factor = interval / sampled;
    if rate {
        factor /= go_seconds(end - start);
    }
    Some(result * factor)
}

/// Go's `time.Duration.Seconds()` for a whole number of milliseconds: whole seconds plus the
/// fraction, added in that order.
fn go_seconds(ms: Millis) -> f64 {
    (ms / 1000) as f64 + ((ms % 1000) * 1_000_000) as f64 / 1e9
}

/// One step of Kahan–Neumaier summation: `sum + inc` and the updated compensation.
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Adds the `count`-th value to an incremental mean, as Prometheus' `avg`: an infinite mean
/// stays put when the new value cannot change it (else `Inf - Inf` would give NaN).
fn mean_step(mean: f64, v: f64, count: usize) -> f64 {
    if inf_mean_holds(mean, v) {
        return mean;
    }
    let n = count as f64;
    mean + (v / n - mean / n)
}

fn inf_mean_holds(mean: f64, v: f64) -> bool {
    mean.is_infinite() && (v.is_finite() || (v.is_infinite() && (mean > 0.0) == (v > 0.0)))
}

/// `avg_over_time`: the incremental mean with Kahan compensation (Prometheus 2.42).
fn mean_over_time(points: &[(Millis, f64)]) -> f64 {
    let (mut mean, mut c) = (0.0, 0.0);
    for (i, &(_, v)) in points.iter().enumerate() {
        let n = (i + 1) as f64;
        if inf_mean_holds(mean, v) {
            continue;
        }
        (mean, c) = kahan_inc(v / n - mean / n, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

/// Least-squares slope and intercept, x in seconds relative to `intercept_time`, with
/// Prometheus 2.42's arithmetic: Kahan sums, and a constant series answered exactly (slope 0)
/// rather than through a cancellation that leaves a residue like -1.97e-18.
fn linear_regression(points: &[(Millis, f64)], intercept_time: Millis) -> (f64, f64) {
    let mut n = 0.0;
    let (mut sum_x, mut c_x) = (0.0, 0.0);
    let (mut sum_y, mut c_y) = (0.0, 0.0);
    let (mut sum_xy, mut c_xy) = (0.0, 0.0);
    let (mut sum_x2, mut c_x2) = (0.0, 0.0);
    let init_y = points[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in points.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_time) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// Go's `math.Pow` (Go 1.19, which Prometheus 2.42 is built with): special cases first, then
/// the integer part of the exponent by repeated squaring with the binary exponent kept apart,
/// which rounds differently from the C library's `pow`.
fn go_pow(x: f64, y: f64) -> f64 {
    let odd_int = |v: f64| v.fract() == 0.0 && v.abs() < (1u64 << 53) as f64 && (v as i64) & 1 == 1;
    if y == 0.0 || x == 1.0 {
        return 1.0;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 {
        return if y < 0.0 {
            if odd_int(y) {
                f64::INFINITY.copysign(x)
            } else {
                f64::INFINITY
            }
        } else if odd_int(y) {
            x
        } else {
            0.0
        };
    }
    // x to an infinite or a huge even power: 1 for -1, else 0 or +Inf.
    let extreme = || {
        if x == -1.0 {
            1.0
        } else if (x.abs() < 1.0) == (y > 0.0) {
            0.0
        } else {
            f64::INFINITY
        }
    };
    if y.is_infinite() {
        return extreme();
    }
    if x.is_infinite() {
        if x < 0.0 {
            return go_pow(1.0 / x, -y);
        }
        return if y < 0.0 { 0.0 } else { f64::INFINITY };
    }
    if y == 0.5 {
        return x.sqrt();
    }
    if y == -0.5 {
        return 1.0 / x.sqrt();
    }
    let (mut yi, mut yf) = (y.abs().trunc(), y.abs().fract());
    if yf != 0.0 && x < 0.0 {
        return f64::NAN;
    }
    if yi >= (1u64 << 63) as f64 {
        return extreme();
    }
    let mut a1 = 1.0;
    let mut ae: i64 = 0;
    if yf != 0.0 {
        if yf > 0.5 {
            yf -= 1.0;
            yi += 1.0;
        }
        a1 = (yf * x.ln()).exp();
    }
    let (mut x1, mut xe) = frexp(x);
    let mut i = yi as i64;
    while i != 0 {
        if !(-(1 << 12)..=(1 << 12)).contains(&xe) {
            // Under- or overflow for sure: let ldexp give 0 or Inf.
            ae += xe;
            break;
        }
        if i & 1 == 1 {
            a1 *= x1;
            ae += xe;
        }
        x1 *= x1;
        xe <<= 1;
        if x1 < 0.5 {
            x1 += x1;
            xe -= 1;
        }
        i >>= 1;
    }
    if y < 0.0 {
        a1 = 1.0 / a1;
        ae = -ae;
    }
    ldexp(a1, ae)
}

/// `x = frac × 2^exp` with `frac` in [0.5, 1) (finite, non-zero `x`).
fn frexp(x: f64) -> (f64, i64) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let (x, bias) = if x.abs() < f64::MIN_POSITIVE {
        (x * (1u64 << 52) as f64, -52)
    } else {
        (x, 0)
    };
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64 - 1022 + bias;
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, exp)
}

/// `frac × 2^exp`, rounding once when the result is subnormal (Go's `math.Ldexp`).
fn ldexp(frac: f64, exp: i64) -> f64 {
    if frac == 0.0 || !frac.is_finite() {
        return frac;
    }
    let (frac, e) = frexp(frac);
    let exp = exp + e;
    // `frac` is in [0.5, 1): its own binary exponent is -1.
    let exp = exp - 1;
    if exp < -1075 {
        return 0.0_f64.copysign(frac);
    }
    if exp > 1023 {
        return f64::INFINITY.copysign(frac);
    }
    let (exp, scale) = if exp < -1022 {
        (exp + 53, 1.0 / (1u64 << 53) as f64)
    } else {
        (exp, 1.0)
    };
    let bits = (frac.to_bits() & !(0x7ff << 52)) | (((exp + 1023) as u64) << 52);
    scale * f64::from_bits(bits)
}

mod histogram;
#[cfg(test)]
mod tests;
