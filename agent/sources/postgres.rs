//! The PostgreSQL server's own view of its clients: `pg_stat_activity` grouped by a pool key
//! (database, user or application_name), read through one read-only session with statement,
//! lock and idle-in-transaction timeouts so the agent can never hold up the server.
//!
//! used = active + idle in transaction (+ aborted, + fastpath), idle = idle; pending requests
//! live inside the application and are absent here, never 0. How long a connection has sat idle
//! in its transaction is `now() - state_change`.

use std::collections::BTreeSet;
use std::time::Duration;

use rustc_hash::FxHashMap;

use super::churn::ChurnTracker;
use super::rows::Rows;
use super::session::{Session, Startup};
use super::{ErrorKind, SampleError, SampleFuture, Source};
use crate::config::PoolKey;
use crate::model::{
    Labels, PoolSample, PoolTotals, PostgresSettings, ServerSample, TargetSample,
    dataset_of_database,
};
use crate::secret::Connection;

/// Client backends only (no autovacuum, walsender…); our own session is marked so it can be
/// counted in the server's total but left out of every pool.
const ACTIVITY: &str = "SELECT pid, datname, usename, application_name, state, wait_event_type, \
     extract(epoch FROM now() - backend_start) AS age_seconds, \
     extract(epoch FROM now() - state_change) AS state_seconds, \
     (pid = pg_backend_pid()) AS is_self \
     FROM pg_stat_activity WHERE backend_type = 'client backend'";

/// The connection limits and the settings the spec tunes (`POSTGRES_SERVER_TUNING`), in the one
/// settings query each sample already made. `current_setting` reads one setting directly
/// (pg_settings builds every setting first: twenty times the cost); memory comes back with
/// its unit (`64MB`).
const SETTINGS: &str = "SELECT current_setting('max_connections') AS max_connections, \
     current_setting('superuser_reserved_connections') AS superuser_reserved_connections, \
     current_setting('shared_buffers') AS shared_buffers, \
     current_setting('effective_cache_size') AS effective_cache_size, \
     current_setting('maintenance_work_mem') AS maintenance_work_mem, \
     current_setting('work_mem') AS work_mem, \
     current_setting('wal_buffers') AS wal_buffers, \
     current_setting('checkpoint_completion_target') AS checkpoint_completion_target, \
     current_setting('random_page_cost') AS random_page_cost";

/// How connections are grouped into pools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pools {
    pub key: PoolKey,
    /// Only these databases (with `PoolKey::Database`), each a pool even with no connection:
    /// the databases MDM registered.
    pub databases: Option<BTreeSet<String>>,
}

pub struct Postgres {
    session: Session,
    pools: Pools,
    churn: ChurnTracker,
}

impl Postgres {
    pub fn new(connection: &Connection, pools: Pools, timeout: Duration) -> Postgres {
        let millis = timeout.as_millis().max(1).to_string();
        let startup = Startup {
            settings: vec![
                ("default_transaction_read_only".into(), "on".into()),
                ("statement_timeout".into(), millis.clone()),
                ("lock_timeout".into(), millis.clone()),
                ("idle_in_transaction_session_timeout".into(), millis),
            ],
        };
        Postgres {
            session: Session::new(connection.clone(), startup, timeout),
            pools,
            churn: ChurnTracker::default(),
        }
    }
}

impl Source for Postgres {
    fn sample(&mut self) -> SampleFuture<'_> {
        Box::pin(async move {
            let [activity, settings] = self.session.queries([ACTIVITY, SETTINGS]).await?;
            map(&activity, &settings, &self.pools, &mut self.churn)
        })
    }

    fn reset(&mut self) {
        self.session.reset();
        self.churn.reset();
    }
}

#[derive(Default)]
struct Tally<'a> {
    used: u64,
    idle: u64,
    idle_in_transaction: u64,
    lock_waits: u64,
    hidden: u64,
    oldest_age: Option<f64>,
    oldest_idle_in_transaction: f64,
    database: Option<&'a str>,
    single_database: bool,
}

