"""Prediction error against a measured vLLM run: TTFT, TPOT and E2E (mean, p50, p99), simulated vs measured.

A measured run is a folder in LLMServingSim's ``bench/examples/<GPU>/<model>/`` layout: ``vllm/requests.jsonl``
(per request ``input_toks``, ``output_toks`` and monotonic ``queued_ts``, ``first_token_ts``,
``last_token_ts`` in seconds), ``vllm/meta.json`` (the engine's arguments, its KV cache and GPU) and, when
LLMServingSim replayed it too, ``validation/summary.txt`` — whose prediction is then printed beside kvsim's, the
peer's error next to ours. The run is replayed in single-node mode on the trace the server was fed, with the
engine that ``meta.json`` states (``engine_overlay``: model and GPU by their own names, TP, data-parallel
instances, engine limits, KV blocks; no offloading tiers; where GPUs exchange data (TP > 1, or a data-parallel
group sharing experts) the GPU link as LLMServingSim's ``config.json`` beside it states it, else the bundle's
measured collectives: LLMServingSim's precedence, a cluster config's link over the ``hardware.yaml`` defaults) and
the profile bundle given, or with ``--overlay`` instead. Definitions as ``tests/test_validation_vllm.py``: TTFT
and E2E from when the engine read the request (vLLM's ``queued_ts``; kvsim's ``queued`` column: the end of the step
in flight at its arrival), on both sides. Defaults: the bundled RTX 4090 run. From the repository root::

    python benchmarks/replay_vllm.py [--run DIR --trace JSONL [--profile BUNDLE | --overlay YAML]] [--set K=V ...]
"""

from __future__ import annotations

import sys
from pathlib import Path  # (often loaded as Python starts, by site: the hold below comes at once)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import sim.script_start  # noqa: E402, F401 (first: a stop while the libraries below load waits for the command)

# isort: split

import json
import tempfile
from typing import Any

import numpy as np

from benchmarks.vllm_run_files import (
    STATE,
    check_run,
    check_served,
    is_number,
    read_json,
    read_timeseries,
    whole_count,
)
from sim.cli import OneLineParser, path_argument
from sim.command import command_status, end_process
from sim.config_yaml import names_a_path
from sim.errors import InputError
from sim.specs import canonical_model, model_spec

DTYPES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "auto": "bf16"}
# vLLM's --kv-cache-dtype choices (vllm/config/cache.py CacheDType) that kvsim models: "auto" follows the model dtype
KV_DTYPES = {"auto": "auto", "bfloat16": "bf16", "float16": "fp16", "half": "fp16", "fp8": "fp8", "fp8_e4m3": "fp8",
             "fp8_e5m2": "fp8", "fp8_ds_mla": "fp8"}  # (DeepSeek sparse attention's FP8 latent format: kvsim's fp8)

SHARED = REPO.parent / "shared" / "data"
STATS = {"mean": np.mean, "p50": np.median, "p99": lambda x: np.percentile(x, 99)}

def simulated_latencies(requests) -> dict[str, np.ndarray]:
    """kvsim's figures as the measured ones are defined: from when the engine took each request in (``queued``: the
    end of the step in flight at its arrival, as vLLM's queued_ts), not from its arrival."""
    return {"ttft": requests.first_token - requests.queued, "tpot": requests.tpot[requests.output_tokens > 1],
            "e2e": requests.last_token - requests.queued}


