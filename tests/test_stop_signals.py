"""A Ctrl-C or SIGTERM ends a command as stopped (130 / 143, one line) wherever it lands: in a frame that leaves a
failing destructor, twice, inside a compiled kernel, behind another error a library wrapped it in, swallowed by a
library's broad ``except`` (sim.command.watch_stop_signals), in a command run inside another, in a sweep's point.
A stop lost where Python cannot pass it on (a destructor, a C library's callback): tests/test_lost_stops.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from sim.command import Terminated, command_status
from sim.errors import InputError
from sim.report.output import atomic_write
from tests.conftest import ROOT, atomic_leftovers

INTERNAL = "kvsim: internal error (please report it with the command line above)"  # (sim.command._internal's line)

class _FailingDestructor:
    """A native object interrupted half-built (llvmlite's ObjectRef during numba's compile): its __del__ fails."""

    def __del__(self):
        raise AttributeError("_ptr")


@pytest.mark.parametrize(("stop", "line", "code"), [(KeyboardInterrupt, "interrupted", 130),
                                                     (Terminated, "terminated", 143)])
def test_a_stopped_run_says_so_in_one_line_whatever_its_frames_leave(monkeypatch, capsys, stop, line, code):
    """Freed as the stop unwinds, a half-built object's failing destructor would print "Exception ignored in ..."
    after the status line (seen under load: Ctrl-C inside numba's compiler)."""
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)  # restored after the test

    def body() -> int:
        half_built = _FailingDestructor()  # noqa: F841 (freed with this frame, after the handler)
        raise stop

    assert command_status("kvsim", body) == code
    assert capsys.readouterr().err == f"kvsim: {line}\n"


