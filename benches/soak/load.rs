//! The soak's changing load: client sessions through PgBouncer that come and go in waves across
//! the pools, and PgBouncer's own account of what they did (SHOW POOLS every second, SHOW STATS
//! at the end), so that the figures printed do not rest on the driver's word.
//!
//! Each pool is idle, light, busy or saturated at any moment, the highest level either of two
//! waves gives it:
//! - a slow wave sweeps the pools once an hour. Each pool in turn is saturated for about two
//!   minutes, long enough for the shipped `for: 1m` rules to fire, with busy and light shoulders
//!   on either side, so its load rises and falls;
//! - a fast wave sweeps the other way every five minutes over a shuffled order of the pools. Its
//!   width rises and falls with a 12-minute tide, so the mix of levels moves over the run.
//!
//! Sessions also end by themselves after 30 s to 2 min and a new one connects in their place.

use std::f64::consts::TAU;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage, SimpleQueryRow};

use crate::common::PgBouncer;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Idle,
    Light,
    Busy,
    Saturated,
}

/// What a pool's sessions do at a level: each holds a server connection for about `hold_ms`
/// (one `pg_sleep`), then thinks for about `think_ms`.
struct Profile {
    sessions: usize,
    hold_ms: u64,
    think_ms: u64,
}

impl Level {
    const ALL: [Level; 4] = [Level::Idle, Level::Light, Level::Busy, Level::Saturated];

    fn profile(self) -> Profile {
        let (sessions, hold_ms, think_ms) = match self {
            Level::Idle => (0, 0, 0),
            Level::Light => (1, 100, 2000),
            // About 0.6 of a server each: utilization near 0.6 of pool_size 2, under the 0.8 rule.
            Level::Busy => (2, 500, 300),
            // About 4.4 servers wanted of 2: callers wait, utilization 1.
            Level::Saturated => (5, 800, 100),
        };
        Profile {
            sessions,
            hold_ms,
            think_ms,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Idle => "idle",
            Level::Light => "light",
            Level::Busy => "busy",
            Level::Saturated => "saturated",
        }
    }
}

/// A wave sweeping the pools: the level of a pool by its distance from the crest, as a share of
/// all pools.
struct Wave {
    period_seconds: f64,
    saturated: f64,
    busy: f64,
    light: f64,
}

const SLOW: Wave = Wave {
    period_seconds: 3600.0,
    saturated: 0.015,
    busy: 0.05,
    light: 0.12,
};

const FAST: Wave = Wave {
    period_seconds: 300.0,
    saturated: 0.012,
    busy: 0.03,
    light: 0.07,
};

const TIDE_PERIOD_SECONDS: f64 = 720.0;

impl Wave {
    /// The level at `position` (a share of the pools, crest at 0), the band widths times `scale`.
    fn level(&self, position: f64, scale: f64) -> Level {
        let x = position.rem_euclid(1.0);
        let from_crest = x.min(1.0 - x);
        if from_crest < self.saturated * scale {
            Level::Saturated
        } else if from_crest < self.busy * scale {
            Level::Busy
        } else if from_crest < self.light * scale {
            Level::Light
        } else {
            Level::Idle
        }
    }
}

/// The level of pool `pool` of `pools`, `t` seconds into the run.
fn level(pool: usize, pools: usize, t: f64) -> Level {
    let share = |i: usize| i as f64 / pools as f64;
    let slow = SLOW.level(share(pool) - t / SLOW.period_seconds, 1.0);
    // 73 is prime to 200: the fast wave's order of the pools is not the slow one's.
    let tide = 0.5 - 0.5 * (TAU * t / TIDE_PERIOD_SECONDS).cos();
    let fast = FAST.level(
        share(pool * 73 % pools) + t / FAST.period_seconds,
        0.2 + 0.8 * tide,
    );
    slow.max(fast)
}

