"""Which config keys each mode reads: a ``--set`` of one the chosen mode would leave unread is refused before any
work (``check_flags`` in ``sim.cli`` asks ``setting_users``; ``check_settings_given`` judges the keys read only
together with others on the resolved config). The modes themselves are named here, for ``sim.cli`` and
``experiments/`` alike."""

from __future__ import annotations

import dataclasses
from typing import Callable, Collection, TypeVar

from sim.config import Config, TiersConfig
from sim.errors import InputError

T = TypeVar("T")

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

# ------------------------------------------------------------------------- settings

# Config keys (a dotted prefix: a section or one key) that only some modes read. One given with --set in
# another mode is an error naming it, as a flag would be: the user asked for something the run would not do.
# A config file may hold every section (config.yaml does), so only --set is checked; a sweep's or a plan's
# runs are modes of their own. CLUSTER_PD: --cluster --pd (prefill/decode pools in every rack).
CLUSTER_PD = "cluster --pd"
SCHEDULER_KEYS = ("max_num_seqs", "max_num_batched_tokens", "enable_prefix_caching", "async_scheduling",
                  "scheduler_reserve_full_isl")  # vLLM's scheduler settings (serving.*)
TIERS = tuple(f.name for f in dataclasses.fields(TiersConfig))
TIER_TIMING_KEYS = ("read_gbps", "write_gbps", "latency_us", "shared_read_gbps")  # a tier's time (cache.tiers.<t>.*)
ROUTER_THRESHOLD_KEYS = ("cluster.cache_threshold", "cluster.balance_abs_threshold", "cluster.balance_rel_threshold")
SETTING_MODES: dict[str, frozenset[str]] = {
    "pd.": frozenset({"pd", CLUSTER_PD}),
    "network.": frozenset({"pd", "cluster", CLUSTER_PD, "check-calibration"}),  # KV transfers, moves between nodes
    "slo.": SERVING | {CLUSTER_PD},
    "compute.": SERVING | {CLUSTER_PD, "check-calibration"},  # step times; the cache-only replay has no clock
    # the host's part of a step (sim.serving.host_time): --check-calibration compares operators, which have none
    **{f"compute.{key}": SERVING | {CLUSTER_PD} for key in ("host_step_us", "host_sequence_us", "launch_layer_us")},
    **{f"cluster.{key}": frozenset({"cluster", CLUSTER_PD})
       for key in ("num_racks", "nodes_per_rack", "uplink_gbps", "oversubscription", "uplink_latency_us")},
    # the router of the single-node mode's workers and of a cluster (--router); PD routes with pd.router
    # (sim/serving/run.py), the cache-only replay and --trace-stats route nothing
    "cluster.router": frozenset({"single", "cluster", CLUSTER_PD}),
    # --cluster --pd routes every request with cluster.router (sim/cluster/run.py ``_dispatch``), not pd.router
    "pd.router": frozenset({"pd"}),
    # the cache: --trace-stats and --check-calibration keep none (cache.policy is --policy's key)
    "cache.": SIMULATING | {CLUSTER_PD},
    # the LRU miss-ratio curve's sampling: --mrc's alone (a cache-only replay; sim.cli_config refuses it there without --mrc)
    "cache.mrc_sample_rate": frozenset({"cache-only"}),
    "serving.disable_hybrid_kv_cache_manager": SIMULATING | {CLUSTER_PD},
    # a vision tower's weights and profile pass in a GPU's memory: --trace-stats and --check-calibration size none
    "serving.language_model_only": SIMULATING | {CLUSTER_PD},
    # the KV capacity from a GPU's memory (HBM's blocks): --trace-stats and --check-calibration size no cache
    **{f"serving.{key}": SIMULATING | {CLUSTER_PD} for key in ("num_gpu_blocks", "gpu_memory_utilization",
                                                               "enforce_eager")},
    # the scheduler and the clock: the cache-only replay has neither (no batches, no admission, no time)
    **{f"serving.{key}": SERVING | {CLUSTER_PD} for key in SCHEDULER_KEYS},
    **{f"cache.tiers.{tier}.{key}": SERVING | {CLUSTER_PD} for tier in TIERS for key in TIER_TIMING_KEYS},
    # PD sizes its pools with pd.num_prefill/num_decode, a cluster its instances by its nodes' GPUs
    "serving.num_instances": frozenset({"single"}),
    # the serving modes always cache generated blocks; the cache-only replay only with cache.insert_outputs
    "cache.insert_outputs": frozenset({"cache-only"}),
    # what the caches find of generated blocks (the cache-only replay: with cache.insert_outputs, checked in
    # _unread), and --trace-stats' serving ceiling
    "workload.outputs_in_next_turn": SERVING | {CLUSTER_PD, "trace-stats", "cache-only"},
    # the workload and the seed: --check-calibration compares operators, it replays none
    "workload.": WITH_WORKLOAD | {CLUSTER_PD},
    "seed": WITH_WORKLOAD | {CLUSTER_PD},
    # a GPU's host link carries a cluster's DRAM/SSD/NIC traffic into HBM (sim/cluster/run.py); the other modes
    # price lower tiers by their own bandwidths
    "hardware.pcie_gbps": frozenset({"cluster", CLUSTER_PD}),
    # the GPUs' link: TP collectives, priced by the serving modes and compared by --check-calibration
    **{f"hardware.{key}": SERVING | {CLUSTER_PD, "check-calibration"}
       for key in ("gpu_link_gbps", "gpu_link_latency_us")},
    # the prefix-aware router's thresholds (SGLang's cache-aware policy), in every mode that routes (--pd's pd.router
    # too, one node's precise-prefix and a prefix-aware pd.decode_router: sim.serving.routers,
    # sim.serving.decode_queues, sim.cluster.routers); read only where a run routes with one of them (_unread)
    **{key: SERVING | {CLUSTER_PD} for key in ROUTER_THRESHOLD_KEYS},
    # a TP group's all-reduce is a step's time: the cache-only replay has no clock, --trace-stats sizes no instance
    "serving.all_reduce": SERVING | {CLUSTER_PD, "check-calibration"},
}
# Config keys no mode reads (config.yaml says why): HBM is the GPU's own memory, its hits and writes cost no transfer.
# One given with --set is refused in every mode (a config file may hold them, as config.yaml does).
NEVER_READ = {f"cache.tiers.hbm.{key}": "an HBM hit is the GPU's own memory: no load or write time is charged"
              for key in ("read_gbps", "latency_us", "write_gbps", "shared_read_gbps")}
