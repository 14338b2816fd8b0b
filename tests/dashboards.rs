//! The Grafana dashboards (`dashboards/*.json`) and the Prometheus example
//! (`config/prometheus.yml`) against the real things:
//! - every panel query and every variable query of every dashboard returns data from a real
//!   Prometheus scraping a running agent that watches loaded pools (a saturated private
//!   PgBouncer, the shared PostgreSQL, a contended SQLAlchemy pool reporting over OTLP), with
//!   its alerts firing to a real Alertmanager and its OTLP push going to a collector;
//! - every metric name the dashboards and the rule files use is one the agent's catalogue has;
//! - every dashboard is valid against Grafana's published schema (`dashboards/schema`);
//! - the alert tables' recommendations are the rules' own, and the JSON is what
//!   `scripts/dashboards.py` writes;
//! - `config/prometheus.yml` passes `promtool check config` with the rule file that
//!   `poolwatch rules export` writes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use poolwatch::exposition::{CATALOGUE, Instrument};
use poolwatch::rules::files::RuleSet;

use crate::common::alertmanager::{Alertmanager, Webhook, routing_config};
use crate::common::otlp::{Receiver, Transport};
use crate::common::prometheus::Prometheus;
use crate::common::{self, Agent, Holders, PgBouncer, free_port, monitor_url, target};

/// What the test gives Grafana's interval variables: the test's Prometheus scrapes every second.
const INTERVALS: [(&str, &str); 3] = [
    ("$__rate_interval", "10s"),
    ("$__interval", "1s"),
    ("$__range", "5m"),
];
/// The scrape interval of the test's Prometheus.
const SCRAPE: &str = "1s";
const LIMIT: Duration = Duration::from_secs(90);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every dashboard, by file name, in name order.
fn dashboards() -> Vec<(String, Value)> {
    let mut out = vec![];
    for entry in std::fs::read_dir(root().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let dashboard = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            out.push((name, dashboard));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["agent.json", "overview.json", "pool-detail.json"]);
    out
}

/// Every panel of a dashboard that is not a row, collapsed rows' panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = vec![];
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            out.extend(panel["panels"].as_array().into_iter().flatten());
        } else {
            out.push(panel);
        }
    }
    out
}

/// One query of one panel, named as a failure should name it.
struct PanelQuery {
    name: String,
    expr: String,
}

fn panel_queries(file: &str, dashboard: &Value) -> Vec<PanelQuery> {
    let mut out = vec![];
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap();
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{file}: panel {title:?} has no query");
        for target in targets {
            out.push(PanelQuery {
                name: format!(
                    "{file}: panel {title:?} query {}",
                    target["refId"].as_str().unwrap()
                ),
                expr: target["expr"].as_str().unwrap().to_string(),
            });
        }
    }
    out
}

/// The query variables of a dashboard, in the order Grafana resolves them.
fn query_variables(dashboard: &Value) -> Vec<&Value> {
    dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["type"] == "query")
        .collect()
}

/// Aggregations, set operators and modifiers: words of PromQL that are not metric names.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "inf",
    "nan",
];
/// Keywords followed by a list of label names in parentheses.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The index just past the bracket that closes the one at `open`, skipping quoted strings.
fn past_closing(chars: &[char], open: usize) -> usize {
    let (start, end) = (chars[open], closing(chars[open]));
    let mut depth = 0;
    let mut i = open;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = past_string(chars, i) - 1,
            c if c == start => depth += 1,
            c if c == end => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("unbalanced {start} in {}", chars.iter().collect::<String>());
}

fn closing(open: char) -> char {
    match open {
        '(' => ')',
        '[' => ']',
        '{' => '}',
        other => panic!("not a bracket: {other}"),
    }
}

/// The index just past the string literal starting at `at`.
fn past_string(chars: &[char], at: usize) -> usize {
    let quote = chars[at];
    let mut i = at + 1;
    while i < chars.len() && chars[i] != quote {
        // Backquoted strings have no escapes.
        i += if chars[i] == '\\' && quote != '`' {
            2
        } else {
            1
        };
    }
    i + 1
}

