"""A benchmark stopped midway (Ctrl-C, SIGTERM) ends with exit 130 or 143 and one line, as kvsim's commands do.

Before, six benchmarks ran their work outside ``command_status``: a Ctrl-C printed a 15-30 line KeyboardInterrupt
traceback and the process died of SIGINT; SIGTERM killed it silently. bench_learned trained through learned.train's own
command, which said "learned.train: interrupted" and returned 130, and the benchmark then said "training failed" and
exited 1. bench_common_runs, sent SIGTERM, left the main.py it was timing running on."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads a process's handlers in /proc")

# each runs for far longer than the test waits (a stopped run is the point): the script and its arguments
LONG_RUNS = {
    "bench_cluster.py": ["--requests", "30000"],
    "bench_common_runs.py": ["--runs", "readme", "--repeat", "50"],
    "bench_kernel_floor.py": ["--repeat", "1000"],
    "bench_mrc.py": ["--sizes", ",".join(str(2_000_000 + i) for i in range(40)), "--no-check"],
    "probe_overlap.py": [],
    "bench_learned.py": ["--workloads", "multi-turn", "--peers", ""],
}


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM: the benchmark's command has started (``watch_stop_signals``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


def _signal_when(proc: subprocess.Popen, ready: Callable[[int], bool], signum: int, never: str, wait_s: float,
                 poll_s: float, before: Callable[[], None] | None = None) -> str:
    """Send ``signum`` to ``proc`` once ``ready(pid)`` holds (after ``before``, where given) and return what it printed
    on standard error; it is killed if it is still running when the test ends."""
    try:
        deadline = time.monotonic() + wait_s
        while proc.poll() is None and time.monotonic() < deadline and not ready(proc.pid):
            time.sleep(poll_s)
        assert proc.poll() is None and ready(proc.pid), never
        if before is not None:
            before()
        proc.send_signal(signum)
        return proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


@pytest.mark.parametrize("signum, status, said", [(signal.SIGINT, 130, "interrupted"),
                                                  (signal.SIGTERM, 143, "terminated")])
@pytest.mark.parametrize("script", LONG_RUNS)
def test_a_benchmark_stopped_midway_says_so_in_one_line(script, signum, status, said):
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / script), *LONG_RUNS[script]], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    children: list[int] = []

    def into_its_work() -> None:
        time.sleep(0.5)
        children.extend(_children(proc.pid))

    err = _signal_when(proc, _catches_sigterm, signum, f"{script} never started its command's handlers", 60, 0.02,
                       into_its_work)
    assert (proc.returncode, err) == (status, f"{script}: {said}\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{child}").exists() for child in children):
        time.sleep(0.05)
    assert not any(Path(f"/proc/{child}").exists() for child in children), "a process it started outlived it"


def test_a_stop_while_a_script_loads_its_libraries_says_so_in_one_line(tmp_path):
    """A Ctrl-C before a script's command starts (numpy, pandas, lightgbm, the simulator loading: up to ~2 s) ends as
    one during its run does: one line, exit 130; it was a KeyboardInterrupt traceback and death by SIGINT."""
    script = tmp_path / "slow_start.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport sim.script_start  # noqa: F401\n"
                      "raise KeyboardInterrupt  # (as a Ctrl-C does while a library below loads)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (130, "slow_start.py: interrupted\n")
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport sim.script_start  # noqa: F401\n"
                      "raise ValueError('a bug')\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" in done.stderr and "ValueError: a bug" in done.stderr


def test_a_sigterm_no_command_answered_ends_a_script_as_terminated(tmp_path):
    """A SIGTERM's ``Terminated`` that reaches a script's top level (raised where its stops are not held) ends it as a
    command ends one: "terminated", 143. ``sim.script_start``'s hook took it for a Ctrl-C ("interrupted", 130)."""
    script = tmp_path / "slow_start.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport sim.script_start  # noqa: F401\n"
                      "from sim.command import Terminated\nraise Terminated  # (as _terminate raises it)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (143, "slow_start.py: terminated\n")


def test_a_ctrl_c_before_the_stop_machinery_loads_is_answered_without_loading_it(tmp_path):
    """A KeyboardInterrupt raised as ``sim.command`` starts loading, and again whenever it is asked for (a second
    Ctrl-C): ``sim.script_start``'s hook answers it as a Ctrl-C, "interrupted", 130, without importing ``sim.command``
    (only a ``Terminated`` is a SIGTERM's, and none can come from a module not loaded). Importing it there raised the
    second one inside the hook ("Error in sys.excepthook", a traceback, status 1)."""
    script = tmp_path / "early.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                      "class Stop:\n"
                      "    def find_spec(self, name, path=None, target=None):\n"
                      "        if name == 'sim.command':\n            raise KeyboardInterrupt\n"
                      "sys.meta_path.insert(0, Stop())\nimport sim.script_start  # noqa: F401\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (130, "early.py: interrupted\n")


