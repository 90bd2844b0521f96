"""The kvsim command line's grammar: the argument parser, the modes, and which flags each mode uses.

``main.py`` parses with ``build_parser``, picks the mode with ``select_mode`` and refuses, before any
work, a flag the mode would ignore (``check_flags`` over the ``FLAG_MODES`` table, and a ``--set`` key over
``sim.mode_settings``' table) or a registry
name that does not exist (``parse_policies``, ``parse_routers``). Only the standard library and the
config's types load here, so ``--help`` and usage errors stay quick.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import get_args, get_type_hints

from sim.config_workload import WorkloadConfig
from sim.config_yaml import set_keys
from sim.errors import QUOTE_LIMIT, InputError, one_line, quote
from sim.mode_settings import (
    ALL,
    CLUSTER_PD,
    EXPERIMENTS,
    MODE_FLAGS,
    MODES,
    NEVER_READ,
    SERVING,
    SIMULATING,
    WITH_WORKLOAD,
    setting_users,
)

MOONCAKE = "../shared/data/traces/mooncake_conversation.jsonl"
AZURE = "trace/data/azure_conv_2023.csv"

EXAMPLES = f"""\
examples:
  # statistics and the reuse ceiling of a trace (no simulation)
  python main.py --trace-stats --workload-trace {AZURE} --report-json out/stats.json

  # a synthetic multi-turn chat workload instead of a trace file
  python main.py --trace-stats --set workload.synthetic.kind=multi-turn --preset smoke

  # which eviction policy? several policies over one trace beside belady, the offline optimum (exact MIN from
  # the trace's future): one tier of 5,000 blocks (Mooncake's own 512-token blocks)
  python main.py --cache-only --workload-trace {MOONCAKE} \\
      --policy lru,arc,s3fifo,sieve,belady --capacity-blocks 5000 --report-json out/policies.json

  # how big a tier? the LRU hit ratio at every capacity in one pass (--mrc), beside the hit ratio per tier of
  # HBM (from GPU memory), 512 GiB of DRAM and config.yaml's SSD
  python main.py --cache-only --mrc --policy lru --workload-trace {MOONCAKE} \\
      --set cache.tiers.dram.capacity_gib=512 --report-json out/tiers.json

  # where does the time to first token go? prefill/decode disaggregation on the bundled Azure trace: the
  # TTFT breakdown (queue, kv_load, prefill, kv_transfer, first_decode) per run, and per request in the CSV
  python main.py --pd --workload-trace {AZURE} --set pd.num_prefill=2 \\
      --set pd.num_decode=2 --report-json out/pd.json --requests-csv out/pd_requests.csv

  # which prefill:decode split, and how fast a KV link? 1:3, 2:2, 3:1 x 25/100/400 Gb/s: goodput under an SLO
  python main.py --sweep experiments/examples/sweep_pd_split.yaml --workload-limit 2000 --report-csv out/pd_split.csv

  # override any config key (validated like config.yaml; unknown keys are errors):
  # here Mooncake's 512-token blocks are split into 64-token ones
  python main.py --trace-stats --workload-trace {MOONCAKE} \\
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

