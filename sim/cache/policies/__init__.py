"""Eviction policies behind one interface, registered by name (``POLICIES``, ``make_policy``).

A policy's module is imported when its class is first looked up in ``POLICIES`` (its compiled
kernels import numba): listing or validating the names imports none of them.
"""

from sim.cache.policies.base import (
    POLICIES,
    EvictionPolicy,
    KernelPolicy,
    canonical_policy,
    check_policy_inputs,
    make_policy,
    policy_class,
    register,
)

__all__ = ["POLICIES", "EvictionPolicy", "KernelPolicy", "canonical_policy", "check_policy_inputs", "make_policy", "policy_class",
           "register"]
