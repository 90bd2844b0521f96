"""Where the command line's outputs go, decided before any work: each writable, none the same file as another (a
sweep's journal included), none over a file the run reads (the config, its overlays, a sweep spec or plan, each path
the config names)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from sim.cli_config import default_config_path
from sim.config import Config
from sim.config_fields import files_read
from sim.mode_settings import WITH_WORKLOAD
from sim.report.output import check_distinct, check_names_a_file, check_plot_folder, check_writable, is_device_or_pipe


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
        check_names_a_file(args.requests_csv, "--requests-csv")  # (before the policies' suffixes make it one)
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
    config_file = ("--config", args.config) if args.config else ("the default config file", default_config_path())
    inputs = [config_file, ("--sweep", args.sweep), ("--plan", args.plan),
              *(("--calibration-profile", p) for p in args.calibration_profile),
              *(files_read(config) if config is not None else []),
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
