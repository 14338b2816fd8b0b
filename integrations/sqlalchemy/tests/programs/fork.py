"""A process that forks after instrumenting an engine, as a pre-forking server does. The parent
checks out twice, the child three times; each must report its own figures under its own
service.instance.id. Prints the child's exit status.

    python fork.py SQLITE_FILE
"""

from __future__ import annotations

import os
import sys

from sqlalchemy import create_engine

from poolwatch_sqlalchemy import force_flush, instrument


def checkouts(engine: object, times: int) -> None:
    for _ in range(times):
        with engine.connect() as connection:  # type: ignore[attr-defined]
            connection.exec_driver_sql("SELECT 1")


def main() -> None:
    engine = create_engine(f"sqlite:///{sys.argv[1]}")
    instrument(engine, pool_name="forked")
    checkouts(engine, 2)
    pid = os.fork()
    if pid == 0:
        engine.dispose(close=False)  # SQLAlchemy's advice for a child
        checkouts(engine, 3)
        force_flush(5.0)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    main()
