"""A C extension module initialises with the stop signals held (``sim.command.stops_held``).

An extension's initialisation may import other modules and go on without checking that they loaded: orjson's reads
the NULL a failed import leaves (``orjson_init_exec`` -> ``PyObject_GenericGetDict``; ijl/orjson#310). A Ctrl-C or
SIGTERM raised by kvsim's handler in one of those imports made a command die of SIGSEGV (exit -11, no line) instead
of exit 130 or 143 and one line: a benchmark stopped while it loaded its trace (the trace readers, and orjson with
them, are imported inside the command), 2 times in 200 (tests/test_benchmark_stops.py, core dumps read with gdb).
Held, the stop is raised as the extension's initialisation ends: from Python code, which unwinds.
"""

from __future__ import annotations

import importlib.machinery
import sys
from types import ModuleType

from sim.command import stops_held


class _HeldExtensionLoader(importlib.machinery.ExtensionFileLoader):
    """The standard loader of a C extension, its module's creation and execution (its init function) held."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        with stops_held():
            return super().create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with stops_held():
            super().exec_module(module)


class _HeldExtensionFinder:
    """Finds what the standard path finder, next on ``sys.meta_path``, would (asked here, not a second time: ~20 us
    a module), each C extension with a loader that holds the stops."""

    @staticmethod
    def find_spec(name: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and type(spec.loader) is importlib.machinery.ExtensionFileLoader:
            spec.loader = _HeldExtensionLoader(spec.loader.name, spec.loader.path)
        return spec


def hold_stops_in_extension_imports() -> None:
    """Put the finder just before the standard path finder on ``sys.meta_path`` (once): finders ahead of it (a test
    runner's assertion rewriter) keep their turn; those behind it (an editable install's) are asked, as before, for
    what the path finder does not find."""
    if _HeldExtensionFinder in sys.meta_path:
        return
    try:
        at = sys.meta_path.index(importlib.machinery.PathFinder)
    except ValueError:  # (an embedding application with its own import system: left as it is)
        return
    sys.meta_path.insert(at, _HeldExtensionFinder)
