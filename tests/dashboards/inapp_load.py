"""A steady in-app load for tests/dashboards.rs: a SQLAlchemy QueuePool (pool_size 3,
max_overflow 1) on a SQLite file, instrumented with the integration, under 8 threads that check
out a connection, hold it 20 ms and come back 2 ms later, until stdin closes. The pool is always
contended, so the agent has waits, holds, overflow and queued callers to show, and the histograms
grow between any two scrapes. It prints "ready" once the first checkout is done.

    python inapp_load.py SQLITE_URL POOL_NAME
"""

from __future__ import annotations

import sys
import threading
import time

from sqlalchemy import create_engine, text

from poolwatch_sqlalchemy import instrument

THREADS = 8


def main() -> None:
    url, pool_name = sys.argv[1], sys.argv[2]
    engine = create_engine(url, pool_size=3, max_overflow=1, pool_timeout=30)
    instrument(engine, pool_name=pool_name)
    stop = threading.Event()
    started = threading.Event()

    def caller() -> None:
        while not stop.is_set():
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                time.sleep(0.02)
            started.set()
            time.sleep(0.002)

    threads = [threading.Thread(target=caller) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    started.wait()
    print("ready", flush=True)
    sys.stdin.read()
    stop.set()
    for thread in threads:
        thread.join()
    engine.dispose()


if __name__ == "__main__":
    main()
