//! Alert states per label set, as Prometheus keeps them: inactive → pending (`for`) → firing →
//! resolved, with `keep_firing_for`. A resolved alert is kept a while so Alertmanager keeps
//! hearing that it ended. Time is passed in, so tests drive it without sleeping.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use super::eval;
use super::files::{AlertRule, RuleSet};
use crate::series::{Millis, NAME_LABEL, SeriesLabels, SeriesStore};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    #[default]
    Pending,
    Firing,
}

/// One active alert: a rule whose expression holds for one label set.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    /// When the expression first held (ms since the epoch).
    pub active_at: Millis,
    pub fired_at: Option<Millis>,
    /// When a firing alert stopped firing; only alerts kept for Alertmanager have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Millis>,
    /// The expression's value at the last evaluation that returned this label set.
    pub value: f64,
    #[serde(skip)]
    keep_firing_since: Option<Millis>,
}

/// How long a resolved alert is kept and re-sent to Alertmanager, as Prometheus does
/// (`resolvedRetention`, rules/alerting.go): an Alertmanager that missed the resolution, or was
/// down, still learns of it.
pub const RESOLVED_RETENTION: Duration = Duration::from_secs(15 * 60);

fn millis(d: Duration) -> Millis {
    d.as_millis() as Millis
}

/// The alerts of one rule, keyed by their labels.
#[derive(Clone, Debug, Default)]
pub struct RuleState {
    /// Pending and firing.
    pub active: BTreeMap<BTreeMap<String, String>, Alert>,
    /// Resolved less than [`RESOLVED_RETENTION`] ago; seen only by the Alertmanager sender.
    pub resolved: BTreeMap<BTreeMap<String, String>, Alert>,
    /// The last evaluation that succeeded: the time the sender works from, so an alert whose
    /// rule stops evaluating is not renewed and expires in Alertmanager at the end of its lease.
    pub evaluated_at: Option<Millis>,
}

/// What the Alertmanager sender needs of one alert: firing, or resolved within
/// [`RESOLVED_RETENTION`].
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub alert: Alert,
    /// When its rule was last evaluated.
    pub evaluated_at: Millis,
    /// Its group's evaluation interval (a lease covers several).
    pub interval: Duration,
}

impl RuleState {
    /// Evaluates `rule` at `t`. With `hold` false the rule's `for` is not awaited (a one-shot
    /// `check` has no history to wait on).
    pub fn evaluate(
        &mut self,
        rule: &AlertRule,
        store: &SeriesStore,
        t: Millis,
        hold: bool,
    ) -> Result<(), eval::EvalError> {
        let samples = eval::eval_vector(&rule.expr, store, t)?;
        let mut seen = HashSet::new();
        for sample in samples {
            let (labels, annotations) = expand(rule, &sample.labels, sample.value);
            seen.insert(labels.clone());
            // Back after it resolved: a new alert, as in Prometheus, which replaces the old one.
            self.resolved.remove(&labels);
            match self.active.get_mut(&labels) {
                Some(alert) => {
                    alert.value = sample.value;
                    alert.annotations = annotations;
                    alert.keep_firing_since = None;
                }
                None => {
                    self.active.insert(
                        labels.clone(),
                        Alert {
                            labels,
                            annotations,
                            state: AlertState::Pending,
                            active_at: t,
                            fired_at: None,
                            resolved_at: None,
                            value: sample.value,
                            keep_firing_since: None,
                        },
                    );
                }
            }
        }
        let hold_for = if hold { millis(rule.for_) } else { 0 };
        let keep_for = millis(rule.keep_firing_for);
        let retention = millis(RESOLVED_RETENTION);
        self.resolved
            .retain(|_, alert| alert.resolved_at.is_some_and(|at| t - at <= retention));
        let resolved = &mut self.resolved;
        self.active.retain(|labels, alert| {
            if !seen.contains(labels) {
                // The expression no longer holds: a firing alert may keep firing a while.
                if alert.state == AlertState::Firing && keep_for > 0 {
                    let since = *alert.keep_firing_since.get_or_insert(t);
                    if t - since < keep_for {
                        return true;
                    }
                }
                // A pending alert just ends; a firing one resolves and is kept for Alertmanager.
                if alert.state == AlertState::Firing {
                    alert.resolved_at = Some(t);
                    resolved.insert(labels.clone(), alert.clone());
                }
                return false;
            }
            if alert.state == AlertState::Pending && t - alert.active_at >= hold_for {
                alert.state = AlertState::Firing;
                alert.fired_at = Some(t);
            }
            true
        });
        self.evaluated_at = Some(t);
        Ok(())
    }
}