@pytest.mark.parametrize("signum, status, said", [(signal.SIGINT, 130, "interrupted"),
                                                  (signal.SIGTERM, 143, "terminated")])
def test_a_stop_signal_while_a_script_loads_its_libraries_waits_for_its_command(tmp_path, signum, status, said):
    """A SIGTERM while a script's libraries load (here a sleep stands in for them) killed it: status -15, no line.
    ``sim.script_start`` blocks Ctrl-C and SIGTERM until the command starts, which takes the stop: one line."""
    script = tmp_path / "slow_start.py"
    script.write_text(f"import sys, time\nsys.path.insert(0, {str(ROOT)!r})\nimport sim.script_start  # noqa: F401\n"
                      "print('loading', file=sys.stderr, flush=True)\ntime.sleep(2)  # (numpy, numba loading)\n"
                      "from sim.command import command_status, end_process\n"
                      "end_process(command_status('slow_start.py', lambda: 0))\n")
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # (not ignored)
    assert proc.stderr.readline() == "loading\n"
    proc.send_signal(signum)
    assert (proc.wait(timeout=60), proc.stderr.read()) == (status, f"slow_start.py: {said}\n")


@pytest.mark.parametrize("signum, status, said", [(signal.SIGINT, 130, "interrupted"),
                                                  (signal.SIGTERM, 143, "terminated")])
def test_a_stop_while_script_start_loads_the_stop_machinery_waits_for_the_command(tmp_path, signum, status, said):
    """``sim.script_start`` holds the stops before it loads ``sim.command`` (10-30 ms of every script's start): a
    SIGTERM landing there killed the script (-15, no line)."""
    script = tmp_path / "early.py"
    script.write_text(f"import os, sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                      "class Stop:  # (the stop, as sim.command starts loading)\n"
                      "    def find_spec(self, name, path=None, target=None):\n"
                      f"        if name == 'sim.command':\n            os.kill(os.getpid(), {int(signum)})\n"
                      "sys.meta_path.insert(0, Stop())\nimport sim.script_start  # noqa: F401\n"
                      "from sim.command import command_status, end_process\n"
                      "end_process(command_status('early.py', lambda: 0))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # (not ignored)
    assert (done.returncode, done.stderr) == (status, f"early.py: {said}\n")


def test_a_stop_its_parent_blocked_stays_blocked_through_a_script_s_command(tmp_path):
    """``sim.script_start`` holds only the stops it blocked itself until the command: one the script was started with
    blocked (a parent's mask, inherited: a pool's worker forked with the stops held) stays blocked in the command, as
    ``hold_stops_until_command`` leaves one blocked already. SIGTERM blocked at the start: the command runs with
    SIGTERM, not SIGINT, blocked."""
    script = tmp_path / "blocked.py"
    script.write_text(f"import signal, sys\nsys.path.insert(0, {str(ROOT)!r})\nimport sim.script_start  # noqa: F401\n"
                      "from sim.command import command_status, end_process\n"
                      "stops = {signal.SIGINT, signal.SIGTERM}\n"
                      "end_process(command_status('blocked.py', lambda: print(sorted(map(int, "
                      "signal.pthread_sigmask(signal.SIG_BLOCK, []) & stops))) or 0))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}))
    assert (done.returncode, done.stdout, done.stderr) == (0, f"[{int(signal.SIGTERM)}]\n", "")


def test_a_module_importing_script_start_keeps_its_process_s_stop_signals(tmp_path):
    """Only the program blocks the stop signals as it loads: a test importing a script as a module (conftest's
    replay_module) must keep getting Ctrl-C and SIGTERM."""
    (tmp_path / "a_script.py").write_text("import sim.script_start  # noqa: F401\n")
    code = "import signal, a_script\nprint(sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"})
    assert (done.returncode, done.stdout, done.stderr) == (0, "[]\n", "")


def test_a_script_run_inside_another_program_keeps_that_program_s_stop_signals(tmp_path):
    """A script another program runs as ``__main__`` inside itself (runpy.run_path in test_help_texts, IPython's
    ``%run``) and stops before its command starts (there at its argument parsing) must leave that program's Ctrl-C and
    SIGTERM as they were: check_moe_kernels.py parses before command_status, and its help-text test left the pytest
    worker blocking both for good. Run by a launcher's own code (``python -c``), the script still holds them."""
    script = tmp_path / "a_script.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport sim.script_start  # noqa: F401\n"
                      "raise SystemExit(0)  # (argparse's --help, before any command starts)\n")
    run = f"import runpy, signal\ntry:\n    runpy.run_path({str(script)!r}, run_name='__main__')\nexcept SystemExit:\n" \
          "    pass\nprint(sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])))\n"
    inside = "def a_test():\n" + "".join(f"    {line}\n" for line in run.splitlines()) + "a_test()\n"
    for code, blocked in ((inside, "[]"), (run, "[<Signals.SIGINT: 2>, <Signals.SIGTERM: 15>]")):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout, done.stderr) == (0, f"{blocked}\n", "")


