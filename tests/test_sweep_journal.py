"""The sweep journal against what changed between runs and what lies at its path (fuzzing findings): a resume never
mixes points of two traces, never cuts a file it then refuses, and the journal never shares a path with an output."""

from __future__ import annotations

import json

import yaml

from tests.conftest import BUNDLED_AZURE


def _spec(tmp_path, trace, capacities=(200, 400)) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"mode": "cache-only", "workload": {"trace": str(trace)},
                                    "axes": {"cache.capacity_blocks": list(capacities)}}, sort_keys=False))
    return str(path)


def _azure_rows(rows: int) -> str:
    lines = BUNDLED_AZURE.read_text().splitlines(keepends=True)
    return "".join(lines[:rows + 1])


def test_resume_refuses_a_journal_whose_trace_was_edited_since(run_cli, tmp_path):
    """Killed after its first point, the sweep's trace then cut to half: --resume ran the second point on the new
    trace and reported both (300 and 150 requests) as one sweep, exit 0. The journal's fingerprint covers the
    contents of the files the points read, so it is refused; with the trace as it was it resumes."""
    trace = tmp_path / "t.csv"
    trace.write_text(_azure_rows(60))
    argv = ["--sweep", _spec(tmp_path, trace), "--jobs", "1", "--no-plot", "--quiet",
            "--report-json", str(tmp_path / "r.json")]
    assert run_cli(*argv)[0] == 0
    journal = tmp_path / "r.journal.jsonl"
    kept = b"".join(journal.read_bytes().splitlines(keepends=True)[:2])  # the header and the first point
    journal.write_bytes(kept)
    trace.write_text(_azure_rows(30))
    status, _, err = run_cli(*argv, "--resume")
    assert status == 2 and "different sweep" in err and "contents of a file it reads" in err, err
    assert journal.read_bytes() == kept
    trace.write_text(_azure_rows(60))
    status, _, err = run_cli(*argv, "--resume")
    assert status == 0, err
    runs = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert [r["metrics"]["accesses"] for r in runs] == [runs[0]["metrics"]["accesses"]] * 2


def test_resume_refuses_a_foreign_file_without_cutting_it(run_cli, tmp_path):
    """A user's file at the journal's path, its last line without a newline: --resume refused it (exit 2) after
    cutting that line off as a killed run's torn record."""
    trace = tmp_path / "t.csv"
    trace.write_text(_azure_rows(30))
    journal = tmp_path / "r.journal.jsonl"
    journal.write_bytes(b"my precious notes\nlast line without newline")
    status, _, err = run_cli("--sweep", _spec(tmp_path, trace), "--jobs", "1", "--no-plot", "--quiet",
                             "--report-json", str(tmp_path / "r.json"), "--resume")
    assert status == 2 and "is not a kvsim sweep journal" in err, err
    assert journal.read_bytes() == b"my precious notes\nlast line without newline"
