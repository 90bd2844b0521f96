"""Serving metrics by hand: TPOT, SLO attainment (no target never passes), goodput; exact weighted
percentiles of token gaps; reports and CSV."""

from __future__ import annotations

import csv
import json
import math
from fractions import Fraction

import numpy as np
import pytest

from sim.config import SLOConfig
from sim.report.metrics import RequestTable, WeightedSamples, serving_metrics, slo_pass, weighted_distribution
from tests.conftest import BUNDLED_AZURE


def _table(rows):
    """Requests (arrival, first token, last token, output tokens), each scheduled on arrival."""
    arrival, first, last, out = (np.array(col) for col in zip(*rows, strict=True))
    table = RequestTable(arrival, np.full(len(rows), 100), out)
    table.scheduled[:] = arrival
    table.prefill_done[:] = table.first_token[:] = first
    table.last_token[:] = last
    return table


REQUESTS = _table([
    (0.0, 0.1, 1.1, 11),  # TTFT 0.1, TPOT 0.1
    (1.0, 1.5, 2.5, 5),  # TTFT 0.5, TPOT 0.25
    (2.0, 2.2, 2.2, 1),  # TTFT 0.2, no TPOT (one token)
])


def _gaps(*values) -> WeightedSamples:
    gaps = WeightedSamples()
    for v in values:
        gaps.add(v)
    return gaps


def test_no_target_means_no_slo_metrics():
    assert slo_pass(REQUESTS, SLOConfig()) is None
    metrics = serving_metrics(REQUESTS, _gaps(0.1), SLOConfig())
    assert "slo_attainment" not in metrics and "goodput_rps" not in metrics


def test_slo_attainment_and_goodput_by_hand():
    ok = slo_pass(REQUESTS, SLOConfig(ttft_s=0.3, tpot_s=0.2))
    assert ok.tolist() == [True, False, True]  # #1 misses both; #2 has no TPOT and passes on TTFT
    metrics = serving_metrics(REQUESTS, _gaps(0.1), SLOConfig(ttft_s=0.3, tpot_s=0.2))
    assert metrics["slo_attainment"] == pytest.approx(2 / 3)
    assert metrics["goodput_rps"] == pytest.approx(2 / 2.5)  # 2 good requests over a 2.5 s makespan
    assert metrics["tpot_s"]["mean"] == pytest.approx((0.1 + 0.25) / 2)  # single-token request excluded
    assert metrics["throughput_tokens_per_s"] == pytest.approx(17 / 2.5)
    assert math.isclose(sum(metrics["ttft_breakdown_s"].values()), metrics["ttft_s"]["mean"])


def test_a_request_exactly_at_its_targets_meets_them():
    """An SLO target is a bound met at equality (TTFT <= ttft_s, TPOT <= tpot_s), as vLLM's benchmark_serving.py
    counts goodput (calculate_metrics: a request is good where every slo >= its metric). Binary fractions, so the
    equality is exact: TTFT 0.25 s and TPOT 1.0 / 4 = 0.25 s meet targets of 0.25 s; a TTFT or TPOT of 0.5 s does
    not."""
    table = _table([(0.0, 0.25, 1.25, 5), (1.0, 1.5, 2.5, 5), (2.0, 2.25, 4.25, 5)])
    assert slo_pass(table, SLOConfig(ttft_s=0.25, tpot_s=0.25)).tolist() == [True, False, False]
    assert slo_pass(table, SLOConfig(ttft_s=0.25)).tolist() == [True, False, True]


def test_a_clusters_fetch_is_kv_load_time_not_queueing():
    """A cluster's fetch before scheduling (loading a prefix from another location) counts as kv_load, not as
    queueing, and the parts still sum to the TTFT. By hand (binary fractions, exact): arrival 0, fetch 0.25 s,
    scheduled at 1, a 0.125 s load in its first step, prefill done at 1.5, first token at 1.75: queue 0.75,
    kv_load 0.375, prefill 0.375, first decode 0.25."""
    table = _table([(0.0, 1.75, 2.75, 5)])
    table.scheduled[:], table.fetch[:], table.kv_load[:], table.prefill_done[:] = 1.0, 0.25, 0.125, 1.5
    parts = {k: float(v[0]) for k, v in table.breakdown().items()}
    assert parts == {"queue": 0.75, "kv_load": 0.375, "prefill": 0.375, "kv_transfer": 0.0, "first_decode": 0.25}
    assert sum(parts.values()) == float(table.ttft[0])


