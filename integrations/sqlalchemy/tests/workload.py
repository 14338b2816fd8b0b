"""A threaded workload on a real QueuePool that keeps its own ground truth.

Every checkout is timed by the workload itself, around ``Engine.connect()``, which encloses the
pool's checkout that the package times: each of the package's waits lies inside one of these.
"""

from __future__ import annotations

import functools
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Engine


@dataclass
class GroundTruth:
    waits: list[float] = field(default_factory=list)
    timeout_waits: list[float] = field(default_factory=list)
    checkouts: int = 0
    waiting_now: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def attempts(self) -> int:
        return len(self.waits)

    @property
    def timeouts(self) -> int:
        return len(self.timeout_waits)

    def checkout(self, engine: Engine) -> Connection | None:
        """One checkout; None when it timed out."""
        with self.lock:
            self.waiting_now += 1
        start = time.perf_counter()
        try:
            connection = engine.connect()
        except exc.TimeoutError:
            waited = time.perf_counter() - start
            with self.lock:
                self.waiting_now -= 1
                self.waits.append(waited)
                self.timeout_waits.append(waited)
            return None
        waited = time.perf_counter() - start
        with self.lock:
            self.waiting_now -= 1
            self.waits.append(waited)
            self.checkouts += 1
        return connection


def pressure(engine: Engine, truth: GroundTruth, threads: int, rounds: int, hold_s: float) -> None:
    """``threads`` callers, each checking out ``rounds`` times and holding up to ``hold_s``."""

    def caller(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(rounds):
            connection = truth.checkout(engine)
            if connection is None:
                continue
            with connection:
                connection.exec_driver_sql("SELECT 1")
                time.sleep(rng.uniform(0, hold_s))  # the work done while holding

    run_all([functools.partial(caller, seed) for seed in range(threads)])


def run_all(targets: list[Callable[[], None]]) -> None:
    workers = [threading.Thread(target=target) for target in targets]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def blocked_in_pool_queue(thread: threading.Thread) -> bool:
    """Whether the thread sits in the QueuePool's queue wait, past every bit of checkout code
    that runs before it (the package's wrapper included)."""
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None or frame.f_code.co_name != "wait":
        return False
    while frame is not None:
        path = PurePath(frame.f_code.co_filename)
        if path.parts[-3:] == ("sqlalchemy", "util", "queue.py") and frame.f_code.co_name == "get":
            return True
        frame = frame.f_back
    return False


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting until {what}")
        time.sleep(0.001)
