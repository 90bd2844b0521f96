"""Cluster mode with vLLM's hybrid KV-cache manager (gpt-oss): a prefix fetched from another location is served only
as far as every sliding group can serve it, and its sliding copies travel with it."""

from __future__ import annotations

import pytest

from sim.cluster.run import run_cluster
from sim.config import load_config
from sim.serving.kv_groups import kv_groups
from sim.specs import model_spec
from tests.conftest import assert_cluster_serves_as_single_node
from tests.test_serving import make_trace

# gpt-oss-20b: 12 full + 12 sliding layers of a 128-token window, one group each; at 16-token blocks a sliding hit
# needs cdiv(127, 16) = 8 blocks
GPT_OSS = kv_groups(model_spec("gpt-oss-20b"), 16)
# two nodes of one GPU in one rack, the rack's EIC pool the only lower tier; requests alternate between the nodes
TWO_NODES = ["model=gpt-oss-20b", "cluster.num_racks=1", "cluster.nodes_per_rack=2", "hardware.gpus_per_node=1",
             "serving.num_instances=1", "serving.num_gpu_blocks=150", "cluster.router=round-robin",
             "cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0", "cache.tiers.eic.capacity_gib=1"]
P = list(range(1, 22))  # 21 blocks of a 325-token prompt: 20 full, its last token in the 21st


def _evicted_then_sent_again(last: list[int]):
    """P on node 0; two 72-block prompts there push its cached blocks down to the rack's pool (the nodes' other
    requests are small); then ``last`` (325 tokens) on node 1."""
    fill_1, fill_2 = list(range(100, 172)), list(range(300, 372))
    small_1, small_2 = [200, 201, 202], [210, 211, 212]
    trace = make_trace([0.0, 1.0, 50.0, 51.0, 100.0, 150.0], [325, 40, 72 * 16, 40, 72 * 16, 325], [2] * 6,
                       block_lists=[P, small_1, fill_1, small_2, fill_2, last])
    return run_cluster(trace, load_config(None, sets=TWO_NODES))


def test_a_prompt_fetched_from_the_rack_pool_brings_its_sliding_copies():
    """By hand (vLLM's SlidingWindowManager, retention interval 0): P computed on node 0 keeps its full blocks and,
    in its sliding group, only its replay tail, the 8 blocks before its last token's block (blocks 12 … 19). Sent
    again on node 1, its 20 full blocks and that tail are all in the rack's pool: 20 blocks hit (320 tokens), 28
    blocks fetched from the rack. Without the tail the sliding group could serve nothing and neither would the hit."""
    assert GPT_OSS.hit_blocks == 8
    result, requests = _evicted_then_sent_again(P)
    cluster = result.metrics["cluster"]
    assert requests.instance.tolist() == [0, 1, 0, 1, 0, 1]
    assert requests.cached_tokens.tolist() == [0, 0, 0, 0, 0, 320]
    assert cluster["hit_blocks"]["eic"]["rack"] == 20 == result.metrics["hits"]
    assert cluster["fetched_blocks"] == {"node": 0, "rack": 20 + 8, "cross_rack": 0}


def test_a_shared_prefix_without_its_sliding_copies_is_neither_served_nor_fetched():
    """A prompt sharing P's first 15 blocks, then 6 of its own: the full group could serve 15 blocks from the rack's
    pool, but the sliding group holds only P's tail (blocks 12 … 19): blocks 12 … 14 are a run of 3, short of 8, and
    nothing runs from block 0, so vLLM's hit is 0 (the second prompt sharing a prefix recomputes it) and nothing is
    fetched for it."""
    result, requests = _evicted_then_sent_again(P[:15] + list(range(500, 506)))
    assert requests.cached_tokens.tolist() == [0] * 6
    assert result.metrics["hits"] == 0
    assert sum(result.metrics["cluster"]["fetched_blocks"].values()) == 0


def test_a_one_instance_cluster_serves_a_hybrid_model_as_the_single_node_mode():
    """One GPU, HBM only, overloaded: the same instance, manager and scheduler as the single-node mode, so every
    request's timing and cached tokens are the same (tests/test_cluster.py's case, for the hybrid manager)."""
    sets = ["model=gpt-oss-20b", "workload.limit=200", "hardware.gpus_per_node=1", "serving.num_gpu_blocks=300",
            "cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0", "cluster.router=round-robin",
            "serving.num_instances=1", "cluster.num_racks=1", "cluster.nodes_per_rack=1",
            "workload.synthetic.kind=multi-turn", "workload.synthetic.turns_mean=6",
            "workload.synthetic.think_time_median_s=0.5", "workload.synthetic.rate_rps=20"]
    assert_cluster_serves_as_single_node(load_config(None, sets=sets))


