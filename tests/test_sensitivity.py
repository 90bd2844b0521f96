"""Every config key changes some run's result, or is listed with the reason it cannot here.

PITFALLS: knobs that silently did nothing (SimAI's CC_MODE, astra-sim's topology, an MoE model run as dense).
A new config key must be classified below: a case that shows it matters (the run's metrics differ when only it
changes), a condition under which alone it matters (and the test that covers that), or a plain statement
that kvsim does not model it (which users can read in README/config.yaml too).
"""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest

from sim.config import Config
from sim.mode_settings import SINGLE_TIER_IGNORES

# A small workload that exercises every tier: HBM holds 600 blocks, the lower tiers a few dozen each, and
# (unless a case picks another kind) conversations come back within seconds.
WORKLOAD = ["workload.synthetic.num_requests=200", "workload.synthetic.rate_rps=40", "serving.num_gpu_blocks=600",
            "cache.tiers.dram.capacity_gib=0.02", "cache.tiers.ssd.capacity_gib=0.05", "cache.tiers.eic.capacity_gib=0.05"]
# An empty start: the stationary one, at 6 turns, opens on long chats whose histories leave the small tiers no hits
MULTI_TURN = ["workload.synthetic.turns_mean=6", "workload.synthetic.think_time_median_s=3",
              "workload.synthetic.start=empty"]
MODE_FLAGS = {"cache-only": ["--cache-only"], "mrc": ["--cache-only", "--mrc"], "single": [], "pd": ["--pd"],
              "cluster": ["--cluster"]}
NO_HBM_OVERRIDE = ["serving.num_gpu_blocks=null"]  # HBM from GPU memory
# Round-robin over two racks sends a conversation's turns across racks; a node DRAM large enough to keep what HBM
# demotes gives the later turns something to fetch from the other rack (33 blocks cross the uplink).
TWO_RACKS = ["cluster.num_racks=2", "cluster.nodes_per_rack=1", "hardware.gpus_per_node=2", "cluster.router=round-robin",
             "cache.tiers.dram.capacity_gib=0.5"]
# A lower tier's policy matters only where the tier sees reuse: an inclusive hierarchy whose lower tiers are larger
# than HBM (exclusive: a hit moves the block up, so a lower tier holds each block once, in arrival order).
INCLUSIVE = ["cache.inclusion=inclusive", "serving.num_gpu_blocks=200", "cache.tiers.dram.capacity_gib=2",
             "cache.tiers.ssd.capacity_gib=4"]
INCLUSIVE_EIC = ["cache.inclusion=inclusive", "serving.num_gpu_blocks=200", "cache.tiers.dram.capacity_gib=0",
                 "cache.tiers.ssd.capacity_gib=0", "cache.tiers.eic.capacity_gib=2"]
# No DRAM or SSD: what HBM demotes goes to the EIC, whose hits then load. (With the default tiers this small run had
# 30 EIC hits, which depended on what its 7 preemptions left in the cache: since prefix_match.prefix_hit stopped
# counting a preempted request's partial prompt block, it has none.)
EIC_ONLY = ["cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0"]

