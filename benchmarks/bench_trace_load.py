"""Benchmark: trace loading through the project's real loader, from the file and from the workload cache.

Generates (once, seeded, kept outside the repository and reused when it has the requested size):

- an Azure-format CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``, increasing timestamps like
  ``2023-11-16 18:15:46.6805900``) with token counts resampled from the bundled
  ``trace/data/azure_conv_2023.csv`` (default 10,000,000 rows);
- a BurstGPT v2.0-shaped CSV (``Timestamp,Session ID,...,Log Type``) of ``--session-rows`` rows (default
  1,000,000): every other row a turn of one of 500 conversations, prompts of 1,000–2,199 tokens (~100 blocks of 16
  a row): the session block-id path (each turn's context shares its session's earlier blocks);
- a Mooncake-format JSONL with about ``--accesses`` block accesses (default 10,000,000): whole
  records (input/output length and their ``hash_ids``) drawn with replacement from the Mooncake
  conversation trace (``../shared/data``), the ids of each pass over the source's length shifted
  to a fresh range (so reuse stays within a pass, as in the source), inter-arrival gaps drawn
  from the source's gaps.

Then, each in a fresh subprocess, times ``load_trace`` (Azure at block_size 16: synthetic
unique blocks; Mooncake at its own 512-token blocks: hash ids interned; and ``split``: the
Mooncake conversation trace itself cut into 16-token blocks, the ~9 M-access stream of
``bench_cache.py``), and the workload cache
(``trace.cache.load_trace_cached``): a first load that builds it, then a load that reads it.
Prints wall time, rows/s, block accesses/s and peak RSS of each, and the start-up costs: wall
time of ``main.py --help`` and of a ``--trace-stats`` run on a 3-row trace (best of several),
``-X importtime``'s total for ``--help``, and which heavy libraries the tiny run imports.

Run from the repository root::

    python benchmarks/bench_trace_load.py [--rows N] [--accesses N] [--dir DIR] [--seed S]
        [--session-rows N] [--only azure,sessions,mooncake,split,startup] [--repo PATH] [--profile]

``--repo PATH`` loads with another checkout's loader (e.g. the commit before this one, exported
with ``git archive``) for before/after figures; the cache rows are skipped where it has none.
``--profile`` runs the loads under cProfile (timings then include its overhead). Timings depend
on the machine and on whatever else runs; the load average is printed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the project's `trace` package, not the stdlib module

import sim.script_start  # noqa: E402, F401 (first: a stop before the command starts waits for it: one line)

# isort: split

import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

BUNDLED = REPO / "trace" / "data" / "azure_conv_2023.csv"
MOONCAKE_SOURCE = REPO.parent / "shared" / "data" / "traces" / "mooncake_conversation.jsonl"
SPLITWISE_TINY = REPO.parent / "shared" / "data" / "traces" / "splitwise_test_trace.csv"
HEADER = b"TIMESTAMP,ContextTokens,GeneratedTokens\n"
GEN_CHUNK = 1_000_000
START = "2023-11-16T18:15:46.680590"  # first row of the bundled trace
MEAN_GAP_S = 0.18  # the bundled trace: 19,366 requests in ~58 min
HEAVY = ("pandas", "matplotlib", "lightgbm", "numba", "ray", "pyarrow", "numpy")
GIB = 1 << 30

# ------------------------------------------------------------------------ generation


def count_lines(path: Path) -> int:
    """Lines of a file (a last line without its newline counts), read in 8 MiB blocks."""
    lines, last = 0, b"\n"
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(8 << 20), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def _digits(values, width: int):
    """ASCII digits of non-negative ints, right-aligned in ``width`` columns, 0-byte padded left."""
    import numpy as np

    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits = (values[:, None] // powers) % 10
    out = (digits + ord("0")).astype(np.uint8)
    ndig = np.maximum(np.floor(np.log10(np.maximum(values, 1))).astype(np.int64) + 1, 1)
    out[np.arange(width)[None, :] < (width - ndig)[:, None]] = 0  # padding, dropped on write
    return out


def _format_chunk(ticks, inp, out) -> bytes:
    """CSV bytes of rows; ``ticks`` are 100 ns units since the epoch."""
    import numpy as np

    n = len(ticks)
    secs = (ticks // 10_000_000).astype("datetime64[s]")
    stamp = np.char.encode(np.datetime_as_string(secs, unit="s"), "ascii")  # YYYY-MM-DDTHH:MM:SS
    stamp = stamp.view(np.uint8).reshape(n, 19).copy()
    stamp[:, 10] = ord(" ")
    frac = _digits(ticks % 10_000_000, 7)
    frac[frac == 0] = ord("0")  # fraction keeps its leading zeros
    iw = max(len(str(int(inp.max()))), 1)
    ow = max(len(str(int(out.max()))), 1)
    sep = lambda ch: np.full((n, 1), ord(ch), dtype=np.uint8)  # noqa: E731
    rows = np.hstack([stamp, sep("."), frac, sep(","), _digits(inp, iw), sep(","), _digits(out, ow), sep("\n")])
    return rows[rows != 0].tobytes()


def generate_azure(path: Path, rows: int, seed: int) -> None:
    """Write ``rows`` Azure-format rows to ``path`` in chunks."""
    import numpy as np

    src = np.loadtxt(BUNDLED, delimiter=",", skiprows=1, usecols=(1, 2), dtype=np.int64)
    rng = np.random.default_rng(seed)
    tick = int((np.datetime64(START, "us") - np.datetime64("1970-01-01T00:00:00", "us")).astype(np.int64)) * 10  # 100 ns units
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("wb") as fh:
        fh.write(HEADER)
        for lo in range(0, rows, GEN_CHUNK):
            n = min(GEN_CHUNK, rows - lo)
            gaps = np.maximum(rng.exponential(MEAN_GAP_S * 1e7, n).astype(np.int64), 1)  # strictly increasing
            ticks = tick + np.cumsum(gaps) - (gaps[0] if lo == 0 else 0)
            tick = int(ticks[-1])
            pick = rng.integers(0, len(src), n)
            fh.write(_format_chunk(ticks, src[pick, 0], src[pick, 1]))
    os.replace(tmp, path)


def generate_burstgpt_sessions(path: Path, rows: int, seed: int) -> None:
    """Write a BurstGPT v2.0-shaped CSV: every other row a conversation turn of one of 500 sessions (prompts of
    1,000–2,199 tokens, answers of 1–299), the rest API rows without a session."""
    import numpy as np

    rng = np.random.default_rng(seed)
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("w") as fh:
        fh.write("Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type\n")
        for lo in range(0, rows, GEN_CHUNK):
            n = min(GEN_CHUNK, rows - lo)
            prompt, answer = rng.integers(1000, 2200, n), rng.integers(1, 300, n)
            session = rng.integers(0, 500, n)
            fh.write("".join(
                f"{lo + i}.0,{f's{s}' if (lo + i) % 2 else ''},3,ChatGPT,{p},{a},{p + a},"
                f"{'Conversation log' if (lo + i) % 2 else 'API log'}\n"
                for i, (p, a, s) in enumerate(zip(prompt.tolist(), answer.tolist(), session.tolist(), strict=True))))
    os.replace(tmp, path)


def generate_mooncake(path: Path, accesses: int, seed: int, source: Path) -> None:
    """Write Mooncake-format records until ``accesses`` hash ids: records drawn with replacement
    from ``source``, ids shifted to a fresh range every len(source) records, gaps drawn from its gaps."""
    import numpy as np

    records = [json.loads(line) for line in source.open() if line.strip()]
    span = max(max(r["hash_ids"]) for r in records) + 1
    gaps = np.diff(np.array([r["timestamp"] for r in records], dtype=np.int64))
    rng = np.random.default_rng(seed)
    tmp = path.with_name(path.name + ".partial")
    written = timestamp = i = 0
    with tmp.open("w") as fh:
        while written < accesses:
            picks, steps = rng.integers(0, len(records), 10_000), rng.choice(gaps, 10_000)
            lines = []
            for pick, step in zip(picks.tolist(), steps.tolist(), strict=True):
                record, shift = records[pick], (i // len(records)) * span
                ids = [h + shift for h in record["hash_ids"]]
                lines.append(json.dumps({"timestamp": timestamp, "input_length": record["input_length"],
                                         "output_length": record["output_length"], "hash_ids": ids}))
                written, timestamp, i = written + len(ids), timestamp + step, i + 1
                if written >= accesses:
                    break
            fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def ensure(path: Path, lines: int | None, make) -> None:
    """Generate ``path`` in a child process unless it exists (with ``lines`` lines when given):
    Linux carries a parent's peak RSS into the children it spawns, so this one stays small."""
    if path.is_file() and (lines is None or count_lines(path) == lines):
        print(f"reusing {path}")
        return
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", make], check=True, cwd=REPO)
    print(f"generated {path} in {time.perf_counter() - t0:.1f} s")


