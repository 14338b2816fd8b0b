//! PgBouncer through its admin console (`SHOW CONFIG/DATABASES/POOLS/STATS/SERVERS`, simple query
//! protocol only). Columns are read by name from declarative tables, so PgBouncer 1.12 to 1.24
//! all map: renamed columns are aliased, new ones ignored, missing ones absent.
//!
//! Mapping (a pool is a database/user pair): used = sv_active, idle = sv_idle + sv_used,
//! pending = cl_waiting, oldest wait = maxwait + maxwait_us; wait and transaction time are STATS
//! totals per database (the store turns their deltas into averages, and into the checkout rate
//! where a transaction is a checkout of this pool's); pool_size and
//! reserve_pool (the spec's max_overflow) from DATABASES, else CONFIG; churn from SERVERS.

use std::time::Duration;

use rustc_hash::FxHashMap;

use super::churn::ChurnTracker;
use super::rows::{Column, Rows, Unit, Values, column};
use super::session::{Session, Startup};
use super::{ErrorKind, SampleError, SampleFuture, Source};
use crate::model::{
    Labels, PoolLimits, PoolSample, PoolTotals, ServerSample, TargetSample, dataset_of_database,
};
use crate::secret::Connection;

/// PgBouncer's own pseudo-database: an admin console, not a pool of anyone's.
const ADMIN_DATABASE: &str = "pgbouncer";

const POOLS: &[Column] = &[
    column(&["cl_active"], Unit::Count),
    column(&["cl_waiting"], Unit::Count),
    column(&["sv_active"], Unit::Count),
    column(&["sv_idle"], Unit::Count),
    column(&["sv_used"], Unit::Count),
    column(&["maxwait"], Unit::Seconds),
    // Since 1.8 the sub-second part of maxwait comes separately.
    column(&["maxwait_us"], Unit::Microseconds),
];

const STATS: &[Column] = &[
    column(&["total_xact_count"], Unit::Count),
    // 1.23+: how often a client was given a server; the true divisor of the average wait.
    column(&["total_server_assignment_count"], Unit::Count),
    column(&["total_xact_time"], Unit::Microseconds),
    column(&["total_wait_time"], Unit::Microseconds),
];

const DATABASES: &[Column] = &[
    column(&["pool_size"], Unit::Count),
    // Renamed from reserve_pool in 1.24.
    column(&["reserve_pool_size", "reserve_pool"], Unit::Count),
    // 1.23+; before it only the global setting exists.
    column(&["server_lifetime"], Unit::Seconds),
];

/// Settings read from `SHOW CONFIG` (key/value rows, not columns).
const SETTINGS: &[&str] = &[
    "default_pool_size",
    "reserve_pool_size",
    "max_client_conn",
    "query_wait_timeout",
    "server_lifetime",
];

/// The five answers one sample reads.
#[derive(Debug, Default)]
pub struct Show {
    pub config: Rows,
    pub databases: Rows,
    pub pools: Rows,
    pub stats: Rows,
    pub servers: Rows,
}

pub struct PgBouncer {
    session: Session,
    churn: ChurnTracker,
}

impl PgBouncer {
    pub fn new(connection: &Connection, timeout: Duration) -> PgBouncer {
        PgBouncer {
            session: Session::new(connection.clone(), Startup::default(), timeout),
            churn: ChurnTracker::default(),
        }
    }

    async fn show(&mut self) -> Result<Show, SampleError> {
        let [config, databases, pools, stats, servers] = (self.session)
            .queries([
                "SHOW CONFIG",
                "SHOW DATABASES",
                "SHOW POOLS",
                "SHOW STATS",
                "SHOW SERVERS",
            ])
            .await?;
        Ok(Show {
            config,
            databases,
            pools,
            stats,
            servers,
        })
    }
}

impl Source for PgBouncer {
    fn sample(&mut self) -> SampleFuture<'_> {
        Box::pin(async move {
            let show = self.show().await?;
            map(&show, &mut self.churn)
        })
    }

    fn reset(&mut self) {
        self.session.reset();
        self.churn.reset();
    }
}