def engine_overlay(run: Path, profile: Path | None, model: str | None = None, gpu: str | None = None) -> dict[str, Any]:
    """The served engine as a kvsim config layer, from the run's ``vllm/meta.json`` (and LLMServingSim's
    ``config.json`` for the GPU when meta.json lacks it); ``model``: the served model as the user states it (a name
    kvsim knows or a config.json path), instead of the one the run's files name; ``gpu`` likewise (a GPU kvsim does
    not list: a GPU spec file)."""
    meta = read_json(run / "vllm" / "meta.json", "engine description (vllm/meta.json)")
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), str):
        raise InputError(f"{run / 'vllm' / 'meta.json'}: not a run's meta.json (no model)")
    engine, kv, resolved = (_section(meta, key) for key in ("engine_kwargs", "kv_cache", "resolved_config"))
    hardware = _section(meta, "hardware")
    device_name = hardware.get("device_name")
    if device_name is not None and not (isinstance(device_name, str) and device_name.strip()):
        raise InputError(f"meta.json hardware.device_name must be a GPU's name, got {device_name!r:.40}")
    for key in ("model_config", "scheduler_config", "cache_config", "parallel_config"):
        _section(resolved, key, "resolved_config.")
    tp, dp = (whole_count(engine, "tensor_parallel_size", "engine_kwargs"),
              whole_count(engine, "data_parallel_size", "engine_kwargs"))
    cluster = _cluster_config(run)
    instance = _cluster_instance(cluster, run)
    gpu = gpu or device_name or instance.get("hardware")
    if gpu is None:
        raise InputError(f"{run}: the run's GPU is in neither vllm/meta.json (hardware.device_name) nor an LLMServingSim "
                         "config.json beside it: give --set hardware.gpu (or --overlay with it)")
    kv_name = _kv_cache_dtype(engine, resolved)
    serving: dict[str, Any] = {
        "tensor_parallel_size": tp, "num_instances": dp, "dtype": _dtype(engine),
        "max_num_seqs": _step_limit(engine, resolved, "max_num_seqs"),
        "max_num_batched_tokens": _step_limit(engine, resolved, "max_num_batched_tokens"),
        "block_size": whole_count(kv, "block_size", "kv_cache", default=16),
        "enable_prefix_caching": _flag(kv, "enable_prefix_caching", "kv_cache", default=True),
        "gpu_memory_utilization": _fraction(kv, "gpu_memory_utilization"), "num_gpu_blocks": _engine_blocks(kv, dp),
        # the server's own limit: a request beyond it was rejected there, so it is here (the model's context otherwise)
        "max_model_len": whole_count(engine, "max_model_len", "engine_kwargs", None)
        or whole_count(_section(resolved, "model_config", "resolved_config."), "max_model_len",
                       "resolved_config.model_config", None),
        "kv_cache_dtype": KV_DTYPES[kv_name],
        "scheduler_reserve_full_isl": _scheduler_flag(resolved, "scheduler_reserve_full_isl"),
        "async_scheduling": _scheduler_flag(resolved, "async_scheduling"),
        # (a vLLM from before the hybrid KV-cache manager had none: its resolved config lacks the key, read as off)
        "disable_hybrid_kv_cache_manager": _hybrid_manager_disabled(resolved),
    }
    model = model or _served_model(meta, engine, instance.get("model_name"), run)
    _refuse_unmodelled(resolved, engine, model)
    if kv_name == "fp8_ds_mla" and not getattr(_served_spec(model), "is_sparse_attention", False):
        raise InputError(f"meta.json kv_cache_dtype 'fp8_ds_mla' is DeepSeek sparse attention's latent format, and "
                         f"kvsim's {model} has no sparse attention: give the served model's config.json with --set "
                         "model=PATH")
    if dp > 1 and getattr(_served_spec(model), "is_moe", False):
        serving["data_parallel_size"] = dp  # the group's ranks share the experts (vLLM's DP with MoE layers)
    overlay: dict[str, Any] = {
        "model": model,
        "hardware": {"gpu": gpu, "gpus_per_node": tp * dp},
        "serving": {k: v for k, v in serving.items() if v is not None},
        # vLLM without CPU offloading (num_cpu_blocks null): HBM only
        "cache": {"tiers": {tier: {"capacity_gib": 0} for tier in ("dram", "ssd", "eic")}},
        # the benchmark client sent the trace's prompts as recorded: the server's answers are not in them
        "workload": {"outputs_in_next_turn": False},
    }
    if dp > 1:  # one server's engines: vLLM's own balancer sends each request to the engine with the least
        # 4 x waiting + running (vllm/v1/engine/core_client.py DPLBAsyncMPClient), by load, never by prefix; kvsim's
        # least-loaded takes the fewest waiting + running, unweighted (an approximation of it, not the same pick)
        overlay["cluster"] = {"router": "least-loaded"}
    if profile is not None:
        overlay["compute"] = {"backend": "profiled", "profile": str(profile.resolve())}
    link = _stated_link(cluster)
    if (tp > 1 or "data_parallel_size" in serving) and link is not None:  # (over a bundle's hardware.yaml, as there)
        overlay["hardware"].update(gpu_link_gbps=link[0], gpu_link_latency_us=link[1])
    return overlay


