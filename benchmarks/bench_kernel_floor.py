"""Benchmark: how far kvsim's LRU replay is from what one compiled loop can do on the same stream.

This prints, on bench_cache's stream (Mooncake conversation, 8-token blocks, first 6,285 requests:
10 M accesses, capacity 20,000), the rate of three LRU replays with equal hit counts:

- ``dense``: a minimal LRU over dense block ids (an id-indexed slot array and one intrusive list);
- ``hashed``: the same with an open-addressing hash directory (linear probing, backward-shift
  deletion, the arena's multiplier), as kvsim's arena indexes blocks in serving and cluster runs;
- ``kvsim``: ``sim.cache.replay.replay`` with policy ``lru`` (the arena engine: a one-tier cache
  over a direct-mapped block index, through the policy's own hooks).

The gap between ``dense`` and ``kvsim`` is what the engine's one implementation per policy costs
(slots shared by every policy, holder chains, room checks, counters). These minimal loops are
measuring sticks, not policies: kvsim keeps one implementation per policy. Measured 2026-11-30:
dense 192 M/s, hashed 83 M/s, kvsim 83 M/s (it was 27 M/s before the one-tier replay and the
direct-mapped index).

    python benchmarks/bench_kernel_floor.py [--repeat R]
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the project's `trace` package, not the stdlib module

import sim.script_start  # noqa: E402, F401 (first: a Ctrl-C while the libraries below load ends in one line)

# isort: split

import time  # noqa: E402

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from sim.cache.arena_layout import GOLDEN  # noqa: E402
from sim.command import command_status, end_process, raise_if_stopped  # noqa: E402

TRACE = REPO / ".." / "shared" / "data" / "traces" / "mooncake_conversation.jsonl"


@njit(inline="always")
def _slots(capacity):
    """The cache's slots: the block each holds, and its LRU list's links."""
    return np.empty(capacity, np.int64), np.empty(capacity, np.int32), np.empty(capacity, np.int32)


@njit(inline="always")
def _to_tail(prev, nxt, s, head, tail):
    """Move slot ``s`` of the LRU list to its tail (most recent); the new (head, tail)."""
    if s != tail:
        p, q = prev[s], nxt[s]
        if p >= 0:
            nxt[p] = q
        else:
            head = q
        prev[q] = p
        prev[s], nxt[s], nxt[tail], tail = tail, -1, s, s
    return head, tail


@njit(inline="always")
def _append(prev, nxt, s, head, tail):
    """Put slot ``s`` at the tail of the LRU list; the new (head, tail)."""
    prev[s], nxt[s] = tail, -1
    if tail >= 0:
        nxt[tail] = s
    else:
        head = s
    return head, s


@njit(inline="always")
def _slot_for_new(prev, nxt, head, used, capacity):
    """A slot for a block not cached: an unused one, else the least recent (taken off the list's head);
    (slot, new head, slots used, whether a block was evicted from it)."""
    if used < capacity:
        return used, head, used + 1, False
    s = head
    head = nxt[s]
    prev[head] = -1
    return s, head, used, True


@njit
def dense_lru(stream, num_ids, capacity):
    """Hits of an LRU cache of ``capacity`` blocks over ids in [0, num_ids)."""
    slot_of = np.full(num_ids, -1, np.int32)
    key, prev, nxt = _slots(capacity)
    head = tail = -1
    used = hits = 0
    for i in range(len(stream)):
        k = stream[i]
        s = slot_of[k]
        if s >= 0:
            hits += 1
            head, tail = _to_tail(prev, nxt, s, head, tail)
            continue
        s, head, used, evicted = _slot_for_new(prev, nxt, head, used, capacity)
        if evicted:
            slot_of[key[s]] = -1
        key[s], slot_of[k] = k, s
        head, tail = _append(prev, nxt, s, head, tail)
    return hits


@njit(inline="always")
def _home(k, shift):
    return np.int64((np.uint64(k) * GOLDEN) >> np.uint64(shift))


@njit
def hashed_lru(stream, capacity, bits):
    """``dense_lru`` with a linear-probing directory of 2**bits cells instead of the id-indexed array."""
    mask, shift = (1 << bits) - 1, 64 - bits
    table = np.full(1 << bits, -1, np.int32)
    key, prev, nxt = _slots(capacity)
    head = tail = -1
    used = hits = 0
    for i in range(len(stream)):
        k = stream[i]
        j = _home(k, shift)
        s = -1
        while table[j] >= 0:
            if key[table[j]] == k:
                s = table[j]
                break
            j = (j + 1) & mask
        if s >= 0:
            hits += 1
            head, tail = _to_tail(prev, nxt, s, head, tail)
            continue
        s, head, used, evicted = _slot_for_new(prev, nxt, head, used, capacity)
        if evicted:
            d = _home(key[s], shift)  # the victim's cell, then backward-shift deletion
            while table[d] != s:
                d = (d + 1) & mask
            e = d
            while True:
                e = (e + 1) & mask
                other = table[e]
                if other < 0:
                    break
                h = _home(key[other], shift)
                if (e > d and (h <= d or h > e)) or (e < d and (h <= d and h > e)):
                    table[d] = other
                    d = e
            table[d] = -1
            j = _home(k, shift)
            while table[j] >= 0:
                j = (j + 1) & mask
        key[s], table[j] = k, s
        head, tail = _append(prev, nxt, s, head, tail)
    return hits


def best_rate(fn, n: int, repeat: int) -> tuple[int, float]:
    best = float("inf")
    for _ in range(repeat):
        raise_if_stopped()  # a Ctrl-C numba swallowed while it compiled the kernels: stop here, not after every repeat
        start = time.perf_counter()
        hits = fn()
        best = min(best, time.perf_counter() - start)
    return hits, n / best / 1e6


def main() -> None:
    from sim.cli import OneLineParser  # a flag of one value given twice is refused (argparse kept the last)

    ap = OneLineParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3,
                    help="time each replay R times and keep the best (default: %(default)s)")
    args = ap.parse_args()
    if args.repeat < 1:  # --repeat 0 timed nothing, then failed on an unset result (a traceback, exit 1)
        ap.error(f"--repeat must be at least 1, got {args.repeat}")
    if not TRACE.is_file():
        ap.error(f"trace not found: {TRACE}")
    from sim.cache.replay import replay
    from sim.config import load_config
    from trace.workload import load_workload

    capacity = 20_000
    config = load_config(None, sets=[f"workload.trace={TRACE}", "serving.block_size=8", "workload.limit=6285",
                                     "workload.block_mismatch=split", f"cache.capacity_blocks={capacity}"])
    trace = load_workload(config)
    stream = trace.access_stream().astype(np.int64)
    n, num_ids = len(stream), int(stream.max()) + 1
    bits = max(4, int(np.ceil(np.log2(capacity / 0.7))))  # the arena's load bound, 0.7
    dense_lru(stream[:100], num_ids, capacity), hashed_lru(stream[:100], capacity, bits)  # compile
    replay(trace, config, "lru", "plain", capacity)  # load kvsim's kernels
    rows = [("dense", *best_rate(lambda: dense_lru(stream, num_ids, capacity), n, args.repeat)),
            ("hashed", *best_rate(lambda: hashed_lru(stream, capacity, bits), n, args.repeat)),
            ("kvsim", *best_rate(lambda: int((replay(trace, config, "lru", "plain", capacity)[1] >= 0).sum()),
                                 n, args.repeat))]
    print(f"{n:,} accesses, capacity {capacity:,}; M accesses/s, best of {args.repeat}")
    for name, hits, rate in rows:
        print(f"{name:<8} hits {hits:>10,}  {rate:8.1f} M/s  ({rate / rows[-1][2]:.1f}x kvsim)")
    if len({hits for _, hits, _ in rows}) != 1:
        raise SystemExit("HIT COUNTS DIFFER")


if __name__ == "__main__":
    end_process(command_status("bench_kernel_floor.py", main))  # without the interpreter's teardown: see sim.command
