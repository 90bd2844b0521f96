"""The eviction-policy interface and its registry.

A policy is a few hooks; the tier that owns it owns capacity (libCacheSim's
find/insert/evict/remove split). The tier calls ``on_access`` on a hit, ``on_insert``
after admitting a block, ``on_remove`` when a block leaves (evicted, promoted or
demoted), and ``victim(incoming)`` to learn which resident block to evict before
admitting ``incoming``. ``victim`` never changes the resident set; it may reorganise
internal order (S3-FIFO moves, SIEVE's hand), and calling it twice in a row returns
the same block. ``now`` is the index of the current access in the stream (virtual
time); only clairvoyant and learned policies use it.

A policy may also define ``admit(key, now) -> bool`` (admission control, libCacheSim's
admissioner): a full tier asks it before choosing a victim, and a declined block is not
cached in that tier (it moves on down, or leaves the cache).

Every hook is O(1) or O(log n): no scans over the resident set.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from sim.errors import ConfigError


class EvictionPolicy:
    """Base class: subclasses keep their own order over the blocks resident in one tier."""

    name: ClassVar[str] = ""
    needs_future: ClassVar[bool] = False  # True: requires next-use indexes (Belady)
    needs_predictions: ClassVar[bool] = False  # True: requires a learned model's predicted next uses

    def __init__(self, capacity: int):
        self.capacity = capacity

    def on_access(self, key: int, now: int) -> None:
        raise NotImplementedError

    def on_insert(self, key: int, now: int) -> None:
        raise NotImplementedError

    def on_remove(self, key: int) -> None:
        raise NotImplementedError

    def victim(self, incoming: int) -> int:
        raise NotImplementedError


POLICIES: dict[str, type[EvictionPolicy]] = {}


def register(cls: type[EvictionPolicy]) -> type[EvictionPolicy]:
    """Class decorator: make a policy available by its ``name``."""
    POLICIES[cls.name] = cls
    return cls


def make_policy(name: str, capacity: int, next_use: np.ndarray | None = None,
                predicted: np.ndarray | None = None) -> EvictionPolicy:
    """A fresh policy by registry name; unknown names list the valid ones."""
    from sim.cache import policies  # noqa: F401  (imports every policy module, filling the registry)

    if name not in POLICIES:
        raise ConfigError(f"unknown eviction policy {name!r}; valid policies: {', '.join(sorted(POLICIES))}")
    cls = POLICIES[name]
    if cls.needs_predictions:
        if predicted is None:
            raise ConfigError(f"policy {name!r} needs a trained model: set cache.learned_model (python -m learned.train)")
        return cls(capacity, predicted=predicted)
    if cls.needs_future:
        if next_use is None:
            raise ConfigError(f"policy {name!r} needs the future of the access stream (oracle data), which this run lacks")
        return cls(capacity, next_use=next_use)
    return cls(capacity)