/// The metric names a PromQL expression, or a Grafana `label_values(…)` query, selects:
/// identifiers outside label matchers, ranges and strings that are neither a function
/// (followed by `(`) nor a keyword, and not the label lists of `by (…)`, `on (…)` and the like.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = past_string(&chars, i);
        } else if c == '{' || c == '[' {
            i = past_closing(&chars, i);
        } else if c == '$' {
            // A Grafana variable: `$name`, `${name}` or `${name:format}`.
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = past_closing(&chars, i);
            }
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_digit() || c == '.' {
            // A number (1e3, 0x1f, 0.8) or a duration (5m after offset).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let call = chars.get(next) == Some(&'(');
            let lower = word.to_ascii_lowercase();
            if LABEL_LISTS.contains(&lower.as_str()) && call {
                i = past_closing(&chars, next);
            } else if word == "label_values" && call {
                // label_values(label) or label_values(selector, label): only the selector
                // names a metric.
                let end = past_closing(&chars, next);
                let inner: String = chars[next + 1..end - 1].iter().collect();
                if let Some((selector, _label)) = split_label_values(&inner) {
                    names.extend(metric_names(&selector));
                }
                i = end;
            } else if !call
                && !KEYWORDS.contains(&lower.as_str())
                && !LABEL_LISTS.contains(&lower.as_str())
            {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// `selector, label` of label_values' two-argument form, split at its last top-level comma.
fn split_label_values(inner: &str) -> Option<(String, String)> {
    let chars: Vec<char> = inner.chars().collect();
    let mut i = 0;
    let mut comma = None;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = past_string(&chars, i),
            '{' | '(' | '[' => i = past_closing(&chars, i),
            ',' => {
                comma = Some(i);
                i += 1;
            }
            _ => i += 1,
        }
    }
    let comma = comma?;
    let selector: String = chars[..comma].iter().collect();
    let label: String = chars[comma + 1..].iter().collect();
    Some((selector.trim().to_string(), label.trim().to_string()))
}

/// Whether the agent exports `name`: a family of the catalogue, or a histogram's series.
fn exported(name: &str) -> bool {
    CATALOGUE.iter().any(|f| {
        f.name == name
            || (f.instrument == Instrument::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(f.name)))
    })
}