# key -> (mode, settings both runs share, the changed value)
CASES: dict[str, tuple[str, list[str], str]] = {
    "model": ("single", [], "qwen2-7b"),
    "seed": ("cache-only", [], "1"),
    "hardware.gpu": ("single", [], "a100-80gb"),
    "hardware.gpus_per_node": ("cluster", [], "16"),
    "hardware.gpu_link_gbps": ("single", ["serving.tensor_parallel_size=2"], "10"),
    "hardware.gpu_link_latency_us": ("single", ["serving.tensor_parallel_size=2"], "500"),
    "hardware.pcie_gbps": ("cluster", TWO_RACKS, "0.5"),  # (a block fetched from another node crosses its PCIe)
    "serving.tensor_parallel_size": ("single", [], "2"),
    "serving.data_parallel_size": ("single", ["model=qwen3-30b-a3b"], "2"),
    "serving.enable_expert_parallel": ("single", ["model=qwen3-30b-a3b", "serving.data_parallel_size=2",
                                                  "serving.tensor_parallel_size=2"], "false"),
    "serving.block_size": ("cache-only", [], "32"),
    "serving.max_num_seqs": ("single", [], "4"),
    "serving.max_num_batched_tokens": ("single", [], "16384"),
    "serving.gpu_memory_utilization": ("single", NO_HBM_OVERRIDE, "0.5"),
    "serving.num_gpu_blocks": ("single", [], "300"),
    "serving.enable_prefix_caching": ("single", [], "false"),
    "serving.num_instances": ("single", [], "2"),
    "serving.dtype": ("single", NO_HBM_OVERRIDE, "fp8"),
    "serving.kv_cache_dtype": ("single", [], "fp8"),
    "serving.max_model_len": ("single", [], "2048"),
    "serving.scheduler_reserve_full_isl": ("single", ["serving.num_gpu_blocks=300", "serving.max_num_batched_tokens=512",
                                                      "serving.max_num_seqs=256"],
                                           "false"),
    "serving.async_scheduling": ("single", [], "false"),
    "serving.all_reduce": ("single", ["serving.tensor_parallel_size=4", "serving.num_instances=2"], "nccl"),  # (an H100 board's NVLink kernels)
    # a hybrid model: its sliding layers keep the window's blocks only (hybrid manager) or all of them
    # (twice the blocks: the hybrid manager admits a request with its window's sliding blocks beside its full ones)
    "serving.enforce_eager": ("single", NO_HBM_OVERRIDE, "true"),  # no CUDA graphs' memory: more KV blocks
    "serving.disable_hybrid_kv_cache_manager": ("single", ["model=gpt-oss-20b", "serving.num_gpu_blocks=3000"], "true"),
    # a multimodal model without its vision tower's weights and encoder pass: more KV blocks from the same memory
    "serving.language_model_only": ("single", [*NO_HBM_OVERRIDE, "model=gemma-3-4b"], "true"),
    "cache.policy": ("cache-only", [], "belady"),
    "cache.inclusion": ("cache-only", [], "inclusive"),
    "cache.access_semantics": ("cache-only", [], "prefix"),
    "cache.capacity_blocks": ("cache-only", [], "100"),
    "cache.mrc_sample_rate": ("mrc", [], "0.5"),
    "cache.admission": ("cache-only", [], "selective_write"),
    "cache.selective_write_depth": ("cache-only", ["cache.admission=selective_write"], "2"),
    "cache.prefetch": ("cache-only", [], "session"),
    "cache.insert_outputs": ("cache-only", [], "true"),
    "cache.tiers.hbm.capacity_gib": ("single", NO_HBM_OVERRIDE, "0.5"),
    "cache.tiers.hbm.policy": ("cache-only", [], "lfu"),
    "cache.tiers.dram.capacity_gib": ("cache-only", [], "0.05"),
    "cache.tiers.dram.read_gbps": ("single", [], "0.5"),
    "cache.tiers.dram.write_gbps": ("single", [], "0.5"),  # tiers.dram.write_utilization_max
    "cache.tiers.dram.shared_read_gbps": ("single", [], "0.01"),
    "cache.tiers.dram.latency_us": ("single", [], "5000"),
    "cache.tiers.dram.policy": ("cache-only", INCLUSIVE, "fifo"),
    "cache.tiers.ssd.capacity_gib": ("cache-only", [], "0.1"),
    "cache.tiers.ssd.read_gbps": ("single", [], "0.5"),
    "cache.tiers.ssd.write_gbps": ("single", [], "0.5"),  # tiers.ssd.write_utilization_max
    "cache.tiers.ssd.shared_read_gbps": ("single", [], "0.01"),
    "cache.tiers.ssd.latency_us": ("single", [], "5000"),
    "cache.tiers.ssd.policy": ("cache-only", INCLUSIVE, "fifo"),
    "cache.tiers.eic.capacity_gib": ("cluster", [], "0.5"),
    "cache.tiers.eic.read_gbps": ("single", EIC_ONLY, "0.5"),
    "cache.tiers.eic.write_gbps": ("single", [], "0.5"),  # tiers.eic.write_utilization_max
    "cache.tiers.eic.shared_read_gbps": ("single", EIC_ONLY, "0.01"),
    "cache.tiers.eic.latency_us": ("single", EIC_ONLY, "5000"),
    "cache.tiers.eic.policy": ("cache-only", INCLUSIVE_EIC, "fifo"),
    # a KV head on 2 ranks (4 heads, TP 8): the EIC holds twice the blocks, written at half the bytes
    "cache.tiers.eic.layout": ("single", [*EIC_ONLY, "model=qwen3-30b-a3b", "serving.tensor_parallel_size=8",
                                          "hardware.gpus_per_node=8", "serving.num_instances=1"], "distinct"),
    "compute.flops_efficiency": ("single", [], "0.3"),
    "compute.bandwidth_efficiency": ("single", [], "0.4"),
    "compute.attention_efficiency": ("single", [], "0.05"),
    "compute.gemm_floor_us": ("single", [], "200"),
    "compute.attention_floor_us": ("single", [], "500"),
    "compute.attention_tile_us": ("single", [], "500"),
    "compute.host_step_us": ("single", ["serving.async_scheduling=false"], "2000"),  # (async: hidden under the GPU)
    "compute.host_sequence_us": ("single", ["serving.async_scheduling=false"], "300"),
    "compute.launch_layer_us": ("single", ["serving.enforce_eager=true"], "2000"),
    "network.bandwidth_gbps": ("pd", [], "5"),
    "network.latency_us": ("pd", [], "500"),
    "network.contention": ("pd", [], "false"),
    "cluster.num_racks": ("cluster", [], "2"),
    "cluster.nodes_per_rack": ("cluster", [], "2"),
    "cluster.router": ("cluster", [], "round-robin"),
    "cluster.uplink_gbps": ("cluster", TWO_RACKS, "1"),
    "cluster.oversubscription": ("cluster", TWO_RACKS, "400"),
    "cluster.uplink_latency_us": ("cluster", TWO_RACKS, "50000"),
    "cluster.cache_threshold": ("cluster", [], "0.25"),
    "cluster.balance_abs_threshold": ("cluster", ["cluster.nodes_per_rack=2"], "0"),
    "cluster.balance_rel_threshold": ("cluster", ["cluster.nodes_per_rack=2", "cluster.balance_abs_threshold=0"], "50"),
    "pd.num_prefill": ("pd", [], "2"),
    "pd.num_decode": ("pd", [], "2"),
    "pd.transfer": ("pd", [], "layerwise"),
    "pd.router": ("pd", ["pd.num_prefill=2"], "round-robin"),
    "pd.decode_router": ("pd", ["pd.num_decode=2"], "prefix-aware"),
    "pd.prefill_tensor_parallel_size": ("pd", [], "2"),
    "pd.decode_tensor_parallel_size": ("pd", [], "2"),
    "workload.trace": ("cache-only", [], "trace/data/azure_conv_2023.csv"),
    "workload.limit": ("cache-only", [], "50"),
    "workload.max_input_tokens": ("cache-only", [], "300"),
    "workload.max_request_tokens": ("cache-only", [], "1500"),
    "workload.range_start": ("cache-only", [], "0.5"),
    "workload.range_end": ("cache-only", [], "0.5"),
    "workload.rate_scale": ("single", [], "0.5"),
    "workload.outputs_in_next_turn": ("single", [], "false"),
    "workload.arrivals.process": ("single", [], "poisson"),
    "workload.arrivals.rate_rps": ("single", ["workload.arrivals.process=poisson"], "5"),
    "workload.arrivals.cv": ("single", ["workload.arrivals.process=gamma"], "3"),
    "workload.synthetic.kind": ("cache-only", ["workload.synthetic.kind=multi-turn"], "system-prompt"),
    "workload.synthetic.num_requests": ("cache-only", [], "150"),
    "workload.synthetic.rate_rps": ("single", [], "10"),
    "workload.synthetic.input_tokens_mean": ("cache-only", [], "2048"),
    "workload.synthetic.output_tokens_mean": ("single", [], "400"),
    "workload.synthetic.num_sessions": ("single", ["workload.synthetic.kind=agentic"], "7"),
    "workload.synthetic.turns_mean": ("cache-only", [], "2"),
    "workload.synthetic.turns_concentration": ("cache-only", [], "2"),
    "workload.synthetic.think_time_median_s": ("cache-only", [], "60"),
    "workload.synthetic.think_time_sigma": ("single", [], "0.2"),
    "workload.synthetic.start": ("cache-only", [], "steady"),
    "workload.synthetic.num_prefixes": ("cache-only", ["workload.synthetic.kind=system-prompt"], "3"),
    "workload.synthetic.prefix_tokens": ("cache-only", ["workload.synthetic.kind=system-prompt"], "300"),
    "workload.synthetic.num_documents": ("cache-only", ["workload.synthetic.kind=rag"], "40"),
    "workload.synthetic.document_tokens": ("cache-only", ["workload.synthetic.kind=rag"], "700"),
    "workload.synthetic.documents_per_request": ("cache-only", ["workload.synthetic.kind=rag"], "3"),
    "workload.synthetic.zipf_alpha": ("cache-only", ["workload.synthetic.kind=rag"], "0.2"),
    "slo.ttft_s": ("single", [], "0.05"),
    "slo.tpot_s": ("single", [], "0.01"),
}

