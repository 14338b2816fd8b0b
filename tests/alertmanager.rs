//! Alerts to on-call through a real Alertmanager 0.25 routing with `config/alertmanager.yml`:
//! a saturated pool reaching the team channel and resolving, a critical alert inhibiting the
//! warnings of its pool, nothing lost while Alertmanager is down, every Alertmanager getting
//! every alert across a config reload, and the routing example passing `amtool check-config`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::alertmanager::{Alertmanager, Webhook, routing_config};
use crate::common::{self, Agent, Holders, PgBouncer, agent_config, target};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const LIMIT: Duration = Duration::from_secs(30);

/// The pool rules of the shipped files, with a `for` short enough for a test.
const POOL_RULES: &str = r#"groups:
  - name: pool
    rules:
      - alert: PoolUtilizationHigh
        expr: |
          max without (model) (poolwatch_pool_recommended_size)
            and on (target, db_client_connection_pool_name)
          poolwatch_pool_utilization_ratio > 0.8
        for: 1s
        labels:
          severity: warning
        annotations:
          summary: Pool {{ $labels.db_client_connection_pool_name }} on {{ $labels.target }} is above 80% of its pool_size
          warning: High pool utilization
          recommendation: Increase pool_size to {{ $value }}
"#;

const EXHAUSTED_RULE: &str = r#"      - alert: PoolExhausted
        expr: |
          max without (model) (poolwatch_pool_recommended_size)
            and on (target, db_client_connection_pool_name)
          db_client_connection_pending_requests > 0
            and on (target, db_client_connection_pool_name)
          db_client_connection_count{db_client_connection_state="used"}
            >= ignoring (db_client_connection_state) db_client_connection_max
        for: 1s
        labels:
          severity: critical
        annotations:
          summary: Pool {{ $labels.db_client_connection_pool_name }} on {{ $labels.target }} is exhausted and callers are queueing
          warning: Connection pool exhaustion
          recommendation: Increase pool_size to {{ $value }} (or raise max_overflow) and shorten how long connections are held
"#;

const TARGET_DOWN_RULE: &str = r#"groups:
  - name: targets
    rules:
      - alert: TargetDown
        expr: poolwatch_target_up == 0
        for: 1s
        labels:
          severity: critical
        annotations:
          summary: poolwatch cannot sample {{ $labels.target }}
          recommendation: Check that {{ $labels.target }} runs and accepts connections
"#;

const SEES_TARGET_RULE: &str = r#"groups:
  - name: targets
    rules:
      - alert: SeesTarget
        expr: poolwatch_target_up{source!="otlp"} == 1
        labels:
          severity: warning
        annotations:
          summary: poolwatch samples {{ $labels.target }}
"#;

/// Writes `rules` in `dir` and returns an agent config sampling `targets` every 500 ms with
/// those rules, sending to `alertmanagers`, then `extra` lines.
fn config(
    dir: &Path,
    rules: &str,
    targets: &[String],
    alertmanagers: &[String],
    extra: &str,
) -> String {
    let file = dir.join("rules.yaml");
    std::fs::write(&file, rules).unwrap();
    format!(
        "{}rules: [{}]\nalertmanagers: [{}]\n{extra}",
        agent_config("500ms", "400ms", targets),
        file.display(),
        alertmanagers.join(", ")
    )
}

/// What a pool alert test runs: an agent watching a private PgBouncer (one pool of 5) with
/// `rules`, sending to an Alertmanager that routes with the example config to a webhook; and the
/// directory holding the rules.
fn stack(rules: &str, extra: &str) -> (Agent, PgBouncer, Alertmanager, Webhook, tempfile::TempDir) {
    let webhook = Webhook::start();
    let am = Alertmanager::start(&routing_config(webhook.addr));
    let bouncer = PgBouncer::start(5);
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&config(
        dir.path(),
        rules,
        &[target("pgbouncer", "bouncer", &bouncer.admin_url(), &[])],
        &[am.url()],
        extra,
    ));
    (agent, bouncer, am, webhook, dir)
}

/// The agent's view of alert `name`: (state, fired_at in ms) from /api/v1/alerts.
fn agent_alert(agent: &Agent, name: &str) -> Option<(String, Option<i64>)> {
    let (_, body) = agent.get("/api/v1/alerts").unwrap();
    let alerts: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    alerts
        .into_iter()
        .find(|a| a["labels"]["alertname"] == name)
        .map(|a| {
            (
                a["state"].as_str().unwrap().to_string(),
                a["fired_at"].as_i64(),
            )
        })
}

