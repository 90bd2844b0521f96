"""A stop signal that comes while a C extension initialises is held until its initialisation ends
(``sim.held_imports``): raised inside, in a module the extension's init imports, it made orjson's init read a NULL and
the command die of SIGSEGV (exit -11, no line) instead of exit 130 or 143 and one line."""

from __future__ import annotations

import importlib.machinery
import os
import signal
import subprocess
import sys

import pytest

from sim.held_imports import _HeldExtensionFinder, _HeldExtensionLoader, hold_stops_in_extension_imports
from tests.conftest import ROOT

# A command importing orjson, sent a stop as orjson's C init imports the standard library's uuid (for its UUID type;
# orjson 3.8 to 3.13 alike): the probe says whether the stop was raised there ("held": it was not)
STOPPED_IN_AN_EXTENSION_INIT = """
import importlib.machinery, os, sys
from sim.command import command_status
assert "orjson" not in sys.modules and "uuid" not in sys.modules

class Probe:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "uuid":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        real = spec.loader

        class Loader(type(real)):
            def exec_module(self, module):
                os.kill(os.getpid(), {signum})
                print("held", flush=True)
                super().exec_module(module)

        spec.loader = Loader(real.name, real.path)
        return spec

sys.meta_path.insert(0, Probe)

def body():
    import orjson  # noqa: F401
    return 0

sys.exit(command_status("probe", body))
"""


@pytest.mark.parametrize("signum, status, said", [(signal.SIGINT, 130, "interrupted"),
                                                  (signal.SIGTERM, 143, "terminated")])
def test_a_stop_while_a_c_extension_initialises_ends_the_command_in_one_line(signum, status, said):
    done = subprocess.run([sys.executable, "-c", STOPPED_IN_AN_EXTENSION_INIT.format(signum=int(signum))],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # (not ignored)
    assert (done.returncode, done.stdout, done.stderr) == (status, "held\n", f"probe: {said}\n")


def test_only_c_extensions_get_the_holding_loader():
    """Pure Python modules keep the standard path finder's loader (a stop inside one unwinds as Python code does)."""
    assert type(_HeldExtensionFinder.find_spec("json").loader) is importlib.machinery.SourceFileLoader
    spec = _HeldExtensionFinder.find_spec("_json")  # (the standard library's C accelerator: a shared object here)
    if spec is None:
        pytest.skip("this Python builds _json in: no extension module to find")
    assert type(spec.loader) is _HeldExtensionLoader and spec.origin == spec.loader.path
    assert spec.origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def test_the_finder_goes_once_just_before_the_standard_path_finder(monkeypatch):
    """Finders ahead of the path finder (pytest's assertion rewriter) keep their turn."""
    ahead, behind = object(), object()
    monkeypatch.setattr(sys, "meta_path", [ahead, importlib.machinery.PathFinder, behind])
    hold_stops_in_extension_imports()
    hold_stops_in_extension_imports()
    assert sys.meta_path == [ahead, _HeldExtensionFinder, importlib.machinery.PathFinder, behind]


def test_an_extension_loaded_through_the_holding_loader_works():
    """The module an extension's init builds is the standard loader's: imported fresh in a process where a command
    has started, orjson serialises."""
    code = ("import sys\nfrom sim.command import command_status\nimport sim.held_imports as h\n"
            "def body():\n    import orjson\n    print(type(orjson.orjson.__loader__).__name__, orjson.dumps([1]))\n"
            "    return 0\nsys.exit(command_status('probe', body))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stdout, done.stderr) == (0, "_HeldExtensionLoader b'[1]'\n", "")


@pytest.mark.parametrize("step", ["create_module", "exec_module"])
def test_both_steps_of_an_extension_s_initialisation_run_with_the_stops_held(monkeypatch, step):
    """A single-phase extension runs its whole init function in ``create_module`` (``_imp.create_dynamic``), a
    multi-phase one (orjson's) its exec slot in ``exec_module`` (PEP 489): each step runs inside ``stops_held``."""
    from sim import command

    spec = _HeldExtensionFinder.find_spec("_json")
    if spec is None:
        pytest.skip("this Python builds _json in: no extension module to find")
    seen = []
    monkeypatch.setattr(importlib.machinery.ExtensionFileLoader, step, lambda self, arg: seen.append(command._held))
    getattr(spec.loader, step)(spec if step == "create_module" else None)
    assert seen == [command._held + 1]
