"""Which requests a serving configuration can never run, skipped (and counted) before any instance is built.

vLLM rejects such a request at admission instead of stalling its scheduler; kvsim skips it once, vectorised over the
trace (``admit``). In PD each role's instances must hold their part: a prefill instance the prompt, a decode instance
the whole sequence; at different TPs (``sim.serving.roles``) their capacities differ.
"""

from __future__ import annotations

import numpy as np

from sim.config import Config
from sim.config_rules import SERVING_TP
from sim.errors import ConfigError, TraceError
from sim.serving.engine_limits import block_size, max_model_len, resolved_serving
from sim.serving.kv_groups import KVGroups, hybrid_manager_groups
from sim.serving.roles import role_blocks, role_configs
from sim.serving.scheduler import DECODE, PREFILL, kv_tokens_held
from sim.serving.state_groups import exports_checkpoints, state_groups
from sim.specs import model_spec
from trace.request import Trace
from trace.workload import require_requests


def _model_len_limit(config: Config) -> str:
    """What bounds a request's tokens, for the skip message."""
    spec = model_spec(config.model)
    if config.serving.max_model_len is None and spec.longest_request < spec.max_position_embeddings:
        return (f"model {config.model}'s {spec.longest_request:,}-token sliding window (kvsim serves requests up to "
                "it, where it equals full attention)")
    return f"serving.max_model_len {max_model_len(config):,}"


def _kv_capacity_setting(config: Config) -> str:
    """The setting one instance's KV capacity comes from (hbm_capacity_blocks), for the skip message: a workload
    with no request left names the key to change, whatever its source (a synthetic workload names no file)."""
    if config.serving.num_gpu_blocks is not None:
        return f"serving.num_gpu_blocks={config.serving.num_gpu_blocks}"
    if config.cache.tiers.hbm.capacity_gib > 0:
        return f"cache.tiers.hbm.capacity_gib={config.cache.tiers.hbm.capacity_gib}"
    return f"hardware.gpu={config.hardware.gpu} at serving.gpu_memory_utilization={config.serving.gpu_memory_utilization}"


