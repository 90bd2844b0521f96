"""Storage tiers: capacity in blocks, bandwidth, latency, one eviction policy, counters."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.config import Config, TierConfig
from sim.errors import ConfigError
from sim.cache.policies import EvictionPolicy, make_policy
from sim.specs import DTYPE_BYTES, GIB, gpu_spec, model_spec

TIER_NAMES = ("hbm", "dram", "ssd", "eic")


@dataclass(slots=True)
class TierStats:
    """What happened in one tier (blocks and bytes)."""

    hits: int = 0  # lookups served from this tier
    insertions: int = 0  # blocks admitted (new, promoted in, demoted in)
    promotions: int = 0  # blocks moved up out of this tier on a hit
    demotions: int = 0  # blocks moved down out of this tier to make room
    evictions: int = 0  # blocks dropped from the cache by this tier
    prefetches: int = 0  # blocks moved up out of this tier ahead of use
    bytes_read: int = 0
    bytes_written: int = 0

    def to_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(slots=True)
class Tier:
    """One level of the hierarchy; ``resident`` is the set of block ids it holds."""

    name: str
    capacity: int  # blocks
    policy: EvictionPolicy
    read_bw: float  # B/s
    write_bw: float  # B/s
    latency_s: float
    resident: set = field(default_factory=set)
    stats: TierStats = field(default_factory=TierStats)

    def read_time(self, nbytes: int) -> float:
        """Seconds to read ``nbytes`` from this tier (latency + bytes / bandwidth)."""
        return self.latency_s + nbytes / self.read_bw if nbytes else 0.0


def kv_block_bytes(config: Config) -> int:
    """Bytes of one KV block on one GPU: tokens per block × KV bytes per token (per TP rank)."""
    model = model_spec(config.model)
    dtype = config.serving.dtype if config.serving.kv_cache_dtype == "auto" else config.serving.kv_cache_dtype
    per_token = model.kv_bytes_per_token(DTYPE_BYTES[dtype], config.serving.tensor_parallel_size)
    return config.serving.block_size * per_token


def hbm_capacity_blocks(config: Config) -> int:
    """KV blocks that fit in one GPU's HBM (vLLM's way): ``num_gpu_blocks`` if set, else
    (memory × utilisation − weights per rank) / block bytes. Activation memory is not modelled."""
    if config.serving.num_gpu_blocks is not None:
        return config.serving.num_gpu_blocks
    tier = config.cache.tiers.hbm
    if tier.capacity_gib > 0:
        return int(tier.capacity_gib * GIB // kv_block_bytes(config))
    gpu, model = gpu_spec(config.hardware.gpu), model_spec(config.model)
    weights = model.num_parameters * DTYPE_BYTES[config.serving.dtype] / config.serving.tensor_parallel_size
    free = gpu.memory_bytes * config.serving.gpu_memory_utilization - weights
    if free <= 0:
        raise ConfigError(
            f"model {config.model} ({weights / GIB:.1f} GiB of weights per GPU) does not fit in {config.hardware.gpu} "
            f"at gpu_memory_utilization={config.serving.gpu_memory_utilization}; raise serving.tensor_parallel_size"
        )
    return int(free // kv_block_bytes(config))


def build_tiers(config: Config, policy: str, next_use: np.ndarray | None = None,
                capacity_blocks: int | None = None, predicted: np.ndarray | None = None) -> list[Tier]:
    """The enabled tiers, top down. ``capacity_blocks`` makes a single HBM tier of that size."""
    block_bytes = kv_block_bytes(config)
    specs: list[tuple[str, TierConfig, int]] = []
    if capacity_blocks is not None:
        if capacity_blocks <= 0:
            raise ConfigError(f"--capacity-blocks must be positive, got {capacity_blocks}")
        specs.append(("hbm", config.cache.tiers.hbm, capacity_blocks))
    else:
        for name in TIER_NAMES:
            tier_cfg: TierConfig = getattr(config.cache.tiers, name)
            if tier_cfg.capacity_gib < 0:
                raise ConfigError(f"config key 'cache.tiers.{name}.capacity_gib' must be >= 0, got {tier_cfg.capacity_gib}")
            blocks = hbm_capacity_blocks(config) if name == "hbm" else int(tier_cfg.capacity_gib * GIB // block_bytes)
            if blocks > 0:
                specs.append((name, tier_cfg, blocks))
    tiers = []
    for name, tier_cfg, blocks in specs:
        for key in ("read_gbps", "write_gbps"):
            if getattr(tier_cfg, key) <= 0:
                raise ConfigError(f"config key 'cache.tiers.{name}.{key}' must be positive, got {getattr(tier_cfg, key)}")
        tiers.append(
            Tier(
                name=name,
                capacity=blocks,
                policy=make_policy(tier_cfg.policy or policy, blocks, next_use, predicted),
                read_bw=tier_cfg.read_gbps * 1e9,
                write_bw=tier_cfg.write_gbps * 1e9,
                latency_s=tier_cfg.latency_us * 1e-6,
            )
        )
    return tiers
