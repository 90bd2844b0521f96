"""Typed, frozen configuration: YAML + overlays + presets + ``--set`` overrides.

Every layer is validated against the same dataclass schema, so an unknown key or a
wrong type fails with the full dotted path wherever it came from (config file,
calibration overlay, preset or command line). The dataclass defaults are the
single source of default values; ``config.yaml`` documents them (a test keeps the
two equal).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from sim.errors import ConfigError, quote


# ------------------------------------------------------------------------ value domains

INT64_MAX = 2**63 - 1
MAX_INSTANCES = 1024  # instances per role (single-node workers, PD prefill/decode): a documented scale bound
MAX_SYNTHETIC_REQUESTS = 100_000_000  # ten times the largest trace the loader is benchmarked on (10M rows)


@dataclass(frozen=True)
class Domain:
    """The values a config field accepts beyond its type (``None``, "unset", is always accepted).

    Declared next to the field (``block_size: int = domain(16, ge=1)``) and checked by the
    one schema walker (``_build``) for every layer, so a new key is validated by declaring it.
    ``names`` is a registry given as ``"module:attribute"`` (a mapping, or a function returning
    the names), imported only when checked.
    """

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    names: str | None = None

    def describe(self) -> str:
        parts = [f"{op} {bound:,}" for op, bound in ((">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le))
                 if bound is not None]
        return " and ".join(parts)

    def registry(self) -> list[str]:
        module, _, attr = self.names.partition(":")
        found = getattr(__import__(module, fromlist=[attr]), attr)
        return sorted(found() if callable(found) else found)

    def violation(self, value: Any) -> str | None:
        """Why ``value`` is outside the domain, or None."""
        if value is None:
            return None
        if self.names is not None:
            valid = self.registry()
            return None if value in valid else f"must be one of {', '.join(valid)}"
        below = (self.gt is not None and not value > self.gt) or (self.ge is not None and not value >= self.ge)
        above = (self.lt is not None and not value < self.lt) or (self.le is not None and not value <= self.le)
        return f"must be {self.describe()}" if below or above else None


def domain(default: Any, **bounds: Any) -> Any:
    """A dataclass field with its value domain (see ``Domain``)."""
    return field(default=default, metadata={"domain": Domain(**bounds)})


POSITIVE = {"gt": 0}
NON_NEGATIVE = {"ge": 0}
FRACTION = {"gt": 0, "le": 1}  # (0, 1]

# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class HardwareConfig:
    """The GPU kind (a name in ``profiles/gpus.yaml``) and the node shape."""

    gpu: str = domain("h100-sxm", names="sim.specs:known_gpus")
    gpus_per_node: int = domain(8, ge=1, le=MAX_INSTANCES)
    # GB/s per direction between GPUs of a node; None: the GPU's own link (profiles/gpus.yaml)
    gpu_link_gbps: float | None = domain(None, **POSITIVE)
    gpu_link_latency_us: float | None = domain(None, **NON_NEGATIVE)  # per ring step; None: the GPU's own link
    # GB/s per direction between one GPU and its host (cluster mode: DRAM/SSD/NIC traffic into HBM).
    # PCIe 5.0 x16: 32 GT/s x 16 lanes x 128/130 encoding / 8 = 63 GB/s per direction (PCI-SIG PCIe 5.0 spec).
    pcie_gbps: float = domain(63.0, **POSITIVE)


@dataclass(frozen=True)
class ServingConfig:
    """Engine settings, named and meant as in vLLM's ``EngineArgs``."""

    tensor_parallel_size: int = domain(1, ge=1)
    block_size: int = domain(16, ge=1)
    max_num_seqs: int = domain(256, ge=1)
    max_num_batched_tokens: int = domain(8192, ge=1)
    gpu_memory_utilization: float = domain(0.9, **FRACTION)
    num_gpu_blocks: int | None = domain(None, ge=1)  # overrides the KV capacity computed from memory
    enable_prefix_caching: bool = True
    num_instances: int = domain(4, ge=1, le=MAX_INSTANCES)
    dtype: Literal["bf16", "fp16", "fp32", "fp8"] = "bf16"
    kv_cache_dtype: Literal["auto", "bf16", "fp16", "fp32", "fp8"] = "auto"
    # vLLM's max_model_len: a request whose prompt + output exceeds it is rejected (None: the model's context)
    max_model_len: int | None = domain(None, ge=1)