/// A number of seconds; text that is not a finite number is absent.
fn seconds(text: Option<&str>) -> Option<f64> {
    text.and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
}

/// Maps `pg_stat_activity` rows and server settings to pools (pure but for the churn baseline).
pub fn map<'a>(
    activity: &'a Rows,
    settings: &Rows,
    pools: &'a Pools,
    churn: &mut ChurnTracker,
) -> Result<TargetSample, SampleError> {
    let mut tallies: FxHashMap<&'a str, Tally<'a>> = FxHashMap::default();
    for database in pools.databases.iter().flatten() {
        tallies.insert(
            database,
            Tally {
                single_database: true,
                database: Some(database),
                ..Tally::default()
            },
        );
    }
    let mut connections = 0;
    churn.begin();
    for row in activity.iter() {
        connections += 1;
        if row.text(&["is_self"]) == Some("t") {
            continue;
        }
        let key = row.text(&[pools.key.column()]).unwrap_or_default();
        if pools.databases.as_ref().is_some_and(|d| !d.contains(key)) {
            continue;
        }
        let tally = tallies.entry(key).or_insert_with(|| Tally {
            single_database: true,
            ..Tally::default()
        });
        match row.text(&["state"]) {
            Some("idle") => tally.idle += 1,
            // Both hold a pool slot (and their locks) doing nothing until the application ends
            // the transaction; PostgreSQL's idle_in_transaction_session_timeout covers both.
            Some("idle in transaction" | "idle in transaction (aborted)") => {
                tally.used += 1;
                tally.idle_in_transaction += 1;
                if let Some(idle) = seconds(row.text(&["state_seconds"])) {
                    tally.oldest_idle_in_transaction = tally.oldest_idle_in_transaction.max(idle);
                }
            }
            Some("active" | "fastpath function call") => tally.used += 1,
            // NULL: the monitoring role may not see other users' sessions (grant pg_monitor).
            _ => tally.hidden += 1,
        }
        if row.text(&["wait_event_type"]) == Some("Lock") {
            tally.lock_waits += 1;
        }
        if let Some(age) = seconds(row.text(&["age_seconds"])) {
            tally.oldest_age = Some(tally.oldest_age.map_or(age, |o: f64| o.max(age)));
        }
        let database = row.text(&["datname"]);
        if tally.database.is_none() {
            tally.database = database;
        } else if tally.database != database {
            tally.single_database = false;
        }
        if let Some(pid) = row.text(&["pid"]) {
            churn.saw(key, pid);
        }
    }
    churn.end();
    let Some(row) = settings.iter().next() else {
        return Err(SampleError {
            kind: ErrorKind::Protocol,
            message: "the server returned no settings row".into(),
        });
    };
    let setting = |name: &str| row.text(&[name]).and_then(setting_value);
    let mut warnings = Vec::new();
    let mut pools: Vec<PoolSample> = tallies
        .into_iter()
        .map(|(pool, t)| {
            let (opened, closed) = churn.totals(pool);
            let visible = t.hidden == 0;
            if !visible {
                warnings.push(format!(
                    "pool {pool}: the state of {} connections is hidden from the monitoring \
                     role (grant it pg_monitor); used and idle are left absent",
                    t.hidden
                ));
            }
            let dataset = t
                .database
                .filter(|_| t.single_database)
                .and_then(dataset_of_database)
                .map(|d| Labels::from([("dataset".to_string(), d.to_string())]));
            PoolSample {
                labels: dataset.unwrap_or_default(),
                used: visible.then_some(t.used),
                idle: visible.then_some(t.idle),
                pending: None,
                oldest_connection_age_seconds: t.oldest_age,
                lock_waits: Some(t.lock_waits),
                idle_in_transaction: visible.then_some(t.idle_in_transaction),
                oldest_idle_in_transaction_seconds: visible.then_some(t.oldest_idle_in_transaction),
                totals: PoolTotals {
                    connections_opened: Some(opened),
                    connections_closed: Some(closed),
                    ..PoolTotals::default()
                },
                pool: pool.to_string(),
                ..PoolSample::default()
            }
        })
        .collect();
    pools.sort_by(|a, b| a.pool.cmp(&b.pool));
    Ok(TargetSample {
        pools,
        server: ServerSample {
            max_connections: setting("max_connections").map(|v| v as u64),
            reserved_connections: setting("superuser_reserved_connections").map(|v| v as u64),
            connections: Some(connections),
            postgres_settings: PostgresSettings {
                shared_buffers_bytes: setting("shared_buffers"),
                effective_cache_size_bytes: setting("effective_cache_size"),
                maintenance_work_mem_bytes: setting("maintenance_work_mem"),
                work_mem_bytes: setting("work_mem"),
                wal_buffers_bytes: setting("wal_buffers"),
                checkpoint_completion_target: setting("checkpoint_completion_target"),
                random_page_cost: setting("random_page_cost"),
            },
            ..ServerSample::default()
        },
        warnings,
        gone: Vec::new(),
    })
}

