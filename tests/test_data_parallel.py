"""Data-parallel groups of a mixture of experts step in lockstep (vLLM's DP ranks): step times by hand."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config import load_config
from sim.serving.compute import StepShape
from sim.serving.compute_backend import compute_model
from sim.serving.cudagraph import config_cudagraph_sizes
from sim.serving.engine_limits import block_size
from sim.serving.moe import DataParallelShare
from sim.serving.run import run_serving
from tests.test_serving import make_trace

# Two instances of one group on one node, requests dealt to them in turn (request i to instance i mod 2).
GROUP = ["model=qwen3-30b-a3b", "serving.num_instances=2", "serving.data_parallel_size=2",
         "cluster.router=round-robin", "cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0"]


def _prefill(tokens: int) -> StepShape:
    shape = StepShape()
    shape.add_prefill(tokens, 0)
    return shape


def _ttft(config, arrival, inputs) -> np.ndarray:
    _, requests = run_serving(make_trace(arrival, inputs, [1] * len(inputs)), config, "single")
    return requests.ttft


def test_vllm_capture_limit_by_hand():
    # min(2 x max_num_seqs, 512, max_num_batched_tokens): vLLM's default largest CUDA-graph batch
    def capture(*sets: str) -> int:
        return config_cudagraph_sizes(load_config(None, sets=list(sets))).largest

    assert capture() == 512  # an H100's defaults: 1,024 sequences, 8,192 tokens
    assert capture("serving.max_num_seqs=8") == 16
    assert capture("serving.max_num_seqs=64", "serving.max_num_batched_tokens=100") == 100


def test_an_idle_rank_takes_a_padded_dummy_step():
    config = load_config(None, sets=GROUP)
    compute = compute_model(config)
    # one 100-token prefill on rank 0; rank 1 runs a 1-token dummy: both run the graph of 104 tokens, the captured
    # size above 100 (vLLM captures every 8 from 8 to 256), so the group's MoE layers route 208
    expected = compute.step_time(_prefill(100), DataParallelShare(104, 208, 208, 100))
    assert _ttft(config, [0.0], [100]) == pytest.approx([expected], rel=1e-12)
    # the group's tokens matter: the same step priced for a lone rank (G = 100 + 1) is faster
    assert compute.step_time(_prefill(100), DataParallelShare(100, 101, 101, 100)) < expected


def test_ranks_wait_for_the_slowest():
    config = load_config(None, sets=GROUP)
    compute = compute_model(config)
    # 100 and 1,000 tokens: 1,000 is above the capture limit (512), so the ranks' synced graph mode is NONE and nobody
    # is padded to the other's count; each runs eagerly at its own padded count (104, vLLM 0.33's dp_utils.py): G = 1,104
    slow = compute.step_time(_prefill(1000), DataParallelShare(1000, 1104, 1104, 1100))
    fast = compute.step_time(_prefill(100), DataParallelShare(104, 1104, 1104, 1100))
    assert fast < slow
    assert _ttft(config, [0.0, 0.0], [1000, 100]) == pytest.approx([slow, slow], rel=1e-12)


def test_a_rank_joins_the_groups_next_step():
    config = load_config(None, sets=GROUP)
    compute = compute_model(config)
    # rank 0 starts a 1,000-token prefill at 0 (rank 1 a dummy: 1 token, unpadded); a request reaching the idle
    # rank 1 a microsecond later waits for that step, then runs with rank 0's dummy, both padded to the graph of 104
    first = compute.step_time(_prefill(1000), DataParallelShare(1000, 1001, 1001, 1000))
    second = compute.step_time(_prefill(100), DataParallelShare(104, 208, 208, 100))
    assert _ttft(config, [0.0, 1e-6], [1000, 100]) == pytest.approx([first, first - 1e-6 + second], rel=1e-12)


def test_a_share_of_d_equal_ranks_prices_as_the_groupless_step():
    config = load_config(None, sets=GROUP)
    compute = compute_model(config)
    shape = _prefill(300)
    shape.add_decode(700)  # 301 tokens: the graph of 304
    padded = DataParallelShare(304, 2 * 304, 2 * 304, 2 * 301)
    assert compute.step_time(shape, padded) == pytest.approx(compute.step_time(shape), rel=1e-12)


@pytest.mark.parametrize("mode", ["single", "pd"])
def test_grouped_runs_finish_with_consistent_breakdowns(mode):
    config = load_config(None, sets=[*GROUP[:3], "serving.num_instances=4", "pd.num_prefill=2", "pd.num_decode=2",
                                     "workload.synthetic.kind=multi-turn", "workload.synthetic.start=empty", "workload.synthetic.num_requests=120",
                                     "workload.synthetic.rate_rps=20", "serving.num_gpu_blocks=400"])
    from trace.synthetic import generate

    trace = generate(config.workload.synthetic, block_size(config), np.random.default_rng(config.seed))
    result, requests = run_serving(trace, config, mode)
    assert result.metrics["requests_completed"] == len(trace)
    parts = requests.breakdown()
    assert all((v >= -1e-12).all() for v in parts.values())
    np.testing.assert_allclose(sum(parts.values()), requests.ttft, rtol=0, atol=1e-9)


def test_a_groups_decode_window_equals_its_single_steps(monkeypatch):
    import sim.serving.decode_windows

    config = load_config(None, sets=[*GROUP[:3], "serving.num_instances=4", "workload.synthetic.kind=multi-turn", "workload.synthetic.start=empty",
                                     "workload.synthetic.num_requests=200", "workload.synthetic.rate_rps=20"])
    from trace.synthetic import generate

    trace = generate(config.workload.synthetic, block_size(config), np.random.default_rng(config.seed))
    windowed, _ = run_serving(trace, config, "single")
    monkeypatch.setattr(sim.serving.decode_windows, "MAX_WINDOW_STEPS", 1)
    stepped, _ = run_serving(trace, config, "single")
    for key in ("ttft_s", "tpot_s", "e2e_s", "itl_s"):
        for stat, value in stepped.metrics[key].items():
            assert windowed.metrics[key][stat] == pytest.approx(value, rel=1e-9), (key, stat)
    assert windowed.metrics["instances"]["steps"] == stepped.metrics["instances"]["steps"]
    for key, per_interval in stepped.metrics["timeseries"]["work"]["unified"].items():  # booked where they ran
        assert windowed.metrics["timeseries"]["work"]["unified"][key].tolist() == per_interval.tolist(), key
    # each rank's work, its dummy steps beside the others' windows included, as its single steps count it
    for window, step in zip(windowed.metrics["instances"]["each"], stepped.metrics["instances"]["each"]):
        assert window["steps"] == step["steps"]
        for key in ("busy_fraction", "flops", "bytes"):
            assert window[key] == pytest.approx(step[key], rel=1e-9), (window["index"], key)


def test_decode_times_with_a_share_equal_its_steps():
    config = load_config(None, sets=GROUP)
    compute = compute_model(config)
    first = StepShape.decode_batch(np.array([100, 250, 40]))
    share = DataParallelShare(3, 5, 5, 5)
    times = compute.decode_times(first, 4, share)
    for k in range(4):
        step = StepShape.decode_batch(np.array([100, 250, 40]) + k)
        assert times[k] == pytest.approx(compute.step_time(step, share), rel=1e-12)


def test_eager_ranks_are_not_padded():
    """``serving.enforce_eager`` (vLLM's --enforce-eager): no CUDA graphs, so the ranks' synced cudagraph mode is NONE
    and ``_synchronize_dp_ranks`` pads nobody: the idle rank's 1-token dummy stays 1 token (G = 101, not 200)."""
    config = load_config(None, sets=[*GROUP, "serving.enforce_eager=true"])
    assert config_cudagraph_sizes(config).largest == 0
    expected = compute_model(config).step_time(_prefill(100), DataParallelShare(100, 101, 101, 100))
    assert _ttft(config, [0.0], [100]) == pytest.approx([expected], rel=1e-12)


def test_a_cluster_forms_the_same_groups_and_times_as_one_node():
    # one rack, one node of 4 GPUs, 2 groups of 2: the cluster builds its instances lazily and keys their groups by
    # (rack, slot // D); requests dealt round robin meet the same groups, so every request's timing equals the
    # single-node run's, whose group steps are checked by hand above
    from sim.cluster.run import run_cluster
    from trace.synthetic import generate

    config = load_config(None, sets=[*GROUP[:3], "serving.num_instances=4", "cluster.router=round-robin",
                                     "cluster.num_racks=1", "cluster.nodes_per_rack=1", "hardware.gpus_per_node=4",
                                     "workload.synthetic.kind=multi-turn", "workload.synthetic.start=empty", "workload.synthetic.num_requests=120",
                                     "workload.synthetic.rate_rps=20", "serving.num_gpu_blocks=400",
                                     "cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0"])
    trace = generate(config.workload.synthetic, block_size(config), np.random.default_rng(config.seed))
    cluster, cluster_table = run_cluster(trace, config)
    single, single_table = run_serving(trace, config, "single")
    assert cluster.metrics["requests_completed"] == len(trace)
    for name in ("instance", "scheduled", "first_token", "last_token"):
        np.testing.assert_array_equal(getattr(cluster_table, name), getattr(single_table, name), err_msg=name)


def _one_node_of_4_gpus(ranks: int, *sets: str):
    """(config, trace, cluster run) of qwen3-30b-a3b in data-parallel groups of ``ranks`` on one node of 4 GPUs,
    routed round robin, HBM only, over a synthetic multi-turn workload (``sets`` after these)."""
    from sim.cluster.run import run_cluster
    from trace.synthetic import generate

    config = load_config(None, sets=["model=qwen3-30b-a3b", f"serving.data_parallel_size={ranks}",
                                     "cluster.router=round-robin", "cluster.num_racks=1", "cluster.nodes_per_rack=1",
                                     "hardware.gpus_per_node=4", "workload.synthetic.kind=multi-turn",
                                     "workload.synthetic.start=empty", "serving.num_gpu_blocks=400",
                                     "cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0", *sets])
    trace = generate(config.workload.synthetic, block_size(config), np.random.default_rng(config.seed))
    return config, trace, run_cluster(trace, config)[0]


def test_a_rank_the_cluster_builds_late_counts_the_dummy_steps_it_took_before():
    # vLLM's idle DP rank runs a dummy forward pass beside each of its group's steps, and reports it (README: a dummy
    # step is among its rank's steps and busy time); the cluster builds an instance at its first request, and its
    # group's steps before that were dropped from its counts: on one node of 2 GPUs, one group of 2 ranks fed round
    # robin, the cluster's rank 1 reported 136 fewer steps than its peer and the single node's rank 1 (13,478 of
    # 13,614 on 200 Bailian-shaped requests). Here one group of 4 on a 4-GPU node, long answers at a low rate, so
    # ranks are built both between steps and during a decode window of their peers: each rank's steps, busy time
    # and work equal the single node's, whose ranks all exist from the start
    config, trace, cluster = _one_node_of_4_gpus(4, "serving.num_instances=4", "workload.synthetic.num_requests=40",
                                                 "workload.synthetic.rate_rps=0.5",
                                                 "workload.synthetic.output_tokens_mean=400")
    single, _ = run_serving(trace, config, "single")
    each_cluster = cluster.metrics["instances"]["each"]
    each_single = single.metrics["instances"]["each"]
    assert len({e["steps"] for e in each_cluster}) == 1  # lockstep: one count for the group
    for c, s in zip(each_cluster, each_single, strict=True):
        for key in ("steps", "busy_fraction", "flops", "bytes"):
            assert c[key] == pytest.approx(s[key], rel=1e-12), (c["index"], key)


def test_a_rank_no_request_reaches_still_steps_beside_its_group_in_the_cluster():
    # one node of 4 GPUs, two groups of 2 ranks, 3 requests round robin: ranks 0, 1 and 2 get one each, rank 3 none;
    # vLLM's rank 3 runs a dummy step beside each of rank 2's (its group's lockstep), so the report has 4 instances,
    # rank 3's steps and busy time rank 2's (it was absent: 3 instances, busy_fraction_mean over 3; hexplore5)
    _, _, cluster = _one_node_of_4_gpus(2, "workload.synthetic.num_requests=3")
    each = cluster.metrics["instances"]["each"]
    assert [e["index"] for e in each] == [0, 1, 2, 3]
    assert cluster.metrics["cluster"]["instances_used"] == 4
    assert each[0]["steps"] == each[1]["steps"] and each[2]["steps"] == each[3]["steps"] > 0
    assert each[3]["busy_fraction"] == each[2]["busy_fraction"]


def test_cluster_pd_groups_share_a_node_and_a_role():
    # 2 racks x 2 nodes x 4 GPUs, per rack 4 prefill then 4 decode instances of TP 1 in groups of 2: each group is two
    # consecutive slots of one rack's pool, so on one node, of one role; every request completes
    from sim.cluster.run import ClusterRun
    from trace.synthetic import generate

    config = load_config(None, sets=[*GROUP[:3], "cluster.num_racks=2", "cluster.nodes_per_rack=2",
                                     "hardware.gpus_per_node=4", "pd.num_prefill=4", "pd.num_decode=4",
                                     "workload.synthetic.kind=multi-turn", "workload.synthetic.start=empty", "workload.synthetic.num_requests=200",
                                     "workload.synthetic.rate_rps=40", "serving.num_gpu_blocks=2000"])
    trace = generate(config.workload.synthetic, block_size(config), np.random.default_rng(config.seed))
    run = ClusterRun(trace, config, False, pd=True)
    assert run.run().metrics["requests_completed"] == len(trace)
    assert run.groups
    for (rack, _), group in run.groups.items():
        members = [m.index for m in group.members]
        assert 1 <= len(members) <= 2
        assert {run.topo.rack_of(i) for i in members} == {rack}
        assert len({run.topo.node_of(i) for i in members}) == 1
        assert len({m.role for m in group.members}) == 1
        assert len({i // 2 for i in members}) == 1  # two consecutive ids, from an even one
