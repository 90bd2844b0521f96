"""PD decode: which of several copies of a block is found, and when (mutation audit of ``ReceivedCopies``).

vLLM keeps every cached block of a hash (``BlockHashToBlockMap``) and a lookup finds the first cached
(``get_one_block``: ``next(iter(blocks.values()))``, vllm/v1/core/block_pool.py); a freed block stays cached until
``get_new_blocks`` reuses it (``_maybe_evict_cached_block``). Cases by hand: blocks of 16 tokens, prompts of 64
tokens (blocks 1-4), an LRU HBM cache of what the pool leaves unused."""

from __future__ import annotations

import pytest

from sim.serving.block_pool import BlockPool
from sim.serving.job import Job
from sim.serving.kv_cache_manager import KVCacheManager
from tests.cache_helpers import make_cache

PREFIX = [1, 2, 3, 4]


class _Clock:
    now = 0.0


def _manager(blocks: int, tiers: list[int] | None = None, generic: bool = False) -> KVCacheManager:
    """``generic``: the Python-hook cache a policy without a compiled kernel (the learned one) runs on, here with the
    reference LRU's hooks."""
    return KVCacheManager(BlockPool(blocks, _Clock()),
                          make_cache("lru", tiers or [blocks], num_blocks=64, reference=generic), 16, True,
                          lambda: 0.0)


def _received(kv: KVCacheManager, *rids: int) -> list[Job]:
    """Requests of blocks 1-4 received one after the other, each KV in flight: the first holds 1-4 by id, the later
    ones' lookups stop at its landing blocks (4 copies each)."""
    jobs = [Job(rid, 64, 400, list(PREFIX), 0, target=64) for rid in rids]
    for job in jobs:
        assert kv.receive(job, 64) == 0
        kv.allocate(job, 64)
        kv.expect(job, 0)
    return jobs


def _fill(kv: KVCacheManager, rid: int, blocks: int) -> Job:
    """A request of ``blocks`` blocks of ids of its own (from 10), received and allocated (not freed)."""
    d = Job(rid, 16 * blocks, 1, list(range(10, 10 + blocks)), 100, target=16 * blocks)
    kv.receive(d, 16 * blocks)
    kv.allocate(d, 16 * blocks)
    return d


def test_a_request_received_while_anothers_copies_are_in_flight_finds_the_landed_blocks():
    """A lands; B's 4 copies are still in flight. C's lookup finds A's blocks 1-3 (cached as A's KV landed; B's
    copies, new blocks not cached yet, hide nothing): C is sent 1 block and shares A's 1-3."""
    kv = _manager(20)
    a, b = _received(kv, 0, 1)
    kv.landed(a)
    c = Job(2, 64, 4, list(PREFIX), 0, target=64)
    assert kv.receive(c, 64) == 3


@pytest.mark.parametrize("generic", [False, True])
def test_of_two_landed_copies_the_first_cached_becomes_the_block_found(generic):
    """A, B, C in flight together (B's and C's 4 copies), landing in that order: B's copies are cached before C's.
    A ends and its blocks are evicted (D fills the pool): B's copies are the blocks found, held by B. B ends: its
    blocks are cached, still first of their hashes; C's copies stay its own. E (blocks 1-4) touches B's cached 1-3
    and takes 1 new block (a block-aligned prompt's last block is sent): the pool holds C's 4 + E's 4 = 8. Had C's
    copies become the blocks found, E would share C's 1-3 and take 1 block: 5. The same on the generic cache path (a
    learned policy's), which has no batched ``find_each``: A's free raised AttributeError there (--pd --policy
    learned on a RAG workload, where copies land: an internal error)."""
    kv = _manager(24, generic=generic)
    a, b, c = _received(kv, 0, 1, 2)
    for job in (a, b, c):
        kv.landed(job)
    kv.free(a)
    kv.free(_fill(kv, 3, 16))
    kv.free(b)
    assert kv.pool.used == 4 and c.prompt_copies == (0, 1, 2, 3)
    e = Job(4, 64, 4, list(PREFIX), 0, target=64)
    assert kv.receive(e, 64) == 3
    kv.allocate(e, 64)
    assert kv.pool.used == 8 and kv.pool.refs == {1: 1, 2: 1, 3: 1, 4: 1}


