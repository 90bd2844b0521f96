"""Typed, frozen configuration: the schema, and YAML + overlays + presets + ``--set`` resolved into it.

Every layer is validated against the same dataclass schema, so an unknown key or a
wrong type fails with the full dotted path wherever it came from (config file,
calibration overlay, preset or command line). The dataclass defaults are the
single source of default values; ``config.yaml`` documents them (a test keeps the
two equal). How a field declares and checks its values is ``sim.config_fields``,
reading YAML is ``sim.config_yaml``, and the rules relating several keys are ``sim.config_rules``;
the ``workload`` section's schema is ``sim.config_workload``.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from sim.config_fields import FRACTION, POSITIVE, build_dataclass, deep_merge, domain, set_dotted
from sim.config_rules import validate
from sim.config_workload import WorkloadConfig
from sim.config_yaml import (
    GPU_PATH_HINT,
    MODEL_PATH_HINT,
    expand_home_paths,
    parse_set,
    read_config_file,
    resolve_paths,
)
from sim.errors import ConfigError

# ------------------------------------------------------------------------ value bounds

MAX_INSTANCES = 1024  # instances per role (single-node workers, PD prefill/decode): a documented scale bound
# Physical quantities: far outside any real hardware, yet every simulated duration stays finite and far above float
# precision. Past them a capacity overflowed to NaN blocks (traceback), and a transfer or step of ~1e300 s stalled the
# engine or left negative queue times in the report.
MAX_CAPACITY_GIB = float(2**30)  # 1 EiB per tier: capacity_gib x 2**30 bytes stays finite, block counts within int64
MIN_GBPS = 1e-3  # 1 MB/s (network: 1 Mb/s): llama-3.1-70b's 262,144-token KV (320 KiB a token, 86 GB) moves in a day
MAX_LATENCY_US = 3.6e9  # an hour, the bound on profiled times too (sim.serving.profile_files.MAX_PROFILED_TIME_S)
MIN_EFFICIENCY = 1e-3  # compute.*_efficiency: a step 1,000x slower than the roofline at most
# SHARDS keeps the blocks whose hash (mod 2**24, sim.cache.mrc.SHARDS_MODULUS) is below rate x 2**24: below this, none
MIN_MRC_SAMPLE_RATE = 2**-24
CAPACITY = {"ge": 0, "le": MAX_CAPACITY_GIB}
BANDWIDTH = {"ge": MIN_GBPS}
LATENCY = {"ge": 0, "le": MAX_LATENCY_US}
EFFICIENCY = {"ge": MIN_EFFICIENCY, "le": 1}

# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class HardwareConfig:
    """The GPU kind (a name in ``profiles/gpus.yaml``, or a path to a YAML file of one GPU in its fields) and the
    node shape."""

    gpu: str = domain("h100-sxm", names="sim.specs:known_gpus", or_path=GPU_PATH_HINT,
                      canonical="sim.specs:canonical_gpu")
    gpus_per_node: int = domain(8, ge=1, le=MAX_INSTANCES)
    # GB/s per direction between GPUs of a node; None: the GPU's own link (profiles/gpus.yaml)
    gpu_link_gbps: float | None = domain(None, **BANDWIDTH)
    gpu_link_latency_us: float | None = domain(None, **LATENCY)  # per ring step; None: the GPU's own link
    # GB/s per direction between one GPU and its host (cluster mode: DRAM/SSD/NIC traffic into HBM).
    # PCIe 5.0 x16: 32 GT/s x 16 lanes x 128/130 encoding / 8 = 63 GB/s per direction (PCI-SIG PCIe 5.0 spec).
    pcie_gbps: float = domain(63.0, **BANDWIDTH)


@dataclass(frozen=True)
class ServingConfig:
    """Engine settings, named and meant as in vLLM's ``EngineArgs``."""

    tensor_parallel_size: int = domain(1, ge=1)
    # vLLM's data_parallel_size, for a mixture of experts: groups of this many instances (each
    # tensor_parallel_size GPUs of one node) shard their MoE layers over the group's GPUs (sim.serving.moe)
    data_parallel_size: int = domain(1, ge=1)
    # vLLM's enable_expert_parallel, read at data_parallel_size > 1: true, each GPU of a group holds whole experts
    # (E / (D x TP)); false, every expert is split by width over the group's D x TP GPUs (vLLM's CLI default; kvsim's
    # default stays true, the layout its data-parallel results and goldens were made with: README)
    enable_expert_parallel: bool = True
    # tokens per KV block; None: vLLM 0.33's for the model and GPU, as its attention backend picks it (16; 32 for
    # multi-head latent attention on B200; 64 for DeepSeek sparse attention; a Gated DeltaNet hybrid's raised to hold
    # a state: sim.serving.engine_limits.block_size)
    block_size: int | None = domain(None, ge=1)
    # a step's sequences and tokens; None: vLLM's default for the GPU, as `vllm serve` picks it (1,024 and 8,192 on
    # an H100 or H200, 1,024 and 16,384 on a B200, 256 and 2,048 on an A100 or a smaller GPU: sim.serving.engine_limits)
    max_num_seqs: int | None = domain(None, ge=1)
    max_num_batched_tokens: int | None = domain(None, ge=1)
    gpu_memory_utilization: float = domain(0.92, **FRACTION)  # vLLM 0.33's default (vllm/config/cache.py)
    num_gpu_blocks: int | None = domain(None, ge=1)  # overrides the KV capacity computed from memory
    enable_prefix_caching: bool = True
    num_instances: int = domain(4, ge=1, le=MAX_INSTANCES)
    dtype: Literal["bf16", "fp16", "fp32", "fp8"] = "bf16"
    kv_cache_dtype: Literal["auto", "bf16", "fp16", "fp32", "fp8"] = "auto"
    # vLLM's max_model_len: a request whose prompt + output exceeds it is rejected (None: the model's context,
    # or its sliding window where narrower: ModelSpec.longest_request).
    # At least 2: a request has a prompt token and decodes one (at 1 the synthetic chat made empty prompts)
    max_model_len: int | None = domain(None, ge=2)
    # vLLM's SchedulerConfig.scheduler_reserve_full_isl (default true since it exists; the measured vLLM 0.19 run's
    # resolved config has it): a waiting or preempted request is admitted only when its whole sequence (prompt, plus
    # output so far) fits the free KV blocks (KVCacheManager.allocate_slots(full_sequence_must_fit=True)), not only
    # its first prefill chunk. false: the first chunk alone, as vLLM before it.
    scheduler_reserve_full_isl: bool = True
    # vLLM's SchedulerConfig.async_scheduling (on by default when supported; the measured vLLM 0.19 run's resolved
    # config has it): the engine plans step k+1 while step k runs (EngineCore.step_with_batch_queue, two batches in
    # flight), so a request arriving during a step joins the step after next, and a finished request's slot and
    # blocks are free for the step after next. false: plan each step after the one before it ends (vLLM's sync loop).
    async_scheduling: bool = True
    # vLLM's SchedulerConfig.disable_hybrid_kv_cache_manager (default false): for a model mixing sliding-window and
    # full-attention layers (gpt-oss, Gemma 2/3), vLLM's hybrid KV-cache manager keeps the sliding layers' blocks of
    # the window only (sim.serving.hybrid_kv_cache_manager; modelled in the serving modes, single node, PD and
    # cluster; --cache-only needs it off); true: every layer keeps its whole KV, as vLLM with
    # --disable-hybrid-kv-cache-manager or a KV connector without hybrid support (LMCache's) (it treats the sliding
    # layers' KV as full attention's; they still slide)
    disable_hybrid_kv_cache_manager: bool = False
    # How a TP group all-reduces. auto: as vLLM 0.33, its one-kernel all-reduces over peer memory (FlashInfer's, its
    # custom all-reduce) where the GPUs are all joined by NVLink (or are a PCIe pair with peer access) and the kernel
    # beats NCCL (in its fastest protocol, sim.serving.nccl_protocols), past their size limits
    # NVLink multicast on Hopper and Blackwell NVSwitch boards (torch symmetric memory's), else NCCL: its ring, or its
    # NVLS over those switches where faster (sim.serving.collectives). nccl: NCCL alone, as vLLM with
    # --disable-custom-all-reduce and VLLM_ALLREDUCE_USE_FLASHINFER=0 VLLM_ALLREDUCE_USE_SYMM_MEM=0, or the engines of
    # 2023 before these kernels. A property of the engine, so an engine's overlay may carry it to any run (an instance
    # of one GPU has no collectives).
    all_reduce: Literal["auto", "nccl"] = "auto"
    # vLLM's --enforce-eager: no CUDA graphs, so the KV budget keeps the graphs' memory estimate
    # (sim.serving.memory_profile), no step is padded to a captured size (sim.serving.cudagraph, data_parallel), and
    # every step pays compute.launch_layer_us a layer (sim.serving.host_time; 0 by default: no launch overhead)
    enforce_eager: bool = False
    # vLLM's --language-model-only (MultiModalConfig.language_model_only): a multimodal model (Gemma 3, Qwen3.5) served
    # as text only, every modality's limit 0: vLLM builds no vision tower (no tower weights) and its profile run no
    # encoder pass (sim.vision_towers). No effect on a text-only model.
    language_model_only: bool = False


