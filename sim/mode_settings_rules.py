"""Settings a run reads only beside others, judged on the resolved config (``sim.mode_settings.unread_settings``
asks ``unread_with_others``): a lower tier's timing or policy when the tier holds nothing, every cache setting when
prefix caching is off, a rack's uplink in a one-rack cluster or beside a given uplink, a node's NIC in a one-node
cluster without an EIC, the analytic network's figures
beside an NS-3 table, the SLO attainment without a max-rate search, the inclusion of a hierarchy of HBM alone, the
router of one instance (prefill or decode), the decode router without prefix caching, and the seed of a trace replayed
at its own times. Each was accepted and changed nothing but the echoed config (exit 0)."""

from __future__ import annotations

from collections.abc import Iterator

from sim.config import Config

LOWER_TIERS = ("dram", "ssd", "eic")
# what a lower tier reads beside its capacity (its loads and writes, its eviction policy, the EIC's store layout);
# sim.cache.tiers.build_tiers builds no tier of capacity 0, so none of these is read then
TIER_KEYS = ("read_gbps", "write_gbps", "latency_us", "shared_read_gbps", "policy", "layout")
LEARNED_KEYS = ("cache.learned_model", "cache.allow_train_test_overlap")
UPLINK_KEYS = ("cluster.uplink_gbps", "cluster.oversubscription", "cluster.uplink_latency_us")
NIC_KEYS = ("network.bandwidth_gbps", "network.latency_us", "network.lookup")  # a node's NIC (sim.cluster.run)
SERVING = ("single", "pd", "cluster", "cluster --pd")  # (sim.mode_settings.SERVING and CLUSTER_PD)
CLUSTERS = ("cluster", "cluster --pd")
ROUTER_THRESHOLD_KEYS = ("cluster.cache_threshold", "cluster.balance_abs_threshold", "cluster.balance_rel_threshold")
# the roofline's constants (sim.serving.compute_backend.roofline_compute): an LLMServingSim bundle times every
# operator of a step from its own tables (LLMServingSimCompute is built without the roofline)
ROOFLINE_KEYS = tuple(f"compute.{key}" for key in ("flops_efficiency", "bandwidth_efficiency", "attention_efficiency",
                                                   "gemm_floor_us", "attention_floor_us", "attention_tile_us"))


