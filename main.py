"""kvsim command line: multi-tier KV-cache policy simulator for LLM serving.

One path for every run: parse → pick the mode → check that every flag given is used by that
mode → resolve and validate the whole config → check that every output can be written →
run → write the outputs atomically. Everything that can be known wrong is found before the
run starts.

Exit status: 0 success, 2 bad usage or bad input (one line naming the file, row, key or
flag), 130 interrupted (Ctrl-C), 1 internal error only.
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
import gc  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import TYPE_CHECKING, get_args, get_type_hints  # noqa: E402

try:  # Ctrl-C while the libraries load is an interruption too, not a traceback
    from sim.config import Config, WorkloadConfig, load_config  # noqa: E402
    from sim.config_fields import setting  # noqa: E402
    from sim.config_yaml import PATH_KEYS  # noqa: E402
    from sim.errors import QUOTE_LIMIT, InputError, command_status, quote  # noqa: E402
    from sim.report.output import check_writable  # noqa: E402
except KeyboardInterrupt:
    print("kvsim: interrupted", file=sys.stderr)
    sys.exit(130)
# numpy, pyarrow and the simulator load when a mode runs (``--help`` and usage errors stay quick):
# sim.report.document and trace.workload are imported where they are used.
if TYPE_CHECKING:
    from sim.report.document import RunResult

MOONCAKE = "../shared/data/traces/mooncake_conversation.jsonl"
AZURE = "trace/data/azure_conv_2023.csv"

EXAMPLES = f"""\
examples:
  # statistics and the reuse ceiling of a trace (no simulation)
  python main.py --trace-stats --workload-trace {AZURE} --report-json out/stats.json

  # a synthetic multi-turn chat workload instead of a trace file
  python main.py --trace-stats --set workload.synthetic.kind=multi-turn --preset smoke

  # policy study: several policies over one trace, single tier of 5,000 blocks (Mooncake's own 512-token blocks)
  python main.py --cache-only --workload-trace {MOONCAKE} \\
      --policy lru,arc,s3fifo,sieve,belady --capacity-blocks 5000 --report-json out/policies.json

  # prefill/decode disaggregation on the bundled Azure trace, with a per-request CSV
  python main.py --pd --workload-trace {AZURE} --set pd.num_prefill=2 \\
      --set pd.num_decode=2 --report-json out/pd.json --requests-csv out/pd_requests.csv

  # override any config key (validated like config.yaml; unknown keys are errors):
  # here Mooncake's 512-token blocks are split into 64-token ones
  python main.py --trace-stats --workload-trace {MOONCAKE} \
      --set workload.block_mismatch=split --set serving.block_size=64

  # capacity planning: a sweep on 2 processes, the max rate under an SLO, the least-cost configuration
  python main.py --sweep experiments/examples/sweep_policies.yaml --jobs 2 --report-csv out/sweep.csv
  python main.py --max-rate --workload-trace {AZURE} --set slo.ttft_s=0.3
  python main.py --plan experiments/examples/plan_azure.yaml --workload-limit 300 --html out/plan.html

modes (one at a time):
  --trace-stats   trace statistics and the infinite-cache hit ratio
  --cache-only    replay block accesses through the cache tiers, no timing (policy study)
  (default)       single node: serving.num_instances workers, each with its HBM, sharing DRAM/SSD,
                  behind a prefix-aware router; TTFT/TPOT/E2E and the TTFT breakdown
  --cluster       racks x nodes x GPUs (cluster.*, hardware.gpus_per_node) behind a hierarchical router
                  (--router NAME[,NAME...]); HBM per instance, DRAM/SSD per node, EIC per rack; with --pd,
                  prefill/decode pools in every rack (pd.num_prefill/num_decode per rack)
  --pd            prefill/decode disaggregated serving
  --check-calibration OVERLAY.yaml
                  fit of the overlay's compute, collective and network tables (leave-one-out) beside the
                  roofline / ring / analytic model on the same points
  --sweep SPEC    every point of a sweep spec (mode, axes) on a process pool or Ray
  --plan PLAN     the least-cost configuration that meets a hit-ratio or latency target

