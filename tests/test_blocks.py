"""Block model: chained ids share exactly the common prefix; interning is dense and deterministic."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from trace import blocks as bm


def _ids_from_token_lists(lists, block_size):
    flat = np.array([t for lst in lists for t in lst], dtype=np.int64)
    tok_offsets = bm.offsets_from_counts(np.array([len(lst) for lst in lists]))
    offsets, keys = bm.token_content_keys(flat, tok_offsets, block_size)
    ids, n_unique = bm.intern(bm.chain(offsets, keys))
    return [ids[offsets[i]:offsets[i + 1]].tolist() for i in range(len(lists))], n_unique


def test_hand_case_shared_prefix():
    # block_size 2: A=[1,2|3,4|5], B=[1,2|3,4|6,7], C=[9,9|3,4], D=[1,2|3,4|5]
    ids, n = _ids_from_token_lists([[1, 2, 3, 4, 5], [1, 2, 3, 4, 6, 7], [9, 9, 3, 4], [1, 2, 3, 4, 5]], 2)
    a, b, c, d = ids
    assert a == [0, 1, 2] and b == [0, 1, 3]  # dense, in order of first appearance
    assert c == [4, 5]  # same tokens [3,4] as block 1 of A, but a different parent: a different block
    assert d == a  # identical prompt, identical blocks (including the partial last block)
    assert n == 6


def test_partial_block_differs_from_full_block_with_same_start():
    ids, _ = _ids_from_token_lists([[1, 2, 3], [1, 2, 3, 4]], 2)
    assert ids[0][0] == ids[1][0] and ids[0][1] != ids[1][1]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=12), min_size=1, max_size=12), st.integers(1, 4))
def test_equal_ids_iff_equal_token_prefix(lists, block_size):
    ids, _ = _ids_from_token_lists(lists, block_size)
    seen: dict[tuple, int] = {}
    for lst, blocks in zip(lists, ids, strict=True):
        for i, block_id in enumerate(blocks):
            prefix = tuple(lst[: (i + 1) * block_size])
            if prefix in seen:
                assert seen[prefix] == block_id
            else:
                assert block_id not in seen.values()
                seen[prefix] = block_id


def test_session_keys_share_full_blocks_only():
    # block_size 4, one session: turn 1 has 10 tokens (2 full + 1 partial), turn 2 has 13 (3 full + 1 partial);
    # a request with no session (-1) and the same length never shares.
    inputs = np.array([10, 13, 10])
    session = np.array([7, 7, -1])
    offsets = bm.offsets_from_counts(bm.blocks_per_request(inputs, 4))
    ids, _ = bm.intern(bm.chain(offsets, bm.session_keys(offsets, inputs, session, 4)))
    t1, t2, other = (ids[offsets[i]:offsets[i + 1]].tolist() for i in range(3))
    assert len(t1) == 3 and len(t2) == 4
    assert t2[:2] == t1[:2] and t2[2] != t1[2]  # turn 1's partial block is not turn 2's full block
    assert not set(other) & (set(t1) | set(t2))


def test_split_block_ids_covers_tokens():
    # two requests of 1,100 and 600 tokens in 512-token trace blocks, split into 256-token blocks
    hash_ids = np.array([10, 11, 12, 10, 13])
    hash_offsets = np.array([0, 3, 5])
    inputs = np.array([1100, 600])
    offsets, ids, n = bm.split_block_ids(hash_ids, hash_offsets, inputs, 512, 256)
    # request 0: 512 -> 2, 512 -> 2, 76 -> 1; request 1: 512 -> 2, 88 -> 1
    assert offsets.tolist() == [0, 5, 8]
    assert ids.tolist() == [0, 1, 2, 3, 4, 0, 1, 5] and n == 6  # trace block 10 shared -> its sub-blocks shared


def _split_reference(hash_ids, hash_offsets, inputs, trace_block, block_size):
    """Sub-block (hash id, k) names, numbered in order of first appearance: a plain loop."""
    numbers: dict[tuple[int, int], int] = {}
    ids, counts = [], []
    for r in range(len(inputs)):
        count = 0
        for depth, h in enumerate(hash_ids[hash_offsets[r]:hash_offsets[r + 1]]):
            covered = max(1, min(trace_block, inputs[r] - depth * trace_block))
            for k in range(-(-covered // block_size)):
                ids.append(numbers.setdefault((int(h), k), len(numbers)))
                count += 1
        counts.append(count)
    return counts, ids, len(numbers)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(0, 6), min_size=1, max_size=5), st.integers(1, 3000)),
                min_size=1, max_size=8), st.sampled_from([16, 64, 128, 512]))
def test_split_block_ids_equal_a_plain_loop(requests, block_size):
    # Random requests over a few shared trace hash ids (prompts ending anywhere in a trace block, or
    # shorter than their hash ids cover): offsets, ids and their count equal the loop's.
    hash_ids = np.array([h for ids, _ in requests for h in ids], dtype=np.int64)
    hash_offsets = bm.offsets_from_counts(np.array([len(ids) for ids, _ in requests]))
    inputs = np.array([tokens for _, tokens in requests], dtype=np.int64)
    offsets, ids, n = bm.split_block_ids(hash_ids, hash_offsets, inputs, 512, block_size)
    counts, expected, expected_n = _split_reference(hash_ids, hash_offsets, inputs, 512, block_size)
    assert np.diff(offsets).tolist() == counts and ids.tolist() == expected and n == expected_n


def test_interning_is_deterministic_and_dense():
    keys = np.array([5, 3, 5, 9, 3], dtype=np.uint64)
    ids, n = bm.intern(keys)
    assert ids.tolist() == [0, 1, 0, 2, 1] and n == 3


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 300), max_size=200), st.sampled_from([0, 1 << 40, -(1 << 20)]))
def test_interning_numbers_values_in_order_of_first_appearance(values, shift):
    # small non-negative ids (the table path) and large or negative ones (the hash path) alike
    keys = np.array(values, dtype=np.int64) + shift
    first_seen: dict[int, int] = {}
    expected = [first_seen.setdefault(v, len(first_seen)) for v in keys.tolist()]
    ids, n = bm.intern(keys)
    assert ids.tolist() == expected and n == len(first_seen)
