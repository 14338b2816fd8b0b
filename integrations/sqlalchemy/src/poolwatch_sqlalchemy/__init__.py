"""Reports a SQLAlchemy engine's connection pool to the poolwatch agent over OTLP.

    from poolwatch_sqlalchemy import instrument
    instrument(engine, pool_name="datasets")

or, with no change to the code, ``POOLWATCH_SQLALCHEMY=1`` in the environment of a process that
has this package installed. See the package README for the metrics and the settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .registry import force_flush, instrument, uninstrument

__all__ = ["force_flush", "instrument", "uninstrument"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Loaded on first use: the environment switch imports this package at every interpreter
    # start-up, and a process that never creates an engine should not pay for the SDK.
    if name in __all__:
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
