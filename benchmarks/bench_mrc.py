"""Benchmark: exact LRU miss-ratio curves of 10 M and 50 M accesses, and a check against LRU replays.

1. Synthetic streams of 10 M and 50 M accesses from one seeded generator (keys
   ``(zipf(1.1) - 1) mod 20,000,000``, numpy ``default_rng(0)``): times ``sim.cache.mrc.lru_mrc``
   exact (the Fenwick-tree stack distances) and SHARDS at 1%, and prints the 50 M / 10 M
   time ratio (5.0 is linear).
2. The Mooncake conversation trace at 8-token blocks, first 6,285 requests (10,000,352 accesses,
   the ``bench_cache.py`` stream): the exact curve at 5 capacities must equal separate LRU
   replays (compiled kernel) exactly.

Run from the repository root::

    python benchmarks/bench_mrc.py [--sizes 10000000,50000000] [--trace PATH] [--no-check]

Times are CPU seconds of this process (``time.process_time``) and wall seconds; other
processes on the machine skew the wall figure (the load average is printed).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import sim.script_start  # noqa: E402, F401 (first: a Ctrl-C while the libraries below load ends in one line)

# isort: split

import time  # noqa: E402

import numpy as np  # noqa: E402

from sim.cache.mrc import capacity_grid, lru_mrc  # noqa: E402
from sim.command import command_status, end_process, raise_if_stopped  # noqa: E402

DEFAULT_TRACE = REPO.parent / "shared" / "data" / "traces" / "mooncake_conversation.jsonl"
KEY_SPACE = 20_000_000


def timed(fn, *args, **kwargs):
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.process_time() - cpu, time.perf_counter() - wall


def synthetic(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return ((rng.zipf(1.1, n) - 1) % KEY_SPACE).astype(np.int64)


def lru_hits(stream: np.ndarray, capacity: int) -> int:
    from sim.cache.arena import TierArena
    from sim.cache.multitier import MultiTierCache
    from sim.cache.tiers import new_tier

    arena = TierArena(max_keys=int(stream.max()) + 1)
    cache = MultiTierCache([new_tier(arena, "hbm", "lru", capacity, 1.0, 1.0, 0.0)], 1)
    hit_tier = np.full(len(stream), -1, dtype=np.int8)
    cache.replay(stream, np.array([0, len(stream)]), hit_tier, 0, 1, prefix=False)
    return int((hit_tier >= 0).sum())


def main() -> None:
    # a flag of one value given twice is refused (argparse kept the last)
    from sim.cli import OneLineParser, path_argument

    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000000,50000000",
                        help="synthetic stream lengths, accesses, comma-separated (default: %(default)s)")
    parser.add_argument("--trace", type=path_argument, default=DEFAULT_TRACE,
                        help="Mooncake JSONL for the replay check (default: %(default)s)")
    parser.add_argument("--no-check", action="store_true", help="skip the Mooncake check against LRU replays")
    args = parser.parse_args()
    try:  # checked before the kernel loads: 'x' was a ValueError traceback, 0 an empty stream timed
        sizes = parser.distinct("--sizes", [int(x) for x in args.sizes.split(",")])
    except ValueError:
        parser.error(f"--sizes: expected comma-separated positive integers, got {args.sizes[:100]!r}")
    if any(n < 1 for n in sizes):
        parser.error(f"--sizes: every length must be at least 1, got {args.sizes[:100]!r}")
    if not args.no_check and not args.trace.is_file():  # found before the timed runs, not after them
        parser.error(f"trace not found: {args.trace} (pass --trace PATH, or --no-check)")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    lru_mrc(synthetic(1000))  # load the compiled kernel before timing
    grid = capacity_grid(KEY_SPACE)
    exact_cpu = {}
    print(f"{'accesses':>12} {'distinct':>11} {'exact cpu s':>11} {'wall s':>7} {'M acc/s':>8} "
          f"{'SHARDS 1% cpu s':>15} {'hit@100k':>9}")
    for n in sizes:
        raise_if_stopped()  # a Ctrl-C numba swallowed while it loaded the kernel: stop here, not after every size
        stream = synthetic(n)
        curve, cpu, wall = timed(lru_mrc, stream, capacities=grid)
        shards, shards_cpu, _ = timed(lru_mrc, stream, sample_rate=0.01, capacities=grid, salt=0)
        exact_cpu[n] = cpu
        print(f"{n:>12,} {len(np.unique(stream)):>11,} {cpu:11.2f} {wall:7.2f} {n / cpu / 1e6:8.1f} "
              f"{shards_cpu:15.2f} {curve.hit_ratio_at(100_000):9.4f}", flush=True)
        del stream
    sizes = sorted(exact_cpu)
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        print(f"cost ratio {hi // 1_000_000} M / {lo // 1_000_000} M: {exact_cpu[hi] / exact_cpu[lo]:.2f} "
              f"(linear: {hi / lo:.2f})")
    if not args.no_check:
        from sim.config import load_config
        from trace.workload import load_workload

        config = load_config(None, sets=["serving.block_size=8", f"workload.trace={args.trace}", "workload.limit=6285",
                                                 "workload.block_mismatch=split"])
        stream = load_workload(config).access_stream()
        capacities = np.array([1_000, 20_000, 100_000, 1_000_000, 5_000_000])
        curve, cpu, _ = timed(lru_mrc, stream, capacities=capacities)
        print(f"Mooncake, 8-token blocks, first 6,285 requests: {len(stream):,} accesses; exact MRC {cpu:.2f} s cpu")
        print(f"{'capacity':>10} {'MRC':>8} {'LRU replay':>11} {'equal':>6}")
        equal = True
        for cap, ratio in zip(capacities, curve.hit_ratios, strict=True):
            replay = lru_hits(stream, int(cap)) / len(stream)
            equal &= ratio == replay
            print(f"{cap:>10,} {ratio:8.5f} {replay:11.5f} {str(ratio == replay):>6}")
        if not equal:
            sys.exit("!!! the exact MRC differs from LRU replays")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    end_process(command_status("bench_mrc.py", main))  # without the interpreter's teardown: see sim.command
