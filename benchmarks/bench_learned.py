"""Benchmark: learned eviction vs the classic policies, libCacheSim's learned peers and Belady.

For each workload the model is trained on an earlier part (``python -m learned.train``) and every
policy is judged on a later, disjoint part, at several capacities and at the knee of the LRU
miss-ratio curve: hit ratio, and the share of the best-classic→Belady gap ``learned`` closes.
Workloads: the Mooncake conversation trace (its own 512-token blocks, halves), the ShareGPT trace
(real token ids, exact 16-token chained blocks, halves), and the synthetic multi-turn workload
(16-token blocks; trained on seed 1, judged on seed 2; 10,000 requests each). Also prints the training time, the time
to predict the judged stream, and replay speed (accesses/s) of every policy; ("safety") the
safety net against wrong models on Mooncake; and ("cross") every workload's model judged on every other.

Run from the repository root::

    python benchmarks/bench_learned.py [--workloads mooncake,sharegpt,multi-turn,safety,cross]
                                       [--peers LRB,GLCache,ThreeLCache] [--markdown]
                                       [--trace OTHER.jsonl [--block-size 512]]

Mooncake and ShareGPT take about half a minute; multi-turn about a minute without the peers
(``--peers ""``) and far longer with them (libCacheSim's LRB needed ~75 s per capacity on 871,162
accesses; the multi-turn stream has 1,434,959; ``--peers GLCache,ThreeLCache`` skips LRB).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
if "trace" in sys.modules and not hasattr(sys.modules["trace"], "__path__"):
    del sys.modules["trace"]

import sim.script_start  # noqa: E402, F401 (first: a Ctrl-C while the libraries below load ends in one line)

# isort: split

import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from learned.train import train_command  # noqa: E402
from sim.cache.access import NEVER, learned_predictions, next_use_index  # noqa: E402
from sim.cache.mrc import lru_mrc  # noqa: E402
from sim.cache.replay import cache_stream, replay  # noqa: E402
from sim.command import command_status, end_process  # noqa: E402
from sim.config import load_config  # noqa: E402
from trace.workload import load_workload  # noqa: E402

TRACES = REPO.parent / "shared" / "data" / "traces"
CLASSIC = ("lru", "arc", "s3fifo", "sieve")
OURS = (*CLASSIC, "learned", "belady", "belady-bypass")
PEERS = ("LRB", "GLCache", "ThreeLCache")  # libCacheSim 0.3.5
# The synthetic multi-turn workload as learned/README.md's tables were measured: from an empty start (its default
# since 2026-12-04 opens on the conversations under way; the README gives that run's figures beside the table).
EMPTY_START = "workload.synthetic.start=empty"
WORKLOADS = {
    # name: (training run's --set/--range arguments, judged run's config overrides, capacities)
    "mooncake": (["--workload-trace", str(TRACES / "mooncake_conversation.jsonl"), "--set", "serving.block_size=512"],
                 [f"workload.trace={TRACES / 'mooncake_conversation.jsonl'}", "serving.block_size=512",
                  "workload.range_start=0.5"], [1000, 2000, 5000, 10000, 20000]),
    "sharegpt": (["--workload-trace", str(TRACES / "llmservingsim_sharegpt_llama31_8b_300.jsonl")],
                 [f"workload.trace={TRACES / 'llmservingsim_sharegpt_llama31_8b_300.jsonl'}",
                  "workload.range_start=0.5"], [100, 300, 1000, 3000]),
    # 10,000 requests: about 2,000 s, so most of it is past the first think times' warm-up
    "multi-turn": (["--range", "0:1", "--seed", "1", "--set", "workload.synthetic.num_requests=10000",
                    "--set", EMPTY_START], ["seed=2", "workload.synthetic.num_requests=10000", EMPTY_START],
                   [1000, 2000, 5000, 10000, 20000]),
}


def knee(stream: np.ndarray) -> int:
    """The knee of the LRU hit-ratio curve over log capacity: the point farthest above the chord
    between its ends (Kneedle: Satopää et al., "Finding a 'Kneedle' in a Haystack", ICDCS-W 2011)."""
    curve = lru_mrc(stream)
    x, y = np.log(curve.capacities.astype(float)), curve.hit_ratios
    if len(x) < 3 or y[-1] <= y[0]:
        return int(curve.capacities[-1])
    chord = y[0] + (y[-1] - y[0]) * (x - x[0]) / (x[-1] - x[0])
    return int(curve.capacities[int(np.argmax(y - chord))])


def oracle_file(stream: np.ndarray, path: Path) -> None:
    nxt = next_use_index(stream)
    records = np.zeros(len(stream), dtype=np.dtype([("t", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")]))
    records["t"], records["id"], records["size"] = np.arange(len(stream)), stream, 1
    records["next"] = np.where(nxt == NEVER, np.iinfo(np.int64).max, nxt)
    records.tofile(path)


def peer_hit_ratio(name: str, capacity: int, path: Path) -> float | None:
    import libcachesim as lcs

    try:
        cache = getattr(lcs, name)(cache_size=capacity, hashpower=max(10, capacity.bit_length() + 1))
        miss_ratio, _ = cache.process_trace(lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE))
    except Exception:  # a peer that does not run at this size
        return None
    return 1.0 - miss_ratio


def trace_workload(path: Path, block_size: int) -> tuple[list[str], list[str], list[int]]:
    """A user's trace as a workload: trained on its first half, judged on the second, at ``block_size``."""
    return (["--workload-trace", str(path), "--set", f"serving.block_size={block_size}"],
            [f"workload.trace={path}", f"serving.block_size={block_size}", "workload.range_start=0.5"],
            [1000, 2000, 5000, 10000, 20000])


