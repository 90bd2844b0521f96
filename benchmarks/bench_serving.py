"""Benchmark: wall time and peak memory of the headline serving runs.

Runs ``main.py`` in a fresh subprocess for each case, so the figures are those of one
real invocation (imports, trace loading, simulation, report), and prints wall time,
peak RSS (from the report's ``timing``) and a few result figures.

Run from the repository root::

    python benchmarks/bench_serving.py [--trace PATH] [--repeat N]

Default trace: the bundled Azure conversation trace (19,366 requests). Target for the
``--pd`` case: under 10 s on a 2-core machine. Timings are approximate: they depend on
the machine and on whatever else is running; the best of ``--repeat`` runs is shown.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CASES = {
    "pd (1P+1D)": ["--pd"],
    "pd (2P+2D, layerwise)": ["--pd", "--set", "pd.num_prefill=2", "--set", "pd.num_decode=2",
                              "--set", "pd.transfer=layerwise"],
    "single (4 workers)": [],
}


def run_case(trace: str, flags: list[str], out: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), "--workload-trace", trace, *flags, "--quiet",
                           "--no-plot", "--report-json", str(out)], cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"kvsim failed ({proc.returncode}):\n{proc.stderr}")
    return wall, json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", default=str(REPO / "trace" / "data" / "azure_conv_2023.csv"))
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    print(f"trace: {args.trace}")
    print(f"{'case':<24} {'wall s':>7} {'sim s':>7} {'peak RSS MiB':>13} {'requests':>9} {'TTFT mean ms':>13} "
          f"{'TPOT mean ms':>13} {'steps':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in CASES.items():
            best = None
            for i in range(args.repeat):
                wall, report = run_case(args.trace, flags, Path(tmp) / f"r{i}.json")
                if best is None or wall < best[0]:
                    best = (wall, report)
            wall, report = best
            m = report["runs"][0]["metrics"]
            timing = report["timing"]
            print(f"{name:<24} {wall:7.2f} {timing['wall_s']:7.2f} {timing['peak_rss_bytes'] / 2**20:13.0f} "
                  f"{m['requests_completed']:9,} {m['ttft_s']['mean'] * 1e3:13.2f} {m['tpot_s']['mean'] * 1e3:13.2f} "
                  f"{m['instances']['steps']:10,}")
    print("wall s: the whole process; sim s: main.py's own measure (config, load, simulation, report).")


if __name__ == "__main__":
    main()