@dataclass(frozen=True)
class TierConfig:
    """One storage tier: capacity, bandwidth (GB/s = 1e9 B/s) and access latency."""

    capacity_gib: float = domain(0.0, **CAPACITY)
    read_gbps: float = domain(1.0, **BANDWIDTH)
    write_gbps: float = domain(1.0, **BANDWIDTH)
    latency_us: float = domain(0.0, **LATENCY)
    policy: str | None = domain(None, names="sim.cache.policies:POLICIES",
                                 canonical="sim.cache.policies:canonical_policy")  # None: use cache.policy
    # What all readers of one copy (a node's SSD, a rack's EIC) share, GB/s: their loads queue for it, first
    # come first served, and the copy's writes (bytes / write_gbps each) fill its idle time, a load waiting only for
    # the write in service (sim.cache.tiers.Tier.charge_writes). None: every reader has read_gbps to itself and
    # writes take no time (DRAM: each GPU its own PCIe link, one direction each).
    shared_read_gbps: float | None = domain(None, **BANDWIDTH)


@dataclass(frozen=True)
class EICTierConfig(TierConfig):
    """The rack-shared pool (EIC) and how its store lays out a block's pages (``sim.cache.tiers.tier_block_bytes``)."""

    # per-rank: every TP rank's page of a block, a KV head a rank only replicates (TP above the KV-head count) included
    # (as DRAM/SSD: vLLM's OffloadingConnector); distinct: each distinct page once, as vLLM's MooncakeStoreConnector
    # keys a block per TP shard and stripes its PUTs over the ranks holding identical bytes (``put_step``); every rank
    # still GETs its own page, so loads read what per-rank reads. Equal at TP <= KV heads and for MLA's latent.
    layout: Literal["per-rank", "distinct"] = "per-rank"


