"""Cluster mode at fleet scale: wall time, requests/s, block accesses/s and peak RSS.

It also prints the largest arrays the run holds at its end (the arena's slots and directory, the trace's block ids
as held: runs of consecutive ids or flat, the router's tables): the workload's blocks are nearly all distinct and the fleet's HBM never fills, so the peak
grows with them.

The ``--cluster --preset prod-eval`` fleet (160 racks x 8 nodes x 8 GPUs = 10,240 GPUs) serving
the preset's synthetic multi-turn workload, cut to ``--requests`` requests (default 1 M, the
preset's own size). The arrival rate stays the preset's (conversations start as a Poisson process), so
fewer requests span less simulated time and the fleet is as busy as at full size.

    python benchmarks/bench_cluster.py --requests 50000
    python -m cProfile -s cumtime benchmarks/bench_cluster.py --requests 20000 | head -40
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sim.script_start  # noqa: E402, F401 (first: a Ctrl-C while the libraries below load ends in one line)

# isort: split

import resource  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def main() -> None:
    from sim.cli import OneLineParser  # a flag of one value given twice is refused (argparse kept the last)

    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000,
                        help="requests of the prod-eval multi-turn workload to run (default: 1,000,000)")
    parser.add_argument("--router", default=None, help="cluster.router (default: the config's)")
    args = parser.parse_args()
    if args.requests < 1:  # was a ConfigError traceback (exit 1) naming a --set never given
        parser.error(f"--requests must be at least 1, got {args.requests}")

    from sim.cluster.run import ClusterRun
    from sim.config import load_config
    from sim.serving.admission import admit
    from trace.workload import load_workload, with_trace_block_size

    # typed flags, as main.py's: an error names the flag (same rate: fewer requests span less time)
    flags = [("--requests", "workload.synthetic.num_requests", args.requests)]
    if args.router:
        flags.append(("--router", "cluster.router", args.router))
    from sim.errors import ConfigError

    try:
        config = load_config(ROOT / "config.yaml", preset="prod-eval", mode="cluster", flags=flags)
    except ConfigError as exc:  # an unknown --router, a --requests past the bound: one line, exit 2
        parser.error(str(exc))
    start = time.perf_counter()
    trace = load_workload(config)
    config = with_trace_block_size(config, trace)
    admit(trace, config)
    loaded = time.perf_counter()
    run = ClusterRun(trace, config)  # (what run_cluster runs, kept to read what it holds)
    result = run.run()
    wall = time.perf_counter() - start
    simulate = time.perf_counter() - loaded
    m = result.metrics
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(f"fleet: {m['cluster']['gpus']:,} GPUs ({m['cluster']['racks']} racks x {m['cluster']['nodes_per_rack']} nodes), "
          f"router {config.cluster.router}; instances built {m['cluster']['instances_used']:,}")
    print(f"requests: {len(trace):,}  block accesses: {m['accesses']:,}  hit ratio: {m['hit_ratio']:.4f}")
    print(f"wall: {wall:.1f} s (load {loaded - start:.1f} s, simulate {simulate:.1f} s)")
    print(f"requests/s: {len(trace) / simulate:,.0f}  block accesses/s: {m['accesses'] / simulate:,.0f}  "
          f"events: {run.engine.events_run:,} ({run.engine.events_run / len(trace):.1f} a request)")
    print(f"peak RSS: {rss / 2**30:.2f} GiB")
    print("held at the end: " + held_at_end(run, trace))


def held_at_end(run, trace) -> str:
    """The largest things the run holds when it ends, each in GiB: nearly every block of the fleet's workload is
    distinct and its HBM never fills, so these grow with the blocks seen (where the peak RSS goes)."""
    from sim.cache.arena_layout import IN_USE, LINK_ROWS

    arrays = run.arena._arrays
    slots, table = arrays["slots"], arrays["table"]
    router = sum(value.nbytes for value in vars(run.router).values() if isinstance(value, np.ndarray))
    ids = trace.id_bytes
    aux = arrays["aux"]
    return (f"arena slots {slots.nbytes / 2**30:.2f} GiB ({int(aux[IN_USE]):,} in use of {len(slots):,}, "
            f"{int(aux[LINK_ROWS]):,} of them holder-chain link rows; {slots.itemsize * slots.shape[1]} bytes each), "
            f"directory {table.nbytes / 2**30:.2f} GiB ({directory_cells(run.arena)}), trace block ids "
            f"{ids / 2**30:.2f} GiB ({id_form(trace)}), router tables {router / 2**30:.2f} GiB")


def id_form(trace) -> str:
    """How the trace holds its block ids: as runs of consecutive ids, flat, or not at all (the unique kind)."""
    if trace.id_runs is not None:
        return f"{len(trace.id_runs.first):,} runs of {trace.num_accesses:,} ids"
    return f"{trace.num_accesses:,} ids, flat" if trace.flat_ids is not None else "unique kind: none held"


def directory_cells(arena) -> str:
    """The directory's cells: hashed, or a chain head per block id and the members past the heads hashed."""
    if not arena.direct_cells:
        return f"{arena.hashed_cells:,} cells hashed"
    return f"{arena.direct_cells:,} head cells, one per block id, + {arena.hashed_cells:,} hashed for other holders"


if __name__ == "__main__":
    from sim.command import command_status, end_process

    end_process(command_status("bench_cluster.py", main))  # without the interpreter's teardown: see sim.command