/// A setting as `current_setting` shows it, in base units: memory in bytes (`64MB`, `8kB`,
/// `4GB`: powers of 1024, as PostgreSQL counts them), anything else as the number it is.
fn setting_value(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(text.len());
    let value: f64 = text[..split].parse().ok()?;
    let power = match &text[split..] {
        "" | "B" => 0,
        "kB" => 1,
        "MB" => 2,
        "GB" => 3,
        "TB" => 4,
        _ => return None,
    };
    Some(value * 1024f64.powi(power))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: &[&str] = &[
        "pid",
        "datname",
        "usename",
        "application_name",
        "state",
        "wait_event_type",
        "age_seconds",
        "is_self",
        "state_seconds",
    ];

    fn settings() -> Rows {
        Rows::new(
            &[
                "max_connections",
                "superuser_reserved_connections",
                "shared_buffers",
                "work_mem",
                "checkpoint_completion_target",
                "random_page_cost",
            ],
            &[&["100", "3", "64MB", "4096kB", "0.9", "4"]],
        )
    }

    fn by_database() -> Pools {
        Pools {
            key: PoolKey::Database,
            databases: None,
        }
    }

    #[test]
    fn groups_by_key_and_counts_states() {
        let activity = Rows::new(
            COLUMNS,
            &[
                &[
                    "1",
                    "mdm_images",
                    "mdm",
                    "api",
                    "active",
                    "",
                    "10.5",
                    "f",
                    "2.5",
                ],
                &[
                    "2",
                    "mdm_images",
                    "mdm",
                    "api",
                    "idle in transaction",
                    "",
                    "3",
                    "f",
                    "7",
                ],
                &[
                    "3",
                    "mdm_images",
                    "mdm",
                    "api",
                    "active",
                    "Lock",
                    "4",
                    "f",
                    "2.5",
                ],
                &[
                    "4",
                    "mdm_images",
                    "mdm",
                    "api",
                    "idle",
                    "Client",
                    "99",
                    "f",
                    "2.5",
                ],
                &[
                    "5",
                    "postgres",
                    "monitor",
                    "poolwatch",
                    "active",
                    "",
                    "1",
                    "t",
                    "0",
                ],
            ],
        );
        let sample = map(
            &activity,
            &settings(),
            &by_database(),
            &mut ChurnTracker::default(),
        )
        .unwrap();
        assert_eq!(sample.pools.len(), 1, "our own session is no pool");
        let pool = &sample.pools[0];
        assert_eq!(pool.pool, "mdm_images");
        assert_eq!(
            (pool.used, pool.idle, pool.pending),
            (Some(3), Some(1), None)
        );
        assert_eq!(
            (pool.lock_waits, pool.idle_in_transaction),
            (Some(1), Some(1))
        );
        // Only the connection idle in its transaction counts, not how long others were idle.
        assert_eq!(pool.oldest_idle_in_transaction_seconds, Some(7.0));
        assert_eq!(pool.oldest_connection_age_seconds, Some(99.0));
        assert_eq!(
            pool.labels.get("dataset").map(String::as_str),
            Some("images")
        );
        assert_eq!(sample.server.connections, Some(5));
        assert_eq!(sample.server.headroom(), Some(92));
        let tuned = sample.server.postgres_settings;
        assert_eq!(tuned.shared_buffers_bytes, Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(tuned.work_mem_bytes, Some(4.0 * 1024.0 * 1024.0));
        assert_eq!(tuned.checkpoint_completion_target, Some(0.9));
        assert_eq!(tuned.effective_cache_size_bytes, None);
    }

    #[test]
    fn settings_are_read_in_base_units() {
        let cases = [
            ("200", Some(200.0)),
            ("0.9", Some(0.9)),
            ("8kB", Some(8192.0)),
            ("16MB", Some(16.0 * 1024.0 * 1024.0)),
            ("4GB", Some(4.0 * 1024.0 * 1024.0 * 1024.0)),
            ("1TB", Some(1024f64.powi(4))),
            ("on", None),
            ("12 parsecs", None),
        ];
        for (text, want) in cases {
            assert_eq!(setting_value(text), want, "{text}");
        }
    }

    #[test]
    fn registered_databases_are_pools_even_without_connections() {
        let activity = Rows::new(
            COLUMNS,
            &[
                &["1", "mdm_iris", "mdm", "api", "active", "", "1", "f"],
                &["2", "postgres", "mdm", "api", "active", "", "1", "f"],
            ],
        );
        let pools = Pools {
            key: PoolKey::Database,
            databases: Some(BTreeSet::from(["mdm_iris".into(), "mdm_wine".into()])),
        };
        let sample = map(&activity, &settings(), &pools, &mut ChurnTracker::default()).unwrap();
        let seen: Vec<(&str, Option<u64>, Option<u64>)> = sample
            .pools
            .iter()
            .map(|p| (p.pool.as_str(), p.used, p.idle))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("mdm_iris", Some(1), Some(0)),
                ("mdm_wine", Some(0), Some(0))
            ]
        );
        assert_eq!(sample.pools[1].labels["dataset"], "wine");
    }

    #[test]
    fn hidden_states_make_used_and_idle_absent() {
        // An empty state stands for NULL here: it is not one of the known states.
        let activity = Rows::new(
            COLUMNS,
            &[
                &["1", "d", "u", "a", "active", "", "1", "f", "2.5"],
                &["2", "d", "u", "a", "", "", "1", "f", "2.5"],
            ],
        );
        let sample = map(
            &activity,
            &settings(),
            &Pools {
                key: PoolKey::User,
                databases: None,
            },
            &mut ChurnTracker::default(),
        )
        .unwrap();
        assert_eq!((sample.pools[0].used, sample.pools[0].idle), (None, None));
        assert_eq!(sample.warnings.len(), 1);
    }

    #[test]
    fn churn_follows_backend_pids() {
        let mut churn = ChurnTracker::default();
        let at = |pids: &[&str]| {
            let owned: Vec<[String; 9]> = pids
                .iter()
                .map(|p| {
                    [
                        p.to_string(),
                        "d".into(),
                        "u".into(),
                        "app".into(),
                        "idle".into(),
                        "".into(),
                        "1".into(),
                        "f".into(),
                        "1".into(),
                    ]
                })
                .collect();
            let refs: Vec<Vec<&str>> = owned
                .iter()
                .map(|r| r.iter().map(String::as_str).collect())
                .collect();
            let slices: Vec<&[&str]> = refs.iter().map(Vec::as_slice).collect();
            Rows::new(COLUMNS, &slices)
        };
        let pools = Pools {
            key: PoolKey::ApplicationName,
            databases: None,
        };
        map(&at(&["1", "2"]), &settings(), &pools, &mut churn).unwrap();
        let sample = map(&at(&["2", "3", "4"]), &settings(), &pools, &mut churn).unwrap();
        let totals = sample.pools[0].totals;
        assert_eq!(
            (totals.connections_opened, totals.connections_closed),
            (Some(2), Some(1))
        );
    }
}
