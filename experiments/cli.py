"""Command-line glue for the experiment flags (--sweep, --plan, --max-rate, --seeds, the runner flags).

``main.py`` calls three things: ``check_flags`` before any work (a flag the invocation
ignores is an error, exit 2), ``wrap_runner`` around a mode's run function when
``--max-rate`` or ``--seeds`` is given, and ``run_experiment`` for ``--sweep``/``--plan``.
"""

from __future__ import annotations

import argparse
from typing import Callable

from sim.config import Config
from sim.errors import InputError

# the runner flags (flag -> argparse attribute): --sweep and --plan only
RUNNER_FLAGS = {"--jobs": "jobs", "--backend": "backend", "--ray-address": "ray_address", "--resume": "resume"}


def _given(args: argparse.Namespace, attr: str) -> bool:
    value = getattr(args, attr, None)
    return value not in (None, False)


def invocation_mode(args: argparse.Namespace) -> str:
    if args.sweep:
        return "sweep"
    if args.plan:
        return "plan"
    if args.trace_stats:
        return "trace-stats"
    if args.cache_only or args.mrc:
        return "cache-only"
    if args.cluster:
        return "cluster"
    return "pd" if args.pd else "single"


def check_flags(args: argparse.Namespace) -> None:
    """Refuse experiment flags that this invocation would ignore or cannot honour (exit 2)."""
    mode = invocation_mode(args)
    for flag, attr in RUNNER_FLAGS.items():
        if _given(args, attr) and mode not in ("sweep", "plan"):
            raise InputError(f"{flag} applies to --sweep and --plan only")
    if args.resume and mode == "plan":
        raise InputError("--resume applies to --sweep only")
    if args.ray_address and args.backend != "ray":
        raise InputError("--ray-address needs --backend ray")
    if args.jobs is not None and args.jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {args.jobs}")
    if args.seeds is not None and args.seeds < 2:
        raise InputError(f"--seeds needs at least 2 seeds for an interval, got {args.seeds}")
    if args.max_rate and mode in ("trace-stats", "cache-only"):
        raise InputError(f"--max-rate needs a serving mode (single or --pd), not {mode}")
    if args.seeds and (mode == "trace-stats" or args.mrc):
        raise InputError("--seeds applies to simulation runs, not to --trace-stats or --mrc")
    if (args.max_rate or args.seeds) and args.requests_csv:
        raise InputError("--requests-csv does not combine with --max-rate or --seeds (they run many times)")
    if mode in ("sweep", "plan") and args.policy:
        raise InputError(f"--policy does not apply to --{mode}: " + ("make cache.policy an axis" if mode == "sweep"
                                                                      else "set cache.policy in the plan"))
    if mode == "plan" and (args.max_rate or args.seeds):
        raise InputError("--plan searches the max rate itself; --max-rate and --seeds do not apply")
    if mode in ("sweep", "plan") and args.requests_csv:
        raise InputError(f"--requests-csv does not apply to --{mode}")


def wrap_runner(runner: Callable, args: argparse.Namespace, mode: str) -> Callable:
    """``runner`` itself, or (``--max-rate``/``--seeds``) a runner that searches and repeats it."""
    if not (args.max_rate or args.seeds):
        return runner
    from experiments.execute import check_point, execute
    from experiments.sweep import run_options

    def run(args: argparse.Namespace, config: Config):
        options = run_options(args)
        check_point(mode, config, options)
        out = execute(mode, config, options)
        return out.trace, out.runs, [note for r in out.runs for note in _interval_notes(r)]

    return run


SUMMARY_INTERVALS = ("hit_ratio", "ttft_s.mean", "ttft_s.p99", "tpot_s.mean", "e2e_s.p99", "slo_attainment", "max_rate_rps")


def _interval_notes(run) -> list[str]:
    """Printed after the summary: the 95% intervals of the headline metrics (all of them are in the JSON)."""
    ci = run.metrics_ci95 or {}
    return [f"[{run.name}] 95% interval of {k}: [{ci[k][0]:.6g}, {ci[k][1]:.6g}]" for k in SUMMARY_INTERVALS if k in ci]


def run_experiment(args: argparse.Namespace) -> int:
    """``--sweep SPEC`` or ``--plan PLAN``: exit status."""
    if args.sweep:
        from experiments.sweep import run_sweep

        return run_sweep(args)
    from experiments.planner import run_plan

    return run_plan(args)
