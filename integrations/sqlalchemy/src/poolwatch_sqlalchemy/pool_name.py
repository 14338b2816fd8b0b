"""The default pool name of an engine: stable across runs, meaningful, and free of credentials."""

from __future__ import annotations

import os

from sqlalchemy.engine import URL

# Backends whose "database" is a file on this machine rather than a name on a server.
_FILE_BACKENDS = frozenset({"sqlite", "duckdb"})
_MEMORY_DATABASES = frozenset({"", ":memory:"})


def default_pool_name(url: URL) -> str:
    """Name a pool after what it connects to, never after who connects.

    The semantic conventions ask for ``server.address:server.port/db.namespace`` when the pool has
    no name of its own; MDM keeps one database per dataset, so the database is what tells its
    pools apart. File databases are named by their absolute path, so the same file gets the same
    name whatever the working directory. The user name and password never appear.
    """
    backend = url.get_backend_name()
    database = url.database or ""
    if backend in _FILE_BACKENDS and url.host is None:
        if database in _MEMORY_DATABASES or database.startswith("file::memory:"):
            return f"{backend}::memory:"
        path = database.removeprefix("file:").split("?", 1)[0]
        return os.path.abspath(path)
    host = url.host or _socket_host(url)
    if host is None:
        return f"{backend}/{database}" if database else backend
    address = f"{host}:{url.port}" if url.port is not None else host
    return f"{address}/{database}" if database else address


def _socket_host(url: URL) -> str | None:
    """libpq-style ``?host=/run/postgresql``: the socket directory is the address."""
    value = url.query.get("host")
    if isinstance(value, tuple):
        value = value[0] if value else None
    return value
