"""The OpenTelemetry side: a private MeterProvider, its OTLP exporter, and the instruments.

The provider is this package's own, not the global one: the application may already export its
metrics elsewhere, and the pool figures go to the poolwatch agent by default. One provider per
process, made on first use; its PeriodicExportingMetricReader exports from its own daemon
thread, so the application never waits on the network. At exit the last figures are flushed
within a short bound; after a fork the child starts a provider (and an instance id) of its own.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource

from . import semconv
from .config import METRICS_PROTOCOL, ExportSettings, Protocol
from .limits import PoolLimits
from .semconv import STATE, STATE_IDLE, STATE_USED, CloseReason
from .tracker import Occupancy, PoolName

_log = logging.getLogger(__name__)

_SCOPE = "poolwatch_sqlalchemy"
_VERSION = "0.1.0"


class Telemetry:
    """One process's provider and instruments; implements the trackers' Recorder."""

    def __init__(
        self,
        settings: ExportSettings,
        pools: Callable[[], Iterable[tuple[PoolName, Occupancy]]],
        env: Mapping[str, str],
    ) -> None:
        for problem in settings.problems:
            _log.warning("poolwatch: %s", problem)
        _throttle_exporter_logs()
        exporter, self.settings = _otlp_exporter(settings, env)
        self._pools = pools
        reader = PeriodicExportingMetricReader(
            _ProcessExporter(exporter), export_interval_millis=settings.export_interval_ms
        )
        self.provider = MeterProvider(
            metric_readers=[reader],
            resource=build_resource(env),
            views=_histogram_views(settings.bucket_boundaries),
            # The exit flush below is bounded; the SDK's own exit hook would wait out retries.
            shutdown_on_exit=False,
            # Exemplars would tie a wait to the trace around it, at the price of a context
            # lookup on every checkout; the agent has no use for them.
            exemplar_filter=AlwaysOffExemplarFilter(),
        )
        meter = self.provider.get_meter(_SCOPE, _VERSION)

        def observed(metric: semconv.Metric, read: Callable[[], Iterable[Observation]]) -> None:
            meter.create_observable_up_down_counter(
                metric.name,
                callbacks=[lambda _options: read()],
                unit=metric.unit,
                description=metric.description,
            )

        observed(semconv.CONNECTION_COUNT, self._observe_counts)
        observed(semconv.PENDING_REQUESTS, self._observe(lambda _l, o: o.pending))
        observed(semconv.CONNECTION_MAX, self._observe(lambda limits, _o: limits.max))
        observed(semconv.CONNECTION_IDLE_MAX, self._observe(lambda limits, _o: limits.idle_max))
        observed(semconv.CONNECTION_IDLE_MIN, self._observe(lambda limits, _o: limits.idle_min))
        observed(semconv.POOL_SIZE, self._observe(lambda limits, _o: limits.pool_size))
        observed(semconv.POOL_MAX_OVERFLOW, self._observe(lambda limits, _o: limits.max_overflow))

        def counter(metric: semconv.Metric) -> Any:
            return meter.create_counter(metric.name, unit=metric.unit, description=metric.description)

        def histogram(metric: semconv.Metric) -> Any:
            return meter.create_histogram(metric.name, unit=metric.unit, description=metric.description)

        self._timeouts = counter(semconv.TIMEOUTS)
        self._opened = counter(semconv.CONNECTIONS_OPENED)
        self._closed = counter(semconv.CONNECTIONS_CLOSED)
        self._errors = counter(semconv.CONNECTION_ERRORS)
        self._wait_time = histogram(semconv.WAIT_TIME)
        self._use_time = histogram(semconv.USE_TIME)
        self._create_time = histogram(semconv.CREATE_TIME)
        # After a fork, the child's provider starts with the pools the parent had instrumented.
        for pool, _occupancy in pools():
            self.pool_seen(pool, pool.limits)

    # -- observations ----------------------------------------------------------------------

    def _observe_counts(self) -> Iterable[Observation]:
        for pool, occupancy in self._pools():
            yield Observation(occupancy.used, {**pool.attributes, STATE: STATE_USED})
            yield Observation(occupancy.idle, {**pool.attributes, STATE: STATE_IDLE})

    def _observe(
        self, figure: Callable[[PoolLimits, Occupancy], int | None]
    ) -> Callable[[], Iterable[Observation]]:
        def read() -> Iterable[Observation]:
            for pool, occupancy in self._pools():
                value = figure(pool.limits, occupancy)
                if value is not None:  # absent is not zero
                    yield Observation(value, pool.attributes)

        return read

    # -- Recorder --------------------------------------------------------------------------

    def pool_seen(self, pool: PoolName, limits: PoolLimits) -> None:
        # Counters start at 0 when the pool appears, so that the first event is an increase a
        # rate can see, not the appearance of a series. Timeouts only where checkout can time out.
        self._opened.add(0, pool.attributes)
        for attributes in pool.close_attributes.values():
            self._closed.add(0, attributes)
        self._errors.add(0, pool.attributes)
        if limits.can_time_out:
            self._timeouts.add(0, pool.attributes)

    def waited(self, pool: PoolName, seconds: float) -> None:
        self._wait_time.record(seconds, pool.attributes)

    def timed_out(self, pool: PoolName) -> None:
        self._timeouts.add(1, pool.attributes)

    def checkout_failed(self, pool: PoolName) -> None:
        self._errors.add(1, pool.attributes)

    def used(self, pool: PoolName, seconds: float) -> None:
        self._use_time.record(seconds, pool.attributes)

    def created(self, pool: PoolName, seconds: float) -> None:
        self._create_time.record(seconds, pool.attributes)

    def opened(self, pool: PoolName) -> None:
        self._opened.add(1, pool.attributes)

    def closed(self, pool: PoolName, reason: CloseReason) -> None:
        self._closed.add(1, pool.close_attributes[reason])

    # -- flushing --------------------------------------------------------------------------

    def flush(self, timeout_s: float, *, skip_if_unreachable: bool = False) -> bool:
        """Collect and export now, waiting at most ``timeout_s``; True if that finished in time.

        The export runs on a daemon thread so the bound holds even when the endpoint accepts a
        connection and never answers.
        """

        def run() -> None:
            # An endpoint that refuses connections would only make the exporter retry with
            # back-off until the bound: at exit, a refused connection means there is no one to
            # flush to, and the process should not wait.
            if skip_if_unreachable and not _reachable(self.settings, timeout_s):
                _log.debug("poolwatch: %s unreachable, last figures dropped", self.settings.endpoint)
                return
            self.provider.force_flush(timeout_millis=timeout_s * 1000)

        worker = threading.Thread(target=run, name="poolwatch-flush", daemon=True)
        worker.start()
        worker.join(timeout_s)
        return not worker.is_alive()



class _ProcessExporter(MetricExporter):
    """Forwards to the OTLP exporter in the process that made it, and drops exports in a forked
    child: there the provider's figures and its service.instance.id are the parent's."""

    def __init__(self, inner: MetricExporter) -> None:
        # The reader asks its exporter for these; they are the OTLP exporter's (the standard
        # OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE applies).
        super().__init__(
            preferred_temporality=getattr(inner, "_preferred_temporality", None),
            preferred_aggregation=getattr(inner, "_preferred_aggregation", None),
        )
        self._inner = inner
        self._owner = os.getpid()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if os.getpid() != self._owner:
            return MetricExportResult.SUCCESS
        return self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class _Throttle(logging.Filter):
    """Lets one record through per period: an agent that is down makes the exporter log every
    retry of every export, which would fill a command's stderr."""

    def __init__(self, period_s: float) -> None:
        super().__init__()
        self._period_s = period_s
        self._next = 0.0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            if record.created < self._next:
                return False
            self._next = record.created + self._period_s
            return True


