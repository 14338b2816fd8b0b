//! The instrumented pool on bb8, for drivers on tokio (PostgreSQL): its callers are tasks, and
//! many of them can wait on one thread, as pgbench's clients share its threads.
//!
//! The spec's settings map onto bb8 as they do onto r2d2 (see [`super`]); bb8 has no
//! event hooks, so the accounting sits around `get` and in the connection's guard instead:
//! - `get` counts the callers inside it (pending), times the wait and counts timeouts;
//! - the guard it returns times the use and counts the check-in when it is dropped;
//! - every connection carries a [`Tracked`] wrapper that counts its close when bb8 drops it,
//!   whatever the reason (broken, overflow, expired, the pool dropped), and remembers when it
//!   was last checked in, for hand-offs.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use super::{
    CountedPool, Counters, DriverError, Instruments, PoolError, PoolSettings, error_chain,
};
use crate::model::Labels;

/// A connection as the pool keeps it: counted closed when dropped.
pub struct Tracked<C> {
    conn: C,
    counters: Arc<Counters>,
    /// When the connection was last checked in, if it has been.
    returned_at: Option<Instant>,
}

impl<C> Drop for Tracked<C> {
    fn drop(&mut self) {
        self.counters.closed();
    }
}

/// A backend's bb8 manager with the pool's accounting around it, as [`super::Managed`] is for
/// r2d2: connects and failures counted, overflow closed on return.
pub struct TrackedManager<M> {
    inner: M,
    pool_size: u64,
    counters: Arc<Counters>,
    /// The last failed connect's reason, for the timeout it ends in (bb8 retries until then).
    last_error: Arc<Mutex<Option<String>>>,
}

impl<M: bb8::ManageConnection> bb8::ManageConnection for TrackedManager<M>
where
    M::Error: std::error::Error,
{
    type Connection = Tracked<M::Connection>;
    type Error = DriverError;

    async fn connect(&self) -> Result<Tracked<M::Connection>, DriverError> {
        match self.inner.connect().await {
            Ok(conn) => {
                self.counters.opened();
                Ok(Tracked {
                    conn,
                    counters: Arc::clone(&self.counters),
                    returned_at: None,
                })
            }
            Err(error) => {
                self.counters.connect_failed();
                let message = error_chain(&error);
                tracing::debug!(error = %message, "pool connect failed");
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message.clone());
                Err(DriverError(message))
            }
        }
    }

    async fn is_valid(&self, conn: &mut Tracked<M::Connection>) -> Result<(), DriverError> {
        self.inner
            .is_valid(&mut conn.conn)
            .await
            .map_err(|e| DriverError(error_chain(&e)))
    }

    fn has_broken(&self, conn: &mut Tracked<M::Connection>) -> bool {
        // bb8 drops a connection it is told is broken, whatever state it was in: one that
        // failed its check-out test comes here too, so only this gives a connection up.
        let broken = self.inner.has_broken(&mut conn.conn);
        self.counters.closes_on_return(broken, self.pool_size)
    }
}

/// The instrumented pool on bb8. Made and used inside a tokio runtime: bb8 opens connections
/// and, with `recycle`, reaps expired ones in tasks of its own.
pub struct AsyncInstrumentedPool<M: bb8::ManageConnection>
where
    M::Error: std::error::Error,
{
    instruments: Instruments,
    pool: bb8::Pool<TrackedManager<M>>,
    last_error: Arc<Mutex<Option<String>>>,
}

/// A checked-out connection: checked in, and its use counted, when dropped.
pub struct AsyncConnection<'a, M: bb8::ManageConnection>
where
    M::Error: std::error::Error,
{
    conn: bb8::PooledConnection<'a, TrackedManager<M>>,
    counters: &'a Counters,
    got: Instant,
}

impl<M: bb8::ManageConnection> AsyncInstrumentedPool<M>
where
    M::Error: std::error::Error,
{
    /// A pool named `name` (its `db.client.connection.pool.name`); opens nothing yet. Must be
    /// called inside a tokio runtime.
    pub fn new(
        name: &str,
        labels: Labels,
        manager: M,
        settings: PoolSettings,
    ) -> Result<AsyncInstrumentedPool<M>, PoolError> {
        let instruments = Instruments::new(name, labels, settings)?;
        let last_error = Arc::new(Mutex::new(None));
        let pool = bb8::Pool::builder()
            .max_size(settings.max_connections())
            .min_idle(None)
            .idle_timeout(None)
            .max_lifetime(settings.recycle)
            .connection_timeout(settings.timeout)
            .test_on_check_out(settings.pre_ping)
            .build_unchecked(TrackedManager {
                inner: manager,
                pool_size: u64::from(settings.pool_size),
                counters: Arc::clone(&instruments.counters),
                last_error: Arc::clone(&last_error),
            });
        Ok(AsyncInstrumentedPool {
            instruments,
            pool,
            last_error,
        })
    }

    /// A connection, waiting at most the pool's `timeout`.
    pub async fn get(&self) -> Result<AsyncConnection<'_, M>, PoolError> {
        let counters = &*self.instruments.counters;
        let asked = Instant::now();
        // Counted out however the wait ends, a caller dropping its `get` included.
        let pending = Pending::new(counters);
        let result = self.pool.get().await;
        drop(pending);
        let mut conn = match result {
            Ok(conn) => conn,
            Err(_) => {
                counters.timed_out();
                let last_error = self
                    .last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                return Err(self.instruments.timeout(last_error));
            }
        };
        let got = Instant::now();
        // A connection checked in after this caller asked was handed to it.
        let handoff = conn
            .returned_at
            .take()
            .filter(|&returned| returned > asked)
            .map(|returned| got - returned);
        counters.checked_out(got - asked, handoff);
        Ok(AsyncConnection {
            conn,
            counters,
            got,
        })
    }
}

/// A caller inside `get`.
struct Pending<'a>(&'a Counters);

impl<'a> Pending<'a> {
    fn new(counters: &'a Counters) -> Pending<'a> {
        counters.asking();
        Pending(counters)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.asked();
    }
}

impl<M: bb8::ManageConnection> CountedPool for AsyncInstrumentedPool<M>
where
    M::Error: std::error::Error,
{
    fn instruments(&self) -> &Instruments {
        &self.instruments
    }

    fn idle(&self) -> u64 {
        u64::from(self.pool.state().idle_connections)
    }
}

impl<M: bb8::ManageConnection> Drop for AsyncConnection<'_, M>
where
    M::Error: std::error::Error,
{
    fn drop(&mut self) {
        let now = Instant::now();
        // Counted in before bb8 sees it back, so that the overflow check finds it unused.
        self.counters.checked_in(now - self.got);
        self.conn.returned_at = Some(now);
    }
}

impl<M: bb8::ManageConnection> Deref for AsyncConnection<'_, M>
where
    M::Error: std::error::Error,
{
    type Target = M::Connection;

    fn deref(&self) -> &M::Connection {
        &self.conn.conn
    }
}

impl<M: bb8::ManageConnection> DerefMut for AsyncConnection<'_, M>
where
    M::Error: std::error::Error,
{
    fn deref_mut(&mut self) -> &mut M::Connection {
        &mut self.conn.conn
    }
}
