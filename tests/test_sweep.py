"""Sweeps: spec validation before any point runs, equality with single runs, journal and --resume. Backends and
--jobs: ``tests/test_sweep_backends.py``; a killed sweep and its workers, and points that fail:
``tests/test_sweep_workers.py``."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.conftest import BUNDLED_AZURE, ROOT

POLICIES = ["lru", "arc", "s3fifo", "sieve"]
CAPACITIES = [1000, 5000, 20000]
LIMIT = 4000
TINY_SYNTHETIC = {"synthetic": {"kind": "multi-turn", "num_requests": 120, "turns_mean": 6, "think_time_median_s": 2.0,
                                 "input_tokens_mean": 200}}


def _spec(tmp_path, name="spec.yaml", **body) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return str(path)


def _rows(path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_sweep_equals_single_runs_on_mooncake(run_cli, tmp_path, shared_data):
    trace = shared_data / "traces" / "mooncake_conversation.jsonl"  # its first 4,000 requests (CI time)
    spec = _spec(tmp_path, mode="cache-only", workload={"trace": str(trace), "limit": LIMIT}, set={"serving.block_size": 512},
                 axes={"cache.policy": POLICIES, "cache.capacity_blocks": CAPACITIES})
    out_csv, out_json = tmp_path / "sweep.csv", tmp_path / "sweep.json"
    status, _, err = run_cli("--sweep", spec, "--jobs", "2", "--report-csv", out_csv, "--report-json", out_json,
                             "--no-plot", "--quiet")
    assert status == 0, err
    rows = _rows(out_csv)
    assert list(rows[0])[:3] == ["name", "cache.policy", "cache.capacity_blocks"]
    assert [(r["cache.policy"], int(r["cache.capacity_blocks"])) for r in rows] == \
        [(p, c) for p in POLICIES for c in CAPACITIES]  # the cartesian product, in spec order
    report = json.loads(out_json.read_text())
    assert report["mode"] == "cache-only" and report["sweep"]["points"] == 12
    assert [r["overrides"] for r in report["runs"]] == [{"cache.policy": p, "cache.capacity_blocks": c}
                                                        for p in POLICIES for c in CAPACITIES]
    for capacity in CAPACITIES:  # the same hit ratios as single runs (all four policies at one capacity)
        single = tmp_path / f"single-{capacity}.json"
        assert run_cli("--cache-only", "--workload-trace", trace, "--workload-limit", LIMIT,
                       "--set", "serving.block_size=512", "--policy",
                       ",".join(POLICIES), "--capacity-blocks", capacity, "--report-json", single, "--no-plot",
                       "--quiet")[0] == 0
        for run in json.loads(single.read_text())["runs"]:
            row = next(r for r in rows if r["cache.policy"] == run["name"] and int(r["cache.capacity_blocks"]) == capacity)
            assert float(row["hit_ratio"]) == run["metrics"]["hit_ratio"]
            assert int(row["hits"]) == run["metrics"]["hits"]


def test_cluster_sweep_over_routers_equals_one_cluster_run_per_router(run_cli, tmp_path):
    fleet = {"cluster.num_racks": 2, "cluster.nodes_per_rack": 2, "hardware.gpus_per_node": 2,
             "serving.num_gpu_blocks": 300}
    routers = ["round-robin", "prefix-aware"]
    spec = _spec(tmp_path, mode="cluster", workload=TINY_SYNTHETIC, set=fleet, axes={"cluster.router": routers})
    out = tmp_path / "sweep.csv"
    status, _, err = run_cli("--sweep", spec, "--jobs", "1", "--report-csv", out, "--no-plot", "--quiet")
    assert status == 0, err
    rows = {r["cluster.router"]: r for r in _rows(out)}
    single = tmp_path / "single.json"
    sets = [arg for key, value in {**fleet, **{f"workload.synthetic.{k}": v for k, v in TINY_SYNTHETIC["synthetic"].items()}}.items()
            for arg in ("--set", f"{key}={value}")]
    assert run_cli("--cluster", "--router", ",".join(routers), *sets, "--report-json", single, "--no-plot",
                   "--quiet")[0] == 0
    for run in json.loads(single.read_text())["runs"]:
        assert float(rows[run["name"]]["hit_ratio"]) == run["metrics"]["hit_ratio"]
        assert float(rows[run["name"]]["ttft_s.mean"]) == run["metrics"]["ttft_s"]["mean"]


def test_resume_refuses_a_journal_of_another_sweep(run_cli, tmp_path):
    spec = _spec(tmp_path, mode="cache-only", workload=TINY_SYNTHETIC, axes={"cache.capacity_blocks": [300, 600]})
    out = tmp_path / "s.csv"
    assert run_cli("--sweep", spec, "--jobs", "1", "--report-csv", out, "--no-plot", "--quiet")[0] == 0
    status, _, err = run_cli("--sweep", spec, "--jobs", "1", "--report-csv", out, "--no-plot", "--resume")
    assert status == 0 and "2 already done; running 0" in err
    _spec(tmp_path, mode="cache-only", workload=TINY_SYNTHETIC, axes={"cache.capacity_blocks": [300, 900]})
    status, _, err = run_cli("--sweep", spec, "--report-csv", out, "--no-plot", "--quiet", "--resume")
    assert status == 2 and "different sweep" in err


@pytest.mark.parametrize("body, needle", [
    ({"mode": "cache-only", "axes": {"cache.policy": []}}, "axis 'cache.policy' is empty"),
    ({"mode": "cache-only", "axes": {"cache.polcy": ["lru"]}}, "cache.polcy"),
    ({"mode": "cache-only", "axes": {"cache.capacity_blocks": ["many"]}}, "cache.capacity_blocks"),
    ({"mode": "cache-only", "axes": {"cache.policy": ["lru", "nosuch"]}}, "'cache.policy' must be one of"),
    ({"mode": "cache-only", "axez": {}}, "unknown key 'axez'"),
    ({"mode": "cluster", "axes": {"cluster.router": ["round-robin", "nosuch"]}}, "cluster.router"),
    ({"mode": "warp", "axes": {"cache.policy": ["lru"]}}, "unknown mode 'warp'"),
    ({"axes": {"cache.policy": ["lru"]}}, "missing key 'mode'"),
    ({"mode": "pd", "set": {"slo.ttft_s": "fast"}, "axes": {"pd.num_prefill": [1]}}, "slo.ttft_s"),
    ({"mode": "pd", "zip": [{"pd.num_prefill": [1, 2], "pd.num_decode": [1]}]}, "different lengths"),
    ({"mode": "single", "axes": {"workload.rate_scale": [1, 0]}}, "workload.rate_scale"),
    ({"mode": "single", "axes": {"model": ["llama-3.1-8b", "gpt-9"]}}, "'model' must be one of"),
    # what a mode reads of its point, as the command line checks it: refused before the first point, not by it
    ({"mode": "pd", "axes": {"cache.capacity_blocks": [100, 200]}}, "'cache.capacity_blocks'=100 applies to --cache-only"),
    ({"mode": "single", "axes": {"compute.profile": [None, "nowhere"]}}, "compute.profile"),
    # a key and one inside it (a mapping value's leaf): the later one won at every point (two points ran alike, and
    # every point's overrides showed the last value), exit 0
    ({"mode": "cache-only", "axes": {"cache.tiers.dram": [{"capacity_gib": 1}, {"capacity_gib": 2}],
                                     "cache.tiers.dram.capacity_gib": [5, 6]}},
     "keys 'cache.tiers.dram' and 'cache.tiers.dram.capacity_gib' are both varied, one inside the other"),
    ({"mode": "cache-only", "set": {"cache": {"tiers": {"dram": {"capacity_gib": 3}}}},
      "axes": {"cache.tiers.dram": [{"capacity_gib": 5}, {"capacity_gib": 6}]}},
     "key 'cache.tiers.dram.capacity_gib' (inside 'cache.tiers.dram') is both fixed"),
    # a mapping value's leaves are what the mode must read: pd.num_prefill in a cache-only sweep (points alike)
    ({"mode": "cache-only", "axes": {"pd": [{"num_prefill": 1}, {"num_prefill": 2}]}},
     "axis 'pd.num_prefill' is not used by the sweep's mode 'cache-only'"),
])
def test_bad_specs_exit_2_before_any_point_runs(run_cli, tmp_path, body, needle):
    spec = _spec(tmp_path, **body)
    status, _, err = run_cli("--sweep", spec, "--report-csv", tmp_path / "out.csv", "--no-plot")
    assert status == 2 and needle in err, err
    assert str(spec) in err
    assert not (tmp_path / "out.journal.jsonl").exists() and not (tmp_path / "out.csv").exists()


def test_a_mapping_axis_beside_another_leaf_of_its_section_runs(run_cli, tmp_path):
    """A mapping axis sets its leaves only, merged beside the section's others: a fixed (or --set) read bandwidth
    beside a DRAM capacity axis is kept at every point, not refused as one key inside the other."""
    spec = _spec(tmp_path, mode="cache-only", set={"workload.synthetic.num_requests": 40, "cache.inclusion": "exclusive"},
                 axes={"cache.tiers.dram": [{"capacity_gib": 1}, {"capacity_gib": 2}]})
    for extra in ([], ["--set", "cache.tiers.dram.policy=fifo"]):
        status, _, err = run_cli("--sweep", spec, *extra, "--jobs", "1", "--no-plot", "--quiet",
                                 "--report-json", tmp_path / "r.json")
        assert status == 0, err
        runs = json.loads((tmp_path / "r.json").read_text())["runs"]
        assert [r["overrides"]["cache.tiers.dram"] for r in runs] == [{"capacity_gib": 1}, {"capacity_gib": 2}]


def test_a_rate_axis_with_max_rate_is_refused(run_cli, tmp_path):
    spec = _spec(tmp_path, mode="single", set={"slo.ttft_s": 1.0}, axes={"workload.rate_scale": [1, 2]})
    status, _, err = run_cli("--sweep", spec, "--max-rate", "--no-plot")
    assert status == 2 and "does nothing with --max-rate" in err


@pytest.mark.parametrize("body, said, why", [
    # the replay inserts no generated block unless cache.insert_outputs is on: where their ids come from is unread
    ({"axes": {"workload.outputs_in_next_turn": [True, False]}}, "axis 'workload.outputs_in_next_turn'",
     "cache.insert_outputs=true"),
    # a leaf only some values of a mapping axis set, which those points leave unread: judged by them (the first
    # point, not given it, decided alone)
    ({"axes": {"workload": [{"limit": 30}, {"limit": 30, "outputs_in_next_turn": False}]}},
     "axis 'workload.outputs_in_next_turn'", "cache.insert_outputs=true"),
    # one tier of cache.capacity_blocks blocks: a DRAM tier given beside it was replayed as if absent
    ({"set": {"cache.tiers.dram.capacity_gib": 4}, "axes": {"cache.capacity_blocks": [100, 200]}},
     "fixed key 'cache.tiers.dram.capacity_gib'", "--capacity-blocks"),
])
def test_a_point_that_would_leave_a_given_key_unread_is_refused(run_cli, tmp_path, body, said, why):
    """As the command line refuses such a --set: each point is judged on its own resolved config, so the same axis
    with cache.insert_outputs fixed on runs."""
    body["set"] = {"workload.synthetic.num_requests": 40, **body.get("set", {})}
    status, _, err = run_cli("--sweep", _spec(tmp_path, mode="cache-only", **body), "--no-plot", "--quiet",
                             "--report-json", tmp_path / "r.json")
    assert status == 2 and said in err and why in err and not (tmp_path / "r.json").exists()
    if "axes" in body and "workload.outputs_in_next_turn" in body["axes"]:
        body["set"]["cache.insert_outputs"] = True
        # turns a second apart: 40 requests hold next turns, whose answers outputs_in_next_turn places (at the default
        # think time none is back within them, and false, which would change nothing, is refused)
        body["set"]["workload.synthetic.think_time_median_s"] = 1.0
        assert run_cli("--sweep", _spec(tmp_path, "ok.yaml", mode="cache-only", **body), "--no-plot", "--quiet",
                       "--report-json", tmp_path / "r.json")[0] == 0


def test_zip_groups_paths_relative_to_the_spec_and_module_entry(tmp_path):
    sub = tmp_path / "specs"
    sub.mkdir()
    rel = os.path.relpath(BUNDLED_AZURE, sub)
    spec = _spec(sub, mode="pd", workload={"trace": rel, "limit": 30},
                 zip=[{"pd.num_prefill": [1, 2], "pd.num_decode": [2, 1]}])
    out = tmp_path / "z.csv"
    done = subprocess.run([sys.executable, "-m", "experiments.sweep", spec, "--jobs", "1", "--report-csv", str(out),
                           "--no-plot", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = _rows(out)
    assert [(r["name"], r["pd.num_prefill"], r["pd.num_decode"]) for r in rows] == [("1/2", "1", "2"), ("2/1", "2", "1")]
    assert all(r["requests_completed"] == "30" for r in rows)


def _sweep_module(*argv: str) -> int:
    """``python -m experiments.sweep ARGV`` in-process: its parser, main.py's run."""
    import main
    from sim.cli import build_parser

    return main.main([str(a) for a in argv], build_parser(sweep_module=True))


