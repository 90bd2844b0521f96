"""The global prefix index: which tiers hold each block of a chain.

``holders_chain(arena, candidates, keys) -> (found, offsets, tiers)``: for keys[0], keys[1],
... the tiers (among ``candidates``) holding each as a resident block, as CSR (``tiers
[offsets[i]:offsets[i + 1]]`` for key i), stopping at the first key held nowhere; ``found`` is
how many keys are held. This version probes every candidate tier's hash directory per key
(compiled; correct, O(chain x candidates)). The arena's own compiled block index
(``TierArena.holders_chain``) replaces it with one line at merge, O(chain x holders).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sim.cache.arena import TierArena, resident


@njit(cache=True, _nrt=True)
def _probe(a, candidates, keys):
    offsets = np.zeros(len(keys) + 1, dtype=np.int64)
    out = np.empty(len(keys) * max(1, len(candidates)), dtype=np.int64)
    n = 0
    found = 0
    for i in range(len(keys)):
        start = n
        for t in candidates:
            if resident(a, t, keys[i]) >= 0:
                out[n] = t
                n += 1
        if n == start:
            break
        found += 1
        offsets[found] = n
    return found, offsets[:found + 1], out[:n]


def holders_chain(arena: TierArena, candidates: np.ndarray, keys: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(found, offsets, tiers): the candidate tiers holding each key of the chain's held prefix."""
    if not arena.allocated or not len(candidates) or not len(keys):
        return 0, np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return _probe(arena.state, np.ascontiguousarray(candidates, dtype=np.int64),
                  np.ascontiguousarray(keys, dtype=np.int64))
