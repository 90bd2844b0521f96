"""Benchmark: the exact LRU miss-ratio curve of a >= 5-million-access stream, checked against LRU replays.

Builds the stream from the Mooncake conversation trace (512-token blocks split into
16-token blocks: ~9.06 M accesses; the first ``--accesses`` are used), times
``sim.cache.mrc.lru_mrc`` (exact, and SHARDS at 1%), and compares the exact curve with
separate LRU replays at 5 capacities (they must be equal).

Run from the repository root::

    python benchmarks/bench_mrc.py [--trace PATH] [--accesses N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from sim.cache.multitier import MultiTierCache  # noqa: E402
from sim.config import WorkloadConfig  # noqa: E402
from sim.cache.mrc import lru_mrc  # noqa: E402
from sim.cache.policies import make_policy  # noqa: E402
from sim.cache.tiers import Tier  # noqa: E402
from trace.loaders import load_trace  # noqa: E402


def lru_hits(stream: np.ndarray, capacity: int) -> int:
    tier = Tier("hbm", capacity, make_policy("lru", capacity), 1.0, 1.0, 0.0)
    hit_tier = np.full(len(stream), -1, dtype=np.int8)
    MultiTierCache([tier], 1).replay(stream, np.array([0, len(stream)]), hit_tier, 0, 1, prefix=False)
    return int((hit_tier >= 0).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", default=str(REPO.parent / "shared" / "data" / "traces" / "mooncake_conversation.jsonl"))
    parser.add_argument("--accesses", type=int, default=5_000_000)
    args = parser.parse_args()
    if not Path(args.trace).is_file():
        sys.exit(f"trace not found: {args.trace} (pass --trace PATH to the Mooncake conversation trace)")
    stream = load_trace(WorkloadConfig(trace=args.trace, block_mismatch="split"), 16).access_stream()[: args.accesses]
    print(f"stream: {len(stream):,} accesses, {len(np.unique(stream)):,} distinct blocks")
    capacities = np.array([1_000, 10_000, 100_000, 300_000, 1_000_000])
    start = time.perf_counter()
    exact = lru_mrc(stream, capacities=capacities)
    exact_s = time.perf_counter() - start
    start = time.perf_counter()
    shards = lru_mrc(stream, sample_rate=0.01, capacities=capacities)
    shards_s = time.perf_counter() - start
    print(f"exact MRC: {exact_s:.2f} s   SHARDS 1%: {shards_s:.2f} s ({shards.sampled_accesses:,} sampled accesses)")
    print(f"{'capacity':>10} {'MRC exact':>10} {'LRU replay':>11} {'equal':>6} {'SHARDS':>8} {'replay s':>9}")
    for cap, ratio, approx in zip(capacities, exact.hit_ratios, shards.hit_ratios):
        start = time.perf_counter()
        replay = lru_hits(stream, int(cap)) / len(stream)
        print(f"{cap:>10,} {ratio:10.5f} {replay:11.5f} {str(ratio == replay):>6} {approx:8.5f} "
              f"{time.perf_counter() - start:9.2f}")


if __name__ == "__main__":
    main()
