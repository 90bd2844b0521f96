"""A labelled grid of serving runs for the report's overload caveat (sim/report/document.py: overload_caveat).

The caveat claims "requests came faster than they were served, so latencies grow with the trace's length". Each
grid point is judged by that claim, independently of the caveat: the same workload run again four times longer at
the same rate (a trace's 4x longer prefix at the same Poisson rate, a synthetic workload drawing 4x the requests of
the same law) is *overloaded* iff its mean TTFT grows by more than LABEL_GROWTH. That label is noisy near capacity
(a queue may start growing only after 4x the run, a heavy-tailed workload's mean moves by more than 25% by chance),
so each point also runs 16x longer: *sustained* iff the TTFT grows by more than LABEL_GROWTH again from 4x to 16x
(a queue that grows keeps growing; a warm-up settles). The caveat, which sees only the short run's report, is then
scored against each label and where the two agree (false positives and negatives per class of run).

    python tools/overload_grid.py run --jobs 2 --out /tmp/overload_grid.jsonl   # 537 runs, ~11 min on 2 cores
    python tools/overload_grid.py judge /tmp/overload_grid.jsonl               # confusion counts, per class
    python tools/overload_grid.py judge /tmp/overload_grid.jsonl --rule-from ../main   # another checkout's rule

Each record holds the short run's metrics (its time series included), so a new rule is judged again without
re-running: ``judge`` applies ``overload_caveat`` as imported (or another checkout's), ``--verbose`` lists its
false positives and negatives.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    # kvsim's packages load from this checkout, or for ``judge --rule-from CHECKOUT`` (another checkout's caveat, e.g.
    # the one before a change, judged on the same grid) from that one: first on the path before any of them loads
    given = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--rule-from=")]
    given += [b for a, b in zip(sys.argv, sys.argv[1:]) if a == "--rule-from"]
    for root in [str(ROOT), *(str(Path(g).resolve()) for g in given[-1:])]:
        if root in sys.path:
            sys.path.remove(root)
        sys.path.insert(0, root)
    import sim.script_start  # noqa: F401 (first: a stop before the command starts waits for it: one line)

# isort: split

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from typing import Any  # noqa: E402

AZURE = str(ROOT / "trace" / "data" / "azure_conv_2023.csv")
# the public data folder as the tests find it (tests/conftest.py): KVSIM_SHARED_DATA or shared/ beside the checkout
MOONCAKE = str(Path(os.environ.get("KVSIM_SHARED_DATA", ROOT.parent / "shared" / "data"))
               / "traces" / "mooncake_conversation.jsonl")
# A queue that grows with the run's length makes the mean wait of a run of length T grow ~T (it averages a wait that
# rises linearly), so a 4x longer overloaded run's mean TTFT at least doubles unless queueing is a sliver of it;
# a steady one's moves by its sampling noise and warm-up, mostly down (on this grid the 35 points both labels call
# steady moved by -74% to +23%; the 106 both call overloaded by +27% to 152x: the mild-overload points, near
# capacity, narrow the gap). 25% lies between. TTFT, not E2E: a steady run shorter than one lifetime holds a smaller
# batch than its steady state (its TPOT, so its E2E, rises with the run's length, at a rate the deployment serves:
# the start-up case's E2E +35%).
LABEL_GROWTH = 1.25
LONGER = 4

ONE = ["--set", "serving.num_instances=1"]
CLUSTER = ["--cluster", "--set", "cluster.num_racks=1", "--set", "cluster.nodes_per_rack=1",
           "--set", "hardware.gpus_per_node=2"]


def _syn(kind: str, rate: float, out: int | None = None, *extra: str) -> list[str]:
    """A synthetic workload of this kind at this rate (and mean output tokens)."""
    argv = ["--set", f"workload.synthetic.kind={kind}", "--set", f"workload.synthetic.rate_rps={rate}"]
    return argv + (["--set", f"workload.synthetic.output_tokens_mean={out}"] if out else []) + list(extra)


def _drawn(n: int) -> list[str]:
    """A synthetic workload of as many requests as a run of ``n`` and its 16x twin need, the same for all three runs
    (the default 2,000 would cut a longer twin short: it draws at most that many, whatever the limit; the first
    grid's synthetic points of 150 and 160 requests keep their 2,000, a 13-14x twin, as they were labelled)."""
    return ["--set", f"workload.synthetic.num_requests={LONGER**2 * n}"]


def _trace(path: str, rate: float) -> list[str]:
    """A trace's requests (token counts, block ids) at Poisson arrivals of this rate: the same rate over a prefix
    and its 4x longer twin (a trace's own times are not: a later stretch may run at another rate)."""
    return ["--workload-trace", path, "--set", "workload.arrivals.process=poisson",
            "--set", f"workload.arrivals.rate_rps={rate}"]


def grid() -> list[tuple[str, str, int, list[str]]]:
    """(class, name, requests of the short run, argv without --workload-limit): light to heavy rates, short and long
    outputs, few sequence slots, KV-tight HBM, a saturated PD link; single node, PD and a small cluster."""
    g: list[tuple[str, str, int, list[str]]] = []
    add = g.append
    # single node, one instance: the Azure conversation trace (~1,150 + ~210 tokens a request) from light to heavy
    for r in (5, 15, 25, 35, 50, 100):
        add(("single", f"azure {r}/s 1 inst", 200, ONE + _trace(AZURE, r)))
    for r in (25, 40):
        add(("single", f"azure {r}/s 1 inst n50", 50, ONE + _trace(AZURE, r)))
    for r in (60, 110, 160):
        add(("single", f"azure {r}/s 4 inst", 300, _trace(AZURE, r)))
    for r in (1, 2.5, 5):
        add(("seqs", f"azure {r}/s max_num_seqs=4", 100, ONE + ["--set", "serving.max_num_seqs=4"] + _trace(AZURE, r)))
    for r in (1, 3, 6):
        add(("kv-tight", f"azure {r}/s 600 blocks", 100, ONE + ["--set", "serving.num_gpu_blocks=600"]
             + _trace(AZURE, r)))
    # the default synthetic workload (multi-turn, steady start, four instances): the known start-up case, its seeds
    for n, seed in ((80, 0), (40, 0), (80, 1), (80, 2), (160, 0)):
        add(("startup", f"multi-turn 5/s out 1000 n{n} seed {seed}", n, ["--seed", str(seed)]
             + _syn("multi-turn", 5, 1000)))
    for r in (2, 20, 60):
        add(("single", f"multi-turn {r}/s out 1000 4 inst", 100, _syn("multi-turn", r, 1000)))
    for r in (2, 5, 10, 20):
        add(("single", f"multi-turn {r}/s 1 inst", 100, ONE + _syn("multi-turn", r)))
    add(("single", "multi-turn 5/s empty start 1 inst", 100, ONE + _syn("multi-turn", 5, None,
                                                                      "--set", "workload.synthetic.start=empty")))
    for r in (5, 20, 35, 50, 100):
        add(("single", f"system-prompt {r}/s out 100 1 inst", 150, ONE + _syn("system-prompt", r, 100)))
    for r in (2, 8, 30):
        add(("single", f"system-prompt {r}/s out 1000 1 inst", 60, ONE + _syn("system-prompt", r, 1000)))
    for r in (2, 8, 14, 20):
        add(("single", f"rag {r}/s 1 inst", 100, ONE + _syn("rag", r)))
    for r in (2, 5, 12, 20, 50):
        add(("single", f"agentic {r}/s 1 inst", 150, ONE + _syn("agentic", r)))
    for r in (0.5, 1, 3):
        add(("seqs", f"multi-turn {r}/s max_num_seqs=4", 60, ONE + ["--set", "serving.max_num_seqs=4"]
             + _syn("multi-turn", r)))
    for r in (3, 10):
        add(("seqs", f"system-prompt {r}/s max_num_seqs=8", 100, ONE + ["--set", "serving.max_num_seqs=8"]
             + _syn("system-prompt", r, 100)))
    for r in (0.3, 1, 3):
        add(("kv-tight", f"multi-turn {r}/s out 1000 2000 blocks", 60, ONE + ["--set", "serving.num_gpu_blocks=2000"]
             + _syn("multi-turn", r, 1000)))
    # Mooncake: ~12,000-token prompts (3.4 req/s in the trace)
    for r in (0.5, 0.9, 1.3, 2.5):
        add(("mooncake", f"mooncake {r}/s 1 inst", 80, ONE + _trace(MOONCAKE, r)))
    for r in (3, 6, 15):
        add(("mooncake", f"mooncake {r}/s 4 inst", 100, _trace(MOONCAKE, r)))
    # PD 1P:1D; a 10 Gb/s link carries ~10 Azure prompts' KV a second (1,150 tokens x 128 KiB)
    for r in (10, 25, 40, 80):
        add(("pd", f"pd azure {r}/s", 200, ["--pd"] + _trace(AZURE, r)))
    for r in (3, 6, 9, 12, 20):
        add(("pd-link", f"pd azure {r}/s 10 Gb/s", 150, ["--pd", "--set", "network.bandwidth_gbps=10"]
             + _trace(AZURE, r)))
    for r in (2, 5, 20):
        add(("pd", f"pd multi-turn {r}/s out 1000", 80, ["--pd"] + _syn("multi-turn", r, 1000)))
    for r in (10, 40):
        add(("pd", f"pd system-prompt {r}/s", 150, ["--pd"] + _syn("system-prompt", r, 100)))
    for r in (1, 1.7, 3.4):
        add(("pd", f"pd mooncake {r}/s", 80, ["--pd"] + _trace(MOONCAKE, r)))
    # a small cluster: one node of two GPUs, two instances
    for r in (10, 30, 45, 90):
        add(("cluster", f"cluster azure {r}/s", 200, CLUSTER + _trace(AZURE, r)))
    for r in (2, 5, 30):
        add(("cluster", f"cluster multi-turn {r}/s out 1000", 80, CLUSTER + _syn("multi-turn", r, 1000)))
    for r in (1.7, 7):
        add(("cluster", f"cluster mooncake {r}/s", 80, CLUSTER + _trace(MOONCAKE, r)))
    for r in (10, 40):
        add(("cluster", f"cluster pd azure {r}/s", 200, CLUSTER + ["--pd"] + _trace(AZURE, r)))
    # traces at their own times (scaled): a longer prefix is a later stretch, at the trace's rate there
    for name, n, argv in (("azure own x4 1 inst", 200, ONE), ("azure own x0.5 max_num_seqs=4", 100,
                          ONE + ["--set", "serving.max_num_seqs=4"]), ("azure own x20 4 inst", 300, [])):
        scale = name.split(" x")[1].split()[0]
        add(("own-times", name, n, argv + ["--workload-trace", AZURE, "--rate-scale", scale]))
    add(("own-times", "mooncake own x1 1 inst", 80, ONE + ["--workload-trace", MOONCAKE]))
    # mild overload: arrivals a few percent to 30% above what a setting serves at most, so its backlog grows by
    # (rate - capacity) x time, a small share of the requests, while its latencies still grow without bound; short
    # and long runs, with controls at 0.7x and 0.9x (steady unless a later stretch of the trace is heavier)
    for setting, (argv, short, long) in MILD.items():
        for factor, n in ((1.05, short), (1.3, short), (0.7, long), (0.9, long), (1.02, long), (1.1, long), (1.3, long)):
            rate = float(f"{factor * CAPACITY[setting]:.3g}")
            add(("mild", f"{setting} {rate:g}/s ({factor}x) n{n}", n, argv(rate)))
    # the README's sweep example (experiments/examples/sweep_pd_split.yaml, --workload-limit 2000): the 25 Gb/s
    # 1P:3D point at the trace's own times x4 (~19 req/s); its 16x twin is the whole trace (19,366 requests, ~9.7x)
    add(("mild", "sweep pd_split 25 Gb/s 1P:3D own x4 n2000", 2000, PD_SWEEP + ["--workload-trace", AZURE,
                                                                               "--rate-scale", "4"]))
    return g


# The PD point of the README's sweep example: push transfer, one prefill instance and three decode over 25 Gb/s
PD_SWEEP = ["--pd", "--set", "pd.transfer=push", "--set", "pd.num_prefill=1", "--set", "pd.num_decode=3",
            "--set", "network.bandwidth_gbps=25"]
SEQS4 = ["--set", "serving.max_num_seqs=4"]
# Requests a second each setting serves at most (measured here: 1,500 requests arriving far faster than that, the
# completions over the middle half of the time the system was busy, its queue never empty)
CAPACITY = {"azure 1 inst": 22.6, "azure max_num_seqs=4": 2.33, "azure 600 blocks": 3.78, "pd azure 1P:3D 25 Gb/s": 22.9,
            "pd azure 10 Gb/s": 9.77, "cluster azure": 38.1, "mooncake 1 inst": 1.37,
            "system-prompt out 100 1 inst": 26.7, "rag 1 inst": 7.53, "multi-turn out 1000 2000 blocks": 0.71,
            "system-prompt out 100 max_num_seqs=8": 8.99, "multi-turn max_num_seqs=4": 2.14}
# setting -> (argv at a rate, short and long run's requests; a long Azure run's 16x twin fits the trace's 19,366)
MILD = {
    "azure 1 inst": (lambda r: ONE + _trace(AZURE, r), 200, 1000),
    "azure max_num_seqs=4": (lambda r: ONE + SEQS4 + _trace(AZURE, r), 100, 1000),
    "azure 600 blocks": (lambda r: ONE + ["--set", "serving.num_gpu_blocks=600"] + _trace(AZURE, r), 100, 1000),
    "pd azure 1P:3D 25 Gb/s": (lambda r: PD_SWEEP + _trace(AZURE, r), 300, 1000),
    "pd azure 10 Gb/s": (lambda r: ["--pd", "--set", "network.bandwidth_gbps=10"] + _trace(AZURE, r), 150, 1000),
    "cluster azure": (lambda r: CLUSTER + _trace(AZURE, r), 200, 1000),
    "mooncake 1 inst": (lambda r: ONE + _trace(MOONCAKE, r), 80, 250),
    "system-prompt out 100 1 inst": (lambda r: ONE + _syn("system-prompt", r, 100, *_drawn(1000)), 150, 1000),
    "rag 1 inst": (lambda r: ONE + _syn("rag", r, None, *_drawn(1000)), 100, 1000),
    "multi-turn out 1000 2000 blocks": (lambda r: ONE + ["--set", "serving.num_gpu_blocks=2000"]
                                        + _syn("multi-turn", r, 1000, *_drawn(300)), 60, 300),
    # few sequence slots over a workload of one law throughout: a steady queue that a longer run keeps as it is
    "system-prompt out 100 max_num_seqs=8": (lambda r: ONE + ["--set", "serving.max_num_seqs=8"]
                                             + _syn("system-prompt", r, 100, *_drawn(1000)), 100, 1000),
    "multi-turn max_num_seqs=4": (lambda r: ONE + SEQS4 + _syn("multi-turn", r, None, *_drawn(500)), 60, 500),
}


def _one(argv: list[str]) -> dict[str, Any]:
    """One run through main.main in this process; its single run's metrics."""
    import main

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            status = main.main([*argv, "--report-json", str(out), "--no-plot", "--quiet"])
        if status in (130, 143):  # stopped (main's own handler caught the pool's SIGTERM): end this worker, or
            raise SystemExit(status)  # it would wait for the next task and the pool's terminate for it (a hang)
        if status != 0:
            raise RuntimeError(f"exit {status}: {' '.join(argv)}: {err.getvalue()[-300:]}")
        return json.loads(out.read_text())["runs"][0]["metrics"]


def _point(point: tuple[str, str, int, list[str]]) -> dict[str, Any]:
    """The short run and its 4x longer twin: the label and the short run's metrics."""
    cls, name, n, argv = point
    short = _one([*argv, "--workload-limit", str(n)])
    long = _one([*argv, "--workload-limit", str(LONGER * n)])
    longest = _one([*argv, "--workload-limit", str(LONGER**2 * n)])
    keys = ("ttft_s", "e2e_s", "tpot_s")
    growth = {k: long[k]["mean"] / short[k]["mean"] for k in keys}
    further = {k: longest[k]["mean"] / long[k]["mean"] for k in keys}
    return {"class": cls, "name": name, "n": n, "argv": argv, "growth": growth, "further": further,
            "overloaded": growth["ttft_s"] > LABEL_GROWTH, "sustained": further["ttft_s"] > LABEL_GROWTH,
            "short": short, "long": {k: long[k] for k in keys}, "longest": {k: longest[k] for k in keys}}


def _done_points(out: Path) -> set[str]:
    """The names of the points ``out`` (run's --out) holds already; a line that is not a point's record is refused
    naming it (it was a JSONDecodeError or KeyError traceback, exit 1, after the workers had started)."""
    from sim.errors import InputError

    if not out.exists():
        return set()
    try:
        lines = out.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--out {out}: cannot read the points it holds: {exc}") from None
    done = set()
    for number, line in enumerate(lines, 1):
        try:
            done.add(json.loads(line)["name"]) if line.strip() else None
        except (ValueError, TypeError, KeyError):
            raise InputError(f"--out {out} line {number} is not a grid point (one JSON object with its 'name', as "
                             f"'run' writes): {line[:60]!r}") from None
    return done


def run(args: argparse.Namespace) -> int:
    points = [p for p in grid() if not args.only or args.only in p[1]]
    traces = {a[i + 1] for *_, a in points for i, flag in enumerate(a) if flag == "--workload-trace"}
    missing = sorted(t for t in traces if not Path(t).is_file())
    if missing:
        print(f"overload_grid: trace {missing[0]} not found (set KVSIM_SHARED_DATA, or --only to skip its points)",
              file=sys.stderr)
        return 2
    # a forked worker leaves stopping to this process, as a sweep's do (kvsim's SIGTERM handler, inherited by the
    # fork, raised ``Terminated`` in each idle worker the pool's ``terminate`` signalled: a traceback each, and a
    # worker left waiting on the task queue's lock the dead one held, a hang)
    import main  # noqa: F401  (imported once, before the workers fork)
    from experiments.runner import stops_held_while_forking, worker_start

    out = args.out
    done = _done_points(out)
    todo = [p for p in points if p[1] not in done]
    out.parent.mkdir(parents=True, exist_ok=True)  # (check_writable took a folder still to be made)
    ctx = multiprocessing.get_context("fork")
    with stops_held_while_forking():  # (a stop as they fork waits for each worker's own handlers: ``worker_start``)
        pool = ctx.Pool(args.jobs, initializer=worker_start, initargs=(os.getpid(), threading.get_ident()))
    with pool, out.open("a") as fh:
        for rec in pool.imap_unordered(_point, todo):
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            print(f"{rec['class']:9s} {rec['name']:40s} TTFT x{rec['growth']['ttft_s']:.2f} "
                  f"E2E x{rec['growth']['e2e_s']:.2f} then TTFT x{rec['further']['ttft_s']:.2f} "
                  f"{'OVER' if rec['overloaded'] else 'ok'}/{'OVER' if rec['sustained'] else 'ok'}", flush=True)
        pool.close()  # done: the workers end on their own (the ``with``'s terminate is for an interruption)
        pool.join()
    return 0


LABELS = {"overloaded": "4x (TTFT of the 4x twin over the run's > 1.25)",
          "sustained": "16x (TTFT of the 16x twin over the 4x twin's > 1.25)",
          "agree": "both (points where the two labels agree)"}


# what ``judge`` reads of each point ``_point`` wrote: its keys, and the growths' keys
JUDGED = ("class", "name", "short", "overloaded", "sustained", "growth", "further")


def _grid_points(path: Path) -> list[dict[str, Any]]:
    """The points of a grid ``run`` wrote, each checked for what ``judge`` reads: a ValueError naming the first line
    that lacks it (a record without its labels was a KeyError traceback, exit 1, from the middle of the scores) or
    saying the grid holds none (an empty grid printed three empty tables, exit 0)."""
    points = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        point = json.loads(line)
        missing = [k for k in JUDGED if k not in point] if isinstance(point, dict) else list(JUDGED)
        if not missing and not all(isinstance(point[k], dict) and "ttft_s" in point[k] for k in ("growth", "further")):
            missing = ["growth.ttft_s / further.ttft_s"]
        if missing:
            raise ValueError(f"line {number} lacks {', '.join(missing)}")
        points.append(point)
    if not points:
        raise ValueError("no points in it")
    return points


def judge(args: argparse.Namespace) -> int:
    import inspect

    from sim.errors import InputError
    from sim.report.document import overload_caveat  # --rule-from's, where given: first on the path (see the top)

    if args.rule_from is not None:  # a folder holding no kvsim (or not the one imported) judged this checkout's rule
        wanted = Path(args.rule_from).resolve() / "sim" / "report" / "document.py"
        if not wanted.is_file():
            raise InputError(f"--rule-from {args.rule_from}: not a kvsim checkout (no sim/report/document.py in it)")
        if Path(inspect.getfile(overload_caveat)).resolve() != wanted:
            raise InputError(f"--rule-from {args.rule_from}: its rule was not the one imported (give it on the "
                             "command line: python tools/overload_grid.py judge GRID --rule-from CHECKOUT)")
    path = Path(args.grid)
    try:
        recs = _grid_points(path)
        flags = [overload_caveat(r["short"]) is not None for r in recs]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"overload_grid: {path}: not a grid written by 'run' ({str(exc)[:100]})", file=sys.stderr)
        return 2
    for label, what in LABELS.items():
        counts: dict[str, dict[str, int]] = {}
        for r, flagged in zip(recs, flags, strict=True):
            truth = r[label] if label != "agree" else (r["overloaded"] if r["overloaded"] == r["sustained"] else None)
            if truth is None:
                continue
            cell = {(True, True): "tp", (False, False): "tn", (True, False): "fp", (False, True): "fn"}[(flagged, truth)]
            for cls in (r["class"], "all"):
                counts.setdefault(cls, {"tp": 0, "tn": 0, "fp": 0, "fn": 0})[cell] += 1
            if args.verbose and cell in ("fp", "fn"):
                print(f"  {cell}  {r['class']:9s} {r['name']:42s} TTFT x{r['growth']['ttft_s']:.2f} "
                      f"then x{r['further']['ttft_s']:.2f}")
        print(f"label {what}")
        for cls, c in sorted(counts.items()):
            print(f"  {cls:9s} tp {c['tp']:3d}  tn {c['tn']:3d}  fp {c['fp']:3d}  fn {c['fn']:3d}  "
                  f"errors {c['fp'] + c['fn']:3d}")
    return 0


