"""Metamorphic relations: pairs of whole runs whose results must relate in a way the definitions fix, so a
silently wrong result shows without an oracle. Each test says which definition (README, DESIGN, the code's
own contract) makes the relation hold by design, and so why a violation is a bug and not a model choice."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import BUNDLED_AZURE
from metamorphic_helpers import MOONCAKE
from metamorphic_helpers import checked_run as _run
from metamorphic_helpers import metrics_of as _metrics
from report_invariants import check_report

SMALL = ("--workload-trace", BUNDLED_AZURE, "--workload-limit", "40")


# ----------------------------------------------------------------------------- load and workload slicing


def test_rate_scale_divides_every_arrival_and_keeps_the_requests(run_cli, tmp_path):
    """README Load: ``--rate-scale X`` divides every inter-arrival time by X (trace/arrivals.py). So the k-scaled
    run's arrivals are the unscaled ones (from the first) over k, request by request, with the same lengths."""
    base, a = _run(run_cli, tmp_path, *SMALL, name="k1", requests=True)
    fast, b = _run(run_cli, tmp_path, *SMALL, "--rate-scale", "4", name="k4", requests=True)
    assert len(a) == len(b) == 40
    assert (a.input_tokens == b.input_tokens).all() and (a.output_tokens == b.output_tokens).all()
    np.testing.assert_allclose(b.arrival, (a.arrival - a.arrival[0]) / 4, rtol=1e-12, atol=0)
    assert _metrics(fast)["accesses"] == _metrics(base)["accesses"]


def test_range_halves_partition_the_valid_requests(run_cli, tmp_path):
    """README Reports: ``workload.range_start``/``range_end`` keep requests [first, last) of the valid ones
    (``trace.request_range``). Two adjacent halves are disjoint and cover the whole range: their request ranges
    meet, their rows used add up to the whole run's, and their requests are the whole run's in order."""
    limit = ("--workload-trace", BUNDLED_AZURE, "--workload-limit", "41")  # odd: the cut falls inside
    whole, w = _run(run_cli, tmp_path, *limit, name="whole", requests=True)
    low, lo = _run(run_cli, tmp_path, *limit, sets=("workload.range_end=0.5",), name="low", requests=True)
    high, hi = _run(run_cli, tmp_path, *limit, sets=("workload.range_start=0.5",), name="high", requests=True)
    (a, b), (c, d) = low["trace"]["request_range"], high["trace"]["request_range"]
    assert (a, d) == (0, 41) and b == c
    assert low["trace"]["rows_used"] + high["trace"]["rows_used"] == whole["trace"]["rows_used"] == 41
    assert list(lo.input_tokens) + list(hi.input_tokens) == list(w.input_tokens)
    assert list(lo.output_tokens) + list(hi.output_tokens) == list(w.output_tokens)


# ----------------------------------------------------------------------------- cache-only policy study



@pytest.fixture
def mooncake(shared_data):
    return ("--workload-trace", shared_data / MOONCAKE, "--workload-limit", "300")


