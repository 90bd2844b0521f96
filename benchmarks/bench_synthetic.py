"""Benchmark: the synthetic workload generator, by stage, and ``--trace-stats`` on it end to end.

For each request count (``--requests``, default 100,000 and 1,000,000) and start (``--starts``, default steady and
empty: ``workload.synthetic.start``) of ``--kind`` (default multi-turn, config.yaml's other settings), one fresh
subprocess times, after a 1,000-request warm-up (imports, numba's cached kernels):

- ``draw``: the generator's requests alone (arrivals, sessions, token counts: ``trace.synthetic.GENERATORS``);
- ``load_workload``: the workload a run gets (the draw again, the block ids of every prompt, the arrival process),
  its block count and mean prompt;
- ``trace_stats``: ``--trace-stats``' statistics and serving reuse ceiling over it;
- the subprocess's peak RSS.

Then ``python main.py --trace-stats --set workload.synthetic.num_requests=N ... --no-plot --quiet`` end to end (best
of ``--repeat`` runs: the interpreter's start-up and imports, the workload, the statistics), with its peak RSS, and
the same command at 10 requests (the start-up alone). Run from the repository root::

    python benchmarks/bench_synthetic.py [--requests 100000,1000000] [--starts steady,empty] [--kind multi-turn]
        [--repeat 1]

Timings depend on the machine and on whatever else runs on it: the load average is printed before and after.
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
import time  # noqa: E402

KINDS = ("multi-turn", "system-prompt", "rag", "agentic")
STARTS = ("steady", "empty")
GIB = 1 << 30

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})  # the project's `trace` package, not the stdlib module
import numpy as np
from sim.config import load_config
from sim.serving.engine_limits import block_size
from trace.stats import trace_stats
from trace.synthetic import GENERATORS
from trace.workload import context_tokens, load_workload, with_trace_block_size


def config(n):
    return load_config({config!r}, sets=[f"workload.synthetic.kind={kind}", f"workload.synthetic.num_requests={{n}}",
                                         f"workload.synthetic.start={start}"])


def clocks():
    return time.perf_counter(), time.process_time()


load_workload(config(1000))  # warm-up: imports and numba's cached kernels, as any run pays them once
cfg = config({requests})
t0 = clocks()
GENERATORS[cfg.workload.synthetic.kind](cfg.workload.synthetic, np.random.default_rng(cfg.seed), block_size(cfg),
                                        context_tokens(cfg))
t1 = clocks()
trace = load_workload(cfg)
t2 = clocks()
trace_stats(trace, with_trace_block_size(cfg, trace).workload.outputs_in_next_turn)
t3 = clocks()
scale = 1 if sys.platform == "darwin" else 1024
print(json.dumps(dict(draw_s=[b - a for a, b in zip(t0, t1)], load_s=[b - a for a, b in zip(t1, t2)],
                      stats_s=[b - a for a, b in zip(t2, t3)], requests=len(trace),
                      blocks=trace.num_accesses, prompt_mean=float(trace.input_tokens.mean()),
                      peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale)))
from sim.command import end_process
end_process(0)  # without the interpreter's teardown, where pyarrow's thread pools now and then abort: see sim.command
"""


def stages(kind: str, start: str, requests: int) -> dict:
    code = _CHILD.format(repo=str(REPO), config=str(REPO / "config.yaml"), kind=kind, start=start, requests=requests)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"generator subprocess failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def end_to_end(kind: str, start: str, requests: int, repeat: int) -> tuple[float, float, int]:
    """Of ``main.py --trace-stats`` over ``repeat`` runs, the best: wall time, CPU time (user + system) and peak RSS."""
    argv = [sys.executable, "main.py", "--trace-stats", "--set", f"workload.synthetic.kind={kind}", "--set",
            f"workload.synthetic.num_requests={requests}", "--set", f"workload.synthetic.start={start}", "--no-plot",
            "--quiet"]
    best = (float("inf"), 0.0, 0)
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)  # (this child's own peak, not the largest of all children so far)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv[1:])}: exit {proc.returncode}")
        cpu = usage.ru_utime + usage.ru_stime
        best = min(best, (wall, cpu, usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)))
    return best


def _names(text: str, valid: tuple[str, ...], flag: str, parser) -> list[str]:
    names = parser.distinct(flag, [name.strip() for name in text.split(",") if name.strip()])
    unknown = [name for name in names if name not in valid]
    if not names or unknown:
        parser.error(f"{flag}: {', '.join(unknown) or 'none given'}; choose from {', '.join(valid)}")
    return names


def main(argv: list[str] | None = None) -> int:
    from sim.cli import OneLineParser  # one-line errors; a flag given twice is refused (argparse kept the last)

    ap = OneLineParser(description=__doc__.split("\n\n")[0].replace("``", ""))
    ap.add_argument("--requests", default="100000,1000000",
                    help="comma-separated request counts (default: %(default)s)")
    ap.add_argument("--starts", default="steady,empty",
                    help="comma-separated workload.synthetic.start values (default: %(default)s)")
    ap.add_argument("--kind", default="multi-turn", choices=KINDS,
                    help="workload.synthetic.kind (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=1, help="end-to-end runs of each, the best kept (default 1)")
    args = ap.parse_args(argv)
    try:
        counts = ap.distinct("--requests", [int(n) for n in args.requests.split(",")])
    except ValueError:
        ap.error(f"--requests: not a comma-separated list of counts: {args.requests!r}")
    if min(counts) < 1 or args.repeat < 1:
        ap.error(f"--requests counts and --repeat must be at least 1, got --requests {args.requests[:100]} --repeat {args.repeat}")
    starts = _names(args.starts, STARTS, "--starts", ap)
    print(f"{args.kind}, config.yaml's settings; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print("  seconds as wall / CPU (user + system: what a loaded machine moves least)")
    print(f"  {'requests':>10} {'start':<7} {'blocks':>9} {'prompt':>7} {'draw':>12} {'load_workload':>13} "
          f"{'trace_stats':>12} {'peak RSS':>9} {'--trace-stats':>14} {'its RSS':>9}")

    def pair(times) -> str:
        return f"{times[0]:.2f} / {times[1]:.2f}"

    for requests in counts:
        for start in starts:
            r = stages(args.kind, start, requests)
            wall, cpu, rss = end_to_end(args.kind, start, requests, args.repeat)
            print(f"  {requests:>10,} {start:<7} {r['blocks'] / 1e6:>8.1f}M {r['prompt_mean']:>7,.0f} "
                  f"{pair(r['draw_s']):>12} {pair(r['load_s']):>13} {pair(r['stats_s']):>12} "
                  f"{r['peak_rss_bytes'] / GIB:>5.2f} GiB {pair((wall, cpu)):>14} {rss / GIB:>5.2f} GiB")
    wall, cpu, _ = end_to_end(args.kind, starts[0], 10, max(args.repeat, 3))
    print(f"  --trace-stats at 10 requests (start-up and imports): {pair((wall, cpu))} s")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    from sim.command import command_status, end_process

    end_process(command_status("bench_synthetic.py", main))
