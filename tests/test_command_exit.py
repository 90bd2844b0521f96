"""How a command's end reaches the process's exit: argparse's exits (--help 0, a usage error 2) and ``sys.exit`` are
statuses ``command_status`` returns like its others, and a stop that comes once the command has answered (as
``command_status`` returns, before ``end_process``'s handlers) ends the process with that answer. Before, a script that
parses its arguments inside its command (benchmarks/replay_vllm.py, tools/edge_runs.py) died by a SIGTERM sent just
after its --help (status -15, no line: 30 of 30 SIGTERMs sent 0-3 ms after the page), as SystemExit left
``command_status`` with Python's default handlers back and never reached ``end_process``."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

import pytest

from sim.command import command_status
from tests.conftest import ROOT

STOPS = [signal.SIGINT, signal.SIGTERM]


def _stops_default() -> None:
    """A child's Ctrl-C and SIGTERM as a shell gives them, whatever this process (a test session) has."""
    for signum in STOPS:
        signal.signal(signum, signal.SIG_DFL)


def _parse(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--rounds", type=int, default=1)
    parser.parse_args(argv)
    return 0


@pytest.mark.parametrize(("argv", "status", "out", "err"), [
    (["--help"], 0, "usage: tool [-h] [--rounds ROUNDS]", ""),
    (["--rounds", "x"], 2, "", "tool: error: argument --rounds: invalid int value: 'x'"),
])
def test_argparse_s_exit_inside_a_command_is_its_status(capsys, argv, status, out, err):
    assert command_status("tool", lambda: _parse(argv)) == status
    printed = capsys.readouterr()
    assert printed.out.startswith(out) and printed.err.rstrip().endswith(err), printed


@pytest.mark.parametrize(("code", "status", "err"), [(None, 0, ""), (3, 3, ""), ("loader failed (exit 1)", 1,
                                                                                "loader failed (exit 1)\n")])
def test_sys_exit_inside_a_command_is_the_status_python_gives_it(capsys, code, status, err):
    """As the interpreter does: None is 0, an int itself, anything else printed on standard error and 1
    (benchmarks/bench_synthetic.py's ``raise SystemExit("generator subprocess failed ...")``)."""

    def body() -> int:
        sys.exit(code)

    assert command_status("tool", body) == status
    assert capsys.readouterr().err == err


def test_sys_exit_after_a_swallowed_stop_is_the_stop(capsys):
    """A library that turns a Ctrl-C into ``sys.exit`` (Ray's SIGTERM handler does, with status 15): stopped."""

    def body() -> int:
        try:
            signal.raise_signal(signal.SIGTERM)
        except KeyboardInterrupt:
            sys.exit(15)
        return 0

    assert command_status("tool", body) == 143
    assert capsys.readouterr().err == "tool: terminated\n"


def test_a_stop_as_a_command_returns_is_noted_not_raised(monkeypatch, capsys):
    """A stop landing in ``command_status``'s own end, once its body has returned, was raised out of it: a traceback
    (or, in a script, "interrupted" and 130 for a SIGTERM)."""
    import sim.command

    cancel = sim.command._cancel_retry

    def stopped_there() -> None:  # (called as the outermost command ends)
        os.kill(os.getpid(), signal.SIGTERM)
        cancel()

    monkeypatch.setattr(sim.command, "_cancel_retry", stopped_there)
    try:
        status = command_status("tool", lambda: 0)
    except KeyboardInterrupt as escaped:  # (not left to end the test session)
        pytest.fail(f"{type(escaped).__name__} raised out of command_status")
    monkeypatch.undo()
    assert (status, capsys.readouterr().err) == (0, "")
    assert command_status("tool", lambda: 0) == 0  # (answered: the next command is not stopped)


PROGRAM = """
import atexit, os, signal, sys
sys.path.insert(0, {root!r})
if {early}:
    from sim.command import watch_stop_signals
    watch_stop_signals()  # (main.py's and learned.train's early handlers)
else:
    import sim.script_start  # noqa (a script's start: its stops held until its command)
from sim.command import command_status, end_process
import argparse

def body():
    argparse.ArgumentParser(prog="tool").parse_args()
    return 0

def stop_as_it_ends():
    os.kill(os.getpid(), {signum})

if {at_exit}:
    atexit.register(stop_as_it_ends)  # (the interpreter's, or end_process's, exit functions: a stop as it ends)
status = command_status("tool", body)
if not {at_exit}:
    stop_as_it_ends()  # (after the command answered, before end_process's handlers)
end_process(status)
"""


@pytest.mark.parametrize("signum", STOPS, ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("early", [False, True], ids=["held", "early handlers"])
@pytest.mark.parametrize(("argv", "status", "out", "at_exit"), [
    (["--help"], 0, "usage: tool [-h]\n\noptions:\n  -h, --help  show this help message and exit\n", True),
    (["--bogus"], 2, "", True),
    ([], 0, "", False),
], ids=["--help as it exits", "usage error as it exits", "between command and end_process"])
def test_a_stop_once_a_program_s_command_answered_ends_it_with_that_answer(tmp_path, signum, early, argv, status, out,
                                                                         at_exit):
    """The --help page (or usage error) is out and the process ends with its status, whatever stop comes then: it
    died by SIGTERM (-15, no line), or a Ctrl-C printed "Exception ignored in atexit callback" with a traceback; sent
    between ``command_status`` and ``end_process``, a SIGTERM killed it too, and in main.py a stop was a traceback."""
    script = tmp_path / "tool.py"
    script.write_text(PROGRAM.format(root=str(ROOT), early=early, signum=int(signum), at_exit=at_exit))
    done = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=60,
                          preexec_fn=_stops_default)
    err = "usage: tool [-h]\ntool: error: unrecognized arguments: --bogus\n" if status == 2 else ""
    assert (done.returncode, done.stdout, done.stderr) == (status, out, err)


MAIN_HELP = """
import os, runpy, signal, sys
sys.path.insert(0, {root!r})
import sim.command
cancel = sim.command._cancel_retry

def stopped_there():  # (end_process calls it before it sets its handlers: a stop on the way there)
    os.kill(os.getpid(), signal.SIGTERM)
    cancel()

sim.command._cancel_retry = stopped_there
sys.argv = ["main.py", "--help"]
runpy.run_path({main!r}, run_name="__main__")
"""


def test_main_py_s_help_ends_through_its_command():
    """main.py parsed before its command: its --help returned 0 with main.py's early handlers still in place, and a
    SIGTERM before ``end_process``'s own raised at top level (a traceback). Parsed inside, it is handed over."""
    code = MAIN_HELP.format(root=str(ROOT), main=str(ROOT / "main.py"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          preexec_fn=_stops_default)
    assert (done.returncode, done.stdout.startswith("usage: kvsim "), done.stderr) == (0, True, "")