def test_module_entry_takes_the_spec_after_its_flags(tmp_path, capsys):
    """Flags before the spec (the spec was read as an unknown argument, exit 2 naming it)."""
    spec = _spec(tmp_path, mode="cache-only", workload={"trace": str(BUNDLED_AZURE), "limit": 20},
                 axes={"cache.policy": ["lru", "fifo"]})
    out = tmp_path / "m.csv"
    assert _sweep_module("--jobs", "1", "--no-plot", "--quiet", "--report-csv", out, spec) == 0, capsys.readouterr().err
    assert [r["name"] for r in _rows(out)] == ["lru", "fifo"]


@pytest.mark.parametrize("argv, needle", [
    ([], "a sweep spec is required"),  # it ran the single-node simulation and wrote plots into kvsim-plots/ (exit 0)
    (["--quiet"], "a sweep spec is required"),
    (["{spec}", "--pd"], "not allowed with --pd"),  # --pd was silently dropped: the spec's mode ran
    (["--sweep", "{spec}", "{spec}"], "given twice"),
])
def test_module_entry_without_one_spec_is_a_usage_error(tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    spec = _spec(tmp_path, mode="cache-only", axes={"cache.policy": ["lru"]})
    assert _sweep_module(*[a.format(spec=spec) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and err.startswith("kvsim: error: "), err
    assert list(tmp_path.iterdir()) == [tmp_path / "spec.yaml"]  # nothing ran, nothing written


@pytest.mark.parametrize("argv, needle", [
    (["--jobs", "2"], "--jobs is not used by"),
    (["--resume"], "--resume is not used by"),
    (["--backend", "ray"], "--backend is not used by"),
])
def test_runner_flags_outside_sweeps_exit_2(run_cli, argv, needle):
    status, _, err = run_cli("--trace-stats", "--workload-trace", BUNDLED_AZURE, *argv)
    assert status == 2 and needle in err


@pytest.mark.parametrize("damage, names", [
    (lambda header, record: b"[1]\n", ("not a kvsim sweep journal",)),
    (lambda header, record: header + b"\xe9\n", ("not UTF-8",)),
    (lambda header, record: header + b'{"key": \n', ("line 2", "damaged")),
    (lambda header, record: header + record + b"[1]\n", ("line 3", "damaged")),
    (lambda header, record: header + json.dumps({"key": json.loads(record)["key"]}).encode() + b"\n", ("line 2", "damaged")),
    # a record's trace, or a run's overrides, that is not a mapping (AttributeError in the HTML page or the merge of
    # the point's overrides), and a NaN (a journal is written without NaN: the report's writer refused it), exit 1
    (lambda header, record: header + _edited(record, trace=5), ("line 2", "damaged")),
    (lambda header, record: header + _edited(record, overrides=[1]), ("line 2", "damaged")),
    (lambda header, record: header + _edited(record, hit_ratio=float("nan")), ("line 2", "damaged")),
    # a record of no point of the sweep (its header's fingerprint covers the point keys, so another sweep's, appended
    # to this report's journal, or an edit): it was ignored, unsaid
    (lambda header, record: header + record + _edited(record, key='{"cache.policy":"arc"}'),
     ("line 3", "a point this sweep does not have", "cache.policy")),
    # a record of the right shape whose fields are not what the sweep wrote: resumed as written, exit 0 (a hit ratio
    # of "x" reported as such and printed as a dash, an index of 99 ignored, an edited figure reported as measured)
    (lambda header, record: header + _edited(record, hit_ratio="x"), ("line 2", "its checksum differs")),
    (lambda header, record: header + _edited(record, index=99), ("line 2", "its checksum differs")),
    (lambda header, record: header + _edited(record, hit_ratio=0.99), ("line 2", "its checksum differs")),
    (lambda header, record: header + _edited(record, checksum=None), ("line 2", "no checksum")),
], ids=["header-a-list", "not-utf8", "record-not-json", "record-a-list", "record-without-runs", "trace-an-int",
        "run-overrides-a-list", "metric-nan", "record-of-no-point", "metric-a-string", "index-edited",
        "metric-edited", "no-checksum"])
def test_resume_from_a_damaged_journal_names_it(run_cli, tmp_path, damage, names):
    """A journal edited or damaged between runs: --resume names it and the line (exit 2); each was a traceback."""
    spec = _spec(tmp_path, mode="cache-only", workload=TINY_SYNTHETIC, axes={"cache.policy": ["lru", "fifo"]})
    report = tmp_path / "r.json"
    argv = ["--sweep", spec, "--jobs", "1", "--no-plot", "--quiet", "--report-json", str(report)]
    assert run_cli(*argv)[0] == 0
    journal = tmp_path / "r.journal.jsonl"
    header, record, _ = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(damage(header, record))
    status, out, err = run_cli(*argv, "--resume", "--html", str(tmp_path / "r.html"))
    assert status == 2 and "Traceback" not in out + err, err[-2000:]
    message = err.strip()
    assert "\n" not in message and str(journal) in message and all(n in message for n in names), message


def _edited(record: bytes, trace=None, overrides=None, hit_ratio=None, key=None, **fields) -> bytes:
    """A journal record with its trace, its point's key, or its first run's overrides or hit ratio, replaced; other
    top-level ``fields`` set (None: removed)."""
    value = json.loads(record)
    for name, given in fields.items():
        value.pop(name, None) if given is None else value.__setitem__(name, given)
    if key is not None:
        value["key"] = key
    if trace is not None:
        value["trace"] = trace
    if overrides is not None:
        value["runs"][0]["overrides"] = overrides
    if hit_ratio is not None:
        value["runs"][0]["metrics"]["hit_ratio"] = hit_ratio
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


def test_point_names_spell_values_as_the_spec_does(tmp_path):
    from experiments.spec import expand, load_spec

    spec = load_spec(_spec(tmp_path, mode="single", workload={"trace": str(BUNDLED_AZURE)},
                           axes={"serving.enable_prefix_caching": [False, True], "serving.max_num_seqs": [None, 8]}))
    assert [p.name for p in expand(spec)] == ["false/null", "false/8", "true/null", "true/8"]


@pytest.mark.parametrize("foreign", ["notes", "spec"])
def test_a_file_at_the_journals_path_that_is_no_journal_is_kept(run_cli, tmp_path, foreign):
    """Without --resume the journal is written afresh: a user's file of its name, or the spec itself named so, was
    replaced (exit 0); a journal of an earlier sweep still is."""
    journal = tmp_path / "r.journal.jsonl"
    spec = _spec(tmp_path, journal.name if foreign == "spec" else "spec.yaml", mode="cache-only",
                 workload=TINY_SYNTHETIC, axes={"cache.policy": ["lru"]})
    if foreign == "notes":
        journal.write_text("my notes\n")
    before = journal.read_bytes()
    argv = ["--sweep", spec, "--jobs", "1", "--no-plot", "--quiet", "--report-json", str(tmp_path / "r.json")]
    status, _, err = run_cli(*argv)
    said = "is also the path of --sweep" if foreign == "spec" else "r.journal.jsonl exists and is not a kvsim sweep journal"
    assert status == 2 and said in err, err
    assert journal.read_bytes() == before
    if foreign == "notes":
        journal.unlink()
        assert run_cli(*argv)[0] == 0 and run_cli(*argv)[0] == 0  # an earlier sweep's journal: started afresh


@pytest.mark.parametrize("resume", [[], ["--resume"]])
def test_a_journal_path_that_is_a_loop_of_links_is_named(run_cli, tmp_path, resume):
    """r.journal.jsonl -> loop -> r.journal.jsonl: writing the journal's header raised OSError (ELOOP) from the
    atomic writer, a traceback and internal error (exit 1, hfuzz9). Refused naming the journal, before any point
    runs."""
    journal = tmp_path / "r.journal.jsonl"
    (tmp_path / "loop").symlink_to(journal)
    journal.symlink_to(tmp_path / "loop")
    spec = _spec(tmp_path, mode="cache-only", workload=TINY_SYNTHETIC, axes={"cache.policy": ["lru"]})
    status, _, err = run_cli("--sweep", spec, "--jobs", "1", "--no-plot", "--quiet", "--report-json",
                             str(tmp_path / "r.json"), *resume)
    assert (status, err) == (2, f"kvsim: error: cannot write journal {journal}: Too many levels of symbolic links\n")
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("resume", [[], ["--resume"]])
def test_a_journal_name_too_long_is_named(run_cli, tmp_path, resume):
    """A report of a 250-byte name (the system's bound: 255) puts its journal, '<report>.journal.jsonl', past it:
    pathlib's exists() raised OSError (ENAMETOOLONG), a traceback and internal error (exit 1, hfuzz9)."""
    report = tmp_path / ("x" * 245 + ".json")
    spec = _spec(tmp_path, mode="cache-only", workload=TINY_SYNTHETIC, axes={"cache.policy": ["lru"]})
    status, _, err = run_cli("--sweep", spec, "--jobs", "1", "--no-plot", "--quiet", "--report-json", report, *resume)
    journal = tmp_path / ("x" * 245 + ".journal.jsonl")
    assert (status, err) == (2, f"kvsim: error: cannot write journal {journal}: File name too long\n")


def test_spec_config_and_overlays_from_the_home_folder(tmp_path, monkeypatch):
    """A spec is read by no shell: 'config: ~/c.yaml' and 'overlays: [~/o.yaml]' name files in the home folder, as a
    config key's path does (was "config file not found: ~/c.yaml"); a ~ inside a path is a name like any other."""
    from experiments.spec import load_spec

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    spec = load_spec(_spec(tmp_path, mode="cache-only", config="~/c.yaml", overlays=["~/o.yaml", "a~/o.yaml"],
                           axes={"cache.policy": ["lru"]}))
    assert spec.layers.config == str(home / "c.yaml")
    assert spec.layers.overlays == (str(home / "o.yaml"), str(tmp_path / "a~" / "o.yaml"))  # (spelled as the spec was)


def test_the_summary_names_the_points_whose_runs_skipped_requests(run_cli, tmp_path):
    """A point whose instances are too small for some requests ran the others only (vLLM refuses a request whose KV
    outgrows an instance, ``exceeds_kv_capacity``); the sweep's table showed its metrics beside the other points' with
    nothing to say they cover fewer requests. By hand: at 20 KV blocks an instance has 19 usable (one is vLLM's null
    block) of 16 tokens, so a request feeding the model more than 304 tokens (prompt + output, at least one, less the
    last, which is sampled and never fed) never runs; at 2,000 blocks, one of more than 31,984."""
    import math

    from sim.config import load_config
    from trace.workload import load_workload

    spec = _spec(tmp_path, mode="single", workload=TINY_SYNTHETIC, set={"serving.num_instances": 1},
                 axes={"serving.num_gpu_blocks": [20, 2000]})
    status, stdout, err = run_cli("--sweep", spec, "--jobs", "1", "--report-json", tmp_path / "r.json", "--no-plot")
    assert status == 0, err
    synthetic = TINY_SYNTHETIC["synthetic"]
    trace = load_workload(load_config(None, sets=[f"workload.synthetic.{k}={v}" for k, v in synthetic.items()]))
    tokens = trace.input_tokens + trace.output_tokens.clip(min=1) - 1
    refused = {blocks: sum(math.ceil(t / 16) > blocks - 1 for t in tokens) for blocks in (20, 2000)}
    assert 0 < refused[2000] < refused[20] < len(tokens)  # (a few of the steady start's long chats pass 31,984 tokens)
    for blocks, n in refused.items():
        assert f"! {blocks}: {n:,} of {len(tokens):,} requests skipped (exceeds_kv_capacity: {n:,})" in stdout


def test_a_rate_scale_sweep_shows_requests_per_second_and_a_no_repeat_note(run_cli, tmp_path, monkeypatch):
    """A workload.rate_scale axis labelled its points "1" and "4" (times the workload's own rate) and nothing else:
    each point now carries offered_rps = the trace's mean arrival rate (requests over the span of their timestamps,
    computed here from the CSV) x its scale, in the table, the CSV beside the scale and a top axis of the latency plot.
    The bundled Azure trace is token counts only (no block repeats): its PD sweep's hit_ratio column of zeros is said
    to mean nothing, once for every point, as --cache-only says it; the HTML page says it under its runs table (it
    showed the zeros alone, hexplore2)."""
    import html

    import pandas as pd

    import sim.report.sweep_plots as sweep_plots

    stamps = pd.to_datetime(pd.read_csv(BUNDLED_AZURE, nrows=200)["TIMESTAMP"])
    own = 200 / (stamps.iloc[-1] - stamps.iloc[0]).total_seconds()
    spec = _spec(tmp_path, mode="pd", workload={"trace": str(BUNDLED_AZURE), "limit": 200},
                 axes={"workload.rate_scale": [1, 4]})
    figures = []
    monkeypatch.setattr(sweep_plots, "save", lambda fig, path: figures.append(fig) or path)
    out = tmp_path / "r.csv"
    status, stdout, err = run_cli("--sweep", spec, "--preset", "smoke", "--jobs", "1", "--report-csv", out,
                                  "--plot-dir", tmp_path / "plots")
    assert status == 0, err
    rows = _rows(out)
    assert list(rows[0])[:3] == ["name", "workload.rate_scale", "offered_rps"]
    assert [float(r["offered_rps"]) for r in rows] == pytest.approx([own, 4 * own], rel=1e-9)
    header, one, four = stdout.splitlines()[:3]
    assert header.split()[:2] == ["workload.rate_scale", "offered_rps"] and float(four.split()[1]) == pytest.approx(4 * own, rel=1e-3)
    notes = [line for line in stdout.splitlines() if "no block of this workload repeats" in line]
    assert notes == [notes[0]] and notes[0].startswith("! every point: ") and "(block ids: unique)" in notes[0]
    page = tmp_path / "r.html"
    assert run_cli("--sweep", spec, "--preset", "smoke", "--jobs", "1", "--no-plot", "--html", page)[0] == 0
    said = notes[0][len("! every point: "):]
    assert f"<li><b>every point</b>: {html.escape(said)}</li>" in page.read_text()
    tops = [child for fig in figures for ax in fig.axes for child in ax.child_axes]
    assert tops and all(t.get_xlabel() == "offered load (requests/s)" for t in tops)
    for top in tops:  # the top axis spans the bottom's scales in requests/s
        top.figure.canvas.draw()
        assert top.get_xlim() == pytest.approx([own * x for x in top.axes.get_xlim()], rel=1e-9)


def test_a_sweep_whose_blocks_repeat_has_no_no_repeat_note(run_cli, tmp_path):
    """A multi-turn workload shares its conversations' prefixes: its hit ratios mean something, and no note says
    otherwise; a sweep without a rate axis has no offered_rps column."""
    spec = _spec(tmp_path, mode="single", workload=TINY_SYNTHETIC, axes={"serving.num_gpu_blocks": [400, 4000]})
    out = tmp_path / "r.csv"
    status, stdout, err = run_cli("--sweep", spec, "--preset", "smoke", "--jobs", "1", "--report-csv", out, "--no-plot")
    assert status == 0, err
    assert "repeats" not in stdout and "offered_rps" not in stdout and "offered_rps" not in _rows(out)[0]
    assert all(float(r["hit_ratio"]) > 0 for r in _rows(out))


def test_the_summary_table_is_headed_by_the_keys_that_name_its_points(run_cli, tmp_path):
    """A point is named by its values in axis order, then zip groups ('25/1/3'): the table's first column is headed
    by those keys, as the CSV's columns are (it said 'point')."""
    spec = _spec(tmp_path, mode="cache-only", workload=TINY_SYNTHETIC, axes={"cache.capacity_blocks": [100, 200]},
                 zip=[{"cache.policy": ["lru", "fifo"], "seed": [1, 2]}])
    status, stdout, err = run_cli("--sweep", spec, "--jobs", "1", "--no-plot")
    assert status == 0, err
    lines = stdout.splitlines()
    assert lines[0].split()[:2] == ["cache.capacity_blocks/cache.policy/seed", "hit_ratio"], stdout
    names = [f"{c}/{p}/{s}" for c in (100, 200) for p, s in (("lru", 1), ("fifo", 2))]
    assert [line.split()[0] for line in lines[1:5]] == names, stdout
