"""--cluster's KV connector and the scheduler's running list: what a load in flight changes for the requests beside it
(a running request's steps go on; the loaded one joins the batch last and is preempted first) and what a preempted
request asks the connector again (vLLM's ``_preempt_request``: num_computed_tokens 0, a new lookup). By hand."""

from __future__ import annotations

import pytest

from sim.cluster.run import run_cluster
from sim.config import load_config
from tests.test_cluster import ONE_GPU_CLUSTER


def _one_gpu_single_and_cluster(rows, *sets: str):
    """``rows`` of (arrival s, prompt tokens, output tokens, block ids) on one GPU with DRAM (no SSD, no EIC): the
    per-request tables of the one-instance cluster and of the single node (``serving.num_instances=1``)."""
    from sim.serving.run import run_serving
    from tests.test_serving import make_trace

    arrival, inputs, outputs, blocks = (list(x) for x in zip(*rows, strict=True))
    trace = make_trace(arrival, inputs, outputs, block_lists=blocks)
    config = load_config(None, sets=[*ONE_GPU_CLUSTER, "cache.tiers.ssd.capacity_gib=0",
                                     "cache.tiers.eic.capacity_gib=0", *sets])
    return run_cluster(trace, config)[1], run_serving(trace, config, "single")[1]


def test_a_running_request_decodes_through_a_connector_load_where_the_single_node_stalls():
    """Why a one-instance cluster with lower tiers serves its requests a little differently from the single node
    (README Cluster), mechanism 1: the connector's load runs beside the batch (vLLM: the request waits out of it,
    WAITING_FOR_REMOTE_KVS, while the running requests' steps go on), where the single node reads its lower tier inside
    the admitting step, which every running request waits for. By hand, one GPU, 10 usable HBM blocks of 16: r0 ([1,
    2]) is cached, r1 (10 blocks) pushes it to DRAM, R (2 blocks, 50 output tokens) decodes from 20 s, A ([1, 2, 7])
    arrives at 20.05 s and loads 2 blocks of 2 MiB from a DRAM of 4,194,304 B/s: 5 us + 1 s. In the cluster R finishes
    exactly as it does without A; on the single node its tokens wait that second (R's decode steps put a block boundary
    or a preemption one step earlier or later there: what then differs in which blocks a tight DRAM keeps)."""
    rows = [(0.0, 32, 1, [1, 2]), (10.0, 150, 2, list(range(21, 31))), (20.0, 20, 50, [11, 12]),
            (20.05, 40, 1, [1, 2, 7])]
    sets = ["serving.num_gpu_blocks=11", "cache.tiers.dram.read_gbps=0.004194304"]
    cluster, single = _one_gpu_single_and_cluster(rows, *sets)
    alone, _ = _one_gpu_single_and_cluster(rows[:3], *sets)
    r, a, load = 2, 3, 5e-6 + 1.0
    assert cluster.fetch[a] == pytest.approx(load, rel=1e-9) and single.kv_load[a] == pytest.approx(load, rel=1e-9)
    assert cluster.cached_tokens[a] == single.cached_tokens[a] == 32  # the same hit either way
    assert cluster.last_token[r] == alone.last_token[r] < cluster.scheduled[a]
    assert single.last_token[r] > alone.last_token[r] + load


