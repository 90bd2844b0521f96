"""Measured times interpolated: over one axis (``interpolate``), and over a ragged grid of several (``GridNode``).

Profiled operator tables (Vidur's ``attention.csv``, an LLMServingSim bundle's ``attention.csv``)
are measured on uneven grids; both profiled compute families look their attention kernels up
through this one interpolation. Measured collectives (``sim.serving.measured_collectives``) and the
compute tables' one-axis curves use ``interpolate``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def interpolate(x: Sequence[float], y: Sequence[float], value: float) -> float:
    """Piecewise-linear over strictly increasing ``x``; the first value below it; linear extrapolation from the top two
    above, never below 0 (a measured time that falls over the top two points must not extrapolate to a negative one).
    Within ``x`` the same arithmetic as ``np.interp`` (slope × (value − x[j]) + y[j]; a knot's own value on it),
    in plain Python: lookups are one point at a time and many, and lists (as the grids keep them) index fastest."""
    if len(x) == 1 or value <= x[0]:
        return float(y[0])
    if value >= x[-1]:
        if value == x[-1]:
            return float(y[-1])
        return max(0.0, float(y[-1] + (value - x[-1]) * (y[-1] - y[-2]) / (x[-1] - x[-2])))
    j = bisect_right(x, value) - 1
    below = x[j]
    if value == below:
        return float(y[j])
    return float((y[j + 1] - y[j]) / (x[j + 1] - below) * (value - below) + y[j])


def interpolate_many(x: Sequence[float], y: Sequence[float], values: np.ndarray) -> np.ndarray:
    """``interpolate`` at each of ``values``, vectorised (``np.interp`` within ``x``, whose arithmetic ``interpolate``
    repeats; the same extrapolation above)."""
    if len(x) == 1:
        return np.full(len(values), float(y[0]))
    out = np.interp(values, x, y)
    above = values > x[-1]
    if above.any():
        top, slope_dy, slope_dx = y[-1], y[-1] - y[-2], x[-1] - x[-2]
        out[above] = np.maximum(top + (values[above] - x[-1]) * slope_dy / slope_dx, 0.0)
    return out


class GridNode:
    """A ragged grid over several axes: each value of the first axis holds a sub-grid of the rest.

    Lookup brackets the first axis between its two neighbouring values (linear blend) and
    recurses; rows that exist only for some values of an axis are handled naturally. The axis values and times
    are kept as lists: a lookup is one point, and decode windows make many.
    """

    def __init__(self, frame: pd.DataFrame, axes: list[str], value: str):
        """The grid of ``frame``'s ``value`` over ``axes`` (in every row: the readers require them); a point measured
        more than once is their mean. The rows are sorted once by the axes (a stable sort) and split into the
        nested grid: a node per value built with a pandas mask and ``groupby`` each cost ~1.2 s for a bundle's
        8,600-row attention.csv (100,980 nodes), and every run builds its compute model again (each of a
        ``--max-rate`` search's runs)."""
        if len(axes) == 1:
            self._leaf(frame, axes[0], value)
            return
        order = np.lexsort([frame[axis].to_numpy(float) for axis in reversed(axes)])
        columns = [frame[axis].to_numpy(float)[order] for axis in axes]
        repeated = np.logical_and.reduce([c[1:] == c[:-1] for c in columns])  # a row at its predecessor's point
        self._fill(frame, axes, value, order, columns, frame[value].to_numpy(float)[order],
                   np.concatenate(([0], np.cumsum(repeated))), 0, len(order))

    def _leaf(self, frame: pd.DataFrame, axis: str, value: str) -> None:
        """A one-axis node: each value's mean of ``value`` (pandas' groupby mean, whose last bit depends on the rows'
        order: they are the frame's, in its order)."""
        self.axis = axis
        keys = np.sort(frame[axis].unique()).astype(float)
        self.keys: list[float] = keys.tolist()
        self.leaf: list[float] | None = frame.groupby(axis)[value].mean().reindex(keys).to_numpy(float).tolist()
        self.children: list[GridNode] | None = None

    def _fill(self, frame: pd.DataFrame, axes: list[str], value: str, order: np.ndarray, columns: list[np.ndarray],
              values: np.ndarray, repeats: np.ndarray, lo: int, hi: int) -> None:
        """This node from the sorted rows ``lo:hi``, whose earlier axes are equal (``order``: their rows in
        ``frame``; ``columns`` and ``values`` theirs, sorted; ``repeats[i]``: rows before the i-th at an earlier
        row's point)."""
        self.axis = axes[0]
        if len(axes) == 1:
            if repeats[hi - 1] != repeats[lo]:  # a point measured more than once: the rows' mean, as pandas takes it
                self._leaf(frame.iloc[np.sort(order[lo:hi])], axes[0], value)
                return
            self.keys = columns[0][lo:hi].tolist()
            self.leaf = values[lo:hi].tolist()
            self.children = None
            return
        here = columns[0][lo:hi]
        change = np.ones(len(here), dtype=bool)  # where a new value of this axis begins
        change[1:] = here[1:] != here[:-1]
        starts = np.flatnonzero(change) + lo
        self.keys = columns[0][starts].tolist()
        self.leaf = None
        self.children = []
        for start, end in zip(starts.tolist(), [*starts[1:].tolist(), hi]):
            child = GridNode.__new__(GridNode)
            child._fill(frame, axes[1:], value, order, columns[1:], values, repeats, start, end)
            self.children.append(child)

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
