"""What each SQLAlchemy pool class promises about its size: the limits reported as gauges.

A limit a pool class does not have is ``None`` and is left out of the export, never sent as 0:
a NullPool has no maximum, and no SQLAlchemy pool has a minimum of idle connections.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.pool import (
    AssertionPool,
    NullPool,
    Pool,
    QueuePool,
    SingletonThreadPool,
    StaticPool,
)


@dataclass(frozen=True)
class PoolLimits:
    """The limits of one pool, each ``None`` where the pool class has no such limit."""

    max: int | None = None
    idle_max: int | None = None
    # SQLAlchemy never keeps connections open to meet a minimum (HikariCP's minimumIdle has no
    # counterpart), so this stays None for every pool class it ships; it is here so a pool class
    # that does have one can say so.
    idle_min: int | None = None
    pool_size: int | None = None
    max_overflow: int | None = None
    # Whether checkout can time out, so that a count of timeouts (0 included) means something.
    can_time_out: bool = False


def limits_of(pool: Pool) -> PoolLimits:
    """Read a pool's limits through what SQLAlchemy exposes for its class."""
    if isinstance(pool, QueuePool):  # AsyncAdaptedQueuePool too
        return _queue_pool_limits(pool)
    if isinstance(pool, (StaticPool, AssertionPool)):
        # One connection, shared (StaticPool) or lent to one caller at a time (AssertionPool).
        return PoolLimits(max=1, idle_max=1)
    if isinstance(pool, NullPool):
        # Opens a connection per checkout and closes it on checkin: nothing is ever kept idle,
        # and nothing bounds how many are open.
        return PoolLimits(idle_max=0)
    if isinstance(pool, SingletonThreadPool):
        # One connection per thread; pool_size is how many threads keep theirs, but the pool
        # closes the surplus rather than making anyone wait, so it bounds nothing a caller sees.
        return PoolLimits(pool_size=pool.size)
    return PoolLimits()


def _queue_pool_limits(pool: QueuePool) -> PoolLimits:
    pool_size = pool.size()
    if pool_size == 0:
        # pool_size=0 means no limit at all in SQLAlchemy (it forces max_overflow to -1).
        return PoolLimits(can_time_out=True)
    # QueuePool has no public accessor for max_overflow; the attribute has carried it since
    # SQLAlchemy 0.x. -1 means unbounded overflow: then there is no maximum to report.
    max_overflow = getattr(pool, "_max_overflow", None)
    if not isinstance(max_overflow, int) or max_overflow < 0:
        return PoolLimits(idle_max=pool_size, pool_size=pool_size, can_time_out=True)
    return PoolLimits(
        max=pool_size + max_overflow,
        # Overflow connections are closed on checkin, so at most pool_size wait idle.
        idle_max=pool_size,
        pool_size=pool_size,
        max_overflow=max_overflow,
        can_time_out=True,
    )
