"""Run every config key at the edges of its domain: each numeric key at the smallest and largest values it accepts and
just past them (0, -1, 1e-9, 1e6, 1e12, MAX_CONFIG_FLOAT / 2, 2**31, the 64-bit limit ...), each choice of a Literal,
a registry (models, GPUs, policies, routers) or a bool, in the smoke preset of every mode that reads the key (single
node; PD and cluster for their sections; the cache-only replay for cache keys). The keys come from walking the Config
dataclasses (sim.config), their edges from each field's declared Domain, so a new key is probed by declaring
it. A run must exit 0 with a consistent report (tests/report_invariants.py: finite, ratios in [0, 1], times >= 0) or
exit 2 with one line naming a key; anything else (a traceback, exit 1, no answer within --timeout) is printed as a
FINDING with the command that reproduces it. Slow: ~1,500 runs at a few seconds each (--only picks keys).

    python tools/edge_runs.py --jobs 2 --out /tmp/edges.jsonl       # every key
    python tools/edge_runs.py --only serving.block_size -v            # keys whose dotted name contains this
    python tools/edge_runs.py --pairs                                 # the interacting pairs (PAIRS) instead

Each run is main.main in a forked child of a process that has imported kvsim once (a subprocess costs seconds of
imports a run), under an address-space limit (--memory-gib), killed once it has used --timeout seconds of CPU (or
waited 4 x --timeout with its CPU idle): CPU time, not wall time, so a run the machine's other work starves is not
a finding; a refusal is judged on its CPU seconds too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from anywhere: the repository's packages
    sys.path[:0] = [str(ROOT)]

import sim.script_start  # noqa: E402, F401 (first: a stop before the command starts waits for it: one line)

# isort: split

import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import resource  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
import typing  # noqa: E402
from contextlib import redirect_stderr, redirect_stdout  # noqa: E402
from typing import Any, Iterator, Literal  # noqa: E402

MOONCAKE = "tests/samples/mooncake_synthetic.jsonl"  # a trace with block ids (workload.block_mismatch reads them)
MODE_ARGS = {"single": [], "pd": ["--pd"], "cluster": ["--cluster"], "cluster --pd": ["--cluster", "--pd"],
             "cache-only": ["--cache-only"]}

# What a key needs beside it to be read at all (sim.mode_settings, sim.mode_settings_rules: a key the run would leave
# unread is refused, whatever its value): settings and flags, by the key's dotted prefix.
CONTEXT: dict[str, list[str]] = {
    "cache.selective_write_depth": ["--set", "cache.admission=selective_write"],
    "cache.mrc_sample_rate": ["--mrc"],
    "cache.insert_outputs": [],
    "cache.tiers.eic.": ["--set", "cache.tiers.eic.capacity_gib=64"],
    "serving.all_reduce": ["--set", "serving.tensor_parallel_size=2"],
    "hardware.gpu_link_gbps": ["--set", "serving.tensor_parallel_size=2"],
    "hardware.gpu_link_latency_us": ["--set", "serving.tensor_parallel_size=2"],
    "serving.enable_expert_parallel": ["--set", "model=qwen3-30b-a3b", "--set", "serving.data_parallel_size=2"],
    "serving.data_parallel_size": ["--set", "model=qwen3-30b-a3b"],
    "serving.disable_hybrid_kv_cache_manager": ["--set", "model=gpt-oss-20b"],
    "serving.language_model_only": ["--set", "model=gemma-3-4b"],
    "cluster.uplink_gbps": ["--set", "cluster.num_racks=2"],
    "cluster.oversubscription": ["--set", "cluster.num_racks=2"],
    "cluster.uplink_latency_us": ["--set", "cluster.num_racks=2"],
    "pd.router": ["--set", "pd.num_prefill=2"],
    "slo.attainment": ["--max-rate", "--set", "slo.ttft_s=1"],
    "workload.format": ["--workload-trace", MOONCAKE],
    "workload.time_unit": ["--workload-trace", MOONCAKE],
    "workload.strict_validation": ["--workload-trace", MOONCAKE],
    "workload.block_mismatch": ["--workload-trace", MOONCAKE],
    "workload.arrivals.rate_rps": ["--set", "workload.arrivals.process=poisson"],
    "workload.arrivals.cv": ["--set", "workload.arrivals.process=gamma"],
    "workload.synthetic.num_sessions": ["--set", "workload.synthetic.kind=agentic"],
    "workload.synthetic.num_prefixes": ["--set", "workload.synthetic.kind=system-prompt"],
    "workload.synthetic.prefix_tokens": ["--set", "workload.synthetic.kind=system-prompt"],
    "workload.synthetic.zipf_alpha": ["--set", "workload.synthetic.kind=rag"],
    "workload.synthetic.num_documents": ["--set", "workload.synthetic.kind=rag"],
    "workload.synthetic.document_tokens": ["--set", "workload.synthetic.kind=rag"],
    "workload.synthetic.documents_per_request": ["--set", "workload.synthetic.kind=rag"],
}
# Keys not probed: paths (bad-path rounds cover them), the learned policy's (it needs a trained model), presets.
SKIPPED = ("presets", "workload.trace", "workload.cache", "cache.learned_model", "cache.allow_train_test_overlap",
           "compute.profile", "compute.collectives", "network.lookup")

# Pairs the cross-field rules relate (sim.config_rules, sim.mode_settings_rules): each (mode, settings) run as is.
PAIRS: list[tuple[str, list[str]]] = [
    # block size x the batch's tokens and the longest request
    ("single", ["serving.block_size=1", "serving.max_num_batched_tokens=1"]),
    ("single", ["serving.block_size=1000000", "serving.max_model_len=2"]),
    ("single", ["serving.block_size=131072", "serving.num_gpu_blocks=1"]),
    ("single", ["serving.max_num_seqs=1", "serving.max_num_batched_tokens=1"]),
    ("single", ["serving.max_num_seqs=1000000", "serving.max_num_batched_tokens=1000000"]),
    ("single", ["serving.max_model_len=2", "workload.synthetic.input_tokens_mean=1"]),
    ("single", ["serving.max_model_len=2", "workload.synthetic.output_tokens_mean=1000000"]),
    ("single", ["workload.max_input_tokens=1", "workload.max_request_tokens=1"]),
    ("single", ["workload.max_request_tokens=2", "workload.synthetic.input_tokens_mean=1",
                "workload.synthetic.output_tokens_mean=1"]),
    # TP x heads x the node
    ("single", ["serving.tensor_parallel_size=8", "serving.num_instances=1"]),
    ("single", ["serving.tensor_parallel_size=1024", "hardware.gpus_per_node=1024", "serving.num_instances=1"]),
    ("single", ["hardware.gpus_per_node=1024", "serving.num_instances=1024"]),
    ("pd", ["pd.prefill_tensor_parallel_size=8", "pd.decode_tensor_parallel_size=1", "pd.num_prefill=1"]),
    ("pd", ["hardware.gpus_per_node=1024", "pd.num_prefill=512", "pd.num_decode=512"]),
    ("cluster --pd", ["pd.num_prefill=1", "pd.num_decode=1", "cluster.nodes_per_rack=1", "hardware.gpus_per_node=2"]),
    ("cluster --pd", ["pd.num_prefill=1024", "pd.num_decode=1024"]),
    ("cluster", ["cluster.num_racks=100000", "cluster.nodes_per_rack=1024"]),
    ("cluster", ["cluster.num_racks=2", "cluster.nodes_per_rack=1", "hardware.gpus_per_node=1"]),
    # tier capacities together
    ("single", ["cache.tiers.hbm.capacity_gib=1e-9", "cache.tiers.dram.capacity_gib=0", "cache.tiers.ssd.capacity_gib=0"]),
    ("single", ["cache.tiers.dram.capacity_gib=1073741824", "cache.tiers.ssd.capacity_gib=1073741824"]),
    ("cluster", ["cache.tiers.eic.capacity_gib=1073741824", "cache.tiers.dram.capacity_gib=1073741824"]),
    ("single", ["serving.num_gpu_blocks=1", "cache.tiers.dram.capacity_gib=1e-9"]),
    ("single", ["serving.gpu_memory_utilization=1e-9", "cache.tiers.dram.capacity_gib=0"]),
    ("cache-only", ["cache.capacity_blocks=1", "cache.prefetch=session"]),
    # rates and spans
    ("single", ["workload.synthetic.rate_rps=1e-9", "workload.rate_scale=1e-9"]),
    ("single", ["workload.synthetic.rate_rps=1e12", "workload.rate_scale=1e12"]),
    ("single", ["workload.arrivals.process=gamma", "workload.arrivals.cv=1e-100", "workload.arrivals.rate_rps=1e12"]),
    ("single", ["workload.arrivals.process=gamma", "workload.arrivals.cv=9.9e99", "workload.arrivals.rate_rps=1e-9"]),
    ("single", ["workload.synthetic.think_time_median_s=1e-9", "workload.synthetic.think_time_sigma=1e6"]),
    ("single", ["workload.synthetic.turns_mean=4096", "workload.synthetic.turns_concentration=1e12"]),
    ("single", ["workload.range_start=0.999999", "workload.range_end=1"]),
    # compute floors and efficiencies together
    ("single", ["compute.flops_efficiency=0.001", "compute.bandwidth_efficiency=0.001",
                "compute.attention_efficiency=0.001"]),
    ("single", ["compute.gemm_floor_us=3600000000", "compute.attention_floor_us=3600000000"]),
    ("pd", ["network.bandwidth_gbps=0.001", "pd.transfer=layerwise"]),
    ("pd", ["network.latency_us=3600000000", "pd.transfer=pull"]),
    ("cluster", ["cluster.num_racks=2", "cluster.uplink_gbps=0.001", "cluster.uplink_latency_us=3600000000"]),
]


# ----------------------------------------------------------------------------------- keys and their edge values


def config_keys() -> Iterator[tuple[str, Any, Any, Any]]:
    """(dotted key, annotation, Domain or None, default) of every leaf of the Config dataclasses."""
    from sim.config import Config

    def walk(cls: type, prefix: str) -> Iterator[tuple[str, Any, Any, Any]]:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp, path = hints[f.name], prefix + f.name
            if isinstance(tp, type) and dataclasses.is_dataclass(tp):
                yield from walk(tp, path + ".")
            else:
                default = f.default if f.default is not dataclasses.MISSING else None
                yield path, tp, f.metadata.get("domain"), default

    yield from walk(Config, "")


def _members(tp: Any) -> tuple[list[Any], bool]:
    """The non-None members of annotation ``tp`` and whether it accepts None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        return [a for a in args if a is not type(None)], type(None) in args
    return [tp], False


