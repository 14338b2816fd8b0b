"""Engines made through each way SQLAlchemy offers, in a program that never imports
poolwatch_sqlalchemy. Each connects once to its own SQLite file under DIRECTORY.

    python entry_points.py DIRECTORY
"""

from __future__ import annotations

import sys
from pathlib import Path

import sqlalchemy
from sqlalchemy.engine import create_engine


def main() -> None:
    directory = Path(sys.argv[1])
    engines = [
        sqlalchemy.create_engine(f"sqlite:///{directory / 'top_level.sqlite'}"),
        create_engine(f"sqlite:///{directory / 'engine_module.sqlite'}"),
        sqlalchemy.engine_from_config({"db.url": f"sqlite:///{directory / 'from_config.sqlite'}"}, prefix="db."),
    ]
    for engine in engines:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")


if __name__ == "__main__":
    main()
