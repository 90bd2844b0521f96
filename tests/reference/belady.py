"""Belady's MIN in pure Python: the product's ``belady-bypass`` hooks (a lazy max-heap of next
uses, independent of the compiled kernel) without its admission control, so it always admits
on a miss as libCacheSim's Belady does."""

from __future__ import annotations

from sim.cache.policies.belady import BeladyBypass
from tests.reference.base import register


@register
class Belady(BeladyBypass):
    name = "belady"
    admit = None  # the generic path admits every block when a policy has no admit hook