def test_a_request_whose_connector_load_landed_joins_the_batch_last_and_is_preempted_first():
    """Mechanism 2: vLLM appends a request to ``running`` when it is scheduled, which for one whose connector load was
    in flight is after the load lands (vllm/v1/core/sched/scheduler.py ``Scheduler.schedule``: WAITING_FOR_REMOTE_KVS
    skipped until ready, then ``self.running.append``), after the requests behind it that were scheduled meanwhile;
    FCFS preemption takes the last (``self.running.pop()``). By hand, one GPU, 6 usable HBM blocks of 16: r0's [1, 2]
    pushed to DRAM by r1 (6 blocks); A ([1, 2, 7]) and B ([11, 12, 13]) arrive together, 40 tokens and 20 output
    tokens each, 3 blocks each (all 6). In the cluster B is scheduled at once and A when its 2 blocks land (5 us + 2 x
    2 MiB / 50 GB/s, during B's prefill), so B reaches its 49th token, which needs a 4th block, first, and A, last in
    the batch, is preempted; on the single node A is read and admitted first, both decode in step, and B is."""
    rows = [(0.0, 32, 1, [1, 2]), (10.0, 90, 2, [3, 4, 5, 6, 8, 9]), (20.0, 40, 20, [1, 2, 7]),
            (20.0, 40, 20, [11, 12, 13])]
    cluster, single = _one_gpu_single_and_cluster(rows, "serving.num_gpu_blocks=7")
    a, b = 2, 3
    assert cluster.fetch[a] == pytest.approx(5e-6 + 2 * 2 * 32 * 8 * 128 * 2 * 16 / 50e9, rel=1e-9)
    assert cluster.scheduled[b] == 20.0 < cluster.scheduled[a] == cluster.first_token[b]
    assert (cluster.preemptions[a], cluster.preemptions[b]) == (1, 0)
    assert (single.scheduled[a], single.scheduled[b]) == (20.0, 20.0)
    assert (single.preemptions[a], single.preemptions[b]) == (0, 1)


def test_a_request_preempted_after_its_connector_load_is_looked_up_again_as_a_new_one():
    """vLLM's ``_preempt_request`` sets num_computed_tokens to 0, so the next admission asks ``get_computed_blocks``
    and the connector afresh (vllm/v1/core/sched/scheduler.py ``Scheduler.schedule``: ``if
    request.num_computed_tokens == 0``); nothing of the first load is remembered. By hand, one GPU, 6 usable HBM
    blocks of 16, inclusive DRAM (every cached block copied there), llama-3.1-8b (2,097,152 bytes a block): r0 ([1, 2])
    leaves blocks 1, 2 in HBM and DRAM. At 2 s D ([11, 12, 13], 48 tokens, 13 out), A ([1], 16 tokens) and B ([1, 14],
    32 tokens, 9 out) arrive. A's one block is in HBM, which serves a 16-token prompt no whole block (the last token
    is recomputed), so the connector loads block 1's DRAM copy (1 read); B waits for that load, then is admitted
    (block 1 from HBM) before A, whose landing is read in after that plan, joins. B's 33rd token needs a 3rd block
    and none is free: A (last in the batch, holding only block 1, which B holds too) is preempted before its first
    token, then B. B comes back first (when D finishes) and holds block 1 again; A is then looked up as a new request
    would be: block 1 again from DRAM (2 reads in all, 15 tokens cached), loaded by the connector again (2 blocks
    fetched in all; before, its re-admission read it inside a step: 1 fetched). kvsim once kept A's first load in
    ``Job.external`` and served block 1 from HBM unread (1 read)."""
    from tests.test_serving import make_trace

    rows = [(0.0, 32, 2, [1, 2]), (2.0, 48, 13, [11, 12, 13]), (2.0, 16, 10, [1]), (2.0, 32, 9, [1, 14])]
    arrival, inputs, outputs, blocks = (list(x) for x in zip(*rows, strict=True))
    trace = make_trace(arrival, inputs, outputs, block_lists=blocks)
    result, requests = run_cluster(trace, load_config(None, sets=[
        *ONE_GPU_CLUSTER, "serving.num_gpu_blocks=7", "cache.inclusion=inclusive", "cache.tiers.ssd.capacity_gib=0",
        "cache.tiers.eic.capacity_gib=0"]))
    m = result.metrics
    a, b = 2, 3
    assert (requests.preemptions[a], requests.preemptions[b]) == (1, 1)
    assert requests.first_token[a] > requests.first_token[b]  # A's first token came after its preemption
    assert requests.cached_tokens[a] == 15  # (counted at the first admission)
    assert m["cluster"]["fetched_blocks"]["node"] == 2  # the connector's loads, at each admission
    assert m["tiers"]["dram"]["bytes_read"] == 2 * 2 * 32 * 8 * 128 * 2 * 16


