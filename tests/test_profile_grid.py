"""Interpolation over measured tables (``interpolate``, ``GridNode``): hand cases, and the vectorised lookups along a
decode window against the one-point lookups they replace, bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sim.serving.compute import StepShape
from sim.serving.profile_grid import GridNode, interpolate, interpolate_many
from tests.test_compute import _hand_bundle

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
