"""PD: a request's decode instance is bound when it is dispatched, and it waits for that instance's memory in that
instance's own queue (``sim.serving.decode_queues``: vLLM's proxies, SGLang's mini_lb and llm-d's EPP pick the decode
instance with the prefill instance, at arrival; each decode instance admits remote-KV requests FCFS from its own
waiting queue).

Cases worked by hand: one prefill instance, two decode instances A (instance 1) and B (instance 2), blocks of 16
tokens. The binding rank: fewest requests bound and not finished, then the least KV in use, then the lowest index."""

from __future__ import annotations

import pytest

from sim.config import load_config
from sim.serving.run import ServingRun
from tests.test_serving import make_trace

A, B = 1, 2


def _run(num_gpu_blocks: int, arrival, inputs, outputs) -> ServingRun:
    config = load_config(None, sets=["pd.num_prefill=1", "pd.num_decode=2", "serving.block_size=16",
                                     f"serving.num_gpu_blocks={num_gpu_blocks}"])
    run = ServingRun(make_trace(arrival, inputs, outputs), config, "pd")
    run.run()
    assert run.completed == len(arrival)
    return run


def test_a_request_bound_to_a_free_instance_is_not_held_behind_one_bound_to_a_full_instance():
    """16 usable blocks per decode instance. R0 (200-token prompt: 13 blocks, 40 tokens out: up to 15) is bound to A
    (both idle: the lowest index), R1 (216: 14 blocks, 24 out) to B (A has one bound). At 0.1 s R2 (64 tokens: 4
    blocks) is bound to A (one request each; A's 13 or 14 blocks in use below B's 15), at 0.12 s R3 (8 tokens: 1
    block) to B (A has two). R2's prefill ends first; A has at most 3 free blocks while R0 runs, so R2 waits in A's
    queue until R0 ends, even after R1 ends and B could take it. R3 needs 1 block, which B has: it is sent as its
    prefill ends, while R0 and R1 both still run. (One FCFS queue for both instances held R3 behind R2, which fitted
    neither, until R1's end let R2 go to B.)"""
    run = _run(17, [0.0, 0.0, 0.1, 0.12], [200, 216, 64, 8], [40, 24, 1, 1])
    table = run.table
    assert table.decode_instance.tolist() == [A, B, A, B]
    assert table.kv_sent[3] == pytest.approx(table.prefill_done[3], abs=1e-12)
    assert table.kv_sent[3] < min(table.last_token[0], table.last_token[1])
    assert table.last_token[1] < table.last_token[0]  # (B emptied first ...)
    assert table.kv_sent[2] == pytest.approx(table.last_token[0], abs=1e-12)  # (... but R2 waited for A's R0)


def test_the_decode_instance_is_the_one_bound_at_arrival_though_another_is_emptier_when_the_prefill_ends():
    """100 usable blocks. R0 (160-token prompt: 10 blocks, 400 tokens out) and R1 (200: 13 blocks, 2 out) arrive at
    0 and are bound to A and B. R2 (1,000 tokens) arrives at 0.02 s, while both decode: one request bound to each, A
    holds fewer blocks (10 or 11 against 13), so R2 is bound to A. R1 ends before R2's prefill does: B is empty, A
    still runs R0. R2's KV goes to A all the same (it has room: sent as the prefill ends), where a choice made when
    the prefill ended took B, the least KV in use."""
    run = _run(101, [0.0, 0.0, 0.02], [160, 200, 1000], [400, 2, 1])
    table = run.table
    assert table.decode_instance.tolist() == [A, B, A]
    assert table.arrival[2] < table.last_token[1] < table.prefill_done[2] < table.last_token[0]
    assert table.kv_sent[2] == pytest.approx(table.prefill_done[2], abs=1e-12)


def test_a_cluster_request_stays_in_its_rack_when_another_of_its_decode_instances_has_room():
    """``--cluster --pd``, 2 racks of 1 prefill (instances 0, 3) and 2 decode instances (1, 2 and 4, 5), 16 usable
    blocks each, round-robin: even requests go to rack 0, odd ones to rack 1 (a 8-token prompt, 1 out: rack 1's
    instance 4 is built). R0 (160 tokens: 10 blocks, 90 out) is bound to 1; R2 and R4 (16 tokens, 60 out) to 2 (1 has
    one bound, then 1's KV in use is higher). At 0.2 s R6 (96 tokens: 6 blocks) ranks 1 first (one bound against
    two), which has no room (R0 holds 11 blocks); 2 holds R2's and R4's few: R6 is bound to 2, in its own rack (README:
    another rack's only when none of its own has room), not sent over the uplinks to rack 1's 4."""
    run = _two_racks_run([0.0, 0.0, 0.1, 0.1, 0.15, 0.15, 0.2], [160, 8, 16, 8, 16, 8, 96], [90, 1, 60, 1, 60, 1, 1])
    assert run.table.instance.tolist() == [0, 3, 0, 3, 0, 3, 0]
    assert run.table.decode_instance.tolist() == [1, 4, 2, 4, 2, 4, 2]


