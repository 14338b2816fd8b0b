//! The whole exposition of a fixed snapshot, pinned by a golden file. Regenerate it with
//! `POOLWATCH_BLESS=1 cargo test --lib` and review the diff.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::exposition::family_named;
use crate::model::{
    Histogram, Labels, PoolFigures, PoolHistograms, PoolLimits, PoolSample, PoolTotals,
    ServerSample, SourceKind,
};
use crate::sources::ErrorKind;
use crate::status::{AgentStatus, TargetStatus};

pub(crate) fn snapshot() -> Snapshot {
    let mut pool = PoolFigures {
        utilization: Some(1.0),
        overflow_utilization: Some(0.0),
        avg_wait_time_seconds: Some(0.25),
        avg_usage_time_seconds: Some(0.5),
        checkouts_per_second: Some(10.0),
        churn_per_minute: Some(3.0),
        connection_errors: None,
        recommended_pool_size: None,
        recommendation: None,
        observed_seconds: Some(600.0),
        dataset_recommended_size: None,
        wal_growth_bytes_per_second: None,
        recommended_from: None,
        latest: Arc::new(PoolSample {
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
                ..PoolLimits::default()
            },
            histograms: PoolHistograms {
                wait_time: Some(Arc::new(Histogram {
                    bounds: vec![0.005, 0.1, 1.0],
                    counts: vec![3, 4, 0, 1],
                    sum: 2.75,
                    count: 8,
                })),
                ..PoolHistograms::default()
            },
            totals: PoolTotals {
                transactions: Some(100),
                connections_opened: Some(6),
                connections_closed: Some(1),
                ..PoolTotals::default()
            },
            ..PoolSample::default()
        }),
    };
    // 5 used + 7 waiting: the 80% rule's 15 outweighs Erlang C on 10 checkouts/s × 0.5 s.
    pool.recommend(crate::advisor::WaitTarget::default(), None, None);
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
        pools: Arc::new([pool]),
        gone: vec![],
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
        pools: Arc::default(),
        gone: vec![],
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
        let family = family_named(name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(kind, family.instrument.prometheus_type(), "{name}");
        assert!(
            !family.is_agent_telemetry(),
            "{name} is the facade's to write"
        );
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
    }
}

#[test]
fn unknown_figures_are_absent_not_zero() {
    // Five connections busy in long transactions: no transaction completed in the window, so
    // the averages are unknown.
    let mut snap = snapshot();
    let pool = &mut Arc::make_mut(&mut snap.targets[0].pools)[0];
    pool.avg_usage_time_seconds = None;
    pool.avg_wait_time_seconds = None;
    let text = render(&snap);
    assert!(
        !text.contains("poolwatch_pool_avg_usage_time_seconds"),
        "{text}"
    );
    assert!(
        !text.contains("poolwatch_pool_avg_wait_time_seconds"),
        "{text}"
    );
}

#[test]
fn the_state_label_is_placed_in_order() {
    let text = render(&snapshot());
    let line = text
        .lines()
        .find(|l| l.starts_with("db_client_connection_count{") && l.contains("used"))
        .unwrap();
    assert_eq!(
        line,
        "db_client_connection_count{dataset=\"images\",db_client_connection_pool_name=\"mdm_images/mdm\",db_client_connection_state=\"used\",role=\"write\",source=\"pgbouncer\",target=\"bouncer\"} 5"
    );
}

#[test]
fn values_use_prometheus_spellings() {
    let written = |v: f64| {
        let mut out = Vec::new();
        write_value(v, &mut out);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(written(5.0), "5");
    assert_eq!(written(0.25), "0.25");
    assert_eq!(written(1.8e9), "1800000000");
    assert_eq!(written(1e-7), "1e-7");
    assert_eq!(written(f64::INFINITY), "+Inf");
    assert_eq!(written(f64::NEG_INFINITY), "-Inf");
    assert_eq!(written(f64::NAN), "NaN");
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

/// A SQLite pool's database series: the file, its settings as `_info` labels, each holder
/// process with its locks, the spec's per-dataset size with the configured pool_size beside it.
#[test]
fn database_files_and_their_holders_are_exported() {
    use crate::model::{DatabaseSample, HostSample, ProcessSample};
    let database = DatabaseSample {
        path: "/mdm/datasets/iris/iris.sqlite".into(),
        size_bytes: Some(8192),
        wal_size_bytes: Some(4152),
        settings: BTreeMap::from([("journal_mode".into(), "wal".into())]),
        page_size_bytes: Some(4096),
        rows: Some(150),
        processes: vec![ProcessSample {
            pid: 42,
            name: "python3".into(),
            connections: Some(4),
            locks: vec!["wal_read", "wal_write"],
            cpu_utilization: None,
            resident_memory_bytes: Some(1 << 20),
        }],
        lock_waiters: Some(0),
        ..DatabaseSample::default()
    };
    let pool = PoolFigures::from_latest(PoolSample {
        pool: "iris".into(),
        labels: Labels::from([("backend".into(), "sqlite".into())]),
        limits: PoolLimits {
            pool_size: Some(5),
            ..PoolLimits::default()
        },
        database: Some(Box::new(database)),
        ..PoolSample::default()
    });
    let target = TargetStatus {
        name: "mdm".into(),
        source: SourceKind::Mdm,
        endpoint: "/mdm".into(),
        labels: Labels::new(),
        up: true,
        samples: 1,
        last_duration_seconds: None,
        last_success_unix_seconds: None,
        errors: BTreeMap::new(),
        last_error: None,
        warnings: vec![],
        gone: vec![],
        server: Some(ServerSample {
            host: Some(HostSample {
                cpu_utilization: Some(0.25),
                memory_total_bytes: Some(1000),
                memory_available_bytes: Some(750),
            }),
            ..ServerSample::default()
        }),
        pools: Arc::new([pool]),
    };
    let text = render(&Snapshot {
        targets: vec![target],
        agent: AgentStatus::default(),
    });
    let common = "backend=\"sqlite\",db_client_connection_pool_name=\"iris\"";
    for line in [
        format!("poolwatch_database_size_bytes{{{common},source=\"mdm\",target=\"mdm\"}} 8192"),
        format!(
            "poolwatch_database_setting_info{{{common},setting=\"journal_mode\",source=\"mdm\",target=\"mdm\",value=\"wal\"}} 1"
        ),
        format!(
            "poolwatch_database_process_connections{{{common},pid=\"42\",process=\"python3\",source=\"mdm\",target=\"mdm\"}} 4"
        ),
        format!(
            "poolwatch_database_process_lock_info{{{common},lock=\"wal_write\",pid=\"42\",process=\"python3\",source=\"mdm\",target=\"mdm\"}} 1"
        ),
        format!(
            "poolwatch_pool_dataset_recommended_size{{{common},pool_size=\"5\",source=\"mdm\",target=\"mdm\"}} 2"
        ),
        "poolwatch_host_memory_utilization_ratio{source=\"mdm\",target=\"mdm\"} 0.25".to_string(),
    ] {
        assert!(
            text.contains(&format!("{line}\n")),
            "no `{line}` in:\n{text}"
        );
    }
    // What the source could not see is absent: no CPU for the holder after one sample.
    assert!(
        !text.contains("poolwatch_database_process_cpu_utilization_ratio{"),
        "{text}"
    );
}
