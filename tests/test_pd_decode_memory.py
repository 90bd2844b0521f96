"""PD decode memory when two requests' KV of one prefix is in flight to one decode instance at once.

vLLM's decode side finds a received block only once its KV has landed (``_update_waiting_for_remote_kv`` ->
``cache_blocks``); a request whose lookup stops there is given new blocks past its hit (``allocate_slots`` takes
them from the free queue) for the connector to fill: a second physical copy of each block another request holds,
counted in the pool until that request ends. Cases worked by hand: blocks of 16 tokens, prompts of 64 tokens
(blocks 1-4), two prefill instances, one decode instance, a 1 Gb/s link (4 blocks take ~66 ms, prefill ~7 ms)."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config import load_config
from sim.report.metrics import RequestTable, WeightedSamples
from sim.serving.block_pool import BlockPool
from sim.serving.job import Job
from sim.serving.kv_cache_manager import KVCacheManager
from sim.serving.run import ServingRun
from sim.serving.scheduler import DECODE, Scheduler
from tests.cache_helpers import make_cache
from tests.test_serving import make_trace

PREFIX = [1, 2, 3, 4]


def _config(*extra: str):
    return load_config(None, sets=["pd.num_prefill=2", "pd.num_decode=1", "serving.block_size=16",
                                   "network.bandwidth_gbps=1", *extra])


def _run(config, arrival, outputs, block_lists=None):
    """A PD run of 64-token prompts; returns it with the decode pool's (used, blocks held by id) sampled just before
    and after each KV transfer lands and as each request ends."""
    n = len(arrival)
    trace = make_trace(arrival, [64] * n, outputs, block_lists=block_lists or [PREFIX] * n)
    run = ServingRun(trace, config, "pd")
    decode = run.decode[0]
    samples: dict[str, tuple[int, dict[int, int]]] = {}

    def sample(tag: str) -> None:
        samples[tag] = decode.pool.used, dict(decode.pool.refs)

    arrived, finished = run._arrived, decode.on_finish

    def on_arrived(src, job, dest, dest_job):
        sample(f"before landed {job.rid}")
        arrived(src, job, dest, dest_job)
        sample(f"landed {job.rid}")

    def on_finish(job):
        sample(f"finished {job.rid}")
        finished(job)

    run._arrived, decode.on_finish = on_arrived, on_finish
    run.run()
    return run, samples


def test_two_transfers_of_one_prefix_in_flight_hold_two_copies_until_each_request_ends():
    """A and B (blocks 1-4, one output token each) 1 ms apart: B's lookup stops at A's block 1 (in flight), so B
    gets 4 new blocks and is sent all 4. By hand: while both are in flight the decode pool holds 4 + 4 = 8 blocks
    (kvsim counted 4: B's were A's ids, shared); once both landed still 8 (vLLM keeps both copies: a duplicate is
    cached beside the first, ``BlockHashToBlockMap`` does not de-duplicate). A ends first (its one token, 64 KV
    tokens: no 5th block): its 4 blocks are cached, still the blocks 1-4 a lookup finds (vLLM's ``get_one_block``
    returns a hash's first cached block, A's, until it is evicted), and B's 4 copies stay. B's end frees everything,
    A's blocks cached."""
    run, samples = _run(_config(), [0.0, 0.001], [1, 1])
    table = run.table
    block = table.kv_transfer_bytes[0] // 4
    assert table.kv_transfer_bytes.tolist() == [4 * block, 4 * block]
    assert table.kv_ready[0] < table.kv_ready[1] < table.last_token[0] < table.last_token[1]
    held = {1: 1, 2: 1, 3: 1, 4: 1}  # A's blocks by id (B's are copies)
    assert samples["before landed 0"] == (8, held)  # (both in flight)
    assert samples["landed 1"] == (8, held)
    assert samples["finished 0"] == (4, {})  # (after A let go: A's blocks cached, B's copies still its own)
    assert samples["finished 1"] == (0, {})
    assert [run.decode[0].kv.find(key) for key in PREFIX] == [0, 0, 0, 0]  # (B's blocks cached in HBM)


