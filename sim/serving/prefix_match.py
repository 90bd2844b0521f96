"""What a prompt's lookup finds, as vLLM v1 counts it: the blocks of its longest cached prefix a request can use
(``usable_prefix_blocks``, ``prefix_hit``: whole blocks, short of the last token, a last block from a lower tier
loaded and recomputed) and the match a lookup hands the scheduler (``PrefixMatch``: each block's tier, the blocks to
read from each lower tier). Shared by the instance's KV-cache managers (``sim.serving.kv_cache_manager`` and its
hybrid and aligned-state variants) and the cluster's connector (``sim.cluster.fetch``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


def usable_prefix_blocks(tokens: int, block_size: int) -> int:
    """The most blocks of this instance's HBM a request of ``tokens`` tokens (prompt, plus output after a
    preemption) can use: vLLM's ``get_computed_blocks`` caps the hit at ``tokens - 1`` (the last token is
    computed again for its logits) and counts only whole blocks, so e.g. 32 tokens in blocks of 16 use 1 cached
    block, 33 use 2."""
    return max(0, tokens - 1) // block_size


def prefix_hit(levels: Sequence[int], tokens: int, prompt_tokens: int, block_size: int,
               external: int = 0) -> tuple[int, int]:
    """(blocks, tokens) a request of ``tokens`` tokens takes from its prompt's matched prefix (``levels``: the tier
    of each matched block, 0 for HBM), as vLLM v1 finds them: only the full blocks of the ``prompt_tokens`` looked up
    (the prompt's; after a preemption, with what the request generated); HBM blocks up to
    ``usable_prefix_blocks``; a lower tier
    (an offloading KV connector, e.g. vLLM's ``OffloadingConnector.get_num_new_matched_tokens``) serves whole
    blocks up to ``tokens // block_size``, so a last block it holds is loaded, and when every token is then
    computed the scheduler recomputes the last one (``Scheduler._update_waiting_for_remote_kv``:
    ``num_computed_tokens -= 1``). A partial last block never hits. ``external``: the prompt's first blocks that a KV
    connector loads into HBM at the request's admission (the cluster's fetch, ``PrefixFetch._connect``, counted by
    ``external_match``); a last block among them is served by the lower tier it comes from. Only that admission: a
    request preempted later is looked up again as a new one (vLLM's ``_preempt_request`` sets num_computed_tokens to
    0, and its next admission asks ``get_computed_blocks`` and the connector afresh, as kvsim's does), so a last block
    it loaded and HBM still holds is served again only from a copy below (``_last_block_from_below``) or at another
    location (the connector's load again), else recomputed."""
    levels = levels[: prompt_tokens // block_size]
    usable = min(len(levels), usable_prefix_blocks(tokens, block_size))
    if (usable < len(levels) and usable * block_size + block_size == tokens
            and (levels[usable] > 0 or usable < external)):
        return usable + 1, tokens - 1
    return usable, usable * block_size


@dataclass(slots=True)
class PrefixMatch:
    """The longest cached prefix of a prompt."""

    tier_of_each: list[int]  # tier index of each matched block, top first (0: HBM, in use or cached)
    tokens: int  # prompt tokens it serves (``prefix_hit``: short of the last token)
    to_load: dict[int, int]  # lower tier index -> blocks to read from it (``KVCacheManager.load``)
    copies_to_load: dict[int, int] = field(default_factory=dict)  # lower tier index -> a hybrid's copies to read

    @property
    def blocks(self) -> int:
        return len(self.tier_of_each)

    @classmethod
    def of(cls, served: list[int], tokens: int, also_loaded: Sequence[int] = ()) -> PrefixMatch:
        """The match of the blocks at tiers ``served``; a lower tier's block is read from it, as is each of
        ``also_loaded`` (the tiers of copies a hybrid model's other groups read beside them)."""
        return cls(served, tokens, _per_tier(served), _per_tier(also_loaded))


def _per_tier(levels: Sequence[int]) -> dict[int, int]:
    """How many of ``levels`` each lower tier holds."""
    if not len(levels) or max(levels) <= 0:  # (most matches: every block in HBM)
        return {}
    # (counted in C, first seen first, as a loop adding each level > 0 would order them: a request's prompt of
    # thousands of blocks is matched at every step it waits at the queue's head)
    return {level: n for level, n in Counter(levels).items() if level > 0}
