"""--seeds N: Student-t 95% intervals (table checked against scipy), means over seeds, intervals that cover."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from experiments.confidence import aggregate, aggregate_trace, interval, t_critical
from sim.report.document import RunResult
from tests.conftest import BUNDLED_AZURE

SMALL = ["--set", "workload.synthetic.num_requests=150", "--set", "workload.synthetic.input_tokens_mean=200"]
SMALL_BY_KIND = {"agentic": ["--set", "workload.synthetic.num_sessions=30"],
                 "rag": ["--set", "workload.synthetic.num_documents=60"]}  # the keys only that kind reads


# t(0.975, df) in closed form: 1 degree of freedom is the Cauchy distribution, tan(pi (p - 1/2)); for 2,
# (2p - 1) / sqrt(2 p (1 - p)) (the t distribution function for 2 df is 1/2 + t / (2 sqrt(2 + t^2))). The NIST
# table's 12.706 and 4.303, exact.
T_975_1 = math.tan(math.pi * 0.475)
T_975_2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)


def _t_cdf_3(t: float) -> float:
    """The t distribution function for 3 degrees of freedom, in closed form (1/2 + (x / (1 + x^2) + atan x) / pi,
    x = t / sqrt 3)."""
    x = t / math.sqrt(3)
    return 0.5 + (x / (1 + x * x) + math.atan(x)) / math.pi


def test_t_critical_is_the_975_quantile():
    """Exact, where the printed table it replaced had 3 decimals and interpolated between its rows (up to 2.3e-4 off
    at 26 degrees of freedom): the closed forms at 1-3 degrees of freedom, and the distribution function at every
    count of seeds up to 300 (scipy.stats' own, beside the inverse the code calls)."""
    assert t_critical(1) == pytest.approx(T_975_1, rel=1e-12) and t_critical(2) == pytest.approx(T_975_2, rel=1e-12)
    assert _t_cdf_3(t_critical(3)) == pytest.approx(0.975, abs=1e-13)
    stats = pytest.importorskip("scipy.stats")
    for df in range(1, 301):
        assert stats.t.cdf(t_critical(df), df) == pytest.approx(0.975, abs=1e-12), df
    assert 1.959964 < t_critical(999) < 1.959964 * 1.002  # near the normal limit (MAX_SEEDS' comment: 0.12% above)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_critical(0)


def test_interval_by_hand():
    mean, (lo, hi) = interval([1.0, 2.0, 3.0, 6.0])
    sd = math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 3)
    t3 = 3.182446305284263  # t(0.975, 3) (the table's 3.182): the closed form's distribution function is 0.975 there
    assert _t_cdf_3(t3) == pytest.approx(0.975, abs=1e-13)
    assert mean == 3.0
    assert (lo, hi) == pytest.approx((3 - t3 * sd / 2, 3 + t3 * sd / 2), rel=1e-12)


def test_aggregate_keeps_shape_names_and_constant_integers():
    runs = [RunResult("lru", {"hits": h, "requests_completed": 10, "ttft_s": {"p99": p}, "prefix_cache": "on"},
                      per_request={"ttft_s": np.array([p])}) for h, p in ((3, 0.5), (5, 0.7))]
    out = aggregate(runs)
    assert out.metrics == {"hits": 4.0, "requests_completed": 10, "ttft_s": {"p99": pytest.approx(0.6)},
                           "prefix_cache": "on"}
    assert isinstance(out.metrics["requests_completed"], int)
    assert set(out.metrics_ci95) == {"hits", "requests_completed", "ttft_s.p99"}
    assert out.metrics_ci95["requests_completed"] == [10.0, 10.0]
    assert out.per_request["ttft_s"].tolist() == [0.5, 0.7]  # pooled for the CDF plots


def _seeded(run_cli, tmp_path, kind: str, seeds: int, *mode: str) -> dict:
    out = tmp_path / f"{kind}-{seeds}.json"
    status, _, err = run_cli(*mode, "--set", f"workload.synthetic.kind={kind}", *SMALL, *SMALL_BY_KIND.get(kind, []), "--seeds", str(seeds),
                             "--report-json", out, "--no-plot", "--quiet")
    assert status == 0, err
    return json.loads(out.read_text())["runs"][0]


@pytest.mark.parametrize("kind", ["multi-turn", "system-prompt", "rag", "agentic"])
def test_five_seed_intervals_contain_the_twenty_seed_mean(run_cli, tmp_path, kind):
    mode = ["--cache-only", "--capacity-blocks", "800"]
    five, twenty = _seeded(run_cli, tmp_path, kind, 5, *mode), _seeded(run_cli, tmp_path, kind, 20, *mode)
    for metric in ("hit_ratio", "token_hit_ratio"):
        lo, hi = five["metrics_ci95"][metric]
        assert lo < hi, metric  # the workload really is stochastic
        assert lo <= twenty["metrics"][metric] <= hi, (metric, lo, hi, twenty["metrics"][metric])