def test_a_request_arriving_after_the_prefix_landed_copies_only_the_block_its_hit_leaves_out():
    """B 1 s after A (A still decoding its 400 tokens): B finds A's blocks 1-3 (its hit stops a token short of its 64: block 4 holds
    its last token) and is sent block 4 into a new block of its own (vLLM's allocate_slots for the external tokens):
    the decode pool holds A's 4 + its growth and B's 1 (kvsim counted B's block 4 as A's, 0 new)."""
    run, samples = _run(_config(), [0.0, 1.0], [400, 4])
    block = run.table.kv_transfer_bytes[0] // 4
    assert run.table.kv_transfer_bytes.tolist() == [4 * block, block]
    before, refs_before = samples["before landed 1"]
    after, refs_after = samples["landed 1"]
    assert refs_before == refs_after == {1: 2, 2: 2, 3: 2, 4: 1}  # (B shares 1-3 by id; its block 4 is a copy)
    assert after == before  # (reserved when it was sent: nothing more at landing)


def test_reserving_b_before_a_lands_counts_b_in_flight():
    """B's 4 copies are taken when its transfer starts (``Instance.reserve``), not when A lands: sampled before A's
    KV lands, the pool already holds both requests' 8."""
    _, samples = _run(_config(), [0.0, 0.001], [4, 4])
    assert samples["before landed 0"][0] == 8


def test_a_decode_instance_too_small_for_two_copies_sends_b_once_a_has_landed():
    """7 usable blocks (num_gpu_blocks 8, less vLLM's null block): A holds 4 in flight, B would need 4 new ones: it
    waits (kvsim let it share A's ids and sent it at once). When A lands, B's lookup finds A's blocks 1-3, so it
    needs 1 new block (its block 4) and is sent that one block, as vLLM's decode scheduler admits it at its next
    step after A's KV landed (its waiting request is tried every step)."""
    run, samples = _run(_config("serving.num_gpu_blocks=8"), [0.0, 0.001], [4, 4])
    table = run.table
    block = table.kv_transfer_bytes[0] // 4
    assert table.kv_transfer_bytes.tolist() == [4 * block, block]
    assert table.kv_sent[1] == pytest.approx(table.kv_ready[0], abs=1e-12)  # (sent as A's KV landed)
    assert samples["before landed 0"] == (4, {1: 1, 2: 1, 3: 1, 4: 1})  # (only A's in flight)


@pytest.mark.parametrize("async_scheduling, preempted", [(False, [0, 1]), (True, [1, 0])])
def test_two_copies_that_fill_the_decode_pool_preempt_one_when_a_grows(async_scheduling, preempted):
    """8 usable blocks: A and B in flight together hold all 8 (4 each; kvsim counted 4 and peaked at 6, never
    preempting). A's 2nd output token writes KV slot 65: a 5th block, none free. Synchronous scheduling plans that
    step with B (landed during A's first step) running too: the request that joined last, B, is preempted (vLLM's
    ``self.running.pop()``) and its 4 copies go. Asynchronously the step was planned before B was read: A is the only
    running request and preempts itself (vLLM: the victim is the request itself, not scheduled), its blocks 1-4
    cached; B runs in its copies. The pool never holds more than its 8."""
    run, _ = _run(_config("serving.num_gpu_blocks=9", f"serving.async_scheduling={str(async_scheduling).lower()}"),
                  [0.0, 0.001], [4, 4])
    assert run.table.preemptions.tolist() == preempted
    assert run.decode[0].pool.peak == 8
    assert run.completed == 2


class _Clock:
    now = 0.0


def _manager(blocks: int = 20) -> KVCacheManager:
    return KVCacheManager(BlockPool(blocks, _Clock()), make_cache("lru", [blocks], num_blocks=16), 16, True,
                          lambda: 0.0)


