"""A trace's block ids held as runs of consecutive ids (``IdRuns``, one of ``trace.request.Trace``'s two forms), and
the compiled passes between them and the flat ids.

A run is a maximal stretch of consecutive ids (id[k] = id[k - 1] + 1) inside one request's prompt. Every loader
interns ids in first-seen order, so a prompt's new blocks get consecutive ids and a reused prefix repeats an earlier
stretch: a fleet's 1 M multi-turn requests (``benchmarks/bench_cluster.py``) hold 140 M ids in 1.30 M runs (108 ids
a run; most prompts are one run), 18 MB instead of 0.52 GiB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.jit import njit


@dataclass(slots=True)
class IdRuns:
    """Block ids as runs of consecutive ids, none crossing a request: request i's runs are k in
    ``[offsets[i], offsets[i + 1])``, run k the ids ``first[k], first[k] + 1, ..., first[k] + length[k] - 1``."""

    offsets: np.ndarray  # int64, length n + 1
    first: np.ndarray  # int32 (trace.request.BLOCK_ID_DTYPE)
    length: np.ndarray  # int32, each at least 1

    @staticmethod
    def nbytes_for(requests: int, runs: int) -> int:
        """The bytes ``requests`` requests' ids take as ``runs`` runs."""
        return 8 * (requests + 1) + 8 * runs

    @classmethod
    def of_flat(cls, offsets: np.ndarray, ids: np.ndarray, runs: int) -> IdRuns:
        """The ``runs`` runs (``count_runs``) of ``ids``, CSR by ``offsets`` (int64)."""
        return cls(*to_runs(offsets, ids, runs))

    @property
    def nbytes(self) -> int:
        return self.offsets.nbytes + self.first.nbytes + self.length.nbytes

    def expand(self, total: int) -> np.ndarray:
        """Every id, flat (``total``: how many), a fresh int32 array."""
        return expand(self.first, self.length, total)

    def of(self, i: int) -> np.ndarray:
        """Request ``i``'s ids, a fresh int32 array filled in compiled code (~0.8 us for one run or three; an
        ``arange`` of one run took 0.9, a numpy fill of three 7)."""
        return request_ids(self.offsets, self.first, self.length, i)

    def span(self, start: int, stop: int, count: int) -> np.ndarray:
        """The ``count`` ids of requests ``start`` to ``stop`` (exclusive), flat: a fresh int32 array."""
        a, b = int(self.offsets[start]), int(self.offsets[stop])
        return expand(self.first[a:b], self.length[a:b], count)

    def bound(self) -> int:
        """One more than the largest id (0 without runs)."""
        return int((self.first.astype(np.int64) + self.length).max()) if len(self.first) else 0


@njit(cache=True)
def count_runs(offsets, ids):
    """How many runs ``ids`` (CSR by ``offsets``) form, none crossing a request: a run starts at every id not one
    past the one before (a compare numba vectorises: 10 M ids in 3 ms, 24 testing for a request's start at each id)
    and at each request's first id, one past the id before or not (an empty request starts none)."""
    total = offsets[len(offsets) - 1]
    runs = 1 if total > 0 else 0
    for k in range(1, total):
        runs += ids[k] != ids[k - 1] + 1
    for r in range(1, len(offsets) - 1):
        lo = offsets[r]
        if offsets[r + 1] > lo > 0 and ids[lo] == ids[lo - 1] + 1:
            runs += 1
    return runs


# ids a run is scanned by at a time where it is long: a compare over a stretch numba vectorises (100 M session ids:
# 262 -> 127 ms; a 9 M-id Mooncake split 26 -> 12), then id by id where one breaks the run
STRETCH = 64


@njit(cache=True)
def to_runs(offsets, ids, count):
    """The ``count`` runs of ``ids``: per request the offset of its first run (int64, n + 1), per run its first id
    (int32, as ``ids``) and its length (int32)."""
    n = len(offsets) - 1
    run_offsets = np.empty(n + 1, dtype=np.int64)
    first = np.empty(count, dtype=ids.dtype)
    length = np.empty(count, dtype=np.int32)
    k = 0
    for r in range(n):
        run_offsets[r] = k
        j, hi = offsets[r], offsets[r + 1]
        while j < hi:  # a run from j
            start = j
            j += 1
            while j + STRETCH <= hi:
                broken = 0
                for q in range(j, j + STRETCH):
                    broken += ids[q] != ids[q - 1] + 1
                if broken:
                    break
                j += STRETCH
            while j < hi and ids[j] == ids[j - 1] + 1:
                j += 1
            first[k] = ids[start]
            length[k] = j - start
            k += 1
    run_offsets[n] = k
    return run_offsets, first, length


@njit(cache=True)
def expand(first, length, total):
    """The flat ids of runs (``first``, ``length``) that hold ``total`` ids in all."""
    out = np.empty(total, dtype=first.dtype)
    at = 0
    for k in range(len(first)):
        at = _fill(out, at, first[k], length[k])
    return out


@njit(cache=True)
def request_ids(offsets, first, length, i):
    """Request ``i``'s ids: its runs (``offsets[i]`` to ``offsets[i + 1]``) filled in."""
    count = 0
    for k in range(offsets[i], offsets[i + 1]):
        count += length[k]
    out = np.empty(count, dtype=first.dtype)
    at = 0
    for k in range(offsets[i], offsets[i + 1]):
        at = _fill(out, at, first[k], length[k])
    return out


@njit
def _fill(out, at, start, length):
    """``out[at:at + length]`` = start, start + 1, ...; returns where the next run goes. (A view and int32 steps: a
    10 M-id stream of 16 k runs fills in 16 ms, 21 with ``out[at + j] = start + j``; a fresh ``arange`` takes 7.)"""
    n = np.int64(length)
    view = out[at:at + n]
    for j in range(n):
        view[j] = start + np.int32(j)
    return at + n
