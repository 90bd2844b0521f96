"""Command-line glue for the experiment flags (--sweep, --plan, --max-rate, --seeds, the runner flags).

``main.py`` calls three things: ``check_experiment_flags`` before any work (the experiment
flags' rules between each other), ``searched_runner`` in place of a mode's run function when
``--max-rate`` or ``--seeds`` is given, and ``run_experiment`` for ``--sweep``/``--plan``.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Callable

from experiments.confidence import MAX_SEEDS
from sim.cli_config import given_on_command_line
from sim.cli_outputs import plan_outputs
from sim.errors import InputError

# --jobs at most this many per CPU: a point is one CPU-bound process (the local pool's worker, or a local Ray's task
# of one CPU), so beyond one per CPU jobs only share the CPUs; a few per CPU are allowed for a machine whose points
# wait on files. The pool took min(--jobs, points) workers and a local Ray was told of --jobs CPUs: --jobs 99999999999
# over a 10,000-point sweep forked 10,000 workers.
JOBS_PER_CPU = 4


def check_experiment_flags(args: argparse.Namespace, mode: str) -> None:
    """The experiment flags' rules between each other (which modes use each flag is sim/cli.py's
    ``FLAG_MODES`` table, checked before this)."""
    if args.ray_address and args.backend != "ray":
        raise InputError("--ray-address needs --backend ray")
    cluster = ray_cluster(args)
    if args.jobs is not None and cluster:  # (the Contract: a flag the mode ignores is refused, not run without)
        raise InputError(f"--jobs does nothing with {cluster}: the Ray cluster's CPUs decide how many points run at "
                         "once; drop --jobs")
    if args.backend == "ray":  # before the points are checked and a plan's candidates pruned (seconds to minutes)
        from experiments.runner import check_ray_installed

        check_ray_installed()
        if cluster:  # (a missing cluster is found now, in seconds, not once Ray has tried it for minutes)
            from experiments.runner import check_ray_address, ray_address

            check_ray_address(ray_address(args.ray_address), cluster)
    if args.jobs is not None and args.jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {args.jobs}")
    if args.jobs is not None:
        from experiments.runner import default_jobs

        most = JOBS_PER_CPU * default_jobs()
        if args.jobs > most:
            raise InputError(f"--jobs {args.jobs:,} is more than {most:,} ({JOBS_PER_CPU} per CPU this process may use): "
                             "each job is a process running a point, so more would add memory, not speed")
    if args.seeds is not None and args.seeds < 2:
        raise InputError(f"--seeds needs at least 2 seeds for an interval, got {args.seeds}")
    if args.seeds is not None and args.seeds > MAX_SEEDS:
        raise InputError(f"--seeds {args.seeds:,} is more than {MAX_SEEDS:,}: each seed is a whole simulation, and "
                         f"{MAX_SEEDS:,} already narrow the 95% interval to 6% of one run's spread")
    if args.seeds and args.mrc:
        raise InputError("--seeds applies to simulation runs, not to --mrc")
    rate_given = given_on_command_line(args).get("workload.rate_scale")  # (--rate-scale, or a --set of it)
    if args.max_rate and rate_given:  # (the search's first probe only: it moved the result within its tolerance)
        raise InputError(f"{rate_given} does nothing with --max-rate, whose search sets the rate; drop one of them")
    if (args.max_rate or args.seeds) and args.requests_csv:
        raise InputError("--requests-csv does not combine with --max-rate or --seeds (they run many times): run the rate "
                         "or seed you want alone (--rate-scale X, --seed N) to write its requests")


def ray_cluster(args: argparse.Namespace) -> str | None:
    """How a running Ray cluster was named for ``--backend ray`` (``--ray-address``, or ``RAY_ADDRESS`` in the
    environment, which ray.init connects to when given no address: ``experiments.runner.ray_address``), else None."""
    from experiments.runner import ray_address
    from sim.errors import quote

    if args.backend != "ray":
        return None
    if args.ray_address:
        return f"--ray-address {quote(args.ray_address)}"
    address = ray_address(None)
    return f"RAY_ADDRESS={quote(address)} in the environment" if address else None


def searched_runner(args: argparse.Namespace, mode: str) -> Callable:
    """A runner (``sim.mode_runs.Run`` → trace, runs) that searches the max rate (``--max-rate``) and/or
    repeats over seeds (``--seeds``) around the mode's own runs."""
    from experiments.execute import check_point, execute
    from experiments.sweep import run_options

    def run(invocation):
        # (--cluster --pd: the pools too; a seed's run or a max-rate probe without them was a cluster run without PD;
        # --router a,b: every router, each a run; without them only the first ran)
        options = dataclasses.replace(run_options(args), cluster_pd=invocation.cluster_pd,
                                      routers=tuple(invocation.routers))
        check_point(mode, invocation.config, options)
        out = execute(mode, invocation.config, options)
        invocation.notes += [note for r in out.runs for note in _interval_notes(r)]
        return out.trace, out.runs

    return run


SUMMARY_INTERVALS = ("hit_ratio", "ttft_s.mean", "ttft_s.p99", "tpot_s.mean", "e2e_s.p99", "slo_attainment", "max_rate_rps")


def _interval_notes(run) -> list[str]:
    """Printed after the summary: the 95% intervals of the headline metrics (all of them are in the JSON)."""
    ci = run.metrics_ci95 or {}
    return [f"[{run.name}] 95% interval of {k}: [{ci[k][0]:.6g}, {ci[k][1]:.6g}]" for k in SUMMARY_INTERVALS if k in ci]


def run_experiment(args: argparse.Namespace, mode: str) -> int:
    """``--sweep SPEC`` or ``--plan PLAN``: exit status. Outputs are checked writable before any point runs."""
    outputs = plan_outputs(args, mode, [], None)
    if mode == "sweep":
        from experiments.sweep import run_sweep

        return run_sweep(args, outputs)
    from experiments.planner import run_plan

    return run_plan(args, outputs)
