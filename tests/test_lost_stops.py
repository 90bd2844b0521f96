"""A stop whose exception is lost where Python cannot pass it on (a destructor, a weakref callback, a C library's
call back into Python) still stops the command at once (``sim.command._lost_stop``: a one-shot SIGALRM retry), and the
retry leaves nothing behind: it is not raised a second time while the stop is answered, it puts back the timer and the
unraisable hook it found."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from sim.command import Terminated, command_status
from tests.conftest import ROOT


@pytest.mark.parametrize(("signum", "line", "code"), [(signal.SIGINT, "interrupted", 130),
                                                       (signal.SIGTERM, "terminated", 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_inside_a_c_librarys_call_back_into_python_says_so_in_one_line(monkeypatch, capsys,
                                                                                      signum, line, code):
    """Landing while a C library runs a Python callback (llvmlite's object-cache notification as numba compiles,
    seen in CI as ``learned.train`` loaded), the interruption cannot leave the callback: Python printed "Exception
    ignored on calling ctypes callback function" and its traceback before the status line."""
    import ctypes

    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)  # restored after the test
    ran_on = []

    def callback() -> None:
        os.kill(os.getpid(), signum)  # handled here, inside the callback
        ran_on.append("past the signal")  # (not reached: the handler raised)

    def body() -> int:
        ctypes.CFUNCTYPE(None)(callback)()
        ran_on.append("after the call")  # the C library returned normally: the interruption was lost there
        return 0

    alarm_handler = signal.getsignal(signal.SIGALRM)
    assert command_status("kvsim", body) == code
    assert capsys.readouterr().err == f"kvsim: {line}\n"
    assert ran_on == ["after the call"]
    # the lost stop's retry (a one-shot SIGALRM) is disarmed once the stop was raised anew: left armed, it fired in
    # the next test's own stop handling and raised out of command_status (CI: a pytest worker interrupted)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is alarm_handler


def test_a_stopped_command_leaves_the_process_s_unraisable_hook_as_it_was(monkeypatch, capsys):
    """A stop quiets "Exception ignored" reports for the command (``_stopped_midway``); the hook stayed for the rest
    of the process, so a later destructor's error in a process that goes on (a test session, a command run again)
    vanished without a word."""
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)  # restored after the test

    def body() -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        return 0

    assert command_status("kvsim", body) == 143

    class Failing:
        def __del__(self) -> None:
            raise ValueError("a later destructor's error")

    Failing()  # (freed at once: its destructor's error is unraisable)
    assert [str(unraisable.exc_value) for unraisable in reported] == ["a later destructor's error"]
    assert capsys.readouterr().err == "kvsim: terminated\n"


def test_a_lost_stop_s_retry_puts_back_the_timer_the_user_s_code_set(monkeypatch, capsys):
    """The retry of a stop lost in a destructor is a one-shot ITIMER_REAL, the one timer ``signal.alarm`` and a
    library's timeout (tools/random_runs.py's per-draw limit) use too: arming it threw that timeout away, and putting
    SIGALRM's handler back left it disarmed for good."""
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)  # restored after the test
    handler = signal.signal(signal.SIGALRM, lambda *_: None)
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)

        class Finalised:
            def __del__(self) -> None:
                os.kill(os.getpid(), signal.SIGTERM)  # the stop arrives while Python runs this destructor: lost there

        def body() -> int:
            Finalised()
            return 0

        assert command_status("kvsim", body) == 143
        left, interval = signal.getitimer(signal.ITIMER_REAL)
        assert 25 < left <= 30 and interval == 0
        assert capsys.readouterr().err == "kvsim: terminated\n"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, handler)


