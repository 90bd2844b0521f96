"""Which handlers a command leaves in place as it answers, and which statuses it answers with (mutation audit of
``sim.command``): a program's outermost command hands over to ``_end_now`` (a stop then ends the process with the
answer), keeping a stop its parent ignored ignored; a command inside a test session or a tool puts the previous
handlers back; a program's later command takes Ctrl-C back; argparse's exits are statuses, even as a stop comes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import sim.command
from sim.command import command_status
from tests.conftest import ROOT

STOPS = (signal.SIGINT, signal.SIGTERM)


def _python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, **kwargs)


@pytest.mark.parametrize("early", [False, True], ids=["script", "main.py"])
def test_a_sigterm_the_parent_ignores_stays_ignored_once_the_command_answered(early):
    """SIGTERM ignored by the parent, sent while the exit functions run: ignored there too, so the exit function
    finishes (its line printed) and the process ends 0; handed to ``_end_now`` it ended at once, the line lost."""
    code = f"""
import atexit, os, signal, time
from sim.command import command_status, end_process, watch_stop_signals
if {early}:
    watch_stop_signals()

def late():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.1)
    print("exit function done", flush=True)

atexit.register(late)
end_process(command_status("kvsim", lambda: 0))
"""
    done = _python(code, preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN))
    assert (done.returncode, done.stdout, done.stderr) == (0, "exit function done\n", "")


def test_a_stop_as_a_sys_exit_is_answered_is_noted_not_raised(monkeypatch):
    """A SIGTERM landing while a body's ``sys.exit(3)`` is turned into its status: the answer stands (3), no
    Terminated raised out of ``command_status`` (a traceback)."""
    exit_status = sim.command._exit_status

    def stopped_there(code: object) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        return exit_status(code)

    monkeypatch.setattr(sim.command, "_exit_status", stopped_there)
    try:
        status = command_status("tool", lambda: sys.exit(3))
    except KeyboardInterrupt as escaped:
        pytest.fail(f"{type(escaped).__name__} raised out of command_status")
    assert status == 3


@pytest.fixture
def handlers():
    """Python's own stop handlers, set for the test (whatever an earlier test left); this process's put back after."""
    before = {signum: signal.getsignal(signum) for signum in STOPS}
    python_s = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    for signum, handler in python_s.items():
        signal.signal(signum, handler)
    yield python_s
    for signum, handler in before.items():
        signal.signal(signum, handler)


def test_a_command_outside_a_program_puts_the_previous_handlers_back(monkeypatch, handlers):
    """Not a program's command (a test session's, a tool running main.main's): the handlers from before it are back
    as it returns, not ``_end_now`` (which would end the whole session at its next Ctrl-C)."""
    monkeypatch.setattr(sim.command, "_program", False)
    assert command_status("tool", lambda: 0) == 0
    assert {signum: signal.getsignal(signum) for signum in STOPS} == handlers


def test_a_program_s_command_that_did_not_answer_puts_the_previous_handlers_back(monkeypatch, handlers):
    """A program's command whose body raised what no status answers (a BaseException of its own) has no status to
    end the process with: the previous handlers are back and the exception goes on."""

    class Unanswered(BaseException):
        pass

    def body() -> int:
        raise Unanswered

    monkeypatch.setattr(sim.command, "_program", True)
    with pytest.raises(Unanswered):
        command_status("tool", body)
    assert {signum: signal.getsignal(signum) for signum in STOPS} == handlers


def test_a_program_s_second_command_takes_ctrl_c_back():
    """A program whose first command answered (handing Ctrl-C to ``_end_now``) runs a second: a Ctrl-C inside it
    stops that command (130, one line), not the process with the first one's answer."""
    code = """
import os, signal, sys, time
from sim.command import command_status, watch_stop_signals
watch_stop_signals()
assert command_status("tool", lambda: 0) == 0

def body():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)
    return 0

print(command_status("tool", body), flush=True)
"""
    done = _python(code, preexec_fn=lambda: [signal.signal(signum, signal.SIG_DFL) for signum in STOPS])
    assert (done.returncode, done.stdout, done.stderr) == (0, "130\n", "tool: interrupted\n")


@pytest.mark.parametrize(("argv", "status"), [(["--help"], 0), (["--no-such-flag"], 2)])
def test_main_s_argument_errors_and_help_are_its_returned_status(argv, status):
    """main.main parses inside its command: --help and a usage error are statuses it returns (0, 2), not SystemExit
    raised to its caller (a tool running main.main, or main.py's end_process hand-over)."""
    done = _python(f"import main\nprint('status', main.main({argv!r}))")
    assert done.stdout.splitlines()[-1] == f"status {status}" and done.returncode == 0