def test_lru_and_belady_hits_grow_with_capacity_and_lru_equals_its_miss_ratio_curve(run_cli, tmp_path, mooncake):
    """LRU and Belady (MIN) are stack algorithms (Mattson et al. 1970): the content at capacity c is a subset of the
    content at c + 1, so hits never fall as the capacity grows. FIFO is not (Belady's anomaly) and is not checked.
    Belady is optimal (DESIGN: "Belady is exact"), so no policy beats it at any capacity; and ``--mrc`` is LRU's
    hit ratio at every capacity from one pass (README), so it equals the separate LRU runs (plain semantics)."""
    policies = "lru,fifo,lfu,arc,s3fifo,sieve,belady"
    caps = [1, 2, 7, 30, 120, 500]
    hits = {}
    for cap in caps:
        report, _ = _run(run_cli, tmp_path, "--cache-only", *mooncake, "--policy", policies,
                         "--capacity-blocks", str(cap), name=f"c{cap}")
        hits[cap] = {run["name"]: run["metrics"]["hits"] for run in report["runs"]}
        accesses = _metrics(report)["accesses"]
    for policy in ("lru", "belady"):
        series = [hits[c][policy] for c in caps]
        assert series == sorted(series), (policy, series)
    for cap in caps:
        assert max(hits[cap].values()) == hits[cap]["belady"], (cap, hits[cap])
    mrc, _ = _run(run_cli, tmp_path, "--mrc", *mooncake, name="mrc")
    curve = _metrics(mrc)["mrc"]
    by_cap = dict(zip(curve["capacity_blocks"], curve["hit_ratio"]))
    for cap in caps:
        # the curve's capacity grid may skip a capacity: then the nearest ones below and above bracket it
        below = max((c for c in by_cap if c <= cap), default=None)
        above = min((c for c in by_cap if c >= cap), default=None)
        ratio = hits[cap]["lru"] / accesses
        if below == cap:
            assert math.isclose(by_cap[cap], ratio, rel_tol=1e-12), (cap, by_cap[cap], ratio)
        else:
            assert (below is None or by_cap[below] <= ratio + 1e-12) and (above is None or ratio <= by_cap[above] + 1e-12)


@pytest.mark.parametrize("inclusion", ["inclusive", "exclusive"])
def test_a_lower_lru_tier_never_lowers_the_hits(run_cli, tmp_path, mooncake, inclusion):
    """Inclusive (write-through) LRU tiers: the HBM tier sees the same accesses whatever lies below (a lower hit
    is inserted into HBM exactly as a miss is), so its hits are unchanged and a DRAM tier only adds hits.
    Exclusive LRU tiers act as one LRU of their total size (tests/test_cache_properties.py), which grows.
    Either way, adding or growing the tier below never lowers the total hit count."""
    common = ("serving.num_gpu_blocks=40", "cache.tiers.ssd.capacity_gib=0", "cache.tiers.eic.capacity_gib=0")
    hits, hbm = [], []
    for gib in (0, 0.5, 2, 8):  # (HBM alone, at 0 GiB: no inclusion to set)
        inclusive = (f"cache.inclusion={inclusion}",) if gib else ()
        report, _ = _run(run_cli, tmp_path, "--cache-only", *mooncake, "--policy", "lru",
                         sets=(*common, *inclusive, f"cache.tiers.dram.capacity_gib={gib}"), name=f"d{gib}")
        m = _metrics(report)
        hits.append(m["hits"])
        hbm.append(m["tiers"]["hbm"]["hits"])
    assert hits == sorted(hits) and hits[-1] > hits[0], hits
    if inclusion == "inclusive":
        assert len(set(hbm)) == 1, hbm


def test_several_policies_in_one_invocation_equal_separate_runs(run_cli, tmp_path, mooncake):
    """DESIGN: ``--policy a,b`` is one run per policy over the same trace; no state may leak from one run into
    the next, so each run of the list is the run of that policy alone (everything but ``timing``)."""
    both, _ = _run(run_cli, tmp_path, "--cache-only", *mooncake, "--policy", "arc,belady,lru",
                   "--capacity-blocks", "50", name="both")
    for i, policy in enumerate(("arc", "belady", "lru")):
        alone, _ = _run(run_cli, tmp_path, "--cache-only", *mooncake, "--policy", policy,
                        "--capacity-blocks", "50", name=policy)
        assert json.dumps(both["runs"][i]["metrics"], sort_keys=True) == json.dumps(_metrics(alone), sort_keys=True)


def test_serving_runs_of_several_routers_equal_separate_runs(run_cli, tmp_path):
    """As above for ``--router a,b`` in the serving modes (DESIGN: one run per router, named by it)."""
    both, _ = _run(run_cli, tmp_path, *SMALL, "--router", "precise-prefix,round-robin", name="both")
    for i, router in enumerate(("precise-prefix", "round-robin")):
        alone, _ = _run(run_cli, tmp_path, *SMALL, "--router", router, name=router)
        assert json.dumps(both["runs"][i]["metrics"], sort_keys=True) == json.dumps(_metrics(alone), sort_keys=True)


