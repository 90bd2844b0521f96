"""vLLM's KV-cache groups of a hybrid-attention model (sliding-window beside full-attention layers), as its hybrid
KV-cache manager lays them out (vLLM 0.33 ``v1/core/kv_cache_planning.py``; earlier ``kv_cache_utils.py``).

Layers of one kind are split into groups of ``group_size`` layers (round-robin, the last one short when the count
does not divide); every group draws its blocks from one shared pool, a block holding ``block_size`` tokens of
``group_size`` layers (``_get_kv_cache_groups_uniform_page_size``: the group size is the smaller layer count, or the
larger when it is under 1.5 times the smaller; ``get_kv_cache_config_from_groups``: all groups alias one memory
region of ``num_blocks`` × group_size pages, so the pool's capacity is not divided among the groups). A request
holds, in each full-attention group, a block for every ``block_size`` tokens, and in each sliding group only the
blocks its next tokens can still see (``SlidingWindowManager``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.config import Config
from sim.errors import ConfigError
from sim.model_shape import ModelSpec

# the modes whose KV-cache manager models vLLM's hybrid one (the others, --cache-only, need it off)
HYBRID_MANAGER_MODES = ("single", "pd", "cluster")


@dataclass(frozen=True, slots=True)
class KVGroups:
    """The groups of one hybrid model at one block size."""

    group_size: int  # layers of one group: a pool block holds block_size tokens of that many layers
    full_groups: int
    sliding_groups: int
    window: int  # tokens a sliding layer's query attends to (itself included)
    block_size: int

    @property
    def hit_blocks(self) -> int:
        """Contiguous cached blocks a sliding group needs to serve a prefix: those holding the window's tokens before
        its end, ``cdiv(window - 1, block_size)`` (``SlidingWindowManager._contiguous_blocks_for_hit``)."""
        return -(-(self.window - 1) // self.block_size)

    def first_needed(self, processed: int) -> int:
        """The first block a sliding group still needs once ``processed`` tokens are computed: the next token sees
        tokens from ``processed - window + 1`` on (``get_num_skipped_tokens``; ``remove_skipped_blocks`` frees the
        blocks before it)."""
        return max(0, processed - self.window + 1) // self.block_size

    def with_sliding(self, blocks, most):
        """``blocks`` of the full group and each sliding group's blocks of them, at most ``most`` (ints or arrays)."""
        return blocks + self.sliding_groups * np.minimum(blocks, most)

    def admission_cap(self, max_model_len: int, max_num_batched_tokens: int, async_scheduling: bool) -> int:
        """Most blocks a sliding group asks of the pool to admit a request whose whole sequence must fit
        (``SlidingWindowSpec.max_admission_blocks_per_request``): its window and the tokens in flight, two batches
        with asynchronous scheduling (``VllmConfig.max_in_flight_tokens``)."""
        in_flight = (2 if async_scheduling else 1) * max_num_batched_tokens
        return -(-min(self.window - 1 + in_flight, max_model_len) // self.block_size) + 1


def kv_groups(spec: ModelSpec, block_size: int) -> KVGroups:
    """The hybrid manager's groups of ``spec`` (a hybrid-attention model)."""
    sliding = spec.sliding_layers
    full = spec.num_layers - sliding
    if not 0 < sliding < spec.num_layers:
        raise ValueError(f"model {spec.name} is not a hybrid-attention model")
    small, large = min(sliding, full), max(sliding, full)
    size = large if large < 1.5 * small else small
    return KVGroups(size, -(-full // size), -(-sliding // size), spec.sliding_window, block_size)


def hybrid_manager_groups(config: Config) -> KVGroups | None:
    """The groups when the run's model is a hybrid one and vLLM's hybrid manager is on, else None (one group of
    every layer, each keeping its whole KV)."""
    from sim.specs import model_spec

    spec = model_spec(config.model)
    if not spec.is_hybrid_attention or config.serving.disable_hybrid_kv_cache_manager:
        return None
    from sim.serving.engine_limits import block_size

    return kv_groups(spec, block_size(config))


def _ranking_policy(config: Config, policies: list[str]) -> str | None:
    """The first of the runs' policies (each tier's too) that ranks blocks by their next use (clairvoyant or
    learned), or None."""
    from sim.cache.access import policies_in_use
    from sim.cache.policies import POLICIES

    for policy in dict.fromkeys(q for p in policies for q in policies_in_use(config, p)):
        kind = POLICIES.get(policy)
        if kind is not None and (kind.needs_future or kind.needs_predictions):
            return policy
    return None


def check_hybrid_manager(config: Config, mode: str, policies: list[str]) -> None:
    """A hybrid model under vLLM's hybrid manager runs in the modes that model it, with policies that need nothing
    of the future (a clairvoyant or learned policy's next uses are of the trace's blocks, not of the sliding
    groups' copies, nor of a Gated DeltaNet hybrid's cached states); elsewhere the manager must be off
    (``serving.disable_hybrid_kv_cache_manager``: every layer keeps its whole KV, as kvsim keeps it there)."""
    from sim.serving.state_groups import check_state_model
    from sim.specs import model_spec

    check_state_model(config, mode)  # (a Gated DeltaNet hybrid: its own groups, sim.serving.state_groups)
    spec = model_spec(config.model)
    if spec.linear_attention is not None and config.serving.enable_prefix_caching:
        policy = _ranking_policy(config, policies)
        if policy is not None:  # (the align mode keys states past the trace's blocks: sim.serving.align_state_manager)
            raise ConfigError(f"policy {policy} ranks blocks by their next use, known for the trace's blocks but not "
                              f"for the Gated DeltaNet states vLLM's prefix caching keeps of model {config.model}: "
                              "pick another policy, or set serving.enable_prefix_caching=false")
    groups = hybrid_manager_groups(config)
    if groups is None:
        return
    if groups.full_groups > 1:
        raise ConfigError(f"model {config.model}: {spec.num_layers - spec.sliding_layers} full-attention layers beside "
                          f"{spec.sliding_layers} sliding-window ones make {groups.full_groups} full-attention groups "
                          "under vLLM's hybrid KV-cache manager, which kvsim models with one: set "
                          "serving.disable_hybrid_kv_cache_manager=true (every layer keeps its whole KV)")
    if mode in HYBRID_MANAGER_MODES:
        policy = _ranking_policy(config, policies)
        if policy is not None:
            raise ConfigError(f"policy {policy} ranks blocks by their next use, known for the trace's blocks but "
                              f"not for the sliding-window copies vLLM's hybrid KV-cache manager keeps of model "
                              f"{config.model}'s: pick another policy, or set "
                              "serving.disable_hybrid_kv_cache_manager=true (every layer keeps its whole KV)")
        return
    raise ConfigError(
        f"model {config.model}: its {spec.sliding_layers} sliding-window layers ({spec.sliding_window} tokens) need "
        f"vLLM's hybrid KV-cache manager, modelled in modes {', '.join(HYBRID_MANAGER_MODES)}, not {mode}: set "
        "serving.disable_hybrid_kv_cache_manager=true (every layer keeps its whole KV)")
