//! `poolwatch rules test`: unit-test files in the format of `promtool test rules`, run on the
//! agent's own evaluator. The same files pass or fail under both tools.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::alerts::{AlertState, RuleEngine};
use super::eval;
use super::files::RuleSet;
use super::testfile::{self, SeriesValue, TestGroup};
use crate::series::{Millis, SeriesStore, stale_marker};

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
    for (i, group) in file.tests.iter().enumerate() {
        let name = group.name.clone().unwrap_or_else(|| format!("#{i}"));
        let interval = group.interval.unwrap_or(file.evaluation_interval);
        for failure in run_group(group, &rules, interval, file.evaluation_interval) {
            result.failures.push(format!("group {name}: {failure}"));
        }
    }
    result
}

fn millis(d: Duration) -> Millis {
    d.as_millis() as Millis
}

fn load_series(group: &TestGroup, interval: Duration) -> Result<SeriesStore, String> {
    let mut store = SeriesStore::new(Millis::MAX / 4);
    for input in &group.input_series {
        let labels = testfile::parse_series(&input.series)?;
        let values = testfile::expand_values(&input.values)?;
        for (step, value) in values.into_iter().enumerate() {
            let t = step as Millis * millis(interval);
            match value {
                None => {}
                Some(SeriesValue::Stale) => store.append(labels.clone(), t, stale_marker()),
                Some(SeriesValue::Value(v)) => store.append(labels.clone(), t, v),
            }
        }
    }
    Ok(store)
}

fn run_group(
    group: &TestGroup,
    rules: &RuleSet,
    interval: Duration,
    evaluation_interval: Duration,
) -> Vec<String> {
    let mut failures = Vec::new();
    let store = match load_series(group, interval) {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    let mut engine = RuleEngine::new(rules.clone());
    let step = millis(evaluation_interval).max(1);
    let mut tests: Vec<_> = group.alert_rule_test.iter().collect();
    tests.sort_by_key(|t| t.eval_time);
    let last = tests.last().map_or(0, |t| millis(t.eval_time));
    let mut next = 0;
    let mut t: Millis = 0;
    while t <= last && next < tests.len() {
        engine.evaluate_all(&store, t, true);
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
                failures.push(format!(
                    "alertname: {}, time: {}\n        exp: {}\n        got: {}",
                    test.alertname,
                    humantime::format_duration(test.eval_time),
                    show(&expected),
                    show(&got)
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

fn check_expr(test: &testfile::PromqlExprTest, store: &SeriesStore) -> Option<String> {
    let expr = match eval::parse(&test.expr) {
        Ok(e) => e,
        Err(e) => return Some(format!("expr {:?}: {e}", test.expr)),
    };
    let got = match eval::eval_vector(&expr, store, millis(test.eval_time)) {
        Ok(v) => v,
        Err(e) => return Some(format!("expr {:?}: {e}", test.expr)),
    };
    let mut got: Vec<(BTreeMap<String, String>, f64)> =
        got.into_iter().map(|s| (s.labels, s.value)).collect();
    let mut expected = Vec::new();
    for sample in &test.exp_samples {
        match testfile::parse_series(&sample.labels) {
            Ok(labels) => expected.push((labels, sample.value)),
            Err(e) => return Some(format!("expr {:?}: {e}", test.expr)),
        }
    }
    got.sort_by(|a, b| a.0.cmp(&b.0));
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    let same = got.len() == expected.len()
        && got.iter().zip(&expected).all(|(g, e)| {
            g.0 == e.0
                && (g.1 == e.1
                    || (g.1 - e.1).abs() <= 1e-9 * e.1.abs().max(1.0)
                    || (g.1.is_nan() && e.1.is_nan()))
        });
    (!same).then(|| {
        format!(
            "expr: {:?}, time: {}\n        exp: {expected:?}\n        got: {got:?}",
            test.expr,
            humantime::format_duration(test.eval_time)
        )
    })
}

fn show(alerts: &LabelsAndAnnotations) -> String {
    let mut out = String::from("[");
    for (i, (labels, annotations)) in alerts.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(
            out,
            "\n          labels: {labels:?}\n          annotations: {annotations:?}"
        );
    }
    out.push(']');
    out
}
