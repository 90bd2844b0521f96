"""Small harness for cache tests: build a compiled cache (or the reference one) over given tiers
and record what it evicts."""

from __future__ import annotations

import numpy as np

from sim.cache.access import next_use_index
from sim.cache.arena import TierArena
from sim.cache.arena_layout import KEY, PIN, PLACE
from sim.cache.hooked import HookedMultiTierCache
from sim.cache.multitier import build_cache
from sim.cache.tiers import new_tier
from tests.reference import REFERENCE

NAMES = ["hbm", "dram", "ssd", "eic"]


def oracle_inputs(stream) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The stream's true next uses, for clairvoyant policies, and as a learned policy's (perfect) predictions."""
    if stream is None:
        return None, None
    next_use = next_use_index(np.asarray(stream, dtype=np.int64))
    return next_use, np.minimum(next_use, 10 * len(next_use) + 10).astype(np.float64)


def make_tiers(policies: list[str], capacities: list[int], stream=None, num_blocks: int = 64,
               arena: TierArena | None = None, names: list[str] | None = None):
    next_use, predicted = oracle_inputs(stream)
    arena = arena or TierArena(future=next_use, max_keys=num_blocks)
    names = names or NAMES
    # a tier per policy: spare capacities are unused (test_arena draws four for two to four policies)
    return [new_tier(arena, names[i], policy, cap, 1.0, 1.0, 0.0, next_use, predicted)
            for i, (policy, cap) in enumerate(zip(policies, capacities, strict=False))]


def make_cache(policy: str | list[str], capacities: list[int], stream=None, inclusive: bool = False,
               reference: bool = False, num_blocks: int = 64):
    """Tiers of ``policy`` (one name, or one per tier), compiled; ``reference``: the pure-Python
    reference policies on the generic path instead. Clairvoyant and learned policies get the
    stream's true next uses (learned policies thus see a perfect predictor)."""
    policies = [policy] * len(capacities) if isinstance(policy, str) else policy
    if stream is not None:
        num_blocks = max(num_blocks, int(np.max(stream)) + 1)
    tiers = make_tiers(policies, capacities, stream, num_blocks)
    track = stream is not None and len(tiers) > 1
    if reference:
        next_use, _ = oracle_inputs(stream)
        hooks = [REFERENCE[p](cap, next_use=next_use) if REFERENCE[p].needs_future else REFERENCE[p](cap)
                 for p, cap in zip(policies, capacities, strict=False)]  # a hook per tier, as make_tiers
        return HookedMultiTierCache(tiers, 1, inclusive, track, hooks=hooks)
    return build_cache(tiers, 1, inclusive, track, num_blocks)


def evictions(policy: str, capacity: int, stream: list[int]) -> tuple[list[int], list[bool]]:
    """Blocks evicted, in order, and hit/miss per access, replaying ``stream`` through one tier."""
    cache = make_cache(policy, [capacity], stream)
    out, hits = [], []
    for now, key in enumerate(stream):
        before = cache.resident(0)
        hits.append(cache.touch(key, now) >= 0)
        out.extend(sorted(before - cache.resident(0)))
    return out, hits


def plain_hits(policy: str, capacities: list[int], stream, inclusive: bool = False):
    stream = np.asarray(stream, dtype=np.int64)
    cache = make_cache(policy, capacities, stream, inclusive)
    hit_tier = np.full(len(stream), -1, dtype=np.int8)
    cache.replay(stream, np.arange(len(stream) + 1), hit_tier, 0, len(stream), prefix=False)
    return int((hit_tier >= 0).sum()), cache


def tier_state(cache) -> tuple:
    """The blocks of each tier, top down."""
    return tuple(frozenset(cache.resident(i)) for i in range(len(cache.tiers)))


def pinned_keys(cache) -> list[int]:
    """The blocks pinned in the arena of a compiled cache's tiers (held by a prefix replay's request), sorted (a
    free slot, KEY -1, may keep a stale pin bit: ``alloc_slot`` clears it)."""
    slots = cache.tiers[0].arena.state.slots
    return sorted(int(k) for k in slots[((slots[:, PLACE] & PIN) != 0) & (slots[:, KEY] >= 0), KEY])


def tier_stats(cache) -> list[dict]:
    """Each tier's counters."""
    return [t.stats.to_dict() for t in cache.tiers]


def apply_operation(cache, op: str, arg: int, now: int) -> int:
    """A serving-like operation: a use (``touch``), a running request taking a block (``take``) or letting it go
    (``free``: its content is in HBM, a lower copy moves up unread), or the top tier resized (``resize``: shrunk, or
    grown back to at most its built capacity)."""
    if op == "touch":
        return cache.touch(arg, now)
    if op == "take":
        return cache.take(arg)
    if op == "free":
        return int(cache.touch_chain([arg], [now], freed=True)[0])
    cache.resize_top(min(arg, cache.tiers[0].arena.built_capacity(cache.tiers[0].index)))
    return 0