exit status: 0 success, 2 bad usage or input, 130 interrupted, 1 internal error
"""

# ---------------------------------------------------------------------------- modes

MODES = ("trace-stats", "cache-only", "single", "pd", "cluster", "check-calibration", "sweep", "plan")
MODE_FLAGS = {"trace-stats": "--trace-stats", "cache-only": "--cache-only", "single": "the single-node mode (default)",
              "pd": "--pd", "cluster": "--cluster", "check-calibration": "--check-calibration", "sweep": "--sweep",
              "plan": "--plan"}
ALL = frozenset(MODES)
WITH_WORKLOAD = ALL - {"check-calibration"}  # modes that read a trace or generate a workload
EXPERIMENTS = frozenset({"sweep", "plan"})  # many runs, each a mode of its own (experiments/)
SERVING = frozenset({"single", "pd", "cluster"})
SIMULATING = SERVING | {"cache-only"}  # one simulation per policy

# Which modes use each option (by argparse dest). A flag given in a mode that does not use it is
# an error naming it, never silently ignored. Every option of the parser must appear here (a test
# checks), so a new flag declares its modes. The mode switches themselves are not listed.
FLAG_MODES: dict[str, frozenset[str]] = {
    "config": ALL,
    "preset": ALL,
    "calibration_profile": ALL,
    "sets": ALL,
    "seed": WITH_WORKLOAD,
    "workload_trace": WITH_WORKLOAD,
    "workload_format": WITH_WORKLOAD,
    "workload_limit": WITH_WORKLOAD,
    "workload_time_unit": WITH_WORKLOAD,
    "strict_workload_validation": WITH_WORKLOAD,
    "workload_cache": WITH_WORKLOAD,
    "policy": SIMULATING,
    "router": frozenset({"single", "cluster"}),
    "capacity_blocks": frozenset({"cache-only"}),
    "allow_train_test_overlap": SIMULATING | {"sweep"},
    "mrc": frozenset({"cache-only"}),
    "mrc_sample_rate": frozenset({"cache-only"}),
    "rate_scale": WITH_WORKLOAD - {"plan"},  # the planner sets the rate itself
    "max_rate": SERVING | {"sweep"},
    "seeds": SIMULATING | {"sweep"},
    "jobs": EXPERIMENTS,
    "backend": EXPERIMENTS,
    "ray_address": EXPERIMENTS,
    "resume": frozenset({"sweep"}),
    "report_json": ALL,
    "report_csv": ALL,
    "requests_csv": SERVING,
    "plot_dir": WITH_WORKLOAD,
    "html": WITH_WORKLOAD,
    "no_plot": ALL,  # kvcache-sim scripts pass it everywhere; harmless where nothing is plotted
    "quiet": ALL,
}
MODE_SWITCHES = ("trace_stats", "cache_only", "cluster", "pd", "check_calibration", "sweep", "plan")
CLUSTER_COMBINES_WITH = ("pd",)  # --cluster --pd: prefill/decode pools in every rack


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit 2, as argparse does, in one line like every other error
        if len(message) > 2 * QUOTE_LIMIT:  # argparse quotes the offending argument whole
            message = message[: 2 * QUOTE_LIMIT] + "..."
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _workload_choices(key: str) -> tuple[str, ...]:
    """The values config key ``workload.<key>`` (a ``Literal``, maybe ``| None``) takes: one list for it and its flag."""
    hint = get_type_hints(WorkloadConfig)[key]
    return tuple(value for arg in get_args(hint) for value in (get_args(arg) or (arg,)) if isinstance(value, str))


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
    p.add_argument("--cluster", action="store_true",
                   help="racks of GPU nodes (cluster.*, hardware.gpus_per_node) behind a hierarchical router; "
                        "with --pd, prefill/decode pools in every rack")
    mode.add_argument("--pd", action="store_true", help="prefill/decode disaggregated serving")
    mode.add_argument("--check-calibration", metavar="OVERLAY.yaml",
                      help="how well each table the overlay provides fits its measured points, beside the analytic model")
    mode.add_argument("--sweep", metavar="SPEC.yaml", help="run every point of a sweep spec (README: Capacity planning)")
    mode.add_argument("--plan", metavar="PLAN.yaml", help="least-cost configuration that meets a target")

    cfg = p.add_argument_group("configuration")
    cfg.add_argument("--config", metavar="PATH", help="YAML config (default: config.yaml here, else next to main.py)")
    cfg.add_argument("--preset", choices=["smoke", "dev", "prod-eval"], help="scale the run (see presets in config.yaml)")
    cfg.add_argument("--calibration-profile", metavar="PATH", action="append", default=[],
                     help="YAML overlay merged over the config; repeatable, applied in order")
    cfg.add_argument("--set", metavar="KEY=VALUE", dest="sets", action="append", default=[],
                     help="override one config key, e.g. --set cache.tiers.dram.capacity_gib=64; repeatable")
    cfg.add_argument("--seed", type=int, help="seed of every random choice, >= 0 (config key: seed)")

    wl = p.add_argument_group("workload")
    wl.add_argument("--workload-trace", metavar="PATH", help="trace file (Azure, BurstGPT, Mooncake, Splitwise, LLMServingSim)")
    wl.add_argument("--workload-format", choices=_workload_choices("format"),
                    help="trace format (default auto: sniffed from the header)")
    wl.add_argument("--workload-limit", type=int, metavar="N", help="use only the first N valid requests (N >= 1)")
    wl.add_argument("--workload-time-unit", choices=_workload_choices("time_unit"), help="unit of numeric timestamps")
    wl.add_argument("--strict-workload-validation", action="store_true",
                    help="the first bad row is an error (default: bad rows are counted and skipped)")
    wl.add_argument("--workload-cache", metavar="PATH",
                    help="keep the loaded trace in this binary file; later runs map it into memory while the trace file "
                         "and the loader settings are unchanged, else rebuild it (config key: workload.cache)")

    cache = p.add_argument_group("cache")
    cache.add_argument("--policy", metavar="NAME[,NAME...]", help="eviction policy; several = one run each, same trace")
    cache.add_argument("--router", metavar="NAME[,NAME...]",
                       help="single/cluster modes: round-robin, least-loaded, session-affinity, prefix-aware or "
                            "precise-prefix (cluster.router); several = one run each, named by it")
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


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-") if dest != "sets" else "--set"


def select_mode(args: argparse.Namespace) -> str:
    if args.cluster:
        others = [f"--{name.replace('_', '-')}" for name in MODE_SWITCHES
                  if name != "cluster" and name not in CLUSTER_COMBINES_WITH and getattr(args, name)]
        if others:
            raise InputError(f"--cluster is not allowed with {others[0]} (it combines only with --pd)")
    if args.sweep:
        return "sweep"
    if args.plan:
        return "plan"
    if args.check_calibration:
        return "check-calibration"
    if args.trace_stats:
        return "trace-stats"
    if args.cache_only:
        return "cache-only"
    if args.cluster:
        return "cluster"
    if args.pd:
        return "pd"
    return "cache-only" if args.mrc else "single"  # --mrc implies --cache-only


def check_flags(args: argparse.Namespace, parser: argparse.ArgumentParser, mode: str) -> None:
    """Every flag given is used by ``mode`` (the ``FLAG_MODES`` table), and the flags agree with each other."""
    for dest, modes in FLAG_MODES.items():
        if getattr(args, dest) != parser.get_default(dest) and mode not in modes:
            users = ", ".join(MODE_FLAGS[m] for m in MODES if m in modes)
            raise InputError(f"{_flag(dest)} is not used by {MODE_FLAGS[mode]} (it applies to {users})")
    if args.mrc_sample_rate is not None and not args.mrc:
        raise InputError("--mrc-sample-rate is used only with --mrc")
    if args.plot_dir is not None and args.no_plot:
        raise InputError("--plot-dir and --no-plot contradict each other")
    from experiments.cli import check_experiment_flags

    check_experiment_flags(args, mode)


def parse_routers(text: str | None) -> list[str]:
    """``--router a,b``: the names, each registered and given once."""
    if text is None:
        return []
    from sim.serving.routers import ROUTERS

    return _parse_names(text, "--router", "router", "routers", list(ROUTERS))


def parse_policies(text: str | None) -> list[str]:
    """``--policy a,b``: the names, each registered and given once."""
    if text is None:
        return []
    from sim.cache.policies import POLICIES

    return _parse_names(text, "--policy", "policy", "policies", sorted(POLICIES))


def _parse_names(text: str, flag: str, kind: str, kinds: str, valid: list[str]) -> list[str]:
    """A comma-separated list of registry names: none empty, unknown or repeated (each names a run)."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise InputError(f"{flag} {quote(text)}: an empty {kind} name; give NAME[,NAME...]")
    for i, name in enumerate(names):
        if name not in valid:
            raise InputError(f"{flag}: unknown {kind} {quote(name)}; valid {kinds}: {', '.join(valid)}")
        if name in names[:i]:
            raise InputError(f"{flag}: {quote(name)} given twice (each run is named by its {kind})")
    return names


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


