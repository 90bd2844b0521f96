"""Every bad input is one short line naming the file/row/key/flag (exit 2), or a counted skip (exit 0).

One table: each row is a command line (with the files it writes into tmp_path) and its expected
outcome (``tests/bad_input_helpers.py``). Calibration inputs (profiles, network tables) have their own
table in ``tests/test_bad_calibration_inputs.py``, trace files theirs in ``tests/test_bad_trace_inputs.py``, paths of
inputs and outputs theirs in ``tests/test_bad_paths.py``, sweep specs and plan files theirs in
``tests/test_bad_plan_sweep_inputs.py``.
"""

from __future__ import annotations

import json

import pytest

from tests.bad_input_helpers import (
    AZURE_HEADER,
    AZURE_OK,
    MOONCAKE_OK,
    TRACE_STATS,
    Case,
    check_bad_input,
    mooncake,
    setting,
    trace_stats,
)

# a mode that reads the serving, cache-timing and SLO keys (--trace-stats, the default, refuses them by mode before
# their values are checked); a value error comes before the trace is read
SERVING = ("--no-plot",)
ALIAS_BOMB = "[&a0 [1,1,1,1,1,1,1,1,1], " + ", ".join(f"&a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)) + "]"

# Llama 3 8B's config.json (huggingface.co/meta-llama/Meta-Llama-3-8B), its context cut to one token
HF_LLAMA_ONE_TOKEN = json.dumps({
    "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
    "max_position_embeddings": 1, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "torch_dtype": "bfloat16", "vocab_size": 128256})

