"""Trace statistics: the reuse ceiling equals a brute-force infinite-cache replay; rates by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trace import blocks as bm
from trace.request import Trace, TraceProvenance
from trace.stats import arrival_rate_bins, peak_arrival_rate, trace_stats


def _trace(arrival, blocks_per_req, block_ids, inputs=None):
    n = len(arrival)
    offsets = bm.offsets_from_counts(np.array(blocks_per_req))
    ids = np.array(block_ids, dtype=np.int64)
    inp = np.array(inputs if inputs is not None else [16 * b for b in blocks_per_req])
    prov = TraceProvenance(None, "test", None, n, n, 0, {}, "chained", 16)
    return Trace(np.array(arrival, float), inp, np.ones(n, dtype=np.int64), np.full(n, -1),
                 offsets, ids, len(set(block_ids)), prov)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.integers(0, 20), min_size=1, max_size=8), min_size=1, max_size=30))
def test_infinite_cache_hit_ratio_equals_replay(requests):
    flat = [b for r in requests for b in r]
    t = _trace(list(range(len(requests))), [len(r) for r in requests], flat)
    cache, hits = set(), 0
    for b in flat:
        hits += b in cache
        cache.add(b)
    assert trace_stats(t)["infinite_cache_hit_ratio"] == hits / len(flat)
    assert trace_stats(t)["accesses"] == len(flat)


def test_rates_and_distributions_by_hand():
    # 5 requests at 0, 1, 2, 12, 25 s: 3 in the first 10 s bin -> peak 0.3 req/s; mean 5 / 25 s
    t = _trace([0, 1, 2, 12, 25], [1, 1, 1, 1, 1], [0, 1, 2, 3, 4], inputs=[10, 20, 30, 40, 50])
    s = trace_stats(t)
    assert s["requests"] == 5 and s["duration_s"] == 25.0
    assert s["rate_mean_rps"] == 0.2 and s["rate_peak_rps"] == 0.3
    assert s["input_tokens"]["mean"] == 30.0 and s["input_tokens"]["p50"] == 30.0
    assert s["input_tokens"]["max"] == 50.0
    assert s["input_tokens"]["p99"] == 40 + 0.96 * 10  # numpy linear interpolation
    assert s["requests_at_shared_instants"] == 0 and s["requests_at_one_instant_max"] == 1


def test_requests_sharing_an_arrival_instant_are_counted_with_the_largest_group():
    # arrivals 0, 0, 0, 4, 7, 7, 9: five of the seven share an instant (3 at 0, 2 at 7), three at most; a rate scale
    # never spreads those (--max-rate's note names them)
    s = trace_stats(_trace([0, 0, 0, 4, 7, 7, 9], [1] * 7, list(range(7))))
    assert s["requests_at_shared_instants"] == 5 and s["requests_at_one_instant_max"] == 3
    empty = trace_stats(_trace([], [], []))
    assert empty["requests_at_shared_instants"] == 0 and empty["requests_at_one_instant_max"] == 0


def test_a_span_under_a_bin_and_a_partial_last_bin_rate_over_the_time_they_cover():
    # 2 requests 1 s apart: one bin of the span, 2 / 1 s (it was 2 / 10 s = 0.2, under the mean of 2)
    s = trace_stats(_trace([0, 1], [1, 1], [0, 1]))
    assert s["rate_mean_rps"] == 2.0 and s["rate_peak_rps"] == 2.0
    # 0, 1, 2 in [0, 10); 12, 13, 14, 15 and 21 in the last bin, [10, 21], which takes the second past 20: 5 / 11 s
    # (it was [10, 20) with 4 / 10 s, then 1 / 10 s in [20, 30), though the trace ends at 21)
    t = _trace([0, 1, 2, 12, 13, 14, 15, 21], [1] * 8, list(range(8)))
    rates, edges = arrival_rate_bins(t.arrival_s)
    assert edges.tolist() == [0.0, 10.0, 21.0] and rates.tolist() == [0.3, 5 / 11]
    assert trace_stats(t)["rate_peak_rps"] == 5 / 11
    # no span (one request, or all at once): no rate, as the mean (0)
    assert trace_stats(_trace([3, 3], [1, 1], [0, 1]))["rate_peak_rps"] == 0.0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False, allow_subnormal=False), min_size=1, max_size=60),
       st.sampled_from([0.0, 1e-6, 9.999, 10.0, 1e5]))
def test_peak_rate_is_never_below_the_mean(times, start):
    arrival = start + np.sort(np.array(times))
    t = _trace(arrival.tolist(), [1] * len(arrival), list(range(len(arrival))))
    s = trace_stats(t)
    assert s["rate_peak_rps"] >= s["rate_mean_rps"]
    rates, edges = arrival_rate_bins(t.arrival_s)
    assert peak_arrival_rate(t.arrival_s) == (rates.max() if len(rates) else 0.0)  # the occupied bins' max is theirs
    if s["duration_s"] > 0:  # the bins themselves, not only the reported max: they cover the span, every request once
        assert rates.max() >= s["rate_mean_rps"] * (1 - 1e-12)
        assert edges[0] == arrival[0] and edges[-1] == arrival[-1]
        widths = np.diff(edges)
        assert np.all(widths[:-1] == pytest.approx(10.0))
        assert len(widths) == 1 or 10.0 <= widths[-1] < 20.0 + 1e-6
        assert np.sum(rates * np.diff(edges)) == pytest.approx(len(arrival))


def test_truncate_inputs_cuts_prompts_and_their_blocks():
    t = _trace([0, 1], [3, 1], [7, 8, 9, 7], inputs=[48, 16])
    t.truncate_inputs(20)  # 20 tokens -> 2 blocks of 16
    assert t.input_tokens.tolist() == [20, 16] and t.block_offsets.tolist() == [0, 2, 3]
    assert t.access_stream().tolist() == [7, 8, 7] and t.num_unique_blocks == 2
    assert t.provenance.inputs_truncated == 1


def test_select_range_keeps_block_ids_and_restarts_time():
    t = _trace([5, 6, 7, 8], [1, 2, 1, 1], [3, 4, 5, 3, 6])
    t.select_range(0.5, 1.0)
    assert t.arrival_s.tolist() == [0.0, 1.0] and t.block_offsets.tolist() == [0, 1, 2]
    assert t.access_stream().tolist() == [3, 6] and t.num_unique_blocks == 2
    assert t.provenance.request_range == (2, 4)


def test_the_peak_of_a_long_sparse_trace_is_counted_over_its_occupied_bins():
    """Four requests 1e8 s apart: 3e7 bins of 10 s, of which four hold a request (the last runs from 3e8 - 10 s to
    the last arrival, 10 s wide): one request a bin, 0.1 /s (mean 4 / 3e8). hrev's finding: the bins were built
    whole, 858 MB and 3.4 s for four requests; the peak is now a function of the requests alone."""
    arrival = np.array([0.0, 1e8, 2e8, 3e8])
    assert peak_arrival_rate(arrival) == 0.1
    s = trace_stats(_trace(arrival.tolist(), [1] * 4, [0, 1, 2, 3]))
    assert s["rate_peak_rps"] == 0.1 and s["rate_mean_rps"] == 4 / 3e8


def test_a_distribution_is_of_the_finite_values_only():
    """NaN (a request with no value) and infinities are left out: {1, 2, 3} has mean 2, median 2, p95 2.9 (numpy's
    linear: 2 + 0.9 x 1), max 3; none finite: the ``empty`` value for every entry."""
    from trace.stats import distribution

    d = distribution(np.array([1.0, np.nan, 2.0, np.inf, 3.0, -np.inf]), percentiles=(50, 95))
    assert d == pytest.approx({"mean": 2.0, "p50": 2.0, "p95": 2.9, "max": 3.0})
    assert distribution(np.array([np.nan]), percentiles=(50,), with_max=False, empty=-1.0) == {"mean": -1.0, "p50": -1.0}