# the programs in these folders (a file run as ``__main__``), main.py aside: it calls watch_stop_signals instead
PROGRAMS = sorted(p.relative_to(ROOT).as_posix() for folder in ("benchmarks", "tools", "experiments", "learned")
                  for p in (ROOT / folder).glob("*.py") if '__name__ == "__main__"' in p.read_text())
PATH_SET_UP = {"__future__", "sys", "os", "pathlib"}  # what a program may import before it holds its stops


def _is_main_check(test: ast.expr) -> bool:
    return ast.unparse(test) in ("__name__ == '__main__'", "'__main__' == __name__")


def _imports_before_the_hold(body: list[ast.stmt], seen: list[str]) -> bool:
    """Whether the statements run as a program's module loads reach ``import sim.script_start`` (at the top level, in
    a ``try`` or an ``if __name__ == "__main__"``); what they import before it is added to ``seen``."""
    for node in body:
        if isinstance(node, ast.Import) and "sim.script_start" in (a.name for a in node.names):
            return True
        if isinstance(node, ast.Try | ast.If) and (isinstance(node, ast.Try) or _is_main_check(node.test)):
            if _imports_before_the_hold(node.body, seen):
                return True
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):  # (not run as the module loads)
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.Import):
                seen.extend(a.name for a in inner.names)
            elif isinstance(inner, ast.ImportFrom):
                seen.append(inner.module or "")
    return False


@pytest.mark.parametrize("script", PROGRAMS)
def test_every_program_holds_its_stops_before_it_imports_anything(script):
    """Every program imports ``sim.script_start`` before any module beyond what its path set-up needs: a stop while
    one loaded killed it (-15, no line) or printed a KeyboardInterrupt traceback. Standard-library modules too
    (edge_runs' multiprocessing and tempfile, bench_common_runs' subprocess) are milliseconds a stop can land in
    (``test_a_stop_at_a_program_s_first_import_waits_for_its_command``); overload_grid and ``python -m
    experiments.sweep`` held none (the sweep's imports and parser: ~0.6 s)."""
    seen: list[str] = []
    assert _imports_before_the_hold(ast.parse((ROOT / script).read_text()).body, seen), \
        f"{script} never imports sim.script_start"
    early = [name for name in seen if name.split(".")[0] not in PATH_SET_UP]
    assert not early, f"{script} imports {', '.join(early)} before sim.script_start"


# A sitecustomize: at the first module a program's own top level imports (the stop machinery itself aside), the
# program sends itself a stop, and notes the module in KVSIM_TEST_STOPPED_AT (the test checks that it came)
STOP_AT_FIRST_IMPORT = """
import os, signal, sys

def _stop_at_the_program_s_first_import(event, args):
    if event != "import" or args[0] in ("sim", "sim.script_start", "sim.command") \\
            or os.path.exists(os.environ["KVSIM_TEST_STOPPED_AT"]):
        return
    try:
        frame = sys._getframe(1)
    except ValueError:  # (Python starting up)
        return
    while frame is not None and frame.f_code.co_filename.startswith("<frozen"):
        frame = frame.f_back
    if frame is not None and frame.f_globals.get("__name__") == "__main__" and frame.f_code.co_name == "<module>":
        with open(os.environ["KVSIM_TEST_STOPPED_AT"], "w") as fh:
            fh.write(args[0])
        os.kill(os.getpid(), int(os.environ["KVSIM_TEST_STOP"]))

sys.addaudithook(_stop_at_the_program_s_first_import)
"""
# programs whose imports before sim.script_start were standard-library modules only (main.py: already right, and
# kept so): argv after the interpreter, and the program named in the line; unstopped, each ends at once
FIRST_IMPORTS = {
    "edge_runs (multiprocessing, tempfile)": (["tools/edge_runs.py", "--help"], "edge_runs.py"),
    "bench_common_runs (subprocess, statistics)": (["benchmarks/bench_common_runs.py", "--help"], "bench_common_runs.py"),
    "overload_grid (argparse, multiprocessing)": (["tools/overload_grid.py", "--help"], "overload_grid.py"),
    "python -m experiments.sweep (argparse, tqdm)": (["-m", "experiments.sweep", "--help"], "kvsim"),
    "gpu_timing (csv, socket: run by mistake)": (["tools/gpu_timing.py"], "gpu_timing.py"),
    "main.py (sim.command first)": (["main.py", "--help"], "kvsim"),
}


