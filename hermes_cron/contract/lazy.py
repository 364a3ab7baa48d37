"""Modules that our processes import only because a library imports them for what we never use:
each is left out until something asks it for a name, then loaded for real and answered from.

Measured on the daemon's resident memory (scripts/bench_tick.py --only idle):
- asyncio (structlog.stdlib, for async loggers): 1.5 MB, and 7 MB in a bare interpreter;
- uuid, with the platform module it loads (structlog.threadlocal, an API of it we never use): 0.3 MB;
- inspect, with ast and dis (dataclasses, only to give a class without a docstring one made
  from its signature; every dataclass of ours has a docstring): 1.0 MB;
- tokenize (linecache, only to read a source file for a traceback's lines): 0.1 MB.
A process that needs one of them gets the real module on its first use; one that had it loaded
before keeps it."""

from __future__ import annotations

import importlib
import sys
import types
TYPE_CHECKING = False  # (see hermes_cron/__init__.py)
if TYPE_CHECKING:
    from typing import Any

UNUSED = ("asyncio", "uuid", "inspect", "tokenize")


class Deferred(types.ModuleType):
    """A stand-in for a module: any name asked of it loads the module and answers from it."""

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


def defer(*names: str) -> None:
    """Stand in for each module not yet imported, until its first use."""
    for name in names:
        if name not in sys.modules:
            sys.modules[name] = Deferred(name)
