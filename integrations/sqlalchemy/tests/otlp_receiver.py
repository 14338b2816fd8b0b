"""A small OTLP metrics receiver for the tests: the real wire format, decoded with the
``opentelemetry-proto`` messages, over HTTP (protobuf, optionally gzip) and gRPC.

It keeps every request it accepts; the helpers read the newest data point of a series, which for
cumulative temporality (the SDK's default) is the figure as of the last export.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import HistogramDataPoint, Metric, NumberDataPoint

T = TypeVar("T")


@dataclass(frozen=True)
class Sample:
    """One data point as received, with where it came from."""

    metric: Metric
    attributes: dict[str, str]
    resource: dict[str, str]
    point: NumberDataPoint | HistogramDataPoint

    @property
    def value(self) -> float:
        assert isinstance(self.point, NumberDataPoint), f"{self.metric.name} is not a number"
        return self.point.as_int if self.point.HasField("as_int") else self.point.as_double

    @property
    def histogram(self) -> HistogramDataPoint:
        assert isinstance(self.point, HistogramDataPoint), f"{self.metric.name} is not a histogram"
        return self.point


@dataclass
class Collected:
    """Every request received, in order, shared by the HTTP and gRPC front ends."""

    requests: list[ExportMetricsServiceRequest] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: ExportMetricsServiceRequest, headers: Mapping[str, str]) -> None:
        with self.lock:
            self.requests.append(request)
            self.headers.append(dict(headers))

    def samples(self) -> list[Sample]:
        """All data points, oldest first."""
        with self.lock:
            requests = list(self.requests)
        return [sample for request in requests for sample in _samples(request)]

    def latest(self, metric: str, **attributes: str) -> Sample | None:
        """The newest data point of ``metric`` whose attributes include ``attributes``."""
        wanted = {key.replace("__", "."): value for key, value in attributes.items()}
        for sample in reversed(self.samples()):
            if sample.metric.name == metric and wanted.items() <= sample.attributes.items():
                return sample
        return None

    def count(self) -> int:
        with self.lock:
            return len(self.requests)


def _samples(request: ExportMetricsServiceRequest) -> Iterator[Sample]:
    for resource_metrics in request.resource_metrics:
        resource = _attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                points: Any
                if kind == "sum":
                    points = metric.sum.data_points
                elif kind == "gauge":
                    points = metric.gauge.data_points
                elif kind == "histogram":
                    points = metric.histogram.data_points
                else:
                    raise AssertionError(f"{metric.name}: unexpected data kind {kind}")
                for point in points:
                    yield Sample(metric, _attributes(point.attributes), resource, point)


def _attributes(pairs: Any) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs:
        assert isinstance(pair, KeyValue)
        result[pair.key] = _text(pair.value)
    return result


def _text(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    return "" if kind is None else str(getattr(value, kind))


class HttpReceiver:
    """OTLP/HTTP with protobuf bodies on 127.0.0.1, at /v1/metrics."""

    def __init__(self, collected: Collected | None = None) -> None:
        self.collected = collected if collected is not None else Collected()
        collected_ = self.collected

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                if self.path != "/v1/metrics":
                    self._reply(404, b"not found")
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)
                if self.headers.get("Content-Type") != "application/x-protobuf":
                    self._reply(415, b"expected application/x-protobuf")
                    return
                request = ExportMetricsServiceRequest()
                try:
                    request.ParseFromString(body)
                except DecodeError as error:
                    self._reply(400, str(error).encode())
                    return
                collected_.add(request, {k.lower(): v for k, v in self.headers.items()})
                self._reply(200, ExportMetricsServiceResponse().SerializeToString())

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class GrpcReceiver(metrics_service_pb2_grpc.MetricsServiceServicer):
    """OTLP/gRPC MetricsService on 127.0.0.1, without TLS."""

    def __init__(self, collected: Collected | None = None) -> None:
        self.collected = collected if collected is not None else Collected()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(self, self._server)  # type: ignore[no-untyped-call]
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    def Export(  # noqa: N802 (the service's name)
        self, request: ExportMetricsServiceRequest, context: grpc.ServicerContext
    ) -> ExportMetricsServiceResponse:
        self.collected.add(request, {k: str(v) for k, v in context.invocation_metadata()})
        return ExportMetricsServiceResponse()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.stop(grace=None)


def wait_for(probe: Callable[[], T | None], what: str, timeout_s: float = 10.0) -> T:
    """Poll ``probe`` until it returns something other than None, or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.01)
