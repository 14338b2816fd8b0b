"""Which engines are instrumented, under which pool names: instrument() and uninstrument()."""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from sqlalchemy.engine import Engine

from . import telemetry
from .pool_name import default_pool_name
from .tracker import Occupancy, PoolName, PoolTracker, tracker_of

_log = logging.getLogger(__name__)

_lock = threading.RLock()
# Pool names live as long as the process: their counters do too (the SDK keeps cumulative
# series), and a name is a handful of small objects. Engines and pools are only referenced
# weakly, through the trackers.
_names: dict[str, PoolName] = {}
_trackers: weakref.WeakKeyDictionary[Engine, PoolTracker] = weakref.WeakKeyDictionary()


def instrument(engine: Any, pool_name: str | None = None) -> str:
    """Report this engine's pool to the poolwatch agent; returns the pool name it reports under.

    Idempotent: instrumenting an engine again changes nothing, unless ``pool_name`` names it
    differently, in which case the new name replaces the old one. ``pool_name`` defaults to
    what the engine connects to (``host:port/database``, or a database file's absolute path),
    never with the user or password. An ``AsyncEngine`` is instrumented through its
    ``sync_engine``.
    """
    sync_engine = _sync_engine(engine)
    name = pool_name if pool_name is not None else default_pool_name(sync_engine.url)
    if not name:
        raise ValueError("pool_name must not be empty")
    _recorder()  # the provider (and its exit flush) exists from the first instrumented engine on
    with _lock:
        existing = _trackers.get(sync_engine) or tracker_of(sync_engine.pool)
        if existing is not None:
            if pool_name is None or existing.pool.name == name:
                return existing.pool.name
            existing.detach()
        pool = _names.get(name)
        if pool is None:
            pool = _names[name] = PoolName(name)
        tracker = PoolTracker(sync_engine, pool, _recorder)
        tracker.attach()
        _trackers[sync_engine] = tracker
    _log.debug(
        "poolwatch: instrumented %s as pool %r",
        sync_engine.url.render_as_string(hide_password=True),
        name,
    )
    return name


def uninstrument(engine: Any) -> bool:
    """Stop reporting this engine's pool; returns whether it was instrumented.

    What it reported stays in the counters and histograms of its pool name.
    """
    sync_engine = _sync_engine(engine)
    with _lock:
        tracker = _trackers.pop(sync_engine, None) or tracker_of(sync_engine.pool)
        if tracker is None:
            return False
        tracker.detach()
        return True


def pools() -> list[tuple[PoolName, Occupancy]]:
    """Every pool name with its connections, summed over its live engines, sorted by name."""
    with _lock:
        names = sorted(_names.values(), key=lambda pool: pool.name)
    result = []
    for pool in names:
        used = idle = pending = 0
        for tracker in list(pool.trackers):
            occupancy = tracker.occupancy()
            used += occupancy.used
            idle += occupancy.idle
            pending += occupancy.pending
        result.append((pool, Occupancy(used=used, idle=idle, pending=pending)))
    return result


def force_flush(timeout_s: float = 5.0) -> bool:
    """Export the current figures now, waiting at most ``timeout_s`` seconds.

    Returns whether the export finished within the bound (False also when nothing was ever
    instrumented). Exits do this on their own; this is for a process about to ``os._exit`` or
    a test that wants figures at a known moment.
    """
    current = telemetry.existing()
    if current is None:
        return False
    return current.flush(timeout_s)


def _recorder() -> telemetry.Telemetry:
    return telemetry.current(pools)


def _sync_engine(engine: Any) -> Engine:
    sync_engine = getattr(engine, "sync_engine", engine)
    if not isinstance(sync_engine, Engine):
        raise TypeError(f"expected a SQLAlchemy Engine or AsyncEngine, got {type(engine).__name__}")
    return sync_engine


def _forget_in_child() -> None:
    global _lock
    _lock = threading.RLock()
    for tracker in list(_trackers.values()):
        tracker.forget_other_process()


telemetry.on_fork_in_child(_forget_in_child)