# ----------------------------------------------------------------------------- time scaling of the whole model


def _clock(speed: int, mode: tuple[str, ...]) -> tuple[str, ...]:
    """Every rate of the timed model times ``speed`` and every latency over it (config.yaml defaults x speed):
    compute (the roofline's efficiencies, and its kernel floors over it: sim/serving/compute.py), tier reads and
    writes, the SSD's shared queue, NICs, PCIe, the GPUs' NVLink and the rack uplinks."""
    keys = [*_gpu_speed(speed)]
    eic = (("eic", 50, 50, 10),) if "--cluster" in mode else ()  # (the others have no EIC: its keys are refused)
    for tier, read, write, latency in (("dram", 50, 50, 5), ("ssd", 7, 5, 80), *eic):
        keys += [f"cache.tiers.{tier}.read_gbps={read * speed}", f"cache.tiers.{tier}.write_gbps={write * speed}",
                 f"cache.tiers.{tier}.latency_us={latency / speed}"]
    keys.append(f"cache.tiers.ssd.shared_read_gbps={7 * speed}")
    if "--pd" in mode or "--cluster" in mode:
        keys += [f"network.bandwidth_gbps={100 * speed}", f"network.latency_us={5 / speed}"]
    if "--cluster" in mode:
        keys += [f"hardware.pcie_gbps={63 * speed}", f"cluster.uplink_latency_us={1 / speed}",
                 "cluster.num_racks=2", "cluster.nodes_per_rack=2", "hardware.gpus_per_node=2",
                 "cache.tiers.eic.capacity_gib=4"]
    if "--cluster" in mode and "--pd" in mode:  # a node's KV crosses its GPUs' NVLink (profiles/gpus.yaml's H100 SXM)
        keys += [f"hardware.gpu_link_gbps={370.8 * speed}", f"hardware.gpu_link_latency_us={3.4 / speed}"]
    return tuple(keys)


def _gpu_speed(speed: int) -> tuple[str, ...]:
    """The roofline's efficiencies times ``speed`` and its kernel floors over it (halving is exact in binary)."""
    return (f"compute.flops_efficiency={0.3 * speed}", f"compute.bandwidth_efficiency={0.4 * speed}",
            f"compute.attention_efficiency={0.2 * speed}", f"compute.gemm_floor_us={3.25 / speed}",
            f"compute.attention_floor_us={12.5 / speed}", f"compute.attention_tile_us={4.5 / speed}")


SHARED_PROMPTS = ("--preset", "smoke", "--workload-limit", "60", "--set", "workload.synthetic.kind=system-prompt",
                  "--set", "workload.synthetic.num_prefixes=8", "--set", "workload.synthetic.prefix_tokens=2048",
                  "--set", "workload.synthetic.input_tokens_mean=128", "--set", "workload.synthetic.output_tokens_mean=32",
                  "--set", "workload.synthetic.rate_rps=10")


@pytest.mark.parametrize("mode", [(), ("--pd",), ("--cluster", "--router", "round-robin"), ("--cluster", "--pd")],
                         ids=["single", "pd", "cluster", "cluster-pd"])
