"""Cluster mode with a Gated DeltaNet hybrid (Qwen3-Next) in vLLM 0.33's align mode
(``sim.serving.align_state_manager``): a prefix fetched from another location is usable only as far as the deepest
block whose state every state group holds somewhere, the states cross the links with the attention blocks, and each
case is worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from sim.cluster.run import ClusterRun, run_cluster
from sim.config import load_config
from sim.serving.compute import StepShape
from sim.serving.compute_backend import compute_model
from sim.serving.run import run_serving
from tests.conftest import assert_cluster_serves_as_single_node, identical_reruns
from tests.report_invariants import check_report
from tests.test_serving import make_trace

BS = 576  # Qwen3-Next's attention block on Hopper with prefix caching (lcm with FlashInfer's GDN alignment 64)
STATE = 8192 * 3 * 2 + 32 * 128 * 128 * 2  # one GDN layer's state per sequence in bf16, all ranks: 1,097,728 B
# a block in a lower tier holds every rank's shard (stored_block_bytes): 12 attention layers x 576 tokens x 2 KV heads
# x 256 x 2 (K and V) x 2 bytes; a state group's state crosses unpadded (vLLM's offloading connector copies MambaSpec
# pages without their padding): 12 layers' states
BLOCK = 12 * BS * 2 * 256 * 2 * 2  # 14,155,776 B
STATE_COPY = 12 * STATE  # 13,172,736 B
# two nodes of two H200s in one rack, one TP-2 instance each; the rack's EIC pool the only lower tier, inclusive (a
# block cached in HBM is written through to it); requests alternate between the nodes
RUN = ["model=qwen3-next-80b-a3b", "hardware.gpu=h200", "serving.tensor_parallel_size=2", "hardware.gpus_per_node=2",
       "serving.block_size=576", "serving.max_num_batched_tokens=8192", "serving.num_gpu_blocks=200",
       "serving.num_instances=1", "cluster.num_racks=1", "cluster.nodes_per_rack=2", "cluster.router=round-robin",
       "cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0", "cache.tiers.eic.capacity_gib=4",
       "cache.inclusion=inclusive"]
NIC = 100e9 / 8  # config.yaml network.bandwidth_gbps, 5 us latency; EIC read 50 GB/s + 10 us; PCIe 63 GB/s x 2 ranks


def _run(inputs, blocks, arrival, sets=()):
    trace = make_trace(arrival, inputs, [2] * len(inputs), BS, blocks)
    return run_cluster(trace, load_config(None, sets=[*RUN, *sets]))


def test_a_next_turn_on_the_other_node_fetches_its_blocks_and_the_state_at_their_end():
    """A (2,000 tokens, blocks 1-4) on node 0 caches attention blocks 1-3 and the state after 1,728 tokens (its replay
    boundary) in the rack's pool. A's next turn B (2,300 tokens: blocks 1-3, then its own 5) goes to node 1 and fetches
    the 3 blocks and the 3 state groups' states at block 3 from the pool: 3 x 14,155,776 + 3 x 13,172,736 = 81,985,536
    bytes in one transfer over the pool (50 GB/s + 10 us), node 1's NIC (12.5 GB/s + 5 us) and its PCIe (126 GB/s),
    the NIC the narrowest, the hops' latencies summed: 10 + 5 us + 81,985,536 / 12.5e9 = 6.5738 ms. B's hit is 3 blocks (1,728 tokens) from the rack's
    pool, and its TTFT that fetch plus one prefill step of 572 tokens over 1,728 cached."""
    result, requests = _run([2000, 2300], [[1, 2, 3, 4], [1, 2, 3, 5]], [0.0, 100.0])
    metrics, cluster = result.metrics, result.metrics["cluster"]
    assert requests.instance.tolist() == [0, 1]
    assert requests.cached_tokens.tolist() == [0, 1728]
    assert metrics["hits"] == 3 == cluster["hit_blocks"]["eic"]["rack"]
    nbytes = 3 * BLOCK + 3 * STATE_COPY
    assert nbytes == 81_985_536
    assert cluster["fetched_blocks"] == {"node": 0, "rack": 3 + 3, "cross_rack": 0}
    assert cluster["fetched_bytes"] == {"node": 0, "rack": nbytes, "cross_rack": 0}
    assert metrics["tiers"]["eic"]["bytes_read"] == nbytes  # read once, by the fetch (not again as it enters HBM)
    fetch = 10e-6 + 5e-6 + max(nbytes / NIC, nbytes / 50e9, nbytes / 126e9)
    assert fetch == 15e-6 + nbytes / NIC
    breakdown = {name: float(values[1]) for name, values in requests.breakdown().items()}
    assert breakdown["kv_load"] == pytest.approx(fetch, rel=1e-12)
    step = StepShape()
    step.add_prefill(2300 - 1728, 1728)
    prefill = compute_model(load_config(None, sets=RUN)).step_time(step)
    assert float(requests.ttft[1]) == pytest.approx(fetch + prefill, rel=1e-12)
    assert breakdown["kv_load"] / float(requests.ttft[1]) == pytest.approx(fetch / (fetch + prefill), rel=1e-12)


def test_at_tp_above_the_kv_heads_a_fetched_state_fits_in_the_block_it_is_counted_as():
    """At TP 4 (2 KV heads, each on 2 ranks) with 320-token blocks (the least vLLM allows there: one rank's page, 320 x
    1 head x 256 x 2 x 2 = 327,680 B a layer, holds one rank's state, 1,097,728 / 4 = 274,432 B), a block in the pool
    holds every rank's page, as vLLM's OffloadingConnector stores it: 4 x 12 x 320 x 256 x 2 x 2 = 15,728,640 B, and
    a state group's state, split over the 4 ranks, 13,172,736 B, fits in that slot. A (2,000 tokens, 6 full blocks)
    caches them and the states after block 6; B (2,300 tokens) on the other node fetches 6 blocks and 3 states:
    6 x 15,728,640 + 3 x 13,172,736 = 133,890,048 B over node 1's NIC. The pool (inclusive: written through) is
    written A's 6 blocks and 3 states and B's own block 7 and the 3 states after it (its replay boundary, 2,240
    tokens), each at its own size: 7 x 15,728,640 + 6 x 13,172,736 = 189,136,896 B."""
    sets = ["serving.tensor_parallel_size=4", "hardware.gpus_per_node=4", "serving.block_size=320"]
    trace = make_trace([0.0, 100.0], [2000, 2300], [2, 2], 320, [[1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 8, 9]])
    config = load_config(None, sets=[*RUN, *sets])
    result, requests = run_cluster(trace, config)
    cluster, block = result.metrics["cluster"], 4 * 12 * 320 * 256 * 2 * 2
    assert cluster["block_bytes"] == block == 15_728_640 > STATE_COPY
    assert requests.instance.tolist() == [0, 1] and requests.cached_tokens.tolist() == [0, 6 * 320]
    nbytes = 6 * block + 3 * STATE_COPY
    assert cluster["fetched_blocks"] == {"node": 0, "rack": 6 + 3, "cross_rack": 0}
    assert cluster["fetched_bytes"] == {"node": 0, "rack": nbytes, "cross_rack": 0} and nbytes == 133_890_048
    assert float(requests.breakdown()["kv_load"][1]) == pytest.approx(15e-6 + nbytes / NIC, rel=1e-12)
    assert result.metrics["tiers"]["eic"]["bytes_written"] == 7 * block + 6 * STATE_COPY == 189_136_896
    assert result.metrics["tiers"]["eic"]["bytes_read"] == nbytes
    report = {"config": config.to_dict(), "trace": None, "mode": "cluster",
              "runs": [{"name": "prefix-aware", "metrics": result.metrics}]}
    assert check_report(report) == []


def test_attention_blocks_without_a_state_at_their_end_are_neither_fetched_nor_hits():
    """G (3,500 tokens, blocks 1, 2, 3, 5, 6, 7 full) on node 0 caches its attention blocks and one state, after block
    7 (its replay boundary, 3,456 tokens), in the rack's pool. A (2,000 tokens, blocks 1-3 then its own) on node 1
    finds blocks 1-3 in the pool but no state after any of them: vLLM's hit (find_longest_cache_hit, the state groups
    right to left) is 0 and nothing is fetched. A caches the state after its block 3 in node 1's HBM. Then H (3,500
    tokens, blocks 1, 2, 3, 5, 6, then its own) on node 1: blocks 1-3 in its HBM, 5 and 6 in the pool, states only
    after block 3 (A's, in HBM) and after 7 (G's, past H's prefix): the hit is cut back to 3 blocks, all in HBM, and
    blocks 5 and 6 stay in the pool. (Fetching by the attention prefix alone moved 3 + 2 blocks, none of them
    served.)"""
    g, a, filler, h = [1, 2, 3, 5, 6, 7, 10], [1, 2, 3, 4], [20], [1, 2, 3, 5, 6, 11, 12]
    result, requests = _run([3500, 2000, 100, 3500], [g, a, filler, h], [0.0, 100.0, 200.0, 300.0])
    metrics, cluster = result.metrics, result.metrics["cluster"]
    assert requests.instance.tolist() == [0, 1, 0, 1]
    assert requests.cached_tokens.tolist() == [0, 0, 0, 3 * BS]
    assert metrics["hits"] == 3 == cluster["hit_blocks"]["hbm"]["instance"]
    assert sum(cluster["fetched_blocks"].values()) == 0 and sum(cluster["fetched_bytes"].values()) == 0
    assert float(requests.breakdown()["kv_load"][3]) == 0


def test_without_prefix_caching_nothing_is_fetched_and_each_instance_serves_as_a_single_node():
    """Prefix caching off (mamba_cache_mode "none", 544-token blocks): nothing is cached, so nothing is fetched and
    each node's instance serves its requests as the single-node mode's two instances (round-robin) do."""
    sets = ["serving.enable_prefix_caching=false", "serving.block_size=544"]
    trace = make_trace([0.0, 0.0, 100.0, 100.0], [2000, 2300, 2000, 2300], [2] * 4, 544,
                       [[1, 2, 3, 4], [1, 2, 3, 5, 6], [1, 2, 3, 4], [1, 2, 3, 5, 6]])
    config = load_config(None, sets=[*RUN, *sets])
    cluster, cluster_table = run_cluster(trace, config)
    single, single_table = run_serving(trace, load_config(None, sets=[*RUN, *sets, "serving.num_instances=2",
                                                            "hardware.gpus_per_node=4"]), "single")
    assert cluster.metrics["hits"] == 0 and sum(cluster.metrics["cluster"]["fetched_bytes"].values()) == 0
    for name in ("instance", "scheduled", "first_token", "last_token"):
        np.testing.assert_array_equal(getattr(cluster_table, name), getattr(single_table, name), err_msg=name)


SMALL = ["model=qwen3-next-80b-a3b", "hardware.gpu=h200", "serving.tensor_parallel_size=2", "hardware.gpus_per_node=2",
         # an empty start: 120 blocks hold conversations begun in the window, not long ones under way
         "serving.num_gpu_blocks=120", "workload.synthetic.kind=multi-turn", "workload.synthetic.start=empty",
         "workload.synthetic.num_requests=40", "workload.synthetic.turns_mean=5",
         "workload.synthetic.think_time_median_s=0.5", "workload.synthetic.rate_rps=8",
         "workload.synthetic.input_tokens_mean=900", "workload.synthetic.output_tokens_mean=30"]


def test_a_one_instance_cluster_serves_qwen3_next_as_the_single_node_mode():
    """One H200 pair, HBM only, overloaded: the cluster's instance, manager and scheduler are the single node's, and
    a prefix held in its own HBM needs no fetch, so every request's timing and cached tokens, and the hits, are the
    same (the single-node mode is the independent path: no fetch, no location)."""
    config = load_config(None, sets=[*SMALL, "serving.num_instances=1", "cache.tiers.dram.capacity_gib=0",
                                     "cache.tiers.ssd.capacity_gib=0", "cluster.router=round-robin",
                                     "cluster.num_racks=1", "cluster.nodes_per_rack=1"])
    assert_cluster_serves_as_single_node(config, ("requests_completed", "accesses", "hits", "token_hit_ratio",
                                                  "ttft_s", "tpot_s"))


def test_the_precise_router_counts_a_prefix_only_as_far_as_a_state_it_can_reach():
    """The conductor's estimate at node 1's idle instance for a 4-block prompt (2,300 tokens) whose first 3 blocks the
    rack's pool holds: with no state cached after them it reaches nothing (it computes all 2,300 tokens, fetches
    nothing); once node 0 has cached the states after block 3 (written through to the pool) it reaches 3 blocks and
    fetches them and the 3 states in one transfer: the pool's 10 us and the network's 5 us, its NIC the narrowest
    link."""
    trace = make_trace([0.0, 1.0], [2300, 2300], [2, 2], BS, [[1, 2, 3, 4]] * 2)  # (a block repeats: caching on)
    run = ClusterRun(trace, load_config(None, sets=RUN))
    holder = run.instance(0)
    eic = run.rack_tiers[0][0]
    offsets, tiers, keys = np.array([0, 1, 2, 3]), np.full(3, eic.index), np.array([1, 2, 3, 4])
    assert run.estimated_ttft_s(1, offsets, tiers, 2300, keys) == pytest.approx(2300 / run.prefill_rate, rel=1e-12)
    states = [3 + offset for offset in holder.kv.offsets]
    holder.kv.cache.touch_chain(np.array([1, 2, 3, *states]), np.zeros(6, dtype=np.int64))
    assert all(eic.index in run.arena.holders(key).tolist() for key in states)
    nbytes = 3 * BLOCK + 3 * STATE_COPY
    expected = (2300 - 1728) / run.prefill_rate + 10e-6 + 5e-6 + nbytes / NIC
    assert run.estimated_ttft_s(1, offsets, tiers, 2300, keys) == pytest.approx(expected, rel=1e-12)


def test_cluster_pd_sends_a_qwen3_next_prompt_short_of_its_last_token_over_the_nics():
    """``--cluster --pd``, one prefill instance (node 0) and one decode instance (node 1): a 1,000-token prompt is
    prefilled to 999 tokens (vLLM's prefill backoff), whose cdiv(999, 576) = 2 attention blocks and the 3 state groups'
    running states cross the two NICs: per rank 2 x 7,077,888 + 19,759,104 = 33,914,880 B, both ranks' 67,829,760 B
    over each node's one NIC (cluster.nodes_per_rack: one NIC a node, as a fetch's blocks cross it), 5 us +
    67,829,760 / 12.5e9 alone; the decode side computes token 1,000 alone."""
    sets = ["pd.num_prefill=1", "pd.num_decode=1"]
    trace = make_trace([0.0], [1000], [2], BS, [[1, 2]])
    config = load_config(None, sets=[*RUN, *sets])
    result, requests = run_cluster(trace, config, pd=True)
    per_rank = 2 * (BLOCK // 2) + 3 * STATE_COPY // 2
    assert per_rank == 33_914_880
    cluster = result.metrics["cluster"]
    assert requests.instance.tolist() == [0] and requests.decode_instance.tolist() == [1]
    assert requests.kv_transfer_bytes.tolist() == [2 * per_rank]
    assert cluster["kv_transfer_blocks"] == {"node": 0, "rack": 2, "cross_rack": 0}
    assert cluster["kv_transfer_bytes"] == {"node": 0, "rack": 2 * per_rank, "cross_rack": 0}
    compute = compute_model(config)
    prefill, first = StepShape(), StepShape()
    prefill.add_prefill(999, 0)
    first.add_decode(1000)
    breakdown = {name: float(values[0]) for name, values in requests.breakdown().items()}
    assert breakdown["prefill"] == pytest.approx(compute.step_time(prefill), rel=1e-12)
    assert breakdown["kv_transfer"] == pytest.approx(5e-6 + 2 * per_rank / NIC, rel=1e-12)
    assert breakdown["first_decode"] == pytest.approx(compute.step_time(first), rel=1e-12)


@pytest.mark.parametrize("pd", [False, True])
def test_a_cluster_run_is_byte_identical_on_a_rerun(run_cli, tmp_path, pd):
    sets = [*SMALL, "cluster.num_racks=1", "cluster.nodes_per_rack=2", "cache.tiers.dram.capacity_gib=0.1",
            "cache.tiers.ssd.capacity_gib=0", "cache.tiers.eic.capacity_gib=0.2"]
    if not pd:  # (--pd's one rack has one prefill instance: a router there picks nothing, refused as unread)
        sets.append("cluster.router=precise-prefix")
    report = identical_reruns(run_cli, tmp_path, "--no-plot", "--quiet", "--cluster", *(["--pd"] if pd else []),
                              *[a for s in sets for a in ("--set", s)])
    metrics = report["runs"][0]["metrics"]
    assert metrics["requests_completed"] == 40 and metrics["hits"] > 0
    # its fetched and transferred bytes carry the states beside the blocks counted (README Cluster): the report's
    # invariants hold with them
    assert check_report(report) == []


@pytest.mark.parametrize(("router", "pd"), [("prefix-aware", False), ("precise-prefix", False),
                                            ("precise-prefix", True)])
def test_every_block_access_is_one_hit_or_a_miss_with_states(router, pd):
    """The cluster's accounting over a multi-turn workload on 2 racks of 2 nodes, with node DRAM and rack EIC: every
    lookup counted once (PD: of the prompt short of its last token), hits split by tier and location, and every hit
    not in the instance's HBM fetched (with its states: fetched blocks count them too)."""
    from sim.cluster.run import LOCATIONS
    from sim.serving.admission import admit
    from trace.workload import load_workload

    config = load_config(None, sets=[*SMALL, "serving.num_instances=1", "cluster.num_racks=2",
                                     "cluster.nodes_per_rack=2", f"cluster.router={router}",
                                     "cache.tiers.dram.capacity_gib=0.3", "cache.tiers.ssd.capacity_gib=0",
                                     "cache.tiers.eic.capacity_gib=0.5", "workload.synthetic.num_requests=300",
                                     # 20/s, not SMALL's 8: at 8/s precise-prefix, which sees the blocks running
                                     # requests hold, keeps every turn where its prefix is and fetches nothing
                                     # (at 16/s too once the q/k norms and MoE routing kernels were priced)
                                     "workload.synthetic.rate_rps=20"])
    trace = load_workload(config)
    admit(trace, config)
    result, _ = run_cluster(trace, config, pd=pd)
    metrics, cluster = result.metrics, result.metrics["cluster"]
    assert metrics["requests_completed"] == len(trace)
    assert metrics["accesses"] <= trace.num_accesses if pd else metrics["accesses"] == trace.num_accesses
    split = sum(cluster["hit_blocks"][tier][loc] for tier in cluster["hit_blocks"] for loc in LOCATIONS)
    assert 0 < split == metrics["hits"] <= metrics["accesses"]
    assert sum(metrics["tier_hit_ratio"].values()) == pytest.approx(metrics["hit_ratio"])
    fetched = sum(cluster["fetched_blocks"].values())
    assert fetched >= metrics["hits"] - sum(cluster["hit_blocks"]["hbm"].values())
    for scope, blocks in cluster["fetched_blocks"].items():  # each a block or a state, the state the smaller
        assert blocks * STATE_COPY <= cluster["fetched_bytes"][scope] <= blocks * BLOCK
    assert sum(cluster["fetched_bytes"].values()) < fetched * BLOCK  # states were fetched
