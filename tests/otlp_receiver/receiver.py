"""An OTLP metrics receiver for the integration tests (tests/otlp.rs).

It takes OTLP/gRPC (`MetricsService/Export`) and OTLP/HTTP (`POST /v1/metrics`,
`application/x-protobuf`), decodes each request with OpenTelemetry's generated protobuf classes,
and appends it to a file as one JSON line: the transport, the request headers the test cares
about, and the request in protobuf's JSON mapping (field names as in the .proto). It prints
`ready` once it listens. It stops on SIGTERM.

    receiver.py --out requests.jsonl [--grpc-port N] [--http-port N]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)

# Request headers recorded with each request: what the exporter is asked to send.
RECORDED_HEADERS = ("content-type", "user-agent", "x-api-key", "authorization")


class Recorder:
    """Appends decoded requests to the output file, one JSON line each."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()

    def record(
        self,
        transport: str,
        headers: dict[str, str],
        request: metrics_service_pb2.ExportMetricsServiceRequest,
    ) -> None:
        line = json.dumps(
            {
                "transport": transport,
                "headers": headers,
                "request": MessageToDict(request, preserving_proto_field_name=True),
            }
        )
        with self._lock, open(self._path, "a", encoding="utf-8") as out:
            out.write(line + "\n")


class MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder

    def Export(  # noqa: N802 (the gRPC method's name)
        self,
        request: metrics_service_pb2.ExportMetricsServiceRequest,
        context: grpc.ServicerContext,
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        metadata = {k: v for k, v in context.invocation_metadata() if k in RECORDED_HEADERS}
        self._recorder.record("grpc", metadata, request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


def http_handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if self.path != "/v1/metrics":
                self._answer(404, b"", "text/plain")
                return
            if self.headers.get("Content-Type") != "application/x-protobuf":
                self._answer(415, b"", "text/plain")
                return
            request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
            headers = {
                k.lower(): v for k, v in self.headers.items() if k.lower() in RECORDED_HEADERS
            }
            recorder.record("http", headers, request)
            answer = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
            self._answer(200, answer, "application/x-protobuf")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="file the decoded requests go to")
    parser.add_argument("--grpc-port", type=int)
    parser.add_argument("--http-port", type=int)
    args = parser.parse_args()
    recorder = Recorder(args.out)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    grpc_server = None
    if args.grpc_port:
        grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
            MetricsService(recorder), grpc_server
        )
        grpc_server.add_insecure_port(f"127.0.0.1:{args.grpc_port}")
        grpc_server.start()
    http_server = None
    if args.http_port:
        http_server = ThreadingHTTPServer(("127.0.0.1", args.http_port), http_handler(recorder))
        threading.Thread(target=http_server.serve_forever, daemon=True).start()

    print("ready", flush=True)
    stop.wait()
    if grpc_server is not None:
        grpc_server.stop(grace=None)
    if http_server is not None:
        http_server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
