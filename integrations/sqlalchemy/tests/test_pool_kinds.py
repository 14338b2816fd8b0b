"""Pools other than QueuePool report what they have and leave out what they do not; connections
leave a pool for a reason, each counted under its own name."""

from __future__ import annotations

from pathlib import Path

import pytest
from figures import Figures, flush
from otlp_receiver import HttpReceiver
from sqlalchemy import URL, create_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool, SingletonThreadPool, StaticPool

from poolwatch_sqlalchemy import instrument

LIMITS = (
    "db.client.connection.max",
    "db.client.connection.idle.max",
    "db.client.connection.idle.min",
    "poolwatch.pool.size",
    "poolwatch.pool.max_overflow",
)


def limits(figures: Figures) -> dict[str, float | None]:
    return {name: figures.value(name) for name in LIMITS}


def only(**present: float) -> dict[str, float | None]:
    """The expected limits: those given (``idle_max`` for ``db.client.connection.idle.max``...),
    every other one absent."""
    names = {
        "max": "db.client.connection.max",
        "idle_max": "db.client.connection.idle.max",
        "size": "poolwatch.pool.size",
        "max_overflow": "poolwatch.pool.max_overflow",
    }
    expected: dict[str, float | None] = dict.fromkeys(LIMITS, None)
    expected.update({names[key]: value for key, value in present.items()})
    return expected


def test_null_pool_has_no_maximum_and_keeps_nothing_idle(
    sqlite_url: URL, receiver: HttpReceiver, pool_name: str
) -> None:
    engine = create_engine(sqlite_url, poolclass=NullPool)
    instrument(engine, pool_name=pool_name)
    figures = Figures(receiver.collected, pool_name)
    try:
        for _ in range(3):
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        with engine.connect():
            flush(receiver.collected)
    finally:
        engine.dispose()
    assert limits(figures) == only(idle_max=0)
    assert figures.count("used") == 1
    assert figures.count("idle") == 0
    assert figures.value("db.client.connection.pending_requests") == 0
    assert figures.sample("db.client.connection.timeouts") is None  # NullPool cannot time out
    assert figures.value("poolwatch.pool.connections.opened") == 4
    assert figures.closed("close") == 3
    assert figures.histogram_count("db.client.connection.wait_time") == 4
    assert figures.histogram_count("db.client.connection.use_time") == 3
    assert figures.histogram_count("db.client.connection.create_time") == 4


def test_static_pool_is_one_shared_connection(receiver: HttpReceiver, pool_name: str) -> None:
    engine = create_engine("sqlite://", poolclass=StaticPool)
    instrument(engine, pool_name=pool_name)
    figures = Figures(receiver.collected, pool_name)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        flush(receiver.collected)
    finally:
        engine.dispose()
    assert limits(figures) == only(max=1, idle_max=1)
    assert (figures.count("used"), figures.count("idle")) == (0, 1)
    assert figures.value("poolwatch.pool.connections.opened") == 1


def test_singleton_thread_pool_reports_its_size_only(receiver: HttpReceiver, pool_name: str) -> None:
    engine = create_engine("sqlite://", poolclass=SingletonThreadPool, pool_size=3)
    instrument(engine, pool_name=pool_name)
    figures = Figures(receiver.collected, pool_name)
    try:
        with engine.connect():
            flush(receiver.collected)
    finally:
        engine.dispose()
    assert limits(figures) == only(size=3)
    assert (figures.count("used"), figures.count("idle")) == (1, 0)


def test_unlimited_overflow_has_no_maximum(sqlite_url: URL, receiver: HttpReceiver, pool_name: str) -> None:
    engine = create_engine(sqlite_url, pool_size=4, max_overflow=-1)
    instrument(engine, pool_name=pool_name)
    try:
        with engine.connect():
            flush(receiver.collected)
    finally:
        engine.dispose()
    assert limits(Figures(receiver.collected, pool_name)) == only(idle_max=4, size=4)


def test_each_close_is_counted_under_its_reason(
    sqlite_url: URL, receiver: HttpReceiver, pool_name: str
) -> None:
    engine = create_engine(sqlite_url, pool_size=2, max_overflow=1)
    instrument(engine, pool_name=pool_name)
    figures = Figures(receiver.collected, pool_name)
    try:
        # invalidate: a hard invalidation of a checked-out connection.
        with engine.connect() as connection:
            connection.invalidate()
        # soft_invalidate: marked while checked out, replaced at its next checkout.
        with engine.connect() as connection:
            connection.connection.invalidate(soft=True)
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        # detach: the DBAPI connection leaves the pool.
        with engine.connect() as connection:
            connection.detach()
        # close: an overflow connection returned to a full pool.
        first, second, third = engine.connect(), engine.connect(), engine.connect()
        for connection in (first, second, third):
            connection.close()
        flush(receiver.collected)
        recycled = create_engine(sqlite_url, pool_size=1, max_overflow=0, pool_recycle=0)
        instrument(recycled, pool_name=f"{pool_name}:recycle")
        # recycle: pool_recycle=0 makes every connection too old at its next checkout.
        for _ in range(3):
            with recycled.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        flush(receiver.collected)
        recycled.dispose()
    finally:
        engine.dispose()

    assert figures.closed("invalidate") == 1
    assert figures.closed("soft_invalidate") == 1
    assert figures.closed("detach") == 1
    assert figures.closed("close") == 1
    assert figures.closed("recycle") == 0
    opened = figures.value("poolwatch.pool.connections.opened")
    # invalidate, soft_invalidate and detach each made the pool connect again; the third
    # connection of the last step was the overflow.
    assert opened == 6
    assert (figures.count("used"), figures.count("idle")) == (0, 2)
    assert opened - figures.closed_total() == 2

    recycle = Figures(receiver.collected, f"{pool_name}:recycle")
    # With pool_recycle=0 even the connection made by a checkout is too old by the time that
    # checkout looks at its age: SQLAlchemy replaces it at once, so all 3 checkouts recycle.
    assert recycle.closed("recycle") == 3
    assert recycle.closed("close") == 0
    assert recycle.value("poolwatch.pool.connections.opened") == 4
    assert recycle.histogram_count("db.client.connection.create_time") == 4


def test_a_failed_connect_is_a_connection_error_not_a_wait(
    tmp_path: Path, receiver: HttpReceiver, pool_name: str
) -> None:
    missing = URL.create("sqlite+pysqlite", database=str(tmp_path / "no-such-dir" / "x.sqlite"))
    engine = create_engine(missing)
    instrument(engine, pool_name=pool_name)
    figures = Figures(receiver.collected, pool_name)
    try:
        for _ in range(2):
            with pytest.raises(OperationalError):
                engine.connect()
        flush(receiver.collected)
    finally:
        engine.dispose()
    assert figures.value("poolwatch.pool.connection_errors") == 2
    assert figures.sample("db.client.connection.wait_time") is None
    assert figures.value("db.client.connection.pending_requests") == 0
    assert (figures.count("used"), figures.count("idle")) == (0, 0)
    assert figures.value("poolwatch.pool.connections.opened") == 0