def test_a_system_twice_as_fast_at_twice_the_rate_is_the_same_run_at_half_the_time(run_cli, tmp_path, mode):
    """Every duration in the timed model is a latency or bytes (FLOPs) over a rate, and arrivals are divided by
    ``--rate-scale``. Doubling every rate, halving every latency and doubling the rate scale is the same
    simulation on a clock twice as fast: each request's timestamps halve (exactly: halving is exact in binary
    floating point), and its routing, cached tokens, preemptions and transferred bytes are unchanged. A time
    constant hidden anywhere (a poll interval, a fixed overhead, a bin width used in a decision) breaks it. The
    workload shares system prompts and the HBM is small, so lower-tier loads, cross-node fetches (cluster), KV
    transfers (PD) and queueing all occur (asserted); round-robin spreads the prompts over the cluster's nodes."""
    sets = ("serving.num_gpu_blocks=300", "cache.tiers.dram.capacity_gib=2", "cache.tiers.ssd.capacity_gib=8")
    slow, a = _run(run_cli, tmp_path, *mode, *SHARED_PROMPTS, "--rate-scale", "3",
                   sets=(*sets, *_clock(1, mode)), name="slow", requests=True)
    fast, b = _run(run_cli, tmp_path, *mode, *SHARED_PROMPTS, "--rate-scale", "6",
                   sets=(*sets, *_clock(2, mode)), name="fast", requests=True)
    assert (a.queue_s > 0).any() and ((a.kv_load > 0) | (a.fetch > 0)).any()
    assert "--pd" not in mode or (a.kv_transfer_bytes > 0).all()
    assert "--cluster" not in mode or (a.fetch > 0).any()  # (a cluster's loads before scheduling: fetch)
    for column in ("instance", "decode_instance", "cached_tokens", "preemptions", "kv_transfer_bytes",
                   "input_tokens", "output_tokens"):
        assert a[column].fillna(-1).tolist() == b[column].fillna(-1).tolist(), column
    for column in ("arrival", "scheduled", "kv_load", "fetch", "prefill_done", "kv_ready", "first_token",
                   "last_token", "ttft_s", "e2e_s", "queue_s", "prefill_s", "kv_transfer_s", "first_decode_s"):
        np.testing.assert_array_equal(b[column], a[column] / 2, err_msg=column)
    assert _metrics(slow)["hits"] == _metrics(fast)["hits"] > 0
    assert _metrics(fast)["makespan_s"] == _metrics(slow)["makespan_s"] / 2


@pytest.mark.parametrize("mode", [(), ("--pd",)])
def test_a_faster_gpu_never_raises_a_ttft_in_an_unloaded_run(run_cli, tmp_path, mode):
    """Requests a minute apart (``--rate-scale 0.001``) meet an idle system: each TTFT is its own queue-free
    prefill (plus, in PD, its KV transfer and first decode), each a step time that doubling the efficiencies and
    halving the kernel floors halves. No request's TTFT rises; the compute parts halve."""
    argv = (*mode, *SMALL, "--rate-scale", "0.001")
    slow, a = _run(run_cli, tmp_path, *argv, sets=_gpu_speed(1), name="slow", requests=True)
    fast, b = _run(run_cli, tmp_path, *argv, sets=_gpu_speed(2), name="fast", requests=True)
    assert (b.ttft_s <= a.ttft_s * (1 + 1e-12)).all()
    assert (a.queue_s == 0).all() and (b.queue_s == 0).all()
    np.testing.assert_allclose(b.prefill_s, a.prefill_s / 2, rtol=1e-9)
    np.testing.assert_allclose(b.first_decode_s, a.first_decode_s / 2, rtol=1e-9)


def test_unbounded_link_bandwidth_leaves_only_the_link_latency(run_cli, tmp_path):
    """PD KV transfer over a link is latency + bytes / bandwidth (DESIGN Network). At 10^9 Gb/s the bytes term of
    a few hundred MB is below 10^-8 s: each transferring request's kv_transfer part is the latency, 5 us here,
    in the push mode that sends once prefill is done. Requests are a minute apart (one flow at a time)."""
    report, a = _run(run_cli, tmp_path, "--pd", *SMALL, "--rate-scale", "0.001",
                     sets=("network.bandwidth_gbps=1e9", "network.latency_us=5", "pd.transfer=push"),
                     name="fast", requests=True)
    moved = a.kv_transfer_bytes > 0
    assert moved.sum() > 0
    np.testing.assert_allclose(a.kv_transfer_s[moved], 5e-6, rtol=0, atol=1e-8)
    assert (a.kv_transfer_s[~moved] == 0).all()


# ----------------------------------------------------------------------------- seeds and determinism


