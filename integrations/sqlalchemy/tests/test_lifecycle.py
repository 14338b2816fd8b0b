"""instrument() and uninstrument() over an engine's life: idempotence, renaming, dispose(), and
engines made and thrown away by the hundred without leaving anything behind."""

from __future__ import annotations

import gc
import threading
import weakref

from figures import Figures, flush
from otlp_receiver import HttpReceiver
from sqlalchemy import URL, create_engine, event

from poolwatch_sqlalchemy import instrument, uninstrument
from poolwatch_sqlalchemy.registry import pools
from poolwatch_sqlalchemy.tracker import tracker_of


def checkouts(engine: object, times: int) -> None:
    for _ in range(times):
        with engine.connect() as connection:  # type: ignore[attr-defined]
            connection.exec_driver_sql("SELECT 1")


def test_instrumenting_twice_counts_once(sqlite_url: URL, receiver: HttpReceiver, pool_name: str) -> None:
    engine = create_engine(sqlite_url)
    assert instrument(engine, pool_name=pool_name) == pool_name
    assert instrument(engine, pool_name=pool_name) == pool_name
    assert instrument(engine) == pool_name  # no name given: the existing one stands
    checkouts(engine, 3)
    flush(receiver.collected)
    engine.dispose()
    figures = Figures(receiver.collected, pool_name)
    assert figures.histogram_count("db.client.connection.wait_time") == 3
    assert figures.histogram_count("db.client.connection.use_time") == 3


def test_a_new_name_replaces_the_old(sqlite_url: URL, receiver: HttpReceiver, pool_name: str) -> None:
    engine = create_engine(sqlite_url)
    instrument(engine, pool_name=f"{pool_name}:old")
    checkouts(engine, 1)
    instrument(engine, pool_name=f"{pool_name}:new")
    checkouts(engine, 2)
    flush(receiver.collected)
    engine.dispose()
    old = Figures(receiver.collected, f"{pool_name}:old")
    new = Figures(receiver.collected, f"{pool_name}:new")
    assert old.histogram_count("db.client.connection.wait_time") == 1
    assert new.histogram_count("db.client.connection.wait_time") == 2


def test_uninstrument_leaves_the_engine_as_it_was(
    sqlite_url: URL, receiver: HttpReceiver, pool_name: str
) -> None:
    engine = create_engine(sqlite_url)
    pool_connect = type(engine.pool).connect
    instrument(engine, pool_name=pool_name)
    checkouts(engine, 2)
    tracker = tracker_of(engine.pool)
    assert tracker is not None and "connect" in vars(engine.pool)
    listeners = tracker._listeners
    assert all(event.contains(engine, name, listener) for name, listener in listeners)
    assert uninstrument(engine) is True
    assert uninstrument(engine) is False
    assert "connect" not in vars(engine.pool)
    assert engine.pool.connect.__func__ is pool_connect  # type: ignore[attr-defined]
    assert not any(event.contains(engine, name, listener) for name, listener in listeners)
    checkouts(engine, 5)
    flush(receiver.collected)
    engine.dispose()
    figures = Figures(receiver.collected, pool_name)
    assert figures.histogram_count("db.client.connection.wait_time") == 2
    assert figures.histogram_count("db.client.connection.use_time") == 2


def test_dispose_keeps_the_engine_instrumented(
    sqlite_url: URL, receiver: HttpReceiver, pool_name: str
) -> None:
    engine = create_engine(sqlite_url)
    instrument(engine, pool_name=pool_name)
    checkouts(engine, 1)
    engine.dispose()  # a new pool replaces the old one
    checkouts(engine, 2)
    with engine.connect():
        flush(receiver.collected)
    engine.dispose()
    figures = Figures(receiver.collected, pool_name)
    assert figures.histogram_count("db.client.connection.wait_time") == 4
    assert figures.value("poolwatch.pool.connections.opened") == 2
    assert figures.closed("close") == 1  # the first pool's connection, closed by dispose()
    assert (figures.count("used"), figures.count("idle")) == (1, 0)


def test_engines_made_one_per_operation_leave_nothing_behind(
    sqlite_url: URL, receiver: HttpReceiver, pool_name: str
) -> None:
    # Warm-up: the provider, its reader thread and SQLAlchemy's caches exist before counting.
    warm = create_engine(sqlite_url)
    instrument(warm, pool_name=pool_name)
    checkouts(warm, 1)
    warm.dispose()
    del warm
    while gc.collect():
        pass
    threads_before = threading.active_count()

    engines: list[weakref.ref[object]] = []
    for _ in range(200):
        engine = create_engine(sqlite_url)
        instrument(engine, pool_name=pool_name)
        checkouts(engine, 1)
        engine.dispose()
        engines.append(weakref.ref(engine))
        del engine
    # Pools go in one collection, the trackers they referenced in the next.
    while gc.collect():
        pass

    assert [ref for ref in engines if ref() is not None] == []
    assert threading.active_count() == threads_before
    (pool,) = [pool for pool, _ in pools() if pool.name == pool_name]
    assert len(pool.trackers) == 0
    flush(receiver.collected)
    figures = Figures(receiver.collected, pool_name)
    # One pool name, all 201 engines' figures added up.
    assert figures.histogram_count("db.client.connection.wait_time") == 201
    assert figures.value("poolwatch.pool.connections.opened") == 201
    assert figures.closed("close") == 201
    assert (figures.count("used"), figures.count("idle")) == (0, 0)
