"""Benchmark: load a large Azure-format trace through the project's real loader.

Generates (once) an Azure-format CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``,
increasing timestamps like ``2023-11-16 18:15:46.6805900``) with token counts resampled
from the bundled ``trace/data/azure_conv_2023.csv`` by a seeded numpy Generator, then
loads it in a fresh subprocess with ``trace.loaders.load_trace`` (block_size=16) and
prints the load's wall time, rows/s, peak RSS, rows used and block accesses.

Run from the repository root::

    python benchmarks/bench_trace_load.py [--rows N] [--path FILE] [--seed S] [--profile]

Defaults: 10,000,000 rows, file in the system temp dir (kept outside the repository and
reused on the next run if it already has the requested row count). ``--profile`` runs the
load under cProfile in the subprocess and prints the top functions by cumulative time
(the timing figures then include profiler overhead). Timings are approximate: they depend
on the machine and on whatever else is running.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUNDLED = REPO / "trace" / "data" / "azure_conv_2023.csv"
HEADER = b"TIMESTAMP,ContextTokens,GeneratedTokens\n"
GEN_CHUNK = 1_000_000
START = "2023-11-16T18:15:46.680590"  # first row of the bundled trace
MEAN_GAP_S = 0.18  # the bundled trace: 19,366 requests in ~58 min

# ------------------------------------------------------------------------ generation


def count_rows(path: Path) -> int:
    """Data rows (lines after the header) of a CSV, read in 8 MiB blocks."""
    lines, last = 0, b"\n"
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(8 << 20), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    if last != b"\n":
        lines += 1
    return max(lines - 1, 0)


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


def generate(path: Path, rows: int, seed: int) -> float:
    """Write ``rows`` Azure-format rows to ``path`` in chunks; returns seconds taken."""
    import numpy as np

    t0 = time.perf_counter()
    src = np.loadtxt(BUNDLED, delimiter=",", skiprows=1, usecols=(1, 2), dtype=np.int64)
    rng = np.random.default_rng(seed)
    tick = int((np.datetime64(START, "us") - np.datetime64("1970-01-01T00:00:00", "us")).astype(np.int64)) * 10  # 100 ns units
    path.parent.mkdir(parents=True, exist_ok=True)
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
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- loading

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})  # the project's `trace` package, not the stdlib module
from sim.config import WorkloadConfig
from trace.loaders import load_trace
rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
workload = WorkloadConfig(trace={path!r})
if {profile!r}:
    import cProfile, pstats
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    trace = load_trace(workload, block_size=16)
    prof.disable()
    wall = time.perf_counter() - t0
    pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
else:
    t0 = time.perf_counter()
    trace = load_trace(workload, block_size=16)
    wall = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:  # Linux: this process's own high-water mark, a cross-check of ru_maxrss
    hwm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
except (OSError, StopIteration):
    hwm = None
scale = 1 if sys.platform == "darwin" else 1024
p = trace.provenance
print(json.dumps(dict(
    load_s=wall, peak_rss_bytes=rss * scale, rss_after_imports_bytes=rss_imports * scale, vm_hwm_bytes=hwm,
    rows_read=p.rows_read, rows_used=p.rows_used, rows_skipped=p.rows_skipped,
    skip_reasons=p.skip_reasons, accesses=trace.num_accesses, block_ids=p.block_ids,
)))
"""


def load_in_subprocess(path: Path, profile: bool) -> dict:
    code = _CHILD.format(repo=str(REPO), path=str(path), profile=profile)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    if proc.stderr:
        sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"loader subprocess failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="data rows to generate (default 10,000,000)")
    ap.add_argument("--path", type=Path, default=None, help="CSV path (default: <tmpdir>/kvsim-bench/azure_<rows>.csv)")
    ap.add_argument("--seed", type=int, default=0, help="numpy Generator seed for the token counts and gaps")
    ap.add_argument("--profile", action="store_true", help="run the load under cProfile (cumtime) in the subprocess")
    ap.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rows <= 0:
        ap.error("--rows must be positive")
    path = args.path or Path(tempfile.gettempdir()) / "kvsim-bench" / f"azure_{args.rows}.csv"

    if args.generate_only:
        print(f"{generate(path, args.rows, args.seed):.1f}")
        return 0
    if path.is_file() and count_rows(path) == args.rows:
        print(f"reusing {path} ({args.rows:,} rows)")
    else:
        # In a child process: Linux carries a parent's peak RSS into a child it spawns
        # (ru_maxrss survives fork/exec), so this process stays small for the load's figures.
        cmd = [sys.executable, __file__, "--generate-only", "--rows", str(args.rows), "--path", str(path), "--seed", str(args.seed)]
        gen = subprocess.run(cmd, check=True, capture_output=True, text=True)
        print(f"generated {path} ({args.rows:,} rows) in {float(gen.stdout.split()[-1]):.1f} s")
    size = path.stat().st_size

    r = load_in_subprocess(path, args.profile)
    rate = r["rows_read"] / r["load_s"] if r["load_s"] > 0 else float("inf")
    gib = 1 << 30
    table = [
        ("file", str(path)),
        ("file size", f"{size:,} B ({size / gib:.2f} GiB)"),
        ("rows read", f"{r['rows_read']:,}"),
        ("rows used", f"{r['rows_used']:,}"),
        ("rows skipped", f"{r['rows_skipped']:,} {r['skip_reasons'] or ''}".rstrip()),
        ("accesses (blocks of 16)", f"{r['accesses']:,}"),
        ("load wall time", f"{r['load_s']:.2f} s" + (" (under cProfile)" if args.profile else "")),
        ("rows/s", f"{rate:,.0f}"),
        ("peak RSS (ru_maxrss)", f"{r['peak_rss_bytes']:,} B ({r['peak_rss_bytes'] / gib:.2f} GiB)"),
        ("peak RSS (VmHWM)", "n/a" if r["vm_hwm_bytes"] is None else f"{r['vm_hwm_bytes']:,} B ({r['vm_hwm_bytes'] / gib:.2f} GiB)"),
        ("RSS after imports", f"{r['rss_after_imports_bytes']:,} B ({r['rss_after_imports_bytes'] / gib:.2f} GiB)"),
    ]
    width = max(len(k) for k, _ in table)
    print()
    for k, v in table:
        print(f"  {k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
