"""Fit the roofline's efficiencies and the host's costs to a table of measured step latencies.

Finds the values of the roofline's five free constants that fit a table of measured steps, shows the error per
group of points before and after and each group (a TP degree, a model, a GPU) predicted from a fit to the others, and
writes a calibration overlay (``sim.serving.roofline_fit``; the tables: ``sim.serving.measured_latency``). ``--help``
says what each constant is and gives examples.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: the repository's packages

import sim.script_start  # noqa: E402, F401 (first: a stop while the parser's libraries load waits for its command)

# isort: split

import argparse  # noqa: E402

TABLE_KEYS = ("model", "hardware.gpu", "serving.tensor_parallel_size")  # what each point of a table sets
READ_SECTIONS = ("serving.", "hardware.", "compute.")  # the --set keys a step's time depends on
# keys of those sections no point's time or room reads (each was fitted as without it, then written into the overlay)
UNREAD_KEYS = {
    "serving.num_instances": "each point is one instance's step",  # (sim.serving.run and sim.cluster build them)
    "serving.scheduler_reserve_full_isl": "the table gives each step's batch: no scheduler admits it",
    "hardware.pcie_gbps": "a cluster's host link, for its lower tiers' traffic (sim.cluster.run)",
}
# the roofline's constants, not fitted here
HELD_KEYS = ("attention_efficiency", "gemm_floor_us", "attention_floor_us", "attention_tile_us")

EPILOG = """\
The roofline has five free constants: compute.flops_efficiency and bandwidth_efficiency, and the host's part of a
step, compute.host_step_us and host_sequence_us (in series with the GPU) and launch_layer_us (launching a layer's
kernels, overlapped with the GPU; only on steps without a CUDA graph). Tables: Splitwise's perf_model.csv and
DistServe's profiler-*.json. --set gives the engine settings the table was measured under
(serving.enforce_eager=true for an engine without CUDA graphs, serving.async_scheduling=false for one that waits for a
step's tokens before scheduling the next: then the host's work is in series with the GPU, not hidden under it;
serving.all_reduce=nccl for an engine without vLLM's NVLink all-reduce kernels, as every engine of 2023); the
overlay written by --out carries them.

examples:
  python tools/fit_roofline.py ../shared/data/profiles/splitwise_perf_model_a100.csv \\
      --set serving.enforce_eager=true --set serving.async_scheduling=false --set serving.all_reduce=nccl \\
      --out splitwise_a100.yaml
  python main.py --calibration-profile splitwise_a100.yaml --set hardware.gpu=h100-sxm
  python tools/fit_roofline.py ../shared/data/profiles/distserve/profiler-a100-80g.distserve.json \\
      --set serving.async_scheduling=false --set serving.all_reduce=nccl --holdout model
"""


def build_parser() -> argparse.ArgumentParser:
    # one-line errors; a flag of one value given twice is refused (argparse kept the last: --fit a --fit b fitted b
    # alone); an empty path named as such
    from sim.cli import OneLineParser, path_argument
    from sim.serving.roofline_fit import FIT_KEYS, HOLDOUT_AXES

    p = OneLineParser(prog="fit_roofline.py", name="fit_roofline", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("table", type=path_argument, help="a Splitwise perf_model CSV or a DistServe profiler JSON")
    p.add_argument("--config", type=path_argument,
                   help="base YAML config (default: the built-in defaults); the overlay holds only the --set keys and "
                        "the fitted values, so run it over the same config")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="a config key the table was measured under, e.g. serving.enforce_eager=true; repeatable")
    p.add_argument("--fit", default=",".join(FIT_KEYS), metavar="KEYS",
                   help=f"comma-separated compute keys to fit (default: all of {', '.join(FIT_KEYS)})")
    p.add_argument("--alias", action="append", default=[], metavar="NAME=KVSIM",
                   help="map a model or GPU the table names to a kvsim one (a profiles/ name, or a config.json or GPU "
                        "spec YAML path), e.g. h100-80gb-pcap=my_h100_capped.yaml; repeatable")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="use only the points of this model or GPU (as the table names it); repeatable")
    p.add_argument("--holdout", choices=[*HOLDOUT_AXES, "none"], default="tp",
                   help="predict each group of this axis from a fit to the others (default: tp)")
    p.add_argument("--out", type=path_argument, help="write the fitted values as a calibration overlay (YAML)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:  # the parser loads scipy (a second or so): Ctrl-C there is an interruption too
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        print("fit_roofline: interrupted", file=sys.stderr)
        return 130
    from sim.command import command_status

    return command_status("fit_roofline", lambda: run(args, argv))


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Check the inputs (exit 2 before any fitting), fit, print the errors, write the overlay."""
    import numpy as np

    from sim.config import load_config
    from sim.config_yaml import parse_set
    from sim.errors import InputError
    from sim.report.output import atomic_write_text, check_distinct, check_writable
    from sim.serving.measured_latency import read_table
    from sim.serving.roofline_fit import (
        EFFICIENCY_KEYS,
        HOLDOUT_AXES,
        check_keys,
        fit,
        fittable,
        holdout,
        mape,
        point_configs,
        relative_errors,
    )
    from sim.specs import canonical_gpu, canonical_model

    aliases = {}
    for alias in args.alias:
        name, sep, target = alias.partition("=")
        if not sep or not name or not target:
            raise InputError(f"--alias {alias!r}: write NAME=KVSIM (a table's name, a kvsim model or GPU)")
        if canonical_model(target) is None and canonical_gpu(target) is None and not Path(target).exists():
            raise InputError(f"--alias {name}={target}: {target!r} is no model of profiles/models.yaml, GPU of "
                             f"profiles/gpus.yaml or file (give --alias {name}=NAME_OR_PATH)")
        aliases[name] = target
    if args.out is not None:
        check_writable(args.out, "--out")
        aliased = [(f"--alias {name}={target}", target) for name, target in aliases.items() if Path(target).exists()]
        check_distinct([("the table", args.table), ("--config", args.config), *aliased], [("--out", args.out)])
    keys = [k.strip() for k in args.fit.split(",") if k.strip()]
    check_keys(keys)
    for assignment in args.sets:
        key = parse_set(assignment)[0]
        if key in TABLE_KEYS:  # unread, and the overlay would carry it to every run that loads it
            raise InputError(f"--set {key}: the table gives each point's model, GPU and TP (map a name it uses to "
                             "kvsim's with --alias NAME=KVSIM)")
        if not key.startswith(READ_SECTIONS):  # the overlay would carry it to every run that loads it
            raise InputError(f"--set {key}: the fit does not read it (it reads {', '.join(READ_SECTIONS)} keys: "
                             "the engine and GPU the table was measured on)")
        if key in UNREAD_KEYS:
            raise InputError(f"--set {key}: the fit does not read it ({UNREAD_KEYS[key]})")
        if key in {f"compute.{k}" for k in keys}:  # the fit replaced the value given, in the overlay too
            raise InputError(f"--set {key}: --fit fits it (to hold it at the value given, leave it out of --fit)")
    base = load_config(args.config, sets=args.sets, mode="single")
    unread = [k for k in keys if k in EFFICIENCY_KEYS] if base.compute.backend == "profiled" else []
    if unread:  # a profile's tables time the GPU's part: only the host's costs change its steps
        raise InputError(f"--fit {unread[0]}: compute.backend 'profiled' times steps from its profile, not the "
                         "roofline's efficiencies; fit the host's costs alone (--fit host_step_us,host_sequence_us,"
                         "launch_layer_us)")
    steps = read_table(args.table)
    if args.only:
        named = {s.model for s in steps} | {s.gpu for s in steps}
        absent = [name for name in args.only if name not in named]
        if absent and len(absent) < len(args.only):  # (none matching at all: 'no points of ...' below)
            raise InputError(f"--only {absent[0]}: the table names no model or GPU so (it names "
                             f"{', '.join(sorted(named))[:200]})")
        steps = [s for s in steps if s.model in args.only or s.gpu in args.only]
    if not steps:
        raise InputError(f"{args.table}: no points{' of ' + ', '.join(args.only) if args.only else ''}")
    named = {s.model for s in steps} | {s.gpu for s in steps}
    unused = [name for name in aliases if name not in named]
    if unused:
        raise InputError(f"--alias {unused[0]}={aliases[unused[0]]}: the table{' (--only)' if args.only else ''} "
                         f"names no model or GPU {unused[0]!r} (it names {', '.join(sorted(named))[:200]})")
    print(f"fit_roofline: {len(steps)} points from {args.table.name}", flush=True)
    steps, configs, left_out = fittable(steps, point_configs(steps, base, aliases))
    if left_out:
        left = [f"{s.phase} {s.source} ({r})" for s, r in left_out]
        print(f"left out {len(left)} point(s) no step of kvsim's can be: " + "; ".join(left[:5])
              + (f"; and {len(left) - 5} more" if len(left) > 5 else ""))
        if not steps:
            raise InputError(f"{args.table}: no point left to fit: every one is left out above")
    before = relative_errors(steps, configs, {})
    fitted = fit(steps, configs, keys)
    held = {} if args.holdout == "none" else holdout(steps, configs, args.holdout, keys)
    print("fitted: " + ", ".join(f"{k} {v:.4g}" for k, v in fitted.values.items()))
    print(f"{'points':<44} {'n':>4} {base.compute.backend + ' MAPE/median':>21} {'fitted MAPE/median':>19}")
    groups = sorted({s.group for s in steps}, key=str)
    for group in groups:
        index = [i for i, s in enumerate(steps) if s.group == group]
        print(f"{' '.join(map(str, group)):<44} {len(index):>4} {_pair(before[index]):>21} "
              f"{_pair(fitted.errors[index]):>19}")
    print(f"{'all':<44} {len(steps):>4} {_pair(before):>21} {_pair(fitted.errors):>19}")
    if args.holdout != "none" and not held:
        print(f"held out {args.holdout}: one group only ({HOLDOUT_AXES[args.holdout](steps[0])}), nothing to predict "
              "from the others")
    for group, errors in held.items():
        print(f"held out {args.holdout} {group}: MAPE {mape(errors):.1f}%, median {_median(errors):.1f}% "
              f"({len(errors)} points predicted from a fit to the others)")
    worst = np.argsort(-np.abs(fitted.errors))[:3]
    print("worst fitted points: " + "; ".join(f"{fitted.errors[i]:+.0%} {steps[i].phase} {steps[i].source}"
                                              for i in worst))
    if args.out is not None:
        atomic_write_text(args.out, _overlay(args, argv, steps, configs, fitted.values, base, mape(before),
                                             mape(fitted.errors)))
        print(f"wrote {args.out}")
    return 0


def _median(errors) -> float:
    import numpy as np

    return float(np.median(np.abs(errors)) * 100)


def _pair(errors) -> str:
    from sim.serving.roofline_fit import mape

    return f"{mape(errors):.1f}% / {_median(errors):.1f}%"


def _overlay(args: argparse.Namespace, argv: list[str], steps, configs, values: dict[str, float], base,
             before: float, after: float) -> str:
    """The calibration overlay: the engine settings the table was measured under (``--set``), the fitted compute
    keys and the roofline's other constants the fit held (its kernel floors, attention's efficiency: a later change
    of their defaults leaves the overlay's steps as fitted; a null attention efficiency stays null where the table's
    GPUs run different attention kernels), with the command that made it."""
    import yaml

    from sim.config_fields import set_dotted
    from sim.config_yaml import parse_set
    from sim.serving.compute_backend import attention_efficiency
    from sim.serving.roofline_fit import EFFICIENCY_KEYS

    layer: dict = {}
    for assignment in args.sets:
        set_dotted(layer, *parse_set(assignment))
    for key, value in values.items():
        # efficiencies to 6 figures; host costs to the nanosecond (a cost fitted to its bound of 0 is 0, not 1e-10)
        set_dotted(layer, f"compute.{key}", float(f"{value:.6g}") if key in EFFICIENCY_KEYS else round(value, 3))
    for key in HELD_KEYS:
        set_dotted(layer, f"compute.{key}", getattr(base.compute, key))
    # null attention efficiency: the one of the table's GPUs' attention kernel, where they run one
    efficiencies = {attention_efficiency(c) for c in configs}
    if base.compute.attention_efficiency is None and len(efficiencies) == 1:
        set_dotted(layer, "compute.attention_efficiency", efficiencies.pop())
    # the roofline the fit started from: its defaults, unless a config file or a --set gave a compute constant
    configured = args.config is not None or any(a.split("=", 1)[0].strip().startswith("compute.") for a in args.sets)
    start = "roofline as configured" if configured else "roofline defaults"
    header = [f"# made by: python tools/fit_roofline.py {' '.join(argv)}",
              f"# from {len(steps)} points of {args.table.name}; MAPE over them: {start} {before:.1f}%, "
              f"fitted {after:.1f}%"]
    return "\n".join(header) + "\n" + yaml.safe_dump(layer, sort_keys=False)


if __name__ == "__main__":
    from sim.command import end_process

    end_process(main())
