"""MDM-made databases and the processes that use them, for poolwatch's integration tests.

Datasets are made the way MDM makes them: an ``mdm.yaml``, a SQLAlchemy engine per dataset
(a QueuePool, 5 + 10 by default) whose SQLite connections get MDM's PRAGMAs on connect and whose
DuckDB connections (duckdb-engine) get ``threads`` and ``memory_limit``, a ``train`` table, and
a registry entry ``config/datasets/<name>.yaml`` written with ``yaml.dump`` as MDM writes it.

Commands (run with the Python of ``scripts/python-env.sh``)::

    fixture.py dataset HOME NAME BACKEND ROWS [--journal wal|delete]
    fixture.py remove HOME NAME
    fixture.py sqlite-writer PATH SECONDS        # busy_timeout 0: any interference is an error
    fixture.py hold-sqlite PATH CONNECTIONS      # until stdin closes
    fixture.py duckdb-writer PATH SECONDS        # holds the file for the whole run

Long-running commands print ``ready <pid>`` once they hold what they hold, and a JSON report
on their last line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy
import yaml
from sqlalchemy import event, text

# What MDM's config models default to, and what its SQLite backend runs on every connection.
SQLITE_PRAGMAS = {
    "journal_mode": "WAL",
    "synchronous": "NORMAL",
    "cache_size": -64000,
    "temp_store": "MEMORY",
    "mmap_size": 268435456,
}
MDM_YAML = {
    "database": {
        "default_backend": "sqlite",
        "sqlalchemy": {"echo": False, "pool_size": 5, "max_overflow": 10, "pool_timeout": 30, "pool_recycle": 3600},
        "sqlite": dict(SQLITE_PRAGMAS),
        "duckdb": {"memory_limit": "8GB", "threads": 4, "temp_directory": "/tmp", "access_mode": "READ_WRITE"},
        "postgresql": {"host": "localhost", "port": 5432, "database_prefix": "mdm_"},
    },
    "paths": {"datasets_path": "datasets/", "configs_path": "config/datasets/"},
}


def engine_for(backend: str, path: Path, pragmas: dict[str, Any]) -> sqlalchemy.Engine:
    """The engine MDM's storage backend builds for a dataset file."""
    pool = MDM_YAML["database"]["sqlalchemy"]
    if backend == "sqlite":
        engine = sqlalchemy.create_engine(
            f"sqlite:///{path}",
            pool_size=pool["pool_size"],
            max_overflow=pool["max_overflow"],
            poolclass=sqlalchemy.pool.QueuePool,
            connect_args={"check_same_thread": False, "timeout": 30},
        )

        @event.listens_for(engine, "connect")
        def set_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            for name, value in pragmas.items():
                cursor.execute(f"PRAGMA {name}={value}")
            cursor.close()

        return engine
    duck = MDM_YAML["database"]["duckdb"]
    return sqlalchemy.create_engine(
        f"duckdb:///{path}",
        pool_size=pool["pool_size"],
        max_overflow=pool["max_overflow"],
        connect_args={"config": {"memory_limit": duck["memory_limit"], "threads": duck["threads"]}},
    )


def make_dataset(home: Path, name: str, backend: str, rows: int, journal: str) -> None:
    """Registers a dataset as MDM's registrar does: database, table, statistics, registry."""
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "mdm.yaml"
    if not settings.exists():
        settings.write_text(yaml.dump(MDM_YAML, default_flow_style=False, sort_keys=False))
    directory = home / "datasets" / name
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.{backend}"
    pragmas = dict(SQLITE_PRAGMAS, journal_mode=journal.upper())
    engine = engine_for(backend, path, pragmas)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE train (id INTEGER, feature DOUBLE, target INTEGER)"))
        if rows:
            connection.execute(
                text("INSERT INTO train VALUES (:id, :feature, :target)"),
                [{"id": i, "feature": i * 0.5, "target": i % 2} for i in range(1, rows + 1)],
            )
    with engine.connect() as connection:
        row_count = connection.execute(text("SELECT COUNT(*) FROM train")).scalar_one()
    engine.dispose()
    database: dict[str, Any] = {"backend": backend}
    if backend == "sqlite":
        database.update(pragmas)
    else:
        database.update(MDM_YAML["database"]["duckdb"])
    database["path"] = str(path)
    info = {
        "name": name,
        "display_name": name,
        "description": "",
        "database": database,
        "tables": {"train": "train"},
        "problem_type": None,
        "target_column": "target",
        "id_columns": ["id"],
        "tags": [],
        "metadata": {
            "statistics": {
                "row_count": row_count,
                "memory_size_bytes": 0,
                "computed_at": datetime.datetime.now().isoformat(),
            }
        },
    }
    registry = home / "config" / "datasets"
    registry.mkdir(parents=True, exist_ok=True)
    (registry / f"{name}.yaml").write_text(yaml.dump(info, default_flow_style=False, sort_keys=False))


