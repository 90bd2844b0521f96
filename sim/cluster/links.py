"""Transfers that cross several links, and the fleet's load counters.

A ``Path`` sends the same bytes on each of its links at once (cut-through: a block streams
through the GPU's PCIe, the NICs and the rack uplinks together), each link shared max-min
fairly with the other transfers on it (``sim.serving.network.Link``); the transfer is done
when its slowest link is. A shared tier (a node's DRAM or SSD, a rack's EIC pool) is a link
too: concurrent loads from it share its read bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from sim.serving.network import Link


@dataclass(frozen=True)
class PathModel:
    """A path's isolated time: its slowest link's (they carry the bytes concurrently)."""

    links: tuple[Link, ...]
    name: str = "path"

    def isolated_time(self, nbytes: float) -> float:
        return max((link.model.isolated_time(nbytes) for link in self.links), default=0.0)


class Path:
    """Several links carrying one transfer concurrently; ``send`` as ``Link.send``."""

    def __init__(self, links: list[Link], scope: str):
        self.links = links
        self.scope = scope  # "node" (PCIe only), "rack" (NICs), "cross_rack" (uplinks)
        self.model = PathModel(tuple(links))
        self.bytes_sent = 0

    def send(self, nbytes: float, on_done: Callable[[float], None]) -> None:
        self.bytes_sent += int(nbytes)
        self.occupy_share(nbytes, 1.0, on_done)

    def occupy_share(self, nbytes: float, share: float, on_done: Callable[[float], None]) -> None:
        """``share`` of a transfer of ``nbytes`` on every link at once (``Link.occupy_share``); bytes not counted."""
        if not self.links or nbytes <= 0:
            on_done(0.0)
            return
        remaining = [len(self.links), 0.0]

        def one_done(duration: float) -> None:
            remaining[0] -= 1
            remaining[1] = max(remaining[1], duration)
            if remaining[0] == 0:
                on_done(remaining[1])

        for link in self.links:
            link.occupy_share(nbytes, share, one_done)


class LoadTracker:
    """Minimum and maximum of a set of non-negative integer loads changed by ±1, in O(1) each
    (a histogram of loads), so a router's imbalance test never scans the fleet."""

    def __init__(self, count: int):
        self.histogram = np.zeros(64, dtype=np.int64)
        self.histogram[0] = count
        self.min = 0
        self.max = 0

    def change(self, old: int, new: int) -> None:
        if new >= len(self.histogram):
            self.histogram = np.concatenate([self.histogram, np.zeros(len(self.histogram), dtype=np.int64)])
        self.histogram[old] -= 1
        self.histogram[new] += 1
        if new > self.max:
            self.max = new
        if new < self.min:
            self.min = new
        while self.histogram[self.min] == 0:
            self.min += 1
        while self.histogram[self.max] == 0:
            self.max -= 1