# Student t, 0.975 quantile, 2 degrees of freedom, in closed form: (2p - 1) / sqrt(2 p (1 - p)) = 4.3026527 (the
# NIST/SEMATECH e-Handbook table 1.3.6.7.2 prints 4.303)
T_975_2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)


@pytest.mark.parametrize("mode", [("--cache-only", "--capacity-blocks", "300"), ("--set", "serving.num_instances=1")])
def test_seeds_report_the_mean_and_interval_of_the_separate_seed_runs(run_cli, tmp_path, mode):
    """README Confidence: ``--seeds N`` repeats the run with seeds seed ... seed+N-1; ``metrics`` are the means and
    ``metrics_ci95`` the Student-t 95% intervals. So ``--seed 5 --seeds 3`` reports the mean of the runs with
    ``--seed`` 5, 6 and 7, and mean -/+ t(0.975, 2) x s / sqrt(3) around it."""
    argv = (*mode, "--preset", "smoke", "--workload-limit", "40")
    sets = ("workload.synthetic.kind=rag", "workload.synthetic.input_tokens_mean=64", "workload.synthetic.rate_rps=20")
    pooled, _ = _run(run_cli, tmp_path, *argv, "--seed", "5", "--seeds", "3", sets=sets, name="pooled")
    keys = ["hit_ratio"] + (["ttft_s.mean", "e2e_s.p50"] if "--cache-only" not in mode else [])
    values = {key: [] for key in keys}
    for seed in (5, 6, 7):
        alone, _ = _run(run_cli, tmp_path, *argv, "--seed", str(seed), sets=sets, name=f"s{seed}")
        for key in keys:
            head, *rest = key.split(".")
            values[key].append(_metrics(alone)[head][rest[0]] if rest else _metrics(alone)[head])
    for key in keys:
        head, *rest = key.split(".")
        got = _metrics(pooled)[head][rest[0]] if rest else _metrics(pooled)[head]
        mean, s = float(np.mean(values[key])), float(np.std(values[key], ddof=1))
        assert s > 0, key  # the seed really changes the workload
        assert math.isclose(got, mean, rel_tol=1e-12), (key, got, values[key])
        lo, hi = pooled["runs"][0]["metrics_ci95"][key]
        half = T_975_2 * s / math.sqrt(3)
        # held to the values the metric can take (README Confidence): none is negative, a hit ratio is at most 1
        want_lo, want_hi = max(0.0, mean - half), min(1.0, mean + half) if key == "hit_ratio" else mean + half
        assert math.isclose(lo, want_lo, rel_tol=1e-9, abs_tol=1e-12), (key, lo, want_lo)
        assert math.isclose(hi, want_hi, rel_tol=1e-9, abs_tol=1e-12), (key, hi, want_hi)


def test_cache_only_results_do_not_depend_on_arrival_times(run_cli, tmp_path, mooncake, shared_data):
    """README: the cache-only replay reads the requests' order, never their times (learned features aside), and
    ``workload.arrivals`` keeps the order. So a drawn arrival process or another rate scale changes no metric of a
    classic policy's replay (which is why the command line refuses --rate-scale there)."""
    from experiments.execute import RunOptions, execute
    from sim.config import load_config

    base, _ = _run(run_cli, tmp_path, "--cache-only", *mooncake, "--policy", "belady,s3fifo", "--capacity-blocks", "40",
                   name="own")
    common = [f"workload.trace={shared_data / MOONCAKE}", "workload.limit=300", "cache.capacity_blocks=40"]
    for sets in (["workload.rate_scale=7"], ["workload.arrivals.process=gamma", "workload.arrivals.cv=3"]):
        other = execute("cache-only", load_config(None, sets=[*common, *sets]), RunOptions(policies=("belady", "s3fifo")))
        assert [r.name for r in other.runs] == [r["name"] for r in base["runs"]]
        for a, b in zip(base["runs"], other.runs):
            assert {k: a["metrics"][k] for k in ("hit_ratio", "hits", "accesses")} == \
                {k: b.metrics[k] for k in ("hit_ratio", "hits", "accesses")}
    status, _, err = run_cli("--cache-only", *mooncake, "--policy", "belady,s3fifo", "--capacity-blocks", "40",
                             "--rate-scale", "7", "--no-plot")
    assert status == 2 and "--rate-scale: the cache-only replay has no clock" in err