def _section(meta: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    """One section of meta.json (an object; absent or null: empty); ``where``: the path to it (``resolved_config.``)."""
    value = meta.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"meta.json {where}{key} must be an object, got {type(value).__name__}")
    return value


def _dtype(engine: dict[str, Any]) -> str:
    """The model's dtype (engine argument ``dtype``), one kvsim models, by its kvsim name."""
    value = engine.get("dtype")
    if value is None:
        return DTYPES["auto"]
    if not isinstance(value, str) or value not in DTYPES:
        raise InputError(f"meta.json engine_kwargs.dtype {value!r:.40} is not modelled (known: {', '.join(DTYPES)})")
    return DTYPES[value]


def _flag(mapping: dict[str, Any], key: str, where: str, default: bool | None) -> bool | None:
    """A true/false setting of meta.json (absent or null: ``default``); another value is refused, not read as one."""
    value = mapping.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InputError(f"meta.json {where}.{key} must be true or false, got {value!r:.40}")
    return value


def _fraction(kv: dict[str, Any], key: str) -> float:
    """A fraction in (0, 1] of meta.json's kv_cache (absent or null: vLLM's default 0.9)."""
    value = kv.get(key)
    if value is None:
        return 0.9
    if not is_number(value) or not 0 < value <= 1:
        raise InputError(f"meta.json kv_cache.{key} must be a number in (0, 1], got {value!r:.40}")
    return float(value)


def _engine_blocks(kv: dict[str, Any], engines: int) -> int | None:
    """One engine's KV blocks: meta.json records the front end's ``cache_config.num_gpu_blocks``, which vLLM sums
    over its data-parallel engines ("Sum values from all engines in DP case": vllm/v1/engine/utils.py
    ``wait_for_engine_startup``; a 2-engine Qwen3-30B-A3B run records 75,946, twice what one RTX PRO 6000 holds)."""
    total = whole_count(kv, "num_gpu_blocks", "kv_cache", default=None)
    if total is None or engines == 1:
        return total
    if total % engines:
        raise InputError(f"meta.json kv_cache.num_gpu_blocks {total} is the sum over {engines} data-parallel engines "
                         "but not a multiple of it: state each engine's with --set serving.num_gpu_blocks=N")
    return total // engines


def _cluster_config(run: Path) -> dict[str, Any] | None:
    """LLMServingSim's ``config.json`` beside the run (its cluster: GPU, model name, link), if there is one."""
    path = run / "config.json"
    if not path.is_file():
        return None
    cluster = read_json(path, "LLMServingSim cluster (config.json)")
    if not isinstance(cluster, dict):
        raise InputError(f"{path}: not an LLMServingSim cluster config (an object)")
    return cluster


def _cluster_instance(cluster: dict[str, Any] | None, run: Path) -> dict[str, Any]:
    """The first instance of the cluster's first node ({} without a config.json)."""
    if cluster is None:
        return {}
    try:
        instance = cluster["nodes"][0]["instances"][0]
    except (KeyError, IndexError, TypeError):
        instance = None
    if not isinstance(instance, dict):
        raise InputError(f"{run / 'config.json'}: no nodes[0].instances[0] object (LLMServingSim's cluster layout)")
    for key in ("hardware", "model_name"):
        value = instance.get(key)
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise InputError(f"{run / 'config.json'}: nodes[0].instances[0].{key} must be a name, got {value!r:.40}")
    return instance


