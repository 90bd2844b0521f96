"""PD: ``pd.decode_router`` chooses a request's decode instance at dispatch (``sim.serving.decode_queues``):
``least-loaded`` (the default: requests bound and not finished, then KV in use, then index, as llm-d's PD guide and
Dynamo's decode routing rank by load alone) or ``prefix-aware`` (the longest prompt prefix in the decode instance's
HBM first, as llm-d's sample PD config's ``prefix-cache-scorer`` and sgl-router's ``cache_aware`` decode policy weigh
it). Only the blocks the chosen instance lacks are sent (``Instance.reserve``).

A case worked by hand: one prefill instance (index 0), two decode instances D0 (1) and D1 (2), blocks of 16 tokens,
200 KV blocks each (room for all). R0 (160 tokens, 10 blocks, 400 out) and R1 (the first turn of a conversation:
64 tokens, its 4 blocks P, 1 out) arrive at 0: R0 is bound to D0 (both idle: the lowest index), R1 to D1 (D0 has one
bound); R1 ends within 0.02 s and D1 keeps P cached. At 0.5 s R2 and R3 (96 tokens, unique blocks, 300 out) are bound
to D1 (none bound there, one on D0), then to D1 again (one each, D1's KV in use none against R0's 10+ blocks on D0).
At 0.6 s R4, the second turn (96 tokens: P and two new blocks), arrives: D0 runs one request, D1 two. least-loaded
binds it to D0, which lacks all 6 of its blocks; prefix-aware to D1, which holds P: 6 - 4 = 2 blocks are sent. The
other requests find no prefix anywhere and are bound as least-loaded binds them."""

from __future__ import annotations

import pytest

from sim.config import load_config
from sim.serving.run import ServingRun
from tests.test_serving import make_trace

D0, D1 = 1, 2
P = [100, 101, 102, 103]  # the conversation's first turn: its prompt's 4 blocks
BLOCKS = [list(range(10)), P, list(range(20, 26)), list(range(30, 36)), P + [104, 105]]
ARRIVAL, INPUTS, OUTPUTS = [0.0, 0.0, 0.5, 0.5, 0.6], [160, 64, 96, 96, 96], [400, 1, 300, 300, 1]
BASE = ["pd.num_prefill=1", "pd.num_decode=2", "serving.block_size=16", "serving.num_gpu_blocks=200"]
# (the cluster: one rack of one node, its 3 GPUs the prefill instance and the two decode instances, no lower tiers)
CLUSTER = ["cluster.num_racks=1", "cluster.nodes_per_rack=1", "hardware.gpus_per_node=3",
           "cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0", "cache.tiers.eic.capacity_gib=0"]
EXPECTED = {  # decode instance of each request, then the blocks sent for each (R0: 10, R1: 4, R2/R3: 6)
    "least-loaded": ([D0, D1, D1, D1, D0], [10, 4, 6, 6, 6]),
    "prefix-aware": ([D0, D1, D1, D1, D1], [10, 4, 6, 6, 2]),
}


def _run(router: str, cluster: bool):
    sets = [*BASE, *(CLUSTER if cluster else []), f"pd.decode_router={router}"]
    trace = make_trace(ARRIVAL, INPUTS, OUTPUTS, block_lists=BLOCKS)
    if cluster:
        from sim.cluster.run import ClusterRun

        run = ClusterRun(trace, load_config(None, sets=sets), pd=True)
    else:
        run = ServingRun(trace, load_config(None, sets=sets), "pd")
    run.run()
    assert run.completed == len(ARRIVAL)
    return run


