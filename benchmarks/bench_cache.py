"""Benchmark: kvsim's cache-only replay against libCacheSim's C ``process_trace``, per policy, one stream.

The stream (reproducible from the shared data): the Mooncake conversation trace, its 512-token
blocks split into 8-token blocks, first 6,285 requests (``--workload-limit 6285``): 10,000,352
block accesses, 6.49 M distinct blocks. Capacity 20,000 blocks. For every policy both have
(LRU, FIFO, LFU, ARC, S3-FIFO, SIEVE, Belady) it times:

- kvsim replay only: ``sim.cache.replay.replay`` on the loaded trace (what ``--cache-only``
  runs after loading), after one warm-up call on a short stream (the compiled kernels are loaded);
- kvsim end to end: a fresh ``python main.py --cache-only ... --policy X --capacity-blocks 20000``
  subprocess (imports, trace loading, replay, report); its hit count is read from the report
  (kvsim's bytecode is written first, as a first run or an install does);
  and the same reading the trace from a ``--workload-cache`` file built beforehand ("e2e cached":
  like libCacheSim, which reads a binary trace file prepared once);
- libCacheSim end to end: a fresh Python process that imports libcachesim and runs
  ``process_trace`` on the oracleGeneral file ("LCS e2e"; compare with kvsim's "e2e cached": both
  start a process and read a binary trace prepared once);
- libCacheSim in C: ``cache.process_trace`` over an oracleGeneral file (``<IQIq>`` records:
  clock, id, size 1, next-access index with INT64_MAX for never; hashpower sized to the
  capacity), and the same plus building the next-use index and writing the file.

Every policy's hit count must be equal in kvsim (both ways) and libCacheSim: the script exits 1
otherwise. It prints accesses/s and the ratio kvsim / libCacheSim, the trace-loading time (the
part of the end-to-end figure another module owns), and the cold start of the compiled kernels
(one end-to-end LRU run with an empty numba cache directory).

Run from the repository root::

    python benchmarks/bench_cache.py [--policies lru,arc] [--repeat R] [--no-e2e] [--no-cold]

A full run takes a few minutes. Timings depend on the machine and on whatever else runs on it
(the load average is printed at the start and the end).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the project's `trace` package, not the stdlib module

import sim.script_start  # noqa: E402, F401 (first: a Ctrl-C while the libraries below load ends in one line)

# isort: split

import dataclasses  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from sim.command import command_status, end_process  # noqa: E402

DEFAULT_TRACE = REPO / ".." / "shared" / "data" / "traces" / "mooncake_conversation.jsonl"
POLICIES = {"lru": "LRU", "fifo": "FIFO", "lfu": "LFU", "arc": "ARC", "s3fifo": "S3FIFO", "sieve": "Sieve",
            "belady": "Belady"}  # kvsim name -> libCacheSim class
ORACLE_GENERAL = np.dtype([("clock", "<u4"), ("obj_id", "<u8"), ("size", "<u4"), ("next", "<i8")])  # <IQIq
INT64_MAX = np.iinfo(np.int64).max


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def write_oracle_general(stream: np.ndarray, next_use: np.ndarray, path: Path) -> None:
    records = np.empty(len(stream), dtype=ORACLE_GENERAL)
    records["clock"] = np.arange(len(stream), dtype=np.uint32)
    records["obj_id"] = stream
    records["size"] = 1
    records["next"] = np.where(next_use < 0, INT64_MAX, next_use)  # libCacheSim: INT64_MAX = never again
    records.tofile(path)


def libcachesim_hits(policy: str, path: Path, n: int, capacity: int) -> int:
    import libcachesim as lcs

    hashpower = max(10, capacity.bit_length() + 1)  # REFERENCE-TOOLS: the default 24 slows small caches 20x
    cache = getattr(lcs, POLICIES[policy])(cache_size=capacity, hashpower=hashpower)
    miss_ratio, _ = cache.process_trace(lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE))
    return n - int(round(miss_ratio * n))


LCS_PROCESS = """
import sys, libcachesim as lcs
policy, path, n, capacity = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cache = getattr(lcs, policy)(cache_size=capacity, hashpower=max(10, capacity.bit_length() + 1))
miss_ratio, _ = cache.process_trace(lcs.TraceReader(path, lcs.TraceType.ORACLE_GENERAL_TRACE))
print(n - int(round(miss_ratio * n)))
"""


def libcachesim_process(policy: str, path: Path, n: int, capacity: int) -> tuple[int, float]:
    """(hits, wall seconds) of a fresh Python process that runs libCacheSim's ``process_trace`` on the
    oracleGeneral file: libCacheSim end to end from process start, as kvsim's e2e figure is."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", LCS_PROCESS, POLICIES[policy], str(path), str(n), str(capacity)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"libCacheSim process failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return int(proc.stdout.split()[-1]), wall


def write_bytecode() -> None:
    """Compile kvsim's modules to bytecode (``__pycache__``) before timing processes, as Python does on
    a first run and pip on an install. Where ``PYTHONDONTWRITEBYTECODE`` is set (some CI and sandbox
    environments), every process would otherwise compile them from source again (~80 ms each)."""
    import compileall

    for package in ("sim", "trace", "learned", "experiments"):
        compileall.compile_dir(REPO / package, quiet=1)


