"""Online features of every block access, and next-use labels for training.

Each feature of the access at stream position t uses only accesses at positions ≤ t and
the requests that arrived by then (what a real cache could know then), so features for a
whole stream are computed in one vectorised pass and predictions are made in one batch
before the replay, without look-ahead. None depends on the cache's own state, which keeps
them policy-independent.

Besides the block's own reuse history (LRB's gaps, counts and age), the features use what
a KV cache knows and a CDN cache does not:
- *prompt structure*: the block's depth in its prefix chain, how much of the prompt follows
  it, whether it is a partly filled last block (vLLM never reuses one: the next turn appends
  tokens to it, so its chained hash changes);
- *prefix sharing*: how many distinct continuations branched off this block so far;
- *sessions and turns*: a request continues a session when the trace says so (session ids),
  or else when its prompt contains every full block of an earlier request's prompt, which
  then is its previous turn (Mooncake's chained hash ids carry no session id). Turn index,
  seconds since the previous turn and before it, and the session's age describe the
  conversation; how much of the prompt was seen before and how much is new describe the turn;
  the response length too: a request's blocks can be evicted only once it has finished (vLLM
  frees them then), when its response length is known.

Labels (training only) come from the future: the distance, in accesses, to the block's
next use (``next_use_distance``; see ``learned.train`` for how it is turned into a target).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sim.cache.access import NEVER, next_use_index, previous_use_index, tokens_per_access
from sim.jit import njit
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
    "log_blocks_after",  # blocks of the prompt after this one (0: the leaf)
    "block_fill",  # tokens in the block / block size (< 1: a partly filled last block)
    "log_children",  # distinct blocks seen following it (how many prompts branched off this prefix)
    "turn",  # the request's turn in its session (0: first)
    "turn_gap_s",  # seconds since the session's previous turn (NaN on a first turn)
    "prev_turn_gap_s",  # ... and between the two turns before
    "session_age_s",  # seconds since the session's first turn
    "seen_fraction",  # share of the request's blocks used before (its reused prefix)
    "log_new_blocks",  # blocks of the request never used before
    "log_output_tokens",  # the request's response length (known when its blocks can first be evicted)
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


@njit(cache=True)
def _chain_sessions(parent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn index and session root of each request, following ``parent`` (an earlier request or -1)."""
    n = len(parent)
    turn = np.zeros(n, np.int64)
    root = np.arange(n)
    for r in range(n):
        p = parent[r]
        if p >= 0:
            turn[r] = turn[p] + 1
            root[r] = root[p]
    return turn, root