def test_serving_latency_intervals_contain_the_twenty_seed_mean(run_cli, tmp_path):
    mode = ["--set", "serving.num_instances=1", "--set", "workload.synthetic.rate_rps=8"]
    five, twenty = _seeded(run_cli, tmp_path, "multi-turn", 5, *mode), _seeded(run_cli, tmp_path, "multi-turn", 20, *mode)
    misses = []
    for metric in ("ttft_s.mean", "e2e_s.p50", "hit_ratio"):
        lo, hi = five["metrics_ci95"][metric]
        assert lo < hi, metric  # the workload really is stochastic
        head, *rest = metric.split(".")
        value = twenty["metrics"][head][rest[0]] if rest else twenty["metrics"][head]
        if not lo < value < hi:
            misses.append((metric, lo, hi, value))
    # each 95% interval misses with chance ~5% (the twenty-seed mean stands in for the true one), so all three hold
    # only ~86% of the time; two misses of three: ~0.7%
    assert len(misses) <= 1, misses
    assert five["metrics"]["requests_completed"] == 150  # the same in every seed: still an integer


def test_intervals_are_held_to_the_values_a_metric_can_take():
    """Three seeds with a wide spread: the symmetric t interval reaches below 0 for a latency and above 1 for a hit
    ratio; both are clipped (a latency cannot be negative, a ratio exceed 1). By hand: values {0, 0, 0.3} have mean
    0.1 and sd sqrt(((0.1)^2 + (0.1)^2 + (0.2)^2) / 2) = sqrt(0.03), so h = t(0.975, 2) x sqrt(0.03) / sqrt(3) =
    4.3027 x 0.1 = 0.43027: [-0.33027, 0.53027] -> [0, 0.53027]; the hit ratio {1, 1, 0.7} (mean 0.9, the same sd):
    [0.46973, 1.33027] -> [0.46973, 1]. A metric with a negative sample ({-1, 0, 1}: sd 1, h = 4.3027 / sqrt(3)) is
    signed and keeps its interval."""
    runs = [RunResult("lru", {"ttft_s": {"p99": p}, "hit_ratio": r, "tier_hit_ratio": {"hbm": r}, "gap": g})
            for p, r, g in ((0.0, 1.0, -1.0), (0.0, 1.0, 0.0), (0.3, 0.7, 1.0))]
    ci = aggregate(runs).metrics_ci95
    h = T_975_2 * 0.1
    assert ci["ttft_s.p99"] == pytest.approx([0.0, 0.1 + h])
    assert ci["hit_ratio"] == pytest.approx([0.9 - h, 1.0])
    assert ci["tier_hit_ratio.hbm"] == pytest.approx([0.9 - h, 1.0])
    assert ci["gap"] == pytest.approx([-T_975_2 / math.sqrt(3), T_975_2 / math.sqrt(3)])
    # a ratio-named metric with a sample above 1 is no fraction of a whole: its interval keeps its top, so the mean
    # (1.1 here) stays inside it
    from experiments.confidence import clipped

    assert clipped("tier_hit_ratio.hbm", [0.9, 1.3], [0.5, 1.7]) == [0.5, 1.7]


def test_cluster_pd_seeds_and_max_rate_keep_the_pd_pools(run_cli, tmp_path):
    """--cluster --pd with --seeds (or --max-rate) ran each seed, or each rate probe, as a cluster run without PD pools
    (the experiments' runner dropped --pd): every instance 'unified'. Each keeps its prefill and decode pools, and the
    two-seed mean is the mean of the two seeds' own --cluster --pd runs."""
    common = ["--cluster", "--pd", "--set", "cluster.num_racks=2", "--set", "cluster.nodes_per_rack=1", "--set",
              "hardware.gpus_per_node=2", "--set", "workload.arrivals.process=poisson", "--workload-trace",
              str(BUNDLED_AZURE), "--workload-limit", "60", "--no-plot", "--quiet"]

    def run(*extra: str) -> dict:
        out = tmp_path / f"{len(list(tmp_path.iterdir()))}.json"
        status, _, err = run_cli(*common, *extra, "--report-json", out)
        assert status == 0, err
        return json.loads(out.read_text())["runs"][0]["metrics"]

    seeds, one, two = run("--seeds", "2"), run("--seed", "0"), run("--seed", "1")
    for metrics in (seeds, one, two):
        assert {e["role"] for e in metrics["instances"]["each"]} == {"prefill", "decode"}
    assert seeds["ttft_s"]["mean"] == pytest.approx((one["ttft_s"]["mean"] + two["ttft_s"]["mean"]) / 2, rel=1e-12)
    searched = run("--max-rate", "--set", "slo.ttft_s=0.5")
    assert {e["role"] for e in searched["instances"]["each"]} == {"prefill", "decode"}