fn parse_time(text: &str) -> SystemTime {
    humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn labels(alert: &serde_json::Value) -> BTreeMap<String, String> {
    serde_json::from_value(alert["labels"].clone()).unwrap()
}

fn pool_labels(alertname: &str, severity: &str) -> BTreeMap<String, String> {
    [
        ("alertname", alertname),
        ("severity", severity),
        ("target", "bouncer"),
        ("source", "pgbouncer"),
        ("db_client_connection_pool_name", "mdm_demo/mdm"),
        ("dataset", "demo"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_pool_reaches_the_team_channel_and_resolves() {
    let started = std::time::Instant::now();
    let (agent, bouncer, am, webhook, _dir) = stack(POOL_RULES, "");
    let up = started.elapsed();
    let holders = Holders::spawn(&bouncer.app_config(), 12);

    let firing = webhook.wait(LIMIT, "the firing alert at the webhook", |n| {
        n.has("PoolUtilizationHigh", "firing")
    });
    let fired = started.elapsed();
    let arrived = SystemTime::now();
    // Routed by severity: warnings go to the team channel.
    assert_eq!(firing.path, "team", "{:?}", firing.body);
    assert_eq!(firing.body["receiver"], "team-channel");
    let alert = &firing.alerts()[0];
    assert_eq!(labels(alert), pool_labels("PoolUtilizationHigh", "warning"));
    // 12 clients on a pool of 5: 5 used + 7 waiting fit 80% of 15.
    assert_eq!(
        alert["annotations"]["recommendation"],
        "Increase pool_size to 15"
    );
    assert_eq!(alert["annotations"]["warning"], "High pool utilization");
    assert_eq!(
        alert["annotations"]["summary"],
        "Pool mdm_demo/mdm on bouncer is above 80% of its pool_size"
    );
    assert_eq!(
        alert["generatorURL"],
        format!("http://{}/api/v1/alerts", agent.addr)
    );
    // startsAt is when the agent's alert started firing. Compared as times: Alertmanager writes
    // them back in Go's RFC 3339 form, without trailing zeros (".16Z" for our ".160Z").
    let (state, fired_at) = agent_alert(&agent, "PoolUtilizationHigh").unwrap();
    assert_eq!(state, "firing");
    let starts_at = UNIX_EPOCH + Duration::from_millis(fired_at.unwrap() as u64);
    assert_eq!(
        parse_time(alert["startsAt"].as_str().unwrap()),
        starts_at,
        "startsAt is the firing time {}",
        humantime::format_rfc3339_millis(starts_at)
    );
    // Alertmanager holds it until the lease ends: 4 × the 1m resend delay after the last send.
    let held = am.alert("PoolUtilizationHigh").unwrap();
    let lease = parse_time(held["endsAt"].as_str().unwrap())
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(
        lease > Duration::from_secs(200) && lease <= Duration::from_secs(240),
        "{lease:?}"
    );

    let releasing = started.elapsed();
    holders.release().await;
    let resolved = webhook.wait(LIMIT, "the resolved notification", |n| {
        n.has("PoolUtilizationHigh", "resolved")
    });
    let cleared = started.elapsed();
    assert_eq!(resolved.path, "team");
    let alert = &resolved.alerts()[0];
    assert_eq!(
        parse_time(alert["startsAt"].as_str().unwrap()),
        starts_at,
        "startsAt never moves"
    );
    let ended = parse_time(alert["endsAt"].as_str().unwrap());
    assert!(ended > starts_at && ended <= SystemTime::now());
    assert_eq!(agent_alert(&agent, "PoolUtilizationHigh"), None);
    // One notification each way, and none to on-call.
    let received = webhook.received();
    let summary: Vec<(&str, &str)> = received
        .iter()
        .map(|n| (n.path.as_str(), n.status()))
        .collect();
    assert_eq!(summary, [("team", "firing"), ("team", "resolved")]);
    let latency = arrived.duration_since(starts_at).unwrap();
    eprintln!(
        "end to end: agent and Alertmanager up {up:.1?}, firing at the webhook {fired:.1?} \
         ({latency:.1?} after the agent fired it), released {releasing:.1?}, resolved at the \
         webhook {cleared:.1?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_alert_inhibits_the_warnings_of_its_pool() {
    // The warning waits longer than the page, so Alertmanager already holds the page when the
    // warning comes; a warning that came first would have been notified before the page.
    let rules = format!(
        "{}{EXHAUSTED_RULE}",
        POOL_RULES.replace("for: 1s", "for: 3s")
    );
    let (agent, bouncer, am, webhook, _dir) = stack(&rules, "");
    let holders = Holders::spawn(&bouncer.app_config(), 12);

    let page = webhook.wait(LIMIT, "the page", |n| n.has("PoolExhausted", "firing"));
    assert_eq!(page.path, "on-call");
    assert_eq!(page.body["receiver"], "on-call");
    assert_eq!(
        labels(&page.alerts()[0]),
        pool_labels("PoolExhausted", "critical")
    );
    // Both fire in the agent; Alertmanager holds the warning back, naming the critical alert.
    common::wait_for(LIMIT, "the warning to fire in the agent", || {
        agent_alert(&agent, "PoolUtilizationHigh")
            .is_some_and(|a| a.0 == "firing")
            .then_some(())
    });
    let critical = am.alert("PoolExhausted").unwrap();
    let warning = common::wait_for(LIMIT, "the warning to be inhibited", || {
        am.alert("PoolUtilizationHigh")
            .filter(|w| w["status"]["state"] == "suppressed")
    });
    assert_eq!(
        warning["status"]["inhibitedBy"],
        serde_json::json!([critical["fingerprint"]])
    );
    assert!(
        !webhook
            .received()
            .iter()
            .any(|n| n.has("PoolUtilizationHigh", "firing")),
        "{:?}",
        webhook.received()
    );

    // Following the page's recommendation: the queue drains, the pool stays above 80%.
    bouncer.set_pool_size(12);
    let surfaced = webhook.wait(LIMIT, "the warning once the page resolves", |n| {
        n.has("PoolUtilizationHigh", "firing")
    });
    assert_eq!(surfaced.path, "team");
    assert_eq!(
        agent_alert(&agent, "PoolExhausted"),
        None,
        "the critical alert resolved first"
    );
    webhook.wait(LIMIT, "the page's resolution", |n| {
        n.path == "on-call" && n.has("PoolExhausted", "resolved")
    });
    holders.release().await;
}

/// Lines of the agent's log at `level` that contain `text`.
fn log_lines(agent: &Agent, level: &str, text: &str) -> usize {
    agent
        .log()
        .lines()
        .filter(|l| l.contains(level) && l.contains(text))
        .count()
}

#[test]
fn alerts_raised_and_resolved_while_alertmanager_is_down_still_arrive() {
    // A short resend delay keeps the retry backoff (at most the resend delay) short.
    let (agent, mut bouncer, mut am, webhook, _dir) =
        stack(TARGET_DOWN_RULE, "alert_resend_delay: 2s\n");
    let failure = "cannot deliver alerts; retrying with backoff";

    am.stop();
    bouncer.kill();
    common::wait_for(
        LIMIT,
        "the alert to fire while Alertmanager is down",
        || {
            agent_alert(&agent, "TargetDown")
                .is_some_and(|a| a.0 == "firing")
                .then_some(())
        },
    );
    // Retried with backoff, logged once.
    common::wait_for(LIMIT, "retries", || {
        (log_lines(&agent, "WARN", failure) == 1 && log_lines(&agent, "DEBUG", failure) >= 2)
            .then_some(())
    });
    am.resume();
    let firing = webhook.wait(LIMIT, "the alert after the outage", |n| {
        n.has("TargetDown", "firing")
    });
    assert_eq!(firing.path, "on-call");
    assert_eq!(
        firing.alerts()[0]["annotations"]["recommendation"],
        "Check that bouncer runs and accepts connections"
    );
    common::wait_for(LIMIT, "the recovery to be logged", || {
        (log_lines(&agent, "INFO", "delivering alerts again") == 1).then_some(())
    });

    // Down again while the alert resolves: the resolution waits in the queue.
    am.stop();
    bouncer.restart();
    common::wait_for(LIMIT, "the alert to resolve", || {
        agent_alert(&agent, "TargetDown").is_none().then_some(())
    });
    common::wait_for(LIMIT, "the second outage to be logged", || {
        (log_lines(&agent, "WARN", failure) == 2).then_some(())
    });
    am.resume();
    let resolved = webhook.wait(LIMIT, "the resolution after the outage", |n| {
        n.has("TargetDown", "resolved")
    });
    assert_eq!(resolved.path, "on-call");
    assert_eq!(
        resolved.alerts()[0]["startsAt"],
        firing.alerts()[0]["startsAt"]
    );
    let summary: Vec<(String, String)> = webhook
        .received()
        .iter()
        .map(|n| (n.path.clone(), n.status().to_string()))
        .collect();
    assert_eq!(
        summary,
        [("on-call", "firing"), ("on-call", "resolved")]
            .map(|(p, s)| (p.to_string(), s.to_string())),
        "{}",
        am.log()
    );
}

#[test]
fn every_alertmanager_gets_every_alert_across_a_reload() {
    let webhook = Webhook::start();
    let ams: Vec<Alertmanager> = (0..3)
        .map(|_| Alertmanager::start(&routing_config(webhook.addr)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let targets = [target("postgres", "pg", &common::monitor_url(), &[])];
    let path = dir.path().join("poolwatch.yaml");
    std::fs::write(
        &path,
        config(dir.path(), SEES_TARGET_RULE, &targets, &[ams[0].url()], ""),
    )
    .unwrap();
    // One Alertmanager from the config, one from the command line.
    let agent = Agent::start_args(&[
        "--config",
        path.to_str().unwrap(),
        "--alertmanager",
        &ams[1].url(),
    ]);
    let from = |am: &Alertmanager, what: &str| {
        let url = am.url();
        webhook.wait(LIMIT, what, move |n| {
            n.sender() == url && n.has("SeesTarget", "firing")
        })
    };
    let first = from(&ams[0], "the config's Alertmanager");
    let second = from(&ams[1], "the command line's Alertmanager");
    let starts_at = &first.alerts()[0]["startsAt"];
    assert_eq!(&second.alerts()[0]["startsAt"], starts_at);

    // The config now names the third instead of the first: the alert's state is kept.
    std::fs::write(
        &path,
        config(dir.path(), SEES_TARGET_RULE, &targets, &[ams[2].url()], ""),
    )
    .unwrap();
    let third = from(&ams[2], "the Alertmanager added by a reload");
    assert_eq!(&third.alerts()[0]["startsAt"], starts_at, "the same alert");
    for am in &ams {
        let held = am.alert("SeesTarget").unwrap();
        assert_eq!(held["labels"]["target"], "pg");
        assert_eq!(
            held["generatorURL"],
            format!("http://{}/api/v1/alerts", agent.addr)
        );
    }
}

/// Uncomments the PagerDuty and Opsgenie examples of the routing config.
fn with_examples(text: &str) -> String {
    let mut out = Vec::new();
    let mut in_example = false;
    for line in text.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        let comment = line.trim_start().strip_prefix('#');
        match comment {
            Some(rest)
                if rest.trim_start().starts_with("pagerduty_configs:")
                    || rest.trim_start().starts_with("opsgenie_configs:") =>
            {
                in_example = true;
                out.push(format!("{indent}{}", rest.trim_start()));
            }
            Some(rest) if in_example && rest.starts_with("   ") => {
                out.push(format!("{indent}{}", &rest[1..]));
            }
            _ => {
                in_example = false;
                out.push(line.to_string());
            }
        }
    }
    out.join("\n")
}

#[test]
fn the_routing_example_passes_amtool_with_and_without_its_examples() {
    let file = root().join("config/alertmanager.yml");
    let dir = tempfile::tempdir().unwrap();
    let examples = dir.path().join("examples.yml");
    let text = std::fs::read_to_string(&file).unwrap();
    let uncommented = with_examples(&text);
    assert!(
        uncommented.contains("\n    pagerduty_configs:\n      - routing_key:")
            && uncommented
                .matches("opsgenie_configs:\n      - api_key:")
                .count()
                == 2,
        "{uncommented}"
    );
    std::fs::write(&examples, uncommented).unwrap();
    for path in [file, examples] {
        let out = Command::new("amtool")
            .args(["check-config"])
            .arg(&path)
            .output()
            .expect("amtool is installed (scripts/services.sh start)");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.contains("SUCCESS") && said.contains("2 receivers"),
            "{}: {said}{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
