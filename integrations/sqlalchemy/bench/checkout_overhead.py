"""What instrumenting costs one checkout: the same single-threaded checkout/checkin loop on a
SQLite QueuePool, without and with poolwatch_sqlalchemy, best of several runs. Prints the
per-checkout times; speed is measured here, never asserted in tests.

    python bench/checkout_overhead.py [CHECKOUTS]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault("OTEL_METRIC_EXPORT_INTERVAL", "3600000")
# Nothing listens there: exporting is not what is measured.
os.environ.setdefault("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")

from sqlalchemy import create_engine  # noqa: E402

from poolwatch_sqlalchemy import instrument  # noqa: E402


def per_checkout_us(instrumented: bool, checkouts: int, path: str) -> float:
    engine = create_engine(f"sqlite:///{path}", pool_size=5, max_overflow=0)
    if instrumented:
        instrument(engine, pool_name="bench")
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(checkouts):
            engine.connect().close()
        best = min(best, time.perf_counter() - started)
    engine.dispose()
    return best / checkouts * 1e6


def main() -> None:
    checkouts = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "bench.sqlite")
        plain = per_checkout_us(False, checkouts, path)
        measured = per_checkout_us(True, checkouts, path)
    print(f"checkout+checkin, plain:        {plain:7.2f} µs")
    print(f"checkout+checkin, instrumented: {measured:7.2f} µs")
    print(f"added per checkout:             {measured - plain:7.2f} µs")


if __name__ == "__main__":
    main()
