"""Benchmark: learned eviction vs classic policies, Belady, and libCacheSim's learned peers.

Trains on the first half of a trace (``python -m learned.train`` semantics), evaluates on the
second half (time-disjoint) at several capacities, and prints hit ratios of lru, arc, s3fifo,
sieve, learned, learned-insertion, belady, and libCacheSim's LRB, GLCache and 3L-Cache on the
same evaluation stream, with the share of the LRU→Belady gap each closes; then the replay speed
of ``learned`` vs ``lru`` and the training time. Writes a PNG of hit ratio vs capacity.

Run from the repository root::

    python benchmarks/bench_learned.py [--trace PATH] [--block-size 512] [--capacities 1000,3000,5000,10000,20000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
if "trace" in sys.modules and not hasattr(sys.modules["trace"], "__path__"):
    del sys.modules["trace"]

import numpy as np  # noqa: E402

from learned.train import main as train_main  # noqa: E402
from trace.workload import load_workload  # noqa: E402
from sim.cache.access import NEVER, next_use_index  # noqa: E402
from sim.cache.access import learned_predictions  # noqa: E402
from sim.cache.replay import replay  # noqa: E402
from sim.config import load_config  # noqa: E402

OURS = ("lru", "arc", "s3fifo", "sieve", "learned", "learned-insertion", "belady")
PEERS = ("LRB", "GLCache", "ThreeLCache")


def oracle_file(stream: np.ndarray, path: Path) -> None:
    nxt = next_use_index(stream)
    records = np.zeros(len(stream), dtype=np.dtype([("t", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")]))
    records["t"], records["id"], records["size"] = np.arange(len(stream)), stream, 1
    records["next"] = np.where(nxt == NEVER, np.iinfo(np.int64).max, nxt)
    records.tofile(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", default=str(REPO.parent / "shared" / "data" / "traces" / "mooncake_conversation.jsonl"))
    parser.add_argument("--block-size", type=int, default=512)
    parser.add_argument("--capacities", default="1000,3000,5000,10000,20000")
    parser.add_argument("--plot", default="learned_vs_policies.png")
    args = parser.parse_args()
    if not Path(args.trace).is_file():
        sys.exit(f"trace not found: {args.trace}")
    capacities = [int(c) for c in args.capacities.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.txt"
        start = time.perf_counter()
        if train_main(["--workload-trace", args.trace, "--out", str(model), "--set",
                       f"serving.block_size={args.block_size}"]) != 0:
            sys.exit("training failed")
        train_s = time.perf_counter() - start
        sets = [f"serving.block_size={args.block_size}", f"workload.trace={args.trace}", "workload.range_start=0.5",
                f"cache.learned_model={model}"]
        config = load_config(None, sets=sets)
        trace = load_workload(config)
        stream = trace.access_stream()
        start = time.perf_counter()
        _, predicted = learned_predictions(trace, config)
        predict_s = time.perf_counter() - start
        next_use = next_use_index(stream)
        import libcachesim as lcs

        oracle = Path(tmp) / "eval.oracleGeneral"
        oracle_file(stream, oracle)
        table: dict[str, list[float]] = {name: [] for name in (*OURS, *PEERS)}
        speed: dict[str, float] = {}
        for cap in capacities:
            cfg = load_config(None, sets=[*sets, f"cache.capacity_blocks={cap}"])
            for name in OURS:
                t0 = time.perf_counter()
                _, hit_tier = replay(trace, cfg, name, "plain", cap, next_use, False, predicted)
                speed.setdefault(name, len(stream) / (time.perf_counter() - t0))
                table[name].append(float((hit_tier >= 0).mean()))
            for name in PEERS:
                cache = getattr(lcs, name)(cache_size=cap)
                miss_ratio, _ = cache.process_trace(lcs.TraceReader(str(oracle), lcs.TraceType.ORACLE_GENERAL_TRACE))
                table[name].append(1.0 - miss_ratio)
    print(f"\nevaluation stream: {len(stream):,} accesses (second half of {Path(args.trace).name}), "
          f"{args.block_size}-token blocks; model trained on the first half in {train_s:.1f} s, "
          f"predictions for the stream in {predict_s:.2f} s")
    print(f"{'policy':<18}" + "".join(f"{c:>16,}" for c in capacities))
    lru, belady = np.array(table["lru"]), np.array(table["belady"])
    for name, ratios in table.items():
        gap = (np.array(ratios) - lru) / np.maximum(belady - lru, 1e-12)
        cells = "".join(f"{r:8.4f} ({g:+.2f})" for r, g in zip(ratios, gap))
        print(f"{name:<18}{cells}")
    print("cells: hit ratio (share of the LRU->Belady gap closed)")
    print("replay speed, accesses/s (first capacity): "
          + ", ".join(f"{n} {speed[n] / 1e6:.2f} M" for n in OURS)
          + f"; learned / lru = {speed['learned'] / speed['lru']:.2f}x")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, ratios in table.items():
        ax.plot(capacities, ratios, marker="o", label=name, linestyle="--" if name in PEERS else "-")
    ax.set(xscale="log", xlabel="cache capacity (blocks)", ylabel="block hit ratio",
           title=f"{Path(args.trace).name}: second half, trained on first half")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=100)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