# The loggers the OTLP metric exporters report failed exports on.
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.common.http",
)
_EXPORT_FAILURE_LOG_PERIOD_S = 300.0


def _throttle_exporter_logs() -> None:
    for name in _EXPORTER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Throttle) for f in logger.filters):
            logger.addFilter(_Throttle(_EXPORT_FAILURE_LOG_PERIOD_S))


def build_resource(env: Mapping[str, str]) -> Resource:
    """The SDK's resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, telemetry.sdk.*), with
    poolwatch's defaults under what the environment sets."""
    detected = Resource.create()
    defaults: dict[str, str] = {}
    if SERVICE_INSTANCE_ID not in detected.attributes:
        # Unique per process: two runs of one CLI are two instances, whose cumulative counters
        # must not be mistaken for one another's.
        defaults[SERVICE_INSTANCE_ID] = str(uuid.uuid4())
    if not _service_name_set(env):
        # The SDK falls back to "unknown_service"; the conventions allow the executable's name
        # after a colon, and the script's name is what tells MDM's commands apart.
        program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        defaults[SERVICE_NAME] = f"unknown_service:{program or 'python'}"
    return detected.merge(Resource(defaults))


def _service_name_set(env: Mapping[str, str]) -> bool:
    if env.get("OTEL_SERVICE_NAME", "").strip():
        return True
    for pair in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = pair.partition("=")
        if key.strip() == SERVICE_NAME and value.strip():
            return True
    return False


