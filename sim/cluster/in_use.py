"""Blocks in use: per block id, the instances whose running requests hold it, for the global prefix index.

A block a running request holds leaves its instance's HBM tier (``TieredCache.take_chain``) until the request frees
it, so the arena's index no longer sees it there; yet it is in that HBM, and another request routed there is served
it (``BlockPool.__contains__``). vLLM keeps a block in use in its prefix-cache hash map (it emits ``BlockRemoved``
only on eviction: ``vllm/v1/core/block_pool.py``), so the KV-event-driven routers (llm-d's precise prefix scorer,
Dynamo's KV router, Mooncake's conductor) count it as the instance's. ``InUse`` is that record: each instance's
``BlockPool`` reports the prompt blocks it starts holding (a reference count 0 -> 1) and frees (1 -> 0), so the
record is per block a set of instances, each there once however many of its requests share the block; a block is
listed under its instance's HBM tier (arena index), as the arena lists a cached one.

Work is per block taken or freed and per block of a queried chain, never per instance of the fleet: a bitmap over
block ids (grown by doubling to the largest id taken, created with the first) answers "is any of this chain in use"
in one vectorised pass, and only a chain's blocks in use are looked up in the per-block dict.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class InUse:
    """Per block id, the HBM tiers (arena indices) of the instances whose running requests hold it, in the order
    they took it."""

    def __init__(self) -> None:
        # block id -> its one HBM tier, or {HBM tier: None} (an ordered set) while two or more instances hold it (a
        # block is held by one instance far more often than by several: no set per block then)
        self.where: dict[int, int | dict[int, None]] = {}
        self.held = np.zeros(0, dtype=np.bool_)  # per block id: in ``where`` (the chain's vectorised test)

    def __len__(self) -> int:
        """Blocks some running request holds."""
        return len(self.where)

    def taken(self, keys: Sequence[int], tier: int) -> None:
        """The instance of HBM tier ``tier`` started holding ``keys`` (each newly, once)."""
        if not len(keys):
            return
        where = self.where
        ids = np.asarray(keys, dtype=np.int64)
        for key in ids.tolist():
            tiers = where.get(key)
            if tiers is None:
                where[key] = tier
            elif type(tiers) is int:
                where[key] = {tiers: None, tier: None}
            else:
                tiers[tier] = None
        top = int(ids.max())
        if top >= len(self.held):
            grown = np.zeros(max(64, 2 * (top + 1)), dtype=np.bool_)
            grown[:len(self.held)] = self.held
            self.held = grown
        self.held[ids] = True

    def freed(self, keys: Sequence[int], tier: int) -> None:
        """The instance of HBM tier ``tier`` let go of ``keys`` (its last request holding each)."""
        where = self.where
        emptied = []
        for key in np.asarray(keys, dtype=np.int64).tolist():
            tiers = where[key]
            if type(tiers) is int:
                del where[key]
                emptied.append(key)
            else:
                del tiers[tier]
                if len(tiers) == 1:
                    where[key] = next(iter(tiers))
        self.held[emptied] = False

    def tiers_of(self, key: int) -> list[int]:
        """The HBM tiers of the instances holding block ``key`` in use, in the order they took it (none: [])."""
        tiers = self.where.get(key)
        return [] if tiers is None else [tiers] if type(tiers) is int else list(tiers)

    def marks(self, keys: np.ndarray) -> np.ndarray | None:
        """Per key of a chain, True where a running request holds it; None when none does (the common case)."""
        if not self.where:
            return None
        held = self.held
        inside = keys < len(held)
        marks = np.zeros(len(keys), dtype=np.bool_)
        marks[inside] = held[keys[inside]]
        return marks if marks.any() else None

    def merge(self, keys: np.ndarray, marks: np.ndarray, offsets: np.ndarray,
              tiers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The arena's CSR of holders of ``keys`` (its answer for the whole chain) with each marked key's in-use tiers
        after its resident holders; a tier listed twice (a second copy cached in the HBM of an instance that holds
        the block in use) once."""
        found = len(offsets) - 1
        extra_pos: list[int] = []
        extra_tiers: list[int] = []
        for i in np.flatnonzero(marks[:found]).tolist():
            holders = self.tiers_of(int(keys[i]))
            extra_pos += [i] * len(holders)
            extra_tiers += holders
        pos = np.concatenate([np.repeat(np.arange(found, dtype=np.int64), np.diff(offsets)),
                              np.asarray(extra_pos, dtype=np.int64)])
        every = np.concatenate([tiers, np.asarray(extra_tiers, dtype=np.int64)])
        order = np.argsort(pos, kind="stable")  # per key: its resident holders first, as the arena lists them
        pos, every = pos[order], every[order]
        _, first = np.unique(pos * (int(every.max()) + 1) + every, return_index=True)
        keep = np.zeros(len(pos), dtype=np.bool_)
        keep[first] = True
        pos, every = pos[keep], every[keep]
        merged = np.zeros(found + 1, dtype=np.int64)
        np.cumsum(np.bincount(pos, minlength=found), out=merged[1:])
        return merged, every