def main_argv(trace: Path, block_size: int, requests: int, capacity: int, policy: str, report: Path,
              workload_cache: Path | None = None) -> list[str]:
    cache = ["--workload-cache", str(workload_cache)] if workload_cache is not None else []
    return [sys.executable, str(REPO / "main.py"), "--cache-only", "--workload-trace", str(trace),
            "--set", f"serving.block_size={block_size}", "--set", "workload.block_mismatch=split", "--workload-limit", str(requests), "--policy", policy,
            "--capacity-blocks", str(capacity), "--quiet", "--no-plot", "--report-json", str(report), *cache]


def end_to_end(argv: list[str], report: Path, env: dict | None = None) -> tuple[int, float]:
    """(hits, wall seconds) of one ``main.py`` process."""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"main.py failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(report.read_text())["runs"][0]["metrics"]["hits"], wall


def main(argv: list[str] | None = None) -> int:
    # a flag of one value given twice is refused (argparse kept the last)
    from sim.cli import OneLineParser, path_argument

    ap = OneLineParser(description=__doc__.split("\n\n")[0].replace("``", ""))
    ap.add_argument("--trace", type=path_argument, default=DEFAULT_TRACE, help="Mooncake JSONL trace (default: %(default)s)")
    ap.add_argument("--block-size", type=int, default=8, help="serving.block_size (default: %(default)s)")
    ap.add_argument("--requests", type=int, default=6285, help="--workload-limit (default: %(default)s)")
    ap.add_argument("--capacity", type=int, default=20_000, help="capacity in blocks (default: %(default)s)")
    ap.add_argument("--policies", default=",".join(POLICIES), help="comma-separated (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="time each case R times and keep the best (default: %(default)s)")
    ap.add_argument("--no-e2e", action="store_true", help="skip the end-to-end main.py runs")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-start (empty numba cache) run")
    args = ap.parse_args(argv)
    for flag, value in (("--block-size", args.block_size), ("--requests", args.requests),
                        ("--capacity", args.capacity), ("--repeat", args.repeat)):
        if value < 1:  # --repeat 0 was an IndexError after the runs, --requests 0 a ConfigError traceback
            ap.error(f"{flag} must be at least 1, got {value}")
    policies = ap.distinct("--policies", [p.strip() for p in args.policies.split(",") if p.strip()])
    if not policies:  # (it timed nothing and printed an empty table, exit 0)
        ap.error(f"--policies: none given; choose from {', '.join(POLICIES)}")
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        ap.error(f"unknown policies {unknown}; valid: {', '.join(POLICIES)}")
    if not args.trace.is_file():
        ap.error(f"trace not found: {args.trace} (pass --trace PATH to mooncake_conversation.jsonl)")

    from sim.cache.access import next_use_index
    from sim.cache.replay import replay
    from sim.config import load_config
    from trace.workload import load_workload

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    write_bytecode()
    config = load_config(None, sets=[f"serving.block_size={args.block_size}", f"workload.trace={args.trace}",
                                     f"workload.limit={args.requests}", f"cache.capacity_blocks={args.capacity}",
                                     "workload.block_mismatch=split"])
    trace, load_s = timed(load_workload, config)
    stream = trace.access_stream()
    n = len(stream)
    print(f"stream: {args.trace.name}, block_size {args.block_size}, first {args.requests:,} requests: {n:,} accesses, "
          f"{trace.num_unique_blocks:,} distinct blocks; capacity {args.capacity:,} blocks")
    print(f"trace loading in process (load_workload): {load_s:.2f} s")
    next_use, next_use_s = timed(next_use_index, stream)
    tmp = tempfile.TemporaryDirectory(prefix="kvsim-bench-")
    oracle = Path(tmp.name) / "stream.oracleGeneral"
    _, write_s = timed(write_oracle_general, stream, next_use, oracle)
    print(f"libCacheSim input: next-use index {next_use_s:.2f} s + oracleGeneral file "
          f"({oracle.stat().st_size / 2**20:,.0f} MiB) written in {write_s:.2f} s")

    k = min(20, len(trace.arrival_s))  # a short copy (first 20 requests) to load the kernels (--requests 5: an IndexError)
    warm = dataclasses.replace(trace, arrival_s=trace.arrival_s[:k], input_tokens=trace.input_tokens[:k],
                               output_tokens=trace.output_tokens[:k], session_id=trace.session_id[:k],
                               block_offsets=trace.block_offsets[:k + 1],
                               flat_ids=stream[:int(trace.block_offsets[k])], id_runs=None,
                               answer_offsets=None, answer_ids=None)  # (plain replays read no generated blocks)
    for policy in policies:  # warm-up: compile or load each kernel before the timed replays
        replay(warm, config, policy, "plain", args.capacity, next_use)

    rows, mismatch = [], False
    for policy in policies:
        best = {}
        for _ in range(args.repeat):
            (_, hit_tier), secs = timed(replay, trace, config, policy, "plain", args.capacity, next_use)
            ours = int((hit_tier >= 0).sum())
            best["replay"] = min(best.get("replay", secs), secs)
            theirs, secs = timed(libcachesim_hits, policy, oracle, n, args.capacity)
            best["lcs"] = min(best.get("lcs", secs), secs)
            e2e_hits = ours
            if not args.no_e2e:
                lcs_hits, secs = libcachesim_process(policy, oracle, n, args.capacity)
                best["lcs_e2e"] = min(best.get("lcs_e2e", secs), secs)
                theirs = theirs if lcs_hits == theirs else -1
                report = Path(tmp.name) / f"{policy}.json"
                e2e_hits, secs = end_to_end(main_argv(args.trace, args.block_size, args.requests, args.capacity,
                                                      policy, report), report)
                best["e2e"] = min(best.get("e2e", secs), secs)
                cached = Path(tmp.name) / "workload.cache"  # built by the first policy's first run, then reused
                if not cached.exists():
                    end_to_end(main_argv(args.trace, args.block_size, args.requests, args.capacity, policy, report,
                                         cached), report)
                hits_cached, secs = end_to_end(main_argv(args.trace, args.block_size, args.requests, args.capacity,
                                                         policy, report, cached), report)
                e2e_hits = e2e_hits if hits_cached == e2e_hits else -1
                best["e2e_cached"] = min(best.get("e2e_cached", secs), secs)
        ok = ours == theirs == e2e_hits
        mismatch |= not ok
        rows.append((policy, ours, theirs, ok, best))
        e2e = f"{n / best['e2e'] / 1e6:6.2f} M/s e2e" if "e2e" in best else ""
        print(f"  {policy:<7} replay {n / best['replay'] / 1e6:7.2f} M/s  {e2e}  libCacheSim "
              f"{n / best['lcs'] / 1e6:6.2f} M/s  hits {ours:,} / {theirs:,} {'equal' if ok else 'DIFFER'}", flush=True)

    print()
    print(f"{n:,} accesses, capacity {args.capacity:,}, {'best of ' + str(args.repeat) if args.repeat > 1 else 'one run'}; "
          "rates in M accesses/s; ratio = kvsim / libCacheSim process_trace")
    head = (f"{'policy':<8} {'hit ratio':>9} {'kvsim replay':>12} {'kvsim e2e':>10} {'e2e cached':>10} {'LCS C':>7} "
            f"{'LCS C+file':>10} {'LCS e2e':>8} {'replay/C':>9} {'e2e/C':>7} {'cached/C':>8} {'e2e/(C+file)':>12} "
            f"{'cached/LCS e2e':>14}")
    print(head)
    print("-" * len(head))
    file_s = next_use_s + write_s
    for policy, ours, theirs, ok, best in rows:
        replay_rate, lcs_rate, lcs_file_rate = n / best["replay"], n / best["lcs"], n / (best["lcs"] + file_s)
        e2e_rate = n / best["e2e"] if "e2e" in best else float("nan")
        cached_rate = n / best["e2e_cached"] if "e2e_cached" in best else float("nan")
        lcs_e2e_rate = n / best["lcs_e2e"] if "lcs_e2e" in best else float("nan")
        print(f"{policy:<8} {ours / n:9.4f} {replay_rate / 1e6:12.2f} {e2e_rate / 1e6:10.2f} {cached_rate / 1e6:10.2f} "
              f"{lcs_rate / 1e6:7.2f} {lcs_file_rate / 1e6:10.2f} {lcs_e2e_rate / 1e6:8.2f} {replay_rate / lcs_rate:9.2f} "
              f"{e2e_rate / lcs_rate:7.2f} {cached_rate / lcs_rate:8.2f} {e2e_rate / lcs_file_rate:12.2f} "
              f"{cached_rate / lcs_e2e_rate:14.2f}" + ("" if ok else "  HIT COUNTS DIFFER"))
    if not args.no_e2e:
        mean_e2e = float(np.mean([best["e2e"] for *_, best in rows]))
        print(f"trace loading: {load_s:.2f} s in process = {load_s / mean_e2e:.0%} of the mean end-to-end run "
              f"({mean_e2e:.2f} s)")
    if not args.no_cold:
        cache_dir = Path(tmp.name) / "numba-cache"
        env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
        report = Path(tmp.name) / "cold.json"
        argv_lru = main_argv(args.trace, args.block_size, args.requests, args.capacity, "lru", report)
        _, cold_s = end_to_end(argv_lru, report, env)
        _, warm_s = end_to_end(argv_lru, report, env)
        print(f"LRU end to end with an empty numba cache: {cold_s:.2f} s; again with it filled: {warm_s:.2f} s "
              f"(compile cost {cold_s - warm_s:+.2f} s)")
    tmp.cleanup()
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if mismatch:
        print("!!! HIT COUNTS DIFFER between kvsim and libCacheSim (see the rows marked above)")
        return 1
    return 0


if __name__ == "__main__":
    # bad input found on loading (a --block-size that does not divide the trace's 512) is one line, exit 2
    end_process(command_status("bench_cache.py", main))  # without the interpreter's teardown: see sim.command