/// What PgBouncer showed of the driven pools at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mix {
    /// Pools with callers waiting for a server connection.
    pub waiting_pools: u64,
    /// Pools with a server connection in use and nobody waiting.
    pub active_pools: u64,
    pub quiet_pools: u64,
    pub pending: u64,
    pub clients: u64,
    pub servers: u64,
}

/// PgBouncer's view over the run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    pub now: Mix,
    /// The most callers one pool had waiting, and all pools together.
    pub most_pending_in_a_pool: u64,
    pub most_pending: u64,
    pub most_clients: u64,
    pub most_servers: u64,
}

pub struct Load {
    configs: Vec<tokio_postgres::Config>,
    levels: Vec<AtomicU8>,
    /// Per pool, one bit per session slot that has a session running.
    slots: Vec<AtomicU8>,
    stopping: AtomicBool,
    started: Instant,
    pub transactions: AtomicU64,
    pub sessions: AtomicU64,
    pub failures: AtomicU64,
    pub first_failure: Mutex<Option<String>>,
    pub seen: Mutex<Seen>,
}

impl Load {
    /// Starts driving the pools `mdm_bench_0..pools` of `bouncer`, and watching them through its
    /// admin console, on the current runtime.
    pub async fn start(bouncer: &PgBouncer, pools: usize) -> Arc<Load> {
        let configs = (0..pools)
            .map(|i| {
                let mut config = bouncer.app_config_for(&format!("mdm_bench_{i}"));
                config.connect_timeout(Duration::from_secs(10));
                config
            })
            .collect();
        let load = Arc::new(Load {
            configs,
            levels: (0..pools).map(|_| AtomicU8::new(0)).collect(),
            slots: (0..pools).map(|_| AtomicU8::new(0)).collect(),
            stopping: AtomicBool::new(false),
            started: Instant::now(),
            transactions: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            first_failure: Mutex::new(None),
            seen: Mutex::new(Seen::default()),
        });
        let admin = connect(&bouncer.admin_url().parse().unwrap())
            .await
            .expect("the PgBouncer admin console");
        tokio::spawn(drive(load.clone()));
        tokio::spawn(watch(load.clone(), admin));
        load
    }

    fn level(&self, pool: usize) -> Level {
        Level::ALL[usize::from(self.levels[pool].load(Ordering::Relaxed))]
    }

    /// Pools the driver has at each level now, in the order of [`Level::ALL`].
    pub fn levels(&self) -> [(Level, usize); 4] {
        Level::ALL.map(|level| {
            let count = (0..self.levels.len())
                .filter(|&pool| self.level(pool) == level)
                .count();
            (level, count)
        })
    }

    pub fn open_sessions(&self) -> u32 {
        self.slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed).count_ones())
            .sum()
    }

    pub fn seen(&self) -> Seen {
        *self.seen.lock().unwrap()
    }

    /// Stops the waves and waits (at most `limit`) for every session to end.
    pub async fn stop(&self, limit: Duration) {
        self.stopping.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + limit;
        while self.open_sessions() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn fail(&self, pool: usize, error: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.first_failure
            .lock()
            .unwrap()
            .get_or_insert_with(|| format!("mdm_bench_{pool}: {error}"));
    }
}

