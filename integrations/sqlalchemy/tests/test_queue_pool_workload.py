"""The pool's story under load, on real PostgreSQL and a real SQLite file, against the ground
truth the workload keeps: 20 threads on QueuePool(pool_size=5, max_overflow=2)."""

from __future__ import annotations

import math
import threading
import uuid

import pytest
from figures import ALL_REASONS, Figures, flush
from otlp_receiver import HttpReceiver
from sqlalchemy import URL, create_engine
from workload import GroundTruth, blocked_in_pool_queue, pressure, run_all, wait_until

from poolwatch_sqlalchemy import instrument
from poolwatch_sqlalchemy.semconv import ALL_METRICS, DEFAULT_SECONDS_BUCKETS, POOL_NAME

POOL_SIZE = 5
MAX_OVERFLOW = 2
CAPACITY = POOL_SIZE + MAX_OVERFLOW
THREADS = 20
WAITERS = THREADS - CAPACITY
# Long enough for a flush to happen while 13 callers wait; every one of them then times out.
POOL_TIMEOUT = 2.0


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_exported_figures_equal_the_workloads_ground_truth(
    backend: str, request: pytest.FixtureRequest, receiver: HttpReceiver, pool_name: str
) -> None:
    url = request.getfixturevalue("postgres_url" if backend == "postgresql" else "sqlite_url")
    engine = create_engine(
        url, pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW, pool_timeout=POOL_TIMEOUT
    )
    assert instrument(engine, pool_name=pool_name) == pool_name
    figures = Figures(receiver.collected, pool_name)
    truth = GroundTruth()
    try:
        # Contention: 20 threads, 7 connections, holds of up to 30 ms.
        pressure(engine, truth, threads=THREADS, rounds=5, hold_s=0.03)

        # Quiet moment 1: every connection held, 13 callers blocked in the pool's queue.
        release = threading.Event()
        holding = threading.Semaphore(0)

        def hold() -> None:
            connection = truth.checkout(engine)
            assert connection is not None
            with connection:
                holding.release()
                release.wait()

        holders = [threading.Thread(target=hold) for _ in range(CAPACITY)]
        for holder in holders:
            holder.start()
        for _ in holders:
            assert holding.acquire(timeout=10)
        timeouts_before = truth.timeouts
        waiters = [threading.Thread(target=truth.checkout, args=(engine,)) for _ in range(WAITERS)]
        for waiter in waiters:
            waiter.start()
        wait_until(
            lambda: all(blocked_in_pool_queue(waiter) for waiter in waiters),
            f"{WAITERS} callers block in the pool's queue",
        )
        assert truth.waiting_now == WAITERS
        flush(receiver.collected)
        assert all(waiter.is_alive() for waiter in waiters) and truth.timeouts == timeouts_before, (
            f"a waiter timed out before the export was collected: the flush took longer than "
            f"pool_timeout={POOL_TIMEOUT}s"
        )
        assert figures.value("db.client.connection.pending_requests") == WAITERS
        assert figures.count("used") == CAPACITY
        assert figures.count("idle") == 0
        assert figures.value("db.client.connection.timeouts") == timeouts_before

        for waiter in waiters:
            waiter.join()
        assert truth.timeouts == timeouts_before + WAITERS
        release.set()
        for holder in holders:
            holder.join()

        # Quiet moment 2: all returned.
        flush(receiver.collected)
        idle_in_pool = engine.pool.checkedin()  # type: ignore[attr-defined]
    finally:
        release.set()
        engine.dispose()

    assert figures.value("db.client.connection.pending_requests") == 0
    assert figures.count("used") == 0
    assert figures.count("idle") == idle_in_pool == POOL_SIZE
    assert figures.value("db.client.connection.timeouts") == truth.timeouts
    assert figures.value("poolwatch.pool.connection_errors") == 0

    wait = figures.sample("db.client.connection.wait_time")
    assert wait is not None
    histogram = wait.histogram
    assert histogram.count == truth.attempts
    assert sum(histogram.bucket_counts) == histogram.count
    assert list(histogram.explicit_bounds) == list(DEFAULT_SECONDS_BUCKETS)
    # Each wait the package measured lies inside the one the workload measured around it...
    assert histogram.sum <= math.fsum(truth.waits) + 1e-9
    assert histogram.max <= max(truth.waits)
    # ...and a checkout that timed out waited at least pool_timeout (SQLAlchemy's contract).
    assert histogram.sum >= truth.timeouts * POOL_TIMEOUT
    assert histogram.max >= POOL_TIMEOUT
    assert min(truth.timeout_waits) >= POOL_TIMEOUT

    assert figures.histogram_count("db.client.connection.use_time") == truth.checkouts
    opened = figures.value("poolwatch.pool.connections.opened")
    assert opened is not None and opened >= CAPACITY
    assert figures.histogram_count("db.client.connection.create_time") == opened
    # Overflow connections are closed as they come back to a full pool; 5 stay open.
    assert figures.closed("close") == opened - POOL_SIZE
    for reason in ALL_REASONS:
        if reason != "close":
            assert figures.closed(reason) == 0, reason
    assert opened - figures.closed_total() == POOL_SIZE

    assert figures.value("db.client.connection.max") == CAPACITY
    assert figures.value("db.client.connection.idle.max") == POOL_SIZE
    assert figures.sample("db.client.connection.idle.min") is None  # SQLAlchemy has no minimum
    assert figures.value("poolwatch.pool.size") == POOL_SIZE
    assert figures.value("poolwatch.pool.max_overflow") == MAX_OVERFLOW

    assert wait.resource["service.name"] == "poolwatch-sqlalchemy-tests"
    uuid.UUID(wait.resource["service.instance.id"])
    assert wait.resource["telemetry.sdk.language"] == "python"


def test_every_metric_has_its_conventional_unit_and_the_pool_name(
    sqlite_url: URL, receiver: HttpReceiver, pool_name: str
) -> None:
    engine = create_engine(sqlite_url, pool_size=1, max_overflow=0, pool_timeout=0.05)
    instrument(engine, pool_name=pool_name)
    truth = GroundTruth()
    try:
        held = truth.checkout(engine)
        assert held is not None
        assert truth.checkout(engine) is None  # a timeout, so that every instrument has data
        held.close()
        flush(receiver.collected)
    finally:
        engine.dispose()

    units = {metric.name: metric.unit for metric in ALL_METRICS}
    seen = set()
    for sample in receiver.collected.samples():
        if sample.attributes.get(POOL_NAME) != pool_name:
            continue
        seen.add(sample.metric.name)
        assert sample.metric.unit == units[sample.metric.name], sample.metric.name
    assert seen == set(units) - {"db.client.connection.idle.min"}
    # No data point of this package's scope lacks a pool name.
    assert all(POOL_NAME in sample.attributes for sample in receiver.collected.samples())


def test_waits_are_timed_around_the_checkout_only(
    sqlite_url: URL, receiver: HttpReceiver, pool_name: str
) -> None:
    engine = create_engine(sqlite_url, pool_size=2, max_overflow=0)
    instrument(engine, pool_name=pool_name)
    truth = GroundTruth()
    try:
        run_all([lambda: pressure(engine, truth, threads=4, rounds=10, hold_s=0.01)])
        flush(receiver.collected)
    finally:
        engine.dispose()
    figures = Figures(receiver.collected, pool_name)
    assert figures.histogram_count("db.client.connection.wait_time") == truth.attempts == 40
    assert figures.histogram_count("db.client.connection.use_time") == truth.checkouts == 40
    assert figures.value("db.client.connection.timeouts") == 0
