//! The same pool state as four PgBouncer versions print it: every version maps to one answer.

use std::collections::HashMap;

use super::*;

/// The column lists of each version, from PgBouncer's admin.c and changelog.
struct Shape {
    version: &'static str,
    pools: &'static [&'static str],
    stats: &'static [&'static str],
    databases: &'static [&'static str],
    servers: &'static [&'static str],
    config: &'static [&'static str],
}

const POOLS_1_12: &[&str] = &[
    "database",
    "user",
    "cl_active",
    "cl_waiting",
    "sv_active",
    "sv_idle",
    "sv_used",
    "sv_tested",
    "sv_login",
    "maxwait",
    "maxwait_us",
    "pool_mode",
];
const POOLS_1_18: &[&str] = &[
    "database",
    "user",
    "cl_active",
    "cl_waiting",
    "cl_active_cancel_req",
    "cl_waiting_cancel_req",
    "sv_active",
    "sv_active_cancel",
    "sv_being_canceled",
    "sv_idle",
    "sv_used",
    "sv_tested",
    "sv_login",
    "maxwait",
    "maxwait_us",
    "pool_mode",
];
const POOLS_1_24: &[&str] = &[
    "database",
    "user",
    "cl_active",
    "cl_waiting",
    "cl_active_cancel_req",
    "cl_waiting_cancel_req",
    "sv_active",
    "sv_active_cancel",
    "sv_being_canceled",
    "sv_idle",
    "sv_used",
    "sv_tested",
    "sv_login",
    "maxwait",
    "maxwait_us",
    "pool_mode",
    "load_balance_hosts",
];
const STATS_1_12: &[&str] = &[
    "database",
    "total_xact_count",
    "total_query_count",
    "total_received",
    "total_sent",
    "total_xact_time",
    "total_query_time",
    "total_wait_time",
    "avg_xact_count",
    "avg_query_count",
    "avg_recv",
    "avg_sent",
    "avg_xact_time",
    "avg_query_time",
    "avg_wait_time",
];
const STATS_1_24: &[&str] = &[
    "database",
    "total_server_assignment_count",
    "total_xact_count",
    "total_query_count",
    "total_received",
    "total_sent",
    "total_xact_time",
    "total_query_time",
    "total_wait_time",
    "total_client_parse_count",
    "total_server_parse_count",
    "total_bind_count",
    "avg_server_assignment_count",
    "avg_xact_count",
    "avg_query_count",
    "avg_recv",
    "avg_sent",
    "avg_xact_time",
    "avg_query_time",
    "avg_wait_time",
    "avg_client_parse_count",
    "avg_server_parse_count",
    "avg_bind_count",
];
const DATABASES_1_12: &[&str] = &[
    "name",
    "host",
    "port",
    "database",
    "force_user",
    "pool_size",
    "reserve_pool",
    "pool_mode",
    "max_connections",
    "current_connections",
    "paused",
    "disabled",
];
const DATABASES_1_18: &[&str] = &[
    "name",
    "host",
    "port",
    "database",
    "force_user",
    "pool_size",
    "min_pool_size",
    "reserve_pool",
    "pool_mode",
    "max_connections",
    "current_connections",
    "paused",
    "disabled",
];
const DATABASES_1_24: &[&str] = &[
    "name",
    "host",
    "port",
    "database",
    "force_user",
    "pool_size",
    "min_pool_size",
    "reserve_pool_size",
    "server_lifetime",
    "pool_mode",
    "load_balance_hosts",
    "max_connections",
    "current_connections",
    "max_client_connections",
    "current_client_connections",
    "paused",
    "disabled",
];
const SERVERS_1_12: &[&str] = &[
    "type",
    "user",
    "database",
    "state",
    "addr",
    "port",
    "local_addr",
    "local_port",
    "connect_time",
    "request_time",
    "wait",
    "wait_us",
    "close_needed",
    "ptr",
    "link",
    "remote_pid",
    "tls",
];
const SERVERS_1_18: &[&str] = &[
    "type",
    "user",
    "database",
    "state",
    "addr",
    "port",
    "local_addr",
    "local_port",
    "connect_time",
    "request_time",
    "wait",
    "wait_us",
    "close_needed",
    "ptr",
    "link",
    "remote_pid",
    "tls",
    "application_name",
];
const SERVERS_1_21: &[&str] = &[
    "type",
    "user",
    "database",
    "state",
    "addr",
    "port",
    "local_addr",
    "local_port",
    "connect_time",
    "request_time",
    "wait",
    "wait_us",
    "close_needed",
    "ptr",
    "link",
    "remote_pid",
    "tls",
    "application_name",
    "prepared_statements",
];
const SERVERS_1_24: &[&str] = &[
    "type",
    "user",
    "database",
    "replication",
    "state",
    "addr",
    "port",
    "local_addr",
    "local_port",
    "connect_time",
    "request_time",
    "wait",
    "wait_us",
    "close_needed",
    "ptr",
    "link",
    "remote_pid",
    "tls",
    "application_name",
    "prepared_statements",
    "id",
];
const CONFIG_1_12: &[&str] = &["key", "value", "changeable"];
const CONFIG_1_18: &[&str] = &["key", "value", "default", "changeable"];

