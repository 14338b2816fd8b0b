//! Rule files: Prometheus' rule-group format (`groups[].name`, `interval`, `rules[]` with
//! `alert`, `expr`, `for`, `keep_firing_for`, `labels`, `annotations`), checked at load time so
//! a mistake names its file, line, rule and construct, and never reaches evaluation.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use promql_parser::parser::Expr;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::eval;
use super::template::Template;
use super::testfile::parse_prometheus_duration;
use crate::config::diagnostics::{self, Diagnostic, Diagnostics};
use crate::exposition::family_of_series;
use crate::series::Reads;

/// Severities a rule may carry, and what each means for a pool's health.
pub const SEVERITIES: &[&str] = &["critical", "warning", "info"];

/// The shipped rule files, compiled in: the rules `check` and `run` use when given none.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "rules/pool-health.yaml",
        include_str!("../../rules/pool-health.yaml"),
    ),
    (
        "rules/pool-troubleshooting.yaml",
        include_str!("../../rules/pool-troubleshooting.yaml"),
    ),
    (
        "rules/backend-settings.yaml",
        include_str!("../../rules/backend-settings.yaml"),
    ),
    (
        "rules/resource-limits.yaml",
        include_str!("../../rules/resource-limits.yaml"),
    ),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    groups: Vec<GroupEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupEntry {
    name: Spanned<String>,
    interval: Option<Spanned<String>>,
    #[serde(default)]
    rules: Vec<RuleEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    alert: Option<Spanned<String>>,
    record: Option<Spanned<String>>,
    expr: Spanned<String>,
    #[serde(rename = "for")]
    for_: Option<Spanned<String>>,
    keep_firing_for: Option<Spanned<String>>,
    labels: Option<Spanned<BTreeMap<String, String>>>,
    annotations: Option<Spanned<BTreeMap<String, String>>>,
}

/// One checked alerting rule.
#[derive(Clone, Debug)]
pub struct AlertRule {
    pub name: String,
    /// The expression as written (for export and for telling rules apart on reload).
    pub expr_text: String,
    pub expr: Expr,
    pub for_: Duration,
    pub keep_firing_for: Duration,
    /// Raw label templates, in order, for export.
    pub labels: BTreeMap<String, String>,
    pub label_templates: Vec<(String, Template)>,
    pub annotations: BTreeMap<String, String>,
    pub annotation_templates: Vec<(String, Template)>,
    pub file: PathBuf,
    pub line: u64,
}

impl AlertRule {
    /// The rule's severity label.
    pub fn severity(&self) -> &str {
        self.labels
            .get("severity")
            .map_or("warning", String::as_str)
    }

    /// Whether two rules are the same rule, so alert state may carry over a reload.
    pub fn same_as(&self, other: &AlertRule) -> bool {
        self.name == other.name
            && self.expr_text == other.expr_text
            && self.for_ == other.for_
            && self.keep_firing_for == other.keep_firing_for
            && self.labels == other.labels
    }
}

#[derive(Clone, Debug)]
pub struct RuleGroup {
    pub name: String,
    /// How often the group is evaluated; `None`: every sample.
    pub interval: Option<Duration>,
    pub rules: Vec<AlertRule>,
    pub file: PathBuf,
}

/// Every rule group the agent evaluates.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub groups: Vec<RuleGroup>,
    /// The files it came from.
    pub files: Vec<PathBuf>,
}

impl RuleSet {
    /// The shipped rules, compiled into the binary.
    pub fn embedded() -> RuleSet {
        let mut set = RuleSet::default();
        for (name, text) in EMBEDDED {
            match parse_file(Path::new(name), text) {
                Ok(groups) => set.groups.extend(groups),
                // The shipped files are tested; this would be a build of a broken tree.
                Err(problems) => tracing::error!("embedded {name} is invalid: {problems}"),
            }
            set.files.push(PathBuf::from(name));
        }
        set
    }

