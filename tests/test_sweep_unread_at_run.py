"""A setting the loaded workload leaves unread (``sim.errors.UnreadSetting``: outputs_in_next_turn=false where no
prompt continues another, a rate scale where every request arrives at once) is refused by a lone run, but a sweep's
fixed key that another point reads is kept (``experiments.execute.refuse_unread``): the point that leaves it unread
runs as it would without it, and the sweep does not fail (it failed that point, exit 2). One that no point reads is
refused (``experiments.sweep.run_reading_points``: the sweep ran every point neutral and exited 0)."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from tests.conftest import BUNDLED_AZURE

METRICS = ("requests_completed", "ttft_s.mean", "tpot_s.p99", "e2e_s.mean", "hit_ratio")


def _rows(path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_outputs_in_next_turn_false_beside_a_kind_axis_runs_each_kind(run_cli, tmp_path):
    # (200 requests: 60 span ~12 s, within the first think time, and no multi-turn prompt continues an answer)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"mode": "single", "set": {"workload.outputs_in_next_turn": False,
                                                              "workload.synthetic.num_requests": 200},
                                    "axes": {"workload.synthetic.kind": ["multi-turn", "rag"]}}))
    out = tmp_path / "s.csv"
    status, _, err = run_cli("--sweep", spec, "--jobs", "1", "--report-csv", out, "--no-plot", "--quiet")
    assert status == 0, err
    rows = {row["name"]: row for row in _rows(out)}
    assert set(rows) == {"multi-turn", "rag"} and not any(row.get("error") for row in rows.values())
    # the rag point is the run without the setting (its answers have blocks of their own either way)
    alone = tmp_path / "rag.csv"
    status, _, err = run_cli("--set", "workload.synthetic.kind=rag", "--set", "workload.synthetic.num_requests=200",
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


def test_an_arrival_process_beside_a_limit_axis_runs_the_one_request_point_as_the_trace(run_cli, tmp_path):
    # one request has no gap to draw (hfuzz9): that point runs at the trace's own time, its rate left unread first
    # (process=trace beside a rate is no config); the other point draws its arrivals
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"mode": "single", "workload": {"trace": str(BUNDLED_AZURE)},
                                    "set": {"workload.arrivals.process": "poisson", "workload.arrivals.rate_rps": 3.0},
                                    "axes": {"workload.limit": [1, 20]}}))
    out = tmp_path / "s.json"
    status, _, err = run_cli("--sweep", spec, "--jobs", "1", "--report-json", out, "--no-plot", "--quiet")
    assert status == 0, err
    report = json.loads(out.read_text())
    assert report["sweep"]["left_unread"] == {"workload.arrivals.rate_rps": ["1"], "workload.arrivals.process": ["1"]}
    assert [run["metrics"]["requests_completed"] for run in report["runs"]] == [1, 20]
    alone = tmp_path / "alone.json"
    status, _, err = run_cli("--workload-trace", BUNDLED_AZURE, "--workload-limit", "1", "--report-json", alone,
                             "--no-plot", "--quiet")
    assert status == 0, err
    assert report["runs"][0]["metrics"]["ttft_s"] == json.loads(alone.read_text())["runs"][0]["metrics"]["ttft_s"]


# A key the command line gives that no point reads is refused, as a lone run refuses it (a sweep ran every point at
# the neutral value and exited 0); one only some points leave unread is kept, and the report names those points.

def _one_request_sweep(tmp_path, axes: dict) -> object:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"mode": "single", "workload": {"trace": str(BUNDLED_AZURE)}, "axes": axes}))
    return spec


def test_a_rate_scale_no_point_reads_is_refused_before_any_point_simulates(run_cli, tmp_path):
    # one request a point: no inter-arrival gap to scale at either policy
    spec = _one_request_sweep(tmp_path, {"cache.policy": ["lru", "arc"]})
    for given in (["--rate-scale", "2"], ["--set", "workload.rate_scale=2"]):
        out = tmp_path / "s.json"
        status, _, err = run_cli("--sweep", spec, *given, "--workload-limit", "1", "--jobs", "2", "--report-json", out,
                                 "--no-plot", "--quiet")
        said = "--rate-scale" if given[0] == "--rate-scale" else "--set workload.rate_scale"
        assert (status, err) == (2, f"kvsim: error: sweep spec {spec}: {said} is read by no point of the sweep: "
                                    "config key 'workload.rate_scale'=2 changes nothing: the workload holds one "
                                    "request; drop it\n")
        journal = tmp_path / "s.journal.jsonl"  # (its header alone: no point's record)
        assert len(journal.read_text().splitlines()) == 1 and not out.exists()


def test_outputs_in_next_turn_false_over_a_sessionless_trace_is_refused(run_cli, tmp_path):
    # the bundled Azure trace has no sessions: no prompt continues an earlier answer at any point
    spec = _one_request_sweep(tmp_path, {"workload.limit": [5, 10]})
    status, _, err = run_cli("--sweep", spec, "--set", "workload.outputs_in_next_turn=false", "--jobs", "1",
                             "--report-json", tmp_path / "s.json", "--no-plot", "--quiet")  # (its journal beside it)
    assert status == 2
    assert err.startswith(f"kvsim: error: sweep spec {spec}: --set workload.outputs_in_next_turn is read by no point "
                          "of the sweep: config key 'workload.outputs_in_next_turn'=false changes nothing"), err


def test_a_rate_scale_some_points_read_is_run_and_the_others_named(run_cli, tmp_path):
    spec = _one_request_sweep(tmp_path, {"workload.limit": [1, 20]})
    out = tmp_path / "s.json"
    status, stdout, err = run_cli("--sweep", spec, "--rate-scale", "2", "--jobs", "1", "--report-json", out,
                                  "--no-plot")
    assert status == 0, err
    report = json.loads(out.read_text())
    assert report["sweep"]["left_unread"] == {"workload.rate_scale": ["1"]}
    assert [run["metrics"]["requests_completed"] for run in report["runs"]] == [1, 20]
    assert "note: --rate-scale is not read by 1 of 2 points ('1'), which ran as without it" in stdout


def _fake_points(unread_by: dict[str, list[str]]):
    """A runner over points that each leave the keys ``unread_by[point]`` unread, as ``run_task`` records them: the
    first of them its task refuses stops it (error kind "unread"), the others it runs without (``left_unread``)."""
    from experiments.runner import Task

    runs = []

    def run(tasks, done):
        runs.append(sorted(task.key for task in tasks))
        for task in tasks:
            refused = [key for key in unread_by[task.key] if key in task.refused]
            record = {"key": task.key, "index": task.index, "name": task.name, "trace": None}
            done({**record, "runs": [], "error": f"{refused[0]} changes nothing", "error_kind": "unread",
                  "unread": refused[0]} if refused else
                 {**record, "runs": [{}], "error": None, "left_unread": list(unread_by[task.key])})

    tasks = [Task(point, index, point, "single", None, refused=("k1", "k2")) for index, point in enumerate(unread_by)]
    return tasks, run, runs


def test_each_point_runs_without_the_keys_it_leaves_unread_once_another_reads_them():
    from experiments.sweep import run_reading_points

    # a leaves k1 and k2 unread, b k2, c reads both: a stops at k1, b at k2 (c read both), then a at k2 (c read it)
    tasks, run, runs = _fake_points({"a": ["k1", "k2"], "b": ["k2"], "c": []})
    givens = {point: {"k1": "--set k1", "k2": "--set k2"} for point in "abc"}
    records = {}
    run_reading_points(tasks, givens, records, lambda r: records.__setitem__(r["key"], r), "sweep spec s.yaml", run)
    assert runs == [["a", "b", "c"], ["a", "b"], ["a"]]
    assert {point: records[point]["left_unread"] for point in "abc"} == {"a": ["k1", "k2"], "b": ["k2"], "c": []}


def test_a_key_no_point_reads_is_refused_by_how_it_was_given():
    from experiments.sweep import run_reading_points
    from sim.errors import InputError

    tasks, run, runs = _fake_points({"a": ["k1", "k2"], "b": ["k2"]})
    givens = {point: {"k1": "--set k1", "k2": "fixed key 'k2'"} for point in "ab"}
    with pytest.raises(InputError, match=r"^sweep spec s.yaml: --set k1 is read by no point of the sweep: k1 changes"):
        run_reading_points(tasks, givens, {}, lambda r: None, "sweep spec s.yaml", run)
    assert runs == [["a", "b"]]


def test_a_plan_refuses_a_setting_no_candidate_reads(run_cli, tmp_path):
    """A plan's candidates run the plan's one workload, so outputs_in_next_turn=false over the sessionless Azure trace
    is left unread by each: refused as a lone run refuses it (the plan ran every candidate without it, exit 0)."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"workload": {"trace": str(BUNDLED_AZURE)},
                                    "target": {"slo": {"ttft_s": 0.3, "attainment": 0.99}},
                                    "search": {"gpu": ["h100-sxm"], "gpus": [1, 2], "tensor_parallel_size": [1],
                                               "pd_split": ["aggregated"]}}))
    out = tmp_path / "p.json"
    status, _, err = run_cli("--plan", plan, "--workload-limit", "50", "--set", "workload.outputs_in_next_turn=false",
                             "--jobs", "1", "--report-json", out, "--no-plot", "--quiet")
    assert status == 2 and not out.exists()
    assert err.startswith(f"kvsim: error: plan {plan}: --set workload.outputs_in_next_turn is read by no candidate of "
                          "the plan: config key 'workload.outputs_in_next_turn'=false changes nothing"), err