def test_a_preempted_request_read_again_finds_no_block_still_landing():
    """A decode instance whose request B was preempted and whose HBM no longer caches B's blocks, while C's KV of
    the same prefix (blocks 1-4) is on its way: vLLM's lookup for B finds none of C's blocks (not cached until they
    land), so B recomputes its prompt into new blocks: 4 copies beside C's 4 (and 1 more for the 16 tokens it
    generated). Before, the lookup found C's 4 in-flight blocks as HBM hits and B shared them."""
    kv = _manager()
    c = Job(2, 64, 4, list(PREFIX), 0, target=64)
    assert kv.receive(c, 64) == 0
    kv.allocate(c, 64)
    kv.expect(c, 0)
    b = Job(1, 64, 40, list(PREFIX), 0, target=80, admitted_once=True)  # (preempted after 16 tokens)
    assert kv.admission_before_lookup(b, True) is None  # (its hit decides what it takes)
    match = kv.lookup(b)
    assert (match.blocks, match.tokens) == (0, 0)
    assert kv.new_blocks(b, 80) == 5
    kv.allocate(b, 80)
    assert kv.pool.used == 9 and kv.pool.refs == {1: 1, 2: 1, 3: 1, 4: 1}
    kv.landed(c)  # C's KV landed: now found, and a request read again shares it
    d = Job(3, 64, 40, list(PREFIX), 0, target=80, admitted_once=True)
    match = kv.lookup(d)
    assert match.blocks == 4
    assert kv.new_blocks(d, 80) == 1
    kv.free(b)
    assert kv.pool.used == 4 and kv.pool.refs == {1: 1, 2: 1, 3: 1, 4: 1}  # (B's copies gone, C's blocks kept)


def test_a_job_holding_copies_frees_its_shared_blocks_at_their_own_stream_positions():
    """A job holding a copy between blocks it holds by id (block 1 a copy, 0 2 3 by id, at stream positions 10-13)
    returns 3, 2, 0 to the cache at 13, 12, 10 (numbering them 13, 12, 11 gave block 0 block 1's position)."""
    kv = _manager()
    other = Job(0, 16, 1, [1], 0, target=16)
    kv.allocate(other, 16)
    job = Job(1, 64, 1, [0, 1, 2, 3], 10, target=64)
    job.copies_from = 0
    kv.allocate(job, 64)
    assert job.prompt_copies == (1,)
    calls = []
    touch = kv.cache.touch_chain
    kv.cache.touch_chain = lambda keys, positions, freed=False: (
        calls.append((list(map(int, keys)), list(map(int, positions)))), touch(keys, positions, freed=freed))[1]
    kv.free(job)
    assert calls == [([3, 2, 0], [13, 12, 10])]
    assert (job.prompt_copies, job.copies_from) == ((), -1)


def test_a_preempted_request_read_again_after_the_landing_shares_what_it_finds():
    """B (preempted) is read while C's KV of its prefix is on its way (hit 0: past it, copies) but does not fit that
    step; C lands and B is read again at the next: vLLM's lookup and allocation are one step's, so B finds C's 4
    blocks and takes 1 new one for its 16 generated tokens, as a request read after the landing does. The first
    read's cut (copies from block 0) was kept: B counted 5 new blocks, before its lookup (the queue's check, which
    can hold it back so the lookup never comes) and after, and would hold copies of the 4 it was served."""
    kv = _manager()
    c = Job(2, 64, 4, list(PREFIX), 0, target=64)
    kv.receive(c, 64)
    kv.allocate(c, 64)
    kv.expect(c, 0)
    b = Job(1, 64, 40, list(PREFIX), 0, target=80, admitted_once=True)  # (preempted after 16 tokens)
    assert kv.lookup(b).blocks == 0  # (read while C's KV lands; say it does not fit: nothing allocated)
    kv.landed(c)
    assert kv.admission_before_lookup(b, True) == 1  # (the queue's check before the lookup: no KV landing now)
    assert kv.lookup(b).blocks == 4
    assert kv.new_blocks(b, 80) == 1
    kv.allocate(b, 80)
    assert kv.pool.used == 5 and kv.pool.refs == {1: 2, 2: 2, 3: 2, 4: 2} and b.prompt_copies == ()


def _manager_of(blocks: int, ids: int = 64) -> KVCacheManager:
    """A decode side of ``blocks`` blocks whose HBM caches what the pool leaves unused, block ids below ``ids``."""
    return KVCacheManager(BlockPool(blocks, _Clock()), make_cache("lru", [blocks], num_blocks=ids), 16, True,
                          lambda: 0.0)


def _two_in_flight(kv: KVCacheManager) -> tuple[Job, Job]:
    """A and B of blocks 1-4 received one after the other: A's 4 in flight, B's lookup stops at them (4 copies)."""
    a, b = Job(0, 64, 1, list(PREFIX), 0, target=64), Job(1, 64, 400, list(PREFIX), 0, target=64)
    for job in (a, b):
        assert kv.receive(job, 64) == 0
        kv.allocate(job, 64)
        kv.expect(job, 0)
    assert b.prompt_copies == (0, 1, 2, 3)
    return a, b


