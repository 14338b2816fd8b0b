"""Export settings read from the environment: the OpenTelemetry SDK variables, poolwatch defaults.

Reading is a pure function of a mapping, so it is tested without touching ``os.environ``. A bad
value never stops the application: it is reported as a problem naming the variable and the
reason, and the default is used instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from .semconv import DEFAULT_SECONDS_BUCKETS

# The poolwatch agent takes OTLP/HTTP on its own listener (`listen`, default 127.0.0.1:9898);
# its gRPC listener, when configured, conventionally sits on 4317.
DEFAULT_HTTP_ENDPOINT: Final = "http://127.0.0.1:9898/v1/metrics"
DEFAULT_GRPC_ENDPOINT: Final = "http://127.0.0.1:4317"
# The agent samples every 10 s by default; the SDK's own default (60 s) would leave it a minute
# behind the application.
DEFAULT_EXPORT_INTERVAL_MS: Final = 10_000.0
# How long a process that exits may spend sending its last figures.
DEFAULT_EXIT_TIMEOUT_S: Final = 2.0

SWITCH: Final = "POOLWATCH_SQLALCHEMY"
BUCKETS: Final = "POOLWATCH_SQLALCHEMY_BUCKETS"
EXIT_TIMEOUT: Final = "POOLWATCH_SQLALCHEMY_EXIT_TIMEOUT"
PROTOCOL: Final = "OTEL_EXPORTER_OTLP_PROTOCOL"
METRICS_PROTOCOL: Final = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
ENDPOINT: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"
METRICS_ENDPOINT: Final = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
EXPORT_INTERVAL: Final = "OTEL_METRIC_EXPORT_INTERVAL"
HISTOGRAM_AGGREGATION: Final = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"

_TRUE = frozenset({"1", "true", "yes", "on"})


class Protocol(Enum):
    HTTP_PROTOBUF = "http/protobuf"
    GRPC = "grpc"


@dataclass(frozen=True)
class ExportSettings:
    protocol: Protocol = Protocol.HTTP_PROTOBUF
    # The full URL the exporter is given: with /v1/metrics for HTTP, host and port for gRPC.
    endpoint: str = DEFAULT_HTTP_ENDPOINT
    export_interval_ms: float = DEFAULT_EXPORT_INTERVAL_MS
    # None: base-2 exponential histograms, when the standard variable asks for them.
    bucket_boundaries: tuple[float, ...] | None = DEFAULT_SECONDS_BUCKETS
    exit_timeout_s: float = DEFAULT_EXIT_TIMEOUT_S
    # "VARIABLE: reason" for every value that was ignored.
    problems: tuple[str, ...] = field(default=())

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ExportSettings:
        problems: list[str] = []
        protocol = _protocol(env, problems)
        return cls(
            protocol=protocol,
            endpoint=_endpoint(env, protocol),
            export_interval_ms=_positive(
                env, EXPORT_INTERVAL, DEFAULT_EXPORT_INTERVAL_MS, problems
            ),
            bucket_boundaries=_buckets(env, problems),
            exit_timeout_s=_positive(env, EXIT_TIMEOUT, DEFAULT_EXIT_TIMEOUT_S, problems),
            problems=tuple(problems),
        )


def switched_on(env: Mapping[str, str]) -> bool:
    """Whether the environment switch asks for every engine to be instrumented."""
    return env.get(SWITCH, "").strip().lower() in _TRUE


def _protocol(env: Mapping[str, str], problems: list[str]) -> Protocol:
    name, raw = _first_set(env, METRICS_PROTOCOL, PROTOCOL)
    if raw is None:
        return Protocol.HTTP_PROTOBUF
    value = raw.strip().lower()
    for protocol in Protocol:
        if protocol.value == value:
            return protocol
    # http/json is standard, but the Python SDK ships no JSON exporter.
    problems.append(f"{name}: {raw!r} is not supported, using http/protobuf (supported: grpc, http/protobuf)")
    return Protocol.HTTP_PROTOBUF


def _endpoint(env: Mapping[str, str], protocol: Protocol) -> str:
    # Same precedence as the SDK: the per-signal variable is used as given, the generic one gets
    # the signal's path appended for HTTP.
    if specific := env.get(METRICS_ENDPOINT, "").strip():
        return specific
    if generic := env.get(ENDPOINT, "").strip():
        if protocol is Protocol.GRPC:
            return generic
        return f"{generic.removesuffix('/')}/v1/metrics"
    return DEFAULT_GRPC_ENDPOINT if protocol is Protocol.GRPC else DEFAULT_HTTP_ENDPOINT


def _positive(env: Mapping[str, str], name: str, default: float, problems: list[str]) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        problems.append(f"{name}: {raw!r} is not a number, using {default:g}")
        return default
    if not math.isfinite(value) or value <= 0:
        problems.append(f"{name}: {raw!r} must be a positive number, using {default:g}")
        return default
    return value


def _buckets(env: Mapping[str, str], problems: list[str]) -> tuple[float, ...] | None:
    if env.get(HISTOGRAM_AGGREGATION, "").strip().lower() == "base2_exponential_bucket_histogram":
        return None
    raw = env.get(BUCKETS, "").strip()
    if not raw:
        return DEFAULT_SECONDS_BUCKETS
    try:
        boundaries = tuple(float(part) for part in raw.split(","))
    except ValueError:
        problems.append(f"{BUCKETS}: {raw!r} is not a comma-separated list of seconds, using the default")
        return DEFAULT_SECONDS_BUCKETS
    increasing = all(a < b for a, b in zip(boundaries, boundaries[1:]))
    if not increasing or not all(math.isfinite(b) for b in boundaries):
        problems.append(f"{BUCKETS}: {raw!r} must be finite and strictly increasing, using the default")
        return DEFAULT_SECONDS_BUCKETS
    return boundaries


def _first_set(env: Mapping[str, str], *names: str) -> tuple[str, str | None]:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return name, value
    return names[-1], None
