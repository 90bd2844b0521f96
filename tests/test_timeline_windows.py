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


# roomy, and tight: the decode instances' memory runs short, transfers wait for it and take blocks a window had
# reserved for its next step (``Instance.settle``; a window running on through that step drifted: TTFT mean 1.016 s
# against single steps' 0.965 s)
@pytest.mark.parametrize("blocks", [4000, 400], ids=["roomy", "tight"])
def test_a_pd_clusters_decode_instances_book_their_windows_steps_where_they_ran(monkeypatch, blocks):
    from sim.cluster.run import run_cluster
    from tests.test_cluster import _trace_and_config

    trace, config = _trace_and_config([
        "cluster.num_racks=3", "cluster.nodes_per_rack=2", "hardware.gpus_per_node=2", "cluster.router=least-loaded",
        "pd.num_prefill=1", "pd.num_decode=1", "workload.synthetic.num_requests=200",
        "workload.synthetic.think_time_median_s=0.5", "workload.synthetic.rate_rps=40",
        "workload.synthetic.input_tokens_mean=512", "workload.synthetic.output_tokens_mean=64",
        f"serving.num_gpu_blocks={blocks}"])
    assert_work_as_single_steps(monkeypatch, lambda: run_cluster(trace, config, pd=True)[0])


def test_book_back_counts_the_steps_started_before_each_sample_as_the_window_compares_them():
    """The compiled loop against ``DecodeWindow.ended`` (bisect over the window's ``ends`` list, settled on absolute
    times): at each sample after the window's start, 1 + the steps among the first ``steps`` - 1 that ended before
    it; none before the start. Random windows, some starting or with steps ending exactly on a sample."""
    from sim.serving.decode_windows import DecodeWindow
    from sim.serving.timeline import _book_back

    rng = np.random.default_rng(11)
    for case in range(300):
        planned = int(rng.integers(2, 200))
        times = rng.uniform(0.001, 0.03, planned)
        steps = int(rng.integers(1, planned + 1))  # (cut short by an interruption, or whole)
        interval = float(rng.choice([0.0005, 0.004, 0.05]))
        grid = 3.0 + interval * np.arange(1000)
        start = float(grid[int(rng.integers(0, 20))]) if case % 3 == 0 else float(3.0 + rng.uniform(0, 0.1))
        if case % 5 == 0:  # a grid whose samples fall on the steps' ends
            grid = np.sort(np.concatenate([start + times.cumsum()[: min(steps, 500)], grid]))[:1000]
        window = DecodeWindow([], [], None, times, times.cumsum().tolist(), start, steps)
        n = int(rng.integers(1, 1000))
        seqs = int(rng.integers(1, 9))
        work = np.zeros((3, 1000), dtype=np.int64)
        _book_back(work, grid, n, start, times, steps, seqs)
        expected = [0 if t <= start else 1 + window.ended(t, steps - 1, inclusive=False) for t in grid[:n]]
        assert work[0, :n].tolist() == expected, case
        assert work[1, :n].tolist() == work[2, :n].tolist() == [seqs * e for e in expected], case
        assert not work[:, n:].any()
