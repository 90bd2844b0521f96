"""Judging one run's outcome (a test helper, shared by tests/test_random_combinations.py, tools/random_runs.py and
tools/edge_runs.py): exit 0 with a report that passes tests/report_invariants.py, or exit 2 with one line naming a
key, flag or file given (README: exit status); anything else (a traceback, another status) is what is wrong."""

from __future__ import annotations

import re
from typing import Any


def names(argv: list[str]) -> list[str]:
    """What a one-line error may name: the flags and files given, each --set key and its last part."""
    out = [a for a in argv if a.startswith("--")] + [a for a in argv if "/" in a]
    for a in argv:
        if "=" in a and not a.startswith("--"):
            key = a.split("=", 1)[0]
            out += [key, key.rsplit(".", 1)[-1]]
    return out


def judge(status: int, err: str, report: dict[str, Any] | None, argv: list[str]) -> str | None:
    """What is wrong with a run's outcome, or None: exit 0 with a consistent report, or exit 2 with one line that
    names what it refuses (README: exit status)."""
    from tests.report_invariants import check_report

    if "Traceback" in err:
        return "traceback: " + err.strip().splitlines()[-1][:300]
    if status not in (0, 2):
        return f"exit {status}: " + (err.strip().splitlines() or [""])[-1][:300]
    if status == 2:
        lines = err.strip().splitlines()
        if len(lines) != 1 or not lines[0].startswith("kvsim: error:"):
            return "exit 2 without one 'kvsim: error:' line: " + " | ".join(lines)[:300]
        if not (any(name in lines[0] for name in names(argv)) or re.search(r"'[a-z_]+\.[a-z_.]+'", lines[0])):
            return "exit 2 naming no flag, key or file given: " + lines[0][:300]
        return None
    if report is None:
        return "exit 0 without a report"
    bad = check_report(report)
    return "; ".join(bad)[:1000] if bad else None
