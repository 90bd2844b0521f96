"""tools/overload_grid.py's worker pool ends with its command: forked workers inherited kvsim's SIGTERM handler, so
the pool's terminate (at the end of ``run``, or when the command was stopped) made each idle one print a
``Terminated`` traceback, and one stopped inside a run caught the signal there and waited for its next task -- the
command hung in the pool's join."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

GRID = [sys.executable, str(ROOT / "tools" / "overload_grid.py"), "run", "--jobs", "2"]
# one synthetic point that --out holds already (``_ran``): run skips it, its pool started with nothing to do (a misspelt
# --only, which ran nothing so, is refused)
POINT = "multi-turn 5/s out 1000 n40 seed 0"


def _ran(tmp_path: Path) -> Path:
    """An --out that holds POINT."""
    out = tmp_path / "g.jsonl"
    out.write_text(json.dumps({"name": POINT}) + "\n")
    return out


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def test_a_grid_with_nothing_to_run_ends_quietly(tmp_path):
    done = subprocess.run([*GRID, "--only", POINT, "--out", str(_ran(tmp_path))], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")  # (a point run prints its line)


# a SIGTERM that reaches the pool's first worker as it is forked (the pool's terminate, when the command is stopped
# as it starts its workers): the worker, forked with the command's handlers, raised ``Terminated`` before its
# initializer set its own (``worker_start``): a traceback under the one line (1 SIGTERM in 60 sent 0.15-0.5 s in)
STOPPED_AS_FORKED = """
import os, runpy, signal, sys
forks = 0
def counted():
    global forks
    forks += 1
def stopped_as_forked():
    if forks == 1:
        os.kill(os.getpid(), signal.SIGTERM)
os.register_at_fork(before=counted, after_in_child=stopped_as_forked)
sys.argv = [{script!r}, "run", "--jobs", "2", "--only", {point!r}, "--out", {out!r}]
runpy.run_path({script!r}, run_name="__main__")
"""


@pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="stops a worker as it is forked (POSIX)")
def test_a_worker_stopped_as_it_is_forked_ends_quietly(tmp_path):
    """The workers are forked with the stop signals blocked: one sent meanwhile waits for the worker's own handlers
    (``worker_start``: SIGTERM ends it), and the pool starts another in its place."""
    code = STOPPED_AS_FORKED.format(script=str(ROOT / "tools" / "overload_grid.py"), point=POINT,
                                    out=str(_ran(tmp_path)))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the pool's workers in /proc (Linux)")
def test_a_grid_stopped_mid_run_ends_with_143_and_no_traceback(tmp_path):
    # one overloaded point (200, 800 and 3,200 requests): its workers are inside kvsim's main when the signal comes
    proc = subprocess.Popen([*GRID, "--only", "azure 100/s 1 inst", "--out", str(tmp_path / "g.jsonl")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.3)  # a worker has taken the point and is running it (it ends ~1 s after the workers start)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)  # before the fix: no end (the pool waited for a worker that waited)
    finally:
        if proc.poll() is None:
            for child in _children(proc.pid):
                os.kill(child, signal.SIGKILL)
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143
    assert "Traceback" not in err


def _judge(grid: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "overload_grid.py"), "judge", str(grid)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _record(name: str, overloaded: bool, sustained: bool) -> str:
    """A grid point as ``run`` writes it, whose short run has no metrics: the caveat never flags it."""
    growth = {"ttft_s": 2.0 if overloaded else 1.0}
    further = {"ttft_s": 2.0 if sustained else 1.0}
    return json.dumps({"class": "steady", "name": name, "overloaded": overloaded, "sustained": sustained,
                       "growth": growth, "further": further, "short": {}})


def test_judge_scores_the_labels_of_the_grid(tmp_path):
    grid = tmp_path / "g.jsonl"
    grid.write_text(_record("a", True, True) + "\n" + _record("b", False, False) + "\n")
    done = _judge(grid)
    assert done.returncode == 0 and done.stderr == ""
    # never flagged: the overloaded point is a false negative, the other a true negative, under each label
    assert done.stdout.count("  all       tp   0  tn   1  fp   0  fn   1  errors   1") == 3, done.stdout


@pytest.mark.parametrize("lines, said", [([], "no points in it"),
                                         (["{}"], "line 1 lacks class, name, short, overloaded, sustained, growth, further"),
                                         (["a", '{"short": {}}'], "line 2 lacks class, name, overloaded, sustained, growth, further"),
                                         (["b", '{"class": 1, "name": 1, "short": {}, "overloaded": true, '
                                                '"sustained": true, "growth": {}, "further": {}}'],
                                          "line 2 lacks growth.ttft_s / further.ttft_s")])
def test_judge_refuses_a_grid_of_no_points_or_a_point_without_its_labels(tmp_path, lines, said):
    """Each was exit 0 with three empty tables (no points) or a KeyError traceback, exit 1."""
    grid = tmp_path / "g.jsonl"
    grid.write_text("".join(_record(x, True, False) + "\n" if len(x) == 1 else x + "\n" for x in lines))
    done = _judge(grid)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"overload_grid: {grid}: not a grid written by 'run' ({said})\n"
