"""LRU miss-ratio curves in one pass: Mattson stack distances, optionally SHARDS-sampled.

Mattson et al., "Evaluation techniques for storage hierarchies" (IBM Systems Journal,
1970): an access hits an LRU cache of C blocks iff its stack distance (1 + distinct
blocks used since the previous use of the same block) is at most C, so one pass gives
the hit ratio at every capacity.

Computing distances (compiled, O(N log N)): a mark at the last use of every block seen so
far, counted by a Fenwick tree over stream positions. For a reuse at t whose previous use is
p, the distinct blocks used in (p, t) are the marks after p: all marks (the distinct blocks
seen) minus the prefix count up to p. The mark then moves from p to t.

SHARDS (Waldspurger et al., "Efficient MRC Construction with SHARDS", FAST 2015):
keep only accesses whose key hashes below rate R, compute distances on that
substream and scale them by 1/R; the ``adj`` correction adds the gap between the
expected and actual sample sizes to the smallest distance bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.jit import njit
from trace.blocks import splitmix64
from trace.request import BLOCK_ID_DTYPE, KEY_LIMIT

NO_REUSE = np.iinfo(np.int64).max
SHARDS_MODULUS = 1 << 24


_M1, _M2, _M4, _H01 = (np.uint64(0x5555555555555555), np.uint64(0x3333333333333333),
                      np.uint64(0x0F0F0F0F0F0F0F0F), np.uint64(0x0101010101010101))
BLOCK_BITS = 9  # positions per Fenwick node: 512 (8 words of the bit set, one cache line)


@njit(inline="always")
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return np.int64((x * _H01) >> np.uint64(56))


@njit(inline="always")
def _marks_up_to(bits, tree, p):
    """Marks at positions <= ``p``: a Fenwick walk over whole 512-position blocks, then the popcounts of at
    most 8 words."""
    block = p >> BLOCK_BITS
    before = 0
    i = block
    while i > 0:
        before += tree[i]
        i -= i & -i
    word = p >> 6
    for w in range(block << (BLOCK_BITS - 6), word):
        before += _popcount(bits[w])
    shift = np.uint64(p & 63)
    return before + _popcount(bits[word] & ((np.uint64(2) << shift) - np.uint64(1)))


@njit(inline="always")
def _move_mark(bits, tree, blocks, p, t):
    """Move a key's mark from position ``p`` (none if negative) to ``t``."""
    one = np.uint64(1)
    if p >= 0:
        bits[p >> 6] &= ~(one << np.uint64(p & 63))
        i = (p >> BLOCK_BITS) + 1
        while i <= blocks:
            tree[i] -= 1
            i += i & -i
    bits[t >> 6] |= one << np.uint64(t & 63)
    i = (t >> BLOCK_BITS) + 1
    while i <= blocks:
        tree[i] += 1
        i += i & -i


@njit(cache=True)
def _fenwick_distances(keys: np.ndarray, last: np.ndarray, out: np.ndarray) -> int:
    """Stack distance of every access of ``keys`` into ``out``; returns the number of distinct
    keys. ``last`` (-1 for each key id: int32 when positions fit, half the memory traffic) holds
    each key's last position.

    The marks are a bit set over positions; a Fenwick tree counts them per block of 512
    positions, so it stays small enough to live in cache, and a prefix count is a tree walk
    plus the popcounts of at most 8 words.
    """
    n = len(keys)
    bits = np.zeros((n >> 6) + 1, dtype=np.uint64)
    blocks = (n >> BLOCK_BITS) + 1
    tree = np.zeros(blocks + 1, dtype=np.int64)  # 1-based: node b counts marks of blocks (b - lowbit(b), b]
    distinct = 0
    for t in range(n):
        k = keys[t]
        p = last[k]
        if p < 0:
            out[t] = NO_REUSE
            distinct += 1
        else:
            out[t] = distinct - _marks_up_to(bits, tree, p) + 1
        _move_mark(bits, tree, blocks, p, t)
        last[k] = t
    return distinct


@njit(cache=True)
def _prefix_distances(keys: np.ndarray, offsets: np.ndarray, last: np.ndarray, out: np.ndarray) -> int:
    """Under prefix semantics (``cache.access_semantics=prefix``: a request reads its longest cached prefix, then
    touches all its blocks deepest first), the smallest LRU capacity at which each access hits: the largest stack
    distance, at the request's lookup, of its block and every block before it in the prompt (``NO_REUSE`` when one
    was never used). The touches do not depend on the capacity, so LRU's inclusion property holds and a block is
    cached at capacity C iff its distance is at most C. Returns the number of distinct keys."""
    n = len(keys)
    bits = np.zeros((n >> 6) + 1, dtype=np.uint64)
    blocks = (n >> BLOCK_BITS) + 1
    tree = np.zeros(blocks + 1, dtype=np.int64)
    distinct = 0
    t = 0
    for r in range(len(offsets) - 1):
        lo, hi = offsets[r], offsets[r + 1]
        worst = 0
        for j in range(lo, hi):  # the lookups: nothing moves
            p = last[keys[j]]
            if p < 0 or worst == NO_REUSE:
                worst = NO_REUSE
            else:
                worst = max(worst, distinct - _marks_up_to(bits, tree, p) + 1)
            out[j] = worst
        for j in range(hi - 1, lo - 1, -1):  # the touches, deepest first
            k = keys[j]
            p = last[k]
            if p < 0:
                distinct += 1
            _move_mark(bits, tree, blocks, p, t)
            last[k] = t
            t += 1
    return distinct


