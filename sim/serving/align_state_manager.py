"""vLLM 0.33's prefix caching of a Gated DeltaNet hybrid's states (mamba_cache_mode "align", its default with prefix
caching on), with its default ``prefix_cache_retention_interval`` 0 (``sim.serving.state_groups`` for the groups).

vLLM's code (v1/core/single_type_kv_cache_manager.py ``MambaManager``, v1/core/kv_cache_coordinator.py
``HybridKVCacheCoordinator``, v1/core/sched/scheduler.py ``_mamba_block_aligned_split``):

- A state group's table is position-indexed: block ``i`` holds the state after (i + 1) × block_size tokens. A request
  holds its running state block (index cdiv(tokens, block_size) - 1, the rest null), plus, for the step that moves
  it on, the block before (the hit's, or the last running one: freed at the next allocation, ``remove_skipped_blocks``
  with ``get_num_skipped_tokens`` = computed - 1), plus on the prompt's last chunk the internal checkpoint block
  (index cdiv(end, block_size) - 2) where the GDN prefill exports a mid-chunk state (FlashInfer on Hopper:
  ``is_mamba_prefill_checkpoint_valid``); at most 1 + checkpoint new blocks a step (``physical_block_cap``).
- States cached (``cache_blocks`` with ``reachable_block_mask``, retention 0): only the one ending at the prompt's
  replay boundary (``replay_boundaries``: prompt - 1, floored to a block) and the one at the shared-prefix junction
  (``shared_prefix_boundary``: where the full-attention hit ended when the state hit stopped short). No other state,
  in particular none at the end of what a request generated (the full group still caches its generated blocks).
- A hit (``find_longest_cache_hit``): the full group's prefix (short of the last token), cut back to the deepest
  block whose state every state group holds (right to left); past it the full group's blocks are allocated anew.
- Chunks (``_mamba_block_aligned_split``): one that does not reach the prompt's end ends at a block boundary (none
  this step when the budget reaches none), and a chunk stops at the junction; without internal checkpoints (Ampere:
  Triton GDN) it also stops at the replay boundary and at the next boundary when it starts inside a block.

Simplified: the step in flight is counted as computed when blocks are freed (vLLM frees on processed tokens under
asynchronous scheduling: a state block is held one step longer); a state cached in a lower tier serves a hit as one
in HBM would, short of a block-aligned prompt's last block (which a lower tier serves attention alone).

Cluster mode (``sim.cluster.fetch``): a prefix loaded from other locations at the request's admission (vLLM's KV
connector) is cut back as ``lookup`` cuts a hit, to the deepest block whose state every state group holds in this
instance's tiers or any shared one (``reachable_prefix``), never the block of the prompt's last token (vLLM's
OffloadingConnector beside Mamba groups); those states are loaded with its attention blocks, into the state blocks
its admission takes (``external_match``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from sim.serving.block_pool import BlockPool
from sim.serving.hybrid_kv_cache_manager import PastHitCopies, copy_positions
from sim.serving.job import Job
from sim.serving.kv_cache_manager import KVCacheManager, TieredCache
from sim.serving.prefix_match import PrefixMatch, prefix_hit, usable_prefix_blocks
from sim.serving.state_groups import states_held_alone
from sim.serving.state_transfer import RemoteStates


def checkpoint_position(tokens: int, block_size: int) -> int:
    """The last block boundary before the last of ``tokens`` (``get_mamba_prefill_checkpoint_position``)."""
    return max((tokens - 1) // block_size * block_size, 0)


def checkpoint_valid(start: int, end: int, position: int, block_size: int) -> bool:
    """Whether a chunk [start, end) exports the state at ``position`` (``is_mamba_prefill_checkpoint_valid``, the
    checkpoint alignment and the hash unit both the block size)."""
    return (start % block_size == 0 and -(-end // block_size) - 2 > (start - 1) // block_size
            and start + block_size <= position and start < position < end and (position - start) % block_size == 0)


def state_key_offsets(state_groups: int, key_offset: int) -> list[int]:
    """What each state group adds to a block's id to key the state after that block (group g: (g + 1) x
    ``key_offset``, past the trace's ids and each other's)."""
    return [(g + 1) * key_offset for g in range(state_groups)]


class AlignStateKVCacheManager(RemoteStates, PastHitCopies, KVCacheManager):
    """One attention group and ``state_groups`` state groups over one pool, with vLLM's align-mode prefix caching."""

    stepwise_windows = True

    def __init__(self, pool: BlockPool, cache: TieredCache, block_size: int, prefix_caching: bool,
                 clock: Callable[[], float], state_groups: int, key_offset: int, checkpoints: bool,
                 max_prefill_tokens: int):
        super().__init__(pool, cache, block_size, prefix_caching, clock)
        self.copies = state_groups
        self.offsets = state_key_offsets(state_groups, key_offset)  # state group g's key of block b
        self.checkpoints = checkpoints  # the GDN prefill exports internal checkpoints
        self.max_prefill_tokens = max_prefill_tokens
        self.groups_growing = 1 + state_groups

    # ------------------------------------------------------------- keys

    def _sequence_id(self, job: Job, i: int) -> int | None:
        """The id of ``job``'s sequence block ``i`` (prompt's full blocks, then generated ones), None past them."""
        if i >= job.input_tokens // self.block_size + len(job.generated_ids):
            return None
        return int(self._sequence_ids(job, i, i + 1)[0])

    def _state_keys(self, job: Job, i: int) -> list[int]:
        """Every state group's key of the state after block ``i`` (empty: the block has no id)."""
        b = self._sequence_id(job, i)
        return [] if b is None else [b + offset for offset in self.offsets]

    def _kept(self, job: Job) -> set[int]:
        """The state blocks whose states ``job`` caches: its replay boundary's, its junction's, its hit's."""
        kept = {(job.input_tokens - 1) // self.block_size - 1, job.state_junction - 1, job.sliding_hit - 1}
        return {i for i in kept if i >= 0}

    # ------------------------------------------------------------- lookups

    def lookup(self, job: Job) -> PrefixMatch:
        """The full group's prefix cut back to the deepest block whose state every state group holds; where that is
        shorter, the full group's end is the junction whose state the request caches."""
        admitting = not (job.held or job.anonymous or job.state_held)
        if not self.prefix_caching:
            if admitting:
                job.sliding_hit = job.state_junction = 0
            return PrefixMatch([], 0, {})
        bs = self.block_size
        chain, chain_tokens = self._sequence_chain(job)
        levels = self.prefix_levels(job, chain)
        full_hit, full_tokens = prefix_hit(levels, job.target, chain_tokens, bs)
        # (never a block-aligned prompt's last block, which a lower tier may serve attention alone: its last token is
        # recomputed, from a state a token earlier that no cache holds; vLLM's connector beside Mamba groups stops at
        # round_down(tokens - 1, block): offloading/scheduler.py _lookup_complete_chunks)
        hit, state_levels = self._deepest_state(job, min(full_hit, usable_prefix_blocks(job.target, bs)), self.find,
                                                self.find_each)
        tokens = full_tokens if hit == full_hit else hit * bs
        in_hbm = next((i for i, level in enumerate(levels) if level != 0), len(levels))  # (vLLM's GPU lookup)
        junction = min(full_hit, in_hbm, usable_prefix_blocks(job.target, bs))
        if admitting:
            job.sliding_hit = hit
            job.state_junction = junction if junction > hit else 0
            job.generated_hit = max(0, hit - job.input_tokens // bs) if chain_tokens > job.input_tokens else 0
        return PrefixMatch.of(levels[:hit], tokens, state_levels)

    def external_match(self, job: Job, blocks: int) -> PrefixMatch:
        """A prefix a KV connector will load at admission (``KVCacheManager.external_match``; the states after its
        last block were found with it, ``reachable_prefix``): the request's hit is that block, so admission takes every
        state group's block of it by its keys (as a hit's) and the states go straight into them; a junction at or
        before it is none."""
        match = super().external_match(job, blocks)
        if not (job.held or job.anonymous or job.state_held):
            job.sliding_hit = match.blocks
            if job.state_junction <= match.blocks:
                job.state_junction = 0
        return match

    def reachable_prefix(self, job: Job, limit: int, present: Callable[[int], int]) -> tuple[int, list[int]]:
        """A prefix a KV connector would load at admission (cluster mode: ``PrefixFetch._fetch_plan``): of its first
        ``limit`` attention blocks, those up to the deepest whose state every state group holds where ``present``
        finds it (-1: nowhere), as ``lookup`` cuts a hit, and never the block of the prompt's last token (vLLM's
        OffloadingConnector beside Mamba groups: its hit ends at round_down(tokens - 1, block), the state not being
        rewindable). Returns the blocks and the states' keys they need."""
        hit, _ = self._deepest_state(job, min(limit, usable_prefix_blocks(job.input_tokens, self.block_size)),
                                     present, getattr(present, "each", None))
        return hit, self._state_keys(job, hit - 1) if hit else []

    def _deepest_state(self, job: Job, blocks: int, present: Callable[[int], int],
                       each: Callable[[np.ndarray], np.ndarray] | None) -> tuple[int, list[int]]:
        """The deepest of ``job``'s first ``blocks`` blocks whose state every state group holds where ``present``
        finds it (-1: nowhere): (its end, the states' levels), or (0, []). ``each``: ``present`` of many keys in one
        compiled call (None: key by key, from the last block down), asked of the last 8 blocks, then of twice as many
        before those at each pass: a request keeps states at a few blocks only (``_kept``), so a prompt whose state
        lies deep, or nowhere, costs a few calls, not a lookup per block (a request waiting at the queue's head is
        looked up at every step)."""
        if each is None:
            for i in range(blocks - 1, -1, -1):
                here = [present(key) for key in self._state_keys(job, i)]
                if here and min(here) >= 0:
                    return i + 1, here
            return 0, []
        ids = np.asarray(self._sequence_ids(job, 0, blocks), dtype=np.int64)
        offsets = np.asarray(self.offsets, dtype=np.int64)
        hi, size = len(ids), 8
        while hi > 0:
            lo = max(0, hi - size)
            levels = each((ids[lo:hi, None] + offsets).ravel()).reshape(hi - lo, len(offsets))
            held = np.flatnonzero((levels >= 0).all(axis=1))
            if len(held):
                return lo + int(held[-1]) + 1, levels[held[-1]].tolist()
            hi, size = lo, 2 * size
        return 0, []

    def receive(self, job: Job, tokens: int) -> int:
        """``KVCacheManager.receive``: the full group's hit (``copies_from``), its blocks shared with whoever holds
        them, those past it new; no state hit (``sliding_hit`` 0; also clearing a ``local_hit`` that another decode
        instance found for the job and could not hold). vLLM's decode side (v1/core/kv_cache_manager.py
        ``get_computed_blocks_for_connector``) reports the full-attention group's hit as the local one; with the
        connector's tokens past it, ``allocate_slots`` (single_type_kv_cache_manager.py ``add_local_computed_blocks``)
        touches the full group's hit blocks (shared: a reference more, no new block) and skips the state group's
        (``MambaManager.get_num_skipped_tokens``: all but the last computed token), then
        ``allocate_external_computed_blocks`` takes new blocks for the rest and the running state block."""
        job.sliding_hit = job.state_junction = job.generated_hit = 0
        return super().receive(job, tokens)

    def local_hit(self, job: Job, present: int) -> int:
        """PD's decode side holding every block the prefill side would send (``sim.serving.state_transfer``): of its
        HBM hit of ``present`` blocks, those up to the deepest whose state every state group holds here (vLLM's
        ``get_computed_blocks``), the junction past them; returns how many."""
        hit = next((i + 1 for i in range(present - 1, -1, -1)
                    if all(self.find(key) == 0 for key in self._state_keys(job, i))), 0)
        job.sliding_hit, job.state_junction, job.generated_hit = hit, present if present > hit else 0, 0
        job.copies_from = hit  # (the full group's blocks past the agreed hit are computed again, into new blocks)
        return hit

    # ------------------------------------------------------------- chunks

    def split_chunk(self, job: Job, start: int, tokens: int) -> int:
        """``_mamba_block_aligned_split``: the chunk from ``start`` ends at a block boundary unless it reaches the
        prompt's end, and stops at the junction (and without internal checkpoints at the replay boundary)."""
        bs = self.block_size
        prefill_end = max(job.input_tokens, job.target - 1)
        if start >= prefill_end:
            return tokens
        end = start + tokens
        last_cache = checkpoint_position(job.target, bs)
        internal = (self.checkpoints and end >= prefill_end
                    and checkpoint_valid(start, end, checkpoint_position(prefill_end, bs), bs))
        if internal:
            last_cache = 0
        if end < prefill_end:
            aligned = end // bs * bs
            if aligned > start or bs <= self.max_prefill_tokens:
                end = aligned
        junction = job.state_junction * bs
        stops = ((start // bs + 1) * bs if start % bs and not internal else 0, last_cache,
                 start + (junction - start) // bs * bs if start < junction < end else 0)
        end = min((s for s in stops if start < s < end), default=end)
        return max(end - start, 0)

    # ------------------------------------------------------------- state blocks

    def _checkpoint(self, job: Job, start: int, end: int) -> bool:
        """Whether the chunk [start, end) takes an internal checkpoint block (``_needs_internal_checkpoint``)."""
        bs = self.block_size
        if not self.checkpoints or end < max(job.input_tokens, job.target - 1):
            return False
        index = -(-end // bs) - 2
        return (index >= 0 and checkpoint_valid(start, end, checkpoint_position(end, bs), bs)
                and (index >= job.state_len or all(i != index for i, _ in job.state_idx)))

    def _plan(self, job: Job, tokens: int) -> tuple[int, list[tuple[int, bool]], list[tuple[int, bool]]]:
        """(start, state blocks freed, state blocks taken) growing ``job`` to ``tokens`` tokens: those before the
        running state of its computed tokens go first; then the running block and the checkpoint's."""
        bs, computed = self.block_size, job.computed
        start = computed if job.state_held else max(computed, job.sliding_hit * bs)
        held = job.state_idx if job.state_held else (((job.sliding_hit - 1, True),) if job.sliding_hit else ())
        upto = (start - 1) // bs if start > 0 else 0
        freed = [entry for entry in held if entry[0] < upto]
        need = -(-tokens // bs)
        length = job.state_len if job.state_held else job.sliding_hit
        kept = self._kept(job)
        taken = []
        if self._checkpoint(job, start, tokens):
            taken.append((need - 2, need - 2 in kept))
        if need > length:
            taken.append((need - 1, need - 1 in kept))
        return start, freed, taken

    def _unchanged(self, job: Job, tokens: int) -> bool:
        """Whether growing ``job`` to ``tokens`` tokens takes and frees no block (most decode steps)."""
        if not job.state_held or len(job.state_idx) != 1:
            return False
        bs = self.block_size
        want = -(-tokens // bs)
        if want > job.state_len or tokens < job.target:
            return False
        prompt = len(job.blocks)
        return want <= job.held if want <= prompt else job.held == prompt and want - prompt <= job.anonymous

    def _state_fresh(self, job: Job, entries: Sequence[tuple[int, bool]], taken: bool) -> int:
        """Pool blocks holding ``entries`` takes (``taken``: a hit's, found by key) or frees (the last holder's)."""
        count = 0
        refs = self.pool.refs
        for i, keyed in entries:
            keys = self._state_keys(job, i) if keyed and self.pool.shared else []
            if not keys:
                count += self.copies
            elif taken:
                count += sum(1 for key in keys if key not in refs)
            else:
                count += sum(1 for key in keys if refs.get(key, 1) == 1)
        return count

    def holds(self, job: Job, tokens: int) -> bool:
        """Never known here: every allocation may move the job's other groups' blocks."""
        return False

    def new_blocks(self, job: Job, tokens: int) -> int:
        """Pool blocks growing ``job`` to ``tokens`` tokens takes, less the state blocks it lets go first."""
        if self._unchanged(job, tokens):
            return 0
        _, freed, taken = self._plan(job, tokens)
        hit = 0 if job.state_held or not job.sliding_hit else self._state_fresh(job, ((job.sliding_hit - 1, True),),
                                                                                True)
        released = self._state_fresh(job, [e for e in freed if job.state_held], False)
        return self._full_new_blocks(job, tokens) + hit + self.copies * len(taken) - released

    def admission_before_lookup(self, job: Job, full_sequence: bool) -> int | None:
        """Never known before the lookup here: the hit's blocks change what the other groups take."""
        return None

    def admission_blocks(self, job: Job, tokens: int, full_sequence: bool) -> int:
        """Blocks admitting ``job`` takes for its first ``tokens`` tokens; with ``full_sequence`` at least its whole
        sequence's attention blocks with the same state blocks."""
        chunk = self.new_blocks(job, tokens)
        if not full_sequence:
            return chunk
        return max(chunk, chunk - self._full_new_blocks(job, tokens) + self._full_new_blocks(job, job.target))

    def blocks_alone(self, tokens: int) -> int:
        """Blocks a request of ``tokens`` tokens holds at most alone: its attention blocks and its states
        (``states_held_alone``: a hit's, a running and a checkpoint block in each state group)."""
        return -(-tokens // self.block_size) + states_held_alone(self.copies, True, self.checkpoints)

    def allocate(self, job: Job, tokens: int) -> None:
        """Grow ``job`` to ``tokens`` tokens: its state blocks before the running one go (kept ones cached), its
        hit's state is taken, its running (and checkpoint) state blocks and its attention blocks are allocated."""
        if self._unchanged(job, tokens):
            return
        _, freed, taken = self._plan(job, tokens)
        fresh: list[int] = []
        if not job.state_held:
            held = []
            if job.sliding_hit:
                hit = (job.sliding_hit - 1, True)
                fresh += self._hold_states(job, [hit])
                held.append(hit)
            job.state_held, job.state_len = True, job.sliding_hit
        else:
            held = list(job.state_idx)
        gone = self._let_go_states(job, freed)
        held = [e for e in held if e not in freed]
        fresh += self._hold_states(job, taken)
        job.state_idx = tuple(sorted(held + taken))
        job.state_len = max(job.state_len, -(-tokens // self.block_size))
        prompt, private = self.blocks_for(job, tokens)
        grow = private - job.anonymous if private > job.anonymous else 0
        fresh += self._hold_full(job, prompt, grow)
        job.held = max(job.held, prompt)
        job.anonymous += grow
        if self.prefix_caching:
            self._return_to_cache(gone, copy_positions(job, len(gone)))
            self._take_cached(fresh)
            if job.generated_hit:
                self._take_cached(job.generated_ids[:job.generated_hit])
                job.generated_hit = 0
            self.cache.resize_top(self.pool.unused)
            self._charge_writes()

    def _hold_states(self, job: Job, entries: Sequence[tuple[int, bool]]) -> list[int]:
        """Hold ``entries`` in every state group: a kept one by its keys (a key another request holds, computed
        again, is a private copy), the others privately. Returns the keys newly taken."""
        keys, private = [], 0
        refs = self.pool.refs
        for i, keyed in entries:
            ks = self._state_keys(job, i) if keyed else []
            if not ks or (i != job.sliding_hit - 1 and any(k in refs for k in ks)):
                private += self.copies
            else:
                keys += ks
        return list(self.pool.hold(keys, private))

    def _let_go_states(self, job: Job, entries: Sequence[tuple[int, bool]]) -> list[int]:
        """Let go of ``entries`` (latest first) in every state group; returns the kept keys freed."""
        keys, private = [], 0
        for i, keyed in sorted(entries, reverse=True):
            ks = self._state_keys(job, i) if keyed else []
            if ks and all(k in self.pool for k in ks):
                keys += ks
            else:
                private += self.copies
        return list(self.pool.let_go(keys, private))

    def free(self, job: Job) -> None:
        """Free a job's state blocks (the kept ones become cached states), then its attention blocks."""
        if job.state_held:
            gone = self._let_go_states(job, job.state_idx)
            if self.prefix_caching and gone:
                self.cache.resize_top(self.pool.unused)
                self._return_to_cache(gone, copy_positions(job, len(gone)))
        job.state_held, job.state_len, job.state_idx, job.state_junction = False, 0, (), 0
        job.sliding_hit = 0
        super().free(job)

    # ------------------------------------------------------------- decode windows

    def window_blocks(self, job: Job, steps: int) -> int:
        """At most the blocks ``steps`` more decode tokens take: each attention block joining brings a state block
        in each group (the one before is let go a step later)."""
        return super().window_blocks(job, steps) * (1 + self.copies)

    def window_changes(self, jobs: Sequence[Job], computed: Sequence[int], steps: int) -> dict[int, list[int]]:
        """The later steps of a window at which a job's blocks change: a block joins as its tokens cross a block
        boundary, the state block before leaves at the next step."""
        bs = self.block_size
        changes: dict[int, list[int]] = {}
        for index, c in enumerate(computed):
            joins = range(-c % bs or bs, steps, bs)
            for s in {*joins, *(j + 1 for j in joins if j + 1 < steps)}:
                changes.setdefault(s, []).append(index)
        for indices in changes.values():
            indices.sort()
        return changes

    def window_step(self, jobs: Sequence[Job], computed: Sequence[int], step: int, indices: Sequence[int]) -> None:
        """A window's step ``step`` starts: ``indices``' jobs allocate its token as a single step would."""
        for index in indices:
            job, c = jobs[index], computed[index]
            job.computed = c + step
            self.allocate(job, c + step + 1)
            job.computed = c

    def end_window(self, jobs: Sequence[Job], computed: Sequence[int], steps: int) -> None:
        """Nothing to settle: each step allocated as it started."""