def _served_model(meta: dict[str, Any], engine: dict[str, Any], stated: str | None, run: Path) -> str:
    """The model the server ran, by a name kvsim knows: meta.json's (a Hugging Face id), else ``stated`` (the
    ``model_name`` of LLMServingSim's ``config.json``), else the last folder of a local checkout's path (later runs
    record the server's own path, e.g. ``/data/model/Qwen3-32B``); else the model's Hugging Face config.json in the
    LLMServingSim checkout the run belongs to (``configs/model/<id>.json``, as LLMServingSim reads it: its own test
    variants, e.g. DeepSeek-V3.2-Exp-16L64E); else an error saying to give the model (``--set model=PATH``)."""
    named = engine.get("model") or meta["model"]
    candidates = [named, meta.get("model"), stated, Path(str(named)).name]
    known = next((name for name in candidates if canonical_model(name) is not None), None)
    if known is not None:
        return known
    for model_id in dict.fromkeys(str(name) for name in (meta.get("model"), stated, named) if name):
        if Path(model_id).is_absolute() or ".." in Path(model_id).parts:  # a server's path, not an id under configs/
            continue
        for folder in run.resolve().parents:
            config = folder / "configs" / "model" / f"{model_id}.json"
            if config.is_file():
                return str(config)
    raise InputError(f"the run's model {named!r} is neither one kvsim names (profiles/models.yaml) nor in the run's "
                     "LLMServingSim checkout (configs/model/<id>.json): give its config.json with --set model=PATH")


def _kv_cache_dtype(engine: dict[str, Any], resolved: dict[str, Any]) -> str:
    """vLLM's ``kv_cache_dtype`` (engine argument, else the resolved cache config's ``cache_dtype``); one kvsim does
    not model is refused by name rather than replayed as another."""
    value = engine.get("kv_cache_dtype") or _section(resolved, "cache_config", "resolved_config.").get("cache_dtype") \
        or "auto"
    if not isinstance(value, str):
        raise InputError(f"meta.json kv_cache_dtype must be a name, got {value!r:.40}")
    if value not in KV_DTYPES:
        raise InputError(f"meta.json kv_cache_dtype {value!r} is not modelled (known: {', '.join(sorted(KV_DTYPES))})")
    return value


def _step_limit(engine: dict[str, Any], resolved: dict[str, Any], name: str) -> int | None:
    """A step limit the server ran with: its engine argument, else its resolved scheduler config's; else unknown
    (None: kvsim resolves it as vLLM does for the GPU, ``sim.serving.engine_limits``)."""
    stated = whole_count(engine, name, "engine_kwargs", None)
    if stated is not None:
        return stated
    scheduler = _section(resolved, "scheduler_config", "resolved_config.")
    return whole_count(scheduler, name, "resolved_config.scheduler_config", None)


def _scheduler_flag(resolved: dict[str, Any], name: str) -> bool | None:
    """A scheduler behaviour the server ran with, from its resolved scheduler config (``scheduler_reserve_full_isl``:
    the admission gate; ``async_scheduling``: planning a step while the one before runs); a resolved scheduler config
    without it is a vLLM from before the feature (off then); no resolved config: unknown (kvsim's default)."""
    if resolved.get("scheduler_config") is None:
        return None
    return _flag(_section(resolved, "scheduler_config", "resolved_config."), name, "resolved_config.scheduler_config",
                 False)


def _hybrid_manager_disabled(resolved: dict[str, Any]) -> bool | None:
    """Whether the server ran without vLLM's hybrid KV-cache manager (its resolved scheduler config's
    ``disable_hybrid_kv_cache_manager``, which vLLM sets itself when a KV connector lacks hybrid support); a resolved
    scheduler config without the key is a vLLM from before the manager (so without it); none: unknown."""
    if resolved.get("scheduler_config") is None:
        return None
    return _flag(_section(resolved, "scheduler_config", "resolved_config."), "disable_hybrid_kv_cache_manager",
                 "resolved_config.scheduler_config", True)


