//! The whole exposition of a fixed snapshot, pinned by a golden file. Regenerate it with
//! `POOLWATCH_BLESS=1 cargo test --lib` and review the diff.

use std::collections::BTreeMap;

use super::*;
use crate::model::{PoolLimits, PoolSample, PoolTotals, ServerSample, SourceKind};
use crate::status::AgentStatus;

fn snapshot() -> Snapshot {
    let pool = PoolFigures {
        utilization: Some(1.0),
        overflow_utilization: Some(0.0),
        avg_wait_time_seconds: Some(0.25),
        avg_usage_time_seconds: Some(0.5),
        churn_per_minute: Some(3.0),
        connection_errors: None,
        recommended_pool_size: Some(15),
        latest: PoolSample {
            pool: "mdm_images/mdm".into(),
            labels: Labels::from([("dataset".into(), "images".into())]),
            used: Some(5),
            idle: Some(0),
            pending: Some(7),
            oldest_wait_seconds: Some(2.5),
            limits: PoolLimits {
                pool_size: Some(5),
                max_overflow: Some(2),
                timeout_seconds: Some(120.0),
                recycle_seconds: Some(3600.0),
            },
            totals: PoolTotals {
                transactions: Some(100),
                connections_opened: Some(6),
                connections_closed: Some(1),
                ..PoolTotals::default()
            },
            ..PoolSample::default()
        },
    };
    let up = TargetStatus {
        name: "bouncer".into(),
        source: SourceKind::Pgbouncer,
        endpoint: "postgres://pgbouncer@127.0.0.1:6432/pgbouncer".into(),
        labels: Labels::from([("role".into(), "write".into())]),
        up: true,
        samples: 3,
        last_duration_seconds: Some(0.004),
        last_success_unix_seconds: Some(1_800_000_000.0),
        errors: BTreeMap::from([(ErrorKind::Timeout, 2)]),
        last_error: None,
        warnings: vec![],
        server: Some(ServerSample {
            max_client_connections: Some(500),
            client_connections: Some(13),
            ..ServerSample::default()
        }),
        pools: vec![pool],
    };
    let down = TargetStatus {
        name: "pg".into(),
        source: SourceKind::Postgres,
        endpoint: "postgres://monitor@127.0.0.1:5432/postgres".into(),
        labels: Labels::new(),
        up: false,
        samples: 1,
        last_duration_seconds: Some(0.5),
        last_success_unix_seconds: None,
        errors: BTreeMap::from([(ErrorKind::Connect, 1)]),
        last_error: Some("connect: refused".into()),
        warnings: vec![],
        server: None,
        pools: vec![],
    };
    Snapshot {
        targets: vec![up, down],
        agent: AgentStatus {
            rules_loaded: 12,
            rule_evaluation_seconds: Some(0.002),
            rule_errors: BTreeMap::new(),
            reloads: BTreeMap::from([(
                "rules",
                crate::status::ReloadStatus {
                    successful: false,
                    last_success_unix_seconds: Some(1_800_000_000.0),
                    last_error: Some("r.yaml:3:1: broken".into()),
                },
            )]),
        },
    }
}

#[test]
fn exposition_matches_the_golden_file() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/agent/exporters/prometheus/testdata/golden.prom"
    );
    let rendered = render(&snapshot());
    if std::env::var_os("POOLWATCH_BLESS").is_some() {
        std::fs::write(path, &rendered).unwrap();
    }
    let golden = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        rendered, golden,
        "run with POOLWATCH_BLESS=1 to regenerate, then review"
    );
}

#[test]
fn rendering_is_deterministic() {
    assert_eq!(render(&snapshot()), render(&snapshot()));
}

#[test]
fn every_family_written_is_in_the_catalogue_with_help() {
    let text = render(&snapshot());
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split_whitespace().skip(2);
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        let def = CATALOGUE
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("{name}"));
        let want = if def.kind == Kind::Gauge {
            "gauge"
        } else {
            "counter"
        };
        assert_eq!(kind, want, "{name}");
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
    }
}

#[test]
fn a_down_target_has_telemetry_but_no_figures() {
    let text = render(&snapshot());
    assert!(text.contains("poolwatch_target_up{source=\"postgres\",target=\"pg\"} 0"));
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("poolwatch_postgres_") && l.contains("target=\"pg\""))
    );
}
