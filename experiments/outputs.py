"""Writing experiment reports: the JSON document and a CSV with the varied keys as leading columns.

Both are written atomically (``sim/report/output.py``). The CSV has one row per run:
``name``, then each varied key by its dotted name, then ``error`` when some run failed,
then the metrics flattened with dots, as the plain report's CSV.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from sim.report.document import flatten
from sim.report.output import atomic_write_text


def write_json(report: dict, path: str | Path) -> Path:
    return atomic_write_text(path, json.dumps(report, indent=2, allow_nan=False) + "\n")


def write_csv(report: dict, path: str | Path, leading: list[str]) -> Path:
    """One row per run: name, the ``leading`` keys (from each run's overrides), error, then metrics."""
    runs = report["runs"]
    has_error = any(run.get("error") for run in runs)
    rows = []
    for run in runs:
        row = {"name": run["name"]}
        row.update({key: _cell(run.get("overrides", {}).get(key)) for key in leading})
        if has_error:
            row["error"] = (run.get("error") or "").splitlines()[0] if run.get("error") else ""
        row.update(flatten(run.get("metrics") or {}))
        rows.append(row)
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def _cell(value):
    return json.dumps(value) if isinstance(value, (list, dict)) else value
