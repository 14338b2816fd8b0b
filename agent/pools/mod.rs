//! Connection pools with the spec's semantics (pool_size, max_overflow, timeout, pre_ping,
//! recycle), instrumented into the one pool model: what `benchmark` and `demo` drive, and what
//! the agent can watch in-process. Drivers that block (SQLite, DuckDB) are pooled by r2d2
//! ([`InstrumentedPool`]), tokio's (PostgreSQL) by bb8 ([`AsyncInstrumentedPool`]).
//!
//! How the spec's settings map onto both (SQLAlchemy's `QueuePool` is the reference):
//! - `pool_size + max_overflow` is `max_size`: the most connections open at once.
//! - Connections open lazily (`min_idle` none), as QueuePool's do; no idle timeout closes them.
//! - A connection returned while `pool_size` connections already sit idle is closed (the
//!   manager reports it broken on return): overflow connections live only while needed.
//! - `timeout` is `connection_timeout`: how long `get` waits before it fails.
//! - `pre_ping` is `test_on_check_out`: each checkout validates the connection first.
//! - `recycle` is `max_lifetime`: connections older than it are closed (bb8 also closes one
//!   on its return).
//!
//! r2d2's event hooks, and the guards around bb8's `get` and its connections, count checkouts,
//! waits, holds, timeouts and connections opened and closed; `get` counts the callers inside
//! it, so pending is exact.

mod asynchronous;
#[cfg(feature = "duckdb")]
pub mod duckdb;
pub mod postgres;
pub mod sqlite;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use r2d2::ManageConnection;
use r2d2::event::{
    AcquireEvent, CheckinEvent, CheckoutEvent, HandleEvent, ReleaseEvent, TimeoutEvent,
};
use serde::{Deserialize, Serialize};

use crate::model::{Labels, PoolLimits, PoolSample, PoolTotals};
pub use asynchronous::{AsyncConnection, AsyncInstrumentedPool};

/// The spec's pool settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolSettings {
    pub pool_size: u32,
    pub max_overflow: u32,
    /// How long a caller waits for a connection before it fails.
    #[serde(with = "seconds")]
    pub timeout: Duration,
    /// Validate each connection as it is checked out.
    pub pre_ping: bool,
    /// Replace connections older than this.
    #[serde(with = "optional_seconds")]
    pub recycle: Option<Duration>,
}

impl PoolSettings {
    /// The spec's `SQLITE_POOL_CONFIG`.
    pub fn sqlite() -> PoolSettings {
        PoolSettings {
            pool_size: 5,
            max_overflow: 0,
            timeout: Duration::from_secs(30),
            pre_ping: true,
            recycle: Some(Duration::from_secs(3600)),
        }
    }

    /// The spec's `DUCKDB_POOL_CONFIG`.
    pub fn duckdb() -> PoolSettings {
        PoolSettings {
            pool_size: 10,
            max_overflow: 5,
            timeout: Duration::from_secs(60),
            pre_ping: true,
            recycle: Some(Duration::from_secs(7200)),
        }
    }

    /// The spec's `POSTGRES_POOL_CONFIG`.
    pub fn postgres() -> PoolSettings {
        PoolSettings {
            pool_size: 20,
            max_overflow: 10,
            timeout: Duration::from_secs(30),
            pre_ping: true,
            recycle: Some(Duration::from_secs(3600)),
        }
    }

    /// Connections the pool may have open at once.
    pub fn max_connections(&self) -> u32 {
        self.pool_size + self.max_overflow
    }

    pub fn limits(&self) -> PoolLimits {
        PoolLimits {
            pool_size: Some(u64::from(self.pool_size)),
            max_overflow: Some(u64::from(self.max_overflow)),
            timeout_seconds: Some(self.timeout.as_secs_f64()),
            recycle_seconds: self.recycle.map(|r| r.as_secs_f64()),
            ..PoolLimits::default()
        }
    }
}

mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

mod optional_seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|v| Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Why a pool could not give a connection.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no connection within {timeout:?}{}", last_error.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Timeout {
        timeout: Duration,
        last_error: Option<String>,
    },
    #[error("pool_size must be at least 1")]
    Empty,
}