@dataclass(frozen=True)
class TierConfig:
    """One storage tier: capacity, bandwidth (GB/s = 1e9 B/s) and access latency."""

    capacity_gib: float = domain(0.0, **NON_NEGATIVE)
    read_gbps: float = domain(1.0, **POSITIVE)
    write_gbps: float = domain(1.0, **POSITIVE)
    latency_us: float = domain(0.0, **NON_NEGATIVE)
    policy: str | None = domain(None, names="sim.cache.policies:POLICIES")  # None: use cache.policy


@dataclass(frozen=True)
class TiersConfig:
    """HBM → host DRAM → local SSD → rack-shared CXL/RDMA memory (EIC)."""

    # HBM capacity 0 means "derive from GPU memory and gpu_memory_utilization".
    hbm: TierConfig = TierConfig(capacity_gib=0.0, read_gbps=3350.0, write_gbps=3350.0, latency_us=0.0)
    # PCIe Gen5 x16 host link ~64 GB/s per direction (PCI-SIG spec); ~50 GB/s usable.
    dram: TierConfig = TierConfig(capacity_gib=256.0, read_gbps=50.0, write_gbps=50.0, latency_us=5.0)
    # One NVMe Gen4 SSD, ~7 GB/s read / ~5 GB/s write class (vendor datasheets), ~80 us access.
    ssd: TierConfig = TierConfig(capacity_gib=2048.0, read_gbps=7.0, write_gbps=5.0, latency_us=80.0)
    # Rack-shared pool over 400 Gb/s RDMA NICs (= 50 GB/s); 0 GiB disables it.
    eic: TierConfig = TierConfig(capacity_gib=0.0, read_gbps=50.0, write_gbps=50.0, latency_us=10.0)


@dataclass(frozen=True)
class CacheConfig:
    """Prefix-cache policy and tier layout."""

    policy: str = domain("lru", names="sim.cache.policies:POLICIES")
    learned_model: str | None = None
    allow_train_test_overlap: bool = False  # let a learned model be judged on the requests it was trained on
    inclusion: Literal["exclusive", "inclusive"] = "exclusive"
    access_semantics: Literal["auto", "plain", "prefix"] = "auto"
    capacity_blocks: int | None = domain(None, ge=1)  # cache-only: single-tier capacity in blocks
    mrc_sample_rate: float = domain(1.0, **FRACTION)  # --mrc: 1 = exact; below 1 = SHARDS spatial sampling rate
    admission: Literal["none", "selective_write"] = "none"
    selective_write_depth: int = domain(64, ge=1)  # selective_write: keep only the first k blocks of each prompt
    prefetch: Literal["none", "session"] = "none"  # session: a turn prefetches its previous turn's blocks
    tiers: TiersConfig = TiersConfig()


@dataclass(frozen=True)
class ComputeConfig:
    """How step times are predicted."""

    backend: Literal["roofline", "profiled"] = "roofline"
    profile: str | None = None  # a Vidur profile or LLMServingSim bundle directory
    collectives: str | None = None  # measured TP collectives: a Vidur network profile directory or a hardware.yaml
    skew_correction: Literal["auto", "always", "never"] = "auto"  # LLMServingSim bundles: auto = as meta.yaml says
    flops_efficiency: float = domain(0.6, **FRACTION)
    bandwidth_efficiency: float = domain(0.8, **FRACTION)


@dataclass(frozen=True)
class NetworkConfig:
    """Inter-node links (KV transfer, EIC access)."""

    bandwidth_gbps: float = domain(100.0, **POSITIVE)  # Gb/s, as NICs are rated
    latency_us: float = domain(5.0, **NON_NEGATIVE)
    lookup: str | None = None  # an NS-3 bytes→seconds table JSON
    contention: bool = True


