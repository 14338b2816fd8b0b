"""The environment switch: with ``POOLWATCH_SQLALCHEMY=1``, every engine the process creates is
instrumented, with no change to its code.

The installed ``poolwatch_sqlalchemy_auto.pth`` imports this module at interpreter start-up when
the switch is on. Importing SQLAlchemy then would cost every Python process of that environment
its start-up time, so this only watches for the import: once ``sqlalchemy`` has loaded,
``create_engine`` is wrapped (the same way the OpenTelemetry contrib instrumentation does) so
that each engine it returns is passed to ``instrument()`` under its default pool name. Nothing
here may break the application: a failure is logged and the engine is returned as it is.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    # Only for the type checker: importlib.abc alone costs more start-up time than the rest.
    from collections.abc import Callable, Sequence
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec
    from types import ModuleType

_CREATE_ENGINE_MODULES = ("sqlalchemy", "sqlalchemy.engine", "sqlalchemy.engine.create")


def install() -> None:
    """Instrument every engine created from now on."""
    if "sqlalchemy" in sys.modules:
        _wrap_create_engine()
    elif not any(isinstance(finder, _WatchSqlalchemyImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _WatchSqlalchemyImport())


class _WatchSqlalchemyImport:
    """Finds ``sqlalchemy`` through the other finders and runs a hook once it has loaded."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname != "sqlalchemy":
            return None
        sys.meta_path.remove(self)
        spec: ModuleSpec | None = None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = cast("Loader", _ThenWrap(spec.loader))
        return spec


class _ThenWrap:
    def __init__(self, loader: Loader) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # The module keeps its real loader (importlib.resources and friends ask it).
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _wrap_create_engine()


def _wrap_create_engine() -> None:
    try:
        from sqlalchemy.engine import create
    except Exception:
        _log().warning("poolwatch: SQLAlchemy could not be imported; engines are not instrumented", exc_info=True)
        return
    import functools

    original: Callable[..., Any] = create.create_engine
    if getattr(original, "_poolwatch_auto", False):
        return

    @functools.wraps(original)
    def create_engine(*args: Any, **kwargs: Any) -> Any:
        engine = original(*args, **kwargs)
        # create_pool_from_url() makes a throw-away engine for its pool; that is not an engine
        # of the application's.
        if kwargs.get("_initialize", True):
            _instrument_quietly(engine)
        return engine

    create_engine._poolwatch_auto = True  # type: ignore[attr-defined]
    for name in _CREATE_ENGINE_MODULES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "create_engine", None) is original:
            module.create_engine = create_engine  # type: ignore[attr-defined]
    asyncio_engine = sys.modules.get("sqlalchemy.ext.asyncio.engine")
    if asyncio_engine is not None and getattr(asyncio_engine, "_create_engine", None) is original:
        asyncio_engine._create_engine = create_engine  # type: ignore[attr-defined]


def _instrument_quietly(engine: Any) -> None:
    try:
        from .registry import instrument

        instrument(engine)
    except Exception:
        _log().warning("poolwatch: could not instrument an engine; it runs uninstrumented", exc_info=True)


def _log() -> Any:
    import logging

    return logging.getLogger(__name__)


install()