/// The pool's counters, updated by r2d2's event hooks and by `get`.
#[derive(Debug, Default)]
pub struct Counters {
    pending: AtomicU64,
    used: AtomicU64,
    open: AtomicU64,
    checkouts: AtomicU64,
    checkins: AtomicU64,
    wait_nanos: AtomicU64,
    usage_nanos: AtomicU64,
    opened: AtomicU64,
    closed: AtomicU64,
    connection_errors: AtomicU64,
    timeouts: AtomicU64,
    /// Connections handed from a caller returning one to a caller waiting for one, and the
    /// time each took: from the check-in until the waiter's checkout (waking it up, mostly).
    handoffs: AtomicU64,
    handoff_nanos: AtomicU64,
    /// When each connection back in the pool was checked in, by r2d2's connection id.
    returned_at: Mutex<HashMap<u64, Instant>>,
    /// The most connections in use, callers waiting and connections open at any instant since
    /// the last [`InstrumentedPool::take_peaks`], kept as they change rather than sampled.
    peak_used: AtomicU64,
    peak_pending: AtomicU64,
    peak_open: AtomicU64,
    /// Connections the pool has given up (counted out of `open` when it chose to close them)
    /// but not yet released. r2d2 lets a replacement open before it releases the one it
    /// dropped, so counting the close only at the release would see more than `max_size` open.
    closing: Mutex<u64>,
}

/// The highest values of the pool's gauges over a stretch of time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peaks {
    pub used: u64,
    pub pending: u64,
    pub open: u64,
}

/// Adds one to a gauge and raises its peak to match.
fn raise(gauge: &AtomicU64, peak: &AtomicU64) {
    let now = gauge.fetch_add(1, Ordering::Relaxed) + 1;
    peak.fetch_max(now, Ordering::Relaxed);
}

/// The counters at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub pending: u64,
    pub used: u64,
    pub open: u64,
    pub checkouts: u64,
    pub checkins: u64,
    pub wait_seconds: f64,
    pub usage_seconds: f64,
    pub connections_opened: u64,
    pub connections_closed: u64,
    pub connection_errors: u64,
    pub timeouts: u64,
    /// Checkouts that took a connection returned while the caller waited.
    pub handoffs: u64,
    /// Seconds from those connections' check-in to their next checkout, in all.
    pub handoff_seconds: f64,
}

impl Counters {
    fn returned<T>(&self, f: impl FnOnce(&mut HashMap<u64, Instant>) -> T) -> T {
        f(&mut self.returned_at.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn stats(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            pending: get(&self.pending),
            used: get(&self.used),
            open: get(&self.open),
            checkouts: get(&self.checkouts),
            checkins: get(&self.checkins),
            wait_seconds: get(&self.wait_nanos) as f64 / 1e9,
            usage_seconds: get(&self.usage_nanos) as f64 / 1e9,
            connections_opened: get(&self.opened),
            connections_closed: get(&self.closed),
            connection_errors: get(&self.connection_errors),
            timeouts: get(&self.timeouts),
            handoffs: get(&self.handoffs),
            handoff_seconds: get(&self.handoff_nanos) as f64 / 1e9,
        }
    }

    /// A caller starts waiting in `get`; [`Counters::asked`] when it is out.
    fn asking(&self) {
        raise(&self.pending, &self.peak_pending);
    }

    fn asked(&self) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
    }