@dataclass(frozen=True)
class TiersConfig:
    """HBM → host DRAM → local SSD → rack-shared CXL/RDMA memory (EIC)."""

    # HBM capacity 0 means "derive from GPU memory and gpu_memory_utilization". 3,350 GB/s: the H100 SXM's HBM3
    # (H100 datasheet, as profiles/gpus.yaml h100-sxm); an HBM hit is not charged a load, so these are never read.
    hbm: TierConfig = TierConfig(capacity_gib=0.0, read_gbps=3350.0, write_gbps=3350.0, latency_us=0.0)
    # PCIe Gen5 x16 host link ~64 GB/s per direction (PCI-SIG spec); ~50 GB/s usable and 5 us: unsourced, round
    # figures below that raw rate (no measurement of a GPU's pinned-host KV loads is cited).
    dram: TierConfig = TierConfig(capacity_gib=256.0, read_gbps=50.0, write_gbps=50.0, latency_us=5.0)
    # One NVMe Gen4 SSD: ~7 GB/s read is the PCIe 4.0 x4 class (7.9 GB/s raw); ~5 GB/s write and ~80 us access are
    # unsourced round figures of that class (no one drive's datasheet is cited).
    ssd: TierConfig = TierConfig(capacity_gib=2048.0, read_gbps=7.0, write_gbps=5.0, latency_us=80.0,
                                 shared_read_gbps=7.0)  # the node's GPUs read the one SSD
    # Rack-shared pool over 400 Gb/s RDMA NICs (= 50 GB/s); 0 GiB disables it. 10 us: unsourced, a round figure for
    # an RDMA read through the rack switch.
    eic: EICTierConfig = EICTierConfig(capacity_gib=0.0, read_gbps=50.0, write_gbps=50.0, latency_us=10.0)


