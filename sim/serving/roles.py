"""What a serving run's instances derive from their tensor-parallel size, per role.

The single-node mode's workers and a cluster's instances are all ``serving.tensor_parallel_size`` GPUs; in PD
(``--pd``, ``--cluster --pd``) the prefill and decode instances may each have their own
(``pd.prefill_tensor_parallel_size``, ``pd.decode_tensor_parallel_size``; ``sim.config_rules.pd_tensor_parallel``
resolves them; ``sim.cluster.topology`` places a cluster's). A role's instances take
whatever depends on TP from a config of their own, the run's with ``serving.tensor_parallel_size`` set to the role's
(``role_config``): the engine's settings, vLLM's ``num_gpu_blocks`` from memory (weights and KV per rank), the compute
model (the roofline's or a profile's TP collectives), the bytes of a block's shard on one rank (KV heads replicated
past their count included) and the lanes a lower tier is read over. The same functions serve every role and mode.

A lower tier (DRAM, SSD, EIC) holds a block as ``stored_block_bytes``: every rank's page (MLA's latent once), as the
front role's instances (prefill in PD) store it, so the roles share those tiers at one block size, which depends on
TP only past the KV-head count (a replicated head is stored once per rank holding it); each role reads them over
its own lanes (its ranks' pages side by side; MLA's one latent once per rank: ``read_copies``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sim.cache.tiers import hbm_capacity_blocks, kv_block_bytes, read_copies, read_lanes
from sim.config import Config, ServingConfig
from sim.config_rules import SERVING_TP, pd_tensor_parallel
from sim.errors import ConfigError
from sim.serving.compute_backend import compute_model
from sim.serving.compute_model import ComputeModel
from sim.serving.engine_limits import resolved_serving
from sim.serving.scheduler import DECODE, PREFILL, UNIFIED
from sim.serving.tp_transfer import TransferPlan, transfer_plan
from sim.specs import gpu_spec, model_spec

# vLLM's BlockPool takes block 0 of its ``num_gpu_blocks`` as the placeholder ``null_block`` (popped from the free
# queue in ``BlockPool.__init__``, vllm/v1/core/block_pool.py, never allocated to a request; ``get_usage`` divides
# by ``num_gpu_blocks - 1``): a request can hold one block fewer than vLLM reports.
NULL_BLOCKS = 1


def usable_kv_blocks(config: Config) -> int:
    """KV blocks one serving instance can give requests: vLLM's ``num_gpu_blocks`` less its null block."""
    return hbm_capacity_blocks(config) - NULL_BLOCKS


def role_config(config: Config, tensor_parallel_size: int, largest: int, link_read: bool = False) -> Config:
    """``config`` with its instances at ``tensor_parallel_size`` GPUs, beside other roles' of up to ``largest``. The
    GPU-link and collectives settings, which an instance of one GPU never reads, are dropped from a TP-1 role's config
    when another role reads them, and the link's when the run's KV transfers cross it (``link_read``: --cluster --pd
    on a board NVLink joins); they are an error only where nothing of the run reads them
    (``compute_backend.collectives_model``)."""
    hardware, compute = config.hardware, config.compute
    one_gpu = tensor_parallel_size == 1 and config.serving.data_parallel_size == 1
    unread_link = (one_gpu and (largest > 1 or link_read)
                   and (hardware.gpu_link_gbps, hardware.gpu_link_latency_us) != (None, None))
    unread_collectives = one_gpu and largest > 1 and compute.collectives is not None
    if tensor_parallel_size == config.serving.tensor_parallel_size and not (unread_link or unread_collectives):
        return config
    if unread_link:
        hardware = dataclasses.replace(hardware, gpu_link_gbps=None, gpu_link_latency_us=None)
    if unread_collectives:
        compute = dataclasses.replace(compute, collectives=None)
    return dataclasses.replace(config, hardware=hardware, compute=compute,
                               serving=dataclasses.replace(config.serving, tensor_parallel_size=tensor_parallel_size))


def kv_link_read(config: Config, mode: str, pd: bool) -> bool:
    """Whether the run's KV transfers cross the GPUs' own link: --cluster --pd on a board NVLink joins (a prefill
    and a decode instance of one node; ``sim.cluster.run``)."""
    return mode == "cluster" and pd and gpu_spec(config.hardware.gpu).link.joins_every_gpu  # (an override keeps it)


