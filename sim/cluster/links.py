"""The fleet's load counters (a transfer across several links: ``sim.serving.paths``)."""

from __future__ import annotations

import numpy as np


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