def test_the_report_does_not_depend_on_the_string_hash_seed(tmp_path):
    """DESIGN Determinism: no iteration over unordered sets where order changes results; Contract: everything
    but ``timing`` is byte-identical for the same config, trace and seed. Python salts str hashes per process
    (PYTHONHASHSEED), so two processes with different salts must write the same report: a cluster PD run over
    sessions with the precise-prefix router and several tiers, where set or dict order could leak in."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    reports = []
    for salt in ("1", "2"):
        out = tmp_path / f"h{salt}.json"
        argv = [sys.executable, "main.py", "--cluster", "--pd", "--preset", "smoke", "--workload-limit", "40",
                "--set", "workload.synthetic.kind=multi-turn", "--set", "workload.synthetic.rate_rps=50",
                "--set", "workload.synthetic.think_time_median_s=0.2", "--set", "cluster.num_racks=2",
                "--set", "cluster.nodes_per_rack=2", "--set", "serving.num_gpu_blocks=64",
                "--set", "cache.tiers.eic.capacity_gib=0.25", "--router", "precise-prefix,session-affinity",
                "--quiet", "--no-plot", "--report-json", str(out)]
        done = subprocess.run(argv, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": salt}, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        report = json.loads(out.read_text())
        report.pop("timing")
        assert check_report(report) == []
        reports.append(json.dumps(report, sort_keys=True))
    assert reports[0] == reports[1]


# ----------------------------------------------------------------------------- settings with a known direction


def test_slo_targets_change_only_the_slo_metrics_and_a_looser_target_never_lowers_attainment(run_cli, tmp_path, mooncake):
    """``slo.*`` are targets a finished request is judged against (README Reports), not inputs of the simulation:
    other metrics are identical with any target or none; a request meeting a target meets every looser one, so
    attainment and goodput never fall as ``slo.ttft_s`` grows."""
    def without_slo(report):
        return json.dumps({k: v for k, v in _metrics(report).items() if k not in ("slo_attainment", "goodput_rps")},
                          sort_keys=True)
    none, _ = _run(run_cli, tmp_path, *mooncake[:2], "--workload-limit", "60", name="none")
    seen = []
    for ttft in (0.05, 0.5, 5, 50):
        report, _ = _run(run_cli, tmp_path, *mooncake[:2], "--workload-limit", "60",
                         sets=(f"slo.ttft_s={ttft}", "slo.tpot_s=0.05"), name=f"slo{ttft}")
        assert without_slo(report) == without_slo(none)
        seen.append((_metrics(report)["slo_attainment"], _metrics(report)["goodput_rps"]))
    assert seen == sorted(seen) and seen[0] < seen[-1], seen


UNLOADED = ("--workload-trace", BUNDLED_AZURE, "--workload-limit", "40", "--rate-scale", "0.001")


def test_layerwise_transfer_never_raises_an_unloaded_ttft(run_cli, tmp_path):
    """README Serving: ``pd.transfer: layerwise`` overlaps the KV transfer with prefill compute (layer i crosses while
    layer i+1 computes); ``push`` sends it all once prefill is done. Alone on the system (requests 1000x further
    apart than the trace's), a request's TTFT under layerwise is never above push's and is below it whenever
    there is a transfer to hide."""
    _, push = _run(run_cli, tmp_path, "--pd", *UNLOADED, sets=("pd.transfer=push",), name="push", requests=True)
    _, layer = _run(run_cli, tmp_path, "--pd", *UNLOADED, sets=("pd.transfer=layerwise",), name="layer", requests=True)
    assert (push.queue_s == 0).all()
    assert (layer.ttft_s <= push.ttft_s * (1 + 1e-12)).all()
    assert (layer.ttft_s < push.ttft_s).sum() == (push.kv_transfer_bytes > 0).sum() > 0


def test_an_fp8_kv_cache_halves_every_transferred_byte(run_cli, tmp_path):
    """DESIGN: KV bytes per token are 2 x layers x kv_heads x head_dim x dtype_bytes, so an fp8 cache (1 byte) holds
    and sends half the bytes of bf16 (2 bytes). With the same KV block count and requests alone on the system,
    the same blocks move, at half the bytes each."""
    sets = ("serving.num_gpu_blocks=2000",)
    _, bf16 = _run(run_cli, tmp_path, "--pd", *UNLOADED, sets=sets, name="bf16", requests=True)
    _, fp8 = _run(run_cli, tmp_path, "--pd", *UNLOADED, sets=(*sets, "serving.kv_cache_dtype=fp8"), name="fp8",
                  requests=True)
    assert (bf16.kv_transfer_bytes > 0).all()
    assert (fp8.kv_transfer_bytes * 2 == bf16.kv_transfer_bytes).all()


def test_the_trace_stats_reuse_ceiling_is_every_policy_at_unbounded_capacity(run_cli, tmp_path, mooncake):
    """README: ``--trace-stats`` gives the reuse ceiling, ``infinite_cache_hit_ratio``: with room for every block
    only first touches miss, so hits = accesses - unique blocks, whatever the policy (none ever evicts), and no
    policy at a finite capacity does better."""
    stats, _ = _run(run_cli, tmp_path, "--trace-stats", *mooncake, name="stats")
    s = _metrics(stats)
    policies = "lru,fifo,lfu,arc,s3fifo,sieve,belady"
    for cap, name in ((10**8, "huge"), (200, "small")):
        report, _ = _run(run_cli, tmp_path, "--cache-only", *mooncake, "--policy", policies, "--capacity-blocks",
                         str(cap), name=name)
        for run in report["runs"]:
            m = run["metrics"]
            assert m["accesses"] == s["accesses"]
            if cap == 10**8:
                assert m["hits"] == s["accesses"] - s["unique_blocks"] > 0, run["name"]
                assert m["hit_ratio"] == s["infinite_cache_hit_ratio"], run["name"]
            else:
                assert m["hit_ratio"] <= s["infinite_cache_hit_ratio"], run["name"]


@pytest.mark.parametrize("mode", [(), ("--pd",)], ids=["single", "pd"])
def test_prefix_caching_never_raises_an_unloaded_ttft_and_off_means_no_hit(run_cli, tmp_path, mooncake, mode):
    """vLLM's prefix cache (README Serving): a cached prefix skips its prefill compute; HBM-only, nothing is loaded
    from below, so a request alone on the system (Poisson arrivals at one per 1000 s) never starts later nor
    computes more with caching on. ``serving.enable_prefix_caching: false`` looks nothing up: no hits."""
    sets = ("workload.arrivals.process=poisson", "workload.arrivals.rate_rps=0.001", "cache.tiers.dram.capacity_gib=0",
            "cache.tiers.ssd.capacity_gib=0")
    on_report, on = _run(run_cli, tmp_path, *mode, *mooncake[:2], "--workload-limit", "60", sets=sets, name="on",
                         requests=True)
    off_report, off = _run(run_cli, tmp_path, *mode, *mooncake[:2], "--workload-limit", "60",  # (no tier to size)
                           sets=(*sets[:2], "serving.enable_prefix_caching=false"), name="off", requests=True)
    assert (on.queue_s == 0).all() and (off.queue_s == 0).all()
    assert _metrics(off_report)["hits"] == 0 < _metrics(on_report)["hits"]
    assert (on.ttft_s <= off.ttft_s * (1 + 1e-12)).all()
    assert (on.ttft_s < off.ttft_s).sum() == (on.cached_tokens > 0).sum() > 0


# ----------------------------------------------------------------------------- experiments over the ordinary run


def test_the_max_rate_run_is_the_plain_run_at_the_rate_it_reports(run_cli, tmp_path):
    """README Max rate: the run reported is the highest one that meets, with ``max_rate_scale``; so its metrics are
    those of a plain run at ``--rate-scale max_rate_scale`` (the search adds only the max_rate_* keys), and
    ``max_rate_rps`` is that scale times the workload's own rate as ``--trace-stats`` reports it (``rate_mean_rps``:
    requests / arrival span; experiments/execute.base_rate_rps)."""
    argv = ("--workload-trace", BUNDLED_AZURE, "--workload-limit", "200")
    sets = ("serving.num_instances=1", "slo.ttft_s=0.3", "slo.attainment=0.95")
    searched, _ = _run(run_cli, tmp_path, *argv, "--max-rate", sets=sets, name="searched")
    m = _metrics(searched)
    scale = m["max_rate_scale"]
    assert m["max_rate_search"]["meets"]["rate_scale"] == scale and m["max_rate_search"]["fails"] is not None
    plain, table = _run(run_cli, tmp_path, *argv, "--rate-scale", repr(scale), sets=sets[:2], name="plain",
                        requests=True)  # (slo.attainment is --max-rate's alone)
    assert json.dumps({k: v for k, v in m.items() if not k.startswith("max_rate")}, sort_keys=True) == \
        json.dumps(_metrics(plain), sort_keys=True)
    stats, _ = _run(run_cli, tmp_path, "--trace-stats", *argv, name="stats")
    assert math.isclose(m["max_rate_rps"], scale * _metrics(stats)["rate_mean_rps"], rel_tol=1e-12)
    assert math.isclose(_metrics(stats)["rate_mean_rps"], 200 / (table.arrival.max() * scale), rel_tol=1e-12)  # by hand


def test_a_drawn_rate_times_the_rate_scale_is_the_drawn_process_at_that_rate(run_cli, tmp_path):
    """README Load: the arrival process draws gaps at ``workload.arrivals.rate_rps``; ``--rate-scale k`` then divides
    every gap by k. Exponential gaps at rate r divided by k are exponential gaps at rate k r drawn from the same
    stream (numpy draws scale x a standard exponential), so the arrivals agree."""
    argv = ("--workload-trace", BUNDLED_AZURE, "--workload-limit", "50")
    _, a = _run(run_cli, tmp_path, *argv, "--rate-scale", "4",
                sets=("workload.arrivals.process=poisson", "workload.arrivals.rate_rps=2"), name="scaled", requests=True)
    _, b = _run(run_cli, tmp_path, *argv, sets=("workload.arrivals.process=poisson", "workload.arrivals.rate_rps=8"),
                name="direct", requests=True)
    np.testing.assert_allclose(a.arrival, b.arrival, rtol=1e-12, atol=1e-12)
    assert a.arrival.iloc[-1] > 0


@pytest.mark.parametrize("model,tps", [("llama-3.1-8b", (1, 2, 4)), ("qwen2-7b", (1, 2, 4))])
def test_kv_transfer_bytes_do_not_depend_on_the_tensor_parallel_degree(run_cli, tmp_path, model, tps):
    """README Serving: at tensor_parallel_size N each rank holds 1/N of the KV heads (dividing them: no head
    replicated) and sends its shard; together the N shards are the block's bytes at TP 1 (DESIGN: 2 x layers x
    kv_heads x head_dim x dtype bytes a token). With the KV block count fixed and requests alone, every request
    moves the same bytes at every TP degree. (MLA's latent is whole on every rank, and each rank sends its copy,
    so DeepSeek's bytes grow with TP: sim/serving/run.py, as vLLM's per-rank transfers do.)"""
    seen = {}
    for tp in tps:
        _, table = _run(run_cli, tmp_path, "--pd", *UNLOADED, sets=(f"model={model}", f"serving.tensor_parallel_size={tp}",
                                                                   "serving.num_gpu_blocks=3000"), name=f"tp{tp}",
                        requests=True)
        seen[tp] = table.kv_transfer_bytes.tolist()
    assert all(v == seen[1] for v in seen.values()) and min(seen[1]) > 0