@pytest.mark.parametrize("signum, stop", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_a_stop_lost_in_a_destructor_still_stops_the_run_at_once(signum, stop):
    """A stop whose exception is raised while Python runs a destructor (``__del__``, a weakref callback) cannot leave
    it: Python reports it as unraisable and goes on. The run then went on to its end (here a 20 s loop), the Ctrl-C or
    SIGTERM waiting for the next checkpoint; it is raised again in the main code within milliseconds, silently."""
    code = f"""
import os, time
from sim.command import Terminated, watch_stop_signals

class Finalised:
    def __del__(self):
        os.kill(os.getpid(), {int(signum)})  # the stop arrives while Python runs this destructor
        for _ in range(1000):  # (bytecode after it: the handler's exception is raised in here)
            pass

watch_stop_signals()
start = time.monotonic()
try:
    Finalised()  # (freed at once: its destructor runs)
    while time.monotonic() - start < 20:
        pass
    print("ran on")
except {stop.__name__} as stop:
    print(type(stop).__name__, time.monotonic() - start < 10)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{stop.__name__} True\n", "")


@pytest.mark.parametrize("signum, line, code", [(signal.SIGINT, "interrupted", 130),
                                                (signal.SIGTERM, "terminated", 143)])
def test_a_lost_stop_raised_by_the_command_itself_is_not_raised_again_while_it_is_handled(signum, line, code):
    """A stop lost in a destructor, then raised by the command's own check (``raise_if_stopped`` as the body returns)
    before the retry's alarm: the retry must not raise it a second time while the command is saying it was stopped
    (here a slow line on stderr), which took the stop out of ``command_status`` as a traceback (seen in CI: a pytest
    worker interrupted in test_a_second_sigterm_while_stopping_is_ignored)."""
    done = _lost_stop_then_answered(signum, "return 0")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{code}\n", f"kvsim: {line}\n")


def test_a_lost_stop_behind_another_error_is_not_raised_again_while_it_is_answered():
    """A stop lost in a destructor, then a library's own error because of it (numba's SystemError, an ImportError):
    ``interruption_behind`` answers the stop without the retry being disarmed, and its alarm raised the stop again
    while the command said it was stopped (a slow line on stderr here): a traceback and exit 1, not 143."""
    done = _lost_stop_then_answered(signal.SIGTERM, "raise RuntimeError(\"a library's error behind the stop\")")
    assert (done.returncode, done.stdout, done.stderr) == (0, "143\n", "kvsim: terminated\n")


def _lost_stop_then_answered(signum: int, body_end: str) -> subprocess.CompletedProcess:
    """A command whose body frees an object whose destructor sends ``signum`` (the stop lost there), then ends with
    ``body_end``; the command's line is slow (50 retry intervals) and the process waits as long again after it, so a
    retry left armed fires inside the answer or after it. Prints the command's status."""
    script = f"""
import os, time
import sim.command
from sim.command import command_status

say = sim.command._say
def slow_say(text):
    time.sleep(0.05)
    say(text)
sim.command._say = slow_say

class Finalised:
    def __del__(self):
        os.kill(os.getpid(), {int(signum)})  # the stop arrives while Python runs this destructor: lost there

def body():
    Finalised()
    {body_end}

status = command_status("kvsim", body)
time.sleep(0.05)  # (a retry left armed would fire here)
print(status)
"""
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


# A command forks a worker while its SIGTERM waits: noted in a held region, with a lost stop's retry armed meanwhile
# (SIGALRM blocked, so it stays due) over a timer of the user's code. The child runs a command of its own.
FORKED_WHILE_A_STOP_WAITS = """
import os, signal, sys
from sim import command

def user_alarm(*_):
    pass

def body():
    signal.signal(signal.SIGALRM, user_alarm)
    signal.setitimer(signal.ITIMER_REAL, 30)  # (the user's timer: the retry puts it back as it goes)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    with command.stops_held():
        os.kill(os.getpid(), signal.SIGTERM)  # noted, raised as the region ends
        command._raise_again_soon()  # (as ``_lost_stop`` arms it)
        pid = os.fork()
        if pid == 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
            status = command.command_status("child", lambda: 0)
            print(status, signal.getitimer(signal.ITIMER_REAL), signal.getsignal(signal.SIGALRM).__name__, flush=True)
            os._exit(0)
    return 0

sys.exit(command.command_status("parent", body))
"""