/// Maps one set of SHOW answers to the pool model (pure but for the churn baseline).
pub fn map(show: &Show, churn: &mut ChurnTracker) -> Result<TargetSample, SampleError> {
    let mut warnings = Vec::new();
    let settings = settings(&show.config);
    let defaults = PoolLimits {
        pool_size: settings.count("default_pool_size"),
        max_overflow: settings.count("reserve_pool_size"),
        // 0 disables these settings: no limit is not a limit of 0 seconds.
        timeout_seconds: settings.get("query_wait_timeout").filter(|v| *v > 0.0),
        recycle_seconds: settings.get("server_lifetime").filter(|v| *v > 0.0),
        ..PoolLimits::default()
    };
    let databases = by_name(&show.databases, &["name"], DATABASES);
    let stats = by_name(&show.stats, &["database"], STATS);
    let mut pools_per_database: FxHashMap<&str, usize> = FxHashMap::default();
    for database in show.pools.iter().filter_map(|row| row.text(&["database"])) {
        *pools_per_database.entry(database).or_default() += 1;
    }
    server_churn(&show.servers, churn);

    let mut pools = Vec::new();
    let mut client_connections = 0;
    for row in show.pools.iter() {
        let (Some(database), Some(user)) = (row.text(&["database"]), row.text(&["user"])) else {
            return Err(SampleError {
                kind: ErrorKind::Protocol,
                message: "SHOW POOLS has no database/user columns".into(),
            });
        };
        let v = row.read(POOLS);
        // Saturating: a counter PgBouncer garbles must not overflow the agent.
        client_connections = [v.count("cl_active"), v.count("cl_waiting")]
            .into_iter()
            .flatten()
            .fold(client_connections, u64::saturating_add);
        if database == ADMIN_DATABASE {
            continue;
        }
        if v.get("sv_active").is_none() {
            warnings.push(format!(
                "SHOW POOLS for {database}/{user} has no sv_active column"
            ));
        }
        let pool = format!("{database}/{user}");
        let db = databases.get(database);
        let limits = PoolLimits {
            pool_size: db.and_then(|d| d.count("pool_size")),
            max_overflow: db.and_then(|d| d.count("reserve_pool_size")),
            timeout_seconds: None,
            recycle_seconds: db
                .and_then(|d| d.get("server_lifetime"))
                .filter(|v| *v > 0.0),
            ..PoolLimits::default()
        }
        .or(defaults);
        let st = stats.get(database);
        let (opened, closed) = churn.totals(&pool);
        let idle = match (v.count("sv_idle"), v.count("sv_used")) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        };
        let oldest_wait = match (v.get("maxwait"), v.get("maxwait_us")) {
            (None, None) => None,
            (s, us) => Some(s.unwrap_or(0.0) + us.unwrap_or(0.0)),
        };
        let transactions = st.and_then(|s| s.count("total_xact_count"));
        // A transaction is a checkout of a server only in transaction and statement pooling
        // (in session pooling a client keeps its server for the whole session), and STATS
        // count per database: with several pools on one database they are not this pool's.
        let checkouts_counted =
            matches!(row.text(&["pool_mode"]), Some("transaction" | "statement"))
                && pools_per_database.get(database) == Some(&1);
        pools.push(PoolSample {
            labels: dataset_of_database(database)
                .map(|d| Labels::from([("dataset".to_string(), d.to_string())]))
                .unwrap_or_default(),
            used: v.count("sv_active"),
            idle,
            pending: v.count("cl_waiting"),
            oldest_wait_seconds: oldest_wait,
            limits,
            totals: PoolTotals {
                transactions,
                checkouts: transactions.filter(|_| checkouts_counted),
                // Before 1.23 a server is assigned once per transaction (transaction pooling).
                assignments: st
                    .and_then(|s| s.count("total_server_assignment_count"))
                    .or(transactions),
                wait_seconds: st.and_then(|s| s.get("total_wait_time")),
                usage_seconds: st.and_then(|s| s.get("total_xact_time")),
                // A transaction's time runs from the client's first query, before it waits
                // for a server: 8 clients of 50 ms transactions on 3 servers showed 134 ms of
                // transaction time per transaction, 84 ms of it waiting (PgBouncer 1.18).
                usage_includes_wait: true,
                connections_opened: Some(opened),
                connections_closed: Some(closed),
                ..PoolTotals::default()
            },
            pool,
            ..PoolSample::default()
        });
    }
    pools.sort_by(|a, b| a.pool.cmp(&b.pool));
    Ok(TargetSample {
        pools,
        server: ServerSample {
            max_client_connections: settings.count("max_client_conn"),
            client_connections: Some(client_connections),
            ..ServerSample::default()
        },
        warnings,
        gone: Vec::new(),
    })
}

fn settings(config: &Rows) -> Values {
    config
        .iter()
        .filter_map(|row| {
            let key = row.text(&["key"])?;
            let name = SETTINGS.iter().find(|s| **s == key)?;
            Some((*name, row.text(&["value"])?.trim().parse::<f64>().ok()?))
        })
        .collect()
}

fn by_name<'a>(rows: &'a Rows, key: &[&str], table: &[Column]) -> FxHashMap<&'a str, Values> {
    rows.iter()
        .filter_map(|row| Some((row.text(key)?, row.read(table))))
        .collect()
}

/// Counts the server connections that came and went, by pool. 1.24 numbers them (`id`); before,
/// the address of the connection struct (`ptr`) is unique while it lives, and with its connect
/// time and backend pid it stays unique across reuse.
fn server_churn(servers: &Rows, churn: &mut ChurnTracker) {
    let (mut pool, mut composite) = (String::new(), String::new());
    churn.begin();
    for row in servers.iter() {
        let (Some(database), Some(user)) = (row.text(&["database"]), row.text(&["user"])) else {
            continue;
        };
        if database == ADMIN_DATABASE {
            continue;
        }
        pool.clear();
        pool.extend([database, "/", user]);
        let id = match row.text(&["id"]) {
            Some(id) => id,
            None => {
                composite.clear();
                let part = |name| row.text(&[name]).unwrap_or_default();
                composite.extend([
                    part("ptr"),
                    "|",
                    part("connect_time"),
                    "|",
                    part("remote_pid"),
                ]);
                &composite
            }
        };
        churn.saw(&pool, id);
    }
    churn.end();
}

#[cfg(test)]
mod tests;