@dataclass(frozen=True)
class CacheConfig:
    """Prefix-cache policy and tier layout."""

    policy: str = domain("lru", names="sim.cache.policies:POLICIES", canonical="sim.cache.policies:canonical_policy")
    learned_model: str | None = None
    allow_train_test_overlap: bool = False  # let a learned model be judged on the requests it was trained on
    inclusion: Literal["exclusive", "inclusive"] = "exclusive"
    access_semantics: Literal["auto", "plain", "prefix"] = "auto"
    capacity_blocks: int | None = domain(None, ge=1)  # cache-only: single-tier capacity in blocks
    mrc_sample_rate: float = domain(1.0, ge=MIN_MRC_SAMPLE_RATE, le=1)  # --mrc: 1 = exact; below 1 = SHARDS spatial sampling rate
    admission: Literal["none", "selective_write"] = "none"
    selective_write_depth: int = domain(64, ge=1)  # selective_write: keep only the first k blocks of each prompt
    prefetch: Literal["none", "session"] = "none"  # session: a turn prefetches its previous turn's blocks
    # cache-only: each request's generated blocks enter the cache after its prompt, as a vLLM server caches answers
    # (their ids as workload.outputs_in_next_turn reads them); hit ratios count prompt blocks only
    insert_outputs: bool = False
    tiers: TiersConfig = TiersConfig()


@dataclass(frozen=True)
class ComputeConfig:
    """How step times are predicted."""

    backend: Literal["roofline", "profiled"] = "roofline"
    profile: str | None = None  # a Vidur profile or LLMServingSim bundle directory
    # measured TP collectives: a Vidur network profile directory, a hardware.yaml or an AIConfigurator
    # custom_allreduce_perf or nccl_perf table (.parquet or .txt)
    collectives: str | None = None
    skew_correction: Literal["auto", "always", "never"] = "auto"  # LLMServingSim bundles: auto = as meta.yaml says
    # the roofline (sim.serving.compute, sim.serving.kernel_floors): GEMMs' and attention's shares of the FLOP peak,
    # the share of the memory bandwidth, the GPU time floors of each GEMM kernel and each layer's attention call, and
    # each attention thread block's fixed time (sim.serving.attention_waves);
    # fitted across six GPUs to NVIDIA AIConfigurator's measured vLLM operators (tools/README.md)
    flops_efficiency: float = domain(0.77, **EFFICIENCY)
    bandwidth_efficiency: float = domain(0.82, **EFFICIENCY)
    # None: the GPU's attention kernel's (sim.serving.attention_waves: FlashAttention 3 on Hopper 0.66, else 0.54)
    attention_efficiency: float | None = domain(None, **EFFICIENCY)
    gemm_floor_us: float = domain(3.1, **LATENCY)
    attention_floor_us: float = domain(11.1, **LATENCY)
    attention_tile_us: float = domain(4.5, **LATENCY)
    # the host's part of a step (sim.serving.host_time): serial per step and per scheduled sequence, and launching
    # one layer's kernels when the step runs without a CUDA graph (overlapped with the GPU)
    host_step_us: float = domain(0.0, **LATENCY)
    host_sequence_us: float = domain(0.0, **LATENCY)
    launch_layer_us: float = domain(0.0, **LATENCY)