def role_configs(config: Config, pd: bool, link_read: bool = False) -> dict[str, tuple[str, Config]]:
    """Each role's (key its TP comes from, config): PD's prefill and decode roles, else the one unified role
    (``link_read``: ``role_config``'s)."""
    if not pd:
        return {UNIFIED: (SERVING_TP, config)}
    roles = pd_tensor_parallel(config)
    largest = max(tp for _, tp in roles.values())
    return {role: (key, role_config(config, tp, largest, link_read)) for role, (key, tp) in
            ((PREFILL, roles["prefill"]), (DECODE, roles["decode"]))}


def front_role_config(config: Config, pd: bool) -> Config:
    """The config of the instances that store blocks in the lower tiers: PD's prefill role (at its TP), else the one
    unified role (``sim.serving.run``: the tiers store blocks as the front instances do)."""
    return role_configs(config, pd)[PREFILL if pd else UNIFIED][1]


@dataclass(frozen=True)
class RoleShape:
    """What the instances of one role derive from their TP."""

    config: Config  # the run's, at the role's TP
    serving: ServingConfig  # the engine's settings, as vLLM resolves them
    hbm_blocks: int  # vLLM's num_gpu_blocks (as reported)
    usable_blocks: int  # less its null block
    compute: ComputeModel
    block_bytes: int  # one rank's shard of a block (HBM, what a decode rank receives)
    lanes: int  # links a lower-tier block is read over side by side (one per rank)
    read_copies: int  # reads of a lower tier's stored block one load makes (MLA's latent: one per rank)

    @property
    def tensor_parallel_size(self) -> int:
        return self.config.serving.tensor_parallel_size


@contextmanager
def _named(config: Config, key: str, role: str) -> Iterator[None]:
    """An error of what a role derives from its TP names the key that set it (its weights do not fit at that TP, a
    profile has no rows at it, ...), unless that is serving.tensor_parallel_size (whose messages name it already)."""
    try:
        yield
    except ConfigError as exc:
        if key == SERVING_TP:
            raise
        said = str(exc).replace(SERVING_TP, key)  # (the key that sets this role's TP is the one to change)
        raise ConfigError(f"{role} instances at config key '{key}'={config.serving.tensor_parallel_size}: {said}") \
            from None


def role_blocks(config: Config, key: str = SERVING_TP, role: str = UNIFIED) -> int:
    """``usable_kv_blocks`` of ``config``'s instances (a role's, whose TP ``key`` set)."""
    with _named(config, key, role):
        return usable_kv_blocks(config)


def role_shape(config: Config, key: str = SERVING_TP, role: str = UNIFIED) -> RoleShape:
    """The shape of ``config``'s instances (a role's, whose TP ``key`` set)."""
    with _named(config, key, role):
        return RoleShape(config, resolved_serving(config), hbm_capacity_blocks(config), usable_kv_blocks(config),
                         compute_model(config), kv_block_bytes(config), read_lanes(config), read_copies(config))


def check_roles(config: Config, pd: bool, compute: bool = True, capacity: bool = True, link_read: bool = False) -> None:
    """What each role (at its TP) derives, checked before a trace loads: its compute model (a profile's files are read)
    and its KV capacity (the weights fit, at least one block)."""
    done: set[int] = set()
    for role, (key, cfg) in role_configs(config, pd, link_read).items():
        if id(cfg) in done:
            continue
        done.add(id(cfg))
        with _named(cfg, key, role):
            if compute:
                compute_model(cfg)
            if capacity:
                hbm_capacity_blocks(cfg)


def role_shapes(config: Config, pd: bool, link_read: bool = False) -> dict[str, RoleShape]:
    """Every role's shape (PD's two roles share one where their TPs agree)."""
    shapes: dict[str, RoleShape] = {}
    by_tp: dict[int, RoleShape] = {}
    for role, (key, cfg) in role_configs(config, pd, link_read).items():
        tp = cfg.serving.tensor_parallel_size
        if tp not in by_tp:
            by_tp[tp] = role_shape(cfg, key, role)
        shapes[role] = by_tp[tp]
    return shapes


def kv_transfer_plan(config: Config, prefill: RoleShape, decode: RoleShape) -> TransferPlan:
    """How a block crosses from a prefill instance to a decode instance at their TPs (``sim.serving.tp_transfer``)."""
    spec = model_spec(config.model)
    return transfer_plan(prefill.tensor_parallel_size, decode.tensor_parallel_size, spec.num_kv_heads, spec.is_mla,
                         decode.block_bytes)