# key -> the condition under which alone it matters, and where that is tested
CONDITIONAL: dict[str, str] = {
    "cache.learned_model": "read by the learned policy only (tests/test_learned.py)",
    "cache.allow_train_test_overlap": "lets a learned model judge its own training range (tests/test_learned.py)",
    "compute.backend": "profiled needs compute.profile (tests/test_compute.py, tests/test_calibration.py)",
    "compute.profile": "a profile directory (tests/test_compute.py, tests/test_profile_gpu.py)",
    "compute.collectives": "a measured collectives table (tests/test_collectives.py)",
    "compute.skew_correction": "LLMServingSim bundles only (tests/test_skew.py)",
    "network.lookup": "an NS-3 table (tests/test_network.py)",
    "workload.format": "an explicit format reads the same file as auto does, or refuses it (tests/test_bad_trace_inputs.py)",
    "workload.cache": "a cached workload gives identical reports by design (tests/test_workload_cache.py)",
    "workload.time_unit": "numeric timestamps of a trace file (tests/test_loaders.py)",
    "workload.strict_validation": "a trace with bad rows: the first is an error (tests/test_bad_trace_inputs.py)",
    "workload.block_mismatch": "a trace with its own block ids, e.g. Mooncake (tests/test_loaders.py)",
    "slo.attainment": "the target of --max-rate (tests/test_maxrate.py)",
}

