"""PD's decode side of a KV-cache manager (mixed into ``KVCacheManager``): prompt blocks whose KV is still on its way
to this instance, which no lookup finds until they land, and a request's own copies of blocks past its hit that
another request holds, which vLLM allocates as new blocks and caches beside the first block of their hash once
their KV is there (landed, or computed by a step). Of a hash's blocks, vLLM's lookup finds the first cached
(``BlockHashToBlockMap.get_one_block``: ``next(iter(blocks.values()))``, vllm/v1/core/block_pool.py), and a freed
block stays cached until it is reused (``get_new_blocks`` -> ``_maybe_evict_cached_block``): a copy is found once
the blocks of its hash cached before it are held by no request and evicted from HBM."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from sim.serving.block_pool import BlockPool
from sim.serving.job import Job


class ReceivedCopies:
    """Blocks in flight to this instance (``landing``) and requests' copies past their hit (``Job.prompt_copies``)."""

    pool: BlockPool
    block_size: int
    prefix_caching: bool
    _take_cached: Callable[[Sequence[int]], None]

    def _init_received(self) -> None:
        # the prompt blocks whose KV is on its way here, by id: how many transfers bring each, and
        # each request's (``expect``, ``landed``). vLLM caches a received block's hash only once its KV has landed
        # (vllm/v1/core/sched/scheduler.py ``_update_waiting_for_remote_kv`` -> ``cache_blocks``; until then it was
        # allocated with ``delay_cache_blocks``): a lookup stops at the first of them
        self.landing: Counter[int] = Counter()
        self._landing_of: dict[int, tuple[Job, list[int]]] = {}
        # by block id, the running requests holding a landed copy of it (``prompt_copies``), in the order vLLM cached
        # them, while the block by id is held or cached in HBM: vLLM cached the copy's hash beside the first block
        # (``BlockHashToBlockMap`` keeps both), so the copy is found once that block is gone (``_surface_copies``)
        self._landed_copies: dict[int, list[Job]] = {}

    def _before_landing(self, blocks: Sequence[int], n: int) -> int:
        """The blocks of ``blocks[:n]`` before the first whose KV is still on its way here (``landing``): vLLM finds a
        received block only once it has landed. (A lower tier's copy of it is not looked for: with exclusive tiers,
        the default, the receiving request took it; an inclusive tier's copy an offloading connector could load is
        left unread, the request computing the block again.)"""
        landing = self.landing
        return next((i for i, block in enumerate(blocks[:n]) if int(block) in landing), n)

    def expect(self, job: Job, present: int) -> None:
        """The prompt blocks of ``job`` past its ``present`` ones are on their way here (``receive``): until they land,
        no lookup finds them. Its copies (``prompt_copies``) are its own: no lookup finds them anyway."""
        copies = set(job.prompt_copies)
        # (the blocks it holds: a Gated DeltaNet hybrid's decode side holds the blocks of the N - 1 tokens sent, the
        # step computing token N takes its block, ``Instance.reserve``)
        arriving = [int(block) for i, block in enumerate(job.blocks[present:job.held], present) if i not in copies]
        if arriving:
            self._landing_of[job.rid] = job, arriving
            self.landing.update(arriving)

    def landed(self, job: Job) -> None:
        """The KV ``expect`` waited for has arrived: its blocks are found by later requests, its copies too (vLLM
        caches every full block of the request as its KV lands, ``_update_waiting_for_remote_kv`` -> ``cache_blocks``,
        a second block of a hash beside the first): ``_cache_copies``."""
        entry = self._landing_of.pop(job.rid, None)
        if entry is not None:
            self.landing -= Counter(entry[1])  # (a block no transfer brings any more leaves it)
        if job.prompt_copies:
            self._cache_copies(job, job.input_tokens // self.block_size)

    def computed(self, job: Job, tokens: int) -> None:
        """A step scheduled ``job``'s first ``tokens`` tokens here, ``job`` holding copies past its hit (``lookup`` cut
        it at another request's KV landing: a decode instance's preempted request, recomputed; a hybrid's hit cut back
        to its sliding run, or to a connector's load, ``PastHitCopies``): its copies among the
        full prompt blocks they fill are found as ``landed`` makes a received one found. vLLM caches the full blocks
        a step schedules as it allocates them (``KVCacheManager.allocate_slots`` -> ``cache_blocks`` up to
        ``total_computed_tokens + num_new_tokens``, vllm/v1/core/kv_cache_manager.py), beside a first block of a
        hash."""
        self._cache_copies(job, min(tokens, job.input_tokens) // self.block_size)

    def _cache_copies(self, job: Job, last: int) -> None:
        """``job``'s copies among its first ``last`` prompt blocks (full ones: a partial block is not hashed, not
        found) are cached now, in vLLM's order: a copy of a block neither held nor cached in HBM is the block found
        (``_adopt``), as is one of a block held by id whose KV is still landing (not cached yet: ``_cut_in``); the
        others are found once the blocks cached before them are gone (``_surface_copies``), behind the copies of
        their block cached before them even where that block is gone already (the next lookup finds the first
        copy). A copy cached already is left as it is (vLLM caches a block once: ``num_cached_block``)."""
        refs, landed, landing = self.pool.refs, self._landed_copies, self.landing
        for i in job.prompt_copies:
            if i >= last:
                continue
            key = int(job.blocks[i])
            holders = landed.get(key)
            if holders is not None:
                if job not in holders:
                    holders.append(job)
            elif key in refs and key in landing:
                self._cut_in(job, i, key)
            elif key not in refs and self.cache.find(key) != 0:
                self._adopt(job, key)
            else:
                landed[key] = [job]

    def _cut_in(self, job: Job, index: int, key: int) -> None:
        """``job``'s copy (``index``) of block ``key`` is cached while the block held by id is still landing (a step
        computed the copy first): vLLM caches the copy first and the landing block beside it as it lands, so the
        copy is the block found, held by id, and the landing request's block becomes its copy, its KV still on its
        way (found, once landed, only after ``job``'s: ``_cache_copies``). Each still holds one block: the count is
        unchanged."""
        holder, arriving = next(entry for entry in self._landing_of.values() if key in entry[1])
        arriving.remove(key)
        self.landing -= Counter((key,))
        held = next(i for i in range(holder.held) if int(holder.blocks[i]) == key)
        holder.prompt_copies = tuple(sorted((*holder.prompt_copies, held)))
        job.prompt_copies = tuple(i for i in job.prompt_copies if i != index)

    def _surface_copies(self) -> None:
        """The landed copies of blocks now neither held nor cached in HBM (the HBM cache evicted the block, as vLLM's
        ``get_new_blocks`` reuses a free block, ``_maybe_evict_cached_block`` popping it from the hash's blocks): the
        first cached of each becomes the block found (``_adopt``), the others stay behind it. Asked before a lookup
        and a free reads what is found."""
        landed = self._landed_copies
        keys = list(landed)
        each = self.find_each  # (None where the cache has no batched find: the generic path's, a learned policy's)
        levels = each(keys) if each is not None else np.array([self.find(key) for key in keys], dtype=np.int8)
        gone = np.flatnonzero(levels != 0)
        for at in gone.tolist():
            key = keys[at]
            holders = landed[key]
            self._adopt(holders.pop(0), key)
            if not holders:
                del landed[key]

    def _adopt(self, job: Job, key: int) -> None:
        """``job``'s landed copy of block ``key``, which no request holds by id and HBM does not cache, becomes the
        block held by id (a private block of the pool's becomes ``key``'s: the count is unchanged); a lower tier's
        copy of it leaves that tier, taken as any newly held block is (``_take_cached``)."""
        index = next(i for i in job.prompt_copies if int(job.blocks[i]) == key)
        job.prompt_copies = tuple(i for i in job.prompt_copies if i != index)
        self.pool.release(1)
        fresh = self.pool.hold([key])
        if self.prefix_caching:
            self._take_cached(fresh)

    def _forget_copies(self, job: Job) -> None:
        """``job`` lets its blocks go: its landed copies are found no more (vLLM keeps a freed copy cached behind the
        block of its hash found first, found only if that one is evicted first; kvsim's cache holds one block of an
        id, and the first one, freed before, is evicted first)."""
        landed = self._landed_copies
        for i in job.prompt_copies:
            holders = landed.get(int(job.blocks[i]))
            if holders is not None and job in holders:
                holders.remove(job)
                if not holders:
                    del landed[int(job.blocks[i])]

    @staticmethod
    def _held_indices(job: Job) -> np.ndarray:
        """The indices of the prompt blocks ``job`` holds by reference, deepest first (its copies left out)."""
        copies = set(job.prompt_copies)
        return np.array([i for i in range(job.held - 1, -1, -1) if i not in copies], dtype=np.int64)

    def _past_hit_new_blocks(self, job: Job, tokens: int, hit: int) -> int:
        """``new_blocks`` where vLLM allocates new blocks past the ``hit``'s: a block there is found neither cached
        nor in use (its hash may match a block another request holds, the blocks are not shared)."""
        need, prompt, held = -(-tokens // self.block_size), len(job.blocks), job.held
        upto = min(need, prompt)
        fresh = 0
        if upto > held:
            split = max(held, min(upto, hit))
            fresh = self.pool.count_fresh(job.blocks[held:split]) + upto - split
        return fresh + max(0, need - prompt - job.anonymous)

    def _hold_past_hit(self, job: Job, prompt: int, grow: int, hit: int) -> list[int]:
        """Hold ``job``'s prompt blocks up to ``prompt`` and ``grow`` more private ones; a block past the ``hit`` that
        another request holds is a copy of this request's own (``prompt_copies``). Returns the prompt blocks newly
        allocated."""
        refs = self.pool.refs
        keys, copies = [], []
        for i in range(job.held, prompt):
            key = job.blocks[i]
            if i >= hit and key in refs:
                copies.append(i)
            else:
                keys.append(key)
        if copies:
            job.prompt_copies += tuple(copies)
        return list(self.pool.hold(keys, grow + len(copies)))