def _distances(stream: np.ndarray, offsets: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """(stack distances, distinct keys) of ``stream``; with ``offsets`` (each request's prompt in ``stream``, CSR),
    the prefix semantics' distances (``_prefix_distances``)."""
    stream = np.asarray(stream)
    out = np.empty(len(stream), dtype=np.int64)
    if not len(stream):
        return out, 0
    low, high = int(stream.min()), int(stream.max())
    if low < 0 or high >= 2 * len(stream) + 1024:  # sparse ids: make them dense first
        stream = np.unique(stream, return_inverse=True)[1].reshape(-1)
        high = int(stream.max())
    # int32 keys, as a trace holds its block ids (no copy of its stream; int64 only for 2**31 distinct keys)
    stream = np.ascontiguousarray(stream, dtype=BLOCK_ID_DTYPE if high < KEY_LIMIT else np.int64)
    last = np.full(high + 1, -1, dtype=np.int32 if len(stream) < 2**31 else np.int64)
    if offsets is None:
        return out, _fenwick_distances(stream, last, out)
    return out, _prefix_distances(stream, np.ascontiguousarray(offsets, dtype=np.int64), last, out)


def stack_distances(stream: np.ndarray) -> np.ndarray:
    """LRU stack distance of every access (``NO_REUSE`` for first uses)."""
    return _distances(stream)[0]


@dataclass(frozen=True)
class MissRatioCurve:
    """LRU hit ratio at each capacity (blocks), from exact or sampled stack distances."""

    capacities: np.ndarray
    hit_ratios: np.ndarray
    sample_rate: float
    accesses: int
    sampled_accesses: int

    def hit_ratio_at(self, capacity: int) -> float:
        """Hit ratio at ``capacity`` (step function: the largest grid point not above it)."""
        i = np.searchsorted(self.capacities, capacity, side="right") - 1
        return float(self.hit_ratios[i]) if i >= 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "method": "exact" if self.sample_rate >= 1.0 else "shards",
            "sample_rate": self.sample_rate,
            "accesses": self.accesses,
            "sampled_accesses": self.sampled_accesses,
            "capacity_blocks": self.capacities.tolist(),
            "hit_ratio": self.hit_ratios.tolist(),
        }


def capacity_grid(max_capacity: int, points: int = 200, extra: tuple[int, ...] = ()) -> np.ndarray:
    """About ``points`` capacities spaced geometrically from 1 to ``max_capacity``, plus ``extra``."""
    grid = np.unique(np.round(np.geomspace(1, max(1, max_capacity), points)).astype(np.int64))
    return np.unique(np.concatenate([grid, np.asarray(extra, dtype=np.int64)]))


def lru_mrc(stream: np.ndarray, sample_rate: float = 1.0, capacities: np.ndarray | None = None,
            salt: int = 0, offsets: np.ndarray | None = None) -> MissRatioCurve:
    """The LRU miss-ratio curve of ``stream`` (exact when ``sample_rate`` is 1); with ``offsets`` (each request's
    prompt in ``stream``, CSR) under prefix semantics, exact only: a sample would drop blocks a prefix hit needs."""
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError(f"sample rate must be in (0, 1], got {sample_rate}")
    if offsets is not None and sample_rate < 1.0:
        raise ValueError("a prefix-semantics curve is exact only (sample rate 1)")
    stream = np.asarray(stream)
    n = len(stream)
    sampled = stream
    if sample_rate < 1.0:
        hashed = splitmix64(stream.astype(np.uint64) ^ np.uint64(salt)) % np.uint64(SHARDS_MODULUS)
        sampled = stream[hashed < np.uint64(int(sample_rate * SHARDS_MODULUS))]
    distances, distinct = _distances(sampled, offsets)
    finite = distances[distances != NO_REUSE]
    scaled = np.ceil(finite / sample_rate).astype(np.int64) if sample_rate < 1.0 else finite
    if capacities is None:
        capacities = capacity_grid(int(distinct / sample_rate) if len(sampled) else 1)
    capacities = np.asarray(capacities, dtype=np.int64)
    at_most = np.cumsum(np.bincount(scaled, minlength=1))  # at_most[d]: accesses with distance <= d
    hits_at = at_most[np.clip(capacities, 0, len(at_most) - 1)].astype(np.float64)
    total = float(len(sampled))
    if sample_rate < 1.0:
        # SHARDS-adj: correct for the sample holding more or fewer accesses than n·R.
        expected = n * sample_rate
        hits_at = hits_at + (expected - total)
        total = expected
    ratios = np.clip(hits_at / total, 0.0, 1.0) if total > 0 else np.zeros(len(capacities))
    return MissRatioCurve(capacities, ratios, sample_rate, n, len(sampled))
