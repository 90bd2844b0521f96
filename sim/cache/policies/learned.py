"""Learned eviction: hit density from a model's predicted next-use distribution, behind a safety net.

A trained model (``learned.model``) predicts, for every access, the distribution of the distance
to that block's next use, from features of the past only; the predictions for a whole stream are
made in one batch before the replay (the same as predicting at access time). The per-access work
runs compiled over arrays indexed by block id (``learned.kernel``): a model expert evicts by hit
density relative to its own eviction age and declines blocks worth less than its victim; ARC,
LRU and S3-FIFO experts run beside it; the cache follows whichever has had significantly more hits
lately, so a wrong model falls back to the best of them instead of making things worse. See
``learned/README.md`` for what was measured.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from learned import kernel
from learned.predictions import Predictions
from learned.state_layout import ARC, EXPERT_NAMES, S_ELECT_FROM, S_LEADER, S_NREAL, S_SWITCHES, X_SCORE
from sim.cache.policies.base import EvictionPolicy, register

NO_PINS = np.zeros(0, dtype=np.int64)


@register
class Learned(EvictionPolicy):
    name = "learned"
    needs_predictions = True

    def __init__(self, capacity: int, predicted: Predictions | np.ndarray):
        super().__init__(capacity)
        if not isinstance(predicted, Predictions):  # true next-use positions: a perfect predictor
            predicted = Predictions.perfect(predicted)
        self.klass = predicted.klass
        self.state = kernel.new_state(capacity, predicted.num_ids, predicted.dist, predicted.edges)
        if not predicted.model_leads:  # (``Predictions.private``)
            self.state["ints"][S_ELECT_FROM] = self.state["ints"][S_LEADER] = ARC
        # prefix semantics: each position's block and its request's first, to score the experts on prefix hits
        plain = np.zeros(0, dtype=np.int64)
        self._pkeys = predicted.keys if predicted.keys is not None else plain
        self._pstart = predicted.starts if predicted.starts is not None else plain
        self._pnext = predicted.nexts if predicted.nexts is not None else plain
        self._victim = -1  # the last victim named (a removal of another block is not an eviction)
        self._bind()

    def _bind(self) -> None:
        s = self.state
        self._blocks, self._last, self._ints = s["blocks"], s["last"], s["ints"]

    def _fit(self, key: int) -> None:
        if key >= self._blocks.shape[0]:
            kernel.grow(self.state, key + 1)
            self._bind()

    def on_access(self, key: int, now: int) -> None:
        self._victim = -1
        s = self.state
        kernel.on_access(self._blocks, self._last, s["model_slots"], self._ints, s["floats"], s["table"], s["dist"],
                         s["edges"], key, int(self.klass[now]), now, self._pkeys, self._pstart, self._pnext)

    def on_insert(self, key: int, now: int) -> None:
        self._fit(key)
        self._victim = -1
        s = self.state
        kernel.on_insert(self._blocks, self._last, s["real_ids"], s["model_slots"], self._ints, s["floats"], s["table"],
                         s["dist"], s["edges"], key, int(self.klass[now]), now, self._pkeys, self._pstart, self._pnext)

    def on_remove(self, key: int) -> None:
        """``key`` leaves: the victim just named, or a block promoted out of the tier (``kernel.on_remove``)."""
        self._remove(key, key != self._victim)

    def on_take(self, key: int) -> None:
        """A running request takes ``key``, to give it back when freed: the experts keep it (``kernel.on_remove``)."""
        self._remove(key, False)

    def _remove(self, key: int, leaves: bool) -> None:
        self._victim = -1
        s = self.state
        kernel.on_remove(self._blocks, s["real_ids"], s["model_slots"], self._ints, s["floats"], key, leaves)

    def victim(self, incoming: int) -> int:
        """The real cache's victim, passing over pinned blocks (-1: every block is): asked again with the pins only
        where the first answer is one (a prefix replay's request holds a few blocks; most victims are not)."""
        s = self.state
        args = (self._blocks, self._last, s["real_ids"], self._ints, s["floats"], s["table"], s["dist"], s["edges"],
                self._pkeys, self._pstart, self._pnext)
        key = int(kernel.victim(*args, NO_PINS, incoming))
        if self.pinned and key in self.pinned:
            key = int(kernel.victim(*args, np.fromiter(self.pinned, dtype=np.int64, count=len(self.pinned)), incoming))
        self._victim = key
        return key

    def summary(self) -> dict:
        """Which expert the cache follows at the end, how often that changed, and each one's decayed hits."""
        ints, floats = self._ints, self.state["floats"]
        return {"leader": EXPERT_NAMES[ints[S_LEADER]],
                "leader_switches": int(ints[S_SWITCHES]),
                "recent_hits": {name: round(float(floats[X_SCORE + e]), 1)
                                for e, name in enumerate(EXPERT_NAMES)}}

    def replay_plain(self, keys: list[int], resident: set, capacity: int, start: int) -> tuple[list[int], int]:
        """The single-tier plain replay in one compiled call (``MultiTierCache``'s fast path)."""
        stream = np.asarray(keys, dtype=np.int64)
        if len(stream):
            self._fit(int(stream.max()))
        s = self.state
        hit = np.zeros(len(stream), dtype=np.bool_)
        evictions = kernel.replay_plain(self._blocks, self._last, s["real_ids"], s["model_slots"], self._ints,
                                        s["floats"], s["table"], s["dist"], s["edges"], stream, self.klass, start,
                                        capacity, hit)
        resident.clear()
        resident.update(s["real_ids"][: self._ints[S_NREAL]].tolist())
        return (np.flatnonzero(hit) + start).tolist(), int(evictions)


def copies_summary(policies: Iterable[EvictionPolicy]) -> dict | None:
    """A serving run's learned copies (one per instance's HBM, per shared lower tier, or one spanning an instance's
    tiers) at the end: how many follow each expert (``leader_<expert>``), and their leader switches summed; None
    where none is learned. Each copy judges its experts on its own stream."""
    copies = list({id(p): p for p in policies if isinstance(p, Learned)}.values())
    if not copies:
        return None
    summaries = [copy.summary() for copy in copies]
    return {"copies": len(copies), **{f"leader_{name}": sum(s["leader"] == name for s in summaries)
                                      for name in EXPERT_NAMES},
            "leader_switches": sum(s["leader_switches"] for s in summaries)}
