"""A trace's block ids held as runs of consecutive ids (``trace.id_runs``): the runs of a hand-computed trace, and for
random traces every request's ids, the flat stream and the form picked equal the flat ids' (after cuts too)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from trace import blocks as bm
from trace.id_runs import count_runs, to_runs
from trace.request import Trace, TraceProvenance

BLOCK_TOKENS = 16


def _trace(requests: list[list[int]]) -> Trace:
    """A trace of these prompts' block ids (int64, as a test gives them), each prompt's blocks all full."""
    n = len(requests)
    counts = np.array([len(r) for r in requests], dtype=np.int64)
    flat = np.array([b for r in requests for b in r], dtype=np.int64)
    prov = TraceProvenance(None, "test", None, n, n, 0, {}, "hash_ids", BLOCK_TOKENS)
    return Trace(np.arange(n, dtype=float), counts * BLOCK_TOKENS, np.ones(n, dtype=np.int64), np.full(n, -1),
                 bm.offsets_from_counts(counts), flat, len(set(flat.tolist())), prov)


def _runs(requests: list[list[int]]) -> int:
    """Runs counted by hand: a request's first block starts one, and so does each block not one past the last."""
    return sum(1 for r in requests for k, b in enumerate(r) if k == 0 or b != r[k - 1] + 1)


def _check(trace: Trace, requests: list[list[int]]) -> None:
    """``trace`` holds ``requests``' ids, in the smaller form (runs: at most half the flat bytes)."""
    flat = [b for r in requests for b in r]
    assert trace.access_stream().dtype == np.int32 and trace.access_stream().tolist() == flat
    for i, r in enumerate(requests):
        ids = trace.blocks(i)
        assert ids.dtype == np.int32 and ids.tolist() == r
    runs_bytes = 8 * (len(requests) + 1) + 8 * _runs(requests)
    as_runs = 2 * runs_bytes <= 4 * len(flat)
    assert (trace.id_runs is not None, trace.flat_ids is not None) == (as_runs, not as_runs)
    assert trace.id_bytes == (runs_bytes if as_runs else 4 * len(flat))
    assert trace.block_id_bound() == (max(flat) + 1 if flat else 0)
    assert trace.num_unique_blocks == len(set(flat))


def test_runs_by_hand():
    """[5 6 7 | 5 6 9 10 | 3]: runs (5, 3) | (5, 2) (9, 2) | (3, 1); 8 ids (32 bytes flat) as 4 runs of 3 requests
    take 64 bytes, so the trace keeps them flat. Long prompts [0..99 | 0..49 200..249 | - | 7]: 4 runs, 72 bytes
    instead of 804."""
    short = [[5, 6, 7], [5, 6, 9, 10], [3]]
    offsets = np.array([0, 3, 7, 8], dtype=np.int64)
    ids = np.array([5, 6, 7, 5, 6, 9, 10, 3], dtype=np.int32)
    assert count_runs(offsets, ids) == 4
    run_offsets, first, length = to_runs(offsets, ids, 4)
    assert (run_offsets.tolist(), first.tolist(), length.tolist()) == ([0, 1, 3, 4], [5, 5, 9, 3], [3, 2, 2, 1])
    assert first.dtype == length.dtype == np.int32 and run_offsets.dtype == np.int64
    # a run never crosses a request, even where the ids go on: [0 1 2 | - | 3 4 | 5] is 3 runs
    assert count_runs(np.array([0, 3, 3, 5, 6]), np.arange(6, dtype=np.int32)) == 3
    assert [a.tolist() for a in to_runs(np.array([0, 3, 3, 5, 6]), np.arange(6, dtype=np.int32), 3)] == [
        [0, 1, 1, 2, 3], [0, 3, 5], [3, 2, 1]]
    trace = _trace(short)
    assert trace.id_runs is None and trace.flat_ids.tolist() == ids.tolist()
    _check(trace, short)

    long = [list(range(100)), list(range(50)) + list(range(200, 250)), [], [7]]
    trace = _trace(long)
    assert trace.flat_ids is None
    runs = trace.id_runs
    assert (runs.offsets.tolist(), runs.first.tolist(), runs.length.tolist()) == (
        [0, 1, 3, 3, 4], [0, 0, 200, 7], [100, 50, 50, 1])
    assert trace.id_bytes == 72 and trace.block_id_bound() == 250
    assert trace.blocks(1).tolist() == list(range(50)) + list(range(200, 250)) and trace.blocks(2).tolist() == []
    _check(trace, long)


def test_the_unique_kind_holds_no_ids():
    prov = TraceProvenance(None, "test", None, 2, 2, 0, {}, "unique", BLOCK_TOKENS)
    trace = Trace(np.zeros(2), np.array([32, 16]), np.ones(2, np.int64), np.full(2, -1), np.array([0, 2, 3]), None, 3,
                  prov)
    assert (trace.flat_ids, trace.id_runs, trace.has_block_ids, trace.id_bytes) == (None, None, False, 0)
    assert trace.blocks(1).tolist() == [2] and trace.block_id_bound() == 3
    trace.select_range(0.5, 1.0)  # (a range keeps the global ids, and holds them)
    assert trace.blocks(0).tolist() == [2] and trace.has_block_ids


# a prompt: random ids, or stretches of consecutive ids (some repeating an earlier stretch; some longer than the
# STRETCH ids trace.id_runs.to_runs compares at once), or nothing
_stretch = st.tuples(st.integers(0, 60), st.integers(1, 150))
_prompt = st.one_of(
    st.lists(st.integers(0, 80), max_size=12),
    st.lists(_stretch, min_size=1, max_size=3).map(lambda parts: [s + j for s, n in parts for j in range(n)]),
    st.just([]),
)


@settings(max_examples=300, deadline=None)
@given(requests=st.lists(_prompt, min_size=1, max_size=12), cut=st.sampled_from(["range", "drop", "truncate"]),
       data=st.data())
def test_any_trace_reads_back_its_ids_in_the_smaller_form(requests, cut, data):
    """Every request's ids, the flat stream and the form equal those of the flat ids, also after a request range,
    dropped requests or cut prompts (each compared with the same cut of the lists)."""
    trace = _trace(requests)
    _check(trace, requests)
    n = len(requests)
    if cut == "range":
        start = data.draw(st.sampled_from([0.0, 0.25, 0.5]))
        end = data.draw(st.sampled_from([0.5, 0.75, 1.0]))
        trace.select_range(start, end)
        requests = requests[int(round(start * n)):int(round(end * n))]
    elif cut == "drop":
        mask = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        trace.drop(mask, "test")
        requests = [r for r, gone in zip(requests, mask) if not gone]
    else:
        blocks = data.draw(st.integers(1, 50))
        cuts = any(len(r) > blocks for r in requests)
        trace.truncate_inputs(blocks * BLOCK_TOKENS)
        requests = [r[:blocks] for r in requests] if cuts else requests
    if requests:
        _check(trace, requests)


def test_runs_at_exactly_half_the_flat_bytes_are_held_as_runs():
    """One request of 12 consecutive ids: 48 bytes flat, one run 24 (8 * (1 + 1) offsets + 8): exactly half, held as
    runs ("at most half"); with 11 ids, 44 bytes flat, more than half: flat."""
    assert _trace([list(range(12))]).id_runs is not None
    assert _trace([list(range(11))]).id_runs is None