CASES: dict[str, Case] = {
    # ---- values outside their domain (one declared domain per field, one walker)
    "block_size_zero": setting("serving.block_size=0", "0"),
    "tensor_parallel_zero": setting("serving.tensor_parallel_size=0"),
    "max_num_seqs_zero": setting("serving.max_num_seqs=0", mode=("--pd",)),
    "gpu_memory_utilization_above_1": setting("serving.gpu_memory_utilization=1.5", "1.5",
                                              mode=("--cache-only", "--no-plot")),
    "tp_does_not_divide_heads": setting("serving.tensor_parallel_size=3", "attention heads"),
    "tp_above_gpus_per_node": Case(["--set", "model=llama-3.1-70b", "--set", "serving.tensor_parallel_size=16"],
                                   names=("serving.tensor_parallel_size", "hardware.gpus_per_node")),
    "instances_exceed_node": Case(["--set", "serving.num_instances=8", "--set", "serving.tensor_parallel_size=2"],
                                  names=("serving.num_instances",)),
    # single-node PD: both pools share the node, as the single-node mode's workers do (12 GPUs asked of 8)
    "pd_pools_exceed_node": Case(["--pd", "--set", "pd.num_prefill=6", "--set", "pd.num_decode=6"],
                                 names=("pd.num_prefill", "pd.num_decode", "12 GPUs", "hardware.gpus_per_node")),
    "pd_pools_with_tp_exceed_node": Case(["--pd", "--set", "model=llama-3.1-70b", "--set", "serving.tensor_parallel_size=4",
                                          "--set", "pd.num_prefill=2", "--set", "pd.num_decode=1"],
                                         names=("pd.num_prefill", "tensor_parallel_size 4", "12 GPUs")),
    "data_parallel_dense_model": setting("serving.data_parallel_size=2", "mixture-of-experts", "llama-3.1-8b"),
    "data_parallel_beyond_node": Case([*TRACE_STATS, "--set", "model=qwen3-30b-a3b", "--set",
                                       "serving.data_parallel_size=16"],
                                      names=("serving.data_parallel_size", "hardware.gpus_per_node")),
    "data_parallel_splits_instances": Case(["--quiet", "--no-plot", "--set", "model=qwen3-30b-a3b", "--set",
                                            "serving.data_parallel_size=2", "--set", "serving.num_instances=3"],
                                           names=("serving.num_instances", "serving.data_parallel_size")),
    "data_parallel_splits_pd_pool": Case(["--pd", "--quiet", "--no-plot", "--set", "model=qwen3-30b-a3b",
                                          "--set", "serving.data_parallel_size=2", "--set", "pd.num_prefill=1",
                                          "--set", "pd.num_decode=2"],
                                         names=("pd.num_prefill", "serving.data_parallel_size")),
    # cluster PD: pools of 6 and 3 split into groups of 3, but 8 instances a node would put a group on two nodes
    "data_parallel_group_across_nodes": Case(["--cluster", "--pd", "--quiet", "--no-plot", "--set",
                                              "model=qwen3-30b-a3b", "--set", "serving.data_parallel_size=3",
                                              "--set", "pd.num_prefill=6", "--set", "pd.num_decode=3",
                                              "--set", "cluster.nodes_per_rack=2"],
                                             names=("instances per node", "serving.data_parallel_size")),
    "num_instances_million": setting("serving.num_instances=1000000", "1000000", mode=()),
    "negative_tier_latency": setting("cache.tiers.dram.latency_us=-5", "got -5", mode=SERVING),
    "negative_network_latency": setting("network.latency_us=-1", mode=("--pd",)),
    "negative_bandwidth": setting("network.bandwidth_gbps=-100", mode=("--pd",)),
    "zero_tier_bandwidth": setting("cache.tiers.ssd.read_gbps=0", "got 0", mode=SERVING),
    "negative_capacity": setting("cache.tiers.dram.capacity_gib=-1", mode=("--cache-only",)),
    "slo_attainment_zero": setting("slo.attainment=0", "got 0", mode=SERVING),
    "slo_attainment_above_1": setting("slo.attainment=1.01", "got 1.01", mode=SERVING),
    "slo_ttft_negative": setting("slo.ttft_s=-0.5", "got -0.5", mode=SERVING),
    "nan_value": setting("network.latency_us=.nan", "nan", mode=("--pd",)),
    # physical bounds (sim.config): past them a capacity overflowed to NaN blocks (traceback), a transfer of ~1e300 s
    # stalled the engine (traceback) or left negative queue times, and a subnormal rate or efficiency hung the run
    # a lower tier of less than one block was left out unsaid (HBM's was refused); 0 is the way to have none
    "dram_capacity_below_a_block": setting("cache.tiers.dram.capacity_gib=1e-9", "holds no KV block", "give 0",
                                           mode=("--cache-only",)),
    "eic_capacity_below_a_block_in_a_cluster": setting("cache.tiers.eic.capacity_gib=1e-9", "holds no KV block",
                                                       mode=("--cluster", "--no-plot", "--workload-limit", "5")),
    "tier_capacity_beyond_an_exbibyte": setting("cache.tiers.dram.capacity_gib=1e300", "1,073,741,824", mode=("--cache-only",)),
    "eic_capacity_beyond_an_exbibyte": setting("cache.tiers.eic.capacity_gib=1e300", mode=("--cluster", "--no-plot")),
    "network_bandwidth_below_1_mbps": setting("network.bandwidth_gbps=1e-300", ">= 0.001", mode=("--pd", "--no-plot")),
    "pcie_below_1_mbps": setting("hardware.pcie_gbps=1e-300", mode=("--cluster", "--no-plot")),
    "tier_read_below_1_mbps": setting("cache.tiers.dram.read_gbps=1e-300", mode=("--no-plot",)),
    "tier_latency_beyond_an_hour": setting("cache.tiers.ssd.latency_us=1e300", "3,600,000,000", mode=("--no-plot",)),
    "flops_efficiency_subnormal": setting("compute.flops_efficiency=1e-320", "too close to 0", mode=("--no-plot",)),
    "synthetic_rate_subnormal": setting("workload.synthetic.rate_rps=1e-320", "too close to 0"),
    "rate_scale_subnormal_one_line": Case([*TRACE_STATS, "--rate-scale", "1e-320"], names=("--rate-scale", "workload.rate_scale")),
    "set_long_value_quoted_once": Case([*TRACE_STATS, "--set", "model=" + "x" * 5000], names=("--set", "model", "5,000 characters")),
    "int_beyond_int64": setting("serving.max_num_batched_tokens=100000000000000000000000", "64-bit", mode=SERVING),
    # a nullable int says so too (it said "expected int or null" of an int)
    "nullable_int_beyond_int64": setting("serving.num_gpu_blocks=100000000000000000000000", "64-bit", mode=SERVING),
    "unknown_model": setting("model=gpt-9", "gpt-9"),
    "unknown_gpu": setting("hardware.gpu=tpu-v9", "tpu-v9"),
    "unknown_tier_policy": setting("cache.tiers.dram.policy=mru", "mru", mode=SERVING),
    "unknown_router": setting("cluster.router=random", "random", mode=("--no-plot", "--quiet")),  # a mode that routes
    # ---- cluster mode
    "router_flag_unknown": Case(["--cluster", "--router", "round-robin,random"], names=("--router", "random")),
    "router_flag_twice": Case(["--cluster", "--router", "round-robin,round-robin"], names=("--router", "twice")),
    "router_flag_in_pd": Case(["--pd", "--router", "round-robin"], names=("--router", "--pd")),
    "router_flag_in_cache_only": Case(["--cache-only", "--router", "round-robin"], names=("--router", "--cache-only")),
    "cluster_with_trace_stats": Case(["--cluster", "--trace-stats"], names=("--cluster", "--trace-stats")),
    "cluster_tp_does_not_divide_node": Case(["--cluster", "--set", "hardware.gpus_per_node=6", "--set",
                                             "serving.tensor_parallel_size=4"],
                                            names=("hardware.gpus_per_node", "serving.tensor_parallel_size")),
    "cluster_pd_exceeds_rack": Case(["--cluster", "--pd", "--set", "cluster.nodes_per_rack=1", "--set",
                                     "hardware.gpus_per_node=2", "--set", "pd.num_prefill=2"],
                                    names=("pd.num_prefill", "pd.num_decode")),
    "cluster_racks_zero": setting("cluster.num_racks=0", "0", mode=("--cluster",)),
    "cluster_oversubscription_below_1": setting("cluster.oversubscription=0.5", mode=("--cluster",)),
    "cluster_pcie_zero": setting("hardware.pcie_gbps=0", mode=("--cluster",)),
    # (both given: an unset max_num_seqs falls to the tokens, as vLLM's default does)
    "batched_tokens_below_seqs": Case(["--set", "serving.max_num_batched_tokens=64", "--set", "serving.max_num_seqs=128"],
                                      names=("serving.max_num_batched_tokens", "serving.max_num_seqs")),
    "max_model_len_beyond_context": Case(["--set", "model=llama-3-8b", "--set", "serving.max_model_len=9000"],
                                         names=("serving.max_model_len", "8192")),
    "max_model_len_below_one_request": setting("serving.max_model_len=1", ">= 2", mode=("--preset", "smoke", "--no-plot")),
    # a model whose context is 1 token (max_position_embeddings: 1): the synthetic chat made empty prompts that never
    # completed ("scheduler stall", exit 1), as serving.max_model_len=1 did before its domain said >= 2
    "model_context_one_token": Case(["--preset", "smoke", "--workload-limit", "10", "--no-plot", "--quiet",
                                     "--set", "model={tmp}/m"], names=("{tmp}/m", "context of 1 token", "2"),
                                    files={"m/config.json": HF_LLAMA_ONE_TOKEN}),
    "range_start_after_end": Case([*TRACE_STATS, "--set", "workload.range_start=0.6", "--set", "workload.range_end=0.5"],
                                  names=("workload.range_start", "workload.range_end")),
    "mrc_sample_rate_zero": Case(["--mrc", "--mrc-sample-rate", "0", "--no-plot"], names=("--mrc-sample-rate", "cache.mrc_sample_rate")),
    "mrc_sample_rate_above_1": Case(["--mrc", "--mrc-sample-rate", "2", "--no-plot"], names=("--mrc-sample-rate",)),
    # a rate that samples no access: SHARDS' size correction reported a hit ratio of 1.0 at every capacity (exit 0)
    "mrc_sample_rate_below_shards_resolution": Case(["--mrc", "--mrc-sample-rate", "1e-9", "--no-plot"],
                                                    names=("--mrc-sample-rate", "cache.mrc_sample_rate", "1e-09")),
    "mrc_sample_rate_samples_nothing": Case(["--mrc", "--mrc-sample-rate", "1e-5", "--no-plot", "--quiet", "--preset", "smoke",
                                             "--workload-limit", "200", "--set", "workload.synthetic.start=empty"],
                                            names=("cache.mrc_sample_rate", "samples none")),
    "capacity_blocks_zero": Case(["--cache-only", "--capacity-blocks", "0"], names=("--capacity-blocks",)),
    "synthetic_prefix_too_long": setting("workload.synthetic.prefix_tokens=1000000000000", "max_request_tokens",
                                         mode=("--trace-stats", "--no-plot", "--set", "workload.synthetic.kind=system-prompt")),
    "synthetic_requests_beyond_bound": setting("workload.synthetic.num_requests=1000000000000"),
    "seed_negative": Case([*TRACE_STATS, "--seed", "-1"], names=("--seed", "seed")),
    "seed_beyond_int64": Case([*TRACE_STATS, "--seed", str(2**64)], names=("--seed",)),
    "workload_limit_zero_synthetic": Case([*TRACE_STATS, "--workload-limit", "0"], names=("--workload-limit",)),
    "workload_limit_negative": Case(trace_stats("--workload-limit", "-1", trace="{azure}"), names=("--workload-limit",)),
    "set_without_equals": Case([*TRACE_STATS, "--set", "serving.block_size"], names=("--set", "serving.block_size")),
    "preset_not_a_mapping": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml", "--preset", "smoke"],
                                 names=("presets.smoke", "c.yaml"), files={"c.yaml": "presets:\n  smoke: 5\n"}),
    "num_gpu_blocks_zero": setting("serving.num_gpu_blocks=0", mode=("--pd",)),
    "model_does_not_fit_gpu": Case(["--set", "model=llama-3.1-70b"], names=("llama-3.1-70b", "tensor_parallel_size")),
    # presets are applied before --set and a sweep's keys: a preset edited there changed nothing, yet the report's
    # config showed the edit (a run of 500 requests "with" presets.smoke.workload.limit=5), and a sweep over it ran
    # every point alike
    # PRESET@MODE applies in that mode only: a mode that is none (a typo) never applied, unsaid
    "preset_for_an_unknown_mode": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml", "--preset", "smoke"],
                                       names=("c.yaml", "smoke@clustr", "cluster"),
                                       files={"c.yaml": "presets:\n  smoke@clustr: {seed: 3}\n"}),
    "set_a_preset": Case([*TRACE_STATS, "--preset", "smoke", "--set", "presets.smoke.workload.limit=5"],
                         names=("--set", "presets.smoke.workload.limit", "--preset")),
    "set_all_presets": Case([*TRACE_STATS, "--set", "presets={}"], names=("--set", "presets")),
    "sweep_axis_over_a_preset": Case(["--sweep", "{tmp}/s.yaml"], names=("s.yaml", "presets.smoke.seed"),
                                     files={"s.yaml": "mode: cache-only\naxes: {presets.smoke.seed: [1, 2]}\n"}),
    "sweep_fixed_preset_key": Case(["--sweep", "{tmp}/s.yaml"], names=("s.yaml", "presets.smoke.seed"),
                                   files={"s.yaml": "mode: cache-only\nset: {presets.smoke.seed: 3}\n"
                                                    "axes: {cache.policy: [lru, arc]}\n"}),
    "unknown_key_set": Case([*TRACE_STATS, "--set", "serving.blok_size=16"], names=("serving.blok_size", "block_size")),
    "config_top_level_list": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml"], names=("c.yaml", "mapping"),
                                  files={"c.yaml": "- 1\n- 2\n"}),
    "learned_policy_without_model": Case(["--cache-only", "--policy", "learned"],
                                         names=("policy 'learned' needs cache.learned_model",)),
    # a tier's own learned policy: the refusal names that tier's key, not the run's policy (lru here)
    "learned_tier_policy_without_model": Case(["--cache-only", "--policy", "lru", "--set",
                                               "cache.tiers.dram.policy=learned", "--set",
                                               "cache.tiers.dram.capacity_gib=1"],
                                              names=("cache.tiers.dram.policy=learned needs cache.learned_model",)),
    "mooncake_block_mismatch_error": Case(trace_stats("--set", "workload.block_mismatch=error", trace="{tmp}/m.jsonl"),
                                          names=("m.jsonl", "block_mismatch", "512"), files={"m.jsonl": MOONCAKE_OK}),
    "mooncake_split_non_divisor": Case(trace_stats("--set", "workload.block_mismatch=split", "--set", "serving.block_size=48",
                                                   trace="{tmp}/m.jsonl"), names=("m.jsonl", "48"), files={"m.jsonl": MOONCAKE_OK}),
    "arrival_span_absurd": Case(trace_stats(), names=("t.csv", "time_unit"),
                                files={"t.csv": "request_id,request_type,application_id,arrival_timestamp,batch_size,"
                                                "prompt_size,token_size\n0,2,0,0,1,100,8\n1,2,0,1e15,1,100,8\n"}),
    # datetimes 550 years apart: their span in int64 nanoseconds (the loader's exact arithmetic) overflows 2^63 ns
    # (292 years); it wrapped negative and the trace-stats bins crashed instead of the span's error
    # arrivals stretched past 34 years by a drawn process's rate: that key is named, not the rate scale
    "arrival_rate_too_low": Case([*TRACE_STATS, "--set", "workload.arrivals.process=poisson", "--set",
                                  "workload.arrivals.rate_rps=1e-12"],
                                 names=("34 years", "'workload.arrivals.rate_rps'=1e-12")),
    "azure_datetime_span_beyond_int64_ns": Case(trace_stats(), names=("t.csv", "34 years"),
                                                files={"t.csv": f"{AZURE_HEADER}1700-01-01 00:00:00,100,10\n"
                                                                "2250-01-01 00:00:00,100,10\n"}),
    "synthetic_rate_tiny": setting("workload.synthetic.rate_rps=1e-12", mode=("--trace-stats", "--no-plot")),
    # gamma arrivals: cv² overflowed (OverflowError), and a scale 1 / (rate x shape) of 1 / 0 (ZeroDivisionError)
    "gamma_cv_squared_overflows": Case([*TRACE_STATS, "--set", "workload.arrivals.process=gamma", "--set",
                                        "workload.arrivals.cv=1e300"], names=("workload.arrivals.cv", "1e+300")),
    # (over a trace file: a synthetic workload at 1e-300 requests/s is refused first, its span past 34 years)
    "gamma_scale_overflows": Case(trace_stats("--set", "workload.arrivals.process=gamma", "--set",
                                              "workload.arrivals={cv: 1e90, rate_rps: 1e-300}"),
                                  names=("'workload.arrivals.cv'=1e+90", "1e-300 requests/s", "overflows"),
                                  files={"t.csv": AZURE_OK}),
    # turns past trace.synthetic's cap of 4,096 could not be drawn: turns_mean 1e6 ran at 0.0004 requests/s, not 5
    "turns_mean_beyond_the_turn_cap": setting("workload.synthetic.turns_mean=5000", "4,096"),
    # a derived uplink of 4e-10 Gb/s, below the 1 Mb/s a given one may have (ran, every cross-rack fetch taking years)
    "oversubscription_leaves_no_uplink": setting("cluster.oversubscription=1e12", "cluster.oversubscription", "uplink",
                                                 mode=("--cluster", "--no-plot", "--set", "cluster.num_racks=2")),
    "prefetch_in_a_serving_mode": Case(["--pd", "--preset", "smoke", "--set", "cache.prefetch=session", "--quiet"],
                                       names=("cache.prefetch", "--cache-only")),
    "admission_in_a_serving_mode": Case(["--preset", "smoke", "--set", "cache.admission=selective_write", "--quiet"],
                                        names=("cache.admission", "--cache-only")),
    "synthetic_key_of_another_kind": Case([*TRACE_STATS, "--set", "workload.synthetic.kind=rag", "--set",
                                           "workload.synthetic.think_time_median_s=20"],
                                          names=("workload.synthetic.think_time_median_s", "multi-turn", "rag")),
    # ---- usage errors: one line too
    "argparse_bad_int": Case([*TRACE_STATS, "--seed", "1.5"], names=("--seed", "1.5")),
    "argparse_modes_exclusive": Case(["--trace-stats", "--pd"], names=("--pd", "--trace-stats")),
    "argparse_unknown_flag": Case(["--trace-stats", "--polcy", "lru"], names=("--polcy",)),
    "argparse_huge_argument": Case(["--trace-stats", "--workload-limit", "9" * 100_000], names=("--workload-limit",)),
    # ---- flags the chosen mode does not use (the FLAG_MODES table)
    "capacity_blocks_with_pd": Case(["--pd", "--capacity-blocks", "100"], names=("--capacity-blocks", "--pd")),
    "capacity_blocks_single": Case(["--capacity-blocks", "100"], names=("--capacity-blocks", "single-node")),
    # the key, as the flag: set by --set or a config file it was ignored by the serving modes (exit 0)
    "capacity_blocks_key_with_pd": setting("cache.capacity_blocks=10", "--cache-only", mode=("--pd", "--no-plot")),
    "requests_csv_cache_only": Case(["--cache-only", "--requests-csv", "{tmp}/r.csv"], names=("--requests-csv", "--cache-only")),
    "requests_csv_trace_stats": Case(["--trace-stats", "--requests-csv", "{tmp}/r.csv"], names=("--requests-csv",)),
    # one run's requests: refused where many run, saying how to write the one wanted
    "requests_csv_sweep": Case(["--sweep", "experiments/examples/sweep_policies.yaml", "--requests-csv", "{tmp}/r.csv"],
                               names=("--requests-csv", "--sweep", "point you want alone")),
    "requests_csv_plan": Case(["--plan", "experiments/examples/plan_azure.yaml", "--requests-csv", "{tmp}/r.csv"],
                              names=("--requests-csv", "--plan", "candidate you want alone")),
    "requests_csv_max_rate": Case(["--max-rate", "--requests-csv", "{tmp}/r.csv"],
                                  names=("--requests-csv", "--max-rate", "--rate-scale X")),
    "requests_csv_seeds": Case(["--seeds", "2", "--requests-csv", "{tmp}/r.csv"],
                               names=("--requests-csv", "--seeds", "--seed N")),
    "mrc_with_pd": Case(["--pd", "--mrc"], names=("--mrc", "--pd")),
    "mrc_with_trace_stats": Case(["--trace-stats", "--mrc"], names=("--mrc", "--trace-stats")),
    "mrc_sample_rate_without_mrc": Case(["--cache-only", "--mrc-sample-rate", "0.1"], names=("--mrc-sample-rate", "--mrc")),
    "policy_with_trace_stats": Case(["--trace-stats", "--policy", "lru"], names=("--policy", "--trace-stats")),
    "policy_only_commas": Case(["--cache-only", "--policy", ",,,"], names=("--policy", ",,,")),
    "policy_twice": Case(["--cache-only", "--policy", "lru,lru"], names=("--policy", "lru", "twice")),
    "policy_unknown": Case(["--pd", "--policy", "lru,mru"], names=("--policy", "mru")),
    "plot_dir_with_check_calibration": Case(["--check-calibration", "profiles/rtx4090_llama31_8b_vllm.yaml",
                                             "--plot-dir", "{tmp}/p"], names=("--plot-dir", "--check-calibration")),
    "max_rate_with_cache_only": Case(["--cache-only", "--max-rate"], names=("--max-rate", "--cache-only")),
    "resume_without_sweep": Case(["--pd", "--resume"], names=("--resume", "--pd")),
    "policy_flag_in_a_sweep_says_make_it_an_axis": Case(["--sweep", "experiments/examples/sweep_policies.yaml",
                                                          "--policy", "lru"], names=("--policy", "an axis")),
    "jobs_with_single": Case(["--jobs", "2"], names=("--jobs",)),
    "seeds_past_the_largest_seed": Case(["--cache-only", "--seed", str(2**63 - 1), "--seeds", "2"], names=("--seeds", "largest seed")),
    "seeds_below_two": Case(["--cache-only", "--seeds", "1"], names=("--seeds",)),
    # a count beyond the bound would start a run per seed for ever (found before the first one)
    "seeds_beyond_the_bound": Case(["--cache-only", "--seeds", "1001"], names=("--seeds", "1,001", "1,000")),
    "seeds_huge": Case(["--pd", "--seeds", str(10**30)], names=("--seeds", "more than 1,000")),
    "seeds_a_list": Case(["--cache-only", "--seeds", "1,2"], names=("--seeds", "'1,2'")),
    # a trace replayed at its own times draws nothing from the seed: N identical runs, a zero-width "interval"
    "seeds_on_a_replayed_trace": Case(["--cache-only", "--workload-trace", "{azure}", "--workload-limit", "20", "--seeds", "3"],
                                      names=("--seeds", "cache-only", "same run")),
    # a drawn process at the workload's own rate, of requests that all arrive at once (no rate): the line named
    # neither the process nor the trace's cause before (found by tests/test_random_combinations.py)
    "arrivals_drawn_without_a_rate": Case([*TRACE_STATS, "--workload-trace", "{tmp}/t.jsonl", "--set",
                                           "workload.arrivals.process=gamma"],
                                          names=("workload.arrivals.process", "gamma", "workload.arrivals.rate_rps"),
                                          files={"t.jsonl": mooncake(5, 600, 5, [1, 2]) + mooncake(5, 100, 1, [3])}),
    # cache-only reads the requests' order, never their times: drawn arrivals change nothing (refused first, round 3)
    "seeds_on_a_trace_cache_only_poisson": Case(["--cache-only", "--workload-trace", "{azure}", "--workload-limit", "20",
                                                 "--set", "workload.arrivals.process=poisson", "--seeds", "2"],
                                                names=("workload.arrivals.process", "no clock")),
    "seeds_on_a_replayed_trace_pd": Case(["--pd", "--preset", "smoke", "--workload-trace", "{azure}", "--seeds", "2"],
                                         names=("--seeds", "workload.arrivals.process")),
    "rate_scale_zero": Case([*TRACE_STATS, "--rate-scale", "0"], names=("--rate-scale", "workload.rate_scale")),
    # a rate scale divides inter-arrival times: only a finite one above 0 gives times (1e400 is past a float: inf)
    **{f"rate_scale_{name}": Case([*TRACE_STATS, "--rate-scale", value], names=("--rate-scale", "workload.rate_scale", said))
       for name, value, said in (("negative", "-1", "> 0"), ("nan", "nan", "finite"), ("inf", "inf", "finite"),
                                 ("1e400", "1e400", "finite"))},
    # YAML reads inf and nan as words (its numbers are .inf, .nan): still said to be not finite, not "expected float"
    **{f"rate_scale_set_{word}": setting(f"workload.rate_scale={word}", "finite", f"'{word}'") for word in ("inf", "nan")},
    "plot_dir_with_no_plot": Case(["--trace-stats", "--plot-dir", "{tmp}/p", "--no-plot"], names=("--plot-dir", "--no-plot")),
    "workload_format_without_trace": Case([*TRACE_STATS, "--workload-format", "azure"], names=("--workload-format",)),
    "strict_without_trace": Case([*TRACE_STATS, "--strict-workload-validation"], names=("--strict-workload-validation",)),
    "train_test_overlap_without_learned": Case(["--cache-only", "--allow-train-test-overlap"],
                                               names=("--allow-train-test-overlap", "lru")),
    "learned_model_without_learned": Case(["--cache-only", "--policy", "lru,arc", "--set",
                                           "cache.learned_model={tmp}/m.txt"],
                                          names=("cache.learned_model", "lru, arc"), files={"m.txt": "a model\n"}),
    "time_unit_on_datetimes": Case(trace_stats("--workload-time-unit", "ms", trace="{azure}"), names=("time_unit",)),
    # a --set key the mode never reads is refused, as a flag would be
    "set_pd_key_in_single_node": Case(["--set", "pd.num_prefill=3", "--workload-limit", "20"],
                                      names=("--set pd.num_prefill", "single-node", "--pd")),
    "set_pd_key_in_cluster_without_pd": Case(["--cluster", "--set", "pd.num_decode=2", "--workload-limit", "20"],
                                             names=("--set pd.num_decode", "--cluster --pd")),
    "set_network_key_in_cache_only": Case(["--cache-only", "--set", "network.bandwidth_gbps=1", "--workload-limit", "20"],
                                          names=("--set network.bandwidth_gbps", "--cache-only")),
    "set_compute_key_in_cache_only": Case(["--cache-only", "--set", "compute.flops_efficiency=0.5", "--workload-limit", "20"],
                                          names=("--set compute.flops_efficiency", "--cache-only")),
    "set_slo_key_in_trace_stats": Case([*TRACE_STATS, "--set", "slo.ttft_s=1"], names=("--set slo.ttft_s", "--trace-stats")),
    "set_rack_count_in_pd": Case(["--pd", "--set", "cluster.num_racks=2", "--workload-limit", "20"],
                                 names=("--set cluster.num_racks", "--pd", "--cluster")),
    # ---- YAML files
    "yaml_duplicate_section": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml"], names=("c.yaml", "line 3", "serving"),
                                   files={"c.yaml": "serving: {block_size: 32}\nseed: 1\nserving: {block_size: 64}\n"}),
    "yaml_duplicate_nested_key_in_overlay": Case([*TRACE_STATS, "--calibration-profile", "{tmp}/o.yaml"],
                                                 names=("o.yaml", "line 4", "latency_us"),
                                                 files={"o.yaml": "network:\n  latency_us: 1\n  bandwidth_gbps: 5\n  latency_us: 2\n"}),
    # --trace-stats sizes no cache: the KV capacity's settings did nothing there (exit 0)
    "num_gpu_blocks_in_trace_stats": Case([*TRACE_STATS, "--set", "serving.num_gpu_blocks=5"],
                                          names=("serving.num_gpu_blocks", "--trace-stats")),
    "flag_and_set_of_one_key": Case([*TRACE_STATS, "--seed", "4", "--set", "seed=3"], names=("--seed", "--set seed")),
    "policy_and_set_of_one_key": Case(["--cache-only", "--no-plot", "--quiet", "--policy", "arc", "--set",
                                       "cache.policy=lru"], names=("--policy", "--set cache.policy")),
    "config_is_a_directory": Case([*TRACE_STATS, "--config", "{tmp}"], names=("--config", "not a file")),
    "yaml_syntax_error": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml"], names=("c.yaml", "line 2"),
                              files={"c.yaml": "serving:\n  block_size: 16: 32\n"}),
    "yaml_unknown_key": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml"], names=("c.yaml", "serving.blok_size"),
                             files={"c.yaml": "serving: {blok_size: 16}\n"}),
    "config_not_utf8": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml"], names=("c.yaml", "UTF-8"),
                            files={"c.yaml": b"seed: 1 # caf\xe9\n"}),
    "yaml_int_beyond_python": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml"], names=("c.yaml", "line 1", "5,001 characters"),
                                   files={"c.yaml": "seed: 1" + "0" * 5000 + "\n"}),
    "yaml_impossible_date": Case([*TRACE_STATS, "--calibration-profile", "{tmp}/o.yaml"], names=("o.yaml", "line 1", "2023-02-30"),
                                 files={"o.yaml": "seed: 2023-02-30\n"}),
    "yaml_nested_too_deep": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml"], names=("c.yaml", "nested"),
                                 files={"c.yaml": "a: " + "[" * 100_000 + "]" * 100_000 + "\n"}),
    # aliases of aliases, 9 levels of 9 ("billion laughs"): 9^9 values in 300 bytes; a type error quoted it whole (52 s, 2.6 GB)
    "yaml_aliases_expand_beyond_bound": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml"], names=("c.yaml", "aliases are expanded"),
                                             files={"c.yaml": "seed: " + ALIAS_BOMB + "\n"}),
    "sweep_axis_aliases_expand_beyond_bound": Case(["--sweep", "{tmp}/s.yaml"], names=("s.yaml", "aliases are expanded"),
                                                   files={"s.yaml": "mode: cache-only\naxes: {cache.capacity_blocks: "
                                                                    + ALIAS_BOMB + "}\n"}),
    "model_config_nested_too_deep": Case([*TRACE_STATS, "--set", "model={tmp}/m/config.json"], names=("config.json", "not JSON"),
                                         files={"m/config.json": '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"}),
    # json keeps a key's last value; a config.json or a lookup table with a key pasted twice is refused by name
    "model_config_key_twice": Case([*TRACE_STATS, "--set", "model={tmp}/m/config.json"],
                                   names=("config.json", "'hidden_size' more than once"),
                                   files={"m/config.json": HF_LLAMA_ONE_TOKEN[:-1] + ', "hidden_size": 8192}'}),
    "network_lookup_key_twice": Case(["--pd", "--quiet", "--no-plot", "--set", "network.lookup={tmp}/ns3.json"],
                                     names=("ns3.json", "'ns3_ms' more than once"),
                                     files={"ns3.json": '{"rows": [{"size_mib": 1, "ns3_ms": 0.1, "ns3_ms": 9}]}'}),
    "set_value_nested_too_deep": Case([*TRACE_STATS, "--set", "seed=" + "[" * 5000 + "]" * 5000], names=("--set", "seed", "nested")),
    # a device is read forever (it hung): refused by what it is, as a trace or a model file is
    "sweep_spec_is_a_device": Case(["--sweep", "/dev/zero"], names=("sweep spec /dev/zero", "not a file")),
    "overlay_is_a_directory": Case([*TRACE_STATS, "--calibration-profile", "{tmp}"], names=("{tmp}", "not a file")),
    "sweep_spec_beyond_size_bound": Case(["--sweep", "{tmp}/s.yaml"], names=("s.yaml", "over 16,777,216 bytes"),
                                         files={"s.yaml": "mode: cache-only\n" + "#" * (16 << 20) + "\n"}),
    "workload_cache_is_a_device": Case(trace_stats("--workload-cache", "/dev/zero", trace="{azure}"),
                                       names=("workload.cache", "/dev/zero", "device or FIFO")),
    "sweep_spec_duplicate_key": Case(["--sweep", "{tmp}/s.yaml"], names=("s.yaml", "line 3", "duplicate key 'axes'"),
                                     files={"s.yaml": "mode: cache-only\naxes: {cache.policy: [lru]}\naxes: {cache.policy: [arc]}\n"}),
    "sweep_spec_config_empty": Case(["--sweep", "{tmp}/s.yaml"], names=("s.yaml", "'config' must be a file path"),
                                    files={"s.yaml": "mode: cache-only\nconfig: ''\naxes: {cache.policy: [lru]}\n"}),
    "plan_overlay_empty": Case(["--plan", "{tmp}/p.yaml"], names=("p.yaml", "'overlays' must be a list of file paths"),
                               files={"p.yaml": "overlays: ['']\ntarget: {hit_ratio: 0.5}\nsearch: {gpu: [h100-sxm]}\n"}),
    "sweep_spec_not_utf8": Case(["--sweep", "{tmp}/s.yaml"], names=("s.yaml", "UTF-8"),
                                files={"s.yaml": "mode: cache-only # caf\xe9\naxes: {cache.policy: [lru]}\n".encode("latin-1")}),
    "unused_preset_unknown_key": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml"],
                                      names=("c.yaml", "preset 'mine'", "cache.polcy"),
                                      files={"c.yaml": "presets:\n  mine:\n    cache.polcy: lru\n"}),
    # a file's presets are a new set: a part whose preset the file does not define passed the file check and never
    # ran (--preset mine: "unknown preset"), and a preset (or part) of no keys ran as none, exit 0 (hfuzz9's leftovers)
    "preset_part_of_no_preset": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml"],
                                     names=("c.yaml", "preset 'mine@cache-only' is a part of preset 'mine', which "
                                                      "this file does not define"),
                                     files={"c.yaml": "presets:\n  mine@cache-only: {cache.policy: fifo}\n"}),
    "preset_empty": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml", "--preset", "mine"],
                         names=("c.yaml", "preset 'mine' is an empty mapping, which sets nothing"),
                         files={"c.yaml": "presets:\n  mine: {}\n"}),
    # a config file's or overlay's section given as {} set nothing (as --set KEY={} would, which is refused), exit 0
    "config_section_empty": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml"],
                                 names=("c.yaml", "config key 'cache' is an empty mapping, which sets nothing"),
                                 files={"c.yaml": "cache: {}\nseed: 1\n"}),
    "overlay_tier_empty": Case([*TRACE_STATS, "--calibration-profile", "{tmp}/c.yaml"],
                               names=("c.yaml", "config key 'cache.tiers.dram' is an empty mapping"),
                               files={"c.yaml": "cache:\n  tiers: {dram: {}}\n"}),
    "preset_key_empty": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml"],
                             names=("c.yaml", "preset 'mine': 'cache.tiers' is an empty mapping"),
                             files={"c.yaml": "presets:\n  mine: {seed: 1, cache.tiers: {}}\n"}),
    "preset_part_empty": Case([*TRACE_STATS, "--calibration-profile", "{tmp}/c.yaml"],
                              names=("c.yaml", "preset 'mine@single' is an empty mapping, which sets nothing"),
                              files={"c.yaml": "presets:\n  mine: {seed: 1}\n  mine@single: {}\n"}),
    "report_json_dash": Case([*TRACE_STATS, "--report-json", "-"], names=("--report-json -", "/dev/stdout")),
    "workload_cache_path_with_a_nul": Case([*TRACE_STATS, "--config", "{tmp}/c.yaml"],
                                           names=("config key 'workload.cache'", "x\\x00y.bin", "embedded null byte"),
                                           files={"c.yaml": "workload:\n  trace: t.csv\n"
                                                            '  cache: "x\\0y.bin"\n',
                                                  "t.csv": "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                                           "2023-11-16 18:15:46,374,44\n"}),
    # a name too long for the system (ENAMETOOLONG) where a model is looked for as a path or a models.yaml name:
    # pathlib's exists() raised OSError, an internal error (exit 1) for --set model=./NAME (and a plan's GPU spec:
    # test_plan_refusals) (hfuzz9)
    "model_path_name_too_long": Case([*TRACE_STATS, "--set", "model=./" + "x" * 300],
                                     names=("config key 'model'", "File name too long")),
    "sweep_overlays_zero": Case(["--sweep", "{tmp}/s.yaml"],
                                names=("s.yaml", "'overlays' must be a list of file paths"),
                                files={"s.yaml": "mode: cache-only\noverlays: 0\naxes: {cache.policy: [lru]}\n"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, run_cli, tmp_path):
    check_bad_input(CASES[name], run_cli, tmp_path)

