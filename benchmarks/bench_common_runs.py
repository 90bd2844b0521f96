"""Benchmark: wall and CPU seconds of the runs users make most, each a fresh main.py process.

Each run is timed ``--repeat`` times (default 3) from process start to exit, after one untimed run that writes the
bytecode and loads the compiled kernels' cache (as a first run or an install does); it prints the median wall seconds
and the median CPU seconds (user + sys of the child, its threads included: ``wait4`` rusage). The runs:

- ``readme``: the README's first command, ``--pd --preset smoke`` on the bundled Azure trace, with its plots;
- ``cache-1k``/``cache-5k``/``cache-20k``: ``--cache-only`` on the Mooncake conversation trace, five policies
  (lru, arc, s3fifo, sieve, belady) at 1,000 / 5,000 / 20,000 blocks, with its plot;
- ``single``/``pd``: default serving (four instances) and ``--pd`` on the whole Azure trace (19,366 requests), with
  plots and ``--requests-csv``;
- ``cluster``: ``--cluster`` on the Mooncake trace (``--workload-limit 20000``: all 12,031 requests), with plots and
  ``--requests-csv``;
- ``max-rate``: ``--max-rate`` over the RTX 4090 LLMServingSim bundle (``profiles/rtx4090_llama31_8b_vllm.yaml``, the
  ShareGPT 300-request trace, TTFT <= 0.3 s for 99%), 15 probes, with plots.

Run from the repository root (the shared data folder beside it)::

    python benchmarks/bench_common_runs.py [--repeat 3] [--runs readme,max-rate]

Measured 2026-12-05 on 2 cores shared with other work (load average ~5: wall is noisy, CPU less so), median of 3,
before -> after plots drawn once, an LLMServingSim bundle's compute model kept across a search's probes and
--requests-csv written without pandas (the reports, CSVs and PNGs of every run byte-identical before and after):

    run        CPU s         wall s
    readme     2.14 -> 1.77  3.30 -> 2.77
    cache-*    1.05-1.08 -> 1.07-1.10 (unchanged: imports, trace load, one plot)
    single     3.83 -> 3.45  7.39 -> 6.74
    pd         4.26 -> 3.74  8.61 -> 7.29
    cluster    5.60 -> 5.37  8.67 -> 8.53
    max-rate   5.99 -> 5.33  9.22 -> 8.06
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere: the repository's packages

import sim.script_start  # noqa: E402, F401 (first: a stop before the command starts waits for it: one line)

# isort: split

import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

SHARED = Path(os.environ.get("KVSIM_SHARED_DATA", ROOT.parent / "shared" / "data"))
AZURE = "trace/data/azure_conv_2023.csv"
MOONCAKE = str(SHARED / "traces" / "mooncake_conversation.jsonl")
SHAREGPT = str(SHARED / "traces" / "llmservingsim_sharegpt_llama31_8b_300.jsonl")
POLICIES = "lru,arc,s3fifo,sieve,belady"

RUNS: dict[str, list[str]] = {
    "readme": ["--pd", "--preset", "smoke", "--workload-trace", AZURE],
    **{f"cache-{k}": ["--cache-only", "--workload-trace", MOONCAKE, "--policy", POLICIES, "--capacity-blocks", str(n)]
       for k, n in (("1k", 1000), ("5k", 5000), ("20k", 20000))},
    "single": ["--workload-trace", AZURE, "--requests-csv", "{out}/requests.csv"],
    "pd": ["--pd", "--workload-trace", AZURE, "--requests-csv", "{out}/requests.csv"],
    "cluster": ["--cluster", "--workload-trace", MOONCAKE, "--workload-limit", "20000",
                "--requests-csv", "{out}/requests.csv"],
    "max-rate": ["--max-rate", "--calibration-profile", "profiles/rtx4090_llama31_8b_vllm.yaml", "--workload-trace",
                 SHAREGPT, "--set", "slo.ttft_s=0.3", "--set", "slo.attainment=0.99"],
}


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + sys) seconds of one ``main.py`` process."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # (as users run it: .pyc kept)
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "main.py", *argv], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, status, usage = os.wait4(child.pid, 0)
    except BaseException:  # stopped (SIGTERM, or Ctrl-C sent to this process alone): the run timed goes with it
        child.kill()
        child.wait()
        raise
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"main.py {' '.join(argv)}: exit {os.waitstatus_to_exitcode(status)}: "
                 f"{child.stderr.read().decode()[-500:]}")
    child.stderr.close()
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    from sim.cli import OneLineParser  # a flag of one value given twice is refused (argparse kept the last)

    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs of each command after one untimed warm-up; the median is printed (default 3)")
    parser.add_argument("--runs", default=",".join(RUNS),
                        help=f"which commands to time, comma-separated (default: all: {', '.join(RUNS)})")
    args = parser.parse_args()
    names = args.runs.split(",")
    unknown = [n for n in names if n not in RUNS]
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    if unknown:
        parser.error(f"--runs: unknown run(s) {', '.join(unknown)} (known: {', '.join(RUNS)})")
    if not SHARED.is_dir():
        parser.error(f"shared data folder {SHARED} not found (set KVSIM_SHARED_DATA or clone beside shared/)")
    print(f"load average {os.getloadavg()[0]:.2f}; median of {args.repeat}")
    print(f"{'run':<10} {'wall s':>8} {'CPU s':>8}")
    for name in names:
        with tempfile.TemporaryDirectory() as out:
            argv = [a.replace("{out}", out) for a in RUNS[name]]
            argv += ["--report-json", f"{out}/report.json", "--plot-dir", f"{out}/plots", "--quiet"]
            timed(argv)  # bytecode written, compiled kernels' cache loaded
            walls, cpus = zip(*(timed(argv) for _ in range(args.repeat)))
        print(f"{name:<10} {statistics.median(walls):>8.2f} {statistics.median(cpus):>8.2f}", flush=True)


if __name__ == "__main__":
    from sim.command import command_status, end_process

    end_process(command_status("bench_common_runs.py", main))  # without the interpreter's teardown: see sim.command
