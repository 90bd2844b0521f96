"""A setting the loaded workload leaves unread (``sim.errors.UnreadSetting``: outputs_in_next_turn=false where no
prompt continues another, a rate scale where every request arrives at once) is refused by a lone run, but a sweep's
fixed key that another point reads is kept (``experiments.execute.refuse_unread``): the point that leaves it unread
runs as it would without it, and the sweep does not fail (it failed that point, exit 2)."""

from __future__ import annotations

import csv

import yaml

from tests.conftest import BUNDLED_AZURE

METRICS = ("requests_completed", "ttft_s.mean", "tpot_s.p99", "e2e_s.mean", "hit_ratio")


def _rows(path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_outputs_in_next_turn_false_beside_a_kind_axis_runs_each_kind(run_cli, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"mode": "single", "set": {"workload.outputs_in_next_turn": False,
                                                              "workload.synthetic.num_requests": 60},
                                    "axes": {"workload.synthetic.kind": ["multi-turn", "rag"]}}))
    out = tmp_path / "s.csv"
    status, _, err = run_cli("--sweep", spec, "--jobs", "1", "--report-csv", out, "--no-plot", "--quiet")
    assert status == 0, err
    rows = {row["name"]: row for row in _rows(out)}
    assert set(rows) == {"multi-turn", "rag"} and not any(row.get("error") for row in rows.values())
    # the rag point is the run without the setting (its answers have blocks of their own either way)
    alone = tmp_path / "rag.csv"
    status, _, err = run_cli("--set", "workload.synthetic.kind=rag", "--set", "workload.synthetic.num_requests=60",
                             "--report-csv", alone, "--no-plot", "--quiet")
    assert status == 0, err
    [lone] = _rows(alone)
    assert [rows["rag"][m] for m in METRICS] == [lone[m] for m in METRICS]


def test_rate_scale_beside_a_limit_axis_runs_the_one_request_point(run_cli, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"mode": "single", "workload": {"trace": str(BUNDLED_AZURE)},
                                    "set": {"workload.rate_scale": 2.0},
                                    "axes": {"workload.limit": [1, 20]}}))
    out = tmp_path / "s.csv"
    status, _, err = run_cli("--sweep", spec, "--jobs", "1", "--report-csv", out, "--no-plot", "--quiet")
    assert status == 0, err
    rows = _rows(out)
    assert [row["requests_completed"] for row in rows] == ["1", "20"] and not any(row.get("error") for row in rows)