# What the cache-only replay does not read once cache.capacity_blocks (--capacity-blocks) sizes its one tier: the other
# tiers and HBM's size from memory (sim.cache.tiers.build_tiers); one given with --set is an error, as above
# What a Gated DeltaNet hybrid's block size depends on beside the GPU (sim.serving.state_groups.required_block_size):
# the only serving keys --trace-stats reads but the block size and the longest request
TRACE_STATS_STATE_KEYS = ("serving.tensor_parallel_size", "serving.dtype", "serving.kv_cache_dtype")
SINGLE_TIER_IGNORES = ("cache.tiers.dram", "cache.tiers.ssd", "cache.tiers.eic", "cache.tiers.hbm.capacity_gib",
                       "cache.inclusion", "serving.gpu_memory_utilization", "serving.num_gpu_blocks",
                       "serving.enforce_eager",
                       # the one tier's blocks are given and counted whole (every rank's page: stored_block_bytes), so
                       # the TP, and the node's GPUs that bound it, size nothing unless the TP replicates a KV head
                       # (``_tp_sizes_stored_blocks``; a Gated DeltaNet hybrid has no cache-only replay)
                       "serving.tensor_parallel_size", "hardware.gpus_per_node")
_TP_KEYS = ("serving.tensor_parallel_size", "hardware.gpus_per_node")


def _tp_sizes_stored_blocks(config: Config) -> bool:
    """Whether the TP sets the bytes of the block ``--capacity-blocks`` counts: above the model's KV-head count a rank
    replicates a head, and a lower tier stores every rank's page (``sim.cache.tiers.stored_block_bytes``), so the
    report's ``block_bytes`` is not the TP 1 one."""
    from sim.cache.tiers import stored_block_bytes
    from sim.config import replace
    from sim.specs import model_spec

    if config.serving.tensor_parallel_size == 1 or model_spec(config.model).linear_attention is not None:
        return False
    return stored_block_bytes(config) != stored_block_bytes(replace(config, **{"serving.tensor_parallel_size": 1}))


