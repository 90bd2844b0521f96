"""Reports stay consistent under edge conditions in every mode (``tests/report_invariants.py`` lists each
invariant and the definition it comes from). Expectations beside the invariants are computed here from the
hand-made traces, not from the simulator."""

from __future__ import annotations

import copy
import json

import pytest
from report_invariants import check_report

# Hand-made Mooncake rows (512-token blocks): (arrival ms, prompt tokens, output tokens, block ids)
EDGE_ROWS = [(i * 50, n * 512 - 3, [0, 1, 2, 5][i % 4], [0, 1][:min(n, 2)] + [100 + 10 * i + j for j in range(n - 2)])
             for i, n in enumerate([1, 3, 6, 2, 5, 4, 1, 6, 3, 2, 6, 5, 4, 3, 2, 1, 6, 6, 2, 3] * 2)]
SAME_TIME_ROWS = [(1000, n * 512, 1 + 37 * i % 300, [0] + [1000 + 10 * i + j for j in range(n - 1)])
                  for i, n in enumerate([1, 8, 3, 5, 2, 7, 4, 6] * 5)]


def _write(tmp_path, name: str, rows) -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps({"timestamp": t, "input_length": n, "output_length": o, "hash_ids": ids}) + "\n"
                            for t, n, o, ids in rows))
    return str(path)


def _report(run_cli, tmp_path, *argv: str, sets: tuple[str, ...] = ()) -> dict:
    out = tmp_path / "r.json"
    args = [*argv, "--quiet", "--no-plot", "--report-json", out]
    for s in sets:
        args += ["--set", s]
    status, _, err = run_cli(*args)
    assert status == 0, err[-2000:]
    return json.loads(out.read_text())


def _tokens(rows, keep=lambda n, o: True) -> tuple[int, int]:
    """(prompt, output) tokens of the rows kept; every request decodes at least one token (run.admit)."""
    kept = [(n, max(o, 1)) for _, n, o, _ in rows if keep(n, o)]
    return sum(n for n, _ in kept), sum(o for _, o in kept)


SERVING = {  # mode flags, --set keys
    "single-tiny-hbm": (["--router", "round-robin,least-loaded,session-affinity,prefix-aware,precise-prefix"],
                        ["serving.num_gpu_blocks=5", "cache.tiers.dram.capacity_gib=0.0625"]),
    "single-max-model-len": ([], ["serving.max_model_len=2000", "slo.ttft_s=0.05", "slo.tpot_s=0.01"]),
    "pd-1p3d-layerwise": (["--pd"], ["pd.num_prefill=1", "pd.num_decode=3", "pd.transfer=layerwise",
                                     "serving.num_gpu_blocks=8"]),
    "pd-3p1d-pull-inclusive": (["--pd"], ["pd.num_prefill=3", "pd.num_decode=1", "pd.transfer=pull",
                                          "cache.inclusion=inclusive", "serving.num_gpu_blocks=8"]),
    "pd-tp4-push": (["--pd"], ["serving.tensor_parallel_size=4", "serving.num_gpu_blocks=8"]),
    "cluster-pd-racks": (["--cluster", "--pd"], ["cluster.num_racks=3", "cluster.nodes_per_rack=2",
                                                 "hardware.gpus_per_node=2", "cluster.oversubscription=8",
                                                 "serving.num_gpu_blocks=8", "cache.tiers.eic.capacity_gib=0.0625",
                                                 "cache.tiers.dram.capacity_gib=0.0625",
                                                 "cache.tiers.ssd.capacity_gib=0.0625"]),
    "cluster-pd-tp2": (["--cluster", "--pd"], ["cluster.num_racks=2", "serving.tensor_parallel_size=2",
                                               "serving.num_gpu_blocks=10", "cache.tiers.eic.capacity_gib=1"]),
    "cluster-pd-layerwise": (["--cluster", "--pd"], ["pd.transfer=layerwise", "serving.num_gpu_blocks=10"]),
    "cluster-routers-tp8": (["--cluster", "--router", "round-robin,precise-prefix", "--policy", "belady"],
                            ["cluster.num_racks=2", "serving.tensor_parallel_size=8", "serving.num_gpu_blocks=10",
                             "cache.tiers.eic.capacity_gib=1"]),
}