exit status: 0 success, 2 bad usage or input, 130 interrupted, 143 terminated (SIGTERM), 141 output reader gone, 1 internal error
"""

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


def path_argument(text: str) -> Path:
    """argparse ``type`` of a tool's file argument: ``type=Path`` read an empty one as '.', the working folder, so
    ``--out ''`` was refused as "--out '.': is a directory" and an empty table as ".: a directory, not a table"."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path")
    return Path(text)


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors in one line (exit 2), as every other error of kvsim's commands, and a flag that takes
    one value refused when given twice (argparse keeps the last: ``--policy lru --policy fifo`` ran fifo alone, two
    ``--report-json`` wrote the second only). No flag is taken from a prefix of its name: ``--pol lru --policy arc``
    got past the check of repeats and ran arc alone."""

    def __init__(self, *args, name: str | None = None, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.name = name or self.prog  # what its errors start with: the command's other errors' (not "python -m ...")

    _argv: list[str] = []

    def error(self, message: str) -> None:  # exit 2, as argparse does, in one line like every other error
        if len(message) > 2 * QUOTE_LIMIT:  # argparse quotes the offending argument whole
            message = message[: 2 * QUOTE_LIMIT] + "..."
        self.exit(2, f"{self.name}: error: {one_line(message)}{self._dash_value_hint(message)} (see --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        self._argv = sys.argv[1:] if args is None else [str(a) for a in args]
        self._refuse_repeated(self._argv)
        return super().parse_known_args(args, namespace)

    def _dash_value_hint(self, message: str) -> str:
        """argparse reads a value that starts with '-' (``--range -0.1:0.5``) as a flag and says only "expected one
        argument": name the value and the spelling that passes it."""
        spellings = message.removeprefix("argument ").partition(":")[0].split("/")  # (-o/--out: either given)
        flag = next((spelling for spelling in spellings if spelling in self._argv), None)
        if not message.endswith("expected one argument") or flag is None:
            return ""
        after = self._argv[self._argv.index(flag) + 1:]
        if not after or not after[0].startswith("-") or after[0] in self._option_string_actions:
            return ""
        return f" ({quote(after[0])} was read as a flag: write {flag}={after[0]})"

    def distinct(self, flag: str, items: list) -> list:
        """``items``, the values of the comma list ``flag``, refused when one is named twice: each would run twice,
        unsaid (``--policies lru,lru`` timed LRU twice; a repeated workload of bench_learned, a minute each)."""
        seen: set = set()
        for item in items:
            if item in seen:
                self.error(f"{flag} names {quote(item) if isinstance(item, str) else item} twice: give each once")
            seen.add(item)
        return items

    def _refuse_repeated(self, argv: list[str]) -> None:
        once = {option: action for action in self._actions
                if action.option_strings and isinstance(action, argparse._StoreAction) for option in action.option_strings}
        given: dict[str, str] = {}
        for token in argv:
            if token == "--":
                break
            option = token.partition("=")[0]
            action = once.get(option)
            if action is None:
                continue
            if action.dest in given:
                first = "" if given[action.dest] == option else f" (first as {given[action.dest]})"
                self.error(f"{option} is given twice{first}: give it once"
                           + (", with a comma list" if option in ("--policy", "--router") else ""))
            given[action.dest] = option


