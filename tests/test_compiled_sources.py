"""numba keys a function cached on disk on its own source file only; a module whose compiled code inlines code or
constants of other modules names them to ``flush_when_sources_change`` (sim/jit.py), which flushes its cache when
one changes. A module left off that list goes unnoticed: after an edit to it, runs load stale machine code and every
test still passes on a warm cache. These tests hold each list against what the compiled functions refer to, read
from their code: the modules of the compiled and Python functions they call (recursively: overloads and inlined
kernels are Python functions here) and of the names they import. Dispatch built at run time (the multi-tier
engine's per-policy operations) is beyond this reading, so it is a lower bound of what a list must hold."""

from __future__ import annotations

import ast
import importlib
import sys
import types
from pathlib import Path

import pytest

from sim.jit import WATCHED_SOURCES

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sim", "learned", "trace")


def _modules_with_cached_code() -> list[str]:
    """Project modules that compile functions cached on disk (``cache=True``, or the cache engine's ``@entry``)."""
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            if "cache=True" in text or "@entry" in text:
                names.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return names


def _imported_from(module: types.ModuleType) -> dict[str, str]:
    """Each name ``module`` imports with ``from X import name``, and X."""
    origin = {}
    for node in ast.walk(ast.parse(Path(module.__file__).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                origin[alias.asname or alias.name] = node.module
    return origin


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def _referred(function: object, seen: set) -> set[str]:
    """The project modules ``function``'s code reads: its own, those of the names it uses, and theirs in turn."""
    py = getattr(function, "py_func", function)
    if not isinstance(py, types.FunctionType) or py in seen or not _ours(py.__module__):
        return set()
    seen.add(py)
    found = {py.__module__}
    origin = _imported_from(sys.modules[py.__module__])
    for name in _names(py.__code__):
        if name not in py.__globals__:
            continue
        value = py.__globals__[name]
        if isinstance(value, types.ModuleType):
            if _ours(value.__name__):
                found.add(value.__name__)
            continue
        if _ours(origin.get(name, "")):
            found.add(origin[name])
        found |= _referred(value, seen)
    return found


def _needed(module_name: str) -> set[str]:
    module = importlib.import_module(module_name)
    seen: set = set()
    needed: set[str] = set()
    for value in list(vars(module).values()):
        if getattr(value, "py_func", None) is not None and value.py_func.__module__ == module_name:
            needed |= _referred(value, seen)
    return needed - {module_name, "sim.jit"}


def _watched(module_name: str) -> set[str]:
    return {".".join(path.resolve().relative_to(ROOT).with_suffix("").parts)
            for path in WATCHED_SOURCES.get(module_name, ())}


def test_the_reading_finds_known_dependencies():
    """Hand-known: the engine's entry points call the per-policy operations (operations.py) and the arena; the
    learned policy's experts read S3-FIFO's thresholds; the block index reads the arena's layout."""
    assert {"sim.cache.operations", "sim.cache.arena", "sim.cache.span"} <= _needed("sim.cache.engine")
    assert "sim.cache.policies.s3fifo" in _needed("learned.shadow_experts")
    assert "sim.cache.arena_layout" in _needed("sim.cache.block_index")
    assert _needed("trace.blocks") == set()  # self-contained kernels


@pytest.mark.parametrize("module_name", _modules_with_cached_code())
def test_every_module_compiled_code_reads_is_watched(module_name):
    missing = _needed(module_name) - _watched(module_name)
    assert not missing, (f"{module_name}'s compiled code reads {sorted(missing)}: add them to its "
                         "flush_when_sources_change list, or an edit there leaves stale machine code")