def resolve_config(args: argparse.Namespace) -> Config:
    """Config file → overlays → preset → --set → dedicated flags, each layer validated, then the
    whole config once (``sim.config_rules.validate``)."""
    path = Path(args.config) if args.config else _default_config_path()
    try:
        missing = args.config and not path.is_file()
    except OSError as exc:  # a name too long, a loop of links, no permission
        raise InputError(f"--config {quote(str(path))}: {exc.strerror or exc}") from None
    if missing:
        raise InputError(f"config file not found: {path}")
    flags = [(_flag(dest), key, getattr(args, dest)) for dest, key in FLAG_KEYS.items()
             if getattr(args, dest) is not None and getattr(args, dest) is not False]
    if args.policy:
        flags.append(("--policy", "cache.policy", parse_policies(args.policy)[0]))
    if args.router:
        flags.append(("--router", "cluster.router", parse_routers(args.router)[0]))
    return load_config(path, overlays=args.calibration_profile, preset=args.preset, sets=args.sets, flags=flags,
                       mode=select_mode(args))


def check_config_for_mode(args: argparse.Namespace, config: Config, mode: str, policies: list[str]) -> None:
    """Flags and settings that only make sense together with others, judged on the resolved config."""
    from sim.cache.policies import POLICIES

    if config.workload.trace is None:
        for dest in ("workload_format", "workload_time_unit", "strict_workload_validation"):
            if getattr(args, dest) is not None and getattr(args, dest) is not False:
                raise InputError(f"{_flag(dest)} applies to a trace file; no --workload-trace is given (synthetic workload)")
    if args.allow_train_test_overlap and not any(POLICIES[p].needs_predictions for p in policies):
        raise InputError(f"--allow-train-test-overlap applies only to a learned policy (runs: {', '.join(policies)})")
    if mode in SERVING:
        from sim.cache.tiers import hbm_capacity_blocks
        from sim.serving.run import check_serving_settings

        hbm_capacity_blocks(config)  # the model's weights fit in GPU memory
        check_serving_settings(config)  # before the trace loads
    if mode == "single":
        from sim.config_rules import single_node_fits

        single_node_fits(config)
    if mode == "cluster":
        from sim.cluster.topology import Topology

        Topology.from_config(config, pd=args.pd)  # an impossible fleet is found before the trace loads