def edge_values(tp: Any, dom: Any) -> list[Any]:
    """The values probed for a key of annotation ``tp`` and Domain ``dom``: its edges and just past them."""
    from sim.config_fields import INT64_MAX, MAX_CONFIG_FLOAT

    members, nullable = _members(tp)
    out: list[Any] = [None] if nullable else []
    base = members[0]
    if typing.get_origin(base) is Literal:
        return out + list(typing.get_args(base))
    if base is bool:
        return [True, False]
    if dom is not None and dom.names is not None:
        return out + dom.registry()
    lo = dom and (dom.ge if dom.ge is not None else dom.gt)
    hi = dom and (dom.le if dom.le is not None else dom.lt)
    if base is int:
        values = {0, -1}
        if lo is not None:
            first = int(lo) + (dom.ge is None)
            values |= {first - 1, first}
        if hi is not None:
            last = int(hi) - (dom.le is None)
            values |= {last, last + 1}
        else:
            values |= {10**6, 10**12, 2**31, INT64_MAX, INT64_MAX + 1}
        return out + sorted(values)
    if base is float:
        values = {0.0, -1.0}
        if lo is not None:
            lo = float(lo)
            values |= {lo, lo * (1 - 1e-9) if lo else -1e-9}
            if lo == 0:
                values |= {1e-300, 1e-9}
        if hi is not None:
            hi = float(hi)
            values |= {hi, hi * (1 + 1e-9)} if dom.le is not None else {hi, hi * (1 - 1e-9)}
        else:
            values |= {1e6, 1e12, MAX_CONFIG_FLOAT / 2, MAX_CONFIG_FLOAT}
        return out + sorted(values)
    return out  # a plain string (a path): not probed


