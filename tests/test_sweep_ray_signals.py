"""A sweep on Ray stops on Ctrl-C or SIGTERM as a local one does: exit 130 or 143 with one line, Ray shut down.

``ray.init`` puts its own SIGTERM handlers in the driver (``sys.exit(15)`` while it starts, then a node shutdown and
``sys.exit(1)``, behind abseil's failure handler, which prints a native stack trace and aborts the process when the
shutdown takes over 3 seconds: ray-project/ray#64830), and ``ray.wait`` raises a KeyboardInterrupt of its own for
whatever the handler raised. Before the fix a SIGTERM'd Ray sweep printed 60 lines of native stack and exited 1 (or
134, SIGABRT, when the shutdown took over 3 s), or exited 15 with no line while Ray started. Ray's core worker also
logs, from a native thread, the errors of tasks killed as it shuts down ("task_manager.cc: Failed to push error to
driver"): after a stop that is noise before the one line.

CI does not install Ray: the first tests run a stand-in that does those three things (what Ray 2.60 was seen to
do); the last runs Ray itself where it is installed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_sweep import TINY_SYNTHETIC, _spec

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals")

STAND_IN = '''
"""Ray's signal behaviour in a driver, and nothing else (tests/test_sweep_ray_signals.py)."""
import os, signal, sys, time
from pathlib import Path

MARKS = Path(os.environ["RAY_STAND_IN_MARKS"])
_initialized = False


def _mark(name):
    (MARKS / name).write_text("")


def is_initialized():
    return _initialized


def init(**options):
    global _initialized
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))  # as ray.init does while it starts
    _mark("init")
    if os.environ.get("RAY_STAND_IN_SLOW_INIT"):
        time.sleep(600)
    _initialized = True


def shutdown():
    _mark("shutdown")
    # what Ray's core worker logs from a native thread as a stopped sweep's tasks are killed (seen under load)
    os.write(2, b"[2026-12-06 16:03:56,761 E 30359 30638] task_manager.cc:1545: Failed to push error to driver\\n")


def remote(**options):
    class Remote:
        def __init__(self, function):
            self.function = function

        def remote(self, task):
            return object()
    return Remote


def wait(refs, num_returns=1, timeout=None):
    _mark("wait")
    try:
        time.sleep(600)
    except KeyboardInterrupt:
        raise KeyboardInterrupt from None  # Ray's own, for whatever the handler raised
    return [], refs
'''


def _stand_in(tmp_path: Path) -> dict:
    """An environment whose ``import ray`` is the stand-in, and its marks' directory."""
    package = tmp_path / "site" / "ray"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(STAND_IN)
    marks = tmp_path / "marks"
    marks.mkdir()
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(ROOT)]),
                RAY_STAND_IN_MARKS=str(marks), RAY_ADDRESS="")


def _sweep(tmp_path: Path, env: dict) -> subprocess.Popen:
    spec = _spec(tmp_path, mode="cache-only", workload=TINY_SYNTHETIC, axes={"cache.capacity_blocks": [300, 600]})
    argv = [sys.executable, "main.py", "--sweep", spec, "--backend", "ray", "--jobs", "2",
            "--report-csv", str(tmp_path / "s.csv"), "--no-plot", "--quiet"]
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _signal_when(proc: subprocess.Popen, mark: Path, signum: int) -> tuple[int, str]:
    deadline = time.time() + 120
    while time.time() < deadline and not mark.exists() and proc.poll() is None:
        time.sleep(0.01)
    assert mark.exists(), f"the sweep never reached {mark.name}: {proc.stderr.read() if proc.poll() is not None else ''}"
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the sweep had not ended 60 s after the signal")
    return proc.returncode, err


@pytest.mark.parametrize("signum, status, line", [(signal.SIGTERM, 143, "kvsim: terminated\n"),
                                                  (signal.SIGINT, 130, "kvsim: interrupted\n")])
def test_a_stop_signal_while_ray_runs_the_points(tmp_path, signum, status, line):
    env = _stand_in(tmp_path)
    proc = _sweep(tmp_path, env)
    assert _signal_when(proc, Path(env["RAY_STAND_IN_MARKS"]) / "wait", signum) == (status, line)
    assert (Path(env["RAY_STAND_IN_MARKS"]) / "shutdown").exists()  # the Ray this sweep started is shut down


def test_sigterm_while_ray_starts(tmp_path):
    env = dict(_stand_in(tmp_path), RAY_STAND_IN_SLOW_INIT="1")
    proc = _sweep(tmp_path, env)
    assert _signal_when(proc, Path(env["RAY_STAND_IN_MARKS"]) / "init", signal.SIGTERM) == (143, "kvsim: terminated\n")
    assert (Path(env["RAY_STAND_IN_MARKS"]) / "shutdown").exists()  # what it had started is shut down too


def _ray_processes() -> set[int]:
    """Ray's worker processes (``ray::run_task`` while running a point) on this machine, from /proc."""
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().startswith(b"ray::run_task"):
                found.add(int(cmdline.parent.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("when", ["starting", "running"])
def test_sigterm_stops_a_sweep_on_ray_itself(tmp_path, shared_data, when):
    pytest.importorskip("ray", reason="Ray is optional (pip install -e '.[ray]'); CI does not install it")
    trace = shared_data / "traces" / "mooncake_conversation.jsonl"  # points of a minute or more each
    spec = _spec(tmp_path, mode="single", workload={"trace": str(trace), "limit": 12000},
                 axes={"serving.num_instances": [1, 2, 3]})
    argv = [sys.executable, "main.py", "--sweep", spec, "--backend", "ray", "--jobs", "2",
            "--report-csv", str(tmp_path / "s.csv"), "--no-plot", "--quiet"]
    env = dict(os.environ, RAY_ADDRESS="")
    before = _ray_processes()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        if when == "starting":
            time.sleep(2.5)  # (Ray takes longer than that to start here; a run on a faster machine checks less)
        else:
            deadline = time.time() + 120
            while time.time() < deadline and not _ray_processes() - before:
                time.sleep(0.05)
            assert _ray_processes() - before, "no Ray worker started running a point"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert (proc.returncode, err) == (143, "kvsim: terminated\n")
    deadline = time.time() + 30
    while time.time() < deadline and _ray_processes() - before:
        time.sleep(0.1)
    assert not _ray_processes() - before, "a Ray worker outlived its sweep"