def test_a_child_forked_while_its_parent_s_stop_waits_starts_unstopped():
    """A process forked while its parent's stop was noted but not raised yet (a pool's worker, edge_runs' child,
    forked inside a held region or before a lost stop's retry) is not the one stopped: its own command runs to its end
    and the timer the parent's retry would put back is not the child's (fork keeps no timer). The copy of the
    parent's state stopped the child's command at once ("child: terminated", 143), and putting the retry's timer back
    armed the parent's 30 s timer in the child, which never set one."""
    done = subprocess.run([sys.executable, "-c", FORKED_WHILE_A_STOP_WAITS], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stdout, done.stderr) == (143, "0 (0.0, 0.0) user_alarm\n", "parent: terminated\n")


def test_a_stop_lost_in_a_forked_child_s_own_command_puts_back_the_child_s_timer_not_the_parent_s():
    """The same fork; the child's own command then loses a stop of its own (its retry armed, then cancelled as the
    stop is raised): what the cancel puts back is what the child had when its retry was armed, no timer (fork keeps
    none). Kept from the parent, the first retry's record put the parent's 30 s timer back in the child."""
    child_body = "lambda: (command._raise_again_soon(), command._cancel_retry(), 0)[-1]"
    script = FORKED_WHILE_A_STOP_WAITS.replace('command.command_status("child", lambda: 0)',
                                               f'command.command_status("child", {child_body})')
    assert script != FORKED_WHILE_A_STOP_WAITS
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stdout, done.stderr) == (143, "0 (0.0, 0.0) user_alarm\n", "parent: terminated\n")


# A command forks inside a held region; the child leaves that region (its copy) and runs a command of its own, which
# holds its stops in a region of its own and is sent a SIGTERM there
FORKED_IN_A_HELD_REGION = """
import os, signal, sys
from sim import command

def child_body():
    with command.stops_held():
        os.kill(os.getpid(), signal.SIGTERM)
        print("held", flush=True)
    return 0

def body():
    with command.stops_held():
        pid = os.fork()
    if pid == 0:
        print(command.command_status("child", child_body), flush=True)
        os._exit(0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

sys.exit(command.command_status("parent", body))
"""


def test_a_child_forked_in_a_held_region_holds_its_later_stops_as_its_parent_would():
    """A forked child keeps its depth of held regions (``_start_unstopped_in_child``: only the parent's stop and retry
    go): leaving the region it was forked in, it is held in none, and a SIGTERM inside a region of its own is raised
    only as that region ends ("held" printed first, then "child: terminated", 143). Its depth reset at the fork, the
    region's end left it at -1 and the next region raised the stop at once."""
    done = subprocess.run([sys.executable, "-c", FORKED_IN_A_HELD_REGION], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stdout, done.stderr) == (0, "held\n143\n", "child: terminated\n")


# A command forks a worker while its SIGTERM waits in a held region (its handler ignoring a second meanwhile); the
# child's own command is then sent a SIGTERM of its own
FORKED_AFTER_A_SIGTERM_THEN_TERMINATED = """
import os, signal, sys
from sim import command

def child_body():
    os.kill(os.getpid(), signal.SIGTERM)  # (in the held region the fork copied: noted, raised as the command ends)
    return 0

def body():
    with command.stops_held():
        os.kill(os.getpid(), signal.SIGTERM)  # noted, raised as the region ends
        pid = os.fork()
        if pid == 0:
            os._exit(command.command_status("child", child_body))
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
    return 0

sys.exit(command.command_status("parent", body))
"""


def test_a_child_forked_while_its_parent_s_sigterm_waits_is_stopped_by_its_own_sigterm():
    """The parent's SIGTERM, noted, set its handler to ignore a second one until the command answers
    (``_terminate``); a child forked meanwhile starts unstopped, so a SIGTERM sent to it is its own first: it ends its
    command, 143 and one line. The copied "ignore" made the child deaf to SIGTERM: its command ran on and said 0."""
    done = subprocess.run([sys.executable, "-c", FORKED_AFTER_A_SIGTERM_THEN_TERMINATED], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stdout, done.stderr) == (143, "143\n", "child: terminated\nparent: terminated\n")