# --------------------------------------------------------------------------- loading

_CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {repo!r})  # the project's `trace` package, not the stdlib module
from sim.config_workload import WorkloadConfig
from trace.loaders import load_trace
workload = WorkloadConfig(trace={path!r}, **{settings!r}, **({{"cache": {cache!r}}} if {cache!r} else {{}}))
if {cache!r}:
    from trace.cache import load_trace_cached as load
else:
    load = load_trace
rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if {profile!r}:
    import cProfile, pstats
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    trace = load(workload, {block_size!r})
    prof.disable()
    wall = time.perf_counter() - t0
    pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
else:
    t0 = time.perf_counter()
    trace = load(workload, {block_size!r})
    wall = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
hwm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
scale = 1 if sys.platform == "darwin" else 1024
p = trace.provenance
print(json.dumps(dict(load_s=wall, peak_rss_bytes=rss * scale, rss_after_imports_bytes=rss_imports * scale,
                      vm_hwm_bytes=hwm, rows_read=p.rows_read, rows_used=p.rows_used, rows_skipped=p.rows_skipped,
                      accesses=trace.num_accesses, unique=trace.num_unique_blocks, block_ids=p.block_ids,
                      pandas_imported="pandas" in sys.modules)))
from sim.command import end_process
end_process(0)  # without the interpreter's teardown, where pyarrow's thread pools now and then abort: see sim.command
"""


def load(repo: Path, path: Path, block_size: int, settings: dict, cache: Path | None = None, profile: bool = False) -> dict:
    code = _CHILD.format(repo=str(repo), path=str(path), block_size=block_size, settings=settings,
                         cache=str(cache) if cache else "", profile=profile)
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    if proc.stderr:
        sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"loader subprocess failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def row(label: str, r: dict) -> str:
    rate = r["rows_read"] / r["load_s"] if r["load_s"] > 0 else float("inf")
    access_rate = r["accesses"] / r["load_s"] if r["load_s"] > 0 else float("inf")
    per_access = r["peak_rss_bytes"] / r["accesses"] if r["accesses"] else float("nan")
    return (f"  {label:<44} {r['load_s']:8.2f} s {rate:>14,.0f} {access_rate:>16,.0f} {r['peak_rss_bytes'] / GIB:8.2f} GiB"
            f"   ({r['rows_used']:,} rows, {r['accesses']:,} accesses ({per_access:,.0f} B of peak RSS each),"
            f" {r['unique']:,} distinct blocks,"
            f" pandas {'imported' if r['pandas_imported'] else 'not imported'})")


# ---------------------------------------------------------------------------- startup


def best_wall(argv: list[str], repo: Path, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *argv], cwd=repo, check=True, capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return best


def imports(argv: list[str], repo: Path, repeat: int) -> tuple[float, list[str]]:
    """``-X importtime``: the summed self time of every import (s, best of ``repeat`` runs), and
    which HEAVY libraries were imported."""
    best, seen = float("inf"), set()
    for _ in range(repeat):
        proc = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=repo, capture_output=True, text=True)
        total = 0
        for line in proc.stderr.splitlines():
            if line.startswith("import time:") and "|" in line and "self" not in line:
                self_us, _, name = line[len("import time:"):].split("|")
                total += int(self_us)
                seen.add(name.strip().split(".")[0])
        best = min(best, total / 1e6)
    return best, [name for name in HEAVY if name in seen]


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    # one-line errors; a flag given twice is refused (argparse kept the last)
    from sim.cli import OneLineParser, path_argument

    ap = OneLineParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="Azure-format rows (default 10,000,000)")
    ap.add_argument("--session-rows", type=int, default=1_000_000,
                    help="BurstGPT v2.0-shaped rows with sessions (default 1,000,000)")
    ap.add_argument("--accesses", type=int, default=10_000_000, help="Mooncake-format block accesses (default 10,000,000)")
    ap.add_argument("--dir", type=path_argument, default=Path(tempfile.gettempdir()) / "kvsim-bench",
                    help="where the files go (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0,
                    help="numpy Generator seed of both generators (default: %(default)s)")
    ap.add_argument("--only", default="azure,sessions,mooncake,split,startup",
                    help="comma-separated parts to run (default: %(default)s)")
    ap.add_argument("--repo", type=path_argument, default=REPO, help="the checkout whose loader is timed (default: this one)")
    ap.add_argument("--mooncake-source", type=path_argument, default=MOONCAKE_SOURCE,
                    help="trace the Mooncake generator draws from (default: %(default)s)")
    ap.add_argument("--profile", action="store_true", help="run the loads under cProfile (cumtime) in the subprocess")
    args = ap.parse_args(argv)
    for flag, value, least in (("--rows", args.rows, 1), ("--session-rows", args.session_rows, 1),
                               ("--accesses", args.accesses, 1), ("--seed", args.seed, 0)):
        if value < least:  # --seed -1 was a traceback of the generator's subprocess (numpy takes no negative seed)
            ap.error(f"{flag} must be at least {least}, got {value}")
    if args.dir.exists() and not args.dir.is_dir():  # a FileExistsError traceback
        ap.error(f"--dir: {args.dir} is not a folder")
    parts = set(args.only.split(","))
    unknown = sorted(parts - {"azure", "sessions", "mooncake", "split", "startup"})
    if unknown:  # ran nothing of it, exit 0
        ap.error(f"--only: unknown parts {unknown}; choose from azure, sessions, mooncake, split, startup")
    repo = args.repo.resolve()
    has_cache = (repo / "trace" / "cache.py").is_file()
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"loader of {repo}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

    files = []
    if "azure" in parts:
        path = args.dir / f"azure_{args.rows}.csv"
        ensure(path, args.rows + 1, f"import sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import bench_trace_load as b; "
                                    f"from pathlib import Path; b.generate_azure(Path({str(path)!r}), {args.rows}, {args.seed})")
        files.append(("Azure CSV", path, 16, {}))
    if "sessions" in parts:
        path = args.dir / f"burstgpt_sessions_{args.session_rows}_seed{args.seed}.csv"
        ensure(path, args.session_rows + 1,
               f"import sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import bench_trace_load as b; "
               f"from pathlib import Path; b.generate_burstgpt_sessions(Path({str(path)!r}), {args.session_rows}, "
               f"{args.seed})")
        files.append(("BurstGPT v2.0 CSV with sessions", path, 16, {}))
    if "mooncake" in parts:
        path = args.dir / f"mooncake_{args.accesses}_seed{args.seed}.jsonl"
        ensure(path, None, f"import sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import bench_trace_load as b; "
                           f"from pathlib import Path; b.generate_mooncake(Path({str(path)!r}), {args.accesses}, {args.seed}, "
                           f"Path({str(args.mooncake_source)!r}))")
        files.append(("Mooncake JSONL", path, 512, {}))
    if "split" in parts:  # the 10 M-access stream: bench_cache.py's and bench_mrc.py's
        files.append(("Mooncake 16-token split", args.mooncake_source, 16, {"block_mismatch": "split"}))

    if files:
        print(f"\n  {'load':<44} {'wall':>10} {'rows/s':>14} {'accesses/s':>16} {'peak RSS':>12}")
    for label, path, block_size, settings in files:
        print(f"  {path} ({path.stat().st_size / GIB:.2f} GiB), block size {block_size}")
        print(row(f"{label}, file", load(repo, path, block_size, settings, profile=args.profile)))
        if has_cache:
            cache = args.dir / f"{path.stem}.bs{block_size}.cache"
            cache.unlink(missing_ok=True)
            print(row(f"{label}, file + cache write", load(repo, path, block_size, settings, cache, args.profile)))
            print(row(f"{label}, from cache", load(repo, path, block_size, settings, cache, args.profile)))
            print(f"  {'':<44} cache file {cache.stat().st_size / (1 << 20):,.0f} MiB")

    if "startup" in parts:
        tiny = ["main.py", "--trace-stats", "--workload-trace", str(SPLITWISE_TINY), "--no-plot", "--quiet"]
        help_s, help_heavy = imports(["main.py", "--help"], repo, 7)
        tiny_s, tiny_heavy = imports(tiny, repo, 7)
        print("\n  start-up (best of 7 runs)")
        print(f"  {'main.py --help':<44} {best_wall(['main.py', '--help'], repo, 7):8.2f} s wall; imports {help_s:.2f} s "
              f"(-X importtime, summed self times); heavy: {', '.join(help_heavy) or 'none'}")
        print(f"  {'--trace-stats, 3-row trace':<44} {best_wall(tiny, repo, 7):8.2f} s wall; imports {tiny_s:.2f} s; "
              f"heavy: {', '.join(tiny_heavy) or 'none'}")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    from sim.command import command_status, end_process

    end_process(command_status("bench_trace_load.py", main))  # without the interpreter's teardown: see sim.command
