"""Hunt for bugs with many random valid runs: the generator of tests/test_random_combinations.py (tests/
random_settings.py) drawn from a seeded numpy Generator, each draw run in this process (as the test does: a
subprocess costs seconds of imports a draw) and judged as the test judges it. Prints one line per violation with the
exact command that reproduces it; exits 1 if any, 0 if none, 2 on bad usage.

    python tools/random_runs.py --draws 300 --seed 7            # the hunt's generator (per-tier policies, learned, ...)
    python tools/random_runs.py --draws 50 --seed 7 --light     # the CI test's lighter generator
    python tools/random_runs.py --seed 7 --only 123             # draw 123 of seed 7 again

Draw i of seed S is the same command line on every machine (numpy.random.default_rng([S, i])).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from anywhere: the repository's packages
    sys.path[:0] = [str(ROOT)]

import sim.script_start  # noqa: E402, F401 (first: a stop before the command starts waits for it: one line)

# isort: split

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import signal  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402


class _Hang(BaseException):
    """A draw past --timeout: not an Exception, which main.main's command_status would report as an internal error
    (exit 1) and the hunt then as a traceback, not a hang."""


def _alarm(*_) -> None:
    raise _Hang


def run_draw(argv: list[str], timeout_s: int) -> tuple[int | None, str, dict | None, float]:
    """Run main.main(argv) here: (exit status or None on a hang, stderr, the report or None, seconds)."""
    import main

    with tempfile.TemporaryDirectory(prefix="kvsim-random-run-") as tmp:
        out = Path(tmp) / "r.json"
        err, sink = io.StringIO(), io.StringIO()
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(timeout_s)
        start = time.perf_counter()
        status: int | None
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(sink):
                try:
                    status = main.main([*argv, "--quiet", "--no-plot", "--report-json", str(out)])
                except SystemExit as e:  # main.main returns its status; an escaping exit is a finding too
                    status = e.code if isinstance(e.code, int) else 1
                    print(f"SystemExit({e.code!r}) escaped main.main", file=sys.stderr)
        except _Hang:
            status = None
        except Exception as e:  # noqa: BLE001 — an exception escaping main.main is the finding
            import traceback

            status, _ = 1, err.write("Traceback (escaped main.main)\n" + traceback.format_exc() + f"{e!r}\n")
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        seconds = time.perf_counter() - start
        report = json.loads(out.read_text()) if status == 0 and out.exists() else None
    return status, err.getvalue(), report, seconds


def _first_difference(x, y, path: str = "") -> tuple[str, object, object]:
    """The first path at which two JSON values differ, with the two values there."""
    if isinstance(x, dict) and isinstance(y, dict):
        key = next(k for k in sorted(set(x) | set(y), key=str) if x.get(k) != y.get(k))
        return _first_difference(x.get(key), y.get(key), f"{path}.{key}" if path else str(key))
    if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        j = next(j for j in range(len(x)) if x[j] != y[j])
        return _first_difference(x[j], y[j], f"{path}[{j}]")
    return path, x, y


def _differs(first: dict, second: dict | None) -> str | None:
    """Where a second run's report differs from the first's, timing aside (None: identical)."""
    if second is None:
        return "a second run of the same command wrote no report"
    a, b = ({k: v for k, v in r.items() if k != "timing"} for r in (first, second))
    if a == b:
        return None
    path, x, y = _first_difference(a, b)
    return f"a second run of the same command differs at {path}: {str(x)[:80]} then {str(y)[:80]}"


def main(argv: list[str] | None = None) -> int:
    from sim.cli import OneLineParser  # one-line errors (exit 2), as every other tool's; a repeated flag refused

    parser = OneLineParser(prog="python tools/random_runs.py", name="random_runs.py", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=100, help="number of draws (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws, >= 0 (default 0)")
    parser.add_argument("--start", type=int, default=0, help="first draw's index (default 0)")
    parser.add_argument("--only", type=int, default=None, help="run draw ONLY alone and print its command")
    parser.add_argument("--light", action="store_true", help="the CI test's generator (no per-tier policies, no "
                        "learned policy, no draws aimed at a spanned hierarchy, fewer --max-rate/--seeds draws)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds a draw may take before it is a hang "
                        "(default 300: a per-tier policy combination compiles its kernels once, ~40 s each)")
    parser.add_argument("--repeat", type=float, default=0.1, help="share of the draws that exit 0 run a second time, "
                        "whose report must equal the first but for timing (DESIGN Contract: determinism; here also "
                        "state one run leaves in the process); default 0.1")
    parser.add_argument("--refusals", action="store_true", help="also print every exit-2 message, counted")
    parser.add_argument("--stats", action="store_true", help="also print, per corner (mode, model family, GPU, "
                        "workload, feature), how many draws reached a report, were refused or violated")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per draw")
    args = parser.parse_args(argv)
    if not 0 <= args.repeat <= 1:
        parser.error("--repeat must be in [0, 1]")
    if args.draws < 1 or args.seed < 0 or args.start < 0 or args.timeout < 1 or (args.only is not None and args.only < 0):
        parser.error("--draws and --timeout must be >= 1, --seed, --start and --only >= 0")
    import numpy as np

    from sim.command import raise_if_stopped
    from tests.random_corners import corners
    from tests.random_settings import RngChooser, draw_argv
    from tests.run_outcome import judge

    indices = [args.only] if args.only is not None else range(args.start, args.start + args.draws)
    found, refusals, slow, first_refused = 0, Counter(), [], {}
    outcomes: Counter = Counter()
    reached: dict[str, Counter] = {}  # corner -> outcome counts (--stats)
    why: dict[str, Counter] = {}  # corner -> its refusals' messages (--stats)
    for i in indices:
        cmd = draw_argv(RngChooser(np.random.default_rng([args.seed, i])), hunt=not args.light)
        status, err, report, seconds = run_draw(cmd, args.timeout)
        raise_if_stopped()  # a Ctrl-C main.main answered (130) stops the hunt too
        line = "python main.py " + shlex.join(cmd)
        problem = f"no answer in {args.timeout} s" if status is None else judge(status, err, report, cmd)
        if not problem and report is not None and np.random.default_rng([args.seed, i, 1]).random() < args.repeat:
            problem = _differs(report, run_draw(cmd, args.timeout)[2])
        outcomes["violation" if problem else f"exit {status}"] += 1
        for corner in corners(cmd):
            reached.setdefault(corner, Counter())["violation" if problem else "report" if status == 0 else "refused"] += 1
            if status == 2 and not problem:
                why.setdefault(corner, Counter())[re.sub(r"\d[\d,.]*\d|\d", "N", err.strip()[len("kvsim: error: "):])[:110]] += 1
        slow.append((seconds, i))
        if status == 2 and not problem:
            refusals[err.strip()[len("kvsim: error: "):][:300]] += 1
            first_refused.setdefault(err.strip()[len("kvsim: error: "):][:300], i)
        if args.verbose or args.only is not None:
            print(f"draw {args.seed}:{i} exit {status} {seconds:.1f} s: {line}", flush=True)
        if problem:
            found += 1
            print(f"VIOLATION {args.seed}:{i}: {problem}\n    {line}", flush=True)
    total = sum(outcomes.values())
    slowest = ", ".join(f"{i} ({s:.0f} s)" for s, i in sorted(slow, reverse=True)[:5])
    print(f"{total} draws of seed {args.seed}: {dict(sorted(outcomes.items()))}; slowest draws: {slowest}")
    if args.refusals:
        for message, n in refusals.most_common():
            print(f"  refused x{n} (first: draw {first_refused[message]}): {message}")
    if args.stats:
        _print_stats(reached, why)
    return 1 if found else 0


def _print_stats(reached: dict[str, Counter], why: dict[str, Counter]) -> None:
    """One line per corner: draws, reports, refusals, violations and the share reaching a report; below 30% marked,
    with the corner's two commonest refusals (numbers as N)."""
    print(f"  {'corner':44} {'draws':>5} {'report':>6} {'refused':>7} {'viol':>4} {'report%':>7}")
    for corner in sorted(reached):
        n = reached[corner]
        total = sum(n.values())
        share = n["report"] / total
        print(f"  {corner:44} {total:5d} {n['report']:6d} {n['refused']:7d} {n['violation']:4d} {share:7.0%}"
              + ("  <30%" if share < 0.3 else ""))
        if share < 0.3:
            for message, k in why.get(corner, Counter()).most_common(2):
                print(f"      x{k}: {message}")


if __name__ == "__main__":
    from sim.command import command_status, end_process

    end_process(command_status("random_runs.py", main))  # without the interpreter's teardown: see sim.command