def remove_dataset(home: Path, name: str) -> None:
    """As MDM's delete_dataset: the registry entry first, then the dataset's directory."""
    (home / "config" / "datasets" / f"{name}.yaml").unlink()
    shutil.rmtree(home / "datasets" / name)


def ready() -> None:
    print(f"ready {os.getpid()}", flush=True)


def sqlite_writer(path: Path, seconds: float) -> dict[str, Any]:
    """Small write transactions as fast as they go; busy_timeout 0 makes any lock held by
    someone else an immediate error instead of a wait."""
    connection = sqlite3.connect(path, timeout=0, isolation_level=None)
    connection.execute("CREATE TABLE IF NOT EXISTS writes (written_at REAL, payload TEXT)")
    journal = connection.execute("PRAGMA journal_mode").fetchone()[0]
    ready()
    done, errors = 0, []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO writes VALUES (?, ?)", (time.time(), "x" * 64))
            connection.execute("COMMIT")
            done += 1
        except sqlite3.Error as error:
            errors.append(str(error))
            if connection.in_transaction:
                connection.execute("ROLLBACK")
    connection.close()
    return {"journal_mode": journal, "transactions": done, "errors": errors}


def hold_sqlite(path: Path, count: int) -> dict[str, Any]:
    """Checks out `count` connections from an MDM-style pool and holds them until stdin closes."""
    engine = engine_for("sqlite", path, SQLITE_PRAGMAS)
    held = [engine.connect() for _ in range(count)]
    for connection in held:
        connection.execute(text("SELECT 1"))
    ready()
    sys.stdin.read()
    for connection in held:
        connection.close()
    engine.dispose()
    return {"held": count}


def duckdb_writer(path: Path, seconds: float) -> dict[str, Any]:
    """Holds a DuckDB file read-write for the whole run, writing to it all along."""
    import duckdb

    connection = duckdb.connect(str(path))
    connection.execute("CREATE TABLE IF NOT EXISTS writes (written_at DOUBLE)")
    ready()
    done, errors = 0, []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            connection.execute("INSERT INTO writes VALUES (?)", [time.time()])
            done += 1
        except duckdb.Error as error:
            errors.append(str(error))
        time.sleep(0.01)
    connection.close()
    return {"transactions": done, "errors": errors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("dataset")
    make.add_argument("home", type=Path)
    make.add_argument("name")
    make.add_argument("backend", choices=["sqlite", "duckdb"])
    make.add_argument("rows", type=int)
    make.add_argument("--journal", default="wal", choices=["wal", "delete"])
    remove = commands.add_parser("remove")
    remove.add_argument("home", type=Path)
    remove.add_argument("name")
    writer = commands.add_parser("sqlite-writer")
    writer.add_argument("path", type=Path)
    writer.add_argument("seconds", type=float)
    hold = commands.add_parser("hold-sqlite")
    hold.add_argument("path", type=Path)
    hold.add_argument("connections", type=int)
    duck = commands.add_parser("duckdb-writer")
    duck.add_argument("path", type=Path)
    duck.add_argument("seconds", type=float)
    args = parser.parse_args()

    if args.command == "dataset":
        make_dataset(args.home, args.name, args.backend, args.rows, args.journal)
        return 0
    if args.command == "remove":
        remove_dataset(args.home, args.name)
        return 0
    if args.command == "sqlite-writer":
        report = sqlite_writer(args.path, args.seconds)
    elif args.command == "hold-sqlite":
        report = hold_sqlite(args.path, args.connections)
    else:
        report = duckdb_writer(args.path, args.seconds)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