def admit(trace: Trace, config: Config, mode: str = "single") -> dict[str, int]:
    """Skip (and count in the trace's skip reasons) the requests this serving configuration can
    never run, as vLLM rejects them at admission instead of stalling its scheduler:

    - ``exceeds_max_model_len``: prompt + output tokens above ``max_model_len`` (vLLM's
      ``InputProcessor`` refuses a longer prompt; its OpenAI server refuses prompt + max_tokens);
    - ``exceeds_kv_capacity``: the KV of prompt + output - 1 tokens (the last token is sampled, never fed back: vLLM
      schedules no step past ``max_tokens``, so a sequence's KV peaks there; a PD decode instance too, whose first
      step feeds the prompt's last token again: ``kv_tokens_held``) needs more blocks than one instance
      holds, so the request could not finish even alone on an empty instance (a hybrid model under vLLM's hybrid
      manager: beside the full group's blocks, each sliding group's that recomputing the whole sequence after a
      preemption asks for; a Gated DeltaNet hybrid: its block in each state group beside its attention
      blocks, ``StateKVCacheManager.blocks_alone``). In PD (``mode``) a prefill instance holds the prompt (its
      first token is sampled, not stored), a decode instance the whole sequence, each role at its own TP's capacity.

    Checked once, vectorised over the trace, before any instance is built. Under
    ``workload.strict_validation`` the first such request is an error instead. Returns the counts.
    """
    block = block_size(config)
    capacities = {role: role_capacity(cfg, key, role)
                  for role, (key, cfg) in role_configs(config, mode == "pd").items()}
    groups = hybrid_manager_groups(config)
    states = state_groups(config)
    state_blocks = (states.blocks_held(resolved_serving(config).enable_prefix_caching, exports_checkpoints(config))
                    if states is not None else 0)

    def too_many(tokens: np.ndarray, capacity: int) -> np.ndarray:
        return (-(-tokens // block) + state_blocks > capacity if groups is None else
                _hybrid_blocks_alone(tokens, groups, config) > capacity)

    def exceeds_capacity(tokens: np.ndarray) -> np.ndarray:
        prompt = trace.input_tokens
        return np.logical_or.reduce([too_many(kv_tokens_held(role, prompt, tokens - prompt), capacity)
                                     for role, capacity in capacities.items()])

    one = len(set(capacities.values())) == 1
    capacity = min(capacities.values())
    each = (f"{capacity:,} usable KV blocks of {block} tokens per instance" if one else
            f"{capacities[PREFILL]:,} usable KV blocks of {block} tokens per prefill instance (the prompt) and "
            f"{capacities[DECODE]:,} per decode instance (the whole sequence)")
    limits = {
        "exceeds_max_model_len": (lambda _: trace.longer_than(max_model_len(config)), _model_len_limit(config)),
        "exceeds_kv_capacity": (exceeds_capacity, each),
    }
    skipped = {}
    for reason, (never_runs, limit) in limits.items():
        tokens = trace.input_tokens + np.maximum(trace.output_tokens, 1)  # every request decodes at least one token
        mask = never_runs(tokens)
        if config.workload.strict_validation and mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise TraceError(f"{trace.provenance.path or trace.provenance.format}: the request arriving at "
                             f"{trace.arrival_s[i]:.6g} s ({trace.input_tokens[i]:,} prompt + {trace.output_tokens[i]:,} "
                             f"output tokens) can never run: {reason.replace('_', ' ')} ({limit})")
        skipped[reason] = trace.drop(mask, reason)
    within = f" within {_model_len_limit(config)}" if skipped.get("exceeds_max_model_len") else ""
    held = (f"{capacity:,} KV blocks of {block} tokens per instance" if one else
            f"{capacities[PREFILL]:,} (prefill) and {capacities[DECODE]:,} (decode) KV blocks of {block} tokens per "
            "instance")
    require_requests(trace, f" that {config.model} with {held} ({_kv_capacity_setting(config)}) can run{within}")
    return {reason: n for reason, n in skipped.items() if n}


def role_capacity(config: Config, key: str, role: str) -> int:
    """Usable KV blocks of one instance of ``role`` (``config`` at its TP, which ``key`` sets), at least one."""
    capacity = role_blocks(config, key, role)
    if capacity <= 0:
        raise ConfigError(f"no KV block of {block_size(config)} tokens fits in one instance's memory beside vLLM's "
                          f"null block (serving.num_gpu_blocks, gpu_memory_utilization, tensor_parallel_size)"
                          + (f"; {role} instances at '{key}'={config.serving.tensor_parallel_size}"
                             if key != SERVING_TP else ""))
    return capacity


def _hybrid_blocks_alone(tokens: np.ndarray, groups: KVGroups, config: Config) -> np.ndarray:
    """Blocks a hybrid model's request of ``tokens`` tokens needs at once on an empty instance: every full block and
    each sliding group's blocks of them, at most ``admission_cap`` (``HybridKVCacheManager.blocks_alone``) or the
    window and the step or two before at its last token, whichever is more. Prompt and generated tokens count alike:
    a request preempted late in its decode is recomputed as one chunk (its sliding groups hold the whole chunk while
    it runs), which is the footprint vLLM's start-up check guarantees for a ``max_model_len`` sequence
    (``check_enough_kv_cache_memory`` over ``SlidingWindowSpec.max_memory_usage_bytes``, vllm/v1/core/
    kv_cache_utils.py, vllm/v1/kv_cache_interface.py); checked at the request's own length here, as kvsim skips
    such a request rather than refusing the deployment."""
    serving = resolved_serving(config)
    cap = groups.admission_cap(max_model_len(config), serving.max_num_batched_tokens, serving.async_scheduling)
    return groups.with_sliding(-(-tokens // serving.block_size), max(cap, groups.hit_blocks + 2))
