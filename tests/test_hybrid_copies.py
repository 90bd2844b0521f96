"""A hybrid model's own copies of blocks past its hit (``Job.prompt_copies``: another request holds a block of the same
hash, vLLM allocates a new one) are cached as the step computing them is scheduled, whatever cut the hit: vLLM's
``KVCacheManager.allocate_slots`` -> ``coordinator.cache_blocks`` caches every group's full blocks up to
``num_computed_tokens + num_new_tokens`` (vllm/v1/core/kv_cache_manager.py), beside the first block of their hash
(``BlockHashToBlockMap`` does not de-duplicate), and a lookup finds them once the blocks cached before them are evicted
(``get_one_block``). Cases by hand with gpt-oss-20b (one full and one sliding group, window 128, blocks of 16 tokens):
the full group's blocks are the prompt's ids, a sliding group's are keyed past ``IDS``."""

from __future__ import annotations

import numpy as np

from sim.config import load_config
from sim.report.metrics import RequestTable, WeightedSamples
from sim.serving.job import Job
from sim.serving.scheduler import DECODE, UNIFIED, Scheduler
from tests.test_hybrid_kv_cache_manager import admit, hybrid_manager

IDS = 64  # block ids below it are the full group's
PREFIX = [1, 2, 3, 4]


def _full_refs(pool) -> dict[int, int]:
    """The full-attention group's blocks held by id, with their holders."""
    return {key: n for key, n in pool.refs.items() if key < IDS}


def _scheduler(kv, role: str, n: int = 4) -> Scheduler:
    config = load_config(None, sets=["model=gpt-oss-20b", "serving.block_size=16",
                                     "serving.max_num_batched_tokens=2048", "serving.max_num_seqs=8"])
    table = RequestTable(np.zeros(n), np.full(n, 64), np.full(n, 40))
    return Scheduler(1, role, config.serving, kv, table, WeightedSamples())


def _push_out_cache(kv, pool) -> None:
    """D (ids 30-59 of its own) takes every free block, so the HBM cache holds nothing, and ends."""
    d = Job(3, 16 * 30, 1, list(range(30, 60)), 100, target=16 * 30)
    admit(kv, d, 16 * 30)
    assert pool.free <= 0 or kv.cached_prefix_blocks(PREFIX) == 0
    kv.free(d)


def test_a_hybrid_decode_step_recomputing_a_preempted_request_caches_its_copies_first():
    """C (blocks 1-4) is received on a decode instance, its KV in flight. B (preempted after 16 tokens, the same
    prompt) is admitted again: its lookup stops at C's landing block 1 (hit 0), so the step recomputing its 80 tokens
    takes new blocks for 1-4 and caches them before C's land (vLLM delays caching a remote-KV request's blocks until
    they land): B's are the blocks found, C's the copies. Once C lands and ends, the full group holds B's 1-4 by id.
    Before, the hybrid's lookup left ``copies_from`` unset, the scheduler never told the manager what the step
    computed, and B kept 4 copies no lookup would ever find."""
    kv, pool = hybrid_manager(pool_blocks=60, ids=IDS)
    c = Job(2, 64, 4, list(PREFIX), 0, target=64)
    assert kv.receive(c, 64) == 0
    kv.allocate(c, 64)
    kv.expect(c, 0)
    scheduler = _scheduler(kv, DECODE)
    b = Job(1, 64, 40, list(PREFIX), 0, target=80, admitted_once=True)
    scheduler.waiting.append(b)
    batch = scheduler.schedule(0.0)
    assert batch is not None and batch.jobs == [(b, 80)]
    assert b.prompt_copies == () and c.prompt_copies == (0, 1, 2, 3) and not kv.landing
    kv.landed(c)
    kv.free(c)
    assert _full_refs(pool) == {1: 1, 2: 1, 3: 1, 4: 1} and b.prompt_copies == ()


class _Load:
    """A connector's load of a prompt's first ``hits`` blocks (``FetchPlan``'s face to the scheduler), landing when
    the test says."""

    def __init__(self, hits: int):
        self.hits = hits
        self.first = True
        self.land = None

    def loaded_positions(self) -> np.ndarray:
        return np.arange(self.hits)

    def start(self, landed) -> None:
        self.land = landed


