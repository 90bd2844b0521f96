"""Eviction policies behind one interface, registered by name (``POLICIES``, ``make_policy``)."""

from sim.cache.policies.base import (POLICIES, EvictionPolicy, KernelPolicy, check_policy_inputs, make_policy,
                                     policy_class, register)
from sim.cache.policies import arc, belady, fifo, learned, lfu, lru, s3fifo, sieve  # noqa: F401  (register themselves)

__all__ = ["POLICIES", "EvictionPolicy", "KernelPolicy", "check_policy_inputs", "make_policy", "policy_class",
           "register"]