def _refuse_unmodelled(resolved: dict[str, Any], engine: dict[str, Any], model: str) -> None:
    """Engine features kvsim does not model change every step's time: a replay of such a run would compare
    another engine with the measurement, so it stops with their names instead. An FP8 checkpoint is modelled when
    kvsim reads the model from its config.json (quantization_config fp8: ``ModelSpec.weight_quantization``)."""
    parallel = _section(resolved, "parallel_config", "resolved_config.")
    unmodelled = []
    stages = whole_count(engine, "pipeline_parallel_size", "engine_kwargs", None) or \
        whole_count(parallel, "pipeline_parallel_size", "resolved_config.parallel_config")
    if stages > 1:
        unmodelled.append("pipeline_parallel_size > 1")
    if resolved.get("speculative_config"):
        unmodelled.append("speculative decoding (speculative_config)")
    quantization = (_section(resolved, "model_config", "resolved_config.").get("quantization")
                    or engine.get("quantization"))
    hint = ""
    fp8_checkpoint = getattr(_served_spec(model), "weight_quantization", None) == "fp8" if quantization else False
    if quantization and not (quantization == "fp8" and fp8_checkpoint):
        unmodelled.append(f"quantization {quantization!r}")
        if quantization == "fp8":
            hint = f" (kvsim's {model} is no FP8 checkpoint: give the served one's config.json with --set model=PATH)"
    if unmodelled:
        raise InputError(f"the measured run uses {', '.join(unmodelled)}, which kvsim does not model; its replay "
                         f"would not be this engine{hint}")


def _served_spec(model: str):
    """The shape kvsim reads for ``model`` (a name it knows, or a config.json path); None for an unknown name (its
    callers ask one property each: ``getattr(..., default)``)."""
    name = canonical_model(model)
    if name is None and not names_a_path(model):
        return None
    return model_spec(name or model)




def _stated_link(cluster: dict[str, Any] | None) -> tuple[float, float] | None:
    """The GPU-to-GPU link as the run's LLMServingSim ``config.json`` states it (``link_bw`` GB/s, ``link_latency``
    ns, one value for every dimension): both simulators then see the same machine. None where it is not stated."""
    if cluster is None:
        return None
    bandwidth, latency = cluster.get("link_bw"), cluster.get("link_latency")
    for key, value, least in (("link_bw", bandwidth, "above 0"), ("link_latency", latency, "at least 0")):
        if value is None or isinstance(value, list):
            continue  # absent, or one per topology dimension
        if not is_number(value) or (value <= 0 if key == "link_bw" else value < 0):
            raise InputError(f"config.json {key} must be a number {least} (or a list, one per dimension), "
                             f"got {value!r:.40}")
    if not is_number(bandwidth) or not is_number(latency):
        return None
    return float(bandwidth), float(latency) / 1e3