# -------------------------------------------------------------------------- outputs


@dataclass
class Outputs:
    """Every file a run will write, checked writable before it starts."""

    report_json: Path | None = None
    report_csv: Path | None = None
    requests_csv: dict[str, Path] = field(default_factory=dict)  # per policy
    plot_dir: Path | None = None  # None: no plots
    html: Path | None = None


def plot_dir(args: argparse.Namespace) -> Path:
    """Where plots go: --plot-dir, else beside --report-json, else kvsim-plots/."""
    if args.plot_dir is not None:
        return Path(args.plot_dir)
    if args.report_json:
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
              *((f"config key '{key}'", setting(config, key)) for key in PATH_KEYS if config is not None),
              ("--workload-trace", args.workload_trace if config is None else None)]
    seen: dict[Path, str] = {Path(p).resolve(): name for name, p in inputs if p}
    if outputs.plot_dir is not None:
        files.append(("--plot-dir", outputs.plot_dir))
    for flag, path in files:
        key = path.resolve()
        if key in seen:
            raise InputError(f"{flag} {quote(str(path))} is also the path of {seen[key]}")
        seen[key] = flag
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
    from trace.stats import trace_stats
    from trace.workload import load_workload, with_trace_block_size

    trace = load_workload(run.config)
    run.config = with_trace_block_size(run.config, trace)
    metrics = trace_stats(trace)
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
    from sim.report.metrics import write_requests_csv
    from sim.serving.run import admit, run_serving
    from trace.workload import load_workload, with_trace_block_size

    trace = load_workload(run.config)
    run.config = config = with_trace_block_size(run.config, trace)
    admit(trace, config)
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
                result.name = f"{policy}/{router}" if len(policies) > 1 else router
            else:
                result, requests = run_serving(trace, replace(config, **overrides), run.mode, progress=run.progress)
                if len(policies) > 1 or len(routers) > 1:
                    result.name = "/".join(([f"{run.mode}-{policy}"] if len(policies) > 1 else [])
                                           + ([router] if len(routers) > 1 else []))
            if len(policies) > 1 or len(routers) > 1:
                result.overrides = {k: v for k, v in overrides.items()
                                    if (k == "cache.policy" and len(policies) > 1)
                                    or (k == "cluster.router" and (len(routers) > 1 or run.mode == "cluster"))}
            runs.append(result)
            key = (f"{policy}/{router}" if len(policies) > 1 else router) if len(routers) > 1 else policy
            path = run.outputs.requests_csv.get(key)
            if path is not None:
                write_requests_csv(requests, path)
                run.notes.append(f"requests: {path}")
    return trace.provenance.to_dict(), runs


