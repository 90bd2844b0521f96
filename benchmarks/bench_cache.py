"""Benchmark: cache-only replay speed per policy, against bare-Python and libCacheSim LRU references.

Loads the Mooncake conversation trace with ``trace.loaders.load_trace`` at block_size=16
(its 512-token blocks are split: ~9.06 M block accesses), then on that one stream and one
capacity (default 10% of the unique blocks) times:

- each policy through exactly the replay ``--cache-only`` runs
  (``sim.cache.replay.replay(trace, config, policy, "plain", capacity, next_use)``);
  Belady's next-use index is built once and timed on its own;
- (a) a bare ``collections.OrderedDict`` LRU loop (local bindings, ``in``, ``move_to_end``,
  ``popitem(last=False)``), over ``stream.tolist()`` (the conversion is inside the timing,
  as it is in the replay);
- (b) libCacheSim's LRU through its Python bindings, one ``cache.get(req)`` per access (one
  reused ``Request``, obj_size=1, hashpower sized to the capacity);
- (c) libCacheSim's LRU in C, ``cache.process_trace`` over an oracleGeneral file (``<IQIq>``
  records written with a numpy structured array's ``tofile``; writing is timed separately).

All LRU variants must give the same hit count (a loud warning is printed if not). Prints a
table of accesses/s, hit ratio and each row's speed as a ratio to (a), (b) and (c), then peak
RSS and the load average (other processes on the machine skew the figures).

Run from the repository root::

    python benchmarks/bench_cache.py [--trace PATH] [--capacity N] [--policies lru,fifo,...] [--limit N] [--repeat R]

Defaults: ``../shared/data/traces/mooncake_conversation.jsonl`` (relative to the repository
root), capacity 10% of the stream's unique blocks, policies lru,fifo,lfu,arc,s3fifo,sieve,belady,
the whole stream (``--limit N``: only its first N accesses, for quick runs), one timed run per
case (``--repeat R``: R rounds, every case once per round, best time kept). A full run takes
about two minutes per round. Timings are approximate: they depend on the machine and on whatever
else is running (the load average is printed at the start and the end).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the project's `trace` package, not the stdlib module

import numpy as np  # noqa: E402

DEFAULT_TRACE = REPO / ".." / "shared" / "data" / "traces" / "mooncake_conversation.jsonl"
DEFAULT_POLICIES = "lru,fifo,lfu,arc,s3fifo,sieve,belady"
ORACLE_GENERAL = np.dtype([("clock", "<u4"), ("obj_id", "<u8"), ("size", "<u4"), ("next", "<i8")])  # <IQIq


# ------------------------------------------------------------------------------ helpers


def peak_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def truncate(trace, n: int):
    """The first ``n`` block accesses of ``trace`` (the last request may be cut short)."""
    offsets = trace.block_offsets
    if n >= int(offsets[-1]):
        return trace
    reqs = int(np.searchsorted(offsets[:-1], n, side="left"))  # requests starting before access n
    stream = trace.access_stream()[:n]
    return dataclasses.replace(
        trace,
        arrival_s=trace.arrival_s[:reqs],
        input_tokens=trace.input_tokens[:reqs],
        output_tokens=trace.output_tokens[:reqs],
        session_id=trace.session_id[:reqs],
        block_offsets=np.minimum(offsets[:reqs + 1], n),
        block_ids=np.ascontiguousarray(stream),
        num_unique_blocks=int(len(np.unique(stream))),
    )


def bare_ordereddict_lru(stream: np.ndarray, capacity: int) -> int:
    """Hits of LRU over ``stream``: the tightest reasonable pure-Python loop."""
    od = OrderedDict()
    move, pop = od.move_to_end, od.popitem
    hits = 0
    for key in stream.tolist():
        if key in od:
            move(key)
            hits += 1
        else:
            if len(od) >= capacity:
                pop(last=False)
            od[key] = None
    return hits


def hashpower_for(capacity: int) -> int:
    return max(10, capacity.bit_length() + 1)  # REFERENCE-TOOLS: the default 24 slows small caches


def libcachesim_get_lru(stream: np.ndarray, capacity: int) -> int:
    """Hits of libCacheSim's LRU, one Python ``get`` call per access."""
    import libcachesim as lcs

    cache = lcs.LRU(cache_size=capacity, hashpower=hashpower_for(capacity))
    req = lcs.Request()
    req.obj_size = 1
    get = cache.get
    hits = 0
    for key in stream.tolist():
        req.obj_id = key
        if get(req):
            hits += 1
    return hits