def _push_out_cache(kv: KVCacheManager) -> None:
    """D, 16 blocks of ids of its own, fills the pool (the HBM cache holds nothing then) and ends."""
    d = Job(3, 256, 1, list(range(10, 26)), 100, target=256)
    kv.receive(d, 256)
    kv.allocate(d, 256)
    kv.free(d)


def test_a_landed_copy_is_found_once_the_block_it_copies_is_gone():
    """A and B (blocks 1-4) in flight together: B holds 4 copies. Both land (vLLM caches B's blocks' hashes as they
    land, behind A's: ``cache_blocks``), A ends: its blocks are cached, still the ones found. D fills the pool, so
    that nothing of A's stays cached. C (blocks 1-4) is received: vLLM's lookup finds B's blocks 1-3 (whole blocks
    short of C's last token), so C takes 1 new block and is sent 1. Before, B's copies were never found: C found
    none, took 4 and was sent 4."""
    kv = _manager_of(20)
    a, b = _two_in_flight(kv)
    kv.landed(a)
    kv.landed(b)
    kv.free(a)
    assert kv.pool.used == 4 and kv.pool.refs == {} and b.prompt_copies == (0, 1, 2, 3)
    _push_out_cache(kv)
    c = Job(2, 64, 4, list(PREFIX), 0, target=64)
    assert kv.receive(c, 64) == 3
    assert kv.new_blocks(c, 64) == 1
    kv.allocate(c, 64)
    assert kv.sent_blocks(c, 3) == 1
    assert kv.pool.used == 5 and c.prompt_copies == (3,) and b.prompt_copies == ()  # (C's block 4: a copy of B's)


def test_a_copy_is_not_found_while_the_block_it_copies_is_cached():
    """A and B (blocks 1-4) land, A ends with room left in HBM (20 blocks, B's 4 copies in use): A's freed blocks
    stay cached, first of their hashes (vLLM's ``get_one_block`` returns ``next(iter(blocks.values()))``; a freed
    block leaves the map only when ``get_new_blocks`` reuses it, ``_maybe_evict_cached_block``). C (blocks 1-4) is
    received: it touches A's cached blocks 1-3 (evictable, so counted as blocks to take) and takes 1 new block for
    its block 4: the pool holds B's 4 + C's 4 = 8. Before, B's copies became blocks 1-4 as A let them go and C shared
    them: 5, decode memory under-counted."""
    kv = _manager_of(20)
    a, b = _two_in_flight(kv)
    kv.landed(a)
    kv.landed(b)
    kv.free(a)
    c = Job(2, 64, 4, list(PREFIX), 0, target=64)
    assert kv.receive(c, 64) == 3
    assert kv.new_blocks(c, 64) == 4
    kv.allocate(c, 64)
    assert kv.sent_blocks(c, 3) == 1
    assert kv.pool.used == 8 and b.prompt_copies == (0, 1, 2, 3) and kv.pool.refs == {1: 1, 2: 1, 3: 1, 4: 1}
    kv.free(b)
    kv.free(c)
    assert kv.pool.used == 0 and [kv.find(key) for key in PREFIX] == [0, 0, 0, 0]


def test_a_copy_landing_after_the_block_it_copies_was_let_go_is_found_once_that_block_is_evicted():
    """A lands and ends before B's copies land: A's blocks 1-4 are cached (not held). B's copies land: vLLM caches
    their hashes behind A's cached blocks, which a lookup finds first: B keeps its copies. Once D pushes A's blocks
    out of HBM, a lookup finds B's: C (blocks 1-4) is sent 1 block."""
    kv = _manager_of(20)
    a, b = _two_in_flight(kv)
    kv.landed(a)
    kv.free(a)
    assert kv.pool.refs == {} and [kv.find(key) for key in PREFIX] == [0, 0, 0, 0]  # (A's, cached)
    kv.landed(b)
    assert kv.pool.used == 4 and kv.pool.refs == {} and b.prompt_copies == (0, 1, 2, 3)
    _push_out_cache(kv)
    assert kv.receive(Job(2, 64, 4, list(PREFIX), 0, target=64), 64) == 3
    assert b.prompt_copies == () and kv.pool.refs == {1: 1, 2: 1, 3: 1, 4: 1} and kv.pool.used == 4