    /// A new connection is open.
    fn opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
        raise(&self.open, &self.peak_open);
    }

    /// A connection is closed: one the pool gave up earlier ([`Counters::give_up`]), or one it
    /// dropped without saying (expired, or the pool itself dropped).
    fn closed(&self) {
        self.closed.fetch_add(1, Ordering::Relaxed);
        let mut closing = self.lock_closing();
        if *closing > 0 {
            *closing -= 1;
        } else {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn lock_closing(&self) -> std::sync::MutexGuard<'_, u64> {
        self.closing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pool will close a connection (it is broken, or failed its check-out test): it no
    /// longer counts as open, though its release comes later.
    fn give_up(&self, closing: &mut u64) {
        *closing += 1;
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A connection could not be opened.
    fn connect_failed(&self) {
        self.connection_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A caller got a connection after `wait`; `handoff` is the time since the connection's
    /// check-in if it was checked in while this caller waited.
    fn checked_out(&self, wait: Duration, handoff: Option<Duration>) {
        if let Some(handoff) = handoff {
            self.handoffs.fetch_add(1, Ordering::Relaxed);
            self.handoff_nanos
                .fetch_add(nanos(handoff), Ordering::Relaxed);
        }
        raise(&self.used, &self.peak_used);
        self.checkouts.fetch_add(1, Ordering::Relaxed);
        self.wait_nanos.fetch_add(nanos(wait), Ordering::Relaxed);
    }

    /// A connection comes back after being used for `usage`.
    fn checked_in(&self, usage: Duration) {
        self.used.fetch_sub(1, Ordering::Relaxed);
        self.checkins.fetch_add(1, Ordering::Relaxed);
        self.usage_nanos.fetch_add(nanos(usage), Ordering::Relaxed);
    }

    fn timed_out(&self) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a connection being checked in closes instead of going back: it is `broken`, or
    /// the pool would otherwise hold more than `pool_size` idle ones (QueuePool's overflow).
    /// The check-in has already counted it as no longer used. Both pools drop a connection for
    /// which this is true, so it is given up at once.
    fn closes_on_return(&self, broken: bool, pool_size: u64) -> bool {
        let mut closing = self.lock_closing();
        let open = self.open.load(Ordering::Relaxed);
        let used = self.used.load(Ordering::Relaxed);
        let closes = broken || open.saturating_sub(used) > pool_size;
        if closes {
            self.give_up(&mut closing);
        }
        closes
    }

    /// A connection failed its check-out test; r2d2 drops it.
    fn failed_test(&self) {
        let mut closing = self.lock_closing();
        self.give_up(&mut closing);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Debug)]
struct Events(Arc<Counters>);

impl HandleEvent for Events {
    fn handle_acquire(&self, _: AcquireEvent) {
        self.0.opened();
    }

    fn handle_release(&self, event: ReleaseEvent) {
        self.0
            .returned(|returned| returned.remove(&event.connection_id()));
        self.0.closed();
    }

    fn handle_checkout(&self, event: CheckoutEvent) {
        let now = Instant::now();
        // A connection checked in after this caller asked was handed to it: the time since its
        // check-in is the hand-off, which the queueing model does not know of.
        let handoff = self
            .0
            .returned(|returned| returned.remove(&event.connection_id()))
            .filter(|&returned| {
                now.checked_sub(event.duration())
                    .is_some_and(|asked| returned > asked)
            })
            .map(|returned| now - returned);
        self.0.checked_out(event.duration(), handoff);
    }

    fn handle_timeout(&self, _: TimeoutEvent) {
        self.0.timed_out();
    }

    fn handle_checkin(&self, event: CheckinEvent) {
        let now = Instant::now();
        self.0
            .returned(|returned| returned.insert(event.connection_id(), now));
        self.0.checked_in(event.duration());
    }
}

/// A backend's connection manager with the pool's accounting around it: failed connects are
/// counted, and a connection coming back to a pool that already holds `pool_size` idle ones is
/// reported broken so r2d2 closes it (QueuePool's overflow).
#[derive(Debug)]
pub struct Managed<M> {
    inner: M,
    pool_size: u64,
    counters: Arc<Counters>,
}

/// A driver error with its causes, as one message: r2d2 keeps only the text of the last
/// error, and postgres' own text is just "db error" without them.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DriverError(String);

/// An error and its sources, joined by ": ".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

impl<M: ManageConnection> ManageConnection for Managed<M> {
    type Connection = M::Connection;
    type Error = DriverError;

    fn connect(&self) -> Result<M::Connection, DriverError> {
        self.inner.connect().map_err(|error| {
            self.counters.connect_failed();
            let error = DriverError(error_chain(&error));
            tracing::debug!(%error, "pool connect failed");
            error
        })
    }

    fn is_valid(&self, conn: &mut M::Connection) -> Result<(), DriverError> {
        self.inner.is_valid(conn).map_err(|e| {
            self.counters.failed_test();
            DriverError(error_chain(&e))
        })
    }

    fn has_broken(&self, conn: &mut M::Connection) -> bool {
        let broken = self.inner.has_broken(conn);
        self.counters.closes_on_return(broken, self.pool_size)
    }
}

/// What every instrumented pool keeps beside its connections: its name (the pool's
/// `db.client.connection.pool.name`), labels, settings and counters.
pub struct Instruments {
    name: String,
    labels: Labels,
    settings: PoolSettings,
    counters: Arc<Counters>,
}

impl Instruments {
    fn new(name: &str, labels: Labels, settings: PoolSettings) -> Result<Instruments, PoolError> {
        if settings.pool_size == 0 {
            return Err(PoolError::Empty);
        }
        Ok(Instruments {
            name: name.to_string(),
            labels,
            settings,
            counters: Arc::new(Counters::default()),
        })
    }

    fn timeout(&self, last_error: Option<String>) -> PoolError {
        PoolError::Timeout {
            timeout: self.settings.timeout,
            last_error,
        }
    }
}

/// A pool with the spec's settings whose every checkout, wait and connection is counted:
/// [`InstrumentedPool`] for drivers that block, [`AsyncInstrumentedPool`] for tokio's.
pub trait CountedPool {
    fn instruments(&self) -> &Instruments;

    /// Idle connections in the pool now.
    fn idle(&self) -> u64;

    fn name(&self) -> &str {
        &self.instruments().name
    }

    fn settings(&self) -> PoolSettings {
        self.instruments().settings
    }

    fn stats(&self) -> Stats {
        self.instruments().counters.stats()
    }

    /// The peaks since the last call (or since the pool was made), and a new stretch starting
    /// from the gauges' values now.
    fn take_peaks(&self) -> Peaks {
        let c = &self.instruments().counters;
        let take = |peak: &AtomicU64, gauge: &AtomicU64| {
            peak.swap(gauge.load(Ordering::Relaxed), Ordering::Relaxed)
        };
        Peaks {
            used: take(&c.peak_used, &c.used),
            pending: take(&c.peak_pending, &c.pending),
            open: take(&c.peak_open, &c.open),
        }
    }

    /// The pool in the one pool model, as a source reports it.
    fn sample(&self) -> PoolSample {
        let instruments = self.instruments();
        let stats = self.stats();
        PoolSample {
            pool: instruments.name.clone(),
            labels: instruments.labels.clone(),
            used: Some(stats.used),
            idle: Some(self.idle()),
            pending: Some(stats.pending),
            limits: instruments.settings.limits(),
            totals: PoolTotals {
                transactions: Some(stats.checkins),
                checkouts: Some(stats.checkins),
                assignments: Some(stats.checkouts),
                wait_seconds: Some(stats.wait_seconds),
                usage_seconds: Some(stats.usage_seconds),
                connections_opened: Some(stats.connections_opened),
                connections_closed: Some(stats.connections_closed),
                connection_errors: Some(stats.connection_errors),
                timeouts: Some(stats.timeouts),
                usage_includes_wait: false,
            },
            ..PoolSample::default()
        }
    }
}

/// The instrumented pool on r2d2, for drivers that block (SQLite, DuckDB).
pub struct InstrumentedPool<M: ManageConnection> {
    instruments: Instruments,
    pool: r2d2::Pool<Managed<M>>,
}

pub type Connection<M> = r2d2::PooledConnection<Managed<M>>;

impl<M: ManageConnection> InstrumentedPool<M> {
    /// A pool named `name` (its `db.client.connection.pool.name`); opens nothing yet.
    pub fn new(
        name: &str,
        labels: Labels,
        manager: M,
        settings: PoolSettings,
    ) -> Result<InstrumentedPool<M>, PoolError> {
        let instruments = Instruments::new(name, labels, settings)?;
        let counters = &instruments.counters;
        let pool = r2d2::Pool::builder()
            .max_size(settings.max_connections())
            .min_idle(Some(0))
            .idle_timeout(None)
            .max_lifetime(settings.recycle)
            .connection_timeout(settings.timeout)
            .test_on_check_out(settings.pre_ping)
            .event_handler(Box::new(Events(Arc::clone(counters))))
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(Managed {
                inner: manager,
                pool_size: u64::from(settings.pool_size),
                counters: Arc::clone(counters),
            });
        Ok(InstrumentedPool { instruments, pool })
    }

    /// A connection, waiting at most the pool's `timeout`.
    pub fn get(&self) -> Result<Connection<M>, PoolError> {
        let counters = &self.instruments.counters;
        counters.asking();
        let result = self.pool.get();
        counters.asked();
        result.map_err(|e| {
            self.instruments.timeout(
                e.to_string()
                    .strip_prefix("timed out waiting for connection")
                    .and_then(|rest| rest.strip_prefix(": ").map(str::to_string)),
            )
        })
    }
}

impl<M: ManageConnection> CountedPool for InstrumentedPool<M> {
    fn instruments(&self) -> &Instruments {
        &self.instruments
    }

    fn idle(&self) -> u64 {
        u64::from(self.pool.state().idle_connections)
    }
}

#[cfg(test)]
mod tests;