def test_points_that_differ_only_in_keys_they_do_not_read_are_said_to_run_alike(run_cli, tmp_path, caplog):
    # Before: a depth axis crossed with an admission axis ran 'none/8' and 'none/64' (admission none reads no depth)
    # as two points with one result, unsaid; selective_write's two depths are different runs
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"mode": "cache-only",
                                    "set": {"workload.synthetic.num_requests": 120, "cache.capacity_blocks": 200},
                                    "axes": {"cache.admission": ["none", "selective_write"],
                                             "cache.selective_write_depth": [1, 64]}}))
    out = tmp_path / "s.csv"
    with caplog.at_level("WARNING", logger="kvsim.sweep"):
        status, _, err = run_cli("--sweep", spec, "--jobs", "1", "--report-csv", out, "--no-plot")
    assert status == 0, err
    [note] = [r.getMessage() for r in caplog.records if "differ only in keys they do not read" in r.getMessage()]
    assert "'none/1' = 'none/64'" in note and "selective_write/" not in note
    rows = {row["name"]: row for row in _rows(out)}
    assert rows["none/1"]["hits"] == rows["none/64"]["hits"]
    assert rows["selective_write/1"]["hits"] != rows["selective_write/64"]["hits"]  # (read: two runs)
    # a sweep whose points all read their keys says nothing of the kind
    spec.write_text(yaml.safe_dump({"mode": "cache-only",
                                    "set": {"workload.synthetic.num_requests": 120, "cache.capacity_blocks": 200,
                                            "cache.admission": "selective_write"},
                                    "axes": {"cache.selective_write_depth": [1, 64]}}))
    caplog.clear()
    with caplog.at_level("WARNING", logger="kvsim.sweep"):
        status, _, err = run_cli("--sweep", spec, "--jobs", "1", "--report-csv", out, "--no-plot")
    assert status == 0, err
    assert not [r for r in caplog.records if "do not read" in r.getMessage()]