def test_a_fraction_anywhere_in_the_report_is_held_to_one():
    """README Confidence: a fraction of a whole's upper bound is not above 1 — also a --max-rate bracket's
    slo_attainment (the brackets' attainments of `--max-rate --seeds 2` reached 1.07) and a rack's EIC occupancy,
    not only the top-level names. By hand, as above: {1, 1, 0.7} gives [0.9 - 0.43027, 1.33027] -> [0.46973, 1]."""
    runs = [RunResult("lru", {"max_rate_search": {"meets": {"slo_attainment": r}, "fails": {"slo_attainment": r}},
                              "cluster": {"eic_occupancy": {"mean": r, "max": r}}}) for r in (1.0, 1.0, 0.7)]
    ci = aggregate(runs).metrics_ci95
    for name in ("max_rate_search.meets.slo_attainment", "max_rate_search.fails.slo_attainment",
                 "cluster.eic_occupancy.mean", "cluster.eic_occupancy.max"):
        assert ci[name] == pytest.approx([0.9 - T_975_2 * 0.1, 1.0]), name


@pytest.mark.parametrize("undefined", [math.nan, None])
def test_a_metric_undefined_in_one_seed_is_undefined_whatever_the_seeds_order(undefined):
    # one seed's requests all had one output token (no TPOT: NaN), or a search found no rate (None): the mean over the
    # seeds is undefined, and no interval is made; before, the first seed's value was reported as the mean, so the
    # aggregate of [0.5, x] said 0.5 and that of [x, 0.5] said x
    runs = [RunResult(name="lru", metrics={"tpot_s": {"mean": v}, "hits": 3}) for v in (0.5, undefined)]
    forward, backward = aggregate(runs), aggregate(runs[::-1])
    for result in (forward, backward):
        value = result.metrics["tpot_s"]["mean"]
        assert value is None if undefined is None else math.isnan(value)
        assert "tpot_s.mean" not in result.metrics_ci95
        assert result.metrics["hits"] == 3
    infinite = [RunResult(name="lru", metrics={"share": v}) for v in (0.5, math.inf)]
    assert aggregate(infinite).metrics["share"] == aggregate(infinite[::-1]).metrics["share"] == math.inf


def test_a_bracket_one_seed_did_not_find_is_undefined_whatever_the_seeds_order():
    """--max-rate --seeds 3 where seed 2 met no rate (its search's meets bracket None): the mean bracket is undefined,
    null as a whole, as when the first seed is the one without it. Before, a later seed without it gave the first
    seed's shape with every leaf null (a bracket of no rate at no attainment)."""
    bracket = {"rate_scale": 0.5, "slo_attainment": 0.95, "ttft_s": {"mean": 0.2}}
    runs = [RunResult(name="lru", metrics={"max_rate_search": {"meets": m, "fails": {"rate_scale": 1.0}}})
            for m in (bracket, bracket, None)]
    for order in (runs, runs[::-1]):
        search = aggregate(order).metrics["max_rate_search"]
        assert search["meets"] is None, search
        assert search["fails"] == {"rate_scale": 1.0}


def test_an_override_the_seeds_ran_at_different_values_of_is_their_mean():
    # --max-rate --seeds: each seed's search ends at its own rate scale, which its run's overrides carry; over the seeds
    # the run's override is the mean, the scale the mean max_rate_scale reports (was the first seed's: 2 beside 3)
    runs = [RunResult(name="single", metrics={"max_rate_scale": scale},
                      overrides={"workload.rate_scale": scale, "cache.policy": "lru"}) for scale in (2.0, 4.0, 3.0)]
    merged = aggregate(runs)
    assert merged.overrides == {"workload.rate_scale": 3.0, "cache.policy": "lru"}
    assert merged.metrics["max_rate_scale"] == 3.0


def _searched(scale: float, note: str | None = None, steady: bool = True) -> RunResult:
    """A --max-rate run as experiments.maxrate.max_rate_run reports one: its caveats only where they apply."""
    search = {"target_attainment": 0.9, "steps": [[1.0, 0.5]], **({"note": note} if note else {}),
              **({} if steady else {"steady_state": False})}
    return RunResult(name="single", metrics={"max_rate_scale": scale, "max_rate_search": search})


