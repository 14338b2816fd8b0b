//! `poolwatch rules export --format prometheus`: the loaded rule set as one Prometheus rule file
//! (our `warning` and `recommendation` annotations stay annotations), for a Prometheus server to
//! evaluate the same rules over the agent's scraped series.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::files::RuleSet;

#[derive(Serialize)]
struct File<'a> {
    groups: Vec<Group<'a>>,
}

#[derive(Serialize)]
struct Group<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    rules: Vec<Rule<'a>>,
}

#[derive(Serialize)]
struct Rule<'a> {
    alert: &'a str,
    expr: &'a str,
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    for_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_firing_for: Option<String>,
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
}

/// A Prometheus duration: `1h30m`, `90s` → `1m30s`, `250ms`.
pub fn prometheus_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    const UNITS: [(&str, u128); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    let mut out = String::new();
    for (unit, size) in UNITS {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

fn nonzero(d: Duration) -> Option<String> {
    (!d.is_zero()).then(|| prometheus_duration(d))
}

/// The rule set as a Prometheus rule file (YAML).
pub fn to_prometheus(set: &RuleSet) -> Result<String, String> {
    let file = File {
        groups: set
            .groups
            .iter()
            .map(|g| Group {
                name: &g.name,
                interval: g.interval.map(prometheus_duration),
                rules: g
                    .rules
                    .iter()
                    .map(|r| Rule {
                        alert: &r.name,
                        expr: &r.expr_text,
                        for_: nonzero(r.for_),
                        keep_firing_for: nonzero(r.keep_firing_for),
                        labels: &r.labels,
                        annotations: &r.annotations,
                    })
                    .collect(),
            })
            .collect(),
    };
    serde_saphyr::to_string(&file).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_prometheus_writes_them() {
        assert_eq!(prometheus_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(prometheus_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(prometheus_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(prometheus_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn the_embedded_rules_export_and_load_again() {
        let set = RuleSet::embedded();
        let text = to_prometheus(&set).unwrap();
        let again =
            super::super::files::parse_file(std::path::Path::new("export.yaml"), &text).unwrap();
        let names: Vec<_> = again
            .iter()
            .flat_map(|g| g.rules.iter().map(|r| r.name.clone()))
            .collect();
        assert_eq!(names.len(), set.rule_count());
        assert!(names.contains(&"PoolUtilizationHigh".to_string()));
    }
}
