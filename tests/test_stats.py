"""Trace statistics: the reuse ceiling equals a brute-force infinite-cache replay; rates by hand."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from trace.request import Trace, TraceProvenance
from trace.stats import trace_stats
from trace import blocks as bm


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


def test_truncate_inputs_cuts_prompts_and_their_blocks():
    t = _trace([0, 1], [3, 1], [7, 8, 9, 7], inputs=[48, 16])
    t.truncate_inputs(20)  # 20 tokens -> 2 blocks of 16
    assert t.input_tokens.tolist() == [20, 16] and t.block_offsets.tolist() == [0, 2, 3]
    assert t.block_ids.tolist() == [7, 8, 7] and t.num_unique_blocks == 2
    assert t.provenance.inputs_truncated == 1


def test_select_range_keeps_block_ids_and_restarts_time():
    t = _trace([5, 6, 7, 8], [1, 2, 1, 1], [3, 4, 5, 3, 6])
    t.select_range(0.5, 1.0)
    assert t.arrival_s.tolist() == [0.0, 1.0] and t.block_offsets.tolist() == [0, 1, 2]
    assert t.block_ids.tolist() == [3, 6] and t.num_unique_blocks == 2
    assert t.provenance.request_range == (2, 4)