def given_by_set(sets: list[str]) -> dict[str, str]:
    """The keys of ``--set KEY=VALUE`` settings, each with how it was given (for ``check_settings_given``)."""
    from sim.config_yaml import set_keys

    return {key: f"--set {key}" for setting in sets for key in set_keys(setting)}


def check_settings_given(mode: str, config: Config, policies: list[str], given: dict[str, str],
                         routers: list[str] | None = None, max_rate: bool = False) -> None:
    """A key of ``given`` (how it was given, e.g. "--set KEY") that this run would leave unread is an error, as a flag
    would be (``unread_settings``; the first is named)."""
    unread = unread_settings(mode, config, policies, given, routers, max_rate)
    if unread:
        raise InputError(next(iter(unread.values())))


def unread_settings(mode: str, config: Config, policies: list[str], given: dict[str, str],
                    routers: list[str] | None = None, max_rate: bool = False) -> dict[str, str]:
    """The keys of ``given`` a run would read only together with others and does not here (judged on its resolved
    ``config``, its ``policies``, whether it searches the max rate and, in a cluster, its ``routers``:
    ``cluster.router``'s when none), each with the message that says why. A sweep or a plan refuses those no point
    reads (``experiments.execute``)."""
    from sim.mode_settings_rules import unread_with_others

    unread = {}
    for key, why in _unread(mode, config, policies, given, routers or [config.cluster.router]):
        unread.setdefault(key, f"{given[key]}: {why}")
    for key, why in unread_with_others(mode, config, given, max_rate):
        unread.setdefault(key, f"{given[key]}: {why}")
    return unread