@pytest.mark.parametrize("pd", [False, True])
def test_every_block_access_is_one_hit_or_a_miss_with_sliding_copies(pd):
    """The cluster's accounting over a multi-turn workload on 2 racks of 2 two-GPU nodes, with node DRAM and rack
    EIC: every lookup counted once, hits split by tier and location, every hit not in the instance's HBM fetched."""
    from sim.cluster.run import LOCATIONS
    from sim.serving.admission import admit
    from trace.workload import load_workload

    config = load_config(None, sets=[
        "model=gpt-oss-20b", "cluster.num_racks=2", "cluster.nodes_per_rack=2", "hardware.gpus_per_node=2",
        "serving.num_instances=1", "cluster.router=prefix-aware", "serving.num_gpu_blocks=400",
        "cache.tiers.dram.capacity_gib=0.02", "cache.tiers.ssd.capacity_gib=0", "cache.tiers.eic.capacity_gib=0.04",
        "workload.synthetic.kind=multi-turn", "workload.synthetic.num_requests=120",
        "workload.synthetic.turns_mean=6", "workload.synthetic.think_time_median_s=0.2",
        "workload.synthetic.rate_rps=50", "workload.synthetic.input_tokens_mean=300",
        "workload.synthetic.output_tokens_mean=8"])
    trace = load_workload(config)
    admit(trace, config)
    result, _ = run_cluster(trace, config, pd=pd)
    metrics, cluster = result.metrics, result.metrics["cluster"]
    assert metrics["requests_completed"] == len(trace)
    assert metrics["accesses"] == trace.num_accesses
    split = sum(cluster["hit_blocks"][tier][loc] for tier in cluster["hit_blocks"] for loc in LOCATIONS)
    assert 0 < split == metrics["hits"] <= metrics["accesses"]
    assert sum(metrics["tier_hit_ratio"].values()) == pytest.approx(metrics["hit_ratio"])
    fetched = sum(cluster["fetched_blocks"].values())
    assert fetched >= metrics["hits"] - sum(cluster["hit_blocks"]["hbm"].values())


def test_a_hybrid_prefix_queued_behind_a_full_hbm_is_read_once_at_admission():
    """vLLM's order for a hybrid too (Scheduler.schedule: the KV connector's external tokens get every group's blocks,
    ``allocate_new_computed_blocks``, then WAITING_FOR_REMOTE_KVS till the load lands). By hand, gpt-oss-20b at
    16-token blocks (a sliding hit needs 8 blocks), one GPU with 22 usable HBM blocks (23 less vLLM's null block),
    node DRAM on, one sequence at a time. r0 ([1 … 9], 129 tokens) leaves its 8 full blocks and its sliding group's
    replay tail (the copies of blocks 1 … 8) cached: 16 blocks. r1 (170 tokens: 11 full-group blocks and 11 sliding
    ones while it prefills) takes all 22 at t = 10,
    pushing the 16 into DRAM; r2 ([1 … 8, 20], 133 tokens) arrives while r1 runs and is admitted as r1 leaves: its hit
    is 8 blocks (128 tokens) with their 8 sliding copies, 16 pages of 12 layers x 16 tokens x 8 KV heads x 64 x 2
    (K, V) x 2 bytes = 393,216 B, each read once from DRAM (50 GB/s after its 5 us, config.yaml; PCIe faster) into r2's
    own blocks. (Fetched on arrival into the full HBM's cache they were demoted at once and read again at admission:
    DRAM read 32 pages.)"""
    page = 12 * 16 * 8 * 64 * 2 * 2
    trace = make_trace([0.0, 10.0, 10.0005], [129, 170, 133], [1, 1, 1],
                       block_lists=[list(range(1, 10)), list(range(30, 41)), [*range(1, 9), 20]])
    config = load_config(None, sets=[
        "model=gpt-oss-20b", "cluster.num_racks=1", "cluster.nodes_per_rack=1", "hardware.gpus_per_node=1",
        "serving.num_instances=1", "serving.block_size=16", "serving.num_gpu_blocks=23", "serving.max_num_seqs=1",
        "cache.tiers.ssd.capacity_gib=0", "cache.tiers.eic.capacity_gib=0"])
    result, table = run_cluster(trace, config)
    m = result.metrics
    assert m["cluster"]["block_bytes"] == page == 393_216
    assert (m["hits"], m["accesses"], m["cluster"]["hit_blocks"]["dram"]["node"]) == (8, 9 + 11 + 9, 8)
    assert table.cached_tokens.tolist() == [0, 0, 128]
    assert m["tiers"]["dram"]["bytes_read"] == 16 * page  # each page read once
    assert m["cluster"]["fetched_blocks"] == {"node": 8 + 8, "rack": 0, "cross_rack": 0}
    # taken as r1 leaves (one sequence at a time: r1 runs), then scheduled when its load lands
    assert table.fetch[2] == pytest.approx(5e-6 + 16 * page / 50e9, rel=1e-12)
    assert table.scheduled[2] == pytest.approx(table.last_token[1] + table.fetch[2], rel=1e-12)
    assert table.kv_load[2] == 0.0 and table.first_token[2] > table.scheduled[2]