def test_a_copy_still_in_flight_is_not_found_and_a_partial_block_never():
    """A lands and ends (its blocks cached), then D pushes them out of HBM while B's copies are still in flight: no
    block of the prefix is found (B's not cached until they land). B lands: its full blocks 1-3 are found, held by
    id; a partial last block is never found (vLLM hashes full blocks only): B's 60-token prompt's block 4 stays its
    copy."""
    kv = _manager_of(20)
    a = Job(0, 64, 1, list(PREFIX), 0, target=64)
    b = Job(1, 60, 400, list(PREFIX), 0, target=60)
    for job in (a, b):
        kv.receive(job, job.input_tokens)
        kv.allocate(job, job.input_tokens)
        kv.expect(job, 0)
    kv.landed(a)
    kv.free(a)
    _push_out_cache(kv)
    assert kv.cached_prefix_blocks(PREFIX) == 0 and b.prompt_copies == (0, 1, 2, 3)  # (B in flight: not cached)
    kv.landed(b)
    assert _found(kv) == 3
    assert b.prompt_copies == (3,) and kv.pool.refs == {1: 1, 2: 1, 3: 1} and kv.pool.used == 4


def _found(kv: KVCacheManager) -> int:
    """The blocks of the prefix a lookup finds here (``prefix_levels``: stopping at a block still landing)."""
    return len(kv.prefix_levels(Job(9, 64, 1, list(PREFIX), 0, target=64), PREFIX))


def _landing_and_preempted(kv: KVCacheManager) -> tuple[Job, Job]:
    """C (blocks 1-4) received, its KV in flight; B (preempted after 16 tokens, the same prompt) read again: its hit
    stops at C's landing blocks (0), so it recomputes its prompt into copies of its own."""
    c = Job(2, 64, 4, list(PREFIX), 0, target=64)
    assert kv.receive(c, 64) == 0
    kv.allocate(c, 64)
    kv.expect(c, 0)
    b = Job(1, 64, 40, list(PREFIX), 0, target=80, admitted_once=True)
    assert kv.lookup(b).blocks == 0
    return c, b


def test_a_preempted_requests_computed_copies_cached_before_the_landing_blocks_are_the_ones_found():
    """B recomputes its prompt while C's KV of it lands: vLLM caches the full blocks a step schedules
    (``allocate_slots`` -> ``cache_blocks``), so B's blocks 1-3 (its first chunk of 48 tokens) are cached first, C's
    beside them only as they land: a lookup finds B's at once (C's 1-3 in flight hide nothing any more), and B's
    80-token step caches block 4 too. C's blocks become the second copies: once C ends, B holds 1-4 (and 1 block of
    its 16 generated tokens): 5. D fills the pool; E (blocks 1-4) is received: it finds B's blocks 1-3 and is sent
    1 block. Before, a lookup stopped at C's landing block 1 until C landed."""
    kv = _manager_of(21)
    c, b = _landing_and_preempted(kv)
    kv.allocate(b, 48)  # (a first chunk of 48 tokens: blocks 1-3 full, computed by that step)
    kv.computed(b, 48)
    assert _found(kv) == 3
    assert b.prompt_copies == () and c.prompt_copies == (0, 1, 2) and kv.landing == {4: 1}  # (its block 4 not taken)
    kv.allocate(b, 80)
    kv.computed(b, 80)
    assert b.prompt_copies == () and c.prompt_copies == (0, 1, 2, 3) and kv.pool.used == 9 and not kv.landing
    kv.landed(c)
    kv.free(c)
    assert kv.pool.refs == {1: 1, 2: 1, 3: 1, 4: 1} and kv.pool.used == 5
    _push_out_cache(kv)
    e = Job(4, 64, 4, list(PREFIX), 0, target=64)
    assert kv.receive(e, 64) == 3
    kv.allocate(e, 64)
    assert kv.sent_blocks(e, 3) == 1


