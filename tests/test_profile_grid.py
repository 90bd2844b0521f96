"""Interpolation over measured tables (``interpolate``, ``GridNode``): hand cases, and the vectorised lookups along a
decode window against the one-point lookups they replace, bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sim.serving.compute import StepShape
from sim.serving.profile_grid import GridNode, interpolate, interpolate_many
from tests.test_profile_tables import _hand_bundle

X, Y = [10.0, 20.0, 40.0], [1.0, 3.0, 2.0]


@pytest.mark.parametrize("value,expected", [
    (0, 1.0),      # below the first point: its value
    (10, 1.0),     # on a knot: its own value
    (15, 2.0),     # halfway up the first segment
    (30, 2.5),     # halfway down the second
    (40, 2.0),     # the last knot
    (60, 1.0),     # above: the last segment extended (falls 0.5 per 10)
    (100, 0.0),    # extended below zero: a time is never negative
])
def test_interpolate_by_hand(value, expected):
    assert interpolate(X, Y, value) == pytest.approx(expected)
    assert interpolate_many(X, Y, np.array([float(value)]))[0] == pytest.approx(expected)


def test_interpolate_is_numpys_within_the_points_and_the_same_on_lists_and_arrays():
    rng = np.random.default_rng(7)
    for _ in range(200):
        x = np.unique(rng.integers(0, 10_000, size=rng.integers(2, 9))).astype(float)
        if len(x) < 2:
            continue
        y = rng.random(len(x)) * 1e-3
        inside = np.concatenate([rng.uniform(x[0], x[-1], 40), x])
        want = np.interp(inside, x, y)
        assert [interpolate(x.tolist(), y.tolist(), v) for v in inside.tolist()] == want.tolist()
        assert [interpolate(x, y, v) for v in inside] == want.tolist()
        everywhere = rng.uniform(x[0] - 500, x[-1] * 3, 60)
        assert interpolate_many(x.tolist(), y.tolist(), everywhere).tolist() == \
            [interpolate(x.tolist(), y.tolist(), v) for v in everywhere.tolist()]


def test_grid_lookup_along_its_last_axis_is_each_points_lookup():
    """Ragged grids (first-axis values with their own second-axis points, single-point axes), points inside, between,
    below and above: ``lookup_last`` gives every point's ``lookup`` exactly."""
    rng = np.random.default_rng(3)
    for _ in range(100):
        rows = [(n, kv, rng.random() * 1e-4)
                for n in np.unique(rng.integers(1, 300, size=rng.integers(1, 6)))
                for kv in np.unique(rng.integers(1, 100_000, size=rng.integers(1, 8)))]
        grid = GridNode(pd.DataFrame(rows, columns=["n", "kv", "t"], dtype=float), ["n", "kv"], "t")
        kvs = np.concatenate([rng.uniform(0, 150_000, 30), [r[1] for r in rows]])
        for n in (0.0, 1.0, float(rng.integers(1, 400)), float(rows[-1][0]), 500.0):
            assert grid.lookup_last((n,), kvs).tolist() == [grid.lookup((n, kv)) for kv in kvs.tolist()]


def test_bundle_decode_window_is_each_steps_time(tmp_path):
    """A bundle without a skew fit prices a whole decode window at once: each step as ``step_time`` prices it alone
    (decode rows over batch sizes 1 and 4 and KV 100 to 300, so the window interpolates and extrapolates)."""
    model = _hand_bundle(tmp_path / "b", attention="prefill_chunk,kv_prefill,n_decode,kv_decode,time_us\n"
                         "0,0,1,100,10\n0,0,1,300,30\n0,0,4,100,25\n0,0,4,300,70\n")
    lengths = [90, 120, 250]
    steps = 120
    times = model.decode_times(StepShape.decode_batch(lengths), steps)
    for step in range(0, steps, 7):
        alone = model.step_time(StepShape.decode_batch([n + step for n in lengths]))
        assert times[step] == pytest.approx(alone, rel=1e-12)  # (the two sum the same parts in another order)


def test_vidur_decode_window_is_each_steps_lookup(tmp_path):
    """Vidur's attention.csv: a decode window's steps, looked up at once, are each step's own lookup."""
    from sim.serving.vidur_compute import VidurAttention
    from sim.specs import model_spec

    rng = np.random.default_rng(0)
    rows = [f"4096,32,8,1,{b},0,{kv},False,,{rng.random()}" for b in (1, 2, 8, 32) for kv in (0, 100, 1000, 5000)]
    path = tmp_path / "attention.csv"
    path.write_text("n_embd,n_q_head,n_kv_head,num_tensor_parallel_workers,batch_size,prefill_chunk_size,"
                    "kv_cache_size,is_prefill,time_stats.attn_prefill.median,time_stats.attn_decode.median\n"
                    + "\n".join(rows) + "\n")
    attention = VidurAttention.load(path, model_spec("llama-3-8b"), 1, 16)
    for seqs in (1, 3, 8, 20, 40):  # inside the batch axis, between its points and above it
        kv_tokens = np.arange(200, dtype=float) * seqs + seqs * 37 + 5
        assert attention.window_decode_times(seqs, kv_tokens).tolist() == \
            [attention.decode_time(seqs, kv / seqs) for kv in kv_tokens.tolist()]


