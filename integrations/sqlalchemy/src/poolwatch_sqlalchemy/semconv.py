"""The metric catalogue: every name, unit and attribute this package emits, in one place.

The ``db.client.connection.*`` entries follow the OpenTelemetry semantic conventions for database
client connection pools (docs/db/database-metrics.md, "Connection pools"). The ``poolwatch.*``
entries are the MDM spec's own figures, which the conventions have no name for; the poolwatch
agent maps both families into its pool model, so these names are an interface: do not rename.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

POOL_NAME: Final = "db.client.connection.pool.name"
STATE: Final = "db.client.connection.state"
STATE_USED: Final = "used"
STATE_IDLE: Final = "idle"
CLOSE_REASON: Final = "reason"


class Kind(Enum):
    """How a figure is recorded: observed at collection time, or counted as it happens."""

    OBSERVED_UP_DOWN = "ObservableUpDownCounter"
    COUNTER = "Counter"
    HISTOGRAM = "Histogram"


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    unit: str
    description: str


CONNECTION_COUNT: Final = Metric(
    "db.client.connection.count",
    Kind.OBSERVED_UP_DOWN,
    "{connection}",
    "The number of connections that are currently in state described by the state attribute.",
)
CONNECTION_MAX: Final = Metric(
    "db.client.connection.max",
    Kind.OBSERVED_UP_DOWN,
    "{connection}",
    "The maximum number of open connections allowed.",
)
CONNECTION_IDLE_MAX: Final = Metric(
    "db.client.connection.idle.max",
    Kind.OBSERVED_UP_DOWN,
    "{connection}",
    "The maximum number of idle open connections allowed.",
)
CONNECTION_IDLE_MIN: Final = Metric(
    "db.client.connection.idle.min",
    Kind.OBSERVED_UP_DOWN,
    "{connection}",
    "The minimum number of idle open connections allowed.",
)
PENDING_REQUESTS: Final = Metric(
    "db.client.connection.pending_requests",
    Kind.OBSERVED_UP_DOWN,
    "{request}",
    "The number of current pending requests for an open connection.",
)
TIMEOUTS: Final = Metric(
    "db.client.connection.timeouts",
    Kind.COUNTER,
    "{timeout}",
    "The number of connection timeouts that have occurred trying to obtain a connection from the pool.",
)
WAIT_TIME: Final = Metric(
    "db.client.connection.wait_time",
    Kind.HISTOGRAM,
    "s",
    "The time it took to obtain an open connection from the pool.",
)
USE_TIME: Final = Metric(
    "db.client.connection.use_time",
    Kind.HISTOGRAM,
    "s",
    "The time between borrowing a connection and returning it to the pool.",
)
CREATE_TIME: Final = Metric(
    "db.client.connection.create_time",
    Kind.HISTOGRAM,
    "s",
    "The time it took to create a new connection.",
)
POOL_SIZE: Final = Metric(
    "poolwatch.pool.size",
    Kind.OBSERVED_UP_DOWN,
    "{connection}",
    "The pool_size setting: connections the pool keeps open once it has made them.",
)
POOL_MAX_OVERFLOW: Final = Metric(
    "poolwatch.pool.max_overflow",
    Kind.OBSERVED_UP_DOWN,
    "{connection}",
    "The max_overflow setting: connections the pool may open beyond pool_size.",
)
CONNECTIONS_OPENED: Final = Metric(
    "poolwatch.pool.connections.opened",
    Kind.COUNTER,
    "{connection}",
    "DBAPI connections the pool has opened.",
)
CONNECTIONS_CLOSED: Final = Metric(
    "poolwatch.pool.connections.closed",
    Kind.COUNTER,
    "{connection}",
    "DBAPI connections the pool has closed or let go, by reason.",
)
CONNECTION_ERRORS: Final = Metric(
    "poolwatch.pool.connection_errors",
    Kind.COUNTER,
    "{error}",
    "Checkouts that failed with an error other than the pool's timeout (a connect that failed).",
)

ALL_METRICS: Final = (
    CONNECTION_COUNT,
    CONNECTION_MAX,
    CONNECTION_IDLE_MAX,
    CONNECTION_IDLE_MIN,
    PENDING_REQUESTS,
    TIMEOUTS,
    WAIT_TIME,
    USE_TIME,
    CREATE_TIME,
    POOL_SIZE,
    POOL_MAX_OVERFLOW,
    CONNECTIONS_OPENED,
    CONNECTIONS_CLOSED,
    CONNECTION_ERRORS,
)


class CloseReason(Enum):
    """Why a connection left the pool, as far as SQLAlchemy's pool events tell them apart."""

    # Closed for no fault: an overflow connection returned to a full pool, dispose(), the cleanup
    # of SingletonThreadPool.
    CLOSE = "close"
    # Hard-invalidated (``invalidate`` event): a disconnect error, a failed pre-ping,
    # ``Connection.invalidate()``.
    INVALIDATE = "invalidate"
    # Replaced at checkout because it had been soft-invalidated (``soft_invalidate`` event).
    SOFT_INVALIDATE = "soft_invalidate"
    # Replaced at checkout because it was older than pool_recycle, or older than a pool-wide
    # invalidation: the two cases SQLAlchemy itself logs as "recycling".
    RECYCLE = "recycle"
    # Detached from the pool (``detach`` event): the DBAPI connection lives on outside it.
    DETACH = "detach"


# The SDK's default boundaries (0, 5, 10, 25, ... 10000) suit milliseconds; in seconds they would
# put every checkout in the first bucket. This grid is the conventions' advice for
# http.server.request.duration (1, 2.5, 5, 7.5 per decade), widened down to 100 µs, where a pool
# hands out an idle connection, and up to 5 minutes, where long dataset operations hold one.
DEFAULT_SECONDS_BUCKETS: Final[tuple[float, ...]] = (
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    30.0,
    60.0,
    300.0,
)
