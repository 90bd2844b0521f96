"""Online features of every block access, and next-use labels for training.

Each feature of the access at stream position t uses only accesses at positions ≤ t
(what a real cache could know then), so features for a whole stream are computed in
one vectorised pass and predictions can be made in one batch without any look-ahead.
None depends on the cache's own state, which keeps them policy-independent.

Labels (training only) come from the future: the log of the distance, in accesses,
to the block's next use (one backward pass). A block not used again before the end of
the training stream is right-censored: its distance is only known to exceed the rest of
the stream, and that bound is its label. (Tried on Mooncake: a fixed "never" value of 1,
2 or 10 × the stream length drowns the reused blocks' signal and loses hit ratio at every
capacity; see learned/README.md.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sim.cache.access import NEVER, next_use_index
from sim.cache.mrc import previous_use
from trace.blocks import block_positions
from trace.request import Trace

FEATURES = (
    "log_gap1",  # accesses since this block's previous use
    "log_gap2",  # ... between its previous two uses
    "log_gap3",  # ... between the two before those
    "log_count",  # how many times it was used before
    "log_age",  # accesses since its first use
    "gap1_seconds",  # wall time since its previous use (request arrivals)
    "depth",  # position of the block in its prompt's prefix chain
    "depth_fraction",  # depth / prompt blocks
    "log_prompt_blocks",  # length of the prompt using it
    "log_children",  # distinct blocks seen following it (how many prompts branch off this prefix)
    "session_turn",  # turn index of the request in its session (-1: no session)
    "log_session_age_s",  # seconds since the session's first request
)


def _log(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.asarray(x, dtype=np.float64))


def _previous_gap(prev: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """For each position p (or -1), the gap back to its own previous use (NaN where unknown)."""
    out = np.full(len(positions), np.nan)
    known = positions >= 0
    back = prev[positions[known]]
    gap = np.where(back >= 0, positions[known] - back, np.nan)
    out[known] = gap
    return out


def access_features(trace: Trace) -> np.ndarray:
    """An (accesses × len(FEATURES)) float32 matrix for the trace's plain access stream."""
    stream = trace.access_stream()
    n = len(stream)
    t = np.arange(n, dtype=np.int64)
    prev = previous_use(stream)
    prev2 = np.where(prev >= 0, prev[np.maximum(prev, 0)], -1)
    gap1 = np.where(prev >= 0, t - prev, np.nan)
    gap2 = _previous_gap(prev, prev)
    gap3 = _previous_gap(prev, prev2)

    order = np.argsort(stream, kind="stable")
    sorted_keys = stream[order]
    group_start = np.r_[0, np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1]
    starts = np.repeat(group_start, np.diff(np.r_[group_start, n]))
    count = np.empty(n, dtype=np.int64)
    count[order] = np.arange(n) - starts  # earlier uses of the same block
    first = np.empty(n, dtype=np.int64)
    first[order] = order[starts]

    owner, depth = block_positions(trace.block_offsets)
    blocks_in_prompt = np.diff(trace.block_offsets)[owner]
    arrival = trace.arrival_s[owner]
    gap1_s = np.where(prev >= 0, arrival - arrival[np.maximum(prev, 0)], np.nan)

    # Distinct children seen so far: first appearance of each (block, next block in the same prompt) pair.
    has_child = np.r_[owner[1:] == owner[:-1], False]
    parents, children, when = stream[has_child], stream[np.r_[False, has_child[:-1]]], t[has_child]
    pairs = pd.DataFrame({"p": parents, "c": children, "t": when}).drop_duplicates(["p", "c"], keep="first")
    combined = np.sort(pairs["p"].to_numpy(np.int64) * (n + 1) + pairs["t"].to_numpy(np.int64))
    children_so_far = (np.searchsorted(combined, stream.astype(np.int64) * (n + 1) + t, side="right")
                       - np.searchsorted(combined, stream.astype(np.int64) * (n + 1), side="left"))

    session = trace.session_id
    turn = np.full(len(trace), -1.0)
    age = np.full(len(trace), np.nan)
    has_session = session >= 0
    if has_session.any():
        frame = pd.DataFrame({"s": session[has_session], "a": trace.arrival_s[has_session]})
        turn[has_session] = frame.groupby("s").cumcount().to_numpy()
        age[has_session] = frame["a"].to_numpy() - frame.groupby("s")["a"].transform("first").to_numpy()

    columns = [
        _log(gap1), _log(gap2), _log(gap3), _log(count), _log(t - first), gap1_s,
        depth.astype(np.float64), depth / np.maximum(blocks_in_prompt, 1), _log(blocks_in_prompt),
        _log(children_so_far), turn[owner], _log(age[owner]),
    ]
    return np.column_stack(columns).astype(np.float32)


def next_use_labels(stream: np.ndarray) -> np.ndarray:
    """log(1 + accesses until the block's next use); not used again: censored at the rest of the stream."""
    nxt = next_use_index(stream)
    n = len(stream)
    position = np.arange(n)
    distance = np.where(nxt == NEVER, n - position, nxt - position)
    return np.log1p(distance.astype(np.float64))
