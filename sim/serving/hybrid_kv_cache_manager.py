"""vLLM's hybrid KV-cache manager for a model mixing sliding-window and full-attention layers (gpt-oss, Gemma 2/3),
as vLLM 0.33 runs it (``v1/core/kv_cache_coordinator.py`` ``HybridKVCacheCoordinator``,
``v1/core/single_type_kv_cache_manager.py`` ``SlidingWindowManager``) with its default
``prefix_cache_retention_interval`` 0.

One pool serves every group (``sim.serving.kv_groups``). The full-attention group holds a request's blocks as
``KVCacheManager`` does. Each sliding group holds only the blocks its next token can see: before a request's
blocks are counted, those that left its window are freed (``remove_skipped_blocks``; asynchronous scheduling sees
the step in flight as not yet computed, so they leave a step later). A sliding group keeps as cached prefixes only
the blocks vLLM hashes: the ``hit_blocks`` ending at the prompt's last full block before its last token (its replay
boundary), those ending where a prefix served by the full group stopped short for want of sliding blocks (the
shared-prefix junction, so that the next request sharing it finds them), and the blocks a hit served; the others,
freed, hold nothing (vLLM puts them first in its free queue). A prefix hit is the longest prefix the full group
holds, cut back to the end of the last run of ``hit_blocks`` consecutive blocks every sliding group holds
(``find_longest_cache_hit``: scanned right to left; with no such run, the run from block 0, shorter than a window).

Generated tokens' full blocks (``Job.generated_ids``): the full group hashes every full block of the sequence, so a
request leaves them cached; a sliding group hashes none (they are past its replay boundary) but those ending at a
junction (``reachable_block_mask``). So a conversation's next turn is served up to the previous turn's prompt, not its
answer, but its junction is the answer's end (the full group finds the answer): a request sharing the conversation
up to there is served all of it. A resumed request looks up its sequence (its prompt's full blocks, then its
generated ones: vLLM's block hashes cover them), and its junction falls among its generated blocks.

A sliding group's copy of block ``b`` (a prompt's or a generated one) is the key ``b + (g + 1) × offset``
(``offset``: the run's block-id space, generated blocks' ids included), in the same caches and pool as the full
group's ``b``. A decode window's steps allocate as they start (``stepwise_windows``: blocks leave a sliding group as
others join it, so no growth can be reserved ahead): only the steps at which some request's blocks change are
visited, each as a single step plans it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from sim.serving.block_pool import BlockPool
from sim.serving.job import Job
from sim.serving.kv_cache_manager import KVCacheManager, TieredCache
from sim.serving.kv_groups import KVGroups
from sim.serving.prefix_match import PrefixMatch, prefix_hit, usable_prefix_blocks


def copy_positions(job: Job, count: int) -> np.ndarray:
    """Stream positions for ``count`` freed sliding copies or Gated DeltaNet states of ``job``, which become cached
    prefixes: the request's first, for each. No policy reads them: the stream (``CacheStream``) holds the trace's
    blocks, not the copies keyed past them, so a policy ranking blocks by their next use (clairvoyant, learned) is
    refused beside copies (``check_hybrid_manager``), and a cache tracking positions takes no key past the trace's
    block-id space (``MultiTierCache``'s bound). (Its block's position, its request's first plus its sequence index,
    would not do either: a later request holding the block needs a sliding copy or a state only where its hit ends.)"""
    return np.full(count, job.position, dtype=np.int64)


class PastHitCopies:
    """The full-attention group of a hybrid whose prefix hit is cut back below what the full group holds
    (``Job.sliding_hit``: the blocks served): past the hit vLLM allocates new blocks, even where another request
    holds a block of the same hash (kept as ``Job.prompt_copies``, private to the request: ``KVCacheManager``'s
    ``_past_hit_new_blocks``, ``_hold_past_hit``, ``_held_blocks``). On PD's decode side the full group's hit is
    ``Job.copies_from`` (``receive``), which a Gated DeltaNet hybrid's state groups do not share: their hit is
    skipped there (``AlignStateKVCacheManager.receive``)."""

    @staticmethod
    def _full_hit(job: Job) -> int:
        """The prompt blocks ``job``'s full group found, shared with whoever holds them: its decode-side hit
        (``copies_from``) where it has one, else the hit every group served."""
        return job.copies_from if job.copies_from >= 0 else job.sliding_hit

    def _full_new_blocks(self, job: Job, tokens: int) -> int:
        """Blocks the full group takes to grow ``job`` to ``tokens`` tokens: only the hit's blocks are found, as cached
        or in use."""
        return self._past_hit_new_blocks(job, tokens, self._full_hit(job))

    def _hold_full(self, job: Job, prompt: int, grow: int) -> list[int]:
        """Hold the full group's prompt blocks up to ``prompt`` and ``grow`` more private ones, a block past the hit
        that another request holds as a copy of this request's own. Returns the prompt blocks newly allocated."""
        return self._hold_past_hit(job, prompt, grow, self._full_hit(job))


