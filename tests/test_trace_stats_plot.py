"""The trace-stats plot's arrival-rate panel draws what the report's rates are (read from matplotlib's artists): the
last bin over its width, from zero, coarser bins over a long span, and a sentence where there is no rate to draw or
one past what matplotlib draws."""

from __future__ import annotations

import numpy as np
import pytest


def test_trace_stats_rate_panel_draws_the_last_bin_and_starts_at_zero(figures, tmp_path):
    # Before: a steps-post line ended at the last bin's left edge, so the last bin had no width on the plot,
    # and the rate axis started at the lowest rate (a dip from 3.8 to 2.1 req/s looked like a stop).
    from sim.report.plots import plot_trace_stats
    from trace.stats import RATE_BIN_S

    class Tiny:
        arrival_s = np.array([0.0, 1.0, 2.0, 12.0, 25.0])  # 10 s bins: 3, then 2 in the last, [10, 25]
        input_tokens = np.array([10, 20, 30, 40, 50])
        output_tokens = np.array([1, 2, 3, 4, 5])
        provenance = type("P", (), {"path": "tiny.csv", "format": "azure"})()

        def __len__(self):
            return 5

    assert RATE_BIN_S == 10.0
    plot_trace_stats(Tiny(), tmp_path / "s.png")
    rate_ax = figures[0].axes[0]
    assert rate_ax.dataLim.x1 == pytest.approx(25.0)  # two bins, the last one [10, 25] drawn (rate_peak_rps')
    assert rate_ax.dataLim.y1 == pytest.approx(0.3)  # 3 requests / 10 s
    assert rate_ax.get_ylim()[0] == 0.0


def test_trace_stats_rate_panel_of_a_long_span_draws_coarser_bins(figures, tmp_path):
    # Before: four requests over 3e8 s drew 3e7 bins of 10 s (over ten minutes); now at most PLOT_RATE_BINS bins,
    # each a whole number of 10 s bins wide: 3e8 / (10 x 10,000) = 3,000 bins of 10 s in one, 30,000 s.
    from sim.report.plots import PLOT_RATE_BINS, plot_trace_stats

    class Sparse:
        arrival_s = np.array([0.0, 1e8, 2e8, 3e8])
        input_tokens = np.array([10, 20, 30, 40])
        output_tokens = np.array([1, 2, 3, 4])
        provenance = type("P", (), {"path": "sparse.csv", "format": "azure"})()

        def __len__(self):
            return 4

    assert PLOT_RATE_BINS == 10_000
    plot_trace_stats(Sparse(), tmp_path / "s.png")
    rate_ax = figures[0].axes[0]
    assert rate_ax.get_title() == "Arrival rate (30000 s bins)"
    assert rate_ax.dataLim.x1 == pytest.approx(3e8) and rate_ax.dataLim.y1 == pytest.approx(1 / 30000)


@pytest.mark.parametrize("arrivals, said", [([3.0], "one request: no rate over time"),
                                            ([5.0] * 8, "all 8 requests arrive at one instant: no rate over time")])
def test_trace_stats_rate_panel_without_a_span_says_why_it_is_empty(figures, tmp_path, arrivals, said):
    # Before: one request, or all at one instant, left the arrival-rate panel blank (no bins: the report's rates are 0).
    from sim.report.plots import plot_trace_stats

    class Instant:
        arrival_s = np.array(arrivals)
        input_tokens = np.full(len(arrivals), 100)
        output_tokens = np.full(len(arrivals), 5)
        provenance = type("P", (), {"path": "i.csv", "format": "azure"})()

        def __len__(self):
            return len(arrivals)

    plot_trace_stats(Instant(), tmp_path / "s.png")
    assert [t.get_text() for t in figures[0].axes[0].texts] == [said]


def test_trace_stats_rate_panel_past_what_matplotlib_draws_says_so(figures, tmp_path):
    # Before: two requests 1.2e-308 s apart (a finite rate, 1.67e308 requests/s) overflowed matplotlib's tick locator
    # after the trace-stats were printed: an internal error (exit 1)
    from sim.report.plots import plot_trace_stats

    class Close:
        arrival_s = np.array([0.0, 1.2e-308])
        input_tokens = np.array([100, 100])
        output_tokens = np.array([2, 2])
        provenance = type("P", (), {"path": "c.jsonl", "format": "mooncake"})()

        def __len__(self):
            return 2

    assert (tmp_path / "s.png") == plot_trace_stats(Close(), tmp_path / "s.png")
    assert [t.get_text() for t in figures[0].axes[0].texts] == [
        f"a rate of {2 / 1.2e-308:.4g} requests/s: beyond what the plot draws"]
