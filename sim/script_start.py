"""Imported first by kvsim's scripts (benchmarks/, tools/), before their libraries load.

A script's run is under ``sim.errors.command_status``, which turns Ctrl-C into one line and exit 130; but loading
numpy, pandas, lightgbm or the simulator takes up to a couple of seconds before that, and a Ctrl-C there printed a
KeyboardInterrupt traceback. This module makes that moment end the same way. Standard library only: it must load
in no time itself.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType

_previous_hook = sys.excepthook


def _interrupted_quietly(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    """A KeyboardInterrupt no command caught (one while the script's modules load): one line, exit 130."""
    if not issubclass(kind, KeyboardInterrupt):
        _previous_hook(kind, value, tb)
        return
    print(f"{Path(sys.argv[0]).name}: interrupted", file=sys.stderr, flush=True)
    os._exit(130)  # (nothing is written yet; the interpreter would otherwise end the process by SIGINT, status -2)


sys.excepthook = _interrupted_quietly