async fn connect(config: &tokio_postgres::Config) -> Result<Client, String> {
    let (client, connection) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Every second, sets each pool's level and starts the sessions it lacks.
async fn drive(load: Arc<Load>) {
    let started = load.started;
    let pools = load.configs.len();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut spawned = 0;
    while !load.stopping.load(Ordering::Relaxed) {
        tick.tick().await;
        let t = started.elapsed().as_secs_f64();
        for pool in 0..pools {
            let level = level(pool, pools, t);
            load.levels[pool].store(level as u8, Ordering::Relaxed);
            for slot in 0..level.profile().sessions {
                let bit = 1 << slot;
                if load.slots[pool].fetch_or(bit, Ordering::Relaxed) & bit == 0 {
                    spawned += 1;
                    tokio::spawn(session(load.clone(), pool, slot, spawned));
                }
            }
        }
    }
}

async fn session(load: Arc<Load>, pool: usize, slot: usize, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    // A wave front starts several sessions at once: spread their connects over a second.
    tokio::time::sleep(Duration::from_millis(rng.random_range(0..1000))).await;
    if let Err(error) = run_session(&load, pool, slot, &mut rng).await {
        load.fail(pool, error);
    }
    load.slots[pool].fetch_and(!(1 << slot), Ordering::Relaxed);
}

async fn run_session(
    load: &Load,
    pool: usize,
    slot: usize,
    rng: &mut SmallRng,
) -> Result<(), String> {
    let lifetime = Duration::from_secs(rng.random_range(30..=120));
    let client = connect(&load.configs[pool]).await?;
    load.sessions.fetch_add(1, Ordering::Relaxed);
    let born = Instant::now();
    // Each length varies by ±50 % around the level's.
    let mut around = |ms: u64| Duration::from_millis(ms / 2 + rng.random_range(0..=ms));
    loop {
        let profile = load.level(pool).profile();
        if slot >= profile.sessions
            || born.elapsed() > lifetime
            || load.stopping.load(Ordering::Relaxed)
        {
            return Ok(());
        }
        let hold = around(profile.hold_ms).as_secs_f64();
        // PgBouncer's query_wait_timeout (120 s) would end a longer wait; this ends it sooner.
        tokio::time::timeout(
            Duration::from_secs(60),
            client.simple_query(&format!("SELECT pg_sleep({hold:.3})")),
        )
        .await
        .map_err(|_| "no answer in 60 s".to_string())?
        .map_err(|e| e.to_string())?;
        load.transactions.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(around(profile.think_ms)).await;
    }
}

/// Every second, what PgBouncer shows of the driven pools.
async fn watch(load: Arc<Load>, admin: Client) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !load.stopping.load(Ordering::Relaxed) {
        tick.tick().await;
        let mut mix = Mix::default();
        let mut most_in_a_pool = 0;
        for row in bench_rows(&admin, "SHOW POOLS").await {
            let waiting = count(&row, "cl_waiting");
            let servers: u64 = ["sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"]
                .iter()
                .map(|column| count(&row, column))
                .sum();
            if waiting > 0 {
                mix.waiting_pools += 1;
            } else if count(&row, "sv_active") > 0 {
                mix.active_pools += 1;
            } else {
                mix.quiet_pools += 1;
            }
            mix.pending += waiting;
            mix.clients += count(&row, "cl_active") + waiting;
            mix.servers += servers;
            most_in_a_pool = most_in_a_pool.max(waiting);
        }
        let mut seen = load.seen.lock().unwrap();
        seen.now = mix;
        seen.most_pending_in_a_pool = seen.most_pending_in_a_pool.max(most_in_a_pool);
        seen.most_pending = seen.most_pending.max(mix.pending);
        seen.most_clients = seen.most_clients.max(mix.clients);
        seen.most_servers = seen.most_servers.max(mix.servers);
    }
}

/// Transactions PgBouncer served in the driven pools since it started (SHOW STATS).
pub async fn bouncer_transactions(bouncer: &PgBouncer) -> u64 {
    let admin = connect(&bouncer.admin_url().parse().unwrap())
        .await
        .expect("the PgBouncer admin console");
    bench_rows(&admin, "SHOW STATS")
        .await
        .iter()
        .map(|row| count(row, "total_xact_count"))
        .sum()
}

/// The rows of an admin console command for the driven pools (`mdm_bench_*`).
async fn bench_rows(admin: &Client, command: &str) -> Vec<SimpleQueryRow> {
    admin
        .simple_query(command)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row)
                if row
                    .get("database")
                    .is_some_and(|d| d.starts_with("mdm_bench_")) =>
            {
                Some(row)
            }
            _ => None,
        })
        .collect()
}

fn count(row: &SimpleQueryRow, column: &str) -> u64 {
    row.get(column)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("PgBouncer's {column} is a count"))
}