@pytest.mark.parametrize("early", [False, True], ids=["script", "main.py"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_while_the_process_ends_after_its_work_ends_it_at_once_with_its_status(early, signum):
    """A stop landing in ``end_process``'s exit functions (a Ray sweep's shutdown: seconds), every output written:
    with the handlers ``command_status`` put back, a script died by SIGTERM (-15, no line) or printed a Ctrl-C's
    traceback ("Exception ignored in atexit callback"). Now it ends the process at once, with the status it was
    ending with (here 0) and nothing more said."""
    script = f"""
import atexit, sys, time
from sim.command import command_status, end_process, watch_stop_signals
if {early}:
    watch_stop_signals()  # (main.py's early handlers, which command_status puts back)

def shutdown():
    print("exiting", file=sys.stderr, flush=True)
    time.sleep(60)  # (cut short by the stop)

atexit.register(shutdown)
end_process(command_status("kvsim", lambda: 0))
"""
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # (not ignored)
    assert process.stderr.readline() == "exiting\n"
    process.send_signal(signum)
    assert (process.wait(timeout=30), process.stderr.read()) == (0, "")


@pytest.mark.parametrize("early", [False, True], ids=["script", "main.py"])
def test_a_sigterm_the_parent_ignores_stays_ignored(early):
    """A process started with SIGTERM ignored (its parent's choice, inherited across exec, as a shell's background job
    inherits Ctrl-C ignored) keeps ignoring it, as it keeps an ignored Ctrl-C: before, a command put its own handler in
    place and a SIGTERM sent to it ended it (143, "kvsim: terminated")."""
    script = f"""
import os, signal, time
from sim.command import command_status, end_process, watch_stop_signals
if {early}:
    watch_stop_signals()  # (main.py's early handlers)

def body():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
    return 0

end_process(command_status("kvsim", body))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN))
    assert (done.returncode, done.stderr) == (0, "")


def test_a_second_sigterm_while_stopping_is_ignored(monkeypatch, capsys):
    """coreutils ``timeout`` signals the command and then its process group, so the command gets SIGTERM twice; the
    second one, landing while the first is being handled, raised Terminated out of the handler: a traceback."""
    import sim.command

    said = []
    say = sim.command._say

    def say_after_another_sigterm(line: str) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # the second signal, while the first is handled
        said.append(line)
        say(line)

    monkeypatch.setattr(sim.command, "_say", say_after_another_sigterm)

    def body() -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        return 0

    assert command_status("kvsim", body) == 143
    assert said == ["kvsim: terminated"]


@pytest.mark.parametrize(("first", "second", "line", "code"),
                         [(signal.SIGINT, signal.SIGINT, "interrupted", 130),
                          (signal.SIGINT, signal.SIGTERM, "interrupted", 130),
                          (signal.SIGTERM, signal.SIGINT, "terminated", 143)],
                         ids=["SIGINT-SIGINT", "SIGINT-SIGTERM", "SIGTERM-SIGINT"])
def test_a_second_stop_while_the_first_is_answered_is_the_same_stop(monkeypatch, capsys, first, second, line, code):
    """Ctrl-C pressed twice, or a SIGTERM after a Ctrl-C (``timeout`` as the user gives up): the second stop, landing
    while ``command_status`` says the first one ended the command, raised its exception out of it: a traceback, exit
    1 or death by SIGINT instead of one line."""
    import sim.command

    said = []
    say = sim.command._say

    def say_after_another_stop(text: str) -> None:
        os.kill(os.getpid(), second)  # the second signal, while the first is answered
        said.append(text)
        say(text)

    monkeypatch.setattr(sim.command, "_say", say_after_another_stop)

    def body() -> int:
        os.kill(os.getpid(), first)
        return 0

    try:
        status = command_status("kvsim", body)
    except KeyboardInterrupt as escaped:  # (not left to end the test session)
        pytest.fail(f"{type(escaped).__name__} raised out of command_status")
    assert status == code
    assert said == [f"kvsim: {line}"]
    assert capsys.readouterr().err == f"kvsim: {line}\n"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize(("error", "code", "said"), [(InputError("bad row 3"), 2, ["kvsim: error: bad row 3"]),
                                                     (RuntimeError("a bug"), 1, [INTERNAL])],
                         ids=["bad input", "internal error"])
def test_a_stop_while_another_end_is_answered_is_noted_not_raised(monkeypatch, capsys, signum, error, code, said):
    """A Ctrl-C or SIGTERM landing as ``command_status`` says the command failed (its one line, an internal error's
    traceback) was raised out of it: a second traceback, exit 1 or death by SIGINT. It is noted instead, so a command
    run inside another (tools/random_runs.py's draws) leaves it to the outer one, which stops."""
    import sim.command

    lines = []
    say = sim.command._say

    def say_after_a_stop(text: str) -> None:
        os.kill(os.getpid(), signum)  # the stop, while the end is answered
        lines.append(text)
        say(text)

    monkeypatch.setattr(sim.command, "_say", say_after_a_stop)

    def body() -> int:
        raise error

    def outer() -> int:
        try:
            inner = command_status("kvsim", body)
        except KeyboardInterrupt as escaped:  # (not left to end the test session)
            pytest.fail(f"{type(escaped).__name__} raised out of command_status")
        assert inner == code
        sim.command.raise_if_stopped()  # (tools/random_runs.py's check between draws)
        return 0

    assert command_status("hunt", outer) == 128 + signum
    assert lines == [*said, f"hunt: {'terminated' if signum == signal.SIGTERM else 'interrupted'}"]


def test_a_signal_a_compiled_kernel_returned_with_is_an_interruption_not_an_internal_error(capsys):
    """numba's dispatcher reports a Ctrl-C (or SIGTERM) raised while its function ran as a SystemError caused by it
    ("returned a result with an exception set": seen generating a synthetic trace's block ids)."""
    from sim.command import Terminated, command_status

    def kernel_stopped_by(signal_exception):
        def body():
            try:
                raise signal_exception
            except KeyboardInterrupt as exc:
                raise SystemError("CPUDispatcher(<function f>) returned a result with an exception set") from exc
        return body

    assert command_status("kvsim", kernel_stopped_by(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err.strip() == "kvsim: interrupted"
    assert command_status("kvsim", kernel_stopped_by(Terminated())) == 143
    assert capsys.readouterr().err.strip() == "kvsim: terminated"

    def broken():
        raise SystemError("a real one")
    assert command_status("kvsim", broken) == 1 and "internal error" in capsys.readouterr().err


def test_a_signal_behind_another_error_is_an_interruption(capsys):
    """Python 3.11 wraps an exception raised while a class is created in "Error calling __set_name__" (a RuntimeError:
    a Ctrl-C while LightGBM imported narwhals ended learned.train as an internal error, exit 1)."""

    def stopped_inside_class_creation():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise RuntimeError("Error calling __set_name__ on '_Implementation' instance") from exc

    assert command_status("learned.train", stopped_inside_class_creation) == 130
    assert capsys.readouterr().err == "learned.train: interrupted\n"


@pytest.mark.parametrize(("signum", "line", "code"), [(signal.SIGINT, "interrupted", 130),
                                                      (signal.SIGTERM, "terminated", 143)])
def test_a_stop_signal_a_library_swallowed_still_stops_the_command(tmp_path, capsys, signum, line, code):
    """An optional import's ``except ImportError`` (LightGBM's, around pandas) can eat the Ctrl-C that broke a C
    extension's import; learned.train then trained on for minutes and replaced the model. The signal is noted: no
    output replaces the previous one, and the command ends as stopped."""
    report = tmp_path / "report.json"
    report.write_text("previous")

    def body() -> int:
        try:
            signal.raise_signal(signum)
        except KeyboardInterrupt:  # (Terminated is one)
            pass  # a library's broad except
        with atomic_write(report) as fh:
            fh.write("new")
        return 0

    assert command_status("kvsim", body) == code
    assert capsys.readouterr().err == f"kvsim: {line}\n"
    assert report.read_text() == "previous" and atomic_leftovers(tmp_path) == []
    assert command_status("kvsim", lambda: 0) == 0  # answered: the next command in this process is not stopped


def test_a_stop_signal_swallowed_after_the_last_output_still_ends_as_stopped(capsys):
    def body() -> int:
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        return 0

    assert command_status("kvsim", body) == 130
    assert capsys.readouterr().err == "kvsim: interrupted\n"


def test_a_ctrl_c_a_command_run_inside_another_answered_stops_the_outer_one_too(capsys):
    """tools/random_runs.py runs main.main's under its own command_status: the inner command ends 130 on a Ctrl-C,
    and the outer one must stop too (the latch was cleared as the inner returned: the hunt went on, the draw a
    "violation", and the hunt ended 0 or 1). Once the outer one has answered, the next command starts unstopped."""

    def inner() -> int:
        signal.raise_signal(signal.SIGINT)
        return 0

    inner_status: list[int] = []
    assert command_status("random_runs.py", lambda: inner_status.append(command_status("kvsim", inner)) or 0) == 130
    assert inner_status == [130]
    assert capsys.readouterr().err == "kvsim: interrupted\nrandom_runs.py: interrupted\n"
    assert command_status("kvsim", lambda: 0) == 0


def _sweep_of_three(monkeypatch, first_point) -> tuple[int, list[int], list[dict]]:
    """A --jobs 1 sweep of three points, run in this process under ``command_status``, whose first point runs
    ``first_point``: (its exit status, the points that started, the records the sweep was given)."""
    from types import SimpleNamespace

    import experiments.runner as runner

    started: list[int] = []

    def execute(task):
        started.append(task.index)
        if task.index == 0:
            first_point()
        return SimpleNamespace(trace=None, runs=[]), {}

    monkeypatch.setattr(runner, "_execute_reading", execute)
    tasks = [runner.Task("k", i, f"p{i}", "single", None) for i in range(3)]
    records: list[dict] = []
    status = command_status("kvsim", lambda: runner.run_local(tasks, 1, records.append) or 0)
    return status, started, records


def test_a_ctrl_c_a_library_wrapped_in_a_point_stops_a_sweep_run_in_this_process(monkeypatch, capsys):
    """At --jobs 1 the points run here, and ``run_task`` keeps a failed point's error and goes on: a Ctrl-C that a
    library turned into another error (Python 3.11's "Error calling __set_name__") was recorded as the point's
    internal error, and every later point ran before the command ended 130. It stops the sweep at once."""

    def wrapped():
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt as exc:
            raise RuntimeError("Error calling __set_name__ on '_Implementation' instance") from exc

    status, started, records = _sweep_of_three(monkeypatch, wrapped)
    assert (status, started, records) == (130, [0], [])  # no point after it, and none recorded as failed
    assert capsys.readouterr().err == "kvsim: interrupted\n"


def test_a_ctrl_c_a_library_swallowed_in_a_point_stops_a_sweep_before_the_next_point(monkeypatch, capsys):
    def swallowed():
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass

    status, started, records = _sweep_of_three(monkeypatch, swallowed)
    assert (status, started, [r["index"] for r in records]) == (130, [0], [0])  # the point it came in ran to its end
    assert capsys.readouterr().err == "kvsim: interrupted\n"


STOPPED_POOL = """
import sys, threading, time
sys.path.insert(0, {root!r})
from experiments import runner
pool = runner._pool(1)
pool.submit(time.sleep, 30)
runner._stop(pool)
failing = threading.Thread(target=lambda: 1 / 0)
failing.start()
failing.join()
from sim.command import end_process
end_process(0)  # as every command ends: the interpreter's teardown (never run by one) woke the stopped pool's
# manager thread through a pipe its shutdown may have closed, "Exception ignored in: <module 'threading'>" (once in CI)
"""


def test_a_stopped_pool_reports_no_exception_of_another_thread():
    """Once an interrupted sweep stops its pool, a thread failing on the killed workers' pipes (the pool's manager
    thread: about one SIGTERM in 40 on a busy machine printed "Exception in thread Thread-1" under "kvsim:
    terminated") prints nothing: the process is ending on the interruption. (In a process of its own: pytest takes
    the threads' exceptions itself.)"""
    done = subprocess.run([sys.executable, "-c", STOPPED_POOL.format(root=str(ROOT))], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize("signum, stop", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_a_stop_waits_for_a_kernel_compile_to_end(signum, stop):
    """A stop that comes while numba loads or compiles a kernel is raised once that function is built, never inside:
    raised halfway through numba's load of a cached kernel, a SIGTERM left native state that crashed the process
    (SIGSEGV, exit -11, about one stop in thirty at the first kernel call of bench_kernel_floor.py). Here the stop is
    sent from inside the compile (by the typing of a function the kernel calls) and comes out of the call only with
    the function compiled."""
    code = f"""
import os
from numba.extending import overload
from sim.command import Terminated, watch_stop_signals
from sim.jit import njit

def ping():
    pass

@overload(ping)
def _typing_ping():
    os.kill(os.getpid(), {int(signum)})  # (numba types the call while it compiles the kernel)
    return lambda: None

def twice(x):
    ping()
    return 2 * x

kernel = njit(twice)
watch_stop_signals()
try:
    kernel(3)
except {stop.__name__} as stop:
    print(type(stop).__name__, len(kernel.signatures))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{stop.__name__} 1\n", "")


STOP_IN_NUMBA_UNPICKLE = """
import os, signal, sys
import numpy as np
from numba import njit
import numba.core.serialize as serialize
from sim.command import command_status

@njit(cache=False)
def three(n):
    return np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int32), np.arange(n, dtype=np.int32)

three.compile("(int64,)")

class Memo(dict):  # numba's memo of unpickled objects: a miss is a KeyError, caught
    sent = False
    def __getitem__(self, key):
        if not Memo.sent:
            Memo.sent = True
            os.kill(os.getpid(), signal.{signal})  # the stop, as the wrapper unpickles the first array's class
        return dict.__getitem__(self, key)

serialize._unpickled_memo = Memo(serialize._unpickled_memo)

def body():
    print([a.dtype.name for a in three(5)], flush=True)
    return 0

sys.exit(command_status("probe", body))
"""


@pytest.mark.parametrize(("stop", "status", "line"), [("SIGTERM", 143, "terminated"), ("SIGINT", 130, "interrupted")])
def test_a_stop_inside_numbas_unpickling_of_a_returned_type_is_raised_after_it(stop, status, line):
    """numba's compiled wrapper unpickles each returned array's class (Python code: ``_numba_unpickle``); a stop
    raised there made that array NULL in the returned tuple and the next one's memo miss cleared the stop: SIGSEGV
    at the caller (every time here; ~3% of stops while a trace loaded, at ``to_runs``' first call: twice in CI). It is
    raised a millisecond later, once the tuple is whole."""
    done = subprocess.run([sys.executable, "-c", STOP_IN_NUMBA_UNPICKLE.format(signal=stop)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stderr) == (status, f"probe: {line}\n")
    # (the retry may come before the print, after it, or inside it: between its text and its newline, on a busy
    # machine 7 times in 8)
    assert "['int64', 'int32', 'int32']\n".startswith(done.stdout)
