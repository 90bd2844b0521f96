"""kvsim command line: multi-tier KV-cache policy simulator for LLM serving.

One path for every run: parse → pick the mode → check that every flag given is used by that
mode → resolve and validate the whole config → check that every output can be written →
run → write the outputs atomically. Everything that can be known wrong is found before the
run starts. The parser, the modes and the flags each mode uses are ``sim/cli.py``; this module
resolves the config and outputs and runs the mode.

Exit status: 0 success, 2 bad usage or bad input (one line naming the file, row, key or
flag), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 141 standard output's reader gone (``| head``),
1 internal error only.
"""

from __future__ import annotations

import sys

try:  # Ctrl-C while the libraries load is an interruption too, not a traceback
    from pathlib import Path

    # The project root must come before the standard library on sys.path: the stdlib has a
    # module named ``trace`` too, and kvsim's ``trace`` package must win (also when installed).
    _ROOT = str(Path(__file__).resolve().parent)
    if sys.path[:1] != [_ROOT]:
        sys.path.insert(0, _ROOT)
    if "trace" in sys.modules and not hasattr(sys.modules["trace"], "__path__"):
        del sys.modules["trace"]

    import argparse
    import gc
    import logging
    import time
    from dataclasses import dataclass, field
    from typing import TYPE_CHECKING, Callable

    from sim.cli import (
        build_parser,
        check_flags,
        check_paths_given,
        flag_name,
        parse_policies,
        parse_routers,
        select_mode,
    )
    from sim.config import Config, load_config
    from sim.config_fields import path_settings
    from sim.errors import InputError, command_status, end_process, quote
    from sim.mode_settings import (
        CLUSTER_PD,
        EXPERIMENTS,
        SERVING,
        WITH_WORKLOAD,
        check_preset_read,
        check_settings_given,
        given_by_set,
        run_reading,
    )
    from sim.report.console import console_summary
    from sim.report.output import check_distinct, check_plot_folder, check_writable, is_device_or_pipe
except KeyboardInterrupt:
    print("kvsim: interrupted", file=sys.stderr)
    sys.exit(130)
# numpy, pyarrow and the simulator load when a mode runs (``--help`` and usage errors stay quick):
# sim.report.document and trace.workload are imported where they are used.
if TYPE_CHECKING:
    from sim.report.document import RunResult


# --------------------------------------------------------------------------- config


def _default_config_path() -> Path | None:
    for candidate in (Path("config.yaml"), Path(_ROOT) / "config.yaml"):
        if candidate.is_file():
            return candidate
    return None


# The config key each dedicated flag sets (validated with the key's domain; errors name the flag).
FLAG_KEYS = {
    "workload_trace": "workload.trace",
    "workload_format": "workload.format",
    "workload_limit": "workload.limit",
    "workload_time_unit": "workload.time_unit",
    "strict_workload_validation": "workload.strict_validation",
    "workload_cache": "workload.cache",
    "seed": "seed",
    "capacity_blocks": "cache.capacity_blocks",
    "mrc_sample_rate": "cache.mrc_sample_rate",
    "allow_train_test_overlap": "cache.allow_train_test_overlap",
    "rate_scale": "workload.rate_scale",
}


def given_on_command_line(args: argparse.Namespace) -> dict[str, str]:
    """Each config key the command line sets, with how it said so (``command_line_settings``: a flag gives its key,
    ``--rate-scale`` is workload.rate_scale's)."""
    return {key: said for said, key in command_line_settings(args)}