def test_a_parked_hybrid_requests_copies_are_cached_as_the_step_after_its_load_computes_them():
    """A (blocks 1-8, 128 tokens) runs on a unified instance. B (blocks 1-8 and 9) is admitted with a connector load
    of its first 2 blocks: its hit is 2, so its blocks 3-8, which A holds, are new blocks of its own (6 copies) and
    block 9 one more. It waits for the load (WAITING_FOR_REMOTE_KVS); once landed, the step computing its 112 other
    tokens caches blocks 3-9 (``allocate_slots`` -> ``cache_blocks``), B's 3-8 behind A's. A ends, its blocks
    cached in HBM, still the ones found; D pushes them out: B's copies are the blocks of 3-8 now, held by id. Before,
    nothing cached B's copies (the scheduler told the manager only of a job with ``copies_from``): they stayed B's."""
    kv, pool = hybrid_manager(pool_blocks=60, ids=IDS)
    a = Job(0, 128, 4, list(range(1, 9)), 0, target=128)
    admit(kv, a, 128)
    a.computed = 128
    scheduler = _scheduler(kv, UNIFIED)
    load = _Load(2)
    scheduler.connector = lambda job: load
    scheduler.on_landed = lambda job: (scheduler.inbox.append(job), scheduler.take_in(0.0))
    b = Job(1, 144, 4, list(range(1, 10)), 0, target=144)
    b.read_at = 0.0
    scheduler.waiting.append(b)
    assert scheduler.schedule(0.0) is None  # (parked: waiting for its load)
    assert b.prompt_copies == (2, 3, 4, 5, 6, 7) and b.computed == 32
    load.land()
    batch = scheduler.schedule(0.0)
    assert batch is not None and batch.jobs == [(b, 112)]
    kv.free(a)
    assert _full_refs(pool) == {1: 1, 2: 1, 9: 1} and b.prompt_copies == (2, 3, 4, 5, 6, 7)  # (A's 3-8 cached)
    _push_out_cache(kv, pool)
    assert _full_refs(pool) == {key: 1 for key in range(1, 10)} and b.prompt_copies == ()


def test_a_request_received_behind_another_of_its_prefix_takes_sliding_blocks_of_its_own():
    """A and B (blocks 1-4, 64 tokens) are received one after the other, A's KV in flight: B's hit is 0 (its lookup
    stops at A's landing block 1), so vLLM allocates B new blocks in every group (``allocate_slots`` past the hit:
    ``get_new_blocks``): 4 full-group copies and 4 sliding blocks (64 tokens, all inside the 128-token window), and
    the connector fills them all (B is sent 8). The pool holds A's 8 + B's 8 = 16. Before, B held A's sliding blocks
    of 1-3 by key (shared), 13: decode memory under-counted."""
    kv, pool = hybrid_manager(pool_blocks=60, ids=IDS)
    a, b = Job(0, 64, 1, list(PREFIX), 0, target=64), Job(1, 64, 400, list(PREFIX), 0, target=64)
    for job in (a, b):
        assert kv.receive(job, 64) == 0
        assert kv.new_blocks(job, 64) == 8
        kv.allocate(job, 64)
        kv.expect(job, 0)
        assert kv.sent_blocks(job, 0) == 8
    assert pool.used == 16 and b.prompt_copies == (0, 1, 2, 3)
    assert {key: n for key, n in pool.refs.items() if key >= IDS} == {IDS + 1: 1, IDS + 2: 1, IDS + 3: 1}  # (A's)
    kv.landed(a)
    kv.landed(b)
    kv.free(a)
    assert pool.used == 8
    kv.free(b)
    assert pool.used == 0 and not pool.refs


def test_with_six_sliding_groups_a_request_received_behind_another_takes_blocks_in_every_group():
    """gemma-3-4b (34 layers, 5 full and 29 sliding, groups of 5: 1 full group and 6 sliding groups): A and B (blocks
    1-4, 64 tokens, inside the 1024-token window) received one after the other, A's KV in flight. Each takes 4 blocks
    in each of its 7 groups (B's hit is 0: ``get_new_blocks`` in every group past it), 28, and is sent 28: the pool
    holds 56. (gpt-oss's one sliding group cannot tell one sliding group's count from all of them.)"""
    from sim.serving.block_pool import BlockPool
    from sim.serving.hybrid_kv_cache_manager import HybridKVCacheManager
    from sim.serving.kv_groups import kv_groups
    from sim.specs import model_spec
    from tests.cache_helpers import make_cache
    from tests.test_hybrid_kv_cache_manager import Clock

    groups = kv_groups(model_spec("gemma-3-4b"), 16)
    assert (groups.full_groups, groups.sliding_groups) == (1, 6)
    pool = BlockPool(200, Clock())
    kv = HybridKVCacheManager(pool, make_cache("lru", [200], num_blocks=8 * IDS), 16, True, lambda: 0.0, groups, IDS,
                              groups.admission_cap(131_072, 8192, False), False)
    for job in (Job(0, 64, 1, list(PREFIX), 0, target=64), Job(1, 64, 400, list(PREFIX), 0, target=64)):
        assert kv.receive(job, 64) == 0
        assert kv.new_blocks(job, 64) == 28
        kv.allocate(job, 64)
        kv.expect(job, 0)
        assert kv.sent_blocks(job, 0) == 28
    assert pool.used == 56
