"""The eviction-policy interface and its registry.

A policy is a few hooks; the tier that owns it owns capacity (libCacheSim's
find/insert/evict/remove split). The tier calls ``access`` on a hit, ``insert`` to
admit a block (also one it holds already: a tier shared by several caches receiving
another one's copy, a readmission that evicts nothing), ``remove`` when a block leaves
(evicted, promoted, demoted or taken), and ``victim(incoming)`` to learn which resident
block to evict before admitting ``incoming``, passing over pinned blocks (a prefix replay's hits, held until
their touch: ``arena_layout.pinned``; -1 when every block is). ``victim`` never changes the resident set; it may
reorganise internal order (S3-FIFO moves, SIEVE's hand), and calling it twice in a row returns the same block.
``now`` is the index of the current access in the stream (virtual time); only clairvoyant
and learned policies use it. Every hook is O(1) or O(log n): no scans over the resident set.

The take rule (serving): a block a running request takes out of the top tier (``take``: vLLM's block leaves the
free queue) keeps what the top tier's policy knew of it, as vLLM's ``KVCacheBlock`` keeps its metadata while in use.
``history`` reads that state as the block leaves (before ``remove``); when the request frees it, the tier inserts
the block as usual, then ``carry`` gives it that history and ``access`` counts this use: the block re-enters as one
seen again (S3-FIFO: its queue and frequency, plus one; ARC: T2; LFU: its count, plus one; SIEVE: visited). Without
it every use made a block new: serving LRU, S3-FIFO and ARC hit alike. LRU, FIFO and Belady keep no per-block
state beyond their order (``history`` -1: nothing kept), so their results are unchanged. A block taken from a lower
tier keeps nothing (vLLM loads it into a new block).

A Python policy may also define ``admit(key, now) -> bool`` (admission control, libCacheSim's
admissioner): a full tier asks it before choosing a victim, and a declined block is not
cached in that tier (it moves on down, or leaves the cache).

Kernel policies (every classic policy) implement the hooks as compiled functions over a
tier's state in a ``TierArena`` (``sim.cache.arena``), in a module exposing::

    KIND: int                                   # unique, listed in policies/dispatch.py
    ARENA = arena_type("XArena", __name__)      # its arena class (compiled code specialises on it)
    init(meta_row) -> None                      # Python: set the policy's scalars in meta[X0:]
    access(a, t, slot: int, now: int) -> None   # hit on a resident slot
    insert(a, t, key: int, now: int) -> int     # admit key (not resident here); returns its slot
    readmit(a, t, slot: int, now: int) -> None  # admit a key already resident (a tier shared by
                                                #   several caches receiving another one's copy)
    remove(a, t, slot: int) -> None             # a resident slot leaves (free it or make it a ghost)
    victim(a, t, incoming: int) -> int          # the slot to evict next (a peek; may reorder)
    history(a, t, slot: int) -> int             # what the policy knows of a resident slot (>= 0), -1: nothing
    carry(a, t, slot: int, history: int) -> None  # a slot just inserted takes on the history it was taken with

and a registered ``KernelPolicy`` subclass naming it (``kind``, ``slots(capacity)``: slots
the policy may hold, resident plus ghost). The compiled multi-tier engine
(``sim.cache.engine``) calls these hooks with no Python in between. A policy without a
kernel (the learned policies) subclasses ``EvictionPolicy`` with Python hooks; a cache
holding one runs the generic Python path (``sim.cache.hooked``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from sim.errors import ConfigError

if TYPE_CHECKING:
    from sim.cache.arena import TierArena


class EvictionPolicy:
    """Python hooks over the blocks resident in one tier (the generic path's interface)."""

    name: ClassVar[str] = ""
    needs_future: ClassVar[bool] = False  # True: requires next-use indexes (Belady)
    needs_predictions: ClassVar[bool] = False  # True: requires a learned model's predicted next uses
    kind: ClassVar[int] = 0  # compiled kernel kind; 0: Python hooks only

    def __init__(self, capacity: int):
        self.capacity = capacity
        # blocks held by the request a prefix replay is at (hits not yet touched), never a victim: ``victim`` passes
        # over them, returning -1 when every block is (the generic path shares its own set here: ``pin``)
        self.pinned: set[int] = set()

    def pin(self, key: int, on: bool) -> None:
        """Pin resident ``key`` (``on``) or unpin it: ``victim`` passes over pinned blocks (``arena_layout.pinned``).
        A policy whose ``victim`` does not know of pins (the learned one) may name one: the generic path then keeps
        the incoming block out of the tier instead."""
        if on:
            self.pinned.add(key)
        else:
            self.pinned.discard(key)

    def on_access(self, key: int, now: int) -> None:
        raise NotImplementedError

    def on_insert(self, key: int, now: int) -> None:
        raise NotImplementedError

    def on_remove(self, key: int) -> None:
        raise NotImplementedError

    def victim(self, incoming: int) -> int:
        raise NotImplementedError

    def on_take(self, key: int) -> None:
        """A running request takes resident ``key`` out of the tier, to give it back when it frees it (the take rule,
        ``history`` asked first): a removal, but to a policy that keeps its own view of blocks it no longer holds
        (the learned one's experts) not one that leaves for good."""
        self.on_remove(key)

    def history(self, key: int) -> int:
        """What the policy knows of resident ``key`` as a running request takes it (the take rule); -1: nothing."""
        return -1

    def carry(self, key: int, history: int) -> None:
        """``key``, just inserted as its request frees it, takes on the ``history`` it was taken with."""


class KernelPolicy(EvictionPolicy):
    """A compiled policy seen through Python hooks: one tier of a ``TierArena``.

    The compiled engine never goes through these methods; they serve the generic path
    (a cache that mixes in a Python-only policy) and tests that drive a policy by hand.
    """

    def __init__(self, capacity: int, next_use: np.ndarray | None = None, arena: TierArena | None = None,
                 tier: int | None = None):
        super().__init__(capacity)
        if arena is None:
            from sim.cache.arena import TierArena

            arena = TierArena(future=next_use)
            tier = arena.add_tier(self.kind, capacity, self.slots(capacity))
        self.arena, self.tier = arena, tier

    @classmethod
    def slots(cls, capacity: int) -> int:
        """Slots the policy may hold at ``capacity``: resident blocks, plus ghost entries."""
        return capacity + 1

    def _hook(self, op: int, key: int, now: int) -> int:
        from sim.cache import engine

        while True:
            out = int(engine.hook(self.arena.state, self.tier, op, key, now))
            if out != engine.NO_ROOM:
                return out
            self.arena.reserve([self.tier], 1)

    def on_access(self, key: int, now: int) -> None:
        from sim.cache import operations

        self._hook(operations.HOOK_ACCESS, key, now)

    def on_insert(self, key: int, now: int) -> None:
        from sim.cache import operations

        self._hook(operations.HOOK_INSERT, key, now)

    def on_remove(self, key: int) -> None:
        from sim.cache import operations

        self._hook(operations.HOOK_REMOVE, key, 0)

    def victim(self, incoming: int) -> int:
        from sim.cache import operations

        return self._hook(operations.HOOK_VICTIM, incoming, 0)

    def history(self, key: int) -> int:
        from sim.cache import operations

        return self._hook(operations.HOOK_HISTORY, key, 0)

    def carry(self, key: int, history: int) -> None:
        from sim.cache import operations

        self._hook(operations.HOOK_CARRY, key, history)

    def pin(self, key: int, on: bool) -> None:
        from sim.cache import operations

        super().pin(key, on)
        self._hook(operations.HOOK_PIN, key, int(on))


class PolicyRegistry(Mapping[str, type[EvictionPolicy]]):
    """Policy classes by name. The names are known up front, each with the module that defines
    its class; a module is imported when one of its classes is first looked up, so naming or
    validating a policy imports no kernel (nor numba, ~0.3 s, in modes that run no cache)."""

    def __init__(self, modules: dict[str, str]):
        self._modules = modules
        self._classes: dict[str, type[EvictionPolicy]] = {}

    def __getitem__(self, name: str) -> type[EvictionPolicy]:
        if name not in self._classes:
            importlib.import_module(f"{__package__}.{self._modules[name]}")  # registers its classes
        return self._classes[name]

    def __contains__(self, name: object) -> bool:
        return name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)

    def register(self, cls: type[EvictionPolicy]) -> type[EvictionPolicy]:
        """Class decorator: make a policy available by its ``name``, which must be listed with its module."""
        module = cls.__module__.rpartition(".")[2]
        if self._modules.get(cls.name) != module:
            raise RuntimeError(f"policy {cls.name!r} of {cls.__module__} is not listed in POLICIES (sim.cache.policies.base)")
        self._classes[cls.name] = cls
        return cls


