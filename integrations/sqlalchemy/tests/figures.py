"""Reading one pool's figures from what the receiver got."""

from __future__ import annotations

from otlp_receiver import Collected, Sample, wait_for
from poolwatch_sqlalchemy import force_flush
from poolwatch_sqlalchemy.semconv import POOL_NAME, STATE

ALL_REASONS = ("close", "invalidate", "soft_invalidate", "recycle", "detach")


def flush(collected: Collected) -> None:
    """Export now and wait until the receiver has the request."""
    before = collected.count()
    assert force_flush(10.0), "force_flush did not finish within 10 s"
    wait_for(lambda: True if collected.count() > before else None, "the flushed export")


class Figures:
    """The newest data points of one pool name."""

    def __init__(self, collected: Collected, pool: str) -> None:
        self._collected = collected
        self.pool = pool

    def sample(self, metric: str, **attributes: str) -> Sample | None:
        return self._collected.latest(metric, **{POOL_NAME: self.pool}, **attributes)

    def value(self, metric: str, **attributes: str) -> float | None:
        sample = self.sample(metric, **attributes)
        return None if sample is None else sample.value

    def count(self, state: str) -> float | None:
        return self.value("db.client.connection.count", **{STATE: state})

    def closed(self, reason: str) -> float | None:
        return self.value("poolwatch.pool.connections.closed", reason=reason)

    def closed_total(self) -> float:
        return sum(self.closed(reason) or 0 for reason in ALL_REASONS)

    def histogram_count(self, metric: str) -> int | None:
        sample = self.sample(metric)
        return None if sample is None else sample.histogram.count