# key -> why kvsim does not use it (say so in config.yaml as well)
NOT_MODELLED: dict[str, str] = {
    "cache.tiers.hbm.read_gbps": "an HBM hit is the GPU's own memory: no load time is charged",
    "cache.tiers.hbm.latency_us": "an HBM hit is the GPU's own memory: no load time is charged",
    "cache.tiers.hbm.write_gbps": "HBM is the GPU's own memory: its traffic is not charged or reported",
    "cache.tiers.hbm.shared_read_gbps": "an HBM hit is the GPU's own memory: no load time is charged",
}


@pytest.mark.parametrize("key", sorted(NOT_MODELLED))
def test_a_key_no_mode_reads_is_refused_when_set(run_cli, key):
    status, _, err = run_cli("--preset", "smoke", "--no-plot", "--set", f"{key}=1")
    assert status == 2 and f"--set {key}: no mode reads it" in err, err


def _leaves(cls, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += _leaves(hints[f.name], f"{prefix}{f.name}.")
        elif f.name != "presets":
            out.append(prefix + f.name)
    return out


def test_every_config_key_is_classified():
    keys = _leaves(Config)
    classified = [*CASES, *CONDITIONAL, *NOT_MODELLED]
    assert len(classified) == len(set(classified)), "a key classified twice"
    assert sorted(set(keys) - set(classified)) == [], "new config keys: add a case that shows each matters"
    assert sorted(set(classified) - set(keys)) == [], "classified keys that no longer exist"


def _metrics(run_cli, tmp_path, mode: str, sets: list[str], name: str) -> str:
    out = tmp_path / f"{name}.json"
    argv = [*MODE_FLAGS[mode], "--preset", "smoke", "--quiet", "--no-plot", "--report-json", out]
    other_kind = any(a.startswith("workload.synthetic.kind=") for a in sets)
    workload = WORKLOAD
    if any(a.startswith("cache.capacity_blocks=") for a in sets):  # one tier of that many blocks: no others to set
        workload = [a for a in WORKLOAD if not a.startswith(SINGLE_TIER_IGNORES)]
    if "serving.enable_prefix_caching=false" in sets or mode == "mrc":  # nothing cached / no policy: no tier to size
        workload = [a for a in WORKLOAD if not a.startswith("cache.")]
    synthetic = [*workload, *([] if other_kind else MULTI_TURN)]
    if any(a.startswith("workload.trace=") for a in sets):  # a trace replayed: no synthetic workload to set
        synthetic = [a for a in synthetic if not a.startswith("workload.synthetic.")]
    for assignment in [*synthetic, *sets]:
        argv += ["--set", assignment]
    status, _, err = run_cli(*argv)
    assert status == 0, err[-2000:]
    return json.dumps([run["metrics"] for run in json.loads(out.read_text())["runs"]], sort_keys=True)


@pytest.mark.parametrize("key", sorted(CASES))
def test_the_key_changes_the_result(run_cli, tmp_path, key):
    mode, shared, value = CASES[key]
    before = _metrics(run_cli, tmp_path, mode, shared, "before")
    after = _metrics(run_cli, tmp_path, mode, [*shared, f"{key}={value}"], "after")
    assert before != after, f"{key}={value} changed nothing in {mode} mode"