def bench(name: str, peers: list[str], markdown: bool, workload: tuple | None = None,
          insert_outputs: bool = False) -> None:
    train_args, sets, capacities = workload or WORKLOADS[name]
    if insert_outputs:  # (the judged replay inserts each request's answer; the model is trained as ever)
        sets = [*sets, "cache.insert_outputs=true"]
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.txt"
        start = time.perf_counter()
        train_command([*train_args, "--out", str(model)])
        train_s = time.perf_counter() - start
        config = load_config(None, sets=[*sets, f"cache.learned_model={model}"])
        trace = load_workload(config)
        judged = cache_stream(trace, config)
        stream = trace.access_stream()  # (the prompts': what hit ratios count)
        start = time.perf_counter()
        predicted = judged.classes(learned_predictions(trace, config)[1])
        predict_s = time.perf_counter() - start
        next_use = next_use_index(judged.blocks)
        columns = [*capacities, knee(stream)]
        oracle = Path(tmp) / "judged.oracleGeneral"
        oracle_file(stream, oracle)
        table: dict[str, list[float | None]] = {p: [] for p in (*OURS, *peers)}
        seconds: dict[str, float] = {p: 0.0 for p in OURS}
        for capacity in columns:
            for policy in OURS:
                t0 = time.perf_counter()
                _, hit_tier = replay(trace, config, policy, "plain", capacity, next_use, False, predicted, judged)
                seconds[policy] += time.perf_counter() - t0
                table[policy].append(float((hit_tier >= 0).mean()))
            for policy in peers:
                table[policy].append(peer_hit_ratio(policy, capacity, oracle))
    best = np.max([table[p] for p in CLASSIC], axis=0)
    room = np.array(table["belady"]) - best
    gap = np.where(room > 1e-9, (np.array(table["learned"]) - best) / np.maximum(room, 1e-9), np.nan)
    print(f"\n## {name}: {len(stream):,} judged accesses, {trace.provenance.block_tokens}-token blocks, "
          f"{len(trace):,} requests; knee of the LRU curve at {columns[-1]:,} blocks"
          + (f"; answers inserted ({len(judged.blocks) - len(stream):,} generated blocks)" if insert_outputs else ""))
    header = ["policy", *[f"{c:,}" for c in capacities], f"knee {columns[-1]:,}"]
    rows = [[p, *["—" if v is None else f"{v:.4f}" for v in table[p]]] for p in table]
    rows.append(["learned: gap closed", *["— (no gap)" if np.isnan(g) else f"{g:+.3f}" for g in gap]])
    if markdown:
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        print(f"{header[0]:<22}" + "".join(f"{h:>14}" for h in header[1:]))
        for row in rows:
            print(f"{row[0]:<22}" + "".join(f"{c:>14}" for c in row[1:]))
    print(f"mean gap closed over {', '.join(f'{c:,}' for c in capacities)}: {np.nanmean(gap[:-1]):+.3f}; "
          f"learned >= best classic at each of them: {bool(np.all(np.array(table['learned'])[:-1] >= best[:-1]))}")
    speed = {p: len(stream) * len(columns) / seconds[p] for p in OURS}
    print(f"training {train_s:.1f} s (whole `learned.train` call); predicting the judged stream {predict_s:.2f} s; "
          "replay accesses/s (mean over the columns, per-call setup included): "
          + ", ".join(f"{p} {speed[p] / 1e6:.2f} M" for p in OURS)
          + f"; learned / lru = {speed['learned'] / speed['lru']:.2f}x")