class HybridKVCacheManager(PastHitCopies, KVCacheManager):
    """One full-attention group and ``groups.sliding_groups`` sliding-window groups over one block pool."""

    stepwise_windows = True

    def __init__(self, pool: BlockPool, cache: TieredCache, block_size: int, prefix_caching: bool,
                 clock: Callable[[], float], groups: KVGroups, key_offset: int, admission_cap: int,
                 async_scheduling: bool):
        super().__init__(pool, cache, block_size, prefix_caching, clock)
        if groups.full_groups != 1:
            raise ValueError("the hybrid manager models one full-attention group")
        self.groups = groups
        self.copies = groups.sliding_groups
        self.need = groups.hit_blocks
        self.window = groups.window
        self.offsets = [(g + 1) * key_offset for g in range(self.copies)]
        self.admission_cap = admission_cap  # most blocks a sliding group asks to admit a request
        self.async_lag = async_scheduling
        self.step = 0  # steps planned so far (``begin_step``)
        self.groups_growing = 1 + self.copies
        self._window_base = 0  # ``step`` at a decode window's first step

    # ------------------------------------------------------------- keys

    def _keys(self, job: Job, lo: int, hi: int) -> list[int]:
        """Every sliding group's copies of sequence blocks lo … hi - 1 (group by group)."""
        ids = self._sequence_ids(job, lo, hi)
        return [int(b) + offset for offset in self.offsets for b in ids]

    def _sequence_blocks(self, job: Job) -> int:
        """Blocks of ``job``'s sequence that have ids: its prompt's, or its full ones and its generated ones."""
        generated = len(job.generated_ids)
        return job.input_tokens // self.block_size + generated if generated else len(job.blocks)

    def _ending_at(self, end: int) -> tuple[int, int]:
        """The ``need`` blocks a sliding group keeps to serve a prefix of ``end`` blocks (fewer near block 0)."""
        return max(0, end - self.need), end

    def _tail(self, prompt_tokens: int) -> tuple[int, int]:
        """Those ending at a prompt's replay boundary: its last full block before its last token."""
        return self._ending_at(max(0, prompt_tokens - 1) // self.block_size)

    def _keyed(self, job: Job, lo: int, hi: int, descending: bool = False) -> tuple[list[int], int]:
        """Blocks lo … hi - 1 of the sliding groups: the keys of the sequence blocks they keep as cached prefixes,
        group by group (each in block order, or latest first), and how many blocks the others take in all (private to
        the request)."""
        known = self._sequence_blocks(job)
        spans = [(max(lo, start), min(hi, end, known)) for start, end in job.sliding_keyed]
        spans = [(a, b) for a, b in spans if a < b]
        kept = sum(b - a for a, b in spans)
        if descending:
            spans.reverse()
        keys: list[int] = []
        for offset in self.offsets:
            for a, b in spans:
                ids = self._sequence_ids(job, a, b)
                keys += [int(x) + offset for x in (reversed(ids) if descending else ids)]
        return keys, (hi - lo - kept) * self.copies

    # ------------------------------------------------------------- lookups

    def lookup(self, job: Job) -> PrefixMatch:
        """The longest prefix the full group holds that every sliding group can serve (``find_longest_cache_hit``),
        of the prompt; after a preemption, of its sequence (``_sequence_chain``: vLLM's block hashes cover what it
        generated), whose generated blocks the full group cached but a sliding group only where an earlier junction
        fell among them. The blocks the request will keep as cached prefixes are planned here (``sliding_keyed``,
        taken at its admission)."""
        bs = self.block_size
        keyed = [self._tail(job.input_tokens)]
        admitting = self._admitting(job)  # (a waiting request holds nothing)
        if not self.prefix_caching:
            if admitting:
                job.sliding_keyed, job.sliding_lo, job.sliding_hi, job.sliding_hit = (), 0, 0, 0
            return PrefixMatch([], 0, {})
        chain, chain_tokens = self._sequence_chain(job)
        levels = self.prefix_levels(job, chain)
        full_hit, full_tokens = prefix_hit(levels, job.target, chain_tokens, bs)
        hit, sliding_levels = self._sliding_run(job, full_hit)
        tokens = full_tokens if hit == full_hit else hit * bs
        # the shared-prefix junction (``shared_prefix_boundary``), kept for the next request: where the full group's
        # own hit ended (short of the last token: a lower tier's last block is the connector's, not the cache's);
        # among the generated blocks after a preemption, or at the end of a previous turn's answer
        in_hbm = next((i for i, level in enumerate(levels) if level != 0), len(levels))  # (vLLM's GPU lookup)
        junction = min(full_hit, in_hbm, usable_prefix_blocks(job.target, bs))
        if hit < junction:
            keyed.append(self._ending_at(junction))
        if hit:
            keyed.append(self._ending_at(hit))
        if admitting:  # its sliding groups start at the hit's run (blocks before it are outside the window)
            job.sliding_keyed = merged(keyed)
            job.sliding_lo = job.sliding_hi = self._ending_at(hit)[0]
            job.sliding_hit = hit
            job.generated_hit = max(0, hit - job.input_tokens // bs) if chain_tokens > job.input_tokens else 0
        return PrefixMatch.of(levels[:hit], tokens, sliding_levels)

    def external_match(self, job: Job, blocks: int) -> PrefixMatch:
        """A prefix a KV connector will load at admission (``KVCacheManager.external_match``; its sliding copies were
        found with it, ``reachable_prefix``): the request's sliding groups start at the run of ``hit_blocks`` ending
        there, kept as cached prefixes like a hit's, so that admission takes every group's blocks of it (vLLM's
        ``allocate_new_computed_blocks`` for the external tokens: the full group's and the sliding groups' in the
        window) and the copies go straight into them."""
        match = super().external_match(job, blocks)
        if self._admitting(job):
            start, end = self._ending_at(match.blocks)
            job.sliding_keyed = merged([*job.sliding_keyed, (start, end)])
            job.sliding_lo = job.sliding_hi = start
            job.sliding_hit = match.blocks
        return match

    def receive(self, job: Job, tokens: int) -> int:
        """A prompt computed elsewhere (PD's decode side): the prefix found here, cut back to what every sliding group
        can serve as ``lookup`` cuts it; the sliding groups will hold the blocks the next token sees, those the hit
        served taken from the cache, the others sent (vLLM: the skipped blocks of the tokens the connector brings are
        never allocated)."""
        full_hit = super().receive(job, tokens)
        hit = self._sliding_run(job, full_hit)[0] if full_hit else 0
        job.copies_from = hit  # (no Mamba group: the connector's local hit is the one every group agrees on,
        # ``get_computed_blocks_for_connector`` -> ``get_computed_blocks``; past it the blocks are new)
        job.sliding_keyed = merged([self._tail(tokens), self._ending_at(hit)])
        job.sliding_lo = job.sliding_hi = self.groups.first_needed(tokens)
        job.sliding_seen = tokens  # (computed: nothing of it is in flight here)
        job.sliding_hit = hit
        return hit

    def sent_blocks(self, job: Job, present: int) -> int:
        """The prompt's full-attention blocks past the hit, and each sliding group's blocks of the window past it
        (``job.window_sent``: a layerwise transfer's last message is a sliding layer's, or a full one's)."""
        job.window_sent = max(0, len(job.blocks) - max(job.sliding_lo, present))
        return super().sent_blocks(job, present) + self.copies * job.window_sent

    def reachable_prefix(self, job: Job, limit: int, present: Callable[[int], int]) -> tuple[int, list[int]]:
        """A prefix a KV connector would load at admission (cluster mode: ``PrefixFetch._fetch_plan``): its first
        ``limit`` full-group blocks reachable, cut back as ``lookup`` cuts a hit, each sliding copy where ``present``
        finds it (-1: nowhere). Returns the blocks and the sliding copies they need."""
        hit = self._sliding_run(job, limit, present)[0]
        return hit, self._keys(job, *self._ending_at(hit)) if hit else []

    def _sliding_run(self, job: Job, limit: int, present: Callable[[int], int] | None = None) -> tuple[int, list[int]]:
        """(blocks, tiers of the sliding copies served): the end of the last run of ``need`` consecutive prompt blocks
        before ``limit`` that every sliding group holds, or the run from block 0 when it is shorter. ``present``: where
        a copy is (default ``find``: this instance's tiers; -1 nowhere; asked of each copy at most once a call).

        A candidate run is checked from its first block: a block some group lacks rules out every run holding it, so
        the next candidate ends there, and a prefix whose copies are missing costs a probe per ``need`` blocks, not
        one per block (a request waiting at the queue's head is looked up at every step)."""
        each = self.find_each if present is None else getattr(present, "each", None)
        if each is not None:
            return self._sliding_run_probed(job, limit, each)
        present = present or self.find
        ids, offsets = self._sequence_ids(job, 0, limit), self.offsets
        seen: dict[int, list[int]] = {}

        def levels_of(i: int) -> list[int]:
            here = seen.get(i)
            if here is None:
                block = int(ids[i])
                here = seen[i] = [present(block + offset) for offset in offsets]
            return here

        end = limit
        while end > 0:
            start = max(0, end - self.need)
            gap = next((i for i in range(start, end) if min(levels_of(i)) < 0), None)
            if gap is None:
                return end, [level for i in range(end - 1, start - 1, -1) for level in levels_of(i)]
            end = gap
        return 0, []

    def _sliding_run_probed(self, job: Job, limit: int, find_each: Callable) -> tuple[int, list[int]]:
        """``_sliding_run`` over this instance's tiers, its copies probed in passes of one compiled call each (the
        cache's ``find_each``): the last ``need`` blocks before ``limit`` first, then twice as many before those at
        each pass, until a run of ``need`` blocks every group holds lies within the blocks probed (the latest such
        run is the answer: a later end's run lies within them too and lacks a copy), or block 0 is reached. A prompt
        whose copies are cached only at a few kept runs (each request's replay boundary and junctions) is probed in
        a few calls, not one per ``need`` blocks down to its kept run."""
        need, copies = self.need, len(self.offsets)
        ids = np.asarray(self._sequence_ids(job, 0, limit), dtype=np.int64)
        offsets = np.asarray(self.offsets, dtype=np.int64)
        levels = np.empty((limit, copies), dtype=np.int8)
        lo, size = limit, need
        while lo > 0:
            start = max(0, lo - size)
            levels[start:lo] = find_each((ids[start:lo, None] + offsets).ravel()).reshape(lo - start, copies)
            lo, size = start, 2 * size
            # blocks lacking a copy, between the probed range's edges: a run of need blocks fits in a gap of need
            edges = np.concatenate(([lo - 1], lo + np.flatnonzero((levels[lo:] < 0).any(axis=1)), [limit]))
            fits = np.flatnonzero(np.diff(edges) > need)
            if len(fits):
                end = int(edges[fits[-1] + 1])
                break
            if lo == 0:  # no run of need blocks: the run from block 0, up to the first block lacking a copy
                end = int(edges[1])
                break
        else:
            return 0, []
        start = max(0, end - need)
        return end, levels[start:end][::-1].ravel().tolist()

    # ------------------------------------------------------------- allocation

    def begin_step(self) -> None:
        self.step += 1

    # ------------------------------------------------------------- decode windows

    def window_blocks(self, job: Job, steps: int) -> int:
        """At most the blocks ``steps`` more decode tokens take: the full group's growth, and each sliding group's
        blocks joining the window (those leaving it not counted)."""
        joining = -(-(job.computed + steps) // self.block_size) - job.sliding_hi
        return super().window_blocks(job, steps) + (self.copies * joining if joining > 0 else 0)

    def window_changes(self, jobs: Sequence[Job], computed: Sequence[int], steps: int) -> dict[int, list[int]]:
        """The later steps (1 … ``steps`` - 1) of a window whose first step was just allocated, and the jobs whose
        blocks may change as each starts: a block joins when the tokens cross a block boundary, one leaves a sliding
        group when its window's start does (the tokens it has seen, a step behind under asynchronous scheduling, so
        the blocks a prefill just passed leave at step 1 then)."""
        self._window_base = self.step
        bs, lag = self.block_size, 1 if self.async_lag else 0
        changes: dict[int, list[int]] = {}
        for index, c in enumerate(computed):
            # step s allocates c + s + 1 tokens: a new block when (c + s) % bs == 0; the window's first block moves on
            # when (seen - window + 1) % bs == 0, seen = c + s - lag (and catches up with a prefill at step lag)
            joins, leaves = -c % bs or bs, (self.window - 1 + lag - c) % bs or bs
            at = {*range(joins, steps, bs), *range(leaves, steps, bs), *((1,) if lag and steps > 1 else ())}
            for s in at:
                changes.setdefault(s, []).append(index)
        for indices in changes.values():
            indices.sort()  # in the batch's order, as a single step plans them
        return changes

    def window_step(self, jobs: Sequence[Job], computed: Sequence[int], step: int, indices: Sequence[int]) -> None:
        """A window's step ``step`` starts: ``indices``' jobs allocate its token as a single step would."""
        self.step = self._window_base + step
        for index in indices:
            job, c = jobs[index], computed[index]
            job.computed = c + step
            job.sliding_seen, job.sliding_step = c + step - 1, self.step - 1  # (planned in the step before)
            self.allocate(job, c + step + 1)
            job.computed = c

    def end_window(self, jobs: Sequence[Job], computed: Sequence[int], steps: int) -> None:
        """The window's ``steps`` steps ran: each job as its last planned step left it."""
        self.step = self._window_base + steps - 1
        for job, c in zip(jobs, computed, strict=True):
            job.sliding_seen, job.sliding_step = c + steps - 1, self.step

    def _window_start(self, job: Job) -> int:
        """The first block the sliding groups need now: those before left the window of the tokens the scheduler
        counts as computed (asynchronously: as of the allocation before)."""
        # (vLLM frees on the processed tokens: computed less those of the step in flight, if the job was in it)
        seen = job.sliding_seen if self.async_lag and job.sliding_step == self.step - 1 else job.computed
        first = (seen - self.window + 1) // self.block_size if seen >= self.window else 0  # (KVGroups.first_needed)
        return job.sliding_lo if first <= job.sliding_lo else min(job.sliding_hi, first)

    @staticmethod
    def _admitting(job: Job) -> bool:
        """Whether ``job`` holds no block yet (a new or preempted request): its sliding start is the lookup's."""
        return not (job.held or job.anonymous)

    def blocks_alone(self, tokens: int) -> int:
        """Blocks a request of ``tokens`` tokens holds at most on an idle instance."""
        return int(self.groups.with_sliding(-(-tokens // self.block_size), self.admission_cap))

    def _unchanged(self, job: Job, tokens: int) -> bool:
        """Whether growing ``job`` to ``tokens`` tokens takes and frees no block (most decode steps)."""
        want = -(-tokens // self.block_size)
        if want > job.sliding_hi or self._window_start(job) > job.sliding_lo:
            return False
        prompt = len(job.blocks)
        return want <= job.held if want <= prompt else job.held == prompt and want - prompt <= job.anonymous

    def holds(self, job: Job, tokens: int) -> bool:
        """Never known here: every allocation may move the job's other groups' blocks."""
        return False

    def new_blocks(self, job: Job, tokens: int) -> int:
        """Physical blocks that growing ``job`` to ``tokens`` tokens would take, less those its sliding groups give
        up first (they are freed before vLLM counts the allocation)."""
        if self._unchanged(job, tokens):
            return 0
        full = self._full_new_blocks(job, tokens)
        lo, hi = self._window_start(job), job.sliding_hi
        released = self._released(job, job.sliding_lo, lo)
        want = -(-tokens // self.block_size)
        start = max(hi, lo)
        if want <= start:
            return full - released
        split = min(max(start, job.sliding_hit), want)  # (past the hit every block is new: ``_own_past_hit``)
        keys, private = self._keyed(job, start, split)
        return full + self.pool.count_fresh(keys) + private + self.copies * (want - split) - released

    def admission_before_lookup(self, job: Job, full_sequence: bool) -> int | None:
        """Never known before the lookup here: the hit's blocks change what the other groups take."""
        return None

    def admission_blocks(self, job: Job, tokens: int, full_sequence: bool) -> int:
        """Blocks admitting a waiting ``job`` takes for its first ``tokens`` tokens; with ``full_sequence`` (vLLM's
        ``full_sequence_must_fit``) at least those of its whole sequence as vLLM's gate counts them
        (``get_num_blocks_to_allocate(apply_admission_cap=True)``): each sliding group's blocks from block 0, at most
        ``admission_cap``, less the hit's blocks (its leading null blocks included), plus the hit's run where it
        leaves the cache."""
        chunk = self.new_blocks(job, tokens)
        if not full_sequence:
            return chunk
        hit = job.sliding_hit
        blocks = min(-(-job.target // self.block_size), self.admission_cap)
        run, _ = self._keyed(job, job.sliding_lo, hit)
        gate = (self._full_new_blocks(job, job.target) + self.copies * max(blocks - hit, 0)
                + self.pool.count_fresh(run))
        return max(gate, chunk)

    def _released(self, job: Job, lo: int, hi: int) -> int:
        """Blocks freed by letting go of the sliding groups' blocks lo … hi - 1 (a kept block others hold stays)."""
        if hi <= lo:
            return 0
        keys, private = self._keyed(job, lo, hi)
        refs = self.pool.refs
        return private + sum(1 for key in keys if refs.get(key, 1) == 1) if self.pool.shared else private + len(keys)

    def allocate(self, job: Job, tokens: int) -> None:
        """Grow ``job``'s blocks to hold ``tokens`` tokens: its sliding groups first give up what left the window."""
        if self._unchanged(job, tokens):
            job.sliding_seen, job.sliding_step = job.computed, self.step
            return
        freed = self._let_go_sliding(job, self._window_start(job))
        prompt, private = self.blocks_for(job, tokens)
        grow = private - job.anonymous if private > job.anonymous else 0
        fresh = self._hold_full(job, prompt, grow)
        job.held = max(job.held, prompt)
        job.anonymous += grow
        want = -(-tokens // self.block_size)
        if want > job.sliding_hi:
            self._own_past_hit(job, job.sliding_hi, want)
            keys, count = self._keyed(job, job.sliding_hi, want)
            fresh += self.pool.hold(keys, count)
            job.sliding_hi = want
        job.sliding_seen, job.sliding_step = job.computed, self.step
        if self.prefix_caching:
            self._return_to_cache(freed, copy_positions(job, len(freed)))
            self._take_cached(fresh)
            if job.generated_hit:  # the full group's generated blocks its lookup found cached are its own again
                self._take_cached(job.generated_ids[:job.generated_hit])
                job.generated_hit = 0
            self.cache.resize_top(self.pool.unused)
            self._charge_writes()

    def _own_past_hit(self, job: Job, lo: int, hi: int) -> None:
        """The sliding blocks lo … hi - 1 past ``job``'s hit that another request holds by key are the job's own, not
        kept as cached prefixes (dropped from ``sliding_keyed``): vLLM allocates new blocks in every group past a hit
        (``allocate_slots`` -> ``get_new_blocks``), as the full group's copies are (``_hold_full``); e.g. a request
        received on a decode instance while another's KV of its prefix is in flight. (A group's key stands for every
        group's: a request holds its groups' blocks of a sequence block together.)"""
        lo = max(lo, job.sliding_hit)
        refs = self.pool.refs
        if lo >= hi or not refs:
            return
        offset = self.offsets[0]
        shared: list[int] = []
        for a, b in job.sliding_keyed:
            a, b = max(a, lo), min(b, hi)
            if a < b:
                ids = self._sequence_ids(job, a, b)
                shared += [i for i, block in enumerate(ids, a) if int(block) + offset in refs]
        if shared:
            spans: list[tuple[int, int]] = []
            for a, b in job.sliding_keyed:
                for i in (i for i in shared if a <= i < b):
                    spans.append((a, i))
                    a = i + 1
                spans.append((a, b))
            job.sliding_keyed = merged(spans)

    def _let_go_sliding(self, job: Job, upto: int) -> Sequence[int]:
        """Free the sliding groups' blocks before ``upto``, group by group, each latest first (vLLM frees a range in
        descending order, its groups in order); the kept ones freed are returned (they become cached prefixes)."""
        lo = job.sliding_lo
        if upto <= lo:
            return []
        keys, private = self._keyed(job, lo, upto, descending=True)
        freed = self.pool.let_go(keys, private)
        job.sliding_lo = upto
        if self.prefix_caching:
            self.cache.resize_top(self.pool.unused)
        return freed

    def free(self, job: Job) -> None:
        """Free a job's blocks, its sliding groups' first (vLLM's group order: the first layer slides), each group's
        latest first, then the full group's, deepest first; the kept ones become cached prefixes (not the copies of
        blocks others held: theirs are)."""
        freed = self._let_go_sliding(job, job.sliding_hi)
        if self.prefix_caching and len(freed):
            self._return_to_cache(freed, copy_positions(job, len(freed)))
        job.sliding_lo = job.sliding_hi = job.sliding_seen = job.sliding_hit = 0
        job.sliding_step = -1
        job.sliding_keyed = ()
        super().free(job)


def merged(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Block ranges [start, end) as disjoint ones, in order (empty ones dropped)."""
    out: list[list[int]] = []
    for start, end in sorted(r for r in ranges if r[0] < r[1]):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return tuple((a, b) for a, b in out)
