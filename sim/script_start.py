"""Imported first by kvsim's scripts (benchmarks/, tools/), before their libraries load.

A script's run is under ``sim.command.command_status``, which turns Ctrl-C into one line and exit 130; but loading
numpy, pandas, lightgbm or the simulator takes up to a couple of seconds before that, and a Ctrl-C there printed a
KeyboardInterrupt traceback and a SIGTERM killed the script (-15, no line). This module makes that moment end the
same way: imported by the program itself, it blocks both until the command starts (``hold_stops_until_command``); its
excepthook answers a Ctrl-C where they cannot be blocked. Standard library only: it must load in no time itself.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from pathlib import Path
from types import TracebackType

_previous_hook = sys.excepthook


def _program() -> str:
    """The name the script's lines start with: its file's, or its module's when run with ``python -m``."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name if spec is not None and spec.name != "__main__" else Path(sys.argv[0]).name


def _interrupted_quietly(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    """A KeyboardInterrupt no command caught (one while the script's modules load, where the stops are not held):
    one line, exit 130; a SIGTERM's (``sim.command.Terminated``) 143, as a command answers them. Only the program's:
    a script imported inside another command leaves the stop to that command (a guard of the script's own said a
    second line there, "interrupted" for a SIGTERM too)."""
    if not issubclass(kind, KeyboardInterrupt):
        _previous_hook(kind, value, tb)
        return
    command = sys.modules.get("sim.command")  # (not imported here: a second Ctrl-C could cut that short too)
    terminated = command is not None and issubclass(kind, command.Terminated)  # (raised by sim.command only)
    print(f"{_program()}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr, flush=True)
    # (nothing is written yet; the interpreter would otherwise end the process by SIGINT, status -2)
    os._exit(128 + (signal.SIGTERM if terminated else signal.SIGINT))


sys.excepthook = _interrupted_quietly


def _imported_by_the_program() -> bool:
    """Whether the module importing this one is the program (``__main__``) Python was started to run, not a module a
    test imports, nor a script another program runs as ``__main__`` inside itself (``runpy.run_path`` in a test,
    IPython's ``%run``): the hold ends only as a command starts, and such a caller may never start one (a test
    stopping the script at its argument parsing), which left its own process deaf to Ctrl-C and SIGTERM."""
    frame = sys._getframe(2)  # (1: this module's own code)
    while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
        frame = frame.f_back
    if frame is None or frame.f_globals.get("__name__") != "__main__":
        return False
    caller = frame.f_back
    while caller is not None and caller.f_globals.get("__name__") == "runpy":  # (``python -m``, ``runpy.run_path``)
        caller = caller.f_back
    return caller is None or caller.f_back is None  # (nothing below it, or only the code that ran it: ``python -c``)


def _answer_a_held_stop() -> None:
    """At exit before any command started (``--help``, a usage error, a module that only says it is not a command): a
    stop held since the script started is answered as a command would have answered it (one line, 143 or 130); left
    blocked, it was dropped and the process ended 0 or 2 as if never stopped."""
    from sim import command
    from sim.std_streams import flush_printed

    if not command._blocked_until_command:  # (a command started and took the held stops: it answered them)
        return
    pending = signal.sigpending() & command._blocked_until_command
    if not pending:
        return
    terminated = signal.SIGTERM in pending
    flush_printed()  # (what is printed, --help's text, goes out first: os._exit skips it)
    print(f"{_program()}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr, flush=True)
    os._exit(128 + (signal.SIGTERM if terminated else signal.SIGINT))


if _imported_by_the_program():
    # held at once, before sim.command loads (10-30 ms of every script's start: a SIGTERM there killed it, -15)
    _STOPS = {signal.SIGINT, signal.SIGTERM}
    _held_here = _STOPS - signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS) if hasattr(signal, "pthread_sigmask") \
        else set()
    from sim.command import hold_stops_until_command

    hold_stops_until_command(_held_here)  # a SIGTERM while the libraries load waits for the command: one line
    atexit.register(_answer_a_held_stop)  # (first registered, last run: a script's own exit functions run before it)