def modes_of(key: str) -> list[str]:
    """The smoke runs a key is probed in: the single-node mode, and PD, cluster or cache-only where the key belongs to
    them (its section), each only if that mode reads the key (sim.mode_settings.setting_users)."""
    from sim.mode_settings import setting_users

    wanted = ["single"]
    if key.startswith(("pd.", "network.")):
        wanted += ["pd", "cluster --pd"]
    if key.startswith(("cluster.", "network.", "hardware.", "cache.tiers.eic.", "pd.")):
        wanted.append("cluster")
    if key.startswith("cache."):
        wanted.append("cache-only")
    out = []
    for mode in wanted:
        if setting_users(key, mode) is None:
            out.append(mode)
    return out


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def context(key: str) -> list[str]:
    for prefix, extra in CONTEXT.items():
        if key == prefix or (prefix.endswith(".") and key.startswith(prefix)):
            return extra
    return []


def jobs(only: str | None) -> list[dict[str, Any]]:
    """Every (key, value, mode) run."""
    out = []
    for key, tp, dom, _default in config_keys():
        if key in SKIPPED or (only and only not in key):
            continue
        values = edge_values(tp, dom)
        if not values:
            continue
        for mode in modes_of(key):
            if dom is not None and dom.names == "sim.specs:known_models" and mode != "single":
                continue
            for value in values:
                if mode == "cache-only" and "--mrc" not in context(key) and key == "cache.mrc_sample_rate":
                    continue
                argv = [*MODE_ARGS[mode], "--preset", "smoke", *context(key), "--set", f"{key}={_yaml(value)}"]
                out.append({"key": key, "value": _yaml(value), "mode": mode, "argv": argv})
    return out