@pytest.mark.parametrize("sets", [
    ["pd.num_decode=3", "pd.transfer=pull", "serving.num_gpu_blocks=400", "serving.max_num_seqs=8"],
    ["pd.num_prefill=2", "pd.num_decode=2", "pd.transfer=layerwise", "serving.num_gpu_blocks=300"],
    ["cluster.num_racks=3", "cluster.nodes_per_rack=1", "hardware.gpus_per_node=2", "serving.num_gpu_blocks=300"],
])
def test_every_decode_queue_is_empty_and_unbound_when_a_run_ends(sets):
    """Tight decode memory (requests wait in their instance's queue): at the end no request is left bound, queued or
    counted waiting on any decode instance (each bound one was handed to its instance exactly once)."""
    from sim.cluster.run import ClusterRun
    from tests.test_cluster import _trace_and_config

    trace, config = _trace_and_config([
        "workload.synthetic.kind=multi-turn", "workload.synthetic.start=empty", "workload.synthetic.num_requests=200",
        "workload.synthetic.rate_rps=8", "workload.synthetic.input_tokens_mean=400", *sets])
    cluster = sets[0].startswith("cluster.")
    run = ClusterRun(trace, config, pd=True) if cluster else ServingRun(trace, config, "pd")
    run.run()
    queues = run.decode_queues
    assert run.completed == len(trace) and len(queues.queues) > 1 and queues.waiting == 0
    assert [(q.bound, q.bound_blocks, len(q.jobs)) for q in queues.queues.values()] == [(0, 0, 0)] * len(queues.queues)


def test_a_cluster_request_no_decode_instance_has_room_for_is_bound_in_its_own_rack():
    """The racks of ``test_a_cluster_request_stays_in_its_rack_when_another_of_its_decode_instances_has_room``. At 0
    s R0 (160 tokens: 10 blocks, 60 out) is bound to 1, R1 (176: 11 blocks) to rack 1's 4, R2 (176) to 2 (1 has no
    room beside R0's 10 bound blocks). At 0.2 s R3 (176 tokens, rack 1) is bound to the idle 5, its 11 blocks not yet
    reserved, and R4 (96 tokens: 6 blocks, rack 0) finds no room anywhere: 1 holds 12 blocks, 2 and 4 13, and 5 has
    11 bound. It is bound to its own rack's best ranked, 1 (one request, 12 of 16 blocks in use, against 2's 13), not
    to 5, which ranks best of all (one request, no KV in use yet): another rack's only when it has room (README)."""
    run = _two_racks_run([0.0, 0.0, 0.0, 0.2, 0.2], [160, 176, 176, 176, 96], [60, 60, 60, 60, 1])
    assert run.table.instance.tolist() == [0, 3, 0, 3, 0]
    assert run.table.decode_instance.tolist() == [1, 4, 2, 5, 1]
    assert run.table.kv_sent[4] > run.table.arrival[4] + 0.1  # (it waited for 1's memory: R0's end)


def test_a_cluster_request_whose_rack_has_no_room_is_bound_to_another_rack_s_best_with_room():
    """The same racks. At 0 s R0 (160 tokens, 60 out) is bound to 1, R1 (8 tokens, 1 out) to rack 1's 4, R2 (176
    tokens, 60 out) to 2. At 0.2 s (R1 ended) R3 (8 tokens, rack 1) is bound to 4, and R4 (96 tokens: 6 blocks,
    rack 0) finds no room in its rack (1 holds 12 blocks, 2 13): it is bound to rack 1's best ranked with room, 5 (no
    request, against 4's R3), and its KV is sent as its prefill ends, not held for R0's end on 1."""
    run = _two_racks_run([0.0, 0.0, 0.0, 0.2, 0.2], [160, 8, 176, 8, 96], [60, 1, 60, 1, 1])
    table = run.table
    assert table.instance.tolist() == [0, 3, 0, 3, 0]
    assert table.decode_instance.tolist() == [1, 4, 2, 4, 5]
    assert table.kv_sent[4] == pytest.approx(table.prefill_done[4], abs=1e-12) and table.kv_sent[4] < table.last_token[0]


def _two_racks_run(arrivals: list[float], inputs: list[int], outputs: list[int], block_lists=None, sets=()):
    """A finished ``--cluster --pd`` run of the given requests (their prompts' blocks ``block_lists``, default
    unique) on 2 racks of 1 prefill instance (0, 3) and 2 decode instances (1, 2 and 4, 5), 16 usable blocks of 16
    tokens each, HBM only, round-robin over the racks (``sets``: more settings)."""
    from sim.cluster.run import ClusterRun

    config = load_config(None, sets=[
        "cluster.num_racks=2", "cluster.nodes_per_rack=1", "hardware.gpus_per_node=3", "pd.num_prefill=1",
        "pd.num_decode=2", "cluster.router=round-robin", "serving.block_size=16", "serving.num_gpu_blocks=17",
        "cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0", "cache.tiers.eic.capacity_gib=0", *sets])
    run = ClusterRun(make_trace(arrivals, inputs, outputs, block_lists=block_lists), config, pd=True)
    run.run()
    return run


