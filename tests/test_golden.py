"""Golden metrics: speed-ups and restructures change no result.

Each case runs ``main.py`` in-process and compares every metric of every run (and the trace
provenance) with ``tests/golden/<case>.json``, written before the change. A model change
that alters them regenerates them in its own commit, saying why:

    KVSIM_REGEN_GOLDEN=1 python -m pytest tests/test_golden.py

Floats compare to 1e-9 relative (summation order may differ between equivalent
implementations); integers and strings exactly.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from report_invariants import check_report

from tests.conftest import BUNDLED_AZURE

GOLDEN = Path(__file__).resolve().parent / "golden"
REGEN = os.environ.get("KVSIM_REGEN_GOLDEN") == "1"
MOONCAKE = "traces/mooncake_conversation.jsonl"
SHAREGPT = "traces/llmservingsim_sharegpt_llama31_8b_300.jsonl"
# An empty start (no conversation under way): the stationary one, at turns_mean 10, is dominated by long chats cut to
# the model's context, which would leave these cases little to compare.
MULTI_TURN = ["--set", "workload.synthetic.kind=multi-turn", "--set", "workload.synthetic.start=empty",
              "--set", "workload.synthetic.num_requests=600",
              "--set", "workload.synthetic.turns_mean=10", "--set", "workload.synthetic.think_time_median_s=8",
              "--set", "workload.synthetic.rate_rps=8",
              "--set", "workload.synthetic.input_tokens_mean=400"]

# case name -> (needs shared data, argv with {shared} for the data folder)
CASES: dict[str, tuple[bool, list[str]]] = {
    "azure_trace_stats": (False, ["--trace-stats", "--workload-trace", str(BUNDLED_AZURE)]),
    "azure_single_smoke": (False, ["--preset", "smoke", "--workload-trace", str(BUNDLED_AZURE)]),
    "azure_pd_smoke": (False, ["--pd", "--preset", "smoke", "--workload-trace", str(BUNDLED_AZURE)]),
    "azure_pd_2p2d_layerwise": (False, ["--pd", "--preset", "smoke", "--workload-trace", str(BUNDLED_AZURE),
                                        "--set", "pd.num_prefill=2", "--set", "pd.num_decode=2",
                                        "--set", "pd.transfer=layerwise"]),
    "multi_turn_single_tiers": (False, [*MULTI_TURN, "--set", "serving.num_gpu_blocks=1200",
                                        "--set", "cache.tiers.dram.capacity_gib=2", "--set", "cache.tiers.ssd.capacity_gib=4",
                                        "--policy", "lru,arc,belady"]),
    "multi_turn_pd_pull": (False, ["--pd", *MULTI_TURN, "--set", "serving.num_gpu_blocks=1500",
                                   "--set", "pd.transfer=pull", "--set", "slo.ttft_s=0.5", "--set", "slo.tpot_s=0.05"]),
    "multi_turn_cache_only_tiers": (False, ["--cache-only", *MULTI_TURN, "--set", "cache.access_semantics=prefix",
                                            "--set", "cache.tiers.hbm.capacity_gib=0.5",
                                            "--set", "cache.tiers.dram.capacity_gib=1",
                                            "--set", "cache.tiers.ssd.capacity_gib=2",
                                            "--policy", "lru,fifo,lfu,arc,s3fifo,sieve,belady"]),
    "multi_turn_cluster_routers": (False, ["--cluster", *MULTI_TURN, "--set", "cluster.num_racks=2",
                                           "--set", "cluster.nodes_per_rack=2", "--set", "hardware.gpus_per_node=2",
                                           "--set", "serving.num_gpu_blocks=600",
                                           "--set", "cache.tiers.dram.capacity_gib=0.5",
                                           "--set", "cache.tiers.ssd.capacity_gib=0",
                                           "--set", "cache.tiers.eic.capacity_gib=1",
                                           "--router", "round-robin,least-loaded,session-affinity,prefix-aware,"
                                                       "precise-prefix"]),
    "multi_turn_cluster_pd": (False, ["--cluster", "--pd", *MULTI_TURN, "--set", "cluster.num_racks=2",
                                      "--set", "cluster.nodes_per_rack=1", "--set", "hardware.gpus_per_node=2",
                                      "--set", "serving.num_gpu_blocks=800", "--set", "cache.tiers.dram.capacity_gib=0.5",
                                      "--set", "cache.tiers.ssd.capacity_gib=0", "--set", "cache.tiers.eic.capacity_gib=1"]),
    "multi_turn_moe_dp_pd": (False, ["--pd", *MULTI_TURN, "--set", "model=qwen3-30b-a3b",
                                     "--set", "serving.data_parallel_size=2", "--set", "pd.num_prefill=2",
                                     "--set", "pd.num_decode=2", "--set", "serving.num_gpu_blocks=1500"]),
    "mooncake_cache_only_1k": (True, ["--cache-only", "--workload-trace", "{shared}/" + MOONCAKE,
                                      "--set", "serving.block_size=512", "--capacity-blocks", "1000",
                                      "--policy", "lru,fifo,lfu,arc,s3fifo,sieve,belady"]),
    "mooncake_cache_only_20k": (True, ["--cache-only", "--workload-trace", "{shared}/" + MOONCAKE,
                                       "--set", "serving.block_size=512", "--capacity-blocks", "20000",
                                       "--policy", "lru,fifo,lfu,arc,s3fifo,sieve,belady"]),
    "mooncake_mrc": (True, ["--cache-only", "--mrc", "--workload-trace", "{shared}/" + MOONCAKE,
                            "--set", "serving.block_size=512"]),
    "sharegpt_vllm_rtx4090": (True, ["--calibration-profile", "profiles/rtx4090_llama31_8b_vllm.yaml",
                                     "--workload-trace", "{shared}/" + SHAREGPT]),
}


def _observed(report: dict) -> dict:
    trace = dict(report["trace"] or {})
    trace.pop("path", None)  # where the data folder lives differs between machines
    return {"mode": report["mode"], "trace": trace, "runs": report["runs"]}


def _compare(got, want, where: str) -> list[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        diffs = [f"{where}.{k}: missing" for k in want if k not in got]
        diffs += [f"{where}.{k}: unexpected" for k in got if k not in want]
        for k in want:
            if k in got:
                diffs += _compare(got[k], want[k], f"{where}.{k}")
        return diffs
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{where}: length {len(got)} != {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want, strict=True)) for d in _compare(g, w, f"{where}[{i}]")]
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        ok = math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
        return [] if ok else [f"{where}: {got!r} != {want!r}"]
    return [] if got == want and type(got) is type(want) else [f"{where}: {got!r} != {want!r}"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_metrics(case, request, tmp_path, run_cli):
    needs_shared, argv = CASES[case]
    shared = request.getfixturevalue("shared_data") if needs_shared else None
    argv = [a.replace("{shared}", str(shared)) for a in argv]
    out = tmp_path / "report.json"
    status, _, err = run_cli(*argv, "--report-json", out, "--no-plot", "--quiet")
    assert status == 0, err
    report = json.loads(out.read_text())
    assert check_report(report) == []  # a golden must be a consistent report, e.g. each tier reads what it serves
    observed = _observed(report)
    path = GOLDEN / f"{case}.json"
    if REGEN:
        path.write_text(json.dumps(observed, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"regenerated {path.name}")
    assert path.is_file(), f"no golden file {path}; run with KVSIM_REGEN_GOLDEN=1 once"
    diffs = _compare(observed, json.loads(path.read_text()), case)
    assert not diffs, f"{len(diffs)} metric(s) differ from {path.name}:\n" + "\n".join(diffs[:30])