def command_line_settings(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(what the command line says, dotted key) of each config key set on it: each ``--set`` and each dedicated flag
    given (``FLAG_KEYS``, ``--policy``, ``--router``). A sweep or plan that sets one of them itself refuses it."""
    from sim.config_yaml import set_keys

    keys = [(f"--set {key}", key) for s in args.sets for key in set_keys(s)]
    keys += [(flag_name(dest), key) for dest, key in FLAG_KEYS.items()
             if getattr(args, dest, None) is not None and getattr(args, dest, None) is not False]
    keys += [(flag, key) for flag, key, dest in (("--policy", "cache.policy", "policy"), ("--router", "cluster.router", "router"))
             if getattr(args, dest, None)]
    return keys


def resolve_config(args: argparse.Namespace, mode: str | None = None, rules: bool = True) -> Config:
    """Config file → overlays → preset → --set → dedicated flags, each layer validated, then the
    whole config once (``sim.config_rules.validate``; not with ``rules`` False). ``mode``: the mode whose
    ``PRESET@mode`` applies (default: the command line's; a sweep's or a plan's is the mode its runs have)."""
    path = Path(args.config) if args.config else _default_config_path()
    try:
        missing = args.config and not path.is_file()
    except OSError as exc:  # a name too long, a loop of links, no permission
        raise InputError(f"--config {quote(str(path))}: {exc.strerror or exc}") from None
    if missing:
        raise InputError(f"--config {quote(str(path))}: not a file (a directory or device)" if path.exists()
                         else f"config file not found: {path}")
    flags = [(flag_name(dest), key, getattr(args, dest)) for dest, key in FLAG_KEYS.items()
             if getattr(args, dest) is not None and getattr(args, dest) is not False]
    if args.policy:
        flags.append(("--policy", "cache.policy", parse_policies(args.policy)[0]))
    if args.router:
        flags.append(("--router", "cluster.router", parse_routers(args.router)[0]))
    set_keys = given_by_set(args.sets)
    for flag, key, _ in flags:  # (the flag is applied after --set: one of the two would be silently dropped)
        if key in set_keys:
            raise InputError(f"{flag} and {set_keys[key]} both set config key '{key}': give one of them")
    return load_config(path, overlays=args.calibration_profile, preset=args.preset, sets=args.sets, flags=flags,
                       mode=mode or select_mode(args), rules=rules)


def check_config_for_mode(args: argparse.Namespace, config: Config, mode: str, policies: list[str]) -> None:
    """Flags and settings that only make sense together with others, judged on the resolved config."""
    from sim.mode_settings_rules import learned_tier_policies
    from trace.formats import check_time_unit

    given = {**learned_tier_policies(config), **given_on_command_line(args)}  # (--set's own wording where given)
    here = CLUSTER_PD if mode == "cluster" and args.pd else mode  # (--cluster --pd: the keys its roles read)
    check_preset_read(args.preset, config, here)
    check_time_unit(config.workload.trace, config.workload.format, config.workload.time_unit,
                    given.get("workload.time_unit", "workload.time_unit"))
    check_settings_given(here, config, policies, given, parse_routers(args.router), bool(args.max_rate))
    if mode == "check-calibration":
        from sim.serving.calibration import unread_serving_keys

        unread = {key: why for key, why in unread_serving_keys(Path(args.check_calibration), config).items()
                  if key in given}
        if unread:
            key, why = next(iter(unread.items()))
            raise InputError(f"{given[key]}: {why}")
    if mode == "cache-only" and args.mrc and config.cache.insert_outputs:
        raise InputError("--mrc: the miss-ratio curve is of the prompt blocks alone; drop cache.insert_outputs")
    if mode == "cache-only" and not args.mrc and "cache.mrc_sample_rate" in given:
        raise InputError("--set cache.mrc_sample_rate: used only with --mrc (--mrc-sample-rate)")
    check_mode_settings(mode, config, policies, cluster_pd=mode == "cluster" and args.pd)


def check_mode_settings(mode: str, config: Config, policies: list[str], cluster_pd: bool = False,
                        fits: bool = True) -> None:
    """What of ``config`` the mode reads, checked before the trace loads: a learned model, the serving settings,
    the compute model's profile, a network table and (``fits``) whether the model and the instances fit their GPUs,
    node or fleet. The command line checks its one run; a sweep or a plan checks each point without ``fits``
    (``experiments.execute.check_point``): a point that does not fit fails alone and the others go on, as a
    sweep across sizes expects, while a mistake in the settings stops the sweep before it starts."""
    from sim.cache.access import uses_learned_policy
    from sim.serving.kv_groups import check_hybrid_manager

    if mode == "cache-only" or mode in SERVING:
        check_hybrid_manager(config, "pd" if cluster_pd else mode, policies)  # (--cluster --pd: PD's transfers)
    if uses_learned_policy(config, policies) and (mode == "cache-only" or mode in SERVING):
        from sim.cache.access import load_learned_model

        load_learned_model(config)  # the model and its sidecar are checked before the trace loads
    if mode in SERVING:
        from sim.serving.roles import check_roles
        from sim.serving.run import check_serving_settings

        check_serving_settings(config)  # before the trace loads
        # (--cluster --pd: each role at its TP too)
        check_roles(config, mode == "pd" or cluster_pd, capacity=False)  # a profile's files are read and checked
    if mode in SERVING or (mode == "cache-only" and config.cache.capacity_blocks is None):  # HBM sized by config/GPU
        from sim.cache.tiers import hbm_capacity_blocks
        from sim.specs import gpu_spec

        if fits and mode in SERVING:  # at least one block: the weights fit (each PD role's at its TP), a GPU spec
            check_roles(config, mode == "pd" or cluster_pd, compute=False)  # file is read, before the trace
        elif fits:
            hbm_capacity_blocks(config)
        elif config.serving.num_gpu_blocks is None and config.cache.tiers.hbm.capacity_gib == 0:
            gpu_spec(config.hardware.gpu)  # (a sweep point: only the file; a point that does not fit fails alone)
    if fits and mode == "single":
        from sim.config_rules import single_node_fits

        single_node_fits(config)
    if fits and mode == "pd":
        from sim.config_rules import pd_node_fits

        pd_node_fits(config)
    if fits and mode == "cluster":
        from sim.cluster.topology import Topology

        Topology.from_config(config, pd=cluster_pd)  # an impossible fleet is found before the trace loads
    if mode in ("pd", "cluster"):
        from sim.serving.network import network_model

        network_model(config.network)  # a network.lookup table is read and checked before the trace loads


# -------------------------------------------------------------------------- outputs


@dataclass
class Outputs:
    """Every file a run will write, checked writable before it starts."""

    report_json: Path | None = None
    report_csv: Path | None = None
    requests_csv: dict[str, Path] = field(default_factory=dict)  # per policy
    plot_dir: Path | None = None  # None: no plots
    html: Path | None = None
    files: list[tuple[str, Path]] = field(default_factory=list)  # what names each file or folder written, its path


def plot_dir(args: argparse.Namespace) -> Path:
    """Where plots go: --plot-dir, else beside --report-json (a file, not /dev/stdout), else kvsim-plots/."""
    if args.plot_dir is not None:
        return Path(args.plot_dir)
    if args.report_json and not is_device_or_pipe(Path(args.report_json)):
        return Path(args.report_json).resolve().parent
    return Path("kvsim-plots")


def plan_outputs(args: argparse.Namespace, mode: str, policies: list[str], config: Config | None,
                 routers: list[str] = ()) -> Outputs:
    """Where each output goes; each must be writable and distinct, and none may overwrite an input."""
    outputs = Outputs()
    files: list[tuple[str, Path]] = []
    if args.report_json is not None:
        outputs.report_json = check_writable(args.report_json, "--report-json")
        files.append(("--report-json", outputs.report_json))
    if args.report_csv is not None:
        outputs.report_csv = check_writable(args.report_csv, "--report-csv")
        files.append(("--report-csv", outputs.report_csv))
    if args.requests_csv is not None:
        base = Path(args.requests_csv)
        names = [f"{p}/{r}" if len(policies) > 1 else r for p in policies for r in routers] if routers else policies
        for name in names:
            path = base if len(names) == 1 else base.with_suffix(f".{name.replace('/', '-')}.csv")
            outputs.requests_csv[name] = check_writable(path, "--requests-csv")
            files.append(("--requests-csv", path))
    if args.html is not None:
        outputs.html = check_writable(args.html, "--html")
        files.append(("--html", outputs.html))
    if mode in WITH_WORKLOAD and not args.no_plot:
        outputs.plot_dir = check_writable(plot_dir(args), "--plot-dir", directory=True)
    cache = config.workload.cache if config is not None else args.workload_cache
    if cache is not None:  # read if valid, else (re)written: found unwritable now, not after loading
        files.append(("--workload-cache", check_writable(cache, "--workload-cache")))
    # Every file kvsim reads: the config file (also the default one), overlays, the sweep spec or
    # plan, and each path the config names (before a config exists: the trace flag).
    config_file = ("--config", args.config) if args.config else ("the default config file", _default_config_path())
    inputs = [config_file, ("--sweep", args.sweep), ("--plan", args.plan),
              *(("--calibration-profile", p) for p in args.calibration_profile),
              *((f"config key '{key}'", path) for key, path in (path_settings(config) if config is not None else [])),
              ("--workload-trace", args.workload_trace if config is None else None)]
    if outputs.plot_dir is not None:
        check_plot_folder(outputs.plot_dir, inputs, files)
        files.append(("--plot-dir", outputs.plot_dir))
    if args.sweep is not None:  # (a report written over the journal broke the next --resume)
        from experiments.journal import journal_path

        files.append(("the sweep's journal", journal_path(args.report_json, args.report_csv, args.sweep, args.html)))
    check_distinct(inputs, files)
    outputs.files = files
    return outputs


# ---------------------------------------------------------------------------- runs


@dataclass
class Run:
    """What one invocation does, resolved and checked before any work."""

    mode: str
    config: Config
    policies: list[str]
    outputs: Outputs
    progress: bool
    mrc: bool
    overlay: Path | None = None  # --check-calibration
    routers: list[str] = field(default_factory=list)  # --router
    cluster_pd: bool = False  # --cluster --pd
    notes: list[str] = field(default_factory=list)
    summary: str | None = None  # printed instead of the generic metrics summary


def _stem(trace) -> str:
    prov = trace.provenance
    return Path(prov.path).stem if prov.path else prov.format.replace(":", "-")


def run_trace_stats(run: Run) -> tuple[dict, list[RunResult]]:
    from sim.report.document import RunResult
    from trace.continuations import check_outputs_in_next_turn_read
    from trace.stats import trace_stats
    from trace.workload import load_workload, with_trace_block_size

    trace = load_workload(run.config)
    run.config = with_trace_block_size(run.config, trace)
    check_outputs_in_next_turn_read(trace, run.config.workload)
    metrics = trace_stats(trace, run.config.workload.outputs_in_next_turn)
    if run.outputs.plot_dir is not None:
        from sim.report.plots import plot_trace_stats

        png = plot_trace_stats(trace, run.outputs.plot_dir / f"trace_stats_{_stem(trace)}.png")
        run.notes.append(f"plot: {png}")
    return trace.provenance.to_dict(), [RunResult(name="trace-stats", metrics=metrics)]


def run_cache_only(run: Run) -> tuple[dict, list[RunResult]]:
    from sim.cache.replay import run_cache_only as replay_policies
    from sim.cache.replay import run_mrc
    from trace.workload import load_workload, with_trace_block_size

    trace = load_workload(run.config)
    run.config = config = with_trace_block_size(run.config, trace)
    policies = run.policies or ([] if run.mrc else [config.cache.policy])
    runs = replay_policies(trace, config, policies, progress=run.progress)
    if run.mrc:
        runs.append(run_mrc(trace, config))
        if run.outputs.plot_dir is not None:
            from sim.report.plots import plot_mrc

            rate = config.cache.mrc_sample_rate
            kind = "exact" if rate >= 1.0 else f"shards-{rate:g}"  # a sampled curve never overwrites the exact one
            png = plot_mrc([{"name": r.name, "metrics": r.metrics} for r in runs],
                           run.outputs.plot_dir / f"mrc_{kind}_{_stem(trace)}.png", _stem(trace))
            run.notes.append(f"plot: {png}")
    return trace.provenance.to_dict(), runs


def run_serving_mode(run: Run) -> tuple[dict, list[RunResult]]:
    from sim.config import replace
    from sim.report.metrics import check_tpot_target_read, write_requests_csv
    from sim.serving.admission import admit
    from sim.serving.run import run_serving
    from trace.workload import load_workload, with_trace_block_size

    trace = load_workload(run.config)
    run.config = config = with_trace_block_size(run.config, trace)
    admit(trace, config, "pd" if run.cluster_pd else run.mode)  # (--cluster --pd: each role holds its part)
    check_tpot_target_read(trace.output_tokens, config.slo, config.workload.trace or "the synthetic workload")
    policies = run.policies or [config.cache.policy]
    routers = run.routers or [config.cluster.router]
    runs = []
    for policy in policies:  # one run per policy (and router) over the same trace
        for router in routers:
            overrides = {"cache.policy": policy, "cluster.router": router}
            if run.mode == "cluster":
                from sim.cluster.run import run_cluster

                result, requests = run_cluster(trace, replace(config, **overrides), pd=run.cluster_pd,
                                               progress=run.progress)
            else:
                result, requests = run_serving(trace, replace(config, **overrides), run.mode, progress=run.progress)
            name_run(result, run.mode, policy, router, len(policies), len(routers))
            runs.append(result)
            key = (f"{policy}/{router}" if len(policies) > 1 else router) if len(routers) > 1 else policy
            path = run.outputs.requests_csv.get(key)
            if path is not None:
                write_requests_csv(requests, path)
                run.notes.append(f"requests: {path}")
    return trace.provenance.to_dict(), runs


def name_run(result: RunResult, mode: str, policy: str, router: str, num_policies: int, num_routers: int) -> None:
    """A serving run's name and overrides among ``num_policies`` x ``num_routers`` runs (``--policy a,b --router
    c,d``): named by what varies, in flag order; a cluster run always by its router. The command line's runs and
    ``--max-rate``'s searched ones (experiments.execute) are named alike."""
    if mode == "cluster":
        result.name = f"{policy}/{router}" if num_policies > 1 else router
    elif num_policies > 1 or num_routers > 1:
        result.name = "/".join(([policy] if num_policies > 1 else []) + ([router] if num_routers > 1 else []))
    if num_policies > 1 or num_routers > 1:
        result.overrides = {**({"cache.policy": policy} if num_policies > 1 else {}),
                            **({"cluster.router": router} if num_routers > 1 or mode == "cluster" else {})}


def run_quietly(mode: str, config: Config, policies: list[str], cluster_pd: bool = False,
                routers: list[str] = ()) -> tuple[dict, list[RunResult]]:
    """One mode's runs exactly as the command line makes them, without printing, plots or files
    (the experiments' entry point: sweeps, max-rate probes, seeds; ``cluster_pd``: ``--cluster --pd``;
    ``routers``: ``--router a,b``, one run each)."""
    return RUNNERS[mode](Run(mode, config, policies, Outputs(), progress=False, mrc=False, routers=list(routers),
                             cluster_pd=cluster_pd))


def run_check_calibration(run: Run) -> tuple[None, list[RunResult]]:
    from sim.serving.calibration import calibration_runs, format_fits

    runs = calibration_runs(run.overlay, run.config)
    run.summary = format_fits(run.overlay, run.config, runs)
    return None, runs


RUNNERS = {"trace-stats": run_trace_stats, "cache-only": run_cache_only, "single": run_serving_mode,
           "pd": run_serving_mode, "cluster": run_serving_mode, "check-calibration": run_check_calibration}


def run_reading_given(run: Run, runner: Callable[[Run], tuple], given: dict[str, str]) -> tuple:
    """``runner(run)``; a setting the loaded workload leaves unread is refused where the command line gave it
    (``given``), and otherwise (a config file's) left alone: the run takes the value that leaves it the same, and
    the report echoes the config as resolved, as it echoes a file's keys the mode never reads
    (``sim.mode_settings.run_reading``)."""
    from sim.config import replace

    def attempt(config: Config) -> tuple:
        run.config = config
        return runner(run)

    result, unread = run_reading(attempt, run.config, given)
    if unread:
        run.config = replace(run.config, **unread)
    return result


def prepare(args: argparse.Namespace, mode: str) -> Run:
    """Everything else checked before any work (the mode and its flags are): the whole config, the outputs."""
    policies = parse_policies(args.policy)
    routers = parse_routers(args.router)
    if mode == "check-calibration":  # the overlay applies last, over any --calibration-profile
        args.calibration_profile = [*args.calibration_profile, args.check_calibration]
    config = resolve_config(args)
    check_config_for_mode(args, config, mode, policies or [config.cache.policy])
    outputs = plan_outputs(args, mode, policies or [config.cache.policy], config,
                           [r for r in routers if len(routers) > 1])
    return Run(mode, config, policies, outputs, progress=not args.quiet and sys.stderr.isatty(), mrc=args.mrc,
               overlay=Path(args.check_calibration) if args.check_calibration else None, routers=routers,
               cluster_pd=mode == "cluster" and args.pd)


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    parser = parser or build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help (0) or a usage error (2, already printed in one line)
        return done.code if isinstance(done.code, int) else 2
    start = time.perf_counter()
    # Notes from deep inside (the workload cache's) go through the "kvsim" logger: errors only with --quiet.
    logging.getLogger("kvsim").setLevel(logging.ERROR if args.quiet else logging.NOTSET)
    return command_status("kvsim", lambda: _run(args, parser, start))


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser, start: float) -> int:
    """The chosen mode, end to end: validate, run, write the outputs, print the summary."""
    check_paths_given(args)
    mode = select_mode(args)
    check_flags(args, parser, mode)
    from experiments.cli import check_experiment_flags

    check_experiment_flags(args, mode)
    if mode in EXPERIMENTS:
        from experiments.cli import run_experiment

        return run_experiment(args, mode)
    run = prepare(args, mode)
    runner = RUNNERS[run.mode]
    if args.max_rate or args.seeds:
        from experiments.cli import searched_runner

        runner = searched_runner(args, run.mode)
    trace, runs = run_reading_given(run, runner, given_on_command_line(args))
    from sim.report.document import build_report, write_csv, write_json

    report = build_report(run.mode, run.config, trace, runs, wall_s=time.perf_counter() - start)
    if run.outputs.report_json:
        write_json(report, run.outputs.report_json)
        run.notes.append(f"report: {run.outputs.report_json}")
    if run.outputs.report_csv:
        write_csv(report, run.outputs.report_csv)
        run.notes.append(f"csv: {run.outputs.report_csv}")
    if run.mode != "check-calibration":
        from sim.report.outputs import render_outputs

        run.notes += render_outputs(report, runs, run.mode, run.outputs.plot_dir,
                                    draw_plots=run.outputs.plot_dir is not None and run.mode != "trace-stats",
                                    html_path=run.outputs.html, notes=run.notes, cluster_pd=run.cluster_pd)
    if not args.quiet:
        print(run.summary if run.summary is not None else console_summary(report))
        for note in run.notes:
            print(note)
    return 0


if __name__ == "__main__":
    # Importing numba makes hundreds of thousands of objects that outlive the run; at the default
    # threshold (700) the collector ran ~130 times over them (~35 ms of a short run), at 10,000 ~10.
    gc.set_threshold(10_000, *gc.get_threshold()[1:])
    try:
        status = main()
    except KeyboardInterrupt:  # before main's own handler is in place (argument parsing)
        print("kvsim: interrupted", file=sys.stderr)
        status = 130
    end_process(status)  # its outputs written and closed; without the interpreter's teardown (see there)