def write_oracle_general(stream: np.ndarray, next_use: np.ndarray, path: Path) -> None:
    records = np.empty(len(stream), dtype=ORACLE_GENERAL)
    records["clock"] = np.arange(len(stream), dtype=np.uint32)
    records["obj_id"] = stream
    records["size"] = 1
    records["next"] = next_use  # INT64_MAX where never used again (libCacheSim's convention)
    records.tofile(path)


def libcachesim_process_trace_lru(path: Path, n: int, capacity: int) -> int:
    """Hits of libCacheSim's LRU over the oracleGeneral file, all in C."""
    import libcachesim as lcs

    cache = lcs.LRU(cache_size=capacity, hashpower=hashpower_for(capacity))
    reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE)
    miss_ratio, _ = cache.process_trace(reader)
    return n - int(round(miss_ratio * n))


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


# --------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", type=Path, default=DEFAULT_TRACE, help="Mooncake JSONL trace (default: %(default)s)")
    ap.add_argument("--capacity", type=int, default=None, help="cache capacity in blocks (default: 10%% of unique blocks)")
    ap.add_argument("--policies", default=DEFAULT_POLICIES, help="comma-separated policies (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N block accesses")
    ap.add_argument("--repeat", type=int, default=1, help="time every case N times, round robin, and keep the best")
    args = ap.parse_args(argv)
    if not args.trace.is_file():
        raise SystemExit(f"error: trace file not found: {args.trace}\n"
                         f"(pass --trace PATH to the Mooncake conversation JSONL, e.g. mooncake_conversation.jsonl)")
    if args.limit is not None and args.limit <= 0:
        ap.error("--limit must be positive")
    if args.capacity is not None and args.capacity <= 0:
        ap.error("--capacity must be positive")
    if args.repeat <= 0:
        ap.error("--repeat must be positive")

    from sim.cache.access import next_use_index
    from sim.cache.replay import replay
    from sim.config import WorkloadConfig, load_config
    from sim.cache.policies import POLICIES, make_policy
    from trace.loaders import load_trace

    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    for name in policies:
        make_policy(name, 1, next_use=np.zeros(1, dtype=np.int64))  # fail fast on an unknown name

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    trace, load_s = timed(load_trace, WorkloadConfig(trace=str(args.trace), block_mismatch="split"), 16)
    full_accesses = trace.num_accesses
    if args.limit is not None:
        trace = truncate(trace, args.limit)
    stream = trace.access_stream()
    n = len(stream)
    unique = trace.num_unique_blocks
    cap = args.capacity if args.capacity is not None else max(1, unique // 10)
    print(f"trace: {args.trace.resolve()}")
    print(f"loaded in {load_s:.2f} s: {len(trace):,} requests, {full_accesses:,} block accesses (block_size=16)")
    if args.limit is not None:
        print(f"--limit: using the first {n:,} accesses")
    print(f"accesses: {n:,}   unique blocks: {unique:,}   reuse ceiling: {1 - unique / n:.4f}")
    print(f"capacity: {cap:,} blocks" + ("" if args.capacity is not None else " (10% of unique blocks)")
          + f"   libCacheSim hashpower: {hashpower_for(cap)}")

    config = load_config(None, sets=["serving.block_size=16", f"cache.capacity_blocks={cap}"])
    next_use, next_use_s = timed(next_use_index, stream)  # for Belady and the oracleGeneral file
    print(f"next-use index: {next_use_s:.2f} s" + ("" if any(POLICIES[p].needs_future for p in policies)
                                                    else " (for the oracleGeneral file only)"))

    def kvsim(name: str):
        def run() -> int:
            cache, hit_tier = replay(trace, config, name, "plain", cap, next_use if POLICIES[name].needs_future else None)
            return int((hit_tier >= 0).sum())
        return run

    tmp = tempfile.TemporaryDirectory(prefix="kvsim-bench-")
    path = Path(tmp.name) / "stream.oracleGeneral"
    _, write_s = timed(write_oracle_general, stream, next_use, path)
    size = path.stat().st_size
    print(f"oracleGeneral file ({size / 2**20:,.0f} MiB) written in {write_s:.2f} s (not in (c)'s time)")

    cases = [(f"kvsim {name}", kvsim(name)) for name in policies] + [
        ("(a) bare OrderedDict LRU", lambda: bare_ordereddict_lru(stream, cap)),
        ("(b) libCacheSim LRU get()", lambda: libcachesim_get_lru(stream, cap)),
        ("(c) libCacheSim LRU process_trace", lambda: libcachesim_process_trace_lru(path, n, cap)),
    ]
    best: dict[str, float] = {}
    hits_of: dict[str, int] = {}
    for rep in range(args.repeat):  # round robin, so drift in machine load hits every case alike
        if args.repeat > 1:
            print(f"round {rep + 1}/{args.repeat}")
        for name, run in cases:
            hits, secs = timed(run)
            if hits_of.setdefault(name, hits) != hits:
                print(f"!!! WARNING: {name} gave {hits:,} hits, {hits_of[name]:,} in an earlier round")
            best[name] = min(best.get(name, secs), secs)
            print(f"  {name:<34} {secs:7.2f} s  {n / secs / 1e6:6.2f} M acc/s  hit ratio {hits / n:.4f}", flush=True)
    tmp.cleanup()
    rows = [(name, best[name], hits_of[name]) for name, _ in cases]
    refs = {k[1]: n / best[k] for k in best if k.startswith("(")}
    lru_hits = {name: h for name, h in hits_of.items() if name == "kvsim lru" or name.startswith("(")}

    # ------------------------------------------------------------------ agreement
    print()
    if len(set(lru_hits.values())) == 1:
        print(f"LRU hit counts agree: {next(iter(lru_hits.values())):,} hits in every LRU variant ({', '.join(lru_hits)})")
    else:
        bar = "!" * 78
        print(f"{bar}\n!!! WARNING: LRU HIT COUNTS DIFFER BETWEEN VARIANTS:")
        for k, v in lru_hits.items():
            print(f"!!!   {k:<32} {v:,}")
        print(bar)

    # ---------------------------------------------------------------------- table
    print()
    best_of = f"best of {args.repeat} runs" if args.repeat > 1 else "one run each"
    print(f"{n:,} accesses, capacity {cap:,} blocks, {best_of}; / (a),(b),(c): this row's accesses/s over the reference's")
    head = f"{'name':<36} {'seconds':>8} {'accesses/s':>12} {'hit ratio':>9} {'/ (a)':>7} {'/ (b)':>7} {'/ (c)':>7}"
    print(head)
    print("-" * len(head))
    for name, secs, hits in rows:
        rate = n / secs
        print(f"{name:<36} {secs:8.2f} {rate:12,.0f} {hits / n:9.4f} "
              f"{rate / refs['a']:7.3f} {rate / refs['b']:7.3f} {rate / refs['c']:7.3f}")
    print("-" * len(head))
    ours = next((n / s for name, s, _ in rows if name == "kvsim lru"), None)
    if ours is not None:
        print(f"kvsim LRU rate = {ours / refs['a']:.3f}x (a) bare OrderedDict, {ours / refs['b']:.3f}x (b) libCacheSim get(), "
              f"{ours / refs['c']:.3f}x (c) libCacheSim process_trace")
    print(f"(c) including the file write: {n / (best['(c) libCacheSim LRU process_trace'] + write_s):,.0f} accesses/s")
    print(f"peak RSS: {peak_rss_bytes() / 2**30:.2f} GiB")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