def bench_safety(markdown: bool) -> None:
    """The safety net: Mooncake's judged half with a model of another workload (the synthetic multi-turn
    one at 512-token blocks), with a perfect predictor turned upside down, and with the perfect one."""
    from learned.predictions import Predictions

    capacities = WORKLOADS["mooncake"][2]
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "other.txt"
        train_command(["--range", "0:1", "--seed", "1", "--set", "serving.block_size=512", "--set", EMPTY_START,
                       "--out", str(model)])
        config = load_config(None, sets=[*WORKLOADS["mooncake"][1], f"cache.learned_model={model}"])
        trace = load_workload(config)
        _, other = learned_predictions(trace, config)
    stream = trace.access_stream()
    next_use = next_use_index(stream)
    perfect = Predictions.perfect(np.minimum(next_use, 10 * len(stream)).astype(float), int(stream.max()) + 1)
    inverted = Predictions(perfect.klass, perfect.dist[::-1].copy(), perfect.edges, perfect.num_ids)
    runs = {"arc": ("arc", None), "lru": ("lru", None), "learned, other workload's model": ("learned", other),
            "learned, inverted perfect predictor": ("learned", inverted), "learned, perfect predictor": ("learned", perfect)}
    table = {name: [float((replay(trace, config, policy, "plain", c, None, False, pred)[1] >= 0).mean())
                    for c in capacities] for name, (policy, pred) in runs.items()}
    worst = min(min(table[n][i] for n in list(runs)[2:4]) - table["arc"][i] for i in range(len(capacities)))
    print(f"\n## safety net: Mooncake's judged half ({len(stream):,} accesses), wrong models")
    header = ["policy", *[f"{c:,}" for c in capacities]]
    if markdown:
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for name, values in table.items():
        cells = [f"{v:.4f}" for v in values]
        print("| " + " | ".join([name, *cells]) + " |" if markdown else f"{name:<38}" + "".join(f"{c:>10}" for c in cells))
    print(f"worst wrong model vs ARC: {worst:+.4f} of accesses")


def bench_cross(traces: list[Path], markdown: bool) -> None:
    """Every model judged on every workload's later part (512-token blocks): the Mooncake conversation trace's
    halves, the synthetic multi-turn workload (4,000 requests; trained on seed 1, judged on seed 2: a short
    stream, where a wrong model must be left quickly) and each ``--trace``'s halves. Prints the worst
    ``learned - arc`` over the capacities (the safety net's bound: -0.01)."""
    conversation = TRACES / "mooncake_conversation.jsonl"
    requests = "workload.synthetic.num_requests=4000"
    workloads = {"conversation": (["--workload-trace", str(conversation)],
                                  [f"workload.trace={conversation}", "workload.range_start=0.5"]),
                 "multi-turn": (["--range", "0:1", "--seed", "1", "--set", requests, "--set", EMPTY_START],
                                ["seed=2", requests, EMPTY_START])}
    for path in traces:
        workloads[path.name] = (["--workload-trace", str(path)], [f"workload.trace={path}", "workload.range_start=0.5"])
    capacities = WORKLOADS["mooncake"][2]
    with tempfile.TemporaryDirectory() as tmp:
        for name, (train_args, _) in workloads.items():
            train_command([*train_args, "--set", "serving.block_size=512", "--out", str(Path(tmp) / f"{name}.txt")])
        worst = {}
        for judged, (_, sets) in workloads.items():
            config = load_config(None, sets=[*sets, "serving.block_size=512"])
            trace = load_workload(config)
            arc = np.array([(replay(trace, config, "arc", "plain", c)[1] >= 0).mean() for c in capacities])
            for model in workloads:
                with_model = load_config(None, sets=[*sets, "serving.block_size=512", "cache.allow_train_test_overlap=true",
                                                     f"cache.learned_model={Path(tmp) / model}.txt"])
                _, predicted = learned_predictions(trace, with_model)
                ours = np.array([(replay(trace, with_model, "learned", "plain", c, None, False, predicted)[1] >= 0).mean()
                                 for c in capacities])
                worst[judged, model] = float(np.min(ours - arc))
    names = list(workloads)
    print(f"\n## models judged on other workloads: worst learned - arc over {', '.join(f'{c:,}' for c in capacities)} "
          "blocks (512-token blocks; the diagonal is the model's own workload)")
    header = ["judged on \\ model of", *names]
    rows = [[judged, *[f"{worst[judged, model]:+.4f}" for model in names]] for judged in names]
    if markdown:
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        for row in [header, *rows]:
            print(f"{row[0]:<28}" + "".join(f"{c:>20}" for c in row[1:]))
    print(f"worst model of another workload vs ARC: {min(v for (j, m), v in worst.items() if j != m):+.4f} of accesses")