@pytest.mark.parametrize("signum, status, said", [(signal.SIGINT, 130, "interrupted"),
                                                  (signal.SIGTERM, 143, "terminated")])
@pytest.mark.parametrize("case", FIRST_IMPORTS)
def test_a_stop_at_a_program_s_first_import_waits_for_its_command(tmp_path, case, signum, status, said):
    """A stop landing while a program imports its first module (argparse, multiprocessing: milliseconds, too short to
    find from outside) waits for its command: one line, 130 or 143. It killed edge_runs, bench_common_runs,
    overload_grid and ``python -m experiments.sweep`` (-15, no line) or printed a KeyboardInterrupt traceback."""
    argv, program = FIRST_IMPORTS[case]
    (tmp_path / "sitecustomize.py").write_text(STOP_AT_FIRST_IMPORT)
    stopped_at = tmp_path / "stopped_at"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "KVSIM_TEST_STOP": str(int(signum)),
           "KVSIM_TEST_STOPPED_AT": str(stopped_at)}
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # (not ignored)
    assert stopped_at.exists(), f"{case}: imported nothing to be stopped in"
    assert (done.returncode, done.stderr) == (status, f"{program}: {said}\n"), stopped_at.read_text()


def _holds_the_stops(pid: int) -> bool:
    """Whether the process blocks SIGINT and SIGTERM (``sim.script_start``'s hold: its command has not started)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            blocked = int(line.split()[1], 16)
            return all(blocked >> (signum - 1) & 1 for signum in (signal.SIGINT, signal.SIGTERM))
    return False


# scripts whose libraries take a tenth of a second or more to load before their command starts (the others hold the
# stops for a few milliseconds: too short to find from here): argv after the interpreter, and the program named in
# the line. Unstopped, each is refused or ends at once (no work starts): the stop is the only way it ends 130 or 143.
SLOW_STARTS = {
    "fit_roofline (scipy, parser before the command)": (["tools/fit_roofline.py", "no_such_table.csv"], "fit_roofline"),
    "learned.train (numpy, numba kernels)": (["-m", "learned.train", "--out", "{tmp}/model.txt", "--rounds", "0"],
                                             "learned.train"),
    "replay_vllm (numpy, the simulator)": (["benchmarks/replay_vllm.py", "--help"], "replay_vllm.py"),
    "ns3_kv_timing (the serving engine)": (["tools/ns3_kv_timing.py", "point-to-point", "--out", "{tmp}/t.json"],
                                           "ns3_kv_timing"),
    "fit_roofline --help (ends before any command)": (["tools/fit_roofline.py", "--help"], "fit_roofline.py"),
    "python -m experiments.sweep (tqdm, main.py's parser)": (["-m", "experiments.sweep", "--help"], "kvsim"),
}


@pytest.mark.parametrize("signum, status, said", [(signal.SIGINT, 130, "interrupted"),
                                                  (signal.SIGTERM, 143, "terminated")])
@pytest.mark.parametrize("case", SLOW_STARTS)
def test_a_script_holds_a_stop_while_its_libraries_load(tmp_path, case, signum, status, said):
    """Each script imports ``sim.script_start`` before its libraries: a stop while they load (the hold seen in
    /proc) ends in one line and 130 or 143 as the command starts, or as the script ends before any command (--help);
    it was death by the signal (-15, -2) or a KeyboardInterrupt traceback."""
    argv, program = SLOW_STARTS[case]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONSTARTUP"}
    proc = subprocess.Popen([sys.executable, *(a.format(tmp=tmp_path) for a in argv)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**env, "PYTHONPATH": str(ROOT)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # (not ignored)
    err = _signal_when(proc, _holds_the_stops, signum, f"{case}: never held the stops as it loaded", 30, 0.001)
    assert (proc.returncode, err) == (status, f"{program}: {said}\n")


@pytest.mark.parametrize("signum, status, said", [(signal.SIGINT, 130, "interrupted"),
                                                  (signal.SIGTERM, 143, "terminated")])
@pytest.mark.parametrize("how", ["sys.exit(0)", "end_process(2)"])
def test_a_stop_held_until_a_script_ends_before_its_command_is_answered(tmp_path, how, signum, status, said):
    """A script that ends before any command starts (argparse's --help, a usage error, a module saying it is not a
    command) with a stop held meanwhile says so in one line and ends 130 or 143, after what it printed; the blocked
    stop was dropped and it ended 0 or 2 as if never stopped."""
    script = tmp_path / "ends_early.py"
    script.write_text(f"import os, sys\nsys.path.insert(0, {str(ROOT)!r})\nimport sim.script_start  # noqa: F401\n"
                      "from sim.command import end_process\nprint('usage: ends_early.py')\n"
                      f"os.kill(os.getpid(), {int(signum)})  # (held: it waits)\n{how}\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (status, "usage: ends_early.py\n", f"ends_early.py: {said}\n")
