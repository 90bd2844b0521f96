"""No stall at any simulated time: sparse traces spanning 13 hours and 7 days complete every request.

Past 2^14 s an absolute time tolerance of 1e-12 s is below one ulp of ``now``; a link's completion
event then rescheduled itself forever (PITFALLS: "a 7-day sparse trace completes"). The engine's
watchdog turns any such stall into an error instead of a hang, so this test fails rather than hangs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

HOUR, DAY = 3600.0, 86400.0


def _sparse_trace(path, span_s: float, n: int, seed: int) -> None:
    """A Splitwise-format CSV (seconds): ``n`` requests over ``span_s``, half of them in same-instant pairs,
    so PD links carry concurrent flows at large simulated times."""
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0.0, span_s, n // 2))
    times = np.sort(np.concatenate([times, times[: n - len(times)]]))  # pairs arriving together
    lines = ["request_id,request_type,application_id,arrival_timestamp,batch_size,prompt_size,token_size"]
    for i, t in enumerate(times):
        lines.append(f"{i},2,0,{t:.6f},1,{rng.integers(64, 4096)},{rng.integers(2, 400)}")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("span_s", [13 * HOUR, 7 * DAY], ids=["13h", "7d"])
@pytest.mark.parametrize("mode", [[], ["--pd"], ["--pd", "--set", "pd.transfer=pull"],
                                  ["--pd", "--set", "pd.transfer=layerwise"]],
                         ids=["single", "pd-push", "pd-pull", "pd-layerwise"])
def test_sparse_long_trace_completes_every_request(tmp_path, run_cli, mode, span_s):
    n = 300
    trace = tmp_path / "sparse.csv"
    _sparse_trace(trace, span_s, n, seed=int(span_s) % 1000)
    report = tmp_path / "r.json"
    status, _, err = run_cli(*mode, "--workload-trace", trace, "--report-json", report, "--no-plot", "--quiet")
    assert status == 0, err
    metrics = json.loads(report.read_text())["runs"][0]["metrics"]
    assert metrics["requests_completed"] == n
    assert metrics["makespan_s"] > span_s * 0.9  # the run really reached the late requests
    assert metrics["e2e_s"]["p99"] < 60.0  # sparse load: no request waits behind a stalled one


def test_a_windows_steps_ended_by_a_time_count_as_absolute_comparisons_do():
    # ``DecodeWindow.ended`` bisects on offsets from the window's start, which rounding may place on either side of
    # an absolute time: it must count exactly the steps whose end (start + offset, as their events are scheduled) is
    # at or before t (inclusive) or before it, at any magnitude of simulated time, at each end and one ulp either side
    from sim.serving.decode_windows import DecodeWindow

    rng = np.random.default_rng(11)
    for trial in range(3000):
        # up to a week; and starts far below the steps' ends, where ``t - start`` itself rounds
        start = float(rng.uniform(0, (6e5, 1.0, 1e-3)[trial % 3]))
        times = rng.uniform(1e-6, 0.5, size=int(rng.integers(1, 12)))
        ends = times.cumsum().tolist()
        window = DecodeWindow([], [], None, times, ends, start, len(ends))
        absolute = [start + e for e in ends]
        among = int(rng.integers(1, len(ends) + 1))
        for t in (*absolute, *np.nextafter(absolute, np.inf), *np.nextafter(absolute, -np.inf)):
            assert window.ended(t, among) == sum(end <= t for end in absolute[:among])
            assert window.ended(t, among, inclusive=False) == sum(end < t for end in absolute[:among])
