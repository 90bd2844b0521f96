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
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from sim.errors import ConfigError


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class HardwareConfig:
    """The GPU kind (a name in ``profiles/gpus.yaml``) and the node shape."""

    gpu: str = "h100-sxm"
    gpus_per_node: int = 8
    intra_node_gbps: float = 450.0  # GB/s per direction between GPUs of a node (H100 NVLink 4: 900 GB/s total)


@dataclass(frozen=True)
class ServingConfig:
    """Engine settings, named and meant as in vLLM's ``EngineArgs``."""

    tensor_parallel_size: int = 1
    block_size: int = 16
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    gpu_memory_utilization: float = 0.9
    num_gpu_blocks: int | None = None  # overrides the KV capacity computed from memory
    enable_prefix_caching: bool = True
    num_instances: int = 4
    dtype: Literal["bf16", "fp16", "fp32", "fp8"] = "bf16"
    kv_cache_dtype: Literal["auto", "bf16", "fp16", "fp32", "fp8"] = "auto"


@dataclass(frozen=True)
class TierConfig:
    """One storage tier: capacity, bandwidth (GB/s = 1e9 B/s) and access latency."""

    capacity_gib: float = 0.0
    read_gbps: float = 0.0
    write_gbps: float = 0.0
    latency_us: float = 0.0
    policy: str | None = None  # None: use cache.policy


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

    policy: str = "lru"
    learned_model: str | None = None
    allow_train_test_overlap: bool = False  # let a learned model be judged on the requests it was trained on
    inclusion: Literal["exclusive", "inclusive"] = "exclusive"
    access_semantics: Literal["auto", "plain", "prefix"] = "auto"
    capacity_blocks: int | None = None  # cache-only: single-tier capacity in blocks
    mrc_sample_rate: float = 1.0  # --mrc: 1 = exact; below 1 = SHARDS spatial sampling rate
    admission: Literal["none", "selective_write"] = "none"
    selective_write_depth: int = 64  # selective_write: keep only the first k blocks of each prompt
    prefetch: Literal["none", "session"] = "none"  # session: a turn prefetches its previous turn's blocks
    tiers: TiersConfig = TiersConfig()


@dataclass(frozen=True)
class ComputeConfig:
    """How step times are predicted."""

    backend: Literal["roofline", "profiled"] = "roofline"
    profile: str | None = None  # a Vidur profile or LLMServingSim bundle directory
    flops_efficiency: float = 0.6
    bandwidth_efficiency: float = 0.8


@dataclass(frozen=True)
class NetworkConfig:
    """Inter-node links (KV transfer, EIC access)."""

    bandwidth_gbps: float = 100.0  # Gb/s, as NICs are rated
    latency_us: float = 5.0
    lookup: str | None = None  # an NS-3 bytes→seconds table JSON
    contention: bool = True


@dataclass(frozen=True)
class ClusterConfig:
    """Racks of GPU nodes behind a router."""

    num_racks: int = 1
    nodes_per_rack: int = 4
    router: str = "prefix-aware"


@dataclass(frozen=True)
class PDConfig:
    """Prefill/decode disaggregation."""

    num_prefill: int = 1
    num_decode: int = 1
    transfer: Literal["push", "pull", "layerwise"] = "push"
    router: str = "least-loaded"


@dataclass(frozen=True)
class SyntheticConfig:
    """Seeded synthetic workload, used when no trace file is given."""

    kind: Literal["multi-turn", "system-prompt", "rag", "agentic"] = "multi-turn"
    num_requests: int = 2000
    rate_rps: float = 5.0
    input_tokens_mean: int = 1024
    output_tokens_mean: int = 200
    num_sessions: int = 200  # multi-turn / agentic
    num_prefixes: int = 20  # system-prompt: distinct system prompts
    prefix_tokens: int = 1024  # system-prompt: tokens of each system prompt
    num_documents: int = 500  # rag: document pool size
    document_tokens: int = 2048  # rag: tokens per document
    documents_per_request: int = 2  # rag
    zipf_alpha: float = 1.0  # popularity skew of prefixes / documents


@dataclass(frozen=True)
class ArrivalsConfig:
    """The arrival process laid over the workload's requests (kept in their order).

    ``trace`` keeps the trace's (or the synthetic generator's) own arrival times;
    ``poisson`` and ``gamma`` draw fresh inter-arrival times; ``resample`` re-draws the
    workload's own inter-arrival times (with replacement) and rescales them to the rate.
    """

    process: Literal["trace", "poisson", "gamma", "resample"] = "trace"
    rate_rps: float | None = None  # mean rate of the drawn process; None: the workload's own mean rate
    cv: float = 1.0  # gamma: coefficient of variation of inter-arrival times (1 = Poisson, > 1 bursty)


