"""MDM as it is: a short-lived command that opens a new engine for every dataset operation and
disposes of it, for a few seconds, then exits. It never imports poolwatch_sqlalchemy: the
environment switch alone instruments it. Prints its ground truth as JSON on stdout.

    python mdm_operations.py URL SECONDS
"""

from __future__ import annotations

import json
import sys
import time

from sqlalchemy import create_engine, text


def main() -> None:
    url, seconds = sys.argv[1], float(sys.argv[2])
    operations = 0
    deadline = time.monotonic() + seconds
    started = time.perf_counter()
    while operations == 0 or time.monotonic() < deadline:
        # MDM's defaults: QueuePool 5 + 10.
        engine = create_engine(url, pool_size=5, max_overflow=10, pool_timeout=30)
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE IF NOT EXISTS operations (n INTEGER)"))
            connection.execute(text("INSERT INTO operations (n) VALUES (:n)"), {"n": operations})
        with engine.connect() as connection:
            connection.execute(text("SELECT count(*) FROM operations")).scalar_one()
        engine.dispose()
        operations += 1
    print(
        json.dumps(
            {
                "operations": operations,
                "checkouts": 2 * operations,
                "workload_seconds": time.perf_counter() - started,
                "instrumented": "poolwatch_sqlalchemy.registry" in sys.modules,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
