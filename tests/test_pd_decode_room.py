"""PD: ``DecodeQueues``' bookkeeping by hand (``sim.serving.decode_queues``): a decode instance has room for a prompt
when its blocks not in use, less the prompt blocks bound there and not reserved yet, hold the prompt's blocks (its
tokens rounded up to whole blocks: a block is allocated for a partial one, as vLLM's ``cdiv(num_tokens,
block_size)`` in ``KVCacheManager.allocate_slots``); and the requests waiting in its queue are counted queued in the
run's time series."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from sim.serving.decode_queues import DecodeQueues
from tests.test_pd_decode_binding import A, B, _run


def _instance(index: int, total: int, used: int, hit: int = 0, in_use: tuple[int, ...] = ()) -> SimpleNamespace:
    """A decode instance whose HBM holds ``hit`` usable blocks of any prompt, of which running requests hold the block
    ids ``in_use`` (the pool's ``count_fresh``: the keys no running request holds)."""
    pool = SimpleNamespace(total=total, used=used, count_fresh=lambda keys: sum(k not in in_use for k in keys))
    return SimpleNamespace(index=index, pool=pool, kv=SimpleNamespace(usable_prefix=lambda keys, tokens: hit))


def _job(tokens: int) -> SimpleNamespace:
    return SimpleNamespace(input_tokens=tokens, prompt_ids=list(range(-(-tokens // 16))))


def test_room_counts_a_partial_block_as_a_whole_one_and_an_exact_fit_as_room():
    """16 blocks of 16 tokens, 10 in use: 6 free. 96 tokens are 6 blocks (fits exactly), 81 tokens 6 blocks (5 full
    and a partial one: fits), 97 tokens 7 blocks (does not)."""
    queues, inst = DecodeQueues(16), _instance(1, 16, 10)
    assert [queues.has_room(inst, _job(t)) for t in (96, 81, 97)] == [True, True, False]


def test_room_counts_the_blocks_of_the_usable_prefix_that_running_requests_hold_as_taking_none():
    """16 blocks, 12 in use: 4 free. A 96-token prompt (6 blocks, ids 0-5) whose first 4 the instance holds takes 2
    new blocks if running requests hold all 4 (shared: a reference more), so it fits; if they are only cached (among
    the 4 not in use), taking them uses 4 and the prompt needs 6: it does not fit; with 2 of them in use it needs
    4: an exact fit. Without a hit, 6 blocks: no room."""
    queues, job = DecodeQueues(16), _job(96)
    rooms = [queues.has_room(_instance(1, 16, 12, hit, in_use), job)
             for hit, in_use in ((4, (0, 1, 2, 3)), (4, ()), (4, (2, 3)), (0, ()))]
    assert rooms == [True, False, True, False]



def test_room_counts_a_one_block_hit_and_each_block_of_the_hit_no_running_request_holds():
    """13 of 16 blocks in use: 3 free. A 64-token prompt (4 blocks) whose first block running requests hold takes 3
    new ones: an exact fit (a hit of one block counts as any other). 14 in use: 2 free. A 96-token prompt (6 blocks,
    ids 0-5) whose first 4 the instance holds takes 2 past the hit, plus each of the 4 no running request holds: all 4
    held, 2 (fits); 0-2 held and 3 only cached, 3 (does not: the hit's last block is taken from the cache too)."""
    queues = DecodeQueues(16)
    assert queues.has_room(_instance(1, 16, 13, 1, (0,)), _job(64))
    assert not queues.has_room(_instance(1, 16, 13, 0), _job(64))
    assert [queues.has_room(_instance(1, 16, 14, 4, in_use), _job(96))
            for in_use in ((0, 1, 2, 3), (0, 1, 2))] == [True, False]


def test_room_with_the_whole_usable_prefix_held_by_running_requests_is_an_exact_fit_at_one_block():
    """15 of 16 blocks in use: 1 free. A 96-token prompt (6 blocks) can be spared at most 5 (its last block is
    computed again: ``usable_prefix_blocks``); running requests hold all 5: it takes the 1 block past them, an exact
    fit (no shortcut may refuse it before the lookup). With 4 held, 2: no room."""
    queues = DecodeQueues(16)
    assert [queues.has_room(_instance(1, 16, 15, hit, tuple(range(hit))), _job(96)) for hit in (5, 4)] == [True, False]


def test_prompts_bound_and_not_reserved_take_room_until_their_blocks_are_reserved():
    """16 free blocks. Bound: a 100-token prompt (7 blocks). Left: 9 blocks, so a 144-token prompt (9) fits and a
    145-token one (10) does not. Once the bound one is prefilled and reserved (its blocks now in use in the pool, 7
    of them), the same 9 are free: still 144 fits, 145 does not; its bound count falls to 0 only when it is handed."""
    queues, inst = DecodeQueues(16), _instance(1, 16, 0)
    first = _job(100)
    queues.bind(inst, first)
    assert (queues.has_room(inst, _job(144)), queues.has_room(inst, _job(145))) == (True, False)
    queues.prefilled(inst, first)
    assert queues.waiting == 1
    assert queues.reserved(queues.of(inst)) is first
    inst.pool.used = 7
    assert (queues.has_room(inst, _job(144)), queues.has_room(inst, _job(145))) == (True, False)
    assert (queues.waiting, queues.of(inst).bound, queues.of(inst).bound_blocks) == (0, 1, 0)
    queues.handed(inst)
    assert queues.of(inst).bound == 0


def test_a_request_waiting_in_a_decode_queue_is_counted_queued():
    """``test_a_request_bound_to_a_free_instance_is_not_held_behind_one_bound_to_a_full_instance``'s run: R2 waits
    in A's queue from its prefill's end until A's R0 ends, while R0 and R1 run and R3 (sent at once) runs on B from
    its KV's arrival. Every time-series sample in that wait, after R3's KV landed and before R1 ends, counts exactly
    one request queued (R2: nothing else waits anywhere) as vLLM counts a request waiting for remote KV among its
    waiting ones."""
    run = _run(17, [0.0, 0.0, 0.1, 0.12], [200, 216, 64, 8], [40, 24, 1, 1])
    table = run.table
    assert table.decode_instance[2] == A
    series = run.timeline.series(table)
    t, queued = np.asarray(series["t_s"]), np.asarray(series["queued"])
    start = max(table.prefill_done[2], table.kv_ready[3], table.last_token[3])
    inside = (t > start) & (t < min(table.kv_sent[2], table.last_token[1]))
    assert inside.sum() >= 2
    assert queued[inside].tolist() == [1] * int(inside.sum())


def test_requests_waiting_for_one_decode_instance_take_its_memory_in_the_order_their_prefills_ended():
    """One decode instance (16 usable blocks of 16 tokens). R0 (96 tokens: 6 blocks, 20 out) and R1 (64 tokens, 60
    out) run there from 0 s; R2 and R3 (96 tokens: 6 blocks each, 1 out) arrive at 0.05 s and 0.06 s, find at most
    4 blocks free and wait in its queue. When R0 ends, its 7 blocks free 10 (R1 holds 6): R2, first in the queue
    (FCFS: vLLM's decode scheduler, SGLang's ``pop_preallocated``), takes 6; R3 waits for R2 to end (4 left)."""
    from sim.config import load_config
    from sim.serving.run import ServingRun
    from tests.test_serving import make_trace

    config = load_config(None, sets=["pd.num_prefill=1", "pd.num_decode=1", "serving.block_size=16",
                                     "serving.num_gpu_blocks=17"])
    run = ServingRun(make_trace([0.0, 0.0, 0.05, 0.06], [96, 64, 96, 96], [20, 60, 1, 1]), config, "pd")
    run.run()
    table = run.table
    assert table.prefill_done[2] < table.prefill_done[3] < table.last_token[0]
    assert table.kv_sent[2] == table.last_token[0] < table.last_token[2] == table.kv_sent[3] < table.last_token[1]


def test_the_binding_counts_the_requests_a_decode_instance_runs_before_its_kv_in_use():
    """Two decode instances. At 0 s R0 (16 tokens, 400 out) is bound to A and R1 (200 tokens: 13 blocks, 400 out)
    to B; at 0.05 s R2 (16 tokens, 400 out) to A (one each; A holds fewer blocks). At 0.5 s all three run (none
    bound and not yet handed): A runs two requests in about 4 blocks, B one in about 14. R3 goes to B, the fewer
    requests (llm-d's active-request count), though A holds less KV."""
    run = _run(101, [0.0, 0.0, 0.05, 0.5], [16, 200, 16, 16], [400, 400, 400, 1])
    table = run.table
    assert table.decode_instance.tolist() == [A, B, A, B]
    assert max(table.kv_ready[:3]) < table.arrival[3] < min(table.last_token[:3])


def test_a_pulling_decode_instance_takes_no_kv_while_its_sequence_slots_are_full():
    """``pd.transfer=pull``, one decode instance, ``max_num_seqs=2``, memory to spare. R0 (16 tokens, 100 out) and R1
    (16 tokens, 50 out) fill its two slots from 0 s; R2 (16 tokens, 1 out), prefilled at about 0.06 s, is pulled only
    when R1 ends and frees a slot (vLLM's scheduler stops its waiting loop, remote-KV requests included, while its
    running requests number ``max_num_running_reqs``: v1/core/sched/scheduler.py ``schedule``)."""
    from sim.config import load_config
    from sim.serving.run import ServingRun
    from tests.test_serving import make_trace

    config = load_config(None, sets=["pd.num_prefill=1", "pd.num_decode=1", "pd.transfer=pull", "serving.max_num_seqs=2",
                                     "serving.block_size=16", "serving.num_gpu_blocks=101"])
    run = ServingRun(make_trace([0.0, 0.0, 0.05], [16, 16, 16], [100, 50, 1]), config, "pd")
    run.run()
    table = run.table
    assert table.prefill_done[2] < table.last_token[1] < table.last_token[0]
    assert table.kv_sent[2] == table.last_token[1]


def test_the_usable_prefix_is_the_prompts_prefix_in_hbm_a_token_short():
    """``KVCacheManager.usable_prefix`` (the room's and the prefix-aware rank's hit), by hand: blocks of 16, 4 in HBM.
    R0's prompt (blocks 0-3, 64 tokens) held by R0: a prompt of 0-3 and 8 (80 tokens) can use all 4; the 64-token
    prompt 0-3 only 3 (vLLM's ``get_computed_blocks`` stops a token short: (64 - 1) // 16), 65 tokens 4. Freed, the
    4 stay cached in HBM: still 4. Pushed down to DRAM by R1's 4 blocks, they are no hit here: 0 (the decode side's
    lookup is its GPU's blocks; a lower tier's are not held), though every tier holds them."""
    from sim.serving.block_pool import BlockPool
    from sim.serving.job import Job
    from sim.serving.kv_cache_manager import KVCacheManager
    from tests.cache_helpers import make_cache

    pool = BlockPool(4, SimpleNamespace(now=0.0))
    kv = KVCacheManager(pool, make_cache("lru", [4, 50], num_blocks=16), 16, True, lambda: 0.0)
    r0 = Job(0, 64, 1, [0, 1, 2, 3], 0, target=64)
    kv.lookup(r0)
    kv.allocate(r0, 64)
    assert [kv.usable_prefix([0, 1, 2, 3, 8], 80), kv.usable_prefix([0, 1, 2, 3], 64),
            kv.usable_prefix([0, 1, 2, 3], 65)] == [4, 3, 4]
    kv.free(r0)
    assert kv.usable_prefix([0, 1, 2, 3, 8], 80) == 4 and pool.used == 0
    r1 = Job(1, 64, 1, [4, 5, 6, 7], 0, target=64)
    kv.lookup(r1)
    kv.allocate(r1, 64)
    assert kv.usable_prefix([0, 1, 2, 3, 8], 80) == 0 and kv.cached_prefix_blocks([0, 1, 2, 3], every_tier=True) == 4
