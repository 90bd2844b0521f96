"""LRU miss-ratio curves in one pass: Mattson stack distances, optionally SHARDS-sampled.

Mattson et al., "Evaluation techniques for storage hierarchies" (IBM Systems Journal,
1970): an access hits an LRU cache of C blocks iff its stack distance (1 + distinct
blocks used since the previous use of the same block) is at most C, so one pass gives
the hit ratio at every capacity.

Computing distances: for a reuse at t whose previous use is p, the blocks used in
(p, t) number (t − p − 1) minus the repeats among them, and a repeat at j is exactly a
reuse with p < prev(j) (with j < t). So distance(t) = t − p − R(t), where R(t) counts
earlier reuses j whose prev(j) > prev(t): a per-element inversion count over the
``prev`` values of the reuse accesses. A bottom-up merge sort counts it in
O(n log n); each level merges all row pairs at once with numpy's stable sort (timsort
merges two sorted runs in linear time), so there is no Python loop per access.

SHARDS (Waldspurger et al., "Efficient MRC Construction with SHARDS", FAST 2015):
keep only accesses whose key hashes below rate R, compute distances on that
substream and scale them by 1/R; the ``adj`` correction adds the gap between the
expected and actual sample sizes to the smallest distance bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trace.blocks import splitmix64

NO_REUSE = np.iinfo(np.int64).max
SHARDS_MODULUS = 1 << 24


def previous_use(stream: np.ndarray) -> np.ndarray:
    """For each position, the position of the previous access to the same key, or -1."""
    stream = np.asarray(stream)
    order = np.argsort(stream, kind="stable")
    prev = np.full(len(stream), -1, dtype=np.int64)
    same = stream[order[1:]] == stream[order[:-1]]
    prev[order[1:][same]] = order[:-1][same]
    return prev


def _later_greater_counts(values: np.ndarray) -> np.ndarray:
    """For each i, how many j < i have values[j] > values[i] (values distinct)."""
    m = len(values)
    if m <= 1:
        return np.zeros(m, dtype=np.int64)
    size = 1 << (m - 1).bit_length()
    vals = np.full(size, NO_REUSE, dtype=np.int64)  # padding sorts last and never counts
    vals[:m] = values
    ids = np.arange(size, dtype=np.int64)
    counts = np.zeros(size, dtype=np.int64)
    half = 1
    while half < size:
        rows_v = vals.reshape(-1, 2 * half)
        rows_i = ids.reshape(-1, 2 * half)
        order = np.argsort(rows_v, axis=1, kind="stable")
        position = np.empty_like(order)
        np.put_along_axis(position, order, np.arange(2 * half, dtype=np.int64)[None, :], axis=1)
        # A right-half element at merged position q with rank r in its half has q − r left
        # elements below it; the other (half − (q − r)) are greater and came earlier.
        greater = half - (position[:, half:] - np.arange(half, dtype=np.int64)[None, :])
        counts[rows_i[:, half:].ravel()] += greater.ravel()
        vals = np.take_along_axis(rows_v, order, axis=1).ravel()
        ids = np.take_along_axis(rows_i, order, axis=1).ravel()
        half *= 2
    return counts[:m]


def stack_distances(stream: np.ndarray) -> np.ndarray:
    """LRU stack distance of every access (``NO_REUSE`` for first uses)."""
    prev = previous_use(stream)
    reuse = np.flatnonzero(prev >= 0)
    distances = np.full(len(prev), NO_REUSE, dtype=np.int64)
    p = prev[reuse]
    distances[reuse] = reuse - p - _later_greater_counts(p)
    return distances


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
            salt: int = 0) -> MissRatioCurve:
    """The LRU miss-ratio curve of ``stream`` (exact when ``sample_rate`` is 1)."""
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError(f"sample rate must be in (0, 1], got {sample_rate}")
    stream = np.asarray(stream)
    n = len(stream)
    sampled = stream
    if sample_rate < 1.0:
        hashed = splitmix64(stream.astype(np.uint64) ^ np.uint64(salt)) % np.uint64(SHARDS_MODULUS)
        sampled = stream[hashed < np.uint64(int(sample_rate * SHARDS_MODULUS))]
    distances = stack_distances(sampled)
    finite = distances[distances != NO_REUSE]
    scaled = np.ceil(finite / sample_rate).astype(np.int64) if sample_rate < 1.0 else finite
    if capacities is None:
        unique = int(np.unique(sampled).size / sample_rate) if len(sampled) else 1
        capacities = capacity_grid(unique)
    capacities = np.asarray(capacities, dtype=np.int64)
    hits_at = np.searchsorted(np.sort(scaled), capacities, side="right").astype(np.float64)
    total = float(len(sampled))
    if sample_rate < 1.0:
        # SHARDS-adj: correct for the sample holding more or fewer accesses than n·R.
        expected = n * sample_rate
        hits_at = hits_at + (expected - total)
        total = expected
    ratios = np.clip(hits_at / total, 0.0, 1.0) if total > 0 else np.zeros(len(capacities))
    return MissRatioCurve(capacities, ratios, sample_rate, n, len(sampled))
