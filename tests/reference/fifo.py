"""FIFO: evict the block admitted earliest; hits do not change the order.

Studied with LRU and MIN in Belady, "A study of replacement algorithms for a virtual-storage
computer", IBM Systems Journal 5(2), 1966 (where its capacity anomaly was later found).
"""

from __future__ import annotations

from tests.reference.base import register
from tests.reference.lru import LRU


@register
class FIFO(LRU):
    """LRU's insertion-ordered queue without the refresh on a hit."""

    name = "fifo"
    refresh_on_hit = False