def _histogram_views(boundaries: tuple[float, ...] | None) -> list[View]:
    if boundaries is None:
        return []  # the exporter's preferred aggregation: base-2 exponential
    return [
        View(
            instrument_name=metric.name,
            aggregation=ExplicitBucketHistogramAggregation(boundaries=boundaries),
        )
        for metric in (semconv.WAIT_TIME, semconv.USE_TIME, semconv.CREATE_TIME)
    ]


def _otlp_exporter(settings: ExportSettings, env: Mapping[str, str]) -> tuple[MetricExporter, ExportSettings]:
    """The exporter, and the settings it really uses (grpc falls back to http/protobuf)."""
    # Headers, timeout, compression and certificates: the exporters read the standard
    # OTEL_EXPORTER_OTLP_* variables themselves.
    if settings.protocol is Protocol.GRPC:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcExporter,
            )
        except ImportError:
            settings = ExportSettings.from_env({**env, METRICS_PROTOCOL: Protocol.HTTP_PROTOBUF.value})
            _log.warning(
                "poolwatch: OTLP over grpc needs the extra poolwatch-sqlalchemy[grpc]; "
                "exporting over http/protobuf to %s instead",
                settings.endpoint,
            )
        else:
            return GrpcExporter(endpoint=settings.endpoint), settings
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpExporter,
    )

    return HttpExporter(endpoint=settings.endpoint), settings


def _reachable(settings: ExportSettings, timeout_s: float) -> bool:
    endpoint = settings.endpoint
    parts = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
    default_port = 443 if parts.scheme == "https" else 80
    try:
        port = parts.port or default_port
        with socket.create_connection((parts.hostname or "localhost", port), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


# -- the process's provider -------------------------------------------------------------------

_lock = threading.Lock()
_current: Telemetry | None = None
_after_fork: list[Callable[[], None]] = []


def current(pools: Callable[[], Iterable[tuple[PoolName, Occupancy]]]) -> Telemetry:
    """The process's Telemetry, made on first use from the environment."""
    global _current
    telemetry = _current
    if telemetry is not None:
        return telemetry
    with _lock:
        if _current is None:
            _current = Telemetry(ExportSettings.from_env(os.environ), pools, os.environ)
        return _current


def existing() -> Telemetry | None:
    return _current


def on_fork_in_child(hook: Callable[[], None]) -> None:
    _after_fork.append(hook)


def _forget_in_child() -> None:
    global _current
    global _lock
    old = _current
    _current = None
    # A lock held by another thread at the fork stays held in the child, whose copy of that
    # thread does not exist.
    _lock = threading.Lock()
    if old is not None:
        # Its reader thread was restarted in the child; stop it (its exports are dropped).
        threading.Thread(target=old.provider.shutdown, name="poolwatch-fork-cleanup", daemon=True).start()
    for hook in _after_fork:
        hook()


def _flush_at_exit() -> None:
    telemetry = _current
    if telemetry is not None:
        telemetry.flush(telemetry.settings.exit_timeout_s, skip_if_unreachable=True)


atexit.register(_flush_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
