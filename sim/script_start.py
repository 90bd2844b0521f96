"""Imported first by kvsim's scripts (benchmarks/, tools/), before their libraries load.

A script's run is under ``sim.errors.command_status``, which turns Ctrl-C into one line and exit 130 (SIGTERM: 143);
but loading numpy, pandas, lightgbm or the simulator takes up to a couple of seconds before that, and a Ctrl-C there
printed a KeyboardInterrupt traceback, a SIGTERM killed the process (status -15, no line). This module makes that
moment end the same way. Standard library only (with ``sim.errors``): it must load in no time itself.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType

from sim.errors import Terminated, watch_stop_signals

_previous_hook = sys.excepthook


def _interrupted_quietly(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    """A KeyboardInterrupt no command caught (one while the script's modules load): one line, exit 130 (SIGTERM's
    ``Terminated``: 143)."""
    if not issubclass(kind, KeyboardInterrupt):
        _previous_hook(kind, value, tb)
        return
    terminated = issubclass(kind, Terminated)
    print(f"{Path(sys.argv[0]).name}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr, flush=True)
    os._exit(143 if terminated else 130)  # (nothing is written yet; else the interpreter dies by the signal)


sys.excepthook = _interrupted_quietly
watch_stop_signals()  # (SIGTERM raises Terminated from here on, as command_status will have it)
