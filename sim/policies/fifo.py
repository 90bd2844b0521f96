"""FIFO: evict the block admitted earliest; hits do not change the order."""

from __future__ import annotations

from sim.policies.base import register
from sim.policies.lru import LRU


@register
class FIFO(LRU):
    """LRU's insertion-ordered queue without the refresh on a hit."""

    name = "fifo"
    refresh_on_hit = False

    def on_access(self, key: int, now: int) -> None:
        pass

    replay_plain = LRU.replay_plain  # declared, not inherited: the kernel honours refresh_on_hit
