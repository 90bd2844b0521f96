"""kvsim command line: multi-tier KV-cache policy simulator for LLM serving.

Exit status: 0 success, 2 bad usage or bad input (the message names the file, row or
key), 1 internal error.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The project root must come before the standard library on sys.path: the stdlib has a
# module named ``trace`` too, and kvsim's ``trace`` package must win (also when installed).
_ROOT = str(Path(__file__).resolve().parent)
if sys.path[:1] != [_ROOT]:
    sys.path.insert(0, _ROOT)
if "trace" in sys.modules and not hasattr(sys.modules["trace"], "__path__"):
    del sys.modules["trace"]

import argparse  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402


from sim.config import Config, load_config  # noqa: E402
from sim.errors import InputError  # noqa: E402
from sim.report.document import RunResult, build_report, write_csv, write_json  # noqa: E402
from trace.workload import load_workload  # noqa: E402

EXAMPLES = """\
examples:
  # statistics and the reuse ceiling of a trace (no simulation)
  python main.py --trace-stats --workload-trace trace/data/azure_conv_2023.csv --report-json out/stats.json

  # a synthetic multi-turn chat workload instead of a trace file
  python main.py --trace-stats --set workload.synthetic.kind=multi-turn --preset smoke

  # policy study: several policies over one trace, single tier of 5,000 blocks (512-token Mooncake blocks)
  python main.py --cache-only --workload-trace mooncake.jsonl --set serving.block_size=512 \\
      --policy lru,arc,s3fifo,sieve,belady --capacity-blocks 5000 --report-json out/policies.json

  # prefill/decode disaggregation on the bundled Azure trace, with a per-request CSV
  python main.py --pd --workload-trace trace/data/azure_conv_2023.csv --set pd.num_prefill=2 \\
      --set pd.num_decode=2 --report-json out/pd.json --requests-csv out/pd_requests.csv

  # override any config key (validated like config.yaml; unknown keys are errors)
  python main.py --trace-stats --workload-trace mooncake.jsonl --set serving.block_size=512

  # capacity planning: a sweep on 2 processes, the max rate under an SLO, the least-cost configuration
  python main.py --sweep experiments/examples/sweep_policies.yaml --jobs 2 --report-csv out/sweep.csv
  python main.py --max-rate --workload-trace trace/data/azure_conv_2023.csv --set slo.ttft_s=0.3
  python main.py --plan experiments/examples/plan_azure.yaml --workload-limit 300 --html out/plan.html

modes (one at a time):
  --trace-stats   trace statistics and the infinite-cache hit ratio
  --cache-only    replay block accesses through the cache tiers, no timing (policy study)
  (default)       single node: serving.num_instances workers, each with its HBM, sharing DRAM/SSD,
                  behind a prefix-aware router; TTFT/TPOT/E2E and the TTFT breakdown
  --cluster       racks of nodes behind a prefix-aware router
  --pd            prefill/decode disaggregated serving
  --sweep SPEC    every point of a sweep spec (mode, axes) on a process pool or Ray
  --plan PLAN     the least-cost configuration that meets a hit-ratio or latency target