const SHAPES: &[Shape] = &[
    Shape {
        version: "1.12",
        pools: POOLS_1_12,
        stats: STATS_1_12,
        databases: DATABASES_1_12,
        servers: SERVERS_1_12,
        config: CONFIG_1_12,
    },
    Shape {
        version: "1.18",
        pools: POOLS_1_18,
        stats: STATS_1_12,
        databases: DATABASES_1_18,
        servers: SERVERS_1_18,
        config: CONFIG_1_18,
    },
    Shape {
        version: "1.21",
        pools: POOLS_1_18,
        stats: STATS_1_12,
        databases: DATABASES_1_18,
        servers: SERVERS_1_21,
        config: CONFIG_1_18,
    },
    Shape {
        version: "1.24",
        pools: POOLS_1_24,
        stats: STATS_1_24,
        databases: DATABASES_1_24,
        servers: SERVERS_1_24,
        config: CONFIG_1_18,
    },
];

/// The value a column holds in our scenario; columns not listed are filler.
fn value(column: &str, row: &HashMap<&str, &str>) -> String {
    row.get(column).map_or("0", |v| v).to_string()
}

fn rows(columns: &[&str], scenario: &[HashMap<&str, &str>]) -> Rows {
    let owned: Vec<Vec<String>> = scenario
        .iter()
        .map(|r| columns.iter().map(|c| value(c, r)).collect())
        .collect();
    let refs: Vec<Vec<&str>> = owned
        .iter()
        .map(|r| r.iter().map(String::as_str).collect())
        .collect();
    let slices: Vec<&[&str]> = refs.iter().map(Vec::as_slice).collect();
    Rows::new(columns, &slices)
}

/// 5 servers busy, 1 idle, 7 clients waiting for 2.5 s; 100 transactions that waited 3 s in all.
fn show(shape: &Shape, server_ids: &[&str]) -> Show {
    let pools = [
        HashMap::from([
            ("database", "pgbouncer"),
            ("user", "pgbouncer"),
            ("cl_active", "1"),
        ]),
        HashMap::from([
            ("database", "mdm_images"),
            ("user", "mdm"),
            ("cl_active", "5"),
            ("cl_waiting", "7"),
            ("sv_active", "5"),
            ("sv_idle", "1"),
            ("sv_used", "0"),
            ("maxwait", "2"),
            ("maxwait_us", "500000"),
            ("pool_mode", "transaction"),
        ]),
    ];
    let stats = [HashMap::from([
        ("database", "mdm_images"),
        ("total_xact_count", "100"),
        ("total_server_assignment_count", "80"),
        ("total_xact_time", "50000000"),
        ("total_wait_time", "3000000"),
    ])];
    let databases = [
        HashMap::from([
            ("name", "mdm_images"),
            ("pool_size", "5"),
            ("reserve_pool", "2"),
            ("reserve_pool_size", "2"),
        ]),
        HashMap::from([("name", "pgbouncer"), ("pool_size", "2")]),
    ];
    let servers: Vec<HashMap<&str, &str>> = server_ids
        .iter()
        .map(|id| {
            HashMap::from([
                ("database", "mdm_images"),
                ("user", "mdm"),
                ("id", *id),
                ("ptr", *id),
                ("connect_time", "2026-11-27 10:00:00 UTC"),
                ("remote_pid", *id),
            ])
        })
        .collect();
    let config = [
        HashMap::from([("key", "default_pool_size"), ("value", "20")]),
        HashMap::from([("key", "max_client_conn"), ("value", "500")]),
        HashMap::from([("key", "query_wait_timeout"), ("value", "120")]),
        HashMap::from([("key", "server_lifetime"), ("value", "3600")]),
        HashMap::from([("key", "reserve_pool_size"), ("value", "0")]),
    ];
    Show {
        config: rows(shape.config, &config),
        databases: rows(shape.databases, &databases),
        pools: rows(shape.pools, &pools),
        stats: rows(shape.stats, &stats),
        servers: rows(shape.servers, &servers),
    }
}

