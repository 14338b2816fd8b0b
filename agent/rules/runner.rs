//! `poolwatch rules test`: unit-test files in the format of `promtool test rules`, run on the
//! agent's own evaluator. The same files pass or fail under both tools, and failures read as
//! promtool (2.42) words them.
//!
//! promtool's own rules are kept where they change a verdict: an expression sees only the
//! samples loaded by the last evaluation step at or before the group's latest `eval_time`; an
//! expected value must equal the result exactly (so an expected NaN never passes); a rule that
//! fails to evaluate ends its group.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::alerts::{AlertState, RuleEngine};
use super::files::RuleSet;
use super::testfile::{self, SeriesValue, TestGroup};
use super::{eval, gofmt};
use crate::series::{Millis, SeriesLabels, SeriesStore, stale_marker};

/// The outcome of one test file: what failed, in promtool's words where it has them.
#[derive(Debug, Default)]
pub struct FileResult {
    pub file: PathBuf,
    pub failures: Vec<String>,
}

impl FileResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

type LabelsAndAnnotations = BTreeSet<(BTreeMap<String, String>, BTreeMap<String, String>)>;

/// Runs one test file.
pub fn run_file(path: &Path) -> FileResult {
    let mut result = FileResult {
        file: path.to_path_buf(),
        failures: Vec::new(),
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            result.failures.push(format!("cannot read: {e}"));
            return result;
        }
    };
    let file = match testfile::parse_test_file(&text) {
        Ok(f) => f,
        Err(e) => {
            result.failures.push(e);
            return result;
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let rule_files: Vec<PathBuf> = file.rule_files.iter().map(|f| base.join(f)).collect();
    let rules = match RuleSet::load(&rule_files) {
        Ok(rules) => rules,
        Err(problems) => {
            result.failures.push(problems.to_string());
            return result;
        }
    };
    for group in &file.tests {
        result
            .failures
            .extend(run_group(group, &rules, file.evaluation_interval));
    }
    result
}

fn millis(d: Duration) -> Millis {
    d.as_millis() as Millis
}

/// The input series as promtool loads them: one sample per step of the group's interval from
/// 0, none after `cutoff`. With an interval of 0 every value falls on 0 s and the store keeps
/// the first, as promtool's storage does.
fn load_series(group: &TestGroup, cutoff: Millis) -> Result<SeriesStore, String> {
    let mut store = SeriesStore::new(Millis::MAX / 4);
    for input in &group.input_series {
        let labels = testfile::parse_series(&input.series)?;
        let values = testfile::expand_values(&input.values)?;
        for (step, value) in values.into_iter().enumerate() {
            let t = step as Millis * millis(group.interval);
            if t > cutoff {
                break;
            }
            match value {
                None => {}
                Some(SeriesValue::Stale) => store.append(labels.clone(), t, stale_marker()),
                Some(SeriesValue::Value(v)) => store.append(labels.clone(), t, v),
            }
        }
    }
    Ok(store)
}

/// promtool evaluates from 0 in steps of the file's evaluation_interval up to the latest
/// `eval_time` of the group, loading samples up to each step: what comes after the last step
/// is never loaded, even for a promql_expr_test between two steps.
fn last_step(group: &TestGroup, evaluation_interval: Duration) -> Millis {
    let latest = group
        .alert_rule_test
        .iter()
        .map(|t| t.eval_time)
        .chain(group.promql_expr_test.iter().map(|t| t.eval_time))
        .max()
        .map_or(0, millis);
    let step = millis(evaluation_interval).max(1);
    latest / step * step
}

fn run_group(group: &TestGroup, rules: &RuleSet, evaluation_interval: Duration) -> Vec<String> {
    let mut failures = Vec::new();
    let last = last_step(group, evaluation_interval);
    let store = match load_series(group, last) {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    let mut engine = RuleEngine::new(rules.clone());
    let step = millis(evaluation_interval).max(1);
    let mut tests: Vec<_> = group.alert_rule_test.iter().collect();
    tests.sort_by_key(|t| t.eval_time);
    let mut next = 0;
    let mut t: Millis = 0;
    while t <= last {
        engine.evaluate_all(&store, t, true);
        let errors = rule_errors(rules, &engine, t);
        if !errors.is_empty() {
            // promtool stops the group at the first step where a rule fails.
            failures.extend(errors);
            return failures;
        }
        // Tests whose eval_time falls in this evaluation step see its state, as in promtool.
        while next < tests.len() && millis(tests[next].eval_time) < t + step {
            let test = tests[next];
            let got: LabelsAndAnnotations = engine
                .alerts()
                .into_iter()
                .filter(|(rule, alert)| {
                    rule.name == test.alertname && alert.state == AlertState::Firing
                })
                .map(|(_, a)| (a.labels.clone(), a.annotations.clone()))
                .collect();
            let expected: LabelsAndAnnotations = test
                .exp_alerts
                .iter()
                .map(|e| {
                    let mut labels = e.exp_labels.clone();
                    labels.insert("alertname".into(), test.alertname.clone());
                    (labels, e.exp_annotations.clone())
                })
                .collect();
            if got != expected {
                let name = group
                    .name
                    .as_ref()
                    .map_or(String::new(), |n| format!("name: {n},\n    "));
                failures.push(format!(
                    "{name}alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                    test.alertname,
                    gofmt::duration(test.eval_time),
                    indent(&show(&expected), "            "),
                    indent(&show(&got), "            ")
                ));
            }
            next += 1;
        }
        t += step;
    }
    for test in &group.promql_expr_test {
        failures.extend(check_expr(test, &store));
    }
    failures
}

/// The rules that failed at `t`, in file order, as promtool reports them.
fn rule_errors(rules: &RuleSet, engine: &RuleEngine, t: Millis) -> Vec<String> {
    rules
        .groups
        .iter()
        .flat_map(|g| g.rules.iter().map(move |r| (g, r)))
        .filter_map(|(g, r)| {
            let error = engine.errors.get(&format!("{}/{}", g.name, r.name))?;
            Some(format!(
                "rule: {}, time: {}, err: {error}",
                r.name,
                gofmt::go_duration(t)
            ))
        })
        .collect()
}

/// What an expression gives, as the runner compares it: label sets with their values, in
/// label order.
pub type Samples = Vec<(BTreeMap<String, String>, f64)>;

/// Evaluates a promql_expr_test's expression over a group's input series, loaded as promtool
/// loads them (see [`run_group`]): the result `poolwatch rules test` compares with
/// `exp_samples`, or the error it reports.
///
/// With `rank`, selectors take series in that order instead of label order (see
/// [`eval::eval_vector_ranked`]).
pub fn expr_result(
    group: &TestGroup,
    test: &testfile::PromqlExprTest,
    evaluation_interval: Duration,
    rank: Option<&dyn Fn(&SeriesLabels) -> u64>,
) -> Result<Samples, String> {
    let store = load_series(group, last_step(group, evaluation_interval))?;
    evaluate(test, &store, rank)
}

fn evaluate(
    test: &testfile::PromqlExprTest,
    store: &SeriesStore,
    rank: Option<&dyn Fn(&SeriesLabels) -> u64>,
) -> Result<Samples, String> {
    let expr = eval::parse(&test.expr)?;
    let t = millis(test.eval_time);
    let got = match rank {
        Some(rank) => eval::eval_vector_ranked(&expr, store, t, rank),
        None => eval::eval_vector(&expr, store, t),
    }
    .map_err(|e| e.to_string())?;
    let mut got: Samples = got
        .into_iter()
        .map(|s| (Arc::unwrap_or_clone(s.labels), s.value))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(got)
}

fn check_expr(test: &testfile::PromqlExprTest, store: &SeriesStore) -> Option<String> {
    let at = format!(
        "expr: {}, time: {}",
        gofmt::quote(&test.expr),
        gofmt::duration(test.eval_time)
    );
    let got = match evaluate(test, store, None) {
        Ok(v) => v,
        Err(e) => return Some(format!("{at}, err: {e}")),
    };
    let mut expected = Vec::new();
    for sample in &test.exp_samples {
        match testfile::parse_series(&sample.labels) {
            Ok(labels) => expected.push((labels, sample.value)),
            Err(e) => {
                let labels = gofmt::quote(&sample.labels);
                return Some(format!("{at}, err: labels {labels}: {e}"));
            }
        }
    }
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    // promtool compares with reflect.DeepEqual: labels equal and values `==`, so -0 equals 0
    // and NaN equals nothing, not even NaN.
    let same = got.len() == expected.len()
        && got
            .iter()
            .zip(&expected)
            .all(|(g, e)| g.0 == e.0 && g.1 == e.1);
    (!same).then(|| {
        format!(
            "{at},\n        exp: {}\n        got: {}",
            samples_string(&expected),
            samples_string(&got)
        )
    })
}

/// promtool's rendering of a sample list: `nil`, or `{a="b"} 1E+00, …`.
pub fn samples_string(samples: &[(BTreeMap<String, String>, f64)]) -> String {
    if samples.is_empty() {
        return "nil".into();
    }
    samples
        .iter()
        .map(|(labels, v)| format!("{} {}", gofmt::label_set(labels), gofmt::float_e(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// promtool's `indentLines`: every line after the first gets `prefix`.
fn indent(text: &str, prefix: &str) -> String {
    text.replace('\n', &format!("\n{prefix}"))
}

/// promtool's rendering of expected or firing alerts.
fn show(alerts: &LabelsAndAnnotations) -> String {
    if alerts.is_empty() {
        return "[]".into();
    }
    let mut out = String::from("[");
    for (i, (labels, annotations)) in alerts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let one = format!(
            "\nLabels:{}\nAnnotations:{}",
            gofmt::label_set(labels),
            gofmt::label_set(annotations)
        );
        let _ = write!(out, "\n{i}:{}", indent(&one, "  "));
    }
    out.push_str("\n]");
    out
}
