"""Progress notes for a person watching a terminal: off unless the command line turned them on (not ``--quiet``,
standard error a terminal), so reports, pipes and tests never see them."""

from __future__ import annotations

import sys

_enabled = False
_said: set[str] = set()


def show_progress(enabled: bool) -> None:
    """Turn the notes on or off for the rest of this process (``main.py`` once it knows its run)."""
    global _enabled
    _enabled = enabled


def note_once(key: str, text: str) -> None:
    """Say ``text`` on standard error the first time ``key`` comes up, where notes are on (above a progress bar, if
    one is drawn, without breaking it)."""
    if not _enabled or key in _said:
        return
    _said.add(key)
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr)