#[test]
fn every_version_maps_to_the_same_pool() {
    for shape in SHAPES {
        let mut churn = ChurnTracker::default();
        let sample = map(&show(shape, &["1", "2", "3", "4", "5", "6"]), &mut churn).unwrap();
        let v = shape.version;
        assert_eq!(
            sample.pools.len(),
            1,
            "{v}: the admin pseudo-database is not a pool"
        );
        let pool = &sample.pools[0];
        assert_eq!(pool.pool, "mdm_images/mdm", "{v}");
        assert_eq!(
            pool.labels.get("dataset").map(String::as_str),
            Some("images"),
            "{v}"
        );
        assert_eq!(
            (pool.used, pool.idle, pool.pending),
            (Some(5), Some(1), Some(7)),
            "{v}"
        );
        assert_eq!(pool.oldest_wait_seconds, Some(2.5), "{v}");
        assert_eq!(pool.limits.pool_size, Some(5), "{v}");
        assert_eq!(
            pool.limits.max_overflow,
            Some(2),
            "{v}: reserve_pool under either name"
        );
        assert_eq!(pool.limits.timeout_seconds, Some(120.0), "{v}");
        assert_eq!(pool.limits.recycle_seconds, Some(3600.0), "{v}");
        assert_eq!(pool.totals.transactions, Some(100), "{v}");
        assert_eq!(pool.totals.checkouts, Some(100), "{v}: transaction pooling");
        assert_eq!(pool.totals.wait_seconds, Some(3.0), "{v}");
        assert_eq!(pool.totals.usage_seconds, Some(50.0), "{v}");
        let assignments = if v == "1.24" { 80 } else { 100 };
        assert_eq!(pool.totals.assignments, Some(assignments), "{v}");
        assert_eq!(
            pool.lock_waits, None,
            "{v}: PgBouncer cannot see lock waits"
        );
        assert_eq!(sample.server.max_client_connections, Some(500), "{v}");
        assert_eq!(
            sample.server.client_connections,
            Some(13),
            "{v}: 12 pool clients + admin"
        );
    }
}

#[test]
fn server_churn_counts_connections_that_came_and_went() {
    for shape in SHAPES {
        let mut churn = ChurnTracker::default();
        map(&show(shape, &["1", "2", "3"]), &mut churn).unwrap();
        let sample = map(&show(shape, &["2", "3", "4", "5"]), &mut churn).unwrap();
        let totals = sample.pools[0].totals;
        assert_eq!(
            (totals.connections_opened, totals.connections_closed),
            (Some(2), Some(1)),
            "{}",
            shape.version
        );
    }
}

#[test]
fn settings_fill_what_databases_lacks_and_zero_disables() {
    let mut show = show(&SHAPES[1], &[]);
    show.databases = Rows::new(&["name"], &[&["mdm_images"]]);
    show.config = Rows::new(
        &["key", "value"],
        &[
            &["default_pool_size", "20"],
            &["reserve_pool_size", "3"],
            &["query_wait_timeout", "0"],
        ],
    );
    let sample = map(&show, &mut ChurnTracker::default()).unwrap();
    let limits = sample.pools[0].limits;
    assert_eq!((limits.pool_size, limits.max_overflow), (Some(20), Some(3)));
    assert_eq!(limits.timeout_seconds, None);
}

#[test]
fn an_answer_without_pool_identity_is_a_protocol_error() {
    let mut show = show(&SHAPES[0], &[]);
    show.pools = Rows::new(&["something"], &[&["1"]]);
    let err = map(&show, &mut ChurnTracker::default()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol);
}

#[test]
fn transactions_are_checkouts_only_in_transaction_pooling_of_a_pool_alone_on_its_database() {
    let shape = SHAPES.last().unwrap();
    let mut show = show(shape, &[]);
    let checkouts = |show: &Show| {
        map(show, &mut ChurnTracker::default()).unwrap().pools[0]
            .totals
            .checkouts
    };
    assert_eq!(checkouts(&show), Some(100));
    show.pools = rows(
        shape.pools,
        &[HashMap::from([
            ("database", "mdm_images"),
            ("user", "mdm"),
            ("pool_mode", "session"),
        ])],
    );
    assert_eq!(checkouts(&show), None, "session pooling");
    show.pools = rows(
        shape.pools,
        &[
            HashMap::from([
                ("database", "mdm_images"),
                ("user", "mdm"),
                ("pool_mode", "transaction"),
            ]),
            HashMap::from([
                ("database", "mdm_images"),
                ("user", "etl"),
                ("pool_mode", "transaction"),
            ]),
        ],
    );
    let sample = map(&show, &mut ChurnTracker::default()).unwrap();
    assert_eq!(sample.pools.len(), 2);
    for pool in &sample.pools {
        assert_eq!(pool.totals.transactions, Some(100), "{}", pool.pool);
        assert_eq!(
            pool.totals.checkouts, None,
            "{}: the database's STATS",
            pool.pool
        );
    }
}
