"""Whole processes: MDM's engine-per-operation commands instrumented by the environment switch
alone, their last figures flushed at exit, an agent that is down, gRPC, and fork."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PROGRAMS
from figures import Figures
from otlp_receiver import GrpcReceiver, HttpReceiver
from sqlalchemy import URL

from poolwatch_sqlalchemy.pool_name import default_pool_name

# Generous: a child start-up (interpreter, SQLAlchemy, the SDK) on a loaded 2-core machine.
PROCESS_TIMEOUT_S = 60


def child_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "POOLWATCH_SQLALCHEMY"))}
    env.update(settings)
    return env


def run(program: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PROGRAMS / program), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_S,
        check=False,
    )


@pytest.fixture
def own_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


def mdm_url(backend: str, request: pytest.FixtureRequest) -> URL:
    url: URL = request.getfixturevalue("postgres_url" if backend == "postgresql" else "sqlite_url")
    return url


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_an_mdm_command_is_instrumented_by_the_switch_and_flushes_at_exit(
    backend: str, request: pytest.FixtureRequest, own_receiver: HttpReceiver
) -> None:
    url = mdm_url(backend, request)
    done = run(
        "mdm_operations.py",
        url.render_as_string(hide_password=False),
        "3",
        env=child_env(POOLWATCH_SQLALCHEMY="1", OTEL_EXPORTER_OTLP_ENDPOINT=own_receiver.base_url),
    )
    assert done.returncode == 0, done.stderr
    truth = json.loads(done.stdout)
    assert truth["instrumented"] is True
    assert truth["operations"] > 1
    password = url.password
    assert password is None or str(password) not in done.stdout + done.stderr

    # The process has exited: what it sent is all there will be. The periodic export (10 s)
    # never came round in 3 s, so the one request is the flush at exit.
    assert own_receiver.collected.count() == 1
    name = default_pool_name(url)
    figures = Figures(own_receiver.collected, name)
    assert figures.histogram_count("db.client.connection.wait_time") == truth["checkouts"]
    assert figures.histogram_count("db.client.connection.use_time") == truth["checkouts"]
    assert figures.value("poolwatch.pool.connections.opened") == truth["operations"]
    assert figures.closed("close") == truth["operations"]  # each dispose() closed its one
    assert figures.histogram_count("db.client.connection.create_time") == truth["operations"]
    assert (figures.count("used"), figures.count("idle")) == (0, 0)
    assert figures.value("db.client.connection.pending_requests") == 0
    assert figures.value("db.client.connection.timeouts") == 0
    assert figures.value("db.client.connection.max") == 15
    assert figures.value("poolwatch.pool.size") == 5
    assert figures.value("poolwatch.pool.max_overflow") == 10
    sample = figures.sample("db.client.connection.wait_time")
    assert sample is not None
    assert sample.resource["service.name"] == "unknown_service:mdm_operations.py"
    for pool_sample in own_receiver.collected.samples():
        if password is not None:
            assert str(password) not in json.dumps(pool_sample.attributes)
            assert str(password) not in json.dumps(pool_sample.resource)


def test_without_the_switch_nothing_is_instrumented(sqlite_url: URL, own_receiver: HttpReceiver) -> None:
    done = run(
        "mdm_operations.py",
        str(sqlite_url),
        "0.2",
        env=child_env(OTEL_EXPORTER_OTLP_ENDPOINT=own_receiver.base_url),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["instrumented"] is False
    assert own_receiver.collected.count() == 0


def test_the_switch_reaches_every_way_of_making_an_engine(tmp_path: Path, own_receiver: HttpReceiver) -> None:
    done = run(
        "entry_points.py",
        str(tmp_path),
        env=child_env(POOLWATCH_SQLALCHEMY="1", OTEL_EXPORTER_OTLP_ENDPOINT=own_receiver.base_url),
    )
    assert done.returncode == 0, done.stderr
    for file in ("top_level.sqlite", "engine_module.sqlite", "from_config.sqlite"):
        figures = Figures(own_receiver.collected, str(tmp_path / file))
        assert figures.histogram_count("db.client.connection.wait_time") == 1, file


def port_with_nothing_listening() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("agent", ["refusing", "silent"])
def test_an_agent_that_is_down_neither_breaks_nor_holds_the_application(
    agent: str, sqlite_url: URL
) -> None:
    silent = socket.socket()
    try:
        if agent == "silent":
            # Accepts connections (the kernel completes the handshake) and never answers.
            silent.bind(("127.0.0.1", 0))
            silent.listen(16)
            port = silent.getsockname()[1]
        else:
            port = port_with_nothing_listening()
        started = time.monotonic()
        done = run(
            "mdm_operations.py",
            str(sqlite_url),
            "2",
            env=child_env(
                POOLWATCH_SQLALCHEMY="1",
                OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
                # Periodic exports run during the workload, into the void.
                OTEL_METRIC_EXPORT_INTERVAL="200",
                POOLWATCH_SQLALCHEMY_EXIT_TIMEOUT="1",
            ),
        )
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    # Exports failed every 200 ms; the exporter's complaints are let through once.
    assert done.stderr.count("metrics batch") <= 1, done.stderr
    truth = json.loads(done.stdout)
    assert truth["instrumented"] is True
    # The workload's 2 s, start-up, and at most the 1 s exit bound: the bound holds even when
    # the export hangs on a peer that never answers.
    assert elapsed < truth["workload_seconds"] + 1 + 20, f"exit took {elapsed:.1f}s"


def test_grpc_export(sqlite_url: URL) -> None:
    receiver = GrpcReceiver()
    try:
        done = run(
            "mdm_operations.py",
            str(sqlite_url),
            "0.5",
            env=child_env(
                POOLWATCH_SQLALCHEMY="1",
                OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
                OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            ),
        )
    finally:
        receiver.close()
    assert done.returncode == 0, done.stderr
    truth = json.loads(done.stdout)
    figures = Figures(receiver.collected, default_pool_name(sqlite_url))
    assert figures.histogram_count("db.client.connection.wait_time") == truth["checkouts"]
    assert figures.value("poolwatch.pool.connections.opened") == truth["operations"]


def test_a_forked_child_reports_as_its_own_instance(tmp_path: Path, own_receiver: HttpReceiver) -> None:
    done = run(
        "fork.py",
        str(tmp_path / "forked.sqlite"),
        env=child_env(OTEL_EXPORTER_OTLP_ENDPOINT=own_receiver.base_url),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
    counts: dict[str, set[int]] = {}
    for sample in own_receiver.collected.samples():
        if sample.metric.name == "db.client.connection.wait_time":
            instance = sample.resource["service.instance.id"]
            counts.setdefault(instance, set()).add(sample.histogram.count)
    # Two instances; the parent's figures count its own 2 checkouts and were never sent again
    # by the child, whose own count starts from its fork.
    assert sorted(counts.values(), key=min) == [{2}, {3}]