/// The alert's labels (sample labels, the rule's labels, `alertname`) and annotations, with
/// templates rendered as Prometheus does: `$labels` are the sample's labels.
fn expand(
    rule: &AlertRule,
    sample: &SeriesLabels,
    value: f64,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut labels: BTreeMap<String, String> = sample.clone();
    labels.remove(NAME_LABEL);
    for (name, template) in &rule.label_templates {
        labels.insert(name.clone(), template.render(sample, value));
    }
    labels.insert("alertname".into(), rule.name.clone());
    let annotations = rule
        .annotation_templates
        .iter()
        .map(|(name, template)| (name.clone(), template.render(sample, value)))
        .collect();
    (labels, annotations)
}

/// Every group of a rule set with its alert state and evaluation schedule.
#[derive(Debug, Default)]
pub struct RuleEngine {
    set: RuleSet,
    /// Per group, per rule.
    states: Vec<Vec<RuleState>>,
    last_eval: Vec<Option<Millis>>,
    /// Evaluation problems of the last pass, by rule.
    pub errors: BTreeMap<String, String>,
}

impl RuleEngine {
    pub fn new(set: RuleSet) -> RuleEngine {
        let mut engine = RuleEngine::default();
        engine.replace(set);
        engine
    }

    pub fn rules(&self) -> &RuleSet {
        &self.set
    }

    /// Swaps in a new rule set; a rule that did not change keeps its alerts (and their `for`).
    pub fn replace(&mut self, set: RuleSet) {
        let mut old: HashMap<(String, String), (&AlertRule, RuleState)> = HashMap::new();
        for (group, states) in self.set.groups.iter().zip(std::mem::take(&mut self.states)) {
            for (rule, state) in group.rules.iter().zip(states) {
                old.insert((group.name.clone(), rule.name.clone()), (rule, state));
            }
        }
        let states = set
            .groups
            .iter()
            .map(|g| {
                g.rules
                    .iter()
                    .map(|r| match old.remove(&(g.name.clone(), r.name.clone())) {
                        Some((before, state)) if before.same_as(r) => state,
                        _ => RuleState::default(),
                    })
                    .collect()
            })
            .collect();
        self.last_eval = vec![None; set.groups.len()];
        self.states = states;
        self.set = set;
    }

    /// Evaluates the groups whose interval has passed (`default_interval` for groups without
    /// one); true if any was evaluated.
    pub fn evaluate_due(
        &mut self,
        store: &SeriesStore,
        t: Millis,
        default_interval: Duration,
    ) -> bool {
        let mut any = false;
        for g in 0..self.set.groups.len() {
            let interval = millis(self.set.groups[g].interval.unwrap_or(default_interval));
            if self.last_eval[g].is_some_and(|last| t - last < interval) {
                continue;
            }
            self.evaluate_group(g, store, t, true);
            any = true;
        }
        any
    }

    /// Evaluates every group now.
    pub fn evaluate_all(&mut self, store: &SeriesStore, t: Millis, hold: bool) {
        for g in 0..self.set.groups.len() {
            self.evaluate_group(g, store, t, hold);
        }
    }

    fn evaluate_group(&mut self, g: usize, store: &SeriesStore, t: Millis, hold: bool) {
        let group = &self.set.groups[g];
        for (rule, state) in group.rules.iter().zip(self.states[g].iter_mut()) {
            let key = format!("{}/{}", group.name, rule.name);
            match state.evaluate(rule, store, t, hold) {
                Ok(()) => {
                    self.errors.remove(&key);
                }
                Err(e) => {
                    let e = e.to_string();
                    if self.errors.get(&key) != Some(&e) {
                        tracing::warn!(rule = %key, file = %rule.file.display(), line = rule.line, "evaluation failed: {e}");
                    }
                    self.errors.insert(key, e);
                }
            }
        }
        self.last_eval[g] = Some(t);
    }

    /// Pending and firing alerts, with the rule that raised them.
    pub fn alerts(&self) -> Vec<(&AlertRule, &Alert)> {
        self.set
            .groups
            .iter()
            .zip(&self.states)
            .flat_map(|(g, states)| g.rules.iter().zip(states))
            .flat_map(|(rule, state)| state.active.values().map(move |a| (rule, a)))
            .collect()
    }

    /// Firing alerts and those resolved within [`RESOLVED_RETENTION`], for Alertmanager, each
    /// with its rule's last evaluation and its group's interval (`default_interval` for groups
    /// without one). Pending alerts are not sent, as in Prometheus.
    pub fn notifications(&self, default_interval: Duration) -> Vec<Notification> {
        let mut out = Vec::new();
        for (group, states) in self.set.groups.iter().zip(&self.states) {
            let interval = group.interval.unwrap_or(default_interval);
            for state in states {
                let Some(evaluated_at) = state.evaluated_at else {
                    continue;
                };
                let firing = state
                    .active
                    .values()
                    .filter(|a| a.state == AlertState::Firing);
                out.extend(
                    firing
                        .chain(state.resolved.values())
                        .map(|alert| Notification {
                            alert: alert.clone(),
                            evaluated_at,
                            interval,
                        }),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
