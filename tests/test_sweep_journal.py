"""The sweep journal against what changed between runs and what lies at its path (fuzzing findings): a resume never
mixes points of two traces, never cuts a file it then refuses, and the journal never shares a path with an output."""

from __future__ import annotations

import json

import pytest
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
    assert status == 2 and "different sweep" in err and "a file it reads changed" in err, err
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


def test_no_report_is_written_over_the_journal(run_cli, tmp_path):
    """--report-csv at the journal's path (beside --report-json): the CSV replaced the journal, exit 0, and the next
    --resume failed. Refused before any point, naming both."""
    trace = tmp_path / "t.csv"
    trace.write_text(_azure_rows(30))
    status, _, err = run_cli("--sweep", _spec(tmp_path, trace), "--no-plot", "--quiet", "--report-json",
                             str(tmp_path / "a.json"), "--report-csv", str(tmp_path / "a.journal.jsonl"))
    assert status == 2 and "the sweep's journal" in err and "--report-csv" in err, err
    assert not (tmp_path / "a.journal.jsonl").exists()


def test_a_report_to_a_device_keeps_the_journal_beside_the_spec(run_cli, tmp_path, monkeypatch, caplog):
    """--report-json /dev/null: the journal went to /dev/null.journal.jsonl (a file created in /dev as root, a
    failure as anyone else). A device or a pipe has no folder to write beside: the spec's stem, here, as without a
    report; and --resume without a journal says every point runs."""
    monkeypatch.chdir(tmp_path)
    trace = tmp_path / "t.csv"
    trace.write_text(_azure_rows(30))
    argv = ["--sweep", _spec(tmp_path, trace), "--jobs", "1", "--no-plot", "--report-json", "/dev/null"]
    with caplog.at_level("WARNING", logger="kvsim.sweep"):
        status, _, err = run_cli(*argv, "--resume")
    assert status == 0, err
    assert [r.getMessage() for r in caplog.records] == [
        "kvsim: note: --resume: no journal at spec.journal.jsonl, so every point runs"]
    assert (tmp_path / "spec.journal.jsonl").is_file()
    status, _, err = run_cli(*argv, "--resume")
    assert status == 0 and "2 already done; running 0" in err, err


def test_resume_cuts_a_torn_last_line_and_keeps_every_whole_record(tmp_path):
    """A run killed while appending leaves a last line without its newline: resuming keeps each whole record and cuts
    the torn one off the file (so the next record starts a line of its own), rather than calling the journal damaged."""
    from experiments.journal import Journal

    path = tmp_path / "s.journal.jsonl"
    assert Journal(path, "fp").start(resume=False) == {}
    record = {"key": "a", "trace": None, "error": "out of memory", "runs": []}
    Journal(path, "fp").append(record)
    whole = path.read_bytes()
    with path.open("ab") as fh:
        fh.write(b'{"key": "b", "trace": nu')
    assert Journal(path, "fp").start(resume=True, keys={"a", "b"}) == {"a": record}
    assert path.read_bytes() == whole


def test_resume_refuses_a_record_another_sweep_wrote(tmp_path):
    """A record of the right shape, for a point key this sweep has, copied from another sweep's journal (another
    base config, so other figures) was resumed as this sweep's. Its checksum covers the sweep's fingerprint: the
    record reads back from its own journal and is refused, by its line, in this one."""
    from experiments.journal import Journal
    from sim.errors import ConfigError

    record = {"key": "a", "index": 0, "name": "a", "overrides": {}, "trace": None,
              "runs": [{"name": "a", "overrides": {}, "metrics": {"hit_ratio": 0.5}}], "error": None}
    theirs, ours = tmp_path / "theirs.journal.jsonl", tmp_path / "ours.journal.jsonl"
    Journal(theirs, "their sweep").start(resume=False)
    Journal(theirs, "their sweep").append(record)
    assert Journal(theirs, "their sweep").start(resume=True, keys={"a"}) == {"a": record}
    Journal(ours, "our sweep").start(resume=False)
    with ours.open("ab") as fh:
        fh.write(theirs.read_bytes().splitlines(keepends=True)[1])
    with pytest.raises(ConfigError, match=r"ours.journal.jsonl line 2 is not the record this sweep wrote "
                                          r"\(its checksum differs"):
        Journal(ours, "our sweep").start(resume=True, keys={"a"})
