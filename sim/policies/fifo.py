"""FIFO: evict the block admitted earliest; hits do not change the order."""

from __future__ import annotations

from collections import OrderedDict

from sim.policies.base import EvictionPolicy, register


@register
class FIFO(EvictionPolicy):
    name = "fifo"

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self._order: OrderedDict[int, None] = OrderedDict()

    def on_access(self, key: int, now: int) -> None:
        pass

    def on_insert(self, key: int, now: int) -> None:
        self._order[key] = None

    def on_remove(self, key: int) -> None:
        del self._order[key]

    def victim(self, incoming: int) -> int:
        return next(iter(self._order))