def unread_with_others(mode: str, config: Config, given: dict[str, str], max_rate: bool) -> Iterator[tuple[str, str]]:
    """(key, why) for each key of ``given`` (dotted keys) this run leaves unread because of another setting."""
    serving = mode in SERVING
    if serving and not config.serving.enable_prefix_caching:
        # nothing is looked up or stored (sim.serving.instance: the pool only counts). Kept: HBM's size (its pool's),
        # and what an error elsewhere may ask for (a tier's capacity below a block, "give 0"; a learned policy's
        # model and overlap), lest a file's setting be refused with no --set left to fix it
        for key in given:
            if key.startswith("cache.") and not key.endswith(".capacity_gib") and key not in LEARNED_KEYS:
                yield key, "with serving.enable_prefix_caching=false nothing is cached: no cache setting is read"
    if serving or mode == "cache-only":
        for tier in LOWER_TIERS:
            if getattr(config.cache.tiers, tier).capacity_gib == 0:
                for key in (f"cache.tiers.{tier}.{k}" for k in TIER_KEYS):
                    if key in given:
                        yield key, (f"cache.tiers.{tier}.capacity_gib is 0: there is no {tier} tier to read it "
                                    "(give the tier a capacity, or drop the setting)")
        one_tier = config.cache.capacity_blocks is not None if mode == "cache-only" else False
        hbm = "cache.tiers.hbm.capacity_gib"
        if hbm in given and config.serving.num_gpu_blocks is not None and config.cache.tiers.hbm.capacity_gib > 0 \
                and not one_tier:  # (sim.cache.tiers.hbm_capacity_blocks: num_gpu_blocks first)
            yield hbm, (f"serving.num_gpu_blocks={config.serving.num_gpu_blocks} sets HBM's KV blocks, overriding the "
                        "capacity in GiB; give one of them")
        sized = ("serving.num_gpu_blocks" if config.serving.num_gpu_blocks is not None else
                 hbm if config.cache.tiers.hbm.capacity_gib > 0 else None)
        # HBM sized outright: no memory budget is drawn (sim.cache.tiers.hbm_capacity_blocks), so neither the share of
        # memory nor, in the replay (no step is timed), the CUDA graphs' estimate in it is read
        for key in ("serving.gpu_memory_utilization", *(("serving.enforce_eager",) if mode == "cache-only" else ())):
            if key in given and sized is not None and not one_tier:
                yield key, f"{sized} sizes HBM outright: no memory budget is drawn to read it"
        if mode == "cache-only" and "cache.prefetch" in given and (  # (any value: a sweep's axis none/session)
                one_tier or all(getattr(config.cache.tiers, t).capacity_gib == 0 for t in LOWER_TIERS)):
            # (sim.cache.hooked: a prefetch moves a block up from a lower tier; HBM alone has none, the same hits)
            yield "cache.prefetch", "a session prefetch brings blocks up from a lower tier; HBM is the only tier here"
        if "cache.inclusion" in given and all(getattr(config.cache.tiers, t).capacity_gib == 0 for t in LOWER_TIERS):
            yield "cache.inclusion", "no lower tier has a capacity: HBM alone has no copies to keep or drop below it"
        # (sim.cache.tiers.tier_from_config: a tier's own policy, else cache.policy; --policy lru,fifo ran two runs
        # named lru and fifo that were one policy, the tiers')
        lower = [] if one_tier else [t for t in LOWER_TIERS if getattr(config.cache.tiers, t).capacity_gib > 0]
        built = ["hbm", *lower]
        own = {t: getattr(config.cache.tiers, t).policy for t in built}
        if "cache.policy" in given and all(own.values()):
            tiers = ", ".join(f"{t} {p}" for t, p in own.items())
            yield "cache.policy", (f"every tier of this run has its own policy ({tiers}: cache.tiers.<tier>.policy), "
                                   "so cache.policy evicts from none; drop it, or a tier's own")
    # (the thresholds are read by a prefix-aware decode router too: sim.serving.decode_queues)
    thresholds = () if prefix_aware_decode_router(mode, config) else ROUTER_THRESHOLD_KEYS
    if _instances(mode, config) == 1:  # (one instance: every router sends every request to it)
        one = "one prefill instance" if mode == "cluster --pd" else "one instance"
        for key in ("cluster.router", *thresholds):
            if key in given:
                yield key, f"this run has {one}: every request goes to it, whatever the router"
    if mode == "pd" and config.pd.num_prefill == 1:  # (pd.router picks a prefill instance: sim.serving.run; its
        # decode instance is bound by sim.serving.decode_queues whatever it says)
        for key in ("pd.router", *thresholds):
            if key in given:
                yield key, "pd.num_prefill is 1: every request goes to that prefill instance, whatever the router"
    if "pd.decode_router" in given and config.pd.num_decode == 1 and (  # (a cluster binds another rack's only when
            mode == "pd" or mode == "cluster --pd" and config.cluster.num_racks == 1):  # its own has no room)
        yield "pd.decode_router", ("pd.num_decode is 1" + (" in one rack" if mode != "pd" else "") +
                                   ": every request is bound to that decode instance, whatever the decode router")
    if "pd.decode_router" in given and mode in ("pd", "cluster --pd") and not config.serving.enable_prefix_caching:
        # (sim.serving.decode_queues.prefix_aware: no decode instance holds a prefix, so it ranks as least-loaded)
        yield "pd.decode_router", ("with serving.enable_prefix_caching=false no decode instance holds a prefix: "
                                   "every decode router binds as least-loaded does")
    if mode in CLUSTERS:
        yield from _unread_uplink(config, given)
        yield from _unread_nic(config, given)
    if mode in ("pd", *CLUSTERS) and config.network.lookup:
        yield from _unread_beside_lookup(mode, config, given)
    if serving and _bundle(config):  # (--check-calibration compares the bundle with the roofline: read there)
        for key in ROOFLINE_KEYS:
            if key in given:
                yield key, (f"compute.profile {config.compute.profile} is an LLMServingSim bundle, which times every "
                            "operator from its tables: the roofline's constants price none of a step")
    if "seed" in given and (serving or mode in ("cache-only", "trace-stats")) and not _draws_from_seed(config):
        yield "seed", (f"the trace {config.workload.trace} is replayed as recorded: nothing draws from the seed (a "
                       "synthetic workload, workload.arrivals.process or --mrc-sample-rate below 1 would)")
    if serving and not max_rate and "slo.attainment" in given:
        yield "slo.attainment", ("read only by --max-rate (the share of requests that must meet slo.ttft_s/tpot_s); "
                                 "a run reports its slo_attainment whatever the target")


def _draws_from_seed(config: Config) -> bool:
    """Whether the run draws anything from ``seed``: the synthetic generator and the arrival process
    (trace.workload.load_workload), and the SHARDS sampling of a miss-ratio curve below rate 1 (sim.cache.replay);
    nothing else in a run is random (DESIGN: every draw from a generator passed down)."""
    workload = config.workload
    return workload.trace is None or workload.arrivals.process != "trace" or config.cache.mrc_sample_rate < 1


def _bundle(config: Config) -> bool:
    """Whether the run's steps are timed by an LLMServingSim bundle (as sim.serving.compute_backend tells one: a
    profile folder with meta.yaml and no Vidur mlp.csv)."""
    from pathlib import Path

    if config.compute.backend != "profiled" or not config.compute.profile:
        return False
    folder = Path(config.compute.profile)
    return not (folder / "mlp.csv").is_file() and (folder / "meta.yaml").is_file()