@dataclass(frozen=True)
class NetworkConfig:
    """Inter-node links (KV transfer, EIC access)."""

    # Gb/s, as NICs are rated. 100: a kvsim choice, the link of the SimAI/Vidur RTX 5090 P/D study kvsim replays
    # (profiles/rtx5090_llama3_8b_pd_study.yaml); 5 us: unsourced, a round per-transfer figure
    bandwidth_gbps: float = domain(100.0, **BANDWIDTH)
    latency_us: float = domain(5.0, **LATENCY)
    lookup: str | None = None  # an NS-3 bytes→seconds table JSON
    contention: bool = True


@dataclass(frozen=True)
class ClusterConfig:
    """Racks of GPU nodes behind a router (``sim.cluster``): GPUs = racks x nodes x hardware.gpus_per_node."""

    num_racks: int = domain(1, ge=1, le=100_000)
    nodes_per_rack: int = domain(4, ge=1, le=MAX_INSTANCES)
    router: str = domain("prefix-aware", names="sim.serving.routers:ROUTERS")
    # Rack uplink to the spine: None = the rack's NICs (nodes x network.bandwidth_gbps) over the oversubscription.
    uplink_gbps: float | None = domain(None, **BANDWIDTH)  # Gb/s
    # Downlink : uplink capacity of a rack switch. 1 = non-blocking fat tree, as NVIDIA's DGX SuperPOD
    # reference architecture builds its compute fabric; 3 is common in oversubscribed Ethernet leaf-spine.
    oversubscription: float = domain(1.0, ge=1)
    # One more switch tier each way (leaf -> spine -> leaf): ~1 us, above 400G switch datasheets'
    # sub-microsecond port-to-port latency (e.g. NVIDIA Quantum-2: 130 ns).
    uplink_latency_us: float = domain(1.0, **LATENCY)
    # prefix-aware router (SGLang's cache-aware router; defaults: sgl-router v0.1's Python Router, 0.50 / 32 /
    # 1.0001; today's sgl-router router_args.py has 0.3 / 64 / 1.5): route by cached prefix when
    # the matched fraction exceeds cache_threshold, unless loads are imbalanced: max - min load >
    # balance_abs_threshold and max > balance_rel_threshold x min (then the least loaded).
    cache_threshold: float = domain(0.5, ge=0, le=1)
    balance_abs_threshold: int = domain(32, ge=0)
    balance_rel_threshold: float = domain(1.0001, ge=1)


@dataclass(frozen=True)
class PDConfig:
    """Prefill/decode disaggregation."""

    num_prefill: int = domain(1, ge=1, le=MAX_INSTANCES)
    num_decode: int = domain(1, ge=1, le=MAX_INSTANCES)
    transfer: Literal["push", "pull", "layerwise"] = "push"
    router: str = domain("least-loaded", names="sim.serving.routers:ROUTERS")
    # how a request's decode instance is chosen at dispatch (sim.serving.decode_queues): least-loaded (requests bound
    # and not finished, then KV in use) | prefix-aware (the longest prompt prefix in its HBM first: fewer blocks sent)
    decode_router: str = domain("least-loaded", names="sim.serving.decode_queues:DECODE_ROUTERS")
    # GPUs of each prefill / decode instance (vLLM's tensor_parallel_size of that role's engines); None:
    # serving.tensor_parallel_size. The larger must be a multiple of the smaller (vLLM's NixlConnector,
    # TransferTopology.tp_ratio); the KV crosses as its TP mapping says (sim.serving.tp_transfer)
    prefill_tensor_parallel_size: int | None = domain(None, ge=1)
    decode_tensor_parallel_size: int | None = domain(None, ge=1)