def run_quietly(mode: str, config: Config, policies: list[str]) -> tuple[dict, list[RunResult]]:
    """One mode's runs exactly as the command line makes them, without printing, plots or files
    (the experiments' entry point: sweeps, max-rate probes, seeds)."""
    return RUNNERS[mode](Run(mode, config, policies, Outputs(), progress=False, mrc=False))


def run_check_calibration(run: Run) -> tuple[None, list[RunResult]]:
    from sim.serving.calibration import calibration_runs, format_fits

    runs = calibration_runs(run.overlay, run.config)
    run.summary = format_fits(run.overlay, run.config, runs)
    return None, runs


RUNNERS = {"trace-stats": run_trace_stats, "cache-only": run_cache_only, "single": run_serving_mode,
           "pd": run_serving_mode, "cluster": run_serving_mode, "check-calibration": run_check_calibration}


def _summary(report: dict) -> str:
    lines = []
    trace = report.get("trace")
    if trace:
        skipped = ", ".join(f"{k}: {v}" for k, v in trace["skip_reasons"].items()) or "none"
        lines.append(f"trace {trace['path'] or trace['format']} ({trace['format']}): {trace['rows_used']:,} requests used, "
                     f"{trace['rows_skipped']:,} skipped ({skipped}); block ids: {trace['block_ids']}, "
                     f"{trace['block_tokens']} tokens a block")
    for run in report["runs"]:
        lines.append(f"[{run['name']}]")
        for key, value in run["metrics"].items():
            if key == "mrc":
                lines.append(f"  {key:<30} {value['method']} over {value['sampled_accesses']:,} accesses, "
                             f"{len(value['capacity_blocks'])} capacities (see the JSON report / plot)")
            elif isinstance(value, dict):
                if any(isinstance(v, dict) for v in value.values()):
                    continue  # per-tier counters: JSON report only
                inner = "  ".join(f"{k}={_fmt(v) if not isinstance(v, list) else f'[{len(v)} entries]'}"
                                  for k, v in value.items())
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


def prepare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Run:
    """Everything checked before any work: mode and flags, the whole config, the outputs."""
    mode = select_mode(args)
    check_flags(args, parser, mode)
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
    mode = select_mode(args)
    if mode in EXPERIMENTS:
        check_flags(args, parser, mode)
        from experiments.cli import run_experiment

        return run_experiment(args, mode)
    run = prepare(args, parser)
    runner = RUNNERS[run.mode]
    if args.max_rate or args.seeds:
        from experiments.cli import searched_runner

        runner = searched_runner(args, run.mode)
    trace, runs = runner(run)
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
                                    html_path=run.outputs.html, notes=run.notes)
    if not args.quiet:
        print(run.summary if run.summary is not None else _summary(report))
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
        sys.exit(130)
    # The process ends now, its outputs written and closed. The interpreter's last garbage collection
    # would walk every object left (numba's types and compiled-function records: ~70 ms at exit);
    # frozen, they are still freed by reference counting, and what cycles hold goes with the process.
    gc.freeze()
    sys.exit(status)
