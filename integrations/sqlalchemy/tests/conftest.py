"""Shared fixtures: one OTLP receiver for the test process, and the real databases.

The package makes its provider once per process, from the environment, on the first
``instrument()``; so the receiver and the export settings are in place before any test runs.
Periodic export is pushed out of the way (one hour) so that what the receiver holds is exactly
what a test flushed, at a moment it chose.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import URL, create_engine, text

sys.path.insert(0, str(Path(__file__).parent))

from otlp_receiver import HttpReceiver  # noqa: E402

RECEIVER = HttpReceiver()
# Some tests start processes of their own: they must not inherit the switch from the shell.
os.environ.pop("POOLWATCH_SQLALCHEMY", None)
for variable in list(os.environ):
    if variable.startswith("OTEL_"):
        del os.environ[variable]
os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = RECEIVER.base_url
os.environ["OTEL_METRIC_EXPORT_INTERVAL"] = "3600000"
os.environ["OTEL_SERVICE_NAME"] = "poolwatch-sqlalchemy-tests"

PROGRAMS = Path(__file__).parent / "programs"


@pytest.fixture
def receiver() -> HttpReceiver:
    return RECEIVER


def postgres_url_or_fail() -> URL:
    url = URL.create(
        "postgresql+psycopg",
        username="mdm",
        password="mdm-pw-9a27",
        host="127.0.0.1",
        port=int(os.environ.get("POOLWATCH_PG_PORT", "55432")),
        database="mdm_demo",
    )
    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        pytest.fail(
            f"PostgreSQL is not reachable at {url.render_as_string(hide_password=True)} "
            f"({type(error).__name__}); start it with scripts/services.sh start"
        )
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def postgres_url() -> URL:
    return postgres_url_or_fail()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> URL:
    return URL.create("sqlite+pysqlite", database=str(tmp_path / "dataset.sqlite"))


@pytest.fixture
def pool_name(request: pytest.FixtureRequest) -> Iterator[str]:
    # One pool name per test: the provider and its cumulative series outlive every test.
    yield f"test:{request.node.name}"