@dataclass(frozen=True)
class ClusterConfig:
    """Racks of GPU nodes behind a router (``sim.cluster``): GPUs = racks x nodes x hardware.gpus_per_node."""

    num_racks: int = domain(1, ge=1, le=100_000)
    nodes_per_rack: int = domain(4, ge=1, le=MAX_INSTANCES)
    router: str = domain("prefix-aware", names="sim.serving.routers:ROUTERS")
    # Rack uplink to the spine: None = the rack's NICs (nodes x network.bandwidth_gbps) over the oversubscription.
    uplink_gbps: float | None = domain(None, **POSITIVE)  # Gb/s
    # Downlink : uplink capacity of a rack switch. 1 = non-blocking fat tree, as NVIDIA's DGX SuperPOD
    # reference architecture builds its compute fabric; 3 is common in oversubscribed Ethernet leaf-spine.
    oversubscription: float = domain(1.0, ge=1)
    # One more switch tier each way (leaf -> spine -> leaf): ~1 us, above 400G switch datasheets'
    # sub-microsecond port-to-port latency (e.g. NVIDIA Quantum-2: 130 ns).
    uplink_latency_us: float = domain(1.0, **NON_NEGATIVE)
    # prefix-aware router (SGLang's cache-aware router, sgl-router defaults): route by cached prefix when
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


@dataclass(frozen=True)
class SyntheticConfig:
    """Seeded synthetic workload, used when no trace file is given."""

    kind: Literal["multi-turn", "system-prompt", "rag", "agentic"] = "multi-turn"
    num_requests: int = domain(2000, ge=1, le=MAX_SYNTHETIC_REQUESTS)
    rate_rps: float = domain(5.0, **POSITIVE)
    input_tokens_mean: int = domain(1024, ge=1)
    output_tokens_mean: int = domain(200, ge=1)
    num_sessions: int = domain(200, ge=1)  # agentic: concurrent agents (multi-turn conversations follow from the rate)
    # multi-turn: conversations start as a Poisson process at rate_rps / turns_mean. Turns per
    # conversation: beta-geometric with this mean (LMSYS-Chat-1M, Zheng et al., ICLR 2024, Table 1:
    # 2.0 turns per conversation; ShareGPT 3.5) ...
    turns_mean: float = domain(2.0, ge=1)
    # ... and this concentration (a + b of the Beta of each conversation's chance to go on; lower: the
    # chance rises faster with the turns taken; assumed, not measured).
    turns_concentration: float = domain(4.0, gt=1)
    # Seconds from one turn's arrival to the next's (response + the user's think time): log-normal.
    # Measured on the bundled Mooncake conversation trace (FAST'25) between turns found by prefix
    # containment (learned.features.previous_turn): quartiles 39 / 93 / 225 s, so median 93 s and
    # sigma (ln 225 - ln 39) / 1.349 = 1.3.
    think_time_median_s: float = domain(93.0, **POSITIVE)
    think_time_sigma: float = domain(1.3, ge=0)
    num_prefixes: int = domain(20, ge=1)  # system-prompt: distinct system prompts
    prefix_tokens: int = domain(1024, ge=0)  # system-prompt: tokens of each system prompt
    num_documents: int = domain(500, ge=1)  # rag: document pool size
    document_tokens: int = domain(2048, ge=1)  # rag: tokens per document
    documents_per_request: int = domain(2, ge=1)  # rag
    zipf_alpha: float = domain(1.0, ge=0)  # popularity skew of prefixes / documents (0: uniform)


@dataclass(frozen=True)
class ArrivalsConfig:
    """The arrival process laid over the workload's requests (kept in their order).

    ``trace`` keeps the trace's (or the synthetic generator's) own arrival times;
    ``poisson`` and ``gamma`` draw fresh inter-arrival times; ``resample`` re-draws the
    workload's own inter-arrival times (with replacement) and rescales them to the rate.
    """

    process: Literal["trace", "poisson", "gamma", "resample"] = "trace"
    rate_rps: float | None = domain(None, **POSITIVE)  # mean rate of the drawn process; None: the workload's own
    cv: float = domain(1.0, **POSITIVE)  # gamma: coefficient of variation of inter-arrival times (1 = Poisson, > 1 bursty)