def _unread(mode: str, config: Config, policies: list[str], given: dict[str, str], routers: list[str]):
    """(key, why) for each key of ``given`` this run leaves unread."""
    from sim.cache.access import uses_learned_policy
    from sim.mode_settings_rules import prefix_aware_decode_router
    from sim.specs import model_spec

    outputs = "workload.outputs_in_next_turn"
    if outputs in given:
        if mode == "cache-only" and not config.cache.insert_outputs:
            yield outputs, ("the cache-only replay reads it only with cache.insert_outputs=true (it takes prompt "
                            "blocks alone otherwise)")
        if mode in SERVING | {CLUSTER_PD} and not config.serving.enable_prefix_caching:
            yield outputs, "with serving.enable_prefix_caching=false nothing is cached, generated blocks included"
    if mode == "cache-only" and config.cache.capacity_blocks is not None:
        tp_read = _tp_sizes_stored_blocks(config)
        for key in given:
            if tp_read and key in _TP_KEYS:
                continue
            if any(key == p or key.startswith(p + ".") for p in SINGLE_TIER_IGNORES):
                yield key, ("not used beside --capacity-blocks (cache.capacity_blocks), which replays one tier of that "
                            "many blocks; drop one of them")
    if mode == "cache-only" and config.workload.trace is not None and "serving.max_model_len" in given:
        # only a serving run admits by it (sim.serving.admission); the replay reads it for a synthetic conversation's
        # context alone (trace.workload.context_tokens); --trace-stats reads it for the serving ceiling's requests
        # (trace.stats.served_by_length)
        yield "serving.max_model_len", (f"{MODE_FLAGS[mode]} takes every request of the trace {config.workload.trace} "
                                        "(only the serving modes skip longer ones, as vLLM rejects them); drop it")
    roles_tp = (config.pd.prefill_tensor_parallel_size, config.pd.decode_tensor_parallel_size)
    if mode in ("pd", CLUSTER_PD) and "serving.tensor_parallel_size" in given and None not in roles_tp \
            and config.serving.tensor_parallel_size not in roles_tp:
        # every role has its own TP, none serving's (a run's config would show a TP no instance has); only a Gated
        # DeltaNet hybrid still sizes its blocks and states at serving TP (state_groups.check_state_model)
        if model_spec(config.model).linear_attention is None:
            yield "serving.tensor_parallel_size", ("not used when pd.prefill_tensor_parallel_size and "
                                                   "pd.decode_tensor_parallel_size set every role's TP; drop one")
    if "serving.all_reduce" in given and mode in SERVING | {CLUSTER_PD}:
        from sim.config_rules import pd_tensor_parallel

        tps = [tp for _, tp in pd_tensor_parallel(config).values()] if mode in ("pd", CLUSTER_PD) else \
            [config.serving.tensor_parallel_size]
        if max(tps) == 1 and config.serving.data_parallel_size == 1:
            yield "serving.all_reduce", "no instance here all-reduces (tensor parallel size 1)"
    if "serving.enable_expert_parallel" in given and config.serving.data_parallel_size == 1 and mode != "trace-stats":
        yield "serving.enable_expert_parallel", ("read only for a mixture of experts' data-parallel groups "
                                                 "(serving.data_parallel_size > 1; here 1)")
    if config.serving.language_model_only and "serving.language_model_only" in given:
        if model_spec(config.model).vision_tower is None:
            yield "serving.language_model_only", (f"model {config.model} has no vision tower to leave unloaded (it "
                                                  "serves text alone already)")
    if mode == "trace-stats":
        # --trace-stats sizes no instance: a model's shape and precision are read only for a Gated DeltaNet hybrid's
        # block size (its state fills a page: sim.serving.state_groups.required_block_size), and its collectives never
        sizes_states = config.serving.block_size is None and model_spec(config.model).linear_attention is not None
        for key in ("serving.all_reduce", "serving.data_parallel_size", "serving.enable_expert_parallel"):
            if key in given:
                yield key, "not used by --trace-stats, which sizes no instance"
        # (hardware.gpus_per_node bounds the TP: read where the TP is, or a TP above 8 could not be given)
        for key in () if sizes_states else (*TRACE_STATS_STATE_KEYS, "hardware.gpus_per_node"):
            if key in given:
                yield key, ("not used by --trace-stats, which sizes no instance (only a Gated DeltaNet hybrid's block "
                            "size, when serving.block_size is null, depends on it)")
    if mode in SERVING | {CLUSTER_PD}:
        routing = [config.pd.router] if mode == "pd" else routers  # (--pd picks its prefill instance by pd.router)
        # (the prefix-aware routers': sim.serving.routers, sim.cluster.routers; a prefix-aware decode router's
        # balance check: sim.serving.decode_queues)
        # (one node's precise-prefix router reads them too: it keeps no TTFT estimate)
        reading = {"prefix-aware"} if mode in ("cluster", CLUSTER_PD) else {"prefix-aware", "precise-prefix"}
        if not reading.intersection(routing) and not prefix_aware_decode_router(mode, config):
            for key in ROUTER_THRESHOLD_KEYS:
                if key in given:
                    yield key, f"read only by the {' or '.join(sorted(reading))} router (routers here: {', '.join(routing)})"
    if "cache.selective_write_depth" in given and config.cache.admission != "selective_write":
        yield "cache.selective_write_depth", ("read only with cache.admission=selective_write (admission here: "
                                              f"{config.cache.admission})")
    if "cache.allow_train_test_overlap" in given and not uses_learned_policy(config, policies):
        yield "cache.allow_train_test_overlap", f"applies only to a learned policy (runs: {', '.join(policies)})"
    if mode == "cache-only" and not uses_learned_policy(config, policies):
        # the arrival process and the rate scale only move arrival times (the requests' order is kept:
        # trace.arrivals), which the replay reads for a learned policy's features alone. (Not a trace's time unit:
        # the loader reads it to take the file at all, its span and timestamp checks: a trace in us read as ms spans
        # centuries and is refused, naming --workload-time-unit us)
        for key in given:
            if key == "workload.rate_scale" or key.startswith("workload.arrivals."):
                yield key, ("the cache-only replay has no clock (of arrival times only the learned policy's "
                            f"features read any; runs: {', '.join(policies)}); drop it")
    hybrid = "serving.disable_hybrid_kv_cache_manager"
    if hybrid in given and mode != "trace-stats":
        model = model_spec(config.model)
        if not model.is_hybrid_attention and model.linear_attention is None:  # one KV group: vLLM's manager is plain
            yield hybrid, (f"model {config.model} has one kind of attention layer: there is no hybrid KV-cache "
                           "manager to disable (it applies to sliding-window/full or Gated DeltaNet mixes)")
    if config.workload.trace is None:  # (how a trace file is read: --workload-format, --workload-time-unit, ...)
        for key in ("workload.format", "workload.time_unit", "workload.strict_validation"):
            if key in given:
                yield key, "applies to a trace file; no --workload-trace is given (synthetic workload)"
    synthetic = config.workload.synthetic
    if config.workload.trace is None and synthetic.kind == "system-prompt" and synthetic.prefix_tokens == 0:
        for key in ("workload.synthetic.num_prefixes", "workload.synthetic.zipf_alpha"):  # (which prompt, how skewed)
            if key in given:
                yield key, ("workload.synthetic.prefix_tokens is 0: there is no system prompt to pick (the requests "
                            "share no prefix)")
    if config.workload.trace is not None:
        for key in given:
            if key.startswith("workload.synthetic."):
                yield key, f"no synthetic workload is generated; the trace {config.workload.trace} is replayed"
    elif "workload.block_mismatch" in given:
        yield "workload.block_mismatch", ("a synthetic workload's blocks are the cache's own; it applies to a "
                                          "trace's block ids")
    if config.workload.trace is not None and "workload.block_mismatch" in given:
        from pathlib import Path

        from trace.sniff import carries_hash_ids

        if carries_hash_ids(Path(config.workload.trace), config.workload.format) is False:
            yield "workload.block_mismatch", (f"the trace {config.workload.trace} has no block ids (hash_ids) whose "
                                              "block size could differ from the cache's")
    if "cache.learned_model" in given and not uses_learned_policy(config, policies):
        yield "cache.learned_model", (f"no run uses the learned policy (runs: {', '.join(policies)}; --policy learned, "
                                      "or a tier's cache.tiers.<tier>.policy)")