def test_copies_a_step_has_not_filled_are_not_found():
    """B's first chunk of 40 tokens fills blocks 1-2 only: those two are cached (before C's, still landing: B's are
    found), its copy of block 3 stays its own until the chunk filling it is scheduled. By then C has landed and
    ended: C's block 3, cached first, is found, and B's copy only once D pushes C's out of HBM."""
    kv = _manager_of(21)
    c, b = _landing_and_preempted(kv)
    kv.allocate(b, 40)
    kv.computed(b, 40)
    assert b.prompt_copies == (2,) and _found(kv) == 2  # (block 3 part filled, 4 not taken)
    kv.landed(c)
    kv.free(c)
    assert kv.pool.refs == {1: 1, 2: 1} and [kv.find(key) for key in PREFIX] == [0, 0, 0, 0]  # (C's 3, 4 cached)
    kv.allocate(b, 80)
    kv.computed(b, 80)
    assert b.prompt_copies == (2,) and kv.pool.used == 5
    _push_out_cache(kv)
    assert kv.cached_prefix_blocks(PREFIX) == 4 and b.prompt_copies == () and kv.pool.used == 5


def test_a_decode_step_recomputing_a_preempted_request_makes_its_copies_found():
    """The scheduler's side of the case above: B (preempted) waits on a decode instance while C's KV of its prefix
    lands; the step that admits B (80 tokens, one chunk) tells the manager what it computes, so B's blocks 1-4 are
    cached before C's land: B holds them by id (C's are the copies), and once C lands and ends the pool counts B's 5
    blocks only."""
    config = load_config(None, sets=["serving.block_size=16", "serving.max_num_batched_tokens=2048",
                                     "serving.max_num_seqs=8"])
    kv = _manager_of(21)
    c = Job(2, 64, 4, list(PREFIX), 0, target=64)
    kv.receive(c, 64)
    kv.allocate(c, 64)
    kv.expect(c, 0)
    table = RequestTable(np.zeros(3), np.full(3, 64), np.full(3, 40))
    scheduler = Scheduler(1, DECODE, config.serving, kv, table, WeightedSamples())
    b = Job(1, 64, 40, list(PREFIX), 0, target=80, admitted_once=True)
    scheduler.waiting.append(b)
    batch = scheduler.schedule(0.0)
    assert batch is not None and batch.jobs == [(b, 80)]
    assert b.prompt_copies == () and c.prompt_copies == (0, 1, 2, 3) and kv.pool.used == 9
    kv.landed(c)
    kv.free(c)
    assert kv.pool.refs == {1: 1, 2: 1, 3: 1, 4: 1} and kv.pool.used == 5


def test_a_copy_cached_already_is_not_cached_again_when_a_later_step_reaches_it():
    """A and B (blocks 1-4) land, B's copies cached behind A's blocks; A ends (its blocks cached) and D (16 blocks of
    its own) takes every free block, evicting A's: B's copies are the blocks of 1-4 now (found as the next lookup
    asks). B's first decode step is scheduled before that lookup (the scheduler tells the manager what it computes):
    vLLM caches nothing again (B's blocks are cached already, ``num_cached_block``), so B's copies are found in the
    order they were cached and B holds 1-4 once: D ends, E (blocks 1-4) finds 3 and is sent 1. Before, the step made
    B's copies the blocks by id a second time, out of the queue of copies cached, leaving B queued behind itself:
    once B's blocks were evicted in turn, a lookup failed on a copy B no longer held."""
    kv = _manager_of(20)
    a, b = _two_in_flight(kv)
    kv.landed(a)
    kv.landed(b)
    kv.free(a)
    d = Job(3, 256, 1, list(range(10, 26)), 100, target=256)
    kv.allocate(d, 256)  # (no lookup: nothing surfaced yet)
    assert kv.pool.free == 0 and b.prompt_copies == (0, 1, 2, 3)
    b.computed = 63
    kv.allocate(b, 64)
    kv.computed(b, 64)
    kv.free(d)
    assert b.prompt_copies == () and kv.pool.refs == {1: 1, 2: 1, 3: 1, 4: 1} and kv.pool.used == 4
    e = Job(4, 64, 4, list(PREFIX), 0, target=64)
    assert kv.receive(e, 64) == 3
    kv.allocate(e, 64)
    assert kv.sent_blocks(e, 3) == 1
    kv.free(b)
    kv.free(e)
    f = Job(5, 320, 1, list(range(30, 50)), 200, target=320)
    kv.allocate(f, 320)  # (every block: B's and E's evicted, nothing of the prefix left to find)
    kv.free(f)
    assert kv.receive(Job(6, 64, 4, list(PREFIX), 0, target=64), 64) == 0 and kv.pool.used == 0
