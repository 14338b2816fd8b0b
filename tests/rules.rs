//! Rules end to end: the shipped rule tests under both evaluators, the export under promtool,
//! a saturated PgBouncer pool firing and resolving, and hot reload keeping the last good rules.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{Agent, Holders, PgBouncer, agent_config, target};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shipped_tests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("rules/tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    files
}

/// (exit code, output) of `poolwatch rules test` and of `promtool test rules` on one file.
fn both_verdicts(file: &Path) -> ((Option<i32>, String), (Option<i32>, String)) {
    let run = |cmd: &mut Command| {
        let out = cmd.arg(file).output().expect("runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    (
        run(Command::new(common::binary()).args(["rules", "test"])),
        run(Command::new("promtool").args(["test", "rules"])),
    )
}

#[test]
fn shipped_rule_tests_pass_under_both_evaluators() {
    for file in shipped_tests() {
        let (ours, theirs) = both_verdicts(&file);
        assert_eq!(
            theirs.0,
            Some(0),
            "promtool on {}:\n{}",
            file.display(),
            theirs.1
        );
        assert_eq!(
            ours.0,
            Some(0),
            "poolwatch on {}:\n{}",
            file.display(),
            ours.1
        );
    }
}

/// The same tests with one expectation off by one evaluation or one value fail in both.
#[test]
fn a_wrong_expectation_fails_under_both_evaluators() {
    let original =
        std::fs::read_to_string(root().join("rules/tests/pool-health.test.yaml")).unwrap();
    let rules = root().join("rules/pool-health.yaml");
    let mutations = [
        // keep_firing_for ends one evaluation later than the test now claims.
        ("      - eval_time: 255s\n", "      - eval_time: 270s\n"),
        // `for` is a minute: 75 s is still pending.
        (
            "      - eval_time: 90s\n        alertname: PoolUtilizationHigh",
            "      - eval_time: 75s\n        alertname: PoolUtilizationHigh",
        ),
        // The extrapolated increase is 11, not the 9.9 inside the range.
        ("failed 11 connection", "failed 9.9 connection"),
        // The counter reset counts: 17, not 9.
        ("failed 17 connection", "failed 9 connection"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (from, to) in mutations {
        assert!(original.contains(from), "{from}");
        let text = original
            .replacen(from, to, 1)
            .replace("../pool-health.yaml", rules.to_str().unwrap());
        let file = dir.path().join("mutated.test.yaml");
        std::fs::write(&file, text).unwrap();
        let (ours, theirs) = both_verdicts(&file);
        assert_eq!(
            theirs.0,
            Some(1),
            "promtool should fail with {to:?}:\n{}",
            theirs.1
        );
        assert_eq!(
            ours.0,
            Some(1),
            "poolwatch should fail with {to:?}:\n{}",
            ours.1
        );
    }
}

#[test]
fn exported_rules_pass_promtool_check_rules() {
    let dir = tempfile::tempdir().unwrap();
    for (name, extra) in [
        ("embedded.yaml", vec![]),
        (
            "from-dir.yaml",
            vec![
                "--rules".to_string(),
                root().join("rules").display().to_string(),
            ],
        ),
    ] {
        let out_file = dir.path().join(name);
        let status = Command::new(common::binary())
            .args([
                "rules",
                "export",
                "--format",
                "prometheus",
                "--output",
                out_file.to_str().unwrap(),
            ])
            .args(&extra)
            .status()
            .unwrap();
        assert!(status.success());
        let out = Command::new("promtool")
            .args(["check", "rules"])
            .arg(&out_file)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.contains("SUCCESS: 13 rules found"), "{said}");
        let exported = std::fs::read_to_string(&out_file).unwrap();
        assert!(
            exported.contains("recommendation:") && exported.contains("keep_firing_for: 2m"),
            "{exported}"
        );
    }
}

fn alerts(agent: &Agent) -> Vec<serde_json::Value> {
    let (_, body) = agent.get("/api/v1/alerts").unwrap();
    serde_json::from_str(&body).unwrap()
}

fn state_of(agent: &Agent, name: &str) -> Option<String> {
    alerts(agent)
        .into_iter()
        .find(|a| a["labels"]["alertname"] == name)
        .map(|a| a["state"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_pgbouncer_pool_fires_after_for_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let rules = common::quick_health_rules(dir.path());
    let bouncer = PgBouncer::start(5);
    let config = format!(
        "{}rules: [{}]\n",
        agent_config(
            "500ms",
            "400ms",
            &[target("pgbouncer", "bouncer", &bouncer.admin_url(), &[])]
        ),
        rules.display()
    );
    let agent = Agent::start(&config);
    let holders = Holders::spawn(&bouncer.app_config(), 12);
    // Pending first (`for: 2s`), then firing with the recommendation naming the new size.
    common::wait_for(Duration::from_secs(20), "the alert to be pending", || {
        (state_of(&agent, "PoolUtilizationHigh").as_deref() == Some("pending")).then_some(())
    });
    common::wait_for(Duration::from_secs(20), "the alert to fire", || {
        (state_of(&agent, "PoolUtilizationHigh").as_deref() == Some("firing")).then_some(())
    });
    let (_, health) = agent.get("/api/v1/health").unwrap();
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    let pool = &health["pools"][0];
    assert_eq!(pool["status"], "degraded", "{health}");
    assert_eq!(pool["warnings"][0], "High pool utilization");
    assert_eq!(pool["recommendations"][0], "Increase pool_size to 15");

    // `check` judges the same now (it has no history to wait `for` on) and exits 1.
    let out = Command::new(common::binary())
        .args([
            "check",
            "--window",
            "500ms",
            "--rules",
            rules.to_str().unwrap(),
        ])
        .args(["--target", &format!("pgbouncer={}", bouncer.admin_url())])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("recommendation: Increase pool_size to 15"),
        "{stdout}"
    );

    holders.release().await;
    common::wait_for(Duration::from_secs(20), "the alert to resolve", || {
        state_of(&agent, "PoolUtilizationHigh")
            .is_none()
            .then_some(())
    });
    let (_, health) = agent.get("/api/v1/health").unwrap();
    assert!(health.contains("\"status\":\"healthy\""), "{health}");
}

#[test]
fn a_broken_rule_file_keeps_the_last_good_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let file = rules.join("watch.yaml");
    let rule = |name: &str| {
        format!(
            "groups:\n- name: g\n  rules:\n  - alert: {name}\n    expr: poolwatch_target_up == 1\n    labels: {{severity: info}}\n    annotations: {{summary: up}}\n"
        )
    };
    std::fs::write(&file, rule("SeesTarget")).unwrap();
    let config = format!(
        "{}rules: [{}]\n",
        agent_config(
            "300ms",
            "250ms",
            &[target("postgres", "pg", &common::monitor_url(), &[])]
        ),
        rules.display()
    );
    let agent = Agent::start(&config);
    let reload_ok = |agent: &Agent| {
        agent
            .metrics()
            .get("poolwatch_reload_successful", &[("kind", "rules")])
    };
    common::wait_for(Duration::from_secs(10), "the first rule to fire", || {
        (state_of(&agent, "SeesTarget").as_deref() == Some("firing")).then_some(())
    });

    std::fs::write(
        &file,
        "groups:\n- name: g\n  rules:\n  - alert: Broken\n    expr: rate(\n",
    )
    .unwrap();
    common::wait_for(
        Duration::from_secs(2),
        "the broken file to be reported",
        || (reload_ok(&agent) == Some(0.0)).then_some(()),
    );
    assert_eq!(
        state_of(&agent, "SeesTarget").as_deref(),
        Some("firing"),
        "the previous rules keep firing"
    );
    assert!(
        agent.log().contains("watch.yaml:5"),
        "the log names file and line:\n{}",
        agent.log()
    );

    std::fs::write(&file, rule("StillSeesTarget")).unwrap();
    common::wait_for(Duration::from_secs(2), "the fixed file to load", || {
        (reload_ok(&agent) == Some(1.0)
            && state_of(&agent, "StillSeesTarget").as_deref() == Some("firing"))
        .then_some(())
    });
    assert_eq!(state_of(&agent, "SeesTarget"), None);

    std::fs::write(
        rules.join("more.yaml"),
        rule("AlsoSeesTarget").replace("name: g", "name: h"),
    )
    .unwrap();
    common::wait_for(Duration::from_secs(2), "an added file to load", || {
        (state_of(&agent, "AlsoSeesTarget").as_deref() == Some("firing")).then_some(())
    });
    std::fs::remove_file(rules.join("more.yaml")).unwrap();
    std::fs::remove_file(&file).unwrap();
    common::wait_for(Duration::from_secs(2), "the removed file to unload", || {
        (agent.metrics().get("poolwatch_rules_loaded", &[]) == Some(0.0)).then_some(())
    });
}

#[test]
fn a_broken_config_keeps_the_last_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let good = agent_config(
        "300ms",
        "250ms",
        &[target(
            "postgres",
            "pg",
            &common::monitor_url(),
            &["labels: {role: read}"],
        )],
    );
    let agent = Agent::start(&good);
    let path = agent.dir().join("poolwatch.yaml");
    let _ = dir;
    agent.wait_metrics(Duration::from_secs(10), "the target", |m| {
        (m.get("poolwatch_target_up", &[("target", "pg"), ("role", "read")]) == Some(1.0))
            .then_some(())
    });
    std::fs::write(
        &path,
        good.replace("sample_interval: 300ms", "sample_interval: often"),
    )
    .unwrap();
    agent.wait_metrics(Duration::from_secs(2), "the failed reload", |m| {
        (m.get("poolwatch_reload_successful", &[("kind", "config")]) == Some(0.0)).then_some(())
    });
    assert!(
        agent.log().contains("poolwatch.yaml:1:18: sample_interval"),
        "{}",
        agent.log()
    );
    assert_eq!(
        agent
            .metrics()
            .get("poolwatch_target_up", &[("target", "pg"), ("role", "read")]),
        Some(1.0)
    );
    std::fs::write(&path, good.replace("role: read", "role: write")).unwrap();
    agent.wait_metrics(Duration::from_secs(5), "the new label", |m| {
        (m.get(
            "poolwatch_target_up",
            &[("target", "pg"), ("role", "write")],
        ) == Some(1.0)
            && m.get("poolwatch_reload_successful", &[("kind", "config")]) == Some(1.0))
        .then_some(())
    });
}