#[test]
fn the_metric_name_reader_skips_labels_functions_and_variables() {
    let expr = r#"sum by (target, le) (rate(foo_seconds_bucket{a="b}", c=~"$pool"}[$__rate_interval]))
          and on (instance) bar_total offset 5m > 0.8 * ignoring (x) baz:ratio
          or label_replace(qux, "recommendation", "$1", "alertname", "(.*)") unless time() - ${var} "#;
    let names: Vec<String> = metric_names(expr).into_iter().collect();
    assert_eq!(
        names,
        ["bar_total", "baz:ratio", "foo_seconds_bucket", "qux"]
    );
    let names: Vec<String> = metric_names(r#"label_values(up{job=~"$job", x=","}, instance)"#)
        .into_iter()
        .collect();
    assert_eq!(names, ["up"]);
    assert!(metric_names("label_values(instance)").is_empty());
    assert!(exported("db_client_connection_wait_time_seconds_bucket"));
    assert!(exported("db_client_connection_count"));
    assert!(!exported("poolwatch_pool_size_bucket"));
    assert!(!exported("up"));
}

#[test]
fn every_metric_in_the_dashboards_and_rules_is_one_the_agent_exports() {
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut note = |name: String, place: String| used.entry(name).or_default().insert(place);
    let mut queries = 0;
    for (file, dashboard) in dashboards() {
        for query in panel_queries(&file, &dashboard) {
            queries += 1;
            for name in metric_names(&query.expr) {
                note(name, query.name.clone());
            }
        }
        for variable in query_variables(&dashboard) {
            queries += 1;
            let text = variable["query"].as_str().unwrap();
            for name in metric_names(text) {
                note(name, format!("{file}: variable {}", variable["name"]));
            }
        }
    }
    let rules = RuleSet::load(&[root().join("rules")]).unwrap();
    let mut rule_count = 0;
    for rule in rules.groups.iter().flat_map(|g| &g.rules) {
        rule_count += 1;
        for name in metric_names(&rule.expr_text) {
            note(name, format!("{}: rule {}", rule.file.display(), rule.name));
        }
    }
    let unknown: Vec<String> = used
        .iter()
        .filter(|(name, _)| !exported(name))
        .map(|(name, places)| format!("{name} (in {places:?})"))
        .collect();
    assert!(
        unknown.is_empty(),
        "not exported by the agent:\n{}",
        unknown.join("\n")
    );
    eprintln!(
        "{} metric names in {queries} dashboard queries and {rule_count} rules, all exported",
        used.len()
    );
    assert!(used.len() >= 30, "{used:?}");
}

#[test]
fn every_dashboard_follows_grafanas_schema() {
    let path = root().join("dashboards/schema/dashboard.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let all = dashboards();
    for (file, dashboard) in &all {
        let errors: Vec<String> = validator
            .iter_errors(dashboard)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{file}:\n{}", errors.join("\n"));
    }
    // The schema is strict enough to catch a mistake Grafana would trip on.
    let mut broken = all[0].1.clone();
    let panel = broken["panels"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|p| p["type"] != "row")
        .unwrap();
    panel["gridPos"]["w"] = Value::from("wide");
    assert!(!validator.is_valid(&broken));
    let mut broken = all[0].1.clone();
    broken["templating"]["list"][1]["type"] = Value::from("label_values");
    assert!(!validator.is_valid(&broken));
}

#[test]
fn the_dashboards_are_what_their_script_writes() {
    // The system Python with Debian's python3-yaml (scripts/services.sh installs it).
    let out = Command::new("/usr/bin/python3")
        .arg(root().join("scripts/dashboards.py"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}edit scripts/dashboards.py, not the JSON, and run it",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every data link of every panel: (dashboard file, panel title, url).
fn data_links(all: &[(String, Value)]) -> Vec<(String, String, String)> {
    let mut out = vec![];
    for (file, dashboard) in all {
        for panel in panels(dashboard) {
            let title = panel["title"].as_str().unwrap().to_string();
            for o in panel["fieldConfig"]["overrides"].as_array().unwrap() {
                for property in o["properties"].as_array().unwrap() {
                    if property["id"] != "links" {
                        continue;
                    }
                    for link in property["value"].as_array().unwrap() {
                        let url = link["url"].as_str().unwrap().to_string();
                        out.push((file.clone(), title.clone(), url));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn the_overview_links_each_pool_to_its_detail_with_the_pool_preselected() {
    let all = dashboards();
    let links = data_links(&all);
    let from_overview: BTreeSet<&str> = links
        .iter()
        .filter(|(file, _, _)| file == "overview.json")
        .map(|(_, title, _)| title.as_str())
        .collect();
    assert_eq!(
        from_overview,
        BTreeSet::from([
            "Firing alerts and what to do",
            "Pool health",
            "Utilization, worst first"
        ])
    );
    for (file, title, url) in &links {
        let uid = url
            .strip_prefix("/d/")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("{file} {title:?}: {url}"));
        let (_, target) = all
            .iter()
            .find(|(_, d)| d["uid"] == uid)
            .unwrap_or_else(|| panic!("{file} {title:?} links to no dashboard: {url}"));
        let names: BTreeSet<&str> = target["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let set: Vec<&str> = query
            .split('&')
            .filter_map(|pair| pair.strip_prefix("var-"))
            .map(|pair| pair.split_once('=').map(|(name, _)| name).unwrap_or(pair))
            .collect();
        for name in &set {
            assert!(
                names.contains(name),
                "{file} {title:?} sets no variable {name}: {url}"
            );
        }
        // The clicked pool, and where it lives.
        assert!(
            query.contains("var-pool=${__value.raw}"),
            "{file} {title:?}: {url}"
        );
        for kept in ["instance", "target"] {
            assert!(set.contains(&kept), "{file} {title:?}: {url}");
        }
        assert!(query.contains("${__url_time_range}"), "{url}");
        assert!(query.contains("${datasource:queryparam}"), "{url}");
    }
}

/// A rule's recommendation as the dashboards show it beside the alert: its templates (the
/// alert's value and labels) as an ellipsis, as scripts/dashboards.py writes it.
fn template_free(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        out.push('…');
        let end = rest[start..].find("}}").expect("a closed template") + start + 2;
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_alert_tables_recommend_what_the_rules_do() {
    let rules = RuleSet::load(&[root().join("rules")]).unwrap();
    let want: BTreeMap<String, String> = rules
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter_map(|r| {
            let text = r.annotations.get("recommendation")?;
            Some((r.name.clone(), template_free(text)))
        })
        .collect();
    let mut tables = 0;
    for (file, dashboard) in dashboards() {
        for panel in panels(&dashboard) {
            for o in panel["fieldConfig"]["overrides"].as_array().unwrap() {
                if o["matcher"]["options"] != "recommendation" {
                    continue;
                }
                tables += 1;
                let shown: BTreeMap<String, String> = o["properties"][0]["value"][0]["options"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(alert, m)| (alert.clone(), m["text"].as_str().unwrap().to_string()))
                    .collect();
                assert_eq!(
                    shown, want,
                    "{file}: {:?}; run python3 scripts/dashboards.py",
                    panel["title"]
                );
            }
        }
    }
    assert_eq!(
        tables, 2,
        "the overview's and the pool detail's alert tables"
    );
}

/// The rule file `poolwatch rules export` writes from rules/.
fn exported_rules() -> String {
    let out = Command::new(common::binary())
        .args(["rules", "export", "--format", "prometheus", "--rules"])
        .arg(root().join("rules"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `promtool check config` on a directory holding `config/prometheus.yml` and, if given, the
/// rule file it loads: (success, what promtool said).
fn promtool_check_config(rules: Option<&str>) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::copy(root().join("config/prometheus.yml"), &config).unwrap();
    if let Some(rules) = rules {
        std::fs::write(dir.path().join("poolwatch-rules.yml"), rules).unwrap();
    }
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(&config)
        .output()
        .expect("promtool is installed (scripts/services.sh start)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn the_prometheus_example_passes_promtool_with_the_exported_rules() {
    let rules = exported_rules();
    let (ok, said) = promtool_check_config(Some(&rules));
    assert!(ok, "{said}");
    let count = RuleSet::load(&[root().join("rules")]).unwrap().rule_count();
    assert!(said.contains("SUCCESS: 1 rule files found"), "{said}");
    assert!(
        said.contains(&format!("SUCCESS: {count} rules found")),
        "{said}"
    );
    // The config does load that file: without it, promtool fails on it.
    let (ok, said) = promtool_check_config(None);
    assert!(!ok && said.contains("poolwatch-rules.yml"), "{said}");
}

/// `config/prometheus.yml` pointed at this agent and Alertmanager, scraping and evaluating
/// every second.
fn prometheus_config(agent: SocketAddr, alertmanager: u16) -> String {
    let mut text = std::fs::read_to_string(root().join("config/prometheus.yml")).unwrap();
    for (from, to) in [
        ("'127.0.0.1:9898'", format!("'{agent}'")),
        ("'127.0.0.1:9093'", format!("'127.0.0.1:{alertmanager}'")),
        ("scrape_interval: 15s", format!("scrape_interval: {SCRAPE}")),
        (
            "evaluation_interval: 15s",
            format!("evaluation_interval: {SCRAPE}"),
        ),
        ("scrape_timeout: 10s", format!("scrape_timeout: {SCRAPE}")),
    ] {
        assert!(text.contains(from), "config/prometheus.yml has no {from}");
        text = text.replace(from, &to);
    }
    text
}

/// Grafana's rendering of a multi-value variable for Prometheus: each value regex-escaped
/// (inside a PromQL string, so the backslash doubled), several as `(a|b)`.
fn multi_value(values: &[String]) -> String {
    let escaped: Vec<String> = values
        .iter()
        .map(|v| {
            v.chars()
                .map(|c| match c {
                    '\\' | '.' | '*' | '+' | '?' | '^' | '$' | '{' | '}' | '(' | ')' | '|'
                    | '[' | ']' => format!("\\\\{c}"),
                    c => c.to_string(),
                })
                .collect()
        })
        .collect();
    match escaped.as_slice() {
        [one] => one.clone(),
        many => format!("({})", many.join("|")),
    }
}

/// `text` with Grafana's interval variables and these template variables substituted.
fn substitute(text: &str, values: &[(String, String)]) -> String {
    let mut out = text.to_string();
    for (from, to) in INTERVALS {
        out = out.replace(from, to);
    }
    let mut by_length: Vec<&(String, String)> = values.iter().collect();
    by_length.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    for (name, value) in by_length {
        out = out.replace(&format!("${{{name}}}"), value);
        out = out.replace(&format!("${name}"), value);
    }
    out
}

/// Resolves a dashboard's variables in order, as Grafana does at their default (All): each
/// query runs through Prometheus' label values API with the earlier ones substituted; the
/// value is the variable's allValue if it has one, else every value it listed.
fn resolve(
    prometheus: &Prometheus,
    file: &str,
    dashboard: &Value,
) -> Result<Vec<(String, String)>, String> {
    let mut values = vec![];
    for variable in query_variables(dashboard) {
        let name = variable["name"].as_str().unwrap().to_string();
        let query = substitute(variable["query"].as_str().unwrap(), &values);
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{file}: variable {name}: not label_values: {query}"));
        let (selector, label) = match split_label_values(inner) {
            Some((selector, label)) => (Some(selector), label),
            None => (None, inner.trim().to_string()),
        };
        let params: Vec<(&str, &str)> = selector.iter().map(|s| ("match[]", s.as_str())).collect();
        let listed: Vec<String> = prometheus
            .api(&format!("/api/v1/label/{label}/values"), &params)
            .map_err(|e| format!("{file}: variable {name} ({query}): {e}"))?
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        if listed.is_empty() {
            return Err(format!("{file}: variable {name} ({query}) lists no value"));
        }
        let value = match variable["allValue"].as_str() {
            Some(all) => all.to_string(),
            None => multi_value(&listed),
        };
        values.push((name, value));
    }
    Ok(values)
}

/// Every panel query and variable query of every dashboard that has no data yet, each with
/// why; empty once all have.
fn without_data(prometheus: &Prometheus, dashboards: &[(String, Value)]) -> Vec<String> {
    let mut missing = vec![];
    for (file, dashboard) in dashboards {
        let values = match resolve(prometheus, file, dashboard) {
            Ok(values) => values,
            Err(why) => {
                missing.push(why);
                continue;
            }
        };
        for query in panel_queries(file, dashboard) {
            let expr = substitute(&query.expr, &values);
            match prometheus.query(&expr) {
                Err(why) => missing.push(format!("{}: {expr}: {why}", query.name)),
                Ok(result) => {
                    // A number, not NaN (a quantile of buckets that did not move).
                    let numbers = result
                        .iter()
                        .filter(|r| r["value"][1].as_str().is_some_and(|v| v != "NaN"))
                        .count();
                    if numbers == 0 {
                        missing.push(format!("{}: no data: {expr} -> {result:?}", query.name));
                    }
                }
            }
        }
    }
    missing
}

/// A contended SQLAlchemy pool reporting to the agent over OTLP until dropped.
struct InAppLoad {
    child: std::process::Child,
}

impl InAppLoad {
    fn start(agent: &Agent, url: &str, pool: &str) -> InAppLoad {
        let mut child = Command::new(common::python())
            .arg(root().join("tests/dashboards/inapp_load.py"))
            .args([url, pool])
            .env(
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                format!("http://{}/v1/metrics", agent.addr),
            )
            .env("OTEL_METRIC_EXPORT_INTERVAL", "300")
            .env("OTEL_SERVICE_NAME", "mdm-dashboards")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the in-app load did not start");
        InAppLoad { child }
    }

    /// Closes its stdin, which ends it, and waits for it.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the in-app load failed: {status}");
    }
}

impl Drop for InAppLoad {
    fn drop(&mut self) {
        if self.child.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_and_variable_shows_live_data_in_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    // A saturated pool: 5 server connections held in open transactions, 3 clients queued.
    let bouncer = PgBouncer::start(5);
    let holders = Holders::spawn(&bouncer.app_config(), 8);
    let webhook = Webhook::start();
    let alertmanager = Alertmanager::start(&routing_config(webhook.addr));
    let collector_port = free_port();
    let _collector = Receiver::start(Transport::Http, collector_port);
    let rules = common::quick_health_rules(dir.path());
    // The backend label MDM's sources give their pools, set here as a target's own label.
    let backend = ["labels:", "  backend: postgresql"];
    let pg = [
        "limits:",
        "  pool_size: 10",
        "  max_overflow: 0",
        "  timeout: 30",
        "  recycle: 3600",
        "labels:",
        "  backend: postgresql",
    ];
    let config = format!(
        "sample_interval: 500ms\nsample_timeout: 450ms\nrate_window: 5s\nrules: [{}]\n\
         alertmanagers: [{}]\nalert_resend_delay: 1s\n\
         otlp:\n  endpoint: http://127.0.0.1:{collector_port}/v1/metrics\n  interval: 1s\n\
         targets:\n{}{}",
        rules.display(),
        alertmanager.url(),
        target("pgbouncer", "bouncer", &bouncer.admin_url(), &backend),
        target("postgres", "pg", &monitor_url(), &pg),
    );
    let agent = Agent::start_logging(&config, "info");
    let url = format!("sqlite:///{}", dir.path().join("dataset.sqlite").display());
    let load = InAppLoad::start(&agent, &url, "dashboards-inapp");
    let prometheus = Prometheus::start_with(
        &prometheus_config(agent.addr, alertmanager.port),
        &[("poolwatch-rules.yml", &exported_rules())],
    );

    let dashboards = dashboards();
    let queries: usize = dashboards
        .iter()
        .map(|(file, d)| panel_queries(file, d).len() + query_variables(d).len())
        .sum();
    let started = Instant::now();
    let mut missing = vec![];
    while started.elapsed() < LIMIT {
        missing = without_data(&prometheus, &dashboards);
        if missing.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        missing.is_empty(),
        "after {LIMIT:?}, {} of {queries} queries have no data:\n{}",
        missing.len(),
        missing.join("\n")
    );
    eprintln!(
        "all {queries} panel and variable queries of {} dashboards have data after {:.1} s",
        dashboards.len(),
        started.elapsed().as_secs_f64()
    );
    load.stop();
    holders.release().await;
}