    /// Loads rule files; a directory stands for its `*.yaml` and `*.yml` files.
    pub fn load(paths: &[PathBuf]) -> Result<RuleSet, Diagnostics> {
        let mut set = RuleSet::default();
        let mut problems = Vec::new();
        for file in expand(paths, &mut problems) {
            match std::fs::read_to_string(&file) {
                Ok(text) => match parse_file(&file, &text) {
                    Ok(groups) => set.groups.extend(groups),
                    Err(mut d) => problems.append(&mut d.0),
                },
                Err(e) => problems.push(file_problem(&file, format!("cannot read: {e}"))),
            }
            set.files.push(file);
        }
        if problems.is_empty() {
            Ok(set)
        } else {
            Err(Diagnostics(problems))
        }
    }

    pub fn rule_count(&self) -> usize {
        self.groups.iter().map(|g| g.rules.len()).sum()
    }

    /// What the rules read, and how far back: the only series worth keeping, and the only
    /// history worth keeping of them.
    pub fn reads(&self) -> Reads {
        let mut reads = Reads::default();
        for rule in self.groups.iter().flat_map(|g| &g.rules) {
            for (name, range) in eval::reads(&rule.expr) {
                reads.add(name, range);
            }
        }
        reads
    }
}

fn file_problem(file: &Path, message: String) -> Diagnostic {
    Diagnostic {
        origin: file.to_path_buf(),
        line: 0,
        column: 0,
        field: "(file)".into(),
        message,
    }
}

/// The files `paths` name, directories expanded to their YAML files in name order.
pub fn expand(paths: &[PathBuf], problems: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            match std::fs::read_dir(path) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| {
                            p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml")
                        })
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => problems.push(file_problem(path, format!("cannot list: {e}"))),
            }
        } else {
            files.push(path.clone());
        }
    }
    files
}

/// Parses and checks one rule file.
pub fn parse_file(origin: &Path, text: &str) -> Result<Vec<RuleGroup>, Diagnostics> {
    let (file, mut problems) = diagnostics::deserialize_all::<FileEntry>(origin, text);
    let mut groups = Vec::new();
    if let Some(file) = file {
        let mut names = HashSet::new();
        for (g, group) in file.groups.into_iter().enumerate() {
            let mut check = Check {
                origin,
                problems: &mut problems,
            };
            let field = format!("groups[{g}]");
            if !names.insert(group.name.value.clone()) {
                check.at(
                    &group.name,
                    &format!("{field}.name"),
                    format!("another group is named `{}`", group.name.value),
                );
            }
            let interval = group
                .interval
                .as_ref()
                .and_then(|i| check.duration(i, &format!("{field}.interval")));
            let rules = group
                .rules
                .into_iter()
                .enumerate()
                .filter_map(|(r, rule)| check.rule(&format!("{field}.rules[{r}]"), rule))
                .collect();
            groups.push(RuleGroup {
                name: group.name.value,
                interval,
                rules,
                file: origin.to_path_buf(),
            });
        }
    }
    if problems.is_empty() {
        Ok(groups)
    } else {
        problems.sort_by_key(|p| (p.line, p.column));
        Err(Diagnostics(problems))
    }
}

struct Check<'a> {
    origin: &'a Path,
    problems: &'a mut Vec<Diagnostic>,
}

