"""What one instrumented engine's pool is doing, followed through SQLAlchemy's pool events.

Events give everything but the start of a checkout, so the pool's ``connect()`` (the checkout
itself, what ``Engine.connect()`` calls) is wrapped on the pool instance to time the wait and
count the callers inside it. Nothing else of SQLAlchemy is patched.

Connections are followed by their pool entry (the ``_ConnectionRecord``) in weak collections: a
tracker never keeps a pool, an engine or a DBAPI connection alive, so engines created and thrown
away one after another (as MDM does, one per dataset operation) leave nothing behind.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.pool import ConnectionPoolEntry, Pool, PoolProxiedConnection

from .limits import PoolLimits, limits_of
from .semconv import POOL_NAME, CloseReason

_log = logging.getLogger(__name__)

_clock = time.perf_counter


class Recorder(Protocol):
    """Where a tracker sends what happens; the OpenTelemetry side implements it."""

    def pool_seen(self, pool: PoolName, limits: PoolLimits) -> None: ...
    def waited(self, pool: PoolName, seconds: float) -> None: ...
    def timed_out(self, pool: PoolName) -> None: ...
    def checkout_failed(self, pool: PoolName) -> None: ...
    def used(self, pool: PoolName, seconds: float) -> None: ...
    def created(self, pool: PoolName, seconds: float) -> None: ...
    def opened(self, pool: PoolName) -> None: ...
    def closed(self, pool: PoolName, reason: CloseReason) -> None: ...


@dataclass(eq=False)
class PoolName:
    """One pool name and everything reported under it, shared by the engines that use it.

    Engines of one name add up: their connections are counted together, and their events land
    in the same counters and histograms. The limits are those of the engine instrumented last
    (engines of one name are normally one pool re-created over time, with one configuration).
    """

    name: str
    limits: PoolLimits = field(default_factory=PoolLimits)
    attributes: dict[str, str] = field(init=False)
    close_attributes: dict[CloseReason, dict[str, str]] = field(init=False)
    trackers: weakref.WeakSet[PoolTracker] = field(default_factory=weakref.WeakSet)

    def __post_init__(self) -> None:
        # Built once: every measurement of this pool reuses the same attribute dicts.
        self.attributes = {POOL_NAME: self.name}
        self.close_attributes = {
            reason: {POOL_NAME: self.name, "reason": reason.value} for reason in CloseReason
        }


@dataclass(frozen=True)
class Occupancy:
    used: int
    idle: int
    pending: int


class _Checkout:
    """What happened to connections during one checkout, to name the reason of a close."""

    __slots__ = ("closes", "reconnected")

    def __init__(self) -> None:
        self.closes: list[tuple[ConnectionPoolEntry, bool]] = []
        self.reconnected: list[ConnectionPoolEntry] = []


# A context variable rather than a thread-local: asyncio engines run many checkouts on one
# thread, each in its own greenlet, and each greenlet has its own context.
_CURRENT_CHECKOUT: ContextVar[_Checkout | None] = ContextVar("poolwatch_checkout", default=None)

class PoolTracker:
    """Follows one engine's pool (and the pools ``Engine.dispose()`` replaces it with)."""

    def __init__(self, engine: Engine, pool: PoolName, recorder: Callable[[], Recorder]) -> None:
        self.pool = pool
        self._recorder = recorder
        self._engine = weakref.ref(engine)
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[ConnectionPoolEntry] = weakref.WeakSet()
        self._checked_out: weakref.WeakKeyDictionary[ConnectionPoolEntry, float] = (
            weakref.WeakKeyDictionary()
        )
        self._creating: weakref.WeakKeyDictionary[ConnectionPoolEntry, float] = (
            weakref.WeakKeyDictionary()
        )
        self._invalidated: weakref.WeakSet[ConnectionPoolEntry] = weakref.WeakSet()
        self._soft_invalidated: weakref.WeakSet[ConnectionPoolEntry] = weakref.WeakSet()
        self._pending = 0
        self._listeners: list[tuple[str, Callable[..., Any]]] = [
            ("connect", self._on_connect),
            ("checkout", self._on_checkout),
            ("checkin", self._on_checkin),
            ("invalidate", self._on_invalidate),
            ("soft_invalidate", self._on_soft_invalidate),
            ("close", self._on_close),
            ("detach", self._on_detach),
            ("do_connect", self._on_do_connect),
            ("engine_disposed", self._on_engine_disposed),
        ]

    # -- attaching -------------------------------------------------------------------------

    def attach(self) -> None:
        engine = self._engine()
        if engine is None:
            return
        for name, listener in self._listeners:
            # Listeners on the engine reach its current pool and, through Pool.recreate(), the
            # pools that replace it. "connect" goes first so that create_time ends when the
            # DBAPI connection exists, before the dialect's own set-up queries on it.
            event.listen(engine, name, listener, insert=(name == "connect"))
        self._wrap(engine.pool)
        self.pool.trackers.add(self)
        self._pool_seen(engine.pool)

    def detach(self) -> None:
        engine = self._engine()
        self.pool.trackers.discard(self)
        if engine is None:
            return
        for name, listener in self._listeners:
            if event.contains(engine, name, listener):
                event.remove(engine, name, listener)
        _unwrap(engine.pool, self)

    def _pool_seen(self, pool: Pool) -> None:
        limits = limits_of(pool)
        self.pool.limits = limits
        self._safely(lambda r: r.pool_seen(self.pool, limits))

    def _wrap(self, pool: Pool) -> None:
        if self.wraps(pool):
            return
        original: Callable[[], PoolProxiedConnection] = pool.connect

        def connect() -> PoolProxiedConnection:
            with self._timed_checkout():
                return original()

        connect._poolwatch_tracker = self  # type: ignore[attr-defined]
        connect._poolwatch_original = original  # type: ignore[attr-defined]
        # An attribute of this pool instance shadows the class's method: other pools are
        # untouched, and uninstrument() only has to delete it.
        pool.connect = connect  # type: ignore[method-assign]

    # -- the checkout ----------------------------------------------------------------------

    @contextmanager
    def _timed_checkout(self) -> Iterator[None]:
        checkout = _Checkout()
        token = _CURRENT_CHECKOUT.set(checkout)
        with self._lock:
            self._pending += 1
        start = _clock()
        try:
            yield
        except sa_exc.TimeoutError:
            waited = _clock() - start
            self._safely(lambda r: r.waited(self.pool, waited))
            self._safely(lambda r: r.timed_out(self.pool))
            raise
        except Exception:
            self._safely(lambda r: r.checkout_failed(self.pool))
            raise
        else:
            waited = _clock() - start
            self._safely(lambda r: r.waited(self.pool, waited))
        finally:
            with self._lock:
                self._pending -= 1
            _CURRENT_CHECKOUT.reset(token)
            self._settle_closes(checkout)

    def _settle_closes(self, checkout: _Checkout) -> None:
        # A connection closed during a checkout and connected again on the same entry was
        # replaced in place: SQLAlchemy's recycling (age, pool-wide invalidation) or the end of
        # a soft invalidation. One closed and not reconnected was only cleared away.
        for entry, soft in checkout.closes:
            if any(entry is again for again in checkout.reconnected):
                reason = CloseReason.SOFT_INVALIDATE if soft else CloseReason.RECYCLE
            else:
                reason = CloseReason.CLOSE
            self._safely(lambda r: r.closed(self.pool, reason))

    # -- pool events -----------------------------------------------------------------------

    def _on_do_connect(self, dialect: Any, entry: ConnectionPoolEntry | None, *_: Any) -> None:
        if entry is not None:
            with self._lock:
                self._creating[entry] = _clock()

    def _on_connect(self, dbapi_connection: Any, entry: ConnectionPoolEntry) -> None:
        now = _clock()
        with self._lock:
            started = self._creating.pop(entry, None)
            self._open.add(entry)
        checkout = _CURRENT_CHECKOUT.get()
        if checkout is not None:
            checkout.reconnected.append(entry)
        if started is not None:
            self._safely(lambda r: r.created(self.pool, now - started))
        self._safely(lambda r: r.opened(self.pool))

    def _on_checkout(self, dbapi_connection: Any, entry: ConnectionPoolEntry, proxy: Any) -> None:
        with self._lock:
            self._checked_out[entry] = _clock()

    def _on_checkin(self, dbapi_connection: Any, entry: ConnectionPoolEntry) -> None:
        now = _clock()
        with self._lock:
            # SQLAlchemy also checks in an entry whose checkout failed before the checkout
            # event: only a checkout this tracker saw has a use time.
            started = self._checked_out.pop(entry, None)
        if started is not None:
            self._safely(lambda r: r.used(self.pool, now - started))

    def _on_invalidate(self, dbapi_connection: Any, entry: ConnectionPoolEntry, exception: Any) -> None:
        with self._lock:
            self._invalidated.add(entry)

    def _on_soft_invalidate(self, dbapi_connection: Any, entry: ConnectionPoolEntry, exception: Any) -> None:
        with self._lock:
            self._soft_invalidated.add(entry)

    def _on_close(self, dbapi_connection: Any, entry: ConnectionPoolEntry) -> None:
        with self._lock:
            self._open.discard(entry)
            hard = entry in self._invalidated
            soft = entry in self._soft_invalidated
            self._invalidated.discard(entry)
            self._soft_invalidated.discard(entry)
        if hard:
            self._safely(lambda r: r.closed(self.pool, CloseReason.INVALIDATE))
            return
        checkout = _CURRENT_CHECKOUT.get()
        if checkout is not None:
            # Recycle, or SingletonThreadPool's cleanup of another thread's connection: told
            # apart when the checkout ends, by whether this entry connects again.
            checkout.closes.append((entry, soft))
            return
        self._safely(lambda r: r.closed(self.pool, CloseReason.CLOSE))

    def _on_detach(self, dbapi_connection: Any, entry: ConnectionPoolEntry) -> None:
        with self._lock:
            self._open.discard(entry)
            self._checked_out.pop(entry, None)
        self._safely(lambda r: r.closed(self.pool, CloseReason.DETACH))

    def _on_engine_disposed(self, engine: Engine) -> None:
        # Engine.dispose() replaced the pool: the listeners came along, the wrapper did not.
        self._wrap(engine.pool)
        self._pool_seen(engine.pool)

    # -- reading ---------------------------------------------------------------------------

    def occupancy(self) -> Occupancy:
        with self._lock:
            used = len(self._checked_out)
            # An entry whose DBAPI connection is gone (invalidated, waiting to reconnect on its
            # next checkout) holds no connection.
            idle = sum(
                1
                for entry in self._open
                if entry not in self._checked_out and entry.dbapi_connection is not None
            )
            return Occupancy(used=used, idle=idle, pending=self._pending)

    def forget_other_process(self) -> None:
        """After fork: checkouts in flight and connections lent out belong to the parent."""
        # The lock may have been held by a thread that the child does not have.
        self._lock = threading.Lock()
        with self._lock:
            self._checked_out.clear()
            self._creating.clear()
            self._pending = 0

    def wraps(self, pool: Pool) -> bool:
        return getattr(pool.__dict__.get("connect"), "_poolwatch_tracker", None) is self

    def _safely(self, record: Callable[[Recorder], object]) -> None:
        # Reporting must never break a checkout.
        try:
            record(self._recorder())
        except Exception:
            _log.debug("poolwatch: recording failed for pool %s", self.pool.name, exc_info=True)


def _unwrap(pool: Pool, tracker: PoolTracker) -> None:
    if tracker.wraps(pool):
        del pool.__dict__["connect"]


def tracker_of(pool: Pool) -> PoolTracker | None:
    """The tracker whose checkout wrapper sits on this pool, if any."""
    tracker = getattr(pool.__dict__.get("connect"), "_poolwatch_tracker", None)
    return tracker if isinstance(tracker, PoolTracker) else None