def test_every_seeds_max_rate_caveat_is_kept():
    # --max-rate --seeds 3 on the smoke preset's 150 synthetic requests (slo.ttft_s 0.3, one instance): seed 1's search
    # met no rate (max_rate_scale 0, its note says so) and the mean 0.196 was reported with no note at all, the first
    # seed's (none) standing for every seed's; a burst only a later seed answered lost its steady_state too
    none_met = "no rate tried meets the target: it is missed even at the lowest load tried"
    merged = aggregate([_searched(0.54), _searched(0.0, none_met), _searched(0.05, "a burst", steady=False)],
                       seeds=[7, 8, 9])
    search = merged.metrics["max_rate_search"]
    assert search["note"] == f"seed 8: {none_met}; seed 9: a burst"
    assert search["steady_state"] is False
    assert merged.metrics["max_rate_scale"] == pytest.approx((0.54 + 0.0 + 0.05) / 3)
    steady = aggregate([_searched(0.5), _searched(0.6)]).metrics["max_rate_search"]
    assert "note" not in steady and "steady_state" not in steady
    first_only = aggregate([_searched(0.5, "a burst", steady=False), _searched(0.6)]).metrics["max_rate_search"]
    assert first_only["note"] == "seed 0: a burst" and first_only["steady_state"] is False


def test_a_count_a_seed_did_not_see_is_zero_there_whatever_the_seeds_order():
    """A router counts a decision's reason only once it occurs: seeds {a: 3} and {a: 1, b: 2} mean a (3 + 1) / 2 = 2
    and b (0 + 2) / 2 = 1. Before, b was dropped (first seed without it) or null (a later seed without it). b's
    interval by hand: {0, 2} has sd sqrt(2), h = t(0.975, 1) x sqrt(2) / sqrt(2) = 12.7062: [1 - 12.7062, 13.7062],
    held at 0 below."""
    runs = [RunResult("prefix-aware", {"cluster": {"router": {"name": "prefix-aware", "decisions": d}}})
            for d in ({"a": 3}, {"a": 1, "b": 2})]
    for order in (runs, runs[::-1]):
        merged = aggregate(order)
        assert merged.metrics["cluster"]["router"] == {"name": "prefix-aware", "decisions": {"a": 2.0, "b": 1.0}}
        assert merged.metrics_ci95["cluster.router.decisions.b"] == pytest.approx([0.0, 1 + T_975_1])
    # the same inside a --max-rate run's metrics, and the trace section's skips by reason (rows: means as well)
    traces = [{"format": "synthetic:multi-turn", "rows_read": 18, "rows_used": 2, "rows_skipped": 16,
               "skip_reasons": {"exceeds_kv_capacity": 16}},
              {"format": "synthetic:multi-turn", "rows_read": 18, "rows_used": 1, "rows_skipped": 17,
               "skip_reasons": {"exceeds_kv_capacity": 15, "exceeds_max_model_len": 2}, "inputs_truncated": 4}]
    for order in (traces, traces[::-1]):
        assert aggregate_trace(order) == {"format": "synthetic:multi-turn", "rows_read": 18, "rows_used": 1.5,
                                          "rows_skipped": 16.5, "inputs_truncated": 2.0,
                                          "skip_reasons": {"exceeds_kv_capacity": 15.5, "exceeds_max_model_len": 1.0}}


def test_a_ratio_one_seed_could_not_give_is_reported_only_where_every_seed_defines_it():
    """A rack no request reached has no hit ratio (0 / 0): its run omits it (sim/cluster/run.py). Seeds {0: 0.5,
    1: 0.25} and {0: 0.7}: rack 0's mean (0.5 + 0.7) / 2 = 0.6; rack 1's is undefined over the seeds and omitted, as the
    run omits it, in either order. Before, it was dropped or null by the seeds' order (the checker: 'is null')."""
    runs = [RunResult("lru", {"cluster": {"rack_hit_ratio": r}}) for r in ({"0": 0.5, "1": 0.25}, {"0": 0.7})]
    for order in (runs, runs[::-1]):
        merged = aggregate(order)
        assert merged.metrics["cluster"]["rack_hit_ratio"] == {"0": pytest.approx(0.6)}
        assert "cluster.rack_hit_ratio.1" not in merged.metrics_ci95