impl Check<'_> {
    fn at<T>(&mut self, span: &Spanned<T>, field: &str, message: String) {
        self.problems.push(Diagnostic {
            origin: self.origin.to_path_buf(),
            line: span.referenced.line(),
            column: span.referenced.column(),
            field: field.to_string(),
            message,
        });
    }

    fn duration(&mut self, text: &Spanned<String>, field: &str) -> Option<Duration> {
        match parse_prometheus_duration(&text.value) {
            Ok(d) => Some(d),
            Err(e) => {
                self.at(text, field, e);
                None
            }
        }
    }

    fn rule(&mut self, field: &str, rule: RuleEntry) -> Option<AlertRule> {
        let problems_before = self.problems.len();
        let name = match (&rule.alert, &rule.record) {
            (Some(alert), None) => alert.clone(),
            (_, Some(record)) => {
                self.at(
                    record,
                    &format!("{field}.record"),
                    "recording rules are not supported; write an alerting rule".into(),
                );
                return None;
            }
            (None, None) => {
                self.at(
                    &rule.expr,
                    &format!("{field}.alert"),
                    "a rule needs `alert`".into(),
                );
                return None;
            }
        };
        let named = |what: &str| format!("{field}.{what}");
        let alert = name.value.clone();
        if !is_metric_name(&alert) {
            self.at(
                &name,
                &named("alert"),
                format!("`{alert}` is not a valid alert name"),
            );
        }
        let expr = match eval::parse(&rule.expr.value) {
            Ok(expr) => {
                for metric in eval::metric_names(&expr) {
                    match family_of_series(&metric) {
                        None => self.at(
                            &rule.expr,
                            &named("expr"),
                            format!("rule {alert}: `{metric}` is not a metric poolwatch exports"),
                        ),
                        Some(f) if f.is_agent_telemetry() => self.at(
                            &rule.expr,
                            &named("expr"),
                            format!(
                                "rule {alert}: `{metric}` is the agent's own telemetry, which \
                                 its rules do not evaluate (Prometheus can)"
                            ),
                        ),
                        Some(_) => {}
                    }
                }
                Some(expr)
            }
            Err(e) => {
                self.at(
                    &rule.expr,
                    &named("expr"),
                    format!("rule {alert}: {}", e.trim()),
                );
                None
            }
        };
        let for_ = rule
            .for_
            .as_ref()
            .map_or(Some(Duration::ZERO), |d| self.duration(d, &named("for")));
        let keep = rule
            .keep_firing_for
            .as_ref()
            .map_or(Some(Duration::ZERO), |d| {
                self.duration(d, &named("keep_firing_for"))
            });
        let labels = rule
            .labels
            .as_ref()
            .map(|l| l.value.clone())
            .unwrap_or_default();
        match (&rule.labels, labels.get("severity")) {
            (_, Some(s)) if SEVERITIES.contains(&s.as_str()) => {}
            (Some(at), Some(s)) => {
                self.at(
                    at,
                    &named("labels.severity"),
                    format!(
                        "rule {alert}: severity `{s}` is not one of {}",
                        SEVERITIES.join(", ")
                    ),
                );
            }
            (Some(at), None) => self.at(
                at,
                &named("labels"),
                format!("rule {alert}: needs a `severity` label"),
            ),
            (None, _) => self.at(
                &name,
                &named("labels"),
                format!("rule {alert}: needs labels with `severity`"),
            ),
        }
        let annotations = rule
            .annotations
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        if !annotations.contains_key("summary") {
            self.at(
                rule.annotations.as_ref().map_or(&name, |_| &name),
                &named("annotations"),
                format!("rule {alert}: needs a `summary` annotation"),
            );
        }
        let label_templates =
            self.templates(&alert, &labels, rule.labels.as_ref(), &named("labels"));
        let annotation_templates = self.templates(
            &alert,
            &annotations,
            rule.annotations.as_ref(),
            &named("annotations"),
        );
        if self.problems.len() > problems_before {
            return None;
        }
        Some(AlertRule {
            name: alert,
            expr_text: rule.expr.value.trim().to_string(),
            expr: expr?,
            for_: for_?,
            keep_firing_for: keep?,
            labels,
            label_templates,
            annotations,
            annotation_templates,
            file: self.origin.to_path_buf(),
            line: name.referenced.line(),
        })
    }

    fn templates(
        &mut self,
        alert: &str,
        map: &BTreeMap<String, String>,
        at: Option<&Spanned<BTreeMap<String, String>>>,
        field: &str,
    ) -> Vec<(String, Template)> {
        let mut out = Vec::new();
        for (key, text) in map {
            match Template::parse(text) {
                Ok(t) => out.push((key.clone(), t)),
                Err(e) => {
                    if let Some(at) = at {
                        self.at(at, &format!("{field}.{key}"), format!("rule {alert}: {e}"));
                    }
                }
            }
        }
        out
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests;