def test_a_block_aligned_prompts_last_block_is_loaded_from_below_beside_its_sliding_copies_in_hbm(monkeypatch):
    """A gpt-oss prompt whose last block the connector loads from DRAM (HBM's rule recomputes a block-aligned prompt's
    last block; ``_last_block_from_below``) while that block's sliding copies are in this HBM: the hit is usable only
    if those copies are there when the request runs. By hand, one GPU, 59 usable HBM blocks of 16, inclusive DRAM
    (every cached page copied there), a page 393,216 B (12 layers x 16 tokens x 8 KV heads x 64 x 2 x 2 bytes): r0
    ([1 … 9], 129 tokens) leaves full blocks 1 … 8 and the sliding copies of blocks 1 … 8 (its replay tail) cached. r1
    ([1 … 8], 128 tokens): blocks 1 … 7 from HBM, block 8 from its DRAM copy (1 page loaded), and the 8 copies a
    sliding hit of 8 blocks needs (blocks 1 … 8) from HBM, unread: 8 hits, 127 tokens cached, 1 page read, as on the
    single node. The copies are the parked request's from its admission (held, so not evicted while its load is in
    flight). (vLLM's GPU lookup stops at 127 tokens for every group, so its connector would load block 8's sliding
    page from the store too: the cost of an HBM-held copy, left out on the single node as well.)"""
    from sim.serving import scheduler
    from sim.serving.run import run_serving

    page = 12 * 16 * 8 * 64 * 2 * 2
    held_while_loading = []
    park = scheduler.Scheduler._park

    def parked(self, job, match, tokens, plan, now):
        park(self, job, match, tokens, plan, now)
        held_while_loading.append(all(key in self.kv.pool for key in self.kv._keys(job, 0, 8)))

    monkeypatch.setattr(scheduler.Scheduler, "_park", parked)
    trace = make_trace([0.0, 10.0], [129, 128], [1, 1], block_lists=[list(range(1, 10)), list(range(1, 9))])
    config = load_config(None, sets=[
        "model=gpt-oss-20b", "cluster.num_racks=1", "cluster.nodes_per_rack=1", "hardware.gpus_per_node=1",
        "serving.num_instances=1", "serving.block_size=16", "serving.num_gpu_blocks=60", "cache.inclusion=inclusive",
        "cache.tiers.ssd.capacity_gib=0", "cache.tiers.eic.capacity_gib=0"])
    cluster, table = run_cluster(trace, config)
    single, single_table = run_serving(trace, config, "single")
    m = cluster.metrics
    assert held_while_loading == [True]
    assert table.cached_tokens.tolist() == single_table.cached_tokens.tolist() == [0, 127]
    assert (m["hits"], m["cluster"]["hit_blocks"]["hbm"]["instance"], m["cluster"]["hit_blocks"]["dram"]["node"]) == (
        8, 7, 1)
    assert m["cluster"]["fetched_blocks"] == {"node": 1, "rack": 0, "cross_rack": 0}
    assert m["tiers"]["dram"]["bytes_read"] == single.metrics["tiers"]["dram"]["bytes_read"] == page
    assert table.first_token[1] == pytest.approx(single_table.first_token[1], rel=1e-12)