P = list(range(100, 108))  # a prompt's first 8 blocks (128 tokens), which a later prompt shares


@pytest.mark.parametrize("router", ["least-loaded", "prefix-aware"])
def test_a_cluster_request_stays_in_its_rack_where_the_prefix_it_shares_with_a_running_request_leaves_room(router):
    """The racks of ``test_a_cluster_request_stays_in_its_rack_when_another_of_its_decode_instances_has_room``, blocks
    of prompts given. At 0 s R0 (128 tokens: P, 60 out) is bound to 1, R1 (8 tokens, 1 out) to rack 1's 4, R2 (160
    tokens: 10 unique blocks, 60 out) to 2. At 0.2 s R3 (8 tokens, rack 1) is bound to 4, and R4 (176 tokens: P and 3
    blocks more, 11 blocks, 1 out, rack 0) finds neither of its rack's with 11 blocks free (1 holds R0's 9 to 12, 2
    R2's 11 to 14). But R0 runs on 1 and holds P there: R4 shares P's 8 blocks (its hit: 8 of its 10 usable, vLLM's
    ``get_computed_blocks``; a running request's blocks are shared, ``allocate_slots`` takes new ones only past the
    hit) and takes 3 new ones, which 1 has (at least 4 free). So R4 is bound to 1 and sent its 3 blocks within the
    node, not its 11 over the uplinks to rack 1 (the room counted no hit: it spilled there), under either router
    (room is a capacity fact, not a preference)."""
    blocks = [P, [1], list(range(10, 20)), [2], P + [200, 201, 202]]
    run = _two_racks_run([0.0, 0.0, 0.0, 0.2, 0.2], [128, 8, 160, 8, 176], [60, 1, 60, 1, 1], blocks,
                         [f"pd.decode_router={router}"])
    table = run.table
    assert table.instance.tolist() == [0, 3, 0, 3, 0]
    assert table.decode_instance.tolist() == [1, 4, 2, 4, 1]
    assert table.kv_sent[4] < table.last_token[0]  # (R0 still held P when R4's KV was sent)
    assert (table.kv_transfer_bytes // run.transfer.moved_bytes).tolist() == [8, 1, 10, 1, 3]
    assert run.kv_transfer_blocks["cross_rack"] == 0 and run.kv_transfer_blocks["node"] == 8 + 1 + 10 + 1 + 3


@pytest.mark.parametrize("router", ["least-loaded", "prefix-aware"])
def test_a_prefix_still_landing_on_a_decode_instance_counts_as_held_there_at_dispatch(router):
    """The same racks. At 0 s R0 (128 tokens, 8 unique blocks, 60 out) is bound to 1, R1 (8 tokens, 1 out) to rack
    1's 4, R2 (176 tokens: 11 blocks, 60 out) to 2; at 0.1 s R3 (8 tokens) to 4, R4 (64 tokens: P's first 4 blocks,
    60 out) to 1 (one request each, R0's 9 blocks below R2's 12), R5 (8 tokens) to 5 (R3 bound to 4). R6 (96
    tokens: those 4 and 2 more, 6 blocks, 1 out) arrives while R4's KV crosses to 1 (R4 holds its 4 blocks there, not
    yet cached: a lookup then stops at them, vLLM caching a received block as it lands). 1 has 3 blocks free, 2 4:
    neither 6. But
    R4's KV lands before R6's prefill ends, after which R6's KV is sent: R6 then shares those 4 blocks (held by R4)
    and takes 2 new ones, which 1 has. So they count at dispatch as held, in room (and rank) alike: R6 is bound to 1
    and sent 2 blocks in the node, not its 6 across the racks (before: no hit counted in the room; skipping blocks
    still landing would spill it too)."""
    arrivals, inputs, outputs = [0.0, 0.0, 0.0, 0.1, 0.1, 0.1], [128, 8, 176, 8, 64, 8], [60, 1, 60, 1, 60, 1]
    blocks = [list(range(10, 18)), [1], list(range(20, 31)), [2], P[:4], [3]]
    sets = [f"pd.decode_router={router}"]
    first = _two_racks_run(arrivals, inputs, outputs, blocks, sets).table  # (R6 changes nothing before it arrives)
    landing = (first.kv_sent[4] + first.kv_ready[4]) / 2
    run = _two_racks_run([*arrivals, landing], [*inputs, 96], [*outputs, 1], [*blocks, P[:4] + [300, 301]], sets)
    table = run.table
    assert table.kv_sent[4] < table.arrival[6] < table.kv_ready[4] < table.prefill_done[6]
    assert table.decode_instance.tolist() == [1, 4, 2, 4, 1, 5, 1]
    assert (table.kv_transfer_bytes // run.transfer.moved_bytes).tolist() == [8, 1, 11, 1, 4, 1, 2]
    assert run.kv_transfer_blocks["cross_rack"] == 0
