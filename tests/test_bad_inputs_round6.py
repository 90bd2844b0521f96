"""Bad input, round 6 (helper hleft4): what round 5 (tests/test_bad_inputs_round5.py) left. A time unit a sweep's
trace cannot take, refused by every point at run time rather than before the first; rows of one trace each valid but
inconsistent with the others. Each case ran with a silently wrong input (exit 0) or failed after the work started; each is now one line and exit 2 before the work starts, or a counted skip.
"""

from __future__ import annotations

import json

import pytest

from tests.bad_input_helpers import AZURE_OK, Case, check_bad_input, trace_stats

BURSTGPT_OK = ("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
               "0,GPT-4,100,10,110,Conversation log\n1000,GPT-4,200,20,220,Conversation log\n")
SWEEP = "mode: cache-only\nworkload: {trace: t.csv}\naxes: {cache.policy: [lru, arc]}\n"


CASES: dict[str, Case] = {
    # datetimes fix their own unit: a single run refused --workload-time-unit up front, but a sweep ran every point
    # into it ("4 of 4 sweep points failed", exit 2 after the work)
    "sweep_time_unit_flag_over_datetimes": Case(["--sweep", "{tmp}/s.yaml", "--workload-time-unit", "ms"],
                                                names=("s.yaml", "--workload-time-unit", "azure timestamps are datetimes"),
                                                files={"t.csv": AZURE_OK, "s.yaml": SWEEP}),
    "sweep_spec_time_unit_over_datetimes": Case(["--sweep", "{tmp}/s.yaml"],
                                                names=("s.yaml", "fixed key 'workload.time_unit'", "datetimes"),
                                                files={"t.csv": AZURE_OK, "s.yaml": SWEEP.replace(
                                                    "t.csv}", "t.csv, time_unit: ms}")}),
    # a trace axis over formats: the BurstGPT point reads ms, the Azure one cannot (it failed after the other ran)
    "sweep_trace_axis_of_mixed_formats": Case(["--sweep", "{tmp}/s.yaml", "--workload-time-unit", "ms"],
                                              names=("s.yaml", "point 't'", "t.csv", "azure timestamps are datetimes"),
                                              files={"t.csv": AZURE_OK, "b.csv": BURSTGPT_OK,
                                                     "s.yaml": "mode: cache-only\naxes: {workload.trace: [b.csv, t.csv]}\n"}),
    # the single run's message named the key alone, not the flag it was given by
    "time_unit_flag_over_datetimes": Case(trace_stats("--workload-time-unit", "ms"),
                                          names=("--workload-time-unit (workload.time_unit=ms)", "t.csv", "datetimes"),
                                          files={"t.csv": AZURE_OK}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, run_cli, tmp_path):
    check_bad_input(CASES[name], run_cli, tmp_path)


def test_a_refused_sweep_point_runs_no_point(run_cli, tmp_path):
    """The Azure point is refused before the BurstGPT point runs: no journal, no report."""
    (tmp_path / "t.csv").write_text(AZURE_OK)
    (tmp_path / "b.csv").write_text(BURSTGPT_OK)
    (tmp_path / "s.yaml").write_text("mode: cache-only\naxes: {workload.trace: [b.csv, t.csv]}\n")
    status, _, err = run_cli("--sweep", tmp_path / "s.yaml", "--workload-time-unit", "ms", "--quiet", "--no-plot",
                             "--report-json", tmp_path / "r.json")
    assert status == 2, err
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.journal.jsonl").exists()


def test_a_time_unit_axis_over_a_numeric_trace_is_taken(run_cli, tmp_path):
    """Where the format reads a unit, a sweep over units runs (the check refuses only a format that fixes its own)."""
    (tmp_path / "b.csv").write_text(BURSTGPT_OK)
    (tmp_path / "s.yaml").write_text("mode: cache-only\nworkload: {trace: b.csv}\naxes: {workload.time_unit: [s, ms]}\n")
    status, _, err = run_cli("--sweep", tmp_path / "s.yaml", "--quiet", "--no-plot", "--report-json", tmp_path / "r.json")
    assert status == 0, err
    runs = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert [(run["name"], run.get("error")) for run in runs] == [("s", None), ("ms", None)]
