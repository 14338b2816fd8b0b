//! Alert states driven by an explicit clock.

use super::*;
use crate::rules::files::parse_file;
use crate::series::NAME_LABEL;

const MIN: Millis = 60_000;

fn rule(extra: &str) -> AlertRule {
    let text = format!(
        "groups:\n- name: g\n  rules:\n  - alert: Busy\n    expr: poolwatch_pool_utilization_ratio > 0.8\n{extra}    labels: {{severity: warning}}\n    annotations:\n      summary: 'at {{{{ $value | humanizePercentage }}}}'\n"
    );
    let groups =
        parse_file(std::path::Path::new("t.yaml"), &text).unwrap_or_else(|e| panic!("{e}"));
    groups[0].rules[0].clone()
}

/// Utilization of pool `p`, one value per minute from 0.
fn store(values: &[f64]) -> SeriesStore {
    let mut store = SeriesStore::new(i64::MAX / 4);
    let labels: SeriesLabels = [
        (NAME_LABEL, "poolwatch_pool_utilization_ratio"),
        ("db_client_connection_pool_name", "p"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (i, v) in values.iter().enumerate() {
        store.append(labels.clone(), i as Millis * MIN, *v);
    }
    store
}

fn states(rule: &AlertRule, store: &SeriesStore, minutes: usize) -> Vec<Option<AlertState>> {
    let mut state = RuleState::default();
    (0..minutes)
        .map(|m| {
            state
                .evaluate(rule, store, m as Millis * MIN, true)
                .unwrap();
            state.active.values().next().map(|a| a.state)
        })
        .collect()
}

use AlertState::{Firing as F, Pending as P};

#[test]
fn pending_for_then_firing_then_resolved() {
    let r = rule("    for: 2m\n");
    let s = store(&[0.5, 0.9, 0.9, 0.9, 0.5]);
    assert_eq!(
        states(&r, &s, 5),
        vec![None, Some(P), Some(P), Some(F), None]
    );
}

#[test]
fn a_dip_before_for_restarts_the_wait() {
    let r = rule("    for: 2m\n");
    let s = store(&[0.9, 0.9, 0.5, 0.9, 0.9, 0.9]);
    assert_eq!(
        states(&r, &s, 6),
        vec![Some(P), Some(P), None, Some(P), Some(P), Some(F)]
    );
}

#[test]
fn keep_firing_for_bridges_dips_after_firing() {
    let r = rule("    keep_firing_for: 2m\n");
    let s = store(&[0.9, 0.5, 0.5, 0.5, 0.9]);
    // Fires at once (no `for`), keeps firing for 2 minutes after the condition ends.
    assert_eq!(
        states(&r, &s, 5),
        vec![Some(F), Some(F), Some(F), None, Some(F)]
    );
}

#[test]
fn annotations_are_rendered_with_the_value() {
    let r = rule("");
    let s = store(&[0.95]);
    let mut state = RuleState::default();
    state.evaluate(&r, &s, 0, true).unwrap();
    let alert = state.active.values().next().unwrap();
    assert_eq!(alert.annotations["summary"], "at 95%");
    assert_eq!(alert.labels["alertname"], "Busy");
    assert_eq!(alert.labels["severity"], "warning");
    assert!(!alert.labels.contains_key(NAME_LABEL));
}

#[test]
fn without_hold_for_is_not_awaited() {
    let r = rule("    for: 10m\n");
    let s = store(&[0.9]);
    let mut state = RuleState::default();
    state.evaluate(&r, &s, 0, false).unwrap();
    assert_eq!(state.active.values().next().map(|a| a.state), Some(F));
}

#[test]
fn reload_keeps_the_state_of_unchanged_rules_only() {
    let s = store(&[0.9, 0.9]);
    let set = |extra: &str| RuleSet {
        groups: vec![crate::rules::files::RuleGroup {
            name: "g".into(),
            interval: None,
            rules: vec![rule(extra)],
            file: "t.yaml".into(),
        }],
        files: vec![],
    };
    let mut engine = RuleEngine::new(set("    for: 1m\n"));
    engine.evaluate_all(&s, 0, true);
    engine.replace(set("    for: 1m\n"));
    engine.evaluate_all(&s, MIN, true);
    assert_eq!(
        engine.alerts()[0].1.state,
        F,
        "same rule: its minute of pending counted"
    );
    engine.replace(set("    for: 2m\n"));
    engine.evaluate_all(&s, MIN, true);
    assert_eq!(engine.alerts()[0].1.state, P, "changed rule: starts over");
}

#[test]
fn a_resolved_alert_is_kept_for_alertmanager_only_for_the_retention() {
    let r = rule("");
    let s = store(&[0.9, 0.5]);
    let mut state = RuleState::default();
    state.evaluate(&r, &s, 0, true).unwrap();
    let fired = state.active.values().next().unwrap().clone();
    assert_eq!((fired.state, fired.fired_at), (F, Some(0)));
    state.evaluate(&r, &s, MIN, true).unwrap();
    assert!(state.active.is_empty(), "resolved alerts are not active");
    let resolved = state.resolved.values().next().unwrap();
    assert_eq!(resolved.resolved_at, Some(MIN));
    assert_eq!(
        resolved.fired_at,
        Some(0),
        "it keeps when it started firing"
    );
    assert_eq!(state.evaluated_at, Some(MIN));
    // Kept while no more than 15 minutes old, as in Prometheus.
    state.evaluate(&r, &s, MIN + 15 * MIN, true).unwrap();
    assert_eq!(state.resolved.len(), 1);
    state.evaluate(&r, &s, MIN + 15 * MIN + 1, true).unwrap();
    assert!(state.resolved.is_empty());
}

#[test]
fn a_pending_alert_that_ends_is_not_kept() {
    let r = rule("    for: 5m\n");
    let s = store(&[0.9, 0.5]);
    let mut state = RuleState::default();
    state.evaluate(&r, &s, 0, true).unwrap();
    state.evaluate(&r, &s, MIN, true).unwrap();
    assert!(state.active.is_empty() && state.resolved.is_empty());
}

#[test]
fn keep_firing_for_delays_the_resolution() {
    let r = rule("    keep_firing_for: 2m\n");
    let s = store(&[0.9, 0.5, 0.5, 0.5]);
    let mut state = RuleState::default();
    for m in 0..4 {
        state.evaluate(&r, &s, m * MIN, true).unwrap();
    }
    let resolved = state.resolved.values().next().unwrap();
    assert_eq!(resolved.resolved_at, Some(3 * MIN));
}

#[test]
fn an_alert_back_after_resolving_is_a_new_alert() {
    let r = rule("    for: 1m\n");
    let s = store(&[0.9, 0.9, 0.5, 0.9, 0.9]);
    let mut state = RuleState::default();
    for m in 0..4 {
        state.evaluate(&r, &s, m * MIN, true).unwrap();
    }
    assert!(state.resolved.is_empty(), "the resolved one is replaced");
    let alert = state.active.values().next().unwrap();
    assert_eq!((alert.state, alert.active_at), (P, 3 * MIN));
    state.evaluate(&r, &s, 4 * MIN, true).unwrap();
    assert_eq!(
        state.active.values().next().unwrap().fired_at,
        Some(4 * MIN)
    );
}

#[test]
fn notifications_are_firing_and_resolved_alerts_with_their_group_interval() {
    let rule = |name: &str, expr: &str, extra: &str| {
        format!(
            "  - alert: {name}\n    expr: {expr}\n{extra}    labels: {{severity: warning}}\n    annotations: {{summary: s}}\n"
        )
    };
    let text = format!(
        "groups:\n- name: g\n  interval: 30s\n  rules:\n{}{}- name: h\n  rules:\n{}",
        rule(
            "Busy",
            "poolwatch_pool_utilization_ratio > 0.8",
            "    for: 1m\n"
        ),
        rule("Full", "poolwatch_pool_utilization_ratio >= 1", ""),
        rule("Quiet", "poolwatch_pool_utilization_ratio < 0.6", ""),
    );
    let groups = parse_file(std::path::Path::new("t.yaml"), &text).unwrap();
    let set = RuleSet {
        groups,
        files: vec![],
    };
    let s = store(&[1.0, 0.9]);
    let mut engine = RuleEngine::new(set);
    engine.evaluate_all(&s, 0, true);
    engine.evaluate_all(&s, MIN, true);
    // Busy pending then firing at 1m; Full fired at 0 and resolved at 1m; Quiet never held.
    // (alertname, fired_at, resolved_at, evaluated_at, interval)
    type Seen = (String, Option<Millis>, Option<Millis>, Millis, Duration);
    let got: Vec<Seen> = engine
        .notifications(Duration::from_secs(10))
        .into_iter()
        .map(|n| {
            (
                n.alert.labels["alertname"].clone(),
                n.alert.fired_at,
                n.alert.resolved_at,
                n.evaluated_at,
                n.interval,
            )
        })
        .collect();
    let group_interval = Duration::from_secs(30);
    assert_eq!(
        got,
        vec![
            ("Busy".into(), Some(MIN), None, MIN, group_interval),
            ("Full".into(), Some(0), Some(MIN), MIN, group_interval),
        ]
    );
    assert_eq!(
        engine.alerts().len(),
        1,
        "alerts() stays pending and firing"
    );
}