def previous_turn(trace: Trace, prev: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Each request's previous turn in its session (-1: none).

    With session ids, the session's previous request. Without, the request that last
    used the deepest already-seen block of this prompt, if this prompt holds every full
    block of that request's prompt (it continues that conversation); a prompt that only
    shares a system prompt with earlier ones starts a session.
    """
    n = len(trace)
    parent = np.full(n, -1, dtype=np.int64)
    session = trace.session_id
    has_session = session >= 0
    if has_session.any():
        frame = pd.DataFrame({"s": session[has_session], "r": np.flatnonzero(has_session)})
        earlier = frame.groupby("s")["r"].shift(1)
        parent[has_session] = earlier.fillna(-1).to_numpy(np.int64)
        return parent
    seen = np.flatnonzero(prev >= 0)
    if len(seen) == 0:
        return parent
    deepest = pd.Series(seen).groupby(owner[seen]).last()  # positions increase within a request
    requests = deepest.index.to_numpy(np.int64)
    candidate = owner[prev[deepest.to_numpy(np.int64)]]
    matched_depth = deepest.to_numpy(np.int64) - trace.block_offsets[requests]
    full_blocks = trace.input_tokens[candidate] // trace.provenance.block_tokens
    continues = (full_blocks > 0) & (matched_depth + 1 >= full_blocks)
    parent[requests[continues]] = candidate[continues]
    return parent


def access_features(trace: Trace) -> np.ndarray:
    """An (accesses × len(FEATURES)) float32 matrix for the trace's plain access stream.

    Columns are written as they are computed and the temporaries dropped, so memory stays at
    the matrix plus a few stream-length arrays (10 M accesses: about 3 GB at the peak).
    """
    stream = trace.access_stream()
    n = len(stream)
    out = np.empty((n, len(FEATURES)), dtype=np.float32)
    column = {name: i for i, name in enumerate(FEATURES)}

    def put(name: str, values: np.ndarray) -> None:
        out[:, column[name]] = values

    t = np.arange(n, dtype=np.int64)
    prev = previous_use_index(stream)
    put("log_gap1", _log(np.where(prev >= 0, t - prev, np.nan)))
    put("log_gap2", _log(_previous_gap(prev, prev)))
    put("log_gap3", _log(_previous_gap(prev, np.where(prev >= 0, prev[np.maximum(prev, 0)], -1))))

    order = np.argsort(stream, kind="stable")
    sorted_keys = stream[order]
    group_start = np.r_[0, np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1] if n else np.zeros(0, np.int64)
    del sorted_keys
    starts = np.repeat(group_start, np.diff(np.r_[group_start, n]))
    earlier = np.empty(n, dtype=np.int64)
    earlier[order] = t - starts  # earlier uses of the same block
    put("log_count", _log(earlier))
    earlier[order] = order[starts]  # its first use
    put("log_age", _log(t - earlier))
    del order, starts, earlier

    owner, depth = block_positions(trace.block_offsets)
    arrival = trace.arrival_s[owner]
    put("gap1_seconds", np.where(prev >= 0, arrival - arrival[np.maximum(prev, 0)], np.nan))
    del arrival
    blocks_in_prompt = np.diff(trace.block_offsets)[owner]
    put("depth", depth)
    put("depth_fraction", depth / np.maximum(blocks_in_prompt, 1))
    put("log_prompt_blocks", _log(blocks_in_prompt))
    put("log_blocks_after", _log(blocks_in_prompt - depth - 1))
    del blocks_in_prompt, depth
    put("block_fill", tokens_per_access(trace) / trace.provenance.block_tokens)

    # Distinct children seen so far: first appearance of each (block, next block in the same prompt) pair.
    has_child = np.r_[owner[1:] == owner[:-1], False]
    pairs = pd.DataFrame({"p": stream[has_child], "c": stream[np.r_[False, has_child[:-1]]], "t": t[has_child]})
    pairs = pairs.drop_duplicates(["p", "c"], keep="first")
    combined = np.sort(pairs["p"].to_numpy(np.int64) * (n + 1) + pairs["t"].to_numpy(np.int64))
    del pairs, has_child
    key = stream.astype(np.int64) * (n + 1)
    put("log_children", _log(np.searchsorted(combined, key + t, side="right") - np.searchsorted(combined, key)))
    del combined, key, t

    # Sessions and turns (request level, then broadcast to the request's blocks).
    parent = previous_turn(trace, prev, owner)
    turn, root = _chain_sessions(parent)
    has_parent = parent >= 0
    turn_gap = np.where(has_parent, trace.arrival_s - trace.arrival_s[np.maximum(parent, 0)], np.nan)
    blocks = np.diff(trace.block_offsets)
    seen_blocks = np.bincount(owner, weights=(prev >= 0), minlength=len(trace))
    put("turn", turn[owner])
    put("turn_gap_s", turn_gap[owner])
    put("prev_turn_gap_s", np.where(has_parent, turn_gap[np.maximum(parent, 0)], np.nan)[owner])
    put("session_age_s", (trace.arrival_s - trace.arrival_s[root])[owner])
    put("seen_fraction", (seen_blocks / np.maximum(blocks, 1))[owner])
    put("log_new_blocks", _log(blocks - seen_blocks)[owner])
    put("log_output_tokens", _log(trace.output_tokens)[owner])
    return out


def next_use_distance(stream: np.ndarray) -> np.ndarray:
    """Accesses until each block's next use; ``NEVER`` where it is not used again in the stream."""
    nxt = next_use_index(stream)
    return np.where(nxt == NEVER, NEVER, nxt - np.arange(len(stream)))