def main() -> None:
    # a flag of one value given twice is refused (argparse kept the last)
    from sim.cli import OneLineParser, path_argument

    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join([*WORKLOADS, "safety", "cross"]),
                        help=f"comma list of {', '.join(WORKLOADS)}, safety (wrong models on Mooncake), "
                             "cross (every model judged on every workload, --trace ones included); "
                             "default: all of them")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help="libCacheSim policies to run beside ours (default: %(default)s; \"\": none)")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--trace", type=path_argument, action="append", default=[],
                        help="also bench this trace (halves, capacities 1k-20k; repeatable), e.g. another Mooncake trace")
    parser.add_argument("--block-size", type=int, default=None, help="block size for --trace (default 512: Mooncake's)")
    parser.add_argument("--insert-outputs", action="store_true",
                        help="judge with each request's generated blocks inserted after its prompt, as a vLLM server "
                             "caches answers (cache.insert_outputs; not with --peers, safety or cross)")
    args = parser.parse_args()
    peers = parser.distinct("--peers", [p for p in args.peers.split(",") if p])
    if not set(peers) <= set(PEERS):
        parser.error(f"unknown peers {sorted(set(peers) - set(PEERS))}; choose from {', '.join(PEERS)}")
    names = parser.distinct("--workloads", list(filter(None, args.workloads.split(","))))
    unknown = [n for n in names if n not in (*WORKLOADS, "safety", "cross")]
    if unknown:  # before any workload runs, not after the ones before it
        parser.error(f"unknown workloads {unknown}; choose from {', '.join((*WORKLOADS, 'safety', 'cross'))}")
    if args.block_size is not None and not args.trace:  # it was ignored without a word
        parser.error("--block-size applies to --trace only (the bundled workloads keep their own)")
    if args.block_size is not None and args.block_size < 1:
        parser.error(f"--block-size must be at least 1, got {args.block_size}")
    if not names and not args.trace:  # (it ran nothing, exit 0)
        parser.error(f"--workloads: none given, and no --trace; choose from {', '.join((*WORKLOADS, 'safety', 'cross'))}")
    missing = [str(path) for path in args.trace if not path.is_file()]
    if missing:  # found before the workloads named before it run, not after them as a traceback
        parser.error(f"--trace: not a file: {missing[0]}")
    if args.insert_outputs and (peers or {"safety", "cross"} & set(names)):
        parser.error("--insert-outputs: libCacheSim's peers would count the generated blocks as lookups; "
                     "use --peers \"\" and leave out safety and cross")
    for name in names:
        if name == "safety":
            bench_safety(args.markdown)
            continue
        if name == "cross":
            bench_cross(args.trace, args.markdown)
            continue
        bench(name, peers, args.markdown, insert_outputs=args.insert_outputs)
    for path in args.trace:
        bench(path.name, peers, args.markdown, trace_workload(path, args.block_size or 512), args.insert_outputs)


if __name__ == "__main__":
    end_process(command_status("bench_learned.py", main))  # without the interpreter's teardown: see sim.command