@dataclass(frozen=True)
class WorkloadConfig:
    """Where requests come from and how rows are validated."""

    trace: str | None = None
    format: Literal["auto", "azure", "burstgpt", "mooncake", "splitwise", "llmservingsim"] = "auto"
    cache: str | None = None  # --workload-cache: the loaded trace kept here (trace/cache.py), rebuilt when stale
    limit: int | None = domain(None, ge=1)
    time_unit: Literal["s", "ms", "us", "ns"] | None = None  # None: the format's own unit
    strict_validation: bool = False
    # Traces with their own block ids (Mooncake: 512 tokens a block): "trace" replays them at the
    # trace's block size (the run's serving.block_size becomes it); "split" cuts each into
    # serving.block_size pieces; "error" refuses a serving.block_size that differs.
    block_mismatch: Literal["trace", "split", "error"] = "trace"
    max_input_tokens: int | None = domain(None, ge=1)  # truncate longer prompts to this many tokens (counted in the report)
    # A request whose prompt + output exceeds this is skipped and counted (too_many_tokens), so a
    # corrupt row never drives a huge allocation. None: the longest context of any model in
    # profiles/models.yaml (see request_token_bound).
    max_request_tokens: int | None = domain(None, ge=1)
    range_start: float = domain(0.0, ge=0, lt=1)  # use requests from this fraction of the trace (arrival order) ...
    range_end: float = domain(1.0, gt=0, le=1)  # ... up to this one: e.g. train on 0-0.5, evaluate on 0.5-1
    rate_scale: float = domain(1.0, **POSITIVE)  # divides every inter-arrival time (2 = twice the request rate)
    arrivals: ArrivalsConfig = ArrivalsConfig()
    synthetic: SyntheticConfig = SyntheticConfig()


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

    model: str = domain("llama-3.1-8b", names="sim.specs:known_models")
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


# ----------------------------------------------------------------------- validation


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it converted (ints to floats, dicts to dataclasses)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{path}': expected {_type_name(tp)}, got {quote(value)}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"config key '{path}': expected {_type_name(tp)}, got {quote(value)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{path}': expected a mapping, got {quote(value)}")
        return _build(tp, value, path)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{path}': expected a mapping, got {quote(value)}")
        _, inner = typing.get_args(tp)
        return {str(k): copy.deepcopy(v) if inner is Any else _convert(v, inner, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if -INT64_MAX - 1 <= value <= INT64_MAX:
                return value
            raise ConfigError(f"config key '{path}' must fit in a 64-bit integer, got {quote(value)}")
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value) if abs(value) < 1e308 else math.inf
        elif isinstance(value, str):  # YAML 1.1 reads "1e9" as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if math.isfinite(number):
                return number
            raise ConfigError(f"config key '{path}' must be a finite number, got {quote(value)}")
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - schema uses only the types above
        raise TypeError(f"unsupported config annotation {tp!r} at {path}")
    raise ConfigError(f"config key '{path}': expected {_type_name(tp)}, got {quote(value)}")


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    """Build dataclass ``cls`` from a (possibly partial) mapping; unknown keys are errors.

    A partial mapping for a nested section fills in from *that field's* default (e.g. the
    DRAM tier's own bandwidths), not from the section type's generic defaults.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            raise ConfigError(_unknown_key(path, prefix, list(fields)))
        default = _field_default(fields[key])
        if dataclasses.is_dataclass(default) and isinstance(value, Mapping):
            value = _merge(dataclasses.asdict(default), value)
        kwargs[key] = _convert(value, hints[key], path)
        _check_domain(fields[key], kwargs[key], path)
    return cls(**kwargs)


def _unknown_key(path: str, prefix: str, valid: list[str]) -> str:
    """Name the unknown key, suggest the closest valid one, and list the valid keys (cut short)."""
    leaf = path.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listed = ""
    for name in valid:
        if len(listed) > 70:
            listed += ", ..."
            break
        listed += (", " if listed else "") + name
    where = f"'{prefix}'" if prefix else "the top level"
    return f"unknown config key {quote(path)}{hint}; valid keys at {where}: {listed}"


def _check_domain(f: dataclasses.Field, value: Any, path: str) -> None:
    """The field's declared ``Domain`` (if any) accepts ``value``; else a ConfigError naming the key."""
    declared = f.metadata.get("domain")
    problem = declared.violation(value) if declared is not None else None
    if problem:
        raise ConfigError(f"config key '{path}' {problem}, got {quote(value)}")


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``over`` into a copy of ``base``; mappings merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict) and key != "presets":
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML was built with it: ~10x faster


