//! Rule files: the shipped ones load; every mistake is located and named.

use super::*;

fn problems(text: &str) -> Vec<String> {
    match parse_file(Path::new("r.yaml"), text) {
        Ok(_) => vec![],
        Err(d) => d.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_shipped_rules_load() {
    let set = RuleSet::embedded();
    assert!(set.rule_count() >= 10, "{}", set.rule_count());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let loaded = RuleSet::load(&[dir]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.rule_count(), set.rule_count());
}

#[test]
fn mistakes_name_file_line_rule_and_construct() {
    let text = "groups:
- name: g
  rules:
  - alert: A
    expr: rate(poolwatch_pool_transactions_total[5m] offset 1m) > 1
    labels: {severity: warning}
    annotations: {summary: s}
  - alert: B
    expr: poolwatch_pool_size > 1
    for: soon
    labels: {severity: urgent}
    annotations: {summary: '{{ query \"x\" }}'}
  - alert: C
    expr: no_such_metric > 1
    labels: {severity: info}
    annotations: {summary: s}
  - record: r
    expr: poolwatch_pool_size
";
    let got = problems(text);
    let expect = [
        (
            "r.yaml:5:11: groups[0].rules[0].expr",
            "rule A: the offset modifier is not supported",
        ),
        ("r.yaml:10:10: groups[0].rules[1].for", ""),
        (
            "r.yaml:11:13: groups[0].rules[1].labels.severity",
            "severity `urgent`",
        ),
        (
            "r.yaml:12:18: groups[0].rules[1].annotations.summary",
            "query",
        ),
        (
            "r.yaml:14:11: groups[0].rules[2].expr",
            "`no_such_metric` is not a metric poolwatch exports",
        ),
        (
            "r.yaml:17:13: groups[0].rules[3].record",
            "recording rules are not supported",
        ),
    ];
    assert_eq!(got.len(), expect.len(), "{got:#?}");
    for (line, (at, what)) in got.iter().zip(expect) {
        assert!(
            line.starts_with(at) && line.contains(what),
            "{line} should start {at} and say {what}"
        );
    }
}

#[test]
fn unknown_keys_and_missing_severity_or_summary() {
    let got = problems(
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: poolwatch_pool_size > 1\n    severity: warning\n    labels: {severity: warning}\n    annotations: {summary: s}\n",
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("r.yaml:6:5: groups[0].rules[0].severity: unknown field `severity`"),
        "{got:?}"
    );
    let got = problems(
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: poolwatch_pool_size > 1\n    labels: {team: db}\n",
    );
    assert!(
        got.iter().any(|p| p.contains("needs a `severity` label")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|p| p.contains("needs a `summary` annotation")),
        "{got:?}"
    );
}