def _per_node_grid(frame: pd.DataFrame, axes: list[str], value: str) -> tuple:
    """The grid as a node-by-node construction defines it, to compare ``GridNode`` with: each node's sorted values of
    its axis, and per value the sub-grid of the rows holding it (their order kept); at the last axis each value's
    mean as pandas takes it (its groupby mean over those rows, whose last bit depends on their order)."""
    keys = np.sort(frame[axes[0]].unique()).astype(float)
    if len(axes) == 1:
        return keys.tolist(), frame.groupby(axes[0])[value].mean().reindex(keys).to_numpy(float).tolist()
    return keys.tolist(), [_per_node_grid(frame[frame[axes[0]] == k], axes[1:], value) for k in keys]


def _as_tuple(node: GridNode) -> tuple:
    if node.children is None:
        return node.keys, node.leaf
    return node.keys, [_as_tuple(c) for c in node.children]


def test_grid_by_hand():
    """Rows out of order, one point measured twice (its mean), a first-axis value with a single second-axis point."""
    frame = pd.DataFrame({"a": [2, 1, 1, 1], "b": [10, 20, 10, 10], "t": [4.0, 3.0, 1.0, 2.0]})
    grid = GridNode(frame, ["a", "b"], "t")
    assert _as_tuple(grid) == ([1.0, 2.0], [([10.0, 20.0], [1.5, 3.0]), ([10.0], [4.0])])
    assert grid.lookup((1.5, 10.0)) == 2.75  # halfway between a=1 (1.5) and a=2 (4.0)


def test_grid_is_the_per_node_construction_bit_for_bit():
    """Random ragged grids of one to four axes (whole-number and fractional values), rows shuffled, many points
    measured more than once, some times blank: every node's keys and leaf values equal the node-by-node
    construction's exactly, repeated points' means included."""
    rng = np.random.default_rng(11)
    for trial in range(200):
        n, k = int(rng.integers(1, 150)), int(rng.integers(1, 5))
        cols = {f"a{i}": rng.integers(0, 4, n) * (1 if trial % 2 else 1.5) for i in range(k)}
        cols["t"] = rng.random(n) * 10 ** rng.uniform(-9, 3)
        if trial % 5 == 0:
            cols["t"][rng.random(n) < 0.2] = np.nan
        frame = pd.DataFrame(cols).sample(frac=1, random_state=trial)
        axes = [str(a) for a in rng.permutation([f"a{i}" for i in range(k)])]
        assert repr(_as_tuple(GridNode(frame, axes, "t"))) == repr(_per_node_grid(frame, axes, "t"))


def test_grid_is_built_in_one_pass(monkeypatch):
    """A 4-axis table of 20 x 10 x 10 x 8 points (Bailian's attention.csv holds 8,643 rows) is split in one pass,
    not grouped node by node (a pandas groupby per leaf and a mask per node cost ~1.2 s a load, paid by every run
    of a --max-rate search): no groupby at all without repeated points, one for the one leaf that holds a
    repeated point."""
    calls = []
    groupby = pd.DataFrame.groupby
    monkeypatch.setattr(pd.DataFrame, "groupby", lambda self, *a, **kw: calls.append(a) or groupby(self, *a, **kw))
    grid = np.array(np.meshgrid(np.arange(20), np.arange(10), np.arange(10), np.arange(8), indexing="ij"))
    frame = pd.DataFrame(grid.reshape(4, -1).T, columns=["p", "q", "n", "kv"]).assign(t=lambda f: f["kv"] * 1e-6)
    axes = ["p", "q", "n", "kv"]
    node = GridNode(frame, axes, "t")
    assert calls == []
    assert node.lookup((3.0, 4.0, 5.0, 6.5)) == pytest.approx(6.5e-6)
    node = GridNode(pd.concat([frame, frame.iloc[[7]].assign(t=1.0)]), axes, "t")
    assert len(calls) == 1
    assert node.lookup((0.0, 0.0, 0.0, 7.0)) == pytest.approx((7e-6 + 1.0) / 2)  # the repeated point: its mean
