"""A request's state on one instance (vLLM's ``Request`` as the scheduler sees it).

Only requests in flight have a ``Job``; what a run keeps of a request after it leaves is
in the run's ``RequestTable`` (``sim.report.metrics``), indexed by ``rid``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(slots=True, eq=False)
class Job:
    """Token progress of a request on one instance and the KV blocks it holds there."""

    rid: int  # request id: its row in the run's request table
    input_tokens: int
    output_tokens: int  # at least 1
    blocks: Sequence[int]  # prompt block ids (prefix-chained); a range when no block can be shared
    position: int  # stream position of the prompt's first block (for clairvoyant policies)
    target: int  # tokens whose KV must exist before the next token: prompt (+ generated, after preemption)
    computed: int = 0  # tokens with KV on this instance
    generated: int = 0  # output tokens produced so far
    held: int = 0  # prompt blocks held (blocks[:held] are in the block pool's reference counts)
    anonymous: int = 0  # blocks past the prompt's (generated tokens)
    admitted_once: bool = False
    read_at: float = 0.0  # when its (current) instance's engine reads it: at arrival, or when the step in flight ends
    order: int = 0  # when it last joined its instance's running batch (vLLM's place in ``Scheduler.running``)
    last_token_time: float = math.nan
    chain: np.ndarray | None = None  # ``blocks`` as an array (the cache's chain operations take it without a copy)
    # A hybrid model's sliding-window groups (``HybridKVCacheManager``): the blocks they hold are [sliding_lo,
    # sliding_hi) (those before left the window); ``sliding_keyed``: ranges of prompt blocks whose sliding copies
    # are kept as cached prefixes when let go (vLLM hashes only these); ``sliding_seen``: the computed tokens the
    # manager saw at the allocation before (asynchronous scheduling frees a step late)
    sliding_lo: int = 0
    sliding_hi: int = 0
    sliding_keyed: tuple[tuple[int, int], ...] = ()
    sliding_seen: int = 0
    sliding_step: int = -1  # the step whose plan made that allocation (its tokens are in flight at the next one)
    sliding_hit: int = 0  # prompt blocks its (last) prefix hit served, leading null blocks included
    window_sent: int = 0  # (PD decode side) blocks each sliding group was sent (``HybridKVCacheManager.sent_blocks``)
    # prompt blocks past the hit it holds as copies of its own, another request holding the block (past
    # ``copies_from``; the hybrid managers, where it is -1, past ``sliding_hit``)
    prompt_copies: tuple[int, ...] = ()
    # past this many prompt blocks, its (full-attention) hit on a PD decode instance, a block another request holds
    # is taken as a copy of its own (vLLM allocates new blocks past a hit); -1: blocks are shared as found (a hybrid
    # manager: as far as ``sliding_hit``)
    copies_from: int = -1
    # ids of the full blocks its generated tokens fill (the prompt's partial last block completed first): cached
    # when it lets them go, as vLLM caches every full block (``trace.continuations``); empty: kept private
    generated_ids: Sequence[int] = ()
    generated_hit: int = 0  # of them, the blocks its last lookup found cached (after a preemption; taken at allocation)
    state_held: bool = False  # (Gated DeltaNet hybrid) it holds its block in each state group (StateKVCacheManager)
    # (Gated DeltaNet hybrid, prefix caching: AlignStateKVCacheManager) vLLM's state-table length in each state group
    # (position-indexed, nulls included), the (block index, kept) state blocks it holds in each (kept: its state is
    # cached when let go), and the shared-prefix junction (blocks) whose state it caches
    state_len: int = 0
    state_idx: tuple[tuple[int, bool], ...] = ()
    state_junction: int = 0

    @property
    def prompt_ids(self) -> Sequence[int]:
        """The prompt's block ids in the form the cache takes cheapest: the array when there is one."""
        return self.chain if self.chain is not None else self.blocks
