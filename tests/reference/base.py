"""The registry of the pure-Python reference policies (test oracles, not used by the simulator)."""

from __future__ import annotations

from sim.cache.policies.base import EvictionPolicy

REFERENCE: dict[str, type[EvictionPolicy]] = {}


def register(cls: type[EvictionPolicy]) -> type[EvictionPolicy]:
    REFERENCE[cls.name] = cls
    return cls
