"""Settings and flags the chosen mode never reads: each is one short line naming it (exit 2), never accepted and
ignored (each below ran to exit 0, changing nothing but the echoed config). The same table form as
``tests/test_bad_inputs.py`` (``tests/bad_input_helpers.py``); which mode reads which key is ``sim.mode_settings``."""

from __future__ import annotations

import pytest

from tests.bad_input_helpers import AZURE_OK, TRACE_STATS, Case, check_bad_input, mooncake, trace_stats

CASES: dict[str, Case] = {
    # --set keys the mode never reads (each changed nothing but the echoed config, exit 0)
    "pcie_outside_a_cluster": Case(["--pd", "--no-plot", "--set", "hardware.pcie_gbps=1"],
                                   names=("--set hardware.pcie_gbps", "not used by --pd", "--cluster")),
    # --pd's prefill instance is picked by pd.router (least-loaded by default): the thresholds are prefix-aware's
    # --pd's prefill instance is picked by pd.router (least-loaded by default): the thresholds are prefix-aware's
    "cache_threshold_in_pd": Case(["--pd", "--no-plot", "--set", "cluster.cache_threshold=0.3"],
                                  names=("--set cluster.cache_threshold", "prefix-aware", "least-loaded")),
    # --pd's prefill instance is picked by pd.router (least-loaded by default): the balance check is prefix-aware's
    "router_threshold_in_pd": Case(["--pd", "--no-plot", "--set", "pd.num_prefill=2", "--set", "pd.num_decode=1",
                                    "--set", "cluster.balance_abs_threshold=8"],
                                   names=("--set cluster.balance_abs_threshold", "prefix-aware", "least-loaded")),
    "router_threshold_with_one_prefill_instance": Case(
        ["--pd", "--no-plot", "--config", "{tmp}/c.yaml", "--set", "cluster.balance_abs_threshold=8"],
        names=("--set cluster.balance_abs_threshold", "pd.num_prefill is 1"),
        files={"c.yaml": "pd:\n  router: prefix-aware\n"}),
    "router_threshold_in_single_without_the_prefix_aware_router": Case(
        ["--no-plot", "--router", "least-loaded", "--set", "cluster.balance_abs_threshold=0"],
        names=("--set cluster.balance_abs_threshold", "prefix-aware", "least-loaded")),
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
    # a system prompt of 0 tokens: every request's prompt is its own, whichever prompt is picked (exit 0, same hits)
    "num_prefixes_of_empty_system_prompts": Case(
        ["--cache-only", "--no-plot", "--set", "workload.synthetic.kind=system-prompt", "--set",
         "workload.synthetic.prefix_tokens=0", "--set", "workload.synthetic.num_prefixes=2"],
        names=("--set workload.synthetic.num_prefixes", "prefix_tokens is 0")),
    "zipf_alpha_of_empty_system_prompts": Case(
        ["--no-plot", "--set", "workload.synthetic.kind=system-prompt", "--set", "workload.synthetic.prefix_tokens=0",
         "--set", "workload.synthetic.zipf_alpha=3"], names=("--set workload.synthetic.zipf_alpha", "prefix_tokens is 0")),
    "rate_scale_with_max_rate": Case(["--max-rate", "--no-plot", "--rate-scale", "3"],
                                     names=("--rate-scale does nothing with --max-rate",)),
    # a lower tier of capacity 0 is not built (sim.cache.tiers.build_tiers): its timing and policy were read by
    # nothing (each ran to exit 0 with the same metrics)
    "timing_of_a_tier_of_no_capacity": Case(["--no-plot", "--set", "cache.tiers.eic.read_gbps=7"],
                                            names=("--set cache.tiers.eic.read_gbps",
                                                   "cache.tiers.eic.capacity_gib is 0")),
    "policy_of_a_tier_of_no_capacity_in_cache_only": Case(
        ["--cache-only", "--no-plot", "--set", "cache.tiers.dram.capacity_gib=0", "--set",
         "cache.tiers.dram.policy=arc"],
        names=("--set cache.tiers.dram.policy", "cache.tiers.dram.capacity_gib is 0")),
    "latency_of_a_tier_of_no_capacity_in_pd": Case(
        ["--pd", "--no-plot", "--set", "cache.tiers.ssd={capacity_gib: 0, latency_us: 9}"],
        names=("--set cache.tiers.ssd.latency_us", "cache.tiers.ssd.capacity_gib is 0")),
    # without prefix caching nothing is looked up or stored (the pool only counts): the policy and the lower tiers
    # changed nothing (same metrics, exit 0); HBM's capacity still sizes the pool
    "policy_without_prefix_caching": Case(["--no-plot", "--set", "serving.enable_prefix_caching=false", "--set",
                                           "cache.policy=arc"],
                                          names=("--set cache.policy", "serving.enable_prefix_caching=false")),
    "lower_tier_without_prefix_caching_in_a_cluster": Case(
        ["--cluster", "--no-plot", "--set", "serving.enable_prefix_caching=false", "--set",
         "cache.tiers.dram.read_gbps=4"],
        names=("--set cache.tiers.dram.read_gbps", "serving.enable_prefix_caching=false")),
    # the attainment is the target of --max-rate (experiments.maxrate) alone; a run reports its slo_attainment
    "slo_attainment_without_max_rate": Case(["--no-plot", "--set", "slo.ttft_s=1", "--set", "slo.attainment=0.5"],
                                            names=("--set slo.attainment", "--max-rate")),
    # a rack's uplink carries only traffic between racks (sim.cluster.run), and a given uplink replaces the one
    # derived from the oversubscription (each ran to exit 0 with the same metrics)
    "uplink_of_a_single_rack": Case(["--cluster", "--no-plot", "--set", "cluster.uplink_gbps=10"],
                                    names=("--set cluster.uplink_gbps", "cluster.num_racks is 1")),
    "uplink_latency_of_a_single_rack_in_cluster_pd": Case(
        ["--cluster", "--pd", "--no-plot", "--set", "cluster.uplink_latency_us=100"],
        names=("--set cluster.uplink_latency_us", "cluster.num_racks is 1")),
    "oversubscription_beside_a_given_uplink": Case(
        ["--cluster", "--no-plot", "--set", "cluster.num_racks=2", "--set", "cluster.uplink_gbps=10", "--set",
         "cluster.oversubscription=3"], names=("--set cluster.oversubscription", "cluster.uplink_gbps=10")),
    # a node's NIC carries only what crosses nodes or comes from a rack's EIC (sim.cluster.fetch, sim.cluster.run
    # _kv_link): in one node without an EIC the network's figures moved nothing (exit 0, the same metrics)
    "network_bandwidth_of_a_one_node_cluster": Case(
        ["--cluster", "--no-plot", "--set", "cluster.nodes_per_rack=1", "--set", "network.bandwidth_gbps=1"],
        names=("--set network.bandwidth_gbps", "one node")),
    "network_latency_of_a_one_node_cluster_pd": Case(
        ["--cluster", "--pd", "--no-plot", "--set", "cluster.nodes_per_rack=1", "--set", "network.latency_us=500"],
        names=("--set network.latency_us", "one node")),
    # an NS-3 table times every transfer (sim.serving.network.network_model): the analytic figures did nothing
    "network_bandwidth_beside_a_lookup_table": Case(
        ["--pd", "--no-plot", "--set", "network.lookup=profiles/ns3_kv_transfer_100gbps.json", "--set",
         "network.bandwidth_gbps=5"], names=("--set network.bandwidth_gbps", "network.lookup")),
    "network_latency_beside_a_lookup_table_in_a_cluster": Case(
        ["--cluster", "--no-plot", "--set", "network.lookup=profiles/ns3_kv_transfer_100gbps.json", "--set",
         "network.latency_us=50"], names=("--set network.latency_us", "network.lookup")),
    # the cache-only replay has no clock, --trace-stats sizes no instance: neither reads these (exit 0, unchanged)
    "all_reduce_in_cache_only": Case(["--cache-only", "--no-plot", "--set", "serving.tensor_parallel_size=2", "--set",
                                      "serving.all_reduce=nccl"],
                                     names=("--set serving.all_reduce", "not used by --cache-only")),
    # HBM alone (every lower tier of capacity 0) has nothing below it to copy to: the same hits and times (exit 0)
    "inclusion_of_hbm_alone": Case(["--no-plot", "--set", "cache.tiers.dram.capacity_gib=0", "--set",
                                    "cache.tiers.ssd.capacity_gib=0", "--set", "cache.inclusion=inclusive"],
                                   names=("--set cache.inclusion", "no lower tier")),
    # one instance: every router sends every request to it (two --router runs had equal metrics, exit 0)
    "router_of_one_worker": Case(["--no-plot", "--set", "serving.num_instances=1", "--router",
                                  "round-robin,least-loaded"], names=("--router", "one instance")),
    # --cluster --pd: cluster.router picks the prefill instance, one of one rack's pd.num_prefill (the defaults: one),
    # the decode instance pd.decode_router does (three --router runs had equal metrics, exit 0, before hfuzz8)
    "router_of_one_prefill_instance_in_a_cluster": Case(["--cluster", "--pd", "--no-plot", "--router",
                                                         "round-robin,least-loaded"],
                                                        names=("--router", "one prefill instance")),
    "router_threshold_of_one_prefill_instance_in_a_cluster": Case(
        ["--cluster", "--pd", "--no-plot", "--set", "cluster.cache_threshold=0.3"],
        names=("--set cluster.cache_threshold", "one prefill instance")),
    "router_threshold_of_a_one_gpu_cluster": Case(
        ["--cluster", "--no-plot", "--set", "cluster.nodes_per_rack=1", "--set", "hardware.gpus_per_node=1", "--set",
         "cluster.cache_threshold=0.3"], names=("--set cluster.cache_threshold", "one instance")),
    # a session prefetch moves a block up from a lower tier (sim.cache.hooked): over HBM alone it moved nothing, and
    # a workload without session ids (the Azure trace, a RAG workload) never prefetched (the same hits, exit 0)
    "session_prefetch_over_one_tier": Case(["--cache-only", "--no-plot", "--capacity-blocks", "100", "--set",
                                            "cache.prefetch=session"], names=("--set cache.prefetch", "only tier")),
    "session_prefetch_axis_over_one_tier": Case(
        ["--sweep", "{tmp}/s.yaml", "--no-plot"], names=("s.yaml", "axis 'cache.prefetch'", "only tier"),
        files={"s.yaml": "mode: cache-only\nset: {cache.capacity_blocks: 100}\n"
                         "axes: {cache.prefetch: [none, session]}\n"}),
    "session_prefetch_without_sessions": Case(["--cache-only", "--no-plot", "--workload-trace", "{azure}", "--set",
                                               "cache.prefetch=session"],
                                              names=("'cache.prefetch'=session", "azure_conv_2023.csv",
                                                     "no session ids")),
    "gpus_per_node_in_trace_stats": Case([*TRACE_STATS, "--set", "hardware.gpus_per_node=2"],
                                         names=("--set hardware.gpus_per_node", "not used by --trace-stats")),
    # ... but where the TP is read (a hybrid's block size), the node's GPUs bound it: TP 16 needs 16 of them
    "gpus_per_node_bounding_a_hybrids_tp_in_trace_stats": Case(
        trace_stats("--set", "model=qwen3-next-80b-a3b", "--set", "hardware.gpu=h200", "--set",
                    "serving.tensor_parallel_size=16", "--set", "hardware.gpus_per_node=16"), skips={},
        files={"t.csv": AZURE_OK}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_unread_setting(name, run_cli, tmp_path):
    check_bad_input(CASES[name], run_cli, tmp_path)


@pytest.mark.parametrize("argv", [
    ["--cluster", "--set", "cluster.num_racks=2", "--set", "cluster.uplink_gbps=10"],  # (no oversubscription given)
    ["--cluster", "--set", "cluster.num_racks=2", "--set", "network.lookup=profiles/ns3_kv_transfer_100gbps.json",
     "--set", "network.bandwidth_gbps=50"],  # (the racks' uplinks are derived from it)
    ["--set", "cache.tiers.eic.capacity_gib=1", "--set", "cache.tiers.eic.read_gbps=7"],
    ["--cluster", "--set", "cluster.nodes_per_rack=1", "--set", "cache.tiers.eic.capacity_gib=1", "--set",
     "network.bandwidth_gbps=1"],  # (the rack's EIC is read over the node's NIC)
    ["--set", "serving.enable_prefix_caching=false", "--set", "cache.tiers.hbm.capacity_gib=20"],
    # (a tier's capacity is still checked, "holds no KV block: give 0", so it may be given)
    ["--set", "serving.enable_prefix_caching=false", "--set", "cache.tiers.dram.capacity_gib=0"],
    ["--max-rate", "--set", "slo.ttft_s=5", "--set", "slo.attainment=0.5"],
    ["--set", "serving.num_instances=2", "--router", "round-robin"],
    ["--set", "serving.num_instances=2", "--set", "cluster.balance_abs_threshold=0"],  # (the prefix-aware router's)
    ["--set", "serving.num_instances=2", "--set", "cluster.cache_threshold=0.3"],
    # (one prefill instance, but a prefix-aware decode router choosing between two decode instances checks balance)
    ["--pd", "--set", "pd.num_decode=2", "--set", "pd.decode_router=prefix-aware", "--set",
     "cluster.balance_abs_threshold=0"],
    ["--cluster", "--pd", "--set", "cluster.num_racks=2", "--router", "round-robin"],  # (a prefill instance a rack)
    ["--set", "workload.synthetic.kind=system-prompt", "--set", "workload.synthetic.prefix_tokens=0"],
    # (multi-turn sessions, DRAM and SSD below HBM; conversations that return within the 20 requests: at the default
    # 93 s think time all 20 were first turns, with nothing to prefetch)
    ["--cache-only", "--set", "cache.prefetch=session", "--set", "workload.synthetic.think_time_median_s=1"],
    ["--set", "cache.tiers.dram.capacity_gib=0", "--set", "cache.tiers.ssd.capacity_gib=1", "--set",
     "cache.inclusion=inclusive"],
], ids=["uplink_of_two_racks", "bandwidth_beside_a_table_derives_uplinks", "tier_with_capacity",
        "nic_of_one_node_beside_an_eic",
        "hbm_sizes_the_pool_without_caching", "tier_capacity_without_caching",
        "attainment_with_max_rate",
        "router_of_two_workers", "balance_check_of_two_workers", "cache_threshold_of_two_workers", "balance_check_of_two_decode_instances", "router_of_two_racks_prefill_instances", "empty_system_prompts", "prefetch_of_sessions_over_lower_tiers", "inclusion_over_a_lower_tier"])
def test_the_same_settings_where_they_are_read_run(argv, run_cli):
    """The rules above refuse a setting only where nothing reads it: beside what reads it, the run goes on."""
    status, _, err = run_cli("--no-plot", "--quiet", "--set", "workload.synthetic.num_requests=20", *argv)
    assert status == 0, err[-2000:]


def test_the_cache_only_replay_takes_the_time_unit_its_trace_needs(run_cli, tmp_path):
    """A trace's unit scales every timestamp alike, so the replay's hits do not depend on it, but the loader reads it
    to take the file at all: Mooncake timestamps in microseconds over 14 days, read as its milliseconds, span 38
    years (more than the 34 allowed) and the run exits 2 telling the user to pass --workload-time-unit us; that flag
    was then refused as unread in --cache-only ("no clock"), leaving no way to replay the file."""
    trace = tmp_path / "m.jsonl"
    trace.write_text(mooncake(0, 600, 5, [1, 2]) + mooncake(10**12, 1000, 7, [1, 2]) + mooncake(12 * 10**11, 512, 9, [3]))
    status, _, err = run_cli("--cache-only", "--no-plot", "--quiet", "--workload-trace", trace)
    assert status == 2 and "--workload-time-unit us" in err, err
    status, _, err = run_cli("--cache-only", "--no-plot", "--quiet", "--workload-trace", trace, "--workload-time-unit",
                             "us")
    assert status == 0, err[-2000:]