"""

# Modes whose implementation has not landed yet: the issue that builds each.
PENDING_MODES = {
    "cluster": "--cluster is not implemented yet (cluster issue)",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit 2, as argparse does, with a hint
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n(see --help for examples)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="kvsim",
        description="Multi-tier KV-cache policy simulator for LLM serving (HBM / DRAM / SSD / rack EIC).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--trace-stats", action="store_true", help="trace statistics and reuse ceiling, no simulation")
    mode.add_argument("--cache-only", action="store_true", help="replay block accesses through the cache tiers, no timing")
    mode.add_argument("--cluster", action="store_true", help="racks of GPU nodes behind a router (not built yet: exits 2)")
    mode.add_argument("--pd", action="store_true", help="prefill/decode disaggregated serving")
    mode.add_argument("--sweep", metavar="SPEC.yaml", help="run every point of a sweep spec (README: Capacity planning)")
    mode.add_argument("--plan", metavar="PLAN.yaml", help="least-cost configuration that meets a target")

    cfg = p.add_argument_group("configuration")
    cfg.add_argument("--config", metavar="PATH", help="YAML config (default: config.yaml here, else next to main.py)")
    cfg.add_argument("--preset", choices=["smoke", "dev", "prod-eval"], help="scale the run (see presets in config.yaml)")
    cfg.add_argument("--calibration-profile", metavar="PATH", action="append", default=[],
                     help="YAML overlay merged over the config; repeatable, applied in order")
    cfg.add_argument("--set", metavar="KEY=VALUE", dest="sets", action="append", default=[],
                     help="override one config key, e.g. --set cache.tiers.dram.capacity_gib=64; repeatable")
    cfg.add_argument("--seed", type=int, help="seed of every random choice (config key: seed)")

    wl = p.add_argument_group("workload")
    wl.add_argument("--workload-trace", metavar="PATH", help="trace file (Azure, BurstGPT, Mooncake, Splitwise, LLMServingSim)")
    wl.add_argument("--workload-format", choices=["azure", "burstgpt", "mooncake", "splitwise", "llmservingsim", "auto"],
                    help="trace format (default auto: sniffed from the header)")
    wl.add_argument("--workload-limit", type=int, metavar="N", help="use only the first N valid requests")
    wl.add_argument("--workload-time-unit", choices=["s", "ms", "us", "ns"], help="unit of numeric timestamps")
    wl.add_argument("--strict-workload-validation", action="store_true",
                    help="the first bad row is an error (default: bad rows are counted and skipped)")

    cache = p.add_argument_group("cache")
    cache.add_argument("--policy", metavar="NAME[,NAME...]", help="eviction policy; several = one run each, same trace")
    cache.add_argument("--capacity-blocks", type=int, metavar="N", help="cache-only: single-tier capacity in blocks")
    cache.add_argument("--allow-train-test-overlap", action="store_true",
                       help="let --policy learned be judged on requests its model was trained on (off: exit 2)")
    cache.add_argument("--mrc", action="store_true",
                       help="add the LRU miss-ratio curve (hit ratio at every capacity, one pass); implies --cache-only")
    cache.add_argument("--mrc-sample-rate", type=float, metavar="R",
                       help="SHARDS sampling rate for --mrc, e.g. 0.01 for very long traces (default 1 = exact)")

    exp = p.add_argument_group("experiments")
    exp.add_argument("--rate-scale", type=float, metavar="X", help="divide inter-arrival times by X (workload.rate_scale)")
    exp.add_argument("--max-rate", action="store_true", help="highest rate scale meeting slo.* (bisection)")
    exp.add_argument("--seeds", type=int, metavar="N", help="repeat with seeds seed..seed+N-1: means and 95%% intervals")
    exp.add_argument("--jobs", type=int, metavar="N", help="--sweep/--plan: parallel points (default: the core count)")
    exp.add_argument("--backend", choices=["local", "ray"], help="--sweep/--plan: process pool (default) or Ray")
    exp.add_argument("--ray-address", metavar="ADDR", help="--backend ray: an existing cluster (default: start one)")
    exp.add_argument("--resume", action="store_true", help="--sweep: run only the points missing from its journal")

    out = p.add_argument_group("output")
    out.add_argument("--report-json", metavar="PATH", help="write the JSON report here")
    out.add_argument("--report-csv", metavar="PATH", help="write one CSV row per run here")
    out.add_argument("--requests-csv", metavar="PATH", help="serving modes: one CSV row per request (times, breakdown)")
    out.add_argument("--plot-dir", metavar="DIR", help="where PNG plots go (default: beside --report-json, else kvsim-plots/)")
    out.add_argument("--html", metavar="PATH", help="one self-contained HTML report (tables, plots, config)")
    out.add_argument("--no-plot", action="store_true", help="skip plots")
    out.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p


def _default_config_path() -> Path | None:
    for candidate in (Path("config.yaml"), Path(_ROOT) / "config.yaml"):
        if candidate.is_file():
            return candidate
    return None


def resolve_config(args: argparse.Namespace) -> Config:
    """Config file → overlays → preset → --set → dedicated flags, each layer validated."""
    path = Path(args.config) if args.config else _default_config_path()
    if args.config and not path.is_file():
        raise InputError(f"config file not found: {path}")
    sets = list(args.sets)
    flag_keys = {
        "workload.trace": args.workload_trace,
        "workload.format": args.workload_format,
        "workload.limit": args.workload_limit,
        "workload.time_unit": args.workload_time_unit,
        "seed": args.seed,
        "cache.capacity_blocks": args.capacity_blocks,
        "cache.mrc_sample_rate": args.mrc_sample_rate,
        "workload.rate_scale": args.rate_scale,
    }
    if args.strict_workload_validation:
        flag_keys["workload.strict_validation"] = True
    if args.allow_train_test_overlap:
        flag_keys["cache.allow_train_test_overlap"] = True
    if args.policy:
        flag_keys["cache.policy"] = args.policy.split(",")[0]
    for key, value in flag_keys.items():
        if value is not None:
            sets.append(f"{key}={_yaml_scalar(value)}")
    return load_config(path, overlays=args.calibration_profile, preset=args.preset, sets=sets)


def _yaml_scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def _plot_dir(args: argparse.Namespace) -> Path:
    if args.plot_dir:
        return Path(args.plot_dir)
    if args.report_json:
        return Path(args.report_json).resolve().parent
    return Path("kvsim-plots")


def run_trace_stats(args: argparse.Namespace, config: Config) -> tuple[dict, list[RunResult], list[str]]:
    from trace.stats import trace_stats

    trace = load_workload(config)
    metrics = trace_stats(trace)
    notes = []
    if not args.no_plot:
        from sim.report.plots import plot_trace_stats

        stem = Path(trace.provenance.path).stem if trace.provenance.path else trace.provenance.format.replace(":", "-")
        png = plot_trace_stats(trace, _plot_dir(args) / f"trace_stats_{stem}.png")
        notes.append(f"plot: {png}")
    return trace.provenance.to_dict(), [RunResult(name="trace-stats", metrics=metrics)], notes


def run_cache_only(args: argparse.Namespace, config: Config) -> tuple[dict, list[RunResult], list[str]]:
    from sim.cache.replay import run_cache_only as replay_policies
    from sim.cache.replay import run_mrc

    trace = load_workload(config)
    if args.policy:
        policies = [p.strip() for p in args.policy.split(",") if p.strip()]
    else:
        policies = [] if args.mrc else [config.cache.policy]
    runs = replay_policies(trace, config, policies, progress=not args.quiet)
    notes = []
    if args.mrc:
        runs.append(run_mrc(trace, config))
        if not args.no_plot:
            from sim.report.plots import plot_mrc

            stem = Path(trace.provenance.path).stem if trace.provenance.path else trace.provenance.format.replace(":", "-")
            png = plot_mrc([{"name": r.name, "metrics": r.metrics} for r in runs], _plot_dir(args) / f"mrc_{stem}.png", stem)
            notes.append(f"plot: {png}")
    return trace.provenance.to_dict(), runs, notes


def run_serving_mode(args: argparse.Namespace, config: Config) -> tuple[dict, list[RunResult], list[str]]:
    from sim.report.metrics import write_requests_csv
    from sim.serving.run import run_serving

    from sim.config import replace

    trace = load_workload(config)
    mode = "pd" if args.pd else "single"
    policies = [p.strip() for p in args.policy.split(",") if p.strip()] if args.policy else [config.cache.policy]
    runs, notes = [], []
    for policy in policies:  # one run per policy over the same trace
        result, records = run_serving(trace, replace(config, **{"cache.policy": policy}), mode, progress=not args.quiet)
        if len(policies) > 1:
            result.name, result.overrides = f"{mode}-{policy}", {"cache.policy": policy}
        runs.append(result)
        if args.requests_csv:
            path = args.requests_csv if len(policies) == 1 else str(Path(args.requests_csv).with_suffix(f".{policy}.csv"))
            write_requests_csv(records, path)
            notes.append(f"requests: {path}")
    return trace.provenance.to_dict(), runs, notes


def _summary(report: dict) -> str:
    lines = []
    trace = report.get("trace")
    if trace:
        skipped = ", ".join(f"{k}: {v}" for k, v in trace["skip_reasons"].items()) or "none"
        lines.append(f"trace {trace['path'] or trace['format']} ({trace['format']}): {trace['rows_used']:,} requests used, "
                     f"{trace['rows_skipped']:,} skipped ({skipped}); block ids: {trace['block_ids']}")
    for run in report["runs"]:
        lines.append(f"[{run['name']}]")
        for key, value in run["metrics"].items():
            if key == "mrc":
                lines.append(f"  {key:<30} {value['method']} over {value['sampled_accesses']:,} accesses, "
                             f"{len(value['capacity_blocks'])} capacities (see the JSON report / plot)")
            elif isinstance(value, dict):
                if any(isinstance(v, dict) for v in value.values()):
                    continue  # per-tier counters: JSON report only
                inner = "  ".join(f"{k}={_fmt(v)}" for k, v in value.items())
                lines.append(f"  {key:<30} {inner}")
            else:
                lines.append(f"  {key:<30} {_fmt(value)}")
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1e6 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        from experiments.cli import check_flags, run_experiment, wrap_runner

        check_flags(args)
        if args.sweep or args.plan:
            return run_experiment(args)
        config = resolve_config(args)
        if args.trace_stats:
            mode, runner = "trace-stats", run_trace_stats
        elif args.cache_only or args.mrc:
            mode, runner = "cache-only", run_cache_only
        elif args.cluster:
            raise InputError(PENDING_MODES["cluster"])
        else:
            mode, runner = ("pd" if args.pd else "single"), run_serving_mode
        trace, runs, notes = wrap_runner(runner, args, mode)(args, config)
        report = build_report(mode, config, trace, runs, wall_s=time.perf_counter() - start)
        if args.report_json:
            write_json(report, args.report_json)
            notes.append(f"report: {args.report_json}")
        if args.report_csv:
            write_csv(report, args.report_csv)
            notes.append(f"csv: {args.report_csv}")
        from sim.report.outputs import render_outputs

        notes += render_outputs(report, runs, mode, _plot_dir(args), mode != "trace-stats" and not args.no_plot,
                                args.html, notes)
        if not args.quiet:
            print(_summary(report))
            for note in notes:
                print(note)
        return 0
    except InputError as exc:
        print(f"kvsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kvsim: interrupted", file=sys.stderr)
        return 1
    except Exception:  # an internal error: a bug in kvsim, not bad input
        traceback.print_exc()
        print("kvsim: internal error (please report it with the command line above)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