@pytest.mark.parametrize("name", SERVING)
def test_serving_reports_hold_their_invariants(run_cli, tmp_path, name):
    """Rejections (HBM of 5 blocks, max_model_len), 0- and 1-token outputs, every router, 1:3 and 3:1 PD with
    each transfer mode, TP up to a node, racks behind an 8:1 oversubscribed uplink, one-block tiers."""
    flags, sets = SERVING[name]
    trace = _write(tmp_path, "edge.jsonl", EDGE_ROWS)
    report = _report(run_cli, tmp_path, *flags, "--workload-trace", trace, sets=tuple(sets))
    limit = 2000 if "max_model_len=2000" in " ".join(sets) else None
    blocks = 5 - 1 if "num_gpu_blocks=5" in " ".join(sets) else None  # less vLLM's null block
    keep = (lambda n, o: (limit is None or n + max(o, 1) <= limit)
            and (blocks is None or -(-(n + max(o, 1)) // 512) <= blocks))
    prompt, output = _tokens(EDGE_ROWS, keep)
    span = (EDGE_ROWS[-1][0] - EDGE_ROWS[0][0]) / 1000
    if limit is None and blocks is None:
        assert report["trace"]["rows_skipped"] == 0
    else:
        assert report["trace"]["rows_skipped"] == sum(not keep(n, o) for _, n, o, _ in EDGE_ROWS) > 0
    assert check_report(report, output_tokens=output, input_tokens=prompt, arrival_span_s=span) == []


def test_same_timestamp_overload_and_a_single_request(run_cli, tmp_path):
    """Forty requests at one instant on one instance (a queue), then one request alone."""
    trace = _write(tmp_path, "same.jsonl", SAME_TIME_ROWS)
    prompt, output = _tokens(SAME_TIME_ROWS)
    # (no --rate-scale: with no gap to divide it changed nothing, and is refused since round 3)
    report = _report(run_cli, tmp_path, "--workload-trace", trace, sets=("serving.num_instances=1",))
    assert check_report(report, output_tokens=output, input_tokens=prompt, arrival_span_s=0.0) == []
    assert report["runs"][0]["metrics"]["ttft_breakdown_s"]["queue"] > 0
    one = _write(tmp_path, "one.jsonl", SAME_TIME_ROWS[:1])
    report = _report(run_cli, tmp_path, "--pd", "--workload-trace", one)
    assert check_report(report, output_tokens=SAME_TIME_ROWS[0][2], input_tokens=512, arrival_span_s=0.0) == []


@pytest.mark.parametrize("semantics", ["plain", "prefix"])
@pytest.mark.parametrize("inclusion", ["inclusive", "exclusive"])
def test_cache_only_reports_hold_their_invariants(run_cli, tmp_path, semantics, inclusion):
    """Every policy over one-block lower tiers, inclusive and exclusive, each access semantics (prefix: a lower
    tier reads only the hits of the cached prefix, where they were found; before, its touches read blocks past the
    first miss and hits demoted before their own touch in the tier they fell to); a sampled miss-ratio curve."""
    trace = _write(tmp_path, "edge.jsonl", EDGE_ROWS)
    report = _report(run_cli, tmp_path, "--cache-only", "--workload-trace", trace,
                     "--policy", "lru,fifo,lfu,arc,s3fifo,sieve,belady",
                     sets=("cache.tiers.hbm.capacity_gib=0.25", "cache.tiers.dram.capacity_gib=0.0625",
                           "cache.tiers.ssd.capacity_gib=0.0625", "cache.tiers.eic.capacity_gib=0.0625",
                           f"cache.inclusion={inclusion}", f"cache.access_semantics={semantics}"))
    assert check_report(report) == []
    assert {run["metrics"]["access_semantics"] for run in report["runs"]} == {semantics}
    assert report["runs"][0]["metrics"]["accesses"] == sum(len(ids) for *_, ids in EDGE_ROWS)
    if (semantics, inclusion) != ("plain", "inclusive"):  # the curve is of the plain stream alone: once is enough
        return
    report = _report(run_cli, tmp_path, "--cache-only", "--mrc", "--mrc-sample-rate", "0.5", "--workload-trace", trace)
    assert check_report(report) == []


def test_same_config_and_seed_give_the_same_report(run_cli, tmp_path):
    trace = _write(tmp_path, "edge.jsonl", EDGE_ROWS)
    argv = ("--cluster", "--pd", "--workload-trace", trace, "--router", "precise-prefix")
    sets = ("cluster.num_racks=2", "serving.num_gpu_blocks=8")
    first, second = (_report(run_cli, tmp_path, *argv, sets=sets) for _ in range(2))
    first.pop("timing"), second.pop("timing")
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def test_the_checker_catches_each_kind_of_inconsistency(run_cli, tmp_path):
    """The checker can fail: each corruption of a consistent report is reported."""
    trace = _write(tmp_path, "edge.jsonl", EDGE_ROWS)
    report = _report(run_cli, tmp_path, "--pd", "--workload-trace", trace, sets=("slo.ttft_s=0.05",))
    assert check_report(report) == []
    corruptions = {
        "rows_used": lambda r: r["trace"].__setitem__("rows_used", r["trace"]["rows_used"] - 1),
        "null": lambda r: r["runs"][0]["metrics"]["e2e_s"].__setitem__("mean", None),
        "hit_ratio": lambda r: r["runs"][0]["metrics"]["tier_hit_ratio"].__setitem__("dram", 1.5),
        "percentiles": lambda r: r["runs"][0]["metrics"]["ttft_s"].__setitem__("p50", 1e3),
        "ttft_breakdown_s": lambda r: r["runs"][0]["metrics"]["ttft_breakdown_s"].__setitem__("queue", 1.0),
        "goodput_rps": lambda r: r["runs"][0]["metrics"].__setitem__("goodput_rps", 1e6),
        "timeseries": lambda r: r["runs"][0]["metrics"]["timeseries"]["arrivals"].append(1),
        "bytes_read": lambda r: r["runs"][0]["metrics"]["tiers"]["dram"].__setitem__(
            "bytes_read", r["runs"][0]["metrics"]["tiers"]["dram"]["bytes_read"] + 2**20),
        "mfu_busy": lambda r: r["runs"][0]["metrics"]["instances"]["each"][0].__setitem__("mfu_busy", 1.2),
        "mbu_busy": lambda r: r["runs"][0]["metrics"]["instances"]["each"][0].__setitem__("mbu_busy", 1.2),
        "e2e_s.p50": lambda r: r["runs"][0]["metrics"]["e2e_s"].__setitem__("p50", 0.0),  # below the TTFT's p50
        # --seeds intervals: one that misses its mean, one of a fraction past 1, one below 0
        "does not hold": lambda r: r["runs"][0].__setitem__("metrics_ci95", {"hit_ratio": [0.999, 1.0]}),
        "above 1": lambda r: r["runs"][0].__setitem__("metrics_ci95", {"slo_attainment": [0.0, 1.07]}),
        "below 0": lambda r: r["runs"][0].__setitem__("metrics_ci95", {"e2e_s.mean": [-0.1, 1e3]}),
    }
    for needle, corrupt in corruptions.items():
        bad = copy.deepcopy(report)
        corrupt(bad)
        found = check_report(bad)
        assert found and any(needle in v for v in found), (needle, found)
    # a profiled backend's step times are measured or interpolated: nothing bounds its counted FLOPs per second
    profiled = copy.deepcopy(report)
    profiled["config"]["compute"]["backend"] = "profiled"
    corruptions["mfu_busy"](profiled)
    assert check_report(profiled) == []


def test_the_checker_rederives_a_max_rate_search_from_its_steps(run_cli, tmp_path):
    """README Max rate: the answer is the highest meeting scale tried, bracketed by the lowest failing one within the
    tolerance; each corruption of a consistent search is reported."""
    trace = _write(tmp_path, "edge.jsonl", EDGE_ROWS)
    report = _report(run_cli, tmp_path, "--max-rate", "--workload-trace", trace, sets=("slo.ttft_s=0.2",))
    search = report["runs"][0]["metrics"]["max_rate_search"]
    assert search["meets"] and search["fails"] and check_report(report) == []
    corruptions = {
        "not the highest meeting step": lambda s: s["steps"].append([s["fails"]["rate_scale"] * 4, 1.0]),
        "not the lowest failing step": lambda s: s["steps"].append([s["meets"]["rate_scale"] / 4, 0.0]),
        "wider than the tolerance": lambda s: (s["fails"].__setitem__("rate_scale", s["meets"]["rate_scale"] * 1.5),
                                               s["steps"].append([s["meets"]["rate_scale"] * 1.5, 0.0])),
        "< target": lambda s: s["meets"].__setitem__("slo_attainment", s["target_attainment"] - 0.1),
    }
    for needle, corrupt in corruptions.items():
        bad = copy.deepcopy(report)
        corrupt(bad["runs"][0]["metrics"]["max_rate_search"])
        found = check_report(bad)
        assert found and any(needle in v for v in found), (needle, found)


def test_a_max_rate_search_that_never_fails_holds_its_invariants(run_cli, tmp_path):
    """--max-rate where every rate tried meets the SLO (one-token prompts, a loose TTFT target): the search has no
    failing bracket (``fails`` null, a note saying the answer is a lower bound), which is a report's documented
    content, not a NaN; every other null would still be one."""
    trace = _write(tmp_path, "edge.jsonl", EDGE_ROWS[:12])
    report = _report(run_cli, tmp_path, "--max-rate", "--workload-trace", trace,
                     sets=("slo.ttft_s=100", "workload.max_input_tokens=1"))
    search = report["runs"][0]["metrics"]["max_rate_search"]
    assert search["fails"] is None and "lower bound" in search["note"]
    assert check_report(report) == []
    search.pop("note")
    assert any("max_rate_search.fails is null" in v for v in check_report(report))


def test_a_session_prefetch_reads_its_blocks_out_of_the_lower_tier(run_cli, tmp_path):
    """cache.prefetch: session pulls a turn's previous-turn blocks up to HBM before its lookup (README Policy study),
    so a lower tier's bytes read are its hits and its prefetches, one 2 MiB block each (16 tokens x 128 KiB), on the
    Bailian sample's chained turns with a 4-block HBM that evicts most prefetched blocks before their use."""
    from conftest import ROOT

    report = _report(run_cli, tmp_path, "--cache-only", "--workload-trace", ROOT / "tests/samples/bailian_qwen_blksz_16.jsonl",
                     "--policy", "lfu", sets=("cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=4",
                                              "cache.inclusion=inclusive", "cache.prefetch=session",
                                              "serving.num_gpu_blocks=4"))
    ssd = report["runs"][0]["metrics"]["tiers"]["ssd"]
    assert ssd["prefetches"] > 0 and ssd["bytes_read"] == (ssd["hits"] + ssd["prefetches"]) * 2 * 2**20
    assert check_report(report) == []


@pytest.mark.parametrize("model, tp, gpus_per_node, copies", [("deepseek-v2-lite", 2, 4, 2), ("qwen3-30b-a3b", 8, 8, 1)])
def test_each_tp_rank_holding_a_copy_sends_it_in_cluster_pd(run_cli, tmp_path, model, tp, gpus_per_node, copies):
    """Two KV layouts where every TP rank holds the same block: DeepSeek's latent is whole on every rank (README
    Configuration); Qwen3-30B-A3B's 4 KV heads at TP 8 sit on two ranks each (vLLM replicates a KV head over
    tp // num_kv_heads ranks). Each rank sends its own copy in a PD transfer (sim/serving/run.py, sim/cluster/run.py).
    ``cluster.block_bytes`` is a block as a lower tier stores it: MLA's latent once (vLLM's replicated_layout), so
    the KV-transfer bytes are blocks x block_bytes x 2; every rank's page, replicated heads included (vLLM's
    CPUOffloadingSpec), so blocks x block_bytes (8 pages of 12,582,912 B). The checker once took them for blocks x
    block_bytes, then counted the copy only for MLA (both found by the random-combination hunt)."""
    trace = _write(tmp_path, "edge.jsonl", EDGE_ROWS)
    report = _report(run_cli, tmp_path, "--cluster", "--pd", "--workload-trace", trace,
                     sets=(f"model={model}", f"serving.tensor_parallel_size={tp}", "serving.num_gpu_blocks=40",
                           "cluster.nodes_per_rack=2", f"hardware.gpus_per_node={gpus_per_node}"))
    cl = report["runs"][0]["metrics"]["cluster"]
    moved = sum(cl["kv_transfer_blocks"].values())
    assert moved > 0 and sum(cl["kv_transfer_bytes"].values()) == moved * cl["block_bytes"] * copies
    if copies == 1:
        assert cl["block_bytes"] == 8 * 48 * 1 * 128 * 2 * 2 * 512 == 100_663_296  # 8 ranks' pages of 1 head
    assert check_report(report) == []


def test_a_max_rate_search_of_one_token_outputs_has_no_tpot_at_any_rate(run_cli, tmp_path):
    """--max-rate over requests of one output token each: no request has a token gap, so TPOT is undefined (null)
    at the run's rate and at each bracket's (``max_rate_search.meets``/``fails`` hold a rate's distributions), the
    same requests at another rate. Found by the random combinations under async scheduling (either value): the
    checker took the brackets' null TPOT for a NaN. A bracket's null TPOT is still flagged when the run has one."""
    trace = _write(tmp_path, "one_token.jsonl", [(t, n, 1, ids) for t, n, _, ids in EDGE_ROWS[:12]])
    report = _report(run_cli, tmp_path, "--max-rate", "--workload-trace", trace, sets=("slo.ttft_s=0.5",))
    metrics = report["runs"][0]["metrics"]
    brackets = [b for b in (metrics["max_rate_search"]["meets"], metrics["max_rate_search"]["fails"]) if b]
    assert metrics["tpot_s"]["mean"] is None and brackets and all(b["tpot_s"]["mean"] is None for b in brackets)
    assert check_report(report) == []
    metrics["tpot_s"] = dict(metrics["ttft_s"])  # as if some request had two tokens: the brackets' nulls are NaNs
    assert any("max_rate_search.meets.tpot_s.mean is null" in v for v in check_report(report))