@dataclass(frozen=True)
class WorkloadConfig:
    """Where requests come from and how rows are validated."""

    trace: str | None = None
    format: Literal["auto", "azure", "burstgpt", "mooncake", "splitwise", "llmservingsim"] = "auto"
    limit: int | None = None
    time_unit: Literal["s", "ms", "us", "ns"] | None = None  # None: the format's own unit
    strict_validation: bool = False
    # Traces with their own block ids (Mooncake: 512 tokens a block) and a different
    # serving.block_size: "split" each trace block into block_size pieces, or "error".
    block_mismatch: Literal["split", "error"] = "split"
    max_input_tokens: int | None = None  # truncate longer prompts to this many tokens (counted in the report)
    range_start: float = 0.0  # use requests from this fraction of the trace (arrival order) ...
    range_end: float = 1.0  # ... up to this one: e.g. train on 0-0.5, evaluate on 0.5-1
    rate_scale: float = 1.0  # divides every inter-arrival time (2 = twice the request rate)
    arrivals: ArrivalsConfig = ArrivalsConfig()
    synthetic: SyntheticConfig = SyntheticConfig()


@dataclass(frozen=True)
class SLOConfig:
    """Latency targets; None means no target (a request with no target never counts as passing)."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    attainment: float = 0.9


_DEFAULT_PRESETS: dict[str, dict[str, Any]] = {
    # Each preset is a map of dotted keys applied over the config, validated like --set.
    "smoke": {"workload.limit": 2000, "workload.synthetic.num_requests": 500},
    "dev": {"workload.limit": 20000, "workload.synthetic.num_requests": 5000},
    "prod-eval": {"workload.limit": None, "workload.synthetic.num_requests": 100000},
}


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of one kvsim invocation."""

    model: str = "llama-3.1-8b"
    seed: int = 0
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
        raise ConfigError(f"config key '{path}': expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"config key '{path}': expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{path}': expected a mapping, got {value!r}")
        return _build(tp, value, path)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{path}': expected a mapping, got {value!r}")
        return {str(k): copy.deepcopy(v) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e9" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - schema uses only the types above
        raise TypeError(f"unsupported config annotation {tp!r} at {path}")
    raise ConfigError(f"config key '{path}': expected {_type_name(tp)}, got {value!r}")


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
            where = f"'{prefix}'" if prefix else "the top level"
            raise ConfigError(f"unknown config key '{path}'; valid keys at {where}: {', '.join(fields)}")
        default = _field_default(fields[key])
        if dataclasses.is_dataclass(default) and isinstance(value, Mapping):
            value = _merge(dataclasses.asdict(default), value)
        kwargs[key] = _convert(value, hints[key], path)
    return cls(**kwargs)


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


def parse_set(assignment: str) -> tuple[str, Any]:
    """Split ``dotted.key=value``; the value is read as a YAML scalar (``null``, ``true``, ``3``, ``0.5``)."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects dotted.key=value, got {assignment!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {exc}") from exc
    return key, value


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping, got {type(data).__name__}")
    return data


# Keys holding file or directory paths; in a YAML file they are relative to that file.
PATH_KEYS = ("workload.trace", "network.lookup", "compute.profile", "cache.learned_model")


def _resolve_paths(layer: dict[str, Any], base: Path) -> dict[str, Any]:
    """Rewrite relative path values of ``layer`` (read from a file in ``base``) relative to the cwd."""
    out = copy.deepcopy(layer)
    for dotted in PATH_KEYS:
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
) -> Config:
    """Resolve the config: base file, then overlays in order, then the preset, then ``--set``s.

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
        layer: dict[str, Any] = {}
        for dotted, value in presets[preset].items():
            _set_dotted(layer, dotted, value)
        _validated(layer, f"preset {preset!r}")
        raw = _merge(raw, layer)
    for assignment in sets:
        key, value = parse_set(assignment)
        layer = {}
        _set_dotted(layer, key, value)
        _validated(layer, f"--set {assignment}")
        raw = _merge(raw, layer)
    return _build(Config, raw, "")


def replace(config: Config, **dotted: Any) -> Config:
    """A copy of ``config`` with dotted keys (``"cache.policy"``) changed, validated."""
    raw = config.to_dict()
    layer: dict[str, Any] = {}
    for key, value in dotted.items():
        _set_dotted(layer, key, value)
    _validated(layer, "override")
    return _build(Config, _merge(raw, layer), "")