def pair_jobs() -> list[dict[str, Any]]:
    return [{"key": " x ".join(s.split("=")[0] for s in sets), "value": " ".join(sets), "mode": mode,
             "argv": [*MODE_ARGS[mode], "--preset", "smoke", *[a for s in sets for a in ("--set", s)]]}
            for mode, sets in PAIRS]


# ----------------------------------------------------------------------------------------------------- running


def _child(argv: list[str], out: str, memory_gib: float) -> None:
    """Run main.main(argv) here (a forked child) and write {status, err, report} to ``out``. Forked with the stops
    held (``run_all``), it holds them until main.main's command, which takes one that came meanwhile (a process
    group's Ctrl-C or SIGTERM) as any other: with the tool's handlers, raised here, it printed a traceback."""
    import main
    from experiments.runner import STOP_SIGNALS
    from sim.command import hold_stops_until_command

    signal.signal(signal.SIGINT, signal.default_int_handler)  # (the command's own go in as it starts)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    hold_stops_until_command(STOP_SIGNALS)

    limit = int(memory_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    err, sink = io.StringIO(), io.StringIO()
    report_path = out + ".report.json"
    with redirect_stderr(err), redirect_stdout(sink):
        try:
            status = main.main([*argv, "--quiet", "--no-plot", "--report-json", report_path])
        except BaseException as exc:  # noqa: BLE001 - escaping main.main is the finding
            import traceback

            status = 1
            err.write("Traceback (escaped main.main)\n" + traceback.format_exc() + repr(exc))
    report = None
    if status == 0 and os.path.exists(report_path):
        report = json.loads(Path(report_path).read_text())
    if os.path.exists(report_path):  # (the parent removes ``out``: nothing of a run is left in its folder)
        os.remove(report_path)
    used = resource.getrusage(resource.RUSAGE_SELF)  # (a forked child's usage starts at 0)
    Path(out).write_text(json.dumps({"status": status, "err": err.getvalue(), "report": report,
                                     "cpu_seconds": used.ru_utime + used.ru_stime}))
    os._exit(0)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a running process has used (Linux /proc), or None where unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def judge(job: dict[str, Any], status: int | None, err: str, report: dict | None, seconds: float,
          timeout: float) -> str | None:
    """What is wrong with a run's outcome (None: exit 0 with a consistent report, or exit 2 in one line naming a key
    of the run, quickly)."""
    from tests.report_invariants import check_report
    from tests.run_outcome import judge as judge_outcome

    if status is None:
        return f"no answer within {timeout:.0f} s of CPU (or {4 * timeout:.0f} s idle)"
    if status == 2:
        lines = err.strip().splitlines()
        if len(lines) != 1 or not lines[0].startswith("kvsim: error:"):
            return "exit 2 without one 'kvsim: error:' line: " + " | ".join(lines)[:300]
        keys = [k.split("=")[0] for a in job["argv"] for k in [a] if "=" in a and not a.startswith("--")]
        named = any(k in lines[0] or k.rsplit(".", 1)[-1] in lines[0] for k in keys) or "--" in lines[0]
        if not named:
            return "exit 2 naming no key given: " + lines[0][:300]
        if seconds > 10:
            return f"refused after {seconds:.0f} s of CPU: " + lines[0][:200]
        return None
    problem = judge_outcome(status, err, report, job["argv"])
    if problem:
        return problem
    bad = check_report(report) if report else []
    return "; ".join(bad)[:600] if bad else None


def run_all(todo: list[dict[str, Any]], workers: int, timeout: float, memory_gib: float, out_path: Path | None,
            verbose: bool) -> int:
    """Run ``todo`` with ``workers`` children at a time; print findings; return their count."""
    from experiments.runner import stops_held_while_forking
    from sim.errors import InputError

    context_ = multiprocessing.get_context("fork")
    pending, running, findings = list(reversed(todo)), [], 0
    tmp = tempfile.mkdtemp(prefix="kvsim-edges-")
    if out_path:  # check_writable took a folder still to be made (as kvsim's outputs make theirs)
        out_path.parent.mkdir(parents=True, exist_ok=True)
    sink = out_path.open("a") if out_path else None
    counter = 0
    try:
        while pending or running:
            while pending and len(running) < workers:
                job = pending.pop()
                counter += 1
                out = f"{tmp}/{counter}.json"
                proc = context_.Process(target=_child, args=(job["argv"], out, memory_gib))
                with stops_held_while_forking():  # (the child holds them on: ``_child``)
                    proc.start()
                    running.append((proc, job, out, time.perf_counter()))  # (before a stop held meanwhile is raised)
            time.sleep(0.05)
            for entry in list(running):
                proc, job, out, start = entry
                wall = time.perf_counter() - start
                cpu = _cpu_seconds(proc.pid) if proc.is_alive() else None
                # given up once it has used --timeout seconds of CPU (wall time alone would blame a run the other
                # work on the machine starved), or waited 4x that with the CPU idle (a deadlock uses none)
                if proc.is_alive() and wall < 4 * timeout and (cpu if cpu is not None else wall) < timeout:
                    continue
                killed = proc.is_alive()
                if killed:
                    proc.kill()
                proc.join()
                running.remove(entry)
                status, err, report, seconds = None, "", None, cpu if cpu is not None else wall
                if os.path.exists(out):
                    result = json.loads(Path(out).read_text())
                    status, err, report = result["status"], result["err"], result["report"]
                    seconds = result["cpu_seconds"]
                    os.remove(out)
                elif not killed:
                    status, err = 1, f"child died (exit code {proc.exitcode}) without a result"
                problem = judge(job, status, err, report, seconds, timeout)
                findings += bool(problem)
                line = "python main.py " + shlex.join(job["argv"])
                record = {**{k: job[k] for k in ("key", "value", "mode")}, "status": status,
                          "cpu_seconds": round(seconds, 2), "problem": problem,
                          "message": err.strip().splitlines()[-1][:300] if err.strip() else "", "command": line}
                if sink:
                    try:
                        sink.write(json.dumps(record) + "\n")
                        sink.flush()
                    except OSError as exc:  # a full disk or /dev/full: found only as it is written (a traceback)
                        raise InputError(f"--out {out_path}: cannot write: {exc.strerror or exc}") from None
                if problem:
                    print(f"FINDING {job['key']}={job['value']} ({job['mode']}): {problem}\n    {line}", flush=True)
                elif verbose:
                    print(f"ok {job['key']}={job['value']} ({job['mode']}) exit {status} {seconds:.1f} s CPU",
                          flush=True)
    finally:
        try:  # (a stop: the children still running end before their folder goes)
            _end_children([proc for proc, *_ in running])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # (a child killed at --timeout leaves its report behind)
            if sink:
                with contextlib.suppress(OSError):  # (every record was flushed as written: what is left is a write
                    sink.close()  # that failed, named above, which the close would raise again in its place)
    return findings


CHILDREN_GRACE_S = 3.0  # a stopped tool's wait for its children to end on their own before it kills them


def _end_children(procs: list) -> None:
    """End the children a stopped tool leaves running, so that none outlives it (a SIGTERM sent to the tool alone
    left them running their jobs, orphaned) and its temporary folder goes after them (a child writes its result
    there as it ends: left behind before, one ``kvsim-edges-*`` folder a stop). Those a process group's stop reached
    end on their own within the grace (each answers it in its own command); the rest are killed, as an interrupted
    sweep's workers are (``experiments.runner._stop``): their results are not wanted."""
    end = time.monotonic() + CHILDREN_GRACE_S if procs else 0.0  # (none after a whole run)
    for proc in procs:
        proc.join(max(0.0, end - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()


def _done_commands(path: Path) -> set[str]:
    """The commands of the runs ``path`` (an --out file) holds, for --resume; a line that is not such a run's record
    is refused naming it (it was a JSONDecodeError or KeyError traceback, exit 1)."""
    from sim.errors import InputError

    done = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--resume: cannot read --out {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            done.add(json.loads(line)["command"])
        except (ValueError, TypeError, KeyError):
            raise InputError(f"--resume: {path} line {number} is not a run's record (one JSON object with its "
                             f"'command', as --out writes): {line[:60]!r}") from None
    return done


def main(argv: list[str] | None = None) -> int:
    from sim.cli import OneLineParser, path_argument  # one-line errors (exit 2), as every other tool's

    parser = OneLineParser(prog="python tools/edge_runs.py", name="edge_runs.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument("--timeout", type=float, default=60, help="CPU seconds a run may take (default 60)")
    parser.add_argument("--memory-gib", type=float, default=8, help="address-space limit of a run (default 8)")
    parser.add_argument("--only", default=None, help="keys whose dotted name contains this")
    parser.add_argument("--skip", action="append", default=[], help="leave out keys whose name contains this")
    parser.add_argument("--pairs", action="store_true", help="run the interacting pairs (PAIRS) instead")
    parser.add_argument("--list", action="store_true", help="print the runs, run nothing")
    parser.add_argument("--out", type=path_argument, default=None, help="append one JSON line a run here "
                        "(default: none)")
    parser.add_argument("--resume", action="store_true", help="skip the runs --out holds already")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per run, not only the findings")
    args = parser.parse_args(argv)
    # (nan passed ``x <= 0`` and inf any bound: each made every run a finding -- no answer within nan s, or a child
    # that died setting its address-space limit to int(inf))
    if args.jobs < 1 or not all(x > 0 and math.isfinite(x) for x in (args.timeout, args.memory_gib)):
        parser.error("--jobs must be >= 1, --timeout and --memory-gib finite numbers > 0")
    if args.only == "" or "" in args.skip:  # (every key contains "": --skip '' left out every run, --only '' none)
        parser.error("--only and --skip need a part of a key's name, not an empty one")
    if args.pairs and args.only is not None:  # (pair_jobs takes no filter: --only was ignored, every pair ran)
        parser.error("--only picks the single-key runs; with --pairs use --skip to leave pairs out")
    if args.resume and args.out is None:
        parser.error("--resume reads the runs --out holds: give --out")
    if args.only is not None and not jobs(args.only):  # (a misspelt key ran nothing: "0 runs, 0 findings", exit 0)
        keys = sorted({job["key"] for job in jobs(None)})
        parser.error(f"--only {args.only!r} is in no probed key's name: the {len(keys)} keys are dotted config names "
                     f"under {', '.join(sorted({k.split('.')[0] for k in keys}))} (--list prints every run)")
    if args.out is not None:  # (--out: a file; relative to where the command was given, not ROOT)
        from sim.report.output import check_writable

        args.out = check_writable(args.out, "--out").absolute()
    os.chdir(ROOT)
    todo = pair_jobs() if args.pairs else jobs(args.only)
    todo = [job for job in todo if not any(part in job["key"] for part in args.skip)]
    if args.resume and args.out and args.out.exists():
        done = _done_commands(args.out)
        todo = [job for job in todo if "python main.py " + shlex.join(job["argv"]) not in done]
    if args.list:
        for job in todo:
            print(job["mode"], shlex.join(job["argv"]))
        print(f"{len(todo)} runs")
        return 0
    import main as _warm  # noqa: F401 - imported once, before the forks

    found = run_all(todo, args.jobs, args.timeout, args.memory_gib, args.out, args.verbose)
    print(f"{len(todo)} runs, {found} findings")
    return 1 if found else 0


if __name__ == "__main__":
    from sim.command import command_status, end_process

    end_process(command_status("edge_runs.py", main))  # without the interpreter's teardown: see sim.command
