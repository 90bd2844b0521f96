"""Settings and flags the chosen mode never reads: each is one short line naming it (exit 2), never accepted and
ignored (each below ran to exit 0, changing nothing but the echoed config). The same table form as
``tests/test_bad_inputs.py`` (``tests/bad_input_helpers.py``); which mode reads which key is ``sim.mode_settings``."""

from __future__ import annotations

import pytest

from tests.bad_input_helpers import AZURE_OK, TRACE_STATS, Case, check_bad_input, trace_stats

CASES: dict[str, Case] = {
    # --set keys the mode never reads (each changed nothing but the echoed config, exit 0)
    "pcie_outside_a_cluster": Case(["--pd", "--no-plot", "--set", "hardware.pcie_gbps=1"],
                                   names=("--set hardware.pcie_gbps", "not used by --pd", "--cluster")),
    "router_threshold_in_pd": Case(["--pd", "--no-plot", "--set", "cluster.cache_threshold=0.3"],
                                   names=("--set cluster.cache_threshold", "not used by --pd")),
    # the single-node mode's prefix-aware router matches each worker's own HBM: no thresholds (ran to exit 0)
    "router_threshold_in_single": Case(["--no-plot", "--set", "serving.num_instances=2", "--set",
                                        "cluster.balance_abs_threshold=0"],
                                       names=("--set cluster.balance_abs_threshold", "not used by the single-node")),
    "router_threshold_without_the_prefix_aware_router": Case(
        ["--cluster", "--no-plot", "--router", "round-robin,least-loaded", "--set", "cluster.cache_threshold=0.3"],
        names=("--set cluster.cache_threshold", "prefix-aware", "round-robin, least-loaded")),
    # a mapping value sets its leaves: pd.num_prefill, which the cache-only replay never reads (exit 0)
    "mapping_value_of_a_section_the_mode_never_reads": Case(["--cache-only", "--no-plot", "--set",
                                                             "pd={num_prefill: 2}"],
                                                            names=("--set pd.num_prefill", "not used by --cache-only")),
    # config.yaml's smoke preset sizes workloads; --check-calibration replays none (exit 0, output unchanged)
    "preset_in_check_calibration": Case(["--check-calibration", "profiles/rtx4090_llama31_8b_vllm.yaml", "--preset",
                                         "smoke"], names=("--preset smoke", "not used by --check-calibration",
                                                          "workload.limit")),
    "gpu_link_in_cache_only": Case(["--cache-only", "--no-plot", "--set", "hardware.gpu_link_gbps=10"],
                                   names=("--set hardware.gpu_link_gbps", "not used by --cache-only")),
    "seed_in_check_calibration": Case(["--check-calibration", "profiles/rtx4090_llama31_8b_vllm.yaml", "--set", "seed=3"],
                                      names=("--set seed", "not used by --check-calibration")),
    "selective_write_depth_without_its_admission": Case(["--cache-only", "--no-plot", "--set",
                                                         "cache.selective_write_depth=3"],
                                                        names=("cache.selective_write_depth", "selective_write")),
    "synthetic_key_beside_a_trace": Case(trace_stats("--set", "workload.synthetic.rate_rps=3"),
                                         names=("workload.synthetic.rate_rps", "no synthetic workload"),
                                         files={"t.csv": AZURE_OK}),
    "block_mismatch_on_a_synthetic_workload": Case([*TRACE_STATS, "--set", "workload.block_mismatch=split"],
                                                   names=("workload.block_mismatch", "synthetic")),
    # only a trace of hash_ids (Mooncake's) has blocks of its own size; an Azure trace's blocks are the cache's
    "block_mismatch_on_a_trace_without_block_ids": Case(trace_stats("--set", "workload.block_mismatch=split"),
                                                        names=("workload.block_mismatch", "the trace", "t.csv",
                                                               "no block ids"), files={"t.csv": AZURE_OK}),
    # --trace-stats sizes no instance: TP and precision change only a Gated DeltaNet hybrid's default block size
    "tensor_parallel_in_trace_stats": Case(trace_stats("--set", "serving.tensor_parallel_size=2"),
                                           names=("--set serving.tensor_parallel_size", "--trace-stats"),
                                           files={"t.csv": AZURE_OK}),
    "all_reduce_in_trace_stats": Case(trace_stats("--set", "serving.all_reduce=nccl"),
                                      names=("--set serving.all_reduce", "--trace-stats"), files={"t.csv": AZURE_OK}),
    "kv_cache_dtype_in_trace_stats_at_a_given_block_size": Case(
        trace_stats("--set", "model=qwen3-next-80b-a3b", "--set", "hardware.gpu=h200", "--set", "serving.block_size=544",
                    "--set", "serving.kv_cache_dtype=fp8"),
        names=("--set serving.kv_cache_dtype", "--trace-stats"), files={"t.csv": AZURE_OK}),
    # ... where it does: the hybrid's state fills a page at its TP and dtype (on an H200: 576 tokens at TP 1 and 2,
    # 320 at TP 4: the report's trace.block_tokens)
    "tensor_parallel_sizes_a_hybrids_block_in_trace_stats": Case(
        trace_stats("--set", "model=qwen3-next-80b-a3b", "--set", "hardware.gpu=h200", "--set",
                    "serving.tensor_parallel_size=4"), skips={}, files={"t.csv": AZURE_OK}),
    "mrc_sample_rate_set_without_mrc": Case(["--cache-only", "--no-plot", "--set", "cache.mrc_sample_rate=0.5"],
                                            names=("cache.mrc_sample_rate", "--mrc")),
    "overlap_set_without_a_learned_policy": Case(["--cache-only", "--no-plot", "--set",
                                                  "cache.allow_train_test_overlap=true"],
                                                 names=("cache.allow_train_test_overlap", "learned")),
    "all_reduce_at_tensor_parallel_1": Case(["--no-plot", "--set", "serving.all_reduce=nccl"],
                                            names=("--set serving.all_reduce", "tensor parallel size 1")),
    # read by nothing: the cache-only replay has no clock (but the learned policy's features), --max-rate's search
    # sets the rate itself (the flag moved only its first probe)
    "rate_scale_with_cache_only": Case(["--cache-only", "--no-plot", "--rate-scale", "7"],
                                       names=("--rate-scale", "no clock", "runs: lru")),
    "rate_scale_set_with_cache_only": Case(["--cache-only", "--no-plot", "--set", "workload.rate_scale=7"],
                                           names=("--set workload.rate_scale", "no clock")),
    "rate_scale_with_max_rate": Case(["--max-rate", "--no-plot", "--rate-scale", "3"],
                                     names=("--rate-scale does nothing with --max-rate",)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_unread_setting(name, run_cli, tmp_path):
    check_bad_input(CASES[name], run_cli, tmp_path)