def run_reading(attempt: Callable[[Config], T], config: Config, refused: Collection[str] = ()) -> tuple[T, dict]:
    """``attempt(config)``, again with each setting the loaded workload leaves unread (``UnreadSetting``, found as the
    run loads it) at the value that leaves the run the same; one whose key is in ``refused`` (given on the command
    line) is refused instead, as a ``--set`` key found unread before the run is, while one a config file holds is left
    alone as that check leaves a file's keys (config.yaml holds every section). Returns the attempt's result and each
    key so replaced with its value in ``config``."""
    from sim.config import replace
    from sim.config_fields import setting
    from sim.errors import UnreadSetting

    left: dict = {}
    while True:
        try:
            return attempt(config), left
        except UnreadSetting as exc:
            if exc.key in refused or setting(config, exc.key) == exc.neutral:  # (neutral: not the setting's doing)
                raise
            left.setdefault(exc.key, setting(config, exc.key))
            config = replace(config, **{exc.key: exc.neutral})


def setting_users(key: str, mode: str) -> str | None:
    """None when ``mode`` reads config key ``key`` (``SETTING_MODES``), else the modes that do, in words (those of
    the most specific entry that refuses it: pd.router's, not the pd section's)."""
    refusing = []
    for prefix, modes in SETTING_MODES.items():
        # a section ("pd.") covers its keys; a key ("pd.router") itself and what nests under it, not a longer name
        # ("pd.routerX" is a typo, for the config's own check to name)
        within = key.startswith(prefix) if prefix.endswith(".") else key == prefix or key.startswith(prefix + ".")
        if within and mode not in modes:
            refusing.append((len(prefix), modes))
    if not refusing:
        return None
    modes = max(refusing, key=lambda entry: entry[0])[1]
    return ", ".join(MODE_FLAGS.get(m, f"--{m}") for m in (*MODES, CLUSTER_PD) if m in modes)


def check_preset_read(preset: str | None, config: Config, mode: str) -> None:
    """A preset none of whose keys the mode reads did nothing (``--preset smoke`` sizes workloads, which
    --check-calibration replays none of): refused, as a flag the mode ignores is."""
    if preset is None:
        return
    from sim.config_yaml import leaf_keys

    keys = [leaf for name in (preset, f"{preset}@{mode}") for key, value in config.presets.get(name, {}).items()
            for leaf in leaf_keys(key, value)]
    if keys and all(setting_users(key, mode) is not None for key in keys):
        raise InputError(f"--preset {preset}: not used by {MODE_FLAGS.get(mode, f'--{mode}')}: it sets only "
                         f"{', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}, which this mode does not read")