# Each policy's name and the module of this package that defines (and registers) its class.
POLICIES = PolicyRegistry({
    "arc": "arc", "belady": "belady", "belady-bypass": "belady", "fifo": "fifo", "learned": "learned", "lfu": "lfu",
    "lru": "lru", "s3fifo": "s3fifo", "sieve": "sieve",
})
register = POLICIES.register


def canonical_policy(value: object) -> str | None:
    """The registered policy ``value`` names in any letter case (``LRU``, ``S3FIFO``), or None: the one place a
    policy name is normalised (``cache.policy``, a tier's ``policy``, ``--policy``, sweep and plan points), so a
    report names it as registered, in lower case."""
    if not isinstance(value, str):
        return None
    name = value.lower()
    return name if name in POLICIES else None


def policy_class(name: str) -> type[EvictionPolicy]:
    """The registered policy ``name``; unknown names list the valid ones."""
    if name not in POLICIES:
        raise ConfigError(f"unknown eviction policy {name!r}; valid policies: {', '.join(sorted(POLICIES))}")
    return POLICIES[name]


def check_policy_inputs(name: str, next_use: np.ndarray | None, predicted: np.ndarray | None) -> type[EvictionPolicy]:
    """The policy's class, after checking that the run provides the data it needs."""
    cls = policy_class(name)
    if cls.needs_predictions and predicted is None:
        raise ConfigError(f"policy {name!r} needs a trained model: set cache.learned_model (python -m learned.train)")
    if cls.needs_future and next_use is None:
        raise ConfigError(f"policy {name!r} needs the future of the access stream (oracle data), which this run lacks")
    return cls


def make_policy(name: str, capacity: int, next_use: np.ndarray | None = None,
                predicted: np.ndarray | None = None, arena: TierArena | None = None,
                tier: int | None = None) -> EvictionPolicy:
    """A policy's Python hooks by registry name: on tier ``tier`` of ``arena`` (a kernel policy
    already registered there), or on a fresh single-tier arena of its own."""
    cls = check_policy_inputs(name, next_use, predicted)
    if cls.needs_predictions:
        return cls(capacity, predicted=predicted)
    if issubclass(cls, KernelPolicy):
        return cls(capacity, next_use=next_use, arena=arena, tier=tier)
    if cls.needs_future:
        return cls(capacity, next_use)
    return cls(capacity)