class UniqueKeyLoader(_SAFE_LOADER):
    """PyYAML's safe loader, except that a mapping with the same key twice is an error.

    YAML requires unique keys, but PyYAML silently keeps the last one, so a config with the
    same section twice would run with half of it ignored. Merge keys (``<<``) may still be
    overridden, as YAML intends.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in first_line
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {quote(key)} (first at line {first_line[key]})", key_node.start_mark)
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A one-line description of a YAML error: line, column and problem (PyYAML's own text spans lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def load_yaml(text: str) -> Any:
    """Parse YAML text with ``UniqueKeyLoader``."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def parse_set(assignment: str) -> tuple[str, Any]:
    """Split ``dotted.key=value``; the value is read as a YAML scalar (``null``, ``true``, ``3``, ``0.5``)."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects dotted.key=value, got {quote(assignment)}")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {quote(key)}: cannot parse value {quote(raw)}: {_yaml_problem(exc)}") from None
    return key, value


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start})") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: {_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping, got {type(data).__name__}")
    return data


# Keys holding file or directory paths; in a YAML file they are relative to that file.
PATH_KEYS = ("workload.trace", "network.lookup", "compute.profile", "compute.collectives", "cache.learned_model")
# May name a directory (a profile bundle; a Vidur network profile); the others name files.
DIRECTORY_KEYS = ("compute.profile", "compute.collectives")
# Paths kvsim writes as well as reads (relative to a YAML file like PATH_KEYS, but need not exist yet).
CACHE_KEYS = ("workload.cache",)


def _resolve_paths(layer: dict[str, Any], base: Path) -> dict[str, Any]:
    """Rewrite relative path values of ``layer`` (read from a file in ``base``) relative to the cwd."""
    out = copy.deepcopy(layer)
    for dotted in PATH_KEYS + CACHE_KEYS:
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(leaf), str) and not Path(node[leaf]).is_absolute():
            node[leaf] = os.path.normpath(os.path.join(os.path.relpath(base), node[leaf]))
    return out


def _validated(layer: Mapping[str, Any], source: str) -> None:
    try:
        _build(Config, layer, "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config(
    path: str | Path | None = None,
    overlays: typing.Sequence[str | Path] = (),
    preset: str | None = None,
    sets: typing.Sequence[str] = (),
    flags: typing.Sequence[tuple[str, str, Any]] = (),
    mode: str | None = None,
) -> Config:
    """Resolve the config: base file, then overlays in order, then the preset (and ``PRESET@mode`` when the
    mode has one), then ``--set``s, then ``flags`` (``(flag, dotted key, value)`` of the command line's dedicated flags, named in errors).

    ``path=None`` starts from the built-in defaults. Each layer is validated on its own
    so that an error names the file or flag it came from. Relative paths in a YAML file
    (``PATH_KEYS``) are relative to that file; on the command line, to the working directory.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _load_yaml(Path(path))
        _validated(raw, f"config file {path}")
        raw = _resolve_paths(raw, Path(path).parent)
    for overlay in overlays:
        layer = _load_yaml(Path(overlay))
        _validated(layer, f"calibration profile {overlay}")
        raw = _merge(raw, _resolve_paths(layer, Path(overlay).parent))
    if preset is not None:
        presets = _build(Config, raw, "").presets
        if preset not in presets:
            raise ConfigError(f"unknown preset {preset!r}; valid presets: {', '.join(sorted(presets))}")
        for name in (preset, f"{preset}@{mode}"):  # PRESET@MODE: more keys for that mode only
            if name not in presets:
                continue
            layer: dict[str, Any] = {}
            for dotted, value in presets[name].items():
                _set_dotted(layer, dotted, value)
            _validated(layer, f"preset {name!r}")
            raw = _merge(raw, layer)
    for assignment in sets:
        key, value = parse_set(assignment)
        layer = {}
        _set_dotted(layer, key, value)
        _validated(layer, f"--set {quote(assignment)}")
        raw = _merge(raw, layer)
    for flag, key, value in flags:
        layer = {}
        _set_dotted(layer, key, value)
        _validated(layer, flag)
        raw = _merge(raw, layer)
    config = _build(Config, raw, "")
    validate(config)
    return config


def replace(config: Config, **dotted: Any) -> Config:
    """A copy of ``config`` with dotted keys (``"cache.policy"``) changed, validated."""
    raw = config.to_dict()
    layer: dict[str, Any] = {}
    for key, value in dotted.items():
        _set_dotted(layer, key, value)
    _validated(layer, "override")
    config = _build(Config, _merge(raw, layer), "")
    validate(config)
    return config


# ---------------------------------------------------------------- cross-field rules
# Each rule sees the whole resolved config and raises ConfigError naming the keys it relates.


def _tensor_parallel_fits_model(c: Config) -> None:
    """vLLM's rule: attention heads divide evenly over TP ranks; KV heads are split (kv_heads % tp == 0)
    or replicated (tp % kv_heads == 0). Source: vLLM ``ModelConfig.verify_with_parallel_config``
    ("Total number of attention heads must be divisible by tensor parallel size") and the
    assertion in ``QKVParallelLinear.__init__``."""
    from sim.specs import model_spec

    spec, tp = model_spec(c.model), c.serving.tensor_parallel_size
    kv = spec.num_kv_heads
    if spec.num_attention_heads % tp or (kv % tp and tp % kv):
        raise ConfigError(
            f"config key 'serving.tensor_parallel_size'={tp} does not fit model {c.model} "
            f"({spec.num_attention_heads} attention heads, {kv} KV heads): TP must divide the attention heads "
            f"and divide or be a multiple of the KV heads")


def _instances_fit_node(c: Config) -> None:
    """An instance is tensor_parallel_size GPUs of one node (the single-node mode's workers share one
    node: ``single_node_fits``, checked by that mode only, since a cluster ignores serving.num_instances)."""
    tp, gpus = c.serving.tensor_parallel_size, c.hardware.gpus_per_node
    if tp > gpus:
        raise ConfigError(f"config key 'serving.tensor_parallel_size'={tp} exceeds 'hardware.gpus_per_node'={gpus}")


def single_node_fits(c: Config) -> None:
    """The single-node mode's serving.num_instances workers of tensor_parallel_size GPUs share one node."""
    tp, gpus, n = c.serving.tensor_parallel_size, c.hardware.gpus_per_node, c.serving.num_instances
    if n * tp > gpus:
        raise ConfigError(f"config key 'serving.num_instances'={n} x tensor_parallel_size {tp} needs {n * tp} GPUs; "
                          f"one node has 'hardware.gpus_per_node'={gpus}")


def _batch_holds_its_sequences(c: Config) -> None:
    """vLLM ``SchedulerConfig``: max_num_batched_tokens must be >= max_num_seqs (a decode takes one token)."""
    s = c.serving
    if s.max_num_batched_tokens < s.max_num_seqs:
        raise ConfigError(f"config key 'serving.max_num_batched_tokens'={s.max_num_batched_tokens} must be >= "
                          f"'serving.max_num_seqs'={s.max_num_seqs}")


def _model_len_within_context(c: Config) -> None:
    from sim.specs import model_spec

    limit = model_spec(c.model).max_position_embeddings
    if c.serving.max_model_len is not None and c.serving.max_model_len > limit:
        raise ConfigError(f"config key 'serving.max_model_len'={c.serving.max_model_len} exceeds model {c.model}'s "
                          f"context of {limit} tokens")


def _request_range(c: Config) -> None:
    start, end = c.workload.range_start, c.workload.range_end
    if not start < end:
        raise ConfigError(f"config keys 'workload.range_start'={start} and 'workload.range_end'={end}: start must be below end")


def request_token_bound(workload: WorkloadConfig) -> int:
    """Most tokens (prompt + output) one request may have: ``workload.max_request_tokens``, by default
    the longest context any model in ``profiles/models.yaml`` supports (no model could serve more)."""
    if workload.max_request_tokens is not None:
        return workload.max_request_tokens
    from sim.specs import known_models, model_spec

    return max(model_spec(name).max_position_embeddings for name in known_models())


def _synthetic_sizes(c: Config) -> None:
    """Synthetic shared parts must fit in one request, so generation never allocates beyond the bound."""
    if c.workload.trace is not None:
        return  # the synthetic generator is not used
    syn, bound = c.workload.synthetic, request_token_bound(c.workload)
    for key, tokens in (("prefix_tokens", syn.prefix_tokens), ("input_tokens_mean", syn.input_tokens_mean),
                        ("output_tokens_mean", syn.output_tokens_mean),
                        ("document_tokens", syn.document_tokens * syn.documents_per_request)):
        if tokens > bound:
            raise ConfigError(f"config key 'workload.synthetic.{key}' gives {tokens} tokens per request, more than "
                              f"the request bound of {bound} (workload.max_request_tokens)")


def setting(config: Config, dotted: str) -> Any:
    """The value of a dotted key (``"cache.tiers.dram.capacity_gib"``)."""
    node: Any = config
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def _input_paths_exist(c: Config) -> None:
    """Every input path that is set names something readable (found now, not after minutes of work)."""
    for dotted in PATH_KEYS:
        if setting(c, dotted) is None:
            continue
        path = Path(setting(c, dotted))
        if not path.exists():
            raise ConfigError(f"config key '{dotted}': {quote(str(path))} does not exist")
        if dotted not in DIRECTORY_KEYS and not path.is_file():
            raise ConfigError(f"config key '{dotted}': {quote(str(path))} is not a file")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"config key '{dotted}': {quote(str(path))} is not readable")


