"""The global prefix index: which tiers hold each block of a chain, among the tiers a caller asks about.

``holders_chain(arena, wanted, keys) -> (found, offsets, tiers)``: for keys[0], keys[1], ... the tiers
with ``wanted[tier]`` True that hold the key as a resident block, as CSR (``tiers[offsets[i]:offsets[i +
1]]`` for key i), stopping at the first key no wanted tier holds; ``found`` is how many keys are held.
The arena's own compiled block index (``TierArena.holders_chain``: every holder of each key, one or two
directory probes per key) answers first; the wanted filter is a vectorised pass over its answer, so the
cost is O(chain x holders), never O(tiers in the fleet).

A block a running request holds is out of the arena's tiers but in its instance's HBM: with ``in_use``
(``sim.cluster.in_use.InUse``) such a block counts as held by that instance's HBM tier, the chain going on through it.
"""

from __future__ import annotations

import numpy as np

from sim.cache.arena import TierArena
from sim.cluster.in_use import InUse

_NONE = (0, np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64))


def holders_chain(arena: TierArena, wanted: np.ndarray, keys: np.ndarray,
                  in_use: InUse | None = None) -> tuple[int, np.ndarray, np.ndarray]:
    """(found, offsets, tiers): the wanted tiers holding each key of the chain's held prefix (resident, or, with
    ``in_use``, held by a running request: its instance's HBM tier). ``wanted`` covers every tier of the arena (the
    cluster marks each tier as it builds it)."""
    if not len(keys):
        return _NONE
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    marks = in_use.marks(keys) if in_use is not None else None
    found, offsets, tiers = arena.holders_chain(keys, marks)
    if not found:
        return _NONE
    if marks is not None:
        offsets, tiers = in_use.merge(keys, marks, offsets, tiers)
    keep = wanted[tiers]  # every held key has a holder, so ``tiers`` is not empty
    per_key = np.add.reduceat(keep, offsets[:-1])
    held = np.flatnonzero(per_key == 0)
    found = int(held[0]) if len(held) else found
    if not found:
        return _NONE
    cut = int(offsets[found])
    kept = tiers[:cut][keep[:cut]]
    out_offsets = np.zeros(found + 1, dtype=np.int64)
    np.cumsum(per_key[:found], out=out_offsets[1:])
    return found, out_offsets, kept
