"""Runs for the metamorphic tests (tests/test_metamorphic*.py): one in-process run whose report passes the invariant
checker, and its metrics."""

from __future__ import annotations

import json

import pandas as pd
from report_invariants import check_report

MOONCAKE = "traces/mooncake_conversation.jsonl"  # under ../shared/data


def checked_run(run_cli, tmp_path, *argv, sets=(), name="r", requests=False):
    """(report, per-request table or None) of one in-process run; exit 0 required."""
    out = tmp_path / f"{name}.json"
    args = [*argv, "--quiet", "--no-plot", "--report-json", out]
    if requests:
        args += ["--requests-csv", tmp_path / f"{name}.csv"]
    for s in sets:
        args += ["--set", s]
    status, _, err = run_cli(*args)
    assert status == 0, err[-2000:]
    report = json.loads(out.read_text())
    assert check_report(report) == []
    return report, (pd.read_csv(tmp_path / f"{name}.csv") if requests else None)


def metrics_of(report, i=0):
    return report["runs"][i]["metrics"]