def _metric_runs(draw) -> list[RunResult]:
    """Two to five seeds' runs whose count and ratio dicts have keys that vary by seed."""
    from hypothesis import strategies as st

    n = draw(st.integers(2, 5))
    reasons, racks = ["prefix_hit", "least_loaded", "overloaded", "kv_aware"], [str(r) for r in range(12)]
    finite = st.floats(0, 1, allow_nan=False, width=32)
    runs = []
    for _ in range(n):
        decisions = {r: draw(st.integers(1, 50)) for r in sorted(draw(st.sets(st.sampled_from(reasons))))}
        rack_ids = sorted(draw(st.sets(st.sampled_from(racks))), key=int)
        runs.append(RunResult("prefix-aware", {
            "hit_ratio": draw(finite), "tpot_s": {"mean": draw(st.one_of(st.none(), finite))},
            "ttft_s": {"mean": draw(st.floats(1e-6, 1e3, allow_nan=False)), "p99": draw(finite)},
            "cluster": {"rack_hit_ratio": {r: draw(finite) for r in rack_ids},
                        "router": {"name": "prefix-aware", "decisions": decisions}},
            "prefix_cache": "on"}))
    return runs


def test_aggregating_seeds_in_any_order_gives_identical_metrics():
    """A property: the metrics, their key order (the JSON report's bytes) and the intervals of --seeds do not depend on
    the order of the seeds' runs, whichever keys each seed's dicts have (the first run's shape was walked; float means
    summed in the runs' order)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=200, deadline=None)
    @given(st.data())
    def check(data):
        runs = _metric_runs(data.draw)
        order = data.draw(st.permutations(range(len(runs))))
        a, b = aggregate(runs), aggregate([runs[i] for i in order])
        assert json.dumps(a.metrics) == json.dumps(b.metrics)
        assert json.dumps(a.metrics_ci95, sort_keys=True) == json.dumps(b.metrics_ci95, sort_keys=True)
        # a count every seed lacks stays absent; one any seed has is there, 0 where a seed lacked it
        seen = {r for run in runs for r in run.metrics["cluster"]["router"]["decisions"]}
        assert set(a.metrics["cluster"]["router"]["decisions"]) == seen
        every = set.intersection(*(set(run.metrics["cluster"]["rack_hit_ratio"]) for run in runs))
        assert list(a.metrics["cluster"]["rack_hit_ratio"]) == sorted(every, key=int)

    check()


def test_cluster_seeds_report_passes_the_checker(run_cli, tmp_path):
    """The brief's case: 18 multi-turn requests on two racks; seed 1 (of 0..2) routes no request to rack 1, whose hit
    ratio was null in the mean, and the trace section was seed 0's alone (2 requests used beside a mean of 1.33
    completed). Both now hold the checker (tests/report_invariants.py)."""
    from tests.report_invariants import check_report

    out = tmp_path / "seeds.json"
    sets = {"model": "deepseek-v2-lite", "workload.synthetic.kind": "multi-turn",
            "workload.synthetic.input_tokens_mean": 1024, "workload.synthetic.output_tokens_mean": 8,
            "workload.synthetic.rate_rps": 50, "cache.tiers.dram.capacity_gib": 0.25,
            "cache.tiers.ssd.capacity_gib": 0.02, "cache.tiers.eic.capacity_gib": 0.02, "serving.num_gpu_blocks": 20,
            "serving.tensor_parallel_size": 4, "cluster.num_racks": 2, "cluster.nodes_per_rack": 2,
            "hardware.gpus_per_node": 8}
    argv = ["--cluster", "--preset", "smoke", "--workload-limit", "18", "--seeds", "3", "--report-json", out,
            "--no-plot", "--quiet"]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    status, _, err = run_cli(*argv)
    assert status == 0, err
    report = json.loads(out.read_text())
    assert check_report(report) == []
    assert report["trace"]["rows_used"] == report["runs"][0]["metrics"]["requests_completed"]


def test_the_terminal_says_the_trace_counts_are_means_over_the_seeds():
    # seeds that used 2 and 1 of 18 requests: 1.5 used, 16.5 skipped a seed on average (was seed 0's 2 and 16 alone)
    from sim.report.console import console_summary

    trace = {"path": None, "format": "synthetic:multi-turn", "rows_used": 1.5, "rows_skipped": 16.5,
             "skip_reasons": {"exceeds_kv_capacity": 16.5}, "block_ids": "synthetic-sessions", "block_tokens": 16}
    text = console_summary({"trace": trace, "config": {"cache": {"tiers": {}}},
                            "runs": [{"name": "lru", "metrics": {}, "metrics_ci95": {}}]})
    assert "1.5000 requests used, 16.5000 skipped (exceeds_kv_capacity: 16.5000) (means over the seeds)" in text
