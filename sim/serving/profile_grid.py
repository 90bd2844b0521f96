"""A ragged grid of measured times, interpolated over several axes.

Profiled operator tables (Vidur's ``attention.csv``, an LLMServingSim bundle's ``attention.csv``)
are measured on uneven grids; both profiled compute families look their attention kernels up
through this one interpolation.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING

import numpy as np

from sim.serving.collectives import interpolate, interpolate_many

if TYPE_CHECKING:
    import pandas as pd


class GridNode:
    """A ragged grid over several axes: each value of the first axis holds a sub-grid of the rest.

    Lookup brackets the first axis between its two neighbouring values (linear blend) and
    recurses; rows that exist only for some values of an axis are handled naturally. The axis values and times
    are kept as lists: a lookup is one point, and decode windows make many.
    """

    def __init__(self, frame: pd.DataFrame, axes: list[str], value: str):
        self.axis = axes[0]
        keys = np.sort(frame[self.axis].unique()).astype(float)
        self.keys: list[float] = keys.tolist()
        if len(axes) == 1:
            ordered = frame.groupby(self.axis)[value].mean()
            self.leaf: list[float] | None = ordered.reindex(keys).to_numpy(float).tolist()
            self.children = None
        else:
            self.leaf = None
            self.children = [GridNode(frame[frame[self.axis] == k], axes[1:], value) for k in keys]

    def lookup(self, point: tuple[float, ...]) -> float:
        x = point[0]
        if self.children is None:
            return interpolate(self.keys, self.leaf, x)
        keys = self.keys
        if len(keys) == 1:
            return self.children[0].lookup(point[1:])
        i = min(max(bisect_right(keys, x) - 1, 0), len(keys) - 2)
        lo, hi = keys[i], keys[i + 1]
        w = (x - lo) / (hi - lo)  # > 1 above the grid: linear extrapolation from the top two
        if w <= 0:
            return self.children[i].lookup(point[1:])
        a, b = self.children[i].lookup(point[1:]), self.children[i + 1].lookup(point[1:])
        return max(0.0, a + w * (b - a))  # extrapolated over a falling pair: never a negative time

    def lookup_last(self, point: tuple[float, ...], values: np.ndarray) -> np.ndarray:
        """``lookup((*point, v))`` for each ``v`` of ``values`` (the last axis varying, as along a decode window): the
        same brackets and arithmetic, vectorised."""
        if self.children is None:
            return interpolate_many(self.keys, self.leaf, values)
        x = point[0]
        keys = self.keys
        if len(keys) == 1:
            return self.children[0].lookup_last(point[1:], values)
        i = min(max(bisect_right(keys, x) - 1, 0), len(keys) - 2)
        lo, hi = keys[i], keys[i + 1]
        w = (x - lo) / (hi - lo)
        if w <= 0:
            return self.children[i].lookup_last(point[1:], values)
        a, b = self.children[i].lookup_last(point[1:], values), self.children[i + 1].lookup_last(point[1:], values)
        return np.maximum(a + w * (b - a), 0.0)
