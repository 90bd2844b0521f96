"""Small harness for cache tests: build a cache over given tiers and record what it evicts."""

from __future__ import annotations

import numpy as np

from sim.cache.access import next_use_index
from sim.cache.multitier import MultiTierCache
from sim.cache.policies import make_policy
from sim.cache.tiers import Tier


def make_cache(policy: str, capacities: list[int], stream=None, inclusive: bool = False) -> MultiTierCache:
    """Tiers of ``policy``; clairvoyant and learned policies get the stream's true next uses
    (learned policies thus see a perfect predictor)."""
    next_use = next_use_index(np.asarray(stream)) if stream is not None else None
    predicted = None if next_use is None else np.minimum(next_use, 10 * len(next_use) + 10).astype(np.float64)
    names = ["hbm", "dram", "ssd", "eic"]
    tiers = [Tier(names[i], cap, make_policy(policy, cap, next_use, predicted), 1.0, 1.0, 0.0)
             for i, cap in enumerate(capacities)]
    return MultiTierCache(tiers, block_bytes=1, inclusive=inclusive, track_positions=next_use is not None and len(tiers) > 1)


def evictions(policy: str, capacity: int, stream: list[int]) -> tuple[list[int], list[bool]]:
    """Blocks evicted, in order, and hit/miss per access, replaying ``stream`` through one tier."""
    cache = make_cache(policy, [capacity], stream)
    out, hits = [], []
    for now, key in enumerate(stream):
        before = set(cache.tiers[0].resident)
        hits.append(cache.touch(key, now) >= 0)
        out.extend(sorted(before - cache.tiers[0].resident))
    return out, hits


def plain_hits(policy: str, capacities: list[int], stream, inclusive: bool = False) -> tuple[int, MultiTierCache]:
    stream = np.asarray(stream, dtype=np.int64)
    cache = make_cache(policy, capacities, stream, inclusive)
    hit_tier = np.full(len(stream), -1, dtype=np.int8)
    cache.replay(stream, np.arange(len(stream) + 1), hit_tier, 0, len(stream), prefix=False)
    return int((hit_tier >= 0).sum()), cache