def test_the_note_masks_a_nested_unread_key_and_names_three_groups_then_counts_the_rest(caplog):
    """``note_points_alike`` by hand: four capacities (read) crossed with two values of a key three levels deep
    (workload.synthetic.rate_rps) that every point leaves unread are four groups of two alike points; the note names
    the first three groups and counts the fourth. The same points reading every key (``unread`` empty) are eight
    runs: no note. (The test above masks a two-level key and has one group: masking through the first parent only, or
    naming one group, passed it.)"""
    from pathlib import Path

    from experiments.spec import Point, note_points_alike
    from sim.config import load_config, replace

    base = load_config()
    points, configs = [], []
    for capacity in (100, 200, 300, 400):
        for rate in (1.0, 2.0):
            overrides = {"cache.capacity_blocks": capacity, "workload.synthetic.rate_rps": rate}
            points.append(Point(len(points), f"{capacity}/{rate:g}", overrides))
            configs.append(replace(base, **overrides))
    with caplog.at_level("WARNING", logger="kvsim.sweep"):
        note_points_alike(points, configs, [{"workload.synthetic.rate_rps": "unread"} for _ in points], Path("s.yaml"))
    [note] = [r.getMessage() for r in caplog.records]
    assert "points '100/1' = '100/2', '200/1' = '200/2', '300/1' = '300/2' and 1 more group differ only" in note
    caplog.clear()
    with caplog.at_level("WARNING", logger="kvsim.sweep"):
        note_points_alike(points, configs, [{} for _ in points], Path("s.yaml"))
    assert not caplog.records