class _SpecAction(argparse.Action):
    """``python -m experiments.sweep SPEC.yaml``: the positional spec is ``--sweep SPEC.yaml``, given once."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if values is None:  # no positional: argparse hands over the default
            return
        if namespace.sweep is not None:
            parser.error(f"the sweep spec is given twice: {quote(namespace.sweep)} and {quote(values)}")
        namespace.sweep = values


class _SweepModuleParser(OneLineParser):
    """``python -m experiments.sweep SPEC.yaml [flags]``: main.py's flags, the spec a positional argument anywhere
    among them (it was the first argument or nothing: flags first read the spec as an unknown argument, and no
    spec at all ran the single-node simulation)."""

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        if parsed.sweep is None:
            self.error("a sweep spec is required: python -m experiments.sweep SPEC.yaml [flags]")
        others = [f"--{name.replace('_', '-')}" for name in MODE_SWITCHES if name != "sweep" and getattr(parsed, name)]
        if others:  # the positional spec is not in --sweep's group of exclusive modes: checked here
            self.error(f"a sweep spec is not allowed with {others[0]} (a sweep's mode is the spec's 'mode:')")
        return parsed, extras


def _workload_choices(key: str) -> tuple[str, ...]:
    """The values config key ``workload.<key>`` (a ``Literal``, maybe ``| None``) takes: one list for it and its flag."""
    hint = get_type_hints(WorkloadConfig)[key]
    return tuple(value for arg in get_args(hint) for value in (get_args(arg) or (arg,)) if isinstance(value, str))


def build_parser(sweep_module: bool = False) -> argparse.ArgumentParser:
    """main.py's parser; ``sweep_module``: ``python -m experiments.sweep``'s, the same flags and a positional spec."""
    p = (_SweepModuleParser if sweep_module else OneLineParser)(
        prog="python -m experiments.sweep" if sweep_module else "kvsim", name="kvsim",
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
    mode.add_argument("--plan", metavar="PLAN.yaml",
                      help="least-cost configuration that meets a target: a hit ratio, or TTFT/TPOT SLOs at a rate "
                           "(README: Capacity planning; experiments/examples/plan_*.yaml)")
    if sweep_module:
        p.add_argument("spec", nargs="?", metavar="SPEC.yaml", action=_SpecAction, help="the sweep spec (as --sweep)")

    cfg = p.add_argument_group("configuration")
    cfg.add_argument("--config", metavar="PATH", help="YAML config (default: config.yaml here, else next to main.py)")
    cfg.add_argument("--preset", metavar="NAME",  # (any the config defines: a choices list refused a file's own)
                     help="scale the run: smoke, dev, prod-eval (presets in config.yaml), or a preset of --config's")
    cfg.add_argument("--calibration-profile", metavar="PATH", action="append", default=[],
                     help="YAML overlay merged over the config; repeatable, applied in order")
    cfg.add_argument("--set", metavar="KEY=VALUE", dest="sets", action="append", default=[],
                     help="override one config key, e.g. --set cache.tiers.dram.capacity_gib=64; repeatable")
    cfg.add_argument("--seed", type=int, help="seed of every random choice, >= 0 (config key: seed; default 0)")

    wl = p.add_argument_group("workload")
    wl.add_argument("--workload-trace", metavar="PATH", help="trace file (Azure, BurstGPT, Mooncake, Splitwise, LLMServingSim)")
    wl.add_argument("--workload-format", choices=_workload_choices("format"),
                    help="trace format (default auto: sniffed from the header)")
    wl.add_argument("--workload-limit", type=int, metavar="N",
                    help="use only the first N valid requests of a trace (its first N valid rows in file order: of a file "
                         "out of time order, not the N earliest), or draw N of a synthetic workload, N >= 1 "
                         "(default: all)")
    wl.add_argument("--workload-time-unit", choices=_workload_choices("time_unit"),
                    help="unit of numeric timestamps (default: the format's own: "
                         "burstgpt and splitwise s, mooncake ms, llmservingsim ns; azure's are datetimes)")
    wl.add_argument("--strict-workload-validation", action="store_true",
                    help="the first bad row is an error (default: bad rows are counted and skipped)")
    wl.add_argument("--workload-cache", metavar="PATH",
                    help="keep the loaded trace in this binary file; later runs map it into memory while the trace file "
                         "and the loader settings are unchanged, else rebuild it (config key: workload.cache)")

    cache = p.add_argument_group("cache")
    cache.add_argument("--policy", metavar="NAME[,NAME...]",
                       help="eviction policy; several = one run each, same trace (default: cache.policy, lru)")
    cache.add_argument("--router", metavar="NAME[,NAME...]",
                       help="single/cluster modes: round-robin, least-loaded, session-affinity, prefix-aware or "
                            "precise-prefix; several = one run each, named by it "
                            "(default: cluster.router, prefix-aware)")
    cache.add_argument("--capacity-blocks", type=int, metavar="N",
                       help="cache-only: one tier of N blocks (default: the config's tiers, HBM from GPU memory)")
    cache.add_argument("--allow-train-test-overlap", action="store_true",
                       help="let --policy learned be judged on requests its model was trained on (off: exit 2)")
    cache.add_argument("--mrc", action="store_true",
                       help="add the LRU miss-ratio curve (hit ratio at every capacity, one pass) to the "
                            "--policy runs (without --policy: the curve alone); implies --cache-only")
    cache.add_argument("--mrc-sample-rate", type=float, metavar="R",
                       help="SHARDS sampling rate for --mrc, e.g. 0.01 for very long traces (default 1 = exact)")

    exp = p.add_argument_group("experiments")
    exp.add_argument("--rate-scale", type=float, metavar="X",
                     help="divide inter-arrival times by X (workload.rate_scale; default 1)")
    exp.add_argument("--max-rate", action="store_true",
                     help="highest rate scale at which slo.attainment (default 0.9) of "
                     "requests meet slo.ttft_s/slo.tpot_s (seconds): doubling, then bisection to 1%%")
    exp.add_argument("--seeds", type=int, metavar="N", help="repeat with seeds seed..seed+N-1: means and 95%% intervals")
    exp.add_argument("--jobs", type=int, metavar="N", help="--sweep/--plan: parallel points (default: the core count)")
    exp.add_argument("--backend", choices=["local", "ray"], help="--sweep/--plan: process pool (default) or Ray")
    exp.add_argument("--ray-address", metavar="ADDR",
                     help="--backend ray: an existing cluster, HOST:PORT of its head (GCS port, 6379 by default), "
                          "ray://HOST:PORT (Ray Client) or auto (the one 'ray start' left here); refused at once if "
                          "nothing answers there (default: RAY_ADDRESS, else start one)")
    exp.add_argument("--resume", action="store_true",
                     help="--sweep: run only the points missing from its journal (<report>.journal.jsonl beside "
                          "--report-json/--report-csv, else <spec>.journal.jsonl here)")

    out = p.add_argument_group("output")
    out.add_argument("--report-json", metavar="PATH", help="write the JSON report here")
    out.add_argument("--report-csv", metavar="PATH", help="write one CSV row per run here")
    out.add_argument("--requests-csv", metavar="PATH", help="serving modes: one CSV row per request (times, breakdown)")
    out.add_argument("--plot-dir", metavar="DIR", help="where PNG plots go (default: beside --report-json, else kvsim-plots/)")
    out.add_argument("--html", metavar="PATH", help="one self-contained HTML report (tables, plots, config)")
    out.add_argument("--no-plot", action="store_true", help="skip plots")
    out.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p


def flag_name(dest: str) -> str:
    return "--" + dest.replace("_", "-") if dest != "sets" else "--set"


# Flags that name a file or directory (read or written).
PATH_FLAGS = ("config", "calibration_profile", "workload_trace", "workload_cache", "sweep", "plan", "check_calibration",
              "report_json", "report_csv", "requests_csv", "plot_dir", "html")


def check_paths_given(args: argparse.Namespace) -> None:
    """No path flag is empty: an empty --sweep, --plan, --check-calibration or --config read as "not given" (another mode
    ran, or the default config, exit 0), and an empty --plot-dir or --requests-csv as the working directory. A path
    starting with ``~`` is in the home folder, as a config key's is (``sim.config_yaml.expand_home``): no shell expands
    ``--report-json=~/r.json``, which wrote a folder named ``~`` in the working directory, while
    ``--workload-trace=~/t.csv`` (a config key's flag) read the home folder's file."""
    from sim.config_yaml import expand_home

    for dest in PATH_FLAGS:
        value = getattr(args, dest)
        for path in value if isinstance(value, list) else [value]:
            if path is not None and not path.strip():
                raise InputError(f"{flag_name(dest)}: empty path")
        if isinstance(value, list):
            setattr(args, dest, [expand_home(path) for path in value])
        elif value is not None:
            setattr(args, dest, expand_home(value))


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


# What to do instead, where a flag has an equivalent in the mode that does not take it
FLAG_HINTS = {("policy", "sweep"): "make cache.policy an axis of the sweep",
              ("policy", "plan"): "set cache.policy in the plan file",
              # (each point is a whole run: one file of requests per point was never written)
              ("requests_csv", "sweep"): "run the point you want alone, its axis values as --set, to write its requests",
              ("requests_csv", "plan"): "run the candidate you want alone, its settings as --set, to write its requests"}


def check_flags(args: argparse.Namespace, parser: argparse.ArgumentParser, mode: str) -> None:
    """Every flag given is used by ``mode`` (the ``FLAG_MODES`` table), and the flags agree with each other (the
    experiment flags' rules among themselves are ``experiments.cli.check_experiment_flags``, which main.py calls next)."""
    for dest, modes in FLAG_MODES.items():
        if getattr(args, dest) != parser.get_default(dest) and mode not in modes:
            users = ", ".join(MODE_FLAGS[m] for m in MODES if m in modes)
            hint = FLAG_HINTS.get((dest, mode))
            raise InputError(f"{flag_name(dest)} is not used by {MODE_FLAGS[mode]} (it applies to {users})"
                             + (f": {hint}" if hint else ""))
    keys = [key for setting in args.sets for key in set_keys(setting)]
    for key in keys:
        if key in NEVER_READ:
            raise InputError(f"--set {key}: no mode reads it ({NEVER_READ[key]})")
    if mode not in EXPERIMENTS:
        here = CLUSTER_PD if mode == "cluster" and args.pd else mode
        for key in keys:
            users = setting_users(key, here)
            if users is not None:
                raise InputError(f"--set {key}: not used by {MODE_FLAGS.get(here, f'--{here}')} (it applies to {users})")
    if args.mrc_sample_rate is not None and not args.mrc:
        raise InputError("--mrc-sample-rate is used only with --mrc")
    if args.plot_dir is not None and args.no_plot:
        raise InputError("--plot-dir and --no-plot contradict each other")


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
    from sim.cache.policies import POLICIES, canonical_policy

    names = [canonical_policy(name.strip()) or name for name in text.split(",")]  # any letter case: LRU is lru
    return _parse_names(",".join(names), "--policy", "policy", "policies", sorted(POLICIES))


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
