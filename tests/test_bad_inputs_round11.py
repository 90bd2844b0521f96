"""Bad input, round 11 (helper hfuzz10): the sweep and plan executors (journals, runner flags), learned.train, the
tools' command lines. Each case was a traceback (exit 1), a report that lost a point unsaid, or a refusal that came
after long work (and under other lines) where one line and exit 2 belonged."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.test_sweep import TINY_SYNTHETIC


def _spec(tmp_path) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"mode": "cache-only", "workload": TINY_SYNTHETIC,
                                    "axes": {"cache.policy": ["lru", "fifo"]}}, sort_keys=False))
    return str(path)


def _first_record(record: dict, **edits) -> dict:
    """The journal's first point record with top-level keys (or, for ``ci``, its first run's intervals) replaced."""
    record = json.loads(json.dumps(record))
    if "ci" in edits:
        record["runs"][0]["metrics_ci95"] = edits.pop("ci")
    record.update(edits)
    return record


# A hand-edited or damaged journal record that the shape check let through: a number for the keys a point left
# unread was a TypeError once the points had run (exit 1), an interval that is not [low, high] one in the HTML page
# (exit 1), and an error of "" with no runs made the point vanish from the report, 3 runs for a sweep of 4 points,
# "failed": 0, exit 0. Each is now "line 2 is not a point's record (damaged)", exit 2.
@pytest.mark.parametrize("edits", [{"left_unread": 5}, {"left_unread": [1]}, {"ci": 5}, {"ci": {"hit_ratio": 5}},
                                   {"ci": {"hit_ratio": [0.1]}}, {"ci": {"hit_ratio": ["a", "b"]}},
                                   {"error": "", "runs": []}],
                         ids=["left-unread-a-number", "left-unread-not-names", "intervals-a-number",
                              "interval-a-number", "interval-one-bound", "interval-of-strings", "error-empty"])
def test_resume_refuses_a_record_of_the_wrong_shape(edits, run_cli, tmp_path):
    report = tmp_path / "r.json"
    argv = ["--sweep", _spec(tmp_path), "--jobs", "1", "--no-plot", "--quiet", "--report-json", str(report)]
    assert run_cli(*argv)[0] == 0
    journal = tmp_path / "r.journal.jsonl"
    header, record, *rest = journal.read_text().splitlines(keepends=True)
    journal.write_text(header + json.dumps(_first_record(json.loads(record), **edits)) + "\n" + "".join(rest))
    status, out, err = run_cli(*argv, "--resume", "--html", str(tmp_path / "r.html"))
    assert status == 2 and "Traceback" not in out + err, err[-2000:]
    message = err.strip()
    assert "\n" not in message and str(journal) in message and "line 2" in message and "damaged" in message, message


def test_resume_keeps_the_intervals_and_unread_keys_a_sweep_writes(run_cli, tmp_path):
    """The shape check passes what a sweep writes: --seeds 2 gives every run its intervals, and the resumed report
    equals the first (both from the journal: no point runs again)."""
    report = tmp_path / "r.json"
    argv = ["--sweep", _spec(tmp_path), "--jobs", "1", "--no-plot", "--quiet", "--seeds", "2",
            "--report-json", str(report)]
    assert run_cli(*argv)[0] == 0
    first = json.loads(report.read_text())
    assert all(run["metrics_ci95"] for run in first["runs"])
    status, _, err = run_cli(*argv, "--resume")
    assert status == 0, err
    again = json.loads(report.read_text())
    assert [r["metrics_ci95"] for r in again["runs"]] == [r["metrics_ci95"] for r in first["runs"]]


# --backend ray without Ray: refused only when the points were about to run, after every point was checked, a
# learned point's workload loaded, a plan's candidates pruned by the miss-ratio curve, the journal started (a fresh
# header written over the previous run's) and the "running N on ray" line printed: two lines, and seconds to minutes.
@pytest.mark.parametrize("experiment", ["sweep", "plan"])
def test_backend_ray_without_ray_is_refused_first(experiment, run_cli, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # (as if not installed: import ray is an ImportError)
    if experiment == "sweep":
        argv = ["--sweep", _spec(tmp_path), "--report-json", str(tmp_path / "r.json")]
    else:
        plan = tmp_path / "plan.yaml"
        plan.write_text(yaml.safe_dump({"workload": TINY_SYNTHETIC, "target": {"hit_ratio": 0.1},
                                        "search": {"gpu": ["h100-sxm"], "gpus": [1]}}))
        argv = ["--plan", str(plan), "--report-json", str(tmp_path / "r.json")]
    status, out, err = run_cli(*argv, "--backend", "ray", "--no-plot")
    assert status == 2 and "Traceback" not in out + err, err[-2000:]
    assert err.strip() == "kvsim: error: --backend ray needs Ray: pip install -e '.[ray]' (or pip install 'ray>=2.9')"
    assert [p.name for p in tmp_path.iterdir()] == [f"{'spec' if experiment == 'sweep' else 'plan'}.yaml"]  # no journal


# Something other than a regular file where the sweep keeps its journal (beside the report): a FIFO blocked the sweep
# for ever (the check that it holds no journal opened it and waited for a writer), and a folder under --resume printed
# "no journal there, so every point runs" above the refusal, two lines.
def test_a_fifo_at_the_journals_path_is_refused_not_waited_on(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    os.mkfifo(tmp_path / "r.journal.jsonl")
    argv = ["--sweep", _spec(tmp_path), "--jobs", "1", "--no-plot", "--quiet", "--report-json", str(tmp_path / "r.json")]
    done = subprocess.run([sys.executable, "main.py", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [f"kvsim: error: {tmp_path / 'r.journal.jsonl'} exists and is not a kvsim "
                                                "sweep journal, which this sweep writes there (beside its report): move "
                                                "it, or name the report otherwise"]


def test_a_folder_at_the_journals_path_under_resume_is_one_line(run_cli, tmp_path, caplog):
    (tmp_path / "r.journal.jsonl").mkdir()
    with caplog.at_level("WARNING", logger="kvsim.sweep"):
        status, out, err = run_cli("--sweep", _spec(tmp_path), "--jobs", "1", "--no-plot", "--resume",
                                   "--report-json", str(tmp_path / "r.json"))
    assert status == 2 and "Traceback" not in out + err, err[-2000:]
    assert len(err.strip().splitlines()) == 1 and "r.journal.jsonl exists and is not a kvsim sweep journal" in err, err
    assert caplog.records == []  # (no "no journal there, so every point runs" above it)
