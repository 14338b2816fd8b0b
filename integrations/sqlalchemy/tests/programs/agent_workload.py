"""The workload of the agent's end-to-end test (tests/inapp.rs in the Rust suite): 20 threads on
a QueuePool (pool_size=5, max_overflow=2), instrumented with the package, reporting to a running
poolwatch agent. It keeps its own ground truth and stops at quiet moments so the test can compare
the agent's figures with it:

1. contention: 20 threads check out 10 times each, holding for 20 ms and working 5 ms between
   checkouts (without that pause the thread that returns a connection takes it straight back,
   and most checkouts never wait);
2. quiet moment "pending": all 7 connections held and 13 callers blocked in the pool's queue;
   it prints {"quiet": "pending", ...} and waits for a line on stdin;
3. the 13 callers time out (pool_timeout); quiet moment "timeouts": nothing held, nothing
   waiting; it prints {"quiet": "timeouts", ...} and waits for a line on stdin;
4. it prints {"done": ..., "waits": [...]} (every checkout's wait, as the workload timed it),
   waits for a last line and exits, which flushes the package's last figures.

    python agent_workload.py URL POOL_NAME POOL_TIMEOUT_SECONDS
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workload import GroundTruth, blocked_in_pool_queue, run_all, wait_until  # noqa: E402

from poolwatch_sqlalchemy import instrument  # noqa: E402

POOL_SIZE = 5
MAX_OVERFLOW = 2
CAPACITY = POOL_SIZE + MAX_OVERFLOW
THREADS = 20
WAITERS = THREADS - CAPACITY


def contention(engine: Engine, truth: GroundTruth) -> None:
    def caller() -> None:
        for _ in range(10):
            connection = truth.checkout(engine)
            assert connection is not None, "a caller timed out under contention"
            with connection:
                connection.exec_driver_sql("SELECT 1")
                time.sleep(0.02)
            time.sleep(0.005)

    run_all([caller] * THREADS)


def say(message: dict[str, object]) -> None:
    print(json.dumps(message), flush=True)


def main() -> None:
    url, pool_name, pool_timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    engine = create_engine(
        url, pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW, pool_timeout=pool_timeout
    )
    instrument(engine, pool_name=pool_name)
    truth = GroundTruth()

    contention(engine, truth)

    release = threading.Event()
    holding = threading.Semaphore(0)

    def hold() -> None:
        connection = truth.checkout(engine)
        assert connection is not None, "a holder timed out"
        with connection:
            holding.release()
            release.wait()

    holders = [threading.Thread(target=hold) for _ in range(CAPACITY)]
    for holder in holders:
        holder.start()
    for _ in holders:
        assert holding.acquire(timeout=30)
    timeouts_before = truth.timeouts
    waiters = [threading.Thread(target=truth.checkout, args=(engine,)) for _ in range(WAITERS)]
    for waiter in waiters:
        waiter.start()
    wait_until(
        lambda: all(blocked_in_pool_queue(waiter) for waiter in waiters),
        f"{WAITERS} callers block in the pool's queue",
    )
    say(
        {
            "quiet": "pending",
            "used": CAPACITY,
            "pending": WAITERS,
            "timeouts": timeouts_before,
            "pool_size": POOL_SIZE,
        }
    )
    sys.stdin.readline()
    for waiter in waiters:
        waiter.join()
    release.set()
    for holder in holders:
        holder.join()
    assert truth.timeouts == timeouts_before + WAITERS, "every waiter timed out"
    say({"quiet": "timeouts", "used": 0, "pending": 0, "timeouts": truth.timeouts})
    sys.stdin.readline()
    say({"done": True, "checkouts": truth.checkouts, "waits": truth.waits})
    sys.stdin.readline()


if __name__ == "__main__":
    main()