def cli(argv: list[str] | None = None) -> int:
    from sim.cli import OneLineParser, path_argument  # one-line errors (exit 2), as every other tool's

    parser = OneLineParser(prog="python tools/overload_grid.py", name="overload_grid.py",
                           description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the grid (resumes: points already in --out are skipped)")
    r.add_argument("--out", required=True, type=path_argument,
                   help="JSON-lines file of the labelled points (appended to)")
    r.add_argument("--jobs", type=int, default=1, help="points run at once, each in a forked process (default 1)")
    r.add_argument("--only", help="points whose name contains this")
    j = sub.add_parser("judge", help="score the caveat against a grid's labels")
    r.name = j.name = parser.name  # (their errors start as the command's others do)
    j.add_argument("grid", help="a JSON-lines file written by 'run'")
    j.add_argument("-v", "--verbose", action="store_true", help="list every false positive and negative")
    j.add_argument("--rule-from", metavar="CHECKOUT", help="judge the caveat of this kvsim checkout instead")
    args = parser.parse_args(argv)
    if args.cmd == "run":  # refused before the grid starts (a pool of 0 workers, an --out it cannot append to
        # were tracebacks, exit 1)
        from sim.report.output import check_writable

        if args.jobs < 1:
            r.error("--jobs must be >= 1")
        if args.only == "":  # (every name contains "": the whole grid ran, 537 runs)
            r.error("--only needs a part of a point's name, not an empty one")
        names = [p[1] for p in grid()]
        if args.only is not None and not any(args.only in name for name in names):  # (a misspelt name: 0 points run)
            r.error(f"--only {args.only!r} is in no point's name: the {len(names)} points are named by workload "
                    f"({', '.join(sorted({n.split()[0] for n in names}))}), rate and setting, as "
                    f"{names[0]!r}")
        args.out = check_writable(args.out, "--out").absolute()
    return run(args) if args.cmd == "run" else judge(args)


if __name__ == "__main__":
    from sim.command import command_status, end_process

    end_process(command_status("overload_grid.py", cli))  # without the interpreter's teardown: see sim.command