def test_a_copy_whose_request_ended_is_never_found():
    """A and B land; B ends first (its copies freed: vLLM evicts a freed copy before the first cached block, which A
    still holds), then A; D (20 blocks) pushes A's blocks out of HBM. C (blocks 1-4) finds nothing: sent all 4, holding 4."""
    kv = _manager(20)
    a, b = _received(kv, 0, 1)
    kv.landed(a)
    kv.landed(b)
    kv.free(b)
    kv.free(a)
    kv.free(_fill(kv, 3, 20))
    c = Job(2, 64, 4, list(PREFIX), 0, target=64)
    assert kv.receive(c, 64) == 0
    kv.allocate(c, 64)
    assert kv.pool.used == 4 and kv.pool.refs == {1: 1, 2: 1, 3: 1, 4: 1}


def _evicted_under_a_landed_copy() -> tuple[KVCacheManager, Job]:
    """A and B land, A ends (its blocks cached), then D's allocation reuses them (20 blocks: B's 4 + D's 16), with no
    lookup or release since: B's copies are now the first cached blocks of their hashes (vLLM)."""
    kv = _manager(20)
    a, b = _received(kv, 0, 1)
    kv.landed(a)
    kv.landed(b)
    kv.free(a)
    _fill(kv, 3, 16)
    assert kv.pool.used == 20
    return kv, b


def test_a_copy_is_found_by_the_first_lookup_after_the_block_it_copies_is_evicted():
    kv, b = _evicted_under_a_landed_copy()
    c = Job(2, 64, 4, list(PREFIX), 0, target=64)
    assert kv.receive(c, 64) == 3  # (B's 1-3, held by B: C takes only its block 4)
    assert kv.new_blocks(c, 64) == 1


def test_a_copy_is_counted_by_the_first_prefix_count_after_the_block_it_copies_is_evicted():
    kv, _ = _evicted_under_a_landed_copy()
    assert kv.cached_prefix_blocks(PREFIX) == 4


def test_a_copy_is_counted_by_the_first_admission_check_after_the_block_it_copies_is_evicted():
    """B's 1-4 are found: a request preempted after 16 tokens (80-token sequence, 5 blocks) needs only its 5th."""
    kv, _ = _evicted_under_a_landed_copy()
    assert kv.admission_before_lookup(Job(2, 64, 40, list(PREFIX), 0, target=80, admitted_once=True), True) == 1


def test_a_copy_is_cached_as_its_request_ends_after_the_block_it_copies_was_evicted():
    """B ends with no lookup since A's blocks were evicted: B's copies, first of their hashes, stay cached as it
    frees them (vLLM's ``free`` keeps a freed block's hash): C finds 1-3."""
    kv, b = _evicted_under_a_landed_copy()
    kv.free(b)
    assert kv.receive(Job(2, 64, 4, list(PREFIX), 0, target=64), 64) == 3


@pytest.mark.parametrize("after", ["landing", "eviction"])
def test_a_copy_is_found_in_hbm_once_the_block_it_copies_is_only_in_a_lower_tier(after):
    """With a DRAM tier under HBM, A's evicted blocks are demoted to DRAM: B's landed copies in HBM are the blocks
    found (HBM no longer caches A's), served from HBM, not loaded from DRAM; the DRAM copies are taken (a newly held
    block leaves the lower tier, ``_take_cached``). Whether B lands before A's blocks go or after."""
    kv = _manager(20, [20, 40])
    a, b = _received(kv, 0, 1)
    kv.landed(a)
    kv.free(a)
    if after == "landing":
        kv.landed(b)
    kv.free(_fill(kv, 3, 16))
    if after == "eviction":
        assert [kv.find(key) for key in PREFIX] == [1, 1, 1, 1]  # (A's, demoted)
        kv.landed(b)
    assert kv.cached_prefix_blocks(PREFIX) == 4
    assert b.prompt_copies == () and kv.pool.refs == {1: 1, 2: 1, 3: 1, 4: 1}


def test_a_copy_is_found_by_the_first_scheduler_lookup_after_the_block_it_copies_is_evicted():
    """The scheduler's lookup for a request preempted after 16 tokens finds B's 1-4 (held by B)."""
    kv, _ = _evicted_under_a_landed_copy()
    assert kv.lookup(Job(2, 64, 40, list(PREFIX), 0, target=80, admitted_once=True)).blocks == 4
