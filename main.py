"""kvsim command line: multi-tier KV-cache policy simulator for LLM serving.

One path for every run: parse → pick the mode → check that every flag given is used by that
mode → resolve and validate the whole config → check that every output can be written →
run → write the outputs atomically. Everything that can be known wrong is found before the
run starts. The parser, the modes and the flags each mode uses are ``sim/cli.py``; the config the command line
resolves ``sim/cli_config.py``, its outputs ``sim/cli_outputs.py``, each mode's run ``sim/mode_runs.py``. This
module prepares the run, dispatches it, writes the report and turns the end into an exit status.

Exit status: 0 success, 2 bad usage or bad input (one line naming the file, row, key or
flag), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 141 standard output's reader gone (``| head``),
1 internal error only.
"""

from __future__ import annotations

import sys

try:  # Ctrl-C or SIGTERM while the libraries load is a stop too, not a traceback or a death by the signal
    from pathlib import Path

    # The project root must come before the standard library on sys.path: the stdlib has a
    # module named ``trace`` too, and kvsim's ``trace`` package must win (also when installed).
    _ROOT = str(Path(__file__).resolve().parent)
    if sys.path[:1] != [_ROOT]:
        sys.path.insert(0, _ROOT)
    if "trace" in sys.modules and not hasattr(sys.modules["trace"], "__path__"):
        del sys.modules["trace"]

    from sim.command import watch_stop_signals  # (standard library only: a few ms)

    # SIGTERM's handler before the ~0.2 s of imports and argument parsing, not at command_status: a SIGTERM there
    # killed the process (status -15, no line; 4 of 80 SIGTERMs sent 0.2-2 s into a --pd run). (Run as a program
    # only: a process that imports main, a test's, keeps its own handlers.)
    if __name__ == "__main__":
        watch_stop_signals()

    import argparse
    import gc
    import logging
    import time

    from sim.cli import build_parser, check_flags, check_paths_given, parse_policies, parse_routers, select_mode
    from sim.cli_config import check_config_for_mode, given_on_command_line, resolve_config
    from sim.cli_outputs import plan_outputs
    from sim.command import Terminated, command_status, end_process
    from sim.errors import lines_escaped, one_line
    from sim.mode_runs import RUNNERS, Run, run_reading_given
    from sim.mode_settings import EXPERIMENTS
    from sim.progress import show_progress
    from sim.report.console import console_summary
except KeyboardInterrupt as stop:  # (sim.command's Terminated, a KeyboardInterrupt, where SIGTERM came)
    if __name__ != "__main__":  # imported by another program (tools/edge_runs.py, overload_grid.py inside their
        raise                   # commands): its answer is the one line; ours too made two, "kvsim: terminated" first
    terminated = type(stop).__name__ == "Terminated"  # (sim.command itself may be what a Ctrl-C cut short)
    print(f"kvsim: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
    sys.exit(143 if terminated else 130)
# numpy, pyarrow and the simulator load when a mode runs (``--help`` and usage errors stay quick):
# sim.report.document and trace.workload are imported where they are used.


def prepare(args: argparse.Namespace, mode: str) -> Run:
    """Everything else checked before any work (the mode and its flags are): the whole config, the outputs."""
    policies = parse_policies(args.policy)
    routers = parse_routers(args.router)
    tables: dict[str, bool] = {}
    layers: dict[Path, dict] = {}
    if mode == "check-calibration":  # the overlay applies last, over any --calibration-profile
        args.calibration_profile = [*args.calibration_profile, args.check_calibration]
    config = resolve_config(args, layers=layers)
    if mode == "check-calibration":  # (what it provides: from the layer as read, not a second read of the file)
        from sim.serving.calibration import overlay_tables

        tables = overlay_tables(layers[Path(args.check_calibration)])
    check_config_for_mode(args, config, mode, policies or [config.cache.policy], tables)
    outputs = plan_outputs(args, mode, policies or [config.cache.policy], config,
                           [r for r in routers if len(routers) > 1])
    return Run(mode, config, policies, outputs, progress=not args.quiet and sys.stderr.isatty(), mrc=args.mrc,
               overlay=Path(args.check_calibration) if args.check_calibration else None, overlay_tables=tables,
               routers=routers, cluster_pd=mode == "cluster" and args.pd)


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    parser = parser or build_parser()
    # (the arguments are parsed inside the command: --help's 0 and a usage error's 2, argparse's exits, end it as
    # its other statuses do, through command_status: a stop as the process ends finds its handlers, not a traceback)
    return command_status("kvsim", lambda: _run(parser.parse_args(argv), parser))


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The chosen mode, end to end: validate, run, write the outputs, print the summary."""
    start = time.perf_counter()
    # Notes from deep inside (the workload cache's) go through the "kvsim" logger: errors only with --quiet.
    logging.getLogger("kvsim").setLevel(logging.ERROR if args.quiet else logging.NOTSET)
    check_paths_given(args)
    mode = select_mode(args)
    check_flags(args, parser, mode)
    from experiments.cli import check_experiment_flags

    check_experiment_flags(args, mode)
    if mode in EXPERIMENTS:
        from experiments.cli import run_experiment

        return run_experiment(args, mode)
    run = prepare(args, mode)
    show_progress(run.progress)
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
        # (a path or name the summary echoes: one line, no escape sequence reaching the terminal, as errors are)
        print(lines_escaped(run.summary if run.summary is not None else console_summary(report)))
        for note in run.notes:
            print(one_line(note))
    return 0


if __name__ == "__main__":
    # Importing numba makes hundreds of thousands of objects that outlive the run; at the default
    # threshold (700) the collector ran ~130 times over them (~35 ms of a short run), at 10,000 ~10.
    gc.set_threshold(10_000, *gc.get_threshold()[1:])
    try:
        status = main()
    except KeyboardInterrupt as stop:  # before main's own handler is in place (building the parser)
        print(f"kvsim: {'terminated' if isinstance(stop, Terminated) else 'interrupted'}", file=sys.stderr)
        status = 143 if isinstance(stop, Terminated) else 130
    end_process(status)  # its outputs written and closed; without the interpreter's teardown (see there)