def _workload_cache_usable(c: Config) -> None:
    """``workload.cache`` keeps a loaded trace file: it needs one, and may not be it or a directory."""
    cache = c.workload.cache
    if cache is None:
        return
    if c.workload.trace is None:
        raise ConfigError("config key 'workload.cache' (--workload-cache) keeps a loaded trace file; no workload.trace "
                          "is given (synthetic workload)")
    if not cache.strip():
        raise ConfigError("config key 'workload.cache': empty path")
    if Path(cache).resolve() == Path(c.workload.trace).resolve():
        raise ConfigError(f"config key 'workload.cache': {quote(cache)} is the trace file itself")
    if Path(cache).is_dir():
        raise ConfigError(f"config key 'workload.cache': {quote(cache)} is a directory, not a file")


def _arrival_settings_apply(c: Config) -> None:
    """``workload.arrivals.rate_rps`` and ``cv`` only mean something for the processes that draw with them."""
    a = c.workload.arrivals
    if a.process == "trace" and a.rate_rps is not None:
        raise ConfigError("config key 'workload.arrivals.rate_rps' applies to process poisson, gamma or resample; "
                          "scale the workload's own arrivals with workload.rate_scale (--rate-scale)")
    if a.process != "gamma" and a.cv != 1.0:
        raise ConfigError(f"config key 'workload.arrivals.cv' applies to process gamma, not {a.process!r}")


CONSTRAINTS: tuple[typing.Callable[[Config], None], ...] = (
    _tensor_parallel_fits_model,
    _instances_fit_node,
    _batch_holds_its_sequences,
    _model_len_within_context,
    _request_range,
    _synthetic_sizes,
    _arrival_settings_apply,
    _input_paths_exist,
    _workload_cache_usable,
)


def validate(config: Config) -> None:
    """The cross-field rules over a whole resolved config (each field's own domain is checked as it is built)."""
    for rule in CONSTRAINTS:
        rule(config)
