"""Benchmark: simulated requests per wall second and peak RSS of serving runs at scale.

The bundled Azure conversation trace (trace/data/azure_conv_2023.csv, 19,366 requests over
one hour) is repeated 1×, 16× and 64× back to back in time (copy i is shifted by i × (the
trace's span + its mean inter-arrival gap), so the request rate stays the trace's own and
×16 covers 16 simulated hours). Each repeated trace is written once to a temporary CSV in
the trace's own format; each case runs ``main.py`` in a fresh subprocess (imports, trace
loading, simulation and report all count) and is measured from process start to exit:

- requests/s: requests completed ÷ wall seconds of the whole process;
- peak RSS: the child's maximum resident set (``wait4`` rusage), MiB.

The Mooncake conversation trace (``../shared/data/traces/mooncake_conversation.jsonl``, 12,031 requests with block
ids) is also run as it is, once per mode: the prefix cache's path (lookups, allocations, evictions and demotions
into DRAM/SSD at every step of an overloaded run), which the Azure trace, without block ids, never takes
(``--cached-trace none`` skips it).

Targets (issue 12): ×16 ≥ 10,000 requests/s and < 1 GiB in single-node and PD mode; ×64
(1.24 M requests) < 2 minutes and < 2 GiB in PD mode.

``--compare DIR`` runs the same cases with another kvsim checkout (e.g. the main branch
before a change, extracted with ``git archive``) and prints both side by side. Timings
depend on the machine and its load: each case's best of ``--repeat`` runs is shown.

Run from the repository root::

    python benchmarks/bench_serving.py [--scales 1,16,64] [--modes single,pd] [--repeat N] [--compare DIR]
        [--cached-trace PATH|none]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the project's `trace` package, not the stdlib module

import sim.script_start  # noqa: E402, F401 (first: a Ctrl-C while the libraries below load ends in one line)

# isort: split

import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

AZURE = REPO / "trace" / "data" / "azure_conv_2023.csv"
MOONCAKE = REPO.parent / "shared" / "data" / "traces" / "mooncake_conversation.jsonl"
MODES = {"single": [], "pd": ["--pd"]}
TARGETS = "targets: x16 >= 10,000 req/s and < 1 GiB (single, pd); x64 < 120 s and < 2 GiB (pd)"


@dataclass
class Measure:
    wall_s: float
    cpu_s: float
    peak_rss_bytes: int
    requests: int

    @property
    def rate(self) -> float:
        return self.requests / self.wall_s


def repeat_trace(source: Path, times: int, dest: Path) -> int:
    """Write ``source`` (Azure CSV) repeated ``times`` times back to back in time; returns the rows written."""
    frame = pd.read_csv(source)
    stamps = pd.to_datetime(frame["TIMESTAMP"], format="ISO8601").to_numpy(dtype="datetime64[ns]")
    span = stamps.max() - stamps.min()
    period = span + span // max(1, len(stamps) - 1)  # the next copy starts one mean gap after the last arrival
    shifted = (stamps[None, :] + period * np.arange(times)[:, None]).ravel()
    out = pd.DataFrame({"TIMESTAMP": np.datetime_as_string(shifted, unit="us"),
                        "ContextTokens": np.tile(frame["ContextTokens"].to_numpy(), times),
                        "GeneratedTokens": np.tile(frame["GeneratedTokens"].to_numpy(), times)})
    out.to_csv(dest, index=False)
    return len(out)


def run_case(kvsim: Path, trace: Path, flags: list[str], report: Path) -> Measure:
    """One main.py process: wall time from start to exit and its peak RSS."""
    argv = [sys.executable, str(kvsim / "main.py"), "--workload-trace", str(trace), *flags,
            "--quiet", "--no-plot", "--report-json", str(report)]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=kvsim, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{kvsim}: kvsim failed ({proc.returncode}) on {' '.join(flags) or 'single'}:\n{stderr[-2000:]}")
    requests = json.loads(report.read_text())["runs"][0]["metrics"]["requests_completed"]
    return Measure(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, requests)  # maxrss: KiB on Linux


def best_of(kvsim: Path, trace: Path, flags: list[str], report: Path, repeat: int) -> Measure:
    runs = [run_case(kvsim, trace, flags, report) for _ in range(repeat)]
    best = min(runs, key=lambda m: m.wall_s)
    best.peak_rss_bytes = min(m.peak_rss_bytes for m in runs)
    return best


def _cell(m: Measure) -> str:
    return f"{m.wall_s:9.1f} {m.cpu_s:7.1f} {m.rate:10,.0f} {m.peak_rss_bytes / 2**20:9.0f}"


def main() -> None:
    # one-line errors; a flag given twice is refused (argparse kept the last)
    from sim.cli import OneLineParser, path_argument

    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,16,64",
                        help="repeat counts of the trace, comma-separated (default: %(default)s)")
    parser.add_argument("--modes", default="single,pd",
                        help="serving modes, comma-separated: single, pd (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the best is shown (default: %(default)s)")
    parser.add_argument("--compare", type=path_argument, help="another kvsim checkout to run the same cases with (before)")
    parser.add_argument("--trace", type=path_argument, default=AZURE,
                        help="an Azure-format CSV to repeat (default: %(default)s)")
    parser.add_argument("--cached-trace", default=str(MOONCAKE),
                        help="a trace with block ids, run as it is with prefix caching "
                             "(none: skip; default: %(default)s)")
    args = parser.parse_args()
    try:  # 'x' was a ValueError traceback
        scales = [int(s) for s in args.scales.split(",")]
    except ValueError:
        parser.error(f"--scales: expected comma-separated positive integers, got {args.scales[:100]!r}")
    if any(s < 1 for s in scales) or args.repeat < 1:  # the message named neither flag nor value, after the usage
        parser.error(f"--scales and --repeat must be at least 1, got --scales {args.scales[:100]} --repeat {args.repeat}")
    parser.distinct("--scales", scales)
    if not args.trace.is_file():  # a traceback once the runs began
        parser.error(f"--trace: not a file: {args.trace}")
    if args.compare is not None and not (args.compare / "main.py").is_file():
        parser.error(f"--compare: not a kvsim checkout (no main.py): {args.compare}")
    modes = parser.distinct("--modes", args.modes.split(","))
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"--modes: unknown modes {unknown}; choose from {', '.join(MODES)}")
    checkouts = {"after": REPO} if args.compare is None else {"before": args.compare.resolve(), "after": REPO}
    print(f"trace: {args.trace} repeated {', '.join(f'x{s}' for s in scales)}; best of {args.repeat} run(s); "
          f"{os.cpu_count()} CPU(s)")
    head = " ".join(f"{name + ' wall s':>9} {'cpu s':>7} {'req/s':>10} {'RSS MiB':>9}" for name in checkouts)
    print(f"{'case':<14} {'requests':>10} {head}")
    with tempfile.TemporaryDirectory(prefix="bench_serving_") as tmp:
        for scale in scales:
            trace = Path(tmp) / f"azure_conv_x{scale}.csv"
            rows = repeat_trace(args.trace, scale, trace)
            for mode in modes:
                cells = [best_of(path, trace, MODES[mode], Path(tmp) / "report.json", args.repeat)
                         for path in checkouts.values()]
                print(f"{mode + f' x{scale}':<14} {rows:>10,} " + " ".join(_cell(m) for m in cells), flush=True)
            trace.unlink()
        cached = None if args.cached_trace == "none" else Path(args.cached_trace)
        if cached is not None and cached.is_file():
            for mode in modes:
                cells = [best_of(path, cached.resolve(), MODES[mode], Path(tmp) / "report.json", args.repeat)
                         for path in checkouts.values()]
                print(f"{mode + ' cached':<14} {cells[0].requests:>10,} " + " ".join(_cell(m) for m in cells),
                      flush=True)
        elif cached is not None:
            print(f"(no {cached}: the prefix-cached case is skipped)")
    print("wall s: the whole main.py process (start-up, trace loading, simulation, report); cpu s: its user + system "
          "CPU time (less sensitive to other load on the machine); req/s: requests completed per wall second; RSS: "
          "the process's peak resident set.")
    print(TARGETS)


if __name__ == "__main__":
    from sim.command import command_status, end_process

    end_process(command_status("bench_serving.py", main))  # without the interpreter's teardown: see sim.command