def test_a_preempted_request_asks_the_connector_again_for_a_prefix_held_on_another_node():
    """vLLM's re-admission of a preempted request asks its KV connector afresh (``_preempt_request`` sets
    num_computed_tokens to 0; ``Scheduler.schedule`` then calls ``get_num_new_matched_tokens`` and loads
    asynchronously, "We must be loading for a resumed preemption"), so a prefix held at another location is loaded
    again, not recomputed. By hand, 2 nodes x 1 GPU, round-robin (even rows -> node 0, odd -> node 1), 6 usable HBM
    blocks of 16 tokens each, exclusive tiers, DRAM only (no SSD, no EIC), llama-3.1-8b (2,097,152 bytes a block):
    r0 ([1, 2]) leaves blocks 1, 2 cached on node 0 and r2 (6 blocks) pushes them into node 0's DRAM. Node 1 then
    replays the case above with A ([1], 16 tokens, 10 out) loading block 1 from node 0's DRAM (a ``rack`` location)
    and preempted before its first token. At its re-admission node 1's HBM holds block 1 (B's, or cached), but a
    block-aligned 16-token prompt's one block is served only from below HBM or another location (the last token
    is recomputed), and node 1's own DRAM holds no copy (exclusive): before, A recomputed all 16 tokens (1 block
    fetched, 1 DRAM read); the connector asked again loads block 1 from node 0's DRAM a second time (2 fetched, 2
    read). Its hits and cached tokens count once (15: its first admission), its ``fetch`` is the first load's (one
    block over 12.5 GB/s NICs: 2,097,152 B / 12.5e9 B/s + 5 us DRAM + 5 us network latency = 177.77216 us), and its
    TTFT breakdown still sums to its TTFT."""
    from tests.test_serving import make_trace

    rows = [(0.0, 32, 1, [1, 2]), (0.5, 8, 1, [61]), (1.0, 96, 1, [31, 32, 33, 34, 35, 36]),
            (2.0, 48, 13, [11, 12, 13]), (2.0, 8, 1, [62]), (2.0, 16, 10, [1]), (2.0, 8, 1, [63]),
            (2.0, 32, 9, [1, 14])]
    arrival, inputs, outputs, blocks = (list(x) for x in zip(*rows, strict=True))
    trace = make_trace(arrival, inputs, outputs, block_lists=blocks)
    result, requests = run_cluster(trace, load_config(None, sets=[
        "cluster.num_racks=1", "cluster.nodes_per_rack=2", "hardware.gpus_per_node=1", "serving.block_size=16",
        "cluster.router=round-robin", "serving.num_gpu_blocks=7", "cache.tiers.ssd.capacity_gib=0",
        "cache.tiers.eic.capacity_gib=0"]))
    m = result.metrics
    a, block = 5, 2 * 32 * 8 * 128 * 2 * 16
    assert requests.instance[a] == 1 and requests.preemptions[a] == 1
    assert m["cluster"]["fetched_blocks"] == {"node": 0, "rack": 2, "cross_rack": 0}
    assert m["tiers"]["dram"]["bytes_read"] == 2 * block
    # counted once: A's one hit (node 0's DRAM, seen from node 1) and B's one HBM hit
    assert m["cluster"]["hit_blocks"]["dram"]["rack"] == 1 and m["hits"] == 2
    assert requests.cached_tokens[a] == 15
    assert requests.fetch[a] == pytest.approx(block / 12.5e9 + 5e-6 + 5e-6, rel=1e-9)
    parts = requests.breakdown()
    assert sum(float(parts[k][a]) for k in parts) == pytest.approx(float(requests.ttft[a]), rel=1e-12)
    assert float(parts["queue"][a]) >= 0.0