def learned_tier_policies(config: Config, built_too: bool = False) -> dict[str, str]:
    """Each lower tier's ``policy: learned`` of capacity 0 (with ``built_too``: of any capacity) wherever it was set (a
    config file, an overlay, ``--set``), as a key given. A learned policy comes with a model to train and give, so on
    a tier never built it is refused with the message ``--set`` gets (``unread_with_others``) whether a file or the
    command line set it (a file's asked for a model nothing would use). Another policy a shared file names for a
    tier it sizes 0 is left alone, as a file's other keys a run does not read are."""
    tiers = config.cache.tiers
    keys = (f"cache.tiers.{tier}.policy" for tier in LOWER_TIERS if getattr(tiers, tier).policy == "learned"
            and (built_too or getattr(tiers, tier).capacity_gib == 0))
    return {key: f"config key '{key}'=learned" for key in keys}


def prefix_aware_decode_router(mode: str, config: Config) -> bool:
    """Whether a prefix-aware decode router chooses among decode instances here, under the prefix-aware router's
    thresholds (``cluster.*``: sim.serving.decode_queues): --pd's with more than one, a cluster's in a rack with more
    than one or across racks (another rack's when its own have no room)."""
    return (mode in ("pd", "cluster --pd") and config.pd.decode_router == "prefix-aware" and
            (config.pd.num_decode > 1 or mode == "cluster --pd" and config.cluster.num_racks > 1))


def _instances(mode: str, config: Config) -> int | None:
    """The instances a router chooses among: the single-node mode's workers, a cluster's racks x nodes x instances
    per node (sim.cluster.topology; None where the TP does not divide the node, which its own check names)."""
    if mode == "single":
        return config.serving.num_instances
    gpus, tp = config.hardware.gpus_per_node, config.serving.tensor_parallel_size
    if mode == "cluster" and gpus % tp == 0:
        return config.cluster.num_racks * config.cluster.nodes_per_rack * (gpus // tp)
    if mode == "cluster --pd":  # (cluster.router picks the prefill instance, pd.num_prefill a rack; pd.decode_router
        return config.cluster.num_racks * config.pd.num_prefill  # binds the decode one)
    return None


def _unread_uplink(config: Config, given: dict[str, str]) -> Iterator[tuple[str, str]]:
    """A rack's uplink carries only traffic between racks (sim.cluster.run: cross-rack paths); a given uplink
    bandwidth replaces the one derived from the oversubscription."""
    if config.cluster.num_racks == 1:
        for key in UPLINK_KEYS:
            if key in given:
                yield key, "cluster.num_racks is 1: no traffic crosses a rack's uplink"
    elif config.cluster.uplink_gbps is not None and "cluster.oversubscription" in given:
        yield "cluster.oversubscription", (f"cluster.uplink_gbps={config.cluster.uplink_gbps:g} sets the uplink itself "
                                           "(the oversubscription only derives it when uplink_gbps is null); drop one")


def _unread_nic(config: Config, given: dict[str, str]) -> Iterator[tuple[str, str]]:
    """A node's NIC (``network.*``'s link) carries only what crosses nodes or comes from a rack's EIC
    (sim.cluster.fetch ``_path_links``, sim.cluster.run ``_kv_link``: within a node KV moves over NVLink or PCIe):
    a cluster of one node without an EIC sends nothing over it."""
    cluster = config.cluster
    if cluster.num_racks * cluster.nodes_per_rack == 1 and config.cache.tiers.eic.capacity_gib == 0:
        for key in NIC_KEYS:
            if key in given:
                yield key, ("the cluster has one node (cluster.num_racks x nodes_per_rack = 1) and no EIC "
                            "(cache.tiers.eic.capacity_gib=0): nothing crosses a node's network link")


def _unread_beside_lookup(mode: str, config: Config, given: dict[str, str]) -> Iterator[tuple[str, str]]:
    """``network.lookup`` times every transfer from its table (sim.serving.network.network_model); a cluster still
    derives its racks' uplinks from network.bandwidth_gbps when cluster.uplink_gbps is null."""
    derives_uplink = mode in CLUSTERS and config.cluster.num_racks > 1 and config.cluster.uplink_gbps is None
    for key in ("network.latency_us", *(() if derives_uplink else ("network.bandwidth_gbps",))):
        if key in given:
            yield key, f"network.lookup ({config.network.lookup}) times every transfer from its table"


def check_sets_read(sets: list[str], config: Config, mode: str, what: str,
                    unread_prefixes: tuple[str, ...] = ()) -> None:
    """A script's ``--set KEY=VALUE`` settings over a run of ``mode`` (``what`` names it in errors), each read as
    main.py's own ``--set`` is judged (``sim.cli.check_flags``, ``sim.mode_settings.check_settings_given``); keys under
    ``unread_prefixes`` the script itself never reads (e.g. ``slo.``: it compares latencies, not an attainment)."""
    from sim.errors import InputError
    from sim.mode_settings import NEVER_READ, check_settings_given, given_by_set, setting_users

    given = given_by_set(sets)
    for key, said in given.items():
        if key in NEVER_READ:
            raise InputError(f"{said}: no mode reads it ({NEVER_READ[key]})")
        users = setting_users(key, mode)
        if users is not None or key.startswith(unread_prefixes):
            raise InputError(f"{said}: not used by {what}" + (f" (it applies to {users})" if users else ""))
    check_settings_given(mode, config, [config.cache.policy], given)