def main() -> int:
    from sim.config import load_config, replace
    from sim.errors import UnreadSetting
    from sim.mode_settings_rules import check_sets_read
    from sim.serving.run import run_serving
    from trace.continuations import check_outputs_in_next_turn_read
    from trace.workload import load_workload

    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=path_argument, help="the measured run's folder (vllm/requests.jsonl, vllm/meta.json); "
                        "default: the bundled RTX 4090 run")
    parser.add_argument("--trace", type=path_argument,
                        help="the workload the server was fed (required with --run, and only with it)")
    parser.add_argument("--profile", type=path_argument, help="the LLMServingSim profile bundle to time steps with "
                        "(default: the roofline; the bundled run's bundle for the bundled run; not with --overlay)")
    parser.add_argument("--overlay", type=path_argument, help="a calibration overlay stating the engine, instead of meta.json")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="config override over the engine, as main.py's --set")
    parser.add_argument("--per-request", type=int, default=0, metavar="N",
                        help="also print the first N requests one by one: when the server queued each (from its first)"
                             " and when the trace has it arrive, and each TTFT measured and simulated (light-load "
                             "semantics show there, before a queue builds; default 0: none)")
    args = parser.parse_args()
    if args.per_request < 0:
        parser.error(f"--per-request must be at least 0, got {args.per_request}")
    if args.overlay is not None and args.profile is not None:  # the overlay states the engine and what times its steps
        parser.error("--profile and --overlay: give one (the overlay's compute.profile states the bundle; "
                     "--set compute.profile=BUNDLE over it)")
    if args.run is None:
        if args.trace is not None:  # another workload than the bundled run's, judged against its latencies
            parser.error("--trace needs --run (the measured run the workload was fed to)")
        args.run = SHARED / "validation" / "llmservingsim_rtx4090_llama31_8b"
        args.trace = SHARED / "traces" / "llmservingsim_sharegpt_llama31_8b_300.jsonl"
        if args.overlay is None:
            args.profile = args.profile or SHARED / "profiles" / "llmservingsim_rtx4090_llama31_8b"
    elif args.trace is None:
        parser.error("--run needs --trace (the workload the server was fed)")
    # every file of the run is read and checked before anything runs
    measured, served, peer, timeseries = check_run(args.run)
    with tempfile.TemporaryDirectory() as folder:
        overlay = args.overlay
        if overlay is None:
            overlay = Path(folder) / "engine.yaml"
            stated = _stated_model(args.sets), _stated_model(args.sets, "hardware.gpu")  # over the run's own names
            overlay.write_text(json.dumps(engine_overlay(args.run, args.profile, *stated)))  # (YAML)
        try:
            config = load_config(None, overlays=[overlay], sets=[f"workload.trace={args.trace.resolve()}", *args.sets])
        except InputError as exc:  # the engine the run's files state, not the temporary overlay written from them
            if args.overlay is not None:
                raise
            raise InputError(str(exc).replace(f"calibration profile {overlay}",
                                              f"the engine {args.run / 'vllm' / 'meta.json'} states")) from None
    check_sets_read(args.sets, config, "single", "the replay, a single-node run compared by its latencies", ("slo.",))
    workload = load_workload(config)
    check_served(workload, served, args.trace, args.run / "vllm" / "requests.jsonl")
    try:  # (the overlay's outputs_in_next_turn=false changes nothing where no prompt holds an earlier answer)
        check_outputs_in_next_turn_read(workload, config.workload)
    except UnreadSetting as exc:
        if _stated_model(args.sets, exc.key) is not None:
            raise  # (the user's own: refused, as main.py refuses it)
        config = replace(config, **{exc.key: exc.neutral})
    result, requests = run_serving(workload, config, "single")
    simulated = simulated_latencies(requests)
    print(describe_engine(config))
    print(f"{'metric':<6} {'stat':<5} {'measured_ms':>12} {'kvsim_ms':>10} {'error':>8}"
          + (f" {'llmservingsim_ms':>17} {'error':>8}" if peer else ""))
    for metric in ("ttft", "tpot", "e2e"):
        if not len(measured[metric]) or not len(simulated[metric]):
            print(f"{metric:<6} {'all':<5} not measurable (no request has more than one output token)")
            continue
        for name, stat in STATS.items():
            m, s = stat(measured[metric]) * 1e3, stat(simulated[metric]) * 1e3
            line = f"{metric:<6} {name:<5} {m:>12.1f} {s:>10.1f} {_error(s, m):>8}"
            if (metric, name) in peer:
                line += f" {peer[metric, name]:>17.1f} {_error(peer[metric, name], m):>8}"
            print(line)
    if timeseries is not None:
        print_state(state_comparison(args.run / "vllm" / "timeseries.csv", result.metrics["timeseries"]))
    if args.per_request:
        print_per_request(args.run / "vllm" / "requests.jsonl", requests, args.per_request)
    return 0


def _error(predicted: float, measured: float) -> str:
    """The relative error, or "n/a" where the measured figure is 0 (no relative error then)."""
    return f"{(predicted - measured) / measured:+.2%}" if measured else "n/a"


def _stated_model(sets: list[str], key: str = "model") -> str | None:
    """The model (or another name-or-path ``key``: hardware.gpu) a ``--set model=...`` states (the last one; a path
    resolved here, as main.py resolves it), if any."""
    values = [item.split("=", 1)[1].strip() for item in sets if item.split("=", 1)[0].strip() == key and "=" in item]
    if not values:
        return None
    return str(Path(values[-1]).resolve()) if names_a_path(values[-1]) else values[-1]