@pytest.mark.parametrize("cluster", [False, True], ids=["pd", "cluster-pd"])
@pytest.mark.parametrize("router", sorted(EXPECTED))
def test_the_second_turn_goes_where_its_prefix_is_only_with_the_prefix_aware_decode_router(router, cluster):
    run = _run(router, cluster)
    table = run.table
    assert table.last_token[1] < ARRIVAL[2]  # (R1 ended: D1 holds P cached, none of it in use)
    decode, sent = EXPECTED[router]
    assert table.decode_instance.tolist() == decode
    per_block = run.transfer.moved_bytes  # (every decode rank's bytes of one block: TP 1, the block's KV)
    assert (table.kv_transfer_bytes // per_block).tolist() == sent
    assert (table.kv_transfer_bytes % per_block == 0).all()
    if cluster:  # the fleet's count of blocks sent within the node
        assert run.kv_transfer_blocks["node"] == sum(sent)


def test_the_prefix_aware_choice_sends_only_the_blocks_its_decode_instance_lacks():
    """R4's transfer under prefix-aware is its prompt blocks less the prefix D1 held when it was bound (the blocks
    D1 lacked), and 4 blocks fewer than least-loaded's, which D0 lacked entirely."""
    runs = {router: _run(router, cluster=False) for router in EXPECTED}
    per_block = runs["prefix-aware"].transfer.moved_bytes
    held = len(P)  # D1 held R1's prompt blocks, P, the prefix of R4's
    assert runs["prefix-aware"].table.kv_transfer_bytes[4] == (len(BLOCKS[4]) - held) * per_block
    assert runs["least-loaded"].table.kv_transfer_bytes[4] == len(BLOCKS[4]) * per_block


@pytest.mark.parametrize("flags, message", [
    (["--pd"], "--set pd.decode_router: pd.num_decode is 1: every request is bound to that decode instance"),
    (["--cluster", "--pd"], "--set pd.decode_router: pd.num_decode is 1 in one rack: every request is bound"),
])
def test_a_decode_router_with_one_decode_instance_to_choose_is_refused(run_cli, flags, message):
    status, _, err = run_cli(*flags, "--preset", "smoke", "--no-plot", "--set", "pd.decode_router=prefix-aware")
    assert status == 2 and message in err, err


def test_an_unknown_decode_router_is_refused_with_the_valid_names(run_cli):
    status, _, err = run_cli("--pd", "--preset", "smoke", "--no-plot", "--set", "pd.num_decode=2",
                             "--set", "pd.decode_router=cache-aware")
    assert status == 2 and "pd.decode_router" in err and "least-loaded, prefix-aware" in err, err


def test_a_decode_router_is_taken_where_there_is_a_choice(run_cli):
    """Two decode instances (or, in a cluster, two racks of one: another rack's is a choice when its own has no room):
    the key is read, exit 0."""
    for flags in (["--pd", "--set", "pd.num_decode=2"],
                  ["--cluster", "--pd", "--set", "cluster.num_racks=2", "--set", "cluster.nodes_per_rack=1"]):
        status, _, err = run_cli(*flags, "--preset", "smoke", "--no-plot", "--quiet", "--set",
                                 "workload.synthetic.num_requests=20", "--set", "pd.decode_router=prefix-aware")
        assert status == 0, err


def test_a_decode_router_without_prefix_caching_is_refused(run_cli):
    """With prefix caching off no decode instance holds a prefix (``KVCacheManager.cached_prefix_blocks`` is 0
    everywhere), so prefix-aware binds every request where least-loaded does: the key is unread, exit 2."""
    for flags in (["--pd"], ["--cluster", "--pd", "--set", "cluster.num_racks=2", "--set", "cluster.nodes_per_rack=1"]):
        status, _, err = run_cli(*flags, "--preset", "smoke", "--no-plot", "--set", "pd.num_decode=2",
                                 "--set", "serving.enable_prefix_caching=false", "--set", "pd.decode_router=prefix-aware")
        assert status == 2 and "--set pd.decode_router: with serving.enable_prefix_caching=false" in err, err


def test_without_prefix_caching_both_decode_routers_bind_alike():
    """The premise of the refusal above: the worked case with prefix caching off binds R4 to D0 under either router
    (nothing cached on D1), so every request's decode instance and blocks sent are least-loaded's."""
    runs = {}
    for router in EXPECTED:
        sets = [*BASE, "serving.enable_prefix_caching=false", f"pd.decode_router={router}"]
        run = ServingRun(make_trace(ARRIVAL, INPUTS, OUTPUTS, block_lists=BLOCKS), load_config(None, sets=sets), "pd")
        run.run()
        runs[router] = run.table.decode_instance.tolist(), (run.table.kv_transfer_bytes // run.transfer.moved_bytes)
    assert runs["prefix-aware"][0] == runs["least-loaded"][0] == EXPECTED["least-loaded"][0]
    assert runs["prefix-aware"][1].tolist() == runs["least-loaded"][1].tolist() == EXPECTED["least-loaded"][1]


def test_prefix_aware_counts_only_the_held_blocks_a_decode_instance_can_use():
    """A block-aligned prompt's last block is computed again on the decode side (vLLM caps a hit at tokens - 1), so
    holding it saves nothing. R0 (64 tokens: P, 1 out) is bound to D0 (both idle), R1 (48 tokens: P's first 3 blocks,
    1 out) to D1; both end at once, D0 keeps P, D1 its first 3 blocks. At 0.5 s R2 (160 tokens, unique, 400 out) goes
    to D0 (no prefix either side; D0 the lower index). At 0.6 s R3 (64 tokens: P again) arrives: D0 holds 4 of its
    blocks and D1 3, but either uses 3 and is sent 1, so the less loaded D1 takes it (counting D0's 4 bound it to
    the instance running R2)."""
    blocks = [P, P[:3], list(range(40, 50)), P]
    trace = make_trace([0.0, 0.0, 0.5, 0.6], [64, 48, 160, 64], [1, 1, 400, 1], block_lists=blocks)
    run = ServingRun(trace, load_config(None, sets=[*BASE, "pd.decode_router=prefix-aware"]), "pd")
    run.run()
    table = run.table
    assert run.completed == 4 and table.last_token[:2].max() < 0.5
    assert table.decode_instance.tolist() == [D0, D1, D0, D1]
    assert table.kv_transfer_bytes[3] == 1 * run.transfer.moved_bytes  # (4 blocks, 3 held: the last one sent)
