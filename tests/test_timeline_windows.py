"""The run's time series books a decode window's steps in the intervals they ran in, as single steps book
themselves: each step in the interval it starts in (a single step adds itself to the counters as it starts; a window
adds its steps as it ends, and the samples taken while it ran are given those that had started before each)."""

from __future__ import annotations

import numpy as np
import pytest

import sim.serving.decode_windows
from sim.config import load_config
from sim.serving.run import run_serving
from tests.test_serving import make_trace
from tests.test_serving_by_hand import _price


def test_a_decode_windows_steps_count_in_the_intervals_they_started_in():
    """A (16 tokens in, 30 out) at 0, B (16 in, 1 out) at 0.25 s, one instance: the grid's interval is the arrivals'
    span over a quarter of its 1,000 points, 0.25 s / 250 = 1 ms, and the run ends well before 1,000 of them (no
    doubling). By hand from the compute model's prices: A's prefill runs from 0 to p, then its 29 decode steps (one
    window: nothing else waits) back to back, step k over 16 + k KV tokens; B's prefill starts at 0.25 s, A done by
    then. Each interval [i, i + 1) ms holds the steps that start in it; before, the window's 29 steps all fell in the
    interval where it ended."""
    config = load_config(None, sets=["serving.num_instances=1", "serving.block_size=16"])
    p = _price(config, prefills=((16, 0),))
    decode = [_price(config, decode_kv=(16 + k,)) for k in range(1, 30)]
    starts = np.array([0.0, *(p + np.cumsum([0.0, *decode[:-1]])), 0.25])  # A's prefill, its 29 decodes, B's prefill
    tokens = np.array([16, *[1] * 29, 16])
    assert p + sum(decode) < 0.25  # (the premise: A is done before B arrives, its window whole)
    result, requests = run_serving(make_trace([0.0, 0.25], [16, 16], [30, 1]), config, "single")
    assert requests.last_token[0] == pytest.approx(p + sum(decode), rel=1e-12)  # (the premise: the steps priced so)
    ts = result.metrics["timeseries"]
    interval = 0.25 / 250
    assert ts["interval_s"] == interval
    grid = interval * np.arange(len(ts["t_s"]))
    assert np.abs(starts[1:30, None] - grid).min() > 1e-9  # (no decode starts on a sample: no rounding decides it)
    where = np.searchsorted(grid, starts, side="right") - 1
    assert len(set(where[1:30].tolist())) > 10  # (the premise: the window spans many intervals)
    work = ts["work"]["unified"]
    assert work["steps"].tolist() == np.bincount(where, minlength=len(grid)).tolist()
    assert work["tokens"].tolist() == np.bincount(where, weights=tokens, minlength=len(grid)).astype(int).tolist()
    assert work["seqs"].tolist() == np.bincount(where, minlength=len(grid)).tolist()
    assert (work["steps"].sum(), work["tokens"].sum()) == (31, 61)  # the run's totals, as before


def _work(result) -> dict:
    return {role: {key: np.asarray(v).tolist() for key, v in w.items()}
            for role, w in result.metrics["timeseries"]["work"].items()}


def assert_work_as_single_steps(monkeypatch, run) -> None:
    """``run()``'s time series of work is the same with decode windows as with single steps (``MAX_WINDOW_STEPS`` 1),
    interval by interval, and sums to the run's steps."""
    windowed = run()
    monkeypatch.setattr(sim.serving.decode_windows, "MAX_WINDOW_STEPS", 1)
    stepped = run()
    monkeypatch.undo()
    assert _work(windowed) == _work(stepped)
    steps = sum(sum(w["steps"]) for w in _work(windowed).values())
    assert steps == windowed.metrics["instances"]["steps"]


def test_a_grid_that_doubles_under_a_window_books_its_steps_where_they_ran(monkeypatch):
    # 100 requests within 0.1 s served one at a time for seconds: the interval doubles many times, each window of 399
    # steps spanning several intervals and doublings
    trace = make_trace(np.linspace(0, 0.1, 100), np.full(100, 500), np.full(100, 400))
    config = load_config(None, sets=["serving.num_instances=1", "serving.num_gpu_blocks=1000",
                                     "serving.max_num_seqs=1"])

    def run():
        result = run_serving(trace, config, "single")[0]
        assert result.metrics["timeseries"]["interval_s"] >= 0.1 / 250 * 2**5  # (the premise: it doubled)
        return result

    assert_work_as_single_steps(monkeypatch, run)


def test_a_clusters_decode_windows_book_their_steps_where_they_ran(monkeypatch, shared_data):
    from sim.cluster.run import run_cluster
    from tests.test_cluster import _trace_and_config

    trace, config = _trace_and_config([f"workload.trace={shared_data / 'traces' / 'mooncake_conversation.jsonl'}",
                                       "workload.limit=100", "cluster.num_racks=1", "cluster.nodes_per_rack=2",
                                       "hardware.gpus_per_node=4"])
    assert_work_as_single_steps(monkeypatch, lambda: run_cluster(trace, config)[0])
