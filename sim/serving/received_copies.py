"""PD's decode side of a KV-cache manager (mixed into ``KVCacheManager``): prompt blocks whose KV is still on its way
to this instance, which no lookup finds until they land, and a request's own copies of blocks past its hit that
another request holds, which vLLM allocates as new blocks and caches beside the first block of their hash once
their KV is there (landed, or computed by a step)."""

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
        self._landing_of: dict[int, list[int]] = {}
        # by block id, the running requests holding a landed copy of it (``prompt_copies``) while
        # another request holds the block by id: vLLM cached the copy's hash as it landed, beside the first block
        # (``BlockHashToBlockMap`` keeps both), so the copy is found once the first block is gone (``landed``, ``free``)
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
        arriving = [int(block) for i, block in enumerate(job.blocks[present:], present) if i not in copies]
        if arriving:
            self._landing_of[job.rid] = arriving
            self.landing.update(arriving)

    def landed(self, job: Job) -> None:
        """The KV ``expect`` waited for has arrived: its blocks are found by later requests, its copies too (vLLM
        caches every full block of the request as its KV lands, ``_update_waiting_for_remote_kv`` -> ``cache_blocks``,
        a second block of a hash beside the first): a copy of a block no request holds by id any more becomes the
        block found (``_adopt``); the others are found once the block they copy is let go (``free``)."""
        arriving = self._landing_of.pop(job.rid, None)
        if arriving is not None:
            self.landing -= Counter(arriving)  # (a block no transfer brings any more leaves it)
        if job.prompt_copies:
            self._cache_copies(job, job.input_tokens // self.block_size)

    def computed(self, job: Job, tokens: int) -> None:
        """A step scheduled ``job``'s first ``tokens`` tokens here, ``job`` holding copies past its hit (``lookup`` cut
        it at another request's KV landing: a decode instance's preempted request, recomputed): its copies among the
        full prompt blocks they fill are found as ``landed`` makes a received one found. vLLM caches the full blocks
        a step schedules as it allocates them (``KVCacheManager.allocate_slots`` -> ``cache_blocks`` up to
        ``total_computed_tokens + num_new_tokens``, vllm/v1/core/kv_cache_manager.py), beside a first block of a
        hash."""
        self._cache_copies(job, min(tokens, job.input_tokens) // self.block_size)

    def _cache_copies(self, job: Job, last: int) -> None:
        """``job``'s copies among its first ``last`` prompt blocks (full ones: a partial block is not hashed, not
        found) are found from now on: a copy of a block no request holds by id becomes the block (``_adopt``), the
        others once the block they copy is let go (``free``). A copy found already is left as it is."""
        refs, landed = self.pool.refs, self._landed_copies
        for i in job.prompt_copies:
            if i >= last:
                continue
            key = int(job.blocks[i])
            if key not in refs:
                self._adopt(job, key)
                continue
            holders = landed.setdefault(key, [])
            if job not in holders:
                holders.append(job)

    def _adopt(self, job: Job, key: int) -> None:
        """``job``'s landed copy of block ``key``, which no request holds by id, becomes the block held by id (a
        private block of the pool's becomes ``key``'s: the count is unchanged); a cached copy of it (the first block,
        let go) leaves the cache, taken as any newly held block is (``_take_cached``)."""
        index = next(i for i in job.prompt_copies if int(job.blocks[i]) == key)
        job.prompt_copies = tuple(i for i in job.prompt_copies if i != index)
        self.pool.release(1)
        fresh = self.pool.hold([key])
        if self.prefix_caching:
            self._take_cached(fresh)

    def _forget_copies(self, job: Job) -> None:
        """``job`` lets its blocks go: its landed copies are found no more."""
        landed = self._landed_copies
        for i in job.prompt_copies:
            holders = landed.get(int(job.blocks[i]))
            if holders is not None and job in holders:
                holders.remove(job)
                if not holders:
                    del landed[int(job.blocks[i])]

    def _hand_over(self, freed: Sequence[int]) -> list[int]:
        """Of the blocks just let go (``freed``), those a landed copy holds now, as the block found (``landed``): they
        are held again, by the copy's request, so not cached."""
        landed = self._landed_copies
        handed = [key for key in freed if key in landed]
        for key in handed:
            holders = landed[key]
            self._adopt(holders.pop(0), key)
            if not holders:
                del landed[key]
        return handed

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