@dataclass(frozen=True)
class SLOConfig:
    """Latency targets; None means no target (a request with no target never counts as passing)."""

    ttft_s: float | None = domain(None, **POSITIVE)
    tpot_s: float | None = domain(None, **POSITIVE)
    attainment: float = domain(0.9, **FRACTION)


_DEFAULT_PRESETS: dict[str, dict[str, Any]] = {
    # Each preset is a map of dotted keys applied over the config, validated like --set.
    "smoke": {"workload.limit": 2000, "workload.synthetic.num_requests": 500},
    "dev": {"workload.limit": 20000, "workload.synthetic.num_requests": 5000},
    "prod-eval": {"workload.limit": None, "workload.synthetic.num_requests": 100000},
    # Applied after "prod-eval" in cluster mode (PRESET@MODE): the 10,240-GPU fleet of kvcache-sim's default
    # and a multi-turn workload sized so it is busy but not swamped (numbers explained in config.yaml).
    "prod-eval@cluster": {"cluster.num_racks": 160, "cluster.nodes_per_rack": 8, "hardware.gpus_per_node": 8,
                          "workload.synthetic.kind": "multi-turn", "workload.synthetic.num_requests": 1_000_000,
                          "workload.synthetic.rate_rps": 5_000.0,
                          "workload.synthetic.input_tokens_mean": 512, "workload.synthetic.output_tokens_mean": 128},
}


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of one kvsim invocation."""

    # a name in profiles/models.yaml, or a path to a Hugging Face config.json or its folder (sim.hf_config)
    model: str = domain("llama-3.1-8b", names="sim.specs:known_models", or_path=MODEL_PATH_HINT,
                        canonical="sim.specs:canonical_model")
    seed: int = domain(0, ge=0)  # numpy's SeedSequence takes non-negative integers
    hardware: HardwareConfig = HardwareConfig()
    serving: ServingConfig = ServingConfig()
    cache: CacheConfig = CacheConfig()
    compute: ComputeConfig = ComputeConfig()
    network: NetworkConfig = NetworkConfig()
    cluster: ClusterConfig = ClusterConfig()
    pd: PDConfig = PDConfig()
    workload: WorkloadConfig = WorkloadConfig()
    slo: SLOConfig = SLOConfig()
    presets: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(_DEFAULT_PRESETS))

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for reports), in schema order."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------- loading

# The modes ``load_config`` is given (``sim.cli.select_mode``'s for a run's own mode; a sweep's or a plan's runs'
# modes): the MODE of a preset named PRESET@MODE, applied after PRESET in that mode only.
PRESET_MODES = ("trace-stats", "cache-only", "single", "pd", "cluster", "check-calibration")


def _validated(layer: Mapping[str, Any], source: str) -> None:
    try:
        build_dataclass(Config, layer, "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def set_layer(assignment: str, source: str = "--set") -> dict[str, Any]:
    """One ``KEY=VALUE`` setting as a config layer, its key and value checked on their own (type, domain; the rules
    between keys are the whole config's, ``validate``); the message names the key and quotes the value (once, cut
    to ~100 characters)."""
    key, value = parse_set(assignment)
    _not_a_preset(key, source)
    if value == {}:  # merged over the section as it is: --set cache.tiers.dram={} left the tier as it was
        raise ConfigError(f"{source} {key}={{}}: an empty mapping sets nothing (a mapping merges over the keys "
                          f"there); set them, e.g. {source} {key}.KEY=VALUE")
    return _checked_layer({key: value}, source)


def load_config(
    path: str | Path | None = None,
    overlays: typing.Sequence[str | Path] = (),
    preset: str | None = None,
    sets: typing.Sequence[str] = (),
    flags: typing.Sequence[tuple[str, str, Any]] = (),
    mode: str | None = None,
    rules: bool = True,
    layers: dict[Path, dict[str, Any]] | None = None,
) -> Config:
    """Resolve the config: base file, then overlays in order, then the preset (and ``PRESET@mode`` when the
    mode has one), then ``--set``s, then ``flags`` (``(flag, dotted key, value)`` of the command line's dedicated flags, named in errors).
    ``rules``: the rules between keys checked on the result (``sim.config_rules.validate``); a sweep's base leaves
    them to its points, whose axes may supply what the base lacks (its trace). ``layers``: filled with each file's
    layer as read (by its path), for a caller that asks what one file set without reading it again.

    ``path=None`` starts from the built-in defaults. Each layer is validated on its own
    so that an error names the file or flag it came from. Relative paths in a YAML file
    (``sim.config_yaml.PATH_KEYS``) are relative to that file; on the command line, to the working directory.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _file_layer(Path(path), "config file")
    replaced: dict[str, str] = {}  # a preset an overlay's presets replaced (a new set): by which overlay
    for overlay in overlays:
        layer = _file_layer(Path(overlay), "calibration profile")
        if layers is not None:
            layers[Path(overlay)] = layer
        if isinstance(layer.get("presets"), dict):
            before = raw.get("presets") if isinstance(raw.get("presets"), dict) else {}
            replaced |= {str(name): f"calibration profile {overlay}" for name in before if name not in layer["presets"]}
        raw = _merge_layer(raw, layer)
    if preset is not None:
        presets = build_dataclass(Config, raw, "").presets
        if preset not in presets or "@" in preset:  # (PRESET@MODE is a part of PRESET, applied in MODE with it)
            names = sorted(str(name) for name in presets if "@" not in str(name))
            why = (f" ({replaced[preset]}'s 'presets:' replaced those before it, {preset!r} among them: a file's "
                   "presets are a new set; copy it there)" if preset in replaced and "@" not in preset else "")
            raise ConfigError(f"unknown preset {preset!r}; valid presets: {', '.join(names) or 'none'}{why}")
        if not presets[preset] and f"{preset}@{mode}" not in presets:  # (a preset for another mode alone: a file's
            # 'P: {}' beside its parts, each applied in its mode; here it ran as none, unsaid)
            parts = sorted(str(name) for name in presets if str(name).startswith(f"{preset}@"))
            raise ConfigError(f"--preset {preset} sets nothing in {mode or 'these'} runs: {preset!r} sets no key, and "
                              f"its part{'s' if len(parts) > 1 else ''} {', '.join(parts)} appl"
                              f"{'y' if len(parts) > 1 else 'ies'} in {'those modes' if len(parts) > 1 else 'that mode'} "
                              "alone")
        for name in (preset, f"{preset}@{mode}"):  # PRESET@MODE: more keys for that mode only
            if name not in presets:
                continue
            raw = _merge_layer(raw, _checked_layer(presets[name], f"preset {name!r}"))
    for assignment in sets:
        raw = _merge_layer(raw, set_layer(assignment))
    for flag, key, value in flags:
        raw = _merge_layer(raw, _checked_layer({key: value}, flag))
    config = build_dataclass(Config, expand_home_paths(raw), "")
    if rules:
        validate(config)
    return config


def _not_a_preset(key: str, source: str) -> None:
    """Presets are applied (by ``--preset``) before ``--set`` and before a sweep's or plan's keys: an edit of one there
    changed nothing, while the report's config showed it; they are defined in a config file or an overlay."""
    if key == "presets" or key.startswith("presets."):
        raise ConfigError(f"{source}: config key {key!r} edits the presets, which --preset applies before it: it would "
                          f"change nothing; set the keys themselves, or define presets in --config or an overlay")


def _merge_layer(raw: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """``layer`` over ``raw``; its ``presets`` replace the base's whole (a new set, not edits of them)."""
    return deep_merge(raw, layer, whole=("presets",))


def _checked_layer(keys: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``_dotted_layer`` of ``keys``, validated on its own; a problem (a dotted key itself malformed too) names
    ``source``."""
    try:
        layer = _dotted_layer(keys)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    _validated(layer, source)
    return layer


def _dotted_layer(keys: dict[str, Any]) -> dict[str, Any]:
    """A nested config layer from dotted keys (``{"cache.policy": "arc"}``)."""
    layer: dict[str, Any] = {}
    for dotted, value in keys.items():
        set_dotted(layer, dotted, value)
    return layer


def _file_layer(path: Path, what: str) -> dict[str, Any]:
    """A config file or overlay as a layer, validated with every preset it defines (not only when
    ``--preset`` picks one: a typo would otherwise wait for the day someone uses it), its relative paths
    resolved against its folder."""
    source = f"{what} {path}"
    layer: dict[str, Any] | None = None
    try:
        layer = read_config_file(path, what)
        if not layer:  # (a wrong path's empty file, a truncated one: the run would be the defaults, unsaid)
            raise ConfigError(f"{source} is empty: a config file or overlay sets at least one key")
        _validated(layer, source)
    except ConfigError:
        _refuse_other_kind(path, source, layer)
        raise
    empty = _empty_mapping_in({k: v for k, v in layer.items() if k != "presets"})  # (presets: {} is a new set of none)
    if empty is not None:  # (merged over the section as it is: as --set KEY={}, it set nothing)
        raise ConfigError(f"{source}: config key {empty!r} is an empty mapping, which sets nothing: set the keys under "
                          "it or drop it")
    presets = layer.get("presets") or {}
    names = {str(name) for name in presets}
    for name, keys in presets.items():
        _checked_layer(keys, f"preset {name!r} of {source}")
        empty = _empty_mapping_in(keys)
        if empty is not None:
            raise ConfigError(f"{source}: preset {str(name)!r}: {empty!r} is an empty mapping, which sets nothing: set "
                              "the keys under it or drop it")
        whole, at, mode = str(name).partition("@")
        if at and mode not in PRESET_MODES:  # (a typo's preset was never applied)
            raise ConfigError(f"{source}: preset {str(name)!r}: {mode!r} is not a mode a preset applies in; "
                              f"PRESET@MODE takes one of {', '.join(PRESET_MODES)}")
        if at and whole not in names:  # (a file's presets are a new set: --preset WHOLE is unknown, the part never ran)
            raise ConfigError(f"{source}: preset {str(name)!r} is a part of preset {whole!r}, which this file does not "
                              f"define (a file's presets are a new set): define {whole!r} beside it")
        if keys == {} and (at or not any(other.startswith(f"{whole}@") for other in names)):
            # (a part, or a preset with none, that sets nothing: --preset ran it, unsaid; PRESET: {} beside a part
            # is a preset for that mode alone)
            raise ConfigError(f"{source}: preset {str(name)!r} is an empty mapping, which sets nothing: give its keys "
                              "or drop it")
    return resolve_paths(layer, path.parent)


def _empty_mapping_in(tree: Mapping[str, Any], prefix: str = "") -> str | None:
    """The dotted key of the first empty mapping in ``tree`` (a layer's sections, or a preset's dotted keys), if any."""
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found = dotted if not value else _empty_mapping_in(value, f"{dotted}.")
            if found is not None:
                return found
    return None


def _refuse_other_kind(path: Path, source: str, data: dict[str, Any] | None) -> None:
    """A file that failed as a config file or overlay but is another of kvsim's inputs (an NS-3 table, a GPU spec, a
    learned model's sidecar, a trace: ``sim.file_kinds``) is refused as that, with the flag or key that takes it."""
    from sim.file_kinds import other_kind

    said = other_kind(path, "config", data)
    if said is not None:
        raise ConfigError(f"{source}: {said}") from None


def replace(config: Config, **dotted: Any) -> Config:
    """A copy of ``config`` with dotted keys (``"cache.policy"``) changed, validated."""
    raw = config.to_dict()
    for key in dotted:
        _not_a_preset(key, "override")
    layer = _checked_layer(dotted, "override")
    config = build_dataclass(Config, _merge_layer(raw, layer), "")
    validate(config)
    return config
