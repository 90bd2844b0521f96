"""A sweep of learned-policy points on a process pool (``experiments.runner._context``): its model was loaded and
checked before the points ran, which starts LightGBM's OpenMP threads, and forked workers then hung for ever."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_a_learned_sweep_on_two_workers_finishes_with_the_serial_results(small_learned_model, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"mode": "cache-only", "set": {
        "cache.policy": "learned", "cache.learned_model": str(small_learned_model),
        "cache.allow_train_test_overlap": True, "serving.block_size": 512,
        "workload.synthetic.num_requests": 300}, "axes": {"cache.capacity_blocks": [100, 200]}}))
    rows = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}.csv"
        # (a hang is the failure: the timeout raises)
        done = subprocess.run([sys.executable, "main.py", "--sweep", str(spec), "--jobs", jobs, "--report-csv",
                               str(out), "--no-plot", "--quiet"], cwd=ROOT, capture_output=True, text=True,
                              timeout=180, check=False)
        assert done.returncode == 0, done.stderr
        rows[jobs] = out.read_text()
    assert rows["2"] == rows["1"] and len(rows["1"].splitlines()) == 3  # header and the two points