def test_weighted_percentiles_equal_numpy_on_the_expanded_sample():
    """Gaps with multiplicities give exactly numpy's linear percentiles of every token's gap,
    whether added one by one or as decode windows, and merged across compactions."""
    rng = np.random.default_rng(3)
    for trial in range(40):
        distinct = rng.choice([1, 2, 5, 50], p=[0.1, 0.2, 0.3, 0.4])
        values = np.round(rng.exponential(0.01, distinct), int(rng.integers(3, 12)))
        gaps = WeightedSamples(compact_at=int(rng.integers(1, 8)))  # merge early and often
        expanded = [values[0]]
        gaps.add(float(values[0]))
        i = 1
        while i < distinct:
            if rng.random() < 0.3:  # one value, one or more tokens
                count = int(rng.integers(1, 4))
                gaps.add(float(values[i]), count)
                expanded += [values[i]] * count
                i += 1
                continue
            run = values[i:i + int(rng.integers(1, 6))]
            count, first = int(rng.integers(0, 4)), int(rng.integers(0, 4))
            gaps.add_steps(np.concatenate([run, [9.0]]), len(run), count, first)  # steps past the window: unused
            expanded += [run[0]] * first + [v for v in run[1:] for _ in range(count)]
            i += len(run)
        got = gaps.distribution()
        assert [got[f"p{p}"] for p in (50, 90, 99)] == np.percentile(expanded, (50, 90, 99)).tolist(), trial
        assert got["mean"] == pytest.approx(np.mean(expanded), rel=1e-12)
    assert math.isnan(weighted_distribution(np.array([1.0]), np.array([0]))["p50"])  # no tokens: no gap


def test_weighted_mean_is_correctly_rounded_whatever_the_summation_order():
    # A report's mean token gap must not depend on the machine: summed through BLAS (np.dot) it took the order of
    # the BLAS threads (the core count; a Ray worker runs one) and one sweep's itl_s.mean differed in its last digit
    # between --backend local and --backend ray. Correct rounding fixes the answer: by hand, (-1e16 + 1 + 1e16) / 3
    # is 1/3, which any left-to-right float sum loses (-1e16 + 1 rounds back to -1e16). The mean is the sum of the
    # products, rounded once, over the count (IEEE division rounds once more).
    got = weighted_distribution(np.array([-1e16, 1.0, 1e16]), np.array([1, 1, 1]))["mean"]
    assert got == 1 / 3
    rng = np.random.default_rng(3)
    values = np.sort(rng.lognormal(-5, 2, 200_000))
    counts = rng.integers(1, 1000, len(values))
    exact_sum = sum((Fraction(v * c) for v, c in zip(values.tolist(), counts.tolist())), Fraction(0))  # each v x c
    assert weighted_distribution(values, counts)["mean"] == float(exact_sum) / int(counts.sum())  # rounded once


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
                                  "compute.flops_efficiency=0.3", "hardware.gpu=a100-80gb", "serving.max_num_batched_tokens=1024"])
def test_serving_knobs_change_the_result(run_cli, tmp_path, knob):
    base = _run(run_cli, tmp_path, "base")["runs"][0]["metrics"]
    changed = _run(run_cli, tmp_path, "changed", "--set", knob)["runs"][0]["metrics"]
    assert base["ttft_s"] != changed["ttft_s"], knob


def test_serving_runs_one_per_policy(run_cli, tmp_path):
    report = _run(run_cli, tmp_path, "policies", "--policy", "lru,s3fifo")
    assert [r["name"] for r in report["runs"]] == ["lru", "s3fifo"]
    assert report["runs"][1]["overrides"] == {"cache.policy": "s3fifo"}


@pytest.mark.parametrize("empty_first", [True, False])
def test_a_window_of_no_steps_adds_no_gap(empty_first):
    # a window's first step counts its first_count tokens, the rest count each: 2.0 once, 3.0 four times; a chunk of
    # no steps adds nothing, wherever it comes (its first-step slot is not the next chunk's, nor past the end)
    gaps = WeightedSamples()
    chunks = [(np.array([1.0]), 0, 5, 5), (np.array([2.0, 3.0]), 2, 4, 1)]
    for chunk in (chunks if empty_first else chunks[::-1]):
        gaps.add_steps(*chunk)
    values, counts = gaps.sorted()
    assert dict(zip(values.tolist(), counts.tolist(), strict=True)) == {2.0: 1, 3.0: 4}