def describe_engine(config) -> str:
    """One line saying what was replayed: model, GPU, parallelism, what times the steps and the collectives (so a
    reader sees, e.g., whether a run's stated link or a bundle's measured samples priced them)."""
    from sim.serving.compute_backend import compute_model
    from sim.serving.measured_collectives import MeasuredCollectives

    serving = config.serving
    parts = [f"replayed as {config.model} on {config.hardware.gpu}", f"TP {serving.tensor_parallel_size}"]
    if serving.data_parallel_size > 1:
        parts.append(f"DP {serving.data_parallel_size}")
    parts.append(f"steps: {config.compute.profile or 'roofline'}")
    if serving.tensor_parallel_size > 1 or serving.data_parallel_size > 1:
        collectives = compute_model(config).comm.collectives
        parts.append(f"collectives: measured ({collectives.source})" if isinstance(collectives, MeasuredCollectives)
                     else f"collectives: ring over {collectives.bandwidth / 1e9:g} GB/s, "
                          f"{collectives.step_latency * 1e6:g} us a step")
    return "; ".join(parts)


def state_comparison(timeseries_csv: Path, timeline: dict[str, Any]) -> dict[str, tuple[float, float, float] | None]:
    """The engine's state over time, measured against kvsim's timeline: per column, the measured mean, the simulated
    mean and the mean absolute difference. ``timeseries.csv`` (LLMServingSim's bench/core/stat_logger.py) holds, per
    tick ending at ``t`` s, the last step's running and waiting requests (summed over data-parallel engines) and KV
    cache in use % (their mean); kvsim's timeline is read at its last sample at or before each ``t``, its clock taken
    as the logger's (the logger starts with the engine, moments before the first request; the gap is not recorded).
    A column that is 0 throughout a run that served requests was not recorded (None): e.g. the RTX PRO 6000 runs of
    LLMServingSim's bench/examples log kv_cache_pct 0.0 at every tick while 128 requests run."""
    table = read_timeseries(timeseries_csv)
    ticks = table["t"]
    grid = np.asarray(timeline["t_s"])
    at = np.clip(np.searchsorted(grid, ticks, side="right") - 1, 0, len(grid) - 1)
    compared = {}
    for column, series in STATE.items():
        measured = table[column]
        if not measured.any():
            compared[column] = None  # (a served run is never idle at every tick)
            continue
        simulated = np.asarray(timeline[series], dtype=float)[at] * (100.0 if column == "kv_cache_pct" else 1.0)
        compared[column] = (float(measured.mean()), float(simulated.mean()), float(np.abs(simulated - measured).mean()))
    return compared


def print_state(compared: dict[str, tuple[float, float, float] | None]) -> None:
    print(f"\n{'state over time':<15} {'measured_mean':>13} {'kvsim_mean':>10} {'mean_abs_diff':>13}")
    for column, values in compared.items():
        if values is None:
            print(f"{column:<15} {'not recorded (0 at every tick)':>38}")
            continue
        measured, simulated, diff = values
        print(f"{column:<15} {measured:>13.1f} {simulated:>10.1f} {diff:>13.1f}")


def print_per_request(requests_jsonl: Path, simulated, count: int) -> None:
    """The first ``count`` requests in file order (the trace's order): queued offset and trace arrival (s), TTFT
    measured and simulated (ms)."""
    rows = [json.loads(line) for line in requests_jsonl.read_text().splitlines() if line.strip()]
    first = min(r["queued_ts"] for r in rows)
    print(f"\n{'request':>7} {'queued_s':>9} {'arrival_s':>9} {'ttft_measured_ms':>17} {'ttft_kvsim_ms':>14}")
    for i, row in enumerate(rows[:count]):
        print(f"{i:>7} {row['queued_ts'] - first:>9.3f} {simulated.arrival[i]:>9.3f} "
              f"{(row['first_token_ts'] - row['queued_ts']) * 1e3:>17.1f} "
              f"{(simulated.first_token[i] - simulated.queued[i]) * 1e3:>14.1f}")


if __name__ == "__main__":
    end_process(command_status("replay_vllm.py", main))
