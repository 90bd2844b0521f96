"""Serving metrics by hand: TPOT, SLO attainment (no target never passes), goodput; reports and CSV."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from sim.config import SLOConfig
from sim.report.metrics import RequestRecord, serving_metrics, slo_pass
from tests.conftest import BUNDLED_AZURE


def _record(i, arrival, first, last, out, scheduled=None):
    r = RequestRecord(i, arrival, 100, out)
    r.scheduled = arrival if scheduled is None else scheduled
    r.prefill_done = r.first_token = first
    r.last_token = last
    return r


RECORDS = [
    _record(0, 0.0, 0.1, 1.1, 11),  # TTFT 0.1, TPOT 0.1
    _record(1, 1.0, 1.5, 2.5, 5),  # TTFT 0.5, TPOT 0.25
    _record(2, 2.0, 2.2, 2.2, 1),  # TTFT 0.2, no TPOT (one token)
]


def test_no_target_means_no_slo_metrics():
    assert slo_pass(RECORDS, SLOConfig()) is None
    metrics = serving_metrics(RECORDS, np.array([0.1]), SLOConfig())
    assert "slo_attainment" not in metrics and "goodput_rps" not in metrics


def test_slo_attainment_and_goodput_by_hand():
    ok = slo_pass(RECORDS, SLOConfig(ttft_s=0.3, tpot_s=0.2))
    assert ok.tolist() == [True, False, True]  # #1 misses both; #2 has no TPOT and passes on TTFT
    metrics = serving_metrics(RECORDS, np.array([0.1]), SLOConfig(ttft_s=0.3, tpot_s=0.2))
    assert metrics["slo_attainment"] == pytest.approx(2 / 3)
    assert metrics["goodput_rps"] == pytest.approx(2 / 2.5)  # 2 good requests over a 2.5 s makespan
    assert metrics["tpot_s"]["mean"] == pytest.approx((0.1 + 0.25) / 2)  # single-token request excluded
    assert metrics["throughput_tokens_per_s"] == pytest.approx(17 / 2.5)
    assert math.isclose(sum(metrics["ttft_breakdown_s"].values()), metrics["ttft_s"]["mean"])


def _run(run_cli, tmp_path, name, *extra):
    out = tmp_path / f"{name}.json"
    argv = ["--pd", "--preset", "smoke", "--workload-trace", BUNDLED_AZURE, "--set", "workload.limit=300",
            "--set", "slo.ttft_s=0.05", "--report-json", out, "--no-plot", "--quiet", *extra]
    assert run_cli(*argv)[0] == 0
    report = json.loads(out.read_text())
    report.pop("timing")
    return report


def test_serving_report_is_byte_identical_and_complete(run_cli, tmp_path):
    a = _run(run_cli, tmp_path, "a", "--requests-csv", tmp_path / "req.csv")
    b = _run(run_cli, tmp_path, "b")
    assert json.dumps(a) == json.dumps(b)
    m = a["runs"][0]["metrics"]
    assert a["mode"] == "pd"
    for key in ("requests_completed", "accesses", "hits", "hit_ratio", "tier_hit_ratio", "ttft_s", "tpot_s", "e2e_s",
                "ttft_breakdown_s", "throughput_tokens_per_s", "goodput_rps", "slo_attainment", "itl_s", "kv_transfer_s"):
        assert key in m, key
    assert set(m["ttft_s"]) == {"mean", "p50", "p90", "p99"}
    rows = list(csv.DictReader((tmp_path / "req.csv").read_text().splitlines()))
    assert len(rows) == 300 == m["requests_completed"]
    ttft = [float(r["ttft_s"]) for r in rows]
    assert np.mean(ttft) == pytest.approx(m["ttft_s"]["mean"])
    parts = ["queue_s", "kv_load_s", "prefill_s", "kv_transfer_s", "first_decode_s"]
    assert all(abs(sum(float(r[p]) for p in parts) - float(r["ttft_s"])) < 1e-9 for r in rows)


@pytest.mark.parametrize("knob", ["pd.transfer=layerwise", "network.bandwidth_gbps=25", "pd.num_decode=2",
                                  "compute.flops_efficiency=0.3", "hardware.gpu=a100-80gb", "serving.max_num_batched_tokens=512"])
def test_serving_knobs_change_the_result(run_cli, tmp_path, knob):
    base = _run(run_cli, tmp_path, "base")["runs"][0]["metrics"]
    changed = _run(run_cli, tmp_path, "changed", "--set", knob)["runs"][0]["metrics"]
    assert base["ttft_s"] != changed["ttft_s"], knob


def test_serving_runs_one_per_policy(run_cli, tmp_path):
    report = _run(run_cli, tmp_path, "policies", "--policy", "lru,s3fifo", "--set", "workload.synthetic.kind=rag")
    assert [r["name"] for r in report["runs"]] == ["pd-lru", "pd-s3fifo"]
    assert report["runs"][1]["overrides"] == {"cache.policy": "s3fifo"}
