"""Sweep backends: the local pool at any job count and Ray give the reports a serial run gives; --jobs is bounded
(four a CPU) and refused where a Ray cluster decides; RAY_ADDRESS names the cluster as --ray-address does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_sweep import TINY_SYNTHETIC, _spec


def test_backends_and_job_counts_give_identical_reports(run_cli, tmp_path):
    spec = _spec(tmp_path, mode="cache-only", workload=TINY_SYNTHETIC,
                 axes={"cache.policy": ["lru", "sieve"], "cache.capacity_blocks": [300, 3000]})
    outputs = {}
    for label, flags in (("serial", ["--jobs", "1"]), ("pool", ["--jobs", "2"])):
        out = tmp_path / label
        assert run_cli("--sweep", spec, *flags, "--report-csv", f"{out}.csv", "--report-json", f"{out}.json",
                       "--no-plot", "--quiet")[0] == 0
        report = json.loads(Path(f"{out}.json").read_text())
        report.pop("timing")
        outputs[label] = (Path(f"{out}.csv").read_text(), json.dumps(report))
    assert outputs["serial"] == outputs["pool"]


def test_ray_backend_gives_the_same_csv_as_the_pool(tmp_path):
    pytest.importorskip("ray", reason="Ray is optional (pip install -e '.[ray]'); CI does not install it")
    spec = _spec(tmp_path, mode="cache-only", workload=TINY_SYNTHETIC,
                 axes={"cache.policy": ["lru", "arc"], "cache.capacity_blocks": [300, 3000]})
    csvs = {}
    for label, flags in (("pool", ["--jobs", "2"]), ("ray", ["--backend", "ray", "--jobs", "2"])):
        out = tmp_path / f"{label}.csv"
        done = subprocess.run([sys.executable, "main.py", "--sweep", spec, *flags, "--report-csv", str(out),
                               "--no-plot", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        csvs[label] = out.read_text()
    assert csvs["ray"] == csvs["pool"]


def test_jobs_beyond_four_per_cpu_are_refused_before_any_point(run_cli, tmp_path, monkeypatch):
    """On 2 CPUs at most 8 jobs: --jobs 99999999999 was accepted (a pool of min(jobs, points) workers, a local Ray
    told of that many CPUs); 8 runs."""
    import experiments.runner

    monkeypatch.setattr(experiments.runner, "default_jobs", lambda: 2)
    spec = _spec(tmp_path, mode="cache-only", workload=TINY_SYNTHETIC, axes={"cache.policy": ["lru", "fifo"]})
    argv = ["--sweep", spec, "--no-plot", "--quiet", "--report-json", str(tmp_path / "r.json")]
    status, out, err = run_cli(*argv, "--jobs", "99999999999")
    assert status == 2 and "Traceback" not in out + err and "--jobs 99,999,999,999 is more than 8" in err, err
    assert not (tmp_path / "r.journal.jsonl").exists()  # refused before the sweep began
    assert run_cli(*argv, "--jobs", "8")[0] == 0


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_jobs_with_a_ray_cluster_is_refused(run_cli, tmp_path, monkeypatch, how):
    """A running Ray cluster (--ray-address, or RAY_ADDRESS in the environment, which ray.init connects to when given
    no address) decides how many points run at once: --jobs beside it did nothing (accepted silently), and with
    RAY_ADDRESS alone ray.init(num_cpus=--jobs) fails when connecting. Refused before Ray is needed (not installed
    here) or any point runs; RAY_ADDRESS without --backend ray is the local pool's business and left alone."""
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # (as if not installed: the refusal comes first anyway)
    spec = _spec(tmp_path, mode="cache-only", workload=TINY_SYNTHETIC, axes={"cache.policy": ["lru", "fifo"]})
    argv = ["--sweep", spec, "--no-plot", "--quiet", "--report-json", str(tmp_path / "r.json"), "--backend", "ray",
            "--jobs", "2"]
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if how == "flag":
        argv += ["--ray-address", "10.0.0.1:6379"]
        said = "--ray-address '10.0.0.1:6379'"
    else:
        monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
        said = "RAY_ADDRESS='10.0.0.1:6379' in the environment"
    status, out, err = run_cli(*argv)
    assert status == 2 and "Traceback" not in out + err, err
    assert err.strip() == (f"kvsim: error: --jobs does nothing with {said}: the Ray cluster's CPUs decide how many "
                           "points run at once; drop --jobs"), err
    assert not (tmp_path / "r.journal.jsonl").exists()
    if how == "environment":  # the local pool never asks Ray
        assert run_cli(*argv[:-4], "--jobs", "1")[0] == 0


def test_ray_connects_to_the_environments_cluster_without_num_cpus(monkeypatch):
    """RAY_ADDRESS in the environment is the cluster run_ray connects to, as --ray-address's: ray.init gets the address
    (and this checkout as the working directory), never num_cpus, which Ray refuses when connecting."""
    import sys
    import types

    from experiments.runner import ray_address, run_ray

    calls = []
    fake = types.SimpleNamespace(is_initialized=lambda: False, init=lambda **kw: calls.append(kw),
                                 shutdown=lambda: None, remote=lambda **kw: None)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr("experiments.runner.check_ray_installed", lambda: None)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert ray_address(None) == "10.0.0.1:6379" and ray_address("h:1") == "h:1"
    with pytest.raises(TypeError):  # (the fake's remote() returns None: the init is what is checked)
        run_ray([object()], 4, None, lambda record: None)
    assert calls and calls[0]["address"] == "10.0.0.1:6379" and "num_cpus" not in calls[0]
    for local in ("", "local"):  # no cluster named: a Ray started here, of --jobs CPUs
        monkeypatch.setenv("RAY_ADDRESS", local)
        assert ray_address(None) is None
